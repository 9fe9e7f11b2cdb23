//! The worker's job loop: receive jobs from the queue, run each with its
//! lease, heartbeat and deadline, record every attempt in sync history, and
//! delete a message only once its work is committed.
//!
//! What happens to a delivery:
//!
//! - A body that does not parse, or of an unknown version or kind, goes to
//!   the dead letters at once with the reason (never retried, never lost).
//! - A job of a paused, removed or auth-failed practice, or a scheduled
//!   incremental job already covered by a newer sync, is recorded as
//!   `skipped` and deleted.
//! - A job whose lease another worker holds (a duplicate delivery) waits:
//!   its message comes back after the lease's remaining time.
//! - Success (or partial success: failed resources are retried by the next
//!   cycle) deletes the message. An auth failure marks the practice
//!   `auth_failed` (the sync engine does) and deletes the message: retrying
//!   cannot fix it. Any other failure leaves the message to come back after
//!   a backoff; past `max_receive_count` the queue moves it to the dead
//!   letters, and history says `dead_lettered`.
//! - On shutdown: no new receives; running jobs get the grace period to
//!   finish; the rest are cancelled (each page lands whole or not at all)
//!   and their messages released at once (visibility 0).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ascend_client::{AscendClient, OrgClient};
use queue::job::{Job, JobKind, Trigger};
use queue::{Delivery, Lane, Outgoing, Queue};
use store::{
    ForceDecision, NewRun, Practice, PracticeStatus, ResourceCounts, RunEnd, RunState, Store,
};
use sync_core::schedule;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::credentials::Credentials;
use crate::{RunStatus, SyncError, Syncer};

/// How a worker runs jobs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// A name for this process in leases and history (host and pid).
    pub worker_id: String,
    /// Jobs run at once by this process.
    pub concurrency: usize,
    /// The most one job may run before it is cancelled and retried.
    pub job_timeout: Duration,
    /// How long running jobs may take to finish after a shutdown signal.
    pub grace: Duration,
    /// How long a received message stays hidden; the heartbeat extends it
    /// every third of this while the job runs. Also the lease's lifetime.
    pub visibility: Duration,
    /// Long-poll wait of one receive.
    pub receive_wait: Duration,
    /// How long an initial sync's claim on its practice lasts after its
    /// last progress before the scheduler plans it again.
    pub initial_claim: Duration,
    /// The first retry's backoff (doubled per attempt, with jitter).
    pub first_backoff: Duration,
    /// The longest retry backoff.
    pub max_backoff: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            worker_id: default_worker_id(),
            concurrency: 4,
            job_timeout: Duration::from_secs(15 * 60),
            grace: Duration::from_secs(25),
            visibility: Duration::from_secs(120),
            receive_wait: Duration::from_secs(20),
            initial_claim: Duration::from_secs(30 * 60),
            first_backoff: schedule::FIRST_BACKOFF,
            max_backoff: schedule::MAX_BACKOFF,
        }
    }
}

/// `host-pid`, for leases and history.
pub fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".to_owned());
    format!("{host}-{}", std::process::id())
}

/// What a worker did until it stopped.
#[derive(Debug, Default, Clone, Copy)]
pub struct WorkerReport {
    pub received: u64,
    pub succeeded: u64,
    pub retried: u64,
    pub dead_lettered: u64,
    pub skipped: u64,
    /// Jobs cancelled by shutdown and released to the queue.
    pub released: u64,
}

#[derive(Default)]
struct Tally {
    received: AtomicU64,
    succeeded: AtomicU64,
    retried: AtomicU64,
    dead_lettered: AtomicU64,
    skipped: AtomicU64,
    released: AtomicU64,
}

impl Tally {
    fn report(&self) -> WorkerReport {
        WorkerReport {
            received: self.received.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            retried: self.retried.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            skipped: self.skipped.load(Ordering::Relaxed),
            released: self.released.load(Ordering::Relaxed),
        }
    }
}

/// A worker process's job loop. Stateless: everything it knows is in the
/// queue and the store.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<WorkerInner>,
}

