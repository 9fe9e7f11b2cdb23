//! Executing a practice's initial and incremental sync.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use ascend_client::{AscendId, ClientError, ErrorClass, ListQuery, OrgClient, Page, Resource};
use blob::{Archive, PageKey};
use store::{
    BadRecord, Checkpoint, Chunk, LandOutcome, LandedRow, NewChunk, PageRecords, PassCursor,
    PracticeStatus, Store, SyncPhase, Table,
};
use sync_core::plan::{self, ChunkWindow, IdRange};
use sync_core::{Scope, watermark};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::SyncError;

mod reconcile;
mod share;

pub use share::ShareChunk;

/// How a [`Syncer`] works.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// Records per initial-sync chunk the planner aims for.
    pub chunk_target: u64,
    /// Chunks (initial) or resources (incremental) pulled at once by this
    /// process for one practice.
    pub concurrency: usize,
    /// Records per page asked of the API (at most 500).
    pub page_size: Option<u32>,
    /// How often each resource is reconciled whole for deletes.
    pub reconcile: sync_core::reconcile::Policy,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            chunk_target: plan::DEFAULT_CHUNK_TARGET,
            concurrency: 4,
            page_size: None,
            reconcile: sync_core::reconcile::Policy::default(),
        }
    }
}

/// One landed page, for progress displays.
#[derive(Debug, Clone)]
pub struct Progress {
    pub practice_id: String,
    pub resource: Resource,
    pub records: u64,
}

type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Executes syncs: Ascend client in, archive and store out.
#[derive(Clone)]
pub struct Syncer {
    store: Store,
    archive: Archive,
    config: SyncConfig,
    progress: Option<ProgressFn>,
}

/// The most quarantined records of one resource a cycle retries.
pub const QUARANTINE_RETRY_LIMIT: u32 = 500;

/// What one chunk run did.
#[derive(Debug, Clone, Default)]
pub struct ChunkReport {
    pub chunk_id: i64,
    pub pages: u64,
    pub fetched: u64,
    pub written: u64,
    /// Records set aside in quarantine (the rest of their pages landed).
    pub quarantined: u64,
    pub done: bool,
}

/// What an initial sync did.
#[derive(Debug, Clone, Default)]
pub struct InitialReport {
    pub chunks_planned: u64,
    pub count_calls: u64,
    pub chunks_run: u64,
    pub fetched: u64,
    pub written: u64,
    /// Resources that could not be planned or pulled, with the error.
    pub failures: Vec<(Resource, String)>,
    /// Whether every chunk is done and the practice is now active.
    pub complete: bool,
}

/// One resource in an incremental run.
#[derive(Debug, Clone)]
pub struct ResourceOutcome {
    pub resource: Resource,
    pub pages: u64,
    pub fetched: u64,
    pub written: u64,
    /// Records set aside in quarantine: fetched this cycle, or retried from
    /// the quarantine and still unreadable or refused.
    pub quarantined: u64,
    /// Records of the quarantine that landed when retried this cycle.
    pub released: u64,
    /// Error class and message, when the resource failed.
    pub error: Option<(ErrorClass, String)>,
    /// The wait Ascend asked for, when its rate limit stopped the resource.
    pub retry_after: Option<std::time::Duration>,
    /// Deletes captured by the cycle's reconciliation (issue 13).
    pub deletes_captured: u64,
    /// Whether the resource was reconciled this cycle.
    pub reconciled: bool,
    /// Records its reconciliation found missing from our copy and landed.
    pub recovered: u64,
    /// For an organization-wide resource shared by the organization's
    /// practices: how this cycle had it (issue 14).
    pub shared: Option<String>,
}

impl ResourceOutcome {
    /// Nothing done yet.
    pub fn new(resource: Resource) -> Self {
        ResourceOutcome {
            resource,
            pages: 0,
            fetched: 0,
            written: 0,
            quarantined: 0,
            released: 0,
            error: None,
            retry_after: None,
            deletes_captured: 0,
            reconciled: false,
            recovered: 0,
            shared: None,
        }
    }

    fn failed(resource: Resource, error: &SyncError) -> Self {
        ResourceOutcome {
            error: Some((error.class(), error.to_string())),
            retry_after: error.retry_after(),
            ..ResourceOutcome::new(resource)
        }
    }

    fn noted(mut self, notes: Vec<String>) -> Self {
        if !notes.is_empty() {
            self.shared = Some(notes.join("; "));
        }
        self
    }
}

