//! The store contract, written once and run against every backend.
//!
//! Each backend's test module calls [`store_suite!`] with an async expression that
//! yields a [`StoreFixture`]: the store plus whatever must stay alive while it is
//! used (a temp dir, a CQL test node).

use std::any::Any;

use resume_server::store::{PositionWrite, SharedStore};

/// A store under test and the resources that keep it alive.
pub struct StoreFixture {
    /// The backend under test.
    pub store: SharedStore,
    /// Dropped after the test: temp dirs, test nodes.
    pub _guard: Box<dyn Any + Send>,
}

fn write(user: &str, movie: &str, position_ms: u64, at: i64) -> PositionWrite {
    PositionWrite {
        user_id: user.into(),
        movie_id: movie.into(),
        position_ms,
        written_at_micros: at,
    }
}

const T0: i64 = 1_700_000_000_000_000;

pub async fn missing_position_is_none(store: SharedStore) {
    assert_eq!(store.get("alice", "inception").await.unwrap(), None);
    assert!(store.list("alice").await.unwrap().is_empty());
}

pub async fn put_then_get_returns_it(store: SharedStore) {
    store
        .put(write("alice", "inception", 2_843_000, T0))
        .await
        .unwrap();
    let saved = store
        .get("alice", "inception")
        .await
        .unwrap()
        .expect("saved");
    assert_eq!(saved.movie_id, "inception");
    assert_eq!(saved.position_ms, 2_843_000);
    assert_eq!(saved.updated_at_micros, T0);
}

pub async fn newer_write_replaces_older(store: SharedStore) {
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store
        .put(write("alice", "inception", 2_000, T0 + 1))
        .await
        .unwrap();
    let saved = store.get("alice", "inception").await.unwrap().unwrap();
    assert_eq!(
        (saved.position_ms, saved.updated_at_micros),
        (2_000, T0 + 1)
    );
}

pub async fn older_write_never_overwrites_newer(store: SharedStore) {
    store
        .put(write("alice", "inception", 5_000, T0 + 10))
        .await
        .unwrap();
    store
        .put(write("alice", "inception", 9_000, T0 + 5))
        .await
        .unwrap();
    let saved = store.get("alice", "inception").await.unwrap().unwrap();
    assert_eq!(
        (saved.position_ms, saved.updated_at_micros),
        (5_000, T0 + 10)
    );
}

pub async fn users_never_see_each_other(store: SharedStore) {
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store
        .put(write("bob", "inception", 2_000, T0))
        .await
        .unwrap();
    store.put(write("bob", "clock", 3_000, T0)).await.unwrap();
    assert_eq!(
        store
            .get("alice", "inception")
            .await
            .unwrap()
            .unwrap()
            .position_ms,
        1_000
    );
    assert_eq!(
        store
            .get("bob", "inception")
            .await
            .unwrap()
            .unwrap()
            .position_ms,
        2_000
    );
    assert_eq!(store.get("alice", "clock").await.unwrap(), None);
    let alice = store.list("alice").await.unwrap();
    assert_eq!(alice.len(), 1);
    let mut bob: Vec<_> = store
        .list("bob")
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.movie_id)
        .collect();
    bob.sort();
    assert_eq!(bob, ["clock", "inception"]);
    // A user id that is a prefix of another stays its own partition.
    assert!(store.list("bo").await.unwrap().is_empty());
}

pub async fn delete_hides_older_writes(store: SharedStore) {
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store.delete("alice", "inception", T0 + 10).await.unwrap();
    assert_eq!(store.get("alice", "inception").await.unwrap(), None);
    assert!(store.list("alice").await.unwrap().is_empty());
    // A late write stamped before the delete stays deleted.
    store
        .put(write("alice", "inception", 2_000, T0 + 5))
        .await
        .unwrap();
    assert_eq!(store.get("alice", "inception").await.unwrap(), None);
}

pub async fn newer_write_after_delete_comes_back(store: SharedStore) {
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store.delete("alice", "inception", T0 + 10).await.unwrap();
    store
        .put(write("alice", "inception", 3_000, T0 + 20))
        .await
        .unwrap();
    let saved = store.get("alice", "inception").await.unwrap().unwrap();
    assert_eq!(
        (saved.position_ms, saved.updated_at_micros),
        (3_000, T0 + 20)
    );
    assert_eq!(store.list("alice").await.unwrap().len(), 1);
}

pub async fn delete_of_missing_title_is_fine(store: SharedStore) {
    store.delete("alice", "never-watched", T0).await.unwrap();
    assert_eq!(store.get("alice", "never-watched").await.unwrap(), None);
}

pub async fn concurrent_writes_all_land(store: SharedStore) {
    let mut tasks = Vec::new();
    for i in 0..200u64 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let user = format!("user-{}", i % 20);
            let movie = format!("movie-{}", i / 20);
            store
                .put(write(&user, &movie, i * 1_000, T0 + i as i64))
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for i in 0..200u64 {
        let user = format!("user-{}", i % 20);
        let movie = format!("movie-{}", i / 20);
        let saved = store.get(&user, &movie).await.unwrap().expect("landed");
        assert_eq!(saved.position_ms, i * 1_000);
    }
    assert_eq!(store.list("user-3").await.unwrap().len(), 10);
}

pub async fn unusual_ids_round_trip(store: SharedStore) {
    let user = "ü:ser/with spaces\u{1F600}";
    let movie = "m\"o'v;ie--";
    store.put(write(user, movie, 42, T0)).await.unwrap();
    assert_eq!(
        store.get(user, movie).await.unwrap().unwrap().position_ms,
        42
    );
    assert_eq!(store.list(user).await.unwrap()[0].movie_id, movie);
}

pub async fn health_check_passes(store: SharedStore) {
    store.check_health().await.unwrap();
}

/// Generates one `#[tokio::test]` per contract case for a backend.
#[macro_export]
macro_rules! store_suite {
    ($make:expr) => {
        $crate::store_suite!(@cases $make;
            missing_position_is_none,
            put_then_get_returns_it,
            newer_write_replaces_older,
            older_write_never_overwrites_newer,
            users_never_see_each_other,
            delete_hides_older_writes,
            newer_write_after_delete_comes_back,
            delete_of_missing_title_is_fine,
            concurrent_writes_all_land,
            unusual_ids_round_trip,
            health_check_passes,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $make.await else { return };
                let fixture: $crate::store_suite::StoreFixture = fixture;
                $crate::store_suite::$case(fixture.store.clone()).await;
            }
        )*
    };
}
