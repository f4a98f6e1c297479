//! Resource Manager: server GET and PATCH, and the update operation.

use std::time::Duration;

use serde_json::json;

use super::{
    VAULT, arm_get, arm_get_path, arm_patch, cmk_server, full_patch, poll_to_end, send, start,
};
use crate::azure::{FakeAzure, KeyVersionSpec, OpOutcome, ServerBehaviour, VAULT_TOKEN};

#[tokio::test]
async fn patch_runs_an_operation_that_moves_the_server_to_the_new_key() {
    let (fake, client) = start().await;
    fake.set_retry_after(3);
    let (spec, _) = cmk_server(&fake, "contoso-pg-01");
    let id = spec.id();
    let new_version = fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let new_uri = FakeAzure::key_uri(VAULT, "pg-cmk", &new_version);

    let patch = arm_patch(
        &fake,
        &client,
        &id.to_uppercase(),
        &full_patch(&fake, &id, &new_uri),
    )
    .await;
    assert_eq!(patch.status, 202, "{}", patch.body);
    assert_eq!(patch.header("retry-after").as_deref(), Some("3"));
    assert!(patch.header("x-ms-request-id").is_some());
    let location = patch.header("location").expect("Location");
    assert!(location.contains("/locations/westeurope/operationResults/"));
    let op_url = patch
        .header("azure-asyncoperation")
        .expect("Azure-AsyncOperation");
    assert!(op_url.starts_with(&format!("{}/subscriptions/", fake.base_url())));
    assert!(op_url.ends_with("?api-version=2025-06-01-preview"));
    assert_eq!(
        fake.server(&id).expect("server")["properties"]["state"],
        "Updating"
    );

    let statuses = poll_to_end(&client, &op_url).await;
    assert_eq!(statuses.len(), 2);
    assert_eq!(statuses[0]["status"], "InProgress");
    assert_eq!(statuses[1]["status"], "Succeeded");

    let server = arm_get_path(&fake, &client, &id).await;
    assert_eq!(server.status, 200);
    let encryption = &server.body["properties"]["dataEncryption"];
    assert_eq!(encryption["primaryKeyURI"], new_uri);
    assert_eq!(encryption["primaryEncryptionKeyStatus"], "Valid");
    assert_eq!(server.body["properties"]["state"], "Ready");
    assert_eq!(fake.patches().len(), 1);
    assert_eq!(fake.patches()[0].status, 202);
}

#[tokio::test]
async fn incomplete_data_encryption_succeeds_but_changes_nothing() {
    let (fake, client) = start().await;
    let (spec, old_version) = cmk_server(&fake, "contoso-pg-01");
    let id = spec.id();
    let new_version = fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let body = json!({ "properties": { "dataEncryption": {
        "primaryKeyURI": FakeAzure::key_uri(VAULT, "pg-cmk", &new_version) } } });

    let patch = arm_patch(&fake, &client, &id, &body).await;
    let op_url = patch.header("azure-asyncoperation").expect("op url");
    let statuses = poll_to_end(&client, &op_url).await;

    assert_eq!(statuses.last().expect("status")["status"], "Succeeded");
    let server = fake.server(&id).expect("server");
    let old_uri = FakeAzure::key_uri(VAULT, "pg-cmk", &old_version);
    assert_eq!(
        server["properties"]["dataEncryption"]["primaryKeyURI"],
        old_uri
    );
}

#[tokio::test]
async fn a_second_patch_while_updating_is_busy_and_a_stopped_server_refuses() {
    let (fake, client) = start().await;
    let (spec, version) = cmk_server(&fake, "contoso-pg-01");
    let body = full_patch(
        &fake,
        &spec.id(),
        &FakeAzure::key_uri(VAULT, "pg-cmk", &version),
    );

    let first = arm_patch(&fake, &client, &spec.id(), &body).await;
    let second = arm_patch(&fake, &client, &spec.id(), &body).await;
    fake.set_server_state(&spec.id(), "Stopped");
    let (stopped, _) = cmk_server(&fake, "contoso-pg-02");
    fake.set_server_state(&stopped.id(), "Stopped");
    let third = arm_patch(&fake, &client, &stopped.id(), &body).await;

    assert_eq!(first.status, 202);
    assert_eq!(second.status, 409);
    assert_eq!(second.body["error"]["code"], "ServerBusy");
    assert_eq!(
        second.body["error"]["message"],
        "Server 'contoso-pg-01' is busy with another operation. Please try again later."
    );
    assert_eq!(third.status, 400);
    assert_eq!(third.body["error"]["code"], "ServerStoppedError");
}

#[tokio::test]
async fn unusable_keys_fail_the_operation() {
    let (fake, client) = start().await;
    let (spec, current) = cmk_server(&fake, "contoso-pg-01");
    let disabled = KeyVersionSpec {
        enabled: false,
        ..Default::default()
    };
    let disabled = fake.add_key_version(VAULT, "pg-cmk", disabled);

    let cases = [
        (disabled.clone(), "KeyVaultKeyInvalid"),
        ("f".repeat(32), "AzureKeyVaultKeyNotFound"),
    ];
    for (version, code) in cases {
        let body = full_patch(
            &fake,
            &spec.id(),
            &FakeAzure::key_uri(VAULT, "pg-cmk", &version),
        );
        let patch = arm_patch(&fake, &client, &spec.id(), &body).await;
        let op_url = patch.header("azure-asyncoperation").expect("op url");
        let end = poll_to_end(&client, &op_url).await.pop().expect("status");
        assert_eq!(end["status"], "Failed");
        assert_eq!(end["error"]["code"], code);
    }
    let server = fake.server(&spec.id()).expect("server");
    assert_eq!(server["properties"]["state"], "Ready");
    assert_eq!(
        server["properties"]["dataEncryption"]["primaryEncryptionKeyStatus"],
        "Valid"
    );

    fake.update_key_version(VAULT, "pg-cmk", &current, |key| key.exp = Some(1));
    let server = fake.server(&spec.id()).expect("server");
    assert_eq!(
        server["properties"]["dataEncryption"]["primaryEncryptionKeyStatus"],
        "Invalid"
    );
}

