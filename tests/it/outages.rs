//! Store outages and slowness with live sessions: sessions stay open and keep
//! their latest position, readiness follows the store, and once the store is
//! back every latest position lands. Runs on the CQL test node, which the test
//! can stop, slow down or make fail.

use std::future::Future;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::support::{BackendKind, Session, TestBackend, TestServer, wait_until};
use cql_test_node::NodeMode;

const SESSIONS: usize = 40;

/// The server's limit on each Cassandra request in these tests.
const REQUEST_TIMEOUT: Duration = Duration::from_millis(200);

/// How often the players tick through the outage (a 10 Hz player, well
/// within `--tick-rate`).
const TICK_PERIOD: Duration = Duration::from_millis(100);

/// Ticks each player sends while the cluster is down: many more than the retry
/// schedule allows writes in that time, so a write per tick shows.
const OUTAGE_TICKS: u32 = 30;

/// The session retry schedule (`session::book::RETRY_MIN` and `RETRY_MAX`): the
/// first retry 250 ms after a failure, each next wait doubled, up to 8 s. Kept
/// here rather than imported, so a server that retries faster than that fails
/// this test.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_LONGEST: Duration = Duration::from_secs(8);

/// The most failed writes one session can have started in `outage`: one write,
/// then one more after each retry wait that fits (the writes' own durations,
/// ignored here, only make it fewer).
fn failed_writes_per_session(outage: Duration) -> u64 {
    let (mut writes, mut waited, mut wait) = (1, Duration::ZERO, RETRY_FIRST);
    while waited + wait <= outage {
        waited += wait;
        writes += 1;
        wait = (wait * 2).min(RETRY_LONGEST);
    }
    writes
}

/// Where player `i` is at its `tick`-th tick of the outage.
fn outage_position(tick: u32, i: usize) -> f64 {
    1000.0 + 10.0 * f64::from(tick) + i as f64
}

/// One reading of the failed-writes counter, with the span of the request that
/// read it (the value was taken somewhere in between).
struct FailedSample {
    sent: Instant,
    received: Instant,
    failed: f64,
}

/// Runs `until` while reading the server's failed-writes counter back to back.
async fn sample_failed_writes<F: Future>(
    server: &TestServer,
    until: F,
) -> (F::Output, Vec<FailedSample>) {
    let mut samples = Vec::new();
    tokio::pin!(until);
    loop {
        let sample = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let sent = Instant::now();
            let failed = server
                .metric("resume_store_writes_total", "outcome=\"Failed\"")
                .await;
            FailedSample {
                sent,
                received: Instant::now(),
                failed,
            }
        };
        tokio::select! {
            output = &mut until => return (output, samples),
            sample = sample => samples.push(sample),
        }
    }
}

/// A lower bound of the most writes the server had in flight at once: the most
/// failed writes that finished within `window` of each other. When every
/// failed write held its write slot for longer than `window` before it failed
/// (here: its last attempt waited out a request timeout; writers wait for a
/// slot long enough never to fail for want of one), all of those held a slot
/// at the same moment.
fn writes_in_flight_at_once(samples: &[FailedSample], window: Duration) -> f64 {
    let mut most: f64 = 0.0;
    let mut first = 0;
    for (last, end) in samples.iter().enumerate() {
        while end.received.duration_since(samples[first].sent) > window {
            first += 1;
        }
        if first < last {
            most = most.max(end.failed - samples[first].failed);
        }
    }
    most
}

