//! Practice connections: sealed credentials, the lifecycle (connect,
//! rotate, disable, enable, remove), the audit log and admin tokens.
//!
//! **Credentials.** `practice_credentials` holds a practice's Client ID and
//! Secret as the vault sealed them (ciphertext, nonce, wrapped data key, key
//! id) and the token URL; the store never sees a plaintext. Removing a
//! practice deletes its row: the credentials are destroyed, the practice,
//! its landed rows and its history are kept.
//!
//! **Audit.** Every lifecycle change writes its audit row in the same
//! transaction as the change, so a change without its record (or the
//! reverse) cannot exist. Refusals are recorded with
//! [`Store::record_audit`].
//!
//! **Resuming.** A practice that comes back (enable, new credentials after
//! `auth_failed`, connected again after removal) resumes where it was: active
//! when every resource it has state for is incremental, otherwise in
//! initial sync, whose chunks resume from their cursors. It is due at once.

use std::fmt;

use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::error::{StoreError, db_error};
use crate::rows::{self, RowExt, practice_columns};
use crate::store::{Inner, Store, in_transaction, with_pool};
use crate::values::{NewPractice, Practice, PracticeStatus};

/// A practice's credentials as the vault sealed them. Holds no plaintext;
/// its `Debug` shows sizes and the key id only.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedCredentials {
    /// The OAuth token endpoint (not secret).
    pub token_url: String,
    /// The sealed Client ID and Secret.
    pub ciphertext: Vec<u8>,
    /// The nonce of `ciphertext` (12 bytes).
    pub nonce: Vec<u8>,
    /// The data key, wrapped by `key_id`.
    pub encrypted_data_key: Vec<u8>,
    /// The key that wrapped the data key (KMS key ARN or `local:...`).
    pub key_id: String,
}

impl fmt::Debug for SealedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedCredentials")
            .field("token_url", &self.token_url)
            .field("ciphertext_len", &self.ciphertext.len())
            .field("encrypted_data_key_len", &self.encrypted_data_key.len())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

model::text_enum!(
    /// How an audited request ended.
    AuditOutcome, "audit outcome", {
        /// The change was made (or was already so).
        Done => "done",
        /// The actor was not allowed to do it.
        Refused => "refused",
        /// It was allowed but could not be done (e.g. the credentials did
        /// not work).
        Failed => "failed",
    }
);

model::text_enum!(
    /// What an admin token may do: checked by the `access` crate.
    Role, "role", {
        /// Every practice, every action.
        CloudPmsAdmin => "cloud_pms_admin",
        /// One practice: its settings, Force Sync Now, its history.
        PracticeUser => "practice_user",
        /// Reads everything, changes nothing.
        Readonly => "readonly",
    }
);

/// One line of the audit log to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Who: `token:{token_id}` for the admin API, `cli:{user}` for a
    /// command.
    pub actor: String,
    /// What, e.g. `practice.disable`.
    pub action: String,
    /// Which practice, if the action has one.
    pub practice_id: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// Why, for a person; never a secret.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// A `done` entry for `action` on `practice_id` by `actor`.
    pub fn done(actor: &str, action: &str, practice_id: &str) -> AuditEntry {
        AuditEntry {
            actor: actor.to_owned(),
            action: action.to_owned(),
            practice_id: Some(practice_id.to_owned()),
            outcome: AuditOutcome::Done,
            detail: None,
        }
    }

    /// The same entry with `detail`.
    pub fn with_detail(mut self, detail: impl Into<String>) -> AuditEntry {
        self.detail = Some(detail.into());
        self
    }
}

/// A line of the audit log as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub audit_id: i64,
    pub at: OffsetDateTime,
    pub actor: String,
    pub action: String,
    pub practice_id: Option<String>,
    pub outcome: AuditOutcome,
    pub detail: Option<String>,
}

/// An admin token to store: its public id and the SHA-256 of its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAdminToken {
    pub token_id: String,
    pub token_hash: [u8; 32],
    pub role: Role,
    /// The practice of a `practice_user` token; None for the other roles.
    pub practice_id: Option<String>,
    pub label: String,
    pub created_by: String,
}

/// An admin token as stored (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminToken {
    pub token_id: String,
    pub role: Role,
    pub practice_id: Option<String>,
    pub label: String,
    pub created_by: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// The status a practice resumes with: see the module documentation.
