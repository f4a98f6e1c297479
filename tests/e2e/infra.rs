//! infra/: every Bicep file parses (tree-sitter-bicep; no Bicep CLI can be
//! installed here), and the structure that matters holds: the app settings
//! are the handler's settings with the handler's defaults, Event Grid
//! delivers only key events to KeyEvent with an explicit retry policy and
//! dead-letters through an identity whose role exists first, and every role
//! is the narrowest that works, at the narrowest scope (field case fc-16).
//!
//! The files are read into a small model (declarations with their
//! decorators and bodies) so that each test reads like the property it
//! checks. tree-sitter-bicep misses a few newer constructs (`!`, `...`,
//! `extension`); infra/ keeps to the subset it knows.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use handler::config::{Config, SETTINGS, Source};
use tree_sitter::{Node, Parser, Tree};

use crate::support::repo_root;

// Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
const KEY_VAULT_READER: &str = "21090545-7ca7-4776-b22c-e363652d74d2";
const STORAGE_QUEUE_DATA_CONTRIBUTOR: &str = "974c5e8b-45b9-4653-ba55-5f855dd0fb88";
const STORAGE_BLOB_DATA_OWNER: &str = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b";
const STORAGE_TABLE_DATA_CONTRIBUTOR: &str = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3";
const STORAGE_BLOB_DATA_CONTRIBUTOR: &str = "ba92f5b4-2d11-453d-a403-e96b0029c9fe";
const MONITORING_METRICS_PUBLISHER: &str = "3913510d-42f4-4e42-8a64-420c390055eb";
const MANAGED_IDENTITY_OPERATOR: &str = "f1a07417-d97a-45cb-824c-7a7467783830";

/// Settings the Bicep sets for the Functions host, not for the handler.
const HOST_ONLY_SETTINGS: &[&str] = &[
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
];

/// The Event Grid API version that first carried everything the
/// subscription uses here; older ones rejected the AzureFunction endpoint
/// on Key Vault system topics (fc-16).
const EVENT_GRID_API: &str = "2025-02-15";

#[test]
fn every_bicep_file_parses_without_errors() {
    let files = bicep_files();
    assert!(
        files.iter().any(|f| f.ends_with("infra/main.bicep")),
        "infra/main.bicep is missing: {files:?}"
    );
    let mut problems = Vec::new();
    for path in &files {
        let src = std::fs::read_to_string(path).expect("readable");
        problems.extend(syntax_errors(&relative(path), &src));
    }
    assert!(
        problems.is_empty(),
        "Bicep syntax errors:\n{}",
        problems.join("\n")
    );
}

#[test]
fn syntax_check_names_the_line_and_column_of_an_error() {
    let broken = "param a string\n\nresource x 'A/b@2020-01-01' = {\n  name 'x'\n";
    let problems = syntax_errors("broken.bicep", broken);
    assert!(!problems.is_empty(), "a broken file must not pass");
    assert!(
        problems.iter().any(|p| p.starts_with("broken.bicep:4:")),
        "{problems:?}"
    );
}

#[test]
fn modules_exist_and_get_exactly_the_parameters_they_declare() {
    for file in all_files() {
        for module in file.decls_of(Keyword::Module) {
            let target = file.path.parent().unwrap().join(&module.kind);
            let at = file.at(module);
            assert!(target.is_file(), "{at}: module {} not found", module.kind);
            let callee = BicepFile::load(&target);
            let passed = module
                .body
                .get("params")
                .map(Value::keys)
                .unwrap_or_default();
            let declared: BTreeSet<&str> = callee
                .decls_of(Keyword::Param)
                .map(|p| p.name.as_str())
                .collect();
            for name in &passed {
                assert!(
                    declared.contains(name),
                    "{at}: {name} is not a parameter of {}",
                    module.kind
                );
            }
            for param in callee.decls_of(Keyword::Param) {
                assert!(
                    param.value.is_some() || passed.contains(&param.name.as_str()),
                    "{at}: required parameter {} of {} is not passed",
                    param.name,
                    module.kind
                );
            }
            // A subscription-scope file can only run in a subscription scope.
            let scope = module
                .body
                .get("scope")
                .map(Value::text)
                .unwrap_or_default();
            match callee.target_scope.as_deref() {
                Some("subscription") => {
                    assert!(scope.starts_with("subscription("), "{at}: scope {scope:?}")
                }
                _ => assert!(
                    scope.is_empty() || scope.starts_with("resourceGroup("),
                    "{at}: scope {scope:?}"
                ),
            }
        }
    }
}

#[test]
fn app_settings_are_the_handler_settings() {
    let settings = app_settings();
    let set: BTreeSet<&str> = settings.keys().map(String::as_str).collect();
    let app: BTreeSet<&str> = SETTINGS
        .iter()
        .filter(|(_, source)| *source == Source::App)
        .map(|(name, _)| *name)
        .collect();
    let handler_side: BTreeSet<&str> = set
        .iter()
        .copied()
        .filter(|n| !HOST_ONLY_SETTINGS.contains(n))
        .collect();
    assert_eq!(
        handler_side, app,
        "infra/ app settings (left) differ from handler::config::SETTINGS App names (right)"
    );
    for (name, source) in SETTINGS.iter().filter(|(_, s)| *s != Source::App) {
        assert!(
            !set.contains(name),
            "{name} ({source:?}) must not be set in Azure"
        );
    }
    for name in HOST_ONLY_SETTINGS {
        assert!(set.contains(name), "the host needs {name}");
        assert!(
            !SETTINGS.iter().any(|(n, _)| n == name),
            "{name} is also a handler setting"
        );
    }
    // Flex Consumption takes the runtime from functionAppConfig and rejects these.
    for name in ["FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION"] {
        assert!(
            !set.contains(name),
            "{name} must not be set on Flex Consumption"
        );
    }
    assert_eq!(
        settings["AzureWebJobsStorage__credential"].text(),
        "'managedidentity'"
    );
    assert_eq!(settings["CMK_CREDENTIAL"].text(), "'managed-identity'");
    assert_eq!(settings["AZURE_CLIENT_ID"].text(), "identityClientId");
    assert!(
        settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]
            .text()
            .contains("Authorization=AAD"),
        "telemetry must be sent with the identity (local auth is off)"
    );
}

