//! The status report: every server in scope that uses a Key Vault key, one
//! row per key reference, with where it stands against the key's current
//! version. Served as JSON and as a small HTML page by the `Status` function
//! and printed by `handler status`.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::{Value, json};

use crate::{
    app::AppState,
    arm::{ArmClient, subscription_of},
    assess::{Assessment, Disposition, KeyCache, assess},
    graph::GraphClient,
    http::{AzureError, Budget, Http},
    key_id::KeyId,
    keyvault::KeyVaultClient,
    plan::now,
    policy::{Slot, check_key},
    protocol::{Invocation, Reply},
    queue::PoisonMessage,
};

/// Name of the HTTP output binding in `Status/function.json`.
pub const HTTP_OUTPUT: &str = "res";

/// One key reference of one server.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlotRow {
    pub server: String,
    pub server_id: String,
    pub state: String,
    /// `primary` or `geoBackup`.
    pub slot: &'static str,
    pub vault: String,
    pub key: String,
    /// The version the server names; `None` for a version-less URI.
    pub version: Option<String>,
    /// Days since that version (or, version-less, the current one) was created.
    pub version_age_days: Option<i64>,
    /// Days until the version the server uses (or, version-less, the
    /// current one) expires, when it has an expiry.
    pub expires_in_days: Option<i64>,
    /// The key's current version in Key Vault.
    pub latest: Option<String>,
    /// Why the current version may not be used, if it may not.
    pub latest_problem: Option<String>,
    pub pinned: bool,
    /// `primaryEncryptionKeyStatus` / `geoBackupEncryptionKeyStatus`.
    pub key_status: Option<String>,
    /// Pinned to another version than the current usable one.
    pub drift: bool,
    /// The handler's decision for this server and key, in words.
    pub decision: String,
    /// `nothing`, `update`, `retry` or `report`.
    pub action: &'static str,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// Epoch seconds.
    pub generated_at: i64,
    pub rows: Vec<SlotRow>,
    /// Messages waiting in the poison queue, when the queue is configured.
    pub poison: Option<Vec<PoisonMessage>>,
    /// Servers or keys that could not be read.
    pub problems: Vec<String>,
}

/// Key Vault's near-expiry notice comes 30 days ahead; so does the report's.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

impl Report {
    pub fn drifted(&self) -> usize {
        self.rows.iter().filter(|r| r.drift).count()
    }
}

impl SlotRow {
    /// Unsafe: invalid key status, an unusable current version, an
    /// Inaccessible server, or a version expiring soon with nothing newer.
    pub fn is_unsafe(&self) -> bool {
        let expiring = self
            .expires_in_days
            .is_some_and(|d| d <= EXPIRY_WARNING_DAYS);
        self.key_status.as_deref() == Some("Invalid")
            || self.latest_problem.is_some()
            || self.state.eq_ignore_ascii_case("Inaccessible")
            || (expiring && !self.drift)
    }
}

