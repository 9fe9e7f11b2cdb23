//! The fleet's request budget per organization: how requests are granted,
//! and how the rate adapts to what Ascend answers.
//!
//! Ascend's limits are per organization, dynamic, and answered with `429`
//! and `Retry-After`. Every worker process draws from one
//! [`OrgBudget`] per organization (kept by the store, claimed in small
//! slices), so adding workers never adds load on the vendor.
//!
//! - Pacing is a send schedule (generic cell rate algorithm): a grant of
//!   `n` requests gets the next `n` free slots, one every `1 / rate`
//!   seconds. Slots left unused while the organization was idle are
//!   credited up to [`Policy::burst`] of sending.
//! - The rate is AIMD: a `429` lowers it by [`Policy::decrease`] (at most
//!   once per [`Policy::decrease_gap`], as one overload answers several
//!   requests at once); it then grows back by [`Policy::slow_growth`] of
//!   the limit per second while the last `429` is recent
//!   ([`Policy::calm`]), and by [`Policy::fast_growth`] after that. So a
//!   limit Ascend lowers is found within seconds and held with few `429`s,
//!   and a limit it raises again is found within minutes.
//! - A `Retry-After` pauses the whole organization: no grant until it has
//!   passed.

use std::time::Duration;

use model::OrgBudget;
use time::OffsetDateTime;

/// The longest pause a `Retry-After` can set (whatever the server said).
pub const MAX_PAUSE: Duration = Duration::from_secs(24 * 3600);

/// How the budget behaves. [`Policy::new`] has the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The fleet's limit per organization, requests per second, for an
    /// organization with no setting of its own.
    pub default_limit: f64,
    /// How much idle time is credited as sending that may go at once.
    pub burst: Duration,
    /// A `429` multiplies the rate by this.
    pub decrease: f64,
    /// The shortest time between two decreases.
    pub decrease_gap: Duration,
    /// How long after a `429` the rate grows slowly.
    pub calm: Duration,
    /// Growth per second, as a share of the limit, within `calm` of a `429`.
    pub slow_growth: f64,
    /// Growth per second, as a share of the limit, afterwards.
    pub fast_growth: f64,
    /// The rate never falls below this share of the limit.
    pub floor: f64,
}

impl Policy {
    /// The defaults for a fleet limit of `default_limit` requests per second
    /// per organization.
    pub fn new(default_limit: f64) -> Policy {
        Policy {
            default_limit,
            burst: Duration::from_millis(500),
            decrease: 0.7,
            decrease_gap: Duration::from_secs(1),
            calm: Duration::from_secs(30),
            slow_growth: 0.002,
            fast_growth: 0.02,
            floor: 0.05,
        }
    }

    fn limit(&self, budget: &OrgBudget) -> f64 {
        budget
            .configured
            .filter(|l| l.is_finite() && *l > 0.0)
            .unwrap_or(self.default_limit)
            .max(MIN_RATE)
    }
}

/// No rate is below this (one request every 100 s).
const MIN_RATE: f64 = 0.01;

/// What a claim gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// `count` requests: the first may be sent at `first_at` (which may be
    /// in the past: send at once), each next one `interval` later.
    Granted {
        /// When the first may be sent.
        first_at: OffsetDateTime,
        /// The spacing between them.
        interval: Duration,
        /// How many.
        count: u32,
    },
    /// The organization is paused (a `Retry-After`) until then; nothing was
    /// granted.
    Paused {
        /// The end of the pause.
        until: OffsetDateTime,
    },
}

/// A fresh budget for `organization_id`, at the limit, with nothing owed.
pub fn fresh(organization_id: &str, policy: &Policy, now: OffsetDateTime) -> OrgBudget {
    let mut budget = OrgBudget {
        organization_id: organization_id.to_owned(),
        rate: 0.0,
        limit: 0.0,
        configured: None,
        next_at: now,
        paused_until: None,
        decreased_at: None,
        adjusted_at: now,
        granted: 0,
        throttled: 0,
    };
    budget.limit = policy.limit(&budget);
    budget.rate = budget.limit;
    budget
}

