//! Resource Graph queries.

use serde_json::{Value, json};

use super::{Answer, GEO_VAULT, VAULT, send, start};
use crate::azure::{ARM_TOKEN, FakeAzure, KeyVersionSpec, ServerSpec};

const SUB: &str = "00000000-0000-0000-0000-000000000000";

/// The handler's query for a vault and key, with an optional tag filter.
fn key_query(vault: &str, key: &str, tag: Option<(&str, &str)>) -> String {
    let tag = tag.map_or(String::new(), |(n, v)| {
        format!("| where tags['{n}'] =~ '{v}'\n")
    });
    format!(
        "resources\n| where type =~ 'microsoft.dbforpostgresql/flexibleservers'\n{tag}\
         | where (pkVault == '{vault}' and pkName == '{key}') or (gkVault == '{vault}' and gkName == '{key}')\n\
         | project id, name, type, subscriptionId, resourceGroup, location, tags, state, pk, gk\n| order by id asc"
    )
}

async fn query(fake: &FakeAzure, client: &reqwest::Client, body: &Value) -> Answer {
    let url = format!(
        "{}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
        fake.base_url()
    );
    send(client.post(url).bearer_auth(ARM_TOKEN).json(body)).await
}

/// Adds `count` servers on `contoso-kv/pg-cmk`, every other one tagged
/// `rotate=auto`, plus one server on another key.
fn add_servers(fake: &FakeAzure, count: usize) {
    let version = fake.add_key_version(VAULT, "PG-CMK", KeyVersionSpec::default());
    let uri = FakeAzure::key_uri(VAULT, "PG-CMK", &version).replace(".net/", ".net:443/");
    for i in 0..count {
        let spec = ServerSpec {
            name: format!("pg-{i:02}"),
            ..Default::default()
        }
        .with_primary_key(&uri);
        fake.add_server(if i % 2 == 0 {
            spec.with_tag("Rotate", "AUTO")
        } else {
            spec
        });
    }
    let other = FakeAzure::key_uri(GEO_VAULT, "pg-cmk", &version);
    fake.add_server(
        ServerSpec {
            name: "pg-other".into(),
            ..Default::default()
        }
        .with_primary_key(&other),
    );
}

#[tokio::test]
async fn pages_matching_servers_in_id_order() {
    let (fake, client) = start().await;
    add_servers(&fake, 5);
    let mut body = json!({ "subscriptions": [SUB], "query": key_query(VAULT, "pg-cmk", None),
        "options": { "$top": 2, "resultFormat": "objectArray" } });

    let mut names = Vec::new();
    loop {
        let answer = query(&fake, &client, &body).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(
            answer.header("x-ms-user-quota-remaining").as_deref(),
            Some("14")
        );
        assert_eq!(answer.body["totalRecords"], 5);
        assert_eq!(answer.body["resultTruncated"], "false");
        let data = answer.body["data"].as_array().expect("data");
        names.extend(
            data.iter()
                .map(|row| row["name"].as_str().expect("name").to_owned()),
        );
        match answer.body.get("$skipToken") {
            Some(token) => body["options"]["$skipToken"] = token.clone(),
            None => break,
        }
    }

    assert_eq!(names, ["pg-00", "pg-01", "pg-02", "pg-03", "pg-04"]);
}

#[tokio::test]
async fn rows_carry_lower_cased_key_uris_and_the_arm_state() {
    let (fake, client) = start().await;
    add_servers(&fake, 1);
    let body = json!({ "subscriptions": [SUB], "query": key_query(VAULT, "pg-cmk", None) });

    let answer = query(&fake, &client, &body).await;

    let row = &answer.body["data"][0];
    assert_eq!(row["type"], "microsoft.dbforpostgresql/flexibleservers");
    assert_eq!(row["state"], "Ready");
    assert!(
        row["pk"]
            .as_str()
            .expect("pk")
            .starts_with("https://contoso-kv.vault.azure.net:443/keys/pg-cmk/")
    );
    assert_eq!(row["gk"], "");
}

#[tokio::test]
async fn filters_by_tag_and_subscription() {
    let (fake, client) = start().await;
    add_servers(&fake, 5);
    let tagged = json!({ "subscriptions": [SUB], "query": key_query(VAULT, "pg-cmk", Some(("rotate", "auto"))) });
    let elsewhere = json!({ "subscriptions": ["11111111-1111-1111-1111-111111111111"],
        "query": key_query(VAULT, "pg-cmk", None) });

    let tagged = query(&fake, &client, &tagged).await;
    let elsewhere = query(&fake, &client, &elsewhere).await;

    let names: Vec<&str> = tagged.body["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["pg-00", "pg-02", "pg-04"]);
    assert_eq!(elsewhere.body["count"], 0);
}

#[tokio::test]
async fn rejects_bad_requests() {
    let (fake, client) = start().await;
    let no_subscriptions =
        json!({ "subscriptions": [], "query": key_query(VAULT, "pg-cmk", None) });
    let bad_token = json!({ "subscriptions": [SUB], "query": key_query(VAULT, "pg-cmk", None),
        "options": { "$skipToken": "bm90IGEgdG9rZW4=" } });

    let no_subscriptions = query(&fake, &client, &no_subscriptions).await;
    let bad_token = query(&fake, &client, &bad_token).await;

    assert_eq!(no_subscriptions.status, 400);
    assert_eq!(bad_token.status, 400);
    assert_eq!(
        bad_token.body["error"]["details"][0]["code"],
        "InvalidSkipToken"
    );
}

#[tokio::test]
async fn a_frozen_index_lags_behind_resource_manager() {
    let (fake, client) = start().await;
    add_servers(&fake, 2);
    fake.freeze_graph();
    fake.remove_server(
        &ServerSpec {
            name: "pg-00".into(),
            ..Default::default()
        }
        .id(),
    );
    let body = json!({ "subscriptions": [SUB], "query": key_query(VAULT, "pg-cmk", None) });

    let stale = query(&fake, &client, &body).await;
    fake.unfreeze_graph();
    let fresh = query(&fake, &client, &body).await;

    assert_eq!(stale.body["count"], 2);
    assert_eq!(fresh.body["count"], 1);
}
