//! What the Cassandra store counts, exported on `/metrics` as
//! `resume_cassandra_*`: latency and failures of each store operation, the
//! store's own retries, writes waiting for a write slot, and the driver's
//! metrics (requests, retries, timeouts, connections, latency quantiles) of
//! the session in use, and the renewals of that session.
//!
//! This module owns the names and help texts; the store decides when to count.
//! Label values are lower case: `op` is `put`, `get`, `list`, `delete` or
//! `health`; `kind` is `timeout`, `unavailable`, `overloaded` or `other`.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use scylla::observability::metrics::Metrics as DriverMetrics;

use super::retry::FailureKind;

/// A store operation, as metrics label it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Operation {
    /// `put`: the write, its retries and its read-back.
    Put,
    /// `get`: the stream-start read.
    Get,
    /// `list`: a viewer's titles.
    List,
    /// `delete`: a tombstone write and its retries.
    Delete,
    /// `check_health`: the readiness probe's query.
    Health,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Put => "put",
            Self::Get => "get",
            Self::List => "list",
            Self::Delete => "delete",
            Self::Health => "health",
        }
    }
}

impl EncodeLabelValue for Operation {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

impl EncodeLabelValue for FailureKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let text = match self {
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Overloaded => "overloaded",
            Self::Other => "other",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabel {
    op: Operation,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabel {
    op: Operation,
    kind: FailureKind,
}

type LatencyFamily = Family<OperationLabel, Histogram, fn() -> Histogram>;

/// Seconds from 0.25 ms to about 8 s: a healthy request, and the longest
/// client timeouts (6 s reads) with a retry.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The store's counters; cheap to clone (every clone counts into the same
/// metrics).
#[derive(Debug, Clone)]
pub struct StoreMetrics {
    /// Latency of each operation, success or not, retries included.
    latency: LatencyFamily,
    /// Operations that failed, by kind of the last failure.
    failures: Family<FailureLabel, Counter>,
    /// Attempts the store made again after a failure (not the driver's).
    retries: Family<OperationLabel, Counter>,
    /// Writes waiting for a write slot now.
    writes_waiting: Gauge,
    /// Writes that gave up waiting for a write slot.
    slot_timeouts: Counter,
    /// Driver sessions replaced by fresh ones (see `renewal`), by outcome.
    renewals: Family<RenewalLabel, Counter>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RenewalLabel {
    outcome: RenewalOutcome,
}

/// How one attempt to replace the driver session ended.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum RenewalOutcome {
    /// A fresh session is in use.
    Renewed,
    /// The cluster did not answer the new session in time; the old one stays.
    Failed,
}

impl EncodeLabelValue for RenewalOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        let text = match self {
            Self::Renewed => "renewed",
            Self::Failed => "failed",
        };
        EncodeLabelValue::encode(&text, encoder)
    }
}

impl Default for StoreMetrics {
    fn default() -> Self {
        Self {
            latency: Family::new_with_constructor(latency_histogram),
            failures: Family::default(),
            retries: Family::default(),
            writes_waiting: Gauge::default(),
            slot_timeouts: Counter::default(),
            renewals: Family::default(),
        }
    }
}

impl StoreMetrics {
    /// Starts timing one operation; see [`OperationTimer`].
    pub fn time(&self, op: Operation) -> OperationTimer<'_> {
        OperationTimer {
            metrics: self,
            op,
            started: Instant::now(),
            failure: Mutex::new(None),
            succeeded: false,
        }
    }

    /// Records one operation that started at `started`: its latency, and its
    /// failure kind when it failed.
    fn finished(&self, op: Operation, started: Instant, failure: Option<FailureKind>) {
        self.latency
            .get_or_create(&OperationLabel { op })
            .observe(started.elapsed().as_secs_f64());
        if let Some(kind) = failure {
            self.failures
                .get_or_create(&FailureLabel { op, kind })
                .inc();
        }
    }

    /// Counts one retry by the store.
    pub fn retried(&self, op: Operation) {
        self.retries.get_or_create(&OperationLabel { op }).inc();
    }

    /// Counts a writer as waiting for a slot until the guard drops.
    pub fn waiting_for_slot(&self) -> WaitingForSlot<'_> {
        self.writes_waiting.inc();
        WaitingForSlot(&self.writes_waiting)
    }

    /// Counts a writer that gave up waiting for a slot.
    pub fn slot_timed_out(&self) {
        self.slot_timeouts.inc();
    }

    /// Counts one attempt to replace the driver session.
    pub fn session_renewal(&self, outcome: RenewalOutcome) {
        self.renewals.get_or_create(&RenewalLabel { outcome }).inc();
    }

    /// Registers these metrics, and a collector of `driver`'s, under
    /// `cassandra_` in `registry`.
    pub fn register(&self, registry: &mut Registry, driver: DriverMetricsSource) {
        self.register_own(registry)
            .register_collector(Box::new(DriverCollector(driver)));
    }

    /// Registers these metrics under `cassandra_`; returns that sub-registry.
    fn register_own<'r>(&self, registry: &'r mut Registry) -> &'r mut Registry {
        let registry = registry.sub_registry_with_prefix("cassandra");
        registry.register(
            "operation_seconds",
            "Cassandra store operations (put, get, list, delete, health), retries included",
            self.latency.clone(),
        );
        registry.register(
            "operation_failures",
            "Cassandra store operations that failed, by operation and kind of failure \
             (timeout, unavailable, overloaded, other)",
            self.failures.clone(),
        );
        registry.register(
            "store_retries",
            "Attempts the Cassandra store made again after a write timeout or a client-side \
             timeout (the driver's own retries are cassandra_driver_retries)",
            self.retries.clone(),
        );
        registry.register(
            "writes_waiting_for_slot",
            "Cassandra writes waiting now for one of --cassandra-max-writes-in-flight slots",
            self.writes_waiting.clone(),
        );
        registry.register(
            "write_slot_timeouts",
            "Cassandra writes that found no free write slot within --cassandra-write-slot-timeout-ms",
            self.slot_timeouts.clone(),
        );
        registry.register(
            "session_renewals",
            "Attempts to replace the driver session after no usable node was connected for \
             --cassandra-renew-session-after-ms, by outcome (renewed, failed); the driver_* \
             metrics restart from 0 with each renewed session",
            self.renewals.clone(),
        );
        registry
    }
}

