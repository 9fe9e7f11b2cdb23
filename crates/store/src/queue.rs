//! The job queue's table (`job_queue`), for the database adapter of the
//! `queue` crate: the same semantics as SQS (two lanes, a visibility
//! timeout, a receive count, dead letters) in SQL.
//!
//! - A receive takes the ready messages (not dead, `visible_at <= now`,
//!   Priority lane first, then oldest), sets each one's `visible_at` to
//!   now + visibility, adds one to its receive count and gives it a fresh
//!   receipt, in one statement. On Postgres the candidates are locked with
//!   `FOR UPDATE SKIP LOCKED`, so parallel receivers never take the same
//!   message; on SQLite `BEGIN IMMEDIATE` serializes the writers.
//! - In the same transaction, ready messages already received
//!   `max_receive_count` times become dead letters instead (SQS's redrive
//!   policy), with no reason.
//! - Delete, visibility changes and dead-lettering need the receipt of the
//!   latest receive: a worker whose visibility ran out, and whose message was
//!   delivered again, cannot touch it ([`ReceiptOutcome::Stale`]).
//!
//! Times are the application's clock (one query text serves both
//! backends); hosts are expected to keep it in sync (NTP).

use std::time::Duration;

use model::{DeadLetter, Delivery, Depth, Outgoing};
use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::error::{Backend, StoreError, db_error};
use crate::rows::RowExt;
use crate::store::{Inner, Store, in_transaction, with_pool};

/// How many messages past their receive limit one receive moves to the
/// dead letters at most (the rest are moved by later receives; none is
/// delivered meanwhile).
const SWEEP_LIMIT: i64 = 100;

/// The longest delay or visibility the store computes with; longer ones
/// are cut to it (the queue crate allows far less).
const MAX_SPAN: Duration = Duration::from_secs(366 * 24 * 3600);

/// What a call holding a receipt found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptOutcome {
    /// Done.
    Done,
    /// The message exists but the receipt is not its latest one (it was
    /// received again since), or it is a dead letter: nothing was changed.
    Stale,
    /// No such message (already deleted): nothing to do.
    Gone,
}

fn receive_count(row: &impl RowExt) -> Result<u32, StoreError> {
    Ok(u32::try_from(row.int("receive_count")?.max(0)).unwrap_or(u32::MAX))
}

fn queue_message(row: &impl RowExt) -> Result<Delivery, StoreError> {
    Ok(Delivery {
        message_id: row.text("message_id")?,
        receipt: row.text("receipt")?,
        body: row.text("body")?,
        receive_count: receive_count(row)?,
        lane: row.parsed("lane")?,
    })
}

fn dead_message(row: &impl RowExt) -> Result<DeadLetter, StoreError> {
    Ok(DeadLetter {
        message_id: row.text("message_id")?,
        body: row.text("body")?,
        reason: row.opt_text("dead_reason")?,
        receive_count: receive_count(row)?,
        lane: Some(row.parsed("lane")?),
    })
}

/// Receive's two statements, with `$LOCK` where Postgres locks.
macro_rules! receive_sql {
    ($lock:literal) => {
        (
            concat!(
                "UPDATE job_queue SET dead_at = $1 WHERE message_id IN (",
                "SELECT message_id FROM job_queue WHERE dead_at IS NULL AND visible_at <= $1 ",
                "AND receive_count >= $2 LIMIT $3",
                $lock,
                ")"
            ),
            concat!(
                "UPDATE job_queue SET receive_count = receive_count + 1, receipt = $2, ",
                "visible_at = $3, first_received_at = COALESCE(first_received_at, $1) ",
                "WHERE message_id IN (",
                "SELECT message_id FROM job_queue WHERE dead_at IS NULL AND visible_at <= $1 ",
                "AND receive_count < $4 ORDER BY lane, visible_at, message_id LIMIT $5",
                $lock,
                ") RETURNING message_id, lane, body, receive_count, receipt"
            ),
        )
    };
}

const PG_RECEIVE: (&str, &str) = receive_sql!(" FOR UPDATE SKIP LOCKED");
const SQLITE_RECEIVE: (&str, &str) = receive_sql!("");

