//! The quarantine (issue 12): a bad record never fails its page and is
//! never silently dropped; it leaves the quarantine when it lands.

use time::Duration;

use super::{PRACTICE, procedure, row, ts, with_practice};
use crate::{
    Backend, BadRecord, Checkpoint, ChunkStatus, LandOutcome, LandedRow, NewChunk, PageRecords,
    QuarantinedRecord, Store, Table,
};

on_both_backends!(
    a_bad_record_is_quarantined_and_the_rest_of_its_page_lands,
    a_record_seen_again_counts_an_attempt_and_keeps_its_first_sighting,
    a_row_the_database_refuses_is_quarantined_with_its_reason,
    a_row_that_is_not_an_object_is_quarantined,
    a_valid_version_landing_later_leaves_the_quarantine,
    retried_records_leave_the_quarantine_unless_set_aside_again,
    a_failing_resource_has_a_failing_since_until_it_succeeds,
    the_overview_counts_quarantine_and_failing_resources,
);

const TABLE: Table = Table::PatientProcedures;

async fn held(store: &Store) -> Vec<QuarantinedRecord> {
    store
        .quarantined(PRACTICE, TABLE, None, 100)
        .await
        .expect("reads the quarantine")
}

async fn one_chunk(store: &Store) -> i64 {
    store
        .create_chunks(
            PRACTICE,
            &[NewChunk {
                table: TABLE,
                id_from: 0,
                id_to: 1000,
                priority: 1,
                filter: String::new(),
                expected: Some(5),
            }],
        )
        .await
        .expect("plans");
    store.pending_chunks(PRACTICE).await.expect("lists")[0].chunk_id
}

async fn a_bad_record_is_quarantined_and_the_rest_of_its_page_lands(store: Store) {
    with_practice(&store).await;
    let chunk_id = one_chunk(&store).await;
    let raws: Vec<String> = [1, 2, 4]
        .iter()
        .map(|&i| procedure(i, "2026-01-01T00:00:00Z", "1.00"))
        .collect();
    let rows: Vec<LandedRow<'_>> = [1, 2, 4]
        .iter()
        .zip(&raws)
        .map(|(&i, raw)| row(i, Some("2026-01-01T00:00:00Z"), raw))
        .collect();
    let bad = [
        BadRecord {
            id: Some("3"),
            raw: r#"{"id":"3","lastModified":"yesterday"}"#,
            reason: "its lastModified \"yesterday\" is not a timestamp",
        },
        BadRecord {
            id: Some("abc"),
            raw: r#"{"id":"abc"}"#,
            reason: "its id \"abc\" is not a decimal number",
        },
        BadRecord {
            id: None,
            raw: r#"{"name":"no id"}"#,
            reason: "the record has no id",
        },
    ];
    let outcome = store
        .land(
            PRACTICE,
            TABLE,
            PageRecords {
                rows: &rows,
                bad: &bad,
                retried: &[],
            },
            Checkpoint::Chunk {
                chunk_id,
                after_id: Some(4),
                done: true,
            },
        )
        .await
        .expect("a page with bad records lands");
    assert_eq!(
        outcome,
        LandOutcome {
            written: 3,
            skipped_older: 0,
            quarantined: 3,
        }
    );
    // The rest of the page landed, and the cursor moved as for a clean page.
    let ids: Vec<i64> = store
        .landed_ids(PRACTICE, TABLE)
        .await
        .expect("ids")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(ids, [1, 2, 4]);
    let chunk = store
        .get_chunk(chunk_id)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (chunk.after_id, chunk.landed, chunk.status),
        (Some(4), 3, ChunkStatus::Done)
    );
    // Nothing was dropped: each bad record is held whole, with its reason.
    let held = held(&store).await;
    assert_eq!(held.len(), 3, "{held:?}");
    let by_id = |id: Option<&str>| {
        held.iter()
            .find(|q| q.id.as_deref() == id)
            .unwrap_or_else(|| panic!("{id:?} held"))
    };
    let three = by_id(Some("3"));
    assert_eq!(three.key, "3");
    assert_eq!(three.raw, r#"{"id":"3","lastModified":"yesterday"}"#);
    assert!(three.reason.contains("lastModified"));
    assert_eq!(three.attempts, 1);
    assert_eq!(three.first_seen_at, three.last_tried_at);
    assert_eq!(three.table, TABLE);
    assert!(by_id(Some("abc")).key.starts_with("sha256:"));
    assert!(by_id(None).key.starts_with("sha256:"));
    assert_eq!(
        store.quarantine_counts(PRACTICE).await.expect("counts"),
        vec![(TABLE, 3)]
    );
    // The Debug of a quarantined record never shows the record.
    let shown = format!("{three:?}");
    assert!(!shown.contains("yesterday"), "{shown}");
    // Another practice sees none of it.
    store
        .upsert_practice(&super::new_practice("other"))
        .await
        .expect("registers");
    assert!(
        store
            .quarantine_counts("other")
            .await
            .expect("counts")
            .is_empty()
    );
}

