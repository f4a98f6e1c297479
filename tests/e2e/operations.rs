//! Converging without events and showing where servers stand: the
//! Reconcile timer, the Status function (JSON and the HTML page a person
//! reads), the poison queue in the report, and the expiry events.

use serde_json::{Value, json};
use standin::azure::{Recorded, ServerBehaviour};

use crate::support::*;

/// Requests made between two points, grouped by service.
fn counts(requests: &[Recorded]) -> (usize, usize, usize) {
    let graph = requests
        .iter()
        .filter(|r| r.path.contains("ResourceGraph"))
        .count();
    let arm = requests
        .iter()
        .filter(|r| r.path.starts_with("/subscriptions/"))
        .count();
    let vault = requests
        .iter()
        .filter(|r| r.path.starts_with("/keys/"))
        .count();
    (graph, arm, vault)
}

#[tokio::test]
async fn reconcile_catches_up_a_server_whose_event_was_missed() {
    let w = World::start().await;
    w.add_version(&v(1));
    let behind = w.add_server("pg-missed", &key_uri(&v(1)));
    let floating = w.add_server("pg-floating", &format!("https://{VAULT}/keys/{KEY}"));
    w.add_version(&v(2)); // the event for v2 was lost

    let inv = w.host.fire_timer("Reconcile").await.unwrap();
    assert!(inv.ok, "{:?}", inv.error);
    let queued = w.host.queue_messages(QUEUE);
    assert_eq!(queued.len(), 1, "only the pinned server that is behind");
    assert!(queued[0].text.contains("pg-missed"));
    w.drain().await;

    assert_eq!(w.encryption(&behind, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(
        w.encryption(&floating, "primaryKeyURI"),
        format!("https://{VAULT}/keys/{KEY}")
    );
    assert_eq!(w.azure.patches().len(), 1);
}

#[tokio::test]
async fn reconcile_costs_no_arm_call_per_server_when_nothing_drifted() {
    let w = World::start().await;
    w.add_version(&v(1));
    for n in 0..20 {
        w.add_server(&format!("pg-{n:02}"), &key_uri(&v(1)));
    }
    w.azure.clear_requests();

    let inv = w.host.fire_timer("Reconcile").await.unwrap();
    assert!(inv.ok);
    let (graph, arm, vault) = counts(&w.azure.requests());
    assert_eq!(
        (graph, arm, vault),
        (1, 0, 1),
        "one Resource Graph page, one Key Vault read for the one key, no ARM"
    );
    assert!(w.host.queue_messages(QUEUE).is_empty());
}

#[tokio::test]
async fn key_references_the_handler_cannot_rotate_are_named_not_hidden() {
    let w = World::start().await;
    w.add_version(&v(1));
    w.add_server("pg-covered", &key_uri(&v(1)));
    let hsm = w.add_server(
        "pg-hsm",
        &format!(
            "https://contoso-hsm.managedhsm.azure.net/keys/{KEY}/{}",
            v(1)
        ),
    );
    w.add_server(
        "pg-elsewhere",
        &format!("https://evil.example.com/keys/{KEY}/{}", v(1)),
    );
    w.azure.clear_requests();

    let inv = w.host.fire_timer("Reconcile").await.unwrap();
    assert!(inv.ok, "{:?}", inv.error);
    assert!(
        w.logged("pg-hsm: primaryKeyURI https://contoso-hsm.managedhsm.azure.net/keys/pg-cmk/")
    );
    assert!(w.logged("pg-elsewhere: primaryKeyURI https://evil.example.com/keys/pg-cmk/"));
    assert!(w.logged("2 key reference(s) not covered"));

    let (status, _, body) = w.host.http_get("/api/status").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let problems: Vec<&str> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems[0].starts_with("pg-elsewhere: primaryKeyURI"));
    assert!(problems[1].contains("not under a configured Key Vault DNS suffix"));
    assert_eq!(report["rows"].as_array().unwrap().len(), 1, "pg-covered");
    assert!(
        w.azure
            .requests()
            .iter()
            .all(|r| !r.path.contains("pg-hsm")),
        "nothing is read for a server the handler cannot act on"
    );
    assert!(w.azure.server(&hsm).is_some());
}

#[tokio::test]
async fn a_stopped_server_catches_up_once_it_is_started() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("pg-sleepy", &key_uri(&v(1)));
    w.azure.set_server_state(&id, "Stopped");
    w.add_version(&v(2));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.drain().await;
    assert!(w.patches_for(&id).is_empty(), "not touched while Stopped");

    w.azure.set_server_state(&id, "Ready");
    w.host.fire_timer("Reconcile").await.unwrap();
    w.drain().await;
    assert_eq!(w.patches_for(&id).len(), 1);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn status_json_shows_each_key_reference_and_needs_the_function_key() {
    let w = World::start().await;
    w.add_version(&v(1));
    w.add_spec(
        server("pg-geo")
            .with_primary_key(&key_uri(&v(1)))
            .with_geo_key(&key_uri(&v(1)))
            .with_tag(TAG.0, TAG.1),
    );
    w.add_server("pg-floating", &format!("https://{VAULT}/keys/{KEY}"));
    w.add_version(&v(2));

    let (status, _, body) = w.host.http_get("/api/status").await.unwrap();
    assert_eq!(status, 200, "{body}");
    let report: Value = serde_json::from_str(&body).unwrap();
    let rows = report["rows"].as_array().unwrap();
    let slots: Vec<(&str, &str, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["server"].as_str().unwrap(),
                r["slot"].as_str().unwrap(),
                r["drift"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        slots,
        [
            ("pg-floating", "primary", false),
            ("pg-geo", "primary", true),
            ("pg-geo", "geoBackup", true)
        ]
    );
    assert_eq!(rows[1]["latest"], json!(v(2)));
    assert_eq!(rows[0]["keyStatus"], json!("Valid"));
    assert!(w.azure.patches().is_empty());

    let url = format!("{}/api/status", w.host.webhook_base());
    let anonymous = reqwest::get(url).await.unwrap();
    assert_eq!(anonymous.status(), 401, "function-level auth");
}

#[tokio::test]
async fn status_lists_messages_waiting_in_the_poison_queue() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("pg-stuck", &key_uri(&v(1)));
    w.azure.set_server_behaviour(
        &id,
        ServerBehaviour {
            ignore_patch: true,
            ..ServerBehaviour::default()
        },
    );
    w.add_version(&v(2));
    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.drain().await;
    assert_eq!(w.host.poison_messages(QUEUE).len(), 1);

    let (_, _, body) = w.host.http_get("/api/status").await.unwrap();
    let report: Value = serde_json::from_str(&body).unwrap();
    let poison = report["poison"].as_array().expect("poison queue read");
    assert_eq!(poison.len(), 1);
    assert_eq!(poison[0]["serverId"], json!(id));
}

#[tokio::test]
async fn status_page_shows_drifted_and_unsafe_servers_to_a_person() {
    let w = World::start().await;
    w.add_version(&v(1));
    w.add_server("pg-current", &key_uri(&v(1)));
    w.add_version(&v(2));
    w.add_server("pg-up-to-date", &key_uri(&v(2)));
    let broken = w.add_server("pg-inaccessible", &key_uri(&v(1)));
    w.azure.set_server_state(&broken, "Inaccessible");

    let (status, headers, html) = w.host.http_get("/api/status?format=html").await.unwrap();
    assert_eq!(status, 200);
    assert!(
        headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("content-type") && v.starts_with("text/html"))
    );
    assert!(html.contains("pg-inaccessible"));

    // What a person sees: the page opened by URL, with the function key.
    let url = format!(
        "{}/api/status?format=html&code={}",
        w.host.webhook_base(),
        w.host.function_key()
    );
    let Some(page) = crate::browser::open(&url, "status-page").await else {
        return;
    };
    assert!(
        page.text.contains("3 key reference(s), 2 behind"),
        "{}",
        page.text
    );
    assert!(page.text.contains("pg-inaccessible"));
    assert!(page.amber_pixels > 1000, "drifted row highlighted");
    assert!(page.red_pixels > 1000, "unsafe row highlighted");
}

