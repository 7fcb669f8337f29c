//! Series in continue watching, and the watched state, on every backend: the
//! built-in catalog's `night-shift` (three 20 s episodes) next to standalone
//! titles.

use serde_json::Value;

use crate::support::{TestBackend, TestServer, wait_until};

const E1: &str = "night-shift-s1e1";
const E2: &str = "night-shift-s1e2";
const E3: &str = "night-shift-s1e3";

async fn list(server: &TestServer, user: &str) -> Vec<Value> {
    let response = server.get(user, "/api/v1/continue-watching").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["items"].as_array().unwrap().clone()
}

/// The rows as `(movie_id, kind, position_seconds)`.
async fn rows(server: &TestServer, user: &str) -> Vec<(String, String, f64)> {
    list(server, user)
        .await
        .iter()
        .map(|item| {
            (
                item["movie_id"].as_str().unwrap().to_owned(),
                item["kind"].as_str().unwrap().to_owned(),
                item["position_seconds"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn row(movie: &str, kind: &str, seconds: f64) -> (String, String, f64) {
    (movie.to_owned(), kind.to_owned(), seconds)
}

/// `GET /api/v1/progress/{movie}` of alice: the status and the body.
async fn progress(server: &TestServer, movie: &str) -> (u16, Value) {
    let response = server
        .get("alice", &format!("/api/v1/progress/{movie}"))
        .await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call(server: &TestServer, method: reqwest::Method, path: &str) -> u16 {
    server.send(method, "alice", path).await.status().as_u16()
}

async fn finishing_an_episode_offers_the_next_one_at_zero(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", "clock", 30.0).await;
    server.save_progress("alice", E1, 19.0).await; // 95 % of 20 s
    let items = list(&server, "alice").await;
    assert_eq!(items.len(), 2, "{items:?}");
    let up_next = &items[0];
    assert_eq!(up_next["movie_id"], E2);
    assert_eq!(up_next["kind"], "up_next");
    assert_eq!(up_next["title"], "Midnight");
    assert_eq!(up_next["position_seconds"], 0.0);
    assert_eq!(up_next["progress"], 0.0);
    assert_eq!(up_next["duration_seconds"], 20.0);
    assert_eq!(up_next["series_id"], "night-shift");
    assert_eq!(up_next["series_title"], "Night Shift");
    assert_eq!(
        (up_next["season"].as_u64(), up_next["episode"].as_u64()),
        (Some(1), Some(2))
    );
    // A standalone title keeps its shape, with a kind and no series fields.
    let standalone = &items[1];
    assert_eq!(standalone["movie_id"], "clock");
    assert_eq!(standalone["kind"], "in_progress");
    assert_eq!(standalone["position_seconds"], 30.0);
    for field in ["series_id", "series_title", "season", "episode"] {
        assert!(standalone.get(field).is_none(), "{standalone}");
    }
    // The finished episode is watched.
    let (status, e1) = progress(&server, E1).await;
    assert_eq!(status, 200);
    assert_eq!(e1["watched"], true);
    assert_eq!(e1["last_completed_at"], e1["updated_at"], "{e1}");
    let (_, clock) = progress(&server, "clock").await;
    assert_eq!(clock["watched"], false);
    assert!(clock["last_completed_at"].is_null(), "{clock}");
    // Going on with it: the next episode in progress.
    server.save_progress("alice", E2, 5.0).await;
    assert_eq!(
        rows(&server, "alice").await,
        [
            row(E2, "in_progress", 5.0),
            row("clock", "in_progress", 30.0)
        ]
    );
    assert!(list(&server, "bob").await.is_empty());
}

async fn a_session_that_reports_the_end_finishes_the_episode(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let (mut session, hello) = server.session("alice", E1).await;
    assert_eq!(hello["resume_position_seconds"], 0.0);
    session.tick(5.0).await;
    // The player's end, well below the threshold (the media ran short).
    session.tick_state(10.0, "ended").await;
    session.expect_saved(10.0).await;
    assert_eq!(rows(&server, "alice").await, [row(E2, "up_next", 0.0)]);
    let (_, e1) = progress(&server, E1).await;
    assert_eq!(e1["watched"], true, "{e1}");
    assert_eq!(e1["position_seconds"], 10.0, "{e1}");
    session.close().await;
}

async fn the_next_episode_is_offered_where_it_was_left(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", E2, 8.0).await;
    server.save_progress("alice", E1, 20.0).await;
    assert_eq!(rows(&server, "alice").await, [row(E2, "up_next", 8.0)]);
    let item = &list(&server, "alice").await[0];
    assert_eq!(item["progress"], 0.4);
}

async fn after_the_last_episode_the_series_leaves_the_list(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", "testcard", 45.0).await;
    for episode in [E1, E2] {
        server.save_progress("alice", episode, 20.0).await;
    }
    assert_eq!(
        rows(&server, "alice").await,
        [
            row(E3, "up_next", 0.0),
            row("testcard", "in_progress", 45.0)
        ]
    );
    server.save_progress("alice", E3, 19.5).await;
    assert_eq!(
        rows(&server, "alice").await,
        [row("testcard", "in_progress", 45.0)]
    );
}

async fn rewatching_a_finished_episode_keeps_it_watched(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", E1, 20.0).await;
    let (_, finished) = progress(&server, E1).await;
    let (mut session, hello) = server.session("alice", E1).await;
    assert_eq!(
        hello["resume_position_seconds"], 0.0,
        "finished: from the start"
    );
    for seconds in [1.0, 2.0, 3.0] {
        session.tick(seconds).await;
    }
    wait_until("the rewatched episode is in progress", || async {
        rows(&server, "alice").await == [row(E1, "in_progress", 3.0)]
    })
    .await;
    let (_, e1) = progress(&server, E1).await;
    assert_eq!(e1["position_seconds"], 3.0);
    assert_eq!(e1["watched"], true, "{e1}");
    assert_eq!(e1["last_completed_at"], finished["last_completed_at"]);
    // Written, too: the watched state survives the ordinary write.
    session.close().await;
    let (_, e1) = progress(&server, E1).await;
    assert_eq!(
        (e1["position_seconds"].as_f64(), e1["watched"].as_bool()),
        (Some(3.0), Some(true))
    );
    assert_eq!(rows(&server, "alice").await, [row(E1, "in_progress", 3.0)]);
}

async fn marking_watched_and_unwatched(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", E1, 6.0).await;
    let path = format!("/api/v1/progress/{E1}/watched");
    assert_eq!(call(&server, reqwest::Method::PUT, &path).await, 204);
    let (_, marked) = progress(&server, E1).await;
    assert_eq!(marked["watched"], true);
    assert_eq!(marked["position_seconds"], 20.0);
    assert!(marked["last_completed_at"].is_string(), "{marked}");
    assert_eq!(rows(&server, "alice").await, [row(E2, "up_next", 0.0)]);
    assert_eq!(
        server.stream("alice", E1).await["resume_position_seconds"],
        0.0
    );

    assert_eq!(call(&server, reqwest::Method::DELETE, &path).await, 204);
    let (status, unmarked) = progress(&server, E1).await;
    assert_eq!(status, 200);
    assert_eq!(unmarked["watched"], false, "{unmarked}");
    assert_eq!(unmarked["position_seconds"], 0.0, "start over");
    assert_eq!(unmarked["last_completed_at"], marked["last_completed_at"]);
    assert!(rows(&server, "alice").await.is_empty());
    assert_eq!(
        server.stream("alice", E1).await["resume_position_seconds"],
        0.0
    );

    for method in [reqwest::Method::PUT, reqwest::Method::DELETE] {
        let status = call(&server, method.clone(), "/api/v1/progress/nope/watched").await;
        assert_eq!(status, 404, "{method}");
    }
}

async fn removing_the_up_next_row_hides_the_series(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server.save_progress("alice", "clock", 30.0).await;
    server.save_progress("alice", E1, 20.0).await;
    assert_eq!(
        rows(&server, "alice").await,
        [row(E2, "up_next", 0.0), row("clock", "in_progress", 30.0)]
    );
    let path = format!("/api/v1/progress/{E2}");
    assert_eq!(call(&server, reqwest::Method::DELETE, &path).await, 204);
    assert_eq!(
        rows(&server, "alice").await,
        [row("clock", "in_progress", 30.0)]
    );
    // Removing a finished title from the list leaves it watched.
    let path = format!("/api/v1/progress/{E1}");
    assert_eq!(call(&server, reqwest::Method::DELETE, &path).await, 204);
    let (status, e1) = progress(&server, E1).await;
    assert_eq!(status, 200, "a watched title answers after a delete");
    assert_eq!(e1["watched"], true, "{e1}");
    assert_eq!(e1["position_seconds"], 0.0, "{e1}");
    // A title never finished answers 404 once deleted, as before.
    let (status, _) = progress(&server, E2).await;
    assert_eq!(status, 404);
    // Playing the series again brings it back.
    server.save_progress("alice", E2, 4.0).await;
    assert_eq!(
        rows(&server, "alice").await,
        [
            row(E2, "in_progress", 4.0),
            row("clock", "in_progress", 30.0)
        ]
    );
}

crate::backend_tests!(
    finishing_an_episode_offers_the_next_one_at_zero,
    a_session_that_reports_the_end_finishes_the_episode,
    the_next_episode_is_offered_where_it_was_left,
    after_the_last_episode_the_series_leaves_the_list,
    rewatching_a_finished_episode_keeps_it_watched,
    marking_watched_and_unwatched,
    removing_the_up_next_row_hides_the_series,
);
