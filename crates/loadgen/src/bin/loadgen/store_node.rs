//! The store's own process, when it runs beside the server on this machine
//! (`cql-test-node` standing in for Cassandra): its CPU and RSS from `/proc`
//! and its counters from its control endpoint (`GET /stats`).
//!
//! These figures are reported apart and never billed to the server; they are
//! here to show whether the stand-in, which shares the cores, held the server
//! back.

use std::net::SocketAddr;

use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::client::HttpConnection;
use crate::procfs::{self, ProcSample};

/// Where to find the store's process; either part may be absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct StoreNode {
    /// Its pid, for CPU and RSS.
    pub pid: Option<u32>,
    /// Its control endpoint, for `/stats`.
    pub control: Option<SocketAddr>,
}

/// One reading of the store's process.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeReading {
    /// CPU and RSS, when the pid was given and readable.
    proc: Option<ProcSample>,
    /// `write_requests` of `/stats`: INSERT/DELETE requests answered so far.
    write_requests: Option<f64>,
    /// `peak_writes_in_flight` of `/stats`: most INSERT/DELETE requests in hand at once so far.
    peak_writes_in_flight: Option<f64>,
}

/// What the store's process did during the plateau window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreNodeReport {
    /// CPU seconds (user + sys, all threads) it spent in the window.
    pub window_cpu_seconds: f64,
    /// RSS at the window's end, bytes.
    pub rss_bytes: u64,
    /// INSERT/DELETE requests it answered in the window.
    pub window_write_requests: f64,
    /// Most INSERT/DELETE requests it had in hand at once, from its start to
    /// the window's end.
    pub peak_writes_in_flight: f64,
}

impl StoreNode {
    /// Reads the process and its counters now.
    pub async fn read(&self) -> NodeReading {
        let proc = self.pid.and_then(|pid| procfs::sample(pid).ok());
        let stats = match self.control {
            Some(addr) => read_stats(addr).await,
            None => None,
        };
        let field = |name: &str| stats.as_ref().and_then(|s| s[name].as_f64());
        NodeReading {
            proc,
            write_requests: field("write_requests"),
            peak_writes_in_flight: field("peak_writes_in_flight"),
        }
    }

    /// Whether there is anything to read.
    pub fn is_named(&self) -> bool {
        self.pid.is_some() || self.control.is_some()
    }
}

/// The window between two readings.
pub fn window(start: &NodeReading, end: &NodeReading) -> StoreNodeReport {
    let mut report = StoreNodeReport::default();
    if let (Some(start), Some(end)) = (start.proc, end.proc) {
        report.window_cpu_seconds = end.cpu_seconds - start.cpu_seconds;
        report.rss_bytes = end.rss_bytes;
    }
    if let (Some(start), Some(end)) = (start.write_requests, end.write_requests) {
        report.window_write_requests = end - start;
    }
    report.peak_writes_in_flight = end.peak_writes_in_flight.unwrap_or(0.0);
    report
}

async fn read_stats(addr: SocketAddr) -> Option<serde_json::Value> {
    let mut connection = HttpConnection::connect(addr).await.ok()?;
    let (status, body) = connection
        .request(Method::GET, "/stats", None, None)
        .await
        .ok()?;
    if !status.is_success() {
        return None;
    }
    serde_json::from_slice(&body).ok()
}
