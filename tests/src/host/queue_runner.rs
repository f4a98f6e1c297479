//! The queue listener: batches, parallelism, retries and poison handling
//! (functions-facts §3 "Queue trigger value", "Metadata keys", "Retry and
//! concurrency").

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::clock::iso_offset;
use super::outputs::{dotnet_base64, route};
use super::queue_store::Stored;
use super::{QueueStats, Shared, invoke, sys_metadata};

/// The listener receives with a 10-min visibility and renews it (§3).
const LEASE: Duration = Duration::from_secs(600);
/// How often the loop looks for newly visible messages.
const POLL: Duration = Duration::from_millis(20);

/// A queue-triggered function.
struct Trigger {
    function: String,
    binding: String,
    queue: String,
}

enum Processed {
    Succeeded,
    Failed {
        poisoned: bool,
    },
    /// Moved to poison without an invocation (undecodable or over the limit).
    PoisonedUnseen,
}

fn triggers(shared: &Shared) -> Vec<Arc<Trigger>> {
    let defs = shared.config.functions.values();
    let with_trigger =
        defs.filter_map(|f| Some((f, f.trigger().filter(|t| t.is("queueTrigger"))?)));
    with_trigger
        .filter_map(|(f, t)| {
            let queue = t.queue_name.clone()?;
            Some(Arc::new(Trigger {
                function: f.name.clone(),
                binding: t.name.clone(),
                queue,
            }))
        })
        .collect()
}

/// String values are JSON-encoded a second time, `DequeueCount` is the string
/// `"1"`, dates stay dates (§3, pitfall 1).
fn metadata(msg: &Stored, function: &str) -> Value {
    json!({
        "DequeueCount": msg.dequeue_count.to_string(),
        "ExpirationTime": iso_offset(msg.expires),
        "Id": serde_json::to_string(&msg.id).expect("string"),
        "InsertionTime": iso_offset(msg.inserted),
        "NextVisibleTime": iso_offset(msg.next_visible()),
        "PopReceipt": serde_json::to_string(&msg.pop_receipt).expect("string"),
        "sys": sys_metadata(function),
    })
}

fn poison(shared: &Shared, t: &Trigger, msg: &Stored, why: &str) -> bool {
    let moved = shared
        .queues
        .lock()
        .expect("queue lock")
        .poison(&t.queue, &msg.id);
    let fate = if moved {
        format!("Moving message to queue '{}-poison'", t.queue)
    } else {
        "No poison queue; message left invisible".into()
    };
    shared.logs.push(format!(
        "[host] {} message {} {why}. {fate}.",
        t.function, msg.id
    ));
    moved
}

async fn process(shared: Arc<Shared>, t: Arc<Trigger>, msg: Stored) -> Processed {
    let q = &shared.config.queues;
    let text = if q.base64 {
        dotnet_base64(&msg.wire)
    } else {
        Some(msg.wire.clone().into_bytes())
    };
    let Some(text) = text.map(|b| String::from_utf8_lossy(&b).into_owned()) else {
        poison(
            &shared,
            &t,
            &msg,
            "is not valid base64 (messageEncoding base64)",
        );
        return Processed::PoisonedUnseen;
    };
    if msg.dequeue_count > q.max_dequeue_count {
        poison(
            &shared,
            &t,
            &msg,
            &format!("has exceeded MaxDequeueCount of {}", q.max_dequeue_count),
        );
        return Processed::PoisonedUnseen;
    }
    let mut data = Map::new();
    data.insert(
        t.binding.clone(),
        Value::String(serde_json::to_string(&text).expect("string")),
    );
    let outcome = invoke::call(
        &shared,
        &t.function,
        Value::Object(data),
        metadata(&msg, &t.function),
    )
    .await;
    if let (Some(resp), Some(def)) = (&outcome.response, shared.config.functions.get(&t.function)) {
        route(&shared, def, resp);
        shared
            .queues
            .lock()
            .expect("queue lock")
            .delete(&t.queue, &msg.id);
        return Processed::Succeeded;
    }
    if msg.dequeue_count >= q.max_dequeue_count {
        let why = format!("has reached MaxDequeueCount of {}", q.max_dequeue_count);
        return Processed::Failed {
            poisoned: poison(&shared, &t, &msg, &why),
        };
    }
    let delay = shared.retry_delay.unwrap_or(q.visibility_timeout);
    shared
        .queues
        .lock()
        .expect("queue lock")
        .release(&t.queue, &msg.id, delay);
    Processed::Failed { poisoned: false }
}

