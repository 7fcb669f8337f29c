//! The completion policy and position validation: pure functions, no I/O.
//!
//! A title watched up to the completion threshold (95 % by default) counts as
//! finished, so pressing Play starts it from 0. The comparison is done in integer
//! milliseconds and parts per million so that "exactly 95 %" is unambiguous.
//! [`completes`] says which writes mark a title watched; every writer asks it.

/// The fraction of a title from which it counts as watched, in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompletionThreshold {
    /// The threshold × 1,000,000.
    parts_per_million: u64,
}

impl CompletionThreshold {
    /// From a fraction in (0, 1]; the config has already validated it.
    pub fn from_fraction(fraction: f64) -> Self {
        Self {
            parts_per_million: (fraction * 1_000_000.0).round() as u64,
        }
    }

    /// Whether a position at `position_ms` of a `duration_ms` title is at or past
    /// the threshold.
    pub fn is_completed(self, position_ms: u64, duration_ms: u64) -> bool {
        u128::from(position_ms) * 1_000_000
            >= u128::from(duration_ms) * u128::from(self.parts_per_million)
    }
}

/// Where playback should start, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumeDecision {
    /// Start position in milliseconds (0 when nothing is saved or the title is completed).
    pub position_ms: u64,
    /// The saved position is at or past the completion threshold.
    pub completed: bool,
}

/// Applies the completion threshold to a saved position.
pub fn resume_position(
    saved_ms: Option<u64>,
    duration_ms: u64,
    threshold: CompletionThreshold,
) -> ResumeDecision {
    match saved_ms {
        Some(position) if threshold.is_completed(position, duration_ms) => ResumeDecision {
            position_ms: 0,
            completed: true,
        },
        Some(position) => ResumeDecision {
            position_ms: position.min(duration_ms),
            completed: false,
        },
        None => ResumeDecision {
            position_ms: 0,
            completed: false,
        },
    }
}

/// Whether a write of `position_ms` completes the title (marks it watched): it
/// is at or past the threshold, or the player reported the end (`ended`),
/// wherever that was.
pub fn completes(
    position_ms: u64,
    duration_ms: u64,
    threshold: CompletionThreshold,
    ended: bool,
) -> bool {
    ended || threshold.is_completed(position_ms, duration_ms)
}

/// Whether a saved position belongs in continue watching: started (not 0),
/// watched at least `min_resume_ms`, and not past the completion threshold.
pub fn is_in_progress(
    position_ms: u64,
    duration_ms: u64,
    min_resume_ms: u64,
    threshold: CompletionThreshold,
) -> bool {
    position_ms > 0
        && position_ms >= min_resume_ms
        && !threshold.is_completed(position_ms, duration_ms)
}

/// Why a client-supplied position was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PositionError {
    /// Not a finite number (NaN or infinite).
    #[error("position_seconds must be a finite number")]
    NotFinite,
    /// Below zero.
    #[error("position_seconds must not be negative")]
    Negative,
}

/// Validates a position in seconds and converts it to milliseconds, clamped to
/// the title's duration (players report a little past the end).
pub fn position_ms_from_seconds(seconds: f64, duration_ms: u64) -> Result<u64, PositionError> {
    if !seconds.is_finite() {
        return Err(PositionError::NotFinite);
    }
    if seconds < 0.0 {
        return Err(PositionError::Negative);
    }
    let ms = (seconds * 1000.0).round();
    // `as` saturates for values beyond u64, and the clamp bounds it anyway.
    Ok((ms as u64).min(duration_ms))
}

