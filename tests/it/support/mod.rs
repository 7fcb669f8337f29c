//! Shared helpers: a real server on port 0 (in-process or as the real binary),
//! tokens, an HTTP client, WebSocket sessions, and waiting with deadlines.

#![allow(dead_code)]

pub mod binary;
pub mod cluster;
pub mod contract;
pub mod faulty;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cql_test_node::CqlTestNode;
use futures_util::{SinkExt, StreamExt};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use resume_server::config::Config;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The HS256 secret every test server uses.
pub const SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// A server running in this process on 127.0.0.1:0.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its data dir (kept alive by `_data` or owned by the caller).
    pub data_dir: PathBuf,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Stops the server.
    stop: Option<oneshot::Sender<()>>,
    /// The server task.
    task: Option<JoinHandle<Result<(), resume_server::RunError>>>,
    /// Owns the temp dir when the test did not give one.
    _data: Option<tempfile::TempDir>,
}

/// Default test config: secret set (from a file in `data_dir`), loopback, fast flushes.
pub fn test_config(data_dir: &Path, extra: &[&str]) -> Config {
    let secret_file = data_dir.join("jwt-secret");
    std::fs::write(&secret_file, SECRET).expect("write the secret file");
    let secret_file = secret_file.to_str().expect("utf-8 path");
    let data_dir = data_dir.to_str().expect("utf-8 path");
    let mut args = vec![
        "resume-server",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data_dir,
        "--jwt-secret-file",
        secret_file,
        "--flush-interval-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    Config::from_env_and_args(args).expect("test config parses")
}

impl TestServer {
    /// A server on a fresh temp dir with extra flags.
    pub async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(dir.path(), extra).await;
        server._data = Some(dir);
        server
    }

    /// A server on `data_dir` with extra flags.
    pub async fn start_in(data_dir: &Path, extra: &[&str]) -> Self {
        Self::start_with(test_config(data_dir, extra)).await
    }

    /// A server with a complete config (its `listen` is ignored: port 0 on loopback).
    pub async fn start_with(config: Config) -> Self {
        Self::start_serving(config, None, None).await
    }

    /// A server whose wall clock the test holds (to expire session tickets).
    pub async fn start_with_clock(
        config: Config,
        clock: resume_server::clock::SharedClock,
    ) -> Self {
        Self::start_serving(config, None, Some(clock)).await
    }

    /// A server on a store the test built (to inject faults).
    pub async fn start_with_store(
        config: Config,
        store: resume_server::store::SharedStore,
    ) -> Self {
        Self::start_serving(config, Some(store), None).await
    }

    async fn start_serving(
        config: Config,
        store: Option<resume_server::store::SharedStore>,
        clock: Option<resume_server::clock::SharedClock>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = oneshot::channel::<()>();
        let data_dir = config.data_dir.clone();
        let stopped = async move {
            let _ = stopped.await;
        };
        let task = match (store, clock) {
            (Some(store), _) => tokio::spawn(resume_server::run_with_store(
                config, store, listener, stopped,
            )),
            (None, Some(clock)) => tokio::spawn(resume_server::run_with_clock(
                config, clock, listener, stopped,
            )),
            (None, None) => tokio::spawn(resume_server::run(config, listener, stopped)),
        };
        let server = Self {
            addr,
            data_dir,
            http: reqwest::Client::new(),
            stop: Some(stop),
            task: Some(task),
            _data: None,
        };
        wait_until("server answers /healthz", || async {
            if server.task.as_ref().is_some_and(|t| t.is_finished()) {
                panic!("the server stopped while starting (see its log)");
            }
            matches!(server.http.get(server.url("/healthz")).send().await, Ok(r) if r.status() == 200)
        })
        .await;
        server
    }

    /// Graceful shutdown; returns once `run` has returned (every session written).
    pub async fn stop(mut self) -> Option<tempfile::TempDir> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await
                .expect("server task")
                .expect("server ran cleanly");
        }
        self._data.take()
    }

    /// `http://addr/path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// GET with a user's token.
    pub async fn get(&self, user: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token(user))
            .send()
            .await
            .expect("request")
    }

    /// Any method with a user's token.
    pub async fn send(&self, method: reqwest::Method, user: &str, path: &str) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token(user))
            .send()
            .await
            .expect("request")
    }

    /// The status of the read path for an arbitrary bearer token.
    pub async fn status_with_token(&self, bearer: &str) -> u16 {
        self.http
            .get(self.url("/api/v1/stream?movie_id=clock"))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// The status of `/readyz`.
    pub async fn ready_status(&self) -> u16 {
        self.http
            .get(self.url("/readyz"))
            .send()
            .await
            .expect("request")
            .status()
            .as_u16()
    }

    /// The read path's answer for `user` and `movie`.
    pub async fn stream(&self, user: &str, movie: &str) -> Value {
        let response = self
            .get(user, &format!("/api/v1/stream?movie_id={movie}"))
            .await;
        assert_eq!(
            response.status(),
            200,
            "GET /api/v1/stream for {user}/{movie}"
        );
        response.json().await.expect("json")
    }

    /// Where the read path resumes `user` on `movie`, in seconds.
    pub async fn resume_seconds(&self, user: &str, movie: &str) -> f64 {
        self.stream(user, movie).await["resume_position_seconds"]
            .as_f64()
            .expect("resume_position_seconds is a number")
    }

    /// Waits until the read path resumes `user` on `movie` at `seconds` (e.g. a
    /// tick that reached its session but is not written yet).
    pub async fn wait_for_resume(&self, user: &str, movie: &str, seconds: f64) {
        wait_until(&format!("{user} resumes {movie} at {seconds}"), || async {
            self.resume_seconds(user, movie).await == seconds
        })
        .await;
    }

    /// POSTs progress for `user`; returns the status.
    pub async fn post_progress(&self, user: &str, body: Value) -> reqwest::StatusCode {
        self.http
            .post(self.url("/api/v1/stream/progress"))
            .bearer_auth(token(user))
            .json(&body)
            .send()
            .await
            .expect("request")
            .status()
    }

    /// Saves `seconds` on `movie` for `user` through the HTTP write path and
    /// asserts it was taken (204).
    pub async fn save_progress(&self, user: &str, movie: &str, seconds: f64) {
        let status = self
            .post_progress(
                user,
                serde_json::json!({"movie_id": movie, "position_seconds": seconds}),
            )
            .await;
        assert_eq!(status, 204, "saving {seconds} s of {movie} for {user}");
    }

    /// One counter or gauge value from /metrics (sum over label sets matching `labels`).
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_value(&text, name, labels)
    }

    /// Opens a session for `user` on `movie` and reads its hello.
    pub async fn session(&self, user: &str, movie: &str) -> (Session, Value) {
        let mut session = Session::connect(self.addr, user, movie)
            .await
            .expect("upgrade");
        let hello = session.next_json().await.expect("hello");
        assert_eq!(hello["type"], "hello", "first message is hello: {hello}");
        (session, hello)
    }
}

