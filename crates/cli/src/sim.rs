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
    /// Locations per organization, 1 to 64 (operatories scale with it; the
    /// records are shared among them). Default: 1 to 4, drawn from the seed.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=i64::from(ascend_sim::MAX_LOCATIONS)))]
    locations: Option<u32>,
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
        locations: args.locations,
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

    #[derive(clap::Parser)]
    struct Command {
        #[command(flatten)]
        sim: SimArgs,
    }

    fn parse(args: &[&str]) -> Result<SimArgs, clap::Error> {
        use clap::Parser;
        Command::try_parse_from(std::iter::once("sim").chain(args.iter().copied())).map(|c| c.sim)
    }

    #[test]
    fn locations_is_1_to_64_and_unset_by_default() -> Result<()> {
        assert_eq!(parse(&[])?.locations, None);
        assert_eq!(parse(&["--locations", "10"])?.locations, Some(10));
        assert_eq!(parse(&["--locations", "1"])?.locations, Some(1));
        assert_eq!(parse(&["--locations", "64"])?.locations, Some(64));
        // Read as a flag, not a value, but refused all the same.
        assert!(parse(&["--locations", "-1"]).is_err());
        for bad in ["0", "65", "ten", ""] {
            let Err(error) = parse(&["--locations", bad]) else {
                anyhow::bail!("--locations {bad} was accepted");
            };
            let message = error.to_string();
            assert!(message.contains("--locations"), "{message}");
        }
        let Err(error) = parse(&["--locations", "65"]) else {
            anyhow::bail!("65 accepted");
        };
        assert!(error.to_string().contains("1..=64"), "{error}");
        Ok(())
    }

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
