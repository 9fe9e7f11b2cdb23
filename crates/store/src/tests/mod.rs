//! The store's suite: each test is written once, as an async fn taking a
//! migrated [`Store`], and run on both backends: on Postgres in a fresh
//! database of its own (`#[sqlx::test]`, which reads `DATABASE_URL`), and
//! on SQLite in memory.

use serde_json::json;
use time::OffsetDateTime;
use time::macros::{date, datetime};

use crate::store::Inner;
use crate::{
    Backend, Checkpoint, ChunkStatus, LandOutcome, LandedRow, NewChunk, NewPractice,
    PracticeStatus, Store, StoreError, SyncPhase, Table, Value,
};

mod schema;
mod sim_shapes;

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[sqlx::test(migrations = false)]
                async fn $name(pool: sqlx::PgPool) {
                    let store = crate::Store::from_pg_pool(pool);
                    store.migrate().await.expect("the Postgres migrations apply to a fresh database");
                    super::$name(store).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let store = crate::Store::connect("sqlite::memory:").await.expect("SQLite opens");
                    store.migrate().await.expect("the SQLite migrations apply to a fresh database");
                    super::$name(store).await;
                }
            )*
        }
    };
}

mod budget;
mod completeness;
mod connections;
mod quarantine;
mod runtime;

on_both_backends!(
    migrations_twice_are_a_no_op,
    schema_has_exactly_the_spec_columns,
    land_inserts_and_reads_back,
    landing_the_same_page_twice_changes_nothing,
    older_never_overwrites_newer,
    equal_last_modified_replaces_raw,
    duplicates_within_a_page_keep_the_newest,
    failed_page_moves_neither_rows_nor_checkpoint,
    chunk_cursor_advances_with_rows,
    watermark_never_regresses,
    a_pass_cursor_moves_forward_and_the_watermark_clears_it,
    typed_extraction,
    garbage_values_are_null_and_the_row_is_kept,
    nul_characters_land,
    big_page_crosses_batches,
    practices_are_isolated,
    chunks_are_idempotent_and_ordered,
    practice_lifecycle,
    practice_checks_reject_unknown_values,
    sync_state_helpers,
);

const PRACTICE: &str = "practice-1";

fn new_practice(id: &str) -> NewPractice {
    NewPractice {
        practice_id: id.to_owned(),
        organization_id: "0123456789abcdef01234567".to_owned(),
        location_id: 7_000_000_000_114,
        api_base: "https://test.hs1api.com/ascend-gateway/api".to_owned(),
        sync_interval_minutes: 15,
    }
}

async fn with_practice(store: &Store) {
    store
        .upsert_practice(&new_practice(PRACTICE))
        .await
        .expect("practice registers");
}

fn ts(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("test timestamp")
}

/// A procedure-shaped record.
fn procedure(id: i64, last_modified: &str, fee: &str) -> String {
    json!({
        "id": id.to_string(),
        "patient": {"id": "7000000000001", "type": "PatientV1", "url": "https://x/v1/patients/7000000000001"},
        "procedureCode": "D0120",
        "fee": fee,
        "status": "COMPLETED",
        "date": "2026-03-04",
        "lastModified": last_modified,
    })
    .to_string()
}

fn row<'a>(id: i64, last_modified: Option<&str>, raw: &'a str) -> LandedRow<'a> {
    LandedRow {
        id,
        last_modified: last_modified.map(ts),
        raw,
    }
}

fn parsed(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).expect("stored raw is JSON")
}

async fn raw_of(store: &Store, table: Table, id: i64) -> serde_json::Value {
    let raw = store
        .landed_raw(PRACTICE, table, id)
        .await
        .expect("reads")
        .expect("row exists");
    parsed(&raw)
}

async fn column(store: &Store, table: Table, id: i64, name: &str) -> Value {
    let columns = store
        .landed_columns(PRACTICE, table, id)
        .await
        .expect("reads")
        .expect("row exists");
    columns
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .expect("column in spec")
}

