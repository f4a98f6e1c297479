//! Configuration: every app setting the handler reads, parsed and checked
//! once at start-up. A bad value stops start-up with the setting's name.
//! No other module reads the environment.

use std::{net::SocketAddr, time::Duration};

/// Which credential gets tokens for Azure.
#[derive(Debug, Clone)]
pub enum CredentialKind {
    /// App Service / Functions managed identity (`IDENTITY_ENDPOINT` and
    /// `IDENTITY_HEADER`); `client_id` selects a user-assigned identity.
    ManagedIdentity { client_id: Option<String> },
    /// A service principal with a client secret.
    ClientSecret {
        tenant_id: String,
        client_id: String,
        secret: crate::token::Secret,
    },
    /// The Azure CLI of a person at a terminal (`az account get-access-token`).
    AzureCli,
}

impl CredentialKind {
    /// The credential's name, as `CMK_CREDENTIAL` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialKind::ManagedIdentity { .. } => "managed-identity",
            CredentialKind::ClientSecret { .. } => "client-secret",
            CredentialKind::AzureCli => "azure-cli",
        }
    }
}

/// A tag that opts a server in: only servers carrying it are rotated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptInTag {
    pub name: String,
    pub value: String,
}

/// The handler's whole configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`: the port the host calls (default 8080).
    pub port: u16,
    /// `CMK_SUBSCRIPTIONS`: subscriptions searched for servers (required).
    pub subscriptions: Vec<String>,
    /// `CMK_OPT_IN_TAG`: `name=value`; when set, only tagged servers rotate.
    pub opt_in_tag: Option<OptInTag>,
    /// `CMK_ARM_ENDPOINT`: Resource Manager base URL.
    pub arm_endpoint: String,
    /// `CMK_ARM_AUDIENCE`: token audience for Resource Manager.
    pub arm_audience: String,
    /// `CMK_RESOURCE_GRAPH_ENDPOINT`: Resource Graph base URL.
    pub graph_endpoint: String,
    /// `CMK_KEYVAULT_DNS_SUFFIXES`: vault hosts accepted (comma-separated).
    pub keyvault_suffixes: Vec<String>,
    /// `CMK_KEYVAULT_AUDIENCE`: token audience for Key Vault.
    pub keyvault_audience: String,
    /// `CMK_KEYVAULT_CONNECT_ADDRESS`: connect to this address for every vault
    /// host (the local stand-in); the port also goes into the URL.
    pub keyvault_connect: Option<SocketAddr>,
    /// `CMK_ALLOW_HTTP`: allow plain-http endpoints (local stand-in only).
    pub allow_http: bool,
    /// `CMK_POSTGRES_API_VERSION`.
    pub postgres_api_version: String,
    /// `CMK_KEYVAULT_API_VERSION`.
    pub keyvault_api_version: String,
    /// `CMK_RESOURCE_GRAPH_API_VERSION`.
    pub graph_api_version: String,
    /// `CMK_CREDENTIAL` and the Azure identity settings.
    pub credential: CredentialKind,
    /// `CMK_EVENT_BUDGET_SECS`: time the event function may spend, waits included.
    pub event_budget: Duration,
    /// `CMK_OPERATION_BUDGET_SECS`: time one server's update may take.
    pub operation_budget: Duration,
    /// `CMK_DEFAULT_RETRY_AFTER_SECS`: poll pace when ARM sends no Retry-After.
    pub default_retry_after: Duration,
    /// `CMK_BUSY_POLL_MS`: pace of looking again at a busy server.
    pub busy_poll: Duration,
    /// `CMK_MIN_POLL_INTERVAL_MS`: floor under Retry-After between polls.
    pub min_poll_interval: Duration,
    /// `CMK_HTTP_TIMEOUT_SECS`: timeout of one outbound request.
    pub http_timeout: Duration,
    /// `CMK_MAX_BODY_BYTES`: largest invocation body accepted.
    pub max_body_bytes: usize,
    /// `CMK_LOG_FORMAT`: `text` or `json`.
    pub json_logs: bool,
    /// `AzureWebJobsStorage__queueServiceUri`: the queue service of the
    /// function's storage, read for the poison queue in the status report.
    pub queue_service: Option<String>,
    /// `CMK_RECONCILE_SCHEDULE`: NCRONTAB of the Reconcile timer (the host
    /// reads it through function.json; checked here so a typo stops start-up).
    pub reconcile_schedule: Option<String>,
}

