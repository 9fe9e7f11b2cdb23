//! The JSON API under `/api/v1`. Every handler authenticates, passes the
//! Gate for its action, validates its input, then calls the same use case
//! the CLI calls (`control`), audited as the token's principal.

use std::collections::BTreeMap;

use access::{Action, Principal, Role};
use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use model::{ItemStatus, PracticeStatus, RunState, Trigger, WritebackType};
use serde::{Deserialize, Serialize};
use store::{ForceDecision, HistoryCursor, HistoryFilter, PracticeOverview, SettingsChange, Table};
use sync_core::staleness::PracticeHealth;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, ToSchema};

use crate::AdminState;
use crate::auth::api_principal;
use crate::error::{ApiError, ErrorBody};

type ApiResult<T> = Result<Json<T>, ApiError>;

/// An instant as RFC 3339 text.
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

fn parse_time(what: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|_| ApiError::invalid(format!("{what} {text:?} is not an RFC 3339 time")))
}

/// A practice id from a path or body, checked before anything else.
pub(crate) fn practice_id(id: &str) -> Result<String, ApiError> {
    model::check_practice_id(id).map_err(ApiError::invalid)?;
    Ok(id.to_owned())
}

fn json<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match body {
        Ok(Json(value)) => Ok(value),
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {} bytes", crate::MAX_BODY_BYTES),
            ))
        }
        Err(rejection) => Err(ApiError::invalid(format!(
            "the body is not the JSON this endpoint takes: {}",
            rejection.body_text()
        ))),
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|r| ApiError::invalid(format!("bad query: {}", r.body_text())))
}

async fn authorize(
    state: &AdminState,
    headers: &HeaderMap,
    action: &Action,
) -> Result<Principal, ApiError> {
    let who = api_principal(&state.gate, &state.store, headers).await?;
    state.gate.authorize(&who, action).await?;
    Ok(who)
}

// ---- views -------------------------------------------------------------

/// One practice as the fleet list shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PracticeView {
    pub practice_id: String,
    /// `initial_sync`, `active`, `paused`, `auth_failed` or `removed`.
    pub status: String,
    pub status_detail: Option<String>,
    pub sync_interval_minutes: i16,
    /// RFC 3339; absent: never.
    pub last_success_at: Option<String>,
    /// Seconds since the last success; absent: never.
    pub age_seconds: Option<i64>,
    /// Stale against its interval (or data missing), while it should sync.
    pub stale: bool,
    pub stale_reason: Option<String>,
    pub next_sync_at: Option<String>,
    /// The job holding its claim (queued or running), if any.
    pub inflight_job_id: Option<String>,
    pub last_run_status: Option<String>,
    pub quarantined: u64,
    /// Captured deletes waiting for the nightly pass.
    pub deletes_pending: u64,
    /// While the initial sync runs: landed and expected per resource.
    pub progress: Option<ProgressView>,
}

/// An initial sync's progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProgressView {
    pub landed: i64,
    /// Absent until Ascend's counts are known.
    pub expected: Option<i64>,
    /// The estimated seconds left; absent until something has landed.
    pub eta_seconds: Option<i64>,
    pub resources: Vec<ResourceProgressView>,
}

/// One resource's part of an initial sync.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceProgressView {
    pub resource: String,
    pub landed: i64,
    pub expected: Option<i64>,
}

/// What Force Sync Now or a resync did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ForceView {
    /// `enqueued`, `already_queued`, `already_running`,
    /// `initial_sync_running` or `not_syncable`.
    pub outcome: String,
    pub job_id: Option<String>,
    pub message: String,
    /// A resync: the resources pulled whole again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<String>>,
}

/// A practice's settings.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettingsView {
    pub practice_id: String,
    pub sync_interval_minutes: i16,
    /// The intervals offered.
    pub intervals: Vec<i16>,
    /// One entry per write-back type.
    pub writeback: Vec<WritebackTypeView>,
    /// The provider SMS notes are attributed to.
    pub note_provider_id: Option<u64>,
    /// When the nightly worker applies captured deletes.
    pub nightly: NightlyView,
}

/// A practice's processing window for the nightly worker.
#[derive(Debug, Serialize, ToSchema)]
pub struct NightlyView {
    /// Start, local `HH:MM`.
    pub start: String,
    /// End (excluded), local `HH:MM`.
    pub end: String,
    /// The practice's own IANA time zone, if set.
    pub time_zone: Option<String>,
    /// The time zone of its location record in Ascend (wins when given).
    pub location_time_zone: Option<String>,
    /// One line: the window and the zone it is read in.
    pub summary: String,
}

/// A change of the processing window: only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NightlyChange {
    /// Local `HH:MM`.
    pub start: Option<String>,
    /// Local `HH:MM` (excluded).
    pub end: Option<String>,
    /// An IANA name; `""` forgets it.
    pub time_zone: Option<String>,
}

