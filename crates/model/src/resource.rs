//! The resources this project syncs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::UnknownValue;

/// A list resource of the Ascend API that this project syncs.
///
/// [`Resource::name`] is the stable snake-case name used as our table name;
/// [`Resource::path`] is the API path under the API base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// `/v1/locations`: practice locations.
    Locations,
    /// `/v1/providers`: dentists and hygienists.
    Providers,
    /// `/v1/operatories`: chairs.
    Operatories,
    /// `/v1/patients`.
    Patients,
    /// `/v1/appointments`: the schedule.
    Appointments,
    /// `/v1/txcases`: treatment plans.
    TxCases,
    /// `/v1/visits`.
    Visits,
    /// `/v1/patientprocedures`: procedures (production).
    PatientProcedures,
    /// `/v1/patientinsuranceplans`: coverage.
    PatientInsurancePlans,
    /// `/v1/globalinsurancecarriers`: insurance carriers.
    InsuranceCarriers,
    /// `/v1/transactions`: the ledger; may not be offered (404).
    Transactions,
}

impl Resource {
    /// Every resource, in a sensible pull order (reference data first).
    pub const ALL: &'static [Resource] = &[
        Resource::Locations,
        Resource::Providers,
        Resource::Operatories,
        Resource::Patients,
        Resource::Appointments,
        Resource::TxCases,
        Resource::Visits,
        Resource::PatientProcedures,
        Resource::PatientInsurancePlans,
        Resource::InsuranceCarriers,
        Resource::Transactions,
    ];

    /// The API path, appended to the API base, e.g. `/v1/patients`.
    pub const fn path(self) -> &'static str {
        match self {
            Resource::Locations => "/v1/locations",
            Resource::Providers => "/v1/providers",
            Resource::Operatories => "/v1/operatories",
            Resource::Patients => "/v1/patients",
            Resource::Appointments => "/v1/appointments",
            Resource::TxCases => "/v1/txcases",
            Resource::Visits => "/v1/visits",
            Resource::PatientProcedures => "/v1/patientprocedures",
            Resource::PatientInsurancePlans => "/v1/patientinsuranceplans",
            Resource::InsuranceCarriers => "/v1/globalinsurancecarriers",
            Resource::Transactions => "/v1/transactions",
        }
    }

    /// The stable snake-case name, used as our table name, e.g. `tx_cases`.
    pub const fn name(self) -> &'static str {
        match self {
            Resource::Locations => "locations",
            Resource::Providers => "providers",
            Resource::Operatories => "operatories",
            Resource::Patients => "patients",
            Resource::Appointments => "appointments",
            Resource::TxCases => "tx_cases",
            Resource::Visits => "visits",
            Resource::PatientProcedures => "patient_procedures",
            Resource::PatientInsurancePlans => "patient_insurance_plans",
            Resource::InsuranceCarriers => "insurance_carriers",
            Resource::Transactions => "transactions",
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Resource {
    type Err = UnknownValue;

    /// Parses a [`Resource::name`] (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim();
        Resource::ALL
            .iter()
            .copied()
            .find(|r| r.name().eq_ignore_ascii_case(wanted))
            .ok_or_else(|| UnknownValue {
                what: "resource",
                value: s.chars().take(64).collect(),
                expected: "locations, providers, operatories, patients, appointments, tx_cases, \
                               visits, patient_procedures, patient_insurance_plans, \
                               insurance_carriers, transactions",
            })
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for &r in Resource::ALL {
            assert_eq!(r.name().parse::<Resource>(), Ok(r));
            assert!(names.insert(r.name()));
            assert!(paths.insert(r.path()));
            assert!(r.path().starts_with("/v1/"));
            let json = serde_json::to_string(&r).expect("serializes");
            assert_eq!(
                serde_json::from_str::<Resource>(&json).expect("deserializes"),
                r
            );
        }
        assert_eq!(Resource::ALL.len(), 11);
    }

    #[test]
    fn known_paths_and_names() {
        assert_eq!(
            Resource::InsuranceCarriers.path(),
            "/v1/globalinsurancecarriers"
        );
        assert_eq!(Resource::InsuranceCarriers.name(), "insurance_carriers");
        assert_eq!(Resource::TxCases.path(), "/v1/txcases");
        assert_eq!(Resource::TxCases.to_string(), "tx_cases");
        assert_eq!(
            "Patient_Procedures".parse::<Resource>(),
            Ok(Resource::PatientProcedures)
        );
        assert!("txcases".parse::<Resource>().is_err());
    }
}
