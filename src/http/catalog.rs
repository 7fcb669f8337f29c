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
    /// Any user name; the demo trusts it.
    #[schema(min_length = 1, max_length = 128)]
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
    let user = UserId::parse(body.user_id.trim()).map_err(|_| {
        ApiError::BadRequest("user_id must be 1 to 128 bytes without control characters".into())
    })?;
    let token = state
        .keys
        .sign(&user, DEMO_TOKEN_TTL_SECONDS)
        .ok_or_else(|| ApiError::Internal("demo login enabled without a signing key".into()))?;
    Ok(axum::Json(TokenResponse { token }))
}
