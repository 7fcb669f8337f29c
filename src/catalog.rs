//! The titles the service knows: ids, durations, stream URLs, and which
//! titles are episodes of a series.
//!
//! Loaded once at start, from a JSON file or the built-in demo catalog, and
//! validated then (unique ids, positive finite durations, complete and
//! consistent episode fields), so every later lookup can trust it. The order of
//! each series' episodes is worked out then too, so "what comes after this
//! episode" is a lookup. Knows nothing about positions.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One title.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Movie {
    /// Stable id used in every API call.
    pub movie_id: String,
    /// Display title.
    pub title: String,
    /// Length of the title in seconds.
    #[schema(exclusive_minimum = 0.0)]
    pub duration_seconds: f64,
    /// Where the player fetches the media (a CDN URL, or a path served by this server).
    pub stream_url: String,
    /// The series this title is an episode of; absent for a standalone title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, nullable = false)]
    pub series_id: Option<String>,
    /// The series' display title (the same for every episode of a series).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub series_title: Option<String>,
    /// Season number of an episode, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    pub season: Option<u32>,
    /// Episode number within its season, from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    pub episode: Option<u32>,
}

/// Where an episode sits in its series, as the validated catalog vouches for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpisodeOf<'a> {
    /// The series.
    pub series_id: &'a str,
    /// The series' display title.
    pub series_title: &'a str,
    /// Season number, from 1.
    pub season: u32,
    /// Episode number within the season, from 1.
    pub episode: u32,
}

impl Movie {
    /// The duration in whole milliseconds, the unit positions are stored in.
    pub fn duration_ms(&self) -> u64 {
        (self.duration_seconds * 1000.0).round() as u64
    }

    /// The title's place in its series, or `None` for a standalone title (or
    /// an episode whose fields are incomplete, which validation refuses).
    pub fn episode_of(&self) -> Option<EpisodeOf<'_>> {
        Some(EpisodeOf {
            series_id: self.series_id.as_deref()?,
            series_title: self.series_title.as_deref()?,
            season: self.season?,
            episode: self.episode?,
        })
    }

    /// Whether any episode field is set.
    fn has_episode_fields(&self) -> bool {
        self.series_id.is_some()
            || self.series_title.is_some()
            || self.season.is_some()
            || self.episode.is_some()
    }
}

/// Why a catalog was refused at start.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The file could not be read.
    #[error("cannot read catalog {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a JSON array of movies.
    #[error("catalog {path} is not a JSON array of movies: {source}")]
    Parse {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A movie breaks a rule.
    #[error("catalog entry {movie_id:?}: {reason}")]
    Invalid {
        /// The offending entry.
        movie_id: String,
        /// The rule it breaks.
        reason: &'static str,
    },
}

/// The validated catalog, cheap to clone.
#[derive(Debug, Clone)]
pub struct Catalog {
    /// Titles in catalog order, as listed to clients.
    movies: Arc<[Movie]>,
    /// `movie_id` → index into `movies`; the key is the one shared copy of the
    /// id that every live session of the title refers to.
    index: Arc<HashMap<Arc<str>, usize>>,
    /// Index of an episode → index of the next one in its series, in
    /// (season, episode) order; absent for standalone titles and last episodes.
    next_episode: Arc<HashMap<usize, usize>>,
}

impl Catalog {
    /// Validates `movies` and builds the lookup index.
    pub fn new(movies: Vec<Movie>) -> Result<Self, CatalogError> {
        let mut index = HashMap::with_capacity(movies.len());
        for (i, movie) in movies.iter().enumerate() {
            let invalid = |reason| CatalogError::Invalid {
                movie_id: movie.movie_id.clone(),
                reason,
            };
            if movie.movie_id.is_empty() || movie.movie_id.len() > 128 {
                return Err(invalid("movie_id must be 1 to 128 bytes"));
            }
            if !(movie.duration_seconds.is_finite() && movie.duration_seconds > 0.0) {
                return Err(invalid("duration_seconds must be a positive number"));
            }
            if movie.stream_url.is_empty() {
                return Err(invalid("stream_url must not be empty"));
            }
            if index
                .insert(Arc::from(movie.movie_id.as_str()), i)
                .is_some()
            {
                return Err(invalid("duplicate movie_id"));
            }
        }
        let next_episode = episode_order(&movies)?;
        Ok(Self {
            movies: movies.into(),
            index: Arc::new(index),
            next_episode: Arc::new(next_episode),
        })
    }

