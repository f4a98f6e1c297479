//! Pairs each scenario's results for the two subjects into report rows,
//! with the team's targets and the notes that explain the figures.

use std::{path::Path, time::Duration};

use anyhow::Result;
use serde_json::Value;

use crate::{
    edge::{CallKind, Counts},
    options::Options,
    report::{Better, Report, Row},
    scenario::{Bench, cold, package, plan, rotate, throughput},
    stats::{Summary, number},
    subject::{Kind, Subject},
    world::{UNUSED_KEY, new_version, secret_event},
};

/// Latency the stand-in adds to every call in the planning benchmark.
const PLAN_LATENCY: Duration = Duration::from_millis(25);
/// Concurrent clients in the throughput benchmark.
const CLIENTS: usize = 32;
fn progress(what: &str, subject: &Subject, runs: usize) {
    eprintln!("bench: {what}: {} × {runs}", subject.label());
}

/// Both subjects' value of one figure, handler first.
fn pair<T>(results: &[T; 2], f: impl Fn(&T) -> &Summary) -> (Summary, Summary) {
    (f(&results[0]).clone(), f(&results[1]).clone())
}

pub async fn cold_start(
    bench: &Bench,
    subjects: &[Subject; 2],
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    let mut results = Vec::new();
    for subject in subjects {
        let runs = match subject.kind {
            Kind::Handler => options.runs(20, 5),
            Kind::Python => options.runs(5, 2),
        };
        if options.skips(subject) {
            results.push(Default::default());
            continue;
        }
        progress("cold start", subject, runs);
        results.push(cold::measure(bench, subject, runs).await?);
    }
    let results: [cold::ColdStart; 2] = results.try_into().expect("two subjects");
    report.notes.push(format!(
        "cold start: spawning `true` and waiting for its exit takes {} ms from this benchmark (the floor any process pays here)",
        cold::exec_floor(20)?
    ));
    let (h, p) = pair(&results, |r| &r.ready_ms);
    report.rows.push(
        Row::new("cold start: exec → readiness answered", "ms", Better::Lower)
            .values(h, p)
            .target("≤ 5 ms", 5.0),
    );
    let (h, p) = pair(&results, |r| &r.first_event_ms);
    report.rows.push(
        Row::new(
            "cold start: exec → first event done (5 servers)",
            "ms",
            Better::Lower,
        )
        .values(h, p),
    );
    let (h, p) = pair(&results, |r| &r.peak_rss_mib);
    report.rows.push(
        Row::new(
            "peak RSS: start + first event (5 servers)",
            "MiB",
            Better::Lower,
        )
        .values(h, p),
    );
    Ok(())
}

pub async fn planning(
    bench: &Bench,
    subjects: &[Subject; 2],
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    let mut results = Vec::new();
    for subject in subjects {
        let runs = match subject.kind {
            Kind::Handler => options.runs(5, 2),
            Kind::Python => options.runs(3, 1),
        };
        if options.skips(subject) {
            results.push(Default::default());
            continue;
        }
        progress("plan 1,000 servers", subject, runs);
        results.push(plan::measure(bench, subject, runs, PLAN_LATENCY).await?);
    }
    let results: [plan::Plan; 2] = results.try_into().expect("two subjects");
    let ms = PLAN_LATENCY.as_millis();
    let ideal = plan::ideal(PLAN_LATENCY).as_secs_f64() * 1000.0;
    let (h, p) = pair(&results, |r| &r.peak_rss_mib);
    report.rows.push(
        Row::new("peak RSS: planning 1,000 servers", "MiB", Better::Lower)
            .values(h, p)
            .target("≤ 15 MB", 15.0 * 1e6 / (1 << 20) as f64),
    );
    let (h, p) = pair(&results, |r| &r.cold_ms);
    report.rows.push(
        Row::new(
            format!("plan 1,000 servers, first event, {ms} ms/call"),
            "ms",
            Better::Lower,
        )
        .values(h, p),
    );
    let (h, p) = pair(&results, |r| &r.warm_ms);
    report.rows.push(
        Row::new(
            format!(
                "plan 1,000 servers, warm, {ms} ms/call (ideal {})",
                number(ideal)
            ),
            "ms",
            Better::Lower,
        )
        .values(h, p),
    );
    let own = |r: &plan::Plan| {
        let pairs = r.warm_ms.samples.iter().zip(&r.floor_ms.samples);
        Summary::of(pairs.map(|(warm, floor)| warm - floor).collect())
    };
    report.rows.push(
        Row::new(
            "plan 1,000 servers, warm: subject's own time (warm − stand-in floor)",
            "ms",
            Better::Lower,
        )
        .values(own(&results[0]), own(&results[1])),
    );
    let floors = Summary::of(
        results
            .iter()
            .flat_map(|r| r.floor_ms.samples.clone())
            .collect(),
    );
    report.notes.push(format!(
        "planning: stand-in floor for the warm event's two calls (a bare client making them through the same stand-in, {ms} ms latency each) {floors} ms"
    ));
    for (subject, result) in subjects.iter().zip(&results) {
        report.notes.push(format!(
            "planning, {}: first event {}; warm {} (ideal: 1 Key Vault read + {} Resource Graph page × {ms} ms = {} ms)",
            subject.label(),
            calls(&result.cold_calls),
            calls(&result.warm_calls),
            plan::PAGES,
            number(ideal),
        ));
    }
    Ok(())
}

