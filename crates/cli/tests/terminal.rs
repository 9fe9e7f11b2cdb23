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

/// The demo's terminal, as a new user sees it (on a terminal, through
/// `script`): bars only for the initial syncs, each finished once and
/// never drawn again; counts that never pass their totals and never read
/// `0 / 0`; rates as whole numbers; then one line per cycle and practice.
#[test]
fn the_demo_s_terminal_is_calm() -> Result<()> {
    let dir = TempDir::new("terminal-demo")?;
    let data = dir.path().join("demo");
    let command = format!(
        "{BIN} demo --once --seed 3 --data-dir {}",
        data.to_string_lossy()
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("COLUMNS", "160")
        .output()
        .context("cannot run `script` (util-linux)")?;
    let raw = String::from_utf8_lossy(&out.stdout).into_owned();
    ensure!(out.status.success(), "the demo failed:\n{raw}");
    // What a person reads: escape sequences out, redraws split into lines.
    let mut text = String::new();
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params letter
            if chars.peek() == Some(&'[') {
                chars.next();
                while let Some(&n) = chars.peek() {
                    chars.next();
                    if n.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            text.push('\n');
        } else if c == '\r' {
            text.push('\n');
        } else {
            text.push(c);
        }
    }
    // A bar redraw pads its lines to the terminal's width and lets them
    // wrap, so the checks read the text as a whole.
    let summary = text
        .find("initial syncs:")
        .context("no summary of the initial syncs")?;
    ensure!(
        !text[summary..].contains("records  "),
        "a bar was drawn after the initial syncs"
    );
    for practice in ["practice-1", "practice-2", "practice-3"] {
        let done = text
            .matches(&format!("{practice}: initial sync done"))
            .count();
        ensure!(done == 1, "{practice} finished {done} times");
        let cycles = text.matches(&format!("cycle 1 {practice}:")).count();
        ensure!(cycles == 1, "{practice}: {cycles} lines for cycle 1");
    }
    ensure!(!text.contains(" 0 / 0 "), "a bar at 0 / 0");
    let words: Vec<&str> = text.split_whitespace().collect();
    for (i, word) in words.iter().enumerate() {
        // A rate is a whole number: no `1,436.111733292797/s`.
        if word.ends_with("/s") || word.ends_with("/s)") {
            ensure!(!word.contains('.'), "a raw float rate {word:?}");
        }
        // `landed / expected records`: never past the total.
        if *word == "/"
            && let (Some(left), Some(right)) = (
                i.checked_sub(1).and_then(|j| words.get(j)),
                words.get(i + 1),
            )
            && let (Ok(landed), Ok(total)) = (
                left.replace(',', "").parse::<u64>(),
                right.replace(',', "").parse::<u64>(),
            )
        {
            ensure!(
                landed <= total,
                "a count past its total: {landed} / {total}"
            );
        }
    }
    ensure!(text.contains("converged:"), "{text}");
    Ok(())
}
