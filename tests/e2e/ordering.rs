//! Duplicates, reordering and busy servers (field cases fc-06, fc-07,
//! fc-10): decisions come from Azure's state, so no server is patched twice
//! or moved back.

use std::time::Duration;

use serde_json::json;
use standin::azure::{Fault, KeyVersionSpec, OpOutcome, ServerBehaviour};

use crate::support::*;

#[tokio::test]
async fn a_redelivered_event_during_a_slow_update_sends_no_second_patch() {
    // The host redelivers a failed message after 1 s, five times at most:
    // long enough to outlast the 3 s update, as host.json is for real ones.
    let w = World::start_with_retry_delay(&[], Duration::from_secs(1)).await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.azure.set_server_behaviour(
        &id,
        ServerBehaviour {
            op_duration: Duration::from_secs(3),
            op_polls: 0,
            ..ServerBehaviour::default()
        },
    );
    w.add_version(&v(2));

    // Delivery #1 plans quickly and returns; the update runs from the queue.
    let started = std::time::Instant::now();
    let (status, _) = w.deliver(&new_version_event("e-dup", &v(2))).await;
    assert_eq!(status, 202);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the event function never waits on ARM"
    );

    // Delivery #2 of the same event while the first update is in flight.
    let first = w.drain();
    let second = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        w.deliver(&new_version_event("e-dup", &v(2))).await
    };
    let (_, (status, _)) = tokio::join!(first, second);
    assert_eq!(status, 202);
    w.drain().await;

    assert_eq!(w.patches_for(&id).len(), 1);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert!(w.host.poison_messages(QUEUE).is_empty());
}

#[tokio::test]
async fn an_older_event_arriving_late_never_moves_a_server_back() {
    let w = World::start().await;
    for n in 1..=3 {
        w.add_version(&v(n));
    }
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));

    w.deliver(&new_version_event("e-v3", &v(3))).await;
    w.drain().await;
    w.deliver(&new_version_event("e-v2", &v(2))).await;
    w.drain().await;

    let patches = w.patches_for(&id);
    assert_eq!(patches.len(), 1);
    assert_eq!(
        patches[0].body.as_ref().unwrap()["properties"]["dataEncryption"]["primaryKeyURI"],
        json!(key_uri(&v(3)))
    );
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(3)));
    assert!(w.logged("already uses"));
}

#[tokio::test]
async fn a_server_on_a_newer_version_than_key_vault_reports_is_not_moved_back() {
    let w = World::start().await;
    // Key Vault's "current" answer is v2, created before the v3 the server
    // uses (a lagging replica right after a rotation).
    let version = |n: u8, created: i64| KeyVersionSpec {
        created: Some(created),
        ..KeyVersionSpec::with_version(&v(n))
    };
    w.azure
        .add_key_version(VAULT, KEY, version(3, 2_000_000_000));
    w.azure
        .add_key_version(VAULT, KEY, version(2, 1_900_000_000));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(3)));

    w.deliver(&new_version_event("e-v2", &v(2))).await;
    let stats = w.drain().await;

    assert!(w.patches_for(&id).is_empty());
    assert_eq!(stats.poisoned, 0);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(3)));
    assert!(w.logged("not moved back"));
}

#[tokio::test]
async fn a_busy_server_is_retried_later_and_then_updated_once() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.add_version(&v(2));
    // The first PATCH meets another operation (409 ServerBusy).
    w.azure.inject(Fault {
        method: Some("PATCH".into()),
        path_contains: "contoso-pg-01".into(),
        times: 1,
        status: 409,
        headers: vec![],
        body: Some(json!({"error": {"code": "ServerBusy", "message": "Server 'contoso-pg-01' is busy with another operation. Please try again later."}})),
        delay: None,
    });

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    // The same delivery looks again after CMK_BUSY_POLL_MS and updates.
    assert_eq!(w.patches_for(&id).len(), 2);
    assert_eq!(stats.failed, 0);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert!(w.logged("looking again in"));
}

#[tokio::test]
async fn an_updating_server_gets_no_patch_until_it_is_ready() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.azure.set_server_state(&id, "Updating");
    w.add_version(&v(2));

    // The delivery waits, looking again at CMK_BUSY_POLL_MS, while another
    // operation holds the server; it ends 1.5 s later.
    w.deliver(&new_version_event("e-1", &v(2))).await;
    let ready_later = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(w.patches_for(&id).is_empty(), "no PATCH while Updating");
        w.azure.set_server_state(&id, "Ready");
    };
    let (stats, ()) = tokio::join!(w.drain(), ready_later);

    assert_eq!(stats.failed, 0, "one delivery, no poison");
    assert_eq!(w.patches_for(&id).len(), 1);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_server_busy_for_longer_than_the_budget_is_retried_by_the_queue() {
    let w = World::start_with(&[("CMK_OPERATION_BUDGET_SECS", "2")]).await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.azure.set_server_state(&id, "Updating");
    w.add_version(&v(2));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;
    assert!(w.patches_for(&id).is_empty());
    assert_eq!(
        stats.poisoned, 1,
        "still busy after every delivery: the poison queue shows it"
    );
    assert!(w.logged("is Updating"));
}

#[tokio::test]
async fn an_operation_that_fails_busy_is_retried() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    let busy = OpOutcome::Failed {
        code: "ServerBusy".into(),
        message: "busy".into(),
    };
    w.azure.set_server_behaviour(
        &id,
        ServerBehaviour {
            outcome: busy,
            ..ServerBehaviour::default()
        },
    );
    w.add_version(&v(2));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let drain = w.drain();
    let heal = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        w.azure
            .set_server_behaviour(&id, ServerBehaviour::default());
    };
    tokio::join!(drain, heal);

    assert!(w.patches_for(&id).len() >= 2);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert!(w.logged("ended Failed: ServerBusy"));
}

#[tokio::test]
async fn a_server_that_keeps_refusing_as_busy_gets_at_most_two_patches_per_delivery() {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    let busy = OpOutcome::Failed {
        code: "ServerBusy".into(),
        message: "busy".into(),
    };
    w.azure.set_server_behaviour(
        &id,
        ServerBehaviour {
            outcome: busy,
            ..ServerBehaviour::default()
        },
    );
    w.add_version(&v(2));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert_eq!(stats.poisoned, 1);
    assert_eq!(stats.invocations, 5);
    assert_eq!(
        w.patches_for(&id).len(),
        10,
        "two per delivery, five deliveries"
    );
}
