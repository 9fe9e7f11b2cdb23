//! Completeness evidence (issue 14): what `record_count` keeps of each
//! whole reconciliation's counts, and the overview's count mismatch, the
//! one that makes a practice stale.

use sync_core::staleness::{PracticeHealth, StaleReason};
use time::OffsetDateTime;

use super::{PRACTICE, ts, with_practice};
use crate::{PracticeOverview, STALE_MISMATCHES, Store, SyncState, Table};

on_both_backends!(
    record_count_keeps_when_the_counts_matched_and_since_when_they_differ,
    the_overview_reports_a_mismatch_found_by_two_reconciliations,
);

async fn state(store: &Store, table: Table) -> SyncState {
    store
        .get_sync_state(PRACTICE, table)
        .await
        .expect("reads")
        .expect("record_count creates the state")
}

async fn count(store: &Store, table: Table, ascend: u64, held: u64, at: OffsetDateTime) {
    store
        .record_count(PRACTICE, table, ascend, held, at)
        .await
        .expect("records the counts");
}

async fn record_count_keeps_when_the_counts_matched_and_since_when_they_differ(store: Store) {
    with_practice(&store).await;
    let table = Table::Patients;
    let (t1, t2, t3, t4) = (
        ts("2026-03-04T03:12:00Z"),
        ts("2026-03-04T03:27:00Z"),
        ts("2026-03-04T03:42:00Z"),
        ts("2026-03-04T03:57:00Z"),
    );

    // Equal counts: complete as of the count, no mismatch.
    count(&store, table, 1_204, 1_204, t1).await;
    let c = state(&store, table).await.completeness;
    assert_eq!(
        (c.ascend_count, c.held_count, c.counted_at),
        (Some(1_204), Some(1_204), Some(t1))
    );
    assert_eq!(
        (c.complete_at, c.mismatch_since, c.mismatches),
        (Some(t1), None, 0)
    );

    // Different: a mismatch starts at this count; complete_at stays.
    count(&store, table, 1_205, 1_204, t2).await;
    let c = state(&store, table).await.completeness;
    assert_eq!(
        (c.ascend_count, c.held_count, c.counted_at),
        (Some(1_205), Some(1_204), Some(t2))
    );
    assert_eq!(
        (c.complete_at, c.mismatch_since, c.mismatches),
        (Some(t1), Some(t2), 1)
    );

    // Different again (other counts): the mismatch keeps its start and is
    // counted once more.
    count(&store, table, 1_206, 1_203, t3).await;
    let c = state(&store, table).await.completeness;
    assert_eq!(
        (c.ascend_count, c.held_count, c.counted_at),
        (Some(1_206), Some(1_203), Some(t3))
    );
    assert_eq!(
        (c.complete_at, c.mismatch_since, c.mismatches),
        (Some(t1), Some(t2), 2)
    );

    // Equal again: the mismatch is over and complete_at moves.
    count(&store, table, 1_206, 1_206, t4).await;
    let c = state(&store, table).await.completeness;
    assert_eq!(
        (c.ascend_count, c.held_count, c.counted_at),
        (Some(1_206), Some(1_206), Some(t4))
    );
    assert_eq!(
        (c.complete_at, c.mismatch_since, c.mismatches),
        (Some(t4), None, 0)
    );

    // A first count that differs starts a mismatch on a new state, with no
    // match yet.
    count(&store, Table::Visits, 10, 0, t1).await;
    let c = state(&store, Table::Visits).await.completeness;
    assert_eq!(
        (c.complete_at, c.mismatch_since, c.mismatches),
        (None, Some(t1), 1)
    );
    // Other resources' evidence is untouched.
    assert_eq!(
        state(&store, table).await.completeness.complete_at,
        Some(t4)
    );
    // Counting leaves the rest of the state alone.
    let s = state(&store, table).await;
    assert_eq!(
        (s.watermark, s.failing_since, s.reconciled_at),
        (None, None, None)
    );
}

