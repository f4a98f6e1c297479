//! Azure's failures, one kind per test, each asserting the handler's
//! decision (retry, acknowledge, report) and the calls it made. Kinds
//! covered elsewhere: Retry-After on Resource Graph and ARM
//! (`throttling.rs`), 409 ServerBusy, Updating servers and operations that
//! fail busy (`ordering.rs`), unusable key versions in the event function
//! and Inaccessible servers (`key_versions.rs`), Stopped servers and updates
//! that do not take effect (`rotation.rs`). RELIABILITY.md lists them all.

use std::time::{Duration, Instant, SystemTime};

use serde_json::json;
use standin::azure::{Fault, OpOutcome, Recorded, ServerBehaviour, TokenExpiry, VAULT_TOKEN};

use crate::support::*;

/// A world with a pinned server on v1 and a new current version v2.
async fn rotating(extra: &[(&str, &str)]) -> (World, String) {
    let w = World::start_with(extra).await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.add_version(&v(2));
    (w, id)
}

fn calls(w: &World, method: &str, path_part: &str) -> Vec<Recorded> {
    let part = path_part.to_ascii_lowercase();
    w.azure
        .requests()
        .into_iter()
        .filter(|r| r.method == method && r.path.to_ascii_lowercase().contains(&part))
        .collect()
}

/// Never a panic, and the process still answers.
async fn still_healthy(w: &World) {
    assert!(!w.logged("panicked"), "a handler panicked");
    let port = w.host.handler_port();
    let ready = reqwest::get(format!("http://127.0.0.1:{port}/")).await;
    assert!(ready.is_ok_and(|r| r.status().is_success()));
}

fn error_body(code: &str) -> serde_json::Value {
    json!({"error": {"code": code, "message": format!("standin: {code}")}})
}

// ---- Resource Manager ----

#[tokio::test]
async fn arm_throttling_longer_than_the_budget_fails_the_message_without_waiting() {
    let (w, id) = rotating(&[("CMK_OPERATION_BUDGET_SECS", "5")]).await;
    w.azure
        .inject(Fault::throttled(Some("GET"), "contoso-pg-01", "372"));
    let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(600));
    w.azure
        .inject(Fault::throttled(Some("PATCH"), "contoso-pg-01", &later));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let started = Instant::now();
    let stats = w.drain().await;

    assert!(started.elapsed() < Duration::from_secs(5), "no long sleep");
    assert_eq!(stats.failed, 2, "one failed delivery per throttled call");
    let patches = w.patches_for(&id);
    assert_eq!(
        patches.iter().map(|p| p.status).collect::<Vec<_>>(),
        [429, 202]
    );
    assert!(w.logged("throttled the request (retry after 372 s)"));
    assert!(w.logged("throttled the request (retry after 5"));
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    still_healthy(&w).await;
}

#[tokio::test]
async fn server_errors_on_reads_are_retried_within_the_invocation() {
    let (w, id) = rotating(&[]).await;
    w.azure
        .inject(Fault::status(Some("GET"), "contoso-pg-01", 500));
    w.azure
        .inject(Fault::status(Some("GET"), "/keys/pg-cmk", 503));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert_eq!(stats.failed, 0, "retried inside the invocation");
    let gets = calls(&w, "GET", "flexibleServers/contoso-pg-01");
    assert_eq!(gets[0].status, 500);
    assert!(gets[1].at.duration_since(gets[0].at) >= Duration::from_millis(900));
    assert_eq!(w.patches_for(&id).len(), 1);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_500_on_the_patch_is_not_repeated_inside_the_invocation() {
    let (w, id) = rotating(&[]).await;
    w.azure
        .inject(Fault::status(Some("PATCH"), "contoso-pg-01", 500));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    // The write may or may not have happened: the redelivery reads the
    // server before it writes again.
    assert_eq!(stats.failed, 1);
    let patches = w.patches_for(&id);
    assert_eq!(
        patches.iter().map(|p| p.status).collect::<Vec<_>>(),
        [500, 202]
    );
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_503_on_the_patch_is_retried_because_the_service_did_not_act() {
    let (w, id) = rotating(&[]).await;
    w.azure
        .inject(Fault::status(Some("PATCH"), "contoso-pg-01", 503));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert_eq!(stats.failed, 0);
    let patches = w.patches_for(&id);
    assert_eq!(
        patches.iter().map(|p| p.status).collect::<Vec<_>>(),
        [503, 202]
    );
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn every_another_operation_in_progress_answer_is_retried_later() {
    // 409 ServerBusy is in ordering.rs; these are the other shapes.
    let answers = [
        (409, "Conflict"),
        (400, "AnotherOperationInProgress"),
        (400, "OperationInProgress"),
        (409, "ServerIsNotReady"),
    ];
    for (status, code) in answers {
        let (w, id) = rotating(&[]).await;
        w.azure.inject(
            Fault::status(Some("PATCH"), "contoso-pg-01", status).with_body(error_body(code)),
        );

        w.deliver(&new_version_event("e-1", &v(2))).await;
        let stats = w.drain().await;

        assert_eq!(stats.failed, 0, "{code}: the same delivery looks again");
        assert_eq!(stats.poisoned, 0, "{code}");
        assert_eq!(w.patches_for(&id).len(), 2, "{code}");
        assert!(w.logged(code), "{code}");
        assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)), "{code}");
    }
}

