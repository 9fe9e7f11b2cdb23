//! The job runtime: scheduling claims, Force Sync Now, leases, sync
//! history and the overview, on both backends; races and query plans on
//! Postgres.

use std::collections::HashSet;

use time::macros::datetime;
use time::{Duration, OffsetDateTime};

use super::new_practice;
use crate::store::Inner;
use crate::{
    ForceDecision, HistoryQuery, MAX_ERROR_CHARS, NewRun, PracticeStatus, ResourceCounts, RunEnd,
    RunState, Store, StoreError, practice_lease_key,
};

on_both_backends!(
    claims_take_due_practices_once_and_keep_their_phase,
    claims_take_the_oldest_due_first_up_to_the_limit,
    claims_keep_the_phase_of_sub_second_due_times,
    only_the_claiming_job_releases_or_extends_its_claim,
    next_sync_time_is_set_and_unknown_practices_are_named,
    force_enqueues_folds_or_refuses,
    leases_exclude_other_holders_until_they_expire,
    history_records_runs_and_filters_them,
    finishing_an_unknown_run_is_an_error_and_messages_are_capped,
    dead_lettering_marks_the_latest_run_or_records_one,
    history_outlives_its_practice,
    overview_shows_schedule_claim_and_latest_run,
);

const NOW: OffsetDateTime = datetime!(2026-03-04 10:00 UTC);
const CLAIM: Duration = Duration::minutes(10);

async fn register(store: &Store, id: &str, status: PracticeStatus, next: Option<OffsetDateTime>) {
    store
        .upsert_practice(&new_practice(id))
        .await
        .expect("practice registers");
    if status != PracticeStatus::InitialSync {
        store
            .set_practice_status(id, status, None)
            .await
            .expect("status set");
    }
    store
        .set_next_sync_at(id, next)
        .await
        .expect("next sync time set");
}

fn ids(due: &[crate::DuePractice]) -> Vec<&str> {
    let mut ids: Vec<&str> = due.iter().map(|d| d.practice_id.as_str()).collect();
    ids.sort();
    ids
}

async fn claims_take_due_practices_once_and_keep_their_phase(store: Store) {
    // Interval 15 minutes for every practice.
    register(&store, "new", PracticeStatus::Active, None).await;
    register(
        &store,
        "late-a-minute",
        PracticeStatus::Active,
        Some(NOW - Duration::minutes(1)),
    )
    .await;
    register(
        &store,
        "hours-behind",
        PracticeStatus::InitialSync,
        Some(NOW - Duration::hours(3)),
    )
    .await;
    register(&store, "paused", PracticeStatus::Paused, None).await;
    register(&store, "removed", PracticeStatus::Removed, None).await;
    register(&store, "auth", PracticeStatus::AuthFailed, None).await;
    register(
        &store,
        "not-yet",
        PracticeStatus::Active,
        Some(NOW + Duration::minutes(5)),
    )
    .await;

    let due = store
        .claim_due_practices(NOW, 100, CLAIM, "tick-1")
        .await
        .expect("claims");
    assert_eq!(ids(&due), ["hours-behind", "late-a-minute", "new"]);
    for d in &due {
        assert_eq!(d.job_id, format!("tick-1:{}", d.practice_id));
        assert_eq!(d.sync_interval_minutes, 15);
        assert_eq!(
            store.inflight_job(&d.practice_id).await.expect("reads"),
            Some((d.job_id.clone(), NOW + CLAIM))
        );
    }
    let by_id = |id: &str| {
        due.iter()
            .find(|d| d.practice_id == id)
            .expect("claimed")
            .clone()
    };
    assert_eq!(by_id("hours-behind").status, PracticeStatus::InitialSync);
    assert_eq!(by_id("new").status, PracticeStatus::Active);
    // Phase kept: one interval after the previous due time.
    assert_eq!(
        by_id("late-a-minute").next_sync_at,
        NOW + Duration::minutes(14)
    );
    // NULL, or more than an interval behind: restarts from now.
    assert_eq!(by_id("new").next_sync_at, NOW + Duration::minutes(15));
    assert_eq!(
        by_id("hours-behind").next_sync_at,
        NOW + Duration::minutes(15)
    );

    // A second tick at the same time gets nothing: the claims are live.
    let again = store
        .claim_due_practices(NOW, 100, CLAIM, "tick-2")
        .await
        .expect("claims");
    assert_eq!(ids(&again), Vec::<&str>::new());

    // At "late-a-minute"'s next due time its claim has expired and it is
    // due again; "not-yet" (due at +5) too; the others are due at +15.
    let later = NOW + Duration::minutes(14);
    let next = store
        .claim_due_practices(later, 100, CLAIM, "tick-3")
        .await
        .expect("claims");
    assert_eq!(ids(&next), ["late-a-minute", "not-yet"]);
    assert_eq!(
        next.iter()
            .find(|d| d.practice_id == "late-a-minute")
            .expect("claimed")
            .next_sync_at,
        NOW + Duration::minutes(29)
    );
}