struct WorkerInner {
    syncer: Syncer,
    queue: Queue,
    client: AscendClient,
    credentials: Arc<dyn Credentials>,
    config: WorkerConfig,
    tally: Tally,
}

/// How one job ended, for the message and history.
enum Disposition {
    /// Done: delete the message.
    Done(RunState),
    /// Not done: try again after a backoff (the queue dead-letters it past
    /// `max_receive_count`).
    Retry,
    /// Another worker holds the job's lease: look again after `after`.
    Busy { after: Duration },
}

impl Worker {
    pub fn new(
        syncer: Syncer,
        queue: Queue,
        client: AscendClient,
        credentials: Arc<dyn Credentials>,
        config: WorkerConfig,
    ) -> Worker {
        Worker {
            inner: Arc::new(WorkerInner {
                syncer,
                queue,
                client,
                credentials,
                config,
                tally: Tally::default(),
            }),
        }
    }

    fn store(&self) -> &Store {
        self.inner.syncer.store()
    }

    /// Receives and runs jobs until `shutdown` turns true; then stops
    /// receiving, gives running jobs the grace period and releases the rest.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> WorkerReport {
        let config = &self.inner.config;
        let slots = Arc::new(Semaphore::new(config.concurrency.max(1)));
        let mut running: JoinSet<()> = JoinSet::new();
        // Each running job's cancel switch, by message id.
        let mut cancels: HashMap<u64, (Delivery, watch::Sender<bool>)> = HashMap::new();
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let mut next_key = 0u64;
        loop {
            if *shutdown.borrow() {
                break;
            }
            while let Ok(key) = done_rx.try_recv() {
                cancels.remove(&key);
            }
            while running.try_join_next().is_some() {}
            let free = slots.available_permits();
            if free == 0 {
                tokio::select! {
                    _ = running.join_next() => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let received = tokio::select! {
                received = self.inner.queue.receive(free.min(10), config.receive_wait) => received,
                _ = shutdown.changed() => break,
            };
            let deliveries = match received {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    tracing::warn!(message = "Receiving jobs failed; trying again shortly.", %error);
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                        _ = shutdown.changed() => break,
                    }
                    continue;
                }
            };
            for delivery in deliveries {
                self.inner.tally.received.fetch_add(1, Ordering::Relaxed);
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    break;
                };
                let key = next_key;
                next_key += 1;
                let (cancel_tx, cancel_rx) = watch::channel(false);
                cancels.insert(key, (delivery.clone(), cancel_tx));
                let (worker, done_tx) = (self.clone(), done_tx.clone());
                running.spawn(async move {
                    worker.handle(delivery, cancel_rx).await;
                    drop(permit);
                    let _ = done_tx.send(key);
                });
            }
        }
        // Shutdown: finish within the grace period, then cancel the rest.
        let graceful = tokio::time::timeout(config.grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if graceful.is_err() {
            while let Ok(key) = done_rx.try_recv() {
                cancels.remove(&key);
            }
            for (_, (_, cancel)) in cancels.iter() {
                let _ = cancel.send(true);
            }
            // Cancelled jobs release their message and lease themselves;
            // give them a moment, then stop waiting.
            let _ = tokio::time::timeout(Duration::from_secs(5), async {
                while running.join_next().await.is_some() {}
            })
            .await;
            running.abort_all();
        }
        self.inner.tally.report()
    }

    /// Runs one delivery to its end: decode, guard, run, record, and settle
    /// the message.
    async fn handle(&self, delivery: Delivery, cancel: watch::Receiver<bool>) {
        let queue = &self.inner.queue;
        let job = match Job::decode(&delivery.body) {
            Ok(job) => job,
            Err(error) => {
                let reason = error.to_string();
                tracing::warn!(
                    message = "A job message could not be read; moved to the dead letters.",
                    message_id = %delivery.message_id,
                    error = %reason
                );
                self.dead_letter(&delivery, None, &reason).await;
                return;
            }
        };
        if job.kind == JobKind::WriteBack {
            let reason = "write-back jobs are not handled by this worker version; \
                          redrive them once write-back is deployed";
            self.dead_letter(&delivery, Some(&job), reason).await;
            return;
        }
        let lease_key = lease_key(&job);
        // Unique per attempt: two deliveries of one job to this process
        // must exclude each other too.
        static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
        let holder = format!(
            "{}/{}#{}",
            self.inner.config.worker_id,
            job.job_id,
            ATTEMPTS.fetch_add(1, Ordering::Relaxed)
        );
        let visibility = self.inner.config.visibility;
        let now = OffsetDateTime::now_utc();
        match self
            .store()
            .acquire_lease(&lease_key, &holder, time_span(visibility), now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                self.settle(&delivery, &job, Disposition::Busy { after: visibility })
                    .await;
                return;
            }
            Err(error) => {
                tracing::warn!(message = "Could not take a job's lease; it comes back later.", job_id = %job.job_id, %error);
                self.settle(&delivery, &job, Disposition::Retry).await;
                return;
            }
        }
        let run_id = format!("{}-a{}", job.job_id, delivery.receive_count);
        let started = OffsetDateTime::now_utc();
        let recorded = self
            .store()
            .start_run(&NewRun {
                run_id: run_id.clone(),
                job_id: job.job_id.clone(),
                practice_id: job.practice_id.clone(),
                kind: job.kind.as_str().to_owned(),
                trigger: job.trigger.as_str().to_owned(),
                attempt: i32::try_from(delivery.receive_count).unwrap_or(i32::MAX),
                worker: Some(self.inner.config.worker_id.clone()),
                started_at: started,
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(message = "Could not record a run in sync history; retrying the job later.", job_id = %job.job_id, %error);
            let _ = self.store().release_lease(&lease_key, &holder).await;
            self.settle(&delivery, &job, Disposition::Retry).await;
            return;
        }

        let heartbeat = self.heartbeat(&delivery, &lease_key, &holder);
        let work = self.execute(&job);
        let mut cancel = cancel;
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(self.inner.config.job_timeout, work) => match outcome {
                Ok(outcome) => Some(outcome),
                Err(_) => Some(Attempt::failed("timeout", format!(
                    "the job ran longer than its {} s limit; it resumes from its last committed page",
                    self.inner.config.job_timeout.as_secs()
                ))),
            },
            _ = heartbeat => Some(Attempt::failed("lease", "the job's lease was lost to another worker".to_owned())),
            _ = wait_true(&mut cancel) => None,
        };
        let Some(attempt) = outcome else {
            // Shutdown past the grace period: the job's committed pages stay;
            // the message is released for another worker at once.
            let end = attempt_end(
                RunState::Retrying,
                Attempt::failed(
                    "shutdown",
                    "the worker shut down; the job was released to another worker".to_owned(),
                ),
            );
            let _ = self.store().finish_run(&run_id, &end).await;
            let _ = self.store().release_lease(&lease_key, &holder).await;
            if let Err(error) = queue.set_visibility(&delivery, Duration::ZERO).await {
                tracing::warn!(message = "Could not release a job at shutdown; it comes back after its visibility timeout.", job_id = %job.job_id, %error);
            }
            self.inner.tally.released.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let disposition = attempt.disposition();
        let state = match &disposition {
            Disposition::Done(state) => *state,
            Disposition::Retry if delivery.receive_count >= queue.settings().max_receive_count => {
                RunState::DeadLettered
            }
            Disposition::Retry | Disposition::Busy { .. } => RunState::Retrying,
        };
        if let Err(error) = self
            .store()
            .finish_run(&run_id, &attempt_end(state, attempt))
            .await
        {
            tracing::warn!(message = "Could not finish a run in sync history.", job_id = %job.job_id, %error);
        }
        let _ = self.store().release_lease(&lease_key, &holder).await;
        if matches!(disposition, Disposition::Done(_))
            && matches!(job.kind, JobKind::Incremental | JobKind::Resync)
        {
            let _ = self
                .store()
                .release_inflight(&job.practice_id, &job.job_id)
                .await;
        }
        self.settle(&delivery, &job, disposition).await;
    }

    /// Renews the message's visibility and the lease every third of the
    /// visibility timeout; completes only if the lease is lost.
    async fn heartbeat(&self, delivery: &Delivery, lease_key: &str, holder: &str) {
        let visibility = self.inner.config.visibility;
        let every = (visibility / 3).max(Duration::from_millis(200));
        loop {
            tokio::time::sleep(every).await;
            if let Err(error) = self.inner.queue.set_visibility(delivery, visibility).await {
                tracing::warn!(message = "Could not extend a job's visibility.", message_id = %delivery.message_id, %error);
            }
            match self
                .store()
                .renew_lease(
                    lease_key,
                    holder,
                    time_span(visibility),
                    OffsetDateTime::now_utc(),
                )
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::warn!(message = "Could not renew a job's lease.", lease = %lease_key, %error);
                }
            }
        }
    }

    /// Does the job's work.
    async fn execute(&self, job: &Job) -> Attempt {
        let practice = match self.store().get_practice(&job.practice_id).await {
            Ok(Some(practice)) => practice,
            Ok(None) => {
                return Attempt::skipped(format!(
                    "practice {:?} is not registered",
                    job.practice_id
                ));
            }
            Err(error) => return Attempt::failed("store", error.to_string()),
        };
        match practice.status {
            PracticeStatus::Paused | PracticeStatus::Removed | PracticeStatus::AuthFailed => {
                let _ = self
                    .store()
                    .release_inflight(&job.practice_id, &job.job_id)
                    .await;
                return Attempt::skipped(format!("the practice is {}", practice.status));
            }
            PracticeStatus::InitialSync | PracticeStatus::Active => {}
        }
        if job.kind == JobKind::Incremental && job.trigger == Trigger::Schedule {
            // A scheduled job that no longer holds its practice's claim is
            // redundant when another live job holds it (a Force Sync Now
            // replaced it), or when a sync has succeeded since it was
            // enqueued. Otherwise (its claim simply expired in a backlog)
            // it still runs, so a long queue cannot starve a practice.
            let now = OffsetDateTime::now_utc();
            let claim = self
                .store()
                .inflight_job(&job.practice_id)
                .await
                .ok()
                .flatten();
            let ours = claim.as_ref().is_some_and(|(id, _)| id == &job.job_id);
            let other_live = claim
                .as_ref()
                .is_some_and(|(id, until)| id != &job.job_id && *until > now);
            let covered = practice
                .last_success_at
                .is_some_and(|at| at >= job.enqueued_at);
            if other_live || (!ours && covered) {
                return Attempt::skipped(
                    "another job of the practice holds its claim, or a newer sync covered it"
                        .to_owned(),
                );
            }
        }
        let connection = match self.inner.credentials.connection(&practice).await {
            Ok(connection) => connection,
            Err(error) if error.needs_reconnect => {
                // Like an auth failure: a person must reconnect the
                // practice; retrying cannot help.
                let _ = self
                    .store()
                    .mark_auth_failed(&job.practice_id, &error.to_string())
                    .await;
                return Attempt::failed("auth", error.to_string());
            }
            Err(error) => return Attempt::failed("credentials", error.to_string()),
        };
        let org = match self.inner.client.connect(connection) {
            Ok(org) => org,
            Err(error) => return Attempt::failed("config", error.to_string()),
        };
        let attempt = match job.kind {
            JobKind::Incremental | JobKind::Resync => self.incremental(job, &practice, &org).await,
            JobKind::InitialPlan => self.initial_plan(job, &practice, &org).await,
            JobKind::InitialChunk => self.initial_chunk(job, &org).await,
            JobKind::WriteBack => {
                Attempt::failed("unsupported", "write-back is not handled yet".to_owned())
            }
        };
        attempt.with_stats(&org)
    }

    async fn incremental(&self, job: &Job, practice: &Practice, org: &OrgClient) -> Attempt {
        if practice.status == PracticeStatus::InitialSync {
            return Attempt::skipped("the practice's initial sync has not finished".to_owned());
        }
        match self
            .inner
            .syncer
            .run_incremental(&job.practice_id, org)
            .await
        {
            Ok(report) => {
                let resources = report
                    .resources
                    .iter()
                    .map(|r| ResourceCounts {
                        resource: r.resource.name().to_owned(),
                        fetched: count(r.fetched),
                        written: count(r.written),
                        error_class: r.error.as_ref().map(|(class, _)| class.clone()),
                        error: r.error.as_ref().map(|(_, message)| message.clone()),
                    })
                    .collect::<Vec<_>>();
                let first_error = report.resources.iter().find_map(|r| r.error.clone());
                let mut attempt = Attempt {
                    state: match report.status {
                        RunStatus::Succeeded => RunState::Succeeded,
                        RunStatus::Partial => RunState::Partial,
                        RunStatus::Failed => RunState::Failed,
                    },
                    fetched: report.fetched(),
                    written: report.resources.iter().map(|r| r.written).sum(),
                    resources,
                    error: first_error,
                    stats: None,
                };
                if attempt
                    .error
                    .as_ref()
                    .is_some_and(|(class, _)| class == "auth")
                {
                    attempt.state = RunState::Failed;
                }
                attempt
            }
            Err(error) => Attempt::from_error(&error),
        }
    }

    async fn initial_plan(&self, job: &Job, practice: &Practice, org: &OrgClient) -> Attempt {
        if practice.status != PracticeStatus::InitialSync {
            return Attempt::skipped("the practice's initial sync is complete".to_owned());
        }
        let syncer = &self.inner.syncer;
        let report = match syncer.plan_initial(&job.practice_id, org).await {
            Ok(report) => report,
            Err(error) => return Attempt::from_error(&error),
        };
        if let Some((resource, message)) = report.failures.first() {
            // Planned resources keep their plan; the retry plans the rest
            // and only then enqueues the chunks, once.
            return Attempt::failed(
                "plan",
                format!(
                    "{} of {} resources could not be planned; first, {resource}: {message}",
                    report.failures.len(),
                    ascend_client::Resource::ALL.len()
                ),
            );
        }
        let chunks = match self.store().pending_chunks(&job.practice_id).await {
            Ok(chunks) => chunks,
            Err(error) => return Attempt::failed("store", error.to_string()),
        };
        if chunks.is_empty() {
            return match syncer.finish_initial(&job.practice_id).await {
                Ok(_) => {
                    let _ = self
                        .store()
                        .release_inflight(&job.practice_id, &job.job_id)
                        .await;
                    Attempt::succeeded(0, 0)
                }
                Err(error) => Attempt::from_error(&error),
            };
        }
        let now = OffsetDateTime::now_utc();
        let outgoing: Vec<Outgoing> = chunks
            .iter()
            .map(|chunk| Outgoing {
                body: Job {
                    job_id: format!("{}-c{}", job.job_id, chunk.chunk_id),
                    practice_id: job.practice_id.clone(),
                    kind: JobKind::InitialChunk,
                    trigger: job.trigger,
                    resource: Some(chunk.table.as_str().to_owned()),
                    chunk_id: Some(chunk.chunk_id),
                    range: None,
                    enqueued_at: now,
                }
                .encode(),
                lane: if job.trigger == Trigger::Force {
                    Lane::Priority
                } else {
                    Lane::Standard
                },
                delay: Duration::ZERO,
            })
            .collect();
        if let Err(error) = self.inner.queue.send(&outgoing).await {
            return Attempt::failed("queue", error.to_string());
        }
        let until = now + self.inner.config.initial_claim;
        let _ = self
            .store()
            .extend_inflight(&job.practice_id, &job.job_id, until)
            .await;
        Attempt::succeeded(0, 0)
    }

    async fn initial_chunk(&self, job: &Job, org: &OrgClient) -> Attempt {
        let Some(chunk_id) = job.chunk_id else {
            return Attempt::failed("job", "an initial_chunk job without a chunk id".to_owned());
        };
        let chunk = match self.store().get_chunk(chunk_id).await {
            Ok(Some(chunk)) if chunk.practice_id == job.practice_id => chunk,
            Ok(_) => {
                return Attempt::skipped(format!(
                    "chunk {chunk_id} does not exist for this practice (replanned?)"
                ));
            }
            Err(error) => return Attempt::failed("store", error.to_string()),
        };
        let syncer = &self.inner.syncer;
        let mut attempt = if chunk.status == store::ChunkStatus::Done {
            Attempt::succeeded(0, 0)
        } else {
            match syncer.run_chunk(&job.practice_id, org, &chunk).await {
                Ok(report) => Attempt::succeeded(report.fetched, report.written),
                Err(error) => return Attempt::from_error(&error),
            }
        };
        attempt.resources = vec![ResourceCounts {
            resource: chunk.table.as_str().to_owned(),
            fetched: count(attempt.fetched),
            written: count(attempt.written),
            error_class: None,
            error: None,
        }];
        // The practice's claim lives while its chunks progress; the last
        // chunk to finish turns the practice active and frees the claim.
        match syncer.finish_initial(&job.practice_id).await {
            Ok(true) => {
                if let Ok(Some((claim, _))) = self.store().inflight_job(&job.practice_id).await {
                    let _ = self
                        .store()
                        .release_inflight(&job.practice_id, &claim)
                        .await;
                }
            }
            Ok(false) => {
                if let Ok(Some((claim, _))) = self.store().inflight_job(&job.practice_id).await {
                    let until = OffsetDateTime::now_utc() + self.inner.config.initial_claim;
                    let _ = self
                        .store()
                        .extend_inflight(&job.practice_id, &claim, until)
                        .await;
                }
            }
            Err(error) => return Attempt::from_error(&error),
        }
        attempt
    }

    /// Moves a message to the dead letters with its reason, and records it.
    async fn dead_letter(&self, delivery: &Delivery, job: Option<&Job>, reason: &str) {
        match self.inner.queue.dead_letter(delivery, reason).await {
            Ok(()) => {
                self.inner
                    .tally
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(job) = job {
                    let _ = self
                        .store()
                        .mark_job_dead_lettered(&job.job_id, Some(reason))
                        .await;
                }
            }
            Err(error) => {
                // It stays on the queue and comes back; after
                // max_receive_count the queue dead-letters it itself.
                tracing::warn!(message = "Could not move a message to the dead letters.", message_id = %delivery.message_id, %error);
            }
        }
    }

    /// Deletes, delays or leaves the message as the job's end says.
    async fn settle(&self, delivery: &Delivery, job: &Job, disposition: Disposition) {
        let queue = &self.inner.queue;
        let tally = &self.inner.tally;
        let result = match disposition {
            Disposition::Done(state) => {
                if state == RunState::Skipped {
                    tally.skipped.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.succeeded.fetch_add(1, Ordering::Relaxed);
                }
                queue.delete(delivery).await
            }
            Disposition::Retry => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                if delivery.receive_count >= queue.settings().max_receive_count {
                    tally.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                let config = &self.inner.config;
                let backoff = schedule::retry_backoff(
                    delivery.receive_count,
                    &job.job_id,
                    config.first_backoff,
                    config.max_backoff,
                );
                queue.set_visibility(delivery, backoff).await
            }
            Disposition::Busy { after } => queue.set_visibility(delivery, after).await,
        };
        if let Err(error) = result {
            tracing::warn!(message = "Could not settle a job's message; it comes back after its visibility timeout.", job_id = %job.job_id, %error);
        }
    }
}

