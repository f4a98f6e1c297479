//! The local demo: a Key Vault key rotates, the real-format Event Grid event
//! goes through the Functions host simulator into the real `handler`
//! binary, and the subscribed flexible servers move to the new version.
//! Everything runs on 127.0.0.1 against the stand-in; no Azure account.
//!
//! Run it with `cargo run -p standin --bin demo`; add `-- --stay` to keep
//! everything running afterwards, for the status page and the operator CLI.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use standin::{
    azure::{FakeAzure, KeyVersionSpec, ServerSpec},
    host::{FunctionsHost, HostOptions},
};
use tokio::io::{AsyncBufReadExt, BufReader};

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const VAULT: &str = "contoso-kv.vault.azure.net";
const KEY: &str = "pg-cmk";
const TAG: (&str, &str) = ("cmk-rotation", "enabled");

#[tokio::main]
async fn main() -> Result<()> {
    let stay = std::env::args().skip(1).any(|a| a == "--stay");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let handler = handler_binary(&root)?;

    let azure = FakeAzure::start().await;
    azure.set_retry_after(1);
    let v1 = azure.add_key_version(VAULT, KEY, KeyVersionSpec::default());
    let servers = seed_servers(&azure, &v1);
    println!(
        "Stand-in Azure on {} (Key Vault, Resource Manager, Resource Graph, managed identity)",
        azure.base_url()
    );
    println!("Vault {VAULT}, key {KEY}, current version {v1}\n");

    let host = FunctionsHost::start(HostOptions {
        app_root: root.join("function-app"),
        handler_bin: handler.clone(),
        env: handler_settings(&azure),
        retry_delay: Some(Duration::from_secs(1)),
        echo_logs: true,
    })
    .await
    .context("starting the handler under the Functions host simulator")?;

    rotate_and_report(&azure, &host, &servers, 1).await?;
    if stay {
        stay_running(&azure, &host, &servers, &handler, &root).await?;
        host.stop().await;
        // A read of the terminal may still be pending on a blocking thread,
        // which would hold the runtime open until Enter: leave now.
        std::process::exit(0);
    }
    host.stop().await;
    Ok(())
}

/// Rotates the key, as `az keyvault key rotate` or a rotation policy
/// would, delivers the event through the host's Event Grid webhook, drains
/// the queue and prints where each server stands.
async fn rotate_and_report(
    azure: &FakeAzure,
    host: &FunctionsHost,
    servers: &[(&str, String)],
    round: u32,
) -> Result<()> {
    let before: Vec<String> = servers
        .iter()
        .map(|(_, id)| primary_key(azure, id))
        .collect();
    let patches_before = azure.patches().len();

    let version = azure.add_key_version(VAULT, KEY, KeyVersionSpec::default());
    let event = new_version_event(&version, round);
    println!(
        "\nKey rotated: new version {version}. Event Grid delivers:\n{}\n",
        serde_json::to_string_pretty(&event)?
    );
    let (status, _) = host.post_event_grid("KeyEvent", &event).await?;
    println!("Functions host answered Event Grid: {status}\n");
    if status != 202 {
        bail!("the event was not accepted");
    }

    let stats = host.run_queues(Duration::from_secs(120)).await?;
    println!(
        "\nQueue drained: {} invocation(s), {} succeeded, {} failed, {} poisoned\n",
        stats.invocations, stats.succeeded, stats.failed, stats.poisoned
    );
    print_table(azure, host, servers, &before);
    println!(
        "\nARM PATCH requests: {}",
        azure.patches().len() - patches_before
    );
    Ok(())
}

/// `--stay`: keeps the stand-in and the host running so that a person can
/// open the status page, run the operator CLI against them, post events,
/// and rotate again; the queue is drained every second. Ends on Ctrl-C.
async fn stay_running(
    azure: &FakeAzure,
    host: &FunctionsHost,
    servers: &[(&str, String)],
    handler: &Path,
    root: &Path,
) -> Result<()> {
    let base = host.webhook_base();
    let fixture = root
        .join("tests/fixtures/events/key-new-version.eventgrid.json")
        .canonicalize()?;
    let code = host.function_key();
    let handler = handler.display();
    println!("\nThe stand-in and the Functions host simulator keep running; Ctrl-C stops them.\n");
    println!("Status page:  {base}/api/status?format=html&code={code}");
    println!("Status JSON:  {base}/api/status?code={code}\n");
    println!("Deliver an event as Event Grid does (the queue is drained every second):");
    println!(
        "  curl -i -X POST '{base}/runtime/webhooks/eventgrid?functionName=KeyEvent' \\\n    -H 'Content-Type: application/json' -H 'aeg-event-type: Notification' \\\n    --data @{}\n",
        fixture.display()
    );
    println!("The operator CLI against the stand-in, from another terminal:");
    for (name, value) in handler_settings(azure) {
        if !matches!(name.as_str(), "RUST_LOG" | "CMK_RECONCILE_SCHEDULE") {
            println!("  export {name}='{value}'");
        }
    }
    println!("  {handler} plan --key https://{VAULT}/keys/{KEY}");
    println!("  {handler} status\n");
    println!("Press Enter here to rotate the key again.");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut round = 1;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(_)) => {
                    round += 1;
                    rotate_and_report(azure, host, servers, round).await?;
                }
                _ => stdin_open = false,
            },
            _ = tick.tick() => {
                host.run_queues(Duration::from_secs(60)).await?;
            }
        }
    }
}

