//! New versions that may not be set on a server (field case fc-15) and
//! expiry notices (fc-14).

use standin::azure::KeyVersionSpec;

use crate::support::*;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn world_with_pinned_server() -> (World, String) {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    (w, id)
}

#[tokio::test]
async fn a_version_not_active_yet_is_retried_by_event_grid_and_not_queued() {
    let (w, id) = world_with_pinned_server().await;
    let spec = KeyVersionSpec {
        nbf: Some(now() + 7200),
        ..KeyVersionSpec::with_version(&v(4))
    };
    w.azure.add_key_version(VAULT, KEY, spec);

    let (status, _) = w.deliver(&new_version_event("e-nbf", &v(4))).await;
    assert_eq!(
        status, 500,
        "the host fails the delivery so Event Grid retries"
    );
    assert!(w.host.queue_messages(QUEUE).is_empty());
    assert!(w.patches_for(&id).is_empty());
    assert!(w.logged("not active until"));

    // Once active, a redelivery moves the server.
    w.azure
        .update_key_version(VAULT, KEY, &v(4), |s| s.nbf = Some(now() - 1));
    let (status, _) = w.deliver(&new_version_event("e-nbf", &v(4))).await;
    assert_eq!(status, 202);
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(4)));
}

#[tokio::test]
async fn a_version_active_only_after_event_grid_gives_up_is_left_to_reconcile() {
    let (w, id) = world_with_pinned_server().await;
    let spec = KeyVersionSpec {
        nbf: Some(now() + 3 * 86_400),
        ..KeyVersionSpec::with_version(&v(4))
    };
    w.azure.add_key_version(VAULT, KEY, spec);

    let (status, _) = w.deliver(&new_version_event("e-nbf", &v(4))).await;
    assert_eq!(status, 202, "no useless redelivery for 24 h");
    assert!(w.logged("the Reconcile timer moves the servers once it is active"));
    assert!(w.host.queue_messages(QUEUE).is_empty());

    // Reconcile moves the server once the version is active, not before.
    w.host.fire_timer("Reconcile").await.unwrap();
    assert!(w.host.queue_messages(QUEUE).is_empty());
    w.azure
        .update_key_version(VAULT, KEY, &v(4), |s| s.nbf = Some(now() - 1));
    w.host.fire_timer("Reconcile").await.unwrap();
    w.drain().await;
    assert_eq!(w.patches_for(&id).len(), 1);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(4)));
}

#[tokio::test]
async fn unusable_versions_are_acknowledged_and_never_set() {
    type Change = fn(&mut KeyVersionSpec);
    let cases: [(&str, Change); 5] = [
        ("version is disabled", |s| s.enabled = false),
        ("expired", |s| s.exp = Some(now() - 60)),
        ("is not RSA", |s| s.kty = "EC".into()),
        ("bits", |s| s.bits = 1024),
        ("does not allow unwrapKey", |s| {
            s.key_ops.retain(|o| o != "unwrapKey")
        }),
    ];
    for (reason, change) in cases {
        let (w, id) = world_with_pinned_server().await;
        let mut spec = KeyVersionSpec::with_version(&v(4));
        change(&mut spec);
        w.azure.add_key_version(VAULT, KEY, spec);

        let (status, _) = w.deliver(&new_version_event("e-bad", &v(4))).await;
        assert_eq!(status, 202, "{reason}: acknowledged, retrying cannot help");
        assert!(w.host.queue_messages(QUEUE).is_empty(), "{reason}");
        assert!(w.azure.patches().is_empty(), "{reason}");
        assert!(w.logged(reason), "{reason}");
        assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(1)));
    }
}

#[tokio::test]
async fn near_expiry_catches_up_a_server_that_missed_the_new_version() {
    let (w, id) = world_with_pinned_server().await;
    w.add_version(&v(2));

    let (status, _) = w
        .deliver(&fixture("events/key-near-expiry.eventgrid.json"))
        .await;
    assert_eq!(status, 202);
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn near_expiry_without_a_newer_version_warns_and_patches_nothing() {
    let (w, id) = world_with_pinned_server().await;

    let (status, _) = w
        .deliver(&fixture("events/key-near-expiry.eventgrid.json"))
        .await;
    assert_eq!(status, 202);
    w.drain().await;
    assert!(w.patches_for(&id).is_empty());
    assert!(w.logged("expires in"));
    assert!(w.logged("servers on it: contoso-pg-01; no newer usable version exists"));
}

#[tokio::test]
async fn an_inaccessible_server_is_reported_not_patched() {
    let (w, id) = world_with_pinned_server().await;
    w.azure.set_server_state(&id, "Inaccessible");
    w.add_version(&v(2));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;
    assert!(w.patches_for(&id).is_empty());
    assert_eq!(stats.poisoned, 0, "reported, not retried forever");
    assert!(w.logged("contoso-pg-01 is Inaccessible and is not touched"));
}

#[tokio::test]
async fn near_expiry_with_only_an_unusable_newer_version_names_the_servers_at_risk() {
    let (w, id) = world_with_pinned_server().await;
    let disabled = KeyVersionSpec {
        enabled: false,
        ..KeyVersionSpec::with_version(&v(2))
    };
    w.azure.add_key_version(VAULT, KEY, disabled);

    let (status, _) = w
        .deliver(&fixture("events/key-near-expiry.eventgrid.json"))
        .await;
    assert_eq!(status, 202);
    assert!(w.host.queue_messages(QUEUE).is_empty());
    assert!(w.logged("servers on it: contoso-pg-01; no newer usable version exists"));
    assert!(w.patches_for(&id).is_empty());
}

#[tokio::test]
async fn near_expiry_for_a_version_no_server_uses_causes_no_work() {
    let (w, _) = world_with_pinned_server().await;
    let spare = KeyVersionSpec {
        enabled: false,
        ..KeyVersionSpec::with_version(&v(15))
    };
    w.azure.add_key_version(VAULT, KEY, spare);
    w.add_version(&v(3));

    let (status, _) = w
        .deliver(&serde_json::json!([key_event(
            "KeyNearExpiry",
            "e-4",
            &v(15)
        )]))
        .await;
    assert_eq!(status, 202);
    assert!(w.host.queue_messages(QUEUE).is_empty());
    let arm_reads = w
        .azure
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/subscriptions/"))
        .count();
    assert_eq!(arm_reads, 0, "no server read, no write");
}
