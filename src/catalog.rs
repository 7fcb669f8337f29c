//! The titles the service knows: ids, durations and stream URLs.
//!
//! Loaded once at start, from a JSON file or the built-in demo catalog, and
//! validated then (unique ids, positive finite durations), so every later lookup
//! can trust it. Knows nothing about positions.

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
}

impl Movie {
    /// The duration in whole milliseconds, the unit positions are stored in.
    pub fn duration_ms(&self) -> u64 {
        (self.duration_seconds * 1000.0).round() as u64
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
    /// `movie_id` → index into `movies`.
    index: Arc<HashMap<String, usize>>,
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
            if index.insert(movie.movie_id.clone(), i).is_some() {
                return Err(invalid("duplicate movie_id"));
            }
        }
        Ok(Self {
            movies: movies.into(),
            index: Arc::new(index),
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

    /// The seed's example title plus the demo titles served from `/media`.
    pub fn built_in() -> Self {
        let movie = |id: &str, title: &str, duration: f64, url: &str| Movie {
            movie_id: id.into(),
            title: title.into(),
            duration_seconds: duration,
            stream_url: url.into(),
        };
        Self::new(vec![
            movie("countdown", "Countdown", 60.0, "/media/countdown.mp4"),
            movie("clock", "The Clock", 120.0, "/media/clock.mp4"),
            movie("testcard", "Test Card", 90.0, "/media/testcard.mp4"),
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

    /// Every title, in catalog order.
    pub fn movies(&self) -> &[Movie] {
        &self.movies
    }
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
        }
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
