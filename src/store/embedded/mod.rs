//! The embedded default store: one crash-safe redb file under `--data-dir`.
//!
//! Writes from every session go through one bounded queue to one writer thread,
//! which waits after the first write of a batch (the commit delay, 25 ms by
//! default), takes everything waiting (up to [`MAX_BATCH`]) into a single
//! transaction and commits it with an fsync: thousands of writes per second cost
//! a few dozen commits (group commit). A commit's own cost dwarfs its writes',
//! so the delay trades some milliseconds of write latency for far less CPU. A
//! `put` returns only after its transaction is durable.
//! Last-write-wins is decided inside the transaction, so it holds whatever order
//! writes arrive in. Reads never wait for the writer: they search the view of
//! the newest commit that the writer publishes before acknowledging it
//! (`snapshot`), an MVCC read transaction opened once per commit.
//!
//! Positions and tombstones expire like Cassandra's `USING TTL` cells: with a
//! time to live ([`EmbeddedStore::with_expiry`]), an entry whose last write is
//! older than it reads as absent (it stays in the file until overwritten; the
//! embedded store serves one node, whose file grows with its titles, not with
//! time).
//!
//! Ties (two writes with the same timestamp) resolve as Cassandra does: a delete
//! wins over a write, and between two writes the larger position wins. A put
//! learns whether it is the winner once its whole batch is applied, so a write
//! overtaken by a newer one in the same batch is reported superseded.
//!
//! The watched state lives in a table of its own beside the positions, keyed
//! the same, written in the same transaction, and resolved as Cassandra
//! resolves its two cells (`watched` by its own timestamp, `true` winning a
//! tie; `last_completed_at` the newest). A file from before the watched state
//! therefore reads unchanged: its titles are simply not watched. Each part
//! expires a time to live after its own last write, as Cassandra's cells do.

mod snapshot;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

pub use super::CommitStats;
use super::{
    PositionStore, PositionWrite, PutOutcome, SavedPosition, StoreError, Stored, WatchedChange,
    WatchedState,
};
use crate::clock::{SharedClock, SystemClock};
use snapshot::LatestSnapshot;

/// `(user_id, movie_id)` → `(position_ms, written_at_micros, is_tombstone)`.
const POSITIONS: TableDefinition<(&str, &str), (u64, i64, bool)> =
    TableDefinition::new("playback_position");

/// `(user_id, movie_id)` → `(watched, watched_at_micros, last_completed_at_micros)`:
/// the watched state, written only by completing and unwatching writes.
const WATCHED: TableDefinition<(&str, &str), WatchedCell> = TableDefinition::new("watched_state");

/// How long the writer waits after the first write of a batch, in ms (see
/// `--store-commit-delay-ms`). Sessions write every 4 s and nobody watches an
/// acknowledgement's milliseconds, while each commit costs far more than a
/// write (an fsync and the pages it rewrites): at the rate 19,000 sessions
/// write, 25 ms instead of 5 puts ≈ 130 instead of ≈ 28 writes into a commit
/// and cuts the store's CPU per write from ≈ 33 to ≈ 25 µs (benchmark
/// scenario 6, docs/BENCHMARKS.md).
pub const DEFAULT_COMMIT_DELAY_MS: u64 = 25;

/// [`DEFAULT_COMMIT_DELAY_MS`] as a duration.
pub const DEFAULT_COMMIT_DELAY: Duration = Duration::from_millis(DEFAULT_COMMIT_DELAY_MS);

/// Most writes one transaction takes; bounds commit latency under a flood.
pub const MAX_BATCH: usize = 4096;

/// Writes waiting for the writer at most; callers wait beyond it (backpressure).
const QUEUE_DEPTH: usize = 8192;

/// File name of the database inside the data dir.
const FILE_NAME: &str = "positions.redb";

/// A change the writer applies.
enum Mutation {
    Put(PositionWrite),
    Delete {
        user_id: String,
        movie_id: String,
        written_at_micros: i64,
    },
}

/// A mutation and the caller waiting for its commit.
struct Job {
    mutation: Mutation,
    done: oneshot::Sender<Result<PutOutcome, StoreError>>,
}

/// A stored cell: `(position_ms, written_at_micros, is_tombstone)`.
type Cell = (u64, i64, bool);

/// A stored watched state: `(watched, watched_at_micros, last_completed_at_micros)`.
type WatchedCell = (bool, i64, Option<i64>);

