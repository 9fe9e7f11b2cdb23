//! One pull per organization (issue 14), end to end: a dental group (one
//! Ascend organization, many locations, each its own practice) pulls its
//! organization-wide resources once per cycle whatever its number of
//! locations, every location's tables still equal what Ascend holds for
//! it, a location connected later copies what has landed, and each
//! practice can see, resource by resource, that its copy is complete.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_client::Resource;
use ascend_sim::{MutateRequest, SimConfig, Size};
use model::Trigger;
use queue::{DbQueue, Queue, QueueSettings};
use store::{NewPractice, PracticeStatus, RunRecord, Table};
use sync_core::Scope;
use system_tests::{Db, Sim, TempDir, TestStore, assert_table_equals_source, fleet_client};
use time::OffsetDateTime;
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

/// The most one round of syncs may take in a test.
const LIMIT: Duration = Duration::from_secs(300);

/// A dental group: one simulated organization with `locations` locations,
/// and a practice for each of the first `connected`.
struct Group {
    sim: Sim,
    store: TestStore,
    _archive_dir: TempDir,
    worker: Worker,
    queue: Queue,
    /// (practice id, scope), in connection order.
    practices: Vec<(String, Scope)>,
}

impl Group {
    async fn new(db: Db, locations: u32, connected: usize) -> Result<Group> {
        let sim = Sim::start(SimConfig {
            size: Size::Tiny,
            seed: 14,
            locations: Some(locations),
            ..SimConfig::default()
        })
        .await?;
        let store = TestStore::new(db).await?;
        let archive_dir = TempDir::new("archive")?;
        let archive = blob::Archive::local(archive_dir.path().to_path_buf())?;
        let queue = Queue::from(DbQueue::new(
            store.store.clone(),
            QueueSettings {
                max_receive_count: 20,
                visibility: Duration::from_secs(5),
            },
        ));
        let syncer = Syncer::new(
            store.store.clone(),
            archive,
            SyncConfig {
                // Chunks and pages small enough that an organization-wide
                // pull is several chunks, so locations wait for it.
                chunk_target: 60,
                concurrency: 3,
                page_size: Some(25),
                reconcile: sync_core::reconcile::Policy::every_cycle(),
            },
        );
        let worker = Worker::new(
            syncer,
            queue.clone(),
            fleet_client(&store.store, 1000.0)?,
            Arc::new(FixedCredentials(sim.connection(0)?)),
            WorkerConfig {
                worker_id: "test-worker".into(),
                concurrency: 4,
                visibility: Duration::from_secs(5),
                receive_wait: Duration::from_millis(200),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ..WorkerConfig::default()
            },
        );
        let mut group = Group {
            sim,
            store,
            _archive_dir: archive_dir,
            worker,
            queue,
            practices: Vec::new(),
        };
        for _ in 0..connected {
            group.connect().await?;
        }
        Ok(group)
    }

    /// Connects the next location of the organization as a practice.
    async fn connect(&mut self) -> Result<String> {
        let info = self.sim.org(0);
        let n = self.practices.len();
        let location: u64 = info
            .location_ids
            .get(n)
            .context("no location left to connect")?
            .parse()?;
        let practice_id = format!("loc-{}", n + 1);
        self.store
            .store
            .upsert_practice(&NewPractice {
                practice_id: practice_id.clone(),
                organization_id: info.organization_id.clone(),
                location_id: location as i64,
                api_base: info.api_base.clone(),
                sync_interval_minutes: 15,
            })
            .await?;
        self.practices.push((
            practice_id.clone(),
            Scope {
                location_id: Some(location),
            },
        ));
        Ok(practice_id)
    }

    /// Force Sync Now for every practice at once, then every job it leads
    /// to, to the end. Returns each practice's runs of this round.
    async fn sync_all(&self) -> Result<BTreeMap<String, Vec<RunRecord>>> {
        let ids: Vec<&str> = self.practices.iter().map(|(p, _)| p.as_str()).collect();
        self.sync(&ids).await
    }

    async fn sync(&self, ids: &[&str]) -> Result<BTreeMap<String, Vec<RunRecord>>> {
        let started = OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
        for id in ids {
            control::force_sync(
                &self.store.store,
                &self.queue,
                id,
                Trigger::Admin,
                control::FORCE_CLAIM,
            )
            .await?;
        }
        worker::drain::run_until_idle(&self.worker, &self.queue, LIMIT).await?;
        let mut runs = BTreeMap::new();
        for id in ids {
            let mut mine = self
                .store
                .store
                .history(&store::HistoryQuery {
                    practice_id: Some((*id).to_owned()),
                    failed_only: false,
                    since: Some(started),
                    limit: 10_000,
                })
                .await?;
            mine.reverse();
            runs.insert((*id).to_owned(), mine);
        }
        Ok(runs)
    }

