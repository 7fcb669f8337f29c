//! The real binary under SIGTERM: every live session's position is written, the
//! process exits 0, and tokens in query strings never reach the log.

use futures_util::future::join_all;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::binary::ServerProcess;
use crate::support::{Session, TestServer, token, wait_until};

const SESSIONS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_hundreds_of_live_sessions_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    // A long flush interval: only the shutdown can write these positions.
    let server = ServerProcess::start(
        dir.path(),
        &[
            ("RESUME_FLUSH_INTERVAL_MS", "600000"),
            ("RUST_LOG", "info,tower_http=debug,resume_server=debug"),
        ],
    )
    .await;
    let addr = server.addr;
    let mut sessions = join_all((0..SESSIONS).map(|i| async move {
        let mut session = Session::connect(addr, &format!("viewer-{i}"), "clock")
            .await
            .expect("upgrade");
        session.expect("hello").await;
        session.tick(i as f64 / 10.0 + 0.5).await;
        session
    }))
    .await;
    // One more session authenticated by the query string, as browsers do.
    let query_token = token("browser-user");
    let request =
        format!("ws://{addr}/api/v1/stream/session?movie_id=clock&access_token={query_token}")
            .into_client_request()
            .unwrap();
    let (browser, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("query-token upgrade");
    wait_until("every tick reached its session", || async {
        server.metric("resume_ticks_received_total", "").await == SESSIONS as f64
    })
    .await;

    let closes =
        tokio::spawn(async move { join_all(sessions.iter_mut().map(|s| s.close_code())).await });
    let (status, log) = server.terminate().await;
    assert!(status.success(), "exit status {status}\n{log}");
    let codes = closes.await.unwrap();
    assert!(
        codes.iter().all(|c| *c == Some(1001)),
        "every session closed with 1001"
    );
    assert!(log.contains("every session finished"), "{log}");
    assert!(
        !log.contains(&query_token),
        "a token from a query string reached the log"
    );
    assert!(
        log.contains("/api/v1/stream/session"),
        "requests are logged (by path)"
    );
    drop(browser);

    let server = TestServer::start_in(dir.path(), &[]).await;
    for i in 0..SESSIONS {
        let stream = server.stream(&format!("viewer-{i}"), "clock").await;
        assert_eq!(
            stream["resume_position_seconds"],
            i as f64 / 10.0 + 0.5,
            "viewer-{i}"
        );
    }
}

/// Sessions that each tick every 100 ms, their position counting ticks (0.1 s each).
async fn ticking_sessions(
    addr: std::net::SocketAddr,
    count: usize,
    stop: tokio_util::sync::CancellationToken,
) -> Vec<tokio::task::JoinHandle<u64>> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let mut session = Session::connect(addr, &format!("crash-{i}"), "inception")
            .await
            .expect("upgrade");
        session.expect("hello").await;
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut ticks = 0u64;
            let mut interval = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tokio::select! {
                    () = stop.cancelled() => return ticks,
                    _ = interval.tick() => {}
                }
                let frame = serde_json::json!({"type":"tick","position_seconds": (ticks + 1) as f64 / 10.0});
                let sent = futures_util::SinkExt::send(
                    &mut session.ws,
                    tokio_tungstenite::tungstenite::Message::text(frame.to_string()),
                )
                .await;
                if sent.is_err() {
                    return ticks;
                }
                ticks += 1;
            }
        }));
    }
    tasks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_at_most_one_flush_interval() {
    const FLUSH_MS: u64 = 500;
    const COUNT: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[("RESUME_FLUSH_INTERVAL_MS", "500")]).await;
    let addr = server.addr;
    let stop = tokio_util::sync::CancellationToken::new();
    let tasks = ticking_sessions(addr, COUNT, stop.clone()).await;
    // Let every session get through several flushes.
    wait_until("a few flushes per session have landed", || async {
        server
            .metric("resume_session_flushes_total", "reason=\"Interval\"")
            .await
            >= (COUNT * 3) as f64
    })
    .await;
    // Kill first, then stop the players: ticks sent after the kill fail and are not counted.
    server.kill().await;
    stop.cancel();
    let sent: Vec<u64> = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let server = TestServer::start_in(dir.path(), &[]).await;
    let mut worst_lag_ms = 0u64;
    for (i, last_tick) in sent.iter().enumerate() {
        let saved =
            server.stream(&format!("crash-{i}"), "inception").await["resume_position_seconds"]
                .as_f64()
                .unwrap();
        let saved_ticks = (saved * 10.0).round() as u64;
        assert!(
            (saved * 10.0 - saved_ticks as f64).abs() < 1e-6,
            "crash-{i}: {saved} is not a sent position"
        );
        assert!(
            saved_ticks <= *last_tick,
            "crash-{i}: saved {saved_ticks} beyond the last tick {last_tick}"
        );
        worst_lag_ms = worst_lag_ms.max((last_tick - saved_ticks) * 100);
    }
    eprintln!(
        "SIGKILL: worst lag behind the last tick sent: {worst_lag_ms} ms (flush interval {FLUSH_MS} ms)"
    );
    // One flush interval, plus one tick period and the commit that was in flight at the kill.
    assert!(
        worst_lag_ms <= FLUSH_MS + 100 + 400,
        "worst lag {worst_lag_ms} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_keeps_every_position() {
    const COUNT: usize = 500;
    let server = TestServer::start(&["--flush-interval-ms", "200"]).await;
    let addr = server.addr;
    let mut sessions = join_all((0..COUNT).map(|i| async move {
        let mut session = Session::connect(addr, &format!("storm-{i}"), "inception")
            .await
            .expect("upgrade");
        session.expect("hello").await;
        session.tick(10.0 + i as f64).await;
        session
    }))
    .await;
    wait_until("every first tick is live", || async {
        server.metric("resume_ticks_received_total", "").await == COUNT as f64
    })
    .await;
    // Everyone drops at once...
    for session in sessions.drain(..) {
        session.drop_connection();
    }
    // ...and comes back at once, sending its latest position first.
    let reconnected = join_all((0..COUNT).map(|i| async move {
        let mut session = Session::connect(addr, &format!("storm-{i}"), "inception")
            .await
            .expect("reconnect");
        let hello = session.expect("hello").await;
        session.tick(20.0 + i as f64).await;
        session.expect_saved(20.0 + i as f64).await;
        (session, hello)
    }))
    .await;
    assert_eq!(reconnected.len(), COUNT);
    // Each hello offered exactly where that viewer was when it dropped: its
    // tick was live on the server (maybe not written yet), and nothing newer
    // exists.
    for (i, (_, hello)) in reconnected.iter().enumerate() {
        let before = 10.0 + i as f64;
        let offered = hello["resume_position_seconds"]
            .as_f64()
            .unwrap_or_else(|| panic!("storm-{i}: hello without a resume position: {hello}"));
        assert!(
            offered >= before,
            "storm-{i}: the hello offered {offered} s, behind the {before} s it had before the storm"
        );
        assert_eq!(offered, before, "storm-{i}: the hello offered {offered} s");
    }
    for i in 0..COUNT {
        let stream = server.stream(&format!("storm-{i}"), "inception").await;
        assert_eq!(
            stream["resume_position_seconds"],
            20.0 + i as f64,
            "storm-{i}"
        );
    }
}