async fn claims_take_the_oldest_due_first_up_to_the_limit(store: Store) {
    for (id, minutes_late) in [("p1", 1), ("p2", 7), ("p3", 3), ("p4", 9)] {
        register(
            &store,
            id,
            PracticeStatus::Active,
            Some(NOW - Duration::minutes(minutes_late)),
        )
        .await;
    }
    let first = store
        .claim_due_practices(NOW, 2, CLAIM, "t1")
        .await
        .expect("claims");
    assert_eq!(ids(&first), ["p2", "p4"]);
    let second = store
        .claim_due_practices(NOW, 2, CLAIM, "t2")
        .await
        .expect("claims");
    assert_eq!(ids(&second), ["p1", "p3"]);
    let third = store
        .claim_due_practices(NOW, 2, CLAIM, "t3")
        .await
        .expect("claims");
    assert!(third.is_empty());
}

/// SQLite computes the next due time with its date functions (to the
/// millisecond): the phase survives real clock readings on both backends.
async fn claims_keep_the_phase_of_sub_second_due_times(store: Store) {
    let due_at = datetime!(2026-03-04 09:59:58.123456 UTC);
    let now = datetime!(2026-03-04 10:00:00.654321 UTC);
    register(&store, "p", PracticeStatus::Active, Some(due_at)).await;
    let due = store
        .claim_due_practices(now, 10, CLAIM, "t")
        .await
        .expect("claims");
    assert_eq!(ids(&due), ["p"]);
    let next = due[0].next_sync_at;
    let want = due_at + Duration::minutes(15);
    assert!(
        (next - want).abs() < Duration::milliseconds(1),
        "next due {next}, want {want}"
    );
    assert_eq!(
        store.inflight_job("p").await.expect("reads"),
        Some(("t:p".to_owned(), now + CLAIM))
    );
    // Not due again until that time.
    let early = store
        .claim_due_practices(want - Duration::milliseconds(5), 10, CLAIM, "t2")
        .await
        .expect("claims");
    assert!(early.is_empty(), "{early:?}");
}

async fn only_the_claiming_job_releases_or_extends_its_claim(store: Store) {
    register(&store, "p", PracticeStatus::Active, None).await;
    let due = store
        .claim_due_practices(NOW, 10, CLAIM, "tick")
        .await
        .expect("claims");
    let job = due[0].job_id.clone();

    assert!(
        !store
            .extend_inflight("p", "other-job", NOW + Duration::hours(1))
            .await
            .expect("runs")
    );
    assert!(
        !store
            .release_inflight("p", "other-job")
            .await
            .expect("runs")
    );
    assert_eq!(
        store.inflight_job("p").await.expect("reads"),
        Some((job.clone(), NOW + CLAIM))
    );

    let until = NOW + Duration::hours(2);
    assert!(
        store
            .extend_inflight("p", &job, until)
            .await
            .expect("extends")
    );
    // Never shortened.
    assert!(
        store
            .extend_inflight("p", &job, NOW + Duration::minutes(1))
            .await
            .expect("extends")
    );
    assert_eq!(
        store.inflight_job("p").await.expect("reads"),
        Some((job.clone(), until))
    );
    // While extended, a later tick does not claim it, even when due.
    store.set_next_sync_at("p", None).await.expect("sets next");
    let tick = store
        .claim_due_practices(NOW + Duration::hours(1), 10, CLAIM, "later")
        .await
        .expect("claims");
    assert!(tick.is_empty(), "an extended claim is live: {tick:?}");

    assert!(store.release_inflight("p", &job).await.expect("releases"));
    assert_eq!(store.inflight_job("p").await.expect("reads"), None);
    // Released twice: nothing to do.
    assert!(!store.release_inflight("p", &job).await.expect("runs"));
    // Released: due at once.
    let tick = store
        .claim_due_practices(NOW + Duration::hours(1), 10, CLAIM, "later")
        .await
        .expect("claims");
    assert_eq!(ids(&tick), ["p"]);
}

