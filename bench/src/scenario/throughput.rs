//! Invocations per second, and latency percentiles, for events that match
//! no server, through the custom-handler protocol, with concurrent
//! keep-alive clients. The subject is pinned to CPU 0 (`taskset -c 0`);
//! the benchmark (load, stand-in) moves itself to CPU 1 meanwhile. The
//! handler calls the fake directly here (no proxy, no added latency); the
//! baseline goes through the proxy for TLS.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use serde_json::Value;

use super::{Bench, check_answer};
use crate::{
    load, procfs,
    stats::{Summary, percentile},
    subject::{Process, Subject, exchange},
    world::{World, event_invocation},
};

#[derive(Debug, Default)]
pub struct Throughput {
    pub per_second: Summary,
    pub p50_ms: Summary,
    pub p99_ms: Summary,
    /// Share of CPU 0 the subject used during the runs, percent.
    pub cpu_percent: Summary,
    /// CPU time the subject spent per completed invocation, µs.
    pub cpu_us: Summary,
    pub errors: u64,
}

pub struct Load {
    pub clients: usize,
    pub warmup: Duration,
    pub window: Duration,
    pub runs: usize,
}

pub async fn measure(
    bench: &Bench,
    subject: &Subject,
    event: &Value,
    load: &Load,
) -> Result<Throughput> {
    let world = World::start(0, &bench.dir).await?;
    let settings = subject.settings_direct(&world.fake, &world.edge);
    let body = Bytes::from(event_invocation(event));
    let me = std::process::id();
    let cpus = procfs::allowed_cpus()?;
    procfs::pin(me, "1")?;
    let result = run(subject, &settings, body, load).await;
    procfs::pin(me, &cpus)?;
    result
}

async fn run(
    subject: &Subject,
    settings: &[(String, String)],
    body: Bytes,
    load: &Load,
) -> Result<Throughput> {
    let process = tokio::task::block_in_place(|| -> Result<Process> {
        let mut process = Process::spawn(subject, settings, Some("0"))?;
        process.wait_ready(Duration::from_secs(60))?;
        // The first invocation builds clients and fetches tokens.
        let (status, answer) = exchange(process.port, "POST", "/KeyEvent", &body)?;
        check_answer(status, &answer, None)?;
        Ok(process)
    })?;
    let mut out = Throughput::default();
    for _ in 0..load.runs {
        let cpu_before = procfs::cpu_seconds(process.pid)?;
        let wall = std::time::Instant::now();
        let result = load::run(
            process.port,
            "/KeyEvent",
            body.clone(),
            load.clients,
            load.warmup,
            load.window,
        )
        .await?;
        let cpu = procfs::cpu_seconds(process.pid)? - cpu_before;
        out.cpu_percent
            .push(100.0 * cpu / wall.elapsed().as_secs_f64());
        out.cpu_us
            .push(cpu * 1e6 / result.all_completed.max(1) as f64);
        out.per_second.push(result.per_second());
        out.p50_ms
            .push(percentile(&result.latencies_us, 50.0) / 1000.0);
        out.p99_ms
            .push(percentile(&result.latencies_us, 99.0) / 1000.0);
        out.errors += result.errors;
    }
    drop(process);
    Ok(out)
}
