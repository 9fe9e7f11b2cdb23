//! The job runtime's subcommands: `worker`, `scheduler`, `force`, `dlq`.
//!
//! Each role is its own process (as many replicas as the platform runs);
//! they meet only in the database and the queue.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand, ValueEnum};
use queue::{DbQueue, Queue, QueueSettings, RedriveSelector, SqsConfig, SqsQueue};
use queue::{Job, Trigger};
use scheduler::{Scheduler, SchedulerConfig};
use store::{ForceDecision, Store};
use tokio::sync::watch;
use worker::credentials::VaultCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

use crate::connect::ClientArgs;
use crate::data::ArchiveArgs;
use crate::practice::VaultArgs;

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
pub enum QueueKind {
    /// Amazon SQS (production): a priority queue, a standard queue and
    /// their dead-letter queue.
    Sqs,
    /// The `job_queue` table of the database (embedded mode, or a platform
    /// without SQS).
    Database,
}

/// Which queue, and how it behaves.
#[derive(Args, Debug)]
pub struct QueueArgs {
    #[arg(
        long,
        env = "ASCEND_SYNC_QUEUE",
        value_enum,
        default_value = "database"
    )]
    queue: QueueKind,
    /// SQS endpoint override (tests against moto).
    #[arg(long, env = "ASCEND_SYNC_SQS_ENDPOINT")]
    sqs_endpoint: Option<String>,
    /// The Force Sync Now queue's URL.
    #[arg(long, env = "ASCEND_SYNC_SQS_PRIORITY_URL")]
    sqs_priority_url: Option<String>,
    /// The scheduled jobs' queue's URL.
    #[arg(long, env = "ASCEND_SYNC_SQS_STANDARD_URL")]
    sqs_standard_url: Option<String>,
    /// The dead-letter queue's URL (both queues' RedrivePolicy target).
    #[arg(long, env = "ASCEND_SYNC_SQS_DEAD_LETTER_URL")]
    sqs_dead_letter_url: Option<String>,
    /// Deliveries before a job goes to the dead letters (SQS: must match
    /// the queues' RedrivePolicy).
    #[arg(long, env = "ASCEND_SYNC_MAX_RECEIVE_COUNT", default_value_t = 5)]
    max_receive_count: u32,
    /// Seconds a received job stays hidden; the worker's heartbeat extends it.
    #[arg(long, env = "ASCEND_SYNC_VISIBILITY_SECS", default_value_t = 120)]
    visibility_secs: u64,
}

impl QueueArgs {
    pub fn settings(&self) -> QueueSettings {
        QueueSettings {
            max_receive_count: self.max_receive_count.max(1),
            visibility: Duration::from_secs(self.visibility_secs.max(1)),
        }
    }

    pub async fn open(&self, store: &Store) -> Result<Queue> {
        match self.queue {
            QueueKind::Database => Ok(Queue::Database(DbQueue::new(
                store.clone(),
                self.settings(),
            ))),
            QueueKind::Sqs => {
                let (Some(priority), Some(standard), Some(dead)) = (
                    &self.sqs_priority_url,
                    &self.sqs_standard_url,
                    &self.sqs_dead_letter_url,
                ) else {
                    bail!(
                        "--queue sqs needs --sqs-priority-url, --sqs-standard-url and --sqs-dead-letter-url"
                    );
                };
                let queue = SqsQueue::connect(SqsConfig {
                    endpoint_url: self.sqs_endpoint.clone(),
                    region: None,
                    priority_queue_url: priority.clone(),
                    standard_queue_url: standard.clone(),
                    dead_letter_queue_url: dead.clone(),
                    settings: self.settings(),
                })
                .await
                .context("cannot set up the SQS client")?;
                Ok(Queue::Sqs(queue))
            }
        }
    }
}

/// A database to connect to and migrate.
#[derive(Args, Debug)]
pub struct StoreArgs {
    /// `postgres://...` (production: RDS) or `sqlite:PATH` (embedded).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Apply migrations at start.
    #[arg(long, env = "ASCEND_SYNC_MIGRATE")]
    migrate: bool,
}

