//! One PostgreSQL flexible server: its ARM body, the state checks a PATCH
//! meets, and how a finished update changes it, including the silent no-op
//! of an incomplete `dataEncryption` block.

use serde_json::{Map, Value, json};

use super::http::Reply;
use super::spec::{ServerBehaviour, ServerSpec};
use super::vault::{KeyProblem, KeyStore};

/// Read-only `dataEncryption` fields that the fake computes.
const STATUS_FIELDS: [&str; 2] = ["primaryEncryptionKeyStatus", "geoBackupEncryptionKeyStatus"];

/// States in which the server is busy with another operation.
const BUSY_STATES: [&str; 6] = [
    "Updating",
    "Starting",
    "Stopping",
    "Restarting",
    "Provisioning",
    "Dropping",
];

/// A flexible server held by the fake.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    /// The live description; PATCHes and state changes edit it.
    pub spec: ServerSpec,
    /// How its next update operations behave.
    pub behaviour: ServerBehaviour,
    /// The id of the update operation in flight, if any.
    pub op: Option<String>,
}

/// An ARM error code and message.
pub(crate) type ArmError = (String, String);

impl Server {
    /// A server from a test's description; given key status fields are
    /// dropped because the fake computes them.
    pub fn new(mut spec: ServerSpec) -> Server {
        if let Some(fields) = spec.data_encryption.as_object_mut() {
            fields.retain(|name, _| !STATUS_FIELDS.contains(&name.as_str()));
        }
        Server {
            spec,
            behaviour: ServerBehaviour::default(),
            op: None,
        }
    }

    /// The body of `GET .../flexibleServers/{name}`.
    pub fn body(&self, keys: &KeyStore) -> Value {
        let spec = &self.spec;
        let geo = if spec.geo_redundant_backup {
            "Enabled"
        } else {
            "Disabled"
        };
        let mut body = json!({
            "id": spec.id(),
            "name": spec.name,
            "type": "Microsoft.DBforPostgreSQL/flexibleServers",
            "location": spec.location,
            "tags": spec.tags,
            "sku": { "name": "Standard_D2ds_v5", "tier": "GeneralPurpose" },
            "properties": {
                "state": spec.state,
                "version": "16",
                "fullyQualifiedDomainName": format!("{}.postgres.database.azure.com", spec.name),
                "backup": { "backupRetentionDays": 7, "geoRedundantBackup": geo },
                "dataEncryption": self.data_encryption(keys),
            },
        });
        if !spec.identity.is_null() {
            body["identity"] = spec.identity.clone();
        }
        body
    }

    /// The error a PATCH gets in the server's current state, if any.
    pub fn patch_refusal(&self) -> Option<Reply> {
        let (name, state) = (&self.spec.name, self.spec.state.as_str());
        if state.eq_ignore_ascii_case("Stopped") {
            let message =
                format!("Server '{name}' is stopped. Start the server before updating it.");
            return Some(Reply::error(400, "ServerStoppedError", &message));
        }
        if self.op.is_some() || BUSY_STATES.iter().any(|s| s.eq_ignore_ascii_case(state)) {
            let message =
                format!("Server '{name}' is busy with another operation. Please try again later.");
            return Some(Reply::error(409, "ServerBusy", &message));
        }
        if state.eq_ignore_ascii_case("Inaccessible") || state.eq_ignore_ascii_case("Disabled") {
            let message = format!("Server '{name}' is in state {state} and cannot be updated.");
            return Some(Reply::error(400, "ServerInaccessible", &message));
        }
        None
    }

    /// Applies a PATCH body once its operation has succeeded. A key that
    /// PostgreSQL would refuse fails the operation; an incomplete
    /// `dataEncryption` block is accepted and ignored (silent no-op).
    pub fn apply_patch(&mut self, body: &Value, keys: &KeyStore) -> Result<(), ArmError> {
        let requested = body.pointer("/properties/dataEncryption");
        if let Some(requested) = requested {
            check_keys(requested, keys)?;
            if !self.is_complete(requested) {
                return Ok(());
            }
            merge_fields(&mut self.spec.data_encryption, requested);
        }
        if let Some(identity) = body.get("identity").filter(|i| i.is_object()) {
            merge_identity(&mut self.spec.identity, identity);
        }
        if let Some(tags) = body.get("tags").and_then(Value::as_object) {
            self.spec.tags = tags.clone();
        }
        Ok(())
    }

