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
//! Time: the world is placed at its anchor, the midnight (UTC) that starts
//! the simulator's today (the clock's today when the simulator starts, or
//! a day fixed in [`crate::SimConfig::today`] for reproducible runs). Every
//! timestamp of activity is relative to it, so moving the anchor by `n`
//! days moves every generated record's dates by `n` days (legacy-band
//! records excepted). Records are created in index order over the
//! [`HISTORY_DAYS`] before the anchor; legacy-band records were imported at
//! exactly [`LEGACY_IMPORT_MS`] (hundreds of records share that
//! millisecond); about 15% of records share one millisecond with the others
//! of their block of 256 (a bulk job touched them); a quarter were modified
//! later; a past appointment was touched when its visit ended. Every
//! generated `lastModified` is at most the anchor, so none lies in the
//! simulator's future.
//!
//! Appointments are booked (created) in the past and start after a lead
//! time: short notice, a follow-up weeks later, a recall about six months
//! ahead, an annual visit, or now and then a long treatment's visit well
//! over a year ahead. So the last 90 days hold the visits a practice has
//! just seen (completed, broken, cancelled) and the next year holds its
//! schedule, dense in the coming weeks and thinning out, as a real
//! practice's calendar does.

use crate::clock::{MS_PER_DAY, ms_of};
use crate::hash::{below, hash3, mix64, weighted};
use crate::ids::IdSpace;
use crate::resource::{RESOURCE_COUNT, Resource, counts};
use crate::{Size, tables};

/// Records are created over this many days before the anchor (seven
/// years: with the anchor 2026-01-01, from 2019-01-01 on).
pub(crate) const HISTORY_DAYS: i64 = 2557;
/// The newest records were created this long before the anchor.
const CREATED_BEFORE_ANCHOR_MS: i64 = MS_PER_DAY;
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
    pub(crate) const APPOINTMENT_START: u64 = 17;
}

/// The earliest day (days since 1970-01-01) a world can be placed at: its
/// history must begin after the legacy import.
pub(crate) const EARLIEST_ANCHOR_DAY: i64 =
    LEGACY_IMPORT_MS.div_euclid(MS_PER_DAY) + 1 + HISTORY_DAYS;

/// A fixed day for the crate's tests (2026-01-01).
#[cfg(test)]
pub(crate) const TEST_DAY: i64 = crate::clock::days_from_civil(2026, 1, 1);

/// Location weights: the first location is the main office.
const LOCATION_WEIGHTS: [u64; 4] = [6, 3, 2, 1];

/// One organization's generated data, as functions of record indexes.
#[derive(Debug)]
pub(crate) struct World {
    pub(crate) seed: u64,
    pub(crate) counts: [u64; RESOURCE_COUNT],
    pub(crate) ops_per_location: u64,
    pub(crate) ids: Vec<IdSpace>,
    /// The midnight (UTC) starting the world's today: no generated
    /// `lastModified` is later.
    anchor_ms: i64,
    /// Non-legacy records are created from here on.
    history_start_ms: i64,
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
    /// The world of organization `org_index`, placed at `anchor_day`
    /// (days since 1970-01-01; see [`EARLIEST_ANCHOR_DAY`]), with the
    /// size's number of locations.
    #[cfg(test)]
    pub(crate) fn new(
        sim_seed: u64,
        org_index: u64,
        size: Size,
        anchor_day: i64,
        api_base: String,
    ) -> Self {
        Self::with_locations(sim_seed, org_index, size, None, anchor_day, api_base)
    }

