//! `bench`: the measurements of issue #6, the Rust handler against a Python
//! baseline written with Microsoft's SDKs, both run against the local
//! stand-in for Azure on this machine. Start it with `bash bench/run.sh`
//! (which builds the release binaries and the Python venv first); it prints
//! a table and rewrites the generated part of `bench/BENCHMARKS.md`.
//!
//! Flags: `--quick` (fewer repetitions), `--only cold,plan,throughput,
//! rotate,package`, `--no-write` (print only), `--handler-only` (skip the
//! baseline while working on the handler; implies `--no-write`).
//! Environment: `BENCH_HANDLER=path` measures another handler binary (a
//! glibc or profiling build); `BENCH_SHOW_OUTPUT=1` prints each subject's
//! last log lines, `BENCH_RUST_LOG` sets the handler's `RUST_LOG`.
//!
//! Not a test: `cargo test` and CI never run it.

mod edge;
mod figures;
mod load;
mod options;
mod procfs;
mod report;
mod scenario;
mod stats;
mod subject;
mod world;

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
};

use anyhow::{Context, Result, ensure};

use crate::{options::Options, report::Report, scenario::Bench, subject::Subject};

/// The command BENCHMARKS.md names.
const COMMAND: &str = "bash bench/run.sh";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    let options = Options::parse()?;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repository root")?
        .to_path_buf();
    let handler = handler_binary(&repo)?;
    ensure!(
        handler.is_file(),
        "{} is missing: bash bench/run.sh builds it",
        handler.display()
    );
    let load_at_start = load_average();
    let venv = repo.join("bench/.venv");
    let python = venv.join("bin/python");
    ensure!(
        python.is_file(),
        "{} is missing: bash bench/run.sh installs it",
        python.display()
    );
    let dir = std::env::temp_dir().join(format!("cmk-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    // reqwest and axum-server both bring rustls; name the provider once so
    // that building the TLS listener's config never has to guess.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();

    let bench = Bench {
        repo: repo.clone(),
        dir: dir.clone(),
    };
    let subjects = [
        Subject::handler(handler.clone()),
        Subject::python(python.clone(), repo.join("bench/python/handler.py")),
    ];
    let mut report = Report::default();
    if options.wants("cold") {
        figures::cold_start(&bench, &subjects, &options, &mut report).await?;
    }
    if options.wants("plan") {
        figures::planning(&bench, &subjects, &options, &mut report).await?;
    }
    if options.wants("throughput") {
        figures::throughput_figures(&bench, &subjects, &options, &mut report).await?;
    }
    if options.wants("rotate") {
        figures::rotation(&bench, &subjects, &options, &mut report).await?;
    }
    if options.wants("package") {
        let site_packages = site_packages(&venv)?;
        figures::packaging(&bench, &handler, &site_packages, &mut report)?;
    }

    report.notes.push(format!(
        "handler binary measured: {} ({}, {} bytes)",
        handler.strip_prefix(&repo).unwrap_or(&handler).display(),
        linking(&handler)?,
        std::fs::metadata(&handler)?.len()
    ));
    let machine = format!(
        "{} Load average (1 min) at start {load_at_start}, at end {}: other work on the machine slows both subjects.",
        report::machine(&python),
        load_average()
    );
    println!("\n{}", report.section(COMMAND, &machine));
    if options.write {
        let path = repo.join("bench/BENCHMARKS.md");
        report::write_section(&path, &report.section(COMMAND, &machine))?;
        eprintln!("bench: figures written to {}", path.display());
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// The venv's site-packages directory.
fn site_packages(venv: &Path) -> Result<PathBuf> {
    let lib = venv.join("lib");
    std::fs::read_dir(&lib)?
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .with_context(|| format!("no site-packages under {}", lib.display()))
}

/// The handler under test: `BENCH_HANDLER`, else the binary the deploy
/// package holds (`scripts/package.sh` stages it in `dist/function-app/`),
/// else `target/release/handler`.
fn handler_binary(repo: &Path) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("BENCH_HANDLER") {
        return Ok(std::path::absolute(path)?);
    }
    let packaged = repo.join("dist/function-app/handler");
    if packaged.is_file() {
        return Ok(packaged);
    }
    Ok(std::env::current_exe()?
        .parent()
        .context("binary directory")?
        .join("handler"))
}

/// `static` or `dynamic`: whether the ELF file names a program interpreter.
fn linking(binary: &Path) -> Result<&'static str> {
    let data = std::fs::read(binary)?;
    ensure!(
        data.len() > 64 && data.starts_with(b"\x7fELF"),
        "not an ELF file"
    );
    let word = |at: usize, n: usize| -> u64 {
        data[at..at + n]
            .iter()
            .rev()
            .fold(0, |acc, b| (acc << 8) | u64::from(*b))
    };
    let (offset, size, count) = (
        word(0x20, 8) as usize,
        word(0x36, 2) as usize,
        word(0x38, 2),
    );
    let interp = (0..count as usize).any(|i| word(offset + i * size, 4) == 3);
    Ok(if interp { "dynamic" } else { "static" })
}

/// The 1-minute load average.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
