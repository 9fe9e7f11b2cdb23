//! `ascend-sync sync`: one practice's sync, run by hand. Registers the
//! practice if the store does not know it, runs (or resumes) its initial
//! sync, then one incremental cycle, and reports what it did.
//!
//! A by-hand tool: credentials come from a file (the line `ascend-sync sim`
//! prints) and are not stored, so scheduled workers cannot sync a practice
//! it registered until `ascend-sync practice add` connects it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use store::{NewPractice, Store};
use worker::{SyncConfig, Syncer};

use crate::connect::{ClientArgs, read_credentials_file};
use crate::data::ArchiveArgs;

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
    let connection = read_credentials_file(&args.credentials_file)?;
    let organization_id = connection.organization_id.to_string();
    let api_base = connection.api_base.to_string();
    let store = Store::connect(&args.database_url)
        .await
        .context("cannot connect to the database")?;
    store.migrate().await.context("migrations failed")?;
    let archive = args.archive.open().await?;
    let org = args.client.client()?.connect(connection)?;
    if store.get_practice(&args.practice_id).await?.is_none() {
        org.probe().await.context(
            "the credentials, the Organization-ID or the vendor's enablement do not work",
        )?;
        store
            .upsert_practice(&NewPractice {
                practice_id: args.practice_id.clone(),
                organization_id,
                location_id: args.location_id.map_or(0, |l| l as i64),
                api_base,
                sync_interval_minutes: store::DEFAULT_SYNC_INTERVAL_MINUTES,
            })
            .await?;
    }
    let syncer = Syncer::new(
        store.clone(),
        archive,
        SyncConfig {
            concurrency: args.concurrency,
            ..SyncConfig::default()
        },
    );

    let started = Instant::now();
    let initial = syncer.run_initial(&args.practice_id, &org).await?;
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "initial sync: {} chunks planned ({} count calls), {} run, {} records fetched, {} written in {secs:.2} s: {:.0} records/s",
        initial.chunks_planned,
        initial.count_calls,
        initial.chunks_run,
        initial.fetched,
        initial.written,
        initial.fetched as f64 / secs
    );
    if let Some(peak) = crate::peak_rss_bytes() {
        println!(
            "peak memory (VmHWM) after the initial sync {:.1} MiB",
            peak as f64 / 1_048_576.0
        );
    }
    if !initial.complete {
        bail!("the initial sync is not complete: {:?}", initial.failures);
    }
    let calls_before = org.stats().calls;
    let run = syncer.run_incremental(&args.practice_id, &org).await?;
    println!(
        "incremental cycle: {:?}, {} records fetched, {} API calls for {} resources",
        run.status,
        run.fetched(),
        org.stats().calls - calls_before,
        run.resources.len()
    );
    store.close().await;
    Ok(())
}
