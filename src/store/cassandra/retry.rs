//! When a failed request is worth another attempt by the store, how long to
//! wait first, and what kind of failure it was.
//!
//! Pure decisions, no I/O. There is one retry layer per failure:
//! * the **driver's** default retry policy already retries idempotent
//!   statements on `Overloaded`, server errors, `Unavailable` (once) and broken
//!   connections, on the next node of the plan;
//! * the **store** retries ([`store_retries`]) only what the driver gives back
//!   although a replay is safe for our timestamped writes: a coordinator's
//!   `WriteTimeout` and a client-side timeout, with [`backoff_delay`] between
//!   attempts and without holding its write slot while it waits;
//! * the **session** retries everything else (overload included) forever, with
//!   its own backoff (`session::book`), so an overloaded cluster is not hit
//!   again by the store on top.
//!
//! Retrying a write is safe only because every write carries `USING TIMESTAMP`
//! (replaying one that landed changes nothing); this module must not be used
//! for anything that is not idempotent.

use std::time::Duration;

use scylla::errors::{
    DbError, ExecutionError, NextPageError, NextRowError, PagerExecutionError, PrepareError,
    RequestAttemptError, RequestError,
};

use crate::store::StoreError;

/// Whether the store makes another attempt after `error`: a coordinator's
/// `WriteTimeout` (the driver's default policy retries it only for batch log
/// writes, as it cannot know whether a plain write landed; ours carry their
/// timestamp, so a replay is harmless) and a client-side timeout (the driver
/// never retries past its own timeout). Everything else either was retried by
/// the driver already or will not go away by trying again now.
pub fn store_retries(error: &ExecutionError) -> bool {
    matches!(
        error,
        ExecutionError::RequestTimeout(_)
            | ExecutionError::LastAttemptError(RequestAttemptError::DbError(
                DbError::WriteTimeout { .. },
                _
            ))
    )
}

/// What kind of failure a request met, as metrics count it.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum FailureKind {
    /// A client-side timeout, or a coordinator's read or write timeout.
    Timeout,
    /// Not enough replicas alive, no connection, no node to send to.
    Unavailable,
    /// A node said it is overloaded or rate-limited, or every connection was
    /// busy; also a write that found no free write slot in time.
    Overloaded,
    /// Anything else (schema, syntax, permissions, decoding).
    Other,
}

/// The kind of `error` (see [`FailureKind`]).
pub fn failure_kind(error: &ExecutionError) -> FailureKind {
    match error {
        ExecutionError::RequestTimeout(_) => FailureKind::Timeout,
        ExecutionError::ConnectionPoolError(_)
        | ExecutionError::EmptyPlan
        | ExecutionError::PrepareError(PrepareError::ConnectionPoolError(_)) => {
            FailureKind::Unavailable
        }
        ExecutionError::PrepareError(PrepareError::AllAttemptsFailed { first_attempt }) => {
            attempt_failure_kind(first_attempt)
        }
        ExecutionError::LastAttemptError(attempt) => attempt_failure_kind(attempt),
        _ => FailureKind::Other,
    }
}

/// The kind of a failure met while starting to page through a result.
pub fn pager_failure_kind(error: &PagerExecutionError) -> FailureKind {
    match error {
        PagerExecutionError::NextPageError(page) => page_failure_kind(page),
        PagerExecutionError::PrepareError(PrepareError::ConnectionPoolError(_)) => {
            FailureKind::Unavailable
        }
        _ => FailureKind::Other,
    }
}

/// The kind of a failure met while paging through a result.
pub fn row_failure_kind(error: &NextRowError) -> FailureKind {
    match error {
        NextRowError::NextPageError(page) => page_failure_kind(page),
        _ => FailureKind::Other,
    }
}

fn page_failure_kind(error: &NextPageError) -> FailureKind {
    match error {
        NextPageError::RequestFailure(RequestError::RequestTimeout(_)) => FailureKind::Timeout,
        NextPageError::RequestFailure(
            RequestError::EmptyPlan | RequestError::ConnectionPoolError(_),
        ) => FailureKind::Unavailable,
        NextPageError::RequestFailure(RequestError::LastAttemptError(attempt)) => {
            attempt_failure_kind(attempt)
        }
        _ => FailureKind::Other,
    }
}

fn attempt_failure_kind(error: &RequestAttemptError) -> FailureKind {
    match error {
        RequestAttemptError::BrokenConnectionError(_) => FailureKind::Unavailable,
        RequestAttemptError::UnableToAllocStreamId => FailureKind::Overloaded,
        RequestAttemptError::DbError(db_error, _) => match db_error {
            DbError::ReadTimeout { .. } | DbError::WriteTimeout { .. } => FailureKind::Timeout,
            DbError::Unavailable { .. } | DbError::IsBootstrapping => FailureKind::Unavailable,
            DbError::Overloaded | DbError::RateLimitReached { .. } => FailureKind::Overloaded,
            _ => FailureKind::Other,
        },
        _ => FailureKind::Other,
    }
}

/// Whether `error` may go away by itself: timeouts, unreachable or overloaded
/// nodes, broken connections. Errors about the request itself (syntax, schema,
/// permissions, serialization) are permanent. This says what the caller is
/// told ([`store_error`]), not what the store retries ([`store_retries`]).
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

    fn db_error(error: DbError) -> ExecutionError {
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(error, "injected".into()))
    }

    #[test]
    fn the_store_retries_only_what_the_driver_gives_back() {
        let write_timeout = db_error(DbError::WriteTimeout {
            consistency: scylla::statement::Consistency::One,
            received: 0,
            required: 1,
            write_type: scylla::errors::WriteType::Simple,
        });
        let read_timeout = db_error(DbError::ReadTimeout {
            consistency: scylla::statement::Consistency::One,
            received: 0,
            required: 1,
            data_present: false,
        });
        let cases = [
            (
                ExecutionError::RequestTimeout(Duration::from_secs(3)),
                true,
                FailureKind::Timeout,
            ),
            (write_timeout, true, FailureKind::Timeout),
            // The driver's policy decides these (retrying the next node).
            (read_timeout, false, FailureKind::Timeout),
            (
                db_error(DbError::Overloaded),
                false,
                FailureKind::Overloaded,
            ),
            (db_error(DbError::ServerError), false, FailureKind::Other),
            (
                db_error(DbError::Unavailable {
                    consistency: scylla::statement::Consistency::One,
                    required: 1,
                    alive: 0,
                }),
                false,
                FailureKind::Unavailable,
            ),
            (ExecutionError::EmptyPlan, false, FailureKind::Unavailable),
            (db_error(DbError::Invalid), false, FailureKind::Other),
        ];
        for (error, retried, kind) in cases {
            assert_eq!(store_retries(&error), retried, "{error}");
            assert_eq!(failure_kind(&error), kind, "{error}");
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
