//! The rules of a job, as pure functions: given the job, the practice as
//! the job finds it, how its delivery stands and what each step answered,
//! what to do.
//!
//! The worker asks, in this order, and executes what each answer says
//! through its adapters; it decides nothing itself:
//!
//! 1. [`poison`]: a body that is not a job goes to the dead letters.
//! 2. [`busy`]: another worker holds the job's lease: when to look again.
//! 3. [`admit`]: whether the job still has work (practice status, claim).
//! 4. [`conclude`]: from the step's [`Outcome`], the [`Decision`]: the
//!    run's state and error, the [`Effects`] (committed in one transaction
//!    with the run's end and the lease's release) and how to [`Settle`]
//!    the message (only after that commit).
//!
//! Times come in as arguments; nothing here reads a clock, the network or
//! the database. Every rule is tested table-driven in `tests`.

use std::time::Duration;

pub use model::{ClaimChange, Holder};
use model::{ErrorClass, Job, PracticeStatus, Resource, RunState, Trigger};
use time::OffsetDateTime;

use crate::schedule;

/// How the message of a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// This delivery's number (1 for the first).
    pub receive_count: u32,
    /// Deliveries after which the queue dead-letters the message.
    pub max_receive_count: u32,
}

impl Delivered {
    /// Whether this is the last delivery before the dead letters.
    #[must_use]
    pub fn is_last(self) -> bool {
        self.receive_count >= self.max_receive_count
    }
}

/// The worker's timing settings the rules use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The first retry's backoff (doubled per delivery, with jitter).
    pub first_backoff: Duration,
    /// The longest retry backoff.
    pub max_backoff: Duration,
    /// How long an initial sync's claim lasts after its last progress.
    pub initial_claim: Duration,
}

/// What to do with the message, once the job's end is committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Done: delete it.
    Delete,
    /// Make it visible again after this long (a retry, or a busy lease);
    /// past `max_receive_count` deliveries the queue dead-letters it.
    RetryAfter(Duration),
    /// Send a fresh copy (receive count 1) visible after `delay`, then
    /// delete this delivery: waiting for another worker's lease must not use
    /// up the job's deliveries.
    Requeue {
        /// How long the copy stays invisible.
        delay: Duration,
    },
    /// Make it visible at once for another worker (shutdown).
    Release,
    /// Move it to the dead letters now, with the reason.
    DeadLetter {
        /// Why, for the operator who lists the dead letters.
        reason: String,
    },
    /// Touch nothing: it comes back when its visibility runs out. The
    /// answer when the job's end could not be committed, so history never
    /// loses an attempt.
    Leave,
}

/// The practice's scheduling claim, as the job finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The job that holds it.
    pub job_id: String,
    /// Until when.
    pub until: OffsetDateTime,
}

/// The practice, as the job finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PracticeView {
    /// Its status.
    pub status: PracticeStatus,
    /// When a sync of it last succeeded.
    pub last_success_at: Option<OffsetDateTime>,
    /// Its scheduling claim, if any (live or expired).
    pub claim: Option<Claim>,
}

/// Whether a job still has work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Run it.
    Run,
    /// Record it `skipped` with the reason and end it.
    Skip {
        /// Why, for history.
        reason: String,
        /// Whether to give the practice's claim up (only if this job holds
        /// it): the practice no longer syncs, or the job's kind no longer
        /// fits it.
        release_claim: bool,
    },
}

