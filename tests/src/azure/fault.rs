//! Programmable faults: canned answers that take precedence over the normal
//! behaviour of every service, for a given number of matching requests.

use std::time::Duration;

use serde_json::{Value, json};

/// A canned answer for matching requests, checked before any service runs.
///
/// A request matches when its method equals `method` (if set, compared
/// case-insensitively) and its path plus query (`/keys/k?api-version=7.5`)
/// contains `path_contains`, compared case-insensitively. The first `times`
/// matching requests get this answer; then the fault is used up. A `status`
/// of [`Fault::RESET`] drops the connection without answering; one of
/// [`Fault::LOST_ANSWER`] lets the service act and then drops the connection.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// HTTP method to match, or any.
    pub method: Option<String>,
    /// Substring of the path and query to match; empty matches everything.
    pub path_contains: String,
    /// How many matching requests get this answer.
    pub times: u32,
    /// The status to answer, or [`Fault::RESET`].
    pub status: u16,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
    /// JSON response body; none for an empty body.
    pub body: Option<Value>,
    /// Sleep this long before answering.
    pub delay: Option<Duration>,
}

impl Default for Fault {
    /// One `500` for any request, with an ARM-shaped `InternalServerError`.
    fn default() -> Self {
        Fault {
            method: None,
            path_contains: String::new(),
            times: 1,
            status: 500,
            headers: Vec::new(),
            body: Some(error_body("InternalServerError", "standin: injected fault")),
            delay: None,
        }
    }
}

impl Fault {
    /// The `status` value that makes the fake drop the connection instead of
    /// answering (the client sees the connection closed mid-request).
    pub const RESET: u16 = 0;

    /// The `status` value that makes the fake serve the request as usual (a
    /// PATCH starts its update) and then drop the connection instead of
    /// sending the answer, after `delay` when set: the client cannot tell
    /// whether the write happened.
    pub const LOST_ANSWER: u16 = 1;

    /// Answer `status` with an `{"error":{..}}` body once to requests with
    /// this method (`None` for any) whose path contains `path_contains`.
    pub fn status(method: Option<&str>, path_contains: &str, status: u16) -> Fault {
        Fault {
            method: method.map(str::to_owned),
            path_contains: path_contains.to_owned(),
            status,
            ..Fault::default()
        }
    }

    /// ARM throttling: `429` with `Retry-After: retry_after` (given as text
    /// so that HTTP dates and garbage can be tested too) and a
    /// `ResourceRequestsThrottled` error.
    pub fn throttled(method: Option<&str>, path_contains: &str, retry_after: &str) -> Fault {
        let message = "Number of requests exceeded the limit. Please try again later.";
        Fault::status(method, path_contains, 429)
            .with_body(error_body("ResourceRequestsThrottled", message))
            .with_header("Retry-After", retry_after)
    }

    /// Drop the connection once for matching requests.
    pub fn reset(method: Option<&str>, path_contains: &str) -> Fault {
        Fault::status(method, path_contains, Fault::RESET).without_body()
    }

    /// Serve matching requests as usual but drop the answer once.
    pub fn lost_answer(method: Option<&str>, path_contains: &str) -> Fault {
        Fault::status(method, path_contains, Fault::LOST_ANSWER).without_body()
    }

    /// The same fault for the first `times` matching requests.
    pub fn times(mut self, times: u32) -> Fault {
        self.times = times;
        self
    }

    /// The same fault with this JSON body.
    pub fn with_body(mut self, body: Value) -> Fault {
        self.body = Some(body);
        self
    }

    /// The same fault with an empty body.
    pub fn without_body(mut self) -> Fault {
        self.body = None;
        self
    }

    /// The same fault with one more response header.
    pub fn with_header(mut self, name: &str, value: &str) -> Fault {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The same fault, answered after `delay`.
    pub fn with_delay(mut self, delay: Duration) -> Fault {
        self.delay = Some(delay);
        self
    }

    /// Whether a request with this method, path and query matches.
    pub(crate) fn matches(&self, method: &str, path: &str, query: &str) -> bool {
        let method_ok = self
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(method));
        let target = format!("{path}?{query}").to_ascii_lowercase();
        method_ok && target.contains(&self.path_contains.to_ascii_lowercase())
    }
}

/// Takes one use of the first live fault that matches, dropping used-up ones.
pub(crate) fn take_fault(
    faults: &mut Vec<Fault>,
    method: &str,
    path: &str,
    query: &str,
) -> Option<Fault> {
    faults.retain(|fault| fault.times > 0);
    let fault = faults
        .iter_mut()
        .find(|fault| fault.matches(method, path, query))?;
    fault.times -= 1;
    Some(fault.clone())
}

/// The ARM / Key Vault error shape `{"error":{"code","message"}}`.
pub(crate) fn error_body(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message } })
}
