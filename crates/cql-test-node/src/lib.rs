//! A one-node Cassandra stand-in that speaks the native protocol (v4) over TCP,
//! or only inside TLS ([`CqlTestNode::start_tls`]), so the Cassandra store is
//! tested through the real `scylla` driver: its handshake, metadata fetch,
//! PREPARE/EXECUTE, routing, timeouts and errors.
//!
//! Frames are encoded and decoded with the `cassandra-protocol` crate; this
//! module adds what a server needs on top: the connection loop ([`connection`]),
//! a parser for the CQL the store and driver send ([`cql`]), and a small
//! database with Cassandra's write-timestamp semantics and the system tables
//! the driver reads ([`engine`]).
//!
//! Faults are injected with [`CqlTestNode::set_mode`]; the node's data can be
//! inspected directly ([`CqlTestNode::stored`], [`CqlTestNode::tombstone`]) so
//! tests check what reached the "database", not only what the store says, and
//! statements can be run on it directly ([`CqlTestNode::execute`]), as an
//! operator would with cqlsh (an older table, the `ALTER TABLE` that migrates
//! it). It pages results when asked (the paging state is an offset into the
//! result) and expires `USING TTL` writes by its own clock, which tests can move
//! on ([`CqlTestNode::advance_clock`]). It is a test double, not a database: one
//! node, no batches, and of DDL only `CREATE KEYSPACE`, `CREATE TABLE` and
//! `ALTER TABLE … ADD`.

mod compression;
mod connection;
pub mod cql;
mod engine;
mod tls;
pub mod types;

/// The rustls of the node's TLS listener ([`CqlTestNode::start_tls`]), so
/// tests build its configuration with the same version.
pub use tokio_rustls::rustls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use engine::Engine;

/// How the node treats requests from now on (connections stay open in every mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    /// Answers every request.
    Normal,
    /// Reads requests and never answers them, like a node that hangs; requests
    /// swallowed here are not applied.
    Unresponsive,
    /// Answers every request after this delay.
    Slow(Duration),
    /// Answers queries with errors: writes with a write timeout, everything
    /// else with "unavailable". Handshakes and PREPARE still work.
    Failing,
    /// Answers every query with "overloaded", as a node shedding load does.
    /// Handshakes and PREPARE still work.
    Overloaded,
}

/// A statement the node has prepared, by id.
struct PreparedEntry {
    /// The parsed statement, re-checked against the schema at each EXECUTE.
    statement: cql::Statement,
    /// The keyspace in effect when it was prepared (for unqualified tables).
    keyspace: Option<String>,
}

/// State shared by every connection of one node.
struct Shared {
    /// Keyspaces, tables and rows.
    engine: Mutex<Engine>,
    /// The current fault mode.
    mode: Mutex<NodeMode>,
    /// Prepared statements by id; ids are derived from the text, so a
    /// re-prepare yields the same id, as the driver expects.
    prepared: Mutex<HashMap<Vec<u8>, Arc<PreparedEntry>>>,
    /// Texts of every statement prepared, in first-prepared order.
    prepared_texts: Mutex<Vec<String>>,
    /// INSERT/DELETE requests the node answered (applied or failed).
    write_requests: AtomicU64,
    /// QUERY/EXECUTE requests read and dropped while unresponsive.
    swallowed_requests: AtomicU64,
    /// INSERT/DELETE requests being handled right now.
    writes_in_flight: AtomicU64,
    /// The most INSERT/DELETE requests ever handled at once.
    peak_writes_in_flight: AtomicU64,
    /// Result pages of rows answered (a paged read counts each page).
    pages_served: AtomicU64,
    /// QUERY/EXECUTE requests still to fail as in [`NodeMode::Failing`],
    /// whatever the mode ([`CqlTestNode::fail_next_queries`]).
    queries_to_fail: AtomicU64,
    /// Request frames received with an LZ4-compressed body.
    compressed_frames: AtomicU64,
}

/// Locks a mutex, ignoring poisoning: a panicking test task must not hide the
/// node's state from the test that inspects it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running test node; stops (closing every connection) when dropped.
pub struct CqlTestNode {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_loop: JoinHandle<()>,
}

impl CqlTestNode {
    /// Starts an empty node (no keyspace, no table) on a free loopback port.
    pub async fn start() -> CqlTestNode {
        let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
        Self::start_on(any_port)
            .await
            .expect("bind a loopback port")
    }

