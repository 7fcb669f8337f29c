//! The Cassandra store over the real CQL native protocol.
//!
//! By default every test starts its own in-process [`CqlTestNode`]. With
//! `RESUME_TEST_CASSANDRA=host:port` the shared contract suite runs against that
//! real Cassandra/ScyllaDB node instead, each test in a fresh keyspace
//! `resume_test_<random>`; the fault-injection tests below always use the test
//! node, since they need to control it.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use resume_server::config::Config;
use resume_server::store::cassandra::{
    self, CassandraSettings, CassandraStore, Statements, apply_schema,
};
use resume_server::store::{
    PositionStore, PositionWrite, PutOutcome, SavedPosition, StoreError, Stored, WatchedChange,
    WatchedState,
};

use crate::store_suite::StoreFixture;
use crate::support::{DEADLINE, wait_until};
use cql_test_node::cql::{self, InValues, Relation, Statement};
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

/// Settings as the server would build them from its flags.
fn settings(node: &str, keyspace: &str, extra: &[&str]) -> CassandraSettings {
    let mut args = vec![
        "resume-server",
        "--store",
        "cassandra",
        "--cassandra-nodes",
        node,
        "--cassandra-keyspace",
        keyspace,
        "--cassandra-consistency",
        "one",
        "--cassandra-development",
    ];
    args.extend_from_slice(extra);
    let config = Config::from_env_and_args(args).expect("flags parse");
    config.validate().expect("flags validate");
    CassandraSettings::from_config(&config).expect("cassandra settings")
}

fn real_node() -> Option<String> {
    static ANNOUNCE: Once = Once::new();
    let node = std::env::var("RESUME_TEST_CASSANDRA")
        .ok()
        .filter(|v| !v.trim().is_empty());
    ANNOUNCE.call_once(|| match &node {
        Some(addr) => eprintln!("store_cassandra: contract suite runs against the real node at {addr} (RESUME_TEST_CASSANDRA)"),
        None => eprintln!(
            "store_cassandra: contract suite runs against the in-process CQL test node; \
             set RESUME_TEST_CASSANDRA=host:port to run it against a real Cassandra/ScyllaDB"
        ),
    });
    node
}

/// The suite's fixture: a store on a fresh test node, or on a fresh keyspace
/// of the real node named by `RESUME_TEST_CASSANDRA`.
async fn cassandra() -> Option<StoreFixture> {
    if let Some(addr) = real_node() {
        let keyspace = format!("resume_test_{:016x}", rand::random::<u64>());
        let tls = crate::support::real_node_tls_flags();
        let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
        let settings = settings(&addr, &keyspace, &tls);
        apply_schema(&settings)
            .await
            .expect("schema applies on the real node");
        let store = CassandraStore::connect(&settings)
            .await
            .expect("connects to the real node");
        return Some(StoreFixture {
            store: Arc::new(store),
            advance_clock: None,
            _guard: Box::new(()),
        });
    }
    let node = Arc::new(crate::support::node_with_schema().await);
    let store = CassandraStore::connect(&settings(&node.addr().to_string(), "resume", &[]))
        .await
        .expect("connects to the test node");
    let clock = Arc::clone(&node);
    Some(StoreFixture {
        store: Arc::new(store),
        advance_clock: Some(Box::new(move |by| clock.advance_clock(by))),
        _guard: Box::new(node),
    })
}

crate::store_suite!(cassandra());

/// Runs `future`, failing the test if it does not finish within [`DEADLINE`]
/// (a hang is a bug in itself).
async fn bounded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {DEADLINE:?}"))
}