/// The staleness rule's reason for the overview's practice, as `status`
/// reads it.
fn reason(p: &PracticeOverview) -> Option<StaleReason> {
    let now = OffsetDateTime::now_utc();
    let health = PracticeHealth {
        last_success: p.last_success_at,
        created_at: p.created_at,
        interval_minutes: p.sync_interval_minutes,
        quarantined: p.quarantined,
        failing_since: p.failing_since,
        count_mismatch: p
            .count_mismatch
            .map(|(table, since)| (table.resource(), since)),
    }
    .staleness(now);
    assert_eq!(health.stale, health.reason.is_some());
    health.reason
}

/// The overview's count mismatch, checked against the staleness rule:
/// stale with `CountMismatch` exactly when there is one.
async fn mismatch_of(store: &Store) -> Option<(Table, OffsetDateTime)> {
    let overview = &store.practice_overview().await.expect("reads")[0];
    let expected = overview
        .count_mismatch
        .map(|(table, since)| StaleReason::CountMismatch {
            resource: table.resource(),
            since,
        });
    assert_eq!(reason(overview), expected);
    overview.count_mismatch
}

async fn the_overview_reports_a_mismatch_found_by_two_reconciliations(store: Store) {
    assert_eq!(
        STALE_MISMATCHES,
        sync_core::completeness::STALE_MISMATCHES,
        "the overview and the staleness rule agree"
    );
    with_practice(&store).await;
    let (t1, t2, t3, t4) = (
        ts("2026-03-04T03:12:00Z"),
        ts("2026-03-04T03:27:00Z"),
        ts("2026-03-04T03:42:00Z"),
        ts("2026-03-04T03:57:00Z"),
    );
    assert_eq!(mismatch_of(&store).await, None, "never counted");
    count(&store, Table::Patients, 5, 5, t1).await;
    assert_eq!(mismatch_of(&store).await, None, "complete");

    // One reconciliation found it: not yet.
    count(&store, Table::Patients, 6, 5, t2).await;
    assert_eq!(mismatch_of(&store).await, None, "found once");
    // Two in a row: reported, since the first.
    count(&store, Table::Patients, 6, 5, t3).await;
    assert_eq!(mismatch_of(&store).await, Some((Table::Patients, t2)));

    // Another resource found twice, its mismatch begun later: the earliest
    // is reported.
    count(&store, Table::Visits, 3, 4, t3).await;
    count(&store, Table::Visits, 3, 4, t4).await;
    assert_eq!(mismatch_of(&store).await, Some((Table::Patients, t2)));

    // A resource the organization is not offered does not count, however
    // early its mismatch.
    count(&store, Table::Transactions, 9, 0, t1).await;
    count(&store, Table::Transactions, 9, 0, t2).await;
    store
        .set_not_offered(PRACTICE, Table::Transactions, Some(t2))
        .await
        .expect("records");
    assert_eq!(mismatch_of(&store).await, Some((Table::Patients, t2)));

    // Patients match again: the visits' mismatch is the one left.
    count(&store, Table::Patients, 6, 6, t4).await;
    assert_eq!(mismatch_of(&store).await, Some((Table::Visits, t3)));
    // Visits too: none.
    count(&store, Table::Visits, 4, 4, t4).await;
    assert_eq!(mismatch_of(&store).await, None);

    // Another practice's mismatch is its own.
    store
        .upsert_practice(&super::new_practice("practice-2"))
        .await
        .expect("registers");
    for at in [t1, t2] {
        store
            .record_count("practice-2", Table::Patients, 2, 1, at)
            .await
            .expect("records");
    }
    let overview = store.practice_overview().await.expect("reads");
    let by_id = |id: &str| {
        overview
            .iter()
            .find(|p| p.practice_id == id)
            .map(|p| p.count_mismatch)
    };
    assert_eq!(by_id(PRACTICE), Some(None));
    assert_eq!(by_id("practice-2"), Some(Some((Table::Patients, t1))));
}
