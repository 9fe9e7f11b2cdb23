//! The job runtime's coordination: scheduling claims on practices, Force
//! Sync Now, and leases.
//!
//! **Scheduling claims.** A practice is handed to one job at a time: the
//! claim is `practices.inflight_job_id` until `practices.inflight_until`.
//! [`Store::claim_due_practices`] takes the claims of every due practice in
//! one statement (Postgres: the candidate rows are locked `FOR UPDATE SKIP
//! LOCKED`; SQLite: inside `BEGIN IMMEDIATE`), so scheduler replicas running
//! at once never hand out the same practice twice. A claim past its time is
//! free again: a job lost in the queue or a crashed worker delays a
//! practice by at most one claim period.
//!
//! **Leases.** A lease (`job_leases`) says who is working on something now:
//! `practice:{id}` while a worker syncs a practice, `chunk:{id}` while it
//! pulls an initial-sync chunk. It is free when absent or expired; only its
//! holder renews or releases it. A holder must be unique to one running
//! attempt (e.g. worker id and message receipt): acquiring a lease one
//! already holds succeeds, so two attempts sharing a holder would not
//! exclude each other.
//!
//! Times are the caller's (`now` parameters), so tests and replicas agree on
//! one clock per call; durations are [`time::Duration`].

use time::{Duration, OffsetDateTime};

use crate::db_time::DbTime;
use crate::error::{Backend, StoreError, db_error};
use crate::rows::RowExt;
use crate::store::{Inner, Store, in_transaction, with_pool};
use crate::values::PracticeStatus;

/// The lease a worker holds while it syncs a practice.
pub fn practice_lease_key(practice_id: &str) -> String {
    format!("practice:{practice_id}")
}

/// The lease a worker holds while it sends a practice's write-backs.
pub fn writeback_lease_key(practice_id: &str) -> String {
    format!("writeback:{practice_id}")
}

/// The lease a worker holds while it pulls an initial-sync chunk.
pub fn chunk_lease_key(chunk_id: i64) -> String {
    format!("chunk:{chunk_id}")
}

/// A practice claimed for a scheduled sync by [`Store::claim_due_practices`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePractice {
    /// The practice.
    pub practice_id: String,
    /// `active` or `initial_sync`: which kind of job to enqueue.
    pub status: PracticeStatus,
    /// Minutes between its syncs.
    pub sync_interval_minutes: i16,
    /// The job that now holds the practice's claim: `{tick_id}:{practice_id}`.
    pub job_id: String,
    /// When it is due next (already moved on by this claim).
    pub next_sync_at: OffsetDateTime,
    /// A person made it due now (connected, enabled or rotated: no next
    /// time was set): its job goes at once, without the spread.
    pub at_once: bool,
}

/// What to do about a Force Sync Now request ([`Store::request_force`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForceDecision {
    /// Enqueue this job: it now holds the practice's claim.
    Enqueue {
        /// The job id given to the request.
        job_id: String,
    },
    /// A worker is syncing the practice now; that sync is the answer (no
    /// second job).
    AlreadyRunning {
        /// When the worker took the practice's lease.
        since: OffsetDateTime,
    },
    /// A Force Sync Now of the practice is queued and not yet running; it
    /// is the answer (no second job).
    AlreadyQueued {
        /// The queued job.
        job_id: String,
    },
    /// The practice's initial sync is running (its claim is live): the
    /// request raises that claim (marked forced) instead of enqueueing
    /// anything; its chunks keep their places on the Standard lane.
    InitialSyncRunning {
        /// The job whose claim the initial sync holds.
        job_id: String,
    },
    /// The practice is paused, removed or waiting for new credentials.
    NotSyncable {
        /// Its status.
        status: PracticeStatus,
    },
}

/// An instant as stored, or the error naming it.
pub(crate) fn db_time(at: OffsetDateTime, what: &'static str) -> Result<DbTime, StoreError> {
    DbTime::new(at).ok_or(StoreError::InvalidTime { what })
}

/// `at + by` as stored, or the error naming it.
fn db_time_after(
    at: OffsetDateTime,
    by: Duration,
    what: &'static str,
) -> Result<DbTime, StoreError> {
    at.checked_add(by)
        .and_then(DbTime::new)
        .ok_or(StoreError::InvalidTime { what })
}

