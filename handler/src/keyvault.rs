//! Key Vault data-plane reads: the current version of a key and one version
//! by identifier (`GET /keys/{name}[/{version}]`). The handler never writes
//! to Key Vault.

use reqwest::{Method, Url};
use serde::Deserialize;

use crate::{
    config::Config,
    http::{AzureError, Budget, Http, Request, Service},
    key_id::KeyId,
};

/// What the handler needs of a key version (the KeyBundle).
#[derive(Debug, Clone, Deserialize)]
pub struct KeyBundle {
    pub key: JsonWebKey,
    #[serde(default)]
    pub attributes: KeyAttributes,
}

/// The public part of the key.
#[derive(Debug, Clone, Deserialize)]
pub struct JsonWebKey {
    pub kid: String,
    #[serde(default)]
    pub kty: String,
    #[serde(default)]
    pub key_ops: Vec<String>,
    /// RSA modulus, base64url.
    #[serde(default)]
    pub n: Option<String>,
}

/// Key attributes; times are epoch seconds.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct KeyAttributes {
    pub enabled: Option<bool>,
    pub nbf: Option<i64>,
    pub exp: Option<i64>,
    pub created: Option<i64>,
}

impl KeyBundle {
    /// RSA modulus size in bits, from the length of `n`.
    pub fn rsa_bits(&self) -> Option<u32> {
        let n = self.key.n.as_deref()?.trim_end_matches('=');
        let bytes = n.len() * 6 / 8;
        Some(u32::try_from(bytes).ok()? * 8)
    }

    /// The key identifier Key Vault gave this version.
    pub fn key_id(&self) -> Result<KeyId, AzureError> {
        KeyId::parse(&self.key.kid).map_err(|e| AzureError::Decode {
            service: Service::KeyVault,
            detail: format!("kid {}: {e}", self.key.kid),
        })
    }
}

/// Reads keys from the vaults that the configuration allows.
pub struct KeyVaultClient<'a> {
    http: &'a Http,
    config: &'a Config,
}

impl<'a> KeyVaultClient<'a> {
    pub fn new(http: &'a Http, config: &'a Config) -> Self {
        KeyVaultClient { http, config }
    }

    /// Gets the version `key` names, or the current version when `key` has
    /// none. Errors: the vault is not under a configured suffix (Refused),
    /// or any Key Vault failure.
    pub async fn get_key(&self, key: &KeyId, budget: &Budget) -> Result<KeyBundle, AzureError> {
        let url = self.key_url(key)?;
        let scope = self.config.keyvault_scope();
        let response = self
            .http
            .send(
                Request {
                    service: Service::KeyVault,
                    scope: &scope,
                    method: Method::GET,
                    url,
                    body: None,
                    headers: &[],
                },
                budget,
            )
            .await?;
        let bundle: KeyBundle =
            serde_json::from_value(response.body).map_err(|e| AzureError::Decode {
                service: Service::KeyVault,
                detail: e.to_string(),
            })?;
        let returned = bundle.key_id()?;
        let asked_version_matches = key.version.is_none() || returned.version == key.version;
        if !returned.same_key(key) || !asked_version_matches || returned.version.is_none() {
            return Err(AzureError::Decode {
                service: Service::KeyVault,
                detail: format!("asked for {key}, got {returned}"),
            });
        }
        Ok(bundle)
    }

    fn key_url(&self, key: &KeyId) -> Result<Url, AzureError> {
        let refused = || AzureError::Refused {
            url: key.to_string(),
        };
        key.check_vault(&self.config.keyvault_suffixes)
            .map_err(|_| refused())?;
        let (scheme, port) = match self.config.keyvault_connect {
            Some(addr) if self.config.allow_http => ("http", format!(":{}", addr.port())),
            Some(addr) => ("https", format!(":{}", addr.port())),
            None => ("https", String::new()),
        };
        let mut text = format!("{scheme}://{}{port}/keys/{}", key.vault, key.name);
        if let Some(version) = &key.version {
            text.push('/');
            text.push_str(version);
        }
        let mut url = Url::parse(&text).map_err(|_| refused())?;
        url.query_pairs_mut()
            .append_pair("api-version", &self.config.keyvault_api_version);
        Ok(url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rsa_size_comes_from_the_modulus_length() {
        let n = "A".repeat(342); // 256 bytes in unpadded base64url
        let bundle: KeyBundle = serde_json::from_value(json!({
            "key": {"kid": "https://v.vault.azure.net/keys/k/0123456789abcdef0123456789abcdef", "kty": "RSA", "n": n},
            "attributes": {"enabled": true}
        }))
        .unwrap();
        assert_eq!(bundle.rsa_bits(), Some(2048));
    }
}
