//! The position rules of one session, as a pure state machine: which position
//! the session holds, which one readers may see, when it is written, what a
//! failed or superseded write does, and the final write.
//!
//! No socket, store or clock lives here: the actor passes in each event with the
//! monotonic time (`now`, for timers) and the wall time (`wall_micros`, the
//! write timestamp), so every rule is tested in a table without I/O.
//!
//! The rules (docs/protocol.md tells clients the same):
//! * **Latest tick wins within a session.** Every well-formed tick becomes the
//!   session's latest position, whatever the rate; ticks between two writes are
//!   coalesced into one write.
//! * **Stamped at receipt.** A position's write timestamp is the wall time its
//!   tick arrived, strictly increasing within the session.
//! * **Behind the resume point is provisional.** A position behind the resume
//!   point the hello offered is kept but neither written nor shown to readers
//!   until playback has run on from it for `confirm_after` of wall time (and at
//!   least half that much of the title), or the player reports `ended`. After
//!   that the session plays like any other. A player that ticks 0:00 before its
//!   resume seek lands, or a device that comes back and resends where it paused
//!   long ago, therefore cannot overwrite newer progress.
//! * **Writes.** The first visible change after a settled write is written one
//!   flush interval later, `ended` and the end of the session write at once;
//!   one write at a time; a failure retries with backoff, always with the latest
//!   visible position and its own timestamp; a write the store reports
//!   superseded by a newer one is settled, not retried.

use std::time::Duration;

use tokio::time::Instant;

use super::protocol::PlaybackState;
use super::registry::LivePosition;
use crate::metrics::FlushReason;

/// First retry delay after a failed write.
pub const RETRY_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay.
pub const RETRY_MAX: Duration = Duration::from_secs(8);

/// A duration as whole milliseconds, saturating at `u32::MAX` (49 days).
fn millis_u32(duration: Duration) -> u32 {
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}

/// The duration [`millis_u32`] kept.
fn from_millis_u32(millis: u32) -> Duration {
    Duration::from_millis(u64::from(millis))
}

/// The timings the rules use.
#[derive(Debug, Clone, Copy)]
pub struct BookSettings {
    /// Delay between a visible change and its write.
    pub flush_interval: Duration,
    /// How long playback must run on from a provisional position (zero: no
    /// provisional positions).
    pub confirm_after: Duration,
}

/// When the next write happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushState {
    /// Nothing to write.
    Idle,
    /// A write starts at `at`.
    Due {
        /// When.
        at: Instant,
        /// Why (a metric label).
        reason: FlushReason,
    },
    /// One write is in flight.
    Writing {
        /// The position being written.
        position: LivePosition,
    },
    /// The last write failed; the next attempt starts at `at`.
    Backoff {
        /// When.
        at: Instant,
    },
}

/// What the store said of a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteResult {
    /// Durable and the winner.
    Applied,
    /// Durable, but a newer write or delete holds the title.
    Superseded,
    /// Not durable.
    Failed,
}

/// A write the store settled, for the acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settled {
    /// The position written.
    pub position: LivePosition,
    /// Whether it is the stored winner.
    pub won: bool,
}

/// A run of ticks behind the resume point, not yet confirmed.
#[derive(Debug, Clone, Copy)]
struct ProvisionalRun {
    /// Where the run started (or last stepped back to).
    anchor_ms: u64,
    /// When it started.
    since: Instant,
}

/// The position bookkeeping of one session.
#[derive(Debug)]
pub struct PositionBook {
    /// Delay between a visible change and its write, in ms (the settings'
    /// durations are kept as 32-bit milliseconds: every session holds a book).
    flush_interval_ms: u32,
    /// How long playback must run on from a provisional position, in ms.
    confirm_after_ms: u32,
    /// Positions below this are provisional; `None` once confirmed (or when the
    /// hello offered 0).
    resume_guard_ms: Option<u64>,
    /// The provisional run in progress.
    run: Option<ProvisionalRun>,
    /// Latest position received, provisional or not.
    latest_ms: Option<u64>,
    /// Latest confirmed position: what readers see and what is written.
    visible: Option<LivePosition>,
    /// Timestamp of the newest write the store settled (applied or superseded).
    settled_at: Option<i64>,
    /// When the next write happens.
    flush: FlushState,
    /// Write at once after the write in flight (`ended`, or the session ending).
    hurry: Option<FlushReason>,
    /// Next retry delay, in ms.
    backoff_ms: u32,
}

