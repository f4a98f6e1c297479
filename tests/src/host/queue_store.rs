//! In-memory storage queues: messages with an id, a pop receipt, a dequeue
//! count and a visibility time. Text is kept as it would be on the wire
//! (base64 when `messageEncoding` is base64, functions-facts §3).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant, SystemTime};

use super::clock::{new_guid, pop_receipt};

/// The storage default message time-to-live (7 days).
const TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// "Forever" for messages left invisible (no valid poison queue, §3).
const PARKED: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A stored message.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub id: String,
    pub wire: String,
    pub dequeue_count: u32,
    pub inserted: SystemTime,
    pub expires: SystemTime,
    pub pop_receipt: String,
    visible_at: Instant,
    leased: bool,
    parked: bool,
}

impl Stored {
    /// A message that sits in no queue (for one-off invocations).
    pub fn detached(wire: String) -> Stored {
        let now = SystemTime::now();
        Stored {
            id: new_guid(),
            wire,
            dequeue_count: 0,
            inserted: now,
            expires: now + TTL,
            pop_receipt: pop_receipt(),
            visible_at: Instant::now(),
            leased: false,
            parked: false,
        }
    }

    /// When it becomes visible again, as wall-clock time.
    pub fn next_visible(&self) -> SystemTime {
        SystemTime::now() + self.visible_at.saturating_duration_since(Instant::now())
    }
}

/// All queues by name.
#[derive(Debug, Default)]
pub(crate) struct Store {
    queues: BTreeMap<String, VecDeque<Stored>>,
}

/// Storage queue naming rules: 3–63 chars of `a-z0-9-`, starting and ending
/// with a letter or digit, no `--`.
pub(crate) fn valid_queue_name(name: &str) -> bool {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ends_ok = !name.starts_with('-') && !name.ends_with('-');
    (3..=63).contains(&name.len()) && ok_chars && ends_ok && !name.contains("--")
}

impl Store {
    /// Appends a message (visible at once) and returns its id.
    pub fn put(&mut self, queue: &str, wire: String) -> String {
        let now = SystemTime::now();
        let msg = Stored {
            id: new_guid(),
            wire,
            dequeue_count: 0,
            inserted: now,
            expires: now + TTL,
            pop_receipt: pop_receipt(),
            visible_at: Instant::now(),
            leased: false,
            parked: false,
        };
        let id = msg.id.clone();
        self.queues
            .entry(queue.to_owned())
            .or_default()
            .push_back(msg);
        id
    }

    /// Takes up to `max` visible messages: increments the dequeue count, gives
    /// a new pop receipt and hides them for `lease`.
    pub fn receive(&mut self, queue: &str, max: usize, lease: Duration) -> Vec<Stored> {
        let now = Instant::now();
        let Some(q) = self.queues.get_mut(queue) else {
            return Vec::new();
        };
        let visible = q
            .iter_mut()
            .filter(|m| m.visible_at <= now && !m.parked)
            .take(max);
        visible
            .map(|m| {
                m.dequeue_count += 1;
                m.pop_receipt = pop_receipt();
                m.visible_at = now + lease;
                m.leased = true;
                m.clone()
            })
            .collect()
    }

    fn take(&mut self, queue: &str, id: &str) -> Option<Stored> {
        let q = self.queues.get_mut(queue)?;
        let pos = q.iter().position(|m| m.id == id)?;
        q.remove(pos)
    }

    /// Deletes a processed message.
    pub fn delete(&mut self, queue: &str, id: &str) {
        self.take(queue, id);
    }

    /// Makes a message visible again after `delay` (UpdateMessage).
    pub fn release(&mut self, queue: &str, id: &str, delay: Duration) {
        let q = self.queues.get_mut(queue).into_iter().flatten();
        if let Some(m) = q.into_iter().find(|m| m.id == id) {
            m.visible_at = Instant::now() + delay;
            m.leased = false;
        }
    }

    /// Copies the message to `<queue>-poison` and deletes it. Without a valid
    /// poison queue the message is left invisible instead (§3). Returns
    /// whether it was moved.
    pub fn poison(&mut self, queue: &str, id: &str) -> bool {
        let target = format!("{queue}-poison");
        if queue.ends_with("-poison") || !valid_queue_name(&target) {
            self.release(queue, id, PARKED);
            if let Some(m) = self
                .queues
                .get_mut(queue)
                .and_then(|q| q.iter_mut().find(|m| m.id == id))
            {
                m.parked = true;
            }
            return false;
        }
        match self.take(queue, id) {
            Some(m) => {
                self.put(&target, m.wire);
                true
            }
            None => false,
        }
    }

    /// Removes every message of a queue and returns them, in order.
    pub fn take_all(&mut self, queue: &str) -> Vec<Stored> {
        self.queues
            .remove(queue)
            .map(|q| q.into_iter().collect())
            .unwrap_or_default()
    }

    /// Every message of a queue, in order.
    pub fn list(&self, queue: &str) -> Vec<Stored> {
        self.queues
            .get(queue)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the queue has been created (by a first message).
    pub fn exists(&self, queue: &str) -> bool {
        self.queues.contains_key(queue)
    }

    /// Up to `max` messages visible now, from the front, unchanged (Storage
    /// Peek Messages: no dequeue count, pop receipt or visibility change).
    pub fn peek(&self, queue: &str, max: usize) -> Vec<Stored> {
        let now = Instant::now();
        self.queues
            .get(queue)
            .into_iter()
            .flatten()
            .filter(|m| m.visible_at <= now && !m.parked)
            .take(max)
            .cloned()
            .collect()
    }

    /// Whether a queue holds any message that is or will become visible.
    pub fn pending(&self, queue: &str) -> bool {
        self.queues
            .get(queue)
            .is_some_and(|q| q.iter().any(|m| !m.parked))
    }

    /// Makes every leased message visible again (a stopped run abandons them).
    pub fn release_leased(&mut self, queue: &str) {
        let now = Instant::now();
        for m in self
            .queues
            .get_mut(queue)
            .into_iter()
            .flatten()
            .filter(|m| m.leased)
        {
            m.visible_at = now;
            m.leased = false;
        }
    }
}