/// The redb-backed [`PositionStore`].
pub struct EmbeddedStore {
    /// Shared with the writer thread.
    db: Arc<Database>,
    /// The newest commit's view, which reads search; the writer replaces it.
    latest: Arc<LatestSnapshot>,
    /// The writer's queue; closing it stops the writer.
    jobs: Option<mpsc::Sender<Job>>,
    /// Joined on drop, so the file is released when the store is gone.
    writer: Option<std::thread::JoinHandle<()>>,
    /// Group-commit counters.
    stats: Arc<CommitStats>,
    /// Entries whose last write is older than this (µs) read as absent.
    ttl_micros: Option<i64>,
    /// Decides what has expired.
    clock: SharedClock,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `dir` with the default commit delay.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, DEFAULT_COMMIT_DELAY)
    }

    /// Opens (or creates) the store in `dir` and starts its writer thread, which
    /// waits `commit_delay` after the first write of a batch for others to join.
    pub fn open_with(dir: &Path, commit_delay: Duration) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", dir.display())))?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        let txn = db.begin_write().map_err(backend)?;
        txn.open_table(POSITIONS).map_err(backend)?;
        // Created beside the positions of a file from before it existed.
        txn.open_table(WATCHED).map_err(backend)?;
        txn.commit().map_err(backend)?;

        let db = Arc::new(db);
        let latest = Arc::new(LatestSnapshot::default());
        latest.refresh(&db);
        let stats = Arc::new(CommitStats::default());
        let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            db: Arc::clone(&db),
            latest: Arc::clone(&latest),
            stats: Arc::clone(&stats),
            commit_delay,
        };
        let writer = std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || writer.run(queue))
            .map_err(|e| StoreError::Backend(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            db,
            latest,
            jobs: Some(jobs),
            writer: Some(writer),
            stats,
            ttl_micros: None,
            clock: Arc::new(SystemClock),
        })
    }

    /// Lets entries expire `ttl` after their last write, by `clock` (`None`:
    /// never).
    pub fn with_expiry(mut self, ttl: Option<Duration>, clock: SharedClock) -> Self {
        self.ttl_micros = ttl.map(|ttl| i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
        self.clock = clock;
        self
    }

    /// The entry as readers see it: `None` once it has expired, and each part
    /// of its watched state gone once that part has.
    fn visible(&self, movie_id: &str, cell: Cell, watched: Option<WatchedCell>) -> Option<Stored> {
        let (_, at, _) = cell;
        if self.expired(at) {
            return None;
        }
        let watched = watched.map(|(watched, watched_at, last_completed)| {
            (
                watched && !self.expired(watched_at),
                watched_at,
                last_completed.filter(|&completed| !self.expired(completed)),
            )
        });
        Some(stored(movie_id, cell, watched))
    }

    /// Whether a write stamped `at` has outlived the time to live.
    fn expired(&self, at: i64) -> bool {
        self.ttl_micros
            .is_some_and(|ttl| at.saturating_add(ttl) <= self.clock.now_micros())
    }

    /// Group-commit counters.
    pub fn stats(&self) -> Arc<CommitStats> {
        Arc::clone(&self.stats)
    }

    async fn submit(&self, mutation: Mutation) -> Result<PutOutcome, StoreError> {
        let (done, committed) = oneshot::channel();
        let jobs = self.jobs.as_ref().ok_or(StoreError::Closed)?;
        jobs.send(Job { mutation, done })
            .await
            .map_err(|_| StoreError::Closed)?;
        committed.await.map_err(|_| StoreError::Closed)?
    }

    /// Reads the newest commit on the calling task. Reads are short B-tree
    /// lookups over a small, cache-resident file and never wait for the writer
    /// (MVCC), so handing them to the blocking pool would cost more than they do.
    fn read<T>(
        &self,
        read: impl FnOnce(&snapshot::Snapshot) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.latest.read(&self.db, read)
    }
}

#[async_trait]
impl PositionStore for EmbeddedStore {
    async fn put(&self, write: PositionWrite) -> Result<PutOutcome, StoreError> {
        self.submit(Mutation::Put(write)).await
    }

    async fn delete(
        &self,
        user_id: &str,
        movie_id: &str,
        written_at_micros: i64,
    ) -> Result<(), StoreError> {
        self.submit(Mutation::Delete {
            user_id: user_id.to_owned(),
            movie_id: movie_id.to_owned(),
            written_at_micros,
        })
        .await
        .map(drop)
    }

