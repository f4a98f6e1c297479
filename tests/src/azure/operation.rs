//! Long-running update operations started by a server PATCH, and the two
//! URLs clients poll: `azureAsyncOperation/{id}` and `operationResults/{id}`.

use std::time::Instant;

use serde_json::{Value, json};

use super::http::Reply;
use super::server::ArmError;
use super::spec::{OpOutcome, ServerBehaviour};
use super::state::{State, now_rfc3339};

/// The api-version the real service puts in its polling URLs.
const POLL_API_VERSION: &str = "2025-06-01-preview";

/// One update operation.
#[derive(Debug, Clone)]
pub(crate) struct Operation {
    pub id: String,
    /// Lower-cased id of the server being updated.
    pub server: String,
    pub subscription: String,
    pub location: String,
    /// The PATCH body.
    pub body: Value,
    pub started: Instant,
    pub start_time: String,
    /// The server's behaviour when the PATCH arrived.
    pub behaviour: ServerBehaviour,
    /// How many polls have answered `InProgress`.
    pub in_progress_answers: u32,
    /// Set once the operation is over.
    pub result: Option<OpResult>,
}

/// How an operation ended.
#[derive(Debug, Clone)]
pub(crate) struct OpResult {
    pub status: &'static str,
    pub error: Option<ArmError>,
    pub end_time: String,
}

/// Starts an update of the server with this lower-cased id and answers the
/// PATCH: 202 with the polling URLs.
pub(crate) fn start(state: &mut State, server_key: &str, body: Value) -> Reply {
    let id = state.guid();
    let Some(server) = state.servers.get_mut(server_key) else {
        return Reply::error(404, "ResourceNotFound", "The server was not found.");
    };
    server.op = Some(id.clone());
    server.spec.state = "Updating".to_owned();
    let op = Operation {
        id: id.clone(),
        server: server_key.to_owned(),
        subscription: server.spec.subscription.clone(),
        location: server.spec.location.clone(),
        body,
        started: Instant::now(),
        start_time: now_rfc3339(),
        behaviour: server.behaviour.clone(),
        in_progress_answers: 0,
        result: None,
    };
    let reply = Reply::empty(202)
        .with_header(
            "Azure-AsyncOperation",
            op_url(state, &op, "azureAsyncOperation"),
        )
        .with_header("Location", op_url(state, &op, "operationResults"));
    let reply = with_retry_after(state, reply);
    state.ops.insert(id.to_ascii_lowercase(), op);
    reply
}

/// `GET .../azureAsyncOperation/{id}`: always 200 with the status document.
pub(crate) fn status(state: &mut State, subscription: &str, op_id: &str) -> Reply {
    let Some(op) = poll(state, subscription, op_id) else {
        return not_found(op_id);
    };
    let running = op.result.is_none();
    let reply = Reply::json(200, status_body(&op));
    if running {
        with_retry_after(state, reply)
    } else {
        reply
    }
}

/// `GET .../operationResults/{id}`: 202 while running, then the server
/// (200) or the operation's error (400).
pub(crate) fn result(state: &mut State, subscription: &str, op_id: &str) -> Reply {
    let Some(op) = poll(state, subscription, op_id) else {
        return not_found(op_id);
    };
    match &op.result {
        None => with_retry_after(
            state,
            Reply::empty(202).with_header("Location", op_url(state, &op, "operationResults")),
        ),
        Some(OpResult {
            error: Some((code, message)),
            ..
        }) => Reply::error(400, code, message),
        Some(_) => match state.servers.get(&op.server) {
            Some(server) => Reply::json(200, server.body(&state.keys)),
            None => Reply::error(404, "ResourceNotFound", "The server no longer exists."),
        },
    }
}

/// The reply with the configured `Retry-After`, unless it is switched off.
fn with_retry_after(state: &State, reply: Reply) -> Reply {
    match state.retry_after {
        Some(secs) => reply.with_header("Retry-After", secs.to_string()),
        None => reply,
    }
}

