//! The write-back job's step (issue 15): sends a practice's due outbox
//! items of enabled types, each exactly once. The rules are
//! `sync_core::writeback`'s; this executes them.
//!
//! For each due item, oldest first:
//! 1. its type's switch is read fresh for this job: an item whose type is
//!    off, or was turned on after it was submitted, is held (`blocked`);
//! 2. an item left `sending` (a send began, its outcome is unknown: a
//!    timeout, a 5xx, a worker killed mid-send) is looked up in Ascend by
//!    its marker, and recorded `sent` with the found id if it is there;
//! 3. otherwise the send is recorded as begun (committed before the
//!    request leaves), sent, and its outcome recorded.
//!
//! A failure that concerns the organization rather than the item (a
//! timeout, a 5xx, a throttle, refused credentials) ends the pass: the
//! rest wait, due, for the next job.

use std::time::Duration;

use ascend_client::{Applied as ClientApplied, ErrorClass, OrgClient, WriteFailure};
use model::writeback::WriteContext;
use model::{OutboxItem, Practice, Write};
use store::{ItemEnd, Store};
use sync_core::job::Outcome;
use sync_core::writeback::{
    self, Admission, AfterFailure, Applied, Step as FirstStep, Tally, admit_item, after_failure,
    next_step,
};
use time::OffsetDateTime;

/// Items one job goes through at most; the rest wait for the next job.
pub const ITEMS_PER_JOB: u32 = 200;

/// What one item's turn did to the job.
enum Turn {
    /// Go on with the next item.
    Next,
    /// Stop the pass (the organization, not the item, is in trouble).
    Stop,
    /// Stop the job: a person must act (credentials refused).
    Fail(ErrorClass, String),
}

/// Runs the write-back step for `practice` with its connected `org`.
pub(crate) async fn run(
    store: &Store,
    org: &OrgClient,
    practice: &Practice,
    retry_base: Duration,
) -> Result<(Outcome, u64), store::StoreError> {
    let settings = store.writeback_settings(&practice.practice_id).await?;
    let items = store
        .due_writeback_items(
            &practice.practice_id,
            OffsetDateTime::now_utc(),
            ITEMS_PER_JOB,
        )
        .await?;
    let mut pass = Pass {
        store,
        org,
        retry_base,
        tally: Tally::default(),
        first_error: None,
    };
    for item in &items {
        let ctx = WriteContext {
            marker: item.marker.clone(),
            note_provider_id: settings.note_provider_id,
            location_id: u64::try_from(practice.location_id).unwrap_or(0),
        };
        let admission = admit_item(item, settings.of(item.kind));
        match pass.item(item, &ctx, admission).await? {
            Turn::Next => {}
            Turn::Stop => break,
            Turn::Fail(class, message) => {
                return Ok((Outcome::Failed { class, message }, pass.written()));
            }
        }
    }
    let written = pass.written();
    Ok((
        Outcome::Writeback {
            tally: pass.tally,
            first_error: pass.first_error,
        },
        written,
    ))
}

struct Pass<'a> {
    store: &'a Store,
    org: &'a OrgClient,
    retry_base: Duration,
    tally: Tally,
    first_error: Option<(ErrorClass, String)>,
}

