//! The App Service managed-identity endpoint (protocol `2019-08-01`) and the
//! fixed tokens the other fake services accept.

use serde_json::json;

use super::http::{Reply, Req};
use super::state::now_epoch;

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

/// `GET /msi/token?api-version=2019-08-01&resource=..[&client_id=..]`.
pub(crate) fn handle(req: &Req) -> Reply {
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
    Reply::json(
        200,
        json!({
            "access_token": token_for_resource(&resource),
            "expires_on": (now_epoch() + 3600).to_string(),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }),
    )
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
