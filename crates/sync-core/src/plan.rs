//! The initial sync's plan: chunks that many workers can pull in parallel.
//!
//! A chunk is one resource, one id range `[from, to)` and optionally one
//! priority window (a date filter). Ranges are found by bisecting the id
//! space with counts (`meta.pagination.total` of id-range filters) until each
//! holds at most the target number of records. Ids are numbers of very
//! different lengths (`999`, `7000000457903`), so the bisection is numeric.
//!
//! Invariants:
//! - The ranges of one segment (window) cover the whole id space with no gap
//!   and no overlap, so no record is left out by the plan, whatever the
//!   counts said: a range counted as empty is merged into a neighbour, never
//!   dropped.
//! - Windowed segments are used only when their counts add up to the
//!   resource's total (records whose date is null would match neither side of
//!   a window); otherwise the window is pulled first and the whole resource
//!   after it.
//! - Records that change while the plan runs are caught by the incremental
//!   sync, whose first watermark precedes the plan ([`crate::watermark`]).

use std::future::Future;

use ascend_client::{Filter, Resource};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

/// Largest id the store can hold (`BIGINT`); the last range ends here and is
/// open-ended in requests.
pub const ID_END: u64 = i64::MAX as u64;

/// Records per chunk the planner aims for.
pub const DEFAULT_CHUNK_TARGET: u64 = 50_000;

/// Priority of the data reports need first.
pub const PRIORITY_FIRST: i16 = 0;
/// Priority of history.
pub const PRIORITY_HISTORY: i16 = 1;

/// Ids `from <= id < to`. A range ending at [`ID_END`] is open-ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub from: u64,
    pub to: u64,
}

impl IdRange {
    /// Every id.
    pub const ALL: IdRange = IdRange {
        from: 0,
        to: ID_END,
    };

    /// The id clauses of this range.
    pub fn filter(self) -> Filter {
        let mut filter = Filter::new();
        if self.from > 0 {
            filter = filter.ge("id", self.from);
        }
        if self.to < ID_END {
            filter = filter.lt("id", self.to);
        }
        filter
    }

    fn split(self) -> Option<(IdRange, IdRange)> {
        let mid = self.from + (self.to - self.from) / 2;
        (mid > self.from && mid < self.to).then_some((
            IdRange {
                from: self.from,
                to: mid,
            },
            IdRange {
                from: mid,
                to: self.to,
            },
        ))
    }
}

/// A date window on one field: `field >= from` and/or `field < to`. Stored
/// as JSON in the chunk's `filter` column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkWindow {
    pub field: String,
    /// Inclusive lower bound, as the API compares it (a timestamp or a date).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Exclusive upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

impl ChunkWindow {
    pub fn filter(&self) -> Filter {
        let mut filter = Filter::new();
        if let Some(from) = &self.from {
            filter = filter.ge(&self.field, from.as_str());
        }
        if let Some(to) = &self.to {
            filter = filter.lt(&self.field, to.as_str());
        }
        filter
    }

    /// The text stored in a chunk's `filter` column ("" for no window).
    pub fn encode(window: Option<&ChunkWindow>) -> String {
        window
            .and_then(|w| serde_json::to_string(w).ok())
            .unwrap_or_default()
    }

    /// Reads a chunk's `filter` column back.
    pub fn decode(text: &str) -> Result<Option<ChunkWindow>, PlanError> {
        if text.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(text)
            .map(Some)
            .map_err(|e| PlanError::BadWindow {
                text: text.chars().take(200).collect(),
                detail: e.to_string(),
            })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(
        "a chunk's stored window {text:?} is not readable ({detail}); re-plan the practice's initial sync"
    )]
    BadWindow { text: String, detail: String },
}

/// One chunk of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedChunk {
    pub resource: Resource,
    pub range: IdRange,
    pub window: Option<ChunkWindow>,
    pub priority: i16,
    /// Records the counts said the chunk holds.
    pub expected: u64,
}

