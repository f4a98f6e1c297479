//! Key Vault events as Event Grid delivers them: the Event Grid schema and
//! CloudEvents 1.0, `data` as an object or as a JSON string, `data` member
//! names in any letter case, `NBF`/`EXP` as a number, a numeric string or null.

use serde_json::{Map, Value};

/// Which envelope the event came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    EventGrid,
    CloudEvents,
}

/// What the handler makes of an event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEventKind {
    NewVersionCreated,
    NearExpiry,
    Expired,
}

/// One Key Vault event, envelope and data.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyVaultEvent {
    pub id: String,
    pub event_type: String,
    pub schema: Schema,
    /// `topic` (Event Grid) or `source` (CloudEvents): the vault resource id.
    pub source: Option<String>,
    pub data: KeyVaultEventData,
}

/// The `data` object shared by every Key Vault event type.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyVaultEventData {
    /// Full object URL with version (`https://{vault}/keys/{name}/{version}`).
    pub id: String,
    pub vault_name: Option<String>,
    pub object_type: Option<String>,
    pub object_name: Option<String>,
    pub version: Option<String>,
    /// Not-before, epoch seconds.
    pub nbf: Option<f64>,
    /// Expiry, epoch seconds.
    pub exp: Option<f64>,
}

/// Why an event could not be read. These never succeed on redelivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is not a JSON object")]
    NotAnObject,
    #[error("event has no {0}")]
    Missing(&'static str),
    #[error("event field {0} has the wrong type")]
    WrongType(&'static str),
    #[error("event data is a string that is not a JSON object")]
    DataNotJson,
}

impl KeyVaultEvent {
    /// The key event kind, or `None` for anything that is not a key event
    /// (secrets, certificates, access policy changes, other services).
    pub fn key_event_kind(&self) -> Option<KeyEventKind> {
        let kind = match self.event_type.as_str() {
            t if t.eq_ignore_ascii_case("Microsoft.KeyVault.KeyNewVersionCreated") => {
                KeyEventKind::NewVersionCreated
            }
            t if t.eq_ignore_ascii_case("Microsoft.KeyVault.KeyNearExpiry") => {
                KeyEventKind::NearExpiry
            }
            t if t.eq_ignore_ascii_case("Microsoft.KeyVault.KeyExpired") => KeyEventKind::Expired,
            _ => return None,
        };
        let object_is_key = self
            .data
            .object_type
            .as_deref()
            .is_none_or(|t| t.eq_ignore_ascii_case("key"));
        object_is_key.then_some(kind)
    }

    /// The vault name in `topic` / `source` when it is a Key Vault resource
    /// id (`…/providers/Microsoft.KeyVault/vaults/{name}`).
    pub fn topic_vault(&self) -> Option<&str> {
        let source = self.source.as_deref()?.trim_end_matches('/');
        let (head, name) = source.rsplit_once('/')?;
        let provider = "/providers/Microsoft.KeyVault/vaults";
        let tail = head.get(head.len().checked_sub(provider.len())?..)?;
        tail.eq_ignore_ascii_case(provider).then_some(name)
    }

    /// Why an event that is not a key event the handler acts on is ignored.
    pub fn ignored_because(&self) -> String {
        let acted_on = [
            "Microsoft.KeyVault.KeyNewVersionCreated",
            "Microsoft.KeyVault.KeyNearExpiry",
            "Microsoft.KeyVault.KeyExpired",
        ];
        if acted_on
            .iter()
            .any(|t| t.eq_ignore_ascii_case(&self.event_type))
        {
            let object = self.data.object_type.as_deref().unwrap_or("another object");
            return format!("its data names a {object}, not a key");
        }
        let prefix = "Microsoft.KeyVault.Key";
        let key_event = self
            .event_type
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix));
        if key_event {
            "the handler acts only on KeyNewVersionCreated, KeyNearExpiry and KeyExpired".into()
        } else {
            "not a key event".into()
        }
    }
}

/// Parses one event in either schema.
pub fn parse_event(value: &Value) -> Result<KeyVaultEvent, EventError> {
    let envelope = value.as_object().ok_or(EventError::NotAnObject)?;
    let schema = if member(envelope, "specversion").is_some() {
        Schema::CloudEvents
    } else {
        Schema::EventGrid
    };
    let (type_field, source_field) = match schema {
        Schema::CloudEvents => ("type", "source"),
        Schema::EventGrid => ("eventType", "topic"),
    };
    let id = required_string(envelope, "id")?;
    let event_type = required_string(envelope, type_field)?;
    let source = optional_string(envelope, source_field)?;
    let data = member(envelope, "data").ok_or(EventError::Missing("data"))?;

    Ok(KeyVaultEvent {
        id,
        event_type,
        schema,
        source,
        data: parse_data(data)?,
    })
}

fn parse_data(data: &Value) -> Result<KeyVaultEventData, EventError> {
    let decoded;
    let object = match data {
        Value::Object(o) => o,
        Value::String(s) => {
            decoded = serde_json::from_str::<Value>(s).map_err(|_| EventError::DataNotJson)?;
            decoded.as_object().ok_or(EventError::DataNotJson)?
        }
        _ => return Err(EventError::WrongType("data")),
    };
    Ok(KeyVaultEventData {
        id: required_string(object, "Id")?,
        vault_name: optional_string(object, "VaultName")?,
        object_type: optional_string(object, "ObjectType")?,
        object_name: optional_string(object, "ObjectName")?,
        version: optional_string(object, "Version")?,
        nbf: epoch(object, "NBF")?,
        exp: epoch(object, "EXP")?,
    })
}

