//! The custom-handler protocol: the event as an object or a JSON string,
//! CloudEvents under the same binding, unknown routes, bodies that are not
//! invocations, and what the host answers Event Grid (fc-03, fc-05).

use serde_json::{Value, json};

use crate::support::*;

fn event_object() -> Value {
    fixture("events/key-new-version.eventgrid.json")[0].clone()
}

#[tokio::test]
async fn object_string_and_cloud_events_forms_plan_the_same_work() {
    let mut cloud = fixture("events/key-new-version.cloudevents.json");
    cloud["id"] = event_object()["id"].clone();
    let forms = [
        event_object(),
        Value::String(event_object().to_string()),
        cloud,
    ];
    let mut planned = Vec::new();
    for form in forms {
        let w = World::start().await;
        w.add_version(&v(1));
        w.add_server("contoso-pg-01", &key_uri(&v(1)));
        w.add_version(&v(2));
        let metadata = json!({"subject": "\"pg-cmk\"", "sys": {"MethodName": EVENT_FN}});
        let inv = w
            .host
            .invoke(EVENT_FN, json!({"event": form}), metadata)
            .await
            .unwrap();
        assert!(inv.ok, "{:?}", inv.error);
        assert_eq!(inv.content_type.as_deref(), Some("application/json"));
        let body = inv.body.unwrap();
        planned.push((body["Outputs"]["rotations"].clone(), w.arm_requests().len()));
    }
    assert_eq!(planned[0], planned[1]);
    assert_eq!(planned[0], planned[2]);
    assert_eq!(planned[0].0.as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn bodies_that_are_not_invocations_are_answered_not_crashed_on() {
    let w = World::start().await;
    let port = w.host.handler_port();
    let client = reqwest::Client::new();
    let post = |path: &str, body: &'static str| {
        client
            .post(format!("http://127.0.0.1:{port}/{path}"))
            .body(body)
            .send()
    };

    let r = post(EVENT_FN, "not json").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: Value = r.json().await.unwrap();
    assert!(
        body["Logs"][0]
            .as_str()
            .unwrap()
            .contains("invocation refused")
    );

    let r = post(SERVER_FN, "{\"Data\":{\"message\":\"{}\"}}")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(post("api/KeyEvent", "{}").await.unwrap().status(), 404);
    let get = client
        .get(format!("http://127.0.0.1:{port}/{EVENT_FN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["content-type"], "application/json");
    // Still alive after all of that.
    assert_eq!(post(EVENT_FN, "{}").await.unwrap().status(), 200);
    assert!(w.azure.requests().is_empty());
}

#[tokio::test]
async fn the_start_line_shows_every_setting_in_effect() {
    let w = World::start().await;
    let line = w
        .host
        .logs()
        .into_iter()
        .find(|l| l.contains("settings in effect"))
        .expect("a start line");
    for field in [
        "default_retry_after_secs=1",
        "min_poll_interval_ms=100",
        "busy_poll_ms=200",
        "http_timeout_secs=30",
        "max_body_bytes=1048576",
        "postgres_api_version=2025-08-01",
        "credential=\"managed-identity\"",
        "allow_http=true",
    ] {
        assert!(line.contains(field), "{field} missing from {line}");
    }
    assert!(!line.contains(standin::azure::FakeAzure::IDENTITY_HEADER));
}

#[tokio::test]
async fn host_rejects_deliveries_without_the_event_type_header_before_the_handler_runs() {
    let w = World::start().await;
    let url = format!(
        "{}/runtime/webhooks/eventgrid?functionName={EVENT_FN}",
        w.host.webhook_base()
    );
    let response = reqwest::Client::new()
        .post(url)
        .json(&json!([event_object()]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        w.host.invocations().is_empty(),
        "a bare 400 from the host means the handler never ran"
    );
}

#[tokio::test]
async fn host_answers_the_validation_handshake_itself() {
    let w = World::start().await;
    let url = format!(
        "{}/runtime/webhooks/eventgrid?functionName={EVENT_FN}",
        w.host.webhook_base()
    );
    let response = reqwest::Client::new()
        .post(url)
        .header("aeg-event-type", "SubscriptionValidation")
        .json(&fixture("events/subscription-validation.eventgrid.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"validationResponse": "00000000-0000-0000-0000-00000000c0de"})
    );
    assert!(w.host.invocations().is_empty());
    assert!(w.azure.requests().is_empty());
}

#[tokio::test]
async fn a_validation_event_inside_a_notification_is_not_a_key_event() {
    let w = World::start().await;
    let (status, _) = w
        .deliver(&fixture("events/subscription-validation.eventgrid.json"))
        .await;
    assert_eq!(status, 202);
    assert!(w.azure.requests().is_empty());
}

#[tokio::test]
async fn queue_messages_in_the_documented_shapes_are_processed() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.add_version(&v(2));
    // A producer outside the app (or an operator) enqueues compact JSON.
    let text = json!({"serverId": id, "keyId": format!("https://{VAULT}/keys/{KEY}")}).to_string();
    w.host.enqueue_encoded(QUEUE, &text);
    let stats = w.drain().await;
    assert_eq!(stats.succeeded, 1);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn queue_messages_for_servers_outside_the_configured_subscriptions_are_refused() {
    let w = World::start().await;
    w.add_version(&v(1));
    let mut spec = server("pg-elsewhere")
        .with_primary_key(&key_uri(&v(1)))
        .with_tag(TAG.0, TAG.1);
    spec.subscription = "11111111-1111-1111-1111-111111111111".into();
    let id = w.add_spec(spec);
    let text = json!({"serverId": id, "keyId": format!("https://{VAULT}/keys/{KEY}")}).to_string();
    w.host.enqueue_encoded(QUEUE, &text);
    let stats = w.drain().await;
    assert_eq!(stats.succeeded, 1);
    assert!(w.azure.requests().is_empty());
    assert!(w.logged("not a server in a configured subscription"));
}
