//! Write-back end to end (issue 15): a practice synced from the simulator
//! into a real store, requests submitted through `control::writeback`, and
//! the scheduler's write-back jobs run by a worker against the simulator,
//! which records every write it receives.
//!
//! What a practice would notice: what it enabled arrives in Ascend exactly
//! once, whatever was lost on the way (answers lost after the write was
//! applied, 5xx, a worker gone mid-send); what it did not enable never
//! arrives; turning a type on releases only later items; a paused or
//! removed practice sends nothing; a key submitted twice arrives once; and
//! what was written comes back into the landed tables with the next sync.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use ascend_sim::{FaultConfig, FaultKind, ScriptedFault, SimConfig, Size, WriteRecord};
use model::writeback::WriteContext;
use model::{ItemStatus, OutboxItem, PracticeStatus, Write, WritebackType};
use queue::{DbQueue, Queue, QueueSettings};
use scheduler::{Scheduler, SchedulerConfig};
use serde_json::{Value, json};
use store::{NewPractice, SettingsChange, Table};
use system_tests::{Db, Sim, TempDir, TestStore, test_client_config};
use time::OffsetDateTime;
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

const PRACTICE: &str = "practice-1";
const ACTOR: &str = "test:writeback";

struct Fixture {
    sim: Sim,
    store: TestStore,
    queue: Queue,
    worker: Worker,
    scheduler: Scheduler,
    _archive_dir: TempDir,
    patients: Vec<u64>,
    appointments: Vec<u64>,
    provider: u64,
}

impl Fixture {
    /// A practice of organization 0 (one location), synced, with every
    /// write-back type off.
    async fn synced(db: Db, seed: u64) -> Result<Fixture> {
        let sim = Sim::start(SimConfig {
            size: Size::Tiny,
            seed,
            ..SimConfig::default()
        })
        .await?;
        let store = TestStore::new(db).await?;
        let archive_dir = TempDir::new("archive")?;
        let archive = blob::Archive::local(archive_dir.path().to_path_buf())?;
        let info = sim.org(0);
        let location: u64 = info.location_ids.first().context("no location")?.parse()?;
        store
            .store
            .upsert_practice(&NewPractice {
                practice_id: PRACTICE.into(),
                organization_id: info.organization_id.clone(),
                location_id: i64::try_from(location)?,
                api_base: info.api_base.clone(),
                sync_interval_minutes: 15,
            })
            .await?;
        let queue = Queue::from(DbQueue::new(
            store.store.clone(),
            QueueSettings {
                max_receive_count: 20,
                visibility: Duration::from_secs(5),
            },
        ));
        // A short request timeout, so an answer lost to a timeout costs
        // the test seconds, not a minute.
        let mut config = test_client_config(1000)?;
        config.request_timeout = Duration::from_secs(2);
        let budget = worker::budget::FleetBudget::new(
            store.store.clone(),
            sync_core::budget::Policy::new(1000.0),
        );
        let client = ascend_client::AscendClient::with_budget(config, Arc::new(budget))?;
        let worker = Worker::new(
            Syncer::new(store.store.clone(), archive, SyncConfig::default()),
            queue.clone(),
            client,
            Arc::new(FixedCredentials(sim.connection(0)?)),
            WorkerConfig {
                worker_id: "test-worker".into(),
                concurrency: 2,
                visibility: Duration::from_secs(5),
                receive_wait: Duration::from_millis(200),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                writeback_retry_base: Duration::from_millis(50),
                ..WorkerConfig::default()
            },
        );
        let synced = control::sync_and_wait(
            &store.store,
            &queue,
            &worker,
            PRACTICE,
            Duration::from_secs(300),
        )
        .await?;
        ensure!(
            synced.practice.status == PracticeStatus::Active,
            "the initial sync did not complete: {:?}",
            synced.practice.status
        );
        let ids = |table| {
            let store = store.store.clone();
            async move {
                Ok::<Vec<u64>, anyhow::Error>(
                    store
                        .landed_records(PRACTICE, table)
                        .await?
                        .into_iter()
                        .filter_map(|r| u64::try_from(r.id).ok())
                        .collect(),
                )
            }
        };
        let patients = ids(Table::Patients).await?;
        let appointments = ids(Table::Appointments).await?;
        let provider = *ids(Table::Providers)
            .await?
            .first()
            .context("no provider landed")?;
        ensure!(
            patients.len() >= 4 && appointments.len() >= 3,
            "too few records landed"
        );
        let scheduler = Scheduler::new(
            store.store.clone(),
            queue.clone(),
            SchedulerConfig::default(),
        );
        Ok(Fixture {
            sim,
            store,
            queue,
            worker,
            scheduler,
            _archive_dir: archive_dir,
            patients,
            appointments,
            provider,
        })
    }