async fn next_sync_time_is_set_and_unknown_practices_are_named(store: Store) {
    register(&store, "p", PracticeStatus::Active, None).await;
    store
        .set_next_sync_at("p", Some(NOW + Duration::minutes(3)))
        .await
        .expect("sets");
    assert!(
        store
            .claim_due_practices(NOW, 10, CLAIM, "t")
            .await
            .expect("claims")
            .is_empty()
    );
    let due = store
        .claim_due_practices(NOW + Duration::minutes(3), 10, CLAIM, "t")
        .await
        .expect("claims");
    assert_eq!(ids(&due), ["p"]);

    let err = store
        .set_next_sync_at("nobody", None)
        .await
        .expect_err("unknown practice");
    assert!(
        matches!(err, StoreError::UnknownPractice { ref practice_id } if practice_id == "nobody")
    );
    let err = store.inflight_job("nobody").await.expect_err("unknown");
    assert!(matches!(err, StoreError::UnknownPractice { .. }));
    let err = store
        .request_force("nobody", NOW, "force-1", CLAIM)
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::UnknownPractice { .. }));
}

async fn force_enqueues_folds_or_refuses(store: Store) {
    register(&store, "p", PracticeStatus::Active, None).await;
    for status in [
        PracticeStatus::Paused,
        PracticeStatus::Removed,
        PracticeStatus::AuthFailed,
    ] {
        register(&store, status.as_str(), status, None).await;
        assert_eq!(
            store
                .request_force(status.as_str(), NOW, "force-x", CLAIM)
                .await
                .expect("decides"),
            ForceDecision::NotSyncable { status }
        );
        assert_eq!(
            store.inflight_job(status.as_str()).await.expect("reads"),
            None
        );
    }

    // A scheduled job is queued (claimed, not running): the forced job
    // replaces its claim, and the stale job cannot clear the new claim.
    let scheduled = store
        .claim_due_practices(NOW, 10, CLAIM, "tick")
        .await
        .expect("claims")
        .remove(0)
        .job_id;
    let at = NOW + Duration::minutes(1);
    assert_eq!(
        store
            .request_force("p", at, "force-1", CLAIM)
            .await
            .expect("decides"),
        ForceDecision::Enqueue {
            job_id: "force-1".to_owned()
        }
    );
    assert_eq!(
        store.inflight_job("p").await.expect("reads"),
        Some(("force-1".to_owned(), at + CLAIM))
    );
    // A second click while the forced job is queued folds into it.
    assert_eq!(
        store
            .request_force("p", at, "force-1b", CLAIM)
            .await
            .expect("decides"),
        ForceDecision::AlreadyQueued {
            job_id: "force-1".to_owned()
        }
    );
    assert!(!store.release_inflight("p", &scheduled).await.expect("runs"));
    assert_eq!(
        store.inflight_job("p").await.expect("reads").map(|c| c.0),
        Some("force-1".to_owned())
    );

    // A worker runs the practice: a second Force Sync Now folds into it.
    let started = NOW + Duration::minutes(2);
    assert!(
        store
            .acquire_lease(
                &practice_lease_key("p"),
                "worker-1",
                Duration::minutes(5),
                started
            )
            .await
            .expect("leases")
    );
    assert_eq!(
        store
            .request_force("p", started + Duration::minutes(1), "force-2", CLAIM)
            .await
            .expect("decides"),
        ForceDecision::AlreadyRunning { since: started }
    );
    assert_eq!(
        store.inflight_job("p").await.expect("reads").map(|c| c.0),
        Some("force-1".to_owned()),
        "folding does not touch the running job's claim"
    );

    // The worker died; its lease expired. Its job is still claimed (the
    // queue delivers it again): the request folds into it.
    let after = started + Duration::minutes(6);
    assert_eq!(
        store
            .request_force("p", after, "force-3", CLAIM)
            .await
            .expect("decides"),
        ForceDecision::AlreadyQueued {
            job_id: "force-1".to_owned()
        }
    );
    // Once that claim has expired too (the job was lost), it enqueues.
    let lost = at + CLAIM + Duration::seconds(1);
    assert_eq!(
        store
            .request_force("p", lost, "force-4", CLAIM)
            .await
            .expect("decides"),
        ForceDecision::Enqueue {
            job_id: "force-4".to_owned()
        }
    );
}

