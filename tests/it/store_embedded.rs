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