    /// GET calls per resource since the last reset.
    async fn calls(&self) -> Result<BTreeMap<Resource, u64>> {
        let counters = self.sim.counters(0).await?;
        Ok(Resource::ALL
            .iter()
            .map(|&r| {
                let n = counters
                    .calls
                    .get(&format!("GET {}", r.path()))
                    .copied()
                    .unwrap_or(0);
                (r, n)
            })
            .collect())
    }

    /// Every practice's every table equals the simulator's records in its
    /// scope.
    async fn assert_converged(&self, when: &str) -> Result<()> {
        for (practice_id, scope) in &self.practices {
            for &resource in Resource::ALL {
                assert_table_equals_source(
                    &self.sim,
                    0,
                    &self.store.store,
                    practice_id,
                    *scope,
                    resource,
                )
                .await
                .with_context(|| format!("{when}: {practice_id} {resource}"))?;
            }
        }
        Ok(())
    }

    async fn status(&self, practice_id: &str) -> Result<PracticeStatus> {
        Ok(self
            .store
            .store
            .get_practice(practice_id)
            .await?
            .context("the practice is registered")?
            .status)
    }

    async fn remove(self) -> Result<()> {
        self.sim.shutdown().await;
        self.store.remove().await
    }
}

fn org_wide(calls: &BTreeMap<Resource, u64>) -> u64 {
    calls
        .iter()
        .filter(|(r, _)| !Scope::is_location_scoped(**r))
        .map(|(_, n)| n)
        .sum()
}

fn runs_failed(runs: &BTreeMap<String, Vec<RunRecord>>) -> Vec<String> {
    runs.values()
        .flatten()
        .filter(|r| r.status.is_failure())
        .map(|r| format!("{} {} {:?}", r.practice_id, r.kind, r.error_message))
        .take(3)
        .collect()
}

/// The API calls a group of `locations` makes for its organization-wide
/// resources: the initial sync, then an incremental cycle after changes.
async fn org_wide_calls(db: Db, locations: u32) -> Result<(u64, u64)> {
    let group = Group::new(db, locations.max(3), locations as usize).await?;
    let runs = group.sync_all().await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    for (p, _) in &group.practices {
        ensure!(
            group.status(p).await? == PracticeStatus::Active,
            "{p} did not finish its initial sync: {:?}",
            runs[p]
                .iter()
                .map(|r| (&r.kind, r.status, &r.error_message))
                .collect::<Vec<_>>()
        );
    }
    let initial = org_wide(&group.calls().await?);
    group.assert_converged("after the initial sync").await?;
    group.sim.reset_counters().await?;
    group
        .sim
        .mutate(
            0,
            &MutateRequest {
                resource: None,
                creates: 20,
                updates: 30,
                deletes: 0,
                seed: 7,
            },
        )
        .await?;
    let runs = group.sync_all().await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    let incremental = org_wide(&group.calls().await?);
    group.assert_converged("after an incremental cycle").await?;
    group.remove().await?;
    Ok((initial, incremental))
}

/// A group's cost in API calls for organization-wide resources does not
/// grow with its number of locations: 3 and 10 locations make the calls
/// of one, for the initial sync and for an incremental cycle (which
/// reconciles every resource), and every location's tables equal its
/// scope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_pulls_its_organization_wide_resources_once_whatever_its_size() -> Result<()> {
    let one = org_wide_calls(Db::Postgres, 1).await?;
    let three = org_wide_calls(Db::Postgres, 3).await?;
    let ten = org_wide_calls(Db::Postgres, 10).await?;
    ensure!(
        one.0 > 0 && one.1 > 0,
        "one location made no calls: {one:?}"
    );
    ensure!(
        three == one && ten == one,
        "organization-wide calls (initial, incremental): 1 location {one:?}, 3 locations \
         {three:?}, 10 locations {ten:?}"
    );
    Ok(())
}

