//! Injected faults and request recording.

use std::time::{Duration, Instant};

use super::{VAULT, arm_get_path, cmk_server, send, start};
use crate::azure::{Fault, KeyVersionSpec, VAULT_TOKEN};

#[tokio::test]
async fn a_fault_answers_the_matching_requests_then_is_used_up() {
    let (fake, client) = start().await;
    let (spec, _) = cmk_server(&fake, "contoso-pg-01");
    fake.inject(Fault::throttled(Some("get"), "/flexibleServers/CONTOSO-PG-01", "2").times(2));

    let first = arm_get_path(&fake, &client, &spec.id()).await;
    let second = arm_get_path(&fake, &client, &spec.id()).await;
    let third = arm_get_path(&fake, &client, &spec.id()).await;

    assert_eq!(first.status, 429);
    assert_eq!(first.header("retry-after").as_deref(), Some("2"));
    assert_eq!(first.body["error"]["code"], "ResourceRequestsThrottled");
    assert_eq!(second.status, 429);
    assert_eq!(third.status, 200);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 200]);
}

#[tokio::test]
async fn a_fault_can_be_delayed_and_limited_to_one_method() {
    let (fake, client) = start().await;
    fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    fake.inject(Fault::status(Some("POST"), "/keys/", 500));
    fake.inject(Fault::status(None, "/keys/pg-cmk", 503).with_delay(Duration::from_millis(100)));
    let url = format!("{}/keys/pg-cmk?api-version=7.5", fake.vault_url(VAULT));

    let started = Instant::now();
    let delayed = send(client.get(&url).bearer_auth(VAULT_TOKEN)).await;
    let elapsed = started.elapsed();
    let normal = send(client.get(&url).bearer_auth(VAULT_TOKEN)).await;

    assert_eq!(delayed.status, 503);
    assert!(elapsed >= Duration::from_millis(100));
    assert_eq!(normal.status, 200);
    let recorded = fake.requests();
    assert_eq!(recorded[0].host_name(), VAULT);
    assert_eq!(
        recorded[0].header("Authorization"),
        Some("Bearer standin-token-vault")
    );
    assert_eq!(recorded[0].query, "api-version=7.5");
}

#[tokio::test]
async fn a_reset_fault_drops_the_connection() {
    let (fake, client) = start().await;
    let (spec, _) = cmk_server(&fake, "contoso-pg-01");
    fake.inject(Fault::reset(None, "flexibleservers"));
    let url = format!("{}{}?api-version=2025-08-01", fake.base_url(), spec.id());

    let dropped = client
        .get(&url)
        .bearer_auth(crate::azure::ARM_TOKEN)
        .send()
        .await;
    let after = arm_get_path(&fake, &client, &spec.id()).await;

    assert!(dropped.is_err(), "{dropped:?}");
    assert_eq!(after.status, 200);
    assert_eq!(fake.requests()[0].status, Fault::RESET);
    fake.clear_requests();
    assert!(fake.requests().is_empty());
}
