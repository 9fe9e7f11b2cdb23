//! Write-back (migration 0013, issue 15): each practice's switches, the
//! outbox, and the scheduler's claim on a practice's write-back job.
//!
//! The rules (what is sent, when an item is retried or given up) are
//! `sync_core::writeback`'s; this module keeps what they decide. Every
//! change of an item's status is one statement guarded by the status it
//! expects, so a late or duplicate worker cannot move an item backwards.

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use model::{
    ItemStatus, OutboxItem, PracticeStatus, WritebackSettings, WritebackType,
    writeback::TypeSetting,
};

use crate::connections::{AuditEntry, INSERT_AUDIT, audit, locked_status};
use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::rows::RowExt;
use crate::runtime::db_time;
use crate::spec::Table;
use crate::store::{Inner, Store, in_transaction, with_pool};

/// A request to put into the outbox (already checked by
/// `sync_core::writeback::parse`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    /// The practice.
    pub practice_id: String,
    /// Its type.
    pub kind: WritebackType,
    /// The submitter's idempotency key.
    pub idempotency_key: String,
    /// The checked request (the JSON of a `model::Write`).
    pub body: String,
    /// Who submitted it (`cli:{user}`, a service's name).
    pub submitted_by: String,
}

/// What a submit stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    /// The item (the one stored before, if the key was known).
    pub item: OutboxItem,
    /// False when an item with this key already existed: nothing was
    /// stored.
    pub created: bool,
}

/// A change to a practice's write-back settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SettingsChange {
    /// Types to switch: (type, on).
    pub switch: Vec<(WritebackType, bool)>,
    /// The provider SMS notes are attributed to (`Some(None)`: none).
    pub note_provider_id: Option<Option<u64>>,
}

/// How an attempt on an item ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemEnd {
    /// Ascend has it: its id, and whether a lookup found it (the send's
    /// answer was lost) rather than the send's answer.
    Sent {
        /// The created record's id (a confirmation: the appointment's).
        ascend_id: u64,
        /// Found by a lookup.
        found: bool,
    },
    /// Not applied; tried again at `retry_at`. `count` false gives the
    /// attempt back (Ascend asked to wait: no fault of the item).
    Failed {
        /// Why, for a person.
        reason: String,
        /// When to try again.
        retry_at: OffsetDateTime,
        /// Whether the attempt counts towards giving up.
        count: bool,
    },
    /// The outcome is not known (the request may have reached Ascend): the
    /// item stays `sending` and the next attempt looks in Ascend first.
    Unknown {
        /// What happened.
        reason: String,
        /// When to look again.
        retry_at: OffsetDateTime,
    },
    /// Given up: refused by Ascend, or out of attempts.
    Dead {
        /// Why.
        reason: String,
    },
    /// Held: its type is off for the practice (or was turned on after it
    /// was submitted).
    Blocked {
        /// Why.
        reason: String,
    },
}

/// The marker a created record carries in Ascend: unique per practice and
/// key, so one practice's lookup never finds another's record.
#[must_use]
pub fn writeback_marker(practice_id: &str, idempotency_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(practice_id.as_bytes());
    h.update([0]);
    h.update(idempotency_key.as_bytes());
    let digest = h.finalize();
    let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("asy-{hex}")
}

const ITEM_COLUMNS: &str = "item_id, practice_id, kind, idempotency_key, marker, body, status, \
     reason, attempts, submitted_at, submitted_by, first_sent_at, next_attempt_at, sent_at, \
     ascend_id, found";

fn item<R: RowExt>(row: &R) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        item_id: row.int("item_id")?,
        practice_id: row.text("practice_id")?,
        kind: row.parsed("kind")?,
        idempotency_key: row.text("idempotency_key")?,
        marker: row.text("marker")?,
        body: row.text("body")?,
        status: row.parsed("status")?,
        reason: row.opt_text("reason")?,
        attempts: u32::try_from(row.int("attempts")?).unwrap_or(0),
        submitted_at: row.time("submitted_at")?,
        submitted_by: row.text("submitted_by")?,
        first_sent_at: row.opt_time("first_sent_at")?,
        next_attempt_at: row.opt_time("next_attempt_at")?,
        sent_at: row.opt_time("sent_at")?,
        ascend_id: row
            .opt_int("ascend_id")?
            .and_then(|id| u64::try_from(id).ok()),
        found: row.flag("found")?,
    })
}

