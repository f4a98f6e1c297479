//! The Azure Functions custom-handler protocol: the invocation the host
//! POSTs (`{"Data":…,"Metadata":…}`) and the answer it expects
//! (`{"Outputs":…,"Logs":[…],"ReturnValue":…}` as `application/json`).
//!
//! The host double-encodes strings: a queue message arrives as a JSON string
//! holding the message text, and metadata strings carry an extra pair of
//! quotes. Values are decoded leniently so either form works.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde_json::{Map, Value, json};

/// One invocation from the host.
#[derive(Debug, Default)]
pub struct Invocation {
    pub data: Map<String, Value>,
    pub metadata: Map<String, Value>,
}

/// The body was not an invocation at all.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("invocation body is not JSON: {0}")]
    NotJson(String),
    #[error("invocation body is not a JSON object")]
    NotAnObject,
}

impl Invocation {
    /// Parses the host's request body. Top-level names are matched without
    /// regard to case, as the host itself does.
    pub fn parse(body: &[u8]) -> Result<Invocation, ProtocolError> {
        // A byte order mark some producers put before JSON.
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let value: Value =
            serde_json::from_slice(body).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
        let Value::Object(object) = value else {
            return Err(ProtocolError::NotAnObject);
        };
        let mut invocation = Invocation::default();
        for (name, value) in object {
            let target = if name.eq_ignore_ascii_case("Data") {
                &mut invocation.data
            } else if name.eq_ignore_ascii_case("Metadata") {
                &mut invocation.metadata
            } else {
                continue;
            };
            if let Value::Object(map) = decode(value) {
                *target = map;
            }
        }
        Ok(invocation)
    }

    /// The input bound to `binding`, decoded; if no input has that name and
    /// there is exactly one input, that one.
    pub fn input(&self, binding: &str) -> Option<Value> {
        let found = self
            .data
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(binding))
            .map(|(_, v)| v);
        let only = (self.data.len() == 1)
            .then(|| self.data.values().next())
            .flatten();
        found.or(only).cloned().map(decode)
    }

    /// A metadata value as text, extra quotes removed.
    pub fn metadata_text(&self, name: &str) -> Option<String> {
        let value = self
            .metadata
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))?
            .1;
        match decode(value.clone()) {
            Value::String(s) => Some(s),
            Value::Null => None,
            other => Some(other.to_string()),
        }
    }
}

/// Unwraps JSON text held in a string, at most twice (the host's own
/// encoding plus a producer that sent JSON as a string).
pub fn decode(value: Value) -> Value {
    let mut value = value;
    for _ in 0..2 {
        let Value::String(text) = &value else { break };
        let trimmed = text.trim_start();
        let looks_json = trimmed.starts_with(['{', '[', '"']);
        match serde_json::from_str::<Value>(text) {
            Ok(inner) if looks_json => value = inner,
            _ => break,
        }
    }
    value
}

/// The answer to the host. A retryable failure is a 500: the host then
/// fails the invocation (Event Grid or the queue delivers it again) and
/// discards `Logs`, so every line is also written to the log stream.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    outputs: Map<String, Value>,
    logs: Vec<String>,
}

impl Reply {
    /// Success: the work is done, or can never be done (the reason is logged).
    pub fn done() -> Reply {
        Reply {
            status: StatusCode::OK,
            outputs: Map::new(),
            logs: Vec::new(),
        }
    }

    /// Failure that may succeed later.
    pub fn retry() -> Reply {
        Reply {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            ..Reply::done()
        }
    }

    /// Adds a line for the invocation's log.
    pub fn log(mut self, line: impl Into<String>) -> Reply {
        self.logs.push(line.into());
        self
    }

    /// Sets an output binding.
    pub fn output(mut self, binding: &str, value: Value) -> Reply {
        self.outputs.insert(binding.to_string(), value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn logs(&self) -> &[String] {
        &self.logs
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let body = json!({ "Outputs": self.outputs, "Logs": self.logs, "ReturnValue": null });
        (self.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_text_double_encoded_by_the_host_is_decoded() {
        let text = "{\n  \"serverId\": \"/subscriptions/x\"\n}";
        let once = Value::String(serde_json::to_string(text).unwrap());
        let body =
            json!({"Data": {"message": once}, "Metadata": {"DequeueCount": "2", "Id": "\"abc\""}});
        let inv = Invocation::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(
            inv.input("message"),
            Some(json!({"serverId": "/subscriptions/x"}))
        );
        assert_eq!(inv.metadata_text("DequeueCount").as_deref(), Some("2"));
        assert_eq!(inv.metadata_text("id").as_deref(), Some("abc"));
    }

    #[test]
    fn object_inputs_and_lower_case_envelopes_are_read() {
        let body = json!({"data": {"event": {"id": "1"}}, "metadata": {}});
        let inv = Invocation::parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(inv.input("event"), Some(json!({"id": "1"})));
        assert_eq!(inv.input("other"), Some(json!({"id": "1"})));
    }

    #[test]
    fn plain_strings_stay_strings() {
        assert_eq!(decode(json!("hello")), json!("hello"));
        assert_eq!(decode(json!("12")), json!("12"));
        assert!(Invocation::parse(b"not json").is_err());
        let bom = Invocation::parse(b"\xEF\xBB\xBF{\"Data\": {\"m\": 1}}").unwrap();
        assert_eq!(bom.input("m"), Some(json!(1)));
        assert!(Invocation::parse(b"[1]").is_err());
    }
}
