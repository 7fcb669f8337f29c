//! The store contract, written once and run against every backend.
//!
//! Each backend's test module calls [`store_suite!`] with an async expression that
//! yields a [`StoreFixture`]: the store plus whatever must stay alive while it is
//! used (a temp dir, a CQL test node).

use std::any::Any;
use std::time::Duration;

use resume_server::store::{
    PositionWrite, PutOutcome, SavedPosition, SharedStore, Stored, WatchedChange, WatchedState,
};

/// A store under test and the resources that keep it alive.
pub struct StoreFixture {
    /// The backend under test.
    pub store: SharedStore,
    /// Moves the clock that decides expiry forward, where the test controls it
    /// (not on a real Cassandra node).
    pub advance_clock: Option<Box<dyn Fn(Duration) + Send + Sync>>,
    /// Dropped after the test: temp dirs, test nodes.
    pub _guard: Box<dyn Any + Send>,
}

/// The time to live the fixtures give their stores.
pub const TTL: Duration = Duration::from_secs(365 * 24 * 3600);

fn write(user: &str, movie: &str, position_ms: u64, at: i64) -> PositionWrite {
    PositionWrite {
        user_id: user.into(),
        movie_id: movie.into(),
        position_ms,
        written_at_micros: at,
        watched: WatchedChange::Unchanged,
    }
}

/// A write that changes the watched state.
fn marking(movie: &str, position_ms: u64, at: i64, change: WatchedChange) -> PositionWrite {
    PositionWrite {
        watched: change,
        ..write("alice", movie, position_ms, at)
    }
}

/// The watched state `(watched, last_completed_at)` as `get` and `list` both
/// report it for alice's `movie` (they must agree).
async fn watched_state(store: &SharedStore, movie: &str) -> (bool, Option<i64>) {
    let got = store.get("alice", movie).await.unwrap().expect("a title");
    let listed: Vec<WatchedState> = store
        .list("alice")
        .await
        .unwrap()
        .into_iter()
        .filter(|s| s.movie_id() == movie)
        .map(|s| s.watched())
        .collect();
    assert_eq!(listed, [got.watched()], "list agrees with get");
    let state = got.watched();
    (state.watched, state.last_completed_at_micros)
}

const T0: i64 = 1_700_000_000_000_000;

/// The stored position of a title, `None` when nothing or a tombstone is there.
async fn position(store: &SharedStore, user: &str, movie: &str) -> Option<SavedPosition> {
    store
        .get(user, movie)
        .await
        .unwrap()
        .and_then(Stored::into_position)
}

/// The titles a user has a position on (tombstones left out), sorted.
async fn listed(store: &SharedStore, user: &str) -> Vec<String> {
    let mut movies: Vec<String> = store
        .list(user)
        .await
        .unwrap()
        .into_iter()
        .filter_map(Stored::into_position)
        .map(|p| p.movie_id)
        .collect();
    movies.sort();
    movies
}

pub async fn missing_position_is_none(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    assert_eq!(store.get("alice", "inception").await.unwrap(), None);
    assert!(store.list("alice").await.unwrap().is_empty());
}

pub async fn put_then_get_returns_it(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store
        .put(write("alice", "inception", 2_843_000, T0))
        .await
        .unwrap();
    let saved = position(&store, "alice", "inception").await.expect("saved");
    assert_eq!(saved.movie_id, "inception");
    assert_eq!(saved.position_ms, 2_843_000);
    assert_eq!(saved.updated_at_micros, T0);
}

pub async fn newer_write_replaces_older(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store
        .put(write("alice", "inception", 2_000, T0 + 1))
        .await
        .unwrap();
    let saved = position(&store, "alice", "inception").await.unwrap();
    assert_eq!(
        (saved.position_ms, saved.updated_at_micros),
        (2_000, T0 + 1)
    );
}

pub async fn older_write_never_overwrites_newer(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store
        .put(write("alice", "inception", 5_000, T0 + 10))
        .await
        .unwrap();
    store
        .put(write("alice", "inception", 9_000, T0 + 5))
        .await
        .unwrap();
    let saved = position(&store, "alice", "inception").await.unwrap();
    assert_eq!(
        (saved.position_ms, saved.updated_at_micros),
        (5_000, T0 + 10)
    );
}

pub async fn users_never_see_each_other(fixture: &StoreFixture) {
    let store = fixture.store.clone();
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
        position(&store, "alice", "inception")
            .await
            .unwrap()
            .position_ms,
        1_000
    );
    assert_eq!(
        position(&store, "bob", "inception")
            .await
            .unwrap()
            .position_ms,
        2_000
    );
    assert_eq!(store.get("alice", "clock").await.unwrap(), None);
    assert_eq!(listed(&store, "alice").await, ["inception"]);
    assert_eq!(listed(&store, "bob").await, ["clock", "inception"]);
    // A user id that is a prefix of another stays its own partition.
    assert!(store.list("bo").await.unwrap().is_empty());
}

