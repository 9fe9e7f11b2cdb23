//! The nightly role end to end (issue 13, the apply half): the simulator as
//! Ascend, a practice synced through the production job path into a real
//! store (Postgres and SQLite), deletes captured with
//! `Store::capture_deletes`, and nightly passes (`nightly::Nightly`) that
//! confirm with the simulator and apply.
//!
//! What an operator would notice: a captured delete's row stays until the
//! practice's window and is then gone and kept in `deleted_records`; a
//! record Ascend still lists is never removed (its capture is cancelled);
//! a pass killed at any point resumes to the same tables; a paused,
//! removed or `auth_failed` practice keeps its rows.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_client::Resource;
use ascend_sim::{MutateRequest, SimConfig, Size};
use model::DeleteDetection;
use nightly::{Nightly, NightlyConfig, PracticeResult};
use queue::{DbQueue, Queue, QueueSettings};
use store::{NewPractice, NightlyPassStatus, PracticeStatus, Table};
use sync_core::Scope;
use sync_core::nightly::{Hold, Zone};
use system_tests::{Db, Sim, TempDir, TestStore, assert_table_equals_source, fleet_client};
use time::OffsetDateTime;
use tokio::sync::watch;
use worker::credentials::{Credentials, CredentialsError, CredentialsFuture, FixedCredentials};
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

const PRACTICE: &str = "practice-1";

/// A practice of organization 0 (one location), synced.
struct Fixture {
    sim: Sim,
    store: TestStore,
    _archive_dir: TempDir,
    scope: Scope,
    /// Keeps the passes' stop signal open.
    stop: (watch::Sender<bool>, watch::Receiver<bool>),
}

impl Fixture {
    async fn synced(db: Db, seed: u64) -> Result<Fixture> {
        let sim = Sim::start(SimConfig {
            size: Size::Small,
            seed,
            ..SimConfig::default()
        })
        .await?;
        let store = TestStore::new(db).await?;
        let archive_dir = TempDir::new("archive")?;
        let archive = blob::Archive::local(archive_dir.path().to_path_buf())?;
        let info = sim.org(0);
        let location: u64 = info.location_ids.first().context("no location")?.parse()?;
        store
            .store
            .upsert_practice(&NewPractice {
                practice_id: PRACTICE.into(),
                organization_id: info.organization_id.clone(),
                location_id: i64::try_from(location)?,
                api_base: info.api_base.clone(),
                sync_interval_minutes: 15,
            })
            .await?;
        let queue = Queue::from(DbQueue::new(
            store.store.clone(),
            QueueSettings {
                max_receive_count: 20,
                visibility: Duration::from_secs(2),
            },
        ));
        let worker = Worker::new(
            Syncer::new(store.store.clone(), archive, SyncConfig::default()),
            queue.clone(),
            fleet_client(&store.store, 1000.0)?,
            Arc::new(FixedCredentials(sim.connection(0)?)),
            WorkerConfig {
                worker_id: "test-worker".into(),
                concurrency: 3,
                visibility: Duration::from_secs(2),
                receive_wait: Duration::from_millis(200),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ..WorkerConfig::default()
            },
        );
        let synced = control::sync_and_wait(
            &store.store,
            &queue,
            &worker,
            PRACTICE,
            Duration::from_secs(300),
        )
        .await?;
        ensure!(
            synced.practice.status == PracticeStatus::Active,
            "the initial sync did not complete: {:?}",
            synced.practice.status
        );
        Ok(Fixture {
            sim,
            store,
            _archive_dir: archive_dir,
            scope: Scope {
                location_id: Some(location),
            },
            stop: watch::channel(false),
        })
    }

    fn nightly(&self, config: NightlyConfig) -> Result<Nightly> {
        self.nightly_with(config, Arc::new(FixedCredentials(self.sim.connection(0)?)))
    }

    fn nightly_with(
        &self,
        config: NightlyConfig,
        credentials: Arc<dyn Credentials>,
    ) -> Result<Nightly> {
        Ok(Nightly::new(
            self.store.store.clone(),
            fleet_client(&self.store.store, 1000.0)?,
            credentials,
            config,
        ))
    }

