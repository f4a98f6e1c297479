//! The Event Grid trigger function: reads a Key Vault event, checks the
//! key's current version, finds the servers that use the key, and writes one
//! queue message per server. It never waits on a server update, so it
//! answers well inside Event Grid's 30 s.
//!
//! Answers: 200 when the event is planned or can never be acted on (the
//! reason is logged); 500 when a later delivery may succeed (Key Vault or
//! Resource Graph unreachable or throttled, a version not active yet).

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tracing::{Instrument, Level, info_span};

use crate::{
    app::AppState,
    arm::subscription_of,
    event::{KeyEventKind, KeyVaultEvent, parse_event},
    graph::{Candidate, GraphClient},
    http::{AzureError, Budget},
    key_id::KeyId,
    keyvault::KeyVaultClient,
    policy::{Unusable, check_key},
    protocol::{Invocation, Reply},
    rotate::RotationMessage,
};

/// Event Grid's longest event time-to-live (`eventTimeToLiveInMinutes`
/// 1440): 24 h of redelivery.
const EVENT_GRID_RETRY_SECS: i64 = 24 * 3600;

/// Name of the trigger binding in `KeyEvent/function.json`.
pub const EVENT_BINDING: &str = "event";
/// Name of the queue output binding in `KeyEvent/function.json`.
pub const QUEUE_OUTPUT: &str = "rotations";

/// Handles one event invocation.
pub async fn handle_event(state: &AppState, invocation: &Invocation) -> Reply {
    let Some(value) = invocation.input(EVENT_BINDING) else {
        return finish(
            Level::WARN,
            Reply::done(),
            "invocation carries no event".into(),
        );
    };
    let event = match parse_event(&value) {
        Ok(e) => e,
        Err(e) => {
            let id = value.get("id").and_then(Value::as_str).unwrap_or("unknown");
            // A validation or other non-key event has another data shape.
            let event_type = ["eventType", "type"]
                .iter()
                .find_map(|f| value.get(*f)?.as_str());
            if let Some(t) = event_type.filter(|t| !t.starts_with("Microsoft.KeyVault.Key")) {
                return finish(
                    Level::INFO,
                    Reply::done(),
                    format!("ignored {t}: not a key event"),
                );
            }
            return finish(
                Level::WARN,
                Reply::done(),
                format!("malformed event {id}: {e}"),
            );
        }
    };
    let span = info_span!("event", event.id = %event.id, event.type = %event.event_type,
        key.vault = tracing::field::Empty, key.name = tracing::field::Empty, key.version = tracing::field::Empty);
    plan_event(state, event).instrument(span).await
}

async fn plan_event(state: &AppState, event: KeyVaultEvent) -> Reply {
    let Some(kind) = event.key_event_kind() else {
        let message = format!("ignored {}: {}", event.event_type, event.ignored_because());
        return finish(Level::INFO, Reply::done(), message);
    };
    let key = match KeyId::parse(&event.data.id) {
        Ok(k) => k,
        Err(e) => {
            return finish(
                Level::WARN,
                Reply::done(),
                format!("refused event {}: data.Id: {e}", event.id),
            );
        }
    };
    let span = tracing::Span::current();
    span.record("key.vault", key.vault.as_str());
    span.record("key.name", key.name.as_str());
    span.record("key.version", key.version.as_deref().unwrap_or(""));
    if let Err(e) = key.check_vault(&state.config.keyvault_suffixes) {
        return finish(
            Level::WARN,
            Reply::done(),
            format!("refused event {}: {e}", event.id),
        );
    }
    // Key Vault's events name their vault twice; an event whose two names
    // disagree was not written by Key Vault.
    let id_vault = key.vault.split('.').next().unwrap_or_default();
    if let Some(topic) = event
        .topic_vault()
        .filter(|t| !t.eq_ignore_ascii_case(id_vault))
    {
        return finish(
            Level::WARN,
            Reply::done(),
            format!(
                "refused event {}: its topic names vault {topic} but data.Id names {}",
                event.id, key.vault
            ),
        );
    }

    match plan_key(state, &key, kind, &event.id, event.data.exp).await {
        Ok(reply) => reply,
        Err(e) if e.is_retryable() => {
            finish(Level::WARN, Reply::retry(), format!("will retry: {e}"))
        }
        Err(e) => finish(
            Level::ERROR,
            Reply::done(),
            format!("cannot plan {key}: {e}"),
        ),
    }
}

