//! The newest committed state of the embedded store, published for readers.
//!
//! A lookup needs one B-tree search, yet a fresh read transaction with its two
//! tables cost more than that search (begin plus two table opens were ≈ 5 % of
//! the server's CPU under scenario 4's lookups on a0168ac, `LOAD=lookups
//! bench/profile.sh`; docs/BENCHMARKS.md, Lookups).
//! So the writer opens them once per commit, right after the commit is durable
//! and before it acknowledges any write of the batch, and publishes them here;
//! a reader takes the published view with one atomic load.
//!
//! A reader therefore sees every write acknowledged before it started, as a
//! fresh transaction would. A view lives until the next commit replaces it and
//! its last reader is done, so it keeps no more of the file from being reused
//! than a read in progress does. If a view cannot be opened, nothing is
//! published and readers open their own transactions until a later commit
//! succeeds.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use redb::{Database, ReadOnlyTable, ReadableDatabase};

use super::{Cell, POSITIONS, WATCHED, WatchedCell, backend};
use crate::store::StoreError;

/// Both tables as of one commit.
pub(super) struct Snapshot {
    /// `(user_id, movie_id)` → position or tombstone.
    pub positions: ReadOnlyTable<(&'static str, &'static str), Cell>,
    /// `(user_id, movie_id)` → watched state.
    pub watched: ReadOnlyTable<(&'static str, &'static str), WatchedCell>,
}

impl Snapshot {
    /// Opens the tables as the newest commit left them.
    fn open(db: &Database) -> Result<Self, StoreError> {
        let txn = db.begin_read().map_err(backend)?;
        Ok(Self {
            positions: txn.open_table(POSITIONS).map_err(backend)?,
            watched: txn.open_table(WATCHED).map_err(backend)?,
        })
    }
}

/// The view readers use, replaced by the writer after each commit.
#[derive(Default)]
pub(super) struct LatestSnapshot(ArcSwapOption<Snapshot>);

impl LatestSnapshot {
    /// Publishes the newest commit; called by the writer after a commit and
    /// before its acknowledgements.
    pub fn refresh(&self, db: &Database) {
        match Snapshot::open(db) {
            Ok(snapshot) => self.0.store(Some(Arc::new(snapshot))),
            Err(e) => {
                // Readers open their own transactions meanwhile; a stale view
                // must not stay, or acknowledged writes would not read back.
                self.0.store(None);
                tracing::warn!(error = %e, "cannot open a read view after a commit");
            }
        }
    }

    /// Runs `read` on the published view, or on a fresh one if none is.
    pub fn read<T>(
        &self,
        db: &Database,
        read: impl FnOnce(&Snapshot) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.0.load().as_deref() {
            Some(snapshot) => read(snapshot),
            None => read(&Snapshot::open(db)?),
        }
    }
}
