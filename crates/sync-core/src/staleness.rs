//! When a practice's copy counts as stale: the one rule `ascend-sync
//! status` shows and the CloudWatch alarms will use.
//!
//! **The rule.** A practice is stale when its last successful sync is more
//! than two of its intervals plus [`GRACE`] ago: one missed cycle is
//! normal (a retry, a slow page), two are not. A practice that never
//! succeeded is stale once it was registered longer ago than the same
//! limit; before that it is brand new, not stale.
//!
//! **Data missing** ([`PracticeHealth::staleness`], issue 12). A practice
//! whose syncs succeed can still miss data, and is stale then too: when it
//! has records in quarantine (they could not be read or landed), or when one
//! of its resources (one that is offered) has failed for longer than the
//! same limit while the others succeed. A cycle with a failing resource is
//! a `partial` success, so the time rule alone would never see it.
//!
//! **Counts that disagree** (issue 14). It is stale too when a resource's
//! count has not matched Ascend's for
//! [`STALE_MISMATCHES`](crate::completeness::STALE_MISMATCHES)
//! reconciliations in a row (see [`crate::completeness`]): records are
//! missing (or left over) though every sync succeeds.
//!
//! The rule does not look at the practice's status: a paused practice goes
//! stale like any other. Callers that should not alarm on it (paused,
//! removed) filter by status; a practice still in its initial sync goes
//! stale too, which is true (its copy is not complete) and is for the
//! caller to word.

use model::Resource;
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
    /// Why, when it is stale.
    pub reason: Option<StaleReason>,
}

/// Why a practice is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaleReason {
    /// No successful sync within the limit (or never, past it).
    NoRecentSuccess,
    /// Records could not be read or landed and wait in quarantine.
    Quarantined {
        /// How many.
        records: u64,
    },
    /// A resource has failed since then, for longer than the limit.
    ResourceFailing {
        /// Since when.
        since: OffsetDateTime,
    },
    /// A resource's count has not matched Ascend's for
    /// [`STALE_MISMATCHES`](crate::completeness::STALE_MISMATCHES)
    /// reconciliations in a row.
    CountMismatch {
        /// The resource (the one whose mismatch began first).
        resource: Resource,
        /// The first count of the mismatch.
        since: OffsetDateTime,
    },
}

/// A time as the reasons say it (RFC 3339).
fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

impl std::fmt::Display for StaleReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StaleReason::NoRecentSuccess => f.write_str("no recent successful sync"),
            StaleReason::Quarantined { records } => {
                write!(f, "{records} record(s) in quarantine")
            }
            StaleReason::ResourceFailing { since } => {
                write!(f, "a resource has failed since {}", rfc3339(*since))
            }
            StaleReason::CountMismatch { resource, since } => write!(
                f,
                "our count of {resource} has differed from Dentrix Ascend's since {}",
                rfc3339(*since)
            ),
        }
    }
}

/// What the rules need to know of a practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PracticeHealth {
    /// Its last successful sync, if any.
    pub last_success: Option<OffsetDateTime>,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// Its sync interval, in minutes.
    pub interval_minutes: i16,
    /// Its records in quarantine now.
    pub quarantined: u64,
    /// Since when its longest-failing resource (one that is offered) has
    /// failed without a success in between; `None`: none fails.
    pub failing_since: Option<OffsetDateTime>,
    /// The count mismatch found by at least
    /// [`STALE_MISMATCHES`](crate::completeness::STALE_MISMATCHES)
    /// reconciliations in a row that began first (among resources that are
    /// offered), with its resource and its first count
    /// ([`crate::completeness::stale_mismatch`]); `None`: none.
    pub count_mismatch: Option<(Resource, OffsetDateTime)>,
}