/// One write-back type's switch.
#[derive(Debug, Serialize, ToSchema)]
pub struct WritebackTypeView {
    #[serde(rename = "type")]
    pub kind: String,
    pub enabled: bool,
    pub changed_at: Option<String>,
    pub changed_by: Option<String>,
}

/// A change of settings: only the fields given change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsChangeRequest {
    /// One of 2, 5, 10, 15, 30, 45, 60.
    pub sync_interval_minutes: Option<i16>,
    /// Write-back type name to on (true) or off (false).
    pub writeback: Option<BTreeMap<String, bool>>,
    /// The provider SMS notes are attributed to (must be one of the
    /// practice's synced providers); `0` clears it.
    pub note_provider_id: Option<u64>,
    /// The nightly processing window.
    pub nightly: Option<NightlyChange>,
}

/// One attempt in sync history.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub run_id: String,
    pub job_id: String,
    pub practice_id: String,
    pub kind: String,
    pub trigger: String,
    pub attempt: i32,
    pub status: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub fetched: Option<i64>,
    pub written: Option<i64>,
    pub api_calls: Option<i64>,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    /// Per resource (in one attempt's details only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<ResourceRunView>,
}

/// One resource of an attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResourceRunView {
    pub resource: String,
    pub fetched: i64,
    pub written: i64,
    pub quarantined: i64,
    pub deletes_captured: i64,
    pub error_class: Option<String>,
    pub error: Option<String>,
}

/// A page of history, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    pub runs: Vec<RunView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// History filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Only this practice's.
    pub practice: Option<String>,
    /// A run state, or `failures` (failed, partial, retrying, dead-lettered).
    pub status: Option<String>,
    /// A job kind (`initial_plan`, `initial_chunk`, `incremental`, `writeback`...).
    pub kind: Option<String>,
    /// RFC 3339: only runs started at or after it.
    pub since: Option<String>,
    /// From the previous page's `next_cursor`.
    pub cursor: Option<String>,
    /// 1 to 500; 50 by default.
    pub limit: Option<u32>,
}

/// A dead-lettered job.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeadLetterView {
    pub message_id: String,
    /// The job's practice and kind, when its body reads as a job.
    pub practice_id: Option<String>,
    pub kind: Option<String>,
    pub job_id: Option<String>,
    pub reason: Option<String>,
    pub receive_count: u32,
}

/// Which dead letters to redrive.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// One dead letter; absent: every one.
    pub message_id: Option<String>,
}

/// What a redrive did.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedriveView {
    pub moved: u64,
    /// `move_task` or `fallback`.
    pub method: String,
}

/// A write-back item (its request body, which may hold patient data, is
/// not listed).
#[derive(Debug, Serialize, ToSchema)]
pub struct OutboxItemView {
    pub item_id: i64,
    pub practice_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub idempotency_key: String,
    pub status: String,
    pub reason: Option<String>,
    pub attempts: u32,
    pub submitted_at: String,
    pub submitted_by: String,
    pub sent_at: Option<String>,
    pub ascend_id: Option<u64>,
}

/// Outbox filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct OutboxParams {
    pub practice: Option<String>,
    /// `pending`, `blocked`, `sending`, `sent`, `failed` or `dead`.
    pub status: Option<String>,
    /// 1 to 500; 100 by default.
    pub limit: Option<u32>,
}

/// A practice to connect, with its credentials (sealed at once; never
/// stored or logged in the clear).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectRequest {
    pub practice_id: String,
    /// 24 hex digits.
    pub organization_id: String,
    /// 0: the whole organization.
    #[serde(default)]
    pub location_id: i64,
    pub api_base: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: String,
    /// 15 by default.
    pub sync_interval_minutes: Option<i16>,
}

/// New credentials for a practice.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// Absent: the stored one.
    pub token_url: Option<String>,
    pub client_id: String,
    pub client_secret: String,
}

/// A resync: every synced resource, or one.
#[derive(Debug, Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ResyncRequest {
    /// A resource (`patients`, `appointments`...); absent: all.
    pub resource: Option<String>,
}

/// A practice after a lifecycle change.
#[derive(Debug, Serialize, ToSchema)]
pub struct PracticeChanged {
    pub practice_id: String,
    pub status: String,
    pub status_detail: Option<String>,
}

fn changed(p: &model::Practice) -> PracticeChanged {
    PracticeChanged {
        practice_id: p.practice_id.clone(),
        status: p.status.to_string(),
        status_detail: p.status_detail.clone(),
    }
}

// ---- building views ----------------------------------------------------

