//! The fleet's request budget per organization: one `org_budgets` row each,
//! changed under a short row lock (Postgres `FOR UPDATE`; SQLite's
//! `BEGIN IMMEDIATE`) by the rules the caller passes in
//! (`sync_core::budget`). Workers claim a slice of requests per
//! transaction, so the lock is taken once per slice, never once per call.
//!
//! Times are the worker's clock, as everywhere in the store; a fleet's
//! hosts keep theirs in step (NTP, the Amazon Time Sync Service) far within
//! the budget's half-second burst.

use model::OrgBudget;
use time::OffsetDateTime;

use crate::db_time::DbTime;
use crate::error::{Backend, StoreError, db_error};
use crate::rows::RowExt;
use crate::runtime::db_time;
use crate::store::{Inner, Store, in_transaction};

const COLUMNS: &str = "organization_id, rate, limit_rps, configured_rps, next_at, paused_until, \
     decreased_at, adjusted_at, granted, throttled";

const INSERT: &str = "INSERT INTO org_budgets (organization_id, rate, limit_rps, configured_rps, \
     next_at, paused_until, decreased_at, adjusted_at, granted, throttled) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (organization_id) DO NOTHING";

// configured_rps is written back as it was read under the lock.
const UPDATE: &str = "UPDATE org_budgets SET rate = $2, limit_rps = $3, configured_rps = $4, \
     next_at = $5, paused_until = $6, decreased_at = $7, adjusted_at = $8, granted = $9, \
     throttled = $10 WHERE organization_id = $1";

const CONFIGURE: &str = "UPDATE org_budgets SET configured_rps = $2 WHERE organization_id = $1";

impl Store {
    /// Changes `organization_id`'s budget under its row lock: `change` gets
    /// the row (made by `fresh` the first time) and the time now, and its
    /// changes are written before the lock is let go. Returns what
    /// `change` returns.
    pub async fn update_budget<T>(
        &self,
        organization_id: &str,
        fresh: impl FnOnce(OffsetDateTime) -> OrgBudget,
        change: impl FnOnce(&mut OrgBudget, OffsetDateTime) -> T,
    ) -> Result<T, StoreError> {
        const OPERATION: &str = "claiming from an organization's request budget";
        let backend = self.backend();
        let select = select_sql(backend);
        let out = in_transaction!(self, OPERATION, |tx| {
            let fail = |e| db_error(backend, OPERATION, e);
            let mut row = sqlx::query(&select)
                .bind(organization_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(fail)?;
            if row.is_none() {
                let first = fresh(DbTime::now().0);
                bind_all(sqlx::query(INSERT), organization_id, &first)?
                    .execute(&mut *tx)
                    .await
                    .map_err(fail)?;
                row = sqlx::query(&select)
                    .bind(organization_id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(fail)?;
            }
            let Some(row) = row else {
                return Err(StoreError::Unreadable {
                    what: "org_budgets",
                    value: format!("no budget row for {organization_id} after inserting it"),
                });
            };
            let mut budget = budget_of(&row)?;
            let out = change(&mut budget, DbTime::now().0);
            bind_all(sqlx::query(UPDATE), organization_id, &budget)?
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            out
        });
        Ok(out)
    }

    /// Every organization's budget, by Organization-ID.
    pub async fn budgets(&self) -> Result<Vec<OrgBudget>, StoreError> {
        const OPERATION: &str = "listing the request budgets";
        let sql = format!("SELECT {COLUMNS} FROM org_budgets ORDER BY organization_id");
        let backend = self.backend();
        match &self.inner {
            Inner::Pg(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .iter()
                .map(budget_of)
                .collect(),
            Inner::Sqlite(pool) => sqlx::query(&sql)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, OPERATION, e))?
                .iter()
                .map(budget_of)
                .collect(),
        }
    }

    /// Sets `organization_id`'s own limit in requests per second (`None`:
    /// the fleet's default). `fresh` makes its row if it has none yet.
    pub async fn configure_budget(
        &self,
        organization_id: &str,
        limit: Option<f64>,
        fresh: impl FnOnce(OffsetDateTime) -> OrgBudget,
    ) -> Result<(), StoreError> {
        const OPERATION: &str = "setting an organization's request budget";
        let backend = self.backend();
        in_transaction!(self, OPERATION, |tx| {
            let fail = |e| db_error(backend, OPERATION, e);
            let first = fresh(DbTime::now().0);
            bind_all(sqlx::query(INSERT), organization_id, &first)?
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            sqlx::query(CONFIGURE)
                .bind(organization_id)
                .bind(limit)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
        });
        Ok(())
    }
}

fn select_sql(backend: Backend) -> String {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE",
        Backend::Sqlite => "",
    };
    format!("SELECT {COLUMNS} FROM org_budgets WHERE organization_id = $1{lock}")
}

/// Binds `$1..$10` in [`COLUMNS`] order.
fn bind_all<'q, DB>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>,
    organization_id: &'q str,
    b: &OrgBudget,
) -> Result<sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>, StoreError>
where
    DB: sqlx::Database,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    f64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<f64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    DbTime: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<DbTime>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    let opt = |t: Option<OffsetDateTime>, what| t.map(|t| db_time(t, what)).transpose();
    Ok(query
        .bind(organization_id)
        .bind(b.rate)
        .bind(b.limit)
        .bind(b.configured)
        .bind(db_time(b.next_at, "budget's next send slot")?)
        .bind(opt(b.paused_until, "budget's pause")?)
        .bind(opt(b.decreased_at, "budget's last decrease")?)
        .bind(db_time(b.adjusted_at, "budget's last adjustment")?)
        .bind(b.granted)
        .bind(b.throttled))
}

fn budget_of(row: &impl RowExt) -> Result<OrgBudget, StoreError> {
    Ok(OrgBudget {
        organization_id: row.text("organization_id")?,
        rate: row.real("rate")?,
        limit: row.real("limit_rps")?,
        configured: row.opt_real("configured_rps")?,
        next_at: row.time("next_at")?,
        paused_until: row.opt_time("paused_until")?,
        decreased_at: row.opt_time("decreased_at")?,
        adjusted_at: row.time("adjusted_at")?,
        granted: row.int("granted")?,
        throttled: row.int("throttled")?,
    })
}
