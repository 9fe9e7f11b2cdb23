//! The production HTTP client for the Dentrix Ascend Public API.
//!
//! Written against the API contract only (the project's
//! `reference/ascend-api.md`), never against a particular server.
//!
//! - [`AscendClient`]: one per process. Holds the connection pool, the
//!   request budget every attempt takes from ([`RequestBudget`]: the
//!   process's own [`LocalBudget`], or one the fleet shares) and, per
//!   organization, the OAuth token cache.
//! - [`OrgClient`]: one organization's handle, made by
//!   [`AscendClient::connect`] from a [`Connection`]. Fetches pages
//!   ([`OrgClient::fetch_page`]), pages through a resource
//!   ([`OrgClient::keyset`], [`OrgClient::offset`]), counts
//!   ([`OrgClient::count`]) and probes ([`OrgClient::probe`]).
//! - [`Page`] / [`Record`] / [`Rejected`]: a tolerant reading of a list
//!   answer: each record kept as raw JSON (minified) with a typed head (id,
//!   `lastModified`); a record whose head cannot be read is rejected on its
//!   own, with the reason, and the rest of the page is read.
//! - [`ClientError`]: what went wrong and what an operator must do about it.
//! - Write-back ([`OrgClient::send_write`], [`OrgClient::find_write`]): the
//!   one place that knows how each write-back type maps onto the vendor's
//!   API (most write paths are assumed; see the `writes` module), and how
//!   what a send created is found again. A write is retried in place only
//!   when it certainly did not reach Ascend ([`WriteFailure`] says
//!   [`Applied::Unknown`] otherwise).
//!
//! # Security
//! Bearer tokens go over https only; plain http is accepted only for
//! loopback hosts and only with [`InsecureLoopback::allow_for_local_testing`].
//! Redirects are never followed. Secrets and tokens are kept in
//! `secrecy` types or sensitive header values and never appear in `Debug`,
//! `Display` or logs.
//!
//! # Retries
//! Transient failures and rate limits are retried with exponential backoff
//! and full jitter (`backon` schedule), at most
//! [`ClientConfig::max_attempts`] attempts; a `429` waits at least its
//! `Retry-After` and pauses the whole organization meanwhile. A `401` gets
//! one token refresh and one more try. Everything else is returned at once.

#![warn(missing_docs)]

mod budget;
mod client;
mod config;
mod error;
mod http;
mod ids;
mod memory;
mod page;
mod pager;
mod query;

mod retry;
mod token;
mod writes;

#[cfg(test)]
mod tests;

pub use budget::{BudgetFuture, BudgetRefusal, LocalBudget, RequestBudget};
pub use client::{AscendClient, OrgClient, Stats};
pub use config::{ClientConfig, Connection, InsecureLoopback};
pub use error::{AuthFailure, ClientError};
pub use ids::{AscendId, MAX_ID, OrganizationId, ParseError};
pub use model::{ErrorClass, Resource};
pub use page::{Page, Record, Rejected};
pub use pager::{KeysetPager, OffsetPager};
pub use query::{Cursor, Filter, FilterValue, ListQuery, MAX_PAGE_SIZE, format_timestamp};
pub use writes::{Applied, Sent, WriteFailure};

/// Re-exported so that callers can build a [`Connection`].
pub use secrecy::SecretString;
/// Re-exported so that callers can name the raw record type.
pub use serde_json::value::RawValue;
