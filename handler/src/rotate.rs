//! The queue trigger function: one server per message. It reads the server
//! and the key's current version, decides, PATCHes the whole
//! `dataEncryption` block, follows the operation, and reads the server back
//! to check the result. Every decision comes from Azure's state now, so a
//! duplicate or stale message does no harm.
//!
//! Answers: 200 when the server is right, needs nothing, or needs a person
//! (Stopped, Inaccessible, a key version that will never be usable: logged);
//! 500 when trying again later can help (busy server, throttling, an
//! operation that failed or did not verify), so the queue delivers again.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{Instrument, Level, info_span};

use crate::{
    app::AppState,
    arm::{ArmClient, OperationEnd, PatchAccepted, subscription_of},
    assess::{Change, Decision, Disposition, KeyCache, assess},
    http::{AzureError, Budget, Http},
    key_id::KeyId,
    keyvault::KeyVaultClient,
    plan::finish,
    policy::{FlexibleServer, Slot, patch_body, verify},
    protocol::{Invocation, Reply},
};

/// Name of the trigger binding in `RotateServer/function.json`.
pub const MESSAGE_BINDING: &str = "message";

/// A queue message: which server to bring onto the current version of
/// which key. It carries no version: the target is read at decision time.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RotationMessage {
    pub server_id: String,
    pub key_id: String,
    /// The event that caused the message, for the logs only.
    #[serde(default)]
    pub event_id: String,
}

