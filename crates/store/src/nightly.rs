//! Applying captured deletes: the nightly role's statements (migration
//! 0011, issue 13).
//!
//! - [`Store::nightly_practices`]: the practices with pending captured
//!   deletes, with their window settings and the time zone of their
//!   location record;
//! - [`Store::pending_deletes`]: a batch of a practice's pending captured
//!   deletes, in (resource, id) order after a cursor;
//! - [`Store::settle_deletes`]: one batch in ONE transaction: the ids
//!   Ascend still lists leave `captured_deletes` (cancelled); for the
//!   others, the landed row's last version goes to `deleted_records` (raw
//!   JSON included, with when it was captured and applied), the landed row
//!   is deleted and so is the captured delete. A batch is whole or not at
//!   all, and re-running it finds nothing left to do: only ids still in
//!   `captured_deletes` are applied, so a record landed again meanwhile
//!   (which cancels its capture in the landing's transaction) is kept;
//! - [`Store::purge_deleted_records`]: the retention;
//! - [`Store::delete_counts`]: pending and applied per practice, and the
//!   latest nightly pass, for `status`;
//! - the nightly pass records (`nightly_passes`).
//!
//! **PHI.** `deleted_records.raw` is patient data: nothing here reads it
//! back or logs it.

use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::deletes::DeleteSql;
use crate::error::{Backend, StoreError, db_error};
use crate::history::{MAX_ERROR_CHARS, capped};
use crate::rows::{self, RowExt, practice_columns};
use crate::runtime::db_time;
use crate::spec::Table;
use crate::store::{Inner, Store, in_transaction, practice_error, with_pool};
use crate::values::Practice;

model::text_enum!(
    /// How a practice's part of a nightly pass ended (`nightly_passes.status`).
    NightlyPassStatus, "nightly pass status", {
        /// Still running (or its process died and no pass has looked since).
        Running => "running",
        /// Every pending delete it took was confirmed and applied or cancelled.
        Succeeded => "succeeded",
        /// Cut short (a batch limit, a shutdown) or some ids could not be
        /// confirmed; what it did is whole, the rest waits for the next pass.
        Partial => "partial",
        /// It could not confirm with Ascend (credentials, the API, the
        /// store); nothing unconfirmed was applied.
        Failed => "failed",
        /// Its process died; its batches were whole or not at all.
        Interrupted => "interrupted",
    }
);

model::text_enum!(
    /// Why a nightly pass acted on a practice (`nightly_passes.trigger`).
    NightlyTrigger, "nightly trigger", {
        /// Its processing window was open.
        Window => "window",
        /// An operator's `--ignore-window`.
        Operator => "operator",
    }
);

/// A practice with pending captured deletes, as a nightly pass needs it.
#[derive(Debug, Clone)]
pub struct NightlyPractice {
    /// The practice (status, organization, location, credentials version).
    pub practice: Practice,
    /// Its own time zone setting (`practice window --time-zone`).
    pub time_zone: Option<String>,
    /// The `timezone` of its location record as landed (for a practice of a
    /// whole organization: the one its locations share, if they do).
    pub location_time_zone: Option<String>,
    /// Its window's start, minutes after local midnight.
    pub window_start_minute: i64,
    /// Its window's end (excluded), minutes after local midnight.
    pub window_end_minute: i64,
    /// Its pending captured deletes.
    pub pending: u64,
}

/// A practice's window settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightlySettings {
    /// Its own time zone setting.
    pub time_zone: Option<String>,
    /// The `timezone` of its location record as landed, if any.
    pub location_time_zone: Option<String>,
    /// Its window's start, minutes after local midnight.
    pub window_start_minute: i64,
    /// Its window's end (excluded), minutes after local midnight.
    pub window_end_minute: i64,
}

/// One pending captured delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PendingDelete {
    /// Its table.
    pub table: Table,
    /// The record's id.
    pub record_id: i64,
}

/// What [`Store::settle_deletes`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Settled {
    /// Landed rows removed and kept in `deleted_records`.
    pub applied: u64,
    /// Captured deletes cancelled (Ascend still lists the record).
    pub cancelled: u64,
}

