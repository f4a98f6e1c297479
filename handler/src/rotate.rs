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

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::{Instrument, Level, info_span};

use crate::{
    app::AppState,
    arm::{ArmClient, OperationEnd, PatchAccepted, subscription_of},
    assess::{Assessment, Change, Decision, Disposition, KeyCache, assess},
    http::{AzureError, Budget, CORRELATION_ID, Http},
    key_id::KeyId,
    keyvault::KeyVaultClient,
    plan::finish,
    policy::{FlexibleServer, Slot, patch_body, verify},
    protocol::{Invocation, Reply},
};

/// A decision older than this is checked against a fresh read before the
/// update is sent.
const FRESH_READ_AFTER: Duration = Duration::from_secs(2);

/// PATCHes one delivery may send to a server that keeps answering "another
/// operation in progress"; then the queue delivers the message again later
/// (field case fc-10: no PATCH storm against a busy server).
const MAX_WRITES_PER_DELIVERY: u32 = 2;

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
    /// The server is busy; look again later (the loop in `rotate_server`
    /// does, within the budget).
    Busy(String),
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
    let correlation = correlation_id();
    let span = info_span!("server", server.name = %name, server.id = %message.server_id,
        event.id = %message.event_id, key.vault = %key.vault, key.name = %key.name,
        key.version = tracing::field::Empty, dequeue_count = %dequeue_count,
        correlation.id = %correlation);
    async {
        let outcome = match state.http() {
            Ok(http) => {
                let rotation = rotate_server(state, http, &message.server_id, &key);
                CORRELATION_ID.scope(correlation, rotation).await
            }
            Err(e) => Outcome::Retry(format!("no Azure client: {e}")),
        };
        match outcome {
            Outcome::Rotated(m) | Outcome::Skipped(m) => finish(Level::INFO, Reply::done(), m),
            Outcome::Reported(m) => finish(Level::ERROR, Reply::done(), m),
            Outcome::Retry(m) | Outcome::Busy(m) => {
                finish(Level::WARN, Reply::retry(), format!("will retry: {m}"))
            }
        }
    }
    .instrument(span)
    .await
}

/// A GUID-shaped id, unique per process and time, for
/// `x-ms-correlation-request-id`.
fn correlation_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = u64::from(std::process::id());
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        nanos >> 32,
        (nanos >> 16) & 0xffff,
        nanos & 0xfff,
        pid & 0xfff,
        (n << 16 | (pid >> 12) & 0xffff) & 0xffff_ffff_ffff
    )
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

    let mut writes = 0;
    loop {
        let outcome = match assess(
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
            Ok(assessment) => {
                if matches!(assessment.decision, Decision::Update { .. }) {
                    writes += 1;
                }
                act(&arm, &assessment, &budget).await
            }
            Err(e) => failed("reading the server and the key", e),
        };
        // A busy server (another operation, or this update held by another
        // instance): look again at a calm pace within the budget instead of
        // spending the message's deliveries in a few minutes.
        match outcome {
            Outcome::Busy(reason)
                if writes < MAX_WRITES_PER_DELIVERY && budget.allows(config.busy_poll) =>
            {
                tracing::info!(
                    "{reason}; looking again in {} ms",
                    config.busy_poll.as_millis()
                );
                tokio::time::sleep(config.busy_poll).await;
            }
            other => return other,
        }
    }
}

/// Carries out one assessment: the update when one is due, else the
/// outcome its decision calls for.
async fn act(arm: &ArmClient<'_>, assessment: &Assessment, budget: &Budget) -> Outcome {
    let message = assessment.describe();
    match (
        assessment.disposition(),
        &assessment.decision,
        &assessment.server,
    ) {
        (Disposition::Update, Decision::Update { changes }, Some(server)) => {
            apply(arm, server, changes, assessment.read_at, budget).await
        }
        (_, Decision::Busy { .. }, _) => Outcome::Busy(message),
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
    read_at: Instant,
    budget: &Budget,
) -> Outcome {
    let targets: Vec<(Slot, KeyId)> = changes.iter().map(|c| (c.slot, c.to.clone())).collect();
    let from = changes
        .iter()
        .map(|c| c.from.to_string())
        .collect::<Vec<_>>()
        .join(", ");

    // A decision that took long (throttling waits on Key Vault, or an
    // operator who took time to confirm) rests on an old read: another
    // instance may have updated the server meanwhile, and a PATCH built from
    // the first read could repeat that update or put back settings changed
    // since. Read once more then; a quick decision writes on its own read.
    if read_at.elapsed() < FRESH_READ_AFTER {
        return update(arm, server, &targets, budget, &from).await;
    }
    let fresh = match arm.get_server(&server.id, budget).await {
        Ok(s) => s,
        Err(e) if e.is_not_found() => {
            return Outcome::Skipped(format!("server {} does not exist (any more)", server.id));
        }
        Err(e) => return failed("reading the server before the update", e),
    };
    if verify(&fresh, &targets).is_ok() {
        return Outcome::Skipped(format!(
            "{} already uses the key's current version (updated meanwhile)",
            server.name
        ));
    }
    if fresh.state != server.state || settings(&fresh) != settings(server) {
        return Outcome::Retry(format!(
            "{} changed while its update was being decided; the next delivery decides again",
            server.name
        ));
    }
    update(arm, &fresh, &targets, budget, &from).await
}

/// The `dataEncryption` settings, without the read-only key status fields.
fn settings(server: &FlexibleServer) -> Vec<(&String, &Value)> {
    server
        .data_encryption
        .iter()
        .filter(|(name, _)| !name.ends_with("EncryptionKeyStatus"))
        .collect()
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
        // The update was accepted; only its status URL points elsewhere.
        // Never call it, and never drop the message: the next delivery
        // reads the server and decides from what it shows.
        Ok(PatchAccepted::Unfollowable { status_url }) => {
            return Outcome::Retry(format!(
                "the update of {} was accepted, but its status URL {status_url} is not under CMK_ARM_ENDPOINT, so it was not followed; the next delivery reads the server",
                server.name
            ));
        }
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
                    let text =
                        format!("update of {} ended {status}: {code} {message}", server.name);
                    return if crate::http::is_busy_code(&code) {
                        Outcome::Busy(text)
                    } else {
                        Outcome::Retry(text)
                    };
                }
                Ok(OperationEnd::StillRunning) => {
                    return Outcome::Retry(format!(
                        "update of {} still running at the end of the budget",
                        server.name
                    ));
                }
                // The update was accepted and its fate is unknown (an
                // operation URL that answers 404, say): never drop the
                // message here; the next delivery reads the server and
                // decides from what it shows.
                Err(e) => {
                    return Outcome::Retry(format!("following the update of {}: {e}", server.name));
                }
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
    if e.is_busy() {
        Outcome::Busy(format!("{step}: {e}"))
    } else if e.is_retryable() {
        Outcome::Retry(format!("{step}: {e}"))
    } else {
        Outcome::Reported(format!("{step}: {e}"))
    }
}
