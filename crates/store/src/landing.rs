//! Landing pages of records, and reading landed rows back.
//!
//! The hot path. One call is one transaction: the bulk upsert of the page's
//! rows and the checkpoint (a chunk's cursor or a watermark) commit
//! together or not at all, so a crash never leaves rows without their
//! cursor, nor a cursor ahead of its rows.
//!
//! - Postgres: one `INSERT ... SELECT FROM UNNEST(<one array per column>)
//!   ... ON CONFLICT` per page (one round trip, one plan per table).
//! - SQLite: multi-row `INSERT ... VALUES (...), (...) ... ON CONFLICT` in
//!   batches under SQLite's limit on bound variables.
//!
//! Both keep the newest version of a record: a row is replaced only when
//! the incoming `last_modified` is at least the stored one (equal: the new
//! `raw` wins, so landing the same page twice is a no-op in content), or
//! when the stored one is NULL. A row without `last_modified` never
//! replaces one that has it.
//!
//! A bad record never fails its page (issue 12). Records handed over as bad
//! go to the quarantine in the page's transaction. A row the database
//! refuses (a data error, e.g. `jsonb` refusing a lone surrogate escape)
//! makes the page land again in a second transaction, row ranges tried in
//! savepoints and halved until each refused row is alone: each refused row
//! is quarantined with the database's reason and the others land. The
//! first try has no savepoint, so a clean page costs nothing extra. Every
//! row that lands leaves the quarantine in the same transaction.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use sqlx::postgres::{PgConnection, PgDatabaseError};
use sqlx::sqlite::SqliteConnection;
use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::deletes::DeleteSql;
use crate::error::{Backend, StoreError, db_error};
use crate::extract::{Record, Value, date_text, timestamp_text, without_nul_escapes};
use crate::quarantine::{QuarantineSql, SetAside};
use crate::rows::RowExt;
use crate::spec::{Kind, Table, TableSpec};
use crate::store::{Inner, Store, in_transaction, practice_error, with_pool};
use crate::values::{Checkpoint, ChunkStatus, LandOutcome, LandedRow, PageRecords};

/// The most variables one SQLite statement may bind (SQLite's default
/// `SQLITE_MAX_VARIABLE_NUMBER` since 3.32; sqlx bundles a newer SQLite).
const SQLITE_MAX_VARIABLES: usize = 32_766;
/// The most rows one SQLite statement inserts.
const SQLITE_MAX_ROWS_PER_STATEMENT: usize = 500;

/// A row ready to write: deduplicated, its raw JSON made storable, its
/// typed values extracted.
pub(crate) struct Prepared<'a> {
    id: i64,
    last_modified: Option<DbTime>,
    raw: Cow<'a, str>,
    values: Vec<Value>,
}

/// Whether a version with `incoming` lastModified replaces one with
/// `stored`: the rule of the upserts' `WHERE`, for duplicates in a page.
fn replaces(incoming: Option<DbTime>, stored: Option<DbTime>) -> bool {
    match (incoming, stored) {
        (_, None) => true,
        (Some(incoming), Some(stored)) => incoming >= stored,
        (None, Some(_)) => false,
    }
}

/// Deduplicates a page by id (the version the upsert rule keeps wins; on a
/// tie, the later one), sorts it by id (a fixed lock order, so concurrent
/// pages cannot deadlock), and extracts the typed values. A row that is not
/// a JSON object is set aside (quarantined) instead, with the reason.
fn prepare<'a>(table: Table, rows: &'a [LandedRow<'a>]) -> (Vec<Prepared<'a>>, Vec<SetAside<'a>>) {
    let normalized: Vec<Option<DbTime>> = rows
        .iter()
        .map(|r| r.last_modified.and_then(DbTime::new))
        .collect();
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].id);
    let mut kept: Vec<usize> = Vec::with_capacity(rows.len());
    for i in order {
        match kept.last_mut() {
            Some(last) if rows[*last].id == rows[i].id => {
                if replaces(normalized[i], normalized[*last]) {
                    *last = i;
                }
            }
            _ => kept.push(i),
        }
    }
    let spec = table.spec();
    let mut prepared = Vec::with_capacity(kept.len());
    let mut set_aside = Vec::new();
    for i in kept {
        let row = &rows[i];
        let raw = without_nul_escapes(row.raw);
        match Record::parse(&raw) {
            Ok(record) => {
                let values = record.columns(spec);
                prepared.push(Prepared {
                    id: row.id,
                    last_modified: normalized[i],
                    raw,
                    values,
                });
            }
            Err(reason) => set_aside.push(SetAside::new(
                Some(Cow::Owned(row.id.to_string())),
                Cow::Borrowed(row.raw),
                Cow::Owned(format!("the store cannot read the record: {reason}")),
            )),
        }
    }
    (prepared, set_aside)
}

