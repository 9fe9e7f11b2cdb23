//! `ascend-sync history` (the sync history: one line per attempt, with the
//! records each set aside in quarantine) and `ascend-sync status` (every
//! practice: schedule, freshness, claim, records in quarantine; with
//! `--practice`, one practice and what its reconciliations counted per
//! resource). Both read the store only; neither needs the API or
//! credentials.

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::Args;
use model::Resource;
use serde_json::json;
use store::{
    HistoryQuery, NightlyPassRecord, PracticeOverview, PracticeStatus, RunRecord, Store, SyncState,
    Table,
};
use sync_core::completeness::{self, ResourceVerdict, Verdict};
use sync_core::staleness::{PracticeHealth, Staleness};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// Where the history lives.
#[derive(Args)]
pub struct HistoryArgs {
    /// `postgres://...` (production: RDS) or `sqlite:PATH` (embedded).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Only this practice's runs.
    #[arg(long)]
    practice: Option<String>,
    /// Only failed, partial, retrying and dead-lettered runs.
    #[arg(long)]
    failed: bool,
    /// Only runs started since then: `30m`, `24h`, `7d` ago, or an RFC 3339
    /// time (`2026-03-04T10:00:00Z`).
    #[arg(long, value_parser = parse_since)]
    since: Option<Since>,
    /// At most this many runs, newest first.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
    /// The nightly passes (deletes applied) instead of the sync runs: one
    /// line per practice a pass acted on.
    #[arg(long, conflicts_with_all = ["failed", "since"])]
    nightly: bool,
}

/// Where the practices live.
#[derive(Args)]
pub struct StatusArgs {
    /// `postgres://...` (production: RDS) or `sqlite:PATH` (embedded).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Only this practice, with what its reconciliations counted for each
    /// resource (complete as of when, or ours against Ascend's).
    #[arg(long)]
    practice: Option<String>,
    /// One JSON object a line instead of a table.
    #[arg(long)]
    json: bool,
}

/// The start of a history window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(Duration),
    /// This instant.
    At(OffsetDateTime),
}

impl Since {
    fn resolve(self, now: OffsetDateTime) -> OffsetDateTime {
        match self {
            Since::Ago(ago) => now - ago,
            Since::At(at) => at,
        }
    }
}

/// `30m`, `24h`, `7d` (also `90s`), or an RFC 3339 time.
fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    let unit_at = text.len().saturating_sub(1);
    if let (Some(number), Some(unit)) = (text.get(..unit_at), text.get(unit_at..))
        && !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit())
    {
        let n: i64 = number
            .parse()
            .map_err(|_| format!("{text:?}: the number is too large"))?;
        let ago = match unit {
            "s" => Duration::seconds(n),
            "m" => Duration::minutes(n.min(i64::MAX / 60)),
            "h" => Duration::hours(n.min(i64::MAX / 3_600)),
            "d" => Duration::days(n.min(i64::MAX / 86_400)),
            _ => return Err(since_error(text)),
        };
        if ago > Duration::days(36_500) {
            return Err(format!("{text:?} reaches back more than 100 years"));
        }
        return Ok(Since::Ago(ago));
    }
    OffsetDateTime::parse(text, &Rfc3339)
        .map(Since::At)
        .map_err(|_| since_error(text))
}

fn since_error(text: &str) -> String {
    format!(
        "{text:?} is neither a duration (30m, 24h, 7d) nor an RFC 3339 time \
         (2026-03-04T10:00:00Z)"
    )
}

async fn connect(url: &str) -> Result<Store> {
    Store::connect(url)
        .await
        .context("cannot connect to the database")
}

/// `ascend-sync history`.
pub async fn history(args: HistoryArgs) -> Result<()> {
    let store = connect(&args.database_url).await?;
    if args.nightly {
        let passes = store
            .nightly_passes(args.practice.as_deref(), args.limit)
            .await
            .context("cannot read the nightly passes (has `ascend-sync migrate` run?)")?;
        store.close().await;
        let text = if args.json {
            passes
                .iter()
                .map(|p| pass_json(p).to_string() + "\n")
                .collect()
        } else if passes.is_empty() {
            "no nightly passes\n".to_owned()
        } else {
            passes_table(&passes)
        };
        return write_stdout(&text);
    }
    let now = OffsetDateTime::now_utc();
    let query = HistoryQuery {
        practice_id: args.practice.clone(),
        failed_only: args.failed,
        since: args.since.map(|s| s.resolve(now)),
        limit: args.limit,
    };
    let runs = store
        .history(&query)
        .await
        .context("cannot read the sync history (has `ascend-sync migrate` run?)")?;
    store.close().await;
    let text = if args.json {
        runs.iter()
            .map(|r| run_json(r).to_string() + "\n")
            .collect()
    } else if runs.is_empty() {
        "no runs match\n".to_owned()
    } else {
        history_table(&runs)
    };
    write_stdout(&text)
}

