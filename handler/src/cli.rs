//! The operator CLI: the same binary, for a person at a terminal (Azure CLI
//! credentials by default). `plan` and `status` only read; `rotate` asks
//! before it writes. Serving the Functions routes stays the default.

use std::io::{BufRead, IsTerminal, Write};

use clap::{Parser, Subcommand};
use serde_json::{Value, json};

use crate::{
    app::AppState,
    arm::{ArmClient, subscription_of},
    assess::{Assessment, Decision, Disposition, KeyCache, assess},
    graph::GraphClient,
    http::{AzureError, Budget, Http},
    key_id::KeyId,
    keyvault::KeyVaultClient,
    rotate::{Outcome, apply},
    status,
};

const EXAMPLES: &str = "\
Examples:
  handler plan --key https://contoso-kv.vault.azure.net/keys/pg-cmk
  handler rotate --key https://contoso-kv.vault.azure.net/keys/pg-cmk
  handler rotate --key https://contoso-kv.vault.azure.net/keys/pg-cmk \\
      --server /subscriptions/<id>/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-01 --yes
  handler status --json
  handler                  (no command: serve the Functions routes, as the host runs it)

Settings come from the environment as in README.md (CMK_SUBSCRIPTIONS, ...);
--subscription overrides CMK_SUBSCRIPTIONS. Tokens: CMK_CREDENTIAL
(managed-identity, client-secret or azure-cli); unset, the managed identity
when IDENTITY_ENDPOINT and IDENTITY_HEADER are both set, else the Azure CLI
login (az login).

Exit codes:
  0  done, or nothing to do
  1  some server needs attention (reported, to retry, or failed); for status,
     a key reference behind or unsafe, or a problem listed
  2  bad usage or configuration (also: a --server that does not use the key,
     or a port that cannot be bound when serving)
  3  Azure could not be read (throttled, unreachable, no permission)
  4  rotation not confirmed";

/// Exit codes, as listed in `--help`.
pub mod exit {
    pub const OK: u8 = 0;
    pub const ATTENTION: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const AZURE: u8 = 3;
    pub const DECLINED: u8 = 4;
}

/// Keeps PostgreSQL flexible servers on the current version of their Key
/// Vault customer-managed key.
#[derive(Debug, Parser)]
#[command(name = "handler", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Subscription to search; repeat for several. Overrides CMK_SUBSCRIPTIONS.
    #[arg(long = "subscription", global = true, value_name = "ID")]
    pub subscriptions: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Serve the Functions custom-handler routes (the default).
    Serve,
    /// Show which servers a rotation of a key would change, from what to
    /// what, and which it would skip and why. Changes nothing.
    Plan {
        /// Key identifier: https://{vault}/keys/{name}[/{version}].
        #[arg(long)]
        key: String,
    },
    /// Bring servers onto the key's current version now, inline.
    Rotate {
        /// Key identifier: https://{vault}/keys/{name}[/{version}].
        #[arg(long)]
        key: String,
        /// Only this server (ARM resource id); the opt-in tag is not required.
        #[arg(long, value_name = "SERVER_ID")]
        server: Option<String>,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Where every server in scope stands.
    Status {
        /// Only servers using this key.
        #[arg(long)]
        key: Option<String>,
    },
}

/// Runs a CLI command; returns the exit code.
pub async fn run(command: Command, json: bool, state: &AppState) -> u8 {
    let http = match state.http() {
        Ok(h) => h,
        Err(e) => return fail(exit::USAGE, &format!("cannot build the Azure client: {e}")),
    };
    let key = match &command {
        Command::Plan { key } | Command::Rotate { key, .. } => Some(key.as_str()),
        Command::Status { key } => key.as_deref(),
        Command::Serve => None,
    };
    let key = match key.map(|k| parse_key(state, k)).transpose() {
        Ok(k) => k,
        Err(e) => return fail(exit::USAGE, &e),
    };
    if let Command::Rotate {
        server: Some(id), ..
    } = &command
    {
        let in_scope = crate::arm::subscription_of(id)
            .is_some_and(|s| state.config.subscriptions.contains(&s));
        if !in_scope {
            return fail(
                exit::USAGE,
                &format!("--server {id}: not a flexible server id in a configured subscription"),
            );
        }
    }
    let result = match (command, key) {
        (Command::Plan { .. }, Some(key)) => plan(state, http, &key, None, json)
            .await
            .map(|a| attention(&a)),
        (Command::Rotate { server, yes, .. }, Some(key)) => {
            rotate(state, http, &key, server.as_deref(), yes, json).await
        }
        (Command::Status { .. }, key) => show_status(state, http, key.as_ref(), json).await,
        _ => Ok(exit::USAGE),
    };
    result.unwrap_or_else(|e| fail(exit::AZURE, &e.to_string()))
}

