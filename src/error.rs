//! The HTTP error type: every API failure becomes one JSON shape,
//! `{"error": <code>, "message": <text>}`, with the right status.
//!
//! Module errors convert into [`ApiError`] once, at the edge. 5xx bodies never
//! carry internals: the cause is logged and the client gets a generic message.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

/// An error answered to an HTTP client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No valid token: 401 with `WWW-Authenticate: Bearer`.
    #[error("{0}")]
    Unauthorized(String),
    /// The request is malformed: 400.
    #[error("{0}")]
    BadRequest(String),
    /// The caller may not do this (e.g. a browser origin that is not allowed): 403.
    #[error("{0}")]
    Forbidden(String),
    /// The title or position does not exist: 404.
    #[error("{0}")]
    NotFound(String),
    /// The body is over the configured limit: 413.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// A JSON body without `Content-Type: application/json`: 415.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests or sessions for this user: 429.
    #[error("{0}")]
    TooManyRequests(String),
    /// Over a rate limit: 429 with `Retry-After`.
    #[error("{message}")]
    RateLimited {
        /// What was limited.
        message: String,
        /// Whole seconds until a retry may pass.
        retry_after_secs: u64,
    },
    /// A dependency (the store) or a capacity limit refuses service now: 503.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure: 500 (details are logged, not returned).
    #[error("internal error")]
    Internal(String),
}

/// `Retry-After` of a 429 or 503 without a limit of its own to report (a
/// session cap, a store that does not answer): a short wait, which clients
/// should grow with backoff and jitter while the answer stays the same.
pub const RETRY_AFTER_SECS: u64 = 2;

/// The body of every error answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, machine-readable: one per status.
    error: ErrorCode,
    /// Human-readable detail.
    message: String,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 401.
    Unauthorized,
    /// 400.
    BadRequest,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 413.
    PayloadTooLarge,
    /// 415.
    UnsupportedMediaType,
    /// 429.
    TooManyRequests,
    /// 503.
    Unavailable,
    /// 500.
    Internal,
}

impl ApiError {
    /// The status and the stable machine-readable code of this error.
    fn status_and_code(&self) -> (StatusCode, ErrorCode) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, ErrorCode::BadRequest),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::PayloadTooLarge),
            Self::UnsupportedMediaType(_) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::UnsupportedMediaType,
            ),
            Self::TooManyRequests(_) | Self::RateLimited { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyRequests)
            }
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            Self::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        }
        let retry_after = match &self {
            Self::RateLimited {
                retry_after_secs, ..
            } => Some(HeaderValue::from(*retry_after_secs)),
            Self::TooManyRequests(_) | Self::Unavailable(_) => {
                Some(HeaderValue::from(RETRY_AFTER_SECS))
            }
            _ => None,
        };
        let body = ErrorBody {
            error: code,
            message: self.to_string(),
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(retry_after) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::warn!(error = %e, "store request failed");
        Self::Unavailable("the position store is unavailable, try again".into())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(rejection.body_text()),
            _ => Self::BadRequest(rejection.body_text()),
        }
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::BadRequest(rejection.body_text())
    }
}

/// `Json<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Query<T>` whose rejections are [`ApiError`]s.
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