/// How many migrations the database has recorded as applied.
async fn applied_migrations(store: &Store) -> i64 {
    let sql = "SELECT COUNT(*) FROM _sqlx_migrations WHERE success";
    match &store.inner {
        Inner::Pg(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        Inner::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .expect("migrations table readable")
}

async fn migrations_twice_are_a_no_op(store: Store) {
    let before = applied_migrations(&store).await;
    let embedded = match store.backend() {
        Backend::Postgres => crate::store::POSTGRES_MIGRATOR.iter().count(),
        Backend::Sqlite => crate::store::SQLITE_MIGRATOR.iter().count(),
    };
    assert!(embedded >= 3, "the migrations are embedded");
    assert_eq!(
        before, embedded as i64,
        "every migration applied on a fresh database"
    );
    store.migrate().await.expect("second run");
    store.migrate().await.expect("third run");
    assert_eq!(applied_migrations(&store).await, before);
    // And the schema is usable.
    with_practice(&store).await;
    assert_eq!(store.list_practices().await.expect("lists").len(), 1);
}

async fn schema_has_exactly_the_spec_columns(store: Store) {
    schema::assert_schema_matches_spec(&store).await;
}

async fn land_inserts_and_reads_back(store: Store) {
    with_practice(&store).await;
    let raws: Vec<String> = (1..=3)
        .map(|i| procedure(i, "2026-03-04T10:00:00.000Z", "10.00"))
        .collect();
    let rows: Vec<LandedRow<'_>> = raws
        .iter()
        .enumerate()
        .map(|(i, raw)| row(i as i64 + 1, Some("2026-03-04T10:00:00.000Z"), raw))
        .collect();
    let outcome = store
        .land_page(PRACTICE, Table::PatientProcedures, &rows, Checkpoint::None)
        .await
        .expect("lands");
    assert_eq!(
        outcome,
        LandOutcome {
            written: 3,
            skipped_older: 0,
            quarantined: 0,
        }
    );
    assert_eq!(
        store
            .count(PRACTICE, Table::PatientProcedures)
            .await
            .expect("counts"),
        3
    );
    assert_eq!(
        store
            .count(PRACTICE, Table::Patients)
            .await
            .expect("counts"),
        0
    );
    let ids = store
        .landed_ids(PRACTICE, Table::PatientProcedures)
        .await
        .expect("ids");
    let lm = ts("2026-03-04T10:00:00Z");
    assert_eq!(ids, vec![(1, Some(lm)), (2, Some(lm)), (3, Some(lm))]);
    assert_eq!(
        store
            .landed_ids_in_range(PRACTICE, Table::PatientProcedures, 2, 3)
            .await
            .expect("ids"),
        vec![(2, Some(lm))]
    );
    assert_eq!(
        store
            .count_in_range(PRACTICE, Table::PatientProcedures, 2, 100)
            .await
            .expect("counts"),
        2
    );
    assert_eq!(
        raw_of(&store, Table::PatientProcedures, 2).await,
        parsed(&raws[1])
    );
    assert_eq!(
        store
            .landed_raw(PRACTICE, Table::PatientProcedures, 99)
            .await
            .expect("reads"),
        None
    );
    assert_eq!(
        store
            .landed_columns(PRACTICE, Table::PatientProcedures, 99)
            .await
            .expect("reads"),
        None
    );
    // An empty page is fine.
    let outcome = store
        .land_page(PRACTICE, Table::PatientProcedures, &[], Checkpoint::None)
        .await
        .expect("lands nothing");
    assert_eq!(outcome, LandOutcome::default());
}

async fn landing_the_same_page_twice_changes_nothing(store: Store) {
    with_practice(&store).await;
    let raws: Vec<String> = (10..20)
        .map(|i| procedure(i, "2026-03-04T10:00:00.000Z", "1.00"))
        .collect();
    let rows: Vec<LandedRow<'_>> = raws
        .iter()
        .zip(10..)
        .map(|(raw, id)| row(id, Some("2026-03-04T10:00:00.000Z"), raw))
        .collect();
    for _ in 0..2 {
        store
            .land_page(PRACTICE, Table::PatientProcedures, &rows, Checkpoint::None)
            .await
            .expect("lands");
    }
    let ids = store
        .landed_ids(PRACTICE, Table::PatientProcedures)
        .await
        .expect("ids");
    assert_eq!(
        ids.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    for (raw, id) in raws.iter().zip(10..) {
        assert_eq!(
            raw_of(&store, Table::PatientProcedures, id).await,
            parsed(raw)
        );
    }
}

async fn older_never_overwrites_newer(store: Store) {
    with_practice(&store).await;
    let table = Table::PatientProcedures;
    let newer = procedure(5, "2026-03-05T00:00:00.000Z", "20.00");
    let older = procedure(5, "2026-03-04T00:00:00.000Z", "10.00");
    store
        .land_page(
            PRACTICE,
            table,
            &[row(5, Some("2026-03-05T00:00:00.000Z"), &newer)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let outcome = store
        .land_page(
            PRACTICE,
            table,
            &[row(5, Some("2026-03-04T00:00:00.000Z"), &older)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(
        outcome,
        LandOutcome {
            written: 0,
            skipped_older: 1,
            quarantined: 0,
        }
    );
    assert_eq!(raw_of(&store, table, 5).await, parsed(&newer));
    assert_eq!(
        column(&store, table, 5, "fee").await,
        Value::Decimal("20.00".into())
    );
    // A version without lastModified does not replace one with it...
    let unknown = procedure(5, "", "30.00");
    let outcome = store
        .land_page(PRACTICE, table, &[row(5, None, &unknown)], Checkpoint::None)
        .await
        .expect("lands");
    assert_eq!(outcome.skipped_older, 1);
    assert_eq!(raw_of(&store, table, 5).await, parsed(&newer));
    // ...but any version replaces a stored one without it.
    store
        .land_page(PRACTICE, table, &[row(6, None, &unknown)], Checkpoint::None)
        .await
        .expect("lands");
    let outcome = store
        .land_page(
            PRACTICE,
            table,
            &[row(6, Some("2000-01-01T00:00:00Z"), &older)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(outcome.written, 1);
    assert_eq!(raw_of(&store, table, 6).await, parsed(&older));
    // Sub-millisecond order counts.
    let a = procedure(7, "x", "1.00");
    let b = procedure(7, "y", "2.00");
    store
        .land_page(
            PRACTICE,
            table,
            &[row(7, Some("2026-03-05T00:00:00.000002Z"), &a)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let outcome = store
        .land_page(
            PRACTICE,
            table,
            &[row(7, Some("2026-03-05T00:00:00.000001Z"), &b)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(outcome.skipped_older, 1);
    assert_eq!(raw_of(&store, table, 7).await, parsed(&a));
}

async fn equal_last_modified_replaces_raw(store: Store) {
    with_practice(&store).await;
    let table = Table::PatientProcedures;
    let lm = "2026-03-05T00:00:00.123Z";
    let first = procedure(5, lm, "20.00");
    let second = procedure(5, lm, "25.00");
    store
        .land_page(
            PRACTICE,
            table,
            &[row(5, Some(lm), &first)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let outcome = store
        .land_page(
            PRACTICE,
            table,
            &[row(5, Some(lm), &second)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(
        outcome,
        LandOutcome {
            written: 1,
            skipped_older: 0,
            quarantined: 0,
        }
    );
    assert_eq!(raw_of(&store, table, 5).await, parsed(&second));
    assert_eq!(
        column(&store, table, 5, "fee").await,
        Value::Decimal("25.00".into())
    );
}

async fn duplicates_within_a_page_keep_the_newest(store: Store) {
    with_practice(&store).await;
    let table = Table::PatientProcedures;
    let newest = procedure(1, "b", "3.00");
    let older = procedure(1, "a", "1.00");
    let tie_first = procedure(2, "c", "5.00");
    let tie_last = procedure(2, "c", "6.00");
    let rows = [
        row(1, Some("2026-01-02T00:00:00Z"), &newest),
        row(2, Some("2026-01-01T00:00:00Z"), &tie_first),
        row(1, Some("2026-01-01T00:00:00Z"), &older),
        row(2, Some("2026-01-01T00:00:00Z"), &tie_last),
    ];
    let outcome = store
        .land_page(PRACTICE, table, &rows, Checkpoint::None)
        .await
        .expect("lands");
    assert_eq!(
        outcome,
        LandOutcome {
            written: 2,
            skipped_older: 2,
            quarantined: 0,
        }
    );
    assert_eq!(raw_of(&store, table, 1).await, parsed(&newest));
    assert_eq!(raw_of(&store, table, 2).await, parsed(&tie_last));
}

async fn failed_page_moves_neither_rows_nor_checkpoint(store: Store) {
    with_practice(&store).await;
    let table = Table::PatientProcedures;
    store
        .create_chunks(
            PRACTICE,
            &[NewChunk {
                table,
                id_from: 0,
                id_to: 1000,
                priority: 1,
                filter: String::new(),
                expected: Some(4),
            }],
        )
        .await
        .expect("plans");
    let chunk = store.pending_chunks(PRACTICE).await.expect("lists")[0].clone();
    let raws: Vec<String> = (1..=4)
        .map(|i| procedure(i, "2026-01-01T00:00:00Z", "1.00"))
        .collect();
    let page = |range: std::ops::Range<usize>| -> Vec<LandedRow<'_>> {
        range
            .map(|i| row(i as i64 + 1, Some("2026-01-01T00:00:00Z"), &raws[i]))
            .collect()
    };
    store
        .land_page(
            PRACTICE,
            table,
            &page(0..2),
            Checkpoint::Chunk {
                chunk_id: chunk.chunk_id,
                after_id: Some(2),
                done: false,
            },
        )
        .await
        .expect("first page lands");
    let before = store
        .get_chunk(chunk.chunk_id)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!((before.after_id, before.landed), (Some(2), 2));

    let assert_unmoved = |label: &'static str| {
        let store = store.clone();
        let before = before.clone();
        async move {
            let ids = store.landed_ids(PRACTICE, table).await.expect("ids");
            assert_eq!(ids.len(), 2, "{label}: no row of the failed page landed");
            let now = store
                .get_chunk(before.chunk_id)
                .await
                .expect("reads")
                .expect("exists");
            assert_eq!(
                (now.after_id, now.landed, now.status),
                (before.after_id, before.landed, before.status),
                "{label}"
            );
        }
    };

    // The checkpoint names a chunk that does not exist: the rows, already
    // written in the transaction, roll back.
    let error = store
        .land_page(
            PRACTICE,
            table,
            &page(2..4),
            Checkpoint::Chunk {
                chunk_id: 999_999,
                after_id: Some(4),
                done: true,
            },
        )
        .await
        .expect_err("unknown chunk");
    assert!(
        matches!(
            error,
            StoreError::UnknownChunk {
                chunk_id: 999_999,
                ..
            }
        ),
        "{error}"
    );
    assert_unmoved("unknown chunk").await;

    // A cursor outside the chunk's range is refused by the database.
    let error = store
        .land_page(
            PRACTICE,
            table,
            &page(2..4),
            Checkpoint::Chunk {
                chunk_id: chunk.chunk_id,
                after_id: Some(5000),
                done: false,
            },
        )
        .await
        .expect_err("cursor out of range");
    assert!(
        matches!(&error, StoreError::Constraint { constraint, .. } if constraint == "sync_chunks_after_id_check"),
        "{error}"
    );
    assert_unmoved("cursor out of range").await;

    // The chunk belongs to another table.
    let error = store
        .land_page(
            PRACTICE,
            Table::Patients,
            &page(2..4),
            Checkpoint::Chunk {
                chunk_id: chunk.chunk_id,
                after_id: Some(4),
                done: false,
            },
        )
        .await
        .expect_err("other table");
    assert!(matches!(error, StoreError::ChunkMismatch { .. }), "{error}");
    assert_eq!(
        store
            .count(PRACTICE, Table::Patients)
            .await
            .expect("counts"),
        0
    );
    assert_unmoved("other table").await;

    // A watermark for a practice that is not registered.
    let error = store
        .land_page(
            "nobody",
            table,
            &page(2..4),
            Checkpoint::Watermark {
                watermark: ts("2026-01-01T00:00:00Z"),
            },
        )
        .await
        .expect_err("unknown practice");
    assert!(
        matches!(&error, StoreError::UnknownPractice { practice_id } if practice_id == "nobody"),
        "{error}"
    );
    assert_eq!(store.count("nobody", table).await.expect("counts"), 0);

    // And the retry of the page lands it with its cursor.
    store
        .land_page(
            PRACTICE,
            table,
            &page(2..4),
            Checkpoint::Chunk {
                chunk_id: chunk.chunk_id,
                after_id: Some(4),
                done: true,
            },
        )
        .await
        .expect("retry lands");
    let after = store
        .get_chunk(chunk.chunk_id)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        (after.after_id, after.landed, after.status),
        (Some(4), 4, ChunkStatus::Done)
    );
    assert_eq!(store.count(PRACTICE, table).await.expect("counts"), 4);
}

async fn chunk_cursor_advances_with_rows(store: Store) {
    with_practice(&store).await;
    let table = Table::Patients;
    store
        .create_chunks(
            PRACTICE,
            &[NewChunk {
                table,
                id_from: 100,
                id_to: 200,
                priority: 0,
                filter: String::new(),
                expected: None,
            }],
        )
        .await
        .expect("plans");
    let chunk_id = store.pending_chunks(PRACTICE).await.expect("lists")[0].chunk_id;
    let raw = json!({"id": "1"}).to_string();
    let land = |ids: Vec<i64>, after_id: Option<i64>, done: bool| {
        let store = store.clone();
        let raw = raw.clone();
        async move {
            let rows: Vec<LandedRow<'_>> = ids
                .iter()
                .map(|&id| LandedRow {
                    id,
                    last_modified: None,
                    raw: &raw,
                })
                .collect();
            store
                .land_page(
                    PRACTICE,
                    table,
                    &rows,
                    Checkpoint::Chunk {
                        chunk_id,
                        after_id,
                        done,
                    },
                )
                .await
                .expect("lands");
            store
                .get_chunk(chunk_id)
                .await
                .expect("reads")
                .expect("exists")
        }
    };
    let c = land(vec![100, 101, 102], Some(102), false).await;
    assert_eq!(
        (c.after_id, c.landed, c.status),
        (Some(102), 3, ChunkStatus::Pending)
    );
    // A replayed page neither moves the cursor back nor counts twice.
    let c = land(vec![101, 102], Some(102), false).await;
    assert_eq!((c.after_id, c.landed), (Some(102), 3));
    let c = land(vec![100], Some(100), false).await;
    assert_eq!((c.after_id, c.landed), (Some(102), 3));
    // Ids outside the chunk land but do not count for it.
    let c = land(vec![150, 250], Some(150), false).await;
    assert_eq!((c.after_id, c.landed), (Some(150), 4));
    assert_eq!(store.count(PRACTICE, table).await.expect("counts"), 5);
    // An empty last page closes the chunk and keeps the cursor.
    let c = land(vec![], None, true).await;
    assert_eq!(
        (c.after_id, c.landed, c.status),
        (Some(150), 4, ChunkStatus::Done)
    );
    // Done stays done.
    let c = land(vec![160], Some(160), false).await;
    assert_eq!(
        (c.after_id, c.landed, c.status),
        (Some(160), 5, ChunkStatus::Done)
    );
    assert!(
        store
            .pending_chunks(PRACTICE)
            .await
            .expect("lists")
            .is_empty()
    );
}

async fn a_pass_cursor_moves_forward_and_the_watermark_clears_it(store: Store) {
    with_practice(&store).await;
    let table = Table::Patients;
    let raw = json!({"id": "1"}).to_string();
    let rows = [LandedRow {
        id: 1,
        last_modified: None,
        raw: &raw,
    }];
    let cursor = |started: &str, after_id: i64, seen: &str| crate::PassCursor {
        started_at: ts(started),
        after_id: Some(after_id),
        max_seen: Some(ts(seen)),
    };
    let pass = |store: &Store| {
        let store = store.clone();
        async move {
            store
                .get_sync_state(PRACTICE, table)
                .await
                .expect("reads")
                .expect("created")
                .pass
        }
    };
    let first = cursor("2026-03-05T10:00:00Z", 500, "2026-03-05T09:00:00Z");
    store
        .land_page(PRACTICE, table, &rows, Checkpoint::Pass(first))
        .await
        .expect("lands");
    assert_eq!(pass(&store).await, Some(first));
    // The same pass, a page landed late (behind): the cursor stays ahead.
    let behind = cursor("2026-03-05T10:00:00Z", 300, "2026-03-05T08:00:00Z");
    store
        .land_page(PRACTICE, table, &rows, Checkpoint::Pass(behind))
        .await
        .expect("lands");
    assert_eq!(pass(&store).await, Some(first));
    let ahead = cursor("2026-03-05T10:00:00Z", 900, "2026-03-05T09:30:00Z");
    store
        .land_page(PRACTICE, table, &rows, Checkpoint::Pass(ahead))
        .await
        .expect("lands");
    assert_eq!(pass(&store).await, Some(ahead));
    // A new pass starts its own cursor.
    let next = cursor("2026-03-05T11:00:00Z", 100, "2026-03-05T10:30:00Z");
    store
        .land_page(PRACTICE, table, &rows, Checkpoint::Pass(next))
        .await
        .expect("lands");
    assert_eq!(pass(&store).await, Some(next));
    // Its last page sets the watermark and ends the pass.
    store
        .land_page(
            PRACTICE,
            table,
            &rows,
            Checkpoint::Watermark {
                watermark: ts("2026-03-05T10:30:00Z"),
            },
        )
        .await
        .expect("lands");
    assert_eq!(pass(&store).await, None);
}

async fn watermark_never_regresses(store: Store) {
    with_practice(&store).await;
    let table = Table::Appointments;
    let raw = json!({"id": "1"}).to_string();
    let rows = [LandedRow {
        id: 1,
        last_modified: None,
        raw: &raw,
    }];
    let mark = |watermark: &str| Checkpoint::Watermark {
        watermark: ts(watermark),
    };
    assert_eq!(
        store.get_sync_state(PRACTICE, table).await.expect("reads"),
        None
    );
    store
        .land_page(PRACTICE, table, &rows, mark("2026-03-05T10:00:00.500Z"))
        .await
        .expect("lands");
    let state = store
        .get_sync_state(PRACTICE, table)
        .await
        .expect("reads")
        .expect("created");
    assert_eq!(state.watermark, Some(ts("2026-03-05T10:00:00.500Z")));
    assert_eq!(state.landed_count, 1);
    assert_eq!(state.phase, SyncPhase::Initial);
    // Earlier: kept.
    store
        .land_page(PRACTICE, table, &rows, mark("2026-03-05T10:00:00.499Z"))
        .await
        .expect("lands");
    let state = store
        .get_sync_state(PRACTICE, table)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(state.watermark, Some(ts("2026-03-05T10:00:00.500Z")));
    assert_eq!(state.landed_count, 2);
    // Later, in another offset: taken, in UTC.
    store
        .land_page(PRACTICE, table, &[], mark("2026-03-05T12:00:01+02:00"))
        .await
        .expect("lands");
    let state = store
        .get_sync_state(PRACTICE, table)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(state.watermark, Some(ts("2026-03-05T10:00:01Z")));
    assert_eq!(state.landed_count, 2);
    // Other tables are untouched.
    assert_eq!(
        store
            .get_sync_state(PRACTICE, Table::Patients)
            .await
            .expect("reads"),
        None
    );
}

async fn typed_extraction(store: Store) {
    with_practice(&store).await;
    let procedure_raw = json!({
        "id": "7000000457903",
        "patient": {"id": "7000000000001", "type": "PatientV1", "url": "u"},
        "visit": {"id": "7000000000002", "type": "VisitV1", "url": "u"},
        "provider": {"id": "7000000000003", "type": "ProviderV1", "url": "u"},
        "location": {"id": "7000000000114", "type": "LocationV1", "url": "u"},
        "procedureCode": "D0120",
        "fee": "125.50",
        "status": "COMPLETED",
        "date": "2026-03-04",
        "lastModified": "2026-03-04T10:11:12.345Z",
        "somethingNew": {"nested": [1, 2, 3]},
    })
    .to_string();
    store
        .land_page(
            PRACTICE,
            Table::PatientProcedures,
            &[row(
                7_000_000_457_903,
                Some("2026-03-04T10:11:12.345Z"),
                &procedure_raw,
            )],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let columns = store
        .landed_columns(PRACTICE, Table::PatientProcedures, 7_000_000_457_903)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        columns,
        vec![
            ("patient_id", Value::Int(7_000_000_000_001)),
            ("visit_id", Value::Int(7_000_000_000_002)),
            ("provider_id", Value::Int(7_000_000_000_003)),
            ("location_id", Value::Int(7_000_000_000_114)),
            ("procedure_code", Value::Text("D0120".into())),
            ("fee", Value::Decimal("125.50".into())),
            ("status", Value::Text("COMPLETED".into())),
            ("procedure_date", Value::Date(date!(2026 - 03 - 04))),
        ]
    );
    assert_eq!(
        raw_of(&store, Table::PatientProcedures, 7_000_000_457_903).await,
        parsed(&procedure_raw)
    );

    let appointment = json!({
        "id": "42",
        "start": "2026-03-04T15:00:00.000Z",
        "end": "2026-03-04T10:30:00-05:00",
        "duration": 30,
        "status": "CONFIRMED",
        "bookingType": "RECARE",
        "patient": {"id": "1"},
        "provider": {"id": "2"},
        "operatory": {"id": "3"},
        "location": {"id": "4"},
        "note": "bring x-rays",
    })
    .to_string();
    store
        .land_page(
            PRACTICE,
            Table::Appointments,
            &[row(42, None, &appointment)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let columns = store
        .landed_columns(PRACTICE, Table::Appointments, 42)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        columns,
        vec![
            (
                "start_at",
                Value::Timestamp(datetime!(2026-03-04 15:00 UTC))
            ),
            ("end_at", Value::Timestamp(datetime!(2026-03-04 15:30 UTC))),
            ("duration_minutes", Value::Int(30)),
            ("status", Value::Text("CONFIRMED".into())),
            ("booking_type", Value::Text("RECARE".into())),
            ("patient_id", Value::Int(1)),
            ("provider_id", Value::Int(2)),
            ("operatory_id", Value::Int(3)),
            ("location_id", Value::Int(4)),
            ("note", Value::Text("bring x-rays".into())),
        ]
    );

    let patient = json!({
        "id": "9",
        "firstName": "Ann",
        "lastName": "O'Neil",
        "preferredName": null,
        "dateOfBirth": "1980-02-29",
        "gender": "FEMALE",
        "patientStatus": "ACTIVE",
        "chartNumber": "AN0001",
        "emailAddress": "ann@example.com",
        "primaryProvider": {"id": "2", "type": "ProviderV1"},
        "primaryGuarantor": {"id": "9", "type": "PatientV1"},
        "preferredLocation": {"id": "4", "type": "LocationV1"},
        "firstVisitDate": "2019-07-01",
        "phones": [{"number": "555-0100"}],
    })
    .to_string();
    store
        .land_page(
            PRACTICE,
            Table::Patients,
            &[row(9, None, &patient)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    let columns = store
        .landed_columns(PRACTICE, Table::Patients, 9)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(
        columns,
        vec![
            ("first_name", Value::Text("Ann".into())),
            ("last_name", Value::Text("O'Neil".into())),
            ("preferred_name", Value::Null),
            ("date_of_birth", Value::Date(date!(1980 - 02 - 29))),
            ("gender", Value::Text("FEMALE".into())),
            ("patient_status", Value::Text("ACTIVE".into())),
            ("chart_number", Value::Text("AN0001".into())),
            ("email_address", Value::Text("ann@example.com".into())),
            ("primary_provider_id", Value::Int(2)),
            ("primary_guarantor_id", Value::Int(9)),
            ("preferred_location_id", Value::Int(4)),
            ("first_visit_date", Value::Date(date!(2019 - 07 - 01))),
        ]
    );

    let transaction =
        json!({"id": "5", "type": "PAYMENT", "amount": -40.5, "date": "2026-03-01"}).to_string();
    store
        .land_page(
            PRACTICE,
            Table::Transactions,
            &[row(5, None, &transaction)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(
        column(&store, Table::Transactions, 5, "amount").await,
        Value::Decimal("-40.50".into())
    );
    assert_eq!(
        column(&store, Table::Transactions, 5, "transaction_date").await,
        Value::Date(date!(2026 - 03 - 01))
    );
    assert_eq!(
        column(&store, Table::Transactions, 5, "patient_id").await,
        Value::Null
    );
}

async fn garbage_values_are_null_and_the_row_is_kept(store: Store) {
    with_practice(&store).await;
    let garbage = json!({
        "id": "1",
        "patient": "7000000000001",
        "visit": {"id": "-5"},
        "provider": {"id": "not a number"},
        "location": {"id": "99999999999999999999"},
        "procedureCode": {"code": "D0120"},
        "fee": "12,50",
        "status": 3,
        "date": "04/03/2026",
    })
    .to_string();
    let too_big = json!({"id": "2", "fee": "1000000000000.00", "date": "2026-02-30"}).to_string();
    let rows = [
        row(1, None, &garbage),
        row(2, None, &too_big),
        row(3, None, "{}"),
    ];
    let outcome = store
        .land_page(PRACTICE, Table::PatientProcedures, &rows, Checkpoint::None)
        .await
        .expect("a page of bad values still lands");
    assert_eq!(outcome.written, 3);
    let columns = store
        .landed_columns(PRACTICE, Table::PatientProcedures, 1)
        .await
        .expect("reads")
        .expect("kept");
    for (name, value) in columns {
        let want = if name == "status" {
            Value::Text("3".into())
        } else {
            Value::Null
        };
        assert_eq!(value, want, "{name}");
    }
    for id in [2, 3] {
        let columns = store
            .landed_columns(PRACTICE, Table::PatientProcedures, id)
            .await
            .expect("reads")
            .expect("kept");
        assert!(
            columns.iter().all(|(_, v)| *v == Value::Null),
            "{id}: {columns:?}"
        );
    }
    assert_eq!(
        raw_of(&store, Table::PatientProcedures, 1).await,
        parsed(&garbage)
    );
}

async fn nul_characters_land(store: Store) {
    with_practice(&store).await;
    let raw = r#"{"id":"1","firstName":"A\u0000B","note":"\\u0000 stays text"}"#;
    store
        .land_page(
            PRACTICE,
            Table::Providers,
            &[row(1, None, raw)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(
        column(&store, Table::Providers, 1, "first_name").await,
        Value::Text("A\u{fffd}B".into())
    );
    assert_eq!(
        raw_of(&store, Table::Providers, 1).await,
        json!({"id": "1", "firstName": "A\u{fffd}B", "note": "\\u0000 stays text"})
    );
}

async fn big_page_crosses_batches(store: Store) {
    with_practice(&store).await;
    let raws: Vec<String> = (0..1234)
        .map(|i| {
            json!({"id": i.to_string(), "firstName": format!("P{i}"), "dateOfBirth": "1990-01-01"})
                .to_string()
        })
        .collect();
    let rows: Vec<LandedRow<'_>> = raws
        .iter()
        .zip(0..)
        .map(|(raw, id)| row(id, Some("2026-01-01T00:00:00Z"), raw))
        .collect();
    let outcome = store
        .land_page(PRACTICE, Table::Patients, &rows, Checkpoint::None)
        .await
        .expect("lands");
    assert_eq!(outcome.written, 1234);
    assert_eq!(
        store
            .count(PRACTICE, Table::Patients)
            .await
            .expect("counts"),
        1234
    );
    assert_eq!(
        column(&store, Table::Patients, 1233, "first_name").await,
        Value::Text("P1233".into())
    );
    let outcome = store
        .land_page(PRACTICE, Table::Patients, &rows, Checkpoint::None)
        .await
        .expect("lands again");
    assert_eq!(outcome.written, 1234, "equal lastModified replaces");
}

async fn practices_are_isolated(store: Store) {
    with_practice(&store).await;
    store
        .upsert_practice(&new_practice("practice-2"))
        .await
        .expect("registers");
    let a = procedure(1, "a", "1.00");
    let b = procedure(1, "b", "2.00");
    let lm = Some("2026-01-01T00:00:00Z");
    store
        .land_page(
            PRACTICE,
            Table::PatientProcedures,
            &[row(1, lm, &a)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    store
        .land_page(
            "practice-2",
            Table::PatientProcedures,
            &[row(1, lm, &b)],
            Checkpoint::None,
        )
        .await
        .expect("lands");
    assert_eq!(
        raw_of(&store, Table::PatientProcedures, 1).await,
        parsed(&a)
    );
    let other = store
        .landed_raw("practice-2", Table::PatientProcedures, 1)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(parsed(&other), parsed(&b));
    assert_eq!(
        store
            .count("practice-2", Table::PatientProcedures)
            .await
            .expect("counts"),
        1
    );
}

async fn chunks_are_idempotent_and_ordered(store: Store) {
    with_practice(&store).await;
    let chunk = |table, id_from, id_to, priority, filter: &str| NewChunk {
        table,
        id_from,
        id_to,
        priority,
        filter: filter.to_owned(),
        expected: Some(10),
    };
    let plan = vec![
        chunk(Table::PatientProcedures, 0, 100, 2, ""),
        chunk(
            Table::Appointments,
            0,
            100,
            1,
            "start>=2026-01-01T00:00:00.000Z",
        ),
        chunk(Table::Appointments, 0, 100, 1, ""),
        chunk(Table::Patients, 100, 200, 0, ""),
        chunk(Table::Patients, 0, 100, 0, ""),
    ];
    assert_eq!(
        store.create_chunks(PRACTICE, &plan).await.expect("plans"),
        5
    );
    assert_eq!(
        store
            .create_chunks(PRACTICE, &plan)
            .await
            .expect("plans again"),
        0
    );
    assert_eq!(
        store
            .create_chunks(PRACTICE, &plan[..2])
            .await
            .expect("plans a part again"),
        0
    );
    let pending = store.pending_chunks(PRACTICE).await.expect("lists");
    let order: Vec<(Table, i64, &str)> = pending
        .iter()
        .map(|c| (c.table, c.id_from, c.filter.as_str()))
        .collect();
    assert_eq!(
        order,
        vec![
            (Table::Patients, 100, ""),
            (Table::Patients, 0, ""),
            (Table::Appointments, 0, "start>=2026-01-01T00:00:00.000Z"),
            (Table::Appointments, 0, ""),
            (Table::PatientProcedures, 0, ""),
        ]
    );
    let first = &pending[0];
    assert_eq!(
        (first.after_id, first.landed, first.expected, first.status),
        (None, 0, Some(10), ChunkStatus::Pending)
    );
    assert_eq!(first.practice_id, PRACTICE);
    assert_eq!(
        store
            .get_chunk(first.chunk_id)
            .await
            .expect("reads")
            .as_ref(),
        Some(first)
    );
    assert_eq!(store.get_chunk(-1).await.expect("reads"), None);
    // Progress survives re-planning.
    store
        .land_page(
            PRACTICE,
            Table::Patients,
            &[],
            Checkpoint::Chunk {
                chunk_id: first.chunk_id,
                after_id: Some(150),
                done: true,
            },
        )
        .await
        .expect("checkpoints");
    assert_eq!(
        store
            .create_chunks(PRACTICE, &plan)
            .await
            .expect("plans again"),
        0
    );
    let pending = store.pending_chunks(PRACTICE).await.expect("lists");
    assert_eq!(pending.len(), 4);
    assert!(pending.iter().all(|c| c.chunk_id != first.chunk_id));
    assert_eq!(store.list_chunks(PRACTICE).await.expect("lists").len(), 5);
    // Refusals.
    let error = store
        .create_chunks(PRACTICE, &[chunk(Table::Patients, 5, 5, 0, "")])
        .await
        .expect_err("empty range");
    assert!(
        matches!(&error, StoreError::Constraint { constraint, .. } if constraint == "sync_chunks_range_check"),
        "{error}"
    );
    let error = store
        .create_chunks("nobody", &plan)
        .await
        .expect_err("unknown practice");
    assert!(
        matches!(error, StoreError::UnknownPractice { .. }),
        "{error}"
    );
    assert!(
        store
            .pending_chunks("nobody")
            .await
            .expect("lists")
            .is_empty()
    );
}

async fn practice_lifecycle(store: Store) {
    assert_eq!(store.get_practice(PRACTICE).await.expect("reads"), None);
    let created = store
        .upsert_practice(&new_practice(PRACTICE))
        .await
        .expect("registers");
    assert_eq!(created.status, PracticeStatus::InitialSync);
    assert_eq!(created.sync_interval_minutes, 15);
    assert_eq!(created.last_success_at, None);
    assert_eq!(created.status_detail, None);
    assert_eq!(
        store.get_practice(PRACTICE).await.expect("reads").as_ref(),
        Some(&created)
    );

    store
        .set_practice_status(
            PRACTICE,
            PracticeStatus::AuthFailed,
            Some("401 Invalid access token"),
        )
        .await
        .expect("sets status");
    let mut changed = new_practice(PRACTICE);
    changed.sync_interval_minutes = 5;
    changed.api_base = "https://prod.hs1api.com/ascend-gateway/api".to_owned();
    let updated = store.upsert_practice(&changed).await.expect("updates");
    assert_eq!(
        updated.status,
        PracticeStatus::AuthFailed,
        "settings do not reset the status"
    );
    assert_eq!(
        updated.status_detail.as_deref(),
        Some("401 Invalid access token")
    );
    assert_eq!(updated.sync_interval_minutes, 5);
    assert_eq!(updated.api_base, changed.api_base);
    assert_eq!(updated.created_at, created.created_at);
    assert!(updated.updated_at >= created.updated_at);

    let t2 = ts("2026-03-05T10:00:00.123456Z");
    store.mark_success(PRACTICE, t2).await.expect("marks");
    store
        .mark_success(PRACTICE, ts("2026-03-05T09:00:00Z"))
        .await
        .expect("marks");
    let practice = store
        .get_practice(PRACTICE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(practice.last_success_at, Some(t2), "never moves backwards");

    store
        .upsert_practice(&new_practice("a-first"))
        .await
        .expect("registers");
    let ids: Vec<String> = store
        .list_practices()
        .await
        .expect("lists")
        .into_iter()
        .map(|p| p.practice_id)
        .collect();
    assert_eq!(ids, vec!["a-first".to_owned(), PRACTICE.to_owned()]);

    let error = store
        .set_practice_status("nobody", PracticeStatus::Active, None)
        .await
        .expect_err("unknown");
    assert!(
        matches!(error, StoreError::UnknownPractice { .. }),
        "{error}"
    );
    let error = store.mark_success("nobody", t2).await.expect_err("unknown");
    assert!(
        matches!(error, StoreError::UnknownPractice { .. }),
        "{error}"
    );
}

async fn practice_checks_reject_unknown_values(store: Store) {
    with_practice(&store).await;
    let error = store
        .set_practice_status_text(PRACTICE, "deleted", None)
        .await
        .expect_err("unknown status");
    assert!(
        matches!(&error, StoreError::Constraint { constraint, .. } if constraint == "practices_status_check"),
        "{error}"
    );
    assert!(!error.is_retryable());
    let practice = store
        .get_practice(PRACTICE)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(practice.status, PracticeStatus::InitialSync);
    for status in PracticeStatus::ALL {
        store
            .set_practice_status(PRACTICE, *status, None)
            .await
            .expect("every known status is allowed");
    }

    let mut bad = new_practice("practice-7");
    bad.sync_interval_minutes = 7;
    let error = store
        .upsert_practice(&bad)
        .await
        .expect_err("7 minutes is not an interval");
    assert!(
        matches!(&error, StoreError::Constraint { constraint, .. } if constraint == "practices_sync_interval_check"),
        "{error}"
    );
    assert_eq!(store.get_practice("practice-7").await.expect("reads"), None);
    for minutes in crate::SYNC_INTERVALS_MINUTES {
        let mut ok = new_practice("practice-7");
        ok.sync_interval_minutes = minutes;
        store
            .upsert_practice(&ok)
            .await
            .expect("every allowed interval");
    }
    let error = store
        .upsert_practice(&new_practice(""))
        .await
        .expect_err("empty id");
    assert!(matches!(error, StoreError::Constraint { .. }), "{error}");
}

async fn sync_state_helpers(store: Store) {
    with_practice(&store).await;
    store
        .set_sync_phase(PRACTICE, Table::Patients, SyncPhase::Incremental)
        .await
        .expect("sets");
    store
        .set_expected_count(PRACTICE, Table::Patients, Some(1200))
        .await
        .expect("sets");
    store
        .set_last_error(PRACTICE, Table::Patients, Some("429 for too long"))
        .await
        .expect("sets");
    store
        .set_expected_count(PRACTICE, Table::Locations, Some(3))
        .await
        .expect("sets");
    let state = store
        .get_sync_state(PRACTICE, Table::Patients)
        .await
        .expect("reads")
        .expect("exists");
    assert_eq!(state.phase, SyncPhase::Incremental);
    assert_eq!(state.expected_count, Some(1200));
    assert_eq!(state.last_error.as_deref(), Some("429 for too long"));
    assert_eq!(state.watermark, None);
    assert_eq!(state.landed_count, 0);
    store
        .set_last_error(PRACTICE, Table::Patients, None)
        .await
        .expect("clears");
    let states = store.list_sync_states(PRACTICE).await.expect("lists");
    assert_eq!(
        states.iter().map(|s| s.table).collect::<Vec<_>>(),
        vec![Table::Locations, Table::Patients]
    );
    assert_eq!(states[1].last_error, None);
    assert_eq!(states[0].phase, SyncPhase::Initial);
    let error = store
        .set_sync_phase("nobody", Table::Patients, SyncPhase::Initial)
        .await
        .expect_err("unknown");
    assert!(
        matches!(error, StoreError::UnknownPractice { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn connect_refuses_unknown_schemes_without_echoing_the_url() {
    let error = Store::connect("mysql://user:secret@host/db")
        .await
        .expect_err("unsupported");
    assert!(matches!(&error, StoreError::UnsupportedUrl { scheme } if scheme == "mysql"));
    assert!(!error.to_string().contains("secret"), "{error}");
    let error = Store::connect("nonsense").await.expect_err("unsupported");
    assert!(matches!(error, StoreError::UnsupportedUrl { .. }));
}

#[tokio::test]
async fn sqlite_file_store_persists_across_connections() {
    let dir = std::env::temp_dir().join(format!("store-test-{}-{}", std::process::id(), line!()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("embedded.sqlite");
    let _ = std::fs::remove_file(&path);
    let url = format!("sqlite:{}", path.display());
    {
        let store = Store::connect(&url).await.expect("creates the file");
        assert_eq!(store.backend(), Backend::Sqlite);
        store.migrate().await.expect("migrates");
        store
            .upsert_practice(&new_practice(PRACTICE))
            .await
            .expect("registers");
        let raw = procedure(1, "x", "1.00");
        store
            .land_page(
                PRACTICE,
                Table::PatientProcedures,
                &[row(1, None, &raw)],
                Checkpoint::None,
            )
            .await
            .expect("lands");
        store.close().await;
    }
    let store = Store::connect(&url).await.expect("reopens");
    store.migrate().await.expect("no-op");
    assert_eq!(
        store
            .count(PRACTICE, Table::PatientProcedures)
            .await
            .expect("counts"),
        1
    );
    store.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
