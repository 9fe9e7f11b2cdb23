//! What the terminal shows (issue 16): shell completions, and `status`
//! on a practice whose initial sync is under way (landed and expected per
//! resource, and the time left), in text and as JSON.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_sim::{SimConfig, Size};
use model::{PracticeStatus, Trigger};
use queue::{DbQueue, Queue, QueueSettings};
use serde_json::Value;
use store::NewPractice;
use system_tests::{Sim, TempDir, test_client_config};
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

const BIN: &str = env!("CARGO_BIN_EXE_ascend-sync");

#[test]
fn completions_name_the_real_subcommands() -> Result<()> {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(BIN).args(["completions", shell]).output()?;
        ensure!(out.status.success(), "completions {shell} failed");
        let script = String::from_utf8(out.stdout)?;
        for word in ["writeback", "dlq", "admin", "resync", "practice-id"] {
            ensure!(script.contains(word), "{shell} completions lack {word}");
        }
    }
    let out = Command::new(BIN).args(["completions", "tcsh"]).output()?;
    ensure!(!out.status.success(), "an unknown shell is refused");
    Ok(())
}

/// A practice stopped part way through its initial sync (its worker shut
/// down once some chunks had landed): `status` shows where it stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_an_initial_sync_s_progress_and_time_left() -> Result<()> {
    let sim = Sim::start(SimConfig {
        size: Size::Small,
        seed: 5,
        ..SimConfig::default()
    })
    .await?;
    let dir = TempDir::new("terminal-status")?;
    let db = format!("sqlite:{}", dir.path().join("db.sqlite").display());
    let store = store::Store::connect(&db).await?;
    store.migrate().await?;
    let info = sim.org(0);
    store
        .upsert_practice(&NewPractice {
            practice_id: "p1".into(),
            organization_id: info.organization_id.clone(),
            location_id: info.location_ids.first().context("location")?.parse()?,
            api_base: info.api_base.clone(),
            sync_interval_minutes: 15,
        })
        .await?;
    let queue = Queue::from(DbQueue::new(
        store.clone(),
        QueueSettings {
            max_receive_count: 20,
            visibility: Duration::from_secs(30),
        },
    ));
    // Slow on purpose: 20 requests a second, a page of 50.
    let client = ascend_client::AscendClient::new(test_client_config(20)?)?;
    let worker = Worker::new(
        Syncer::new(
            store.clone(),
            blob::Archive::local(dir.path().join("archive"))?,
            SyncConfig {
                page_size: Some(50),
                ..SyncConfig::default()
            },
        ),
        queue.clone(),
        client,
        Arc::new(FixedCredentials(sim.connection(0)?)),
        WorkerConfig {
            worker_id: "terminal-test".into(),
            concurrency: 1,
            receive_wait: Duration::from_millis(200),
            ..WorkerConfig::default()
        },
    );
    control::force_sync(&store, &queue, "p1", Trigger::Admin, control::FORCE_CLAIM).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.run(stopped).await })
    };
    // Until some chunk has landed records, and not all.
    let started = std::time::Instant::now();
    loop {
        let chunks = store.list_chunks("p1").await?;
        let landed: i64 = chunks.iter().map(|c| c.landed).sum();
        let done = chunks.iter().all(|c| c.status == store::ChunkStatus::Done);
        if landed > 0 && !done {
            break;
        }
        ensure!(
            !done || chunks.is_empty(),
            "the initial sync finished before the test could look at it"
        );
        ensure!(
            started.elapsed() < Duration::from_secs(60),
            "nothing landed in a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    let _ = running.await;
    let practice = store.get_practice("p1").await?.context("p1")?;
    ensure!(practice.status == PracticeStatus::InitialSync);
    let chunks = store.list_chunks("p1").await?;
    let landed: i64 = chunks.iter().map(|c| c.landed).sum();
    let expected: i64 = chunks.iter().filter_map(|c| c.expected).sum();
    store.close().await;

    let out = Command::new(BIN)
        .args(["status", "--practice", "p1", "--json"])
        .env("DATABASE_URL", &db)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_str(String::from_utf8(out.stdout)?.trim())?;
    let of = &line["initial_sync"];
    ensure!(
        of["landed"] == landed && of["expected"] == expected,
        "{line}"
    );
    ensure!(
        landed < expected,
        "the sync stopped part way: {landed} of {expected}"
    );
    ensure!(of["eta_seconds"].as_i64().is_some_and(|s| s >= 0), "{of}");
    ensure!(
        of["resources"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["resource"] == "patients")),
        "{of}"
    );
    let out = Command::new(BIN)
        .args(["status", "--practice", "p1"])
        .env("DATABASE_URL", &db)
        .output()?;
    let text = String::from_utf8(out.stdout)?;
    ensure!(text.contains("Initial syncs under way:"), "{text}");
    ensure!(
        text.contains(&format!("p1: {landed} of {expected} records")),
        "{text}"
    );
    ensure!(text.contains("left") && text.contains("patients"), "{text}");
    sim.shutdown().await;
    Ok(())
}