/// The chunks of one resource and the count calls it took.
#[derive(Debug, Clone, Default)]
pub struct ChunkPlan {
    pub chunks: Vec<PlannedChunk>,
    /// Records of the resource in scope, by the first count.
    pub total: u64,
    pub count_calls: u32,
}

/// The data reports need first, as windows, for `now`:
/// appointments from 90 days back to a year ahead; procedures and
/// transactions of the last 90 days. Reference resources have no window:
/// they are small and come first whole.
pub fn priority_window(resource: Resource, now: OffsetDateTime) -> Option<ChunkWindow> {
    let day = |d: OffsetDateTime| d.date().to_string();
    let instant =
        |d: OffsetDateTime| ascend_client::format_timestamp(d.replace_time(time::Time::MIDNIGHT));
    match resource {
        Resource::Appointments => Some(ChunkWindow {
            field: "start".into(),
            from: instant(now - Duration::days(90)),
            to: instant(now + Duration::days(366)),
        }),
        Resource::PatientProcedures | Resource::Transactions => Some(ChunkWindow {
            field: "date".into(),
            from: Some(day(now - Duration::days(90))),
            to: None,
        }),
        _ => None,
    }
}

/// Priority of a resource pulled whole (outside any window).
pub fn whole_priority(resource: Resource) -> i16 {
    match resource {
        Resource::Locations
        | Resource::Providers
        | Resource::Operatories
        | Resource::InsuranceCarriers => PRIORITY_FIRST,
        _ => PRIORITY_HISTORY,
    }
}

/// Splits `span` (or every id) into contiguous ranges of at most `target`
/// records of `base`, by bisection with counts, widened to the whole id
/// space at both ends. Neighbours are merged while they fit, so a range
/// counted empty disappears into its neighbour and the cover has no gap.
async fn bisect<E, F, Fut>(
    base: &Filter,
    span: IdRange,
    total: u64,
    target: u64,
    plan: &mut ChunkPlan,
    count: &mut F,
) -> Result<Vec<(IdRange, u64)>, E>
where
    F: FnMut(Filter) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
{
    let start = if span.from < span.to {
        span
    } else {
        IdRange::ALL
    };
    let mut leaves: Vec<(IdRange, u64)> = Vec::new();
    // Depth-first, left before right, so leaves come out in id order.
    let mut stack = vec![(start, total)];
    while let Some((range, n)) = stack.pop() {
        let split = if n > target { range.split() } else { None };
        match split {
            Some((left, right)) => {
                let left_n = count(base.clone().and(left.filter())).await?;
                plan.count_calls += 1;
                stack.push((right, n.saturating_sub(left_n)));
                stack.push((left, left_n));
            }
            None => leaves.push((range, n)),
        }
    }
    let mut merged: Vec<(IdRange, u64)> = Vec::new();
    for (range, n) in leaves {
        match merged.last_mut() {
            Some((last, last_n)) if *last_n + n <= target && last.to == range.from => {
                last.to = range.to;
                *last_n += n;
            }
            _ => merged.push((range, n)),
        }
    }
    if let Some((first, _)) = merged.first_mut() {
        first.from = 0;
    }
    if let Some((last, _)) = merged.last_mut() {
        last.to = ID_END;
    }
    Ok(merged)
}

