//! An organization's live data: the generated [`World`] plus an overlay of
//! mutations, and the query engine that pages through both.
//!
//! The overlay per resource is small and holds only what changed:
//! - `deleted`: generated ids that no longer exist;
//! - `updated`: generated ids whose record was replaced (full JSON);
//! - `created`: new records, all with ids above every generated id (new ids
//!   only grow, as in the real API).
//!
//! Reading merges the two in ascending numeric id order. A query is planned
//! first: `id` clauses and `lastId` become an id range (a binary-search-free
//! index range, see [`crate::ids`]), clauses on `lastModified`, the location
//! reference and `patient.id` are answered from the world's cheap
//! attributes, and only the remaining clauses materialise records. A page is
//! therefore O(page) when nothing but ids constrain it.
//!
//! `meta.pagination.total` is arithmetic (range size minus deletes plus
//! creates) when only ids constrain the query; otherwise it is counted once
//! per (resource, filter, data version) and cached, so paging through a
//! filtered result does not rescan the data for every page.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write as _;
use std::sync::Mutex;

use serde_json::Value;

use crate::bad;
use crate::clock::Ts;
use crate::control::BadRecordKind;
use crate::filter::{Clause, Op};
use crate::records::generate;
use crate::resource::{RESOURCE_COUNT, Resource};
use crate::world::World;

/// A record held in the overlay, as the full JSON that is served.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub(crate) id: u64,
    pub(crate) last_modified: i64,
    pub(crate) value: Value,
}

impl Stored {
    /// Wraps a record, setting its `id` and `lastModified` fields.
    pub(crate) fn new(id: u64, last_modified: i64, mut value: Value) -> Self {
        if let Value::Object(m) = &mut value {
            m.insert("id".into(), Value::String(id.to_string()));
            m.insert(
                "lastModified".into(),
                Value::String(Ts(last_modified).to_string()),
            );
        }
        Self {
            id,
            last_modified,
            value,
        }
    }
}

/// The overlay of one resource.
#[derive(Debug, Default)]
pub(crate) struct ResourceData {
    pub(crate) deleted: BTreeSet<u64>,
    pub(crate) updated: HashMap<u64, Stored>,
    pub(crate) created: BTreeMap<u64, Stored>,
    /// Records served bad (the control API's bad-records), by id.
    pub(crate) bad: BTreeMap<u64, BadRecordKind>,
    /// The next id a created record gets.
    pub(crate) next_id: u64,
    /// Bumped on every change; keys the totals cache.
    pub(crate) version: u64,
}

/// A record reached while reading: generated (by index) or from the overlay.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rec<'a> {
    Gen(u64),
    Stored(&'a Stored),
}

/// Something written to a patient that is not itself a synced resource
/// (a note, a communication, a call log, a document).
#[derive(Clone, Debug)]
pub(crate) struct PatientWrite {
    pub(crate) kind: &'static str,
    pub(crate) patient_id: u64,
    pub(crate) value: Value,
}

/// An organization's mutable data.
#[derive(Debug)]
pub(crate) struct OrgData {
    res: Vec<ResourceData>,
    /// Never less than any `lastModified` held: writes stamp at least this.
    pub(crate) max_last_modified: i64,
    pub(crate) patient_writes: Vec<PatientWrite>,
    pub(crate) next_write_id: u64,
}

impl OrgData {
    pub(crate) fn new(world: &World) -> Self {
        let res = Resource::ALL
            .iter()
            .map(|r| ResourceData {
                next_id: world.space(*r).max_id() + 10,
                ..ResourceData::default()
            })
            .collect();
        Self {
            res,
            max_last_modified: world.anchor_ms(),
            patient_writes: Vec::new(),
            next_write_id: 9_100_000_000_000,
        }
    }

    pub(crate) fn of(&self, res: Resource) -> &ResourceData {
        &self.res[res.index()]
    }

    pub(crate) fn of_mut(&mut self, res: Resource) -> &mut ResourceData {
        &mut self.res[res.index()]
    }

    /// The millisecond a write happening now is stamped with: wall-clock
    /// now, but never less than any existing `lastModified`.
    pub(crate) fn stamp(&mut self) -> i64 {
        let now = crate::clock::now_ms().max(self.max_last_modified);
        self.max_last_modified = now;
        now
    }
}

const _: () = assert!(RESOURCE_COUNT == Resource::ALL.len());

