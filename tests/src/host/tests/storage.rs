//! Storage Peek Messages on the simulator's queues.

use std::time::Duration;

use serde_json::json;

use super::{our_app, start};
use crate::host::FunctionsHost;

async fn peek(
    host: &FunctionsHost,
    path_and_query: &str,
    auth: Option<&str>,
    version: bool,
) -> (u16, Option<String>, String) {
    let mut req =
        reqwest::Client::new().get(format!("{}/{path_and_query}", host.queue_service_uri()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    if version {
        req = req.header("x-ms-version", "2025-05-05");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, ctype, resp.text().await.unwrap())
}

fn count(xml: &str, tag: &str) -> usize {
    xml.matches(&format!("<{tag}>")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peeks_a_poisoned_message_without_changing_it() {
    let app = our_app();
    let host = start(&app).await;
    assert_eq!(
        host.queue_service_uri(),
        format!("{}/devstoreaccount1", host.webhook_base())
    );
    let text = json!({"fake": {"mode": "fail"}, "server": "a&b<c>"}).to_string();
    host.enqueue_encoded("cmk-rotations", &text);
    let stats = host.run_queues(Duration::from_secs(20)).await.unwrap();
    assert_eq!(stats.poisoned, 1);
    let before = host.poison_messages("cmk-rotations");

    let path = "cmk-rotations-poison/messages?peekonly=true&numofmessages=32";
    let (status, ctype, xml) = peek(&host, path, Some("Bearer token"), true).await;
    assert_eq!(status, 200, "{xml}");
    assert_eq!(ctype.as_deref(), Some("application/xml"));
    assert!(
        xml.starts_with(
            r#"<?xml version="1.0" encoding="utf-8"?><QueueMessagesList><QueueMessage>"#
        ),
        "{xml}"
    );
    use base64::Engine as _;
    let wire = base64::engine::general_purpose::STANDARD.encode(&text);
    assert!(
        xml.contains(&format!("<MessageText>{wire}</MessageText>")),
        "{xml}"
    );
    assert!(xml.contains(&format!("<MessageId>{}</MessageId>", before[0].id)));
    assert!(xml.contains("<DequeueCount>0</DequeueCount>"), "{xml}");
    let insertion = xml.split("<InsertionTime>").nth(1).unwrap();
    let insertion = &insertion[..insertion.find('<').unwrap()];
    assert!(httpdate::parse_http_date(insertion).is_ok(), "{insertion}");
    assert!(insertion.ends_with(" GMT"));
    assert_eq!(count(&xml, "ExpirationTime"), 1);

    let (_, _, again) = peek(&host, path, Some("Bearer token"), true).await;
    assert_eq!(again, xml, "peek is repeatable");
    assert_eq!(host.poison_messages("cmk-rotations"), before);

    // The drained trigger queue exists and is empty.
    let (status, _, empty) = peek(
        &host,
        "cmk-rotations/messages?peekonly=true",
        Some("Bearer t"),
        true,
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        empty.ends_with("<QueueMessagesList></QueueMessagesList>"),
        "{empty}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_encoding_none_and_errors() {
    let app = super::app(
        json!({"messageEncoding": "none"}),
        &[(
            "Chain",
            json!([{"type": "queueTrigger", "name": "item", "direction": "in", "queueName": "inbox"}]),
        )],
    );
    let host = start(&app).await;
    for i in 0..3 {
        host.enqueue("inbox", &format!("m{i} <raw>"));
    }
    let base = "inbox/messages?peekonly=true";
    let (_, _, one) = peek(&host, base, Some("Bearer t"), true).await;
    assert_eq!(count(&one, "QueueMessage"), 1, "default numofmessages is 1");
    assert!(
        one.contains("<MessageText>m0 &lt;raw&gt;</MessageText>"),
        "{one}"
    );
    let (_, _, two) = peek(
        &host,
        &format!("{base}&numofmessages=2"),
        Some("Bearer t"),
        true,
    )
    .await;
    assert_eq!(count(&two, "QueueMessage"), 2);
    let (_, _, all) = peek(
        &host,
        &format!("{base}&numofmessages=32"),
        Some("Bearer t"),
        true,
    )
    .await;
    assert_eq!(count(&all, "QueueMessage"), 3);
    assert!(
        host.queue_messages("inbox")
            .iter()
            .all(|m| m.dequeue_count == 0)
    );

    let (status, _, xml) = peek(
        &host,
        &format!("{base}&numofmessages=33"),
        Some("Bearer t"),
        true,
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        xml.contains("<Code>OutOfRangeQueryParameterValue</Code>"),
        "{xml}"
    );
    let (status, _, _) = peek(
        &host,
        &format!("{base}&numofmessages=0"),
        Some("Bearer t"),
        true,
    )
    .await;
    assert_eq!(status, 400);

    let (status, _, xml) = peek(&host, base, None, true).await;
    assert_eq!(status, 401);
    assert!(
        xml.contains("<Code>NoAuthenticationInformation</Code>"),
        "{xml}"
    );
    let (status, _, _) = peek(&host, base, Some("Bearer "), true).await;
    assert_eq!(status, 401, "an empty token");
    let (status, _, _) = peek(&host, base, Some("Basic abc"), true).await;
    assert_eq!(status, 401);
    let (status, _, xml) = peek(&host, base, Some("Bearer t"), false).await;
    assert_eq!(status, 400);
    assert!(xml.contains("<Code>MissingRequiredHeader</Code>"), "{xml}");

    let (status, ctype, xml) = peek(
        &host,
        "nosuchqueue/messages?peekonly=true",
        Some("Bearer t"),
        true,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(ctype.as_deref(), Some("application/xml"));
    assert!(
        xml.starts_with(r#"<?xml version="1.0" encoding="utf-8"?><Error><Code>QueueNotFound</Code><Message>The specified queue does not exist."#),
        "{xml}"
    );
    // Not created until the first poisoned message.
    let (status, _, _) = peek(
        &host,
        "inbox-poison/messages?peekonly=true",
        Some("Bearer t"),
        true,
    )
    .await;
    assert_eq!(status, 404);

    // Peeking left the messages for the trigger.
    let stats = host.run_queues(Duration::from_secs(20)).await.unwrap();
    assert_eq!(stats.succeeded, 3);
}
