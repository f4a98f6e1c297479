//! The Storage account that holds the queues, as the handler would reach it
//! with its own identity: Peek Messages only
//! (`GET /devstoreaccount1/{queue}/messages?peekonly=true&numofmessages=N`),
//! answered from the simulator's in-memory queues in the Storage REST shape.
//! Peeking never changes a message.

use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::Shared;
use super::clock::new_guid;
use super::http_trigger::query_pairs;
use super::queue_store::valid_queue_name;

/// The account name in path-style (Azurite) URIs.
pub(crate) const ACCOUNT: &str = "devstoreaccount1";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(&format!("/{ACCOUNT}/{{queue}}/messages"), get(peek))
        .with_state(shared)
}

/// Escapes text for an XML element.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

const XML_HEAD: &str = r#"<?xml version="1.0" encoding="utf-8"?>"#;

/// Headers every Storage answer carries.
fn storage_headers(resp: &mut Response, request: &HeaderMap, request_id: &str) {
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/xml"));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-ms-request-id", v);
    }
    if let Some(v) = request.get("x-ms-version") {
        h.insert("x-ms-version", v.clone());
    }
    if let Some(v) = request.get("x-ms-client-request-id") {
        h.insert("x-ms-client-request-id", v.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&httpdate::fmt_http_date(SystemTime::now())) {
        h.insert("date", v);
    }
}

/// A Storage error: XML body plus `x-ms-error-code`.
fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    extra: &str,
    request: &HeaderMap,
) -> Response {
    let id = new_guid();
    let time = super::clock::iso_utc(SystemTime::now());
    let body = format!(
        "{XML_HEAD}<Error><Code>{code}</Code><Message>{}\nRequestId:{id}\nTime:{time}</Message>{extra}</Error>",
        xml_escape(message)
    );
    let mut resp = (status, body).into_response();
    storage_headers(&mut resp, request, &id);
    if let Ok(v) = HeaderValue::from_str(code) {
        resp.headers_mut().insert("x-ms-error-code", v);
    }
    resp
}

fn bearer_present(headers: &HeaderMap) -> bool {
    let value = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    value.split_once(' ').is_some_and(|(scheme, token)| {
        scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty()
    })
}

async fn peek(
    State(shared): State<Arc<Shared>>,
    Path(queue): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    if !bearer_present(&headers) {
        let mut resp = error(
            StatusCode::UNAUTHORIZED,
            "NoAuthenticationInformation",
            "Server failed to authenticate the request. Please refer to the information in the www-authenticate header.",
            "",
            &headers,
        );
        resp.headers_mut().insert(
            "www-authenticate",
            HeaderValue::from_static(
                "Bearer authorization_uri=https://login.microsoftonline.com/common/oauth2/authorize resource_id=https://storage.azure.com",
            ),
        );
        return resp;
    }
    if !headers.contains_key("x-ms-version") {
        return error(
            StatusCode::BAD_REQUEST,
            "MissingRequiredHeader",
            "An HTTP header that's mandatory for this request is not specified.",
            "<HeaderName>x-ms-version</HeaderName>",
            &headers,
        );
    }
    let query = query_pairs(raw.as_deref());
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first().cloned())
    };
    if !param("peekonly").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return error(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            "standin Storage only answers Peek Messages (peekonly=true).",
            "",
            &headers,
        );
    }
    let count = match param("numofmessages") {
        None => 1,
        Some(text) => match text.parse::<usize>() {
            Ok(n) if (1..=32).contains(&n) => n,
            _ => {
                let extra = format!(
                    "<QueryParameterName>numofmessages</QueryParameterName>\
                     <QueryParameterValue>{}</QueryParameterValue>\
                     <MinimumAllowed>1</MinimumAllowed><MaximumAllowed>32</MaximumAllowed>",
                    xml_escape(&text)
                );
                return error(
                    StatusCode::BAD_REQUEST,
                    "OutOfRangeQueryParameterValue",
                    "One of the query parameters specified in the request URI is outside the permissible range.",
                    &extra,
                    &headers,
                );
            }
        },
    };
    if !valid_queue_name(&queue) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidResourceName",
            "The specifed resource name contains invalid characters.",
            "",
            &headers,
        );
    }
    let messages = {
        let store = shared.queues.lock().expect("queue lock");
        let declared = shared.config.functions.values().any(|f| {
            f.bindings
                .iter()
                .any(|b| b.queue_name.as_deref() == Some(queue.as_str()))
        });
        if !store.exists(&queue) && !declared {
            drop(store);
            return error(
                StatusCode::NOT_FOUND,
                "QueueNotFound",
                "The specified queue does not exist.",
                "",
                &headers,
            );
        }
        store.peek(&queue, count)
    };
    let mut body = format!("{XML_HEAD}<QueueMessagesList>");
    for m in messages {
        body.push_str(&format!(
            "<QueueMessage><MessageId>{}</MessageId><InsertionTime>{}</InsertionTime>\
             <ExpirationTime>{}</ExpirationTime><DequeueCount>{}</DequeueCount>\
             <MessageText>{}</MessageText></QueueMessage>",
            xml_escape(&m.id),
            httpdate::fmt_http_date(m.inserted),
            httpdate::fmt_http_date(m.expires),
            m.dequeue_count,
            xml_escape(&m.wire),
        ));
    }
    body.push_str("</QueueMessagesList>");
    let mut resp = (StatusCode::OK, body).into_response();
    storage_headers(&mut resp, &headers, &new_guid());
    resp.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-cache"));
    resp
}
