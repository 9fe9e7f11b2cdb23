//! A practice location, and how its sync attempts end.

use time::OffsetDateTime;

/// What happens to the practice's scheduling claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClaimChange {
    /// Nothing.
    #[default]
    Keep,
    /// Given up, so the scheduler may enqueue the practice when it is due.
    Release(Holder),
    /// Kept until `until` (never shortened): an initial sync in progress.
    Extend {
        /// Whose claim.
        holder: Holder,
        /// The new end.
        until: OffsetDateTime,
    },
}

/// Whose claim a [`ClaimChange`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder {
    /// Only if this job holds it: a stale job never touches a newer job's
    /// claim.
    ThisJob,
    /// Whichever job holds it: a chunk acts for its initial sync, whose
    /// claim is its plan's (or a Force Sync Now's).
    Any,
}

text_enum!(
    /// Where a practice stands. Stored as text, with a CHECK on these values.
    PracticeStatus, "practice status", {
        /// Registered; the initial sync has not finished.
        InitialSync => "initial_sync",
        /// Syncing incrementally on its interval.
        Active => "active",
        /// Paused by a person; not scheduled.
        Paused => "paused",
        /// Ascend refused its credentials (or 403): a person must act.
        AuthFailed => "auth_failed",
        /// Removed from syncing; its landed data is kept.
        Removed => "removed",
    }
);

impl PracticeStatus {
    /// Whether jobs of the practice run: initial sync or active.
    #[must_use]
    pub const fn is_syncing(self) -> bool {
        matches!(self, PracticeStatus::InitialSync | PracticeStatus::Active)
    }
}

text_enum!(
    /// The state of one attempt of a job (`sync_runs.status`). Stored as
    /// text, with a CHECK on these values.
    RunState, "run state", {
        /// Started, not finished (or its worker died).
        Running => "running",
        /// Every resource synced.
        Succeeded => "succeeded",
        /// Some resources synced, some failed.
        Partial => "partial",
        /// Nothing synced; not retried.
        Failed => "failed",
        /// This attempt failed; the job will be tried again.
        Retrying => "retrying",
        /// The job was given up; its message is in the dead-letter queue.
        DeadLettered => "dead_lettered",
        /// Nothing to do (e.g. the job no longer held the practice's claim).
        Skipped => "skipped",
    }
);

impl RunState {
    /// The states that count as failures in history (`history --failed`).
    pub const FAILURES: &'static [RunState] = &[
        RunState::Failed,
        RunState::Partial,
        RunState::Retrying,
        RunState::DeadLettered,
    ];

    /// Whether this is one of [`RunState::FAILURES`].
    #[must_use]
    pub fn is_failure(self) -> bool {
        Self::FAILURES.contains(&self)
    }
}

text_enum!(
    /// What kind of failure ended an attempt (or a resource of it), by what
    /// an operator does about it. Written in history as `error_class`.
    ErrorClass, "error class", {
        /// Ascend refused the credentials: a person must reconnect.
        Auth => "auth",
        /// Ascend's rate limit: retried after its `Retry-After`.
        RateLimited => "rate_limited",
        /// A network failure or a 5xx: retried with backoff.
        Transient => "transient",
        /// The organization is not offered this resource (404).
        NotOffered => "not_offered",
        /// The organization may not read this resource (403): the others go
        /// on; every resource answering so means the integration is not
        /// enabled.
        Forbidden => "forbidden",
        /// A page could not be read (truncated, malformed): fetched again.
        BadPayload => "bad_payload",
        /// Ascend refused our request as wrong: a bug to report.
        Rejected => "rejected",
        /// Our configuration is wrong (an URL, a setting): fix it.
        Config => "config",
        /// The database failed: retried; look at the database if it lasts.
        Store => "store",
        /// The raw archive failed: retried; look at S3 or the folder.
        Archive => "archive",
        /// The initial sync could not be planned (some resource): retried.
        Plan => "plan",
        /// A page's landing was interrupted: fetched again.
        Interrupted => "interrupted",
        /// The practice's stored state does not allow the job.
        State => "state",
        /// The credentials could not be opened (KMS unreachable): retried.
        Credentials => "credentials",
        /// The queue failed (sending chunks): retried.
        Queue => "queue",
        /// The job ran past its time limit: retried from its last page.
        Timeout => "timeout",
        /// Another worker took the job's lease: retried.
        Lease => "lease",
        /// The worker shut down: released to another worker.
        Shutdown => "shutdown",
        /// The job had nothing to do (recorded as `skipped`).
        Skipped => "skipped",
        /// The job message itself was unusable: in the dead letters.
        Poison => "poison",
        /// Records that could not be read or landed are in quarantine; the
        /// rest of their pages landed. Tried again every cycle.
        Quarantined => "quarantined",
    }
);

