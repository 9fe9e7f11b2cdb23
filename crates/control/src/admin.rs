//! The operator's use cases besides a practice's connection (issue 16):
//! a practice's interval and processing window, a resync, a retry of a
//! write-back item given up, rewrapping every data key, an organization's
//! request budget, and registering a practice without credentials (the
//! by-hand `sync`). Each is audited as its actor; the caller (the CLI, the
//! admin API) has passed `access::Gate` first.

use model::{NewPractice, Trigger};
use queue::Queue;
use store::{AuditEntry, AuditOutcome, ForceDecision, NightlySettings, Store, Table};
use sync_core::budget::{Policy, fresh};
use sync_core::nightly::{Window, Zone, parse_hhmm, parse_time_zone};
use vault::{Purpose, SealContext, Vault};
use worker::credentials::to_sealed;

use crate::{ControlError, force_sync_by, registered};

/// A change of a practice's processing window (`practice window`); each
/// field left None is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WindowChange {
    /// Its own time zone: `Some(Some(name))` (an IANA name) sets it,
    /// `Some(None)` forgets it.
    pub time_zone: Option<Option<String>>,
    /// The window's start, local `HH:MM`.
    pub start: Option<String>,
    /// The window's end, local `HH:MM`, excluded.
    pub end: Option<String>,
}

impl WindowChange {
    /// Whether it changes nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self == &WindowChange::default()
    }
}

/// What a practice's window is, after [`change_window`].
#[derive(Debug, Clone)]
pub struct WindowSettings {
    /// The settings as stored.
    pub settings: NightlySettings,
    /// One line: the window, the zone it is read in, the own time zone.
    pub summary: String,
}

/// Shows (an empty change) or changes a practice's processing window and
/// its own time zone; a change is audited as `practice.window` by `actor`.
pub async fn change_window(
    store: &Store,
    practice_id: &str,
    change: &WindowChange,
    actor: &str,
) -> Result<WindowSettings, ControlError> {
    let invalid = |e: &dyn std::fmt::Display| ControlError::Invalid(e.to_string());
    let mut settings = store.nightly_settings(practice_id).await?.ok_or_else(|| {
        ControlError::Invalid(format!("practice {practice_id:?} is not registered"))
    })?;
    if !change.is_empty() {
        if let Some(tz) = &change.time_zone {
            settings.time_zone = match tz {
                Some(name) => Some(parse_time_zone(name).map_err(|e| invalid(&e))?),
                None => None,
            };
        }
        if let Some(start) = &change.start {
            settings.window_start_minute = i64::from(parse_hhmm(start).map_err(|e| invalid(&e))?);
        }
        if let Some(end) = &change.end {
            settings.window_end_minute = i64::from(parse_hhmm(end).map_err(|e| invalid(&e))?);
        }
        Window::new(settings.window_start_minute, settings.window_end_minute)
            .map_err(|e| invalid(&e))?;
        store
            .set_nightly_settings(
                practice_id,
                settings.time_zone.as_deref(),
                settings.window_start_minute,
                settings.window_end_minute,
            )
            .await?;
    }
    let window = Window::new(settings.window_start_minute, settings.window_end_minute)
        .unwrap_or(Window::DEFAULT);
    let zone = Zone::choose(
        settings.location_time_zone.as_deref(),
        settings.time_zone.as_deref(),
    );
    let summary = format!(
        "window {window}, read in {zone}; own time zone {}",
        settings.time_zone.as_deref().unwrap_or("none")
    );
    if !change.is_empty() {
        store
            .record_audit(
                &AuditEntry::done(actor, "practice.window", practice_id)
                    .with_detail(summary.clone()),
            )
            .await?;
    }
    Ok(WindowSettings { settings, summary })
}

/// What [`rewrap_keys`] did.
#[derive(Debug, Clone, Default)]
pub struct RewrapReport {
    /// Rows now under the new key.
    pub rewrapped: usize,
    /// Rows whose credentials changed meanwhile (already sealed anew).
    pub changed: usize,
    /// Rows that keep their old key, each with why.
    pub failed: Vec<String>,
}

impl RewrapReport {
    /// One line for the audit log and the operator.
    #[must_use]
    pub fn summary(&self, to_key_id: &str) -> String {
        format!(
            "{} rewrapped to {to_key_id}, {} changed meanwhile (already sealed anew), {} failed",
            self.rewrapped,
            self.changed,
            self.failed.len()
        )
    }
}

