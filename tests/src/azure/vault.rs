//! The keys of every fake vault, their JSON shapes (KeyBundle, KeyItem) and
//! the usability rules PostgreSQL applies to a customer-managed key.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::spec::KeyVersionSpec;
use super::state::now_epoch;

/// All keys, by (vault host, key name), both lower-cased.
#[derive(Debug, Default)]
pub(crate) struct KeyStore {
    keys: HashMap<(String, String), KeyRecord>,
}

/// One key and its versions, oldest added first.
#[derive(Debug)]
pub(crate) struct KeyRecord {
    /// The vault host, e.g. `contoso-kv.vault.azure.net`.
    pub vault: String,
    /// The key name as first added (Key Vault keeps the creation case).
    pub name: String,
    /// Versions in the order they were added; the last one is current.
    pub versions: Vec<KeyVersion>,
}

/// One version of a key.
#[derive(Debug, Clone)]
pub(crate) struct KeyVersion {
    /// The 32-hex version id.
    pub version: String,
    /// Attributes and key type, with `created` always set.
    pub spec: KeyVersionSpec,
    /// `attributes.updated`.
    pub updated: i64,
}

/// A key reference parsed from a key URI.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyRef {
    pub vault: String,
    pub name: String,
    pub version: Option<String>,
}

/// Why a key URI cannot be used for data encryption.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum KeyProblem {
    /// No such vault, key or version.
    NotFound(String),
    /// The version exists but is disabled, outside its validity or of the
    /// wrong type or size.
    Invalid(String),
}

impl KeyStore {
    /// Adds a version that becomes the current one; returns its id.
    pub fn add(&mut self, vault: &str, name: &str, mut spec: KeyVersionSpec, id: String) -> String {
        let vault = normalize_vault(vault);
        let record = self
            .keys
            .entry((vault.clone(), name.to_ascii_lowercase()))
            .or_insert_with(|| KeyRecord {
                vault,
                name: name.to_owned(),
                versions: Vec::new(),
            });
        let version = spec.version.clone().unwrap_or(id);
        let last = record.versions.iter().filter_map(|v| v.spec.created).max();
        let created = spec
            .created
            .unwrap_or_else(|| now_epoch().max(last.map_or(0, |c| c + 1)));
        spec.created = Some(created);
        spec.version = Some(version.clone());
        record
            .versions
            .retain(|v| !v.version.eq_ignore_ascii_case(&version));
        record.versions.push(KeyVersion {
            version: version.clone(),
            spec,
            updated: created,
        });
        version
    }

    /// The key with this vault and name (any case).
    pub fn key(&self, vault: &str, name: &str) -> Option<&KeyRecord> {
        self.keys
            .get(&(normalize_vault(vault), name.to_ascii_lowercase()))
    }

    /// Mutable access to one version.
    pub fn version_mut(
        &mut self,
        vault: &str,
        name: &str,
        version: &str,
    ) -> Option<&mut KeyVersion> {
        let record = self
            .keys
            .get_mut(&(normalize_vault(vault), name.to_ascii_lowercase()))?;
        record
            .versions
            .iter_mut()
            .find(|v| v.version.eq_ignore_ascii_case(version))
    }

    /// Checks that a key URI names a usable key: it exists, is enabled,
    /// active, RSA and 2048/3072/4096 bits. A version-less URI checks the
    /// current version.
    pub fn check_usable(&self, uri: &str) -> Result<(), KeyProblem> {
        let not_found =
            || KeyProblem::NotFound(format!("The key '{uri}' was not found in Azure Key Vault."));
        let key_ref = parse_key_uri(uri).ok_or_else(not_found)?;
        let record = self
            .key(&key_ref.vault, &key_ref.name)
            .ok_or_else(not_found)?;
        let version = match &key_ref.version {
            Some(v) => record.version(v),
            None => record.versions.last(),
        };
        let problem = version.ok_or_else(not_found)?.problem();
        problem.map_or(Ok(()), |why| {
            Err(KeyProblem::Invalid(format!(
                "The key '{uri}' is not valid: {why}."
            )))
        })
    }
}

impl KeyRecord {
    /// The version with this id (any case).
    pub fn version(&self, version: &str) -> Option<&KeyVersion> {
        self.versions
            .iter()
            .find(|v| v.version.eq_ignore_ascii_case(version))
    }

