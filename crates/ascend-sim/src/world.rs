//! One organization's generated world: how many records of each resource
//! exist, their ids, and the attributes that are cheap to compute from an
//! index alone.
//!
//! Nothing per record is stored. A record is a pure function of
//! `(org seed, resource, index)`. The attributes that filters and paging
//! touch most (`id`, `lastModified`, the location and patient a record
//! belongs to) each cost a few hash evaluations, so a scan of 450,000
//! procedures for `location.id==X` or `lastModified>=T` takes milliseconds
//! without materialising a single record.
//!
//! The model that keeps references consistent:
//! - a patient has a preferred location (weighted: the main office is busiest);
//! - an appointment or a visit belongs to a patient and (mostly) to that
//!   patient's location; a visit may belong to a treatment case, and then
//!   its patient is the case's patient;
//! - a completed procedure belongs to a visit (procedures are laid out in
//!   visit order) and takes the visit's patient and location; a planned
//!   procedure has no visit;
//! - a transaction follows a procedure (charges reference it) and takes its
//!   patient and location;
//! - an operatory belongs to one location; appointments use an operatory of
//!   their own location.
//!
//! Time: records are created in index order between [`HISTORY_START_MS`] and
//! [`ANCHOR_MS`]; legacy-band records were imported at exactly
//! [`LEGACY_IMPORT_MS`] (hundreds of records share that millisecond); about
//! 15% of records share one millisecond with the others of their block of 256
//! (a bulk job touched them); a quarter were modified later; every generated
//! `lastModified` is at most [`ANCHOR_MS`], which lies in the past.

use crate::clock::ms_of;
use crate::hash::{below, hash3, mix64, weighted};
use crate::ids::IdSpace;
use crate::resource::{RESOURCE_COUNT, Resource, counts};
use crate::{Size, tables};

/// Records are created from here on.
pub(crate) const HISTORY_START_MS: i64 = ms_of(2019, 1, 1, 0, 0, 0, 0);
/// No generated `lastModified` is later than this (2026-01-01).
pub(crate) const ANCHOR_MS: i64 = ms_of(2026, 1, 1, 0, 0, 0, 0);
/// `2016-04-20T01:14:04.737Z`: when the legacy records were imported.
pub(crate) const LEGACY_IMPORT_MS: i64 = ms_of(2016, 4, 20, 1, 14, 4, 737);

/// Hash streams: one per independent decision. Combined with the resource
/// index as `stream * 16 + resource` where a decision exists per resource.
pub(crate) mod stream {
    pub(crate) const CREATED: u64 = 1;
    pub(crate) const LAST_MODIFIED: u64 = 2;
    pub(crate) const CLUSTER: u64 = 3;
    pub(crate) const PATIENT_LOCATION: u64 = 4;
    pub(crate) const APPOINTMENT_PATIENT: u64 = 5;
    pub(crate) const OWN_LOCATION: u64 = 6;
    pub(crate) const VISIT_TXCASE: u64 = 7;
    pub(crate) const VISIT_PATIENT: u64 = 8;
    pub(crate) const PROCEDURE_VISIT: u64 = 9;
    pub(crate) const PROCEDURE_PATIENT: u64 = 10;
    pub(crate) const TXCASE_PATIENT: u64 = 11;
    pub(crate) const PLAN_PATIENT: u64 = 12;
    pub(crate) const RECORD: u64 = 13;
    pub(crate) const PROCEDURE_CODE: u64 = 14;
    pub(crate) const TRANSACTION_TYPE: u64 = 15;
    pub(crate) const ORG: u64 = 16;
}

/// Location weights: the first location is the main office.
const LOCATION_WEIGHTS: [u64; 4] = [6, 3, 2, 1];

/// One organization's generated data, as functions of record indexes.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) counts: [u64; RESOURCE_COUNT],
    pub(crate) ops_per_location: u64,
    pub(crate) ids: Vec<IdSpace>,
    legacy: [u64; RESOURCE_COUNT],
    loc_weights: Vec<u64>,
    /// `http://HOST:PORT/ascend-gateway/api`, written into reference urls.
    pub(crate) api_base: String,
    /// `<api_base>/v1/<path>/` per resource.
    url_prefixes: Vec<String>,
}

/// A transaction's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxType {
    Charge,
    Payment,
    Adjustment,
}

impl World {
    pub(crate) fn new(sim_seed: u64, org_index: u64, size: Size, api_base: String) -> Self {
        let seed = hash3(sim_seed, stream::ORG, org_index);
        let (counts, ops_per_location) = counts(size, seed);
        let ids: Vec<IdSpace> = Resource::ALL
            .iter()
            .map(|r| IdSpace::new(counts[r.index()], seed, org_index, r.index() as u64))
            .collect();
        let mut legacy = [0; RESOURCE_COUNT];
        for (l, space) in legacy.iter_mut().zip(&ids) {
            *l = space.legacy_count();
        }
        let n_loc = counts[Resource::Locations.index()] as usize;
        let loc_weights = LOCATION_WEIGHTS
            .iter()
            .copied()
            .cycle()
            .take(n_loc)
            .collect();
        let url_prefixes = Resource::ALL
            .iter()
            .map(|r| format!("{api_base}/v1/{}/", r.path()))
            .collect();
        Self {
            seed,
            counts,
            ops_per_location,
            ids,
            legacy,
            loc_weights,
            api_base,
            url_prefixes,
        }
    }

