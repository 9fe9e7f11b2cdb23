//! The database queue (embedded mode, and any deployment without SQS): the
//! store's `job_queue` table, on Postgres or SQLite.
//!
//! The SQL lives in the store (`store::Store::queue_*`); this adapter adds
//! the queue's rules: lanes, settings, long polling and errors.
//!
//! - **Receive** is one transaction: ready messages already delivered
//!   `max_receive_count` times become dead letters (as SQS's RedrivePolicy
//!   does at receive time), then one `UPDATE ... RETURNING` takes up to
//!   `max` ready messages, Priority lane first, sets their visibility,
//!   receive count and a fresh receipt. On Postgres the candidates are
//!   selected `FOR UPDATE SKIP LOCKED`, so parallel receivers never get the
//!   same message; SQLite serializes writers (`BEGIN IMMEDIATE`).
//! - **Long polling** is a poll every [`POLL_INTERVAL`] until a message
//!   arrives or the wait is over (no LISTEN/NOTIFY: SQLite has none, and a
//!   quarter second is well inside a sync interval).
//! - **Receipts**: delete, visibility changes and dead-lettering match the
//!   message id *and* the receipt of its latest delivery, so a worker whose
//!   visibility ran out cannot delete a message another worker now holds
//!   ([`QueueError::ReceiptExpired`]).
//! - **Redrive** is one `UPDATE` (reported as [`RedriveMethod::MoveTask`]):
//!   the messages keep their id and lane and get a receive count of zero.

use std::time::Duration;

use store::{ReceiptOutcome, Store};
use tokio::time::Instant;

use crate::{
    DeadLetter, Delivery, Depth, Outgoing, QueueError, QueueSettings, RedriveMethod, RedriveReport,
    RedriveSelector, whole_seconds,
};

/// How often a waiting receive asks the database again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The job queue in the store's database.
#[derive(Debug, Clone)]
pub struct DbQueue {
    store: Store,
    settings: QueueSettings,
}

impl DbQueue {
    /// A queue over `store` (migrated: the `job_queue` table comes with the
    /// store's migrations). Settings out of bounds are brought inside them
    /// (see [`QueueSettings`]); [`DbQueue::try_new`] refuses them instead.
    #[must_use]
    pub fn new(store: Store, settings: QueueSettings) -> DbQueue {
        DbQueue {
            store,
            settings: settings.clamped(),
        }
    }

    /// [`DbQueue::new`], refusing settings out of bounds.
    pub fn try_new(store: Store, settings: QueueSettings) -> Result<DbQueue, QueueError> {
        settings.validate()?;
        Ok(DbQueue { store, settings })
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub(crate) fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    pub(crate) async fn send(&self, jobs: &[Outgoing]) -> Result<Vec<String>, QueueError> {
        let jobs: Vec<Outgoing> = jobs
            .iter()
            .map(|job| Outgoing {
                delay: whole_seconds(job.delay),
                ..job.clone()
            })
            .collect();
        Ok(self.store.queue_send(&jobs).await?)
    }

    pub(crate) async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let visibility = whole_seconds(self.settings.visibility);
        loop {
            // In a task of its own: a receive cancelled by its caller (a
            // worker shutting down) must not leave a transaction half-begun
            // on a pooled connection. What it received then comes back when
            // its visibility runs out.
            let (store, max_receive_count) = (self.store.clone(), self.settings.max_receive_count);
            let messages = tokio::spawn(async move {
                store
                    .queue_receive(max, visibility, max_receive_count)
                    .await
            })
            .await
            .map_err(|error| QueueError::Interrupted {
                reason: error.to_string(),
            })??;
            if !messages.is_empty() {
                return Ok(messages);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - now)).await;
        }
    }

    pub(crate) async fn delete(&self, d: &Delivery) -> Result<(), QueueError> {
        match self.store.queue_delete(&d.message_id, &d.receipt).await? {
            ReceiptOutcome::Done | ReceiptOutcome::Gone => Ok(()),
            ReceiptOutcome::Stale => Err(expired(d)),
        }
    }

    pub(crate) async fn set_visibility(
        &self,
        d: &Delivery,
        after: Duration,
    ) -> Result<(), QueueError> {
        match self
            .store
            .queue_set_visibility(&d.message_id, &d.receipt, after)
            .await?
        {
            ReceiptOutcome::Done => Ok(()),
            ReceiptOutcome::Stale | ReceiptOutcome::Gone => Err(expired(d)),
        }
    }

    pub(crate) async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        match self
            .store
            .queue_dead_letter(&d.message_id, &d.receipt, reason)
            .await?
        {
            ReceiptOutcome::Done => Ok(()),
            ReceiptOutcome::Stale | ReceiptOutcome::Gone => Err(expired(d)),
        }
    }

    pub(crate) async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        Ok(self.store.queue_dead_letters(max).await?)
    }

    pub(crate) async fn redrive(
        &self,
        which: &RedriveSelector,
    ) -> Result<RedriveReport, QueueError> {
        let id = match which {
            RedriveSelector::All => None,
            RedriveSelector::Id(id) => Some(id.as_str()),
        };
        let moved = self.store.queue_redrive(id).await?;
        Ok(RedriveReport {
            moved,
            method: RedriveMethod::MoveTask,
        })
    }

    pub(crate) async fn depth(&self) -> Result<Depth, QueueError> {
        Ok(self.store.queue_counts().await?)
    }
}

fn expired(d: &Delivery) -> QueueError {
    QueueError::ReceiptExpired {
        message_id: d.message_id.clone(),
    }
}
