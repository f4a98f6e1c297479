//! The front door of the stand-in for a benchmark: a small reverse proxy in
//! front of [`FakeAzure`] that adds a fixed latency to every call, counts the
//! calls by kind, and offers the TLS listeners the Python SDKs need.
//!
//! Three listeners, all on 127.0.0.1:
//! - `http`: plain HTTP for the Rust handler (`CMK_ALLOW_HTTP`), and the
//!   managed-identity endpoint for both subjects (the App Service protocol
//!   is plain HTTP on the instance, in Azure too);
//! - `https`: TLS for Resource Manager and Resource Graph (Python);
//! - `vault_https`: TLS for Key Vault (Python); every request is sent on to
//!   the fake with `Host` set to the benchmark's vault, since the SDK cannot
//!   resolve `*.vault.azure.net` to loopback.
//!
//! The certificate is self-signed (rcgen) for `localhost` and `127.0.0.1`;
//! its PEM is written to a file for `REQUESTS_CA_BUNDLE`.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, Result};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use axum_server::tls_rustls::RustlsConfig;
use standin::azure::FakeAzure;

/// What a call to the stand-in was, for the per-server call counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CallKind {
    /// `GET /msi/token`.
    Token,
    /// Any Key Vault request, the 401 challenge included.
    KeyVault,
    /// Resource Graph query (one page).
    Graph,
    /// `GET` on a flexible server.
    ArmGet,
    /// `PATCH` on a flexible server.
    ArmPatch,
    /// `GET` on an operation status or result URL.
    ArmPoll,
    /// Anything else.
    Other,
}

/// Calls seen since the last [`Edge::take_counts`], by kind, and how many
/// of them were answered 401 (Key Vault's challenge).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub by_kind: BTreeMap<CallKind, u64>,
    pub unauthorized: u64,
}

impl Counts {
    pub fn get(&self, kind: CallKind) -> u64 {
        self.by_kind.get(&kind).copied().unwrap_or(0)
    }

    /// Requests to Resource Manager (server GET, PATCH, polls).
    pub fn arm(&self) -> u64 {
        self.get(CallKind::ArmGet) + self.get(CallKind::ArmPatch) + self.get(CallKind::ArmPoll)
    }
}

/// The running proxy. Dropping it does not stop the listeners; they end
/// with the process.
pub struct Edge {
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub vault_https: SocketAddr,
    /// PEM of the self-signed certificate the TLS listeners present.
    pub ca_file: PathBuf,
    shared: Arc<Shared>,
}

struct Shared {
    fake_port: u16,
    latency_us: AtomicU64,
    client: reqwest::Client,
    counts: Mutex<Counts>,
}

/// One listener's view: the base URL clients see, and the `Host` to send on.
struct Door {
    shared: Arc<Shared>,
    public_base: String,
    vault_host: Option<String>,
}

impl Edge {
    /// Starts the three listeners in front of `fake`. `vault_host` is the
    /// vault the TLS vault listener stands for; `dir` receives the CA file.
    pub async fn start(fake: &FakeAzure, vault_host: &str, dir: &Path) -> Result<Edge> {
        let shared = Arc::new(Shared {
            fake_port: fake.port(),
            latency_us: AtomicU64::new(0),
            client: reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(256)
                .build()?,
            counts: Mutex::new(Counts::default()),
        });
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .context("self-signed certificate")?;
        let cert_pem = cert.cert.pem();
        let ca_file = dir.join("standin-ca.pem");
        std::fs::write(&ca_file, &cert_pem)?;
        let tls = RustlsConfig::from_pem(
            cert_pem.into_bytes(),
            cert.signing_key.serialize_pem().into_bytes(),
        )
        .await
        .context("tls config")?;

        let http = bind()?;
        let https = bind()?;
        let vault_https = bind()?;
        let (http_addr, https_addr, vault_addr) = (
            http.local_addr()?,
            https.local_addr()?,
            vault_https.local_addr()?,
        );

        let door = |public_base: String, vault_host: Option<String>| {
            router(Door {
                shared: shared.clone(),
                public_base,
                vault_host,
            })
        };
        let plain = door(format!("http://{http_addr}"), None);
        let arm = door(format!("https://localhost:{}", https_addr.port()), None);
        let vault = door(
            format!("https://localhost:{}", vault_addr.port()),
            Some(vault_host.to_string()),
        );
        http.set_nonblocking(true)?;
        let http = tokio::net::TcpListener::from_std(http)?;
        tokio::spawn(async move { axum::serve(http, plain).await });
        for (listener, app) in [(https, arm), (vault_https, vault)] {
            let server = axum_server::from_tcp_rustls(listener, tls.clone())?;
            tokio::spawn(async move { server.serve(app.into_make_service()).await });
        }
        Ok(Edge {
            http: http_addr,
            https: https_addr,
            vault_https: vault_addr,
            ca_file,
            shared,
        })
    }

