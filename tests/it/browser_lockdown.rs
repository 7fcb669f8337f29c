//! The browser-facing defences that are not about sessions: the security
//! headers on every response.

use crate::support::{TestServer, token};

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