/// The claim statement of each backend. `$1` now, `$2` limit, `$3` tick id,
/// `$4` claim end. The next due time keeps the practice's phase (previous
/// due time plus the interval) unless that is not in the future, when it
/// restarts from now.
macro_rules! claim_sql {
    (lock: $lock:literal, next_plus_interval: $next:literal, now_plus_interval: $now:literal) => {
        concat!(
            "UPDATE practices SET inflight_job_id = $3 || ':' || practice_id, \
             inflight_until = $4, inflight_forced = false, \
             claimed_at_once = (next_sync_at IS NULL), \
             next_sync_at = CASE WHEN next_sync_at IS NOT NULL AND ",
            $next,
            " > $1 THEN ",
            $next,
            " ELSE ",
            $now,
            " END \
             WHERE practice_id IN (SELECT practice_id FROM practices \
             WHERE status IN ('active', 'initial_sync') \
             AND (next_sync_at IS NULL OR next_sync_at <= $1) \
             AND (inflight_until IS NULL OR inflight_until <= $1) \
             ORDER BY COALESCE(next_sync_at, $1), practice_id LIMIT $2",
            $lock,
            ") RETURNING practice_id, status, sync_interval_minutes, inflight_job_id, next_sync_at, \
             claimed_at_once"
        )
    };
}

const CLAIM_POSTGRES: &str = claim_sql!(
    lock: " FOR UPDATE SKIP LOCKED",
    next_plus_interval: "next_sync_at + make_interval(mins => sync_interval_minutes)",
    now_plus_interval: "$1 + make_interval(mins => sync_interval_minutes)"
);

// SQLite's date functions keep milliseconds: the result is written in the
// store's six-digit form with three zeros.
const CLAIM_SQLITE: &str = claim_sql!(
    lock: "",
    next_plus_interval: "(strftime('%Y-%m-%dT%H:%M:%f', next_sync_at, \
                         '+' || sync_interval_minutes || ' minutes') || '000Z')",
    now_plus_interval: "(strftime('%Y-%m-%dT%H:%M:%f', $1, \
                        '+' || sync_interval_minutes || ' minutes') || '000Z')"
);

impl Store {
    // ---- scheduling claims ------------------------------------------------

