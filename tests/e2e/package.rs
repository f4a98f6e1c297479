//! The package that ships is the one that was tested: `scripts/package.sh`
//! zips this test build's `handler` binary exactly as it zips the release
//! one, and the test unpacks the zip, starts the binary from the unpacked
//! app with the host simulator and rotates a server through it.
//!
//! A release build takes minutes, so by default the test packages the debug
//! binary. CI builds the real package and points the same test at it with
//! `PACKAGE_ZIP=dist/function-app.zip`.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use standin::azure::FakeAzure;
use standin::host::{FunctionsHost, HostOptions};

use crate::support::*;

#[tokio::test]
async fn packaged_app_starts_from_the_zip_and_rotates_a_server() {
    let work = scratch_dir("package");
    let zip_path = match std::env::var_os("PACKAGE_ZIP") {
        Some(shipped) => PathBuf::from(shipped),
        None => {
            let zip_path = work.join("function-app.zip");
            package(&zip_path);
            zip_path
        }
    };

    let entries = read_entries(&zip_path);
    let names: BTreeSet<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        names,
        expected_entries().iter().map(String::as_str).collect()
    );
    let handler = entries
        .iter()
        .find(|e| e.name == "handler")
        .expect("binary");
    assert_eq!(
        handler.mode,
        Some(0o100755),
        "the binary keeps its exec bit"
    );
    assert!(
        entries.iter().all(|e| !e.name.contains("local.settings")),
        "local settings never ship"
    );

    let app = work.join("unpacked");
    unpack(&zip_path, &app);

    let azure = FakeAzure::start().await;
    let host = FunctionsHost::start(HostOptions {
        app_root: app.clone(),
        // Empty: the host starts host.json's defaultExecutablePath from the app.
        handler_bin: PathBuf::new(),
        env: handler_env(&azure),
        retry_delay: Some(Duration::from_millis(50)),
        echo_logs: std::env::var_os("E2E_ECHO_LOGS").is_some(),
    })
    .await
    .expect("the host starts the packaged handler");
    let w = World { azure, host };

    w.add_version(&v(1));
    let server = w.add_server("pg-packaged", &key_uri(&v(1)));
    w.add_version(&v(2));
    let (status, body) = w.deliver(&new_version_event("e-package", &v(2))).await;
    assert_eq!(status, 202, "{body}");
    let stats = w.drain().await;

    assert_eq!(w.encryption(&server, "primaryKeyURI"), key_uri(&v(2)));
    assert_eq!(w.patches_for(&server).len(), 1);
    assert_eq!(stats.poisoned, 0);

    w.host.stop().await;
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn package_refuses_a_missing_binary() {
    let work = scratch_dir("package-missing");
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/package.sh"))
        .args(["--binary", "/nonexistent/handler", "--out"])
        .arg(work.join("app.zip"))
        .output()
        .expect("bash runs");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no binary at /nonexistent/handler"),
        "{output:?}"
    );
    let _ = std::fs::remove_dir_all(&work);
}

/// Runs the package script on this build's binary.
fn package(zip_path: &Path) {
    let output = Command::new("bash")
        .arg(repo_root().join("scripts/package.sh"))
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_handler"))
        .arg("--out")
        .arg(zip_path)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "package.sh failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("MiB"), "the size is printed: {stdout}");
    assert!(
        stdout.contains("needs "),
        "the C library is named: {stdout}"
    );
}

/// host.json, the binary, and every function folder with its function.json.
fn expected_entries() -> BTreeSet<String> {
    let mut names = BTreeSet::from(["host.json".to_string(), "handler".to_string()]);
    for entry in std::fs::read_dir(repo_root().join("function-app")).expect("function-app/") {
        let path = entry.expect("entry").path();
        if path.join("function.json").is_file() {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            names.insert(format!("{name}/"));
            names.insert(format!("{name}/function.json"));
        }
    }
    names
}

struct Entry {
    name: String,
    mode: Option<u32>,
    data: Vec<u8>,
}

/// Reads the zip with the `zip` crate, independently of the Python that
/// wrote it.
fn read_entries(path: &Path) -> Vec<Entry> {
    let file = std::fs::File::open(path).expect("zip exists");
    let mut archive = zip::ZipArchive::new(file).expect("a zip file");
    (0..archive.len())
        .map(|i| {
            let mut entry = archive.by_index(i).expect("entry");
            let mut data = Vec::new();
            entry.read_to_end(&mut data).expect("entry inflates");
            Entry {
                name: entry.name().expect("UTF-8 name").to_string(),
                mode: entry.unix_mode(),
                data,
            }
        })
        .collect()
}

/// Unpacks with the modes the zip records, as the platform does.
fn unpack(zip_path: &Path, dir: &Path) {
    for entry in read_entries(zip_path) {
        assert!(
            !entry.name.starts_with('/') && !entry.name.split('/').any(|p| p == ".."),
            "entry {} escapes the app folder",
            entry.name
        );
        let path = dir.join(&entry.name);
        if entry.name.ends_with('/') {
            std::fs::create_dir_all(&path).expect("dir");
            continue;
        }
        std::fs::create_dir_all(path.parent().unwrap()).expect("parent dir");
        std::fs::write(&path, &entry.data).expect("file");
        let mode = entry.mode.unwrap_or(0o644) & 0o7777;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("mode");
    }
}

/// A fresh directory under the test target's scratch space.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}