/// One invocation of the queue-triggered `function` with message `text`, as
/// the listener makes it (Data double-encoded, Metadata with this dequeue
/// count), outputs routed on success; retries and poison are the caller's.
/// `None` when no queue-triggered function has that name.
pub(crate) async fn invoke_message(
    shared: &Arc<Shared>,
    function: &str,
    text: &str,
    dequeue_count: u32,
) -> Option<super::Invocation> {
    let t = triggers(shared)
        .into_iter()
        .find(|t| t.function == function)?;
    let mut msg = Stored::detached(text.to_owned());
    msg.dequeue_count = dequeue_count;
    let mut data = Map::new();
    data.insert(
        t.binding.clone(),
        Value::String(serde_json::to_string(text).expect("string")),
    );
    let outcome = invoke::call(
        shared,
        &t.function,
        Value::Object(data),
        metadata(&msg, &t.function),
    )
    .await;
    if let (Some(resp), Some(def)) = (&outcome.response, shared.config.functions.get(function)) {
        route(shared, def, resp);
    }
    Some(outcome.invocation)
}

fn count(stats: &mut QueueStats, p: Processed) {
    match p {
        Processed::Succeeded => {
            stats.invocations += 1;
            stats.succeeded += 1;
        }
        Processed::Failed { poisoned } => {
            stats.invocations += 1;
            stats.failed += 1;
            stats.poisoned += usize::from(poisoned);
        }
        Processed::PoisonedUnseen => stats.poisoned += 1,
    }
}

/// Fetches a new batch for every function whose in-flight count is at or
/// below `newBatchThreshold` (so up to batchSize + threshold run at once).
fn fetch(
    shared: &Arc<Shared>,
    triggers: &[Arc<Trigger>],
    busy: &mut [usize],
    set: &mut JoinSet<(usize, Processed)>,
) {
    let q = &shared.config.queues;
    for (i, t) in triggers.iter().enumerate() {
        if busy[i] > q.new_batch_threshold {
            continue;
        }
        let batch =
            shared
                .queues
                .lock()
                .expect("queue lock")
                .receive(&t.queue, q.batch_size, LEASE);
        for msg in batch {
            busy[i] += 1;
            let (shared, t) = (shared.clone(), t.clone());
            set.spawn(async move { (i, process(shared, t, msg).await) });
        }
    }
}

/// Runs queue-triggered functions until no trigger queue holds a message that
/// is or will become visible (and nothing is in flight), or `max_wall` passes.
pub(crate) async fn run(shared: Arc<Shared>, max_wall: Duration) -> QueueStats {
    let deadline = Instant::now() + max_wall;
    let triggers = triggers(&shared);
    let mut stats = QueueStats::default();
    let mut busy = vec![0usize; triggers.len()];
    let mut set = JoinSet::new();
    loop {
        fetch(&shared, &triggers, &mut busy, &mut set);
        let pending = {
            let store = shared.queues.lock().expect("queue lock");
            triggers.iter().any(|t| store.pending(&t.queue))
        };
        if (set.is_empty() && !pending) || Instant::now() >= deadline {
            break;
        }
        let wake = deadline.min(Instant::now() + POLL);
        tokio::select! {
            Some(Ok((i, p))) = set.join_next() => {
                busy[i] -= 1;
                count(&mut stats, p);
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
    set.abort_all();
    while let Some(done) = set.join_next().await {
        if let Ok((_, p)) = done {
            count(&mut stats, p);
        }
    }
    let mut store = shared.queues.lock().expect("queue lock");
    triggers.iter().for_each(|t| store.release_leased(&t.queue));
    stats
}
