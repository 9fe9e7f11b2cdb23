//! The nightly role (issue 13): applies captured deletes.
//!
//! The workers record what Ascend no longer lists in `captured_deletes`
//! without touching the landed rows. A nightly pass ([`Nightly::pass`])
//! applies them, practice by practice:
//!
//! 1. the practices with pending captured deletes
//!    ([`store::Store::nightly_practices`]); each is admitted by
//!    `sync_core::nightly::admit`: a paused, removed or `auth_failed`
//!    practice's data is left as it is, and a practice outside its
//!    processing window waits (unless `ignore_window`);
//! 2. the practice's nightly lease (`nightly:{practice}`), so two nightly
//!    processes never work on one practice at once, and a pass record
//!    (`nightly_passes`, status `running`);
//! 3. its credentials, opened as a worker opens them
//!    (`worker::credentials`), and an [`OrgClient`]; a practice whose
//!    credentials fail is recorded `failed` and nothing of it is applied;
//! 4. batch by batch (up to [`NightlyConfig::batch`] pending deletes in
//!    (resource, id) order): **confirmation**, one ids-only call per
//!    [`NightlyConfig::ids_per_call`] ids (`id->[...]` plus the practice's
//!    scope filter, so a record that left the location's scope counts as
//!    absent); then one transaction per resource of the batch
//!    ([`store::Store::settle_deletes`]): the ids Ascend still lists are
//!    cancelled, the others applied. An id the answer cannot decide (a
//!    record served without a readable id) is left pending;
//! 5. the pass record's end, the lease given back.
//!
//! Then the retention: kept versions older than
//! [`NightlyConfig::retention`] are purged.
//!
//! **Invariants.** A landed row is removed only in the transaction that
//! keeps its last version, and only after Ascend was asked, in this pass,
//! and did not list it. A batch is whole or not at all: a pass killed at
//! any point leaves each batch applied or untouched, and the next pass
//! takes what is still pending (the captured deletes are the queue), so
//! it ends with the same tables.

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;

use ascend_client::{AscendClient, ClientError, Filter, ListQuery, OrgClient};
use store::{
    NightlyPassEnd, NightlyPassStart, NightlyPassStatus, NightlyPractice, NightlyTrigger,
    PendingDelete, Store, StoreError, Table,
};
use sync_core::Scope;
use sync_core::nightly::{Hold, Window, Zone, admit};
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;
use worker::credentials::{Credentials, CredentialsError};

/// How a nightly process works.
#[derive(Debug, Clone)]
pub struct NightlyConfig {
    /// Pending deletes taken per batch (settled in one transaction per
    /// resource).
    pub batch: usize,
    /// Ids per confirmation call (`id->[...]`), at most 500.
    pub ids_per_call: usize,
    /// Apply now, whatever the practices' windows (operators, tests).
    pub ignore_window: bool,
    /// How long applied deletes' last versions are kept; `None`: forever.
    pub retention: Option<Duration>,
    /// At most this many batches per practice per pass (`None`: until
    /// nothing is pending); a practice cut short is recorded `partial`.
    pub max_batches: Option<usize>,
    /// How long a practice's nightly lease lasts unless renewed (after
    /// each batch). A killed process's practices wait at most this long.
    pub lease_ttl: Duration,
    /// Who this process is, in its leases.
    pub holder: String,
    /// Where each practice's `DeletesApplied` goes (EMF; off by default).
    pub metrics: telemetry::Sink,
}

impl Default for NightlyConfig {
    fn default() -> Self {
        NightlyConfig {
            batch: 1000,
            ids_per_call: 100,
            ignore_window: false,
            retention: Some(Duration::days(365)),
            max_batches: None,
            lease_ttl: Duration::minutes(2),
            holder: default_holder(),
            metrics: telemetry::Sink::Off,
        }
    }
}

/// `nightly-{pid}-{start in ns}`: unique per process.
pub fn default_holder() -> String {
    format!(
        "nightly-{}-{}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos()
    )
}

/// A pass that could not run at all (the store could not be read).
#[derive(Debug, thiserror::Error)]
pub enum NightlyError {
    /// The store failed outside a practice's part of the pass.
    #[error("the nightly pass could not {doing}: {source}")]
    Store {
        /// What the pass was doing.
        doing: &'static str,
        /// The store's error (it says what to do).
        #[source]
        source: StoreError,
    },
}

