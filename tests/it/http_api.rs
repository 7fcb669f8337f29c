//! The seed's read and write paths over real HTTP, auth, and persistence.

use serde_json::{Value, json};

use crate::support::{SECRET, TestServer, token, token_with, unix_in};

#[tokio::test]
async fn seed_examples_through_post_then_get() {
    let server = TestServer::start(&[]).await;
    let status = server
        .post_progress(
            "alice",
            json!({"movie_id":"inception","position_seconds":2843}),
        )
        .await;
    assert_eq!(status, 204);
    let stream = server.stream("alice", "inception").await;
    assert_eq!(stream["resume_position_seconds"], 2843.0);
    assert_eq!(stream["completed"], false);
    assert_eq!(stream["duration_seconds"], 7800.0);
    assert_eq!(stream["title"], "Inception");
    assert!(
        stream["stream_url"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );

    // 7500 ≥ 95 % of 7800 → start from 0.
    let status = server
        .post_progress(
            "alice",
            json!({"movie_id":"inception","position_seconds":7500}),
        )
        .await;
    assert_eq!(status, 204);
    let stream = server.stream("alice", "inception").await;
    assert_eq!(stream["resume_position_seconds"], 0.0);
    assert_eq!(stream["completed"], true);
}

#[tokio::test]
async fn fractional_positions_keep_milliseconds_and_clamp_to_duration() {
    let server = TestServer::start(&[]).await;
    server
        .post_progress(
            "alice",
            json!({"movie_id":"clock","position_seconds":12.3456}),
        )
        .await;
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        12.346
    );
    server
        .post_progress(
            "alice",
            json!({"movie_id":"testcard","position_seconds":1e12}),
        )
        .await;
    // Clamped to the 90 s duration, which is completed.
    let stream = server.stream("alice", "testcard").await;
    assert_eq!(stream["completed"], true);
    let raw: Value = server
        .get("alice", "/api/v1/progress/testcard")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw["position_seconds"], 90.0);
}

#[tokio::test]
async fn nothing_saved_starts_at_zero() {
    let server = TestServer::start(&[]).await;
    let stream = server.stream("alice", "clock").await;
    assert_eq!(stream["resume_position_seconds"], 0.0);
    assert_eq!(stream["completed"], false);
}

async fn error_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("JSON error body");
    assert!(
        body["error"].is_string() && body["message"].is_string(),
        "{body}"
    );
    body
}

#[tokio::test]
async fn read_path_errors() {
    let server = TestServer::start(&[]).await;
    error_of(server.get("alice", "/api/v1/stream").await, 400).await;
    error_of(server.get("alice", "/api/v1/stream?movie_id=").await, 400).await;
    let body = error_of(
        server.get("alice", "/api/v1/stream?movie_id=nope").await,
        404,
    )
    .await;
    assert_eq!(body["error"], "not_found");
    error_of(server.get("alice", "/api/v1/no-such-route").await, 404).await;
}

