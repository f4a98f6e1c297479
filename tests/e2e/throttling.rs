//! Throttling with Retry-After in each form, shorter and longer than the
//! time available (field case fc-12).

use std::time::{Duration, SystemTime};

use serde_json::json;
use standin::azure::Fault;

use crate::support::*;

fn throttle(path: &str, method: &str, retry_after: Option<String>, times: u32) -> Fault {
    Fault {
        method: Some(method.into()),
        path_contains: path.into(),
        times,
        status: 429,
        headers: retry_after
            .into_iter()
            .map(|v| ("Retry-After".to_string(), v))
            .collect(),
        body: Some(
            json!({"error": {"code": "ResourceRequestsThrottled", "message": "Please try again after '372' seconds."}}),
        ),
        delay: None,
    }
}

async fn world() -> (World, String) {
    let w = World::start().await;
    w.add_version(&v(1));
    let id = w.add_server("contoso-pg-01", &key_uri(&v(1)));
    w.add_version(&v(2));
    (w, id)
}

#[tokio::test]
async fn a_retry_after_longer_than_the_budget_fails_fast_without_writes() {
    let (w, id) = world().await;
    w.azure.inject(throttle(
        "Microsoft.ResourceGraph",
        "POST",
        Some("372".into()),
        1,
    ));

    let started = std::time::Instant::now();
    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
    assert_eq!(status, 500, "Event Grid will redeliver later");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "no sleep inside the invocation"
    );
    let graph_calls = w
        .azure
        .requests()
        .iter()
        .filter(|r| r.path.contains("ResourceGraph"))
        .count();
    assert_eq!(graph_calls, 1);
    assert!(w.patches_for(&id).is_empty());
    assert!(w.logged("throttled the request (retry after 372 s)"));

    // Event Grid's redelivery then goes through.
    assert_eq!(w.deliver(&new_version_event("e-1", &v(2))).await.0, 202);
    w.drain().await;
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_short_retry_after_is_waited_once_on_the_patch() {
    let (w, id) = world().await;
    w.azure
        .inject(throttle("contoso-pg-01", "PATCH", Some("1".into()), 1));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    let stats = w.drain().await;
    let patches = w.patches_for(&id);
    assert_eq!(patches.len(), 2, "the throttled PATCH and its retry");
    assert!(patches[1].at.duration_since(patches[0].at) >= Duration::from_millis(950));
    assert_eq!(stats.failed, 0);
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn an_http_date_retry_after_is_honoured() {
    let (w, id) = world().await;
    // HTTP dates have whole seconds: 3 s ahead is at least 2 s ahead.
    let when = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(3));
    w.azure
        .inject(throttle("contoso-pg-01", "GET", Some(when), 1));

    w.deliver(&new_version_event("e-1", &v(2))).await;
    w.drain().await;
    let gets: Vec<_> = w
        .azure
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("contoso-pg-01"))
        .collect();
    assert!(gets[1].at.duration_since(gets[0].at) >= Duration::from_millis(1000));
    assert_eq!(w.encryption(&id, "primaryKeyURI"), key_uri(&v(2)));
}

#[tokio::test]
async fn a_missing_retry_after_backs_off_a_bounded_number_of_times() {
    let (w, id) = world().await;
    w.azure
        .inject(throttle("Microsoft.ResourceGraph", "POST", None, 10));

    let (status, _) = w.deliver(&new_version_event("e-1", &v(2))).await;
    assert_eq!(status, 500);
    let graph_calls = w
        .azure
        .requests()
        .iter()
        .filter(|r| r.path.contains("ResourceGraph"))
        .count();
    assert_eq!(graph_calls, 3, "bounded attempts, then the delivery fails");
    assert!(w.patches_for(&id).is_empty());
}