impl StoreArgs {
    pub async fn open(&self) -> Result<Store> {
        let store = Store::connect(&self.database_url)
            .await
            .context("cannot connect to the database")?;
        if self.migrate {
            store.migrate().await.context("migrations failed")?;
        }
        Ok(store)
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    archive: ArchiveArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// Where the practices' sealed credentials are opened.
    #[command(flatten)]
    vault: VaultArgs,
    /// Jobs run at once by this process.
    #[arg(long, env = "ASCEND_SYNC_WORKER_CONCURRENCY", default_value_t = 4)]
    concurrency: usize,
    /// Chunks (initial) or resources (incremental) pulled at once within a job.
    #[arg(long, default_value_t = 4)]
    job_concurrency: usize,
    /// Records per page asked of the API (at most 500, the default).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=500))]
    page_size: Option<u32>,
    /// Seconds one job may run before it is cancelled and retried.
    #[arg(long, env = "ASCEND_SYNC_JOB_TIMEOUT_SECS", default_value_t = 900)]
    job_timeout_secs: u64,
    /// Seconds running jobs get to finish after SIGTERM (ECS allows 30 by
    /// default, 120 at most: keep this below the task's stopTimeout).
    #[arg(long, env = "ASCEND_SYNC_GRACE_SECS", default_value_t = 25)]
    grace_secs: u64,
    /// Seconds of one receive's long poll (SQS: at most 20).
    #[arg(long, default_value_t = 20)]
    receive_wait_secs: u64,
    #[command(flatten)]
    metrics: MetricsArgs,
}

pub async fn worker(args: WorkerArgs) -> Result<()> {
    let store = args.store.open().await?;
    let queue = args.queue.open(&store).await?;
    let archive = args.archive.open().await?;
    let credentials = VaultCredentials::new(
        store.clone(),
        args.vault.open().await?,
        args.client.hosts()?,
    );
    let syncer = Syncer::new(
        store.clone(),
        archive,
        SyncConfig {
            concurrency: args.job_concurrency.max(1),
            page_size: args.page_size,
            ..SyncConfig::default()
        },
    );
    let config = WorkerConfig {
        concurrency: args.concurrency.max(1),
        job_timeout: Duration::from_secs(args.job_timeout_secs.max(1)),
        grace: Duration::from_secs(args.grace_secs),
        visibility: args.queue.settings().visibility,
        receive_wait: Duration::from_secs(args.receive_wait_secs.min(20)),
        metrics: args.metrics.sink(),
        ..WorkerConfig::default()
    };
    let worker = Worker::new(
        syncer,
        queue,
        args.client.fleet_client(&store)?,
        Arc::new(credentials),
        config,
    );
    let shutdown = shutdown_signal();
    tracing::info!(message = "Worker started.", concurrency = args.concurrency);
    let report = worker.run(shutdown).await;
    tracing::info!(message = "Worker stopped.", ?report);
    eprintln!(
        "worker stopped: {} received, {} succeeded, {} retried, {} dead-lettered, {} skipped, {} released",
        report.received,
        report.succeeded,
        report.retried,
        report.dead_lettered,
        report.skipped,
        report.released
    );
    store.close().await;
    Ok(())
}

/// Where a role's metrics go.
#[derive(Args)]
pub struct MetricsArgs {
    /// `stdout`: CloudWatch Embedded Metric Format lines on standard
    /// output (the log driver ships them; namespace `AscendSync`); `off`.
    #[arg(long, env = "ASCEND_SYNC_METRICS", default_value = "off")]
    metrics: MetricsTarget,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum MetricsTarget {
    Off,
    Stdout,
}

impl MetricsArgs {
    pub fn sink(&self) -> telemetry::Sink {
        match self.metrics {
            MetricsTarget::Off => telemetry::Sink::Off,
            MetricsTarget::Stdout => telemetry::Sink::Stdout,
        }
    }
}

#[derive(Args)]
pub struct SchedulerArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    queue: QueueArgs,
    /// Seconds between ticks.
    #[arg(long, env = "ASCEND_SYNC_TICK_SECS", default_value_t = 15)]
    tick_secs: u64,
    /// Practices claimed per statement.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Minutes a practice's in-flight job holds it unless finished sooner.
    #[arg(long, default_value_t = 30)]
    claim_minutes: u64,
    /// The most a scheduled job is delayed to spread the load (each
    /// practice's delay is at most a tenth of its interval, and this).
    #[arg(long, env = "ASCEND_SYNC_MAX_SPREAD_SECS", default_value_t = 60)]
    max_spread_secs: u64,
    /// Run one tick and exit (publishing the fleet's metrics once).
    #[arg(long)]
    once: bool,
    #[command(flatten)]
    metrics: MetricsArgs,
}

pub async fn scheduler(args: SchedulerArgs) -> Result<()> {
    let store = args.store.open().await?;
    let queue = args.queue.open(&store).await?;
    let scheduler = Scheduler::new(
        store.clone(),
        queue,
        SchedulerConfig {
            tick: Duration::from_secs(args.tick_secs.max(1)),
            batch: args.batch.max(1),
            claim_for: Duration::from_secs(args.claim_minutes.max(1) * 60),
            max_spread: Duration::from_secs(args.max_spread_secs),
            metrics: args.metrics.sink(),
            ..SchedulerConfig::default()
        },
    );
    if args.once {
        let report = scheduler
            .tick(time::OffsetDateTime::now_utc())
            .await
            .context("the scheduler tick failed")?;
        println!(
            "enqueued {} jobs ({} initial)",
            report.enqueued, report.initial
        );
        let sink = args.metrics.sink();
        if sink.is_on() {
            let docs = scheduler
                .metrics(time::OffsetDateTime::now_utc())
                .await
                .context("the fleet's metrics could not be read")?;
            docs.iter().for_each(|d| sink.emit(d));
        }
    } else {
        scheduler.run(shutdown_signal()).await;
    }
    store.close().await;
    Ok(())
}

#[derive(Args)]
pub struct ForceArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    queue: QueueArgs,
    /// The practice to sync now.
    #[arg(long)]
    practice_id: String,
    /// Print what became of the request as JSON.
    #[arg(long)]
    json: bool,
}

