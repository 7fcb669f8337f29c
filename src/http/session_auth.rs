//! Who opens a session: the credential a session upgrade carries, and the
//! rule for each.
//!
//! Other routes take `Authorization: Bearer` only (`crate::auth`). A browser
//! cannot set that header on a WebSocket, so the upgrade also takes, from best
//! to worst:
//!
//! 1. `?ticket=…` — a single-use ticket from `POST /api/v1/stream/session-ticket`
//!    (`crate::session_tickets`), bound to the user and the title. A URL is
//!    logged by proxies and kept in history; a spent ticket there is worthless.
//! 2. `Sec-WebSocket-Protocol: resume.v1, bearer.<token>` — the token as a
//!    subprotocol, which is a header, so it stays out of URLs. The client must
//!    offer `resume.v1` too: the server selects that one, never echoing the
//!    token, and a browser fails a handshake whose answer names no protocol
//!    it offered.
//! 3. `?access_token=…` — the token in the URL, deprecated, on only while
//!    `--allow-query-token` is (default on, for old players); its first use is
//!    logged as a warning.
//!
//! An upgrade carries exactly one credential; more is a 400, so no client
//! spends a ticket it did not mean to show. Parsing happens in the extractor;
//! checking (a signature, a ticket's redemption) happens in [`authenticate`],
//! which the handler calls once every check that needs no user has passed,
//! so a request refused by one of those leaves its ticket unspent.

use std::sync::Once;

use axum::extract::FromRequestParts;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::http::request::Parts;

use crate::auth::{UserId, bearer_token, form_urlencoded_value};
use crate::error::ApiError;
use crate::state::AppState;

/// The protocol of a session, as a WebSocket subprotocol.
pub const SUBPROTOCOL: &str = "resume.v1";

/// Prefix of the subprotocol that carries a token.
const BEARER_SUBPROTOCOL_PREFIX: &str = "bearer.";

/// The deprecation warning for query tokens is logged once per process.
static QUERY_TOKEN_WARNING: Once = Once::new();

/// The one credential of a session upgrade, not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCredential {
    /// `Authorization: Bearer <token>` (players that can set headers).
    Header(String),
    /// `?ticket=…`.
    Ticket(String),
    /// `Sec-WebSocket-Protocol: …, bearer.<token>`.
    Subprotocol(String),
    /// `?access_token=…` (deprecated).
    QueryToken(String),
}

impl<S: Send + Sync> FromRequestParts<S> for SessionCredential {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let mut found = Vec::with_capacity(1);
        if let Some(token) = bearer_token(parts)? {
            found.push(Self::Header(token.to_owned()));
        }
        if let Some(token) = subprotocol_token(parts)? {
            found.push(Self::Subprotocol(token));
        }
        if let Some(ticket) = form_urlencoded_value(query, "ticket") {
            found.push(Self::Ticket(ticket));
        }
        if let Some(token) = form_urlencoded_value(query, "access_token") {
            found.push(Self::QueryToken(token));
        }
        match found.len() {
            0 => Err(ApiError::Unauthorized(
                "missing credentials: open the session with ?ticket= (from POST \
                 /api/v1/stream/session-ticket), the `bearer.<token>` subprotocol, or \
                 Authorization: Bearer"
                    .into(),
            )),
            1 => Ok(found.remove(0)),
            _ => Err(ApiError::BadRequest(
                "send one credential: a ticket, a bearer subprotocol, an Authorization header \
                 or an access_token, not several"
                    .into(),
            )),
        }
    }
}

/// Checks `credential` for a session on `movie_id` and returns its user. A
/// ticket is spent by this call, whatever the answer.
pub fn authenticate(
    credential: SessionCredential,
    movie_id: &str,
    state: &AppState,
) -> Result<UserId, ApiError> {
    match credential {
        SessionCredential::Header(token) | SessionCredential::Subprotocol(token) => {
            Ok(state.keys.verify(&token)?)
        }
        SessionCredential::Ticket(ticket) => state
            .session_tickets
            .redeem(&ticket, movie_id, state.clock.now_micros())
            .map_err(|e| ApiError::Unauthorized(e.to_string())),
        SessionCredential::QueryToken(_) if !state.http.allow_query_token => {
            Err(ApiError::Unauthorized(
                "tokens in the URL are turned off on this server: open the session with \
                 ?ticket= (from POST /api/v1/stream/session-ticket) or the `bearer.<token>` \
                 subprotocol"
                    .into(),
            ))
        }
        SessionCredential::QueryToken(token) => {
            QUERY_TOKEN_WARNING.call_once(|| {
                tracing::warn!(
                    "a session was opened with ?access_token=, which is deprecated: tokens in \
                     URLs end up in logs and history. Clients should use a session ticket or \
                     the bearer.<token> subprotocol; --allow-query-token false refuses it"
                );
            });
            Ok(state.keys.verify(&token)?)
        }
    }
}