/// Sums the samples of `name` whose labels contain `labels`.
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(key, _)| {
            let (metric, rest) = key.split_once('{').unwrap_or((key, ""));
            metric == name && rest.contains(labels)
        })
        .filter_map(|(_, value)| value.parse::<f64>().ok())
        .sum()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A valid token for `user`.
pub fn token(user: &str) -> String {
    token_with(json!({"sub": user, "exp": unix_now() + 3600}), SECRET)
}

/// A token with arbitrary claims signed HS256 with `secret`.
pub fn token_with(claims: Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
    )
    .expect("encode")
}

/// Seconds since the epoch, offset.
pub fn unix_in(offset: i64) -> i64 {
    unix_now() as i64 + offset
}

/// Polls `check` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A WebSocket playback session as a player would hold it.
pub struct Session {
    /// The socket.
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The code of the close this client sent, which the server echoes.
    sent_close: Option<u16>,
}

impl Session {
    /// A session on a socket the caller upgraded itself.
    pub fn from_socket(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self {
            ws,
            sent_close: None,
        }
    }

    /// Upgrades with a bearer header.
    pub async fn connect(
        addr: SocketAddr,
        user: &str,
        movie: &str,
    ) -> Result<Self, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{addr}/api/v1/stream/session?movie_id={movie}")
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", token(user)).parse().unwrap(),
        );
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self {
            ws,
            sent_close: None,
        })
    }

    /// Sends a tick.
    pub async fn tick(&mut self, position_seconds: f64) {
        self.send_text(&json!({"type":"tick","position_seconds":position_seconds}).to_string())
            .await;
    }

    /// Sends a tick with a state.
    pub async fn tick_state(&mut self, position_seconds: f64, state: &str) {
        self.send_text(
            &json!({"type":"tick","position_seconds":position_seconds,"state":state}).to_string(),
        )
        .await;
    }

    /// Sends a raw text frame.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("send");
    }

    /// The next JSON text message (pings are skipped); `None` when the socket closed.
    pub async fn next_json(&mut self) -> Option<Value> {
        loop {
            match tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("message in time")?
            {
                Ok(Message::Text(text)) => {
                    contract::check_server_message(&text);
                    return Some(serde_json::from_str(&text).expect("json"));
                }
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Waits for the next message of `kind` (others are skipped).
    pub async fn expect(&mut self, kind: &str) -> Value {
        loop {
            let message = self
                .next_json()
                .await
                .unwrap_or_else(|| panic!("closed before {kind}"));
            if message["type"] == kind {
                return message;
            }
        }
    }

    /// Waits for a `saved` of exactly `position_seconds`.
    pub async fn expect_saved(&mut self, position_seconds: f64) {
        loop {
            let saved = self.expect("saved").await;
            if saved["position_seconds"].as_f64() == Some(position_seconds) {
                return;
            }
        }
    }

    /// Waits for the close frame and returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(DEADLINE, self.ws.next())
                .await
                .expect("close in time")
            {
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map(|f| u16::from(f.code));
                    // The server's own closes are in the contract; the answer
                    // to ours carries our code.
                    if let Some(code) = code.filter(|&code| Some(code) != self.sent_close) {
                        contract::check_close_code(code);
                    }
                    return code;
                }
                Some(Ok(Message::Text(text))) => contract::check_server_message(&text),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Sends a close frame with `code` (the server answers with the same code).
    pub async fn send_close(&mut self, code: u16) {
        self.sent_close = Some(code);
        self.ws
            .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
                code: code.into(),
                reason: "bye".into(),
            }))
            .await
            .expect("send a close");
    }

    /// A clean close from the client.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
        // Drain until the server's close arrives.
        while let Ok(Some(Ok(_))) = tokio::time::timeout(DEADLINE, self.ws.next()).await {}
    }

    /// Drops the TCP connection without a close frame.
    pub fn drop_connection(self) {
        drop(self.ws);
    }
}

