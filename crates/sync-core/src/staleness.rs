//! When a practice's copy counts as stale: the one rule `ascend-sync
//! status` shows and the CloudWatch alarms will use.
//!
//! **The rule.** A practice is stale when its last successful sync is more
//! than two of its intervals plus [`GRACE`] ago: one missed cycle is
//! normal (a retry, a slow page), two are not. A practice that never
//! succeeded is stale once it was registered longer ago than the same
//! limit; before that it is brand new, not stale.
//!
//! The rule does not look at the practice's status: a paused practice goes
//! stale like any other. Callers that should not alarm on it (paused,
//! removed) filter by status; a practice still in its initial sync goes
//! stale too, which is true (its copy is not complete) and is for the
//! caller to word.

use time::{Duration, OffsetDateTime};

/// Added to two intervals before a practice counts as stale.
pub const GRACE: Duration = Duration::minutes(5);

/// How fresh a practice's copy is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Staleness {
    /// Time since the last successful sync (`None`: never succeeded). Zero
    /// if the success is after `now` (clocks differ).
    pub age: Option<Duration>,
    /// Whether the rule counts it stale.
    pub stale: bool,
}

/// How long after its last success (or its registration) a practice with
/// this interval becomes stale: `2 × interval + GRACE`.
pub fn stale_after(interval_minutes: i16) -> Duration {
    Duration::minutes(2 * i64::from(interval_minutes.max(0))) + GRACE
}

/// Applies the rule: `last_success` (the practice's last successful sync,
/// if any), `created_at` (when it was registered), `interval_minutes` (its
/// sync interval), at `now`.
pub fn staleness(
    last_success: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    interval_minutes: i16,
    now: OffsetDateTime,
) -> Staleness {
    let limit = stale_after(interval_minutes);
    match last_success {
        Some(at) => {
            let age = (now - at).max(Duration::ZERO);
            Staleness {
                age: Some(age),
                stale: age > limit,
            }
        }
        None => Staleness {
            age: None,
            stale: now - created_at > limit,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-04 12:00 UTC);
    const LONG_AGO: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[test]
    fn the_limit_is_two_intervals_and_five_minutes() {
        assert_eq!(stale_after(15), Duration::minutes(35));
        assert_eq!(stale_after(2), Duration::minutes(9));
        assert_eq!(stale_after(60), Duration::minutes(125));
    }

    #[test]
    fn stale_only_past_the_limit() {
        let at_limit = staleness(Some(NOW - Duration::minutes(35)), LONG_AGO, 15, NOW);
        assert_eq!(
            at_limit,
            Staleness {
                age: Some(Duration::minutes(35)),
                stale: false
            }
        );
        let past = staleness(
            Some(NOW - Duration::minutes(35) - Duration::seconds(1)),
            LONG_AGO,
            15,
            NOW,
        );
        assert!(past.stale);
        // One missed cycle is not stale.
        assert!(!staleness(Some(NOW - Duration::minutes(29)), LONG_AGO, 15, NOW).stale);
        // The interval matters: 20 minutes is stale at 2, not at 15.
        assert!(staleness(Some(NOW - Duration::minutes(20)), LONG_AGO, 2, NOW).stale);
        assert!(!staleness(Some(NOW - Duration::minutes(20)), LONG_AGO, 15, NOW).stale);
    }

    #[test]
    fn never_succeeded_is_stale_unless_brand_new() {
        let new = staleness(None, NOW - Duration::minutes(10), 15, NOW);
        assert_eq!(
            new,
            Staleness {
                age: None,
                stale: false
            }
        );
        assert!(staleness(None, NOW - Duration::hours(1), 15, NOW).stale);
    }

    #[test]
    fn a_success_in_the_future_is_fresh() {
        let s = staleness(Some(NOW + Duration::minutes(1)), LONG_AGO, 15, NOW);
        assert_eq!(s.age, Some(Duration::ZERO));
        assert!(!s.stale);
    }
}
