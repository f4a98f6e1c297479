//! Queue outputs, the queue trigger payload, retries and poison.

use std::time::Duration;

use serde_json::{Value, json};

use super::{app, kv_event, options, our_app, seen, start};
use crate::host::{FunctionsHost, QueueStats};

const WALL: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_fan_out_and_trigger_gets_double_encoded_data() {
    let app = our_app();
    let host = start(&app).await;
    let outputs =
        json!({"rotations": [{"fake": {"mode": "ok"}, "server": "pg1"}, "plain text", 7]});
    let (status, _) = host
        .post_event_grid(
            "KeyEvent",
            &json!([kv_event("v1", json!({"outputs": outputs}))]),
        )
        .await
        .unwrap();
    assert_eq!(status, 202);
    let texts: Vec<String> = host
        .queue_messages("cmk-rotations")
        .into_iter()
        .map(|m| m.text)
        .collect();
    let pretty = "{\n  \"fake\": {\n    \"mode\": \"ok\"\n  },\n  \"server\": \"pg1\"\n}";
    assert_eq!(texts, vec![pretty, "plain text", "7"]);
    let stats = host.run_queues(WALL).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            invocations: 3,
            succeeded: 3,
            failed: 0,
            poisoned: 0
        }
    );
    assert!(host.queue_messages("cmk-rotations").is_empty());
    let rotate: Vec<_> = host
        .invocations()
        .into_iter()
        .filter(|i| i.function == "RotateServer")
        .collect();
    let first = rotate
        .iter()
        .map(seen)
        .find(|s| {
            s["request"]["Data"]["message"]
                .as_str()
                .unwrap()
                .contains("pg1")
        })
        .unwrap();
    let req = &first["request"];
    assert_eq!(
        req["Data"]["message"],
        Value::String(serde_json::to_string(pretty).unwrap())
    );
    let meta = &req["Metadata"];
    assert_eq!(meta["DequeueCount"], json!("1"));
    for key in ["Id", "PopReceipt"] {
        let v = meta[key].as_str().unwrap();
        assert!(
            v.starts_with('"') && v.ends_with('"') && v.len() > 2,
            "{key}: {v}"
        );
    }
    for key in ["InsertionTime", "ExpirationTime", "NextVisibleTime"] {
        assert!(meta[key].as_str().unwrap().ends_with("+00:00"), "{key}");
    }
    assert_eq!(meta["sys"]["MethodName"], json!("RotateServer"));
}

fn fake_message(fake: Value) -> String {
    json!({ "fake": fake }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_retry_until_max_dequeue_then_poison() {
    let app = our_app();
    let host = start(&app).await;
    let text = fake_message(json!({"mode": "fail"}));
    host.enqueue_encoded("cmk-rotations", &text);
    let stats = host.run_queues(WALL).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            invocations: 5,
            succeeded: 0,
            failed: 5,
            poisoned: 1
        }
    );
    let poison = host.poison_messages("cmk-rotations");
    assert_eq!(poison.len(), 1);
    assert_eq!(poison[0].text, text);
    assert!(host.queue_messages("cmk-rotations").is_empty());
    let counts: Vec<Value> = host
        .invocations()
        .iter()
        .map(|i| seen(i)["request"]["Metadata"]["DequeueCount"].clone())
        .collect();
    assert_eq!(
        counts,
        vec![json!("1"), json!("2"), json!("3"), json!("4"), json!("5")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn success_after_retries_and_text_plain_counts_as_failure() {
    let app = our_app();
    let host = start(&app).await;
    host.enqueue_encoded(
        "cmk-rotations",
        &fake_message(json!({"mode": "fail_until", "until": 3})),
    );
    host.enqueue_encoded("cmk-rotations", &fake_message(json!({"mode": "text"})));
    let stats = host.run_queues(WALL).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            invocations: 8,
            succeeded: 1,
            failed: 7,
            poisoned: 1
        }
    );
    assert_eq!(
        host.poison_messages("cmk-rotations")[0].text,
        fake_message(json!({"mode": "text"}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_base64_message_goes_to_poison_unseen() {
    let app = our_app();
    let host = start(&app).await;
    host.enqueue("cmk-rotations", "{\"raw\": true}");
    let stats = host.run_queues(WALL).await.unwrap();
    assert_eq!(
        stats,
        QueueStats {
            invocations: 0,
            succeeded: 0,
            failed: 0,
            poisoned: 1
        }
    );
    assert_eq!(
        host.poison_messages("cmk-rotations")[0].text,
        "{\"raw\": true}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoding_none_and_return_value_binding() {
    let queues = json!({"messageEncoding": "none", "maxDequeueCount": 2});
    let chain = json!([
        {"type": "queueTrigger", "name": "item", "direction": "in", "queueName": "inbox"},
        {"type": "queue", "name": "$return", "direction": "out", "queueName": "outbox"}
    ]);
    let app = app(queues, &[("Chain", chain)]);
    let host = start(&app).await;
    host.enqueue("inbox", "hello");
    let stats = host.run_queues(WALL).await.unwrap();
    assert_eq!((stats.invocations, stats.succeeded), (1, 1));
    let out = host.queue_messages("outbox");
    assert_eq!(out.len(), 1, "ReturnValue routed to $return");
    assert!(
        out[0].text.starts_with("{\n  \"seen\": {"),
        "{}",
        out[0].text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_handler_fails_the_in_flight_message_which_is_retried() {
    let app = our_app();
    let mut opts = options(&app, &[]);
    opts.retry_delay = Some(Duration::from_millis(300));
    let host = FunctionsHost::start(opts).await.unwrap();
    host.enqueue_encoded(
        "cmk-rotations",
        &fake_message(json!({"mode": "sleep", "ms": 5000, "until": 2})),
    );
    let chaos = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        host.kill_handler().await;
        host.restart_handler().await.unwrap();
    };
    let (stats, ()) = tokio::join!(host.run_queues(WALL), chaos);
    assert_eq!(
        stats.unwrap(),
        QueueStats {
            invocations: 2,
            succeeded: 1,
            failed: 1,
            poisoned: 0
        }
    );
    let invs = host.invocations();
    assert_eq!(
        (invs[0].status, invs[0].ok, invs[1].ok),
        (0, false, true),
        "{invs:?}"
    );
}