/// A CQL test node with `schema.cql` applied for keyspace `resume`.
pub async fn node_with_schema() -> CqlTestNode {
    let node = CqlTestNode::start().await;
    let replication = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
    for text in resume_server::store::cassandra::schema_statements("resume", replication) {
        node.execute(&text);
    }
    node
}

/// TLS flags for the real node of `RESUME_TEST_CASSANDRA`, when
/// `RESUME_TEST_CASSANDRA_TLS_CA` names its CA bundle (and, optionally,
/// `RESUME_TEST_CASSANDRA_TLS_SERVER_NAME` the name its certificate carries).
pub fn real_node_tls_flags() -> Vec<String> {
    let var = |name| {
        std::env::var(name)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    let Some(ca) = var("RESUME_TEST_CASSANDRA_TLS_CA") else {
        return Vec::new();
    };
    let mut flags = vec![
        "--cassandra-tls".to_owned(),
        "--cassandra-tls-ca".to_owned(),
        ca,
    ];
    if let Some(name) = var("RESUME_TEST_CASSANDRA_TLS_SERVER_NAME") {
        flags.extend(["--cassandra-tls-server-name".to_owned(), name]);
    }
    flags
}

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// The embedded redb store in a temp dir.
    Embedded,
    /// The Cassandra store, on an in-process CQL test node, or on the real node
    /// named by `RESUME_TEST_CASSANDRA` (in a fresh keyspace).
    Cassandra,
}

