//! Routing a successful response's `Outputs` / `ReturnValue` to queue output
//! bindings exactly as the host converts them (functions-facts §3 "Turning
//! `Outputs.<name>` into messages", "Base64 trap on output", §4 ReturnValue).

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use serde_json::{Map, Value};

use super::Shared;
use super::config::{FunctionDef, get_ci};

/// `Convert.FromBase64String`: whitespace ignored, length a multiple of 4,
/// `=` padding, unused trailing bits tolerated.
pub(crate) fn dotnet_base64(text: &str) -> Option<Vec<u8>> {
    let compact: String = text
        .chars()
        .filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n'))
        .collect();
    if !compact.len().is_multiple_of(4) {
        return None;
    }
    let config = GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical);
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
        .decode(compact)
        .ok()
}

/// A binding value after `GetBindingValue`: the base64 trap turns a
/// top-level string into bytes when it decodes (§3, pitfall 2).
enum BindingValue {
    Bytes(Vec<u8>),
    Json(Value),
}

fn trap(value: &Value, binary: bool) -> BindingValue {
    match value {
        Value::String(s) if !binary => match dotnet_base64(s) {
            Some(bytes) => BindingValue::Bytes(bytes),
            None => BindingValue::Json(value.clone()),
        },
        _ => BindingValue::Json(value.clone()),
    }
}

fn looks_like_json(s: &str) -> bool {
    let t = s.trim();
    (t.starts_with('{') && t.ends_with('}')) || (t.starts_with('[') && t.ends_with(']'))
}

/// `JToken.ToString()`: containers indented, strings raw, numbers as digits,
/// booleans `True`/`False`, null empty.
fn token_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => if *b { "True" } else { "False" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(_) | Value::Object(_) => {
            serde_json::to_string_pretty(v).expect("serializable")
        }
    }
}

/// `ReadAsEnumerable` + the `byte[]` collector: the messages one output
/// value turns into.
fn messages_of(value: BindingValue) -> Vec<Vec<u8>> {
    let json = match value {
        BindingValue::Bytes(bytes) => return vec![bytes],
        BindingValue::Json(Value::Null) => return Vec::new(),
        BindingValue::Json(Value::String(s)) if looks_like_json(&s) => {
            serde_json::from_str(&s).unwrap_or(Value::String(s))
        }
        BindingValue::Json(v) => v,
    };
    match json {
        Value::Array(items) => items.iter().map(|i| token_text(i).into_bytes()).collect(),
        other => vec![token_text(&other).into_bytes()],
    }
}

/// The messages a top-level output value becomes.
#[cfg(test)]
pub(crate) fn convert(value: &Value, binary: bool) -> Vec<Vec<u8>> {
    messages_of(trap(value, binary))
}

/// The values per binding name: `Outputs`, plus `ReturnValue` as `$return`,
/// or an object `ReturnValue` merged by property name when there is no
/// `$return` binding (§4 `HandleOutputDictionary`).
fn binding_values(
    function: &FunctionDef,
    resp: &Map<String, Value>,
) -> Vec<(String, BindingValue)> {
    let outputs = get_ci(resp, "Outputs").and_then(Value::as_object);
    let mut values: Vec<(String, BindingValue)> = Vec::new();
    for b in function.queue_outputs().filter(|b| b.name != "$return") {
        if let Some(v) = outputs.and_then(|o| o.get(&b.name)) {
            values.push((b.name.clone(), trap(v, b.is_binary())));
        }
    }
    let ret = get_ci(resp, "ReturnValue").filter(|v| !v.is_null());
    match (ret, function.queue_outputs().find(|b| b.name == "$return")) {
        (Some(r), Some(b)) => values.push((b.name.clone(), trap(r, b.is_binary()))),
        (Some(Value::Object(props)), None) => {
            for (k, v) in props
                .iter()
                .filter(|(k, _)| function.queue_outputs().any(|b| &b.name == *k))
            {
                values.retain(|(name, _)| name != k);
                values.push((k.clone(), BindingValue::Json(v.clone())));
            }
        }
        _ => {}
    }
    values
}

/// Encodes message bytes for the wire per `messageEncoding`.
pub(crate) fn to_wire(bytes: &[u8], base64: bool) -> String {
    if base64 {
        STANDARD.encode(bytes)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Writes the queue outputs of a successful response; returns how many
/// messages were enqueued.
pub(crate) fn route(shared: &Shared, function: &FunctionDef, resp: &Map<String, Value>) -> usize {
    let base64 = shared.config.queues.base64;
    let mut count = 0;
    for (name, value) in binding_values(function, resp) {
        let Some(queue) = function
            .queue_outputs()
            .find(|b| b.name == name)
            .and_then(|b| b.queue_name.clone())
        else {
            continue;
        };
        let mut store = shared.queues.lock().expect("queue lock");
        for msg in messages_of(value) {
            store.put(&queue, to_wire(&msg, base64));
            count += 1;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn texts(v: Value) -> Vec<String> {
        convert(&v, false)
            .into_iter()
            .map(|b| String::from_utf8(b).unwrap())
            .collect()
    }

    #[test]
    fn arrays_fan_out_and_objects_are_indented() {
        let out = texts(json!([{"a": 1}, "plain text", 42, true]));
        assert_eq!(out, vec!["{\n  \"a\": 1\n}", "plain text", "42", "True"]);
    }

    #[test]
    fn json_looking_strings_are_parsed() {
        assert_eq!(
            texts(json!(" [\"x\", {\"b\":2}] ")),
            vec!["x", "{\n  \"b\": 2\n}"]
        );
        assert_eq!(texts(json!("{\"id\":1}")), vec!["{\n  \"id\": 1\n}"]);
    }

    #[test]
    fn base64_trap_decodes_bare_strings_only() {
        assert_eq!(convert(&json!("test"), false), vec![vec![0xb5, 0xeb, 0x2d]]);
        assert_eq!(texts(json!("aGVsbG8=")), vec!["hello"]);
        assert_eq!(texts(json!(["test"])), vec!["test"]);
        assert_eq!(texts(json!("hello world")), vec!["hello world"]);
        let binary = convert(&json!("test"), true);
        assert_eq!(binary, vec![b"test".to_vec()]);
    }
}