    /// `<api_base>/v1/<path>/`, the start of a reference url.
    pub(crate) fn url_prefix(&self, res: Resource) -> &str {
        self.url_prefixes
            .get(res.index())
            .map_or("", String::as_str)
    }

    pub(crate) fn count(&self, res: Resource) -> u64 {
        self.counts[res.index()]
    }

    pub(crate) fn space(&self, res: Resource) -> &IdSpace {
        &self.ids[res.index()]
    }

    /// The id of record `i` of `res`.
    pub(crate) fn id(&self, res: Resource, i: u64) -> u64 {
        self.ids[res.index()].id(i)
    }

    fn h(&self, stream: u64, res: Resource, i: u64) -> u64 {
        hash3(self.seed, stream * 16 + res.index() as u64, i)
    }

    /// When record `i` was created (index order is creation order).
    pub(crate) fn created(&self, res: Resource, i: u64) -> i64 {
        let legacy = self.legacy[res.index()];
        if i < legacy {
            return LEGACY_IMPORT_MS - (legacy - i) as i64 * 2 * crate::clock::MS_PER_DAY;
        }
        let n = self.count(res).max(1);
        let span = (ANCHOR_MS - 45 * crate::clock::MS_PER_DAY - HISTORY_START_MS) as u64;
        let step = span / n;
        let offset = (u128::from(i) * u128::from(span) / u128::from(n)) as u64;
        HISTORY_START_MS + (offset + below(self.h(stream::CREATED, res, i), step.max(1))) as i64
    }

    /// `lastModified` of record `i`, computed without the rest of the record.
    pub(crate) fn last_modified(&self, res: Resource, i: u64) -> i64 {
        let h = self.h(stream::LAST_MODIFIED, res, i);
        if i < self.legacy[res.index()] && h % 10 < 7 {
            return LEGACY_IMPORT_MS;
        }
        let created = self.created(res, i);
        match below(h >> 8, 100) {
            0..15 => {
                let n = self.count(res);
                let block = i / 256;
                let end = (block * 256 + 255).min(n.saturating_sub(1));
                let jitter = below(
                    self.h(stream::CLUSTER, res, block),
                    20 * crate::clock::MS_PER_DAY as u64,
                );
                (self.created(res, end) + 1000 + jitter as i64).min(ANCHOR_MS)
            }
            15..40 => created + below(mix64(h), (ANCHOR_MS - created).max(1) as u64) as i64,
            _ => created + below(mix64(h), 600_000) as i64,
        }
    }

    fn weighted_location(&self, h: u64) -> u64 {
        weighted(h, &self.loc_weights) as u64
    }

    /// The location index a record belongs to, for location-scoped resources.
    pub(crate) fn location_of(&self, res: Resource, i: u64) -> Option<u64> {
        match res {
            Resource::Operatories => Some(
                (i / self.ops_per_location.max(1))
                    .min(self.count(Resource::Locations).saturating_sub(1)),
            ),
            Resource::Patients => {
                Some(self.weighted_location(self.h(stream::PATIENT_LOCATION, res, i)))
            }
            Resource::Appointments | Resource::Visits => {
                let h = self.h(stream::OWN_LOCATION, res, i);
                if below(h, 10) < 9 {
                    let p = self.patient_of(res, i)?;
                    self.location_of(Resource::Patients, p)
                } else {
                    Some(self.weighted_location(mix64(h)))
                }
            }
            Resource::PatientProcedures => match self.visit_of(i) {
                Some(v) => self.location_of(Resource::Visits, v),
                None => {
                    let p = self.patient_of(res, i)?;
                    self.location_of(Resource::Patients, p)
                }
            },
            Resource::Transactions => {
                self.location_of(Resource::PatientProcedures, self.procedure_of(i))
            }
            _ => None,
        }
    }

    /// The patient index a record belongs to, for resources with a patient.
    pub(crate) fn patient_of(&self, res: Resource, i: u64) -> Option<u64> {
        let patients = self.count(Resource::Patients);
        let pick = |stream| below(self.h(stream, res, i), patients);
        match res {
            Resource::Appointments => Some(pick(stream::APPOINTMENT_PATIENT)),
            Resource::TxCases => Some(pick(stream::TXCASE_PATIENT)),
            Resource::PatientInsurancePlans => Some(pick(stream::PLAN_PATIENT)),
            Resource::Visits => match self.txcase_of(i) {
                Some(t) => self.patient_of(Resource::TxCases, t),
                None => Some(pick(stream::VISIT_PATIENT)),
            },
            Resource::PatientProcedures => match self.visit_of(i) {
                Some(v) => self.patient_of(Resource::Visits, v),
                None => Some(pick(stream::PROCEDURE_PATIENT)),
            },
            Resource::Transactions => {
                self.patient_of(Resource::PatientProcedures, self.procedure_of(i))
            }
            _ => None,
        }
    }

