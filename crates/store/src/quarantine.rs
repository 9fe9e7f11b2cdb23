//! The quarantine (`quarantine`, migration 0008): records that could not be
//! read or landed, each set aside whole with the reason, in the transaction
//! of the page it came in, so the rest of its page lands and its checkpoint
//! moves on as if the page were clean (issue 12: a bad record never stalls
//! its resource and is never silently dropped).
//!
//! A record leaves the quarantine in the transaction that lands it: a valid
//! version of it in a later page (matched by id), or a retry of its raw
//! text ([`crate::PageRecords::retried`]).
//!
//! **PHI.** `raw` and `reason` (which may quote the record) are patient
//! data, like the landed rows' `raw`: nothing here logs them, and the
//! `Debug` of [`QuarantinedRecord`] shows neither.

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::rows::RowExt;
use crate::spec::Table;
use crate::store::{Inner, Store, with_pool};

/// One quarantined record, as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct QuarantinedRecord {
    /// The practice.
    pub practice_id: String,
    /// The resource's table.
    pub table: Table,
    /// Its key in the quarantine: its id in decimal when its id is a
    /// number, else `sha256:` and the digest of its raw text.
    pub key: String,
    /// Its id as sent, when it could be read.
    pub id: Option<String>,
    /// The record's JSON text (minified). Patient data.
    pub raw: String,
    /// Why it could not be read or landed. May quote the record.
    pub reason: String,
    /// When it was first set aside.
    pub first_seen_at: OffsetDateTime,
    /// When it was last fetched or retried.
    pub last_tried_at: OffsetDateTime,
    /// How many times it was fetched or retried and set aside.
    pub attempts: i64,
}

impl fmt::Debug for QuarantinedRecord {
    /// Without `raw` and `reason`: they are patient data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QuarantinedRecord")
            .field("practice_id", &self.practice_id)
            .field("table", &self.table)
            .field("key", &self.key)
            .field("id", &self.id)
            .field("first_seen_at", &self.first_seen_at)
            .field("last_tried_at", &self.last_tried_at)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// The quarantine key of a record: its id in canonical decimal when the id
/// is all digits (so a valid version landing later, known by its number,
/// finds it), else `sha256:` and the hex digest of its raw text.
pub(crate) fn record_key(id: Option<&str>, raw: &str) -> String {
    match id {
        Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
            let digits = id.trim_start_matches('0');
            if digits.is_empty() {
                "0".to_owned()
            } else {
                digits.to_owned()
            }
        }
        _ => format!("sha256:{:x}", Sha256::digest(raw.as_bytes())),
    }
}

/// A record set aside in a landing's transaction.
pub(crate) struct SetAside<'a> {
    pub(crate) key: String,
    pub(crate) id: Option<Cow<'a, str>>,
    pub(crate) raw: Cow<'a, str>,
    pub(crate) reason: Cow<'a, str>,
}

impl<'a> SetAside<'a> {
    pub(crate) fn new(
        id: Option<Cow<'a, str>>,
        raw: Cow<'a, str>,
        reason: Cow<'a, str>,
    ) -> SetAside<'a> {
        SetAside {
            key: record_key(id.as_deref(), &raw),
            id,
            raw,
            reason,
        }
    }
}

const SET_ASIDE: &str = "INSERT INTO quarantine (practice_id, resource, record_key, record_id, \
     raw, reason, first_seen_at, last_tried_at, attempts) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1) \
     ON CONFLICT (practice_id, resource, record_key) DO UPDATE SET \
     record_id = excluded.record_id, raw = excluded.raw, reason = excluded.reason, \
     last_tried_at = excluded.last_tried_at, attempts = quarantine.attempts + 1";

