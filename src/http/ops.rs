//! Operations routes: liveness, readiness and Prometheus metrics. Public, no token.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

/// Routes for operators and orchestrators.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// 200 while the process serves.
async fn healthz() -> &'static str {
    "ok"
}

/// 200 while the store passes its background probes; 503 after a few
/// consecutive failures, until one passes again (`crate::readiness` says why,
/// and what an orchestrator does with it). Answers from memory, at once.
async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
