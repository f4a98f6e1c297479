//! Resource Graph discovery: which flexible servers in the configured
//! subscriptions name a key in `primaryKeyURI` or `geoBackupKeyURI`.
//! Resource Graph lags Resource Manager, so its answer is only a list of
//! candidates; each one is read through Resource Manager before any decision.

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{
    config::{Config, OptInTag},
    http::{AzureError, Budget, Http, Request, Service},
    key_id::KeyId,
};

/// Rows per page (Resource Graph allows up to 1000).
const PAGE_SIZE: u32 = 1000;
/// Pages read at most for one key: a bound on a runaway `$skipToken`.
const MAX_PAGES: usize = 100;

/// A server Resource Graph proposes, with the key URIs and state it
/// shows (possibly stale).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub state: String,
    /// `primaryKeyURI`, lower-cased by the query ("" when absent).
    #[serde(default)]
    pub pk: String,
    /// `geoBackupKeyURI`, lower-cased by the query ("" when absent).
    #[serde(default)]
    pub gk: String,
}

impl Candidate {
    /// The key identifiers this server names, primary first.
    pub fn keys(&self) -> Vec<(crate::policy::Slot, KeyId)> {
        [
            (crate::policy::Slot::Primary, &self.pk),
            (crate::policy::Slot::GeoBackup, &self.gk),
        ]
        .into_iter()
        .filter_map(|(slot, uri)| KeyId::parse(uri).ok().map(|k| (slot, k)))
        .collect()
    }

    /// The key references the handler cannot act on, in words: a URI that
    /// is not a Key Vault key identifier (a Managed HSM key, say), or a
    /// vault outside `CMK_KEYVAULT_DNS_SUFFIXES`.
    pub fn uncovered(&self, suffixes: &[String]) -> Vec<String> {
        [
            (crate::policy::Slot::Primary, &self.pk),
            (crate::policy::Slot::GeoBackup, &self.gk),
        ]
        .into_iter()
        .filter(|(_, uri)| !uri.is_empty())
        .filter_map(|(slot, uri)| {
            let refused = KeyId::parse(uri).and_then(|k| k.check_vault(suffixes));
            refused.err().map(|e| {
                format!(
                    "{}: {} {uri} is not covered ({e}); the handler never rotates it",
                    self.name,
                    slot.uri_field()
                )
            })
        })
        .collect()
    }
}

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<Candidate>,
    #[serde(rename = "$skipToken")]
    skip_token: Option<String>,
    #[serde(rename = "resultTruncated", default)]
    result_truncated: Option<Value>,
}

/// Resource Graph client.
pub struct GraphClient<'a> {
    http: &'a Http,
    config: &'a Config,
}

impl<'a> GraphClient<'a> {
    pub fn new(http: &'a Http, config: &'a Config) -> Self {
        GraphClient { http, config }
    }

    /// All candidate servers for `key` (its vault and name; the version is
    /// ignored) that carry `opt_in` when given, following `$skipToken` page
    /// after page.
    pub async fn find_servers(
        &self,
        key: &KeyId,
        opt_in: Option<&OptInTag>,
        budget: &Budget,
    ) -> Result<Vec<Candidate>, AzureError> {
        self.run(&server_query(Some(key), opt_in), budget).await
    }

    /// Every server in scope (carrying the configured opt-in tag) encrypted
    /// with a Key Vault key.
    pub async fn find_all(&self, budget: &Budget) -> Result<Vec<Candidate>, AzureError> {
        let query = server_query(None, self.config.opt_in_tag.as_ref());
        self.run(&query, budget).await
    }

