//! The job runtime end to end: schedulers, workers and a queue (SQS on moto,
//! and the database queue), the simulator as Ascend, Postgres as RDS.
//!
//! What the platform team would notice: every practice synced every cycle,
//! never two jobs of one practice running at once, no job lost when a worker
//! is killed, poison and failing jobs in the dead letters with their reason
//! and back again on redrive, running jobs released on SIGTERM, Force Sync
//! Now ahead of scheduled work and folded into a running sync.
//!
//! Each test runs on both queues. The SQS half needs
//! `ASCEND_SYNC_TEST_AWS_ENDPOINT` (moto; `cargo xtask test` starts it) and
//! every test needs `DATABASE_URL`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ascend_client::Resource;
use ascend_sim::{FaultConfig, MutateRequest, SimConfig, Size};
use queue::{DbQueue, Job, Lane, Outgoing, Queue, QueueSettings, SqsQueue, Trigger};
use scheduler::{Scheduler, SchedulerConfig};
use store::{ForceDecision, HistoryQuery, NewPractice, PracticeStatus, RunRecord, RunState, Store};
use sync_core::Scope;
use system_tests::{
    Db, SIM_HOST, Sim, TempDir, TestStore, assert_table_equals_source, eventually, fleet_client,
    sim_hosts, test_client,
};
use time::OffsetDateTime;
use tokio::sync::watch;
use worker::credentials::VaultCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

const ENDPOINT_VAR: &str = "ASCEND_SYNC_TEST_AWS_ENDPOINT";
const BIN: &str = env!("CARGO_BIN_EXE_ascend-sync");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Sqs,
    Database,
}

macro_rules! on_both_queues {
    ($($name:ident),* $(,)?) => {
        mod sqs {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Kind::Sqs).await
                }
            )*
        }
        mod database {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::Kind::Database).await
                }
            )*
        }
    };
}

on_both_queues!(
    fifty_practices_three_workers_two_schedulers,
    a_killed_worker_s_job_is_redelivered_and_completes,
    poison_and_failing_jobs_reach_the_dead_letters_and_redrive_back,
    sigterm_releases_running_jobs_within_the_grace,
    force_sync_goes_first_and_folds_into_a_running_sync,
    an_auth_failure_during_the_plan_turns_the_practice_auth_failed,
    an_auth_failure_during_a_chunk_turns_the_practice_auth_failed,
    force_during_an_initial_sync_leaves_the_priority_lane_free,
);