/// Which fields a page carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fields {
    All,
    IdOnly,
    Only(Vec<String>),
}

impl Fields {
    /// Parses `responseFields`: absent or `ALL` = everything, `id` = ids only,
    /// otherwise a comma-separated list of top-level fields.
    pub(crate) fn parse(s: Option<&str>) -> Self {
        let Some(s) = s.map(str::trim).filter(|s| !s.is_empty()) else {
            return Fields::All;
        };
        if s.eq_ignore_ascii_case("all") {
            return Fields::All;
        }
        let list: Vec<String> = s
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(String::from)
            .collect();
        if list.len() == 1 && list[0] == "id" {
            Fields::IdOnly
        } else {
            Fields::Only(list)
        }
    }
}

/// Which of the world's cheap attributes a clause reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cheap {
    Id,
    LastModified,
    Location,
    Patient,
}

#[derive(Clone, Debug)]
struct Planned {
    clause: Clause,
    cheap: Option<Cheap>,
}

/// A query reduced to an id range plus the clauses left to evaluate.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    lo: u64,
    hi: u64,
    ids: Option<Vec<u64>>,
    rest: Vec<Planned>,
}

impl Plan {
    /// Every record.
    pub(crate) fn all() -> Self {
        Self {
            lo: 0,
            hi: u64::MAX,
            ids: None,
            rest: Vec::new(),
        }
    }

    /// Plans parsed clauses against `res`.
    pub(crate) fn new(res: Resource, clauses: Vec<Clause>) -> Self {
        let mut plan = Self::all();
        for mut clause in clauses {
            // For patients, `location` is an alias of `preferredLocation`.
            if res == Resource::Patients && clause.path.first().is_some_and(|f| f == "location") {
                clause.path[0] = "preferredLocation".into();
            }
            let path: Vec<&str> = clause.path.iter().map(String::as_str).collect();
            if path == ["id"] && !clause.values.iter().any(|v| v.id.is_none()) {
                let first = clause.values.first().and_then(|v| v.id);
                match (clause.op, first) {
                    (Op::Eq, Some(v)) => {
                        plan.lo = plan.lo.max(v);
                        plan.hi = plan.hi.min(v);
                        continue;
                    }
                    (Op::Gt, Some(v)) => {
                        match v.checked_add(1) {
                            Some(v) => plan.lo = plan.lo.max(v),
                            None => plan.set_empty(),
                        }
                        continue;
                    }
                    (Op::Ge, Some(v)) => {
                        plan.lo = plan.lo.max(v);
                        continue;
                    }
                    (Op::Lt, Some(v)) => {
                        match v.checked_sub(1) {
                            Some(v) => plan.hi = plan.hi.min(v),
                            None => plan.set_empty(),
                        }
                        continue;
                    }
                    (Op::Le, Some(v)) => {
                        plan.hi = plan.hi.min(v);
                        continue;
                    }
                    (Op::In, _) => {
                        let mut list: Vec<u64> =
                            clause.values.iter().filter_map(|v| v.id).collect();
                        list.sort_unstable();
                        list.dedup();
                        if let Some(prev) = &plan.ids {
                            list.retain(|id| prev.binary_search(id).is_ok());
                        }
                        plan.ids = Some(list);
                        continue;
                    }
                    _ => {}
                }
            }
            let cheap = match path.as_slice() {
                ["id"] => Some(Cheap::Id),
                ["lastModified"] => Some(Cheap::LastModified),
                [f, "id"] if Some(*f) == res.location_field() => Some(Cheap::Location),
                ["patient", "id"] if res.has_patient() => Some(Cheap::Patient),
                _ => None,
            };
            plan.rest.push(Planned { clause, cheap });
        }
        // Cheap clauses first, so most records are rejected before materialising.
        plan.rest.sort_by_key(|p| p.cheap.is_none());
        plan
    }

    fn set_empty(&mut self) {
        self.lo = 1;
        self.hi = 0;
    }

    fn is_arithmetic(&self) -> bool {
        self.rest.is_empty()
    }
}

/// Read access to one resource of one organization.
pub(crate) struct View<'a> {
    pub(crate) world: &'a World,
    pub(crate) data: &'a ResourceData,
    pub(crate) res: Resource,
}

