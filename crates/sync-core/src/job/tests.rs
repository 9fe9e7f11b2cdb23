//! Every rule of a job, table-driven: each row is a situation a worker
//! meets and what must happen, written out by hand.

use std::time::Duration;

use model::{ErrorClass, Job, JobMeta, PracticeStatus, Resource, RunState, Trigger};
use time::OffsetDateTime;
use time::macros::datetime;

use super::*;

const NOW: OffsetDateTime = datetime!(2026-12-04 10:00 UTC);
const ENQUEUED: OffsetDateTime = datetime!(2026-12-04 09:59 UTC);

const TIMING: Timing = Timing {
    first_backoff: Duration::from_secs(15),
    max_backoff: Duration::from_secs(900),
    initial_claim: Duration::from_secs(1800),
};

fn meta(trigger: Trigger) -> JobMeta {
    JobMeta {
        job_id: "job-1".into(),
        practice_id: "p-1".into(),
        trigger,
        enqueued_at: ENQUEUED,
    }
}

fn plan() -> Job {
    Job::InitialPlan {
        meta: meta(Trigger::Schedule),
    }
}

fn chunk() -> Job {
    Job::InitialChunk {
        meta: meta(Trigger::Schedule),
        resource: Resource::Patients,
        chunk_id: 9,
    }
}

fn incremental(trigger: Trigger) -> Job {
    Job::Incremental {
        meta: meta(trigger),
    }
}

fn first() -> Delivered {
    Delivered {
        receive_count: 1,
        max_receive_count: 5,
    }
}

fn last() -> Delivered {
    Delivered {
        receive_count: 5,
        max_receive_count: 5,
    }
}

fn fail(class: ErrorClass) -> Outcome {
    Outcome::Failed {
        class,
        message: format!("{class} happened"),
    }
}

fn resources(errors: &[(Resource, Option<ErrorClass>)]) -> Outcome {
    quarantining(errors, 0)
}

/// An incremental cycle that set `quarantined` records aside.
fn quarantining(errors: &[(Resource, Option<ErrorClass>)], quarantined: u64) -> Outcome {
    Outcome::Incremental {
        resources: errors
            .iter()
            .map(|(r, e)| (*r, e.map(|c| (c, format!("{r}: {c}")))))
            .collect(),
        quarantined,
    }
}

fn chunk_done(unplanned: usize, pending: usize, quarantined: u64) -> Outcome {
    Outcome::ChunkDone {
        unplanned,
        pending,
        quarantined,
        wake: Vec::new(),
    }
}

fn pending(queued: &[bool]) -> Vec<PendingChunk> {
    queued
        .iter()
        .enumerate()
        .map(|(i, &queued)| PendingChunk {
            chunk_id: 100 + i as i64,
            resource: Resource::Visits,
            queued,
        })
        .collect()
}

/// The part of a decision a row states.
#[derive(Debug, PartialEq, Eq)]
struct Expect {
    run: RunState,
    class: Option<ErrorClass>,
    settle: &'static str,
    claim: ClaimChange,
    auth_failed: bool,
    success: bool,
    finish_initial: bool,
    enqueue: usize,
    unqueue: Option<i64>,
}

fn summary(d: &Decision) -> Expect {
    Expect {
        run: d.run,
        class: d.error.as_ref().map(|(c, _)| *c),
        settle: match d.settle {
            Settle::Delete => "delete",
            Settle::RetryAfter(_) => "retry",
            Settle::Requeue { .. } => "requeue",
            Settle::Release => "release",
            Settle::DeadLetter { .. } => "dead-letter",
            Settle::Leave => "leave",
        },
        claim: d.effects.claim,
        auth_failed: d.effects.auth_failed.is_some(),
        success: d.effects.success,
        finish_initial: d.effects.finish_initial,
        enqueue: d.effects.enqueue.len(),
        unqueue: d.effects.unqueue_chunk,
    }
}