    /// Whether the server has geo-backup encryption fields.
    fn has_geo(&self) -> bool {
        let stored = &self.spec.data_encryption;
        ["geoBackupKeyURI", "geoBackupUserAssignedIdentityId"]
            .iter()
            .any(|f| is_set(stored.get(*f)))
    }

    /// Whether a requested `dataEncryption` block carries everything the
    /// service needs to act on it (fc-09).
    fn is_complete(&self, requested: &Value) -> bool {
        let has = |field: &str| is_set(requested.get(field));
        let primary = has("type") && has("primaryUserAssignedIdentityId");
        let geo =
            !self.has_geo() || (has("geoBackupKeyURI") && has("geoBackupUserAssignedIdentityId"));
        primary && geo
    }

    /// Stored `dataEncryption` plus the key status fields.
    fn data_encryption(&self, keys: &KeyStore) -> Value {
        let mut fields = self.spec.data_encryption.clone();
        let cmk = fields["type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("AzureKeyVault"));
        if !cmk {
            return fields;
        }
        let status = |uri: Option<&Value>| {
            let usable = uri
                .and_then(Value::as_str)
                .is_some_and(|u| keys.check_usable(u).is_ok());
            json!(if usable { "Valid" } else { "Invalid" })
        };
        fields["primaryEncryptionKeyStatus"] = status(fields.get("primaryKeyURI"));
        if is_set(fields.get("geoBackupKeyURI")) {
            fields["geoBackupEncryptionKeyStatus"] = status(fields.get("geoBackupKeyURI"));
        }
        fields
    }
}

/// Fails when a key URI in the request names a key PostgreSQL would refuse.
fn check_keys(requested: &Value, keys: &KeyStore) -> Result<(), ArmError> {
    for field in ["primaryKeyURI", "geoBackupKeyURI"] {
        let Some(uri) = requested
            .get(field)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
        else {
            continue;
        };
        match keys.check_usable(uri) {
            Ok(()) => {}
            Err(KeyProblem::NotFound(message)) => {
                return Err(("AzureKeyVaultKeyNotFound".into(), message));
            }
            Err(KeyProblem::Invalid(message)) => {
                return Err(("KeyVaultKeyInvalid".into(), message));
            }
        }
    }
    Ok(())
}

/// Copies requested fields over stored ones; `null` removes a field.
fn merge_fields(stored: &mut Value, requested: &Value) {
    let Some(requested) = requested.as_object() else {
        return;
    };
    if !stored.is_object() {
        *stored = Value::Object(Map::new());
    }
    let Some(stored) = stored.as_object_mut() else {
        return;
    };
    for (name, value) in requested
        .iter()
        .filter(|(n, _)| !STATUS_FIELDS.contains(&n.as_str()))
    {
        match value {
            Value::Null => {
                stored.remove(name);
            }
            _ => {
                stored.insert(name.clone(), value.clone());
            }
        }
    }
}

/// Merges a requested `identity`: `type` replaces, user-assigned identities
/// are added (`null` removes one), known ones keep their ids.
fn merge_identity(stored: &mut Value, requested: &Value) {
    if !stored.is_object() {
        *stored = json!({ "type": "UserAssigned", "userAssignedIdentities": {} });
    }
    if let Some(kind) = requested.get("type") {
        stored["type"] = kind.clone();
    }
    let Some(wanted) = requested
        .get("userAssignedIdentities")
        .and_then(Value::as_object)
    else {
        return;
    };
    if !stored["userAssignedIdentities"].is_object() {
        stored["userAssignedIdentities"] = json!({});
    }
    let Some(current) = stored["userAssignedIdentities"].as_object_mut() else {
        return;
    };
    for (id, value) in wanted {
        let known = current.keys().find(|k| k.eq_ignore_ascii_case(id)).cloned();
        match (value.is_null(), known) {
            (true, Some(known)) => {
                current.remove(&known);
            }
            (false, None) => {
                current.insert(id.clone(), new_identity_details());
            }
            _ => {}
        }
    }
}

/// The ids ARM reports for a user-assigned identity (fixed in the fake).
pub(crate) fn new_identity_details() -> Value {
    json!({
        "principalId": "11111111-2222-3333-4444-555555555555",
        "clientId": "66666666-7777-8888-9999-000000000000",
    })
}

fn is_set(value: Option<&Value>) -> bool {
    value.is_some_and(|v| !v.is_null() && v.as_str() != Some(""))
}
