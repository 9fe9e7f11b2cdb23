//! `cargo xtask bench org`: what a dental group's sync costs, in API calls
//! and time (issue 14).
//!
//! One simulated organization with `--locations` locations (10 by
//! default) and one practice per location (`loc-1`, `loc-2`, ..., each
//! with its location id), in a scratch Postgres database on
//! `DATABASE_URL`'s server. Two phases, each measured from the first Force
//! Sync Now to an empty queue:
//!
//! 1. **initial**: every practice forced at once, then one worker (4 job
//!    slots by default) runs the plans and chunks until the queue is idle;
//! 2. **incremental**: about 1 % of the organization's records changed in
//!    the simulator (a quarter created, the rest updated, spread over every
//!    resource), then every practice forced again and one cycle each run.
//!
//! For each phase: the API calls the simulator received (its counters,
//! reset before the phase), split into the organization-wide resources
//! (`sync_core::Scope::is_location_scoped` false: locations, providers,
//! patients, tx cases, insurance plans, carriers) and the location-scoped
//! ones, the wall time, and the records written (sync history). After each
//! phase every practice's tables are checked against the simulator's
//! records in its scope. Prints markdown tables.
//!
//! ```sh
//! cargo xtask bench org [--locations 10] [--size small] [--seed 7] [--slots 4] [--rps 1000]
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use ascend_client::Resource;
use ascend_sim::{MutateRequest, SimConfig, Size};
use model::Trigger;
use queue::{DbQueue, Queue, QueueSettings};
use store::{ForceDecision, HistoryQuery, NewPractice, PracticeStatus, RunRecord, RunState};
use sync_core::Scope;
use system_tests::{Db, Sim, TempDir, TestStore, assert_table_equals_source, fleet_client};
use time::OffsetDateTime;
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

/// The most one phase may take.
const PHASE_LIMIT: Duration = Duration::from_secs(3600);

struct Args {
    size: Size,
    locations: u32,
    seed: u64,
    slots: usize,
    rps: f64,
}

fn value<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T> {
    match args.iter().position(|a| a == name) {
        None => Ok(default),
        Some(i) => {
            let text = args
                .get(i + 1)
                .with_context(|| format!("{name} needs a value"))?;
            text.parse()
                .map_err(|_| anyhow::anyhow!("{name}: cannot read {text:?}"))
        }
    }
}

fn parse(args: &[String]) -> Result<Args> {
    const KNOWN: [&str; 5] = ["--size", "--locations", "--seed", "--slots", "--rps"];
    for (i, a) in args.iter().enumerate() {
        let is_value = i > 0 && KNOWN.contains(&args[i - 1].as_str());
        if !is_value && !KNOWN.contains(&a.as_str()) {
            bail!(
                "unknown argument {a:?}; usage: org_bench [--locations 10] [--size small] \
                 [--seed 7] [--slots 4] [--rps 1000]"
            );
        }
    }
    let parsed = Args {
        size: value(args, "--size", Size::Small)?,
        locations: value(args, "--locations", 10)?,
        seed: value(args, "--seed", 7)?,
        slots: value(args, "--slots", 4)?,
        rps: value(args, "--rps", 1000.0)?,
    };
    ensure!(
        (1..=ascend_sim::MAX_LOCATIONS).contains(&parsed.locations),
        "--locations must be 1 to {}",
        ascend_sim::MAX_LOCATIONS
    );
    ensure!(parsed.slots > 0, "--slots must be at least 1");
    ensure!(parsed.rps > 0.0, "--rps must be above 0");
    Ok(parsed)
}

/// One practice per location of organization 0.
struct Bench {
    sim: Sim,
    db: TestStore,
    _archive_dir: TempDir,
    queue: Queue,
    worker: Worker,
    /// `(practice id, location id)`.
    practices: Vec<(String, u64)>,
}

/// What one phase cost.
struct Phase {
    name: &'static str,
    seconds: f64,
    /// `"GET /v1/patients"`-style template -> calls.
    calls: BTreeMap<String, u64>,
    token_requests: u64,
    runs: Vec<RunRecord>,
    /// Records in the practices' tables, checked against the simulator.
    verified: usize,
}

impl Phase {
    fn api_calls(&self) -> u64 {
        self.calls.values().sum()
    }

    /// Calls for the organization-wide resources and for the
    /// location-scoped ones; calls of no known resource are in neither.
    fn split(&self) -> (u64, u64) {
        let (mut org, mut loc) = (0, 0);
        for (template, n) in &self.calls {
            match resource_of(template) {
                Some(r) if Scope::is_location_scoped(r) => loc += n,
                Some(_) => org += n,
                None => {}
            }
        }
        (org, loc)
    }

    fn written(&self) -> i64 {
        self.runs.iter().filter_map(|r| r.written).sum()
    }

    fn client_calls(&self) -> i64 {
        self.runs.iter().filter_map(|r| r.api_calls).sum()
    }

