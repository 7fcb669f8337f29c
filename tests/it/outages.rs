//! Store outages and slowness with live sessions: sessions stay open and keep
//! their latest position, readiness follows the store, and once the store is
//! back every latest position lands. Runs on the CQL test node, which the test
//! can stop, slow down or make fail.

use crate::cql_node::NodeMode;
use crate::support::{BackendKind, Session, TestBackend, wait_until};

const SESSIONS: usize = 40;

async fn outage_then_recovery(mode: NodeMode) {
    if std::env::var("RESUME_TEST_CASSANDRA").is_ok_and(|v| !v.is_empty()) {
        eprintln!(
            "outages: needs the CQL test node to inject faults; runs against it even with RESUME_TEST_CASSANDRA"
        );
    }
    // Always the in-process node: the test must control it.
    let backend = TestBackend::with_test_node().await;
    assert_eq!(backend.kind, BackendKind::Cassandra);
    let node = backend.node.as_ref().unwrap();
    let server = backend
        .start(&[
            "--flush-interval-ms",
            "100",
            "--cassandra-request-timeout-ms",
            "200",
            "--cassandra-max-writes-in-flight",
            "8",
            "--tick-rate",
            "100",
        ])
        .await;
    let mut sessions: Vec<Session> = Vec::new();
    for i in 0..SESSIONS {
        let (mut session, _) = server.session(&format!("viewer-{i}"), "inception").await;
        session.tick(100.0 + i as f64).await;
        session.expect_saved(100.0 + i as f64).await;
        sessions.push(session);
    }
    assert_eq!(server.ready_status().await, 200);

    node.set_mode(mode);
    wait_until("readyz reports the store down", || async {
        server.ready_status().await == 503
    })
    .await;
    // Players keep playing through the outage.
    for round in 1..=3 {
        for (i, session) in sessions.iter_mut().enumerate() {
            session.tick(1000.0 * round as f64 + i as f64).await;
        }
        wait_until("the ticks reached every session", || async {
            server.metric("resume_ticks_received_total", "").await
                >= (SESSIONS * (1 + round)) as f64
        })
        .await;
    }
    wait_until("writes are failing", || async {
        server
            .metric("resume_store_writes_total", "outcome=\"Failed\"")
            .await
            >= SESSIONS as f64
    })
    .await;
    // Sessions are still open and the read path still answers from them.
    assert_eq!(
        server.metric("resume_live_sessions", "").await,
        SESSIONS as f64
    );
    // Bounded: never more writes in flight than the semaphore allows.
    assert!(
        node.peak_writes_in_flight() <= 8,
        "peak {}",
        node.peak_writes_in_flight()
    );

    node.set_mode(NodeMode::Normal);
    wait_until("readyz recovers", || async {
        server.ready_status().await == 200
    })
    .await;
    for (i, session) in sessions.iter_mut().enumerate() {
        session.expect_saved(3000.0 + i as f64).await;
    }
    for i in 0..SESSIONS {
        let (position_ms, _) = node
            .stored(&format!("viewer-{i}"), "inception")
            .expect("a position landed");
        assert_eq!(position_ms, (3000 + i as i64) * 1000, "viewer-{i}");
    }
    // The failures were retried, not queued: attempts stay within a few per
    // session per second of outage, not one per tick.
    let failed = server
        .metric("resume_store_writes_total", "outcome=\"Failed\"")
        .await;
    assert!(failed < (SESSIONS * 100) as f64, "{failed} failed writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_cluster_loses_nothing() {
    outage_then_recovery(NodeMode::Unresponsive).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cluster_loses_nothing() {
    outage_then_recovery(NodeMode::Failing).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_that_close_during_an_outage_land_their_position_afterwards() {
    let backend = TestBackend::with_test_node().await;
    let node = backend.node.as_ref().unwrap();
    let server = backend
        .start(&[
            "--flush-interval-ms",
            "600000",
            "--cassandra-request-timeout-ms",
            "200",
        ])
        .await;
    let (mut session, _) = server.session("alice", "inception").await;
    session.tick(42.0).await;
    server.wait_for_resume("alice", "inception", 42.0).await;
    node.set_mode(NodeMode::Failing);
    session.close().await;
    wait_until("the close write failed at least once", || async {
        server
            .metric("resume_store_writes_total", "outcome=\"Failed\"")
            .await
            >= 1.0
    })
    .await;
    assert!(node.stored("alice", "inception").is_none());
    node.set_mode(NodeMode::Normal);
    wait_until("the position landed after recovery", || async {
        node.stored("alice", "inception").map(|(p, _)| p) == Some(42_000)
    })
    .await;
    wait_until("the session finished", || async {
        server.metric("resume_live_sessions", "").await == 0.0
    })
    .await;
}