impl Store {
    /// Enqueues messages in one transaction; returns their ids, in order.
    pub async fn queue_send(&self, messages: &[Outgoing]) -> Result<Vec<String>, StoreError> {
        // Multi-row inserts: one statement per batch, not per message (a
        // scheduler tick enqueues thousands).
        const ROWS_PER_STATEMENT: usize = 500;
        const OPERATION: &str = "enqueueing jobs";
        let backend = self.backend();
        let now = DbTime::now();
        let ids: Vec<String> = messages.iter().map(|_| message_id()).collect();
        in_transaction!(self, OPERATION, |tx| {
            for (batch, batch_ids) in messages
                .chunks(ROWS_PER_STATEMENT)
                .zip(ids.chunks(ROWS_PER_STATEMENT))
            {
                let mut sql = String::from(
                    "INSERT INTO job_queue \
                     (message_id, lane, body, enqueued_at, visible_at, receive_count) VALUES ",
                );
                for i in 0..batch.len() {
                    let p = i * 5;
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push_str(&format!(
                        "(${}, ${}, ${}, ${}, ${}, 0)",
                        p + 1,
                        p + 2,
                        p + 3,
                        p + 4,
                        p + 5
                    ));
                }
                let mut query = sqlx::query(&sql);
                for (message, id) in batch.iter().zip(batch_ids) {
                    query = query
                        .bind(id)
                        .bind(message.lane.as_str())
                        .bind(&message.body)
                        .bind(now)
                        .bind(later(now, message.delay));
                }
                query
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, OPERATION, e))?;
            }
        });
        Ok(ids)
    }

    /// Receives up to `max` ready messages, Priority lane first, each made
    /// invisible for `visibility`. Ready messages already received
    /// `max_receive_count` times become dead letters (no reason) instead.
    pub async fn queue_receive(
        &self,
        max: u32,
        visibility: Duration,
        max_receive_count: u32,
    ) -> Result<Vec<Delivery>, StoreError> {
        const OPERATION: &str = "receiving jobs";
        let backend = self.backend();
        let (sweep, receive) = match backend {
            Backend::Postgres => PG_RECEIVE,
            Backend::Sqlite => SQLITE_RECEIVE,
        };
        let now = DbTime::now();
        let receipt = fresh_token();
        let until = later(now, visibility);
        let limit = i64::from(max_receive_count);
        let mut messages = in_transaction!(self, OPERATION, |tx| {
            sqlx::query(sweep)
                .bind(now)
                .bind(limit)
                .bind(SWEEP_LIMIT)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            let rows = sqlx::query(receive)
                .bind(now)
                .bind(&receipt)
                .bind(until)
                .bind(limit)
                .bind(i64::from(max))
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            rows.iter()
                .map(queue_message)
                .collect::<Result<Vec<_>, _>>()?
        });
        // RETURNING has no order: Priority lane first, as selected.
        messages.sort_by_key(|m| m.lane);
        Ok(messages)
    }

    /// Deletes a received message, if `receipt` is still its latest.
    pub async fn queue_delete(
        &self,
        message_id: &str,
        receipt: &str,
    ) -> Result<ReceiptOutcome, StoreError> {
        const SQL: &str = "DELETE FROM job_queue \
             WHERE message_id = $1 AND receipt = $2 AND dead_at IS NULL";
        let backend = self.backend();
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(message_id)
            .bind(receipt)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "deleting a job", e))?;
        self.receipt_outcome(done, message_id).await
    }

    /// Makes a received message visible again `after` from now, if
    /// `receipt` is still its latest.
    pub async fn queue_set_visibility(
        &self,
        message_id: &str,
        receipt: &str,
        after: Duration,
    ) -> Result<ReceiptOutcome, StoreError> {
        const SQL: &str = "UPDATE job_queue SET visible_at = $3 \
             WHERE message_id = $1 AND receipt = $2 AND dead_at IS NULL";
        let backend = self.backend();
        let until = later(DbTime::now(), after);
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(message_id)
            .bind(receipt)
            .bind(until)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "changing a job's visibility", e))?;
        self.receipt_outcome(done, message_id).await
    }

    /// Moves a received message to the dead letters with `reason`, if
    /// `receipt` is still its latest.
    pub async fn queue_dead_letter(
        &self,
        message_id: &str,
        receipt: &str,
        reason: &str,
    ) -> Result<ReceiptOutcome, StoreError> {
        const SQL: &str = "UPDATE job_queue SET dead_at = $3, dead_reason = $4 \
             WHERE message_id = $1 AND receipt = $2 AND dead_at IS NULL";
        let backend = self.backend();
        let now = DbTime::now();
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(message_id)
            .bind(receipt)
            .bind(now)
            .bind(reason)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "moving a job to the dead letters", e))?;
        self.receipt_outcome(done, message_id).await
    }

    async fn receipt_outcome(
        &self,
        done: u64,
        message_id: &str,
    ) -> Result<ReceiptOutcome, StoreError> {
        if done > 0 {
            return Ok(ReceiptOutcome::Done);
        }
        const SQL: &str = "SELECT message_id FROM job_queue WHERE message_id = $1";
        let backend = self.backend();
        let found = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(message_id)
            .fetch_optional(pool)
            .await
            .map(|r| r.is_some()))
        .map_err(|e| db_error(backend, "reading a job", e))?;
        Ok(if found {
            ReceiptOutcome::Stale
        } else {
            ReceiptOutcome::Gone
        })
    }

    /// Up to `max` dead letters, oldest first, without changing them.
    pub async fn queue_dead_letters(&self, max: u32) -> Result<Vec<DeadLetter>, StoreError> {
        const SQL: &str = "SELECT message_id, lane, body, receive_count, dead_reason \
             FROM job_queue WHERE dead_at IS NOT NULL \
             ORDER BY dead_at, message_id LIMIT $1";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(i64::from(max))
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing dead letters", e))?;
            rows.iter().map(dead_message).collect()
        })
    }

    /// Puts dead letters back on their lane, ready now, with a receive
    /// count of zero: every one (`None`) or the one with that id. Returns
    /// how many moved.
    pub async fn queue_redrive(&self, message_id: Option<&str>) -> Result<u64, StoreError> {
        const ALL: &str = "UPDATE job_queue SET dead_at = NULL, dead_reason = NULL, \
             receive_count = 0, receipt = NULL, first_received_at = NULL, visible_at = $1 \
             WHERE dead_at IS NOT NULL";
        const ONE: &str = "UPDATE job_queue SET dead_at = NULL, dead_reason = NULL, \
             receive_count = 0, receipt = NULL, first_received_at = NULL, visible_at = $1 \
             WHERE dead_at IS NOT NULL AND message_id = $2";
        let backend = self.backend();
        let now = DbTime::now();
        with_pool!(self, |pool| {
            let query = match message_id {
                None => sqlx::query(ALL).bind(now),
                Some(id) => sqlx::query(ONE).bind(now).bind(id),
            };
            query.execute(pool).await.map(|r| r.rows_affected())
        })
        .map_err(|e| db_error(backend, "redriving dead letters", e))
    }

    /// How many messages are ready, delayed, in flight and dead.
    pub async fn queue_counts(&self) -> Result<Depth, StoreError> {
        const SQL: &str = "SELECT \
             COALESCE(SUM(CASE WHEN dead_at IS NULL AND visible_at <= $1 THEN 1 ELSE 0 END), 0) \
               AS visible, \
             COALESCE(SUM(CASE WHEN dead_at IS NULL AND visible_at > $1 AND receipt IS NULL \
               THEN 1 ELSE 0 END), 0) AS delayed, \
             COALESCE(SUM(CASE WHEN dead_at IS NULL AND visible_at > $1 AND receipt IS NOT NULL \
               THEN 1 ELSE 0 END), 0) AS in_flight, \
             COALESCE(SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS dead \
             FROM job_queue";
        let backend = self.backend();
        let now = DbTime::now();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(|e| db_error(backend, "counting jobs", e))?;
            let count = |col: &'static str| row.int(col).map(|n| u64::try_from(n).unwrap_or(0));
            Ok(Depth {
                visible: count("visible")?,
                delayed: count("delayed")?,
                in_flight: count("in_flight")?,
                dead: count("dead")?,
            })
        })
    }
}

