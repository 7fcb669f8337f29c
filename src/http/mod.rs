//! The HTTP surface: one router per route family, assembled by [`app`] with the
//! layers every route shares (body limit, CORS, browser security headers,
//! request tracing without query strings, the static demo).

pub mod catalog;
pub mod openapi;
pub mod ops;
pub mod progress;
pub mod security_headers;
pub mod session;
pub mod session_auth;
pub mod session_ticket;
pub mod stream;

use std::path::Path;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Request, header};
use axum::routing::any;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// The whole application as a router, ready for `axum::serve` or `oneshot` tests.
pub fn app(state: AppState, static_dir: &Path) -> Router {
    let http = state.http.clone();
    let api = Router::new()
        .merge(stream::router())
        .merge(progress::router())
        .merge(session::router())
        .merge(session_ticket::router())
        .merge(catalog::router(http.demo_login))
        .merge(openapi::router(http.demo_login))
        .route("/api/{*path}", any(api_not_found))
        .layer(DefaultBodyLimit::max(http.max_body_bytes));
    let mut router = Router::new()
        .merge(api)
        .merge(ops::router())
        .fallback_service(ServeDir::new(static_dir).append_index_html_on_directories(true))
        .with_state(state);
    if let Some(cors) = cors_layer(&http.allowed_origins) {
        router = router.layer(cors);
    }
    let router = security_headers::with_security_headers(router);
    with_request_tracing(router)
}

/// Wraps `router` in the request tracing every route gets (public so that the
/// benchmarks' bare sink runs the same HTTP layer).
///
/// The span carries the path only: query strings may hold access tokens. It is
/// a debug span: at the default `info` level it costs nothing per request.
pub fn with_request_tracing(router: Router) -> Router {
    router.layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
    }))
}

/// `?movie_id=…`, the query of the read path and of the session upgrade.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MovieQuery {
    /// The title: a `movie_id` of the catalog.
    #[param(required = true, min_length = 1, example = "inception")]
    movie_id: Option<String>,
}

impl MovieQuery {
    /// The catalog entry named by the query: 400 when missing, 404 when unknown.
    pub fn movie<'s>(&self, state: &'s AppState) -> Result<&'s crate::catalog::Movie, ApiError> {
        let movie_id = self
            .movie_id
            .as_deref()
            .filter(|id| !id.is_empty())
            .ok_or_else(|| ApiError::BadRequest("movie_id is required".into()))?;
        state.movie(movie_id)
    }
}

async fn api_not_found() -> ApiError {
    ApiError::NotFound("no such API route".into())
}

/// CORS for the configured origins; none configured means same-origin only.
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
    )
}
