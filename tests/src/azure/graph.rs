//! Azure Resource Graph (`POST /providers/Microsoft.ResourceGraph/resources`).
//!
//! The fake cannot run KQL. It understands the one query contract the
//! handler uses: servers whose primary or geo-backup key URI names a given
//! vault and key (`pkVault == '<vault>' and pkName == '<key>'`), optionally
//! narrowed by `tags['<name>'] =~ '<value>'`, ordered by id, in pages.

use std::sync::LazyLock;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use regex::Regex;
use serde_json::{Map, Value, json};

use super::FakeAzure;
use super::arm::check_auth;
use super::http::{Reply, Req};
use super::server::Server;
use super::state::{State, lock};
use super::vault::{normalize_vault, parse_key_uri};

static KEY_FILTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"pk(?:Vault|Base)\s*==\s*'([^']*)'\s+and\s+pkName\s*==\s*'([^']*)'")
        .expect("valid regex")
});
static TAG_FILTER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"tags\['([^']*)'\]\s*=~\s*'([^']*)'").expect("valid regex"));

impl FakeAzure {
    /// Freezes Resource Graph at the current ARM state: later queries see
    /// these rows even after servers change, like the real index lagging
    /// behind Resource Manager.
    pub fn freeze_graph(&self) {
        let mut state = lock(&self.shared);
        state.graph_frozen = Some(snapshot(&state));
    }

    /// Makes Resource Graph follow the ARM state again (the default).
    pub fn unfreeze_graph(&self) {
        lock(&self.shared).graph_frozen = None;
    }
}

/// One server as Resource Graph indexes it.
#[derive(Debug, Clone)]
pub(crate) struct GraphRow {
    /// The projected row.
    data: Value,
    /// Whether `dataEncryption.type` is `AzureKeyVault`.
    cmk: bool,
}

/// What the query asks for.
struct Filter {
    vault: String,
    key: String,
    tags: Vec<(String, String)>,
}

/// Answers a Resource Graph query, with the per-user quota headers.
pub(crate) fn handle(state: &State, req: &Req) -> Reply {
    query(state, req)
        .with_header("x-ms-user-quota-remaining", "14")
        .with_header("x-ms-user-quota-resets-after", "00:00:05")
}

fn query(state: &State, req: &Req) -> Reply {
    if let Some(refusal) = check_auth(req) {
        return refusal;
    }
    if req.method != "POST" || !req.is_json_content() || !req.body_is_json {
        return graph_error("InvalidRequest", "Expected a POST with a JSON body.");
    }
    let body = req.body.clone().unwrap_or_default();
    let subscriptions: Vec<String> = body["subscriptions"]
        .as_array()
        .map(|subs| {
            subs.iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect()
        })
        .unwrap_or_default();
    if subscriptions.is_empty() {
        return graph_error(
            "NoValidSubscriptionsInQueryRequest",
            "No subscriptions were given.",
        );
    }
    let Some(filter) = body["query"].as_str().and_then(Filter::parse) else {
        return graph_error(
            "InvalidQuery",
            "standin Resource Graph cannot interpret this query.",
        );
    };
    let rows: Vec<Value> = rows(state)
        .into_iter()
        .filter(|row| row.cmk && filter.matches(&row.data, &subscriptions))
        .map(|row| row.data)
        .collect();
    page(rows, &body["options"], &body["query"])
}

fn rows(state: &State) -> Vec<GraphRow> {
    state
        .graph_frozen
        .clone()
        .unwrap_or_else(|| snapshot(state))
}

