//! The sync core: what to ask Ascend for and when a practice is in step.
//!
//! It decides; it does no I/O of its own. The worker calls it with what the
//! API and the store answered, and does what it says. Everything here can be
//! tested without a network or a database.
//!
//! - [`scope`]: which records belong to a practice (its location's, plus the
//!   organization-wide resources).
//! - [`budget`]: the fleet's request budget per organization: grants in
//!   slices, a pause on `Retry-After`, a rate that adapts to `429`s (AIMD).
//! - [`job`]: the rules of a job: whether it runs, how it ends, what it
//!   changes and what becomes of its message (the worker only executes them).
//! - [`plan`]: the initial sync's chunks: id ranges sized from
//!   `meta.pagination.total`, priority windows first.
//! - [`reconcile`]: finding deletes: counts compared range by range, ids
//!   listed only where they differ, every candidate confirmed by id.
//! - [`watermark`]: the incremental sync's `lastModified` watermark, its
//!   overlap, and how it moves.
//! - [`replay`]: reading archived records back into landable rows.
//! - [`schedule`]: when jobs run: the scheduler's spread, first due times
//!   and the worker's retry backoff.
//! - [`staleness`]: when a practice's copy counts as stale.
//! - [`completeness`]: what the reconciliations' counts say about a
//!   practice's copy: complete as of when, or which counts differ, in words.
//! - [`nightly`]: when captured deletes are applied: a practice's
//!   processing window on its own wall clock, and which time zone that is.
//! - [`writeback`]: what a write-back request must hold, which items may be
//!   sent, and what a failed send makes of an item (exactly once).

pub mod budget;
pub mod completeness;
pub mod job;
pub mod nightly;
pub mod plan;
pub mod progress;
pub mod reconcile;
pub mod replay;
pub mod schedule;
pub mod scope;
pub mod share;
pub mod staleness;
pub mod watermark;
pub mod writeback;

pub use plan::{ChunkPlan, ChunkWindow, IdRange, PlannedChunk};
pub use scope::Scope;
pub use staleness::{PracticeHealth, StaleReason, Staleness, staleness};
