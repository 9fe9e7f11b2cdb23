//! Deletes captured during sync (migration 0010, issue 13).
//!
//! Ascend has no deleted-records feed: a deleted record stops being
//! listed. The workers reconcile ids (`sync_core::reconcile`) and record
//! what Ascend no longer lists in `captured_deletes`, without touching the
//! landed row; the nightly role applies them in the practice's processing
//! window. A record seen again before it is applied leaves
//! `captured_deletes`: in the transaction of the page that lands it
//! ([`DeleteSql::cancel`], called by the landing), or when a
//! reconciliation lists it ([`Store::cancel_captured_deletes`]).
//!
//! A landed row with a pending captured delete is left out of the ids a
//! reconciliation compares ([`Store::reconcile_keys`]), so it is not
//! counted as held, and it is not found again every cycle.

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use time::OffsetDateTime;

use model::DeleteDetection;

use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::rows::RowExt;
use crate::spec::Table;
use crate::store::{Inner, Store, practice_error, with_pool};

/// A landed record's key for reconciling: its id and `last_modified`.
pub type LandedKey = (i64, Option<OffsetDateTime>);

/// A pending captured delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedDelete {
    /// The landed record's id.
    pub record_id: i64,
    /// When a reconciliation found it absent.
    pub detected_at: OffsetDateTime,
    /// What found it.
    pub how: DeleteDetection,
}

/// Cancelling captured deletes inside a transaction (the landing's).
pub(crate) trait DeleteSql {
    /// Removes the pending captured deletes of `ids`: the records were
    /// seen again. Returns how many were removed.
    async fn cancel(
        &mut self,
        practice_id: &str,
        table: Table,
        ids: &[i64],
    ) -> Result<u64, sqlx::Error>;
}

impl DeleteSql for PgConnection {
    async fn cancel(
        &mut self,
        practice_id: &str,
        table: Table,
        ids: &[i64],
    ) -> Result<u64, sqlx::Error> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM captured_deletes WHERE practice_id = $1 AND resource = $2 \
             AND record_id = ANY($3::bigint[])",
        )
        .bind(practice_id)
        .bind(table.as_str())
        .bind(ids)
        .execute(&mut *self)
        .await?;
        Ok(done.rows_affected())
    }
}

impl DeleteSql for SqliteConnection {
    async fn cancel(
        &mut self,
        practice_id: &str,
        table: Table,
        ids: &[i64],
    ) -> Result<u64, sqlx::Error> {
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM captured_deletes WHERE practice_id = $1 AND resource = $2 \
             AND record_id IN (SELECT value FROM json_each($3))",
        )
        .bind(practice_id)
        .bind(table.as_str())
        .bind(json_ids(ids)?)
        .execute(&mut *self)
        .await?;
        Ok(done.rows_affected())
    }
}

/// A reconciliation's start window as the database compares it; only
/// appointments have a start.
fn start_window(
    table: Table,
    start_between: Option<(OffsetDateTime, OffsetDateTime)>,
) -> Result<Option<(DbTime, DbTime)>, StoreError> {
    match start_between {
        Some(_) if table != Table::Appointments => Err(StoreError::NoStartColumn { table }),
        Some((from, to)) => Ok(Some((
            DbTime::new(from).unwrap_or_else(DbTime::now),
            DbTime::new(to).unwrap_or_else(DbTime::now),
        ))),
        None => Ok(None),
    }
}