/// The quarantine's statements inside a landing's transaction.
pub(crate) trait QuarantineSql {
    /// Sets records aside (a record already there is replaced by this
    /// version, its attempts counted up, its first sighting kept).
    async fn set_aside(
        &mut self,
        practice_id: &str,
        table: Table,
        records: &[SetAside<'_>],
        now: DbTime,
    ) -> Result<(), sqlx::Error>;

    /// Removes records from the quarantine by key.
    async fn release(
        &mut self,
        practice_id: &str,
        table: Table,
        keys: &[String],
    ) -> Result<u64, sqlx::Error>;
}

impl QuarantineSql for PgConnection {
    async fn set_aside(
        &mut self,
        practice_id: &str,
        table: Table,
        records: &[SetAside<'_>],
        now: DbTime,
    ) -> Result<(), sqlx::Error> {
        for record in records {
            sqlx::query(SET_ASIDE)
                .bind(practice_id)
                .bind(table.as_str())
                .bind(&record.key)
                .bind(record.id.as_deref())
                .bind(record.raw.as_ref())
                .bind(record.reason.as_ref())
                .bind(now)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    async fn release(
        &mut self,
        practice_id: &str,
        table: Table,
        keys: &[String],
    ) -> Result<u64, sqlx::Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM quarantine WHERE practice_id = $1 AND resource = $2 \
             AND record_key = ANY($3::text[])",
        )
        .bind(practice_id)
        .bind(table.as_str())
        .bind(keys)
        .execute(&mut *self)
        .await?;
        Ok(done.rows_affected())
    }
}

impl QuarantineSql for SqliteConnection {
    async fn set_aside(
        &mut self,
        practice_id: &str,
        table: Table,
        records: &[SetAside<'_>],
        now: DbTime,
    ) -> Result<(), sqlx::Error> {
        for record in records {
            sqlx::query(SET_ASIDE)
                .bind(practice_id)
                .bind(table.as_str())
                .bind(&record.key)
                .bind(record.id.as_deref())
                .bind(record.raw.as_ref())
                .bind(record.reason.as_ref())
                .bind(now)
                .execute(&mut *self)
                .await?;
        }
        Ok(())
    }

    async fn release(
        &mut self,
        practice_id: &str,
        table: Table,
        keys: &[String],
    ) -> Result<u64, sqlx::Error> {
        if keys.is_empty() {
            return Ok(0);
        }
        // The keys as one JSON array: one statement, whatever their number.
        let keys = serde_json::to_string(keys).map_err(|e| sqlx::Error::Encode(Box::new(e)))?;
        let done = sqlx::query(
            "DELETE FROM quarantine WHERE practice_id = $1 AND resource = $2 \
             AND record_key IN (SELECT value FROM json_each($3))",
        )
        .bind(practice_id)
        .bind(table.as_str())
        .bind(keys)
        .execute(&mut *self)
        .await?;
        Ok(done.rows_affected())
    }
}

/// The columns [`quarantined`] reads, as a literal for `concat!`.
macro_rules! quarantine_columns {
    () => {
        "practice_id, resource, record_key, record_id, raw, reason, first_seen_at, \
         last_tried_at, attempts"
    };
}

fn quarantined(row: &impl RowExt) -> Result<QuarantinedRecord, StoreError> {
    Ok(QuarantinedRecord {
        practice_id: row.text("practice_id")?,
        table: row.parsed("resource")?,
        key: row.text("record_key")?,
        id: row.opt_text("record_id")?,
        raw: row.text("raw")?,
        reason: row.text("reason")?,
        first_seen_at: row.time("first_seen_at")?,
        last_tried_at: row.time("last_tried_at")?,
        attempts: row.int("attempts")?,
    })
}

impl Store {
    /// A practice's quarantined records of `table`, longest untried first,
    /// at most `limit`; with `tried_before`, only those last tried before
    /// then (a retry leaves out what its own pass just set aside).
    pub async fn quarantined(
        &self,
        practice_id: &str,
        table: Table,
        tried_before: Option<OffsetDateTime>,
        limit: u32,
    ) -> Result<Vec<QuarantinedRecord>, StoreError> {
        const ALL: &str = concat!(
            "SELECT ",
            quarantine_columns!(),
            " FROM quarantine WHERE practice_id = $1 AND resource = $2 \
             ORDER BY last_tried_at, record_key LIMIT $3"
        );
        const BEFORE: &str = concat!(
            "SELECT ",
            quarantine_columns!(),
            " FROM quarantine WHERE practice_id = $1 AND resource = $2 AND last_tried_at < $4 \
             ORDER BY last_tried_at, record_key LIMIT $3"
        );
        let backend = self.backend();
        let before = tried_before
            .map(|at| crate::runtime::db_time(at, "tried before"))
            .transpose()?;
        with_pool!(self, |pool| {
            let query = sqlx::query(if before.is_some() { BEFORE } else { ALL })
                .bind(practice_id)
                .bind(table.as_str())
                .bind(i64::from(limit));
            let query = match before {
                Some(before) => query.bind(before),
                None => query,
            };
            let rows = query
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "reading the quarantine", e))?;
            rows.iter().map(quarantined).collect()
        })
    }

    /// How many records of each table a practice has in quarantine (tables
    /// without any are left out), by table name.
    pub async fn quarantine_counts(
        &self,
        practice_id: &str,
    ) -> Result<Vec<(Table, u64)>, StoreError> {
        const SQL: &str = "SELECT resource, COUNT(*) AS n FROM quarantine \
             WHERE practice_id = $1 GROUP BY resource ORDER BY resource";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(practice_id)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "counting the quarantine", e))?;
            rows.iter()
                .map(|row| {
                    let n = row.int("n")?;
                    Ok((row.parsed("resource")?, u64::try_from(n).unwrap_or(0)))
                })
                .collect()
        })
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn numeric_ids_are_their_own_keys_and_the_rest_are_digests() {
        assert_eq!(record_key(Some("7000000000123"), "{}"), "7000000000123");
        assert_eq!(record_key(Some("007"), "{}"), "7");
        assert_eq!(record_key(Some("0"), "{}"), "0");
        assert_eq!(
            record_key(Some("99999999999999999999"), "{}"),
            "99999999999999999999"
        );
        let a = record_key(Some("abc"), r#"{"id":"abc"}"#);
        let b = record_key(None, r#"{"id":"abc"}"#);
        assert!(a.starts_with("sha256:") && a.len() == 7 + 64, "{a}");
        assert_eq!(a, b, "the digest is of the text alone");
        assert_ne!(a, record_key(None, r#"{"id":"abd"}"#));
        assert!(record_key(Some(""), "x").starts_with("sha256:"));
        assert!(record_key(Some("-4"), "x").starts_with("sha256:"));
    }
}
