//! `ascend-sync demo`: everything embedded on one machine, so anyone can see
//! it work. The simulator serves three organizations; each has one practice
//! (a location) landing in an SQLite file, with raw pages archived to a local
//! folder. The initial syncs run with a progress bar per practice; then, on a
//! short interval, the simulator changes data and an incremental cycle runs
//! for each practice, printing what changed. Every table is checked against
//! the simulator after every step.
//!
//! Practices are connected as `practice add` connects them: the credentials
//! are proved with one call, sealed with a local master key file (the
//! embedded mode's stand-in for KMS, in the data folder, mode 0600) and
//! stored; every sync opens them from the store.
//!
//! The demo starts from an empty data folder each time (the simulator's data
//! is regenerated at every start, so old rows would not match it).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ascend_client::{AscendClient, ClientConfig, InsecureLoopback, OrgClient, Resource};
use ascend_sim::{MutateRequest, OrgInfo, SimConfig, Size};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use secrecy::SecretString;
use store::{NewPractice, Store};
use sync_core::Scope;
use vault::{AscendCredentials, LocalVault, Vault};
use worker::credentials::{Credentials, VaultCredentials, to_stored};
use worker::verify::{SourceRecord, compare};
use worker::{SyncConfig, Syncer};

use crate::connect::connection;

#[derive(Args)]
pub struct DemoArgs {
    /// Exit 0 after the initial syncs and one incremental cycle have
    /// converged with the simulator (checked record by record).
    #[arg(long)]
    once: bool,
    /// Folder for the SQLite file and the raw archive; emptied at start.
    #[arg(long, default_value = "demo-data")]
    data_dir: PathBuf,
    /// Seconds between incremental cycles.
    #[arg(long, default_value_t = 5)]
    interval_secs: u64,
    /// Data volume per organization.
    #[arg(long, default_value = "small")]
    size: Size,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

struct DemoPractice {
    practice_id: String,
    org_index: usize,
    scope: Scope,
    org: OrgClient,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = ascend_sim::spawn(
        SimConfig {
            orgs: 3,
            size: args.size,
            seed: args.seed,
            ..SimConfig::default()
        },
        listener,
    )
    .await
    .context("the simulator could not start")?;
    println!("simulator: 3 organizations at {}", sim.base_url());

    if args.data_dir.exists() {
        std::fs::remove_dir_all(&args.data_dir)
            .with_context(|| format!("cannot empty the demo folder {}", args.data_dir.display()))?;
    }
    std::fs::create_dir_all(&args.data_dir)?;
    let database = args.data_dir.join("ascend-sync.sqlite");
    let store = Store::connect(&format!("sqlite:{}", database.display())).await?;
    store.migrate().await?;
    let archive = blob::Archive::local(args.data_dir.join("archive"))?;
    println!(
        "landing in {} (SQLite), raw pages in {}",
        database.display(),
        args.data_dir.join("archive").display()
    );

    let mut config = ClientConfig::default();
    config.requests_per_second = std::num::NonZeroU32::new(500).context("rate")?;
    config.burst = config.requests_per_second;
    config.insecure_loopback = InsecureLoopback::allow_for_local_testing();
    let client = AscendClient::new(config)?;

    let key_file = args.data_dir.join("master.key");
    let credentials = VaultCredentials::new(
        store.clone(),
        Vault::Local(LocalVault::open(&key_file).context("cannot open the demo's master key")?),
    );
    let mut practices = Vec::new();
    for (index, info) in sim.orgs().iter().enumerate() {
        practices.push(register(&store, &client, &credentials, index, info).await?);
    }
    println!(
        "connected {} practices; their credentials are sealed with {} (mode 0600)",
        practices.len(),
        key_file.display()
    );

    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template(
        "{prefix:>12} [{bar:40}] {pos:>8}/{len:8} {per_sec:>12} {msg}",
    )
    .context("progress template")?
    .progress_chars("=> ");
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for practice in &practices {
        let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
        bar.set_prefix(practice.practice_id.clone());
        let counter = bar.clone();
        let syncer = Syncer::new(store.clone(), archive.clone(), SyncConfig::default())
            .with_progress(move |p| counter.inc(p.records));
        let (org, practice_id) = (practice.org.clone(), practice.practice_id.clone());
        tasks.spawn(async move {
            syncer.plan_initial(&practice_id, &org).await?;
            let expected: i64 = syncer
                .store()
                .list_sync_states(&practice_id)
                .await?
                .iter()
                .filter_map(|s| s.expected_count)
                .sum();
            bar.set_length(expected.max(0) as u64);
            let report = syncer.run_initial(&practice_id, &org).await?;
            bar.finish_with_message(if report.complete {
                "initial sync done"
            } else {
                "incomplete"
            });
            anyhow::Ok((practice_id, report))
        });
    }
    let mut landed = 0;
    while let Some(joined) = tasks.join_next().await {
        let (practice_id, report) = joined??;
        if !report.complete {
            bail!(
                "{practice_id}: the initial sync did not complete: {:?}",
                report.failures
            );
        }
        landed += report.written;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "initial syncs: {landed} records landed in {secs:.1} s ({:.0} records/s)",
        landed as f64 / secs
    );
    verify_all(&sim, &store, &practices).await?;

