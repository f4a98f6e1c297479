//! Bad and hostile input: generated invocations, events and queue messages
//! (no panic, a logged reason, no Azure call unless the input is a valid key
//! event or message for a configured vault and subscription), bodies over
//! the size limit (refused before they are read whole), and events that try
//! to steer the handler to another host (no connection reaches the
//! stand-in, which every name the handler resolves points at).
//!
//! A million generated inputs:
//! `FUZZ_CASES=1000000 cargo test -p handler --release --test e2e hostile`
//! (CI runs 5 000; `FUZZ_SEED` changes the sequence).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use handler::{
    app::AppState,
    config::Config,
    event::parse_event,
    key_id::KeyId,
    plan,
    protocol::Invocation,
    rotate,
    token::{Secret, TokenSource},
};
use serde_json::{Map, Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    seeded::{Rng, count_from_env, report},
    support::*,
};

/// A token source that counts requests and never gives a token: every
/// Azure call the handler tries starts with one.
#[derive(Default)]
struct CountingTokens(AtomicU64);

#[async_trait::async_trait]
impl TokenSource for CountingTokens {
    async fn token(&self, _scope: &str) -> Result<Secret, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err("fuzz: no Azure here".into())
    }
}

fn fuzz_state(tokens: Arc<CountingTokens>) -> AppState {
    let config = Config::from_lookup(|name| {
        let value = match name {
            "CMK_SUBSCRIPTIONS" => SUB,
            "CMK_ALLOW_HTTP" => "true",
            "CMK_ARM_ENDPOINT" => "http://127.0.0.1:9",
            "CMK_HTTP_TIMEOUT_SECS" => "1",
            // No backoff sleeps after the refused token: one attempt each.
            "CMK_EVENT_BUDGET_SECS" => "1",
            "CMK_OPERATION_BUDGET_SECS" => "1",
            _ => return None,
        };
        Some(value.to_string())
    })
    .expect("fuzz configuration");
    AppState::with_tokens(config, tokens)
}

/// Strings that have broken parsers before, or try to steer the handler.
const HOSTILE: &[&str] = &[
    "",
    " ",
    "null",
    "Key",
    "key",
    "Secret",
    "Microsoft.KeyVault.KeyNewVersionCreated",
    "microsoft.keyvault.keynewversioncreated",
    "Microsoft.KeyVault.KeyNearExpiry",
    "Microsoft.KeyVault.SecretNewVersionCreated",
    "Microsoft.EventGrid.SubscriptionValidationEvent",
    "https://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
    "https://contoso-kv.vault.azure.net/keys/pg-cmk",
    "https://contoso-kv.vault.evil.example/keys/pg-cmk/22222222222222222222222222222222",
    "https://contoso-kv.vault.azure.net.evil.example/keys/pg-cmk",
    "https://evil.example/contoso-kv.vault.azure.net/keys/pg-cmk",
    "https://contoso-kv.vault.azure.net@evil.example/keys/pg-cmk",
    "https://contoso-kv.vault.azure.net:8443/keys/pg-cmk",
    "https://contoso-kv.vault.azure.net/keys/../secrets/pg-cmk",
    "https://contoso-kv.vault.azure.net/keys/pg%2Fcmk",
    "https://contoso-kv.vault.azure.net/keys/pg-cmk?api-version=1",
    "https://contoso-kv.vault.azure.net/keys/pg-cmk#x",
    "https://contoso-kv.vault.azure.net\\keys\\pg-cmk",
    "https://contoso-kv.vault.azure.net/keys/pg-cmk\r\nHost: evil.example",
    "https://127.0.0.1/keys/pg-cmk",
    "https://[::1]/keys/pg-cmk",
    "https://xn--contso-kv-xyz.vault.azure.net/keys/pg-cmk",
    "https://ｃontoso-kv.vault.azure.net/keys/pg-cmk",
    "https://a--b.vault.azure.net/keys/pg-cmk",
    "https://ab.vault.azure.net/keys/pg-cmk",
    "https://1abc.vault.azure.net/keys/pg-cmk",
    "HTTPS://CONTOSO-KV.VAULT.AZURE.NET:443/KEYS/PG-CMK/",
    "file:///etc/passwd",
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/../providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
    "https://evil.example/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
    "1767225600",
    "-1",
    "1e400",
    "NaN",
    "\u{0}",
    "\u{202e}gnp.exe",
    "{\"Id\":\"https://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222\"}",
    "[{}]",
];

