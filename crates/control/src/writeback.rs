//! Write-back's use cases (issue 15): submitting a request to the outbox
//! and changing a practice's switches. The CLI, the demo and the tests
//! call these; the admin API will.

use model::{Write, WritebackSettings, WritebackType};
use serde_json::Value;
use store::{NewItem, SettingsChange, Store, Submitted, Table};
use sync_core::writeback::{self, Invalid};

use crate::ControlError;

/// Puts a write-back request into the practice's outbox.
///
/// Refused with a clear error, storing nothing: an unknown type, a key
/// that is not a key, a body that fails the type's schema (an oversized
/// document included), a patient or appointment the practice's landed
/// tables do not hold, and a key used before for a different request. A
/// key used before for the same request stores nothing and returns the
/// item stored then (`created` false). The item is `pending` if its type is
/// on for the practice now, else `blocked` for good.
pub async fn submit(
    store: &Store,
    practice_id: &str,
    kind: &str,
    idempotency_key: &str,
    body: &Value,
    actor: &str,
) -> Result<Submitted, ControlError> {
    let kind: WritebackType = kind
        .parse()
        .map_err(|e: model::UnknownValue| ControlError::Invalid(e.to_string()))?;
    writeback::check_key(idempotency_key).map_err(invalid)?;
    let write = writeback::parse(kind, body).map_err(invalid)?;
    check_references(store, practice_id, &write).await?;
    let stored = serde_json::to_string(&write)
        .map_err(|e| ControlError::Invalid(format!("the request cannot be stored: {e}")))?;
    let submitted = store
        .submit_writeback(&NewItem {
            practice_id: practice_id.to_owned(),
            kind,
            idempotency_key: idempotency_key.to_owned(),
            body: stored.clone(),
            submitted_by: actor.to_owned(),
        })
        .await?;
    if !submitted.created && (submitted.item.kind != kind || submitted.item.body != stored) {
        return Err(ControlError::Invalid(format!(
            "the idempotency key {idempotency_key:?} was used before for a different request \
             (item {}); use a new key for a new request",
            submitted.item.item_id
        )));
    }
    Ok(submitted)
}

/// Changes a practice's write-back switches and the provider SMS notes are
/// attributed to, audited as `actor`. Turning `sms_log` on needs a note
/// provider (set before, or in the same change); a provider must be one of
/// the practice's landed providers.
pub async fn change_settings(
    store: &Store,
    practice_id: &str,
    change: &SettingsChange,
    actor: &str,
) -> Result<WritebackSettings, ControlError> {
    let before = store.writeback_settings(practice_id).await?;
    if let Some(Some(provider)) = change.note_provider_id
        && !store
            .has_landed(practice_id, Table::Providers, provider)
            .await?
    {
        return Err(ControlError::Invalid(format!(
            "provider {provider} is not among the practice's providers (as last synced); \
             choose one `status --practice` lists, or sync first"
        )));
    }
    let provider = change.note_provider_id.unwrap_or(before.note_provider_id);
    let sms_on = change
        .switch
        .iter()
        .rev()
        .find(|(k, _)| *k == WritebackType::SmsLog)
        .map_or_else(
            || before.of(WritebackType::SmsLog).is_some_and(|s| s.enabled),
            |(_, on)| *on,
        );
    if sms_on && provider.is_none() {
        return Err(ControlError::Invalid(
            "sms_log writes each SMS as a patient note attributed to a provider: choose the \
             provider first (--note-provider ID)"
                .to_owned(),
        ));
    }
    Ok(store
        .change_writeback_settings(practice_id, change, actor)
        .await?)
}

/// The patient or appointment a request names must be one the practice's
/// landed tables hold (so a typo cannot write into the wrong chart).
async fn check_references(
    store: &Store,
    practice_id: &str,
    write: &Write,
) -> Result<(), ControlError> {
    if store.get_practice(practice_id).await?.is_none() {
        return Err(ControlError::Invalid(format!(
            "practice {practice_id:?} is not registered"
        )));
    }
    let mut wanted = Vec::new();
    if let Some(id) = write.patient_id() {
        wanted.push((Table::Patients, id, "patient"));
    }
    if let Some(id) = write.appointment_id() {
        wanted.push((Table::Appointments, id, "appointment"));
    }
    if let Write::NewAppointment(a) = write {
        if let Some(id) = a.provider_id {
            wanted.push((Table::Providers, id, "provider"));
        }
        if let Some(id) = a.operatory_id {
            wanted.push((Table::Operatories, id, "operatory"));
        }
    }
    for (table, id, what) in wanted {
        if !store.has_landed(practice_id, table, id).await? {
            return Err(ControlError::Invalid(format!(
                "unknown {what} {id}: the practice's synced {table} do not hold it (a record \
                 created in Ascend in the last minutes arrives with the next sync)"
            )));
        }
    }
    Ok(())
}

fn invalid(e: Invalid) -> ControlError {
    ControlError::Invalid(e.0)
}
