//! The end of a job, in one transaction: its run finished in history, its
//! lease released, its practice's claim given up or extended, and the
//! effects the sync core decided (the practice `auth_failed`, a success,
//! the initial sync finished, a chunk no longer queued). Either all of it
//! commits or none of it does, and the worker settles the message only
//! after the commit: a failed end leaves the message to come back, so
//! history never loses an attempt and nothing is half-ended.
//!
//! Also here: which pending chunks are queued (`sync_chunks.queued_at`),
//! and the credential version a job opened.

use model::{ClaimChange, Holder};
use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::history::{MAX_ERROR_CHARS, MAX_RESOURCE_ERROR_CHARS, ResourceCounts, RunEnd, capped};
use crate::runtime::db_time;
use crate::store::{Inner, Store, in_transaction};

/// An auth failure to record: the practice turns `auth_failed` only if it
/// still syncs (a person's pause or removal wins) and its credentials are
/// still the version the job opened (a rotation since then wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthFailure {
    /// Why, for a person (never a secret).
    pub detail: String,
    /// The credential version the job opened
    /// ([`model::Practice::credential_version`]).
    pub credential_version: i64,
    /// Who recorded it, for the audit log (`worker:{id}`).
    pub actor: String,
}

/// Everything that changes when a job ends.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEnd {
    /// The practice.
    pub practice_id: String,
    /// The job (its claim, if it holds one, is `inflight_job_id`).
    pub job_id: String,
    /// The run to finish, and how it ended (None: no run, e.g. a bare
    /// [`Store::mark_auth_failed`]).
    pub run: Option<(String, RunEnd)>,
    /// The lease to release: (key, holder).
    pub lease: Option<(String, String)>,
    /// The practice's scheduling claim.
    pub claim: ClaimChange,
    /// The practice `auth_failed`.
    pub auth_failed: Option<AuthFailure>,
    /// A successful sync at this time.
    pub success_at: Option<OffsetDateTime>,
    /// Finish the initial sync: every resource incremental, the practice
    /// active (if it is still in initial sync) with a success now.
    pub finish_initial: bool,
    /// This chunk is no longer queued.
    pub unqueue_chunk: Option<i64>,
    /// Give up the practice's write-back claim if this job holds it (a
    /// write-back job that ended for good).
    pub release_writeback_claim: bool,
}

const FINISH_RUN: &str = "UPDATE sync_runs SET status = $2, ended_at = $3, resources = $4, \
     fetched = $5, written = $6, api_calls = $7, bytes = $8, error_class = $9, \
     error_message = $10 WHERE run_id = $1";
const RELEASE_LEASE: &str = "DELETE FROM job_leases WHERE lease_key = $1 AND holder = $2";
const RELEASE_OWN: &str = "UPDATE practices SET inflight_job_id = NULL, inflight_until = NULL, \
     inflight_forced = false WHERE practice_id = $1 AND inflight_job_id = $2";
const RELEASE_ANY: &str = "UPDATE practices SET inflight_job_id = NULL, inflight_until = NULL, \
     inflight_forced = false WHERE practice_id = $1 AND inflight_job_id IS NOT NULL";
const EXTEND_OWN: &str = "UPDATE practices SET inflight_until = \
     CASE WHEN inflight_until IS NULL OR inflight_until < $3 THEN $3 ELSE inflight_until END \
     WHERE practice_id = $1 AND inflight_job_id = $2";
const EXTEND_ANY: &str = "UPDATE practices SET inflight_until = \
     CASE WHEN inflight_until IS NULL OR inflight_until < $2 THEN $2 ELSE inflight_until END \
     WHERE practice_id = $1 AND inflight_job_id IS NOT NULL";
const AUTH_FAILED: &str = "UPDATE practices SET status = 'auth_failed', status_detail = $2, \
     status_changed_at = CASE WHEN status = 'auth_failed' THEN status_changed_at ELSE $3 END, \
     updated_at = $3, inflight_job_id = NULL, inflight_until = NULL, inflight_forced = false \
     WHERE practice_id = $1 AND status IN ('initial_sync', 'active', 'auth_failed') \
     AND credential_version = $4";
