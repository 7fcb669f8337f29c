//! `POST /api/v1/stream/session-ticket`: a single-use ticket for one session
//! upgrade, so a browser never puts its bearer token in a URL.
//!
//! Authenticated like any API call (bearer header). The ticket is bound to
//! the caller and the title, lives `--session-ticket-ttl-secs`, and is held by
//! this node only (`crate::session_tickets` says why, docs/protocol.md how a
//! client uses it behind a load balancer).

use axum::Router;
use axum::extract::State;
use axum::http::header::CACHE_CONTROL;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::{Deserialize, Serialize};

use crate::auth::AuthenticatedUser;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::session_tickets::TicketIssueError;
use crate::state::AppState;

/// Route of the ticket request.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/stream/session-ticket", post(issue_ticket))
}

/// Body of the ticket request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// The title the session will play.
    #[schema(min_length = 1, examples("inception"))]
    movie_id: String,
}

/// A ticket for one session upgrade.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketResponse {
    /// Opaque; pass it as `?ticket=` on `GET /api/v1/stream/session`, once.
    ticket: String,
    /// Seconds it stays valid.
    #[schema(minimum = 1)]
    expires_in: u64,
}

/// A single-use ticket for one session upgrade, so that a browser never puts
/// its token in a URL. Valid once, on this node, for the title it names.
#[utoipa::path(
    post,
    path = "/api/v1/stream/session-ticket",
    tag = "playback",
    request_body = TicketRequest,
    responses(
        (status = 200, description = "The ticket (`Cache-Control: no-store`)", body = TicketResponse),
        (status = 400, description = "Malformed JSON, or a missing or unknown field", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 429, description = "This viewer holds the most unused tickets allowed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before asking again"))),
        (status = 503, description = "This node holds the most unused tickets allowed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before asking again"))),
    ),
    security(("bearer" = []))
)]
pub async fn issue_ticket(
    State(state): State<AppState>,
    AuthenticatedUser(user): AuthenticatedUser,
    ApiJson(body): ApiJson<TicketRequest>,
) -> Result<Response, ApiError> {
    let movie = state.movie(&body.movie_id)?;
    let issued = state
        .session_tickets
        .issue(&user, &movie.movie_id, state.clock.now_micros())
        .map_err(|e| match e {
            TicketIssueError::UserFull => ApiError::TooManyRequests(e.to_string()),
            TicketIssueError::NodeFull => ApiError::Unavailable(e.to_string()),
        })?;
    let body = TicketResponse {
        ticket: issued.ticket,
        expires_in: issued.expires_in.as_secs(),
    };
    // A credential: no cache on the way may keep it.
    Ok(([(CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}
