//! One pull per organization (issue 14): the practices of an organization
//! as sharing an organization-wide resource sees them, and the copy of one
//! practice's landed resource into another's.
//!
//! Every practice keeps its own rows, sync state, captured deletes and
//! quarantine (reports keep their shape); one practice pulls the
//! organization-wide resource and its copy is shared with the others in
//! one transaction per resource ([`Store::share`]). What is copied and
//! when is the caller's decision (`sync_core::share`).

use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::rows::RowExt;
use crate::spec::Table;
use crate::store::{Inner, Store, in_transaction, practice_error, with_pool};
use crate::values::{PassCursor, PracticeStatus};

/// The filter text that marks a share chunk in `sync_chunks`: the
/// practice waits for a sibling's pull of the resource and copies it,
/// instead of pulling it.
pub const SHARE_CHUNK: &str = "share";

/// One practice of an organization and its copy of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub practice_id: String,
    pub status: PracticeStatus,
    /// The resource's watermark in this practice's copy.
    pub watermark: Option<OffsetDateTime>,
    /// Its incremental pass under way, if one stopped before its last page.
    pub pass: Option<PassCursor>,
    /// When its last complete incremental pass began.
    pub passed_at: Option<OffsetDateTime>,
    /// Ascend's count when the resource was planned.
    pub expected_count: Option<i64>,
    /// Initial-sync chunks of the resource it still has to pull.
    pub pulling: i64,
    /// Whether it has a pending share chunk: it waits to copy a sibling's
    /// pull.
    pub awaiting: Option<i64>,
}

/// What [`Store::share`] did for one practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shared {
    pub practice_id: String,
    /// Rows written (newer than the practice's version, or missing).
    pub rows: u64,
    /// Whether the whole copy was compared and copied (a practice out of
    /// step, or whose counts had drifted from the source's).
    pub whole: bool,
    /// Rows of the practice that the source does not hold, captured as
    /// deletes (confirmed with Ascend by the nightly role before applied).
    pub captured: u64,
}

/// How [`Store::share`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Copy {
    /// The source's rows landed at or after this time (its pass), and
    /// everything else that is small (state, captured deletes, quarantine).
    Since(OffsetDateTime),
    /// The whole resource: every row, and the practice's rows the source
    /// does not hold captured as deletes.
    Whole,
}