impl PositionBook {
    /// The book of a session whose hello offered `resume_point_ms`.
    pub fn new(settings: BookSettings, resume_point_ms: u64) -> Self {
        // Judged on the kept milliseconds, so a sub-millisecond confirmation
        // time means none, as the rule that uses it would read it.
        let confirm_after_ms = millis_u32(settings.confirm_after);
        let guarded = resume_point_ms > 0 && confirm_after_ms > 0;
        Self {
            flush_interval_ms: millis_u32(settings.flush_interval),
            confirm_after_ms,
            resume_guard_ms: guarded.then_some(resume_point_ms),
            run: None,
            latest_ms: None,
            visible: None,
            settled_at: None,
            flush: FlushState::Idle,
            hurry: None,
            backoff_ms: millis_u32(RETRY_MIN),
        }
    }

    /// Records a tick received at `now` / `wall_micros`; returns the new visible
    /// position when it changed (the registry shows it to readers).
    pub fn tick(
        &mut self,
        position_ms: u64,
        state: Option<PlaybackState>,
        now: Instant,
        wall_micros: i64,
    ) -> Option<LivePosition> {
        let ended = state == Some(PlaybackState::Ended);
        let previous_ms = self.latest_ms.replace(position_ms);
        if self.is_provisional(position_ms, previous_ms, ended, now) {
            return None;
        }
        let changed = self.visible.is_none_or(|v| v.position_ms != position_ms);
        let shown = changed.then(|| {
            let after = self.visible.map_or(i64::MIN, |v| v.received_at_micros);
            let position = LivePosition {
                position_ms,
                // Strictly increasing within a session, even if the wall clock steps back.
                received_at_micros: wall_micros.max(after.saturating_add(1)),
            };
            self.visible = Some(position);
            if self.flush == FlushState::Idle {
                self.flush = FlushState::Due {
                    at: now + from_millis_u32(self.flush_interval_ms),
                    reason: FlushReason::Interval,
                };
            }
            position
        });
        if ended {
            self.write_soon(FlushReason::Ended, now);
        }
        shown
    }

    /// Whether a tick is provisional; confirms the run when it has played long enough.
    fn is_provisional(
        &mut self,
        position_ms: u64,
        previous_ms: Option<u64>,
        ended: bool,
        now: Instant,
    ) -> bool {
        let Some(guard) = self.resume_guard_ms else {
            return false;
        };
        if ended {
            self.resume_guard_ms = None;
            self.run = None;
            return false;
        }
        if position_ms >= guard {
            self.run = None;
            return false;
        }
        let stepped_back = previous_ms.is_none_or(|p| position_ms < p);
        match self.run {
            Some(run) if !stepped_back && position_ms >= run.anchor_ms => {
                let wall = now.saturating_duration_since(run.since);
                let played = Duration::from_millis(position_ms - run.anchor_ms);
                let confirm = from_millis_u32(self.confirm_after_ms);
                if wall >= confirm && played >= confirm / 2 {
                    self.resume_guard_ms = None;
                    self.run = None;
                    return false;
                }
                true
            }
            _ => {
                self.run = Some(ProvisionalRun {
                    anchor_ms: position_ms,
                    since: now,
                });
                true
            }
        }
    }

    /// The session is ending: write what is left at once, retries keeping their backoff.
    pub fn close(&mut self, reason: FlushReason, now: Instant) {
        self.write_soon(reason, now);
    }

    fn write_soon(&mut self, reason: FlushReason, now: Instant) {
        if !self.is_dirty() {
            return;
        }
        match self.flush {
            FlushState::Idle | FlushState::Due { .. } => {
                self.flush = FlushState::Due { at: now, reason }
            }
            FlushState::Writing { .. } => self.hurry = Some(reason),
            FlushState::Backoff { .. } => {}
        }
    }

    /// When the actor must call [`Self::start_write`] next, if ever.
    pub fn next_write_at(&self) -> Option<Instant> {
        match self.flush {
            FlushState::Due { at, .. } | FlushState::Backoff { at } => Some(at),
            FlushState::Idle | FlushState::Writing { .. } => None,
        }
    }

    /// The write to start now, if one is due: the latest visible position.
    pub fn start_write(&mut self, now: Instant) -> Option<(LivePosition, FlushReason)> {
        let reason = match self.flush {
            FlushState::Due { at, reason } if at <= now => reason,
            FlushState::Backoff { at } if at <= now => FlushReason::Retry,
            _ => return None,
        };
        let Some(position) = self.visible.filter(|_| self.is_dirty()) else {
            self.flush = FlushState::Idle;
            return None;
        };
        self.flush = FlushState::Writing { position };
        Some((position, reason))
    }

