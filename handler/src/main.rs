//! The `handler` binary the Functions host starts: read the configuration,
//! start logging, bind 127.0.0.1 on `FUNCTIONS_CUSTOMHANDLER_PORT`, serve.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use handler::{app, config::Config, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            // Logging is not set up yet; the host shows stderr as an error.
            eprintln!("handler cannot start: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.json_logs);

    let addr = SocketAddr::from(([127, 0, 0, 1], config.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot bind");
            return ExitCode::from(3);
        }
    };
    tracing::info!(%addr, "handler listening");
    let router = app::router(Arc::new(app::AppState::new(config)));
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "server stopped");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