    /// The treatment case of visit `v`, if any (half of visits have one).
    pub(crate) fn txcase_of(&self, v: u64) -> Option<u64> {
        let h = self.h(stream::VISIT_TXCASE, Resource::Visits, v);
        let cases = self.count(Resource::TxCases);
        (h.is_multiple_of(2) && cases > 0).then(|| below(mix64(h), cases))
    }

    /// The visit of procedure `i`; `None` for a planned procedure (a quarter).
    pub(crate) fn visit_of(&self, i: u64) -> Option<u64> {
        let h = self.h(stream::PROCEDURE_VISIT, Resource::PatientProcedures, i);
        let visits = self.count(Resource::Visits);
        if below(h, 100) < 25 || visits == 0 {
            return None;
        }
        let n = self.count(Resource::PatientProcedures).max(1);
        Some(((u128::from(i) * u128::from(visits) / u128::from(n)) as u64).min(visits - 1))
    }

    /// The procedure transaction `x` follows (transactions are in procedure order).
    pub(crate) fn procedure_of(&self, x: u64) -> u64 {
        let procs = self.count(Resource::PatientProcedures);
        let n = self.count(Resource::Transactions).max(1);
        ((u128::from(x) * u128::from(procs) / u128::from(n)) as u64).min(procs.saturating_sub(1))
    }

    /// Index into [`tables::PROCEDURES`] of procedure `i`.
    pub(crate) fn procedure_code(&self, i: u64) -> usize {
        weighted(
            self.h(stream::PROCEDURE_CODE, Resource::PatientProcedures, i),
            tables::PROCEDURE_WEIGHTS,
        )
        .min(tables::PROCEDURES.len() - 1)
    }

    /// The fee of procedure `i`, in cents: the code's typical fee, 90%..115%,
    /// mostly whole dollars.
    pub(crate) fn procedure_fee(&self, i: u64) -> i64 {
        let (_, _, base) = tables::PROCEDURES[self.procedure_code(i)];
        let h = mix64(self.h(stream::PROCEDURE_CODE, Resource::PatientProcedures, i));
        let cents = base * (90 + below(h, 26) as i64) / 100;
        if below(h >> 7, 10) < 8 {
            cents / 100 * 100
        } else {
            cents
        }
    }

    pub(crate) fn transaction_type(&self, x: u64) -> TxType {
        match below(
            self.h(stream::TRANSACTION_TYPE, Resource::Transactions, x),
            100,
        ) {
            0..55 => TxType::Charge,
            55..90 => TxType::Payment,
            _ => TxType::Adjustment,
        }
    }

    /// Seed of the full-record generator of record `i`.
    pub(crate) fn record_seed(&self, res: Resource, i: u64) -> u64 {
        self.h(stream::RECORD, res, i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(size: Size) -> World {
        World::new(7, 0, size, "http://x/ascend-gateway/api".into())
    }

    #[test]
    fn last_modified_lies_in_the_past_and_clusters() {
        let w = world(Size::Small);
        let mut per_ms = std::collections::HashMap::<i64, u32>::new();
        for res in Resource::ALL {
            for i in 0..w.count(res) {
                let lm = w.last_modified(res, i);
                assert!(
                    (LEGACY_IMPORT_MS - 1000 * crate::clock::MS_PER_DAY..=ANCHOR_MS).contains(&lm)
                );
                *per_ms.entry(lm).or_default() += 1;
            }
        }
        assert!(per_ms.get(&LEGACY_IMPORT_MS).copied().unwrap_or(0) > 20);
        let shared = per_ms.values().filter(|n| **n >= 5).count();
        assert!(
            shared >= 10,
            "only {shared} milliseconds shared by 5+ records"
        );
    }

    #[test]
    fn references_point_at_existing_records_and_locations_agree() {
        let w = world(Size::Small);
        let locs = w.count(Resource::Locations);
        let patients = w.count(Resource::Patients);
        let mut same_location = 0;
        for i in 0..w.count(Resource::PatientProcedures) {
            let p = w.patient_of(Resource::PatientProcedures, i);
            assert!(p.is_some_and(|p| p < patients));
            assert!(
                w.location_of(Resource::PatientProcedures, i)
                    .is_some_and(|l| l < locs)
            );
            if let Some(v) = w.visit_of(i) {
                assert!(v < w.count(Resource::Visits));
                assert_eq!(w.patient_of(Resource::Visits, v), p);
            }
        }
        for i in 0..w.count(Resource::Appointments) {
            let p = w.patient_of(Resource::Appointments, i).unwrap_or(u64::MAX);
            if w.location_of(Resource::Appointments, i) == w.location_of(Resource::Patients, p) {
                same_location += 1;
            }
        }
        assert!(same_location * 10 > w.count(Resource::Appointments) * 8);
        let used: std::collections::BTreeSet<_> = (0..patients)
            .filter_map(|p| w.location_of(Resource::Patients, p))
            .collect();
        assert_eq!(used.len() as u64, locs, "every location has patients");
    }
}