/// What a job's step answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The job was not run (see [`admit`]).
    Skipped {
        /// Why.
        reason: String,
        /// Whether to give the practice's claim up.
        release_claim: bool,
    },
    /// The step failed as a whole.
    Failed {
        /// What kind of failure.
        class: ErrorClass,
        /// What happened, for history (never a secret).
        message: String,
    },
    /// An incremental cycle ran: each resource's error, if it failed.
    Incremental {
        /// One entry per resource pulled.
        resources: Vec<(Resource, Option<(ErrorClass, String)>)>,
        /// Records the cycle set aside in quarantine (fetched, or retried
        /// from the quarantine, and still unreadable or refused).
        quarantined: u64,
    },
    /// The initial sync's plan ran.
    Planned {
        /// Resources that could not be planned, with the error.
        unplanned: Vec<(Resource, String)>,
        /// The plan's chunks that are still pending.
        pending: Vec<PendingChunk>,
    },
    /// Ascend asked the job to wait (`429` with a `Retry-After` longer
    /// than the client waits in place): the job gives its message back
    /// with that delay instead of holding a worker, without using up a
    /// delivery. See [`throttled`].
    Throttled {
        /// How long Ascend asked to wait.
        retry_after: Duration,
        /// What happened, for history.
        message: String,
    },
    /// A chunk ran to its end (or was already done).
    ChunkDone {
        /// Resources not planned yet (after this chunk).
        unplanned: usize,
        /// Chunks of the practice still pending (after this chunk).
        pending: usize,
        /// Records of the chunk set aside in quarantine.
        quarantined: u64,
        /// Jobs of other practices of the organization to send: their
        /// share chunks, done by this chunk's finished pull (issue 14).
        wake: Vec<Job>,
    },
    /// A write-back job went through the practice's due items (issue 15).
    /// Each item's outcome is already recorded on the item; this is the
    /// run's account.
    Writeback {
        /// What became of the items.
        tally: crate::writeback::Tally,
        /// The first item failure (retried or given up), if any.
        first_error: Option<(ErrorClass, String)>,
    },
    /// The job cannot go on yet and did nothing (a share chunk whose
    /// organization's lease another job holds): look again after
    /// `retry_after`, without using up a delivery.
    Wait {
        /// Why, for history.
        reason: String,
        /// When to look again.
        retry_after: Duration,
    },
}

/// A pending chunk of an initial sync, for the plan job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingChunk {
    /// The chunk.
    pub chunk_id: i64,
    /// Its resource.
    pub resource: Resource,
    /// Whether a job for it is queued or running now.
    pub queued: bool,
}

/// The effects of a job's end, committed in one transaction with the
/// run's end and the release of its lease.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Effects {
    /// Jobs to send before anything is committed (the plan's chunks). If
    /// the send fails, the job is concluded again as failed (queue).
    pub enqueue: Vec<Job>,
    /// The practice's claim.
    pub claim: ClaimChange,
    /// Mark the practice `auth_failed` with this reason, if the credential
    /// version the job opened is still the practice's (a rotation since
    /// then wins) and the practice still syncs (a person's pause wins).
    pub auth_failed: Option<String>,
    /// Record a successful sync now (staleness is measured from it).
    pub success: bool,
    /// The initial sync is complete: every resource incremental, the
    /// practice active.
    pub finish_initial: bool,
    /// The chunk whose job ends for good: it is no longer queued, so a
    /// later plan enqueues it again if it is still pending.
    pub unqueue_chunk: Option<i64>,
}

/// What to do at the end of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// How the attempt is recorded in history.
    pub run: RunState,
    /// The attempt's error, for history.
    pub error: Option<(ErrorClass, String)>,
    /// What changes with it.
    pub effects: Effects,
    /// What becomes of the message.
    pub settle: Settle,
}

/// The longest delay a message can be sent with (SQS's 15 minutes): a
/// longer `Retry-After` is waited out in steps of it.
pub const MAX_REQUEUE_DELAY: Duration = Duration::from_secs(15 * 60);

/// An outcome that failed only because Ascend asked to wait (`429` with
/// `retry_after`, the longest asked): [`Outcome::Throttled`]. A whole
/// failure of class `rate_limited`, or an incremental cycle whose every
/// resource was rate limited, is; anything else is returned as it was
/// (resources that landed make the cycle partial, not throttled).
#[must_use]
pub fn throttled(outcome: Outcome, retry_after: Option<Duration>) -> Outcome {
    let Some(retry_after) = retry_after else {
        return outcome;
    };
    match &outcome {
        Outcome::Failed {
            class: ErrorClass::RateLimited,
            message,
        } => Outcome::Throttled {
            retry_after,
            message: message.clone(),
        },
        Outcome::Incremental { resources, .. }
            if !resources.is_empty()
                && resources.iter().all(|(_, error)| {
                    error
                        .as_ref()
                        .is_some_and(|(class, _)| *class == ErrorClass::RateLimited)
                }) =>
        {
            let message = resources
                .iter()
                .find_map(|(_, error)| error.as_ref().map(|(_, m)| m.clone()))
                .unwrap_or_default();
            Outcome::Throttled {
                retry_after,
                message,
            }
        }
        _ => outcome,
    }
}

