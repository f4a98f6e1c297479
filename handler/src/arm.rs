//! Resource Manager calls on PostgreSQL flexible servers: GET a server,
//! PATCH its `dataEncryption`, and follow the long-running operation at the
//! pace Azure asks for (`Retry-After`).

use std::time::Duration;

use reqwest::{Method, Url};
use serde_json::Value;

use crate::{
    config::{Config, is_guid},
    http::{AzureError, Budget, Http, Request, Response, Service},
    policy::FlexibleServer,
};

/// How a PATCH was taken.
#[derive(Debug)]
pub enum PatchAccepted {
    /// 200/201: the update is already applied.
    Done,
    /// 202: follow this status URL.
    Running {
        status_url: Url,
        retry_after: Option<Duration>,
    },
    /// 202, but the status URL is not under the configured Resource Manager
    /// endpoint, so it is not called: the update's end is not known.
    Unfollowable { status_url: String },
}

/// The end of a long-running operation.
#[derive(Debug, PartialEq, Eq)]
pub enum OperationEnd {
    Succeeded,
    /// Failed or Canceled, with Azure's error code and message.
    Failed {
        status: String,
        code: String,
        message: String,
    },
    /// Still running when the budget ran out.
    StillRunning,
}

/// Resource Manager client for flexible servers.
pub struct ArmClient<'a> {
    http: &'a Http,
    config: &'a Config,
}

impl<'a> ArmClient<'a> {
    pub fn new(http: &'a Http, config: &'a Config) -> Self {
        ArmClient { http, config }
    }

    /// `GET {server id}`. 404 comes back as an error with `is_not_found`.
    pub async fn get_server(
        &self,
        id: &str,
        budget: &Budget,
    ) -> Result<FlexibleServer, AzureError> {
        let url = self.server_url(id)?;
        let response = self.send(Method::GET, url, None, budget).await?;
        FlexibleServer::from_arm(&response.body).ok_or_else(|| AzureError::Decode {
            service: Service::ResourceManager,
            detail: format!("{id}: not a flexible server body"),
        })
    }

    /// `PATCH {server id}` with `body`.
    pub async fn patch_server(
        &self,
        id: &str,
        body: &Value,
        budget: &Budget,
    ) -> Result<PatchAccepted, AzureError> {
        let url = self.server_url(id)?;
        let response = self.send(Method::PATCH, url, Some(body), budget).await?;
        if response.status != 202 {
            return Ok(PatchAccepted::Done);
        }
        let status_url = response
            .header("azure-asyncoperation")
            .or_else(|| response.header("location"))
            .ok_or_else(|| AzureError::Decode {
                service: Service::ResourceManager,
                detail: "202 without Azure-AsyncOperation or Location".into(),
            })?;
        match self.same_host_url(status_url) {
            Some(url) => Ok(PatchAccepted::Running {
                status_url: url,
                retry_after: response.retry_after(),
            }),
            None => Ok(PatchAccepted::Unfollowable {
                status_url: status_url.to_string(),
            }),
        }
    }

