//! How the Cassandra store meets a struggling cluster, on the CQL test node:
//! one retry layer per failure, write slots that are let go and waited for
//! with a deadline, timeouts per request kind, speculative execution of the
//! stream-start read, LZ4 frames, and the metrics that show all of it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use resume_server::config::Config;
use resume_server::metrics::Metrics;
use resume_server::store::cassandra::{CassandraSettings, CassandraStore};
use resume_server::store::{PositionStore, PositionWrite, StoreError};

use crate::support::{DEADLINE, metric_value, node_with_schema, wait_until};
use cql_test_node::{CqlTestNode, NodeMode};

const T0: i64 = 1_700_000_000_000_000;

fn write(user: &str, movie: &str, position_ms: u64, at: i64) -> PositionWrite {
    PositionWrite {
        user_id: user.into(),
        movie_id: movie.into(),
        position_ms,
        written_at_micros: at,
        watched: Default::default(),
    }
}

/// Settings as the server would build them from its flags, for keyspace
/// `resume` at consistency `one`.
fn settings(node: SocketAddr, extra: &[&str]) -> CassandraSettings {
    let node = node.to_string();
    let mut args = vec![
        "resume-server",
        "--store",
        "cassandra",
        "--cassandra-nodes",
        &node,
        "--cassandra-consistency",
        "one",
    ];
    args.extend_from_slice(extra);
    let config = Config::from_env_and_args(args).expect("flags parse");
    config.validate().expect("flags validate");
    CassandraSettings::from_config(&config).expect("cassandra settings")
}

async fn connect(settings: &CassandraSettings) -> Arc<CassandraStore> {
    Arc::new(
        bounded("connect", CassandraStore::connect(settings))
            .await
            .expect("connects"),
    )
}

/// Runs `future`, failing the test if it does not finish within [`DEADLINE`].
async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {DEADLINE:?}"))
}

/// The store's metrics as `/metrics` renders them.
fn metrics(store: &CassandraStore) -> String {
    Metrics::for_store(store).render()
}