/// Who provides a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An app setting the deployment sets (infra/ sets every one of these
    /// that it needs, under the same name).
    App,
    /// Set by the Functions host or the platform, never by the deployment.
    Platform,
    /// For the local stand-in and tests only; never set in Azure.
    Local,
}

/// Every setting the handler reads, with who provides it. One list, checked
/// against `from_lookup` (unit test) and against `infra/` (Bicep tests).
pub const SETTINGS: &[(&str, Source)] = &[
    ("FUNCTIONS_CUSTOMHANDLER_PORT", Source::Platform),
    ("FUNCTIONS_HTTPWORKER_PORT", Source::Platform),
    ("IDENTITY_ENDPOINT", Source::Platform),
    ("IDENTITY_HEADER", Source::Platform),
    ("CMK_SUBSCRIPTIONS", Source::App),
    ("CMK_OPT_IN_TAG", Source::App),
    ("CMK_ARM_ENDPOINT", Source::App),
    ("CMK_ARM_AUDIENCE", Source::App),
    ("CMK_RESOURCE_GRAPH_ENDPOINT", Source::App),
    ("CMK_KEYVAULT_DNS_SUFFIXES", Source::App),
    ("CMK_KEYVAULT_AUDIENCE", Source::App),
    ("CMK_POSTGRES_API_VERSION", Source::App),
    ("CMK_KEYVAULT_API_VERSION", Source::App),
    ("CMK_RESOURCE_GRAPH_API_VERSION", Source::App),
    ("CMK_CREDENTIAL", Source::App),
    ("AZURE_CLIENT_ID", Source::App),
    ("AZURE_TENANT_ID", Source::Local),
    ("AZURE_CLIENT_SECRET", Source::Local),
    ("CMK_EVENT_BUDGET_SECS", Source::App),
    ("CMK_OPERATION_BUDGET_SECS", Source::App),
    ("CMK_DEFAULT_RETRY_AFTER_SECS", Source::App),
    ("CMK_MIN_POLL_INTERVAL_MS", Source::App),
    ("CMK_BUSY_POLL_MS", Source::App),
    ("CMK_HTTP_TIMEOUT_SECS", Source::App),
    ("CMK_MAX_BODY_BYTES", Source::App),
    ("CMK_LOG_FORMAT", Source::App),
    ("AzureWebJobsStorage__queueServiceUri", Source::App),
    ("CMK_RECONCILE_SCHEDULE", Source::App),
    ("CMK_ALLOW_HTTP", Source::Local),
    ("CMK_KEYVAULT_CONNECT_ADDRESS", Source::Local),
];

/// A setting that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("setting {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

