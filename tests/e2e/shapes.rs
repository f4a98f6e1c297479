//! The handler's readers over payloads in the shapes Azure publishes: our
//! fixtures always, and the public samples in ../shared/fixtures/azure when
//! this checkout sits beside them.

use std::path::PathBuf;

use handler::{
    key_id::KeyId,
    keyvault::KeyBundle,
    policy::{FlexibleServer, Slot},
    protocol::Invocation,
    rotate::RotationMessage,
};
use serde_json::Value;

use crate::support::{fixture, repo_root};

fn shared(path: &str) -> Option<Value> {
    let file: PathBuf = repo_root().join("../shared/fixtures/azure").join(path);
    let text = std::fs::read_to_string(file).ok()?;
    serde_json::from_str(&text).ok()
}

#[test]
fn server_bodies_give_their_key_references_and_status() {
    let server = FlexibleServer::from_arm(&fixture("arm/flexible-server-cmk.json")).unwrap();
    let primary = server.key(Slot::Primary).unwrap();
    assert_eq!(primary.vault, "contoso-kv.vault.azure.net");
    assert_eq!(server.key(Slot::GeoBackup).unwrap().name, "pg-cmk-geo");
    assert_eq!(server.key_status(Slot::Primary).as_deref(), Some("Valid"));
    assert_eq!(server.state, "Ready");

    if let Some(sample) =
        shared("arm/postgresql/2024-08-01.ServerUpdateWithDataEncryptionEnabled.json")
    {
        let body = &sample["responses"]["200"]["body"];
        let server = FlexibleServer::from_arm(body).unwrap();
        assert_eq!(server.key_status(Slot::Primary).as_deref(), Some("Valid"));
        // The sample's version is the placeholder "xxxx…", not 32 hex digits:
        // a URI the handler cannot trust names no key it would act on.
        let key =
            KeyId::parse("https://exampleprimarykeyvault.vault.azure.net/keys/examplekey").unwrap();
        assert!(server.slots_using(&key).is_empty());
        let uri = body["properties"]["dataEncryption"]["primaryKeyURI"]
            .as_str()
            .unwrap();
        assert!(matches!(
            KeyId::parse(uri),
            Err(handler::key_id::KeyIdError::Version(_))
        ));
    }
    if let Some(sample) = shared("arm/postgresql/2025-08-01.ServersGet.json") {
        let server = FlexibleServer::from_arm(&sample["responses"]["200"]["body"]).unwrap();
        let any = KeyId::parse("https://examplekeyvault.vault.azure.net/keys/examplekey").unwrap();
        assert!(
            server.slots_using(&any).is_empty(),
            "system-managed encryption names no key"
        );
    }
}

#[test]
fn key_bundles_give_the_size_type_and_version() {
    let bundle: KeyBundle =
        serde_json::from_value(fixture("keyvault/key-rsa-hsm-2048.json")).unwrap();
    assert_eq!(bundle.rsa_bits(), Some(2048));
    assert_eq!(
        bundle.key_id().unwrap().version.as_deref(),
        Some("22222222222222222222222222222222")
    );
    assert_eq!(handler::policy::check_key(&bundle, 1_800_000_000), Ok(()));

    if let Some(sample) = shared("keyvault/2025-07-01.GetKey-example.json") {
        let bundle: KeyBundle =
            serde_json::from_value(sample["responses"]["200"]["body"].clone()).unwrap();
        assert_eq!(bundle.rsa_bits(), Some(2048));
        assert_eq!(bundle.key.kty, "RSA");
        assert_eq!(bundle.attributes.enabled, Some(true));
    }
}

#[test]
fn queue_invocations_in_the_host_shape_give_the_message() {
    let body = fixture("host/queue-invocation.json").to_string();
    let invocation = Invocation::parse(body.as_bytes()).unwrap();
    let message: RotationMessage =
        serde_json::from_value(invocation.input("message").unwrap()).unwrap();
    assert_eq!(
        message.key_id,
        "https://contoso-kv.vault.azure.net/keys/pg-cmk"
    );
    assert_eq!(
        invocation.metadata_text("Id").as_deref(),
        Some("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0")
    );
    assert_eq!(
        invocation.metadata_text("DequeueCount").as_deref(),
        Some("1")
    );

    if let Some(sample) =
        shared("functions-host/custom-handler-request.queue-trigger.docs-example.json")
    {
        let invocation = Invocation::parse(sample.to_string().as_bytes()).unwrap();
        // The documented sample carries a number and a non-JSON message text.
        assert_eq!(
            invocation.metadata_text("DequeueCount").as_deref(),
            Some("1")
        );
        assert!(invocation.input("myQueueItem").is_some());
    }
}