async fn plan_key(
    state: &AppState,
    key: &KeyId,
    kind: KeyEventKind,
    event_id: &str,
    event_exp: Option<f64>,
) -> Result<Reply, AzureError> {
    let config = &state.config;
    let http = state.http().map_err(|detail| AzureError::Token {
        service: crate::http::Service::KeyVault,
        detail,
    })?;
    let budget = Budget::new(config.event_budget);

    let versionless = KeyId {
        version: None,
        ..key.clone()
    };
    let current = match KeyVaultClient::new(http, config)
        .get_key(&versionless, &budget)
        .await
    {
        Ok(b) => b,
        Err(e) if e.is_not_found() => {
            return Ok(finish(
                Level::WARN,
                Reply::done(),
                format!("key {versionless} does not exist (any more)"),
            ));
        }
        Err(e) => return Err(e),
    };
    let target = current.key_id()?;
    let usable = check_key(&current, now());
    if kind == KeyEventKind::NewVersionCreated
        && key.version.is_some()
        && key.version != target.version
    {
        tracing::info!(current = %target, "event names another version; the key's current version is the target");
    }
    let newer_usable = usable.is_ok() && target.version != key.version;
    if kind != KeyEventKind::NewVersionCreated && key.version.is_some() {
        let candidates = GraphClient::new(http, config)
            .find_servers(key, config.opt_in_tag.as_ref(), &budget)
            .await?;
        return Ok(plan_expiry(
            config,
            kind,
            key,
            &target,
            event_exp,
            newer_usable,
            &candidates,
            event_id,
        ));
    }
    if let Err(reason) = usable {
        let mut message = format!("current version of {versionless} cannot be used: {reason}");
        // Event Grid redelivers for 24 h at most: a version active later
        // than that is left to the Reconcile timer, not to useless retries.
        let beyond_redelivery =
            matches!(reason, Unusable::NotYetValid { nbf } if nbf - now() > EVENT_GRID_RETRY_SECS);
        if beyond_redelivery {
            message.push_str("; that is past Event Grid's longest redelivery (24 h), so the event is acknowledged and the Reconcile timer moves the servers once it is active");
        }
        let reply = if reason.retry_later() && !beyond_redelivery {
            Reply::retry()
        } else {
            Reply::done()
        };
        return Ok(finish(Level::WARN, reply, message));
    }

    let candidates = GraphClient::new(http, config)
        .find_servers(key, config.opt_in_tag.as_ref(), &budget)
        .await?;
    let messages = queue_messages(config, candidates.iter(), &versionless, event_id);
    let n = messages.len();
    let message = format!("{n} server(s) queued for {target}");
    Ok(finish(Level::INFO, Reply::done(), message).output(QUEUE_OUTPUT, Value::Array(messages)))
}

fn queue_messages<'a>(
    config: &crate::config::Config,
    candidates: impl Iterator<Item = &'a Candidate>,
    key: &KeyId,
    event_id: &str,
) -> Vec<Value> {
    candidates
        .filter(|c| subscription_of(&c.id).is_some_and(|s| config.subscriptions.contains(&s)))
        .map(|c| RotationMessage::new(&c.id, key, event_id).to_value())
        .collect()
}

/// `KeyNearExpiry` and `KeyExpired` concern one version: only servers pinned
/// to it are named and queued (they move if a newer usable version exists).
/// An unused version causes no work.
#[allow(clippy::too_many_arguments)]
fn plan_expiry(
    config: &crate::config::Config,
    kind: KeyEventKind,
    key: &KeyId,
    target: &KeyId,
    event_exp: Option<f64>,
    newer_usable: bool,
    candidates: &[Candidate],
    event_id: &str,
) -> Reply {
    let on_version: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| {
            c.keys()
                .iter()
                .any(|(_, k)| k.same_key(key) && k.version == key.version)
        })
        .collect();
    if on_version.is_empty() {
        return finish(
            Level::INFO,
            Reply::done(),
            format!("{kind:?} for {key}: no server uses this version"),
        );
    }
    let names = on_version
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let versionless = KeyId {
        version: None,
        ..key.clone()
    };
    let reply = if newer_usable {
        let messages = queue_messages(config, on_version.iter().copied(), &versionless, event_id);
        Reply::done().output(QUEUE_OUTPUT, Value::Array(messages))
    } else {
        Reply::done()
    };
    let next = if newer_usable {
        format!("queued to move to {target}")
    } else {
        "no newer usable version exists; create one (the handler never creates key versions)"
            .to_string()
    };
    match kind {
        KeyEventKind::Expired => finish(
            Level::ERROR,
            reply,
            format!(
                "{key} has expired; servers still on it (they go Inaccessible): {names}; {next}"
            ),
        ),
        _ => {
            let days = event_exp.map_or("unknown".to_string(), |e| {
                ((e as i64 - now()).max(0) / 86_400).to_string()
            });
            let level = if newer_usable {
                Level::INFO
            } else {
                Level::WARN
            };
            finish(
                level,
                reply,
                format!("{key} expires in {days} day(s); servers on it: {names}; {next}"),
            )
        }
    }
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Logs `message` once at `level` and puts it in the reply's `Logs`.
pub fn finish(level: Level, reply: Reply, message: String) -> Reply {
    match level {
        Level::ERROR => tracing::error!("{message}"),
        Level::WARN => tracing::warn!("{message}"),
        Level::INFO => tracing::info!("{message}"),
        _ => tracing::debug!("{message}"),
    }
    reply.log(message)
}
