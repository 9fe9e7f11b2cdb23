//! Finding deletes: which landed records Ascend no longer lists.
//!
//! Ascend has no deleted-records feed; a deleted record stops being
//! listed. [`find_deletes`] compares what we hold with what Ascend lists,
//! range by range, cheaply: two counts per range, bisected only where they
//! differ, ids listed only in small ranges that differ, and every candidate
//! confirmed absent by id before it is reported.
//!
//! The two signals of a range (ids `[from, to)` of the practice's records,
//! within the hot window when there is one):
//!
//! 1. **total**: how many records Ascend lists against how many we hold.
//!    A delete lowers it; a create not yet landed raises it, so a create and
//!    a delete in one range can cancel out.
//! 2. **at or before the watermark** (`lastModified <= W`, `W` the
//!    resource's watermark after the cycle's pass): every record Ascend
//!    lists there is landed (the watermark's rule), and a create comes after
//!    `W`, so this count can only differ by records we hold that Ascend no
//!    longer lists that way: deletes, or records changed since the pass.
//!    A create cannot cancel a delete here.
//!
//! **What is guaranteed.** A record deleted in Ascend is found by the first
//! reconciliation of its range that runs once the watermark is at or past
//! the `lastModified` we landed for it (signal 2), and earlier whenever no
//! create not yet landed shares its ranges (signal 1). A record is reported
//! only when a list of its id (with the practice's scope, without any
//! window) does not return it, so a count that drifts while data changes
//! costs calls, never a false delete. Only ranges holding records we hold
//! are split, at the median of our ids, so `d` deletes among `n` records
//! cost about `4 d log2(n / leaf)` calls (two counts a level on the way
//! down, one list of ids in each small range, and the confirmations); an
//! unchanged resource costs two counts.
//!
//! [`plan_cycle`] decides what a cycle reconciles: the hot window every
//! cycle (appointments from 30 days back to a year ahead; all patients),
//! and every resource whole at least once a day, a few per cycle, oldest
//! first, so the calls spread across cycles.

use std::collections::BTreeSet;
use std::future::Future;

use ascend_client::{Filter, Resource};
use time::{Duration, OffsetDateTime};

use crate::plan::IdRange;

/// A range holding at most this many of our records has its ids listed
/// instead of being split further (one page of ids).
pub const LEAF: usize = 200;

/// Ids per page of a listing (`responseFields=id`, the largest page).
pub const IDS_PAGE: u64 = 500;

/// Ids per confirmation call (`id->[...]`): a few kilobytes of URL.
pub const CONFIRM_BATCH: usize = 100;

/// How often every resource is reconciled whole.
pub const DAILY: Duration = Duration::hours(24);

/// Whole-resource reconciliations a cycle takes on at most, besides the hot
/// window: a cycle every hour (the longest interval) still reaches 12
/// resources in 6 hours.
pub const WHOLE_PER_CYCLE: usize = 2;

/// The hot window of appointments: from this far back...
pub const HOT_BACK: Duration = Duration::days(30);
/// ...to this far ahead.
pub const HOT_AHEAD: Duration = Duration::days(366);

/// What a cycle reconciles of one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconcile {
    pub resource: Resource,
    /// Appointments whose `start` is in `[from, to)` only; `None`: the
    /// whole resource.
    pub start_between: Option<(OffsetDateTime, OffsetDateTime)>,
    /// Why: the hot window (every cycle) or the daily whole pass.
    pub daily: bool,
}

impl Reconcile {
    /// Whether it covers the whole resource (and so counts as its daily
    /// reconciliation).
    pub fn is_whole(&self) -> bool {
        self.start_between.is_none()
    }

    /// The window's filter clauses (none for the whole resource).
    pub fn window_filter(&self) -> Filter {
        match self.start_between {
            Some((from, to)) => Filter::new().ge("start", ms(from)).lt("start", ms(to)),
            None => Filter::new(),
        }
    }
}

