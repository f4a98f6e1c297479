//! A rotation across the kinds of server an operator has: pinned primary,
//! pinned primary and geo-backup, version-less, not subscribed, system
//! managed, stopped (field cases fc-08, fc-09, fc-10).

use serde_json::json;
use standin::azure::ServerBehaviour;

use crate::support::*;

#[tokio::test]
async fn rotation_moves_pinned_subscribed_servers_and_leaves_the_rest() {
    let w = World::start().await;
    w.add_version(&v(1));
    let pinned = w.add_server("pg-pinned", &key_uri(&v(1)));
    let geo = w.add_spec(
        server("pg-geo")
            .with_primary_key(&key_uri(&v(1)))
            .with_geo_key(&key_uri(&v(1)))
            .with_tag(TAG.0, TAG.1),
    );
    let floating = w.add_server("pg-floating", &format!("https://{VAULT}/keys/{KEY}"));
    let untagged = w.add_spec(server("pg-untagged").with_primary_key(&key_uri(&v(1))));
    let system = w.add_spec(server("pg-system").with_tag(TAG.0, TAG.1));
    let stopped = w.add_spec(
        server("pg-stopped")
            .with_primary_key(&key_uri(&v(1)))
            .with_tag(TAG.0, TAG.1),
    );
    w.azure.set_server_state(&stopped, "Stopped");

    w.add_version(&v(2));
    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
    assert_eq!(status, 202);
    let stats = w.drain().await;

    assert_eq!(w.encryption(&pinned, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.encryption(&geo, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.encryption(&geo, "geoBackupKeyURI"), key_uri(&v(2)));
    assert_eq!(
        w.encryption(&floating, "primaryKeyURI"),
        format!("https://{VAULT}/keys/{KEY}")
    );
    assert_eq!(w.encryption(&untagged, "primaryKeyURI"), key_uri(&v(1)));
    assert_eq!(w.encryption(&stopped, "primaryKeyURI"), key_uri(&v(1)));
    assert_eq!(w.encryption(&system, "type"), "SystemManaged");

    // Exactly one PATCH per server that needed one; none for the others.
    assert_eq!(w.patches_for(&pinned).len(), 1);
    assert_eq!(w.patches_for(&geo).len(), 1);
    assert_eq!(w.azure.patches().len(), 2);
    // Queued: pinned, geo, floating, stopped (the untagged one is not subscribed).
    assert_eq!(stats.invocations, 4);
    assert_eq!(stats.poisoned, 0);
    assert!(w.logged("pg-stopped is Stopped and is not touched"));
    assert!(w.logged("pg-floating uses a version-less key URI"));
}

#[tokio::test]
async fn patch_carries_the_whole_data_encryption_block() {
    let w = World::start().await;
    w.add_version(&v(1));
    let geo_uri = format!(
        "https://contoso-kv-geo.vault.azure.net/keys/pg-cmk-geo/{}",
        "a".repeat(32)
    );
    w.azure.add_key_version(
        "contoso-kv-geo.vault.azure.net",
        "pg-cmk-geo",
        standin::azure::KeyVersionSpec::with_version(&"a".repeat(32)),
    );
    let spec = server("contoso-pg-01")
        .with_primary_key(&key_uri(&v(1)))
        .with_geo_key(&geo_uri)
        .with_tag(TAG.0, TAG.1);
    let (primary_identity, geo_identity) = (
        spec.identity_id("id-contoso-pg-01"),
        spec.identity_id("id-contoso-pg-01-geo"),
    );
    let id = w.add_spec(spec);

    w.add_version(&v(2));
    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.drain().await;

    let patches = w.patches_for(&id);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].body,
        Some(json!({"properties": {"dataEncryption": {
            "type": "AzureKeyVault",
            "primaryKeyURI": key_uri(&v(2)),
            "primaryUserAssignedIdentityId": primary_identity,
            "geoBackupKeyURI": geo_uri,
            "geoBackupUserAssignedIdentityId": geo_identity,
        }}}))
    );
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.encryption(&id, "geoBackupKeyURI"), geo_uri);
    assert_eq!(w.encryption(&id, "primaryEncryptionKeyStatus"), "Valid");
}

#[tokio::test]
async fn an_update_that_silently_changes_nothing_is_not_taken_for_success() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.azure.set_server_behaviour(
        &id,
        ServerBehaviour {
            ignore_patch: true,
            ..ServerBehaviour::default()
        },
    );

    w.add_version(&v(2));
    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    // Each delivery PATCHes, reads back, sees the old key and fails; after
    // the host's dequeue limit the message sits in the poison queue.
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(1)));
    assert_eq!(stats.poisoned, 1);
    assert_eq!(w.host.poison_messages(QUEUE).len(), 1);
    assert_eq!(w.patches_for(&id).len(), 5);
    assert!(w.logged("reported success but did not take effect"));
    assert!(!w.logged("rotated"));
}

#[tokio::test]
async fn geo_identity_equal_to_primary_is_reported_without_a_patch() {
    let w = World::start().await;
    w.add_version(&v(1));
    let mut spec = server("pg-same-identity")
        .with_primary_key(&key_uri(&v(1)))
        .with_geo_key(&key_uri(&v(1)))
        .with_tag(TAG.0, TAG.1);
    spec.data_encryption["geoBackupUserAssignedIdentityId"] =
        spec.data_encryption["primaryUserAssignedIdentityId"].clone();
    let id = w.add_spec(spec);

    w.add_version(&v(2));
    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert!(w.patches_for(&id).is_empty());
    assert_eq!(stats.poisoned, 0);
    assert!(w.logged("primary and geo-backup identities are the same"));
}

#[tokio::test]
async fn each_rotated_server_costs_one_get_one_patch_polls_and_one_get() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.azure.set_server_behaviour(
        &id,
        ServerBehaviour {
            op_polls: 2,
            ..ServerBehaviour::default()
        },
    );
    w.azure.set_retry_after(1);

    w.add_version(&v(2));
    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.drain().await;

    let calls: Vec<(String, bool)> = w
        .arm_requests()
        .iter()
        .filter(|r| !r.path.starts_with("/providers/"))
        .map(|r| (r.method.clone(), r.path.contains("azureAsyncOperation")))
        .collect();
    // A quick decision writes on its own read (no second GET before the PATCH).
    let expected = [
        ("GET", false),
        ("PATCH", false),
        ("GET", true),
        ("GET", true),
        ("GET", true),
        ("GET", false),
    ];
    let expected: Vec<(String, bool)> = expected.iter().map(|(m, p)| (m.to_string(), *p)).collect();
    assert_eq!(calls, expected);

    // Polls follow Retry-After (1 s), not a tight loop.
    let polls: Vec<_> = w
        .azure
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("azureAsyncOperation"))
        .collect();
    for pair in polls.windows(2) {
        assert!(pair[1].at.duration_since(pair[0].at).as_millis() >= 950);
    }
}