impl NightlyError {
    /// Whether the next pass may succeed unchanged.
    pub fn is_retryable(&self) -> bool {
        match self {
            NightlyError::Store { source, .. } => source.is_retryable(),
        }
    }
}

/// Why a practice's part of a pass failed. Never holds a secret or
/// patient data.
#[derive(Debug, thiserror::Error)]
enum PracticeError {
    #[error("{0}; nothing was applied without confirmation")]
    Credentials(#[from] CredentialsError),
    #[error(
        "confirming with Ascend failed: {0}; nothing unconfirmed was applied, the next pass \
         tries again"
    )]
    Client(#[from] ClientError),
    #[error("{0}; the batch in progress was not applied, the next pass takes it again")]
    Store(#[from] StoreError),
    #[error("a batch's task ended abnormally ({0}); the next pass takes the batch again")]
    Task(String),
    #[error(
        "another nightly process took this practice's lease (this one was too slow to renew \
         it); it goes on from here"
    )]
    LeaseLost,
}

impl PracticeError {
    fn class(&self) -> String {
        match self {
            PracticeError::Credentials(e) if e.needs_reconnect => "auth".to_owned(),
            PracticeError::Credentials(_) => "transient".to_owned(),
            PracticeError::Client(e) => e.class().as_str().to_owned(),
            PracticeError::Store(_) => "store".to_owned(),
            PracticeError::LeaseLost => "lease_lost".to_owned(),
            PracticeError::Task(_) => "internal".to_owned(),
        }
    }
}

/// What a practice's part of a pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Captured deletes confirmed with Ascend.
    pub checked: u64,
    /// Applied: removed from the landed table, kept in `deleted_records`.
    pub applied: u64,
    /// Cancelled: Ascend still lists them.
    pub cancelled: u64,
    /// Left pending: the answer could not decide them.
    pub undecided: u64,
    /// Batches settled.
    pub batches: u64,
}

/// What a pass did with one practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PracticeResult {
    /// Not acted on: not syncing, or outside its window.
    Held(Hold),
    /// Another nightly process is working on it.
    Busy,
    /// Acted on, and recorded in `nightly_passes`.
    Done {
        /// How it ended.
        status: NightlyPassStatus,
        /// What it did.
        counts: Counts,
        /// Why it failed or stopped short, if it did.
        error: Option<String>,
    },
}

/// One practice of a pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PracticeOutcome {
    /// The practice.
    pub practice_id: String,
    /// Its pending captured deletes when the pass began.
    pub pending: u64,
    /// The zone its window was read in.
    pub zone: String,
    /// What happened.
    pub result: PracticeResult,
}

/// What one pass did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Its id (`nightly_passes.pass_id`).
    pub pass_id: String,
    /// Every practice with pending captured deletes, by id.
    pub practices: Vec<PracticeOutcome>,
    /// Kept versions purged by the retention.
    pub purged: u64,
}

impl PassReport {
    /// `DeletesApplied` of each practice the pass acted on.
    pub fn metrics(&self, at: OffsetDateTime) -> Vec<telemetry::Document> {
        self.practices
            .iter()
            .filter_map(|p| match &p.result {
                PracticeResult::Done { counts, .. } => Some(
                    telemetry::Document::new(at)
                        .dimension(telemetry::PRACTICE_ID, p.practice_id.clone())
                        .count(telemetry::names::DELETES_APPLIED, counts.applied),
                ),
                _ => None,
            })
            .collect()
    }

    /// Applied, all practices.
    pub fn applied(&self) -> u64 {
        self.sum(|c| c.applied)
    }

    /// Cancelled, all practices.
    pub fn cancelled(&self) -> u64 {
        self.sum(|c| c.cancelled)
    }

    /// Practices whose part failed.
    pub fn failed(&self) -> usize {
        self.practices
            .iter()
            .filter(|p| {
                matches!(
                    p.result,
                    PracticeResult::Done {
                        status: NightlyPassStatus::Failed,
                        ..
                    }
                )
            })
            .count()
    }

    fn sum(&self, f: impl Fn(&Counts) -> u64) -> u64 {
        self.practices
            .iter()
            .map(|p| match &p.result {
                PracticeResult::Done { counts, .. } => f(counts),
                _ => 0,
            })
            .sum()
    }
}

