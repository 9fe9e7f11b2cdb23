//! What the last whole reconciliation of a resource counted for a
//! practice (issue 14): the evidence behind "complete as of T".

use time::OffsetDateTime;

/// A resource's completeness evidence for one practice, as stored
/// (`sync_state`, migration 0012). What it means for the practice is
/// `sync_core::completeness`'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Completeness {
    /// Ascend's `meta.pagination.total` for the practice's scope, no
    /// window, at the last count.
    pub ascend_count: Option<i64>,
    /// Ours at the same moment: landed rows without a pending captured
    /// delete.
    pub held_count: Option<i64>,
    /// When the last count was taken.
    pub counted_at: Option<OffsetDateTime>,
    /// The last time the two counts were equal.
    pub complete_at: Option<OffsetDateTime>,
    /// The first count of the mismatch under way, if there is one.
    pub mismatch_since: Option<OffsetDateTime>,
    /// Reconciliations in a row that found the mismatch under way.
    pub mismatches: i32,
}
