//! The one declarative description of the landed tables.
//!
//! Each landed table has the same frame, `practice_id`, `id`, then the typed
//! columns of [`TableSpec::columns`], then `last_modified`, `raw` and
//! `synced_at`, with the primary key `(practice_id, id)`. The typed columns
//! are read from the record's JSON by [`crate::extract`] and written by the
//! bulk upserts of both backends, both driven by this spec. The migrations
//! are written by hand; a test checks that the migrated schema of each
//! backend has exactly these columns, in this order, with these kinds.
//!
//! Table and column names that reach SQL come only from here, never from
//! input.

use std::fmt;
use std::str::FromStr;

use model::Resource;

/// A landed table: one per Ascend resource this project syncs.
///
/// [`Table::as_str`] is the table name, and equals the resource's stable
/// snake-case name in `ascend-client` (`Resource::name()`), so a caller maps
/// a resource with `resource.name().parse::<Table>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `/v1/locations`.
    Locations,
    /// `/v1/providers`.
    Providers,
    /// `/v1/operatories`.
    Operatories,
    /// `/v1/patients`.
    Patients,
    /// `/v1/appointments`.
    Appointments,
    /// `/v1/txcases`.
    TxCases,
    /// `/v1/visits`.
    Visits,
    /// `/v1/patientprocedures`.
    PatientProcedures,
    /// `/v1/patientinsuranceplans`.
    PatientInsurancePlans,
    /// `/v1/globalinsurancecarriers`.
    InsuranceCarriers,
    /// `/v1/transactions`.
    Transactions,
}

impl Table {
    /// Every landed table.
    pub const ALL: [Table; 11] = [
        Table::Locations,
        Table::Providers,
        Table::Operatories,
        Table::Patients,
        Table::Appointments,
        Table::TxCases,
        Table::Visits,
        Table::PatientProcedures,
        Table::PatientInsurancePlans,
        Table::InsuranceCarriers,
        Table::Transactions,
    ];

    /// The SQL table name, e.g. `tx_cases`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Table::Locations => "locations",
            Table::Providers => "providers",
            Table::Operatories => "operatories",
            Table::Patients => "patients",
            Table::Appointments => "appointments",
            Table::TxCases => "tx_cases",
            Table::Visits => "visits",
            Table::PatientProcedures => "patient_procedures",
            Table::PatientInsurancePlans => "patient_insurance_plans",
            Table::InsuranceCarriers => "insurance_carriers",
            Table::Transactions => "transactions",
        }
    }

    /// The table a resource lands in. Total: every resource has its
    /// table, and [`Table::resource`] is its inverse.
    #[must_use]
    pub const fn of(resource: Resource) -> Table {
        match resource {
            Resource::Locations => Table::Locations,
            Resource::Providers => Table::Providers,
            Resource::Operatories => Table::Operatories,
            Resource::Patients => Table::Patients,
            Resource::Appointments => Table::Appointments,
            Resource::TxCases => Table::TxCases,
            Resource::Visits => Table::Visits,
            Resource::PatientProcedures => Table::PatientProcedures,
            Resource::PatientInsurancePlans => Table::PatientInsurancePlans,
            Resource::InsuranceCarriers => Table::InsuranceCarriers,
            Resource::Transactions => Table::Transactions,
        }
    }

    /// The resource this table holds.
    #[must_use]
    pub const fn resource(self) -> Resource {
        match self {
            Table::Locations => Resource::Locations,
            Table::Providers => Resource::Providers,
            Table::Operatories => Resource::Operatories,
            Table::Patients => Resource::Patients,
            Table::Appointments => Resource::Appointments,
            Table::TxCases => Resource::TxCases,
            Table::Visits => Resource::Visits,
            Table::PatientProcedures => Resource::PatientProcedures,
            Table::PatientInsurancePlans => Resource::PatientInsurancePlans,
            Table::InsuranceCarriers => Resource::InsuranceCarriers,
            Table::Transactions => Resource::Transactions,
        }
    }

    /// The spec of this table.
    pub fn spec(self) -> &'static TableSpec {
        // SPECS is in the order of Table::ALL; the `spec_order_matches` test
        // keeps it so. The fallback only guards against a future edit.
        let spec = &SPECS[self as usize];
        if spec.table == self {
            spec
        } else {
            SPECS.iter().find(|s| s.table == self).unwrap_or(spec)
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of the landed tables.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a landed table: expected one of locations, providers, operatories, patients, \
     appointments, tx_cases, visits, patient_procedures, patient_insurance_plans, \
     insurance_carriers, transactions"
)]
pub struct UnknownTable(String);

