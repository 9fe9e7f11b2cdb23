//! The queue's suite. Each semantic test is written once, as an async fn
//! taking an [`Adapter`], and run on all three: SQS against moto (fresh
//! queues of its own, unique names), the database queue on Postgres (a
//! scratch database of its own) and on SQLite (a file in a temporary
//! folder). So tests run in parallel.
//!
//! Needs `ASCEND_SYNC_TEST_AWS_ENDPOINT` (moto's URL), `DATABASE_URL` and
//! the AWS test credentials (`cargo xtask test` sets them all).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::{
    DbQueue, Delivery, Lane, Outgoing, Queue, QueueError, QueueSettings, RedriveMethod,
    RedriveSelector, SqsQueue,
};

mod db_only;
mod sqs_only;

pub(crate) const ENDPOINT_VAR: &str = "ASCEND_SYNC_TEST_AWS_ENDPOINT";

macro_rules! on_all_adapters {
    ($($name:ident),* $(,)?) => {
        mod sqs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Adapter::Sqs).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Adapter::Postgres).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::Adapter::Sqlite).await;
                }
            )*
        }
    };
}

on_all_adapters!(
    sent_messages_are_received_once_each_and_deleted,
    a_received_message_is_invisible_until_released,
    a_message_comes_back_when_its_visibility_runs_out,
    the_priority_lane_drains_first,
    a_message_received_too_often_becomes_a_dead_letter,
    dead_letter_moves_a_poison_message_at_once_with_its_reason,
    listing_dead_letters_loses_none,
    redrive_all_brings_each_dead_letter_back_once_on_its_lane,
    redrive_by_id_moves_only_that_one,
    a_delayed_message_waits_for_its_delay,
    invalid_requests_change_nothing,
);

/// Which adapter a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adapter {
    Sqs,
    Postgres,
    Sqlite,
}

/// A fresh queue of one adapter, and what to remove afterwards.
pub(crate) struct Fixture {
    pub(crate) queue: Queue,
    admin_url: Option<String>,
    db_url: Option<String>,
    dir: Option<PathBuf>,
}

/// A name no other test (or run) uses.
pub(crate) fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn endpoint() -> String {
    std::env::var(ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{ENDPOINT_VAR} is not set, so the SQS tests cannot run: use `cargo xtask test`, or \
             start moto (`cargo xtask services`) and export {ENDPOINT_VAR}=http://127.0.0.1:PORT \
             AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1"
        )
    })
}

impl Fixture {
    pub(crate) async fn new(adapter: Adapter, settings: QueueSettings) -> Fixture {
        match adapter {
            Adapter::Sqs => {
                let queue = SqsQueue::provision(
                    Some(endpoint()),
                    Some("us-east-1".into()),
                    &unique_name("q"),
                    settings,
                )
                .await
                .unwrap_or_else(|e| panic!("creating SQS queues on moto failed: {e}"));
                Fixture {
                    queue: queue.into(),
                    admin_url: None,
                    db_url: None,
                    dir: None,
                }
            }
            Adapter::Postgres => {
                let admin = std::env::var("DATABASE_URL").expect(
                    "DATABASE_URL is not set: run the tests with `cargo xtask test` (or export \
                     DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres)",
                );
                let url = store::Store::create_scratch_database(&admin, "queuetest")
                    .await
                    .expect("a scratch database is created");
                let store = store::Store::connect(&url).await.expect("Postgres opens");
                store.migrate().await.expect("migrations apply");
                Fixture {
                    queue: DbQueue::try_new(store, settings)
                        .expect("settings are valid")
                        .into(),
                    admin_url: Some(admin),
                    db_url: Some(url),
                    dir: None,
                }
            }
            Adapter::Sqlite => {
                let dir = std::env::temp_dir().join(unique_name("ascend-sync-queue"));
                std::fs::create_dir_all(&dir).expect("temporary folder");
                let url = format!("sqlite:{}", dir.join("queue.sqlite").display());
                let store = store::Store::connect(&url).await.expect("SQLite opens");
                store.migrate().await.expect("migrations apply");
                Fixture {
                    queue: DbQueue::try_new(store, settings)
                        .expect("settings are valid")
                        .into(),
                    admin_url: None,
                    db_url: None,
                    dir: Some(dir),
                }
            }
        }
    }

