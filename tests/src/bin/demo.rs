//! The local demo: a Key Vault key rotates, the real-format Event Grid event
//! goes through the Functions host simulator into the real `handler`
//! binary, and the subscribed flexible servers move to the new version.
//! Everything runs on 127.0.0.1 against the stand-in; no Azure account.
//!
//! Run it with `cargo run -p standin --bin demo`.

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

const SUB: &str = "00000000-0000-0000-0000-000000000000";
const VAULT: &str = "contoso-kv.vault.azure.net";
const KEY: &str = "pg-cmk";
const TAG: (&str, &str) = ("cmk-rotation", "enabled");

#[tokio::main]
async fn main() -> Result<()> {
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
        handler_bin: handler,
        env: handler_settings(&azure),
        retry_delay: Some(Duration::from_secs(1)),
        echo_logs: true,
    })
    .await
    .context("starting the handler under the Functions host simulator")?;
    let before: Vec<String> = servers
        .iter()
        .map(|(_, id)| primary_key(&azure, id))
        .collect();

    // Rotate the key, as `az keyvault key rotate` or a rotation policy would.
    let v2 = azure.add_key_version(VAULT, KEY, KeyVersionSpec::default());
    let event = new_version_event(&v2);
    println!(
        "\nKey rotated: new version {v2}. Event Grid delivers:\n{}\n",
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
    print_table(&azure, &host, &servers, &before);
    host.stop().await;
    Ok(())
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

/// The event Key Vault publishes, in the Event Grid schema, as delivered.
fn new_version_event(version: &str) -> Value {
    json!([{
        "id": "5b2f0f2e-9c53-4a4b-8a54-0c5f3d6e7a01",
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
    let patches = azure.patches().len();
    println!("\nARM PATCH requests: {patches}");
}