    let syncer = Syncer::new(store.clone(), archive.clone(), SyncConfig::default());
    let mut cycle = 0u64;
    loop {
        cycle += 1;
        for practice in &practices {
            let org_id = &sim.orgs()[practice.org_index].organization_id;
            let changes = mutate(&sim.base_url(), org_id, args.seed * 1000 + cycle).await?;
            let run = syncer
                .run_incremental(&practice.practice_id, &practice.org)
                .await?;
            let changed: Vec<String> = run
                .resources
                .iter()
                .filter(|r| r.written > 0 || r.error.is_some())
                .map(|r| match &r.error {
                    Some((class, _)) => format!("{} failed ({class})", r.resource),
                    None => format!("{} {}", r.resource, r.written),
                })
                .collect();
            println!(
                "cycle {cycle} {}: simulator changed {changes} records; {:?}, {} fetched: {}",
                practice.practice_id,
                run.status,
                run.fetched(),
                if changed.is_empty() {
                    "no changes".to_string()
                } else {
                    changed.join(", ")
                }
            );
        }
        verify_all(&sim, &store, &practices).await?;
        if args.once {
            println!("converged: every table of every practice equals the simulator");
            break;
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(args.interval_secs)) => {}
            () = crate::sim::shutdown_signal() => {
                println!("stopping");
                break;
            }
        }
    }
    store.close().await;
    sim.shutdown().await;
    Ok(())
}

/// Connects organization `index`'s first location as a practice: proved,
/// sealed, stored, then opened from the store for the syncs.
async fn register(
    store: &Store,
    client: &AscendClient,
    credentials: &VaultCredentials,
    index: usize,
    info: &OrgInfo,
) -> Result<DemoPractice> {
    client
        .connect(connection(
            &info.organization_id,
            info.client_id.clone(),
            SecretString::from(info.client_secret.clone()),
            &info.api_base,
            &info.token_url,
        )?)?
        .probe()
        .await
        .context("the organization's credentials do not work")?;
    let location: u64 = info
        .location_ids
        .first()
        .context("an organization without locations")?
        .parse()?;
    let practice_id = format!("practice-{}", index + 1);
    let sealed = credentials
        .vault()
        .seal_credentials(
            &practice_id,
            &AscendCredentials {
                client_id: SecretString::from(info.client_id.clone()),
                client_secret: SecretString::from(info.client_secret.clone()),
            },
        )
        .await?;
    let practice = store
        .connect_practice(
            &NewPractice {
                practice_id: practice_id.clone(),
                organization_id: info.organization_id.clone(),
                location_id: location as i64,
                api_base: info.api_base.clone(),
                sync_interval_minutes: 2,
            },
            &to_stored(sealed, &info.token_url),
            "demo",
        )
        .await?;
    let org = client.connect(credentials.connection(&practice).await?)?;
    Ok(DemoPractice {
        practice_id,
        org_index: index,
        scope: Scope {
            location_id: Some(location),
        },
        org,
    })
}

/// Creates and updates a few records of every resource of one organization.
async fn mutate(base: &str, org_id: &str, seed: u64) -> Result<usize> {
    let result: ascend_sim::MutateResult = reqwest::Client::new()
        .post(format!("{base}/_sim/orgs/{org_id}/mutate"))
        .json(&MutateRequest {
            resource: None,
            creates: 15,
            updates: 25,
            deletes: 0,
            seed,
        })
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(result.created.len() + result.updated.len())
}

/// Every table of every practice against the simulator's snapshot.
async fn verify_all(
    sim: &ascend_sim::RunningSim,
    store: &Store,
    practices: &[DemoPractice],
) -> Result<()> {
    let http = reqwest::Client::new();
    let base = sim.base_url();
    let mut checked = 0;
    for practice in practices {
        let org_id = &sim.orgs()[practice.org_index].organization_id;
        for &resource in Resource::ALL {
            let path = resource.path().trim_start_matches("/v1/");
            let snapshot: Vec<ascend_sim::SnapshotEntry> = http
                .get(format!(
                    "{base}/_sim/orgs/{org_id}/snapshot/{path}?full=true"
                ))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let expected: Vec<SourceRecord<'_>> = snapshot
                .iter()
                .filter_map(|e| e.record.as_ref().map(|r| (e, r)))
                .filter(|(_, r)| practice.scope.contains(resource, r))
                .map(|(e, record)| {
                    Ok(SourceRecord {
                        id: e.id.parse()?,
                        last_modified: Some(e.last_modified.as_str()),
                        record,
                    })
                })
                .collect::<Result<_>>()?;
            checked += compare(store, &practice.practice_id, resource, &expected)
                .await
                .with_context(|| {
                    format!("{} does not match the simulator", practice.practice_id)
                })?;
        }
    }
    println!(
        "verified: {checked} records across {} practices equal the simulator",
        practices.len()
    );
    Ok(())
}
