use super::*;
use std::collections::BTreeMap;
use std::convert::Infallible;
use time::macros::datetime;

/// A record of the fake Ascend: its lastModified, start and location.
#[derive(Clone, Copy)]
struct Rec {
    lm: OffsetDateTime,
    start: OffsetDateTime,
    location: u64,
}

/// Ascend as a map, answering the filters `find_deletes` sends (read back
/// from the filter text), and counting the calls.
#[derive(Default)]
struct Fake {
    records: BTreeMap<i64, Rec>,
    counts: u32,
    lists: u32,
}

fn clauses(text: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in text.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

impl Fake {
    fn matching(&self, filter: &Filter) -> Vec<i64> {
        let text = filter.to_string();
        let clauses = clauses(&text);
        // The id bounds first, to walk only that part of the map.
        let (mut lo, mut hi) = (i64::MIN, i64::MAX);
        for c in &clauses {
            if let Some(v) = c.strip_prefix("id>=") {
                lo = lo.max(v.parse().unwrap_or(i64::MIN));
            } else if let Some(v) = c.strip_prefix("id<") {
                hi = hi.min(v.parse().unwrap_or(i64::MAX));
            }
        }
        if lo >= hi {
            return Vec::new();
        }
        let ts = |t: OffsetDateTime| ascend_client::format_timestamp(t).unwrap_or_default();
        self.records
            .range(lo..hi)
            .filter(|(id, r)| {
                clauses.iter().all(|c| {
                    let id = **id;
                    if let Some(list) = c.strip_prefix("id->[") {
                        let list = list.trim_end_matches(']');
                        return list.split(',').any(|v| v.parse::<i64>().ok() == Some(id));
                    }
                    for op in ["==", ">=", "<=", "<", ">"] {
                        if let Some((field, value)) = c.split_once(op) {
                            let ord = match field {
                                "id" => return true,
                                "location.id" => r.location.to_string().as_str().cmp(value),
                                "lastModified" => ts(r.lm).as_str().cmp(value),
                                "start" => ts(r.start).as_str().cmp(value),
                                other => panic!("unexpected field {other}"),
                            };
                            return match op {
                                "==" => ord.is_eq(),
                                ">=" => ord.is_ge(),
                                "<=" => ord.is_le(),
                                "<" => ord.is_lt(),
                                _ => ord.is_gt(),
                            };
                        }
                    }
                    panic!("unexpected clause {c}")
                })
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Ask for Fake {
    type Error = Infallible;
    async fn count(&mut self, filter: Filter) -> Result<u64, Infallible> {
        self.counts += 1;
        Ok(self.matching(&filter).len() as u64)
    }
    async fn ids(&mut self, filter: Filter) -> Result<(Vec<i64>, u32), Infallible> {
        let ids = self.matching(&filter);
        let pages = (ids.len() as u32).div_ceil(500).max(1);
        self.lists += pages;
        Ok((ids, pages))
    }
}

const W: OffsetDateTime = datetime!(2026-11-20 12:00 UTC);
const LOC: u64 = 7;

/// `n` records with ids spread like Ascend's (large, uneven gaps), all
/// modified before the watermark, at location `LOC`.
fn world(n: usize) -> Fake {
    let mut fake = Fake::default();
    let mut id: i64 = 7_000_000_000_000;
    for i in 0..n {
        id += 1 + (i as i64 * 7919) % 13;
        let lm = W - Duration::minutes(1 + (i as i64 % 10_000));
        fake.records.insert(
            id,
            Rec {
                lm,
                start: W + Duration::days(i as i64 % 40 - 20),
                location: LOC,
            },
        );
    }
    fake
}

fn held(fake: &Fake) -> Vec<(i64, Option<OffsetDateTime>)> {
    fake.records
        .iter()
        .map(|(id, r)| (*id, Some(r.lm)))
        .collect()
}

fn question<'a>(held: &'a [(i64, Option<OffsetDateTime>)], scoped: bool) -> Question<'a> {
    Question {
        held,
        captured: &[],
        scope: if scoped {
            Filter::new().eq("location.id", LOC)
        } else {
            Filter::new()
        },
        window: Filter::new(),
        scoped,
        watermark: Some(W),
    }
}

async fn find(fake: &mut Fake, q: Question<'_>) -> Found {
    let Ok(found) = find_deletes(q, None, fake).await;
    found
}

#[tokio::test]
async fn an_unchanged_resource_costs_two_counts() {
    let mut fake = world(20_000);
    let ours = held(&fake);
    let found = find(&mut fake, question(&ours, true)).await;
    assert_eq!(
        found,
        Found {
            count_calls: 2,
            ..Found::default()
        }
    );
    assert_eq!((fake.counts, fake.lists), (2, 0));
}

#[tokio::test]
async fn d_deletes_among_n_records_cost_about_d_log_n_calls() {
    for n in [1_000usize, 10_000, 100_000] {
        for d in [1usize, 4, 16] {
            let mut fake = world(n);
            let ours = held(&fake);
            // Deletes spread over the id space.
            let deleted: Vec<i64> = (0..d).map(|k| ours[(k * 7919 + 13) % n].0).collect();
            for id in &deleted {
                fake.records.remove(id);
            }
            let found = find(&mut fake, question(&ours, true)).await;
            let mut want = deleted.clone();
            want.sort_unstable();
            want.dedup();
            assert_eq!(found.deleted, want, "n={n} d={d}");
            assert!(found.left_scope.is_empty());
            // Levels of halving until a range holds at most LEAF of ours.
            let levels = (n as f64 / LEAF as f64).log2().ceil().max(0.0) as u32 + 1;
            let d32 = d as u32;
            // Two counts on the way down per level and delete, one list of
            // ids per delete's leaf, the root's two counts, the
            // confirmations.
            let bound = 2 + d32 * (2 * levels + 1) + d32.div_ceil(CONFIRM_BATCH as u32) * 2;
            assert!(
                found.calls() <= bound,
                "n={n} d={d}: {} calls, bound {bound}",
                found.calls()
            );
            assert_eq!(found.calls(), fake.counts + fake.lists);
            eprintln!("n={n} d={d}: {} calls (bound {bound})", found.calls());
            // Far below listing every id (n / 500 pages) when d is small.
            if d == 1 && n >= 100_000 {
                assert!(found.calls() * 5 < (n / 500) as u32, "{}", found.calls());
            }
        }
    }
}

#[tokio::test]
async fn a_create_and_a_delete_in_one_range_are_both_seen() {
    let mut fake = world(5_000);
    let ours = held(&fake);
    let gone = ours[2_500].0;
    fake.records.remove(&gone);
    // A create right next to it, not landed yet: the totals match.
    let new_id = gone + 1;
    assert!(!fake.records.contains_key(&new_id));
    fake.records.insert(
        new_id,
        Rec {
            lm: W + Duration::minutes(1),
            start: W,
            location: LOC,
        },
    );
    let found = find(&mut fake, question(&ours, true)).await;
    assert_eq!(found.deleted, vec![gone]);
    assert_eq!(
        found.unknown,
        vec![new_id],
        "the create is listed as unknown"
    );
}

#[tokio::test]
async fn a_delete_of_a_recent_change_hidden_by_a_create_is_found_once_the_create_lands() {
    let mut fake = world(5_000);
    // Ours: a record changed after the watermark, landed.
    let recent = 7_000_000_000_000 + 5;
    fake.records.insert(
        recent,
        Rec {
            lm: W + Duration::seconds(30),
            start: W,
            location: LOC,
        },
    );
    let mut ours = held(&fake);
    // Deleted in Ascend, and a record created meanwhile (not landed).
    fake.records.remove(&recent);
    let created = 7_000_000_000_000 + 6;
    fake.records.insert(
        created,
        Rec {
            lm: W + Duration::seconds(40),
            start: W,
            location: LOC,
        },
    );
    // Both signals match: what the module promises does not cover it yet.
    let found = find(&mut fake, question(&ours, true)).await;
    assert!(found.deleted.is_empty());
    // The next pass lands the create: now the totals differ.
    ours.push((created, Some(W + Duration::seconds(40))));
    ours.sort_unstable();
    let found = find(&mut fake, question(&ours, true)).await;
    assert_eq!(found.deleted, vec![recent]);
}

#[tokio::test]
async fn a_record_moved_to_another_location_left_the_scope() {
    let mut fake = world(3_000);
    let ours = held(&fake);
    let (moved, deleted) = (ours[100].0, ours[2_000].0);
    if let Some(r) = fake.records.get_mut(&moved) {
        r.location = LOC + 1;
    }
    fake.records.remove(&deleted);
    let found = find(&mut fake, question(&ours, true)).await;
    assert_eq!(found.left_scope, vec![moved]);
    assert_eq!(found.deleted, vec![deleted]);
}

#[tokio::test]
async fn a_record_that_left_the_window_is_not_a_delete() {
    let mut fake = world(3_000);
    let from = W - Duration::days(5);
    let to = W + Duration::days(5);
    let ours: Vec<(i64, Option<OffsetDateTime>)> = fake
        .records
        .iter()
        .filter(|(_, r)| r.start >= from && r.start < to)
        .map(|(id, r)| (*id, Some(r.lm)))
        .collect();
    // Rescheduled out of the window after we landed it.
    let moved = ours[10].0;
    if let Some(r) = fake.records.get_mut(&moved) {
        r.start = W + Duration::days(100);
        r.lm = W + Duration::seconds(1);
    }
    let mut q = question(&ours, true);
    q.window = Reconcile {
        resource: Resource::Appointments,
        start_between: Some((from, to)),
        daily: false,
    }
    .window_filter();
    let found = find(&mut fake, q).await;
    assert!(
        found.deleted.is_empty() && found.left_scope.is_empty(),
        "{found:?}"
    );
}

#[tokio::test]
async fn a_captured_record_listed_again_is_reported_listed() {
    let mut fake = world(2_000);
    let all = held(&fake);
    let back = all[500].0;
    // Captured earlier (so left out of ours), but Ascend lists it.
    let ours: Vec<_> = all.iter().copied().filter(|(id, _)| *id != back).collect();
    let mut q = question(&ours, false);
    let captured = [back];
    q.captured = &captured;
    let found = find(&mut fake, q).await;
    assert!(found.listed.contains(&back));
    assert!(found.unknown.is_empty() && found.deleted.is_empty());
}

#[tokio::test]
async fn a_record_missing_from_our_copy_is_reported_unknown() {
    let mut fake = world(2_000);
    let all = held(&fake);
    let lost = all[1_234].0;
    let ours: Vec<_> = all.iter().copied().filter(|(id, _)| *id != lost).collect();
    let found = find(&mut fake, question(&ours, false)).await;
    assert_eq!(found.unknown, vec![lost]);
    assert!(found.deleted.is_empty());
}

#[test]
fn a_cycle_reconciles_the_hot_window_and_a_few_whole_resources_oldest_first() {
    let now = datetime!(2026-12-04 10:30 UTC);
    let fresh = Some(now - Duration::hours(1));
    let old = Some(now - Duration::hours(30));
    let older = Some(now - Duration::hours(40));
    let resources = [
        (Resource::Locations, fresh),
        (Resource::Patients, fresh),
        (Resource::Appointments, fresh),
        (Resource::Visits, old),
        (Resource::TxCases, older),
        (Resource::Transactions, None),
    ];
    let plan = plan_cycle(&resources, now, Policy::default());
    let whole: Vec<Resource> = plan
        .iter()
        .filter(|r| r.daily)
        .map(|r| r.resource)
        .collect();
    assert_eq!(whole, vec![Resource::TxCases, Resource::Transactions]);
    let patients = plan.iter().find(|r| r.resource == Resource::Patients);
    assert!(patients.is_some_and(|r| r.is_whole() && !r.daily));
    let appointments = plan.iter().find(|r| r.resource == Resource::Appointments);
    assert_eq!(
        appointments.map(|r| r.start_between),
        Some(Some((
            datetime!(2026-11-04 0:00 UTC),
            datetime!(2027-12-05 0:00 UTC)
        )))
    );
    assert!(
        !plan
            .iter()
            .any(|r| r.resource == Resource::Locations || r.resource == Resource::Visits)
    );
    // Appointments due whole: the whole pass replaces the window.
    let plan = plan_cycle(&[(Resource::Appointments, old)], now, Policy::default());
    assert_eq!(plan.len(), 1);
    assert!(plan[0].is_whole() && plan[0].daily);
    // The demo's policy: everything whole, every cycle.
    let plan = plan_cycle(&resources, now, Policy::every_cycle());
    assert_eq!(plan.len(), resources.len());
    assert!(plan.iter().all(Reconcile::is_whole));
}
