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
use crate::error::{ApiError, ApiJson};
use crate::session_tickets::TicketIssueError;
use crate::state::AppState;

/// Route of the ticket request.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/stream/session-ticket", post(issue_ticket))
}

/// Body of the ticket request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketRequest {
    /// The title the session will play.
    movie_id: String,
}

#[derive(Debug, Serialize)]
struct TicketResponse {
    ticket: String,
    expires_in: u64,
}

async fn issue_ticket(
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