    /// Removes the scratch database or folder (SQS queues are left to
    /// moto, which forgets them when it stops).
    pub(crate) async fn finish(self) {
        if let Queue::Database(db) = &self.queue {
            db.store().close().await;
        }
        if let (Some(admin), Some(url)) = (&self.admin_url, &self.db_url) {
            store::Store::drop_database(admin, url)
                .await
                .expect("the scratch database is dropped");
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

pub(crate) fn settings(max_receive_count: u32, visibility_secs: u64) -> QueueSettings {
    QueueSettings {
        max_receive_count,
        visibility: Duration::from_secs(visibility_secs),
    }
}

pub(crate) fn standard(body: &str) -> Outgoing {
    Outgoing {
        body: body.to_owned(),
        lane: Lane::Standard,
        delay: Duration::ZERO,
    }
}

pub(crate) fn priority(body: &str) -> Outgoing {
    Outgoing {
        lane: Lane::Priority,
        ..standard(body)
    }
}

/// How long a test waits for messages it expects before failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(60);

/// Receives until `n` deliveries arrived (failing after [`PATIENCE`]).
pub(crate) async fn receive_n(queue: &Queue, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + PATIENCE;
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} messages arrived within {PATIENCE:?}",
            got.len()
        );
        let batch = queue
            .receive((n - got.len()).min(10), Duration::from_secs(1))
            .await
            .expect("receive");
        got.extend(batch);
    }
    got
}

/// A receive that must find nothing.
pub(crate) async fn assert_nothing_receivable(queue: &Queue) {
    let got = queue
        .receive(10, Duration::from_secs(1))
        .await
        .expect("receive");
    assert!(
        got.is_empty(),
        "expected nothing receivable, got {:?}",
        got.iter().map(|d| &d.body).collect::<Vec<_>>()
    );
}

fn bodies(deliveries: &[Delivery]) -> BTreeSet<String> {
    deliveries.iter().map(|d| d.body.clone()).collect()
}

// ---- the suite ---------------------------------------------------------------

async fn sent_messages_are_received_once_each_and_deleted(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    let sent: Vec<Outgoing> = (0..25).map(|i| standard(&format!("job-{i}"))).collect();
    let ids = q.send(&sent).await.expect("send");
    assert_eq!(ids.len(), 25, "one id per message");
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        25,
        "ids are distinct"
    );

    let got = receive_n(q, 25).await;
    assert_eq!(
        got.len(),
        25,
        "no message delivered twice within visibility"
    );
    assert_eq!(
        bodies(&got),
        sent.iter().map(|o| o.body.clone()).collect(),
        "every body arrives unchanged"
    );
    assert_eq!(
        got.iter()
            .map(|d| d.message_id.clone())
            .collect::<BTreeSet<_>>(),
        ids.iter().cloned().collect(),
        "deliveries carry the ids send returned"
    );
    assert!(
        got.iter()
            .all(|d| d.receive_count == 1 && d.lane == Lane::Standard)
    );

    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (0, 25));

    for d in &got {
        q.delete(d).await.expect("delete");
    }
    // Deleting again is not an error (as on SQS).
    q.delete(&got[0])
        .await
        .expect("a second delete is harmless");
    assert_nothing_receivable(q).await;
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 0));
    f.finish().await;
}

