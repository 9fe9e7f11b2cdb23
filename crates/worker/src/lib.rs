//! The worker role: executes a practice's sync.
//!
//! The sync core decides what to ask for; this crate does it: it asks the
//! Ascend client, archives each page raw, and lands it with its checkpoint in
//! the store. Every page goes archive first, then store, so the archive
//! holds every page that was ever landed (`replay` depends on it).
//!
//! [`jobs::Worker`] is the job loop in front of [`Syncer`]: it takes jobs
//! from the queue, runs each under its lease with a heartbeat and a
//! deadline, records every attempt in sync history, and settles the
//! message (delete on success, back off on failure, dead letters for
//! poison). The demo and the engine's tests call [`Syncer`] directly.
//!
//! [`credentials::VaultCredentials`] gives each job its practice's
//! connection, opened from the store's sealed credentials by the vault.

pub mod credentials;
mod error;
pub mod jobs;
mod sync;
pub mod verify;

pub use error::SyncError;
pub use sync::{
    ChunkReport, InitialReport, Progress, ReplayReport, ResourceOutcome, RunReport, RunStatus,
    SyncConfig, Syncer,
};
