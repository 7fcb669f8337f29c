//! The store contract against the embedded redb store.

use std::sync::Arc;

use std::time::Duration;

use resume_server::clock::ManualClock;
use resume_server::store::embedded::EmbeddedStore;

use crate::store_suite::{StoreFixture, TTL};

async fn embedded() -> Option<StoreFixture> {
    let dir = tempfile::tempdir().expect("temp dir");
    // The suite's writes are stamped from T0 on; the clock starts there.
    let clock = ManualClock::at(1_700_000_000_000_000);
    let store = EmbeddedStore::open(dir.path())
        .expect("opens")
        .with_expiry(Some(TTL), clock.clone());
    Some(StoreFixture {
        store: Arc::new(store),
        advance_clock: Some(Box::new(move |by: Duration| {
            clock.advance(by.as_micros() as i64)
        })),
        _guard: Box::new(dir),
    })
}

crate::store_suite!(embedded());

#[tokio::test]
async fn positions_survive_reopening_the_data_dir() {
    use resume_server::store::{PositionStore, PositionWrite};
    let dir = tempfile::tempdir().unwrap();
    {
        let store = EmbeddedStore::open(dir.path()).unwrap();
        store
            .put(PositionWrite {
                user_id: "alice".into(),
                movie_id: "inception".into(),
                position_ms: 2_843_000,
                written_at_micros: 1,
                watched: Default::default(),
            })
            .await
            .unwrap();
        let stats = store.stats();
        assert_eq!(stats.writes.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
    // Dropping the store joins its writer, so the file can be opened again.
    let store = EmbeddedStore::open(dir.path()).expect("reopens");
    let saved = store.get("alice", "inception").await.unwrap().unwrap();
    assert_eq!(saved.into_position().unwrap().position_ms, 2_843_000);
}

/// A data dir written before the watched state existed: one table of
/// `(user, movie)` → `(position_ms, written_at_micros, is_tombstone)`.
#[tokio::test]
async fn a_file_from_before_the_watched_state_reads_as_not_watched() {
    use redb::{Database, TableDefinition};
    use resume_server::store::{
        PositionStore, PositionWrite, SavedPosition, Stored, WatchedChange, WatchedState,
    };
    const OLD: TableDefinition<(&str, &str), (u64, i64, bool)> =
        TableDefinition::new("playback_position");
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Database::create(dir.path().join("positions.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let mut table = txn.open_table(OLD).unwrap();
            table
                .insert(("alice", "inception"), (2_843_000, 7, false))
                .unwrap();
            table.insert(("alice", "clock"), (0, 9, true)).unwrap();
        }
        txn.commit().unwrap();
    }
    let store = EmbeddedStore::open(dir.path()).expect("opens the older file");
    assert_eq!(
        store.get("alice", "inception").await.unwrap(),
        Some(Stored::Position(SavedPosition {
            movie_id: "inception".into(),
            position_ms: 2_843_000,
            updated_at_micros: 7,
            watched: WatchedState::default(),
        }))
    );
    assert_eq!(store.list("alice").await.unwrap().len(), 2);
    store
        .put(PositionWrite {
            user_id: "alice".into(),
            movie_id: "inception".into(),
            position_ms: 7_800_000,
            written_at_micros: 10,
            watched: WatchedChange::Completed,
        })
        .await
        .unwrap();
    let watched = store.get("alice", "inception").await.unwrap().unwrap();
    assert_eq!(
        watched.watched(),
        WatchedState {
            watched: true,
            last_completed_at_micros: Some(10)
        }
    );
}