/// A message that is not a job this build can run: to the dead letters
/// with the reason (never retried, never lost).
#[must_use]
pub fn poison(reason: &str) -> Settle {
    Settle::DeadLetter {
        reason: reason.to_owned(),
    }
}

/// Another worker holds the job's lease (a duplicate delivery, or another
/// job of the practice): look again after `after` (the lease's lifetime).
/// The look must not use up the job's deliveries, so when the next one
/// would be its last, a fresh copy replaces it.
#[must_use]
pub fn busy(delivered: Delivered, after: Duration) -> Settle {
    if delivered.receive_count.saturating_add(1) >= delivered.max_receive_count {
        Settle::Requeue { delay: after }
    } else {
        Settle::RetryAfter(after)
    }
}

/// The job could not be started (its lease or its history row could not
/// be written): try again after the backoff; nothing ran.
#[must_use]
pub fn not_started(job: &Job, delivered: Delivered, timing: Timing) -> Settle {
    Settle::RetryAfter(backoff(job, delivered, timing))
}

/// Whether `job` still has work, given its practice (`None`: not
/// registered) at `now`.
#[must_use]
pub fn admit(job: &Job, practice: Option<&PracticeView>, now: OffsetDateTime) -> Admission {
    let skip = |reason: String, release_claim: bool| Admission::Skip {
        reason,
        release_claim,
    };
    let Some(practice) = practice else {
        return skip(
            format!("practice {:?} is not registered", job.practice_id()),
            false,
        );
    };
    if !practice.status.is_syncing() {
        return skip(format!("the practice is {}", practice.status), true);
    }
    match job {
        Job::Incremental { .. } if practice.status == PracticeStatus::InitialSync => skip(
            "the practice's initial sync has not finished".to_owned(),
            true,
        ),
        Job::InitialPlan { .. } | Job::InitialChunk { .. }
            if practice.status == PracticeStatus::Active =>
        {
            skip("the practice's initial sync is complete".to_owned(), true)
        }
        Job::Incremental { meta } if meta.trigger == Trigger::Schedule => {
            // A scheduled job that no longer holds its practice's claim is
            // redundant when another live job holds it (a Force Sync Now
            // replaced it), or when a sync has succeeded since it was
            // enqueued. Otherwise (its claim simply expired in a backlog)
            // it still runs, so a long queue cannot starve a practice.
            let claim = practice.claim.as_ref();
            let ours = claim.is_some_and(|c| c.job_id == meta.job_id);
            let other_live = claim.is_some_and(|c| c.job_id != meta.job_id && c.until > now);
            let covered = practice
                .last_success_at
                .is_some_and(|at| at >= meta.enqueued_at);
            if other_live || (!ours && covered) {
                skip(
                    "another job of the practice holds its claim, or a newer sync covered it"
                        .to_owned(),
                    false,
                )
            } else {
                Admission::Run
            }
        }
        _ => Admission::Run,
    }
}