pub(crate) async fn practice_views(
    state: &AdminState,
    only: Option<&str>,
) -> Result<Vec<PracticeView>, ApiError> {
    let now = OffsetDateTime::now_utc();
    let overview = state.store.practice_overview().await?;
    let deletes = state.store.delete_counts().await?;
    let mut out = Vec::new();
    for p in overview {
        if only.is_some_and(|id| id != p.practice_id) {
            continue;
        }
        let progress = if p.status == PracticeStatus::InitialSync {
            Some(progress(state, &p.practice_id).await?)
        } else {
            None
        };
        let pending = deletes
            .iter()
            .find(|d| d.practice_id == p.practice_id)
            .map_or(0, |d| d.pending);
        out.push(practice_view(&p, now, pending, progress));
    }
    Ok(out)
}

fn practice_view(
    p: &PracticeOverview,
    now: OffsetDateTime,
    deletes_pending: u64,
    progress: Option<ProgressView>,
) -> PracticeView {
    let fresh = PracticeHealth {
        last_success: p.last_success_at,
        created_at: p.created_at,
        interval_minutes: p.sync_interval_minutes,
        quarantined: p.quarantined,
        failing_since: p.failing_since,
        count_mismatch: p.count_mismatch.map(|(t, since)| (t.resource(), since)),
    }
    .staleness(now);
    let should_sync = p.status.is_syncing();
    PracticeView {
        practice_id: p.practice_id.clone(),
        status: p.status.to_string(),
        status_detail: p.status_detail.clone(),
        sync_interval_minutes: p.sync_interval_minutes,
        last_success_at: p.last_success_at.map(rfc3339),
        age_seconds: fresh.age.map(|a| a.whole_seconds()),
        stale: should_sync && fresh.stale,
        stale_reason: fresh
            .reason
            .filter(|_| should_sync && fresh.stale)
            .map(|r| r.to_string()),
        next_sync_at: p.next_sync_at.map(rfc3339),
        inflight_job_id: p
            .inflight_job_id
            .clone()
            .filter(|_| p.inflight_until.is_some_and(|u| u > now)),
        last_run_status: p.last_run.as_ref().map(|r| r.status.to_string()),
        quarantined: p.quarantined,
        deletes_pending,
        progress,
    }
}

async fn progress(state: &AdminState, practice_id: &str) -> Result<ProgressView, ApiError> {
    let progress = control::admin::initial_progress(&state.store, practice_id).await?;
    Ok(ProgressView {
        landed: progress.landed,
        expected: progress.expected,
        eta_seconds: progress.eta.map(|d| d.whole_seconds()),
        resources: progress
            .resources
            .iter()
            .map(|r| ResourceProgressView {
                resource: store::Table::of(r.resource).as_str().to_owned(),
                landed: r.landed,
                expected: r.expected,
            })
            .collect(),
    })
}

pub(crate) fn run_view(r: store::RunRecord, details: bool) -> RunView {
    RunView {
        run_id: r.run_id,
        job_id: r.job_id,
        practice_id: r.practice_id,
        kind: r.kind,
        trigger: r.trigger,
        attempt: r.attempt,
        status: r.status.to_string(),
        started_at: rfc3339(r.started_at),
        ended_at: r.ended_at.map(rfc3339),
        fetched: r.fetched,
        written: r.written,
        api_calls: r.api_calls,
        error_class: r.error_class,
        error_message: r.error_message,
        resources: if details {
            r.resources
                .into_iter()
                .map(|c| ResourceRunView {
                    resource: c.resource,
                    fetched: c.fetched,
                    written: c.written,
                    quarantined: c.quarantined,
                    deletes_captured: c.deletes_captured,
                    error_class: c.error_class,
                    error: c.error,
                })
                .collect()
        } else {
            Vec::new()
        },
    }
}

pub(crate) fn force_view(decision: &ForceDecision) -> ForceView {
    let (outcome, job_id, message) = match decision {
        ForceDecision::Enqueue { job_id } => (
            "enqueued",
            Some(job_id.clone()),
            "a sync is queued ahead of scheduled work".to_owned(),
        ),
        ForceDecision::AlreadyQueued { job_id } => (
            "already_queued",
            Some(job_id.clone()),
            "a Force Sync Now of this practice is already queued".to_owned(),
        ),
        ForceDecision::AlreadyRunning { since } => (
            "already_running",
            None,
            format!("a sync has been running since {}", rfc3339(*since)),
        ),
        ForceDecision::InitialSyncRunning { job_id } => (
            "initial_sync_running",
            Some(job_id.clone()),
            "the initial sync is running and now goes first".to_owned(),
        ),
        ForceDecision::NotSyncable { status } => (
            "not_syncable",
            None,
            format!("the practice is {status}: enable or reconnect it first"),
        ),
    };
    ForceView {
        outcome: outcome.to_owned(),
        job_id,
        message,
        resources: None,
    }
}