#[test]
fn app_setting_defaults_are_the_handler_defaults() {
    // Settings whose value comes from the deployment itself, or that the
    // handler requires without a default.
    let deployment_values = [
        "CMK_SUBSCRIPTIONS",
        "AZURE_CLIENT_ID",
        "AzureWebJobsStorage__queueServiceUri",
        "CMK_RECONCILE_SCHEDULE",
    ];
    let main = BicepFile::load(&infra().join("main.bicep"));
    let base = [
        ("CMK_SUBSCRIPTIONS", "00000000-0000-0000-0000-000000000000"),
        ("IDENTITY_ENDPOINT", "http://127.0.0.1:1/msi/token"),
        ("IDENTITY_HEADER", "x"),
    ];
    let config = |extra: Option<(&str, &str)>| {
        let lookup = |name: &str| {
            extra
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
                .or_else(|| {
                    base.iter()
                        .find(|(n, _)| *n == name)
                        .map(|(_, v)| v.to_string())
                })
        };
        format!(
            "{:?}",
            Config::from_lookup(lookup).expect("valid configuration")
        )
    };
    let defaults = config(None);
    for (name, value) in app_settings() {
        if HOST_ONLY_SETTINGS.contains(&name.as_str()) || deployment_values.contains(&name.as_str())
        {
            continue;
        }
        let value = main
            .eval(&value)
            .unwrap_or_else(|| panic!("{name}: cannot work out the default of {}", value.text()));
        assert_eq!(
            config(Some((name.as_str(), value.as_str()))),
            defaults,
            "{name}={value:?}, the Bicep default, is not the handler's default"
        );
    }
    // Required by the host and the handler, so the Bicep must give one
    // the handler accepts.
    let schedule = main
        .param("reconcileSchedule")
        .value
        .as_ref()
        .expect("a default");
    let schedule = main.eval(schedule).expect("a literal default");
    config(Some(("CMK_RECONCILE_SCHEDULE", &schedule)));
}