impl<'a> View<'a> {
    pub(crate) fn new(world: &'a World, data: &'a OrgData, res: Resource) -> Self {
        Self {
            world,
            data: data.of(res),
            res,
        }
    }

    /// The live record with this id.
    pub(crate) fn get(&self, id: u64) -> Option<Rec<'a>> {
        if let Some(s) = self.data.created.get(&id) {
            return Some(Rec::Stored(s));
        }
        let i = self.world.space(self.res).index_of(id)?;
        if self.data.deleted.contains(&id) {
            return None;
        }
        Some(match self.data.updated.get(&id) {
            Some(s) => Rec::Stored(s),
            None => Rec::Gen(i),
        })
    }

    pub(crate) fn id_of(&self, rec: Rec<'_>) -> u64 {
        match rec {
            Rec::Gen(i) => self.world.id(self.res, i),
            Rec::Stored(s) => s.id,
        }
    }

    pub(crate) fn last_modified_of(&self, rec: Rec<'_>) -> i64 {
        match rec {
            Rec::Gen(i) => self.world.last_modified(self.res, i),
            Rec::Stored(s) => s.last_modified,
        }
    }

    /// The record as a JSON value (materialises a generated record).
    pub(crate) fn to_value(&self, rec: Rec<'_>) -> Value {
        match rec {
            Rec::Gen(i) => {
                serde_json::to_value(generate(self.world, self.res, i)).unwrap_or(Value::Null)
            }
            Rec::Stored(s) => s.value.clone(),
        }
    }

    /// Serialises the record, as served, onto `buf`.
    pub(crate) fn write(
        &self,
        buf: &mut Vec<u8>,
        rec: Rec<'_>,
        fields: &Fields,
    ) -> serde_json::Result<()> {
        match (fields, rec) {
            (Fields::IdOnly, _) => {
                let _ = write!(buf, "{{\"id\":\"{}\"}}", self.id_of(rec));
                Ok(())
            }
            (Fields::All, Rec::Gen(i)) => {
                serde_json::to_writer(&mut *buf, &generate(self.world, self.res, i))
            }
            (Fields::All, Rec::Stored(s)) => serde_json::to_writer(&mut *buf, &s.value),
            (Fields::Only(list), _) => {
                let full = self.to_value(rec);
                let mut out = serde_json::Map::new();
                for f in list {
                    if let Some(v) = full.get(f.as_str()) {
                        out.insert(f.clone(), v.clone());
                    }
                }
                serde_json::to_writer(&mut *buf, &out)
            }
        }
    }

    /// Serialises the record as the API serves it onto `buf`: as
    /// [`View::write`], but a record made bad is served bad.
    pub(crate) fn write_served(
        &self,
        buf: &mut Vec<u8>,
        rec: Rec<'_>,
        fields: &Fields,
    ) -> serde_json::Result<()> {
        if self.data.bad.is_empty() {
            return self.write(buf, rec, fields);
        }
        let id = self.id_of(rec);
        let kind = match self.data.bad.get(&id) {
            None | Some(BadRecordKind::IdBeyondI64) => return self.write(buf, rec, fields),
            Some(kind) => *kind,
        };
        if *fields == Fields::IdOnly {
            buf.extend_from_slice(bad::id_only(id, Some(kind)).as_bytes());
            return Ok(());
        }
        let mut value = self.to_value(rec);
        bad::corrupt(&mut value, id, kind);
        if let Fields::Only(list) = fields {
            let mut out = serde_json::Map::new();
            for f in list {
                if let Some(v) = value.get(f.as_str()) {
                    out.insert(f.clone(), v.clone());
                }
            }
            value = Value::Object(out);
        }
        let start = buf.len();
        serde_json::to_writer(&mut *buf, &value)?;
        bad::finish(buf, start);
        Ok(())
    }

    fn matches(&self, rec: Rec<'_>, plan: &Plan) -> bool {
        match rec {
            Rec::Stored(s) => plan.rest.iter().all(|p| p.clause.matches_value(&s.value)),
            Rec::Gen(i) => {
                let mut value: Option<Value> = None;
                plan.rest.iter().all(|p| {
                    let w = self.world;
                    match p.cheap {
                        Some(Cheap::Id) => p.clause.matches_id(Some(w.id(self.res, i))),
                        Some(Cheap::LastModified) => {
                            p.clause.matches_instant(w.last_modified(self.res, i))
                        }
                        Some(Cheap::Location) => p.clause.matches_id(
                            w.location_of(self.res, i)
                                .map(|l| w.id(Resource::Locations, l)),
                        ),
                        Some(Cheap::Patient) => p.clause.matches_id(
                            w.patient_of(self.res, i)
                                .map(|x| w.id(Resource::Patients, x)),
                        ),
                        None => {
                            let v = value.get_or_insert_with(|| self.to_value(rec));
                            p.clause.matches_value(v)
                        }
                    }
                })
            }
        }
    }

    /// Calls `f` on every live record matching `plan` with an id `>= from`,
    /// in ascending id order, until `f` returns `false`.
    pub(crate) fn scan(&self, plan: &Plan, from: u64, mut f: impl FnMut(u64, Rec<'a>) -> bool) {
        let lo = plan.lo.max(from);
        let hi = plan.hi;
        if lo > hi {
            return;
        }
        if let Some(ids) = &plan.ids {
            let start = ids.partition_point(|id| *id < lo);
            for id in ids[start..].iter().take_while(|id| **id <= hi) {
                if let Some(rec) = self.get(*id)
                    && self.matches(rec, plan)
                    && !f(*id, rec)
                {
                    return;
                }
            }
            return;
        }
        let space = self.world.space(self.res);
        let (a, b) = space.index_range(lo, hi);
        let check_deleted = !self.data.deleted.is_empty();
        let check_updated = !self.data.updated.is_empty();
        for i in a..b {
            let id = space.id(i);
            if check_deleted && self.data.deleted.contains(&id) {
                continue;
            }
            let rec = match check_updated.then(|| self.data.updated.get(&id)).flatten() {
                Some(s) => Rec::Stored(s),
                None => Rec::Gen(i),
            };
            if self.matches(rec, plan) && !f(id, rec) {
                return;
            }
        }
        for (id, s) in self.data.created.range(lo..=hi) {
            let rec = Rec::Stored(s);
            if self.matches(rec, plan) && !f(*id, rec) {
                return;
            }
        }
    }

    /// Live records in `lo..=hi` without filtering, by arithmetic.
    fn count_range(&self, lo: u64, hi: u64) -> u64 {
        if lo > hi {
            return 0;
        }
        let (a, b) = self.world.space(self.res).index_range(lo, hi);
        let deleted = self.data.deleted.range(lo..=hi).count() as u64;
        (b - a).saturating_sub(deleted) + self.data.created.range(lo..=hi).count() as u64
    }

    /// Number of live records matching the plan (ignoring `lastId`).
    pub(crate) fn total(&self, plan: &Plan, cache: &TotalsCache, key: &str) -> u64 {
        if plan.is_arithmetic() {
            if let Some(ids) = &plan.ids {
                return ids
                    .iter()
                    .filter(|id| (plan.lo..=plan.hi).contains(*id) && self.get(**id).is_some())
                    .count() as u64;
            }
            return self.count_range(plan.lo, plan.hi);
        }
        if let Some(n) = cache.get(self.res, key, self.data.version) {
            return n;
        }
        let mut n = 0;
        self.scan(plan, 0, |_, _| {
            n += 1;
            true
        });
        cache.put(self.res, key, self.data.version, n);
        n
    }

    /// The id of the `k`-th (0-based) live record in `lo..=hi`, by
    /// arithmetic over the deleted set (for unfiltered offset paging).
    fn nth_id(&self, lo: u64, hi: u64, k: u64) -> Option<u64> {
        let space = self.world.space(self.res);
        let (a, b) = space.index_range(lo, hi);
        let deleted_in = |i: u64| self.data.deleted.range(space.id(a)..=space.id(i)).count() as u64;
        let gen_live = if b > a {
            (b - a).saturating_sub(deleted_in(b - 1))
        } else {
            0
        };
        if k < gen_live {
            // Smallest i with i = a + k + deleted(a..=i): that record is live
            // and has exactly k live records before it.
            let mut i = a + k;
            loop {
                let next = a + k + deleted_in(i);
                if next == i || next >= b {
                    return (next < b).then(|| space.id(next));
                }
                i = next;
            }
        }
        self.data
            .created
            .range(lo..=hi)
            .nth((k - gen_live) as usize)
            .map(|(id, _)| *id)
    }
}

