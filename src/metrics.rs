//! Prometheus metrics of the service, rendered by `GET /metrics`.
//!
//! One [`Metrics`] value is created at start and shared; the hot paths only bump
//! atomics. This module owns names and help texts, not the decisions of when to
//! count (those stay with the code that acts).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric,
};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::store::{CommitStats, PositionStore};

/// Why a tick or message was refused.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum RejectReason {
    /// Not JSON, or not an object.
    InvalidJson,
    /// `type` missing or not known.
    UnknownType,
    /// Position missing, not a number, negative or NaN.
    InvalidPosition,
    /// `state` is not playing/paused/ended.
    InvalidState,
    /// Binary frames are not part of the protocol.
    Binary,
    /// Over the session's tick rate.
    RateLimited,
}

/// Why a session wrote its position.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum FlushReason {
    /// The flush interval passed with a changed position.
    Interval,
    /// The socket closed (close frame, drop, error, idle timeout).
    Close,
    /// The server is shutting down.
    Shutdown,
    /// The player reported `ended`.
    Ended,
    /// A failed write is being retried.
    Retry,
}

/// Outcome of a store write.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum WriteOutcome {
    /// Durable, and the stored winner.
    Ok,
    /// Durable, but a newer write or delete already held the title.
    Superseded,
    /// The store refused or timed out.
    Failed,
}

/// What a readiness probe found (label values `passed`, `failed`).
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
enum ProbeResult {
    /// The store answered in time.
    Passed,
    /// It did not.
    Failed,
}

impl EncodeLabelValue for ProbeResult {
    fn encode(
        &self,
        encoder: &mut prometheus_client::encoding::LabelValueEncoder,
    ) -> Result<(), std::fmt::Error> {
        let text = match self {
            Self::Passed => "passed",
            Self::Failed => "failed",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabel {
    result: ProbeResult,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabel {
    reason: RejectReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlushLabel {
    reason: FlushReason,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: WriteOutcome,
}

/// Every metric of the service.
pub struct Metrics {
    /// The registry rendered by `/metrics`.
    registry: Registry,
    /// Sessions currently open (including those still flushing after a close).
    pub live_sessions: Gauge,
    /// Sessions opened since start.
    pub sessions_opened: Counter,
    /// Ticks accepted.
    pub ticks_received: Counter,
    /// Messages refused, by reason.
    ticks_rejected: Family<RejectLabel, Counter>,
    /// Store writes, by outcome.
    store_writes: Family<OutcomeLabel, Counter>,
    /// Store write latency in seconds.
    pub write_latency: Histogram,
    /// Session writes, by reason.
    flushes: Family<FlushLabel, Counter>,
    /// Writes through the HTTP progress route.
    pub http_progress_writes: Counter,
    /// Ticks over the rate, kept as the latest position but not answered.
    pub ticks_coalesced: Counter,
    /// Stored winners stamped ahead of this node's clock beyond the tolerance.
    pub clock_skew_seen: Counter,
    /// 1 while `/readyz` answers 200, 0 while it answers 503.
    pub ready: Gauge,
    /// Readiness probes of the store, by result.
    readiness_probes: Family<ProbeLabel, Counter>,
}

/// Exports a store's group-commit counters, read at each scrape.
#[derive(Debug)]
struct CommitCollector(Arc<CommitStats>);

impl Collector for CommitCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let counters = [
            (
                "store_commits",
                "Embedded store transactions committed (one fsync each)",
                &self.0.commits,
            ),
            (
                "store_committed_writes",
                "Writes applied through embedded store commits",
                &self.0.writes,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Creates and registers every metric; `commit_stats` adds the store's
    /// group-commit counters when it has them.
    pub fn new(commit_stats: Option<Arc<CommitStats>>) -> Self {
        let mut registry = Registry::with_prefix("resume");
        if let Some(stats) = commit_stats {
            registry.register_collector(Box::new(CommitCollector(stats)));
        }
        let live_sessions = Gauge::default();
        let sessions_opened = Counter::default();
        let ticks_received = Counter::default();
        let ticks_rejected = Family::default();
        let store_writes = Family::default();
        let write_latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        let flushes = Family::default();
        let http_progress_writes = Counter::default();
        let ticks_coalesced = Counter::default();
        let clock_skew_seen = Counter::default();
        let ready = Gauge::default();
        let readiness_probes = Family::default();
        registry.register(
            "ready",
            "1 while GET /readyz answers 200, 0 while it answers 503",
            ready.clone(),
        );
        registry.register(
            "readiness_probes",
            "Background probes of the store behind /readyz, by result (passed, failed)",
            readiness_probes.clone(),
        );
        registry.register(
            "ticks_coalesced",
            "Ticks over the session's rate: kept as its latest position, not answered",
            ticks_coalesced.clone(),
        );
        registry.register(
            "clock_skew_seen",
            "Stored positions stamped more than a second ahead of this node's clock (a node's clock is off)",
            clock_skew_seen.clone(),
        );
        registry.register(
            "live_sessions",
            "WebSocket sessions open now",
            live_sessions.clone(),
        );
        registry.register(
            "sessions_opened",
            "WebSocket sessions opened",
            sessions_opened.clone(),
        );
        registry.register(
            "ticks_received",
            "Position ticks accepted",
            ticks_received.clone(),
        );
        registry.register(
            "ticks_rejected",
            "Session messages refused, by reason",
            ticks_rejected.clone(),
        );
        registry.register(
            "store_writes",
            "Position store writes, by outcome",
            store_writes.clone(),
        );
        registry.register(
            "store_write_seconds",
            "Position store write latency",
            write_latency.clone(),
        );
        registry.register(
            "session_flushes",
            "Session position writes, by reason",
            flushes.clone(),
        );
        registry.register(
            "http_progress_writes",
            "Positions written through POST /api/v1/stream/progress",
            http_progress_writes.clone(),
        );
        Self {
            registry,
            live_sessions,
            sessions_opened,
            ticks_received,
            ticks_rejected,
            store_writes,
            write_latency,
            flushes,
            http_progress_writes,
            ticks_coalesced,
            clock_skew_seen,
            ready,
            readiness_probes,
        }
    }

    /// Every metric, and the metrics `store` exports of its own.
    pub fn for_store(store: &dyn PositionStore) -> Self {
        let mut metrics = Self::new(store.commit_stats());
        store.register_metrics(&mut metrics.registry);
        metrics
    }

    /// Counts one readiness probe.
    pub fn readiness_probe(&self, passed: bool) {
        let result = if passed {
            ProbeResult::Passed
        } else {
            ProbeResult::Failed
        };
        self.readiness_probes
            .get_or_create(&ProbeLabel { result })
            .inc();
    }

    /// Counts a refused message.
    pub fn rejected(&self, reason: RejectReason) {
        self.ticks_rejected
            .get_or_create(&RejectLabel { reason })
            .inc();
    }

    /// Counts a session write attempt.
    pub fn flushed(&self, reason: FlushReason) {
        self.flushes.get_or_create(&FlushLabel { reason }).inc();
    }

    /// Counts a store write and its latency.
    pub fn store_write(&self, outcome: WriteOutcome, seconds: f64) {
        self.store_writes
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
        self.write_latency.observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(None)
    }
}
