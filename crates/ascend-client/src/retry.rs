//! The pure parts of retrying: reading `Retry-After`, the backoff schedule,
//! and how long to wait before the next attempt.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, SystemTime};

use backon::ExponentialBuilder;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::config::ClientConfig;
use crate::error::ClientError;

/// The HTTP-date form `Sun, 06 Nov 1994 08:49:37 GMT` (IMF-fixdate).
const IMF_FIXDATE: &[BorrowedFormatItem<'static>] = format_description!(
    "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
);

/// Reads a `Retry-After` value: whole seconds (`120`) or an HTTP-date. A
/// date in the past means no wait. `None` when unreadable.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurd number of digits still means "a very long time".
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let when = PrimitiveDateTime::parse(value, IMF_FIXDATE)
        .ok()?
        .assume_utc();
    let now = OffsetDateTime::from(now);
    let wait = when - now;
    if wait.is_positive() {
        Duration::try_from(wait).ok()
    } else {
        Some(Duration::ZERO)
    }
}

/// The exponential schedule of backoff ceilings: `base_delay`, doubling up
/// to `max_delay`, one per retry (`max_attempts - 1` of them). Jitter is
/// applied on top by [`next_delay`], not by backon (whose jitter adds to the
/// delay rather than spreading it below it).
pub(crate) fn backoff(config: &ClientConfig) -> ExponentialBuilder {
    ExponentialBuilder::new()
        .with_factor(2.0)
        .with_min_delay(config.base_delay)
        .with_max_delay(config.max_delay)
        .with_max_times(config.max_attempts.saturating_sub(1))
}

/// How long to wait before retrying after `error`, given the schedule's
/// `ceiling` and a uniform `fraction` in `[0, 1)`:
/// - full jitter: `ceiling * fraction`;
/// - on a rate limit with `Retry-After`, never less than the asked wait; if
///   the asked wait is longer than `max_retry_after`, `None` (give up now so
///   that the caller can reschedule).
pub(crate) fn next_delay(
    error: &ClientError,
    ceiling: Duration,
    fraction: f64,
    max_retry_after: Duration,
) -> Option<Duration> {
    let jittered = ceiling.mul_f64(fraction.clamp(0.0, 1.0));
    match error {
        ClientError::RateLimited {
            retry_after: Some(asked),
        } => {
            if *asked > max_retry_after {
                None
            } else {
                Some(jittered.max(*asked))
            }
        }
        _ => Some(jittered),
    }
}

/// A uniform random fraction in `[0, 1)`, good enough for jitter (seeded by
/// the standard library's per-process random hash keys).
pub(crate) fn random_fraction() -> f64 {
    let mut hasher = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    hasher.write_u32(nanos);
    // 53 random bits, as f64 has.
    #[allow(clippy::cast_precision_loss)]
    let value = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    value
}

/// The wait before fetching again a page whose body could not be read,
/// after `fetch` fetches: the transient backoff's ceiling for that retry
/// (`base_delay` doubled per fetch, at most `max_delay`), full jitter.
pub(crate) fn body_delay(config: &ClientConfig, fetch: usize) -> Duration {
    let shift = u32::try_from(fetch.saturating_sub(1))
        .unwrap_or(u32::MAX)
        .min(16);
    let ceiling = config
        .base_delay
        .saturating_mul(1 << shift)
        .min(config.max_delay);
    ceiling.mul_f64(random_fraction())
}

#[cfg(test)]
mod tests {
    use super::*;
    use backon::BackoffBuilder;

    fn at(unix: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(
            parse_retry_after("120", at(0)),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", at(0)), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", at(0)),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(parse_retry_after("-1", at(0)), None);
        assert_eq!(parse_retry_after("1.5", at(0)), None);
        assert_eq!(parse_retry_after("", at(0)), None);
        assert_eq!(parse_retry_after("soon", at(0)), None);
    }

    #[test]
    fn retry_after_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT is 784111777.
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        assert_eq!(
            parse_retry_after(date, at(784_111_777 - 30)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after(date, at(784_111_777 + 30)),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:37", at(0)), None);
    }

    #[test]
    fn rate_limit_wait_is_at_least_retry_after() {
        let max = Duration::from_secs(120);
        let error = ClientError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
        };
        for fraction in [0.0, 0.1, 0.5, 0.999_999] {
            let wait =
                next_delay(&error, Duration::from_millis(500), fraction, max).expect("waits");
            assert!(wait >= Duration::from_secs(2), "{wait:?}");
        }
        let wait = next_delay(&error, Duration::from_secs(10), 0.9, max).expect("waits");
        assert_eq!(wait, Duration::from_secs(9));
        let too_long = ClientError::RateLimited {
            retry_after: Some(Duration::from_secs(3600)),
        };
        assert_eq!(
            next_delay(&too_long, Duration::from_secs(1), 0.5, max),
            None
        );
    }

    #[test]
    fn full_jitter_spreads_below_the_ceiling() {
        let error = ClientError::transient(Some(503), "x");
        let ceiling = Duration::from_secs(8);
        let max = Duration::from_secs(120);
        assert_eq!(next_delay(&error, ceiling, 0.0, max), Some(Duration::ZERO));
        assert_eq!(
            next_delay(&error, ceiling, 0.5, max),
            Some(Duration::from_secs(4))
        );
        assert_eq!(next_delay(&error, ceiling, 7.0, max), Some(ceiling));
        let limited = ClientError::RateLimited { retry_after: None };
        assert_eq!(
            next_delay(&limited, ceiling, 0.25, max),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn random_fractions_are_in_range_and_vary() {
        let values: Vec<f64> = (0..64).map(|_| random_fraction()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let first = values[0];
        assert!(values.iter().any(|v| (v - first).abs() > f64::EPSILON));
    }

    #[test]
    fn backoff_schedule_doubles_up_to_the_cap_and_stops() {
        let config = ClientConfig {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(3),
            ..ClientConfig::default()
        };
        let ceilings: Vec<Duration> = backoff(&config).build().collect();
        assert_eq!(
            ceilings,
            [500, 1000, 2000, 3000, 3000]
                .map(Duration::from_millis)
                .to_vec(),
            "five retries after the first attempt"
        );
        let once = ClientConfig {
            max_attempts: 1,
            ..ClientConfig::default()
        };
        assert_eq!(backoff(&once).build().count(), 0);
    }
}