    /// Books the result of the write in flight; returns it when the store settled it.
    pub fn write_finished(&mut self, result: WriteResult, now: Instant) -> Option<Settled> {
        let FlushState::Writing { position } = self.flush else {
            return None;
        };
        if result == WriteResult::Failed {
            self.flush = FlushState::Backoff {
                at: now + from_millis_u32(self.backoff_ms),
            };
            self.backoff_ms = self.backoff_ms.saturating_mul(2).min(millis_u32(RETRY_MAX));
            return None;
        }
        self.backoff_ms = millis_u32(RETRY_MIN);
        self.settled_at = Some(self.settled_at.map_or(position.received_at_micros, |at| {
            at.max(position.received_at_micros)
        }));
        self.flush = match (self.is_dirty(), self.hurry.take()) {
            (false, _) => FlushState::Idle,
            (true, Some(reason)) => FlushState::Due { at: now, reason },
            (true, None) => FlushState::Due {
                at: now + from_millis_u32(self.flush_interval_ms),
                reason: FlushReason::Interval,
            },
        };
        Some(Settled {
            position,
            won: result == WriteResult::Applied,
        })
    }

    /// Whether the visible position is newer than every settled write.
    pub fn is_dirty(&self) -> bool {
        self.visible
            .is_some_and(|v| self.settled_at.is_none_or(|at| v.received_at_micros > at))
    }

    /// Whether nothing is left to write and nothing is in flight.
    pub fn is_settled(&self) -> bool {
        !self.is_dirty() && !matches!(self.flush, FlushState::Writing { .. })
    }

    /// The position readers see, if any.
    pub fn visible(&self) -> Option<LivePosition> {
        self.visible
    }

