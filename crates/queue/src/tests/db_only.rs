//! What only the database queue has to prove: receipts guard a redelivered
//! message, a batch keeps its order, and parallel receivers never share a
//! message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Adapter, Fixture, receive_n, settings, standard};
use crate::{Queue, QueueError};

#[tokio::test]
async fn a_stale_receipt_changes_nothing_postgres() {
    a_stale_receipt_changes_nothing(Adapter::Postgres).await;
}

#[tokio::test]
async fn a_stale_receipt_changes_nothing_sqlite() {
    a_stale_receipt_changes_nothing(Adapter::Sqlite).await;
}

/// A worker whose visibility ran out holds an old receipt; the message was
/// delivered again to another worker. The old receipt must neither delete,
/// extend nor dead-letter it.
async fn a_stale_receipt_changes_nothing(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let q = &f.queue;
    q.send(&[standard("contended")]).await.expect("send");
    let old = receive_n(q, 1).await.remove(0);
    // Its visibility "runs out" (released, so the test does not wait).
    q.set_visibility(&old, Duration::ZERO)
        .await
        .expect("release");
    let new = receive_n(q, 1).await.remove(0);
    assert_eq!(new.message_id, old.message_id);
    assert_ne!(new.receipt, old.receipt);

    for (what, result) in [
        ("delete", q.delete(&old).await),
        (
            "set_visibility",
            q.set_visibility(&old, Duration::ZERO).await,
        ),
        ("dead_letter", q.dead_letter(&old, "stale").await),
    ] {
        assert!(
            matches!(result, Err(QueueError::ReceiptExpired { ref message_id }) if *message_id == old.message_id),
            "{what} with a stale receipt: {result:?}"
        );
    }
    // Still held by the new delivery: not receivable, not dead, not gone.
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 1, 0));
    q.delete(&new).await.expect("the current receipt deletes");
    let depth = q.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight, depth.dead), (0, 0, 0));
    f.finish().await;
}

#[tokio::test]
async fn a_batch_is_received_in_the_order_it_was_sent_postgres() {
    a_batch_is_received_in_the_order_it_was_sent(Adapter::Postgres).await;
}

#[tokio::test]
async fn a_batch_is_received_in_the_order_it_was_sent_sqlite() {
    a_batch_is_received_in_the_order_it_was_sent(Adapter::Sqlite).await;
}

/// An initial sync's chunks are sent in one batch, priority first: one
/// receiver at a time gets them in that order, batch after batch.
async fn a_batch_is_received_in_the_order_it_was_sent(adapter: Adapter) {
    let f = Fixture::new(adapter, settings(5, 300)).await;
    let first: Vec<_> = (0..40).map(|i| standard(&format!("a-{i:02}"))).collect();
    let second: Vec<_> = (0..40).map(|i| standard(&format!("b-{i:02}"))).collect();
    f.queue.send(&first).await.expect("send");
    f.queue.send(&second).await.expect("send");
    let mut received = Vec::new();
    for _ in 0..80 {
        let delivery = receive_n(&f.queue, 1).await.remove(0);
        received.push(delivery.body);
    }
    let sent: Vec<String> = first
        .iter()
        .chain(&second)
        .map(|o| o.body.clone())
        .collect();
    assert_eq!(received, sent);
    f.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_receivers_never_share_a_message_postgres() {
    parallel_receivers_never_share_a_message(Adapter::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_receivers_never_share_a_message_sqlite() {
    parallel_receivers_never_share_a_message(Adapter::Sqlite).await;
}

/// 300 messages, 6 receivers at once, a visibility far longer than the
/// test: every message is delivered, and none to two receivers.
async fn parallel_receivers_never_share_a_message(adapter: Adapter) {
    const MESSAGES: usize = 300;
    const RECEIVERS: usize = 6;
    let f = Fixture::new(adapter, settings(5, 3600)).await;
    let jobs: Vec<_> = (0..MESSAGES).map(|i| standard(&format!("m-{i}"))).collect();
    let ids = f.queue.send(&jobs).await.expect("send");
    assert_eq!(ids.len(), MESSAGES);

    // message id -> the receivers that got it
    let seen: Arc<Mutex<HashMap<String, Vec<usize>>>> = Arc::default();
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut tasks = Vec::new();
    for receiver in 0..RECEIVERS {
        let queue: Queue = f.queue.clone();
        let seen = Arc::clone(&seen);
        tasks.push(tokio::spawn(async move {
            let mut empty_in_a_row = 0;
            while empty_in_a_row < 3 && Instant::now() < deadline {
                let got = queue
                    .receive(7, Duration::from_millis(300))
                    .await
                    .expect("receive");
                if got.is_empty() {
                    empty_in_a_row += 1;
                    continue;
                }
                empty_in_a_row = 0;
                for d in got {
                    seen.lock()
                        .expect("lock")
                        .entry(d.message_id.clone())
                        .or_default()
                        .push(receiver);
                    assert_eq!(d.receive_count, 1, "nothing came back");
                    // Half are deleted; the rest stay in flight (invisible).
                    if d.body.ends_with(['0', '2', '4', '6', '8']) {
                        queue.delete(&d).await.expect("delete");
                    }
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a receiver panicked");
    }
    let seen = std::mem::take(&mut *seen.lock().expect("lock"));
    let shared: Vec<_> = seen.iter().filter(|(_, r)| r.len() > 1).collect();
    assert!(shared.is_empty(), "delivered to two receivers: {shared:?}");
    assert_eq!(seen.len(), MESSAGES, "every message was delivered");
    for id in &ids {
        assert!(seen.contains_key(id), "{id} never delivered");
    }
    let depth = f.queue.depth().await.expect("depth");
    assert_eq!((depth.visible, depth.in_flight), (0, (MESSAGES / 2) as u64));
    f.finish().await;
}