    /// Every call from now on waits `latency` before it is served.
    pub fn set_latency(&self, latency: Duration) {
        self.shared
            .latency_us
            .store(latency.as_micros() as u64, Ordering::SeqCst);
    }

    /// The counts since the last call, and starts counting afresh.
    pub fn take_counts(&self) -> Counts {
        std::mem::take(&mut *self.shared.counts.lock().expect("counts lock"))
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_base(&self) -> String {
        format!("http://{}", self.http)
    }

    /// `https://localhost:PORT` (Resource Manager, Resource Graph).
    pub fn https_base(&self) -> String {
        format!("https://localhost:{}", self.https.port())
    }

    /// `https://localhost:PORT` (Key Vault).
    pub fn vault_base(&self) -> String {
        format!("https://localhost:{}", self.vault_https.port())
    }
}

fn bind() -> Result<std::net::TcpListener> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?)
}

fn router(door: Door) -> Router {
    Router::new().fallback(forward).with_state(Arc::new(door))
}

/// Waits the latency, sends the request on to the fake, and rewrites the
/// fake's own base URL in the answer's headers (operation URLs) to the
/// listener's.
async fn forward(State(door): State<Arc<Door>>, request: Request) -> Response {
    let shared = &door.shared;
    let latency = shared.latency_us.load(Ordering::SeqCst);
    if latency > 0 {
        tokio::time::sleep(Duration::from_micros(latency)).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 64 << 20).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let host = door.vault_host.clone().or_else(|| {
        parts
            .headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let kind = classify(&parts.method, &path, host.as_deref());
    let url = format!("http://127.0.0.1:{}{path}", shared.fake_port);
    let mut outbound = shared.client.request(parts.method, url).body(body);
    for (name, value) in &parts.headers {
        if name != header::HOST && name != header::CONTENT_LENGTH && name != header::CONNECTION {
            outbound = outbound.header(name, value);
        }
    }
    if let Some(host) = host {
        outbound = outbound.header(header::HOST, host);
    }
    let answer = match outbound.send().await {
        Ok(a) => a,
        Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
    };
    let status = answer.status();
    {
        let mut counts = shared.counts.lock().expect("counts lock");
        *counts.by_kind.entry(kind).or_default() += 1;
        counts.unauthorized += u64::from(status == StatusCode::UNAUTHORIZED);
    }
    let fake_base = format!("http://127.0.0.1:{}", shared.fake_port);
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if name == header::CONTENT_LENGTH || name == header::CONNECTION {
            continue;
        }
        let value = match value.to_str() {
            Ok(text) if text.contains(&fake_base) => {
                HeaderValue::from_str(&text.replace(&fake_base, &door.public_base))
                    .unwrap_or_else(|_| value.clone())
            }
            _ => value.clone(),
        };
        response = response.header(name, value);
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    response
        .body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}

fn classify(method: &axum::http::Method, path: &str, host: Option<&str>) -> CallKind {
    let lower = path.to_ascii_lowercase();
    let vault = host.is_some_and(|h| h.to_ascii_lowercase().contains(".vault."));
    if vault {
        CallKind::KeyVault
    } else if lower.starts_with("/msi/token") {
        CallKind::Token
    } else if lower.starts_with("/providers/microsoft.resourcegraph/resources") {
        CallKind::Graph
    } else if lower.contains("/azureasyncoperation/") || lower.contains("/operationresults/") {
        CallKind::ArmPoll
    } else if lower.contains("/flexibleservers/") && method == axum::http::Method::PATCH {
        CallKind::ArmPatch
    } else if lower.contains("/flexibleservers/") {
        CallKind::ArmGet
    } else {
        CallKind::Other
    }
}