/// One operation being timed. It counts as succeeded only through
/// [`OperationTimer::succeeded`]; dropped otherwise (an early `?` return, or a
/// caller that gave up), it counts as failed, with the kind last reported by
/// [`OperationTimer::failed`] or `other`.
pub struct OperationTimer<'a> {
    /// Where to count.
    metrics: &'a StoreMetrics,
    /// The operation timed.
    op: Operation,
    /// When it started.
    started: Instant,
    /// The kind of the last failure reported.
    failure: Mutex<Option<FailureKind>>,
    /// Set by `succeeded`.
    succeeded: bool,
}

impl OperationTimer<'_> {
    /// The operation timed.
    pub fn op(&self) -> Operation {
        self.op
    }

    /// Reports the failure the operation is about to return.
    pub fn failed(&self, kind: FailureKind) {
        *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(kind);
    }

    /// Ends the operation as a success.
    pub fn succeeded(mut self) {
        self.succeeded = true;
    }
}

impl Drop for OperationTimer<'_> {
    fn drop(&mut self) {
        let failure = (!self.succeeded).then(|| {
            self.failure
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unwrap_or(FailureKind::Other)
        });
        self.metrics.finished(self.op, self.started, failure);
    }
}

/// A writer waiting for a write slot; stops counting when dropped.
pub struct WaitingForSlot<'a>(&'a Gauge);

impl Drop for WaitingForSlot<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Where the metrics of the driver session in use are found at a scrape: the
/// session may be replaced while the process runs.
pub type DriverMetricsSource = Box<dyn Fn() -> Arc<DriverMetrics> + Send + Sync>;

/// Exports the driver's own metrics, read at each scrape.
struct DriverCollector(DriverMetricsSource);

impl std::fmt::Debug for DriverCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DriverCollector")
    }
}

impl Collector for DriverCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let driver = &(self.0)();
        let counters = [
            (
                "driver_requests",
                "Request attempts the driver sent (each retry and speculative copy counts)",
                driver.get_requests_unpaged_num()
                    + driver.get_requests_manually_paged_num()
                    + driver.get_requests_automatically_paged_num(),
            ),
            (
                "driver_errors",
                "Request attempts that failed, as the driver counts them",
                driver.get_errors_unpaged_num()
                    + driver.get_errors_manually_paged_num()
                    + driver.get_errors_automatically_paged_num(),
            ),
            (
                "driver_retries",
                "Times the driver's retry policy sent a request again",
                driver.get_retries_num(),
            ),
            (
                "driver_request_timeouts",
                "Requests that hit their client-side timeout",
                driver.get_request_timeouts(),
            ),
            (
                "driver_connection_timeouts",
                "Connection attempts to a node that timed out",
                driver.get_connection_timeouts(),
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            let metric = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(metric)?;
        }
        let connections =
            ConstGauge::new(i64::try_from(driver.get_total_connections()).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "driver_connections",
            "Connections the driver holds open to the cluster (control connection excluded)",
            None,
            connections.metric_type(),
        )?;
        connections.encode(metric)?;
        // An empty histogram has no quantiles yet; the series appear with the
        // first request.
        if let Ok(snapshot) = driver.get_snapshot() {
            let mut family = encoder.encode_descriptor(
                "driver_latency_milliseconds",
                "Latency quantiles of the driver's request attempts since start",
                None,
                MetricType::Gauge,
            )?;
            for (quantile, value) in [
                ("0.5", snapshot.median),
                ("0.95", snapshot.percentile_95),
                ("0.99", snapshot.percentile_99),
                ("0.999", snapshot.percentile_99_9),
            ] {
                let labels = [("quantile", quantile)];
                let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
                gauge.encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_failures_render_with_lower_case_labels() {
        let metrics = StoreMetrics::default();
        metrics.time(Operation::Put).succeeded();
        metrics.time(Operation::Get).failed(FailureKind::Overloaded);
        drop(metrics.time(Operation::List));
        metrics.retried(Operation::Delete);
        let waiting = metrics.waiting_for_slot();
        let mut registry = Registry::with_prefix("resume");
        metrics.register_own(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("resume_cassandra_operation_seconds_count{op=\"put\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "resume_cassandra_operation_failures_total{op=\"get\",kind=\"overloaded\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "resume_cassandra_operation_failures_total{op=\"list\",kind=\"other\"} 1"
            ),
            "{text}"
        );
        assert!(
            !text.contains("resume_cassandra_operation_failures_total{op=\"put\""),
            "{text}"
        );
        assert!(
            text.contains("resume_cassandra_store_retries_total{op=\"delete\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("resume_cassandra_writes_waiting_for_slot 1"),
            "{text}"
        );
        drop(waiting);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("resume_cassandra_writes_waiting_for_slot 0"),
            "{text}"
        );
    }
}