#[test]
fn numeric_parameters_accept_exactly_the_handlers_range() {
    let main = BicepFile::load(&infra().join("main.bicep"));
    let accepts = |name: &str, value: i64| {
        let value = value.to_string();
        Config::from_lookup(|n| match n {
            "CMK_SUBSCRIPTIONS" => Some("00000000-0000-0000-0000-000000000000".into()),
            _ if n == name => Some(value.clone()),
            _ => None,
        })
        .is_ok()
    };
    let mut checked = 0;
    for (name, value) in app_settings() {
        // `CMK_X: string(param)` in main.bicep's handlerSettings.
        let Some(param) = value
            .text()
            .strip_prefix("string(")
            .and_then(|t| t.strip_suffix(')'))
        else {
            continue;
        };
        let decl = main.param(param);
        let bound = |d: &str| -> i64 {
            decl.decorator(d)
                .unwrap_or_else(|| panic!("{param} has no @{d}"))
                .trim_matches(|c| c == '(' || c == ')')
                .parse()
                .expect("a number")
        };
        let (low, high) = (bound("minValue"), bound("maxValue"));
        assert!(accepts(&name, low), "{name}: the handler refuses {low}");
        assert!(accepts(&name, high), "{name}: the handler refuses {high}");
        assert!(
            !accepts(&name, low - 1),
            "{name}: the Bicep minimum {low} is above the handler's"
        );
        // The handler sets no upper bound on the body size.
        if name != "CMK_MAX_BODY_BYTES" {
            assert!(
                !accepts(&name, high + 1),
                "{name}: the Bicep maximum {high} is below the handler's"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 7, "every numeric setting");
}

#[test]
fn key_events_reach_the_event_function_with_retry_and_dead_letter() {
    let file = BicepFile::load(&infra().join("modules/key-events.bicep"));
    let sub = file.resource("Microsoft.EventGrid/systemTopics/eventSubscriptions");
    assert!(api_version(&sub.kind) >= EVENT_GRID_API, "{}", sub.kind);
    let props = sub.body.get("properties").expect("properties");

    let destination = props.get("destination").expect("destination");
    assert_eq!(
        destination.get("endpointType").and_then(Value::str),
        Some("AzureFunction")
    );
    assert_eq!(
        destination
            .get("properties.maxEventsPerBatch")
            .map(Value::text),
        Some("1")
    );
    assert_eq!(
        props.get("eventDeliverySchema").and_then(Value::str),
        Some("EventGridSchema")
    );

    let types = file.resolve(
        props
            .get("filter.includedEventTypes")
            .expect("event type filter"),
    );
    let types: Vec<&str> = types.items().iter().filter_map(Value::str).collect();
    assert_eq!(
        types,
        [
            "Microsoft.KeyVault.KeyNewVersionCreated",
            "Microsoft.KeyVault.KeyNearExpiry",
            "Microsoft.KeyVault.KeyExpired",
        ]
    );
    let key_filter = file
        .var("keyNameFilters")
        .value
        .as_ref()
        .expect("value")
        .text();
    assert!(
        key_filter.contains("'StringIn'") && key_filter.contains("'subject'"),
        "key names filter on the subject: {key_filter}"
    );

    // Explicit, not Event Grid's defaults, and within Event Grid's limits.
    for (field, max) in [
        ("maxDeliveryAttempts", 30),
        ("eventTimeToLiveInMinutes", 1440),
    ] {
        let value = props
            .get(&format!("retryPolicy.{field}"))
            .expect(field)
            .text();
        let param = file.param(value);
        assert_eq!(param.decorator("minValue"), Some("1"), "{field}");
        assert_eq!(
            param.decorator("maxValue"),
            Some(max.to_string().as_str()),
            "{field}"
        );
    }

    let dead_letter = props
        .get("deadLetterWithResourceIdentity")
        .expect("dead-letter with identity");
    assert_eq!(
        dead_letter.get("identity.type").and_then(Value::str),
        Some("SystemAssigned")
    );
    assert_eq!(
        dead_letter
            .get("deadLetterDestination.endpointType")
            .and_then(Value::str),
        Some("StorageBlob")
    );
    assert!(
        dead_letter
            .get("deadLetterDestination.properties.blobContainerName")
            .is_some()
    );
    assert!(
        props.get("deadLetterDestination").is_none(),
        "no key-based dead-letter as well"
    );

    // The endpoint is the folder of the function with the Event Grid trigger.
    let main = BicepFile::load(&infra().join("main.bicep"));
    let module = main.module("modules/key-events.bicep");
    let endpoint = module
        .body
        .get("params.functionResourceId")
        .expect("endpoint")
        .text();
    assert!(
        endpoint.ends_with("/functions/${eventFunctionName}'"),
        "{endpoint}"
    );
    let function = main.eval_var("eventFunctionName");
    assert_eq!(function_with_binding("eventGridTrigger"), [function]);
}

#[test]
fn subscription_waits_for_the_code_and_for_the_dead_letter_role() {
    let main = BicepFile::load(&infra().join("main.bicep"));
    let key_events = main.module("modules/key-events.bicep");
    assert_eq!(
        key_events.condition.as_deref(),
        Some("(deployEventSubscriptions)")
    );
    let stage = main.param("deployEventSubscriptions");
    assert_eq!(
        stage.value.as_ref().map(Value::text),
        Some("false"),
        "stage 2 is opt-in"
    );

    let dead_letter = main.module("modules/dead-letter-access.bicep");
    let depends: Vec<&str> = key_events
        .body
        .get("dependsOn")
        .map(Value::items)
        .unwrap_or_default()
        .iter()
        .map(Value::text)
        .collect();
    assert!(
        depends.contains(&dead_letter.name.as_str()),
        "dependsOn {depends:?}"
    );
    let grantee = dead_letter
        .body
        .get("params.principalId")
        .expect("principal")
        .text();
    assert!(
        grantee.ends_with(".outputs.systemTopicPrincipalId"),
        "{grantee}"
    );

    // The topic identity may write dead-lettered events into that container only.
    let access = BicepFile::load(&infra().join("modules/dead-letter-access.bicep"));
    let grants = access.role_assignments();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].role, STORAGE_BLOB_DATA_CONTRIBUTOR);
    assert_eq!(grants[0].scope, "container");
}

#[test]
fn a_vault_gets_one_system_topic_created_or_reused() {
    let file = BicepFile::load(&infra().join("modules/vault.bicep"));
    let topics: Vec<&Decl> = file
        .decls_of(Keyword::Resource)
        .filter(|r| r.kind.starts_with("Microsoft.EventGrid/systemTopics@"))
        .collect();
    let created: Vec<&&Decl> = topics.iter().filter(|t| !t.existing).collect();
    let reused: Vec<&&Decl> = topics.iter().filter(|t| t.existing).collect();
    assert_eq!(
        (created.len(), reused.len()),
        (1, 1),
        "one new, one existing"
    );
    let (created, reused) = (created[0], reused[0]);
    assert_eq!(created.condition.as_deref(), Some("(createTopic)"));
    assert_eq!(reused.condition.as_deref(), Some("(!createTopic)"));
    assert_eq!(
        file.var("createTopic").value.as_ref().map(Value::text),
        Some("empty(existingSystemTopicName)")
    );
    assert!(
        api_version(&created.kind) >= EVENT_GRID_API,
        "{}",
        created.kind
    );

    let props = created.body.get("properties").expect("properties");
    assert_eq!(
        props.get("topicType").and_then(Value::str),
        Some("Microsoft.KeyVault.vaults")
    );
    assert_eq!(props.get("source").map(Value::text), Some("vault.id"));
    assert_eq!(
        created.body.get("identity.type").and_then(Value::str),
        Some("SystemAssigned")
    );
    assert_eq!(
        created.body.get("location").map(Value::text),
        Some("vault.location")
    );
    // A reused topic may sit in another resource group than the vault; the
    // subscription is created beside it.
    assert_eq!(
        reused.body.get("scope").map(Value::text),
        Some("resourceGroup(existingSystemTopicResourceGroup)")
    );
    let main = BicepFile::load(&infra().join("main.bicep"));
    let scope = main
        .module("modules/key-events.bicep")
        .body
        .get("scope")
        .expect("scope")
        .text();
    assert!(
        scope.contains("v.existingSystemTopicResourceGroup"),
        "{scope}"
    );
}

