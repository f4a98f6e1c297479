//! The managed-identity endpoint.

use super::{send, start};
use crate::azure::{ARM_TOKEN, DEFAULT_CLIENT_ID, FakeAzure, VAULT_TOKEN};

fn token_url(fake: &FakeAzure, resource: &str) -> String {
    format!(
        "{}?api-version=2019-08-01&resource={resource}",
        fake.identity_endpoint()
    )
}

#[tokio::test]
async fn issues_a_vault_token_when_the_identity_header_is_right() {
    let (fake, client) = start().await;

    let request = client
        .get(token_url(&fake, "https%3A%2F%2Fvault.azure.net"))
        .header("X-IDENTITY-HEADER", FakeAzure::IDENTITY_HEADER);
    let answer = send(request).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["access_token"], VAULT_TOKEN);
    assert_eq!(answer.body["resource"], "https://vault.azure.net");
    assert_eq!(answer.body["token_type"], "Bearer");
    assert_eq!(answer.body["client_id"], DEFAULT_CLIENT_ID);
    let expires_on = answer.body["expires_on"]
        .as_str()
        .expect("expires_on is a string");
    assert!(expires_on.parse::<i64>().expect("epoch seconds") > 0);
}

#[tokio::test]
async fn issues_an_arm_token_for_the_given_client_id() {
    let (fake, client) = start().await;

    let url = format!(
        "{}&client_id=abc",
        token_url(&fake, "https://management.azure.com/")
    );
    let request = client
        .get(url)
        .header("x-identity-header", FakeAzure::IDENTITY_HEADER);
    let answer = send(request).await;

    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["access_token"], ARM_TOKEN);
    assert_eq!(answer.body["client_id"], "abc");
}

#[tokio::test]
async fn refuses_requests_without_the_identity_header() {
    let (fake, client) = start().await;

    let missing = send(client.get(token_url(&fake, "https://vault.azure.net"))).await;
    let wrong = client
        .get(token_url(&fake, "https://vault.azure.net"))
        .header("x-identity-header", "guess");
    let wrong = send(wrong).await;

    assert_eq!(missing.status, 400);
    assert!(missing.body["error"].is_string());
    assert_eq!(wrong.status, 400);
    assert_eq!(fake.requests().len(), 2);
    assert_eq!(fake.requests()[0].status, 400);
}

#[tokio::test]
async fn refuses_requests_without_a_resource() {
    let (fake, client) = start().await;

    let url = format!("{}?api-version=2019-08-01", fake.identity_endpoint());
    let request = client
        .get(url)
        .header("x-identity-header", FakeAzure::IDENTITY_HEADER);
    let answer = send(request).await;

    assert_eq!(answer.status, 400);
}