#[tokio::test]
async fn operation_results_answer_202_then_the_server_and_honour_duration() {
    let (fake, client) = start().await;
    let (spec, version) = cmk_server(&fake, "contoso-pg-01");
    let behaviour = ServerBehaviour {
        op_polls: 0,
        op_duration: Duration::from_millis(500),
        ..Default::default()
    };
    fake.set_server_behaviour(&spec.id(), behaviour);
    let body = full_patch(
        &fake,
        &spec.id(),
        &FakeAzure::key_uri(VAULT, "pg-cmk", &version),
    );

    let patch = arm_patch(&fake, &client, &spec.id(), &body).await;
    let location = patch.header("location").expect("Location");
    let running = arm_get(&client, &location).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let done = arm_get(&client, &location).await;

    assert_eq!(running.status, 202);
    assert!(running.header("location").is_some() && running.header("retry-after").is_some());
    assert_eq!(done.status, 200);
    assert_eq!(done.body["id"], spec.id());
}

#[tokio::test]
async fn a_failing_behaviour_reports_its_error() {
    let (fake, client) = start().await;
    let (spec, version) = cmk_server(&fake, "contoso-pg-01");
    let outcome = OpOutcome::Failed {
        code: "ServerBusy".into(),
        message: "busy".into(),
    };
    fake.set_server_behaviour(
        &spec.id(),
        ServerBehaviour {
            outcome,
            ..Default::default()
        },
    );
    let body = full_patch(
        &fake,
        &spec.id(),
        &FakeAzure::key_uri(VAULT, "pg-cmk", &version),
    );

    let patch = arm_patch(&fake, &client, &spec.id(), &body).await;
    let op_url = patch.header("azure-asyncoperation").expect("op url");
    let end = poll_to_end(&client, &op_url).await.pop().expect("status");

    assert_eq!(end["status"], "Failed");
    assert_eq!(end["error"]["code"], "ServerBusy");
    assert!(end["endTime"].is_string());
}

#[tokio::test]
async fn refuses_missing_tokens_and_api_versions_and_unknown_servers() {
    let (fake, client) = start().await;
    let (spec, _) = cmk_server(&fake, "contoso-pg-01");
    let url = format!("{}{}", fake.base_url(), spec.id());

    let anonymous = send(client.get(format!("{url}?api-version=2025-08-01"))).await;
    let vault_token = send(
        client
            .get(format!("{url}?api-version=2025-08-01"))
            .bearer_auth(VAULT_TOKEN),
    )
    .await;
    let no_version = arm_get(&client, &url).await;
    let unknown = arm_get_path(&fake, &client, &spec.id().replace("contoso-pg-01", "nope")).await;

    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.body["error"]["code"], "AuthenticationFailed");
    assert_eq!(vault_token.status, 401);
    assert_eq!(no_version.status, 400);
    assert_eq!(
        no_version.body["error"]["code"],
        "MissingApiVersionParameter"
    );
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"]["code"], "ResourceNotFound");
    assert!(unknown.header("x-ms-request-id").is_some());
}

#[tokio::test]
async fn geo_servers_ignore_patches_without_the_geo_fields() {
    let (fake, client) = start().await;
    let version = fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default());
    let geo = fake.add_key_version(super::GEO_VAULT, "pg-cmk-geo", KeyVersionSpec::default());
    let spec = crate::azure::ServerSpec::default()
        .with_primary_key(&FakeAzure::key_uri(VAULT, "pg-cmk", &version))
        .with_geo_key(&FakeAzure::key_uri(super::GEO_VAULT, "pg-cmk-geo", &geo));
    fake.add_server(spec.clone());
    let new_uri = FakeAzure::key_uri(
        VAULT,
        "pg-cmk",
        &fake.add_key_version(VAULT, "pg-cmk", KeyVersionSpec::default()),
    );
    let mut partial = full_patch(&fake, &spec.id(), &new_uri);
    let fields = partial["properties"]["dataEncryption"]
        .as_object_mut()
        .expect("object");
    fields.remove("geoBackupKeyURI");

    let patch = arm_patch(&fake, &client, &spec.id(), &partial).await;
    poll_to_end(
        &client,
        &patch.header("azure-asyncoperation").expect("op url"),
    )
    .await;
    let unchanged = fake.server(&spec.id()).expect("server");
    let patch = arm_patch(
        &fake,
        &client,
        &spec.id(),
        &full_patch(&fake, &spec.id(), &new_uri),
    )
    .await;
    poll_to_end(
        &client,
        &patch.header("azure-asyncoperation").expect("op url"),
    )
    .await;
    let changed = fake.server(&spec.id()).expect("server");

    let encryption = |server: &serde_json::Value| server["properties"]["dataEncryption"].clone();
    assert_ne!(encryption(&unchanged)["primaryKeyURI"], new_uri);
    assert_eq!(encryption(&changed)["primaryKeyURI"], new_uri);
    assert_eq!(
        encryption(&changed)["geoBackupEncryptionKeyStatus"],
        "Valid"
    );
    assert_eq!(
        changed["properties"]["backup"]["geoRedundantBackup"],
        "Enabled"
    );
}
