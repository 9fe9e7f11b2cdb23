//! `ascend-sync budget`: each organization's request budget, as the fleet
//! keeps it (the limit, the rate it paces to now, a pause, the `429`s),
//! and an organization's own limit.

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use model::OrgBudget;
use store::Store;
use sync_core::budget::{Policy, fresh};
use time::OffsetDateTime;

use crate::history::{format_time, or_dash, table, write_stdout};

/// The highest limit an organization can be given, requests per second.
const MAX_LIMIT: f64 = 1000.0;

#[derive(Args)]
pub struct BudgetArgs {
    #[command(subcommand)]
    command: BudgetCommand,
}

#[derive(Subcommand)]
enum BudgetCommand {
    /// Every organization's budget.
    List {
        /// `postgres://...` (production: RDS) or `sqlite:PATH` (embedded).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// One JSON object a line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Give an organization its own limit (or back the fleet's default).
    Set {
        /// `postgres://...` (production: RDS) or `sqlite:PATH` (embedded).
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// The organization (`Organization-ID`).
        #[arg(long)]
        organization_id: String,
        /// Requests per second, above 0 and at most 1000.
        #[arg(long, conflicts_with = "default", required_unless_present = "default")]
        requests_per_second: Option<f64>,
        /// Use the fleet's default (`--requests-per-second` of the workers).
        #[arg(long)]
        default: bool,
    },
}

/// `ascend-sync budget`.
pub async fn run(args: BudgetArgs) -> Result<()> {
    match args.command {
        BudgetCommand::List { database_url, json } => {
            let store = connect(&database_url).await?;
            let budgets = store.budgets().await.context("cannot read the budgets")?;
            store.close().await;
            let now = OffsetDateTime::now_utc();
            let text = if json {
                budgets
                    .iter()
                    .map(|b| budget_json(b, now).to_string() + "\n")
                    .collect()
            } else if budgets.is_empty() {
                "no organization has made a request yet\n".to_owned()
            } else {
                budgets_table(&budgets, now)
            };
            write_stdout(&text)
        }
        BudgetCommand::Set {
            database_url,
            organization_id,
            requests_per_second,
            default: _,
        } => {
            let limit = requests_per_second.map(checked_limit).transpose()?;
            let organization_id: ascend_client::OrganizationId = organization_id
                .parse()
                .with_context(|| format!("bad Organization-ID {organization_id:?}"))?;
            let store = connect(&database_url).await?;
            let org = organization_id.as_str();
            let made = Policy::new(limit.unwrap_or(1.0));
            store
                .configure_budget(org, limit, |now| fresh(org, &made, now))
                .await
                .context("cannot set the budget")?;
            store.close().await;
            match limit {
                Some(limit) => println!("organization {org}: {limit} requests per second"),
                None => println!("organization {org}: the fleet's default"),
            }
            Ok(())
        }
    }
}

/// A limit an operator may set: a number above 0, at most [`MAX_LIMIT`].
fn checked_limit(limit: f64) -> Result<f64> {
    if !limit.is_finite() || limit <= 0.0 || limit > MAX_LIMIT {
        bail!("--requests-per-second must be above 0 and at most {MAX_LIMIT}, not {limit}");
    }
    Ok(limit)
}

async fn connect(url: &str) -> Result<Store> {
    let store = Store::connect(url)
        .await
        .context("cannot connect to the database")?;
    store.migrate().await.context("migrations failed")?;
    Ok(store)
}

/// The budgets, for `status` and `budget list`.
pub fn budgets_table(budgets: &[OrgBudget], now: OffsetDateTime) -> String {
    let rows: Vec<Vec<String>> = budgets
        .iter()
        .map(|b| {
            let limit = match b.configured {
                Some(_) => format!("{:.1}", b.limit),
                None => format!("{:.1} (default)", b.limit),
            };
            let paused = b.paused_until.filter(|until| *until > now).map(format_time);
            vec![
                b.organization_id.clone(),
                limit,
                format!("{:.1}", b.rate),
                or_dash(paused),
                b.granted.to_string(),
                b.throttled.to_string(),
            ]
        })
        .collect();
    table(
        &[
            "ORGANIZATION",
            "LIMIT/S",
            "RATE/S",
            "PAUSED UNTIL",
            "REQUESTS",
            "429S",
        ],
        &rows,
    )
}

fn budget_json(b: &OrgBudget, now: OffsetDateTime) -> serde_json::Value {
    serde_json::json!({
        "organization_id": b.organization_id,
        "limit_per_second": b.limit,
        "own_limit": b.configured.is_some(),
        "rate_per_second": b.rate,
        "paused_until": b.paused_until.filter(|until| *until > now).map(|t| t.to_string()),
        "requests": b.granted,
        "throttled": b.throttled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_limit_must_be_a_positive_number_within_reason() {
        assert_eq!(checked_limit(12.5).ok(), Some(12.5));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1000.5] {
            assert!(checked_limit(bad).is_err(), "{bad} accepted");
        }
    }
}
