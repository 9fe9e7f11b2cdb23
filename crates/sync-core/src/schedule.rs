//! When jobs run: the scheduler's spread and the worker's retry backoff.
//!
//! Pure functions of their inputs, so the scheduler and the worker stay
//! thin and the rules are tested here.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

/// The most a scheduled job is delayed to spread load by default (SQS
/// allows 15 min).
pub const MAX_SPREAD: Duration = Duration::from_secs(60);

/// The longest retry backoff a failed job waits before its next attempt.
pub const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);

/// The first retry's backoff; each further attempt doubles it.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(15);

/// How long a pending chunk counts as queued after its job was sent: a
/// re-plan leaves it out for that long. Its job normally ends well within
/// it (every delivery's backoff summed is under 40 minutes), and clears the
/// mark; a message kept longer by a huge backlog is only sent twice, which
/// the chunk's lease makes harmless.
pub const CHUNK_QUEUED_FOR: Duration = Duration::from_secs(6 * 3600);

/// A stable number in `0..n` from `key` and `salt`.
fn spread_of(key: &str, salt: &str, n: u64) -> u64 {
    if n == 0 {
        return 0;
    }
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    salt.hash(&mut hasher);
    hasher.finish() % n
}

/// How long a scheduled job of a practice waits on the queue before a
/// worker may take it: a spread (by practice and tick) of up to a tenth of
/// the practice's interval, at most `max_spread` (normally [`MAX_SPREAD`]), so thousands of
/// practices that fall due in the same tick arrive over a minute rather
/// than in one second. Deterministic for a (practice, tick), so a retried
/// tick does not reshuffle.
pub fn spread_delay(
    practice_id: &str,
    tick_id: &str,
    interval_minutes: i16,
    max_spread: Duration,
) -> Duration {
    let interval = Duration::from_secs(u64::from(interval_minutes.max(1).unsigned_abs()) * 60);
    let window = (interval / 10).min(max_spread);
    let millis = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(spread_of(practice_id, tick_id, millis))
}

/// When a newly connected (or re-enabled) practice's first incremental
/// cycle falls due, as an offset from now: somewhere in its first
/// interval, by practice, so practices added in bulk do not share a phase.
pub fn first_due_offset(practice_id: &str, interval_minutes: i16) -> Duration {
    let interval = u64::from(interval_minutes.max(1).unsigned_abs()) * 60;
    Duration::from_secs(spread_of(practice_id, "phase", interval))
}

/// How long a job that failed on its `receive_count`-th delivery waits
/// before the next: `first` (normally [`FIRST_BACKOFF`]) doubled per
/// attempt, capped at `max` (normally [`MAX_BACKOFF`]), with up to a
/// quarter added by `jitter_key` (the job id) so that jobs failing together
/// do not retry together.
pub fn retry_backoff(
    receive_count: u32,
    jitter_key: &str,
    first: Duration,
    max: Duration,
) -> Duration {
    let doublings = receive_count.saturating_sub(1).min(16);
    let base = first.saturating_mul(1u32 << doublings).min(max);
    let quarter = u64::try_from((base / 4).as_millis()).unwrap_or(0);
    let jitter = Duration::from_millis(spread_of(jitter_key, "retry", quarter + 1));
    (base + jitter).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_stays_within_a_tenth_of_the_interval_and_a_minute() {
        for interval in [2i16, 5, 15, 60] {
            let cap = Duration::from_secs(u64::from(interval.unsigned_abs()) * 6).min(MAX_SPREAD);
            for i in 0..500 {
                let d = spread_delay(&format!("practice-{i}"), "tick-1", interval, MAX_SPREAD);
                assert!(d < cap, "{d:?} >= {cap:?} for a {interval} min interval");
            }
        }
    }

    #[test]
    fn practices_due_together_are_spread_over_the_window() {
        // 2,000 practices on 15 minutes: no second of the minute holds more
        // than a small share of them.
        let mut per_second = [0u32; 60];
        for i in 0..2000 {
            let d = spread_delay(&format!("practice-{i}"), "tick-7", 15, MAX_SPREAD);
            per_second[usize::try_from(d.as_secs()).unwrap_or(0).min(59)] += 1;
        }
        let busiest = per_second.iter().copied().max().unwrap_or(0);
        assert!(
            busiest < 80,
            "the busiest second got {busiest} of 2,000 jobs"
        );
        assert!(per_second.iter().all(|&n| n > 0), "every second gets some");
    }

    #[test]
    fn spread_is_stable_for_a_tick() {
        assert_eq!(
            spread_delay("p", "t", 15, MAX_SPREAD),
            spread_delay("p", "t", 15, MAX_SPREAD)
        );
        assert_eq!(spread_delay("p", "t", 15, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn first_due_lies_within_the_first_interval() {
        for i in 0..200 {
            let d = first_due_offset(&format!("p{i}"), 5);
            assert!(d < Duration::from_secs(300));
        }
    }

    #[test]
    fn backoff_doubles_then_caps() {
        let backoff = |n| retry_backoff(n, "job", FIRST_BACKOFF, MAX_BACKOFF);
        let first = backoff(1);
        assert!(first >= FIRST_BACKOFF && first <= FIRST_BACKOFF + FIRST_BACKOFF / 4);
        assert!(backoff(3) >= FIRST_BACKOFF * 4);
        assert_eq!(backoff(40), MAX_BACKOFF);
        assert!(backoff(0) >= FIRST_BACKOFF);
    }
}