impl Pass<'_> {
    fn written(&self) -> u64 {
        self.tally.sent + self.tally.found
    }

    fn note_error(&mut self, class: ErrorClass, message: String) {
        if self.first_error.is_none() {
            self.first_error = Some((class, message));
        }
    }

    async fn end(&self, item: &OutboxItem, end: ItemEnd) -> Result<(), store::StoreError> {
        self.store
            .end_writeback(item.item_id, &end, OffsetDateTime::now_utc())
            .await
            .map(|_| ())
    }

    async fn item(
        &mut self,
        item: &OutboxItem,
        ctx: &WriteContext,
        admission: Admission,
    ) -> Result<Turn, store::StoreError> {
        let write: Write = match serde_json::from_str(&item.body) {
            Ok(write) => write,
            Err(error) => {
                let reason = format!(
                    "the stored request cannot be read by this build ({error}); submit it again"
                );
                self.tally.dead += 1;
                self.note_error(ErrorClass::State, reason.clone());
                self.end(item, ItemEnd::Dead { reason }).await?;
                return Ok(Turn::Next);
            }
        };
        let span = tracing::info_span!(
            "writeback_item",
            item_id = item.item_id,
            kind = item.kind.as_str(),
            attempt = item.attempts + 1
        );
        let _entered = span.enter();
        // An earlier send may have landed: look before anything else,
        // even if the type has been turned off since.
        if next_step(item) == FirstStep::LookUp {
            let since = item.first_sent_at.unwrap_or(item.submitted_at);
            match self.org.find_write(&write, ctx, since).await {
                Ok(Some(ascend_id)) => {
                    tracing::info!(
                        message = "found in Ascend after a lost answer; recorded, not sent again"
                    );
                    self.tally.found += 1;
                    self.end(
                        item,
                        ItemEnd::Sent {
                            ascend_id,
                            found: true,
                        },
                    )
                    .await?;
                    return Ok(Turn::Next);
                }
                Ok(None) if !writeback::may_send_again(item.attempts) => {
                    let reason = format!(
                        "not in Ascend after {} sends whose outcome was lost; given up",
                        item.attempts
                    );
                    self.tally.dead += 1;
                    self.note_error(ErrorClass::Transient, reason.clone());
                    self.end(item, ItemEnd::Dead { reason }).await?;
                    return Ok(Turn::Next);
                }
                Ok(None) => {}
                Err(error) => {
                    let class = error.class();
                    let reason = format!(
                        "looking in Ascend for an earlier send failed: {error}; \
                         it is looked up again before any send"
                    );
                    let retry_at = OffsetDateTime::now_utc()
                        + writeback::retry_delay(item.attempts.max(1), self.retry_base);
                    self.tally.retrying += 1;
                    self.note_error(class, reason.clone());
                    self.end(item, ItemEnd::Unknown { reason, retry_at })
                        .await?;
                    return Ok(stop_for(class, &error.to_string()));
                }
            }
        }
        if let Admission::Hold(reason) = admission {
            self.tally.blocked += 1;
            self.end(item, ItemEnd::Blocked { reason }).await?;
            return Ok(Turn::Next);
        }
        if !self
            .store
            .begin_writeback(item.item_id, OffsetDateTime::now_utc())
            .await?
        {
            // Settled by someone else since it was read.
            return Ok(Turn::Next);
        }
        let attempts = item.attempts + 1;
        match self.org.send_write(&write, ctx).await {
            Ok(sent) => {
                tracing::info!(message = "sent");
                self.tally.sent += 1;
                self.end(
                    item,
                    ItemEnd::Sent {
                        ascend_id: sent.ascend_id,
                        found: false,
                    },
                )
                .await?;
                Ok(Turn::Next)
            }
            Err(failure) => self.failed(item, attempts, failure).await,
        }
    }

    async fn failed(
        &mut self,
        item: &OutboxItem,
        attempts: u32,
        failure: WriteFailure,
    ) -> Result<Turn, store::StoreError> {
        let now = OffsetDateTime::now_utc();
        let error = &failure.error;
        let class = error.class();
        let applied = match failure.applied {
            ClientApplied::No => Applied::No,
            ClientApplied::Unknown => Applied::Unknown,
        };
        let reason = failure.to_string();
        tracing::warn!(class = class.as_str(), applied = ?applied, error = %error, "send failed");
        self.note_error(class, reason.clone());
        // Ascend asked us to wait, or refused the credentials: the item is
        // not at fault and keeps its attempt.
        if applied == Applied::No && matches!(class, ErrorClass::RateLimited | ErrorClass::Auth) {
            let wait = match error {
                ascend_client::ClientError::RateLimited {
                    retry_after: Some(wait),
                } => *wait,
                _ => self.retry_base,
            };
            self.tally.retrying += 1;
            self.end(
                item,
                ItemEnd::Failed {
                    reason,
                    retry_at: now + wait,
                    count: false,
                },
            )
            .await?;
            return Ok(stop_for(class, &error.to_string()));
        }
        let retryable = error.is_retryable() || applied == Applied::Unknown;
        match after_failure(attempts, applied, retryable, self.retry_base, now) {
            AfterFailure::Retry(retry_at) => {
                self.tally.retrying += 1;
                let end = match applied {
                    Applied::Unknown => ItemEnd::Unknown { reason, retry_at },
                    Applied::No => ItemEnd::Failed {
                        reason,
                        retry_at,
                        count: true,
                    },
                };
                self.end(item, end).await?;
            }
            AfterFailure::Dead => {
                self.tally.dead += 1;
                let reason = if retryable {
                    format!("given up after {attempts} attempts: {reason}")
                } else {
                    format!("refused by Ascend, not retried: {reason}")
                };
                self.end(item, ItemEnd::Dead { reason }).await?;
            }
        }
        Ok(stop_for(class, &error.to_string()))
    }
}

/// Whether a failure of `class` ends the pass: anything but an item's own
/// refusal.
fn stop_for(class: ErrorClass, message: &str) -> Turn {
    match class {
        ErrorClass::Auth => Turn::Fail(class, message.to_owned()),
        ErrorClass::Rejected | ErrorClass::NotOffered | ErrorClass::BadPayload => Turn::Next,
        _ => Turn::Stop,
    }
}
