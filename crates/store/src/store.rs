//! [`Store`]: connection, migrations, practices, sync state and chunks.
//! Landing and reading back landed rows are in `landing.rs`.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::error::{Backend, StoreError, db_error};
use crate::rows::{self, chunk_columns, practice_columns, sync_state_columns};
use crate::spec::Table;
use crate::values::{Chunk, NewChunk, NewPractice, Practice, PracticeStatus, SyncPhase, SyncState};

pub(crate) static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/postgres");
pub(crate) static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How many connections a Postgres store opens at most.
const POSTGRES_MAX_CONNECTIONS: u32 = 10;
/// How many connections a file-backed SQLite store opens at most (one
/// writer at a time; WAL lets the others read meanwhile).
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// How long a call waits for a free connection, or for SQLite's write lock.
const WAIT: Duration = Duration::from_secs(30);

/// The project's database: Postgres in production, SQLite when embedded.
///
/// Cheap to clone (a pool handle). Every method is one transaction or one
/// statement, so a failed call leaves nothing half-written.
#[derive(Clone, Debug)]
pub struct Store {
    pub(crate) inner: Inner,
}

#[derive(Clone, Debug)]
pub(crate) enum Inner {
    Pg(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the backend's pool; the body is
/// compiled once per backend, so one query text serves both (placeholders
/// `$1`, `$2`... work on each).
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.inner {
            Inner::Pg($pool) => $body,
            Inner::Sqlite($pool) => $body,
        }
    };
}
pub(crate) use with_pool;

/// Runs `$body` inside a transaction `$tx` (SQLite: `BEGIN IMMEDIATE`, so
/// a writer never has to upgrade a read lock), committed when the body
/// completes; a `?` in the body returns early and rolls back.
macro_rules! in_transaction {
    ($store:expr, $operation:expr, |$tx:ident| $body:expr) => {
        match &$store.inner {
            Inner::Pg(pool) => {
                let backend = $crate::error::Backend::Postgres;
                let mut $tx = pool
                    .begin()
                    .await
                    .map_err(|e| db_error(backend, $operation, e))?;
                let out = $body;
                $tx.commit()
                    .await
                    .map_err(|e| db_error(backend, $operation, e))?;
                out
            }
            Inner::Sqlite(pool) => {
                let backend = $crate::error::Backend::Sqlite;
                let mut $tx = pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| db_error(backend, $operation, e))?;
                let out = $body;
                $tx.commit()
                    .await
                    .map_err(|e| db_error(backend, $operation, e))?;
                out
            }
        }
    };
}
pub(crate) use in_transaction;

