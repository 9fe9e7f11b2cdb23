//! The worker role: executes a practice's sync.
//!
//! The sync core decides what to ask for; this crate does it: it asks the
//! Ascend client, archives each page raw, and lands it with its checkpoint in
//! the store. Every page goes archive first, then store, so the archive
//! holds every page that was ever landed (`replay` depends on it).
//!
//! [`jobs::Worker`] is the job loop in front of [`Syncer`]: it takes jobs
//! from the queue, runs each under its lease with a heartbeat and a
//! deadline, records every attempt in sync history, and executes what the
//! job rules (`sync_core::job`) decide. Every sync runs as jobs through
//! it: production, the demo, the `sync` command and the tests
//! ([`drain::run_until_idle`] runs a worker until its queue is empty).
//!
//! [`budget::FleetBudget`] is the Ascend client's request budget for a
//! fleet: every worker process draws an organization's requests from one
//! row in the store, a slice at a time.
//!
//! [`credentials::VaultCredentials`] gives each job its practice's
//! connection, opened from the store's sealed credentials by the vault.

pub mod budget;
pub mod credentials;
pub mod drain;
mod error;
pub mod jobs;
mod sync;
pub mod verify;
mod writeback;

pub use error::SyncError;
pub use sync::{
    ChunkReport, InitialReport, Progress, QUARANTINE_RETRY_LIMIT, ReplayReport, ResourceOutcome,
    Retried, RunReport, RunStatus, SyncConfig, Syncer, new_run_id,
};
