//! A faithful stand-in for the Azure Functions host (v4.1037) running a
//! custom handler, for tests that cannot install Core Tools.
//!
//! It reads the function app (`host.json`, `*/function.json`), starts the
//! handler process with the host's environment variables and readiness probe,
//! serves the Event Grid webhook and httpTrigger functions (`/api/...`) on
//! its own 127.0.0.1 listener, fires timerTrigger functions on demand, runs
//! queue-triggered functions over in-memory queues, and routes queue output
//! bindings the way the real host converts them. The same listener plays the
//! Storage account for Peek Messages on those queues. Section numbers in comments
//! refer to `functions-facts.md` unless they say `azure-facts`.

mod clock;
pub(crate) use clock::civil;
mod config;
mod eventgrid;
mod http_trigger;
mod invoke;
mod outputs;
mod queue_runner;
mod queue_store;
mod storage;
mod timer;
mod types;
mod worker;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use config::AppConfig;
use queue_store::Store;
pub use types::{HostOptions, Invocation, QueueMessage, QueueStats};
use worker::{LaunchSpec, LogSink, Worker};

/// State shared by the webhook server, the queue runner and the API.
pub(crate) struct Shared {
    config: AppConfig,
    retry_delay: Option<Duration>,
    client: reqwest::Client,
    worker: Worker,
    logs: Arc<LogSink>,
    invocations: Mutex<Vec<Invocation>>,
    queues: Mutex<Store>,
    timers: timer::Timers,
    function_key: String,
}

/// `Metadata.sys` (§3, azure-facts §3.2).
pub(crate) fn sys_metadata(function: &str) -> Value {
    json!({
        "MethodName": function,
        "UtcNow": clock::iso_utc(SystemTime::now()),
        "RandGuid": clock::new_guid(),
    })
}

/// The running simulated host.
pub struct FunctionsHost {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: tokio::task::JoinHandle<()>,
}

/// `handler_bin` (or host.json `defaultExecutablePath` when empty): resolved
/// against the app root if that file exists, else against our working
/// directory, else left for a PATH lookup (azure-facts §3.1).
fn resolve_program(
    app_root: &std::path::Path,
    handler_bin: &std::path::Path,
    config: &AppConfig,
) -> PathBuf {
    let bin = if handler_bin.as_os_str().is_empty() {
        PathBuf::from(&config.executable)
    } else {
        handler_bin.to_path_buf()
    };
    let in_app = app_root.join(&bin);
    if bin.is_relative() && in_app.is_file() {
        return in_app;
    }
    std::path::absolute(&bin)
        .ok()
        .filter(|p| p.is_file())
        .unwrap_or(bin)
}

/// The app settings plus `AzureWebJobsStorage__queueServiceUri` naming this
/// simulator's queue service, as a deployment sets it for an identity-based
/// storage connection (unless the test set it already). Here the simulator
/// plays the storage account that the host and the handler share.
fn with_storage_setting(env: &[(String, String)], addr: SocketAddr) -> Vec<(String, String)> {
    const NAME: &str = "AzureWebJobsStorage__queueServiceUri";
    let mut env = env.to_vec();
    if !env.iter().any(|(k, _)| k == NAME) {
        env.push((NAME.to_string(), format!("http://{addr}/devstoreaccount1")));
    }
    env
}

