//! The values the store's API takes and returns.

use time::OffsetDateTime;

use crate::spec::Table;

/// A text value that is not one of the values of a closed set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a valid {what}: expected one of {expected}")]
pub struct UnknownValue {
    pub(crate) what: &'static str,
    pub(crate) value: String,
    pub(crate) expected: &'static str,
}

macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        $name:ident, $what:literal, { $( $(#[$vmeta:meta])* $variant:ident => $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as stored.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::model::UnknownValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $( $text => Ok($name::$variant), )+
                    _ => Err($crate::model::UnknownValue {
                        what: $what,
                        value: s.chars().take(64).collect(),
                        expected: concat!($($text, " "),+),
                    }),
                }
            }
        }
    };
}

pub(crate) use text_enum;

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

text_enum!(
    /// Which kind of sync a resource of a practice is in.
    SyncPhase, "sync phase", {
        /// Pulling history chunk by chunk.
        Initial => "initial",
        /// Pulling changes since the watermark.
        Incremental => "incremental",
    }
);

text_enum!(
    /// Whether an initial-sync chunk still has pages to pull.
    ChunkStatus, "chunk status", {
        /// Pages remain (or it has not started).
        Pending => "pending",
        /// Every page of the chunk has landed.
        Done => "done",
    }
);

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
    /// The Ascend location id of the practice.
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
    /// The Ascend location id.
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
}

/// The sync state of one resource (table) of one practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    /// The practice.
    pub practice_id: String,
    /// The resource's table.
    pub table: Table,
    /// Initial or incremental.
    pub phase: SyncPhase,
    /// The incremental `lastModified` watermark; never moves backwards.
    pub watermark: Option<OffsetDateTime>,
    /// Distinct records of the pages checkpointed with a watermark, summed.
    pub landed_count: i64,
    /// What the API said it holds (`meta.pagination.total`), if known.
    pub expected_count: Option<i64>,
    /// The last error of this resource, cleared on success by the caller.
    pub last_error: Option<String>,
    /// When the state last changed.
    pub updated_at: OffsetDateTime,
}

/// A chunk of the initial sync to plan: the records of one resource with
/// ids in `id_from..id_to` (from inclusive, to exclusive), plus an
/// optional extra filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewChunk {
    /// The resource's table.
    pub table: Table,
    /// The smallest id of the chunk (inclusive).
    pub id_from: i64,
    /// The end of the chunk (exclusive); greater than `id_from`.
    pub id_to: i64,
    /// Lower is pulled first.
    pub priority: i16,
    /// Extra filter clauses for the API (e.g. a date window); may be empty.
    pub filter: String,
    /// What the API said the chunk holds, if known.
    pub expected: Option<i64>,
}

/// A planned chunk of the initial sync, with its progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Its id.
    pub chunk_id: i64,
    /// The practice.
    pub practice_id: String,
    /// The resource's table.
    pub table: Table,
    /// The smallest id of the chunk (inclusive).
    pub id_from: i64,
    /// The end of the chunk (exclusive).
    pub id_to: i64,
    /// Lower is pulled first.
    pub priority: i16,
    /// Extra filter clauses; may be empty.
    pub filter: String,
    /// The resume cursor: the last id of the last committed page; the next
    /// page starts after it (`lastId`). `None`: start at `id_from`.
    pub after_id: Option<i64>,
    /// What the API said the chunk holds, if known.
    pub expected: Option<i64>,
    /// Distinct records of the chunk landed so far.
    pub landed: i64,
    /// Pending or done.
    pub status: ChunkStatus,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
}

/// One record of a page to land.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LandedRow<'a> {
    /// The record's Ascend id (ids fit 63 bits).
    pub id: i64,
    /// The record's `lastModified`, if it has one.
    pub last_modified: Option<OffsetDateTime>,
    /// The whole record as the API sent it: a JSON object.
    pub raw: &'a str,
}

/// What to advance, in the same transaction as a page's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// Nothing: the rows only.
    None,
    /// An initial-sync chunk's cursor.
    Chunk {
        /// The chunk.
        chunk_id: i64,
        /// The last id of this page (`None` leaves the cursor as it is,
        /// e.g. for an empty last page). The cursor never moves backwards.
        after_id: Option<i64>,
        /// Whether this was the chunk's last page. A done chunk stays done.
        done: bool,
    },
    /// The incremental watermark of the page's table (never moves
    /// backwards; creates the sync state if missing).
    Watermark {
        /// The new watermark.
        watermark: OffsetDateTime,
    },
}

/// What landing a page did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LandOutcome {
    /// Rows inserted or replaced.
    pub written: u64,
    /// Rows not written because the table holds a newer version (or the
    /// page held a newer duplicate of the same id).
    pub skipped_older: u64,
}
