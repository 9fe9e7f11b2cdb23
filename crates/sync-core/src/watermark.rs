//! The incremental sync's watermark: the `lastModified` from which to ask
//! again.
//!
//! Invariants:
//! - The watermark is Ascend's time (a `lastModified` we landed), never only
//!   our clock; our clock only ever lowers it, by [`SKEW`], so that a record
//!   changed while a pass ran is asked for again.
//! - Requests ask from the watermark minus [`OVERLAP`]: records sharing a
//!   millisecond, and changes committed late, are fetched again; upserts are
//!   idempotent, so the overlap costs a little traffic, never correctness.
//! - The watermark moves only when a resource's whole pass has landed, in
//!   the transaction of its last page: a crash mid-pass asks again from the
//!   old watermark.

use ascend_client::Filter;
use time::{Duration, OffsetDateTime};

/// How far back each incremental request reaches before the watermark.
pub const OVERLAP: Duration = Duration::minutes(2);

/// Largest difference assumed between our clock and Ascend's.
pub const SKEW: Duration = Duration::minutes(5);

/// The watermark a practice starts incremental sync from: before the
/// initial sync began, so every change made while it ran is asked for.
pub fn first_watermark(initial_started_at: OffsetDateTime) -> OffsetDateTime {
    initial_started_at - SKEW
}

/// The filter of an incremental pass over one resource.
pub fn changed_since(base: Filter, watermark: OffsetDateTime) -> Filter {
    base.ge("lastModified", watermark - OVERLAP)
}

/// The watermark after a complete pass that started at `pass_started_at`
/// (our clock) and landed records up to `max_seen` (Ascend's clock).
pub fn advance(
    current: OffsetDateTime,
    max_seen: Option<OffsetDateTime>,
    pass_started_at: OffsetDateTime,
) -> OffsetDateTime {
    match max_seen {
        Some(seen) => current.max(seen.min(pass_started_at - SKEW)),
        None => current,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn the_watermark_never_moves_back() {
        let current = datetime!(2026-11-28 10:00 UTC);
        assert_eq!(
            advance(
                current,
                Some(datetime!(2026-11-28 09:00 UTC)),
                datetime!(2026-11-28 12:00 UTC)
            ),
            current
        );
        assert_eq!(
            advance(current, None, datetime!(2026-11-28 12:00 UTC)),
            current
        );
    }

    #[test]
    fn a_pass_moves_it_to_what_was_seen_but_not_past_the_pass_start() {
        let current = datetime!(2026-11-28 10:00 UTC);
        let started = datetime!(2026-11-28 12:00 UTC);
        assert_eq!(
            advance(current, Some(datetime!(2026-11-28 11:00 UTC)), started),
            datetime!(2026-11-28 11:00 UTC)
        );
        // A record stamped after the pass began (or a fast Ascend clock)
        // does not carry the watermark past the pass's own start.
        assert_eq!(
            advance(current, Some(datetime!(2026-11-28 12:01 UTC)), started),
            started - SKEW
        );
    }

    #[test]
    fn requests_reach_back_by_the_overlap() {
        let filter = changed_since(Filter::new(), datetime!(2026-11-28 10:00 UTC));
        assert_eq!(filter.to_string(), "lastModified>=2026-11-28T09:58:00.000Z");
        assert_eq!(
            first_watermark(datetime!(2026-11-28 10:00 UTC)),
            datetime!(2026-11-28 09:55 UTC)
        );
    }
}
