//! The store: the only place in ascend-sync with SQL.
//!
//! What it holds, on Postgres (production, RDS) or SQLite (embedded):
//!
//! - one **landed table** per Ascend resource ([`Table`]): the practice's
//!   records, each with typed columns for reports (described once, in
//!   [`spec::SPECS`]), its `lastModified` and the whole record as `raw` JSON;
//! - **practices**: the practice locations being synced and their status;
//! - **sync state** per practice and resource: phase, incremental watermark,
//!   counts, last error;
//! - **sync chunks**: the initial sync's plan, id range by id range, each with
//!   its resume cursor;
//! - the **quarantine** (`quarantine.rs`): records that could not be read
//!   or landed, set aside whole in their page's transaction so that the
//!   rest of the page lands; each leaves it when it lands;
//! - **connections** (`connections.rs`): each practice's credentials as the
//!   vault sealed them (never plaintext), the audit log of lifecycle changes
//!   and refusals, and admin tokens (their SHA-256 only);
//! - **captured deletes** (`deletes.rs`): landed records Ascend no longer
//!   lists, found by the workers' reconciliation, waiting for the nightly
//!   role; a record seen again leaves them in the transaction that sees it;
//!   the nightly role (`nightly.rs`) applies them a batch per transaction,
//!   keeping each removed row's last version in `deleted_records`, and
//!   records its passes;
//! - **request budgets** (`budget.rs`): one row per organization that every
//!   worker of the fleet claims its Ascend requests from, a slice at a time.
//!
//! [`Store::land_page`] is the hot path: a page of records and its checkpoint
//! commit in one transaction.
//!
//! **Invariants.** Table and column names in SQL come only from the fixed
//! spec, never from input. A value that cannot be read from a record is
//! stored as NULL, never an error and never a lost row; `raw` keeps it. An
//! older version of a record never overwrites a newer one, and neither a
//! chunk's cursor nor a watermark moves backwards.

mod admin;
mod budget;
mod connections;
mod db_time;
mod deletes;
mod error;
mod extract;
mod history;
mod jobs;
mod landing;
mod nightly;
mod quarantine;
mod queue;
mod readback;
mod rows;
mod runtime;
mod share;
pub mod spec;
mod store;
mod values;
mod writeback;

#[cfg(test)]
mod tests;

pub use connections::{
    AdminToken, AuditEntry, AuditOutcome, AuditRecord, NewAdminToken, Role, SealedCredentials,
};
pub use deletes::{CapturedDelete, LandedKey};
pub use error::{Backend, StoreError};
pub use extract::Value;
pub use history::{
    HistoryCursor, HistoryFilter, HistoryQuery, MAX_ERROR_CHARS, MAX_RESOURCE_ERROR_CHARS, NewRun,
    PracticeOverview, ResourceCounts, RunEnd, RunRecord, RunSummary, STALE_MISMATCHES,
};
pub use jobs::{AuthFailure, JobEnd};
pub use nightly::{
    DeleteCounts, DeletedRecord, NightlyPassEnd, NightlyPassRecord, NightlyPassStart,
    NightlyPassStatus, NightlyPractice, NightlySettings, NightlyTrigger, PendingDelete, Settled,
};
pub use quarantine::QuarantinedRecord;
pub use queue::ReceiptOutcome;
pub use readback::LandedRecord;
pub use runtime::{
    DuePractice, ForceDecision, chunk_lease_key, practice_lease_key, writeback_lease_key,
};
pub use share::{Copy, Member, SHARE_CHUNK, Shared};
pub use spec::{Kind, Table, UnknownTable};
pub use store::Store;
pub use values::{
    BadRecord, Checkpoint, Chunk, ChunkStatus, DEFAULT_SYNC_INTERVAL_MINUTES, LandOutcome,
    LandedRow, NewChunk, NewPractice, PageRecords, PassCursor, Practice, PracticeStatus, RunState,
    SYNC_INTERVALS_MINUTES, SyncPhase, SyncState, UnknownValue,
};
pub use writeback::{ItemEnd, NewItem, SettingsChange, Submitted, writeback_marker};
