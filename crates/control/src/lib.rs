//! The use cases: what a person (at the CLI, later the admin API), the
//! demo and the tests ask of the system, each written once. None of them
//! decides who may ask (that is `access::Gate`, in front of every caller);
//! each does the whole of its change, audited.
//!
//! - [`connect`]: hold the token URL and API base to the host policy
//!   ([`Connector::hosts`]), prove a practice's credentials with one cheap
//!   call, seal them with both URLs (the vault), store and audit; the
//!   initial sync is due at once. The admin API calls it too, so a URL
//!   outside the vendor's hosts is refused there the same way.
//! - [`rotate_credentials`]: prove and seal new credentials; an
//!   `auth_failed` practice resumes.
//! - [`enable`], [`disable`], [`remove`]: the lifecycle.
//! - [`force_sync`]: Force Sync Now; [`force_sync_by`] as a person asks
//!   it, audited.
//! - [`redrive`]: dead letters back to their lanes, audited.
//! - [`writeback::submit`], [`writeback::change_settings`]: write-back
//!   requests into the outbox, and the switches that say what may be sent.
//! - [`admin::change_window`], [`admin::rewrap_keys`],
//!   [`admin::set_budget`], [`admin::register`]: a practice's processing
//!   window, every data key under another key, an organization's request
//!   budget, a practice registered without credentials (the by-hand
//!   `sync`).
//!
//! A refused proof is audited as `failed` and explained; nothing is saved.

pub mod admin;
pub mod writeback;

use std::time::Duration;

use ascend_client::{AscendClient, ClientError, Connection};
use model::{Endpoint, HostPolicy, Job, NewPractice, Practice, PracticeStatus, Trigger};
use queue::Queue;
use secrecy::{ExposeSecret, SecretString};
use store::{AuditEntry, AuditOutcome, ForceDecision, SealedCredentials, Store};
use time::OffsetDateTime;
use url::Url;
use vault::{AscendCredentials, Endpoints, Vault};
use worker::credentials::{Credentials, CredentialsError, VaultCredentials, to_stored};

