//! When a failed request is worth another attempt, and how long to wait first.
//!
//! Pure decisions, no I/O: the store's retry loop (writes, and a put's
//! read-back) asks [`is_transient`] about each error and sleeps
//! [`backoff_delay`] between attempts. Retrying a write is safe only because
//! every write carries `USING TIMESTAMP` (replaying one that landed changes
//! nothing); this module must not be used for anything that is not idempotent.

use std::time::Duration;

use scylla::errors::{DbError, ExecutionError, PrepareError, RequestAttemptError};

use crate::store::StoreError;

/// Whether `error` may go away by itself: timeouts, unreachable or overloaded
/// nodes, broken connections. Errors about the request itself (syntax, schema,
/// permissions, serialization) are permanent.
pub fn is_transient(error: &ExecutionError) -> bool {
    match error {
        ExecutionError::RequestTimeout(_)
        | ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::SchemaAgreementError(_)
        | ExecutionError::MetadataError(_) => true,
        ExecutionError::PrepareError(e) => match e {
            PrepareError::ConnectionPoolError(_) => true,
            PrepareError::AllAttemptsFailed { first_attempt } => {
                attempt_is_transient(first_attempt)
            }
            _ => false,
        },
        ExecutionError::LastAttemptError(attempt) => attempt_is_transient(attempt),
        _ => false,
    }
}

fn attempt_is_transient(error: &RequestAttemptError) -> bool {
    match error {
        RequestAttemptError::BrokenConnectionError(_)
        | RequestAttemptError::UnableToAllocStreamId => true,
        RequestAttemptError::DbError(db_error, _) => matches!(
            db_error,
            DbError::WriteTimeout { .. }
                | DbError::ReadTimeout { .. }
                | DbError::WriteFailure { .. }
                | DbError::ReadFailure { .. }
                | DbError::Unavailable { .. }
                | DbError::Overloaded
                | DbError::IsBootstrapping
                | DbError::ServerError
                | DbError::TruncateError
                | DbError::RateLimitReached { .. }
        ),
        _ => false,
    }
}

/// The store error for a failed request: transient failures say the cluster is
/// unavailable (callers keep their data and try later), the rest are backend
/// errors.
pub fn store_error(what: &str, error: &ExecutionError) -> StoreError {
    if is_transient(error) {
        StoreError::Unavailable(format!("{what}: {error}"))
    } else {
        StoreError::Backend(format!("{what}: {error}"))
    }
}

/// How long to wait before retry number `retry` (1 for the first retry):
/// `base` doubled per retry, capped at `max`, then jittered down to between half
/// and all of it so that writers failing together do not retry in lockstep.
pub fn backoff_delay(retry: u32, base: Duration, max: Duration) -> Duration {
    let doubling = 2u32.saturating_pow(retry.saturating_sub(1));
    let ceiling = base.saturating_mul(doubling).min(max);
    let half = ceiling / 2;
    half + half.mul_f64(rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_bounded_jitter() {
        let base = Duration::from_millis(50);
        let max = Duration::from_secs(1);
        for (retry, ceiling_ms) in [
            (1, 50),
            (2, 100),
            (3, 200),
            (4, 400),
            (5, 800),
            (6, 1000),
            (40, 1000),
        ] {
            for _ in 0..20 {
                let delay = backoff_delay(retry, base, max);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "retry {retry}: {delay:?}"
                );
            }
        }
    }

    #[test]
    fn timeouts_and_overload_are_transient_request_errors_are_not() {
        let timeout = ExecutionError::RequestTimeout(Duration::from_secs(1));
        assert!(is_transient(&timeout));
        let write_timeout = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::WriteTimeout {
                consistency: scylla::statement::Consistency::One,
                received: 0,
                required: 1,
                write_type: scylla::errors::WriteType::Simple,
            },
            "timed out".into(),
        ));
        assert!(is_transient(&write_timeout));
        let overloaded = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Overloaded,
            "".into(),
        ));
        assert!(is_transient(&overloaded));
        let invalid = ExecutionError::LastAttemptError(RequestAttemptError::DbError(
            DbError::Invalid,
            "unconfigured table".into(),
        ));
        assert!(!is_transient(&invalid));
        assert!(matches!(
            store_error("put", &invalid),
            StoreError::Backend(_)
        ));
        assert!(matches!(
            store_error("put", &timeout),
            StoreError::Unavailable(_)
        ));
    }
}
