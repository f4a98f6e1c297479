//! The two systems under test, the Rust handler and the Python baseline:
//! how to start them, the settings that point them at the stand-in, and a
//! function app for the Functions host simulator that runs them.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;
use standin::azure::FakeAzure;

use crate::{edge::Edge, world::SUB};

/// Which implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Handler,
    Python,
}

/// A system under test: the program and its arguments.
#[derive(Debug, Clone)]
pub struct Subject {
    pub kind: Kind,
    pub program: PathBuf,
    pub args: Vec<String>,
}

impl Subject {
    /// The release handler binary.
    pub fn handler(binary: PathBuf) -> Subject {
        Subject {
            kind: Kind::Handler,
            program: binary,
            args: Vec::new(),
        }
    }

    /// `python handler.py` with the benchmark's venv.
    pub fn python(python: PathBuf, script: PathBuf) -> Subject {
        Subject {
            kind: Kind::Python,
            program: python,
            args: vec![script.to_string_lossy().into_owned()],
        }
    }

    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::Handler => "handler",
            Kind::Python => "python",
        }
    }

    /// App settings pointing the subject at the stand-in through `edge`:
    /// plain HTTP for the handler (`CMK_ALLOW_HTTP`), TLS for the SDKs.
    pub fn settings(&self, edge: &Edge) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("CMK_SUBSCRIPTIONS", SUB.to_string()),
            (
                "IDENTITY_ENDPOINT",
                format!("{}/msi/token", edge.http_base()),
            ),
            ("IDENTITY_HEADER", FakeAzure::IDENTITY_HEADER.to_string()),
            ("CMK_RECONCILE_SCHEDULE", "0 0 */6 * * *".to_string()),
        ];
        match self.kind {
            Kind::Handler => pairs.extend([
                ("CMK_ALLOW_HTTP", "true".to_string()),
                ("CMK_ARM_ENDPOINT", edge.http_base()),
                ("CMK_KEYVAULT_CONNECT_ADDRESS", edge.http.to_string()),
                (
                    "RUST_LOG",
                    std::env::var("BENCH_RUST_LOG").unwrap_or_else(|_| "info".into()),
                ),
            ]),
            Kind::Python => pairs.extend([
                ("CMK_ARM_ENDPOINT", edge.https_base()),
                ("CMK_KEYVAULT_URL", edge.vault_base()),
                (
                    "REQUESTS_CA_BUNDLE",
                    edge.ca_file.to_string_lossy().into_owned(),
                ),
            ]),
        }
        pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// Like [`Subject::settings`], but the handler talks to the fake
    /// directly, without the proxy: for the throughput runs, where the
    /// proxy's CPU (on the benchmark's core) would limit the rate. The
    /// baseline needs the proxy's TLS and keeps it.
    pub fn settings_direct(&self, fake: &FakeAzure, edge: &Edge) -> Vec<(String, String)> {
        let mut pairs = self.settings(edge);
        if self.kind == Kind::Handler {
            for (name, value) in &mut pairs {
                match name.as_str() {
                    "IDENTITY_ENDPOINT" => *value = fake.identity_endpoint(),
                    "CMK_ARM_ENDPOINT" => *value = fake.base_url(),
                    "CMK_KEYVAULT_CONNECT_ADDRESS" => *value = fake.addr().to_string(),
                    _ => {}
                }
            }
        }
        pairs
    }

    /// A copy of `function-app/` (host.json and the function folders) in
    /// `dir` whose host.json starts this subject.
    pub fn function_app(&self, repo: &Path, dir: &Path) -> Result<PathBuf> {
        let source = repo.join("function-app");
        let app = dir.join(format!("function-app-{}", self.label()));
        std::fs::create_dir_all(&app)?;
        for entry in std::fs::read_dir(&source)? {
            let entry = entry?;
            let function_json = entry.path().join("function.json");
            if function_json.is_file() {
                let folder = app.join(entry.file_name());
                std::fs::create_dir_all(&folder)?;
                std::fs::copy(&function_json, folder.join("function.json"))?;
            }
        }
        let mut host: Value =
            serde_json::from_str(&std::fs::read_to_string(source.join("host.json"))?)?;
        let description = &mut host["customHandler"]["description"];
        description["defaultExecutablePath"] = Value::from(self.program.to_string_lossy());
        description["arguments"] = Value::from(self.args.clone());
        std::fs::write(app.join("host.json"), serde_json::to_vec_pretty(&host)?)?;
        Ok(app)
    }
}

/// A subject started by the benchmark itself (not by the host simulator),
/// killed on drop.
pub struct Process {
    child: Child,
    pub pid: u32,
    pub port: u16,
    /// Just before `spawn`.
    pub started: Instant,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl Process {
    /// Starts `subject` on a free port with `settings`; `pin` runs it under
    /// `taskset -c pin`. Its output is read and dropped (the last lines are
    /// kept for error messages), as the host reads it.
    pub fn spawn(
        subject: &Subject,
        settings: &[(String, String)],
        pin: Option<&str>,
    ) -> Result<Process> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut command = match pin {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(&subject.program);
                c
            }
            None => Command::new(&subject.program),
        };
        command
            .args(&subject.args)
            .envs(settings.iter().map(|(k, v)| (k, v)))
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", subject.program.display()))?;
        let output = Arc::new(Mutex::new(VecDeque::new()));
        keep_tail(child.stdout.take(), output.clone());
        keep_tail(child.stderr.take(), output.clone());
        Ok(Process {
            pid: child.id(),
            child,
            port,
            started,
            output,
        })
    }

    /// Probes `GET /` every 50 µs until it is answered; returns the time
    /// from spawn to the answer. Blocking.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<Duration> {
        loop {
            if let Ok((200, _)) = exchange(self.port, "GET", "/", b"") {
                return Ok(self.started.elapsed());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("{status} before ready:\n{}", self.output_tail());
            }
            if self.started.elapsed() > timeout {
                bail!("not ready after {timeout:?}:\n{}", self.output_tail());
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }

    /// The last lines the subject wrote.
    pub fn output_tail(&self) -> String {
        let lines = self.output.lock().expect("output lock");
        lines.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Process {
    /// Kills the subject; with `BENCH_SHOW_OUTPUT` set, prints its last
    /// lines first (with `BENCH_RUST_LOG=debug`: every Azure call, timed).
    fn drop(&mut self) {
        if std::env::var_os("BENCH_SHOW_OUTPUT").is_some() {
            std::thread::sleep(Duration::from_millis(100));
            eprintln!("--- {} output ---\n{}", self.pid, self.output_tail());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keep_tail(stream: Option<impl Read + Send + 'static>, tail: Arc<Mutex<VecDeque<String>>>) {
    let Some(stream) = stream else { return };
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut tail = tail.lock().expect("output lock");
            if tail.len() == 40 {
                tail.pop_front();
            }
            tail.push_back(line);
        }
    });
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`):
/// the status and body. Blocking; small enough to time a cold start.
pub fn exchange(port: u16, method: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_nodelay(true)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let status_line = String::from_utf8_lossy(&answer[..end]);
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    Ok((status, answer[end + 4..].to_vec()))
}
