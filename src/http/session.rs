//! `GET /api/v1/stream/session`: the WebSocket upgrade of a playback session.
//!
//! Everything that can refuse a session is checked *before* the upgrade, so the
//! client gets an ordinary HTTP status and JSON body: credential (401, or 400
//! for several), movie (404), browser origin (403), not an upgrade (400), then
//! the credential is checked (401; a ticket is spent here, so the checks that
//! need no user never spend one), per-user cap (429), process cap (503), and a
//! store that does not answer while no live session on this node holds the
//! title (503: the hello needs the resume point). Then the socket is
//! configured with explicit, small buffers and handed to the session actor,
//! tracked so that shutdown can wait for its final write. A client that
//! offered the `resume.v1` subprotocol gets it selected, and nothing else: a
//! `bearer.<token>` it offered beside it is never echoed.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};
use axum::response::Response;
use axum::routing::get;

use super::MovieQuery;
use super::session_auth::{SUBPROTOCOL, SessionCredential, authenticate};
use crate::error::{ApiError, ApiQuery, ErrorBody};
use crate::session::{AdmissionError, SessionContext, run_session};
use crate::state::{AppState, HttpSettings};

/// Route of the session upgrade.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/stream/session", get(open_session))
}

/// Open a playback session: a WebSocket upgrade (the messages are in
/// docs/asyncapi.yaml). Everything that can refuse it is answered before the
/// upgrade. Authenticated by a bearer header, a session ticket (`?ticket=`),
/// the `bearer.<token>` subprotocol next to `resume.v1`, or (deprecated, when
/// allowed) `?access_token=`.
#[utoipa::path(
    get,
    path = "/api/v1/stream/session",
    tag = "playback",
    params(
        MovieQuery,
        ("ticket" = Option<String>, Query, description = "A session ticket from `POST /api/v1/stream/session-ticket`"),
        ("access_token" = Option<String>, Query, description = "Deprecated: the bearer token in the URL"),
    ),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol (`resume.v1` when offered)"),
        (status = 400, description = "Not a WebSocket upgrade, no `movie_id`, or more than one credential", body = ErrorBody),
        (status = 401, description = "No valid token or ticket", body = ErrorBody),
        (status = 403, description = "A browser origin that is not allowed", body = ErrorBody),
        (status = 404, description = "Unknown `movie_id`", body = ErrorBody),
        (status = 429, description = "This viewer holds the most sessions allowed", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
        (status = 503, description = "This server is full, or the store does not answer", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before trying again"))),
    ),
    security(("bearer" = []), ("session_ticket" = []), ())
)]
pub async fn open_session(
    State(state): State<AppState>,
    credential: SessionCredential,
    // `ticket` or `access_token`, if any, is read by the credential extractor.
    ApiQuery(query): ApiQuery<MovieQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let movie = query.movie(&state)?;
    check_origin(&headers, &state.http)?;
    let upgrade = upgrade.map_err(|e| ApiError::BadRequest(e.body_text()))?;
    let user = authenticate(credential, &movie.movie_id, &state)?;
    let decision = state.resume_decision(&user, movie).await?;
    let movie_id = state
        .catalog
        .shared_id(&movie.movie_id)
        .unwrap_or_else(|| movie.movie_id.as_str().into());
    let ticket = state.sessions.admit(&user, movie_id).map_err(|e| match e {
        AdmissionError::ServerFull => ApiError::Unavailable(e.to_string()),
        AdmissionError::UserFull => ApiError::TooManyRequests(e.to_string()),
    })?;
    // Boxed: axum's upgrade task keeps the callback's slot for the task's
    // whole life, so the callback holds a pointer, not the context itself.
    let context = Box::new(SessionContext {
        duration_ms: movie.duration_ms(),
        resume_position_ms: decision.position_ms,
        shared: Arc::clone(&state.session_shared),
        ticket,
        // Taken now, so shutdown waits for sessions that are upgraded but
        // not started yet.
        tracked: state.session_tasks.token(),
    });
    let http = &state.http;
    Ok(upgrade
        .protocols([SUBPROTOCOL])
        .read_buffer_size(http.ws_read_buffer_bytes)
        .write_buffer_size(http.ws_write_buffer_bytes)
        .max_write_buffer_size(http.max_frame_bytes.max(http.ws_write_buffer_bytes) * 16)
        .max_frame_size(http.max_frame_bytes)
        .max_message_size(http.max_frame_bytes)
        // The session's own future, not one that wraps it: a wrapping async
        // block would keep a second slot for the socket and the context.
        .on_upgrade(move |socket| run_session(socket, *context)))
}

/// Browsers send `Origin`; a cross-site page may only open sessions when its
/// origin is allowed. Clients without `Origin` (players, tools) are not browsers
/// and rely on the token alone.
fn check_origin(headers: &HeaderMap, http: &HttpSettings) -> Result<(), ApiError> {
    let Some(origin) = headers.get(ORIGIN).and_then(|o| o.to_str().ok()) else {
        return Ok(());
    };
    if http
        .allowed_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed == origin)
    {
        return Ok(());
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if !host.is_empty() && origin_host.eq_ignore_ascii_case(host) {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "origin {origin} is not allowed"
    )))
}