async fn leases_exclude_other_holders_until_they_expire(store: Store) {
    let key = "chunk:42";
    let ttl = Duration::minutes(5);
    assert!(store.acquire_lease(key, "a", ttl, NOW).await.expect("runs"));
    assert!(
        !store
            .acquire_lease(key, "b", ttl, NOW + Duration::minutes(1))
            .await
            .expect("runs")
    );
    // Already ours: extended.
    assert!(
        store
            .acquire_lease(key, "a", ttl, NOW + Duration::minutes(3))
            .await
            .expect("runs")
    );
    assert_eq!(
        store
            .lease_holder(key, NOW + Duration::minutes(6))
            .await
            .expect("reads"),
        Some(("a".to_owned(), NOW + Duration::minutes(8)))
    );
    assert!(
        !store
            .acquire_lease(key, "b", ttl, NOW + Duration::minutes(7))
            .await
            .expect("runs")
    );
    assert!(
        store
            .renew_lease(key, "a", ttl, NOW + Duration::minutes(7))
            .await
            .expect("runs")
    );

    // Expired: taken over.
    let takeover = NOW + Duration::minutes(13);
    assert!(
        store
            .acquire_lease(key, "b", ttl, takeover)
            .await
            .expect("runs")
    );
    // The stale holder can neither renew nor release the new lease.
    assert!(
        !store
            .renew_lease(key, "a", ttl, takeover)
            .await
            .expect("runs")
    );
    store.release_lease(key, "a").await.expect("runs");
    assert_eq!(
        store.lease_holder(key, takeover).await.expect("reads"),
        Some(("b".to_owned(), takeover + ttl))
    );
    assert!(
        !store
            .acquire_lease(key, "c", ttl, takeover)
            .await
            .expect("runs")
    );
    // Released by its holder: free at once.
    store.release_lease(key, "b").await.expect("releases");
    assert_eq!(
        store.lease_holder(key, takeover).await.expect("reads"),
        None
    );
    assert!(
        store
            .acquire_lease(key, "c", ttl, takeover)
            .await
            .expect("runs")
    );
    // Other keys are independent.
    assert!(
        store
            .acquire_lease("chunk:43", "a", ttl, takeover)
            .await
            .expect("runs")
    );
}

fn new_run(run_id: &str, job_id: &str, practice: &str, started_at: OffsetDateTime) -> NewRun {
    NewRun {
        run_id: run_id.to_owned(),
        job_id: job_id.to_owned(),
        practice_id: practice.to_owned(),
        kind: "incremental".to_owned(),
        trigger: "schedule".to_owned(),
        attempt: 1,
        worker: Some("worker-1".to_owned()),
        started_at,
    }
}

fn end(status: RunState, ended_at: OffsetDateTime) -> RunEnd {
    let failed = status.is_failure();
    RunEnd {
        status,
        ended_at,
        resources: vec![
            ResourceCounts {
                resource: "patients".to_owned(),
                fetched: 10,
                written: 9,
                quarantined: 1,
                deletes_captured: 0,
                error_class: None,
                error: None,
                ..Default::default()
            },
            ResourceCounts {
                resource: "appointments".to_owned(),
                fetched: 0,
                written: 0,
                quarantined: 0,
                deletes_captured: 0,
                error_class: failed.then(|| "transient".to_owned()),
                error: failed.then(|| "503 from Ascend\nretry later".to_owned()),
                ..Default::default()
            },
        ],
        fetched: 10,
        written: 9,
        api_calls: 4,
        bytes: 12_345,
        error_class: failed.then(|| "transient".to_owned()),
        error_message: failed.then(|| "appointments: 503 from Ascend".to_owned()),
    }
}

async fn record(
    store: &Store,
    run_id: &str,
    practice: &str,
    started_at: OffsetDateTime,
    status: RunState,
) {
    store
        .start_run(&new_run(
            run_id,
            &format!("job-{run_id}"),
            practice,
            started_at,
        ))
        .await
        .expect("starts");
    if status != RunState::Running {
        store
            .finish_run(run_id, &end(status, started_at + Duration::seconds(90)))
            .await
            .expect("finishes");
    }
}