    /// Claims up to `limit` due practices for scheduled jobs, oldest due
    /// first, in one atomic statement.
    ///
    /// Due: status `active` or `initial_sync`, `next_sync_at` NULL (due
    /// now) or not after `now`, and no live claim (`inflight_until` NULL or
    /// not after `now`). Each claimed practice gets the job id
    /// `{tick_id}:{practice_id}` until `now + claim_for`, and its next due
    /// time moves on by one interval from the previous one (so practices
    /// keep their phase and load stays spread), or to `now + interval` when
    /// it was NULL or a whole interval or more behind.
    ///
    /// Concurrent callers never receive the same practice. Returned by next
    /// due time, then id.
    pub async fn claim_due_practices(
        &self,
        now: OffsetDateTime,
        limit: u32,
        claim_for: Duration,
        tick_id: &str,
    ) -> Result<Vec<DuePractice>, StoreError> {
        const OPERATION: &str = "claiming due practices";
        let backend = self.backend();
        let sql = match backend {
            Backend::Postgres => CLAIM_POSTGRES,
            Backend::Sqlite => CLAIM_SQLITE,
        };
        let until = db_time_after(now, claim_for, "claim's end (now + claim_for)")?;
        let now = db_time(now, "claim time (now)")?;
        let mut due = in_transaction!(self, OPERATION, |tx| {
            let rows = sqlx::query(sql)
                .bind(now)
                .bind(i64::from(limit))
                .bind(tick_id)
                .bind(until)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            rows.iter()
                .map(|row| {
                    Ok(DuePractice {
                        practice_id: row.text("practice_id")?,
                        status: row.parsed("status")?,
                        sync_interval_minutes: row.small("sync_interval_minutes")?,
                        job_id: row.text("inflight_job_id")?,
                        next_sync_at: row.time("next_sync_at")?,
                        at_once: row.flag("claimed_at_once")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()?
        });
        due.sort_by(|a, b| (a.next_sync_at, &a.practice_id).cmp(&(b.next_sync_at, &b.practice_id)));
        Ok(due)
    }

    /// Clears the practice's claim if `job_id` still holds it; a stale job
    /// never clears a newer job's claim. Returns whether it did (false also
    /// for an unknown practice).
    pub async fn release_inflight(
        &self,
        practice_id: &str,
        job_id: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE practices SET inflight_job_id = NULL, inflight_until = NULL \
                           WHERE practice_id = $1 AND inflight_job_id = $2";
        let backend = self.backend();
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(job_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "releasing a practice's claim", e))?;
        Ok(done > 0)
    }

    /// Moves the end of `job_id`'s claim on the practice to `until` (never
    /// earlier), so a long sync keeps it. Returns false if the job no
    /// longer holds the claim (another job took it, or it was released).
    pub async fn extend_inflight(
        &self,
        practice_id: &str,
        job_id: &str,
        until: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE practices SET inflight_until = \
             CASE WHEN inflight_until IS NULL OR inflight_until < $3 THEN $3 ELSE inflight_until END \
             WHERE practice_id = $1 AND inflight_job_id = $2";
        let backend = self.backend();
        let until = db_time(until, "claim's new end")?;
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(job_id)
            .bind(until)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "extending a practice's claim", e))?;
        Ok(done > 0)
    }

    /// Sets when the practice is due next (`None`: now). A new practice gets
    /// a jittered first time from its caller.
    pub async fn set_next_sync_at(
        &self,
        practice_id: &str,
        at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE practices SET next_sync_at = $2 WHERE practice_id = $1";
        let backend = self.backend();
        let at = at.map(|at| db_time(at, "next sync time")).transpose()?;
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(at)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "setting a practice's next sync time", e))?;
        if done == 0 {
            return Err(StoreError::UnknownPractice {
                practice_id: practice_id.to_owned(),
            });
        }
        Ok(())
    }

    /// The job holding the practice's claim and until when, if any (a
    /// claim past its time is returned too: compare with the clock).
    pub async fn inflight_job(
        &self,
        practice_id: &str,
    ) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
        const SQL: &str =
            "SELECT inflight_job_id, inflight_until FROM practices WHERE practice_id = $1";
        let backend = self.backend();
        let row = with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(practice_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a practice's claim", e))?;
            row.map(|row| {
                Ok::<_, StoreError>((
                    row.opt_text("inflight_job_id")?,
                    row.opt_time("inflight_until")?,
                ))
            })
            .transpose()?
        });
        match row {
            None => Err(StoreError::UnknownPractice {
                practice_id: practice_id.to_owned(),
            }),
            Some((Some(job), Some(until))) => Ok(Some((job, until))),
            Some(_) => Ok(None),
        }
    }

    /// Force Sync Now: decides, atomically, whether to enqueue `job_id`.
    ///
    /// A paused, removed or auth-failed practice is not synced. A practice
    /// whose initial sync holds a live claim gets that claim raised
    /// (forced), and nothing is enqueued. If a worker
    /// holds the practice's lease, that sync is running: no second job.
    /// Otherwise `job_id` takes the practice's claim until `now +
    /// claim_for`, replacing a scheduled job's claim that is still queued
    /// (that job finds it no longer holds the claim and does nothing).
    pub async fn request_force(
        &self,
        practice_id: &str,
        now: OffsetDateTime,
        job_id: &str,
        claim_for: Duration,
    ) -> Result<ForceDecision, StoreError> {
        // Postgres: the row lock orders concurrent requests for a practice.
        const STATUS_POSTGRES: &str =
            "SELECT status FROM practices WHERE practice_id = $1 FOR UPDATE";
        const STATUS_SQLITE: &str = "SELECT status FROM practices WHERE practice_id = $1";
        const LEASE: &str =
            "SELECT acquired_at FROM job_leases WHERE lease_key = $1 AND expires_at > $2";
        const CLAIM: &str = "UPDATE practices SET inflight_job_id = $2, inflight_until = $3, \
                             inflight_forced = true WHERE practice_id = $1";
        const QUEUED: &str = "SELECT inflight_job_id FROM practices WHERE practice_id = $1 \
                              AND inflight_forced AND inflight_until > $2";
        const INITIAL_CLAIM: &str = "UPDATE practices SET inflight_forced = true \
             WHERE practice_id = $1 AND inflight_until > $2 RETURNING inflight_job_id";
        const OPERATION: &str = "deciding a Force Sync Now";
        let backend = self.backend();
        let status_sql = match backend {
            Backend::Postgres => STATUS_POSTGRES,
            Backend::Sqlite => STATUS_SQLITE,
        };
        let until = db_time_after(now, claim_for, "claim's end (now + claim_for)")?;
        let now = db_time(now, "request time (now)")?;
        let lease_key = practice_lease_key(practice_id);
        let decision = in_transaction!(self, OPERATION, |tx| {
            let status: Option<PracticeStatus> = sqlx::query(status_sql)
                .bind(practice_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .map(|row| row.parsed("status"))
                .transpose()?;
            let Some(status) = status else {
                return Err(StoreError::UnknownPractice {
                    practice_id: practice_id.to_owned(),
                });
            };
            let initial_claim = if status == PracticeStatus::InitialSync {
                sqlx::query(INITIAL_CLAIM)
                    .bind(practice_id)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, OPERATION, e))?
                    .map(|row| row.opt_text("inflight_job_id"))
                    .transpose()?
                    .flatten()
            } else {
                None
            };
            if !status.is_syncing() {
                ForceDecision::NotSyncable { status }
            } else if let Some(job_id) = initial_claim {
                ForceDecision::InitialSyncRunning { job_id }
            } else {
                let running = sqlx::query(LEASE)
                    .bind(&lease_key)
                    .bind(now)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, OPERATION, e))?
                    .map(|row| row.time("acquired_at"))
                    .transpose()?;
                let queued = match running {
                    Some(_) => None,
                    None => sqlx::query(QUEUED)
                        .bind(practice_id)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(|e| db_error(backend, OPERATION, e))?
                        .map(|row| row.opt_text("inflight_job_id"))
                        .transpose()?
                        .flatten(),
                };
                match (running, queued) {
                    (Some(since), _) => ForceDecision::AlreadyRunning { since },
                    (None, Some(job_id)) => ForceDecision::AlreadyQueued { job_id },
                    (None, None) => {
                        sqlx::query(CLAIM)
                            .bind(practice_id)
                            .bind(job_id)
                            .bind(until)
                            .execute(&mut *tx)
                            .await
                            .map_err(|e| db_error(backend, OPERATION, e))?;
                        ForceDecision::Enqueue {
                            job_id: job_id.to_owned(),
                        }
                    }
                }
            }
        });
        Ok(decision)
    }

    // ---- leases -------------------------------------------------------------

    /// Takes the lease `key` for `holder` until `now + ttl`: true if it was
    /// free, expired, or already this holder's (then extended); false if
    /// another holder has it. One statement, so of racing callers exactly
    /// one wins.
    pub async fn acquire_lease(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO job_leases (lease_key, holder, expires_at, acquired_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (lease_key) DO UPDATE SET \
             acquired_at = CASE WHEN job_leases.holder = excluded.holder \
             AND job_leases.expires_at > excluded.acquired_at \
             THEN job_leases.acquired_at ELSE excluded.acquired_at END, \
             holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE job_leases.expires_at <= excluded.acquired_at \
             OR job_leases.holder = excluded.holder";
        let backend = self.backend();
        let expires = db_time_after(now, ttl, "lease's end (now + ttl)")?;
        let now = db_time(now, "lease time (now)")?;
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(key)
            .bind(holder)
            .bind(expires)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "acquiring a lease", e))?;
        Ok(done > 0)
    }

    /// Extends `holder`'s lease `key` to `now + ttl`. False if the lease is
    /// lost: another holder took it, or it was released. (A lease past its
    /// time that nobody took is still its holder's and is renewed.)
    pub async fn renew_lease(
        &self,
        key: &str,
        holder: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str =
            "UPDATE job_leases SET expires_at = $3 WHERE lease_key = $1 AND holder = $2";
        let backend = self.backend();
        let expires = db_time_after(now, ttl, "lease's end (now + ttl)")?;
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(key)
            .bind(holder)
            .bind(expires)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "renewing a lease", e))?;
        Ok(done > 0)
    }

    /// Gives up `holder`'s lease `key`; does nothing if another holder has
    /// it now.
    pub async fn release_lease(&self, key: &str, holder: &str) -> Result<(), StoreError> {
        const SQL: &str = "DELETE FROM job_leases WHERE lease_key = $1 AND holder = $2";
        let backend = self.backend();
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(key)
            .bind(holder)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| db_error(backend, "releasing a lease", e))
    }

    /// The holder of the lease `key` and until when, if it is live at `now`.
    pub async fn lease_holder(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<(String, OffsetDateTime)>, StoreError> {
        const SQL: &str = "SELECT holder, expires_at FROM job_leases \
                           WHERE lease_key = $1 AND expires_at > $2";
        let backend = self.backend();
        let now = db_time(now, "lease time (now)")?;
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(key)
                .bind(now)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a lease", e))?;
            row.map(|row| Ok((row.text("holder")?, row.time("expires_at")?)))
                .transpose()
        })
    }
}
