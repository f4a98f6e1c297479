//! Key Vault data plane: `GET /keys/{name}[/{version}]` and
//! `GET /keys/{name}/versions`, with the bearer challenge and paging of the
//! real service.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use super::FakeAzure;
use super::http::{Reply, Req, encode};
use super::identity::VAULT_TOKEN;
use super::spec::KeyVersionSpec;
use super::state::{State, lock};
use super::vault::{KeyRecord, normalize_vault};

/// Versions per page when the request gives no `maxresults` (small, so that
/// clients must follow `nextLink`).
const DEFAULT_PAGE_SIZE: usize = 2;

impl FakeAzure {
    /// Adds a key version to the vault `vault_host` (e.g.
    /// `contoso-kv.vault.azure.net`; scheme and port are ignored) and makes
    /// it the current version. Returns its version id, generated when
    /// `spec.version` is `None`.
    pub fn add_key_version(&self, vault_host: &str, key: &str, spec: KeyVersionSpec) -> String {
        let mut state = lock(&self.shared);
        let generated = state.hex(32);
        state.keys.add(vault_host, key, spec, generated)
    }

    /// Changes one existing key version, e.g. to disable it. Panics when the
    /// version does not exist, since that is a mistake in the test.
    pub fn update_key_version(
        &self,
        vault_host: &str,
        key: &str,
        version: &str,
        f: impl FnOnce(&mut KeyVersionSpec),
    ) {
        let mut state = lock(&self.shared);
        let Some(found) = state.keys.version_mut(vault_host, key, version) else {
            panic!("standin: no key version {vault_host}/{key}/{version}");
        };
        f(&mut found.spec);
        found.updated = super::state::now_epoch().max(found.updated);
    }

    /// The current (last added) version of a key, if the key exists.
    pub fn latest_version(&self, vault_host: &str, key: &str) -> Option<String> {
        let state = lock(&self.shared);
        let record = state.keys.key(vault_host, key)?;
        record.versions.last().map(|v| v.version.clone())
    }
}

/// Answers a request whose `Host` names a vault.
pub(crate) fn handle(state: &State, req: &Req) -> Reply {
    let Some(api_version) = req.param("api-version").filter(|v| !v.is_empty()) else {
        return Reply::error(
            400,
            "BadParameter",
            "The request URI contains an invalid or missing api-version parameter.",
        );
    };
    if req.bearer() != Some(VAULT_TOKEN) {
        return challenge();
    }
    if req.method != "GET" {
        return Reply::error(
            405,
            "MethodNotAllowed",
            "standin Key Vault only serves GET on keys.",
        );
    }
    let vault = normalize_vault(&req.host);
    let segments: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["keys", name] | ["keys", name, ""] => get_key(state, &vault, name, None),
        ["keys", name, "versions"] => list_versions(state, req, &vault, name, &api_version),
        ["keys", name, version] | ["keys", name, version, ""] => {
            get_key(state, &vault, name, Some(version))
        }
        _ => Reply::error(
            404,
            "NotFound",
            "standin Key Vault does not serve this path.",
        ),
    }
}

/// The 401 answer to a request without a vault token.
fn challenge() -> Reply {
    let header = r#"Bearer authorization="https://login.windows.net/00000000-0000-0000-0000-000000000000", resource="https://vault.azure.net""#;
    Reply::error(
        401,
        "Unauthorized",
        "AKV10000: Request is missing a Bearer or PoP token.",
    )
    .with_header("WWW-Authenticate", header)
}

fn get_key(state: &State, vault: &str, name: &str, version: Option<&str>) -> Reply {
    let record = state.keys.key(vault, name);
    let found = match (record, version) {
        (Some(record), Some(v)) => record.version(v).map(|found| (record, found)),
        (Some(record), None) => record.versions.last().map(|found| (record, found)),
        (None, _) => None,
    };
    match found {
        Some((record, found)) => Reply::json(200, record.bundle(found)),
        None => key_not_found(name, version),
    }
}

fn list_versions(state: &State, req: &Req, vault: &str, name: &str, api_version: &str) -> Reply {
    let Some(record) = state.keys.key(vault, name) else {
        return key_not_found(name, None);
    };
    let page_size = match req.param("maxresults") {
        None => DEFAULT_PAGE_SIZE,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=25).contains(&n) => n,
            _ => return Reply::error(400, "BadParameter", "maxresults must be between 1 and 25."),
        },
    };
    let offset = match req.param("$skiptoken") {
        None => 0,
        Some(token) => match parse_skiptoken(&token) {
            Some(offset) => offset,
            None => return Reply::error(400, "BadParameter", "The $skiptoken is not valid."),
        },
    };
    let value: Vec<_> = sorted_items(record)
        .into_iter()
        .skip(offset)
        .take(page_size)
        .collect();
    let more = offset + page_size < record.versions.len();
    let next_link = more.then(|| {
        let authority = authority(req, state.port);
        let token = skiptoken(offset + page_size);
        format!(
            "http://{authority}/keys/{name}/versions?api-version={}&$skiptoken={token}&maxresults={page_size}",
            encode(api_version)
        )
    });
    Reply::json(200, json!({ "value": value, "nextLink": next_link }))
}

/// KeyItems ordered by version id: like the real service, not by age.
fn sorted_items(record: &KeyRecord) -> Vec<serde_json::Value> {
    let mut versions: Vec<_> = record.versions.iter().collect();
    versions.sort_by_key(|v| v.version.to_ascii_lowercase());
    versions.into_iter().map(|v| record.item(v)).collect()
}

/// The `host:port` the request came in on.
fn authority(req: &Req, port: u16) -> String {
    let port = match req.host.rsplit_once(':') {
        Some((_, given)) if given.parse::<u16>().is_ok() => given.to_owned(),
        _ => port.to_string(),
    };
    format!("{}:{port}", req.host_name())
}

fn skiptoken(offset: usize) -> String {
    let marker = json!({ "NextMarker": format!("standin!{offset}"), "TargetLocation": 0 });
    URL_SAFE_NO_PAD.encode(marker.to_string())
}

fn parse_skiptoken(token: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(token.trim_end_matches('=')).ok()?;
    let marker: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    marker["NextMarker"]
        .as_str()?
        .strip_prefix("standin!")?
        .parse()
        .ok()
}

fn key_not_found(name: &str, version: Option<&str>) -> Reply {
    let id = version.map_or(name.to_owned(), |v| format!("{name}/{v}"));
    let message = format!(
        "A key with (name/id) {id} was not found in this key vault. If you recently deleted this key you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182"
    );
    Reply::error(404, "KeyNotFound", &message)
}