fn err(name: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name,
        reason: reason.into(),
    }
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (tests pass a map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let allow_http = parse_bool(&get, "CMK_ALLOW_HTTP")?.unwrap_or(false);
        let endpoint = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = get(name).unwrap_or_else(|| default.to_string());
            check_endpoint(name, &value, allow_http)
        };
        let arm_endpoint = endpoint("CMK_ARM_ENDPOINT", "https://management.azure.com")?;

        let config = Config {
            port: parse_num(&get, "FUNCTIONS_CUSTOMHANDLER_PORT")?
                .or(parse_num(&get, "FUNCTIONS_HTTPWORKER_PORT")?)
                .unwrap_or(8080),
            subscriptions: parse_subscriptions(get("CMK_SUBSCRIPTIONS"))?,
            opt_in_tag: get("CMK_OPT_IN_TAG").map(|v| parse_tag(&v)).transpose()?,
            graph_endpoint: endpoint("CMK_RESOURCE_GRAPH_ENDPOINT", &arm_endpoint)?,
            arm_endpoint,
            arm_audience: endpoint("CMK_ARM_AUDIENCE", "https://management.azure.com")?,
            keyvault_suffixes: parse_suffixes(get("CMK_KEYVAULT_DNS_SUFFIXES"))?,
            keyvault_audience: endpoint("CMK_KEYVAULT_AUDIENCE", "https://vault.azure.net")?,
            keyvault_connect: get("CMK_KEYVAULT_CONNECT_ADDRESS")
                .map(|v| {
                    v.parse()
                        .map_err(|_| err("CMK_KEYVAULT_CONNECT_ADDRESS", "not ip:port"))
                })
                .transpose()?,
            allow_http,
            postgres_api_version: get("CMK_POSTGRES_API_VERSION").unwrap_or("2025-08-01".into()),
            keyvault_api_version: get("CMK_KEYVAULT_API_VERSION").unwrap_or("7.5".into()),
            graph_api_version: get("CMK_RESOURCE_GRAPH_API_VERSION").unwrap_or("2024-04-01".into()),
            credential: parse_credential(&get)?,
            event_budget: secs(&get, "CMK_EVENT_BUDGET_SECS", 20)?,
            operation_budget: secs(&get, "CMK_OPERATION_BUDGET_SECS", 1500)?,
            default_retry_after: secs(&get, "CMK_DEFAULT_RETRY_AFTER_SECS", 60)?,
            min_poll_interval: Duration::from_millis(
                parse_num(&get, "CMK_MIN_POLL_INTERVAL_MS")?.unwrap_or(1000),
            ),
            http_timeout: secs(&get, "CMK_HTTP_TIMEOUT_SECS", 30)?,
            busy_poll: Duration::from_millis(
                parse_num(&get, "CMK_BUSY_POLL_MS")?.unwrap_or(30_000),
            ),
            max_body_bytes: parse_num(&get, "CMK_MAX_BODY_BYTES")?.unwrap_or(1 << 20),
            json_logs: match get("CMK_LOG_FORMAT").as_deref() {
                None | Some("text") => false,
                Some("json") => true,
                Some(other) => {
                    return Err(err(
                        "CMK_LOG_FORMAT",
                        format!("{other:?} is not text or json"),
                    ));
                }
            },
            queue_service: get("AzureWebJobsStorage__queueServiceUri")
                .map(|v| check_endpoint("AzureWebJobsStorage__queueServiceUri", &v, allow_http))
                .transpose()?,
            reconcile_schedule: get("CMK_RECONCILE_SCHEDULE")
                .map(|v| check_schedule(&v))
                .transpose()?,
        };
        config.check_ranges()?;
        if let CredentialKind::ManagedIdentity {
            client_id: Some(id),
        } = &config.credential
            && !is_guid(id)
        {
            return Err(err("AZURE_CLIENT_ID", format!("{id:?} is not a client id")));
        }
        Ok(config)
    }

    /// Values that parse but cannot work.
    fn check_ranges(&self) -> Result<(), ConfigError> {
        // Said in the setting's own unit: `0 is outside 1 to 25 (seconds)`.
        let within = |name: &'static str, value: Duration, low: Duration, high: Duration| {
            if value < low || value > high {
                let (unit, show): (&str, fn(Duration) -> u128) = if name.ends_with("_MS") {
                    ("milliseconds", |d| d.as_millis())
                } else {
                    ("seconds", |d| u128::from(d.as_secs()))
                };
                return Err(err(
                    name,
                    format!(
                        "{} is outside {} to {} ({unit})",
                        show(value),
                        show(low),
                        show(high)
                    ),
                ));
            }
            Ok(())
        };
        let secs = Duration::from_secs;
        // Event Grid waits 30 s for the host's answer.
        within(
            "CMK_EVENT_BUDGET_SECS",
            self.event_budget,
            secs(1),
            secs(25),
        )?;
        // host.json functionTimeout is 30 min; leave room to report.
        within(
            "CMK_OPERATION_BUDGET_SECS",
            self.operation_budget,
            secs(1),
            secs(1740),
        )?;
        within(
            "CMK_HTTP_TIMEOUT_SECS",
            self.http_timeout,
            secs(1),
            secs(120),
        )?;
        // A busy server is read again at this pace: never a tight loop.
        within(
            "CMK_BUSY_POLL_MS",
            self.busy_poll,
            Duration::from_millis(100),
            secs(600),
        )?;
        within(
            "CMK_DEFAULT_RETRY_AFTER_SECS",
            self.default_retry_after,
            secs(1),
            secs(600),
        )?;
        within(
            "CMK_MIN_POLL_INTERVAL_MS",
            self.min_poll_interval,
            Duration::from_millis(10),
            secs(600),
        )?;
        for (name, version) in [
            ("CMK_POSTGRES_API_VERSION", &self.postgres_api_version),
            ("CMK_KEYVAULT_API_VERSION", &self.keyvault_api_version),
            ("CMK_RESOURCE_GRAPH_API_VERSION", &self.graph_api_version),
        ] {
            if !is_api_version(version) {
                return Err(err(name, format!("{version:?} is not an api-version")));
            }
        }
        if self.keyvault_connect.is_some() && !self.allow_http {
            return Err(err(
                "CMK_KEYVAULT_CONNECT_ADDRESS",
                "is for the local stand-in only and needs CMK_ALLOW_HTTP=true",
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err(err("CMK_MAX_BODY_BYTES", "must be at least 1024"));
        }
        Ok(())
    }

    /// Settings in the environment that look like ours but are not read:
    /// a misspelt `CMK_OPT_IN_TAG` must not silently widen the scope.
    pub fn unknown_settings(names: impl IntoIterator<Item = String>) -> Vec<String> {
        names
            .into_iter()
            .filter(|n| n.starts_with("CMK_") && !SETTINGS.iter().any(|(known, _)| known == n))
            .collect()
    }

    /// The OAuth scope for Resource Manager and Resource Graph.
    pub fn arm_scope(&self) -> String {
        format!("{}/.default", self.arm_audience.trim_end_matches('/'))
    }

    /// The OAuth scope for Key Vault.
    pub fn keyvault_scope(&self) -> String {
        format!("{}/.default", self.keyvault_audience.trim_end_matches('/'))
    }
}