/// Enqueues a Force Sync Now for a practice, folding into a running sync.
pub async fn force_sync(
    store: &Store,
    queue: &Queue,
    practice_id: &str,
    trigger: Trigger,
    claim_for: Duration,
) -> Result<ForceDecision, ForceError> {
    let now = OffsetDateTime::now_utc();
    let job_id = format!("force-{}-{}", crate::sync::new_run_id(), practice_id);
    let decision = store
        .request_force(practice_id, now, &job_id, time_span(claim_for))
        .await?;
    if let ForceDecision::Enqueue { job_id } = &decision {
        let practice = store.get_practice(practice_id).await?;
        let kind = match practice.map(|p| p.status) {
            Some(PracticeStatus::InitialSync) => JobKind::InitialPlan,
            _ => JobKind::Incremental,
        };
        let job = Job {
            job_id: job_id.clone(),
            practice_id: practice_id.to_owned(),
            kind,
            trigger,
            resource: None,
            chunk_id: None,
            range: None,
            enqueued_at: now,
        };
        let sent = queue
            .send(&[Outgoing {
                body: job.encode(),
                lane: Lane::Priority,
                delay: Duration::ZERO,
            }])
            .await;
        if let Err(error) = sent {
            let _ = store.release_inflight(practice_id, job_id).await;
            return Err(error.into());
        }
    }
    Ok(decision)
}

