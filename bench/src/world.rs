//! The stand-in a benchmark runs against: a fresh [`FakeAzure`] seeded with
//! one vault, a key with an old and a current version, servers pinned to
//! the old version, and a second key that no server uses; with the
//! [`Edge`] in front. Also the event and invocation bodies.

use std::{path::Path, time::Duration};

use anyhow::Result;
use serde_json::{Value, json};
use standin::azure::{FakeAzure, KeyVersionSpec, ServerBehaviour, ServerSpec};

use crate::edge::Edge;

pub const SUB: &str = "00000000-0000-0000-0000-000000000000";
pub const VAULT: &str = "contoso-kv.vault.azure.net";
/// The key the servers use.
pub const KEY: &str = "pg-cmk";
/// A key no server uses.
pub const UNUSED_KEY: &str = "unused-cmk";
pub const OLD: &str = "11111111111111111111111111111111";
pub const CURRENT: &str = "22222222222222222222222222222222";

pub struct World {
    pub fake: FakeAzure,
    pub edge: Edge,
    pub server_ids: Vec<String>,
}

impl World {
    /// A stand-in with `servers` servers on `KEY`'s old version.
    pub async fn start(servers: usize, dir: &Path) -> Result<World> {
        let fake = FakeAzure::start().await;
        let edge = Edge::start(&fake, VAULT, dir).await?;
        let spec = |version: &str, created: i64| KeyVersionSpec {
            created: Some(created),
            ..KeyVersionSpec::with_version(version)
        };
        fake.add_key_version(VAULT, KEY, spec(OLD, 1_760_000_000));
        fake.add_key_version(VAULT, KEY, spec(CURRENT, 1_770_000_000));
        fake.add_key_version(VAULT, UNUSED_KEY, spec(CURRENT, 1_770_000_000));
        let server_ids = (0..servers)
            .map(|i| {
                let server = ServerSpec {
                    name: format!("pg-bench-{i:04}"),
                    resource_group: "rg-bench".into(),
                    ..ServerSpec::default()
                }
                .with_primary_key(&key_uri(KEY, OLD));
                let id = server.id();
                fake.add_server(server);
                id
            })
            .collect();
        Ok(World {
            fake,
            edge,
            server_ids,
        })
    }

    /// Every server's update operation lasts `duration` and ends at the
    /// first poll after it; 202 answers and running operations carry
    /// `Retry-After: retry_after_secs`.
    pub fn set_operation(&self, duration: Duration, retry_after_secs: u64) {
        self.fake.set_retry_after(retry_after_secs);
        for id in &self.server_ids {
            self.fake.set_server_behaviour(
                id,
                ServerBehaviour {
                    op_polls: 0,
                    op_duration: duration,
                    ..ServerBehaviour::default()
                },
            );
        }
    }

    /// How many servers name `CURRENT` as their primary key now.
    pub fn servers_on_current(&self) -> usize {
        let current = key_uri(KEY, CURRENT);
        self.server_ids
            .iter()
            .filter(|id| {
                self.fake.server(id).is_some_and(|s| {
                    s["properties"]["dataEncryption"]["primaryKeyURI"]
                        .as_str()
                        .is_some_and(|u| u.eq_ignore_ascii_case(&current))
                })
            })
            .count()
    }
}

pub fn key_uri(key: &str, version: &str) -> String {
    format!("https://{VAULT}/keys/{key}/{version}")
}

/// A Key Vault event in the Event Grid schema.
pub fn event(event_type: &str, object_type: &str, key: &str) -> Value {
    let kind = object_type.to_ascii_lowercase();
    json!({
        "id": "6f1c1a9e-bench-0000-0000-000000000000",
        "topic": format!("/subscriptions/{SUB}/resourceGroups/rg-sec/providers/Microsoft.KeyVault/vaults/contoso-kv"),
        "subject": key,
        "eventType": format!("Microsoft.KeyVault.{event_type}"),
        "eventTime": "2026-01-10T08:00:00Z",
        "data": {
            "Id": format!("https://{VAULT}/{kind}s/{key}/{CURRENT}"),
            "VaultName": "contoso-kv", "ObjectType": object_type, "ObjectName": key,
            "Version": CURRENT, "NBF": null, "EXP": null
        },
        "dataVersion": "1",
        "metadataVersion": "1"
    })
}

/// `KeyNewVersionCreated` for `key`.
pub fn new_version(key: &str) -> Value {
    event("KeyNewVersionCreated", "Key", key)
}

/// `SecretNewVersionCreated`: a Key Vault event that is not about a key.
pub fn secret_event() -> Value {
    event("SecretNewVersionCreated", "Secret", "app-secret")
}

/// The custom-handler request the host sends for one Event Grid event
/// (cardinality one): the event under the trigger's binding name, its
/// `data` and `sys` in Metadata.
pub fn event_invocation(event: &Value) -> Vec<u8> {
    let body = json!({
        "Data": { "event": event },
        "Metadata": {
            "data": event["data"],
            "sys": { "MethodName": "KeyEvent", "UtcNow": "2026-01-10T08:00:01Z", "RandGuid": "00000000-0000-0000-0000-000000000001" }
        }
    });
    serde_json::to_vec(&body).expect("serializable")
}
