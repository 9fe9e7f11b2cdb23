//! The job queue: how a job gets from the scheduler (and "Force Sync Now")
//! to a worker, and what happens to a job that keeps failing.
//!
//! # Design
//!
//! - The message is [`model::Job`], versioned JSON ([`Job::encode`], [`Job::decode`]).
//!   The queue itself carries opaque text bodies; only the lane guess for
//!   an SQS dead letter without its lane attribute reads a body.
//! - [`Queue`]: one interface, two adapters with the same semantics,
//!   proven by one test suite run on each: [`SqsQueue`] (production: three
//!   SQS standard queues, a Priority lane, a Standard lane and one
//!   dead-letter queue that both lanes' RedrivePolicy points at) and
//!   [`DbQueue`] (embedded mode: the `job_queue` table of the store, on
//!   Postgres or SQLite). An enum with inherent async methods, no trait
//!   objects.
//!
//! # Semantics (both adapters)
//!
//! - **At least once.** A received message is invisible for the settings'
//!   `visibility` and comes back after it with `receive_count + 1` unless it
//!   is deleted. A worker deletes a message **only after the job
//!   succeeded**; [`Queue::set_visibility`] extends it (heartbeat), delays
//!   it (backoff) or releases it (zero). Duplicates happen (a visibility
//!   that ran out, a redrive interrupted between send and delete); the
//!   worker makes them harmless. Nothing is ever lost.
//! - **Priority lane.** [`Queue::receive`] always asks the Priority lane
//!   first (no wait), then long-polls the Standard lane. A person who
//!   pressed "Force Sync Now" does not wait behind a full cycle of
//!   scheduled jobs.
//! - **Dead letters.** A message received more than `max_receive_count`
//!   times moves to the dead letters, with no reason (on SQS this is the
//!   queue's RedrivePolicy; the caller finds the last error in its own sync
//!   history). [`Queue::dead_letter`] moves a poison message at once, with
//!   a reason. [`Queue::dead_letters`] lists them without consuming any;
//!   [`Queue::redrive`] puts them back on the lane they came from, with a
//!   fresh receive count.
//! - **Bounds** (SQS's, enforced on both so behaviour is the same): bodies
//!   of 1 byte to 256 KiB of characters SQS accepts; delays up to 15 min;
//!   visibilities up to 12 h; durations are rounded up to whole seconds;
//!   `receive` takes 1 to 10 messages and waits at most 20 s.
//!
//! # Adapters
//!
//! - SQS: see [`SqsQueue`] (batches of 10, partial batch failures retried,
//!   redrive by `StartMessageMoveTask` with a receive/send/delete fallback).
//! - Database: see [`DbQueue`] (one `UPDATE ... RETURNING` per receive,
//!   `FOR UPDATE SKIP LOCKED` on Postgres; long polling is a poll every
//!   [`db::POLL_INTERVAL`] until something arrives or the wait is over).

use std::time::Duration;

pub mod db;
mod error;
pub mod sqs;

#[cfg(test)]
mod tests;

pub use db::DbQueue;
pub use error::QueueError;
pub use model::{
    DeadLetter, Delivery, Depth, JOB_VERSION, Job, JobError, JobKind, JobMeta, Lane, Outgoing,
    Trigger,
};
pub use sqs::{SqsConfig, SqsQueue};

/// The longest body accepted, in bytes (SQS's classic limit).
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The longest delay of a sent message (SQS `DelaySeconds`).
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// The longest visibility (SQS's limit).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// The most messages one receive returns (SQS's limit).
pub const MAX_RECEIVE: usize = 10;
/// The longest wait of one receive (SQS's long-poll limit).
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// The longest dead-letter reason kept, in characters (cut beyond).
pub const MAX_REASON_CHARS: usize = 1024;

/// Which dead letters to redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedriveSelector {
    /// Every one.
    All,
    /// The one with this id (from [`Queue::dead_letters`]).
    Id(String),
}

/// How a redrive moved the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedriveMethod {
    /// One server-side move: SQS `StartMessageMoveTask` (asynchronous:
    /// `moved` is the dead-letter count when it started), or the database
    /// queue's single transaction.
    MoveTask,
    /// Message by message: received from the dead letters, sent to the
    /// lane, then deleted from the dead letters (a crash in between leaves
    /// a duplicate, never a loss).
    Fallback,
}

