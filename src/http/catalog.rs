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
use crate::error::{ApiError, ApiJson};
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

#[derive(Serialize)]
struct CatalogResponse {
    movies: Vec<Movie>,
}

async fn catalog(State(state): State<AppState>) -> axum::Json<CatalogResponse> {
    axum::Json(CatalogResponse {
        movies: state.catalog.movies().to_vec(),
    })
}

/// Body of the demo login.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoLogin {
    /// Any user name; the demo trusts it.
    user_id: String,
}

#[derive(Serialize)]
struct TokenResponse {
    token: String,
}

async fn demo_token(
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
