//! Which records of an organization belong to a practice.
//!
//! A practice is one physical location of an Ascend organization. Records
//! that carry a location (operatories, appointments, visits, procedures,
//! transactions) are filtered by it. The organization-wide resources
//! (locations, providers, patients, tx cases, insurance plans, carriers)
//! are the organization's whole, landed under each practice's id: a patient
//! seen at two locations is in both practices' reports, and practices
//! never share rows. When an organization has several practices, one of
//! them pulls an organization-wide resource and its copy is shared with
//! the others (`share`, issue 14).

use ascend_client::{Filter, Resource};

/// The part of an organization a practice syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// The practice's location id; `None` for an organization with a single
    /// location, synced whole.
    pub location_id: Option<u64>,
}

impl Scope {
    /// The scope of a practice: its location, or the whole organization
    /// when it has none (`location_id` 0).
    pub fn of(practice: &model::Practice) -> Scope {
        Scope {
            location_id: u64::try_from(practice.location_id).ok().filter(|l| *l > 0),
        }
    }

    /// Whether `resource` is filtered by location.
    pub fn is_location_scoped(resource: Resource) -> bool {
        matches!(
            resource,
            Resource::Operatories
                | Resource::Appointments
                | Resource::Visits
                | Resource::PatientProcedures
                | Resource::Transactions
        )
    }

    /// The filter every request for `resource` starts from.
    pub fn base_filter(self, resource: Resource) -> Filter {
        match self.location_id {
            Some(location) if Self::is_location_scoped(resource) => {
                Filter::new().eq("location.id", location)
            }
            _ => Filter::new(),
        }
    }

    /// Whether a record (as JSON) belongs to this practice's copy of
    /// `resource`: the same rule as [`Scope::base_filter`], for checks.
    pub fn contains(self, resource: Resource, record: &serde_json::Value) -> bool {
        match self.location_id {
            Some(location) if Self::is_location_scoped(resource) => record
                .pointer("/location/id")
                .and_then(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .or_else(|| v.as_u64().map(|n| n.to_string()))
                })
                .is_some_and(|id| id == location.to_string()),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_scoped_resources_are_filtered_and_the_rest_are_not() {
        let scope = Scope {
            location_id: Some(7000000000114),
        };
        assert_eq!(
            scope.base_filter(Resource::Appointments).to_string(),
            "location.id==7000000000114"
        );
        assert!(scope.base_filter(Resource::Patients).is_empty());
        let whole = Scope { location_id: None };
        assert!(whole.base_filter(Resource::Appointments).is_empty());
    }

    #[test]
    fn contains_agrees_with_the_filter() {
        let scope = Scope {
            location_id: Some(5),
        };
        let here = serde_json::json!({"id":"1","location":{"id":"5"}});
        let there = serde_json::json!({"id":"2","location":{"id":"6"}});
        let nowhere = serde_json::json!({"id":"3","location":null});
        assert!(scope.contains(Resource::Appointments, &here));
        assert!(!scope.contains(Resource::Appointments, &there));
        assert!(!scope.contains(Resource::Appointments, &nowhere));
        assert!(scope.contains(Resource::Patients, &there));
    }
}