    async fn get(&self, user_id: &str, movie_id: &str) -> Result<Option<Stored>, StoreError> {
        self.read(|view| {
            let key = (user_id, movie_id);
            let Some(cell) = view.positions.get(key).map_err(backend)? else {
                return Ok(None);
            };
            let state = view.watched.get(key).map_err(backend)?;
            Ok(self.visible(movie_id, cell.value(), state.map(|s| s.value())))
        })
    }

    async fn list(&self, user_id: &str) -> Result<Vec<Stored>, StoreError> {
        self.read(|view| {
            let mut positions = Vec::new();
            for entry in view.positions.range((user_id, "")..).map_err(backend)? {
                let (key, cell) = entry.map_err(backend)?;
                let (user, movie) = key.value();
                if user != user_id {
                    break;
                }
                let state = view.watched.get((user, movie)).map_err(backend)?;
                positions.extend(self.visible(movie, cell.value(), state.map(|s| s.value())));
            }
            Ok(positions)
        })
    }

    fn commit_stats(&self) -> Option<Arc<CommitStats>> {
        Some(self.stats())
    }

    async fn check_health(&self) -> Result<(), StoreError> {
        if self.jobs.as_ref().is_none_or(|jobs| jobs.is_closed()) {
            return Err(StoreError::Unavailable("writer thread has stopped".into()));
        }
        // A fresh transaction: the check is whether the file answers now.
        let txn = self.db.begin_read().map_err(backend)?;
        txn.open_table(POSITIONS).map_err(backend)?;
        Ok(())
    }
}

impl Drop for EmbeddedStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer commit what it holds and stop.
        self.jobs.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// The writer thread's parts.
struct Writer {
    db: Arc<Database>,
    /// Replaced after each commit, before its acknowledgements.
    latest: Arc<LatestSnapshot>,
    stats: Arc<CommitStats>,
    commit_delay: Duration,
}

impl Writer {
    /// Drains the queue, commits a batch, publishes it to readers, acknowledges
    /// it, repeats. Ends when every sender is gone.
    fn run(self, mut queue: mpsc::Receiver<Job>) {
        let mut batch = Vec::with_capacity(64);
        while let Some(first) = queue.blocking_recv() {
            batch.push(first);
            // A commit costs far more than the writes in it (page bookkeeping and
            // an fsync), so give concurrent writers a moment to join this one.
            if !self.commit_delay.is_zero() {
                std::thread::sleep(self.commit_delay);
            }
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            self.commit(&mut batch);
        }
    }

    /// Commits and acknowledges one batch, leaving it empty.
    fn commit(&self, batch: &mut Vec<Job>) {
        match commit_batch(&self.db, batch) {
            Ok(outcomes) => {
                // Before any acknowledgement: an acknowledged write reads back.
                self.latest.refresh(&self.db);
                self.stats.commits.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .writes
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                for (job, outcome) in batch.drain(..).zip(outcomes) {
                    // The caller may have given up waiting; its write is committed anyway.
                    let _ = job.done.send(Ok(outcome));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = batch.len(), "embedded store commit failed");
                for job in batch.drain(..) {
                    let _ = job.done.send(Err(StoreError::Backend(e.to_string())));
                }
            }
        }
    }
}

/// The key and cell a mutation writes.
fn cell_of(mutation: &Mutation) -> ((&str, &str), Cell) {
    match mutation {
        Mutation::Put(w) => (
            (&w.user_id, &w.movie_id),
            (w.position_ms, w.written_at_micros, false),
        ),
        Mutation::Delete {
            user_id,
            movie_id,
            written_at_micros,
        } => ((user_id, movie_id), (0, *written_at_micros, true)),
    }
}

/// Applies a batch in one durable transaction, each mutation under
/// last-write-wins, and says of each whether it is the winner after the batch.
fn commit_batch(db: &Database, batch: &[Job]) -> Result<Vec<PutOutcome>, StoreError> {
    let txn = db.begin_write().map_err(backend)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    {
        let mut table = txn.open_table(POSITIONS).map_err(backend)?;
        let mut watched = txn.open_table(WATCHED).map_err(backend)?;
        for job in batch {
            let (key, incoming) = cell_of(&job.mutation);
            let current = table.get(key).map_err(backend)?.map(|cell| cell.value());
            if current.is_none_or(|stored| wins(incoming, stored)) {
                table.insert(key, incoming).map_err(backend)?;
            }
            if let Mutation::Put(write) = &job.mutation {
                let current = watched.get(key).map_err(backend)?.map(|cell| cell.value());
                let merged = merge_watched(current, write.watched, write.written_at_micros);
                if let Some(merged) = merged.filter(|merged| Some(*merged) != current) {
                    watched.insert(key, merged).map_err(backend)?;
                }
            }
        }
        for job in batch {
            let (key, incoming) = cell_of(&job.mutation);
            let winner = table.get(key).map_err(backend)?.map(|cell| cell.value());
            outcomes.push(match winner {
                Some(winner) if winner != incoming => {
                    let state = watched.get(key).map_err(backend)?.map(|cell| cell.value());
                    PutOutcome::Superseded(stored(key.1, winner, state))
                }
                _ => PutOutcome::Applied,
            });
        }
    }
    txn.commit().map_err(backend)?;
    Ok(outcomes)
}