#[test]
fn roles_are_the_narrowest_that_work() {
    let mut found = BTreeMap::new();
    for file in all_files() {
        for grant in file.role_assignments() {
            found.insert(
                format!("{}:{}", file.rel, grant.name),
                (grant.role, grant.scope),
            );
        }
    }
    let expected: BTreeMap<String, (String, String)> = [
        // Read key metadata on each vault; no cryptographic operation.
        ("vault.bicep:keyMetadataAccess", KEY_VAULT_READER, "vault"),
        // The app's own storage and telemetry.
        (
            "app-access.bicep:rotationQueueAccess",
            STORAGE_QUEUE_DATA_CONTRIBUTOR,
            "rotationQueue",
        ),
        (
            "app-access.bicep:poisonQueueAccess",
            STORAGE_QUEUE_DATA_CONTRIBUTOR,
            "poisonQueue",
        ),
        (
            "app-access.bicep:blobAccess",
            STORAGE_BLOB_DATA_OWNER,
            "account",
        ),
        (
            "app-access.bicep:tableAccess",
            STORAGE_TABLE_DATA_CONTRIBUTOR,
            "account",
        ),
        (
            "app-access.bicep:telemetryAccess",
            MONITORING_METRICS_PUBLISHER,
            "appInsights",
        ),
        // Event Grid's dead-letter writer.
        (
            "dead-letter-access.bicep:deadLetterWriter",
            STORAGE_BLOB_DATA_CONTRIBUTOR,
            "container",
        ),
        // Assign (only) the servers' identities the PATCH names.
        (
            "identity-access.bicep:assignIdentity",
            MANAGED_IDENTITY_OPERATOR,
            "serverIdentity",
        ),
        // The custom roles, at the module's own resource group / subscription.
        (
            "server-access.bicep:serverOperator",
            "roleDefinitionName",
            "",
        ),
        ("discovery-access.bicep:discovery", "roleDefinitionName", ""),
    ]
    .into_iter()
    .map(|(k, role, scope)| {
        (
            format!("modules/{k}"),
            (role.to_string(), scope.to_string()),
        )
    })
    .collect();
    assert_eq!(found, expected);

    let roles = BicepFile::load(&infra().join("modules/role-definitions.bicep"));
    assert_eq!(roles.target_scope.as_deref(), Some("subscription"));
    let actions = |name: &str| -> Vec<String> {
        let role = roles
            .decls_of(Keyword::Resource)
            .find(|r| r.name == name)
            .expect(name);
        let permissions = role
            .body
            .get("properties.permissions")
            .expect("permissions")
            .items();
        assert_eq!(permissions.len(), 1);
        for none in ["notActions", "dataActions", "notDataActions"] {
            assert_eq!(
                permissions[0].get(none).map(Value::items).map(|a| a.len()),
                Some(0),
                "{name} {none}"
            );
        }
        let scopes = role
            .body
            .get("properties.assignableScopes")
            .expect("assignable scopes")
            .text();
        assert!(
            scopes.ends_with("Scopes"),
            "{name} is assignable only where configured: {scopes}"
        );
        permissions[0]
            .get("actions")
            .expect("actions")
            .items()
            .iter()
            .map(|a| a.str().expect("literal action").to_string())
            .collect()
    };
    assert_eq!(
        actions("serverOperator"),
        [
            "Microsoft.DBforPostgreSQL/flexibleServers/read",
            "Microsoft.DBforPostgreSQL/flexibleServers/write",
        ]
    );
    // The operation status URLs sit at subscription scope
    // (/subscriptions/{id}/providers/Microsoft.DBforPostgreSQL/locations/...),
    // out of reach of a resource-group assignment.
    assert_eq!(
        actions("serverReader"),
        [
            "Microsoft.DBforPostgreSQL/flexibleServers/read",
            "Microsoft.DBforPostgreSQL/locations/azureAsyncOperation/read",
            "Microsoft.DBforPostgreSQL/locations/operationResults/read",
        ]
    );

    // The custom roles are assigned where the parameters say, at those scopes.
    let main = BicepFile::load(&infra().join("main.bicep"));
    for (module, scope) in [
        (
            "modules/server-access.bicep",
            "resourceGroup(rg.subscriptionId, rg.resourceGroup)",
        ),
        ("modules/discovery-access.bicep", "subscription(id)"),
        (
            "modules/identity-access.bicep",
            "resourceGroup(mi.subscriptionId, mi.resourceGroup)",
        ),
    ] {
        let decl = main.module(module);
        assert!(decl.looped, "{module} runs once per configured scope");
        assert_eq!(
            decl.body.get("scope").map(Value::text),
            Some(scope),
            "{module}"
        );
    }
}

#[test]
fn every_role_assignment_says_which_role_and_why() {
    let names = [
        (KEY_VAULT_READER, "Key Vault Reader"),
        (
            STORAGE_QUEUE_DATA_CONTRIBUTOR,
            "Storage Queue Data Contributor",
        ),
        (STORAGE_BLOB_DATA_OWNER, "Storage Blob Data Owner"),
        (
            STORAGE_TABLE_DATA_CONTRIBUTOR,
            "Storage Table Data Contributor",
        ),
        (
            STORAGE_BLOB_DATA_CONTRIBUTOR,
            "Storage Blob Data Contributor",
        ),
        (MONITORING_METRICS_PUBLISHER, "Monitoring Metrics Publisher"),
        (MANAGED_IDENTITY_OPERATOR, "Managed Identity Operator"),
        ("roleDefinitionName", "CMK rotation server"),
    ];
    for file in all_files() {
        let lines: Vec<&str> = file.source.lines().collect();
        for grant in file.role_assignments() {
            let (_, role) = names
                .iter()
                .find(|(id, _)| *id == grant.role)
                .expect("known role");
            let comment: Vec<&str> = lines[..grant.line - 1]
                .iter()
                .rev()
                .take_while(|l| l.trim_start().starts_with("//"))
                .copied()
                .collect();
            let comment = comment.join(" ");
            assert!(
                comment.contains(role) && comment.contains(':'),
                "{}:{}: say above the assignment that it grants {role}, and why",
                file.rel,
                grant.line
            );
        }
    }
}