/// Who asked for an incremental cycle, and when: whether an
/// organization-wide resource is pulled (`sync_core::share::pull_due`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asked {
    /// When the job was enqueued.
    pub at: OffsetDateTime,
    /// Whether the scheduler asked (not a person or an administrator).
    pub scheduled: bool,
}

impl Asked {
    /// Asked by a person now.
    pub fn now() -> Self {
        Asked {
            at: OffsetDateTime::now_utc(),
            scheduled: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Succeeded,
    /// Some resources failed, or records went to quarantine; the rest
    /// landed.
    Partial,
    Failed,
}

/// What an incremental run did, resource by resource.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub run_id: String,
    pub status: RunStatus,
    pub resources: Vec<ResourceOutcome>,
}

impl RunReport {
    pub fn fetched(&self) -> u64 {
        self.resources.iter().map(|r| r.fetched).sum()
    }

    /// Records set aside in quarantine, all resources.
    pub fn quarantined(&self) -> u64 {
        self.resources.iter().map(|r| r.quarantined).sum()
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayReport {
    pub pages: u64,
    pub records: u64,
    pub written: u64,
    /// Archived records that could not be read or landed: in quarantine.
    pub quarantined: u64,
}

fn table(resource: Resource) -> Table {
    Table::of(resource)
}

/// A new run id: UTC time and a random suffix, `[0-9A-Za-z-]` only.
pub fn new_run_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = OffsetDateTime::now_utc();
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z-{:08x}",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        hasher.finish() as u32
    )
}

impl Syncer {
    pub fn new(store: Store, archive: Archive, config: SyncConfig) -> Self {
        Syncer {
            store,
            archive,
            config,
            progress: None,
        }
    }