    /// Reads and validates a catalog file.
    pub fn from_file(path: &Path) -> Result<Self, CatalogError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: shown.clone(),
            source,
        })?;
        let movies = serde_json::from_str(&text).map_err(|source| CatalogError::Parse {
            path: shown,
            source,
        })?;
        Self::new(movies)
    }

    /// The seed's example title plus the demo titles served from `/media`, a
    /// three-episode series among them.
    pub fn built_in() -> Self {
        let movie = |id: &str, title: &str, duration: f64, url: &str| Movie {
            movie_id: id.into(),
            title: title.into(),
            duration_seconds: duration,
            stream_url: url.into(),
            series_id: None,
            series_title: None,
            season: None,
            episode: None,
        };
        let night_shift = |episode: u32, title: &str| {
            let id = format!("night-shift-s1e{episode}");
            Movie {
                series_id: Some("night-shift".into()),
                series_title: Some("Night Shift".into()),
                season: Some(1),
                episode: Some(episode),
                ..movie(&id, title, 20.0, &format!("/media/{id}.mp4"))
            }
        };
        Self::new(vec![
            movie("countdown", "Countdown", 60.0, "/media/countdown.mp4"),
            movie("clock", "The Clock", 120.0, "/media/clock.mp4"),
            movie("testcard", "Test Card", 90.0, "/media/testcard.mp4"),
            night_shift(1, "Arrival"),
            night_shift(2, "Midnight"),
            night_shift(3, "Dawn"),
            movie(
                "inception",
                "Inception",
                7800.0,
                "https://cdn.example.com/inception/manifest.m3u8",
            ),
        ])
        .expect("the built-in catalog is valid")
    }

    /// Looks a title up by id.
    pub fn get(&self, movie_id: &str) -> Option<&Movie> {
        self.index.get(movie_id).map(|&i| &self.movies[i])
    }

    /// The catalog's own shared copy of a title's id, so that thousands of
    /// sessions of one title hold one string between them.
    pub fn shared_id(&self, movie_id: &str) -> Option<Arc<str>> {
        self.index
            .get_key_value(movie_id)
            .map(|(id, _)| Arc::clone(id))
    }

    /// Every title, in catalog order.
    pub fn movies(&self) -> &[Movie] {
        &self.movies
    }

    /// The episode after `movie_id` in its series, in (season, episode) order;
    /// `None` for the last episode, a standalone title or an unknown id.
    pub fn next_episode(&self, movie_id: &str) -> Option<&Movie> {
        let at = self.index.get(movie_id)?;
        self.next_episode.get(at).map(|&next| &self.movies[next])
    }
}

/// One series while the catalog is checked: its title, and its episodes as
/// `((season, episode), index into the catalog)`.
type SeriesEpisodes<'a> = (&'a str, Vec<((u32, u32), usize)>);

