//! Cold start: from exec of the subject to the first answer to the host's
//! readiness probe (`GET /`), and to the first completed event invocation
//! (a `KeyNewVersionCreated` for a key five servers use: credential and
//! HTTP client built, two tokens, Key Vault, Resource Graph).

use std::time::Duration;

use anyhow::Result;

use super::{Bench, check_answer, mib};
use crate::{
    procfs,
    stats::Summary,
    subject::{Process, Subject, exchange},
    world::{KEY, World, event_invocation, new_version},
};

#[derive(Debug, Default)]
pub struct ColdStart {
    /// Exec to the first readiness answer, ms.
    pub ready_ms: Summary,
    /// Exec to the end of the first event invocation, ms.
    pub first_event_ms: Summary,
    /// Peak RSS after that first event, MiB.
    pub peak_rss_mib: Summary,
}

const SERVERS: usize = 5;

pub async fn measure(bench: &Bench, subject: &Subject, runs: usize) -> Result<ColdStart> {
    let world = World::start(SERVERS, &bench.dir).await?;
    let settings = subject.settings(&world.edge);
    let body = event_invocation(&new_version(KEY));
    let mut out = ColdStart::default();
    for _ in 0..runs {
        let (ready, first, peak) = tokio::task::block_in_place(|| -> Result<_> {
            let mut process = Process::spawn(subject, &settings, None)?;
            let ready = process.wait_ready(Duration::from_secs(60))?;
            let (status, answer) = exchange(process.port, "POST", "/KeyEvent", &body)?;
            let first = process.started.elapsed();
            check_answer(status, &answer, Some(SERVERS))?;
            Ok((ready, first, procfs::peak_rss_kib(process.pid)?))
        })?;
        out.ready_ms.push(ready.as_secs_f64() * 1000.0);
        out.first_event_ms.push(first.as_secs_f64() * 1000.0);
        out.peak_rss_mib.push(mib(peak));
        // Let the previous process go before the next exec.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(out)
}

/// Spawning `true` and waiting for it to exit, ms: what any process costs
/// to start on this machine, from this benchmark.
pub fn exec_floor(runs: usize) -> Result<Summary> {
    let mut out = Summary::default();
    for _ in 0..runs {
        let started = std::time::Instant::now();
        std::process::Command::new("true").status()?;
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}