    /// The key identifier of one version, as real Key Vault reports it.
    pub fn kid(&self, version: &KeyVersion) -> String {
        format!(
            "https://{}/keys/{}/{}",
            self.vault, self.name, version.version
        )
    }

    /// The KeyBundle of one version (`GET /keys/{name}/{version}`).
    pub fn bundle(&self, version: &KeyVersion) -> Value {
        let mut jwk = version.key_material(&self.kid(version));
        jwk["kid"] = json!(self.kid(version));
        jwk["kty"] = json!(version.spec.kty);
        jwk["key_ops"] = json!(version.spec.key_ops);
        json!({ "key": jwk, "attributes": version.attributes(), "tags": {} })
    }

    /// The KeyItem of one version (an entry of `GET /keys/{name}/versions`).
    pub fn item(&self, version: &KeyVersion) -> Value {
        json!({ "kid": self.kid(version), "attributes": version.attributes() })
    }
}

impl KeyVersion {
    /// The `attributes` object.
    pub fn attributes(&self) -> Value {
        let spec = &self.spec;
        let mut attributes = json!({ "enabled": spec.enabled });
        if let Some(nbf) = spec.nbf {
            attributes["nbf"] = json!(nbf);
        }
        if let Some(exp) = spec.exp {
            attributes["exp"] = json!(exp);
        }
        attributes["created"] = json!(spec.created.unwrap_or_default());
        attributes["updated"] = json!(self.updated);
        attributes["recoveryLevel"] = json!("Recoverable");
        attributes
    }

    /// Why PostgreSQL would refuse this version, if it would.
    pub fn problem(&self) -> Option<String> {
        let (spec, now) = (&self.spec, now_epoch());
        if !spec.enabled {
            return Some("the key is disabled".to_owned());
        }
        if spec.nbf.is_some_and(|nbf| nbf > now) {
            return Some("the key is not yet active".to_owned());
        }
        if spec.exp.is_some_and(|exp| exp <= now) {
            return Some("the key has expired".to_owned());
        }
        if !matches!(spec.kty.as_str(), "RSA" | "RSA-HSM")
            || ![2048, 3072, 4096].contains(&spec.bits)
        {
            return Some(format!(
                "key type {} {} is not supported",
                spec.kty, spec.bits
            ));
        }
        None
    }

    /// Public key fields (`n`/`e` or `crv`/`x`/`y`), derived from the kid so
    /// that they are stable.
    fn key_material(&self, kid: &str) -> Value {
        let mut seed = kid.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
        }) | 1;
        if self.spec.kty.starts_with("EC") {
            let x = pseudo_bytes(&mut seed, 32);
            let y = pseudo_bytes(&mut seed, 32);
            return json!({ "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y) });
        }
        let mut n = pseudo_bytes(&mut seed, (self.spec.bits / 8).max(1) as usize);
        n[0] |= 0x80;
        json!({ "n": URL_SAFE_NO_PAD.encode(n), "e": "AQAB" })
    }
}

/// Parses `https://{vault}[:port]/keys/{name}[/{version}][/]` into lower-cased
/// parts.
pub(crate) fn parse_key_uri(uri: &str) -> Option<KeyRef> {
    let lower = uri.trim().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))?;
    let (host, path) = rest.split_once('/')?;
    let mut segments = path.trim_end_matches('/').split('/');
    if segments.next()? != "keys" {
        return None;
    }
    let name = segments.next().filter(|n| !n.is_empty())?.to_owned();
    let version = segments.next().map(str::to_owned);
    if segments.next().is_some() {
        return None;
    }
    Some(KeyRef {
        vault: normalize_vault(host),
        name,
        version,
    })
}

/// A vault host lower-cased, without scheme, port or path.
pub(crate) fn normalize_vault(vault: &str) -> String {
    let vault = vault.trim().to_ascii_lowercase();
    let vault = vault
        .strip_prefix("https://")
        .or_else(|| vault.strip_prefix("http://"))
        .unwrap_or(&vault);
    let host = vault.split('/').next().unwrap_or_default();
    super::http::host_without_port(host)
}

fn pseudo_bytes(seed: &mut u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 24) as u8
        })
        .collect()
}
