//! The fake's whole mutable state behind one mutex, plus id and time helpers
//! shared by the services.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use super::fault::Fault;
use super::graph::GraphRow;
use super::identity::TokenExpiry;
use super::operation::Operation;
use super::server::Server;
use super::spec::Recorded;
use super::vault::KeyStore;

/// State shared by the handle and the server task.
pub(crate) type Shared = Arc<Mutex<State>>;

/// Everything the fake Azure holds.
#[derive(Debug)]
pub(crate) struct State {
    /// The port the fake listens on.
    pub port: u16,
    /// Key Vault keys of every vault.
    pub keys: KeyStore,
    /// Flexible servers by lower-cased resource id.
    pub servers: BTreeMap<String, Server>,
    /// Update operations by lower-cased operation id.
    pub ops: HashMap<String, Operation>,
    /// Live faults, in the order they were injected.
    pub faults: Vec<Fault>,
    /// Every request received, in arrival order, with a sequence number.
    pub records: Vec<(u64, Recorded)>,
    /// The sequence number of the next request.
    pub next_seq: u64,
    /// `Retry-After` seconds on 202 answers; `None` sends no header.
    pub retry_after: Option<u64>,
    /// Operations end on their own once they have run this long (and at
    /// least their `op_duration`), polled or not; `None`: only when polled.
    pub unpolled_finish: Option<std::time::Duration>,
    /// How the identity endpoint writes a token's expiry.
    pub token_expiry: TokenExpiry,
    /// Resource Graph rows frozen at some point, when lag is simulated.
    pub graph_frozen: Option<Vec<GraphRow>>,
    rng: u64,
}

impl State {
    /// Empty state for a fake listening on `port`.
    pub fn new(port: u16) -> State {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64);
        State {
            port,
            keys: KeyStore::default(),
            servers: BTreeMap::new(),
            ops: HashMap::new(),
            faults: Vec::new(),
            records: Vec::new(),
            next_seq: 0,
            retry_after: Some(0),
            unpolled_finish: None,
            token_expiry: TokenExpiry::default(),
            graph_frozen: None,
            rng: seed | 1,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A pseudo-random number (xorshift; not for cryptography).
    pub fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    /// `n` random lower-case hex digits.
    pub fn hex(&mut self, n: usize) -> String {
        let mut out = String::with_capacity(n + 16);
        while out.len() < n {
            out.push_str(&format!("{:016x}", self.next_u64()));
        }
        out.truncate(n);
        out
    }

    /// A random GUID-shaped id.
    pub fn guid(&mut self) -> String {
        let h = self.hex(32);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// Forgets keys, servers, operations, faults, recorded requests and
    /// settings, as if the fake had just started (the port stays).
    pub fn reset(&mut self) {
        let port = self.port;
        let (next_seq, rng) = (self.next_seq, self.rng);
        *self = State::new(port);
        self.next_seq = next_seq;
        self.rng = rng;
    }

    /// The server with this resource id (any case).
    pub fn server_mut(&mut self, id: &str) -> Option<&mut Server> {
        self.servers.get_mut(&id.to_ascii_lowercase())
    }
}

/// Locks the state; a panic in another holder does not poison it for tests.
pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_epoch() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The current time as RFC 3339 in UTC with milliseconds, e.g.
/// `2026-01-10T08:00:00.123Z`.
pub(crate) fn now_rfc3339() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let millis = now.subsec_millis();
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}Z")
}

/// Epoch seconds as RFC 3339 in UTC without fractions,
/// e.g. `2026-01-10T08:00:00Z`.
pub(crate) fn rfc3339_of(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z")
}

/// Days since 1970-01-01 as (year, month, day); the host simulator's
/// calendar, shared.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    crate::host::civil(days)
}

#[cfg(test)]
mod tests {
    use super::civil_from_days;

    #[test]
    fn converts_epoch_days_to_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_463), (2026, 1, 10));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
