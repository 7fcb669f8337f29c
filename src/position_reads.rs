//! "Where is this viewer in this title?": the one answer every read path gives
//! (the stream lookup, a session's hello, `GET /api/v1/progress/{id}` and
//! continue watching).
//!
//! Two sources know a position: this node's live sessions (received, perhaps
//! not yet written) and the store's winner, which may be a tombstone. The rule
//! is the store's own, last-write-wins by receive time, applied across both: a
//! live position shows only if it was received after the stored winner, so a
//! delete hides every position received before it, live or stored.
//!
//! The watched state is the store's alone (a live session has none to add):
//! every answer carries the stored one, whichever position wins.
//!
//! The registry is read *before* the store. A session leaves the registry only
//! after its final write is durable, so a read that straddles that moment finds
//! the position in the registry (read first) or in the store (read second),
//! never in neither.
//!
//! When the store fails, a live position on this node still answers a single
//! title's read; with nothing live the error stands. Stored winners stamped
//! ahead of this node's clock are counted (`resume_clock_skew_seen`) and logged:
//! they mean some node's clock runs fast, which lets its writes beat newer ones.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::auth::UserId;
use crate::metrics::Metrics;
use crate::session::{LivePosition, SessionRegistry};
use crate::store::{PositionStore, SavedPosition, StoreError, Stored, WatchedState};

/// How far ahead of this node's clock a stored timestamp may be before it
/// counts as skew (clock sync keeps nodes well within this).
pub const SKEW_TOLERANCE_MICROS: i64 = 1_000_000;

/// Least time between two skew warnings in the log (the metric counts each).
const SKEW_LOG_INTERVAL_MICROS: i64 = 60_000_000;

/// When the last skew warning was logged (µs since the epoch), process-wide.
static SKEW_LOGGED_AT: AtomicI64 = AtomicI64::new(i64::MIN);

/// The parts a read needs, borrowed from the application state.
pub struct PositionReads<'a> {
    /// The store's winners.
    pub store: &'a dyn PositionStore,
    /// This node's live sessions.
    pub sessions: &'a SessionRegistry,
    /// Where skew is counted.
    pub metrics: &'a Metrics,
    /// This node's clock now (µs since the epoch), for the skew check.
    pub now_micros: i64,
}

impl PositionReads<'_> {
    /// The viewer's newest position or delete on one title, with its watched
    /// state; `None` when nothing was ever saved. When the store fails and a
    /// live session answers, the watched state is unknown and reads as not
    /// watched.
    pub async fn current(
        &self,
        user: &UserId,
        movie_id: &str,
    ) -> Result<Option<Stored>, StoreError> {
        let live = self.sessions.latest(user, movie_id);
        let stored = match self.store.get(user.as_str(), movie_id).await {
            Ok(stored) => stored,
            Err(error) => {
                let Some(live) = live else { return Err(error) };
                tracing::debug!(%error, "store read failed; answering from a live session");
                return Ok(Some(live_position(movie_id, live, WatchedState::default())));
            }
        };
        if let Some(stored) = &stored {
            self.check_skew(stored);
        }
        Ok(newest(movie_id, live, stored))
    }

    /// The viewer's newest position or delete on every title they have one
    /// on, with its watched state, in no order.
    pub async fn all(&self, user: &UserId) -> Result<Vec<Stored>, StoreError> {
        let live = self.sessions.latest_by_movie(user);
        let mut stored = self.store.list(user.as_str()).await?;
        let mut positions = Vec::with_capacity(stored.len() + live.len());
        for (movie_id, live) in live {
            let index = stored.iter().position(|s| s.movie_id() == &*movie_id);
            let stored = index.map(|i| stored.swap_remove(i));
            if let Some(stored) = &stored {
                self.check_skew(stored);
            }
            positions.extend(newest(&movie_id, Some(live), stored));
        }
        for stored in stored {
            self.check_skew(&stored);
            positions.push(stored);
        }
        Ok(positions)
    }

    fn check_skew(&self, stored: &Stored) {
        let ahead = stored.timestamp_micros().saturating_sub(self.now_micros);
        if ahead <= SKEW_TOLERANCE_MICROS {
            return;
        }
        self.metrics.clock_skew_seen.inc();
        let last = SKEW_LOGGED_AT.load(Ordering::Relaxed);
        if self.now_micros.saturating_sub(last) >= SKEW_LOG_INTERVAL_MICROS
            && SKEW_LOGGED_AT
                .compare_exchange(last, self.now_micros, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                ahead_ms = ahead / 1000,
                "a stored position is stamped ahead of this node's clock: a node's clock is off, \
                 and its writes win over newer ones (see docs/cassandra.md, Clocks)"
            );
        }
    }
}

/// Last-write-wins between a live position and the store's winner: the live
/// one shows only when received after the stored position or tombstone. The
/// watched state is the stored one either way.
pub fn newest(
    movie_id: &str,
    live: Option<LivePosition>,
    stored: Option<Stored>,
) -> Option<Stored> {
    match (live, stored) {
        (Some(live), stored)
            if stored
                .as_ref()
                .is_none_or(|s| live.received_at_micros > s.timestamp_micros()) =>
        {
            let watched = stored.map_or_else(WatchedState::default, |s| s.watched());
            Some(live_position(movie_id, live, watched))
        }
        (_, stored) => stored,
    }
}

fn live_position(movie_id: &str, live: LivePosition, watched: WatchedState) -> Stored {
    Stored::Position(SavedPosition {
        movie_id: movie_id.to_owned(),
        position_ms: live.position_ms,
        updated_at_micros: live.received_at_micros,
        watched,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live(position_ms: u64, at: i64) -> Option<LivePosition> {
        Some(LivePosition {
            position_ms,
            received_at_micros: at,
        })
    }

    const WATCHED: WatchedState = WatchedState {
        watched: true,
        last_completed_at_micros: Some(3),
    };

    fn saved(position_ms: u64, at: i64) -> Option<Stored> {
        Some(Stored::Position(SavedPosition {
            movie_id: "m".into(),
            position_ms,
            updated_at_micros: at,
            watched: WATCHED,
        }))
    }

    fn deleted(at: i64) -> Option<Stored> {
        Some(Stored::Deleted {
            movie_id: "m".into(),
            deleted_at_micros: at,
            watched: WATCHED,
        })
    }

    #[test]
    fn last_received_wins_between_live_and_stored() {
        // (live, stored, expected position)
        let table = [
            (None, None, None),
            (live(5, 10), None, Some(5)),
            (None, saved(7, 10), Some(7)),
            (live(5, 11), saved(7, 10), Some(5)),
            (live(5, 9), saved(7, 10), Some(7)),
            (live(5, 10), saved(5, 10), Some(5)),
            // A delete hides what was received before it and at its instant…
            (live(5, 9), deleted(10), None),
            (live(5, 10), deleted(10), None),
            (None, deleted(10), None),
            // …and a position received after it brings the title back.
            (live(5, 11), deleted(10), Some(5)),
        ];
        for (i, (live, stored, expected)) in table.into_iter().enumerate() {
            let got = newest("m", live, stored.clone());
            let position = got.clone().and_then(Stored::into_position);
            assert_eq!(position.map(|p| p.position_ms), expected, "row {i}");
            // The stored watched state comes along, whichever position wins.
            let watched = got.map(|g| g.watched()).unwrap_or_default();
            let stored_watched = stored.map(|s| s.watched()).unwrap_or_default();
            assert_eq!(watched, stored_watched, "row {i}");
        }
    }
}