impl FromStr for Table {
    type Err = UnknownTable;

    /// Parses a table name (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Table::ALL
            .iter()
            .copied()
            .find(|t| t.as_str().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownTable(s.chars().take(64).collect()))
    }
}

/// How a typed column is read from JSON and stored.
///
/// | kind | JSON accepted | Postgres | SQLite |
/// |---|---|---|---|
/// | `Text` | a string (numbers and booleans as their literal text) | `text` | `TEXT` |
/// | `Id` | a decimal string or a non-negative integer below 2^63 | `bigint` | `INTEGER` |
/// | `Int` | an integer, or a string holding one | `bigint` | `INTEGER` |
/// | `Date` | `"YYYY-MM-DD"`, or an RFC 3339 timestamp (its date as written) | `date` | `TEXT` `YYYY-MM-DD` |
/// | `Timestamp` | RFC 3339 (`"2016-04-20T01:14:04.737Z"`); no offset means UTC | `timestamptz` | `TEXT` `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC) |
/// | `Decimal` | a number or a numeric string, rounded half away from zero to 2 places, at most 12 integer digits | `numeric(14,2)` | `TEXT` (`"125.50"`) |
///
/// Anything else (missing, `null`, wrong type, unparseable, out of range)
/// stores NULL; the row is always kept, and `raw` keeps the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Free text.
    Text,
    /// An Ascend record id (a reference's `id`).
    Id,
    /// A whole number.
    Int,
    /// A calendar date.
    Date,
    /// An instant, stored in UTC with microsecond precision.
    Timestamp,
    /// An exact decimal amount with two places (fees, amounts).
    Decimal,
}

impl Kind {
    /// The column type in the Postgres migrations, as
    /// `information_schema.columns.data_type` reports it.
    pub const fn postgres_type(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Id | Kind::Int => "bigint",
            Kind::Date => "date",
            Kind::Timestamp => "timestamp with time zone",
            Kind::Decimal => "numeric",
        }
    }

    /// The declared column type in the SQLite migrations.
    pub const fn sqlite_type(self) -> &'static str {
        match self {
            Kind::Id | Kind::Int => "INTEGER",
            Kind::Text | Kind::Date | Kind::Timestamp | Kind::Decimal => "TEXT",
        }
    }
}

/// A typed column of a landed table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    /// The SQL column name.
    pub name: &'static str,
    /// Where the value is in the record: field names separated by dots,
    /// e.g. `patient.id` (the `id` of the `patient` reference).
    pub path: &'static str,
    /// How the value is read and stored.
    pub kind: Kind,
}

/// A landed table and its typed columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableSpec {
    /// The table.
    pub table: Table,
    /// The typed columns, in table order, between `id` and `last_modified`.
    pub columns: &'static [Column],
}

/// The columns every landed table has before the typed ones.
pub const LEADING_COLUMNS: [&str; 2] = ["practice_id", "id"];
/// The columns every landed table has after the typed ones.
pub const TRAILING_COLUMNS: [&str; 3] = ["last_modified", "raw", "synced_at"];

impl TableSpec {
    /// Every column of the table, in table order.
    pub fn all_column_names(&self) -> Vec<&'static str> {
        LEADING_COLUMNS
            .iter()
            .copied()
            .chain(self.columns.iter().map(|c| c.name))
            .chain(TRAILING_COLUMNS.iter().copied())
            .collect()
    }
}

const fn col(name: &'static str, path: &'static str, kind: Kind) -> Column {
    Column { name, path, kind }
}

use Kind::{Date, Decimal, Id, Int, Text, Timestamp};

