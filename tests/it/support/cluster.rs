//! A cluster of the production shape as real processes on loopback: one
//! `cql-test-node` and several `resume-server`s on the Cassandra store, every
//! port chosen at run time; and a driver of many playback sessions that keeps,
//! per viewer, what was sent, what was acknowledged and every reconnect.
//!
//! The viewers behave as docs/protocol.md asks of players: after an unexpected
//! close they reconnect with exponential backoff and jitter, to another node,
//! and send their latest position first. A [`ReadSampler`] reads positions back
//! from every node while a test runs and records every answer that moves a
//! viewer backwards.
//!
//! Nothing here decides what a test asserts; the books are plain data.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior, timeout};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::binary::{Launch, ServerProcess};
use super::{DEADLINE, Session, token};

/// How often every viewer ticks: a playing player reports about once a second.
pub const TICK_PERIOD: Duration = Duration::from_secs(1);

/// How far a viewer's position moves per tick (seconds of the title).
pub const TICK_STEP_SECONDS: f64 = 1.0;

/// First reconnect backoff; each failed attempt doubles it.
pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest reconnect backoff. Every wait is drawn from `0..=backoff` (full
/// jitter), so no single wait exceeds this.
pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(2);

/// Ticks each viewer remembers with their send times (enough to find the
/// first tick a crash lost).
const SENT_HISTORY: usize = 64;

/// The `cql-test-node` binary, built next to `resume-server` by
/// `cargo build --workspace --bins`.
pub fn cql_test_node_binary() -> PathBuf {
    let name = format!("cql-test-node{}", std::env::consts::EXE_SUFFIX);
    let path = std::path::Path::new(env!("CARGO_BIN_EXE_resume-server")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: the cluster tests run the workspace's binaries as processes; \
         build them first with `cargo build --workspace --bins` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// The `cql-test-node` binary as a child process.
pub struct CqlNodeProcess {
    /// The child; killed if the test drops it.
    child: Child,
    /// Held open: the node runs `--until-stdin-closes`, so it ends with the
    /// test process even when that one is killed.
    _stdin: ChildStdin,
    /// The CQL native protocol address.
    pub cql: SocketAddr,
    /// The HTTP control endpoint (`PUT /mode`, `GET /stats`).
    pub control: SocketAddr,
}

impl CqlNodeProcess {
    /// Starts the node on free loopback ports and reads the addresses it prints.
    pub async fn start() -> Self {
        let mut child = Command::new(cql_test_node_binary())
            .args(["--listen", "127.0.0.1:0", "--until-stdin-closes"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn cql-test-node");
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let line = timeout(DEADLINE, BufReader::new(stdout).lines().next_line())
            .await
            .expect("cql-test-node prints its addresses in time")
            .expect("read cql-test-node's stdout")
            .expect("cql-test-node printed a line");
        let addresses: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("cql-test-node printed {line:?}: {e}"));
        let address = |key: &str| -> SocketAddr {
            addresses[key]
                .as_str()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("no {key} address in {line}"))
        };
        Self {
            cql: address("cql"),
            control: address("control"),
            _stdin: stdin,
            child,
        }
    }

    /// Switches the fault mode: `normal`, `unresponsive`, `failing` or `slow <ms>`.
    pub async fn set_mode(&self, mode: &str) {
        let response = reqwest::Client::new()
            .put(format!("http://{}/mode", self.control))
            .body(mode.to_owned())
            .send()
            .await
            .expect("PUT /mode");
        assert!(
            response.status().is_success(),
            "cql-test-node refused mode {mode:?}: {}",
            response.status()
        );
    }

    /// The node's request counters.
    pub async fn stats(&self) -> Value {
        reqwest::get(format!("http://{}/stats", self.control))
            .await
            .expect("GET /stats")
            .json()
            .await
            .expect("stats are JSON")
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// Where each node of the cluster listens now, as clients (a load balancer)
/// see it; a node restarted on a new port is found at its new address.
#[derive(Clone)]
pub struct Directory {
    /// Per node: its address and its generation, bumped whenever the node
    /// loses its memory without writing it (SIGKILL).
    nodes: Arc<RwLock<Vec<NodeEntry>>>,
}

#[derive(Clone, Copy)]
struct NodeEntry {
    addr: SocketAddr,
    up: bool,
    generation: u32,
}

impl Directory {
    /// Node `index`'s address.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.nodes.read().unwrap()[index].addr
    }

    /// How many nodes the cluster has (up or not).
    pub fn len(&self) -> usize {
        self.nodes.read().unwrap().len()
    }

    /// Whether the test has node `index` running.
    pub fn is_up(&self, index: usize) -> bool {
        self.nodes.read().unwrap()[index].up
    }

    /// Node `index`'s generation (see [`Directory`]).
    pub fn generation(&self, index: usize) -> u32 {
        self.nodes.read().unwrap()[index].generation
    }

    fn update(&self, index: usize, change: impl FnOnce(&mut NodeEntry)) {
        change(&mut self.nodes.write().unwrap()[index]);
    }
}

/// A read of one viewer's position through one node's read path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PositionRead {
    /// The position in seconds.
    Position(f64),
    /// 404: nothing saved.
    Nothing,
    /// Any other status (503 while the store is away).
    Status(u16),
    /// No HTTP answer (the node is down).
    NoAnswer,
}

impl PositionRead {
    /// The position, for a read that found one.
    pub fn position(self) -> Option<f64> {
        match self {
            Self::Position(seconds) => Some(seconds),
            _ => None,
        }
    }
}

/// One-node CQL stand-in plus N resume-servers on the Cassandra store.
pub struct Cluster {
    /// The store.
    pub store: CqlNodeProcess,
    /// The servers, by index; `None` while stopped.
    servers: Vec<Option<ServerProcess>>,
    /// Each server's own data dir (unused by the Cassandra store, kept apart
    /// anyway so no two nodes could share a file).
    data_dirs: Vec<tempfile::TempDir>,
    /// The environment every server gets.
    env: Vec<(String, String)>,
    /// Current addresses, shared with the viewers.
    pub directory: Directory,
    /// HTTP client for reads and probes.
    http: reqwest::Client,
}

impl Cluster {
    /// Starts the store and `servers` nodes with flush interval `flush` and
    /// extra environment `env` (which may override any default below).
    pub async fn start(servers: usize, flush: Duration, env: &[(&str, &str)]) -> Self {
        assert!(servers > 0);
        let store = CqlNodeProcess::start().await;
        let mut common = vec![
            ("RESUME_STORE".to_owned(), "cassandra".to_owned()),
            ("RESUME_CASSANDRA_NODES".to_owned(), store.cql.to_string()),
            ("RESUME_CASSANDRA_CONSISTENCY".to_owned(), "one".to_owned()),
            (
                "RESUME_FLUSH_INTERVAL_MS".to_owned(),
                flush.as_millis().to_string(),
            ),
        ];
        common.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let data_dirs: Vec<_> = (0..servers)
            .map(|_| tempfile::tempdir().expect("temp dir"))
            .collect();
        let mut cluster = Self {
            store,
            servers: (0..servers).map(|_| None).collect(),
            data_dirs,
            env: common,
            directory: Directory {
                nodes: Arc::new(RwLock::new(Vec::new())),
            },
            http: reqwest::Client::new(),
        };
        // The first node creates the schema; the others start once it exists.
        let first = cluster
            .launch(0, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let rest =
            futures_util::future::join_all((1..servers).map(|index| cluster.launch(index, None)))
                .await;
        let mut entries = vec![NodeEntry {
            addr: first.addr,
            up: true,
            generation: 0,
        }];
        cluster.servers[0] = Some(first);
        for (index, server) in (1..servers).zip(rest) {
            let server = server.unwrap_or_else(|e| panic!("{e}"));
            entries.push(NodeEntry {
                addr: server.addr,
                up: true,
                generation: 0,
            });
            cluster.servers[index] = Some(server);
        }
        *cluster.directory.nodes.write().unwrap() = entries;
        cluster
    }

    async fn launch(
        &self,
        index: usize,
        addr: Option<SocketAddr>,
    ) -> Result<ServerProcess, String> {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if index == 0 {
            env.push(("RESUME_INIT_SCHEMA", "true"));
            env.push(("RESUME_CASSANDRA_DEVELOPMENT", "true"));
        }
        ServerProcess::launch(Launch {
            addr,
            data_dir: Some(self.data_dirs[index].path()),
            env: &env,
        })
        .await
    }

    /// How many nodes (up or not).
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    /// Node `index`'s current address.
    pub fn addr(&self, index: usize) -> SocketAddr {
        self.directory.addr(index)
    }

    /// Whether node `index` is running.
    pub fn is_up(&self, index: usize) -> bool {
        self.servers[index].is_some()
    }

    /// SIGKILLs node `index`; returns once the process is gone.
    pub async fn kill(&mut self, index: usize) {
        let server = self.servers[index].take().expect("node is up");
        self.directory.update(index, |n| {
            n.up = false;
            n.generation += 1;
        });
        server.kill().await;
    }

    /// SIGTERMs node `index`; returns its exit status and log once it exited.
    pub async fn terminate(&mut self, index: usize) -> (ExitStatus, String) {
        let server = self.servers[index].take().expect("node is up");
        self.directory.update(index, |n| n.up = false);
        server.terminate().await
    }

    /// Starts node `index` again on its old port, or on a new one when the old
    /// one was taken meanwhile (clients find it through the directory).
    /// Returns whether it kept its port.
    pub async fn restart(&mut self, index: usize) -> bool {
        assert!(self.servers[index].is_none(), "node {index} is running");
        let old = self.addr(index);
        let (server, same_port) = match self.launch(index, Some(old)).await {
            Ok(server) => (server, true),
            Err(first) => {
                eprintln!("node {index} could not take its old address back; a new port:\n{first}");
                let server = self
                    .launch(index, None)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                (server, false)
            }
        };
        let addr = server.addr;
        self.servers[index] = Some(server);
        self.directory.update(index, |n| {
            n.addr = addr;
            n.up = true;
        });
        same_port
    }

    /// The status of `path` (no token) on node `index`; `None` when it does not answer.
    pub async fn probe(&self, index: usize, path: &str) -> Option<u16> {
        let url = format!("http://{}{path}", self.addr(index));
        match timeout(DEADLINE, self.http.get(url).send()).await {
            Ok(Ok(response)) => Some(response.status().as_u16()),
            _ => None,
        }
    }

    /// `/healthz` of node `index`.
    pub async fn healthz(&self, index: usize) -> Option<u16> {
        self.probe(index, "/healthz").await
    }

    /// `/readyz` of node `index`.
    pub async fn readyz(&self, index: usize) -> Option<u16> {
        self.probe(index, "/readyz").await
    }

    /// `user`'s position on `movie` through node `index`'s read path
    /// (`GET /api/v1/progress/{movie}`).
    pub async fn position(&self, index: usize, user: &str, movie: &str) -> PositionRead {
        read_position(&self.http, self.addr(index), user, movie).await
    }

    /// `user`'s continue-watching items through node `index`.
    pub async fn continue_watching(&self, index: usize, user: &str) -> Vec<Value> {
        let response = self
            .http
            .get(format!(
                "http://{}/api/v1/continue-watching",
                self.addr(index)
            ))
            .bearer_auth(token(user))
            .send()
            .await
            .expect("continue-watching request");
        assert_eq!(response.status(), 200, "continue watching on node {index}");
        let body: Value = response.json().await.expect("json");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    /// One counter or gauge from node `index`'s /metrics.
    pub async fn metric(&self, index: usize, name: &str, labels: &str) -> f64 {
        self.servers[index]
            .as_ref()
            .expect("node is up")
            .metric(name, labels)
            .await
    }

    /// Node `index`'s log so far.
    pub fn log(&self, index: usize) -> String {
        self.servers[index]
            .as_ref()
            .map(ServerProcess::log_text)
            .unwrap_or_default()
    }
}

/// `GET /api/v1/progress/{movie}` as `user` on `addr`.
async fn read_position(
    http: &reqwest::Client,
    addr: SocketAddr,
    user: &str,
    movie: &str,
) -> PositionRead {
    let request = http
        .get(format!("http://{addr}/api/v1/progress/{movie}"))
        .bearer_auth(token(user))
        .send();
    let response = match timeout(DEADLINE, request).await {
        Ok(Ok(response)) => response,
        _ => return PositionRead::NoAnswer,
    };
    match response.status().as_u16() {
        200 => match response.json::<Value>().await {
            Ok(body) => PositionRead::Position(
                body["position_seconds"]
                    .as_f64()
                    .unwrap_or_else(|| panic!("progress without a position: {body}")),
            ),
            Err(_) => PositionRead::NoAnswer,
        },
        404 => PositionRead::Nothing,
        status => PositionRead::Status(status),
    }
}

/// One reconnect of a viewer, as the viewer saw it.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// The node (index) whose socket ended.
    pub from: usize,
    /// The node (index) it came back on.
    pub node: usize,
    /// When the old socket ended.
    pub dropped_at: Instant,
    /// From the end of the old socket to the new hello.
    pub after: Duration,
    /// The new hello's resume point.
    pub resume: f64,
    /// The viewer's latest position when the old socket ended (sent first on
    /// the new one).
    pub latest: f64,
    /// The last position acknowledged as saved before the old socket ended.
    pub saved: Option<f64>,
}

/// What one viewer sent and heard.
#[derive(Debug, Clone, Default)]
pub struct ViewerBook {
    /// The node (index) it is connected to (a hello received); `None` while
    /// reconnecting.
    pub node: Option<usize>,
    /// Hellos received, the first connection's included.
    pub hellos: u32,
    /// The first hello's resume point.
    pub first_resume: Option<f64>,
    /// Ticks sent (resends not included), newest last, with their send times.
    pub sent: VecDeque<(f64, Instant)>,
    /// The position of the latest `saved`.
    pub last_saved: Option<f64>,
    /// `saved` messages received.
    pub saved_count: u32,
    /// Recent acknowledgements: when each `saved` arrived, and how long after
    /// its tick was sent (the flush interval plus the write, as the player
    /// sees it).
    pub ack_delays: VecDeque<(Instant, Duration)>,
    /// `superseded` messages received.
    pub superseded: u32,
    /// Sockets that ended without the viewer asking.
    pub drops: u32,
    /// Every reconnect, in order.
    pub reconnects: Vec<Reconnect>,
    /// Whether the viewer has seen the order to hold (it ticks no more).
    pub holding: bool,
    /// Whether the final close got the server's close reply.
    pub closed_cleanly: bool,
    /// The node (index) the final close happened on.
    pub closed_on: Option<usize>,
    /// Anything unexpected the server said (errors, a hello mid-session…).
    pub unexpected: Vec<String>,
}

impl ViewerBook {
    /// The latest position sent.
    pub fn last_sent(&self) -> Option<f64> {
        self.sent.back().map(|(position, _)| *position)
    }

    /// When the tick with `position` was sent, if it is still in the history.
    pub fn sent_at(&self, position: f64) -> Option<Instant> {
        self.sent
            .iter()
            .find(|(p, _)| *p == position)
            .map(|(_, at)| *at)
    }

    /// The book in one line, for failure messages.
    pub fn summary(&self) -> String {
        format!(
            "node index {:?}, {} hellos, last sent {:?}, last saved {:?}, {} drops, last \
             reconnect {:?}, holding {}, unexpected {:?}",
            self.node,
            self.hellos,
            self.last_sent(),
            self.last_saved,
            self.drops,
            self.reconnects.last(),
            self.holding,
            self.unexpected
        )
    }

    fn record_sent(&mut self, position: f64) {
        if self.sent.len() == SENT_HISTORY {
            self.sent.pop_front();
        }
        self.sent.push_back((position, Instant::now()));
    }
}

/// What the viewers do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Tick every [`TICK_PERIOD`].
    Play,
    /// Stay connected without ticking (a paused player that stopped reporting).
    Hold,
    /// Close the socket cleanly and stop.
    Close,
}

/// Many viewers, each playing one title in its own session, spread over the
/// cluster's nodes (viewer `i` starts on node `i % nodes`).
pub struct Viewers {
    /// The viewers' user ids.
    users: Vec<String>,
    /// One book per viewer.
    books: Arc<[Mutex<ViewerBook>]>,
    /// Tells every viewer what to do.
    phase: watch::Sender<Phase>,
    /// The viewer tasks.
    tasks: Vec<JoinHandle<()>>,
}

impl Viewers {
    /// Starts `count` viewers `{prefix}-{i}` playing `movie`; each connects,
    /// reads its hello, and ticks once per [`TICK_PERIOD`] from a random phase,
    /// its position growing by [`TICK_STEP_SECONDS`] per tick.
    pub fn start(directory: &Directory, prefix: &str, count: usize, movie: &str) -> Self {
        let users: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
        let books: Arc<[Mutex<ViewerBook>]> = (0..count)
            .map(|_| Mutex::new(ViewerBook::default()))
            .collect();
        let (phase, _) = watch::channel(Phase::Play);
        let tasks = users
            .iter()
            .enumerate()
            .map(|(i, user)| {
                let viewer = Viewer {
                    index: i,
                    user: user.clone(),
                    movie: movie.to_owned(),
                    directory: directory.clone(),
                    books: books.clone(),
                    phase: phase.subscribe(),
                };
                tokio::spawn(viewer.run(i % directory.len()))
            })
            .collect();
        Self {
            users,
            books,
            phase,
            tasks,
        }
    }

    /// How many viewers.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Viewer `i`'s user id.
    pub fn user(&self, i: usize) -> &str {
        &self.users[i]
    }

    /// A copy of viewer `i`'s book.
    pub fn book(&self, i: usize) -> ViewerBook {
        self.books[i].lock().unwrap().clone()
    }

    /// A copy of every book.
    pub fn books(&self) -> Vec<ViewerBook> {
        self.books
            .iter()
            .map(|b| b.lock().unwrap().clone())
            .collect()
    }

    /// Shared access to the books (for samplers).
    fn shared_books(&self) -> Arc<[Mutex<ViewerBook>]> {
        self.books.clone()
    }

    /// Polls the books until `check(i, book)` holds for every viewer, failing the test
    /// after [`DEADLINE`] with the first viewer that does not satisfy it.
    pub async fn wait_for_all(&self, what: &str, check: impl Fn(usize, &ViewerBook) -> bool) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let lagging = self
                .books
                .iter()
                .enumerate()
                .find(|(i, book)| !check(*i, &book.lock().unwrap()));
            let Some((i, book)) = lagging else { return };
            if Instant::now() >= deadline {
                panic!(
                    "timed out waiting until {what}: {} is not there: {}",
                    self.users[i],
                    book.lock().unwrap().summary()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Every viewer stops ticking and stays connected; returns once every
    /// connected viewer has stopped (a reconnecting one only resends).
    pub async fn hold(&self) {
        self.phase.send_replace(Phase::Hold);
        self.wait_for_all("every viewer holds", |_, b| b.holding || b.node.is_none())
            .await;
    }

    /// Every viewer plays (ticks) again.
    pub fn play(&self) {
        self.phase.send_replace(Phase::Play);
    }

    /// Every viewer closes its session cleanly (a close frame, then the
    /// server's close reply) and stops; returns once all have.
    pub async fn close_all(mut self) -> Vec<ViewerBook> {
        self.phase.send_replace(Phase::Close);
        for task in self.tasks.drain(..) {
            timeout(DEADLINE, task)
                .await
                .expect("every viewer closes within the deadline")
                .expect("viewer task");
        }
        self.books()
    }
}

impl Drop for Viewers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// One viewer's task state.
struct Viewer {
    index: usize,
    user: String,
    movie: String,
    directory: Directory,
    books: Arc<[Mutex<ViewerBook>]>,
    phase: watch::Receiver<Phase>,
}

/// How a connected session ended.
enum SessionEnd {
    /// The socket ended without the viewer asking.
    Dropped,
    /// The viewer closed it (final close).
    Closed,
}

impl Viewer {
    fn book(&self) -> std::sync::MutexGuard<'_, ViewerBook> {
        self.books[self.index].lock().unwrap()
    }

    /// Connects (and reconnects) until told to close.
    async fn run(mut self, home: usize) {
        let mut ticker = tokio::time::interval_at(
            Instant::now() + TICK_PERIOD.mul_f64(rand::random_range(0.0..1.0)),
            TICK_PERIOD,
        );
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut node = home;
        let mut backoff = RECONNECT_BACKOFF_MIN;
        let mut dropped: Option<Reconnect> = None;
        loop {
            if *self.phase.borrow() == Phase::Close {
                return;
            }
            let Some((session, resume)) = self.connect(node).await else {
                // Refused or no hello: wait (full jitter) and try the next node.
                tokio::time::sleep(backoff.mul_f64(rand::random_range(0.0..=1.0))).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                node = (node + 1) % self.directory.len();
                continue;
            };
            backoff = RECONNECT_BACKOFF_MIN;
            {
                let mut book = self.book();
                book.node = Some(node);
                book.hellos += 1;
                book.first_resume.get_or_insert(resume);
                if let Some(mut reconnect) = dropped.take() {
                    reconnect.node = node;
                    reconnect.after = reconnect.dropped_at.elapsed();
                    reconnect.resume = resume;
                    book.reconnects.push(reconnect);
                }
            }
            match self.play(session, node, &mut ticker).await {
                SessionEnd::Closed => return,
                SessionEnd::Dropped => {}
            }
            let dropped_at = Instant::now();
            {
                let mut book = self.book();
                book.node = None;
                book.drops += 1;
                dropped = Some(Reconnect {
                    from: node,
                    node,
                    dropped_at,
                    after: Duration::ZERO,
                    resume: 0.0,
                    latest: book.last_sent().unwrap_or(0.0),
                    saved: book.last_saved,
                });
            }
            // The node that dropped us is probably going away: start with
            // another one, at random, as a load balancer would.
            let others = self.directory.len() - 1;
            if others > 0 {
                node = (node + 1 + rand::random_range(0..others)) % self.directory.len();
            }
            tokio::time::sleep(backoff.mul_f64(rand::random_range(0.0..=1.0))).await;
        }
    }

    /// Opens a session on `node` and reads its hello; `None` when refused.
    async fn connect(&self, node: usize) -> Option<(Session, f64)> {
        let addr = self.directory.addr(node);
        let mut session = timeout(DEADLINE, Session::connect(addr, &self.user, &self.movie))
            .await
            .ok()?
            .ok()?;
        let first = timeout(DEADLINE, next_text(&mut session)).await.ok()??;
        if first["type"] != "hello" {
            self.book()
                .unexpected
                .push(format!("first message on node {}: {first}", node + 1));
            return None;
        }
        let resume = first["resume_position_seconds"].as_f64()?;
        Some((session, resume))
    }

    /// Plays on a connected session until it ends.
    async fn play(
        &mut self,
        mut session: Session,
        node: usize,
        ticker: &mut tokio::time::Interval,
    ) -> SessionEnd {
        // As the protocol asks: the latest position first on a new socket.
        let latest = self.book().last_sent();
        if let Some(position) = latest
            && !send_tick(&mut session, position).await
        {
            return SessionEnd::Dropped;
        }
        loop {
            let phase = *self.phase.borrow_and_update();
            if phase == Phase::Close {
                let clean = close_cleanly(&mut session).await;
                let mut book = self.book();
                book.closed_cleanly = clean;
                book.closed_on = Some(node);
                book.node = None;
                return SessionEnd::Closed;
            }
            let playing = phase == Phase::Play;
            self.book().holding = phase == Phase::Hold;
            tokio::select! {
                changed = self.phase.changed() => {
                    // The test is over when the sender is gone.
                    if changed.is_err() {
                        return SessionEnd::Closed;
                    }
                }
                message = session.ws.next() => {
                    match message {
                        Some(Ok(Message::Text(text))) => {
                            super::contract::check_server_message(&text);
                            self.heard(node, &text);
                        }
                        Some(Ok(Message::Close(_))) => {
                            // Let the library answer the close, briefly.
                            let _ = timeout(Duration::from_secs(1), async {
                                while let Some(Ok(_)) = session.ws.next().await {}
                            })
                            .await;
                            return SessionEnd::Dropped;
                        }
                        Some(Ok(_)) => {}
                        Some(Err(_)) | None => return SessionEnd::Dropped,
                    }
                }
                _ = ticker.tick(), if playing => {
                    let position = {
                        let mut book = self.book();
                        let position = book.last_sent().unwrap_or(0.0) + TICK_STEP_SECONDS;
                        book.record_sent(position);
                        position
                    };
                    if !send_tick(&mut session, position).await {
                        return SessionEnd::Dropped;
                    }
                }
            }
        }
    }

    /// Books one text message from the server.
    fn heard(&self, node: usize, text: &str) {
        let message: Value = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(_) => {
                self.book()
                    .unexpected
                    .push(format!("node {}: not JSON: {text}", node + 1));
                return;
            }
        };
        let mut book = self.book();
        match message["type"].as_str() {
            Some("saved") => {
                book.saved_count += 1;
                book.last_saved = message["position_seconds"].as_f64();
                let sent_at = book.last_saved.and_then(|p| book.sent_at(p));
                if let Some(sent_at) = sent_at {
                    if book.ack_delays.len() == SENT_HISTORY {
                        book.ack_delays.pop_front();
                    }
                    let now = Instant::now();
                    book.ack_delays.push_back((now, now - sent_at));
                }
            }
            Some("superseded") => book.superseded += 1,
            _ => book
                .unexpected
                .push(format!("node {}: {message}", node + 1)),
        }
    }
}

/// The next text message as JSON; `None` when the socket ended first.
async fn next_text(session: &mut Session) -> Option<Value> {
    loop {
        match session.ws.next().await? {
            Ok(Message::Text(text)) => {
                super::contract::check_server_message(&text);
                return serde_json::from_str(&text).ok();
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

async fn send_tick(session: &mut Session, position: f64) -> bool {
    let tick = json!({"type": "tick", "position_seconds": position}).to_string();
    matches!(
        timeout(DEADLINE, session.ws.send(Message::text(tick))).await,
        Ok(Ok(()))
    )
}

/// Sends a close frame and waits for the server's close reply; true when it came.
pub async fn close_cleanly(session: &mut Session) -> bool {
    if session.ws.close(None).await.is_err() {
        return false;
    }
    timeout(DEADLINE, async {
        loop {
            match session.ws.next().await {
                Some(Ok(Message::Close(_))) => return true,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return false,
            }
        }
    })
    .await
    .unwrap_or(false)
}

/// What a [`ReadSampler`] saw.
#[derive(Debug, Default)]
pub struct SampleReport {
    /// Reads that returned a position (or 404).
    pub reads: u64,
    /// Reads without an answer or with another status (a node down).
    pub failed: u64,
    /// Every answer that broke a rule, described.
    pub violations: Vec<String>,
}

/// Reads viewers' positions through every running node while a test runs,
/// and checks each answer against what the viewer knows:
///
/// * **Never behind an acknowledgement.** A `saved` means durable, so a read
///   sent after the viewer got `saved p` must answer at least `p`, on any node.
/// * **Never ahead of the player.** No node may answer a position the viewer
///   had not sent by the time the answer arrived.
/// * **Never backwards on one node.** A node's answer merges its own live
///   sessions with the store, so two nodes may differ by a position not yet
///   written; but each node's answers for a viewer must never decrease, while
///   that node keeps its memory (a SIGKILLed node loses its unwritten live
///   positions, which is why a kill starts a new generation).
pub struct ReadSampler {
    /// Stops the workers.
    stop: CancellationToken,
    /// The reader tasks.
    workers: Vec<JoinHandle<()>>,
    /// What they share, the report included.
    shared: Arc<SamplerState>,
}

/// The sampler's state, shared by its workers.
struct SamplerState {
    /// Where the nodes are, and which are up.
    directory: Directory,
    /// The viewers' books (floors and ceilings of every check).
    books: Arc<[Mutex<ViewerBook>]>,
    /// The viewers' user ids.
    users: Vec<String>,
    /// Indices of the viewers read.
    sampled: Vec<usize>,
    /// The title every viewer plays.
    movie: String,
    /// The next read's number; it picks the viewer and the node.
    next: AtomicUsize,
    /// The highest position each node answered per viewer, by
    /// (viewer, node, generation).
    highest: Mutex<HashMap<(usize, usize, u32), f64>>,
    /// What was seen.
    report: Mutex<SampleReport>,
}

impl SamplerState {
    /// Reads the next viewer on the next node and checks the answer.
    async fn sample(&self, http: &reqwest::Client) {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        let viewer = self.sampled[k % self.sampled.len()];
        let node = (k / self.sampled.len() + viewer) % self.directory.len();
        if !self.directory.is_up(node) {
            return;
        }
        let generation = self.directory.generation(node);
        let user = &self.users[viewer];
        let shown = node + 1;
        let floor = self.books[viewer].lock().unwrap().last_saved;
        let read = read_position(http, self.directory.addr(node), user, &self.movie).await;
        let ceiling = self.books[viewer].lock().unwrap().last_sent();
        let answer = match read {
            PositionRead::Position(p) => Some(p),
            PositionRead::Nothing => None,
            PositionRead::Status(_) | PositionRead::NoAnswer => {
                self.report.lock().unwrap().failed += 1;
                return;
            }
        };
        let mut broken = Vec::new();
        if let Some(floor) = floor
            && answer.is_none_or(|p| p < floor)
        {
            broken.push(format!(
                "{user} on node {shown}: read {answer:?} after saved {floor}"
            ));
        }
        if let Some(p) = answer
            && ceiling.is_none_or(|c| p > c)
        {
            broken.push(format!(
                "{user} on node {shown}: read {p} but sent only up to {ceiling:?}"
            ));
        }
        {
            let mut highest = self.highest.lock().unwrap();
            let key = (viewer, node, generation);
            match (highest.get(&key).copied(), answer) {
                (Some(before), Some(now)) if now < before => {
                    broken.push(format!("{user} on node {shown}: read {now} after {before}"))
                }
                (Some(before), None) => broken.push(format!(
                    "{user} on node {shown}: read nothing after {before}"
                )),
                _ => {}
            }
            if let Some(now) = answer {
                let entry = highest.entry(key).or_insert(now);
                *entry = entry.max(now);
            }
        }
        let mut report = self.report.lock().unwrap();
        report.reads += 1;
        report.violations.extend(broken);
    }
}

impl ReadSampler {
    /// Starts `workers` readers, each reading one position every `period`, of
    /// the viewers `sampled` (indices), on every node in turn.
    pub fn start(
        directory: &Directory,
        viewers: &Viewers,
        sampled: Vec<usize>,
        movie: &str,
        workers: usize,
        period: Duration,
    ) -> Self {
        assert!(!sampled.is_empty());
        let stop = CancellationToken::new();
        let shared = Arc::new(SamplerState {
            directory: directory.clone(),
            books: viewers.shared_books(),
            users: viewers.users.clone(),
            sampled,
            movie: movie.to_owned(),
            next: AtomicUsize::new(0),
            highest: Mutex::default(),
            report: Mutex::default(),
        });
        let workers = (0..workers)
            .map(|_| {
                let (stop, shared) = (stop.clone(), shared.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::new();
                    let mut pace = tokio::time::interval(period);
                    pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            _ = pace.tick() => shared.sample(&http).await,
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            workers,
            shared,
        }
    }

    /// Reads done so far.
    pub fn reads(&self) -> u64 {
        self.shared.report.lock().unwrap().reads
    }

    /// Waits until the sampler has read `more` positions beyond what it had
    /// read when called (so a phase of a test is really sampled).
    pub async fn wait_for_reads(&self, more: u64) {
        let target = self.reads() + more;
        super::wait_until(
            &format!("the sampler has read {target} positions"),
            || async { self.reads() >= target },
        )
        .await;
    }

    /// Stops reading and returns what was seen.
    pub async fn finish(self) -> SampleReport {
        self.stop.cancel();
        for worker in self.workers {
            worker.await.expect("sampler worker");
        }
        std::mem::take(&mut *self.shared.report.lock().unwrap())
    }
}

/// Serializes the cluster tests: each runs four processes and hundreds of
/// sessions, and their timing bounds assume they do not share two cores with
/// another cluster.
pub static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
