//! Planning a rotation over 1,000 servers with a fixed latency added by the
//! stand-in to every call: the first event after start (tokens fetched)
//! and a second one (warm), against the sum of the calls that cannot be
//! avoided or overlapped (the key's current version, then the Resource
//! Graph pages, one after the other). The stand-in's own time for those
//! calls (the floor: the benchmark making them itself with a bare client)
//! separates what the subject adds. Also the subject's peak RSS.

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use serde_json::json;
use standin::azure::{ARM_TOKEN, VAULT_TOKEN};

use super::{Bench, check_answer, mib};
use crate::{
    edge::{Counts, Edge},
    procfs,
    stats::Summary,
    subject::{Process, Subject, exchange},
    world::{KEY, SUB, VAULT, World, event_invocation, new_version},
};

pub const SERVERS: usize = 1000;
/// Resource Graph pages for `SERVERS` at `$top` 1000.
pub const PAGES: usize = 1;

#[derive(Debug, Default)]
pub struct Plan {
    pub cold_ms: Summary,
    pub warm_ms: Summary,
    /// The same Key Vault read and Resource Graph query made by a bare
    /// client: the stand-in's time, latency included.
    pub floor_ms: Summary,
    pub peak_rss_mib: Summary,
    /// Calls of the last run's first and second event.
    pub cold_calls: Counts,
    pub warm_calls: Counts,
}

pub async fn measure(
    bench: &Bench,
    subject: &Subject,
    runs: usize,
    latency: Duration,
) -> Result<Plan> {
    let world = World::start(SERVERS, &bench.dir).await?;
    world.edge.set_latency(latency);
    let settings = subject.settings(&world.edge);
    let body = event_invocation(&new_version(KEY));
    let mut out = Plan::default();
    for _ in 0..runs {
        tokio::task::block_in_place(|| -> Result<()> {
            let mut process = Process::spawn(subject, &settings, None)?;
            process.wait_ready(Duration::from_secs(60))?;
            world.edge.take_counts();
            for warm in [false, true] {
                let started = Instant::now();
                let (status, answer) = exchange(process.port, "POST", "/KeyEvent", &body)?;
                let took = started.elapsed().as_secs_f64() * 1000.0;
                check_answer(status, &answer, Some(SERVERS))?;
                let calls = world.edge.take_counts();
                if warm {
                    out.warm_ms.push(took);
                    out.warm_calls = calls;
                } else {
                    out.cold_ms.push(took);
                    out.cold_calls = calls;
                }
            }
            out.peak_rss_mib
                .push(mib(procfs::peak_rss_kib(process.pid)?));
            Ok(())
        })?;
        out.floor_ms.push(floor(&world.edge).await?);
        world.edge.take_counts();
    }
    Ok(out)
}

/// The time no implementation can go under: one Key Vault read, then the
/// Resource Graph pages, each paying the latency once.
pub fn ideal(latency: Duration) -> Duration {
    latency * (1 + PAGES as u32)
}

/// Makes the warm event's two calls with a bare client (connections
/// already open, answers read but not parsed), in ms.
async fn floor(edge: &Edge) -> Result<f64> {
    let client = reqwest::Client::builder()
        .no_proxy()
        .resolve(VAULT, edge.http)
        .build()?;
    let key_url = format!(
        "http://{VAULT}:{}/keys/{KEY}?api-version=7.5",
        edge.http.port()
    );
    let graph_url = format!(
        "{}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
        edge.http_base()
    );
    let query = format!(
        "resources | where (pkVault == '{VAULT}' and pkName == '{KEY}') or (gkVault == '{VAULT}' and gkName == '{KEY}')"
    );
    let graph_body = json!({
        "subscriptions": [SUB], "query": query,
        "options": { "$top": 1000, "resultFormat": "objectArray" }
    });
    let mut best = f64::INFINITY;
    // Three rounds on the same connections; the first one opens them.
    for _ in 0..3 {
        let started = Instant::now();
        let key = client.get(&key_url).bearer_auth(VAULT_TOKEN).send().await?;
        ensure!(
            key.status().is_success(),
            "floor: key vault {}",
            key.status()
        );
        key.bytes().await?;
        let rows = client
            .post(&graph_url)
            .bearer_auth(ARM_TOKEN)
            .json(&graph_body)
            .send()
            .await?;
        ensure!(rows.status().is_success(), "floor: graph {}", rows.status());
        let bytes = rows.bytes().await?;
        ensure!(bytes.len() > SERVERS * 100, "floor: short graph answer");
        best = best.min(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(best)
}