const RESUME_STATUS: &str = "CASE WHEN EXISTS (SELECT 1 FROM sync_state s \
     WHERE s.practice_id = practices.practice_id) AND NOT EXISTS (SELECT 1 FROM sync_state s \
     WHERE s.practice_id = practices.practice_id AND s.phase = 'initial') \
     THEN 'active' ELSE 'initial_sync' END";

const HAS_CREDENTIALS: &str = "SELECT 1 FROM practice_credentials WHERE practice_id = $1";

pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit_log (at, actor, action, practice_id, outcome, \
                            detail) VALUES ($1, $2, $3, $4, $5, $6)";

const UPSERT_CREDENTIALS: &str = "INSERT INTO practice_credentials (practice_id, token_url, \
     ciphertext, nonce, encrypted_data_key, key_id, sealed_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (practice_id) DO UPDATE SET \
     token_url = excluded.token_url, ciphertext = excluded.ciphertext, nonce = excluded.nonce, \
     encrypted_data_key = excluded.encrypted_data_key, key_id = excluded.key_id, \
     sealed_at = excluded.sealed_at";

/// Writes the audit entry `$entry` at `$now` on `$tx`.
macro_rules! audit {
    ($tx:expr, $backend:expr, $now:expr, $entry:expr) => {{
        let entry: &AuditEntry = $entry;
        sqlx::query(INSERT_AUDIT)
            .bind($now)
            .bind(&entry.actor)
            .bind(&entry.action)
            .bind(entry.practice_id.as_deref())
            .bind(entry.outcome.as_str())
            .bind(entry.detail.as_deref())
            .execute(&mut *$tx)
            .await
            .map_err(|e| db_error($backend, "writing the audit log", e))?;
    }};
}

pub(crate) use audit;

/// Binds and runs [`UPSERT_CREDENTIALS`].
macro_rules! upsert_credentials {
    ($tx:expr, $backend:expr, $now:expr, $practice_id:expr, $sealed:expr) => {{
        let sealed: &SealedCredentials = $sealed;
        sqlx::query(UPSERT_CREDENTIALS)
            .bind($practice_id)
            .bind(&sealed.token_url)
            .bind(&sealed.ciphertext)
            .bind(&sealed.nonce)
            .bind(&sealed.encrypted_data_key)
            .bind(&sealed.key_id)
            .bind($now)
            .execute(&mut *$tx)
            .await
            .map_err(|e| db_error($backend, "storing sealed credentials", e))?;
    }};
}

/// Reads the practice's status inside a transaction (Postgres: locking
/// the row, so lifecycle changes of one practice are ordered).
macro_rules! locked_status {
    ($tx:expr, $backend:expr, $practice_id:expr, $operation:expr) => {{
        let sql = match $backend {
            crate::Backend::Postgres => {
                "SELECT status FROM practices WHERE practice_id = $1 FOR UPDATE"
            }
            crate::Backend::Sqlite => "SELECT status FROM practices WHERE practice_id = $1",
        };
        let status: Option<PracticeStatus> = sqlx::query(sql)
            .bind($practice_id)
            .fetch_optional(&mut *$tx)
            .await
            .map_err(|e| db_error($backend, $operation, e))?
            .map(|row| row.parsed("status"))
            .transpose()?;
        status
    }};
}

pub(crate) use locked_status;

/// Reads the practice back inside a transaction.
macro_rules! practice_in_tx {
    ($tx:expr, $backend:expr, $practice_id:expr, $operation:expr) => {{
        const SQL: &str = concat!(
            "SELECT ",
            practice_columns!(),
            " FROM practices WHERE practice_id = $1"
        );
        let row = sqlx::query(SQL)
            .bind($practice_id)
            .fetch_one(&mut *$tx)
            .await
            .map_err(|e| db_error($backend, $operation, e))?;
        rows::practice(&row)?
    }};
}

impl Store {
    // ---- connecting ---------------------------------------------------------