/// Grants up to `want` (at least one) requests from `budget` at `now`.
pub fn claim(budget: &mut OrgBudget, policy: &Policy, now: OffsetDateTime, want: u32) -> Claim {
    grow(budget, policy, now);
    if let Some(until) = budget.paused_until {
        if until > now {
            return Claim::Paused { until };
        }
        budget.paused_until = None;
    }
    let count = want.max(1);
    let interval = Duration::from_secs_f64(1.0 / budget.rate);
    let credit = now - budget_burst(policy);
    let first_at = budget.next_at.max(credit);
    budget.next_at = first_at + interval * count;
    budget.granted = budget.granted.saturating_add(i64::from(count));
    Claim::Granted {
        first_at,
        interval,
        count,
    }
}

/// Ascend answered `429` (with `retry_after`, if it said) at `now`: lower
/// the rate (once per [`Policy::decrease_gap`]) and pause the organization.
pub fn throttle(
    budget: &mut OrgBudget,
    policy: &Policy,
    now: OffsetDateTime,
    retry_after: Option<Duration>,
) {
    grow(budget, policy, now);
    budget.throttled = budget.throttled.saturating_add(1);
    let recent = budget
        .decreased_at
        .is_some_and(|at| now - at < time_duration(policy.decrease_gap));
    if !recent {
        let floor = (budget.limit * policy.floor).max(MIN_RATE);
        budget.rate = (budget.rate * policy.decrease).max(floor);
        budget.decreased_at = Some(now);
    }
    if let Some(wait) = retry_after {
        let until = now + time_duration(wait.min(MAX_PAUSE));
        if budget.paused_until.is_none_or(|current| current < until) {
            budget.paused_until = Some(until);
        }
    }
}

/// Brings the rate up to date at `now`: the limit as it is configured now,
/// and the growth since the last adjustment.
fn grow(budget: &mut OrgBudget, policy: &Policy, now: OffsetDateTime) {
    budget.limit = policy.limit(budget);
    let elapsed = (now - budget.adjusted_at).as_seconds_f64().max(0.0);
    let since_decrease = budget
        .decreased_at
        .map_or(f64::INFINITY, |at| (now - at).as_seconds_f64());
    let share = if since_decrease < policy.calm.as_secs_f64() {
        policy.slow_growth
    } else {
        policy.fast_growth
    };
    let rate = if budget.rate.is_finite() && budget.rate > 0.0 {
        budget.rate
    } else {
        budget.limit
    };
    budget.rate = (rate + budget.limit * share * elapsed).clamp(MIN_RATE, budget.limit);
    if now > budget.adjusted_at {
        budget.adjusted_at = now;
    }
}

fn budget_burst(policy: &Policy) -> time::Duration {
    time_duration(policy.burst)
}

