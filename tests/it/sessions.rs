//! WebSocket playback sessions against a real server, over a real
//! tokio-tungstenite client.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Session, TestBackend, token, wait_until};

async fn hello_carries_the_resume_position(backend: TestBackend) {
    let server = backend.start(&[]).await;
    server
        .post_progress("alice", json!({"movie_id":"clock","position_seconds":42.5}))
        .await;
    let (_session, hello) = server.session("alice", "clock").await;
    assert_eq!(hello["movie_id"], "clock");
    assert_eq!(hello["resume_position_seconds"], 42.5);
    assert_eq!(hello["flush_interval_ms"], 200);
    assert!(hello["session_id"].as_u64().is_some());

    // Past the completion threshold the hello says 0, like the read path.
    server
        .post_progress(
            "alice",
            json!({"movie_id":"countdown","position_seconds":59}),
        )
        .await;
    let (_session, hello) = server.session("alice", "countdown").await;
    assert_eq!(hello["resume_position_seconds"], 0.0);
}

async fn ticks_are_saved_after_a_flush_and_acknowledged(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(10.0).await;
    session.tick(11.0).await;
    session.expect_saved(11.0).await;
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        11.0
    );
}

async fn the_read_path_sees_a_tick_before_its_flush(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(33.0).await;
    server.wait_for_resume("alice", "clock", 33.0).await;
    // Another user does not see it.
    assert_eq!(
        server.stream("bob", "clock").await["resume_position_seconds"],
        0.0
    );
}

async fn a_clean_close_and_a_tcp_drop_both_persist_the_last_tick(backend: TestBackend) {
    // A long interval: only the close can write these positions.
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    let (mut clean, _) = server.session("alice", "clock").await;
    clean.tick(21.0).await;
    clean.tick(22.0).await;
    let (mut dropped, _) = server.session("alice", "testcard").await;
    dropped.tick(31.0).await;
    dropped.tick(32.0).await;
    // Both ticks reached their actors before the connections end.
    server.wait_for_resume("alice", "clock", 22.0).await;
    server.wait_for_resume("alice", "testcard", 32.0).await;
    clean.close().await;
    dropped.drop_connection();
    wait_until("both sessions have ended", || async {
        server.metric("resume_live_sessions", "").await == 0.0
    })
    .await;
    server.stop().await;

    let server = backend.start(&[]).await;
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        22.0
    );
    assert_eq!(
        server.stream("alice", "testcard").await["resume_position_seconds"],
        32.0
    );
}

async fn a_paused_player_costs_no_writes(backend: TestBackend) {
    let server = backend
        .start(&["--flush-interval-ms", "50", "--tick-rate", "100"])
        .await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick_state(5.0, "playing").await;
    session.expect_saved(5.0).await;
    let writes = server.metric("resume_store_writes_total", "").await;
    // Paused: the same position again and again, over many flush intervals.
    // The player reports every 30 ms, so the 20 reports span about 12 flush intervals.
    for _ in 0..20 {
        session.tick_state(5.0, "paused").await;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    // A moved position afterwards is saved, and it is the only write since.
    session.tick_state(6.0, "playing").await;
    session.expect_saved(6.0).await;
    assert_eq!(
        server.metric("resume_store_writes_total", "").await,
        writes + 1.0
    );
}

async fn ended_saves_at_once(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    let (mut session, _) = server.session("alice", "countdown").await;
    session.tick_state(60.0, "ended").await;
    session.expect_saved(60.0).await;
    let stream = server.stream("alice", "countdown").await;
    assert_eq!(stream["completed"], true);
}

async fn a_newer_tick_from_another_device_wins_over_a_late_flush(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    let (mut phone, _) = server.session("alice", "clock").await;
    let (mut tv, _) = server.session("alice", "clock").await;
    phone.tick(10.0).await;
    server.wait_for_resume("alice", "clock", 10.0).await;
    tv.tick(80.0).await;
    server.wait_for_resume("alice", "clock", 80.0).await;
    // The tv closes first and writes 80; the phone's older tick is written after it.
    tv.close().await;
    wait_until("the tv's session is gone", || async {
        server.metric("resume_live_sessions", "").await == 1.0
    })
    .await;
    phone.close().await;
    wait_until("the phone's session is gone", || async {
        server.metric("resume_live_sessions", "").await == 0.0
    })
    .await;
    assert_eq!(
        server
            .metric("resume_session_flushes_total", "reason=\"Close\"")
            .await,
        2.0
    );
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        80.0
    );
}

