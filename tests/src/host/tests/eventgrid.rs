//! The Event Grid webhook: handshakes, status codes and dispatch.

use serde_json::{Value, json};

use super::{kv_event, our_app, seen, start};
use crate::host::FunctionsHost;

fn webhook(host: &FunctionsHost, function: &str) -> String {
    format!(
        "{}/runtime/webhooks/eventgrid?functionName={function}",
        host.webhook_base()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn array_of_two_events_gives_two_invocations_and_202() {
    let app = our_app();
    let host = start(&app).await;
    let events = json!([
        kv_event("v1", json!({"mode": "ok"})),
        kv_event("v2", json!({"mode": "ok"}))
    ]);
    let (status, body) = host.post_event_grid("KeyEvent", &events).await.unwrap();
    assert_eq!((status, body.as_str()), (202, ""));
    let invs = host.invocations();
    assert_eq!(invs.len(), 2);
    let mut versions: Vec<String> = invs
        .iter()
        .map(|i| seen(i)["request"]["Data"]["event"]["data"]["Version"].to_string())
        .collect();
    versions.sort();
    assert_eq!(versions, vec!["\"v1\"", "\"v2\""]);
    let request = &seen(&invs[0])["request"];
    assert!(
        request["Data"]["event"].is_object(),
        "event arrives as a JSON object"
    );
    assert_eq!(
        request["Metadata"]["data"],
        request["Data"]["event"]["data"]
    );
    assert_eq!(request["Metadata"]["sys"]["MethodName"], json!("KeyEvent"));
    assert!(
        request["Metadata"]["sys"]["UtcNow"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_object_is_wrapped_and_failure_gives_500() {
    let app = our_app();
    let host = start(&app).await;
    let (status, _) = host
        .post_event_grid("KeyEvent", &kv_event("v1", json!({"mode": "ok"})))
        .await
        .unwrap();
    assert_eq!(status, 202);
    let outputs = json!({"rotations": [{"server": "ok-one"}]});
    let events = json!([
        kv_event("a", json!({"mode": "ok", "outputs": outputs})),
        kv_event("b", json!({"mode": "fail"}))
    ]);
    let (status, body) = host.post_event_grid("KeyEvent", &events).await.unwrap();
    assert_eq!(status, 500);
    assert!(
        body.contains("Functions.KeyEvent") && body.contains("500"),
        "{body}"
    );
    let queued = host.queue_messages("cmk-rotations");
    assert_eq!(
        queued.len(),
        1,
        "outputs of the successful invocation are written"
    );
    assert_eq!(queued[0].text, "{\n  \"server\": \"ok-one\"\n}");
}

async fn raw_post(
    host: &FunctionsHost,
    function: &str,
    event_type: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut req = reqwest::Client::new()
        .post(webhook(host, function))
        .header("Content-Type", "application/json");
    if let Some(t) = event_type {
        req = req.header("aeg-event-type", t);
    }
    let resp = req.body(body.to_owned()).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_and_rejections() {
    let app = our_app();
    let host = start(&app).await;
    let events = json!([kv_event("v1", json!({}))]).to_string();
    assert_eq!(raw_post(&host, "KeyEvent", None, &events).await.0, 400);
    assert_eq!(
        raw_post(&host, "KeyEvent", Some("SubscriptionDeletion"), &events)
            .await
            .0,
        400
    );
    assert_eq!(
        raw_post(&host, "KeyEvent", Some("Notification"), "not json")
            .await
            .0,
        400
    );
    assert_eq!(
        raw_post(&host, "KeyEvent", Some("Unsubscribe"), "").await.0,
        202
    );
    let (status, body) = raw_post(&host, "keyevent", Some("Notification"), &events).await;
    assert_eq!(
        (status, body.as_str()),
        (404, "cannot find function: 'keyevent'")
    );
    assert_eq!(
        raw_post(&host, "RotateServer", Some("Notification"), &events)
            .await
            .0,
        404
    );
    let validation = json!([{
        "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66", "topic": "/subscriptions/x", "subject": "",
        "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
                 "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/estest/validate"},
        "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
        "eventTime": "2018-01-25T22:12:19.4556811Z", "metadataVersion": "1", "dataVersion": "1"
    }]);
    let (status, body) = raw_post(
        &host,
        "KeyEvent",
        Some("SubscriptionValidation"),
        &validation.to_string(),
    )
    .await;
    assert_eq!(status, 200);
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer,
        json!({"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"})
    );
    let cloud = json!({"specversion": "1.0", "data": "{\"validationCode\":\"abc\"}"}).to_string();
    let (_, body) = raw_post(&host, "KeyEvent", Some("SubscriptionValidation"), &cloud).await;
    assert_eq!(body, "{\"validationResponse\":\"abc\"}");
    assert!(
        host.invocations().is_empty(),
        "handshakes never reach the handler"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn options_echoes_known_origins() {
    let app = our_app();
    let host = start(&app).await;
    let client = reqwest::Client::new();
    for (origin, expected) in [
        ("eventgrid.azure.us", "eventgrid.azure.us"),
        ("evil.example", "eventgrid.azure.net"),
    ] {
        let resp = client
            .request(reqwest::Method::OPTIONS, webhook(&host, "KeyEvent"))
            .header("WebHook-Request-Origin", origin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(resp.headers()["webhook-allowed-origin"], expected);
    }
}
