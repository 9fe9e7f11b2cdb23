//! An instant as both backends store it, so that one query text binds and
//! reads timestamps on either: `timestamptz` on Postgres, fixed-width UTC
//! text on SQLite (`YYYY-MM-DDTHH:MM:SS.ffffffZ`, so text order is time
//! order and SQL comparisons work).

use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentValue, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};
use time::OffsetDateTime;

use crate::extract::{normalize_timestamp, timestamp_from_text, timestamp_text};

/// An instant in UTC, microsecond precision, years 1 to 9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DbTime(pub(crate) OffsetDateTime);

impl DbTime {
    /// `None` outside years 1 to 9999 (which neither backend is asked to
    /// hold); truncated to microseconds.
    pub(crate) fn new(ts: OffsetDateTime) -> Option<DbTime> {
        normalize_timestamp(ts).map(DbTime)
    }

    /// Now, truncated to microseconds.
    pub(crate) fn now() -> DbTime {
        let now = OffsetDateTime::now_utc();
        DbTime(normalize_timestamp(now).unwrap_or(now))
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <OffsetDateTime as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <OffsetDateTime as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbTime(<OffsetDateTime as Decode<'r, Postgres>>::decode(
            value,
        )?))
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'q> Encode<'q, Sqlite> for DbTime {
    fn encode_by_ref(&self, buf: &mut Vec<SqliteArgumentValue<'q>>) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(timestamp_text(self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
        timestamp_from_text(text)
            .map(DbTime)
            .ok_or_else(|| format!("{text:?} is not a timestamp this store wrote").into())
    }
}

/// A calendar date as both backends store it: `date` on Postgres, text
/// `YYYY-MM-DD` on SQLite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct DbDate(pub(crate) time::Date);

impl Type<Postgres> for DbDate {
    fn type_info() -> PgTypeInfo {
        <time::Date as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <time::Date as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for DbDate {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        Ok(DbDate(<time::Date as Decode<'r, Postgres>>::decode(value)?))
    }
}

impl Type<Sqlite> for DbDate {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbDate {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<'r, Sqlite>>::decode(value)?;
        crate::extract::date_from_text(text)
            .map(DbDate)
            .ok_or_else(|| format!("{text:?} is not a date this store wrote").into())
    }
}
