//! The worker role: executes a practice's sync.
//!
//! The sync core decides what to ask for; this crate does it: it asks the
//! Ascend client, archives each page raw, and lands it with its checkpoint in
//! the store. Every page goes archive first, then store, so the archive
//! holds every page that was ever landed (`replay` depends on it).
//!
//! Issue 4 puts a queue in front of [`Syncer`]; today the demo and the tests
//! call it directly.

mod error;
mod sync;
pub mod verify;

pub use error::SyncError;
pub use sync::{
    ChunkReport, InitialReport, Progress, ReplayReport, ResourceOutcome, RunReport, RunStatus,
    SyncConfig, Syncer,
};
