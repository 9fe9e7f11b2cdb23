//! Sync history (`sync_runs`: one row per attempt) and the status overview
//! of every practice.
//!
//! The history has no foreign key to `practices`: it outlives anything done
//! to a practice. A dead-lettered message whose practice is unknown (a
//! poison message) is recorded with `practice_id` `''`.
//!
//! Messages come from callers, which must keep secrets out of them; the
//! store caps each stored message (see [`MAX_ERROR_CHARS`]).

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::rows::RowExt;
use crate::runtime::db_time;
use crate::spec::Table;
use crate::store::{Inner, Store, in_transaction, with_pool};
use crate::values::{PracticeStatus, RunState};

/// The longest error message stored, in characters; longer ones are cut
/// and end with `…`.
pub const MAX_ERROR_CHARS: usize = 2_000;
/// The longest error message of one resource stored in a run's
/// `resources`, in characters.
pub const MAX_RESOURCE_ERROR_CHARS: usize = 500;
/// Reconciliations in a row that must find a resource's count mismatch
/// before the overview reports it ([`PracticeOverview::count_mismatch`]):
/// `sync_core::completeness::STALE_MISMATCHES`, the staleness rule's
/// threshold (the store's tests keep the two equal).
pub const STALE_MISMATCHES: i32 = 2;

/// What one resource of a run fetched and wrote.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ResourceCounts {
    /// The resource (landed table name).
    pub resource: String,
    /// Records fetched from the API.
    pub fetched: i64,
    /// Rows written.
    pub written: i64,
    /// Records set aside in quarantine (could not be read or landed);
    /// counted each time a record is fetched or retried and set aside.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub quarantined: i64,
    /// Deletes its reconciliation captured (records Ascend no longer
    /// lists; applied later by the nightly role).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deletes_captured: i64,
    /// Records Ascend lists that our copy lacked, found by its
    /// reconciliation and landed (a gap repaired).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recovered: i64,
    /// For an organization-wide resource shared by the organization's
    /// practices (issue 14): how this run had it (pulled and copied to
    /// other locations, pulled by another location's job, copied whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<String>,
    /// Its error's class (`auth`, `transient`...), if it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Its error's message, if it failed (capped at
    /// [`MAX_RESOURCE_ERROR_CHARS`] when stored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// An attempt that starts now ([`Store::start_run`]); its status is
/// `running`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRun {
    /// Unique to this attempt.
    pub run_id: String,
    /// The queue job it belongs to.
    pub job_id: String,
    /// The practice.
    pub practice_id: String,
    /// E.g. `initial`, `incremental`.
    pub kind: String,
    /// E.g. `schedule`, `force`.
    pub trigger: String,
    /// 1 for the first delivery of the job, then 2, 3...
    pub attempt: i32,
    /// The worker running it.
    pub worker: Option<String>,
    /// When it started.
    pub started_at: OffsetDateTime,
}

/// How an attempt ended ([`Store::finish_run`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunEnd {
    /// Its final state.
    pub status: RunState,
    /// When it ended.
    pub ended_at: OffsetDateTime,
    /// Per resource.
    pub resources: Vec<ResourceCounts>,
    /// Records fetched, all resources.
    pub fetched: i64,
    /// Rows written, all resources.
    pub written: i64,
    /// API requests made.
    pub api_calls: i64,
    /// Bytes received.
    pub bytes: i64,
    /// The class of the error that ended it, if any.
    pub error_class: Option<String>,
    /// The error's message, if any (capped at [`MAX_ERROR_CHARS`]).
    pub error_message: Option<String>,
}

/// One attempt as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRecord {
    /// Its id.
    pub run_id: String,
    /// Its job.
    pub job_id: String,
    /// Its practice (`''` for a dead-lettered message whose practice is
    /// unknown).
    pub practice_id: String,
    /// E.g. `initial`, `incremental`.
    pub kind: String,
    /// E.g. `schedule`, `force`.
    pub trigger: String,
    /// Which delivery of the job.
    pub attempt: i32,
    /// The worker that ran it.
    pub worker: Option<String>,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// When it ended (`None` while running).
    pub ended_at: Option<OffsetDateTime>,
    /// Its state.
    pub status: RunState,
    /// Per resource (empty until it ends).
    pub resources: Vec<ResourceCounts>,
    /// Records fetched.
    pub fetched: Option<i64>,
    /// Rows written.
    pub written: Option<i64>,
    /// API requests made.
    pub api_calls: Option<i64>,
    /// Bytes received.
    pub bytes: Option<i64>,
    /// The class of the error that ended it.
    pub error_class: Option<String>,
    /// The error's message.
    pub error_message: Option<String>,
}