    async fn landed_ids(&self) -> Result<BTreeSet<i64>> {
        Ok(self
            .store
            .store
            .landed_records(PRACTICE, Table::Appointments)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect())
    }

    /// Deletes appointments in the simulator; returns those of them that
    /// are landed for the practice (its location's), at least `min`.
    async fn delete_landed(&self, count: usize, min: usize, seed: u64) -> Result<BTreeSet<i64>> {
        let landed = self.landed_ids().await?;
        let result = self
            .sim
            .mutate(
                0,
                &MutateRequest {
                    resource: Some("appointments".into()),
                    creates: 0,
                    updates: 0,
                    deletes: count,
                    seed,
                },
            )
            .await?;
        let deleted: BTreeSet<i64> = result
            .deleted
            .iter()
            .filter_map(|id| id.parse().ok())
            .filter(|id| landed.contains(id))
            .collect();
        ensure!(
            deleted.len() >= min,
            "only {} of the deleted appointments were landed",
            deleted.len()
        );
        Ok(deleted)
    }

    /// Landed appointments the simulator still holds (not deleted).
    async fn live_landed(&self, deleted: &BTreeSet<i64>, n: usize) -> Result<Vec<i64>> {
        Ok(self
            .landed_ids()
            .await?
            .into_iter()
            .filter(|id| !deleted.contains(id))
            .take(n)
            .collect())
    }

    async fn capture(&self, ids: &[i64]) -> Result<u64> {
        Ok(self
            .store
            .store
            .capture_deletes(
                PRACTICE,
                Table::Appointments,
                ids,
                DeleteDetection::Daily,
                OffsetDateTime::now_utc(),
            )
            .await?)
    }

    async fn captured(&self) -> Result<BTreeSet<i64>> {
        Ok(self
            .store
            .store
            .captured_delete_ids(PRACTICE, Table::Appointments)
            .await?
            .into_iter()
            .collect())
    }

    async fn kept(&self) -> Result<BTreeSet<i64>> {
        Ok(self
            .store
            .store
            .deleted_record_ids(PRACTICE, Table::Appointments)
            .await?
            .into_iter()
            .collect())
    }

    /// The practice's landed appointments equal what the simulator holds
    /// in its scope.
    async fn assert_converged(&self) -> Result<()> {
        assert_table_equals_source(
            &self.sim,
            0,
            &self.store.store,
            PRACTICE,
            self.scope,
            Resource::Appointments,
        )
        .await?;
        Ok(())
    }

    async fn remove(self) -> Result<()> {
        self.sim.shutdown().await;
        self.store.remove().await
    }
}

fn ignoring_window() -> NightlyConfig {
    NightlyConfig {
        ignore_window: true,
        ..NightlyConfig::default()
    }
}

/// The practice's own outcome in a pass.
fn result_of(report: &nightly::PassReport) -> Result<&PracticeResult> {
    report
        .practices
        .iter()
        .find(|p| p.practice_id == PRACTICE)
        .map(|p| &p.result)
        .with_context(|| format!("the pass did not look at the practice: {report:?}"))
}