/// Why a use case did not happen. Each says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Ascend refused the proving call; nothing was saved.
    #[error("Ascend refused the connection; nothing was saved: {0}")]
    Refused(#[source] ClientError),
    /// The proving call failed for another reason; nothing was saved.
    #[error("the proving call failed; nothing was saved: {0}")]
    NotProved(#[source] ClientError),
    /// The request itself is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The credentials could not be sealed; nothing was saved.
    #[error("cannot seal the credentials; nothing was saved: {0}")]
    Seal(#[source] vault::VaultError),
    /// The stored credentials could not be opened.
    #[error("{0}")]
    Credentials(#[from] CredentialsError),
    /// The store refused or failed.
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    /// Nothing was enqueued.
    #[error("queue: {0}; nothing was enqueued, try again")]
    Queue(#[from] queue::QueueError),
    /// The practice is not synced in its status.
    #[error("the practice is {0}: enable or reconnect it first")]
    NotSyncable(PracticeStatus),
    /// The jobs did not finish.
    #[error("{0}")]
    Drain(#[from] worker::drain::DrainError),
}

/// How long a Force Sync Now's claim holds the practice (the CLI's `force`
/// uses the same): a job lost in the queue delays the practice by at most
/// this much.
pub const FORCE_CLAIM: Duration = Duration::from_secs(30 * 60);

/// What [`sync_and_wait`] ran.
#[derive(Debug)]
pub struct Synced {
    /// Every attempt of the sync, oldest first.
    pub runs: Vec<store::RunRecord>,
    /// The practice afterwards.
    pub practice: Practice,
}

impl Synced {
    /// Records fetched by all the attempts.
    #[must_use]
    pub fn fetched(&self) -> i64 {
        self.runs.iter().filter_map(|r| r.fetched).sum()
    }

    /// API calls made by all the attempts.
    #[must_use]
    pub fn api_calls(&self) -> i64 {
        self.runs.iter().filter_map(|r| r.api_calls).sum()
    }
}

/// Force Sync Now, then runs `worker` until `queue` is empty, and returns
/// the attempts: how the by-hand `sync` command and the tests run a sync,
/// through the very jobs production runs (the initial sync's plan and
/// chunks, or an incremental cycle) on an in-process queue.
pub async fn sync_and_wait(
    store: &Store,
    queue: &Queue,
    worker: &worker::jobs::Worker,
    practice_id: &str,
    limit: Duration,
) -> Result<Synced, ControlError> {
    let started = OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
    match force_sync(store, queue, practice_id, Trigger::Admin, FORCE_CLAIM).await? {
        ForceDecision::NotSyncable { status } => return Err(ControlError::NotSyncable(status)),
        ForceDecision::Enqueue { .. }
        | ForceDecision::AlreadyQueued { .. }
        | ForceDecision::AlreadyRunning { .. }
        | ForceDecision::InitialSyncRunning { .. } => {}
    }
    worker::drain::run_until_idle(worker, queue, limit).await?;
    let mut runs = store
        .history(&store::HistoryQuery {
            practice_id: Some(practice_id.to_owned()),
            failed_only: false,
            since: Some(started),
            limit: 100_000,
        })
        .await?;
    runs.reverse();
    Ok(Synced {
        runs,
        practice: registered(store, practice_id).await?,
    })
}

/// A practice to connect, with its credentials.
pub struct NewConnection {
    /// The practice and its settings.
    pub practice: NewPractice,
    /// The OAuth token URL.
    pub token_url: String,
    /// The Ascend Client ID.
    pub client_id: String,
    /// The Ascend Client Secret.
    pub client_secret: SecretString,
}

/// What a use case needs to prove and seal credentials.
#[derive(Clone)]
pub struct Connector {
    /// Where everything is stored.
    pub store: Store,
    /// Seals and opens credentials.
    pub vault: Vault,
    /// Makes the proving call.
    pub client: AscendClient,
    /// Where credentials may be sent: the vendor's hosts, and a test host
    /// only when the deployment allows one.
    pub hosts: HostPolicy,
}

/// Connects a practice (`practice add`): the token URL and API base must
/// pass `with.hosts` (else [`ControlError::Invalid`], audited as refused,
/// before any call); one `pageSize=1` call proves the Client ID, Secret,
/// Organization-ID and the vendor's enablement; then the credentials are
/// sealed with both URLs and stored, audited as `practice.add` by
/// `actor`, and the initial sync is due at once.
pub async fn connect(
    with: &Connector,
    new: NewConnection,
    actor: &str,
) -> Result<Practice, ControlError> {
    let practice = &new.practice;
    if !model::SYNC_INTERVALS_MINUTES.contains(&practice.sync_interval_minutes) {
        return Err(ControlError::Invalid(format!(
            "an interval of {} minutes is not offered: choose one of {:?}",
            practice.sync_interval_minutes,
            model::SYNC_INTERVALS_MINUTES
        )));
    }
    model::check_practice_id(&practice.practice_id).map_err(ControlError::Invalid)?;
    let sealed = prove_and_seal(
        with,
        actor,
        "practice.add",
        &practice.practice_id,
        &practice.organization_id,
        &practice.api_base,
        &new.token_url,
        new.client_id.clone(),
        new.client_secret,
    )
    .await?;
    Ok(with
        .store
        .connect_practice(practice, &sealed, actor)
        .await?)
}

/// Replaces a practice's credentials (`practice rotate-credentials`):
/// the URLs checked as [`connect`] checks them, proved and sealed first
/// (always as v2, with the practice's API base and the token URL: this is
/// how a row sealed before URLs were bound is upgraded); an `auth_failed`
/// practice resumes. Without a `token_url` the stored one is kept.
pub async fn rotate_credentials(
    with: &Connector,
    practice_id: &str,
    token_url: Option<&str>,
    client_id: String,
    client_secret: SecretString,
    actor: &str,
) -> Result<Practice, ControlError> {
    let practice = registered(&with.store, practice_id).await?;
    let token_url = match token_url {
        Some(url) => url.to_owned(),
        None => with
            .store
            .practice_credentials(practice_id)
            .await?
            .map(|c| c.token_url)
            .ok_or_else(|| {
                ControlError::Invalid(format!(
                    "practice {practice_id:?} has no stored token URL: give one"
                ))
            })?,
    };
    let sealed = prove_and_seal(
        with,
        actor,
        "practice.rotate-credentials",
        practice_id,
        &practice.organization_id,
        &practice.api_base,
        &token_url,
        client_id,
        client_secret,
    )
    .await?;
    Ok(with
        .store
        .replace_credentials(practice_id, &sealed, actor)
        .await?)
}

/// Resumes a paused or `auth_failed` practice (`practice enable`), due at
/// once; an `auth_failed` practice's stored credentials are proved first.
pub async fn enable(
    with: &Connector,
    practice_id: &str,
    actor: &str,
) -> Result<Practice, ControlError> {
    let practice = registered(&with.store, practice_id).await?;
    if practice.status == PracticeStatus::AuthFailed {
        let opened =
            VaultCredentials::new(with.store.clone(), with.vault.clone(), with.hosts.clone())
                .connection(&practice)
                .await?;
        prove(
            with,
            opened.connection,
            actor,
            "practice.enable",
            practice_id,
        )
        .await?;
    }
    Ok(with.store.enable_practice(practice_id, actor).await?)
}

/// Pauses a practice (`practice disable`): not scheduled from the next
/// tick; credentials and data kept.
pub async fn disable(
    store: &Store,
    practice_id: &str,
    actor: &str,
) -> Result<Practice, ControlError> {
    Ok(store.disable_practice(practice_id, actor).await?)
}

/// Removes a practice (`practice remove`): its credentials destroyed, its
/// data and history kept.
pub async fn remove(
    store: &Store,
    practice_id: &str,
    actor: &str,
) -> Result<Practice, ControlError> {
    Ok(store.remove_practice(practice_id, actor).await?)
}

/// Force Sync Now: decided in one transaction on the practice row
/// ([`Store::request_force`]); when the decision is to enqueue, the job
/// ([`Job::for_practice`]: the plan during the initial sync, else an
/// incremental cycle) goes on its lane. A failed send gives the claim back.
pub async fn force_sync(
    store: &Store,
    queue: &Queue,
    practice_id: &str,
    trigger: Trigger,
    claim_for: Duration,
) -> Result<ForceDecision, ControlError> {
    let now = OffsetDateTime::now_utc();
    let job_id = format!("force-{}-{practice_id}", worker::new_run_id());
    let claim_for = time::Duration::try_from(claim_for).unwrap_or(time::Duration::MAX);
    let decision = store
        .request_force(practice_id, now, &job_id, claim_for)
        .await?;
    if let ForceDecision::Enqueue { job_id } = &decision {
        let status = registered(store, practice_id).await?.status;
        let job = Job::for_practice(status, job_id.clone(), practice_id.to_owned(), trigger, now);
        if let Err(error) = queue.send(&[job.outgoing(Duration::ZERO)]).await {
            store.release_inflight(practice_id, job_id).await?;
            return Err(error.into());
        }
    }
    Ok(decision)
}

/// Force Sync Now as a person asks it (the CLI; the admin API will): the
/// same as [`force_sync`], audited as `actor` (`practice.force`: `done`
/// with what became of the request, `refused` when the practice does not
/// sync, `failed` when it could not be served).
pub async fn force_sync_by(
    store: &Store,
    queue: &Queue,
    practice_id: &str,
    trigger: Trigger,
    actor: &str,
) -> Result<ForceDecision, ControlError> {
    let result = force_sync(store, queue, practice_id, trigger, FORCE_CLAIM).await;
    let entry = AuditEntry::done(actor, "practice.force", practice_id);
    let entry = match &result {
        Ok(ForceDecision::Enqueue { job_id }) => {
            entry.with_detail(format!("enqueued job {job_id}"))
        }
        Ok(ForceDecision::AlreadyQueued { job_id }) => {
            entry.with_detail(format!("served by the queued job {job_id}"))
        }
        Ok(ForceDecision::InitialSyncRunning { job_id }) => {
            entry.with_detail(format!("served by the running initial sync (job {job_id})"))
        }
        Ok(ForceDecision::AlreadyRunning { since }) => {
            entry.with_detail(format!("served by the sync running since {since}"))
        }
        Ok(ForceDecision::NotSyncable { status }) => AuditEntry {
            outcome: AuditOutcome::Refused,
            ..entry.with_detail(format!("the practice is {status}"))
        },
        Err(error) => AuditEntry {
            outcome: AuditOutcome::Failed,
            ..entry.with_detail(error.to_string())
        },
    };
    store.record_audit(&entry).await?;
    result
}

/// Moves dead-lettered jobs back to their lanes, audited as `actor`
/// (`dlq.redrive`: what was asked and how many moved, or why it failed).
pub async fn redrive(
    store: &Store,
    queue: &Queue,
    which: &queue::RedriveSelector,
    actor: &str,
) -> Result<queue::RedriveReport, ControlError> {
    let asked = match which {
        queue::RedriveSelector::All => "all".to_owned(),
        queue::RedriveSelector::Id(id) => format!("id {id}"),
    };
    let result = queue.redrive(which).await;
    let entry = AuditEntry {
        actor: actor.to_owned(),
        action: "dlq.redrive".to_owned(),
        practice_id: None,
        outcome: if result.is_ok() {
            AuditOutcome::Done
        } else {
            AuditOutcome::Failed
        },
        detail: Some(match &result {
            Ok(report) => format!("{asked}: {} moved back ({:?})", report.moved, report.method),
            Err(error) => format!("{asked}: {error}"),
        }),
    };
    store.record_audit(&entry).await?;
    Ok(result?)
}

pub(crate) async fn registered(store: &Store, practice_id: &str) -> Result<Practice, ControlError> {
    store
        .get_practice(practice_id)
        .await?
        .ok_or_else(|| ControlError::Invalid(format!("practice {practice_id:?} is not registered")))
}

/// One cheap call with `connection`; a failure is audited as `failed`.
async fn prove(
    with: &Connector,
    connection: Connection,
    actor: &str,
    action: &str,
    practice_id: &str,
) -> Result<(), ControlError> {
    let org = with
        .client
        .connect(connection)
        .map_err(ControlError::NotProved)?;
    let Err(error) = org.probe().await else {
        return Ok(());
    };
    with.store
        .record_audit(&AuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            practice_id: Some(practice_id.to_owned()),
            outcome: AuditOutcome::Failed,
            detail: Some(error.to_string()),
        })
        .await?;
    Err(match error {
        ClientError::Auth { .. } => ControlError::Refused(error),
        _ => ControlError::NotProved(error),
    })
}

#[allow(clippy::too_many_arguments)]
async fn prove_and_seal(
    with: &Connector,
    actor: &str,
    action: &str,
    practice_id: &str,
    organization_id: &str,
    api_base: &str,
    token_url: &str,
    client_id: String,
    client_secret: SecretString,
) -> Result<SealedCredentials, ControlError> {
    let api_base_url = allowed_url(
        with,
        actor,
        action,
        practice_id,
        Endpoint::ApiBase,
        api_base,
    )
    .await?;
    let token_url_parsed = allowed_url(
        with,
        actor,
        action,
        practice_id,
        Endpoint::TokenUrl,
        token_url,
    )
    .await?;
    let connection = Connection {
        api_base: api_base_url,
        token_url: token_url_parsed,
        organization_id: organization_id.parse().map_err(|_| {
            ControlError::Invalid(format!("bad Organization-ID {organization_id:?}"))
        })?,
        client_id: client_id.clone(),
        client_secret: SecretString::from(client_secret.expose_secret().to_owned()),
    };
    prove(with, connection, actor, action, practice_id).await?;
    let sealed = with
        .vault
        .seal_credentials(
            practice_id,
            &AscendCredentials {
                client_id: SecretString::from(client_id),
                client_secret,
            },
            &Endpoints {
                token_url: token_url.to_owned(),
                api_base: api_base.to_owned(),
            },
        )
        .await
        .map_err(ControlError::Seal)?;
    Ok(to_stored(sealed, token_url))
}

/// `url`, parsed, if the host policy lets `endpoint` point there; else
/// the refusal, audited as `refused` (someone asked to send a practice's
/// secret or tokens to a host that is not the vendor's).
async fn allowed_url(
    with: &Connector,
    actor: &str,
    action: &str,
    practice_id: &str,
    endpoint: Endpoint,
    url: &str,
) -> Result<Url, ControlError> {
    match with.hosts.check(endpoint, url) {
        Ok(url) => Ok(url),
        Err(refused) => {
            with.store
                .record_audit(&AuditEntry {
                    actor: actor.to_owned(),
                    action: action.to_owned(),
                    practice_id: Some(practice_id.to_owned()),
                    outcome: AuditOutcome::Refused,
                    detail: Some(refused.to_string()),
                })
                .await?;
            Err(ControlError::Invalid(format!(
                "{refused}; nothing was sent or saved"
            )))
        }
    }
}
