//! Reading result rows the same way on both backends.

use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use time::OffsetDateTime;

use crate::db_time::{DbDate, DbTime};
use crate::error::StoreError;
use crate::spec::Table;
use crate::values::{Chunk, PassCursor, Practice, SyncState};
use model::Completeness;

/// Typed column access with the store's error, for either backend's rows.
pub(crate) trait RowExt {
    fn text(&self, col: &'static str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &'static str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &'static str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &'static str) -> Result<Option<i64>, StoreError>;
    fn small(&self, col: &'static str) -> Result<i16, StoreError>;
    fn real(&self, col: &'static str) -> Result<f64, StoreError>;
    fn opt_real(&self, col: &'static str) -> Result<Option<f64>, StoreError>;
    fn flag(&self, col: &'static str) -> Result<bool, StoreError>;
    fn time(&self, col: &'static str) -> Result<OffsetDateTime, StoreError>;
    fn opt_time(&self, col: &'static str) -> Result<Option<OffsetDateTime>, StoreError>;
    fn opt_date(&self, col: &'static str) -> Result<Option<time::Date>, StoreError>;
    fn bytes(&self, col: &'static str) -> Result<Vec<u8>, StoreError>;

    /// A text column holding one value of a closed set.
    fn parsed<T: std::str::FromStr>(&self, col: &'static str) -> Result<T, StoreError> {
        let text = self.text(col)?;
        text.parse().map_err(|_| StoreError::Unreadable {
            what: col,
            value: text,
        })
    }
}

fn unreadable(col: &'static str, error: sqlx::Error) -> StoreError {
    StoreError::Unreadable {
        what: col,
        value: error.to_string(),
    }
}

macro_rules! impl_row_ext {
    ($row:ty) => {
        impl RowExt for $row {
            fn text(&self, col: &'static str) -> Result<String, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn opt_text(&self, col: &'static str) -> Result<Option<String>, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn int(&self, col: &'static str) -> Result<i64, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn opt_int(&self, col: &'static str) -> Result<Option<i64>, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn small(&self, col: &'static str) -> Result<i16, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn real(&self, col: &'static str) -> Result<f64, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn opt_real(&self, col: &'static str) -> Result<Option<f64>, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn flag(&self, col: &'static str) -> Result<bool, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
            fn time(&self, col: &'static str) -> Result<OffsetDateTime, StoreError> {
                self.try_get::<DbTime, _>(col)
                    .map(|t| t.0)
                    .map_err(|e| unreadable(col, e))
            }
            fn opt_time(&self, col: &'static str) -> Result<Option<OffsetDateTime>, StoreError> {
                self.try_get::<Option<DbTime>, _>(col)
                    .map(|t| t.map(|t| t.0))
                    .map_err(|e| unreadable(col, e))
            }
            fn opt_date(&self, col: &'static str) -> Result<Option<time::Date>, StoreError> {
                self.try_get::<Option<DbDate>, _>(col)
                    .map(|t| t.map(|t| t.0))
                    .map_err(|e| unreadable(col, e))
            }
            fn bytes(&self, col: &'static str) -> Result<Vec<u8>, StoreError> {
                self.try_get(col).map_err(|e| unreadable(col, e))
            }
        }
    };
}

impl_row_ext!(PgRow);
impl_row_ext!(SqliteRow);

/// The columns [`practice`] reads, as a literal for `concat!`.
macro_rules! practice_columns {
    () => {
        "practice_id, organization_id, location_id, api_base, sync_interval_minutes, status, \
         status_detail, status_changed_at, created_at, updated_at, last_success_at, \
         credential_version"
    };
}
pub(crate) use practice_columns;

pub(crate) fn practice(row: &impl RowExt) -> Result<Practice, StoreError> {
    Ok(Practice {
        practice_id: row.text("practice_id")?,
        organization_id: row.text("organization_id")?,
        location_id: row.int("location_id")?,
        api_base: row.text("api_base")?,
        sync_interval_minutes: row.small("sync_interval_minutes")?,
        status: row.parsed("status")?,
        status_detail: row.opt_text("status_detail")?,
        status_changed_at: row.opt_time("status_changed_at")?,
        created_at: row.time("created_at")?,
        credential_version: row.int("credential_version")?,
        updated_at: row.time("updated_at")?,
        last_success_at: row.opt_time("last_success_at")?,
    })
}

/// The columns [`chunk`] reads, as a literal for `concat!`.
macro_rules! chunk_columns {
    () => {
        "chunk_id, practice_id, resource, id_from, id_to, priority, filter, after_id, expected, \
         landed, status, updated_at, queued_at"
    };
}
pub(crate) use chunk_columns;

pub(crate) fn chunk(row: &impl RowExt) -> Result<Chunk, StoreError> {
    Ok(Chunk {
        chunk_id: row.int("chunk_id")?,
        queued_at: row.opt_time("queued_at")?,
        practice_id: row.text("practice_id")?,
        table: row.parsed::<Table>("resource")?,
        id_from: row.int("id_from")?,
        id_to: row.int("id_to")?,
        priority: row.small("priority")?,
        filter: row.text("filter")?,
        after_id: row.opt_int("after_id")?,
        expected: row.opt_int("expected")?,
        landed: row.int("landed")?,
        status: row.parsed("status")?,
        updated_at: row.time("updated_at")?,
    })
}

/// The columns [`sync_state`] reads, as a literal for `concat!`.
macro_rules! sync_state_columns {
    () => {
        "practice_id, resource, phase, watermark, landed_count, expected_count, last_error, \
         updated_at, not_offered_since, failing_since, pass_started_at, pass_after_id, \
         pass_max_seen, reconciled_at, ascend_count, held_count, counted_at, complete_at, \
         mismatch_since, mismatches, passed_at, shared_from"
    };
}
pub(crate) use sync_state_columns;

/// A pass cursor from `pass_started_at`, `pass_after_id`, `pass_max_seen`.
pub(crate) fn pass_cursor(row: &impl RowExt) -> Result<Option<PassCursor>, StoreError> {
    Ok(match row.opt_time("pass_started_at")? {
        Some(started_at) => Some(PassCursor {
            started_at,
            after_id: row.opt_int("pass_after_id")?,
            max_seen: row.opt_time("pass_max_seen")?,
        }),
        None => None,
    })
}

pub(crate) fn sync_state(row: &impl RowExt) -> Result<SyncState, StoreError> {
    Ok(SyncState {
        practice_id: row.text("practice_id")?,
        table: row.parsed::<Table>("resource")?,
        phase: row.parsed("phase")?,
        watermark: row.opt_time("watermark")?,
        landed_count: row.int("landed_count")?,
        expected_count: row.opt_int("expected_count")?,
        last_error: row.opt_text("last_error")?,
        updated_at: row.time("updated_at")?,
        not_offered_since: row.opt_time("not_offered_since")?,
        failing_since: row.opt_time("failing_since")?,
        pass: pass_cursor(row)?,
        reconciled_at: row.opt_time("reconciled_at")?,
        completeness: Completeness {
            ascend_count: row.opt_int("ascend_count")?,
            held_count: row.opt_int("held_count")?,
            counted_at: row.opt_time("counted_at")?,
            complete_at: row.opt_time("complete_at")?,
            mismatch_since: row.opt_time("mismatch_since")?,
            mismatches: i32::try_from(row.int("mismatches")?).unwrap_or(i32::MAX),
        },
        passed_at: row.opt_time("passed_at")?,
        shared_from: row.opt_text("shared_from")?,
    })
}
