//! Rotating 100 servers end to end under the Functions host simulator: the
//! event plans 100 queue messages, the host runs the queue with host.json's
//! concurrency, every update operation lasts a fixed time and ARM asks for
//! polls every second (`Retry-After: 1`). Measures the total time, the
//! calls per rotated server, and the subject's peak RSS.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Result, ensure};
use serde_json::json;
use standin::host::{FunctionsHost, HostOptions};

use super::{Bench, mib};
use crate::{
    edge::{CallKind, Counts},
    procfs,
    stats::Summary,
    subject::Subject,
    world::{KEY, World, new_version},
};

pub const SERVERS: usize = 100;
/// How long every update operation lasts.
pub const OPERATION: Duration = Duration::from_secs(1);
/// The `Retry-After` ARM sends while an operation runs.
pub const RETRY_AFTER_SECS: u64 = 1;

#[derive(Debug, Default)]
pub struct Rotation {
    pub total_s: Summary,
    pub arm_per_server: Summary,
    pub polls_per_server: Summary,
    pub keyvault_per_server: Summary,
    pub peak_rss_mib: Summary,
    /// Calls of the last run, whole queue.
    pub calls: Counts,
}

pub async fn measure(bench: &Bench, subject: &Subject, runs: usize) -> Result<Rotation> {
    let mut out = Rotation::default();
    for _ in 0..runs {
        let world = World::start(SERVERS, &bench.dir).await?;
        world.set_operation(OPERATION, RETRY_AFTER_SECS);
        let host = FunctionsHost::start(HostOptions {
            app_root: subject.function_app(&bench.repo, &bench.dir)?,
            handler_bin: PathBuf::new(),
            env: subject.settings(&world.edge),
            retry_delay: Some(Duration::from_secs(1)),
            echo_logs: false,
        })
        .await?;
        let (status, text) = host
            .post_event_grid("KeyEvent", &json!([new_version(KEY)]))
            .await?;
        ensure!(status == 202, "event delivery answered {status}: {text}");
        world.edge.take_counts();

        let started = Instant::now();
        let stats = host.run_queues(Duration::from_secs(600)).await?;
        let took = started.elapsed();
        let calls = world.edge.take_counts();
        let pid = procfs::pid_listening_on(host.handler_port())?;
        let peak = procfs::peak_rss_kib(pid)?;
        let rotated = world.servers_on_current();
        host.stop().await;
        ensure!(
            rotated == SERVERS && stats.failed == 0,
            "{} rotated {rotated} of {SERVERS} servers ({stats:?})",
            subject.label()
        );

        let per_server = |n: u64| n as f64 / SERVERS as f64;
        out.total_s.push(took.as_secs_f64());
        out.arm_per_server.push(per_server(calls.arm()));
        out.polls_per_server
            .push(per_server(calls.get(CallKind::ArmPoll)));
        out.keyvault_per_server
            .push(per_server(calls.get(CallKind::KeyVault)));
        out.peak_rss_mib.push(mib(peak));
        out.calls = calls;
    }
    Ok(out)
}

/// The shortest possible total at `concurrency` servers at a time: every
/// round of servers takes one operation.
pub fn ideal(concurrency: usize) -> Duration {
    OPERATION * SERVERS.div_ceil(concurrency) as u32
}
