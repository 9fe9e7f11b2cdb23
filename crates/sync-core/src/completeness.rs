//! Completeness a practice can see (issue 14): what the counts of the last
//! whole reconciliations say about a practice's copy, in words.
//!
//! Each whole reconciliation of a resource counts Ascend's records for the
//! practice's scope (`meta.pagination.total`, no window) and ours (landed
//! rows without a pending captured delete), and the store keeps the
//! evidence ([`model::Completeness`], `Store::record_count`). Here it is
//! read:
//!
//! - a resource never counted is [`Verdict::Unknown`];
//! - one whose last count matched is [`Verdict::Complete`] as of that
//!   count;
//! - one whose last count did not is a [`Verdict::Mismatch`], with both
//!   counts, since when, and how many reconciliations in a row found it.
//!
//! **The rule.** A mismatch found by [`STALE_MISMATCHES`] reconciliations
//! in a row makes the practice stale ([`stale_mismatch`]; the reason is
//! `staleness::StaleReason::CountMismatch`). One is not enough: counts
//! drift while data changes (a record created between Ascend's count and
//! ours), and the next reconciliation settles it. The store's status
//! overview applies the same threshold in SQL (`store::STALE_MISMATCHES`,
//! the store's tests keep the two equal).
//!
//! [`summary`] is the one line a practice reads: "All 11 kinds of records
//! match Dentrix Ascend as of 03:12 UTC", or what does not.

use model::{Completeness, Resource};
use time::OffsetDateTime;

/// Reconciliations in a row that must find a mismatch before the practice
/// counts as stale.
pub const STALE_MISMATCHES: i32 = 2;

/// What the counts say about one resource of a practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Never counted by a whole reconciliation.
    Unknown,
    /// Ours matched Ascend's at the last count.
    Complete {
        /// When the counts last matched.
        as_of: OffsetDateTime,
    },
    /// Ours did not match Ascend's at the last count.
    Mismatch {
        /// Our count at the last reconciliation.
        ours: i64,
        /// Ascend's count at the last reconciliation.
        ascend: i64,
        /// The first count of this mismatch.
        since: OffsetDateTime,
        /// Reconciliations in a row that found it (at least 1).
        reconciliations: i32,
    },
}

impl Verdict {
    /// The verdict of a resource's stored evidence: the last counts
    /// decide. Different counts are a mismatch since `mismatch_since` (the
    /// count's own time if the row lacks it); equal ones are complete as
    /// of `complete_at` (likewise). Evidence without both counts and a
    /// time is `Unknown`.
    #[must_use]
    pub fn of(evidence: &Completeness) -> Verdict {
        let counts = evidence.ascend_count.zip(evidence.held_count);
        match counts {
            Some((ascend, ours)) if ascend != ours => {
                match evidence.mismatch_since.or(evidence.counted_at) {
                    Some(since) => Verdict::Mismatch {
                        ours,
                        ascend,
                        since,
                        reconciliations: evidence.mismatches.max(1),
                    },
                    None => Verdict::Unknown,
                }
            }
            Some(_) => match evidence.complete_at.or(evidence.counted_at) {
                Some(as_of) => Verdict::Complete { as_of },
                None => Verdict::Unknown,
            },
            None => Verdict::Unknown,
        }
    }

    /// Whether this verdict makes the practice stale: a mismatch found by
    /// at least [`STALE_MISMATCHES`] reconciliations in a row.
    #[must_use]
    pub fn is_stale(&self) -> bool {
        matches!(self, Verdict::Mismatch { reconciliations, .. }
            if *reconciliations >= STALE_MISMATCHES)
    }
}

/// The mismatch that makes a practice stale, if any: among the resources'
/// evidence (leave out resources the organization is not offered), the
/// earliest start of a mismatch found by at least [`STALE_MISMATCHES`]
/// reconciliations in a row, with its resource. The store's overview
/// computes the same in SQL.
pub fn stale_mismatch<'a>(
    evidence: impl IntoIterator<Item = (Resource, &'a Completeness)>,
) -> Option<(Resource, OffsetDateTime)> {
    evidence
        .into_iter()
        .filter_map(|(resource, c)| match Verdict::of(c) {
            v @ Verdict::Mismatch { since, .. } if v.is_stale() => Some((resource, since)),
            _ => None,
        })
        .min_by_key(|&(resource, since)| (since, resource))
}

