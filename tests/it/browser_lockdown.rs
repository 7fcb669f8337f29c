//! The browser-facing defences that are not about sessions: the security
//! headers on every response and the demo login's rate limit.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use resume_server::auth::AuthKeys;
use resume_server::catalog::Catalog;
use resume_server::state::AppState;
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{TestServer, test_config, token};

#[tokio::test]
async fn every_response_carries_a_strict_content_security_policy() {
    let server = TestServer::start(&[]).await;
    for (path, bearer) in [
        ("/", None),
        ("/index.html", None),
        ("/app.js", None),
        ("/style.css", None),
        ("/api/v1/catalog", None),
        ("/api/v1/stream?movie_id=clock", Some(token("alice"))),
        ("/api/v1/stream?movie_id=clock", None),
        ("/api/v1/no-such-route", None),
        ("/no-such-file", None),
    ] {
        let mut request = server.http.get(server.url(path));
        if let Some(bearer) = &bearer {
            request = request.bearer_auth(bearer);
        }
        let response = request.send().await.unwrap();
        let headers = response.headers();
        let header = |name: &str| {
            let values: Vec<_> = headers.get_all(name).iter().collect();
            assert_eq!(values.len(), 1, "{path}: one {name}, got {values:?}");
            values[0].to_str().unwrap().to_owned()
        };
        let policy = header("content-security-policy");
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        for required in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self'",
            "media-src 'self'",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                directives.contains(&required),
                "{path}: {required} missing from {policy}"
            );
        }
        for loophole in [
            "unsafe-inline",
            "unsafe-eval",
            "unsafe-hashes",
            "data:",
            "*",
        ] {
            assert!(!policy.contains(loophole), "{path}: {loophole} in {policy}");
        }
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
}

#[tokio::test]
async fn the_demo_page_has_no_inline_script_style_or_handler() {
    // The policy above would block them; this says which line to fix.
    let server = TestServer::start(&[]).await;
    let page = server
        .http
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lower = page.to_ascii_lowercase();
    for (i, line) in lower.lines().enumerate() {
        let line_no = i + 1;
        if line.contains("<script") {
            assert!(
                line.contains(" src="),
                "line {line_no}: inline script: {line}"
            );
        }
        assert!(
            !line.contains("<style"),
            "line {line_no}: inline style: {line}"
        );
        assert!(
            !line.contains(" style="),
            "line {line_no}: style attribute: {line}"
        );
        assert!(!line.contains("javascript:"), "line {line_no}: {line}");
        let handler = line
            .split_whitespace()
            .any(|word| word.starts_with("on") && word.contains('='));
        assert!(!handler, "line {line_no}: inline event handler: {line}");
    }
}

#[tokio::test]
async fn the_demo_login_is_rate_limited_with_retry_after() {
    let server = TestServer::start(&[
        "--demo-login",
        "--demo-login-burst",
        "3",
        "--demo-login-per-minute",
        "1",
    ])
    .await;
    let login = |body: Value| {
        server
            .http
            .post(server.url("/api/v1/demo/token"))
            .json(&body)
            .send()
    };
    for name in ["alice", "bob"] {
        assert_eq!(login(json!({"user_id": name})).await.unwrap().status(), 200);
    }
    // A malformed login counts too.
    assert_eq!(login(json!({"user": "carol"})).await.unwrap().status(), 400);
    for _ in 0..3 {
        let limited = login(json!({"user_id": "carol"})).await.unwrap();
        assert_eq!(limited.status(), 429);
        let retry_after: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // One login a minute: the next one is about a minute away.
        assert!(
            (50..=60).contains(&retry_after),
            "Retry-After {retry_after}"
        );
        let body: Value = limited.json().await.unwrap();
        assert_eq!(body["error"], "too_many_requests", "{body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("demo logins")),
            "{body}"
        );
    }
    // The limit is on minting tokens, not on using them.
    assert_eq!(server.get("alice", "/api/v1/catalog").await.status(), 200);
}

#[tokio::test]
async fn the_demo_login_limit_keys_by_client_address_when_the_server_knows_it() {
    // The accept loop hands handlers `ConnectInfo`; so does each request here,
    // with addresses a loopback test cannot have (IPv6 prefixes).
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path(), &["--demo-login", "--demo-login-burst", "1"]);
    let keys = AuthKeys::from_config(&config).unwrap();
    let store = resume_server::open_store(&config).await.unwrap();
    let state = AppState::new(&config, keys, Catalog::built_in(), store);
    let app = resume_server::http::app(state, &config.static_dir);
    let login = |from: Option<&str>| {
        let mut request = Request::post("/api/v1/demo/token")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"user_id":"alice"}"#))
            .unwrap();
        if let Some(from) = from {
            let peer: SocketAddr = from.parse().unwrap();
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        let app = app.clone();
        async move { app.oneshot(request).await.unwrap().status().as_u16() }
    };
    assert_eq!(login(Some("192.0.2.1:5000")).await, 200);
    assert_eq!(login(Some("192.0.2.1:5001")).await, 429, "same address");
    assert_eq!(login(Some("192.0.2.2:5000")).await, 200, "another address");
    assert_eq!(login(Some("[2001:db8::1]:5000")).await, 200);
    assert_eq!(login(Some("[2001:db8::2]:5000")).await, 429, "same /64");
    // Without an address, callers share one bucket of their own.
    assert_eq!(login(None).await, 200);
    assert_eq!(login(None).await, 429);
}

#[tokio::test]
async fn the_server_keys_the_demo_login_limit_by_the_callers_address() {
    let server = TestServer::start(&["--demo-login", "--demo-login-burst", "1"]).await;
    let login_from = |from: &str| {
        let client = reqwest::Client::builder()
            .local_address(from.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap();
        let url = server.url("/api/v1/demo/token");
        async move {
            client
                .post(url)
                .json(&json!({"user_id": "alice"}))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(login_from("127.0.0.1").await, 200);
    assert_eq!(login_from("127.0.0.1").await, 429, "same address");
    // Another loopback address is another client.
    assert_eq!(login_from("127.0.0.2").await, 200);
}
