//! The results table (printed, and written into BENCHMARKS.md between two
//! markers so the prose around it stays hand-written) and the machine
//! description.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result};

use crate::stats::{Summary, number};

/// Whether a smaller or a larger figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// A team target for a handler figure.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub text: &'static str,
    pub limit: f64,
}

/// One figure for both subjects.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub handler: Summary,
    pub python: Summary,
    pub better: Better,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(name: impl Into<String>, unit: &'static str, better: Better) -> Row {
        Row {
            name: name.into(),
            unit,
            handler: Summary::default(),
            python: Summary::default(),
            better,
            target: None,
        }
    }

    pub fn target(mut self, text: &'static str, limit: f64) -> Row {
        self.target = Some(Target { text, limit });
        self
    }

    pub fn values(mut self, handler: Summary, python: Summary) -> Row {
        self.handler = handler;
        self.python = python;
        self
    }

    /// How many times better the handler is than the baseline (medians).
    pub fn advantage(&self) -> Option<f64> {
        if self.handler.is_empty() || self.python.is_empty() {
            return None;
        }
        let (h, p) = (self.handler.median(), self.python.median());
        let ratio = match self.better {
            Better::Lower => p / h,
            Better::Higher => h / p,
        };
        ratio.is_finite().then_some(ratio)
    }

    /// Whether the handler's median meets the target.
    pub fn met(&self) -> Option<bool> {
        let target = self.target?;
        let h = self.handler.median();
        Some(match self.better {
            Better::Lower => h <= target.limit,
            Better::Higher => h >= target.limit,
        })
    }
}

/// Everything a run produced.
#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Extra lines (call counts, conditions) printed under the table.
    pub notes: Vec<String>,
}

impl Report {
    /// The results as a Markdown table.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| figure | handler (Rust) | Python baseline | handler advantage | target |\n|---|---|---|---|---|\n",
        );
        for row in &self.rows {
            let advantage = row
                .advantage()
                .map_or("—".to_string(), |a| format!("{}×", number(a)));
            let target = match (row.target, row.met()) {
                (Some(t), Some(true)) => format!("{} ✅", t.text),
                (Some(t), _) => format!("{} ❌", t.text),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} ({}) | {} | {} | {advantage} | {target} |",
                row.name, row.unit, row.handler, row.python
            );
        }
        out
    }

    /// The generated section of BENCHMARKS.md.
    pub fn section(&self, command: &str, machine: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "Command: `{command}`\n");
        let _ = writeln!(out, "{machine}\n");
        out.push_str(
            "Each cell: median (min–max) over the repeated runs; the advantage is the ratio of the \
             medians, Python ÷ handler for times, memory and size, handler ÷ Python for \
             throughput.\n\n",
        );
        out.push_str(&self.table());
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

const BEGIN: &str = "<!-- BEGIN GENERATED FIGURES (bench/run.sh rewrites this part) -->";
const END: &str = "<!-- END GENERATED FIGURES -->";

/// Replaces the generated part of `path` with `section`; appends the
/// markers if the file has none.
pub fn write_section(path: &Path, section: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let generated = format!("{BEGIN}\n\n{section}\n{END}");
    let updated = match (text.find(BEGIN), text.find(END)) {
        (Some(begin), Some(end)) if begin < end => {
            format!("{}{generated}{}", &text[..begin], &text[end + END.len()..])
        }
        _ => format!("{text}\n{generated}\n"),
    };
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

/// The date, `nproc`, the CPU model, the kernel, rustc and Python versions.
pub fn machine(python: &Path) -> String {
    let run = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "unknown".into())
    };
    let model = run("lscpu", &[])
        .lines()
        .find_map(|l| l.strip_prefix("Model name:").map(|m| m.trim().to_string()))
        .unwrap_or_else(|| "unknown".into());
    format!(
        "Run {}. Machine: {} CPUs (`nproc`), {model} (`lscpu`), kernel {}, {}, Python {}.",
        run("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        run("nproc", &[]),
        run("uname", &["-r"]),
        run("rustc", &["--version"]),
        run(
            &python.to_string_lossy(),
            &["-c", "import platform; print(platform.python_version())"]
        ),
    )
}
