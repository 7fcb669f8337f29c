//! The HTTP API against its OpenAPI document: the server serves exactly the
//! committed `docs/openapi.json`, the document describes every route the
//! routers define and nothing else, and every documented operation is routed.

use reqwest::Method;
use serde_json::Value;

use crate::support::{TestServer, token};

const COMMITTED: &str = include_str!("../../docs/openapi.json");

/// Regenerate with `cargo run -- openapi > docs/openapi.json`.
#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let server = TestServer::start(&["--demo-login"]).await;
    let response = server
        .http
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let served = response.text().await.unwrap();
    assert!(
        served == COMMITTED,
        "docs/openapi.json is out of date: run `cargo run -- openapi > docs/openapi.json`"
    );
}

#[tokio::test]
async fn without_the_demo_login_its_route_is_left_out() {
    let server = TestServer::start(&[]).await;
    let served: Value = server
        .http
        .get(server.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let committed: Value = serde_json::from_str(COMMITTED).unwrap();
    let paths = |document: &Value| -> Vec<String> {
        document["paths"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    let mut expected = paths(&committed);
    expected.retain(|path| path != "/api/v1/demo/token");
    assert_eq!(paths(&served), expected);
}

/// Every `.route("…")` of the HTTP routers, as the source writes it.
fn routes_in_the_source() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/http");
    let mut routes = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for piece in text.split(".route(").skip(1) {
            let piece = piece.trim_start();
            let route = match piece.strip_prefix('"') {
                Some(literal) => &literal[..literal.find('"').unwrap()],
                // `openapi.rs` routes its own path through its constant.
                None if piece.starts_with("PATH,") => "/api/v1/openapi.json",
                None => panic!("a route that is neither a literal nor PATH: {piece:.40}"),
            };
            // The catch-all that answers unknown API paths is not an API.
            if route != "/api/{*path}" {
                routes.push(route.to_owned());
            }
        }
    }
    routes.sort();
    routes.dedup();
    routes
}

#[test]
fn the_document_describes_every_route_and_no_other() {
    let committed: Value = serde_json::from_str(COMMITTED).unwrap();
    let mut documented: Vec<String> = committed["paths"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    documented.sort();
    let routes = routes_in_the_source();
    assert!(routes.len() > 5, "found the routes: {routes:?}");
    assert_eq!(documented, routes);
}

/// Every documented operation reaches a handler: neither the unknown-route
/// answer nor 405.
#[tokio::test]
async fn every_documented_operation_is_routed() {
    let server = TestServer::start(&["--demo-login"]).await;
    let committed: Value = serde_json::from_str(COMMITTED).unwrap();
    for (path, item) in committed["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let url = server.url(&path.replace("{movie_id}", "clock"));
            let response = server
                .http
                .request(method.clone(), url)
                .bearer_auth(token("alice"))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path}");
            assert!(
                !body.contains("no such API route"),
                "{method} {path} is not routed: {status} {body}"
            );
        }
    }
}