/// Cached totals per (resource, filter), valid for one data version.
#[derive(Debug, Default)]
pub(crate) struct TotalsCache {
    map: Mutex<HashMap<(Resource, String), (u64, u64)>>,
}

impl TotalsCache {
    fn get(&self, res: Resource, key: &str, version: u64) -> Option<u64> {
        let map = self.map.lock().ok()?;
        map.get(&(res, key.to_string()))
            .filter(|(v, _)| *v == version)
            .map(|(_, n)| *n)
    }

    fn put(&self, res: Resource, key: &str, version: u64, total: u64) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= 4096 {
                map.clear();
            }
            map.insert((res, key.to_string()), (version, total));
        }
    }
}

/// A list request, parsed.
#[derive(Debug)]
pub(crate) struct ListQuery {
    /// The filter text, the totals cache key.
    pub(crate) filter_key: String,
    pub(crate) plan: Plan,
    pub(crate) page: u64,
    pub(crate) page_size: u64,
    pub(crate) last_id: Option<u64>,
    pub(crate) fields: Fields,
    /// A gateway's cap on records served per page (None: `page_size`).
    pub(crate) serve_cap: Option<u64>,
}

/// Serialises one page in the list envelope.
pub(crate) fn list_page(
    view: &View<'_>,
    q: &ListQuery,
    cache: &TotalsCache,
) -> serde_json::Result<Vec<u8>> {
    let total = view.total(&q.plan, cache, &q.filter_key);
    let mut buf = Vec::with_capacity(64 + q.page_size as usize * 700);
    buf.extend_from_slice(b"{\"data\":[");
    let from = match q.last_id {
        Some(last) => last.checked_add(1),
        None if q.page <= 1 => Some(0),
        None => {
            let skip = (q.page - 1).saturating_mul(q.page_size);
            if q.plan.is_arithmetic() && q.plan.ids.is_none() {
                view.nth_id(q.plan.lo, q.plan.hi, skip)
            } else {
                let mut seen = 0u64;
                let mut start = None;
                view.scan(&q.plan, 0, |id, _| {
                    if seen == skip {
                        start = Some(id);
                        return false;
                    }
                    seen += 1;
                    true
                });
                start
            }
        }
    };
    let mut n = 0u64;
    let serve = q.serve_cap.map_or(q.page_size, |cap| cap.min(q.page_size));
    let mut result = Ok(());
    if let Some(from) = from {
        view.scan(&q.plan, from, |_, rec| {
            if n > 0 {
                buf.push(b',');
            }
            if let Err(e) = view.write_served(&mut buf, rec, &q.fields) {
                result = Err(e);
                return false;
            }
            n += 1;
            n < serve
        });
    }
    result?;
    let _ = write!(
        buf,
        "],\"warnings\":[],\"errors\":[],\"meta\":{{\"pagination\":{{\"page\":{},\"pageSize\":{},\"total\":{}}}}}}}",
        q.page.max(1),
        q.page_size,
        total
    );
    Ok(buf)
}

