//! The plain data a test hands to the fake or gets back from it: key
//! versions, flexible servers, how a server's update operation behaves, and
//! recorded requests.

use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

/// One version of a Key Vault key, as a test describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyVersionSpec {
    /// The 32-hex version id; generated when `None`.
    pub version: Option<String>,
    /// `RSA`, `RSA-HSM`, `EC` or `EC-HSM`.
    pub kty: String,
    /// Key size in bits; sets the length of the RSA modulus `n`.
    pub bits: u32,
    /// The JWK `key_ops`.
    pub key_ops: Vec<String>,
    /// `attributes.enabled`.
    pub enabled: bool,
    /// `attributes.nbf` (epoch seconds), when set.
    pub nbf: Option<i64>,
    /// `attributes.exp` (epoch seconds), when set.
    pub exp: Option<i64>,
    /// `attributes.created` (epoch seconds). When `None` the fake uses the
    /// current time, bumped so that it is later than every version of the
    /// key added before.
    pub created: Option<i64>,
}

impl Default for KeyVersionSpec {
    /// An enabled RSA 2048 key with the usual six operations and no
    /// activation or expiry date.
    fn default() -> Self {
        let ops = [
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey",
        ];
        KeyVersionSpec {
            version: None,
            kty: "RSA".to_owned(),
            bits: 2048,
            key_ops: ops.iter().map(|op| op.to_string()).collect(),
            enabled: true,
            nbf: None,
            exp: None,
            created: None,
        }
    }
}

impl KeyVersionSpec {
    /// The default key version with a fixed version id.
    pub fn with_version(version: &str) -> Self {
        KeyVersionSpec {
            version: Some(version.to_owned()),
            ..KeyVersionSpec::default()
        }
    }
}

/// A PostgreSQL flexible server as the fake Resource Manager holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSpec {
    /// Subscription id (a GUID).
    pub subscription: String,
    /// Resource group name.
    pub resource_group: String,
    /// Server name.
    pub name: String,
    /// Azure region, e.g. `westeurope`.
    pub location: String,
    /// `properties.state`, e.g. `Ready`, `Stopped`, `Updating`.
    pub state: String,
    /// Resource tags.
    pub tags: Map<String, Value>,
    /// `properties.dataEncryption` as ARM shows it. Key status fields given
    /// here are ignored: the fake computes them from its Key Vault.
    pub data_encryption: Value,
    /// The `identity` object, e.g. `{"type":"UserAssigned",
    /// "userAssignedIdentities":{id:{"principalId":..,"clientId":..}}}`;
    /// `Null` for none.
    pub identity: Value,
    /// `properties.backup.geoRedundantBackup` is `Enabled` when true.
    pub geo_redundant_backup: bool,
}

impl Default for ServerSpec {
    /// A `Ready` server `contoso-pg-01` in `rg-contoso-data` of the all-zero
    /// subscription, in `westeurope`, with system-managed encryption.
    fn default() -> Self {
        ServerSpec {
            subscription: "00000000-0000-0000-0000-000000000000".to_owned(),
            resource_group: "rg-contoso-data".to_owned(),
            name: "contoso-pg-01".to_owned(),
            location: "westeurope".to_owned(),
            state: "Ready".to_owned(),
            tags: Map::new(),
            data_encryption: json!({ "type": "SystemManaged" }),
            identity: Value::Null,
            geo_redundant_backup: false,
        }
    }
}

impl ServerSpec {
    /// The ARM resource id:
    /// `/subscriptions/{s}/resourceGroups/{rg}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{name}`.
    pub fn id(&self) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{}",
            self.subscription, self.resource_group, self.name
        )
    }

    /// The resource id of a user-assigned identity in the server's
    /// subscription and resource group.
    pub fn identity_id(&self, identity_name: &str) -> String {
        format!(
            "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{}",
            self.subscription, self.resource_group, identity_name
        )
    }

    /// Switches the server to `AzureKeyVault` encryption on `primary_key_uri`
    /// with the user-assigned identity `id-{name}`, which is also added to
    /// `identity`.
    pub fn with_primary_key(mut self, primary_key_uri: &str) -> Self {
        let identity = self.identity_id(&format!("id-{}", self.name));
        self.data_encryption = json!({
            "type": "AzureKeyVault",
            "primaryKeyURI": primary_key_uri,
            "primaryUserAssignedIdentityId": identity,
        });
        self.add_identity(&identity);
        self
    }

    /// Adds a geo-backup key on `geo_key_uri` with the identity
    /// `id-{name}-geo` and turns geo-redundant backup on. Call after
    /// [`ServerSpec::with_primary_key`].
    pub fn with_geo_key(mut self, geo_key_uri: &str) -> Self {
        let identity = self.identity_id(&format!("id-{}-geo", self.name));
        if let Some(fields) = self.data_encryption.as_object_mut() {
            fields.insert("geoBackupKeyURI".to_owned(), json!(geo_key_uri));
            fields.insert(
                "geoBackupUserAssignedIdentityId".to_owned(),
                json!(identity),
            );
        }
        self.add_identity(&identity);
        self.geo_redundant_backup = true;
        self
    }

    /// Sets one tag.
    pub fn with_tag(mut self, name: &str, value: &str) -> Self {
        self.tags.insert(name.to_owned(), json!(value));
        self
    }

    fn add_identity(&mut self, identity_id: &str) {
        if !self.identity.is_object() {
            self.identity = json!({ "type": "UserAssigned", "userAssignedIdentities": {} });
        }
        self.identity["userAssignedIdentities"][identity_id] =
            super::server::new_identity_details();
    }
}

/// How the long-running operation started by a PATCH on one server behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerBehaviour {
    /// How many polls answer `InProgress` before the terminal status.
    pub op_polls: u32,
    /// The operation also lasts at least this long in wall time.
    pub op_duration: Duration,
    /// The terminal status of the operation.
    pub outcome: OpOutcome,
    /// The operation reports `Succeeded` but changes nothing.
    pub ignore_patch: bool,
}

impl Default for ServerBehaviour {
    /// One `InProgress` poll, no minimum duration, `Succeeded`, applied.
    fn default() -> Self {
        ServerBehaviour {
            op_polls: 1,
            op_duration: Duration::ZERO,
            outcome: OpOutcome::Succeeded,
            ignore_patch: false,
        }
    }
}

/// Terminal status of an update operation.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum OpOutcome {
    /// `Succeeded`: the PATCH is applied (unless it is a silent no-op).
    #[default]
    Succeeded,
    /// `Failed` with this ARM error; nothing changes.
    Failed {
        /// ARM error code, e.g. `ServerBusy`.
        code: String,
        /// ARM error message.
        message: String,
    },
    /// `Canceled`; nothing changes.
    Canceled,
}

/// One request the fake received, and the status it answered.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method, upper case.
    pub method: String,
    /// The `Host` header as received (may carry `:port`).
    pub host: String,
    /// The URL path.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Request headers: names lower-cased, values as received.
    pub headers: Vec<(String, String)>,
    /// The body as JSON; a body that is not JSON is kept as a JSON string.
    pub body: Option<Value>,
    /// When the request arrived.
    pub at: Instant,
    /// The status the fake answered (0 for a reset connection).
    pub status: u16,
}

impl Recorded {
    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        let mut values = self.headers.iter().filter(|(n, _)| *n == name);
        values.next().map(|(_, v)| v.as_str())
    }

    /// The `Host` header lower-cased, without a port.
    pub fn host_name(&self) -> String {
        super::http::host_without_port(&self.host)
    }
}