#[test]
fn the_app_runs_on_flex_consumption_with_identity_based_storage() {
    let app = BicepFile::load(&infra().join("modules/function-app.bicep"));
    let plan = app.resource("Microsoft.Web/serverfarms");
    assert_eq!(plan.body.get("sku.name").and_then(Value::str), Some("FC1"));
    assert_eq!(
        plan.body.get("sku.tier").and_then(Value::str),
        Some("FlexConsumption")
    );
    let site = app.resource("Microsoft.Web/sites");
    assert_eq!(
        site.body.get("kind").and_then(Value::str),
        Some("functionapp,linux")
    );
    assert_eq!(
        site.body.get("identity.type").and_then(Value::str),
        Some("UserAssigned")
    );
    let config = site
        .body
        .get("properties.functionAppConfig")
        .expect("functionAppConfig");
    assert_eq!(
        config.get("runtime.name").and_then(Value::str),
        Some("custom")
    );
    assert_eq!(
        config.get("runtime.version").and_then(Value::str),
        Some("1.0")
    );
    let storage = config
        .get("deployment.storage")
        .expect("deployment storage");
    assert_eq!(
        storage.get("type").and_then(Value::str),
        Some("blobContainer")
    );
    assert_eq!(
        storage.get("authentication.type").and_then(Value::str),
        Some("UserAssignedIdentity")
    );
    assert_eq!(
        site.body.get("properties.httpsOnly").map(Value::text),
        Some("true")
    );
    // No publishing-profile (basic auth) deployments, over SCM or FTP.
    let basic_auth: Vec<(&str, &str)> = app
        .decls_of(Keyword::Resource)
        .filter(|r| {
            r.kind
                .starts_with("Microsoft.Web/sites/basicPublishingCredentialsPolicies@")
        })
        .map(|r| {
            (
                r.body.get("name").and_then(Value::str).unwrap_or_default(),
                r.body
                    .get("properties.allow")
                    .map(Value::text)
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(basic_auth, [("scm", "false"), ("ftp", "false")]);

    let account = BicepFile::load(&infra().join("modules/storage.bicep"));
    let props = account
        .resource("Microsoft.Storage/storageAccounts")
        .body
        .get("properties")
        .expect("properties");
    for (field, value) in [
        ("allowSharedKeyAccess", "false"),
        ("allowBlobPublicAccess", "false"),
        ("minimumTlsVersion", "'TLS1_2'"),
    ] {
        assert_eq!(props.get(field).map(Value::text), Some(value), "{field}");
    }
    let monitoring = BicepFile::load(&infra().join("modules/monitoring.bicep"));
    let insights = monitoring.resource("Microsoft.Insights/components");
    assert_eq!(
        insights
            .body
            .get("properties.DisableLocalAuth")
            .map(Value::text),
        Some("true")
    );
    assert!(
        insights
            .body
            .get("properties.WorkspaceResourceId")
            .is_some(),
        "workspace-based"
    );
}

#[test]
fn queues_and_containers_match_the_function_app() {
    let main = BicepFile::load(&infra().join("main.bicep"));
    let queue = main.eval_var("rotationQueueName");
    let bound: BTreeSet<String> = function_bindings()
        .into_iter()
        .filter_map(|(_, b)| b["queueName"].as_str().map(str::to_string))
        .collect();
    assert_eq!(
        bound,
        BTreeSet::from([queue]),
        "queue names in function-app/*/function.json"
    );

    let storage = BicepFile::load(&infra().join("modules/storage.bicep"));
    let queues: Vec<String> = storage
        .decls_of(Keyword::Resource)
        .filter(|r| {
            r.kind
                .starts_with("Microsoft.Storage/storageAccounts/queueServices/queues@")
        })
        .map(|r| {
            r.body
                .get("name")
                .map(Value::text)
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        queues,
        ["rotationQueueName", "'${rotationQueueName}-poison'"]
    );
    let containers = storage
        .decls_of(Keyword::Resource)
        .filter(|r| {
            r.kind
                .starts_with("Microsoft.Storage/storageAccounts/blobServices/containers@")
        })
        .count();
    assert_eq!(
        containers, 2,
        "deployment package and dead-letter containers"
    );
}

#[test]
fn parameters_are_described_and_outputs_named_after_settings() {
    for file in all_files() {
        for param in file.decls_of(Keyword::Param) {
            assert!(
                param.decorator("description").is_some(),
                "{}: parameter {} has no @description",
                file.at(param),
                param.name
            );
        }
    }
    let main = BicepFile::load(&infra().join("main.bicep"));
    let settings = app_settings();
    for output in main.decls_of(Keyword::Output) {
        let setting_like =
            output.name.contains("__") || output.name.chars().all(|c| !c.is_ascii_lowercase());
        if setting_like {
            assert!(
                settings.contains_key(&output.name),
                "output {} is named like a setting but none is set",
                output.name
            );
        } else {
            assert!(
                output.decorator("description").is_some(),
                "output {} needs a @description",
                output.name
            );
        }
    }
    for name in ["AZURE_CLIENT_ID", "CMK_SUBSCRIPTIONS"] {
        assert!(
            main.decls_of(Keyword::Output).any(|o| o.name == name),
            "output {name}"
        );
    }
}

#[test]
fn example_parameters_fit_main_bicep() {
    let main = BicepFile::load(&infra().join("main.bicep"));
    let text = std::fs::read_to_string(infra().join("main.parameters.example.json"))
        .expect("infra/main.parameters.example.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let given = json["parameters"].as_object().expect("parameters");
    for name in given.keys() {
        main.param(name);
    }
    for param in main.decls_of(Keyword::Param).filter(|p| p.value.is_none()) {
        assert!(
            given.contains_key(&param.name),
            "the example omits required {}",
            param.name
        );
    }
}

// ---------------------------------------------------------------------------
// Helpers over infra/ and function-app/

fn infra() -> PathBuf {
    repo_root().join("infra")
}

fn relative(path: &Path) -> String {
    let root = repo_root().canonicalize().expect("repository root");
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    path.strip_prefix(&root)
        .unwrap_or(&path)
        .display()
        .to_string()
}

fn bicep_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("readable directory")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "bicep") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&infra(), &mut files);
    files
}

fn all_files() -> Vec<BicepFile> {
    bicep_files().iter().map(|p| BicepFile::load(p)).collect()
}

/// `2025-02-15` from `Type@2025-02-15` (previews sort after their date).
fn api_version(kind: &str) -> &str {
    kind.split_once('@').map_or("", |(_, v)| v)
}

/// Every app setting the Function App gets, name to value: the union of
/// function-app.bicep's own objects and the handler settings main.bicep
/// passes in.
fn app_settings() -> BTreeMap<String, Value> {
    let app = BicepFile::load(&infra().join("modules/function-app.bicep"));
    let site = app.resource("Microsoft.Web/sites");
    let list = site
        .body
        .get("properties.siteConfig.appSettings")
        .expect("appSettings")
        .text();
    assert!(
        list.contains("items(appSettings)"),
        "appSettings come from one object: {list}"
    );
    let union = app.var("appSettings").value.as_ref().expect("value").text();
    assert_eq!(
        union,
        "union(hostSettings, identitySettings, handlerSettings)"
    );

    let main = BicepFile::load(&infra().join("main.bicep"));
    let passed = main
        .module("modules/function-app.bicep")
        .body
        .get("params.handlerSettings")
        .expect("handlerSettings")
        .clone();
    let mut settings = BTreeMap::new();
    for object in [
        app.var("hostSettings").value.clone().expect("hostSettings"),
        app.var("identitySettings")
            .value
            .clone()
            .expect("identitySettings"),
        passed,
    ] {
        let Value::Object(fields) = object else {
            panic!("settings must be an object literal")
        };
        for (name, value) in fields {
            assert!(
                settings.insert(name.clone(), value).is_none(),
                "{name} is set twice"
            );
        }
    }
    settings
}

/// (function folder, binding) for every binding in function-app/.
fn function_bindings() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(repo_root().join("function-app")).expect("function-app/") {
        let path = entry.expect("entry").path().join("function.json");
        if let Ok(text) = std::fs::read_to_string(&path) {
            let json: serde_json::Value =
                serde_json::from_str(&text).expect("function.json is JSON");
            let name = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for binding in json["bindings"].as_array().into_iter().flatten() {
                out.push((name.clone(), binding.clone()));
            }
        }
    }
    out
}

/// The functions that have a binding of `kind`.
fn function_with_binding(kind: &str) -> Vec<String> {
    function_bindings()
        .into_iter()
        .filter(|(_, b)| b["type"] == kind)
        .map(|(f, _)| f)
        .collect()
}

// ---------------------------------------------------------------------------
// Syntax check

fn parse(src: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&tree_sitter_bicep::LANGUAGE.into())
        .expect("grammar loads");
    parser.parse(src, None).expect("parser returns a tree")
}

