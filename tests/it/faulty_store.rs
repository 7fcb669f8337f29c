//! A failing embedded store: readiness follows it, sessions ride it out, and
//! every latest position lands once it recovers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use resume_server::store::embedded::EmbeddedStore;

use crate::support::faulty::FaultyStore;
use crate::support::{TestServer, test_config, wait_until};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_embedded_store_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = FaultyStore::wrap(Arc::new(EmbeddedStore::open(dir.path()).unwrap()));
    let config = test_config(
        dir.path(),
        &[
            "--flush-interval-ms",
            "100",
            "--readiness-probe-interval-ms",
            "50",
        ],
    );
    let server = TestServer::start_with_store(config, store.clone()).await;
    let mut sessions = Vec::new();
    for i in 0..20 {
        let (mut session, _) = server.session(&format!("viewer-{i}"), "inception").await;
        session.tick(1.0 + i as f64).await;
        session.expect_saved(1.0 + i as f64).await;
        sessions.push(session);
    }
    store.failing.store(true, Ordering::SeqCst);
    // Not ready once a few probes in a row have failed (`crate::readiness`).
    wait_until("readyz reports the store down", || async {
        server.ready_status().await == 503
    })
    .await;
    // Without a live session on the title the read path says so plainly,
    // without internals (with one, it answers from it: `positions::`).
    let response = server
        .get("viewer-0", "/api/v1/stream?movie_id=clock")
        .await;
    assert_eq!(response.status(), 503);
    let body = response.text().await.unwrap();
    assert!(!body.contains("injected"), "{body}");
    for (i, session) in sessions.iter_mut().enumerate() {
        session.tick(500.0 + i as f64).await;
    }
    wait_until("the writes fail", || async {
        server
            .metric("resume_store_writes_total", "outcome=\"Failed\"")
            .await
            >= 20.0
    })
    .await;
    assert_eq!(server.metric("resume_live_sessions", "").await, 20.0);
    store.failing.store(false, Ordering::SeqCst);
    wait_until("readyz recovers", || async {
        server.ready_status().await == 200
    })
    .await;
    for (i, session) in sessions.iter_mut().enumerate() {
        session.expect_saved(500.0 + i as f64).await;
    }
    for i in 0..20 {
        let stream = server.stream(&format!("viewer-{i}"), "inception").await;
        assert_eq!(stream["resume_position_seconds"], 500.0 + i as f64);
    }
}