    /// Connects a practice with its sealed credentials, audited as
    /// `practice.add`. A new practice enters initial sync, due at once; a
    /// removed one, or one registered without credentials (by `ascend-sync
    /// sync`, or before credentials were stored), is connected and resumes
    /// (see the module documentation). A practice connected now is refused
    /// with
    /// [`StoreError::AlreadyConnected`]: its credentials change with
    /// [`Store::replace_credentials`].
    pub async fn connect_practice(
        &self,
        practice: &NewPractice,
        sealed: &SealedCredentials,
        actor: &str,
    ) -> Result<Practice, StoreError> {
        const OPERATION: &str = "connecting a practice";
        let insert = "INSERT INTO practices (practice_id, organization_id, location_id, \
             api_base, sync_interval_minutes, status, status_changed_at, created_at, updated_at, \
             credential_version) VALUES ($1, $2, $3, $4, $5, 'initial_sync', $6, $6, $6, 1)";
        let reconnect = format!(
            "UPDATE practices SET organization_id = $2, location_id = $3, api_base = $4, \
             sync_interval_minutes = $5, status = {RESUME_STATUS}, status_detail = NULL, \
             status_changed_at = $6, updated_at = $6, next_sync_at = NULL, \
             inflight_job_id = NULL, inflight_until = NULL, inflight_forced = false, \
             credential_version = credential_version + 1 WHERE practice_id = $1"
        );
        let backend = self.backend();
        let now = DbTime::now();
        let id = practice.practice_id.as_str();
        let entry = AuditEntry::done(actor, "practice.add", id).with_detail(format!(
            "organization {}, location {}, interval {} min, key {}",
            practice.organization_id,
            practice.location_id,
            practice.sync_interval_minutes,
            sealed.key_id
        ));
        let out = in_transaction!(self, OPERATION, |tx| {
            let status = locked_status!(tx, backend, id, OPERATION);
            let has_credentials = sqlx::query(HAS_CREDENTIALS)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .is_some();
            let sql = match status {
                None => insert,
                Some(status) if has_credentials && status != PracticeStatus::Removed => {
                    return Err(StoreError::AlreadyConnected {
                        practice_id: id.to_owned(),
                        status,
                    });
                }
                Some(_) => reconnect.as_str(),
            };
            sqlx::query(sql)
                .bind(id)
                .bind(&practice.organization_id)
                .bind(practice.location_id)
                .bind(&practice.api_base)
                .bind(practice.sync_interval_minutes)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            upsert_credentials!(tx, backend, now, id, sealed);
            audit!(tx, backend, now, &entry);
            practice_in_tx!(tx, backend, id, OPERATION)
        });
        Ok(out)
    }

    /// Replaces a connected practice's credentials (`practice
    /// rotate-credentials`), audited. A practice in `auth_failed` resumes
    /// and is due at once; any other status is kept. A removed practice is
    /// refused: it is connected again with [`Store::connect_practice`].
    pub async fn replace_credentials(
        &self,
        practice_id: &str,
        sealed: &SealedCredentials,
        actor: &str,
    ) -> Result<Practice, StoreError> {
        const OPERATION: &str = "replacing a practice's credentials";
        let resume = format!(
            "UPDATE practices SET status = {RESUME_STATUS}, status_detail = NULL, \
             status_changed_at = $2, updated_at = $2, next_sync_at = NULL \
             WHERE practice_id = $1 AND status = 'auth_failed'"
        );
        const NEW_VERSION: &str = "UPDATE practices SET \
             credential_version = credential_version + 1 WHERE practice_id = $1";
        let backend = self.backend();
        let now = DbTime::now();
        let entry = AuditEntry::done(actor, "practice.rotate-credentials", practice_id)
            .with_detail(format!("key {}", sealed.key_id));
        let out = in_transaction!(self, OPERATION, |tx| {
            match locked_status!(tx, backend, practice_id, OPERATION) {
                None => {
                    return Err(StoreError::UnknownPractice {
                        practice_id: practice_id.to_owned(),
                    });
                }
                Some(PracticeStatus::Removed) => {
                    return Err(StoreError::PracticeRemoved {
                        practice_id: practice_id.to_owned(),
                    });
                }
                Some(_) => {}
            }
            upsert_credentials!(tx, backend, now, practice_id, sealed);
            sqlx::query(NEW_VERSION)
                .bind(practice_id)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            sqlx::query(&resume)
                .bind(practice_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            audit!(tx, backend, now, &entry);
            practice_in_tx!(tx, backend, practice_id, OPERATION)
        });
        Ok(out)
    }

    /// A practice's sealed credentials; None when it has none (never
    /// connected with credentials, or removed).
    pub async fn practice_credentials(
        &self,
        practice_id: &str,
    ) -> Result<Option<SealedCredentials>, StoreError> {
        const SQL: &str = "SELECT token_url, ciphertext, nonce, encrypted_data_key, key_id \
                           FROM practice_credentials WHERE practice_id = $1";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(practice_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading sealed credentials", e))?;
            row.as_ref().map(sealed_credentials).transpose()
        })
    }