/// Why a Force Sync Now could not be enqueued.
#[derive(Debug, thiserror::Error)]
pub enum ForceError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("queue: {0}; nothing was enqueued, try again")]
    Queue(#[from] queue::QueueError),
}

/// The lease that makes duplicate deliveries of a job harmless: one per
/// practice for the jobs that touch its watermarks and plan, one per
/// chunk for the initial sync's parallel chunks.
fn lease_key(job: &Job) -> String {
    match (job.kind, job.chunk_id) {
        (JobKind::InitialChunk, Some(chunk_id)) => store::chunk_lease_key(chunk_id),
        _ => store::practice_lease_key(&job.practice_id),
    }
}

/// A count as the store keeps it (saturating).
fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A std duration as the store's (saturating).
fn time_span(d: Duration) -> time::Duration {
    time::Duration::try_from(d).unwrap_or(time::Duration::MAX)
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow() {
            return;
        }
        if rx.changed().await.is_err() {
            // The sender is gone: never cancelled.
            std::future::pending::<()>().await;
        }
    }
}

/// The result of one attempt, before it is recorded.
struct Attempt {
    state: RunState,
    fetched: u64,
    written: u64,
    resources: Vec<ResourceCounts>,
    error: Option<(String, String)>,
    stats: Option<ascend_client::Stats>,
}

