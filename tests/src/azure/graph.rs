//! Azure Resource Graph (`POST /providers/Microsoft.ResourceGraph/resources`).
//!
//! The fake cannot run KQL. It understands the query contracts the handler
//! uses: servers whose primary or geo-backup key URI names a given vault and
//! key (`pkVault == '<vault>' and pkName == '<key>'`), or, without that
//! clause, every server whose `dataEncryption.type` is `AzureKeyVault`;
//! either optionally narrowed by `tags['<name>'] =~ '<value>'`, ordered by
//! id, in pages.

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
    /// `(vault, key)` from the key clause; `None` means every CMK server.
    key: Option<(String, String)>,
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
    let Some(filter) = body["query"].as_str().map(Filter::parse) else {
        return graph_error("InvalidQuery", "The query is missing or not a string.");
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
    fn parse(query: &str) -> Filter {
        let key = KEY_FILTER
            .captures(query)
            .map(|keys| (normalize_vault(&keys[1]), keys[2].to_ascii_lowercase()));
        let tags = TAG_FILTER
            .captures_iter(query)
            .map(|c| (c[1].to_owned(), c[2].to_owned()))
            .collect();
        Filter { key, tags }
    }

    fn matches(&self, row: &Value, subscriptions: &[String]) -> bool {
        let subscription = row["subscriptionId"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let names_key = |uri: &Value| {
            let Some((vault, key)) = &self.key else {
                return true;
            };
            let key_ref = uri.as_str().and_then(parse_key_uri);
            key_ref.is_some_and(|k| &k.vault == vault && &k.name == key)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::azure::ARM_TOKEN;
    use crate::azure::spec::ServerSpec;

    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    fn state_with(servers: Vec<ServerSpec>) -> State {
        let mut state = State::new(0);
        for spec in servers {
            let id = spec.id().to_ascii_lowercase();
            state.servers.insert(id, Server::new(spec));
        }
        state
    }

    fn ask(state: &State, query: &str) -> Reply {
        let body = json!({ "subscriptions": [SUB], "query": query });
        let req = Req {
            method: "POST".into(),
            host: "127.0.0.1".into(),
            path: "/providers/Microsoft.ResourceGraph/resources".into(),
            query: "api-version=2024-04-01".into(),
            headers: vec![
                ("authorization".into(), format!("Bearer {ARM_TOKEN}")),
                ("content-type".into(), "application/json".into()),
            ],
            body: Some(body),
            body_is_json: true,
        };
        handle(state, &req)
    }

    fn names(reply: &Reply) -> Vec<String> {
        let data = reply.body.as_ref().expect("body")["data"].clone();
        data.as_array()
            .expect("data")
            .iter()
            .map(|row| row["name"].as_str().expect("name").to_owned())
            .collect()
    }

    #[test]
    fn without_a_key_clause_every_cmk_server_is_listed() {
        let uri = "https://Contoso-KV.vault.azure.net/keys/PG-CMK/0123456789abcdef";
        let other = "https://other-kv.vault.azure.net/keys/other/fedcba9876543210";
        let plain = |name: &str| ServerSpec {
            name: name.into(),
            ..Default::default()
        };
        let state = state_with(vec![
            plain("pg-b")
                .with_primary_key(uri)
                .with_tag("Rotate", "AUTO"),
            plain("pg-a").with_primary_key(other),
            plain("pg-system"),
            plain("pg-c").with_primary_key(uri).with_geo_key(other),
        ]);
        let all = "resources\n| where type in~ ('microsoft.dbforpostgresql/flexibleservers')\n\
                   | where tostring(properties.dataEncryption.type) =~ 'AzureKeyVault'\n\
                   | project id, name, type, subscriptionId, resourceGroup, location, tags, state, pk, gk\n\
                   | order by id asc";
        let reply = ask(&state, all);
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        assert_eq!(names(&reply), ["pg-a", "pg-b", "pg-c"]);
        let body = reply.body.as_ref().expect("body");
        assert_eq!(body["totalRecords"], 3);
        let row = &body["data"][1];
        assert_eq!(row["pk"], uri.to_ascii_lowercase());
        assert_eq!(row["gk"], "");
        assert_eq!(row["type"], "microsoft.dbforpostgresql/flexibleservers");
        assert_eq!(row["subscriptionId"], SUB);
        assert_eq!(row["resourceGroup"], "rg-contoso-data");
        assert_eq!(row["location"], "westeurope");
        assert_eq!(row["state"], "Ready");
        assert_eq!(row["tags"], json!({"Rotate": "AUTO"}));
        assert_eq!(body["data"][2]["gk"], other.to_ascii_lowercase());

        let tagged = all.replace("| project", "| where tags['rotate'] =~ 'auto'\n| project");
        assert_eq!(names(&ask(&state, &tagged)), ["pg-b"]);

        let keyed = all.replace(
            "| project",
            "| where (pkVault == 'https://contoso-kv.vault.azure.net' and pkName == 'pg-cmk')\n| project",
        );
        assert_eq!(names(&ask(&state, &keyed)), ["pg-b", "pg-c"]);
    }
}