#[tokio::test]
async fn write_path_rejects_bad_input_and_keeps_the_saved_position() {
    let server = TestServer::start(&[]).await;
    assert_eq!(
        server
            .post_progress("alice", json!({"movie_id":"clock","position_seconds":30}))
            .await,
        204
    );
    let post_raw = |body: String| {
        server
            .http
            .post(server.url("/api/v1/stream/progress"))
            .bearer_auth(token("alice"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for bad in [
        "{not json",
        r#"{"movie_id":"clock"}"#,
        r#"{"position_seconds":5}"#,
        r#"{"movie_id":"clock","position_seconds":-1}"#,
        r#"{"movie_id":"clock","position_seconds":"5"}"#,
        r#"{"movie_id":"clock","position_seconds":NaN}"#,
        r#"{"movie_id":"clock","position_seconds":null}"#,
        r#"[1,2,3]"#,
    ] {
        let body = error_of(post_raw(bad.to_owned()).await.unwrap(), 400).await;
        assert_eq!(body["error"], "bad_request", "{bad}");
    }
    error_of(
        post_raw(r#"{"movie_id":"nope","position_seconds":5}"#.into())
            .await
            .unwrap(),
        404,
    )
    .await;
    let huge = format!(
        r#"{{"movie_id":"clock","position_seconds":5,"pad":"{}"}}"#,
        "x".repeat(5000)
    );
    error_of(post_raw(huge).await.unwrap(), 413).await;
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        30.0
    );
}

#[tokio::test]
async fn bad_tokens_get_401_with_www_authenticate() {
    let server = TestServer::start(&[]).await;
    let expired = token_with(json!({"sub":"alice","exp":unix_in(-3600)}), SECRET);
    let wrong_key = token_with(
        json!({"sub":"alice","exp":unix_in(3600)}),
        "another-secret-another-secret-another-1",
    );
    let not_yet = token_with(
        json!({"sub":"alice","exp":unix_in(7200),"nbf":unix_in(3600)}),
        SECRET,
    );
    let no_exp = token_with(json!({"sub":"alice"}), SECRET);
    let empty_sub = token_with(json!({"sub":"","exp":unix_in(3600)}), SECRET);
    let long_sub = token_with(json!({"sub":"a".repeat(129),"exp":unix_in(3600)}), SECRET);
    // alg: none — header {"alg":"none","typ":"JWT"}, no signature.
    let none = {
        let claims = format!(r#"{{"sub":"alice","exp":{}}}"#, unix_in(3600));
        format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            base64_url(claims.as_bytes())
        )
    };
    for (what, header) in [
        ("missing", None),
        ("not bearer", Some("Basic YWxpY2U6cHc=".to_owned())),
        ("garbage", Some("Bearer not.a.token".to_owned())),
        ("expired", Some(format!("Bearer {expired}"))),
        ("wrong key", Some(format!("Bearer {wrong_key}"))),
        ("nbf in the future", Some(format!("Bearer {not_yet}"))),
        ("no exp", Some(format!("Bearer {no_exp}"))),
        ("empty sub", Some(format!("Bearer {empty_sub}"))),
        ("long sub", Some(format!("Bearer {long_sub}"))),
        ("alg none", Some(format!("Bearer {none}"))),
    ] {
        let mut request = server.http.get(server.url("/api/v1/stream?movie_id=clock"));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(
            response
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap()),
            Some("Bearer"),
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "unauthorized", "{what}");
    }
    // The write path and progress routes are guarded the same way.
    let response = server
        .http
        .post(server.url("/api/v1/stream/progress"))
        .json(&json!({"movie_id":"clock","position_seconds":1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let response = server
        .http
        .get(server.url("/api/v1/continue-watching"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn users_never_see_each_others_positions() {
    let server = TestServer::start(&[]).await;
    server
        .post_progress("alice", json!({"movie_id":"clock","position_seconds":40}))
        .await;
    server
        .post_progress("bob", json!({"movie_id":"clock","position_seconds":70}))
        .await;
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        40.0
    );
    assert_eq!(
        server.stream("bob", "clock").await["resume_position_seconds"],
        70.0
    );
    assert_eq!(
        server.stream("carol", "clock").await["resume_position_seconds"],
        0.0
    );
    // A user id in the body is not a field of the API: it is refused, not obeyed.
    let status = server
        .post_progress(
            "alice",
            json!({"movie_id":"clock","position_seconds":1,"user_id":"bob"}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        server.stream("bob", "clock").await["resume_position_seconds"],
        70.0
    );
}

#[tokio::test]
async fn positions_survive_a_restart_on_the_same_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_in(dir.path(), &[]).await;
    server
        .post_progress(
            "alice",
            json!({"movie_id":"inception","position_seconds":2843.5}),
        )
        .await;
    server.stop().await;
    let server = TestServer::start_in(dir.path(), &[]).await;
    assert_eq!(
        server.stream("alice", "inception").await["resume_position_seconds"],
        2843.5
    );
}

#[tokio::test]
async fn public_routes_need_no_token() {
    let server = TestServer::start(&[]).await;
    let catalog: Value = server
        .http
        .get(server.url("/api/v1/catalog"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = catalog["movies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["movie_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"inception") && ids.contains(&"clock"),
        "{ids:?}"
    );
    for path in ["/healthz", "/readyz", "/metrics", "/"] {
        let response = server.http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
}

#[tokio::test]
async fn demo_login_exists_only_in_demo_mode_or_when_asked() {
    let with_secret = TestServer::start(&[]).await;
    let response = with_secret
        .http
        .post(with_secret.url("/api/v1/demo/token"))
        .json(&json!({"user_id":"alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    let asked = TestServer::start(&["--demo-login"]).await;
    let body: Value = asked
        .http
        .post(asked.url("/api/v1/demo/token"))
        .json(&json!({"user_id":"alice"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let demo_token = body["token"].as_str().unwrap();
    let response = asked
        .http
        .get(asked.url("/api/v1/stream?movie_id=clock"))
        .bearer_auth(demo_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn demo_mode_mints_tokens_that_only_this_server_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::test_config(dir.path(), &[]);
    config.jwt_secret = None;
    let server = TestServer::start_with(config).await;
    let login = |user: &str| {
        server
            .http
            .post(server.url("/api/v1/demo/token"))
            .json(&json!({ "user_id": user }))
            .send()
    };
    let body: Value = login("alice").await.unwrap().json().await.unwrap();
    let demo_token = body["token"].as_str().unwrap().to_owned();
    let ok = server
        .http
        .get(server.url("/api/v1/stream?movie_id=clock"))
        .bearer_auth(&demo_token)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // The generated secret is not the test secret.
    let response = server.get("alice", "/api/v1/stream?movie_id=clock").await;
    assert_eq!(response.status(), 401);
    assert_eq!(login("").await.unwrap().status(), 400);
}

#[tokio::test]
async fn cors_answers_only_configured_origins() {
    let preflight = |server: &TestServer, origin: &'static str| {
        server
            .http
            .request(
                reqwest::Method::OPTIONS,
                server.url("/api/v1/stream?movie_id=clock"),
            )
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let same_origin_only = TestServer::start(&[]).await;
    let response = preflight(&same_origin_only, "https://player.example")
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let configured = TestServer::start(&["--allowed-origins", "https://player.example"]).await;
    let response = preflight(&configured, "https://player.example")
        .await
        .unwrap();
    assert_eq!(
        response
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap()),
        Some("https://player.example")
    );
    let response = preflight(&configured, "https://evil.example")
        .await
        .unwrap();
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn metrics_count_embedded_store_commits() {
    let server = TestServer::start(&[]).await;
    assert_eq!(server.metric("resume_store_commits_total", "").await, 0.0);
    for position in [10, 20, 30] {
        server
            .post_progress(
                "alice",
                json!({"movie_id":"clock","position_seconds":position}),
            )
            .await;
    }
    let commits = server.metric("resume_store_commits_total", "").await;
    assert!((1.0..=3.0).contains(&commits), "{commits} commits");
    assert_eq!(
        server
            .metric("resume_store_committed_writes_total", "")
            .await,
        3.0
    );
}