/// `file:line:col: …` for every ERROR and MISSING node.
fn syntax_errors(name: &str, src: &str) -> Vec<String> {
    fn visit(node: Node, name: &str, src: &str, out: &mut Vec<String>) {
        let at = node.start_position();
        let (line, col) = (at.row + 1, at.column + 1);
        if node.is_missing() {
            out.push(format!("{name}:{line}:{col}: missing {}", node.kind()));
        } else if node.is_error() {
            let text = node.utf8_text(src.as_bytes()).unwrap_or("");
            let snippet: String = text.lines().next().unwrap_or("").chars().take(60).collect();
            out.push(format!("{name}:{line}:{col}: syntax error at `{snippet}`"));
        }
        if node.has_error() {
            let mut cursor = node.walk();
            for child in node.children(&mut cursor) {
                visit(child, name, src, out);
            }
        }
    }
    let tree = parse(src);
    let mut out = Vec::new();
    visit(tree.root_node(), name, src, &mut out);
    out
}

// ---------------------------------------------------------------------------
// A small model of a Bicep file

/// A Bicep value, reduced to what the assertions need.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Object(Vec<(String, Value)>),
    Array(Vec<Value>),
    /// A string literal: its content, with `${…}` interpolations as written,
    /// and its source text (quotes included).
    Str(String, String),
    /// Any other expression, as source text.
    Expr(String),
}

impl Value {
    /// A field by dotted path through objects.
    fn get(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self, |value, key| match value {
            Value::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        })
    }

    fn keys(&self) -> Vec<&str> {
        match self {
            Value::Object(fields) => fields.iter().map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        }
    }

    fn items(&self) -> &[Value] {
        match self {
            Value::Array(items) => items,
            _ => &[],
        }
    }

    /// The content of a string literal.
    fn str(&self) -> Option<&str> {
        match self {
            Value::Str(content, _) => Some(content),
            _ => None,
        }
    }

    /// Source text (only for literals and expressions; "" for composites).
    fn text(&self) -> &str {
        match self {
            Value::Str(_, source) | Value::Expr(source) => source,
            _ => "",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Param,
    Var,
    Resource,
    Module,
    Output,
}

/// One top-level declaration.
#[derive(Debug)]
struct Decl {
    keyword: Keyword,
    name: String,
    /// The resource type (`Type@version`), module path, or param/output type.
    kind: String,
    /// `@name(arguments)`, arguments as source text.
    decorators: Vec<(String, String)>,
    existing: bool,
    /// `if (…)` of a conditional resource or module, as source text.
    condition: Option<String>,
    /// Declared with `[for …]`.
    looped: bool,
    /// The body of a resource or module (an object); Null-like otherwise.
    body: Value,
    /// The value of a var or output, or a param's default.
    value: Option<Value>,
    line: usize,
}

impl Decl {
    fn decorator(&self, name: &str) -> Option<&str> {
        self.decorators
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| a.as_str())
    }
}

