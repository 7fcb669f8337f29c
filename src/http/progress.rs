//! Per-user progress: the continue-watching list, one raw position with its
//! watched state, removing a title from the list, and marking it watched or
//! unwatched.
//!
//! Every answer comes from `crate::position_reads` (live sessions on this node,
//! the store, tombstones); which titles continue watching offers is
//! `crate::continue_watching`'s decision, rendered here.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};

use crate::auth::{AuthenticatedUser, UserId};
use crate::clock::rfc3339;
use crate::continue_watching::{ListPolicy, Row, RowKind, rows};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::resume::seconds_from_ms;
use crate::state::AppState;
use crate::store::{PositionWrite, Stored, WatchedChange};

/// Default number of continue-watching items.
const DEFAULT_LIMIT: usize = 20;
/// Largest `limit` accepted.
pub const MAX_LIMIT: usize = 100;

/// Routes of per-user progress.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/continue-watching", get(continue_watching))
        .route(
            "/api/v1/progress/{movie_id}",
            get(get_progress).delete(delete_progress),
        )
        .route(
            "/api/v1/progress/{movie_id}/watched",
            put(mark_watched).delete(mark_unwatched),
        )
}

/// Query of the continue-watching list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Items at most, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, example = 20)]
    limit: Option<String>,
}

/// The continue-watching row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContinueWatching {
    /// Titles to go on with, most recent activity first: titles in progress,
    /// and at most one row per series.
    items: Vec<ContinueItem>,
}

/// Why a title is offered.
#[derive(Debug, Clone, Copy, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContinueKind {
    /// The viewer is in the middle of this title.
    InProgress,
    /// The viewer finished the episode before this one.
    UpNext,
}

/// One title to go on with.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContinueItem {
    /// The title.
    movie_id: String,
    /// Its display title.
    title: String,
    /// Why it is offered.
    kind: ContinueKind,
    /// Where playing it starts: where the viewer is, or for `up_next` the
    /// episode's own saved position (0 when it has none).
    #[schema(minimum = 0.0)]
    position_seconds: f64,
    /// The title's length.
    #[schema(exclusive_minimum = 0.0)]
    duration_seconds: f64,
    /// `position_seconds / duration_seconds`, below the completion threshold.
    #[schema(minimum = 0.0, maximum = 1.0)]
    progress: f64,
    /// When the activity that put the title here was received (RFC 3339,
    /// UTC): its position, or for `up_next` the last activity on the episode
    /// before it (when it was finished, or marked watched).
    #[schema(format = DateTime)]
    updated_at: String,
    /// The series, for an episode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    series_id: Option<String>,
    /// The series' display title, for an episode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    series_title: Option<String>,
    /// The season, for an episode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    season: Option<u32>,
    /// The episode number within its season, for an episode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    episode: Option<u32>,
}

impl From<Row<'_>> for ContinueItem {
    fn from(row: Row<'_>) -> Self {
        let movie = row.movie;
        let episode = movie.episode_of();
        ContinueItem {
            movie_id: movie.movie_id.clone(),
            title: movie.title.clone(),
            kind: match row.kind {
                RowKind::InProgress => ContinueKind::InProgress,
                RowKind::UpNext => ContinueKind::UpNext,
            },
            position_seconds: seconds_from_ms(row.position_ms),
            duration_seconds: movie.duration_seconds,
            progress: row.position_ms as f64 / movie.duration_ms() as f64,
            updated_at: rfc3339(row.activity_at_micros),
            series_id: episode.map(|e| e.series_id.to_owned()),
            series_title: episode.map(|e| e.series_title.to_owned()),
            season: episode.map(|e| e.season),
            episode: episode.map(|e| e.episode),
        }
    }
}

fn parse_limit(raw: Option<&str>) -> Result<usize, ApiError> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_LIMIT);
    };
    match raw.parse::<usize>() {
        Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        _ => Err(ApiError::BadRequest(format!(
            "limit must be an integer from 1 to {MAX_LIMIT}"
        ))),
    }
}

