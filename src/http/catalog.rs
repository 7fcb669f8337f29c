//! `GET /api/v1/catalog` (public) and the demo login `POST /api/v1/demo/token`,
//! rate-limited per client address (`crate::demo_login_limit`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::routing::{get, post};
use axum::{Extension, Router};
use serde::{Deserialize, Serialize};

use crate::auth::UserId;
use crate::catalog::Movie;
use crate::demo_login_limit::ClientKey;
use crate::error::{ApiError, ApiJson, ErrorBody};
use crate::state::AppState;

/// Lifetime of demo tokens.
const DEMO_TOKEN_TTL_SECONDS: u64 = 12 * 3600;

/// Longest demo `user_id`, in characters. At 4 bytes a character at most,
/// every such name fits a user id's 128 bytes, so the rule can be stated in
/// the OpenAPI document, whose `maxLength` counts characters, not bytes.
const MAX_DEMO_USER_CHARS: usize = 32;

/// The catalog route, and the demo login when it is enabled.
pub fn router(demo_login: bool) -> Router<AppState> {
    let router = Router::new().route("/api/v1/catalog", get(catalog));
    if demo_login {
        router.route("/api/v1/demo/token", post(demo_token))
    } else {
        router
    }
}

/// Every title.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CatalogResponse {
    movies: Vec<Movie>,
}

/// The titles (public).
#[utoipa::path(
    get,
    path = "/api/v1/catalog",
    tag = "catalog",
    responses((status = 200, description = "Every title, in catalog order", body = CatalogResponse)),
    security(())
)]
pub async fn catalog(State(state): State<AppState>) -> axum::Json<CatalogResponse> {
    axum::Json(CatalogResponse {
        movies: state.catalog.movies().to_vec(),
    })
}

/// Body of the demo login.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DemoLogin {
    /// Any user name, which the demo trusts: 1 to 32 characters, no control
    /// character, not only whitespace (surrounding whitespace is dropped).
    // The pattern is [`demo_user`]'s rule: no control character (Cc), and one
    // character that is neither a control nor whitespace (what `str::trim`
    // drops: Unicode White_Space).
    #[schema(
        min_length = 1,
        max_length = 32,
        pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000-\u001f\u007f-\u009f]*$",
        examples("alice")
    )]
    user_id: String,
}

/// A token for the demo.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    token: String,
}

/// Demo mode only: a token for any name (no password), rate-limited per
/// client address. Absent (404) on a server with keys configured.
#[utoipa::path(
    post,
    path = "/api/v1/demo/token",
    tag = "catalog",
    request_body = DemoLogin,
    responses(
        (status = 200, description = "A token for 12 hours", body = TokenResponse),
        (status = 400, description = "Malformed JSON, a missing or unknown field, or a bad `user_id`", body = ErrorBody),
        (status = 413, description = "Body over the size limit", body = ErrorBody),
        (status = 415, description = "Not `Content-Type: application/json`", body = ErrorBody),
        (status = 429, description = "Too many logins from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds until a login passes"))),
    ),
    security(())
)]
pub async fn demo_token(
    State(state): State<AppState>,
    // Present when the accept loop records peers; without it every caller
    // shares one bucket.
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    // Taken as a result so that the limit counts malformed logins too.
    body: Result<ApiJson<DemoLogin>, ApiError>,
) -> Result<axum::Json<TokenResponse>, ApiError> {
    let client = ClientKey::from(peer.map(|Extension(ConnectInfo(addr))| addr.ip()));
    state
        .demo_logins
        .check(client)
        .map_err(|limited| ApiError::RateLimited {
            message: limited.to_string(),
            retry_after_secs: limited.retry_after_secs,
        })?;
    let ApiJson(body) = body?;
    let user = demo_user(&body.user_id)?;
    let token = state
        .keys
        .sign(&user, DEMO_TOKEN_TTL_SECONDS)
        .ok_or_else(|| ApiError::Internal("demo login enabled without a signing key".into()))?;
    Ok(axum::Json(TokenResponse { token }))
}

/// The user a demo login names: `raw` without surrounding whitespace, when it
/// has 1 to [`MAX_DEMO_USER_CHARS`] characters, no control character, and
/// something besides whitespace (the rule [`DemoLogin`] documents).
fn demo_user(raw: &str) -> Result<UserId, ApiError> {
    let refused = || {
        ApiError::BadRequest(format!(
            "user_id must be 1 to {MAX_DEMO_USER_CHARS} characters, not only whitespace, \
             without control characters"
        ))
    };
    let name = raw.trim();
    if name.is_empty()
        || raw.chars().count() > MAX_DEMO_USER_CHARS
        || raw.chars().any(char::is_control)
    {
        return Err(refused());
    }
    UserId::parse(name).map_err(|_| refused())
}

#[cfg(test)]
mod tests {
    use super::demo_user;

    #[test]
    fn demo_names_follow_the_documented_rule() {
        assert_eq!(demo_user("alice").unwrap().as_str(), "alice");
        assert_eq!(demo_user(" bob\u{3000}").unwrap().as_str(), "bob");
        // 32 characters of 4 bytes each: 128 bytes, the most a user id holds.
        let widest = "\u{1F600}".repeat(32);
        assert_eq!(demo_user(&widest).unwrap().as_str(), widest);
        let too_long = "a".repeat(33);
        let too_long_with_spaces = format!("{}  ", "a".repeat(31));
        for refused in [
            "",
            " ",
            "\u{2003}\u{a0}",
            "a\u{7}",
            "\u{99}x",
            "\tx",
            &too_long,
            &too_long_with_spaces,
        ] {
            assert!(demo_user(refused).is_err(), "{refused:?}");
        }
    }
}
