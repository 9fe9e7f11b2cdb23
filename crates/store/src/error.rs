//! The store's errors: each says what happened and what an operator does.

use std::fmt;

use crate::spec::Table;

/// The database kind behind a [`crate::Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// PostgreSQL (production, RDS).
    Postgres,
    /// SQLite (embedded mode).
    Sqlite,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "Postgres",
            Backend::Sqlite => "SQLite",
        })
    }
}

/// An error of the store.
///
/// [`StoreError::is_retryable`] tells a caller whether the same call may
/// succeed later unchanged (the database was unreachable, busy or
/// restarting); every other error needs a change first, named in its
/// message.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL's scheme is not one the store speaks.
    #[error(
        "the database URL must start with postgres://, postgresql:// or sqlite: (it starts with \
         {scheme:?}); fix the configured database URL"
    )]
    UnsupportedUrl {
        /// The part of the URL before the first `:` (never the rest: it may
        /// hold a password).
        scheme: String,
    },

    /// The URL was understood but its options were not.
    #[error("the {backend} database URL is not valid: {source}; fix the configured database URL")]
    InvalidUrl {
        /// Which database.
        backend: Backend,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },

    /// No connection could be made.
    #[error(
        "could not connect to the {backend} database: {source}; check that it is running and \
         reachable, and the host, port, database name and credentials of the configured URL \
         (retried automatically)"
    )]
    Connect {
        /// Which database.
        backend: Backend,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },

    /// Applying the migrations failed.
    #[error(
        "applying the {backend} schema migrations failed: {source}; if a migration was edited \
         after it was applied, restore it and add a new one; otherwise fix the cause named here \
         and run the migrations again"
    )]
    Migrate {
        /// Which database.
        backend: Backend,
        /// The migrator's error.
        #[source]
        source: sqlx::migrate::MigrateError,
    },

    /// A call named a practice that is not registered.
    /// `practice add` for a practice that is connected now.
    #[error(
        "practice {practice_id:?} is already connected (status {status}); to change its \
         credentials use `practice rotate-credentials`, or remove it first"
    )]
    AlreadyConnected {
        practice_id: String,
        status: crate::PracticeStatus,
    },

    /// A change that needs a connected practice, on a removed one.
    #[error(
        "practice {practice_id:?} has been removed (its credentials are destroyed); connect it \
         again with `practice add`"
    )]
    PracticeRemoved { practice_id: String },

    /// A Postgres URL to a host that is not local asks for less than TLS
    /// with a verified certificate.
    #[error(
        "the database on {host} must be reached over TLS with its certificate verified \
         (sslmode=verify-full), not sslmode={mode}: drop sslmode from the URL (verify-full is \
         the default off this machine) and give the RDS CA bundle as sslrootcert=PATH in the \
         URL or PGSSLROOTCERT"
    )]
    InsecureDatabase {
        /// The host.
        host: String,
        /// The mode asked for.
        mode: String,
    },

    /// A change that does not fit the row's state now (a resync while a
    /// sync runs, a retry of an item that is not dead).
    #[error("{reason}; nothing was written")]
    Conflict {
        /// Why, and what to do.
        reason: String,
    },

    #[error("practice {practice_id:?} is not registered; register it (upsert_practice) first")]
    UnknownPractice {
        /// The practice named.
        practice_id: String,
    },

    /// A call named a sync run that was never started.
    #[error(
        "sync run {run_id:?} was never started (start_run); nothing was written. This is a bug \
         in the caller"
    )]
    UnknownRun {
        /// The run named.
        run_id: String,
    },

    /// A time given to the store is outside what it can hold (years 1 to
    /// 9999), or a time computed from it is.
    #[error(
        "the {what} is outside the years 1 to 9999 the store can hold; nothing was written. \
         This is a bug in the caller"
    )]
    InvalidTime {
        /// Which time.
        what: &'static str,
    },

    /// A reconciliation asked for a start window on a table without one.
    #[error(
        "table {table} has no start column to window a reconciliation by (only appointments \
         has); this is a bug in the caller"
    )]
    NoStartColumn {
        /// The table asked for.
        table: Table,
    },

    /// A checkpoint named a chunk that does not exist.
    #[error(
        "sync chunk {chunk_id} does not exist; nothing of this page was written. The initial \
         sync plan of practice {practice_id:?} changed under the caller: re-read its pending chunks"
    )]
    UnknownChunk {
        /// The chunk named.
        chunk_id: i64,
        /// The practice of the call.
        practice_id: String,
    },

    /// A checkpoint named a chunk of another practice or resource.
    #[error(
        "sync chunk {chunk_id} belongs to practice {chunk_practice:?} and table {chunk_table}, \
         not to practice {practice_id:?} and table {table}; nothing of this page was written. \
         This is a bug in the caller"
    )]
    ChunkMismatch {
        /// The chunk named.
        chunk_id: i64,
        /// The chunk's practice.
        chunk_practice: String,
        /// The chunk's table.
        chunk_table: Table,
        /// The practice of the call.
        practice_id: String,
        /// The table of the call.
        table: Table,
    },

    /// The database refused a value: a CHECK, NOT NULL, UNIQUE or foreign
    /// key constraint.
    #[error(
        "the database refused a value ({constraint}): {message}; nothing of this call was \
         written. Fix the value (allowed values are listed in the migrations)"
    )]
    Constraint {
        /// The constraint's name where the database gives it, else its kind.
        constraint: String,
        /// The database's message.
        message: String,
    },

    /// The database holds a value this version of the program cannot read.
    #[error(
        "the database holds a value this version cannot read ({what}: {value:?}); the schema and \
         the program disagree: run the migrations of this version, or upgrade the program"
    )]
    Unreadable {
        /// Which column.
        what: &'static str,
        /// The value found.
        value: String,
    },

    /// Any other database error.
    #[error(
        "{backend} database error while {operation}: {source}; nothing of this call was \
         written{hint}",
        hint = if is_retryable_sqlx(*backend, source) {
            " (a connection problem: retried automatically)"
        } else {
            "; if it persists, check the database's log"
        }
    )]
    Database {
        /// Which database.
        backend: Backend,
        /// What the store was doing, e.g. `landing a page into patients`.
        operation: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

impl StoreError {
    /// Whether the same call may succeed later unchanged: the database was
    /// unreachable, busy, restarting, or a serialization conflict.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Connect { .. } => true,
            StoreError::Database {
                backend, source, ..
            } => is_retryable_sqlx(*backend, source),
            _ => false,
        }
    }
}

