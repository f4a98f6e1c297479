//! Tests that start the fake and talk to it over HTTP with reqwest, one file
//! per service.

mod arm;
mod fault;
mod graph;
mod identity;
mod keyvault;

use reqwest::RequestBuilder;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use super::{ARM_TOKEN, FakeAzure, KeyVersionSpec, ServerSpec};

/// The primary vault of the tests.
pub(super) const VAULT: &str = "contoso-kv.vault.azure.net";
/// The geo-backup vault of the tests.
pub(super) const GEO_VAULT: &str = "contoso-kv-geo.vault.azure.net";
/// The api-version the tests use for Resource Manager.
pub(super) const ARM_API: &str = "api-version=2025-08-01";

/// A status, the headers and the body (JSON, `Null` when empty or not JSON).
pub(super) struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// A header value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        let value = self.headers.get(name)?;
        value.to_str().ok().map(str::to_owned)
    }
}

/// Starts a fake and a client that resolves both test vaults to it.
pub(super) async fn start() -> (FakeAzure, reqwest::Client) {
    let fake = FakeAzure::start().await;
    let client = fake.http_client(&[VAULT, GEO_VAULT]);
    (fake, client)
}

/// Sends a request and reads the whole answer.
pub(super) async fn send(request: RequestBuilder) -> Answer {
    let response = request.send().await.expect("request reaches the fake");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// `GET {url}` with the ARM token.
pub(super) async fn arm_get(client: &reqwest::Client, url: &str) -> Answer {
    send(client.get(url).bearer_auth(ARM_TOKEN)).await
}

/// `GET` on a resource path with the ARM token and api-version.
pub(super) async fn arm_get_path(fake: &FakeAzure, client: &reqwest::Client, path: &str) -> Answer {
    arm_get(client, &format!("{}{path}?{ARM_API}", fake.base_url())).await
}

/// `PATCH` on a resource path with the ARM token and api-version.
pub(super) async fn arm_patch(
    fake: &FakeAzure,
    client: &reqwest::Client,
    path: &str,
    body: &Value,
) -> Answer {
    let url = format!("{}{path}?{ARM_API}", fake.base_url());
    send(client.patch(url).bearer_auth(ARM_TOKEN).json(body)).await
}

/// Adds key `pg-cmk` with one version and a CMK server on it; returns the
/// server spec and the version.
pub(super) fn cmk_server(fake: &FakeAzure, name: &str) -> (ServerSpec, String) {
    let version = fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let uri = FakeAzure::key_uri(VAULT, "pg-cmk", &version);
    let spec = ServerSpec {
        name: name.to_owned(),
        ..ServerSpec::default()
    }
    .with_primary_key(&uri);
    fake.add_server(spec.clone());
    (spec, version)
}

/// The server's `dataEncryption` without the read-only status fields, with
/// `primaryKeyURI` set to `primary_key_uri`: the body fc-09 asks for.
pub(super) fn full_patch(fake: &FakeAzure, id: &str, primary_key_uri: &str) -> Value {
    let server = fake.server(id).expect("server exists");
    let mut encryption = server["properties"]["dataEncryption"].clone();
    let fields = encryption.as_object_mut().expect("dataEncryption object");
    fields.remove("primaryEncryptionKeyStatus");
    fields.remove("geoBackupEncryptionKeyStatus");
    fields.insert("primaryKeyURI".to_owned(), json!(primary_key_uri));
    json!({ "properties": { "dataEncryption": encryption } })
}

/// Polls an `Azure-AsyncOperation` URL until the status is terminal; returns
/// every status document seen.
pub(super) async fn poll_to_end(client: &reqwest::Client, url: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    for _ in 0..20 {
        let answer = arm_get(client, url).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let done = answer.body["status"] != "InProgress";
        seen.push(answer.body);
        if done {
            return seen;
        }
    }
    panic!("operation never ended: {seen:?}");
}