/// Percent-encodes a query value (reqwest's `query` feature is not enabled).
fn encode(text: &str) -> String {
    let keep = |b: u8| b.is_ascii_alphanumeric() || b"-_.~".contains(&b);
    text.bytes()
        .map(|b| {
            if keep(b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A stored message as a trigger would see it: base64 wire encoding removed
/// when `messageEncoding` is base64 (the raw wire text if it does not decode).
fn as_message(m: queue_store::Stored, base64: bool) -> QueueMessage {
    QueueMessage {
        text: match base64.then(|| outputs::dotnet_base64(&m.wire)).flatten() {
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => m.wire.clone(),
        },
        id: m.id,
        dequeue_count: m.dequeue_count,
        insertion_time: clock::iso_offset(m.inserted),
    }
}

impl FunctionsHost {
    /// Reads the app, starts the webhook listener and the handler, and waits
    /// for the handler to be ready (§5).
    pub async fn start(opts: HostOptions) -> Result<FunctionsHost> {
        let app_root = std::path::absolute(&opts.app_root).context("app_root")?;
        let config = config::load(&app_root, &opts.env).context("reading the function app")?;
        let timers = timer::load(&config, &opts.env)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let spec = LaunchSpec {
            program: resolve_program(&app_root, &opts.handler_bin, &config),
            args: config.arguments.clone(),
            cwd: config.working_dir.clone(),
            app_root,
            env: with_storage_setting(&opts.env, addr),
        };
        let shared = Arc::new(Shared {
            config,
            retry_delay: opts.retry_delay,
            client: reqwest::Client::builder().no_proxy().build()?,
            worker: Worker::new(spec),
            logs: Arc::new(LogSink::new(opts.echo_logs)),
            invocations: Mutex::new(Vec::new()),
            queues: Mutex::new(Store::default()),
            timers,
            function_key: http_trigger::new_key(),
        });
        let app = eventgrid::router(shared.clone())
            .merge(storage::router(shared.clone()))
            .merge(http_trigger::router(shared.clone()));
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        let host = FunctionsHost {
            shared,
            addr,
            server,
        };
        host.shared
            .worker
            .start(&host.shared.client, &host.shared.logs)
            .await?;
        Ok(host)
    }

    /// The port the current handler process listens on.
    pub fn handler_port(&self) -> u16 {
        self.shared.worker.port()
    }

    /// `http://127.0.0.1:PORT` of the host's own listener (webhooks).
    pub fn webhook_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The function names found in the app, sorted.
    pub fn function_names(&self) -> Vec<String> {
        self.shared.config.functions.keys().cloned().collect()
    }

    /// Delivers events as Event Grid would (`aeg-event-type: Notification`)
    /// and returns the status and body the host answered.
    pub async fn post_event_grid(&self, function: &str, body: &Value) -> Result<(u16, String)> {
        let first = body.as_array().and_then(|a| a.first()).unwrap_or(body);
        let field = |k: &str| first.get(k).and_then(Value::as_str).map(str::to_owned);
        let data_version = field("dataVersion").unwrap_or_else(|| "1".into());
        let meta_version = field("metadataVersion")
            .or_else(|| field("specversion"))
            .unwrap_or_else(|| "1".into());
        let resp = self
            .shared
            .client
            .post(format!(
                "{}/runtime/webhooks/eventgrid?functionName={}",
                self.webhook_base(),
                encode(function)
            ))
            .header("Content-Type", "application/json; charset=utf-8")
            .header("aeg-event-type", "Notification")
            .header("aeg-subscription-name", "STANDIN-SUBSCRIPTION")
            .header("aeg-delivery-count", "0")
            .header("aeg-data-version", data_version)
            .header("aeg-metadata-version", meta_version)
            .body(serde_json::to_vec(body)?)
            .send()
            .await?;
        Ok((resp.status().as_u16(), resp.text().await?))
    }

    /// Fires a timerTrigger function now, as the host does when its schedule
    /// comes due: `Data.<binding>` is the `TimerInfo` object (`ScheduleStatus`
    /// as recorded after the previous firing, or at host start; `IsPastDue`
    /// false), `Metadata` only `sys`. Queue outputs are routed like for every
    /// trigger. Errors only for an unknown or non-timer function; a failed
    /// invocation comes back with `ok == false`.
    pub async fn fire_timer(&self, function: &str) -> Result<Invocation> {
        timer::fire(&self.shared, function).await
    }

    /// The timerTrigger's schedule after `%NAME%` expansion, or `None` when
    /// the function does not exist or is not timer-triggered.
    pub fn timer_schedule(&self, function: &str) -> Option<String> {
        let def = self.shared.timers.defs.get(function)?;
        Some(def.expression.clone())
    }

    /// The key that `function`/`admin` httpTrigger functions require, as
    /// `?code=<key>` or `x-functions-key: <key>` (fixed for this host).
    pub fn function_key(&self) -> String {
        self.shared.function_key.clone()
    }

    /// GETs `path_and_query` on the host listener with the function key in
    /// `x-functions-key`. A path not starting with `/api` gets `/api/`
    /// prepended (`"status?x=1"` → `/api/status?x=1`). Returns the status,
    /// the headers (lower-case names, in order) and the body as text.
    pub async fn http_get(
        &self,
        path_and_query: &str,
    ) -> Result<(u16, Vec<(String, String)>, String)> {
        let lower = path_and_query.to_ascii_lowercase();
        let path = if lower == "/api" || lower.starts_with("/api/") || lower.starts_with("/api?") {
            path_and_query.to_owned()
        } else {
            format!("/api/{}", path_and_query.trim_start_matches('/'))
        };
        let resp = self
            .shared
            .client
            .get(format!("{}{path}", self.webhook_base()))
            .header("x-functions-key", self.function_key())
            .send()
            .await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), value)
            })
            .collect();
        Ok((status, headers, resp.text().await?))
    }

    /// `http://127.0.0.1:PORT/devstoreaccount1`: the queue service the
    /// simulator's queues answer Peek Messages on (bearer token and
    /// `x-ms-version` required), for `AzureWebJobsStorage__queueServiceUri`.
    pub fn queue_service_uri(&self) -> String {
        format!("{}/{}", self.webhook_base(), storage::ACCOUNT)
    }

    /// A raw custom-handler invocation; its Outputs are NOT routed.
    pub async fn invoke(&self, function: &str, data: Value, metadata: Value) -> Result<Invocation> {
        Ok(invoke::call(&self.shared, function, data, metadata)
            .await
            .invocation)
    }

    /// Runs queue-triggered functions until every trigger queue is empty
    /// (poisoned or parked messages aside) or `max_wall` passes. Messages
    /// written by outputs meanwhile are processed in the same run.
    pub async fn run_queues(&self, max_wall: Duration) -> Result<QueueStats> {
        Ok(queue_runner::run(self.shared.clone(), max_wall).await)
    }

    /// Puts raw wire text on a queue, as an outside producer would. With
    /// `messageEncoding: base64` text that is not base64 goes to poison (§3).
    pub fn enqueue(&self, queue: &str, text: &str) {
        self.shared
            .queues
            .lock()
            .expect("queue lock")
            .put(queue, text.to_owned());
    }

    /// Puts a message on a queue encoded per host.json `messageEncoding`, as
    /// the output binding or a base64-aware client would.
    pub fn enqueue_encoded(&self, queue: &str, text: &str) {
        let wire = outputs::to_wire(text.as_bytes(), self.shared.config.queues.base64);
        self.shared
            .queues
            .lock()
            .expect("queue lock")
            .put(queue, wire);
    }

    /// Messages currently on a queue (visible or not).
    pub fn queue_messages(&self, queue: &str) -> Vec<QueueMessage> {
        let base64 = self.shared.config.queues.base64;
        let stored = self.shared.queues.lock().expect("queue lock").list(queue);
        stored.into_iter().map(|m| as_message(m, base64)).collect()
    }

    /// Removes every message from a queue and returns them (text decoded as
    /// in [`FunctionsHost::queue_messages`]). With
    /// [`FunctionsHost::invoke_queue`] a test can play the storage account
    /// that several host instances share.
    pub fn take_queue_messages(&self, queue: &str) -> Vec<QueueMessage> {
        let base64 = self.shared.config.queues.base64;
        let stored = self
            .shared
            .queues
            .lock()
            .expect("queue lock")
            .take_all(queue);
        stored.into_iter().map(|m| as_message(m, base64)).collect()
    }

    /// Invokes the queue-triggered `function` once with message `text` and
    /// this dequeue count, exactly as the queue listener does, and routes its
    /// outputs when it succeeds. Deleting, retrying or poisoning the message
    /// is left to the caller.
    pub async fn invoke_queue(
        &self,
        function: &str,
        text: &str,
        dequeue_count: u32,
    ) -> Result<Invocation> {
        queue_runner::invoke_message(&self.shared, function, text, dequeue_count)
            .await
            .with_context(|| format!("no queue-triggered function {function}"))
    }

    /// Messages on `<queue>-poison`.
    pub fn poison_messages(&self, queue: &str) -> Vec<QueueMessage> {
        self.queue_messages(&format!("{queue}-poison"))
    }

    /// Every invocation made so far, in completion order.
    pub fn invocations(&self) -> Vec<Invocation> {
        self.shared
            .invocations
            .lock()
            .expect("invocations lock")
            .clone()
    }

    /// Handler stdout lines, `[stderr] `-prefixed stderr lines, and the host's
    /// `[host] ...` lines (response `Logs` entries, poison moves).
    pub fn logs(&self) -> Vec<String> {
        self.shared.logs.snapshot()
    }

    /// How many lines [`FunctionsHost::logs`] holds now: a mark for
    /// [`FunctionsHost::logs_since`].
    pub fn log_count(&self) -> usize {
        self.shared.logs.len()
    }

    /// The log lines from index `mark` on (see [`FunctionsHost::log_count`]).
    pub fn logs_since(&self, mark: usize) -> Vec<String> {
        self.shared.logs.lines_from(mark)
    }

    /// SIGKILLs the handler, no SIGTERM, as the real host does (§5).
    pub async fn kill_handler(&self) {
        self.shared.worker.kill().await;
    }

    /// Starts the handler again (new port) and waits until it is ready.
    pub async fn restart_handler(&self) -> Result<()> {
        self.shared
            .worker
            .start(&self.shared.client, &self.shared.logs)
            .await
    }

    /// Kills the handler and stops the webhook listener.
    pub async fn stop(self) {
        self.kill_handler().await;
        self.server.abort();
    }
}

impl Drop for FunctionsHost {
    fn drop(&mut self) {
        // The handler child is `kill_on_drop`; the listener stops here.
        self.server.abort();
    }
}
