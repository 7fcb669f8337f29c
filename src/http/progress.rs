//! Per-user progress: the continue-watching list, one raw position, removing a
//! title from the list, and marking it watched.
//!
//! Every answer comes from `crate::position_reads` (live sessions on this node,
//! the store, tombstones), and continue watching applies `resume::is_in_progress`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, put};
use serde::{Deserialize, Serialize};

use crate::auth::AuthenticatedUser;
use crate::clock::rfc3339;
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::resume::{is_in_progress, seconds_from_ms};
use crate::state::AppState;
use crate::store::PositionWrite;

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
        .route("/api/v1/progress/{movie_id}/watched", put(mark_watched))
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
    /// Titles in progress, most recently updated first.
    items: Vec<ContinueItem>,
}

/// One title in progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ContinueItem {
    /// The title.
    movie_id: String,
    /// Its display title.
    title: String,
    /// Where the viewer is.
    #[schema(minimum = 0.0)]
    position_seconds: f64,
    /// The title's length.
    #[schema(exclusive_minimum = 0.0)]
    duration_seconds: f64,
    /// `position_seconds / duration_seconds`, below the completion threshold.
    #[schema(minimum = 0.0, maximum = 1.0)]
    progress: f64,
    /// When the position was received (RFC 3339, UTC).
    #[schema(format = DateTime)]
    updated_at: String,
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

/// The viewer's titles in progress.
#[utoipa::path(
    get,
    path = "/api/v1/continue-watching",
    tag = "progress",
    params(ListQuery),
    responses(
        (status = 200, description = "Titles in progress (completed and barely started ones left out)", body = ContinueWatching),
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
    let mut positions = state.positions().all(&user).await?;
    positions.sort_by(|a, b| {
        b.updated_at_micros
            .cmp(&a.updated_at_micros)
            .then_with(|| a.movie_id.cmp(&b.movie_id))
    });
    let items = positions
        .into_iter()
        .filter_map(|saved| {
            // Titles no longer in the catalog are skipped, not errors.
            let movie = state.catalog.get(&saved.movie_id)?;
            let duration_ms = movie.duration_ms();
            let http = &state.http;
            is_in_progress(
                saved.position_ms,
                duration_ms,
                http.min_resume_ms,
                http.threshold,
            )
            .then(|| ContinueItem {
                movie_id: movie.movie_id.clone(),
                title: movie.title.clone(),
                position_seconds: seconds_from_ms(saved.position_ms),
                duration_seconds: movie.duration_seconds,
                progress: saved.position_ms as f64 / duration_ms as f64,
                updated_at: rfc3339(saved.updated_at_micros),
            })
        })
        .take(limit)
        .collect();
    Ok(axum::Json(ContinueWatching { items }))
}

/// A viewer's position on one title.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProgressResponse {
    /// The title.
    movie_id: String,
    /// The saved (or live) position.
    #[schema(minimum = 0.0)]
    position_seconds: f64,
    /// When it was received (RFC 3339, UTC).
    #[schema(format = DateTime)]
    updated_at: String,
}

/// The viewer's position on one title.
#[utoipa::path(
    get,
    path = "/api/v1/progress/{movie_id}",
    tag = "progress",
    params(("movie_id" = String, Path, description = "A title of the catalog", min_length = 1, example = "inception")),
    responses(
        (status = 200, description = "The position", body = ProgressResponse),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`, or no position saved", body = ErrorBody),
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
    let saved = state
        .current_position(&user, &movie_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no position saved for {movie_id:?}")))?;
    Ok(axum::Json(ProgressResponse {
        movie_id,
        position_seconds: seconds_from_ms(saved.position_ms),
        updated_at: rfc3339(saved.updated_at_micros),
    }))
}

/// Forget the viewer's position on one title (it leaves continue watching).
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

/// Mark a title watched: its position moves to the end.
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
    state
        .store
        .put(PositionWrite {
            user_id: user.as_str().to_owned(),
            movie_id: movie.movie_id.clone(),
            position_ms: movie.duration_ms(),
            written_at_micros: at,
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
