//! Event shapes: both schemas, both letter cases of `data`, the shared real
//! samples, events that are not for us, and events that try to steer the
//! handler elsewhere (field cases fc-01, fc-03).

use serde_json::{Value, json};

use crate::support::*;

async fn rotated_by(events: Value) -> (World, String) {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.add_version(&v(2));
    let (status, _) = w.deliver(&events).await;
    assert_eq!(status, 202);
    w.drain().await;
    (w, id)
}

#[tokio::test]
async fn event_grid_schema_fixture_rotates() {
    let (w, id) = rotated_by(fixture("events/key-new-version.eventgrid.json")).await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.patches_for(&id).len(), 1);
    assert!(
        w.logged("00000000-0000-0000-0000-0000000000a1"),
        "the handler ran with the event id in its span"
    );
}

#[tokio::test]
async fn camel_case_data_with_string_and_number_times_rotates() {
    let (w, id) = rotated_by(fixture("events/key-new-version.eventgrid-camelcase.json")).await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.patches_for(&id).len(), 1);
}

#[tokio::test]
async fn cloud_events_schema_fixture_rotates() {
    let (w, id) = rotated_by(fixture("events/key-new-version.cloudevents.json")).await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.patches_for(&id).len(), 1);
}

#[tokio::test]
async fn events_that_are_not_key_events_are_acknowledged_without_azure_calls() {
    let w = World::start().await;
    w.add_version(&v(1));
    w.add_server("contoso-pg-01", &key_uri(&v(1)));
    let mut samples = vec![fixture("events/secret-new-version.eventgrid.json")];
    // The real public samples, when this checkout sits beside them.
    let shared = repo_root().join("../shared/fixtures/azure/eventgrid");
    for entry in std::fs::read_dir(&shared).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with("keyvault-") || name.starts_with("deadletter") {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            samples.push(serde_json::from_str(&text).unwrap_or(Value::String(text)));
        }
    }
    for sample in &samples {
        let (status, body) = w.deliver(sample).await;
        assert_eq!(status, 202, "{body}");
    }
    assert!(
        w.azure.requests().is_empty(),
        "no token, Key Vault, ARM or Resource Graph call"
    );
    assert!(w.host.queue_messages(QUEUE).is_empty());
    assert!(w.logged("not a key event"));
}

#[tokio::test]
async fn malformed_events_are_acknowledged_with_a_reason_and_no_calls() {
    let w = World::start().await;
    let mut event = key_event("KeyNewVersionCreated", "e-bad", &v(2));
    event["data"] = json!({"foo": "bar"});
    let (status, _) = w.deliver(&json!([event])).await;
    assert_eq!(status, 202);
    assert!(w.logged("malformed event e-bad: event has no Id"));
    assert!(w.azure.requests().is_empty());
}

#[tokio::test]
async fn events_naming_foreign_hosts_or_path_tricks_cause_no_outbound_request() {
    let w = World::start().await;
    let ids = [
        "https://contoso-kv.vault.evil.example/keys/pg-cmk/22222222222222222222222222222222",
        "https://127.0.0.1/keys/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net:8443/keys/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net/keys/../secrets/x/22222222222222222222222222222222",
        "https://a--b.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://user@contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "http://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        // Under the suffix, but not the vault the event's topic names.
        "https://other-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
    ];
    for (n, id) in ids.iter().enumerate() {
        let mut event = key_event("KeyNewVersionCreated", &format!("e-{n}"), &v(2));
        event["data"]["Id"] = json!(id);
        let (status, _) = w.deliver(&json!([event])).await;
        assert_eq!(status, 202, "{id}");
        assert!(w.logged(&format!("refused event e-{n}")), "{id}");
    }
    assert!(
        w.logged("its topic names vault contoso-kv but data.Id names other-kv.vault.azure.net")
    );
    assert!(
        w.azure.requests().is_empty(),
        "the stand-in saw no connection's request"
    );
}

#[tokio::test]
async fn an_event_for_a_key_no_server_uses_queues_nothing() {
    let w = World::start().await;
    w.azure.add_key_version(
        VAULT,
        "other-key",
        standin::azure::KeyVersionSpec::with_version(&v(5)),
    );
    let mut event = key_event("KeyNewVersionCreated", "e-other", &v(5));
    event["data"]["Id"] = json!(format!("https://{VAULT}/keys/other-key/{}", v(5)));
    let (status, _) = w.deliver(&json!([event])).await;
    assert_eq!(status, 202);
    assert!(w.host.queue_messages(QUEUE).is_empty());
    assert!(w.logged("0 server(s) queued"));
}