/// The decision at the end of a job whose step answered `outcome`.
#[must_use]
pub fn conclude(
    job: &Job,
    outcome: Outcome,
    delivered: Delivered,
    timing: Timing,
    now: OffsetDateTime,
) -> Decision {
    let chunk_id = match job {
        Job::InitialChunk { chunk_id, .. } => Some(*chunk_id),
        _ => None,
    };
    // A chunk acts on its initial sync's claim, whoever holds it; the
    // other jobs on their own.
    let holder = if chunk_id.is_some() {
        Holder::Any
    } else {
        Holder::ThisJob
    };
    let done = |run: RunState, error: Option<(ErrorClass, String)>, effects: Effects| Decision {
        run,
        error,
        effects,
        settle: Settle::Delete,
    };
    match outcome {
        Outcome::Skipped {
            reason,
            release_claim,
        } => done(
            RunState::Skipped,
            Some((ErrorClass::Skipped, reason)),
            Effects {
                claim: if release_claim && chunk_id.is_none() {
                    ClaimChange::Release(Holder::ThisJob)
                } else {
                    ClaimChange::Keep
                },
                unqueue_chunk: chunk_id,
                ..Effects::default()
            },
        ),
        Outcome::Failed { class, message } => failed(job, class, message, delivered, timing),
        Outcome::Wait {
            reason,
            retry_after,
        } => Decision {
            run: RunState::Skipped,
            error: Some((ErrorClass::Skipped, reason)),
            effects: Effects::default(),
            settle: Settle::Requeue {
                delay: retry_after.min(MAX_REQUEUE_DELAY),
            },
        },
        Outcome::Throttled {
            retry_after,
            message,
        } => Decision {
            run: RunState::Retrying,
            error: Some((ErrorClass::RateLimited, message)),
            effects: Effects::default(),
            settle: Settle::Requeue {
                delay: retry_after.min(MAX_REQUEUE_DELAY),
            },
        },
        Outcome::Incremental {
            resources,
            quarantined,
        } => {
            let errors: Vec<&(ErrorClass, String)> =
                resources.iter().filter_map(|(_, e)| e.as_ref()).collect();
            if let Some((_, message)) = errors.iter().find(|(c, _)| *c == ErrorClass::Auth) {
                return failed(job, ErrorClass::Auth, message.clone(), delivered, timing);
            }
            // One resource refused (403) is that resource's; every resource
            // refused is the integration not enabled: a person must act.
            if !resources.is_empty()
                && errors.len() == resources.len()
                && errors.iter().all(|(c, _)| *c == ErrorClass::Forbidden)
            {
                let message = format!(
                    "every resource answered 403: the vendor has not enabled the integration \
                     for this organization; a person must act (first: {})",
                    errors[0].1
                );
                return failed(job, ErrorClass::Auth, message, delivered, timing);
            }
            match errors.first() {
                None if quarantined == 0 => done(
                    RunState::Succeeded,
                    None,
                    Effects {
                        claim: ClaimChange::Release(holder),
                        success: true,
                        ..Effects::default()
                    },
                ),
                // Everything landed but records in quarantine: data is
                // missing, so never a plain success. The cycle did its
                // work (the practice's staleness counts the quarantine).
                None => done(
                    RunState::Partial,
                    Some(quarantine_error(quarantined)),
                    Effects {
                        claim: ClaimChange::Release(holder),
                        success: true,
                        ..Effects::default()
                    },
                ),
                Some(&(class, message)) if errors.len() == resources.len() => {
                    failed(job, *class, message.clone(), delivered, timing)
                }
                // Failed resources are asked again by the next cycle; the
                // others landed.
                Some(first) => done(
                    RunState::Partial,
                    Some((*first).clone()),
                    Effects {
                        claim: ClaimChange::Release(holder),
                        success: true,
                        ..Effects::default()
                    },
                ),
            }
        }
        // A write-back job ends its message whatever its items did: each
        // item carries its own retry time, and the scheduler sends the next
        // job when one is due. It is not a sync: staleness is untouched.
        Outcome::Writeback { tally, first_error } => {
            let line = tally.line();
            let (run, error) = match first_error {
                None if tally.clean() => (RunState::Succeeded, None),
                None => (RunState::Partial, Some((ErrorClass::Transient, line))),
                Some((class, message)) => (
                    RunState::Partial,
                    Some((class, format!("{line}; first failure: {message}"))),
                ),
            };
            done(
                run,
                error,
                Effects {
                    claim: ClaimChange::Release(holder),
                    ..Effects::default()
                },
            )
        }
        Outcome::Planned { unplanned, pending } => {
            if let Some((resource, message)) = unplanned.first() {
                // Planned resources keep their plan; the retry plans the
                // rest and only then enqueues the chunks.
                let message = format!(
                    "{} of {} resources could not be planned; first, {resource}: {message}",
                    unplanned.len(),
                    Resource::ALL.len()
                );
                return failed(job, ErrorClass::Plan, message, delivered, timing);
            }
            if pending.is_empty() {
                return done(
                    RunState::Succeeded,
                    None,
                    Effects {
                        claim: ClaimChange::Release(holder),
                        finish_initial: true,
                        ..Effects::default()
                    },
                );
            }
            let enqueue = pending
                .iter()
                .filter(|chunk| !chunk.queued)
                .map(|chunk| Job::chunk(job.meta(), chunk.resource, chunk.chunk_id, now))
                .collect();
            done(
                RunState::Succeeded,
                None,
                Effects {
                    enqueue,
                    claim: ClaimChange::Extend {
                        holder,
                        until: now + timing.initial_claim,
                    },
                    ..Effects::default()
                },
            )
        }
        Outcome::ChunkDone {
            unplanned,
            pending,
            quarantined,
            wake,
        } => {
            let complete = initial_sync_complete(unplanned, pending);
            // Records in quarantine do not hold the initial sync back (the
            // rest of their pages landed, the cursor moved on), but the run
            // is not a plain success.
            let (run, error) = if quarantined == 0 {
                (RunState::Succeeded, None)
            } else {
                (RunState::Partial, Some(quarantine_error(quarantined)))
            };
            done(
                run,
                error,
                Effects {
                    claim: if complete {
                        ClaimChange::Release(holder)
                    } else {
                        ClaimChange::Extend {
                            holder,
                            until: now + timing.initial_claim,
                        }
                    },
                    finish_initial: complete,
                    unqueue_chunk: chunk_id,
                    enqueue: wake,
                    ..Effects::default()
                },
            )
        }
    }
}

