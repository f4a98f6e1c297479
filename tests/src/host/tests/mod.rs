//! Tests of the simulator against the `fake_handler` binary
//! (`src/bin/fake_handler.rs`, built on demand), plus their fixtures: the
//! binary's location and throw-away function apps.

mod eventgrid;
mod http;
mod queues;
mod storage;
mod timer;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::host::{FunctionsHost, HostOptions};

/// Builds (once per test process) and locates `target/<profile>/fake_handler`.
pub(crate) fn fake_handler() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("current exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps/..");
        let bin = profile_dir.join("fake_handler");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = std::process::Command::new(cargo);
        cmd.args(["build", "-q", "-p", "standin", "--bin", "fake_handler"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let built = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .is_ok_and(|s| s.success());
        assert!(built || bin.is_file(), "cannot build fake_handler");
        bin
    })
    .clone()
}

/// A temporary function app, removed on drop.
pub(crate) struct TempApp {
    pub root: PathBuf,
}

impl Drop for TempApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn write_json(path: &Path, value: &Value) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, serde_json::to_string_pretty(value).expect("json")).expect("write");
}

/// An app with the given `extensions.queues` and functions.
pub(crate) fn app(queues: Value, functions: &[(&str, Value)]) -> TempApp {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let root = std::env::temp_dir().join(format!("standin-host-{}-{n}", std::process::id()));
    let host = json!({
        "version": "2.0",
        "customHandler": {"description": {"defaultExecutablePath": "handler", "arguments": []}},
        "extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"},
        "functionTimeout": "00:30:00",
        "extensions": {"queues": queues},
    });
    write_json(&root.join("host.json"), &host);
    for (name, bindings) in functions {
        write_json(
            &root.join(name).join("function.json"),
            &json!({ "bindings": bindings }),
        );
    }
    TempApp { root }
}

/// The shape of our real app: Event Grid → queue output → queue trigger.
pub(crate) fn our_app() -> TempApp {
    let queues = json!({"messageEncoding": "base64", "batchSize": 8, "newBatchThreshold": 4,
        "maxDequeueCount": 5, "visibilityTimeout": "00:01:00"});
    let key_event = json!([
        {"type": "eventGridTrigger", "name": "event", "direction": "in"},
        {"type": "queue", "name": "rotations", "direction": "out", "queueName": "cmk-rotations",
         "connection": "AzureWebJobsStorage"}
    ]);
    let rotate = json!([{"type": "queueTrigger", "name": "message", "direction": "in",
        "queueName": "cmk-rotations", "connection": "AzureWebJobsStorage"}]);
    app(queues, &[("KeyEvent", key_event), ("RotateServer", rotate)])
}

/// Options for `app` with the fake handler and a 50 ms retry delay.
pub(crate) fn options(app: &TempApp, env: &[(&str, &str)]) -> HostOptions {
    HostOptions {
        app_root: app.root.clone(),
        handler_bin: fake_handler(),
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        retry_delay: Some(Duration::from_millis(50)),
        echo_logs: false,
    }
}

/// Starts the host for `app`.
pub(crate) async fn start(app: &TempApp) -> FunctionsHost {
    FunctionsHost::start(options(app, &[]))
        .await
        .expect("host starts")
}

/// A Key Vault event (Event Grid schema) carrying a fake instruction.
pub(crate) fn kv_event(id: &str, fake: Value) -> Value {
    json!({
        "id": id,
        "topic": "/subscriptions/0000/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv",
        "subject": "cmk",
        "eventType": "Microsoft.KeyVault.KeyNewVersionCreated",
        "data": {"Id": format!("https://kv.vault.azure.net/keys/cmk/{id}"), "VaultName": "kv",
                 "ObjectType": "Key", "ObjectName": "cmk", "Version": id, "NBF": null, "EXP": null,
                 "fake": fake},
        "dataVersion": "1",
        "metadataVersion": "1",
        "eventTime": "2024-01-01T00:00:00.0000000Z"
    })
}

/// What the fake handler saw for an invocation (`ReturnValue.seen`).
pub(crate) fn seen(inv: &crate::host::Invocation) -> Value {
    inv.body
        .as_ref()
        .map(|b| b["ReturnValue"]["seen"].clone())
        .unwrap_or(Value::Null)
}
