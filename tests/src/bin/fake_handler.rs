//! A tiny custom handler used only by the Functions host simulator's own
//! tests. Each invocation's behaviour comes from a `fake` instruction in the
//! trigger payload: `event.data.fake` for Event Grid, `fake` inside the
//! (double-encoded) queue message JSON, or for an HTTP request `fake` inside
//! the JSON `Body` or the `fake` query value (JSON text). When the payload
//! has none (a timer, a GET), the env var `FAKE_FN_<FunctionName>` holds the
//! instruction as JSON; else it is `{"mode":"ok"}`. Instruction fields: `mode`
//! (`ok`, `fail`, `text`, `empty`, `fail_until`, `sleep`), `outputs`, `logs`,
//! `return` (the ReturnValue, else `{"seen": <request and headers>}`),
//! `until` (the DequeueCount from which `fail_until` succeeds and `sleep`
//! no longer sleeps), `ms` (sleep length).
//!
//! Start-up knobs: `FAKE_EXIT_CODE` (exit at once), `FAKE_STARTUP_DELAY_MS`.

use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// The `fake` instruction of an HTTP request object: JSON `Body`, then the
/// `fake` query value.
fn http_instruction(req: &serde_json::Map<String, Value>) -> Option<Value> {
    let body = req.get("Body").and_then(Value::as_str);
    let from_body = body
        .and_then(|b| serde_json::from_str::<Value>(b).ok())
        .and_then(|b| b.get("fake").cloned());
    let query = req.get("Query").and_then(|q| q.get("fake"));
    from_body.or_else(|| serde_json::from_str(query?.as_str()?).ok())
}

/// The `fake` instruction from the first Data entry, else `FAKE_FN_<function>`.
fn instruction(data: &Value, function: &str) -> Value {
    let first = data
        .as_object()
        .and_then(|d| d.values().next())
        .cloned()
        .unwrap_or(Value::Null);
    let payload = match first {
        Value::String(s) => {
            let text = serde_json::from_str::<String>(&s).unwrap_or(s);
            serde_json::from_str::<Value>(&text).unwrap_or(Value::Null)
        }
        Value::Object(req) if req.contains_key("Url") && req.contains_key("Method") => {
            json!({ "fake": http_instruction(&req) })
        }
        Value::Object(event) => event.get("data").cloned().unwrap_or(Value::Null),
        _ => Value::Null,
    };
    let from_env = || {
        let text = std::env::var(format!("FAKE_FN_{function}")).ok()?;
        serde_json::from_str::<Value>(&text).ok()
    };
    payload
        .get("fake")
        .filter(|f| !f.is_null())
        .cloned()
        .or_else(from_env)
        .unwrap_or_else(|| json!({"mode": "ok"}))
}

fn header(h: &HeaderMap, name: &str) -> Value {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |v| json!(v))
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn invoke(Path(function): Path<String>, headers: HeaderMap, body: String) -> Response {
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let fake = instruction(&request["Data"], &function);
    println!(
        "invoked {function} {}",
        header(&headers, "x-azure-functions-invocationid")
    );
    let seen = json!({
        "request": request,
        "content_type": header(&headers, "content-type"),
        "invocation_id": header(&headers, "x-azure-functions-invocationid"),
        "host_version": header(&headers, "x-azure-functions-hostversion"),
        "user_agent": header(&headers, "user-agent"),
    });
    let ok = json!({
        "Outputs": fake.get("outputs").cloned().unwrap_or(json!({})),
        "Logs": fake.get("logs").cloned().unwrap_or(json!([format!("{function} handled")])),
        "ReturnValue": fake.get("return").cloned().unwrap_or(json!({ "seen": seen })),
    });
    let dequeue: u64 = request["Metadata"]["DequeueCount"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match fake["mode"].as_str().unwrap_or("ok") {
        "fail" => json_response(StatusCode::INTERNAL_SERVER_ERROR, ok),
        "fail_until" if dequeue < fake["until"].as_u64().unwrap_or(u64::MAX) => {
            json_response(StatusCode::INTERNAL_SERVER_ERROR, ok)
        }
        "text" => (StatusCode::OK, [("content-type", "text/plain")], "fine").into_response(),
        "empty" => (StatusCode::OK, [("content-type", "application/json")], "").into_response(),
        "sleep" if dequeue < fake["until"].as_u64().unwrap_or(u64::MAX) => {
            tokio::time::sleep(Duration::from_millis(fake["ms"].as_u64().unwrap_or(0))).await;
            json_response(StatusCode::OK, ok)
        }
        _ => json_response(StatusCode::OK, ok),
    }
}

async fn env_info() -> Response {
    let var = |k: &str| std::env::var(k).ok();
    json_response(
        StatusCode::OK,
        json!({
            "FUNCTIONS_CUSTOMHANDLER_PORT": var("FUNCTIONS_CUSTOMHANDLER_PORT"),
            "FUNCTIONS_HTTPWORKER_PORT": var("FUNCTIONS_HTTPWORKER_PORT"),
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID": var("FUNCTIONS_CUSTOMHANDLER_WORKER_ID"),
            "FUNCTIONS_APP_ROOT_PATH": var("FUNCTIONS_APP_ROOT_PATH"),
            "FAKE_SETTING": var("FAKE_SETTING"),
            "cwd": std::env::current_dir().ok().map(|p| p.display().to_string()),
        }),
    )
}

#[tokio::main]
async fn main() {
    if let Some(code) = env_u64("FAKE_EXIT_CODE") {
        eprintln!("fake_handler: exiting with {code} as asked");
        std::process::exit(code as i32);
    }
    if let Some(ms) = env_u64("FAKE_STARTUP_DELAY_MS") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let port = env_u64("FUNCTIONS_CUSTOMHANDLER_PORT").expect("FUNCTIONS_CUSTOMHANDLER_PORT");
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port as u16))
        .await
        .expect("bind");
    println!("fake_handler listening on 127.0.0.1:{port}");
    eprintln!("fake_handler stderr check");
    // `/` is deliberately not routed: a 404 still counts as ready.
    let app = Router::new()
        .route("/env", get(env_info))
        .route("/{function}", post(invoke));
    axum::serve(listener, app).await.expect("serve");
}
