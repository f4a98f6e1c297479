//! The timer trigger function: the safety net for missed events and for
//! servers that were Stopped when their key rotated. It lists every server
//! in scope that uses a Key Vault key (Resource Graph), reads each key's
//! current version once (Key Vault), and queues the servers that are behind
//! through the same queue and per-server logic as events.
//!
//! Cost when nothing drifted: one Resource Graph page per 1000 servers and
//! one Key Vault read per key; no Resource Manager call at all.

use std::collections::BTreeSet;

use serde_json::Value;
use tracing::{Instrument, Level, info_span};

use crate::{
    app::AppState,
    arm::subscription_of,
    assess::KeyCache,
    graph::{Candidate, GraphClient},
    http::{AzureError, Budget, Http},
    key_id::KeyId,
    keyvault::KeyVaultClient,
    plan::{QUEUE_OUTPUT, finish, now},
    policy::check_key,
    protocol::{Invocation, Reply},
    rotate::RotationMessage,
};

/// Handles one timer invocation.
pub async fn handle_timer(state: &AppState, _invocation: &Invocation) -> Reply {
    async {
        match state.http() {
            Ok(http) => match sweep(state, http).await {
                Ok((messages, summary)) => finish(Level::INFO, Reply::done(), summary)
                    .output(QUEUE_OUTPUT, Value::Array(messages)),
                Err(e) => finish(
                    Level::WARN,
                    Reply::retry(),
                    format!("reconcile failed, next run retries: {e}"),
                ),
            },
            Err(e) => finish(
                Level::WARN,
                Reply::retry(),
                format!("reconcile: no Azure client: {e}"),
            ),
        }
    }
    .instrument(info_span!("reconcile"))
    .await
}

/// Lists the servers in scope and returns the queue messages for those
/// behind their key's current usable version, and a summary line.
async fn sweep(state: &AppState, http: &Http) -> Result<(Vec<Value>, String), AzureError> {
    let config = &state.config;
    let budget = Budget::new(config.operation_budget);
    let candidates = GraphClient::new(http, config).find_all(&budget).await?;
    let in_scope: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| subscription_of(&c.id).is_some_and(|s| config.subscriptions.contains(&s)))
        .collect();

    let vault = KeyVaultClient::new(http, config);
    let cache = KeyCache::default();
    let mut keys = BTreeSet::new();
    let mut behind = BTreeSet::new();
    let mut uncovered = 0;
    for candidate in &in_scope {
        for problem in candidate.uncovered(&config.keyvault_suffixes) {
            tracing::warn!("{problem}");
            uncovered += 1;
        }
        for (_, key) in candidate.keys() {
            let Some(version) = key.version.clone() else {
                continue;
            };
            if key.check_vault(&config.keyvault_suffixes).is_err() {
                continue;
            }
            let versionless = KeyId {
                version: None,
                ..key.clone()
            };
            keys.insert(versionless.to_string());
            let Some(current) = usable_version(&vault, &cache, &versionless, &budget).await? else {
                continue;
            };
            if current != version {
                behind.insert((candidate.id.clone(), versionless.to_string()));
            }
        }
    }

    let messages = behind
        .iter()
        .map(|(id, key)| {
            RotationMessage {
                server_id: id.clone(),
                key_id: key.clone(),
                event_id: "reconcile".into(),
            }
            .to_value()
        })
        .collect();
    let mut summary = format!(
        "{} server(s) in scope on {} pinned key(s); {} behind and queued",
        in_scope.len(),
        keys.len(),
        behind.len()
    );
    if uncovered > 0 {
        summary.push_str(&format!(
            "; {uncovered} key reference(s) not covered (logged above)"
        ));
    }
    Ok((messages, summary))
}

/// The key's current version if it may be used now; `None` (logged once per
/// key) when it may not, or when the key is gone.
async fn usable_version(
    vault: &KeyVaultClient<'_>,
    cache: &KeyCache,
    key: &KeyId,
    budget: &Budget,
) -> Result<Option<String>, AzureError> {
    let first_read = !cache.contains(key);
    let bundle = match cache.get(vault, key, budget).await {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            if first_read {
                tracing::error!(key = %key, "key does not exist (any more); servers pinned to it need attention");
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    if let Err(reason) = check_key(&bundle, now()) {
        if first_read {
            tracing::warn!(key = %key, %reason, "current version cannot be used; servers stay where they are");
        }
        return Ok(None);
    }
    Ok(bundle.key_id()?.version)
}
