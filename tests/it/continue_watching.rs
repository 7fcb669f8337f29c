//! Continue watching and per-user progress, on every backend.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::support::{TestBackend, TestServer, wait_until};

async fn list(server: &TestServer, user: &str, query: &str) -> Vec<Value> {
    let response = server
        .get(user, &format!("/api/v1/continue-watching{query}"))
        .await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

fn ids(items: &[Value]) -> Vec<&str> {
    items
        .iter()
        .map(|i| i["movie_id"].as_str().unwrap())
        .collect()
}

/// When an item was last written. Parsed, not compared as text: RFC 3339
/// drops trailing zeros of the fraction, so `…:20Z` sorts after `…:20.5Z` as
/// text although it is earlier.
fn updated_at(item: &Value) -> OffsetDateTime {
    let text = item["updated_at"]
        .as_str()
        .unwrap_or_else(|| panic!("updated_at is a string: {item}"));
    OffsetDateTime::parse(text, &Rfc3339)
        .unwrap_or_else(|e| panic!("updated_at {text:?} is not RFC 3339: {e}"))
}

/// Asserts `items` run from the most recently written to the least.
fn assert_newest_first(items: &[Value]) {
    for pair in items.windows(2) {
        assert!(
            updated_at(&pair[0]) >= updated_at(&pair[1]),
            "{} is listed before {}, which was written later",
            pair[0],
            pair[1]
        );
    }
}

async fn most_recent_first_with_completed_titles_left_out(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let started = OffsetDateTime::now_utc();
    server.save_progress("alice", "clock", 30.0).await;
    server.save_progress("alice", "inception", 2843.0).await;
    server.save_progress("alice", "countdown", 59.0).await; // ≥ 95 % of 60 s: completed
    server.save_progress("alice", "testcard", 45.0).await;
    server.save_progress("bob", "clock", 100.0).await;
    let items = list(&server, "alice", "").await;
    assert_eq!(ids(&items), ["testcard", "inception", "clock"]);
    let testcard = &items[0];
    assert_eq!(testcard["title"], "Test Card");
    assert_eq!(testcard["position_seconds"], 45.0);
    assert_eq!(testcard["duration_seconds"], 90.0);
    assert_eq!(testcard["progress"], 0.5);
    let text = testcard["updated_at"].as_str().unwrap();
    assert!(text.ends_with('Z'), "{text}: in UTC");
    // Stamped when the server received it: during this test (the server runs
    // on this host's clock; the stamp has µs precision).
    let received = updated_at(testcard);
    let slack = time::Duration::milliseconds(1);
    assert!(
        received >= started - slack && received <= OffsetDateTime::now_utc() + slack,
        "{text} is not during the test (from {started})"
    );
    assert_newest_first(&items);
    // Watching an older title again moves it to the front.
    server.save_progress("alice", "clock", 31.0).await;
    let items = list(&server, "alice", "").await;
    assert_eq!(ids(&items), ["clock", "testcard", "inception"]);
    assert_newest_first(&items);
    assert!(updated_at(&items[0]) > received, "{}", items[0]);
    assert_eq!(ids(&list(&server, "bob", "").await), ["clock"]);
}

async fn limit_is_applied_and_bounded(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", "clock", 30.0).await;
    server.save_progress("alice", "testcard", 20.0).await;
    assert_eq!(ids(&list(&server, "alice", "?limit=1").await), ["testcard"]);
    assert_eq!(list(&server, "alice", "?limit=100").await.len(), 2);
    for bad in ["0", "101", "-3", "abc", "1e3"] {
        let response = server
            .get("alice", &format!("/api/v1/continue-watching?limit={bad}"))
            .await;
        assert_eq!(response.status(), 400, "limit={bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "bad_request");
    }
}

async fn minimum_resume_seconds_hides_barely_started_titles(backend: TestBackend) {
    let server = backend.start(&["--min-resume-seconds", "10"]).await;
    server.save_progress("alice", "clock", 5.0).await;
    server.save_progress("alice", "testcard", 15.0).await;
    assert_eq!(ids(&list(&server, "alice", "").await), ["testcard"]);
}

async fn unflushed_live_positions_are_merged(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "600000"]).await;
    server.save_progress("alice", "testcard", 10.0).await;
    server.save_progress("alice", "clock", 20.0).await;
    let (mut session, _) = server.session("alice", "testcard").await;
    session.tick(44.0).await;
    let (mut fresh, _) = server.session("alice", "countdown").await;
    fresh.tick(12.0).await;
    wait_until("live positions show up in continue watching", || async {
        let items = list(&server, "alice", "").await;
        ids(&items) == ["countdown", "testcard", "clock"] && items[1]["position_seconds"] == 44.0
    })
    .await;
    let raw: Value = server
        .get("alice", "/api/v1/progress/countdown")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw["position_seconds"], 12.0);
    assert!(list(&server, "bob", "").await.is_empty());
}