pub async fn delete_hides_older_writes(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store.delete("alice", "inception", T0 + 10).await.unwrap();
    let tombstone = Stored::Deleted {
        movie_id: "inception".into(),
        deleted_at_micros: T0 + 10,
        watched: Default::default(),
    };
    // Reads report the tombstone with its timestamp.
    assert_eq!(
        store.get("alice", "inception").await.unwrap(),
        Some(tombstone.clone())
    );
    assert_eq!(
        store.list("alice").await.unwrap(),
        std::slice::from_ref(&tombstone)
    );
    // A late write stamped before the delete stays deleted, and says so.
    let late = store
        .put(write("alice", "inception", 2_000, T0 + 5))
        .await
        .unwrap();
    assert_eq!(late, PutOutcome::Superseded(tombstone.clone()));
    assert_eq!(
        store.get("alice", "inception").await.unwrap(),
        Some(tombstone)
    );
}

pub async fn put_says_whether_it_won(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    let put = |position_ms, at| store.put(write("alice", "inception", position_ms, at));
    assert_eq!(put(1_000, T0 + 10).await.unwrap(), PutOutcome::Applied);
    // Retried with the same timestamp: still the winner.
    assert_eq!(put(1_000, T0 + 10).await.unwrap(), PutOutcome::Applied);
    assert_eq!(
        put(9_000, T0 + 5).await.unwrap(),
        PutOutcome::Superseded(Stored::Position(SavedPosition {
            movie_id: "inception".into(),
            position_ms: 1_000,
            updated_at_micros: T0 + 10,
            watched: Default::default(),
        }))
    );
    assert_eq!(put(2_000, T0 + 11).await.unwrap(), PutOutcome::Applied);
}

pub async fn newer_write_after_delete_comes_back(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store.delete("alice", "inception", T0 + 10).await.unwrap();
    store
        .put(write("alice", "inception", 3_000, T0 + 20))
        .await
        .unwrap();
    let saved = position(&store, "alice", "inception").await.unwrap();
    assert_eq!(
        (saved.position_ms, saved.updated_at_micros),
        (3_000, T0 + 20)
    );
    assert_eq!(store.list("alice").await.unwrap().len(), 1);
}

pub async fn delete_of_missing_title_is_fine(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store.delete("alice", "never-watched", T0).await.unwrap();
    assert_eq!(position(&store, "alice", "never-watched").await, None);
}

pub async fn concurrent_writes_all_land(fixture: &StoreFixture) {
    let store = fixture.store.clone();
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
        let saved = position(&store, &user, &movie).await.expect("landed");
        assert_eq!(saved.position_ms, i * 1_000);
    }
    assert_eq!(listed(&store, "user-3").await.len(), 10);
}

pub async fn unusual_ids_round_trip(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    let user = "ü:ser/with spaces\u{1F600}";
    let movie = "m\"o'v;ie--";
    store.put(write(user, movie, 42, T0)).await.unwrap();
    assert_eq!(position(&store, user, movie).await.unwrap().position_ms, 42);
    assert_eq!(listed(&store, user).await, [movie]);
}

pub async fn positions_expire_a_ttl_after_their_last_write(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    let Some(advance) = &fixture.advance_clock else {
        eprintln!("skipped: this backend's clock cannot be moved");
        return;
    };
    let day = Duration::from_secs(24 * 3600);
    let micros = |d: Duration| d.as_micros() as i64;
    store
        .put(write("alice", "inception", 1_000, T0))
        .await
        .unwrap();
    store.put(write("alice", "clock", 2_000, T0)).await.unwrap();
    store.delete("alice", "countdown", T0).await.unwrap();
    advance(TTL - day);
    assert_eq!(listed(&store, "alice").await, ["clock", "inception"]);
    // Watching renews a title: a write a day before expiry starts the TTL again.
    let renewed_at = T0 + micros(TTL - day);
    store
        .put(write("alice", "clock", 3_000, renewed_at))
        .await
        .unwrap();
    advance(2 * day);
    assert_eq!(position(&store, "alice", "inception").await, None);
    assert_eq!(store.get("alice", "inception").await.unwrap(), None);
    assert_eq!(
        store.get("alice", "countdown").await.unwrap(),
        None,
        "tombstones expire too"
    );
    assert_eq!(listed(&store, "alice").await, ["clock"]);
    assert_eq!(store.list("alice").await.unwrap().len(), 1);
    advance(TTL);
    assert!(store.list("alice").await.unwrap().is_empty());
}

pub async fn a_completing_write_marks_the_title_watched(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store.put(write("alice", "clock", 1_000, T0)).await.unwrap();
    assert_eq!(watched_state(&store, "clock").await, (false, None));
    let outcome = store
        .put(marking("clock", 119_000, T0 + 10, WatchedChange::Completed))
        .await
        .unwrap();
    assert_eq!(outcome, PutOutcome::Applied);
    assert_eq!(watched_state(&store, "clock").await, (true, Some(T0 + 10)));
    assert_eq!(
        store.get("alice", "clock").await.unwrap(),
        Some(Stored::Position(SavedPosition {
            movie_id: "clock".into(),
            position_ms: 119_000,
            updated_at_micros: T0 + 10,
            watched: WatchedState {
                watched: true,
                last_completed_at_micros: Some(T0 + 10),
            },
        }))
    );
    // Another title and another viewer are untouched.
    store.put(write("alice", "inception", 1, T0)).await.unwrap();
    assert_eq!(watched_state(&store, "inception").await, (false, None));
    store.put(write("bob", "clock", 1, T0 + 20)).await.unwrap();
    let bob = store.get("bob", "clock").await.unwrap().unwrap();
    assert_eq!(bob.watched(), WatchedState::default());
}