/// `ascend-sync force`: Force Sync Now from the command line (an admin).
pub async fn force(args: ForceArgs) -> Result<()> {
    let store = args.store.open().await?;
    let queue = args.queue.open(&store).await?;
    let who = crate::operator::operator();
    crate::operator::gate(
        &store,
        &who,
        access::Action::ForceSync(args.practice_id.clone()),
    )
    .await?;
    let decision = control::force_sync_by(
        &store,
        &queue,
        &args.practice_id,
        Trigger::Admin,
        &who.actor,
    )
    .await
    .with_context(|| format!("cannot force a sync of {:?}", args.practice_id))?;
    if let ForceDecision::NotSyncable { status } = decision {
        bail!("the practice is {status}: enable or reconnect it first")
    }
    let (outcome, job_id, text) = match decision {
        ForceDecision::Enqueue { job_id } => (
            "enqueued",
            Some(job_id.clone()),
            format!("enqueued job {job_id} ahead of scheduled work"),
        ),
        ForceDecision::AlreadyQueued { job_id } => (
            "already_queued",
            Some(job_id.clone()),
            format!(
                "a Force Sync Now of this practice is queued (job {job_id}); it serves this request"
            ),
        ),
        ForceDecision::InitialSyncRunning { job_id } => (
            "initial_sync_running",
            Some(job_id.clone()),
            format!(
                "the practice's initial sync is running (job {job_id}); it serves this request, \
                 its claim raised"
            ),
        ),
        ForceDecision::AlreadyRunning { since } => (
            "already_running",
            None,
            format!("a sync of this practice is running (since {since}); it serves this request"),
        ),
        ForceDecision::NotSyncable { .. } => ("not_syncable", None, String::new()),
    };
    if args.json {
        println!(
            "{}",
            serde_json::json!({"practice_id": args.practice_id, "outcome": outcome,
                "job_id": job_id})
        );
    } else {
        println!("{text}");
    }
    store.close().await;
    Ok(())
}

