//! `ascend-sync sim`: serves the simulator until Ctrl-C or SIGTERM.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use ascend_sim::{SimConfig, Size};
use clap::Args;

#[derive(Args)]
pub struct SimArgs {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8089")]
    listen: String,
    /// Number of organizations to serve.
    #[arg(long, default_value_t = 1)]
    orgs: usize,
    /// Data volume per organization: small (about 5k records), medium (100k), large (1M).
    #[arg(long, default_value = "small")]
    size: Size,
    /// Seed of the generated data; the same seed serves the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Lifetime of issued access tokens, in seconds.
    #[arg(long, default_value_t = 3600)]
    token_ttl_secs: u64,
    /// Per-organization rate limit in requests per second (429 beyond it).
    #[arg(long)]
    rate_limit: Option<u32>,
    /// The day (YYYY-MM-DD, UTC) the generated world is placed at: the last
    /// 90 days hold the appointments just seen, the next year the schedule,
    /// and nothing was modified after it. Default: today. Fix it for the
    /// same data on any day (with the same seed).
    #[arg(long, value_parser = parse_day)]
    today: Option<time::Date>,
}

/// A `YYYY-MM-DD` date.
fn parse_day(text: &str) -> Result<time::Date, String> {
    time::Date::parse(
        text.trim(),
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|e| format!("expected a date like 2026-01-31 ({e})"))
}

pub async fn run(args: SimArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let config = SimConfig {
        orgs: args.orgs,
        size: args.size,
        seed: args.seed,
        token_ttl: Duration::from_secs(args.token_ttl_secs),
        rate_limit_rps: args.rate_limit,
        today: args.today,
    };
    let sim = ascend_sim::spawn(config, listener)
        .await
        .context("the simulator could not start")?;
    {
        let mut out = std::io::stdout().lock();
        for org in sim.orgs() {
            serde_json::to_writer(&mut out, org)?;
            writeln!(out)?;
        }
        out.flush()?;
    }
    tracing::info!(addr = %sim.addr(), today = %sim.today(), "simulator serving");
    shutdown_signal().await;
    sim.shutdown().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn today_is_a_calendar_date() {
        assert_eq!(
            parse_day("2026-01-31"),
            Ok(time::macros::date!(2026 - 01 - 31))
        );
        for bad in ["2026-02-30", "31/01/2026", "today", ""] {
            assert!(parse_day(bad).is_err(), "{bad}");
        }
    }
}
