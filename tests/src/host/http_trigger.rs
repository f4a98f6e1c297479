//! httpTrigger functions without forwarding or proxying: the host's own
//! listener serves `/api/{route}`, checks the method and the function key,
//! builds the request object for the handler and turns the `http` output
//! back into the HTTP response (functions-facts §4 "HTTP trigger without
//! forwarding", "HTTP output shape"; azure-facts §3.2, §3.3, §3.4).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use super::config::{FunctionDef, get_ci};
use super::{Shared, invoke, outputs, sys_metadata};

/// The default `extensions.http.routePrefix`.
const PREFIX: &str = "api";

/// The catch-all for `/api/...` (matched case-insensitively; anything else
/// is 404).
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

/// A fresh 56-character key, like the host's generated function keys.
pub(crate) fn new_key() -> String {
    let bytes: Vec<u8> = (0..3)
        .flat_map(|_| super::clock::new_guid().replace('-', "").into_bytes())
        .collect();
    let raw: Vec<u8> = bytes
        .chunks(2)
        .map(|pair| {
            let hex = std::str::from_utf8(pair).unwrap_or("00");
            u8::from_str_radix(hex, 16).unwrap_or(0)
        })
        .take(42)
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// `%XX` and `+` decoding of one query component.
pub(crate) fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Query pairs grouped by name (case-insensitively, first spelling kept),
/// values in order.
pub(crate) fn query_pairs(raw: Option<&str>) -> Vec<(String, Vec<String>)> {
    let mut groups: Vec<(String, Vec<String>)> = Vec::new();
    for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k), decode(v));
        match groups.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(&k)) {
            Some((_, values)) => values.push(v),
            None => groups.push((k, vec![v])),
        }
    }
    groups
}

/// Matches `segments` against a route template: literals case-insensitively,
/// `{name}`, `{name:constraint}`, trailing `{name?}` and `{*name}`.
fn match_route(template: &str, segments: &[String]) -> Option<Map<String, Value>> {
    let parts: Vec<&str> = template
        .trim_matches('/')
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let mut params = Map::new();
    for (i, part) in parts.iter().enumerate() {
        let inner = part.strip_prefix('{').and_then(|p| p.strip_suffix('}'));
        let param = inner.map(|p| {
            let name = p.split(':').next().unwrap_or(p);
            (name.trim_end_matches('?'), p.ends_with('?'))
        });
        match param {
            Some((p, _)) if p.starts_with('*') => {
                let rest = segments.get(i..).unwrap_or_default().join("/");
                params.insert(p.trim_start_matches('*').to_owned(), json!(rest));
                return Some(params);
            }
            Some((p, optional)) => match segments.get(i) {
                Some(seg) => {
                    params.insert(p.to_owned(), json!(seg));
                }
                None if optional && i + 1 == parts.len() => return Some(params),
                None => return None,
            },
            None => {
                if !segments
                    .get(i)
                    .is_some_and(|s| s.eq_ignore_ascii_case(part))
                {
                    return None;
                }
            }
        }
    }
    (segments.len() == parts.len()).then_some(params)
}

/// The httpTrigger function for a path below `/api/`, with its route values.
fn find(shared: &Shared, rest: &str) -> Option<(FunctionDef, Map<String, Value>)> {
    let segments: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(decode_path)
        .collect();
    let mut candidates: Vec<(&FunctionDef, String)> = shared
        .config
        .functions
        .values()
        .filter_map(|f| {
            let t = f.trigger().filter(|t| t.is("httpTrigger"))?;
            Some((f, t.route.clone().unwrap_or_else(|| f.name.clone())))
        })
        .collect();
    // Literal routes win over templates.
    candidates.sort_by_key(|(_, route)| route.matches('{').count());
    candidates
        .into_iter()
        .find_map(|(f, route)| Some((f.clone(), match_route(&route, &segments)?)))
}