/// One resource of a practice as the summary reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResourceVerdict {
    /// The resource.
    pub resource: Resource,
    /// Whether the organization is offered it: one that is not is left
    /// out of the kinds of records compared (its records in quarantine
    /// are still said).
    pub offered: bool,
    /// What its counts say.
    pub verdict: Verdict,
    /// Its records in quarantine now.
    pub quarantined: u64,
}

/// The resource's name in plain words ("treatment plans" for `tx_cases`).
#[must_use]
pub const fn plain_name(resource: Resource) -> &'static str {
    match resource {
        Resource::Locations => "locations",
        Resource::Providers => "providers",
        Resource::Operatories => "operatories",
        Resource::Patients => "patients",
        Resource::Appointments => "appointments",
        Resource::TxCases => "treatment plans",
        Resource::Visits => "visits",
        Resource::PatientProcedures => "procedures",
        Resource::PatientInsurancePlans => "insurance plans",
        Resource::InsuranceCarriers => "insurance carriers",
        Resource::Transactions => "transactions",
    }
}

/// A count with thousands separators: `1,203`.
#[must_use]
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// A time as the summary says it, in UTC: `03:12 UTC` on `now`'s (UTC)
/// day, else `2026-03-02 03:12 UTC`.
#[must_use]
pub fn clock(at: OffsetDateTime, now: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let day = if at.date() == now.to_offset(time::UtcOffset::UTC).date() {
        String::new()
    } else {
        format!(
            "{:04}-{:02}-{:02} ",
            at.year(),
            u8::from(at.month()),
            at.day()
        )
    };
    format!("{day}{:02}:{:02} UTC", at.hour(), at.minute())
}

/// `1 kind` / `11 kinds`.
fn kinds(n: usize) -> String {
    if n == 1 {
        "1 kind".to_owned()
    } else {
        format!("{n} kinds")
    }
}

