//! Bodies and answers of the control API under `/_sim/` (not part of
//! Ascend, no auth). Public so tests can send and read them with any HTTP
//! client. See the crate documentation for the routes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST /_sim/orgs/{org_id}/mutate`: change live data the way a practice
/// does. Deterministic given `seed` and the current state.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MutateRequest {
    /// A resource path name (`patients`, `appointments`, ...); `None`
    /// spreads the changes over all resources in proportion to their size
    /// (deletes never pick `locations` then).
    #[serde(default)]
    pub resource: Option<String>,
    #[serde(default)]
    pub creates: usize,
    #[serde(default)]
    pub updates: usize,
    #[serde(default)]
    pub deletes: usize,
    #[serde(default)]
    pub seed: u64,
}

/// The ids one mutate batch touched in one resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceChanges {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
}

/// The answer to a mutate: every id touched (ids as decimal strings, like
/// the API), and the same broken down by resource.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct MutateResult {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub deleted: Vec<String>,
    /// Resource path name -> the ids touched there.
    #[serde(default)]
    pub by_resource: BTreeMap<String, ResourceChanges>,
    /// The `lastModified` every created or updated record of the batch got
    /// (one batch shares one millisecond).
    #[serde(default)]
    pub last_modified: Option<String>,
}

/// One line of `GET /_sim/orgs/{org_id}/snapshot/{resource}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SnapshotEntry {
    pub id: String,
    #[serde(rename = "lastModified")]
    pub last_modified: String,
    /// With `?full=true`: the record exactly as the API serves it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<serde_json::Value>,
}

/// How a record is served bad, `POST /_sim/orgs/{org_id}/bad-records`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum BadRecordKind {
    /// New records whose ids are beyond 2^63-1 (still below 2^64), served in
    /// id order after every other record, like any record created later.
    IdBeyondI64,
    /// An existing record served with an id that is not a number: its id
    /// with an `x` after it (`"7000000000123x"`).
    NonNumericId,
    /// An existing record served with `lastModified` `"yesterday"`.
    BadLastModified,
    /// An existing record served with a lone surrogate escape (`\ud800`) in
    /// a string field (`firstName`, else `name`, else a new `note`): valid
    /// JSON text that many databases refuse.
    LoneSurrogate,
}

/// `POST /_sim/orgs/{org_id}/bad-records`: serve records of a resource bad.
/// Every kind but `id_beyond_i64` corrupts existing records as served only
/// (the snapshot still shows them whole): each keeps its place in id order,
/// and its `lastModified` moves to now, as an edit would, so an incremental
/// sync fetches it. `id_beyond_i64` creates `count` new records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BadRecordsRequest {
    /// A resource path name (`patients`, ...).
    pub resource: String,
    pub kind: BadRecordKind,
    /// How many records (ignored when `ids` are given).
    #[serde(default = "one_usize")]
    pub count: usize,
    /// The existing records to corrupt (decimal ids); empty: `count`
    /// records picked deterministically from `seed`.
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub seed: u64,
}

fn one_usize() -> usize {
    1
}

/// The answer to a bad-records request.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct BadRecordsResult {
    /// The records' true ids (decimal), as the snapshot lists them.
    pub ids: Vec<String>,
    /// The ids as served (`non_numeric_id`: with the `x`).
    pub served_ids: Vec<String>,
    /// The `lastModified` they got.
    pub last_modified: Option<String>,
}

/// `POST /_sim/orgs/{org_id}/bad-records/repair`: serve bad records whole
/// again, with `lastModified` now (as an edit that fixed them), so the next
/// incremental sync fetches the valid versions. Records created beyond
/// 2^63-1 cannot be repaired (their ids are what is wrong) and are left.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairRequest {
    /// Only this resource's; `None`: every resource's.
    #[serde(default)]
    pub resource: Option<String>,
    /// Only these records (decimal ids); empty: all of them.
    #[serde(default)]
    pub ids: Vec<String>,
}

/// One bad record, `GET /_sim/orgs/{org_id}/bad-records`; the answer to a
/// repair lists those repaired.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    pub resource: String,
    pub id: String,
    pub kind: BadRecordKind,
}

/// A fault the simulator can inject into an API call.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// A 5xx answer (`status`, default 503 when scripted; 500/502/503/504 by rate).
    #[serde(rename = "error_5xx")]
    Error5xx,
    /// 429 with `Retry-After`.
    RateLimited,
    /// Served normally after `slow_ms`.
    Slow,
    /// No answer for 60 s (or until the client gives up), then 504.
    Timeout,
    /// Status 200 and the real body cut off in the middle (invalid JSON).
    Truncated,
    /// Status 200 and a body that is not the envelope: alternately an HTML
    /// page and JSON of the wrong shape.
    Malformed,
    /// 401 with the Apigee invalid-token fault, as if the token were revoked.
    Unauthorized,
    /// The call is handled (a write IS applied), then its answer is lost:
    /// with a scripted `status` (5xx), that status at once; otherwise like
    /// `timeout` (no answer for 60 s, then 504). What a client sees when
    /// a gateway times out after the backend did the work. `error_5xx` and
    /// `timeout` answer before the call is handled: a write is not
    /// applied then.
    LostReply,
}