impl ErrorClass {
    /// Whether trying again can help: everything but a refusal of the
    /// credentials, which waits for a person.
    #[must_use]
    pub const fn needs_a_person(self) -> bool {
        matches!(self, ErrorClass::Auth)
    }
}

/// The longest practice id, in bytes.
pub const MAX_PRACTICE_ID_LEN: usize = 64;

/// Checks a practice id at connect time: 1 to 64 characters of
/// `A-Z a-z 0-9 _ . -`, not only dots. Every archive key, lease key and
/// job id is built from it, so an id that passes here passes there too.
pub fn check_practice_id(id: &str) -> Result<(), String> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if id.is_empty()
        || id.len() > MAX_PRACTICE_ID_LEN
        || !id.bytes().all(allowed)
        || id.bytes().all(|b| b == b'.')
    {
        return Err(format!(
            "the practice id must be 1 to {MAX_PRACTICE_ID_LEN} characters of A-Z a-z 0-9 _ . - \
             (and not only dots); got {}",
            crate::job::shown(id)
        ));
    }
    Ok(())
}

/// The sync intervals a practice may have, in minutes.
pub const SYNC_INTERVALS_MINUTES: [i16; 7] = [2, 5, 10, 15, 30, 45, 60];
/// The standard sync interval, in minutes.
pub const DEFAULT_SYNC_INTERVAL_MINUTES: i16 = 15;

/// A practice to register, or the new settings of a registered one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPractice {
    /// Our id for the practice location (not empty).
    pub practice_id: String,
    /// The Ascend Organization-ID (24 hex digits).
    pub organization_id: String,
    /// The Ascend location id of the practice (0: the whole organization).
    pub location_id: i64,
    /// The Ascend API base, e.g. `https://prod.hs1api.com/ascend-gateway/api`.
    pub api_base: String,
    /// One of [`SYNC_INTERVALS_MINUTES`]; the database refuses others.
    pub sync_interval_minutes: i16,
}

/// A registered practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Practice {
    /// Our id for the practice location.
    pub practice_id: String,
    /// The Ascend Organization-ID.
    pub organization_id: String,
    /// The Ascend location id (0: the whole organization).
    pub location_id: i64,
    /// The Ascend API base.
    pub api_base: String,
    /// Minutes between incremental syncs.
    pub sync_interval_minutes: i16,
    /// Where the practice stands.
    pub status: PracticeStatus,
    /// Why, in words for a person (e.g. the last auth error).
    pub status_detail: Option<String>,
    /// When the status last changed (None: never since registration).
    pub status_changed_at: Option<OffsetDateTime>,
    /// When it was registered.
    pub created_at: OffsetDateTime,
    /// When its row last changed.
    pub updated_at: OffsetDateTime,
    /// When a sync of it last succeeded.
    pub last_success_at: Option<OffsetDateTime>,
    /// Raised each time credentials are connected or rotated: a job that
    /// opened an older version cannot mark the practice `auth_failed`.
    pub credential_version: i64,
}
