//! The axum application the Functions host calls: the readiness route and
//! one route per function, named after the function folders in
//! `function-app/`.

use std::sync::{Arc, OnceLock};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, Request, State, rejection::BytesRejection},
    http::{StatusCode, header::CONTENT_LENGTH},
    middleware::{self, Next},
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
        .method_not_allowed_fallback(|| async {
            (
                StatusCode::METHOD_NOT_ALLOWED,
                Json(json!({ "error": "the host invokes functions with POST" })),
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn(move |request, next| {
            refuse_declared_over(limit, request, next)
        }))
        .with_state(state)
}

/// A declared `Content-Length` over the limit is refused before any of the
/// body is read; a body without one is cut off at the limit
/// (`DefaultBodyLimit`).
async fn refuse_declared_over(limit: usize, request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    match declared.filter(|n| *n > limit as u64) {
        Some(n) => {
            let function = request.uri().path().trim_start_matches('/').to_string();
            let reason = format!("declared length {n} is over CMK_MAX_BODY_BYTES ({limit})");
            refuse_size(&function, StatusCode::PAYLOAD_TOO_LARGE, &reason)
        }
        None => next.run(request).await,
    }
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
            return refuse_size(function.name(), rejection.status(), &rejection.body_text());
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

/// Over the size limit (or unreadable): the host fails the invocation, so
/// the event is redelivered and finally dead-lettered where an operator can
/// see it.
fn refuse_size(function: &str, status: StatusCode, reason: &str) -> Response {
    tracing::warn!(function, %status, error = %reason, "invocation body refused");
    let reply = json!({"Outputs": {}, "Logs": [format!("invocation body refused: {reason}")], "ReturnValue": null});
    (status, Json(reply)).into_response()
}

/// A body that is not an invocation can never succeed: acknowledged, logged.
fn refuse_body(function: &str, error: &protocol::ProtocolError) -> Reply {
    tracing::warn!(function, error = %error, "invocation refused");
    Reply::done().log(format!("invocation refused: {error}"))
}
