//! The world a test runs in: a fake Azure seeded with a vault, a key and
//! servers, and the Functions host simulator running the real handler
//! binary with settings that point at the fake.

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};
use standin::{
    azure::{FakeAzure, KeyVersionSpec, Recorded, ServerSpec},
    host::{FunctionsHost, HostOptions, QueueStats},
};

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const VAULT: &str = "contoso-kv.vault.azure.net";
pub const KEY: &str = "pg-cmk";
pub const QUEUE: &str = "cmk-rotations";
pub const EVENT_FN: &str = "KeyEvent";
pub const SERVER_FN: &str = "RotateServer";
pub const TAG: (&str, &str) = ("cmk-rotation", "enabled");

/// Version ids used across the tests: `v(1)` is `1111…1111`.
pub fn v(n: u8) -> String {
    let digit = char::from_digit(u32::from(n), 16).expect("hex digit");
    std::iter::repeat_n(digit, 32).collect()
}

/// `https://contoso-kv.vault.azure.net/keys/pg-cmk/{version}`.
pub fn key_uri(version: &str) -> String {
    format!("https://{VAULT}/keys/{KEY}/{version}")
}

pub struct World {
    pub azure: FakeAzure,
    pub host: FunctionsHost,
}

impl World {
    /// A world with the default settings (opt-in tag on, fast polling).
    pub async fn start() -> World {
        World::start_with(&[]).await
    }

    /// A world whose handler gets `extra` settings on top of the defaults.
    pub async fn start_with(extra: &[(&str, &str)]) -> World {
        World::start_with_retry_delay(extra, Duration::from_millis(50)).await
    }

    /// A world whose host makes a failed queue message visible again after
    /// `retry_delay` (host.json's visibilityTimeout, shortened for tests).
    pub async fn start_with_retry_delay(extra: &[(&str, &str)], retry_delay: Duration) -> World {
        let azure = FakeAzure::start().await;
        let host = start_host(&azure, extra, retry_delay).await;
        World { azure, host }
    }

    /// Adds a key version to the vault; it becomes the current version.
    pub fn add_version(&self, version: &str) {
        self.azure
            .add_key_version(VAULT, KEY, KeyVersionSpec::with_version(version));
    }

    /// Adds a tagged server whose primary key is `primary`; returns its id.
    pub fn add_server(&self, name: &str, primary: &str) -> String {
        self.add_spec(
            server(name)
                .with_primary_key(primary)
                .with_tag(TAG.0, TAG.1),
        )
    }

    pub fn add_spec(&self, spec: ServerSpec) -> String {
        let id = spec.id();
        self.azure.add_server(spec);
        id
    }

    /// A field of the server's `dataEncryption` as the fake holds it now.
    pub fn encryption(&self, id: &str, field: &str) -> String {
        let server = self.azure.server(id).expect("server exists");
        server["properties"]["dataEncryption"][field]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Delivers events through the host's Event Grid webhook.
    pub async fn deliver(&self, events: &Value) -> (u16, String) {
        self.host
            .post_event_grid(EVENT_FN, events)
            .await
            .expect("host answers")
    }

    /// Runs the queue until it is empty.
    pub async fn drain(&self) -> QueueStats {
        self.host
            .run_queues(Duration::from_secs(60))
            .await
            .expect("queue runs")
    }

    /// ARM PATCHes for one server.
    pub fn patches_for(&self, id: &str) -> Vec<Recorded> {
        self.azure
            .patches()
            .into_iter()
            .filter(|r| r.path.eq_ignore_ascii_case(id))
            .collect()
    }

    /// Requests that reached ARM or Resource Graph (everything but identity
    /// and Key Vault).
    pub fn arm_requests(&self) -> Vec<Recorded> {
        self.azure
            .requests()
            .into_iter()
            .filter(|r| r.path.starts_with("/subscriptions/") || r.path.starts_with("/providers/"))
            .collect()
    }

    /// True if a handler log line contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.host.logs().iter().any(|l| l.contains(needle))
    }
}

/// A server spec in the test subscription.
pub fn server(name: &str) -> ServerSpec {
    ServerSpec {
        name: name.to_string(),
        ..ServerSpec::default()
    }
}

/// The settings that point the handler at the fake.
pub fn handler_env(azure: &FakeAzure) -> Vec<(String, String)> {
    let pairs = [
        ("CMK_SUBSCRIPTIONS", SUB.to_string()),
        ("CMK_ALLOW_HTTP", "true".into()),
        ("CMK_ARM_ENDPOINT", azure.base_url()),
        ("CMK_KEYVAULT_CONNECT_ADDRESS", azure.addr().to_string()),
        ("CMK_OPT_IN_TAG", format!("{}={}", TAG.0, TAG.1)),
        ("CMK_DEFAULT_RETRY_AFTER_SECS", "1".into()),
        ("CMK_MIN_POLL_INTERVAL_MS", "100".into()),
        ("CMK_BUSY_POLL_MS", "200".into()),
        ("CMK_RECONCILE_SCHEDULE", "0 0 */6 * * *".into()),
        ("CMK_EVENT_BUDGET_SECS", "10".into()),
        ("CMK_OPERATION_BUDGET_SECS", "20".into()),
        ("IDENTITY_ENDPOINT", azure.identity_endpoint()),
        ("IDENTITY_HEADER", FakeAzure::IDENTITY_HEADER.into()),
        ("RUST_LOG", "info,handler=debug".into()),
    ];
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

pub async fn start_host(
    azure: &FakeAzure,
    extra: &[(&str, &str)],
    retry_delay: Duration,
) -> FunctionsHost {
    let mut env = handler_env(azure);
    for (name, value) in extra {
        env.retain(|(k, _)| k != name);
        env.push((name.to_string(), value.to_string()));
    }
    let opts = HostOptions {
        app_root: repo_root().join("function-app"),
        handler_bin: PathBuf::from(env!("CARGO_BIN_EXE_handler")),
        env,
        retry_delay: Some(retry_delay),
        echo_logs: std::env::var_os("E2E_ECHO_LOGS").is_some(),
    };
    FunctionsHost::start(opts)
        .await
        .expect("host starts the handler")
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A fixture from `tests/fixtures/`.
pub fn fixture(path: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures").join(path))
        .expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A `KeyNewVersionCreated` event (Event Grid schema) for `version`.
pub fn key_event(event_type: &str, id: &str, version: &str) -> Value {
    json!({
        "id": id,
        "topic": format!("/subscriptions/{SUB}/resourceGroups/rg-contoso-sec/providers/Microsoft.KeyVault/vaults/contoso-kv"),
        "subject": KEY,
        "eventType": format!("Microsoft.KeyVault.{event_type}"),
        "eventTime": "2026-01-10T08:00:00Z",
        "data": {
            "Id": key_uri(version), "VaultName": "contoso-kv", "ObjectType": "Key",
            "ObjectName": KEY, "Version": version, "NBF": null, "EXP": null
        },
        "dataVersion": "1",
        "metadataVersion": "1"
    })
}

pub fn new_version_event(id: &str, version: &str) -> Value {
    json!([key_event("KeyNewVersionCreated", id, version)])
}
