//! Size of the deploy package: the zip of `function-app/` with the release
//! binary beside `host.json` (made by `scripts/package.sh` when the
//! repository has it), against the zip a Python Function App deploys: the
//! same function folders, `handler.py`, and the SDKs under
//! `.python_packages/lib/site-packages` (the Functions layout).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::Bench;

#[derive(Debug)]
pub struct Package {
    pub handler_zip: u64,
    pub handler_binary: u64,
    pub python_zip: u64,
    /// How the handler's zip was made.
    pub how: String,
}

pub fn measure(bench: &Bench, handler: &Path, site_packages: &Path) -> Result<Package> {
    let (handler_zip, how) = match packaged_by_script(&bench.repo)? {
        Some(zip) => (zip, "scripts/package.sh".to_string()),
        None => (
            zip_handler(bench, handler)?,
            "zip of function-app/ + target/release/handler".to_string(),
        ),
    };
    Ok(Package {
        handler_zip: std::fs::metadata(&handler_zip)?.len(),
        handler_binary: std::fs::metadata(handler)?.len(),
        python_zip: std::fs::metadata(zip_python(bench, site_packages)?)?.len(),
        how,
    })
}

/// Runs `scripts/package.sh` if it exists and returns the zip it names on
/// its output (or the newest zip under `dist/`).
fn packaged_by_script(repo: &Path) -> Result<Option<PathBuf>> {
    let script = repo.join("scripts/package.sh");
    if !script.is_file() {
        return Ok(None);
    }
    let output = Command::new("bash")
        .arg(&script)
        .current_dir(repo)
        .output()?;
    if !output.status.success() {
        bail!(
            "scripts/package.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let named = text
        .split_whitespace()
        .filter(|w| w.ends_with(".zip"))
        .map(|w| repo.join(w.trim_matches(|c| c == '\'' || c == '"' || c == '`')))
        .rfind(|p| p.is_file());
    let newest = || -> Option<PathBuf> {
        std::fs::read_dir(repo.join("dist"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "zip"))
            .max_by_key(|p| p.metadata().and_then(|m| m.modified()).ok())
    };
    Ok(named.or_else(newest))
}

fn zip_handler(bench: &Bench, handler: &Path) -> Result<PathBuf> {
    let stage = fresh(&bench.dir.join("package-handler"))?;
    copy_function_app(&bench.repo, &stage)?;
    std::fs::copy(handler, stage.join("handler"))?;
    zip(&stage, &bench.dir.join("handler.zip"), &[])
}

fn zip_python(bench: &Bench, site_packages: &Path) -> Result<PathBuf> {
    let stage = fresh(&bench.dir.join("package-python"))?;
    copy_function_app(&bench.repo, &stage)?;
    std::fs::copy(
        bench.repo.join("bench/python/handler.py"),
        stage.join("handler.py"),
    )?;
    std::fs::create_dir_all(stage.join(".python_packages/lib"))?;
    std::os::unix::fs::symlink(
        site_packages,
        stage.join(".python_packages/lib/site-packages"),
    )?;
    // The venv's own tools are not deployed.
    let sp = ".python_packages/lib/site-packages";
    let exclude = [
        "pip/*",
        "pip-*",
        "setuptools*",
        "_distutils_hack/*",
        "pkg_resources/*",
    ]
    .map(|p| format!("{sp}/{p}"));
    zip(&stage, &bench.dir.join("python.zip"), &exclude)
}

fn copy_function_app(repo: &Path, stage: &Path) -> Result<()> {
    let source = repo.join("function-app");
    std::fs::copy(source.join("host.json"), stage.join("host.json"))?;
    for entry in std::fs::read_dir(&source)?.flatten() {
        let function_json = entry.path().join("function.json");
        if function_json.is_file() {
            let folder = stage.join(entry.file_name());
            std::fs::create_dir_all(&folder)?;
            std::fs::copy(&function_json, folder.join("function.json"))?;
        }
    }
    Ok(())
}

fn fresh(dir: &Path) -> Result<PathBuf> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(dir.to_path_buf())
}

/// `zip -q -r` (default deflate level, as most deploy tools use).
fn zip(stage: &Path, out: &Path, exclude: &[String]) -> Result<PathBuf> {
    if out.exists() {
        std::fs::remove_file(out)?;
    }
    let mut command = Command::new("zip");
    command
        .args(["-q", "-r"])
        .arg(out)
        .arg(".")
        .current_dir(stage);
    if !exclude.is_empty() {
        command.arg("-x").args(exclude);
    }
    let status = command.status().context("running zip")?;
    if !status.success() {
        bail!("zip failed for {}", stage.display());
    }
    Ok(out.to_path_buf())
}
