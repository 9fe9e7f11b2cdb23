//! `ascend-sync budget`: each organization's request budget, as the fleet
//! keeps it (the limit, the rate it paces to now, a pause, the `429`s),
//! and an organization's own limit (gated and audited as `budget.set`).

use access::Action;
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use model::OrgBudget;
use store::Store;
use time::OffsetDateTime;

use crate::history::{format_time, or_dash, table, write_stdout};
use crate::operator::{gate, operator};

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
            let store = connect(&database_url).await?;
            let who = operator();
            let result = async {
                gate(&store, &who, Action::SetBudget).await?;
                control::admin::set_budget(
                    &store,
                    &organization_id,
                    requests_per_second,
                    &who.actor,
                )
                .await
                .context("cannot set the budget")
            }
            .await;
            store.close().await;
            result?;
            match requests_per_second {
                Some(limit) => {
                    println!("organization {organization_id}: {limit} requests per second")
                }
                None => println!("organization {organization_id}: the fleet's default"),
            }
            Ok(())
        }
    }
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
