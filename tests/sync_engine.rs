//! The sync engine end to end: the simulator as Ascend, a real store
//! (Postgres and SQLite), a local raw archive, and the production job path
//! (Force Sync Now, the initial sync's plan and chunk jobs, incremental
//! jobs) run by a worker on the store's database queue. What a practice
//! would notice: its tables equal what Ascend holds, after the initial sync
//! and after every incremental cycle; a crash loses and duplicates nothing.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_client::Resource;
use ascend_sim::{
    BadRecordKind, BadRecordsRequest, FaultConfig, FaultKind, MutateRequest, MutateResult,
    RepairRequest, ScriptedFault, SimConfig, Size,
};
use control::Synced;
use queue::{DbQueue, Queue, QueueSettings};
use store::{NewPractice, PracticeStatus, RunRecord, RunState, Table};
use sync_core::Scope;
use sync_core::plan::{ChunkWindow, PRIORITY_FIRST, PRIORITY_HISTORY};
use system_tests::{
    Db, Sim, TempDir, TestStore, assert_table_equals_source, fleet_client, test_client_config,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

const PRACTICE: &str = "practice-1";

/// One practice of organization 0 of a simulator, ready to sync.
struct Fixture {
    sim: Sim,
    store: TestStore,
    _archive_dir: TempDir,
    archive: blob::Archive,
    queue: Queue,
    scope: Scope,
}

/// The most one sync (all its jobs) may take in a test.
const SYNC_LIMIT: Duration = Duration::from_secs(300);

impl Fixture {
    async fn new(db: Db, seed: u64, size: Size) -> Result<Fixture> {
        let sim = Sim::start(SimConfig {
            size,
            seed,
            ..SimConfig::default()
        })
        .await?;
        let store = TestStore::new(db).await?;
        let archive_dir = TempDir::new("archive")?;
        let archive = blob::Archive::local(archive_dir.path().to_path_buf())?;
        let info = sim.org(0);
        // Practices alternate between a location of the organization and
        // the whole organization, so both scopes are exercised.
        let location: u64 = info.location_ids.first().context("no location")?.parse()?;
        let location_id = if seed.is_multiple_of(2) { location } else { 0 };
        store
            .store
            .upsert_practice(&NewPractice {
                practice_id: PRACTICE.into(),
                organization_id: info.organization_id.clone(),
                location_id: location_id as i64,
                api_base: info.api_base.clone(),
                sync_interval_minutes: 15,
            })
            .await?;
        let scope = Scope {
            location_id: (location_id > 0).then_some(location_id),
        };
        let queue = Queue::from(DbQueue::new(
            store.store.clone(),
            // Generous, so the tests that break pages on purpose (plan
            // counts included) never exhaust a job's deliveries.
            QueueSettings {
                max_receive_count: 20,
                visibility: Duration::from_secs(2),
            },
        ));
        Ok(Fixture {
            sim,
            store,
            _archive_dir: archive_dir,
            archive,
            queue,
            scope,
        })
    }

    /// A worker as production runs one (the simulator's credentials given
    /// directly), on the fixture's queue, with short timings for tests.
    fn worker(&self, config: SyncConfig) -> Result<Worker> {
        self.worker_with(Syncer::new(
            self.store.store.clone(),
            self.archive.clone(),
            config,
        ))
    }

    fn worker_with(&self, syncer: Syncer) -> Result<Worker> {
        self.worker_on(syncer, self.queue.clone())
    }

    fn worker_on(&self, syncer: Syncer, queue: Queue) -> Result<Worker> {
        self.worker_in(&self.store.store, syncer, queue)
    }

    /// A worker of another process: its request budget through `store`,
    /// that process's own connections.
    fn worker_in(&self, store: &store::Store, syncer: Syncer, queue: Queue) -> Result<Worker> {
        self.worker_with_client(syncer, queue, fleet_client(store, 1000.0)?)
    }

    fn worker_with_client(
        &self,
        syncer: Syncer,
        queue: Queue,
        client: ascend_client::AscendClient,
    ) -> Result<Worker> {
        self.worker_with_slots(syncer, queue, client, 3)
    }

    /// A worker that runs one job at a time: its jobs run, and land, in
    /// the order the queue hands them out.
    fn one_job_at_a_time(&self, config: SyncConfig) -> Result<Worker> {
        let syncer = Syncer::new(self.store.store.clone(), self.archive.clone(), config);
        self.worker_with_slots(
            syncer,
            self.queue.clone(),
            fleet_client(&self.store.store, 1000.0)?,
            1,
        )
    }

    fn worker_with_slots(
        &self,
        syncer: Syncer,
        queue: Queue,
        client: ascend_client::AscendClient,
        concurrency: usize,
    ) -> Result<Worker> {
        Ok(Worker::new(
            syncer,
            queue,
            client,
            Arc::new(FixedCredentials(self.sim.connection(0)?)),
            WorkerConfig {
                worker_id: "test-worker".into(),
                concurrency,
                visibility: Duration::from_secs(2),
                receive_wait: Duration::from_millis(200),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ..WorkerConfig::default()
            },
        ))
    }

    /// Force Sync Now and every job it leads to, to the end.
    async fn sync(&self, worker: &Worker) -> Result<Synced> {
        Ok(
            control::sync_and_wait(&self.store.store, &self.queue, worker, PRACTICE, SYNC_LIMIT)
                .await?,
        )
    }

    /// The initial sync, through its plan and chunk jobs; fails unless the
    /// practice is active after it.
    async fn initial(&self, worker: &Worker) -> Result<Synced> {
        let synced = self.sync(worker).await?;
        ensure!(
            synced.practice.status == PracticeStatus::Active,
            "the initial sync did not complete: {:?}; runs {:?}",
            synced.practice.status,
            synced
                .runs
                .iter()
                .map(|r| (&r.kind, r.status, &r.error_message))
                .collect::<Vec<_>>()
        );
        Ok(synced)
    }

    /// One incremental job; its run.
    async fn incremental(&self, worker: &Worker) -> Result<RunRecord> {
        let synced = self.sync(worker).await?;
        synced
            .runs
            .into_iter()
            .last()
            .context("the incremental cycle left no run")
    }

    /// Creates and updates records of every resource in the simulator.
    async fn change(&self, creates: usize, updates: usize, seed: u64) -> Result<MutateResult> {
        self.churn(None, [creates, updates, 0], seed).await
    }

    /// Creates, updates and deletes records of `resource` (or of every
    /// resource) in the simulator.
    async fn churn(
        &self,
        resource: Option<Resource>,
        [creates, updates, deletes]: [usize; 3],
        seed: u64,
    ) -> Result<MutateResult> {
        self.sim
            .mutate(
                0,
                &MutateRequest {
                    resource: resource.map(|r| r.path().trim_start_matches("/v1/").to_owned()),
                    creates,
                    updates,
                    deletes,
                    seed,
                },
            )
            .await
    }

    /// The ids of `resource` in the practice's scope that Ascend lists now.
    async fn source_ids(&self, resource: Resource) -> Result<BTreeSet<i64>> {
        let snapshot = self.sim.snapshot(0, resource, true).await?;
        Ok(snapshot
            .iter()
            .filter(|e| {
                e.record
                    .as_ref()
                    .is_some_and(|r| self.scope.contains(resource, r))
            })
            .filter_map(|e| e.id.parse().ok())
            .collect())
    }

    /// The practice's pending captured deletes of `resource`.
    async fn captured(&self, resource: Resource) -> Result<BTreeSet<i64>> {
        let table: Table = resource.name().parse()?;
        Ok(self
            .store
            .store
            .captured_delete_ids(PRACTICE, table)
            .await?
            .into_iter()
            .collect())
    }

    /// The ids of the practice's landed rows of `resource`.
    async fn landed(&self, resource: Resource) -> Result<BTreeSet<i64>> {
        let table: Table = resource.name().parse()?;
        Ok(self
            .store
            .store
            .landed_ids(PRACTICE, table)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Marks every resource reconciled whole just now, so a cycle
    /// reconciles only the hot window.
    async fn reconciled_now(&self) -> Result<()> {
        self.reconciled_at(OffsetDateTime::now_utc()).await
    }

    /// Runs cycles until every resource has been reconciled whole since
    /// `since`; fails on a cycle that did not succeed.
    async fn reconcile_everything(&self, worker: &Worker, since: OffsetDateTime) -> Result<()> {
        for _ in 0..Resource::ALL.len() {
            let mut due = false;
            for &resource in Resource::ALL {
                let state = self
                    .store
                    .store
                    .get_sync_state(PRACTICE, resource.name().parse()?)
                    .await?;
                due |= state.is_some_and(|s| {
                    s.watermark.is_some()
                        && s.not_offered_since.is_none()
                        && s.reconciled_at.is_none_or(|at| at < since)
                });
            }
            if !due {
                return Ok(());
            }
            let run = self.incremental(worker).await?;
            ensure!(run.status == RunState::Succeeded, "{run:?}");
        }
        anyhow::bail!("some resource was never reconciled whole")
    }

    /// What must hold after every cycle, deletes or not: nothing captured
    /// that Ascend still lists for the practice; every captured record
    /// still landed (until the nightly role applies it); every record
    /// Ascend lists landed and equal to the source, record by record.
    /// Returns the captured ids of every resource.
    async fn assert_captured_only_deletes(&self, when: &str) -> Result<BTreeSet<(Resource, i64)>> {
        let mut all = BTreeSet::new();
        for &resource in Resource::ALL {
            let captured = self.captured(resource).await?;
            let source = self.source_ids(resource).await?;
            let landed = self.landed(resource).await?;
            let wrong: Vec<_> = captured.intersection(&source).take(5).collect();
            ensure!(
                wrong.is_empty(),
                "{when}: {resource}: live records captured as deleted: {wrong:?}"
            );
            ensure!(
                captured.is_subset(&landed),
                "{when}: {resource}: a captured row left the landed table before the nightly pass"
            );
            // Landed rows Ascend no longer lists: captured, or waiting
            // for their resource's whole reconciliation.
            let except: Vec<u64> = landed.difference(&source).map(|id| *id as u64).collect();
            system_tests::assert_table_equals_source_except(
                &self.sim,
                0,
                &self.store.store,
                PRACTICE,
                self.scope,
                resource,
                &except,
            )
            .await
            .with_context(|| when.to_string())?;
            all.extend(captured.into_iter().map(|id| (resource, id)));
        }
        Ok(all)
    }

    async fn assert_converged(&self, when: &str) -> Result<usize> {
        let mut total = 0;
        for &resource in Resource::ALL {
            total += assert_table_equals_source(
                &self.sim,
                0,
                &self.store.store,
                PRACTICE,
                self.scope,
                resource,
            )
            .await
            .with_context(|| when.to_string())?;
        }
        Ok(total)
    }

    async fn remove(self) -> Result<()> {
        self.sim.shutdown().await;
        self.store.remove().await
    }
}

fn small_chunks() -> SyncConfig {
    // Small chunks and pages so that even a small practice is many chunks
    // of many pages.
    SyncConfig {
        chunk_target: 400,
        concurrency: 3,
        page_size: Some(50),
        ..SyncConfig::default()
    }
}

/// Initial sync, then cycles of random creates, updates and deletes, each
/// followed by an incremental job: after each, every record Ascend lists
/// is landed and equal, and nothing live is captured as deleted; once
/// every resource has been reconciled whole every delete is captured, and
/// after a nightly pass every table equals the source.
async fn converges(db: Db, seed: u64) -> Result<()> {
    let fixture = Fixture::new(db, seed, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    let initial = fixture.initial(&worker).await?;
    let chunks = initial
        .runs
        .iter()
        .filter(|r| r.kind == "initial_chunk")
        .count();
    ensure!(
        chunks > Resource::ALL.len(),
        "seed {seed}: the plan did not split anything ({chunks} chunk jobs)"
    );
    let landed = fixture
        .assert_converged(&format!("seed {seed} after the initial sync"))
        .await?;
    ensure!(landed > 1000, "seed {seed}: only {landed} records in scope");

    for cycle in 0..3u64 {
        let changes = fixture
            .churn(None, [40, 60, 15], seed * 100 + cycle)
            .await?;
        ensure!(
            changes.created.len() + changes.updated.len() > 0 && !changes.deleted.is_empty(),
            "seed {seed}: nothing changed"
        );
        let run = fixture.incremental(&worker).await?;
        ensure!(
            run.kind == "incremental" && run.status == RunState::Succeeded,
            "seed {seed} cycle {cycle}: {} {} {:?}",
            run.kind,
            run.status,
            run.error_message
        );
        // Every landed row equals the source but the captured deletes,
        // which Ascend no longer lists and which stay landed until the
        // nightly pass.
        fixture
            .assert_captured_only_deletes(&format!("seed {seed} after cycle {cycle}"))
            .await?;
    }
    // Once every resource has been reconciled whole, every delete is
    // captured.
    let since = OffsetDateTime::now_utc();
    fixture
        .reconciled_at(since - time::Duration::hours(25))
        .await?;
    fixture.reconcile_everything(&worker, since).await?;
    let captured = fixture
        .assert_every_delete_captured(&format!("seed {seed}"))
        .await?;
    ensure!(captured > 0, "seed {seed}: no delete in scope");
    // The nightly pass applies them: every table equals Ascend.
    let report = fixture.nightly_pass().await?;
    ensure!(
        report.applied() == captured as u64 && report.failed() == 0,
        "seed {seed}: {captured} captured, nightly pass {report:?}"
    );
    fixture
        .assert_converged(&format!("seed {seed} after the nightly pass"))
        .await?;
    fixture.remove().await
}

macro_rules! convergence_tests {
    ($($name:ident: $db:expr, $seeds:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() -> Result<()> {
            for seed in $seeds {
                converges($db, seed).await?;
            }
            Ok(())
        }
    )*};
}

// 20 seeds on each backend, in four tests per backend so they run in parallel.
convergence_tests! {
    converges_on_postgres_seeds_0_to_4: Db::Postgres, 0..5;
    converges_on_postgres_seeds_5_to_9: Db::Postgres, 5..10;
    converges_on_postgres_seeds_10_to_14: Db::Postgres, 10..15;
    converges_on_postgres_seeds_15_to_19: Db::Postgres, 15..20;
    converges_on_sqlite_seeds_0_to_4: Db::Sqlite, 0..5;
    converges_on_sqlite_seeds_5_to_9: Db::Sqlite, 5..10;
    converges_on_sqlite_seeds_10_to_14: Db::Sqlite, 10..15;
    converges_on_sqlite_seeds_15_to_19: Db::Sqlite, 15..20;
}

/// The chunk a chunk job's run belongs to (its job id ends `-c{chunk_id}`).
fn chunk_of(run: &RunRecord) -> Option<i64> {
    let (_, id) = run.job_id.rsplit_once("-c")?;
    id.parse().ok()
}

fn instant(text: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).with_context(|| format!("not an instant: {text:?}"))
}

/// Recent data lands first. The simulator's world is placed at today, as
/// the planner's priority window is (appointments from 90 days back to a
/// year ahead), so the initial sync's plan gives those appointments a
/// chunk of their own, ahead of history in the queue. With one job at a
/// time the queue's order is the order chunks land: every appointment of
/// the window (the simulator's, counted here from its records) had landed
/// before the first chunk of history started. With a world fixed in the
/// past the window is empty and this fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recent_appointments_land_before_history() -> Result<()> {
    // An odd seed: the whole organization, the most appointments.
    let fixture = Fixture::new(Db::Postgres, 3, Size::Small).await?;
    let worker = fixture.one_job_at_a_time(small_chunks())?;
    let initial = fixture.initial(&worker).await?;
    let store = &fixture.store.store;
    let chunks = store.list_chunks(PRACTICE).await?;

    // The plan: the window is a priority chunk that is not empty.
    let window_chunks: Vec<&store::Chunk> = chunks
        .iter()
        .filter(|c| c.table == Table::Appointments && c.priority == PRIORITY_FIRST)
        .collect();
    let first = window_chunks
        .first()
        .context("no priority chunk of appointments was planned")?;
    let window = ChunkWindow::decode(&first.filter)?
        .context("the appointments' priority chunk has no date window")?;
    let planned: i64 = window_chunks.iter().filter_map(|c| c.expected).sum();
    ensure!(
        planned > 0,
        "the priority chunk of appointments {window:?} was planned with {planned} records"
    );

    // The window's appointments at the source: the practice's, starting in
    // the window, both seen already and scheduled ahead.
    let from = instant(window.from.as_deref().context("the window has no start")?)?;
    let to = instant(window.to.as_deref().context("the window has no end")?)?;
    let now = OffsetDateTime::now_utc();
    let mut in_window = BTreeSet::new();
    let (mut seen, mut scheduled) = (0, 0);
    for entry in fixture
        .sim
        .snapshot(0, Resource::Appointments, true)
        .await?
    {
        let record = entry.record.context("a full snapshot without records")?;
        let start = instant(
            record["start"]
                .as_str()
                .context("an appointment without start")?,
        )?;
        if fixture.scope.contains(Resource::Appointments, &record) && from <= start && start < to {
            in_window.insert(entry.id.parse::<i64>()?);
            if start < now {
                seen += 1;
            } else {
                scheduled += 1;
            }
        }
    }
    ensure!(
        seen > 0 && scheduled > 0,
        "the window holds {seen} appointments seen and {scheduled} scheduled"
    );

    // What the priority chunks landed: exactly those (their archived pages
    // are the pages they landed).
    let window_chunk_ids: BTreeSet<i64> = window_chunks.iter().map(|c| c.chunk_id).collect();
    let mut landed_first = BTreeSet::new();
    for key in fixture.archive.list_pages(PRACTICE).await? {
        let chunk = key
            .run_id
            .rsplit_once("-c")
            .and_then(|(_, id)| id.parse::<i64>().ok());
        if key.resource != "appointments" || !chunk.is_some_and(|c| window_chunk_ids.contains(&c)) {
            continue;
        }
        for text in fixture.archive.get_page(&key).await? {
            let record: serde_json::Value = serde_json::from_str(&text)?;
            let id = record["id"]
                .as_str()
                .context("an archived record without id")?;
            landed_first.insert(id.parse::<i64>()?);
        }
    }
    ensure!(
        landed_first == in_window,
        "the priority chunks landed {} appointments, the window holds {}",
        landed_first.len(),
        in_window.len()
    );
    let counted: i64 = window_chunks.iter().map(|c| c.landed).sum();
    ensure!(
        counted == in_window.len() as i64,
        "{counted} landed by the chunks' count"
    );

    // The order: every priority chunk's job had ended (its pages landed)
    // when the first chunk of history started.
    let priority: HashMap<i64, i16> = chunks.iter().map(|c| (c.chunk_id, c.priority)).collect();
    let chunk_runs: Vec<(&RunRecord, i16)> = initial
        .runs
        .iter()
        .filter(|r| r.kind == "initial_chunk")
        .filter_map(|r| Some((r, *priority.get(&chunk_of(r)?)?)))
        .collect();
    let history_started = chunk_runs
        .iter()
        .filter(|(_, p)| *p == PRIORITY_HISTORY)
        .map(|(r, _)| r.started_at)
        .min()
        .context("no chunk of history ran")?;
    let mut ran_first = 0;
    for (run, _) in chunk_runs.iter().filter(|(_, p)| *p == PRIORITY_FIRST) {
        let ended = run.ended_at.context("a priority chunk's job never ended")?;
        ensure!(
            run.status == RunState::Succeeded && ended <= history_started,
            "priority chunk job {} ({}) ended at {ended}, after history started at {history_started}",
            run.job_id,
            run.status
        );
        ran_first += usize::from(chunk_of(run).is_some_and(|c| window_chunk_ids.contains(&c)));
    }
    ensure!(
        ran_first == window_chunks.len(),
        "{ran_first} of {} priority chunks of appointments ran",
        window_chunks.len()
    );
    fixture.assert_converged("after the initial sync").await?;
    fixture.remove().await
}

/// Page requests of the sync (count probes excluded), as (path, query),
/// with how many times each was made.
async fn page_requests(sim: &Sim) -> Result<HashMap<(String, String), u32>> {
    let mut seen = HashMap::new();
    for entry in sim.requests(0).await? {
        let is_list = entry.method == "GET"
            && entry.template.starts_with("/v1/")
            && !entry.template.contains('{');
        let is_count = entry.query.contains("responseFields=id");
        if is_list && !is_count {
            *seen.entry((entry.path, entry.query)).or_insert(0) += 1;
        }
    }
    ensure!(
        seen.len() > 50,
        "only {} page requests in the simulator's log",
        seen.len()
    );
    Ok(seen)
}

/// Broken pages now and then, mid-chunk: each failed chunk job is retried
/// and resumes after its last committed page. Every re-fetched page is one
/// whose first fetch failed; nothing is lost or duplicated.
async fn resumes_after_failures(db: Db, seed: u64) -> Result<()> {
    let fixture = Fixture::new(db, seed, Size::Small).await?;
    // One fetch per page, so broken pages fail their chunk job.
    let mut config = test_client_config(1000)?;
    config.body_attempts = 1;
    let worker = fixture.worker_with_client(
        Syncer::new(
            fixture.store.store.clone(),
            fixture.archive.clone(),
            SyncConfig {
                concurrency: 1,
                ..small_chunks()
            },
        ),
        fixture.queue.clone(),
        ascend_client::AscendClient::new(config)?,
    )?;
    fixture
        .sim
        .set_faults(
            0,
            &FaultConfig {
                malformed_rate: 0.02,
                truncated_rate: 0.02,
                seed: Some(seed * 10),
                ..FaultConfig::default()
            },
        )
        .await?;
    let initial = fixture.initial(&worker).await?;
    // Only a chunk's failed page makes a page be fetched again.
    let injected = initial
        .runs
        .iter()
        .filter(|r| r.kind == "initial_chunk" && r.status == RunState::Retrying)
        .inspect(|r| {
            assert!(
                r.error_class.as_deref() == Some("bad_payload"),
                "unexpected failure {:?}",
                r.error_message
            )
        })
        .count() as u32;
    ensure!(
        injected >= 3,
        "seed {seed}: only {injected} chunk attempts failed; the test proves little"
    );
    fixture
        .assert_converged(&format!("seed {seed} after resuming"))
        .await?;
    let requests = page_requests(&fixture.sim).await?;
    let refetched: u32 = requests.values().map(|n| n - 1).sum();
    ensure!(
        refetched <= injected,
        "seed {seed}: {refetched} page requests repeated, but only {injected} chunk attempts failed; committed pages were fetched again"
    );
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_resumes_after_the_last_committed_page_on_postgres() -> Result<()> {
    for seed in [3, 4] {
        resumes_after_failures(Db::Postgres, seed).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_page_resumes_after_the_last_committed_page_on_sqlite() -> Result<()> {
    for seed in [5, 6] {
        resumes_after_failures(Db::Sqlite, seed).await?;
    }
    Ok(())
}

/// One process's life: its own connections, queue adapter and worker
/// (`concurrency` chunks or resources at once), running Force Sync Now
/// until the practice's sync ends (`Some`), or until the landed pages of
/// the resources `counted` picks, summed in `pages`, reach `die_at`
/// (`None`: the process is gone, and so are its connections).
async fn one_life(
    fixture: &Fixture,
    concurrency: usize,
    pages: &Arc<AtomicU64>,
    die_at: u64,
    counted: fn(Resource) -> bool,
) -> Result<Option<control::Synced>> {
    let store = store::Store::connect(fixture.store.url()).await?;
    let queue = Queue::from(DbQueue::new(store.clone(), *fixture.queue.settings()));
    let counter = pages.clone();
    let syncer = Syncer::new(
        store.clone(),
        fixture.archive.clone(),
        SyncConfig {
            concurrency,
            ..small_chunks()
        },
    )
    .with_progress(move |landed| {
        if counted(landed.resource) {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let worker = fixture.worker_in(&store, syncer, queue.clone())?;
    let run = control::sync_and_wait(&store, &queue, &worker, PRACTICE, SYNC_LIMIT);
    let watch = async {
        while pages.load(Ordering::SeqCst) < die_at {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let finished = tokio::select! {
        synced = run => Some(synced?),
        () = watch => None,
    };
    store.close().await;
    Ok(finished)
}

/// The process dies (the worker, its jobs and its database connections are
/// dropped) after a random number of pages, again and again; every restart
/// (a new process: new connections) resumes from what was committed (the
/// messages come back when their visibility runs out). At most the pages
/// in flight at each kill are fetched twice: per concurrent chunk job, the
/// page being landed and the next one, fetched meanwhile.
async fn survives_kills(db: Db, seed: u64) -> Result<()> {
    let fixture = Fixture::new(db, seed, Size::Small).await?;
    let concurrency = 3u32;
    let pages = Arc::new(AtomicU64::new(0));
    let mut kills = 0u32;
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    loop {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = pages.load(Ordering::SeqCst) + 10 + (rng >> 33) % 30;
        let finished =
            one_life(&fixture, concurrency as usize, &pages, kill_after, |_| true).await?;
        match finished {
            Some(synced) if synced.practice.status == PracticeStatus::Active => break,
            Some(synced) => anyhow::bail!(
                "seed {seed}: the initial sync stopped without a kill: {:?}",
                synced
                    .runs
                    .iter()
                    .map(|r| (r.status, &r.error_message))
                    .collect::<Vec<_>>()
            ),
            None => {
                kills += 1;
                ensure!(kills < 200, "seed {seed}: never finishes");
                // Let aborted tasks wind down, as a dead process's would.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    ensure!(kills >= 3, "seed {seed}: killed only {kills} times");
    fixture
        .assert_converged(&format!("seed {seed} after {kills} kills"))
        .await?;
    let requests = page_requests(&fixture.sim).await?;
    let refetched: u32 = requests.values().map(|n| n - 1).sum();
    ensure!(
        refetched <= kills * concurrency * 2,
        "seed {seed}: {refetched} page requests repeated after {kills} kills of {concurrency} chunks at once (two pages in flight each)"
    );
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_initial_syncs_resume_without_loss_on_postgres() -> Result<()> {
    for seed in [1, 2] {
        survives_kills(Db::Postgres, seed).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_initial_syncs_resume_without_loss_on_sqlite() -> Result<()> {
    for seed in [7, 8] {
        survives_kills(Db::Sqlite, seed).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_practice_costs_one_call_per_resource() -> Result<()> {
    let fixture = Fixture::new(Db::Sqlite, 2, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture.incremental(&worker).await?;
    // Every resource reconciled whole today: the cycle reconciles the hot
    // window only.
    fixture.reconciled_now().await?;
    fixture.sim.reset_counters().await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Succeeded, "{run:?}");
    let counters = fixture.sim.counters(0).await?;
    for &resource in Resource::ALL {
        let calls = counters
            .calls
            .get(&format!("GET {}", resource.path()))
            .copied()
            .unwrap_or(0);
        // The hot window's reconciliation: two counts (the total, and at
        // or before the watermark) when nothing was deleted.
        let allowed = match resource {
            Resource::Patients | Resource::Appointments => 1 + 2,
            _ => 1,
        };
        ensure!(
            calls <= allowed,
            "{resource}: {calls} calls for an unchanged practice (at most {allowed})"
        );
    }
    // A whole reconciliation of an unchanged resource: two counts more.
    fixture
        .reconciled_at(OffsetDateTime::now_utc() - time::Duration::hours(25))
        .await?;
    fixture.sim.reset_counters().await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Succeeded, "{run:?}");
    let counters = fixture.sim.counters(0).await?;
    let total: u64 = counters
        .calls
        .iter()
        .filter(|(k, _)| k.starts_with("GET "))
        .map(|(_, n)| *n)
        .sum();
    let most =
        Resource::ALL.len() as u64 + 2 * 2 + 2 * sync_core::reconcile::WHOLE_PER_CYCLE as u64;
    ensure!(
        total <= most,
        "{total} calls for an unchanged practice with whole reconciliations due (at most {most})"
    );
    ensure!(
        counters.token_requests == 0,
        "a token was fetched again: {counters:?}"
    );
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_resource_does_not_stop_the_others() -> Result<()> {
    let fixture = Fixture::new(Db::Sqlite, 4, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture.change(20, 20, 1).await?;
    fixture
        .sim
        .set_faults(
            0,
            &FaultConfig {
                not_offered: vec!["transactions".into()],
                // Broken at every fetch the client makes of the page.
                script: vec![ScriptedFault {
                    fault: FaultKind::Malformed,
                    count: 3,
                    path_contains: Some("/v1/patients?".into()),
                    retry_after_secs: None,
                    slow_ms: None,
                    status: None,
                }],
                ..FaultConfig::default()
            },
        )
        .await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Partial, "{:?}", run.status);
    let failed: Vec<(&str, &str)> = run
        .resources
        .iter()
        .filter_map(|r| {
            r.error_class
                .as_deref()
                .map(|class| (r.resource.as_str(), class))
        })
        .collect();
    ensure!(
        failed == vec![("patients", "bad_payload"), ("transactions", "not_offered")],
        "{failed:?}"
    );
    for &resource in Resource::ALL {
        if resource != Resource::Patients && resource != Resource::Transactions {
            assert_table_equals_source(
                &fixture.sim,
                0,
                &fixture.store.store,
                PRACTICE,
                fixture.scope,
                resource,
            )
            .await?;
        }
    }
    let state = fixture
        .store
        .store
        .get_sync_state(PRACTICE, store::Table::Transactions)
        .await?
        .context("no state")?;
    ensure!(
        state.last_error.is_some_and(|e| e.contains("transactions")),
        "the failure is not recorded"
    );
    // The next cycle, with the faults gone, catches up.
    fixture.sim.set_faults(0, &FaultConfig::default()).await?;
    ensure!(fixture.incremental(&worker).await?.status == RunState::Succeeded);
    fixture.assert_converged("after the faults cleared").await?;
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_tables_without_an_api_call() -> Result<()> {
    let fixture = Fixture::new(Db::Postgres, 6, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture.change(30, 30, 9).await?;
    ensure!(fixture.incremental(&worker).await?.status == RunState::Succeeded);

    // A second, empty database rebuilt from the archive alone.
    let rebuilt = TestStore::new(Db::Postgres).await?;
    let info = fixture.sim.org(0);
    rebuilt
        .store
        .upsert_practice(&NewPractice {
            practice_id: PRACTICE.into(),
            organization_id: info.organization_id.clone(),
            location_id: fixture.scope.location_id.unwrap_or(0) as i64,
            api_base: info.api_base.clone(),
            sync_interval_minutes: 15,
        })
        .await?;
    fixture.sim.reset_counters().await?;
    let replayer = Syncer::new(
        rebuilt.store.clone(),
        fixture.archive.clone(),
        SyncConfig::default(),
    );
    let report = replayer.replay(PRACTICE).await?;
    ensure!(report.records > 1000, "{report:?}");
    let counters = fixture.sim.counters(0).await?;
    ensure!(
        counters.calls.values().sum::<u64>() == 0 && counters.token_requests == 0,
        "replay called the API"
    );
    for &resource in Resource::ALL {
        assert_table_equals_source(
            &fixture.sim,
            0,
            &rebuilt.store,
            PRACTICE,
            fixture.scope,
            resource,
        )
        .await?;
    }
    rebuilt.remove().await?;
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_or_removed_practice_is_not_synced_and_keeps_its_rows() -> Result<()> {
    let fixture = Fixture::new(Db::Sqlite, 10, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture.change(10, 10, 3).await?;
    for status in [PracticeStatus::Paused, PracticeStatus::Removed] {
        fixture
            .store
            .store
            .set_practice_status(PRACTICE, status, Some("by the test"))
            .await?;
        fixture.sim.reset_counters().await?;
        let refused = fixture.sync(&worker).await;
        ensure!(
            refused
                .as_ref()
                .err()
                .is_some_and(|e| e.to_string().contains(status.as_str())),
            "{status}: {refused:?}"
        );
        let counters = fixture.sim.counters(0).await?;
        ensure!(
            counters.calls.values().sum::<u64>() == 0,
            "{status}: the API was called: {counters:?}"
        );
        let practice = fixture
            .store
            .store
            .get_practice(PRACTICE)
            .await?
            .context("practice vanished")?;
        ensure!(
            practice.status == status,
            "{status}: the status was changed to {:?}",
            practice.status
        );
    }
    // Landed rows are kept as they were.
    let patients = fixture
        .store
        .store
        .landed_records(PRACTICE, store::Table::Patients)
        .await?;
    ensure!(!patients.is_empty(), "rows were removed");
    fixture.remove().await
}

/// A resource that answers 404 while the initial sync is planned is left
/// unplanned, with no watermark, and never looks synced: the practice
/// becomes active, its cycles report the resource `not_offered` (partial),
/// and when the resource is offered its whole history is pulled. Nothing of
/// it is lost for good (issue 12).
async fn a_resource_offered_late_gets_its_whole_history(db: Db) -> Result<()> {
    let fixture = Fixture::new(db, 12, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    let not_offered = FaultConfig {
        not_offered: vec!["transactions".into()],
        ..FaultConfig::default()
    };
    fixture.sim.set_faults(0, &not_offered).await?;
    fixture.initial(&worker).await?;
    let state = fixture
        .store
        .store
        .get_sync_state(PRACTICE, store::Table::Transactions)
        .await?
        .context("no state for transactions")?;
    ensure!(
        state.watermark.is_none() && state.not_offered_since.is_some(),
        "a resource not offered looks synced: {state:?}"
    );
    let run = fixture.incremental(&worker).await?;
    ensure!(
        run.status == RunState::Partial
            && run
                .resources
                .iter()
                .any(|r| r.resource == "transactions"
                    && r.error_class.as_deref() == Some("not_offered")),
        "the cycle hid the resource not offered: {run:?}"
    );

    // Offered now; other data changes meanwhile.
    fixture.sim.set_faults(0, &FaultConfig::default()).await?;
    fixture.change(20, 20, 12).await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Succeeded, "{run:?}");
    let transactions = fixture
        .store
        .store
        .landed_records(PRACTICE, store::Table::Transactions)
        .await?;
    let source = fixture
        .sim
        .snapshot(0, Resource::Transactions, false)
        .await?;
    ensure!(
        !source.is_empty() && !transactions.is_empty(),
        "the test proves little: {} in the source, {} landed",
        source.len(),
        transactions.len()
    );
    fixture
        .assert_converged("after the resource was offered")
        .await?;
    let state = fixture
        .store
        .store
        .get_sync_state(PRACTICE, store::Table::Transactions)
        .await?
        .context("no state for transactions")?;
    ensure!(
        state.watermark.is_some() && state.not_offered_since.is_none(),
        "{state:?}"
    );
    // Its next cycle is incremental again: one call.
    fixture.sim.reset_counters().await?;
    fixture.incremental(&worker).await?;
    let calls = fixture
        .sim
        .counters(0)
        .await?
        .calls
        .get(&format!("GET {}", Resource::Transactions.path()))
        .copied()
        .unwrap_or(0);
    ensure!(calls <= 1, "{calls} calls for unchanged transactions");
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_offered_late_gets_its_whole_history_on_postgres() -> Result<()> {
    a_resource_offered_late_gets_its_whole_history(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_offered_late_gets_its_whole_history_on_sqlite() -> Result<()> {
    a_resource_offered_late_gets_its_whole_history(Db::Sqlite).await
}

/// The API refuses the cached token (revoked), and the refresh meets a 503
/// at the token endpoint: a transient failure, retried with a fresh token
/// request; the practice never turns `auth_failed` (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_token_failure_never_marks_auth_failed() -> Result<()> {
    let fixture = Fixture::new(Db::Sqlite, 14, Size::Small).await?;
    // One resource at a time, so no other resource's refresh hides the
    // sequence.
    let worker = fixture.worker(SyncConfig {
        concurrency: 1,
        ..small_chunks()
    })?;
    fixture.initial(&worker).await?;
    fixture.sim.revoke_tokens(0).await?;
    fixture
        .sim
        .set_faults(
            0,
            &FaultConfig {
                script: vec![ScriptedFault {
                    fault: FaultKind::Error5xx,
                    count: 1,
                    path_contains: Some("/oauth/".into()),
                    retry_after_secs: None,
                    slow_ms: None,
                    status: Some(503),
                }],
                ..FaultConfig::default()
            },
        )
        .await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(
        run.status == RunState::Succeeded,
        "the cycle did not get through a transient token failure: {run:?}"
    );
    let practice = fixture
        .store
        .store
        .get_practice(PRACTICE)
        .await?
        .context("practice vanished")?;
    ensure!(
        practice.status == PracticeStatus::Active,
        "a transient token failure turned the practice {}",
        practice.status
    );
    let counters = fixture.sim.counters(0).await?;
    ensure!(
        counters.responses_by_status.get(&503).copied().unwrap_or(0) >= 1,
        "the token endpoint's 503 was never met: {counters:?}"
    );
    fixture.remove().await
}

/// A 403 on one resource is that resource's: the others land, the run is
/// partial, the practice stays active. Every resource answering 403 is the
/// integration not enabled: the practice turns `auth_failed` (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_403_on_one_resource_stops_only_that_resource() -> Result<()> {
    let fixture = Fixture::new(Db::Sqlite, 16, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture.change(20, 20, 16).await?;
    let visits_refused = FaultConfig {
        forbidden_resources: vec!["visits".into()],
        ..FaultConfig::default()
    };
    fixture.sim.set_faults(0, &visits_refused).await?;
    let run = fixture.incremental(&worker).await?;
    let failed: Vec<(&str, &str)> = run
        .resources
        .iter()
        .filter_map(|r| r.error_class.as_deref().map(|c| (r.resource.as_str(), c)))
        .collect();
    ensure!(
        run.status == RunState::Partial && failed == vec![("visits", "forbidden")],
        "{:?} {failed:?}",
        run.status
    );
    let practice = fixture
        .store
        .store
        .get_practice(PRACTICE)
        .await?
        .context("practice vanished")?;
    ensure!(
        practice.status == PracticeStatus::Active,
        "a 403 on one resource turned the practice {}",
        practice.status
    );
    for &resource in Resource::ALL {
        if resource != Resource::Visits {
            assert_table_equals_source(
                &fixture.sim,
                0,
                &fixture.store.store,
                PRACTICE,
                fixture.scope,
                resource,
            )
            .await?;
        }
    }
    // Allowed again: it catches up.
    fixture.sim.set_faults(0, &FaultConfig::default()).await?;
    ensure!(fixture.incremental(&worker).await?.status == RunState::Succeeded);
    fixture.assert_converged("after the 403 cleared").await?;

    // Every resource refused: not enabled, a person must act.
    fixture
        .sim
        .set_faults(
            0,
            &FaultConfig {
                forbidden: true,
                ..FaultConfig::default()
            },
        )
        .await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(
        run.status == RunState::Failed && run.error_class.as_deref() == Some("auth"),
        "{run:?}"
    );
    let practice = fixture
        .store
        .store
        .get_practice(PRACTICE)
        .await?
        .context("practice vanished")?;
    ensure!(
        practice.status == PracticeStatus::AuthFailed
            && practice
                .status_detail
                .as_deref()
                .is_some_and(|d| d.contains("not enabled")),
        "{practice:?}"
    );
    fixture.remove().await
}

/// A gateway that serves fewer records per page than asked, and says
/// nothing of it: no chunk or cycle ends early, every table still equals
/// the source (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_caps_pages_still_converges() -> Result<()> {
    let fixture = Fixture::new(Db::Postgres, 18, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    let capped = FaultConfig {
        page_cap: Some(37),
        ..FaultConfig::default()
    };
    fixture.sim.set_faults(0, &capped).await?;
    fixture.initial(&worker).await?;
    fixture
        .assert_converged("after a capped initial sync")
        .await?;
    fixture.change(200, 200, 18).await?;
    ensure!(fixture.incremental(&worker).await?.status == RunState::Succeeded);
    fixture.assert_converged("after a capped cycle").await?;
    fixture.remove().await
}

/// Ascend answers 429 with `Retry-After: 3600`: the job gives its message
/// back with a delay (a fresh copy, so no delivery is used up) instead of
/// holding a worker or retrying into the dead letters (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_retry_after_gives_the_job_back_without_dead_lettering() -> Result<()> {
    let fixture = Fixture::new(Db::Sqlite, 20, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture
        .sim
        .set_faults(
            0,
            &FaultConfig {
                rate_limited_rate: 1.0,
                retry_after_secs: Some(3600),
                ..FaultConfig::default()
            },
        )
        .await?;
    let decision = control::force_sync(
        &fixture.store.store,
        &fixture.queue,
        PRACTICE,
        queue::Trigger::Force,
        Duration::from_secs(600),
    )
    .await?;
    ensure!(
        matches!(decision, store::ForceDecision::Enqueue { .. }),
        "{decision:?}"
    );
    let drained =
        worker::drain::run_until_idle(&worker, &fixture.queue, Duration::from_secs(10)).await;
    ensure!(
        matches!(
            drained,
            Err(worker::drain::DrainError::NotIdle { remaining: 1, .. })
        ),
        "the throttled job did not wait on the queue: {drained:?}"
    );
    let depth = fixture.queue.depth().await?;
    ensure!(
        depth.delayed == 1 && depth.visible == 0 && depth.in_flight == 0 && depth.dead == 0,
        "the job is not waiting out the Retry-After on the queue: {depth:?}"
    );
    let runs = fixture
        .store
        .store
        .history(&store::HistoryQuery {
            practice_id: Some(PRACTICE.into()),
            failed_only: false,
            since: None,
            limit: 1,
        })
        .await?;
    let last = runs.first().context("no run")?;
    ensure!(
        last.status == RunState::Retrying && last.error_class.as_deref() == Some("rate_limited"),
        "{last:?}"
    );
    ensure!(
        runs.iter().all(|r| r.attempt == 1),
        "the job was retried at once instead of waiting: {runs:?}"
    );
    // The pause is the whole fleet's: it is in the organization's budget,
    // and another worker process's call for the organization ends at once
    // without reaching Ascend.
    let budgets = fixture.store.store.budgets().await?;
    let paused = budgets
        .first()
        .and_then(|b| b.paused_until)
        .context("no pause in the fleet's budget")?;
    let left = paused - time::OffsetDateTime::now_utc();
    ensure!(
        left > time::Duration::minutes(55),
        "the organization is paused for {left} only"
    );
    let api_calls = |log: Vec<ascend_sim::RequestLogEntry>| {
        log.iter().filter(|r| r.path.starts_with("/v1/")).count()
    };
    let before = api_calls(fixture.sim.requests(0).await?);
    let other_process = fleet_client(&fixture.store.store, 1000.0)?;
    let refused = system_tests::connect(&other_process, &fixture.sim, 0)?
        .count(Resource::Patients, &ascend_client::Filter::default())
        .await;
    ensure!(
        matches!(refused, Err(ascend_client::ClientError::RateLimited { retry_after: Some(wait) }) if wait > Duration::from_secs(3300)),
        "another worker did not honour the organization's pause: {refused:?}"
    );
    let after = api_calls(fixture.sim.requests(0).await?);
    ensure!(
        after == before,
        "{} calls reached Ascend during the pause",
        after - before
    );
    fixture.remove().await
}

// ---- quarantine (issue 12) -------------------------------------------------

impl Fixture {
    /// Serves records of `resource` bad; their true ids.
    async fn make_bad(
        &self,
        resource: &str,
        kind: BadRecordKind,
        count: usize,
    ) -> Result<Vec<u64>> {
        let made = self
            .sim
            .bad_records(
                0,
                &BadRecordsRequest {
                    resource: resource.into(),
                    kind,
                    count,
                    ids: Vec::new(),
                    seed: count as u64 + kind as u64,
                },
            )
            .await?;
        ensure!(made.ids.len() == count, "{made:?}");
        made.ids.iter().map(|id| Ok(id.parse::<u64>()?)).collect()
    }

    /// The practice's quarantined patients.
    async fn quarantined_patients(&self) -> Result<Vec<store::QuarantinedRecord>> {
        Ok(self
            .store
            .store
            .quarantined(PRACTICE, store::Table::Patients, None, 1000)
            .await?)
    }

    /// Every table equals the source, patients but for `except`.
    async fn assert_converged_except(&self, when: &str, except: &[u64]) -> Result<()> {
        for &resource in Resource::ALL {
            system_tests::assert_table_equals_source_except(
                &self.sim,
                0,
                &self.store.store,
                PRACTICE,
                self.scope,
                resource,
                if resource == Resource::Patients {
                    except
                } else {
                    &[]
                },
            )
            .await
            .with_context(|| format!("{when}: {resource}"))?;
        }
        Ok(())
    }

    /// The practice as `status` judges it now.
    async fn staleness(&self) -> Result<(u64, sync_core::Staleness)> {
        let overview = self.store.store.practice_overview().await?;
        let p = overview
            .iter()
            .find(|p| p.practice_id == PRACTICE)
            .context("the practice is in the overview")?;
        let health = sync_core::PracticeHealth {
            last_success: p.last_success_at,
            created_at: p.created_at,
            interval_minutes: p.sync_interval_minutes,
            quarantined: p.quarantined,
            failing_since: p.failing_since,
            count_mismatch: p
                .count_mismatch
                .map(|(table, since)| (table.resource(), since)),
        };
        Ok((
            p.quarantined,
            health.staleness(time::OffsetDateTime::now_utc()),
        ))
    }
}

/// The records of `run` that went to quarantine, for `resource`.
fn quarantined_in(run: &RunRecord, resource: &str) -> i64 {
    run.resources
        .iter()
        .filter(|r| r.resource == resource)
        .map(|r| r.quarantined)
        .sum()
}

/// Each kind of bad record, in a page with good ones: the good ones land,
/// the bad ones are quarantined whole with their reason, the watermark
/// moves on, the run is `partial`, and the practice is stale with its
/// quarantine count. The next cycle tries them again; nothing stalls.
async fn bad_records_are_quarantined_and_their_pages_land(db: Db) -> Result<()> {
    let fixture = Fixture::new(db, 22, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    let before = fixture
        .store
        .store
        .get_sync_state(PRACTICE, store::Table::Patients)
        .await?
        .and_then(|s| s.watermark)
        .context("a watermark after the initial sync")?;
    // Good changes in the same pages as the bad records.
    let changed = fixture
        .sim
        .mutate(
            0,
            &MutateRequest {
                resource: Some("patients".into()),
                creates: 5,
                updates: 10,
                deletes: 0,
                seed: 22,
            },
        )
        .await?;
    let non_numeric = fixture
        .make_bad("patients", BadRecordKind::NonNumericId, 1)
        .await?;
    let bad_time = fixture
        .make_bad("patients", BadRecordKind::BadLastModified, 1)
        .await?;
    let surrogate = fixture
        .make_bad("patients", BadRecordKind::LoneSurrogate, 1)
        .await?;
    let beyond = fixture
        .make_bad("patients", BadRecordKind::IdBeyondI64, 2)
        .await?;
    let bad: Vec<u64> = [&non_numeric, &bad_time, &surrogate, &beyond]
        .into_iter()
        .flatten()
        .copied()
        .collect();

    let run = fixture.incremental(&worker).await?;
    // Postgres refuses the lone surrogate in jsonb (quarantined with its
    // reason); SQLite keeps raw as text and lands it.
    let refused = db == Db::Postgres;
    let expected = 4 + u64::from(refused);
    ensure!(
        run.status == RunState::Partial && run.error_class.as_deref() == Some("quarantined"),
        "a run that quarantined records is not a plain success: {run:?}"
    );
    ensure!(
        quarantined_in(&run, "patients") == expected as i64,
        "history counts the quarantined records: {run:?}"
    );
    // The rest of the pages landed: the good changes are all there.
    let landed: Vec<i64> = fixture
        .store
        .store
        .landed_ids(PRACTICE, store::Table::Patients)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    for id in changed.created.iter().chain(&changed.updated) {
        let id: i64 = id.parse()?;
        ensure!(landed.contains(&id), "changed patient {id} did not land");
    }
    // The bad records are left out of the comparison: the source's truth
    // is not what was served.
    fixture
        .assert_converged_except("after a cycle with bad records", &bad)
        .await?;
    if !refused {
        // Landed as received, raw text and all.
        let raw = fixture
            .store
            .store
            .landed_raw(PRACTICE, store::Table::Patients, surrogate[0] as i64)
            .await?
            .context("the surrogate record landed on SQLite")?;
        ensure!(raw.contains(r"\ud800"), "{raw}");
    }
    // Nothing was dropped: each bad record is held whole, with a reason.
    let held = fixture.quarantined_patients().await?;
    ensure!(held.len() as u64 == expected, "{held:?}");
    let held_id = |id: String| held.iter().find(|q| q.id.as_deref() == Some(id.as_str()));
    let q = held_id(format!("{}x", non_numeric[0])).context("the non-numeric id is held")?;
    ensure!(
        q.reason.contains("not a decimal number") && q.raw.contains('x'),
        "{q:?}"
    );
    let q = held_id(bad_time[0].to_string()).context("the bad lastModified is held")?;
    ensure!(
        q.reason.contains("lastModified") && q.raw.contains("yesterday"),
        "{q:?}"
    );
    for id in &beyond {
        let q = held_id(id.to_string()).context("an id beyond i64 is held")?;
        ensure!(q.reason.contains("beyond the largest id"), "{q:?}");
    }
    if refused {
        let q = held_id(surrogate[0].to_string()).context("the refused row is held")?;
        ensure!(
            q.reason.contains("Postgres refused the record") && q.raw.contains(r"\ud800"),
            "the database's reason: {}",
            q.reason
        );
    }
    // The watermark moved on as for a clean page.
    let after = fixture
        .store
        .store
        .get_sync_state(PRACTICE, store::Table::Patients)
        .await?
        .and_then(|s| s.watermark)
        .context("a watermark")?;
    ensure!(after > before, "the watermark stalled: {before} -> {after}");
    // status: stale, with the count.
    let (count, staleness) = fixture.staleness().await?;
    ensure!(count == expected, "{count}");
    ensure!(
        staleness.stale
            && staleness.reason == Some(sync_core::StaleReason::Quarantined { records: count }),
        "{staleness:?}"
    );

    // The next cycle tries them again: still held, one more attempt each,
    // and nothing stalls.
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Partial, "{run:?}");
    let again = fixture.quarantined_patients().await?;
    ensure!(again.len() == held.len(), "{again:?}");
    ensure!(
        again.iter().all(|q| q.attempts > 1),
        "not tried again: {again:?}"
    );
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_quarantined_and_their_pages_land_on_postgres() -> Result<()> {
    bad_records_are_quarantined_and_their_pages_land(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_quarantined_and_their_pages_land_on_sqlite() -> Result<()> {
    bad_records_are_quarantined_and_their_pages_land(Db::Sqlite).await
}

/// Patients with ids beyond 2^63-1 (and one without a numeric id) exist
/// when the practice connects: the initial sync still finishes, the
/// practice turns active, those records wait in quarantine, and every other
/// record landed. (Before issue 12 the chunks holding them failed until
/// they were dead-lettered, and the practice never became active.)
async fn an_initial_sync_with_ids_beyond_i64_finishes(db: Db) -> Result<()> {
    let fixture = Fixture::new(db, 24, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    let mut bad = fixture
        .make_bad("patients", BadRecordKind::IdBeyondI64, 3)
        .await?;
    bad.extend(
        fixture
            .make_bad("patients", BadRecordKind::NonNumericId, 1)
            .await?,
    );
    let synced = fixture.initial(&worker).await?;
    ensure!(
        synced
            .runs
            .iter()
            .all(|r| !matches!(r.status, RunState::Failed | RunState::DeadLettered)),
        "{:?}",
        synced
            .runs
            .iter()
            .map(|r| (&r.kind, r.status, &r.error_message))
            .collect::<Vec<_>>()
    );
    let partial: Vec<&RunRecord> = synced
        .runs
        .iter()
        .filter(|r| r.status == RunState::Partial)
        .collect();
    ensure!(
        !partial.is_empty()
            && partial
                .iter()
                .all(|r| r.kind == "initial_chunk"
                    && r.error_class.as_deref() == Some("quarantined")),
        "the chunks that met bad records are partial: {partial:?}"
    );
    ensure!(
        partial
            .iter()
            .map(|r| quarantined_in(r, "patients"))
            .sum::<i64>()
            >= 4,
        "{partial:?}"
    );
    let held = fixture.quarantined_patients().await?;
    ensure!(held.len() == 4, "{held:?}");
    fixture
        .assert_converged_except("after the initial sync", &bad)
        .await?;
    let (count, staleness) = fixture.staleness().await?;
    ensure!(count == 4 && staleness.stale, "{count} {staleness:?}");
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_sync_with_ids_beyond_i64_finishes_on_postgres() -> Result<()> {
    an_initial_sync_with_ids_beyond_i64_finishes(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_initial_sync_with_ids_beyond_i64_finishes_on_sqlite() -> Result<()> {
    an_initial_sync_with_ids_beyond_i64_finishes(Db::Sqlite).await
}

/// Bad records that come back valid in a later page leave the quarantine,
/// by id. A record whose id could never be read cannot be matched that way
/// and stays (a person discards it).
async fn a_quarantined_record_that_comes_back_valid_leaves(db: Db) -> Result<()> {
    let fixture = Fixture::new(db, 26, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    let mut bad = fixture
        .make_bad("patients", BadRecordKind::BadLastModified, 2)
        .await?;
    let surrogate = fixture
        .make_bad("patients", BadRecordKind::LoneSurrogate, 1)
        .await?;
    let non_numeric = fixture
        .make_bad("patients", BadRecordKind::NonNumericId, 1)
        .await?;
    bad.extend(&surrogate);
    bad.extend(&non_numeric);
    fixture.incremental(&worker).await?;
    let held = fixture.quarantined_patients().await?;
    let expected = if db == Db::Postgres { 4 } else { 3 };
    ensure!(held.len() == expected, "{held:?}");

    let repaired = fixture
        .sim
        .repair_bad_records(0, &RepairRequest::default())
        .await?;
    ensure!(repaired.len() == 4, "{repaired:?}");
    let run = fixture.incremental(&worker).await?;
    let held = fixture.quarantined_patients().await?;
    ensure!(
        held.len() == 1 && held[0].id == Some(format!("{}x", non_numeric[0])),
        "only the record whose id was never readable stays: {held:?}"
    );
    ensure!(
        run.status == RunState::Partial && quarantined_in(&run, "patients") >= 1,
        "{run:?}"
    );
    // Every valid version landed: the tables equal the source.
    fixture.assert_converged("after the repair").await?;
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_record_that_comes_back_valid_leaves_on_postgres() -> Result<()> {
    a_quarantined_record_that_comes_back_valid_leaves(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_record_that_comes_back_valid_leaves_on_sqlite() -> Result<()> {
    a_quarantined_record_that_comes_back_valid_leaves(Db::Sqlite).await
}

/// Each cycle retries the quarantine's raw texts: a record an older build
/// could not read (here: set aside by hand) lands on the next cycle and
/// leaves the quarantine, without any change at the source, and the cycle
/// is a plain success again.
async fn a_fix_on_our_side_drains_the_quarantine(db: Db) -> Result<()> {
    let fixture = Fixture::new(db, 28, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    let snapshot = fixture.sim.snapshot(0, Resource::Patients, true).await?;
    let entry = snapshot.get(3).context("a patient")?;
    let mut record = entry.record.clone().context("full record")?;
    record["lastModified"] = serde_json::json!("2999-01-01T00:00:00.000Z");
    record["firstName"] = serde_json::json!("Fixed");
    let raw = serde_json::to_string(&record)?;
    let outcome = fixture
        .store
        .store
        .land(
            PRACTICE,
            store::Table::Patients,
            store::PageRecords {
                bad: &[store::BadRecord {
                    id: Some(&entry.id),
                    raw: &raw,
                    reason: "an older reader could not read it",
                }],
                ..store::PageRecords::default()
            },
            store::Checkpoint::None,
        )
        .await?;
    ensure!(outcome.quarantined == 1);
    ensure!(fixture.staleness().await?.1.stale);
    let run = fixture.incremental(&worker).await?;
    ensure!(
        fixture.quarantined_patients().await?.is_empty(),
        "the retry did not drain the quarantine"
    );
    ensure!(run.status == RunState::Succeeded, "{run:?}");
    let landed = fixture
        .store
        .store
        .landed_raw(PRACTICE, store::Table::Patients, entry.id.parse()?)
        .await?
        .context("landed")?;
    ensure!(landed.contains("Fixed"), "{landed}");
    let (count, staleness) = fixture.staleness().await?;
    ensure!(count == 0 && !staleness.stale, "{count} {staleness:?}");
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_on_our_side_drains_the_quarantine_on_postgres() -> Result<()> {
    a_fix_on_our_side_drains_the_quarantine(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_on_our_side_drains_the_quarantine_on_sqlite() -> Result<()> {
    a_fix_on_our_side_drains_the_quarantine(Db::Sqlite).await
}

/// A gateway that pretty-prints its pages (line breaks in every record):
/// each page is archived one record a line (minified, nothing else
/// changed) and lands; before issue 12 the archive refused such a page.
async fn a_pretty_printed_page_is_archived_minified_and_lands(db: Db) -> Result<()> {
    let fixture = Fixture::new(db, 30, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    let pretty = FaultConfig {
        pretty_pages: true,
        ..FaultConfig::default()
    };
    fixture.sim.set_faults(0, &pretty).await?;
    fixture.initial(&worker).await?;
    fixture.change(20, 20, 30).await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Succeeded, "{run:?}");
    fixture
        .assert_converged("after pretty-printed pages")
        .await?;
    let keys = fixture.archive.list_pages(PRACTICE).await?;
    ensure!(!keys.is_empty(), "nothing archived");
    let mut lines = 0;
    for key in keys.iter().take(20) {
        for line in fixture.archive.get_page(key).await? {
            lines += 1;
            ensure!(
                line.starts_with('{') && !line.contains("\": ") && !line.contains(",\n"),
                "not minified: {line}"
            );
            serde_json::from_str::<serde_json::Value>(&line)?;
        }
    }
    ensure!(lines > 0, "no archived records read");
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pretty_printed_page_is_archived_minified_and_lands_on_postgres() -> Result<()> {
    a_pretty_printed_page_is_archived_minified_and_lands(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pretty_printed_page_is_archived_minified_and_lands_on_sqlite() -> Result<()> {
    a_pretty_printed_page_is_archived_minified_and_lands(Db::Sqlite).await
}

/// A practice left alone while a large backlog of changes built up: its
/// incremental pass is cut short again and again (the process dies after a
/// few pages). Each attempt goes on from the last page the one before
/// landed, so the backlog is pulled once, not from its start every time,
/// and the practice catches up with nothing lost (issue 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_backlog_catches_up_across_attempts_cut_short() -> Result<()> {
    let fixture = Fixture::new(Db::Postgres, 23, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    drop(worker);
    // The backlog: 3,000 new patients, 60 pages of 50.
    fixture
        .sim
        .mutate(
            0,
            &MutateRequest {
                resource: Some("patients".into()),
                creates: 3000,
                updates: 0,
                deletes: 0,
                seed: 23,
            },
        )
        .await?;
    fixture.sim.reset_counters().await?;
    let concurrency = 3;
    let pages = Arc::new(AtomicU64::new(0));
    let (mut cut, mut lives) = (0u32, 0u32);
    loop {
        // Cut the first attempts short after ten pages of the backlog
        // (each attempt one delivery of the job's message, of the queue's
        // 20), then let one run to its end.
        let cut_after = if cut < 5 {
            pages.load(Ordering::SeqCst) + 10
        } else {
            u64::MAX
        };
        let finished = one_life(&fixture, concurrency, &pages, cut_after, |r| {
            r == Resource::Patients
        })
        .await?;
        lives += 1;
        ensure!(
            lives < 400,
            "the backlog never caught up ({cut} attempts cut short)"
        );
        match finished {
            // This life's sync ran to its end (a life that only found the
            // job of a cut-short one still queued goes round again).
            Some(synced)
                if synced
                    .runs
                    .last()
                    .is_some_and(|r| r.status == RunState::Succeeded) =>
            {
                break;
            }
            // The cut-short job's message is still invisible: wait for it.
            Some(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            None => {
                cut += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    ensure!(cut == 5, "the pass was cut short only {cut} times");
    fixture
        .assert_converged(&format!("after {cut} attempts cut short"))
        .await?;
    // The backlog's pages (every other resource asks its one unchanged
    // page again in each attempt, as it should).
    let requests = page_requests(&fixture.sim).await?;
    let refetched: u32 = requests
        .iter()
        .filter(|((path, _), _)| path.ends_with("/patients"))
        .map(|(_, n)| n - 1)
        .sum();
    // Per cut, at most the page being landed and the next one, fetched
    // meanwhile (a pass that started over would fetch every page of the
    // attempts before again: ten more each time).
    ensure!(
        refetched <= cut * 2,
        "{refetched} page requests repeated after {cut} attempts cut short: the pass started over"
    );
    let states = fixture.store.store.list_sync_states(PRACTICE).await?;
    ensure!(
        states.iter().all(|s| s.pass.is_none()),
        "a finished pass left its cursor: {states:?}"
    );
    fixture.remove().await
}

// Deletes (issue 13): captured by the workers' reconciliation, the landed
// rows kept until the nightly role applies them.

impl Fixture {
    /// One nightly pass, the window ignored, as an operator runs it.
    async fn nightly_pass(&self) -> Result<nightly::PassReport> {
        let nightly = nightly::Nightly::new(
            self.store.store.clone(),
            fleet_client(&self.store.store, 1000.0)?,
            Arc::new(FixedCredentials(self.sim.connection(0)?)),
            nightly::NightlyConfig {
                ignore_window: true,
                ..nightly::NightlyConfig::default()
            },
        );
        let (_stop, stopped) = tokio::sync::watch::channel(false);
        Ok(nightly.pass(OffsetDateTime::now_utc(), &stopped).await?)
    }

    /// Marks every resource last reconciled whole at `at`.
    async fn reconciled_at(&self, at: OffsetDateTime) -> Result<()> {
        for &resource in Resource::ALL {
            self.store
                .store
                .set_reconciled_at(PRACTICE, resource.name().parse()?, at)
                .await?;
        }
        Ok(())
    }

    /// Appointments of the practice that Ascend lists now, with a start in
    /// the hot window.
    async fn hot_appointments(&self) -> Result<Vec<i64>> {
        let (from, to) = sync_core::reconcile::hot_window(OffsetDateTime::now_utc());
        let snapshot = self.sim.snapshot(0, Resource::Appointments, true).await?;
        Ok(snapshot
            .iter()
            .filter_map(|e| e.record.as_ref().map(|r| (e, r)))
            .filter(|(_, r)| self.scope.contains(Resource::Appointments, r))
            .filter(|(_, r)| {
                r["start"]
                    .as_str()
                    .and_then(|s| instant(s).ok())
                    .is_some_and(|s| s >= from && s < to)
            })
            .filter_map(|(e, _)| e.id.parse().ok())
            .collect())
    }

    /// Every landed record that Ascend no longer lists is captured, and
    /// nothing else.
    async fn assert_every_delete_captured(&self, when: &str) -> Result<usize> {
        let mut n = 0;
        for &resource in Resource::ALL {
            let landed = self.landed(resource).await?;
            let source = self.source_ids(resource).await?;
            let gone: BTreeSet<i64> = landed.difference(&source).copied().collect();
            let captured = self.captured(resource).await?;
            ensure!(
                gone == captured,
                "{when}: {resource}: {} landed rows Ascend no longer lists, {} captured (not captured: {:?})",
                gone.len(),
                captured.len(),
                gone.difference(&captured).take(5).collect::<Vec<_>>()
            );
            n += gone.len();
        }
        Ok(n)
    }
}

/// A cycle captures the hot window's deletes at once (appointments from
/// 30 days back to a year ahead, every patient), a create and a delete in
/// one cycle included; the rest are captured once every resource has been
/// reconciled whole. No live record is captured, and every captured row
/// stays landed.
async fn deletes_are_captured(db: Db, seed: u64) -> Result<()> {
    let fixture = Fixture::new(db, seed, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    // No whole reconciliation due: the next cycle reconciles the hot
    // window only.
    fixture.reconciled_now().await?;
    let patients = fixture
        .churn(Some(Resource::Patients), [1, 0, 3], seed)
        .await?;
    let hot: Vec<i64> = fixture
        .hot_appointments()
        .await?
        .into_iter()
        .take(3)
        .collect();
    ensure!(
        hot.len() == 3,
        "seed {seed}: no appointments in the hot window"
    );
    for id in &hot {
        fixture
            .sim
            .api(
                0,
                reqwest::Method::DELETE,
                &format!("/v1/appointments/{id}"),
                None,
            )
            .await?;
    }
    let history = fixture
        .churn(Some(Resource::PatientProcedures), [0, 0, 5], seed + 1)
        .await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Succeeded, "{run:?}");

    let captured = fixture
        .assert_captured_only_deletes("after one cycle")
        .await?;
    ensure!(
        run.deletes_captured() == captured.len() as i64,
        "the run's history says {} deletes captured, {} are",
        run.deletes_captured(),
        captured.len()
    );
    for id in &patients.deleted {
        let id: i64 = id.parse()?;
        ensure!(
            captured.contains(&(Resource::Patients, id)),
            "deleted patient {id} not captured in one cycle"
        );
    }
    for id in &hot {
        ensure!(
            captured.contains(&(Resource::Appointments, *id)),
            "deleted appointment {id} of the hot window not captured in one cycle"
        );
    }
    let created: i64 = patients
        .created
        .first()
        .context("no patient created")?
        .parse()?;
    ensure!(
        fixture.landed(Resource::Patients).await?.contains(&created),
        "the patient created with the deletes did not land"
    );
    ensure!(
        !captured
            .iter()
            .any(|(r, _)| *r == Resource::PatientProcedures),
        "procedures were reconciled whole although none was due"
    );
    ensure!(!history.deleted.is_empty(), "no procedure deleted");

    // A day later every resource is reconciled whole, a few per cycle.
    let since = OffsetDateTime::now_utc();
    fixture
        .reconciled_at(since - time::Duration::hours(25))
        .await?;
    fixture.reconcile_everything(&worker, since).await?;
    fixture
        .assert_captured_only_deletes("after every resource was reconciled")
        .await?;
    let n = fixture
        .assert_every_delete_captured("after every resource was reconciled")
        .await?;
    ensure!(n >= 3 + 3, "seed {seed}: only {n} deletes in scope");
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_captured_on_postgres() -> Result<()> {
    deletes_are_captured(Db::Postgres, 2).await?;
    deletes_are_captured(Db::Postgres, 3).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_are_captured_on_sqlite() -> Result<()> {
    deletes_are_captured(Db::Sqlite, 4).await?;
    deletes_are_captured(Db::Sqlite, 5).await
}

/// A captured record that Ascend lists again leaves the captured deletes:
/// listed by the cycle's reconciliation (a patient), or landed from an
/// incremental page (a provider changed in Ascend; providers are not
/// reconciled in this cycle).
async fn seen_again(db: Db) -> Result<()> {
    let fixture = Fixture::new(db, 6, Size::Small).await?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture.reconciled_now().await?;
    let patient = *fixture
        .source_ids(Resource::Patients)
        .await?
        .iter()
        .nth(10)
        .context("no patients")?;
    let changed = fixture
        .churn(Some(Resource::Providers), [0, 1, 0], 6)
        .await?;
    let provider: i64 = changed
        .updated
        .first()
        .context("no provider changed")?
        .parse()?;
    let store = &fixture.store.store;
    let now = OffsetDateTime::now_utc();
    let mut captured = 0;
    for (table, id) in [(Table::Patients, patient), (Table::Providers, provider)] {
        captured += store
            .capture_deletes(PRACTICE, table, &[id], model::DeleteDetection::Daily, now)
            .await?;
    }
    ensure!(captured == 2, "only {captured} captured");
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Succeeded, "{run:?}");
    ensure!(
        fixture.captured(Resource::Patients).await?.is_empty(),
        "a patient listed again is still captured"
    );
    ensure!(
        fixture.captured(Resource::Providers).await?.is_empty(),
        "a provider landed again is still captured"
    );
    fixture.assert_converged("after the cycle").await?;
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_seen_again_cancels_its_capture_on_postgres() -> Result<()> {
    seen_again(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_seen_again_cancels_its_capture_on_sqlite() -> Result<()> {
    seen_again(Db::Sqlite).await
}

/// An appointment moved to another location leaves the practice of its
/// old location: captured there as `left_scope` in the next cycle.
async fn moved_out_of_scope(db: Db) -> Result<()> {
    // An even seed: the practice is one location of its organization.
    let fixture = Fixture::new(db, 8, Size::Small).await?;
    let here = fixture
        .scope
        .location_id
        .context("not a location's practice")?;
    let elsewhere = fixture
        .sim
        .org(0)
        .location_ids
        .iter()
        .filter_map(|l| l.parse::<u64>().ok())
        .find(|l| *l != here)
        .context("the organization has one location")?;
    let worker = fixture.worker(small_chunks())?;
    fixture.initial(&worker).await?;
    fixture.reconciled_now().await?;
    let moved = *fixture
        .hot_appointments()
        .await?
        .first()
        .context("no appointment in the hot window")?;
    fixture
        .sim
        .api(
            0,
            reqwest::Method::PUT,
            &format!("/v1/appointments/{moved}"),
            Some(serde_json::json!({"location": {"id": elsewhere.to_string()}})),
        )
        .await?;
    let run = fixture.incremental(&worker).await?;
    ensure!(run.status == RunState::Succeeded, "{run:?}");
    let captured = fixture
        .store
        .store
        .captured_deletes(PRACTICE, Table::Appointments)
        .await?;
    ensure!(
        captured.len() == 1
            && captured[0].record_id == moved
            && captured[0].how == model::DeleteDetection::LeftScope,
        "{captured:?}"
    );
    fixture
        .assert_captured_only_deletes("after the move")
        .await?;
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_moved_elsewhere_is_captured_for_its_old_location_on_postgres() -> Result<()>
{
    moved_out_of_scope(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_appointment_moved_elsewhere_is_captured_for_its_old_location_on_sqlite() -> Result<()> {
    moved_out_of_scope(Db::Sqlite).await
}
