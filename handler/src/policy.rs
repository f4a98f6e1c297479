//! The rotation rules, with no I/O: which key versions may be set on a
//! server, which servers may be touched, what the PATCH carries, and what
//! the server must show afterwards.

use serde_json::{Map, Value, json};

use crate::{config::OptInTag, key_id::KeyId, keyvault::KeyBundle};

/// Why a key version may not be set on a server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    #[error("version is disabled")]
    Disabled,
    #[error("version is not active until {}", show_time(*.nbf))]
    NotYetValid { nbf: i64 },
    #[error("version expired at {}", show_time(*.exp))]
    Expired { exp: i64 },
    #[error("key type {0} is not RSA or RSA-HSM")]
    KeyType(String),
    #[error("RSA key of {0} bits; 2048, 3072 or 4096 are required")]
    KeySize(u32),
    #[error("key does not allow {0}")]
    Operation(&'static str),
}

/// Epoch seconds as an HTTP date (`Sat, 10 Jan 2026 10:00:00 GMT`).
pub fn show_time(epoch: i64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(0) as u64);
    httpdate::fmt_http_date(at)
}

impl Unusable {
    /// Only a version that is not active yet becomes usable by waiting.
    pub fn retry_later(&self) -> bool {
        matches!(self, Unusable::NotYetValid { .. })
    }
}

/// Checks that a key version can wrap a flexible server's data-encryption
/// key: enabled, past `nbf`, before `exp`, RSA or RSA-HSM of 2048/3072/4096
/// bits, with wrapKey and unwrapKey allowed.
pub fn check_key(bundle: &KeyBundle, now: i64) -> Result<(), Unusable> {
    let attributes = &bundle.attributes;
    if attributes.enabled != Some(true) {
        return Err(Unusable::Disabled);
    }
    if let Some(exp) = attributes.exp.filter(|exp| *exp <= now) {
        return Err(Unusable::Expired { exp });
    }
    if !matches!(bundle.key.kty.as_str(), "RSA" | "RSA-HSM") {
        return Err(Unusable::KeyType(bundle.key.kty.clone()));
    }
    match bundle.rsa_bits() {
        Some(2048 | 3072 | 4096) => {}
        bits => return Err(Unusable::KeySize(bits.unwrap_or(0))),
    }
    for op in ["wrapKey", "unwrapKey"] {
        if !bundle.key.key_ops.iter().any(|o| o == op) {
            return Err(Unusable::Operation(op));
        }
    }
    if let Some(nbf) = attributes.nbf.filter(|nbf| *nbf > now) {
        return Err(Unusable::NotYetValid { nbf });
    }
    Ok(())
}

/// What a server's `properties.state` allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateClass {
    /// `Ready`: may be updated.
    Ready,
    /// Busy or in transition: try again later.
    Busy,
    /// Stopped, Inaccessible, Disabled, Dropping: report, do not touch.
    Untouchable,
}

pub fn classify_state(state: &str) -> StateClass {
    match state.to_ascii_lowercase().as_str() {
        "ready" => StateClass::Ready,
        "stopped" | "inaccessible" | "disabled" | "dropping" => StateClass::Untouchable,
        // Updating, Starting, Stopping, Restarting, Provisioning, and any
        // state this code does not know: never write, look again later.
        _ => StateClass::Busy,
    }
}

/// The two key references of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Primary,
    GeoBackup,
}

impl Slot {
    pub fn uri_field(self) -> &'static str {
        match self {
            Slot::Primary => "primaryKeyURI",
            Slot::GeoBackup => "geoBackupKeyURI",
        }
    }

    fn identity_field(self) -> &'static str {
        match self {
            Slot::Primary => "primaryUserAssignedIdentityId",
            Slot::GeoBackup => "geoBackupUserAssignedIdentityId",
        }
    }

    pub fn status_field(self) -> &'static str {
        match self {
            Slot::Primary => "primaryEncryptionKeyStatus",
            Slot::GeoBackup => "geoBackupEncryptionKeyStatus",
        }
    }
}

/// A flexible server as Resource Manager shows it, reduced to what the
/// rotation needs.
#[derive(Debug, Clone)]
pub struct FlexibleServer {
    pub id: String,
    pub name: String,
    pub state: String,
    pub tags: Map<String, Value>,
    pub data_encryption: Map<String, Value>,
    /// `properties.backup.geoRedundantBackup` is `Enabled`.
    pub geo_redundant_backup: bool,
}

impl FlexibleServer {
    pub fn from_arm(body: &Value) -> Option<FlexibleServer> {
        let properties = body.get("properties")?;
        Some(FlexibleServer {
            id: body.get("id")?.as_str()?.to_string(),
            name: body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            state: properties
                .get("state")
                .and_then(Value::as_str)
                .unwrap_or("Unknown")
                .to_string(),
            tags: body
                .get("tags")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
            geo_redundant_backup: properties["backup"]["geoRedundantBackup"]
                .as_str()
                .is_some_and(|v| v.eq_ignore_ascii_case("Enabled")),
            data_encryption: properties
                .get("dataEncryption")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default(),
        })
    }

