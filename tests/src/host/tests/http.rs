//! httpTrigger without forwarding: routes, methods, keys, the request
//! object sent to the handler and the `http` output turned into a response.

use serde_json::{Value, json};

use super::{app, options, seen};
use crate::host::{FunctionsHost, Invocation};

fn http_app() -> super::TempApp {
    let status = json!([
        {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "function",
         "methods": ["get", "post"], "route": "health/check"},
        {"type": "http", "direction": "out", "name": "res"},
        {"type": "queue", "direction": "out", "name": "audit", "queueName": "audit-log"}
    ]);
    let open = json!([
        {"type": "httpTrigger", "direction": "in", "name": "request", "authLevel": "anonymous",
         "methods": ["get"]},
        {"type": "http", "direction": "out", "name": "$return"}
    ]);
    let admin = json!([
        {"type": "httpTrigger", "direction": "in", "name": "req", "authLevel": "admin",
         "route": "servers/{name}"},
        {"type": "http", "direction": "out", "name": "res"}
    ]);
    app(
        json!({"messageEncoding": "none"}),
        &[("Status", status), ("Open", open), ("Admin", admin)],
    )
}

fn last(host: &FunctionsHost) -> Invocation {
    host.invocations().pop().expect("an invocation")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_builds_the_request_object_without_body_and_converts_res() {
    let app = http_app();
    let instruction = json!({"outputs": {
        "res": {"statusCode": "201", "body": {"ok": true, "n": 2}, "headers": {"X-Custom": "yes"}},
        "audit": [{"seen": "status"}]
    }});
    let host = FunctionsHost::start(options(
        &app,
        &[("FAKE_FN_Status", &instruction.to_string())],
    ))
    .await
    .unwrap();
    let (status, headers, body) = host
        .http_get("/api/health/check?a=1&b=x%20y&a=2")
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"ok": true, "n": 2})
    );
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(header(&headers, "x-custom"), Some("yes"));

    let inv = last(&host);
    assert_eq!(inv.function, "Status");
    let request = &seen(&inv)["request"];
    let req = &request["Data"]["req"];
    let url = format!("{}/api/health/check?a=1&b=x%20y&a=2", host.webhook_base());
    assert_eq!(req["Url"], json!(url));
    assert_eq!(req["Method"], json!("GET"));
    assert_eq!(req["Query"], json!({"a": "1,2", "b": "x y"}));
    assert_eq!(
        req["Headers"]["x-functions-key"],
        json!([host.function_key()])
    );
    assert!(req["Headers"]["host"].is_array());
    assert_eq!(req["Params"], json!({}));
    assert_eq!(req["Identities"], json!([]));
    assert!(req.get("Body").is_none(), "no Body without content: {req}");
    assert_eq!(request["Metadata"]["Query"], req["Query"]);
    assert_eq!(request["Metadata"]["Headers"], req["Headers"]);
    assert_eq!(request["Metadata"]["sys"]["MethodName"], json!("Status"));
    assert_eq!(
        request["Metadata"].as_object().unwrap().len(),
        3,
        "{request}"
    );

    let audit = host.queue_messages("audit-log");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].text, "{\n  \"seen\": \"status\"\n}");

    // The short form prepends /api/; the route matches in any letter case.
    let (status, _, _) = host.http_get("HEALTH/Check").await.unwrap();
    assert_eq!(status, 201);
    let (status, _, _) = host.http_get("/API/health/CHECK").await.unwrap();
    assert_eq!(status, 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_body_code_key_and_content_type_header() {
    let app = http_app();
    let host = super::start(&app).await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/api/health/check?code={}",
        host.webhook_base(),
        host.function_key()
    );
    let fake =
        json!({"outputs": {"res": {"body": "a,b\n1,2", "headers": {"Content-Type": "text/csv"}}}});
    let text = json!({"fake": fake}).to_string();
    let resp = client
        .post(&url)
        .header("content-type", "application/json")
        .body(text.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "missing statusCode means 200");
    assert_eq!(resp.headers()["content-type"], "text/csv");
    assert_eq!(resp.text().await.unwrap(), "a,b\n1,2");
    let req = seen(&last(&host))["request"]["Data"]["req"].clone();
    assert_eq!(req["Method"], json!("POST"));
    assert_eq!(req["Body"], json!(text));
    assert_eq!(req["Query"]["code"], json!(host.function_key()));
    assert_eq!(req["Headers"]["content-type"], json!(["application/json"]));

    // An empty body (no or zero Content-Length) → no Body.
    let resp = client.post(&url).body("").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let req = seen(&last(&host))["request"]["Data"]["req"].clone();
    let length = &req["Headers"]["content-length"];
    assert!(length.is_null() || *length == json!(["0"]), "{req}");
    assert!(req.get("Body").is_none(), "{req}");

    // Octet-stream bodies arrive base64.
    client
        .post(&url)
        .header("content-type", "application/octet-stream")
        .body(vec![0u8, 1, 2, 255])
        .send()
        .await
        .unwrap();
    let req = seen(&last(&host))["request"]["Data"]["req"].clone();
    assert_eq!(req["Body"], json!("AAEC/w=="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_methods_and_routes_are_enforced() {
    let app = http_app();
    let host = super::start(&app).await;
    let client = reqwest::Client::new();
    let base = host.webhook_base();
    let get = |path: String| client.get(format!("{base}{path}"));

    let no_key = get("/api/health/check".into()).send().await.unwrap();
    assert_eq!(no_key.status().as_u16(), 401);
    let wrong = get("/api/health/check?code=nope".into())
        .header("x-functions-key", "also-wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    let admin = get("/api/servers/pg1".into()).send().await.unwrap();
    assert_eq!(admin.status().as_u16(), 401, "admin needs the key too");
    let by_header = get("/api/health/check".into())
        .header("x-functions-key", host.function_key())
        .send()
        .await
        .unwrap();
    assert_eq!(by_header.status().as_u16(), 200);

    let delete = client
        .delete(format!(
            "{base}/api/health/check?code={}",
            host.function_key()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status().as_u16(), 405);
    let post_open = client
        .post(format!("{base}/api/open"))
        .send()
        .await
        .unwrap();
    assert_eq!(post_open.status().as_u16(), 405);

    let anonymous = get("/api/Open".into()).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 200, "anonymous needs no key");
    let inv = last(&host);
    assert_eq!(inv.function, "Open");
    assert!(seen(&inv)["request"]["Data"]["request"].is_object());

    let (status, _, _) = host.http_get("/api/servers/pg-7?x=1").await.unwrap();
    assert_eq!(status, 200, "admin with the key");
    let req = seen(&last(&host))["request"]["Data"]["req"].clone();
    assert_eq!(req["Params"], json!({"name": "pg-7"}));

    for path in ["/api/unknown", "/api", "/apiX/open", "/other"] {
        let resp = get(path.into())
            .header("x-functions-key", host.function_key())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 404, "{path}");
    }
    let calls = host.invocations().len();
    assert_eq!(calls, 3, "rejected requests never reach the handler");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_failures_become_500_and_return_value_feeds_dollar_return() {
    let app = http_app();
    let host = super::start(&app).await;
    let query = |fake: Value| {
        let text = fake.to_string();
        let encoded: String = text
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        format!("health/check?fake={encoded}")
    };
    for mode in ["fail", "text", "empty"] {
        let (status, _, body) = host.http_get(&query(json!({"mode": mode}))).await.unwrap();
        assert_eq!((status, body.as_str()), (500, ""), "{mode}");
    }
    let (status, _, body) = host
        .http_get(&query(
            json!({"outputs": {"res": {"statusCode": 404, "body": "none"}}}),
        ))
        .await
        .unwrap();
    assert_eq!(
        (status, body.as_str()),
        (404, "none"),
        "4xx via res.statusCode"
    );
    let (status, _, _) = host
        .http_get(&query(json!({"outputs": {"res": {"statusCode": "abc"}}})))
        .await
        .unwrap();
    assert_eq!(status, 500, "an unusable statusCode");

    // `Open` binds `$return`: the ReturnValue is the response object.
    let ret = json!({"return": {"statusCode": 202, "body": ["queued"]}});
    let (status, headers, body) = host
        .http_get(&query(ret).replace("health/check", "open"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (202, "[\"queued\"]"));
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/json; charset=utf-8")
    );
    // No http output value at all: an empty 200.
    let (status, headers, body) = host
        .http_get(&query(json!({"return": null})).replace("health/check", "open"))
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, ""));
    assert_eq!(header(&headers, "content-type"), None);
}
