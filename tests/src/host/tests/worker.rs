//! Start-up, environment, readiness, raw invocations, kill and restart.

use std::time::Duration;

use serde_json::{Value, json};

use super::{options, our_app, seen, start};
use crate::host::FunctionsHost;

async fn wait_for_log(host: &FunctionsHost, needle: &str) -> bool {
    for _ in 0..100 {
        if host.logs().iter().any(|l| l.contains(needle)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_with_host_environment_and_captures_output() {
    let app = our_app();
    let host = FunctionsHost::start(options(&app, &[("FAKE_SETTING", "yes")]))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/env", host.handler_port());
    let env: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let port = host.handler_port().to_string();
    assert_eq!(env["FUNCTIONS_CUSTOMHANDLER_PORT"], json!(port));
    assert_eq!(env["FUNCTIONS_HTTPWORKER_PORT"], json!(port));
    assert!(
        env["FUNCTIONS_CUSTOMHANDLER_WORKER_ID"]
            .as_str()
            .is_some_and(|s| s.len() == 36)
    );
    let root = std::path::absolute(&app.root)
        .unwrap()
        .display()
        .to_string();
    assert_eq!(env["FUNCTIONS_APP_ROOT_PATH"], json!(root));
    assert_eq!(env["cwd"], json!(root));
    assert_eq!(env["FAKE_SETTING"], json!("yes"));
    assert!(wait_for_log(&host, "fake_handler listening on").await);
    assert!(wait_for_log(&host, "[stderr] fake_handler stderr check").await);
    assert_eq!(host.function_names(), vec!["KeyEvent", "RotateServer"]);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_exit_fails_start_with_status_and_output() {
    let app = our_app();
    let err = FunctionsHost::start(options(&app, &[("FAKE_EXIT_CODE", "3")]))
        .await
        .err()
        .unwrap();
    let text = format!("{err:#}");
    assert!(text.contains("exit status: 3"), "{text}");
    assert!(text.contains("exiting with 3 as asked"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_start_is_waited_for() {
    let app = our_app();
    let host = FunctionsHost::start(options(&app, &[("FAKE_STARTUP_DELAY_MS", "300")]))
        .await
        .unwrap();
    let inv = host
        .invoke("RotateServer", json!({"message": "\"x\""}), json!({}))
        .await
        .unwrap();
    assert!(inv.ok, "{inv:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_invoke_sends_host_headers() {
    let app = our_app();
    let host = start(&app).await;
    let inv = host
        .invoke(
            "RotateServer",
            json!({"message": "\"hi\""}),
            json!({"k": 1}),
        )
        .await
        .unwrap();
    assert!(
        inv.ok && inv.status == 200 && inv.error.is_none(),
        "{inv:?}"
    );
    let seen = seen(&inv);
    assert_eq!(
        seen["request"],
        json!({"Data": {"message": "\"hi\""}, "Metadata": {"k": 1}})
    );
    assert_eq!(
        seen["content_type"],
        json!("application/json; charset=utf-8")
    );
    assert_eq!(seen["invocation_id"], json!(inv.invocation_id));
    assert_eq!(seen["host_version"], json!("4.1037.0.0"));
    assert_eq!(seen["user_agent"], json!("Azure-Functions-Host/4.1037.0.0"));
    assert!(
        host.logs()
            .iter()
            .any(|l| l.starts_with("[host] RotateServer") && l.ends_with("RotateServer handled"))
    );
    assert_eq!(host.invocations(), vec![inv]);
}

async fn invoke_fake(host: &FunctionsHost, mode: &str) -> crate::host::Invocation {
    let msg = json!({"fake": {"mode": mode}}).to_string();
    let data = json!({"message": serde_json::to_string(&msg).unwrap()});
    host.invoke("RotateServer", data, json!({})).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_json_and_empty_answers_fail() {
    let app = our_app();
    let host = start(&app).await;
    let text = invoke_fake(&host, "text").await;
    assert!(!text.ok && text.status == 200);
    assert!(text.error.unwrap().contains("media type 'text/plain'"));
    let empty = invoke_fake(&host, "empty").await;
    assert!(!empty.ok && empty.error.unwrap().contains("hangs until functionTimeout"));
    let fail = invoke_fake(&host, "fail").await;
    assert!(!fail.ok && fail.status == 500 && fail.body.is_some());
    assert!(
        !host.logs().iter().any(|l| l.starts_with("[host]")),
        "Logs of a 500 are dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_then_restart() {
    let app = our_app();
    let host = start(&app).await;
    host.kill_handler().await;
    let dead = invoke_fake(&host, "ok").await;
    assert!(
        !dead.ok && dead.status == 0 && dead.error.is_some(),
        "{dead:?}"
    );
    host.restart_handler().await.unwrap();
    let url = format!("http://127.0.0.1:{}/env", host.handler_port());
    let env: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    assert_eq!(
        env["FUNCTIONS_CUSTOMHANDLER_PORT"],
        json!(host.handler_port().to_string())
    );
    assert!(invoke_fake(&host, "ok").await.ok);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_timeout_fails_and_restarts_the_handler() {
    let app = our_app();
    let host_json = app.root.join("host.json");
    let text = std::fs::read_to_string(&host_json).unwrap();
    std::fs::write(&host_json, text.replace("00:30:00", "00:00:00.500")).unwrap();
    let host = start(&app).await;
    let old_port = host.handler_port();
    let msg = json!({"fake": {"mode": "sleep", "ms": 5000}}).to_string();
    let data = json!({"message": serde_json::to_string(&msg).unwrap()});
    let (a, b) = tokio::join!(
        host.invoke("RotateServer", data.clone(), json!({})),
        host.invoke("RotateServer", data, json!({}))
    );
    // Both fail; the slower one may see the killed connection instead.
    let invs = [a.unwrap(), b.unwrap()];
    assert!(invs.iter().all(|i| !i.ok), "{invs:?}");
    let timeout = invs.iter().filter_map(|i| i.error.as_deref());
    assert!(
        timeout
            .clone()
            .any(|e| e.starts_with("Timeout value of 00:00:00.5000000 was exceeded")),
        "{invs:?}"
    );
    for _ in 0..200 {
        if host.handler_port() != old_port && invoke_fake(&host, "ok").await.ok {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("handler was not restarted after the timeout");
}
