//! The types every layer shares, with no I/O: what a resource is, where a
//! practice stands, how an attempt ended and why, what a job is, and what
//! the queue carries.
//!
//! Each type is defined here once. The client, the store, the queue, the
//! sync core, the worker and the binary use these, so no layer keeps a
//! mirror of another's type (and no conversion between mirrors can drift).
//!
//! - [`Resource`]: the Ascend list resources this project syncs.
//! - [`PracticeStatus`], [`Practice`], [`NewPractice`]: a practice location.
//! - [`RunState`], [`ErrorClass`]: how an attempt ended, and the class of
//!   its error (what an operator does about it).
//! - [`Job`]: the job message, versioned JSON, an enum with exactly the
//!   fields of each kind, and its constructors and lane.
//! - [`Lane`], [`Outgoing`], [`Delivery`], [`DeadLetter`], [`Depth`]: what
//!   the queue sends, delivers, dead-letters and counts, on SQS and on the
//!   database alike.
//! - [`OrgBudget`]: an organization's request budget, kept for the fleet.
//! - [`DeleteDetection`]: what found a record Ascend no longer lists.
//! - [`hosts`]: where a practice's secret and tokens may go ([`HostPolicy`]).
//! - [`writeback`]: what may be written into a practice's Ascend, and the
//!   outbox that carries it (issue 15).

#[macro_use]
mod text;
mod budget;
mod completeness;
mod deletes;
pub mod hosts;
pub mod job;
mod practice;
mod queue;
mod resource;
pub mod writeback;

#[cfg(test)]
mod tests;

pub use budget::OrgBudget;
pub use completeness::Completeness;
pub use deletes::DeleteDetection;
pub use hosts::{Endpoint, HostPolicy, HostRefused};
pub use job::{JOB_VERSION, Job, JobError, JobKind, JobMeta, Trigger};
pub use practice::{
    ClaimChange, DEFAULT_SYNC_INTERVAL_MINUTES, ErrorClass, Holder, MAX_PRACTICE_ID_LEN,
    NewPractice, Practice, PracticeStatus, RunState, SYNC_INTERVALS_MINUTES, check_practice_id,
};
pub use queue::{DeadLetter, Delivery, Depth, Lane, Outgoing};
pub use resource::Resource;
pub use text::UnknownValue;
pub use writeback::{ItemStatus, OutboxItem, Write, WritebackSettings, WritebackType};
