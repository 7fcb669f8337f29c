//! Flood control for one session: a token bucket for messages and a second
//! bucket that measures how long a client keeps exceeding it.
//!
//! A player ticks about once a second; the allowed rate (default 10/s) leaves
//! room for seeks and pauses. A message beyond the rate is dropped with an error;
//! a client that keeps flooding exhausts its strike budget and is closed (1008).
//! Time is passed in, so the policy is tested without sleeping.

use tokio::time::Instant;

/// Seconds of burst the message bucket holds.
const BURST_SECONDS: f32 = 2.0;

/// Seconds of dropped messages (at the allowed rate) tolerated before closing.
const STRIKE_SECONDS: f32 = 5.0;

/// The verdict on one incoming message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodVerdict {
    /// Within the rate.
    Allow,
    /// Over the rate: drop it and tell the client.
    Drop,
    /// Flooding for too long: close the session with 1008.
    Close,
}

/// Per-session flood state: two token buckets refilled continuously at the
/// allowed rate, kept small (one of these lives in every session).
#[derive(Debug, Clone)]
pub struct FloodGuard {
    /// Allowed messages per second; both buckets refill at this rate.
    rate: f32,
    /// Messages that may pass now (at most `rate × BURST_SECONDS`).
    messages: f32,
    /// Dropped messages tolerated from now on (at most `rate × STRIKE_SECONDS`).
    strikes: f32,
    /// When both buckets were last refilled.
    refilled_at: Instant,
}

impl FloodGuard {
    /// A guard allowing `rate` messages per second.
    pub fn new(rate: f64, now: Instant) -> Self {
        let rate = rate as f32;
        Self {
            rate,
            messages: capacity(rate, BURST_SECONDS),
            strikes: capacity(rate, STRIKE_SECONDS),
            refilled_at: now,
        }
    }

    /// Judges one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> FloodVerdict {
        let refill = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f32()
            * self.rate;
        self.refilled_at = now;
        self.messages = (self.messages + refill).min(capacity(self.rate, BURST_SECONDS));
        self.strikes = (self.strikes + refill).min(capacity(self.rate, STRIKE_SECONDS));
        if take(&mut self.messages) {
            FloodVerdict::Allow
        } else if take(&mut self.strikes) {
            FloodVerdict::Drop
        } else {
            FloodVerdict::Close
        }
    }
}

/// Most tokens a bucket holds: `seconds` at `rate`, at least one.
fn capacity(rate: f32, seconds: f32) -> f32 {
    (rate * seconds).max(1.0)
}

/// Takes one token if there is one.
fn take(tokens: &mut f32) -> bool {
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn steady_ticks_at_the_rate_pass() {
        let mut guard = FloodGuard::new(10.0, Instant::now());
        for _ in 0..1_000 {
            tokio::time::advance(Duration::from_millis(100)).await;
            assert_eq!(guard.check(Instant::now()), FloodVerdict::Allow);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_dropped_then_a_sustained_flood_closes() {
        let mut guard = FloodGuard::new(10.0, Instant::now());
        let verdicts: Vec<_> = (0..200).map(|_| guard.check(Instant::now())).collect();
        let allowed = verdicts
            .iter()
            .filter(|v| **v == FloodVerdict::Allow)
            .count();
        let dropped = verdicts
            .iter()
            .filter(|v| **v == FloodVerdict::Drop)
            .count();
        assert_eq!(allowed, 20, "two seconds of burst");
        assert_eq!(dropped, 50, "five seconds of strikes");
        assert_eq!(verdicts.last(), Some(&FloodVerdict::Close));
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_burst_recovers() {
        let mut guard = FloodGuard::new(10.0, Instant::now());
        for _ in 0..40 {
            guard.check(Instant::now());
        }
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(guard.check(Instant::now()), FloodVerdict::Allow);
    }
}
