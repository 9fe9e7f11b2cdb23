//! The metrics on-call's alarms read (issue 17): a practice synced from
//! the simulator by a worker, the scheduler's minute and a nightly pass,
//! each emitting CloudWatch Embedded Metric Format lines into memory. Every
//! line keeps the format's rules (`telemetry::check_line`), and the
//! numbers are the ones sync history holds.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_sim::{SimConfig, Size};
use queue::{DbQueue, Queue, QueueSettings};
use scheduler::{Scheduler, SchedulerConfig};
use serde_json::Value;
use store::NewPractice;
use system_tests::{Db, Sim, TempDir, TestStore, test_client_config};
use time::OffsetDateTime;
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

const PRACTICE: &str = "practice-1";

fn parsed(lines: &[String]) -> Result<Vec<Value>> {
    lines
        .iter()
        .map(|line| {
            telemetry::check_line(line).map_err(|e| anyhow::anyhow!("{e}: {line}"))?;
            Ok(serde_json::from_str(line)?)
        })
        .collect()
}

fn sum(docs: &[Value], metric: &str) -> f64 {
    docs.iter().filter_map(|d| d[metric].as_f64()).sum()
}

#[tokio::test]
async fn every_role_s_metrics_keep_the_format_and_match_history() -> Result<()> {
    let sim = Sim::start(SimConfig {
        size: Size::Tiny,
        seed: 17,
        ..SimConfig::default()
    })
    .await?;
    let store = TestStore::new(Db::Sqlite).await?;
    let archive = TempDir::new("metrics-archive")?;
    let info = sim.org(0);
    store
        .store
        .upsert_practice(&NewPractice {
            practice_id: PRACTICE.into(),
            organization_id: info.organization_id.clone(),
            location_id: info.location_ids.first().context("location")?.parse()?,
            api_base: info.api_base.clone(),
            sync_interval_minutes: 15,
        })
        .await?;
    let queue = Queue::from(DbQueue::new(
        store.store.clone(),
        QueueSettings {
            max_receive_count: 5,
            visibility: Duration::from_secs(10),
        },
    ));
    let (worker_sink, worker_lines) = telemetry::Sink::memory();
    let client = ascend_client::AscendClient::new(test_client_config(1000)?)?;
    let worker = Worker::new(
        Syncer::new(
            store.store.clone(),
            blob::Archive::local(archive.path().to_path_buf())?,
            SyncConfig {
                reconcile: sync_core::reconcile::Policy::every_cycle(),
                ..SyncConfig::default()
            },
        ),
        queue.clone(),
        client.clone(),
        Arc::new(FixedCredentials(sim.connection(0)?)),
        WorkerConfig {
            receive_wait: Duration::from_millis(200),
            metrics: worker_sink,
            ..WorkerConfig::default()
        },
    );
    control::sync_and_wait(
        &store.store,
        &queue,
        &worker,
        PRACTICE,
        Duration::from_secs(300),
    )
    .await?;
    // Deletes in Ascend, captured by the next cycle.
    sim.mutate(
        0,
        &ascend_sim::MutateRequest {
            resource: Some("appointments".into()),
            creates: 0,
            updates: 0,
            deletes: 12,
            seed: 17,
        },
    )
    .await?;
    control::sync_and_wait(
        &store.store,
        &queue,
        &worker,
        PRACTICE,
        Duration::from_secs(300),
    )
    .await?;
    let runs = store
        .store
        .history(&store::HistoryQuery {
            practice_id: Some(PRACTICE.into()),
            failed_only: false,
            since: None,
            limit: 10_000,
        })
        .await?;
    let lines = worker_lines
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .clone();
    let docs = parsed(&lines)?;
    // One document per attempt, each for the practice.
    ensure!(
        docs.len() == runs.len(),
        "{} documents for {} runs",
        docs.len(),
        runs.len()
    );
    ensure!(docs.iter().all(|d| d["PracticeId"] == PRACTICE));
    #[allow(clippy::cast_precision_loss)]
    let written = runs.iter().filter_map(|r| r.written).sum::<i64>() as f64;
    ensure!(
        sum(&docs, "RecordsSynced") == written,
        "RecordsSynced is what history wrote"
    );
    #[allow(clippy::cast_precision_loss)]
    let calls = runs.iter().filter_map(|r| r.api_calls).sum::<i64>() as f64;
    ensure!(
        sum(&docs, "ApiRequests") == calls,
        "ApiRequests is what history counted"
    );
    ensure!(sum(&docs, "SyncAttempts") == docs.len() as f64);
    ensure!(sum(&docs, "SyncFailures") == 0.0);
    #[allow(clippy::cast_precision_loss)]
    let captured = runs
        .iter()
        .map(store::RunRecord::deletes_captured)
        .sum::<i64>() as f64;
    ensure!(
        captured > 0.0 && sum(&docs, "DeletesCaptured") == captured,
        "DeletesCaptured {} is what history captured ({captured})",
        sum(&docs, "DeletesCaptured")
    );
    ensure!(
        docs.iter()
            .all(|d| d["SyncDurationSeconds"].as_f64().is_some_and(|s| s >= 0.0))
    );

    // The scheduler's minute: the practice's staleness and the fleet's.
    let (scheduler_sink, scheduler_lines) = telemetry::Sink::memory();
    let scheduler = Scheduler::new(
        store.store.clone(),
        queue.clone(),
        SchedulerConfig {
            metrics: scheduler_sink.clone(),
            ..SchedulerConfig::default()
        },
    );
    let now = OffsetDateTime::now_utc();
    for doc in scheduler.metrics(now).await? {
        scheduler_sink.emit(&doc);
    }
    let docs = parsed(
        &scheduler_lines
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?,
    )?;
    let practice = docs
        .iter()
        .find(|d| d["PracticeId"] == PRACTICE)
        .context("no staleness for the practice")?;
    ensure!(
        practice["StalenessSeconds"]
            .as_f64()
            .is_some_and(|s| (0.0..120.0).contains(&s)),
        "just synced: {practice}"
    );
    let fleet = docs
        .iter()
        .find(|d| d.get("MaxStalenessRatio").is_some())
        .context("no fleet document")?;
    ensure!(
        fleet["MaxStalenessRatio"].as_f64().is_some_and(|r| r < 1.0),
        "{fleet}"
    );
    ensure!(
        fleet["StalePractices"] == 0.0 && fleet["QueueBacklog"] == 0.0,
        "{fleet}"
    );
    ensure!(
        fleet["DeadLetters"] == 0.0 && fleet["RecordsQuarantined"] == 0.0,
        "{fleet}"
    );
    // An hour later with no sync, the same practice is stale.
    let later = scheduler.metrics(now + time::Duration::hours(1)).await?;
    let fleet = later
        .iter()
        .filter_map(|d| d.to_line().ok())
        .map(|l| serde_json::from_str::<Value>(&l))
        .collect::<Result<Vec<_>, _>>()?;
    let fleet = fleet
        .iter()
        .find(|d| d.get("MaxStalenessRatio").is_some())
        .context("fleet")?;
    ensure!(
        fleet["MaxStalenessRatio"].as_f64().is_some_and(|r| r > 1.0),
        "{fleet}"
    );
    ensure!(fleet["StalePractices"] == 1.0, "{fleet}");

    // A nightly pass after deletes in Ascend: DeletesApplied per practice.
    let (nightly_sink, nightly_lines) = telemetry::Sink::memory();
    let nightly = nightly::Nightly::new(
        store.store.clone(),
        client,
        Arc::new(FixedCredentials(sim.connection(0)?)),
        nightly::NightlyConfig {
            ignore_window: true,
            metrics: nightly_sink,
            ..nightly::NightlyConfig::default()
        },
    );
    let (_keep, never) = tokio::sync::watch::channel(false);
    let report = nightly.pass(OffsetDateTime::now_utc(), &never).await?;
    let docs = parsed(&nightly_lines.lock().map_err(|_| anyhow::anyhow!("lock"))?)?;
    #[allow(clippy::cast_precision_loss)]
    let applied = report.applied() as f64;
    ensure!(
        applied > 0.0 && sum(&docs, "DeletesApplied") == applied,
        "DeletesApplied {docs:?}, the pass applied {applied}"
    );
    sim.shutdown().await;
    Ok(())
}
