//! The values the store's API takes and returns.

use model::Completeness;
use time::OffsetDateTime;

use crate::spec::Table;

pub use model::{
    DEFAULT_SYNC_INTERVAL_MINUTES, NewPractice, Practice, PracticeStatus, RunState,
    SYNC_INTERVALS_MINUTES, UnknownValue,
};

model::text_enum!(
    /// Which kind of sync a resource of a practice is in.
    SyncPhase, "sync phase", {
        /// Pulling history chunk by chunk.
        Initial => "initial",
        /// Pulling changes since the watermark.
        Incremental => "incremental",
    }
);

model::text_enum!(
    /// Whether an initial-sync chunk still has pages to pull.
    ChunkStatus, "chunk status", {
        /// Pages remain (or it has not started).
        Pending => "pending",
        /// Every page of the chunk has landed.
        Done => "done",
    }
);

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
    /// Since when the organization is not offered this resource (404 when
    /// its initial sync was planned, or in a cycle): until its first answer.
    /// Unplanned, without a watermark, when it was not offered at planning;
    /// its first answer then pulls its whole history.
    pub not_offered_since: Option<OffsetDateTime>,
    /// Since when the resource has failed without a success in between
    /// (set with `last_error` when that was empty, cleared with it).
    pub failing_since: Option<OffsetDateTime>,
    /// How far the incremental pass under way got, if one stopped before
    /// its last page: the next attempt continues from it.
    pub pass: Option<PassCursor>,
    /// When the whole resource was last reconciled (deletes, issue 13).
    pub reconciled_at: Option<OffsetDateTime>,
    /// What the last whole reconciliation counted (issue 14).
    pub completeness: Completeness,
    /// When the last incremental pass that reached its last page began.
    pub passed_at: Option<OffsetDateTime>,
    /// For an organization-wide resource: the practice whose pull the
    /// rows were last copied from (`None`: pulled by this practice).
    pub shared_from: Option<String>,
}

/// How far an incremental pass got ([`Checkpoint::Pass`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassCursor {
    /// When the pass began.
    pub started_at: OffsetDateTime,
    /// The largest id it landed.
    pub after_id: Option<i64>,
    /// The largest `lastModified` it saw.
    pub max_seen: Option<OffsetDateTime>,
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
    /// When a job for it was last sent, while it is queued or running
    /// (cleared when that job ends for good).
    pub queued_at: Option<OffsetDateTime>,
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
    /// How far an incremental pass got: a page that is not its last
    /// (creates the sync state if missing). Within one pass (the same
    /// `started_at`) the cursor never moves backwards.
    Pass(PassCursor),
    /// The incremental watermark of the page's table (never moves
    /// backwards; creates the sync state if missing). The pass's last
    /// page: it also clears the pass's cursor.
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
    /// Records set aside in quarantine with the page: those handed over as
    /// bad, and rows the database refused.
    pub quarantined: u64,
}

/// A record of a page that cannot be landed (its id or `lastModified`
/// could not be read): it goes to quarantine in the page's transaction.
///
/// `raw` and `reason` are patient data: its `Debug` shows neither.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BadRecord<'a> {
    /// Its id as sent, when it could be read (`"7000000000123"`, `"abc"`).
    pub id: Option<&'a str>,
    /// The record's JSON text (minified).
    pub raw: &'a str,
    /// What is wrong with it, for an operator.
    pub reason: &'a str,
}

impl std::fmt::Debug for BadRecord<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BadRecord")
            .field("id", &self.id)
            .field("raw_len", &self.raw.len())
            .finish_non_exhaustive()
    }
}

/// What one landing writes: a page's rows, its bad records, and (for a
/// retry of the quarantine) the quarantine keys it retries.
#[derive(Debug, Clone, Copy, Default)]
pub struct PageRecords<'a> {
    /// The rows to land.
    pub rows: &'a [LandedRow<'a>],
    /// Records that cannot be landed: set aside in quarantine.
    pub bad: &'a [BadRecord<'a>],
    /// Quarantine keys ([`crate::QuarantinedRecord::key`]) whose records
    /// this landing retries: each leaves the quarantine unless it is set
    /// aside again under the same key.
    pub retried: &'a [&'a str],
}