/// The handler binary: built by cargo beside this program.
fn handler_binary(root: &Path) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", "handler", "--bin", "handler"])
        .current_dir(root)
        .status()
        .context("running cargo build for the handler")?;
    if !status.success() {
        bail!("building the handler failed");
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("demo binary has no folder")?;
    let handler = dir.join(format!("handler{}", std::env::consts::EXE_SUFFIX));
    if !handler.is_file() {
        bail!("handler binary not found at {}", handler.display());
    }
    Ok(handler)
}

fn seed_servers(azure: &FakeAzure, v1: &str) -> Vec<(&'static str, String)> {
    let pinned = format!("https://{VAULT}/keys/{KEY}/{v1}");
    let server = |name: &str| ServerSpec {
        name: name.into(),
        ..ServerSpec::default()
    };
    let specs = [
        (
            "pg-orders",
            server("pg-orders")
                .with_primary_key(&pinned)
                .with_tag(TAG.0, TAG.1),
        ),
        (
            "pg-billing",
            server("pg-billing")
                .with_primary_key(&pinned)
                .with_geo_key(&pinned)
                .with_tag(TAG.0, TAG.1),
        ),
        (
            "pg-analytics",
            server("pg-analytics")
                .with_primary_key(&format!("https://{VAULT}/keys/{KEY}"))
                .with_tag(TAG.0, TAG.1),
        ),
        ("pg-legacy", server("pg-legacy").with_primary_key(&pinned)),
        (
            "pg-reporting",
            ServerSpec {
                state: "Stopped".into(),
                ..server("pg-reporting")
            }
            .with_primary_key(&pinned)
            .with_tag(TAG.0, TAG.1),
        ),
    ];
    specs
        .into_iter()
        .map(|(name, spec)| {
            let id = spec.id();
            azure.add_server(spec);
            (name, id)
        })
        .collect()
}

fn handler_settings(azure: &FakeAzure) -> Vec<(String, String)> {
    [
        ("CMK_SUBSCRIPTIONS", SUB.to_string()),
        ("CMK_OPT_IN_TAG", format!("{}={}", TAG.0, TAG.1)),
        ("CMK_ALLOW_HTTP", "true".into()),
        ("CMK_ARM_ENDPOINT", azure.base_url()),
        ("CMK_KEYVAULT_CONNECT_ADDRESS", azure.addr().to_string()),
        ("IDENTITY_ENDPOINT", azure.identity_endpoint()),
        ("IDENTITY_HEADER", FakeAzure::IDENTITY_HEADER.to_string()),
        ("CMK_DEFAULT_RETRY_AFTER_SECS", "1".into()),
        ("CMK_RECONCILE_SCHEDULE", "0 0 */6 * * *".into()),
        ("RUST_LOG", "info".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The event Key Vault publishes, in the Event Grid schema, as delivered;
/// each rotation of the demo gets its own event id.
fn new_version_event(version: &str, round: u32) -> Value {
    json!([{
        "id": format!("5b2f0f2e-9c53-4a4b-8a54-0c5f3d6e{round:04x}"),
        "topic": format!("/subscriptions/{SUB}/resourceGroups/rg-contoso-sec/providers/Microsoft.KeyVault/vaults/contoso-kv"),
        "subject": KEY,
        "eventType": "Microsoft.KeyVault.KeyNewVersionCreated",
        "eventTime": "2026-12-03T08:00:00.0000000Z",
        "data": {
            "Id": format!("https://{VAULT}/keys/{KEY}/{version}"),
            "VaultName": "contoso-kv",
            "ObjectType": "Key",
            "ObjectName": KEY,
            "Version": version,
            "NBF": null,
            "EXP": null
        },
        "dataVersion": "1",
        "metadataVersion": "1"
    }])
}

fn primary_key(azure: &FakeAzure, id: &str) -> String {
    let server = azure.server(id).unwrap_or_default();
    let uri = server["properties"]["dataEncryption"]["primaryKeyURI"]
        .as_str()
        .unwrap_or("-");
    shorten(uri)
}

/// `…/keys/pg-cmk/1a2b3c4d…` keeps the table narrow.
fn shorten(uri: &str) -> String {
    match uri.split_once("/keys/") {
        Some((_, rest)) if rest.len() > 18 => format!("{}…", &rest[..18]),
        Some((_, rest)) => rest.to_string(),
        None => uri.to_string(),
    }
}

/// The last thing the handler said about a server, from the invocation logs.
fn outcome(host: &FunctionsHost, name: &str) -> String {
    let said = host
        .invocations()
        .iter()
        .filter_map(|i| i.body.as_ref())
        .flat_map(|b| b["Logs"].as_array().cloned().unwrap_or_default())
        .filter_map(|l| l.as_str().map(str::to_string))
        .rfind(|l| l.contains(name));
    let Some(said) = said else {
        return "not subscribed (no opt-in tag): never queued".into();
    };
    // "pg-orders rotated: primaryKeyURI=… (verified)" → "rotated, verified".
    let clause = said.trim_start_matches(name).trim();
    let clause = clause.split([':', ';']).next().unwrap_or(clause).trim();
    if said.ends_with("(verified)") {
        format!("{clause}, verified")
    } else {
        clause.to_string()
    }
}

fn print_table(
    azure: &FakeAzure,
    host: &FunctionsHost,
    servers: &[(&str, String)],
    before: &[String],
) {
    println!("{:<13} {:<21} {:<21} outcome", "server", "before", "after");
    for ((name, id), before) in servers.iter().zip(before) {
        let after = primary_key(azure, id);
        println!(
            "{name:<13} {before:<21} {after:<21} {}",
            outcome(host, name)
        );
    }
}