fn run_ids(runs: &[crate::RunRecord]) -> Vec<&str> {
    runs.iter().map(|r| r.run_id.as_str()).collect()
}

async fn history_records_runs_and_filters_them(store: Store) {
    let t = |minutes: i64| NOW - Duration::hours(30) + Duration::minutes(minutes);
    record(&store, "r1", "a", t(0), RunState::Succeeded).await;
    record(&store, "r2", "a", t(15), RunState::Failed).await;
    record(&store, "r3", "b", t(20), RunState::Partial).await;
    record(&store, "r4", "b", t(24 * 60), RunState::Retrying).await;
    record(&store, "r5", "a", t(25 * 60), RunState::Skipped).await;
    record(&store, "r6", "b", t(26 * 60), RunState::Running).await;
    // Starting twice (a retried call) changes nothing.
    store
        .start_run(&new_run("r1", "job-r1", "a", t(0)))
        .await
        .expect("idempotent");

    let all = |q: HistoryQuery| {
        let store = store.clone();
        async move { store.history(&q).await.expect("history reads") }
    };
    let q = HistoryQuery {
        practice_id: None,
        failed_only: false,
        since: None,
        limit: 100,
    };
    assert_eq!(
        run_ids(&all(q.clone()).await),
        ["r6", "r5", "r4", "r3", "r2", "r1"]
    );
    assert_eq!(
        run_ids(
            &all(HistoryQuery {
                failed_only: true,
                ..q.clone()
            })
            .await
        ),
        ["r4", "r3", "r2"]
    );
    // Every failure across practices in the last day.
    assert_eq!(
        run_ids(
            &all(HistoryQuery {
                failed_only: true,
                since: Some(NOW - Duration::hours(24)),
                ..q.clone()
            })
            .await
        ),
        ["r4"]
    );
    assert_eq!(
        run_ids(
            &all(HistoryQuery {
                practice_id: Some("a".to_owned()),
                limit: 2,
                ..q.clone()
            })
            .await
        ),
        ["r5", "r2"]
    );

    let runs = all(q.clone()).await;
    let r2 = runs.iter().find(|r| r.run_id == "r2").expect("r2");
    assert_eq!(r2.status, RunState::Failed);
    assert_eq!(r2.practice_id, "a");
    assert_eq!(r2.job_id, "job-r2");
    assert_eq!(r2.kind, "incremental");
    assert_eq!(r2.trigger, "schedule");
    assert_eq!(r2.attempt, 1);
    assert_eq!(r2.worker.as_deref(), Some("worker-1"));
    assert_eq!(r2.duration(), Some(Duration::seconds(90)));
    assert_eq!(r2.resources, end(RunState::Failed, NOW).resources);
    assert_eq!(
        r2.quarantined(),
        1,
        "the quarantine count is kept per resource"
    );
    assert_eq!(
        (r2.fetched, r2.written, r2.api_calls, r2.bytes),
        (Some(10), Some(9), Some(4), Some(12_345))
    );
    assert_eq!(r2.error_class.as_deref(), Some("transient"));
    assert_eq!(
        r2.error_message.as_deref(),
        Some("appointments: 503 from Ascend")
    );
    let r6 = runs.iter().find(|r| r.run_id == "r6").expect("r6");
    assert_eq!(r6.status, RunState::Running);
    assert_eq!(r6.ended_at, None);
    assert!(r6.resources.is_empty());
    assert_eq!(r6.fetched, None);

    assert_eq!(
        store
            .last_run_of_job("job-r3")
            .await
            .expect("reads")
            .map(|r| r.status),
        Some(RunState::Partial)
    );
    assert_eq!(
        store.last_run_of_job("no-such-job").await.expect("reads"),
        None
    );
}

async fn finishing_an_unknown_run_is_an_error_and_messages_are_capped(store: Store) {
    let err = store
        .finish_run("never-started", &end(RunState::Succeeded, NOW))
        .await
        .expect_err("unknown run");
    assert!(matches!(err, StoreError::UnknownRun { ref run_id } if run_id == "never-started"));

    store
        .start_run(&new_run("r", "j", "p", NOW))
        .await
        .expect("starts");
    let mut finish = end(RunState::Failed, NOW + Duration::minutes(1));
    finish.error_message = Some("x".repeat(50_000));
    finish.resources[1].error = Some("y".repeat(50_000));
    store.finish_run("r", &finish).await.expect("finishes");
    let run = store
        .last_run_of_job("j")
        .await
        .expect("reads")
        .expect("recorded");
    let message = run.error_message.expect("message kept");
    assert_eq!(message.chars().count(), MAX_ERROR_CHARS);
    assert!(message.starts_with("xxxx"));
    let resource_error = run.resources[1].error.clone().expect("kept");
    assert!(resource_error.chars().count() < 1_000);
}

