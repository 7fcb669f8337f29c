//! How a browser opens a session without a token in its URL: single-use
//! session tickets, the `bearer.<token>` subprotocol, and the deprecated query
//! token behind its knob.

use futures_util::future::join_all;
use resume_server::clock::{ManualClock, now_micros};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::support::{Session, TestServer, test_config, token};

/// A refused upgrade: its status and JSON body.
#[derive(Debug)]
struct Refusal {
    status: u16,
    body: Value,
}

/// Opens a session with the URL query `query` and extra headers, as a browser
/// would (no Authorization header unless given).
async fn upgrade(
    server: &TestServer,
    query: &str,
    headers: &[(&str, &str)],
) -> Result<(Session, Response), Refusal> {
    let url = format!("ws://{}/api/v1/stream/session?{query}", server.addr);
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((ws, response)) => Ok((Session::from_socket(ws), response)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(Refusal {
            status: response.status().as_u16(),
            body: response
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null),
        }),
        Err(e) => panic!("upgrade failed below HTTP: {e}"),
    }
}

/// Asks for a ticket as `user`; returns the status and the body.
async fn request_ticket(server: &TestServer, user: &str, body: Value) -> (u16, Value) {
    let response = server
        .http
        .post(server.url("/api/v1/stream/session-ticket"))
        .bearer_auth(token(user))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A fresh ticket for `user` on `movie`.
async fn ticket(server: &TestServer, user: &str, movie: &str) -> String {
    let (status, body) = request_ticket(server, user, json!({ "movie_id": movie })).await;
    assert_eq!(status, 200, "ticket for {user}/{movie}: {body}");
    body["ticket"].as_str().expect("ticket").to_owned()
}

fn assert_unauthorized(refusal: &Refusal, says: &str) {
    assert_eq!(refusal.status, 401, "{refusal:?}");
    assert_eq!(refusal.body["error"], "unauthorized", "{refusal:?}");
    let message = refusal.body["message"].as_str().unwrap_or("");
    assert!(message.contains(says), "{message:?} should say {says:?}");
}

#[tokio::test]
async fn a_ticket_opens_one_session_for_its_user_and_title() {
    let server = TestServer::start(&[]).await;
    let response = server
        .http
        .post(server.url("/api/v1/stream/session-ticket"))
        .bearer_auth(token("alice"))
        .json(&json!({"movie_id": "clock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["expires_in"], 30);
    let ticket = body["ticket"].as_str().unwrap().to_owned();
    assert!(ticket.len() >= 43, "at least 256 bits: {ticket}");

    let (mut session, _) = upgrade(&server, &format!("movie_id=clock&ticket={ticket}"), &[])
        .await
        .expect("the ticket opens the session");
    let hello = session.expect("hello").await;
    assert_eq!(hello["movie_id"], "clock");
    session.tick(12.0).await;
    session.expect_saved(12.0).await;
    // The session is alice's.
    assert_eq!(server.resume_seconds("alice", "clock").await, 12.0);
    assert_eq!(server.resume_seconds("bob", "clock").await, 0.0);
    session.close().await;

    let reused = upgrade(&server, &format!("movie_id=clock&ticket={ticket}"), &[])
        .await
        .err()
        .expect("a used ticket is refused");
    assert_unauthorized(&reused, "already used");
    let unknown = upgrade(&server, "movie_id=clock&ticket=never-issued", &[])
        .await
        .err()
        .expect("an unknown ticket is refused");
    assert_unauthorized(&unknown, "unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_ticket_shown_by_many_upgrades_at_once_opens_exactly_one_session() {
    let server = TestServer::start(&[]).await;
    for round in 0..5 {
        let ticket = ticket(&server, "alice", "clock").await;
        let query = format!("movie_id=clock&ticket={ticket}");
        let outcomes = join_all((0..12).map(|_| upgrade(&server, &query, &[]))).await;
        let mut opened = Vec::new();
        let mut refused = Vec::new();
        for outcome in outcomes {
            match outcome {
                Ok((session, _)) => opened.push(session),
                Err(refusal) => refused.push(refusal),
            }
        }
        assert_eq!(opened.len(), 1, "round {round}: {refused:?}");
        for refusal in &refused {
            assert_unauthorized(refusal, "already used");
        }
        for session in opened {
            session.close().await;
        }
    }
}

#[tokio::test]
async fn a_ticket_expires_on_the_servers_clock() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(now_micros());
    let server = TestServer::start_with_clock(test_config(dir.path(), &[]), clock.clone()).await;
    let in_time = ticket(&server, "alice", "clock").await;
    let too_late = ticket(&server, "alice", "clock").await;

    clock.advance(29_999_999);
    let (session, _) = upgrade(&server, &format!("movie_id=clock&ticket={in_time}"), &[])
        .await
        .expect("a ticket a microsecond short of 30 s opens");
    session.close().await;

    clock.advance(1);
    let refused = upgrade(&server, &format!("movie_id=clock&ticket={too_late}"), &[])
        .await
        .err()
        .expect("a 30 s old ticket is refused");
    assert_unauthorized(&refused, "expired");
}

#[tokio::test]
async fn a_ticket_opens_only_its_own_title_and_only_sessions() {
    let server = TestServer::start(&[]).await;
    let ticket_for_clock = ticket(&server, "alice", "clock").await;
    let refused = upgrade(
        &server,
        &format!("movie_id=countdown&ticket={ticket_for_clock}"),
        &[],
    )
    .await
    .err()
    .expect("another title is refused");
    assert_unauthorized(&refused, "another title");
    // Showing it for the wrong title spent it.
    let spent = upgrade(
        &server,
        &format!("movie_id=clock&ticket={ticket_for_clock}"),
        &[],
    )
    .await
    .err()
    .expect("spent");
    assert_eq!(spent.status, 401);

    // A ticket is not a bearer token anywhere else.
    let ticket = ticket(&server, "alice", "clock").await;
    assert_eq!(server.status_with_token(&ticket).await, 401);
    let minted_with_ticket = server
        .http
        .post(server.url("/api/v1/stream/session-ticket"))
        .bearer_auth(&ticket)
        .json(&json!({"movie_id": "clock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(minted_with_ticket.status(), 401);
    let as_header = upgrade(
        &server,
        "movie_id=clock",
        &[("authorization", &format!("Bearer {ticket}"))],
    )
    .await
    .err()
    .expect("a ticket in the Authorization header is refused");
    assert_eq!(as_header.status, 401);
    // Nor does a token work as a ticket.
    let token_as_ticket = upgrade(
        &server,
        &format!("movie_id=clock&ticket={}", token("alice")),
        &[],
    )
    .await
    .err()
    .expect("a token is not a ticket");
    assert_eq!(token_as_ticket.status, 401);
}

#[tokio::test]
async fn ticket_requests_are_checked_like_any_api_call() {
    let server = TestServer::start(&[]).await;
    let url = server.url("/api/v1/stream/session-ticket");
    let unauthenticated = server
        .http
        .post(&url)
        .json(&json!({"movie_id": "clock"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), 401);
    assert_eq!(unauthenticated.headers()["www-authenticate"], "Bearer");
    let (status, body) = request_ticket(&server, "alice", json!({"movie_id": "nope"})).await;
    assert_eq!(
        (status, &body["error"]),
        (404, &json!("not_found")),
        "{body}"
    );
    for bad in [
        json!({}),
        json!({"movie_id": 7}),
        json!({"movie_id": "clock", "user_id": "bob"}),
        json!("clock"),
        json!(null),
    ] {
        let (status, body) = request_ticket(&server, "alice", bad.clone()).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request", "{bad}: {body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let not_json = server
        .http
        .post(&url)
        .bearer_auth(token("alice"))
        .body("movie_id=clock")
        .send()
        .await
        .unwrap();
    // No `Content-Type: application/json`.
    assert_eq!(not_json.status(), 415);
    let body: Value = not_json.json().await.unwrap();
    assert_eq!(body["error"], "unsupported_media_type", "{body}");
}

#[tokio::test]
async fn a_flood_of_ticket_requests_is_bounded_per_user_and_per_node() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at(now_micros());
    let config = test_config(
        dir.path(),
        &[
            "--max-session-tickets-per-user",
            "4",
            "--max-session-tickets",
            "10",
        ],
    );
    let server = TestServer::start_with_clock(config, clock.clone()).await;
    let body = json!({"movie_id": "clock"});

    let statuses = join_all((0..200).map(|_| request_ticket(&server, "alice", body.clone()))).await;
    let granted = statuses.iter().filter(|(status, _)| *status == 200).count();
    assert_eq!(granted, 4, "one user holds 4 unused tickets at most");
    for (status, body) in statuses.iter().filter(|(status, _)| *status != 200) {
        assert_eq!(*status, 429, "{body}");
        assert_eq!(body["error"], "too_many_requests");
    }

    let mut node_full = 0;
    for i in 0..40 {
        let (status, answer) = request_ticket(&server, &format!("viewer-{i}"), body.clone()).await;
        match status {
            200 => {}
            503 => {
                assert_eq!(answer["error"], "unavailable", "{answer}");
                node_full += 1;
            }
            other => panic!("{other}: {answer}"),
        }
    }
    assert_eq!(
        node_full,
        40 - 6,
        "the node holds 10 unused tickets at most"
    );

    // Expired tickets are purged: after a lifetime there is room again.
    clock.advance(30_000_000);
    for user in ["alice", "viewer-39"] {
        let (status, answer) = request_ticket(&server, user, body.clone()).await;
        assert_eq!(status, 200, "{user}: {answer}");
    }
}

#[tokio::test]
async fn the_token_may_come_as_a_subprotocol_and_is_never_echoed() {
    let server = TestServer::start(&[]).await;
    let token = token("alice");
    let offered = format!("resume.v1, bearer.{token}");
    let (mut session, response) = upgrade(
        &server,
        "movie_id=clock",
        &[("sec-websocket-protocol", &offered)],
    )
    .await
    .expect("the subprotocol token opens the session");
    let selected: Vec<_> = response
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .collect();
    assert_eq!(selected, ["resume.v1"]);
    for (name, value) in response.headers() {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(!value.contains(&token), "{name} echoes the token");
    }
    session.expect("hello").await;
    session.tick(7.0).await;
    session.expect_saved(7.0).await;
    session.close().await;
    assert_eq!(server.resume_seconds("alice", "clock").await, 7.0);

    // Offering the session protocol alone with another credential selects it too.
    let ticket = ticket(&server, "alice", "clock").await;
    let (session, response) = upgrade(
        &server,
        &format!("movie_id=clock&ticket={ticket}"),
        &[("sec-websocket-protocol", "resume.v1")],
    )
    .await
    .expect("ticket with the session protocol");
    assert_eq!(response.headers()["sec-websocket-protocol"], "resume.v1");
    session.close().await;

    let forged = upgrade(
        &server,
        "movie_id=clock",
        &[("sec-websocket-protocol", "resume.v1, bearer.forged.token.x")],
    )
    .await
    .err()
    .expect("a bad subprotocol token is refused");
    assert_eq!(forged.status, 401, "{forged:?}");
    let alone = upgrade(
        &server,
        "movie_id=clock",
        &[("sec-websocket-protocol", &format!("bearer.{token}"))],
    )
    .await
    .err()
    .expect("a bearer subprotocol without resume.v1 is refused");
    assert_eq!(alone.status, 400, "{alone:?}");
    assert!(
        alone.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("resume.v1")),
        "{alone:?}"
    );
}

#[tokio::test]
async fn query_tokens_work_by_default_and_are_refused_with_the_knob_off() {
    let server = TestServer::start(&[]).await;
    let query = format!("movie_id=clock&access_token={}", token("alice"));
    let (session, _) = upgrade(&server, &query, &[])
        .await
        .expect("a query token is still accepted by default");
    session.close().await;
    server.stop().await;

    let server = TestServer::start(&["--allow-query-token", "false"]).await;
    let refused = upgrade(&server, &query, &[])
        .await
        .err()
        .expect("a query token is refused with the knob off");
    assert_unauthorized(&refused, "ticket");
    // The other credentials still work.
    let ticket = ticket(&server, "alice", "clock").await;
    let (session, _) = upgrade(&server, &format!("movie_id=clock&ticket={ticket}"), &[])
        .await
        .expect("ticket");
    session.close().await;
}

#[tokio::test]
async fn an_upgrade_carries_one_credential_and_a_refused_one_keeps_its_ticket() {
    let server = TestServer::start(&[]).await;
    let ticket = ticket(&server, "alice", "clock").await;
    // Refused for its origin before the ticket is looked at.
    let cross_site = upgrade(
        &server,
        &format!("movie_id=clock&ticket={ticket}"),
        &[("origin", "http://evil.example")],
    )
    .await
    .err()
    .expect("a foreign origin is refused");
    assert_eq!(cross_site.status, 403, "{cross_site:?}");
    let both = upgrade(
        &server,
        &format!("movie_id=clock&ticket={ticket}"),
        &[("authorization", &format!("Bearer {}", token("alice")))],
    )
    .await
    .err()
    .expect("two credentials are refused");
    assert_eq!(both.status, 400, "{both:?}");
    // The refused requests did not spend the ticket.
    let (session, _) = upgrade(&server, &format!("movie_id=clock&ticket={ticket}"), &[])
        .await
        .expect("the ticket is still good");
    session.close().await;
}