    /// [`World::new`] with the number of locations fixed
    /// ([`crate::SimConfig::locations`]); `None` draws it from the size.
    /// Location weights cycle [`LOCATION_WEIGHTS`] whatever the number.
    pub(crate) fn with_locations(
        sim_seed: u64,
        org_index: u64,
        size: Size,
        locations: Option<u32>,
        anchor_day: i64,
        api_base: String,
    ) -> Self {
        let seed = hash3(sim_seed, stream::ORG, org_index);
        let (counts, ops_per_location) = counts(size, seed, locations);
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
            anchor_ms: anchor_day * MS_PER_DAY,
            history_start_ms: (anchor_day - HISTORY_DAYS) * MS_PER_DAY,
            legacy,
            loc_weights,
            api_base,
            url_prefixes,
        }
    }

    /// The midnight (UTC) the world is placed at: every generated
    /// `lastModified` is at most this.
    pub(crate) fn anchor_ms(&self) -> i64 {
        self.anchor_ms
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
            return LEGACY_IMPORT_MS - (legacy - i) as i64 * 2 * MS_PER_DAY;
        }
        let n = self.count(res).max(1);
        let span = (self.anchor_ms - CREATED_BEFORE_ANCHOR_MS - self.history_start_ms) as u64;
        let step = span / n;
        let offset = (u128::from(i) * u128::from(span) / u128::from(n)) as u64;
        self.history_start_ms
            + (offset + below(self.h(stream::CREATED, res, i), step.max(1))) as i64
    }

    /// When appointment `i` starts: when it was booked (created) plus a
    /// lead time, on a 15-minute slot between 8:00 and 17:00 US central.
    pub(crate) fn appointment_start(&self, i: u64) -> i64 {
        let h = self.h(stream::APPOINTMENT_START, Resource::Appointments, i);
        let pick = mix64(h);
        let lead_days = match below(h, 100) {
            // Short notice: within three weeks.
            0..45 => 1 + below(pick, 21),
            // A follow-up: three weeks to three months.
            45..75 => 21 + below(pick, 70),
            // A recall, about six months ahead.
            75..94 => 160 + below(pick, 50),
            // An annual visit, most of a year ahead.
            94..99 => 300 + below(pick, 64),
            // A long treatment's visit, well over a year ahead.
            _ => 380 + below(pick, 180),
        } as i64;
        let day = self
            .created(Resource::Appointments, i)
            .div_euclid(MS_PER_DAY)
            + lead_days;
        let slot = below(mix64(pick), 36) as i64;
        day * MS_PER_DAY + (13 * 60 + slot * 15) * 60_000
    }

    /// `lastModified` of record `i`, computed without the rest of the record.
    pub(crate) fn last_modified(&self, res: Resource, i: u64) -> i64 {
        let h = self.h(stream::LAST_MODIFIED, res, i);
        if i < self.legacy[res.index()] && h % 10 < 7 {
            return LEGACY_IMPORT_MS;
        }
        let created = self.created(res, i);
        let anchor = self.anchor_ms;
        match below(h >> 8, 100) {
            0..15 => {
                let n = self.count(res);
                let block = i / 256;
                let end = (block * 256 + 255).min(n.saturating_sub(1));
                let jitter = below(self.h(stream::CLUSTER, res, block), 20 * MS_PER_DAY as u64);
                (self.created(res, end) + 1000 + jitter as i64).min(anchor)
            }
            15..40 => created + below(mix64(h), (anchor - created).max(1) as u64) as i64,
            _ if res == Resource::Appointments => {
                // Touched last when the visit ended (checked out, broken,
                // cancelled), or when booked if it is still ahead.
                let start = self.appointment_start(i);
                if start < anchor {
                    (start + 30 * 60_000 + below(mix64(h), 7_200_000) as i64).min(anchor)
                } else {
                    created + below(mix64(h), 600_000) as i64
                }
            }
            _ => (created + below(mix64(h), 600_000) as i64).min(anchor),
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
        World::new(7, 0, size, TEST_DAY, "http://x/ascend-gateway/api".into())
    }

    #[test]
    fn last_modified_lies_in_the_past_and_clusters() {
        let w = world(Size::Small);
        let mut per_ms = std::collections::HashMap::<i64, u32>::new();
        for res in Resource::ALL {
            for i in 0..w.count(res) {
                let lm = w.last_modified(res, i);
                assert!((LEGACY_IMPORT_MS - 1000 * MS_PER_DAY..=w.anchor_ms()).contains(&lm));
                assert!(lm >= w.created(res, i), "{res:?} {i}");
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

    /// Appointments starting in `[from, to)` days after the anchor.
    fn appointments_between(w: &World, from: i64, to: i64) -> u64 {
        let (from, to) = (
            w.anchor_ms() + from * MS_PER_DAY,
            w.anchor_ms() + to * MS_PER_DAY,
        );
        (0..w.count(Resource::Appointments))
            .filter(|&i| (from..to).contains(&w.appointment_start(i)))
            .count() as u64
    }

    #[test]
    fn the_last_90_days_and_the_next_year_hold_a_practice_calendar() {
        for day in [TEST_DAY, crate::clock::days_from_civil(2024, 2, 29)] {
            let w = World::new(7, 0, Size::Small, day, "http://x/ascend-gateway/api".into());
            let n = w.count(Resource::Appointments);
            // About one appointment a day over seven years, at small size.
            let past = appointments_between(&w, -90, 0);
            let weeks_ahead = appointments_between(&w, 0, 30);
            let recalls = appointments_between(&w, 150, 220);
            let later = appointments_between(&w, 220, 366);
            assert!(past >= 40, "{past} of {n} in the last 90 days");
            assert!(weeks_ahead >= 8, "{weeks_ahead} in the next 30 days");
            let year = appointments_between(&w, 0, 366);
            assert!(year >= 30, "{year} in the next year");
            assert!(recalls >= 3, "{recalls} recalls about six months ahead");
            // Thinning out: the coming weeks are fuller than the far months.
            assert!(weeks_ahead * 4 > later * 5, "{weeks_ahead} vs {later}");
            // Legacy-band ones too: none starts more than 600 days ahead.
            assert_eq!(appointments_between(&w, -6000, 600), n);
            // Booked before they start, and no booking in the future.
            for i in 0..n {
                let created = w.created(Resource::Appointments, i);
                assert!(created < w.appointment_start(i));
                assert!(created < w.anchor_ms());
            }
        }
    }

    #[test]
    fn the_world_moves_with_its_anchor() {
        let shift = 400;
        let a = world(Size::Small);
        let b = World::new(
            7,
            0,
            Size::Small,
            TEST_DAY + shift,
            "http://x/ascend-gateway/api".into(),
        );
        let shift_ms = shift * MS_PER_DAY;
        assert_eq!(b.anchor_ms() - a.anchor_ms(), shift_ms);
        for res in Resource::ALL {
            assert_eq!(a.count(res), b.count(res));
            for i in (a.legacy[res.index()]..a.count(res)).step_by(3) {
                assert_eq!(a.id(res, i), b.id(res, i));
                assert_eq!(a.created(res, i) + shift_ms, b.created(res, i));
                assert_eq!(a.last_modified(res, i) + shift_ms, b.last_modified(res, i));
            }
        }
        for i in a.legacy[Resource::Appointments.index()]..a.count(Resource::Appointments) {
            assert_eq!(a.appointment_start(i) + shift_ms, b.appointment_start(i));
        }
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

    #[test]
    fn a_fixed_number_of_locations_each_with_patients_and_appointments() {
        for size in [Size::Small, Size::Medium] {
            let w = World::with_locations(7, 0, size, Some(10), TEST_DAY, "http://x".into());
            let default = World::new(7, 0, size, TEST_DAY, "http://x".into());
            assert_eq!(w.count(Resource::Locations), 10);
            assert_eq!(w.loc_weights, [6, 3, 2, 1, 6, 3, 2, 1, 6, 3]);
            assert_eq!(
                w.count(Resource::Operatories),
                10 * w.ops_per_location,
                "{size:?}"
            );
            // The volumes are the size's: more locations share them.
            for res in Resource::ALL {
                if !matches!(res, Resource::Locations | Resource::Operatories) {
                    assert_eq!(w.count(res), default.count(res), "{size:?} {res:?}");
                }
            }
            for res in [
                Resource::Patients,
                Resource::Appointments,
                Resource::Operatories,
            ] {
                let mut per_location = [0u64; 10];
                for i in 0..w.count(res) {
                    let l = w.location_of(res, i).unwrap_or(u64::MAX);
                    assert!(l < 10, "{res:?} {i} at location {l}");
                    per_location[l as usize] += 1;
                }
                assert!(
                    per_location.iter().all(|&n| n > 0),
                    "{size:?} {res:?} per location {per_location:?}"
                );
            }
        }
        let one = World::with_locations(7, 0, Size::Small, Some(1), TEST_DAY, "http://x".into());
        assert_eq!(one.count(Resource::Locations), 1);
        assert!(
            (0..one.count(Resource::Appointments))
                .all(|i| one.location_of(Resource::Appointments, i) == Some(0))
        );
    }

    /// Counts measured before `SimConfig::locations` existed: `None` must
    /// keep every seed's data as it was.
    #[test]
    fn no_fixed_number_of_locations_keeps_the_counts_of_before() {
        #[rustfmt::skip]
        let before: [(u64, u64, Size, [u64; RESOURCE_COUNT], u64); 12] = [
            (1, 0, Size::Small, [3, 6, 9, 321, 1605, 160, 481, 2407, 240, 40, 802], 3),
            (1, 0, Size::Medium, [4, 15, 16, 6420, 32100, 3210, 9630, 48150, 4815, 150, 16050], 4),
            (7, 0, Size::Tiny, [2, 3, 4, 12, 61, 6, 18, 91, 9, 10, 30], 2),
            (7, 0, Size::Small, [3, 6, 9, 306, 1530, 153, 459, 2295, 229, 40, 765], 3),
            (7, 0, Size::Medium, [4, 15, 16, 6120, 30600, 3060, 9180, 45900, 4590, 150, 15300], 4),
            (7, 0, Size::Large, [4, 38, 24, 61200, 306000, 30600, 91800, 459000, 45900, 300, 153000], 6),
            (7, 1, Size::Small, [3, 5, 9, 279, 1395, 139, 418, 2092, 209, 40, 697], 3),
            (42, 0, Size::Small, [3, 9, 9, 297, 1485, 148, 445, 2227, 222, 40, 742], 3),
            (42, 0, Size::Large, [4, 56, 24, 59400, 297000, 29700, 89100, 445500, 44550, 300, 148500], 6),
            (42, 3, Size::Tiny, [1, 5, 2, 10, 54, 5, 16, 81, 8, 10, 27], 2),
            (42, 3, Size::Small, [2, 8, 6, 273, 1365, 136, 409, 2047, 204, 40, 682], 3),
            (42, 3, Size::Medium, [3, 23, 12, 5460, 27300, 2730, 8190, 40950, 4095, 150, 13650], 4),
        ];
        for (seed, org, size, counts, ops) in before {
            let w = World::with_locations(seed, org, size, None, TEST_DAY, "http://x".into());
            assert_eq!(w.counts, counts, "seed {seed}, org {org}, {size:?}");
            assert_eq!(w.ops_per_location, ops, "seed {seed}, org {org}, {size:?}");
            assert_eq!(
                World::new(seed, org, size, TEST_DAY, "http://x".into()).counts,
                counts
            );
        }
    }
}
