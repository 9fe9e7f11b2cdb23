//! Running a worker until its queue is empty: how the by-hand `sync`
//! command and the tests run syncs through the same jobs production runs
//! (plan, chunks, incremental cycles), on an in-process queue.

use std::time::Duration;

use queue::Queue;
use tokio::sync::watch;

use crate::jobs::{Worker, WorkerReport};

/// Why the queue did not empty.
#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// Jobs were still queued or running at the limit.
    #[error(
        "the queue still held {remaining} job(s) after {} s; look at `ascend-sync history` for \
         what keeps failing",
        limit.as_secs()
    )]
    NotIdle {
        /// Messages still visible, in flight or delayed.
        remaining: u64,
        /// The limit.
        limit: Duration,
    },
    /// The queue could not be read.
    #[error("the queue could not be read: {0}")]
    Queue(#[from] queue::QueueError),
}

/// How often the queue's depth is read.
const POLL: Duration = Duration::from_millis(100);

/// Runs `worker` until `queue` holds no message that is visible, in flight
/// or delayed (dead letters do not count: they wait for a person), then
/// stops it as a shutdown does. Fails if that takes longer than `limit`.
pub async fn run_until_idle(
    worker: &Worker,
    queue: &Queue,
    limit: Duration,
) -> Result<WorkerReport, DrainError> {
    let (stop, stopped) = watch::channel(false);
    // Aborted if this future is dropped, as a killed process's jobs are.
    let mut running = AbortOnDrop(Some({
        let worker = worker.clone();
        tokio::spawn(async move { worker.run(stopped).await })
    }));
    let deadline = tokio::time::Instant::now() + limit;
    let outcome = loop {
        tokio::time::sleep(POLL).await;
        let depth = match queue.depth().await {
            Ok(depth) => depth,
            Err(error) => break Err(DrainError::from(error)),
        };
        let remaining = depth.visible + depth.in_flight + depth.delayed;
        if remaining == 0 {
            break Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            break Err(DrainError::NotIdle { remaining, limit });
        }
    };
    // Ignored: the worker is gone only if it already stopped.
    let _ = stop.send(true);
    let report = match running.0.take() {
        Some(handle) => handle.await.unwrap_or_default(),
        None => WorkerReport::default(),
    };
    outcome.map(|()| report)
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<WorkerReport>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}
