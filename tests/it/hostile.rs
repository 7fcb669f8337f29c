//! Hostile clients: slow handshakes, idle connections, corpora of malformed
//! requests and frames. The server must refuse them cleanly and keep serving.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{DEADLINE, TestServer, token};

/// Reads until the server closes the connection; returns what it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let read = tokio::time::timeout(DEADLINE, stream.read(&mut buffer))
            .await
            .expect("the server closes the connection in time");
        match read {
            Ok(0) | Err(_) => return received,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// The header deadline the test server gets.
const HEADER_TIMEOUT: Duration = Duration::from_millis(300);

/// A connection the header deadline closes is closed well before this (the
/// default deadline is 10 s; nothing else closes a quiet connection sooner).
const CLOSED_WELL_BEFORE: Duration = Duration::from_secs(3);

/// Waits until the server closes `stream`, sending `trickle` one byte every
/// 50 ms meanwhile; returns what the server sent and how long after `since` it
/// closed.
async fn time_until_closed(
    stream: &mut TcpStream,
    mut trickle: &[u8],
    since: Instant,
) -> (Vec<u8>, Duration) {
    let (mut reader, mut writer) = stream.split();
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    let mut pace = tokio::time::interval(Duration::from_millis(50));
    let limit = tokio::time::sleep(DEADLINE);
    tokio::pin!(limit);
    loop {
        tokio::select! {
            read = reader.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return (received, since.elapsed()),
                Ok(n) => received.extend_from_slice(&buffer[..n]),
            },
            _ = pace.tick(), if !trickle.is_empty() => {
                // A write may fail once the server has closed; the read says so.
                if writer.write_all(&trickle[..1]).await.is_ok() {
                    trickle = &trickle[1..];
                } else {
                    trickle = &[];
                }
            }
            () = &mut limit => panic!("the connection is still open after {DEADLINE:?}"),
        }
    }
}

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let timeout_ms = HEADER_TIMEOUT.as_millis().to_string();
    let server = TestServer::start(&["--header-read-timeout-ms", &timeout_ms]).await;
    // Headers that keep coming, a byte at a time, and never complete
    // (slowloris): the deadline is for the whole head, not for each read.
    let slow_started = Instant::now();
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let trickle = "X-Slow: ".to_owned() + &"x".repeat(200);
    // A connection that never sends anything.
    let idle_started = Instant::now();
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let ((slow_reply, slow_closed), (idle_reply, idle_closed)) = tokio::join!(
        time_until_closed(&mut slow, trickle.as_bytes(), slow_started),
        time_until_closed(&mut idle, b"", idle_started),
    );
    // The server's clock for each starts after the test's did, so neither can
    // close before the deadline; both must close soon after it.
    for (what, closed, reply) in [
        ("slow headers", slow_closed, slow_reply),
        ("an idle connection", idle_closed, idle_reply),
    ] {
        assert!(
            closed >= HEADER_TIMEOUT && closed < CLOSED_WELL_BEFORE,
            "{what} closed after {closed:?}; the header deadline is {HEADER_TIMEOUT:?}"
        );
        // No request was complete, so nothing was served (a 408 at most).
        assert!(
            reply.is_empty() || reply.starts_with(b"HTTP/1.1 408"),
            "{what} got {:?}",
            String::from_utf8_lossy(&reply)
        );
    }
    let response = server
        .http
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_instead_of_being_served() {
    // Three slots: the test client's pooled keep-alive connection from start-up holds one.
    let server = TestServer::start(&[
        "--max-connections",
        "3",
        "--header-read-timeout-ms",
        "60000",
    ])
    .await;
    // Two idle connections hold the other two...
    let _a = TcpStream::connect(server.addr).await.unwrap();
    let _b = TcpStream::connect(server.addr).await.unwrap();
    // ...so a third waits in the backlog; once one slot frees it is served.
    let waiting = tokio::spawn({
        let url = server.url("/healthz");
        async move { reqwest::get(url).await.map(|r| r.status().as_u16()) }
    });
    // A negative, so checked over a bounded window: nothing the server shows
    // says a connection is waiting in its backlog.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "served although every slot was taken"
    );
    drop(_a);
    let status = tokio::time::timeout(DEADLINE, waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn a_corpus_of_malformed_requests_leaves_the_server_serving() {
    let server = TestServer::start(&[]).await;
    let auth = format!("Authorization: Bearer {}\r\n", token("alice"));
    // Each raw request with the statuses a correct server may answer. Those
    // that a handler must see carry a valid token, so they get past auth to
    // the code that parses them. No status at all means the connection task
    // died (a panic in a handler ends its connection without a response).
    let corpus: Vec<(String, &[u16])> = vec![
        ("\x00\x01\x02\x03\r\n\r\n".into(), &[400]),
        ("GET\r\n\r\n".into(), &[400]),
        ("GET / HTTP/9.9\r\n\r\n".into(), &[400, 505]),
        (
            format!(
                "POST /api/v1/stream/progress HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: 99999999999999999999\r\n\r\n"
            ),
            &[400, 413],
        ),
        (
            format!(
                "POST /api/v1/stream/progress HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            ),
            &[400],
        ),
        (
            format!("GET /api/v1/stream?movie_id=%ZZ%00 HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
            &[400, 404],
        ),
        // Nothing outside static/ is served: no system file, no 2xx for traversal.
        (
            "GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n".into(),
            &[400, 404],
        ),
        (
            format!("GET /static/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n{auth}\r\n"),
            &[400, 404],
        ),
        (
            format!(
                "GET /api/v1/stream/session?movie_id=clock HTTP/1.1\r\nHost: x\r\n{auth}Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
            ),
            &[400, 426],
        ),
    ];
    for (raw, expected) in &corpus {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(raw.as_bytes()).await.unwrap();
        let _ = stream.shutdown().await;
        let response = read_until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse::<u16>().ok());
        assert!(
            status.is_some_and(|s| expected.contains(&s)),
            "{raw:?} → {status:?}, expected one of {expected:?}: {text}"
        );
        assert!(!text.contains("root:x:0:0"), "{text}");
        // The server is still up after each one.
        let health = server.http.get(server.url("/healthz")).send().await;
        assert!(
            health.is_ok_and(|r| r.status() == 200),
            "/healthz after {raw:?}"
        );
    }
    let odd_queries = [
        "/api/v1/stream?movie_id=%00",
        "/api/v1/stream?movie_id=a&movie_id=b",
        "/api/v1/stream?movie_id[]=x",
        "/api/v1/stream?%%%%",
        "/api/v1/continue-watching?limit=99999999999999999999999",
    ];
    for path in odd_queries {
        let status = server.get("alice", path).await.status().as_u16();
        assert!(matches!(status, 200 | 400 | 404), "{path} → {status}");
    }
    let headers_bomb = "x".repeat(64 * 1024);
    let response = server
        .http
        .get(server.url("/api/v1/stream?movie_id=clock"))
        .header("x-bomb", headers_bomb)
        .bearer_auth(token("alice"))
        .send()
        .await;
    // Served, or refused as too large: an answer either way, never a dropped
    // connection or a 5xx.
    let status = response.expect("an answer to a 64 KiB header").status();
    assert!(matches!(status.as_u16(), 200 | 431), "{status}");
    // Still serving, and still correct.
    assert_eq!(
        server
            .post_progress("alice", json!({"movie_id":"clock","position_seconds":5}))
            .await,
        204
    );
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        5.0
    );
}

#[tokio::test]
async fn a_corpus_of_malformed_frames_leaves_sessions_and_positions_intact() {
    let server = TestServer::start(&["--tick-rate", "1000"]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(10.0).await;
    session.expect_saved(10.0).await;
    let frames = [
        String::new(),
        "{}".into(),
        "null".into(),
        "\"tick\"".into(),
        "[]".into(),
        r#"{"type":null}"#.into(),
        r#"{"type":"tick","position_seconds":1e999}"#.into(),
        r#"{"type":"tick","position_seconds":-0.0000001}"#.into(),
        r#"{"type":"tick","position_seconds":[1]}"#.into(),
        r#"{"type":"tick","position_seconds":{"a":1}}"#.into(),
        r#"{"type":"tick","position_seconds":true}"#.into(),
        r#"{"type":"tick","position_seconds":Infinity}"#.into(),
        format!(r#"{{"type":"{}"}}"#, "t".repeat(3000)),
        "{\"type\":\"tick\",\"position_seconds\":1".into(),
        "\u{feff}{\"type\":\"tick\"}".into(),
        "{\"type\":\"tick\",\"position_seconds\":\"\u{0}\"}".into(),
    ];
    for frame in &frames {
        session.ws.send(Message::text(frame.clone())).await.unwrap();
        let reply = session.expect("error").await;
        assert!(reply["code"].is_string(), "{frame:?} → {reply}");
    }
    // 1e999 is not a JSON number serde accepts; a huge finite one clamps instead.
    session.tick(1e300).await;
    session.expect_saved(120.0).await;
    session.tick(11.0).await;
    session.expect_saved(11.0).await;
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        11.0
    );
}
