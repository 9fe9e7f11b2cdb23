//! The changes the admin surfaces make that are not a practice's
//! lifecycle: its interval, a resync, a retry of a write-back item.
//! Each is audited as the person who asked (the store writes the audit
//! row in the change's transaction).

use model::Trigger;
use queue::Queue;
use store::{ForceDecision, Store, Table};

use crate::{ControlError, force_sync_by};

/// Sets a practice's interval (one of [`model::SYNC_INTERVALS_MINUTES`]);
/// returns the old one. Audited as `practice.interval`.
pub async fn set_interval(
    store: &Store,
    practice_id: &str,
    minutes: i16,
    actor: &str,
) -> Result<i16, ControlError> {
    if !model::SYNC_INTERVALS_MINUTES.contains(&minutes) {
        return Err(ControlError::Invalid(format!(
            "an interval of {minutes} minutes is not offered: choose one of {:?}",
            model::SYNC_INTERVALS_MINUTES
        )));
    }
    Ok(store.set_sync_interval(practice_id, minutes, actor).await?)
}

/// What a resync did.
#[derive(Debug)]
pub struct Resynced {
    /// The resources whose watermarks were forgotten.
    pub resources: Vec<Table>,
    /// The Force Sync Now that pulls them again.
    pub decision: ForceDecision,
}

/// Resync: `resources` (every synced resource of the practice when
/// empty) are pulled whole again by the next incremental pass, which a
/// Force Sync Now starts at once. Audited as `practice.resync` and
/// `practice.force`. Refused while a sync of the practice runs, and
/// during its initial sync.
pub async fn resync(
    store: &Store,
    queue: &Queue,
    practice_id: &str,
    resources: &[Table],
    actor: &str,
) -> Result<Resynced, ControlError> {
    let reset = store
        .reset_for_resync(practice_id, resources, actor)
        .await?;
    let decision = force_sync_by(store, queue, practice_id, Trigger::Force, actor).await?;
    Ok(Resynced {
        resources: reset,
        decision,
    })
}

/// A person's retry of a `dead` or `failed` write-back item (an item
/// that was ever sent is looked up before it is sent again). Audited as
/// `writeback.retry`. Returns the item's practice.
pub async fn retry_writeback(
    store: &Store,
    item_id: i64,
    actor: &str,
) -> Result<String, ControlError> {
    Ok(store.retry_writeback(item_id, actor).await?)
}