impl Store {
    /// The practices of an organization, each with its copy of `table`.
    pub async fn organization_members(
        &self,
        organization_id: &str,
        table: Table,
    ) -> Result<Vec<Member>, StoreError> {
        const SQL: &str = "SELECT p.practice_id, p.status, s.watermark, s.pass_started_at, \
             s.pass_after_id, s.pass_max_seen, s.passed_at, s.expected_count, \
             (SELECT COUNT(*) FROM sync_chunks c WHERE c.practice_id = p.practice_id \
              AND c.resource = $2 AND c.status = 'pending' AND c.filter <> 'share') AS pulling, \
             (SELECT MIN(c.chunk_id) FROM sync_chunks c WHERE c.practice_id = p.practice_id \
              AND c.resource = $2 AND c.status = 'pending' AND c.filter = 'share') AS awaiting \
             FROM practices p LEFT JOIN sync_state s \
             ON s.practice_id = p.practice_id AND s.resource = $2 \
             WHERE p.organization_id = $1 ORDER BY p.practice_id";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(organization_id)
                .bind(table.as_str())
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing an organization's practices", e))?;
            rows.iter()
                .map(|row| {
                    Ok(Member {
                        practice_id: row.text("practice_id")?,
                        status: row.parsed("status")?,
                        watermark: row.opt_time("watermark")?,
                        pass: crate::rows::pass_cursor(row)?,
                        passed_at: row.opt_time("passed_at")?,
                        expected_count: row.opt_int("expected_count")?,
                        pulling: row.int("pulling")?,
                        awaiting: row.opt_int("awaiting")?,
                    })
                })
                .collect()
        })
    }

    /// Adds a share chunk for `table` to the practice's initial sync (its
    /// rows will be copied from a sibling's pull) with the count Ascend
    /// gave the sibling, and records that count as the practice's
    /// expected one, so the resource counts as planned. Returns the
    /// chunk's id.
    pub async fn await_share(
        &self,
        practice_id: &str,
        table: Table,
        expected: Option<i64>,
    ) -> Result<i64, StoreError> {
        let backend = self.backend();
        let now = DbTime::now();
        let operation = "planning to copy an organization-wide resource";
        let id = in_transaction!(self, operation, |tx| {
            sqlx::query(
                "INSERT INTO sync_chunks (practice_id, resource, id_from, id_to, priority, filter, \
                 expected, status, updated_at) VALUES ($1, $2, 0, $3, 100, 'share', $4, 'pending', $5) \
                 ON CONFLICT (practice_id, resource, id_from, id_to, filter) DO NOTHING",
            )
            .bind(practice_id)
            .bind(table.as_str())
            .bind(i64::MAX)
            .bind(expected)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| practice_error(backend, operation, practice_id, e))?;
            sqlx::query(
                "INSERT INTO sync_state (practice_id, resource, expected_count, updated_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (practice_id, resource) DO UPDATE SET \
                 expected_count = excluded.expected_count, updated_at = excluded.updated_at",
            )
            .bind(practice_id)
            .bind(table.as_str())
            .bind(expected)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(backend, operation, e))?;
            let row = sqlx::query(
                "SELECT chunk_id FROM sync_chunks WHERE practice_id = $1 AND resource = $2 \
                 AND filter = 'share' AND id_from = 0",
            )
            .bind(practice_id)
            .bind(table.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(backend, operation, e))?;
            row.int("chunk_id")?
        });
        Ok(id)
    }

    /// Gives up waiting for a sibling's pull: the practice's share chunk
    /// of `table` is removed and the resource is unplanned, so the next
    /// plan pulls it.
    pub async fn abandon_share(&self, practice_id: &str, table: Table) -> Result<(), StoreError> {
        let backend = self.backend();
        let operation = "unplanning a copy of an organization-wide resource";
        in_transaction!(self, operation, |tx| {
            sqlx::query(
                "DELETE FROM sync_chunks WHERE practice_id = $1 AND resource = $2 AND filter = 'share'",
            )
            .bind(practice_id)
            .bind(table.as_str())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(backend, operation, e))?;
            sqlx::query(
                "UPDATE sync_state SET expected_count = NULL, updated_at = $3 \
                 WHERE practice_id = $1 AND resource = $2 AND watermark IS NULL",
            )
            .bind(practice_id)
            .bind(table.as_str())
            .bind(DbTime::now())
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(backend, operation, e))?;
        });
        Ok(())
    }

    /// Copies practice `from`'s `table` into practice `to` in one
    /// transaction: rows (newest wins, `synced_at` kept, so a later copy
    /// since a time means the same in every copy), its captured deletes of
    /// rows `to` holds (and `to`'s captures of rows `from` holds without
    /// one are cancelled), its quarantine (mirrored), and its sync state
    /// (watermark, pass, counts and evidence; `shared_from` set to
    /// `from`). With [`Copy::Whole`], rows of `to` that `from` does not
    /// hold are captured as deletes (the nightly role confirms each with
    /// Ascend before applying it).
    ///
    /// With `verify`, the two copies' counts are compared at the end; if a
    /// [`Copy::Since`] left them different (a row changed behind the
    /// sync's back), the whole resource is copied in the same transaction.
    /// A share chunk of `to` for the resource, if any, is done.
    ///
    /// The caller holds the organization's lease: no pass of the resource
    /// lands into `from` meanwhile.
    pub async fn share(
        &self,
        table: Table,
        from: &str,
        to: &str,
        copy: Copy,
        verify: bool,
    ) -> Result<Shared, StoreError> {
        let backend = self.backend();
        let operation = "copying an organization-wide resource";
        let now = DbTime::now();
        let spec = table.spec();
        let columns = spec.all_column_names();
        let targets = columns.join(", ");
        let sources: Vec<String> = columns
            .iter()
            .map(|c| {
                if *c == "practice_id" {
                    "$2".to_owned()
                } else {
                    format!("f.{c}")
                }
            })
            .collect();
        let assignments: Vec<String> = columns
            .iter()
            .skip(2)
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        let upsert = |since: bool| {
            format!(
                "INSERT INTO {t} AS t ({targets}) SELECT {sources} FROM {t} f \
                 WHERE f.practice_id = $1{since} \
                 ON CONFLICT (practice_id, id) DO UPDATE SET {assignments} \
                 WHERE (excluded.last_modified >= t.last_modified OR t.last_modified IS NULL) \
                 AND excluded.raw <> t.raw",
                t = table.as_str(),
                sources = sources.join(", "),
                since = if since { " AND f.synced_at >= $3" } else { "" },
                assignments = assignments.join(", "),
            )
        };
        let capture_missing = format!(
            "INSERT INTO captured_deletes (practice_id, resource, record_id, detected_at, how) \
             SELECT $2, '{t}', o.id, $3, 'daily' FROM {t} o WHERE o.practice_id = $2 \
             AND NOT EXISTS (SELECT 1 FROM {t} f WHERE f.practice_id = $1 AND f.id = o.id) \
             ON CONFLICT (practice_id, resource, record_id) DO NOTHING",
            t = table.as_str()
        );
        let cancel = format!(
            "DELETE FROM captured_deletes WHERE practice_id = $2 AND resource = '{t}' \
             AND EXISTS (SELECT 1 FROM {t} f WHERE f.practice_id = $1 \
             AND f.id = captured_deletes.record_id) \
             AND NOT EXISTS (SELECT 1 FROM captured_deletes c WHERE c.practice_id = $1 \
             AND c.resource = '{t}' AND c.record_id = captured_deletes.record_id)",
            t = table.as_str()
        );
        let add_captures = format!(
            "INSERT INTO captured_deletes (practice_id, resource, record_id, detected_at, how) \
             SELECT $2, c.resource, c.record_id, c.detected_at, c.how FROM captured_deletes c \
             WHERE c.practice_id = $1 AND c.resource = '{t}' \
             AND EXISTS (SELECT 1 FROM {t} o WHERE o.practice_id = $2 AND o.id = c.record_id) \
             ON CONFLICT (practice_id, resource, record_id) DO NOTHING",
            t = table.as_str()
        );
        let count = format!(
            "SELECT COUNT(*) AS n FROM {t} r WHERE r.practice_id = $1 \
             AND NOT EXISTS (SELECT 1 FROM captured_deletes c WHERE c.practice_id = $1 \
             AND c.resource = '{t}' AND c.record_id = r.id)",
            t = table.as_str()
        );
        let shared = in_transaction!(self, operation, |tx| {
            let mut shared = Shared {
                practice_id: to.to_owned(),
                rows: 0,
                whole: copy == Copy::Whole,
                captured: 0,
            };
            // Rows first, then what refers to them.
            let mut passes = vec![copy];
            while let Some(copy) = passes.pop() {
                if copy == Copy::Whole {
                    shared.captured += sqlx::query(&capture_missing)
                        .bind(from)
                        .bind(to)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| db_error(backend, operation, e))?
                        .rows_affected();
                }
                let written = match copy {
                    Copy::Whole => {
                        sqlx::query(&upsert(false))
                            .bind(from)
                            .bind(to)
                            .execute(&mut *tx)
                            .await
                    }
                    Copy::Since(since) => {
                        sqlx::query(&upsert(true))
                            .bind(from)
                            .bind(to)
                            .bind(DbTime::new(since).unwrap_or_else(DbTime::now))
                            .execute(&mut *tx)
                            .await
                    }
                };
                shared.rows += written
                    .map_err(|e| db_error(backend, operation, e))?
                    .rows_affected();
                sqlx::query(&cancel)
                    .bind(from)
                    .bind(to)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, operation, e))?;
                sqlx::query(&add_captures)
                    .bind(from)
                    .bind(to)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, operation, e))?;
                if verify && copy != Copy::Whole {
                    let mut held = [0i64; 2];
                    for (n, practice) in held.iter_mut().zip([from, to]) {
                        *n = sqlx::query(&count)
                            .bind(practice)
                            .fetch_one(&mut *tx)
                            .await
                            .map_err(|e| db_error(backend, operation, e))?
                            .int("n")?;
                    }
                    if held[0] != held[1] {
                        tracing::warn!(
                            table = %table,
                            from,
                            to,
                            source = held[0],
                            copy = held[1],
                            "a copy of an organization-wide resource had drifted; copying it whole"
                        );
                        shared.whole = true;
                        passes.push(Copy::Whole);
                    }
                }
            }
            // The quarantine is mirrored: the puller retries it, and what
            // it releases lands and is copied.
            sqlx::query("DELETE FROM quarantine WHERE practice_id = $2 AND resource = $1")
                .bind(table.as_str())
                .bind(to)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, operation, e))?;
            sqlx::query(
                "INSERT INTO quarantine (practice_id, resource, record_key, record_id, raw, reason, \
                 first_seen_at, last_tried_at, attempts) SELECT $3, resource, record_key, record_id, \
                 raw, reason, first_seen_at, last_tried_at, attempts FROM quarantine \
                 WHERE practice_id = $2 AND resource = $1",
            )
            .bind(table.as_str())
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(backend, operation, e))?;
            sqlx::query(STATE_SQL)
                .bind(from)
                .bind(to)
                .bind(table.as_str())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, operation, e))?;
            sqlx::query(
                "UPDATE sync_chunks SET status = 'done', updated_at = $3 WHERE practice_id = $1 \
                 AND resource = $2 AND filter = 'share' AND status = 'pending'",
            )
            .bind(to)
            .bind(table.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_error(backend, operation, e))?;
            shared
        });
        Ok(shared)
    }
}