/// How often resources are reconciled whole, and how many a cycle takes
/// on at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A resource not reconciled whole for this long is due.
    pub whole_every: Duration,
    /// Whole reconciliations a cycle takes on at most, besides the hot
    /// window.
    pub whole_per_cycle: usize,
}

impl Default for Policy {
    /// Every resource at least once a day ([`DAILY`]), a few per cycle
    /// ([`WHOLE_PER_CYCLE`]).
    fn default() -> Self {
        Policy {
            whole_every: DAILY,
            whole_per_cycle: WHOLE_PER_CYCLE,
        }
    }
}

impl Policy {
    /// Every resource whole every cycle: the embedded demo's, whose data
    /// is small and whose record-by-record check expects every delete
    /// captured in the cycle that follows it.
    pub fn every_cycle() -> Self {
        Policy {
            whole_every: Duration::ZERO,
            whole_per_cycle: usize::MAX,
        }
    }
}

/// What a cycle reconciles, from each resource's last whole reconciliation
/// (`None`: never). Resources not given (failed this cycle, without a
/// watermark) are left out by the caller.
pub fn plan_cycle(
    resources: &[(Resource, Option<OffsetDateTime>)],
    now: OffsetDateTime,
    policy: Policy,
) -> Vec<Reconcile> {
    // Whole reconciliations due: never done first, then oldest.
    let mut due: Vec<(Resource, Option<OffsetDateTime>)> = resources
        .iter()
        .copied()
        .filter(|(r, at)| {
            *r != Resource::Patients && at.is_none_or(|at| now - at >= policy.whole_every)
        })
        .collect();
    due.sort_by_key(|(_, at)| *at);
    let due: Vec<Resource> = due
        .into_iter()
        .take(policy.whole_per_cycle)
        .map(|(r, _)| r)
        .collect();
    resources
        .iter()
        .filter_map(|&(resource, _)| {
            if resource == Resource::Patients {
                return Some(Reconcile {
                    resource,
                    start_between: None,
                    daily: false,
                });
            }
            if due.contains(&resource) {
                return Some(Reconcile {
                    resource,
                    start_between: None,
                    daily: true,
                });
            }
            (resource == Resource::Appointments).then(|| Reconcile {
                resource,
                start_between: Some(hot_window(now)),
                daily: false,
            })
        })
        .collect()
}

/// The appointments' hot window at `now`, on whole days (so every cycle of
/// a day asks the same question).
pub fn hot_window(now: OffsetDateTime) -> (OffsetDateTime, OffsetDateTime) {
    let midnight = now.replace_time(time::Time::MIDNIGHT);
    (midnight - HOT_BACK, midnight + HOT_AHEAD)
}

/// What [`find_deletes`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Found {
    /// Records we hold that Ascend no longer lists for the practice at
    /// all: deleted.
    pub deleted: Vec<i64>,
    /// Records we hold that Ascend still has in the organization, but no
    /// longer in the practice's scope (an appointment moved to another
    /// location): a delete for this practice.
    pub left_scope: Vec<i64>,
    /// Ids Ascend listed in the ranges whose ids were listed: a record with
    /// a pending captured delete among them is seen again.
    pub listed: Vec<i64>,
    /// Ids Ascend listed that we neither hold nor have captured: created
    /// since the pass, or missing from our copy; the caller fetches them.
    pub unknown: Vec<i64>,
    /// Count calls made.
    pub count_calls: u32,
    /// List calls made (pages of ids, and confirmations).
    pub list_calls: u32,
}

impl Found {
    /// All calls made.
    pub fn calls(&self) -> u32 {
        self.count_calls + self.list_calls
    }
}

/// The questions [`find_deletes`] asks Ascend, for one resource.
pub trait Ask {
    type Error;
    /// How many records match `filter` (`meta.pagination.total`).
    fn count(&mut self, filter: Filter) -> impl Future<Output = Result<u64, Self::Error>>;
    /// The ids of every record matching `filter`, and how many calls that
    /// took. Ids that do not fit an `i64` are left out (they are never
    /// landed, so never ours to delete).
    fn ids(&mut self, filter: Filter)
    -> impl Future<Output = Result<(Vec<i64>, u32), Self::Error>>;
}