fn decode_path(segment: &str) -> String {
    decode(&segment.replace('+', "%2B"))
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let prefix_len = PREFIX.len() + 1;
    let under_api = path.len() >= prefix_len
        && path.as_bytes()[1..prefix_len].eq_ignore_ascii_case(PREFIX.as_bytes())
        && matches!(path.as_bytes().get(prefix_len), None | Some(b'/'));
    let found = under_api
        .then(|| find(&shared, path.get(prefix_len..).unwrap_or("")))
        .flatten();
    let Some((function, params)) = found else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let trigger = function.trigger().expect("http trigger").clone();
    if let Some(methods) = trigger.methods.as_ref().filter(|m| !m.is_empty())
        && !methods.iter().any(|m| m == method.as_str())
    {
        let allow = methods.join(", ");
        return (StatusCode::METHOD_NOT_ALLOWED, [("allow", allow)]).into_response();
    }
    let query = query_pairs(uri.query());
    let level = trigger.auth_level.as_deref().unwrap_or("function");
    if !level.eq_ignore_ascii_case("anonymous") && !has_key(&shared, &query, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let request = request_object(&method, &uri, &headers, &body, &query, params);
    let mut data = Map::new();
    data.insert(trigger.name.clone(), request.clone());
    let meta = json!({
        "Query": request["Query"],
        "Headers": request["Headers"],
        "sys": sys_metadata(&function.name),
    });
    let outcome = invoke::call(&shared, &function.name, Value::Object(data), meta).await;
    let Some(resp) = outcome.response else {
        let why = outcome.invocation.error.unwrap_or_default();
        shared.logs.push(format!(
            "[host] Executed 'Functions.{}' (Failed, Id={}): {why}",
            function.name, outcome.invocation.invocation_id
        ));
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    outputs::route(&shared, &function, &resp);
    match http_response(&function, &resp) {
        Ok(r) => r,
        Err(why) => {
            shared.logs.push(format!(
                "[host] Executed 'Functions.{}' (Failed, Id={}): {why}",
                function.name, outcome.invocation.invocation_id
            ));
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn has_key(shared: &Shared, query: &[(String, Vec<String>)], headers: &HeaderMap) -> bool {
    let key = shared.function_key.as_str();
    let in_query = query
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("code"))
        .any(|(_, v)| v.iter().any(|v| v == key));
    let in_header = headers
        .get_all("x-functions-key")
        .iter()
        .any(|v| v.as_bytes() == key.as_bytes());
    in_query || in_header
}

/// `GetRequestAsJObject`: Url, Method, Query (comma-joined), Headers
/// (arrays), Params, Identities, and Body only when Content-Length > 0.
fn request_object(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    query: &[(String, Vec<String>)],
    params: Map<String, Value>,
) -> Value {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let query_obj: Map<String, Value> = query
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.join(","))))
        .collect();
    let mut header_obj = Map::new();
    for (name, value) in headers {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        let entry = header_obj
            .entry(name.as_str().to_owned())
            .or_insert_with(|| json!([]));
        if let Value::Array(values) = entry {
            values.push(json!(text));
        }
    }
    let mut req = json!({
        "Url": format!("http://{host}{path_and_query}"),
        "Method": method.as_str(),
        "Query": query_obj,
        "Headers": header_obj,
        "Params": params,
        "Identities": [],
    });
    let length = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if length.is_some_and(|n| n > 0) {
        let ctype = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let binary =
            ctype.starts_with("application/octet-stream") || ctype.starts_with("multipart/");
        req["Body"] = if binary {
            json!(base64::engine::general_purpose::STANDARD.encode(body))
        } else {
            json!(String::from_utf8_lossy(body))
        };
    }
    req
}

/// The value bound to the `http` output: `Outputs.<name>`, `ReturnValue` for
/// `$return`, or a same-named property of an object `ReturnValue`.
fn http_value<'a>(function: &FunctionDef, resp: &'a Map<String, Value>) -> Option<&'a Value> {
    let name = &function.http_output()?.name;
    let ret = get_ci(resp, "ReturnValue").filter(|v| !v.is_null());
    if name == "$return" {
        return ret;
    }
    let from_return = ret.and_then(Value::as_object).and_then(|r| r.get(name));
    let outputs = get_ci(resp, "Outputs").and_then(Value::as_object);
    from_return.or_else(|| outputs.and_then(|o| o.get(name)))
}