/// A stored cell and watched state as the trait reports them.
fn stored(
    movie_id: &str,
    (position_ms, at, deleted): Cell,
    watched: Option<WatchedCell>,
) -> Stored {
    let watched = watched.map_or_else(WatchedState::default, |(watched, _, last_completed)| {
        WatchedState {
            watched,
            last_completed_at_micros: last_completed,
        }
    });
    if deleted {
        Stored::Deleted {
            movie_id: movie_id.to_owned(),
            deleted_at_micros: at,
            watched,
        }
    } else {
        Stored::Position(SavedPosition {
            movie_id: movie_id.to_owned(),
            position_ms,
            updated_at_micros: at,
            watched,
        })
    }
}

/// The watched state after a write stamped `at` that makes `change`, as
/// Cassandra's two cells would hold it: `watched` goes to the newer timestamp
/// (`true` on a tie), `last_completed_at` to the newest completion. `None`
/// when nothing was and nothing is recorded.
fn merge_watched(
    current: Option<WatchedCell>,
    change: WatchedChange,
    at: i64,
) -> Option<WatchedCell> {
    let incoming = match change {
        WatchedChange::Unchanged => return current,
        WatchedChange::Completed => true,
        WatchedChange::Unwatched => false,
    };
    let completed_at = incoming.then_some(at);
    let Some((watched, watched_at, last_completed)) = current else {
        return Some((incoming, at, completed_at));
    };
    let (watched, watched_at) = if (at, incoming) > (watched_at, watched) {
        (incoming, at)
    } else {
        (watched, watched_at)
    };
    Some((watched, watched_at, last_completed.max(completed_at)))
}

