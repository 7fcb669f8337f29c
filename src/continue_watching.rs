//! Continue watching: which titles a viewer is offered to go on with, and in
//! which order. Pure: it takes every title's newest position or delete (live
//! sessions already merged in by `crate::position_reads`) and the catalog, and
//! decides; the HTTP handler only reads and renders.
//!
//! * **A standalone title** is offered while it is in progress
//!   (`resume::is_in_progress`) and not completed since it was last played.
//! * **A series** is offered at most once, from the episode with the newest
//!   activity (its position or delete). A delete hides the series — which is
//!   how removing the offered episode from the list works. An episode in
//!   progress is offered as it is ([`RowKind::InProgress`]). A completed one
//!   (at or past the threshold, or marked watched since it was last played)
//!   offers the next episode in (season, episode) order instead
//!   ([`RowKind::UpNext`]), where `GET /api/v1/stream` would start it: its own
//!   saved position, or 0. After the last episode nothing is offered, and
//!   neither is an episode barely started or back at 0.
//! * Rows run from the newest activity to the oldest; an up-next row counts
//!   from the activity on the episode before it.

use std::collections::HashMap;

use crate::catalog::{Catalog, Movie};
use crate::resume::{CompletionThreshold, is_in_progress, resume_position};
use crate::store::{SavedPosition, Stored};

/// The settings the rules read.
#[derive(Debug, Clone, Copy)]
pub struct ListPolicy {
    /// From here on a title counts as completed.
    pub threshold: CompletionThreshold,
    /// Titles watched less than this (ms) are not offered.
    pub min_resume_ms: u64,
}

/// Why a title is offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// The viewer is in the middle of it.
    InProgress,
    /// The viewer finished the episode before it.
    UpNext,
}

/// One offered title.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The title offered.
    pub movie: &'a Movie,
    /// Why.
    pub kind: RowKind,
    /// Where playing it starts (ms).
    pub position_ms: u64,
    /// When the activity that put it here was received (µs since the epoch):
    /// its own position, or for an up-next row the previous episode's.
    pub activity_at_micros: i64,
}

/// The rows offered to a viewer whose titles are `titles`, newest activity
/// first (ties by `movie_id`). Titles missing from the catalog are skipped.
pub fn rows<'a>(catalog: &'a Catalog, titles: &[Stored], policy: ListPolicy) -> Vec<Row<'a>> {
    let by_movie: HashMap<&str, &Stored> = titles.iter().map(|t| (t.movie_id(), t)).collect();
    let mut rows = Vec::new();
    // Per series, its episode with the newest activity (ties: the later episode).
    let mut latest: HashMap<&str, (&Movie, &Stored)> = HashMap::new();
    for title in titles {
        let Some(movie) = catalog.get(title.movie_id()) else {
            continue;
        };
        let Some(episode) = movie.episode_of() else {
            rows.extend(in_progress_row(movie, title, policy));
            continue;
        };
        let newer = |(other, stored): &(&Movie, &Stored)| {
            let place = |m: &Movie| m.episode_of().map(|e| (e.season, e.episode));
            (title.timestamp_micros(), place(movie)) > (stored.timestamp_micros(), place(other))
        };
        let entry = latest.entry(episode.series_id).or_insert((movie, title));
        if newer(entry) {
            *entry = (movie, title);
        }
    }
    for (movie, title) in latest.into_values() {
        let Stored::Position(saved) = title else {
            continue;
        };
        if !is_completed(movie, saved, policy) {
            rows.extend(in_progress_row(movie, title, policy));
            continue;
        }
        let Some(next) = catalog.next_episode(&movie.movie_id) else {
            continue;
        };
        let saved_next = by_movie
            .get(next.movie_id.as_str())
            .and_then(|stored| match stored {
                Stored::Position(saved) => Some(saved.position_ms),
                Stored::Deleted { .. } => None,
            });
        rows.push(Row {
            movie: next,
            kind: RowKind::UpNext,
            position_ms: resume_position(saved_next, next.duration_ms(), policy.threshold)
                .position_ms,
            activity_at_micros: saved.updated_at_micros,
        });
    }
    rows.sort_by(|a, b| {
        b.activity_at_micros
            .cmp(&a.activity_at_micros)
            .then_with(|| a.movie.movie_id.cmp(&b.movie.movie_id))
    });
    rows
}

