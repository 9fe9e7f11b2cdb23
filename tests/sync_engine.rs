//! The sync engine end to end: the simulator as Ascend, a real store
//! (Postgres and SQLite), a local raw archive. What a practice would notice:
//! its tables equal what Ascend holds, after the initial sync and after every
//! incremental cycle; a crash loses and duplicates nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_client::{OrgClient, Resource};
use ascend_sim::{FaultConfig, FaultKind, MutateRequest, ScriptedFault, SimConfig, Size};
use store::NewPractice;
use sync_core::Scope;
use system_tests::{Db, Sim, TempDir, TestStore, assert_table_equals_source, connect, test_client};
use worker::{RunStatus, SyncConfig, Syncer};

const PRACTICE: &str = "practice-1";

/// One practice of organization 0 of a simulator, ready to sync.
struct Fixture {
    sim: Sim,
    store: TestStore,
    _archive_dir: TempDir,
    archive: blob::Archive,
    org: OrgClient,
    scope: Scope,
}

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
        let client = test_client(1000)?;
        let org = connect(&client, &sim, 0)?;
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
        Ok(Fixture {
            sim,
            store,
            _archive_dir: archive_dir,
            archive,
            org,
            scope,
        })
    }

    fn syncer(&self, config: SyncConfig) -> Syncer {
        Syncer::new(self.store.store.clone(), self.archive.clone(), config)
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
    }
}

