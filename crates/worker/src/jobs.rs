//! The worker's job loop: receive jobs from the queue, run each with its
//! lease, heartbeat and deadline, record every attempt in sync history, and
//! delete a message only once its work is committed.
//!
//! The loop decides nothing: the rules are `sync_core::job`'s (whether a
//! job runs, how it ends, what it changes, what becomes of its message).
//! Here they are executed, in this order, for each delivery:
//!
//! 1. Decode; a body that is not a job goes to the dead letters with the
//!    reason ([`job::poison`]).
//! 2. Take the job's lease; held by another worker: look again later
//!    ([`job::busy`]).
//! 3. Record the attempt in sync history (`running`).
//! 4. Read the practice and its claim; [`job::admit`] may skip the job.
//! 5. Open the practice's credentials, run the step (plan, chunk or
//!    incremental cycle) under the job's deadline, with a heartbeat that
//!    renews the message's visibility and the lease together.
//! 6. [`job::conclude`]: send the plan's chunks (if any), then end the job
//!    in one transaction ([`store::Store::end_job`]: the run finished, the
//!    lease and claim released or extended, the effects); only after that
//!    commit is the message settled. A failed commit leaves the message to
//!    come back, so history never loses an attempt.
//!
//! On shutdown: no new receives; running jobs get the grace period to
//! finish; the rest are cancelled (each page lands whole or not at all),
//! recorded `retrying` and their messages released at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ascend_client::{AscendClient, ErrorClass, OrgClient};
use queue::{Delivery, Job, Queue};
use store::{AuthFailure, JobEnd, NewRun, ResourceCounts, RunEnd, Store};
use sync_core::job::{self, Delivered, Outcome, PendingChunk, PracticeView, Settle, Timing};
use sync_core::schedule;
use time::OffsetDateTime;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::Syncer;
use crate::credentials::Credentials;

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
    /// A write-back item's first retry delay (doubled per attempt).
    pub writeback_retry_base: Duration,
    /// Where each attempt's metrics go (EMF lines; off by default).
    pub metrics: telemetry::Sink,
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
            writeback_retry_base: sync_core::writeback::RETRY_BASE,
            metrics: telemetry::Sink::Off,
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

    /// Runs one delivery to its end, inside the job's span: every line it
    /// logs carries `practice_id`, `job_id`, `kind` and `attempt`.
    async fn handle(&self, delivery: Delivery, cancel: watch::Receiver<bool>) {
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
        let span = tracing::info_span!(
            "job",
            practice_id = %job.practice_id(),
            job_id = %job.job_id(),
            kind = job.kind().as_str(),
            attempt = delivery.receive_count,
        );
        self.run_job(job, delivery, cancel).instrument(span).await;
    }

    fn timing(&self) -> Timing {
        let config = &self.inner.config;
        Timing {
            first_backoff: config.first_backoff,
            max_backoff: config.max_backoff,
            initial_claim: config.initial_claim,
        }
    }

    async fn run_job(&self, job: Job, delivery: Delivery, mut cancel: watch::Receiver<bool>) {
        let queue = &self.inner.queue;
        let config = &self.inner.config;
        let delivered = Delivered {
            receive_count: delivery.receive_count,
            max_receive_count: queue.settings().max_receive_count,
        };
        let lease_key = lease_key(&job);
        // Unique per attempt: two deliveries of one job to this process
        // must exclude each other too.
        static ATTEMPTS: AtomicU64 = AtomicU64::new(0);
        let holder = format!(
            "{}/{}#{}",
            config.worker_id,
            job.job_id(),
            ATTEMPTS.fetch_add(1, Ordering::Relaxed)
        );
        let now = OffsetDateTime::now_utc();
        match self
            .store()
            .acquire_lease(&lease_key, &holder, time_span(config.visibility), now)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(message = "Another worker holds the job's lease; it comes back later.", lease = %lease_key);
                self.settle(&delivery, &job, job::busy(delivered, config.visibility))
                    .await;
                return;
            }
            Err(error) => {
                tracing::warn!(message = "Could not take the job's lease; it comes back later.", error = %error);
                self.settle(
                    &delivery,
                    &job,
                    job::not_started(&job, delivered, self.timing()),
                )
                .await;
                return;
            }
        }
        let run_id = format!("{}-a{}", job.job_id(), delivery.receive_count);
        let recorded = self
            .store()
            .start_run(&NewRun {
                run_id: run_id.clone(),
                job_id: job.job_id().to_owned(),
                practice_id: job.practice_id().to_owned(),
                kind: job.kind().as_str().to_owned(),
                trigger: job.meta().trigger.as_str().to_owned(),
                attempt: i32::try_from(delivery.receive_count).unwrap_or(i32::MAX),
                worker: Some(config.worker_id.clone()),
                started_at: OffsetDateTime::now_utc(),
            })
            .await;
        if let Err(error) = recorded {
            tracing::warn!(message = "Could not record the run in sync history; the job comes back later.", error = %error);
            if let Err(error) = self.store().release_lease(&lease_key, &holder).await {
                tracing::warn!(message = "Could not release the job's lease; it expires by itself.", error = %error);
            }
            self.settle(
                &delivery,
                &job,
                job::not_started(&job, delivered, self.timing()),
            )
            .await;
            return;
        }

        let begun = std::time::Instant::now();
        let heartbeat = self.heartbeat(&delivery, &lease_key, &holder);
        let work = self.execute(&job);
        let step = tokio::select! {
            step = tokio::time::timeout(config.job_timeout, work) => match step {
                Ok(step) => Some(step),
                Err(_) => Some(Step::failed(ErrorClass::Timeout, format!(
                    "the job ran longer than its {} s limit; it resumes from its last committed page",
                    config.job_timeout.as_secs()
                ))),
            },
            _ = heartbeat => Some(Step::failed(ErrorClass::Lease, "the job's lease was lost to another worker".to_owned())),
            _ = wait_true(&mut cancel) => None,
        };
        let now = OffsetDateTime::now_utc();
        let (decision, step) = match step {
            // Shutdown past the grace period: the job's committed pages
            // stay; the message is released for another worker at once.
            None => (
                job::shut_down(),
                Step::failed(ErrorClass::Shutdown, String::new()),
            ),
            Some(step) => {
                let outcome = job::throttled(step.outcome.clone(), step.retry_after);
                let mut decision = job::conclude(&job, outcome, delivered, self.timing(), now);
                if !decision.effects.enqueue.is_empty()
                    && let Err(message) = self.send_jobs(&decision.effects.enqueue, now).await
                {
                    decision = job::conclude(
                        &job,
                        Outcome::Failed {
                            class: ErrorClass::Queue,
                            message,
                        },
                        delivered,
                        self.timing(),
                        now,
                    );
                }
                (decision, step)
            }
        };
        let (error_class, error_message) = match &decision.error {
            Some((class, message)) => (Some(class.as_str().to_owned()), Some(message.clone())),
            None => (None, None),
        };
        let stats = step.stats.unwrap_or_default();
        let attempt = telemetry::Attempt {
            practice_id: job.practice_id().to_owned(),
            seconds: begun.elapsed().as_secs_f64(),
            written: step.written,
            failed: decision.run.is_failure(),
            api_requests: stats.calls,
            api_throttled: stats.rate_limited,
            set_aside: step
                .resources
                .iter()
                .map(|r| u64::try_from(r.quarantined).unwrap_or(0))
                .sum(),
            deletes_captured: step
                .resources
                .iter()
                .map(|r| u64::try_from(r.deletes_captured).unwrap_or(0))
                .sum(),
            dead_lettered: matches!(decision.settle, Settle::DeadLetter { .. }),
            writebacks: match &step.outcome {
                Outcome::Writeback { tally, .. } => {
                    Some((tally.sent + tally.found, tally.retrying + tally.dead))
                }
                _ => None,
            },
        };
        let end = JobEnd {
            practice_id: job.practice_id().to_owned(),
            job_id: job.job_id().to_owned(),
            run: Some((
                run_id,
                RunEnd {
                    status: decision.run,
                    ended_at: now,
                    resources: step.resources,
                    fetched: count(step.fetched),
                    written: count(step.written),
                    api_calls: count(stats.calls),
                    bytes: count(stats.bytes),
                    error_class,
                    error_message,
                },
            )),
            lease: Some((lease_key, holder)),
            claim: decision.effects.claim,
            auth_failed: decision.effects.auth_failed.map(|detail| AuthFailure {
                detail,
                credential_version: step.credential_version.unwrap_or(-1),
                actor: format!("worker:{}", config.worker_id),
            }),
            success_at: decision.effects.success.then_some(now),
            finish_initial: decision.effects.finish_initial,
            unqueue_chunk: decision.effects.unqueue_chunk,
            release_writeback_claim: matches!(job, Job::Writeback { .. })
                && matches!(decision.effects.claim, model::ClaimChange::Release(_)),
        };
        match self.store().end_job(&end).await {
            Ok(marked) => {
                if !job.practice_id().is_empty() {
                    config.metrics.emit(&attempt.document(now));
                }
                if marked {
                    tracing::warn!(
                        message = "Ascend refused the practice's credentials; it is auth_failed until someone reconnects it."
                    );
                }
                let tally = &self.inner.tally;
                match (&decision.settle, decision.run) {
                    (Settle::Release, _) => tally.released.fetch_add(1, Ordering::Relaxed),
                    (Settle::Delete, store::RunState::Skipped) => {
                        tally.skipped.fetch_add(1, Ordering::Relaxed)
                    }
                    (Settle::Delete, _) => tally.succeeded.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                self.settle(&delivery, &job, decision.settle).await;
            }
            Err(error) => {
                // The message comes back when its visibility runs out, and
                // the next attempt is recorded.
                tracing::error!(message = "Could not record the job's end; its message is left to come back.", error = %error);
                self.settle(&delivery, &job, job::end_not_recorded()).await;
            }
        }
    }

    /// Sends jobs (an initial sync's chunks) and records them queued.
    async fn send_jobs(&self, jobs: &[Job], now: OffsetDateTime) -> Result<(), String> {
        let outgoing: Vec<_> = jobs
            .iter()
            .map(|job| job.outgoing(Duration::ZERO))
            .collect();
        self.inner
            .queue
            .send(&outgoing)
            .await
            .map_err(|error| format!("the initial sync's chunks could not be enqueued: {error}"))?;
        let chunk_ids: Vec<i64> = jobs
            .iter()
            .filter_map(|job| match job {
                Job::InitialChunk { chunk_id, .. } => Some(*chunk_id),
                _ => None,
            })
            .collect();
        // Sent but not marked: a later plan sends them again, and the
        // duplicates are harmless (chunk leases, resume cursors).
        self.store()
            .mark_chunks_queued(&chunk_ids, now)
            .await
            .map_err(|error| format!("the chunks were enqueued but not marked queued: {error}"))
    }

    /// Renews the message's visibility and the lease every third of the
    /// visibility timeout, both at once, each within a short timeout (a
    /// slow queue call must not delay the lease past its end); completes
    /// only if the lease is lost.
    async fn heartbeat(&self, delivery: &Delivery, lease_key: &str, holder: &str) {
        let visibility = self.inner.config.visibility;
        let every = (visibility / 3).max(Duration::from_millis(200));
        let limit = every.min(Duration::from_secs(10));
        loop {
            tokio::time::sleep(every).await;
            let (extended, renewed) = tokio::join!(
                tokio::time::timeout(limit, self.inner.queue.set_visibility(delivery, visibility)),
                tokio::time::timeout(
                    limit,
                    self.store().renew_lease(
                        lease_key,
                        holder,
                        time_span(visibility),
                        OffsetDateTime::now_utc(),
                    )
                ),
            );
            match extended {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::warn!(message = "Could not extend the job's visibility.", error = %error);
                }
                Err(_) => {
                    tracing::warn!(
                        message = "Extending the job's visibility timed out.",
                        limit_ms = limit.as_millis() as u64
                    );
                }
            }
            match renewed {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => return,
                Ok(Err(error)) => {
                    tracing::warn!(message = "Could not renew the job's lease.", error = %error);
                }
                Err(_) => {
                    tracing::warn!(
                        message = "Renewing the job's lease timed out.",
                        limit_ms = limit.as_millis() as u64
                    );
                }
            }
        }
    }

    /// Does the job's step and says what it answered.
    async fn execute(&self, job: &Job) -> Step {
        let store = self.store();
        let practice = match store.get_practice(job.practice_id()).await {
            Ok(practice) => practice,
            Err(error) => return Step::failed(ErrorClass::Store, error.to_string()),
        };
        let claim = match &practice {
            Some(p) => match store.inflight_job(&p.practice_id).await {
                Ok(claim) => claim.map(|(job_id, until)| job::Claim { job_id, until }),
                Err(error) => return Step::failed(ErrorClass::Store, error.to_string()),
            },
            None => None,
        };
        let view = practice.as_ref().map(|p| PracticeView {
            status: p.status,
            last_success_at: p.last_success_at,
            claim,
        });
        let now = OffsetDateTime::now_utc();
        if let job::Admission::Skip {
            reason,
            release_claim,
        } = job::admit(job, view.as_ref(), now)
        {
            return Step::of(Outcome::Skipped {
                reason,
                release_claim,
            });
        }
        let Some(practice) = practice else {
            return Step::failed(ErrorClass::State, "the practice vanished".to_owned());
        };
        let opened = match self.inner.credentials.connection(&practice).await {
            Ok(opened) => opened,
            Err(error) => {
                // A sealed value that does not open for its practice, or
                // none at all: like a refusal, a person must reconnect it.
                let class = if error.needs_reconnect {
                    ErrorClass::Auth
                } else {
                    ErrorClass::Credentials
                };
                let mut step = Step::failed(class, error.to_string());
                step.credential_version = Some(practice.credential_version);
                return step;
            }
        };
        let version = opened.version;
        let org = match self.inner.client.connect(opened.connection) {
            Ok(org) => org,
            Err(error) => return Step::failed(ErrorClass::Config, error.to_string()),
        };
        let mut step = match job {
            Job::Incremental { .. } => self.incremental(job, &org).await,
            Job::InitialPlan { .. } => self.initial_plan(job, &org).await,
            Job::InitialChunk { chunk_id, .. } => self.initial_chunk(job, *chunk_id, &org).await,
            Job::Writeback { .. } => self.writeback(&practice, &org).await,
        };
        step.stats = Some(org.stats());
        step.credential_version = Some(version);
        step
    }

    async fn incremental(&self, job: &Job, org: &OrgClient) -> Step {
        let report = match self
            .inner
            .syncer
            .run_incremental(
                job.practice_id(),
                org,
                crate::sync::Asked {
                    at: job.meta().enqueued_at,
                    scheduled: job.meta().trigger == model::Trigger::Schedule,
                },
            )
            .await
        {
            Ok(report) => report,
            Err(error) => return Step::from_error(&error),
        };
        let retry_after = report.resources.iter().filter_map(|r| r.retry_after).max();
        let resources = report
            .resources
            .iter()
            .map(|r| ResourceCounts {
                resource: r.resource.name().to_owned(),
                fetched: count(r.fetched),
                written: count(r.written),
                quarantined: count(r.quarantined),
                deletes_captured: count(r.deletes_captured),
                recovered: count(r.recovered),
                shared: r.shared.clone(),
                error_class: r.error.as_ref().map(|(class, _)| class.as_str().to_owned()),
                error: r.error.as_ref().map(|(_, message)| message.clone()),
            })
            .collect();
        let quarantined = report.quarantined();
        Step {
            fetched: report.fetched(),
            written: report.resources.iter().map(|r| r.written).sum(),
            resources,
            retry_after,
            ..Step::of(Outcome::Incremental {
                resources: report
                    .resources
                    .into_iter()
                    .map(|r| (r.resource, r.error))
                    .collect(),
                quarantined,
            })
        }
    }

    async fn writeback(&self, practice: &model::Practice, org: &OrgClient) -> Step {
        let retry_base = self.inner.config.writeback_retry_base;
        match crate::writeback::run(self.store(), org, practice, retry_base).await {
            Ok((outcome, written)) => {
                let mut step = Step::of(outcome);
                step.written = written;
                step
            }
            Err(error) => Step::failed(ErrorClass::Store, error.to_string()),
        }
    }

    async fn initial_plan(&self, job: &Job, org: &OrgClient) -> Step {
        let practice_id = job.practice_id();
        let report = match self.inner.syncer.plan_initial(practice_id, org).await {
            Ok(report) => report,
            Err(error) => return Step::from_error(&error),
        };
        let chunks = match self.store().pending_chunks(practice_id).await {
            Ok(chunks) => chunks,
            Err(error) => return Step::failed(ErrorClass::Store, error.to_string()),
        };
        let now = OffsetDateTime::now_utc();
        let queued_since = now - time_span(sync_core::schedule::CHUNK_QUEUED_FOR);
        Step::of(Outcome::Planned {
            unplanned: report.failures,
            pending: chunks
                .iter()
                .map(|chunk| PendingChunk {
                    chunk_id: chunk.chunk_id,
                    resource: chunk.table.resource(),
                    queued: chunk.queued_at.is_some_and(|at| at > queued_since),
                })
                .collect(),
        })
    }

    async fn initial_chunk(&self, job: &Job, chunk_id: i64, org: &OrgClient) -> Step {
        let practice_id = job.practice_id();
        let chunk = match self.store().get_chunk(chunk_id).await {
            Ok(Some(chunk)) if chunk.practice_id == practice_id => chunk,
            Ok(_) => {
                return Step::of(Outcome::Skipped {
                    reason: format!(
                        "chunk {chunk_id} does not exist for this practice (replanned?)"
                    ),
                    release_claim: false,
                });
            }
            Err(error) => return Step::failed(ErrorClass::Store, error.to_string()),
        };
        let syncer = &self.inner.syncer;
        if chunk.filter == store::SHARE_CHUNK && chunk.status != store::ChunkStatus::Done {
            return self.share_chunk(job, &chunk, org).await;
        }
        let (fetched, written, quarantined) = if chunk.status == store::ChunkStatus::Done {
            (0, 0, 0)
        } else {
            match syncer.run_chunk(practice_id, org, &chunk).await {
                Ok(report) => (report.fetched, report.written, report.quarantined),
                Err(error) => return Step::from_error(&error),
            }
        };
        // A finished pull of an organization-wide resource goes to the
        // practices of the organization that wait for it (issue 14).
        let wake = match syncer
            .share_with_waiters(practice_id, chunk.table.resource(), job.job_id())
            .await
        {
            Ok(woken) => woken
                .into_iter()
                .map(|w| {
                    Job::chunk(
                        &model::JobMeta {
                            job_id: format!("{}-{}", job.job_id(), w.practice_id),
                            practice_id: w.practice_id,
                            trigger: job.meta().trigger,
                            enqueued_at: job.meta().enqueued_at,
                        },
                        w.resource,
                        w.chunk_id,
                        OffsetDateTime::now_utc(),
                    )
                })
                .collect(),
            Err(error) => {
                // The waiting practices' own jobs copy it.
                tracing::warn!(message = "Could not share a finished pull with the practices waiting for it.", error = %error);
                Vec::new()
            }
        };
        let (unplanned, pending) = match syncer.initial_progress(practice_id).await {
            Ok(progress) => progress,
            Err(error) => return Step::from_error(&error),
        };
        Step {
            fetched,
            written,
            resources: vec![ResourceCounts {
                resource: chunk.table.as_str().to_owned(),
                fetched: count(fetched),
                written: count(written),
                quarantined: count(quarantined),
                error_class: None,
                error: None,
                ..ResourceCounts::default()
            }],
            ..Step::of(Outcome::ChunkDone {
                unplanned,
                pending,
                quarantined,
                wake,
            })
        }
    }

    /// A share chunk (issue 14): the practice copies an organization-wide
    /// resource from a sibling's pull instead of pulling it.
    async fn share_chunk(&self, job: &Job, chunk: &store::Chunk, org: &OrgClient) -> Step {
        let practice_id = job.practice_id();
        let syncer = &self.inner.syncer;
        let resource = chunk.table.resource();
        let shared = match syncer
            .run_share_chunk(practice_id, chunk, job.job_id())
            .await
        {
            Ok(shared) => shared,
            Err(error) => return Step::from_error(&error),
        };
        let (written, note) = match shared {
            crate::sync::ShareChunk::Copied(done) => (
                done.rows,
                format!("copied from the organization's pull ({} rows)", done.rows),
            ),
            crate::sync::ShareChunk::Busy => {
                return Step::of(Outcome::Wait {
                    reason: format!(
                        "{resource}: another job of the organization holds its lease; the copy \
                         is tried again shortly"
                    ),
                    retry_after: Duration::from_secs(15),
                });
            }
            crate::sync::ShareChunk::Waiting { puller } => {
                return Step::of(Outcome::Skipped {
                    reason: format!(
                        "{resource}: waits for {puller}'s pull of it, copied when that pull \
                         finishes"
                    ),
                    release_claim: false,
                });
            }
            crate::sync::ShareChunk::Unplanned => {
                // Nobody pulls it any more: this practice plans it itself.
                return self.initial_plan(job, org).await;
            }
        };
        let (unplanned, pending) = match syncer.initial_progress(practice_id).await {
            Ok(progress) => progress,
            Err(error) => return Step::from_error(&error),
        };
        Step {
            written,
            resources: vec![ResourceCounts {
                resource: chunk.table.as_str().to_owned(),
                written: count(written),
                shared: Some(note),
                ..ResourceCounts::default()
            }],
            ..Step::of(Outcome::ChunkDone {
                unplanned,
                pending,
                quarantined: 0,
                wake: Vec::new(),
            })
        }
    }

    /// Moves a message to the dead letters with its reason, and records it.
    async fn dead_letter(&self, delivery: &Delivery, job: Option<&Job>, reason: &str) {
        match self.inner.queue.dead_letter(delivery, reason).await {
            Ok(()) => {
                self.inner
                    .tally
                    .dead_lettered
                    .fetch_add(1, Ordering::Relaxed);
                if let Some(job) = job
                    && let Err(error) = self
                        .store()
                        .mark_job_dead_lettered(job.job_id(), Some(reason))
                        .await
                {
                    tracing::warn!(message = "A dead letter could not be recorded in sync history; `dlq list` still shows it.", error = %error);
                }
            }
            Err(error) => {
                // It stays on the queue and comes back; after
                // max_receive_count the queue dead-letters it itself.
                tracing::warn!(message = "Could not move a message to the dead letters.", message_id = %delivery.message_id, error = %error);
            }
        }
    }

    /// Settles the message as the rules said.
    async fn settle(&self, delivery: &Delivery, job: &Job, settle: Settle) {
        let queue = &self.inner.queue;
        let tally = &self.inner.tally;
        let result = match settle {
            Settle::Delete => queue.delete(delivery).await,
            Settle::RetryAfter(after) => {
                tally.retried.fetch_add(1, Ordering::Relaxed);
                if delivery.receive_count >= queue.settings().max_receive_count {
                    tally.dead_lettered.fetch_add(1, Ordering::Relaxed);
                }
                queue.set_visibility(delivery, after).await
            }
            Settle::Requeue { delay } => {
                // The copy first: a crash in between leaves a duplicate,
                // never a loss.
                match queue
                    .send(&[job.outgoing(delay.min(queue::MAX_DELAY))])
                    .await
                {
                    Ok(_) => queue.delete(delivery).await,
                    Err(error) => Err(error),
                }
            }
            Settle::Release => queue.set_visibility(delivery, Duration::ZERO).await,
            Settle::DeadLetter { reason } => {
                self.dead_letter(delivery, Some(job), &reason).await;
                Ok(())
            }
            Settle::Leave => Ok(()),
        };
        if let Err(error) = result {
            tracing::warn!(message = "Could not settle the job's message; it comes back after its visibility timeout.", error = %error);
        }
    }
}