pub async fn throughput_figures(
    bench: &Bench,
    subjects: &[Subject; 2],
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    let load = throughput::Load {
        clients: CLIENTS,
        warmup: Duration::from_millis(500),
        window: Duration::from_secs(2),
        runs: options.runs(3, 1),
    };
    let cases: [(&str, &str, Value, Option<f64>); 2] = [
        (
            "non-key event (SecretNewVersionCreated)",
            "no Azure call",
            secret_event(),
            Some(10_000.0),
        ),
        (
            "key event, key no server uses",
            "Key Vault read + Resource Graph query each",
            new_version(UNUSED_KEY),
            None,
        ),
    ];
    for (name, what, event, target) in cases {
        let mut results = Vec::new();
        for subject in subjects {
            if options.skips(subject) {
                results.push(Default::default());
                continue;
            }
            progress(&format!("throughput, {name}"), subject, load.runs);
            results.push(throughput::measure(bench, subject, &event, &load).await?);
        }
        let results: [throughput::Throughput; 2] = results.try_into().expect("two subjects");
        let (h, p) = pair(&results, |r| &r.per_second);
        let mut row = Row::new(
            format!("{name}: invocations/s, {CLIENTS} clients, 1 core"),
            "1/s",
            Better::Higher,
        )
        .values(h, p);
        if let Some(limit) = target {
            row = row.target("≥ 10,000/s", limit);
        }
        report.rows.push(row);
        let (h, p) = pair(&results, |r| &r.cpu_us);
        report.rows.push(
            Row::new(format!("{name}: CPU per invocation"), "µs", Better::Lower).values(h, p),
        );
        let (h, p) = pair(&results, |r| &r.p50_ms);
        report
            .rows
            .push(Row::new(format!("{name}: p50 latency"), "ms", Better::Lower).values(h, p));
        let (h, p) = pair(&results, |r| &r.p99_ms);
        report
            .rows
            .push(Row::new(format!("{name}: p99 latency"), "ms", Better::Lower).values(h, p));
        report.notes.push(format!(
            "throughput, {name} ({what}): subject on CPU 0 used {} % (handler) and {} % (python) of it; errors {} / {}",
            results[0].cpu_percent,
            results[1].cpu_percent,
            results[0].errors,
            results[1].errors,
        ));
    }
    Ok(())
}

