//! Key Vault key identifiers: parsing, normalising and comparing the URIs
//! found in events (`data.Id`) and in a server's `dataEncryption`.
//!
//! Identifiers are compared without regard to case; the default port `:443`
//! and a trailing `/` are dropped. Vault and key names are checked against Key
//! Vault's naming rules, so a parsed identifier can be put into a URL or a
//! Resource Graph query without escaping.

use std::fmt;

/// A parsed key identifier: `https://{vault host}/keys/{name}[/{version}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyId {
    /// Vault host, lower-cased, without port (`contoso-kv.vault.azure.net`).
    pub vault: String,
    /// Key name as written (names compare case-insensitively).
    pub name: String,
    /// 32-hex version, lower-cased; `None` for a version-less identifier.
    pub version: Option<String>,
}

/// Why a key identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyIdError {
    #[error("key identifier must start with https://")]
    Scheme,
    #[error("key identifier has an invalid host")]
    Host,
    #[error(
        "key identifier carries user info, a query, a fragment, a backslash or percent-encoding"
    )]
    Characters,
    #[error("key identifier names port {0}; only the default port is accepted")]
    Port(String),
    #[error("key identifier path must be /keys/{{name}}[/{{version}}]")]
    Path,
    #[error("key name {0:?} breaks Key Vault's naming rules")]
    KeyName(String),
    #[error("key version {0:?} is not 32 hexadecimal characters")]
    Version(String),
    #[error("vault name {0:?} breaks Key Vault's naming rules")]
    VaultName(String),
    #[error("vault host {0} is not under a configured Key Vault DNS suffix")]
    Suffix(String),
}

impl KeyId {
    /// Parses a key identifier as found in an event or a server's key URI.
    pub fn parse(uri: &str) -> Result<KeyId, KeyIdError> {
        let rest = strip_prefix_ci(uri.trim(), "https://").ok_or(KeyIdError::Scheme)?;
        if rest.contains(['?', '#', '\\', '%', '@']) {
            return Err(KeyIdError::Characters);
        }
        let (authority, path) = rest.split_once('/').ok_or(KeyIdError::Path)?;
        let vault = parse_authority(authority)?;

        let path = path.strip_suffix('/').unwrap_or(path);
        let mut segments = path.split('/');
        if !segments
            .next()
            .is_some_and(|s| s.eq_ignore_ascii_case("keys"))
        {
            return Err(KeyIdError::Path);
        }
        let name = segments.next().ok_or(KeyIdError::Path)?;
        let version = segments.next();
        if segments.next().is_some() {
            return Err(KeyIdError::Path);
        }

        check_key_name(name)?;
        let version = version.map(check_version).transpose()?;
        Ok(KeyId {
            vault,
            name: name.to_string(),
            version,
        })
    }

    /// True when both identifiers name the same key of the same vault,
    /// whatever their versions.
    pub fn same_key(&self, other: &KeyId) -> bool {
        self.vault == other.vault && self.name.eq_ignore_ascii_case(&other.name)
    }

    /// The same key at another version.
    pub fn with_version(&self, version: &str) -> KeyId {
        KeyId {
            version: Some(version.to_ascii_lowercase()),
            ..self.clone()
        }
    }