    /// A practice's sealed credentials with their version
    /// ([`crate::Practice::credential_version`]), read together, for a job
    /// to open; None when it has none.
    pub async fn credentials_for_job(
        &self,
        practice_id: &str,
    ) -> Result<Option<(SealedCredentials, i64)>, StoreError> {
        const SQL: &str = "SELECT c.token_url, c.ciphertext, c.nonce, c.encrypted_data_key, \
             c.key_id, p.credential_version FROM practice_credentials c \
             JOIN practices p ON p.practice_id = c.practice_id WHERE c.practice_id = $1";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(practice_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading sealed credentials", e))?;
            row.as_ref()
                .map(|row| Ok((sealed_credentials(row)?, row.int("credential_version")?)))
                .transpose()
        })
    }

    /// Every practice's sealed credentials, by practice id (`keys rewrap`).
    pub async fn all_credentials(&self) -> Result<Vec<(String, SealedCredentials)>, StoreError> {
        const SQL: &str = "SELECT practice_id, token_url, ciphertext, nonce, \
                           encrypted_data_key, key_id FROM practice_credentials \
                           ORDER BY practice_id";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing sealed credentials", e))?;
            rows.iter()
                .map(|row| Ok((row.text("practice_id")?, sealed_credentials(row)?)))
                .collect()
        })
    }

    /// Stores a rewrapped data key, if the row still holds the data key it
    /// was rewrapped from (`previous_data_key`): false when the credentials
    /// changed meanwhile (rotated or removed), and nothing is written.
    /// Ciphertext and nonce are not touched.
    pub async fn store_rewrapped_key(
        &self,
        practice_id: &str,
        previous_data_key: &[u8],
        encrypted_data_key: &[u8],
        key_id: &str,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE practice_credentials SET encrypted_data_key = $3, \
                           key_id = $4 WHERE practice_id = $1 AND encrypted_data_key = $2";
        let backend = self.backend();
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(previous_data_key)
            .bind(encrypted_data_key)
            .bind(key_id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "storing a rewrapped data key", e))?;
        Ok(done == 1)
    }

    // ---- lifecycle ------------------------------------------------------------

    /// Pauses a practice (`practice disable`): no further scheduling (the
    /// scheduler only claims active and initial-sync practices; a job
    /// already queued is skipped), credentials and data kept. A sync
    /// already running finishes. Idempotent; a removed practice is refused.
    pub async fn disable_practice(
        &self,
        practice_id: &str,
        actor: &str,
    ) -> Result<Practice, StoreError> {
        let sql = "UPDATE practices SET status = 'paused', \
                   status_detail = $3, status_changed_at = $2, \
                   updated_at = $2, inflight_job_id = NULL, inflight_until = NULL, \
                   inflight_forced = false WHERE practice_id = $1 AND status <> 'paused'";
        let detail = Some(format!("disabled by {actor}"));
        self.lifecycle(practice_id, actor, "practice.disable", sql, detail, false)
            .await
    }

    /// Resumes a paused or auth-failed practice (`practice enable`), due at
    /// once. Idempotent for a practice that is syncing; a removed practice
    /// is refused (it is connected again with `practice add`).
    pub async fn enable_practice(
        &self,
        practice_id: &str,
        actor: &str,
    ) -> Result<Practice, StoreError> {
        let sql = format!(
            "UPDATE practices SET status = {RESUME_STATUS}, status_detail = $3, \
             status_changed_at = $2, updated_at = $2, next_sync_at = NULL \
             WHERE practice_id = $1 AND status IN ('paused', 'auth_failed')"
        );
        self.lifecycle(practice_id, actor, "practice.enable", &sql, None, false)
            .await
    }

    /// Removes a practice (`practice remove`): its credentials are deleted
    /// (destroyed: the row held the only copy of the sealed secret), it is
    /// never scheduled again, and every landed row and its sync history are
    /// kept as they are. Idempotent.
    pub async fn remove_practice(
        &self,
        practice_id: &str,
        actor: &str,
    ) -> Result<Practice, StoreError> {
        let sql = "UPDATE practices SET status = 'removed', \
                   status_detail = $3, status_changed_at = $2, \
                   updated_at = $2, next_sync_at = NULL, inflight_job_id = NULL, \
                   inflight_until = NULL, inflight_forced = false \
                   WHERE practice_id = $1 AND status <> 'removed'";
        let detail = Some(format!("removed by {actor}"));
        self.lifecycle(practice_id, actor, "practice.remove", sql, detail, true)
            .await
    }

    /// One lifecycle change: `sql` (`$1` practice, `$2` now, `$3` the new
    /// status detail) and its audit row in one transaction;
    /// `destroy_credentials` deletes the sealed credentials too.
    async fn lifecycle(
        &self,
        practice_id: &str,
        actor: &str,
        action: &str,
        sql: &str,
        status_detail: Option<String>,
        destroy_credentials: bool,
    ) -> Result<Practice, StoreError> {
        const DELETE: &str = "DELETE FROM practice_credentials WHERE practice_id = $1";
        let operation = format!("{action} of a practice");
        let backend = self.backend();
        let now = DbTime::now();
        let out = in_transaction!(self, operation.as_str(), |tx| {
            match locked_status!(tx, backend, practice_id, operation.as_str()) {
                None => {
                    return Err(StoreError::UnknownPractice {
                        practice_id: practice_id.to_owned(),
                    });
                }
                Some(PracticeStatus::Removed) if !destroy_credentials => {
                    return Err(StoreError::PracticeRemoved {
                        practice_id: practice_id.to_owned(),
                    });
                }
                Some(_) => {}
            }
            let changed = sqlx::query(sql)
                .bind(practice_id)
                .bind(now)
                .bind(status_detail.as_deref())
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, operation.as_str(), e))?
                .rows_affected();
            let mut destroyed = 0;
            if destroy_credentials {
                destroyed = sqlx::query(DELETE)
                    .bind(practice_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| db_error(backend, operation.as_str(), e))?
                    .rows_affected();
            }
            let mut entry = AuditEntry::done(actor, action, practice_id);
            if changed == 0 {
                entry = entry.with_detail("no change: it was already so");
            } else if destroy_credentials {
                entry = entry.with_detail(if destroyed > 0 {
                    "credentials destroyed; data and history kept"
                } else {
                    "it had no credentials; data and history kept"
                });
            }
            audit!(tx, backend, now, &entry);
            practice_in_tx!(tx, backend, practice_id, operation.as_str())
        });
        Ok(out)
    }

    // ---- audit --------------------------------------------------------------

    /// Writes one audit row on its own (a refusal, or a failure that
    /// changed nothing).
    pub async fn record_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        let backend = self.backend();
        let now = DbTime::now();
        with_pool!(self, |pool| {
            let mut conn = pool
                .acquire()
                .await
                .map_err(|e| db_error(backend, "writing the audit log", e))?;
            audit!(conn, backend, now, entry);
            Ok(())
        })
    }

    /// The audit log, newest first: one practice's, or everyone's.
    pub async fn audit_log(
        &self,
        practice_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        const ALL: &str = "SELECT audit_id, at, actor, action, practice_id, outcome, detail \
                           FROM audit_log ORDER BY at DESC, audit_id DESC LIMIT $1";
        const ONE: &str = "SELECT audit_id, at, actor, action, practice_id, outcome, detail \
                           FROM audit_log WHERE practice_id = $2 \
                           ORDER BY at DESC, audit_id DESC LIMIT $1";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = match practice_id {
                None => sqlx::query(ALL).bind(limit).fetch_all(pool).await,
                Some(id) => sqlx::query(ONE).bind(limit).bind(id).fetch_all(pool).await,
            }
            .map_err(|e| db_error(backend, "reading the audit log", e))?;
            rows.iter()
                .map(|row| {
                    Ok(AuditRecord {
                        audit_id: row.int("audit_id")?,
                        at: row.time("at")?,
                        actor: row.text("actor")?,
                        action: row.text("action")?,
                        practice_id: row.opt_text("practice_id")?,
                        outcome: row.parsed("outcome")?,
                        detail: row.opt_text("detail")?,
                    })
                })
                .collect()
        })
    }

    // ---- admin tokens -------------------------------------------------------

    /// Stores a new admin token (its hash), audited as `admin-token.create`.
    pub async fn create_admin_token(&self, token: &NewAdminToken) -> Result<(), StoreError> {
        const OPERATION: &str = "creating an admin token";
        const SQL: &str = "INSERT INTO admin_tokens (token_id, token_hash, role, practice_id, \
                           label, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";
        let backend = self.backend();
        let now = DbTime::now();
        let entry = AuditEntry {
            actor: token.created_by.clone(),
            action: "admin-token.create".to_owned(),
            practice_id: token.practice_id.clone(),
            outcome: AuditOutcome::Done,
            detail: Some(format!("token {} ({})", token.token_id, token.role)),
        };
        in_transaction!(self, OPERATION, |tx| {
            sqlx::query(SQL)
                .bind(&token.token_id)
                .bind(&token.token_hash[..])
                .bind(token.role.as_str())
                .bind(token.practice_id.as_deref())
                .bind(&token.label)
                .bind(&token.created_by)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?;
            audit!(tx, backend, now, &entry);
        });
        Ok(())
    }

    /// The token whose value hashes to `token_hash`, revoked or not.
    pub async fn admin_token_by_hash(
        &self,
        token_hash: &[u8; 32],
    ) -> Result<Option<AdminToken>, StoreError> {
        const SQL: &str = "SELECT token_id, role, practice_id, label, created_by, created_at, \
                           revoked_at FROM admin_tokens WHERE token_hash = $1";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(&token_hash[..])
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "looking up an admin token", e))?;
            row.as_ref().map(admin_token).transpose()
        })
    }

    /// Every admin token (never a value), by id.
    pub async fn list_admin_tokens(&self) -> Result<Vec<AdminToken>, StoreError> {
        const SQL: &str = "SELECT token_id, role, practice_id, label, created_by, created_at, \
                           revoked_at FROM admin_tokens ORDER BY token_id";
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing admin tokens", e))?;
            rows.iter().map(admin_token).collect()
        })
    }

    /// Revokes a token (it stops authenticating at once), audited: false
    /// when no live token has that id.
    pub async fn revoke_admin_token(
        &self,
        token_id: &str,
        actor: &str,
    ) -> Result<bool, StoreError> {
        const OPERATION: &str = "revoking an admin token";
        const SQL: &str = "UPDATE admin_tokens SET revoked_at = $2 \
                           WHERE token_id = $1 AND revoked_at IS NULL";
        let backend = self.backend();
        let now = DbTime::now();
        let out = in_transaction!(self, OPERATION, |tx| {
            let done = sqlx::query(SQL)
                .bind(token_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .rows_affected();
            if done == 1 {
                let entry = AuditEntry {
                    actor: actor.to_owned(),
                    action: "admin-token.revoke".to_owned(),
                    practice_id: None,
                    outcome: AuditOutcome::Done,
                    detail: Some(format!("token {token_id}")),
                };
                audit!(tx, backend, now, &entry);
            }
            done == 1
        });
        Ok(out)
    }
}

fn sealed_credentials(row: &impl RowExt) -> Result<SealedCredentials, StoreError> {
    Ok(SealedCredentials {
        token_url: row.text("token_url")?,
        ciphertext: row.bytes("ciphertext")?,
        nonce: row.bytes("nonce")?,
        encrypted_data_key: row.bytes("encrypted_data_key")?,
        key_id: row.text("key_id")?,
    })
}

fn admin_token(row: &impl RowExt) -> Result<AdminToken, StoreError> {
    Ok(AdminToken {
        token_id: row.text("token_id")?,
        role: row.parsed("role")?,
        practice_id: row.opt_text("practice_id")?,
        label: row.text("label")?,
        created_by: row.text("created_by")?,
        created_at: row.time("created_at")?,
        revoked_at: row.opt_time("revoked_at")?,
    })
}