const AUDIT: &str = "INSERT INTO audit_log (at, actor, action, practice_id, outcome, detail) \
     VALUES ($1, $2, 'practice.auth_failed', $3, 'done', $4)";
const SUCCESS: &str = "UPDATE practices SET \
     last_success_at = CASE WHEN last_success_at IS NULL OR $2 > last_success_at \
     THEN $2 ELSE last_success_at END, updated_at = $3 WHERE practice_id = $1";
const INCREMENTAL: &str =
    "UPDATE sync_state SET phase = 'incremental', updated_at = $2 WHERE practice_id = $1";
const ACTIVE: &str = "UPDATE practices SET status = 'active', status_detail = NULL, \
     status_changed_at = $2, updated_at = $2, \
     last_success_at = CASE WHEN last_success_at IS NULL OR $2 > last_success_at \
     THEN $2 ELSE last_success_at END \
     WHERE practice_id = $1 AND status = 'initial_sync'";
const UNQUEUE: &str = "UPDATE sync_chunks SET queued_at = NULL WHERE chunk_id = $1";

impl Store {
    /// Ends a job: see [`JobEnd`] and the module documentation. Fails
    /// with [`StoreError::UnknownRun`] (nothing changed) if the run was
    /// never started. Returns whether the practice was marked
    /// `auth_failed`.
    pub async fn end_job(&self, end: &JobEnd) -> Result<bool, StoreError> {
        const OPERATION: &str = "ending a job";
        let backend = self.backend();
        let now = DbTime::now();
        let run = match &end.run {
            Some((run_id, run)) => Some((
                run_id.as_str(),
                run,
                db_time(run.ended_at, "run's end")?,
                finished_run(run),
            )),
            None => None,
        };
        let success = end
            .success_at
            .map(|at| db_time(at, "success time"))
            .transpose()?;
        let extend_until = match end.claim {
            ClaimChange::Extend { until, .. } => Some(db_time(until, "claim's new end")?),
            _ => None,
        };
        let id = end.practice_id.as_str();
        let fail = |e| db_error(backend, OPERATION, e);
        let marked = in_transaction!(self, OPERATION, |tx| {
            if let Some((run_id, end, ended, run)) = &run {
                let finished = sqlx::query(FINISH_RUN)
                    .bind(run_id)
                    .bind(end.status.as_str())
                    .bind(*ended)
                    .bind(&run.resources)
                    .bind(end.fetched)
                    .bind(end.written)
                    .bind(end.api_calls)
                    .bind(end.bytes)
                    .bind(&run.error_class)
                    .bind(&run.message)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?
                    .rows_affected();
                if finished == 0 {
                    // Dropping the transaction rolls it back.
                    return Err(StoreError::UnknownRun {
                        run_id: (*run_id).to_owned(),
                    });
                }
            }
            if end.release_writeback_claim {
                sqlx::query(crate::writeback::RELEASE_WRITEBACK_CLAIM)
                    .bind(id)
                    .bind(&end.job_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            if let Some((key, holder)) = &end.lease {
                sqlx::query(RELEASE_LEASE)
                    .bind(key)
                    .bind(holder)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            match (end.claim, extend_until) {
                (ClaimChange::Keep, _) => {}
                (ClaimChange::Release(Holder::ThisJob), _) => {
                    sqlx::query(RELEASE_OWN)
                        .bind(id)
                        .bind(&end.job_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                (ClaimChange::Release(Holder::Any), _) => {
                    sqlx::query(RELEASE_ANY)
                        .bind(id)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
                (ClaimChange::Extend { holder, .. }, Some(until)) => {
                    let query = match holder {
                        Holder::ThisJob => sqlx::query(EXTEND_OWN).bind(id).bind(&end.job_id),
                        Holder::Any => sqlx::query(EXTEND_ANY).bind(id),
                    };
                    query.bind(until).execute(&mut *tx).await.map_err(fail)?;
                }
                (ClaimChange::Extend { .. }, None) => {}
            }
            let mut marked = false;
            if let Some(auth) = &end.auth_failed {
                let detail = capped(&auth.detail, MAX_ERROR_CHARS);
                marked = sqlx::query(AUTH_FAILED)
                    .bind(id)
                    .bind(&detail)
                    .bind(now)
                    .bind(auth.credential_version)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?
                    .rows_affected()
                    > 0;
                if marked {
                    sqlx::query(AUDIT)
                        .bind(now)
                        .bind(&auth.actor)
                        .bind(id)
                        .bind(&detail)
                        .execute(&mut *tx)
                        .await
                        .map_err(fail)?;
                }
            }
            if let Some(at) = success {
                sqlx::query(SUCCESS)
                    .bind(id)
                    .bind(at)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            if end.finish_initial {
                sqlx::query(INCREMENTAL)
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                sqlx::query(ACTIVE)
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            if let Some(chunk_id) = end.unqueue_chunk {
                sqlx::query(UNQUEUE)
                    .bind(chunk_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            marked
        });
        Ok(marked)
    }

    /// Marks a syncing practice `auth_failed` (see [`AuthFailure`]), with
    /// its audit row, in one transaction. Returns whether it did: a
    /// practice a person paused or removed, or whose credentials were
    /// rotated since the failing job opened them, keeps its status.
    pub async fn mark_auth_failed(
        &self,
        practice_id: &str,
        failure: &AuthFailure,
    ) -> Result<bool, StoreError> {
        self.end_job(&JobEnd {
            auth_failed: Some(failure.clone()),
            ..JobEnd::nothing(practice_id, "")
        })
        .await
    }

    /// Records that jobs for these chunks were sent at `at`: a later plan
    /// leaves them out while they are queued or running.
    pub async fn mark_chunks_queued(
        &self,
        chunk_ids: &[i64],
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const OPERATION: &str = "marking chunks queued";
        const SQL: &str = "UPDATE sync_chunks SET queued_at = $2 WHERE chunk_id = $1";
        if chunk_ids.is_empty() {
            return Ok(());
        }
        let backend = self.backend();
        let at = db_time(at, "queued time")?;
        in_transaction!(self, OPERATION, |tx| {
            for chunk_id in chunk_ids {
                sqlx::query(SQL)
                    .bind(chunk_id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, OPERATION, e))?;
            }
        });
        Ok(())
    }
}

/// A run's end as stored: messages capped.
struct FinishedRun {
    resources: sqlx::types::Json<Vec<ResourceCounts>>,
    error_class: Option<String>,
    message: Option<String>,
}

fn finished_run(end: &RunEnd) -> FinishedRun {
    let resources: Vec<ResourceCounts> = end
        .resources
        .iter()
        .map(|r| ResourceCounts {
            error: r
                .error
                .as_deref()
                .map(|e| capped(e, MAX_RESOURCE_ERROR_CHARS)),
            error_class: r.error_class.as_deref().map(|c| capped(c, 100)),
            ..r.clone()
        })
        .collect();
    FinishedRun {
        resources: sqlx::types::Json(resources),
        error_class: end.error_class.as_deref().map(|c| capped(c, 100)),
        message: end
            .error_message
            .as_deref()
            .map(|m| capped(m, MAX_ERROR_CHARS)),
    }
}

impl JobEnd {
    /// The end of `job_id` of `practice_id` that changes nothing yet: fill
    /// in what changes.
    #[must_use]
    pub fn nothing(practice_id: &str, job_id: &str) -> JobEnd {
        JobEnd {
            practice_id: practice_id.to_owned(),
            job_id: job_id.to_owned(),
            run: None,
            lease: None,
            claim: ClaimChange::Keep,
            auth_failed: None,
            success_at: None,
            finish_initial: false,
            unqueue_chunk: None,
            release_writeback_claim: false,
        }
    }
}
