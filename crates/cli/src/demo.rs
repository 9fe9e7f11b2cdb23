//! `ascend-sync demo`: everything embedded on one machine, so anyone can see
//! it work. The simulator serves three organizations; each has one practice
//! (a location) landing in an SQLite file, with raw pages archived to a local
//! folder. A scheduler and a worker run in this process and meet in the
//! database queue, as replicas do in production. The initial syncs run with
//! a progress bar per practice; then, on a short interval, the simulator
//! creates, changes and deletes records, a Force Sync Now runs an
//! incremental cycle for each practice (capturing the deletes: every
//! resource is reconciled whole every cycle here), and a nightly pass
//! applies them (the processing window ignored: the demo's night comes every
//! cycle). Every table is checked against the simulator after every step.
//!
//! Practices are connected as `practice add` connects them: the credentials
//! are proved with one call, sealed with a local master key file (the
//! embedded mode's stand-in for KMS, in the data folder, mode 0600) and
//! stored; every sync opens them from the store.
//!
//! The demo starts from an empty data folder each time (the simulator's data
//! is regenerated at every start, so old rows would not match it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ascend_client::{AscendClient, ClientConfig, InsecureLoopback, Resource};
use ascend_sim::{MutateRequest, OrgInfo, SimConfig, Size};
use clap::Args;
use control::{Connector, NewConnection, force_sync};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use model::HostPolicy;
use nightly::{Nightly, NightlyConfig};
use queue::{DbQueue, Queue, QueueSettings, Trigger};
use scheduler::{Scheduler, SchedulerConfig};
use secrecy::SecretString;
use store::{HistoryQuery, NewPractice, PracticeStatus, RunRecord, RunState, Store};
use sync_core::Scope;
use sync_core::budget::Policy;
use time::OffsetDateTime;
use tokio::sync::watch;
use vault::{LocalVault, Vault};
use worker::budget::FleetBudget;
use worker::credentials::VaultCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::verify::{SourceRecord, compare};
use worker::{SyncConfig, Syncer};

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
    println!(
        "simulator: 3 organizations at {}, their data placed at today ({})",
        sim.base_url(),
        sim.today()
    );

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
    // The fleet's budget, in the demo's database, as the workers of a
    // deployment share it.
    let budget = FleetBudget::new(store.clone(), Policy::new(500.0));
    let client = AscendClient::with_budget(config, Arc::new(budget))?;

    let key_file = args.data_dir.join("master.key");
    let vault =
        Vault::Local(LocalVault::open(&key_file).context("cannot open the demo's master key")?);
    // The simulator listens on the loopback address: the demo allows that
    // one test host, as a deployment would with ASCEND_SYNC_ALLOW_TEST_HOST.
    let hosts = HostPolicy::allowing_test_host("127.0.0.1").map_err(anyhow::Error::msg)?;
    let connector = Connector {
        store: store.clone(),
        vault: vault.clone(),
        client: client.clone(),
        hosts: hosts.clone(),
    };
    let mut practices = Vec::new();
    for (index, info) in sim.orgs().iter().enumerate() {
        practices.push(register(&connector, index, info).await?);
    }
    let credentials: Arc<VaultCredentials> =
        Arc::new(VaultCredentials::new(store.clone(), vault, hosts));
    println!(
        "connected {} practices; their credentials are sealed with {} (mode 0600)",
        practices.len(),
        key_file.display()
    );

    // The runtime, embedded: the scheduler and a worker meet in the
    // database queue (SQLite's job_queue), as replicas meet in production.
    let queue = Queue::Database(DbQueue::new(store.clone(), QueueSettings::default()));
    // One bar per practice for its initial sync only (stderr, and only on
    // a terminal): a spinner until the plan knows Ascend's counts, then
    // landed / expected from the plan's chunks, finished once.
    let bars = MultiProgress::new();
    let by_practice: HashMap<String, ProgressBar> = practices
        .iter()
        .map(|p| {
            let bar = bars.add(ProgressBar::new_spinner().with_style(planning_style()));
            bar.set_prefix(p.practice_id.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            (p.practice_id.clone(), bar)
        })
        .collect();
    // Every resource reconciled whole every cycle, so every delete is
    // captured in the cycle that follows it (a deployment spreads them
    // over the day).
    let sync_config = SyncConfig {
        reconcile: sync_core::reconcile::Policy::every_cycle(),
        ..SyncConfig::default()
    };
    let syncer = Syncer::new(store.clone(), archive.clone(), sync_config);
    let worker = Worker::new(
        syncer,
        queue.clone(),
        client.clone(),
        credentials.clone(),
        WorkerConfig {
            concurrency: 6,
            receive_wait: Duration::from_millis(200),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..WorkerConfig::default()
        },
    );
    let scheduler = Scheduler::new(
        store.clone(),
        queue.clone(),
        SchedulerConfig {
            tick: Duration::from_secs(1),
            max_spread: Duration::ZERO,
            ..SchedulerConfig::default()
        },
    );
    let nightly = Nightly::new(
        store.clone(),
        client.clone(),
        credentials,
        NightlyConfig {
            ignore_window: true,
            ..NightlyConfig::default()
        },
    );
    let (stop, stopped) = watch::channel(false);
    let mut roles = tokio::task::JoinSet::new();
    {
        let stopped = stopped.clone();
        roles.spawn(async move {
            worker.run(stopped).await;
        });
    }
    roles.spawn(async move { scheduler.run(stopped).await });
    println!("scheduler and worker running on the database queue");

    let started = Instant::now();
    let outcome = cycles(
        &args,
        Embedded {
            sim: &sim,
            store: &store,
            queue: &queue,
            nightly: &nightly,
        },
        &practices,
        Bars {
            all: &bars,
            by_practice: &by_practice,
        },
        started,
    )
    .await;
    let _ = stop.send(true);
    while roles.join_next().await.is_some() {}
    store.close().await;
    sim.shutdown().await;
    outcome
}