async fn junk_frames_get_errors_and_the_session_goes_on(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(7.0).await;
    session.expect_saved(7.0).await;
    for (frame, code) in [
        ("not json", "invalid_json"),
        (r#"{"type":"rewind"}"#, "unknown_type"),
        (r#"{"type":"tick"}"#, "invalid_position"),
        (
            r#"{"type":"tick","position_seconds":-5}"#,
            "invalid_position",
        ),
        (
            r#"{"type":"tick","position_seconds":"7"}"#,
            "invalid_position",
        ),
        (r#"{"type":"tick","position_seconds":NaN}"#, "invalid_json"),
        (
            r#"{"type":"tick","position_seconds":1,"state":"zzz"}"#,
            "invalid_state",
        ),
    ] {
        session.send_text(frame).await;
        let error = session.expect("error").await;
        assert_eq!(error["code"], code, "{frame}");
    }
    session
        .ws
        .send(Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    assert_eq!(
        session.expect("error").await["code"],
        "binary_not_supported"
    );
    // Nothing of that touched the saved position, and the session still works.
    assert_eq!(
        server.stream("alice", "clock").await["resume_position_seconds"],
        7.0
    );
    session.tick(8.0).await;
    session.expect_saved(8.0).await;
}

/// The read buffer is small (a tick is about 60 bytes); a frame many times its
/// size, up to the frame limit, is still read whole.
async fn a_frame_far_larger_than_the_read_buffer_is_read_whole(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    let padding = " ".repeat(4000);
    session
        .send_text(&format!(
            r#"{{"type":"tick",{padding}"position_seconds":9.5}}"#
        ))
        .await;
    session.expect_saved(9.5).await;
}

async fn an_oversized_frame_closes_with_1009_and_the_server_lives_on(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(3.0).await;
    session.send_text(&"x".repeat(5000)).await;
    assert_eq!(session.close_code().await, Some(1009));
    let (mut again, _) = server.session("alice", "clock").await;
    again.tick(4.0).await;
    again.expect_saved(4.0).await;
}

async fn refused_upgrades_get_http_errors(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let status_of = |url: String, bearer: Option<String>| async move {
        let mut request = url.into_client_request().unwrap();
        if let Some(bearer) = bearer {
            request
                .headers_mut()
                .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
        }
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => 101,
        }
    };
    let base = format!("ws://{}/api/v1/stream/session", server.addr);
    assert_eq!(status_of(format!("{base}?movie_id=clock"), None).await, 401);
    assert_eq!(
        status_of(
            format!("{base}?movie_id=clock"),
            Some("forged.token.x".into())
        )
        .await,
        401
    );
    assert_eq!(
        status_of(format!("{base}?movie_id=nope"), Some(token("alice"))).await,
        404
    );
    assert_eq!(status_of(base.clone(), Some(token("alice"))).await, 400);
    // The query-string token browsers use.
    let with_query = format!("{base}?movie_id=clock&access_token={}", token("alice"));
    assert_eq!(status_of(with_query, None).await, 101);
    // A plain GET without upgrade headers is a 400, not a hang.
    let response = server
        .get("alice", "/api/v1/stream/session?movie_id=clock")
        .await;
    assert_eq!(response.status(), 400);
}

async fn session_caps_answer_503_and_429_while_existing_sessions_carry_on(backend: TestBackend) {
    let server = backend
        .start(&["--max-sessions", "3", "--max-sessions-per-user", "2"])
        .await;
    let (mut a1, _) = server.session("alice", "clock").await;
    let (_a2, _) = server.session("alice", "clock").await;
    let refused = Session::connect(server.addr, "alice", "clock")
        .await
        .err()
        .expect("refused");
    // Both refusals say when to try again.
    let retry_after = |r: &tokio_tungstenite::tungstenite::http::Response<Option<Vec<u8>>>| {
        r.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
    };
    assert!(
        matches!(refused, tokio_tungstenite::tungstenite::Error::Http(ref r)
            if r.status() == 429 && retry_after(r) == Some(2)),
        "{refused}"
    );
    let (_b1, _) = server.session("bob", "clock").await;
    let refused = Session::connect(server.addr, "carol", "clock")
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(refused, tokio_tungstenite::tungstenite::Error::Http(ref r)
            if r.status() == 503 && retry_after(r) == Some(2)),
        "{refused}"
    );
    a1.tick(9.0).await;
    a1.expect_saved(9.0).await;
}

async fn an_idle_session_ends_and_writes_its_position(backend: TestBackend) {
    let server = backend
        .start(&["--idle-timeout-ms", "300", "--flush-interval-ms", "60000"])
        .await;
    let (mut session, _) = server.session("alice", "clock").await;
    // Only the close can write (the flush interval is a minute): the last of
    // these ticks is what it must write.
    for position in [3.0, 7.5, 12.0] {
        session.tick(position).await;
    }
    assert_eq!(session.close_code().await, Some(1001));
    // The final write lands before the close frame is sent.
    assert_eq!(
        server
            .metric("resume_store_writes_total", "outcome=\"Ok\"")
            .await,
        1.0,
        "one write, applied, before the close"
    );
    if let Some(node) = &backend.node {
        assert_eq!(
            node.stored("alice", "clock")
                .map(|(position_ms, _)| position_ms),
            Some(12_000)
        );
    }
    wait_until("the idle session is gone", || async {
        server.metric("resume_live_sessions", "").await == 0.0
    })
    .await;
    assert_eq!(
        server
            .metric("resume_session_flushes_total", "reason=\"Close\"")
            .await,
        1.0
    );
    // What the store holds, read by a fresh server with no live session to
    // answer from.
    server.stop().await;
    let restarted = backend.start(&[]).await;
    assert_eq!(restarted.resume_seconds("alice", "clock").await, 12.0);
}

async fn cross_site_pages_cannot_open_sessions_unless_allowed(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let connect = |origin: &'static str, addr: std::net::SocketAddr| async move {
        let mut request = format!("ws://{addr}/api/v1/stream/session?movie_id=clock")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", token("alice")).parse().unwrap(),
        );
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("{e}"),
            Ok(_) => 101,
        }
    };
    assert_eq!(connect("https://evil.example", server.addr).await, 403);
    server.stop().await;
    let allowed = backend
        .start(&["--allowed-origins", "https://player.example"])
        .await;
    assert_eq!(connect("https://player.example", allowed.addr).await, 101);
    assert_eq!(connect("https://evil.example", allowed.addr).await, 403);
}