/// `ascend-sync status`.
pub async fn status(args: StatusArgs) -> Result<()> {
    let store = connect(&args.database_url).await?;
    let practices = store
        .practice_overview()
        .await
        .context("cannot read the practices (has `ascend-sync migrate` run?)")?;
    let budgets = store
        .budgets()
        .await
        .context("cannot read the request budgets (has `ascend-sync migrate` run?)")?;
    let deletes = store
        .delete_counts()
        .await
        .context("cannot read the captured deletes (has `ascend-sync migrate` run?)")?;
    // One practice: only its lines, its organization's budget, and what its
    // reconciliations counted.
    let (practices, deletes, budgets, resources) = match &args.practice {
        None => (practices, deletes, budgets, None),
        Some(id) => {
            let Some(practice) = store
                .get_practice(id)
                .await
                .context("cannot read the practice")?
            else {
                store.close().await;
                bail!("no practice {id:?} is registered (`ascend-sync practice list` lists them)");
            };
            let states = store
                .list_sync_states(id)
                .await
                .context("cannot read the practice's sync state")?;
            let quarantined = store
                .quarantine_counts(id)
                .await
                .context("cannot count the practice's quarantine")?;
            (
                practices
                    .into_iter()
                    .filter(|p| p.practice_id == *id)
                    .collect(),
                deletes
                    .into_iter()
                    .filter(|d| d.practice_id == *id)
                    .collect(),
                budgets
                    .into_iter()
                    .filter(|b| b.organization_id == practice.organization_id)
                    .collect(),
                Some(resource_lines(&states, &quarantined)),
            )
        }
    };
    // Each initial sync's progress: landed and expected per resource, and
    // the time left.
    let mut progress = std::collections::HashMap::new();
    for p in practices
        .iter()
        .filter(|p| p.status == PracticeStatus::InitialSync)
    {
        let of = control::admin::initial_progress(&store, &p.practice_id)
            .await
            .context("cannot read the initial sync's chunks")?;
        progress.insert(p.practice_id.clone(), of);
    }
    store.close().await;
    let now = OffsetDateTime::now_utc();
    let text = if args.json {
        practices
            .iter()
            .map(|p| {
                let mut line = overview_json(p, now);
                if let Some(of) = progress.get(&p.practice_id) {
                    line["initial_sync"] = progress_json(of);
                }
                let mine = deletes.iter().find(|d| d.practice_id == p.practice_id);
                line["deletes"] = crate::nightly::deletes_json(mine);
                if let Some(resources) = &resources {
                    line["completeness"] = completeness_json(resources, now);
                }
                line.to_string() + "\n"
            })
            .collect()
    } else if practices.is_empty() {
        "no practices registered\n".to_owned()
    } else {
        status_table(&practices, now)
    };
    // Initial syncs under way.
    let text = if args.json || progress.is_empty() {
        text
    } else {
        let mut ids: Vec<&String> = progress.keys().collect();
        ids.sort();
        let mut section = format!("{text}\nInitial syncs under way:\n");
        for id in ids {
            if let Some(of) = progress.get(id) {
                section.push_str(&progress_text(id, of, args.practice.is_some()));
            }
        }
        section
    };
    // What the reconciliations counted, per resource (issue 14).
    let text = match &resources {
        Some(resources) if !args.json => {
            format!("{text}\n{}", completeness_section(resources, now))
        }
        _ => text,
    };
    // Captured and applied deletes follow the practices (issue 13).
    let text = match crate::nightly::deletes_table(&deletes) {
        Some(table) if !args.json => format!(
            "{text}
Deletes (captured by the workers, applied by the nightly role):
{table}"
        ),
        _ => text,
    };
    // The request budgets follow the practices (the table only; `budget
    // list --json` has them as JSON).
    let text = if args.json || budgets.is_empty() {
        text
    } else {
        format!(
            "{text}
Request budgets (per organization, shared by every worker):
{}",
            crate::budget::budgets_table(&budgets, now)
        )
    };
    write_stdout(&text)
}

/// An initial sync's progress as JSON.
fn progress_json(of: &sync_core::progress::InitialProgress) -> serde_json::Value {
    serde_json::json!({
        "landed": of.landed,
        "expected": of.expected,
        "percent": of.fraction().map(|f| (f * 1000.0).round() / 10.0),
        "eta_seconds": of.eta.map(|d| d.whole_seconds()),
        "resources": of.resources.iter().map(|r| serde_json::json!({
            "resource": Table::of(r.resource).as_str(),
            "landed": r.landed,
            "expected": r.expected,
        })).collect::<Vec<_>>(),
    })
}

/// An initial sync's progress for people: one line, and with `detail` a
/// line per resource.
fn progress_text(id: &str, of: &sync_core::progress::InitialProgress, detail: bool) -> String {
    let count = |landed: i64, expected: Option<i64>| match expected {
        Some(e) => format!("{landed} of {e} records"),
        None => format!("{landed} records (Ascend's count not known yet)"),
    };
    let percent = of
        .fraction()
        .map(|f| format!(" ({:.0}%)", f * 100.0))
        .unwrap_or_default();
    let eta = match of.eta {
        Some(d) if d.is_zero() => ", finishing".to_owned(),
        Some(d) => format!(", about {} left", format_duration(d)),
        None => ", time left not known yet".to_owned(),
    };
    let mut out = format!("  {id}: {}{percent}{eta}\n", count(of.landed, of.expected));
    if detail {
        for r in &of.resources {
            out.push_str(&format!(
                "    {:<26} {}\n",
                Table::of(r.resource).as_str(),
                count(r.landed, r.expected)
            ));
        }
    }
    out
}

/// Writes to stdout; a closed pipe (`| head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("cannot write to stdout"),
    }
}

// ---- formatting -------------------------------------------------------------

/// `45s`, `3m05s`, `2h07m`, `1d03h` (the sign is dropped).
fn format_duration(d: Duration) -> String {
    let s = d.whole_seconds().unsigned_abs();
    match s {
        0..60 => format!("{s}s"),
        60..3_600 => format!("{}m{:02}s", s / 60, s % 60),
        3_600..86_400 => format!("{}h{:02}m", s / 3_600, s % 3_600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3_600),
    }
}

/// `2026-03-04 10:00:00Z` (UTC, to the second).
pub(crate) fn format_time(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn rfc3339(at: OffsetDateTime) -> Option<String> {
    at.format(&Rfc3339).ok()
}

/// The first non-empty line of `text`, at most `max` characters (the last
/// one `…` when cut).
fn first_line(text: &str, max: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if line.chars().count() <= max {
        return line.to_owned();
    }
    let mut out: String = line.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Columns padded to their widest cell, two spaces apart; the last column
/// is not padded.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

pub(crate) fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// A count, or `-` for none.
fn count_or_dash(n: impl Into<i128>) -> String {
    let n = n.into();
    if n == 0 {
        "-".to_owned()
    } else {
        n.to_string()
    }
}

fn history_table(runs: &[RunRecord]) -> String {
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            let error = match (&r.error_class, &r.error_message) {
                (None, None) => "-".to_owned(),
                (Some(class), None) => class.clone(),
                (None, Some(message)) => first_line(message, 100),
                (Some(class), Some(message)) => format!("{class}: {}", first_line(message, 100)),
            };
            vec![
                format_time(r.started_at),
                if r.practice_id.is_empty() {
                    "?".to_owned()
                } else {
                    r.practice_id.clone()
                },
                r.kind.clone(),
                r.trigger.clone(),
                r.attempt.to_string(),
                r.duration().map_or_else(|| "-".to_owned(), format_duration),
                r.status.to_string(),
                match (r.fetched, r.written) {
                    (None, None) => "-".to_owned(),
                    (f, w) => format!(
                        "{}/{}",
                        or_dash(f.map(|n| n.to_string())),
                        or_dash(w.map(|n| n.to_string()))
                    ),
                },
                count_or_dash(r.quarantined()),
                count_or_dash(r.deletes_captured()),
                or_dash(r.api_calls.map(|n| n.to_string())),
                error,
            ]
        })
        .collect();
    table(
        &[
            "STARTED (UTC)",
            "PRACTICE",
            "KIND",
            "TRIGGER",
            "TRY",
            "TOOK",
            "STATUS",
            "FETCHED/WRITTEN",
            "QUARANTINED",
            "DELETES",
            "API CALLS",
            "ERROR",
        ],
        &rows,
    )
}

