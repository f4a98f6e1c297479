//! The operator CLI (`handler plan | rotate | status`) against the stand-in,
//! run as a person would: the real binary, settings from the environment.

use std::process::Stdio;

use serde_json::Value;

use crate::support::*;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn handler(w: &World, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .args(args)
        .envs(handler_env(&w.azure))
        .env("CMK_OPERATION_BUDGET_SECS", "20")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("handler runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A key with three subscribed servers (one behind, one version-less, one
/// Stopped) and one behind without the opt-in tag.
async fn world() -> (World, [String; 3]) {
    let w = World::start().await;
    w.add_version(&v(1));
    let behind = w.add_server("pg-behind", &key_uri(&v(1)));
    let floating = w.add_server("pg-floating", &format!("https://{VAULT}/keys/{KEY}"));
    let stopped = w.add_server("pg-stopped", &key_uri(&v(1)));
    w.azure.set_server_state(&stopped, "Stopped");
    w.add_spec(server("pg-untagged").with_primary_key(&key_uri(&v(1))));
    w.add_version(&v(2));
    (w, [behind, floating, stopped])
}

fn key() -> String {
    format!("https://{VAULT}/keys/{KEY}")
}

#[tokio::test]
async fn plan_shows_changes_and_skips_and_writes_nothing() {
    let (w, [behind, ..]) = world().await;
    let run = handler(&w, &["plan", "--key", &key()]).await;
    assert_eq!(
        run.code, 1,
        "a Stopped server needs attention: {}",
        run.stderr
    );
    assert!(run.stdout.contains("pg-behind"));
    assert!(run.stdout.contains(&format!(
        "primaryKeyURI {} → {}",
        key_uri(&v(1)),
        key_uri(&v(2))
    )));
    assert!(run.stdout.contains("version-less"));
    assert!(run.stdout.contains("pg-stopped is Stopped"));
    assert!(
        run.stdout
            .contains("pg-untagged does not carry the opt-in tag; not touched"),
        "{}",
        run.stdout
    );
    assert!(w.azure.patches().is_empty(), "plan changes nothing");
    assert_eq!(w.encryption(&behind, "primaryKeyURI"), key_uri(&v(1)));

    let run = handler(&w, &["plan", "--key", &key(), "--json"]).await;
    let rows: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let actions: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["update", "skip", "attention", "skip"]);
    assert!(w.azure.patches().is_empty());
}

#[tokio::test]
async fn rotate_without_a_terminal_or_yes_refuses_and_changes_nothing() {
    let (w, [behind, ..]) = world().await;
    let run = handler(&w, &["rotate", "--key", &key()]).await;
    assert_eq!(run.code, 4);
    assert!(run.stderr.contains("pass --yes"));
    assert!(w.azure.patches().is_empty());
    assert_eq!(w.encryption(&behind, "primaryKeyURI"), key_uri(&v(1)));
}

#[tokio::test]
async fn rotate_with_yes_updates_inline_and_summarises() {
    let (w, [behind, floating, stopped]) = world().await;
    let run = handler(&w, &["rotate", "--key", &key(), "--yes"]).await;
    assert_eq!(run.code, 1, "the Stopped server still needs attention");
    assert!(run.stdout.contains("pg-behind rotated"), "{}", run.stdout);
    assert_eq!(w.encryption(&behind, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.encryption(&floating, "primaryKeyURI"), key());
    assert_eq!(w.encryption(&stopped, "primaryKeyURI"), key_uri(&v(1)));
    assert!(run.stdout.contains("pg-untagged"), "in the summary");
    assert_eq!(
        w.azure.patches().len(),
        1,
        "the untagged server is not touched"
    );
}

#[tokio::test]
async fn rotate_one_named_server_ignores_the_others() {
    let (w, [behind, ..]) = world().await;
    let other = w.add_server("pg-other", &key_uri(&v(1)));
    let run = handler(
        &w,
        &[
            "rotate",
            "--key",
            &key(),
            "--server",
            &behind,
            "--yes",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(w.encryption(&behind, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.encryption(&other, "primaryKeyURI"), key_uri(&v(1)));
    assert!(
        w.azure
            .requests()
            .iter()
            .all(|r| !r.path.contains("ResourceGraph")),
        "no discovery for a named server"
    );
}

#[tokio::test]
async fn status_reports_every_key_reference_with_its_drift() {
    let (w, _) = world().await;
    let run = handler(&w, &["status", "--json"]).await;
    assert_eq!(run.code, 1, "drift present: {}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let row = |name: &str| rows.iter().find(|r| r["server"] == name).unwrap().clone();
    assert_eq!(row("pg-behind")["drift"], true);
    assert_eq!(row("pg-behind")["version"], v(1));
    assert_eq!(row("pg-behind")["latest"], v(2));
    assert_eq!(row("pg-behind")["keyStatus"], "Valid");
    assert_eq!(row("pg-floating")["pinned"], false);
    assert_eq!(row("pg-floating")["drift"], false);
    assert_eq!(row("pg-stopped")["state"], "Stopped");
    assert!(w.azure.patches().is_empty(), "status changes nothing");

    let table = handler(&w, &["status"]).await;
    assert!(table.stdout.contains("BEHIND"));
}

#[tokio::test]
async fn status_of_an_empty_scope_is_a_problem_not_a_clean_bill() {
    let (w, _) = world().await;
    let empty = "11111111-1111-1111-1111-111111111111";
    let run = handler(&w, &["status", "--subscription", empty]).await;
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("problem: no PostgreSQL flexible server with a Key Vault key with the tag cmk-rotation=enabled was found in 11111111-1111-1111-1111-111111111111"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn bad_arguments_exit_with_the_usage_code() {
    let (w, _) = world().await;
    assert_eq!(handler(&w, &["plan"]).await.code, 2);
    let run = handler(&w, &["plan", "--key", "https://evil.example/keys/k"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr
            .contains("not under a configured Key Vault DNS suffix")
    );
    assert!(w.azure.requests().is_empty());

    // A bad --subscription is blamed on the flag, not the environment.
    let run = handler(&w, &["status", "--subscription", "not-a-guid"]).await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("--subscription: \"not-a-guid\""),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn rotating_a_named_server_with_a_key_it_does_not_use_is_a_usage_error() {
    let (w, [behind, ..]) = world().await;
    let other = format!("https://{VAULT}/keys/another-key");
    let run = handler(
        &w,
        &["rotate", "--key", &other, "--server", &behind, "--yes"],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("does not use this key"));
    assert!(w.azure.patches().is_empty());
}
