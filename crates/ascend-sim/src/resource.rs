//! The resources the simulator serves, their names, and how many records of
//! each an organization of a given [`Size`](crate::Size) holds.

use crate::Size;
use crate::hash::{below, hash3};

/// A collection served under `/v1/<path>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Resource {
    Locations,
    Providers,
    Operatories,
    Patients,
    Appointments,
    TxCases,
    Visits,
    PatientProcedures,
    PatientInsurancePlans,
    GlobalInsuranceCarriers,
    Transactions,
}

pub(crate) const RESOURCE_COUNT: usize = 11;

impl Resource {
    pub(crate) const ALL: [Resource; RESOURCE_COUNT] = [
        Resource::Locations,
        Resource::Providers,
        Resource::Operatories,
        Resource::Patients,
        Resource::Appointments,
        Resource::TxCases,
        Resource::Visits,
        Resource::PatientProcedures,
        Resource::PatientInsurancePlans,
        Resource::GlobalInsuranceCarriers,
        Resource::Transactions,
    ];

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The path segment after `/v1/`, also the resource's name in the
    /// control API.
    pub(crate) const fn path(self) -> &'static str {
        match self {
            Resource::Locations => "locations",
            Resource::Providers => "providers",
            Resource::Operatories => "operatories",
            Resource::Patients => "patients",
            Resource::Appointments => "appointments",
            Resource::TxCases => "txcases",
            Resource::Visits => "visits",
            Resource::PatientProcedures => "patientprocedures",
            Resource::PatientInsurancePlans => "patientinsuranceplans",
            Resource::GlobalInsuranceCarriers => "globalinsurancecarriers",
            Resource::Transactions => "transactions",
        }
    }

    pub(crate) fn from_path(path: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.path() == path)
    }

    /// The `type` written in references to this resource.
    pub(crate) const fn ref_type(self) -> &'static str {
        match self {
            Resource::Locations => "LocationV1",
            Resource::Providers => "ProviderV1",
            Resource::Operatories => "OperatoryV1",
            Resource::Patients => "PatientV1",
            Resource::Appointments => "AppointmentV1",
            Resource::TxCases => "TxCaseV1",
            Resource::Visits => "VisitV1",
            Resource::PatientProcedures => "PatientProcedureV1",
            Resource::PatientInsurancePlans => "PatientInsurancePlanV1",
            Resource::GlobalInsuranceCarriers => "GlobalInsuranceCarrierV1",
            Resource::Transactions => "TransactionV1",
        }
    }

    /// The top-level field holding this resource's location reference, for
    /// the location-scoped resources (`filter=location.id==X` partitions
    /// these by practice location; for patients `location` is accepted as an
    /// alias of `preferredLocation`).
    pub(crate) const fn location_field(self) -> Option<&'static str> {
        match self {
            Resource::Patients => Some("preferredLocation"),
            Resource::Operatories
            | Resource::Appointments
            | Resource::Visits
            | Resource::PatientProcedures
            | Resource::Transactions => Some("location"),
            _ => None,
        }
    }

    /// Whether records of this resource carry a `patient` reference.
    pub(crate) const fn has_patient(self) -> bool {
        matches!(
            self,
            Resource::Appointments
                | Resource::TxCases
                | Resource::Visits
                | Resource::PatientProcedures
                | Resource::PatientInsurancePlans
                | Resource::Transactions
        )
    }
}

/// Streams for [`hash3`] that size decisions use.
const SIZE_STREAM: u64 = 0x5153;

/// Record counts of an organization, indexed by [`Resource::index`], and
/// the number of operatories per location.
///
/// `locations` fixes the number of locations (and operatories scale with
/// it, `ops_per_location` each); `None` draws it from the size's range, as
/// it always has. Nothing else depends on it: the same seed and size give
/// the same volumes whatever the number of locations.
pub(crate) fn counts(
    size: Size,
    org_seed: u64,
    locations: Option<u32>,
) -> ([u64; RESOURCE_COUNT], u64) {
    let h = |k: u64| hash3(org_seed, SIZE_STREAM, k);
    // (locations lo..=hi, providers lo..=hi, operatories per location,
    //  carriers, divisor of the large volumes)
    let (loc_lo, loc_hi, prov_lo, prov_hi, ops_per_loc, carriers, div) = match size {
        Size::Tiny => (1, 2, 3, 5, 2, 10, 5000),
        Size::Small => (2, 3, 5, 9, 3, 40, 200),
        Size::Medium => (2, 4, 12, 25, 4, 150, 10),
        Size::Large => (2, 4, 30, 60, 6, 300, 1),
    };
    let locations = match locations {
        Some(n) => u64::from(n),
        None => loc_lo + below(h(0), loc_hi - loc_lo + 1),
    };
    let providers = prov_lo + below(h(1), prov_hi - prov_lo + 1);
    // Each organization is 90%..110% of the nominal volume.
    let percent = 90 + below(h(2), 21);
    let vol = |large: u64| (large * percent / 100 / div).max(1);
    let mut c = [0u64; RESOURCE_COUNT];
    c[Resource::Locations.index()] = locations;
    c[Resource::Providers.index()] = providers;
    c[Resource::Operatories.index()] = locations * ops_per_loc;
    c[Resource::Patients.index()] = vol(60_000);
    c[Resource::Appointments.index()] = vol(300_000);
    c[Resource::TxCases.index()] = vol(30_000);
    c[Resource::Visits.index()] = vol(90_000);
    c[Resource::PatientProcedures.index()] = vol(450_000);
    c[Resource::PatientInsurancePlans.index()] = vol(45_000);
    c[Resource::GlobalInsuranceCarriers.index()] = carriers;
    c[Resource::Transactions.index()] = vol(150_000);
    (c, ops_per_loc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_and_sizes_have_the_promised_volume() {
        for r in Resource::ALL {
            assert_eq!(Resource::from_path(r.path()), Some(r));
        }
        assert_eq!(Resource::from_path("patient"), None);
        let total = |s| counts(s, 42, None).0.iter().sum::<u64>();
        let (small, medium, large) = (total(Size::Small), total(Size::Medium), total(Size::Large));
        let tiny = total(Size::Tiny);
        assert!((150..400).contains(&tiny), "tiny {tiny}");
        assert!((4_000..8_000).contains(&small), "small {small}");
        assert!((80_000..130_000).contains(&medium), "medium {medium}");
        assert!((900_000..1_300_000).contains(&large), "large {large}");
        let (c, _) = counts(Size::Large, 42, None);
        assert!((2..=4).contains(&c[Resource::Locations.index()]));
    }
}