async fn a_received_message_is_invisible_until_released(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    q.send(&[standard("held")]).await.expect("send");
    let first = receive_n(q, 1).await.remove(0);
    assert_nothing_receivable(q).await;

    // Heartbeat: extending keeps it invisible.
    q.set_visibility(&first, Duration::from_secs(600))
        .await
        .expect("extend");
    assert_nothing_receivable(q).await;

    // Release: receivable at once, counted again.
    q.set_visibility(&first, Duration::ZERO)
        .await
        .expect("release");
    let again = receive_n(q, 1).await.remove(0);
    assert_eq!(again.message_id, first.message_id);
    assert_eq!(again.body, "held");
    assert_eq!(again.receive_count, 2);
    q.delete(&again).await.expect("delete");
    assert_nothing_receivable(q).await;
    f.finish().await;
}

async fn a_message_comes_back_when_its_visibility_runs_out(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 1)).await;
    let q = &f.queue;
    let ids = q.send(&[standard("crashed worker")]).await.expect("send");
    let first = receive_n(q, 1).await.remove(0);
    assert_eq!(first.receive_count, 1);
    // The worker "crashes": no delete. The message must come back.
    let again = receive_n(q, 1).await.remove(0);
    assert_eq!(again.message_id, ids[0]);
    assert_eq!(again.body, "crashed worker");
    assert!(again.receive_count >= 2, "{}", again.receive_count);
    assert_ne!(
        again.receipt, first.receipt,
        "each delivery has its receipt"
    );
    q.delete(&again).await.expect("delete");
    f.finish().await;
}

async fn the_priority_lane_drains_first(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    let scheduled: Vec<Outgoing> = (0..5)
        .map(|i| standard(&format!("scheduled-{i}")))
        .collect();
    q.send(&scheduled).await.expect("send scheduled");
    q.send(&[priority("force-a"), priority("force-b")])
        .await
        .expect("send forced");

    let mut first = Vec::new();
    while first.len() < 2 {
        first.extend(
            q.receive(2 - first.len(), Duration::from_secs(1))
                .await
                .expect("receive"),
        );
    }
    assert_eq!(
        bodies(&first),
        ["force-a", "force-b"].map(String::from).into(),
        "the forced jobs come before any scheduled one"
    );
    assert!(first.iter().all(|d| d.lane == Lane::Priority));

    let rest = receive_n(q, 5).await;
    assert!(rest.iter().all(|d| d.lane == Lane::Standard));
    assert_eq!(
        bodies(&rest),
        scheduled.iter().map(|o| o.body.clone()).collect()
    );
    f.finish().await;
}

async fn a_message_received_too_often_becomes_a_dead_letter(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(2, 300)).await;
    let q = &f.queue;
    q.send(&[standard("poison")]).await.expect("send");
    for count in 1..=2 {
        let d = receive_n(q, 1).await.remove(0);
        assert_eq!((d.body.as_str(), d.receive_count), ("poison", count));
        // The job fails: retry at once.
        q.set_visibility(&d, Duration::ZERO).await.expect("release");
    }
    // Received max_receive_count times: the next receive moves it.
    assert_nothing_receivable(q).await;
    let dead = q.dead_letters(10).await.expect("list");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, "poison");
    assert_eq!(dead[0].reason, None, "the redrive policy gives no reason");
    assert_eq!(dead[0].receive_count, 2);
    assert_eq!(dead[0].lane, Some(Lane::Standard));
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 1));
    f.finish().await;
}

