//! Azure Resource Manager for `Microsoft.DBforPostgreSQL/flexibleServers`:
//! GET, list and PATCH of servers, and the operation polling URLs. Resource
//! ids are matched case-insensitively, as ARM does.

use serde_json::{Value, json};

use super::FakeAzure;
use super::http::{Reply, Req};
use super::identity::ARM_TOKEN;
use super::operation;
use super::server::Server;
use super::spec::{ServerBehaviour, ServerSpec};
use super::state::{State, lock};

impl FakeAzure {
    /// Adds (or replaces) a flexible server, with the default behaviour.
    pub fn add_server(&self, spec: ServerSpec) {
        let key = spec.id().to_ascii_lowercase();
        lock(&self.shared).servers.insert(key, Server::new(spec));
    }

    /// The body `GET` on this server id would answer now, or `None`.
    pub fn server(&self, id: &str) -> Option<Value> {
        let mut state = lock(&self.shared);
        operation::settle(&mut state);
        let server = state.servers.get(&id.to_ascii_lowercase())?;
        Some(server.body(&state.keys))
    }

    /// Sets `properties.state`, e.g. `Stopped` or `Inaccessible`. Panics
    /// when the server does not exist.
    pub fn set_server_state(&self, id: &str, state: &str) {
        self.with_server(id, |server| server.spec.state = state.to_owned());
    }

    /// Sets how the server's next update operations behave. Panics when the
    /// server does not exist.
    pub fn set_server_behaviour(&self, id: &str, b: ServerBehaviour) {
        self.with_server(id, |server| server.behaviour = b);
    }

    /// Deletes a server (nothing happens if it does not exist).
    pub fn remove_server(&self, id: &str) {
        lock(&self.shared).servers.remove(&id.to_ascii_lowercase());
    }

    fn with_server(&self, id: &str, f: impl FnOnce(&mut Server)) {
        let mut state = lock(&self.shared);
        let Some(server) = state.server_mut(id) else {
            panic!("standin: no flexible server {id}");
        };
        f(server);
    }
}

/// What an ARM path addresses.
enum Target {
    /// One server, by lower-cased id.
    Server(String),
    /// Servers of a subscription, optionally of one resource group.
    List {
        subscription: String,
        group: Option<String>,
    },
    /// An operation URL: subscription, kind (lower case) and operation id.
    Operation {
        subscription: String,
        kind: String,
        id: String,
    },
}

/// Answers a request under `/subscriptions/`.
pub(crate) fn handle(state: &mut State, req: &Req) -> Reply {
    if let Some(refusal) = check_auth(req) {
        return refusal;
    }
    let Some(target) = parse_target(&req.path) else {
        let message = format!("standin ARM does not serve the path '{}'.", req.path);
        return Reply::error(404, "InvalidResourceType", &message);
    };
    match (req.method.as_str(), target) {
        ("GET", Target::Server(key)) => get_server(state, &key),
        ("PATCH", Target::Server(key)) => patch_server(state, req, &key),
        (
            "GET",
            Target::List {
                subscription,
                group,
            },
        ) => list_servers(state, &subscription, group.as_deref()),
        (
            "GET",
            Target::Operation {
                subscription,
                kind,
                id,
            },
        ) if kind == "azureasyncoperation" => operation::status(state, &subscription, &id),
        (
            "GET",
            Target::Operation {
                subscription, id, ..
            },
        ) => operation::result(state, &subscription, &id),
        _ => Reply::error(
            405,
            "MethodNotAllowed",
            "standin ARM does not support this method here.",
        ),
    }
}

/// The ARM token and `api-version` checks shared with Resource Graph.
pub(crate) fn check_auth(req: &Req) -> Option<Reply> {
    if req.bearer() != Some(ARM_TOKEN) {
        let message = match req.header("authorization") {
            None => "Authentication failed. The 'Authorization' header is missing.",
            Some(_) => "Authentication failed. The access token is not valid for this audience.",
        };
        let challenge =
            r#"Bearer authorization_uri="https://login.windows.net/", error="invalid_token""#;
        return Some(
            Reply::error(401, "AuthenticationFailed", message)
                .with_header("WWW-Authenticate", challenge),
        );
    }
    if req.param("api-version").is_none_or(|v| v.is_empty()) {
        let message =
            "The api-version query parameter (?api-version=) is required for all requests.";
        return Some(Reply::error(400, "MissingApiVersionParameter", message));
    }
    None
}

fn parse_target(path: &str) -> Option<Target> {
    let lower = path.trim_matches('/').to_ascii_lowercase();
    let segments: Vec<&str> = lower.split('/').collect();
    let target = match segments.as_slice() {
        [
            "subscriptions",
            _,
            "resourcegroups",
            _,
            "providers",
            "microsoft.dbforpostgresql",
            "flexibleservers",
            _,
        ] => Target::Server(format!("/{lower}")),
        [
            "subscriptions",
            sub,
            "resourcegroups",
            group,
            "providers",
            "microsoft.dbforpostgresql",
            "flexibleservers",
        ] => Target::List {
            subscription: sub.to_string(),
            group: Some(group.to_string()),
        },
        [
            "subscriptions",
            sub,
            "providers",
            "microsoft.dbforpostgresql",
            "flexibleservers",
        ] => Target::List {
            subscription: sub.to_string(),
            group: None,
        },
        [
            "subscriptions",
            sub,
            "providers",
            "microsoft.dbforpostgresql",
            "locations",
            _,
            kind,
            id,
        ] if *kind == "azureasyncoperation" || *kind == "operationresults" => Target::Operation {
            subscription: sub.to_string(),
            kind: kind.to_string(),
            id: id.to_string(),
        },
        _ => return None,
    };
    Some(target)
}

fn get_server(state: &State, key: &str) -> Reply {
    match state.servers.get(key) {
        Some(server) => Reply::json(200, server.body(&state.keys)),
        None => server_not_found(key),
    }
}

fn patch_server(state: &mut State, req: &Req, key: &str) -> Reply {
    if !req.is_json_content() {
        let message =
            "The content media type is not supported. Only 'application/json' is supported.";
        return Reply::error(415, "UnsupportedMediaType", message);
    }
    let Some(body) = req
        .body
        .clone()
        .filter(|b| req.body_is_json && b.is_object())
    else {
        return Reply::error(
            400,
            "InvalidRequestContent",
            "The request content is not a valid JSON object.",
        );
    };
    let Some(server) = state.servers.get(key) else {
        return server_not_found(key);
    };
    if let Some(refusal) = server.patch_refusal() {
        return refusal;
    }
    operation::start(state, key, body)
}

fn list_servers(state: &State, subscription: &str, group: Option<&str>) -> Reply {
    let in_scope = |server: &&Server| {
        server.spec.subscription.eq_ignore_ascii_case(subscription)
            && group.is_none_or(|g| server.spec.resource_group.eq_ignore_ascii_case(g))
    };
    let value: Vec<Value> = state
        .servers
        .values()
        .filter(in_scope)
        .map(|s| s.body(&state.keys))
        .collect();
    Reply::json(200, json!({ "value": value }))
}

fn server_not_found(key: &str) -> Reply {
    let name = key.rsplit('/').next().unwrap_or_default();
    let message = format!(
        "The Resource 'Microsoft.DBforPostgreSQL/flexibleServers/{name}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
    );
    Reply::error(404, "ResourceNotFound", &message)
}
