//! What the admin surfaces change that no job does: a practice's interval,
//! a resync (its watermarks forgotten, so the next pass pulls its whole
//! history again), and a person's retry of a write-back item given up.
//! Each change and its audit row are one transaction.

use time::OffsetDateTime;

use model::{PracticeStatus, SYNC_INTERVALS_MINUTES};

use crate::connections::{AuditEntry, INSERT_AUDIT, audit, locked_status};
use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::rows::RowExt;
use crate::runtime::{db_time, practice_lease_key};
use crate::spec::Table;
use crate::store::{Inner, Store, in_transaction, with_pool};

impl Store {
    /// Sets a practice's interval (one of [`SYNC_INTERVALS_MINUTES`]),
    /// audited as `practice.interval` ("15 -> 5"). A shorter interval
    /// brings the next sync no later than `now + minutes`. Returns the old
    /// interval.
    pub async fn set_sync_interval(
        &self,
        practice_id: &str,
        minutes: i16,
        actor: &str,
    ) -> Result<i16, StoreError> {
        const OLD: &str = "SELECT sync_interval_minutes FROM practices WHERE practice_id = $1";
        const SET: &str = "UPDATE practices SET sync_interval_minutes = $2, updated_at = $3, \
             next_sync_at = CASE WHEN next_sync_at IS NOT NULL AND next_sync_at > $4 \
             THEN $4 ELSE next_sync_at END WHERE practice_id = $1";
        const OPERATION: &str = "changing a practice's interval";
        if !SYNC_INTERVALS_MINUTES.contains(&minutes) {
            return Err(StoreError::Conflict {
                reason: format!(
                    "an interval of {minutes} minutes is not offered: choose one of \
                     {SYNC_INTERVALS_MINUTES:?}"
                ),
            });
        }
        let backend = self.backend();
        let now = DbTime::now();
        let soonest = db_time(
            OffsetDateTime::now_utc() + time::Duration::minutes(i64::from(minutes)),
            "next sync (now + interval)",
        )?;
        let old = in_transaction!(self, OPERATION, |tx| {
            match locked_status!(tx, backend, practice_id, OPERATION) {
                None => {
                    return Err(StoreError::UnknownPractice {
                        practice_id: practice_id.to_owned(),
                    });
                }
                Some(PracticeStatus::Removed) => {
                    return Err(StoreError::PracticeRemoved {
                        practice_id: practice_id.to_owned(),
                    });
                }
                Some(_) => {}
            }
            let old = sqlx::query(OLD)
                .bind(practice_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .small("sync_interval_minutes")?;
            sqlx::query(SET)
                .bind(practice_id)
                .bind(minutes)
                .bind(now)
                .bind(soonest)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            let entry = AuditEntry::done(actor, "practice.interval", practice_id)
                .with_detail(format!("{old} -> {minutes} minutes"));
            audit!(tx, backend, now, &entry);
            old
        });
        Ok(old)
    }

    /// Forgets the watermarks of `tables` (all of the practice's resources
    /// when empty), so the next incremental pass of each pulls its whole
    /// history again, page by page, resumable like any pass; landed rows
    /// stay until their new copies replace them. Audited as
    /// `practice.resync`. Refused while a sync of the practice runs (its
    /// last page would set the watermark again) and during the initial
    /// sync (which pulls everything already). Returns the resources reset.
    pub async fn reset_for_resync(
        &self,
        practice_id: &str,
        tables: &[Table],
        actor: &str,
    ) -> Result<Vec<Table>, StoreError> {
        const LEASE: &str =
            "SELECT acquired_at FROM job_leases WHERE lease_key = $1 AND expires_at > $2";
        const STATES: &str = "SELECT resource FROM sync_state WHERE practice_id = $1 \
             AND watermark IS NOT NULL ORDER BY resource";
        const RESET: &str = "UPDATE sync_state SET watermark = NULL, pass_started_at = NULL, \
             pass_after_id = NULL, pass_max_seen = NULL, updated_at = $3 \
             WHERE practice_id = $1 AND resource = $2";
        const OPERATION: &str = "resetting a practice for a resync";
        let backend = self.backend();
        let now = DbTime::now();
        let lease_key = practice_lease_key(practice_id);
        let reset = in_transaction!(self, OPERATION, |tx| {
            match locked_status!(tx, backend, practice_id, OPERATION) {
                None => {
                    return Err(StoreError::UnknownPractice {
                        practice_id: practice_id.to_owned(),
                    });
                }
                Some(PracticeStatus::Active) => {}
                Some(PracticeStatus::InitialSync) => {
                    return Err(StoreError::Conflict {
                        reason: format!(
                            "practice {practice_id:?} is in its initial sync, which pulls its \
                             whole history already"
                        ),
                    });
                }
                Some(status) => {
                    return Err(StoreError::Conflict {
                        reason: format!(
                            "practice {practice_id:?} is {status}: enable or reconnect it first"
                        ),
                    });
                }
            }
            let running = sqlx::query(LEASE)
                .bind(&lease_key)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            if running.is_some() {
                return Err(StoreError::Conflict {
                    reason: format!(
                        "a sync of practice {practice_id:?} is running: ask again when it ends"
                    ),
                });
            }
            let mut held = Vec::new();
            for row in sqlx::query(STATES)
                .bind(practice_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
            {
                held.push(row.parsed::<Table>("resource")?);
            }
            let chosen: Vec<Table> = if tables.is_empty() {
                held
            } else {
                tables
                    .iter()
                    .copied()
                    .filter(|t| held.contains(t))
                    .collect()
            };
            if chosen.is_empty() {
                return Err(StoreError::Conflict {
                    reason: format!(
                        "practice {practice_id:?} has no synced resource of those asked to \
                         resync"
                    ),
                });
            }
            for table in &chosen {
                sqlx::query(RESET)
                    .bind(practice_id)
                    .bind(table.as_str())
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, OPERATION, e))?;
            }
            let names: Vec<&str> = chosen.iter().map(|t| t.as_str()).collect();
            let entry = AuditEntry::done(actor, "practice.resync", practice_id)
                .with_detail(format!("watermarks forgotten: {}", names.join(", ")));
            audit!(tx, backend, now, &entry);
            chosen
        });
        Ok(reset)
    }