    /// Polls the operation status URL until a terminal status, sleeping
    /// `Retry-After` (or the configured default when it is missing, and never
    /// less than the configured floor) between polls, within
    /// `budget`. A poll that fails with a retryable error is retried at the
    /// pace of its own `Retry-After` (the default pace without one); a 202
    /// answer from a `Location` URL means still running.
    pub async fn wait_for_operation(
        &self,
        status_url: &Url,
        first_wait: Option<Duration>,
        budget: &Budget,
    ) -> Result<OperationEnd, AzureError> {
        let pace = |wait: Option<Duration>| {
            wait.unwrap_or(self.config.default_retry_after)
                .max(self.config.min_poll_interval)
        };
        let mut wait = pace(first_wait);
        loop {
            if !budget.allows(wait) {
                return Ok(OperationEnd::StillRunning);
            }
            tokio::time::sleep(wait).await;
            let response = match self
                .send(Method::GET, status_url.clone(), None, budget)
                .await
            {
                Ok(r) => r,
                // A throttled status read waits as long as Azure asks
                // (fc-12): when that is past the budget, the loop ends and
                // the next delivery reads the server instead.
                Err(e) if e.is_retryable() && !e.is_not_found() => {
                    tracing::warn!(error = %e, "operation status read failed; polling again");
                    wait = pace(e.retry_after());
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(end) = operation_end(&response) {
                return Ok(end);
            }
            wait = pace(response.retry_after());
        }
    }

    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        budget: &Budget,
    ) -> Result<Response, AzureError> {
        let scope = self.config.arm_scope();
        let request = Request {
            service: Service::ResourceManager,
            scope: &scope,
            method,
            url,
            body,
            headers: &[],
        };
        self.http.send(request, budget).await
    }

    fn server_url(&self, id: &str) -> Result<Url, AzureError> {
        if !is_server_id(id) {
            return Err(AzureError::Refused {
                url: id.to_string(),
            });
        }
        let mut url = Url::parse(&format!("{}{id}", self.config.arm_endpoint)).map_err(|_| {
            AzureError::Refused {
                url: id.to_string(),
            }
        })?;
        url.query_pairs_mut()
            .append_pair("api-version", &self.config.postgres_api_version);
        Ok(url)
    }

    /// Accepts a URL Azure handed back only if it points at the configured
    /// Resource Manager endpoint (scheme, host and port).
    fn same_host_url(&self, text: &str) -> Option<Url> {
        let url = Url::parse(text).ok()?;
        let base = Url::parse(&self.config.arm_endpoint).ok()?;
        let same = url.scheme() == base.scheme()
            && url.host_str() == base.host_str()
            && url.port_or_known_default() == base.port_or_known_default();
        same.then_some(url)
    }
}

/// Reads a status document (`Azure-AsyncOperation`) or a `Location` answer.
fn operation_end(response: &Response) -> Option<OperationEnd> {
    if response.status == 202 {
        return None;
    }
    let status = response.body.get("status").and_then(Value::as_str);
    let Some(status) = status else {
        // A Location URL answers 200 with the resource when done.
        return Some(OperationEnd::Succeeded);
    };
    if status.eq_ignore_ascii_case("Succeeded") {
        return Some(OperationEnd::Succeeded);
    }
    if status.eq_ignore_ascii_case("Failed") || status.eq_ignore_ascii_case("Canceled") {
        let error = &response.body["error"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        return Some(OperationEnd::Failed {
            status: status.to_string(),
            code: text(&error["code"]),
            message: text(&error["message"]),
        });
    }
    None
}

/// True for `/subscriptions/{guid}/resourceGroups/{rg}/providers/
/// Microsoft.DBforPostgreSQL/flexibleServers/{name}` with plain names.
pub fn is_server_id(id: &str) -> bool {
    let parts: Vec<&str> = id.split('/').collect();
    let plain = |s: &str| {
        (1..=90).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.()".contains(c))
            && s != "."
            && s != ".."
    };
    parts.len() == 9
        && parts[0].is_empty()
        && parts[1].eq_ignore_ascii_case("subscriptions")
        && is_guid(parts[2])
        && parts[3].eq_ignore_ascii_case("resourceGroups")
        && plain(parts[4])
        && parts[5].eq_ignore_ascii_case("providers")
        && parts[6].eq_ignore_ascii_case("Microsoft.DBforPostgreSQL")
        && parts[7].eq_ignore_ascii_case("flexibleServers")
        && plain(parts[8])
        && parts[8]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The subscription id in a server id, lower-cased.
pub fn subscription_of(id: &str) -> Option<String> {
    is_server_id(id).then(|| {
        id.split('/')
            .nth(2)
            .unwrap_or_default()
            .to_ascii_lowercase()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_ids_are_checked_strictly() {
        let ok = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-data/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg-01";
        assert!(is_server_id(ok));
        assert_eq!(
            subscription_of(ok).as_deref(),
            Some("00000000-0000-0000-0000-000000000000")
        );
        for bad in [
            "/subscriptions/x/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/../providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.Sql/servers/pg",
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg?x=1",
            "https://evil.example/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg/providers/Microsoft.DBforPostgreSQL/flexibleServers/pg",
        ] {
            assert!(!is_server_id(bad), "{bad}");
        }
    }
}
