//! The `handler` binary. Started by the Functions host with no arguments it
//! serves the custom-handler routes on 127.0.0.1:`FUNCTIONS_CUSTOMHANDLER_PORT`;
//! with a command (`plan`, `rotate`, `status`) it is the operator CLI.

use std::{net::SocketAddr, process::ExitCode, sync::Arc};

use clap::Parser;
use handler::{
    app::{self, AppState},
    cli::{self, Cli, Command},
    config::Config,
    telemetry,
};

/// mimalloc for the static musl build (see handler/Cargo.toml); the glibc
/// build keeps the system allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let subscriptions = cli.subscriptions.join(",");
    let config = Config::from_lookup(|name| match name {
        "CMK_SUBSCRIPTIONS" if !subscriptions.is_empty() => Some(subscriptions.clone()),
        _ => std::env::var(name).ok(),
    });
    let unknown =
        Config::unknown_settings(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
    let config = match (config, unknown.first()) {
        (Ok(c), None) => c,
        (Err(e), _) if !subscriptions.is_empty() => {
            // The value came from --subscription, not from the environment.
            let text = e.to_string();
            return refuse_start(&text.replacen("setting CMK_SUBSCRIPTIONS", "--subscription", 1));
        }
        (Err(e), _) => return refuse_start(&e.to_string()),
        (Ok(_), Some(name)) => {
            return refuse_start(&format!(
                "setting {name}: not a setting this handler reads (misspelt?)"
            ));
        }
    };

    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        command => {
            telemetry::init_cli(config.json_logs);
            let state = AppState::new(config);
            ExitCode::from(cli::run(command, cli.json, &state).await)
        }
    }
}

/// Every setting in effect, once, at start (no secret among them: the
/// client secret and the identity header are never logged).
fn log_settings(config: &Config) {
    let client_id = match &config.credential {
        handler::config::CredentialKind::ManagedIdentity { client_id } => client_id.clone(),
        handler::config::CredentialKind::ClientSecret { client_id, .. } => Some(client_id.clone()),
        handler::config::CredentialKind::AzureCli => None,
    };
    tracing::info!(
        subscriptions = %config.subscriptions.join(","),
        opt_in_tag = %config.opt_in_tag.as_ref().map_or("none".into(), |t| format!("{}={}", t.name, t.value)),
        vault_suffixes = %config.keyvault_suffixes.join(","),
        arm = %config.arm_endpoint,
        arm_audience = %config.arm_audience,
        resource_graph = %config.graph_endpoint,
        keyvault_audience = %config.keyvault_audience,
        postgres_api_version = %config.postgres_api_version,
        keyvault_api_version = %config.keyvault_api_version,
        resource_graph_api_version = %config.graph_api_version,
        credential = config.credential.name(),
        client_id = client_id.as_deref().unwrap_or("none"),
        event_budget_secs = config.event_budget.as_secs(),
        operation_budget_secs = config.operation_budget.as_secs(),
        default_retry_after_secs = config.default_retry_after.as_secs(),
        min_poll_interval_ms = config.min_poll_interval.as_millis() as u64,
        busy_poll_ms = config.busy_poll.as_millis() as u64,
        http_timeout_secs = config.http_timeout.as_secs(),
        max_body_bytes = config.max_body_bytes,
        allow_http = config.allow_http,
        keyvault_connect = %config.keyvault_connect.map_or("none".into(), |a| a.to_string()),
        queue_service = config.queue_service.as_deref().unwrap_or("none"),
        reconcile_schedule = config.reconcile_schedule.as_deref().unwrap_or("unset"),
        "settings in effect"
    );
}

/// Logging is not set up yet; the host shows stderr as an error.
fn refuse_start(reason: &str) -> ExitCode {
    eprintln!("handler cannot start: {reason}");
    ExitCode::from(cli::exit::USAGE)
}

async fn serve(config: Config) -> ExitCode {
    telemetry::init(config.json_logs);
    log_settings(&config);
    if matches!(config.credential, handler::config::CredentialKind::AzureCli) {
        tracing::warn!(
            "serving with the Azure CLI credential: inside Functions give the app a managed identity (IDENTITY_ENDPOINT and IDENTITY_HEADER) or set CMK_CREDENTIAL"
        );
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], config.port));
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(%addr, error = %e, "cannot bind");
            return ExitCode::from(cli::exit::USAGE);
        }
    };
    tracing::info!(%addr, "handler listening");
    let router = app::router(Arc::new(AppState::new(config)));
    if let Err(e) = axum::serve(listener, router).await {
        tracing::error!(error = %e, "server stopped");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
