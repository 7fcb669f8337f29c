//! Whether this instance should be sent new viewers: the answer of `GET
//! /readyz`, kept by a background probe of the store with hysteresis.
//!
//! What an orchestrator does with it: Kubernetes (like most load balancers)
//! takes a pod whose readiness probe fails out of its Service's endpoints — no
//! new connections reach it, open ones (live WebSocket sessions) are left
//! alone, and nothing is restarted — and puts it back once the probe passes.
//! Liveness belongs to `/healthz`: restarting pods because the database is
//! away would drop every session's unsaved position and fix nothing.
//!
//! Hence the shape:
//! * **Probed in the background**, every `--readiness-probe-interval-ms`, not
//!   per request: `/readyz` answers from memory at once, however many probers
//!   ask, and one slow health query cannot time out the orchestrator's probe.
//!   A probe that takes longer than one interval failed.
//! * **Not ready after `--readiness-failure-threshold` consecutive failed
//!   probes** (default 3), **ready again after one passing probe**. A blip of
//!   the cluster (one lost probe) hits every instance at once; flipping on it
//!   would empty the whole Service for nothing. A real outage still shows
//!   within threshold × interval, and recovery at the next probe. Configure
//!   the orchestrator's own `failureThreshold` to 1 (the debouncing is done
//!   here) and its period at or below the probe interval.
//! * **Starts ready**: the store was just opened, which proved it answers.
//!
//! The rule itself ([`Hysteresis`]) is a pure state machine; the probe loop
//! ([`spawn_prober`]) only feeds it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::store::SharedStore;

/// How readiness is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadinessSettings {
    /// Time between the starts of two probes, and the most one probe may take.
    pub interval: Duration,
    /// Consecutive failed probes that make the instance not ready (at least 1).
    pub failure_threshold: u32,
}

impl ReadinessSettings {
    /// The readiness knobs of `config` (clap checked their ranges).
    pub fn from_config(config: &Config) -> Self {
        Self {
            interval: Duration::from_millis(config.readiness_probe_interval_ms),
            failure_threshold: config.readiness_failure_threshold.max(1),
        }
    }
}

/// The readiness rule: not ready after `threshold` consecutive failures,
/// ready after one success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hysteresis {
    /// The current answer.
    ready: bool,
    /// Failed probes since the last passing one.
    consecutive_failures: u32,
    /// Consecutive failures that make it not ready.
    threshold: u32,
}

impl Hysteresis {
    /// Ready, with no failure counted yet.
    pub fn new(threshold: u32) -> Self {
        Self {
            ready: true,
            consecutive_failures: 0,
            threshold: threshold.max(1),
        }
    }

    /// Takes one probe's result; returns whether the instance is ready now.
    pub fn observe(&mut self, probe_passed: bool) -> bool {
        if probe_passed {
            self.consecutive_failures = 0;
            self.ready = true;
        } else {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            if self.consecutive_failures >= self.threshold {
                self.ready = false;
            }
        }
        self.ready
    }

    /// Whether the instance is ready.
    pub fn is_ready(&self) -> bool {
        self.ready
    }
}

/// The readiness `/readyz` reports; set by the prober, cheap to clone.
#[derive(Debug, Clone)]
pub struct Readiness(Arc<AtomicBool>);

impl Default for Readiness {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Readiness {
    /// Whether the instance should get new traffic.
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Relaxed);
    }
}

/// Probes `store` every interval until `shutdown`, feeding [`Hysteresis`] and
/// publishing the answer to `readiness` and to the metrics (`resume_ready`,
/// `resume_readiness_probes_total`).
pub fn spawn_prober(
    store: SharedStore,
    readiness: Readiness,
    metrics: Arc<Metrics>,
    settings: ReadinessSettings,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut rule = Hysteresis::new(settings.failure_threshold);
        readiness.set(rule.is_ready());
        metrics.ready.set(i64::from(rule.is_ready()));
        let mut ticks = tokio::time::interval(settings.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let passed = match tokio::time::timeout(settings.interval, store.check_health()).await {
                Ok(Ok(())) => true,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "readiness probe failed");
                    false
                }
                Err(_) => {
                    tracing::debug!(interval = ?settings.interval, "readiness probe took longer than its interval");
                    false
                }
            };
            let was_ready = rule.is_ready();
            let ready = rule.observe(passed);
            // The answer first, then the count: a scrape that sees the probe
            // counted sees its effect on readiness too.
            readiness.set(ready);
            metrics.ready.set(i64::from(ready));
            metrics.readiness_probe(passed);
            match (was_ready, ready) {
                (true, false) => tracing::warn!(
                    failures = settings.failure_threshold,
                    "store failed consecutive readiness probes: not ready"
                ),
                (false, true) => tracing::info!("store answers again: ready"),
                _ => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_ready_after_the_threshold_of_failures_and_ready_after_one_success() {
        // (probe passed, ready afterwards), threshold 3.
        let steps = [
            (false, true),
            (true, true), // a blip: one failure is forgotten
            (false, true),
            (false, true),
            (false, false), // the third in a row
            (false, false),
            (true, true), // one success is enough
            (false, true),
        ];
        let mut rule = Hysteresis::new(3);
        assert!(rule.is_ready(), "starts ready");
        for (i, (passed, ready)) in steps.into_iter().enumerate() {
            assert_eq!(rule.observe(passed), ready, "step {i}");
            assert_eq!(rule.is_ready(), ready, "step {i}");
        }
    }

    #[test]
    fn a_threshold_of_one_follows_every_probe() {
        let mut rule = Hysteresis::new(0);
        assert!(!rule.observe(false), "0 is taken as 1");
        assert!(rule.observe(true));
    }
}