pub(crate) async fn settings_view(
    state: &AdminState,
    practice_id: &str,
) -> Result<SettingsView, ApiError> {
    let practice = state
        .store
        .get_practice(practice_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no practice {practice_id:?}")))?;
    let wb = state.store.writeback_settings(practice_id).await?;
    let window = control::admin::change_window(
        &state.store,
        practice_id,
        &control::admin::WindowChange::default(),
        "",
    )
    .await?;
    let hhmm = |m: i64| format!("{:02}:{:02}", m / 60, m % 60);
    Ok(SettingsView {
        practice_id: practice_id.to_owned(),
        sync_interval_minutes: practice.sync_interval_minutes,
        intervals: model::SYNC_INTERVALS_MINUTES.to_vec(),
        writeback: wb
            .types
            .iter()
            .map(|t| WritebackTypeView {
                kind: t.kind.to_string(),
                enabled: t.enabled,
                changed_at: t.changed_at.map(rfc3339),
                changed_by: t.changed_by.clone(),
            })
            .collect(),
        note_provider_id: wb.note_provider_id,
        nightly: NightlyView {
            start: hhmm(window.settings.window_start_minute),
            end: hhmm(window.settings.window_end_minute),
            time_zone: window.settings.time_zone,
            location_time_zone: window.settings.location_time_zone,
            summary: window.summary,
        },
    })
}

/// Checks a window change against the practice's current window, as
/// [`control::admin::change_window`] will, before anything is stored.
async fn check_window(
    state: &AdminState,
    practice_id: &str,
    change: &NightlyChange,
) -> Result<(), ApiError> {
    use sync_core::nightly::{Window, parse_hhmm, parse_time_zone};
    let current = state
        .store
        .nightly_settings(practice_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no practice {practice_id:?}")))?;
    let minute = |text: &Option<String>, now: i64| match text {
        Some(t) => parse_hhmm(t)
            .map(i64::from)
            .map_err(|e| ApiError::invalid(e.to_string())),
        None => Ok(now),
    };
    let start = minute(&change.start, current.window_start_minute)?;
    let end = minute(&change.end, current.window_end_minute)?;
    Window::new(start, end).map_err(|e| ApiError::invalid(e.to_string()))?;
    if let Some(tz) = change
        .time_zone
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        parse_time_zone(tz).map_err(|e| ApiError::invalid(e.to_string()))?;
    }
    Ok(())
}

/// Applies a settings change as `actor`: the interval, then the
/// write-back switches and note provider (each audited by its use case).
pub(crate) async fn change_settings(
    state: &AdminState,
    practice_id: &str,
    change: &SettingsChangeRequest,
    actor: &str,
) -> Result<(), ApiError> {
    let mut switch = Vec::new();
    for (name, on) in change.writeback.iter().flatten() {
        let kind: WritebackType = name.parse().map_err(|_| {
            ApiError::invalid(format!(
                "unknown write-back type {name:?}: one of {}",
                WritebackType::ALL
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        switch.push((kind, *on));
    }
    if let Some(minutes) = change.sync_interval_minutes
        && !model::SYNC_INTERVALS_MINUTES.contains(&minutes)
    {
        return Err(ApiError::invalid(format!(
            "an interval of {minutes} minutes is not offered: choose one of {:?}",
            model::SYNC_INTERVALS_MINUTES
        )));
    }
    if state.store.get_practice(practice_id).await?.is_none() {
        return Err(ApiError::not_found(format!("no practice {practice_id:?}")));
    }
    // Everything is checked before anything is stored, so a refused
    // change stores nothing: the provider and the window first, then the
    // switches (sms_log needs a provider), the window, the interval.
    let note_provider_id = change
        .note_provider_id
        .map(|id| if id == 0 { None } else { Some(id) });
    if let Some(Some(provider)) = note_provider_id
        && !state
            .store
            .has_landed(practice_id, Table::Providers, provider)
            .await?
    {
        return Err(ApiError::invalid(format!(
            "provider {provider} is not one of the practice's synced providers"
        )));
    }
    if let Some(nightly) = &change.nightly {
        check_window(state, practice_id, nightly).await?;
    }
    if !switch.is_empty() || note_provider_id.is_some() {
        let wb = SettingsChange {
            switch,
            note_provider_id,
        };
        control::writeback::change_settings(&state.store, practice_id, &wb, actor).await?;
    }
    if let Some(nightly) = &change.nightly {
        let window = control::admin::WindowChange {
            time_zone: nightly
                .time_zone
                .as_ref()
                .map(|tz| Some(tz.trim().to_owned()).filter(|t| !t.is_empty())),
            start: nightly.start.clone(),
            end: nightly.end.clone(),
        };
        if !window.is_empty() {
            control::admin::change_window(&state.store, practice_id, &window, actor).await?;
        }
    }
    if let Some(minutes) = change.sync_interval_minutes {
        control::admin::set_interval(&state.store, practice_id, minutes, actor).await?;
    }
    Ok(())
}

// ---- handlers ----------------------------------------------------------

/// Every practice the caller may see.
#[utoipa::path(get, path = "/api/v1/practices", tag = "practices",
    responses((status = 200, body = Vec<PracticeView>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_practices(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> ApiResult<Vec<PracticeView>> {
    let who = api_principal(&state.gate, &state.store, &headers).await?;
    let only = match (&who.role, &who.practice_id) {
        (Role::PracticeUser, Some(own)) => {
            state
                .gate
                .authorize(&who, &Action::ViewPractice(own.clone()))
                .await?;
            Some(own.clone())
        }
        _ => {
            state.gate.authorize(&who, &Action::ViewFleet).await?;
            None
        }
    };
    Ok(Json(practice_views(&state, only.as_deref()).await?))
}

/// One practice.
#[utoipa::path(get, path = "/api/v1/practices/{id}", tag = "practices",
    params(("id" = String, Path, description = "practice id")),
    responses((status = 200, body = PracticeView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_practice(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<PracticeView> {
    let id = practice_id(&id)?;
    authorize(&state, &headers, &Action::ViewPractice(id.clone())).await?;
    practice_views(&state, Some(&id))
        .await?
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("no practice {id:?}")))
}

/// Connects a practice: its credentials are proved with one call to
/// Ascend, sealed and stored; the initial sync is due at once.
#[utoipa::path(post, path = "/api/v1/practices", tag = "practices",
    request_body = ConnectRequest,
    responses((status = 201, body = PracticeChanged), (status = 400, body = ErrorBody),
        (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn connect_practice(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<ConnectRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<PracticeChanged>), ApiError> {
    let req = json(body)?;
    let id = practice_id(&req.practice_id)?;
    let who = authorize(&state, &headers, &Action::AddPractice(id.clone())).await?;
    let new = control::NewConnection {
        practice: model::NewPractice {
            practice_id: id,
            organization_id: req.organization_id,
            location_id: req.location_id,
            api_base: req.api_base,
            sync_interval_minutes: req
                .sync_interval_minutes
                .unwrap_or(model::DEFAULT_SYNC_INTERVAL_MINUTES),
        },
        token_url: req.token_url,
        client_id: req.client_id,
        client_secret: req.client_secret.into(),
    };
    let practice = control::connect(&state.connector, new, &who.actor).await?;
    Ok((StatusCode::CREATED, Json(changed(&practice))))
}

/// Replaces a practice's Client ID and Secret (proved first).
#[utoipa::path(post, path = "/api/v1/practices/{id}/credentials", tag = "practices",
    params(("id" = String, Path, description = "practice id")), request_body = RotateRequest,
    responses((status = 200, body = PracticeChanged), (status = 422, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn rotate_credentials(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<RotateRequest>, JsonRejection>,
) -> ApiResult<PracticeChanged> {
    let id = practice_id(&id)?;
    let req = json(body)?;
    let who = authorize(&state, &headers, &Action::RotateCredentials(id.clone())).await?;
    let practice = control::rotate_credentials(
        &state.connector,
        &id,
        req.token_url.as_deref(),
        req.client_id,
        req.client_secret.into(),
        &who.actor,
    )
    .await?;
    Ok(Json(changed(&practice)))
}

/// Pauses a practice: not scheduled; credentials and data kept.
#[utoipa::path(post, path = "/api/v1/practices/{id}/disable", tag = "practices",
    params(("id" = String, Path, description = "practice id")),
    responses((status = 200, body = PracticeChanged)), security(("bearer" = [])))]
pub async fn disable_practice(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<PracticeChanged> {
    let id = practice_id(&id)?;
    let who = authorize(&state, &headers, &Action::DisablePractice(id.clone())).await?;
    Ok(Json(changed(
        &control::disable(&state.store, &id, &who.actor).await?,
    )))
}

/// Resumes a paused or auth-failed practice, due at once.
#[utoipa::path(post, path = "/api/v1/practices/{id}/enable", tag = "practices",
    params(("id" = String, Path, description = "practice id")),
    responses((status = 200, body = PracticeChanged)), security(("bearer" = [])))]
pub async fn enable_practice(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<PracticeChanged> {
    let id = practice_id(&id)?;
    let who = authorize(&state, &headers, &Action::EnablePractice(id.clone())).await?;
    Ok(Json(changed(
        &control::enable(&state.connector, &id, &who.actor).await?,
    )))
}

/// Removes a practice: credentials destroyed, data and history kept.
#[utoipa::path(post, path = "/api/v1/practices/{id}/remove", tag = "practices",
    params(("id" = String, Path, description = "practice id")),
    responses((status = 200, body = PracticeChanged)), security(("bearer" = [])))]
pub async fn remove_practice(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<PracticeChanged> {
    let id = practice_id(&id)?;
    let who = authorize(&state, &headers, &Action::RemovePractice(id.clone())).await?;
    Ok(Json(changed(
        &control::remove(&state.store, &id, &who.actor).await?,
    )))
}

/// A practice's settings.
#[utoipa::path(get, path = "/api/v1/practices/{id}/settings", tag = "settings",
    params(("id" = String, Path, description = "practice id")),
    responses((status = 200, body = SettingsView)), security(("bearer" = [])))]
pub async fn get_settings(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<SettingsView> {
    let id = practice_id(&id)?;
    authorize(&state, &headers, &Action::ViewPractice(id.clone())).await?;
    Ok(Json(settings_view(&state, &id).await?))
}

/// Changes a practice's settings (only the fields given).
#[utoipa::path(patch, path = "/api/v1/practices/{id}/settings", tag = "settings",
    params(("id" = String, Path, description = "practice id")),
    request_body = SettingsChangeRequest,
    responses((status = 200, body = SettingsView), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn patch_settings(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<SettingsChangeRequest>, JsonRejection>,
) -> ApiResult<SettingsView> {
    let id = practice_id(&id)?;
    let change = json(body)?;
    let who = authorize(&state, &headers, &Action::UpdateSettings(id.clone())).await?;
    change_settings(&state, &id, &change, &who.actor).await?;
    Ok(Json(settings_view(&state, &id).await?))
}

/// Force Sync Now.
#[utoipa::path(post, path = "/api/v1/practices/{id}/force", tag = "sync",
    params(("id" = String, Path, description = "practice id")),
    responses((status = 202, body = ForceView), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn force(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ForceView>), ApiError> {
    let id = practice_id(&id)?;
    let who = authorize(&state, &headers, &Action::ForceSync(id.clone())).await?;
    let decision =
        control::force_sync_by(&state.store, &state.queue, &id, Trigger::Force, &who.actor).await?;
    let status = match decision {
        ForceDecision::NotSyncable { .. } => StatusCode::CONFLICT,
        _ => StatusCode::ACCEPTED,
    };
    Ok((status, Json(force_view(&decision))))
}

/// Pulls a practice's whole history again (every resource, or one).
#[utoipa::path(post, path = "/api/v1/practices/{id}/resync", tag = "sync",
    params(("id" = String, Path, description = "practice id")),
    request_body = ResyncRequest,
    responses((status = 202, body = ForceView), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn resync(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Result<Json<ResyncRequest>, JsonRejection>,
) -> Result<(StatusCode, Json<ForceView>), ApiError> {
    let id = practice_id(&id)?;
    let req = json(body)?;
    let tables = resources(req.resource.as_deref())?;
    let who = authorize(&state, &headers, &Action::Resync(id.clone())).await?;
    let done = control::admin::resync(&state.store, &state.queue, &id, &tables, &who.actor).await?;
    let mut view = force_view(&done.decision);
    view.resources = Some(
        done.resources
            .iter()
            .map(|t| t.as_str().to_owned())
            .collect(),
    );
    Ok((StatusCode::ACCEPTED, Json(view)))
}

pub(crate) fn resources(resource: Option<&str>) -> Result<Vec<Table>, ApiError> {
    match resource.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(Vec::new()),
        Some(name) => name.parse::<Table>().map(|t| vec![t]).map_err(|_| {
            ApiError::invalid(format!(
                "unknown resource {:?}: one of {}",
                name.chars().take(64).collect::<String>(),
                Table::ALL.map(|t| t.as_str()).join(", ")
            ))
        }),
    }
}

/// Sync history, newest first, a page at a time.
#[utoipa::path(get, path = "/api/v1/history", tag = "history", params(HistoryParams),
    responses((status = 200, body = HistoryPage), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn history(
    State(state): State<AdminState>,
    headers: HeaderMap,
    params: Result<Query<HistoryParams>, QueryRejection>,
) -> ApiResult<HistoryPage> {
    let params = query(params)?;
    let mut filter = history_filter(&params)?;
    let who = api_principal(&state.gate, &state.store, &headers).await?;
    let action = match (&filter.practice_id, who.role, &who.practice_id) {
        (Some(p), _, _) => Action::ViewPractice(p.clone()),
        (None, Role::PracticeUser, Some(own)) => {
            filter.practice_id = Some(own.clone());
            Action::ViewPractice(own.clone())
        }
        (None, _, _) => Action::ViewFleet,
    };
    state.gate.authorize(&who, &action).await?;
    Ok(Json(history_page(&state, filter).await?))
}

pub(crate) fn history_filter(params: &HistoryParams) -> Result<HistoryFilter, ApiError> {
    let limit = params.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 500"));
    }
    let (failed_only, status) = match params.status.as_deref() {
        None | Some("") => (false, None),
        Some("failures") => (true, None),
        Some(s) => (
            false,
            Some(s.parse::<RunState>().map_err(|_| {
                ApiError::invalid(format!(
                    "unknown status {:?}: `failures` or a run state",
                    s.chars().take(64).collect::<String>()
                ))
            })?),
        ),
    };
    let kind = match params.kind.as_deref() {
        None | Some("") => None,
        Some(k) => Some(
            model::JobKind::ALL
                .iter()
                .find(|j| j.as_str() == k)
                .ok_or_else(|| {
                    ApiError::invalid(format!(
                        "unknown kind {:?}: one of {}",
                        k.chars().take(64).collect::<String>(),
                        model::JobKind::ALL.map(|j| j.as_str()).join(", ")
                    ))
                })?
                .as_str()
                .to_owned(),
        ),
    };
    let practice_id = match params.practice.as_deref() {
        None | Some("") => None,
        Some(p) => Some(practice_id(p)?),
    };
    let since = match params.since.as_deref() {
        None | Some("") => None,
        Some(s) => Some(parse_time("since", s)?),
    };
    let after = match params.cursor.as_deref() {
        None | Some("") => None,
        Some(c) => Some(parse_cursor(c)?),
    };
    Ok(HistoryFilter {
        practice_id,
        failed_only,
        status,
        kind,
        since,
        after,
        limit,
    })
}

pub(crate) async fn history_page(
    state: &AdminState,
    mut filter: HistoryFilter,
) -> Result<HistoryPage, ApiError> {
    let limit = filter.limit;
    // One more than asked says whether there is a next page.
    filter.limit = limit + 1;
    let mut runs = state.store.history_page(&filter).await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let next_cursor = runs
        .last()
        .filter(|_| more)
        .map(|r| format!("{}~{}", rfc3339(r.started_at), r.run_id));
    Ok(HistoryPage {
        runs: runs.into_iter().map(|r| run_view(r, false)).collect(),
        next_cursor,
    })
}

fn parse_cursor(cursor: &str) -> Result<HistoryCursor, ApiError> {
    let bad = || ApiError::invalid("the cursor is not one this API gave: ask the first page again");
    let (at, run_id) = cursor.split_once('~').ok_or_else(bad)?;
    let started_at = OffsetDateTime::parse(at, &Rfc3339).map_err(|_| bad())?;
    if run_id.is_empty() || run_id.len() > 128 {
        return Err(bad());
    }
    Ok(HistoryCursor {
        started_at,
        run_id: run_id.to_owned(),
    })
}

/// One attempt, with its resources.
#[utoipa::path(get, path = "/api/v1/history/{run_id}", tag = "history",
    params(("run_id" = String, Path, description = "run id")),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run_details(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(run_id): Path<String>,
) -> ApiResult<RunView> {
    let who = api_principal(&state.gate, &state.store, &headers).await?;
    let run = if run_id.len() <= 128 {
        state.store.run(&run_id).await?
    } else {
        None
    };
    let Some(run) = run else {
        return Err(ApiError::not_found(format!(
            "no run {:?}",
            run_id.chars().take(128).collect::<String>()
        )));
    };
    let action = if run.practice_id.is_empty() {
        Action::ViewFleet
    } else {
        Action::ViewPractice(run.practice_id.clone())
    };
    state.gate.authorize(&who, &action).await?;
    Ok(Json(run_view(run, true)))
}

/// The dead letters (at most 100).
#[utoipa::path(get, path = "/api/v1/dead-letters", tag = "dead letters",
    responses((status = 200, body = Vec<DeadLetterView>)), security(("bearer" = [])))]
pub async fn dead_letters(
    State(state): State<AdminState>,
    headers: HeaderMap,
) -> ApiResult<Vec<DeadLetterView>> {
    authorize(&state, &headers, &Action::ViewFleet).await?;
    Ok(Json(dead_letter_views(&state).await?))
}

pub(crate) async fn dead_letter_views(state: &AdminState) -> Result<Vec<DeadLetterView>, ApiError> {
    let letters = state.queue.dead_letters(100).await?;
    Ok(letters
        .into_iter()
        .map(|d| {
            let job = model::Job::decode(&d.body).ok();
            DeadLetterView {
                message_id: d.message_id,
                practice_id: job.as_ref().map(|j| j.meta().practice_id.clone()),
                kind: job.as_ref().map(|j| j.kind().as_str().to_owned()),
                job_id: job.as_ref().map(|j| j.meta().job_id.clone()),
                reason: d.reason,
                receive_count: d.receive_count,
            }
        })
        .collect())
}

/// Moves dead letters back to their lanes: one, or every one.
#[utoipa::path(post, path = "/api/v1/dead-letters/redrive", tag = "dead letters",
    request_body = RedriveRequest,
    responses((status = 200, body = RedriveView)), security(("bearer" = [])))]
pub async fn redrive(
    State(state): State<AdminState>,
    headers: HeaderMap,
    body: Result<Json<RedriveRequest>, JsonRejection>,
) -> ApiResult<RedriveView> {
    let req = json(body)?;
    let who = authorize(&state, &headers, &Action::RedriveDeadLetters).await?;
    Ok(Json(
        redrive_as(&state, req.message_id.as_deref(), &who.actor).await?,
    ))
}

pub(crate) async fn redrive_as(
    state: &AdminState,
    message_id: Option<&str>,
    actor: &str,
) -> Result<RedriveView, ApiError> {
    let which = match message_id.map(str::trim).filter(|m| !m.is_empty()) {
        None => queue::RedriveSelector::All,
        Some(id) if id.len() <= 256 => queue::RedriveSelector::Id(id.to_owned()),
        Some(_) => return Err(ApiError::invalid("a message id is at most 256 characters")),
    };
    let report = control::redrive(&state.store, &state.queue, &which, actor).await?;
    Ok(RedriveView {
        moved: report.moved,
        method: match report.method {
            queue::RedriveMethod::MoveTask => "move_task",
            queue::RedriveMethod::Fallback => "fallback",
        }
        .to_owned(),
    })
}

/// The write-back outbox, newest first.
#[utoipa::path(get, path = "/api/v1/outbox", tag = "write-back", params(OutboxParams),
    responses((status = 200, body = Vec<OutboxItemView>)), security(("bearer" = [])))]
pub async fn outbox(
    State(state): State<AdminState>,
    headers: HeaderMap,
    params: Result<Query<OutboxParams>, QueryRejection>,
) -> ApiResult<Vec<OutboxItemView>> {
    let params = query(params)?;
    let limit = params.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("limit must be 1 to 500"));
    }
    let status = match params.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(s.parse::<ItemStatus>().map_err(|_| {
            ApiError::invalid(format!(
                "unknown status {:?}: one of pending, blocked, sending, sent, failed, dead",
                s.chars().take(64).collect::<String>()
            ))
        })?),
    };
    let mut practice = match params.practice.as_deref() {
        None | Some("") => None,
        Some(p) => Some(practice_id(p)?),
    };
    let who = api_principal(&state.gate, &state.store, &headers).await?;
    let action = match (&practice, who.role, &who.practice_id) {
        (Some(p), _, _) => Action::ViewPractice(p.clone()),
        (None, Role::PracticeUser, Some(own)) => {
            practice = Some(own.clone());
            Action::ViewPractice(own.clone())
        }
        (None, _, _) => Action::ViewFleet,
    };
    state.gate.authorize(&who, &action).await?;
    let items = state
        .store
        .writeback_items(practice.as_deref(), status, limit)
        .await?;
    Ok(Json(
        items
            .into_iter()
            .map(|i| OutboxItemView {
                item_id: i.item_id,
                practice_id: i.practice_id,
                kind: i.kind.to_string(),
                idempotency_key: i.idempotency_key,
                status: i.status.to_string(),
                reason: i.reason,
                attempts: i.attempts,
                submitted_at: rfc3339(i.submitted_at),
                submitted_by: i.submitted_by,
                sent_at: i.sent_at.map(rfc3339),
                ascend_id: i.ascend_id,
            })
            .collect(),
    ))
}

/// Sends a dead or failed write-back item again (looked up in Ascend
/// first when it was ever sent).
#[utoipa::path(post, path = "/api/v1/outbox/{item_id}/retry", tag = "write-back",
    params(("item_id" = i64, Path, description = "item number")),
    responses((status = 204), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn retry_item(
    State(state): State<AdminState>,
    headers: HeaderMap,
    Path(item_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let item_id: i64 = item_id
        .parse()
        .map_err(|_| ApiError::invalid("an item id is a number"))?;
    let who = api_principal(&state.gate, &state.store, &headers).await?;
    let item = state
        .store
        .writeback_item(item_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no write-back item {item_id}")))?;
    state
        .gate
        .authorize(&who, &Action::RetryWriteback(item.practice_id.clone()))
        .await?;
    control::admin::retry_writeback(&state.store, item_id, &who.actor).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Health and readiness answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyView {
    pub database: String,
    pub queue: String,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200)))]
pub async fn healthz() -> &'static str {
    "ok"
}

/// The database and the queue answer.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = ReadyView), (status = 503, body = ReadyView)))]
pub async fn readyz(State(state): State<AdminState>) -> (StatusCode, Json<ReadyView>) {
    let database = match state.store.ping().await {
        Ok(()) => "ok".to_owned(),
        Err(e) => format!("unreachable: {e}"),
    };
    let queue = match state.queue.depth().await {
        Ok(_) => "ok".to_owned(),
        Err(e) => format!("unreachable: {e}"),
    };
    let status = if database == "ok" && queue == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(ReadyView { database, queue }))
}