/// The nightly passes as a table, newest first.
fn passes_table(passes: &[NightlyPassRecord]) -> String {
    let rows: Vec<Vec<String>> = passes
        .iter()
        .map(|p| {
            vec![
                format_time(p.started_at),
                p.practice_id.clone(),
                p.trigger.to_string(),
                p.status.to_string(),
                p.checked.to_string(),
                p.applied.to_string(),
                p.cancelled.to_string(),
                p.api_calls.to_string(),
                match (&p.error_class, &p.error_message) {
                    (None, None) => String::new(),
                    (Some(class), None) => class.clone(),
                    (None, Some(message)) => first_line(message, 100),
                    (Some(class), Some(message)) => {
                        format!("{class}: {}", first_line(message, 100))
                    }
                },
            ]
        })
        .collect();
    table(
        &[
            "STARTED (UTC)",
            "PRACTICE",
            "TRIGGER",
            "STATUS",
            "CHECKED",
            "APPLIED",
            "CANCELLED",
            "API CALLS",
            "ERROR",
        ],
        &rows,
    )
}

fn pass_json(p: &NightlyPassRecord) -> serde_json::Value {
    json!({
        "pass_id": p.pass_id,
        "practice_id": p.practice_id,
        "trigger": p.trigger.as_str(),
        "started_at": rfc3339(p.started_at),
        "ended_at": p.ended_at.and_then(rfc3339),
        "status": p.status.as_str(),
        "checked": p.checked,
        "applied": p.applied,
        "cancelled": p.cancelled,
        "api_calls": p.api_calls,
        "error_class": p.error_class,
        "error_message": p.error_message,
    })
}

fn run_json(r: &RunRecord) -> serde_json::Value {
    json!({
        "run_id": r.run_id,
        "job_id": r.job_id,
        "practice_id": r.practice_id,
        "kind": r.kind,
        "trigger": r.trigger,
        "attempt": r.attempt,
        "worker": r.worker,
        "started_at": rfc3339(r.started_at),
        "ended_at": r.ended_at.and_then(rfc3339),
        "duration_seconds": r.duration().map(|d| d.as_seconds_f64()),
        "status": r.status.as_str(),
        "fetched": r.fetched,
        "written": r.written,
        "quarantined": r.quarantined(),
        "deletes_captured": r.deletes_captured(),
        "api_calls": r.api_calls,
        "bytes": r.bytes,
        "error_class": r.error_class,
        "error_message": r.error_message,
        "resources": r.resources.iter().map(|c| json!({
            "resource": c.resource,
            "fetched": c.fetched,
            "written": c.written,
            "quarantined": c.quarantined,
            "deletes_captured": c.deletes_captured,
            "recovered": c.recovered,
            "shared": c.shared,
            "error_class": c.error_class,
            "error": c.error,
        })).collect::<Vec<_>>(),
    })
}

/// Whether staleness means anything for a practice in this status (a
/// paused or removed practice is not expected to be fresh).
fn expected_fresh(status: PracticeStatus) -> bool {
    !matches!(status, PracticeStatus::Paused | PracticeStatus::Removed)
}

/// The staleness rule (`sync_core::staleness`): no recent success, or data
/// missing (records in quarantine, a resource failing past the limit).
fn practice_staleness(p: &PracticeOverview, now: OffsetDateTime) -> Staleness {
    PracticeHealth {
        last_success: p.last_success_at,
        created_at: p.created_at,
        interval_minutes: p.sync_interval_minutes,
        quarantined: p.quarantined,
        failing_since: p.failing_since,
        count_mismatch: p
            .count_mismatch
            .map(|(table, since)| (table.resource(), since)),
    }
    .staleness(now)
}

/// Why a practice that should be fresh is stale, in words.
fn stale_reason(p: &PracticeOverview, fresh: &Staleness) -> Option<String> {
    match fresh.reason {
        Some(reason) if fresh.stale && expected_fresh(p.status) => Some(reason.to_string()),
        _ => None,
    }
}

/// `now`, `in 4m00s`, `overdue 2m10s`.
fn format_due(next: Option<OffsetDateTime>, now: OffsetDateTime) -> String {
    match next {
        None => "now".to_owned(),
        Some(at) if at > now => format!("in {}", format_duration(at - now)),
        Some(at) if now - at < Duration::seconds(1) => "now".to_owned(),
        Some(at) => format!("overdue {}", format_duration(now - at)),
    }
}

/// The claiming job while its claim is live.
fn live_claim(p: &PracticeOverview, now: OffsetDateTime) -> Option<&str> {
    match (&p.inflight_job_id, p.inflight_until) {
        (Some(job), Some(until)) if until > now => Some(job.as_str()),
        _ => None,
    }
}