/// A store outage of `mode` with live, playing sessions, on a server that
/// allows `max_writes_in_flight` Cassandra writes at once.
async fn outage_then_recovery(mode: NodeMode, max_writes_in_flight: usize) {
    if std::env::var("RESUME_TEST_CASSANDRA").is_ok_and(|v| !v.is_empty()) {
        eprintln!(
            "outages: needs the CQL test node to inject faults; runs against it even with RESUME_TEST_CASSANDRA"
        );
    }
    // Always the in-process node: the test must control it.
    let backend = TestBackend::with_test_node().await;
    assert_eq!(backend.kind, BackendKind::Cassandra);
    let node = backend.node.as_ref().unwrap();
    let cap = max_writes_in_flight.to_string();
    let timeout_ms = REQUEST_TIMEOUT.as_millis().to_string();
    let server = backend
        .start(&[
            "--flush-interval-ms",
            "100",
            "--cassandra-request-timeout-ms",
            &timeout_ms,
            "--cassandra-max-writes-in-flight",
            &cap,
            // Writers queue for a slot rather than fail for want of one, so
            // every failed write held a slot (see `writes_in_flight_at_once`);
            // the slot deadline has its own test (`store_cassandra_resilience`).
            "--cassandra-write-slot-timeout-ms",
            "600000",
            "--readiness-probe-interval-ms",
            "100",
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
    let failed_before = server
        .metric("resume_store_writes_total", "outcome=\"Failed\"")
        .await;
    let interval_writes_before = server
        .metric("resume_session_flushes_total", "reason=\"Interval\"")
        .await;
    let ticks_before = server.metric("resume_ticks_received_total", "").await;

    let outage_started = Instant::now();
    node.set_mode(mode);
    wait_until("readyz reports the store down", || async {
        server.ready_status().await == 503
    })
    .await;
    // Players keep playing through the outage, while the failed-writes counter
    // is sampled for the in-flight check below.
    let outage = async {
        let mut ticker = tokio::time::interval(TICK_PERIOD);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for tick in 1..=OUTAGE_TICKS {
            ticker.tick().await;
            for (i, session) in sessions.iter_mut().enumerate() {
                session.tick(outage_position(tick, i)).await;
            }
        }
        wait_until("the ticks reached every session", || async {
            server.metric("resume_ticks_received_total", "").await
                == ticks_before + (SESSIONS * OUTAGE_TICKS as usize) as f64
        })
        .await;
        wait_until("writes are failing", || async {
            server
                .metric("resume_store_writes_total", "outcome=\"Failed\"")
                .await
                >= failed_before + SESSIONS as f64
        })
        .await;
    };
    let ((), samples) = sample_failed_writes(&server, outage).await;
    // Sessions are still open and the read path still answers from them.
    assert_eq!(
        server.metric("resume_live_sessions", "").await,
        SESSIONS as f64
    );
    // Written on the schedule, not per tick: one interval write per session
    // (its first change after the last saved write); every later attempt is a
    // retry.
    assert_eq!(
        server
            .metric("resume_session_flushes_total", "reason=\"Interval\"")
            .await
            - interval_writes_before,
        SESSIONS as f64,
        "interval writes during the outage"
    );
    // Bounded: never more writes in flight than the semaphore allows. The node
    // counts only the requests it answers (in Unresponsive mode: none), so
    // while it swallows them the server's own counter is the measure: every
    // failed write there waited out at least one request timeout with its slot.
    assert!(
        node.peak_writes_in_flight() <= max_writes_in_flight as u64,
        "the node handled {} writes at once",
        node.peak_writes_in_flight()
    );
    if mode == NodeMode::Unresponsive {
        let window = REQUEST_TIMEOUT - Duration::from_millis(50);
        let at_once = writes_in_flight_at_once(&samples, window);
        assert!(
            at_once <= max_writes_in_flight as f64,
            "{at_once} failed writes finished within {window:?}, so that many were in flight at once ({} samples)",
            samples.len()
        );
    }

    node.set_mode(NodeMode::Normal);
    let outage = outage_started.elapsed();
    wait_until("readyz recovers", || async {
        server.ready_status().await == 200
    })
    .await;
    for (i, session) in sessions.iter_mut().enumerate() {
        session.expect_saved(outage_position(OUTAGE_TICKS, i)).await;
    }
    for i in 0..SESSIONS {
        let (position_ms, _) = node
            .stored(&format!("viewer-{i}"), "inception")
            .expect("a position landed");
        assert_eq!(
            position_ms,
            (outage_position(OUTAGE_TICKS, i) * 1000.0) as i64,
            "viewer-{i}"
        );
    }
    // The failures were retried on the schedule, not once per tick: every
    // failed write started during the outage, and each session could start
    // only so many there (OUTAGE_TICKS ticks each would be far more).
    let failed = server
        .metric("resume_store_writes_total", "outcome=\"Failed\"")
        .await
        - failed_before;
    let allowed = SESSIONS as u64 * failed_writes_per_session(outage);
    eprintln!(
        "{mode:?}: {failed} failed writes in a {outage:?} outage; the schedule allows {allowed}"
    );
    assert!(
        failed <= allowed as f64,
        "{failed} failed writes in a {outage:?} outage; the retry schedule allows {allowed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unresponsive_cluster_loses_nothing() {
    // Fewer write slots than sessions: writers queue, and the cap is what is checked.
    outage_then_recovery(NodeMode::Unresponsive, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_cluster_loses_nothing() {
    // A slot per session: failures come back at once and no writer waits for a
    // slot, so each session's attempts follow the retry schedule alone (with
    // fewer slots the store's throughput, not the schedule, would bound them).
    outage_then_recovery(NodeMode::Failing, SESSIONS).await;
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

/// A server on the CQL test node that probes readiness every 100 ms and turns
/// not ready after `READINESS_THRESHOLD` failed probes in a row.
async fn server_probing_readiness(backend: &TestBackend) -> TestServer {
    let threshold = READINESS_THRESHOLD.to_string();
    backend
        .start(&[
            "--readiness-probe-interval-ms",
            "100",
            "--readiness-failure-threshold",
            &threshold,
            "--cassandra-request-timeout-ms",
            "200",
        ])
        .await
}

/// Consecutive failed probes before `/readyz` says 503 in these tests.
const READINESS_THRESHOLD: u32 = 3;

/// Readiness probes so far with `result` (`passed` or `failed`), and whether the
/// server was ready, from one scrape (the prober sets readiness before it
/// counts a probe, so the two agree).
async fn probes_and_readiness(server: &TestServer, result: &str) -> (f64, f64) {
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let probes = crate::support::metric_value(
        &text,
        "resume_readiness_probes_total",
        &format!("result=\"{result}\""),
    );
    (
        probes,
        crate::support::metric_value(&text, "resume_ready", ""),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blip_of_one_failed_probe_keeps_readyz_200() {
    let backend = TestBackend::with_test_node().await;
    let node = backend.node.as_ref().unwrap();
    let server = server_probing_readiness(&backend).await;
    wait_until("a probe passed", || async {
        probes_and_readiness(&server, "passed").await.0 >= 1.0
    })
    .await;
    assert_eq!(server.ready_status().await, 200);

    // Exactly one request fails: the next probe's health query.
    node.fail_next_queries(1);
    wait_until("the probe failed", || async {
        let (failed, ready) = probes_and_readiness(&server, "failed").await;
        assert_eq!(ready, 1.0, "not ready after {failed} failed probe(s)");
        failed == 1.0
    })
    .await;
    assert_eq!(server.ready_status().await, 200, "one failed probe");
    let (passed, _) = probes_and_readiness(&server, "passed").await;
    wait_until("the next probe passed", || async {
        let (now, ready) = probes_and_readiness(&server, "passed").await;
        assert_eq!(ready, 1.0);
        now > passed
    })
    .await;
    assert_eq!(server.ready_status().await, 200);
    assert_eq!(probes_and_readiness(&server, "failed").await.0, 1.0);
    // The store's health checks are timed and counted on /metrics too.
    assert!(
        server
            .metric(
                "resume_cassandra_operation_failures_total",
                "op=\"health\",kind=\"unavailable\""
            )
            .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_outage_turns_readyz_503_after_the_threshold_and_one_probe_restores_it() {
    let backend = TestBackend::with_test_node().await;
    let node = backend.node.as_ref().unwrap();
    let server = server_probing_readiness(&backend).await;
    assert_eq!(server.ready_status().await, 200);

    let (failed_before, _) = probes_and_readiness(&server, "failed").await;
    node.set_mode(NodeMode::Unresponsive);
    wait_until("readyz reports the store down", || async {
        let (failed, ready) = probes_and_readiness(&server, "failed").await;
        let failures = failed - failed_before;
        // Ready until the threshold of failures in a row, not ready from it on.
        assert_eq!(
            ready == 1.0,
            failures < f64::from(READINESS_THRESHOLD),
            "ready {ready} after {failures} failed probe(s)"
        );
        server.ready_status().await == 503
    })
    .await;
    // Read after the 503: the count only grows, so it shows at least the
    // failures that turned readiness.
    let (failed, _) = probes_and_readiness(&server, "failed").await;
    assert!(
        failed - failed_before >= f64::from(READINESS_THRESHOLD),
        "503 after {} failed probe(s)",
        failed - failed_before
    );

    node.set_mode(NodeMode::Normal);
    let (passed_before, _) = probes_and_readiness(&server, "passed").await;
    wait_until("readyz recovers", || async {
        server.ready_status().await == 200
    })
    .await;
    let (passed, ready) = probes_and_readiness(&server, "passed").await;
    assert_eq!(ready, 1.0);
    assert!(
        passed > passed_before,
        "ready again only after a passing probe"
    );
}