/// What a reconciliation compares, for one resource of one practice.
pub struct Question<'a> {
    /// The ids we hold and their landed `lastModified`, in id order,
    /// without those already captured (within the window, if any).
    pub held: &'a [(i64, Option<OffsetDateTime>)],
    /// Ids with a pending captured delete (in any order).
    pub captured: &'a [i64],
    /// The practice's scope filter for the resource.
    pub scope: Filter,
    /// The window's clauses (empty for the whole resource).
    pub window: Filter,
    /// Whether the resource is filtered by location for this practice (so
    /// a record absent from the scope may still be in the organization).
    pub scoped: bool,
    /// The resource's watermark after the cycle's pass.
    pub watermark: Option<OffsetDateTime>,
}

/// Ascend's two counts over a whole question (the root range): asked
/// first, so that the caller can compare them with its own counts and
/// read its ids only when they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root {
    /// Records listed.
    pub total: u64,
    /// Records listed modified at or before the watermark (none without
    /// a watermark).
    pub at_or_before: Option<u64>,
}

impl Root {
    /// Whether our counts (records held, and those held modified at or
    /// before [`watermark_bound`]) equal Ascend's: nothing to look for.
    pub fn matches(&self, held: u64, held_at_or_before: u64) -> bool {
        self.total == held && self.at_or_before.is_none_or(|n| n == held_at_or_before)
    }

    /// The calls it took.
    pub fn calls(&self) -> u32 {
        1 + u32::from(self.at_or_before.is_some())
    }
}

/// The watermark as the at-or-before count compares it: to the
/// millisecond, as Ascend writes timestamps. Our own count must use this.
pub fn watermark_bound(watermark: OffsetDateTime) -> OffsetDateTime {
    truncate_ms(watermark)
}

/// Asks Ascend's [`Root`] counts of a question (its `held` unused).
pub async fn ask_root<A: Ask>(q: &Question<'_>, ask: &mut A) -> Result<Root, A::Error> {
    let base = q.scope.clone().and(q.window.clone());
    let total = ask.count(base.clone()).await?;
    let at_or_before = match q.watermark {
        Some(w) => Some(ask.count(base.and(le(w))).await?),
        None => None,
    };
    Ok(Root {
        total,
        at_or_before,
    })
}

fn le(w: OffsetDateTime) -> Filter {
    Filter::new().le("lastModified", ms(watermark_bound(w)))
}

