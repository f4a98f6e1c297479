//! One custom-handler invocation: the request the host sends and how it
//! judges the answer (functions-facts §3 "Request sent to the handler", §4
//! "Response from the handler", §5 timeouts; azure-facts §3.2, §3.3).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::clock::{self, new_guid};
use super::config::get_ci;
use super::{Invocation, Shared};

/// The host version we pretend to be.
pub(crate) const HOST_VERSION: &str = "4.1037.0.0";

/// A finished invocation plus, on success, the response object.
pub(crate) struct Outcome {
    pub invocation: Invocation,
    pub response: Option<Map<String, Value>>,
}

/// POSTs `{"Data","Metadata"}` to `/{function}`, records and returns the result.
pub(crate) async fn call(
    shared: &Arc<Shared>,
    function: &str,
    data: Value,
    metadata: Value,
) -> Outcome {
    let id = new_guid();
    let port = shared.worker.ready_port().await;
    let url = format!("http://127.0.0.1:{port}/{function}");
    let body = json!({ "Data": data, "Metadata": metadata });
    let request = shared
        .client
        .post(url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("X-Azure-Functions-InvocationId", &id)
        .header("X-Azure-Functions-HostVersion", HOST_VERSION)
        .header("User-Agent", format!("Azure-Functions-Host/{HOST_VERSION}"))
        .body(serde_json::to_vec(&body).expect("serializable"));
    let exchange = async {
        let resp = request.send().await?;
        let status = resp.status();
        let ctype = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok::<_, reqwest::Error>((status, ctype, resp.bytes().await?))
    };
    let outcome = match shared.config.function_timeout {
        Some(limit) => match tokio::time::timeout(limit, exchange).await {
            Ok(r) => judge(function, &id, r),
            Err(_) => timed_out(shared, port, function, &id, limit),
        },
        None => judge(function, &id, exchange.await),
    };
    if let Some(resp) = &outcome.response {
        log_lines(shared, function, &id, resp);
    }
    shared
        .invocations
        .lock()
        .expect("invocations lock")
        .push(outcome.invocation.clone());
    outcome
}

fn failed(function: &str, id: &str, status: u16, error: String) -> Invocation {
    Invocation {
        function: function.to_owned(),
        invocation_id: id.to_owned(),
        status,
        content_type: None,
        body: None,
        ok: false,
        error: Some(error),
    }
}

/// §5: when functionTimeout fires the host kills and restarts the single
/// handler process, failing every in-flight invocation.
fn timed_out(
    shared: &Arc<Shared>,
    port: u16,
    function: &str,
    id: &str,
    limit: Duration,
) -> Outcome {
    let shared2 = shared.clone();
    tokio::spawn(async move {
        let restart = shared2
            .worker
            .restart_if_current(port, &shared2.client, &shared2.logs);
        if let Err(e) = restart.await {
            shared2.logs.push(format!(
                "[host] handler restart after timeout failed: {e:#}"
            ));
        }
    });
    let error = format!(
        "Timeout value of {} was exceeded by function: Functions.{function}",
        clock::timespan(limit)
    );
    Outcome {
        invocation: failed(function, id, 0, error),
        response: None,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    text
}

/// Status, Content-Type and body of the handler's answer.
type Exchange = Result<(reqwest::StatusCode, Option<String>, axum::body::Bytes), reqwest::Error>;

fn judge(function: &str, id: &str, r: Exchange) -> Outcome {
    let (status, ctype, bytes) = match r {
        Ok(parts) => parts,
        // A dropped connection (handler killed) fails the invocation (§5).
        Err(e) => {
            return Outcome {
                invocation: failed(function, id, 0, error_chain(&e)),
                response: None,
            };
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let verdict = verdict(status, ctype.as_deref(), &bytes, parsed.as_ref());
    let mut invocation = failed(function, id, status.as_u16(), String::new());
    invocation.content_type = ctype;
    invocation.body = parsed.clone();
    match verdict {
        Ok(()) => {
            invocation.ok = true;
            invocation.error = None;
            Outcome {
                invocation,
                response: parsed.and_then(|v| v.as_object().cloned()),
            }
        }
        Err(e) => {
            invocation.error = Some(e);
            Outcome {
                invocation,
                response: None,
            }
        }
    }
}

/// The JsonMediaTypeFormatter reads only `application/json` and `text/json`.
fn is_json_media_type(ctype: &str) -> bool {
    let media = ctype.split(';').next().unwrap_or("").trim();
    media.eq_ignore_ascii_case("application/json") || media.eq_ignore_ascii_case("text/json")
}

fn verdict(
    status: reqwest::StatusCode,
    ctype: Option<&str>,
    raw: &[u8],
    body: Option<&Value>,
) -> Result<(), String> {
    if !status.is_success() {
        // EnsureSuccessStatusCode(): Outputs and Logs are discarded (§3).
        let reason = status.canonical_reason().unwrap_or("");
        return Err(format!(
            "Response status code does not indicate success: {} ({reason}).",
            status.as_u16()
        ));
    }
    let media = ctype.unwrap_or("application/octet-stream");
    if !is_json_media_type(media) {
        return Err(format!(
            "No MediaTypeFormatter is available to read an object of type 'HttpScriptInvocationResult' from content with media type '{}'.",
            media.split(';').next().unwrap_or("").trim()
        ));
    }
    match body {
        None if raw.iter().all(u8::is_ascii_whitespace) => Err(hang_note("an empty body")),
        None => Err(format!(
            "response body is not valid JSON: {}",
            String::from_utf8_lossy(raw)
        )),
        Some(Value::Null) => Err(hang_note("null")),
        Some(Value::Object(map)) => check_shape(map),
        Some(other) => Err(format!(
            "Cannot deserialize HttpScriptInvocationResult from a JSON {}",
            kind(other)
        )),
    }
}

fn hang_note(what: &str) -> String {
    format!(
        "handler answered 2xx with {what}: the real host never completes such an invocation and \
         hangs until functionTimeout (azure-facts §3.3); always return a JSON object"
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Typed deserialization: `Outputs` is a dictionary, `Logs` a list of
/// strings (primitives convert, objects/arrays throw) — inferred from the
/// Newtonsoft types of `HttpScriptInvocationResult` (§4).
fn check_shape(map: &Map<String, Value>) -> Result<(), String> {
    match get_ci(map, "Outputs") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(v) => {
            return Err(format!(
                "'Outputs' must be a JSON object, got a {}",
                kind(v)
            ));
        }
    }
    match get_ci(map, "Logs") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            Ok(())
        }
        Some(v) => Err(format!("'Logs' must be an array of strings, got {v}")),
    }
}

/// Each `Logs` entry is logged by the host for the invocation (§4, §7).
fn log_lines(shared: &Shared, function: &str, id: &str, resp: &Map<String, Value>) {
    let Some(Value::Array(items)) = get_ci(resp, "Logs") else {
        return;
    };
    for item in items.iter().filter(|i| !i.is_null()) {
        let line = item
            .as_str()
            .map_or_else(|| item.to_string(), str::to_owned);
        shared
            .logs
            .push(format!("[host] {function} ({id}): {line}"));
    }
}