    /// Calls `progress` after every landed page.
    pub fn with_progress(mut self, progress: impl Fn(&Progress) + Send + Sync + 'static) -> Self {
        self.progress = Some(Arc::new(progress));
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn query(&self, filter: ascend_client::Filter) -> ListQuery {
        ListQuery {
            filter,
            page_size: self.config.page_size,
            ..ListQuery::default()
        }
    }

    /// The practice's scope. Whether it may be synced at all is the job
    /// rules' (`sync_core::job::admit`), asked before any of this runs.
    async fn scope(&self, practice_id: &str) -> Result<Scope, SyncError> {
        Ok(Scope::of(&self.practice(practice_id).await?))
    }

    async fn practice(&self, practice_id: &str) -> Result<store::Practice, SyncError> {
        self.store
            .get_practice(practice_id)
            .await?
            .ok_or_else(|| SyncError::UnknownPractice(practice_id.to_owned()))
    }

    /// Starts archiving, then landing, a page with its checkpoint.
    ///
    /// Both run in a task of their own: if the caller is cancelled (a job's
    /// deadline, a shutdown), the page still completes or fails as a whole,
    /// and no transaction is left open on a pooled connection. The caller
    /// keeps at most one landing in flight per cursor ([`Landing`]), so
    /// checkpoints commit in page order.
    ///
    /// Every record is archived, read or not (minified by the client: one
    /// line each, whatever the server's formatting). Records that could not
    /// be read, and rows the store cannot land, go to quarantine in the
    /// page's transaction; the rest lands and the checkpoint moves on as
    /// for a clean page.
    fn start_landing(
        &self,
        practice_id: &str,
        page: Page,
        run_id: &str,
        seq: u64,
        checkpoint: Checkpoint,
    ) -> Landing {
        let resource = page.resource;
        let records = page.entries() as u64;
        let (store, archive) = (self.store.clone(), self.archive.clone());
        let key = PageKey {
            practice_id: practice_id.to_owned(),
            resource: resource.name().to_owned(),
            date: OffsetDateTime::now_utc().date(),
            run_id: run_id.to_owned(),
            seq,
        };
        let task = tokio::spawn(async move {
            if page.entries() > 0 {
                archive.put_page(&key, &page.texts()).await?;
            }
            let outcome = land_records(
                &store,
                &key.practice_id,
                resource,
                &page.records,
                &page.rejected,
                &[],
                checkpoint,
            )
            .await?;
            Ok::<LandOutcome, SyncError>(outcome)
        });
        Landing {
            task,
            practice_id: practice_id.to_owned(),
            resource,
            records,
        }
    }

    /// Waits for a landing; returns what it wrote and set aside.
    async fn finish_landing(&self, landing: Landing) -> Result<LandOutcome, SyncError> {
        let outcome = landing
            .task
            .await
            .map_err(|e| SyncError::Interrupted(e.to_string()))??;
        if let Some(progress) = &self.progress {
            progress(&Progress {
                practice_id: landing.practice_id,
                resource: landing.resource,
                records: landing.records,
            });
        }
        Ok(outcome)
    }

    /// Plans the initial sync of every resource not planned yet. A resource
    /// is planned once: its chunks and its expected count are stored, and a
    /// resumed initial sync does not plan it again.
    pub async fn plan_initial(
        &self,
        practice_id: &str,
        org: &OrgClient,
    ) -> Result<InitialReport, SyncError> {
        let practice = self.practice(practice_id).await?;
        let scope = Scope::of(&practice);
        let started = OffsetDateTime::now_utc();
        let holder = new_run_id();
        let mut report = InitialReport::default();
        let mut forbidden = 0;
        let mut claim: Option<share::OrgLease> = None;
        for &resource in Resource::ALL {
            let t = table(resource);
            let state = self.store.get_sync_state(practice_id, t).await?;
            if state.as_ref().is_some_and(|s| s.expected_count.is_some()) {
                continue;
            }
            // An organization-wide resource a sibling has, or is pulling,
            // is copied from it rather than pulled (issue 14). One this
            // practice pulls is planned under the organization's planning
            // lease, released when the next resource is planned.
            if let Some(claim) = claim.take() {
                claim.release().await;
            }
            claim = if Scope::is_location_scoped(resource) {
                None
            } else {
                match self.plan_shared(&practice, resource, &holder).await? {
                    share::SharedPlan::Done(how) => {
                        tracing::info!(resource = %resource, how = %how, "organization-wide resource shared");
                        continue;
                    }
                    share::SharedPlan::Pull(claim) => claim,
                }
            };
            let base = scope.base_filter(resource);
            let span = match self.id_span(org, resource, &base).await {
                Ok((span, calls)) => {
                    report.count_calls += calls;
                    span
                }
                Err(error) if error.class() == ErrorClass::Auth => return Err(error.into()),
                Err(error)
                    if matches!(
                        error.class(),
                        ErrorClass::NotOffered | ErrorClass::Forbidden
                    ) =>
                {
                    if error.class() == ErrorClass::Forbidden {
                        forbidden += 1;
                    }
                    // Not offered (404) or not allowed (403) now: left
                    // unplanned and without a
                    // watermark, so it never looks synced. It does not hold
                    // the initial sync back; incremental cycles ask it
                    // again, and its first answer pulls its whole history.
                    if state.as_ref().is_none_or(|s| s.not_offered_since.is_none()) {
                        self.store
                            .set_not_offered(practice_id, t, Some(started))
                            .await?;
                    }
                    self.store
                        .set_last_error(practice_id, t, Some(&error.to_string()))
                        .await?;
                    continue;
                }
                Err(error) => {
                    self.store
                        .set_last_error(practice_id, t, Some(&error.to_string()))
                        .await?;
                    report.failures.push((resource, error.to_string()));
                    continue;
                }
            };
            if state.as_ref().and_then(|s| s.watermark).is_none() {
                // From before the first count (`started`): every change
                // from then on is picked up by the first incremental pass.
                self.store
                    .set_sync_phase(practice_id, t, SyncPhase::Initial)
                    .await?;
                self.store
                    .land_page(
                        practice_id,
                        t,
                        &[],
                        Checkpoint::Watermark {
                            watermark: watermark::first_watermark(started),
                        },
                    )
                    .await?;
            }
            if state
                .as_ref()
                .is_some_and(|s| s.not_offered_since.is_some())
            {
                self.store.set_not_offered(practice_id, t, None).await?;
            }
            let planned = plan::plan_resource(
                resource,
                &base,
                started,
                self.config.chunk_target,
                span,
                |filter| {
                    let org = org.clone();
                    async move { org.count(resource, &filter).await }
                },
            )
            .await;
            let planned = match planned {
                Ok(planned) => planned,
                Err(error) if error.class() == ErrorClass::Auth => return Err(error.into()),
                Err(error) => {
                    self.store
                        .set_last_error(practice_id, t, Some(&error.to_string()))
                        .await?;
                    report.failures.push((resource, error.to_string()));
                    continue;
                }
            };
            report.count_calls += u64::from(planned.count_calls);
            let chunks: Vec<NewChunk> = planned
                .chunks
                .iter()
                .map(|c| NewChunk {
                    table: t,
                    id_from: c.range.from as i64,
                    id_to: c.range.to as i64,
                    priority: c.priority,
                    filter: ChunkWindow::encode(c.window.as_ref()),
                    expected: i64::try_from(c.expected).ok(),
                })
                .collect();
            report.chunks_planned += self.store.create_chunks(practice_id, &chunks).await?;
            self.store
                .set_expected_count(practice_id, t, i64::try_from(planned.total).ok())
                .await?;
            self.store.set_last_error(practice_id, t, None).await?;
        }
        if let Some(claim) = claim.take() {
            claim.release().await;
        }
        if forbidden == Resource::ALL.len() {
            // Every resource refused: the integration is not enabled.
            return Err(SyncError::NotEnabled {
                practice_id: practice_id.to_owned(),
            });
        }
        Ok(report)
    }

    /// Where a resource's ids lie: its first id (the first keyset page of
    /// one id) and, when the resource will be split, its last (the last
    /// offset page of one id). Returns the span and the calls it took; the
    /// whole id space when the resource is small or empty.
    async fn id_span(
        &self,
        org: &OrgClient,
        resource: Resource,
        base: &ascend_client::Filter,
    ) -> Result<(IdRange, u64), ClientError> {
        let query = ListQuery {
            filter: base.clone(),
            page_size: Some(1),
            ids_only: true,
        };
        let first = org
            .fetch_page(resource, &query, &ascend_client::Cursor::Start)
            .await?;
        let total = first.total.unwrap_or(0);
        let Some(first_id) = first.records.first().map(|r| r.id.0) else {
            return Ok((IdRange::ALL, 1));
        };
        if total <= self.config.chunk_target {
            return Ok((IdRange::ALL, 1));
        }
        let Ok(last_page) = u32::try_from(total) else {
            return Ok((IdRange::ALL, 1));
        };
        let last = org
            .fetch_page(resource, &query, &ascend_client::Cursor::Page(last_page))
            .await?;
        let span = match last.records.last().map(|r| r.id.0) {
            Some(last_id) if last_id >= first_id && last_id < plan::ID_END => IdRange {
                from: first_id,
                to: last_id + 1,
            },
            _ => IdRange::ALL,
        };
        Ok((span, 2))
    }

    /// Pulls one chunk from its resume point to its end. Each page lands
    /// with the chunk's cursor in one transaction; a crash resumes after the
    /// last committed page.
    pub async fn run_chunk(
        &self,
        practice_id: &str,
        org: &OrgClient,
        chunk: &Chunk,
    ) -> Result<ChunkReport, SyncError> {
        let mut report = ChunkReport {
            chunk_id: chunk.chunk_id,
            ..ChunkReport::default()
        };
        let resource = chunk.table.resource();
        let scope = self.scope(practice_id).await?;
        let window = ChunkWindow::decode(&chunk.filter)?;
        let range = IdRange {
            from: chunk.id_from.max(0) as u64,
            to: chunk.id_to.max(0) as u64,
        };
        let mut filter = scope.base_filter(resource).and(range.filter());
        if let Some(window) = &window {
            filter = filter.and(window.filter());
        }
        let after = chunk
            .after_id
            .and_then(|id| u64::try_from(id).ok())
            .map(AscendId);
        let mut pager = org.keyset(resource, self.query(filter), after);
        let run_id = format!("{}-c{}", new_run_id(), chunk.chunk_id);
        // The next page is fetched while the previous one lands: the API's
        // latency and the database's overlap. Landings stay in page order.
        let mut landing: Option<Landing> = None;
        let result: Result<(), SyncError> = async {
            while let Some(page) = pager.next_page().await? {
                let done = pager.is_done();
                let checkpoint = Checkpoint::Chunk {
                    chunk_id: chunk.chunk_id,
                    after_id: chunk_cursor(&page, chunk.id_from, chunk.id_to),
                    done,
                };
                if let Some(previous) = landing.take() {
                    let outcome = self.finish_landing(previous).await?;
                    report.written += outcome.written;
                    report.quarantined += outcome.quarantined;
                }
                report.pages += 1;
                report.fetched += page.entries() as u64;
                report.done = done;
                landing = Some(self.start_landing(
                    practice_id,
                    page,
                    &run_id,
                    report.pages - 1,
                    checkpoint,
                ));
            }
            Ok(())
        }
        .await;
        // A page already fetched still lands, even when the next fetch
        // failed: its rows and cursor are good.
        let last = match landing.take() {
            Some(last) => self.finish_landing(last).await,
            None => Ok(LandOutcome::default()),
        };
        match (result, last) {
            (Ok(()), Ok(outcome)) => {
                report.written += outcome.written;
                report.quarantined += outcome.quarantined;
                Ok(report)
            }
            (Err(error), _) | (Ok(()), Err(error)) => Err(error),
        }
    }

    /// How far the practice's initial sync is: resources not planned yet,
    /// and chunks still pending. Both zero: complete
    /// (`sync_core::job::initial_sync_complete`).
    pub async fn initial_progress(&self, practice_id: &str) -> Result<(usize, usize), SyncError> {
        let states = self.store.list_sync_states(practice_id).await?;
        let unplanned = Resource::ALL
            .iter()
            .filter(|&&resource| {
                !states.iter().any(|s| {
                    s.table == table(resource)
                        && (s.expected_count.is_some() || s.not_offered_since.is_some())
                })
            })
            .count();
        let pending = self.store.pending_chunks(practice_id).await?.len();
        Ok((unplanned, pending))
    }

    /// One incremental pass over one resource: everything changed since the
    /// watermark (minus the overlap). The watermark moves in the
    /// transaction of the pass's last page.
    async fn incremental_resource(
        &self,
        practice_id: &str,
        org: &OrgClient,
        scope: Scope,
        resource: Resource,
        run_id: &str,
        reconcile: Option<sync_core::reconcile::Reconcile>,
    ) -> ResourceOutcome {
        let mut outcome = ResourceOutcome::new(resource);
        let result: Result<(), SyncError> = async {
            let t = table(resource);
            let state = self.store.get_sync_state(practice_id, t).await?;
            // A pass an earlier attempt began and did not finish goes on
            // from its last landed page, with its own start (which bounds
            // the watermark it will set) and what it had seen.
            let resumed = state.as_ref().and_then(|s| s.pass);
            let started = resumed.map_or_else(OffsetDateTime::now_utc, |p| p.started_at);
            if let Some(pass) = resumed {
                tracing::info!(
                    resource = %resource,
                    after_id = pass.after_id,
                    "continuing the incremental pass an earlier attempt began"
                );
            }
            // No watermark: the resource was not offered when the initial
            // sync was planned. Its first answer is a pull of its whole
            // history, whose last page sets its first watermark.
            let (current, filter) = match state.as_ref().and_then(|s| s.watermark) {
                Some(current) => (
                    current,
                    watermark::changed_since(scope.base_filter(resource), current),
                ),
                None => (
                    watermark::first_watermark(started),
                    scope.base_filter(resource),
                ),
            };
            let first_pull = state.as_ref().and_then(|s| s.watermark).is_none();
            let after = resumed
                .and_then(|p| p.after_id)
                .and_then(|id| u64::try_from(id).ok())
                .map(AscendId);
            let mut pager = org.keyset(resource, self.query(filter), after);
            let mut max_seen: Option<OffsetDateTime> = resumed.and_then(|p| p.max_seen);
            while let Some(page) = pager.next_page().await? {
                max_seen = page
                    .records
                    .iter()
                    .filter_map(|r| r.last_modified)
                    .chain(max_seen)
                    .max();
                let checkpoint = if pager.is_done() {
                    Checkpoint::Watermark {
                        watermark: if first_pull {
                            current
                        } else {
                            watermark::advance(current, max_seen, started)
                        },
                    }
                } else {
                    // How far the pass got, landed with the page: where
                    // the pager goes on (past records set aside too), or
                    // the largest id landed when that does not fit the
                    // store's ids.
                    let fits = |id: AscendId| i64::try_from(id.0).ok();
                    let after_id = pager
                        .after_id()
                        .and_then(fits)
                        .or_else(|| page.records.iter().map(|r| r.id).max().and_then(fits));
                    Checkpoint::Pass(PassCursor {
                        started_at: started,
                        after_id,
                        max_seen,
                    })
                };
                let fetched = page.entries() as u64;
                let landing =
                    self.start_landing(practice_id, page, run_id, outcome.pages, checkpoint);
                let landed = self.finish_landing(landing).await?;
                outcome.written += landed.written;
                outcome.quarantined += landed.quarantined;
                outcome.pages += 1;
                outcome.fetched += fetched;
            }
            self.store.set_last_error(practice_id, t, None).await?;
            self.store.set_passed_at(practice_id, t, started).await?;
            if state
                .as_ref()
                .is_some_and(|s| s.not_offered_since.is_some())
            {
                self.store.set_not_offered(practice_id, t, None).await?;
            }
            let retried = self
                .retry_quarantine(practice_id, resource, Some(started))
                .await?;
            outcome.written += retried.written;
            outcome.quarantined += retried.quarantined;
            outcome.released += retried.released;
            // Deletes: after the pass, so the watermark is the one it set
            // and what it landed is held.
            if let Some(plan) = reconcile {
                let done = self
                    .reconcile_resource(practice_id, org, scope, plan, run_id, outcome.pages)
                    .await?;
                outcome.deletes_captured = done.captured;
                outcome.written += done.recovered;
                outcome.recovered = done.recovered;
                outcome.pages += done.pages;
                outcome.reconciled = true;
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            let message = error.to_string();
            if error.class() == ErrorClass::NotOffered {
                // Not offered (404) now: not a failing resource for the
                // staleness rule; its first answer clears it.
                let since = OffsetDateTime::now_utc();
                let marked = match self
                    .store
                    .get_sync_state(practice_id, table(resource))
                    .await
                {
                    Ok(state)
                        if state
                            .as_ref()
                            .is_some_and(|s| s.not_offered_since.is_some()) =>
                    {
                        Ok(())
                    }
                    Ok(_) => {
                        self.store
                            .set_not_offered(practice_id, table(resource), Some(since))
                            .await
                    }
                    Err(error) => Err(error),
                };
                if let Err(store_error) = marked {
                    tracing::warn!(
                        message = "Could not record a resource not offered in its sync state.",
                        resource = %resource,
                        error = %store_error
                    );
                }
            }
            if let Err(store_error) = self
                .store
                .set_last_error(practice_id, table(resource), Some(&message))
                .await
            {
                // The run's history still records the resource's error.
                tracing::warn!(
                    message = "Could not record a resource's error in its sync state.",
                    resource = %resource,
                    error = %store_error
                );
            }
            outcome.retry_after = error.retry_after();
            outcome.error = Some((error.class(), message));
        }
        outcome
    }

    /// Tries to land a resource's quarantined records again (at most
    /// [`QUARANTINE_RETRY_LIMIT`], longest untried first; with
    /// `tried_before`, only those not tried since then, so a pass does not
    /// count twice what it just set aside): each raw text is
    /// read again by the client's reader and landed like a fetched record,
    /// without a checkpoint (newest-wins keeps a newer landed version).
    /// Those that land leave the quarantine; the others stay, their
    /// attempts counted up, with the reason of this try. So a fix on our
    /// side (a reader, the store) drains the quarantine by itself.
    pub async fn retry_quarantine(
        &self,
        practice_id: &str,
        resource: Resource,
        tried_before: Option<OffsetDateTime>,
    ) -> Result<Retried, SyncError> {
        let held = self
            .store
            .quarantined(
                practice_id,
                table(resource),
                tried_before,
                QUARANTINE_RETRY_LIMIT,
            )
            .await?;
        if held.is_empty() {
            return Ok(Retried::default());
        }
        let mut records = Vec::with_capacity(held.len());
        let mut unread: Vec<(Option<&str>, &str, String)> = Vec::new();
        for q in &held {
            match sync_core::replay::reread(resource, &q.raw) {
                Ok(record) => records.push(record),
                Err(reason) => unread.push((q.id.as_deref(), q.raw.as_str(), reason)),
            }
        }
        let bad: Vec<BadRecord<'_>> = unread
            .iter()
            .map(|(id, raw, reason)| BadRecord {
                id: *id,
                raw,
                reason,
            })
            .collect();
        let keys: Vec<&str> = held.iter().map(|q| q.key.as_str()).collect();
        let rows = landed_rows(&records);
        let outcome = self
            .store
            .land(
                practice_id,
                table(resource),
                PageRecords {
                    rows: &rows.rows,
                    bad: &rows.bad_records(&bad),
                    retried: &keys,
                },
                Checkpoint::None,
            )
            .await?;
        let released = (held.len() as u64).saturating_sub(outcome.quarantined);
        if released > 0 {
            tracing::info!(
                message = "Quarantined records landed when retried.",
                resource = %resource,
                released
            );
        }
        Ok(Retried {
            written: outcome.written,
            quarantined: outcome.quarantined,
            released,
        })
    }

    /// One incremental cycle over every resource, `concurrency` at once. A
    /// resource that fails does not stop the others. What the cycle's
    /// outcome means for the practice is the job rules'
    /// (`sync_core::job::conclude`).
    ///
    /// The organization-wide resources of a practice with siblings in its
    /// organization are the organization's (issue 14): pulled by this cycle
    /// only if it takes the organization's lease and they are due, and
    /// then copied to the siblings (`share.rs`); while another job holds
    /// the lease they are left to it.
    pub async fn run_incremental(
        &self,
        practice_id: &str,
        org: &OrgClient,
        asked: Asked,
    ) -> Result<RunReport, SyncError> {
        let practice = self.practice(practice_id).await?;
        let scope = Scope::of(&practice);
        let run_id = new_run_id();
        // Alone in its organization, a practice pulls everything itself,
        // without the organization's lease.
        let siblings = self
            .store
            .organization_members(&practice.organization_id, Table::Locations)
            .await?
            .iter()
            .any(|m| {
                m.practice_id != practice.practice_id
                    && matches!(
                        m.status,
                        PracticeStatus::InitialSync | PracticeStatus::Active
                    )
            });
        let lease = if siblings {
            share::OrgLease::try_take(
                &self.store,
                sync_core::share::org_lease_key(&practice.organization_id),
                &run_id,
            )
            .await?
        } else {
            None
        };
        // What the cycle reconciles for deletes: resources with a
        // watermark (their initial pull done) that are offered.
        let reconcilable: Vec<(Resource, Option<OffsetDateTime>)> = self
            .store
            .list_sync_states(practice_id)
            .await?
            .into_iter()
            .filter(|s| s.watermark.is_some() && s.not_offered_since.is_none())
            .map(|s| (s.table.resource(), s.reconciled_at))
            .collect();
        let plan = sync_core::reconcile::plan_cycle(
            &reconcilable,
            OffsetDateTime::now_utc(),
            self.config.reconcile,
        );
        let permits = Arc::new(Semaphore::new(self.config.concurrency.max(1)));
        let mut tasks = JoinSet::new();
        let mut slots: Vec<Option<ResourceOutcome>> = vec![None; Resource::ALL.len()];
        for (index, &resource) in Resource::ALL.iter().enumerate() {
            let shared = siblings && !Scope::is_location_scoped(resource);
            if shared && lease.is_none() {
                slots[index] = Some(ResourceOutcome {
                    shared: Some(
                        "pulled for the organization by another location's job now".to_owned(),
                    ),
                    ..ResourceOutcome::new(resource)
                });
                continue;
            }
            let (syncer, org, permits, run_id) =
                (self.clone(), org.clone(), permits.clone(), run_id.clone());
            let practice = practice.clone();
            let reconcile = plan.iter().find(|p| p.resource == resource).copied();
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let outcome = if shared {
                    syncer
                        .shared_resource(
                            &practice, &org, scope, resource, &run_id, reconcile, asked,
                        )
                        .await
                } else {
                    syncer
                        .incremental_resource(
                            &practice.practice_id,
                            &org,
                            scope,
                            resource,
                            &run_id,
                            reconcile,
                        )
                        .await
                };
                (index, outcome)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Ok((index, outcome)) = joined {
                slots[index] = Some(outcome);
            }
        }
        if let Some(lease) = lease {
            lease.release().await;
        }
        let resources: Vec<ResourceOutcome> = slots.into_iter().flatten().collect();
        let failed = resources.iter().filter(|r| r.error.is_some()).count();
        let quarantined: u64 = resources.iter().map(|r| r.quarantined).sum();
        let status = match failed {
            0 if quarantined == 0 => RunStatus::Succeeded,
            n if n > 0 && n == resources.len() => RunStatus::Failed,
            _ => RunStatus::Partial,
        };
        Ok(RunReport {
            run_id,
            status,
            resources,
        })
    }

    /// Rebuilds a practice's landed rows from the raw archive, without a
    /// single API call. Pages land in the order they were fetched; an older
    /// version never overwrites a newer one, so replaying over existing rows
    /// is safe.
    pub async fn replay(&self, practice_id: &str) -> Result<ReplayReport, SyncError> {
        let mut report = ReplayReport::default();
        for key in self.archive.list_pages(practice_id).await? {
            let Ok(resource) = key.resource.parse::<Resource>() else {
                tracing::warn!(message = "Archived page of an unknown resource skipped.", key = %key.object_key());
                continue;
            };
            let lines = self.archive.get_page(&key).await?;
            let page = sync_core::replay::records_from_archive(resource, &lines)?;
            let outcome = land_records(
                &self.store,
                practice_id,
                resource,
                &page.records,
                &page.rejected,
                &[],
                Checkpoint::None,
            )
            .await?;
            report.pages += 1;
            report.records += page.entries() as u64;
            report.written += outcome.written;
            report.quarantined += outcome.quarantined;
        }
        Ok(report)
    }
}

/// A page being archived and landed in a task of its own.
struct Landing {
    task: tokio::task::JoinHandle<Result<LandOutcome, SyncError>>,
    practice_id: String,
    resource: Resource,
    records: u64,
}

/// What a retry of the quarantine did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retried {
    /// Rows written.
    pub written: u64,
    /// Records set aside again.
    pub quarantined: u64,
    /// Records that left the quarantine.
    pub released: u64,
}

/// A page's records as rows to land, and those the store cannot hold as
/// rows (an id beyond `BIGINT`), to set aside.
struct Rows<'a> {
    rows: Vec<LandedRow<'a>>,
    /// (id, raw, reason) of the records that cannot be rows.
    unfit: Vec<(String, &'a str, String)>,
}

impl<'a> Rows<'a> {
    /// `bad` and the unfit records, as bad records.
    fn bad_records(&'a self, bad: &[BadRecord<'a>]) -> Vec<BadRecord<'a>> {
        bad.iter()
            .copied()
            .chain(self.unfit.iter().map(|(id, raw, reason)| BadRecord {
                id: Some(id.as_str()),
                raw,
                reason: reason.as_str(),
            }))
            .collect()
    }
}