impl Store {
    /// Connects to `url`: `postgres://...` or `postgresql://...` (Postgres),
    /// `sqlite:PATH` or `sqlite::memory:` (SQLite; the file is created if
    /// missing). Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        let scheme = url.split_once(':').map_or(url, |(scheme, _)| scheme);
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Self::connect_postgres(url).await,
            "sqlite" => Self::connect_sqlite(url).await,
            _ => Err(StoreError::UnsupportedUrl {
                scheme: scheme.chars().take(16).collect(),
            }),
        }
    }

    async fn connect_postgres(url: &str) -> Result<Store, StoreError> {
        let backend = Backend::Postgres;
        let options = PgConnectOptions::from_str(url)
            .map_err(|source| StoreError::InvalidUrl { backend, source })?
            .application_name("ascend-sync");
        let options = require_verified_tls(options)?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .acquire_timeout(WAIT)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { backend, source })?;
        Ok(Store {
            inner: Inner::Pg(pool),
        })
    }

    async fn connect_sqlite(url: &str) -> Result<Store, StoreError> {
        let backend = Backend::Sqlite;
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let mut options = SqliteConnectOptions::from_str(url)
            .map_err(|source| StoreError::InvalidUrl { backend, source })?
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(WAIT);
        let mut pool = SqlitePoolOptions::new().acquire_timeout(WAIT);
        if in_memory {
            // Each connection to `:memory:` is its own database: keep
            // exactly one, forever.
            pool = pool
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else {
            options = options
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal);
            pool = pool.max_connections(SQLITE_MAX_CONNECTIONS);
        }
        let pool = pool
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Connect { backend, source })?;
        Ok(Store {
            inner: Inner::Sqlite(pool),
        })
    }

    /// A store over an existing Postgres pool (tests).
    #[cfg(test)]
    pub(crate) fn from_pg_pool(pool: PgPool) -> Store {
        Store {
            inner: Inner::Pg(pool),
        }
    }

    /// Which database this store speaks to.
    pub fn backend(&self) -> Backend {
        match self.inner {
            Inner::Pg(_) => Backend::Postgres,
            Inner::Sqlite(_) => Backend::Sqlite,
        }
    }

    /// Applies the migrations this version embeds that the database lacks.
    /// Safe to run at every start, by several processes at once (Postgres
    /// takes an advisory lock).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let backend = self.backend();
        match &self.inner {
            Inner::Pg(pool) => POSTGRES_MIGRATOR.run(pool).await,
            Inner::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await,
        }
        .map_err(|source| StoreError::Migrate { backend, source })
    }

    /// Closes every connection; later calls fail.
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }

    // ---- practices -------------------------------------------------------

    /// Registers a practice (status `initial_sync`), or updates the settings
    /// of a registered one (keeping its status and history).
    pub async fn upsert_practice(&self, practice: &NewPractice) -> Result<Practice, StoreError> {
        const SQL: &str = concat!(
            "INSERT INTO practices (practice_id, organization_id, location_id, api_base, \
             sync_interval_minutes, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'initial_sync', $6, $6) \
             ON CONFLICT (practice_id) DO UPDATE SET \
             organization_id = excluded.organization_id, location_id = excluded.location_id, \
             api_base = excluded.api_base, sync_interval_minutes = excluded.sync_interval_minutes, \
             updated_at = excluded.updated_at \
             RETURNING ",
            practice_columns!()
        );
        let backend = self.backend();
        let now = DbTime::now();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(&practice.practice_id)
                .bind(&practice.organization_id)
                .bind(practice.location_id)
                .bind(&practice.api_base)
                .bind(practice.sync_interval_minutes)
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(|e| db_error(backend, "registering a practice", e))?;
            rows::practice(&row)
        })
    }

    /// A practice, if registered.
    pub async fn get_practice(&self, practice_id: &str) -> Result<Option<Practice>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            practice_columns!(),
            " FROM practices WHERE practice_id = $1"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(practice_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a practice", e))?;
            row.as_ref().map(rows::practice).transpose()
        })
    }

    /// Every registered practice, by id.
    pub async fn list_practices(&self) -> Result<Vec<Practice>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            practice_columns!(),
            " FROM practices ORDER BY practice_id"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing practices", e))?;
            rows.iter().map(rows::practice).collect()
        })
    }

    /// Sets a practice's status and its explanation for a person.
    pub async fn set_practice_status(
        &self,
        practice_id: &str,
        status: PracticeStatus,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        self.set_practice_status_text(practice_id, status.as_str(), detail)
            .await
    }

    /// [`Store::set_practice_status`] with the status as text: the
    /// database's CHECK is the last word on which values exist.
    pub(crate) async fn set_practice_status_text(
        &self,
        practice_id: &str,
        status: &str,
        detail: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE practices SET status = $2, status_detail = $3, updated_at = $4, \
             status_changed_at = CASE WHEN status = $2 THEN status_changed_at ELSE $4 END \
             WHERE practice_id = $1";
        let backend = self.backend();
        let now = DbTime::now();
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(status)
            .bind(detail)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "setting a practice's status", e))?;
        if done == 0 {
            return Err(StoreError::UnknownPractice {
                practice_id: practice_id.to_owned(),
            });
        }
        Ok(())
    }

    /// Records that a sync of the practice succeeded at `at`
    /// (`last_success_at` never moves backwards).
    pub async fn mark_success(
        &self,
        practice_id: &str,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const SQL: &str = "UPDATE practices SET \
             last_success_at = CASE WHEN last_success_at IS NULL OR $2 > last_success_at \
             THEN $2 ELSE last_success_at END, updated_at = $3 \
             WHERE practice_id = $1";
        let backend = self.backend();
        let now = DbTime::now();
        let at = DbTime::new(at);
        let done = with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(at)
            .bind(now)
            .execute(pool)
            .await
            .map(|r| r.rows_affected()))
        .map_err(|e| db_error(backend, "recording a practice's success", e))?;
        if done == 0 {
            return Err(StoreError::UnknownPractice {
                practice_id: practice_id.to_owned(),
            });
        }
        Ok(())
    }

    // ---- initial-sync chunks ---------------------------------------------

    /// Plans chunks of a practice's initial sync. Idempotent: a chunk with
    /// the same (table, id_from, id_to, filter) as an existing one is left
    /// as it is, progress included. Returns how many were new.
    pub async fn create_chunks(
        &self,
        practice_id: &str,
        chunks: &[NewChunk],
    ) -> Result<u64, StoreError> {
        const SQL: &str = "INSERT INTO sync_chunks \
             (practice_id, resource, id_from, id_to, priority, filter, expected, landed, status, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 'pending', $8) \
             ON CONFLICT (practice_id, resource, id_from, id_to, filter) DO NOTHING";
        const OPERATION: &str = "planning initial-sync chunks";
        let backend = self.backend();
        let now = DbTime::now();
        let created = in_transaction!(self, OPERATION, |tx| {
            let mut created = 0;
            for chunk in chunks {
                created += sqlx::query(SQL)
                    .bind(practice_id)
                    .bind(chunk.table.as_str())
                    .bind(chunk.id_from)
                    .bind(chunk.id_to)
                    .bind(chunk.priority)
                    .bind(&chunk.filter)
                    .bind(chunk.expected)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| practice_error(backend, OPERATION, practice_id, e))?
                    .rows_affected();
            }
            created
        });
        Ok(created)
    }

    /// The pending chunks of a practice: lowest priority first, then in
    /// the order they were planned.
    pub async fn pending_chunks(&self, practice_id: &str) -> Result<Vec<Chunk>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            chunk_columns!(),
            " FROM sync_chunks WHERE practice_id = $1 AND status = 'pending' \
             ORDER BY priority, chunk_id"
        );
        self.fetch_chunks(SQL, practice_id, "listing pending chunks")
            .await
    }

    /// Every chunk of a practice, in the order they were planned.
    pub async fn list_chunks(&self, practice_id: &str) -> Result<Vec<Chunk>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            chunk_columns!(),
            " FROM sync_chunks WHERE practice_id = $1 ORDER BY chunk_id"
        );
        self.fetch_chunks(SQL, practice_id, "listing chunks").await
    }

    async fn fetch_chunks(
        &self,
        sql: &'static str,
        practice_id: &str,
        operation: &'static str,
    ) -> Result<Vec<Chunk>, StoreError> {
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(sql)
                .bind(practice_id)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, operation, e))?;
            rows.iter().map(rows::chunk).collect()
        })
    }

    /// A chunk, if it exists.
    pub async fn get_chunk(&self, chunk_id: i64) -> Result<Option<Chunk>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            chunk_columns!(),
            " FROM sync_chunks WHERE chunk_id = $1"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(chunk_id)
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a chunk", e))?;
            row.as_ref().map(rows::chunk).transpose()
        })
    }

    // ---- sync state --------------------------------------------------------

    /// The sync state of one resource of a practice, if any was recorded.
    pub async fn get_sync_state(
        &self,
        practice_id: &str,
        table: Table,
    ) -> Result<Option<SyncState>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            sync_state_columns!(),
            " FROM sync_state WHERE practice_id = $1 AND resource = $2"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let row = sqlx::query(SQL)
                .bind(practice_id)
                .bind(table.as_str())
                .fetch_optional(pool)
                .await
                .map_err(|e| db_error(backend, "reading a sync state", e))?;
            row.as_ref().map(rows::sync_state).transpose()
        })
    }

    /// The sync states of every resource of a practice, by table name.
    pub async fn list_sync_states(&self, practice_id: &str) -> Result<Vec<SyncState>, StoreError> {
        const SQL: &str = concat!(
            "SELECT ",
            sync_state_columns!(),
            " FROM sync_state WHERE practice_id = $1 ORDER BY resource"
        );
        let backend = self.backend();
        with_pool!(self, |pool| {
            let rows = sqlx::query(SQL)
                .bind(practice_id)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "listing sync states", e))?;
            rows.iter().map(rows::sync_state).collect()
        })
    }

    /// Sets the phase of a resource (creating its state if missing).
    pub async fn set_sync_phase(
        &self,
        practice_id: &str,
        table: Table,
        phase: SyncPhase,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_state (practice_id, resource, phase, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (practice_id, resource) DO UPDATE SET \
             phase = excluded.phase, updated_at = excluded.updated_at";
        self.upsert_state(
            SQL,
            practice_id,
            table,
            StateValue::Text(Some(phase.as_str())),
            "setting a sync phase",
        )
        .await
    }

    /// Sets the record count the API reported for a resource (creating its
    /// state if missing); `None` forgets it.
    pub async fn set_expected_count(
        &self,
        practice_id: &str,
        table: Table,
        expected: Option<i64>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_state (practice_id, resource, expected_count, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (practice_id, resource) DO UPDATE SET \
             expected_count = excluded.expected_count, updated_at = excluded.updated_at";
        self.upsert_state(
            SQL,
            practice_id,
            table,
            StateValue::Int(expected),
            "setting an expected count",
        )
        .await
    }

    /// Records that the organization is not offered a resource since `at`
    /// (a 404 while planning, or in a cycle), or clears it (`None`: it
    /// answered). A resource not offered is not counted as failing.
    pub async fn set_not_offered(
        &self,
        practice_id: &str,
        table: Table,
        at: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_state (practice_id, resource, not_offered_since, \
             updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (practice_id, resource) DO UPDATE SET \
             not_offered_since = excluded.not_offered_since, updated_at = excluded.updated_at";
        let at = at
            .map(|at| crate::runtime::db_time(at, "not offered since"))
            .transpose()?;
        self.upsert_state(
            SQL,
            practice_id,
            table,
            StateValue::Time(at),
            "recording a resource not offered",
        )
        .await
    }

    /// Records (or, with `None`, clears) the last error of a resource
    /// (creating its state if missing). Its `failing_since` is set now
    /// when it had no error, kept while errors follow, and cleared with the
    /// error.
    pub async fn set_last_error(
        &self,
        practice_id: &str,
        table: Table,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO sync_state (practice_id, resource, last_error, \
             failing_since, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (practice_id, resource) DO UPDATE SET \
             last_error = excluded.last_error, \
             failing_since = CASE WHEN excluded.last_error IS NULL THEN NULL \
             ELSE COALESCE(sync_state.failing_since, excluded.failing_since) END, \
             updated_at = excluded.updated_at";
        let backend = self.backend();
        let now = DbTime::now();
        let failing_since = error.map(|_| now);
        with_pool!(self, |pool| sqlx::query(SQL)
            .bind(practice_id)
            .bind(table.as_str())
            .bind(error)
            .bind(failing_since)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ()))
        .map_err(|e| practice_error(backend, "recording a sync error", practice_id, e))
    }

    async fn upsert_state(
        &self,
        sql: &'static str,
        practice_id: &str,
        table: Table,
        value: StateValue<'_>,
        operation: &'static str,
    ) -> Result<(), StoreError> {
        let backend = self.backend();
        let now = DbTime::now();
        with_pool!(self, |pool| {
            let query = sqlx::query(sql).bind(practice_id).bind(table.as_str());
            let query = match value {
                StateValue::Text(text) => query.bind(text),
                StateValue::Int(n) => query.bind(n),
                StateValue::Time(at) => query.bind(at),
            };
            query.bind(now).execute(pool).await.map(|_| ())
        })
        .map_err(|e| practice_error(backend, operation, practice_id, e))
    }
}

/// The one value a sync-state setter writes.
enum StateValue<'a> {
    Text(Option<&'a str>),
    Int(Option<i64>),
    Time(Option<DbTime>),
}

/// Maps a driver error of a statement whose foreign key names the practice:
/// a foreign-key violation means the practice is not registered.
pub(crate) fn practice_error(
    backend: Backend,
    operation: &'static str,
    practice_id: &str,
    error: sqlx::Error,
) -> StoreError {
    if let sqlx::Error::Database(db) = &error
        && db.kind() == sqlx::error::ErrorKind::ForeignKeyViolation
    {
        return StoreError::UnknownPractice {
            practice_id: practice_id.to_owned(),
        };
    }
    db_error(backend, operation, error)
}

/// Postgres off this machine (RDS) is reached only over TLS with the
/// server's certificate verified against its name: `sslmode=verify-full`,
/// the default for a host that is not local (an explicit weaker mode is
/// refused). The CA bundle is libpq's `sslrootcert` (in the URL, or
/// `PGSSLROOTCERT`). A local host (`localhost`, a loopback address, a
/// Unix socket) keeps what the URL says.
pub(crate) fn require_verified_tls(
    options: PgConnectOptions,
) -> Result<PgConnectOptions, StoreError> {
    use sqlx::postgres::PgSslMode;
    let host = options.get_host().to_owned();
    let local = options.get_socket().is_some()
        || host.starts_with('/')
        || host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if local {
        return Ok(options);
    }
    match options.get_ssl_mode() {
        PgSslMode::VerifyFull => Ok(options),
        // What sqlx assumes when the URL says nothing.
        PgSslMode::Prefer => Ok(options.ssl_mode(PgSslMode::VerifyFull)),
        mode => Err(StoreError::InsecureDatabase {
            host,
            mode: match mode {
                PgSslMode::Disable => "disable",
                PgSslMode::Allow => "allow",
                PgSslMode::Require => "require",
                _ => "verify-ca",
            }
            .to_owned(),
        }),
    }
}

#[cfg(test)]
mod tls_tests {
    use std::str::FromStr;

    use sqlx::postgres::{PgConnectOptions, PgSslMode};

    use super::require_verified_tls;
    use crate::StoreError;

    fn mode(url: &str) -> Result<PgSslMode, StoreError> {
        let options = PgConnectOptions::from_str(url).expect("a URL");
        require_verified_tls(options).map(|o| o.get_ssl_mode())
    }

    #[test]
    fn a_remote_database_is_verified_full_by_default() {
        let url = "postgres://app@db.abc.us-east-1.rds.amazonaws.com:5432/ascend";
        assert!(matches!(mode(url), Ok(PgSslMode::VerifyFull)));
        let given = format!("{url}?sslmode=verify-full&sslrootcert=/etc/rds.pem");
        assert!(matches!(mode(&given), Ok(PgSslMode::VerifyFull)));
    }

    #[test]
    fn a_remote_database_with_less_than_verify_full_is_refused() {
        for weak in ["disable", "allow", "require", "verify-ca"] {
            let url = format!("postgres://app@10.0.3.7/ascend?sslmode={weak}");
            match mode(&url) {
                Err(StoreError::InsecureDatabase { host, mode }) => {
                    assert_eq!((host.as_str(), mode.as_str()), ("10.0.3.7", weak));
                }
                other => panic!("{weak}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_local_database_keeps_what_the_url_says() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgres://postgres@localhost/postgres?sslmode=disable",
            "postgres://postgres@[::1]/postgres?sslmode=disable",
        ] {
            let got = mode(url).expect("allowed");
            assert!(!matches!(got, PgSslMode::VerifyFull), "{url}");
        }
    }
}
