//! One module per figure of issue #6. Each measures one subject and
//! returns plain numbers; `main` pairs them into report rows.

pub mod cold;
pub mod package;
pub mod plan;
pub mod rotate;
pub mod throughput;

use std::path::PathBuf;

use anyhow::{Result, ensure};
use serde_json::Value;

/// Where the benchmark works.
pub struct Bench {
    /// The repository root.
    pub repo: PathBuf,
    /// Scratch directory (certificates, function apps, packages).
    pub dir: PathBuf,
}

/// Checks an invocation answer: status 200 and, when `queued` is given,
/// that many messages in the `rotations` output.
pub fn check_answer(status: u16, body: &[u8], queued: Option<usize>) -> Result<()> {
    let text = String::from_utf8_lossy(body);
    ensure!(status == 200, "invocation answered {status}: {text}");
    if let Some(n) = queued {
        let answer: Value = serde_json::from_slice(body)?;
        let got = answer["Outputs"]["rotations"]
            .as_array()
            .map_or(0, Vec::len);
        ensure!(got == n, "expected {n} queued messages, got {got}: {text}");
    }
    Ok(())
}

/// KiB to MiB.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