/// Valid inputs the mutations start from.
fn corpus() -> Vec<Value> {
    let event = key_event("KeyNewVersionCreated", "e-1", &v(2));
    let mut camel = event.clone();
    camel["data"] = json!({"id": key_uri(&v(2)), "vaultName": "contoso-kv", "objectType": "Key",
        "objectName": KEY, "version": v(2), "nbf": "1767225600", "exp": 1798761600});
    let mut as_string = event.clone();
    as_string["data"] = Value::String(event["data"].to_string());
    let cloud = json!({"specversion": "1.0", "id": "c-1", "type": "Microsoft.KeyVault.KeyNearExpiry",
        "source": event["topic"], "subject": KEY, "time": "2026-01-10T08:00:00Z", "data": event["data"]});
    let message = json!({"serverId": server("pg").id(), "keyId": format!("https://{VAULT}/keys/{KEY}"), "eventId": "e-1"});
    vec![event, camel, as_string, cloud, message]
}

fn random_scalar(rng: &mut Rng) -> Value {
    match rng.below(8) {
        0 => Value::Null,
        1 => json!(rng.chance(50)),
        2 => json!(rng.next_u64() as i64),
        3 => json!((rng.next_u64() as f64) / 7.0 - 1e18),
        4 => json!("x".repeat(rng.below(600) as usize)),
        5 => json!(char::from_u32(rng.below(0x11_0000) as u32).map_or(String::new(), String::from)),
        _ => json!(*rng.pick(HOSTILE)),
    }
}

/// Changes one node of a JSON tree.
fn mutate(rng: &mut Rng, value: &mut Value, depth: u32) {
    let descend = depth < 6 && rng.chance(70);
    match value {
        Value::Object(map) if descend && !map.is_empty() => {
            let keys: Vec<String> = map.keys().cloned().collect();
            let key = rng.pick(&keys).clone();
            match rng.below(6) {
                0 => {
                    map.remove(&key);
                }
                1 => {
                    let child = map.remove(&key).unwrap_or_default();
                    let renamed = match rng.below(3) {
                        0 => key.to_ascii_uppercase(),
                        1 => format!(" {key} "),
                        _ => key.to_ascii_lowercase(),
                    };
                    map.insert(renamed, child);
                }
                2 => {
                    map.insert(rng.pick(HOSTILE).to_string(), random_scalar(rng));
                }
                _ => mutate(rng, map.get_mut(&key).expect("key"), depth + 1),
            }
        }
        Value::Array(items) if descend && !items.is_empty() => {
            let i = rng.below(items.len() as u64) as usize;
            mutate(rng, &mut items[i], depth + 1);
        }
        _ => {
            *value = match rng.below(6) {
                0 => Value::String(value.to_string()),
                1 => json!([value.clone()]),
                2 => json!({"data": value.clone()}),
                3 => (0..rng.below(300)).fold(value.clone(), |v, _| json!([v])),
                _ => random_scalar(rng),
            };
        }
    }
}

/// Byte-level damage to a serialized body.
fn damage(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..rng.within(1..4) {
        if bytes.is_empty() {
            bytes.push(rng.below(256) as u8);
            continue;
        }
        let i = rng.below(bytes.len() as u64) as usize;
        match rng.below(4) {
            0 => bytes[i] ^= 1 << rng.below(8),
            1 => bytes.truncate(i),
            2 => bytes.insert(i, *rng.pick(b"{}[]\",:\\\x00\xff")),
            _ => {
                bytes.remove(i);
            }
        }
    }
}

/// One generated invocation body for a function.
fn generate(rng: &mut Rng, corpus: &[Value]) -> Vec<u8> {
    if rng.chance(3) {
        return (0..rng.below(200)).map(|_| rng.below(256) as u8).collect();
    }
    let mut input = rng.pick(corpus).clone();
    for _ in 0..rng.within(0..4) {
        mutate(rng, &mut input, 0);
    }
    let binding = *rng.pick(&["event", "message", "Event", "other"]);
    let bound = if rng.chance(30) {
        Value::String(input.to_string())
    } else {
        input
    };
    let mut data = Map::new();
    data.insert(binding.to_string(), bound);
    if rng.chance(5) {
        data.insert("second".into(), random_scalar(rng));
    }
    let mut body =
        json!({"Data": data, "Metadata": {"DequeueCount": "1", "sys": {"MethodName": "KeyEvent"}}});
    if rng.chance(15) {
        mutate(rng, &mut body, 0);
    }
    let mut bytes = body.to_string().into_bytes();
    if rng.chance(15) {
        damage(rng, &mut bytes);
    }
    bytes
}

