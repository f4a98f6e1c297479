//! The decision for one server and one key, made from Azure's state now:
//! read the server, find its references to the key, read the key's current
//! version, and decide. Reads only; `rotate` acts on the decision, and the
//! operator CLI and the status report show it.

use std::{collections::HashMap, sync::Mutex};

use crate::{
    arm::ArmClient,
    http::{AzureError, Budget},
    key_id::KeyId,
    keyvault::{KeyBundle, KeyVaultClient},
    plan::now,
    policy::{FlexibleServer, Slot, StateClass, Unusable, check_key, classify_state},
};

/// One key reference to move: which slot, from which version, to which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub slot: Slot,
    pub from: KeyId,
    pub to: KeyId,
}

/// What should happen to a server for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// The server no longer exists.
    Gone,
    /// An opt-in tag is configured and the server does not carry it.
    NotOptedIn,
    /// Neither key URI names the key.
    NotUsingKey,
    /// Every reference to the key is version-less: the service follows it.
    FollowsLatest { key_status: Option<String> },
    /// The key's current version may not be set on a server.
    KeyUnusable { target: KeyId, reason: Unusable },
    /// Already on the key's current version.
    UpToDate { target: KeyId },
    /// On the current version, but Inaccessible or Disabled: the key's
    /// access must be restored; no update can help.
    UnhealthyOnCurrent { state: String, target: KeyId },
    /// Key Vault does not know the version the server names (replica lag
    /// or a wrong vault): which version is newer cannot be told.
    UnknownVersion { slot: Slot, on: KeyId },
    /// On a version created after the one Key Vault calls current.
    NewerThanCurrent {
        slot: Slot,
        on: KeyId,
        target: KeyId,
    },
    /// Behind, but busy or in transition: look again later.
    Busy { state: String, changes: Vec<Change> },
    /// Behind, but Stopped, Inaccessible or Disabled: a person must act.
    Untouchable { state: String, changes: Vec<Change> },
    /// Behind, but the service would reject the update.
    ConfigProblem {
        problem: String,
        changes: Vec<Change>,
    },
    /// Behind and Ready: update these references.
    Update { changes: Vec<Change> },
}

/// What the caller does with a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Nothing to do.
    Nothing,
    /// Leave it; a person must act (logged at error level).
    Report,
    /// Try again later.
    Retry,
    /// Send the update.
    Update,
}

/// A server, as read, with the decision for one key.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub server_id: String,
    pub server: Option<FlexibleServer>,
    pub decision: Decision,
    /// When the server was read.
    pub read_at: std::time::Instant,
}

impl Assessment {
    /// The server's name (from the id when the server is gone).
    pub fn name(&self) -> &str {
        match &self.server {
            Some(s) => &s.name,
            None => self.server_id.rsplit('/').next().unwrap_or_default(),
        }
    }

    pub fn disposition(&self) -> Disposition {
        match &self.decision {
            Decision::Update { .. } => Disposition::Update,
            Decision::Busy { .. } => Disposition::Retry,
            Decision::KeyUnusable { reason, .. } if reason.retry_later() => Disposition::Retry,
            Decision::UnknownVersion { .. } => Disposition::Retry,
            Decision::KeyUnusable { .. }
            | Decision::NewerThanCurrent { .. }
            | Decision::UnhealthyOnCurrent { .. }
            | Decision::Untouchable { .. }
            | Decision::ConfigProblem { .. } => Disposition::Report,
            _ => Disposition::Nothing,
        }
    }

    /// One sentence for the logs and the operator.
    pub fn describe(&self) -> String {
        let name = self.name();
        match &self.decision {
            Decision::Gone => format!("server {} does not exist (any more)", self.server_id),
            Decision::NotOptedIn => format!("{name} does not carry the opt-in tag; not touched"),
            Decision::NotUsingKey => format!("{name} does not use this key"),
            Decision::FollowsLatest { key_status } => format!(
                "{name} uses a version-less key URI; the service follows new versions itself (key status {})",
                key_status.as_deref().unwrap_or("not shown")
            ),
            Decision::KeyUnusable { target, reason } => {
                format!("{name} stays on its version: {target} cannot be used: {reason}")
            }
            Decision::UpToDate { target } => format!("{name} already uses {target}"),
            Decision::UnhealthyOnCurrent { state, target } => format!(
                "{name} is {state} while on the key's current version {target}; restore the key's access (enabled, not expired, role on the vault) and wait for Ready"
            ),
            Decision::UnknownVersion { slot, on } => format!(
                "{name} {} is on {on}, which Key Vault does not know; not moved until it can tell which version is newer",
                slot.uri_field()
            ),
            Decision::NewerThanCurrent { slot, on, target } => format!(
                "{name} {} is on {on}, newer than the key's current version {target}; not moved back",
                slot.uri_field()
            ),
            Decision::Busy { state, changes } => {
                format!("{name} is {state}; {} waits", show_changes(changes))
            }
            Decision::Untouchable { state, changes } => format!(
                "{name} is {state} and is not touched; it should move {} once it is Ready",
                show_changes(changes)
            ),
            Decision::ConfigProblem { problem, .. } => {
                format!("{name}: data encryption configuration problem, not updated: {problem}")
            }
            Decision::Update { changes } => format!("{name} moves {}", show_changes(changes)),
        }
    }
}