impl RunRecord {
    /// How long it ran (`None` while running).
    pub fn duration(&self) -> Option<Duration> {
        self.ended_at.map(|end| end - self.started_at)
    }

    /// Records it set aside in quarantine, all resources.
    pub fn quarantined(&self) -> i64 {
        self.resources.iter().map(|r| r.quarantined).sum()
    }

    /// Deletes its reconciliations captured, all resources.
    pub fn deletes_captured(&self) -> i64 {
        self.resources.iter().map(|r| r.deletes_captured).sum()
    }
}

/// Which runs [`Store::history`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this practice's.
    pub practice_id: Option<String>,
    /// Only failed, partial, retrying and dead-lettered runs.
    pub failed_only: bool,
    /// Only runs started at or after this.
    pub since: Option<OffsetDateTime>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// Which runs [`Store::history_page`] returns: [`HistoryQuery`]'s
/// filters, one state or kind, and a keyset cursor for paging.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryFilter {
    /// Only this practice's.
    pub practice_id: Option<String>,
    /// Only failed, partial, retrying and dead-lettered runs.
    pub failed_only: bool,
    /// Only runs in this state.
    pub status: Option<RunState>,
    /// Only runs of this kind (`initial`, `incremental`, `writeback`...).
    pub kind: Option<String>,
    /// Only runs started at or after this.
    pub since: Option<OffsetDateTime>,
    /// Only runs after this one in the order (newest first): the last run
    /// of the page before.
    pub after: Option<HistoryCursor>,
    /// At most this many (newest first).
    pub limit: u32,
}

/// Where a page of history ended: the last run's start and id (the order
/// is `started_at DESC, run_id DESC`, so the pair is unique and stable
/// while runs are added).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCursor {
    /// The run's start.
    pub started_at: OffsetDateTime,
    /// The run's id.
    pub run_id: String,
}

impl From<&HistoryQuery> for HistoryFilter {
    fn from(q: &HistoryQuery) -> HistoryFilter {
        HistoryFilter {
            practice_id: q.practice_id.clone(),
            failed_only: q.failed_only,
            since: q.since,
            limit: q.limit,
            ..HistoryFilter::default()
        }
    }
}

/// The latest run of a practice, as the overview shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Its id.
    pub run_id: String,
    /// Its state.
    pub status: RunState,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// When it ended.
    pub ended_at: Option<OffsetDateTime>,
    /// Its error's class.
    pub error_class: Option<String>,
}

/// A practice as `ascend-sync status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PracticeOverview {
    /// The practice.
    pub practice_id: String,
    /// Where it stands.
    pub status: PracticeStatus,
    /// Why, for a person (e.g. the auth error).
    pub status_detail: Option<String>,
    /// When the status last changed (None: never since registration).
    pub status_changed_at: Option<OffsetDateTime>,
    /// Minutes between syncs.
    pub sync_interval_minutes: i16,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// When a sync of it last succeeded.
    pub last_success_at: Option<OffsetDateTime>,
    /// When it is due next (`None`: now).
    pub next_sync_at: Option<OffsetDateTime>,
    /// The job holding its claim, if any (past its time or not).
    pub inflight_job_id: Option<String>,
    /// Until when that job holds it.
    pub inflight_until: Option<OffsetDateTime>,
    /// Its latest run, if any.
    pub last_run: Option<RunSummary>,
    /// Its records in quarantine now (could not be read or landed).
    pub quarantined: u64,
    /// Since when its longest-failing resource has failed (resources not
    /// offered to the organization do not count); `None`: none fails.
    pub failing_since: Option<OffsetDateTime>,
    /// The count mismatch found by at least [`STALE_MISMATCHES`]
    /// reconciliations in a row that began first (resources not offered do
    /// not count): its resource and its first count (`mismatch_since`);
    /// `None`: none.
    pub count_mismatch: Option<(Table, OffsetDateTime)>,
}