    fn retries(&self) -> usize {
        self.runs.iter().filter(|r| r.attempt > 1).count()
    }
}

/// The resource of a counter's template, `"GET /v1/patients/{id}"`.
fn resource_of(template: &str) -> Option<Resource> {
    let path = template.split_once(' ').map_or(template, |(_, p)| p);
    Resource::ALL.iter().copied().find(|r| {
        path == r.path()
            || path
                .strip_prefix(r.path())
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

impl Bench {
    async fn new(args: &Args) -> Result<Bench> {
        let sim = Sim::start(SimConfig {
            size: args.size,
            seed: args.seed,
            locations: Some(args.locations),
            ..SimConfig::default()
        })
        .await?;
        let db = TestStore::new(Db::Postgres).await?;
        let archive_dir = TempDir::new("org-bench-archive")?;
        let archive = blob::Archive::local(archive_dir.path().to_path_buf())?;
        let info = sim.org(0).clone();
        ensure!(
            info.location_ids.len() == args.locations as usize,
            "the simulator made {} locations",
            info.location_ids.len()
        );
        let mut practices = Vec::new();
        for (k, location) in info.location_ids.iter().enumerate() {
            let practice_id = format!("loc-{}", k + 1);
            let location: u64 = location.parse()?;
            db.store
                .upsert_practice(&NewPractice {
                    practice_id: practice_id.clone(),
                    organization_id: info.organization_id.clone(),
                    location_id: i64::try_from(location)?,
                    api_base: info.api_base.clone(),
                    sync_interval_minutes: store::DEFAULT_SYNC_INTERVAL_MINUTES,
                })
                .await?;
            practices.push((practice_id, location));
        }
        // The tests' settings, with a visibility long enough that a loaded
        // machine never redelivers a running job (a retry would add calls).
        let visibility = Duration::from_secs(60);
        let queue = Queue::from(DbQueue::new(
            db.store.clone(),
            QueueSettings {
                max_receive_count: 5,
                visibility,
            },
        ));
        let worker = Worker::new(
            Syncer::new(db.store.clone(), archive, SyncConfig::default()),
            queue.clone(),
            fleet_client(&db.store, args.rps)?,
            Arc::new(FixedCredentials(sim.connection(0)?)),
            WorkerConfig {
                worker_id: "org-bench".into(),
                concurrency: args.slots,
                visibility,
                receive_wait: Duration::from_millis(200),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ..WorkerConfig::default()
            },
        );
        Ok(Bench {
            sim,
            db,
            _archive_dir: archive_dir,
            queue,
            worker,
            practices,
        })
    }

    /// Forces every practice at once and runs the worker until the queue
    /// is idle; the simulator's counters and the runs of the phase.
    async fn phase(&self, name: &'static str) -> Result<Phase> {
        self.sim.reset_counters().await?;
        let since = OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
        let started = Instant::now();
        for (practice, _) in &self.practices {
            let decision = control::force_sync(
                &self.db.store,
                &self.queue,
                practice,
                Trigger::Admin,
                control::FORCE_CLAIM,
            )
            .await?;
            if let ForceDecision::NotSyncable { status } = decision {
                bail!("{practice} cannot be synced: {status}");
            }
        }
        worker::drain::run_until_idle(&self.worker, &self.queue, PHASE_LIMIT).await?;
        let seconds = started.elapsed().as_secs_f64();
        let counters = self.sim.counters(0).await?;
        let mut runs = self
            .db
            .store
            .history(&HistoryQuery {
                practice_id: None,
                failed_only: false,
                since: Some(since),
                limit: 100_000,
            })
            .await?;
        runs.reverse();
        let calls = counters
            .calls
            .into_iter()
            .filter(|(template, _)| template.contains(" /v1/"))
            .collect();
        Ok(Phase {
            name,
            seconds,
            calls,
            token_requests: counters.token_requests,
            runs,
            verified: 0,
        })
    }

    /// Every practice's tables equal the simulator's records in its scope;
    /// the number of records checked.
    async fn verify(&self, when: &str) -> Result<usize> {
        let mut total = 0;
        for (practice, location) in &self.practices {
            let practice_row = self
                .db
                .store
                .get_practice(practice)
                .await?
                .with_context(|| format!("{practice} is gone"))?;
            ensure!(
                practice_row.status == PracticeStatus::Active,
                "{when}: {practice} is {} (the initial sync did not complete)",
                practice_row.status
            );
            let scope = Scope {
                location_id: Some(*location),
            };
            for &resource in Resource::ALL {
                total += assert_table_equals_source(
                    &self.sim,
                    0,
                    &self.db.store,
                    practice,
                    scope,
                    resource,
                )
                .await
                .with_context(|| format!("{when}: {practice} {resource}"))?;
            }
        }
        Ok(total)
    }

    /// About `percent` % of the organization's records changed: a quarter
    /// created, the rest updated, spread over every resource by size.
    async fn churn(&self, percent: f64) -> Result<(usize, usize)> {
        let mut records = 0;
        for &resource in Resource::ALL {
            records += self.sim.snapshot(0, resource, false).await?.len();
        }
        let changed = ((records as f64) * percent / 100.0).round().max(4.0) as usize;
        let creates = changed / 4;
        let updates = changed - creates;
        let result = self
            .sim
            .mutate(
                0,
                &MutateRequest {
                    resource: None,
                    creates,
                    updates,
                    deletes: 0,
                    seed: 14,
                },
            )
            .await?;
        ensure!(
            result.created.len() == creates,
            "the simulator created {} of {creates}",
            result.created.len()
        );
        Ok((records, result.created.len() + result.updated.len()))
    }
}

/// Fails when a run of the phase did not succeed, naming the first few. A
/// skipped run (a location's share chunk waiting for the organization's
/// pull, a duplicate chunk job after its initial sync finished) did
/// nothing and is not a failure.
fn check_runs(phase: &Phase) -> Result<()> {
    let bad: Vec<&RunRecord> = phase
        .runs
        .iter()
        .filter(|r| !matches!(r.status, RunState::Succeeded | RunState::Skipped))
        .collect();
    if let Some(first) = bad.first() {
        bail!(
            "{}: {} of {} runs did not succeed; the first: {} {} {} {:?}",
            phase.name,
            bad.len(),
            phase.runs.len(),
            first.practice_id,
            first.kind,
            first.status,
            first.error_message
        );
    }
    Ok(())
}

fn thousands(n: impl Into<i128>) -> String {
    let n: i128 = n.into();
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    let args = parse(&raw)?;
    let mut command = String::from("cargo xtask bench org");
    for a in &raw {
        command.push(' ');
        command.push_str(a);
    }
    println!("$ {command}");
    println!(
        "one {} organization (seed {}), {} location(s), one practice per location; \
         Postgres on DATABASE_URL's server; one worker, {} job slots, {} requests/s for the organization",
        args.size, args.seed, args.locations, args.slots, args.rps
    );

    let bench = Bench::new(&args).await?;
    let outcome = run(&bench).await;
    bench.sim.shutdown().await;
    bench.db.remove().await?;
    outcome
}

async fn run(bench: &Bench) -> Result<()> {
    let mut initial = bench.phase("initial").await?;
    check_runs(&initial)?;
    initial.verified = bench.verify("after the initial sync").await?;

    let (records, changed) = bench.churn(1.0).await?;
    println!(
        "churn before the incremental phase: {changed} of {} records created or updated",
        thousands(records as i64)
    );
    let mut incremental = bench.phase("incremental").await?;
    check_runs(&incremental)?;
    incremental.verified = bench.verify("after the incremental cycle").await?;
    let phases = [initial, incremental];

    println!();
    println!(
        "| phase | API calls | organization-wide resources | location-scoped resources | wall seconds | records landed |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for p in &phases {
        let (org, loc) = p.split();
        println!(
            "| {} | {} | {} | {} | {:.2} | {} |",
            p.name,
            thousands(p.api_calls() as i64),
            thousands(org as i64),
            thousands(loc as i64),
            p.seconds,
            thousands(p.written())
        );
    }

    println!();
    println!(
        "Per resource: API calls (GET, a page or a record by id) and rows written (sync history), all practices:"
    );
    println!();
    println!(
        "| resource | scope | initial calls | initial rows | incremental calls | incremental rows |"
    );
    println!("|---|---|---:|---:|---:|---:|");
    for &resource in Resource::ALL {
        let calls = |p: &Phase| -> u64 {
            p.calls
                .iter()
                .filter(|(t, _)| resource_of(t) == Some(resource))
                .map(|(_, n)| n)
                .sum()
        };
        let rows = |p: &Phase| -> i64 {
            p.runs
                .iter()
                .flat_map(|r| &r.resources)
                .filter(|c| c.resource == resource.name())
                .map(|c| c.written)
                .sum()
        };
        let scope = if Scope::is_location_scoped(resource) {
            "location"
        } else {
            "organization"
        };
        println!(
            "| {} | {scope} | {} | {} | {} | {} |",
            resource.path(),
            thousands(calls(&phases[0]) as i64),
            thousands(rows(&phases[0])),
            thousands(calls(&phases[1]) as i64),
            thousands(rows(&phases[1]))
        );
    }

    println!();
    for p in &phases {
        println!(
            "{}: {} runs ({} skipped, {} retried deliveries), {} API calls counted by the client, \
             {} token requests, {} records in the practices' tables equal to the simulator's",
            p.name,
            p.runs.len(),
            p.runs
                .iter()
                .filter(|r| r.status == RunState::Skipped)
                .count(),
            p.retries(),
            thousands(p.client_calls()),
            p.token_requests,
            thousands(p.verified as i64)
        );
    }
    Ok(())
}
