//! The axum application the Functions host calls: the readiness route and
//! one route per function, named after the function folders in
//! `function-app/`.

use std::sync::{Arc, OnceLock};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::IntoResponse,
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
/// per function (`/KeyEvent`, `/RotateServer`, `/Reconcile`, `/Status`). Bodies over `max_body_bytes` get 413 without being
/// read whole.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(|| async { Json(json!({ "status": "ready" })) }))
        .route(&format!("/{EVENT_FUNCTION}"), post(event_route))
        .route(&format!("/{SERVER_FUNCTION}"), post(server_route))
        .route(&format!("/{RECONCILE_FUNCTION}"), post(reconcile_route))
        .route(&format!("/{STATUS_FUNCTION}"), post(status_route))
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({ "error": "no such function" })),
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn event_route(State(state): State<Arc<AppState>>, body: Bytes) -> impl IntoResponse {
    match Invocation::parse(&body) {
        Ok(invocation) => plan::handle_event(&state, &invocation).await,
        Err(e) => refuse_body(EVENT_FUNCTION, &e),
    }
}

async fn server_route(State(state): State<Arc<AppState>>, body: Bytes) -> impl IntoResponse {
    match Invocation::parse(&body) {
        Ok(invocation) => rotate::handle_message(&state, &invocation).await,
        Err(e) => refuse_body(SERVER_FUNCTION, &e),
    }
}

async fn reconcile_route(State(state): State<Arc<AppState>>, body: Bytes) -> impl IntoResponse {
    match Invocation::parse(&body) {
        Ok(invocation) => reconcile::handle_timer(&state, &invocation).await,
        Err(e) => refuse_body(RECONCILE_FUNCTION, &e),
    }
}

async fn status_route(State(state): State<Arc<AppState>>, body: Bytes) -> impl IntoResponse {
    match Invocation::parse(&body) {
        Ok(invocation) => status::handle_request(&state, &invocation).await,
        Err(e) => refuse_body(STATUS_FUNCTION, &e),
    }
}

/// A body that is not an invocation can never succeed: acknowledged, logged.
fn refuse_body(function: &str, error: &protocol::ProtocolError) -> Reply {
    tracing::warn!(function, error = %error, "invocation refused");
    Reply::done().log(format!("invocation refused: {error}"))
}