/// The spec of every landed table, in the order of [`Table::ALL`].
pub static SPECS: [TableSpec; 11] = [
    TableSpec {
        table: Table::Locations,
        columns: &[col("name", "name", Text)],
    },
    TableSpec {
        table: Table::Providers,
        columns: &[
            col("first_name", "firstName", Text),
            col("last_name", "lastName", Text),
        ],
    },
    TableSpec {
        table: Table::Operatories,
        columns: &[
            col("name", "name", Text),
            col("location_id", "location.id", Id),
        ],
    },
    TableSpec {
        table: Table::Patients,
        columns: &[
            col("first_name", "firstName", Text),
            col("last_name", "lastName", Text),
            col("preferred_name", "preferredName", Text),
            col("date_of_birth", "dateOfBirth", Date),
            col("gender", "gender", Text),
            col("patient_status", "patientStatus", Text),
            col("chart_number", "chartNumber", Text),
            col("email_address", "emailAddress", Text),
            col("primary_provider_id", "primaryProvider.id", Id),
            col("primary_guarantor_id", "primaryGuarantor.id", Id),
            col("preferred_location_id", "preferredLocation.id", Id),
            col("first_visit_date", "firstVisitDate", Date),
        ],
    },
    TableSpec {
        table: Table::Appointments,
        columns: &[
            col("start_at", "start", Timestamp),
            col("end_at", "end", Timestamp),
            col("duration_minutes", "duration", Int),
            col("status", "status", Text),
            col("booking_type", "bookingType", Text),
            col("patient_id", "patient.id", Id),
            col("provider_id", "provider.id", Id),
            col("operatory_id", "operatory.id", Id),
            col("location_id", "location.id", Id),
            col("note", "note", Text),
        ],
    },
    TableSpec {
        table: Table::TxCases,
        columns: &[
            col("name", "name", Text),
            col("status", "status", Text),
            col("patient_id", "patient.id", Id),
        ],
    },
    TableSpec {
        table: Table::Visits,
        columns: &[
            col("patient_id", "patient.id", Id),
            col("tx_case_id", "txCase.id", Id),
            col("location_id", "location.id", Id),
        ],
    },
    TableSpec {
        table: Table::PatientProcedures,
        columns: &[
            col("patient_id", "patient.id", Id),
            col("visit_id", "visit.id", Id),
            col("provider_id", "provider.id", Id),
            col("location_id", "location.id", Id),
            col("procedure_code", "procedureCode", Text),
            col("fee", "fee", Decimal),
            col("status", "status", Text),
            col("procedure_date", "date", Date),
        ],
    },
    TableSpec {
        table: Table::PatientInsurancePlans,
        columns: &[
            col("patient_id", "patient.id", Id),
            col("carrier_id", "carrier.id", Id),
        ],
    },
    TableSpec {
        table: Table::InsuranceCarriers,
        columns: &[col("name", "name", Text)],
    },
    TableSpec {
        table: Table::Transactions,
        columns: &[
            col("transaction_type", "type", Text),
            col("amount", "amount", Decimal),
            col("transaction_date", "date", Date),
            col("patient_id", "patient.id", Id),
            col("location_id", "location.id", Id),
        ],
    },
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_resource_has_its_table_and_back() {
        for &resource in Resource::ALL {
            let table = Table::of(resource);
            assert_eq!(table.as_str(), resource.name());
            assert_eq!(table.resource(), resource);
        }
        assert_eq!(Resource::ALL.len(), Table::ALL.len());
    }

    #[test]
    fn spec_order_matches() {
        for (i, t) in Table::ALL.iter().enumerate() {
            assert_eq!(SPECS[i].table, *t);
            assert_eq!(t.spec().table, *t);
            assert_eq!(*t as usize, i);
        }
    }

    #[test]
    fn names_round_trip_and_columns_are_unique_identifiers() {
        for t in Table::ALL {
            assert_eq!(t.as_str().parse::<Table>(), Ok(t));
            assert_eq!(t.to_string().to_uppercase().parse::<Table>(), Ok(t));
            let names = t.spec().all_column_names();
            let unique: HashSet<_> = names.iter().collect();
            assert_eq!(unique.len(), names.len(), "{t}");
            for name in names.iter().chain([&t.as_str()]) {
                assert!(
                    name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{name} must be a plain SQL identifier"
                );
            }
            for c in t.spec().columns {
                assert!(
                    !c.path.is_empty() && c.path.split('.').all(|s| !s.is_empty()),
                    "{}",
                    c.path
                );
            }
        }
        assert!("txcases".parse::<Table>().is_err());
    }
}