/// An applied delete's kept version (audit and recovery).
#[derive(Clone, PartialEq, Eq)]
pub struct DeletedRecord {
    /// The record's id.
    pub record_id: i64,
    /// Its `lastModified` as last landed.
    pub last_modified: Option<OffsetDateTime>,
    /// Its last landed version's JSON (on Postgres, `jsonb`'s text).
    /// Patient data.
    pub raw: String,
    /// When its delete was captured.
    pub detected_at: OffsetDateTime,
    /// What found it (`hot_window`, `daily`, `left_scope`).
    pub how: String,
    /// When the delete was applied.
    pub applied_at: OffsetDateTime,
}

impl std::fmt::Debug for DeletedRecord {
    /// Without `raw`: it is patient data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeletedRecord")
            .field("record_id", &self.record_id)
            .field("last_modified", &self.last_modified)
            .field("detected_at", &self.detected_at)
            .field("how", &self.how)
            .field("applied_at", &self.applied_at)
            .finish_non_exhaustive()
    }
}

/// A practice's deletes, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteCounts {
    /// The practice.
    pub practice_id: String,
    /// Captured deletes not yet applied.
    pub pending: u64,
    /// Applied deletes kept in `deleted_records` (within the retention).
    pub applied: u64,
    /// Its latest nightly pass, if any.
    pub last_pass: Option<NightlyPassRecord>,
}

/// A practice's part of a nightly pass that starts now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightlyPassStart {
    /// The pass (shared by every practice it acts on).
    pub pass_id: String,
    /// The practice.
    pub practice_id: String,
    /// Why it acts on the practice.
    pub trigger: NightlyTrigger,
    /// When it started on the practice.
    pub started_at: OffsetDateTime,
}

/// How a practice's part of a nightly pass ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightlyPassEnd {
    /// Its final state.
    pub status: NightlyPassStatus,
    /// When it ended.
    pub ended_at: OffsetDateTime,
    /// Captured deletes confirmed with Ascend.
    pub checked: u64,
    /// Applied.
    pub applied: u64,
    /// Cancelled (Ascend still lists them).
    pub cancelled: u64,
    /// API requests made.
    pub api_calls: u64,
    /// The class of the error that ended it, if any.
    pub error_class: Option<String>,
    /// The error's message (capped at [`MAX_ERROR_CHARS`]; never a secret,
    /// never patient data).
    pub error_message: Option<String>,
}

/// A practice's part of a nightly pass, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NightlyPassRecord {
    /// The pass.
    pub pass_id: String,
    /// The practice.
    pub practice_id: String,
    /// Why it acted.
    pub trigger: NightlyTrigger,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// When it ended (`None` while running).
    pub ended_at: Option<OffsetDateTime>,
    /// Its state.
    pub status: NightlyPassStatus,
    /// Confirmed with Ascend.
    pub checked: u64,
    /// Applied.
    pub applied: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// API requests made.
    pub api_calls: u64,
    /// Its error's class.
    pub error_class: Option<String>,
    /// Its error's message.
    pub error_message: Option<String>,
}

const PASS_COLUMNS: &str = "pass_id, practice_id, trigger, started_at, ended_at, status, \
     checked, applied, cancelled, api_calls, error_class, error_message";

fn count(row: &impl RowExt, col: &'static str) -> Result<u64, StoreError> {
    Ok(u64::try_from(row.int(col)?).unwrap_or(0))
}

fn pass_record(row: &impl RowExt) -> Result<NightlyPassRecord, StoreError> {
    Ok(NightlyPassRecord {
        pass_id: row.text("pass_id")?,
        practice_id: row.text("practice_id")?,
        trigger: row.parsed("trigger")?,
        started_at: row.time("started_at")?,
        ended_at: row.opt_time("ended_at")?,
        status: row.parsed("status")?,
        checked: count(row, "checked")?,
        applied: count(row, "applied")?,
        cancelled: count(row, "cancelled")?,
        api_calls: count(row, "api_calls")?,
        error_class: row.opt_text("error_class")?,
        error_message: row.opt_text("error_message")?,
    })
}