/// The one line a practice reads about its copy, from its resources'
/// verdicts (in the order given; those not offered are not compared) and
/// quarantined counts, at `now` (times are said as [`clock`]):
///
/// - "All 11 kinds of records match Dentrix Ascend as of 03:12 UTC" (the
///   oldest of the matching counts);
/// - "9 of 11 kinds of records match Dentrix Ascend; patients: ours 1,203,
///   Dentrix Ascend 1,204 since 03:12 UTC; not counted yet: visits";
/// - "No kind of records has been counted against Dentrix Ascend yet";
///
/// each followed by "; 3 records in quarantine (patients 2, visits 1)"
/// when records wait there.
#[must_use]
pub fn summary(all: &[ResourceVerdict], now: OffsetDateTime) -> String {
    let resources: Vec<&ResourceVerdict> = all.iter().filter(|r| r.offered).collect();
    let total = resources.len();
    let complete: Vec<OffsetDateTime> = resources
        .iter()
        .filter_map(|r| match r.verdict {
            Verdict::Complete { as_of } => Some(as_of),
            _ => None,
        })
        .collect();
    let unknown: Vec<&str> = resources
        .iter()
        .filter(|r| r.verdict == Verdict::Unknown)
        .map(|r| plain_name(r.resource))
        .collect();
    let mut parts = Vec::new();
    if total == 0 || unknown.len() == total {
        parts.push("No kind of records has been counted against Dentrix Ascend yet".to_owned());
    } else if let (true, Some(oldest)) = (complete.len() == total, complete.iter().min()) {
        let all = if total == 1 {
            "The 1 kind of records matches".to_owned()
        } else {
            format!("All {total} kinds of records match")
        };
        parts.push(format!(
            "{all} Dentrix Ascend as of {}",
            clock(*oldest, now)
        ));
    } else {
        let verb = if complete.len() == 1 {
            "matches"
        } else {
            "match"
        };
        parts.push(format!(
            "{} of {} of records {verb} Dentrix Ascend",
            complete.len(),
            kinds(total)
        ));
        for r in &resources {
            if let Verdict::Mismatch {
                ours,
                ascend,
                since,
                ..
            } = r.verdict
            {
                parts.push(format!(
                    "{}: ours {}, Dentrix Ascend {} since {}",
                    plain_name(r.resource),
                    grouped(ours),
                    grouped(ascend),
                    clock(since, now)
                ));
            }
        }
        if !unknown.is_empty() {
            parts.push(format!("not counted yet: {}", unknown.join(", ")));
        }
    }
    let quarantined: u64 = all.iter().map(|r| r.quarantined).sum();
    if quarantined > 0 {
        let which: Vec<String> = all
            .iter()
            .filter(|r| r.quarantined > 0)
            .map(|r| format!("{} {}", plain_name(r.resource), r.quarantined))
            .collect();
        parts.push(format!(
            "{quarantined} record{} in quarantine ({})",
            if quarantined == 1 { "" } else { "s" },
            which.join(", ")
        ));
    }
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-04 12:00 UTC);
    const T1: OffsetDateTime = datetime!(2026-03-04 03:12 UTC);
    const T2: OffsetDateTime = datetime!(2026-03-04 09:45 UTC);

    fn counted(ascend: i64, held: i64, at: OffsetDateTime) -> Completeness {
        Completeness {
            ascend_count: Some(ascend),
            held_count: Some(held),
            counted_at: Some(at),
            ..Completeness::default()
        }
    }

    #[test]
    fn never_counted_is_unknown() {
        assert_eq!(Verdict::of(&Completeness::default()), Verdict::Unknown);
        // A count without Ascend's half, or with no time at all, says nothing.
        let half = Completeness {
            held_count: Some(3),
            counted_at: Some(T1),
            ..Completeness::default()
        };
        assert_eq!(Verdict::of(&half), Verdict::Unknown);
        let timeless = Completeness {
            ascend_count: Some(3),
            held_count: Some(3),
            ..Completeness::default()
        };
        assert_eq!(Verdict::of(&timeless), Verdict::Unknown);
        let timeless_mismatch = Completeness {
            ascend_count: Some(3),
            held_count: Some(2),
            mismatches: 1,
            ..Completeness::default()
        };
        assert_eq!(Verdict::of(&timeless_mismatch), Verdict::Unknown);
        assert!(!Verdict::Unknown.is_stale());
    }

    #[test]
    fn equal_counts_are_complete_as_of_the_last_match() {
        let c = Completeness {
            complete_at: Some(T2),
            ..counted(1_204, 1_204, T2)
        };
        assert_eq!(Verdict::of(&c), Verdict::Complete { as_of: T2 });
        assert!(!Verdict::of(&c).is_stale());
        // A row without complete_at (written by hand) falls back to the count.
        assert_eq!(
            Verdict::of(&counted(5, 5, T1)),
            Verdict::Complete { as_of: T1 }
        );
    }

    #[test]
    fn a_mismatch_keeps_its_start_and_counts_its_reconciliations() {
        let c = Completeness {
            complete_at: Some(T1 - Duration::hours(1)),
            mismatch_since: Some(T1),
            mismatches: 1,
            ..counted(1_204, 1_203, T2)
        };
        let v = Verdict::of(&c);
        assert_eq!(
            v,
            Verdict::Mismatch {
                ours: 1_203,
                ascend: 1_204,
                since: T1,
                reconciliations: 1,
            }
        );
        assert!(!v.is_stale(), "one reconciliation is not enough");
        let twice = Completeness {
            mismatches: STALE_MISMATCHES,
            ..c
        };
        assert!(Verdict::of(&twice).is_stale());
        let thrice = Completeness { mismatches: 3, ..c };
        assert!(Verdict::of(&thrice).is_stale());
    }

    #[test]
    fn the_counts_decide_when_the_evidence_disagrees() {
        // Evidence record_count never writes (a row changed by hand): the
        // last counts win. Different counts, no mismatch counted: a
        // mismatch since the count's own time.
        assert_eq!(
            Verdict::of(&counted(10, 9, T2)),
            Verdict::Mismatch {
                ours: 9,
                ascend: 10,
                since: T2,
                reconciliations: 1,
            }
        );
        // Equal counts with a mismatch still counted: complete.
        let equal = Completeness {
            mismatch_since: Some(T1),
            mismatches: 3,
            ..counted(4, 4, T2)
        };
        assert_eq!(Verdict::of(&equal), Verdict::Complete { as_of: T2 });
    }

    #[test]
    fn the_stale_mismatch_is_the_earliest_found_twice() {
        let once = Completeness {
            mismatch_since: Some(T1 - Duration::hours(5)),
            mismatches: 1,
            ..counted(3, 2, T2)
        };
        let later = Completeness {
            mismatch_since: Some(T2),
            mismatches: 4,
            ..counted(3, 2, T2)
        };
        let earlier = Completeness {
            mismatch_since: Some(T1),
            mismatches: 2,
            ..counted(7, 9, T2)
        };
        let complete = Completeness {
            complete_at: Some(T2),
            ..counted(1, 1, T2)
        };
        assert_eq!(
            stale_mismatch([
                (Resource::Patients, &once),
                (Resource::Visits, &later),
                (Resource::Appointments, &earlier),
                (Resource::Locations, &complete),
            ]),
            Some((Resource::Appointments, T1))
        );
        assert_eq!(
            stale_mismatch([
                (Resource::Patients, &once),
                (Resource::Locations, &complete)
            ]),
            None
        );
        assert_eq!(stale_mismatch([]), None);
    }

    fn all(verdict: Verdict) -> Vec<ResourceVerdict> {
        Resource::ALL
            .iter()
            .map(|&resource| ResourceVerdict {
                resource,
                offered: true,
                verdict,
                quarantined: 0,
            })
            .collect()
    }

    fn set(rs: &mut [ResourceVerdict], resource: Resource, verdict: Verdict) {
        for r in rs.iter_mut().filter(|r| r.resource == resource) {
            r.verdict = verdict;
        }
    }

    #[test]
    fn all_complete_says_so_as_of_the_oldest_match() {
        let mut rs = all(Verdict::Complete { as_of: T2 });
        set(&mut rs, Resource::Visits, Verdict::Complete { as_of: T1 });
        assert_eq!(
            summary(&rs, NOW),
            "All 11 kinds of records match Dentrix Ascend as of 03:12 UTC"
        );
        let one = [ResourceVerdict {
            resource: Resource::Patients,
            offered: true,
            verdict: Verdict::Complete { as_of: T1 },
            quarantined: 0,
        }];
        assert_eq!(
            summary(&one, NOW),
            "The 1 kind of records matches Dentrix Ascend as of 03:12 UTC"
        );
    }

    #[test]
    fn mismatches_are_named_with_both_counts() {
        let mut rs = all(Verdict::Complete { as_of: T2 });
        set(
            &mut rs,
            Resource::Patients,
            Verdict::Mismatch {
                ours: 1_203,
                ascend: 1_204,
                since: T1,
                reconciliations: 2,
            },
        );
        set(
            &mut rs,
            Resource::TxCases,
            Verdict::Mismatch {
                ours: 12,
                ascend: 10,
                since: T2,
                reconciliations: 1,
            },
        );
        assert_eq!(
            summary(&rs, NOW),
            "9 of 11 kinds of records match Dentrix Ascend; \
             patients: ours 1,203, Dentrix Ascend 1,204 since 03:12 UTC; \
             treatment plans: ours 12, Dentrix Ascend 10 since 09:45 UTC"
        );
    }

    #[test]
    fn resources_not_counted_yet_are_listed() {
        let mut rs = all(Verdict::Complete { as_of: T2 });
        set(&mut rs, Resource::Visits, Verdict::Unknown);
        set(&mut rs, Resource::Transactions, Verdict::Unknown);
        assert_eq!(
            summary(&rs, NOW),
            "9 of 11 kinds of records match Dentrix Ascend; \
             not counted yet: visits, transactions"
        );
        let mut one_matches = all(Verdict::Unknown);
        set(
            &mut one_matches,
            Resource::Locations,
            Verdict::Complete { as_of: T2 },
        );
        assert!(
            summary(&one_matches, NOW).starts_with(
                "1 of 11 kinds of records matches Dentrix Ascend; not counted yet: providers, "
            ),
            "{}",
            summary(&one_matches, NOW)
        );
    }

    #[test]
    fn nothing_counted_says_so() {
        let expected = "No kind of records has been counted against Dentrix Ascend yet";
        assert_eq!(summary(&all(Verdict::Unknown), NOW), expected);
        assert_eq!(summary(&[], NOW), expected);
    }

    #[test]
    fn quarantined_records_are_mentioned_by_resource() {
        let mut rs = all(Verdict::Complete { as_of: T1 });
        rs[3].quarantined = 2; // patients
        rs[6].quarantined = 1; // visits
        assert_eq!(
            summary(&rs, NOW),
            "All 11 kinds of records match Dentrix Ascend as of 03:12 UTC; \
             3 records in quarantine (patients 2, visits 1)"
        );
        let mut one = all(Verdict::Unknown);
        one[7].quarantined = 1; // patient procedures
        assert_eq!(
            summary(&one, NOW),
            "No kind of records has been counted against Dentrix Ascend yet; \
             1 record in quarantine (procedures 1)"
        );
    }

    #[test]
    fn resources_not_offered_are_not_compared_but_their_quarantine_is_said() {
        let mut rs = all(Verdict::Complete { as_of: T1 });
        let transactions = rs
            .iter_mut()
            .find(|r| r.resource == Resource::Transactions)
            .expect("listed");
        transactions.offered = false;
        transactions.verdict = Verdict::Mismatch {
            ours: 0,
            ascend: 9,
            since: T1,
            reconciliations: 5,
        };
        assert_eq!(
            summary(&rs, NOW),
            "All 10 kinds of records match Dentrix Ascend as of 03:12 UTC"
        );
        rs[10].quarantined = 4;
        assert_eq!(
            summary(&rs, NOW),
            "All 10 kinds of records match Dentrix Ascend as of 03:12 UTC; \
             4 records in quarantine (transactions 4)"
        );
        for r in &mut rs {
            r.offered = false;
        }
        assert!(
            summary(&rs, NOW).starts_with("No kind of records has been counted"),
            "{}",
            summary(&rs, NOW)
        );
    }

    #[test]
    fn times_of_another_day_carry_their_date() {
        assert_eq!(clock(T1, NOW), "03:12 UTC");
        assert_eq!(
            clock(datetime!(2026-03-02 23:05 UTC), NOW),
            "2026-03-02 23:05 UTC"
        );
        // UTC, whatever the offset given.
        assert_eq!(clock(datetime!(2026-03-04 05:12 +02:00), NOW), "03:12 UTC");
        let mut rs = all(Verdict::Complete { as_of: T1 });
        set(
            &mut rs,
            Resource::Appointments,
            Verdict::Complete {
                as_of: datetime!(2026-03-01 00:00 UTC),
            },
        );
        assert_eq!(
            summary(&rs, NOW),
            "All 11 kinds of records match Dentrix Ascend as of 2026-03-01 00:00 UTC"
        );
    }

    #[test]
    fn counts_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(1_203), "1,203");
        assert_eq!(grouped(12_345_678), "12,345,678");
        assert_eq!(grouped(-1_234), "-1,234");
        assert_eq!(grouped(i64::MIN), "-9,223,372,036,854,775,808");
    }

    #[test]
    fn every_resource_has_a_plain_name() {
        let mut names = std::collections::HashSet::new();
        for &r in Resource::ALL {
            assert!(names.insert(plain_name(r)), "{r}");
            assert!(!plain_name(r).contains('_'), "{r}");
        }
    }
}