/// The lease that makes duplicate deliveries of a job harmless: one per
/// practice for the jobs that touch its watermarks and plan, one per
/// chunk for the initial sync's parallel chunks.
fn lease_key(job: &Job) -> String {
    match job {
        Job::InitialChunk { chunk_id, .. } => store::chunk_lease_key(*chunk_id),
        // Write-back runs beside the practice's syncs, never beside
        // another write-back job of it.
        Job::Writeback { .. } => store::writeback_lease_key(job.practice_id()),
        _ => store::practice_lease_key(job.practice_id()),
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

/// What a step answered, with what it counted.
struct Step {
    outcome: Outcome,
    fetched: u64,
    written: u64,
    resources: Vec<ResourceCounts>,
    stats: Option<ascend_client::Stats>,
    /// The credential version the job opened (or the practice's, if it
    /// could not open them).
    credential_version: Option<i64>,
    /// The longest wait Ascend asked for (`Retry-After`), if its rate
    /// limit stopped the step.
    retry_after: Option<Duration>,
}

impl Step {
    fn of(outcome: Outcome) -> Step {
        Step {
            outcome,
            fetched: 0,
            written: 0,
            resources: Vec::new(),
            stats: None,
            credential_version: None,
            retry_after: None,
        }
    }

    fn failed(class: ErrorClass, message: String) -> Step {
        Step::of(Outcome::Failed { class, message })
    }

    fn from_error(error: &crate::SyncError) -> Step {
        Step {
            retry_after: error.retry_after(),
            ..Step::failed(error.class(), error.to_string())
        }
    }
}