/// Milliseconds to the seconds the API speaks.
pub fn seconds_from_ms(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NINETY_FIVE: f64 = 0.95;

    fn decide(saved_seconds: Option<u64>, duration_seconds: u64) -> ResumeDecision {
        resume_position(
            saved_seconds.map(|s| s * 1000),
            duration_seconds * 1000,
            CompletionThreshold::from_fraction(NINETY_FIVE),
        )
    }

    #[test]
    fn seed_examples() {
        // 2843 < 95 % of 7800 → in progress.
        assert_eq!(
            decide(Some(2843), 7800),
            ResumeDecision {
                position_ms: 2_843_000,
                completed: false
            }
        );
        // 7500 ≥ 7410 → start over.
        assert_eq!(
            decide(Some(7500), 7800),
            ResumeDecision {
                position_ms: 0,
                completed: true
            }
        );
    }

    #[test]
    fn boundary_is_exactly_ninety_five_percent() {
        let threshold = CompletionThreshold::from_fraction(NINETY_FIVE);
        assert!(threshold.is_completed(7_410_000, 7_800_000));
        assert!(!threshold.is_completed(7_409_999, 7_800_000));
        assert!(threshold.is_completed(95, 100));
        assert!(!threshold.is_completed(94, 100));
        assert!(threshold.is_completed(100, 100));
    }

    #[test]
    fn nothing_saved_starts_at_zero() {
        assert_eq!(
            decide(None, 7800),
            ResumeDecision {
                position_ms: 0,
                completed: false
            }
        );
        assert_eq!(
            decide(Some(0), 7800),
            ResumeDecision {
                position_ms: 0,
                completed: false
            }
        );
    }

    #[test]
    fn in_progress_means_started_long_enough_and_not_finished() {
        let threshold = CompletionThreshold::from_fraction(NINETY_FIVE);
        // (position, min resume, expected)
        let table = [
            (0, 0, false),
            (1, 0, true),
            (4_999, 5_000, false),
            (5_000, 5_000, true),
            (94_999, 0, true),
            (95_000, 0, false),
            (100_000, 0, false),
        ];
        for (position, min_resume, expected) in table {
            assert_eq!(
                is_in_progress(position, 100_000, min_resume, threshold),
                expected,
                "{position} with min {min_resume}"
            );
        }
    }

    #[test]
    fn a_write_completes_at_the_threshold_or_at_the_reported_end() {
        let threshold = CompletionThreshold::from_fraction(NINETY_FIVE);
        // (position, ended, expected)
        let table = [
            (0, false, false),
            (94_999, false, false),
            (95_000, false, true),
            (100_000, false, true),
            (10_000, true, true),
            (0, true, true),
        ];
        for (position, ended, expected) in table {
            assert_eq!(
                completes(position, 100_000, threshold, ended),
                expected,
                "{position} ended={ended}"
            );
        }
    }

    #[test]
    fn threshold_of_one_means_only_the_end_completes() {
        let threshold = CompletionThreshold::from_fraction(1.0);
        assert!(!threshold.is_completed(99_999, 100_000));
        assert!(threshold.is_completed(100_000, 100_000));
    }

    proptest::proptest! {
        #[test]
        fn any_position_is_refused_or_within_the_title(seconds in proptest::num::f64::ANY, duration in 1u64..10_000_000) {
            match position_ms_from_seconds(seconds, duration) {
                Ok(ms) => proptest::prop_assert!(ms <= duration && seconds >= 0.0),
                Err(_) => proptest::prop_assert!(!seconds.is_finite() || seconds < 0.0),
            }
        }

        #[test]
        fn resuming_never_starts_past_the_threshold(saved in 0u64..20_000_000, duration in 1u64..10_000_000, fraction in 0.01f64..=1.0) {
            let threshold = CompletionThreshold::from_fraction(fraction);
            let decision = resume_position(Some(saved), duration, threshold);
            proptest::prop_assert!(decision.position_ms <= duration);
            proptest::prop_assert_eq!(decision.completed, threshold.is_completed(saved, duration));
            if decision.completed {
                proptest::prop_assert_eq!(decision.position_ms, 0);
            }
        }
    }

    #[test]
    fn positions_are_validated_and_clamped() {
        assert_eq!(position_ms_from_seconds(12.3456, 60_000), Ok(12_346));
        assert_eq!(position_ms_from_seconds(0.0, 60_000), Ok(0));
        assert_eq!(position_ms_from_seconds(61.0, 60_000), Ok(60_000));
        assert_eq!(position_ms_from_seconds(1e300, 60_000), Ok(60_000));
        assert_eq!(
            position_ms_from_seconds(-0.001, 60_000),
            Err(PositionError::Negative)
        );
        assert_eq!(
            position_ms_from_seconds(f64::NAN, 60_000),
            Err(PositionError::NotFinite)
        );
        assert_eq!(
            position_ms_from_seconds(f64::INFINITY, 60_000),
            Err(PositionError::NotFinite)
        );
    }
}