/// Re-encrypts every practice's data key under `to_key_id` (`keys
/// rewrap`: the ciphertext, and so the sealed plaintext and its version,
/// unchanged), each stored with a compare-and-swap on the old wrapped key;
/// audited as `keys.rewrap` by `actor` (`failed` if any row failed).
pub async fn rewrap_keys(
    store: &Store,
    vault: &Vault,
    to_key_id: &str,
    actor: &str,
) -> Result<RewrapReport, ControlError> {
    let mut report = RewrapReport::default();
    for (practice_id, stored) in store.all_credentials().await? {
        let Some(sealed) = to_sealed(&stored) else {
            report
                .failed
                .push(format!("{practice_id}: its stored nonce is damaged"));
            continue;
        };
        let ctx = SealContext::new(practice_id.as_str(), Purpose::AscendCredentials);
        match vault.rewrap(&ctx, &sealed, to_key_id).await {
            Ok(new) => {
                let stored_now = store
                    .store_rewrapped_key(
                        &practice_id,
                        &stored.encrypted_data_key,
                        &new.encrypted_data_key,
                        &new.key_id,
                    )
                    .await?;
                if stored_now {
                    report.rewrapped += 1;
                } else {
                    report.changed += 1;
                }
            }
            Err(error) => report.failed.push(format!("{practice_id}: {error}")),
        }
    }
    store
        .record_audit(&AuditEntry {
            actor: actor.to_owned(),
            action: "keys.rewrap".to_owned(),
            practice_id: None,
            outcome: if report.failed.is_empty() {
                AuditOutcome::Done
            } else {
                AuditOutcome::Failed
            },
            detail: Some(report.summary(to_key_id)),
        })
        .await?;
    Ok(report)
}

/// The highest request budget an organization can be given, requests per
/// second.
pub const MAX_BUDGET: f64 = 1000.0;

/// Gives an organization its own request budget (`Some`: requests per
/// second, above 0 and at most [`MAX_BUDGET`]) or back the fleet's
/// default (`None`); audited as `budget.set` by `actor`.
pub async fn set_budget(
    store: &Store,
    organization_id: &str,
    limit: Option<f64>,
    actor: &str,
) -> Result<(), ControlError> {
    if let Some(limit) = limit {
        check_budget(limit)?;
    }
    let organization: ascend_client::OrganizationId = organization_id
        .parse()
        .map_err(|_| ControlError::Invalid(format!("bad Organization-ID {organization_id:?}")))?;
    let org = organization.as_str();
    let made = Policy::new(limit.unwrap_or(1.0));
    store
        .configure_budget(org, limit, |now| fresh(org, &made, now))
        .await?;
    store
        .record_audit(&AuditEntry {
            actor: actor.to_owned(),
            action: "budget.set".to_owned(),
            practice_id: None,
            outcome: AuditOutcome::Done,
            detail: Some(match limit {
                Some(limit) => format!("organization {org}: {limit} requests per second"),
                None => format!("organization {org}: the fleet's default"),
            }),
        })
        .await?;
    Ok(())
}

/// A budget an operator may set: a number above 0, at most [`MAX_BUDGET`].
fn check_budget(limit: f64) -> Result<f64, ControlError> {
    if !limit.is_finite() || limit <= 0.0 || limit > MAX_BUDGET {
        return Err(ControlError::Invalid(format!(
            "--requests-per-second must be above 0 and at most {MAX_BUDGET}, not {limit}"
        )));
    }
    Ok(limit)
}

/// Registers a practice without credentials (the by-hand `sync`, whose
/// credentials come from a file), audited as `practice.register` by
/// `actor`. A registered practice is left as it is.
pub async fn register(
    store: &Store,
    practice: &NewPractice,
    actor: &str,
) -> Result<model::Practice, ControlError> {
    model::check_practice_id(&practice.practice_id).map_err(ControlError::Invalid)?;
    if store.get_practice(&practice.practice_id).await?.is_none() {
        store.upsert_practice(practice).await?;
        store
            .record_audit(
                &AuditEntry::done(actor, "practice.register", &practice.practice_id).with_detail(
                    format!(
                        "organization {}, location {}, without stored credentials",
                        practice.organization_id, practice.location_id
                    ),
                ),
            )
            .await?;
    }
    registered(store, &practice.practice_id).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_must_be_a_positive_number_within_reason() {
        assert_eq!(check_budget(12.5).ok(), Some(12.5));
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY, 1000.5] {
            assert!(check_budget(bad).is_err(), "{bad} accepted");
        }
    }
}

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

/// A practice's initial sync as it stands: landed and expected per
/// resource from its plan's chunks, and the time left
/// ([`sync_core::progress`]).
pub async fn initial_progress(
    store: &Store,
    practice_id: &str,
) -> Result<sync_core::progress::InitialProgress, ControlError> {
    let chunks: Vec<sync_core::progress::ChunkCount> = store
        .list_chunks(practice_id)
        .await?
        .iter()
        .map(|c| sync_core::progress::ChunkCount {
            resource: c.table.resource(),
            expected: c.expected,
            landed: c.landed,
        })
        .collect();
    let started = store.initial_sync_started(practice_id).await?;
    Ok(sync_core::progress::initial_progress(
        &chunks,
        started,
        time::OffsetDateTime::now_utc(),
    ))
}