/// A role assignment: its symbolic name, role (built-in id, or the
/// parameter holding a custom role), scope (symbol; "" when the
/// deployment's own scope) and line.
struct Grant {
    name: String,
    role: String,
    scope: String,
    line: usize,
}

struct BicepFile {
    path: PathBuf,
    /// Path relative to infra/.
    rel: String,
    source: String,
    target_scope: Option<String>,
    decls: Vec<Decl>,
}

impl BicepFile {
    fn load(path: &Path) -> BicepFile {
        let source =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let tree = parse(&source);
        let src = source.as_bytes();
        let mut file = BicepFile {
            path: path.to_path_buf(),
            rel: relative(path).trim_start_matches("infra/").to_string(),
            source: source.clone(),
            target_scope: None,
            decls: Vec::new(),
        };
        let root = tree.root_node();
        let mut decorators = Vec::new();
        let mut cursor = root.walk();
        for node in root.named_children(&mut cursor) {
            match node.kind() {
                "decorators" => decorators = read_decorators(node, src),
                "target_scope_assignment" => {
                    file.target_scope = node
                        .named_child(0)
                        .map(|s| to_value(s, src).str().unwrap_or("").to_string())
                }
                "comment" | "diagnostic_comment" => {}
                kind => {
                    if let Some(decl) = read_decl(kind, node, src, std::mem::take(&mut decorators))
                    {
                        file.decls.push(decl);
                    }
                }
            }
        }
        file
    }

    fn at(&self, decl: &Decl) -> String {
        format!("infra/{}:{}", self.rel, decl.line)
    }

    fn decls_of(&self, keyword: Keyword) -> impl Iterator<Item = &Decl> {
        self.decls.iter().filter(move |d| d.keyword == keyword)
    }

    fn named(&self, keyword: Keyword, name: &str) -> &Decl {
        self.decls_of(keyword)
            .find(|d| d.name == name)
            .unwrap_or_else(|| panic!("infra/{} has no {keyword:?} {name}", self.rel))
    }

    fn param(&self, name: &str) -> &Decl {
        self.named(Keyword::Param, name)
    }

    fn var(&self, name: &str) -> &Decl {
        self.named(Keyword::Var, name)
    }

    /// The one resource (not `existing`) of this type.
    fn resource(&self, kind: &str) -> &Decl {
        let found: Vec<&Decl> = self
            .decls_of(Keyword::Resource)
            .filter(|r| !r.existing && r.kind.split('@').next() == Some(kind))
            .collect();
        assert_eq!(found.len(), 1, "infra/{}: one {kind}", self.rel);
        found[0]
    }

    /// The module declared with this path.
    fn module(&self, path: &str) -> &Decl {
        self.decls_of(Keyword::Module)
            .find(|m| m.kind == path)
            .unwrap_or_else(|| panic!("infra/{} uses no module {path}", self.rel))
    }

    /// A value, or the var it names.
    fn resolve<'a>(&'a self, value: &'a Value) -> &'a Value {
        match value {
            Value::Expr(name) => self
                .decls_of(Keyword::Var)
                .find(|v| &v.name == name)
                .and_then(|v| v.value.as_ref())
                .unwrap_or(value),
            _ => value,
        }
    }

    /// A var's value worked out to a string.
    fn eval_var(&self, name: &str) -> String {
        let value = self.var(name).value.as_ref().expect("value");
        self.eval(value)
            .unwrap_or_else(|| panic!("{name} is not a literal"))
    }

    /// The value of an expression at deployment with default parameters in
    /// Azure's public cloud, for the expressions infra/ uses in settings;
    /// `None` for anything else (module outputs, parameters without default).
    fn eval(&self, value: &Value) -> Option<String> {
        match value {
            Value::Str(content, _) => self.interpolate(content),
            Value::Expr(text) => self.eval_text(text),
            _ => None,
        }
    }

