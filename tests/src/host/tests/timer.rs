//! timerTrigger: schedule expansion and validation at start-up, the
//! `TimerInfo` payload and queue outputs of a fired timer.

use serde_json::{Value, json};

use super::{app, options, seen};
use crate::host::FunctionsHost;

fn timer_app(schedule: &str) -> super::TempApp {
    let sweep = json!([
        {"type": "timerTrigger", "name": "timer", "direction": "in", "schedule": schedule,
         "runOnStartup": false, "useMonitor": true},
        {"type": "queue", "name": "sweeps", "direction": "out", "queueName": "cmk-sweeps",
         "connection": "AzureWebJobsStorage"}
    ]);
    let other = json!([{"type": "queueTrigger", "name": "message", "direction": "in",
        "queueName": "cmk-other"}]);
    app(
        json!({"messageEncoding": "base64"}),
        &[("Sweep", sweep), ("Other", other)],
    )
}

fn is_iso_offset(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 25 && s.ends_with("+00:00") && s.as_bytes()[10] == b'T')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fired_timer_gets_timer_info_and_routes_queue_outputs() {
    let app = timer_app("%SWEEP_SCHEDULE%");
    let instruction = json!({"outputs": {"sweeps": [{"server": "pg1"}, {"server": "pg2"}]}});
    let host = FunctionsHost::start(options(
        &app,
        &[
            ("SWEEP_SCHEDULE", "0 */5 * * * *"),
            ("FAKE_FN_Sweep", &instruction.to_string()),
        ],
    ))
    .await
    .unwrap();
    assert_eq!(
        host.timer_schedule("Sweep").as_deref(),
        Some("0 */5 * * * *")
    );
    assert_eq!(host.timer_schedule("Other"), None);
    assert_eq!(host.timer_schedule("Nope"), None);

    let first = host.fire_timer("Sweep").await.unwrap();
    assert!(first.ok, "{first:?}");
    let request = &seen(&first)["request"];
    let info = &request["Data"]["timer"];
    assert_eq!(info["Schedule"], json!({"AdjustForDST": true}));
    assert_eq!(info["IsPastDue"], json!(false));
    let status = &info["ScheduleStatus"];
    for key in ["Last", "Next", "LastUpdated"] {
        assert!(is_iso_offset(&status[key]), "{key}: {status}");
    }
    assert_eq!(status["Last"], status["LastUpdated"]);
    let next = status["Next"].as_str().unwrap();
    // `Next` is a whole occurrence of the schedule: second 0, minute % 5 == 0.
    assert!(next.ends_with(":00+00:00"), "{next}");
    let minute: u32 = next[14..16].parse().unwrap();
    assert_eq!(minute % 5, 0, "{next}");
    assert!(next > status["Last"].as_str().unwrap(), "{status}");
    let meta = request["Metadata"].as_object().unwrap();
    assert_eq!(meta.keys().collect::<Vec<_>>(), vec!["sys"]);
    assert_eq!(meta["sys"]["MethodName"], json!("Sweep"));

    let texts: Vec<String> = host
        .queue_messages("cmk-sweeps")
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        texts,
        vec!["{\n  \"server\": \"pg1\"\n}", "{\n  \"server\": \"pg2\"\n}"]
    );

    // The second firing sees the status recorded by the first.
    let second = host.fire_timer("Sweep").await.unwrap();
    let status2 = &seen(&second)["request"]["Data"]["timer"]["ScheduleStatus"];
    assert!(
        status2["Last"].as_str().unwrap() > status["Last"].as_str().unwrap(),
        "{status2} after {status}"
    );
    assert_eq!(host.queue_messages("cmk-sweeps").len(), 4);

    assert!(host.fire_timer("Other").await.is_err());
    assert!(host.fire_timer("Nope").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_timer_invocation_writes_no_outputs() {
    let app = timer_app("30 0 3 * * MON-FRI");
    let instruction = json!({"mode": "fail", "outputs": {"sweeps": [{"server": "pg1"}]}});
    let host = FunctionsHost::start(options(
        &app,
        &[("FAKE_FN_Sweep", &instruction.to_string())],
    ))
    .await
    .unwrap();
    assert_eq!(
        host.timer_schedule("Sweep").as_deref(),
        Some("30 0 3 * * MON-FRI")
    );
    let inv = host.fire_timer("Sweep").await.unwrap();
    assert!(!inv.ok && inv.status == 500, "{inv:?}");
    assert!(host.queue_messages("cmk-sweeps").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_setting_or_bad_schedule_fails_start_up() {
    let app = timer_app("%SWEEP_SCHEDULE_NOT_SET%");
    let err = FunctionsHost::start(options(&app, &[]))
        .await
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(
        text.contains("'%SWEEP_SCHEDULE_NOT_SET%' does not resolve to a value")
            && text.contains("Functions.Sweep"),
        "{text}"
    );

    for bad in ["*/5 * * * *", "00:05:00", "0 0 25 * * *"] {
        let app = timer_app("%SCHEDULE%");
        let err = FunctionsHost::start(options(&app, &[("SCHEDULE", bad)]))
            .await
            .err()
            .unwrap();
        let text = format!("{err:#}");
        assert!(
            text.contains(&format!("'{bad}' was not recognized")) && text.contains("NCRONTAB"),
            "{text}"
        );
    }
    let five = timer_app("*/5 * * * *");
    let text = format!(
        "{:#}",
        FunctionsHost::start(options(&five, &[]))
            .await
            .err()
            .unwrap()
    );
    assert!(text.contains("6-field NCRONTAB"), "{text}");
}