impl fmt::Display for PassReport {
    /// One line per practice, then the totals. Ids and counts only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in &self.practices {
            write!(
                f,
                "{}: {} pending, zone {}: ",
                p.practice_id, p.pending, p.zone
            )?;
            match &p.result {
                PracticeResult::Held(hold) => writeln!(f, "not applied ({hold})")?,
                PracticeResult::Busy => {
                    writeln!(f, "not applied (another nightly process is on it)")?
                }
                PracticeResult::Done {
                    status,
                    counts,
                    error,
                } => {
                    write!(
                        f,
                        "{status}: {} confirmed, {} applied, {} cancelled (still in Ascend)",
                        counts.checked, counts.applied, counts.cancelled
                    )?;
                    if counts.undecided > 0 {
                        write!(f, ", {} left pending (undecided)", counts.undecided)?;
                    }
                    match error {
                        Some(error) => writeln!(f, "; {error}")?,
                        None => writeln!(f)?,
                    }
                }
            }
        }
        write!(
            f,
            "pass {}: {} applied, {} cancelled, {} practice(s) failed, {} kept version(s) purged",
            self.pass_id,
            self.applied(),
            self.cancelled(),
            self.failed(),
            self.purged
        )
    }
}

/// The nightly role.
pub struct Nightly {
    store: Store,
    client: AscendClient,
    credentials: Arc<dyn Credentials>,
    config: NightlyConfig,
}

/// The ids one confirmation answered for.
#[derive(Debug, Default)]
struct Confirmed {
    present: Vec<i64>,
    absent: Vec<i64>,
    undecided: Vec<i64>,
}

impl Nightly {
    /// A nightly role over `store`, calling Ascend through `client` with
    /// each practice's credentials from `credentials`.
    pub fn new(
        store: Store,
        client: AscendClient,
        credentials: Arc<dyn Credentials>,
        config: NightlyConfig,
    ) -> Nightly {
        Nightly {
            store,
            client,
            credentials,
            config,
        }
    }