#[tokio::test]
async fn key_expired_names_every_server_still_on_the_expired_version() {
    let w = World::start().await;
    w.add_version(&v(1));
    w.add_server("pg-late-a", &key_uri(&v(1)));
    w.add_server("pg-late-b", &key_uri(&v(1)));
    let (status, _) = w
        .deliver(&json!([key_event("KeyExpired", "e-exp", &v(1))]))
        .await;
    assert_eq!(status, 202);
    assert!(
        w.logged("has expired; servers still on it (they go Inaccessible): pg-late-a, pg-late-b")
    );
    w.drain().await;
    assert!(w.azure.patches().is_empty(), "nothing newer to move to");
}

#[tokio::test]
async fn version_less_servers_are_reported_with_the_service_key_status() {
    let w = World::start().await;
    w.add_version(&v(1));
    w.add_server("pg-floating", &format!("https://{VAULT}/keys/{KEY}"));
    w.add_version(&v(2));
    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.drain().await;
    assert!(w.logged("pg-floating uses a version-less key URI; the service follows new versions itself (key status Valid)"));
}

#[tokio::test]
async fn status_flags_a_version_that_expires_soon_with_nothing_newer() {
    let w = World::start().await;
    let soon = standin::azure::KeyVersionSpec {
        exp: Some(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
                + 10 * 86_400,
        ),
        ..standin::azure::KeyVersionSpec::with_version(&v(1))
    };
    w.azure.add_key_version(VAULT, KEY, soon);
    w.add_server("pg-expiring", &key_uri(&v(1)));

    let (_, _, body) = w.host.http_get("/api/status").await.unwrap();
    let report: Value = serde_json::from_str(&body).unwrap();
    let row = &report["rows"][0];
    assert_eq!(row["drift"], json!(false));
    let days = row["expiresInDays"].as_i64().expect("expiry shown");
    assert!((9..=10).contains(&days), "{days}");

    let (_, _, html) = w.host.http_get("/api/status?format=html").await.unwrap();
    assert!(
        html.contains("<tr class=\"unsafe\">"),
        "an expiring version with nothing newer is unsafe"
    );
}