/// A fault applied to the next `count` API calls whose path (with query
/// string, e.g. `/ascend-gateway/api/v1/patients?pageSize=500`) contains
/// `path_contains`. Scripted faults are consumed in order and take
/// precedence over rates. A script whose `path_contains` matches
/// `/oauth/client_credential/accesstoken` also applies to token requests.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct ScriptedFault {
    pub fault: FaultKind,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_ms: Option<u64>,
    /// For `error_5xx`: the status to answer (500..=599).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

fn one() -> u32 {
    1
}

/// `PUT|GET /_sim/orgs/{org_id}/faults`. A `PUT` replaces the whole
/// configuration (send `{}` to switch every fault off). Every field is
/// optional and off by default. Rates are probabilities per API call (their sum must not exceed
/// 1), drawn from a deterministic generator seeded by `seed` (reset on every
/// PUT). `GET` shows the scripts still pending, with their remaining counts.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
pub struct FaultConfig {
    pub error_5xx_rate: f64,
    pub rate_limited_rate: f64,
    /// `Retry-After` of injected 429s (default 1).
    pub retry_after_secs: Option<u64>,
    pub slow_rate: f64,
    /// Delay of slow answers (default 2000).
    pub slow_ms: Option<u64>,
    pub timeout_rate: f64,
    pub truncated_rate: f64,
    pub malformed_rate: f64,
    /// Calls handled, then answered 500, 502, 503 or 504 (`lost_reply`).
    pub lost_reply_rate: f64,
    /// The organization's integration is switched off: every call is 403.
    pub forbidden: bool,
    /// Resource path names answered with 404 ("not offered to this organization").
    pub not_offered: Vec<String>,
    /// Resource path names answered with 403 (this integration may not read
    /// them); the other resources answer as usual.
    pub forbidden_resources: Vec<String>,
    /// A gateway that serves at most this many records per list page,
    /// whatever `pageSize` asked, and still reports the `pageSize` asked
    /// (an adversarial cap that says nothing).
    pub page_cap: Option<u64>,
    /// List pages are served pretty-printed: indented, a line break after
    /// every member and element (valid JSON, the same values).
    pub pretty_pages: bool,
    pub script: Vec<ScriptedFault>,
    pub seed: Option<u64>,
}

/// Per-organization counters, `GET /_sim/counters` (a map from
/// organization id to these) or `GET /_sim/orgs/{org_id}/counters`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `"METHOD /v1/path-template"` (e.g. `"GET /v1/patients"`,
    /// `"PUT /v1/appointments/{id}"`) -> API calls received, whatever their answer.
    pub calls: BTreeMap<String, u64>,
    /// Token requests with this organization's client id.
    pub token_requests: u64,
    /// Accepted writes by kind: `patient_create`, `patient_update`,
    /// `appointment_create`, `appointment_update`, `appointment_delete`,
    /// `patient_note`, `communication`, `call_log`, `document`.
    pub writes: BTreeMap<String, u64>,
    /// Status code -> responses (API calls and token requests).
    pub responses_by_status: BTreeMap<u16, u64>,
}

/// One API (or token) request, `GET /_sim/orgs/{org_id}/requests`. The log
/// keeps the last 200,000 and is cleared with the counters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct RequestLogEntry {
    pub method: String,
    /// The path below the API base (`/v1/patients`), or the token path.
    pub path: String,
    /// The raw query string (percent-encoded as sent; empty if none).
    pub query: String,
    /// The path template, as in [`Counters::calls`].
    pub template: String,
    pub status: u16,
    /// When the request was answered, ISO-8601 UTC with milliseconds.
    pub time: String,
}

/// One write call the simulator received (`POST`, `PUT` or `DELETE` under
/// the API), `GET /_sim/orgs/{org_id}/writes`, in the order received. The
/// journal keeps the last 100,000 and is cleared by `DELETE` on the same
/// path.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct WriteRecord {
    /// 1, 2, ... per organization.
    pub seq: u64,
    pub method: String,
    /// The path below the API base (`/v1/patients/5/notes`).
    pub path: String,
    /// The path template (`/v1/patients/{id}/notes`).
    pub template: String,
    /// The status the caller got.
    pub status: u16,
    /// Whether the write changed data (true for a `lost_reply` whose
    /// answer was lost; false when a fault answered before handling it,
    /// or it was refused).
    pub applied: bool,
    /// The id of the record created, changed or deleted, when applied.
    pub id: Option<String>,
    /// The request body as JSON (`null` if it was not JSON).
    pub body: serde_json::Value,
}

/// `PUT|GET /_sim/token-ttl`: lifetime of tokens issued from now on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenTtl {
    pub seconds: u64,
}

/// `PUT|GET /_sim/orgs/{org_id}/rate-limit`: a token bucket of `rps`
/// requests per second (burst `rps`); `None` = unlimited.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimit {
    pub rps: Option<u32>,
}