/// Rows for every server, ordered by id.
fn snapshot(state: &State) -> Vec<GraphRow> {
    let mut rows: Vec<GraphRow> = state.servers.values().map(row).collect();
    rows.sort_by_key(|row| {
        row.data["id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
    });
    rows
}

fn row(server: &Server) -> GraphRow {
    let spec = &server.spec;
    let encryption = &spec.data_encryption;
    let uri = |field: &str| {
        encryption[field]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
    };
    let data = json!({
        "id": spec.id(),
        "name": spec.name,
        "type": "microsoft.dbforpostgresql/flexibleservers",
        "subscriptionId": spec.subscription,
        "resourceGroup": spec.resource_group,
        "location": spec.location,
        "tags": spec.tags,
        "state": spec.state,
        "pk": uri("primaryKeyURI"),
        "gk": uri("geoBackupKeyURI"),
    });
    let cmk = encryption["type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case("AzureKeyVault"));
    GraphRow { data, cmk }
}

impl Filter {
    fn parse(query: &str) -> Option<Filter> {
        let keys = KEY_FILTER.captures(query)?;
        let tags = TAG_FILTER
            .captures_iter(query)
            .map(|c| (c[1].to_owned(), c[2].to_owned()))
            .collect();
        Some(Filter {
            vault: normalize_vault(&keys[1]),
            key: keys[2].to_ascii_lowercase(),
            tags,
        })
    }

    fn matches(&self, row: &Value, subscriptions: &[String]) -> bool {
        let subscription = row["subscriptionId"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let names_key = |uri: &Value| {
            let key_ref = uri.as_str().and_then(parse_key_uri);
            key_ref.is_some_and(|k| k.vault == self.vault && k.name == self.key)
        };
        let tags_ok = self
            .tags
            .iter()
            .all(|(name, value)| has_tag(&row["tags"], name, value));
        subscriptions.contains(&subscription)
            && (names_key(&row["pk"]) || names_key(&row["gk"]))
            && tags_ok
    }
}

fn has_tag(tags: &Value, name: &str, value: &str) -> bool {
    let tags = tags.as_object().cloned().unwrap_or_else(Map::new);
    tags.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case(name) && v.as_str().is_some_and(|v| v.eq_ignore_ascii_case(value))
    })
}

/// Cuts one page out of the rows, following `$top`, `$skip` and
/// `$skipToken`.
fn page(rows: Vec<Value>, options: &Value, query: &Value) -> Reply {
    let top = options["$top"].as_u64().unwrap_or(100);
    if !(1..=1000).contains(&top) {
        return graph_error("InvalidTop", "$top must be between 1 and 1000.");
    }
    let fingerprint = fingerprint(query.as_str().unwrap_or_default());
    let offset = match options["$skipToken"].as_str() {
        None => options["$skip"].as_u64().unwrap_or(0) as usize,
        Some(token) => match parse_skip_token(token, fingerprint) {
            Some(offset) => offset,
            None => {
                return graph_error(
                    "InvalidSkipToken",
                    "The $skipToken is not valid for this query.",
                );
            }
        },
    };
    let total = rows.len();
    let data: Vec<Value> = rows.into_iter().skip(offset).take(top as usize).collect();
    let mut body =
        json!({ "totalRecords": total, "count": data.len(), "resultTruncated": "false" });
    let next = offset + data.len();
    if next < total {
        body["$skipToken"] = json!(STANDARD.encode(format!("standin:{next}:{fingerprint:016x}")));
    }
    body["data"] = json!(data);
    body["facets"] = json!([]);
    Reply::json(200, body)
}

fn parse_skip_token(token: &str, fingerprint: u64) -> Option<usize> {
    let text = String::from_utf8(STANDARD.decode(token).ok()?).ok()?;
    let mut parts = text.strip_prefix("standin:")?.split(':');
    let offset = parts.next()?.parse().ok()?;
    (parts.next()? == format!("{fingerprint:016x}")).then_some(offset)
}

/// A hash binding a skip token to its query.
fn fingerprint(query: &str) -> u64 {
    query.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn graph_error(code: &str, message: &str) -> Reply {
    let body = json!({
        "error": {
            "code": "BadRequest",
            "message": message,
            "details": [{ "code": code, "message": message }],
        }
    });
    Reply::json(400, body)
}