/// True when `plan` may call Azure for this invocation: a key event for a
/// vault under the configured suffixes.
fn plannable(state: &AppState, invocation: &Invocation) -> bool {
    let Some(event) = invocation
        .input(plan::EVENT_BINDING)
        .and_then(|v| parse_event(&v).ok())
    else {
        return false;
    };
    event.key_event_kind().is_some()
        && KeyId::parse(&event.data.id)
            .is_ok_and(|k| k.check_vault(&state.config.keyvault_suffixes).is_ok())
}

/// True when `rotate` may call Azure for this invocation: a message naming
/// a server of a configured subscription and a key of an allowed vault.
fn rotatable(state: &AppState, invocation: &Invocation) -> bool {
    let Some(message) = invocation
        .input(rotate::MESSAGE_BINDING)
        .and_then(|v| serde_json::from_value::<rotate::RotationMessage>(v).ok())
    else {
        return false;
    };
    let in_scope = handler::arm::subscription_of(&message.server_id)
        .is_some_and(|s| state.config.subscriptions.contains(&s));
    in_scope
        && KeyId::parse(&message.key_id)
            .is_ok_and(|k| k.check_vault(&state.config.keyvault_suffixes).is_ok())
}

#[derive(Default)]
struct FuzzFigures {
    cases: u64,
    not_json: u64,
    refused: u64,
    azure_attempts: u64,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_invocations_never_panic_and_call_azure_only_when_valid() {
    let cases = count_from_env("FUZZ_CASES", 5_000);
    let seed = count_from_env("FUZZ_SEED", 0);
    let tokens = Arc::new(CountingTokens::default());
    let state = fuzz_state(tokens.clone());
    let corpus = corpus();
    let mut rng = Rng::new(seed);
    let mut figures = FuzzFigures::default();
    let started = Instant::now();

    for case in 0..cases {
        let body = generate(&mut rng, &corpus);
        figures.cases += 1;
        let Ok(invocation) = Invocation::parse(&body) else {
            figures.not_json += 1;
            continue;
        };
        for (function, allowed) in [
            ("KeyEvent", plannable(&state, &invocation)),
            ("RotateServer", rotatable(&state, &invocation)),
        ] {
            let before = tokens.0.load(Ordering::SeqCst);
            let reply = match function {
                "KeyEvent" => plan::handle_event(&state, &invocation).await,
                _ => rotate::handle_message(&state, &invocation).await,
            };
            let called = tokens.0.load(Ordering::SeqCst) > before;
            let input = String::from_utf8_lossy(&body);
            assert!(
                allowed || !called,
                "case {case} (FUZZ_SEED={seed}): {function} called Azure for {input}"
            );
            assert!(
                !reply.logs().is_empty() && reply.logs().iter().all(|l| !l.trim().is_empty()),
                "case {case}: {function} gave no reason for {input}"
            );
            if called {
                figures.azure_attempts += 1;
            } else {
                assert_eq!(
                    reply.status(),
                    200,
                    "case {case}: {function} asked for a redelivery of {input} that can never succeed"
                );
                figures.refused += 1;
            }
        }
        // The parsers on their own, on the raw text too.
        let text = String::from_utf8_lossy(&body);
        let _ = KeyId::parse(&text);
        if let Ok(value) = serde_json::from_slice::<Value>(&body) {
            let _ = parse_event(&value);
        }
    }

    let summary = format!(
        "hostile input: FUZZ_SEED={seed}, {} generated invocations in {:.1} s\n\
         not JSON {}  refused with a logged reason, no Azure call {}  valid, Azure tried {}  panics 0\n",
        figures.cases,
        started.elapsed().as_secs_f64(),
        figures.not_json,
        figures.refused,
        figures.azure_attempts,
    );
    report("fuzz", &summary);
    assert!(
        figures.refused > figures.cases / 2,
        "the generator mostly makes bad input"
    );
    assert!(
        figures.azure_attempts > 0,
        "the generator also makes valid input"
    );
}

#[tokio::test]
async fn a_declared_length_over_the_limit_is_refused_before_any_body_arrives() {
    let w = World::start_with(&[("CMK_MAX_BODY_BYTES", "65536")]).await;
    let port = w.host.handler_port();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let head = format!(
        "POST /{EVENT_FN} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 104857600\r\n\r\n{{\"Data\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();

    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => answer.extend_from_slice(&buf[..n]),
            other => panic!("no answer while the body was held back: {other:?}"),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: application/json")
    );
    // The log line reaches the host's reader just after the answer.
    let needle = "declared length 104857600 is over CMK_MAX_BODY_BYTES (65536)";
    let deadline = Instant::now() + Duration::from_secs(5);
    while !w.logged(needle) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(w.logged(needle));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_before_it_is_read_whole() {
    let w = World::start_with(&[("CMK_MAX_BODY_BYTES", "65536")]).await;
    let port = w.host.handler_port();

    for declared in [None, Some(1u64 << 30)] {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let length = match declared {
            Some(n) => format!("Content-Length: {n}\r\n"),
            None => "Transfer-Encoding: chunked\r\n".into(),
        };
        let head = format!(
            "POST /{EVENT_FN} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{length}\r\n"
        );
        writer.write_all(head.as_bytes()).await.unwrap();

        // Read the answer while the body is still being sent.
        let answer = tokio::spawn(async move {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(20), reader.read(&mut buf)).await
            {
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            got
        });
        let chunk = vec![b' '; 64 * 1024];
        let mut sent: u64 = 0;
        let started = Instant::now();
        // Up to 1 GiB, stopping as soon as the handler has answered.
        while sent < 1 << 30 && !answer.is_finished() {
            let framed = match declared {
                Some(_) => writer.write_all(&chunk).await,
                None => {
                    let size = format!("{:x}\r\n", chunk.len());
                    let mut out = size.into_bytes();
                    out.extend_from_slice(&chunk);
                    out.extend_from_slice(b"\r\n");
                    writer.write_all(&out).await
                }
            };
            if framed.is_err() {
                break;
            }
            sent += chunk.len() as u64;
        }
        let answer = String::from_utf8_lossy(&answer.await.unwrap()).to_string();
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{declared:?}: answered {answer:?} after {sent} bytes"
        );
        assert!(
            sent < 64 << 20,
            "{declared:?}: answered only after {sent} bytes of a 1 GiB body"
        );
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    // Still serving.
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/"))
        .await
        .unwrap();
    assert!(ready.status().is_success());
    assert_eq!(w.azure.connections(), 0, "nothing reached Azure");
}

#[tokio::test]
async fn events_that_steer_elsewhere_open_no_connection() {
    let w = World::start().await;
    w.add_version(&v(1));
    w.add_server("contoso-pg-01", &key_uri(&v(1)));
    let tricks = [
        "https://contoso-kv.vault.evil.example/keys/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net.evil.example/keys/pg-cmk/22222222222222222222222222222222",
        "https://evil.example/contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net@evil.example/keys/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net:444/keys/pg-cmk/22222222222222222222222222222222",
        "https://127.0.0.1/keys/pg-cmk/22222222222222222222222222222222",
        "https://[::1]/keys/pg-cmk/22222222222222222222222222222222",
        "https://ｃontoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://a--b.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://ab.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://1kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://kv-.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://abcdefghijklmnopqrstuvwxy.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://x.contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net/keys/../secrets/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net/keys/pg-cmk/../../x",
        "https://contoso-kv.vault.azure.net/keys/pg%2Fcmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222?x=1",
        "https://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222#frag",
        "https://contoso-kv.vault.azure.net\\keys\\pg-cmk",
        "https://contoso-kv.vault.azure.net/keys/pg cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net/keys/pg-cmk\r\nHost: evil.example",
        "https://contoso-kv.vault.azure.net/certificates/pg-cmk/22222222222222222222222222222222",
        "https://contoso-kv.vault.azure.net/keys/pg-cmk/2222",
        "http://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
        "//contoso-kv.vault.azure.net/keys/pg-cmk",
        "https:///keys/pg-cmk",
    ];
    for (n, trick) in tricks.iter().enumerate() {
        let mut event = key_event("KeyNewVersionCreated", &format!("t-{n}"), &v(2));
        event["data"]["Id"] = json!(trick);
        let (status, _) = w.deliver(&json!([event])).await;
        assert_eq!(status, 202, "{trick}: acknowledged, never retried");
        assert!(w.logged(&format!("refused event t-{n}")), "{trick}");
    }
    // Queue messages that try the same through the other function.
    let messages = [
        json!({"serverId": server("pg").id(), "keyId": tricks[0]}),
        json!({"serverId": "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
               "keyId": format!("https://{VAULT}/keys/{KEY}")}),
        json!({"serverId": format!("https://evil.example{}", server("pg").id()), "keyId": format!("https://{VAULT}/keys/{KEY}")}),
        json!({"serverId": format!("{}/../../x", server("pg").id()), "keyId": format!("https://{VAULT}/keys/{KEY}")}),
    ];
    for message in &messages {
        w.host.enqueue_encoded(QUEUE, &message.to_string());
    }
    let stats = w.drain().await;
    assert_eq!(
        stats.succeeded,
        messages.len(),
        "acknowledged, never retried"
    );
    assert_eq!(
        w.azure.connections(),
        0,
        "no connection reached the stand-in, which every name the handler resolves points at"
    );
}
