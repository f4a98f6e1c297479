//! The public data types of the Functions host simulator.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// How to run the simulated host.
#[derive(Debug, Clone, Default)]
pub struct HostOptions {
    /// The function-app folder (`host.json` plus one folder per function).
    pub app_root: PathBuf,
    /// The executable to start; overrides host.json `defaultExecutablePath`
    /// (an empty path means "use host.json"). A relative path is resolved
    /// against the app root first, like the host does.
    pub handler_bin: PathBuf,
    /// App settings given to the handler process (on top of our environment).
    pub env: Vec<(String, String)>,
    /// Overrides host.json `queues.visibilityTimeout` for failed messages.
    pub retry_delay: Option<Duration>,
    /// Also print handler output lines to our stdout as they come.
    pub echo_logs: bool,
}

/// One call to the handler and how the host judged it.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    /// The function (folder) name.
    pub function: String,
    /// The `X-Azure-Functions-InvocationId` sent.
    pub invocation_id: String,
    /// HTTP status of the answer; 0 when there was none (connection error).
    pub status: u16,
    /// The answer's Content-Type header.
    pub content_type: Option<String>,
    /// The answer's body when it parsed as JSON.
    pub body: Option<Value>,
    /// 2xx with a JSON media type and a JSON object body (§4).
    pub ok: bool,
    /// Why the host considers the invocation failed.
    pub error: Option<String>,
}

/// A message as seen through the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    /// Storage message id.
    pub id: String,
    /// The text a trigger would get: base64 wire encoding removed when
    /// `messageEncoding` is base64 (the raw wire text if it does not decode).
    pub text: String,
    /// How many times it has been received.
    pub dequeue_count: u32,
    /// ISO-8601 insertion time.
    pub insertion_time: String,
}

/// What one `run_queues` call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Handler invocations made.
    pub invocations: usize,
    /// Invocations that succeeded (message deleted).
    pub succeeded: usize,
    /// Invocations that failed (message retried or poisoned).
    pub failed: usize,
    /// Messages moved to `<queue>-poison`.
    pub poisoned: usize,
}
