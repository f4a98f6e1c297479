//! The one HTTP entry point: records each request, answers injected faults
//! first, then routes by `Host` header and path to the services.

use std::time::Instant;

use axum::Router;
use axum::extract::{Request, State as Extract};
use axum::response::{IntoResponse, Response};

use super::fault::{Fault, take_fault};
use super::http::{Reply, Req};
use super::spec::Recorded;
use super::state::{Shared, State, lock};
use super::{arm, graph, identity, keyvault, operation};

/// The axum app serving every fake service.
pub(crate) fn router(shared: Shared) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(Extract(shared): Extract<Shared>, request: Request) -> Response {
    let req = Req::read(request).await;
    let (seq, fault) = arrive(&shared, &req);
    match fault {
        Some(f) if f.status == Fault::LOST_ANSWER => {
            return lose_answer(&shared, seq, &req, f).await;
        }
        Some(f) => return answer_fault(&shared, seq, f).await,
        None => {}
    }
    let reply = {
        let mut state = lock(&shared);
        let reply = dispatch(&mut state, &req);
        finish_record(&mut state, seq, reply.status);
        with_request_id(&mut state, reply)
    };
    reply.into_response()
}

/// Records the request and takes the fault that answers it, if any.
fn arrive(shared: &Shared, req: &Req) -> (u64, Option<Fault>) {
    let mut state = lock(shared);
    let fault = take_fault(&mut state.faults, &req.method, &req.path, &req.query);
    let seq = state.next_seq;
    state.next_seq += 1;
    let recorded = Recorded {
        method: req.method.clone(),
        host: req.host.clone(),
        path: req.path.clone(),
        query: req.query.clone(),
        headers: req.headers.clone(),
        body: req.body.clone(),
        at: Instant::now(),
        status: 0,
    };
    state.records.push((seq, recorded));
    (seq, fault)
}

fn dispatch(state: &mut State, req: &Req) -> Reply {
    operation::settle(state);
    let path = req.path.to_ascii_lowercase();
    if is_vault_host(&req.host_name()) {
        keyvault::handle(state, req)
    } else if path == "/msi/token" {
        identity::handle(state, req)
    } else if path == "/providers/microsoft.resourcegraph/resources" {
        graph::handle(state, req)
    } else if path.starts_with("/subscriptions/") {
        arm::handle(state, req)
    } else {
        let message = format!("standin serves no '{}' on host '{}'.", req.path, req.host);
        Reply::error(404, "NotFound", &message)
    }
}

/// Whether a host (lower case, no port) is a Key Vault host.
fn is_vault_host(host: &str) -> bool {
    host.ends_with(".vault.azure.net") || host.contains(".vault.")
}

async fn answer_fault(shared: &Shared, seq: u64, fault: Fault) -> Response {
    if let Some(delay) = fault.delay {
        tokio::time::sleep(delay).await;
    }
    let reply = {
        let mut state = lock(shared);
        finish_record(&mut state, seq, fault.status);
        let reply = Reply {
            status: fault.status,
            headers: fault.headers,
            body: fault.body,
        };
        with_request_id(&mut state, reply)
    };
    if reply.status == Fault::RESET {
        return reset_connection();
    }
    reply.into_response()
}

/// Serves the request as usual (the service acts on it), then drops the
/// connection instead of answering, after the fault's delay if it has one.
async fn lose_answer(shared: &Shared, seq: u64, req: &Req, fault: Fault) -> Response {
    {
        let mut state = lock(shared);
        let reply = dispatch(&mut state, req);
        finish_record(&mut state, seq, reply.status);
    }
    if let Some(delay) = fault.delay {
        tokio::time::sleep(delay).await;
    }
    reset_connection()
}

/// Drops the connection without answering. Unwinding out of the handler
/// ends the connection task, which closes the socket; `resume_unwind` does
/// not run the panic hook, so nothing is printed. Builds that abort on
/// panic get a `502` with `Connection: close` instead.
fn reset_connection() -> Response {
    if cfg!(panic = "unwind") {
        std::panic::resume_unwind(Box::new("standin: injected connection reset"));
    }
    Reply::error(502, "ConnectionReset", "standin: injected connection reset")
        .with_header("Connection", "close")
        .into_response()
}

fn finish_record(state: &mut State, seq: u64, status: u16) {
    if let Some((_, recorded)) = state.records.iter_mut().rev().find(|(s, _)| *s == seq) {
        recorded.status = status;
    }
}

/// Adds a fresh `x-ms-request-id`, as every Azure service sends one.
fn with_request_id(state: &mut State, reply: Reply) -> Reply {
    if reply.has_header("x-ms-request-id") {
        return reply;
    }
    let id = state.guid();
    reply.with_header("x-ms-request-id", id)
}
