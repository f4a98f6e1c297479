//! The custom-handler process: start with the host's environment variables,
//! capture stdout/stderr line by line, probe readiness, and kill with
//! SIGKILL (functions-facts §5, §7; azure-facts §3.1).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::clock::new_guid;

/// `InitializationTimeout` default (§5).
const INIT_TIMEOUT: Duration = Duration::from_secs(30);
/// The readiness probe interval (§5).
const PROBE_EVERY: Duration = Duration::from_millis(25);

/// Every captured line: handler stdout, `[stderr] ` handler stderr, and the
/// host's own lines for response `Logs` entries.
pub(crate) struct LogSink {
    lines: Mutex<Vec<String>>,
    echo: bool,
}

impl LogSink {
    pub fn new(echo: bool) -> Self {
        LogSink {
            lines: Mutex::new(Vec::new()),
            echo,
        }
    }

    pub fn push(&self, line: String) {
        if self.echo {
            println!("[functions-host] {line}");
        }
        self.lines.lock().expect("log lock").push(line);
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().expect("log lock").clone()
    }

    /// The lines from index `from` on.
    pub fn lines_from(&self, from: usize) -> Vec<String> {
        let lines = self.lines.lock().expect("log lock");
        lines.get(from..).unwrap_or_default().to_vec()
    }

    fn since(&self, from: usize) -> String {
        let lines = self.lines.lock().expect("log lock");
        lines.get(from..).unwrap_or_default().join("\n")
    }

    pub fn len(&self) -> usize {
        self.lines.lock().expect("log lock").len()
    }
}

/// How to start the handler.
pub(crate) struct LaunchSpec {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub app_root: PathBuf,
    pub env: Vec<(String, String)>,
}

struct Running {
    child: Child,
    readers: Vec<JoinHandle<()>>,
}

/// The single handler process of this host instance (§5, host #6061).
pub(crate) struct Worker {
    spec: LaunchSpec,
    port: AtomicU16,
    running: tokio::sync::Mutex<Option<Running>>,
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn capture<R: AsyncRead + Unpin + Send + 'static>(
    io: R,
    prefix: &'static str,
    logs: Arc<LogSink>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(io);
        let mut buf = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buf).await, Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\r', '\n']);
            // §7: this prefix routes the line to the worker category, stripped.
            let line = line
                .strip_prefix("LanguageWorkerConsoleLog")
                .unwrap_or(line);
            logs.push(format!("{prefix}{line}"));
            buf.clear();
        }
    })
}

async fn drain(readers: Vec<JoinHandle<()>>) {
    for r in readers {
        let _ = tokio::time::timeout(Duration::from_secs(2), r).await;
    }
}

impl Worker {
    pub fn new(spec: LaunchSpec) -> Self {
        Worker {
            spec,
            port: AtomicU16::new(0),
            running: tokio::sync::Mutex::new(None),
        }
    }

    /// The port to invoke: waits while a (re)start is in progress, as the
    /// host holds invocations until the worker is ready (§5).
    pub async fn ready_port(&self) -> u16 {
        let _starting = self.running.lock().await;
        self.port()
    }

    /// The port of the current (or last) handler process.
    pub fn port(&self) -> u16 {
        self.port.load(Ordering::SeqCst)
    }

    fn spawn(&self, port: u16, logs: &Arc<LogSink>) -> Result<Running> {
        let s = &self.spec;
        let port_text = port.to_string();
        let mut cmd = Command::new(&s.program);
        cmd.args(&s.args)
            .current_dir(&s.cwd)
            .envs(s.env.iter().map(|(k, v)| (k, v)));
        cmd.env("FUNCTIONS_CUSTOMHANDLER_PORT", &port_text)
            .env("FUNCTIONS_HTTPWORKER_PORT", &port_text)
            .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", new_guid())
            .env("FUNCTIONS_APP_ROOT_PATH", &s.app_root);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start handler {}: {e}", s.program.display()))?;
        let out = capture(child.stdout.take().expect("piped"), "", logs.clone());
        let err = capture(
            child.stderr.take().expect("piped"),
            "[stderr] ",
            logs.clone(),
        );
        Ok(Running {
            child,
            readers: vec![out, err],
        })
    }

    /// Starts the handler (killing a previous one) and waits until GET `/`
    /// gets any HTTP answer (§5 readiness).
    pub async fn start(&self, client: &reqwest::Client, logs: &Arc<LogSink>) -> Result<()> {
        let slot = self.running.lock().await;
        self.start_locked(slot, client, logs).await
    }

    /// Restarts only if the process on `port` is still the current one, so
    /// several timed-out invocations cause a single restart.
    pub async fn restart_if_current(
        &self,
        port: u16,
        client: &reqwest::Client,
        logs: &Arc<LogSink>,
    ) -> Result<()> {
        let slot = self.running.lock().await;
        if self.port() != port {
            return Ok(());
        }
        self.start_locked(slot, client, logs).await
    }

    async fn start_locked(
        &self,
        mut slot: tokio::sync::MutexGuard<'_, Option<Running>>,
        client: &reqwest::Client,
        logs: &Arc<LogSink>,
    ) -> Result<()> {
        if let Some(old) = slot.take() {
            kill_running(old).await;
        }
        let port = free_port()?;
        let first_line = logs.len();
        let mut run = self.spawn(port, logs)?;
        self.port.store(port, Ordering::SeqCst);
        let url = format!("http://127.0.0.1:{port}/");
        let deadline = Instant::now() + INIT_TIMEOUT;
        loop {
            if let Some(status) = run.child.try_wait()? {
                drain(run.readers).await;
                bail!(
                    "handler exited before it was ready ({status}); output:\n{}",
                    logs.since(first_line)
                );
            }
            if client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok()
            {
                *slot = Some(run);
                return Ok(());
            }
            if Instant::now() >= deadline {
                kill_running(run).await;
                bail!(
                    "handler not ready on port {port} after {INIT_TIMEOUT:?} (initialization timeout); output:\n{}",
                    logs.since(first_line)
                );
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
    }

    /// SIGKILL, no SIGTERM (§5 `Process.Kill()`).
    pub async fn kill(&self) {
        if let Some(run) = self.running.lock().await.take() {
            kill_running(run).await;
        }
    }
}

async fn kill_running(mut run: Running) {
    let _ = run.child.start_kill();
    let _ = run.child.wait().await;
    drain(run.readers).await;
}
