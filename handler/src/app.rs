//! The axum application the Functions host calls: the readiness route and
//! one route per function, named after the function folders in
//! `function-app/`.

use std::sync::{Arc, OnceLock};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State, rejection::BytesRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde_json::json;

use crate::{
    config::Config,
    http::Http,
    plan, protocol,
    protocol::{Invocation, Reply},
    reconcile, rotate, status,
    token::{IdentityTokenSource, TokenSource},
};

/// Route of the Event Grid trigger function (`function-app/KeyEvent`).
pub const EVENT_FUNCTION: &str = "KeyEvent";
/// Route of the queue trigger function (`function-app/RotateServer`).
pub const SERVER_FUNCTION: &str = "RotateServer";
/// Route of the timer trigger function (`function-app/Reconcile`).
pub const RECONCILE_FUNCTION: &str = "Reconcile";
/// Route of the HTTP trigger function (`function-app/Status`).
pub const STATUS_FUNCTION: &str = "Status";

/// What every invocation shares. The Azure clients are built on first use,
/// so start-up does nothing that can wait.
pub struct AppState {
    pub config: Config,
    tokens: Option<Arc<dyn TokenSource>>,
    http: OnceLock<Result<Http, String>>,
}

impl AppState {
    /// State whose tokens come from the configured `azure_identity` credential.
    pub fn new(config: Config) -> AppState {
        AppState {
            config,
            tokens: None,
            http: OnceLock::new(),
        }
    }

    /// State with another token source (tests).
    pub fn with_tokens(config: Config, tokens: Arc<dyn TokenSource>) -> AppState {
        AppState {
            config,
            tokens: Some(tokens),
            http: OnceLock::new(),
        }
    }

    /// The shared HTTP client, built on first use.
    pub fn http(&self) -> Result<&Http, String> {
        self.http
            .get_or_init(|| {
                let tokens = match &self.tokens {
                    Some(t) => t.clone(),
                    None => Arc::new(IdentityTokenSource::new(&self.config.credential)?),
                };
                Http::new(
                    tokens,
                    self.config.http_timeout,
                    self.config.keyvault_connect,
                )
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// The router: `GET /` for the host's readiness probe and one `POST` route
/// per function (`/KeyEvent`, `/RotateServer`, `/Reconcile`, `/Status`).
/// Bodies over `max_body_bytes` are refused (413, logged) without being
/// read whole.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    let route = |function: Function| {
        post(
            move |State(state): State<Arc<AppState>>, body: Result<Bytes, BytesRejection>| {
                dispatch(state, function, body)
            },
        )
    };
    Router::new()
        .route("/", get(|| async { Json(json!({ "status": "ready" })) }))
        .route(&format!("/{EVENT_FUNCTION}"), route(Function::Event))
        .route(&format!("/{SERVER_FUNCTION}"), route(Function::Server))
        .route(
            &format!("/{RECONCILE_FUNCTION}"),
            route(Function::Reconcile),
        )
        .route(&format!("/{STATUS_FUNCTION}"), route(Function::Status))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "no such function" })),
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// The functions of `function-app/`.
#[derive(Debug, Clone, Copy)]
enum Function {
    Event,
    Server,
    Reconcile,
    Status,
}

impl Function {
    fn name(self) -> &'static str {
        match self {
            Function::Event => EVENT_FUNCTION,
            Function::Server => SERVER_FUNCTION,
            Function::Reconcile => RECONCILE_FUNCTION,
            Function::Status => STATUS_FUNCTION,
        }
    }
}

async fn dispatch(
    state: Arc<AppState>,
    function: Function,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            // Over the size limit (or unreadable): the host fails the
            // invocation, so the event is redelivered and finally
            // dead-lettered where an operator can see it.
            let status = rejection.status();
            tracing::warn!(function = function.name(), %status, error = %rejection.body_text(), "invocation body refused");
            let reply = json!({"Outputs": {}, "Logs": [format!("invocation body refused: {}", rejection.body_text())], "ReturnValue": null});
            return (status, Json(reply)).into_response();
        }
    };
    let invocation = match Invocation::parse(&body) {
        Ok(i) => i,
        Err(e) => return refuse_body(function.name(), &e).into_response(),
    };
    let reply = match function {
        Function::Event => plan::handle_event(&state, &invocation).await,
        Function::Server => rotate::handle_message(&state, &invocation).await,
        Function::Reconcile => reconcile::handle_timer(&state, &invocation).await,
        Function::Status => status::handle_request(&state, &invocation).await,
    };
    reply.into_response()
}

/// A body that is not an invocation can never succeed: acknowledged, logged.
fn refuse_body(function: &str, error: &protocol::ProtocolError) -> Reply {
    tracing::warn!(function, error = %error, "invocation refused");
    Reply::done().log(format!("invocation refused: {error}"))
}
