//! `ascend-sync`: the one binary. Each role of the system is a subcommand, so
//! one container image serves every role with a different command.

mod admin;
mod budget;
mod connect;
mod data;
mod demo;
mod history;
mod nightly;
mod operator;
mod practice;
mod pull;
mod runtime;
mod sim;
mod sync_cmd;
mod writeback;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "ascend-sync",
    version,
    about = "Keeps an analytics copy of Dentrix Ascend practices in step."
)]
struct Cli {
    /// Log format: `text` for people, `json` for CloudWatch Logs.
    #[arg(
        long,
        global = true,
        env = "ASCEND_SYNC_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Dentrix Ascend simulator (the test double of the real API).
    Sim(sim::SimArgs),
    /// Pull every resource of one organization through the Ascend client,
    /// with keyset paging, and report what arrived (no storage yet).
    Pull(pull::PullArgs),
    /// Run everything embedded: the simulator, three practices syncing into
    /// SQLite, incremental cycles while the simulator changes data.
    Demo(demo::DemoArgs),
    /// Register a practice (credentials from a file) and run its initial
    /// sync, or resume it, then one incremental cycle.
    Sync(sync_cmd::SyncArgs),
    /// Apply the database migrations.
    Migrate(data::MigrateArgs),
    /// Rebuild a practice's tables from the raw archive, without API calls.
    Replay(data::ReplayArgs),
    /// The scheduler role: enqueue the jobs of the practices that are due.
    Scheduler(runtime::SchedulerArgs),
    /// The worker role: run jobs from the queue (SIGTERM: finish or
    /// release running jobs within the grace period, then exit 0).
    Worker(runtime::WorkerArgs),
    /// Force Sync Now: enqueue a practice's sync ahead of scheduled work,
    /// or fold into the one queued or running.
    Force(runtime::ForceArgs),
    /// The nightly role: apply the captured deletes of practices whose
    /// processing window is open, each confirmed absent in Ascend first.
    Nightly(nightly::NightlyArgs),
    /// The dead letters: list them, or move them back to the queue.
    Dlq(runtime::DlqArgs),
    /// Show the sync history: one line per attempt, newest first.
    History(history::HistoryArgs),
    /// Show every practice: status, freshness, next due, job in flight.
    Status(history::StatusArgs),
    /// Connect, disable, enable and remove practices; rotate their
    /// credentials; read the audit log.
    Practice(practice::PracticeArgs),
    /// Key management: rewrap every practice's data key under another key.
    Keys(practice::KeysArgs),
    /// Serve the admin API (`/api/v1`, `/openapi.json`) and the pages:
    /// PMS Sync Settings, Sync History, Practices, Dead letters.
    Admin(admin::AdminArgs),
    /// Bearer tokens of the admin API: create, list, revoke.
    AdminToken(practice::TokenArgs),
    /// Each organization's request budget, shared by the fleet: list them,
    /// or give an organization its own limit.
    Budget(budget::BudgetArgs),
    /// Write-back: put requests into a practice's outbox, list the outbox,
    /// and switch each type on or off per practice.
    Writeback(writeback::WritebackArgs),
    /// Print the shell completion script, e.g.
    /// `ascend-sync completions bash > /etc/bash_completion.d/ascend-sync`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("ASCEND_SYNC_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        use clap::CommandFactory;
        use std::io::Write;
        let mut command = Cli::command();
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut command, "ascend-sync", &mut script);
        return match std::io::stdout().write_all(&script) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => Ok(other?),
        };
    }
    init_tracing(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Sim(args) => sim::run(args).await,
            Command::Pull(args) => pull::run(args).await,
            Command::Demo(args) => demo::run(args).await,
            Command::Sync(args) => sync_cmd::run(args).await,
            Command::Migrate(args) => data::migrate(args).await,
            Command::Replay(args) => data::replay(args).await,
            Command::Scheduler(args) => runtime::scheduler(args).await,
            Command::Worker(args) => runtime::worker(args).await,
            Command::Force(args) => runtime::force(args).await,
            Command::Nightly(args) => nightly::run(args).await,
            Command::Dlq(args) => runtime::dlq(args).await,
            Command::History(args) => history::history(args).await,
            Command::Status(args) => history::status(args).await,
            Command::Practice(args) => practice::practice(args).await,
            Command::Keys(args) => practice::keys(args).await,
            Command::Admin(args) => admin::run(args).await,
            Command::AdminToken(args) => practice::admin_token(args).await,
            Command::Budget(args) => budget::run(args).await,
            Command::Writeback(args) => writeback::run(args).await,
            Command::Completions { .. } => Ok(()),
        }
    })
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub(crate) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
