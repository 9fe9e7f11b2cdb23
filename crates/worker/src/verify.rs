//! Comparing a practice's landed table with records known to be the
//! source's: the convergence check of the demo and of the tests.

use ascend_client::{Resource, format_timestamp};
use store::Store;

/// How a landed table differs from the source.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    #[error(
        "{resource}: {landed} landed, {expected} in the source; missing e.g. {missing:?}, extra e.g. {extra:?}"
    )]
    Ids {
        resource: Resource,
        landed: usize,
        expected: usize,
        missing: Vec<u64>,
        extra: Vec<u64>,
    },
    #[error("{resource} {id}: the landed raw JSON differs from the source")]
    Raw { resource: Resource, id: u64 },
    #[error("{resource} {id}: lastModified {landed:?} landed, {expected:?} in the source")]
    LastModified {
        resource: Resource,
        id: u64,
        landed: Option<String>,
        expected: Option<String>,
    },
    #[error("{resource}: reading the landed rows failed: {error}")]
    Store {
        resource: Resource,
        error: store::StoreError,
    },
    #[error("{resource} {id}: landed raw JSON is unreadable: {error}")]
    Unreadable {
        resource: Resource,
        id: u64,
        error: serde_json::Error,
    },
}

/// One source record: id, `lastModified` as sent, the whole record.
pub struct SourceRecord<'a> {
    pub id: u64,
    pub last_modified: Option<&'a str>,
    pub record: &'a serde_json::Value,
}

/// Checks that the landed table of `resource` holds exactly `expected`
/// (in ascending id order): the same ids, `lastModified` and raw JSON.
/// Returns the number of records.
pub async fn compare(
    store: &Store,
    practice_id: &str,
    resource: Resource,
    expected: &[SourceRecord<'_>],
) -> Result<usize, Mismatch> {
    compare_except(store, practice_id, resource, expected, &[]).await
}

/// [`compare`], leaving out the landed rows whose ids are in `except`
/// (records known to be bad at the source; `expected` must leave them out
/// too).
pub async fn compare_except(
    store: &Store,
    practice_id: &str,
    resource: Resource,
    expected: &[SourceRecord<'_>],
    except: &[u64],
) -> Result<usize, Mismatch> {
    let table = resource.name().parse().unwrap_or(store::Table::Locations);
    let mut landed = store
        .landed_records(practice_id, table)
        .await
        .map_err(|error| Mismatch::Store { resource, error })?;
    landed.retain(|row| !except.contains(&(row.id as u64)));
    let same_ids = landed.len() == expected.len()
        && landed
            .iter()
            .zip(expected)
            .all(|(l, e)| l.id as u64 == e.id);
    if !same_ids {
        let want: std::collections::BTreeSet<u64> = expected.iter().map(|e| e.id).collect();
        let have: std::collections::BTreeSet<u64> = landed.iter().map(|l| l.id as u64).collect();
        return Err(Mismatch::Ids {
            resource,
            landed: landed.len(),
            expected: expected.len(),
            missing: want.difference(&have).take(5).copied().collect(),
            extra: have.difference(&want).take(5).copied().collect(),
        });
    }
    for (row, source) in landed.iter().zip(expected) {
        let raw: serde_json::Value =
            serde_json::from_str(&row.raw).map_err(|error| Mismatch::Unreadable {
                resource,
                id: source.id,
                error,
            })?;
        if &raw != source.record {
            return Err(Mismatch::Raw {
                resource,
                id: source.id,
            });
        }
        let landed_lm = row.last_modified.and_then(format_timestamp);
        if landed_lm.as_deref() != source.last_modified {
            return Err(Mismatch::LastModified {
                resource,
                id: source.id,
                landed: landed_lm,
                expected: source.last_modified.map(str::to_owned),
            });
        }
    }
    Ok(expected.len())
}
