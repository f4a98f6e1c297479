//! The REST plumbing shared by the Key Vault, Resource Manager and Resource
//! Graph clients: one `reqwest` client, bearer tokens, the error type, and
//! the retry rules (Retry-After honoured within a time budget).
//!
//! Retries here are only those that cannot duplicate a write: throttling
//! (429/503, the service did not act) for every method, and 5xx or transport
//! failures for reads. Everything else goes back to the caller, which fails
//! the invocation so Event Grid or the queue delivers it again.

use std::{
    fmt,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use reqwest::{
    Method, StatusCode, Url,
    dns::{Addrs, Name, Resolve, Resolving},
    header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER},
};
use serde_json::Value;

use crate::token::TokenSource;

tokio::task_local! {
    /// The `x-ms-correlation-request-id` sent with every call made for one
    /// piece of work (one server's rotation), so that Azure's logs, an
    /// operator and the tests can tie its reads to its write.
    pub static CORRELATION_ID: String;
}

/// Attempts of one request, first try included.
const MAX_ATTEMPTS: u32 = 3;

/// The Azure service a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    KeyVault,
    ResourceManager,
    ResourceGraph,
    Storage,
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Service::KeyVault => "key vault",
            Service::ResourceManager => "resource manager",
            Service::ResourceGraph => "resource graph",
            Service::Storage => "storage",
        })
    }
}

/// A failed call to Azure. `is_retryable` tells whether delivering the work
/// again later can help.
#[derive(Debug, thiserror::Error)]
pub enum AzureError {
    #[error("{service} throttled the request (retry after {})", show_wait(*.retry_after))]
    Throttled {
        service: Service,
        retry_after: Option<Duration>,
    },
    #[error("{service} answered {status} {code}: {message}")]
    Status {
        service: Service,
        status: u16,
        code: String,
        message: String,
        request_id: Option<String>,
    },
    #[error("{service} could not be reached: {detail}")]
    Transport { service: Service, detail: String },
    #[error("no token for {service}: {detail}")]
    Token { service: Service, detail: String },
    #[error("{service} sent a response that could not be read: {detail}")]
    Decode { service: Service, detail: String },
    #[error("refusing to call {url}: not under a configured endpoint")]
    Refused { url: String },
}

fn show_wait(wait: Option<Duration>) -> String {
    wait.map_or("unknown".into(), |d| format!("{} s", d.as_secs()))
}

/// Error codes with which Azure says another operation holds the resource.
const BUSY_CODES: &[&str] = &[
    "ServerBusy",
    "AnotherOperationInProgress",
    "OperationInProgress",
    "RetryableErrorDueToAnotherOperation",
    "ServerIsNotReady",
    "Conflict",
];

/// True for an error code with which Azure says another operation holds
/// the resource.
pub fn is_busy_code(code: &str) -> bool {
    BUSY_CODES.iter().any(|b| b.eq_ignore_ascii_case(code))
}