/// Whether the database refused a statement because of a value in one of
/// its rows (a data error, e.g. `jsonb` refusing a lone surrogate escape),
/// rather than failing as a whole: then the page is landed again row range
/// by row range, to set the refused rows aside.
fn refuses_a_row(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = error else {
        return false;
    };
    if let Some(pg) = db.try_downcast_ref::<PgDatabaseError>() {
        // Class 22: data exception.
        return pg.code().starts_with("22");
    }
    // SQLite (extended codes): string or blob too big, datatype mismatch,
    // out of range, CHECK constraint.
    db.code()
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| matches!(code, 18 | 20 | 25 | 275))
}

/// The database's reason for refusing a row, for the quarantine: its
/// message and detail (they may quote the record: patient data, stored in
/// the quarantine only, never logged).
fn refusal_reason(backend: Backend, error: &sqlx::Error) -> String {
    let sqlx::Error::Database(db) = error else {
        return format!("{backend} refused the record: {error}");
    };
    match db.try_downcast_ref::<PgDatabaseError>() {
        Some(pg) => match pg.detail() {
            Some(detail) => format!(
                "{backend} refused the record ({}): {}: {detail}",
                pg.code(),
                pg.message()
            ),
            None => format!(
                "{backend} refused the record ({}): {}",
                pg.code(),
                pg.message()
            ),
        },
        None => format!("{backend} refused the record: {}", db.message()),
    }
}