/// Checks every title's episode fields and orders each series: returns the
/// index of each episode's successor.
fn episode_order(movies: &[Movie]) -> Result<HashMap<usize, usize>, CatalogError> {
    let mut series: HashMap<&str, SeriesEpisodes<'_>> = HashMap::new();
    for (i, movie) in movies.iter().enumerate() {
        if !movie.has_episode_fields() {
            continue;
        }
        let invalid = |reason| CatalogError::Invalid {
            movie_id: movie.movie_id.clone(),
            reason,
        };
        let Some(series_id) = movie.series_id.as_deref() else {
            return Err(invalid("series_title, season and episode need a series_id"));
        };
        if series_id.is_empty() {
            return Err(invalid("series_id must not be empty"));
        }
        let Some(episode) = movie.episode_of() else {
            return Err(invalid(
                "an episode needs series_title, season and episode besides series_id",
            ));
        };
        if episode.season == 0 || episode.episode == 0 {
            return Err(invalid("season and episode count from 1"));
        }
        let (title, episodes) = series
            .entry(series_id)
            .or_insert((episode.series_title, Vec::new()));
        if *title != episode.series_title {
            return Err(invalid(
                "series_title differs from another episode of the same series_id",
            ));
        }
        let place = (episode.season, episode.episode);
        if episodes.iter().any(|(other, _)| *other == place) {
            return Err(invalid(
                "another title is the same season and episode of this series",
            ));
        }
        episodes.push((place, i));
    }
    let mut next = HashMap::new();
    for (_, mut episodes) in series.into_values() {
        episodes.sort_unstable();
        for pair in episodes.windows(2) {
            next.insert(pair[0].1, pair[1].1);
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn movie(id: &str, duration: f64) -> Movie {
        Movie {
            movie_id: id.into(),
            title: id.into(),
            duration_seconds: duration,
            stream_url: "/x".into(),
            series_id: None,
            series_title: None,
            season: None,
            episode: None,
        }
    }

    fn episode(id: &str, series: &str, season: u32, episode: u32) -> Movie {
        Movie {
            series_id: Some(series.into()),
            series_title: Some(format!("The {series}")),
            season: Some(season),
            episode: Some(episode),
            ..movie(id, 60.0)
        }
    }

    fn refusal(movies: Vec<Movie>) -> String {
        match Catalog::new(movies) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn episodes_follow_each_other_in_season_and_episode_order() {
        let catalog = Catalog::new(vec![
            episode("b-s2e1", "b", 2, 1),
            movie("film", 10.0),
            episode("a-s1e2", "a", 1, 2),
            episode("b-s1e10", "b", 1, 10),
            episode("a-s1e1", "a", 1, 1),
            episode("b-s1e2", "b", 1, 2),
        ])
        .unwrap();
        let next = |id| catalog.next_episode(id).map(|m| m.movie_id.as_str());
        assert_eq!(next("a-s1e1"), Some("a-s1e2"));
        assert_eq!(next("a-s1e2"), None);
        assert_eq!(next("b-s1e2"), Some("b-s1e10"));
        assert_eq!(next("b-s1e10"), Some("b-s2e1"));
        assert_eq!(next("b-s2e1"), None);
        assert_eq!(next("film"), None);
        assert_eq!(next("nope"), None);
    }

    #[test]
    fn episode_fields_are_complete_and_consistent() {
        let without_series = Movie {
            series_id: None,
            ..episode("x", "a", 1, 1)
        };
        assert!(refusal(vec![without_series]).contains("need a series_id"));
        let without_number = Movie {
            episode: None,
            ..episode("x", "a", 1, 1)
        };
        assert!(refusal(vec![without_number]).contains("\"x\""));
        let without_title = Movie {
            series_title: None,
            ..episode("x", "a", 1, 1)
        };
        assert!(refusal(vec![without_title]).contains("series_title"));
        assert!(refusal(vec![episode("x", "a", 0, 1)]).contains("from 1"));
        assert!(refusal(vec![episode("x", "a", 1, 0)]).contains("from 1"));
        let twice = refusal(vec![episode("x", "a", 1, 1), episode("y", "a", 1, 1)]);
        assert!(
            twice.contains("\"y\"") && twice.contains("same season"),
            "{twice}"
        );
        let renamed = Movie {
            series_title: Some("Other".into()),
            ..episode("y", "a", 1, 2)
        };
        assert!(refusal(vec![episode("x", "a", 1, 1), renamed]).contains("differs"));
        assert!(refusal(vec![episode("x", "", 1, 1)]).contains("empty"));
        // The same numbers in two series are fine.
        assert!(Catalog::new(vec![episode("x", "a", 1, 1), episode("y", "b", 1, 1)]).is_ok());
    }

    #[test]
    fn standalone_titles_serialize_without_episode_fields() {
        let json = serde_json::to_value(movie("film", 10.0)).unwrap();
        assert!(json.get("series_id").is_none(), "{json}");
        assert!(json.get("season").is_none(), "{json}");
        let json = serde_json::to_value(episode("x", "a", 1, 2)).unwrap();
        assert_eq!(json["series_id"], "a");
        assert_eq!(json["series_title"], "The a");
        assert_eq!(
            (json["season"].as_u64(), json["episode"].as_u64()),
            (Some(1), Some(2))
        );
        // An old catalog file (no episode fields) still reads.
        let old: Movie = serde_json::from_str(
            r#"{"movie_id":"m","title":"M","duration_seconds":1.0,"stream_url":"/m"}"#,
        )
        .unwrap();
        assert_eq!(old.episode_of(), None);
    }

    #[test]
    fn built_in_holds_the_demo_series_in_order() {
        let catalog = Catalog::built_in();
        let ids: Vec<&str> = catalog
            .movies()
            .iter()
            .map(|m| m.movie_id.as_str())
            .collect();
        assert_eq!(
            ids,
            [
                "countdown",
                "clock",
                "testcard",
                "night-shift-s1e1",
                "night-shift-s1e2",
                "night-shift-s1e3",
                "inception"
            ]
        );
        let first = catalog.get("night-shift-s1e1").unwrap();
        assert_eq!(first.title, "Arrival");
        assert_eq!(first.duration_ms(), 20_000);
        assert_eq!(first.stream_url, "/media/night-shift-s1e1.mp4");
        assert_eq!(
            first.episode_of(),
            Some(EpisodeOf {
                series_id: "night-shift",
                series_title: "Night Shift",
                season: 1,
                episode: 1
            })
        );
        let next = |id| catalog.next_episode(id).map(|m| m.title.as_str());
        assert_eq!(next("night-shift-s1e1"), Some("Midnight"));
        assert_eq!(next("night-shift-s1e2"), Some("Dawn"));
        assert_eq!(next("night-shift-s1e3"), None);
    }

    #[test]
    fn every_session_of_a_title_shares_one_copy_of_its_id() {
        let catalog = Catalog::built_in();
        let first = catalog.shared_id("clock").unwrap();
        let second = catalog.shared_id("clock").unwrap();
        assert_eq!(&*first, "clock");
        assert!(Arc::ptr_eq(&first, &second));
        assert!(catalog.shared_id("nope").is_none());
    }

    #[test]
    fn built_in_holds_the_seed_example() {
        let catalog = Catalog::built_in();
        let inception = catalog.get("inception").unwrap();
        assert_eq!(inception.duration_ms(), 7_800_000);
        assert!(catalog.get("nope").is_none());
    }

    #[test]
    fn rejects_duplicates_and_bad_durations() {
        assert!(Catalog::new(vec![movie("a", 1.0), movie("a", 2.0)]).is_err());
        assert!(Catalog::new(vec![movie("a", 0.0)]).is_err());
        assert!(Catalog::new(vec![movie("a", -1.0)]).is_err());
        assert!(Catalog::new(vec![movie("a", f64::NAN)]).is_err());
        assert!(Catalog::new(vec![movie("", 1.0)]).is_err());
        assert!(Catalog::new(vec![movie("a", 1.0), movie("b", 2.0)]).is_ok());
    }
}