/// Builds the report. `only_key` narrows it to one key.
pub async fn collect(
    state: &AppState,
    http: &Http,
    only_key: Option<&KeyId>,
) -> Result<Report, AzureError> {
    let config = &state.config;
    let budget = Budget::new(config.operation_budget);
    let graph = GraphClient::new(http, config);
    let candidates = match only_key {
        Some(key) => {
            graph
                .find_servers(key, config.opt_in_tag.as_ref(), &budget)
                .await?
        }
        None => graph.find_all(&budget).await?,
    };
    let (arm, vault, cache) = (
        ArmClient::new(http, config),
        KeyVaultClient::new(http, config),
        KeyCache::default(),
    );
    let mut report = Report {
        generated_at: now(),
        rows: Vec::new(),
        poison: None,
        problems: Vec::new(),
    };

    let in_scope: Vec<_> = candidates
        .iter()
        .filter(|c| subscription_of(&c.id).is_some_and(|s| config.subscriptions.contains(&s)))
        .collect();
    // Resource Graph answers a caller without read access with nothing at
    // all: an empty report must not look like a healthy one.
    if in_scope.is_empty() && only_key.is_none() {
        let tag = config.opt_in_tag.as_ref().map_or(String::new(), |t| {
            format!(" with the tag {}={}", t.name, t.value)
        });
        report.problems.push(format!(
            "no PostgreSQL flexible server with a Key Vault key{tag} was found in {}; if there should be some, check that the handler's identity can read flexible servers there (Resource Graph returns only what it may read)",
            config.subscriptions.join(", ")
        ));
    }
    for candidate in in_scope {
        if only_key.is_none() {
            report
                .problems
                .extend(candidate.uncovered(&config.keyvault_suffixes));
        }
        let keys: BTreeSet<String> = candidate
            .keys()
            .into_iter()
            .filter(|(_, k)| {
                only_key.is_none_or(|o| o.same_key(k))
                    && k.check_vault(&config.keyvault_suffixes).is_ok()
            })
            .map(|(_, k)| KeyId { version: None, ..k }.to_string())
            .collect();
        for key in keys.iter().filter_map(|k| KeyId::parse(k).ok()) {
            match assess(
                &arm,
                &vault,
                &cache,
                &candidate.id,
                &key,
                config.opt_in_tag.as_ref(),
                &budget,
            )
            .await
            {
                Ok(a) => report
                    .rows
                    .extend(rows_for(&a, &key, &vault, &cache, &budget).await),
                Err(e) => report.problems.push(format!("{}: {e}", candidate.name)),
            }
        }
    }
    report.poison = crate::queue::peek_poison(http, config, &budget)
        .await
        .map_err(|e| report.problems.push(e))
        .ok()
        .flatten();
    Ok(report)
}

async fn rows_for(
    a: &Assessment,
    key: &KeyId,
    vault: &KeyVaultClient<'_>,
    cache: &KeyCache,
    budget: &Budget,
) -> Vec<SlotRow> {
    let Some(server) = &a.server else {
        return Vec::new();
    };
    let latest = cache.get(vault, key, budget).await.ok();
    let latest_version = latest
        .as_ref()
        .and_then(|b| b.key_id().ok())
        .and_then(|k| k.version);
    let latest_problem = latest
        .as_ref()
        .and_then(|b| check_key(b, now()).err())
        .map(|e| e.to_string());
    let action = match a.disposition() {
        Disposition::Nothing => "nothing",
        Disposition::Update => "update",
        Disposition::Retry => "retry",
        Disposition::Report => "report",
    };

    let mut rows = Vec::new();
    for (slot, on) in server.slots_using(key) {
        let dated = if on.version.is_some() {
            cache.get(vault, &on, budget).await.ok()
        } else {
            latest.clone()
        };
        let age = dated
            .as_ref()
            .and_then(|b| b.attributes.created)
            .map(|c| (now() - c) / 86_400);
        let expires_in_days = dated
            .as_ref()
            .and_then(|b| b.attributes.exp)
            .map(|e| (e - now()).div_euclid(86_400));
        rows.push(SlotRow {
            server: server.name.clone(),
            server_id: server.id.clone(),
            state: server.state.clone(),
            slot: match slot {
                Slot::Primary => "primary",
                Slot::GeoBackup => "geoBackup",
            },
            vault: on.vault.clone(),
            key: on.name.clone(),
            drift: on.version.is_some() && latest_problem.is_none() && on.version != latest_version,
            pinned: on.version.is_some(),
            version: on.version,
            version_age_days: age,
            expires_in_days,
            latest: latest_version.clone(),
            latest_problem: latest_problem.clone(),
            key_status: server.key_status(slot),
            decision: a.describe(),
            action,
        });
    }
    rows
}