    fn interpolate(&self, content: &str) -> Option<String> {
        let mut out = String::new();
        let mut rest = content;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let end = rest[start..].find('}')? + start;
            out.push_str(&self.eval_text(&rest[start + 2..end])?);
            rest = &rest[end + 1..];
        }
        out.push_str(rest);
        Some(out)
    }

    fn eval_text(&self, text: &str) -> Option<String> {
        let text = text.trim();
        match text {
            "environment().resourceManager" => return Some("https://management.azure.com/".into()),
            "environment().suffixes.keyvaultDns" => return Some(".vault.azure.net".into()),
            "true" | "false" => return Some(text.into()),
            _ => {}
        }
        if text.chars().all(|c| c.is_ascii_digit()) {
            return Some(text.into());
        }
        if let Some(inner) = text
            .strip_prefix("string(")
            .and_then(|t| t.strip_suffix(')'))
        {
            return self.eval_text(inner);
        }
        if let Some(args) = text
            .strip_prefix("substring(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let (s, start) = args.rsplit_once(',')?;
            let s = self.eval_text(s)?;
            return s
                .get(start.trim().parse::<usize>().ok()?..)
                .map(str::to_string);
        }
        if let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\'')) {
            return self.interpolate(inner);
        }
        let decl = self
            .decls
            .iter()
            .find(|d| d.name == text && matches!(d.keyword, Keyword::Param | Keyword::Var))?;
        self.eval(decl.value.as_ref()?)
    }

    /// Every `Microsoft.Authorization/roleAssignments` resource.
    fn role_assignments(&self) -> Vec<Grant> {
        self.decls_of(Keyword::Resource)
            .filter(|r| {
                r.kind
                    .starts_with("Microsoft.Authorization/roleAssignments@")
            })
            .map(|r| {
                let role = r
                    .body
                    .get("properties.roleDefinitionId")
                    .expect("roleDefinitionId")
                    .text();
                // subscriptionResourceId('Microsoft.Authorization/roleDefinitions', <var>)
                let symbol = role
                    .rsplit_once(',')
                    .map_or(role, |(_, last)| last.trim().trim_end_matches(')'));
                let role = match self.decls_of(Keyword::Var).find(|v| v.name == symbol) {
                    Some(var) => var
                        .value
                        .as_ref()
                        .and_then(Value::str)
                        .unwrap_or("")
                        .to_string(),
                    None => symbol.to_string(),
                };
                Grant {
                    name: r.name.clone(),
                    role,
                    scope: r
                        .body
                        .get("scope")
                        .map(Value::text)
                        .unwrap_or("")
                        .to_string(),
                    line: r.line,
                }
            })
            .collect()
    }
}

fn read_decorators(node: Node, src: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut cursor = node.walk();
    for decorator in node
        .named_children(&mut cursor)
        .filter(|d| d.kind() == "decorator")
    {
        let Some(call) = decorator.named_child(0) else {
            continue;
        };
        let name = call
            .child_by_field_name("function")
            .map(|f| text(f, src))
            .unwrap_or_default();
        let args = call
            .child_by_field_name("arguments")
            .map(|a| text(a, src))
            .unwrap_or_default();
        let args = args
            .trim_start_matches('(')
            .trim_end_matches(')')
            .trim()
            .to_string();
        out.push((name, args));
    }
    out
}

fn read_decl(
    kind: &str,
    node: Node,
    src: &[u8],
    decorators: Vec<(String, String)>,
) -> Option<Decl> {
    let keyword = match kind {
        "parameter_declaration" => Keyword::Param,
        "variable_declaration" => Keyword::Var,
        "resource_declaration" => Keyword::Resource,
        "module_declaration" => Keyword::Module,
        "output_declaration" => Keyword::Output,
        _ => return None,
    };
    let children: Vec<Node> = {
        let mut cursor = node.walk();
        node.named_children(&mut cursor)
            .filter(|c| !matches!(c.kind(), "comment" | "diagnostic_comment"))
            .collect()
    };
    let mut decl = Decl {
        keyword,
        name: text(children[0], src),
        kind: String::new(),
        decorators,
        existing: {
            let mut cursor = node.walk();
            node.children(&mut cursor)
                .any(|c| !c.is_named() && c.kind() == "existing")
        },
        condition: None,
        looped: false,
        body: Value::Object(Vec::new()),
        value: None,
        line: node.start_position().row + 1,
    };
    match keyword {
        Keyword::Resource | Keyword::Module => {
            decl.kind = to_value(children[1], src).str().unwrap_or("").to_string();
            let body = *children.last()?;
            decl.body = match body.kind() {
                "if_statement" => {
                    let mut cursor = body.walk();
                    let parts: Vec<Node> = body.named_children(&mut cursor).collect();
                    decl.condition = Some(text(parts[0], src));
                    to_value(*parts.last()?, src)
                }
                "for_statement" => {
                    decl.looped = true;
                    let inner = body.child_by_field_name("body")?;
                    if inner.kind() == "if_statement" {
                        let mut cursor = inner.walk();
                        let parts: Vec<Node> = inner.named_children(&mut cursor).collect();
                        decl.condition = Some(text(parts[0], src));
                        to_value(*parts.last()?, src)
                    } else {
                        to_value(inner, src)
                    }
                }
                _ => to_value(body, src),
            };
        }
        Keyword::Param | Keyword::Output => {
            decl.kind = text(children[1], src);
            decl.value = children.get(2).map(|v| to_value(*v, src));
        }
        Keyword::Var => decl.value = children.get(1).map(|v| to_value(*v, src)),
    }
    Some(decl)
}

fn text(node: Node, src: &[u8]) -> String {
    node.utf8_text(src).unwrap_or("").to_string()
}

fn to_value(node: Node, src: &[u8]) -> Value {
    let mut cursor = node.walk();
    let named = node
        .named_children(&mut cursor)
        .filter(|c| !matches!(c.kind(), "comment" | "diagnostic_comment" | "decorators"));
    match node.kind() {
        "object" => Value::Object(
            named
                .filter(|p| p.kind() == "object_property")
                .filter_map(|p| {
                    let mut cursor = p.walk();
                    let parts: Vec<Node> = p
                        .named_children(&mut cursor)
                        .filter(|c| !matches!(c.kind(), "comment" | "diagnostic_comment"))
                        .collect();
                    let key = match parts.first()?.kind() {
                        "string" => to_value(parts[0], src).str()?.to_string(),
                        _ => text(parts[0], src),
                    };
                    Some((key, to_value(*parts.last()?, src)))
                })
                .collect(),
        ),
        "array" => Value::Array(named.map(|c| to_value(c, src)).collect()),
        "string" => {
            let source = text(node, src);
            let content = source.trim_matches('\'').to_string();
            Value::Str(content, source)
        }
        _ => Value::Expr(text(node, src)),
    }
}