/// A captured delete's row stays until the practice's window opens (read
/// on its location's wall clock); then it is gone from the landed table
/// and kept, raw JSON included, in `deleted_records`; `status`'s counts
/// follow.
async fn a_captured_delete_waits_for_the_window(db: Db) -> Result<()> {
    let f = Fixture::synced(db, 21).await?;
    let deleted = f.delete_landed(300, 3, 1).await?;
    let ids: Vec<i64> = deleted.iter().copied().collect();
    let before: Vec<store::LandedRecord> = f
        .store
        .store
        .landed_records(PRACTICE, Table::Appointments)
        .await?
        .into_iter()
        .filter(|r| deleted.contains(&r.id))
        .collect();
    ensure!(
        f.capture(&ids).await? == ids.len() as u64,
        "not all captured"
    );

    // A window from two to three hours from now, on the location's clock.
    let settings = f
        .store
        .store
        .nightly_settings(PRACTICE)
        .await?
        .context("no settings")?;
    let location_zone = settings
        .location_time_zone
        .clone()
        .context("the location record gives no time zone")?;
    let zone = Zone::choose(Some(&location_zone), None);
    let now = OffsetDateTime::now_utc();
    let local = i64::from(zone.local_minute(now));
    let (start, end) = ((local + 120) % 1440, (local + 180) % 1440);
    f.store
        .store
        .set_nightly_settings(PRACTICE, Some("UTC"), start, end)
        .await?;
    let nightly = f.nightly(NightlyConfig::default())?;

    let report = nightly.pass(now, &f.stop.1).await?;
    ensure!(
        matches!(
            result_of(&report)?,
            PracticeResult::Held(Hold::WindowClosed)
        ),
        "{report:?}"
    );
    ensure!(
        report.practices[0].zone.starts_with(&location_zone),
        "the location's zone was not used: {}",
        report.practices[0].zone
    );
    let landed = f.landed_ids().await?;
    ensure!(deleted.is_subset(&landed), "rows removed before the window");
    ensure!(f.captured().await? == deleted, "captures changed");
    ensure!(f.kept().await?.is_empty(), "something kept already");

    // Inside the window.
    let later = now + time::Duration::minutes(150);
    let report = nightly.pass(later, &f.stop.1).await?;
    match result_of(&report)? {
        PracticeResult::Done { status, counts, .. } => ensure!(
            *status == NightlyPassStatus::Succeeded
                && counts.applied == ids.len() as u64
                && counts.cancelled == 0,
            "{report:?}"
        ),
        other => anyhow::bail!("not applied in the window: {other:?}"),
    }
    let landed = f.landed_ids().await?;
    ensure!(landed.is_disjoint(&deleted), "rows still landed");
    ensure!(f.captured().await?.is_empty(), "captures left");
    let kept = f
        .store
        .store
        .deleted_records(PRACTICE, Table::Appointments)
        .await?;
    ensure!(kept.len() == before.len(), "{} kept", kept.len());
    for (k, b) in kept.iter().zip(&before) {
        ensure!(k.record_id == b.id, "ids differ");
        ensure!(k.raw == b.raw, "the kept version of {} differs", b.id);
        ensure!(k.last_modified == b.last_modified, "lastModified differs");
        ensure!(k.how == "daily", "how: {}", k.how);
        ensure!(k.applied_at >= k.detected_at, "applied before captured");
    }
    f.assert_converged().await?;

    let counts = f.store.store.delete_counts().await?;
    let mine = counts
        .iter()
        .find(|c| c.practice_id == PRACTICE)
        .context("no counts")?;
    ensure!(
        mine.pending == 0 && mine.applied == ids.len() as u64,
        "{mine:?}"
    );
    let pass = mine.last_pass.as_ref().context("no pass recorded")?;
    ensure!(
        pass.status == NightlyPassStatus::Succeeded && pass.applied == ids.len() as u64,
        "{pass:?}"
    );
    ensure!(
        pass.api_calls >= 1,
        "no confirmation call recorded: {pass:?}"
    );
    f.remove().await
}

/// A record Ascend still lists when the pass confirms is not removed: its
/// capture is cancelled. The deleted one beside it is applied.
async fn a_record_still_in_ascend_is_not_removed(db: Db) -> Result<()> {
    let f = Fixture::synced(db, 22).await?;
    let deleted = f.delete_landed(200, 1, 2).await?;
    let live = f.live_landed(&deleted, 5).await?;
    ensure!(live.len() == 5, "too few live appointments");
    let mut ids: Vec<i64> = live.clone();
    ids.extend(deleted.iter().copied());
    f.capture(&ids).await?;

    let report = f
        .nightly(ignoring_window())?
        .pass(OffsetDateTime::now_utc(), &f.stop.1)
        .await?;
    match result_of(&report)? {
        PracticeResult::Done { status, counts, .. } => ensure!(
            *status == NightlyPassStatus::Succeeded
                && counts.cancelled == live.len() as u64
                && counts.applied == deleted.len() as u64,
            "{report:?}"
        ),
        other => anyhow::bail!("not acted on: {other:?}"),
    }
    let landed = f.landed_ids().await?;
    for id in &live {
        ensure!(landed.contains(id), "live record {id} was removed");
    }
    ensure!(f.captured().await?.is_empty(), "captures left");
    ensure!(f.kept().await? == deleted, "kept the wrong records");
    f.assert_converged().await?;
    f.remove().await
}