    /// Starts an empty node listening on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<CqlTestNode> {
        Self::listen(addr, None).await
    }

    /// Starts an empty node on `addr` that speaks CQL in plain TCP, or only
    /// inside TLS with `tls`.
    async fn listen(addr: SocketAddr, tls: Option<TlsAcceptor>) -> std::io::Result<CqlTestNode> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(addr.ip())),
            mode: Mutex::new(NodeMode::Normal),
            prepared: Mutex::new(HashMap::new()),
            prepared_texts: Mutex::new(Vec::new()),
            write_requests: AtomicU64::new(0),
            swallowed_requests: AtomicU64::new(0),
            writes_in_flight: AtomicU64::new(0),
            peak_writes_in_flight: AtomicU64::new(0),
            pages_served: AtomicU64::new(0),
            queries_to_fail: AtomicU64::new(0),
            compressed_frames: AtomicU64::new(0),
        });
        let accept_loop = tokio::spawn(accept(listener, Arc::clone(&shared), tls));
        Ok(CqlTestNode {
            addr,
            shared,
            accept_loop,
        })
    }

    /// Runs one statement (DDL, or a write with literal values) directly,
    /// without a client; panics, naming the statement, if the node rejects it.
    pub fn execute(&self, text: &str) {
        let statement = cql::parse(text).unwrap_or_else(|e| panic!("{e}: {text}"));
        lock(&self.shared.engine)
            .execute(&statement, &[], None, None)
            .unwrap_or_else(|e| panic!("{}: {text}", e.message));
    }

    /// `host:port` to give the driver.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Moves the node's clock for TTL expiry forward by `by` (write timestamps
    /// are the client's and do not move).
    pub fn advance_clock(&self, by: Duration) {
        lock(&self.shared.engine).advance_clock(by);
    }

    /// Claims another node in `datacenter`/`rack` at `address` in
    /// `system.peers` (for tests of datacenter settings; nothing answers there,
    /// so pick an address where nothing listens, e.g. `127.0.0.2`).
    pub fn add_peer(&self, address: std::net::IpAddr, datacenter: &str, rack: &str) {
        lock(&self.shared.engine).add_peer(address, datacenter, rack);
    }

    /// Changes how requests are treated from now on.
    pub fn set_mode(&self, mode: NodeMode) {
        *lock(&self.shared.mode) = mode;
    }

    /// Fails the next `count` QUERY/EXECUTE requests as [`NodeMode::Failing`]
    /// would, then answers as the mode says: a blip of exactly that many
    /// failed requests (the driver's own metadata queries count too).
    pub fn fail_next_queries(&self, count: u64) {
        self.shared.queries_to_fail.store(count, Ordering::SeqCst);
    }

    /// Request frames received with an LZ4-compressed body (clients compress
    /// only after asking for LZ4 in their STARTUP).
    pub fn compressed_frames_received(&self) -> u64 {
        self.shared.compressed_frames.load(Ordering::SeqCst)
    }

    /// The live `position_ms` of `(user, movie)` in any keyspace's
    /// `playback_position`, with the write timestamp of that cell; `None` when
    /// there is none or the row is a soft tombstone (`deleted = true`).
    pub fn stored(&self, user: &str, movie: &str) -> Option<(i64, i64)> {
        if self.tombstone(user, movie).is_some() {
            return None;
        }
        let (bytes, timestamp) = self.cell(user, movie, "position_ms")?;
        let array: [u8; 8] = bytes.as_slice().try_into().ok()?;
        Some((i64::from_be_bytes(array), timestamp))
    }

    /// The write timestamp of `(user, movie)`'s `deleted = true` cell, when the
    /// row is a soft tombstone.
    pub fn tombstone(&self, user: &str, movie: &str) -> Option<i64> {
        let (bytes, timestamp) = self.cell(user, movie, "deleted")?;
        (bytes == types::boolean(true)).then_some(timestamp)
    }

    fn cell(&self, user: &str, movie: &str, column: &str) -> Option<(Vec<u8>, i64)> {
        lock(&self.shared.engine).cell(
            "playback_position",
            &[types::text(user)],
            &[types::text(movie)],
            column,
        )
    }

    /// Whether `keyspace.table` exists on the node.
    pub fn has_table(&self, keyspace: &str, table: &str) -> bool {
        lock(&self.shared.engine).has_table(keyspace, table)
    }

    /// Every statement text clients prepared, in first-prepared order (the
    /// driver's own metadata queries included).
    pub fn statements_prepared(&self) -> Vec<String> {
        lock(&self.shared.prepared_texts).clone()
    }

    /// INSERT and DELETE requests the node has answered, successfully or with
    /// an injected error (requests swallowed while unresponsive not counted).
    pub fn write_requests(&self) -> u64 {
        self.shared.write_requests.load(Ordering::SeqCst)
    }

    /// QUERY and EXECUTE requests read and dropped while [`NodeMode::Unresponsive`].
    pub fn swallowed_requests(&self) -> u64 {
        self.shared.swallowed_requests.load(Ordering::SeqCst)
    }

    /// Row results answered so far, counting each page of a paged read.
    pub fn pages_served(&self) -> u64 {
        self.shared.pages_served.load(Ordering::SeqCst)
    }

    /// The most INSERT/DELETE requests the node has had in hand at once.
    pub fn peak_writes_in_flight(&self) -> u64 {
        self.shared.peak_writes_in_flight.load(Ordering::SeqCst)
    }
}

impl Drop for CqlTestNode {
    fn drop(&mut self) {
        // The accept loop owns the connection tasks; aborting it ends them all.
        self.accept_loop.abort();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    match &tls {
                        None => connections.spawn(connection::serve(stream, shared)),
                        Some(tls) => connections.spawn(tls::serve(tls.clone(), stream, shared)),
                    };
                }
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