fn setting<R: RowExt>(row: &R) -> Result<TypeSetting, StoreError> {
    Ok(TypeSetting {
        kind: row.parsed("kind")?,
        enabled: row.flag("enabled")?,
        enabled_at: row.opt_time("enabled_at")?,
        changed_at: Some(row.time("changed_at")?),
        changed_by: Some(row.text("changed_by")?),
    })
}

fn provider_id(v: Option<i64>) -> Option<u64> {
    v.and_then(|id| u64::try_from(id).ok())
}

fn db_id(id: u64) -> Result<i64, StoreError> {
    i64::try_from(id).map_err(|_| StoreError::Unreadable {
        what: "ascend_id",
        value: id.to_string(),
    })
}

/// Every type, off, with the stored rows laid over.
fn settings_of(
    practice_id: &str,
    stored: Vec<TypeSetting>,
    note_provider_id: Option<u64>,
) -> WritebackSettings {
    let types = WritebackType::ALL
        .iter()
        .map(|kind| {
            stored
                .iter()
                .find(|s| s.kind == *kind)
                .cloned()
                .unwrap_or(TypeSetting {
                    kind: *kind,
                    enabled: false,
                    enabled_at: None,
                    changed_at: None,
                    changed_by: None,
                })
        })
        .collect();
    WritebackSettings {
        practice_id: practice_id.to_owned(),
        types,
        note_provider_id,
    }
}

const SETTINGS: &str = "SELECT kind, enabled, enabled_at, changed_at, changed_by \
     FROM writeback_types WHERE practice_id = $1";
const PROVIDER: &str = "SELECT note_provider_id FROM writeback_practices WHERE practice_id = $1";

/// Refuses an unknown practice inside a transaction.
macro_rules! require_practice {
    ($tx:expr, $backend:expr, $practice_id:expr, $operation:expr) => {{
        let status: Option<PracticeStatus> =
            locked_status!($tx, $backend, $practice_id, $operation);
        if status.is_none() {
            return Err(StoreError::UnknownPractice {
                practice_id: $practice_id.to_owned(),
            });
        }
    }};
}

/// Reads a practice's settings on `$conn`.
macro_rules! read_settings {
    ($conn:expr, $backend:expr, $practice_id:expr) => {{
        let fail = |e| db_error($backend, "reading write-back settings", e);
        let rows = sqlx::query(SETTINGS)
            .bind($practice_id)
            .fetch_all(&mut *$conn)
            .await
            .map_err(fail)?;
        let stored = rows.iter().map(setting).collect::<Result<Vec<_>, _>>()?;
        let provider = sqlx::query(PROVIDER)
            .bind($practice_id)
            .fetch_optional(&mut *$conn)
            .await
            .map_err(fail)?;
        let provider = match provider {
            Some(row) => provider_id(row.opt_int("note_provider_id")?),
            None => None,
        };
        settings_of($practice_id, stored, provider)
    }};
}