    /// When the next write happens.
    pub fn flush_state(&self) -> FlushState {
        self.flush
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLUSH: Duration = Duration::from_secs(4);
    const CONFIRM: Duration = Duration::from_secs(10);
    const T0: i64 = 1_700_000_000_000_000;

    /// A book and a clock the test moves.
    struct Bench {
        book: PositionBook,
        start: Instant,
        elapsed: Duration,
    }

    impl Bench {
        fn new(resume_point_ms: u64) -> Self {
            let settings = BookSettings {
                flush_interval: FLUSH,
                confirm_after: CONFIRM,
            };
            Self {
                book: PositionBook::new(settings, resume_point_ms),
                start: Instant::now(),
                elapsed: Duration::ZERO,
            }
        }

        fn now(&self) -> Instant {
            self.start + self.elapsed
        }

        fn wall(&self) -> i64 {
            T0 + self.elapsed.as_micros() as i64
        }

        fn at(&mut self, ms: u64) -> &mut Self {
            self.elapsed = Duration::from_millis(ms);
            self
        }

        fn tick(&mut self, position_ms: u64) -> Option<u64> {
            let (now, wall) = (self.now(), self.wall());
            self.book
                .tick(position_ms, None, now, wall)
                .map(|p| p.position_ms)
        }

        fn ended(&mut self, position_ms: u64) -> Option<u64> {
            let (now, wall) = (self.now(), self.wall());
            self.book
                .tick(position_ms, Some(PlaybackState::Ended), now, wall)
                .map(|p| p.position_ms)
        }

        /// Starts the write due now, if any, and finishes it with `result`.
        fn write(&mut self, result: WriteResult) -> Option<(u64, FlushReason)> {
            let now = self.now();
            let (position, reason) = self.book.start_write(now)?;
            self.book.write_finished(result, now);
            Some((position.position_ms, reason))
        }

        fn visible_ms(&self) -> Option<u64> {
            self.book.visible().map(|p| p.position_ms)
        }
    }

    #[test]
    fn writes_one_interval_after_a_change_and_coalesces_ticks() {
        let mut b = Bench::new(0);
        assert_eq!(b.tick(1_000), Some(1_000));
        for (ms, position) in [(100, 2_000), (150, 3_000), (200, 40_000)] {
            b.at(ms).tick(position);
        }
        assert_eq!(b.at(3_999).write(WriteResult::Applied), None);
        assert_eq!(
            b.at(4_000).write(WriteResult::Applied),
            Some((40_000, FlushReason::Interval))
        );
        // Unchanged (paused): nothing is due.
        b.at(5_000).tick(40_000);
        assert_eq!(b.book.next_write_at(), None);
        assert!(b.book.is_settled());
    }

    #[test]
    fn timestamps_are_receive_times_strictly_increasing() {
        let mut b = Bench::new(0);
        b.at(10).tick(1_000);
        let first = b.book.visible().unwrap().received_at_micros;
        assert_eq!(first, T0 + 10_000);
        // The wall clock steps back: the stamp still increases.
        let (now, wall) = (b.now(), b.wall() - 5_000_000);
        let second = b.book.tick(2_000, None, now, wall).unwrap();
        assert_eq!(second.received_at_micros, first + 1);
    }

    #[test]
    fn failures_back_off_and_retry_the_latest_position() {
        let mut b = Bench::new(0);
        b.tick(1_000);
        assert_eq!(
            b.at(4_000).write(WriteResult::Failed),
            Some((1_000, FlushReason::Interval))
        );
        assert_eq!(
            b.book.next_write_at(),
            Some(b.now() + RETRY_MIN),
            "first retry after the minimum delay"
        );
        b.at(4_100).tick(2_000);
        assert_eq!(
            b.at(4_250).write(WriteResult::Failed),
            Some((2_000, FlushReason::Retry))
        );
        assert_eq!(b.book.next_write_at(), Some(b.now() + RETRY_MIN * 2));
        assert_eq!(
            b.at(4_750).write(WriteResult::Applied),
            Some((2_000, FlushReason::Retry))
        );
        assert!(b.book.is_settled());
    }

    #[test]
    fn a_superseded_write_is_settled_not_retried() {
        let mut b = Bench::new(0);
        b.tick(1_000);
        let now = b.at(4_000).now();
        b.book.start_write(now).unwrap();
        let settled = b.book.write_finished(WriteResult::Superseded, now).unwrap();
        assert!(!settled.won);
        assert!(b.book.is_settled());
        assert_eq!(b.book.next_write_at(), None);
    }

    #[test]
    fn ended_and_close_write_at_once_even_during_a_write() {
        let mut b = Bench::new(0);
        b.tick(1_000);
        assert_eq!(b.at(1).ended(1_000), None, "same position, no new visible");
        assert_eq!(
            b.write(WriteResult::Applied),
            Some((1_000, FlushReason::Ended))
        );
        b.at(2).tick(2_000);
        let now = b.at(4_002).now();
        b.book.start_write(now).unwrap();
        b.at(4_003).tick(3_000);
        b.book.close(FlushReason::Close, b.now());
        b.book.write_finished(WriteResult::Applied, b.now());
        assert_eq!(
            b.write(WriteResult::Applied),
            Some((3_000, FlushReason::Close)),
            "the position received during the write goes at once"
        );
        assert!(b.book.is_settled());
    }

    #[test]
    fn positions_behind_the_resume_point_are_provisional_until_played_on() {
        /// Ticks as (ms after the start, position in ms).
        type Ticks = &'static [(u64, u64)];
        // (resume point, ticks, expected visible, case)
        let cases: [(u64, Ticks, Option<u64>, &str); 8] = [
            (
                2_843_000,
                &[(0, 0)],
                None,
                "a player ticking 0 before its seek lands",
            ),
            (
                3_600_000,
                &[(0, 600_000), (1_000, 600_000), (20_000, 600_000)],
                None,
                "a device resending where it paused",
            ),
            (
                2_843_000,
                &[(0, 0), (5_000, 5_000), (9_999, 9_999)],
                None,
                "not yet ten seconds",
            ),
            (
                2_843_000,
                &[(0, 0), (5_000, 5_000), (10_000, 10_000)],
                Some(10_000),
                "starting over and playing ten seconds",
            ),
            (
                2_843_000,
                &[(0, 0), (10_000, 1_000)],
                None,
                "ten seconds of wall time but a paused player",
            ),
            (
                2_843_000,
                &[(0, 0), (9_000, 9_000), (9_500, 100), (12_000, 2_600)],
                None,
                "a step back restarts the run",
            ),
            (
                2_843_000,
                &[(0, 0), (500, 2_843_000)],
                Some(2_843_000),
                "the seek lands: at the resume point is not provisional",
            ),
            (
                0,
                &[(0, 100)],
                Some(100),
                "nothing to resume: nothing is provisional",
            ),
        ];
        for (resume_point, ticks, expected, case) in cases {
            let mut b = Bench::new(resume_point);
            for &(at, position) in ticks {
                b.at(at).tick(position);
            }
            assert_eq!(b.visible_ms(), expected, "{case}");
            b.book.close(FlushReason::Close, b.now());
            let written = b.write(WriteResult::Applied).map(|(p, _)| p);
            assert_eq!(written, expected, "{case}: the final write");
        }
    }

    #[test]
    fn once_confirmed_the_session_plays_like_any_other() {
        let mut b = Bench::new(2_843_000);
        b.tick(0);
        b.at(10_000).tick(10_000);
        assert_eq!(b.visible_ms(), Some(10_000));
        // A later rewind is an ordinary position now.
        assert_eq!(b.at(11_000).tick(2_000), Some(2_000));
    }

    #[test]
    fn ended_confirms_a_provisional_position() {
        let mut b = Bench::new(2_843_000);
        b.tick(0);
        assert_eq!(b.at(1_000).ended(500), Some(500));
        assert_eq!(
            b.write(WriteResult::Applied),
            Some((500, FlushReason::Ended))
        );
    }

    #[test]
    fn zero_confirmation_disables_provisional_positions() {
        let settings = BookSettings {
            flush_interval: FLUSH,
            confirm_after: Duration::ZERO,
        };
        let mut book = PositionBook::new(settings, 2_843_000);
        assert!(book.tick(0, None, Instant::now(), T0).is_some());
    }
}
