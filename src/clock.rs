//! Write timestamps: microseconds since the Unix epoch, the last-write-wins key
//! of every backend (Cassandra's `USING TIMESTAMP` unit).
//!
//! Code that stamps positions takes a [`WallClock`] rather than reading the
//! system clock itself, so that tests can set the time: tokio's paused time
//! moves timers, not `SystemTime`.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where write timestamps come from.
pub trait WallClock: Send + Sync + 'static {
    /// The current time in µs since the Unix epoch.
    fn now_micros(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl WallClock for SystemClock {
    fn now_micros(&self) -> i64 {
        now_micros()
    }
}

/// The clock as the server holds it.
pub type SharedClock = Arc<dyn WallClock>;

/// A clock that moves only when told to (tests).
#[derive(Debug, Default)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock showing `micros`.
    pub fn at(micros: i64) -> Arc<Self> {
        Arc::new(Self(micros.into()))
    }

    /// Moves the clock by `micros` (backwards when negative).
    pub fn advance(&self, micros: i64) {
        self.0
            .fetch_add(micros, std::sync::atomic::Ordering::SeqCst);
    }
}

impl WallClock for ManualClock {
    fn now_micros(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The current wall-clock time in µs since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 text of a µs timestamp, as the API returns it.
pub fn rfc3339(micros: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_rfc3339() {
        assert_eq!(
            super::rfc3339(1_700_000_000_123_456),
            "2023-11-14T22:13:20.123456Z"
        );
    }
}