async fn a_location_added_later_copies_what_has_landed(db: Db) -> Result<()> {
    let mut group = Group::new(db, 4, 3).await?;
    let runs = group.sync_all().await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    let added = group.connect().await?;
    group.sim.reset_counters().await?;
    let runs = group.sync(&[added.as_str()]).await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    ensure!(group.status(&added).await? == PracticeStatus::Active);
    let calls = group.calls().await?;
    ensure!(
        org_wide(&calls) == 0,
        "the new location pulled organization-wide resources again: {calls:?}"
    );
    ensure!(
        calls[&Resource::Appointments] > 0,
        "the new location did not pull its own appointments: {calls:?}"
    );
    let patients = group
        .store
        .store
        .get_sync_state(&added, Table::Patients)
        .await?
        .context("the new location has a patients state")?;
    ensure!(
        patients.shared_from.is_some() && patients.watermark.is_some(),
        "{patients:?}"
    );
    group.assert_converged("after a location was added").await?;
    group.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_added_later_copies_what_has_landed_on_postgres() -> Result<()> {
    a_location_added_later_copies_what_has_landed(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_location_added_later_copies_what_has_landed_on_sqlite() -> Result<()> {
    a_location_added_later_copies_what_has_landed(Db::Sqlite).await
}

/// A row deleted from the landed tables behind the sync's back, at the
/// location that pulls and at one that copies: the next cycle's
/// reconciliation reports it (the run's `recovered`, the copy made whole)
/// and the tables equal Ascend again; every resource of every location
/// is then reported complete. Pausing the location that pulled does not
/// stop the others, and its rows stay as they were.
async fn gaps_are_reported_and_repaired(db: Db) -> Result<()> {
    let group = Group::new(db, 3, 3).await?;
    let runs = group.sync_all().await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    let runs = group.sync_all().await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    // Everything complete once synced (and reconciled: the first
    // incremental cycle reconciles every resource with this policy).
    for (p, _) in &group.practices {
        for state in group.store.store.list_sync_states(p).await? {
            let c = state.completeness;
            ensure!(
                state.not_offered_since.is_some()
                    || (c.complete_at.is_some() && c.mismatch_since.is_none()),
                "{p} {}: not complete after a full sync: {c:?}",
                state.table
            );
        }
    }
    // The gaps: one patient row removed at each of two locations.
    // Different records, so the puller's repair does not also repair the
    // copy by chance.
    let ids = group
        .store
        .store
        .landed_ids("loc-1", Table::Patients)
        .await?;
    ensure!(ids.len() > 3, "too few patients: {}", ids.len());
    for (p, n) in [("loc-1", ids.len() / 2), ("loc-2", ids.len() / 3)] {
        group.store.delete_row(p, Table::Patients, ids[n].0).await?;
    }
    let runs = group.sync_all().await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    let patients_line = |r: &RunRecord| {
        r.resources
            .iter()
            .find(|c| c.resource == "patients")
            .cloned()
    };
    // Each gap is reported by the run that repaired it: landed again by
    // the puller's reconciliation (`recovered`), or a copy made whole
    // ("copied whole to loc-N"), whichever location pulled this cycle.
    let lines: Vec<store::ResourceCounts> =
        runs.values().flatten().filter_map(patients_line).collect();
    let recovered: i64 = lines.iter().map(|c| c.recovered).sum();
    let made_whole: usize = lines
        .iter()
        .filter_map(|c| c.shared.as_deref())
        .filter_map(|s| s.split("copied whole to ").nth(1))
        .map(|s| s.split(';').next().unwrap_or("").matches("loc-").count())
        .sum();
    ensure!(
        recovered + made_whole as i64 >= 2,
        "two gaps, reported {recovered} recovered and {made_whole} copies made whole: {lines:?}"
    );
    group
        .assert_converged("after the gaps were repaired")
        .await?;
    for (p, _) in &group.practices {
        let patients = group
            .store
            .store
            .get_sync_state(p, Table::Patients)
            .await?
            .context("patients state")?;
        ensure!(
            patients.completeness.mismatch_since.is_none()
                && patients.completeness.ascend_count == patients.completeness.held_count,
            "{p}: {:?}",
            patients.completeness
        );
    }

    // Paused, the location that pulls leaves the pulling to the others.
    let puller = "loc-1";
    group
        .store
        .store
        .set_practice_status(puller, PracticeStatus::Paused, Some("test"))
        .await?;
    let before = group
        .store
        .store
        .landed_ids(puller, Table::Patients)
        .await?;
    group
        .sim
        .mutate(
            0,
            &MutateRequest {
                resource: Some("patients".into()),
                creates: 5,
                updates: 5,
                deletes: 0,
                seed: 11,
            },
        )
        .await?;
    let runs = group.sync(&["loc-2", "loc-3"]).await?;
    ensure!(runs_failed(&runs).is_empty(), "{:?}", runs_failed(&runs));
    for (p, scope) in group.practices.iter().skip(1) {
        assert_table_equals_source(
            &group.sim,
            0,
            &group.store.store,
            p,
            *scope,
            Resource::Patients,
        )
        .await
        .with_context(|| format!("{p} while {puller} is paused"))?;
    }
    ensure!(
        group
            .store
            .store
            .landed_ids(puller, Table::Patients)
            .await?
            == before,
        "the paused location's rows changed"
    );
    group.remove().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_are_reported_and_repaired_on_postgres() -> Result<()> {
    gaps_are_reported_and_repaired(Db::Postgres).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_are_reported_and_repaired_on_sqlite() -> Result<()> {
    gaps_are_reported_and_repaired(Db::Sqlite).await
}