async fn dead_lettering_marks_the_latest_run_or_records_one(store: Store) {
    // A job tried three times: the last attempt died mid-run.
    for (attempt, run_id) in [(1, "a1"), (2, "a2"), (3, "a3")] {
        let mut run = new_run(run_id, "job-1", "p", NOW + Duration::minutes(attempt));
        run.attempt = attempt as i32;
        store.start_run(&run).await.expect("starts");
        if attempt < 3 {
            store
                .finish_run(
                    run_id,
                    &end(
                        RunState::Retrying,
                        NOW + Duration::minutes(attempt) + Duration::seconds(5),
                    ),
                )
                .await
                .expect("finishes");
        }
    }
    store
        .mark_job_dead_lettered("job-1", Some("received 3 times"))
        .await
        .expect("marks");
    let runs = store
        .history(&HistoryQuery {
            practice_id: Some("p".to_owned()),
            failed_only: false,
            since: None,
            limit: 10,
        })
        .await
        .expect("reads");
    let states: Vec<(&str, RunState)> =
        runs.iter().map(|r| (r.run_id.as_str(), r.status)).collect();
    assert_eq!(
        states,
        [
            ("a3", RunState::DeadLettered),
            ("a2", RunState::Retrying),
            ("a1", RunState::Retrying)
        ]
    );
    let last = store
        .last_run_of_job("job-1")
        .await
        .expect("reads")
        .expect("ran");
    assert!(last.ended_at.is_some(), "a dead run is ended");
    assert_eq!(last.error_message.as_deref(), Some("received 3 times"));

    // A run that had its own error keeps it.
    store
        .start_run(&new_run("b1", "job-2", "p", NOW))
        .await
        .expect("starts");
    store
        .finish_run("b1", &end(RunState::Retrying, NOW + Duration::seconds(1)))
        .await
        .expect("finishes");
    store
        .mark_job_dead_lettered("job-2", Some("received 5 times"))
        .await
        .expect("marks");
    let last = store
        .last_run_of_job("job-2")
        .await
        .expect("reads")
        .expect("ran");
    assert_eq!(last.status, RunState::DeadLettered);
    assert_eq!(
        last.error_message.as_deref(),
        Some("appointments: 503 from Ascend")
    );

    // A job that never ran, holding a practice's claim: recorded for it.
    register(&store, "claimed", PracticeStatus::Active, None).await;
    let job = store
        .claim_due_practices(NOW, 10, CLAIM, "tick")
        .await
        .expect("claims")
        .remove(0)
        .job_id;
    store
        .mark_job_dead_lettered(&job, Some("message body is not a job"))
        .await
        .expect("marks");
    // A poison message naming nothing known: practice ''.
    store
        .mark_job_dead_lettered("garbage", None)
        .await
        .expect("marks");
    store
        .mark_job_dead_lettered("garbage", None)
        .await
        .expect("idempotent");
    let failures = store
        .history(&HistoryQuery {
            practice_id: None,
            failed_only: true,
            since: None,
            limit: 100,
        })
        .await
        .expect("reads");
    let claimed = failures.iter().find(|r| r.job_id == job).expect("recorded");
    assert_eq!(claimed.practice_id, "claimed");
    assert_eq!(claimed.status, RunState::DeadLettered);
    assert_eq!(
        claimed.error_message.as_deref(),
        Some("message body is not a job")
    );
    let garbage: Vec<_> = failures.iter().filter(|r| r.job_id == "garbage").collect();
    assert_eq!(garbage.len(), 1, "dead-lettering twice records one run");
    assert_eq!(garbage[0].practice_id, "");
}

