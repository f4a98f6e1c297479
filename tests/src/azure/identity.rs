//! The App Service managed-identity endpoint (protocol `2019-08-01`) and the
//! fixed tokens the other fake services accept.

use serde_json::json;

use super::http::{Reply, Req};
use super::state::{State, now_epoch};

/// The token issued for `https://vault.azure.net`; fake Key Vault accepts
/// only this one.
pub const VAULT_TOKEN: &str = "standin-token-vault";

/// The token issued for `https://management.azure.com/`; fake Resource
/// Manager and Resource Graph accept only this one.
pub const ARM_TOKEN: &str = "standin-token-arm";

/// The `client_id` reported when the request names no identity.
pub const DEFAULT_CLIENT_ID: &str = "5a7d1e2b-0000-4000-8000-00000000c11d";

/// The secret the fake endpoint requires in `x-identity-header`.
pub(crate) const IDENTITY_HEADER: &str = "standin-identity-header-value";

/// The only protocol version the fake endpoint speaks.
const API_VERSION: &str = "2019-08-01";

/// The access token the fake issues for a resource URI (or a `/.default`
/// scope): [`VAULT_TOKEN`], [`ARM_TOKEN`], or `standin-token-{host}` for
/// anything else.
pub fn token_for_resource(resource: &str) -> String {
    let resource = resource.trim().to_ascii_lowercase();
    let resource = resource.trim_end_matches("/.default").trim_end_matches('/');
    match resource {
        "https://vault.azure.net" => VAULT_TOKEN.to_owned(),
        "https://management.azure.com" | "https://management.core.windows.net" => {
            ARM_TOKEN.to_owned()
        }
        other => {
            let host = other
                .trim_start_matches("https://")
                .trim_start_matches("http://");
            format!("standin-token-{}", host.replace(['/', ' '], "-"))
        }
    }
}

/// How the identity endpoint writes when a token expires. Each form has been
/// seen from a managed-identity endpoint; the documented 2019-08-01 answer
/// is [`TokenExpiry::EpochString`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenExpiry {
    /// `"expires_on": "1768035600"` (documented for 2019-08-01).
    #[default]
    EpochString,
    /// `"expires_on": 1768035600`, a JSON number.
    EpochNumber,
    /// `"expires_on": "01/10/2026 09:00:00 +00:00"` (the 2017-09-01 form).
    DateTimeOffset,
    /// `"expires_on": "2026-01-10T09:00:00Z"`.
    Rfc3339,
    /// No `expires_on`, only `"expires_in": "3600"` (seconds from now).
    ExpiresInOnly,
}

/// The expiry fields of a token valid for `lifetime` seconds.
fn expiry_fields(form: TokenExpiry, lifetime: i64) -> Vec<(&'static str, serde_json::Value)> {
    let at = now_epoch() + lifetime;
    let date = super::state::rfc3339_of(at);
    match form {
        TokenExpiry::EpochString => vec![("expires_on", json!(at.to_string()))],
        TokenExpiry::EpochNumber => vec![("expires_on", json!(at))],
        TokenExpiry::DateTimeOffset => {
            // `YYYY-MM-DDTHH:MM:SSZ` rearranged as `MM/DD/YYYY HH:MM:SS +00:00`.
            let (y, m, d, t) = (&date[..4], &date[5..7], &date[8..10], &date[11..19]);
            vec![("expires_on", json!(format!("{m}/{d}/{y} {t} +00:00")))]
        }
        TokenExpiry::Rfc3339 => vec![("expires_on", json!(date))],
        TokenExpiry::ExpiresInOnly => vec![("expires_in", json!(lifetime.to_string()))],
    }
}

/// `GET /msi/token?api-version=2019-08-01&resource=..[&client_id=..]`.
pub(crate) fn handle(state: &State, req: &Req) -> Reply {
    if req.method != "GET" {
        return token_error(405, "only GET is supported");
    }
    if req.header("x-identity-header") != Some(IDENTITY_HEADER) {
        return token_error(400, "the x-identity-header header is missing or wrong");
    }
    if req.param("api-version").as_deref() != Some(API_VERSION) {
        return token_error(400, "api-version must be 2019-08-01");
    }
    let Some(resource) = req.param("resource").filter(|r| !r.is_empty()) else {
        return token_error(400, "the resource parameter is required");
    };
    let client_id = req
        .param("client_id")
        .unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned());
    let mut body = json!({
        "access_token": token_for_resource(&resource),
        "resource": resource,
        "token_type": "Bearer",
        "client_id": client_id,
    });
    for (name, value) in expiry_fields(state.token_expiry, 3600) {
        body[name] = value;
    }
    Reply::json(200, body)
}

fn token_error(status: u16, description: &str) -> Reply {
    let body = json!({
        "statusCode": status,
        "error": "invalid_request",
        "error_description": format!("standin managed identity: {description}"),
    });
    Reply::json(status, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_the_same_token_for_resource_and_scope_forms() {
        assert_eq!(token_for_resource("https://vault.azure.net"), VAULT_TOKEN);
        assert_eq!(
            token_for_resource("https://vault.azure.net/.default"),
            VAULT_TOKEN
        );
        assert_eq!(
            token_for_resource("https://management.azure.com/"),
            ARM_TOKEN
        );
        assert_eq!(
            token_for_resource("https://management.azure.com"),
            ARM_TOKEN
        );
        assert_eq!(
            token_for_resource("https://graph.microsoft.com/"),
            "standin-token-graph.microsoft.com"
        );
    }
}
