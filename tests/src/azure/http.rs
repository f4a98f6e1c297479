//! The request and reply types the service modules work with, so that each
//! service is a plain function from a [`Req`] to a [`Reply`].

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::fault::error_body;

/// Largest request body the fake reads.
const MAX_BODY: usize = 1 << 20;

/// A received request, read whole.
#[derive(Debug, Clone)]
pub(crate) struct Req {
    pub method: String,
    /// The `Host` header as received.
    pub host: String,
    pub path: String,
    /// Raw query string without `?`.
    pub query: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Body as JSON, or as a JSON string when it is not JSON.
    pub body: Option<Value>,
    /// Whether the body parsed as JSON.
    pub body_is_json: bool,
}

impl Req {
    /// Reads the whole request.
    pub async fn read(request: Request) -> Req {
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, MAX_BODY)
            .await
            .unwrap_or_default();
        let headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into(),
                )
            })
            .collect();
        // HTTP/2 requests carry the host in the URI authority instead.
        let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
        let host = header_in(&headers, "host")
            .map(str::to_owned)
            .or(authority)
            .unwrap_or_default();
        let parsed = serde_json::from_slice::<Value>(&bytes).ok();
        let body_is_json = parsed.is_some();
        let body = parsed.or_else(|| {
            (!bytes.is_empty()).then(|| Value::String(String::from_utf8_lossy(&bytes).into()))
        });
        Req {
            method: parts.method.as_str().to_owned(),
            host,
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or_default().to_owned(),
            headers,
            body,
            body_is_json,
        }
    }

    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header_in(&self.headers, name)
    }

    /// A decoded query parameter; the name is compared case-insensitively.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            decode(key)
                .eq_ignore_ascii_case(name)
                .then(|| decode(value))
        })
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer(&self) -> Option<&str> {
        let value = self.header("authorization")?;
        let (scheme, token) = value.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    }

    /// The `Host` header lower-cased, without a port.
    pub fn host_name(&self) -> String {
        host_without_port(&self.host)
    }

    /// Whether the `Content-Type` is JSON.
    pub fn is_json_content(&self) -> bool {
        self.header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"))
    }
}

/// What a service answers.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

impl Reply {
    /// A JSON reply.
    pub fn json(status: u16, body: Value) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    /// A reply with no body.
    pub fn empty(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    /// A reply with an `{"error":{"code","message"}}` body.
    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::json(status, error_body(code, message))
    }

    /// The same reply with one more header.
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Whether a header of this name is already set.
    pub fn has_header(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = match &self.body {
            Some(value) => Body::from(value.to_string()),
            None => Body::empty(),
        };
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        if self.body.is_some() {
            headers.insert(
                "content-type",
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
        }
        for (name, value) in &self.headers {
            let name = HeaderName::try_from(name.as_str());
            let value = HeaderValue::try_from(value.as_str());
            if let (Ok(name), Ok(value)) = (name, value) {
                headers.append(name, value);
            }
        }
        response
    }
}

/// A host (or `host:port`) lower-cased, without the port.
pub(crate) fn host_without_port(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    match host.rsplit_once(':') {
        Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name.to_owned(),
        _ => host,
    }
}

/// Percent-decodes a query component (`+` is a space).
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && hex_pair(&bytes[i + 1..i + 3]).is_some() => {
                out.extend(hex_pair(&bytes[i + 1..i + 3]));
                i += 2;
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a query component.
pub(crate) fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn hex_pair(pair: &[u8]) -> Option<u8> {
    if !pair.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let text = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(text, 16).ok()
}

fn header_in<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut values = headers.iter().filter(|(n, _)| n == name);
    values.next().map(|(_, v)| v.as_str())
}