/// `primaryKeyURI …/1111 → …/2222, geoBackupKeyURI …`.
pub fn show_changes(changes: &[Change]) -> String {
    changes
        .iter()
        .map(|c| format!("{} {} → {}", c.slot.uri_field(), c.from, c.to))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Key versions read during one piece of work, so that servers sharing a
/// key cost one Key Vault read.
#[derive(Default)]
pub struct KeyCache {
    bundles: Mutex<HashMap<String, KeyBundle>>,
}

impl KeyCache {
    /// True if `key` was read already.
    pub fn contains(&self, key: &KeyId) -> bool {
        let name = key.to_string().to_ascii_lowercase();
        self.bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&name)
    }

    /// The bundle for `key` (current version when it has none).
    pub async fn get(
        &self,
        vault: &KeyVaultClient<'_>,
        key: &KeyId,
        budget: &Budget,
    ) -> Result<KeyBundle, AzureError> {
        let name = key.to_string().to_ascii_lowercase();
        if let Some(bundle) = self
            .bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
        {
            return Ok(bundle.clone());
        }
        let bundle = vault.get_key(key, budget).await?;
        self.bundles
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, bundle.clone());
        Ok(bundle)
    }
}

/// Reads the server and the key and decides. `opt_in` is false when the
/// configured tag is not required (the operator named the server).
pub async fn assess(
    arm: &ArmClient<'_>,
    vault: &KeyVaultClient<'_>,
    cache: &KeyCache,
    server_id: &str,
    key: &KeyId,
    require_opt_in: Option<&crate::config::OptInTag>,
    budget: &Budget,
) -> Result<Assessment, AzureError> {
    let read_at = std::time::Instant::now();
    let server = match arm.get_server(server_id, budget).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            return Ok(Assessment {
                server_id: server_id.to_string(),
                server: None,
                decision: Decision::Gone,
                read_at,
            });
        }
        Err(e) => return Err(e),
    };
    let decision = decide(vault, cache, &server, key, require_opt_in, budget).await?;
    Ok(Assessment {
        server_id: server_id.to_string(),
        server: Some(server),
        decision,
        read_at,
    })
}

async fn decide(
    vault: &KeyVaultClient<'_>,
    cache: &KeyCache,
    server: &FlexibleServer,
    key: &KeyId,
    require_opt_in: Option<&crate::config::OptInTag>,
    budget: &Budget,
) -> Result<Decision, AzureError> {
    if !server.opted_in(require_opt_in) {
        return Ok(Decision::NotOptedIn);
    }

    // Which of its key references follow this key, and at which version.
    let slots = server.slots_using(key);
    if slots.is_empty() {
        return Ok(Decision::NotUsingKey);
    }
    let pinned: Vec<(Slot, KeyId)> = slots
        .into_iter()
        .filter(|(_, k)| k.version.is_some())
        .collect();
    if pinned.is_empty() {
        let key_status = server.key_status(Slot::Primary);
        return Ok(Decision::FollowsLatest { key_status });
    }

    // The key's current version, and whether it may be used.
    let versionless = KeyId {
        version: None,
        ..key.clone()
    };
    let current = cache.get(vault, &versionless, budget).await?;
    let target = current.key_id()?;
    tracing::Span::current().record("key.version", target.version.as_deref().unwrap_or_default());
    if let Err(reason) = check_key(&current, now()) {
        return Ok(Decision::KeyUnusable { target, reason });
    }

    // Behind? Never toward an older version.
    let stale: Vec<(Slot, KeyId)> = pinned
        .into_iter()
        .filter(|(_, k)| k.version != target.version)
        .collect();
    if stale.is_empty() {
        let state = server.state.clone();
        if classify_state(&state) == StateClass::Untouchable {
            return Ok(Decision::UnhealthyOnCurrent { state, target });
        }
        return Ok(Decision::UpToDate { target });
    }
    for (slot, on) in &stale {
        match cache.get(vault, on, budget).await {
            Ok(b)
                if b.attributes.created.unwrap_or(0) > current.attributes.created.unwrap_or(0) =>
            {
                return Ok(Decision::NewerThanCurrent {
                    slot: *slot,
                    on: on.clone(),
                    target,
                });
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                return Ok(Decision::UnknownVersion {
                    slot: *slot,
                    on: on.clone(),
                });
            }
            Err(e) => return Err(e),
        }
    }
    let version = target.version.as_deref().unwrap_or_default();
    let changes: Vec<Change> = stale
        .into_iter()
        .map(|(slot, from)| Change {
            slot,
            to: from.with_version(version),
            from,
        })
        .collect();

    // Only a Ready server with a configuration the service accepts.
    let state = server.state.clone();
    match classify_state(&state) {
        StateClass::Ready => {}
        StateClass::Busy => return Ok(Decision::Busy { state, changes }),
        StateClass::Untouchable => return Ok(Decision::Untouchable { state, changes }),
    }
    let slots: Vec<Slot> = changes.iter().map(|c| c.slot).collect();
    if let Some(problem) = server.config_problem(&slots) {
        return Ok(Decision::ConfigProblem { problem, changes });
    }
    Ok(Decision::Update { changes })
}