fn parse_key(state: &AppState, text: &str) -> Result<KeyId, String> {
    let key = KeyId::parse(text).map_err(|e| format!("--key {text}: {e}"))?;
    key.check_vault(&state.config.keyvault_suffixes)
        .map_err(|e| format!("--key {text}: {e}"))?;
    Ok(KeyId {
        version: None,
        ..key
    })
}

fn fail(code: u8, message: &str) -> u8 {
    eprintln!("error: {message}");
    code
}

/// Assesses the servers for `key` (or the one named) and prints the plan.
async fn plan(
    state: &AppState,
    http: &Http,
    key: &KeyId,
    server: Option<&str>,
    json: bool,
) -> Result<Vec<Assessment>, AzureError> {
    let assessments = assess_all(state, http, key, server).await?;
    if json {
        let rows: Vec<Value> = assessments.iter().map(assessment_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
    } else {
        print_plan(&assessments);
    }
    Ok(assessments)
}

async fn assess_all(
    state: &AppState,
    http: &Http,
    key: &KeyId,
    server: Option<&str>,
) -> Result<Vec<Assessment>, AzureError> {
    let config = &state.config;
    let budget = Budget::new(config.operation_budget);
    let ids: Vec<String> = match server {
        Some(id) => vec![id.to_string()],
        // Untagged servers too, so that the plan says why they are skipped.
        None => GraphClient::new(http, config)
            .find_servers(key, None, &budget)
            .await?
            .into_iter()
            .map(|c| c.id)
            .filter(|id| subscription_of(id).is_some_and(|s| config.subscriptions.contains(&s)))
            .collect(),
    };
    let tag = if server.is_some() {
        None
    } else {
        config.opt_in_tag.as_ref()
    };
    let (arm, vault, cache) = (
        ArmClient::new(http, config),
        KeyVaultClient::new(http, config),
        KeyCache::default(),
    );
    let mut assessments = Vec::new();
    for id in ids {
        assessments.push(assess(&arm, &vault, &cache, &id, key, tag, &budget).await?);
    }
    Ok(assessments)
}

fn action(a: &Assessment) -> &'static str {
    match a.disposition() {
        Disposition::Nothing => "skip",
        Disposition::Update => "update",
        Disposition::Retry => "wait",
        Disposition::Report => "attention",
    }
}

fn assessment_json(a: &Assessment) -> Value {
    let changes = match &a.decision {
        Decision::Update { changes } | Decision::Busy { changes, .. } | Decision::Untouchable { changes, .. } => changes
            .iter()
            .map(|c| json!({"slot": c.slot.uri_field(), "from": c.from.to_string(), "to": c.to.to_string()}))
            .collect(),
        _ => Vec::new(),
    };
    json!({"server": a.name(), "serverId": a.server_id, "action": action(a), "decision": a.describe(), "changes": changes})
}

fn print_plan(assessments: &[Assessment]) {
    if assessments.is_empty() {
        println!("No server in scope uses this key.");
        return;
    }
    println!("{:<28} {:<10} decision", "server", "action");
    for a in assessments {
        println!("{:<28} {:<10} {}", a.name(), action(a), a.describe());
    }
}

fn attention(assessments: &[Assessment]) -> u8 {
    let needs = assessments
        .iter()
        .any(|a| matches!(a.disposition(), Disposition::Report | Disposition::Retry));
    if needs { exit::ATTENTION } else { exit::OK }
}