    /// A person's retry of a write-back item that was given up (`dead`)
    /// or waits for its next try (`failed`): due now, with its attempts
    /// counted from zero. An item that was ever sent is looked up in
    /// Ascend before it is sent again (it goes back to `sending`, the
    /// state a worker resolves by a lookup first). Audited as
    /// `writeback.retry`. Returns the item's practice.
    pub async fn retry_writeback(&self, item_id: i64, actor: &str) -> Result<String, StoreError> {
        const ITEM: &str = "SELECT practice_id, status FROM writeback_outbox WHERE item_id = $1";
        const RETRY: &str = "UPDATE writeback_outbox SET status = CASE WHEN first_sent_at \
             IS NULL THEN 'pending' ELSE 'sending' END, attempts = 0, next_attempt_at = $2, \
             reason = NULL, updated_at = $2 WHERE item_id = $1 AND status IN ('dead', 'failed')";
        const OPERATION: &str = "retrying a write-back item";
        let backend = self.backend();
        let now = DbTime::now();
        let practice = in_transaction!(self, OPERATION, |tx| {
            let row = sqlx::query(ITEM)
                .bind(item_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .ok_or_else(|| StoreError::Conflict {
                    reason: format!("there is no write-back item {item_id}"),
                })?;
            let practice_id = row.text("practice_id")?;
            let status = row.text("status")?;
            let changed = sqlx::query(RETRY)
                .bind(item_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .rows_affected();
            if changed == 0 {
                return Err(StoreError::Conflict {
                    reason: format!(
                        "write-back item {item_id} is {status}: only dead and failed items are \
                         retried"
                    ),
                });
            }
            let entry = AuditEntry::done(actor, "writeback.retry", &practice_id)
                .with_detail(format!("item {item_id} ({status}) due again"));
            audit!(tx, backend, now, &entry);
            practice_id
        });
        Ok(practice)
    }
}

impl Store {
    /// One round trip to the database (`readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let backend = self.backend();
        with_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| db_error(backend, "checking the database is reachable", e))
    }
}

impl Store {
    /// When the practice's initial sync began: the start of its latest
    /// plan attempt (`initial_plan`); `None` before the plan ran.
    pub async fn initial_sync_started(
        &self,
        practice_id: &str,
    ) -> Result<Option<OffsetDateTime>, StoreError> {
        const SQL: &str = "SELECT started_at FROM sync_runs WHERE practice_id = $1 \
             AND kind = 'initial_plan' ORDER BY started_at DESC LIMIT 1";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(practice_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading when an initial sync began", e))?;
            row.map(|r| r.time("started_at")).transpose()
        })
    }
}