/// Upserts `rows` one range at a time, each in a savepoint: a range the
/// database refuses is rolled back and halved, until each refused row is
/// alone. Returns the rows written and the refused rows (index, reason), in
/// id order.
async fn upsert_isolating<L: Lander>(
    conn: &mut L,
    backend: Backend,
    practice_id: &str,
    table: Table,
    rows: &[Prepared<'_>],
    now: DbTime,
) -> Result<(u64, Vec<(usize, String)>), sqlx::Error> {
    let mut written = 0;
    let mut refused = Vec::new();
    let mut ranges = vec![(0, rows.len())];
    while let Some((from, to)) = ranges.pop() {
        if from >= to {
            continue;
        }
        conn.savepoint("SAVEPOINT landing_range").await?;
        match conn
            .upsert_rows(practice_id, table, &rows[from..to], now)
            .await
        {
            Ok(n) => {
                conn.savepoint("RELEASE SAVEPOINT landing_range").await?;
                written += n;
            }
            Err(error) if refuses_a_row(&error) => {
                conn.savepoint("ROLLBACK TO SAVEPOINT landing_range")
                    .await?;
                conn.savepoint("RELEASE SAVEPOINT landing_range").await?;
                if to - from == 1 {
                    refused.push((from, refusal_reason(backend, &error)));
                } else {
                    let mid = from + (to - from) / 2;
                    // The first half next: rows stay in id order.
                    ranges.push((mid, to));
                    ranges.push((from, mid));
                }
            }
            Err(error) => return Err(error),
        }
    }
    Ok((written, refused))
}

/// What differs between the backends on the hot path.
trait Lander {
    /// Upserts the rows; returns how many were inserted or replaced.
    async fn upsert_rows(
        &mut self,
        practice_id: &str,
        table: Table,
        rows: &[Prepared<'_>],
        now: DbTime,
    ) -> Result<u64, sqlx::Error>;

    /// Reads a chunk's plan and cursor, locking it for this transaction.
    fn lock_chunk_sql(&self) -> &'static str;

    /// Lets this transaction's commit return before its WAL reaches disk
    /// (Postgres `synchronous_commit = off`, this transaction only).
    ///
    /// Safe for a page and its checkpoint: a database crash can lose the
    /// last fraction of a second of such commits, but only whole and in
    /// commit order, rows together with their cursor or watermark, so the
    /// page is fetched again; nothing is half-landed and nothing is
    /// skipped. Whatever acts on a landed page outside the database (a job
    /// message deleted) comes after an ordinary commit (sync history),
    /// which flushes the WAL up to it. Saves a disk flush per page.
    async fn relax_durability(&mut self) -> Result<(), sqlx::Error>;

    /// Runs a savepoint statement (`SAVEPOINT`, `RELEASE`, `ROLLBACK TO`).
    async fn savepoint(&mut self, sql: &'static str) -> Result<(), sqlx::Error>;

    /// Whether [`Lander::upsert_rows`] already removes the rows it writes
    /// from the quarantine and cancels their captured deletes (Postgres, in
    /// the same statement); else the landing does it with
    /// [`QuarantineSql::release`] and [`DeleteSql::cancel`].
    fn upsert_releases_quarantine(&self) -> bool;
}

impl Lander for PgConnection {
    async fn upsert_rows(
        &mut self,
        practice_id: &str,
        table: Table,
        rows: &[Prepared<'_>],
        now: DbTime,
    ) -> Result<u64, sqlx::Error> {
        let spec = table.spec();
        let sql = pg_upsert_sql(table);
        let mut query = sqlx::query(&sql)
            .bind(practice_id)
            .bind(now)
            .bind(rows.iter().map(|r| r.id).collect::<Vec<i64>>())
            .bind(
                rows.iter()
                    .map(|r| r.last_modified.map(|t| t.0))
                    .collect::<Vec<Option<OffsetDateTime>>>(),
            )
            .bind(rows.iter().map(|r| r.raw.as_ref()).collect::<Vec<&str>>());
        for (i, column) in spec.columns.iter().enumerate() {
            let values = rows.iter().map(|r| r.values.get(i).unwrap_or(&Value::Null));
            query = match column.kind {
                Kind::Text | Kind::Decimal => query.bind(
                    values
                        .map(|v| match v {
                            Value::Text(s) | Value::Decimal(s) => Some(s.as_str()),
                            _ => None,
                        })
                        .collect::<Vec<Option<&str>>>(),
                ),
                Kind::Id | Kind::Int => query.bind(
                    values
                        .map(|v| match v {
                            Value::Int(n) => Some(*n),
                            _ => None,
                        })
                        .collect::<Vec<Option<i64>>>(),
                ),
                Kind::Date => query.bind(
                    values
                        .map(|v| match v {
                            Value::Date(d) => Some(*d),
                            _ => None,
                        })
                        .collect::<Vec<Option<time::Date>>>(),
                ),
                Kind::Timestamp => query.bind(
                    values
                        .map(|v| match v {
                            Value::Timestamp(t) => Some(*t),
                            _ => None,
                        })
                        .collect::<Vec<Option<OffsetDateTime>>>(),
                ),
            };
        }
        Ok(query.execute(self).await?.rows_affected())
    }

    fn lock_chunk_sql(&self) -> &'static str {
        "SELECT practice_id, resource, id_from, id_to, after_id, status FROM sync_chunks \
         WHERE chunk_id = $1 FOR UPDATE"
    }

    async fn relax_durability(&mut self) -> Result<(), sqlx::Error> {
        sqlx::query("SET LOCAL synchronous_commit = off")
            .execute(self)
            .await
            .map(|_| ())
    }

    async fn savepoint(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        sqlx::query(sql).execute(self).await.map(|_| ())
    }

    fn upsert_releases_quarantine(&self) -> bool {
        true
    }
}

impl Lander for SqliteConnection {
    async fn upsert_rows(
        &mut self,
        practice_id: &str,
        table: Table,
        rows: &[Prepared<'_>],
        now: DbTime,
    ) -> Result<u64, sqlx::Error> {
        let spec = table.spec();
        let per_row = spec.columns.len() + 3;
        let rows_per_statement =
            ((SQLITE_MAX_VARIABLES - 2) / per_row).clamp(1, SQLITE_MAX_ROWS_PER_STATEMENT);
        let mut written = 0;
        for batch in rows.chunks(rows_per_statement) {
            let sql = sqlite_upsert_sql(spec, batch.len());
            let mut query = sqlx::query(&sql).bind(practice_id).bind(now);
            for row in batch {
                query = query.bind(row.id);
                for i in 0..spec.columns.len() {
                    query = match row.values.get(i).unwrap_or(&Value::Null) {
                        Value::Null => query.bind(None::<&str>),
                        Value::Text(s) | Value::Decimal(s) => query.bind(s.as_str()),
                        Value::Int(n) => query.bind(*n),
                        Value::Date(d) => query.bind(date_text(*d)),
                        Value::Timestamp(t) => query.bind(timestamp_text(*t)),
                    };
                }
                query = query.bind(row.last_modified).bind(row.raw.as_ref());
            }
            written += query.execute(&mut *self).await?.rows_affected();
        }
        Ok(written)
    }

    fn lock_chunk_sql(&self) -> &'static str {
        // BEGIN IMMEDIATE already holds the database's write lock.
        "SELECT practice_id, resource, id_from, id_to, after_id, status FROM sync_chunks \
         WHERE chunk_id = $1"
    }

    async fn relax_durability(&mut self) -> Result<(), sqlx::Error> {
        // The embedded SQLite database runs in WAL mode with
        // synchronous=NORMAL already: commits are atomic, the last few may
        // be lost on power loss.
        Ok(())
    }

    async fn savepoint(&mut self, sql: &'static str) -> Result<(), sqlx::Error> {
        sqlx::query(sql).execute(self).await.map(|_| ())
    }

    fn upsert_releases_quarantine(&self) -> bool {
        false
    }
}

/// `SET col = excluded.col, ...` and the newer-wins `WHERE`, shared by both
/// backends' upserts.
fn on_conflict_clause(spec: &TableSpec) -> String {
    let assignments: Vec<String> = spec
        .columns
        .iter()
        .map(|c| c.name)
        .chain(["last_modified", "raw", "synced_at"])
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    format!(
        " ON CONFLICT (practice_id, id) DO UPDATE SET {} \
         WHERE excluded.last_modified >= t.last_modified OR t.last_modified IS NULL",
        assignments.join(", ")
    )
}

fn column_list(spec: &TableSpec) -> String {
    spec.all_column_names().join(", ")
}

/// The Postgres upsert of a table, built once from the spec.
fn pg_upsert_sql(table: Table) -> Arc<str> {
    static CACHE: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        Table::ALL
            .iter()
            .map(|t| build_pg_upsert(t.spec()).into())
            .collect()
    });
    cache
        .get(table as usize)
        .cloned()
        .unwrap_or_else(|| build_pg_upsert(table.spec()).into())
}

fn build_pg_upsert(spec: &TableSpec) -> String {
    // $1 practice_id, $2 synced_at, $3 ids, $4 last_modified, $5 raw,
    // then one array per typed column.
    let mut array_params = vec![
        "$3::bigint[]".to_owned(),
        "$4::timestamptz[]".to_owned(),
        "$5::text[]".to_owned(),
    ];
    let mut select = vec!["$1".to_owned(), "u.id".to_owned()];
    let mut aliases = vec!["id", "last_modified", "raw"];
    for (i, c) in spec.columns.iter().enumerate() {
        let array_type = match c.kind {
            Kind::Text => "text[]",
            Kind::Id | Kind::Int => "bigint[]",
            Kind::Date => "date[]",
            Kind::Timestamp => "timestamptz[]",
            Kind::Decimal => "numeric[]",
        };
        array_params.push(format!("${}::{array_type}", i + 6));
        select.push(format!("u.{}", c.name));
        aliases.push(c.name);
    }
    select.extend([
        "u.last_modified".to_owned(),
        "u.raw::jsonb".to_owned(),
        "$2".to_owned(),
    ]);
    // The rows written leave the quarantine, and cancel their captured
    // deletes, in the same statement (one round trip): a data-modifying CTE runs whether it is read or not, and
    // a refused statement undoes it with the rest.
    format!(
        "WITH released AS (DELETE FROM quarantine q WHERE q.practice_id = $1 \
         AND q.resource = '{table}' AND q.record_key = ANY(ARRAY(SELECT i::text FROM UNNEST($3::bigint[]) AS i))), \
         cancelled AS (DELETE FROM captured_deletes c WHERE c.practice_id = $1 \
         AND c.resource = '{table}' AND c.record_id = ANY($3::bigint[])) \
         INSERT INTO {table} AS t ({columns}) SELECT {select} FROM UNNEST({arrays}) AS u({aliases}){conflict}",
        table = spec.table.as_str(),
        columns = column_list(spec),
        select = select.join(", "),
        arrays = array_params.join(", "),
        aliases = aliases.join(", "),
        conflict = on_conflict_clause(spec),
    )
}

/// The SQLite upsert of `rows` rows of a table.
fn sqlite_upsert_sql(spec: &TableSpec, rows: usize) -> String {
    // $1 practice_id, $2 synced_at, then per row: id, the typed columns,
    // last_modified, raw.
    let per_row = spec.columns.len() + 3;
    let mut sql = format!(
        "INSERT INTO {} AS t ({}) VALUES ",
        spec.table.as_str(),
        column_list(spec)
    );
    for r in 0..rows {
        let base = 3 + r * per_row;
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str("($1");
        for p in base..base + per_row {
            sql.push_str(&format!(", ${p}"));
        }
        sql.push_str(", $2)");
    }
    sql.push_str(&on_conflict_clause(spec));
    sql
}

/// Why a landing's transaction did not commit.
enum Attempt {
    /// The database refused a row of the page (its error): land it again
    /// isolating rows.
    RowRefused(sqlx::Error),
    /// Anything else: the landing's error.
    Failed(StoreError),
}

impl From<StoreError> for Attempt {
    fn from(error: StoreError) -> Self {
        Attempt::Failed(error)
    }
}

/// How a landing's transaction upserts its rows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// All at once, no savepoint (a refused row: [`Attempt::RowRefused`]).
    Bulk,
    /// In savepoints, halving refused ranges (see [`upsert_isolating`]).
    Isolating,
}