    /// Checks that the vault host is `{vault name}{suffix}` for one of the
    /// configured suffixes, and that the vault name follows Key Vault's rules.
    pub fn check_vault(&self, suffixes: &[String]) -> Result<(), KeyIdError> {
        let name = suffixes
            .iter()
            .find_map(|s| self.vault.strip_suffix(s.as_str()))
            .ok_or_else(|| KeyIdError::Suffix(self.vault.clone()))?;
        check_vault_name(name)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}/keys/{}", self.vault, self.name)?;
        match &self.version {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn parse_authority(authority: &str) -> Result<String, KeyIdError> {
    // An IP literal (`[::1]`) is never a vault host.
    if authority.starts_with('[') {
        return Err(KeyIdError::Host);
    }
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (authority, None),
    };
    if let Some(p) = port.filter(|p| *p != "443") {
        return Err(KeyIdError::Port(p.to_string()));
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty() && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid || !host.contains('.') {
        return Err(KeyIdError::Host);
    }
    Ok(host.to_ascii_lowercase())
}

/// Key names: 1–127 characters from `0-9a-zA-Z-`.
fn check_key_name(name: &str) -> Result<(), KeyIdError> {
    let ok = (1..=127).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then_some(())
        .ok_or_else(|| KeyIdError::KeyName(name.to_string()))
}

fn check_version(version: &str) -> Result<String, KeyIdError> {
    let ok = version.len() == 32 && version.chars().all(|c| c.is_ascii_hexdigit());
    ok.then(|| version.to_ascii_lowercase())
        .ok_or_else(|| KeyIdError::Version(version.to_string()))
}

/// Vault names: 3–24 characters from `0-9a-zA-Z-`, starting with a letter,
/// ending with a letter or digit, with no consecutive hyphens.
fn check_vault_name(name: &str) -> Result<(), KeyIdError> {
    let ok = (3..=24).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("--");
    ok.then_some(())
        .ok_or_else(|| KeyIdError::VaultName(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1: &str = "11111111111111111111111111111111";

    fn suffixes() -> Vec<String> {
        vec![".vault.azure.net".to_string()]
    }

    #[test]
    fn parses_versioned_and_versionless_forms() {
        let id = KeyId::parse(&format!(
            "https://contoso-kv.vault.azure.net/keys/pg-cmk/{V1}"
        ))
        .unwrap();
        assert_eq!(id.vault, "contoso-kv.vault.azure.net");
        assert_eq!(id.name, "pg-cmk");
        assert_eq!(id.version.as_deref(), Some(V1));

        for uri in [
            "https://contoso-kv.vault.azure.net/keys/pg-cmk",
            "https://contoso-kv.vault.azure.net/keys/pg-cmk/",
        ] {
            let id = KeyId::parse(uri).unwrap();
            assert_eq!(id.version, None, "{uri}");
        }
    }

    #[test]
    fn normalises_case_port_and_trailing_slash() {
        let a = KeyId::parse(&format!(
            "HTTPS://Contoso-KV.Vault.Azure.Net:443/keys/PG-CMK/{V1}/"
        ))
        .unwrap();
        let b = KeyId::parse(&format!(
            "https://contoso-kv.vault.azure.net/keys/pg-cmk/{V1}"
        ))
        .unwrap();
        assert!(a.same_key(&b));
        assert_eq!(a.version, b.version);
        assert_eq!(
            a.to_string(),
            format!("https://contoso-kv.vault.azure.net/keys/PG-CMK/{V1}")
        );
    }

    #[test]
    fn refuses_malformed_identifiers() {
        let bad = [
            "http://contoso-kv.vault.azure.net/keys/pg-cmk",
            "https://contoso-kv.vault.azure.net:8443/keys/pg-cmk",
            "https://contoso-kv.vault.azure.net/secrets/pg-cmk",
            "https://contoso-kv.vault.azure.net/keys/pg-cmk/123",
            "https://contoso-kv.vault.azure.net/keys/pg-cmk/../x",
            "https://contoso-kv.vault.azure.net/keys/pg%2Fcmk",
            "https://user@contoso-kv.vault.azure.net/keys/pg-cmk",
            "https://contoso-kv.vault.azure.net/keys//",
            "https://.vault.azure.net/keys/pg-cmk",
            "https://contoso-kv.vault.azure.net/keys/pg-cmk?x=1",
            &format!("https://contoso-kv.vault.azure.net/keys/pg-cmk/{V1}/extra"),
            "",
        ];
        for uri in bad {
            assert!(KeyId::parse(uri).is_err(), "{uri:?} should be refused");
        }
        assert_eq!(
            KeyId::parse("https://x@evil.example/keys/pg-cmk"),
            Err(KeyIdError::Characters)
        );
        assert_eq!(
            KeyId::parse("https://[::1]/keys/pg-cmk"),
            Err(KeyIdError::Host)
        );
        assert_eq!(
            KeyId::parse("https://[::1]:8443/keys/pg-cmk"),
            Err(KeyIdError::Host)
        );
    }

    #[test]
    fn vault_must_sit_under_a_configured_suffix() {
        let ok = KeyId::parse("https://contoso-kv.vault.azure.net/keys/k").unwrap();
        assert_eq!(ok.check_vault(&suffixes()), Ok(()));

        let other = KeyId::parse("https://contoso-kv.vault.evil.example/keys/k").unwrap();
        assert!(matches!(
            other.check_vault(&suffixes()),
            Err(KeyIdError::Suffix(_))
        ));

        let nested = KeyId::parse("https://a.contoso-kv.vault.azure.net/keys/k").unwrap();
        assert!(matches!(
            nested.check_vault(&suffixes()),
            Err(KeyIdError::VaultName(_))
        ));

        for name in ["ab", "1abc", "abc-", "a--bc", "abcdefghijklmnopqrstuvwxy"] {
            let id = KeyId::parse(&format!("https://{name}.vault.azure.net/keys/k")).unwrap();
            assert!(id.check_vault(&suffixes()).is_err(), "{name}");
        }
    }
}