impl Store {
    /// A practice's write-back settings (every type off unless switched on).
    pub async fn writeback_settings(
        &self,
        practice_id: &str,
    ) -> Result<WritebackSettings, StoreError> {
        let backend = self.backend();
        with_pool!(self, |pool| {
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| db_error(backend, "reading write-back settings", e))?;
            Ok(read_settings!(conn, backend, practice_id))
        })
    }

    /// Applies `change` to a practice's settings in one transaction, with
    /// one audit row per value that changed (who, when, old and new), and
    /// returns the settings after it. Switching a type on sets its
    /// `enabled_at` to now: only items submitted from then on are sent.
    pub async fn change_writeback_settings(
        &self,
        practice_id: &str,
        change: &SettingsChange,
        actor: &str,
    ) -> Result<WritebackSettings, StoreError> {
        const OPERATION: &str = "changing write-back settings";
        const UPSERT_TYPE: &str = "INSERT INTO writeback_types (practice_id, kind, enabled, \
             enabled_at, changed_at, changed_by) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (practice_id, kind) DO UPDATE SET enabled = excluded.enabled, \
             enabled_at = excluded.enabled_at, changed_at = excluded.changed_at, \
             changed_by = excluded.changed_by";
        const UPSERT_PROVIDER: &str = "INSERT INTO writeback_practices (practice_id, \
             note_provider_id) VALUES ($1, $2) ON CONFLICT (practice_id) DO UPDATE SET \
             note_provider_id = excluded.note_provider_id";
        let backend = self.backend();
        let now = DbTime::now();
        let fail = |e| db_error(backend, OPERATION, e);
        in_transaction!(self, OPERATION, |tx| {
            require_practice!(tx, backend, practice_id, OPERATION);
            let before = read_settings!(tx, backend, practice_id);
            for (kind, on) in &change.switch {
                let Some(old) = before.of(*kind) else {
                    continue;
                };
                if old.enabled == *on {
                    continue;
                }
                let enabled_at = if *on {
                    Some(now)
                } else {
                    old.enabled_at.and_then(DbTime::new)
                };
                sqlx::query(UPSERT_TYPE)
                    .bind(practice_id)
                    .bind(kind.as_str())
                    .bind(*on)
                    .bind(enabled_at)
                    .bind(now)
                    .bind(actor)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                let word = |b: bool| if b { "on" } else { "off" };
                let entry = AuditEntry::done(actor, "writeback.switch", practice_id)
                    .with_detail(format!("{kind}: {} -> {}", word(old.enabled), word(*on)));
                audit!(tx, backend, now, &entry);
            }
            if let Some(provider) = change.note_provider_id
                && provider != before.note_provider_id
            {
                let stored = provider.map(db_id).transpose()?;
                sqlx::query(UPSERT_PROVIDER)
                    .bind(practice_id)
                    .bind(stored)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                let shown = |p: Option<u64>| p.map_or_else(|| "none".to_owned(), |p| p.to_string());
                let entry = AuditEntry::done(actor, "writeback.note_provider", practice_id)
                    .with_detail(format!(
                        "note provider: {} -> {}",
                        shown(before.note_provider_id),
                        shown(provider)
                    ));
                audit!(tx, backend, now, &entry);
            }
            Ok::<_, StoreError>(read_settings!(tx, backend, practice_id))
        })
    }

    /// Puts a request into the outbox: `pending` if its type is on for
    /// the practice now, else `blocked` (held for good: turning the type
    /// on later releases only later items). A key the practice used
    /// before stores nothing and returns the item stored then.
    pub async fn submit_writeback(&self, new: &NewItem) -> Result<Submitted, StoreError> {
        const OPERATION: &str = "submitting a write-back";
        const INSERT: &str = "INSERT INTO writeback_outbox (practice_id, kind, \
             idempotency_key, marker, body, status, reason, submitted_at, submitted_by, \
             next_attempt_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $8) \
             ON CONFLICT (practice_id, idempotency_key) DO NOTHING";
        let select = format!(
            "SELECT {ITEM_COLUMNS} FROM writeback_outbox WHERE practice_id = $1 \
             AND idempotency_key = $2"
        );
        let backend = self.backend();
        let now = DbTime::now();
        let fail = |e| db_error(backend, OPERATION, e);
        let practice_id = new.practice_id.as_str();
        in_transaction!(self, OPERATION, |tx| {
            require_practice!(tx, backend, practice_id, OPERATION);
            let settings = read_settings!(tx, backend, practice_id);
            let on = settings.of(new.kind).is_some_and(|s| s.enabled);
            let (status, reason, next) = if on {
                (ItemStatus::Pending, None, Some(now))
            } else {
                (
                    ItemStatus::Blocked,
                    Some(format!(
                        "{} is off for this practice: held, never sent",
                        new.kind
                    )),
                    None,
                )
            };
            let marker = writeback_marker(practice_id, &new.idempotency_key);
            let inserted = sqlx::query(INSERT)
                .bind(practice_id)
                .bind(new.kind.as_str())
                .bind(&new.idempotency_key)
                .bind(&marker)
                .bind(&new.body)
                .bind(status.as_str())
                .bind(reason)
                .bind(now)
                .bind(&new.submitted_by)
                .bind(next)
                .execute(&mut *tx)
                .await
                .map_err(fail)?
                .rows_affected();
            let row = sqlx::query(&select)
                .bind(practice_id)
                .bind(&new.idempotency_key)
                .fetch_one(&mut *tx)
                .await
                .map_err(fail)?;
            Ok::<_, StoreError>(Submitted {
                item: item(&row)?,
                created: inserted == 1,
            })
        })
    }

    /// One item.
    pub async fn writeback_item(&self, item_id: i64) -> Result<Option<OutboxItem>, StoreError> {
        let sql = format!("SELECT {ITEM_COLUMNS} FROM writeback_outbox WHERE item_id = $1");
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(&sql)
                .bind(item_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a write-back item", e))?;
            row.as_ref().map(item).transpose()
        })
    }

    /// The outbox, newest first: a practice's (or every practice's), of
    /// one status (or all), at most `limit` items.
    pub async fn writeback_items(
        &self,
        practice_id: Option<&str>,
        status: Option<ItemStatus>,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM writeback_outbox \
             WHERE ($1 IS NULL OR practice_id = $1) AND ($2 IS NULL OR status = $2) \
             ORDER BY item_id DESC LIMIT $3"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(practice_id)
                .bind(status.map(ItemStatus::as_str))
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing write-back items", e))?;
            rows.iter().map(item).collect()
        })
    }

    /// A practice's items due at `now` (pending, failed, or sending with an
    /// unknown outcome), oldest first, at most `limit`.
    pub async fn due_writeback_items(
        &self,
        practice_id: &str,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM_COLUMNS} FROM writeback_outbox WHERE practice_id = $1 \
             AND status IN ('pending', 'failed', 'sending') AND next_attempt_at <= $2 \
             ORDER BY item_id LIMIT $3"
        );
        let backend = self.backend();
        let now = db_time(now, "now")?;
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(practice_id)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "reading due write-back items", e))?;
            rows.iter().map(item).collect()
        })
    }

    /// Records that a send of the item begins (committed before the
    /// request leaves): `sending`, one more attempt. False if the item is
    /// no longer due to be sent (another worker settled it).
    pub async fn begin_writeback(
        &self,
        item_id: i64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE writeback_outbox SET status = 'sending', \
             attempts = attempts + 1, first_sent_at = COALESCE(first_sent_at, $2), \
             next_attempt_at = $2, reason = NULL, updated_at = $2 \
             WHERE item_id = $1 AND status IN ('pending', 'failed', 'sending')";
        let backend = self.backend();
        let now = db_time(now, "now")?;
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(item_id)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "beginning a write-back send", e))?;
        Ok(done == 1)
    }

    /// Records how an attempt on an item ended. Only an item still due
    /// (pending, failed or sending) changes; a sent, dead or blocked item
    /// is never moved. False if nothing changed.
    pub async fn end_writeback(
        &self,
        item_id: i64,
        end: &ItemEnd,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const DUE: &str = "item_id = $1 AND status IN ('pending', 'failed', 'sending')";
        let backend = self.backend();
        let now = db_time(now, "now")?;
        let done = match end {
            ItemEnd::Sent { ascend_id, found } => {
                let sql = format!(
                    "UPDATE writeback_outbox SET status = 'sent', ascend_id = $3, found = $4, \
                     sent_at = $2, next_attempt_at = NULL, reason = NULL, updated_at = $2 \
                     WHERE {DUE}"
                );
                let id = db_id(*ascend_id)?;
                with_pool!(self, |pool| sqlx::query(&sql)
                    .bind(item_id)
                    .bind(now)
                    .bind(id)
                    .bind(*found)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))
            }
            ItemEnd::Failed {
                reason,
                retry_at,
                count,
            } => {
                let sql = format!(
                    "UPDATE writeback_outbox SET status = 'failed', reason = $3, \
                     next_attempt_at = $4, updated_at = $2, \
                     attempts = CASE WHEN $5 OR attempts = 0 THEN attempts ELSE attempts - 1 END \
                     WHERE {DUE}"
                );
                let at = db_time(*retry_at, "retry time")?;
                with_pool!(self, |pool| sqlx::query(&sql)
                    .bind(item_id)
                    .bind(now)
                    .bind(reason)
                    .bind(at)
                    .bind(*count)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))
            }
            ItemEnd::Unknown { reason, retry_at } => {
                let sql = format!(
                    "UPDATE writeback_outbox SET status = 'sending', reason = $3, \
                     next_attempt_at = $4, updated_at = $2 WHERE {DUE}"
                );
                let at = db_time(*retry_at, "retry time")?;
                with_pool!(self, |pool| sqlx::query(&sql)
                    .bind(item_id)
                    .bind(now)
                    .bind(reason)
                    .bind(at)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))
            }
            ItemEnd::Dead { reason } | ItemEnd::Blocked { reason } => {
                let status = if matches!(end, ItemEnd::Dead { .. }) {
                    ItemStatus::Dead
                } else {
                    ItemStatus::Blocked
                };
                let sql = format!(
                    "UPDATE writeback_outbox SET status = $3, reason = $4, \
                     next_attempt_at = NULL, updated_at = $2 WHERE {DUE}"
                );
                with_pool!(self, |pool| sqlx::query(&sql)
                    .bind(item_id)
                    .bind(now)
                    .bind(status.as_str())
                    .bind(reason)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected()))
            }
        }
        .map_err(|e| db_error(backend, "recording a write-back attempt", e))?;
        Ok(done == 1)
    }

    /// Claims practices with write-back items due at `now` that have no
    /// live write-back claim (at most `limit`): each gets `{tick}:wb:{practice}`
    /// as its job until `until`. Only syncing practices (initial sync or
    /// active) are claimed: a paused, removed or auth-failed practice
    /// sends nothing. Returns (practice, job id).
    pub async fn claim_due_writebacks(
        &self,
        tick: &str,
        now: OffsetDateTime,
        until: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<(String, String)>, StoreError> {
        const OPERATION: &str = "claiming due write-backs";
        const CANDIDATES: &str = "SELECT DISTINCT o.practice_id FROM writeback_outbox o \
             JOIN practices p ON p.practice_id = o.practice_id \
             LEFT JOIN writeback_practices w ON w.practice_id = o.practice_id \
             WHERE o.status IN ('pending', 'failed', 'sending') AND o.next_attempt_at <= $1 \
             AND p.status IN ('initial_sync', 'active') \
             AND (w.claim_until IS NULL OR w.claim_until < $1) \
             ORDER BY o.practice_id LIMIT $2";
        const CLAIM: &str = "INSERT INTO writeback_practices (practice_id, claim_job_id, \
             claim_until) VALUES ($1, $2, $3) ON CONFLICT (practice_id) DO UPDATE SET \
             claim_job_id = excluded.claim_job_id, claim_until = excluded.claim_until \
             WHERE writeback_practices.claim_until IS NULL OR writeback_practices.claim_until < $4";
        let backend = self.backend();
        let now_db = db_time(now, "now")?;
        let until = db_time(until, "claim's end")?;
        let fail = |e| db_error(backend, OPERATION, e);
        in_transaction!(self, OPERATION, |tx| {
            let rows = sqlx::query(CANDIDATES)
                .bind(now_db)
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(fail)?;
            let mut claimed = Vec::new();
            for row in &rows {
                let practice_id = row.text("practice_id")?;
                let job_id = format!("{tick}:wb:{practice_id}");
                let done = sqlx::query(CLAIM)
                    .bind(&practice_id)
                    .bind(&job_id)
                    .bind(until)
                    .bind(now_db)
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?
                    .rows_affected();
                if done == 1 {
                    claimed.push((practice_id, job_id));
                }
            }
            Ok::<_, StoreError>(claimed)
        })
    }

    /// Gives a practice's write-back claim up (the scheduler's send
    /// failed, or the job ended for good), if `job_id` holds it.
    pub async fn release_writeback_claim(
        &self,
        practice_id: &str,
        job_id: &str,
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        with_pool!(self, |pool| sqlx::query(RELEASE_WRITEBACK_CLAIM)
            .bind(practice_id)
            .bind(job_id)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| db_error(backend, "releasing a write-back claim", e))
    }

    /// Whether the practice has a landed `table` record with `id` (a
    /// write-back's patient or appointment is checked against it).
    pub async fn has_landed(
        &self,
        practice_id: &str,
        table: Table,
        id: u64,
    ) -> Result<bool, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(false);
        };
        // Table names come only from the fixed spec.
        let sql = format!(
            "SELECT 1 AS one FROM {} WHERE practice_id = $1 AND id = $2",
            table.as_str()
        );
        let backend = self.backend();
        let row = with_pool!(self, |pool| sqlx::query(&sql)
            .bind(practice_id)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map(|r| r.is_some()))
        .map_err(|e| db_error(backend, "looking up a landed record", e))?;
        Ok(row)
    }
}

pub(crate) const RELEASE_WRITEBACK_CLAIM: &str = "UPDATE writeback_practices SET \
     claim_job_id = NULL, claim_until = NULL WHERE practice_id = $1 AND claim_job_id = $2";
