//! `ascend-sync nightly` (the role that applies captured deletes, issue
//! 13), `ascend-sync practice window` (a practice's processing window and
//! time zone) and the deletes section of `status`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use control::admin::WindowChange;
use nightly::{Nightly, NightlyConfig};
use serde_json::json;
use store::{DeleteCounts, Store};
use sync_core::nightly::Zone;
use time::OffsetDateTime;
use worker::credentials::VaultCredentials;

use crate::connect::ClientArgs;
use crate::history::{format_time, or_dash, table};
use crate::practice::VaultArgs;
use crate::runtime::{StoreArgs, shutdown_signal};

#[derive(Args)]
pub struct NightlyArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    metrics: crate::runtime::MetricsArgs,
    #[command(flatten)]
    client: ClientArgs,
    /// Where the practices' sealed credentials are opened.
    #[command(flatten)]
    vault: VaultArgs,
    /// One pass, then exit (a scheduled task); else a pass every
    /// --interval-secs until SIGTERM.
    #[arg(long)]
    once: bool,
    /// Apply now, whatever each practice's processing window (operators,
    /// tests). Each delete is still confirmed with Ascend first.
    #[arg(long)]
    ignore_window: bool,
    /// Seconds between passes in continuous mode.
    #[arg(long, env = "ASCEND_SYNC_NIGHTLY_INTERVAL_SECS", default_value_t = 300)]
    interval_secs: u64,
    /// Days the last version of each applied delete is kept in
    /// deleted_records (0: forever).
    #[arg(long, env = "ASCEND_SYNC_DELETE_RETENTION_DAYS", default_value_t = 365)]
    retention_days: u32,
    /// Pending deletes per batch (each resource's part of a batch is one
    /// transaction).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    batch: u32,
    /// Ids per confirmation call to Ascend.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=500))]
    ids_per_call: u32,
}

/// `ascend-sync nightly`.
pub async fn run(args: NightlyArgs) -> Result<()> {
    let store = args.store.open().await?;
    let credentials = VaultCredentials::new(
        store.clone(),
        args.vault.open().await?,
        args.client.hosts()?,
    );
    let config = NightlyConfig {
        batch: args.batch as usize,
        ids_per_call: args.ids_per_call as usize,
        ignore_window: args.ignore_window,
        retention: (args.retention_days > 0)
            .then(|| time::Duration::days(i64::from(args.retention_days))),
        metrics: args.metrics.sink(),
        ..NightlyConfig::default()
    };
    let nightly = Nightly::new(
        store.clone(),
        args.client.fleet_client(&store)?,
        Arc::new(credentials),
        config,
    );
    let stop = shutdown_signal();
    let result = if args.once {
        let report = nightly
            .pass(OffsetDateTime::now_utc(), &stop)
            .await
            .context("the nightly pass failed")?;
        println!("{report}");
        if report.failed() > 0 {
            Err(anyhow::anyhow!(
                "{} practice(s) could not be applied (see above and `ascend-sync status`); \
                 their deletes stay pending",
                report.failed()
            ))
        } else {
            Ok(())
        }
    } else {
        tracing::info!(
            message = "Nightly role started.",
            interval_secs = args.interval_secs
        );
        nightly
            .run(Duration::from_secs(args.interval_secs.max(1)), stop)
            .await;
        Ok(())
    };
    store.close().await;
    result
}

/// `practice window`: show or change a practice's processing window.
#[derive(Args)]
pub struct WindowArgs {
    #[arg(long)]
    practice_id: String,
    /// The practice's own time zone (IANA name, e.g. America/Chicago), used
    /// when its location record gives none.
    #[arg(long, conflicts_with = "clear_time_zone")]
    time_zone: Option<String>,
    /// Forget the practice's own time zone.
    #[arg(long)]
    clear_time_zone: bool,
    /// The window's start, local HH:MM (default 01:00).
    #[arg(long)]
    start: Option<String>,
    /// The window's end, local HH:MM, excluded (default 05:00); before the
    /// start for a window that crosses midnight.
    #[arg(long)]
    end: Option<String>,
}