async fn history_outlives_its_practice(store: Store) {
    register(&store, "gone", PracticeStatus::Active, None).await;
    record(&store, "r1", "gone", NOW, RunState::Succeeded).await;
    let sql = "DELETE FROM practices WHERE practice_id = 'gone'";
    match &store.inner {
        Inner::Pg(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
        Inner::Sqlite(pool) => sqlx::query(sql).execute(pool).await.map(|_| ()),
    }
    .expect("practice deleted");
    let runs = store
        .history(&HistoryQuery {
            practice_id: Some("gone".to_owned()),
            failed_only: false,
            since: None,
            limit: 10,
        })
        .await
        .expect("reads");
    assert_eq!(run_ids(&runs), ["r1"]);
}

async fn overview_shows_schedule_claim_and_latest_run(store: Store) {
    register(&store, "a", PracticeStatus::Active, None).await;
    register(
        &store,
        "b",
        PracticeStatus::Active,
        Some(NOW + Duration::minutes(4)),
    )
    .await;
    store
        .set_practice_status(
            "b",
            PracticeStatus::AuthFailed,
            Some("Ascend refused the client secret"),
        )
        .await
        .expect("status set");
    store
        .mark_success("a", NOW - Duration::minutes(3))
        .await
        .expect("marks");
    record(
        &store,
        "a-old",
        "a",
        NOW - Duration::hours(1),
        RunState::Failed,
    )
    .await;
    record(
        &store,
        "a-new",
        "a",
        NOW - Duration::minutes(5),
        RunState::Succeeded,
    )
    .await;
    let job = store
        .claim_due_practices(NOW, 10, CLAIM, "tick")
        .await
        .expect("claims")
        .remove(0)
        .job_id;

    let overview = store.practice_overview().await.expect("reads");
    assert_eq!(overview.len(), 2);
    let a = &overview[0];
    assert_eq!(a.practice_id, "a");
    assert_eq!(a.status, PracticeStatus::Active);
    assert_eq!(a.sync_interval_minutes, 15);
    assert_eq!(a.last_success_at, Some(NOW - Duration::minutes(3)));
    assert_eq!(a.next_sync_at, Some(NOW + Duration::minutes(15)));
    assert_eq!(a.inflight_job_id.as_deref(), Some(job.as_str()));
    assert_eq!(a.inflight_until, Some(NOW + CLAIM));
    let last = a.last_run.as_ref().expect("has runs");
    assert_eq!(last.run_id, "a-new");
    assert_eq!(last.status, RunState::Succeeded);
    assert_eq!(last.started_at, NOW - Duration::minutes(5));
    assert_eq!((a.quarantined, a.failing_since), (0, None));

    let b = &overview[1];
    assert_eq!(b.practice_id, "b");
    assert_eq!(b.status, PracticeStatus::AuthFailed);
    assert_eq!(
        b.status_detail.as_deref(),
        Some("Ascend refused the client secret")
    );
    assert_eq!(b.next_sync_at, Some(NOW + Duration::minutes(4)));
    assert_eq!(b.inflight_job_id, None);
    assert_eq!(b.last_run, None);
    assert_eq!(b.last_success_at, None);
}

// ---- Postgres: races and plans ---------------------------------------------

/// Scheduler replicas claiming at once never get the same practice, and
/// together they get every due practice.
#[sqlx::test(migrations = false)]
async fn concurrent_claimers_never_share_a_practice(pool: sqlx::PgPool) {
    let store = Store::from_pg_pool(pool);
    store.migrate().await.expect("migrates");
    const PRACTICES: usize = 300;
    for i in 0..PRACTICES {
        register(
            &store,
            &format!("p{i:03}"),
            PracticeStatus::Active,
            Some(NOW - Duration::seconds(i as i64)),
        )
        .await;
    }
    let claimer = |name: &'static str| {
        let store = store.clone();
        async move {
            let mut got = Vec::new();
            for round in 0.. {
                let due = store
                    .claim_due_practices(NOW, 7, CLAIM, &format!("{name}-{round}"))
                    .await
                    .expect("claims");
                if due.is_empty() {
                    break;
                }
                got.extend(due.into_iter().map(|d| d.practice_id));
                tokio::task::yield_now().await;
            }
            got
        }
    };
    let (a, b, c, d) = tokio::join!(
        tokio::spawn(claimer("a")),
        tokio::spawn(claimer("b")),
        tokio::spawn(claimer("c")),
        tokio::spawn(claimer("d")),
    );
    let all: Vec<String> = [a, b, c, d]
        .into_iter()
        .flat_map(|r| r.expect("claimer ran"))
        .collect();
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(
        distinct.len(),
        all.len(),
        "a practice was handed to two claimers"
    );
    assert_eq!(all.len(), PRACTICES, "every due practice was claimed");
}

