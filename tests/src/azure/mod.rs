//! A local fake of the Azure services the handler calls, in one HTTP server
//! on `127.0.0.1`:
//!
//! - Key Vault keys (`keyvault`): any request whose `Host` is a vault host
//!   (`*.vault.azure.net`, or any host containing `.vault.`); the vault is
//!   that host. Clients resolve vault hosts to the fake's address and port.
//! - The App Service managed-identity endpoint (`identity`):
//!   `GET /msi/token`.
//! - Resource Graph (`graph`): `POST /providers/Microsoft.ResourceGraph/resources`.
//! - Resource Manager for PostgreSQL flexible servers (`arm`, `operation`):
//!   paths under `/subscriptions/`.
//!
//! Tests arrange keys and servers through [`FakeAzure`], inject faults, and
//! read back every request the fake received.

mod arm;
mod fault;
mod graph;
mod http;
mod identity;
mod keyvault;
mod operation;
mod router;
mod server;
mod spec;
mod state;
mod vault;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use fault::Fault;
pub use identity::{ARM_TOKEN, DEFAULT_CLIENT_ID, TokenExpiry, VAULT_TOKEN, token_for_resource};
pub use spec::{KeyVersionSpec, OpOutcome, Recorded, ServerBehaviour, ServerSpec};

use state::{Shared, State, lock};

/// A running fake Azure. Clones share the same server and state; the server
/// stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FakeAzure {
    shared: Shared,
    port: u16,
    connections: Arc<AtomicU64>,
    _task: Arc<ServerTask>,
}

/// Aborts the server task when the last handle goes away.
#[derive(Debug)]
struct ServerTask(JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl FakeAzure {
    /// The secret value the fake identity endpoint requires in the
    /// `x-identity-header` header (the `IDENTITY_HEADER` app setting).
    pub const IDENTITY_HEADER: &'static str = identity::IDENTITY_HEADER;

    /// Binds `127.0.0.1:0` and serves in a background tokio task. Panics if
    /// the port cannot be bound.
    pub async fn start() -> FakeAzure {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("standin: bind 127.0.0.1:0");
        let port = listener
            .local_addr()
            .expect("standin: local address")
            .port();
        let shared: Shared = Arc::new(Mutex::new(State::new(port)));
        let app = router::router(shared.clone());
        let connections = Arc::new(AtomicU64::new(0));
        let counter = connections.clone();
        let listener = listener.tap_io(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(%error, "standin azure server stopped");
            }
        });
        FakeAzure {
            shared,
            port,
            connections,
            _task: Arc::new(ServerTask(task)),
        }
    }

    /// The port the fake listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`: the Resource Manager and Resource Graph
    /// endpoint.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT/msi/token` (the `IDENTITY_ENDPOINT` app
    /// setting).
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.base_url())
    }

    /// The address to resolve every vault host to.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The URL a client uses for a vault: `http://{vault_host}:PORT`.
    pub fn vault_url(&self, vault_host: &str) -> String {
        format!(
            "http://{}:{}",
            vault::normalize_vault(vault_host),
            self.port
        )
    }

    /// The key identifier real Key Vault reports for a key version:
    /// `https://{vault_host}/keys/{key}/{version}`.
    pub fn key_uri(vault_host: &str, key: &str, version: &str) -> String {
        format!(
            "https://{}/keys/{key}/{version}",
            vault::normalize_vault(vault_host)
        )
    }

    /// A reqwest client that resolves the given vault hosts to the fake.
    pub fn http_client(&self, vault_hosts: &[&str]) -> reqwest::Client {
        let builder = vault_hosts
            .iter()
            .fold(reqwest::Client::builder(), |b, host| {
                b.resolve(&vault::normalize_vault(host), self.addr())
            });
        builder
            .no_proxy()
            .build()
            .expect("standin: build http client")
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared)
            .records
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// Only the Resource Manager PATCHes received so far.
    pub fn patches(&self) -> Vec<Recorded> {
        let is_patch = |r: &Recorded| {
            r.method == "PATCH" && r.path.to_ascii_lowercase().starts_with("/subscriptions/")
        };
        self.requests().into_iter().filter(is_patch).collect()
    }

    /// A mark for [`FakeAzure::requests_since`]: requests received from now
    /// on come after it.
    pub fn request_mark(&self) -> u64 {
        lock(&self.shared).next_seq
    }

    /// The requests received since `mark` (see [`FakeAzure::request_mark`]),
    /// in arrival order.
    pub fn requests_since(&self, mark: u64) -> Vec<Recorded> {
        let state = lock(&self.shared);
        let first = state.records.partition_point(|(seq, _)| *seq < mark);
        state.records[first..]
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// TCP connections accepted since the fake started, whatever was sent
    /// on them (every Azure endpoint, and every vault host the handler
    /// resolves here, shares this one listener).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// Forgets keys, servers, operations, faults, recorded requests and
    /// settings, as if the fake had just started; the port and the
    /// connection count stay. Lets one fake serve many scenarios.
    pub fn reset(&self) {
        lock(&self.shared).reset();
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared).records.clear();
    }

    /// Adds a fault; faults are checked in the order they were injected.
    pub fn inject(&self, fault: Fault) {
        lock(&self.shared).faults.push(fault);
    }

    /// Removes every fault not yet used up.
    pub fn clear_faults(&self) {
        lock(&self.shared).faults.clear();
    }

    /// Sets the `Retry-After` seconds sent with a 202 PATCH answer and while
    /// an operation is in progress (default 0).
    pub fn set_retry_after(&self, secs: u64) {
        lock(&self.shared).retry_after = Some(secs);
    }

    /// Sends no `Retry-After` with 202 PATCH answers and running operations
    /// (until [`FakeAzure::set_retry_after`] is called again).
    pub fn omit_retry_after(&self) {
        lock(&self.shared).retry_after = None;
    }

    /// Lets update operations end on their own once they have run `after`
    /// (and at least their `op_duration`), whether or not anyone polls, as
    /// the real service does; they then take effect at the next request the
    /// fake receives or the next [`FakeAzure::server`] read. By default an
    /// operation ends only when polled.
    pub fn finish_operations_unpolled_after(&self, after: Duration) {
        lock(&self.shared).unpolled_finish = Some(after);
    }

    /// Sets how the identity endpoint writes a token's expiry.
    pub fn set_token_expiry(&self, form: TokenExpiry) {
        lock(&self.shared).token_expiry = form;
    }
}