/// Ends every running operation that has run long enough to end on its own
/// ([`State::unpolled_finish`]): the service does not wait for a client to
/// poll, so an update whose client died still takes effect.
pub(crate) fn settle(state: &mut State) {
    let Some(after) = state.unpolled_finish else {
        return;
    };
    let due: Vec<String> = state
        .ops
        .iter()
        .filter(|(_, op)| {
            let ran = op.started.elapsed();
            op.result.is_none() && ran >= after && ran >= op.behaviour.op_duration
        })
        .map(|(key, _)| key.clone())
        .collect();
    for key in due {
        finish(state, &key);
    }
}

/// Advances an operation by one poll and returns a copy of it.
fn poll(state: &mut State, subscription: &str, op_id: &str) -> Option<Operation> {
    let key = op_id.to_ascii_lowercase();
    let op = state.ops.get_mut(&key)?;
    if !op.subscription.eq_ignore_ascii_case(subscription) {
        return None;
    }
    let polls_done = op.in_progress_answers >= op.behaviour.op_polls;
    let time_done = op.started.elapsed() >= op.behaviour.op_duration;
    if op.result.is_none() && !(polls_done && time_done) {
        op.in_progress_answers += 1;
    } else if op.result.is_none() {
        finish(state, &key);
    }
    state.ops.get(&key).cloned()
}

/// Ends an operation: applies the PATCH or not, frees the server.
fn finish(state: &mut State, key: &str) {
    let State {
        ops, servers, keys, ..
    } = state;
    let Some(op) = ops.get_mut(key) else { return };
    let outcome = match (servers.get_mut(&op.server), &op.behaviour.outcome) {
        (None, _) => Err((
            "ResourceNotFound".to_owned(),
            "The server no longer exists.".to_owned(),
        )),
        (Some(_), OpOutcome::Failed { code, message }) => Err((code.clone(), message.clone())),
        (Some(_), OpOutcome::Canceled) => Err((
            "OperationCanceled".to_owned(),
            "The operation was canceled.".to_owned(),
        )),
        (Some(_), OpOutcome::Succeeded) if op.behaviour.ignore_patch => Ok(()),
        (Some(server), OpOutcome::Succeeded) => server.apply_patch(&op.body, keys),
    };
    let status = match (&outcome, &op.behaviour.outcome) {
        (Ok(()), _) => "Succeeded",
        (Err(_), OpOutcome::Canceled) => "Canceled",
        (Err(_), _) => "Failed",
    };
    op.result = Some(OpResult {
        status,
        error: outcome.err(),
        end_time: now_rfc3339(),
    });
    if let Some(server) = servers.get_mut(&op.server) {
        server.op = None;
        if server.spec.state == "Updating" {
            server.spec.state = "Ready".to_owned();
        }
    }
}

/// The ARM operation status document.
fn status_body(op: &Operation) -> Value {
    let id = format!(
        "/subscriptions/{}/providers/Microsoft.DBforPostgreSQL/locations/{}/azureAsyncOperation/{}",
        op.subscription, op.location, op.id
    );
    let mut body = json!({ "id": id, "name": op.id, "startTime": op.start_time });
    let Some(result) = &op.result else {
        body["status"] = json!("InProgress");
        body["percentComplete"] = json!(0);
        return body;
    };
    body["status"] = json!(result.status);
    body["endTime"] = json!(result.end_time);
    match &result.error {
        Some((code, message)) => body["error"] = json!({ "code": code, "message": message }),
        None => body["percentComplete"] = json!(100),
    }
    body
}

fn op_url(state: &State, op: &Operation, kind: &str) -> String {
    format!(
        "{}/subscriptions/{}/providers/Microsoft.DBforPostgreSQL/locations/{}/{kind}/{}?api-version={POLL_API_VERSION}",
        state.base_url(),
        op.subscription,
        op.location,
        op.id
    )
}

fn not_found(op_id: &str) -> Reply {
    let message = format!("The operation '{op_id}' was not found.");
    Reply::error(404, "OperationNotFound", &message)
}