/// A pass cut short after a batch, then passes killed at every moment
/// (the pass future dropped after 4, 8, 12... ms: mid-confirmation call,
/// between batches, while a batch's transaction runs), then one to the
/// end: after each kill every captured delete is either still pending
/// with its landed row or applied and kept without it (a batch is whole
/// or not at all), a live record is never applied, and the end is the
/// same as one uninterrupted pass: the landed table equals Ascend, every
/// deleted record kept once, nothing pending, and the killed passes are
/// recorded `interrupted`.
async fn a_killed_pass_resumes_to_the_same_result(db: Db) -> Result<()> {
    let f = Fixture::synced(db, 23).await?;
    let deleted = f.delete_landed(500, 60, 3).await?;
    let live = f.live_landed(&deleted, 20).await?;
    let mut ids: Vec<i64> = live.clone();
    ids.extend(deleted.iter().copied());
    f.capture(&ids).await?;
    let small = NightlyConfig {
        ignore_window: true,
        batch: 10,
        ids_per_call: 5,
        ..NightlyConfig::default()
    };

    // Cut short after one batch: partial, the rest pending.
    let cut = f.nightly(NightlyConfig {
        max_batches: Some(1),
        ..small.clone()
    })?;
    let report = cut.pass(OffsetDateTime::now_utc(), &f.stop.1).await?;
    match result_of(&report)? {
        PracticeResult::Done { status, counts, .. } => ensure!(
            *status == NightlyPassStatus::Partial && counts.batches == 1,
            "{report:?}"
        ),
        other => anyhow::bail!("not acted on: {other:?}"),
    }

    let all: BTreeSet<i64> = ids.iter().copied().collect();
    let mut killed_with_progress = 0;
    let mut step = 0u64;
    loop {
        step += 1;
        let limit = Duration::from_millis(4 * step);
        let kept_before = f.kept().await?.len();
        // Each attempt is a process of its own: its own connections, closed
        // when it is killed (a transaction left open dies with them).
        let process = store::Store::connect(f.store.url()).await?;
        let nightly = Nightly::new(
            process.clone(),
            fleet_client(&process, 1000.0)?,
            Arc::new(FixedCredentials(f.sim.connection(0)?)),
            small.clone(),
        );
        let pass = nightly.pass(OffsetDateTime::now_utc(), &f.stop.1);
        let finished = tokio::time::timeout(limit, pass).await;
        drop(nightly);
        // Closing waits for a batch's transaction that runs in a task of
        // its own (it ends whole after the pass is dropped).
        process.close().await;
        if finished.is_err() {
            // And a moment for a commit still on its way to be seen (the
            // three reads below are separate statements).
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        // Whole batches only: each captured id is pending with its row, or
        // applied and kept without it, or (live) cancelled with its row.
        let (captured, kept, landed) =
            (f.captured().await?, f.kept().await?, f.landed_ids().await?);
        for id in &all {
            let state = (
                captured.contains(id),
                kept.contains(id),
                landed.contains(id),
            );
            ensure!(
                matches!(
                    state,
                    (true, false, true) | (false, true, false) | (false, false, true)
                ),
                "record {id} is half-applied after a kill: (captured, kept, landed) = {state:?}"
            );
            ensure!(
                !(live.contains(id) && kept.contains(id)),
                "live record {id} was applied"
            );
        }
        match finished {
            Ok(report) => {
                let report = report?;
                // Done: it settled the rest, or a killed pass's last batch
                // did and nothing was left to look at.
                let done = match report.practices.iter().find(|p| p.practice_id == PRACTICE) {
                    None => captured.is_empty(),
                    Some(p) => matches!(
                        p.result,
                        PracticeResult::Done {
                            status: NightlyPassStatus::Succeeded,
                            ..
                        }
                    ),
                };
                if done {
                    break;
                }
                eprintln!("step {step}: not done: {report:?}");
            }
            Err(_) => {
                if kept.len() > kept_before && !captured.is_empty() {
                    killed_with_progress += 1;
                }
            }
        }
        ensure!(step < 500, "the passes never finished");
    }
    ensure!(
        killed_with_progress > 0,
        "no pass was killed after it had applied something (steps: {step})"
    );
    ensure!(f.captured().await?.is_empty(), "captures left");
    ensure!(f.kept().await? == deleted, "kept the wrong records");
    let landed = f.landed_ids().await?;
    ensure!(
        live.iter().all(|id| landed.contains(id)),
        "a live record was removed"
    );
    f.assert_converged().await?;
    let passes = f.store.store.nightly_passes(Some(PRACTICE), 1000).await?;
    ensure!(
        passes
            .iter()
            .any(|p| p.status == NightlyPassStatus::Interrupted),
        "no killed pass was recorded interrupted"
    );
    f.remove().await
}

/// Credentials that never open.
struct Broken;

impl Credentials for Broken {
    fn connection<'a>(&'a self, practice: &'a store::Practice) -> CredentialsFuture<'a> {
        Box::pin(async move {
            Err(CredentialsError {
                practice_id: practice.practice_id.clone(),
                detail: "none are stored: connect it with `ascend-sync practice add`".into(),
                needs_reconnect: true,
            })
        })
    }
}

/// A paused, removed or `auth_failed` practice keeps its rows and its
/// captured deletes, window or not; a practice whose credentials fail is
/// recorded failed and nothing of it is applied.
async fn a_practice_not_syncing_keeps_its_rows(db: Db) -> Result<()> {
    let f = Fixture::synced(db, 24).await?;
    let deleted = f.delete_landed(200, 1, 4).await?;
    let ids: Vec<i64> = deleted.iter().copied().collect();
    f.capture(&ids).await?;
    let nightly = f.nightly(ignoring_window())?;
    for status in [
        PracticeStatus::Paused,
        PracticeStatus::Removed,
        PracticeStatus::AuthFailed,
    ] {
        f.store
            .store
            .set_practice_status(PRACTICE, status, Some("by the test"))
            .await?;
        f.sim.reset_counters().await?;
        let report = nightly.pass(OffsetDateTime::now_utc(), &f.stop.1).await?;
        ensure!(
            *result_of(&report)? == PracticeResult::Held(Hold::NotSyncing(status)),
            "{status}: {report:?}"
        );
        let calls: u64 = f.sim.counters(0).await?.calls.values().sum();
        ensure!(calls == 0, "{status}: the API was called");
        ensure!(
            deleted.is_subset(&f.landed_ids().await?),
            "{status}: rows removed"
        );
        ensure!(f.captured().await? == deleted, "{status}: captures changed");
    }
    ensure!(f.kept().await?.is_empty(), "something was applied");

    f.store
        .store
        .set_practice_status(PRACTICE, PracticeStatus::Active, None)
        .await?;
    let report = f
        .nightly_with(ignoring_window(), Arc::new(Broken))?
        .pass(OffsetDateTime::now_utc(), &f.stop.1)
        .await?;
    match result_of(&report)? {
        PracticeResult::Done {
            status,
            counts,
            error,
        } => ensure!(
            *status == NightlyPassStatus::Failed
                && counts.applied == 0
                && error.as_deref().is_some_and(|e| e.contains("practice add")),
            "{report:?}"
        ),
        other => anyhow::bail!("not recorded: {other:?}"),
    }
    ensure!(
        deleted.is_subset(&f.landed_ids().await?),
        "rows removed unconfirmed"
    );
    ensure!(f.captured().await? == deleted, "captures changed");
    let passes = f.store.store.nightly_passes(Some(PRACTICE), 10).await?;
    ensure!(
        passes
            .first()
            .is_some_and(|p| p.status == NightlyPassStatus::Failed
                && p.error_class.as_deref() == Some("auth")),
        "{passes:?}"
    );
    f.remove().await
}

macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> Result<()> {
                    super::$name(Db::Postgres).await
                }
            )*
        }
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() -> Result<()> {
                    super::$name(Db::Sqlite).await
                }
            )*
        }
    };
}

on_both_backends!(
    a_captured_delete_waits_for_the_window,
    a_record_still_in_ascend_is_not_removed,
    a_killed_pass_resumes_to_the_same_result,
    a_practice_not_syncing_keeps_its_rows,
);