impl AzureError {
    /// The HTTP status Azure answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            AzureError::Status { status, .. } => Some(*status),
            AzureError::Throttled { .. } => Some(429),
            _ => None,
        }
    }

    /// Azure's error code, if any.
    pub fn code(&self) -> Option<&str> {
        match self {
            AzureError::Status { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The wait Azure asked for with a throttled answer, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AzureError::Throttled { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Another operation holds the resource (409, or a busy error code).
    pub fn is_busy(&self) -> bool {
        self.status() == Some(409)
            || self
                .code()
                .is_some_and(|c| BUSY_CODES.iter().any(|b| b.eq_ignore_ascii_case(c)))
    }

    /// True when the same work may succeed later: throttling, transport and
    /// token failures, server errors, busy resources, and 401/403 (role
    /// assignments take minutes to reach tokens).
    pub fn is_retryable(&self) -> bool {
        match self {
            AzureError::Throttled { .. }
            | AzureError::Transport { .. }
            | AzureError::Token { .. } => true,
            AzureError::Status { status, .. } => {
                matches!(status, 401 | 403 | 408) || *status >= 500 || self.is_busy()
            }
            AzureError::Decode { .. } | AzureError::Refused { .. } => false,
        }
    }
}

/// The time left to the work at hand; waits longer than what is left are
/// not started.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    deadline: Instant,
}

impl Budget {
    pub fn new(length: Duration) -> Budget {
        Budget {
            deadline: Instant::now() + length,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// True if a wait of `wait` still leaves a little time for the request.
    pub fn allows(&self, wait: Duration) -> bool {
        wait + Duration::from_millis(500) <= self.remaining()
    }
}

/// A response Azure answered with a 2xx status.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Response {
    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Retry-After` header, in seconds or as an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        parse_retry_after(&self.headers)
    }
}

/// One request to send.
pub struct Request<'a> {
    pub service: Service,
    pub scope: &'a str,
    pub method: Method,
    pub url: Url,
    pub body: Option<&'a Value>,
    /// Extra headers (Storage's `x-ms-version`).
    pub headers: &'a [(&'static str, &'static str)],
}

/// The HTTP client and token source shared by the Azure clients.
pub struct Http {
    client: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    /// Also bounds a token request: a hung identity endpoint must not hold
    /// an invocation past Event Grid's 30 s or the queue's lease.
    timeout: Duration,
}

impl Http {
    /// Builds the client. Redirects are never followed: a response cannot
    /// steer the handler to another host. `keyvault_connect` sends every
    /// vault host to one address (the local stand-in).
    pub fn new(
        tokens: Arc<dyn TokenSource>,
        timeout: Duration,
        keyvault_connect: Option<SocketAddr>,
    ) -> Result<Http, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .connect_timeout(Duration::from_secs(10))
            .timeout(timeout)
            .user_agent(concat!("cmk-rotation-handler/", env!("CARGO_PKG_VERSION")));
        if let Some(addr) = keyvault_connect {
            builder = builder.dns_resolver(Arc::new(FixedResolver(addr)));
        }
        let client = builder.build().map_err(|e| e.to_string())?;
        Ok(Http {
            client,
            tokens,
            timeout,
        })
    }

    /// Sends a request with a bearer token, retrying what is safe to retry
    /// within `budget`. Returns the 2xx response or the error.
    pub async fn send(
        &self,
        request: Request<'_>,
        budget: &Budget,
    ) -> Result<Response, AzureError> {
        let service = request.service;
        let idempotent = request.method == Method::GET;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let outcome = self.send_once(&request, budget).await;
            let wait = match &outcome {
                Ok(_) => return outcome,
                Err(e) => retry_wait(e, idempotent, attempt),
            };
            match wait {
                Some(wait) if attempt < MAX_ATTEMPTS && budget.allows(wait) => {
                    tracing::warn!(%service, path = request.url.path(), wait_ms = wait.as_millis() as u64,
                        error = %outcome.as_ref().unwrap_err(), "retrying after a transient failure");
                    tokio::time::sleep(wait).await;
                }
                _ => return outcome,
            }
        }
    }

    async fn send_once(
        &self,
        request: &Request<'_>,
        budget: &Budget,
    ) -> Result<Response, AzureError> {
        let service = request.service;
        let token = tokio::time::timeout(
            self.timeout.min(budget.remaining()),
            self.tokens.token(request.scope),
        )
        .await
        .map_err(|_| AzureError::Token {
            service,
            detail: format!("no answer from the token endpoint in {:?}", self.timeout),
        })?
        .map_err(|detail| AzureError::Token { service, detail })?;
        let mut auth =
            HeaderValue::from_str(&format!("Bearer {}", token.secret())).map_err(|_| {
                AzureError::Token {
                    service,
                    detail: "token is not a valid header value".into(),
                }
            })?;
        auth.set_sensitive(true);

        // No request outlives the work's budget (Event Grid waits 30 s).
        let timeout = self
            .timeout
            .min(budget.remaining())
            .max(Duration::from_millis(100));
        let mut builder = self
            .client
            .request(request.method.clone(), request.url.clone())
            .timeout(timeout)
            .header(AUTHORIZATION, auth);
        if let Ok(id) = CORRELATION_ID.try_with(Clone::clone) {
            builder = builder.header("x-ms-correlation-request-id", id);
        }
        for (name, value) in request.headers {
            builder = builder.header(*name, *value);
        }
        if let Some(body) = request.body {
            builder = builder.json(body);
        }
        let started = Instant::now();
        let response = builder.send().await.map_err(|e| AzureError::Transport {
            service,
            detail: transport_detail(&e),
        })?;
        let status = response.status();
        tracing::debug!(%service, method = %request.method, path = request.url.path(),
            status = status.as_u16(), elapsed_ms = started.elapsed().as_millis() as u64, "azure call");

        let headers = response.headers().clone();
        let bytes = response.bytes().await.map_err(|e| AzureError::Transport {
            service,
            detail: transport_detail(&e),
        })?;
        if status.is_success() {
            let xml = headers
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|t| t.contains("xml"));
            let body = if bytes.is_empty() {
                Value::Null
            } else if xml {
                Value::String(String::from_utf8_lossy(&bytes).into_owned())
            } else {
                serde_json::from_slice(&bytes).map_err(|e| AzureError::Decode {
                    service,
                    detail: e.to_string(),
                })?
            };
            return Ok(Response {
                status: status.as_u16(),
                headers,
                body,
            });
        }
        Err(status_error(service, status, &headers, &bytes))
    }
}

fn retry_wait(error: &AzureError, idempotent: bool, attempt: u32) -> Option<Duration> {
    match error {
        AzureError::Throttled { retry_after, .. } => {
            Some(retry_after.unwrap_or_else(|| backoff(attempt)))
        }
        AzureError::Status { status: 503, .. } => Some(backoff(attempt)),
        AzureError::Status { status, .. } if idempotent && *status >= 500 => Some(backoff(attempt)),
        AzureError::Transport { .. } | AzureError::Token { .. } if idempotent => {
            Some(backoff(attempt))
        }
        _ => None,
    }
}

/// Exponential backoff with jitter: about 1 s, then 2 s.
fn backoff(attempt: u32) -> Duration {
    let jitter = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_millis() % 250);
    Duration::from_millis(1000 * 2u64.pow(attempt.saturating_sub(1)) + u64::from(jitter))
}

fn status_error(
    service: Service,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> AzureError {
    let retry_after = parse_retry_after(headers).or_else(|| quota_resets_after(headers));
    if status == StatusCode::TOO_MANY_REQUESTS {
        return AzureError::Throttled {
            service,
            retry_after,
        };
    }
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &parsed["error"];
    let text = |v: &Value| {
        v.as_str()
            .unwrap_or_default()
            .chars()
            .take(500)
            .collect::<String>()
    };
    let request_id = ["x-ms-request-id", "x-ms-correlation-request-id"]
        .iter()
        .find_map(|h| headers.get(*h).and_then(|v| v.to_str().ok()))
        .map(str::to_string);
    AzureError::Status {
        service,
        status: status.as_u16(),
        code: Some(text(&error["code"]))
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| status.as_str().into()),
        message: text(&error["message"]),
        request_id,
    }
}

/// `Retry-After` in delta-seconds or as an HTTP date; anything else is
/// treated as absent, never as zero.
pub fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Resource Graph's per-user quota window, `x-ms-user-quota-resets-after`
/// as `hh:mm:ss`: when a throttled answer carries no `Retry-After`, the quota
/// is back after this long.
fn quota_resets_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("x-ms-user-quota-resets-after")?.to_str().ok()?;
    let mut parts = value.trim().split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    (parts.next().is_none() && m < 60 && s < 60).then(|| Duration::from_secs(h * 3600 + m * 60 + s))
}

fn transport_detail(e: &reqwest::Error) -> String {
    let mut text = if e.is_timeout() {
        "timed out".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Resolves every name to one address (the local stand-in for vault hosts).
struct FixedResolver(SocketAddr);

impl Resolve for FixedResolver {
    fn resolve(&self, _name: Name) -> Resolving {
        let addr = self.0;
        Box::pin(async move { Ok(Box::new(std::iter::once(addr)) as Addrs) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(
            parse_retry_after(&headers("372")),
            Some(Duration::from_secs(372))
        );
        let later = SystemTime::now() + Duration::from_secs(120);
        let parsed = parse_retry_after(&headers(&httpdate::fmt_http_date(later))).unwrap();
        assert!(parsed > Duration::from_secs(100) && parsed <= Duration::from_secs(120));
        assert_eq!(parse_retry_after(&headers("soon")), None);
        assert_eq!(parse_retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn resource_graph_quota_reset_stands_in_for_a_missing_retry_after() {
        let quota = |value: &str| {
            let mut h = HeaderMap::new();
            h.insert(
                "x-ms-user-quota-resets-after",
                HeaderValue::from_str(value).unwrap(),
            );
            h
        };
        assert_eq!(
            quota_resets_after(&quota("00:00:05")),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            quota_resets_after(&quota("01:02:03")),
            Some(Duration::from_secs(3723))
        );
        for bad in ["5", "00:61:00", "a:b:c", "00:00:05:00"] {
            assert_eq!(quota_resets_after(&quota(bad)), None, "{bad}");
        }
        let error = status_error(
            Service::ResourceGraph,
            StatusCode::TOO_MANY_REQUESTS,
            &quota("00:00:07"),
            b"",
        );
        assert!(matches!(
            error,
            AzureError::Throttled { retry_after: Some(d), .. } if d == Duration::from_secs(7)
        ));
    }

    #[test]
    fn busy_and_throttled_errors_are_retryable() {
        let busy = AzureError::Status {
            service: Service::ResourceManager,
            status: 400,
            code: "ServerBusy".into(),
            message: String::new(),
            request_id: None,
        };
        assert!(busy.is_busy() && busy.is_retryable());
        let bad = AzureError::Status {
            service: Service::ResourceManager,
            status: 400,
            code: "InvalidParameter".into(),
            message: String::new(),
            request_id: None,
        };
        assert!(!bad.is_retryable());
        assert!(
            AzureError::Throttled {
                service: Service::ResourceGraph,
                retry_after: None
            }
            .is_retryable()
        );
    }
}