/// The in-progress row of a title, if it is one.
fn in_progress_row<'a>(movie: &'a Movie, title: &Stored, policy: ListPolicy) -> Option<Row<'a>> {
    let Stored::Position(saved) = title else {
        return None;
    };
    let offered = is_in_progress(
        saved.position_ms,
        movie.duration_ms(),
        policy.min_resume_ms,
        policy.threshold,
    ) && !is_completed(movie, saved, policy);
    offered.then_some(Row {
        movie,
        kind: RowKind::InProgress,
        position_ms: saved.position_ms,
        activity_at_micros: saved.updated_at_micros,
    })
}

/// Whether the viewer finished the title: the position is at or past the
/// threshold, or the title was completed (a player's `ended`, or marked
/// watched) at or after the position was received.
fn is_completed(movie: &Movie, saved: &SavedPosition, policy: ListPolicy) -> bool {
    policy
        .threshold
        .is_completed(saved.position_ms, movie.duration_ms())
        || saved.watched.completed_since(saved.updated_at_micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::WatchedState;

    fn policy() -> ListPolicy {
        ListPolicy {
            threshold: CompletionThreshold::from_fraction(0.95),
            min_resume_ms: 0,
        }
    }

    /// The built-in catalog: three 20 s episodes of `night-shift`, and
    /// standalone titles (`clock` is 120 s).
    fn catalog() -> Catalog {
        Catalog::built_in()
    }

    fn at(movie: &str, position_ms: u64, at: i64) -> Stored {
        Stored::Position(SavedPosition {
            movie_id: movie.into(),
            position_ms,
            updated_at_micros: at,
            watched: WatchedState::default(),
        })
    }

    fn watched(stored: Stored, completed_at: i64) -> Stored {
        let Stored::Position(saved) = stored else {
            panic!("a position")
        };
        Stored::Position(SavedPosition {
            watched: WatchedState {
                watched: true,
                last_completed_at_micros: Some(completed_at),
            },
            ..saved
        })
    }

    fn deleted(movie: &str, at: i64) -> Stored {
        Stored::Deleted {
            movie_id: movie.into(),
            deleted_at_micros: at,
            watched: WatchedState::default(),
        }
    }

    const E1: &str = "night-shift-s1e1";
    const E2: &str = "night-shift-s1e2";
    const E3: &str = "night-shift-s1e3";

    /// A row as `(movie_id, kind, position_ms, activity)`.
    type Offered = (String, RowKind, u64, i64);

    /// The rows offered.
    fn offered(titles: &[Stored]) -> Vec<Offered> {
        let catalog = catalog();
        rows(&catalog, titles, policy())
            .into_iter()
            .map(|r| {
                (
                    r.movie.movie_id.clone(),
                    r.kind,
                    r.position_ms,
                    r.activity_at_micros,
                )
            })
            .collect()
    }

    fn row(movie: &str, kind: RowKind, position_ms: u64, at: i64) -> Offered {
        (movie.to_owned(), kind, position_ms, at)
    }

    use RowKind::{InProgress, UpNext};

    #[test]
    fn standalone_titles_are_offered_while_in_progress() {
        let titles = [
            at("clock", 30_000, 10),
            at("testcard", 45_000, 30),
            at("countdown", 59_000, 20), // ≥ 95 % of 60 s
            at("inception", 0, 40),
            deleted("nope-not-in-catalog", 50),
        ];
        assert_eq!(
            offered(&titles),
            [
                row("testcard", InProgress, 45_000, 30),
                row("clock", InProgress, 30_000, 10)
            ]
        );
        // Completed by `ended` below the threshold, and not played since.
        assert!(offered(&[watched(at("clock", 30_000, 10), 10)]).is_empty());
        // Played again after that completion: in progress.
        assert_eq!(
            offered(&[watched(at("clock", 30_000, 10), 5)]),
            [row("clock", InProgress, 30_000, 10)]
        );
        let barely = ListPolicy {
            min_resume_ms: 40_000,
            ..policy()
        };
        let catalog = catalog();
        assert!(rows(&catalog, &[at("clock", 30_000, 10)], barely).is_empty());
    }

    #[test]
    fn a_series_is_offered_once_from_its_newest_activity() {
        // (titles, expected rows)
        let table: Vec<(Vec<Stored>, Vec<Offered>)> = vec![
            // In progress.
            (
                vec![at(E1, 5_000, 10)],
                vec![row(E1, InProgress, 5_000, 10)],
            ),
            // Finished (≥ 95 % of 20 s): the next one, from 0.
            (vec![at(E1, 19_000, 10)], vec![row(E2, UpNext, 0, 10)]),
            // Finished by `ended`/marked watched below the threshold.
            (
                vec![watched(at(E1, 10_000, 10), 10)],
                vec![row(E2, UpNext, 0, 10)],
            ),
            // The next one has a position of its own, older: offered there.
            (
                vec![at(E2, 7_000, 5), at(E1, 20_000, 10)],
                vec![row(E2, UpNext, 7_000, 10)],
            ),
            // …unless that position is itself finished: from 0, as the stream would.
            (
                vec![at(E2, 19_500, 5), at(E1, 20_000, 10)],
                vec![row(E2, UpNext, 0, 10)],
            ),
            // …or deleted.
            (
                vec![deleted(E2, 5), at(E1, 20_000, 10)],
                vec![row(E2, UpNext, 0, 10)],
            ),
            // The newest activity wins over older episodes.
            (
                vec![at(E1, 20_000, 10), at(E2, 8_000, 20)],
                vec![row(E2, InProgress, 8_000, 20)],
            ),
            (
                vec![at(E1, 20_000, 10), at(E2, 20_000, 20)],
                vec![row(E3, UpNext, 0, 20)],
            ),
            // After the last episode: nothing.
            (vec![at(E1, 20_000, 10), at(E3, 20_000, 30)], vec![]),
            // A delete of the newest activity hides the series: removing the
            // up-next row (a delete of the next episode) does exactly that.
            (vec![at(E1, 20_000, 10), deleted(E2, 20)], vec![]),
            (vec![at(E1, 5_000, 10), deleted(E1, 20)], vec![]),
            // A delete older than the newest activity does not.
            (
                vec![deleted(E1, 5), at(E2, 5_000, 10)],
                vec![row(E2, InProgress, 5_000, 10)],
            ),
            // Rewatching a finished episode: in progress again, still watched.
            (
                vec![watched(at(E1, 3_000, 30), 10)],
                vec![row(E1, InProgress, 3_000, 30)],
            ),
            // Back at 0 (marked unwatched): nothing.
            (vec![at(E1, 0, 10)], vec![]),
        ];
        for (i, (titles, expected)) in table.into_iter().enumerate() {
            assert_eq!(offered(&titles), expected, "row {i}");
        }
    }

    #[test]
    fn series_and_standalone_rows_share_one_order() {
        let titles = [
            at("clock", 30_000, 20),
            at(E1, 20_000, 30),
            at("testcard", 10_000, 10),
        ];
        assert_eq!(
            offered(&titles),
            [
                row(E2, UpNext, 0, 30),
                row("clock", InProgress, 30_000, 20),
                row("testcard", InProgress, 10_000, 10),
            ]
        );
    }
}
