//! Tokens for Azure, from `azure_identity`, behind a small trait so tests and
//! other credentials can stand in. The credential is chosen from the
//! configuration; nothing here falls back to the VM metadata address.

use std::{fmt, sync::Arc};

use azure_core::{
    credentials::TokenCredential,
    http::{ClientOptions, RetryOptions},
};
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
};

use crate::config::CredentialKind;

/// A secret (token or client secret). Its `Debug` output never shows the value.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The token value, for the Authorization header only.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Gets tokens for one scope at a time (`https://vault.azure.net/.default`).
#[async_trait::async_trait]
pub trait TokenSource: Send + Sync {
    async fn token(&self, scope: &str) -> Result<Secret, String>;
}

/// The production token source: one `azure_identity` credential.
pub struct IdentityTokenSource {
    credential: Arc<dyn TokenCredential>,
}

impl IdentityTokenSource {
    /// Builds the credential the configuration names. Token calls are not
    /// retried by the credential: the handler's own retry decides.
    pub fn new(kind: &CredentialKind) -> Result<IdentityTokenSource, String> {
        let client_options = ClientOptions {
            retry: RetryOptions::none(),
            ..Default::default()
        };
        let credential: Arc<dyn TokenCredential> = match kind {
            CredentialKind::ManagedIdentity { client_id } => {
                ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                    user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                    client_options,
                }))
                .map_err(|e| error_chain(&e))?
            }
            CredentialKind::ClientSecret {
                tenant_id,
                client_id,
                secret,
            } => ClientSecretCredential::new(
                tenant_id,
                client_id.clone(),
                secret.secret().to_string().into(),
                Some(ClientSecretCredentialOptions { client_options }),
            )
            .map_err(|e| error_chain(&e))?,
            CredentialKind::AzureCli => {
                AzureCliCredential::new(None).map_err(|e| error_chain(&e))?
            }
        };
        Ok(IdentityTokenSource { credential })
    }
}

#[async_trait::async_trait]
impl TokenSource for IdentityTokenSource {
    async fn token(&self, scope: &str) -> Result<Secret, String> {
        let token = self
            .credential
            .get_token(&[scope], None)
            .await
            .map_err(|e| error_chain(&e))?;
        Ok(Secret(token.token.secret().to_string()))
    }
}

/// The whole cause chain of an error: the identity crate's top-level message
/// is generic and the reason sits in `source()`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    // The Azure CLI's messages span lines; one log line per failure.
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
