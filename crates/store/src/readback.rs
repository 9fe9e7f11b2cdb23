//! Reading whole landed tables back (convergence checks, exports) and
//! creating scratch databases (tests, `migrate` on a new server).

use sqlx::Connection;
use time::OffsetDateTime;

use crate::error::{Backend, StoreError, db_error};
use crate::rows::RowExt;
use crate::spec::Table;
use crate::store::{Inner, Store, with_pool};

/// One landed row as stored: id, `last_modified`, and the raw JSON text
/// (on Postgres, `jsonb`'s normalized text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandedRecord {
    pub id: i64,
    pub last_modified: Option<OffsetDateTime>,
    pub raw: String,
}

impl Store {
    /// Every landed row of a practice's `table`, in id order.
    pub async fn landed_records(
        &self,
        practice_id: &str,
        table: Table,
    ) -> Result<Vec<LandedRecord>, StoreError> {
        let backend = self.backend();
        let raw = match backend {
            Backend::Postgres => "raw::text AS raw",
            Backend::Sqlite => "raw",
        };
        let sql = format!(
            "SELECT id, last_modified, {raw} FROM {} WHERE practice_id = $1 ORDER BY id",
            table.as_str()
        );
        with_pool!(self, |pool| {
            let rows = sqlx::query(&sql)
                .bind(practice_id)
                .fetch_all(pool)
                .await
                .map_err(|e| db_error(backend, "reading landed rows", e))?;
            rows.iter()
                .map(|r| {
                    Ok(LandedRecord {
                        id: r.int("id")?,
                        last_modified: r.opt_time("last_modified")?,
                        raw: r.text("raw")?,
                    })
                })
                .collect()
        })
    }

    /// Creates an empty Postgres database with a unique name beginning with
    /// `prefix` on the server of `admin_url`, and returns its URL.
    pub async fn create_scratch_database(
        admin_url: &str,
        prefix: &str,
    ) -> Result<String, StoreError> {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(OffsetDateTime::now_utc().unix_timestamp_nanos() as u128);
        let clean: String = prefix
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(20)
            .collect();
        let name = format!("{}_{:016x}", clean.to_ascii_lowercase(), hasher.finish());
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .map_err(|source| StoreError::Connect {
                backend: Backend::Postgres,
                source,
            })?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .map_err(|e| db_error(Backend::Postgres, "creating a scratch database", e))?;
        let _ = admin.close().await;
        Ok(replace_database(admin_url, &name))
    }

    /// Drops a database made by [`Store::create_scratch_database`].
    pub async fn drop_database(admin_url: &str, url: &str) -> Result<(), StoreError> {
        let Some(name) =
            database_name(url).filter(|n| n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        else {
            return Ok(());
        };
        let mut admin = sqlx::PgConnection::connect(admin_url)
            .await
            .map_err(|source| StoreError::Connect {
                backend: Backend::Postgres,
                source,
            })?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut admin)
            .await
            .map_err(|e| db_error(Backend::Postgres, "dropping a scratch database", e))?;
        let _ = admin.close().await;
        Ok(())
    }
}

/// `postgres://host/db?x` with its database replaced by `name`.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let prefix_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[prefix_end..]
        .find('/')
        .map(|i| prefix_end + i)
        .unwrap_or(base.len());
    let mut out = format!("{}/{name}", &base[..path_start]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

fn database_name(url: &str) -> Option<String> {
    let base = url.split('?').next()?;
    let after_scheme = base.split_once("://")?.1;
    let (_, name) = after_scheme.split_once('/')?;
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn the_database_of_a_url_is_replaced_and_read() {
        assert_eq!(
            replace_database("postgres://u@h:5432/postgres", "x_1"),
            "postgres://u@h:5432/x_1"
        );
        assert_eq!(
            replace_database("postgres://u@h:5432", "x_1"),
            "postgres://u@h:5432/x_1"
        );
        assert_eq!(
            replace_database("postgres://h/db?sslmode=require", "x"),
            "postgres://h/x?sslmode=require"
        );
        assert_eq!(
            database_name("postgres://h/x_1?a=b").as_deref(),
            Some("x_1")
        );
        assert_eq!(database_name("postgres://h"), None);
    }
}
