//! The command line of the benchmark runner.

use anyhow::{Context, Result};

use crate::subject::{Kind, Subject};

/// What to run, parsed from the arguments.
pub struct Options {
    quick: bool,
    handler_only: bool,
    only: Option<Vec<String>>,
    /// Rewrite the generated part of BENCHMARKS.md.
    pub write: bool,
}

impl Options {
    /// Reads `--quick`, `--no-write`, `--handler-only`, `--only a,b`.
    pub fn parse() -> Result<Options> {
        let mut options = Options {
            quick: false,
            handler_only: false,
            only: None,
            write: true,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--no-write" => options.write = false,
                "--handler-only" => options.handler_only = true,
                "--only" => {
                    let list = args.next().context("--only needs a list")?;
                    options.only = Some(list.split(',').map(str::to_string).collect());
                }
                other => anyhow::bail!(
                    "unknown argument {other}; use --quick, --no-write, --handler-only, --only cold,plan,throughput,rotate,package"
                ),
            }
        }
        options.write &= !options.handler_only;
        Ok(options)
    }

    /// Whether the benchmark `name` is to run (`--only`).
    pub fn wants(&self, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.iter().any(|o| o == name))
    }

    /// Whether to leave `subject` out (`--handler-only`).
    pub fn skips(&self, subject: &Subject) -> bool {
        self.handler_only && subject.kind == Kind::Python
    }

    /// Repetitions: the full count, or the quick one.
    pub fn runs(&self, full: usize, quick: usize) -> usize {
        if self.quick { quick } else { full }
    }
}