    /// The key URI in a slot, parsed; `None` if absent or not a key URI.
    pub fn key(&self, slot: Slot) -> Option<KeyId> {
        let uri = self.data_encryption.get(slot.uri_field())?.as_str()?;
        KeyId::parse(uri).ok()
    }

    /// The key status the service shows for a slot (`Valid`, `Invalid`).
    pub fn key_status(&self, slot: Slot) -> Option<String> {
        let status = self.data_encryption.get(slot.status_field())?.as_str()?;
        Some(status.to_string())
    }

    /// The slots whose key URI names `key` (any version, or none).
    pub fn slots_using(&self, key: &KeyId) -> Vec<(Slot, KeyId)> {
        let customer_managed = self
            .data_encryption
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("AzureKeyVault"));
        if !customer_managed {
            return Vec::new();
        }
        [Slot::Primary, Slot::GeoBackup]
            .into_iter()
            .filter_map(|slot| {
                self.key(slot)
                    .filter(|k| k.same_key(key))
                    .map(|k| (slot, k))
            })
            .collect()
    }

    /// True when no opt-in tag is configured or the server carries it.
    pub fn opted_in(&self, tag: Option<&OptInTag>) -> bool {
        let Some(tag) = tag else { return true };
        self.tags.iter().any(|(name, value)| {
            name.eq_ignore_ascii_case(&tag.name)
                && value
                    .as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(&tag.value))
        })
    }

    /// A configuration the service would reject, found before any write.
    pub fn config_problem(&self, slots: &[Slot]) -> Option<String> {
        let field = |name: &str| {
            self.data_encryption
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        for slot in slots {
            if field(slot.identity_field()).is_none() {
                return Some(format!("{} is missing", slot.identity_field()));
            }
        }
        let geo_key = field(Slot::GeoBackup.uri_field());
        if self.geo_redundant_backup && geo_key.is_none() {
            return Some("geo-redundant backup is enabled but geoBackupKeyURI is missing".into());
        }
        if geo_key.is_some() {
            let (primary, geo) = (
                field("primaryUserAssignedIdentityId"),
                field("geoBackupUserAssignedIdentityId"),
            );
            match (primary, geo) {
                (_, None) => return Some("geoBackupUserAssignedIdentityId is missing".into()),
                (Some(p), Some(g)) if p.eq_ignore_ascii_case(g) => {
                    return Some("primary and geo-backup identities are the same".into());
                }
                _ => {}
            }
        }
        None
    }
}