/// Looks a member up by name without regard to case or surrounding spaces
/// (a documented sample carries `"ObjectName "`).
fn member<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.get(name).or_else(|| {
        object
            .iter()
            .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

fn optional_string(
    object: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<String>, EventError> {
    match member(object, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(EventError::WrongType(name)),
    }
}

fn required_string(object: &Map<String, Value>, name: &'static str) -> Result<String, EventError> {
    optional_string(object, name)?.ok_or(EventError::Missing(name))
}

fn epoch(object: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, EventError> {
    match member(object, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| EventError::WrongType(name)),
        Some(_) => Err(EventError::WrongType(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ID: &str =
        "https://contoso-kv.vault.azure.net/keys/pg-cmk/22222222222222222222222222222222";

    fn event_grid(data: Value) -> Value {
        json!({
            "id": "e1", "topic": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/contoso-kv",
            "subject": "pg-cmk", "eventType": "Microsoft.KeyVault.KeyNewVersionCreated",
            "eventTime": "2026-01-10T08:00:00Z", "data": data, "dataVersion": "1", "metadataVersion": "1"
        })
    }

    #[test]
    fn pascal_and_camel_case_data_parse_alike() {
        let pascal = json!({"Id": ID, "VaultName": "contoso-kv", "ObjectType": "Key",
            "ObjectName": "pg-cmk", "Version": "22222222222222222222222222222222", "NBF": null, "EXP": null});
        let camel = json!({"id": ID, "vaultName": "contoso-kv", "objectType": "Key",
            "objectName": "pg-cmk", "version": "22222222222222222222222222222222", "nbf": null, "exp": null});
        let a = parse_event(&event_grid(pascal)).unwrap();
        let b = parse_event(&event_grid(camel)).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.data.vault_name.as_deref(), Some("contoso-kv"));
        assert_eq!(a.key_event_kind(), Some(KeyEventKind::NewVersionCreated));
    }

    #[test]
    fn the_topic_names_the_vault() {
        let e = parse_event(&event_grid(json!({"Id": ID}))).unwrap();
        assert_eq!(e.topic_vault(), Some("contoso-kv"));
        let mut other = e.clone();
        other.source = Some(
            "/subscriptions/s/resourceGroups/r/providers/Microsoft.Storage/storageAccounts/x"
                .into(),
        );
        assert_eq!(other.topic_vault(), None);
        other.source = None;
        assert_eq!(other.topic_vault(), None);
    }

    #[test]
    fn ignored_events_say_why() {
        let mut secret =
            parse_event(&event_grid(json!({"Id": ID, "ObjectType": "Secret"}))).unwrap();
        assert_eq!(secret.key_event_kind(), None);
        assert_eq!(
            secret.ignored_because(),
            "its data names a Secret, not a key"
        );
        secret.event_type = "Microsoft.KeyVault.KeyDeleted".into();
        assert!(
            secret
                .ignored_because()
                .starts_with("the handler acts only on")
        );
        secret.event_type = "Microsoft.KeyVault.VaultAccessPolicyChanged".into();
        assert_eq!(secret.ignored_because(), "not a key event");
    }

    #[test]
    fn data_may_be_a_json_string_and_times_any_numeric_form() {
        let data = json!({"Id": ID, "ObjectType": "Key", "NBF": "1767225600", "EXP": 1798761600.0})
            .to_string();
        let e = parse_event(&event_grid(Value::String(data))).unwrap();
        assert_eq!(e.data.nbf, Some(1767225600.0));
        assert_eq!(e.data.exp, Some(1798761600.0));
    }

    #[test]
    fn cloud_events_schema_is_read() {
        let e = parse_event(&json!({
            "specversion": "1.0", "id": "c1", "type": "Microsoft.KeyVault.KeyNearExpiry",
            "source": "/subscriptions/s/resourceGroups/r/providers/Microsoft.KeyVault/vaults/contoso-kv",
            "subject": "pg-cmk", "time": "2026-01-10T08:00:00Z", "data": {"Id": ID, "ObjectType": "Key"}
        }))
        .unwrap();
        assert_eq!(e.schema, Schema::CloudEvents);
        assert_eq!(e.key_event_kind(), Some(KeyEventKind::NearExpiry));
    }

    #[test]
    fn data_without_known_members_is_malformed() {
        assert_eq!(
            parse_event(&event_grid(json!({"foo": "bar"}))),
            Err(EventError::Missing("Id"))
        );
        assert_eq!(parse_event(&json!("x")), Err(EventError::NotAnObject));
        assert_eq!(
            parse_event(&event_grid(json!("not json"))),
            Err(EventError::DataNotJson)
        );
        assert_eq!(
            parse_event(&event_grid(json!({"Id": ID, "NBF": "soon"}))),
            Err(EventError::WrongType("NBF"))
        );
    }

    #[test]
    fn secret_events_are_not_key_events() {
        let mut v = event_grid(json!({"Id": ID, "ObjectType": "Secret"}));
        v["eventType"] = json!("Microsoft.KeyVault.SecretNewVersionCreated");
        assert_eq!(parse_event(&v).unwrap().key_event_kind(), None);
    }
}