/// The simulator, a scratch database, an archive folder, a queue and the
/// settings a worker process needs to join them.
struct Env {
    sim: Sim,
    db: TestStore,
    archive_dir: TempDir,
    queue: Queue,
    settings: QueueSettings,
    /// `--queue ...` arguments for the binary.
    queue_args: Vec<String>,
    /// The local vault's master key file: practices' credentials are
    /// sealed under it, and worker processes open them with it.
    master_key_file: PathBuf,
    vault: vault::Vault,
    /// practice id -> (organization index, scope)
    practices: Vec<(String, usize, Scope)>,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

impl Env {
    async fn new(kind: Kind, orgs: usize, size: Size, settings: QueueSettings) -> Result<Env> {
        let sim = Sim::start(SimConfig {
            orgs,
            size,
            seed: 11,
            ..SimConfig::default()
        })
        .await?;
        let db = TestStore::new(Db::Postgres).await?;
        let archive_dir = TempDir::new("runtime-archive")?;
        let database_url = db_url(&db)?;
        let (queue, queue_args) = match kind {
            Kind::Database => (
                Queue::Database(DbQueue::new(db.store.clone(), settings)),
                vec!["--queue".into(), "database".into()],
            ),
            Kind::Sqs => {
                let endpoint = std::env::var(ENDPOINT_VAR).with_context(|| {
                    format!("{ENDPOINT_VAR} is not set: run `cargo xtask test`")
                })?;
                let prefix = format!(
                    "rt{}x{}",
                    std::process::id(),
                    NEXT.fetch_add(1, Ordering::Relaxed)
                );
                let sqs = SqsQueue::provision(
                    Some(endpoint.clone()),
                    Some("us-east-1".into()),
                    &prefix,
                    settings,
                )
                .await?;
                let (priority, standard, dead) = sqs.queue_urls();
                let args = vec![
                    "--queue".into(),
                    "sqs".into(),
                    "--sqs-endpoint".into(),
                    endpoint.clone(),
                    "--sqs-priority-url".into(),
                    priority.to_owned(),
                    "--sqs-standard-url".into(),
                    standard.to_owned(),
                    "--sqs-dead-letter-url".into(),
                    dead.to_owned(),
                ];
                (Queue::Sqs(sqs), args)
            }
        };
        let mut queue_args = queue_args;
        queue_args.extend([
            "--database-url".into(),
            database_url,
            "--max-receive-count".into(),
            settings.max_receive_count.to_string(),
            "--visibility-secs".into(),
            settings.visibility.as_secs().max(1).to_string(),
        ]);
        let master_key_file = archive_dir.path().join("master.key");
        let vault = vault::Vault::Local(vault::LocalVault::open(&master_key_file)?);
        Ok(Env {
            sim,
            db,
            archive_dir,
            queue,
            settings,
            queue_args,
            master_key_file,
            vault,
            practices: Vec::new(),
        })
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    /// Registers `n` practices over the organizations: the first of each
    /// organization covers the whole organization, the others one of its
    /// locations in turn, so several practices share an organization.
    async fn add_practices(&mut self, n: usize, orgs: usize) -> Result<()> {
        for i in 0..n {
            let org = i % orgs;
            let info = self.sim.org(org);
            let nth = i / orgs;
            let location: u64 = if nth == 0 {
                0
            } else {
                info.location_ids[(nth - 1) % info.location_ids.len()].parse()?
            };
            let practice_id = format!("practice-{i:03}");
            let with = control::Connector {
                store: self.store().clone(),
                vault: self.vault.clone(),
                client: test_client(2000)?,
                hosts: sim_hosts(),
            };
            control::connect(
                &with,
                control::NewConnection {
                    practice: NewPractice {
                        practice_id: practice_id.clone(),
                        organization_id: info.organization_id.clone(),
                        location_id: location as i64,
                        api_base: info.api_base.clone(),
                        sync_interval_minutes: 15,
                    },
                    token_url: info.token_url.clone(),
                    client_id: info.client_id.clone(),
                    client_secret: info.client_secret.clone().into(),
                },
                "test",
            )
            .await?;
            self.practices.push((
                practice_id,
                org,
                Scope {
                    location_id: (location > 0).then_some(location),
                },
            ));
        }
        Ok(())
    }

    /// An in-process worker with its own name.
    fn worker(&self, name: &str, concurrency: usize) -> Result<Worker> {
        let syncer = Syncer::new(
            self.store().clone(),
            blob::Archive::local(self.archive_dir.path().join("archive"))?,
            SyncConfig {
                concurrency: 2,
                ..SyncConfig::default()
            },
        );
        Ok(Worker::new(
            syncer,
            self.queue.clone(),
            fleet_client(self.store(), 2000.0)?,
            Arc::new(VaultCredentials::new(
                self.store().clone(),
                self.vault.clone(),
                sim_hosts(),
            )),
            WorkerConfig {
                worker_id: name.to_owned(),
                concurrency,
                job_timeout: Duration::from_secs(120),
                grace: Duration::from_secs(5),
                visibility: self.settings.visibility,
                receive_wait: Duration::from_millis(500),
                initial_claim: Duration::from_secs(600),
                first_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(1),
                writeback_retry_base: Duration::from_millis(200),
                ..WorkerConfig::default()
            },
        ))
    }

    fn scheduler(&self, name: &str) -> Scheduler {
        Scheduler::new(
            self.store().clone(),
            self.queue.clone(),
            SchedulerConfig {
                scheduler_id: name.to_owned(),
                tick: Duration::from_secs(1),
                batch: 7,
                claim_for: Duration::from_secs(600),
                max_spread: Duration::from_millis(300),
                ..SchedulerConfig::default()
            },
        )
    }

    /// `ascend-sync worker` as a process of its own.
    fn spawn_worker_process(&self, extra: &[&str]) -> Result<Child> {
        let mut cmd = Command::new(BIN);
        cmd.arg("worker")
            .args(&self.queue_args)
            .args(["--archive-dir"])
            .arg(self.archive_dir.path().join("archive"))
            .arg("--master-key-file")
            .arg(&self.master_key_file)
            .args(["--insecure-loopback", "--requests-per-second", "2000"])
            .args(["--allow-test-host", SIM_HOST])
            .args(["--receive-wait-secs", "1"])
            .args(extra)
            .env("ASCEND_SYNC_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        Ok(cmd.spawn()?)
    }

    /// `ascend-sync COMMAND <queue args> ACTION...`, its stdout.
    fn run_cli(&self, command: &str, action: &[&str]) -> Result<String> {
        let args: Vec<&str> = std::iter::once(command)
            .chain(action.iter().copied())
            .collect();
        let output = Command::new(BIN)
            .arg(command)
            .args(&self.queue_args)
            .args(action)
            .output()?;
        ensure!(
            output.status.success(),
            "ascend-sync {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    async fn assert_practice_converged(&self, practice_id: &str) -> Result<usize> {
        let (_, org, scope) = self
            .practices
            .iter()
            .find(|(p, _, _)| p == practice_id)
            .context("unknown practice")?;
        let mut total = 0;
        for &resource in Resource::ALL {
            total += assert_table_equals_source(
                &self.sim,
                *org,
                self.store(),
                practice_id,
                *scope,
                resource,
            )
            .await
            .with_context(|| format!("{practice_id} {resource}"))?;
        }
        Ok(total)
    }

    /// Makes every API call of organization 0 take `ms` milliseconds.
    async fn slow_calls(&self, ms: u64) -> Result<()> {
        self.sim
            .set_faults(
                0,
                &FaultConfig {
                    slow_rate: 1.0,
                    slow_ms: Some(ms),
                    ..FaultConfig::default()
                },
            )
            .await
    }

    async fn remove(self) -> Result<()> {
        self.sim.shutdown().await;
        self.db.remove().await
    }
}

fn db_url(db: &TestStore) -> Result<String> {
    Ok(db.url().to_owned())
}

/// Runs in-process workers until dropped (shutdown on drop).
struct Fleet {
    shutdown: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<worker::jobs::WorkerReport>>,
}

impl Fleet {
    fn start(workers: Vec<Worker>) -> Fleet {
        let (shutdown, rx) = watch::channel(false);
        let tasks = workers
            .into_iter()
            .map(|w| {
                let rx = rx.clone();
                tokio::spawn(async move { w.run(rx).await })
            })
            .collect();
        Fleet { shutdown, tasks }
    }

    async fn stop(self) -> Vec<worker::jobs::WorkerReport> {
        let _ = self.shutdown.send(true);
        let mut reports = Vec::new();
        for task in self.tasks {
            if let Ok(report) = task.await {
                reports.push(report);
            }
        }
        reports
    }
}

/// Polls `check` until it holds or `limit` passes.
async fn all_runs(store: &Store, practice_id: Option<&str>) -> Result<Vec<RunRecord>> {
    Ok(store
        .history(&HistoryQuery {
            practice_id: practice_id.map(str::to_owned),
            failed_only: false,
            since: None,
            limit: 100_000,
        })
        .await?)
}

/// No two runs of one practice that touch its watermarks or plan (every
/// kind but the initial sync's parallel chunks) overlap in time.
fn assert_never_two_at_once(runs: &[RunRecord]) -> Result<()> {
    let mut by_practice: HashMap<&str, Vec<&RunRecord>> = HashMap::new();
    for run in runs.iter().filter(|r| r.kind != "initial_chunk") {
        by_practice.entry(&run.practice_id).or_default().push(run);
    }
    for (practice, mut runs) in by_practice {
        runs.sort_by_key(|r| r.started_at);
        for pair in runs.windows(2) {
            let end = pair[0]
                .ended_at
                .with_context(|| format!("{practice}: run {} never ended", pair[0].run_id))?;
            ensure!(
                end <= pair[1].started_at,
                "{practice}: runs {} and {} overlap",
                pair[0].run_id,
                pair[1].run_id
            );
        }
    }
    Ok(())
}

fn settings(max_receive_count: u32, visibility_secs: u64) -> QueueSettings {
    QueueSettings {
        max_receive_count,
        visibility: Duration::from_secs(visibility_secs),
    }
}

async fn fifty_practices_three_workers_two_schedulers(kind: Kind) -> Result<()> {
    const ORGS: usize = 5;
    const PRACTICES: usize = 50;
    let mut env = Env::new(kind, ORGS, Size::Tiny, settings(5, 30)).await?;
    env.add_practices(PRACTICES, ORGS).await?;
    let fleet = Fleet::start(vec![
        env.worker("worker-a", 4)?,
        env.worker("worker-b", 4)?,
        env.worker("worker-c", 4)?,
    ]);
    let schedulers = [env.scheduler("scheduler-1"), env.scheduler("scheduler-2")];

    // Cycle 0: both replicas tick at once; each practice is claimed by one.
    let t0 = OffsetDateTime::now_utc();
    let (a, b) = tokio::join!(schedulers[0].tick(t0), schedulers[1].tick(t0));
    let enqueued = a?.enqueued + b?.enqueued;
    ensure!(
        enqueued == PRACTICES as u64,
        "cycle 0 enqueued {enqueued}, not {PRACTICES}"
    );
    wait_until_active(env.store(), None, Duration::from_secs(240)).await?;

    for cycle in 1..=3i64 {
        for org in 0..ORGS {
            env.sim
                .mutate(
                    org,
                    &MutateRequest {
                        resource: None,
                        creates: 3,
                        updates: 4,
                        deletes: 0,
                        seed: (cycle as u64) * 100 + org as u64,
                    },
                )
                .await?;
        }
        let cycle_start = OffsetDateTime::now_utc();
        // The schedulers' clock moves a whole interval per cycle.
        let now = t0 + time::Duration::minutes(15 * cycle) + time::Duration::seconds(1);
        let (a, b) = tokio::join!(schedulers[0].tick(now), schedulers[1].tick(now));
        let (a, b) = (a?, b?);
        ensure!(
            a.enqueued + b.enqueued == PRACTICES as u64,
            "cycle {cycle}: {} + {} jobs enqueued for {PRACTICES} practices",
            a.enqueued,
            b.enqueued
        );
        // A second tick at the same time finds nothing due: a practice is
        // never enqueued twice in one cycle.
        let again = schedulers[1].tick(now).await?;
        ensure!(
            again.enqueued == 0,
            "cycle {cycle}: a second tick enqueued {}",
            again.enqueued
        );
        let store = env.store().clone();
        eventually(
            &format!("cycle {cycle}: every practice synced"),
            Duration::from_secs(180),
            || {
                let store = store.clone();
                async move {
                    let practices = store.list_practices().await?;
                    Ok(practices
                        .iter()
                        .all(|p| p.last_success_at.is_some_and(|at| at >= cycle_start)))
                }
            },
        )
        .await?;
        // Every practice has exactly one incremental run this cycle, and
        // it succeeded.
        let runs = all_runs(env.store(), None).await?;
        for (practice, _, _) in &env.practices {
            let this_cycle: Vec<&RunRecord> = runs
                .iter()
                .filter(|r| &r.practice_id == practice && r.kind == "incremental")
                .filter(|r| r.started_at >= cycle_start)
                .collect();
            ensure!(
                this_cycle.len() == 1 && this_cycle[0].status == RunState::Succeeded,
                "cycle {cycle}: {practice} ran {:?}",
                this_cycle
                    .iter()
                    .map(|r| (r.status, r.error_message.clone()))
                    .collect::<Vec<_>>()
            );
        }
    }
    // The queue drains: every message was deleted by the job that did its
    // work (or skipped as covered), none is left hidden or waiting.
    let queue = env.queue.clone();
    let drained = eventually("the queue drains", Duration::from_secs(45), || {
        let queue = queue.clone();
        async move {
            let depth = queue.depth().await?;
            Ok(depth.visible == 0 && depth.in_flight == 0 && depth.delayed == 0)
        }
    })
    .await;
    let reports = fleet.stop().await;
    if let Err(error) = drained {
        let runs = all_runs(env.store(), None).await?;
        let odd: Vec<_> = runs
            .iter()
            .filter(|r| r.status != RunState::Succeeded)
            .map(|r| (&r.practice_id, &r.kind, r.status, &r.error_message))
            .collect();
        bail!(
            "{error}: {:?}; runs not succeeded: {odd:?}",
            env.queue.depth().await?
        );
    }
    ensure!(reports.len() == 3);
    ensure!(
        reports.iter().all(|r| r.received > 0),
        "every worker took part: {reports:?}"
    );

    // Nothing lost: every table of every practice equals the source; the
    // queue is empty; no dead letters; no two jobs of a practice at once.
    for (practice, _, _) in &env.practices {
        env.assert_practice_converged(practice).await?;
    }
    let runs = all_runs(env.store(), None).await?;
    assert_never_two_at_once(&runs)?;
    ensure!(
        runs.iter()
            .all(|r| !matches!(r.status, RunState::DeadLettered | RunState::Running)),
        "a run was dead-lettered or never ended"
    );
    ensure!(
        env.queue.dead_letters(10).await?.is_empty(),
        "dead letters left"
    );
    env.remove().await
}

/// Waits until `practice` (or every practice) has finished its initial
/// sync.
async fn wait_until_active(store: &Store, practice: Option<&str>, limit: Duration) -> Result<()> {
    eventually("initial sync complete", limit, || {
        let store = store.clone();
        async move {
            let practices = store.list_practices().await?;
            Ok(practices
                .iter()
                .filter(|p| practice.is_none_or(|id| p.practice_id == id))
                .all(|p| p.status == PracticeStatus::Active))
        }
    })
    .await
}

/// Waits until a run of `practice` of `kind` is running in history.
async fn wait_for_running(store: &Store, practice: &str, kind: &'static str) -> Result<()> {
    eventually("a run in progress", Duration::from_secs(60), || {
        let store = store.clone();
        let practice = practice.to_owned();
        async move {
            let runs = all_runs(&store, Some(&practice)).await?;
            Ok(runs
                .iter()
                .any(|r| r.status == RunState::Running && r.kind == kind))
        }
    })
    .await
}

async fn a_killed_worker_s_job_is_redelivered_and_completes(kind: Kind) -> Result<()> {
    let mut env = Env::new(kind, 1, Size::Small, settings(5, 3)).await?;
    env.add_practices(1, 1).await?;
    let practice = env.practices[0].0.clone();
    // Every call takes 150 ms, so the job is surely mid-way when killed.
    env.slow_calls(150).await?;
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let mut child = env.spawn_worker_process(&["--concurrency", "2", "--page-size", "50"])?;
    wait_for_running(env.store(), &practice, "initial_chunk").await?;
    // Let some pages commit, then SIGKILL: no chance to clean up.
    let store = env.store().clone();
    eventually("some rows landed", Duration::from_secs(60), || {
        let store = store.clone();
        let practice = practice.clone();
        async move {
            let chunks = store.list_chunks(&practice).await?;
            Ok(chunks
                .iter()
                .any(|c| c.landed > 0 && c.status == store::ChunkStatus::Pending))
        }
    })
    .await?;
    child.kill()?;
    child.wait()?;
    let killed_runs: Vec<String> = all_runs(env.store(), Some(&practice))
        .await?
        .into_iter()
        .filter(|r| r.status == RunState::Running)
        .map(|r| r.job_id)
        .collect();
    ensure!(
        !killed_runs.is_empty(),
        "nothing was running when the worker was killed"
    );

    env.sim.set_faults(0, &FaultConfig::default()).await?;
    let fleet = Fleet::start(vec![env.worker("rescuer", 4)?]);
    wait_until_active(env.store(), Some(&practice), Duration::from_secs(120)).await?;
    fleet.stop().await;
    env.assert_practice_converged(&practice).await?;
    // Each job the killed worker held was delivered again and succeeded.
    let runs = all_runs(env.store(), Some(&practice)).await?;
    for job in &killed_runs {
        ensure!(
            runs.iter()
                .any(|r| &r.job_id == job && r.status == RunState::Succeeded && r.attempt >= 2),
            "job {job} was not redelivered to completion: {:?}",
            runs.iter()
                .filter(|r| &r.job_id == job)
                .map(|r| (r.attempt, r.status))
                .collect::<Vec<_>>()
        );
    }
    ensure!(env.queue.dead_letters(10).await?.is_empty());
    env.remove().await
}

async fn poison_and_failing_jobs_reach_the_dead_letters_and_redrive_back(kind: Kind) -> Result<()> {
    let mut env = Env::new(kind, 1, Size::Tiny, settings(2, 2)).await?;
    env.add_practices(1, 1).await?;
    let practice = env.practices[0].0.clone();
    // Poison: not JSON, and a version this worker does not know.
    env.queue
        .send(&[
            Outgoing {
                body: "{this is not a job".into(),
                lane: Lane::Standard,
                delay: Duration::ZERO,
            },
            Outgoing {
                body: r#"{"v":99,"job_id":"j","practice_id":"p","kind":"incremental","trigger":"schedule","enqueued_at":"2026-01-01T00:00:00Z"}"#.into(),
                lane: Lane::Standard,
                delay: Duration::ZERO,
            },
        ])
        .await?;
    // A job that keeps failing: every API call answers 500.
    env.sim
        .set_faults(
            0,
            &FaultConfig {
                error_5xx_rate: 1.0,
                ..FaultConfig::default()
            },
        )
        .await?;
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let fleet = Fleet::start(vec![env.worker("w", 2)?]);
    let queue = env.queue.clone();
    eventually("three dead letters", Duration::from_secs(90), || {
        let queue = queue.clone();
        async move { Ok(queue.dead_letters(10).await?.len() == 3) }
    })
    .await?;
    fleet.stop().await;

    // `dlq list` shows each with its practice, kind and reason.
    let listed = env.run_cli("dlq", &["list"])?;
    ensure!(listed.contains("3 dead job(s)"), "dlq list said:\n{listed}");
    ensure!(
        listed.contains(&practice),
        "dlq list misses the failing job:\n{listed}"
    );
    ensure!(
        listed.contains("initial"),
        "dlq list misses the kind:\n{listed}"
    );
    ensure!(
        listed.contains("transient"),
        "dlq list misses the last error:\n{listed}"
    );
    ensure!(
        listed.to_lowercase().contains("version"),
        "dlq list misses the version reason:\n{listed}"
    );
    ensure!(
        listed.contains("unreadable"),
        "dlq list misses the unreadable one:\n{listed}"
    );
    let runs = all_runs(env.store(), Some(&practice)).await?;
    ensure!(
        runs.iter().any(|r| r.status == RunState::DeadLettered),
        "history does not say dead_lettered: {:?}",
        runs.iter().map(|r| r.status).collect::<Vec<_>>()
    );

    // The vendor recovers; redrive brings the job back and it completes.
    env.sim.set_faults(0, &FaultConfig::default()).await?;
    let moved = env.run_cli("dlq", &["redrive", "--all"])?;
    ensure!(moved.contains("moved 3"), "redrive said: {moved}");
    let fleet = Fleet::start(vec![env.worker("w2", 2)?]);
    wait_until_active(env.store(), Some(&practice), Duration::from_secs(90)).await?;
    // The poison comes back as poison: dead again, still not lost.
    let queue = env.queue.clone();
    eventually("the poison is dead again", Duration::from_secs(30), || {
        let queue = queue.clone();
        async move { Ok(queue.dead_letters(10).await?.len() == 2) }
    })
    .await?;
    fleet.stop().await;
    env.assert_practice_converged(&practice).await?;
    env.remove().await
}

async fn sigterm_releases_running_jobs_within_the_grace(kind: Kind) -> Result<()> {
    // A long visibility: a message seen again at once was released, not
    // timed out.
    let mut env = Env::new(kind, 1, Size::Small, settings(5, 120)).await?;
    env.add_practices(1, 1).await?;
    let practice = env.practices[0].0.clone();
    env.slow_calls(300).await?;
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    // 300 ms a call: the plan job (two calls and more per resource) and
    // the chunk jobs (pages of 50) outlast the one-second grace.
    let mut child = env.spawn_worker_process(&[
        "--concurrency",
        "2",
        "--grace-secs",
        "1",
        "--page-size",
        "50",
    ])?;
    wait_for_running(env.store(), &practice, "initial_plan").await?;
    let pid = child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status()?;
    ensure!(status.success());
    let exit = wait_child(&mut child, Duration::from_secs(30))?;
    ensure!(exit.success(), "the worker exited with {exit}");
    let runs = all_runs(env.store(), Some(&practice)).await?;
    let released: Vec<String> = runs
        .iter()
        .filter(|r| r.status == RunState::Retrying && r.error_class.as_deref() == Some("shutdown"))
        .map(|r| r.job_id.clone())
        .collect();
    ensure!(
        !released.is_empty(),
        "history does not record the release: {:?}",
        runs.iter()
            .map(|r| (r.status, r.error_class.clone()))
            .collect::<Vec<_>>()
    );
    // The released jobs are on the queue again at once, not after 120 s.
    let mut seen = Vec::new();
    loop {
        let batch = env.queue.receive(10, Duration::from_secs(1)).await?;
        if batch.is_empty() {
            break;
        }
        seen.extend(batch);
    }
    for job_id in &released {
        let delivery = seen
            .iter()
            .find(|d| Job::decode(&d.body).is_ok_and(|j| j.job_id() == job_id))
            .with_context(|| format!("released job {job_id} is not receivable at once"))?;
        ensure!(
            delivery.receive_count >= 2,
            "job {job_id} was never received before"
        );
    }
    for delivery in &seen {
        env.queue.set_visibility(delivery, Duration::ZERO).await?;
    }
    ensure!(
        runs.iter().all(|r| r.status != RunState::Running),
        "a run was left running"
    );
    // And the job completes elsewhere, with nothing lost.
    env.sim.set_faults(0, &FaultConfig::default()).await?;
    let fleet = Fleet::start(vec![env.worker("w", 4)?]);
    wait_until_active(env.store(), Some(&practice), Duration::from_secs(120)).await?;
    fleet.stop().await;
    env.assert_practice_converged(&practice).await?;
    env.remove().await
}

fn wait_child(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            bail!(
                "the worker did not exit within {} s of SIGTERM",
                limit.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn force_sync_goes_first_and_folds_into_a_running_sync(kind: Kind) -> Result<()> {
    const N: usize = 4;
    let mut env = Env::new(kind, 2, Size::Tiny, settings(5, 30)).await?;
    env.add_practices(N, 2).await?;
    // Initial syncs first.
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let fleet = Fleet::start(vec![env.worker("w", 4)?]);
    wait_until_active(env.store(), None, Duration::from_secs(120)).await?;
    fleet.stop().await;

    // Scheduled jobs wait on the queue (no worker runs); then a practice
    // asks for Force Sync Now.
    for (practice, _, _) in &env.practices {
        env.store().set_next_sync_at(practice, None).await?;
    }
    let tick = env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    ensure!(tick.enqueued == N as u64);
    let forced = env.practices[N - 1].0.clone();
    let decision = control::force_sync(
        env.store(),
        &env.queue,
        &forced,
        Trigger::Force,
        Duration::from_secs(600),
    )
    .await?;
    let ForceDecision::Enqueue { job_id: forced_job } = decision else {
        bail!("force was not enqueued: {decision:?}");
    };
    // A second click while it is queued folds into it.
    let again = control::force_sync(
        env.store(),
        &env.queue,
        &forced,
        Trigger::Force,
        Duration::from_secs(600),
    )
    .await?;
    ensure!(
        !matches!(again, ForceDecision::Enqueue { ref job_id } if job_id != &forced_job),
        "a second Force Sync Now doubled the job: {again:?}"
    );

    // One worker, one job at a time: the forced job runs first.
    let before = OffsetDateTime::now_utc();
    let fleet = Fleet::start(vec![env.worker("w", 1)?]);
    let store = env.store().clone();
    eventually("every practice synced", Duration::from_secs(120), || {
        let store = store.clone();
        async move {
            Ok(store
                .list_practices()
                .await?
                .iter()
                .all(|p| p.last_success_at.is_some_and(|at| at >= before)))
        }
    })
    .await?;
    fleet.stop().await;
    let mut runs: Vec<RunRecord> = all_runs(env.store(), None)
        .await?
        .into_iter()
        .filter(|r| r.started_at >= before && r.status != RunState::Skipped)
        .collect();
    runs.sort_by_key(|r| r.started_at);
    ensure!(
        runs.first()
            .is_some_and(|r| r.job_id == forced_job && r.trigger == "force"),
        "the forced job did not run first: {:?}",
        runs.iter()
            .map(|r| (&r.practice_id, &r.trigger))
            .collect::<Vec<_>>()
    );
    // The forced practice synced once: its scheduled job was folded
    // (skipped), not run a second time.
    let forced_runs: Vec<&RunRecord> = runs.iter().filter(|r| r.practice_id == forced).collect();
    ensure!(
        forced_runs.len() == 1,
        "the forced practice ran {} times",
        forced_runs.len()
    );

    // While a sync of the practice runs, Force Sync Now folds into it.
    ensure!(
        env.store()
            .acquire_lease(
                &format!("practice:{forced}"),
                "someone-else/job",
                time::Duration::seconds(60),
                OffsetDateTime::now_utc()
            )
            .await?
    );
    let queued_before = env.queue.depth().await?;
    let running = control::force_sync(
        env.store(),
        &env.queue,
        &forced,
        Trigger::Force,
        Duration::from_secs(600),
    )
    .await?;
    ensure!(
        matches!(running, ForceDecision::AlreadyRunning { .. }),
        "force during a running sync: {running:?}"
    );
    let after = env.queue.depth().await?;
    ensure!(
        after.visible + after.delayed == queued_before.visible + queued_before.delayed,
        "a job was enqueued anyway: {queued_before:?} -> {after:?}"
    );
    env.remove().await
}

/// Waits until the latest run of `job_id` has succeeded.
async fn wait_for_job_success(store: &Store, job_id: &str) -> Result<()> {
    eventually("the job succeeded", Duration::from_secs(60), || {
        let (store, job) = (store.clone(), job_id.to_owned());
        async move {
            Ok(store
                .last_run_of_job(&job)
                .await?
                .is_some_and(|r| r.status == RunState::Succeeded))
        }
    })
    .await
}

/// Waits until no message is visible, in flight or delayed.
async fn wait_for_empty_queue(queue: &Queue, limit: Duration) -> Result<()> {
    eventually("the queue empties", limit, || {
        let queue = queue.clone();
        async move {
            let depth = queue.depth().await?;
            Ok(depth.visible + depth.in_flight + depth.delayed == 0)
        }
    })
    .await
}

/// Waits until the practice's initial-sync plan has succeeded.
async fn wait_for_plan(store: &Store, practice: &str) -> Result<()> {
    eventually("the plan succeeded", Duration::from_secs(60), || {
        let (store, id) = (store.clone(), practice.to_owned());
        async move {
            Ok(all_runs(&store, Some(&id))
                .await?
                .iter()
                .any(|r| r.kind == "initial_plan" && r.status == RunState::Succeeded))
        }
    })
    .await
}

/// Replaces a practice's stored credentials with a wrong Client Secret,
/// sealed as `practice rotate-credentials` would (without the proof), so
/// the token endpoint refuses them.
async fn plant_wrong_secret(env: &Env, practice_id: &str, org: usize) -> Result<()> {
    let info = env.sim.org(org);
    let sealed = env
        .vault
        .seal_credentials(
            practice_id,
            &vault::AscendCredentials {
                client_id: info.client_id.clone().into(),
                client_secret: "not-the-secret".to_owned().into(),
            },
            &vault::Endpoints {
                token_url: info.token_url.clone(),
                api_base: info.api_base.clone(),
            },
        )
        .await?;
    env.store()
        .replace_credentials(
            practice_id,
            &worker::credentials::to_stored(sealed, &info.token_url),
            "test",
        )
        .await?;
    Ok(())
}

/// Waits until the practice is `auth_failed`, then for the queue to
/// empty, and checks what a person and the scheduler see.
async fn assert_auth_failed_and_nothing_requeued(env: &Env, practice: &str) -> Result<()> {
    let store = env.store().clone();
    let id = practice.to_owned();
    eventually(
        "the practice turns auth_failed",
        Duration::from_secs(60),
        || {
            let (store, id) = (store.clone(), id.clone());
            async move {
                Ok(store
                    .get_practice(&id)
                    .await?
                    .is_some_and(|p| p.status == PracticeStatus::AuthFailed))
            }
        },
    )
    .await?;
    wait_for_empty_queue(&env.queue, Duration::from_secs(60)).await?;
    let practice_row = env.store().get_practice(practice).await?.context("gone")?;
    ensure!(
        practice_row
            .status_detail
            .as_deref()
            .is_some_and(|d| !d.is_empty()),
        "no reason is shown: {practice_row:?}"
    );
    ensure!(
        env.queue.depth().await?.dead == 0,
        "something was dead-lettered"
    );
    // `status` says so, as a person reads it.
    let status = Command::new(BIN)
        .args(["status", "--database-url", &db_url(&env.db)?])
        .output()?;
    let text = String::from_utf8_lossy(&status.stdout);
    ensure!(
        text.lines()
            .any(|l| l.contains(practice) && l.contains("auth_failed")),
        "status does not show it auth_failed:\n{text}"
    );
    // Nothing is re-enqueued: the scheduler leaves it, and no attempt
    // after the auth failure was retried.
    for p in env.store().list_practices().await? {
        if p.practice_id != practice {
            env.store()
                .set_next_sync_at(
                    &p.practice_id,
                    Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
                )
                .await?;
        }
    }
    env.store().set_next_sync_at(practice, None).await?;
    let tick = env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    ensure!(
        tick.enqueued == 0,
        "an auth_failed practice was scheduled: {tick:?}"
    );
    let runs = all_runs(env.store(), Some(practice)).await?;
    let auth = runs
        .iter()
        .filter(|r| r.error_class.as_deref() == Some("auth"))
        .collect::<Vec<_>>();
    ensure!(!auth.is_empty(), "no run failed on auth: {runs:?}");
    ensure!(
        auth.iter().all(|r| r.status == RunState::Failed),
        "an auth failure was retried: {auth:?}"
    );
    ensure!(
        !runs
            .iter()
            .any(|r| matches!(r.status, RunState::Retrying | RunState::DeadLettered)),
        "an attempt was retried: {runs:?}"
    );
    Ok(())
}

async fn an_auth_failure_during_the_plan_turns_the_practice_auth_failed(kind: Kind) -> Result<()> {
    let mut env = Env::new(kind, 1, Size::Tiny, settings(5, 30)).await?;
    env.add_practices(1, 1).await?;
    let practice = env.practices[0].0.clone();
    plant_wrong_secret(&env, &practice, 0).await?;
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let fleet = Fleet::start(vec![env.worker("w", 2)?]);
    let checked = assert_auth_failed_and_nothing_requeued(&env, &practice).await;
    fleet.stop().await;
    checked?;
    let runs = all_runs(env.store(), Some(&practice)).await?;
    ensure!(
        runs.iter().all(|r| r.kind == "initial_plan"),
        "chunks ran for a practice whose plan failed on auth: {runs:?}"
    );
    env.remove().await
}

async fn an_auth_failure_during_a_chunk_turns_the_practice_auth_failed(kind: Kind) -> Result<()> {
    let mut env = Env::new(kind, 1, Size::Tiny, settings(5, 30)).await?;
    env.add_practices(1, 1).await?;
    let practice = env.practices[0].0.clone();
    // Every call slowed, so the chunks are still queued when the plan ends.
    env.sim
        .set_faults(
            0,
            &FaultConfig {
                slow_rate: 1.0,
                slow_ms: Some(150),
                ..FaultConfig::default()
            },
        )
        .await?;
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let fleet = Fleet::start(vec![env.worker("w", 1)?]);
    wait_for_plan(env.store(), &practice).await?;
    plant_wrong_secret(&env, &practice, 0).await?;
    let checked = assert_auth_failed_and_nothing_requeued(&env, &practice).await;
    fleet.stop().await;
    checked?;
    let runs = all_runs(env.store(), Some(&practice)).await?;
    ensure!(
        runs.iter()
            .any(|r| r.kind == "initial_chunk" && r.error_class.as_deref() == Some("auth")),
        "no chunk failed on auth: {runs:?}"
    );
    env.remove().await
}

async fn force_during_an_initial_sync_leaves_the_priority_lane_free(kind: Kind) -> Result<()> {
    let mut env = Env::new(kind, 2, Size::Tiny, settings(5, 30)).await?;
    env.add_practices(2, 2).await?;
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let fleet = Fleet::start(vec![env.worker("w", 2)?]);
    wait_until_active(env.store(), None, Duration::from_secs(120)).await?;
    fleet.stop().await;
    let other = env.practices[1].0.clone();

    // A location of organization 0 connects late: its initial sync is
    // many chunks, each slowed.
    let info = env.sim.org(0);
    let late = "practice-late".to_owned();
    control::connect(
        &control::Connector {
            store: env.store().clone(),
            vault: env.vault.clone(),
            client: test_client(2000)?,
            hosts: sim_hosts(),
        },
        control::NewConnection {
            practice: NewPractice {
                practice_id: late.clone(),
                organization_id: info.organization_id.clone(),
                location_id: info.location_ids[0].parse()?,
                api_base: info.api_base.clone(),
                sync_interval_minutes: 15,
            },
            token_url: info.token_url.clone(),
            client_id: info.client_id.clone(),
            client_secret: info.client_secret.clone().into(),
        },
        "test",
    )
    .await?;
    env.sim
        .set_faults(
            0,
            &FaultConfig {
                slow_rate: 1.0,
                slow_ms: Some(100),
                ..FaultConfig::default()
            },
        )
        .await?;
    let force = |id: String| {
        let (store, queue) = (env.store().clone(), env.queue.clone());
        async move {
            control::force_sync(
                &store,
                &queue,
                &id,
                Trigger::Force,
                Duration::from_secs(600),
            )
            .await
        }
    };
    // Forced while nothing of it runs: its plan, one Priority message.
    let first = force(late.clone()).await?;
    ensure!(matches!(first, ForceDecision::Enqueue { .. }), "{first:?}");
    let fleet = Fleet::start(vec![env.worker("w", 1)?]);
    wait_for_plan(env.store(), &late).await?;
    // Forced again while its chunks are queued: its claim is raised,
    // nothing is enqueued.
    let depth_before = env.queue.depth().await?;
    let again = force(late.clone()).await?;
    ensure!(
        matches!(again, ForceDecision::InitialSyncRunning { .. }),
        "{again:?}"
    );
    let depth_after = env.queue.depth().await?;
    ensure!(
        depth_after.visible + depth_after.delayed <= depth_before.visible + depth_before.delayed,
        "a forced initial sync enqueued more: {depth_before:?} -> {depth_after:?}"
    );
    // Another practice's Force Sync Now runs ahead of the late practice's
    // remaining chunks (one worker, one job at a time).
    let forced_at = OffsetDateTime::now_utc();
    let decision = force(other.clone()).await?;
    let ForceDecision::Enqueue { job_id: other_job } = decision else {
        bail!("the other practice's force was not enqueued: {decision:?}");
    };
    wait_until_active(env.store(), Some(&late), Duration::from_secs(180)).await?;
    wait_for_job_success(env.store(), &other_job).await?;
    fleet.stop().await;
    let other_run = env
        .store()
        .last_run_of_job(&other_job)
        .await?
        .context("no run of the forced job")?;
    let late_runs = all_runs(env.store(), Some(&late)).await?;
    let chunks_after: Vec<&RunRecord> = late_runs
        .iter()
        .filter(|r| r.kind == "initial_chunk" && r.started_at >= forced_at)
        .collect();
    ensure!(
        chunks_after
            .iter()
            .filter(|r| r.started_at > other_run.started_at)
            .count()
            > 0,
        "the forced job of another practice waited behind every chunk: {other_run:?}"
    );
    // At most the chunk running when it was forced started before it.
    ensure!(
        chunks_after
            .iter()
            .filter(|r| r.started_at < other_run.started_at)
            .count()
            <= 1,
        "the forced job of another practice waited behind {} chunks",
        chunks_after
            .iter()
            .filter(|r| r.started_at < other_run.started_at)
            .count()
    );
    ensure!(
        env.queue.depth().await?.dead == 0,
        "something was dead-lettered"
    );
    let mut attempts: HashMap<&str, usize> = HashMap::new();
    for run in late_runs.iter().filter(|r| r.kind == "initial_chunk") {
        *attempts.entry(&run.job_id).or_default() += 1;
    }
    ensure!(
        attempts.values().all(|n| *n == 1),
        "a chunk ran more than once: {attempts:?}"
    );
    env.remove().await
}

/// A job whose end cannot be recorded (the history write fails) is not
/// settled: its message comes back, is run again, and once history works
/// again the job ends with every attempt in history. Postgres only: a
/// trigger makes the write fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_history_write_leaves_the_message_to_be_delivered_again() -> Result<()> {
    let mut env = Env::new(Kind::Database, 1, Size::Tiny, settings(10, 3)).await?;
    env.add_practices(1, 1).await?;
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let fleet = Fleet::start(vec![env.worker("w", 2)?]);
    wait_until_active(env.store(), None, Duration::from_secs(120)).await?;
    fleet.stop().await;
    let practice = env.practices[0].0.clone();
    let url = db_url(&env.db)?;
    let psql = |sql: &str| -> Result<()> {
        let out = Command::new("psql")
            .args([url.as_str(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
            .output()
            .context("psql")?;
        ensure!(
            out.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    psql(
        "CREATE FUNCTION history_down() RETURNS trigger AS $$ BEGIN \
         RAISE EXCEPTION 'history is down (test)'; END $$ LANGUAGE plpgsql; \
         CREATE TRIGGER history_down BEFORE UPDATE ON sync_runs FOR EACH ROW \
         WHEN (NEW.status <> 'running') EXECUTE FUNCTION history_down();",
    )?;
    let decision = control::force_sync(
        env.store(),
        &env.queue,
        &practice,
        Trigger::Force,
        Duration::from_secs(600),
    )
    .await?;
    let ForceDecision::Enqueue { job_id } = decision else {
        bail!("not enqueued: {decision:?}");
    };
    let fleet = Fleet::start(vec![env.worker("w", 2)?]);
    let store = env.store().clone();
    let job = job_id.clone();
    let redelivered = eventually("the job runs again", Duration::from_secs(60), || {
        let (store, job) = (store.clone(), job.clone());
        async move {
            let runs = all_runs(&store, None).await?;
            Ok(runs.iter().filter(|r| r.job_id == job).count() >= 2)
        }
    })
    .await;
    let depth = env.queue.depth().await?;
    psql("DROP TRIGGER history_down ON sync_runs;")?;
    redelivered?;
    ensure!(
        depth.visible + depth.in_flight + depth.delayed >= 1,
        "the message was settled although its end was not recorded: {depth:?}"
    );
    wait_for_job_success(&store, &job_id).await?;
    wait_for_empty_queue(&env.queue, Duration::from_secs(30)).await?;
    fleet.stop().await;
    ensure!(
        env.queue.depth().await?.dead == 0,
        "the job was dead-lettered"
    );
    env.remove().await
}

/// A practice a person just connected starts at once: its first job skips
/// the scheduler's spread, while a practice whose interval came round is
/// spread as before (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_newly_connected_practice_starts_at_once() -> Result<()> {
    let mut env = Env::new(Kind::Database, 1, Size::Tiny, settings(5, 30)).await?;
    env.add_practices(1, 1).await?;
    let practice = env.practices[0].0.clone();
    // A spread window of a minute (a tenth of 15 minutes, capped at 60 s).
    let scheduler = Scheduler::new(
        env.store().clone(),
        env.queue.clone(),
        SchedulerConfig {
            scheduler_id: "s".into(),
            tick: Duration::from_secs(1),
            batch: 10,
            claim_for: Duration::from_secs(600),
            max_spread: Duration::from_secs(60),
            ..SchedulerConfig::default()
        },
    );
    let now = OffsetDateTime::now_utc();
    ensure!(scheduler.tick(now).await?.enqueued == 1);
    let depth = env.queue.depth().await?;
    ensure!(
        depth.visible == 1 && depth.delayed == 0,
        "a newly connected practice waited for the spread: {depth:?}"
    );
    // Its next regular cycle is spread.
    let delivered = env.queue.receive(1, Duration::ZERO).await?;
    let delivery = delivered.first().context("no job")?;
    env.queue.delete(delivery).await?;
    let (claim, _) = env
        .store()
        .inflight_job(&practice)
        .await?
        .context("no claim")?;
    env.store().release_inflight(&practice, &claim).await?;
    env.store()
        .set_next_sync_at(&practice, Some(now - time::Duration::seconds(1)))
        .await?;
    ensure!(scheduler.tick(OffsetDateTime::now_utc()).await?.enqueued == 1);
    let depth = env.queue.depth().await?;
    ensure!(
        depth.delayed == 1 && depth.visible == 0,
        "a regular cycle was not spread: {depth:?}"
    );
    env.remove().await
}

/// Write-back through a worker process killed with SIGKILL mid-send (issue
/// 15): every item arrives in the simulator exactly once, the one in
/// flight included (looked up, not sent again blindly).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_send_writes_each_item_once() -> Result<()> {
    use model::{ItemStatus, WritebackType};
    let mut env = Env::new(Kind::Database, 1, Size::Tiny, settings(5, 3)).await?;
    env.add_practices(1, 1).await?;
    let practice = env.practices[0].0.clone();
    env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    let fleet = Fleet::start(vec![env.worker("first", 4)?]);
    wait_until_active(env.store(), Some(&practice), Duration::from_secs(120)).await?;
    fleet.stop().await;
    let store = env.store().clone();
    let patient = store
        .landed_records(&practice, store::Table::Patients)
        .await?
        .first()
        .context("no patient")?
        .id;
    let provider = store
        .landed_records(&practice, store::Table::Providers)
        .await?
        .first()
        .context("no provider")?
        .id;
    control::writeback::change_settings(
        &store,
        &practice,
        &store::SettingsChange {
            switch: vec![(WritebackType::SmsLog, true)],
            note_provider_id: Some(u64::try_from(provider).ok()),
        },
        "test",
    )
    .await?;
    let mut markers = Vec::new();
    for i in 0..30 {
        let body = serde_json::json!({"patient_id": patient.to_string(), "direction": "outbound",
            "text": format!("message {i}"), "sent_at": "2026-12-04T10:00:00Z"});
        let key = format!("sms-{i}");
        let item = control::writeback::submit(&store, &practice, "sms_log", &key, &body, "test")
            .await?
            .item;
        markers.push(item.marker);
    }
    // Every call takes 200 ms: the worker is surely mid-send when killed.
    env.slow_calls(200).await?;
    let report = env.scheduler("s").tick(OffsetDateTime::now_utc()).await?;
    ensure!(report.writebacks == 1, "no write-back job: {report:?}");
    let mut child = env.spawn_worker_process(&["--concurrency", "2"])?;
    // Kill it while a send is under way (an item `sending`, its request
    // taking 200 ms) after a few have landed.
    eventually(
        "a send under way after some sent",
        Duration::from_secs(60),
        || {
            let store = store.clone();
            async move {
                let items = store.writeback_items(None, None, 100).await?;
                let sent = items
                    .iter()
                    .filter(|i| i.status == ItemStatus::Sent)
                    .count();
                let sending = items.iter().any(|i| i.status == ItemStatus::Sending);
                Ok(sent >= 3 && sending)
            }
        },
    )
    .await?;
    child.kill()?;
    child.wait()?;
    env.sim.set_faults(0, &FaultConfig::default()).await?;
    // The killed job's message comes back and a fresh worker finishes it.
    let fleet = Fleet::start(vec![env.worker("rescuer", 2)?]);
    eventually("every item sent", Duration::from_secs(120), || {
        let store = store.clone();
        async move {
            let items = store.writeback_items(None, None, 100).await?;
            Ok(items.iter().all(|i| i.status == ItemStatus::Sent))
        }
    })
    .await?;
    fleet.stop().await;
    let applied: Vec<ascend_sim::WriteRecord> = env
        .sim
        .writes(0)
        .await?
        .into_iter()
        .filter(|w| w.applied)
        .collect();
    for marker in &markers {
        let n = applied
            .iter()
            .filter(|w| w.body.to_string().contains(marker.as_str()))
            .count();
        ensure!(n == 1, "{marker} arrived {n} times");
    }
    ensure!(
        applied.len() == markers.len(),
        "{} writes for {} items",
        applied.len(),
        markers.len()
    );
    env.remove().await
}