/// What a redrive did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedriveReport {
    /// How many dead letters were moved back (see [`RedriveMethod`]).
    pub moved: u64,
    /// How.
    pub method: RedriveMethod,
}

/// How the queue treats deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueSettings {
    /// Deliveries after which a message moves to the dead letters (SQS
    /// RedrivePolicy `maxReceiveCount`; 1 to 1000). Default 5.
    pub max_receive_count: u32,
    /// How long a received message stays invisible (whole seconds, at most
    /// 12 h). Default 5 min.
    pub visibility: Duration,
}

impl Default for QueueSettings {
    fn default() -> Self {
        QueueSettings {
            max_receive_count: 5,
            visibility: Duration::from_secs(5 * 60),
        }
    }
}

impl QueueSettings {
    /// These settings brought inside the bounds named on each field.
    #[must_use]
    pub fn clamped(self) -> QueueSettings {
        QueueSettings {
            max_receive_count: self.max_receive_count.clamp(1, 1000),
            visibility: self.visibility.min(MAX_VISIBILITY),
        }
    }

    /// Checks the bounds named on each field.
    pub fn validate(&self) -> Result<(), QueueError> {
        if !(1..=1000).contains(&self.max_receive_count) {
            return Err(QueueError::Config {
                reason: format!(
                    "max_receive_count is {}; set it between 1 and 1000",
                    self.max_receive_count
                ),
            });
        }
        if self.visibility > MAX_VISIBILITY {
            return Err(QueueError::Config {
                reason: format!(
                    "the visibility timeout is {} s; set it to at most 43200 s (12 h)",
                    self.visibility.as_secs()
                ),
            });
        }
        Ok(())
    }
}

/// The job queue: SQS in production, the database when embedded.
#[derive(Debug, Clone)]
pub enum Queue {
    /// SQS.
    Sqs(SqsQueue),
    /// The store's `job_queue` table.
    Database(DbQueue),
}

impl Queue {
    /// Sends messages (any number; SQS in batches of 10); returns their ids
    /// in order. On an error some may have been sent (the error says how
    /// many); sending all again is safe (duplicates are harmless).
    pub async fn send(&self, jobs: &[Outgoing]) -> Result<Vec<String>, QueueError> {
        for job in jobs {
            check_outgoing(job)?;
        }
        match self {
            Queue::Sqs(q) => q.send(jobs).await,
            Queue::Database(q) => q.send(jobs).await,
        }
    }

    /// Receives up to `max` (1 to 10) messages: the Priority lane first
    /// (without waiting), then the Standard lane, waiting up to `wait` (at
    /// most 20 s) for one to arrive. Each is invisible for the settings'
    /// visibility. An empty result is normal.
    pub async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<Delivery>, QueueError> {
        if !(1..=MAX_RECEIVE).contains(&max) {
            return Err(QueueError::Invalid {
                reason: format!("receive asks for {max} messages; ask for 1 to {MAX_RECEIVE}"),
            });
        }
        let wait = wait.min(MAX_WAIT);
        match self {
            Queue::Sqs(q) => q.receive(max, wait).await,
            Queue::Database(q) => q.receive(max, wait).await,
        }
    }

    /// Deletes a delivered message: call it only once its job succeeded.
    /// Deleting one already deleted succeeds; on the database queue a
    /// receipt older than the message's latest delivery changes nothing and
    /// is [`QueueError::ReceiptExpired`].
    pub async fn delete(&self, d: &Delivery) -> Result<(), QueueError> {
        match self {
            Queue::Sqs(q) => q.delete(d).await,
            Queue::Database(q) => q.delete(d).await,
        }
    }

    /// Makes a delivered message visible again `after` from now (rounded
    /// up to whole seconds, at most 12 h): extend while working (heartbeat),
    /// retry later (backoff), or release now (zero).
    pub async fn set_visibility(&self, d: &Delivery, after: Duration) -> Result<(), QueueError> {
        if after > MAX_VISIBILITY {
            return Err(QueueError::Invalid {
                reason: format!(
                    "a visibility of {} s was asked; SQS allows at most 43200 s (12 h)",
                    after.as_secs()
                ),
            });
        }
        let after = whole_seconds(after);
        match self {
            Queue::Sqs(q) => q.set_visibility(d, after).await,
            Queue::Database(q) => q.set_visibility(d, after).await,
        }
    }

