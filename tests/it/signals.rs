//! The real binary under SIGTERM: every live session's position is written, the
//! process exits 0, and tokens in query strings never reach the log.

use futures_util::future::join_all;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::binary::ServerProcess;
use crate::support::{Session, TestServer, metric_value, token, wait_until};

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
    let http = reqwest::Client::new();
    wait_until("every tick reached its session", || async {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, "resume_ticks_received_total", "") == SESSIONS as f64
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