    async fn switch(&self, enable: &[WritebackType], disable: &[WritebackType]) -> Result<()> {
        let mut change = SettingsChange::default();
        change.switch.extend(enable.iter().map(|k| (*k, true)));
        change.switch.extend(disable.iter().map(|k| (*k, false)));
        if enable.contains(&WritebackType::SmsLog) {
            change.note_provider_id = Some(Some(self.provider));
        }
        control::writeback::change_settings(&self.store.store, PRACTICE, &change, ACTOR).await?;
        Ok(())
    }

    async fn submit(&self, kind: WritebackType, key: &str, body: Value) -> Result<OutboxItem> {
        let submitted = control::writeback::submit(
            &self.store.store,
            PRACTICE,
            kind.as_str(),
            key,
            &body,
            ACTOR,
        )
        .await?;
        Ok(submitted.item)
    }

    async fn item(&self, item_id: i64) -> Result<OutboxItem> {
        self.store
            .store
            .writeback_item(item_id)
            .await?
            .context("the item vanished")
    }

    /// Ticks the scheduler and runs the worker until no item is due any
    /// more (items retried later are waited for), at most `rounds` times.
    async fn send_due(&self, rounds: usize) -> Result<()> {
        for _ in 0..rounds {
            self.scheduler.tick(OffsetDateTime::now_utc()).await?;
            worker::drain::run_until_idle(&self.worker, &self.queue, Duration::from_secs(120))
                .await?;
            let waiting = self
                .store
                .store
                .writeback_items(Some(PRACTICE), None, 10_000)
                .await?
                .into_iter()
                .filter(|i| {
                    matches!(
                        i.status,
                        ItemStatus::Pending | ItemStatus::Failed | ItemStatus::Sending
                    )
                })
                .count();
            if waiting == 0 {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        bail!("write-back items were still waiting after {rounds} rounds")
    }

    /// The writes the simulator applied.
    async fn applied(&self) -> Result<Vec<WriteRecord>> {
        Ok(self
            .sim
            .writes(0)
            .await?
            .into_iter()
            .filter(|w| w.applied)
            .collect())
    }
}

/// Applied writes whose body carries `marker`.
fn carrying(writes: &[WriteRecord], marker: &str) -> usize {
    writes
        .iter()
        .filter(|w| w.body.to_string().contains(marker))
        .count()
}

fn sms(patient: u64, text: &str) -> Value {
    json!({"patient_id": patient.to_string(), "direction": "outbound", "phone": "+15550100",
           "text": text, "sent_at": "2026-12-04T10:00:00Z"})
}

fn email(patient: u64) -> Value {
    json!({"patient_id": patient, "direction": "outbound", "subject": "Your visit",
           "body": "See you soon", "sent_at": "2026-12-04T10:00:00Z"})
}

fn call(patient: u64) -> Value {
    json!({"patient_id": patient.to_string(), "direction": "inbound", "summary": "Asked to move",
           "duration_seconds": 95, "at": "2026-12-04T10:05:00Z"})
}

/// Every type, one request each; returns (type, key, body).
fn one_of_each(f: &Fixture) -> Vec<(WritebackType, String, Value)> {
    let p = &f.patients;
    vec![
        (
            WritebackType::SmsLog,
            "sms-1".into(),
            sms(p[0], "Reminder: cleaning tomorrow 9:00"),
        ),
        (WritebackType::EmailLog, "email-1".into(), email(p[1])),
        (WritebackType::CallLog, "call-1".into(), call(p[2])),
        (
            WritebackType::Confirmation,
            "confirm-1".into(),
            json!({"appointment_id": f.appointments[0].to_string(), "status": "CONFIRMED"}),
        ),
        (
            WritebackType::Document,
            "doc-1".into(),
            json!({"patient_id": p[3].to_string(), "name": "Consent form", "content_type": "application/pdf",
                   "content_base64": "JVBERi0xLjQKJcfsj6IK"}),
        ),
        (
            WritebackType::NewPatient,
            "patient-1".into(),
            json!({"first_name": "Wilhelmina", "last_name": "Quistgaard", "date_of_birth": "1990-02-03"}),
        ),
        (
            WritebackType::NewAppointment,
            "appt-1".into(),
            json!({"patient_id": p[0].to_string(), "start": "2027-01-05T09:00:00Z", "duration_minutes": 45,
                   "note": "New-patient exam"}),
        ),
    ]
}

/// How many applied writes are this item's: by marker, a confirmation's
/// PUTs to its appointment, a new patient's POSTs with its name.
fn arrivals(writes: &[WriteRecord], item: &OutboxItem) -> Result<usize> {
    let write: Write = serde_json::from_str(&item.body)?;
    Ok(match &write {
        Write::Confirmation(c) => writes
            .iter()
            .filter(|w| w.method == "PUT" && w.path.ends_with(&format!("/{}", c.appointment_id)))
            .count(),
        Write::NewPatient(p) => writes
            .iter()
            .filter(|w| {
                w.method == "POST"
                    && w.path.ends_with("/v1/patients")
                    && w.body.get("lastName").and_then(Value::as_str) == Some(&p.last_name)
            })
            .count(),
        _ => carrying(writes, &item.marker),
    })
}

async fn every_enabled_type_arrives_once_and_a_disabled_one_never(db: Db) -> Result<()> {
    let f = Fixture::synced(db, 151).await?;
    let all = one_of_each(&f);
    let enabled: Vec<WritebackType> = all
        .iter()
        .map(|(k, _, _)| *k)
        .filter(|k| *k != WritebackType::CallLog)
        .collect();
    f.switch(&enabled, &[]).await?;
    let mut items = Vec::new();
    for (kind, key, body) in &all {
        items.push(f.submit(*kind, key, body.clone()).await?);
    }
    // The same key again stores nothing and returns the first item.
    let again = f.submit(all[0].0, &all[0].1, all[0].2.clone()).await?;
    ensure!(
        again.item_id == items[0].item_id,
        "a repeated key stored a second item"
    );
    f.send_due(20).await?;
    let applied = f.applied().await?;
    for item in &items {
        let item = f.item(item.item_id).await?;
        let n = arrivals(&applied, &item)?;
        if item.kind == WritebackType::CallLog {
            ensure!(n == 0, "a disabled call log reached Ascend");
            ensure!(
                item.status == ItemStatus::Blocked,
                "the call log is {}",
                item.status
            );
            ensure!(
                item.reason.as_deref().is_some_and(|r| r.contains("off")),
                "{:?}",
                item.reason
            );
        } else {
            ensure!(n == 1, "{} arrived {n} times", item.kind);
            ensure!(
                item.status == ItemStatus::Sent,
                "{} is {}",
                item.kind,
                item.status
            );
            ensure!(item.ascend_id.is_some() && !item.found, "{item:?}");
        }
    }
    // No call log of any kind was written.
    ensure!(
        !applied.iter().any(|w| w.path.contains("calllogs")),
        "a call log was written"
    );
    // What was created comes back with the next sync, like any change.
    control::sync_and_wait(
        &f.store.store,
        &f.queue,
        &f.worker,
        PRACTICE,
        Duration::from_secs(120),
    )
    .await?;
    let landed = |table| f.store.store.landed_records(PRACTICE, table);
    let by_id = |records: &[store::LandedRecord], id: u64| {
        records
            .iter()
            .find(|r| u64::try_from(r.id).ok() == Some(id))
            .map(|r| r.raw.clone())
    };
    let patient = f
        .item(items[5].item_id)
        .await?
        .ascend_id
        .context("no patient id")?;
    ensure!(
        by_id(&landed(Table::Patients).await?, patient).is_some(),
        "the new patient did not land"
    );
    let appointment = f
        .item(items[6].item_id)
        .await?
        .ascend_id
        .context("no appointment id")?;
    let appointments = landed(Table::Appointments).await?;
    ensure!(
        by_id(&appointments, appointment).is_some(),
        "the new appointment did not land"
    );
    let confirmed = by_id(&appointments, f.appointments[0]).context("appointment gone")?;
    ensure!(
        confirmed.contains("\"CONFIRMED\""),
        "the confirmation did not land: {confirmed}"
    );
    f.sim.shutdown().await;
    f.store.remove().await
}

#[tokio::test]
async fn every_enabled_type_arrives_once_and_a_disabled_one_never_postgres() -> Result<()> {
    every_enabled_type_arrives_once_and_a_disabled_one_never(Db::Postgres).await
}

#[tokio::test]
async fn every_enabled_type_arrives_once_and_a_disabled_one_never_sqlite() -> Result<()> {
    every_enabled_type_arrives_once_and_a_disabled_one_never(Db::Sqlite).await
}

/// Lost answers (after the write was applied: a 500, a 502, a timeout),
/// a 503 before it was applied, and a 429: each item arrives once.
async fn lost_answers_and_errors_never_duplicate(db: Db) -> Result<()> {
    let f = Fixture::synced(db, 152).await?;
    let all = one_of_each(&f);
    let kinds: Vec<WritebackType> = all.iter().map(|(k, _, _)| *k).collect();
    f.switch(&kinds, &[]).await?;
    let scripted = |fault, path: &str, status| ScriptedFault {
        fault,
        count: 1,
        path_contains: Some(path.to_owned()),
        retry_after_secs: None,
        slow_ms: None,
        status,
    };
    f.sim
        .set_faults(
            0,
            &FaultConfig {
                script: vec![
                    scripted(FaultKind::LostReply, "/notes", Some(500)),
                    scripted(FaultKind::LostReply, "/communications", None),
                    scripted(FaultKind::Error5xx, "/calllogs", Some(503)),
                    scripted(FaultKind::RateLimited, "/calllogs", None),
                    scripted(FaultKind::LostReply, "/documents", Some(502)),
                    scripted(FaultKind::LostReply, "/v1/appointments/", Some(504)),
                    scripted(FaultKind::LostReply, "/v1/patients", Some(500)),
                ],
                ..FaultConfig::default()
            },
        )
        .await?;
    let mut items = Vec::new();
    for (kind, key, body) in &all {
        items.push(f.submit(*kind, key, body.clone()).await?);
    }
    f.send_due(30).await?;
    let applied = f.applied().await?;
    let mut found = 0;
    for item in &items {
        let item = f.item(item.item_id).await?;
        ensure!(
            item.status == ItemStatus::Sent,
            "{} is {}: {:?}",
            item.kind,
            item.status,
            item.reason
        );
        let n = arrivals(&applied, &item)?;
        ensure!(n == 1, "{} arrived {n} times", item.kind);
        found += usize::from(item.found);
    }
    // The answers lost after the write was applied were found, not resent.
    ensure!(
        found >= 3,
        "only {found} items were found after a lost answer"
    );
    f.sim.shutdown().await;
    f.store.remove().await
}

#[tokio::test]
async fn lost_answers_and_errors_never_duplicate_postgres() -> Result<()> {
    lost_answers_and_errors_never_duplicate(Db::Postgres).await
}

#[tokio::test]
async fn lost_answers_and_errors_never_duplicate_sqlite() -> Result<()> {
    lost_answers_and_errors_never_duplicate(Db::Sqlite).await
}

/// A worker gone mid-send, at both moments that matter: after the send was
/// recorded but before the request left, and after the request was
/// applied but before its answer was recorded. The next job sends the
/// first once and finds the second.
#[tokio::test]
async fn a_worker_gone_mid_send_neither_loses_nor_repeats() -> Result<()> {
    let f = Fixture::synced(Db::Postgres, 153).await?;
    f.switch(&[WritebackType::SmsLog], &[]).await?;
    let before_request = f
        .submit(WritebackType::SmsLog, "gone-1", sms(f.patients[0], "one"))
        .await?;
    let after_request = f
        .submit(WritebackType::SmsLog, "gone-2", sms(f.patients[1], "two"))
        .await?;
    let now = OffsetDateTime::now_utc();
    ensure!(
        f.store
            .store
            .begin_writeback(before_request.item_id, now)
            .await?
    );
    ensure!(
        f.store
            .store
            .begin_writeback(after_request.item_id, now)
            .await?
    );
    // The second's request reached Ascend; the worker died before it
    // recorded the answer.
    let client = system_tests::test_client(1000)?;
    let org = system_tests::connect(&client, &f.sim, 0)?;
    let write: Write = serde_json::from_str(&after_request.body)?;
    let ctx = WriteContext {
        marker: after_request.marker.clone(),
        note_provider_id: Some(f.provider),
        location_id: 0,
    };
    let sent = org
        .send_write(&write, &ctx)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    f.send_due(10).await?;
    let applied = f.applied().await?;
    let first = f.item(before_request.item_id).await?;
    let second = f.item(after_request.item_id).await?;
    ensure!(
        carrying(&applied, &first.marker) == 1,
        "the unsent item did not arrive once"
    );
    ensure!(
        !first.found && first.status == ItemStatus::Sent,
        "{first:?}"
    );
    ensure!(
        carrying(&applied, &second.marker) == 1,
        "the applied item was sent again"
    );
    ensure!(
        second.found && second.ascend_id == Some(sent.ascend_id),
        "{second:?}"
    );
    f.sim.shutdown().await;
    f.store.remove().await
}

/// Turning a type on releases only items submitted after it; a switch
/// turned off holds what is pending from the next job on; turning it on
/// again does not release what was held.
#[tokio::test]
async fn switches_release_only_later_items_and_take_effect_for_the_next_job() -> Result<()> {
    let f = Fixture::synced(Db::Postgres, 154).await?;
    let held = f
        .submit(WritebackType::SmsLog, "early", sms(f.patients[0], "early"))
        .await?;
    ensure!(
        held.status == ItemStatus::Blocked,
        "submitted while off: {}",
        held.status
    );
    f.switch(&[WritebackType::SmsLog, WritebackType::EmailLog], &[])
        .await?;
    let later = f
        .submit(WritebackType::SmsLog, "later", sms(f.patients[1], "later"))
        .await?;
    ensure!(
        later.status == ItemStatus::Pending,
        "submitted while on: {}",
        later.status
    );
    let email_item = f
        .submit(WritebackType::EmailLog, "mail", email(f.patients[2]))
        .await?;
    // Email is turned off before any job ran: the next job holds it.
    f.switch(&[], &[WritebackType::EmailLog]).await?;
    f.send_due(10).await?;
    let applied = f.applied().await?;
    ensure!(
        carrying(&applied, &later.marker) == 1,
        "the later SMS did not arrive once"
    );
    ensure!(
        carrying(&applied, &held.marker) == 0,
        "the SMS held before the switch arrived"
    );
    ensure!(
        carrying(&applied, &email_item.marker) == 0,
        "an email arrived while email was off"
    );
    ensure!(f.item(email_item.item_id).await?.status == ItemStatus::Blocked);
    // On again: what was held stays held.
    f.switch(&[WritebackType::EmailLog], &[]).await?;
    f.send_due(10).await?;
    let applied = f.applied().await?;
    ensure!(
        carrying(&applied, &email_item.marker) == 0,
        "turning email on released an older item"
    );
    ensure!(carrying(&applied, &held.marker) == 0);
    // Every change was audited with its old and new value.
    let audit = f.store.store.audit_log(Some(PRACTICE), 100).await?;
    let switches: Vec<&str> = audit
        .iter()
        .filter(|a| a.action == "writeback.switch")
        .filter_map(|a| a.detail.as_deref())
        .collect();
    for expected in [
        "sms_log: off -> on",
        "email_log: off -> on",
        "email_log: on -> off",
    ] {
        ensure!(
            switches.contains(&expected),
            "no audit row {expected:?} in {switches:?}"
        );
    }
    ensure!(
        audit
            .iter()
            .all(|a| a.actor == ACTOR || a.action != "writeback.switch")
    );
    ensure!(
        audit.iter().any(|a| a.action == "writeback.note_provider"),
        "the note provider change was not audited"
    );
    f.sim.shutdown().await;
    f.store.remove().await
}

/// A paused practice, then a removed one, sends nothing, even with a job
/// already queued.
#[tokio::test]
async fn a_paused_or_removed_practice_sends_nothing() -> Result<()> {
    let f = Fixture::synced(Db::Postgres, 155).await?;
    f.switch(&[WritebackType::SmsLog], &[]).await?;
    let item = f
        .submit(WritebackType::SmsLog, "paused", sms(f.patients[0], "x"))
        .await?;
    // A job is queued, then the practice is paused before it runs.
    let report = f.scheduler.tick(OffsetDateTime::now_utc()).await?;
    ensure!(
        report.writebacks == 1,
        "no write-back job was sent: {report:?}"
    );
    control::disable(&f.store.store, PRACTICE, ACTOR).await?;
    worker::drain::run_until_idle(&f.worker, &f.queue, Duration::from_secs(60)).await?;
    let report = f.scheduler.tick(OffsetDateTime::now_utc()).await?;
    ensure!(
        report.writebacks == 0,
        "a paused practice got a write-back job"
    );
    control::remove(&f.store.store, PRACTICE, ACTOR).await?;
    let report = f.scheduler.tick(OffsetDateTime::now_utc()).await?;
    ensure!(
        report.writebacks == 0,
        "a removed practice got a write-back job"
    );
    worker::drain::run_until_idle(&f.worker, &f.queue, Duration::from_secs(60)).await?;
    ensure!(f.sim.writes(0).await?.is_empty(), "a write reached Ascend");
    ensure!(
        f.item(item.item_id).await?.status == ItemStatus::Pending,
        "the item is not waiting"
    );
    f.sim.shutdown().await;
    f.store.remove().await
}

/// Bad requests are refused at submit time, with a clear error, storing
/// nothing.
#[tokio::test]
async fn bad_requests_are_refused_at_submit() -> Result<()> {
    let f = Fixture::synced(Db::Sqlite, 156).await?;
    f.switch(&[WritebackType::SmsLog, WritebackType::Document], &[])
        .await?;
    let unknown_patient = 999_999_999u64;
    let big = "AAAA".repeat(sync_core::writeback::MAX_DOCUMENT_BYTES / 3 + 10);
    let cases: Vec<(&str, &str, Value, &str)> = vec![
        ("fax_log", "k1", json!({}), "not a valid write-back type"),
        (
            "sms_log",
            "k2",
            json!({"patient_id": "1"}),
            "'direction' is required",
        ),
        (
            "sms_log",
            "k3",
            sms(unknown_patient, "x"),
            "unknown patient",
        ),
        (
            "sms_log",
            "bad key!",
            sms(f.patients[0], "x"),
            "idempotency key",
        ),
        (
            "document",
            "k4",
            json!({"patient_id": f.patients[0].to_string(), "name": "scan", "content_type": "image/png", "content_base64": big}),
            "at most 5242880 bytes",
        ),
        (
            "confirmation",
            "k5",
            json!({"appointment_id": "999999999", "status": "CONFIRMED"}),
            "unknown appointment",
        ),
    ];
    for (kind, key, body, expected) in cases {
        match control::writeback::submit(&f.store.store, PRACTICE, kind, key, &body, ACTOR).await {
            Ok(s) => bail!("{kind} {key} was accepted: {:?}", s.item.status),
            Err(e) => ensure!(
                e.to_string().contains(expected),
                "{kind}: {e} does not say {expected:?}"
            ),
        }
    }
    // A key reused for a different request is refused too.
    f.submit(WritebackType::SmsLog, "once", sms(f.patients[0], "first"))
        .await?;
    let reused = f
        .submit(WritebackType::SmsLog, "once", sms(f.patients[0], "second"))
        .await;
    ensure!(
        reused
            .as_ref()
            .is_err_and(|e| e.to_string().contains("used before")),
        "a reused key was not refused: {reused:?}"
    );
    let stored = f
        .store
        .store
        .writeback_items(Some(PRACTICE), None, 100)
        .await?;
    ensure!(stored.len() == 1, "{} items stored", stored.len());
    // sms_log without a provider is refused.
    let change = SettingsChange {
        note_provider_id: Some(None),
        ..SettingsChange::default()
    };
    let refused =
        control::writeback::change_settings(&f.store.store, PRACTICE, &change, ACTOR).await;
    ensure!(refused.is_err(), "sms_log was left on without a provider");
    f.sim.shutdown().await;
    f.store.remove().await
}

/// An item Ascend refuses (its appointment was deleted in Ascend after it
/// was submitted) is given up at once, not retried, and stays visible with
/// the reason; the rest of the outbox goes on.
#[tokio::test]
async fn an_item_ascend_refuses_is_given_up_visibly_and_the_rest_goes_on() -> Result<()> {
    let f = Fixture::synced(Db::Postgres, 157).await?;
    f.switch(&[WritebackType::Confirmation, WritebackType::SmsLog], &[])
        .await?;
    let gone = f.appointments[1];
    let refused = f
        .submit(
            WritebackType::Confirmation,
            "confirm-gone",
            json!({"appointment_id": gone.to_string(), "status": "CONFIRMED"}),
        )
        .await?;
    let after = f
        .submit(WritebackType::SmsLog, "after", sms(f.patients[0], "next"))
        .await?;
    f.sim
        .api(
            0,
            reqwest::Method::DELETE,
            &format!("/v1/appointments/{gone}"),
            None,
        )
        .await?;
    f.send_due(10).await?;
    let item = f.item(refused.item_id).await?;
    ensure!(item.status == ItemStatus::Dead, "{item:?}");
    ensure!(
        item.attempts == 1,
        "a refusal was retried: {} sends",
        item.attempts
    );
    ensure!(
        item.reason
            .as_deref()
            .is_some_and(|r| r.contains("refused by Ascend")),
        "{:?}",
        item.reason
    );
    ensure!(f.item(after.item_id).await?.status == ItemStatus::Sent);
    let listed = f
        .store
        .store
        .writeback_items(Some(PRACTICE), Some(ItemStatus::Dead), 10)
        .await?;
    ensure!(listed.len() == 1, "the dead item is not listed");
    // The run that gave it up says so.
    let runs = f
        .store
        .store
        .history(&store::HistoryQuery {
            practice_id: Some(PRACTICE.into()),
            failed_only: false,
            since: None,
            limit: 100,
        })
        .await?;
    ensure!(
        runs.iter().any(|r| r.kind == "writeback"
            && r.status == store::RunState::Partial
            && r.error_message
                .as_deref()
                .is_some_and(|m| m.contains("given up 1"))),
        "no partial write-back run says it gave an item up"
    );
    f.sim.shutdown().await;
    f.store.remove().await
}