/// The `timezone` of a practice's location record (`practices` as `p`): its
/// location's, or for a practice of a whole organization (location 0) the
/// one all its locations share. NULL when there is none or they differ.
fn location_zone_sql(backend: Backend) -> String {
    let tz = match backend {
        Backend::Postgres => "l.raw->>'timezone'",
        Backend::Sqlite => "json_extract(l.raw, '$.timezone')",
    };
    format!(
        "(SELECT MAX({tz}) FROM locations l WHERE l.practice_id = p.practice_id \
         AND (l.id = p.location_id OR p.location_id = 0) HAVING COUNT(DISTINCT {tz}) = 1)"
    )
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Every practice with pending captured deletes (whatever its status:
    /// the caller decides), with its window settings, the time zone of its
    /// location record and its pending count, by id.
    pub async fn nightly_practices(&self) -> Result<Vec<NightlyPractice>, StoreError> {
        let backend = self.backend();
        let sql = format!(
            concat!(
                "SELECT ",
                practice_columns!(),
                ", time_zone, nightly_start_minute, nightly_end_minute, \
                 (SELECT COUNT(*) FROM captured_deletes c WHERE c.practice_id = p.practice_id) \
                 AS pending, {zone} AS location_time_zone FROM practices p \
                 WHERE EXISTS (SELECT 1 FROM captured_deletes c WHERE c.practice_id = p.practice_id) \
                 ORDER BY practice_id"
            ),
            zone = location_zone_sql(backend)
        );
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing practices with captured deletes", e))?;
            rows.iter()
                .map(|row| {
                    Ok(NightlyPractice {
                        practice: rows::practice(row)?,
                        time_zone: row.opt_text("time_zone")?,
                        location_time_zone: row.opt_text("location_time_zone")?,
                        window_start_minute: i64::from(row.small("nightly_start_minute")?),
                        window_end_minute: i64::from(row.small("nightly_end_minute")?),
                        pending: count(row, "pending")?,
                    })
                })
                .collect()
        })
    }

    /// A practice's window settings; `None` if it is not registered.
    pub async fn nightly_settings(
        &self,
        practice_id: &str,
    ) -> Result<Option<NightlySettings>, StoreError> {
        let backend = self.backend();
        let sql = format!(
            "SELECT time_zone, nightly_start_minute, nightly_end_minute, {zone} AS \
             location_time_zone FROM practices p WHERE practice_id = $1",
            zone = location_zone_sql(backend)
        );
        with_pool!(self, |pool| {
            let row = sqlx::query(&sql)
                .bind(practice_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a practice's window", e))?;
            row.map(|row| {
                Ok(NightlySettings {
                    time_zone: row.opt_text("time_zone")?,
                    location_time_zone: row.opt_text("location_time_zone")?,
                    window_start_minute: i64::from(row.small("nightly_start_minute")?),
                    window_end_minute: i64::from(row.small("nightly_end_minute")?),
                })
            })
            .transpose()
        })
    }

    /// Sets a practice's time zone setting (`None`: none) and window
    /// (minutes after local midnight; the caller validates them, the
    /// database's CHECKs refuse a minute outside one day).
    pub async fn set_nightly_settings(
        &self,
        practice_id: &str,
        time_zone: Option<&str>,
        start_minute: i64,
        end_minute: i64,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE practices SET time_zone = $2, nightly_start_minute = $3, \
             nightly_end_minute = $4, updated_at = $5 WHERE practice_id = $1";
        let backend = self.backend();
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(time_zone)
            .bind(i16::try_from(start_minute).unwrap_or(-1))
            .bind(i16::try_from(end_minute).unwrap_or(-1))
            .bind(DbTime::now())
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "setting a practice's window", e))?;
        if done == 0 {
            return Err(StoreError::UnknownPractice {
                practice_id: practice_id.to_owned(),
            });
        }
        Ok(())
    }

    /// Up to `limit` of a practice's pending captured deletes after `after`
    /// (exclusive; `None`: from the first), in (table, id) order.
    pub async fn pending_deletes(
        &self,
        practice_id: &str,
        after: Option<PendingDelete>,
        limit: usize,
    ) -> Result<Vec<PendingDelete>, StoreError> {
        const SQL: &str = "SELECT resource, record_id FROM captured_deletes \
             WHERE practice_id = $1 AND (resource > $2 OR (resource = $2 AND record_id > $3)) \
             ORDER BY resource, record_id LIMIT $4";
        let backend = self.backend();
        let (resource, id) = after.map_or(("", i64::MIN), |a| (a.table.as_str(), a.record_id));
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(practice_id)
                .bind(resource)
                .bind(id)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(pool)
                .await
                .map_err(|e| practice_error(backend, "taking captured deletes", practice_id, e))?;
            rows.iter()
                .map(|row| {
                    Ok(PendingDelete {
                        table: row.parsed("resource")?,
                        record_id: row.int("record_id")?,
                    })
                })
                .collect()
        })
    }

    /// Settles one confirmed batch of a practice's captured deletes of
    /// `table`, in one transaction: `present` (Ascend still lists them)
    /// are cancelled; `absent` are applied: each landed row's last version
    /// goes to `deleted_records` (stamped `applied_at`, with its capture's
    /// time and detection), then the landed row and the captured delete are
    /// deleted. Only ids still captured are applied; an id captured
    /// without a landed row just leaves `captured_deletes`. Idempotent.
    pub async fn settle_deletes(
        &self,
        practice_id: &str,
        table: Table,
        absent: &[i64],
        present: &[i64],
        applied_at: OffsetDateTime,
    ) -> Result<Settled, StoreError> {
        const OPERATION: &str = "applying captured deletes";
        let backend = self.backend();
        let at = db_time(applied_at, "deletes' applied time")?;
        let name = table.as_str();
        let fail = |e| practice_error(backend, OPERATION, practice_id, e);
        let settled = match &self.inner {
            Inner::Pg(pool) => {
                // One statement: the captured deletes are claimed (deleted,
                // so a landing racing this batch waits, then finds them
                // gone or this batch finds them cancelled), their landed
                // rows deleted, and those rows' last versions kept.
                let apply = format!(
                    "WITH doomed AS (DELETE FROM captured_deletes WHERE practice_id = $1 \
                     AND resource = $2 AND record_id = ANY($3::bigint[]) \
                     RETURNING record_id, detected_at, how), \
                     gone AS (DELETE FROM {name} t USING doomed d WHERE t.practice_id = $1 \
                     AND t.id = d.record_id RETURNING t.id, t.last_modified, t.raw) \
                     INSERT INTO deleted_records (practice_id, resource, record_id, last_modified, \
                     raw, detected_at, how, applied_at) \
                     SELECT $1, $2, g.id, g.last_modified, g.raw, d.detected_at, d.how, $4 \
                     FROM gone g JOIN doomed d ON d.record_id = g.id \
                     ON CONFLICT (practice_id, resource, record_id) DO UPDATE SET \
                     last_modified = excluded.last_modified, raw = excluded.raw, \
                     detected_at = excluded.detected_at, how = excluded.how, \
                     applied_at = excluded.applied_at"
                );
                let mut tx = pool.begin().await.map_err(fail)?;
                let cancelled = DeleteSql::cancel(&mut *tx, practice_id, table, present)
                    .await
                    .map_err(fail)?;
                let applied = if absent.is_empty() {
                    0
                } else {
                    sqlx::query(&apply)
                        .bind(practice_id)
                        .bind(name)
                        .bind(absent)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?
                        .rows_affected()
                };
                tx.commit().await.map_err(fail)?;
                Settled { applied, cancelled }
            }
            Inner::Sqlite(pool) => {
                // BEGIN IMMEDIATE: no other writer between the three
                // statements.
                let ids = serde_json::to_string(absent)
                    .map_err(|e| db_error(backend, OPERATION, sqlx::Error::Encode(Box::new(e))))?;
                let captured = "SELECT c.record_id FROM captured_deletes c WHERE \
                     c.practice_id = $1 AND c.resource = $2 \
                     AND c.record_id IN (SELECT value FROM json_each($3))";
                let keep = format!(
                    "INSERT INTO deleted_records (practice_id, resource, record_id, last_modified, \
                     raw, detected_at, how, applied_at) \
                     SELECT $1, $2, t.id, t.last_modified, t.raw, c.detected_at, c.how, $4 \
                     FROM {name} t JOIN captured_deletes c ON c.practice_id = t.practice_id \
                     AND c.resource = $2 AND c.record_id = t.id \
                     WHERE t.practice_id = $1 AND c.record_id IN (SELECT value FROM json_each($3)) \
                     ON CONFLICT (practice_id, resource, record_id) DO UPDATE SET \
                     last_modified = excluded.last_modified, raw = excluded.raw, \
                     detected_at = excluded.detected_at, how = excluded.how, \
                     applied_at = excluded.applied_at"
                );
                let remove =
                    format!("DELETE FROM {name} WHERE practice_id = $1 AND id IN ({captured})");
                let uncapture = "DELETE FROM captured_deletes WHERE practice_id = $1 \
                     AND resource = $2 AND record_id IN (SELECT value FROM json_each($3))";
                let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(fail)?;
                let cancelled = DeleteSql::cancel(&mut *tx, practice_id, table, present)
                    .await
                    .map_err(fail)?;
                let mut applied = 0;
                if !absent.is_empty() {
                    applied = sqlx::query(&keep)
                        .bind(practice_id)
                        .bind(name)
                        .bind(&ids)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?
                        .rows_affected();
                    for sql in [remove.as_str(), uncapture] {
                        sqlx::query(sql)
                            .bind(practice_id)
                            .bind(name)
                            .bind(&ids)
                            .execute(&mut *tx)
                            .await
                            .map_err(fail)?;
                    }
                }
                tx.commit().await.map_err(fail)?;
                Settled { applied, cancelled }
            }
        };
        Ok(settled)
    }

    /// Deletes the kept versions of deletes applied before `before` (the
    /// retention). Returns how many.
    pub async fn purge_deleted_records(&self, before: OffsetDateTime) -> Result<u64, StoreError> {
        const SQL: &str = "DELETE FROM deleted_records WHERE applied_at < $1";
        let backend = self.backend();
        let before = db_time(before, "retention's limit")?;
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(before)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "purging deleted records past their retention", e))
    }

    /// The ids of a practice's kept deleted records of `table`, in id order
    /// (checks and tests; not the raw JSON).
    pub async fn deleted_record_ids(
        &self,
        practice_id: &str,
        table: Table,
    ) -> Result<Vec<i64>, StoreError> {
        const SQL: &str = "SELECT record_id FROM deleted_records WHERE practice_id = $1 \
             AND resource = $2 ORDER BY record_id";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(practice_id)
                .bind(table.as_str())
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing deleted records", e))?;
            rows.iter().map(|r| r.int("record_id")).collect()
        })
    }

    /// A practice's kept deleted records of `table`, in id order (audit,
    /// recovery, checks). Their `raw` is patient data.
    pub async fn deleted_records(
        &self,
        practice_id: &str,
        table: Table,
    ) -> Result<Vec<DeletedRecord>, StoreError> {
        let backend = self.backend();
        let raw = match backend {
            Backend::Postgres => "raw::text AS raw",
            Backend::Sqlite => "raw",
        };
        let sql = format!(
            "SELECT record_id, last_modified, {raw}, detected_at, how, applied_at \
             FROM deleted_records WHERE practice_id = $1 AND resource = $2 ORDER BY record_id"
        );
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(practice_id)
                .bind(table.as_str())
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "reading deleted records", e))?;
            rows.iter()
                .map(|r| {
                    Ok(DeletedRecord {
                        record_id: r.int("record_id")?,
                        last_modified: r.opt_time("last_modified")?,
                        raw: r.text("raw")?,
                        detected_at: r.time("detected_at")?,
                        how: r.text("how")?,
                        applied_at: r.time("applied_at")?,
                    })
                })
                .collect()
        })
    }

    /// Every registered practice's pending and applied deletes and its
    /// latest nightly pass, by id.
    pub async fn delete_counts(&self) -> Result<Vec<DeleteCounts>, StoreError> {
        let sql = format!(
            "SELECT p.practice_id AS id, \
             (SELECT COUNT(*) FROM captured_deletes c WHERE c.practice_id = p.practice_id) \
             AS pending_count, \
             (SELECT COUNT(*) FROM deleted_records d WHERE d.practice_id = p.practice_id) \
             AS applied_count, n.* FROM practices p LEFT JOIN (SELECT {PASS_COLUMNS} \
             FROM nightly_passes) n ON n.practice_id = p.practice_id AND n.pass_id = \
             (SELECT l.pass_id FROM nightly_passes l WHERE l.practice_id = p.practice_id \
             ORDER BY l.started_at DESC, l.pass_id DESC LIMIT 1) ORDER BY p.practice_id"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "counting captured and applied deletes", e))?;
            rows.iter()
                .map(|row| {
                    let last_pass = match row.opt_text("pass_id")? {
                        Some(_) => Some(pass_record(row)?),
                        None => None,
                    };
                    Ok(DeleteCounts {
                        practice_id: row.text("id")?,
                        pending: count(row, "pending_count")?,
                        applied: count(row, "applied_count")?,
                        last_pass,
                    })
                })
                .collect()
        })
    }

    /// Records that a nightly pass starts on a practice (status
    /// `running`); in the same transaction, the practice's earlier passes
    /// still `running` become `interrupted` (the caller holds the
    /// practice's nightly lease, so they are dead).
    pub async fn start_nightly_pass(&self, start: &NightlyPassStart) -> Result<(), StoreError> {
        const OPERATION: &str = "recording a nightly pass's start";
        const INTERRUPTED: &str = "UPDATE nightly_passes SET status = 'interrupted', \
             ended_at = COALESCE(ended_at, $3) \
             WHERE practice_id = $1 AND status = 'running' AND pass_id <> $2";
        const INSERT: &str = "INSERT INTO nightly_passes (pass_id, practice_id, trigger, \
             started_at, status) VALUES ($1, $2, $3, $4, 'running') \
             ON CONFLICT (pass_id, practice_id) DO NOTHING";
        let backend = self.backend();
        let at = db_time(start.started_at, "nightly pass's start")?;
        in_transaction!(self, OPERATION, |tx| {
            sqlx::query(INTERRUPTED)
                .bind(&start.practice_id)
                .bind(&start.pass_id)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            sqlx::query(INSERT)
                .bind(&start.pass_id)
                .bind(&start.practice_id)
                .bind(start.trigger.as_str())
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
        });
        Ok(())
    }

    /// Records how a practice's part of a nightly pass ended.
    pub async fn finish_nightly_pass(
        &self,
        pass_id: &str,
        practice_id: &str,
        end: &NightlyPassEnd,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE nightly_passes SET status = $3, ended_at = $4, checked = $5, \
             applied = $6, cancelled = $7, api_calls = $8, error_class = $9, error_message = $10 \
             WHERE pass_id = $1 AND practice_id = $2";
        let backend = self.backend();
        let at = db_time(end.ended_at, "nightly pass's end")?;
        let message = end
            .error_message
            .as_deref()
            .map(|m| capped(m, MAX_ERROR_CHARS));
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(pass_id)
            .bind(practice_id)
            .bind(end.status.as_str())
            .bind(at)
            .bind(as_i64(end.checked))
            .bind(as_i64(end.applied))
            .bind(as_i64(end.cancelled))
            .bind(as_i64(end.api_calls))
            .bind(&end.error_class)
            .bind(&message)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| db_error(backend, "recording a nightly pass's end", e))
    }

    /// Nightly pass records, newest first: a practice's, or every one.
    pub async fn nightly_passes(
        &self,
        practice_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<NightlyPassRecord>, StoreError> {
        let sql = match practice_id {
            Some(_) => format!(
                "SELECT {PASS_COLUMNS} FROM nightly_passes WHERE practice_id = $2 \
                 ORDER BY started_at DESC, pass_id DESC LIMIT $1"
            ),
            None => format!(
                "SELECT {PASS_COLUMNS} FROM nightly_passes \
                 ORDER BY started_at DESC, pass_id DESC LIMIT $1"
            ),
        };
        let backend = self.backend();
        with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql).bind(i64::from(limit));
            if let Some(practice_id) = practice_id {
                query = query.bind(practice_id);
            }
            let rows = query
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "reading the nightly passes", e))?;
            rows.iter().map(pass_record).collect()
        })
    }
}