fn time_duration(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-04 08:00:00 UTC);

    /// Whole milliseconds, so that sums compare exactly.
    fn secs(s: f64) -> time::Duration {
        time::Duration::milliseconds((s * 1000.0).round() as i64)
    }

    fn granted(claim: &Claim) -> (OffsetDateTime, Duration, u32) {
        match claim {
            Claim::Granted {
                first_at,
                interval,
                count,
            } => (*first_at, *interval, *count),
            Claim::Paused { until } => panic!("paused until {until}"),
        }
    }

    #[test]
    fn grants_are_spaced_at_the_rate_and_idle_time_is_credited_up_to_the_burst() {
        let policy = Policy::new(20.0);
        let mut b = fresh("org", &policy, T0);
        // Idle for a minute: only half a second of sending is credited.
        let now = T0 + secs(60.0);
        let (first, interval, count) = granted(&claim(&mut b, &policy, now, 4));
        assert_eq!(
            (first, interval, count),
            (now - secs(0.5), Duration::from_millis(50), 4)
        );
        // The next claimer queues behind: 10 slots credited, 4 taken.
        let (first, _, _) = granted(&claim(&mut b, &policy, now, 20));
        assert_eq!(first, now - secs(0.3));
        assert_eq!(b.next_at, now + secs(0.7));
        assert_eq!(b.granted, 24);
    }

    #[test]
    fn a_fleet_of_claimers_never_gets_more_than_the_rate_plus_the_burst() {
        let policy = Policy::new(20.0);
        let mut b = fresh("org", &policy, T0);
        // Ten claimers, each taking two slots every 10 ms, for 10 s.
        let mut sendable = 0u32;
        let end = T0 + secs(10.0);
        for step in 0..1000 {
            let now = T0 + secs(f64::from(step) * 0.01);
            for _ in 0..10 {
                let (first, interval, count) = granted(&claim(&mut b, &policy, now, 2));
                for i in 0..count {
                    if first + interval * i <= end {
                        sendable += 1;
                    }
                }
            }
        }
        // 10 s at 20/s plus half a second of credit.
        assert!(sendable <= 210, "{sendable} requests sendable within 10 s");
        assert!(sendable >= 200, "{sendable}: the budget is not used");
    }

    #[test]
    fn a_429_lowers_the_rate_once_per_gap_and_pauses_the_organization() {
        let policy = Policy::new(20.0);
        let mut b = fresh("org", &policy, T0);
        throttle(&mut b, &policy, T0, Some(Duration::from_secs(1)));
        // A burst of 429s answering the same overload lowers it once.
        throttle(
            &mut b,
            &policy,
            T0 + secs(0.1),
            Some(Duration::from_secs(1)),
        );
        assert!((b.rate - 14.0).abs() < 0.01, "rate {}", b.rate);
        assert_eq!(b.throttled, 2);
        assert_eq!(
            claim(&mut b, &policy, T0 + secs(0.5), 1),
            Claim::Paused {
                until: T0 + secs(1.1)
            }
        );
        let (first, interval, _) = granted(&claim(&mut b, &policy, T0 + secs(1.2), 1));
        assert!(first <= T0 + secs(1.2));
        assert!(interval > Duration::from_millis(60));
    }

    #[test]
    fn a_long_retry_after_pauses_for_it_and_at_most_a_day() {
        let policy = Policy::new(10.0);
        let mut b = fresh("org", &policy, T0);
        throttle(&mut b, &policy, T0, Some(Duration::from_secs(3600)));
        assert_eq!(
            claim(&mut b, &policy, T0 + secs(3599.0), 1),
            Claim::Paused {
                until: T0 + secs(3600.0)
            }
        );
        assert!(matches!(
            claim(&mut b, &policy, T0 + secs(3600.0), 1),
            Claim::Granted { .. }
        ));
        throttle(
            &mut b,
            &policy,
            T0,
            Some(Duration::from_secs(10 * 24 * 3600)),
        );
        assert_eq!(b.paused_until, Some(T0 + secs(24.0 * 3600.0)));
        // A shorter pause never shortens a longer one.
        throttle(&mut b, &policy, T0, Some(Duration::from_secs(1)));
        assert_eq!(b.paused_until, Some(T0 + secs(24.0 * 3600.0)));
    }

    #[test]
    fn a_lowered_limit_is_found_within_seconds_and_the_rate_grows_back_slowly_then_faster() {
        let policy = Policy::new(20.0);
        let mut b = fresh("org", &policy, T0);
        // Ascend now allows 10/s: each second brings a 429 while above it.
        let mut t = 0.0;
        while b.rate > 10.0 {
            throttle(&mut b, &policy, T0 + secs(t), Some(Duration::from_secs(1)));
            t += 1.0;
        }
        assert!(t <= 2.0, "found after {t} s");
        let found = b.rate;
        // Within the calm period, growth is slow: 20 s adds under 1/s.
        let _ = claim(&mut b, &policy, T0 + secs(t + 20.0), 1);
        assert!(b.rate - found < 1.0, "{found} -> {}", b.rate);
        // After it, the limit is reached again within a minute.
        let _ = claim(&mut b, &policy, T0 + secs(t + 90.0), 1);
        assert!((b.rate - 20.0).abs() < 1e-9, "rate {}", b.rate);
    }

    #[test]
    fn the_rate_never_falls_below_the_floor_nor_exceeds_the_configured_limit() {
        let policy = Policy::new(20.0);
        let mut b = fresh("org", &policy, T0);
        for i in 0..100 {
            throttle(&mut b, &policy, T0 + secs(f64::from(i) * 2.0), None);
        }
        assert!((b.rate - 1.0).abs() < 1e-9, "rate {}", b.rate);
        // The organization's own setting replaces the fleet default.
        b.configured = Some(5.0);
        b.decreased_at = None;
        let _ = claim(&mut b, &policy, T0 + secs(10_000.0), 1);
        assert_eq!((b.limit, b.rate), (5.0, 5.0));
        // A nonsensical setting falls back to the default.
        b.configured = Some(f64::NAN);
        let _ = claim(&mut b, &policy, T0 + secs(10_001.0), 1);
        assert_eq!(b.limit, 20.0);
    }
}
