//! The Cassandra store against the shape of a real cluster: several
//! datacenters, the keyspace's replication, and partitions read a page at a
//! time — on the CQL test node.

use std::net::{IpAddr, Ipv4Addr};

use resume_server::config::Config;
use resume_server::store::cassandra::{CassandraSettings, CassandraStore};
use resume_server::store::{PositionStore, PositionWrite, StoreError};

use crate::support::node_with_schema;

fn settings(node: &str, extra: &[&str]) -> CassandraSettings {
    let mut args = vec![
        "resume-server",
        "--store",
        "cassandra",
        "--cassandra-nodes",
        node,
        "--cassandra-consistency",
        "one",
    ];
    args.extend_from_slice(extra);
    let config = Config::from_env_and_args(args).expect("flags parse");
    CassandraSettings::from_config(&config).expect("cassandra settings")
}

/// Nothing listens on 127.0.0.2 at the node's port: the peer is a name only.
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

async fn connect_error(node: &str, extra: &[&str]) -> String {
    match CassandraStore::connect(&settings(node, extra)).await {
        Ok(_) => panic!("connected with {extra:?}"),
        Err(StoreError::Backend(message)) => message,
        Err(other) => panic!("expected a configuration error, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_datacenter_must_exist_and_be_set_when_there_are_several() {
    let node = node_with_schema().await;
    let addr = node.addr().to_string();
    // One datacenter: a typo in its name is refused, not retried forever.
    let typo = connect_error(&addr, &["--cassandra-local-dc", "datacentre1"]).await;
    assert!(
        typo.contains("datacentre1") && typo.contains("datacenter1"),
        "{typo}"
    );
    CassandraStore::connect(&settings(&addr, &["--cassandra-local-dc", "datacenter1"]))
        .await
        .expect("the right name connects");

    // Two datacenters: choosing none is refused too.
    node.add_peer(PEER, "dc2", "rack1");
    let unset = connect_error(&addr, &[]).await;
    assert!(
        unset.contains("datacenter1")
            && unset.contains("dc2")
            && unset.contains("--cassandra-local-dc"),
        "{unset}"
    );
    CassandraStore::connect(&settings(
        &addr,
        &[
            "--cassandra-local-dc",
            "datacenter1",
            "--cassandra-local-rack",
            "rack1",
        ],
    ))
    .await
    .expect("a chosen datacenter and rack connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn risky_replication_is_reported_at_connect() {
    let node = node_with_schema().await; // SimpleStrategy, RF 1
    let store = CassandraStore::connect(&settings(&node.addr().to_string(), &[]))
        .await
        .expect("connects");
    let warning = store
        .replication_warning()
        .expect("SimpleStrategy is risky");
    assert!(
        warning.contains("SimpleStrategy") && warning.contains("NetworkTopologyStrategy"),
        "{warning}"
    );
    assert_eq!(unsafe_replication_gauge(&store), 1.0);

    node.execute(
        "CREATE KEYSPACE safe WITH replication = \
         {'class': 'NetworkTopologyStrategy', 'datacenter1': 3}",
    );
    for statement in resume_server::store::cassandra::schema_statements(
        "safe",
        "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}",
    ) {
        if !statement.starts_with("CREATE KEYSPACE") {
            node.execute(&statement);
        }
    }
    let store = CassandraStore::connect(&settings(
        &node.addr().to_string(),
        &["--cassandra-keyspace", "safe"],
    ))
    .await
    .expect("connects");
    assert_eq!(store.replication_warning(), None);
    assert_eq!(unsafe_replication_gauge(&store), 0.0);
}

/// `resume_cassandra_replication_unsafe` as the store exports it on /metrics.
fn unsafe_replication_gauge(store: &CassandraStore) -> f64 {
    let mut registry = prometheus_client::registry::Registry::with_prefix("resume");
    store.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    crate::support::metric_value(&text, "resume_cassandra_replication_unsafe", "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewers_titles_are_read_a_page_at_a_time() {
    let node = node_with_schema().await;
    let store = CassandraStore::connect(&settings(
        &node.addr().to_string(),
        &["--cassandra-page-size", "10"],
    ))
    .await
    .expect("connects");
    for i in 0..25u64 {
        store
            .put(PositionWrite {
                user_id: "alice".into(),
                movie_id: format!("movie-{i:02}"),
                position_ms: 1_000 + i,
                written_at_micros: 1_700_000_000_000_000 + i as i64,
                watched: Default::default(),
            })
            .await
            .unwrap();
    }
    let before = node.pages_served();
    let mut titles: Vec<String> = store
        .list("alice")
        .await
        .unwrap()
        .into_iter()
        .map(|stored| stored.movie_id().to_owned())
        .collect();
    titles.sort();
    let expected: Vec<String> = (0..25).map(|i| format!("movie-{i:02}")).collect();
    assert_eq!(titles, expected);
    assert_eq!(node.pages_served() - before, 3, "25 rows in pages of 10");
}