pub async fn an_ordinary_write_after_completion_keeps_the_title_watched(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store
        .put(marking("clock", 120_000, T0, WatchedChange::Completed))
        .await
        .unwrap();
    // Rewatching from the start: the position moves, the watched state stays.
    store
        .put(write("alice", "clock", 2_000, T0 + 10))
        .await
        .unwrap();
    let saved = position(&store, "alice", "clock").await.unwrap();
    assert_eq!(
        (saved.position_ms, saved.updated_at_micros),
        (2_000, T0 + 10)
    );
    assert_eq!(watched_state(&store, "clock").await, (true, Some(T0)));
    // A late ordinary write stamped before the completion changes nothing.
    let late = store
        .put(write("alice", "clock", 500, T0 - 5))
        .await
        .unwrap();
    assert!(matches!(late, PutOutcome::Superseded(_)), "{late:?}");
    assert_eq!(watched_state(&store, "clock").await, (true, Some(T0)));
}

pub async fn the_newest_watched_mark_wins_in_either_arrival_order(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    let completed = |movie, at| marking(movie, 120_000, at, WatchedChange::Completed);
    let unwatched = |movie, at| marking(movie, 0, at, WatchedChange::Unwatched);
    // Completed after being marked unwatched: watched, whichever arrives first.
    let newer_completion = [unwatched("a", T0 + 5), completed("a", T0 + 10)];
    // Marked unwatched after the completion: not watched, the completion kept.
    let newer_unwatched = [completed("b", T0 + 5), unwatched("b", T0 + 10)];
    for (movie, writes, expected) in [
        ("a", newer_completion, (true, Some(T0 + 10))),
        ("b", newer_unwatched, (false, Some(T0 + 5))),
    ] {
        for order in [[0, 1], [1, 0]] {
            let movie = format!("{movie}-{}{}", order[0], order[1]);
            for i in order {
                let write = PositionWrite {
                    movie_id: movie.clone(),
                    ..writes[i].clone()
                };
                store.put(write).await.unwrap();
            }
            assert_eq!(watched_state(&store, &movie).await, expected, "{movie}");
            let saved = position(&store, "alice", &movie).await.unwrap();
            assert_eq!(saved.updated_at_micros, T0 + 10, "{movie}");
        }
    }
    // An older completion that loses the flag still counts as a completion.
    store
        .put(marking("c", 120_000, T0 + 1, WatchedChange::Completed))
        .await
        .unwrap();
    store
        .put(marking("c", 0, T0 + 10, WatchedChange::Unwatched))
        .await
        .unwrap();
    store
        .put(marking("c", 120_000, T0 + 5, WatchedChange::Completed))
        .await
        .unwrap();
    assert_eq!(watched_state(&store, "c").await, (false, Some(T0 + 5)));
}

pub async fn a_delete_keeps_the_watched_state(fixture: &StoreFixture) {
    let store = fixture.store.clone();
    store
        .put(marking("clock", 120_000, T0, WatchedChange::Completed))
        .await
        .unwrap();
    store.delete("alice", "clock", T0 + 10).await.unwrap();
    let tombstone = Stored::Deleted {
        movie_id: "clock".into(),
        deleted_at_micros: T0 + 10,
        watched: WatchedState {
            watched: true,
            last_completed_at_micros: Some(T0),
        },
    };
    assert_eq!(
        store.get("alice", "clock").await.unwrap(),
        Some(tombstone.clone())
    );
    assert_eq!(store.list("alice").await.unwrap(), [tombstone]);
    // A position after the delete brings the title back, still watched.
    store
        .put(write("alice", "clock", 3_000, T0 + 20))
        .await
        .unwrap();
    assert_eq!(watched_state(&store, "clock").await, (true, Some(T0)));
}

pub async fn health_check_passes(fixture: &StoreFixture) {
    let store = fixture.store.clone();
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
            put_says_whether_it_won,
            newer_write_after_delete_comes_back,
            delete_of_missing_title_is_fine,
            concurrent_writes_all_land,
            unusual_ids_round_trip,
            positions_expire_a_ttl_after_their_last_write,
            a_completing_write_marks_the_title_watched,
            an_ordinary_write_after_completion_keeps_the_title_watched,
            the_newest_watched_mark_wins_in_either_arrival_order,
            a_delete_keeps_the_watched_state,
            health_check_passes,
        );
    };
    (@cases $make:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let Some(fixture) = $make.await else { return };
                let fixture: $crate::store_suite::StoreFixture = fixture;
                $crate::store_suite::$case(&fixture).await;
            }
        )*
    };
}
