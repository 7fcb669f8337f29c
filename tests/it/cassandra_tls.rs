//! TLS to the cluster: the Cassandra store verifies the node's certificate
//! (chain and name), presents a client certificate when configured, and
//! refuses what it cannot verify with an error that says why. The CQL test node
//! speaks TLS with certificates made here with rcgen; nothing is verified
//! less strictly for tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cql_test_node::CqlTestNode;
use cql_test_node::rustls::server::WebPkiClientVerifier;
use cql_test_node::rustls::{self, RootCertStore, ServerConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use resume_server::config::Config;
use resume_server::store::cassandra::{CassandraSettings, CassandraStore, schema_statements};
use resume_server::store::{PositionStore, PositionWrite, PutOutcome, StoreError};

use crate::support::{DEADLINE, TestServer, test_config};

/// How long a connection that must fail may take to fail.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(5);

/// A certificate authority for one test.
struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, in PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl TestCa {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// A certificate for `names` (DNS names or IP addresses) signed by this CA.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, "resume test");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("leaf certificate");
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server_cert(&self, names: &[&str]) -> Leaf {
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    fn client_cert(&self) -> Leaf {
        self.issue(&["resume-server"], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// The node's TLS configuration: `leaf` as its certificate and, with
/// `client_ca`, a demand for a client certificate signed by it.
fn node_tls(leaf: &Leaf, client_ca: Option<&TestCa>) -> Arc<ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions");
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.issuer.der().clone()).expect("client CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let chain = vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).expect("cert PEM")];
    let key = PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).expect("key PEM");
    Arc::new(
        builder
            .with_single_cert(chain, key)
            .expect("node certificate"),
    )
}

/// A TLS-only node with `schema.cql` applied for keyspace `resume`.
async fn tls_node(config: Arc<ServerConfig>) -> CqlTestNode {
    let node = CqlTestNode::start_tls(config).await;
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    for text in schema_statements("resume", replication) {
        node.execute(&text);
    }
    node
}

/// Writes `content` to `name` in `dir`; returns the path as a flag value.
fn file(dir: &Path, name: &str, content: &str) -> String {
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, content).expect("write PEM");
    path.to_str().expect("utf-8 path").to_owned()
}

/// The server's config for the node at `nodes`, with extra flags.
fn config(nodes: &str, extra: &[&str]) -> Config {
    let mut args = vec![
        "resume-server",
        "--store",
        "cassandra",
        "--cassandra-nodes",
        nodes,
        "--cassandra-consistency",
        "one",
    ];
    args.extend_from_slice(extra);
    let config = Config::from_env_and_args(args).expect("flags parse");
    config.validate().expect("flags validate");
    config
}

/// Connects as the server would; `Err` is the store's error.
async fn connect(nodes: &str, extra: &[&str]) -> Result<CassandraStore, StoreError> {
    let mut settings =
        CassandraSettings::from_config(&config(nodes, extra)).expect("cassandra settings");
    // A refusal must come from the handshake, not from the connect deadline.
    settings.connect_timeout = REFUSAL_DEADLINE;
    tokio::time::timeout(DEADLINE, CassandraStore::connect(&settings))
        .await
        .expect("connect finishes")
}

/// The error of a connection that must be refused.
async fn refused(nodes: &str, extra: &[&str]) -> String {
    match connect(nodes, extra).await {
        Ok(_) => panic!("connected to {nodes} with {extra:?}"),
        Err(error) => error.to_string(),
    }
}

async fn round_trip(node: &CqlTestNode, store: &CassandraStore) {
    let write = PositionWrite {
        user_id: "alice".into(),
        movie_id: "inception".into(),
        position_ms: 42_000,
        written_at_micros: 1_700_000_000_000_000,
        watched: Default::default(),
    };
    assert_eq!(store.put(write).await.unwrap(), PutOutcome::Applied);
    assert_eq!(
        node.stored("alice", "inception"),
        Some((42_000, 1_700_000_000_000_000)),
        "the write reached the node over TLS"
    );
    store.check_health().await.expect("healthy over TLS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_connects_over_tls_and_verifies_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA");
    let node = tls_node(node_tls(&ca.server_cert(&["127.0.0.1"]), None)).await;
    let ca_file = file(dir.path(), "ca.pem", &ca.issuer.pem());
    let nodes = node.addr().to_string();

    let store = connect(&nodes, &["--cassandra-tls", "--cassandra-tls-ca", &ca_file])
        .await
        .expect("connects over TLS");
    round_trip(&node, &store).await;

    // The node speaks only TLS: a plain connection gets nowhere.
    let error = refused(&nodes, &[]).await;
    assert!(error.contains("cannot connect"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_ca = TestCa::new("cluster CA");
    let other_ca = TestCa::new("someone else's CA");
    let node = tls_node(node_tls(&cluster_ca.server_cert(&["127.0.0.1"]), None)).await;
    let other_ca_file = file(dir.path(), "other-ca.pem", &other_ca.issuer.pem());

    let error = refused(
        &node.addr().to_string(),
        &["--cassandra-tls", "--cassandra-tls-ca", &other_ca_file],
    )
    .await;
    assert!(error.contains("TLS"), "{error}");
    assert!(error.contains("certificate"), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert_eq!(node.write_requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_mismatch_is_refused_unless_the_override_names_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA");
    // Issued for a name only; the contact point is an IP address.
    let node = tls_node(node_tls(&ca.server_cert(&["cassandra.test"]), None)).await;
    let ca_file = file(dir.path(), "ca.pem", &ca.issuer.pem());
    let nodes = node.addr().to_string();
    let tls = ["--cassandra-tls", "--cassandra-tls-ca", &ca_file];

    let error = refused(&nodes, &tls).await;
    assert!(error.contains("TLS"), "{error}");
    assert!(
        error.contains("certificate not valid for name \"127.0.0.1\""),
        "{error}"
    );

    let wrong_name = [&tls[..], &["--cassandra-tls-server-name", "other.test"]].concat();
    let error = refused(&nodes, &wrong_name).await;
    assert!(
        error.contains("certificate not valid for name \"other.test\""),
        "{error}"
    );

    let right_name = [&tls[..], &["--cassandra-tls-server-name", "cassandra.test"]].concat();
    let store = connect(&nodes, &right_name)
        .await
        .expect("the override names the certificate");
    round_trip(&node, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_contact_point_is_the_name_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA");
    // No IP address in the certificate: only the contact point's host name can match.
    let node = tls_node(node_tls(&ca.server_cert(&["localhost"]), None)).await;
    let ca_file = file(dir.path(), "ca.pem", &ca.issuer.pem());
    let tls = ["--cassandra-tls", "--cassandra-tls-ca", &ca_file];

    let by_name = format!("localhost:{}", node.addr().port());
    let store = connect(&by_name, &tls)
        .await
        .expect("the certificate names the contact point");
    round_trip(&node, &store).await;

    let by_address = node.addr().to_string();
    let error = refused(&by_address, &tls).await;
    assert!(
        error.contains("certificate not valid for name \"127.0.0.1\""),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_is_presented_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let cluster_ca = TestCa::new("cluster CA");
    let client_ca = TestCa::new("client CA");
    let node = tls_node(node_tls(
        &cluster_ca.server_cert(&["127.0.0.1"]),
        Some(&client_ca),
    ))
    .await;
    let ca_file = file(dir.path(), "ca.pem", &cluster_ca.issuer.pem());
    let client = client_ca.client_cert();
    let cert_file = file(dir.path(), "client.pem", &client.cert);
    let key_file = file(dir.path(), "client-key.pem", &client.key);
    let nodes = node.addr().to_string();
    let tls = ["--cassandra-tls", "--cassandra-tls-ca", &ca_file];

    // The node demands a certificate: without one the handshake fails.
    let error = refused(&nodes, &tls).await;
    assert!(error.contains("TLS"), "{error}");

    // One signed by another CA is refused by the node as well.
    let stranger = cluster_ca.client_cert();
    let stranger_cert = file(dir.path(), "stranger.pem", &stranger.cert);
    let stranger_key = file(dir.path(), "stranger-key.pem", &stranger.key);
    let with_stranger = [
        &tls[..],
        &[
            "--cassandra-tls-cert",
            &stranger_cert,
            "--cassandra-tls-key",
            &stranger_key,
        ],
    ]
    .concat();
    refused(&nodes, &with_stranger).await;

    let with_client = [
        &tls[..],
        &[
            "--cassandra-tls-cert",
            &cert_file,
            "--cassandra-tls-key",
            &key_file,
        ],
    ]
    .concat();
    let store = connect(&nodes, &with_client)
        .await
        .expect("connects with the client certificate");
    round_trip(&node, &store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_on_a_tls_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA");
    let node = tls_node(node_tls(&ca.server_cert(&["127.0.0.1"]), None)).await;
    let ca_file = file(dir.path(), "ca.pem", &ca.issuer.pem());
    let nodes = node.addr().to_string();
    let server = TestServer::start_with(test_config(
        dir.path(),
        &[
            "--store",
            "cassandra",
            "--cassandra-nodes",
            &nodes,
            "--cassandra-consistency",
            "one",
            "--cassandra-tls",
            "--cassandra-tls-ca",
            &ca_file,
        ],
    ))
    .await;
    assert_eq!(server.ready_status().await, 200);
    let status = server
        .post_progress(
            "alice",
            serde_json::json!({"movie_id": "inception", "position_seconds": 42.0}),
        )
        .await;
    assert!(status.is_success(), "{status}");
    assert_eq!(server.resume_seconds("alice", "inception").await, 42.0);
    assert!(node.stored("alice", "inception").is_some());
    server.stop().await;
}

#[test]
fn tls_knobs_are_checked_before_any_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("cluster CA");
    let ca_file = file(dir.path(), "ca.pem", &ca.issuer.pem());
    let client = ca.client_cert();
    let cert_file = file(dir.path(), "client.pem", &client.cert);
    let key_file = file(dir.path(), "client-key.pem", &client.key);
    let other_key = file(dir.path(), "other-key.pem", &ca.client_cert().key);
    let not_pem = file(dir.path(), "not.pem", "hello");
    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();

    let cases: [(&[&str], &str); 8] = [
        (&["--cassandra-tls-ca", &ca_file], "--cassandra-tls-ca"),
        (
            &["--cassandra-tls-server-name", "db.test"],
            "--cassandra-tls-server-name",
        ),
        (
            &["--cassandra-tls", "--cassandra-tls-ca", missing],
            "--cassandra-tls-ca",
        ),
        (
            &["--cassandra-tls", "--cassandra-tls-ca", &not_pem],
            "--cassandra-tls-ca",
        ),
        (
            &["--cassandra-tls", "--cassandra-tls-cert", &cert_file],
            "--cassandra-tls-key",
        ),
        (
            &["--cassandra-tls", "--cassandra-tls-key", &key_file],
            "--cassandra-tls-cert",
        ),
        (
            &[
                "--cassandra-tls",
                "--cassandra-tls-cert",
                &cert_file,
                "--cassandra-tls-key",
                &other_key,
            ],
            "--cassandra-tls-key",
        ),
        (
            &[
                "--cassandra-tls",
                "--cassandra-tls-server-name",
                "not a name",
            ],
            "--cassandra-tls-server-name",
        ),
    ];
    for (flags, knob) in cases {
        let error = CassandraSettings::from_config(&config("127.0.0.1:9042", flags))
            .expect_err(&format!("{flags:?} is accepted"));
        assert!(error.to_string().contains(knob), "{flags:?}: {error}");
    }

    let settings = CassandraSettings::from_config(&config(
        "127.0.0.1:9042",
        &[
            "--cassandra-tls",
            "--cassandra-tls-ca",
            &ca_file,
            "--cassandra-tls-cert",
            &cert_file,
            "--cassandra-tls-key",
            &key_file,
        ],
    ))
    .expect("valid TLS settings");
    let debug = format!("{settings:?}");
    assert!(debug.contains("client_certificate: true"), "{debug}");
    assert!(!debug.contains("PRIVATE KEY"), "{debug}");
}