/// The initial syncs' bars.
struct Bars<'a> {
    all: &'a MultiProgress,
    by_practice: &'a HashMap<String, ProgressBar>,
}

impl Bars<'_> {
    /// A line above the bars (or on stdout, when they are not drawn).
    fn println(&self, line: &str) {
        if self.all.is_hidden() {
            println!("{line}");
        } else {
            let _ = self.all.println(line);
        }
    }
}

fn planning_style() -> ProgressStyle {
    ProgressStyle::with_template("{prefix:>12} {spinner} planning the initial sync")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(
        "{prefix:>12} [{bar:40}] {human_pos:>7} / {human_len:7} records  {rate}  {elapsed}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{}/s", human_count(state.per_sec()));
        },
    )
    .progress_chars("=> ")
}

/// `1,436` (no decimals, thousands separated).
pub(crate) fn human_count(value: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = value.max(0.0).round() as u64;
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `0.8 s`, `12.4 s`, `1 min 04 s`.
pub(crate) fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let whole = d.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// What the demo's cycles drive.
struct Embedded<'a> {
    sim: &'a ascend_sim::RunningSim,
    store: &'a Store,
    queue: &'a Queue,
    nightly: &'a Nightly,
}

/// The initial syncs, checked; then the cycles: change the simulator's
/// data, Force Sync Now each practice, a nightly pass, check.
async fn cycles(
    args: &DemoArgs,
    embedded: Embedded<'_>,
    practices: &[DemoPractice],
    bars: Bars<'_>,
    started: Instant,
) -> Result<()> {
    let Embedded {
        sim,
        store,
        queue,
        nightly,
    } = embedded;
    let mut landed_total = 0u64;
    loop {
        let mut done = 0;
        for practice in practices {
            let id = &practice.practice_id;
            let Some(p) = store.get_practice(id).await? else {
                bail!("{id} vanished");
            };
            let of = control::admin::initial_progress(store, id).await?;
            let bar = bars.by_practice.get(id).filter(|b| !b.is_finished());
            if let (Some(bar), Some(expected)) = (bar, of.expected) {
                let expected = u64::try_from(expected).unwrap_or(0);
                if bar.length() != Some(expected) {
                    bar.set_style(bar_style());
                    bar.set_length(expected);
                }
                // Records added while it runs can take it past Ascend's
                // count: the bar stops at its end.
                bar.set_position(u64::try_from(of.landed).unwrap_or(0).min(expected));
            }
            match p.status {
                PracticeStatus::Active => {
                    done += 1;
                    if let Some(bar) = bar {
                        let took = bar.elapsed();
                        bar.finish_and_clear();
                        // What its tables hold (the chunks also count
                        // records landed again by a retried page).
                        let mut landed = 0;
                        for table in store::Table::ALL {
                            landed += store.count(id, table).await?;
                        }
                        landed_total += landed;
                        #[allow(clippy::cast_precision_loss)]
                        let rate = landed as f64 / took.as_secs_f64().max(1e-3);
                        bars.println(&format!(
                            "{id}: initial sync done, {} records in {} ({} records/s)",
                            human_count(landed as f64),
                            human_duration(took),
                            human_count(rate)
                        ));
                    }
                }
                PracticeStatus::InitialSync => {}
                other => bail!("{id} is {other}: {}", p.status_detail.unwrap_or_default()),
            }
        }
        if done == practices.len() {
            break;
        }
        if queue.depth().await?.dead > 0 {
            bail!("a job reached the dead letters: see `ascend-sync dlq list`");
        }
        if started.elapsed() > INITIAL_LIMIT {
            bail!(
                "the initial syncs did not finish in {} s",
                INITIAL_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = started.elapsed();
    #[allow(clippy::cast_precision_loss)]
    let rate = landed_total as f64 / took.as_secs_f64().max(1e-3);
    bars.println(&format!(
        "initial syncs: {} records landed in {} ({} records/s)",
        human_count(landed_total as f64),
        human_duration(took),
        human_count(rate)
    ));
    // Every bar is finished: nothing is drawn again.
    let _ = bars.all.clear();
    verify_all(sim, store, practices).await?;
    if let Some(first) = practices.first() {
        writeback(sim, store, first).await?;
    }

    let mut cycle = 0u64;
    loop {
        cycle += 1;
        for practice in practices {
            let org_id = &sim.orgs()[practice.org_index].organization_id;
            let changed_at = OffsetDateTime::now_utc();
            let (changes, deleted) =
                mutate(&sim.base_url(), org_id, args.seed * 1000 + cycle).await?;
            let run = synced_since(store, queue, &practice.practice_id, changed_at).await?;
            let changed: Vec<String> = run
                .resources
                .iter()
                .filter(|r| r.written > 0 || r.error_class.is_some())
                .map(|r| match &r.error_class {
                    Some(class) => format!("{} failed ({class})", r.resource),
                    None => format!("{} {}", r.resource, r.written),
                })
                .collect();
            println!(
                "cycle {cycle} {}: simulator changed {changes} records, deleted {deleted}; {} ({} attempt {}), {} fetched: {}",
                practice.practice_id,
                run.status,
                run.kind,
                run.attempt,
                run.fetched.unwrap_or(0),
                if changed.is_empty() {
                    "no changes".to_string()
                } else {
                    changed.join(", ")
                }
            );
        }
        let (_keep, never) = watch::channel(false);
        let report = nightly
            .pass(OffsetDateTime::now_utc(), &never)
            .await
            .context("the nightly pass failed")?;
        if report.failed() > 0 {
            bail!("the nightly pass failed for a practice: {report:?}");
        }
        println!(
            "nightly pass: {} deletes applied, {} captures cancelled",
            report.applied(),
            report.cancelled()
        );
        verify_all(sim, store, practices).await?;
        if args.once {
            println!("converged: every table of every practice equals the simulator");
            return Ok(());
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(args.interval_secs)) => {}
            () = crate::sim::shutdown_signal() => {
                println!("stopping");
                return Ok(());
            }
        }
    }
}

/// Write-back, as a practice sees it: three types turned on, one left off;
/// one request of each submitted; the enabled ones arrive in the
/// simulator once each (its write journal says so), the other is held.
async fn writeback(
    sim: &ascend_sim::RunningSim,
    store: &Store,
    practice: &DemoPractice,
) -> Result<()> {
    use model::WritebackType as T;
    use serde_json::json;
    let id = practice.practice_id.as_str();
    let ids = |records: Vec<store::LandedRecord>| -> Vec<i64> {
        records.into_iter().map(|r| r.id).collect()
    };
    let patients = ids(store.landed_records(id, store::Table::Patients).await?);
    let appointments = ids(store.landed_records(id, store::Table::Appointments).await?);
    let providers = ids(store.landed_records(id, store::Table::Providers).await?);
    let (Some(patient), Some(appointment), Some(provider)) =
        (patients.first(), appointments.first(), providers.first())
    else {
        bail!("{id} has no patient, appointment or provider to write back to");
    };
    let change = store::SettingsChange {
        switch: vec![
            (T::SmsLog, true),
            (T::Confirmation, true),
            (T::NewAppointment, true),
        ],
        note_provider_id: Some(u64::try_from(*provider).ok()),
    };
    control::writeback::change_settings(store, id, &change, "demo").await?;
    let requests = [
        (
            T::SmsLog,
            json!({"patient_id": patient.to_string(), "direction": "outbound",
                   "text": "Reminder: your cleaning is tomorrow at 9:00", "sent_at": "2026-12-04T10:00:00Z"}),
        ),
        (
            T::Confirmation,
            json!({"appointment_id": appointment.to_string(), "status": "CONFIRMED"}),
        ),
        (
            T::NewAppointment,
            json!({"patient_id": patient.to_string(), "start": "2027-01-05T09:00:00Z",
                   "duration_minutes": 30, "note": "Booked online"}),
        ),
        (
            T::CallLog,
            json!({"patient_id": patient.to_string(), "direction": "inbound",
                   "summary": "Asked about insurance", "at": "2026-12-04T10:05:00Z"}),
        ),
    ];
    for (kind, body) in &requests {
        let key = format!("demo-{kind}");
        control::writeback::submit(store, id, kind.as_str(), &key, body, "demo").await?;
    }
    let asked = Instant::now();
    let items = loop {
        let items = store.writeback_items(Some(id), None, 100).await?;
        let waiting = items.iter().any(|i| {
            matches!(
                i.status,
                model::ItemStatus::Pending | model::ItemStatus::Failed | model::ItemStatus::Sending
            )
        });
        if !waiting {
            break items;
        }
        if asked.elapsed() > CYCLE_LIMIT {
            bail!(
                "{id}: write-backs still waiting after {} s",
                CYCLE_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let org_id = &sim.orgs()[practice.org_index].organization_id;
    let journal: Vec<ascend_sim::WriteRecord> = reqwest::Client::new()
        .get(format!("{}/_sim/orgs/{org_id}/writes", sim.base_url()))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let applied = journal.iter().filter(|w| w.applied).count();
    let mut lines = Vec::new();
    for item in items.iter().rev() {
        lines.push(match (item.status, item.ascend_id) {
            (model::ItemStatus::Sent, Some(ascend_id)) => {
                format!("{} sent (Ascend id {ascend_id})", item.kind)
            }
            (status, _) => format!(
                "{} {status}: {}",
                item.kind,
                item.reason.as_deref().unwrap_or("")
            ),
        });
    }
    let sent = items
        .iter()
        .filter(|i| i.status == model::ItemStatus::Sent)
        .count();
    if sent != 3 || applied != 3 {
        bail!(
            "{id}: write-back sent {sent} items and the simulator applied {applied} writes, not 3: {lines:?}"
        );
    }
    println!(
        "write-back {id}: the simulator applied {applied} writes, one per enabled item; {}",
        lines.join("; ")
    );
    Ok(())
}

/// The most the initial syncs may take before the demo gives up.
const INITIAL_LIMIT: Duration = Duration::from_secs(600);

/// Forces a sync of `practice_id` (Force Sync Now, as an admin would) until
/// one that started after `since` has succeeded; that run.
async fn synced_since(
    store: &Store,
    queue: &Queue,
    practice_id: &str,
    since: OffsetDateTime,
) -> Result<RunRecord> {
    let asked = Instant::now();
    loop {
        let runs = store
            .history(&HistoryQuery {
                practice_id: Some(practice_id.to_owned()),
                failed_only: false,
                since: Some(since),
                limit: 20,
            })
            .await?;
        if let Some(run) = runs.into_iter().find(|r| {
            r.started_at >= since
                && matches!(r.status, RunState::Succeeded | RunState::Partial)
                && r.kind == "incremental"
        }) {
            return Ok(run);
        }
        // Folds into a sync already queued or running; once that one has
        // ended (if it started before the change), a new one is queued.
        force_sync(store, queue, practice_id, Trigger::Admin, FORCE_CLAIM).await?;
        if asked.elapsed() > CYCLE_LIMIT {
            bail!(
                "{practice_id}: no sync succeeded within {} s",
                CYCLE_LIMIT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const FORCE_CLAIM: Duration = Duration::from_secs(600);
const CYCLE_LIMIT: Duration = Duration::from_secs(120);

/// Connects organization `index`'s first location as a practice, as
/// `practice add` does: proved, sealed and stored (the worker opens it from
/// the store for each job).
async fn register(with: &Connector, index: usize, info: &OrgInfo) -> Result<DemoPractice> {
    let location: u64 = info
        .location_ids
        .first()
        .context("an organization without locations")?
        .parse()?;
    let practice_id = format!("practice-{}", index + 1);
    control::connect(
        with,
        NewConnection {
            practice: NewPractice {
                practice_id: practice_id.clone(),
                organization_id: info.organization_id.clone(),
                location_id: location as i64,
                api_base: info.api_base.clone(),
                sync_interval_minutes: 2,
            },
            token_url: info.token_url.clone(),
            client_id: info.client_id.clone(),
            client_secret: SecretString::from(info.client_secret.clone()),
        },
        "demo",
    )
    .await
    .context("the organization's credentials do not work")?;
    Ok(DemoPractice {
        practice_id,
        org_index: index,
        scope: Scope {
            location_id: Some(location),
        },
    })
}

/// Creates, updates and deletes a few records of every resource of one
/// organization; how many were created or updated, and deleted.
async fn mutate(base: &str, org_id: &str, seed: u64) -> Result<(usize, usize)> {
    let result: ascend_sim::MutateResult = reqwest::Client::new()
        .post(format!("{base}/_sim/orgs/{org_id}/mutate"))
        .json(&MutateRequest {
            resource: None,
            creates: 15,
            updates: 25,
            deletes: 6,
            seed,
        })
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok((
        result.created.len() + result.updated.len(),
        result.deleted.len(),
    ))
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
        "verified: {} records across {} practices equal the simulator",
        human_count(checked as f64),
        practices.len()
    );
    Ok(())
}