impl Attempt {
    fn succeeded(fetched: u64, written: u64) -> Attempt {
        Attempt {
            state: RunState::Succeeded,
            fetched,
            written,
            resources: Vec::new(),
            error: None,
            stats: None,
        }
    }

    fn skipped(why: String) -> Attempt {
        Attempt {
            state: RunState::Skipped,
            error: Some(("skipped".to_owned(), why)),
            ..Attempt::succeeded(0, 0)
        }
    }

    fn failed(class: &str, message: String) -> Attempt {
        Attempt {
            state: RunState::Failed,
            error: Some((class.to_owned(), message)),
            ..Attempt::succeeded(0, 0)
        }
    }

    fn from_error(error: &SyncError) -> Attempt {
        match error {
            SyncError::NotSyncable { .. } => Attempt::skipped(error.to_string()),
            _ => Attempt::failed(error.class(), error.to_string()),
        }
    }

    fn with_stats(mut self, org: &OrgClient) -> Attempt {
        self.stats = Some(org.stats());
        self
    }

    /// What to do with the message.
    fn disposition(&self) -> Disposition {
        match self.state {
            RunState::Succeeded | RunState::Partial | RunState::Skipped => {
                Disposition::Done(self.state)
            }
            // Auth: a person must act (the practice is auth_failed and
            // no longer scheduled); retrying cannot help.
            RunState::Failed
                if self
                    .error
                    .as_ref()
                    .is_some_and(|(class, _)| class == "auth") =>
            {
                Disposition::Done(RunState::Failed)
            }
            _ => Disposition::Retry,
        }
    }
}

fn attempt_end(state: RunState, attempt: Attempt) -> RunEnd {
    let stats = attempt.stats.unwrap_or_default();
    let (error_class, error_message) = match attempt.error {
        Some((class, message)) => (Some(class), Some(message)),
        None => (None, None),
    };
    RunEnd {
        status: state,
        ended_at: OffsetDateTime::now_utc(),
        resources: attempt.resources,
        fetched: count(attempt.fetched),
        written: count(attempt.written),
        api_calls: count(stats.calls),
        bytes: count(stats.bytes),
        error_class,
        error_message,
    }
}
