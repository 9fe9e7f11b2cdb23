//! The scheduler role: each tick, claim the practices that are due and
//! enqueue one job for each.
//!
//! Several replicas may run at once. A practice is handed to exactly one of
//! them by the store's claim (`Store::claim_due_practices`: one atomic
//! statement, `FOR UPDATE SKIP LOCKED` on Postgres), which also records the
//! job as the practice's in-flight job, so no second job is enqueued while
//! one is queued or running (until the claim expires, which only happens
//! when a job was lost: then enqueueing again is right). A practice in
//! initial sync gets an `initial_plan` job (the worker plans it and
//! enqueues its chunks); an active one an `incremental` job. Jobs are
//! delayed by a spread of up to a tenth of their interval (at most a
//! minute), so thousands of practices due in one tick reach the workers
//! over that minute.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use queue::{Job, Outgoing, Queue, Trigger};
use store::{DuePractice, PracticeStatus, Store};
use sync_core::schedule;
use time::OffsetDateTime;
use tokio::sync::watch;

/// How the scheduler works.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// A name for this replica, in job ids and logs.
    pub scheduler_id: String,
    /// Time between ticks.
    pub tick: Duration,
    /// Practices claimed per statement; a tick claims batches until none
    /// are due.
    pub batch: u32,
    /// How long a claim (a practice's in-flight job) lasts unless the
    /// worker finishes it sooner. A job lost for good (dead-lettered) holds
    /// its practice this long; the worker releases it on success.
    pub claim_for: Duration,
    /// The most a job is delayed to spread a tick's jobs (a tenth of the
    /// practice's interval at most); zero sends every job at once.
    pub max_spread: Duration,
    /// Where the fleet's metrics go (EMF lines; off by default).
    pub metrics: telemetry::Sink,
    /// Time between two publications of the fleet's metrics.
    pub metrics_every: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_id: format!("scheduler-{}", std::process::id()),
            tick: Duration::from_secs(15),
            batch: 1000,
            claim_for: Duration::from_secs(30 * 60),
            max_spread: schedule::MAX_SPREAD,
            metrics: telemetry::Sink::Off,
            metrics_every: Duration::from_secs(60),
        }
    }
}

/// Why a tick failed. The practices it had claimed are released and due
/// again, so the next tick (of any replica) enqueues them.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("queue: {0}; the claimed practices were released and are due again")]
    Queue(#[from] queue::QueueError),
}

/// What one tick did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Practices claimed (and so enqueued).
    pub enqueued: u64,
    /// Of them, initial-sync plans.
    pub initial: u64,
    /// Time spent in the claim statements (the database).
    pub claim_time: Duration,
    /// Time spent sending the jobs to the queue.
    pub send_time: Duration,
    /// Write-back jobs sent (practices with write-back items due).
    pub writebacks: u64,
}

/// One scheduler replica.
pub struct Scheduler {
    store: Store,
    queue: Queue,
    config: SchedulerConfig,
    ticks: AtomicU64,
}

impl Scheduler {
    pub fn new(store: Store, queue: Queue, config: SchedulerConfig) -> Scheduler {
        Scheduler {
            store,
            queue,
            config,
            ticks: AtomicU64::new(0),
        }
    }

    /// Claims every practice due at `now` and enqueues its job.
    #[tracing::instrument(level = "debug", skip_all, fields(scheduler = %self.config.scheduler_id))]
    pub async fn tick(&self, now: OffsetDateTime) -> Result<TickReport, SchedulerError> {
        let tick_id = format!(
            "{}-t{}-{}",
            self.config.scheduler_id,
            now.unix_timestamp(),
            self.ticks.fetch_add(1, Ordering::Relaxed)
        );
        let mut report = TickReport::default();
        loop {
            let claim_started = std::time::Instant::now();
            let claimed = self
                .store
                .claim_due_practices(
                    now,
                    self.config.batch,
                    time::Duration::try_from(self.config.claim_for).unwrap_or(time::Duration::MAX),
                    &tick_id,
                )
                .await;
            report.claim_time += claim_started.elapsed();
            let due = claimed?;
            if due.is_empty() {
                break;
            }
            let outgoing: Vec<Outgoing> = due
                .iter()
                .map(|p| job_for(p, &tick_id, now, self.config.max_spread))
                .collect();
            let send_started = std::time::Instant::now();
            let sent = self.queue.send(&outgoing).await;
            report.send_time += send_started.elapsed();
            if let Err(error) = sent {
                self.unclaim(&due).await;
                return Err(error.into());
            }
            report.enqueued += due.len() as u64;
            report.initial += due
                .iter()
                .filter(|p| p.status == PracticeStatus::InitialSync)
                .count() as u64;
            if due.len() < self.config.batch as usize {
                break;
            }
        }
        report.writebacks = self.enqueue_writebacks(&tick_id, now).await?;
        if report.enqueued > 0 {
            tracing::info!(
                message = "Enqueued the practices that were due.",
                enqueued = report.enqueued,
                initial = report.initial
            );
        }
        Ok(report)
    }

