//! One organization's share of Ascend's request budget, as the whole fleet
//! keeps it (every worker process, every job and chunk of the
//! organization draws from it). The rules that change it are
//! `sync_core::budget`; the store keeps one row per organization.

use time::OffsetDateTime;

/// An organization's request budget: a send schedule (a generic cell rate
/// algorithm: `next_at` is the next free send slot, one slot every
/// `1 / rate` seconds), the rate it paces to (lowered on `429`, grown back
/// slowly to the limit), and the pause a `Retry-After` asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgBudget {
    /// The organization (`Organization-ID`).
    pub organization_id: String,
    /// Requests per second the fleet paces itself to now.
    pub rate: f64,
    /// The limit `rate` grows back to: [`OrgBudget::configured`], or the
    /// fleet's default when the organization has no setting of its own (as
    /// of the last request).
    pub limit: f64,
    /// The organization's own limit, requests per second (`None`: the
    /// fleet's default).
    pub configured: Option<f64>,
    /// The next free send slot.
    pub next_at: OffsetDateTime,
    /// No request is sent before this (a `Retry-After`).
    pub paused_until: Option<OffsetDateTime>,
    /// When `rate` was last lowered (a `429`).
    pub decreased_at: Option<OffsetDateTime>,
    /// When `rate` was last brought up to date.
    pub adjusted_at: OffsetDateTime,
    /// Requests granted, all time.
    pub granted: i64,
    /// `429` answers reported, all time.
    pub throttled: i64,
}