/// Finds the records of `q.held` that Ascend no longer lists for the
/// practice (see the module's documentation for the method and what it
/// guarantees). `root`: Ascend's counts over the whole question, when the
/// caller asked them already ([`ask_root`]).
pub async fn find_deletes<A: Ask>(
    q: Question<'_>,
    root: Option<Root>,
    ask: &mut A,
) -> Result<Found, A::Error> {
    let mut found = Found::default();
    let base = q.scope.clone().and(q.window.clone());
    let watermark = q.watermark.map(watermark_bound);
    let held_le = |keys: &[(i64, Option<OffsetDateTime>)]| match watermark {
        Some(w) => keys
            .iter()
            .filter(|(_, lm)| lm.is_some_and(|lm| lm <= w))
            .count() as u64,
        None => 0,
    };

    let root = match root {
        Some(root) => root,
        None => {
            let root = ask_root(&q, ask).await?;
            found.count_calls += root.calls();
            root
        }
    };
    let (root_total, root_le) = (root.total, root.at_or_before);

    // A node: our records `held[lo..hi]`, all within `range`, and what
    // Ascend counts there.
    let mut stack = vec![(0usize, q.held.len(), IdRange::ALL, root_total, root_le)];
    let mut candidates: Vec<i64> = Vec::new();
    let mut listed: BTreeSet<i64> = BTreeSet::new();
    while let Some((lo, hi, range, total, at_or_before)) = stack.pop() {
        let keys = &q.held[lo..hi];
        if keys.is_empty() {
            // Nothing of ours here: nothing to delete (creates are the
            // pass's).
            continue;
        }
        let same_total = keys.len() as u64 == total;
        let same_le = at_or_before.is_none_or(|n| n == held_le(keys));
        if same_total && same_le {
            continue;
        }
        // One page of ids answers the range: list it (cheaper than two
        // more counts a level).
        if keys.len() <= LEAF || (keys.len() as u64).max(total) <= IDS_PAGE {
            let (ids, calls) = ask.ids(base.clone().and(range.filter())).await?;
            found.list_calls += calls;
            let there: BTreeSet<i64> = ids.into_iter().collect();
            candidates.extend(
                keys.iter()
                    .map(|(id, _)| *id)
                    .filter(|id| !there.contains(id)),
            );
            listed.extend(there);
            continue;
        }
        // Split at our median id: the left half holds our records below it.
        let mid = lo + keys.len() / 2;
        let Some(&(split_id, _)) = q.held.get(mid) else {
            continue;
        };
        let split = u64::try_from(split_id)
            .unwrap_or(0)
            .clamp(range.from, range.to);
        let left = IdRange {
            from: range.from,
            to: split,
        };
        let right = IdRange {
            from: split,
            to: range.to,
        };
        let left_total = ask.count(base.clone().and(left.filter())).await?;
        found.count_calls += 1;
        let left_le = match (watermark, at_or_before) {
            (Some(w), Some(_)) => {
                found.count_calls += 1;
                Some(
                    ask.count(base.clone().and(left.filter()).and(le(w)))
                        .await?,
                )
            }
            _ => None,
        };
        let right_le = at_or_before.zip(left_le).map(|(n, l)| n.saturating_sub(l));
        stack.push((mid, hi, right, total.saturating_sub(left_total), right_le));
        stack.push((lo, mid, left, left_total, left_le));
    }

    // Confirm by id, with the practice's scope and no window: a record
    // moved out of the window, or changed while we counted, is still
    // there and is not a delete.
    candidates.sort_unstable();
    let mut absent: Vec<i64> = Vec::new();
    for batch in candidates.chunks(CONFIRM_BATCH) {
        let (ids, calls) = ask
            .ids(
                q.scope
                    .clone()
                    .and(Filter::new().is_in("id", batch.iter().copied())),
            )
            .await?;
        found.list_calls += calls;
        let there: BTreeSet<i64> = ids.into_iter().collect();
        absent.extend(batch.iter().copied().filter(|id| !there.contains(id)));
    }
    // Absent from the scope: still in the organization?
    if q.scoped && !absent.is_empty() {
        let mut gone = Vec::new();
        for batch in absent.chunks(CONFIRM_BATCH) {
            let (ids, calls) = ask
                .ids(Filter::new().is_in("id", batch.iter().copied()))
                .await?;
            found.list_calls += calls;
            let there: BTreeSet<i64> = ids.into_iter().collect();
            for &id in batch {
                if there.contains(&id) {
                    found.left_scope.push(id);
                } else {
                    gone.push(id);
                }
            }
        }
        absent = gone;
    }
    found.deleted = absent;
    let captured: BTreeSet<i64> = q.captured.iter().copied().collect();
    let held: BTreeSet<i64> = q.held.iter().map(|(id, _)| *id).collect();
    found.unknown = listed
        .iter()
        .copied()
        .filter(|id| !held.contains(id) && !captured.contains(id))
        .collect();
    found.listed = listed.into_iter().collect();
    Ok(found)
}

/// `ts` to the millisecond, as Ascend writes and compares timestamps.
fn truncate_ms(ts: OffsetDateTime) -> OffsetDateTime {
    let nanos = ts.nanosecond();
    ts.replace_nanosecond(nanos - nanos % 1_000_000)
        .unwrap_or(ts)
}

/// A timestamp as a filter value (to the millisecond).
fn ms(ts: OffsetDateTime) -> String {
    ascend_client::format_timestamp(truncate_ms(ts)).unwrap_or_default()
}

#[cfg(test)]
mod tests;