async fn dead_letter_moves_a_poison_message_at_once_with_its_reason(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    q.send(&[priority("bad job"), standard("good job")])
        .await
        .expect("send");
    let got = receive_n(q, 2).await;
    let bad = got.iter().find(|d| d.body == "bad job").expect("bad job");
    let good = got.iter().find(|d| d.body == "good job").expect("good job");
    q.dead_letter(bad, "the job message is malformed (not JSON)")
        .await
        .expect("dead letter");
    q.set_visibility(good, Duration::ZERO)
        .await
        .expect("release");

    // The poison message is gone from the lanes; the good one is not.
    let again = receive_n(q, 1).await;
    assert_eq!(again[0].body, "good job");
    assert_nothing_receivable(q).await;

    let dead = q.dead_letters(10).await.expect("list");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].body, "bad job");
    assert_eq!(
        dead[0].reason.as_deref(),
        Some("the job message is malformed (not JSON)")
    );
    assert_eq!(dead[0].receive_count, 1);
    assert_eq!(dead[0].lane, Some(Lane::Priority));

    // A long, hostile reason is cut and kept in one piece.
    q.send(&[standard("bad 2")]).await.expect("send");
    let d = receive_n(q, 1).await.remove(0);
    let reason = format!("{}\u{0}{}", "r".repeat(5000), "tail");
    q.dead_letter(&d, &reason).await.expect("dead letter");
    let dead = q.dead_letters(10).await.expect("list");
    let cut = dead.iter().find(|x| x.body == "bad 2").expect("listed");
    assert_eq!(
        cut.reason.as_ref().map(|r| r.chars().count()),
        Some(crate::MAX_REASON_CHARS)
    );
    f.finish().await;
}

async fn listing_dead_letters_loses_none(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    let sent: Vec<Outgoing> = (0..15).map(|i| standard(&format!("dead-{i}"))).collect();
    q.send(&sent).await.expect("send");
    for d in receive_n(q, 15).await {
        q.dead_letter(&d, "poison").await.expect("dead letter");
    }
    let expected: BTreeSet<String> = sent.iter().map(|o| o.body.clone()).collect();
    for round in 0..3 {
        let dead = q.dead_letters(100).await.expect("list");
        assert_eq!(dead.len(), 15, "round {round}");
        assert_eq!(
            dead.iter().map(|d| d.body.clone()).collect::<BTreeSet<_>>(),
            expected
        );
        assert_eq!(
            dead.iter()
                .map(|d| &d.message_id)
                .collect::<BTreeSet<_>>()
                .len(),
            15,
            "ids are distinct"
        );
    }
    // Fewer asked, fewer given.
    assert_eq!(q.dead_letters(4).await.expect("list").len(), 4);
    assert_eq!(q.depth().await.expect("depth").dead, 15);
    // And still all there for a redrive.
    assert_eq!(
        q.redrive(&RedriveSelector::All)
            .await
            .expect("redrive")
            .moved,
        15
    );
    let back = receive_n(q, 15).await;
    assert_eq!(bodies(&back), expected);
    f.finish().await;
}

async fn redrive_all_brings_each_dead_letter_back_once_on_its_lane(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(1, 300)).await;
    let q = &f.queue;
    q.send(&[
        priority("p-poison"),
        standard("s-poison"),
        standard("s-tired"),
    ])
    .await
    .expect("send");
    for d in receive_n(q, 3).await {
        if d.body == "s-tired" {
            q.set_visibility(&d, Duration::ZERO).await.expect("release");
        } else {
            q.dead_letter(&d, "poison").await.expect("dead letter");
        }
    }
    // max_receive_count 1: "s-tired" moves at its next receive.
    assert_nothing_receivable(q).await;
    assert_eq!(q.dead_letters(10).await.expect("list").len(), 3);

    let report = q.redrive(&RedriveSelector::All).await.expect("redrive");
    assert_eq!(report.moved, 3);
    let expected_method = match adapter {
        // moto has no StartMessageMoveTask: the fallback must kick in.
        Adapter::Sqs => RedriveMethod::Fallback,
        Adapter::Postgres | Adapter::Sqlite => RedriveMethod::MoveTask,
    };
    assert_eq!(report.method, expected_method);
    assert!(q.dead_letters(10).await.expect("list").is_empty());

    let back = receive_n(q, 3).await;
    let lanes: BTreeMap<String, (Lane, u32)> = back
        .iter()
        .map(|d| (d.body.clone(), (d.lane, d.receive_count)))
        .collect();
    assert_eq!(lanes.len(), 3, "each came back exactly once: {back:?}");
    assert_eq!(lanes["p-poison"], (Lane::Priority, 1));
    assert_eq!(lanes["s-poison"], (Lane::Standard, 1));
    assert_eq!(lanes["s-tired"], (Lane::Standard, 1));
    // Usable: they can be deleted, and nothing else is left.
    for d in &back {
        q.delete(d).await.expect("delete");
    }
    assert_nothing_receivable(q).await;
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 0));
    f.finish().await;
}