/// Plans one resource. `count(filter)` answers how many records of the
/// resource match `filter` (the base filter is already part of it).
///
/// `span` is where the resource's ids lie as far as the caller knows
/// (its first id, and one past its last): bisection starts there instead
/// of the whole 63-bit id space, which saves a count per empty level.
/// The first and last chunks are still widened to the ends of the id
/// space, so a record created outside `span` meanwhile is not lost.
pub async fn plan_resource<E, F, Fut>(
    resource: Resource,
    base: &Filter,
    now: OffsetDateTime,
    target: u64,
    span: IdRange,
    mut count: F,
) -> Result<ChunkPlan, E>
where
    F: FnMut(Filter) -> Fut,
    Fut: Future<Output = Result<u64, E>>,
{
    let target = target.max(1);
    let mut plan = ChunkPlan::default();
    let total = count(base.clone()).await?;
    plan.count_calls += 1;
    plan.total = total;

    let mut segments: Vec<(Option<ChunkWindow>, i16, u64)> = Vec::new();
    match priority_window(resource, now) {
        Some(window) if total > 0 => {
            let inside = count(base.clone().and(window.filter())).await?;
            plan.count_calls += 1;
            let before = match &window.from {
                Some(from) => {
                    let w = ChunkWindow {
                        field: window.field.clone(),
                        from: None,
                        to: Some(from.clone()),
                    };
                    plan.count_calls += 1;
                    Some((w.clone(), count(base.clone().and(w.filter())).await?))
                }
                None => None,
            };
            let after = match &window.to {
                Some(to) => {
                    let w = ChunkWindow {
                        field: window.field.clone(),
                        from: Some(to.clone()),
                        to: None,
                    };
                    plan.count_calls += 1;
                    Some((w.clone(), count(base.clone().and(w.filter())).await?))
                }
                None => None,
            };
            let sides: u64 = before.iter().chain(after.iter()).map(|(_, n)| n).sum();
            segments.push((Some(window), PRIORITY_FIRST, inside));
            if inside + sides == total {
                for (w, n) in before.into_iter().chain(after) {
                    if n > 0 {
                        segments.push((Some(w), PRIORITY_HISTORY, n));
                    }
                }
            } else {
                // Some records match neither side (a null date): pull the
                // whole resource after the window.
                segments.push((None, PRIORITY_HISTORY, total));
            }
        }
        _ => segments.push((None, whole_priority(resource), total)),
    }

    // The id ranges come from counts of id ranges alone (no date window):
    // those are the cheap counts, and a windowed segment holds no more of
    // a range than the range does, so every segment can share them.
    let mut leaves: Option<Vec<(IdRange, u64)>> = None;
    for (window, priority, segment_total) in segments {
        if segment_total <= target {
            plan.chunks.push(PlannedChunk {
                resource,
                range: IdRange::ALL,
                window,
                priority,
                expected: segment_total,
            });
            continue;
        }
        let ranges = match &leaves {
            Some(ranges) => ranges,
            None => leaves.insert(bisect(base, span, total, target, &mut plan, &mut count).await?),
        };
        for &(range, n) in ranges.iter() {
            plan.chunks.push(PlannedChunk {
                resource,
                range,
                window: window.clone(),
                priority,
                // A window's share of the range is not counted: at most n.
                expected: if window.is_some() {
                    n.min(segment_total)
                } else {
                    n
                },
            });
        }
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;

    /// Counts over a fixed id list, reading the id and window clauses back
    /// from the filter text (the test's stand-in for the API).
    fn counter(
        ids: Vec<(u64, Option<&'static str>)>,
    ) -> impl FnMut(Filter) -> std::future::Ready<Result<u64, Infallible>> {
        move |filter: Filter| {
            let text = filter.to_string();
            let mut n = 0;
            'record: for (id, date) in &ids {
                for clause in text.split(',').filter(|c| !c.is_empty()) {
                    let ok = if let Some(v) = clause.strip_prefix("id>=") {
                        *id >= v.parse::<u64>().unwrap_or(0)
                    } else if let Some(v) = clause.strip_prefix("id<") {
                        *id < v.parse::<u64>().unwrap_or(0)
                    } else if let Some(v) = clause.strip_prefix("date>=") {
                        date.is_some_and(|d| d >= v)
                    } else if let Some(v) = clause.strip_prefix("date<") {
                        date.is_some_and(|d| d < v)
                    } else {
                        true
                    };
                    if !ok {
                        continue 'record;
                    }
                }
                n += 1;
            }
            std::future::ready(Ok(n))
        }
    }

    fn covers_everything(chunks: &[PlannedChunk]) {
        let mut by_window: std::collections::BTreeMap<String, Vec<IdRange>> = Default::default();
        for c in chunks {
            by_window
                .entry(ChunkWindow::encode(c.window.as_ref()))
                .or_default()
                .push(c.range);
        }
        for ranges in by_window.values() {
            assert_eq!(ranges.first().map(|r| r.from), Some(0));
            assert_eq!(ranges.last().map(|r| r.to), Some(ID_END));
            assert!(
                ranges.windows(2).all(|w| w[0].to == w[1].from),
                "gap or overlap: {ranges:?}"
            );
        }
    }

    fn now() -> OffsetDateTime {
        time::macros::datetime!(2026-11-28 12:00 UTC)
    }

    #[tokio::test]
    async fn ids_of_mixed_lengths_split_into_chunks_under_the_target() {
        let mut ids: Vec<(u64, Option<&str>)> = (990..1010).map(|i| (i, None)).collect();
        ids.extend((0..5000u64).map(|i| (7_000_000_000_000 + i * 37, None)));
        let plan = plan_resource(
            Resource::Patients,
            &Filter::new(),
            now(),
            1000,
            IdRange::ALL,
            counter(ids),
        )
        .await
        .unwrap_or_default();
        assert!(
            plan.chunks.iter().all(|c| c.expected <= 1000),
            "{:?}",
            plan.chunks
        );
        assert_eq!(plan.chunks.iter().map(|c| c.expected).sum::<u64>(), 5020);
        assert!(
            plan.chunks.len() >= 6 && plan.chunks.len() <= 12,
            "{} chunks",
            plan.chunks.len()
        );
        covers_everything(&plan.chunks);
        assert!(plan.count_calls < 100, "{} count calls", plan.count_calls);
    }

    #[tokio::test]
    async fn a_known_span_saves_counts_and_still_covers_every_id() {
        let ids: Vec<(u64, Option<&str>)> = (0..5000u64)
            .map(|i| (7_000_000_000_000 + i * 37, None))
            .collect();
        let span = IdRange {
            from: 7_000_000_000_000,
            to: 7_000_000_000_000 + 4999 * 37 + 1,
        };
        let whole = plan_resource(
            Resource::Patients,
            &Filter::new(),
            now(),
            1000,
            IdRange::ALL,
            counter(ids.clone()),
        )
        .await
        .unwrap_or_default();
        let spanned = plan_resource(
            Resource::Patients,
            &Filter::new(),
            now(),
            1000,
            span,
            counter(ids),
        )
        .await
        .unwrap_or_default();
        assert_eq!(spanned.chunks.iter().map(|c| c.expected).sum::<u64>(), 5000);
        assert!(spanned.chunks.iter().all(|c| c.expected <= 1000));
        covers_everything(&spanned.chunks);
        assert!(
            spanned.count_calls * 3 < whole.count_calls,
            "{} count calls with the span, {} without",
            spanned.count_calls,
            whole.count_calls
        );
    }

    #[tokio::test]
    async fn large_windows_are_split_by_id_counts_alone() {
        let ids: Vec<(u64, Option<&str>)> = (0..5000u64)
            .map(|i| {
                (
                    1000 + i,
                    Some(if i % 2 == 0 {
                        "2026-11-01"
                    } else {
                        "2001-01-01"
                    }),
                )
            })
            .collect();
        let dated_counts = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let seen = dated_counts.clone();
        let mut inner = counter(ids);
        let plan = plan_resource(
            Resource::PatientProcedures,
            &Filter::new(),
            now(),
            1000,
            IdRange {
                from: 1000,
                to: 6000,
            },
            move |filter: Filter| {
                if filter.to_string().contains("date") {
                    seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                inner(filter)
            },
        )
        .await
        .unwrap_or_default();
        // The window and the history before it: two dated counts, no more.
        assert_eq!(dated_counts.load(std::sync::atomic::Ordering::Relaxed), 2);
        for priority in [PRIORITY_FIRST, PRIORITY_HISTORY] {
            let chunks: Vec<_> = plan
                .chunks
                .iter()
                .filter(|c| c.priority == priority)
                .collect();
            assert!(chunks.len() >= 5, "{chunks:?}");
            assert!(chunks.iter().all(|c| c.expected <= 1000));
        }
        covers_everything(&plan.chunks);
    }

    #[tokio::test]
    async fn a_small_resource_is_one_chunk_over_every_id() {
        let ids = (1..100u64).map(|i| (i, None)).collect();
        let plan = plan_resource(
            Resource::Providers,
            &Filter::new(),
            now(),
            1000,
            IdRange::ALL,
            counter(ids),
        )
        .await
        .unwrap_or_default();
        assert_eq!(plan.chunks.len(), 1);
        assert_eq!(plan.chunks[0].range, IdRange::ALL);
        assert_eq!(plan.chunks[0].priority, PRIORITY_FIRST);
        assert_eq!(plan.count_calls, 1);
    }

    #[tokio::test]
    async fn recent_procedures_come_first_and_history_after() {
        let ids = vec![
            (1, Some("2026-11-01")),
            (2, Some("2020-01-01")),
            (3, Some("2026-10-01")),
            (4, Some("2019-05-05")),
        ];
        let plan = plan_resource(
            Resource::PatientProcedures,
            &Filter::new(),
            now(),
            1000,
            IdRange::ALL,
            counter(ids),
        )
        .await
        .unwrap_or_default();
        let first: Vec<_> = plan
            .chunks
            .iter()
            .filter(|c| c.priority == PRIORITY_FIRST)
            .collect();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].expected, 2);
        assert_eq!(
            first[0]
                .window
                .as_ref()
                .and_then(|w| w.from.clone())
                .as_deref(),
            Some("2026-08-30")
        );
        let history: u64 = plan
            .chunks
            .iter()
            .filter(|c| c.priority == PRIORITY_HISTORY)
            .map(|c| c.expected)
            .sum();
        assert_eq!(
            history, 2,
            "history holds exactly the rest: {:?}",
            plan.chunks
        );
        covers_everything(&plan.chunks);
    }

    #[tokio::test]
    async fn records_without_a_date_make_history_the_whole_resource() {
        let ids = vec![(1, Some("2026-11-01")), (2, None), (3, Some("2001-01-01"))];
        let plan = plan_resource(
            Resource::Transactions,
            &Filter::new(),
            now(),
            1000,
            IdRange::ALL,
            counter(ids),
        )
        .await
        .unwrap_or_default();
        let history: Vec<_> = plan
            .chunks
            .iter()
            .filter(|c| c.priority == PRIORITY_HISTORY)
            .collect();
        assert_eq!(history.len(), 1);
        assert!(
            history[0].window.is_none(),
            "the dateless record would be lost: {history:?}"
        );
        assert_eq!(history[0].expected, 3);
    }

    #[test]
    fn windows_round_trip_through_the_chunk_column() {
        let window = priority_window(Resource::Appointments, now());
        let text = ChunkWindow::encode(window.as_ref());
        assert_eq!(ChunkWindow::decode(&text).ok().flatten(), window);
        assert_eq!(ChunkWindow::decode("").ok().flatten(), None);
        assert!(ChunkWindow::decode("{not json").is_err());
    }

    #[test]
    fn range_filters_are_open_at_the_ends() {
        assert!(IdRange::ALL.filter().is_empty());
        assert_eq!(
            IdRange {
                from: 1000,
                to: ID_END
            }
            .filter()
            .to_string(),
            "id>=1000"
        );
        assert_eq!(IdRange { from: 0, to: 999 }.filter().to_string(), "id<999");
    }
}