impl RotationMessage {
    pub fn new(server_id: &str, key: &KeyId, event_id: &str) -> RotationMessage {
        RotationMessage {
            server_id: server_id.to_string(),
            key_id: KeyId {
                version: None,
                ..key.clone()
            }
            .to_string(),
            event_id: event_id.to_string(),
        }
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What happened to one server.
#[derive(Debug)]
pub enum Outcome {
    /// Updated and verified.
    Rotated(String),
    /// Nothing to do.
    Skipped(String),
    /// Left alone; a person must act.
    Reported(String),
    /// Try again later.
    Retry(String),
}

/// Handles one queue message.
pub async fn handle_message(state: &AppState, invocation: &Invocation) -> Reply {
    let dequeue_count = invocation.metadata_text("DequeueCount").unwrap_or_default();
    let message = invocation
        .input(MESSAGE_BINDING)
        .ok_or_else(|| "invocation carries no message".to_string())
        .and_then(|v| {
            serde_json::from_value::<RotationMessage>(v)
                .map_err(|e| format!("malformed message: {e}"))
        });
    let (message, key) = match message.and_then(|m| check_message(state, m)) {
        Ok(ok) => ok,
        Err(reason) => return finish(Level::WARN, Reply::done(), reason),
    };

    let name = message
        .server_id
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let span = info_span!("server", server.name = %name, server.id = %message.server_id,
        event.id = %message.event_id, key.vault = %key.vault, key.name = %key.name,
        key.version = tracing::field::Empty, dequeue_count = %dequeue_count);
    async {
        let outcome = match state.http() {
            Ok(http) => rotate_server(state, http, &message.server_id, &key).await,
            Err(e) => Outcome::Retry(format!("no Azure client: {e}")),
        };
        match outcome {
            Outcome::Rotated(m) | Outcome::Skipped(m) => finish(Level::INFO, Reply::done(), m),
            Outcome::Reported(m) => finish(Level::ERROR, Reply::done(), m),
            Outcome::Retry(m) => finish(Level::WARN, Reply::retry(), format!("will retry: {m}")),
        }
    }
    .instrument(span)
    .await
}

/// Refuses messages that name a server outside the configured
/// subscriptions or a vault outside the configured suffixes.
fn check_message(
    state: &AppState,
    message: RotationMessage,
) -> Result<(RotationMessage, KeyId), String> {
    let in_scope = subscription_of(&message.server_id)
        .is_some_and(|s| state.config.subscriptions.contains(&s));
    if !in_scope {
        return Err(format!(
            "refused message: {} is not a server in a configured subscription",
            message.server_id
        ));
    }
    let key = KeyId::parse(&message.key_id).map_err(|e| format!("refused message: keyId: {e}"))?;
    key.check_vault(&state.config.keyvault_suffixes)
        .map_err(|e| format!("refused message: {e}"))?;
    Ok((
        message,
        KeyId {
            version: None,
            ..key
        },
    ))
}

async fn rotate_server(state: &AppState, http: &Http, server_id: &str, key: &KeyId) -> Outcome {
    let config = &state.config;
    let budget = Budget::new(config.operation_budget);
    let arm = ArmClient::new(http, config);
    let vault = KeyVaultClient::new(http, config);
    let cache = KeyCache::default();

    let assessment = match assess(
        &arm,
        &vault,
        &cache,
        server_id,
        key,
        config.opt_in_tag.as_ref(),
        &budget,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return failed("reading the server and the key", e),
    };
    let message = assessment.describe();
    match (
        assessment.disposition(),
        &assessment.decision,
        &assessment.server,
    ) {
        (Disposition::Update, Decision::Update { changes }, Some(server)) => {
            apply(&arm, server, changes, &budget).await
        }
        (Disposition::Report, ..) => Outcome::Reported(message),
        (Disposition::Retry, ..) => Outcome::Retry(message),
        _ => Outcome::Skipped(message),
    }
}

/// Sends the update for `changes`, follows the operation and reads the
/// server back to verify. Used by the queue function and the operator CLI.
pub async fn apply(
    arm: &ArmClient<'_>,
    server: &FlexibleServer,
    changes: &[Change],
    budget: &Budget,
) -> Outcome {
    let targets: Vec<(Slot, KeyId)> = changes.iter().map(|c| (c.slot, c.to.clone())).collect();
    let from = changes
        .iter()
        .map(|c| c.from.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    update(arm, server, &targets, budget, &from).await
}

async fn update(
    arm: &ArmClient<'_>,
    server: &FlexibleServer,
    changes: &[(Slot, KeyId)],
    budget: &Budget,
    from: &str,
) -> Outcome {
    let body = patch_body(server, changes);
    let to = changes
        .iter()
        .map(|(s, k)| format!("{}={k}", s.uri_field()))
        .collect::<Vec<_>>()
        .join(", ");
    tracing::info!(from, to = %to, "updating data encryption");
    match arm.patch_server(&server.id, &body, budget).await {
        Ok(PatchAccepted::Done) => {}
        Ok(PatchAccepted::Running {
            status_url,
            retry_after,
        }) => {
            match arm
                .wait_for_operation(&status_url, retry_after, budget)
                .await
            {
                Ok(OperationEnd::Succeeded) => {}
                Ok(OperationEnd::Failed {
                    status,
                    code,
                    message,
                }) => {
                    return Outcome::Retry(format!(
                        "update of {} ended {status}: {code} {message}",
                        server.name
                    ));
                }
                Ok(OperationEnd::StillRunning) => {
                    return Outcome::Retry(format!(
                        "update of {} still running at the end of the budget",
                        server.name
                    ));
                }
                Err(e) => return failed("following the update", e),
            }
        }
        Err(e) => return failed("sending the update", e),
    }

    let after = match arm.get_server(&server.id, budget).await {
        Ok(s) => s,
        Err(e) => return failed("reading the server back", e),
    };
    match verify(&after, changes) {
        Ok(()) => Outcome::Rotated(format!("{} rotated: {to} (verified)", server.name)),
        Err(problem) => Outcome::Retry(format!(
            "update of {} reported success but did not take effect: {problem}",
            server.name
        )),
    }
}

fn failed(step: &str, e: AzureError) -> Outcome {
    if e.is_retryable() {
        Outcome::Retry(format!("{step}: {e}"))
    } else {
        Outcome::Reported(format!("{step}: {e}"))
    }
}