/// The token of a `bearer.<token>` subprotocol, if one is offered; 400 when
/// it comes without `resume.v1`, or twice.
fn subprotocol_token(parts: &Parts) -> Result<Option<String>, ApiError> {
    let mut offers_session_protocol = false;
    let mut tokens = Vec::new();
    for value in parts.headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::BadRequest("malformed Sec-WebSocket-Protocol header".into()))?;
        for protocol in value.split(',').map(str::trim) {
            if protocol == SUBPROTOCOL {
                offers_session_protocol = true;
            } else if let Some(token) = protocol.strip_prefix(BEARER_SUBPROTOCOL_PREFIX) {
                tokens.push(token);
            }
        }
    }
    match tokens.as_slice() {
        [] => Ok(None),
        [_] if !offers_session_protocol => Err(ApiError::BadRequest(format!(
            "a `bearer.<token>` subprotocol must be offered with `{SUBPROTOCOL}`, the one the \
             server selects"
        ))),
        [""] => Err(ApiError::Unauthorized("empty `bearer.` subprotocol".into())),
        [token] => Ok(Some((*token).to_owned())),
        _ => Err(ApiError::BadRequest(
            "offer one `bearer.<token>` subprotocol, not several".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    async fn credential(request: Request<()>) -> Result<SessionCredential, ApiError> {
        let (mut parts, ()) = request.into_parts();
        SessionCredential::from_request_parts(&mut parts, &()).await
    }

    fn upgrade(query: &str) -> axum::http::request::Builder {
        Request::get(format!("/api/v1/stream/session?movie_id=clock{query}"))
    }

    #[tokio::test]
    async fn each_credential_is_read_from_its_place() {
        let header = upgrade("").header("authorization", "Bearer a.b.c");
        assert_eq!(
            credential(header.body(()).unwrap()).await.unwrap(),
            SessionCredential::Header("a.b.c".into())
        );
        let ticket = upgrade("&ticket=t-1_x");
        assert_eq!(
            credential(ticket.body(()).unwrap()).await.unwrap(),
            SessionCredential::Ticket("t-1_x".into())
        );
        let query = upgrade("&access_token=a%2Eb");
        assert_eq!(
            credential(query.body(()).unwrap()).await.unwrap(),
            SessionCredential::QueryToken("a.b".into())
        );
        for offered in [
            &["resume.v1, bearer.a.b.c"][..],
            &["bearer.a.b.c,resume.v1"],
            &["resume.v1", "bearer.a.b.c"],
        ] {
            let mut request = upgrade("");
            for value in offered {
                request = request.header("sec-websocket-protocol", *value);
            }
            assert_eq!(
                credential(request.body(()).unwrap()).await.unwrap(),
                SessionCredential::Subprotocol("a.b.c".into()),
                "{offered:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_bearer_subprotocol_needs_the_session_protocol_beside_it() {
        for offered in ["bearer.a.b.c", "chat, bearer.a.b.c"] {
            let request = upgrade("").header("sec-websocket-protocol", offered);
            let refused = credential(request.body(()).unwrap()).await.unwrap_err();
            assert!(matches!(refused, ApiError::BadRequest(_)), "{refused:?}");
        }
        let twice = upgrade("").header("sec-websocket-protocol", "resume.v1, bearer.a, bearer.b");
        assert!(matches!(
            credential(twice.body(()).unwrap()).await,
            Err(ApiError::BadRequest(_))
        ));
        let empty = upgrade("").header("sec-websocket-protocol", "resume.v1, bearer.");
        assert!(matches!(
            credential(empty.body(()).unwrap()).await,
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[tokio::test]
    async fn none_is_401_and_several_are_400() {
        let none = upgrade("").header("sec-websocket-protocol", "resume.v1");
        assert!(matches!(
            credential(none.body(()).unwrap()).await,
            Err(ApiError::Unauthorized(_))
        ));
        let several = upgrade("&ticket=t").header("authorization", "Bearer a.b.c");
        assert!(matches!(
            credential(several.body(()).unwrap()).await,
            Err(ApiError::BadRequest(_))
        ));
    }
}