async fn shutdown_closes_sessions_with_1001_after_writing_them(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    let mut sessions = Vec::new();
    for i in 0..50 {
        let (mut session, _) = server.session(&format!("user-{i}"), "clock").await;
        session.tick(f64::from(i) + 1.5).await;
        sessions.push(session);
    }
    wait_until("every tick is live", || async {
        server.metric("resume_ticks_received_total", "").await == 50.0
    })
    .await;
    let stopping = tokio::spawn(server.stop());
    for session in &mut sessions {
        assert_eq!(session.close_code().await, Some(1001));
    }
    stopping.await.unwrap();
    let server = backend.start(&[]).await;
    for i in 0..50 {
        let stream = server.stream(&format!("user-{i}"), "clock").await;
        assert_eq!(
            stream["resume_position_seconds"],
            f64::from(i) + 1.5,
            "user-{i}"
        );
    }
}

async fn a_client_close_is_answered_with_a_close(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.send_close(1000).await;
    assert_eq!(session.close_code().await, Some(1000));
}

crate::backend_tests!(
    hello_carries_the_resume_position,
    ticks_are_saved_after_a_flush_and_acknowledged,
    the_read_path_sees_a_tick_before_its_flush,
    a_clean_close_and_a_tcp_drop_both_persist_the_last_tick,
    a_paused_player_costs_no_writes,
    ended_saves_at_once,
    a_newer_tick_from_another_device_wins_over_a_late_flush,
    junk_frames_get_errors_and_the_session_goes_on,
    a_frame_far_larger_than_the_read_buffer_is_read_whole,
    an_oversized_frame_closes_with_1009_and_the_server_lives_on,
    refused_upgrades_get_http_errors,
    session_caps_answer_503_and_429_while_existing_sessions_carry_on,
    an_idle_session_ends_and_writes_its_position,
    cross_site_pages_cannot_open_sessions_unless_allowed,
    shutdown_closes_sessions_with_1001_after_writing_them,
    a_client_close_is_answered_with_a_close,
);