/// The source's sync state of a resource, copied onto the practice's
/// (`$1` from, `$2` to, `$3` resource, `$4` now): everything but its own
/// `landed_count`.
const STATE_SQL: &str = "INSERT INTO sync_state (practice_id, resource, phase, watermark, \
     landed_count, expected_count, last_error, updated_at, not_offered_since, failing_since, \
     pass_started_at, pass_after_id, pass_max_seen, reconciled_at, ascend_count, held_count, \
     counted_at, complete_at, mismatch_since, mismatches, passed_at, shared_from) \
     SELECT $2, resource, phase, watermark, 0, expected_count, last_error, $4, not_offered_since, \
     failing_since, pass_started_at, pass_after_id, pass_max_seen, reconciled_at, ascend_count, \
     held_count, counted_at, complete_at, mismatch_since, mismatches, passed_at, $1 \
     FROM sync_state WHERE practice_id = $1 AND resource = $3 \
     ON CONFLICT (practice_id, resource) DO UPDATE SET phase = excluded.phase, \
     watermark = excluded.watermark, expected_count = excluded.expected_count, \
     last_error = excluded.last_error, updated_at = excluded.updated_at, \
     not_offered_since = excluded.not_offered_since, failing_since = excluded.failing_since, \
     pass_started_at = excluded.pass_started_at, pass_after_id = excluded.pass_after_id, \
     pass_max_seen = excluded.pass_max_seen, reconciled_at = excluded.reconciled_at, \
     ascend_count = excluded.ascend_count, held_count = excluded.held_count, \
     counted_at = excluded.counted_at, complete_at = excluded.complete_at, \
     mismatch_since = excluded.mismatch_since, mismatches = excluded.mismatches, \
     passed_at = excluded.passed_at, shared_from = excluded.shared_from";