const EXTEND_OWN: ClaimChange = ClaimChange::Extend {
    holder: Holder::ThisJob,
    until: datetime!(2026-12-04 10:30 UTC),
};
const EXTEND_ANY: ClaimChange = ClaimChange::Extend {
    holder: Holder::Any,
    until: datetime!(2026-12-04 10:30 UTC),
};
const RELEASE_OWN: ClaimChange = ClaimChange::Release(Holder::ThisJob);
const RELEASE_ANY: ClaimChange = ClaimChange::Release(Holder::Any);
const KEEP: ClaimChange = ClaimChange::Keep;

#[allow(clippy::too_many_arguments)]
fn row(
    run: RunState,
    class: Option<ErrorClass>,
    settle: &'static str,
    claim: ClaimChange,
    auth_failed: bool,
    success: bool,
    finish_initial: bool,
    enqueue: usize,
    unqueue: Option<i64>,
) -> Expect {
    Expect {
        run,
        class,
        settle,
        claim,
        auth_failed,
        success,
        finish_initial,
        enqueue,
        unqueue,
    }
}

#[test]
fn every_outcome_of_every_kind_ends_as_written() {
    use ErrorClass as C;
    use Resource as R;
    use RunState as S;
    let skipped = |release_claim| Outcome::Skipped {
        reason: "the practice is paused".into(),
        release_claim,
    };
    let cases: Vec<(&str, Job, Outcome, Delivered, Expect)> = vec![
        // ---- incremental ----
        (
            "incremental, every resource landed",
            incremental(Trigger::Schedule),
            resources(&[(R::Patients, None), (R::Visits, None)]),
            first(),
            row(
                S::Succeeded,
                None,
                "delete",
                RELEASE_OWN,
                false,
                true,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, one resource failed",
            incremental(Trigger::Schedule),
            resources(&[(R::Patients, Some(C::BadPayload)), (R::Visits, None)]),
            first(),
            row(
                S::Partial,
                Some(C::BadPayload),
                "delete",
                RELEASE_OWN,
                false,
                true,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, every resource landed, records quarantined",
            incremental(Trigger::Schedule),
            quarantining(&[(R::Patients, None), (R::Visits, None)], 2),
            first(),
            row(
                S::Partial,
                Some(C::Quarantined),
                "delete",
                RELEASE_OWN,
                false,
                true,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, one resource failed, records quarantined",
            incremental(Trigger::Schedule),
            quarantining(&[(R::Patients, Some(C::Transient)), (R::Visits, None)], 1),
            first(),
            row(
                S::Partial,
                Some(C::Transient),
                "delete",
                RELEASE_OWN,
                false,
                true,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, every resource failed, records quarantined first",
            incremental(Trigger::Schedule),
            quarantining(
                &[
                    (R::Patients, Some(C::Transient)),
                    (R::Visits, Some(C::Transient)),
                ],
                1,
            ),
            first(),
            row(
                S::Retrying,
                Some(C::Transient),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, every resource failed",
            incremental(Trigger::Schedule),
            resources(&[
                (R::Patients, Some(C::Transient)),
                (R::Visits, Some(C::Transient)),
            ]),
            first(),
            row(
                S::Retrying,
                Some(C::Transient),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, every resource failed, last delivery",
            incremental(Trigger::Schedule),
            resources(&[
                (R::Patients, Some(C::Transient)),
                (R::Visits, Some(C::Transient)),
            ]),
            last(),
            row(
                S::DeadLettered,
                Some(C::Transient),
                "retry",
                RELEASE_OWN,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, one resource refused the credentials",
            incremental(Trigger::Force),
            resources(&[(R::Patients, None), (R::Visits, Some(C::Auth))]),
            first(),
            row(
                S::Failed,
                Some(C::Auth),
                "delete",
                RELEASE_OWN,
                true,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, one resource not allowed (403)",
            incremental(Trigger::Schedule),
            resources(&[(R::Patients, None), (R::Visits, Some(C::Forbidden))]),
            first(),
            row(
                S::Partial,
                Some(C::Forbidden),
                "delete",
                RELEASE_OWN,
                false,
                true,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, every resource not allowed (403): not enabled",
            incremental(Trigger::Schedule),
            resources(&[
                (R::Patients, Some(C::Forbidden)),
                (R::Visits, Some(C::Forbidden)),
            ]),
            first(),
            row(
                S::Failed,
                Some(C::Auth),
                "delete",
                RELEASE_OWN,
                true,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, the store failed",
            incremental(Trigger::Schedule),
            fail(C::Store),
            first(),
            row(
                S::Retrying,
                Some(C::Store),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, the credentials would not open",
            incremental(Trigger::Schedule),
            fail(C::Auth),
            last(),
            row(
                S::Failed,
                Some(C::Auth),
                "delete",
                RELEASE_OWN,
                true,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, skipped for a paused practice",
            incremental(Trigger::Schedule),
            skipped(true),
            first(),
            row(
                S::Skipped,
                Some(C::Skipped),
                "delete",
                RELEASE_OWN,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "incremental, skipped as covered by a newer sync",
            incremental(Trigger::Schedule),
            skipped(false),
            first(),
            row(
                S::Skipped,
                Some(C::Skipped),
                "delete",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        // ---- plan ----
        (
            "plan, chunks pending, one already queued",
            plan(),
            Outcome::Planned {
                unplanned: vec![],
                pending: pending(&[false, true, false]),
            },
            first(),
            row(
                S::Succeeded,
                None,
                "delete",
                EXTEND_OWN,
                false,
                false,
                false,
                2,
                None,
            ),
        ),
        (
            "plan, every pending chunk already queued (a re-plan)",
            plan(),
            Outcome::Planned {
                unplanned: vec![],
                pending: pending(&[true, true]),
            },
            first(),
            row(
                S::Succeeded,
                None,
                "delete",
                EXTEND_OWN,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "plan, nothing pending: the initial sync is complete",
            plan(),
            Outcome::Planned {
                unplanned: vec![],
                pending: vec![],
            },
            first(),
            row(
                S::Succeeded,
                None,
                "delete",
                RELEASE_OWN,
                false,
                false,
                true,
                0,
                None,
            ),
        ),
        (
            "plan, a resource could not be planned",
            plan(),
            Outcome::Planned {
                unplanned: vec![(R::Visits, "503".into())],
                pending: pending(&[false]),
            },
            first(),
            row(
                S::Retrying,
                Some(C::Plan),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "plan, a resource could not be planned, last delivery",
            plan(),
            Outcome::Planned {
                unplanned: vec![(R::Visits, "503".into())],
                pending: vec![],
            },
            last(),
            row(
                S::DeadLettered,
                Some(C::Plan),
                "retry",
                RELEASE_OWN,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "plan, the token endpoint refused the credentials",
            plan(),
            fail(C::Auth),
            first(),
            row(
                S::Failed,
                Some(C::Auth),
                "delete",
                RELEASE_OWN,
                true,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "plan, the chunks could not be sent",
            plan(),
            fail(C::Queue),
            first(),
            row(
                S::Retrying,
                Some(C::Queue),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "plan, skipped: the initial sync is complete",
            plan(),
            skipped(true),
            first(),
            row(
                S::Skipped,
                Some(C::Skipped),
                "delete",
                RELEASE_OWN,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        // ---- chunk ----
        (
            "chunk done, others pending",
            chunk(),
            chunk_done(0, 3, 0),
            first(),
            row(
                S::Succeeded,
                None,
                "delete",
                EXTEND_ANY,
                false,
                false,
                false,
                0,
                Some(9),
            ),
        ),
        (
            "chunk done, resources still unplanned",
            chunk(),
            chunk_done(1, 0, 0),
            first(),
            row(
                S::Succeeded,
                None,
                "delete",
                EXTEND_ANY,
                false,
                false,
                false,
                0,
                Some(9),
            ),
        ),
        (
            "the last chunk done: the initial sync is complete",
            chunk(),
            chunk_done(0, 0, 0),
            first(),
            row(
                S::Succeeded,
                None,
                "delete",
                RELEASE_ANY,
                false,
                false,
                true,
                0,
                Some(9),
            ),
        ),
        (
            "chunk done with records quarantined, others pending",
            chunk(),
            chunk_done(0, 3, 4),
            first(),
            row(
                S::Partial,
                Some(C::Quarantined),
                "delete",
                EXTEND_ANY,
                false,
                false,
                false,
                0,
                Some(9),
            ),
        ),
        (
            "the last chunk done with records quarantined: the initial sync is complete",
            chunk(),
            chunk_done(0, 0, 4),
            first(),
            row(
                S::Partial,
                Some(C::Quarantined),
                "delete",
                RELEASE_ANY,
                false,
                false,
                true,
                0,
                Some(9),
            ),
        ),
        (
            "chunk, a page failed",
            chunk(),
            fail(C::BadPayload),
            first(),
            row(
                S::Retrying,
                Some(C::BadPayload),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "chunk, a page failed, last delivery",
            chunk(),
            fail(C::BadPayload),
            last(),
            row(
                S::DeadLettered,
                Some(C::BadPayload),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                Some(9),
            ),
        ),
        (
            "chunk, the credentials were refused",
            chunk(),
            fail(C::Auth),
            first(),
            row(
                S::Failed,
                Some(C::Auth),
                "delete",
                RELEASE_ANY,
                true,
                false,
                false,
                0,
                Some(9),
            ),
        ),
        (
            "chunk, timed out",
            chunk(),
            fail(C::Timeout),
            first(),
            row(
                S::Retrying,
                Some(C::Timeout),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "chunk, lease lost",
            chunk(),
            fail(C::Lease),
            first(),
            row(
                S::Retrying,
                Some(C::Lease),
                "retry",
                KEEP,
                false,
                false,
                false,
                0,
                None,
            ),
        ),
        (
            "chunk, skipped: its practice was paused",
            chunk(),
            skipped(true),
            first(),
            row(
                S::Skipped,
                Some(C::Skipped),
                "delete",
                KEEP,
                false,
                false,
                false,
                0,
                Some(9),
            ),
        ),
    ];
    for (what, job, outcome, delivered, expect) in cases {
        let decision = conclude(&job, outcome, delivered, TIMING, NOW);
        assert_eq!(summary(&decision), expect, "{what}");
    }
}

#[test]
fn a_long_retry_after_gives_the_message_back_without_using_a_delivery() {
    let hour = Duration::from_secs(3600);
    for (what, job) in [
        ("chunk", chunk()),
        ("incremental", incremental(Trigger::Schedule)),
    ] {
        let outcome = throttled(fail(ErrorClass::RateLimited), Some(hour));
        let decision = conclude(&job, outcome, last(), TIMING, NOW);
        assert_eq!(decision.run, RunState::Retrying, "{what}");
        assert_eq!(
            decision.settle,
            Settle::Requeue {
                delay: MAX_REQUEUE_DELAY
            },
            "{what}: even on its last delivery, never dead-lettered"
        );
        assert_eq!(decision.effects, Effects::default(), "{what}");
    }
    // Every resource throttled: the cycle waits.
    let all = resources(&[
        (Resource::Patients, Some(ErrorClass::RateLimited)),
        (Resource::Visits, Some(ErrorClass::RateLimited)),
    ]);
    assert!(matches!(
        throttled(all, Some(hour)),
        Outcome::Throttled { .. }
    ));
    // Some landed: partial, as before; no wait asked: as before.
    let some = resources(&[
        (Resource::Patients, None),
        (Resource::Visits, Some(ErrorClass::RateLimited)),
    ]);
    assert!(matches!(
        throttled(some, Some(hour)),
        Outcome::Incremental { .. }
    ));
    assert!(matches!(
        throttled(fail(ErrorClass::RateLimited), None),
        Outcome::Failed { .. }
    ));
    assert!(matches!(
        throttled(fail(ErrorClass::Transient), Some(hour)),
        Outcome::Failed { .. }
    ));
    let short = conclude(
        &chunk(),
        throttled(
            fail(ErrorClass::RateLimited),
            Some(Duration::from_secs(200)),
        ),
        first(),
        TIMING,
        NOW,
    );
    assert_eq!(
        short.settle,
        Settle::Requeue {
            delay: Duration::from_secs(200)
        }
    );
}

#[test]
fn a_plan_enqueues_exactly_the_chunks_not_queued_on_the_standard_lane() {
    let forced = Job::InitialPlan {
        meta: meta(Trigger::Force),
    };
    let decision = conclude(
        &forced,
        Outcome::Planned {
            unplanned: vec![],
            pending: pending(&[false, true, false]),
        },
        first(),
        TIMING,
        NOW,
    );
    let sent: Vec<(String, model::Lane)> = decision
        .effects
        .enqueue
        .iter()
        .map(|j| (j.job_id().to_owned(), j.lane()))
        .collect();
    assert_eq!(
        sent,
        [
            ("job-1-c100".to_owned(), model::Lane::Standard),
            ("job-1-c102".to_owned(), model::Lane::Standard),
        ]
    );
}

#[test]
fn retries_back_off_and_auth_failures_carry_their_reason() {
    let retry = |n| match conclude(
        &chunk(),
        fail(ErrorClass::Transient),
        Delivered {
            receive_count: n,
            max_receive_count: 5,
        },
        TIMING,
        NOW,
    )
    .settle
    {
        Settle::RetryAfter(after) => after,
        other => panic!("{other:?}"),
    };
    assert!(retry(1) >= Duration::from_secs(15) && retry(1) < Duration::from_secs(20));
    assert!(retry(3) >= Duration::from_secs(60));
    assert!(retry(20) <= Duration::from_secs(900));
    let decision = conclude(&plan(), fail(ErrorClass::Auth), first(), TIMING, NOW);
    assert_eq!(
        decision.effects.auth_failed.as_deref(),
        Some("auth happened")
    );
}

#[test]
fn a_busy_lease_never_uses_up_the_last_delivery() {
    let after = Duration::from_secs(120);
    let at = |n| {
        busy(
            Delivered {
                receive_count: n,
                max_receive_count: 5,
            },
            after,
        )
    };
    assert_eq!(at(1), Settle::RetryAfter(after));
    assert_eq!(at(3), Settle::RetryAfter(after));
    assert_eq!(at(4), Settle::Requeue { delay: after });
    assert_eq!(at(5), Settle::Requeue { delay: after });
    assert_eq!(
        not_started(&chunk(), first(), TIMING),
        Settle::RetryAfter(schedule::retry_backoff(
            1,
            "job-1",
            TIMING.first_backoff,
            TIMING.max_backoff
        ))
    );
    assert_eq!(
        poison("bad"),
        Settle::DeadLetter {
            reason: "bad".into()
        }
    );
    assert_eq!(end_not_recorded(), Settle::Leave);
    let shutdown = shut_down();
    assert_eq!(shutdown.settle, Settle::Release);
    assert_eq!(shutdown.run, RunState::Retrying);
    assert_eq!(shutdown.effects, Effects::default());
}

fn view(status: PracticeStatus, claim: Option<(&str, OffsetDateTime)>) -> PracticeView {
    PracticeView {
        status,
        last_success_at: None,
        claim: claim.map(|(job_id, until)| Claim {
            job_id: job_id.into(),
            until,
        }),
    }
}

#[test]
fn admission_follows_the_practice_and_its_claim() {
    use PracticeStatus as P;
    let later = datetime!(2026-12-04 10:30 UTC);
    let earlier = datetime!(2026-12-04 09:30 UTC);
    let run = Admission::Run;
    let skip = |release_claim| Admission::Skip {
        reason: String::new(),
        release_claim,
    };
    let mut covered = view(P::Active, None);
    covered.last_success_at = Some(NOW);
    let cases: Vec<(&str, Job, Option<PracticeView>, Admission)> = vec![
        (
            "unknown practice",
            incremental(Trigger::Schedule),
            None,
            skip(false),
        ),
        (
            "paused",
            incremental(Trigger::Schedule),
            Some(view(P::Paused, None)),
            skip(true),
        ),
        ("removed", chunk(), Some(view(P::Removed, None)), skip(true)),
        (
            "auth failed",
            plan(),
            Some(view(P::AuthFailed, None)),
            skip(true),
        ),
        (
            "incremental during the initial sync",
            incremental(Trigger::Force),
            Some(view(P::InitialSync, None)),
            skip(true),
        ),
        (
            "plan after the initial sync",
            plan(),
            Some(view(P::Active, None)),
            skip(true),
        ),
        (
            "chunk after the initial sync",
            chunk(),
            Some(view(P::Active, None)),
            skip(true),
        ),
        (
            "plan during the initial sync",
            plan(),
            Some(view(P::InitialSync, None)),
            run.clone(),
        ),
        (
            "chunk during the initial sync",
            chunk(),
            Some(view(P::InitialSync, Some(("other", later)))),
            run.clone(),
        ),
        (
            "scheduled, holding its claim",
            incremental(Trigger::Schedule),
            Some(view(P::Active, Some(("job-1", later)))),
            run.clone(),
        ),
        (
            "scheduled, its claim expired in a backlog",
            incremental(Trigger::Schedule),
            Some(view(P::Active, Some(("job-1", earlier)))),
            run.clone(),
        ),
        (
            "scheduled, another job's live claim",
            incremental(Trigger::Schedule),
            Some(view(P::Active, Some(("force-1", later)))),
            skip(false),
        ),
        (
            "scheduled, no claim, a newer sync covered it",
            incremental(Trigger::Schedule),
            Some(covered.clone()),
            skip(false),
        ),
        (
            "scheduled, no claim, nothing since",
            incremental(Trigger::Schedule),
            Some(view(P::Active, None)),
            run.clone(),
        ),
        (
            "forced, another job's live claim",
            incremental(Trigger::Force),
            Some(view(P::Active, Some(("other", later)))),
            run.clone(),
        ),
        (
            "forced, covered",
            incremental(Trigger::Force),
            Some(covered),
            run,
        ),
    ];
    for (what, job, practice, expect) in cases {
        let got = admit(&job, practice.as_ref(), NOW);
        let same = match (&got, &expect) {
            (Admission::Run, Admission::Run) => true,
            (
                Admission::Skip {
                    release_claim: a,
                    reason,
                },
                Admission::Skip {
                    release_claim: b, ..
                },
            ) => a == b && !reason.is_empty(),
            _ => false,
        };
        assert!(same, "{what}: {got:?}, expected {expect:?}");
    }
}

#[test]
fn a_run_that_quarantined_records_says_how_many_and_is_never_a_plain_success() {
    let cycle = conclude(
        &incremental(Trigger::Schedule),
        quarantining(&[(Resource::Patients, None)], 3),
        first(),
        TIMING,
        NOW,
    );
    assert_eq!(cycle.run, RunState::Partial);
    let (class, message) = cycle.error.expect("an error for history");
    assert_eq!(class, ErrorClass::Quarantined);
    assert!(message.starts_with("3 record(s)"), "{message}");
    let chunk = conclude(&chunk(), chunk_done(0, 0, 1), first(), TIMING, NOW);
    assert_ne!(chunk.run, RunState::Succeeded);
    assert!(
        chunk.effects.finish_initial,
        "quarantine never holds the initial sync back"
    );
}

#[test]
fn a_share_chunk_that_must_wait_comes_back_without_using_a_delivery() {
    let decision = conclude(
        &chunk(),
        Outcome::Wait {
            reason: "the organization's lease is held".into(),
            retry_after: Duration::from_secs(20),
        },
        last(),
        TIMING,
        NOW,
    );
    assert_eq!(decision.run, RunState::Skipped);
    assert_eq!(
        decision.settle,
        Settle::Requeue {
            delay: Duration::from_secs(20)
        }
    );
    // Nothing changes: the chunk stays queued, the claim is kept.
    assert_eq!(decision.effects, Effects::default());
}

#[test]
fn a_chunk_that_finished_a_shared_pull_wakes_the_waiting_practices() {
    let waiting = Job::chunk(
        &JobMeta {
            practice_id: "p-2".into(),
            ..meta(Trigger::Schedule)
        },
        Resource::Patients,
        44,
        NOW,
    );
    let decision = conclude(
        &chunk(),
        Outcome::ChunkDone {
            unplanned: 0,
            pending: 3,
            quarantined: 0,
            wake: vec![waiting.clone()],
        },
        first(),
        TIMING,
        NOW,
    );
    assert_eq!(decision.run, RunState::Succeeded);
    assert_eq!(decision.effects.enqueue, vec![waiting]);
    assert_eq!(decision.settle, Settle::Delete);
}

fn writeback() -> Job {
    Job::Writeback {
        meta: meta(Trigger::Schedule),
    }
}

#[test]
fn a_writeback_job_ends_its_message_and_its_claim_whatever_its_items_did() {
    use crate::writeback::Tally;
    let clean = Tally {
        sent: 3,
        found: 1,
        blocked: 1,
        ..Tally::default()
    };
    let retrying = Tally {
        sent: 1,
        retrying: 2,
        ..Tally::default()
    };
    let rows = [
        (clean, None, RunState::Succeeded),
        (
            retrying,
            Some((ErrorClass::Transient, "503".to_owned())),
            RunState::Partial,
        ),
        (
            Tally {
                dead: 1,
                ..Tally::default()
            },
            Some((ErrorClass::Rejected, "400".to_owned())),
            RunState::Partial,
        ),
    ];
    for (tally, first_error, run) in rows {
        let d = conclude(
            &writeback(),
            Outcome::Writeback {
                tally,
                first_error: first_error.clone(),
            },
            first(),
            TIMING,
            NOW,
        );
        assert_eq!(d.run, run, "{tally:?}");
        assert_eq!(d.settle, Settle::Delete, "{tally:?}");
        assert_eq!(d.effects.claim, ClaimChange::Release(Holder::ThisJob));
        // Write-back is not a sync: it never counts as one for staleness.
        assert!(!d.effects.success);
        if let Some((class, _)) = first_error {
            let (c, message) = d.error.expect("a partial run says why");
            assert_eq!(c, class);
            assert!(message.contains(&tally.line()), "{message}");
        }
    }
}

#[test]
fn a_writeback_job_of_a_practice_that_no_longer_syncs_is_skipped() {
    for status in [
        PracticeStatus::Paused,
        PracticeStatus::Removed,
        PracticeStatus::AuthFailed,
    ] {
        let view = PracticeView {
            status,
            last_success_at: None,
            claim: None,
        };
        assert!(
            matches!(
                admit(&writeback(), Some(&view), NOW),
                Admission::Skip { .. }
            ),
            "{status}"
        );
    }
    let view = PracticeView {
        status: PracticeStatus::InitialSync,
        last_success_at: None,
        claim: None,
    };
    assert_eq!(admit(&writeback(), Some(&view), NOW), Admission::Run);
}