impl PracticeHealth {
    /// The whole rule at `now`: the time rule ([`staleness`]), then data
    /// missing: records in quarantine, a resource failing for longer than
    /// [`stale_after`] of the interval, or a count mismatch that outlived
    /// [`STALE_MISMATCHES`](crate::completeness::STALE_MISMATCHES)
    /// reconciliations. The first reason that holds is given.
    #[must_use]
    pub fn staleness(&self, now: OffsetDateTime) -> Staleness {
        let by_time = staleness(
            self.last_success,
            self.created_at,
            self.interval_minutes,
            now,
        );
        if by_time.stale {
            return by_time;
        }
        let reason = if self.quarantined > 0 {
            Some(StaleReason::Quarantined {
                records: self.quarantined,
            })
        } else {
            self.failing_since
                .filter(|since| now - *since > stale_after(self.interval_minutes))
                .map(|since| StaleReason::ResourceFailing { since })
                .or_else(|| {
                    self.count_mismatch
                        .map(|(resource, since)| StaleReason::CountMismatch { resource, since })
                })
        };
        Staleness {
            age: by_time.age,
            stale: reason.is_some(),
            reason,
        }
    }
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
    let (age, stale) = match last_success {
        Some(at) => {
            let age = (now - at).max(Duration::ZERO);
            (Some(age), age > limit)
        }
        None => (None, now - created_at > limit),
    };
    Staleness {
        age,
        stale,
        reason: stale.then_some(StaleReason::NoRecentSuccess),
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
                stale: false,
                reason: None,
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
                stale: false,
                reason: None,
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

    fn health(quarantined: u64, failing_since: Option<OffsetDateTime>) -> PracticeHealth {
        PracticeHealth {
            last_success: Some(NOW - Duration::minutes(5)),
            created_at: LONG_AGO,
            interval_minutes: 15,
            quarantined,
            failing_since,
            count_mismatch: None,
        }
    }

    #[test]
    fn a_fresh_practice_missing_data_is_stale() {
        let clean = health(0, None).staleness(NOW);
        assert!(!clean.stale && clean.reason.is_none());
        let quarantined = health(2, None).staleness(NOW);
        assert!(quarantined.stale);
        assert_eq!(
            quarantined.reason,
            Some(StaleReason::Quarantined { records: 2 })
        );
        assert_eq!(quarantined.age, Some(Duration::minutes(5)));
    }

    #[test]
    fn a_resource_failing_past_the_limit_makes_it_stale_though_others_succeed() {
        // Failing for one cycle: not yet.
        assert!(
            !health(0, Some(NOW - Duration::minutes(20)))
                .staleness(NOW)
                .stale
        );
        assert!(
            !health(0, Some(NOW - Duration::minutes(35)))
                .staleness(NOW)
                .stale
        );
        let since = NOW - Duration::minutes(36);
        let failing = health(0, Some(since)).staleness(NOW);
        assert!(failing.stale);
        assert_eq!(failing.reason, Some(StaleReason::ResourceFailing { since }));
        assert!(
            failing
                .reason
                .is_some_and(|r| r.to_string().contains("since 2026-03-04T11:24:00Z"))
        );
    }

    #[test]
    fn no_recent_success_comes_first() {
        let mut old = health(3, Some(LONG_AGO));
        old.last_success = Some(NOW - Duration::hours(2));
        assert_eq!(
            old.staleness(NOW).reason,
            Some(StaleReason::NoRecentSuccess)
        );
    }

    #[test]
    fn a_mismatch_that_outlived_two_reconciliations_makes_it_stale() {
        let since = NOW - Duration::minutes(3);
        let mut mismatch = health(0, None);
        mismatch.count_mismatch = Some((Resource::Patients, since));
        let s = mismatch.staleness(NOW);
        assert!(s.stale, "however recent: two reconciliations found it");
        assert_eq!(
            s.reason,
            Some(StaleReason::CountMismatch {
                resource: Resource::Patients,
                since,
            })
        );
        assert_eq!(
            s.reason.map(|r| r.to_string()).as_deref(),
            Some(
                "our count of patients has differed from Dentrix Ascend's since \
                 2026-03-04T11:57:00Z"
            )
        );
    }

    #[test]
    fn quarantine_and_failing_resources_come_before_a_mismatch() {
        let mismatch = Some((Resource::Visits, NOW - Duration::hours(3)));
        let mut quarantined = health(4, None);
        quarantined.count_mismatch = mismatch;
        assert_eq!(
            quarantined.staleness(NOW).reason,
            Some(StaleReason::Quarantined { records: 4 })
        );
        let failing_since = NOW - Duration::hours(1);
        let mut failing = health(0, Some(failing_since));
        failing.count_mismatch = mismatch;
        assert_eq!(
            failing.staleness(NOW).reason,
            Some(StaleReason::ResourceFailing {
                since: failing_since
            })
        );
        // A resource failing only briefly leaves the mismatch to be said.
        let mut briefly = health(0, Some(NOW - Duration::minutes(10)));
        briefly.count_mismatch = mismatch;
        assert!(matches!(
            briefly.staleness(NOW).reason,
            Some(StaleReason::CountMismatch {
                resource: Resource::Visits,
                ..
            })
        ));
    }
}