async fn rotate(
    state: &AppState,
    http: &Http,
    key: &KeyId,
    server: Option<&str>,
    yes: bool,
    json: bool,
) -> Result<u8, AzureError> {
    let assessments = plan(state, http, key, server, json).await?;
    let updates: Vec<&Assessment> = assessments
        .iter()
        .filter(|a| a.disposition() == Disposition::Update)
        .collect();
    let named_missing = server.is_some()
        && assessments
            .iter()
            .any(|a| matches!(a.decision, Decision::Gone | Decision::NotUsingKey));
    if named_missing {
        eprintln!("The named server does not exist or does not use this key.");
        return Ok(exit::USAGE);
    }
    if updates.is_empty() {
        if !json {
            println!("Nothing to update.");
        }
        return Ok(attention(&assessments));
    }
    if !yes && !confirm(updates.len()) {
        eprintln!("Not confirmed; nothing was changed.");
        return Ok(exit::DECLINED);
    }

    let config = &state.config;
    let arm = ArmClient::new(http, config);
    let mut results = Vec::new();
    for a in updates {
        let (Some(server), Decision::Update { changes }) = (&a.server, &a.decision) else {
            continue;
        };
        eprintln!("{}: updating, waiting for the operation…", a.name());
        let outcome = apply(
            &arm,
            server,
            changes,
            a.read_at,
            &Budget::new(config.operation_budget),
        )
        .await;
        let (ok, text) = match &outcome {
            Outcome::Rotated(m) => (true, m.clone()),
            Outcome::Skipped(m) => (true, m.clone()),
            Outcome::Reported(m) | Outcome::Retry(m) | Outcome::Busy(m) => (false, m.clone()),
        };
        eprintln!("{}: {}", a.name(), if ok { "done" } else { "FAILED" });
        results.push((a.name().to_string(), ok, text));
    }
    // The summary covers every server, not only the updated ones.
    for a in assessments
        .iter()
        .filter(|a| a.disposition() != Disposition::Update)
    {
        let ok = a.disposition() == Disposition::Nothing;
        results.push((a.name().to_string(), ok, a.describe()));
    }
    print_results(&results, json);
    let failed = results.iter().any(|(_, ok, _)| !ok);
    Ok(if failed {
        exit::ATTENTION
    } else {
        attention(&assessments)
    })
}

fn confirm(count: usize) -> bool {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!(
            "Refusing to update {count} server(s) without a terminal to confirm; pass --yes."
        );
        return false;
    }
    eprint!("Update {count} server(s)? [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = stdin.lock().read_line(&mut answer);
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

fn print_results(results: &[(String, bool, String)], json: bool) {
    if json {
        let rows: Vec<Value> = results
            .iter()
            .map(|(s, ok, m)| json!({"server": s, "ok": ok, "result": m}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).unwrap_or_default()
        );
        return;
    }
    println!("\n{:<28} {:<9} result", "server", "outcome");
    for (server, ok, text) in results {
        println!(
            "{server:<28} {:<9} {text}",
            if *ok { "ok" } else { "attention" }
        );
    }
}

async fn show_status(
    state: &AppState,
    http: &Http,
    key: Option<&KeyId>,
    json: bool,
) -> Result<u8, AzureError> {
    let report = status::collect(state, http, key).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        println!(
            "{:<24} {:<10} {:<10} {:<34} {:<12} {:<12} {:<8} drift",
            "server", "state", "slot", "vault/key", "version", "current", "status"
        );
        for r in &report.rows {
            let short = |v: &Option<String>| {
                v.as_deref()
                    .map_or("version-less".to_string(), |v| v.chars().take(10).collect())
            };
            println!(
                "{:<24} {:<10} {:<10} {:<34} {:<12} {:<12} {:<8} {}",
                r.server,
                r.state,
                r.slot,
                format!(
                    "{}/{}",
                    r.vault.split('.').next().unwrap_or_default(),
                    r.key
                ),
                short(&r.version),
                short(&r.latest),
                r.key_status.as_deref().unwrap_or("-"),
                if r.drift { "BEHIND" } else { "-" }
            );
        }
        for p in &report.problems {
            println!("problem: {p}");
        }
        if let Some(poison) = &report.poison {
            println!("poison queue: {} message(s)", poison.len());
        }
    }
    let unsafe_rows = report.rows.iter().any(|r| r.drift || r.is_unsafe());
    Ok(if unsafe_rows || !report.problems.is_empty() {
        exit::ATTENTION
    } else {
        exit::OK
    })
}
