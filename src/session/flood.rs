//! Flood control for one session: a token bucket for messages and a second
//! bucket that measures how long a client keeps exceeding it.
//!
//! A player ticks about once a second; the allowed rate (default 10/s) leaves
//! room for seeks and pauses. A message beyond the rate is dropped with an error;
//! a client that keeps flooding exhausts its strike budget and is closed (1008).
//! Time is passed in, so the policy is tested without sleeping.

use tokio::time::Instant;

/// Seconds of burst the message bucket holds.
const BURST_SECONDS: f64 = 2.0;

/// Seconds of dropped messages (at the allowed rate) tolerated before closing.
const STRIKE_SECONDS: f64 = 5.0;

/// A token bucket refilled continuously.
#[derive(Debug, Clone)]
struct TokenBucket {
    /// Tokens available now.
    tokens: f64,
    /// Most tokens held.
    capacity: f64,
    /// Tokens added per second.
    rate: f64,
    /// Last refill.
    refilled_at: Instant,
}

impl TokenBucket {
    fn full(rate: f64, capacity: f64, now: Instant) -> Self {
        Self {
            tokens: capacity,
            capacity,
            rate,
            refilled_at: now,
        }
    }

    fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

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

/// Per-session flood state.
#[derive(Debug, Clone)]
pub struct FloodGuard {
    /// Allowed messages.
    messages: TokenBucket,
    /// Budget of dropped messages; refills at the allowed rate.
    strikes: TokenBucket,
}

impl FloodGuard {
    /// A guard allowing `rate` messages per second.
    pub fn new(rate: f64, now: Instant) -> Self {
        Self {
            messages: TokenBucket::full(rate, (rate * BURST_SECONDS).max(1.0), now),
            strikes: TokenBucket::full(rate, (rate * STRIKE_SECONDS).max(1.0), now),
        }
    }

    /// Judges one message arriving at `now`.
    pub fn check(&mut self, now: Instant) -> FloodVerdict {
        if self.messages.try_take(now) {
            FloodVerdict::Allow
        } else if self.strikes.try_take(now) {
            FloodVerdict::Drop
        } else {
            FloodVerdict::Close
        }
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