/// `practice window`: shows the window, or changes it as the operator
/// (gated as `practice.settings`, audited as `practice.window`).
pub async fn window(store: &Store, who: &access::Principal, args: WindowArgs) -> Result<()> {
    let change = WindowChange {
        time_zone: if args.clear_time_zone {
            Some(None)
        } else {
            args.time_zone.clone().map(Some)
        },
        start: args.start.clone(),
        end: args.end.clone(),
    };
    if !change.is_empty() {
        crate::operator::gate(
            store,
            who,
            access::Action::UpdateSettings(args.practice_id.clone()),
        )
        .await?;
    }
    let shown = control::admin::change_window(store, &args.practice_id, &change, &who.actor)
        .await
        .with_context(|| format!("practice {:?}", args.practice_id))?;
    println!("practice {}: {}", args.practice_id, shown.summary);
    let settings = &shown.settings;
    if let (Some(own), Some(location)) = (&settings.time_zone, &settings.location_time_zone)
        && own != location
        && Zone::choose(Some(location), None).name() == location
    {
        println!(
            "note: the location record's time zone ({location}) is used before the practice's \
             own ({own})"
        );
    }
    if args.start.is_some() != args.end.is_some() {
        println!("note: only one end of the window was given; the other is unchanged");
    }
    Ok(())
}

/// The deletes section of `status` (practices with something to show).
pub fn deletes_table(counts: &[DeleteCounts]) -> Option<String> {
    let rows: Vec<Vec<String>> = counts
        .iter()
        .filter(|c| c.pending > 0 || c.applied > 0 || c.last_pass.is_some())
        .map(|c| {
            let last = c.last_pass.as_ref().map(|p| {
                let mut text = format!(
                    "{} {} ({} applied, {} cancelled)",
                    format_time(p.started_at),
                    p.status,
                    p.applied,
                    p.cancelled
                );
                if let Some(class) = &p.error_class {
                    text.push_str(&format!(" [{class}]"));
                }
                text
            });
            vec![
                c.practice_id.clone(),
                c.pending.to_string(),
                c.applied.to_string(),
                or_dash(last),
            ]
        })
        .collect();
    if rows.is_empty() {
        return None;
    }
    Some(table(
        &[
            "PRACTICE",
            "CAPTURED (PENDING)",
            "APPLIED (KEPT)",
            "LAST NIGHTLY PASS (UTC)",
        ],
        &rows,
    ))
}

/// The deletes of one practice, for `status --json`.
pub fn deletes_json(counts: Option<&DeleteCounts>) -> serde_json::Value {
    match counts {
        None => json!({"captured_pending": 0, "applied": 0, "last_nightly_pass": null}),
        Some(c) => json!({
            "captured_pending": c.pending,
            "applied": c.applied,
            "last_nightly_pass": c.last_pass.as_ref().map(|p| json!({
                "pass_id": p.pass_id,
                "trigger": p.trigger.as_str(),
                "status": p.status.as_str(),
                "started_at": p.started_at.format(&time::format_description::well_known::Rfc3339).ok(),
                "checked": p.checked,
                "applied": p.applied,
                "cancelled": p.cancelled,
                "error_class": p.error_class,
                "error_message": p.error_message,
            })),
        }),
    }
}

#[cfg(test)]
mod tests {
    use sync_core::nightly::{Window, parse_hhmm, parse_time_zone};

    #[test]
    fn bad_window_input_is_refused_with_what_to_give() {
        let err = parse_hhmm("25:00").expect_err("bad");
        assert!(err.to_string().contains("HH:MM"), "{err}");
        let err = parse_time_zone("Mars/Base").expect_err("bad");
        assert!(err.to_string().contains("America/Chicago"), "{err}");
        assert!(Window::new(60, 60).is_err());
    }
}
