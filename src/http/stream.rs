//! The seed's two paths: `GET /api/v1/stream` (where to start playing) and
//! `POST /api/v1/stream/progress` (the plain HTTP write, for clients without
//! WebSockets).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use super::MovieQuery;
use crate::auth::AuthenticatedUser;
use crate::error::{ApiError, ApiJson, ApiQuery, ErrorBody};
use crate::resume::{completes, position_ms_from_seconds, seconds_from_ms};
use crate::state::AppState;
use crate::store::{PositionWrite, WatchedChange};

/// Routes of the read path and the HTTP write path.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/stream/progress", post(progress))
}

/// Answer of the read path, borrowed from the catalog.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamResponse<'a> {
    /// The title.
    movie_id: &'a str,
    /// Its display title.
    title: &'a str,
    /// Where the player fetches the media.
    stream_url: &'a str,
    /// Its length.
    #[schema(exclusive_minimum = 0.0)]
    duration_seconds: f64,
    /// Where to start playing: the saved position, or 0 when none is saved or
    /// the title was watched to the completion threshold (95 %) or beyond.
    #[schema(minimum = 0.0)]
    resume_position_seconds: f64,
    /// Whether the saved position is at or past the completion threshold.
    completed: bool,
}

/// Where to start playing a title.
#[utoipa::path(
    get,
    path = "/api/v1/stream",
    tag = "playback",
    params(MovieQuery),
    responses(
        (status = 200, description = "The stream and the resume position", body = StreamResponse<'static>),
        (status = 400, description = "`movie_id` is missing or empty", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`", body = ErrorBody),
        (status = 503, description = "The store does not answer and no live session here holds the title", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn stream(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    ApiQuery(query): ApiQuery<MovieQuery>,
) -> Result<Response, ApiError> {
    let movie = query.movie(&state)?;
    let decision = state.resume_decision(&user, movie).await?;
    let body = StreamResponse {
        movie_id: &movie.movie_id,
        title: &movie.title,
        stream_url: &movie.stream_url,
        duration_seconds: movie.duration_seconds,
        resume_position_seconds: seconds_from_ms(decision.position_ms),
        completed: decision.completed,
    };
    // Serialized here because the answer borrows from the catalog.
    let json = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(CONTENT_TYPE, "application/json")], json).into_response())
}

/// Body of the HTTP write path.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// The title.
    #[schema(min_length = 1, examples("inception"))]
    movie_id: String,
    /// Position in seconds; fractions allowed; beyond the title's duration it
    /// is clamped to it.
    #[schema(minimum = 0.0, examples(2843.0))]
    position_seconds: f64,
}

/// Save a position without a WebSocket: stamped when received, written before
/// the answer, last-write-wins by that stamp. A position at or past the
/// completion threshold also marks the title watched.
#[utoipa::path(
    post,
    path = "/api/v1/stream/progress",
    tag = "playback",
    request_body = ProgressBody,
    responses(
        (status = 204, description = "Written"),
        (status = 400, description = "Malformed JSON, a missing or unknown field, or a negative position", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 503, description = "The store does not answer", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn progress(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    ApiJson(body): ApiJson<ProgressBody>,
) -> Result<StatusCode, ApiError> {
    let received_at = state.clock.now_micros();
    let movie = state.movie(&body.movie_id)?;
    let duration_ms = movie.duration_ms();
    let position_ms = position_ms_from_seconds(body.position_seconds, duration_ms)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let watched = if completes(position_ms, duration_ms, state.http.threshold, false) {
        WatchedChange::Completed
    } else {
        WatchedChange::Unchanged
    };
    state
        .store
        .put(PositionWrite {
            user_id: user.as_str().to_owned(),
            movie_id: movie.movie_id.clone(),
            position_ms,
            written_at_micros: received_at,
            watched,
        })
        .await?;
    state.metrics.http_progress_writes.inc();
    Ok(StatusCode::NO_CONTENT)
}