async fn redrive_by_id_moves_only_that_one(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    let sent: Vec<Outgoing> = (0..12).map(|i| standard(&format!("d-{i}"))).collect();
    q.send(&sent).await.expect("send");
    for d in receive_n(q, 12).await {
        q.dead_letter(&d, "poison").await.expect("dead letter");
    }
    let dead = q.dead_letters(100).await.expect("list");
    assert_eq!(dead.len(), 12);
    let chosen = dead.iter().find(|d| d.body == "d-7").expect("d-7 listed");

    let report = q
        .redrive(&RedriveSelector::Id(chosen.message_id.clone()))
        .await
        .expect("redrive one");
    assert_eq!(report.moved, 1);
    let expected_method = match adapter {
        Adapter::Sqs => RedriveMethod::Fallback,
        Adapter::Postgres | Adapter::Sqlite => RedriveMethod::MoveTask,
    };
    assert_eq!(report.method, expected_method);

    let back = receive_n(q, 1).await;
    assert_eq!(back[0].body, "d-7");
    assert_nothing_receivable(q).await;
    let left = q.dead_letters(100).await.expect("list");
    assert_eq!(left.len(), 11, "the others stay dead letters");
    assert!(left.iter().all(|d| d.body != "d-7"));

    // An unknown id moves nothing and loses nothing.
    let report = q
        .redrive(&RedriveSelector::Id("no-such-message".into()))
        .await
        .expect("redrive unknown");
    assert_eq!(report.moved, 0);
    assert_eq!(q.dead_letters(100).await.expect("list").len(), 11);
    f.finish().await;
}

async fn a_delayed_message_waits_for_its_delay(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    q.send(&[Outgoing {
        delay: Duration::from_secs(600),
        ..standard("retry in ten minutes")
    }])
    .await
    .expect("send");
    assert_nothing_receivable(q).await;
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.delayed), (0, 1));

    q.send(&[Outgoing {
        delay: Duration::from_millis(1500),
        ..standard("soon")
    }])
    .await
    .expect("send");
    let got = receive_n(q, 1).await;
    assert_eq!(got[0].body, "soon", "a short delay runs out");
    f.finish().await;
}

async fn invalid_requests_change_nothing(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    let too_late = Outgoing {
        delay: Duration::from_secs(16 * 60),
        ..standard("x")
    };
    let refused = [
        vec![standard("fine"), too_late],
        vec![standard("")],
        vec![standard(&"x".repeat(crate::MAX_BODY_BYTES + 1))],
        vec![standard("nul \u{0} inside")],
    ];
    for jobs in &refused {
        let error = q.send(jobs).await.expect_err("refused");
        assert!(matches!(error, QueueError::Invalid { .. }), "{error}");
    }
    for max in [0, 11] {
        let error = q.receive(max, Duration::ZERO).await.expect_err("refused");
        assert!(matches!(error, QueueError::Invalid { .. }), "{error}");
    }
    q.send(&[standard("real")]).await.expect("send");
    let d = receive_n(q, 1).await.remove(0);
    let error = q
        .set_visibility(&d, Duration::from_secs(13 * 3600))
        .await
        .expect_err("refused");
    assert!(matches!(error, QueueError::Invalid { .. }), "{error}");
    let depth = q.depth().await.expect("depth");
    assert_eq!(
        (depth.visible, depth.in_flight, depth.delayed, depth.dead),
        (0, 1, 0, 0),
        "only the one valid message was ever enqueued"
    );
    f.finish().await;
}
