//! The migrated schema of each backend has exactly the spec's columns.

use crate::Store;
use crate::spec::{Kind, LEADING_COLUMNS, TRAILING_COLUMNS, Table};
use crate::store::Inner;

/// (name, type) of every column of a table, in table order, as the
/// backend's catalog reports them. Postgres types are
/// `information_schema` names, with `numeric(P,S)` spelled out.
async fn catalog_columns(store: &Store, table: Table) -> Vec<(String, String)> {
    match &store.inner {
        Inner::Pg(pool) => {
            let rows: Vec<(String, String, Option<i32>, Option<i32>)> = sqlx::query_as(
                "SELECT column_name::text, data_type::text, numeric_precision::int, numeric_scale::int \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table.as_str())
            .fetch_all(pool)
            .await
            .expect("catalog readable");
            rows.into_iter()
                .map(
                    |(name, ty, precision, scale)| match (ty.as_str(), precision, scale) {
                        ("numeric", Some(p), Some(s)) => (name, format!("numeric({p},{s})")),
                        _ => (name, ty),
                    },
                )
                .collect()
        }
        Inner::Sqlite(pool) => {
            sqlx::query_as("SELECT name, type FROM pragma_table_info($1) ORDER BY cid")
                .bind(table.as_str())
                .fetch_all(pool)
                .await
                .expect("catalog readable")
        }
    }
}

fn expected_columns(postgres: bool, table: Table) -> Vec<(String, String)> {
    let frame = |name: &str| -> &'static str {
        match (postgres, name) {
            (true, "practice_id") => "text",
            (true, "id") => "bigint",
            (true, "last_modified" | "synced_at") => "timestamp with time zone",
            (true, "raw") => "jsonb",
            (false, "id") => "INTEGER",
            (false, _) => "TEXT",
            (true, _) => "unexpected frame column",
        }
    };
    let typed = |kind: Kind| -> String {
        match (postgres, kind) {
            (true, Kind::Decimal) => "numeric(14,2)".to_owned(),
            (true, kind) => kind.postgres_type().to_owned(),
            (false, kind) => kind.sqlite_type().to_owned(),
        }
    };
    LEADING_COLUMNS
        .iter()
        .map(|n| ((*n).to_owned(), frame(n).to_owned()))
        .chain(
            table
                .spec()
                .columns
                .iter()
                .map(|c| (c.name.to_owned(), typed(c.kind))),
        )
        .chain(
            TRAILING_COLUMNS
                .iter()
                .map(|n| ((*n).to_owned(), frame(n).to_owned())),
        )
        .collect()
}

async fn primary_key(store: &Store, table: Table) -> Vec<String> {
    match &store.inner {
        Inner::Pg(pool) => sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i \
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
             WHERE i.indrelid = $1::regclass AND i.indisprimary \
             ORDER BY array_position(i.indkey, a.attnum)",
        )
        .bind(table.as_str())
        .fetch_all(pool)
        .await
        .expect("catalog readable"),
        Inner::Sqlite(pool) => {
            sqlx::query_scalar("SELECT name FROM pragma_table_info($1) WHERE pk > 0 ORDER BY pk")
                .bind(table.as_str())
                .fetch_all(pool)
                .await
                .expect("catalog readable")
        }
    }
}

/// Every landed table the migrations create, and nothing else that looks
/// like one.
async fn landed_table_names(store: &Store) -> Vec<String> {
    let mut names: Vec<String> = match &store.inner {
        Inner::Pg(pool) => sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema()",
        )
        .fetch_all(pool)
        .await,
        Inner::Sqlite(pool) => {
            sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
                .fetch_all(pool)
                .await
        }
    }
    .expect("catalog readable");
    names.retain(|n| {
        !matches!(
            n.as_str(),
            "_sqlx_migrations"
                | "practices"
                | "sync_state"
                | "sync_chunks"
                | "job_leases"
                | "sync_runs"
                | "job_queue"
                | "practice_credentials"
                | "audit_log"
                | "admin_tokens"
                | "quarantine"
                | "org_budgets"
                | "captured_deletes"
                | "deleted_records"
                | "nightly_passes"
                | "writeback_types"
                | "writeback_practices"
                | "writeback_outbox"
        )
    });
    names.sort();
    names
}

pub(super) async fn assert_schema_matches_spec(store: &Store) {
    let postgres = matches!(store.inner, Inner::Pg(_));
    for table in Table::ALL {
        assert_eq!(
            catalog_columns(store, table).await,
            expected_columns(postgres, table),
            "columns of {table} on {}",
            store.backend()
        );
        assert_eq!(
            primary_key(store, table).await,
            vec!["practice_id", "id"],
            "primary key of {table}"
        );
    }
    let mut want: Vec<String> = Table::ALL.iter().map(|t| t.as_str().to_owned()).collect();
    want.sort();
    assert_eq!(landed_table_names(store).await, want);
}