/// Ids as one JSON array, for SQLite's `json_each`.
fn json_ids(ids: &[i64]) -> Result<String, sqlx::Error> {
    serde_json::to_string(ids).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

impl Store {
    /// Records that Ascend no longer lists the landed records `ids` of
    /// `table` for the practice, found by `how` at `detected_at`. Only ids
    /// with a landed row are recorded, and an id already captured keeps
    /// its first detection. The landed rows are not touched. Returns how
    /// many were newly captured.
    pub async fn capture_deletes(
        &self,
        practice_id: &str,
        table: Table,
        ids: &[i64],
        how: DeleteDetection,
        detected_at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let backend = self.backend();
        let at = DbTime::new(detected_at).unwrap_or_else(DbTime::now);
        let table_name = table.as_str();
        let done = match &self.inner {
            Inner::Pg(pool) => {
                let sql = format!(
                    "INSERT INTO captured_deletes (practice_id, resource, record_id, detected_at, how) \
                     SELECT $1, $2, t.id, $4, $5 FROM {table_name} t \
                     WHERE t.practice_id = $1 AND t.id = ANY($3::bigint[]) \
                     ON CONFLICT (practice_id, resource, record_id) DO NOTHING"
                );
                sqlx::query(&sql)
                    .bind(practice_id)
                    .bind(table_name)
                    .bind(ids)
                    .bind(at)
                    .bind(how.as_str())
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
            Inner::Sqlite(pool) => {
                let sql = format!(
                    "INSERT INTO captured_deletes (practice_id, resource, record_id, detected_at, how) \
                     SELECT $1, $2, t.id, $4, $5 FROM {table_name} t \
                     WHERE t.practice_id = $1 AND t.id IN (SELECT value FROM json_each($3)) \
                     ON CONFLICT (practice_id, resource, record_id) DO NOTHING"
                );
                let ids = json_ids(ids).map_err(|e| db_error(backend, "capturing deletes", e))?;
                sqlx::query(&sql)
                    .bind(practice_id)
                    .bind(table_name)
                    .bind(ids)
                    .bind(at)
                    .bind(how.as_str())
                    .execute(pool)
                    .await
                    .map(|done| done.rows_affected())
            }
        }
        .map_err(|e| practice_error(backend, "capturing deletes", practice_id, e))?;
        Ok(done)
    }

    /// Removes the pending captured deletes of `ids` (the records were
    /// listed again). Returns how many were removed.
    pub async fn cancel_captured_deletes(
        &self,
        practice_id: &str,
        table: Table,
        ids: &[i64],
    ) -> Result<u64, StoreError> {
        let backend = self.backend();
        match &self.inner {
            Inner::Pg(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| db_error(backend, "cancelling captured deletes", e))?;
                DeleteSql::cancel(&mut *conn, practice_id, table, ids).await
            }
            Inner::Sqlite(pool) => {
                let mut conn = pool
                    .acquire()
                    .await
                    .map_err(|e| db_error(backend, "cancelling captured deletes", e))?;
                DeleteSql::cancel(&mut *conn, practice_id, table, ids).await
            }
        }
        .map_err(|e| practice_error(backend, "cancelling captured deletes", practice_id, e))
    }

    /// The ids of a practice's pending captured deletes of `table`, in id
    /// order.
    pub async fn captured_delete_ids(
        &self,
        practice_id: &str,
        table: Table,
    ) -> Result<Vec<i64>, StoreError> {
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT record_id FROM captured_deletes WHERE practice_id = $1 \
                 AND resource = $2 ORDER BY record_id",
            )
            .bind(practice_id)
            .bind(table.as_str())
            .fetch_all(pool)
            .await
            .map_err(|e| practice_error(backend, "listing captured deletes", practice_id, e))?;
            rows.iter().map(|r| r.int("record_id")).collect()
        })
    }

    /// A practice's pending captured deletes of `table`, in id order.
    pub async fn captured_deletes(
        &self,
        practice_id: &str,
        table: Table,
    ) -> Result<Vec<CapturedDelete>, StoreError> {
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(
                "SELECT record_id, detected_at, how FROM captured_deletes WHERE practice_id = $1 \
                 AND resource = $2 ORDER BY record_id",
            )
            .bind(practice_id)
            .bind(table.as_str())
            .fetch_all(pool)
            .await
            .map_err(|e| practice_error(backend, "listing captured deletes", practice_id, e))?;
            rows.iter()
                .map(|r| {
                    Ok(CapturedDelete {
                        record_id: r.int("record_id")?,
                        detected_at: r.time("detected_at")?,
                        how: r.parsed("how")?,
                    })
                })
                .collect()
        })
    }

    /// The landed records of `table` a reconciliation compares with what
    /// Ascend lists, in id order: every landed row of the practice (with
    /// `start_between`, only appointments whose start is in `[from, to)`)
    /// except those with a pending captured delete.
    pub async fn reconcile_keys(
        &self,
        practice_id: &str,
        table: Table,
        start_between: Option<(OffsetDateTime, OffsetDateTime)>,
    ) -> Result<Vec<LandedKey>, StoreError> {
        let window = start_window(table, start_between)?;
        let sql = format!(
            "SELECT t.id, t.last_modified FROM {table} t WHERE t.practice_id = $1{window} \
             AND NOT EXISTS (SELECT 1 FROM captured_deletes c WHERE c.practice_id = t.practice_id \
             AND c.resource = '{table}' AND c.record_id = t.id) ORDER BY t.id",
            table = table.as_str(),
            window = if window.is_some() {
                " AND t.start_at >= $2 AND t.start_at < $3"
            } else {
                ""
            }
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql).bind(practice_id);
            if let Some((from, to)) = window {
                query = query.bind(from).bind(to);
            }
            let rows = query
                .fetch_all(pool)
                .await
                .map_err(|e| practice_error(backend, "listing ids to reconcile", practice_id, e))?;
            rows.iter()
                .map(|r| Ok((r.int("id")?, r.opt_time("last_modified")?)))
                .collect()
        })
    }

    /// How many of [`Store::reconcile_keys`]'s records there are, and how
    /// many of them have a `last_modified` at or before `at_or_before`
    /// (0 without it): a reconciliation's first question, answered by the
    /// primary key's index without reading the rows.
    pub async fn reconcile_counts(
        &self,
        practice_id: &str,
        table: Table,
        start_between: Option<(OffsetDateTime, OffsetDateTime)>,
        at_or_before: Option<OffsetDateTime>,
    ) -> Result<(u64, u64), StoreError> {
        let window = start_window(table, start_between)?;
        let bound = at_or_before.and_then(DbTime::new);
        let sql = format!(
            "SELECT COUNT(*) AS total, COUNT(CASE WHEN t.last_modified <= $2 THEN 1 END) AS old \
             FROM {table} t WHERE t.practice_id = $1{window} \
             AND NOT EXISTS (SELECT 1 FROM captured_deletes c WHERE c.practice_id = t.practice_id \
             AND c.resource = '{table}' AND c.record_id = t.id)",
            table = table.as_str(),
            window = if window.is_some() {
                " AND t.start_at >= $3 AND t.start_at < $4"
            } else {
                ""
            }
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql).bind(practice_id).bind(bound);
            if let Some((from, to)) = window {
                query = query.bind(from).bind(to);
            }
            let row = query.fetch_one(pool).await.map_err(|e| {
                practice_error(backend, "counting ids to reconcile", practice_id, e)
            })?;
            let count = |col| row.int(col).map(|n| u64::try_from(n).unwrap_or(0));
            Ok((count("total")?, count("old")?))
        })
    }

    /// Records that the whole of `table` was reconciled for the practice
    /// at `at` (creating its state if missing).
    pub async fn set_reconciled_at(
        &self,
        practice_id: &str,
        table: Table,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_state (practice_id, resource, reconciled_at, \
             updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (practice_id, resource) DO UPDATE SET \
             reconciled_at = excluded.reconciled_at, updated_at = excluded.updated_at";
        let backend = self.backend();
        let at = DbTime::new(at).unwrap_or_else(DbTime::now);
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(table.as_str())
            .bind(at)
            .bind(DbTime::now())
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| practice_error(backend, "recording a reconciliation", practice_id, e))
    }

    /// Records what a whole reconciliation counted for the practice
    /// (issue 14): Ascend's total for its scope and ours, at `at`. Equal
    /// counts make the resource complete as of `at` and end a mismatch;
    /// different ones start a mismatch (kept from its first count) or
    /// count one more reconciliation that found it. Creates the state if
    /// missing.
    pub async fn record_count(
        &self,
        practice_id: &str,
        table: Table,
        ascend: u64,
        held: u64,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_state (practice_id, resource, ascend_count, held_count, \
             counted_at, complete_at, mismatch_since, mismatches, updated_at) \
             VALUES ($1, $2, $3, $4, $5, CASE WHEN $3 = $4 THEN $5 END, \
             CASE WHEN $3 = $4 THEN NULL ELSE $5 END, CASE WHEN $3 = $4 THEN 0 ELSE 1 END, $6) \
             ON CONFLICT (practice_id, resource) DO UPDATE SET \
             ascend_count = excluded.ascend_count, held_count = excluded.held_count, \
             counted_at = excluded.counted_at, \
             complete_at = CASE WHEN excluded.mismatches = 0 THEN excluded.counted_at \
             ELSE sync_state.complete_at END, \
             mismatch_since = CASE WHEN excluded.mismatches = 0 THEN NULL \
             ELSE COALESCE(sync_state.mismatch_since, excluded.counted_at) END, \
             mismatches = CASE WHEN excluded.mismatches = 0 THEN 0 \
             ELSE sync_state.mismatches + 1 END, \
             updated_at = excluded.updated_at";
        let backend = self.backend();
        let at = DbTime::new(at).unwrap_or_else(DbTime::now);
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(table.as_str())
            .bind(count(ascend))
            .bind(count(held))
            .bind(at)
            .bind(DbTime::now())
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| practice_error(backend, "recording a resource's counts", practice_id, e))
    }

    /// Records that an incremental pass of `table` that began at `at`
    /// reached its last page (creating the state if missing).
    pub async fn set_passed_at(
        &self,
        practice_id: &str,
        table: Table,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_state (practice_id, resource, passed_at, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (practice_id, resource) DO UPDATE SET \
             passed_at = excluded.passed_at, updated_at = excluded.updated_at";
        let backend = self.backend();
        let at = DbTime::new(at).unwrap_or_else(DbTime::now);
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(table.as_str())
            .bind(at)
            .bind(DbTime::now())
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| practice_error(backend, "recording a finished pass", practice_id, e))
    }
}