async fn set_aside(store: &Store, bad: &[BadRecord<'_>]) -> LandOutcome {
    store
        .land(
            PRACTICE,
            TABLE,
            PageRecords {
                bad,
                ..PageRecords::default()
            },
            Checkpoint::None,
        )
        .await
        .expect("lands")
}

async fn a_record_seen_again_counts_an_attempt_and_keeps_its_first_sighting(store: Store) {
    with_practice(&store).await;
    let first = BadRecord {
        id: Some("0003"),
        raw: r#"{"id":"0003","lastModified":"yesterday"}"#,
        reason: "first reason",
    };
    assert_eq!(set_aside(&store, &[first]).await.quarantined, 1);
    let before = held(&store).await.remove(0);
    assert_eq!(
        before.key, "3",
        "numeric ids are keyed in canonical decimal"
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let again = BadRecord {
        id: Some("3"),
        raw: r#"{"id":"3","lastModified":"later"}"#,
        reason: "second reason",
    };
    set_aside(&store, &[again]).await;
    let after = held(&store).await;
    assert_eq!(after.len(), 1, "one row per record id");
    let after = &after[0];
    assert_eq!(after.attempts, 2);
    assert_eq!(after.first_seen_at, before.first_seen_at);
    assert!(after.last_tried_at > before.last_tried_at);
    assert_eq!(after.reason, "second reason");
    assert!(after.raw.contains("later"), "the latest version is kept");
    // A retry can leave out what was just tried.
    let untried = store
        .quarantined(PRACTICE, TABLE, Some(after.last_tried_at), 10)
        .await
        .expect("reads");
    assert!(untried.is_empty());
    let all = store
        .quarantined(
            PRACTICE,
            TABLE,
            Some(after.last_tried_at + Duration::seconds(1)),
            10,
        )
        .await
        .expect("reads");
    assert_eq!(all.len(), 1);
}

async fn a_row_the_database_refuses_is_quarantined_with_its_reason(store: Store) {
    with_practice(&store).await;
    // Valid JSON text with a lone surrogate escape: Postgres' jsonb refuses
    // it; SQLite keeps raw as text and lands it (nothing is lost either way).
    let good: Vec<String> = (1..=6)
        .map(|i| procedure(i, "2026-01-01T00:00:00Z", "1.00"))
        .collect();
    let refused = r#"{"id":"4","firstName":"Ann\ud800","lastModified":"2026-01-01T00:00:00Z"}"#;
    let mut rows: Vec<LandedRow<'_>> = good
        .iter()
        .enumerate()
        .map(|(i, raw)| row(i as i64 + 1, Some("2026-01-01T00:00:00Z"), raw))
        .collect();
    rows[3].raw = refused;
    let outcome = store
        .land_page(
            PRACTICE,
            TABLE,
            &rows,
            Checkpoint::Watermark {
                watermark: ts("2026-01-01T00:00:00Z"),
            },
        )
        .await
        .expect("one refused row never fails its page");
    let ids: Vec<i64> = store
        .landed_ids(PRACTICE, TABLE)
        .await
        .expect("ids")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let state = store
        .get_sync_state(PRACTICE, TABLE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(state.watermark, Some(ts("2026-01-01T00:00:00Z")));
    match store.backend() {
        Backend::Postgres => {
            assert_eq!(
                outcome,
                LandOutcome {
                    written: 5,
                    skipped_older: 0,
                    quarantined: 1,
                }
            );
            assert_eq!(ids, [1, 2, 3, 5, 6]);
            assert_eq!(state.landed_count, 5);
            let held = held(&store).await;
            assert_eq!(held.len(), 1);
            assert_eq!(held[0].id.as_deref(), Some("4"));
            assert_eq!(held[0].raw, refused, "kept exactly as received");
            assert!(
                held[0]
                    .reason
                    .contains("Postgres refused the record (22P02)")
                    && held[0].reason.contains("surrogate"),
                "the database's reason: {}",
                held[0].reason
            );
            // A retry meets the same refusal: still held, one more attempt.
            let again = store
                .land_page(PRACTICE, TABLE, &rows[3..4], Checkpoint::None)
                .await
                .expect("lands");
            assert_eq!(again.quarantined, 1);
            assert_eq!(held_attempts(&store).await, 2);
        }
        Backend::Sqlite => {
            assert_eq!(outcome.written, 6);
            assert_eq!(outcome.quarantined, 0);
            assert_eq!(ids, [1, 2, 3, 4, 5, 6]);
            assert!(held(&store).await.is_empty());
        }
    }
}

async fn held_attempts(store: &Store) -> i64 {
    held(store).await.first().map_or(0, |q| q.attempts)
}

async fn a_row_that_is_not_an_object_is_quarantined(store: Store) {
    with_practice(&store).await;
    let chunk_id = one_chunk(&store).await;
    let good = procedure(1, "2026-01-01T00:00:00Z", "1.00");
    let rows = [
        row(1, Some("2026-01-01T00:00:00Z"), &good),
        row(2, None, "{\"id\":\"2\","),
    ];
    let outcome = store
        .land_page(
            PRACTICE,
            TABLE,
            &rows,
            Checkpoint::Chunk {
                chunk_id,
                after_id: Some(2),
                done: false,
            },
        )
        .await
        .expect("lands the rest");
    assert_eq!((outcome.written, outcome.quarantined), (1, 1));
    let chunk = store
        .get_chunk(chunk_id)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!((chunk.after_id, chunk.landed), (Some(2), 1));
    let held = held(&store).await;
    assert_eq!(held[0].key, "2");
    assert!(held[0].reason.contains("cannot read"), "{}", held[0].reason);
}

async fn a_valid_version_landing_later_leaves_the_quarantine(store: Store) {
    with_practice(&store).await;
    let bad = [
        BadRecord {
            id: Some("7"),
            raw: r#"{"id":"7","lastModified":"yesterday"}"#,
            reason: "bad lastModified",
        },
        BadRecord {
            id: Some("8"),
            raw: r#"{"id":"8","lastModified":"yesterday"}"#,
            reason: "bad lastModified",
        },
    ];
    store
        .land(
            PRACTICE,
            TABLE,
            PageRecords {
                bad: &bad,
                ..PageRecords::default()
            },
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(held(&store).await.len(), 2);
    // Record 7 comes back valid in a later page; 8 does not.
    let seven = procedure(7, "2026-02-01T00:00:00Z", "2.00");
    let nine = procedure(9, "2026-02-01T00:00:00Z", "2.00");
    let rows = [
        row(7, Some("2026-02-01T00:00:00Z"), &seven),
        row(9, Some("2026-02-01T00:00:00Z"), &nine),
    ];
    store
        .land_page(PRACTICE, TABLE, &rows, Checkpoint::None)
        .await
        .expect("lands");
    let held = held(&store).await;
    assert_eq!(
        held.iter().map(|q| q.key.as_str()).collect::<Vec<_>>(),
        ["8"]
    );
    // Even a valid version older than the one stored clears it: the record
    // is readable, and the newest version is the one kept.
    let older = procedure(7, "2026-01-01T00:00:00Z", "1.00");
    store
        .land(
            PRACTICE,
            TABLE,
            PageRecords {
                bad: &[BadRecord {
                    id: Some("7"),
                    raw: r#"{"id":"7","x":1}"#,
                    reason: "again",
                }],
                ..PageRecords::default()
            },
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let outcome = store
        .land_page(
            PRACTICE,
            TABLE,
            &[row(7, Some("2026-01-01T00:00:00Z"), &older)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!((outcome.written, outcome.skipped_older), (0, 1));
    assert_eq!(
        store
            .quarantined(PRACTICE, TABLE, None, 10)
            .await
            .expect("reads")
            .len(),
        1,
        "7 left again; 8 stays"
    );
    // A page holding a valid and a bad version of one record: the valid
    // one lands and nothing is held for it.
    let ten = procedure(10, "2026-02-01T00:00:00Z", "2.00");
    store
        .land(
            PRACTICE,
            TABLE,
            PageRecords {
                rows: &[row(10, Some("2026-02-01T00:00:00Z"), &ten)],
                bad: &[BadRecord {
                    id: Some("10"),
                    raw: r#"{"id":"10","lastModified":"?"}"#,
                    reason: "bad",
                }],
                retried: &[],
            },
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert!(
        !store
            .quarantined(PRACTICE, TABLE, None, 10)
            .await
            .expect("reads")
            .iter()
            .any(|q| q.key == "10")
    );
}

async fn retried_records_leave_the_quarantine_unless_set_aside_again(store: Store) {
    with_practice(&store).await;
    let bad = [
        BadRecord {
            id: Some(" 11 "),
            raw: r#"{"id":" 11 ","lastModified":"2026-01-01T00:00:00Z"}"#,
            reason: "its id is not a decimal number",
        },
        BadRecord {
            id: Some("12"),
            raw: r#"{"id":"12","lastModified":"yesterday"}"#,
            reason: "bad lastModified",
        },
    ];
    store
        .land(
            PRACTICE,
            TABLE,
            PageRecords {
                bad: &bad,
                ..PageRecords::default()
            },
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let before = held(&store).await;
    let keys: Vec<&str> = before.iter().map(|q| q.key.as_str()).collect();
    assert_eq!(keys.len(), 2);
    // A reader fixed on our side now reads " 11 " as record 11 (a key that
    // is a digest, not its id); 12 is still unreadable.
    let eleven = procedure(11, "2026-01-01T00:00:00Z", "1.00");
    let outcome = store
        .land(
            PRACTICE,
            TABLE,
            PageRecords {
                rows: &[row(11, Some("2026-01-01T00:00:00Z"), &eleven)],
                bad: &[bad[1]],
                retried: &keys,
            },
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!((outcome.written, outcome.quarantined), (1, 1));
    let after = held(&store).await;
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].key, "12");
    assert_eq!(after[0].attempts, 2);
    let landed = store
        .landed_ids(PRACTICE, TABLE)
        .await
        .expect("ids")
        .into_iter()
        .map(|(id, _)| id)
        .collect::<Vec<_>>();
    assert_eq!(landed, [11]);
}

async fn a_failing_resource_has_a_failing_since_until_it_succeeds(store: Store) {
    with_practice(&store).await;
    store
        .set_last_error(PRACTICE, TABLE, Some("503"))
        .await
        .expect("records");
    let first = store
        .get_sync_state(PRACTICE, TABLE)
        .await
        .expect("reads")
        .expect("exists")
        .failing_since
        .expect("failing");
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    store
        .set_last_error(PRACTICE, TABLE, Some("503 again"))
        .await
        .expect("records");
    let state = store
        .get_sync_state(PRACTICE, TABLE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        state.failing_since,
        Some(first),
        "kept while it keeps failing"
    );
    assert_eq!(state.last_error.as_deref(), Some("503 again"));
    store
        .set_last_error(PRACTICE, TABLE, None)
        .await
        .expect("clears");
    let state = store
        .get_sync_state(PRACTICE, TABLE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!((state.last_error, state.failing_since), (None, None));
}

async fn the_overview_counts_quarantine_and_failing_resources(store: Store) {
    with_practice(&store).await;
    let clean = &store.practice_overview().await.expect("reads")[0];
    assert_eq!((clean.quarantined, clean.failing_since), (0, None));
    store
        .land(
            PRACTICE,
            Table::Patients,
            PageRecords {
                bad: &[
                    BadRecord {
                        id: Some("1"),
                        raw: "{}",
                        reason: "r",
                    },
                    BadRecord {
                        id: Some("2"),
                        raw: "{}",
                        reason: "r",
                    },
                ],
                ..PageRecords::default()
            },
            Checkpoint::None,
        )
        .await
        .expect("lands");
    store
        .set_last_error(PRACTICE, Table::Visits, Some("503"))
        .await
        .expect("records");
    // A resource the organization is not offered does not count as failing.
    store
        .set_last_error(PRACTICE, Table::Transactions, Some("404"))
        .await
        .expect("records");
    store
        .set_not_offered(
            PRACTICE,
            Table::Transactions,
            Some(ts("2020-01-01T00:00:00Z")),
        )
        .await
        .expect("records");
    let overview = &store.practice_overview().await.expect("reads")[0];
    assert_eq!(overview.quarantined, 2);
    let visits = store
        .get_sync_state(PRACTICE, Table::Visits)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(overview.failing_since, visits.failing_since);
    let since = overview.failing_since.expect("failing");
    assert!(time::OffsetDateTime::now_utc() - since < Duration::minutes(5));
}