#[derive(Args)]
pub struct DlqArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    queue: QueueArgs,
    #[command(subcommand)]
    action: DlqAction,
}

#[derive(Subcommand)]
pub enum DlqAction {
    /// Each dead job with its practice, kind and last error.
    List {
        /// The most to show.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Move dead jobs back to their queue.
    Redrive {
        /// Every dead job.
        #[arg(long, conflicts_with = "id", required_unless_present = "id")]
        all: bool,
        /// One dead job, by message id (from `dlq list`).
        #[arg(long)]
        id: Option<String>,
    },
}

pub async fn dlq(args: DlqArgs) -> Result<()> {
    let store = args.store.open().await?;
    let queue = args.queue.open(&store).await?;
    match args.action {
        DlqAction::List { limit, json } => {
            let dead = queue
                .dead_letters(limit)
                .await
                .context("cannot list the dead letters")?;
            if !json {
                println!(
                    "{:<40} {:<20} {:<14} {:>8}  LAST ERROR",
                    "MESSAGE ID", "PRACTICE", "KIND", "RECEIVES"
                );
            }
            for letter in &dead {
                let job = Job::decode(&letter.body);
                let (practice, kind, job_id) = match &job {
                    Ok(job) => (
                        job.practice_id().to_owned(),
                        job.kind().as_str().to_owned(),
                        Some(job.job_id().to_owned()),
                    ),
                    Err(_) => ("?".to_owned(), "unreadable".to_owned(), None),
                };
                let last_run = match &job_id {
                    Some(job_id) => store
                        .last_run_of_job(job_id)
                        .await
                        .context("cannot read the dead letter's last run from sync history")?,
                    None => None,
                };
                let error = letter
                    .reason
                    .clone()
                    .or_else(|| {
                        last_run.as_ref().and_then(|run| {
                            run.error_message.as_ref().map(|message| {
                                format!(
                                    "{}: {message}",
                                    run.error_class.as_deref().unwrap_or("error")
                                )
                            })
                        })
                    })
                    .unwrap_or_else(|| "no error recorded".to_owned());
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "message_id": letter.message_id,
                            "practice_id": practice,
                            "kind": kind,
                            "job_id": job_id,
                            "receive_count": letter.receive_count,
                            "last_error": error,
                        })
                    );
                } else {
                    println!(
                        "{:<40} {:<20} {:<14} {:>8}  {}",
                        letter.message_id,
                        practice,
                        kind,
                        letter.receive_count,
                        error.lines().next().unwrap_or("")
                    );
                }
            }
            if !json {
                println!("{} dead job(s)", dead.len());
            }
        }
        DlqAction::Redrive { all, id } => {
            let which = match (all, id) {
                (_, Some(id)) => RedriveSelector::Id(id),
                (true, None) => RedriveSelector::All,
                (false, None) => bail!("give --all or --id ID"),
            };
            let who = crate::operator::operator();
            crate::operator::gate(&store, &who, access::Action::RedriveDeadLetters).await?;
            let report = control::redrive(&store, &queue, &which, &who.actor)
                .await
                .context("redrive failed")?;
            println!("moved {} job(s) back ({:?})", report.moved, report.method);
        }
    }
    store.close().await;
    Ok(())
}

/// Turns true on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            match signal(SignalKind::terminate()) {
                Ok(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("Shutdown requested: no new jobs; running jobs get the grace period.");
        let _ = tx.send(true);
    });
    rx
}
