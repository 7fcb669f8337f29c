//! When the store gives up on its driver session and opens a fresh one: the
//! safety net for a connection pool that stopped reconnecting by itself.
//!
//! The driver reconnects to nodes on its own, with its own backoff, and that
//! recovers from a node that refuses connections, restarts or fails requests.
//! One outage it does not recover from: a node that accepts TCP but leaves the
//! requests that set a new connection up unanswered (a node stalled under
//! load, a proxy that lost its upstream). scylla 1.9 puts no time limit on a
//! connection's setup, so a pool refill waits on that connection forever and
//! schedules no other; when the node answers again, the pool stays empty and
//! every request fails (compare scylladb/scylla-rust-driver#1686). A fresh
//! session opens fresh connections, bounded by the connect timeout.
//!
//! The rule ([`RenewalRule`]): once no usable node (see [`super::readiness`])
//! has been connected for `--cassandra-renew-session-after-ms` (30 s), renew;
//! after an attempt, successful or not, wait as long again before the next.
//! The default is well above the driver's own reconnect backoff, so the store
//! steps in only where the driver did not. It is fed by every health check
//! (the readiness probe, once a second by default); the store does the
//! renewing in the background and swaps the new session in for the requests
//! that start after it; requests in flight finish on the old one.

use std::time::{Duration, Instant};

/// Decides from a series of "is a usable node connected?" observations when to
/// replace the driver session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RenewalRule {
    /// How long the store may go without a connected node before it renews.
    after: Duration,
    /// Since when no usable node has been connected (or since the last renewal
    /// attempt, if that is later); `None` while one is.
    waiting_since: Option<Instant>,
}

impl RenewalRule {
    /// A rule that renews after `after` without a connected node.
    pub fn new(after: Duration) -> Self {
        Self {
            after,
            waiting_since: None,
        }
    }

    /// Takes one observation made at `now`; returns whether to renew the
    /// session now.
    pub fn observe(&mut self, connected: bool, now: Instant) -> bool {
        if connected {
            self.waiting_since = None;
            return false;
        }
        let since = *self.waiting_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= self.after {
            // The next attempt waits a whole period again.
            self.waiting_since = Some(now);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renews_after_a_whole_period_without_a_connected_node_and_then_once_per_period() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut rule = RenewalRule::new(Duration::from_secs(30));
        // (seconds, connected, renew?)
        let steps = [
            (0, true, false),
            (10, false, false), // disconnected from here
            (39, false, false),
            (40, false, true), // 30 s without a node
            (41, false, false),
            (69, false, false),
            (70, false, true), // another whole period since the attempt
            (75, true, false), // a node is back: forgotten
            (80, false, false),
            (109, false, false),
            (110, false, true),
        ];
        for (seconds, connected, renew) in steps {
            assert_eq!(
                rule.observe(connected, at(seconds)),
                renew,
                "at {seconds} s, connected {connected}"
            );
        }
    }

    #[test]
    fn a_brief_disconnection_is_left_to_the_driver() {
        let start = Instant::now();
        let mut rule = RenewalRule::new(Duration::from_secs(30));
        for seconds in 0..100 {
            // Every fourth observation finds a node again.
            let connected = seconds % 4 == 0;
            assert!(
                !rule.observe(connected, start + Duration::from_secs(seconds)),
                "at {seconds} s"
            );
        }
    }
}