/// Handles `GET /api/status` from the host: JSON by default, HTML with
/// `?format=html` or an `Accept: text/html` header.
pub async fn handle_request(state: &AppState, invocation: &Invocation) -> Reply {
    let request = invocation.input("req").unwrap_or(Value::Null);
    let wants_html = request["Query"]["format"].as_str() == Some("html")
        || request["Headers"]
            .as_object()
            .into_iter()
            .flatten()
            .any(|(k, v)| k.eq_ignore_ascii_case("accept") && v.to_string().contains("text/html"));

    let report = match state.http() {
        Ok(http) => collect(state, http, None).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let (status, content_type, body) = match report {
        Ok(r) if wants_html => (200, "text/html; charset=utf-8", Value::String(to_html(&r))),
        Ok(r) => (
            200,
            "application/json",
            serde_json::to_value(&r).unwrap_or_default(),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "status report failed");
            (503, "application/json", json!({ "error": e }))
        }
    };
    let response =
        json!({ "statusCode": status, "headers": { "Content-Type": content_type }, "body": body });
    Reply::done().output(HTTP_OUTPUT, response)
}

/// The report as a page a person reads at a glance: drifted rows amber,
/// unsafe rows (invalid key status, unusable version, Inaccessible) red.
pub fn to_html(report: &Report) -> String {
    let mut rows = String::new();
    for r in &report.rows {
        let unsafe_row = r.is_unsafe();
        let class = if unsafe_row {
            "unsafe"
        } else if r.drift {
            "drift"
        } else {
            "ok"
        };
        let cells = [
            r.server.clone(),
            r.state.clone(),
            r.slot.to_string(),
            format!("{}/{}", r.vault, r.key),
            r.version
                .clone()
                .map_or("version-less".into(), |v| short(&v)),
            r.version_age_days.map_or("-".into(), |d| format!("{d} d")),
            r.expires_in_days
                .map_or("-".into(), |d| format!("in {d} d")),
            r.latest.clone().map_or("-".into(), |v| short(&v)),
            r.key_status.clone().unwrap_or_else(|| "-".into()),
            if r.drift {
                "behind".into()
            } else {
                "no".into()
            },
            r.decision.clone(),
        ];
        let cells: String = cells
            .iter()
            .map(|c| format!("<td>{}</td>", escape(c)))
            .collect();
        rows.push_str(&format!("<tr class=\"{class}\">{cells}</tr>\n"));
    }
    let poison = match &report.poison {
        None => "<p>Poison queue: not configured.</p>".to_string(),
        Some(list) if list.is_empty() => "<p>Poison queue: empty.</p>".to_string(),
        Some(list) => {
            let items: String = list
                .iter()
                .map(|m| format!("<li>{}</li>", escape(&m.summary())))
                .collect();
            format!(
                "<p class=\"unsafe\">Poison queue: {} message(s)</p><ul>{items}</ul>",
                list.len()
            )
        }
    };
    let problems: String = report
        .problems
        .iter()
        .map(|p| format!("<li>{}</li>", escape(p)))
        .collect();
    let problems = if problems.is_empty() {
        String::new()
    } else {
        format!("<h2>Problems</h2>\n<ul class=\"problems\">{problems}</ul>")
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>CMK rotation status</title>\n<style>{STYLE}</style></head>\n<body><h1>CMK rotation status</h1>\n<p id=\"summary\">{} key reference(s), {} behind, generated {}</p>\n<table><thead><tr><th>server</th><th>state</th><th>slot</th><th>vault/key</th><th>version</th><th>age</th><th>expires</th><th>current</th><th>key status</th><th>drift</th><th>decision</th></tr></thead>\n<tbody>\n{rows}</tbody></table>\n{poison}\n{problems}\n</body></html>\n",
        report.rows.len(),
        report.drifted(),
        httpdate::fmt_http_date(
            std::time::UNIX_EPOCH
                + std::time::Duration::from_secs(report.generated_at.max(0) as u64)
        )
    )
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}\
td,th{border:1px solid #999;padding:.3em .6em;text-align:left}th{background:#eee}\
tr.drift{background:#ffe08a}tr.unsafe,p.unsafe{background:#f4a3a3}";

fn short(version: &str) -> String {
    version.chars().take(8).collect::<String>() + "…"
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