/// Serialises the snapshot of a resource: every live record's id and
/// `lastModified`, with the full record when `full`.
pub(crate) fn snapshot(view: &View<'_>, full: bool) -> serde_json::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(1 << 16);
    buf.push(b'[');
    let mut first = true;
    let mut result = Ok(());
    view.scan(&Plan::all(), 0, |id, rec| {
        if !first {
            buf.push(b',');
        }
        first = false;
        let _ = write!(
            buf,
            "{{\"id\":\"{id}\",\"lastModified\":\"{}\"",
            Ts(view.last_modified_of(rec))
        );
        if full {
            buf.extend_from_slice(b",\"record\":");
            if let Err(e) = view.write(&mut buf, rec, &Fields::All) {
                result = Err(e);
                return false;
            }
        }
        buf.push(b'}');
        true
    });
    result?;
    buf.push(b']');
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Size;
    use crate::filter::parse;

    fn setup() -> (World, OrgData) {
        let w = World::new(
            11,
            0,
            Size::Small,
            crate::world::TEST_DAY,
            "http://h/ascend-gateway/api".into(),
        );
        let d = OrgData::new(&w);
        (w, d)
    }

    fn ids(view: &View<'_>, plan: &Plan, from: u64) -> Vec<u64> {
        let mut out = Vec::new();
        view.scan(plan, from, |id, _| {
            out.push(id);
            true
        });
        out
    }

    fn plan(res: Resource, filter: &str) -> Plan {
        match parse(filter) {
            Ok(c) => Plan::new(res, c),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn scan_merges_overlay_in_id_order() {
        let (w, mut d) = setup();
        let res = Resource::Patients;
        let g1 = w.id(res, 1);
        let g5 = w.id(res, 5);
        let new_id = d.of(res).next_id;
        let r = d.of_mut(res);
        r.deleted.insert(g1);
        r.updated.insert(
            g5,
            Stored::new(g5, 5, serde_json::json!({"firstName": "Upd"})),
        );
        r.created.insert(
            new_id,
            Stored::new(new_id, 6, serde_json::json!({"firstName": "New"})),
        );
        let view = View::new(&w, &d, res);
        let all = ids(&view, &Plan::all(), 0);
        assert_eq!(all.len() as u64, w.count(res));
        assert!(!all.contains(&g1) && all.contains(&g5));
        assert_eq!(all.last(), Some(&new_id));
        assert!(all.windows(2).all(|p| p[0] < p[1]));
        let cache = TotalsCache::default();
        assert_eq!(view.total(&Plan::all(), &cache, ""), w.count(res));
        assert_eq!(
            view.total(&plan(res, "firstName==Upd"), &cache, "firstName==Upd"),
            1
        );
        // nth_id agrees with a plain walk at every position, over the whole
        // id space and over a sub-range that starts and ends inside it.
        for (k, id) in all.iter().enumerate() {
            assert_eq!(view.nth_id(0, u64::MAX, k as u64), Some(*id), "k={k}");
        }
        assert_eq!(view.nth_id(0, u64::MAX, all.len() as u64), None);
        let (lo, hi) = (w.id(res, 0) + 1, w.id(res, 40));
        let sub: Vec<u64> = all
            .iter()
            .copied()
            .filter(|id| (lo..=hi).contains(id))
            .collect();
        for (k, id) in sub.iter().enumerate() {
            assert_eq!(view.nth_id(lo, hi, k as u64), Some(*id), "sub k={k}");
        }
        assert_eq!(view.nth_id(lo, hi, sub.len() as u64), None);
    }

    #[test]
    fn id_plans_are_ranges_and_cheap_filters_agree_with_json() {
        let (w, d) = setup();
        // The cheap attributes give exactly what filtering the materialised
        // records gives, for every resource that has them.
        let slow_ids = |view: &View<'_>, res: Resource, field: &str, id: u64| -> Vec<u64> {
            (0..w.count(res))
                .filter(|i| view.to_value(Rec::Gen(*i))[field]["id"] == id.to_string().as_str())
                .map(|i| w.id(res, i))
                .collect()
        };
        let patient = w.id(Resource::Patients, 17);
        for res in Resource::ALL {
            let view = View::new(&w, &d, res);
            if let Some(field) = res.location_field() {
                for l in 0..w.count(Resource::Locations) {
                    let loc = w.id(Resource::Locations, l);
                    let p = plan(res, &format!("location.id=={loc}"));
                    assert!(p.rest.iter().all(|c| c.cheap == Some(Cheap::Location)));
                    let cheap = ids(&view, &p, 0);
                    assert!(!cheap.is_empty(), "{res:?} has records at every location");
                    assert_eq!(cheap, slow_ids(&view, res, field, loc), "{res:?}");
                }
            }
            if res.has_patient() {
                let p = plan(res, &format!("patient.id=={patient}"));
                assert!(p.rest.iter().all(|c| c.cheap == Some(Cheap::Patient)));
                assert_eq!(
                    ids(&view, &p, 0),
                    slow_ids(&view, res, "patient", patient),
                    "{res:?}"
                );
            }
        }
        let view = View::new(&w, &d, Resource::Appointments);
        let p = plan(Resource::Appointments, "id>=999,id<=1000");
        assert!(p.is_arithmetic());
        assert_eq!(ids(&view, &p, 0), vec![999, 1000]);
        assert_eq!(view.total(&p, &TotalsCache::default(), "x"), 2);
        let p = plan(Resource::Appointments, "id->[1000,999,5,1000]");
        assert_eq!(ids(&view, &p, 0), vec![999, 1000]);
        assert_eq!(ids(&view, &p, 1000), vec![1000]);
        assert!(ids(&view, &plan(Resource::Appointments, "id<0"), 0).is_empty());
    }
}