/// The error a run that set records aside reports.
fn quarantine_error(quarantined: u64) -> (ErrorClass, String) {
    (
        ErrorClass::Quarantined,
        format!(
            "{quarantined} record(s) could not be read or landed and are in quarantine (tried \
             again every cycle); the rest landed"
        ),
    )
}

/// A job that failed: an auth failure waits for a person (the practice is
/// `auth_failed`, nothing is retried or re-enqueued); anything else is
/// retried after a backoff, and its last delivery is recorded as given up.
fn failed(
    job: &Job,
    class: ErrorClass,
    message: String,
    delivered: Delivered,
    timing: Timing,
) -> Decision {
    let chunk_id = match job {
        Job::InitialChunk { chunk_id, .. } => Some(*chunk_id),
        _ => None,
    };
    if class.needs_a_person() {
        return Decision {
            run: RunState::Failed,
            effects: Effects {
                auth_failed: Some(message.clone()),
                claim: ClaimChange::Release(if chunk_id.is_some() {
                    Holder::Any
                } else {
                    Holder::ThisJob
                }),
                unqueue_chunk: chunk_id,
                ..Effects::default()
            },
            error: Some((class, message)),
            settle: Settle::Delete,
        };
    }
    let last = delivered.is_last();
    Decision {
        run: if last {
            RunState::DeadLettered
        } else {
            RunState::Retrying
        },
        error: Some((class, message)),
        effects: Effects {
            // A job given up frees its practice's claim, so the scheduler
            // tries again when it is due (and the stale alarm watches).
            // A chunk leaves the claim to its initial sync: the next plan
            // enqueues it again.
            claim: if last && chunk_id.is_none() {
                ClaimChange::Release(Holder::ThisJob)
            } else {
                ClaimChange::Keep
            },
            unqueue_chunk: if last { chunk_id } else { None },
            ..Effects::default()
        },
        settle: Settle::RetryAfter(backoff(job, delivered, timing)),
    }
}

fn backoff(job: &Job, delivered: Delivered, timing: Timing) -> Duration {
    schedule::retry_backoff(
        delivered.receive_count,
        job.job_id(),
        timing.first_backoff,
        timing.max_backoff,
    )
}

/// The end of a job cut short by a shutdown: recorded as retrying, its
/// message released at once for another worker; nothing else changes.
#[must_use]
pub fn shut_down() -> Decision {
    Decision {
        run: RunState::Retrying,
        error: Some((
            ErrorClass::Shutdown,
            "the worker shut down; the job was released to another worker".to_owned(),
        )),
        effects: Effects::default(),
        settle: Settle::Release,
    }
}

/// The job's end could not be committed (`end_job` failed): the message is
/// left alone, so it comes back when its visibility runs out and the next
/// attempt is recorded; history never loses an attempt.
#[must_use]
pub fn end_not_recorded() -> Settle {
    Settle::Leave
}

/// Whether a practice's initial sync is complete: every resource planned
/// and no chunk pending.
#[must_use]
pub fn initial_sync_complete(unplanned: usize, pending: usize) -> bool {
    unplanned == 0 && pending == 0
}

#[cfg(test)]
mod tests;