fn status_table(practices: &[PracticeOverview], now: OffsetDateTime) -> String {
    let rows: Vec<Vec<String>> = practices
        .iter()
        .map(|p| {
            let fresh = practice_staleness(p, now);
            let age = match fresh.age {
                Some(age) => format!("{} ago", format_duration(age)),
                None => "never".to_owned(),
            };
            let marker = if fresh.stale && expected_fresh(p.status) {
                "STALE"
            } else {
                ""
            };
            let last_run = p.last_run.as_ref().map(|r| {
                let mut text = format!("{} {} ago", r.status, format_duration(now - r.started_at));
                if let Some(class) = &r.error_class {
                    text.push_str(&format!(" ({class})"));
                }
                text
            });
            let due = if expected_fresh(p.status) {
                format_due(p.next_sync_at, now)
            } else {
                "-".to_owned()
            };
            // Data missing is news even when the time rule is content.
            let detail = match (status_detail(p), stale_reason(p, &fresh)) {
                (Some(detail), Some(why)) => Some(format!("stale: {why}; {detail}")),
                (None, Some(why)) => Some(format!("stale: {why}")),
                (detail, None) => detail,
            };
            vec![
                p.practice_id.clone(),
                p.status.to_string(),
                format!("{}m", p.sync_interval_minutes),
                p.last_success_at
                    .map_or_else(|| "-".to_owned(), format_time),
                age,
                marker.to_owned(),
                due,
                or_dash(live_claim(p, now).map(str::to_owned)),
                or_dash(last_run),
                count_or_dash(p.quarantined),
                or_dash(detail),
            ]
        })
        .collect();
    table(
        &[
            "PRACTICE",
            "STATUS",
            "EVERY",
            "LAST SUCCESS (UTC)",
            "AGE",
            "",
            "NEXT DUE",
            "IN FLIGHT",
            "LAST RUN",
            "QUARANTINED",
            "DETAIL",
        ],
        &rows,
    )
}

/// Why the practice is where it is, and since when for a status a person
/// must act on (auth_failed, paused, removed).
fn status_detail(p: &PracticeOverview) -> Option<String> {
    let detail = p.status_detail.as_deref().map(|d| first_line(d, 100));
    let needs_person = matches!(
        p.status,
        PracticeStatus::AuthFailed | PracticeStatus::Paused | PracticeStatus::Removed
    );
    match p.status_changed_at {
        Some(since) if needs_person => Some(format!(
            "since {}{}",
            format_time(since),
            detail.map(|d| format!(": {d}")).unwrap_or_default()
        )),
        _ => detail,
    }
}

fn overview_json(p: &PracticeOverview, now: OffsetDateTime) -> serde_json::Value {
    let fresh = practice_staleness(p, now);
    json!({
        "practice_id": p.practice_id,
        "status": p.status.as_str(),
        "status_detail": p.status_detail,
        "status_since": p.status_changed_at.and_then(rfc3339),
        "sync_interval_minutes": p.sync_interval_minutes,
        "last_success_at": p.last_success_at.and_then(rfc3339),
        "age_seconds": fresh.age.map(|a| a.whole_seconds()),
        "stale": fresh.stale && expected_fresh(p.status),
        "stale_reason": stale_reason(p, &fresh),
        "quarantined": p.quarantined,
        "failing_since": p.failing_since.and_then(rfc3339),
        "count_mismatch": p.count_mismatch.map(|(table, since)| json!({
            "resource": table.as_str(),
            "since": rfc3339(since),
        })),
        "next_sync_at": p.next_sync_at.and_then(rfc3339),
        "inflight_job_id": live_claim(p, now),
        "inflight_until": p.inflight_until.and_then(rfc3339),
        "last_run": p.last_run.as_ref().map(|r| json!({
            "run_id": r.run_id,
            "status": r.status.as_str(),
            "started_at": rfc3339(r.started_at),
            "ended_at": r.ended_at.and_then(rfc3339),
            "error_class": r.error_class,
        })),
    })
}

/// One resource of a practice in `status --practice`: what its last whole
/// reconciliation counted, and its records in quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceLine {
    resource: Resource,
    /// The stored evidence (all empty without a sync state).
    evidence: model::Completeness,
    verdict: Verdict,
    /// Since when the organization is not offered it, if it is not.
    not_offered_since: Option<OffsetDateTime>,
    quarantined: u64,
}

/// Every resource, in pull order, with its state's evidence and its
/// quarantine count (a resource without a state was never counted).
fn resource_lines(states: &[SyncState], quarantined: &[(Table, u64)]) -> Vec<ResourceLine> {
    Resource::ALL
        .iter()
        .map(|&resource| {
            let table = Table::of(resource);
            let state = states.iter().find(|s| s.table == table);
            let evidence = state.map(|s| s.completeness).unwrap_or_default();
            ResourceLine {
                resource,
                evidence,
                verdict: Verdict::of(&evidence),
                not_offered_since: state.and_then(|s| s.not_offered_since),
                quarantined: quarantined
                    .iter()
                    .filter(|(t, _)| *t == table)
                    .map(|(_, n)| *n)
                    .sum(),
            }
        })
        .collect()
}

/// The summary's input.
fn verdicts(lines: &[ResourceLine]) -> Vec<ResourceVerdict> {
    lines
        .iter()
        .map(|l| ResourceVerdict {
            resource: l.resource,
            offered: l.not_offered_since.is_none(),
            verdict: l.verdict,
            quarantined: l.quarantined,
        })
        .collect()
}

/// A resource's counts in words: `complete as of T`, `ours N, Ascend M
/// since T (found by K reconciliations)`, `not counted yet`, or `not
/// offered since T`.
fn counts_text(line: &ResourceLine) -> String {
    if let Some(since) = line.not_offered_since {
        return format!("not offered since {}", format_time(since));
    }
    match line.verdict {
        Verdict::Unknown => "not counted yet".to_owned(),
        Verdict::Complete { as_of } => format!("complete as of {}", format_time(as_of)),
        Verdict::Mismatch {
            ours,
            ascend,
            since,
            reconciliations,
        } => format!(
            "ours {}, Ascend {} since {} (found by {reconciliations} reconciliation{})",
            completeness::grouped(ours),
            completeness::grouped(ascend),
            format_time(since),
            if reconciliations == 1 { "" } else { "s" }
        ),
    }
}

/// Whether the line's mismatch makes the practice stale.
fn line_stale(line: &ResourceLine) -> bool {
    line.not_offered_since.is_none() && line.verdict.is_stale()
}

