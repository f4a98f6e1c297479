//! A closed-loop load generator: `clients` keep-alive HTTP/1.1 connections,
//! each sending the same POST as soon as the previous answer is read.
//! Written on bare hyper so that it costs little next to the subject.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, StatusCode, client::conn::http1};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What a load run measured in its window.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Answers with status 200 that started inside the window.
    pub completed: u64,
    /// Answers with status 200, warm-up included.
    pub all_completed: u64,
    /// Other answers or transport failures inside the window.
    pub errors: u64,
    pub window: Duration,
    /// Latency of each completed request, in microseconds.
    pub latencies_us: Vec<f64>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }
}

/// Posts `body` to `http://127.0.0.1:{port}{path}` from `clients`
/// connections for `warmup + window`; counts what starts inside the window.
pub async fn run(
    port: u16,
    path: &str,
    body: Bytes,
    clients: usize,
    warmup: Duration,
    window: Duration,
) -> Result<LoadResult> {
    let start = Instant::now() + Duration::from_millis(20);
    let (from, until) = (start + warmup, start + warmup + window);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (path, body) = (path.to_string(), body.clone());
        tasks.push(tokio::spawn(async move {
            client(port, &path, body, start, from, until).await
        }));
    }
    let mut total = LoadResult {
        window,
        ..LoadResult::default()
    };
    for task in tasks {
        let one = task.await??;
        total.completed += one.completed;
        total.all_completed += one.all_completed;
        total.errors += one.errors;
        total.latencies_us.extend(one.latencies_us);
    }
    Ok(total)
}

async fn client(
    port: u16,
    path: &str,
    body: Bytes,
    start: Instant,
    from: Instant,
    until: Instant,
) -> Result<LoadResult> {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .context("connecting to the subject")?;
    stream.set_nodelay(true)?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    tokio::time::sleep_until(start.into()).await;
    let mut result = LoadResult::default();
    loop {
        let sent = Instant::now();
        if sent >= until {
            return Ok(result);
        }
        let request = Request::post(path)
            .header("host", format!("127.0.0.1:{port}"))
            .header("content-type", "application/json; charset=utf-8")
            .body(Full::new(body.clone()))?;
        let ok = match sender.send_request(request).await {
            Ok(answer) => {
                let status = answer.status();
                let read = answer.into_body().collect().await.is_ok();
                status == StatusCode::OK && read
            }
            Err(_) => false,
        };
        result.all_completed += u64::from(ok);
        if sent < from {
            continue;
        }
        if ok {
            result.completed += 1;
            result
                .latencies_us
                .push(sent.elapsed().as_secs_f64() * 1_000_000.0);
        } else {
            result.errors += 1;
            // A broken connection stays broken: stop this client.
            if sender.ready().await.is_err() {
                return Ok(result);
            }
        }
    }
}
