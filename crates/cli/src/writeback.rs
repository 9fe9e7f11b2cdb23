//! `ascend-sync writeback`: put write-back requests into the outbox, list
//! the outbox, and read or change a practice's switches (issue 15;
//! `docs/writeback.md`). Each change passes [`access::Gate`] as the
//! operator (`crate::operator`): a submit as `writeback.submit` (the
//! item records who submitted it), a change of switches as
//! `practice.settings` (audited).

use std::path::PathBuf;

use access::{Action, Principal};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use model::{ItemStatus, OutboxItem, WritebackSettings, WritebackType};
use serde_json::{Value, json};
use store::{SettingsChange, Store};

use crate::history::{format_time, or_dash, table, write_stdout};
use crate::operator::{gate, operator};
use crate::runtime::StoreArgs;

/// The largest request file read (a 5 MiB document, base64, and its fields).
const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Args)]
pub struct WritebackArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: WritebackCommand,
}

#[derive(Subcommand)]
enum WritebackCommand {
    /// Put a request into a practice's outbox. It is sent by the next
    /// write-back job if its type is on for the practice, else held.
    Submit {
        /// The practice.
        #[arg(long)]
        practice: String,
        /// sms_log, email_log, call_log, confirmation, document,
        /// new_patient or new_appointment.
        #[arg(long = "type")]
        kind: String,
        /// The request: a JSON object with the type's fields and an
        /// "idempotency_key" (or pass --key).
        #[arg(long)]
        json: PathBuf,
        /// The idempotency key: submitting it again stores nothing.
        #[arg(long)]
        key: Option<String>,
    },
    /// Send an item that was given up (dead) or waits for its next try
    /// (failed) again, now: looked up in Ascend first if it was ever sent.
    Retry {
        /// The item's number (`writeback list`).
        #[arg(long)]
        item: i64,
        /// Print the item afterwards as JSON.
        #[arg(long = "json")]
        as_json: bool,
    },
    /// The outbox, newest first.
    List {
        /// Only this practice's items.
        #[arg(long)]
        practice: Option<String>,
        /// Only items in this status (pending, blocked, sending, sent,
        /// failed, dead).
        #[arg(long)]
        status: Option<String>,
        /// At most this many items.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// One JSON object a line instead of a table.
        #[arg(long = "json")]
        as_json: bool,
    },
    /// Show a practice's switches, or change them.
    Settings {
        /// The practice.
        #[arg(long)]
        practice: String,
        /// Turn a type on (repeatable). Only items submitted from now on
        /// are sent; items held before stay held.
        #[arg(long)]
        enable: Vec<String>,
        /// Turn a type off (repeatable). Its items are held from the next
        /// job on.
        #[arg(long)]
        disable: Vec<String>,
        /// The provider (Ascend id) SMS notes are attributed to.
        #[arg(long, conflicts_with = "no_note_provider")]
        note_provider: Option<u64>,
        /// Attribute SMS notes to no provider (sms_log must be off).
        #[arg(long)]
        no_note_provider: bool,
        /// One JSON object instead of a table.
        #[arg(long = "json")]
        as_json: bool,
    },
}

/// `ascend-sync writeback`.
pub async fn run(args: WritebackArgs) -> Result<()> {
    let store = args.store.open().await?;
    let who = operator();
    let result = run_command(&store, &who, args.command).await;
    store.close().await;
    result
}

async fn run_command(store: &Store, who: &Principal, command: WritebackCommand) -> Result<()> {
    match command {
        WritebackCommand::Submit {
            practice,
            kind,
            json,
            key,
        } => {
            gate(store, who, Action::SubmitWriteback(practice.clone())).await?;
            submit(store, &who.actor, &practice, &kind, &json, key).await
        }
        WritebackCommand::Retry { item, as_json } => {
            let found = store
                .writeback_item(item)
                .await
                .context("cannot read the outbox")?
                .with_context(|| format!("there is no write-back item {item}"))?;
            gate(
                store,
                who,
                Action::RetryWriteback(found.practice_id.clone()),
            )
            .await?;
            control::admin::retry_writeback(store, item, &who.actor).await?;
            let after = store
                .writeback_item(item)
                .await
                .context("cannot read the outbox")?
                .with_context(|| format!("write-back item {item} is gone"))?;
            let text = if as_json {
                item_json(&after).to_string() + "\n"
            } else {
                format!(
                    "write-back item {item} ({}) is {} again and is sent by the next write-back \
                     job\n",
                    after.kind, after.status
                )
            };
            write_stdout(&text)
        }
        WritebackCommand::List {
            practice,
            status,
            limit,
            as_json,
        } => {
            let status = status
                .map(|s| s.parse::<ItemStatus>())
                .transpose()
                .context("bad --status")?;
            let items = store
                .writeback_items(practice.as_deref(), status, limit)
                .await
                .context("cannot read the outbox")?;
            let text = if as_json {
                items
                    .iter()
                    .map(|i| item_json(i).to_string() + "\n")
                    .collect()
            } else if items.is_empty() {
                "the outbox holds no such item\n".to_owned()
            } else {
                items_table(&items)
            };
            write_stdout(&text)
        }
        WritebackCommand::Settings {
            practice,
            enable,
            disable,
            note_provider,
            no_note_provider,
            as_json,
        } => {
            let mut change = SettingsChange::default();
            for (names, on) in [(&enable, true), (&disable, false)] {
                for name in names {
                    let kind: WritebackType = name.parse().context("bad write-back type")?;
                    change.switch.push((kind, on));
                }
            }
            if let Some(both) = enable.iter().find(|e| disable.contains(e)) {
                bail!("{both} is both enabled and disabled; say one");
            }
            change.note_provider_id = if no_note_provider {
                Some(None)
            } else {
                note_provider.map(Some)
            };
            let settings = if change == SettingsChange::default() {
                store
                    .writeback_settings(&practice)
                    .await
                    .context("cannot read the settings")?
            } else {
                gate(store, who, Action::UpdateSettings(practice.clone())).await?;
                control::writeback::change_settings(store, &practice, &change, &who.actor).await?
            };
            let text = if as_json {
                settings_json(&settings).to_string() + "\n"
            } else {
                settings_table(&settings)
            };
            write_stdout(&text)
        }
    }
}