fn metric(store: &CassandraStore, name: &str, labels: &str) -> f64 {
    metric_value(&metrics(store), name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_write_is_tried_once_and_left_to_the_session() {
    let node = node_with_schema().await;
    let store = connect(&settings(node.addr(), &[])).await;
    node.set_mode(NodeMode::Overloaded);

    let before = node.write_requests();
    let put = bounded("put", store.put(write("alice", "inception", 1_000, T0))).await;
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    // The driver tried the next node (there is none); the store did not try
    // again on top: overload is the session's backoff to handle.
    assert_eq!(node.write_requests() - before, 1, "requests for one put");
    assert_eq!(
        metric(&store, "resume_cassandra_store_retries_total", ""),
        0.0
    );
    assert_eq!(
        metric(
            &store,
            "resume_cassandra_operation_failures_total",
            "op=\"put\",kind=\"overloaded\""
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_backing_off_lets_its_write_slot_go() {
    let node = node_with_schema().await;
    let mut settings = settings(node.addr(), &["--cassandra-max-writes-in-flight", "1"]);
    // A backoff far longer than the test: a writer that kept its slot while
    // waiting would keep the next one out until the deadline.
    settings.retry_base_delay = Duration::from_secs(60);
    settings.retry_max_delay = Duration::from_secs(60);
    settings.requests.write_slot_timeout = Duration::from_secs(60);
    let store = connect(&settings).await;
    node.set_mode(NodeMode::Failing);

    let before = node.write_requests();
    let first = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put(write("alice", "inception", 1, T0)).await }
    });
    wait_until("the first write timed out and backs off", || {
        let sent = node.write_requests();
        async move { sent == before + 1 }
    })
    .await;
    let second = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put(write("bob", "inception", 2, T0)).await }
    });
    wait_until("the second write got the only slot", || {
        let sent = node.write_requests();
        async move { sent == before + 2 }
    })
    .await;
    assert_eq!(
        metric(&store, "resume_cassandra_store_retries_total", "op=\"put\""),
        2.0,
        "both write timeouts are retried by the store"
    );
    first.abort();
    second.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waits_for_a_slot_no_longer_than_the_slot_timeout() {
    let node = node_with_schema().await;
    let store = connect(&settings(
        node.addr(),
        &[
            "--cassandra-max-writes-in-flight",
            "1",
            "--cassandra-write-timeout-ms",
            "10000",
            "--cassandra-write-slot-timeout-ms",
            "1000",
        ],
    ))
    .await;
    node.set_mode(NodeMode::Unresponsive);
    let holder = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put(write("alice", "inception", 1, T0)).await }
    });
    wait_until("the first write holds the slot", || {
        let swallowed = node.swallowed_requests();
        async move { swallowed == 1 }
    })
    .await;

    let waiter = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let started = Instant::now();
            let result = store.put(write("bob", "inception", 2, T0)).await;
            (result, started.elapsed())
        }
    });
    wait_until("the second write waits for a slot", || {
        let waiting = metric(&store, "resume_cassandra_writes_waiting_for_slot", "");
        async move { waiting == 1.0 }
    })
    .await;
    let (result, waited) = bounded("the waiting write", waiter).await.unwrap();
    assert!(
        matches!(&result, Err(StoreError::Unavailable(m)) if m.contains("write slot")),
        "{result:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "gave up after {waited:?}"
    );
    assert_eq!(
        node.swallowed_requests(),
        1,
        "the waiter never reached the node"
    );
    let text = metrics(&store);
    assert_eq!(
        metric_value(&text, "resume_cassandra_write_slot_timeouts_total", ""),
        1.0
    );
    assert_eq!(
        metric_value(&text, "resume_cassandra_writes_waiting_for_slot", ""),
        0.0
    );
    assert_eq!(
        metric_value(
            &text,
            "resume_cassandra_operation_failures_total",
            "op=\"put\",kind=\"overloaded\""
        ),
        1.0
    );
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_and_writes_have_their_own_timeouts() {
    let node = node_with_schema().await;
    let mut settings = settings(
        node.addr(),
        &[
            "--cassandra-write-timeout-ms",
            "150",
            "--cassandra-read-timeout-ms",
            "5000",
        ],
    );
    settings.write_attempts = 1;
    let store = connect(&settings).await;
    // Slower than a write may take, well within what a read may.
    node.set_mode(NodeMode::Slow(Duration::from_millis(600)));

    let get = bounded("get", store.get("alice", "inception")).await;
    assert!(matches!(get, Ok(None)), "{get:?}");

    let started = Instant::now();
    let put = bounded("put", store.put(write("alice", "inception", 1, T0))).await;
    assert!(
        matches!(&put, Err(StoreError::Unavailable(m)) if m.contains("timeout")),
        "{put:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(550),
        "the write waited {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(
            &store,
            "resume_cassandra_operation_failures_total",
            "op=\"put\",kind=\"timeout\""
        ),
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_start_read_is_also_sent_to_another_node_when_the_first_is_slow() {
    // Two test nodes on one port, 127.0.0.1 and 127.0.0.2; the first names
    // the second in its system.peers, so the driver sees a two-node cluster
    // (each node keeps its own data: the reads below find nothing either way).
    let first = node_with_schema().await;
    let second_addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)), first.addr().port());
    let second = CqlTestNode::start_on(second_addr)
        .await
        .expect("listen on 127.0.0.2");
    for text in resume_server::store::cassandra::schema_statements(
        "resume",
        "{'class': 'SimpleStrategy', 'replication_factor': 1}",
    ) {
        second.execute(&text);
    }
    first.add_peer(second_addr.ip(), "datacenter1", "rack1");
    let store = connect(&settings(
        first.addr(),
        &[
            "--cassandra-speculative-delay-ms",
            "50",
            "--cassandra-read-timeout-ms",
            "10000",
        ],
    ))
    .await;
    wait_until("the driver holds connections to both nodes", || {
        let connections = metric(&store, "resume_cassandra_driver_connections", "");
        async move { connections >= 2.0 }
    })
    .await;

    first.set_mode(NodeMode::Slow(Duration::from_secs(5)));
    // Most keys have the slow node as their replica, so it is asked first.
    for i in 0..8 {
        let started = Instant::now();
        let found = bounded("get", store.get(&format!("viewer-{i}"), "inception")).await;
        assert!(matches!(found, Ok(None)), "{found:?}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "viewer-{i}: the read waited {:?} for the slow node",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_are_lz4_compressed_unless_turned_off() {
    let node = node_with_schema().await;
    let store = connect(&settings(node.addr(), &[])).await;
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .expect("put over LZ4");
    assert!(store.get("alice", "inception").await.unwrap().is_some());
    assert!(
        node.compressed_frames_received() > 0,
        "the driver sent no compressed frame"
    );

    let plain_node = node_with_schema().await;
    let plain = connect(&settings(
        plain_node.addr(),
        &["--cassandra-compression", "none"],
    ))
    .await;
    plain
        .put(write("alice", "inception", 1_000, T0))
        .await
        .expect("put uncompressed");
    assert_eq!(plain_node.compressed_frames_received(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_is_timed_and_its_failures_counted_by_kind() {
    let node = node_with_schema().await;
    let store = connect(&settings(node.addr(), &[])).await;
    store.put(write("alice", "inception", 1, T0)).await.unwrap();
    store.get("alice", "inception").await.unwrap();
    store.list("alice").await.unwrap();
    store.delete("alice", "inception", T0 + 1).await.unwrap();
    store.check_health().await.unwrap();

    node.set_mode(NodeMode::Overloaded);
    assert!(store.get("alice", "inception").await.is_err());
    node.set_mode(NodeMode::Failing);
    // Write timeouts: retried by the store up to its attempts, then failed.
    assert!(
        store
            .put(write("alice", "inception", 2, T0 + 2))
            .await
            .is_err()
    );
    // Reads meet "unavailable".
    assert!(store.list("alice").await.is_err());
    node.set_mode(NodeMode::Normal);

    let text = metrics(&store);
    let count = |op: &str| {
        metric_value(
            &text,
            "resume_cassandra_operation_seconds_count",
            &format!("op=\"{op}\""),
        )
    };
    assert_eq!(count("put"), 2.0, "{text}");
    assert_eq!(count("get"), 2.0, "{text}");
    assert_eq!(count("list"), 2.0, "{text}");
    assert_eq!(count("delete"), 1.0, "{text}");
    assert_eq!(count("health"), 1.0, "{text}");
    let failures =
        |labels: &str| metric_value(&text, "resume_cassandra_operation_failures_total", labels);
    assert_eq!(failures("op=\"get\",kind=\"overloaded\""), 1.0, "{text}");
    assert_eq!(failures("op=\"put\",kind=\"timeout\""), 1.0, "{text}");
    assert_eq!(failures("op=\"list\",kind=\"unavailable\""), 1.0, "{text}");
    assert_eq!(failures(""), 3.0, "{text}");
    assert_eq!(
        metric_value(&text, "resume_cassandra_store_retries_total", "op=\"put\""),
        f64::from(resume_server::store::cassandra::settings::DEFAULT_WRITE_ATTEMPTS - 1),
        "{text}"
    );
    // The driver's own metrics, under the same prefix.
    assert!(
        metric_value(&text, "resume_cassandra_driver_requests_total", "") >= 8.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "resume_cassandra_driver_errors_total", "") >= 3.0,
        "{text}"
    );
    assert!(
        metric_value(&text, "resume_cassandra_driver_connections", "") >= 1.0,
        "{text}"
    );
    assert!(
        text.contains("resume_cassandra_driver_latency_milliseconds{quantile=\"0.99\"}"),
        "{text}"
    );
}