    /// Passes every `interval` until `stop` turns true (a pass in progress
    /// stops after its current batch). A pass that fails is logged and the
    /// next one runs on time.
    pub async fn run(&self, interval: std::time::Duration, mut stop: watch::Receiver<bool>) {
        loop {
            match self.pass(OffsetDateTime::now_utc(), &stop).await {
                Ok(report) => tracing::info!(
                    message = "Nightly pass done.",
                    pass_id = %report.pass_id,
                    applied = report.applied(),
                    cancelled = report.cancelled(),
                    failed = report.failed(),
                    purged = report.purged
                ),
                Err(error) => tracing::warn!(message = "Nightly pass failed.", %error),
            }
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One pass at `now` (the instant the windows are read at). `stop`
    /// turning true ends it after the current batch.
    pub async fn pass(
        &self,
        now: OffsetDateTime,
        stop: &watch::Receiver<bool>,
    ) -> Result<PassReport, NightlyError> {
        let pass_id = format!(
            "{}-{}",
            now.unix_timestamp_nanos() / 1_000,
            self.config.holder
        );
        let practices =
            self.store
                .nightly_practices()
                .await
                .map_err(|source| NightlyError::Store {
                    doing: "list the practices with captured deletes",
                    source,
                })?;
        let mut outcomes = Vec::with_capacity(practices.len());
        for practice in &practices {
            if *stop.borrow() {
                break;
            }
            outcomes.push(self.practice(&pass_id, practice, now, stop).await);
        }
        let purged = match self.config.retention {
            Some(keep) => {
                let before = now.checked_sub(keep).unwrap_or(now);
                self.store
                    .purge_deleted_records(before)
                    .await
                    .map_err(|source| NightlyError::Store {
                        doing: "purge deleted records past their retention",
                        source,
                    })?
            }
            None => 0,
        };
        let report = PassReport {
            pass_id,
            practices: outcomes,
            purged,
        };
        for doc in report.metrics(now) {
            self.config.metrics.emit(&doc);
        }
        Ok(report)
    }

    async fn practice(
        &self,
        pass_id: &str,
        p: &NightlyPractice,
        now: OffsetDateTime,
        stop: &watch::Receiver<bool>,
    ) -> PracticeOutcome {
        let practice_id = p.practice.practice_id.clone();
        let window = Window::new(p.window_start_minute, p.window_end_minute).unwrap_or_else(|error| {
            tracing::warn!(message = "A practice's window is not valid; using 01:00 to 05:00.", practice_id = %practice_id, %error);
            Window::DEFAULT
        });
        let zone = Zone::choose(p.location_time_zone.as_deref(), p.time_zone.as_deref());
        let outcome = |result| PracticeOutcome {
            practice_id: practice_id.clone(),
            pending: p.pending,
            zone: zone.to_string(),
            result,
        };
        if let Err(hold) = admit(
            p.practice.status,
            window,
            &zone,
            now,
            self.config.ignore_window,
        ) {
            return outcome(PracticeResult::Held(hold));
        }
        let lease = format!("nightly:{practice_id}");
        let ttl = self.config.lease_ttl;
        match self
            .store
            .acquire_lease(&lease, &self.config.holder, ttl, OffsetDateTime::now_utc())
            .await
        {
            Ok(true) => {}
            Ok(false) => return outcome(PracticeResult::Busy),
            Err(error) => {
                return outcome(PracticeResult::Done {
                    status: NightlyPassStatus::Failed,
                    counts: Counts::default(),
                    error: Some(format!(
                        "could not take the practice's nightly lease: {error}"
                    )),
                });
            }
        }
        let trigger = if self.config.ignore_window {
            NightlyTrigger::Operator
        } else {
            NightlyTrigger::Window
        };
        let start = NightlyPassStart {
            pass_id: pass_id.to_owned(),
            practice_id: practice_id.clone(),
            trigger,
            started_at: OffsetDateTime::now_utc(),
        };
        if let Err(error) = self.store.start_nightly_pass(&start).await {
            self.release(&lease, &practice_id).await;
            return outcome(PracticeResult::Done {
                status: NightlyPassStatus::Failed,
                counts: Counts::default(),
                error: Some(format!("could not record the pass: {error}")),
            });
        }
        let mut counts = Counts::default();
        let mut api_calls = 0;
        let result = self
            .apply(p, &lease, stop, &mut counts, &mut api_calls)
            .await;
        let (status, error_class, error) = match &result {
            Ok(true) if counts.undecided == 0 => (NightlyPassStatus::Succeeded, None, None),
            Ok(true) => (
                NightlyPassStatus::Partial,
                Some("bad_payload".to_owned()),
                Some(format!(
                    "{} captured delete(s) left pending: Ascend's answer could not decide them \
                     (a record without a readable id)",
                    counts.undecided
                )),
            ),
            Ok(false) => (
                NightlyPassStatus::Partial,
                None,
                Some("cut short (batch limit or shutdown); the next pass goes on".to_owned()),
            ),
            Err(error) => (
                NightlyPassStatus::Failed,
                Some(error.class()),
                Some(error.to_string()),
            ),
        };
        match &result {
            Ok(_) => tracing::info!(
                message = "Captured deletes settled.",
                practice_id = %practice_id,
                status = %status,
                checked = counts.checked,
                applied = counts.applied,
                cancelled = counts.cancelled,
                undecided = counts.undecided
            ),
            Err(error) => tracing::warn!(
                message = "A practice's captured deletes could not be applied.",
                practice_id = %practice_id,
                %error,
                applied = counts.applied,
                cancelled = counts.cancelled
            ),
        }
        let end = NightlyPassEnd {
            status,
            ended_at: OffsetDateTime::now_utc(),
            checked: counts.checked,
            applied: counts.applied,
            cancelled: counts.cancelled,
            api_calls,
            error_class,
            error_message: error.clone(),
        };
        if let Err(error) = self
            .store
            .finish_nightly_pass(pass_id, &practice_id, &end)
            .await
        {
            tracing::warn!(message = "The end of a nightly pass could not be recorded.", practice_id = %practice_id, %error);
        }
        self.release(&lease, &practice_id).await;
        outcome(PracticeResult::Done {
            status,
            counts,
            error,
        })
    }

    async fn release(&self, lease: &str, practice_id: &str) {
        if let Err(error) = self.store.release_lease(lease, &self.config.holder).await {
            tracing::warn!(message = "A nightly lease could not be given back; it expires by itself.", practice_id = %practice_id, %error);
        }
    }

    /// Confirms and settles the practice's pending deletes, batch by batch.
    /// `Ok(true)`: nothing left to take; `Ok(false)`: cut short.
    async fn apply(
        &self,
        p: &NightlyPractice,
        lease: &str,
        stop: &watch::Receiver<bool>,
        counts: &mut Counts,
        api_calls: &mut u64,
    ) -> Result<bool, PracticeError> {
        let practice_id = p.practice.practice_id.as_str();
        let opened = self.credentials.connection(&p.practice).await?;
        let org = self.client.connect(opened.connection)?;
        let scope = Scope {
            location_id: u64::try_from(p.practice.location_id)
                .ok()
                .filter(|l| *l > 0),
        };
        let result = async {
            let mut after: Option<PendingDelete> = None;
            loop {
                if *stop.borrow()
                    || self
                        .config
                        .max_batches
                        .is_some_and(|max| counts.batches >= max as u64)
                {
                    return Ok(false);
                }
                let batch = self
                    .store
                    .pending_deletes(practice_id, after, self.config.batch.max(1))
                    .await?;
                let Some(last) = batch.last() else {
                    return Ok(true);
                };
                after = Some(*last);
                for (table, ids) in by_table(&batch) {
                    let mut confirmed = Confirmed::default();
                    for chunk in ids.chunks(self.config.ids_per_call.clamp(1, 500)) {
                        let answer = confirm(&org, scope, table, chunk).await?;
                        confirmed.present.extend(answer.present);
                        confirmed.absent.extend(answer.absent);
                        confirmed.undecided.extend(answer.undecided);
                    }
                    counts.checked += (confirmed.present.len() + confirmed.absent.len()) as u64;
                    counts.undecided += confirmed.undecided.len() as u64;
                    let settled = settle(&self.store, practice_id, table, confirmed).await?;
                    counts.applied += settled.applied;
                    counts.cancelled += settled.cancelled;
                }
                counts.batches += 1;
                let renewed = self
                    .store
                    .renew_lease(
                        lease,
                        &self.config.holder,
                        self.config.lease_ttl,
                        OffsetDateTime::now_utc(),
                    )
                    .await?;
                if !renewed {
                    return Err(PracticeError::LeaseLost);
                }
            }
        }
        .await;
        *api_calls = org.stats().calls;
        result
    }
}

/// Settles a confirmed batch in a task of its own: if the pass is
/// cancelled (a shutdown, a deadline), the transaction still commits or
/// rolls back whole, and none is left open on a pooled connection (a
/// SQLite transaction dropped mid-statement was seen to leave its first
/// statements visible).
async fn settle(
    store: &Store,
    practice_id: &str,
    table: Table,
    confirmed: Confirmed,
) -> Result<store::Settled, PracticeError> {
    let store = store.clone();
    let practice_id = practice_id.to_owned();
    let task = tokio::spawn(async move {
        store
            .settle_deletes(
                &practice_id,
                table,
                &confirmed.absent,
                &confirmed.present,
                OffsetDateTime::now_utc(),
            )
            .await
    });
    match task.await {
        Ok(settled) => Ok(settled?),
        Err(error) => Err(PracticeError::Task(error.to_string())),
    }
}

/// The batch's ids grouped by table, each in id order.
fn by_table(batch: &[PendingDelete]) -> Vec<(Table, Vec<i64>)> {
    let mut groups: Vec<(Table, Vec<i64>)> = Vec::new();
    for pending in batch {
        match groups.last_mut() {
            Some((table, ids)) if *table == pending.table => ids.push(pending.record_id),
            _ => groups.push((pending.table, vec![pending.record_id])),
        }
    }
    groups
}

/// Asks Ascend which of `ids` it still lists in the practice's scope: one
/// ids-only call (more only if the answer is paged).
async fn confirm(
    org: &OrgClient,
    scope: Scope,
    table: Table,
    ids: &[i64],
) -> Result<Confirmed, ClientError> {
    let resource = table.resource();
    let filter = scope
        .base_filter(resource)
        .and(Filter::new().is_in("id", ids.iter().copied()));
    let page_size = u32::try_from(ids.len()).unwrap_or(500).clamp(1, 500);
    let query = ListQuery::new()
        .with_filter(filter)
        .with_page_size(page_size)
        .with_ids_only();
    let mut listed = BTreeSet::new();
    let mut unreadable = false;
    let mut pager = org.keyset(resource, query, None);
    while let Some(page) = pager.next_page().await? {
        for record in &page.records {
            if let Ok(id) = i64::try_from(record.id.0) {
                listed.insert(id);
            }
        }
        for rejected in &page.rejected {
            match rejected.numeric_id.and_then(|id| i64::try_from(id.0).ok()) {
                Some(id) => {
                    listed.insert(id);
                }
                None => unreadable = true,
            }
        }
    }
    let mut confirmed = Confirmed::default();
    for &id in ids {
        if listed.contains(&id) {
            confirmed.present.push(id);
        } else if unreadable {
            // A record whose id could not be read may be this one: never
            // remove what might be live.
            confirmed.undecided.push(id);
        } else {
            confirmed.absent.push(id);
        }
    }
    Ok(confirmed)
}
