//! Applying captured deletes on Postgres: the nightly role's store work.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release -p store --example apply_bench -- [ROWS] [BATCH]
//! ```
//!
//! In a scratch database of its own (created, then dropped): ROWS
//! (default 1,000,000) landed patient procedures of one practice, each
//! with a raw JSON record of about 400 bytes, and a captured delete for
//! every one of them (set-up, not measured). Then, measured: the nightly
//! role's store calls for the whole backlog, as `nightly::Nightly` makes
//! them, without the confirmation calls to Ascend: batches of BATCH
//! (default 1,000) pending deletes taken in (resource, id) order
//! ([`Store::pending_deletes`]) and each applied in one transaction
//! ([`Store::settle_deletes`]: the row's last version kept in
//! `deleted_records`, the landed row and the captured delete deleted).
//! Then it checks the tables and times the retention purge of them all.

use std::time::Instant;

use sqlx::{Connection, PgConnection};
use store::{NewPractice, Store, Table};

const PRACTICE: &str = "bench";
const FIRST_ID: i64 = 7_000_000_000_000;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let arg = |n: usize, default: usize| -> Result<usize> {
        match std::env::args().nth(n) {
            Some(v) => v
                .parse()
                .map_err(|_| format!("argument {n} must be a number, not {v:?}").into()),
            None => Ok(default),
        }
    };
    let rows = arg(1, 1_000_000)?;
    let batch = arg(2, 1_000)?.max(1);
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = format!("store_apply_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    let url = match admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}"),
        None => return Err("DATABASE_URL must end with /DATABASE".into()),
    };
    let outcome = run(&url, rows, batch).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    outcome
}

async fn run(url: &str, rows: usize, batch: usize) -> Result<()> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    store
        .upsert_practice(&NewPractice {
            practice_id: PRACTICE.to_owned(),
            organization_id: "0123456789abcdef01234567".to_owned(),
            location_id: FIRST_ID + 114,
            api_base: "https://prod.hs1api.com/ascend-gateway/api".to_owned(),
            sync_interval_minutes: 15,
        })
        .await?;

    // Set-up (not measured): landed rows and their captured deletes.
    let started = Instant::now();
    let mut conn = PgConnection::connect(url).await?;
    sqlx::query(
        "INSERT INTO patient_procedures (practice_id, id, patient_id, provider_id, location_id, \
         procedure_code, fee, status, last_modified, raw, synced_at) \
         SELECT $1, $2 + g, $2 + 500000 + g % 60000, $2 + 300 + g % 40, $2 + 114, 'D1110', \
         125.00, 'COMPLETED', now() - interval '1 day', \
         jsonb_build_object('id', ($2 + g)::text, 'patient', jsonb_build_object('id', \
         ($2 + 500000 + g % 60000)::text), 'provider', jsonb_build_object('id', \
         ($2 + 300 + g % 40)::text), 'location', jsonb_build_object('id', ($2 + 114)::text), \
         'procedureCode', 'D1110', 'description', 'Prophylaxis - adult', 'fee', 125.00, \
         'status', 'COMPLETED', 'procedureDate', '2026-11-20', 'tooth', null, 'surfaces', '', \
         'note', 'Routine cleaning; patient tolerated well. Next recall in six months.', \
         'lastModified', '2026-11-20T15:04:05.123Z'), now() \
         FROM generate_series(1, $3::bigint) g",
    )
    .bind(PRACTICE)
    .bind(FIRST_ID)
    .bind(rows as i64)
    .execute(&mut conn)
    .await?;
    sqlx::query(
        "INSERT INTO captured_deletes (practice_id, resource, record_id, detected_at, how) \
         SELECT practice_id, 'patient_procedures', id, now(), 'daily' FROM patient_procedures",
    )
    .execute(&mut conn)
    .await?;
    sqlx::query("VACUUM ANALYZE patient_procedures")
        .execute(&mut conn)
        .await?;
    sqlx::query("VACUUM ANALYZE captured_deletes")
        .execute(&mut conn)
        .await?;
    let raw_bytes: i64 =
        sqlx::query_scalar("SELECT (avg(octet_length(raw::text)))::bigint FROM patient_procedures")
            .fetch_one(&mut conn)
            .await?;
    println!(
        "set-up: {rows} landed rows (raw JSON {raw_bytes} bytes on average) and their captured \
         deletes in {:.1} s (not measured)",
        started.elapsed().as_secs_f64()
    );

    // Measured: take a batch, apply it in one transaction, until none.
    let started = Instant::now();
    let mut after = None;
    let (mut applied, mut batches) = (0u64, 0u64);
    loop {
        let pending = store.pending_deletes(PRACTICE, after, batch).await?;
        let Some(last) = pending.last() else { break };
        after = Some(*last);
        let ids: Vec<i64> = pending.iter().map(|p| p.record_id).collect();
        let settled = store
            .settle_deletes(
                PRACTICE,
                Table::PatientProcedures,
                &ids,
                &[],
                time::OffsetDateTime::now_utc(),
            )
            .await?;
        applied += settled.applied;
        batches += 1;
    }
    let took = started.elapsed().as_secs_f64();
    println!(
        "applied {applied} captured deletes in {batches} batches of {batch} in {took:.2} s \
         ({:.0} a second; {:.1} ms a batch)",
        applied as f64 / took,
        took * 1000.0 / batches.max(1) as f64
    );

    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM patient_procedures")
        .fetch_one(&mut conn)
        .await?;
    let captured: i64 = sqlx::query_scalar("SELECT count(*) FROM captured_deletes")
        .fetch_one(&mut conn)
        .await?;
    let kept: i64 = sqlx::query_scalar("SELECT count(*) FROM deleted_records")
        .fetch_one(&mut conn)
        .await?;
    if left != 0 || captured != 0 || kept != rows as i64 {
        return Err(format!(
            "wrong result: {left} landed rows left, {captured} captured, {kept} kept"
        )
        .into());
    }
    println!("checked: 0 landed rows left, 0 pending, {kept} kept in deleted_records");

    let started = Instant::now();
    let purged = store
        .purge_deleted_records(time::OffsetDateTime::now_utc() + time::Duration::days(1))
        .await?;
    println!(
        "retention purge of {purged} kept versions in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok(())
}