    /// Gives claimed practices back, due at once, after a failed send.
    /// Sends one write-back job per practice with items due and no
    /// write-back job queued or running (its claim, issue 15). A failed
    /// send gives the claims back, so the next tick tries again.
    async fn enqueue_writebacks(
        &self,
        tick_id: &str,
        now: OffsetDateTime,
    ) -> Result<u64, SchedulerError> {
        let until =
            now + time::Duration::try_from(self.config.claim_for).unwrap_or(time::Duration::MAX);
        let mut sent_total = 0;
        loop {
            let claimed = self
                .store
                .claim_due_writebacks(tick_id, now, until, self.config.batch)
                .await?;
            if claimed.is_empty() {
                break;
            }
            let outgoing: Vec<Outgoing> = claimed
                .iter()
                .map(|(practice_id, job_id)| {
                    Job::writeback(job_id.clone(), practice_id.clone(), Trigger::Schedule, now)
                        .outgoing(Duration::ZERO)
                })
                .collect();
            if let Err(error) = self.queue.send(&outgoing).await {
                for (practice_id, job_id) in &claimed {
                    if let Err(error) = self
                        .store
                        .release_writeback_claim(practice_id, job_id)
                        .await
                    {
                        tracing::warn!(
                            message = "Could not release a write-back claim; the practice's items are sent when it expires.",
                            practice_id = %practice_id,
                            %error
                        );
                    }
                }
                return Err(error.into());
            }
            sent_total += claimed.len() as u64;
            if claimed.len() < self.config.batch as usize {
                break;
            }
        }
        if sent_total > 0 {
            tracing::info!(
                message = "Enqueued write-back jobs.",
                writebacks = sent_total
            );
        }
        Ok(sent_total)
    }

    async fn unclaim(&self, due: &[DuePractice]) {
        for practice in due {
            let released = self
                .store
                .release_inflight(&practice.practice_id, &practice.job_id)
                .await;
            let rescheduled = self
                .store
                .set_next_sync_at(&practice.practice_id, None)
                .await;
            if let Some(error) = released.err().or(rescheduled.err()) {
                tracing::warn!(
                    message = "Could not release a claimed practice; it is due again when its claim expires.",
                    practice_id = %practice.practice_id,
                    %error
                );
            }
        }
    }

    /// Ticks until `shutdown` turns true. A failed tick is logged and the
    /// next one tries again.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(self.config.tick);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut published: Option<std::time::Instant> = None;
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                return;
            }
            if let Err(error) = self.tick(OffsetDateTime::now_utc()).await {
                tracing::warn!(message = "A scheduler tick failed; the next tick tries again.", %error);
            }
            if self.config.metrics.is_on()
                && published.is_none_or(|at| at.elapsed() >= self.config.metrics_every)
            {
                published = Some(std::time::Instant::now());
                match self.metrics(OffsetDateTime::now_utc()).await {
                    Ok(docs) => docs.iter().for_each(|d| self.config.metrics.emit(d)),
                    Err(error) => {
                        tracing::warn!(message = "The fleet's metrics could not be read; the next minute tries again.", %error);
                    }
                }
            }
        }
    }

    /// The fleet's metrics now: each syncing practice's staleness, and for
    /// the fleet the largest staleness over its limit, the practices stale,
    /// the records in quarantine, the queue's backlog and dead letters.
    /// Every replica publishes them; the alarms read the Maximum.
    pub async fn metrics(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<telemetry::Document>, SchedulerError> {
        use sync_core::staleness::{PracticeHealth, stale_after};
        use telemetry::{Document, PRACTICE_ID, names};
        let practices = self.store.practice_overview().await?;
        let depth = self.queue.depth().await?;
        let mut docs = Vec::new();
        let (mut max_ratio, mut stale, mut quarantined) = (0.0_f64, 0_u64, 0_u64);
        for p in &practices {
            quarantined += p.quarantined;
            if !p.status.is_syncing() {
                continue;
            }
            let health = PracticeHealth {
                last_success: p.last_success_at,
                created_at: p.created_at,
                interval_minutes: p.sync_interval_minutes,
                quarantined: p.quarantined,
                failing_since: p.failing_since,
                count_mismatch: p.count_mismatch.map(|(t, since)| (t.resource(), since)),
            }
            .staleness(now);
            let age = health
                .age
                .unwrap_or_else(|| now - p.created_at)
                .max(time::Duration::ZERO);
            let limit = stale_after(p.sync_interval_minutes)
                .as_seconds_f64()
                .max(1.0);
            max_ratio = max_ratio.max(age.as_seconds_f64() / limit);
            stale += u64::from(health.stale);
            docs.push(
                Document::new(now)
                    .dimension(PRACTICE_ID, p.practice_id.clone())
                    .metric(names::STALENESS_SECONDS, age.as_seconds_f64().round()),
            );
        }
        docs.push(
            Document::new(now)
                .metric(
                    names::MAX_STALENESS_RATIO,
                    (max_ratio * 1000.0).round() / 1000.0,
                )
                .count(names::STALE_PRACTICES, stale)
                .count(names::RECORDS_QUARANTINED_NOW, quarantined)
                .count(names::QUEUE_BACKLOG, depth.visible)
                .count(names::DEAD_LETTERS, depth.dead),
        );
        Ok(docs)
    }
}

/// The job a claimed practice gets ([`Job::for_practice`]), delayed by its
/// spread.
fn job_for(
    practice: &DuePractice,
    tick_id: &str,
    now: OffsetDateTime,
    max_spread: Duration,
) -> Outgoing {
    let job = Job::for_practice(
        practice.status,
        practice.job_id.clone(),
        practice.practice_id.clone(),
        Trigger::Schedule,
        now,
    );
    // A practice a person just made due (connected, enabled, rotated)
    // starts at once; the spread is for the fleet's regular cycles.
    let delay = if practice.at_once {
        Duration::ZERO
    } else {
        schedule::spread_delay(
            &practice.practice_id,
            tick_id,
            practice.sync_interval_minutes,
            max_spread,
        )
    };
    job.outgoing(delay)
}