    async fn run(&self, query: &str, budget: &Budget) -> Result<Vec<Candidate>, AzureError> {
        let mut url = Url::parse(&format!(
            "{}/providers/Microsoft.ResourceGraph/resources",
            self.config.graph_endpoint
        ))
        .map_err(|_| AzureError::Refused {
            url: self.config.graph_endpoint.clone(),
        })?;
        url.query_pairs_mut()
            .append_pair("api-version", &self.config.graph_api_version);
        let scope = self.config.arm_scope();

        let mut servers = Vec::new();
        let mut skip_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut options = json!({ "$top": PAGE_SIZE, "resultFormat": "objectArray" });
            if let Some(token) = &skip_token {
                options["$skipToken"] = json!(token);
            }
            let body = json!({ "subscriptions": self.config.subscriptions, "query": query, "options": options });
            let request = Request {
                service: Service::ResourceGraph,
                scope: &scope,
                method: Method::POST,
                url: url.clone(),
                body: Some(&body),
                headers: &[],
            };
            let response = self.http.send(request, budget).await?;
            let page: Page =
                serde_json::from_value(response.body).map_err(|e| AzureError::Decode {
                    service: Service::ResourceGraph,
                    detail: e.to_string(),
                })?;
            if is_true(page.result_truncated.as_ref()) {
                tracing::warn!("resource graph says the result is truncated");
            }
            servers.extend(page.data);
            skip_token = page.skip_token.filter(|t| !t.is_empty());
            if skip_token.is_none() {
                return Ok(servers);
            }
        }
        Err(AzureError::Decode {
            service: Service::ResourceGraph,
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }
}

/// `resultTruncated` is documented as the string "true"/"false"; accept a
/// boolean too.
fn is_true(value: Option<&Value>) -> bool {
    match value {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// The KQL. The vault host and key name were checked against Key Vault's
/// naming rules (letters, digits, '-', '.') and the tag against a similar
/// set, so they cannot close the quoted literals they sit in.
pub fn server_query(key: Option<&KeyId>, opt_in: Option<&OptInTag>) -> String {
    let mut query = String::from(
        "resources\n\
         | where type =~ 'microsoft.dbforpostgresql/flexibleservers'\n\
         | where tostring(properties.dataEncryption.type) =~ 'AzureKeyVault'\n\
         | extend pk = tolower(tostring(properties.dataEncryption.primaryKeyURI)), gk = tolower(tostring(properties.dataEncryption.geoBackupKeyURI))\n",
    );
    if let Some(key) = key {
        query.push_str(&key_filter(key));
    }
    if let Some(tag) = opt_in {
        query.push_str(&format!(
            "| where tags['{}'] =~ '{}'\n",
            tag.name, tag.value
        ));
    }
    query.push_str("| project id, name, subscriptionId, resourceGroup, state = tostring(properties.state), pk, gk\n| order by id asc");
    query
}

fn key_filter(key: &KeyId) -> String {
    let vault = key.vault.to_ascii_lowercase();
    let name = key.name.to_ascii_lowercase();
    format!(
        "| extend pkVault = extract(@'^https://([^/:]+)', 1, pk), pkName = extract(@'^https://[^/]+/keys/([^/?]+)', 1, pk)\n\
         | extend gkVault = extract(@'^https://([^/:]+)', 1, gk), gkName = extract(@'^https://[^/]+/keys/([^/?]+)', 1, gk)\n\
         | where (pkVault == '{vault}' and pkName == '{name}') or (gkVault == '{vault}' and gkName == '{name}')\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_names_the_vault_key_and_tag() {
        let config = Config::from_lookup(|k| match k {
            "CMK_SUBSCRIPTIONS" => Some("00000000-0000-0000-0000-000000000000".into()),
            "CMK_OPT_IN_TAG" => Some("cmk-rotation=enabled".into()),
            _ => None,
        })
        .unwrap();
        let key = KeyId::parse(
            "https://Contoso-KV.vault.azure.net/keys/PG-cmk/11111111111111111111111111111111",
        )
        .unwrap();
        let q = server_query(Some(&key), config.opt_in_tag.as_ref());
        assert!(q.contains("(pkVault == 'contoso-kv.vault.azure.net' and pkName == 'pg-cmk')"));
        assert!(q.contains("(gkVault == 'contoso-kv.vault.azure.net' and gkName == 'pg-cmk')"));
        assert!(q.contains("| where tags['cmk-rotation'] =~ 'enabled'"));
        assert!(
            !q.contains("1111"),
            "the version plays no part in discovery"
        );
    }
}