fn is_retryable_sqlx(backend: Backend, error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            match backend {
                // Serialization failure, deadlock, shutdown, cannot connect
                // now, too many connections, connection exceptions.
                Backend::Postgres => {
                    matches!(
                        code,
                        "40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300"
                    ) || code.starts_with("08")
                }
                // BUSY and LOCKED, with their extended codes.
                Backend::Sqlite => code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6)),
            }
        }
        _ => false,
    }
}

/// Maps a driver error met while doing `operation`.
pub(crate) fn db_error(
    backend: Backend,
    operation: impl Into<String>,
    error: sqlx::Error,
) -> StoreError {
    if let sqlx::Error::Database(db) = &error {
        use sqlx::error::ErrorKind;
        let kind = match db.kind() {
            ErrorKind::CheckViolation => Some("check"),
            ErrorKind::NotNullViolation => Some("not null"),
            ErrorKind::UniqueViolation => Some("unique"),
            ErrorKind::ForeignKeyViolation => Some("foreign key"),
            _ => None,
        };
        if let Some(kind) = kind {
            let message = db.message().to_owned();
            let constraint = db
                .constraint()
                .map(str::to_owned)
                .or_else(|| sqlite_constraint_name(&message))
                .unwrap_or_else(|| kind.to_owned());
            return StoreError::Constraint {
                constraint,
                message,
            };
        }
    }
    StoreError::Database {
        backend,
        operation: operation.into(),
        source: error,
    }
}

/// SQLite names the constraint only in its message:
/// `CHECK constraint failed: practices_status_check`.
fn sqlite_constraint_name(message: &str) -> Option<String> {
    let (_, name) = message.split_once("constraint failed: ")?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}