/// Two holders racing for one lease: exactly one wins, every time.
#[sqlx::test(migrations = false)]
async fn racing_holders_get_a_lease_once(pool: sqlx::PgPool) {
    let store = Store::from_pg_pool(pool);
    store.migrate().await.expect("migrates");
    let ttl = Duration::minutes(5);
    for round in 0..50 {
        let key = format!("practice:p{round}");
        let take = |holder: &'static str| {
            let store = store.clone();
            let key = key.clone();
            tokio::spawn(async move {
                store
                    .acquire_lease(&key, holder, ttl, NOW)
                    .await
                    .expect("acquires")
            })
        };
        let (a, b) = tokio::join!(take("worker-a"), take("worker-b"));
        let (a, b) = (a.expect("ran"), b.expect("ran"));
        assert!(a ^ b, "round {round}: a={a} b={b}");
        let winner = if a { "worker-a" } else { "worker-b" };
        assert_eq!(
            store
                .lease_holder(&key, NOW)
                .await
                .expect("reads")
                .map(|h| h.0),
            Some(winner.to_owned())
        );
    }
}

/// The plan of a history query, as text.
async fn plan(pool: &sqlx::PgPool, q: &HistoryQuery) -> String {
    let (sql, binds) = crate::history::history_sql(&crate::HistoryFilter::from(q)).expect("builds");
    let explain = format!("EXPLAIN {sql}");
    let mut query = sqlx::query_scalar::<_, String>(&explain);
    for bind in binds {
        query = match bind {
            crate::history::Bind::Text(t) => query.bind(t),
            crate::history::Bind::Time(t) => query.bind(t),
            crate::history::Bind::Int(n) => query.bind(n),
        };
    }
    query.fetch_all(pool).await.expect("explains").join("\n")
}

/// "Every failure in the last day" and "a practice's last runs" are index
/// scans over a history of tens of thousands of runs.
#[sqlx::test(migrations = false)]
async fn history_questions_use_indexes(pool: sqlx::PgPool) {
    let store = Store::from_pg_pool(pool.clone());
    store.migrate().await.expect("migrates");
    // 60,000 runs over 60 days for 200 practices; one in 20 a failure.
    sqlx::query(
        "INSERT INTO sync_runs (run_id, job_id, practice_id, kind, trigger, attempt, \
         started_at, ended_at, status, fetched, written, api_calls, bytes) \
         SELECT 'run-' || i, 'job-' || i, 'p' || (i % 200), 'incremental', 'schedule', 1, \
         $1 - (i * interval '86 seconds'), $1 - (i * interval '86 seconds') + interval '30 seconds', \
         CASE WHEN i % 20 = 0 THEN 'failed' ELSE 'succeeded' END, 10, 10, 2, 1000 \
         FROM generate_series(1, 60000) AS i",
    )
    .bind(NOW)
    .execute(&pool)
    .await
    .expect("history filled");
    sqlx::query("ANALYZE sync_runs")
        .execute(&pool)
        .await
        .expect("analyzed");

    let failures = HistoryQuery {
        practice_id: None,
        failed_only: true,
        since: Some(NOW - Duration::days(1)),
        limit: 1000,
    };
    let failed_plan = plan(&pool, &failures).await;
    assert!(
        !failed_plan.contains("Seq Scan on sync_runs"),
        "failures of the last day scan the table:\n{failed_plan}"
    );
    assert!(
        failed_plan.contains("sync_runs_failed_idx"),
        "failures of the last day do not use the failure index:\n{failed_plan}"
    );
    // And the answer is right: 1000 runs a day, 1 in 20 failed.
    let got = store.history(&failures).await.expect("reads");
    assert!(!got.is_empty());
    assert!(got.iter().all(|r| r.status == RunState::Failed));
    assert!(got.iter().all(|r| r.started_at >= NOW - Duration::days(1)));
    assert_eq!(got.len(), 50);

    let practice = HistoryQuery {
        practice_id: Some("p7".to_owned()),
        failed_only: false,
        since: None,
        limit: 20,
    };
    let practice_plan = plan(&pool, &practice).await;
    assert!(
        !practice_plan.contains("Seq Scan on sync_runs"),
        "a practice's last runs scan the table:\n{practice_plan}"
    );
    assert!(
        practice_plan.contains("sync_runs_practice_idx"),
        "a practice's last runs do not use the practice index:\n{practice_plan}"
    );
}