fn status_of(res: &Map<String, Value>) -> Result<StatusCode, String> {
    let raw = get_ci(res, "statusCode")
        .filter(|v| !v.is_null())
        .or_else(|| get_ci(res, "status").filter(|v| !v.is_null()));
    let code = match raw {
        None => return Ok(StatusCode::OK),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
        Some(_) => None,
    };
    code.and_then(|c| u16::try_from(c).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| format!("invalid statusCode {}", raw.expect("present")))
}

fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `Outputs.res` → the caller's response: missing statusCode = 200, a
/// `content-type` header sets the type, an object body is written as JSON.
fn http_response(function: &FunctionDef, resp: &Map<String, Value>) -> Result<Response, String> {
    let value = http_value(function, resp);
    let empty = Map::new();
    let (res, bare_body) = match value {
        None | Some(Value::Null) => (&empty, None),
        Some(Value::Object(res)) => (res, None),
        // A bare value is the body of a 200.
        Some(other) => (&empty, Some(other)),
    };
    let status = status_of(res)?;
    let body = bare_body.or_else(|| get_ci(res, "body"));
    let (bytes, default_type) = match body {
        None | Some(Value::Null) => (Vec::new(), None),
        Some(Value::String(s)) => (s.clone().into_bytes(), Some("text/plain; charset=utf-8")),
        Some(v @ (Value::Object(_) | Value::Array(_))) => (
            v.to_string().into_bytes(),
            Some("application/json; charset=utf-8"),
        ),
        Some(v) => (
            v.to_string().into_bytes(),
            Some("text/plain; charset=utf-8"),
        ),
    };
    let mut response = (status, bytes).into_response();
    let out = response.headers_mut();
    out.remove("content-type");
    if let Some(Value::Object(given)) = get_ci(res, "headers") {
        for (name, value) in given {
            let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(text_of(value)),
            ) else {
                return Err(format!("invalid response header '{name}'"));
            };
            out.insert(name, value);
        }
    }
    if !out.contains_key("content-type")
        && let Some(t) = default_type
    {
        out.insert("content-type", HeaderValue::from_static(t));
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(path: &str) -> Vec<String> {
        path.split('/')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn routes_match_case_insensitively_with_parameters() {
        assert_eq!(match_route("Status", &segs("status")), Some(Map::new()));
        assert_eq!(match_route("status", &segs("status/x")), None);
        let p = match_route("servers/{id}/keys/{*rest}", &segs("SERVERS/pg1/keys/a/b")).unwrap();
        assert_eq!(p["id"], json!("pg1"));
        assert_eq!(p["rest"], json!("a/b"));
        let p = match_route("items/{id:int?}", &segs("items")).unwrap();
        assert!(p.is_empty());
        let p = match_route("items/{id?}", &segs("items/7")).unwrap();
        assert_eq!(p["id"], json!("7"));
    }

    #[test]
    fn query_values_are_decoded_and_grouped() {
        let q = query_pairs(Some("a=1&A=2&b=x%20y+z&c"));
        assert_eq!(
            q,
            vec![
                ("a".to_owned(), vec!["1".to_owned(), "2".to_owned()]),
                ("b".to_owned(), vec!["x y z".to_owned()]),
                ("c".to_owned(), vec![String::new()]),
            ]
        );
        assert_eq!(decode("100%"), "100%");
    }

    #[test]
    fn keys_look_random() {
        let (a, b) = (new_key(), new_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 56);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }
}
