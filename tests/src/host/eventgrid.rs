//! The Event Grid extension's webhook on the host's own listener:
//! `/runtime/webhooks/eventgrid?functionName=..` with the handshakes and the
//! per-event dispatch (functions-facts §2; azure-facts §2.3, §2.4, §3.5).
//! The system key (`code=`) is not enforced, as under Core Tools (§3.6).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use super::config::FunctionDef;
use super::{Shared, invoke, outputs, sys_metadata};

/// Origins the extension echoes in `WebHook-Allowed-Origin` (azure-facts §2.4).
const ORIGINS: [&str; 5] = [
    "eventgrid.azure.net",
    "eventgrid.azure.us",
    "eventgrid.azure.cn",
    "eventgrid.azure.eaglex.ic.gov",
    "eventgrid.azure.microsoft.scloud",
];

/// The host's HTTP routes.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/runtime/webhooks/{extension}", any(webhook))
        .route("/runtime/webhooks/{extension}/{*extra}", any(webhook_extra))
        .with_state(shared)
}

type Params = HashMap<String, String>;

async fn webhook_extra(
    state: State<Arc<Shared>>,
    Path((ext, _)): Path<(String, String)>,
    q: Query<Params>,
    m: Method,
    h: HeaderMap,
    b: Bytes,
) -> Response {
    webhook(state, Path(ext), q, m, h, b).await
}

async fn webhook(
    State(shared): State<Arc<Shared>>,
    Path(extension): Path<String>,
    Query(query): Query<Params>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !extension.eq_ignore_ascii_case("eventgrid") {
        return (
            StatusCode::NOT_FOUND,
            format!("no webhook extension '{extension}'"),
        )
            .into_response();
    }
    let name = query
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("functionName"))
        .map(|(_, v)| v.clone());
    let name = name.unwrap_or_default();
    // Case-sensitive lookup among Event Grid triggered functions (§3.5).
    let function = shared
        .config
        .functions
        .get(&name)
        .filter(|f| f.trigger().is_some_and(|t| t.is("eventGridTrigger")));
    let Some(function) = function.cloned() else {
        return (
            StatusCode::NOT_FOUND,
            format!("cannot find function: '{name}'"),
        )
            .into_response();
    };
    if method == Method::OPTIONS {
        return options(&headers);
    }
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not supported"),
        )
            .into_response();
    }
    let event_type = headers
        .get("aeg-event-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let event_type = event_type.to_ascii_lowercase();
    if event_type == "unsubscribe" {
        return StatusCode::ACCEPTED.into_response();
    }
    if event_type != "subscriptionvalidation" && event_type != "notification" {
        let msg = format!("unsupported or missing aeg-event-type '{event_type}'");
        return (StatusCode::BAD_REQUEST, msg).into_response();
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "request body is not valid JSON").into_response();
    };
    if event_type == "notification" {
        notification(shared, function, parsed).await
    } else {
        validation(&parsed)
    }
}

/// CloudEvents abuse protection (azure-facts §2.4).
fn options(headers: &HeaderMap) -> Response {
    let asked = headers
        .get("WebHook-Request-Origin")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let allowed = ORIGINS
        .iter()
        .find(|o| o.eq_ignore_ascii_case(asked.trim()))
        .unwrap_or(&ORIGINS[0]);
    let mut resp = StatusCode::OK.into_response();
    resp.headers_mut()
        .insert("WebHook-Allowed-Origin", HeaderValue::from_static(allowed));
    resp
}

/// `[0].data.validationCode` (array) or the double-encoded `data` of a
/// CloudEvents object (§2).
fn validation(body: &Value) -> Response {
    let event = match body {
        Value::Array(items) => items.first(),
        other => Some(other),
    };
    let data = event.and_then(|e| e.get("data"));
    let data = match data {
        Some(Value::String(s)) => serde_json::from_str(s).ok(),
        other => other.cloned(),
    };
    match data
        .as_ref()
        .and_then(|d| d.get("validationCode"))
        .and_then(Value::as_str)
    {
        Some(code) => (
            StatusCode::OK,
            axum::Json(json!({ "validationResponse": code })),
        )
            .into_response(),
        None => (StatusCode::BAD_REQUEST, "validationCode not found").into_response(),
    }
}

/// Non-object binding data is JSON-encoded a second time (§3 conversion rule).
fn as_binding_value(v: &Value) -> Value {
    match v {
        Value::Object(_) | Value::Null => v.clone(),
        other => Value::String(other.to_string()),
    }
}

fn single_request(function: &FunctionDef, binding: &str, event: Value) -> (Value, Value) {
    let mut data = Map::new();
    let event_data = event
        .get("data")
        .map(as_binding_value)
        .unwrap_or(Value::Null);
    data.insert(binding.to_owned(), event);
    let meta = json!({ "data": event_data, "sys": sys_metadata(&function.name) });
    (Value::Object(data), meta)
}

/// The (Data, Metadata) pairs: one per event (cardinality one), or one with
/// the whole array as a JSON string (cardinality many) (§2).
fn requests_for(function: &FunctionDef, events: Vec<Value>) -> Vec<(Value, Value)> {
    let trigger = function.trigger().expect("event grid trigger");
    let many = trigger.cardinality.as_deref();
    if many.is_some_and(|c| c.eq_ignore_ascii_case("many")) {
        let data = json!({ &trigger.name: Value::Array(events).to_string() });
        return vec![(data, json!({ "sys": sys_metadata(&function.name) }))];
    }
    let binding = trigger.name.clone();
    events
        .into_iter()
        .map(|e| single_request(function, &binding, e))
        .collect()
}

/// Runs all invocations in parallel, routing each one's outputs as it
/// succeeds; returns the errors.
async fn run_all(
    shared: Arc<Shared>,
    function: Arc<FunctionDef>,
    requests: Vec<(Value, Value)>,
) -> Vec<String> {
    let mut set = JoinSet::new();
    for (data, meta) in requests {
        let (shared, function) = (shared.clone(), function.clone());
        set.spawn(async move {
            let outcome = invoke::call(&shared, &function.name, data, meta).await;
            if let Some(resp) = &outcome.response {
                outputs::route(&shared, &function, resp);
            }
            outcome.invocation
        });
    }
    let mut errors = Vec::new();
    while let Some(done) = set.join_next().await {
        match done {
            Ok(inv) if inv.ok => {}
            Ok(inv) => errors.push(inv.error.unwrap_or_default()),
            Err(e) => errors.push(e.to_string()),
        }
    }
    errors
}

/// Dispatches and awaits every invocation: 202 when all succeed, else 500
/// with the error, so Event Grid redelivers the whole batch (§2).
async fn notification(shared: Arc<Shared>, function: FunctionDef, body: Value) -> Response {
    let events = match body {
        Value::Array(items) => items,
        other => vec![other],
    };
    let requests = requests_for(&function, events);
    let name = function.name.clone();
    let errors = run_all(shared, Arc::new(function), requests).await;
    match errors.first() {
        None => StatusCode::ACCEPTED.into_response(),
        Some(e) => {
            let msg = format!("Exception while executing function: Functions.{name}. {e}");
            (StatusCode::INTERNAL_SERVER_ERROR, msg).into_response()
        }
    }
}