type Get<'a> = dyn Fn(&str) -> Option<String> + 'a;

fn parse_num<T: std::str::FromStr>(
    get: &Get,
    name: &'static str,
) -> Result<Option<T>, ConfigError> {
    get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| err(name, format!("{v:?} is not a whole number in range")))
        })
        .transpose()
}

fn secs(get: &Get, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    Ok(Duration::from_secs(
        parse_num(get, name)?.unwrap_or(default),
    ))
}

fn parse_bool(get: &Get, name: &'static str) -> Result<Option<bool>, ConfigError> {
    get(name)
        .map(|v| match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(err(
                name,
                format!("{v:?} is not true or false (1/0 and yes/no also work)"),
            )),
        })
        .transpose()
}

fn check_endpoint(
    name: &'static str,
    value: &str,
    allow_http: bool,
) -> Result<String, ConfigError> {
    let url = reqwest::Url::parse(value).map_err(|e| err(name, format!("{value:?}: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(err(name, "plain http needs CMK_ALLOW_HTTP=true")),
        other => return Err(err(name, format!("unsupported scheme {other}"))),
    }
    if url.host_str().is_none() || url.query().is_some() || !url.username().is_empty() {
        return Err(err(
            name,
            format!("{value:?} must be scheme://host[:port][/path]"),
        ));
    }
    Ok(value.trim_end_matches('/').to_string())
}

/// `2025-08-01`, `2025-06-01-preview`, `7.5`.
fn is_api_version(value: &str) -> bool {
    let dated = value.len() >= 10
        && value[..10].chars().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }
        })
        && (value.len() == 10 || &value[10..] == "-preview");
    let numbered = value.split('.').count() == 2
        && value
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    dated || numbered
}

/// Six NCRONTAB fields (`{second} {minute} {hour} {day} {month} {day-of-week}`).
fn check_schedule(value: &str) -> Result<String, ConfigError> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let allowed = |f: &&str| {
        f.chars()
            .all(|c| c.is_ascii_alphanumeric() || "*/,-".contains(c))
    };
    if fields.len() != 6 || !fields.iter().all(allowed) {
        return Err(err(
            "CMK_RECONCILE_SCHEDULE",
            format!("{value:?} is not a six-field NCRONTAB expression"),
        ));
    }
    Ok(fields.join(" "))
}

fn parse_subscriptions(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    const NAME: &str = "CMK_SUBSCRIPTIONS";
    let value = value.ok_or_else(|| err(NAME, "required: the subscription ids to search"))?;
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            is_guid(s)
                .then(|| s.to_ascii_lowercase())
                .ok_or_else(|| err(NAME, format!("{s:?} is not a subscription id")))
        })
        .collect()
}

/// True for the 8-4-4-4-12 hexadecimal form.
pub fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit()))
}

fn parse_tag(value: &str) -> Result<OptInTag, ConfigError> {
    const NAME: &str = "CMK_OPT_IN_TAG";
    let (name, tag_value) = value
        .split_once('=')
        .ok_or_else(|| err(NAME, "expected name=value"))?;
    if name.trim().is_empty() || tag_value.trim().is_empty() {
        return Err(err(NAME, "expected name=value, both non-empty"));
    }
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if !plain(name.trim()) || !plain(tag_value.trim()) {
        return Err(err(
            NAME,
            "name and value may hold only letters, digits, '-', '_' and '.'",
        ));
    }
    Ok(OptInTag {
        name: name.trim().to_string(),
        value: tag_value.trim().to_string(),
    })
}