/// The PATCH body: the whole `dataEncryption` block as the server has it
/// (type, both key URIs, both identities, and anything newer), read-only
/// status fields left out, with the changed slots set to `target`.
pub fn patch_body(server: &FlexibleServer, changes: &[(Slot, KeyId)]) -> Value {
    let mut block: Map<String, Value> = server
        .data_encryption
        .iter()
        .filter(|(name, _)| !name.ends_with("EncryptionKeyStatus"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (slot, target) in changes {
        block.insert(slot.uri_field().into(), Value::String(target.to_string()));
    }
    json!({ "properties": { "dataEncryption": block } })
}

/// Checks a server read back after the update: every changed slot names
/// the target version, and its key status (when shown) is `Valid`.
pub fn verify(server: &FlexibleServer, changes: &[(Slot, KeyId)]) -> Result<(), String> {
    for (slot, target) in changes {
        let now = server.key(*slot);
        if now.as_ref().map(|k| (k.same_key(target), &k.version)) != Some((true, &target.version)) {
            let shown = server
                .data_encryption
                .get(slot.uri_field())
                .and_then(Value::as_str)
                .unwrap_or("nothing");
            return Err(format!(
                "{} is {shown}, expected {target}",
                slot.uri_field()
            ));
        }
        let status = server
            .data_encryption
            .get(slot.status_field())
            .and_then(Value::as_str);
        if let Some(status) = status.filter(|s| !s.eq_ignore_ascii_case("Valid")) {
            return Err(format!("{} is {status}", slot.status_field()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyvault::KeyBundle;

    const NOW: i64 = 1_768_032_000;

    fn bundle(kty: &str, bytes: usize, ops: &[&str], attributes: Value) -> KeyBundle {
        serde_json::from_value(json!({
            "key": {"kid": "https://contoso-kv.vault.azure.net/keys/pg-cmk/44444444444444444444444444444444",
                    "kty": kty, "key_ops": ops, "n": "A".repeat(bytes * 4 / 3 + 1)},
            "attributes": attributes
        }))
        .unwrap()
    }

    #[test]
    fn only_enabled_current_rsa_wrap_keys_are_usable() {
        let ops = ["wrapKey", "unwrapKey"];
        let ok = bundle("RSA", 256, &ops, json!({"enabled": true}));
        assert_eq!(check_key(&ok, NOW), Ok(()));
        assert_eq!(
            check_key(&bundle("RSA-HSM", 512, &ops, json!({"enabled": true})), NOW),
            Ok(())
        );

        let cases = [
            (
                bundle("RSA", 256, &ops, json!({"enabled": false})),
                Unusable::Disabled,
            ),
            (
                bundle(
                    "RSA",
                    256,
                    &ops,
                    json!({"enabled": true, "nbf": NOW + 7200}),
                ),
                Unusable::NotYetValid { nbf: NOW + 7200 },
            ),
            (
                bundle("RSA", 256, &ops, json!({"enabled": true, "exp": NOW - 1})),
                Unusable::Expired { exp: NOW - 1 },
            ),
            (
                bundle("EC", 256, &ops, json!({"enabled": true})),
                Unusable::KeyType("EC".into()),
            ),
            (
                bundle("RSA", 128, &ops, json!({"enabled": true})),
                Unusable::KeySize(1024),
            ),
            (
                bundle("RSA", 256, &["wrapKey"], json!({"enabled": true})),
                Unusable::Operation("unwrapKey"),
            ),
        ];
        for (b, expected) in cases {
            assert_eq!(check_key(&b, NOW), Err(expected.clone()), "{expected}");
        }
        assert!(Unusable::NotYetValid { nbf: 0 }.retry_later());
        assert!(!Unusable::Disabled.retry_later());
    }

    #[test]
    fn states_are_classified_conservatively() {
        assert_eq!(classify_state("Ready"), StateClass::Ready);
        for s in [
            "Updating",
            "Starting",
            "Restarting",
            "Provisioning",
            "SomethingNew",
        ] {
            assert_eq!(classify_state(s), StateClass::Busy, "{s}");
        }
        for s in ["Stopped", "Inaccessible", "Disabled", "Dropping"] {
            assert_eq!(classify_state(s), StateClass::Untouchable, "{s}");
        }
    }

    fn server() -> FlexibleServer {
        FlexibleServer::from_arm(&json!({
            "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
            "name": "pg",
            "tags": {"CMK-Rotation": "Enabled"},
            "properties": {"state": "Ready", "dataEncryption": {
                "type": "AzureKeyVault",
                "primaryKeyURI": "https://contoso-kv.vault.azure.net/keys/pg-cmk/11111111111111111111111111111111",
                "primaryUserAssignedIdentityId": "/id/primary",
                "geoBackupKeyURI": "https://contoso-kv-geo.vault.azure.net/keys/pg-cmk-geo/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "geoBackupUserAssignedIdentityId": "/id/geo",
                "primaryEncryptionKeyStatus": "Valid",
                "geoBackupEncryptionKeyStatus": "Valid"
            }}
        }))
        .unwrap()
    }

    #[test]
    fn patch_carries_the_whole_block_with_only_the_slot_changed() {
        let s = server();
        let key = KeyId::parse("https://contoso-kv.vault.azure.net/keys/pg-cmk").unwrap();
        let slots = s.slots_using(&key);
        assert_eq!(slots.len(), 1);
        let target = slots[0].1.with_version("22222222222222222222222222222222");
        let body = patch_body(&s, &[(Slot::Primary, target)]);
        assert_eq!(
            body,
            json!({"properties": {"dataEncryption": {
                "type": "AzureKeyVault",
                "primaryKeyURI": "https://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222",
                "primaryUserAssignedIdentityId": "/id/primary",
                "geoBackupKeyURI": "https://contoso-kv-geo.vault.azure.net/keys/pg-cmk-geo/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                "geoBackupUserAssignedIdentityId": "/id/geo"
            }}})
        );
    }

    #[test]
    fn verification_requires_the_target_and_a_valid_status() {
        let mut s = server();
        let target = s
            .key(Slot::Primary)
            .unwrap()
            .with_version("22222222222222222222222222222222");
        assert!(verify(&s, &[(Slot::Primary, target.clone())]).is_err());
        s.data_encryption
            .insert("primaryKeyURI".into(), json!(target.to_string()));
        assert_eq!(verify(&s, &[(Slot::Primary, target.clone())]), Ok(()));
        s.data_encryption
            .insert("primaryEncryptionKeyStatus".into(), json!("Invalid"));
        assert!(verify(&s, &[(Slot::Primary, target)]).is_err());
    }

    #[test]
    fn opt_in_tag_and_identity_problems_are_seen() {
        let s = server();
        let tag = OptInTag {
            name: "cmk-rotation".into(),
            value: "enabled".into(),
        };
        assert!(s.opted_in(Some(&tag)) && s.opted_in(None));
        assert_eq!(s.config_problem(&[Slot::Primary]), None);

        let mut same = server();
        same.data_encryption.insert(
            "geoBackupUserAssignedIdentityId".into(),
            json!("/ID/PRIMARY"),
        );
        assert!(same.config_problem(&[Slot::Primary]).is_some());
    }
}
