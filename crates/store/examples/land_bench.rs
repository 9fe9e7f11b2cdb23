//! Landing throughput on Postgres, against `COPY` as the ceiling.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release -p store --example land_bench -- [ROWS]
//! ```
//!
//! In a scratch database of its own (created, then dropped), it lands ROWS
//! (default 200,000) procedure-shaped records in pages of 500 with
//! [`Store::land_page`] (one transaction per page, with a chunk
//! checkpoint), then in the same run:
//!
//! - `COPY`s the same rows into a scratch table of the same shape (typed
//!   columns, raw jsonb, primary key) in one stream: the ceiling;
//! - lands them again into an emptied table with the alternative page
//!   strategy, `COPY` into a temporary table then `INSERT ... SELECT ... ON
//!   CONFLICT` plus the same chunk update, one transaction per page, to
//!   compare with the store's `UNNEST` upsert;
//! - re-lands the same pages with `land_page` (every row conflicts, every
//!   row is replaced): the incremental shape.
//!
//! It prints rows per second for each.
//!
//! `LAND_BENCH_URL_SUFFIX` is appended to the scratch database's URL, e.g.
//! `?host=/var/run/postgresql` to connect over the Unix socket. Comparing
//! both transports shows what TCP costs: sqlx 0.9.0 leaves Nagle's algorithm
//! on (sqlx issue #4335, fixed after 0.9.0), which stalled each page's large
//! bind message by tens of milliseconds; the workspace pins sqlx 0.8, which
//! sets TCP_NODELAY (docs/ARCHITECTURE.md).

use std::time::Instant;