/// `now + span` (span cut to [`MAX_SPAN`]).
fn later(now: DbTime, span: Duration) -> DbTime {
    let span = time::Duration::try_from(span.min(MAX_SPAN)).unwrap_or(time::Duration::ZERO);
    now.0.checked_add(span).and_then(DbTime::new).unwrap_or(now)
}

/// A new message id, 32 hex digits: 16 that grow in the order messages
/// are sent (microseconds since the epoch, always above the last id's in
/// this process), then 16 unpredictable ones. Messages ready at the same
/// time are received in id order, so a batch is handed out in the order it
/// was sent: an initial sync's priority chunks before its history.
fn message_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = u64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1000).unwrap_or(0);
    let next = |last: u64| now.max(last.saturating_add(1));
    let last = LAST
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
            Some(next(last))
        })
        .unwrap_or_else(|last| last);
    let token = fresh_token();
    format!("{:016x}{}", next(last), token.get(..16).unwrap_or(&token))
}

/// 128 unpredictable bits as 32 hex digits: message ids and receipts.
///
/// `RandomState` keys are seeded from the operating system's randomness
/// (and differ at each call), so no random-number crate is needed.
fn fresh_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = OffsetDateTime::now_utc().unix_timestamp_nanos();
    let half = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u64(count);
        hasher.write_i128(nanos);
        hasher.finish()
    };
    format!("{:016x}{:016x}", half(1), half(2))
}
