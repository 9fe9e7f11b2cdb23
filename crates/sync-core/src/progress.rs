//! An initial sync's progress and the time it has left, for `status` and
//! the admin surfaces. No I/O: the caller passes the practice's chunks as
//! the plan made them (each with Ascend's count for its id range and the
//! records landed so far) and when the initial sync started.
//!
//! The honest counts during an initial sync are the chunks': a resource's
//! `landed_count` in its sync state moves only with watermark pages, which
//! come after the chunks. A share chunk (the practice waits to copy a
//! sibling's pull) counts once its copy has landed.

use std::collections::BTreeMap;

use ascend_client::Resource;
use time::{Duration, OffsetDateTime};

/// One chunk of the plan, as far as progress is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkCount {
    pub resource: Resource,
    /// Ascend's count for the chunk's range when it was planned; `None`
    /// when not known.
    pub expected: Option<i64>,
    /// Records landed so far.
    pub landed: i64,
}

/// One resource's part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceProgress {
    pub resource: Resource,
    /// Landed so far.
    pub landed: i64,
    /// Ascend's count; `None` when a chunk's count is not known.
    pub expected: Option<i64>,
}

impl ResourceProgress {
    /// Landed out of expected, 0 to 1 (more landed than expected reads as
    /// 1: records were added while the sync ran); `None` when the count is
    /// not known.
    #[must_use]
    pub fn fraction(&self) -> Option<f64> {
        fraction(self.landed, self.expected)
    }
}

/// The whole initial sync's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct InitialProgress {
    /// Per resource, in [`Resource::ALL`] order (only resources planned).
    pub resources: Vec<ResourceProgress>,
    /// Landed, every resource.
    pub landed: i64,
    /// Expected, every resource; `None` when any count is not known.
    pub expected: Option<i64>,
    /// The estimated time left: the time so far, scaled by what is left
    /// over what has landed. `None` until something has landed, or when
    /// the count or the start is not known. Zero when all has landed.
    pub eta: Option<Duration>,
}

impl InitialProgress {
    /// Landed out of expected, 0 to 1, every resource.
    #[must_use]
    pub fn fraction(&self) -> Option<f64> {
        fraction(self.landed, self.expected)
    }
}

fn fraction(landed: i64, expected: Option<i64>) -> Option<f64> {
    let expected = expected?;
    if expected <= 0 {
        return Some(1.0);
    }
    #[allow(clippy::cast_precision_loss)]
    Some((landed.max(0) as f64 / expected as f64).min(1.0))
}

/// The progress of the chunks `chunks`, started at `started`, at `now`.
#[must_use]
pub fn initial_progress(
    chunks: &[ChunkCount],
    started: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> InitialProgress {
    let mut per: BTreeMap<usize, ResourceProgress> = BTreeMap::new();
    for chunk in chunks {
        let order = Resource::ALL
            .iter()
            .position(|r| *r == chunk.resource)
            .unwrap_or(usize::MAX);
        let entry = per.entry(order).or_insert(ResourceProgress {
            resource: chunk.resource,
            landed: 0,
            expected: Some(0),
        });
        entry.landed = entry.landed.saturating_add(chunk.landed.max(0));
        entry.expected = match (entry.expected, chunk.expected) {
            (Some(sum), Some(n)) => Some(sum.saturating_add(n.max(0))),
            _ => None,
        };
    }
    let resources: Vec<ResourceProgress> = per.into_values().collect();
    let landed = resources.iter().map(|r| r.landed).sum::<i64>();
    let expected = resources
        .iter()
        .map(|r| r.expected)
        .sum::<Option<i64>>()
        .filter(|_| !resources.is_empty());
    let eta = match (expected, started) {
        (Some(expected), _) if landed >= expected => Some(Duration::ZERO),
        (Some(expected), Some(started)) if landed > 0 => {
            let elapsed = (now - started).max(Duration::ZERO);
            #[allow(clippy::cast_precision_loss)]
            let left = (expected - landed) as f64 / landed as f64;
            Some(Duration::seconds_f64(elapsed.as_seconds_f64() * left))
        }
        _ => None,
    };
    InitialProgress {
        resources,
        landed,
        expected,
        eta,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-04 12:00 UTC);

    fn chunk(resource: Resource, expected: Option<i64>, landed: i64) -> ChunkCount {
        ChunkCount {
            resource,
            expected,
            landed,
        }
    }

    #[test]
    fn counts_add_up_per_resource_and_the_time_left_scales_the_time_so_far() {
        let chunks = [
            chunk(Resource::Patients, Some(100), 100),
            chunk(Resource::Patients, Some(100), 50),
            chunk(Resource::Appointments, Some(200), 0),
        ];
        let p = initial_progress(&chunks, Some(NOW - Duration::minutes(3)), NOW);
        assert_eq!(p.landed, 150);
        assert_eq!(p.expected, Some(400));
        let patients = p.resources.first().expect("patients");
        assert_eq!(
            (patients.resource, patients.landed, patients.expected),
            (Resource::Patients, 150, Some(200))
        );
        assert_eq!(p.resources.get(1).map(|r| r.landed), Some(0));
        // 150 landed in 3 minutes; 250 left: 5 minutes more.
        assert_eq!(p.eta, Some(Duration::minutes(5)));
        assert_eq!(p.fraction(), Some(0.375));
    }

    #[test]
    fn no_estimate_before_anything_landed_or_without_counts() {
        let none_landed = [chunk(Resource::Patients, Some(10), 0)];
        assert_eq!(initial_progress(&none_landed, Some(NOW), NOW).eta, None);
        let unknown = [
            chunk(Resource::Patients, Some(10), 5),
            chunk(Resource::Visits, None, 5),
        ];
        let p = initial_progress(&unknown, Some(NOW - Duration::minutes(1)), NOW);
        assert_eq!((p.expected, p.eta, p.fraction()), (None, None, None));
        let no_start = [chunk(Resource::Patients, Some(10), 5)];
        assert_eq!(initial_progress(&no_start, None, NOW).eta, None);
        assert_eq!(initial_progress(&[], Some(NOW), NOW).expected, None);
    }

    #[test]
    fn more_landed_than_counted_is_done_not_more_than_whole() {
        let chunks = [chunk(Resource::Patients, Some(10), 12)];
        let p = initial_progress(&chunks, Some(NOW - Duration::minutes(1)), NOW);
        assert_eq!(p.eta, Some(Duration::ZERO));
        assert_eq!(p.fraction(), Some(1.0));
        assert_eq!(
            p.resources.first().and_then(ResourceProgress::fraction),
            Some(1.0)
        );
    }

    #[test]
    fn a_clock_behind_the_start_gives_no_negative_time() {
        let chunks = [chunk(Resource::Patients, Some(10), 5)];
        let p = initial_progress(&chunks, Some(NOW + Duration::minutes(1)), NOW);
        assert_eq!(p.eta, Some(Duration::ZERO));
    }
}
