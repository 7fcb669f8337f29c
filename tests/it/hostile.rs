//! Hostile clients: slow handshakes, idle connections, corpora of malformed
//! requests and frames. The server must refuse them cleanly and keep serving.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
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

#[tokio::test]
async fn slow_headers_and_idle_connections_are_closed() {
    let server = TestServer::start(&["--header-read-timeout-ms", "300"]).await;
    // Headers that never complete (slowloris).
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .unwrap();
    // A connection that never sends anything.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    let started = tokio::time::Instant::now();
    read_until_closed(&mut slow).await;
    read_until_closed(&mut idle).await;
    // Closed by the header deadline, well before the test's own deadline.
    assert!(started.elapsed() < DEADLINE);
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
    let raw_requests: &[&[u8]] = &[
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /api/v1/stream/progress HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n",
        b"POST /api/v1/stream/progress HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/v1/stream?movie_id=%ZZ%00 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/stream/session?movie_id=clock HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ];
    for raw in raw_requests {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let _ = stream.shutdown().await;
        let response = read_until_closed(&mut stream).await;
        let text = String::from_utf8_lossy(&response);
        assert!(!text.contains("panicked"), "{text}");
        // Nothing outside static/ is served: no system file, no 2xx for traversal.
        assert!(!text.contains("root:x:0:0"), "{text}");
        if raw.windows(6).any(|w| w == b"/../..") {
            assert!(!text.starts_with("HTTP/1.1 2"), "{text}");
        }
        assert!(!text.starts_with("HTTP/1.1 5"), "{text}");
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
    if let Ok(response) = response {
        assert_ne!(response.status().as_u16(), 500);
    }
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
