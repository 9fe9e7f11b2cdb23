//! `ascend-sync sync`: one practice's sync, run by hand. Registers the
//! practice if the store does not know it, runs (or resumes) its initial
//! sync, then one incremental cycle, and reports what it did. Both run as
//! the jobs production runs (plan, chunks, incremental), on the store's
//! database queue with a worker in this process.
//!
//! It passes the gate as the operator (`practice.add` when it registers
//! the practice, audited as `practice.register`; `practice.force-sync`).
//!
//! A by-hand tool: credentials come from a file (the line `ascend-sync sim`
//! prints) and are not stored, so scheduled workers cannot sync a practice
//! it registered until `ascend-sync practice add` connects it. Its URLs
//! are held to the same host policy (`--allow-test-host` for the
//! simulator).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use access::Action;
use anyhow::{Context, Result, bail};
use clap::Args;
use queue::{DbQueue, Queue, QueueSettings};
use store::{NewPractice, PracticeStatus, Store};
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

use crate::connect::{ClientArgs, read_credentials_file};
use crate::data::ArchiveArgs;
use crate::operator::{gate, operator};

#[derive(Args)]
pub struct SyncArgs {
    /// JSON credentials: organization_id, client_id, client_secret,
    /// api_base, token_url (the line `ascend-sync sim` prints).
    #[arg(long)]
    credentials_file: PathBuf,
    /// Our id for the practice.
    #[arg(long)]
    practice_id: String,
    /// The practice's Ascend location id; omit for a single-location
    /// organization synced whole.
    #[arg(long)]
    location_id: Option<u64>,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    #[command(flatten)]
    archive: ArchiveArgs,
    /// Chunks pulled at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: SyncArgs) -> Result<()> {
    model::check_practice_id(&args.practice_id).map_err(anyhow::Error::msg)?;
    // The file's URLs pass the same host policy as stored credentials.
    let connection = read_credentials_file(&args.client.hosts()?, &args.credentials_file)?;
    let organization_id = connection.organization_id.to_string();
    let api_base = connection.api_base.to_string();
    let store = Store::connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;
    store.migrate().await.context("migrations failed")?;
    let archive = args.archive.open().await?;
    let client = args.client.fleet_client(&store)?;
    let who = operator();
    if store.get_practice(&args.practice_id).await?.is_none() {
        gate(&store, &who, Action::AddPractice(args.practice_id.clone())).await?;
        client.connect(connection.clone())?.probe().await.context(
            "the credentials, the Organization-ID or the vendor's enablement do not work",
        )?;
        control::admin::register(
            &store,
            &NewPractice {
                practice_id: args.practice_id.clone(),
                organization_id,
                location_id: args.location_id.map_or(0, |l| l as i64),
                api_base,
                sync_interval_minutes: store::DEFAULT_SYNC_INTERVAL_MINUTES,
            },
            &who.actor,
        )
        .await?;
    }
    gate(&store, &who, Action::ForceSync(args.practice_id.clone())).await?;
    // The jobs production runs, on the database queue of this store, with a
    // worker in this process that uses the file's credentials.
    let queue = Queue::from(DbQueue::new(store.clone(), QueueSettings::default()));
    let syncer = Syncer::new(
        store.clone(),
        archive,
        SyncConfig {
            concurrency: args.concurrency,
            ..SyncConfig::default()
        },
    );
    let worker = Worker::new(
        syncer,
        queue.clone(),
        client,
        Arc::new(FixedCredentials(connection)),
        WorkerConfig {
            concurrency: args.concurrency,
            receive_wait: Duration::from_millis(250),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            ..WorkerConfig::default()
        },
    );
    let limit = Duration::from_secs(24 * 3600);

    let started = Instant::now();
    let initial = control::sync_and_wait(&store, &queue, &worker, &args.practice_id, limit).await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let chunks = initial
        .runs
        .iter()
        .filter(|r| r.kind == "initial_chunk")
        .count();
    println!(
        "initial sync: {chunks} chunk jobs, {} attempts, {} records fetched, {} API calls in {secs:.2} s: {:.0} records/s",
        initial.runs.len(),
        initial.fetched(),
        initial.api_calls(),
        initial.fetched() as f64 / secs
    );
    if let Some(peak) = crate::peak_rss_bytes() {
        println!(
            "peak memory (VmHWM) after the initial sync {:.1} MiB",
            peak as f64 / 1_048_576.0
        );
    }
    if initial.practice.status != PracticeStatus::Active {
        bail!(
            "the initial sync is not complete: the practice is {}; see `ascend-sync history --practice {}`",
            initial.practice.status,
            args.practice_id
        );
    }
    let cycle = control::sync_and_wait(&store, &queue, &worker, &args.practice_id, limit).await?;
    let last = cycle
        .runs
        .last()
        .context("the incremental cycle left no run in history")?;
    println!(
        "incremental cycle: {}, {} records fetched, {} API calls for {} resources",
        last.status,
        cycle.fetched(),
        cycle.api_calls(),
        last.resources.len()
    );
    store.close().await;
    Ok(())
}
