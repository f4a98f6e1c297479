//! Key Vault keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{VAULT, send, start};
use crate::azure::{ARM_TOKEN, FakeAzure, KeyVersionSpec, VAULT_TOKEN};

#[tokio::test]
async fn challenges_requests_without_a_vault_token() {
    let (fake, client) = start().await;
    fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let url = format!("{}/keys/pg-cmk?api-version=7.5", fake.vault_url(VAULT));

    let anonymous = send(client.get(&url)).await;
    let arm_token = send(client.get(&url).bearer_auth(ARM_TOKEN)).await;

    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").expect("challenge");
    assert!(challenge.starts_with("Bearer authorization=\"https://login.windows.net/"));
    assert!(challenge.contains("resource=\"https://vault.azure.net\""));
    assert_eq!(anonymous.body["error"]["code"], "Unauthorized");
    assert_eq!(arm_token.status, 401);
}

#[tokio::test]
async fn requires_an_api_version() {
    let (fake, client) = start().await;
    fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());

    let url = format!("{}/keys/pg-cmk", fake.vault_url(VAULT));
    let answer = send(client.get(url).bearer_auth(VAULT_TOKEN)).await;

    assert_eq!(answer.status, 400);
}

#[tokio::test]
async fn returns_the_latest_version_or_the_one_asked_for() {
    let (fake, client) = start().await;
    let first = fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let second = fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let base = format!("{}/keys/PG-CMK", fake.vault_url(VAULT));

    let latest = send(
        client
            .get(format!("{base}/?api-version=7.5"))
            .bearer_auth(VAULT_TOKEN),
    )
    .await;
    let old = send(
        client
            .get(format!("{base}/{first}?api-version=7.5"))
            .bearer_auth(VAULT_TOKEN),
    )
    .await;

    assert_eq!(latest.status, 200);
    assert_eq!(
        latest.body["key"]["kid"],
        FakeAzure::key_uri(VAULT, "pg-cmk", &second)
    );
    assert_eq!(
        old.body["key"]["kid"],
        FakeAzure::key_uri(VAULT, "pg-cmk", &first)
    );
    let n = URL_SAFE_NO_PAD
        .decode(latest.body["key"]["n"].as_str().expect("n"))
        .expect("base64url");
    assert_eq!(n.len(), 256);
    assert_ne!(n[0], 0);
    assert_eq!(latest.body["key"]["e"], "AQAB");
    assert_eq!(latest.body["attributes"]["recoveryLevel"], "Recoverable");
    let created = |b: &serde_json::Value| b["attributes"]["created"].as_i64().expect("created");
    assert!(created(&latest.body) > created(&old.body));
}

#[tokio::test]
async fn describes_ec_keys_and_updated_attributes() {
    let (fake, client) = start().await;
    let spec = KeyVersionSpec {
        kty: "EC".into(),
        nbf: Some(1),
        exp: Some(4_000_000_000),
        ..Default::default()
    };
    let version = fake.add_key_version(VAULT, "ec-key", spec);
    fake.update_key_version(VAULT, "ec-key", &version, |spec| spec.enabled = false);

    let url = format!(
        "{}/keys/ec-key/{version}?api-version=7.5",
        fake.vault_url(VAULT)
    );
    let answer = send(client.get(url).bearer_auth(VAULT_TOKEN)).await;

    assert_eq!(answer.body["key"]["kty"], "EC");
    assert_eq!(answer.body["key"]["crv"], "P-256");
    assert!(answer.body["key"]["x"].is_string() && answer.body["key"].get("n").is_none());
    assert_eq!(answer.body["attributes"]["enabled"], false);
    assert_eq!(answer.body["attributes"]["nbf"], 1);
    assert_eq!(answer.body["attributes"]["exp"], 4_000_000_000_i64);
}

#[tokio::test]
async fn pages_versions_with_next_links_on_the_vault_host() {
    let (fake, client) = start().await;
    let mut added: Vec<String> = (0..5)
        .map(|_| fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default()))
        .collect();

    let mut url = Some(format!(
        "{}/keys/pg-cmk/versions?api-version=7.5",
        fake.vault_url(VAULT)
    ));
    let mut listed = Vec::new();
    let mut pages = 0;
    while let Some(next) = url {
        let answer = send(client.get(&next).bearer_auth(VAULT_TOKEN)).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let items = answer.body["value"].as_array().expect("value").clone();
        assert!(items.len() <= 2 && items.iter().all(|i| i.get("key").is_none()));
        listed.extend(items.iter().map(|i| {
            i["kid"]
                .as_str()
                .expect("kid")
                .rsplit('/')
                .next()
                .unwrap_or_default()
                .to_owned()
        }));
        url = answer.body["nextLink"].as_str().map(str::to_owned);
        if let Some(link) = &url {
            assert!(link.starts_with(&format!(
                "http://{VAULT}:{}/keys/pg-cmk/versions?api-version=7.5&$skiptoken=",
                fake.port()
            )));
        }
        pages += 1;
    }

    assert_eq!(pages, 3);
    added.sort();
    listed.sort();
    assert_eq!(listed, added);
}

#[tokio::test]
async fn answers_key_not_found_for_unknown_keys_and_versions() {
    let (fake, client) = start().await;
    fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let base = fake.vault_url(VAULT);

    let no_key = send(
        client
            .get(format!("{base}/keys/nope?api-version=7.5"))
            .bearer_auth(VAULT_TOKEN),
    )
    .await;
    let no_version = client.get(format!(
        "{base}/keys/pg-cmk/{}?api-version=7.5",
        "0".repeat(32)
    ));
    let no_version = send(no_version.bearer_auth(VAULT_TOKEN)).await;

    assert_eq!(no_key.status, 404);
    assert_eq!(no_key.body["error"]["code"], "KeyNotFound");
    assert_eq!(no_version.status, 404);
}
