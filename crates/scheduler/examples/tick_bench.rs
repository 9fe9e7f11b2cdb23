//! One scheduler tick over many practices, on Postgres with the database
//! queue: time in the claim statements, time enqueueing, jobs per second.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres \
//!     cargo run --release -p scheduler --example tick_bench -- [PRACTICES]
//! ```
//!
//! In a scratch database of its own (created, then dropped), it registers
//! PRACTICES (default 100,000) active practices on a 15-minute interval,
//! all due, then runs one tick of one scheduler (batches of 1,000) and
//! prints what it measured. Registration is set-up, not measured.

use std::time::{Duration, Instant};

use queue::{DbQueue, Queue, QueueSettings};
use scheduler::{Scheduler, SchedulerConfig};
use store::{NewPractice, PracticeStatus, Store};
use time::OffsetDateTime;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Result<()> {
    let practices: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100_000);
    let admin = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let url = Store::create_scratch_database(&admin, "tickbench").await?;
    let outcome = run(&url, practices).await;
    Store::drop_database(&admin, &url).await?;
    outcome
}

async fn run(url: &str, practices: usize) -> Result<()> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    let setup = Instant::now();
    let ids: Vec<String> = (0..practices).map(|i| format!("practice-{i:06}")).collect();
    for batch in ids.chunks(64) {
        let mut tasks = tokio::task::JoinSet::new();
        for id in batch {
            let (store, id) = (store.clone(), id.clone());
            tasks.spawn(async move {
                store
                    .upsert_practice(&NewPractice {
                        practice_id: id.clone(),
                        organization_id: "0123456789abcdef01234567".into(),
                        location_id: 7_000_000_000_001,
                        api_base: "https://prod.hs1api.com/ascend-gateway/api".into(),
                        sync_interval_minutes: 15,
                    })
                    .await?;
                store
                    .set_practice_status(&id, PracticeStatus::Active, None)
                    .await?;
                Ok::<(), store::StoreError>(())
            });
        }
        while let Some(done) = tasks.join_next().await {
            done??;
        }
    }
    println!(
        "{practices} active practices registered in {:.1} s (set-up, not measured)",
        setup.elapsed().as_secs_f64()
    );
    let queue = Queue::Database(DbQueue::new(store.clone(), QueueSettings::default()));
    let scheduler = Scheduler::new(
        store.clone(),
        queue.clone(),
        SchedulerConfig {
            scheduler_id: "bench".into(),
            batch: 1000,
            claim_for: Duration::from_secs(30 * 60),
            ..SchedulerConfig::default()
        },
    );
    let started = Instant::now();
    let report = scheduler.tick(OffsetDateTime::now_utc()).await?;
    let total = started.elapsed().as_secs_f64();
    let depth = queue.depth().await?;
    println!(
        "one tick: {} jobs enqueued in {total:.2} s = {:.0} jobs/s; claim statements {:.2} s, \
         enqueueing {:.2} s; queue now holds {} (visible {}, delayed {})",
        report.enqueued,
        report.enqueued as f64 / total.max(1e-9),
        report.claim_time.as_secs_f64(),
        report.send_time.as_secs_f64(),
        depth.visible + depth.delayed,
        depth.visible,
        depth.delayed
    );
    let again = Instant::now();
    let second = scheduler.tick(OffsetDateTime::now_utc()).await?;
    println!(
        "the next tick (nothing due): {} enqueued in {:.3} s",
        second.enqueued,
        again.elapsed().as_secs_f64()
    );
    store.close().await;
    Ok(())
}