fn parse_suffixes(value: Option<String>) -> Result<Vec<String>, ConfigError> {
    const NAME: &str = "CMK_KEYVAULT_DNS_SUFFIXES";
    let value = value.unwrap_or_else(|| ".vault.azure.net".to_string());
    let suffixes: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.starts_with('.') {
                s
            } else {
                format!(".{s}")
            }
        })
        .collect();
    // At least three labels (`.vault.azure.net`, `.vault.azure.cn`): a
    // suffix like `.com` would let an event name any host.
    let valid = |s: &String| {
        let labels: Vec<&str> = s[1..].split('.').collect();
        labels.len() >= 3
            && labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    if suffixes.is_empty() || !suffixes.iter().all(valid) {
        return Err(err(
            NAME,
            format!(
                "{value:?} is not a comma-separated list of DNS suffixes of three labels or more (like .vault.azure.net)"
            ),
        ));
    }
    Ok(suffixes)
}

fn parse_credential(get: &Get) -> Result<CredentialKind, ConfigError> {
    const NAME: &str = "CMK_CREDENTIAL";
    let has_mi = get("IDENTITY_ENDPOINT").is_some() && get("IDENTITY_HEADER").is_some();
    let kind = get(NAME).unwrap_or_else(|| {
        if has_mi {
            "managed-identity"
        } else {
            "azure-cli"
        }
        .into()
    });
    match kind.as_str() {
        // Never let the identity crate fall back to the VM metadata address.
        "managed-identity" if !has_mi => Err(err(
            NAME,
            "managed-identity needs IDENTITY_ENDPOINT and IDENTITY_HEADER (set by Functions)",
        )),
        "managed-identity" => {
            let endpoint = get("IDENTITY_ENDPOINT").unwrap_or_default();
            let host = reqwest::Url::parse(&endpoint)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string));
            if host.is_none_or(|h| h == "169.254.169.254") {
                return Err(err(
                    "IDENTITY_ENDPOINT",
                    "must be the URL of the platform's local token endpoint (set by Functions), never the VM metadata address",
                ));
            }
            Ok(CredentialKind::ManagedIdentity {
                client_id: get("AZURE_CLIENT_ID"),
            })
        }
        "client-secret" => {
            let need = |n: &'static str| {
                get(n).ok_or_else(|| err(n, "required with CMK_CREDENTIAL=client-secret"))
            };
            Ok(CredentialKind::ClientSecret {
                secret: crate::token::Secret::new(need("AZURE_CLIENT_SECRET")?),
                tenant_id: need("AZURE_TENANT_ID")?,
                client_id: need("AZURE_CLIENT_ID")?,
            })
        }
        "azure-cli" => Ok(CredentialKind::AzureCli),
        other => Err(err(
            NAME,
            format!("{other:?} is not managed-identity, client-secret or azure-cli"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const SUB: &str = "00000000-0000-0000-0000-000000000000";

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_name_the_public_cloud() {
        let c = config(&[("CMK_SUBSCRIPTIONS", SUB)]).unwrap();
        assert_eq!(c.arm_endpoint, "https://management.azure.com");
        assert_eq!(c.graph_endpoint, "https://management.azure.com");
        assert_eq!(c.keyvault_suffixes, vec![".vault.azure.net"]);
        assert_eq!(c.keyvault_scope(), "https://vault.azure.net/.default");
        assert!(matches!(c.credential, CredentialKind::AzureCli));
        assert_eq!(c.port, 8080);
    }

    #[test]
    fn a_bad_setting_names_itself() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[], "CMK_SUBSCRIPTIONS"),
            (&[("CMK_SUBSCRIPTIONS", "not-a-guid")], "CMK_SUBSCRIPTIONS"),
            (
                &[
                    ("CMK_SUBSCRIPTIONS", SUB),
                    ("CMK_ARM_ENDPOINT", "http://127.0.0.1:1"),
                ],
                "CMK_ARM_ENDPOINT",
            ),
            (
                &[
                    ("CMK_SUBSCRIPTIONS", SUB),
                    ("FUNCTIONS_CUSTOMHANDLER_PORT", "x"),
                ],
                "FUNCTIONS_CUSTOMHANDLER_PORT",
            ),
            (
                &[
                    ("CMK_SUBSCRIPTIONS", SUB),
                    ("CMK_CREDENTIAL", "managed-identity"),
                ],
                "CMK_CREDENTIAL",
            ),
            (
                &[("CMK_SUBSCRIPTIONS", SUB), ("CMK_OPT_IN_TAG", "a='b'")],
                "CMK_OPT_IN_TAG",
            ),
            (
                &[("CMK_SUBSCRIPTIONS", SUB), ("CMK_LOG_FORMAT", "xml")],
                "CMK_LOG_FORMAT",
            ),
            (
                &[
                    ("CMK_SUBSCRIPTIONS", SUB),
                    (
                        "IDENTITY_ENDPOINT",
                        "http://169.254.169.254/metadata/identity/oauth2/token",
                    ),
                    ("IDENTITY_HEADER", "h"),
                ],
                "IDENTITY_ENDPOINT",
            ),
        ];
        for (pairs, name) in cases {
            let e = config(pairs).unwrap_err();
            assert_eq!(e.name, *name, "{pairs:?}");
        }
    }

    #[test]
    fn errors_say_what_is_wrong_in_the_settings_own_terms() {
        let reason = |pairs: &[(&str, &str)]| config(pairs).unwrap_err().reason;
        assert_eq!(
            reason(&[("CMK_SUBSCRIPTIONS", SUB), ("CMK_EVENT_BUDGET_SECS", "0")]),
            "0 is outside 1 to 25 (seconds)"
        );
        assert_eq!(
            reason(&[("CMK_SUBSCRIPTIONS", SUB), ("CMK_BUSY_POLL_MS", "50")]),
            "50 is outside 100 to 600000 (milliseconds)"
        );
        assert_eq!(
            reason(&[("CMK_SUBSCRIPTIONS", SUB), ("CMK_OPT_IN_TAG", "x=")]),
            "expected name=value, both non-empty"
        );
        assert!(
            reason(&[("CMK_SUBSCRIPTIONS", SUB), ("CMK_ALLOW_HTTP", "banana")]).contains("yes/no")
        );
    }

    #[test]
    fn managed_identity_is_chosen_only_when_functions_provides_it() {
        let c = config(&[
            ("CMK_SUBSCRIPTIONS", SUB),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
            ("IDENTITY_HEADER", "h"),
            ("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555"),
        ])
        .unwrap();
        assert!(matches!(
            c.credential,
            CredentialKind::ManagedIdentity { client_id: Some(ref id) } if id == "11111111-2222-3333-4444-555555555555"
        ));
    }

    #[test]
    fn the_settings_list_names_exactly_what_is_read() {
        let asked = std::cell::RefCell::new(std::collections::BTreeSet::new());
        let _ = Config::from_lookup(|name| {
            asked.borrow_mut().insert(name.to_string());
            match name {
                "CMK_SUBSCRIPTIONS" => Some(SUB.into()),
                "CMK_CREDENTIAL" => Some("client-secret".into()),
                "IDENTITY_ENDPOINT"
                | "IDENTITY_HEADER"
                | "AZURE_CLIENT_ID"
                | "AZURE_TENANT_ID"
                | "AZURE_CLIENT_SECRET" => Some("x".into()),
                _ => None,
            }
        })
        .unwrap();
        let listed: std::collections::BTreeSet<String> =
            SETTINGS.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(asked.into_inner(), listed);
    }

    #[test]
    fn misspelt_settings_are_found() {
        let names = [
            "CMK_OPTIN_TAG",
            "CMK_OPT_IN_TAG",
            "PATH",
            "CMK_SUBSCRIPTIONS",
        ]
        .map(String::from);
        assert_eq!(
            Config::unknown_settings(names),
            vec!["CMK_OPTIN_TAG".to_string()]
        );
    }

    #[test]
    fn http_endpoints_need_the_opt_in() {
        let c = config(&[
            ("CMK_SUBSCRIPTIONS", SUB),
            ("CMK_ALLOW_HTTP", "true"),
            ("CMK_ARM_ENDPOINT", "http://127.0.0.1:9/"),
            ("CMK_OPT_IN_TAG", "cmk-rotation=enabled"),
        ])
        .unwrap();
        assert_eq!(c.arm_endpoint, "http://127.0.0.1:9");
        assert_eq!(c.opt_in_tag.unwrap().name, "cmk-rotation");
    }
}