fn landed_rows(records: &[ascend_client::Record]) -> Rows<'_> {
    let mut rows = Rows {
        rows: Vec::with_capacity(records.len()),
        unfit: Vec::new(),
    };
    for record in records {
        match i64::try_from(record.id.0) {
            Ok(id) => rows.rows.push(LandedRow {
                id,
                last_modified: record.last_modified,
                raw: record.raw.get(),
            }),
            // The client rejects such ids already; kept for any reader.
            Err(_) => rows.unfit.push((
                record.id.to_string(),
                record.raw.get(),
                format!(
                    "its id {} is larger than the store holds (BIGINT)",
                    record.id
                ),
            )),
        }
    }
    rows
}

/// Lands a page's records, setting aside in quarantine those that could not
/// be read (`rejected`) or cannot be rows, with `checkpoint`, in one
/// transaction.
async fn land_records(
    store: &Store,
    practice_id: &str,
    resource: Resource,
    records: &[ascend_client::Record],
    rejected: &[ascend_client::Rejected],
    retried: &[&str],
    checkpoint: Checkpoint,
) -> Result<LandOutcome, SyncError> {
    let rows = landed_rows(records);
    let bad: Vec<BadRecord<'_>> = rejected
        .iter()
        .map(|r| BadRecord {
            id: r.id.as_deref(),
            raw: r.raw.get(),
            reason: &r.reason,
        })
        .collect();
    let bad = rows.bad_records(&bad);
    Ok(store
        .land(
            practice_id,
            table(resource),
            PageRecords {
                rows: &rows.rows,
                bad: &bad,
                retried,
            },
            checkpoint,
        )
        .await?)
}

/// A chunk page's cursor: the largest id of the page, read or rejected,
/// that lies in the chunk's range (the store refuses a cursor outside it);
/// `None` leaves the cursor where it is.
fn chunk_cursor(page: &Page, id_from: i64, id_to: i64) -> Option<i64> {
    page.records
        .iter()
        .map(|r| r.id)
        .chain(page.rejected.iter().filter_map(|r| r.numeric_id))
        .filter_map(|id| i64::try_from(id.0).ok())
        .filter(|id| (id_from..id_to).contains(id))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_unique_and_safe_for_keys() {
        let a = new_run_id();
        let b = new_run_id();
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
    }
}