async fn node_and_store(extra: &[&str]) -> (CqlTestNode, CassandraStore) {
    let node = crate::support::node_with_schema().await;
    let store = CassandraStore::connect(&settings(&node.addr().to_string(), "resume", extra))
        .await
        .expect("connects");
    (node, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn older_timestamp_never_overwrites_newer_in_the_database() {
    let (node, store) = node_and_store(&[]).await;
    store
        .put(write("alice", "inception", 5_000, T0 + 10))
        .await
        .unwrap();
    assert_eq!(node.stored("alice", "inception"), Some((5_000, T0 + 10)));

    // The database decides: the late write reaches it and loses there, and the
    // read-back says so.
    let before = node.write_requests();
    let late = store
        .put(write("alice", "inception", 9_000, T0 + 5))
        .await
        .unwrap();
    assert_eq!(
        node.write_requests(),
        before + 1,
        "the older write was sent"
    );
    assert_eq!(
        late,
        PutOutcome::Superseded(Stored::Position(SavedPosition {
            movie_id: "inception".into(),
            position_ms: 5_000,
            updated_at_micros: T0 + 10,
            watched: Default::default(),
        }))
    );
    assert_eq!(node.stored("alice", "inception"), Some((5_000, T0 + 10)));

    // A delete is a soft tombstone row, at the delete's timestamp.
    store.delete("alice", "inception", T0 + 20).await.unwrap();
    assert_eq!(node.tombstone("alice", "inception"), Some(T0 + 20));
    assert_eq!(node.stored("alice", "inception"), None);
    let hidden = store
        .put(write("alice", "inception", 7_000, T0 + 15))
        .await
        .unwrap();
    assert_eq!(
        node.tombstone("alice", "inception"),
        Some(T0 + 20),
        "a write older than the tombstone stays hidden"
    );
    assert_eq!(
        hidden,
        PutOutcome::Superseded(Stored::Deleted {
            movie_id: "inception".into(),
            deleted_at_micros: T0 + 20,
            watched: Default::default(),
        })
    );
    // On a timestamp tie the tombstone wins, as in the embedded store.
    let tied = store
        .put(write("alice", "inception", 7_000, T0 + 20))
        .await
        .unwrap();
    assert!(
        matches!(tied, PutOutcome::Superseded(Stored::Deleted { .. })),
        "{tied:?}"
    );
    assert_eq!(node.tombstone("alice", "inception"), Some(T0 + 20));
    let back = store
        .put(write("alice", "inception", 8_000, T0 + 30))
        .await
        .unwrap();
    assert_eq!(back, PutOutcome::Applied);
    assert_eq!(node.tombstone("alice", "inception"), None);
    assert_eq!(node.stored("alice", "inception"), Some((8_000, T0 + 30)));
}

/// The columns of the watched state, which only some writes name.
const WATCHED_COLUMNS: [&str; 2] = ["watched", "last_completed_at_us"];

/// Column names (in order) of the `CREATE TABLE … playback_position` in schema.cql.
fn schema_table_columns() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.cql"))
        .expect("schema.cql is readable");
    let code: String = text
        .lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let start = code
        .find("CREATE TABLE")
        .expect("schema.cql creates a table");
    let body = &code[start..];
    let open = body.find('(').expect("column list");
    let mut depth = 0;
    let mut columns = Vec::new();
    let mut current = String::new();
    for c in body[open..].chars() {
        match c {
            '(' => {
                depth += 1;
                if depth > 1 {
                    current.push(c);
                }
            }
            ')' => {
                depth -= 1;
                if depth == 0 {
                    columns.push(current.clone());
                    break;
                }
                current.push(c);
            }
            ',' if depth == 1 => columns.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    columns
        .iter()
        .map(|definition| definition.split_whitespace().collect::<Vec<_>>())
        .filter(|words| !words.is_empty() && !words[0].eq_ignore_ascii_case("primary"))
        .map(|words| words[0].to_owned())
        .collect()
}

/// Every column a statement reads, writes or restricts.
fn statement_columns(statement: &Statement) -> Vec<String> {
    let filter_columns =
        |filters: &[cql::Filter]| filters.iter().map(|f| f.column.clone()).collect::<Vec<_>>();
    match statement {
        Statement::Insert { columns, .. } => columns.clone(),
        Statement::Delete { filters, .. } => filter_columns(filters),
        Statement::Select {
            columns, filters, ..
        } => {
            let mut all = columns
                .clone()
                .expect("the store names its columns, never SELECT *");
            all.extend(filter_columns(filters));
            all
        }
        other => panic!("the store prepared an unexpected statement: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_use_exactly_the_columns_of_schema_cql() {
    let schema_columns = schema_table_columns();
    assert!(
        schema_columns.iter().any(|c| c == "user_id"),
        "schema.cql parsed: {schema_columns:?}"
    );
    let schema_set: BTreeSet<String> = schema_columns.iter().cloned().collect();

    let (node, _store) = node_and_store(&[]).await;
    let prepared: Vec<String> = node
        .statements_prepared()
        .into_iter()
        .filter(|s| s.contains("playback_position"))
        .collect();
    let expected = Statements::for_keyspace("resume");
    for statement in expected.table_statements() {
        assert!(
            prepared.iter().any(|p| p == statement),
            "not prepared at connect: {statement}"
        );
    }

    let mut used = BTreeSet::new();
    for text in &prepared {
        let statement = cql::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let columns = statement_columns(&statement);
        for column in &columns {
            assert!(
                schema_set.contains(column),
                "`{text}` uses {column}, which schema.cql does not define"
            );
        }
        if let Statement::Insert { columns, .. } = &statement {
            // Every write writes every position column; only the writes that
            // change the watched state name it.
            let written: BTreeSet<String> = columns.iter().cloned().collect();
            let position_columns: BTreeSet<String> = schema_set
                .iter()
                .filter(|c| !WATCHED_COLUMNS.contains(&c.as_str()))
                .cloned()
                .collect();
            assert!(
                written.is_superset(&position_columns),
                "`{text}` writes every position column of schema.cql"
            );
            if *text == expected.insert_completed {
                assert_eq!(written, schema_set, "`{text}` writes the watched pair");
            } else if *text == expected.insert_unwatched {
                assert!(written.contains("watched") && !written.contains("last_completed_at_us"));
            } else {
                assert_eq!(
                    written, position_columns,
                    "`{text}` leaves the watched pair alone"
                );
            }
        }
        if let Statement::Select { filters, .. } = &statement {
            assert!(
                filters.iter().all(|f| matches!(
                    f.relation,
                    Relation::Eq(_) | Relation::In(InValues::Marker(_))
                )),
                "{text}"
            );
        }
        used.extend(columns);
    }
    assert_eq!(
        used, schema_set,
        "every schema.cql column is used by some statement"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_table_fails_connect_with_the_fix_and_apply_schema_is_idempotent() {
    let node = CqlTestNode::start().await;
    let settings = settings(&node.addr().to_string(), "resume", &[]);
    let err = match bounded("connect", CassandraStore::connect(&settings)).await {
        Ok(_) => panic!("connect succeeded without a table"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(message.contains("resume-server schema apply"), "{message}");
    assert!(message.contains("--init-schema"), "{message}");

    bounded("apply_schema", apply_schema(&settings))
        .await
        .expect("first apply");
    assert!(node.has_table("resume", "playback_position"));
    bounded("apply_schema", apply_schema(&settings))
        .await
        .expect("second apply is a no-op");

    let store = bounded("connect", CassandraStore::connect(&settings))
        .await
        .expect("connects once the table exists");
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    assert_eq!(node.stored("alice", "inception"), Some((1_000, T0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_from_before_the_deleted_column_is_refused_until_schema_apply_upgrades_it() {
    let node = CqlTestNode::start().await;
    // The table as the first schema.cql created it, with one position in it.
    node.execute(
        "CREATE KEYSPACE legacy_ks WITH replication = \
         {'class': 'SimpleStrategy', 'replication_factor': 1}",
    );
    node.execute(
        "CREATE TABLE legacy_ks.playback_position (user_id text, movie_id text, \
         position_ms bigint, updated_at_us bigint, PRIMARY KEY ((user_id), movie_id))",
    );
    node.execute(&format!(
        "INSERT INTO legacy_ks.playback_position (user_id, movie_id, position_ms, updated_at_us) \
         VALUES ('alice', 'inception', 5000, {T0}) USING TIMESTAMP {T0}"
    ));
    let settings = settings(&node.addr().to_string(), "legacy_ks", &[]);

    // The server refuses it, saying what to run.
    let err = match bounded("connect", CassandraStore::connect(&settings)).await {
        Ok(_) => panic!("connect succeeded on a table without `deleted`"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(
        message.contains("`resume-server schema apply`"),
        "{message}"
    );
    for fix in [
        "ALTER TABLE legacy_ks.playback_position ADD deleted boolean",
        "ALTER TABLE legacy_ks.playback_position ADD watched boolean",
        "ALTER TABLE legacy_ks.playback_position ADD last_completed_at_us bigint",
    ] {
        assert!(message.contains(&format!("`{fix}`")), "{message}");
    }

    // `schema apply` adds the columns, and the older row reads as a position.
    bounded("apply_schema", apply_schema(&settings))
        .await
        .expect("applies");
    let store = bounded("connect", CassandraStore::connect(&settings))
        .await
        .expect("connects once the columns exist");
    assert_eq!(
        store.get("alice", "inception").await.unwrap(),
        Some(Stored::Position(SavedPosition {
            movie_id: "inception".into(),
            position_ms: 5_000,
            updated_at_micros: T0,
            watched: WatchedState::default(),
        }))
    );
    store.delete("alice", "inception", T0 + 1).await.unwrap();
    assert_eq!(
        store.list("alice").await.unwrap(),
        [Stored::Deleted {
            movie_id: "inception".into(),
            deleted_at_micros: T0 + 1,
            watched: WatchedState::default(),
        }]
    );
}

/// `schema.cql` as it was before the watched state.
const SCHEMA_BEFORE_WATCHED: &str = include_str!("fixtures/schema-before-watched.cql");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_apply_upgrades_a_table_from_before_the_watched_state_in_place() {
    // An empty keyspace: on a fresh test node, or a fresh one on the real node.
    let (node, settings) = match real_node() {
        Some(addr) => {
            let keyspace = format!("resume_test_{:016x}", rand::random::<u64>());
            let tls = crate::support::real_node_tls_flags();
            let tls: Vec<&str> = tls.iter().map(String::as_str).collect();
            (None, settings(&addr, &keyspace, &tls))
        }
        None => {
            let node = CqlTestNode::start().await;
            let settings = settings(&node.addr().to_string(), "resume", &[]);
            (Some(node), settings)
        }
    };
    let keyspace = settings.keyspace.clone();
    let replication = settings
        .replication
        .clone()
        .expect("a development replication");

    // The previous version's schema, and a position written as it wrote them.
    let session = bounded("open a session", cassandra::open_session(&settings, None))
        .await
        .expect("opens");
    let old_schema =
        cassandra::schema_statements_of(SCHEMA_BEFORE_WATCHED, &keyspace, &replication);
    assert!(!old_schema.join("\n").contains("watched"), "{old_schema:?}");
    for statement in old_schema {
        bounded("old schema", session.query_unpaged(statement, ()))
            .await
            .expect("the old schema applies");
    }
    let old_insert = format!(
        "INSERT INTO {keyspace}.playback_position (user_id, movie_id, position_ms, updated_at_us, deleted) \
         VALUES ('alice', 'inception', 5000, {T0}, false) USING TIMESTAMP {T0}"
    );
    bounded("old write", session.query_unpaged(old_insert, ()))
        .await
        .expect("the old write lands");
    let err = match bounded("connect", CassandraStore::connect(&settings)).await {
        Ok(_) => panic!("connect succeeded on a table without the watched columns"),
        Err(err) => err,
    };
    let message = err.to_string();
    assert!(
        message.contains("`resume-server schema apply`"),
        "{message}"
    );
    assert!(
        message.contains(&format!(
            "ALTER TABLE {keyspace}.playback_position ADD watched boolean"
        )),
        "{message}"
    );

    // Applied twice: the second finds nothing to add.
    for attempt in ["first", "second"] {
        bounded("apply_schema", apply_schema(&settings))
            .await
            .unwrap_or_else(|e| panic!("{attempt} apply: {e}"));
    }
    if let Some(node) = &node {
        assert!(node.has_table(&keyspace, "playback_position"));
    }

    let store = bounded("connect", CassandraStore::connect(&settings))
        .await
        .expect("connects after the upgrade");
    let unchanged = Stored::Position(SavedPosition {
        movie_id: "inception".into(),
        position_ms: 5_000,
        updated_at_micros: T0,
        watched: WatchedState::default(),
    });
    assert_eq!(
        store.get("alice", "inception").await.unwrap(),
        Some(unchanged.clone())
    );
    assert_eq!(store.list("alice").await.unwrap(), [unchanged]);

    // The upgraded table keeps a watched state beside the old position.
    let completing = PositionWrite {
        watched: WatchedChange::Completed,
        ..write("alice", "inception", 7_800_000, T0 + 10)
    };
    assert_eq!(store.put(completing).await.unwrap(), PutOutcome::Applied);
    store
        .put(write("alice", "inception", 1_000, T0 + 20))
        .await
        .unwrap();
    let rewatching = Stored::Position(SavedPosition {
        movie_id: "inception".into(),
        position_ms: 1_000,
        updated_at_micros: T0 + 20,
        watched: WatchedState {
            watched: true,
            last_completed_at_micros: Some(T0 + 10),
        },
    });
    assert_eq!(
        store.get("alice", "inception").await.unwrap(),
        Some(rewatching.clone())
    );
    assert_eq!(store.list("alice").await.unwrap(), [rewatching]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_schema_uses_the_configured_keyspace_and_replication() {
    let node = CqlTestNode::start().await;
    let settings = settings(
        &node.addr().to_string(),
        "custom_ks",
        &[
            "--cassandra-replication",
            "{'class': 'NetworkTopologyStrategy', 'datacenter1': 1}",
        ],
    );
    bounded("apply_schema", apply_schema(&settings))
        .await
        .expect("applies");
    assert!(node.has_table("custom_ks", "playback_position"));
    assert!(!node.has_table("resume", "playback_position"));
    let store = bounded("connect", CassandraStore::connect(&settings))
        .await
        .expect("connects");
    store.put(write("bob", "clock", 7, T0)).await.unwrap();
    assert_eq!(
        store
            .get("bob", "clock")
            .await
            .unwrap()
            .and_then(Stored::into_position)
            .unwrap()
            .position_ms,
        7
    );
    assert!(
        cassandra::schema_statements("custom_ks", settings.replication.as_deref().unwrap())[0]
            .contains("NetworkTopologyStrategy")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_fails_fast_and_writes_land_after_recovery() {
    let (node, store) = node_and_store(&["--cassandra-request-timeout-ms", "300"]).await;
    let store = Arc::new(store);
    store
        .check_health()
        .await
        .expect("healthy before the outage");

    node.set_mode(NodeMode::Unresponsive);
    let health = bounded("health check during outage", store.check_health()).await;
    assert!(
        matches!(health, Err(StoreError::Unavailable(_))),
        "{health:?}"
    );

    // A put issued during the outage gives up with a retryable error…
    let during = bounded(
        "put during outage",
        store.put(write("alice", "inception", 1_000, T0)),
    )
    .await;
    assert!(
        matches!(during, Err(StoreError::Unavailable(_))),
        "{during:?}"
    );
    assert!(
        node.swallowed_requests() >= 1,
        "the put reached the hung node"
    );
    assert_eq!(node.stored("alice", "inception"), None);

    node.set_mode(NodeMode::Normal);
    let store_for_health = Arc::clone(&store);
    wait_until("the health check passes again", || {
        let store = Arc::clone(&store_for_health);
        async move { store.check_health().await.is_ok() }
    })
    .await;

    // …and the caller's retry after recovery lands, with the original timestamp.
    bounded(
        "put after recovery",
        store.put(write("alice", "inception", 1_000, T0)),
    )
    .await
    .expect("lands after recovery");
    assert_eq!(node.stored("alice", "inception"), Some((1_000, T0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_in_flight_during_an_outage_lands_after_recovery() {
    let node = crate::support::node_with_schema().await;
    let mut settings = settings(
        &node.addr().to_string(),
        "resume",
        &["--cassandra-request-timeout-ms", "200"],
    );
    // Enough attempts to outlast the outage below.
    settings.write_attempts = 1_000;
    settings.retry_max_delay = Duration::from_millis(50);
    let store = Arc::new(CassandraStore::connect(&settings).await.expect("connects"));

    node.set_mode(NodeMode::Unresponsive);
    let put = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put(write("alice", "inception", 4_200, T0 + 7)).await }
    });
    wait_until("the put has hit the hung node twice", || {
        let swallowed = node.swallowed_requests();
        async move { swallowed >= 2 }
    })
    .await;
    assert_eq!(node.stored("alice", "inception"), None);
    node.set_mode(NodeMode::Normal);

    bounded("put across the outage", put)
        .await
        .unwrap()
        .expect("lands after recovery");
    assert_eq!(node.stored("alice", "inception"), Some((4_200, T0 + 7)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_node_gives_timeouts_not_hangs() {
    let (node, store) = node_and_store(&["--cassandra-request-timeout-ms", "200"]).await;
    node.set_mode(NodeMode::Slow(Duration::from_secs(30)));

    let started = Instant::now();
    let get = bounded("get on a slow node", store.get("alice", "inception")).await;
    assert!(
        matches!(&get, Err(StoreError::Unavailable(m)) if m.contains("timeout")),
        "{get:?}"
    );
    let health = bounded("health on a slow node", store.check_health()).await;
    assert!(health.is_err());
    let put = bounded(
        "put on a slow node",
        store.put(write("alice", "inception", 1, T0)),
    )
    .await;
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_are_retried_a_bounded_number_of_times_with_the_same_timestamp() {
    let (node, store) = node_and_store(&[]).await;
    let store = Arc::new(store);
    node.set_mode(NodeMode::Failing);

    let before = node.write_requests();
    let put = bounded(
        "put on a failing node",
        store.put(write("alice", "inception", 3_000, T0)),
    )
    .await;
    assert!(matches!(put, Err(StoreError::Unavailable(_))), "{put:?}");
    let attempts = node.write_requests() - before;
    assert_eq!(
        attempts,
        u64::from(cassandra::settings::DEFAULT_WRITE_ATTEMPTS),
        "attempts per write"
    );

    // A write still retrying when the node recovers lands under its own
    // timestamp (a store with attempts to spare, so recovery comes in time).
    let mut patient = settings(&node.addr().to_string(), "resume", &[]);
    patient.write_attempts = 1_000;
    patient.retry_max_delay = Duration::from_millis(50);
    node.set_mode(NodeMode::Normal);
    let store = Arc::new(CassandraStore::connect(&patient).await.expect("connects"));
    node.set_mode(NodeMode::Failing);
    let before = node.write_requests();
    let put = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put(write("alice", "inception", 3_500, T0 + 1)).await }
    });
    wait_until("the first attempt has failed", || {
        let sent = node.write_requests();
        async move { sent > before }
    })
    .await;
    node.set_mode(NodeMode::Normal);
    bounded("retried put", put)
        .await
        .unwrap()
        .expect("a retry lands");
    assert_eq!(node.stored("alice", "inception"), Some((3_500, T0 + 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_in_flight_are_bounded() {
    let (node, store) = node_and_store(&["--cassandra-max-writes-in-flight", "2"]).await;
    let store = Arc::new(store);
    node.set_mode(NodeMode::Slow(Duration::from_millis(100)));

    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store
                .put(write("alice", &format!("movie-{i}"), i, T0))
                .await
        }));
    }
    for task in tasks {
        bounded("bounded put", task).await.unwrap().expect("lands");
    }
    assert!(node.peak_writes_in_flight() >= 1);
    assert!(
        node.peak_writes_in_flight() <= 2,
        "peak {}",
        node.peak_writes_in_flight()
    );
    assert_eq!(store.list("alice").await.unwrap().len(), 8);
}