impl Store {
    /// Lands one page of records of `table` for a practice and advances
    /// `checkpoint`, in one transaction: [`Store::land`] without bad
    /// records.
    pub async fn land_page(
        &self,
        practice_id: &str,
        table: Table,
        rows: &[LandedRow<'_>],
        checkpoint: Checkpoint,
    ) -> Result<LandOutcome, StoreError> {
        self.land(
            practice_id,
            table,
            PageRecords {
                rows,
                ..PageRecords::default()
            },
            checkpoint,
        )
        .await
    }

    /// Lands one page of records of `table` for a practice, sets its bad
    /// records aside in quarantine, and advances `checkpoint`, in one
    /// transaction.
    ///
    /// Rows are deduplicated by id, typed columns extracted (tolerantly:
    /// a bad value is NULL), and upserted newest-wins. A row that is not a
    /// JSON object, and a row the database refuses (a data error), are
    /// quarantined with the reason instead, as are `page.bad`; the other
    /// rows land and the checkpoint moves exactly as for a clean page.
    /// Every row that lands, and every `page.retried` key not set aside
    /// again, leaves the quarantine. A `Checkpoint::Chunk` moves the
    /// chunk's cursor forward (never back), adds the page's new in-range
    /// ids landed to its `landed`, and marks it done if asked; a
    /// `Checkpoint::Watermark` moves the table's watermark forward (never
    /// back) and adds the page's rows landed to its `landed_count`.
    ///
    /// Errors leave nothing written: a chunk that does not exist or belongs
    /// elsewhere, a cursor outside the chunk's range
    /// ([`StoreError::Constraint`]), an unregistered practice, or a
    /// database error that is not about one row.
    #[tracing::instrument(level = "debug", skip_all, fields(practice_id = %practice_id, table = %table, rows = page.rows.len(), bad = page.bad.len()))]
    pub async fn land(
        &self,
        practice_id: &str,
        table: Table,
        page: PageRecords<'_>,
        checkpoint: Checkpoint,
    ) -> Result<LandOutcome, StoreError> {
        let (prepared, mut set_aside) = prepare(table, page.rows);
        let unreadable = set_aside.len();
        set_aside.extend(page.bad.iter().map(|bad| {
            SetAside::new(
                bad.id.map(Cow::Borrowed),
                Cow::Borrowed(bad.raw),
                Cow::Borrowed(bad.reason),
            )
        }));
        let attempt = |mode| {
            self.land_once(
                practice_id,
                table,
                (&prepared, &set_aside, unreadable),
                page,
                checkpoint,
                mode,
            )
        };
        let outcome = match attempt(Mode::Bulk).await {
            Ok(outcome) => outcome,
            Err(Attempt::Failed(error)) => return Err(error),
            Err(Attempt::RowRefused(_)) => {
                tracing::debug!(
                    "the database refused a row; landing the page again row range by row range"
                );
                match attempt(Mode::Isolating).await {
                    Ok(outcome) => outcome,
                    Err(Attempt::Failed(error)) => return Err(error),
                    // Isolating, a refusal is set aside, never returned;
                    // if it were, it is the landing's error.
                    Err(Attempt::RowRefused(error)) => {
                        return Err(db_error(
                            self.backend(),
                            format!("landing a page into {table}"),
                            error,
                        ));
                    }
                }
            }
        };
        tracing::debug!(
            written = outcome.written,
            skipped_older = outcome.skipped_older,
            quarantined = outcome.quarantined,
            "landed a page"
        );
        Ok(outcome)
    }

    /// One transaction of [`Store::land`]: `prepared` rows, records to
    /// `set_aside` (the first `unreadable` of them are rows of the page).
    async fn land_once(
        &self,
        practice_id: &str,
        table: Table,
        (prepared, set_aside, unreadable): (&[Prepared<'_>], &[SetAside<'_>], usize),
        page: PageRecords<'_>,
        checkpoint: Checkpoint,
        mode: Mode,
    ) -> Result<LandOutcome, Attempt> {
        let backend = self.backend();
        let operation = format!("landing a page into {table}");
        let now = DbTime::now();
        let (written, refused, quarantined) = in_transaction!(self, operation.as_str(), |tx| {
            Lander::relax_durability(&mut *tx)
                .await
                .map_err(|e| db_error(backend, operation.as_str(), e))?;
            let (written, refused) = if prepared.is_empty() {
                (0, Vec::new())
            } else if mode == Mode::Bulk {
                match Lander::upsert_rows(&mut *tx, practice_id, table, prepared, now).await {
                    Ok(written) => (written, Vec::new()),
                    Err(error) if refuses_a_row(&error) => return Err(Attempt::RowRefused(error)),
                    Err(error) => return Err(db_error(backend, operation.as_str(), error).into()),
                }
            } else {
                upsert_isolating(&mut *tx, backend, practice_id, table, prepared, now)
                    .await
                    .map_err(|e| db_error(backend, operation.as_str(), e))?
            };
            let refused_at: Vec<usize> = refused.iter().map(|(i, _)| *i).collect();
            let landed = || {
                prepared
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !refused_at.contains(i))
                    .map(|(_, r)| r)
            };
            let landed_keys: Vec<String> = landed().map(|r| r.id.to_string()).collect();
            // Set aside: the bad records (unless a valid version of the same
            // record landed with them) and the refused rows.
            let mut aside: Vec<&SetAside<'_>> = set_aside
                .iter()
                .filter(|s| !landed_keys.contains(&s.key))
                .collect();
            let refused_rows: Vec<SetAside<'_>> = refused
                .into_iter()
                .filter_map(|(i, reason)| {
                    prepared.get(i).map(|row| {
                        SetAside::new(
                            Some(Cow::Owned(row.id.to_string())),
                            Cow::Borrowed(row.raw.as_ref()),
                            Cow::Owned(reason),
                        )
                    })
                })
                .collect();
            aside.extend(refused_rows.iter());
            let aside_keys: Vec<&str> = aside.iter().map(|s| s.key.as_str()).collect();
            // Leaving the quarantine: the rows landed (Postgres: already, in
            // the upsert) and the retried records not set aside again.
            let mut release: Vec<String> = page
                .retried
                .iter()
                .filter(|key| !aside_keys.contains(key))
                .map(|key| (*key).to_owned())
                .collect();
            if !Lander::upsert_releases_quarantine(&*tx) {
                release.extend(landed_keys.iter().cloned());
            }
            QuarantineSql::release(&mut *tx, practice_id, table, &release)
                .await
                .map_err(|e| {
                    practice_error(backend, "releasing quarantined records", practice_id, e)
                })?;
            // A record landed is listed again: its captured delete, if
            // any, is cancelled in the same transaction (Postgres: in the
            // upsert).
            if !Lander::upsert_releases_quarantine(&*tx) {
                let landed_ids: Vec<i64> = landed().map(|r| r.id).collect();
                DeleteSql::cancel(&mut *tx, practice_id, table, &landed_ids)
                    .await
                    .map_err(|e| {
                        practice_error(backend, "cancelling captured deletes", practice_id, e)
                    })?;
            }
            let owned: Vec<SetAside<'_>> = aside
                .iter()
                .map(|s| SetAside {
                    key: s.key.clone(),
                    id: s.id.clone(),
                    raw: s.raw.clone(),
                    reason: s.reason.clone(),
                })
                .collect();
            QuarantineSql::set_aside(&mut *tx, practice_id, table, &owned, now)
                .await
                .map_err(|e| practice_error(backend, "quarantining records", practice_id, e))?;
            let landed_count = landed_keys.len();
            match checkpoint {
                Checkpoint::None => {}
                Checkpoint::Chunk {
                    chunk_id,
                    after_id,
                    done,
                } => {
                    let row = sqlx::query(Lander::lock_chunk_sql(&*tx))
                        .bind(chunk_id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| db_error(backend, operation.as_str(), e))?
                        .ok_or_else(|| StoreError::UnknownChunk {
                            chunk_id,
                            practice_id: practice_id.to_owned(),
                        })?;
                    let chunk_practice = row.text("practice_id")?;
                    let chunk_table: Table = row.parsed("resource")?;
                    if chunk_practice != practice_id || chunk_table != table {
                        return Err(StoreError::ChunkMismatch {
                            chunk_id,
                            chunk_practice,
                            chunk_table,
                            practice_id: practice_id.to_owned(),
                            table,
                        }
                        .into());
                    }
                    let (id_from, id_to) = (row.int("id_from")?, row.int("id_to")?);
                    let old_after = row.opt_int("after_id")?;
                    let old_status: ChunkStatus = row.parsed("status")?;
                    let new_after = match (old_after, after_id) {
                        (Some(old), Some(new)) => Some(old.max(new)),
                        (old, new) => new.or(old),
                    };
                    let new_ids = landed()
                        .filter(|r| {
                            r.id >= id_from && r.id < id_to && old_after.is_none_or(|a| r.id > a)
                        })
                        .count();
                    let status = if done { ChunkStatus::Done } else { old_status };
                    sqlx::query(
                        "UPDATE sync_chunks SET after_id = $2, landed = landed + $3, status = $4, \
                         updated_at = $5 WHERE chunk_id = $1",
                    )
                    .bind(chunk_id)
                    .bind(new_after)
                    .bind(i64::try_from(new_ids).unwrap_or(i64::MAX))
                    .bind(status.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, operation.as_str(), e))?;
                }
                Checkpoint::Pass(cursor) => {
                    // A new pass replaces the cursor; the same pass only
                    // moves it forward.
                    sqlx::query(
                        "INSERT INTO sync_state (practice_id, resource, landed_count, updated_at, \
                         pass_started_at, pass_after_id, pass_max_seen) \
                         VALUES ($1, $2, 0, $3, $4, $5, $6) ON CONFLICT (practice_id, resource) DO UPDATE SET \
                         pass_after_id = CASE WHEN sync_state.pass_started_at = excluded.pass_started_at \
                         AND sync_state.pass_after_id IS NOT NULL \
                         AND (excluded.pass_after_id IS NULL OR excluded.pass_after_id < sync_state.pass_after_id) \
                         THEN sync_state.pass_after_id ELSE excluded.pass_after_id END, \
                         pass_max_seen = CASE WHEN sync_state.pass_started_at = excluded.pass_started_at \
                         AND sync_state.pass_max_seen IS NOT NULL \
                         AND (excluded.pass_max_seen IS NULL OR excluded.pass_max_seen < sync_state.pass_max_seen) \
                         THEN sync_state.pass_max_seen ELSE excluded.pass_max_seen END, \
                         pass_started_at = excluded.pass_started_at, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(practice_id)
                    .bind(table.as_str())
                    .bind(now)
                    .bind(DbTime::new(cursor.started_at))
                    .bind(cursor.after_id)
                    .bind(cursor.max_seen.and_then(DbTime::new))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| practice_error(backend, "recording a pass's progress", practice_id, e))?;
                }
                Checkpoint::Watermark { watermark } => {
                    sqlx::query(
                        "INSERT INTO sync_state (practice_id, resource, watermark, landed_count, updated_at) \
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (practice_id, resource) DO UPDATE SET \
                         watermark = CASE WHEN sync_state.watermark IS NULL \
                         OR excluded.watermark > sync_state.watermark \
                         THEN excluded.watermark ELSE sync_state.watermark END, \
                         landed_count = sync_state.landed_count + excluded.landed_count, \
                         pass_started_at = NULL, pass_after_id = NULL, pass_max_seen = NULL, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(practice_id)
                    .bind(table.as_str())
                    .bind(DbTime::new(watermark))
                    .bind(i64::try_from(landed_count).unwrap_or(i64::MAX))
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| practice_error(backend, "advancing a watermark", practice_id, e))?;
                }
            }
            (written, refused_at.len(), owned.len())
        });
        // Rows neither written nor set aside: older than the stored
        // version, or an older duplicate in the page.
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(LandOutcome {
            written,
            skipped_older: count(page.rows.len())
                .saturating_sub(written)
                .saturating_sub(count(refused))
                .saturating_sub(count(unreadable)),
            quarantined: count(quarantined),
        })
    }

    /// The ids of a practice's landed rows of `table`, with their
    /// `last_modified`, in id order.
    pub async fn landed_ids(
        &self,
        practice_id: &str,
        table: Table,
    ) -> Result<Vec<(i64, Option<OffsetDateTime>)>, StoreError> {
        self.select_ids(practice_id, table, None).await
    }

    /// [`Store::landed_ids`] of the ids in `id_from..id_to` (from inclusive,
    /// to exclusive), for reconciling a range at a time.
    pub async fn landed_ids_in_range(
        &self,
        practice_id: &str,
        table: Table,
        id_from: i64,
        id_to: i64,
    ) -> Result<Vec<(i64, Option<OffsetDateTime>)>, StoreError> {
        self.select_ids(practice_id, table, Some((id_from, id_to)))
            .await
    }

    async fn select_ids(
        &self,
        practice_id: &str,
        table: Table,
        range: Option<(i64, i64)>,
    ) -> Result<Vec<(i64, Option<OffsetDateTime>)>, StoreError> {
        let sql = format!(
            "SELECT id, last_modified FROM {} WHERE practice_id = $1{} ORDER BY id",
            table.as_str(),
            if range.is_some() {
                " AND id >= $2 AND id < $3"
            } else {
                ""
            }
        );
        let (id_from, id_to) = range.unwrap_or_default();
        let backend = self.backend();
        with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql).bind(practice_id);
            if range.is_some() {
                query = query.bind(id_from).bind(id_to);
            }
            let rows = query
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing landed ids", e))?;
            rows.iter()
                .map(|r| Ok((r.int("id")?, r.opt_time("last_modified")?)))
                .collect()
        })
    }

    /// The stored raw JSON of one landed row. On Postgres this is `jsonb`'s
    /// text: the same content, with keys reordered, duplicate keys reduced
    /// to the last and whitespace normalized.
    pub async fn landed_raw(
        &self,
        practice_id: &str,
        table: Table,
        id: i64,
    ) -> Result<Option<String>, StoreError> {
        let raw = match self.backend() {
            Backend::Postgres => "raw::text AS raw",
            Backend::Sqlite => "raw",
        };
        let sql = format!(
            "SELECT {raw} FROM {} WHERE practice_id = $1 AND id = $2",
            table.as_str()
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(&sql)
                .bind(practice_id)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a landed row", e))?;
            row.map(|r| r.text("raw")).transpose()
        })
    }

    /// The typed columns of one landed row, in spec order, as stored.
    pub async fn landed_columns(
        &self,
        practice_id: &str,
        table: Table,
        id: i64,
    ) -> Result<Option<Vec<(&'static str, Value)>>, StoreError> {
        let spec = table.spec();
        let backend = self.backend();
        let select: Vec<String> = spec
            .columns
            .iter()
            .map(|c| match (backend, c.kind) {
                (Backend::Postgres, Kind::Decimal) => format!("{0}::text AS {0}", c.name),
                _ => c.name.to_owned(),
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE practice_id = $1 AND id = $2",
            select.join(", "),
            table.as_str()
        );
        with_pool!(self, |pool| {
            let row = sqlx::query(&sql)
                .bind(practice_id)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a landed row", e))?;
            let Some(row) = row else { return Ok(None) };
            spec.columns
                .iter()
                .map(|c| {
                    let value = match c.kind {
                        Kind::Text => row.opt_text(c.name)?.map(Value::Text),
                        Kind::Decimal => row.opt_text(c.name)?.map(Value::Decimal),
                        Kind::Id | Kind::Int => row.opt_int(c.name)?.map(Value::Int),
                        Kind::Date => row.opt_date(c.name)?.map(Value::Date),
                        Kind::Timestamp => row.opt_time(c.name)?.map(Value::Timestamp),
                    };
                    Ok((c.name, value.unwrap_or(Value::Null)))
                })
                .collect::<Result<Vec<_>, StoreError>>()
                .map(Some)
        })
    }

    /// How many rows of `table` a practice has landed.
    pub async fn count(&self, practice_id: &str, table: Table) -> Result<u64, StoreError> {
        self.select_count(practice_id, table, None).await
    }

    /// How many rows of `table` with ids in `id_from..id_to` (from
    /// inclusive, to exclusive) a practice has landed, to compare with the
    /// API's total for the same id range.
    pub async fn count_in_range(
        &self,
        practice_id: &str,
        table: Table,
        id_from: i64,
        id_to: i64,
    ) -> Result<u64, StoreError> {
        self.select_count(practice_id, table, Some((id_from, id_to)))
            .await
    }

    async fn select_count(
        &self,
        practice_id: &str,
        table: Table,
        range: Option<(i64, i64)>,
    ) -> Result<u64, StoreError> {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM {} WHERE practice_id = $1{}",
            table.as_str(),
            if range.is_some() {
                " AND id >= $2 AND id < $3"
            } else {
                ""
            }
        );
        let (id_from, id_to) = range.unwrap_or_default();
        let backend = self.backend();
        let n = with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql).bind(practice_id);
            if range.is_some() {
                query = query.bind(id_from).bind(id_to);
            }
            let row = query
                .fetch_one(pool)
                .await
                .map_err(|e| db_error(backend, "counting landed rows", e))?;
            row.int("n")?
        });
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
