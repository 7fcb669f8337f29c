//! Where positions live: the `PositionStore` trait and its backends.
//!
//! Every backend gives the same semantics, which the shared test suite in
//! `tests/it/store_suite.rs` checks against each of them:
//!
//! * **Last write wins by write timestamp.** Each write carries the time (µs since
//!   the Unix epoch) at which the server *received* the position. A write whose
//!   timestamp is older than the stored one never replaces it, whatever order the
//!   writes arrive in, so retries and late flushes can never move a position back.
//! * **Deletes are tombstones with a timestamp.** A delete hides every older write
//!   and loses to every newer one, and reads report it ([`Stored::Deleted`]) with
//!   its timestamp, so that a reader holding a newer-or-older live position can
//!   tell which one wins.
//! * **A write returns only once it is durable** in the backend's own sense, and
//!   says whether it is the stored winner ([`PutOutcome`]): a session acknowledges
//!   only positions that won.
//! * **The watched state lives beside the position, with its own timestamp**
//!   ([`WatchedState`]). Only a write that says so ([`WatchedChange`]) touches
//!   it, so rewatching from the start (ordinary writes) or a delete leaves a
//!   title watched. `watched` is last-write-wins by the timestamp of the
//!   writes that set it (on a tie, `true` wins, as Cassandra's larger value);
//!   `last_completed_at` is the newest completing write's timestamp, which no
//!   other write lowers.
//!
//! This module owns the data model only; the completion policy lives in
//! `crate::resume`, and no backend knows about HTTP or sessions.

pub mod cassandra;
pub mod embedded;

use std::sync::Arc;

use async_trait::async_trait;

/// What a position write does to the title's watched state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WatchedChange {
    /// Leaves it alone: an ordinary position.
    #[default]
    Unchanged,
    /// The write completes the title: watched, and completed at the write's
    /// timestamp (see `crate::resume::completes`).
    Completed,
    /// The viewer marked the title unwatched.
    Unwatched,
}

/// Whether the viewer finished a title.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WatchedState {
    /// The title counts as watched: the newest completing or unwatching write
    /// completed it.
    pub watched: bool,
    /// Timestamp of the newest write that completed the title (µs since the
    /// Unix epoch); kept when the title is marked unwatched.
    pub last_completed_at_micros: Option<i64>,
}

impl WatchedState {
    /// Whether anything was ever recorded (a title never completed nor marked
    /// is the default).
    pub fn is_known(&self) -> bool {
        self.watched || self.last_completed_at_micros.is_some()
    }

    /// Whether the title was completed at or after `at_micros` and is still
    /// watched: completed since it was last played.
    pub fn completed_since(&self, at_micros: i64) -> bool {
        self.watched
            && self
                .last_completed_at_micros
                .is_some_and(|completed| completed >= at_micros)
    }
}

/// One position write, stamped by the server when the position was received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionWrite {
    /// The viewer, taken from a verified token's `sub`.
    pub user_id: String,
    /// The title, checked against the catalog before it gets here.
    pub movie_id: String,
    /// Playback position in milliseconds (already clamped to the title's duration).
    pub position_ms: u64,
    /// When the server received the position, in µs since the Unix epoch; the
    /// last-write-wins key.
    pub written_at_micros: i64,
    /// What the write does to the watched state, at the same timestamp.
    pub watched: WatchedChange,
}

/// A position as stored: what the read paths start from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedPosition {
    /// The title this position belongs to.
    pub movie_id: String,
    /// Playback position in milliseconds.
    pub position_ms: u64,
    /// The write timestamp that won (µs since the Unix epoch).
    pub updated_at_micros: i64,
    /// The title's watched state.
    pub watched: WatchedState,
}

/// The winner of one `(user, title)` key: a position or a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// A position is the newest write.
    Position(SavedPosition),
    /// A delete is the newest write.
    Deleted {
        /// The title deleted.
        movie_id: String,
        /// When the delete was received (µs since the Unix epoch).
        deleted_at_micros: i64,
        /// The title's watched state, which a delete leaves alone.
        watched: WatchedState,
    },
}

impl Stored {
    /// The title of the key.
    pub fn movie_id(&self) -> &str {
        match self {
            Self::Position(saved) => &saved.movie_id,
            Self::Deleted { movie_id, .. } => movie_id,
        }
    }

    /// The write timestamp that won (µs since the Unix epoch).
    pub fn timestamp_micros(&self) -> i64 {
        match self {
            Self::Position(saved) => saved.updated_at_micros,
            Self::Deleted {
                deleted_at_micros, ..
            } => *deleted_at_micros,
        }
    }

    /// The title's watched state.
    pub fn watched(&self) -> WatchedState {
        match self {
            Self::Position(saved) => saved.watched,
            Self::Deleted { watched, .. } => *watched,
        }
    }

    /// The position, unless a delete won.
    pub fn into_position(self) -> Option<SavedPosition> {
        match self {
            Self::Position(saved) => Some(saved),
            Self::Deleted { .. } => None,
        }
    }
}

/// What became of a `put`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    /// The write is the stored winner (or an identical write already was).
    Applied,
    /// A newer write or delete holds the key; the write changed nothing.
    Superseded(Stored),
}

/// Why a store operation failed. Callers keep their data and may retry: every
/// write is idempotent under its timestamp.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend did not answer in time or is unreachable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend answered with an error.
    #[error("store error: {0}")]
    Backend(String),
    /// The store is shutting down and takes no more writes.
    #[error("store is closed")]
    Closed,
}

/// The storage contract every backend fulfils (see the module docs for the rules).
#[async_trait]
pub trait PositionStore: Send + Sync + 'static {
    /// Stores a position unless a write or delete with a newer-or-equal timestamp
    /// is already there. Returns once the write is durable, saying whether it is
    /// the winner.
    async fn put(&self, write: PositionWrite) -> Result<PutOutcome, StoreError>;

    /// Writes a tombstone for `(user_id, movie_id)` at `written_at_micros`.
    async fn delete(
        &self,
        user_id: &str,
        movie_id: &str,
        written_at_micros: i64,
    ) -> Result<(), StoreError>;

    /// The winner of one title for one user, position or tombstone, with the
    /// watched state, if anything was ever written.
    async fn get(&self, user_id: &str, movie_id: &str) -> Result<Option<Stored>, StoreError>;

    /// The winner of every title of one user, tombstones included, in no
    /// particular order.
    async fn list(&self, user_id: &str) -> Result<Vec<Stored>, StoreError>;

    /// Succeeds when the store answers a trivial request now.
    async fn check_health(&self) -> Result<(), StoreError>;

    /// Group-commit counters, for backends that batch writes into local commits
    /// (the embedded store); exported as metrics.
    fn commit_stats(&self) -> Option<Arc<CommitStats>> {
        None
    }

    /// Adds the backend's own metrics (the Cassandra store's operation
    /// latencies, failures and driver counters) to the `/metrics` registry.
    fn register_metrics(&self, _registry: &mut prometheus_client::registry::Registry) {}
}

/// Counters of a group-committing backend.
#[derive(Debug, Default)]
pub struct CommitStats {
    /// Transactions committed (one fsync each).
    pub commits: std::sync::atomic::AtomicU64,
    /// Writes applied through those transactions.
    pub writes: std::sync::atomic::AtomicU64,
}

/// The store as the rest of the server holds it.
pub type SharedStore = Arc<dyn PositionStore>;