/// The storage a test's servers share, so a test can restart its server on the
/// same data.
pub struct TestBackend {
    /// Which store.
    pub kind: BackendKind,
    /// The data dir (also used by the Cassandra kind for nothing but temp files).
    dir: tempfile::TempDir,
    /// Extra flags that point a server at this backend.
    flags: Vec<String>,
    /// The CQL test node, when this backend runs on one.
    pub node: Option<CqlTestNode>,
}

impl TestBackend {
    /// Fresh, empty storage of `kind`.
    pub async fn new(kind: BackendKind) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (flags, node) = match kind {
            BackendKind::Embedded => (Vec::new(), None),
            BackendKind::Cassandra => {
                let (address, keyspace, node) = match std::env::var("RESUME_TEST_CASSANDRA") {
                    Ok(address) if !address.trim().is_empty() => {
                        let keyspace = format!("resume_test_{:016x}", rand::random::<u64>());
                        (address, keyspace, None)
                    }
                    _ => {
                        let node = node_with_schema().await;
                        (node.addr().to_string(), "resume".to_owned(), Some(node))
                    }
                };
                let flags = [
                    "--store",
                    "cassandra",
                    "--cassandra-nodes",
                    &address,
                    "--cassandra-keyspace",
                    &keyspace,
                    "--cassandra-consistency",
                    "one",
                    "--init-schema",
                    "--cassandra-development",
                ];
                let mut flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
                if node.is_none() {
                    flags.extend(real_node_tls_flags());
                }
                (flags, node)
            }
        };
        Self {
            kind,
            dir,
            flags,
            node,
        }
    }

    /// The Cassandra kind on an in-process CQL test node, even when
    /// `RESUME_TEST_CASSANDRA` names a real node (for tests that inject faults).
    pub async fn with_test_node() -> Self {
        let node = node_with_schema().await;
        let address = node.addr().to_string();
        let flags = [
            "--store",
            "cassandra",
            "--cassandra-nodes",
            &address,
            "--cassandra-consistency",
            "one",
        ];
        Self {
            kind: BackendKind::Cassandra,
            dir: tempfile::tempdir().expect("temp dir"),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            node: Some(node),
        }
    }

    /// The config of a server on this storage with extra flags.
    pub fn config(&self, extra: &[&str]) -> Config {
        let mut args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        test_config(self.dir.path(), &args)
    }

    /// Opens this storage's store the way the server would (for tests that wrap it).
    pub async fn open_store(&self) -> resume_server::store::SharedStore {
        resume_server::open_store(&self.config(&[]))
            .await
            .expect("store opens")
    }

    /// Starts a server on this storage with extra flags.
    pub async fn start(&self, extra: &[&str]) -> TestServer {
        let mut args: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        TestServer::start_in(self.dir.path(), &args).await
    }
}

/// Runs each listed `async fn(TestBackend)` once per backend, as its own test.
#[macro_export]
macro_rules! backend_tests {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = $crate::support::TestBackend::new($crate::support::BackendKind::Embedded).await;
                    super::$case(backend).await;
                }
            )*
        }
        mod cassandra {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let backend = $crate::support::TestBackend::new($crate::support::BackendKind::Cassandra).await;
                    super::$case(backend).await;
                }
            )*
        }
    };
}