#[tokio::test]
async fn a_throttling_answer_that_means_another_operation_is_retried() {
    let (w, id) = rotating(&[]).await;
    w.azure.inject(
        Fault::throttled(Some("PATCH"), "contoso-pg-01", "1")
            .with_body(error_body("RetryableErrorDueToAnotherOperation")),
    );

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert_eq!(stats.failed, 0, "waited within the invocation");
    assert_eq!(w.patches_for(&id).len(), 2);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn operations_that_end_canceled_or_failed_are_retried_then_succeed() {
    let outcomes = [
        (OpOutcome::Canceled, "ended Canceled: OperationCanceled"),
        (
            OpOutcome::Failed {
                code: "InternalServerError".into(),
                message: "An unexpected error occurred.".into(),
            },
            "ended Failed: InternalServerError",
        ),
    ];
    for (outcome, logged) in outcomes {
        let (w, id) = rotating(&[]).await;
        w.azure.set_server_behaviour(
            &id,
            ServerBehaviour {
                outcome,
                ..ServerBehaviour::default()
            },
        );

        w.deliver(&new_version_event("e-1", &v(2))).await;
        // The first delivery's operation ends badly (200 with the status
        // and an error code); the service is healthy for the next one.
        let drain = w.drain();
        let heal = async {
            while !w.logged(logged) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            w.azure
                .set_server_behaviour(&id, ServerBehaviour::default());
        };
        let (stats, ()) = tokio::join!(drain, heal);

        assert!(w.logged(logged), "{logged}");
        assert!(stats.failed >= 1, "{logged}: retried");
        assert!(w.patches_for(&id).len() >= 2, "{logged}");
        assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    }
}

#[tokio::test]
async fn a_status_poll_that_fails_is_polled_again() {
    let (w, id) = rotating(&[]).await;
    w.azure
        .inject(Fault::status(Some("GET"), "azureAsyncOperation", 500));
    w.azure
        .inject(Fault::reset(Some("GET"), "azureAsyncOperation"));
    w.azure
        .inject(Fault::throttled(Some("GET"), "azureAsyncOperation", "0"));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert_eq!(stats.failed, 0);
    assert_eq!(w.patches_for(&id).len(), 1);
    let polls: Vec<u16> = calls(&w, "GET", "azureAsyncOperation")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(&polls[..3], [500, Fault::RESET, 429]);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_throttled_status_poll_waits_as_asked_or_leaves_it_to_the_next_delivery() {
    let (w, id) = rotating(&[("CMK_OPERATION_BUDGET_SECS", "5")]).await;
    w.azure
        .finish_operations_unpolled_after(Duration::from_millis(0));
    w.azure
        .inject(Fault::throttled(Some("GET"), "azureAsyncOperation", "372").times(3));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let started = Instant::now();
    let stats = w.drain().await;

    assert!(started.elapsed() < Duration::from_secs(5), "no long sleep");
    assert_eq!(stats.failed, 1, "the throttled delivery is retried");
    let polls = calls(&w, "GET", "azureAsyncOperation");
    assert_eq!(
        polls.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429],
        "no poll again before Retry-After; the redelivery reads the server"
    );
    assert_eq!(w.patches_for(&id).len(), 1);
    assert!(w.logged("throttled the request (retry after 372 s)"));
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_status_url_on_another_host_is_never_called_and_the_message_is_retried() {
    let (w, id) = rotating(&[]).await;
    // Every name the handler resolves leads to the stand-in, so a call to
    // this URL would be recorded under its path.
    let elsewhere = format!(
        "http://elsewhere.example:{}/steered/azureAsyncOperation/1",
        w.azure.addr().port()
    );
    w.azure.inject(
        Fault::status(Some("PATCH"), "contoso-pg-01", 202)
            .without_body()
            .with_header("Azure-AsyncOperation", &elsewhere)
            .with_header("Retry-After", "0"),
    );

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert!(
        w.azure
            .requests()
            .iter()
            .all(|r| !r.path.contains("steered")),
        "the foreign status URL was called"
    );
    assert_eq!(
        stats.failed, 1,
        "not acknowledged: the update's end is unknown"
    );
    assert!(w.logged("is not under CMK_ARM_ENDPOINT, so it was not followed"));
    assert_eq!(
        w.patches_for(&id)
            .iter()
            .map(|p| p.status)
            .collect::<Vec<_>>(),
        [202, 202],
        "the redelivery read the server (still on v1) and updated it"
    );
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn an_operation_url_that_answers_404_leaves_the_decision_to_the_next_delivery() {
    let (w, id) = rotating(&[]).await;
    w.azure
        .finish_operations_unpolled_after(Duration::from_millis(0));
    w.azure.inject(
        Fault::status(Some("GET"), "azureAsyncOperation", 404)
            .with_body(error_body("OperationNotFound")),
    );

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert_eq!(stats.failed, 1, "not acknowledged blindly");
    assert_eq!(w.patches_for(&id).len(), 1, "the redelivery sees it done");
    assert!(w.logged("already uses"));
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_missing_retry_after_polls_at_the_configured_default_pace() {
    let (w, id) = rotating(&[("CMK_DEFAULT_RETRY_AFTER_SECS", "1")]).await;
    w.azure.omit_retry_after();

    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.drain().await;

    let patch = &w.patches_for(&id)[0];
    assert!(patch.header("retry-after").is_none());
    let polls = calls(&w, "GET", "azureAsyncOperation");
    assert_eq!(polls.len(), 2);
    assert!(polls[0].at.duration_since(patch.at) >= Duration::from_millis(950));
    assert!(polls[1].at.duration_since(polls[0].at) >= Duration::from_millis(950));
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_read_that_times_out_is_retried_and_a_write_that_times_out_is_redelivered() {
    let (w, id) = rotating(&[("CMK_HTTP_TIMEOUT_SECS", "1")]).await;
    w.azure
        .finish_operations_unpolled_after(Duration::from_millis(0));
    let slow = Duration::from_millis(1500);
    w.azure
        .inject(Fault::status(Some("GET"), "contoso-pg-01", 200).with_delay(slow));
    // The PATCH is applied but its answer comes too late.
    w.azure
        .inject(Fault::lost_answer(Some("PATCH"), "contoso-pg-01").with_delay(slow));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    assert!(w.logged("timed out"));
    assert_eq!(stats.failed, 1, "the write's fate is unknown: redelivered");
    assert_eq!(w.patches_for(&id).len(), 1, "never written twice");
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    still_healthy(&w).await;
}

#[tokio::test]
async fn reset_connections_on_reads_writes_and_lost_answers() {
    let (w, id) = rotating(&[]).await;
    w.azure
        .finish_operations_unpolled_after(Duration::from_millis(0));
    w.azure.inject(Fault::reset(Some("GET"), "contoso-pg-01"));
    w.azure.inject(Fault::reset(Some("PATCH"), "contoso-pg-01"));
    w.azure
        .inject(Fault::lost_answer(Some("PATCH"), "contoso-pg-01"));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;

    // Reset GET: retried at once. Reset PATCH: not applied, redelivered.
    // Lost answer: applied, redelivered, seen done.
    assert_eq!(stats.failed, 2);
    let patches: Vec<u16> = w.patches_for(&id).iter().map(|p| p.status).collect();
    assert_eq!(patches, [Fault::RESET, 202]);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    still_healthy(&w).await;
}

// ---- Server states ----

#[tokio::test]
async fn a_disabled_server_is_reported_and_a_starting_one_waits() {
    let w = World::start().await;
    w.add_version(&v(1));
    let disabled = w.add_server("pg-disabled", &key_uri(&v(1)));
    let starting = w.add_server("pg-starting", &key_uri(&v(1)));
    w.azure.set_server_state(&disabled, "Disabled");
    w.azure.set_server_state(&starting, "Starting");
    w.add_version(&v(2));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let drain = w.drain();
    let start = async {
        tokio::time::sleep(Duration::from_millis(150)).await;
        w.azure.set_server_state(&starting, "Ready");
    };
    let (stats, ()) = tokio::join!(drain, start);

    assert!(w.patches_for(&disabled).is_empty());
    assert!(w.logged("pg-disabled is Disabled and is not touched"));
    assert!(w.logged("pg-starting is Starting"));
    assert_eq!(stats.poisoned, 0);
    assert_eq!(w.patches_for(&starting).len(), 1);
    assert_eq!(w.encryption(&starting, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_server_deleted_after_planning_is_acknowledged() {
    let (w, id) = rotating(&[]).await;
    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.azure.remove_server(&id);

    let stats = w.drain().await;

    assert_eq!((stats.succeeded, stats.failed), (1, 0));
    assert!(w.azure.patches().is_empty());
    assert!(w.logged("does not exist (any more)"));
}

// ---- Key Vault ----

#[tokio::test]
async fn key_vault_refusing_access_fails_the_event_for_redelivery() {
    for status in [401, 403] {
        let (w, id) = rotating(&[]).await;
        w.azure.inject(
            Fault::status(Some("GET"), "/keys/pg-cmk", status).with_body(error_body("Forbidden")),
        );

        let (first, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
        assert_eq!(first, 500, "{status}: a role assignment may still arrive");
        assert!(calls(&w, "POST", "ResourceGraph").is_empty(), "{status}");

        let (second, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
        assert_eq!(second, 202);
        w.drain().await;
        assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    }
}

#[tokio::test]
async fn key_vault_refusing_access_retries_the_message() {
    let (w, id) = rotating(&[]).await;
    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.azure
        .inject(Fault::status(Some("GET"), "/keys/pg-cmk", 403).with_body(error_body("Forbidden")));

    let stats = w.drain().await;

    assert_eq!(stats.failed, 1);
    assert_eq!(w.patches_for(&id).len(), 1);
    assert!(w.logged("key vault answered 403"));
}

#[tokio::test]
async fn a_deleted_key_is_acknowledged_without_discovery() {
    let (w, _) = rotating(&[]).await;
    w.azure.inject(
        Fault::status(Some("GET"), "/keys/pg-cmk", 404).with_body(error_body("KeyNotFound")),
    );

    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;

    assert_eq!(status, 202);
    assert!(w.logged("does not exist (any more)"));
    assert!(calls(&w, "POST", "ResourceGraph").is_empty());
    assert!(w.host.queue_messages(QUEUE).is_empty());
}

#[tokio::test]
async fn a_version_disabled_after_planning_is_reported_by_the_queue_function() {
    let (w, id) = rotating(&[]).await;
    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.azure
        .update_key_version(VAULT, KEY, &v(2), |s| s.enabled = false);

    let stats = w.drain().await;

    assert_eq!((stats.succeeded, stats.failed), (1, 0), "acknowledged");
    assert!(w.azure.patches().is_empty());
    assert!(w.logged("contoso-pg-01 stays on its version"));
    assert!(w.logged("version is disabled"));
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(1)));
}

#[tokio::test]
async fn a_version_not_active_yet_makes_the_queue_function_retry() {
    let (w, id) = rotating(&[]).await;
    w.deliver(&new_version_event("e-1", &v(2))).await;
    let later = plan_now() + 3600;
    w.azure
        .update_key_version(VAULT, KEY, &v(2), |s| s.nbf = Some(later));

    let drain = w.drain();
    let activate = async {
        tokio::time::sleep(Duration::from_millis(120)).await;
        w.azure
            .update_key_version(VAULT, KEY, &v(2), |s| s.nbf = Some(plan_now() - 1));
    };
    let (stats, ()) = tokio::join!(drain, activate);

    assert!(stats.failed >= 1);
    assert!(w.logged("not active until"));
    assert_eq!(w.patches_for(&id).len(), 1);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

// ---- Resource Graph ----

#[tokio::test]
async fn resource_graph_throttling_follows_its_quota_headers() {
    let (w, id) = rotating(&[]).await;
    let quota = |resets: &str| {
        Fault::status(Some("POST"), "ResourceGraph", 429)
            .with_body(error_body("RateLimiting"))
            .with_header("x-ms-user-quota-remaining", "0")
            .with_header("x-ms-user-quota-resets-after", resets)
    };
    // A window longer than the event's budget: fail at once.
    w.azure.inject(quota("00:05:00"));
    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
    assert_eq!(status, 500);
    assert_eq!(calls(&w, "POST", "ResourceGraph").len(), 1);
    assert!(w.logged("throttled the request (retry after 300 s)"));

    // A short window with Retry-After: wait it out once.
    w.azure
        .inject(quota("00:00:01").with_header("Retry-After", "1"));
    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
    assert_eq!(status, 202);
    let graph = calls(&w, "POST", "ResourceGraph");
    assert_eq!(graph.len(), 3);
    assert!(graph[2].at.duration_since(graph[1].at) >= Duration::from_millis(950));
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_truncated_resource_graph_answer_queues_what_it_has_and_says_so() {
    let (w, id) = rotating(&[]).await;
    let row = json!({"id": id, "name": "contoso-pg-01"});
    w.azure.inject(
        Fault::status(Some("POST"), "ResourceGraph", 200).with_body(json!({
            "totalRecords": 2, "count": 1, "resultTruncated": "true", "data": [row], "facets": []
        })),
    );

    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;

    assert_eq!(status, 202);
    assert_eq!(w.host.queue_messages(QUEUE).len(), 1);
    assert!(w.logged("truncated"));
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

// ---- The managed-identity endpoint ----

#[tokio::test]
async fn a_failing_token_endpoint_fails_the_event_before_any_azure_call() {
    let (w, id) = rotating(&[]).await;
    w.azure
        .inject(Fault::status(Some("GET"), "/msi/token", 500).times(3));

    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;

    assert_eq!(status, 500);
    assert!(w.logged("no token for key vault"));
    let reached: Vec<String> = w.azure.requests().iter().map(|r| r.path.clone()).collect();
    assert!(reached.iter().all(|p| p == "/msi/token"), "{reached:?}");

    assert_eq!(w.deliver(&new_version_event("e-1", &v(2))).await.0, 202);
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_slow_token_endpoint_is_waited_for_and_a_hung_one_is_not() {
    // Slow but within the request timeout: the token comes, work goes on.
    let (w, id) = rotating(&[]).await;
    let expires_on = (plan_now() + 3600).to_string();
    w.azure.inject(
        Fault::status(Some("GET"), "/msi/token", 200)
            .with_body(
                json!({"access_token": VAULT_TOKEN, "expires_on": expires_on,
                "resource": "https://vault.azure.net", "token_type": "Bearer"}),
            )
            .with_delay(Duration::from_millis(1200)),
    );
    let started = Instant::now();
    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
    assert_eq!(status, 202);
    assert!(started.elapsed() >= Duration::from_millis(1200));
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));

    // A token endpoint that never answers: the event fails within the
    // request timeout (1 s here) and its budget, not after Event Grid's 30 s.
    let (w, _) = rotating(&[
        ("CMK_HTTP_TIMEOUT_SECS", "1"),
        ("CMK_EVENT_BUDGET_SECS", "3"),
    ])
    .await;
    w.azure.inject(
        Fault::status(Some("GET"), "/msi/token", 500)
            .with_delay(Duration::from_secs(60))
            .times(10),
    );
    let started = Instant::now();
    let (status, _) = w.deliver(&new_version_event("e-2", &v(2))).await;
    assert_eq!(status, 500);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    assert!(w.logged("no answer from the token endpoint"));
    let reached: Vec<String> = w.azure.requests().iter().map(|r| r.path.clone()).collect();
    assert!(reached.iter().all(|p| p == "/msi/token"), "{reached:?}");
}

/// Tokens come from `azure_identity`, which reads the App Service answer's
/// `expires_on` as a string of epoch seconds (the documented 2019-08-01
/// form). Any other form seen in the field must end in a clear report and a
/// redelivery, never a panic or a call without a token.
#[tokio::test]
async fn token_expiry_forms_either_rotate_or_are_retried_with_a_reason() {
    let (w, id) = rotating(&[]).await;
    w.azure.set_token_expiry(TokenExpiry::EpochString);
    assert_eq!(w.deliver(&new_version_event("e-1", &v(2))).await.0, 202);
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
    assert!(
        calls(&w, "GET", "/msi/token").len() <= 2,
        "tokens are cached"
    );

    let other_forms = [
        TokenExpiry::EpochNumber,
        TokenExpiry::DateTimeOffset,
        TokenExpiry::Rfc3339,
        TokenExpiry::ExpiresInOnly,
    ];
    for form in other_forms {
        let (w, id) = rotating(&[]).await;
        w.azure.set_token_expiry(form);

        let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
        assert_eq!(status, 500, "{form:?}: Event Grid redelivers");
        assert!(w.logged("will retry: no token for key vault"), "{form:?}");
        let reached: Vec<String> = w.azure.requests().iter().map(|r| r.path.clone()).collect();
        assert!(
            reached.iter().all(|p| p == "/msi/token"),
            "{form:?}: {reached:?}"
        );
        assert_eq!(
            w.encryption(&id, "primaryKeyURI"),
            key_uri(&v(1)),
            "{form:?}"
        );
    }
}

fn plan_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
