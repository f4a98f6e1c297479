//! Logging: `tracing` to stdout (the Functions host records stderr lines as
//! errors), plain text or JSON lines, filtered by `RUST_LOG` (default info).

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt};

/// Installs the global subscriber. Call once, from `main`.
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_target(false);
    if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .init();
    } else {
        builder.with_ansi(false).init();
    }
}

/// Logging for the operator CLI: stderr (stdout carries the tables and
/// JSON), warnings and errors only unless `RUST_LOG` says otherwise.
pub fn init_cli(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().flatten_event(true).init();
    } else {
        // Colour only for a person at a terminal, not in a file or a pipe.
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