async fn submit(
    store: &store::Store,
    actor: &str,
    practice: &str,
    kind: &str,
    path: &PathBuf,
    key: Option<String>,
) -> Result<()> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    if size > MAX_FILE_BYTES {
        bail!(
            "{} is {size} bytes; a request is at most {MAX_FILE_BYTES} bytes (a document of 5 MiB)",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut body: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let in_file = body
        .as_object_mut()
        .and_then(|m| m.remove("idempotency_key"));
    let key = match (key, in_file) {
        (Some(key), _) => key,
        (None, Some(Value::String(key))) => key,
        (None, Some(_)) => bail!("\"idempotency_key\" must be a string"),
        (None, None) => bail!(
            "every write-back needs an idempotency key: add \"idempotency_key\" to {} or pass --key",
            path.display()
        ),
    };
    let submitted = control::writeback::submit(store, practice, kind, &key, &body, actor).await?;
    let item = &submitted.item;
    let what = if submitted.created {
        "stored"
    } else {
        "already in the outbox (nothing stored)"
    };
    println!(
        "item {} ({} for {}): {what}; {}",
        item.item_id,
        item.kind,
        item.practice_id,
        match item.status {
            ItemStatus::Blocked => format!("held: {}", item.reason.as_deref().unwrap_or("")),
            status => status.to_string(),
        }
    );
    Ok(())
}

fn time_or_dash(at: Option<time::OffsetDateTime>) -> String {
    or_dash(at.map(format_time))
}

fn items_table(items: &[OutboxItem]) -> String {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.item_id.to_string(),
                i.practice_id.clone(),
                i.kind.to_string(),
                i.status.to_string(),
                i.attempts.to_string(),
                format_time(i.submitted_at),
                time_or_dash(i.sent_at),
                or_dash(i.ascend_id.map(|id| {
                    if i.found {
                        format!("{id} (found)")
                    } else {
                        id.to_string()
                    }
                })),
                i.idempotency_key.clone(),
                or_dash(i.reason.clone()),
            ]
        })
        .collect();
    table(
        &[
            "ITEM",
            "PRACTICE",
            "TYPE",
            "STATUS",
            "SENDS",
            "SUBMITTED",
            "SENT",
            "ASCEND ID",
            "KEY",
            "REASON",
        ],
        &rows,
    )
}

fn item_json(i: &OutboxItem) -> Value {
    json!({
        "item_id": i.item_id,
        "practice_id": i.practice_id,
        "type": i.kind.as_str(),
        "idempotency_key": i.idempotency_key,
        "status": i.status.as_str(),
        "reason": i.reason,
        "attempts": i.attempts,
        "submitted_at": format_time(i.submitted_at),
        "submitted_by": i.submitted_by,
        "next_attempt_at": i.next_attempt_at.map(format_time),
        "sent_at": i.sent_at.map(format_time),
        "ascend_id": i.ascend_id.map(|id| id.to_string()),
        "found_after_lost_answer": i.found,
    })
}

fn settings_table(s: &WritebackSettings) -> String {
    let rows: Vec<Vec<String>> = s
        .types
        .iter()
        .map(|t| {
            vec![
                t.kind.to_string(),
                if t.enabled { "on" } else { "off" }.to_owned(),
                time_or_dash(t.enabled_at.filter(|_| t.enabled)),
                time_or_dash(t.changed_at),
                or_dash(t.changed_by.clone()),
            ]
        })
        .collect();
    let mut text = table(&["TYPE", "STATE", "ON SINCE", "CHANGED", "BY"], &rows);
    text.push_str(&format!(
        "SMS notes are attributed to provider: {}\n",
        s.note_provider_id
            .map_or_else(|| "none chosen".to_owned(), |p| p.to_string())
    ));
    text
}

fn settings_json(s: &WritebackSettings) -> Value {
    json!({
        "practice_id": s.practice_id,
        "note_provider_id": s.note_provider_id.map(|p| p.to_string()),
        "types": s.types.iter().map(|t| json!({
            "type": t.kind.as_str(),
            "enabled": t.enabled,
            "enabled_at": t.enabled_at.map(format_time),
            "changed_at": t.changed_at.map(format_time),
            "changed_by": t.changed_by,
        })).collect::<Vec<_>>(),
    })
}