/// Whether `incoming` replaces `stored`: the newer timestamp wins; on a tie a
/// tombstone wins, then the larger position.
fn wins(incoming: Cell, stored: Cell) -> bool {
    let (in_pos, in_at, in_deleted) = incoming;
    let (st_pos, st_at, st_deleted) = stored;
    (in_at, in_deleted, in_pos) > (st_at, st_deleted, st_pos)
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes that meet in one batch: per key, only the newest is applied, and
    /// every other learns it was superseded by exactly that one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_keeps_the_newest_write_of_each_key() {
        let dir = tempfile::tempdir().unwrap();
        // A commit delay far longer than it takes to queue every write below.
        let store =
            Arc::new(EmbeddedStore::open_with(dir.path(), Duration::from_millis(500)).unwrap());
        store
            .put(PositionWrite {
                user_id: "u".into(),
                movie_id: "stored".into(),
                position_ms: 500,
                written_at_micros: 50,
                watched: WatchedChange::Unchanged,
            })
            .await
            .unwrap();
        // (movie, position, timestamp), shuffled: "stored" competes with its
        // stored write (timestamp 50), and a tie goes to the larger position.
        let writes = [
            ("b", 2, 20),
            ("a", 3, 30),
            ("stored", 400, 40),
            ("a", 1, 10),
            ("b", 9, 20),
            ("c", 7, 70),
            ("a", 2, 20),
            ("b", 1, 10),
            ("stored", 600, 60),
        ];
        let outcomes =
            futures_util::future::join_all(writes.iter().map(|&(movie, position, at)| {
                let store = Arc::clone(&store);
                async move {
                    store
                        .put(PositionWrite {
                            user_id: "u".into(),
                            movie_id: movie.into(),
                            position_ms: position,
                            written_at_micros: at,
                            watched: WatchedChange::Unchanged,
                        })
                        .await
                        .unwrap()
                }
            }))
            .await;
        assert_eq!(
            store.stats.commits.load(Ordering::Relaxed),
            2,
            "one batch after the first write"
        );
        let winner = |movie: &str| match movie {
            "a" => (3, 30),
            "b" => (9, 20),
            "c" => (7, 70),
            _ => (600, 60),
        };
        for (&(movie, position, at), outcome) in writes.iter().zip(&outcomes) {
            let (win_position, win_at) = winner(movie);
            match outcome {
                PutOutcome::Applied => {
                    assert_eq!((position, at), (win_position, win_at), "{movie} {position}")
                }
                PutOutcome::Superseded(Stored::Position(by)) => {
                    assert_ne!((position, at), (win_position, win_at), "{movie} {position}");
                    assert_eq!(
                        (by.movie_id.as_str(), by.position_ms, by.updated_at_micros),
                        (movie, win_position, win_at)
                    );
                }
                other => panic!("{movie} {position}: {other:?}"),
            }
        }
        for movie in ["a", "b", "c", "stored"] {
            let Some(Stored::Position(saved)) = store.get("u", movie).await.unwrap() else {
                panic!("{movie} stored")
            };
            assert_eq!((saved.position_ms, saved.updated_at_micros), winner(movie));
        }
    }

    /// Readers' views of old commits are let go, so the pages those commits
    /// freed are reused: rewriting the same keys commit after commit does not
    /// grow the file.
    #[tokio::test]
    async fn published_views_do_not_keep_the_file_growing() {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedStore::open_with(dir.path(), Duration::ZERO).unwrap();
        let file_size = || std::fs::metadata(dir.path().join(FILE_NAME)).unwrap().len();
        let mut size_after_warm_up = 0;
        for commit in 0..400_i64 {
            for title in 0..4 {
                let write = PositionWrite {
                    user_id: format!("user-{}", commit % 50),
                    movie_id: format!("title-{title}"),
                    position_ms: 1_000,
                    written_at_micros: commit,
                    watched: WatchedChange::Unchanged,
                };
                // A read between commits, as lookups do.
                store.get(&write.user_id, &write.movie_id).await.unwrap();
                store.put(write).await.unwrap();
            }
            if commit == 99 {
                size_after_warm_up = file_size();
            }
        }
        assert!(
            file_size() <= size_after_warm_up * 2,
            "the file grew from {size_after_warm_up} to {} bytes",
            file_size()
        );
    }

    #[test]
    fn the_watched_state_merges_like_two_cassandra_cells() {
        use WatchedChange::{Completed, Unchanged, Unwatched};
        // (stored, change, at, expected)
        let table = [
            (None, Unchanged, 10, None),
            (None, Completed, 10, Some((true, 10, Some(10)))),
            (None, Unwatched, 10, Some((false, 10, None))),
            (
                Some((true, 10, Some(10))),
                Unchanged,
                20,
                Some((true, 10, Some(10))),
            ),
            // Newer unwatched keeps the last completion.
            (
                Some((true, 10, Some(10))),
                Unwatched,
                20,
                Some((false, 20, Some(10))),
            ),
            // Older unwatched loses.
            (
                Some((true, 10, Some(10))),
                Unwatched,
                5,
                Some((true, 10, Some(10))),
            ),
            // Older completion loses the flag but is still a completion.
            (
                Some((false, 20, Some(10))),
                Completed,
                15,
                Some((false, 20, Some(15))),
            ),
            (
                Some((false, 20, Some(10))),
                Completed,
                25,
                Some((true, 25, Some(25))),
            ),
            // Ties: watched wins.
            (
                Some((false, 20, None)),
                Completed,
                20,
                Some((true, 20, Some(20))),
            ),
            (
                Some((true, 20, Some(20))),
                Unwatched,
                20,
                Some((true, 20, Some(20))),
            ),
        ];
        for (i, (stored, change, at, expected)) in table.into_iter().enumerate() {
            assert_eq!(merge_watched(stored, change, at), expected, "row {i}");
        }
    }

    #[test]
    fn newer_timestamp_wins_whatever_the_values() {
        assert!(wins((1, 11, false), (9_000, 10, false)));
        assert!(!wins((9_000, 9, false), (1, 10, false)));
        assert!(!wins((9_000, 9, false), (0, 10, true)));
        assert!(wins((5, 11, false), (0, 10, true)));
    }

    #[test]
    fn ties_prefer_tombstones_then_larger_positions() {
        assert!(wins((0, 10, true), (9_000, 10, false)));
        assert!(!wins((9_000, 10, false), (0, 10, true)));
        assert!(wins((2, 10, false), (1, 10, false)));
        assert!(!wins((1, 10, false), (1, 10, false)));
    }
}