pub async fn rotation(
    bench: &Bench,
    subjects: &[Subject; 2],
    options: &Options,
    report: &mut Report,
) -> Result<()> {
    let mut results = Vec::new();
    for subject in subjects {
        let runs = options.runs(3, 1);
        if options.skips(subject) {
            results.push(Default::default());
            continue;
        }
        progress("rotate 100 servers", subject, runs);
        results.push(rotate::measure(bench, subject, runs).await?);
    }
    let results: [rotate::Rotation; 2] = results.try_into().expect("two subjects");
    let batch = queue_batch_size(bench)?;
    let ideal = rotate::ideal(batch.0).as_secs_f64();
    let ideal_host = rotate::ideal(batch.0 + batch.1).as_secs_f64();
    let op = rotate::OPERATION.as_secs();
    let (h, p) = pair(&results, |r| &r.total_s);
    report.rows.push(
        Row::new(
            format!(
                "rotate {} servers, {op} s operations (ideal {} at batchSize {}, {} at {} in flight)",
                rotate::SERVERS,
                number(ideal),
                batch.0,
                number(ideal_host),
                batch.0 + batch.1
            ),
            "s",
            Better::Lower,
        )
        .values(h, p),
    );
    let (h, p) = pair(&results, |r| &r.arm_per_server);
    report.rows.push(
        Row::new("ARM requests per rotated server", "count", Better::Lower)
            .values(h, p)
            .target("GET+PATCH+polls+GET = 4", 4.0),
    );
    let (h, p) = pair(&results, |r| &r.polls_per_server);
    report
        .rows
        .push(Row::new("  of which operation polls", "count", Better::Lower).values(h, p));
    let (h, p) = pair(&results, |r| &r.keyvault_per_server);
    report.rows.push(
        Row::new(
            "Key Vault requests per rotated server",
            "count",
            Better::Lower,
        )
        .values(h, p),
    );
    let (h, p) = pair(&results, |r| &r.peak_rss_mib);
    report
        .rows
        .push(Row::new("peak RSS: rotating 100 servers", "MiB", Better::Lower).values(h, p));
    for (subject, result) in subjects.iter().zip(&results) {
        report.notes.push(format!(
            "rotation, {} (last run, whole queue): {}",
            subject.label(),
            calls(&result.calls)
        ));
    }
    Ok(())
}

pub fn packaging(
    bench: &Bench,
    handler: &Path,
    site_packages: &Path,
    report: &mut Report,
) -> Result<()> {
    eprintln!("bench: deploy package");
    let sizes = package::measure(bench, handler, site_packages)?;
    let mb = |b: u64| Summary::of(vec![b as f64 / (1 << 20) as f64]);
    report.rows.push(
        Row::new("deploy zip", "MiB", Better::Lower)
            .values(mb(sizes.handler_zip), mb(sizes.python_zip))
            .target("≤ 8 MB", 8.0 * 1e6 / (1 << 20) as f64),
    );
    report.rows.push(
        Row::new("handler binary (unzipped)", "MiB", Better::Lower)
            .values(mb(sizes.handler_binary), Summary::default()),
    );
    report.notes.push(format!(
        "deploy zip, handler: {} ({} bytes); python: function folders + handler.py + site-packages of bench/python/requirements.txt ({} bytes)",
        sizes.how, sizes.handler_zip, sizes.python_zip
    ));
    Ok(())
}

/// `Kind: n, …` for the calls that happened.
fn calls(counts: &Counts) -> String {
    let names = [
        (CallKind::Token, "token"),
        (CallKind::KeyVault, "Key Vault"),
        (CallKind::Graph, "Resource Graph"),
        (CallKind::ArmGet, "ARM GET"),
        (CallKind::ArmPatch, "ARM PATCH"),
        (CallKind::ArmPoll, "ARM poll"),
        (CallKind::Other, "other"),
    ];
    let mut parts: Vec<String> = names
        .iter()
        .filter(|(k, _)| counts.get(*k) > 0)
        .map(|(k, name)| format!("{name} {}", counts.get(*k)))
        .collect();
    if counts.unauthorized > 0 {
        parts.push(format!("(of which 401 challenges {})", counts.unauthorized));
    }
    if parts.is_empty() {
        "no calls".into()
    } else {
        parts.join(", ")
    }
}

/// host.json's queue `batchSize` and `newBatchThreshold`.
fn queue_batch_size(bench: &Bench) -> Result<(usize, usize)> {
    let host: Value = serde_json::from_str(&std::fs::read_to_string(
        bench.repo.join("function-app/host.json"),
    )?)?;
    let queues = &host["extensions"]["queues"];
    let batch = queues["batchSize"].as_u64().unwrap_or(16) as usize;
    let threshold = queues["newBatchThreshold"]
        .as_u64()
        .map_or(batch / 2, |n| n as usize);
    Ok((batch, threshold))
}