/// The viewer's titles to go on with: titles in progress, and per series the
/// episode in progress or the next one.
#[utoipa::path(
    get,
    path = "/api/v1/continue-watching",
    tag = "progress",
    params(ListQuery),
    responses(
        (status = 200, description = "Titles in progress (completed and barely started ones left out) and, per series, the episode in progress or the one after a finished episode", body = ContinueWatching),
        (status = 400, description = "`limit` is not an integer from 1 to 100", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn continue_watching(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<axum::Json<ContinueWatching>, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let titles = state.positions().all(&user).await?;
    let policy = ListPolicy {
        threshold: state.http.threshold,
        min_resume_ms: state.http.min_resume_ms,
    };
    let items = rows(&state.catalog, &titles, policy)
        .into_iter()
        .take(limit)
        .map(ContinueItem::from)
        .collect();
    Ok(axum::Json(ContinueWatching { items }))
}

/// A viewer's position on one title, and whether they watched it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressResponse {
    /// The title.
    movie_id: String,
    /// The saved (or live) position; 0 after a delete.
    #[schema(minimum = 0.0)]
    position_seconds: f64,
    /// When it was received, or when the delete was (RFC 3339, UTC).
    #[schema(format = DateTime)]
    updated_at: String,
    /// Whether the title counts as watched: finished (at or past the
    /// completion threshold, or to the player's end) or marked watched, and
    /// not marked unwatched since. Playing it again does not change it.
    watched: bool,
    /// When the title was last finished or marked watched (RFC 3339, UTC);
    /// null if never.
    #[schema(format = DateTime, required = true)]
    last_completed_at: Option<String>,
}

/// The viewer's position on one title, and whether they watched it.
#[utoipa::path(
    get,
    path = "/api/v1/progress/{movie_id}",
    tag = "progress",
    params(("movie_id" = String, Path, description = "A title of the catalog", min_length = 1, example = "inception")),
    responses(
        (status = 200, description = "The position and the watched state", body = ProgressResponse),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`, or neither a position nor a watched state saved", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_progress(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(movie_id): Path<String>,
) -> Result<axum::Json<ProgressResponse>, ApiError> {
    state.movie(&movie_id)?;
    let current = state.current_position(&user, &movie_id).await?;
    let (position_ms, watched) = match &current {
        Some(Stored::Position(saved)) => (saved.position_ms, saved.watched),
        Some(Stored::Deleted { watched, .. }) if watched.is_known() => (0, *watched),
        _ => {
            return Err(ApiError::NotFound(format!(
                "no position saved for {movie_id:?}"
            )));
        }
    };
    let updated_at = current.as_ref().map_or(0, Stored::timestamp_micros);
    Ok(axum::Json(ProgressResponse {
        movie_id,
        position_seconds: seconds_from_ms(position_ms),
        updated_at: rfc3339(updated_at),
        watched: watched.watched,
        last_completed_at: watched.last_completed_at_micros.map(rfc3339),
    }))
}

/// Forget the viewer's position on one title (it leaves continue watching;
/// whether it was watched stays).
#[utoipa::path(
    delete,
    path = "/api/v1/progress/{movie_id}",
    tag = "progress",
    params(("movie_id" = String, Path, description = "A title of the catalog", min_length = 1, example = "inception")),
    responses(
        (status = 204, description = "Deleted (also when nothing was saved)"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_progress(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(movie_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let at = state.clock.now_micros();
    state.movie(&movie_id)?;
    state.store.delete(user.as_str(), &movie_id, at).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Mark a title watched: its position moves to the end, so the next play
/// starts at 0.
#[utoipa::path(
    put,
    path = "/api/v1/progress/{movie_id}/watched",
    tag = "progress",
    params(("movie_id" = String, Path, description = "A title of the catalog", min_length = 1, example = "inception")),
    responses(
        (status = 204, description = "Marked watched"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn mark_watched(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(movie_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let at = state.clock.now_micros();
    let movie = state.movie(&movie_id)?;
    let end = movie.duration_ms();
    write_marked(&state, &user, &movie_id, end, at, WatchedChange::Completed).await
}

/// Mark a title unwatched: it starts over, at 0.
#[utoipa::path(
    delete,
    path = "/api/v1/progress/{movie_id}/watched",
    tag = "progress",
    params(("movie_id" = String, Path, description = "A title of the catalog", min_length = 1, example = "inception")),
    responses(
        (status = 204, description = "Marked unwatched, the position back at 0"),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn mark_unwatched(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    Path(movie_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let at = state.clock.now_micros();
    state.movie(&movie_id)?;
    write_marked(&state, &user, &movie_id, 0, at, WatchedChange::Unwatched).await
}

/// Writes the position and watched state a viewer's mark sets, both stamped
/// `at`, like any write: a position received later wins.
async fn write_marked(
    state: &AppState,
    user: &UserId,
    movie_id: &str,
    position_ms: u64,
    at: i64,
    watched: WatchedChange,
) -> Result<StatusCode, ApiError> {
    state
        .store
        .put(PositionWrite {
            user_id: user.as_str().to_owned(),
            movie_id: movie_id.to_owned(),
            position_ms,
            written_at_micros: at,
            watched,
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::parse_limit;

    #[test]
    fn limits_are_bounded() {
        assert_eq!(parse_limit(None).unwrap(), 20);
        assert_eq!(parse_limit(Some("1")).unwrap(), 1);
        assert_eq!(parse_limit(Some("100")).unwrap(), 100);
        for bad in ["0", "101", "-1", "abc", "", "1.5"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }
}
