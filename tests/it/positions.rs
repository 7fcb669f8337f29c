//! The saved position is where the viewer really was: scrubs, deletes during a
//! session, a second device, a seek that has not landed, reads that straddle a
//! close, store outages, honest acknowledgements and clock skew — each against a
//! real server on both store backends.

use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use resume_server::store::{PositionWrite, Stored};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::support::faulty::FaultyStore;
use crate::support::{DEADLINE, TestBackend, TestServer, wait_until};

/// Waits until no session is live on `server` (every final write is durable).
async fn wait_for_no_sessions(server: &TestServer) {
    wait_until("every session has finished", || async {
        server.metric("resume_live_sessions", "").await == 0.0
    })
    .await;
}

/// The continue-watching items of `user` as (movie, position) pairs.
async fn continue_watching(server: &TestServer, user: &str) -> Vec<(String, f64)> {
    let body: Value = server
        .get(user, "/api/v1/continue-watching")
        .await
        .json()
        .await
        .expect("json");
    body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|item| {
            (
                item["movie_id"].as_str().unwrap().to_owned(),
                item["position_seconds"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Reads the next message that is not a ping; `Err` carries the close code.
async fn next_message(session: &mut crate::support::Session) -> Result<Value, Option<u16>> {
    loop {
        match tokio::time::timeout(DEADLINE, session.ws.next())
            .await
            .expect("message in time")
        {
            Some(Ok(Message::Text(text))) => {
                crate::support::contract::check_server_message(&text);
                return Ok(serde_json::from_str(&text).unwrap());
            }
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code));
                if let Some(code) = code {
                    crate::support::contract::check_close_code(code);
                }
                return Err(code);
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(None),
        }
    }
}

async fn a_scrub_keeps_the_last_tick(backend: TestBackend) {
    // A long interval: only the close writes, so the close writes the scrub's end.
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    // Dragging the seek bar: 40 ticks at once, four times the allowed rate.
    for second in 1..=40 {
        session.tick(f64::from(second)).await;
    }
    session.close().await;
    wait_for_no_sessions(&server).await;
    assert_eq!(server.resume_seconds("alice", "clock").await, 40.0);
    assert!(server.metric("resume_ticks_coalesced_total", "").await > 0.0);
}

async fn a_sustained_flood_is_closed_after_its_latest_tick_is_written(backend: TestBackend) {
    let store = backend.open_store().await;
    let config = backend.config(&["--tick-rate", "2", "--flush-interval-ms", "60000"]);
    let server = TestServer::start_with_store(config, store.clone()).await;
    let (mut session, _) = server.session("alice", "clock").await;
    let mut sent = 0;
    for second in 1..=200 {
        let frame = json!({"type":"tick","position_seconds":second}).to_string();
        if session.ws.send(Message::text(frame)).await.is_err() {
            break;
        }
        sent = second;
    }
    let code = loop {
        match next_message(&mut session).await {
            Ok(message) => assert_ne!(message["type"], "error", "over-rate ticks go unanswered"),
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(1008));
    // The close came after the write: the store itself holds the position when
    // the close arrives. At 2/s the session takes 2 s of burst and 5 s of
    // strikes (14 ticks) and closes on the 15th, give or take what the bucket
    // refilled while the ticks were sent.
    let stored = store
        .get("alice", "clock")
        .await
        .unwrap()
        .and_then(Stored::into_position)
        .expect("written before the close");
    let saved = stored.position_ms / 1000;
    assert!(
        (15..=17).contains(&saved) && saved <= sent,
        "saved {saved} of {sent}"
    );
}

async fn a_binary_flood_is_closed_like_a_text_flood(backend: TestBackend) {
    let server = backend.start(&["--tick-rate", "2"]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(5.0).await;
    for _ in 0..200 {
        if session
            .ws
            .send(Message::binary(vec![0u8; 16]))
            .await
            .is_err()
        {
            break;
        }
    }
    let mut errors = 0;
    let code = loop {
        match next_message(&mut session).await {
            Ok(message) if message["type"] == "error" => errors += 1,
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    assert_eq!(code, Some(1008));
    assert!(
        errors <= 4,
        "only frames within the rate are answered: {errors}"
    );
    assert_eq!(server.resume_seconds("alice", "clock").await, 5.0);
}

async fn a_delete_holds_while_the_session_is_live(backend: TestBackend) {
    let server = backend.start(&[]).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(30.0).await;
    session.expect_saved(30.0).await;
    // The player stays open (paused) while the viewer removes the title.
    let deleted = server
        .send(Method::DELETE, "alice", "/api/v1/progress/clock")
        .await;
    assert_eq!(deleted.status(), 204);
    assert_eq!(server.resume_seconds("alice", "clock").await, 0.0);
    let raw = server.get("alice", "/api/v1/progress/clock").await;
    assert_eq!(raw.status(), 404);
    assert!(continue_watching(&server, "alice").await.is_empty());
    let (_other, hello) = server.session("alice", "clock").await;
    assert_eq!(hello["resume_position_seconds"], 0.0);
    // The paused session resending its position does not undo the delete…
    session.tick(30.0).await;
    session.tick_state(30.0, "paused").await;
    // Frames are handled in order: the answer to a bad one proves both ticks
    // were taken before the read below.
    session.send_text(r#"{"type":"tick"}"#).await;
    assert_eq!(session.expect("error").await["code"], "invalid_position");
    assert_eq!(server.resume_seconds("alice", "clock").await, 0.0);
    // …but playing on after the delete brings the title back, as documented.
    session.tick(31.0).await;
    server.wait_for_resume("alice", "clock", 31.0).await;
}

async fn a_device_coming_back_does_not_erase_another_devices_progress(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    // The phone pauses at 10:00; the app goes to the background and its socket drops.
    let (mut phone, _) = server.session("alice", "inception").await;
    phone.tick_state(600.0, "paused").await;
    server.wait_for_resume("alice", "inception", 600.0).await;
    phone.drop_connection();
    wait_for_no_sessions(&server).await;
    // The viewer watches on the TV up to 1:00:00 and stops.
    let (mut tv, hello) = server.session("alice", "inception").await;
    assert_eq!(hello["resume_position_seconds"], 600.0);
    tv.tick(601.0).await;
    tv.tick(3600.0).await;
    tv.close().await;
    wait_for_no_sessions(&server).await;
    // The phone comes back and, as the protocol asks, resends its latest position.
    let (mut phone, hello) = server.session("alice", "inception").await;
    assert_eq!(hello["resume_position_seconds"], 3600.0);
    phone.tick_state(600.0, "paused").await;
    assert_eq!(server.resume_seconds("alice", "inception").await, 3600.0);
    phone.close().await;
    wait_for_no_sessions(&server).await;
    assert_eq!(server.resume_seconds("alice", "inception").await, 3600.0);
    assert_eq!(
        continue_watching(&server, "alice").await,
        [("inception".to_owned(), 3600.0)]
    );
}

async fn a_tick_before_the_resume_seek_lands_does_not_wipe_the_position(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    server
        .post_progress(
            "alice",
            json!({"movie_id":"inception","position_seconds":2843}),
        )
        .await;
    let (mut player, hello) = server.session("alice", "inception").await;
    assert_eq!(hello["resume_position_seconds"], 2843.0);
    player.tick(0.0).await;
    player.tick(0.2).await;
    player.drop_connection();
    wait_for_no_sessions(&server).await;
    assert_eq!(server.resume_seconds("alice", "inception").await, 2843.0);
    assert_eq!(
        continue_watching(&server, "alice").await,
        [("inception".to_owned(), 2843.0)]
    );
}

async fn starting_over_and_playing_on_is_saved(backend: TestBackend) {
    let server = backend.start(&["--provisional-confirm-ms", "1000"]).await;
    server
        .post_progress(
            "alice",
            json!({"movie_id":"inception","position_seconds":2843}),
        )
        .await;
    let (mut player, _) = server.session("alice", "inception").await;
    // The viewer starts over and plays: ticks advance with real time.
    let started = tokio::time::Instant::now();
    let position = loop {
        let position = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
        player.tick(position).await;
        let resume = server.resume_seconds("alice", "inception").await;
        if resume < 2843.0 {
            // Readers see a confirmed position: one this player sent, played
            // on from 0 (the latest tick may still be on its way).
            assert!(resume > 0.0 && resume <= position, "{resume} of {position}");
            break position;
        }
        assert!(started.elapsed() < DEADLINE, "never confirmed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "confirmed only after the confirmation window"
    );
    player.close().await;
    wait_for_no_sessions(&server).await;
    assert_eq!(server.resume_seconds("alice", "inception").await, position);
}

async fn a_read_that_straddles_a_close_sees_the_final_position(backend: TestBackend) {
    let store = FaultyStore::wrap(backend.open_store().await);
    let config = backend.config(&["--flush-interval-ms", "60000"]);
    let server = TestServer::start_with_store(config, store.clone()).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(50.0).await;
    server.wait_for_resume("alice", "clock", 50.0).await;
    // A read takes its store snapshot (nothing written yet) and stalls…
    store.hold_reads.store(true, Ordering::SeqCst);
    let read_taken = store.read_taken.notified();
    let url = server.url("/api/v1/stream?movie_id=clock");
    let http = server.http.clone();
    let read = tokio::spawn(async move {
        let response = http
            .get(url)
            .bearer_auth(crate::support::token("alice"))
            .send()
            .await
            .expect("request");
        response.json::<Value>().await.expect("json")
    });
    tokio::time::timeout(DEADLINE, read_taken)
        .await
        .expect("the read reached the store");
    // …while the session closes, writes 50 and leaves the registry.
    session.close().await;
    wait_for_no_sessions(&server).await;
    store.release.notify_one();
    let answer = read.await.unwrap();
    assert_eq!(answer["resume_position_seconds"], 50.0);
}

async fn reads_during_an_outage_answer_from_a_live_session(backend: TestBackend) {
    let store = FaultyStore::wrap(backend.open_store().await);
    let config = backend.config(&["--flush-interval-ms", "60000"]);
    let server = TestServer::start_with_store(config, store.clone()).await;
    let (mut session, _) = server.session("alice", "clock").await;
    session.tick(40.0).await;
    server.wait_for_resume("alice", "clock", 40.0).await;
    store.failing.store(true, Ordering::SeqCst);
    assert_eq!(server.resume_seconds("alice", "clock").await, 40.0);
    // Without a live position the outage stays an error.
    let other = server
        .get("alice", "/api/v1/stream?movie_id=countdown")
        .await;
    assert_eq!(other.status(), 503);
    store.failing.store(false, Ordering::SeqCst);
    session.close().await;
    wait_for_no_sessions(&server).await;
    assert_eq!(server.resume_seconds("alice", "clock").await, 40.0);
}

async fn only_a_stored_winner_is_acknowledged_as_saved(backend: TestBackend) {
    let server = backend.start(&["--flush-interval-ms", "60000"]).await;
    let (mut phone, _) = server.session("alice", "clock").await;
    phone.tick(10.0).await;
    server.wait_for_resume("alice", "clock", 10.0).await;
    // The TV, later, plays on to 80 and stops: 80 is stored.
    let (mut tv, _) = server.session("alice", "clock").await;
    tv.tick(80.0).await;
    tv.close().await;
    wait_until("the tv's session is gone", || async {
        server.metric("resume_live_sessions", "").await == 1.0
    })
    .await;
    // The phone's older position is written now, and loses.
    phone.tick_state(10.0, "ended").await;
    let lost = phone.expect("superseded").await;
    assert_eq!(
        lost,
        json!({"type":"superseded","position_seconds":10.0,
            "by":"newer_position","current_position_seconds":80.0})
    );
    assert_eq!(server.resume_seconds("alice", "clock").await, 80.0);

    // A delete after a tick makes that tick's write lose too.
    let (mut player, _) = server.session("alice", "countdown").await;
    player.tick(20.0).await;
    server.wait_for_resume("alice", "countdown", 20.0).await;
    let deleted = server
        .send(Method::DELETE, "alice", "/api/v1/progress/countdown")
        .await;
    assert_eq!(deleted.status(), 204);
    player.tick_state(20.0, "ended").await;
    let lost = player.expect("superseded").await;
    assert_eq!(lost["by"], "delete");
    assert_eq!(server.resume_seconds("alice", "countdown").await, 0.0);
}

async fn a_stored_position_from_a_fast_clock_is_counted(backend: TestBackend) {
    let store = backend.open_store().await;
    let now = resume_server::clock::now_micros();
    let write = |movie: &str, at: i64| PositionWrite {
        user_id: "alice".into(),
        movie_id: movie.into(),
        position_ms: 30_000,
        written_at_micros: at,
        watched: Default::default(),
    };
    // Written by a node whose clock runs an hour fast, and by one in sync.
    store
        .put(write("clock", now + 3_600_000_000))
        .await
        .unwrap();
    store.put(write("countdown", now)).await.unwrap();
    let config = backend.config(&[]);
    let server = TestServer::start_with_store(config, store).await;
    assert_eq!(server.resume_seconds("alice", "countdown").await, 30.0);
    assert_eq!(server.metric("resume_clock_skew_seen_total", "").await, 0.0);
    assert_eq!(server.resume_seconds("alice", "clock").await, 30.0);
    assert_eq!(server.metric("resume_clock_skew_seen_total", "").await, 1.0);
}

crate::backend_tests!(
    a_scrub_keeps_the_last_tick,
    a_sustained_flood_is_closed_after_its_latest_tick_is_written,
    a_binary_flood_is_closed_like_a_text_flood,
    a_delete_holds_while_the_session_is_live,
    a_device_coming_back_does_not_erase_another_devices_progress,
    a_tick_before_the_resume_seek_lands_does_not_wipe_the_position,
    starting_over_and_playing_on_is_saved,
    a_read_that_straddles_a_close_sees_the_final_position,
    reads_during_an_outage_answer_from_a_live_session,
    only_a_stored_winner_is_acknowledged_as_saved,
    a_stored_position_from_a_fast_clock_is_counted,
);