/// `status --practice`'s section: the summary line, then a line per
/// resource.
fn completeness_section(lines: &[ResourceLine], now: OffsetDateTime) -> String {
    let rows: Vec<Vec<String>> = lines
        .iter()
        .map(|l| {
            vec![
                l.resource.name().to_owned(),
                counts_text(l),
                if line_stale(l) { "STALE" } else { "" }.to_owned(),
                count_or_dash(l.quarantined),
            ]
        })
        .collect();
    format!(
        "Completeness: {}\n{}",
        completeness::summary(&verdicts(lines), now),
        table(&["RESOURCE", "COUNTS (UTC)", "", "QUARANTINED"], &rows)
    )
}

/// `status --practice --json`'s `completeness`: the summary and each
/// resource's evidence and verdict.
fn completeness_json(lines: &[ResourceLine], now: OffsetDateTime) -> serde_json::Value {
    json!({
        "summary": completeness::summary(&verdicts(lines), now),
        "resources": lines.iter().map(|l| {
            let verdict = match (l.not_offered_since, l.verdict) {
                (Some(_), _) => "not_offered",
                (None, Verdict::Unknown) => "not_counted",
                (None, Verdict::Complete { .. }) => "complete",
                (None, Verdict::Mismatch { .. }) => "mismatch",
            };
            json!({
                "resource": l.resource.name(),
                "verdict": verdict,
                "stale": line_stale(l),
                "ascend_count": l.evidence.ascend_count,
                "held_count": l.evidence.held_count,
                "counted_at": l.evidence.counted_at.and_then(rfc3339),
                "complete_at": l.evidence.complete_at.and_then(rfc3339),
                "mismatch_since": l.evidence.mismatch_since.and_then(rfc3339),
                "mismatches": l.evidence.mismatches,
                "not_offered_since": l.not_offered_since.and_then(rfc3339),
                "quarantined": l.quarantined,
            })
        }).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use store::{RunState, RunSummary};
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-03-04 12:00 UTC);

    #[test]
    fn since_accepts_durations_and_times() {
        assert_eq!(parse_since("30m"), Ok(Since::Ago(Duration::minutes(30))));
        assert_eq!(parse_since("24h"), Ok(Since::Ago(Duration::hours(24))));
        assert_eq!(parse_since(" 7d "), Ok(Since::Ago(Duration::days(7))));
        assert_eq!(parse_since("90s"), Ok(Since::Ago(Duration::seconds(90))));
        assert_eq!(
            parse_since("2026-03-04T10:00:00Z"),
            Ok(Since::At(datetime!(2026-03-04 10:00 UTC)))
        );
        assert_eq!(
            parse_since("2026-03-04T10:00:00+02:00").map(|s| s.resolve(NOW)),
            Ok(datetime!(2026-03-04 08:00 UTC))
        );
        assert_eq!(
            parse_since("24h").map(|s| s.resolve(NOW)),
            Ok(datetime!(2026-03-03 12:00 UTC))
        );
    }

    #[test]
    fn since_rejects_other_text() {
        for bad in [
            "",
            "h",
            "24",
            "24x",
            "-3h",
            "1.5h",
            "yesterday",
            "2026-03-04",
            "99999999999999999999d",
            "40000d",
        ] {
            let err = parse_since(bad).expect_err(bad);
            assert!(!err.is_empty(), "{bad}");
        }
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::seconds(45)), "45s");
        assert_eq!(format_duration(Duration::seconds(185)), "3m05s");
        assert_eq!(format_duration(Duration::minutes(127)), "2h07m");
        assert_eq!(format_duration(Duration::hours(27)), "1d03h");
        assert_eq!(format_duration(Duration::seconds(-45)), "45s");
    }

    #[test]
    fn times_and_first_lines() {
        assert_eq!(
            format_time(datetime!(2026-03-04 10:05:09.999 +02:00)),
            "2026-03-04 08:05:09Z"
        );
        assert_eq!(first_line("\n  boom: 503\nsecond line", 80), "boom: 503");
        assert_eq!(first_line("abcdef", 4), "abc…");
        assert_eq!(first_line("", 4), "");
    }

    #[test]
    fn tables_align_columns() {
        let text = table(
            &["A", "LONGER", "C"],
            &[
                vec!["xyz".into(), "1".into(), "last".into()],
                vec!["q".into(), "".into(), "".into()],
            ],
        );
        assert_eq!(text, "A    LONGER  C\nxyz  1       last\nq\n");
    }

    #[test]
    fn due_times_are_relative() {
        assert_eq!(format_due(None, NOW), "now");
        assert_eq!(
            format_due(Some(NOW + Duration::minutes(4)), NOW),
            "in 4m00s"
        );
        assert_eq!(format_due(Some(NOW), NOW), "now");
        assert_eq!(
            format_due(Some(NOW - Duration::seconds(130)), NOW),
            "overdue 2m10s"
        );
    }

    fn overview(
        id: &str,
        status: PracticeStatus,
        last_success: Option<OffsetDateTime>,
    ) -> PracticeOverview {
        PracticeOverview {
            practice_id: id.to_owned(),
            status,
            status_detail: None,
            status_changed_at: None,
            sync_interval_minutes: 15,
            created_at: NOW - Duration::days(30),
            last_success_at: last_success,
            next_sync_at: Some(NOW + Duration::minutes(4)),
            inflight_job_id: None,
            inflight_until: None,
            last_run: None,
            quarantined: 0,
            failing_since: None,
            count_mismatch: None,
        }
    }

    fn line_of<'a>(text: &'a str, id: &str) -> &'a str {
        text.lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no line for {id} in\n{text}"))
    }

    #[test]
    fn status_marks_stale_practices_that_should_be_fresh() {
        let mut auth = overview(
            "auth",
            PracticeStatus::AuthFailed,
            Some(NOW - Duration::hours(3)),
        );
        auth.status_detail = Some("Ascend refused the client secret (401)\nrotate it".to_owned());
        auth.status_changed_at = Some(NOW - Duration::hours(2));
        let mut fresh = overview(
            "fresh",
            PracticeStatus::Active,
            Some(NOW - Duration::minutes(10)),
        );
        fresh.inflight_job_id = Some("tick-9:fresh".to_owned());
        fresh.inflight_until = Some(NOW + Duration::minutes(5));
        fresh.last_run = Some(RunSummary {
            run_id: "r".to_owned(),
            status: RunState::Succeeded,
            started_at: NOW - Duration::minutes(11),
            ended_at: Some(NOW - Duration::minutes(10)),
            error_class: None,
        });
        let paused = overview(
            "paused",
            PracticeStatus::Paused,
            Some(NOW - Duration::days(3)),
        );
        let mut expired = overview(
            "expired",
            PracticeStatus::Active,
            Some(NOW - Duration::minutes(40)),
        );
        expired.inflight_job_id = Some("old-job".to_owned());
        expired.inflight_until = Some(NOW - Duration::minutes(1));
        let text = status_table(&[auth, fresh, paused, expired], NOW);

        let auth = line_of(&text, "auth");
        assert!(auth.contains("STALE"), "{auth}");
        assert!(auth.contains("3h00m ago"), "{auth}");
        assert!(
            auth.contains(&format!("since {}", format_time(NOW - Duration::hours(2)))),
            "auth_failed shows since when: {auth}"
        );
        assert!(
            auth.contains("Ascend refused the client secret (401)"),
            "{auth}"
        );
        assert!(!auth.contains("rotate it"), "{auth}");

        let fresh = line_of(&text, "fresh");
        assert!(!fresh.contains("STALE"), "{fresh}");
        assert!(fresh.contains("tick-9:fresh"), "{fresh}");
        assert!(fresh.contains("succeeded 11m00s ago"), "{fresh}");
        assert!(fresh.contains("in 4m00s"), "{fresh}");

        let paused = line_of(&text, "paused");
        assert!(!paused.contains("STALE"), "{paused}");

        let expired = line_of(&text, "expired");
        assert!(expired.contains("STALE"), "{expired}");
        assert!(
            !expired.contains("old-job"),
            "an expired claim is not in flight: {expired}"
        );
    }

    #[test]
    fn status_reports_a_practice_missing_data_stale_though_its_syncs_succeed() {
        let recent = Some(NOW - Duration::minutes(5));
        let mut quarantined = overview("quarantined", PracticeStatus::Active, recent);
        quarantined.quarantined = 3;
        quarantined.last_run = Some(RunSummary {
            run_id: "r".to_owned(),
            status: RunState::Partial,
            started_at: NOW - Duration::minutes(6),
            ended_at: Some(NOW - Duration::minutes(5)),
            error_class: Some("quarantined".to_owned()),
        });
        let mut failing = overview("failing", PracticeStatus::Active, recent);
        failing.failing_since = Some(NOW - Duration::hours(1));
        let mut briefly = overview("briefly", PracticeStatus::Active, recent);
        briefly.failing_since = Some(NOW - Duration::minutes(10));
        let clean = overview("clean", PracticeStatus::Active, recent);
        let mut paused = overview("paused", PracticeStatus::Paused, recent);
        paused.quarantined = 1;
        let practices = [quarantined, failing, briefly, clean, paused];
        let text = status_table(&practices, NOW);

        let line = line_of(&text, "quarantined");
        assert!(line.contains("STALE"), "{line}");
        assert!(line.contains("stale: 3 record(s) in quarantine"), "{line}");
        assert!(line.contains("partial 6m00s ago (quarantined)"), "{line}");
        let line = line_of(&text, "failing");
        assert!(line.contains("STALE"), "{line}");
        assert!(line.contains("a resource has failed since"), "{line}");
        assert!(!line_of(&text, "briefly").contains("STALE"));
        assert!(!line_of(&text, "clean").contains("STALE"));
        assert!(!line_of(&text, "paused").contains("STALE"));
        assert!(
            text.lines()
                .next()
                .is_some_and(|h| h.contains("QUARANTINED"))
        );

        let json = overview_json(&practices[0], NOW);
        assert_eq!(json["stale"], true);
        assert_eq!(json["quarantined"], 3);
        assert_eq!(json["stale_reason"], "3 record(s) in quarantine");
        let json = overview_json(&practices[3], NOW);
        assert_eq!(json["stale"], false);
        assert_eq!(json["quarantined"], 0);
        assert!(json["stale_reason"].is_null());
    }

    #[test]
    fn history_shows_the_records_a_run_quarantined_and_the_deletes_it_captured() {
        let mut partial = run(RunState::Partial, Some("2 record(s) could not be read"));
        partial.resources = vec![
            store::ResourceCounts {
                resource: "patients".to_owned(),
                fetched: 100,
                written: 98,
                quarantined: 2,
                deletes_captured: 0,
                error_class: None,
                error: None,
                ..Default::default()
            },
            store::ResourceCounts {
                resource: "visits".to_owned(),
                fetched: 20,
                written: 20,
                quarantined: 0,
                deletes_captured: 3,
                error_class: None,
                error: None,
                ..Default::default()
            },
        ];
        let text = history_table(&[partial.clone(), run(RunState::Succeeded, None)]);
        let lines: Vec<&str> = text.lines().collect();
        let header = lines[0];
        let at = header.find("QUARANTINED").expect("a column");
        assert_eq!(lines[1].get(at..at + 1), Some("2"), "{text}");
        assert_eq!(lines[2].get(at..at + 1), Some("-"), "{text}");
        let json = run_json(&partial);
        assert_eq!(json["quarantined"], 2);
        assert_eq!(json["resources"][0]["quarantined"], 2);
        // And the deletes its reconciliation captured.
        let at = header.find("DELETES").expect("a column");
        assert_eq!(lines[1].get(at..at + 1), Some("3"), "{text}");
        assert_eq!(lines[2].get(at..at + 1), Some("-"), "{text}");
        assert_eq!(json["deletes_captured"], 3);
        assert_eq!(json["resources"][1]["deletes_captured"], 3);
        assert_eq!(json["resources"][1]["recovered"], 0);
        assert!(json["resources"][1]["shared"].is_null());
    }

    #[test]
    fn nightly_history_lists_each_pass_with_its_counts_and_error() {
        let pass = |practice: &str, status, applied, error: Option<&str>| NightlyPassRecord {
            pass_id: "pass-1".to_owned(),
            practice_id: practice.to_owned(),
            trigger: store::NightlyTrigger::Window,
            started_at: NOW,
            ended_at: Some(NOW + Duration::seconds(3)),
            status,
            checked: applied + 1,
            applied,
            cancelled: 1,
            api_calls: 2,
            error_class: error.map(|_| "auth".to_owned()),
            error_message: error.map(str::to_owned),
        };
        let passes = [
            pass("p1", store::NightlyPassStatus::Succeeded, 41, None),
            pass(
                "p2",
                store::NightlyPassStatus::Failed,
                0,
                Some("401 from Ascend\nrotate"),
            ),
        ];
        let text = passes_table(&passes);
        let lines: Vec<&str> = text.lines().collect();
        let at = lines[0].find("APPLIED").expect("a column");
        assert_eq!(lines[1].get(at..at + 2), Some("41"), "{text}");
        assert!(
            lines[2].contains("failed") && lines[2].contains("auth: 401 from Ascend"),
            "{text}"
        );
        assert!(
            !text.contains("rotate"),
            "only an error's first line: {text}"
        );
        let json = pass_json(&passes[0]);
        assert_eq!(json["applied"], 41);
        assert_eq!(json["status"], "succeeded");
        assert_eq!(json["trigger"], "window");
    }

    fn run(status: RunState, message: Option<&str>) -> RunRecord {
        RunRecord {
            run_id: "run-1".to_owned(),
            job_id: "job-1".to_owned(),
            practice_id: "p1".to_owned(),
            kind: "incremental".to_owned(),
            trigger: "force".to_owned(),
            attempt: 2,
            worker: None,
            started_at: NOW,
            ended_at: Some(NOW + Duration::seconds(75)),
            status,
            resources: Vec::new(),
            fetched: Some(120),
            written: Some(118),
            api_calls: Some(9),
            bytes: Some(1),
            error_class: message.map(|_| "transient".to_owned()),
            error_message: message.map(str::to_owned),
        }
    }

    #[test]
    fn history_lines_show_what_happened() {
        let text = history_table(&[
            run(RunState::Failed, Some("appointments: 503\nbody: ...")),
            run(RunState::Succeeded, None),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("STARTED (UTC)"));
        for needle in [
            "2026-03-04 12:00:00Z",
            "p1",
            "incremental",
            "force",
            "1m15s",
            "failed",
            "120/118",
            "transient: appointments: 503",
        ] {
            assert!(lines[1].contains(needle), "{needle} missing: {}", lines[1]);
        }
        assert!(!lines[1].contains("body:"));
        assert!(lines[2].contains("succeeded"));
        assert!(lines[2].ends_with('-'), "no error: {}", lines[2]);

        let json = run_json(&run(RunState::Failed, Some("x")));
        assert_eq!(json["status"], "failed");
        assert_eq!(json["duration_seconds"], 75.0);
        assert_eq!(json["started_at"], "2026-03-04T12:00:00Z");
    }

    fn state(table: Table, completeness: model::Completeness) -> SyncState {
        SyncState {
            practice_id: "p1".to_owned(),
            table,
            phase: store::SyncPhase::Incremental,
            watermark: None,
            landed_count: 0,
            expected_count: None,
            last_error: None,
            updated_at: NOW,
            not_offered_since: None,
            failing_since: None,
            pass: None,
            reconciled_at: None,
            completeness,
            passed_at: None,
            shared_from: None,
        }
    }

    /// Counted with the same counts at `at`, as record_count leaves it.
    fn complete(at: OffsetDateTime) -> model::Completeness {
        model::Completeness {
            ascend_count: Some(40),
            held_count: Some(40),
            counted_at: Some(at),
            complete_at: Some(at),
            mismatch_since: None,
            mismatches: 0,
        }
    }

    fn mismatch(
        ascend: i64,
        held: i64,
        since: OffsetDateTime,
        mismatches: i32,
    ) -> model::Completeness {
        model::Completeness {
            ascend_count: Some(ascend),
            held_count: Some(held),
            counted_at: Some(NOW - Duration::minutes(1)),
            complete_at: Some(since - Duration::minutes(15)),
            mismatch_since: Some(since),
            mismatches,
        }
    }

    const T1: OffsetDateTime = datetime!(2026-03-04 03:12 UTC);
    const T2: OffsetDateTime = datetime!(2026-03-04 09:45 UTC);

    /// Every resource complete but patients (found twice), visits (found
    /// once), appointments (never counted) and transactions (not offered).
    fn counted_practice() -> Vec<ResourceLine> {
        let mut states: Vec<SyncState> = Resource::ALL
            .iter()
            .filter(|r| **r != Resource::Appointments)
            .map(|&r| {
                let table = Table::of(r);
                match r {
                    Resource::Patients => state(table, mismatch(1_204, 1_203, T1, 2)),
                    Resource::Visits => state(table, mismatch(6, 5, T2, 1)),
                    Resource::Locations => state(table, complete(T1 + Duration::hours(1))),
                    _ => state(table, complete(T2)),
                }
            })
            .collect();
        let transactions = states
            .iter_mut()
            .find(|s| s.table == Table::Transactions)
            .expect("a state");
        transactions.not_offered_since = Some(datetime!(2026-03-01 00:00 UTC));
        // Its old evidence does not count while it is not offered.
        transactions.completeness = mismatch(9, 0, T1, 5);
        resource_lines(&states, &[(Table::Patients, 2), (Table::Transactions, 1)])
    }

    fn resource_row<'a>(text: &'a str, resource: &str) -> &'a str {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(resource))
            .unwrap_or_else(|| panic!("no line for {resource} in\n{text}"))
    }

    #[test]
    fn status_of_a_practice_lists_each_resource_with_its_counts() {
        let lines = counted_practice();
        let text = completeness_section(&lines, NOW);
        let mut rows = text.lines();
        assert_eq!(
            rows.next(),
            Some(
                "Completeness: 7 of 10 kinds of records match Dentrix Ascend; \
                 patients: ours 1,203, Dentrix Ascend 1,204 since 03:12 UTC; \
                 visits: ours 5, Dentrix Ascend 6 since 09:45 UTC; \
                 not counted yet: appointments; \
                 3 records in quarantine (patients 2, transactions 1)"
            ),
            "{text}"
        );
        assert!(
            rows.next().is_some_and(|h| h.starts_with("RESOURCE")
                && h.contains("COUNTS (UTC)")
                && h.ends_with("QUARANTINED")),
            "{text}"
        );
        assert_eq!(
            rows.count(),
            Resource::ALL.len(),
            "a line per resource: {text}"
        );

        let patients = resource_row(&text, "patients");
        assert!(
            patients.contains(
                "ours 1,203, Ascend 1,204 since 2026-03-04 03:12:00Z (found by 2 reconciliations)"
            ),
            "{patients}"
        );
        assert!(patients.contains("STALE"), "{patients}");
        assert!(patients.ends_with(" 2"), "its quarantine: {patients}");
        let visits = resource_row(&text, "visits");
        assert!(
            visits.contains(
                "ours 5, Ascend 6 since 2026-03-04 09:45:00Z (found by 1 reconciliation)"
            ),
            "{visits}"
        );
        assert!(!visits.contains("STALE"), "found once: {visits}");
        assert!(visits.ends_with(" -"), "{visits}");
        let locations = resource_row(&text, "locations");
        assert!(
            locations.contains("complete as of 2026-03-04 04:12:00Z"),
            "{locations}"
        );
        assert!(!locations.contains("STALE"), "{locations}");
        let appointments = resource_row(&text, "appointments");
        assert!(appointments.contains("not counted yet"), "{appointments}");
        let transactions = resource_row(&text, "transactions");
        assert!(
            transactions.contains("not offered since 2026-03-01 00:00:00Z"),
            "{transactions}"
        );
        assert!(!transactions.contains("STALE"), "{transactions}");
        assert!(transactions.ends_with(" 1"), "{transactions}");
    }

    #[test]
    fn status_of_a_practice_says_when_everything_matches_or_nothing_was_counted() {
        let states: Vec<SyncState> = Resource::ALL
            .iter()
            .map(|&r| state(Table::of(r), complete(T2)))
            .collect();
        let text = completeness_section(&resource_lines(&states, &[]), NOW);
        assert!(
            text.starts_with(
                "Completeness: All 11 kinds of records match Dentrix Ascend as of 09:45 UTC\n"
            ),
            "{text}"
        );
        assert!(!text.contains("STALE"), "{text}");
        let text = completeness_section(&resource_lines(&[], &[]), NOW);
        assert!(
            text.starts_with(
                "Completeness: No kind of records has been counted against Dentrix Ascend yet\n"
            ),
            "{text}"
        );
        assert_eq!(
            text.matches("not counted yet").count(),
            Resource::ALL.len(),
            "{text}"
        );
    }

    #[test]
    fn status_of_a_practice_as_json_has_the_same_fields() {
        let json = completeness_json(&counted_practice(), NOW);
        assert!(
            json["summary"]
                .as_str()
                .is_some_and(|s| s.starts_with("7 of 10 kinds of records match Dentrix Ascend; ")),
            "{json}"
        );
        let of = |name: &str| {
            json["resources"]
                .as_array()
                .and_then(|rs| rs.iter().find(|r| r["resource"] == name))
                .cloned()
                .unwrap_or_else(|| panic!("no {name} in {json}"))
        };
        let patients = of("patients");
        assert_eq!(patients["verdict"], "mismatch");
        assert_eq!(patients["stale"], true);
        assert_eq!(patients["ascend_count"], 1_204);
        assert_eq!(patients["held_count"], 1_203);
        assert_eq!(patients["mismatch_since"], "2026-03-04T03:12:00Z");
        assert_eq!(patients["mismatches"], 2);
        assert_eq!(patients["quarantined"], 2);
        let visits = of("visits");
        assert_eq!(
            (&visits["verdict"], &visits["stale"]),
            (&json!("mismatch"), &json!(false))
        );
        let locations = of("locations");
        assert_eq!(locations["verdict"], "complete");
        assert_eq!(locations["complete_at"], "2026-03-04T04:12:00Z");
        assert!(locations["mismatch_since"].is_null());
        assert_eq!(of("appointments")["verdict"], "not_counted");
        let transactions = of("transactions");
        assert_eq!(transactions["verdict"], "not_offered");
        assert_eq!(transactions["stale"], false);
        assert_eq!(transactions["not_offered_since"], "2026-03-01T00:00:00Z");
        assert_eq!(json["resources"].as_array().map(Vec::len), Some(11));
    }

    #[test]
    fn status_reports_a_count_mismatch_found_twice_as_stale() {
        let recent = Some(NOW - Duration::minutes(5));
        let mut mismatched = overview("mismatched", PracticeStatus::Active, recent);
        mismatched.count_mismatch = Some((Table::Patients, T1));
        let clean = overview("clean", PracticeStatus::Active, recent);
        let practices = [mismatched, clean];
        let text = status_table(&practices, NOW);
        let line = line_of(&text, "mismatched");
        assert!(line.contains("STALE"), "{line}");
        assert!(
            line.contains(
                "stale: our count of patients has differed from Dentrix Ascend's since \
                 2026-03-04T03:12:00Z"
            ),
            "{line}"
        );
        assert!(!line_of(&text, "clean").contains("STALE"));
        let json = overview_json(&practices[0], NOW);
        assert_eq!(json["stale"], true);
        assert_eq!(json["count_mismatch"]["resource"], "patients");
        assert_eq!(json["count_mismatch"]["since"], "2026-03-04T03:12:00Z");
        assert!(overview_json(&practices[1], NOW)["count_mismatch"].is_null());
    }

    #[test]
    fn the_overview_and_the_rule_agree_on_when_a_mismatch_is_stale() {
        assert_eq!(store::STALE_MISMATCHES, completeness::STALE_MISMATCHES);
    }
}