    /// Moves a poison message to the dead letters now, with `reason` (cut
    /// to [`MAX_REASON_CHARS`]; never put a secret in it).
    pub async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        let reason = bounded_reason(reason);
        match self {
            Queue::Sqs(q) => q.dead_letter(d, &reason).await,
            Queue::Database(q) => q.dead_letter(d, &reason).await,
        }
    }

    /// Lists up to `max` dead letters without consuming any.
    pub async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        match self {
            Queue::Sqs(q) => q.dead_letters(max).await,
            Queue::Database(q) => q.dead_letters(max).await,
        }
    }

    /// Puts dead letters back on the lane they came from, receivable at
    /// once with a fresh receive count.
    pub async fn redrive(&self, which: &RedriveSelector) -> Result<RedriveReport, QueueError> {
        match self {
            Queue::Sqs(q) => q.redrive(which).await,
            Queue::Database(q) => q.redrive(which).await,
        }
    }

    /// How many messages are ready, in flight, delayed and dead.
    pub async fn depth(&self) -> Result<Depth, QueueError> {
        match self {
            Queue::Sqs(q) => q.depth().await,
            Queue::Database(q) => q.depth().await,
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &QueueSettings {
        match self {
            Queue::Sqs(q) => q.settings(),
            Queue::Database(q) => q.settings(),
        }
    }
}

impl From<SqsQueue> for Queue {
    fn from(q: SqsQueue) -> Queue {
        Queue::Sqs(q)
    }
}

impl From<DbQueue> for Queue {
    fn from(q: DbQueue) -> Queue {
        Queue::Database(q)
    }
}

/// `d` rounded up to whole seconds.
pub(crate) fn whole_seconds(d: Duration) -> Duration {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    Duration::from_secs(secs)
}

/// `d` as SQS's whole seconds (rounded up, saturating).
pub(crate) fn secs_i32(d: Duration) -> i32 {
    i32::try_from(whole_seconds(d).as_secs()).unwrap_or(i32::MAX)
}

/// Whether SQS accepts `c` in a body or a string attribute
/// (`#x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF`).
fn sqs_char(c: char) -> bool {
    matches!(c, '\u{9}' | '\u{A}' | '\u{D}' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn check_outgoing(job: &Outgoing) -> Result<(), QueueError> {
    let invalid = |reason: String| Err(QueueError::Invalid { reason });
    if job.body.is_empty() {
        return invalid("a message body is empty; send the encoded job".into());
    }
    if job.body.len() > MAX_BODY_BYTES {
        return invalid(format!(
            "a message body is {} bytes; the limit is {MAX_BODY_BYTES}",
            job.body.len()
        ));
    }
    if let Some(position) = job.body.chars().position(|c| !sqs_char(c)) {
        return invalid(format!(
            "a message body holds a character SQS refuses (a control character or a \
             noncharacter) at character {position}; send JSON as Job::encode writes it"
        ));
    }
    if job.delay > MAX_DELAY {
        return invalid(format!(
            "a delay of {} s was asked; SQS allows at most 900 s (15 min): schedule it later \
             instead",
            job.delay.as_secs()
        ));
    }
    Ok(())
}

/// A reason cut to [`MAX_REASON_CHARS`], with characters SQS refuses
/// replaced, so that both adapters keep the same text.
fn bounded_reason(reason: &str) -> String {
    let mut out: String = reason
        .chars()
        .take(MAX_REASON_CHARS)
        .map(|c| if sqs_char(c) { c } else { '\u{FFFD}' })
        .collect();
    if out.is_empty() {
        out.push_str("(no reason given)");
    }
    out
}

/// The lane a dead letter without a lane attribute goes back to: the
/// Priority lane if its body is a job triggered by "Force Sync Now", else
/// Standard (a body that is not a job included).
pub(crate) fn lane_from_body(body: &str) -> Lane {
    Job::decode(body).map_or(Lane::Standard, |job| job.lane())
}