async fn raw_progress_and_404_when_none(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", "clock", 12.25).await;
    let response = server.get("alice", "/api/v1/progress/clock").await;
    assert_eq!(response.status(), 200);
    let raw: Value = response.json().await.unwrap();
    assert_eq!(raw["movie_id"], "clock");
    assert_eq!(raw["position_seconds"], 12.25);
    assert!(raw["updated_at"].is_string());
    assert_eq!(
        server
            .get("alice", "/api/v1/progress/testcard")
            .await
            .status(),
        404
    );
    assert_eq!(
        server.get("bob", "/api/v1/progress/clock").await.status(),
        404
    );
    assert_eq!(
        server
            .get("alice", "/api/v1/progress/no-such-movie")
            .await
            .status(),
        404
    );
}

async fn delete_removes_until_a_newer_write(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", "clock", 30.0).await;
    server.save_progress("alice", "testcard", 40.0).await;
    let delete = server
        .send(reqwest::Method::DELETE, "alice", "/api/v1/progress/clock")
        .await;
    assert_eq!(delete.status(), 204);
    assert_eq!(ids(&list(&server, "alice", "").await), ["testcard"]);
    assert_eq!(
        server.get("alice", "/api/v1/progress/clock").await.status(),
        404
    );
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        0.0
    );
    // A later tick brings it back.
    server.save_progress("alice", "clock", 35.0).await;
    assert_eq!(
        ids(&list(&server, "alice", "").await),
        ["clock", "testcard"]
    );
    // Deleting another user's title changes nothing of theirs.
    server.save_progress("bob", "testcard", 10.0).await;
    let delete = server
        .send(
            reqwest::Method::DELETE,
            "alice",
            "/api/v1/progress/testcard",
        )
        .await;
    assert_eq!(delete.status(), 204);
    assert_eq!(ids(&list(&server, "bob", "").await), ["testcard"]);
}

async fn a_flush_stamped_before_the_delete_stays_deleted(backend: TestBackend) {
    // The session's tick is received before the delete; its flush lands after it.
    let server = backend.start(&["--flush-interval-ms", "600000"]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(50.0).await;
    server.wait_for_resume("alice", "clock", 50.0).await;
    let delete = server
        .send(reqwest::Method::DELETE, "alice", "/api/v1/progress/clock")
        .await;
    assert_eq!(delete.status(), 204);
    session.close().await;
    wait_until("the session has written and ended", || async {
        server.metric("resume_live_sessions", "").await == 0.0
    })
    .await;
    assert_eq!(
        server
            .metric("resume_session_flushes_total", "reason=\"Close\"")
            .await,
        1.0
    );
    assert_eq!(
        server.get("alice", "/api/v1/progress/clock").await.status(),
        404
    );
    assert!(list(&server, "alice", "").await.is_empty());
}

async fn watched_starts_over_and_leaves_the_list(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", "clock", 30.0).await;
    let response = server
        .send(
            reqwest::Method::PUT,
            "alice",
            "/api/v1/progress/clock/watched",
        )
        .await;
    assert_eq!(response.status(), 204);
    let stream = server.stream("alice", "clock").await;
    assert_eq!(stream["resume_position_seconds"], 0.0);
    assert_eq!(stream["completed"], true);
    assert!(list(&server, "alice", "").await.is_empty());
    let response = server
        .send(
            reqwest::Method::PUT,
            "alice",
            "/api/v1/progress/nope/watched",
        )
        .await;
    assert_eq!(response.status(), 404);
}

crate::backend_tests!(
    most_recent_first_with_completed_titles_left_out,
    limit_is_applied_and_bounded,
    minimum_resume_seconds_hides_barely_started_titles,
    unflushed_live_positions_are_merged,
    raw_progress_and_404_when_none,
    delete_removes_until_a_newer_write,
    a_flush_stamped_before_the_delete_stays_deleted,
    watched_starts_over_and_leaves_the_list,
);