/// Initial sync, then cycles of random changes, each followed by an
/// incremental run: after each, every table equals the source.
async fn converges(db: Db, seed: u64) -> Result<()> {
    let fixture = Fixture::new(db, seed, Size::Small).await?;
    let syncer = fixture.syncer(small_chunks());
    let initial = syncer.run_initial(PRACTICE, &fixture.org).await?;
    ensure!(
        initial.complete,
        "seed {seed}: initial sync incomplete: {:?}",
        initial.failures
    );
    ensure!(
        initial.chunks_planned > Resource::ALL.len() as u64,
        "seed {seed}: the plan did not split anything"
    );
    let landed = fixture
        .assert_converged(&format!("seed {seed} after the initial sync"))
        .await?;
    ensure!(landed > 1000, "seed {seed}: only {landed} records in scope");
    let practice = fixture
        .store
        .store
        .get_practice(PRACTICE)
        .await?
        .context("practice vanished")?;
    ensure!(
        practice.status == store::PracticeStatus::Active,
        "seed {seed}: practice is {:?}",
        practice.status
    );

    for cycle in 0..3u64 {
        let changes = fixture
            .sim
            .mutate(
                0,
                &MutateRequest {
                    resource: None,
                    creates: 40,
                    updates: 60,
                    deletes: 0,
                    seed: seed * 100 + cycle,
                },
            )
            .await?;
        ensure!(
            changes.created.len() + changes.updated.len() > 0,
            "seed {seed}: nothing changed"
        );
        let run = syncer.run_incremental(PRACTICE, &fixture.org).await?;
        ensure!(
            run.status == RunStatus::Succeeded,
            "seed {seed} cycle {cycle}: {:?}",
            run.resources
        );
        fixture
            .assert_converged(&format!("seed {seed} after cycle {cycle}"))
            .await?;
    }
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

/// Failures at chosen pages: the chunk stops there, and the next run
/// resumes after the last committed page. Every re-fetched page is one whose
/// first fetch failed; nothing is lost or duplicated.
async fn resumes_after_failures(db: Db, seed: u64) -> Result<()> {
    let fixture = Fixture::new(db, seed, Size::Small).await?;
    let syncer = fixture.syncer(SyncConfig {
        concurrency: 1,
        ..small_chunks()
    });
    // Plan first (its count calls are not pages), then break pages.
    syncer.plan_initial(PRACTICE, &fixture.org).await?;
    let mut injected = 0;
    let mut runs = 0;
    loop {
        runs += 1;
        ensure!(runs < 50, "seed {seed}: the initial sync does not finish");
        // The first runs meet broken pages now and then, mid-chunk; later
        // runs meet none and finish.
        let faults = if runs <= 4 {
            FaultConfig {
                malformed_rate: 0.03,
                truncated_rate: 0.03,
                seed: Some(seed * 10 + runs),
                ..FaultConfig::default()
            }
        } else {
            FaultConfig::default()
        };
        fixture.sim.set_faults(0, &faults).await?;
        let report = syncer.run_initial(PRACTICE, &fixture.org).await?;
        ensure!(
            report
                .failures
                .iter()
                .all(|(_, e)| e.contains("unusable answer")),
            "seed {seed}: unexpected failures {:?}",
            report.failures
        );
        injected += report.failures.len() as u32;
        if report.complete {
            break;
        }
    }
    ensure!(
        injected >= 3,
        "seed {seed}: only {injected} runs failed; the test proves little"
    );
    fixture
        .assert_converged(&format!("seed {seed} after resuming"))
        .await?;
    let requests = page_requests(&fixture.sim).await?;
    let refetched: u32 = requests.values().map(|n| n - 1).sum();
    ensure!(
        refetched <= injected,
        "seed {seed}: {refetched} page requests repeated, but only {injected} pages failed; committed pages were fetched again"
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

/// The process dies (its future is dropped) after a random number of pages,
/// again and again; every restart resumes. At most the pages in flight at
/// each kill (one per concurrent chunk) are fetched twice.
async fn survives_kills(db: Db, seed: u64) -> Result<()> {
    let fixture = Fixture::new(db, seed, Size::Small).await?;
    let concurrency = 3u32;
    let pages = Arc::new(AtomicU64::new(0));
    let counter = pages.clone();
    let syncer = fixture
        .syncer(SyncConfig {
            concurrency: concurrency as usize,
            ..small_chunks()
        })
        .with_progress(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
        });
    let mut kills = 0u32;
    let mut rng = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    loop {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let kill_after = pages.load(Ordering::SeqCst) + 3 + (rng >> 33) % 15;
        let run = syncer.run_initial(PRACTICE, &fixture.org);
        let watch = async {
            while pages.load(Ordering::SeqCst) < kill_after {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        let finished = tokio::select! {
            report = run => Some(report?),
            () = watch => None,
        };
        match finished {
            Some(report) if report.complete => break,
            Some(report) => anyhow::bail!(
                "seed {seed}: initial sync stopped without a kill: {:?}",
                report.failures
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
        refetched <= kills * concurrency,
        "seed {seed}: {refetched} page requests repeated after {kills} kills of {concurrency} chunks at once"
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
    let syncer = fixture.syncer(small_chunks());
    ensure!(syncer.run_initial(PRACTICE, &fixture.org).await?.complete);
    syncer.run_incremental(PRACTICE, &fixture.org).await?;
    fixture.sim.reset_counters().await?;
    let run = syncer.run_incremental(PRACTICE, &fixture.org).await?;
    ensure!(run.status == RunStatus::Succeeded);
    let counters = fixture.sim.counters(0).await?;
    for &resource in Resource::ALL {
        let calls = counters
            .calls
            .get(&format!("GET {}", resource.path()))
            .copied()
            .unwrap_or(0);
        ensure!(
            calls <= 1,
            "{resource}: {calls} calls for an unchanged practice"
        );
    }
    ensure!(
        counters.token_requests == 0,
        "a token was fetched again: {counters:?}"
    );
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_resource_does_not_stop_the_others() -> Result<()> {
    let fixture = Fixture::new(Db::Sqlite, 4, Size::Small).await?;
    let syncer = fixture.syncer(small_chunks());
    ensure!(syncer.run_initial(PRACTICE, &fixture.org).await?.complete);
    fixture
        .sim
        .mutate(
            0,
            &MutateRequest {
                resource: None,
                creates: 20,
                updates: 20,
                deletes: 0,
                seed: 1,
            },
        )
        .await?;
    fixture
        .sim
        .set_faults(
            0,
            &FaultConfig {
                not_offered: vec!["transactions".into()],
                script: vec![ScriptedFault {
                    fault: FaultKind::Malformed,
                    count: 1,
                    path_contains: Some("/v1/patients?".into()),
                    retry_after_secs: None,
                    slow_ms: None,
                    status: None,
                }],
                ..FaultConfig::default()
            },
        )
        .await?;
    let run = syncer.run_incremental(PRACTICE, &fixture.org).await?;
    ensure!(run.status == RunStatus::Partial, "{:?}", run.status);
    let failed: Vec<(Resource, &str)> = run
        .resources
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .map(|(class, _)| (r.resource, class.as_str()))
        })
        .collect();
    ensure!(
        failed
            == vec![
                (Resource::Patients, "bad_payload"),
                (Resource::Transactions, "not_offered")
            ],
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
    ensure!(syncer.run_incremental(PRACTICE, &fixture.org).await?.status == RunStatus::Succeeded);
    fixture.assert_converged("after the faults cleared").await?;
    fixture.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_rebuilds_the_tables_without_an_api_call() -> Result<()> {
    let fixture = Fixture::new(Db::Postgres, 6, Size::Small).await?;
    let syncer = fixture.syncer(small_chunks());
    ensure!(syncer.run_initial(PRACTICE, &fixture.org).await?.complete);
    fixture
        .sim
        .mutate(
            0,
            &MutateRequest {
                resource: None,
                creates: 30,
                updates: 30,
                deletes: 0,
                seed: 9,
            },
        )
        .await?;
    ensure!(syncer.run_incremental(PRACTICE, &fixture.org).await?.status == RunStatus::Succeeded);

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
    let syncer = fixture.syncer(small_chunks());
    ensure!(syncer.run_initial(PRACTICE, &fixture.org).await?.complete);
    fixture
        .sim
        .mutate(
            0,
            &MutateRequest {
                resource: None,
                creates: 10,
                updates: 10,
                deletes: 0,
                seed: 3,
            },
        )
        .await?;
    for status in [
        store::PracticeStatus::Paused,
        store::PracticeStatus::Removed,
    ] {
        fixture
            .store
            .store
            .set_practice_status(PRACTICE, status, Some("by the test"))
            .await?;
        fixture.sim.reset_counters().await?;
        let refused = syncer.run_incremental(PRACTICE, &fixture.org).await;
        ensure!(
            matches!(refused, Err(worker::SyncError::NotSyncable { .. })),
            "{status}: {refused:?}"
        );
        ensure!(
            syncer.run_initial(PRACTICE, &fixture.org).await.is_err(),
            "{status}: initial sync ran"
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
