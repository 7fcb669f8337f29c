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
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::resume::{position_ms_from_seconds, seconds_from_ms};
use crate::state::AppState;
use crate::store::PositionWrite;

/// Routes of the read path and the HTTP write path.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/stream", get(stream))
        .route("/api/v1/stream/progress", post(progress))
}

/// Answer of the read path, borrowed from the catalog.
#[derive(Debug, Serialize)]
struct StreamResponse<'a> {
    movie_id: &'a str,
    title: &'a str,
    stream_url: &'a str,
    duration_seconds: f64,
    resume_position_seconds: f64,
    completed: bool,
}

async fn stream(
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProgressBody {
    /// The title.
    movie_id: String,
    /// Position in seconds; fractions allowed.
    position_seconds: f64,
}

async fn progress(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    ApiJson(body): ApiJson<ProgressBody>,
) -> Result<StatusCode, ApiError> {
    let received_at = state.clock.now_micros();
    let movie = state.movie(&body.movie_id)?;
    let position_ms = position_ms_from_seconds(body.position_seconds, movie.duration_ms())
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    state
        .store
        .put(PositionWrite {
            user_id: user.as_str().to_owned(),
            movie_id: movie.movie_id.clone(),
            position_ms,
            written_at_micros: received_at,
        })
        .await?;
    state.metrics.http_progress_writes.inc();
    Ok(StatusCode::NO_CONTENT)
}