/// `text` cut to at most `max` characters (the last one `…` when cut).
pub(crate) fn capped(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The columns [`run`] reads, as a literal for `concat!`.
macro_rules! run_columns {
    () => {
        "run_id, job_id, practice_id, kind, trigger, attempt, worker, started_at, ended_at, \
         status, resources, fetched, written, api_calls, bytes, error_class, error_message"
    };
}

/// The stored `resources` JSON, read the same on both backends.
type ResourcesJson = sqlx::types::Json<Vec<ResourceCounts>>;

fn run(row: &impl RunRow) -> Result<RunRecord, StoreError> {
    Ok(RunRecord {
        run_id: row.text("run_id")?,
        job_id: row.text("job_id")?,
        practice_id: row.text("practice_id")?,
        kind: row.text("kind")?,
        trigger: row.text("trigger")?,
        attempt: row.int32("attempt")?,
        worker: row.opt_text("worker")?,
        started_at: row.time("started_at")?,
        ended_at: row.opt_time("ended_at")?,
        status: row.parsed("status")?,
        resources: row.resources("resources")?,
        fetched: row.opt_int("fetched")?,
        written: row.opt_int("written")?,
        api_calls: row.opt_int("api_calls")?,
        bytes: row.opt_int("bytes")?,
        error_class: row.opt_text("error_class")?,
        error_message: row.opt_text("error_message")?,
    })
}

/// The column types of `sync_runs` that [`RowExt`] does not read.
trait RunRow: RowExt {
    fn int32(&self, col: &'static str) -> Result<i32, StoreError>;
    fn resources(&self, col: &'static str) -> Result<Vec<ResourceCounts>, StoreError>;
}

macro_rules! impl_run_row {
    ($row:ty) => {
        impl RunRow for $row {
            fn int32(&self, col: &'static str) -> Result<i32, StoreError> {
                use sqlx::Row;
                self.try_get(col).map_err(|e| StoreError::Unreadable {
                    what: col,
                    value: e.to_string(),
                })
            }
            fn resources(&self, col: &'static str) -> Result<Vec<ResourceCounts>, StoreError> {
                use sqlx::Row;
                self.try_get::<Option<ResourcesJson>, _>(col)
                    .map(|json| json.map(|j| j.0).unwrap_or_default())
                    .map_err(|e| StoreError::Unreadable {
                        what: col,
                        value: e.to_string(),
                    })
            }
        }
    };
}

impl_run_row!(sqlx::postgres::PgRow);
impl_run_row!(sqlx::sqlite::SqliteRow);

/// A value bound to a history query, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Time(DbTime),
    Int(i64),
}

/// The text and parameters of [`Store::history`]'s query. Only fixed
/// fragments are put together; every value is a parameter, so each filter
/// combination is its own plain statement the planner sees whole (an index
/// per question, no `$1 IS NULL OR ...`).
pub(crate) fn history_sql(q: &HistoryFilter) -> Result<(String, Vec<Bind>), StoreError> {
    let mut sql = String::from(concat!("SELECT ", run_columns!(), " FROM sync_runs"));
    let mut binds = Vec::new();
    let mut clauses: Vec<String> = Vec::new();
    if let Some(practice) = &q.practice_id {
        binds.push(Bind::Text(practice.clone()));
        clauses.push(format!("practice_id = ${}", binds.len()));
    }
    if q.failed_only {
        // The same list as the partial index sync_runs_failed_idx.
        clauses.push("status IN ('failed', 'partial', 'retrying', 'dead_lettered')".to_owned());
    }
    if let Some(status) = q.status {
        binds.push(Bind::Text(status.as_str().to_owned()));
        clauses.push(format!("status = ${}", binds.len()));
    }
    if let Some(kind) = &q.kind {
        binds.push(Bind::Text(kind.clone()));
        clauses.push(format!("kind = ${}", binds.len()));
    }
    if let Some(since) = q.since {
        binds.push(Bind::Time(db_time(since, "history's since")?));
        clauses.push(format!("started_at >= ${}", binds.len()));
    }
    if let Some(after) = &q.after {
        binds.push(Bind::Time(db_time(after.started_at, "history's cursor")?));
        let at = binds.len();
        binds.push(Bind::Text(after.run_id.clone()));
        let id = binds.len();
        clauses.push(format!(
            "(started_at < ${at} OR (started_at = ${at} AND run_id < ${id}))"
        ));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    binds.push(Bind::Int(i64::from(q.limit)));
    sql.push_str(&format!(
        " ORDER BY started_at DESC, run_id DESC LIMIT ${}",
        binds.len()
    ));
    Ok((sql, binds))
}

impl Store {
    /// Records that an attempt started (status `running`). Idempotent: a
    /// second call with the same `run_id` changes nothing.
    pub async fn start_run(&self, run: &NewRun) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_runs \
             (run_id, job_id, practice_id, kind, trigger, attempt, worker, started_at, status) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'running') \
             ON CONFLICT (run_id) DO NOTHING";
        let backend = self.backend();
        let started = db_time(run.started_at, "run's start")?;
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(&run.run_id)
            .bind(&run.job_id)
            .bind(&run.practice_id)
            .bind(&run.kind)
            .bind(&run.trigger)
            .bind(run.attempt)
            .bind(&run.worker)
            .bind(started)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| db_error(backend, "recording a run's start", e))
    }

    /// Records how an attempt ended. Messages longer than
    /// [`MAX_ERROR_CHARS`] (per resource: [`MAX_RESOURCE_ERROR_CHARS`]) are
    /// cut. Fails with [`StoreError::UnknownRun`] if it was never started.
    pub async fn finish_run(&self, run_id: &str, end: &RunEnd) -> Result<(), StoreError> {
        let end = crate::JobEnd {
            run: Some((run_id.to_owned(), end.clone())),
            ..crate::JobEnd::nothing("", "")
        };
        self.end_job(&end).await.map(|_| ())
    }

    /// Records that a job was given up (its message moved to the
    /// dead-letter queue): its latest run becomes `dead_lettered` (ended
    /// now if it was still `running`; `reason` fills its message only if it
    /// has none, so the last real error stays). A job that never ran (e.g.
    /// a poison message) gets a run `dlq:{job_id}` of kind and trigger
    /// `unknown`, attempt 0, for the practice whose claim the job holds, or
    /// practice `''` if none. Idempotent.
    pub async fn mark_job_dead_lettered(
        &self,
        job_id: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        const UPDATE: &str = "UPDATE sync_runs SET status = 'dead_lettered', \
             ended_at = COALESCE(ended_at, $2), \
             error_message = COALESCE(error_message, $3) \
             WHERE run_id = (SELECT run_id FROM sync_runs WHERE job_id = $1 \
             ORDER BY started_at DESC, run_id DESC LIMIT 1)";
        const INSERT: &str = "INSERT INTO sync_runs \
             (run_id, job_id, practice_id, kind, trigger, attempt, started_at, ended_at, status, \
             error_class, error_message) \
             VALUES ($1, $2, COALESCE((SELECT practice_id FROM practices \
             WHERE inflight_job_id = $2 LIMIT 1), ''), 'unknown', 'unknown', 0, $3, $3, \
             'dead_lettered', 'dead_lettered', $4) \
             ON CONFLICT (run_id) DO NOTHING";
        const OPERATION: &str = "recording a dead-lettered job";
        let backend = self.backend();
        let now = DbTime::now();
        let reason = reason.map(|r| capped(r, MAX_ERROR_CHARS));
        let run_id = format!("dlq:{job_id}");
        in_transaction!(self, OPERATION, |tx| {
            let updated = sqlx::query(UPDATE)
                .bind(job_id)
                .bind(now)
                .bind(&reason)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .rows_affected();
            if updated == 0 {
                sqlx::query(INSERT)
                    .bind(&run_id)
                    .bind(job_id)
                    .bind(now)
                    .bind(&reason)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, OPERATION, e))?;
            }
        });
        Ok(())
    }

    /// Runs matching `q`, newest first.
    pub async fn history(&self, q: &HistoryQuery) -> Result<Vec<RunRecord>, StoreError> {
        self.history_page(&HistoryFilter::from(q)).await
    }

    /// The runs `q` selects, newest first: a page of at most `q.limit`;
    /// the next page is asked with `after` set to the last run's cursor.
    pub async fn history_page(&self, q: &HistoryFilter) -> Result<Vec<RunRecord>, StoreError> {
        let backend = self.backend();
        let (sql, binds) = history_sql(q)?;
        with_pool!(self, |pool| {
            let mut query = sqlx::query(&sql);
            for bind in &binds {
                query = match bind {
                    Bind::Text(text) => query.bind(text.as_str()),
                    Bind::Time(at) => query.bind(*at),
                    Bind::Int(n) => query.bind(*n),
                };
            }
            let rows = query
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "reading sync history", e))?;
            rows.iter().map(run).collect()
        })
    }

    /// One run, by id.
    pub async fn run(&self, run_id: &str) -> Result<Option<RunRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM sync_runs WHERE run_id = $1"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(run_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a run", e))?;
            row.as_ref().map(run).transpose()
        })
    }

    /// The latest run of a job, if it ran (for `dlq list`'s last error).
    pub async fn last_run_of_job(&self, job_id: &str) -> Result<Option<RunRecord>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            run_columns!(),
            " FROM sync_runs WHERE job_id = $1 ORDER BY started_at DESC, run_id DESC LIMIT 1"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(job_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a job's last run", e))?;
            row.as_ref().map(run).transpose()
        })
    }

    /// Every registered practice with its schedule, claim and latest run,
    /// by id.
    pub async fn practice_overview(&self) -> Result<Vec<PracticeOverview>, StoreError> {
        const SQL: &str = "SELECT p.practice_id, p.status, p.status_detail, p.status_changed_at, \
             p.sync_interval_minutes, p.created_at, p.last_success_at, p.next_sync_at, \
             p.inflight_job_id, p.inflight_until, r.run_id, r.status AS run_status, \
             r.started_at AS run_started_at, r.ended_at AS run_ended_at, \
             r.error_class AS run_error_class, \
             (SELECT COUNT(*) FROM quarantine q WHERE q.practice_id = p.practice_id) AS quarantined, \
             (SELECT MIN(s.failing_since) FROM sync_state s WHERE s.practice_id = p.practice_id \
             AND s.not_offered_since IS NULL) AS failing_since, \
             (SELECT s.resource FROM sync_state s WHERE s.practice_id = p.practice_id \
             AND s.not_offered_since IS NULL AND s.mismatches >= $1 \
             AND s.mismatch_since IS NOT NULL \
             ORDER BY s.mismatch_since, s.resource LIMIT 1) AS mismatch_resource, \
             (SELECT MIN(s.mismatch_since) FROM sync_state s WHERE s.practice_id = p.practice_id \
             AND s.not_offered_since IS NULL AND s.mismatches >= $1) AS mismatch_since \
             FROM practices p LEFT JOIN sync_runs r ON r.run_id = \
             (SELECT l.run_id FROM sync_runs l WHERE l.practice_id = p.practice_id \
             ORDER BY l.started_at DESC, l.run_id DESC LIMIT 1) \
             ORDER BY p.practice_id";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(STALE_MISMATCHES)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "reading the practices' overview", e))?;
            rows.iter()
                .map(|row| {
                    let last_run = match row.opt_text("run_id")? {
                        None => None,
                        Some(run_id) => Some(RunSummary {
                            run_id,
                            status: row.parsed("run_status")?,
                            started_at: row.time("run_started_at")?,
                            ended_at: row.opt_time("run_ended_at")?,
                            error_class: row.opt_text("run_error_class")?,
                        }),
                    };
                    Ok(PracticeOverview {
                        practice_id: row.text("practice_id")?,
                        status: row.parsed("status")?,
                        status_detail: row.opt_text("status_detail")?,
                        status_changed_at: row.opt_time("status_changed_at")?,
                        sync_interval_minutes: row.small("sync_interval_minutes")?,
                        created_at: row.time("created_at")?,
                        last_success_at: row.opt_time("last_success_at")?,
                        next_sync_at: row.opt_time("next_sync_at")?,
                        inflight_job_id: row.opt_text("inflight_job_id")?,
                        inflight_until: row.opt_time("inflight_until")?,
                        last_run,
                        quarantined: u64::try_from(row.int("quarantined")?).unwrap_or(0),
                        failing_since: row.opt_time("failing_since")?,
                        count_mismatch: match row.opt_text("mismatch_resource")? {
                            Some(_) => Some((
                                row.parsed::<Table>("mismatch_resource")?,
                                row.time("mismatch_since")?,
                            )),
                            None => None,
                        },
                    })
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn run_states_round_trip_and_reject_others() {
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>(), Ok(*state));
        }
        assert!("done".parse::<RunState>().is_err());
        assert!(RunState::DeadLettered.is_failure());
        assert!(!RunState::Skipped.is_failure());
    }

    #[test]
    fn long_messages_are_capped_on_a_char_boundary() {
        assert_eq!(capped("short", 10), "short");
        let long = "é".repeat(3_000);
        let cut = capped(&long, MAX_ERROR_CHARS);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn history_sql_only_binds_values() {
        let (sql, binds) = history_sql(&HistoryFilter::from(&HistoryQuery {
            practice_id: Some("p'; DROP TABLE x".to_owned()),
            failed_only: true,
            since: None,
            limit: 5,
        }))
        .expect("builds");
        assert!(!sql.contains("DROP"));
        assert!(sql.contains("practice_id = $1"));
        assert!(sql.ends_with("LIMIT $2"));
        assert_eq!(binds.len(), 2);
    }
}