use sqlx::postgres::{PgPoolCopyExt, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use store::{Checkpoint, LandedRow, NewChunk, NewPractice, Store, Table};

const PAGE: usize = 500;
const FIRST_ID: i64 = 7_000_000_000_000;
const PRACTICE: &str = "bench";

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// One generated record with the values its typed columns will hold.
struct Proc {
    id: i64,
    last_modified: time::OffsetDateTime,
    raw: String,
    patient: i64,
    visit: Option<i64>,
    provider: i64,
    location: i64,
    code: &'static str,
    fee: String,
    status: &'static str,
    date: String,
}

fn generate(n: usize) -> Vec<Proc> {
    const CODES: [&str; 6] = ["D0120", "D0150", "D0274", "D1110", "D2391", "D2740"];
    const STATUSES: [&str; 3] = ["COMPLETED", "PLANNED", "EXISTING"];
    let base = time::macros::datetime!(2024-01-01 00:00 UTC);
    (0..n)
        .map(|i| {
            let id = FIRST_ID + i as i64;
            let patient = FIRST_ID + 1_000_000 + (i as i64 % 60_000);
            let visit = (i % 5 != 0).then_some(FIRST_ID + 2_000_000 + i as i64 / 3);
            let provider = FIRST_ID + 3_000_000 + (i as i64 % 12);
            let location = FIRST_ID + 114;
            let code = CODES[i % CODES.len()];
            let fee = format!("{}.{:02}", 50 + (i * 37) % 1500, (i * 7) % 100);
            let status = STATUSES[i % STATUSES.len()];
            let last_modified = base + time::Duration::milliseconds(i as i64 * 977);
            let date = format!("2025-{:02}-{:02}", 1 + i % 12, 1 + i % 28);
            let reference = |kind: &str, path: &str, id: i64| {
                format!(
                    r#"{{"id":"{id}","type":"{kind}","url":"https://prod.hs1api.com/ascend-gateway/api/v1/{path}/{id}"}}"#
                )
            };
            let raw = format!(
                r#"{{"id":"{id}","patient":{},"visit":{},"provider":{},"location":{},"procedureCode":"{code}","description":"Procedure {code}","fee":{fee},"status":"{status}","date":"{date}","tooth":"{}","surfaces":null,"lastModified":"{}"}}"#,
                reference("PatientV1", "patients", patient),
                visit.map_or_else(|| "null".to_owned(), |v| reference("VisitV1", "visits", v)),
                reference("ProviderV1", "providers", provider),
                reference("LocationV1", "locations", location),
                1 + i % 32,
                last_modified
                    .format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
            );
            Proc { id, last_modified, raw, patient, visit, provider, location, code, fee, status, date }
        })
        .collect()
}

/// Text-format `COPY` escaping.
fn copy_text(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// One `COPY` line: practice_id, id, the typed columns, last_modified, raw,
/// synced_at.
fn copy_line(out: &mut String, p: &Proc, synced_at: &str) {
    let visit = p.visit.map_or_else(|| "\\N".to_owned(), |v| v.to_string());
    let lm = p
        .last_modified
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    out.push_str(&format!(
        "{PRACTICE}\t{}\t{}\t{visit}\t{}\t{}\t{}\t{}\t{}\t{}\t{lm}\t",
        p.id, p.patient, p.provider, p.location, p.code, p.fee, p.status, p.date
    ));
    copy_text(out, &p.raw);
    out.push('\t');
    out.push_str(synced_at);
    out.push('\n');
}

const COLUMNS: &str = "practice_id, id, patient_id, visit_id, provider_id, location_id, procedure_code, fee, \
                       status, procedure_date, last_modified, raw, synced_at";

fn rate(rows: usize, started: Instant) -> (f64, f64) {
    let secs = started.elapsed().as_secs_f64();
    (secs, rows as f64 / secs)
}

async fn land_all(store: &Store, procs: &[Proc], chunk_id: i64) -> Result<(f64, f64)> {
    let started = Instant::now();
    for (i, page) in procs.chunks(PAGE).enumerate() {
        let rows: Vec<LandedRow<'_>> = page
            .iter()
            .map(|p| LandedRow {
                id: p.id,
                last_modified: Some(p.last_modified),
                raw: &p.raw,
            })
            .collect();
        let last = page.last().map(|p| p.id);
        let done = (i + 1) * PAGE >= procs.len();
        store
            .land_page(
                PRACTICE,
                Table::PatientProcedures,
                &rows,
                Checkpoint::Chunk {
                    chunk_id,
                    after_id: last,
                    done,
                },
            )
            .await?;
    }
    Ok(rate(procs.len(), started))
}

async fn copy_all(pool: &PgPool, procs: &[Proc]) -> Result<(f64, f64)> {
    sqlx::query(
        "CREATE TABLE bench_copy (LIKE patient_procedures INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES)",
    )
    .execute(pool)
    .await?;
    let synced_at = "2026-01-01T00:00:00Z";
    let started = Instant::now();
    let mut copy = pool
        .copy_in_raw(&format!("COPY bench_copy ({COLUMNS}) FROM STDIN"))
        .await?;
    let mut buffer = String::with_capacity(PAGE * 1024);
    for page in procs.chunks(PAGE) {
        buffer.clear();
        for p in page {
            copy_line(&mut buffer, p, synced_at);
        }
        copy.send(buffer.as_bytes()).await?;
    }
    let copied = copy.finish().await?;
    let measured = rate(procs.len(), started);
    if copied as usize != procs.len() {
        return Err(format!("COPY wrote {copied} rows, not {}", procs.len()).into());
    }
    Ok(measured)
}

/// The alternative page strategy: `COPY` into a temporary table, then one
/// `INSERT ... SELECT ... ON CONFLICT`, plus the chunk update.
async fn copy_upsert_all(
    conn: &mut PgConnection,
    procs: &[Proc],
    chunk_id: i64,
) -> Result<(f64, f64)> {
    let upsert = format!(
        "INSERT INTO patient_procedures AS t ({COLUMNS}) SELECT {COLUMNS} FROM bench_stage \
         ON CONFLICT (practice_id, id) DO UPDATE SET patient_id = excluded.patient_id, \
         visit_id = excluded.visit_id, provider_id = excluded.provider_id, location_id = excluded.location_id, \
         procedure_code = excluded.procedure_code, fee = excluded.fee, status = excluded.status, \
         procedure_date = excluded.procedure_date, last_modified = excluded.last_modified, raw = excluded.raw, \
         synced_at = excluded.synced_at \
         WHERE excluded.last_modified >= t.last_modified OR t.last_modified IS NULL"
    );
    let synced_at = "2026-01-01T00:00:00Z";
    let mut buffer = String::with_capacity(PAGE * 1024);
    let started = Instant::now();
    for page in procs.chunks(PAGE) {
        let mut tx = conn.begin().await?;
        sqlx::query(
            "CREATE TEMP TABLE IF NOT EXISTS bench_stage \
             (LIKE patient_procedures INCLUDING DEFAULTS) ON COMMIT DELETE ROWS",
        )
        .execute(&mut *tx)
        .await?;
        buffer.clear();
        for p in page {
            copy_line(&mut buffer, p, synced_at);
        }
        let mut copy = tx
            .copy_in_raw(&format!("COPY bench_stage ({COLUMNS}) FROM STDIN"))
            .await?;
        copy.send(buffer.as_bytes()).await?;
        copy.finish().await?;
        sqlx::query(upsert.as_str()).execute(&mut *tx).await?;
        let last = page.last().map_or(0, |p| p.id);
        sqlx::query("UPDATE sync_chunks SET after_id = $2, landed = landed + $3, updated_at = now() WHERE chunk_id = $1")
            .bind(chunk_id)
            .bind(last)
            .bind(page.len() as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(rate(procs.len(), started))
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows: usize = match std::env::args().nth(1) {
        Some(n) => n
            .parse()
            .map_err(|_| format!("ROWS must be a number, not {n:?}"))?,
        None => 200_000,
    };
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = format!("store_land_bench_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await?;
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut admin)
        .await?;
    // LAND_BENCH_URL_SUFFIX, e.g. `?options=-c%20synchronous_commit%3Doff`,
    // is appended to the scratch database's URL (diagnostics only).
    let suffix = std::env::var("LAND_BENCH_URL_SUFFIX").unwrap_or_default();
    let url = match admin_url.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{db}{suffix}"),
        None => return Err("DATABASE_URL must end with /DATABASE".into()),
    };

    let outcome = run(&url, rows).await;

    sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .execute(&mut admin)
        .await?;
    outcome
}

async fn run(url: &str, rows: usize) -> Result<()> {
    let procs = generate(rows);
    let avg_raw = procs.iter().map(|p| p.raw.len()).sum::<usize>() / procs.len().max(1);
    println!("{rows} procedure-shaped rows (raw JSON {avg_raw} bytes on average), pages of {PAGE}");

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
    let chunk = |filter: &str| NewChunk {
        table: Table::PatientProcedures,
        id_from: FIRST_ID,
        id_to: FIRST_ID + rows as i64 + 1,
        priority: 0,
        filter: filter.to_owned(),
        expected: Some(rows as i64),
    };
    store
        .create_chunks(PRACTICE, &[chunk(""), chunk("copy-upsert")])
        .await?;
    let chunks = store.pending_chunks(PRACTICE).await?;
    let (land_chunk, copy_chunk) = match chunks.as_slice() {
        [a, b] => (a.chunk_id, b.chunk_id),
        _ => return Err("expected two chunks".into()),
    };

    let (secs, per_sec) = land_all(&store, &procs, land_chunk).await?;
    println!(
        "land_page (UNNEST upsert + chunk checkpoint, insert): {secs:>7.2} s  {per_sec:>9.0} rows/s"
    );
    let landed = store.count(PRACTICE, Table::PatientProcedures).await?;
    if landed as usize != rows {
        return Err(format!("landed {landed} rows, not {rows}").into());
    }

    let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
    let (secs, per_sec) = copy_all(&pool, &procs).await?;
    println!(
        "COPY into a scratch table (one stream, the ceiling):  {secs:>7.2} s  {per_sec:>9.0} rows/s"
    );

    let (secs, per_sec) = land_all(&store, &procs, land_chunk).await?;
    println!(
        "land_page again (every row conflicts and is replaced): {secs:>7.2} s  {per_sec:>9.0} rows/s"
    );

    sqlx::query("TRUNCATE patient_procedures")
        .execute(&pool)
        .await?;
    let mut conn = pool.acquire().await?;
    let (secs, per_sec) = copy_upsert_all(&mut conn, &procs, copy_chunk).await?;
    println!(
        "COPY to temp + INSERT..SELECT upsert per page (insert): {secs:>6.2} s  {per_sec:>9.0} rows/s"
    );
    drop(conn);
    pool.close().await;
    store.close().await;
    Ok(())
}
