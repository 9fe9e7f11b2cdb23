//! The control API's mutate: creates, updates and deletes that look like a
//! practice's day, deterministic given the request seed and current state.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::clock::{Date, MS_PER_DAY, Ts};
use crate::control::{MutateRequest, MutateResult, ResourceChanges};
use crate::hash::{SplitMix, hash3, weighted};
use crate::records::ref_value;
use crate::resource::Resource;
use crate::store::{OrgData, Stored, View};
use crate::tables;
use crate::world::World;

const MUTATE_STREAM: u64 = 0x3D7;

/// Applies a mutate batch. Every record created or updated gets the same
/// `lastModified` millisecond.
pub(crate) fn mutate(
    world: &World,
    data: &mut OrgData,
    req: &MutateRequest,
) -> Result<MutateResult, String> {
    let mut rng = SplitMix::new(hash3(req.seed, MUTATE_STREAM, world.seed));
    let mut plan = [[0usize; 3]; Resource::ALL.len()];
    match &req.resource {
        Some(name) => {
            let res =
                Resource::from_path(name).ok_or_else(|| format!("unknown resource '{name}'"))?;
            plan[res.index()] = [req.creates, req.updates, req.deletes];
        }
        None => {
            let sizes: Vec<u64> = Resource::ALL.iter().map(|r| world.count(*r)).collect();
            let no_locations: Vec<u64> = Resource::ALL
                .iter()
                .map(|r| {
                    if *r == Resource::Locations {
                        0
                    } else {
                        world.count(*r)
                    }
                })
                .collect();
            for (kind, n) in [req.creates, req.updates, req.deletes]
                .into_iter()
                .enumerate()
            {
                let weights = if kind == 2 { &no_locations } else { &sizes };
                for _ in 0..n {
                    plan[weighted(rng.next_u64(), weights)][kind] += 1;
                }
            }
        }
    }
    let stamp = data.stamp();
    let mut result = MutateResult {
        last_modified: Some(Ts(stamp).to_string()),
        ..MutateResult::default()
    };
    for res in Resource::ALL {
        let [c, u, d] = plan[res.index()];
        if c + u + d == 0 {
            continue;
        }
        let changes = apply(world, data, res, [c, u, d], &mut rng, stamp);
        result.created.extend(changes.created.iter().cloned());
        result.updated.extend(changes.updated.iter().cloned());
        result.deleted.extend(changes.deleted.iter().cloned());
        result.by_resource.insert(res.path().to_string(), changes);
    }
    Ok(result)
}

/// A live id picked at random (may fail; callers retry).
fn pick_live(world: &World, data: &OrgData, res: Resource, rng: &mut SplitMix) -> Option<u64> {
    let rd = data.of(res);
    let n = world.count(res);
    let r = rng.below(n + rd.created.len() as u64);
    if r < n {
        let id = world.id(res, r);
        return (!rd.deleted.contains(&id)).then_some(id);
    }
    let (first, last) = (*rd.created.keys().next()?, *rd.created.keys().next_back()?);
    let probe = first + rng.below(last - first + 1);
    rd.created.range(probe..).next().map(|(id, _)| *id)
}

fn live_count(world: &World, data: &OrgData, res: Resource) -> usize {
    let rd = data.of(res);
    (world.count(res) as usize).saturating_sub(rd.deleted.len()) + rd.created.len()
}

fn apply(
    world: &World,
    data: &mut OrgData,
    res: Resource,
    [creates, updates, deletes]: [usize; 3],
    rng: &mut SplitMix,
    stamp: i64,
) -> ResourceChanges {
    let mut out = ResourceChanges::default();
    let mut touched = HashSet::new();
    for _ in 0..creates {
        let template = {
            let n = world.count(res);
            if n == 0 {
                json!({})
            } else {
                View::new(world, data, res).to_value(crate::store::Rec::Gen(rng.below(n)))
            }
        };
        let rd = data.of_mut(res);
        let id = rd.next_id;
        rd.next_id += 1 + rng.below(4);
        let mut value = template;
        freshen(world, res, id, &mut value, rng, stamp);
        rd.created.insert(id, Stored::new(id, stamp, value));
        touched.insert(id);
        out.created.push(id.to_string());
    }
    let pick_untouched =
        |data: &OrgData, want: usize, touched: &HashSet<u64>, rng: &mut SplitMix| {
            let available = live_count(world, data, res).saturating_sub(touched.len());
            let mut picked = Vec::new();
            let mut seen = HashSet::new();
            let mut attempts = want.min(available) * 30 + 1000;
            while picked.len() < want.min(available) && attempts > 0 {
                attempts -= 1;
                if let Some(id) = pick_live(world, data, res, rng)
                    && !touched.contains(&id)
                    && seen.insert(id)
                {
                    picked.push(id);
                }
            }
            picked
        };
    for id in pick_untouched(data, updates, &touched, rng) {
        let view = View::new(world, data, res);
        let Some(rec) = view.get(id) else { continue };
        let mut value = view.to_value(rec);
        modify(world, res, &mut value, rng, stamp);
        let rd = data.of_mut(res);
        let stored = Stored::new(id, stamp, value);
        if let Some(slot) = rd.created.get_mut(&id) {
            *slot = stored;
        } else {
            rd.updated.insert(id, stored);
        }
        touched.insert(id);
        out.updated.push(id.to_string());
    }
    for id in pick_untouched(data, deletes, &touched, rng) {
        let rd = data.of_mut(res);
        if rd.created.remove(&id).is_none() {
            rd.updated.remove(&id);
            rd.deleted.insert(id);
        }
        out.deleted.push(id.to_string());
    }
    if !(out.created.is_empty() && out.updated.is_empty() && out.deleted.is_empty()) {
        data.of_mut(res).version += 1;
    }
    out
}

fn set(value: &mut Value, key: &str, v: Value) {
    if let Value::Object(m) = value {
        m.insert(key.to_string(), v);
    }
}

fn name(
    rng: &mut SplitMix,
    table: &[(&'static str, &'static str)],
) -> (&'static str, &'static str) {
    rng.pick(table).copied().unwrap_or(("", ""))
}

/// Makes a template record look new.
fn freshen(world: &World, res: Resource, id: u64, v: &mut Value, rng: &mut SplitMix, stamp: i64) {
    let today = Date::of_ms(stamp).to_string();
    match res {
        Resource::Patients => {
            let (first, fs) = name(rng, tables::FIRST_NAMES);
            let (last, ls) = name(rng, tables::LAST_NAMES);
            set(v, "firstName", json!(first));
            set(v, "lastName", json!(last));
            set(v, "preferredName", Value::Null);
            set(v, "patientStatus", json!("ACTIVE"));
            set(
                v,
                "emailAddress",
                json!(format!("{fs}.{ls}{}@example.com", rng.below(1000))),
            );
            set(v, "firstVisitDate", Value::Null);
            set(v, "chartNumber", json!(format!("N{id}")));
            set(
                v,
                "primaryGuarantor",
                ref_value(&world.api_base, Resource::Patients, id),
            );
        }
        Resource::Appointments => {
            let day = stamp.div_euclid(MS_PER_DAY) + 1 + rng.below(30) as i64;
            let start = day * MS_PER_DAY + (13 * 60 + rng.below(36) as i64 * 15) * 60_000;
            set(v, "start", json!(Ts(start).to_string()));
            set(v, "end", json!(Ts(start + 60 * 60_000).to_string()));
            set(v, "duration", json!(60));
            set(v, "status", json!("UNCONFIRMED"));
            set(v, "note", Value::Null);
        }
        Resource::PatientProcedures => {
            set(v, "status", json!("PLANNED"));
            set(v, "visit", Value::Null);
            set(v, "date", Value::Null);
        }
        Resource::TxCases => {
            set(v, "status", json!("NEW"));
            set(v, "createdDate", json!(today));
        }
        Resource::Visits | Resource::Transactions => set(v, "date", json!(today)),
        Resource::PatientInsurancePlans => set(v, "effectiveDate", json!(today)),
        Resource::Providers => {
            set(v, "firstName", json!(name(rng, tables::FIRST_NAMES).0));
            set(v, "lastName", json!(name(rng, tables::LAST_NAMES).0));
            set(v, "active", json!(true));
        }
        Resource::Operatories => set(v, "name", json!(format!("Op {}", 100 + rng.below(900)))),
        Resource::Locations => set(v, "name", json!(format!("New Location {id}"))),
        Resource::GlobalInsuranceCarriers => {
            set(
                v,
                "name",
                json!(format!("{} Plus", rng.pick_str(tables::CARRIER_BASES))),
            );
        }
    }
}

/// Changes a record the way daily work does; one update in ten changes
/// nothing but `lastModified`.
fn modify(world: &World, res: Resource, v: &mut Value, rng: &mut SplitMix, stamp: i64) {
    if rng.percent(10) {
        return;
    }
    match res {
        Resource::Patients => match rng.below(5) {
            0 => {
                let email = if rng.percent(20) {
                    Value::Null
                } else {
                    json!(format!("updated{}@example.com", rng.below(100_000)))
                };
                set(v, "emailAddress", email);
            }
            1 => set(
                v,
                "phones",
                json!([{"type": "MOBILE", "number": format!("(512) 555-{:04}", rng.below(10_000))}]),
            ),
            2 => set(v, "lastName", json!(name(rng, tables::LAST_NAMES).0)),
            3 => set(
                v,
                "preferredName",
                json!(rng.pick_str(tables::PREFERRED_NAMES)),
            ),
            _ => {
                let active = v.get("patientStatus").and_then(Value::as_str) == Some("ACTIVE");
                set(
                    v,
                    "patientStatus",
                    json!(if active { "INACTIVE" } else { "ACTIVE" }),
                );
            }
        },
        Resource::Appointments => match rng.below(3) {
            0 | 1 => {
                let current = v
                    .get("status")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let choices: Vec<&str> = [
                    "UNCONFIRMED",
                    "CONFIRMED",
                    "LEFT_MESSAGE",
                    "CHECKED_IN",
                    "COMPLETE",
                    "BROKEN",
                    "CANCELLED",
                ]
                .into_iter()
                .filter(|s| *s != current)
                .collect();
                set(v, "status", json!(rng.pick_str(&choices)));
            }
            _ => {
                let start = stamp.div_euclid(MS_PER_DAY) * MS_PER_DAY
                    + (1 + rng.below(14) as i64) * MS_PER_DAY;
                let duration = v.get("duration").and_then(Value::as_i64).unwrap_or(60);
                set(v, "start", json!(Ts(start).to_string()));
                set(v, "end", json!(Ts(start + duration * 60_000).to_string()));
                set(v, "note", json!("Rescheduled"));
            }
        },
        Resource::PatientProcedures => {
            if rng.percent(50) {
                set(v, "status", json!("COMPLETED"));
                set(v, "date", json!(Date::of_ms(stamp).to_string()));
            } else {
                let fee = v.get("fee").and_then(Value::as_f64).unwrap_or(100.0);
                set(v, "fee", json!(((fee * 1.05) * 100.0).round() / 100.0));
            }
        }
        Resource::TxCases => {
            set(
                v,
                "status",
                json!(rng.pick_str(&["PROPOSED", "ACCEPTED", "REJECTED", "COMPLETED"])),
            );
        }
        Resource::Transactions => set(
            v,
            "description",
            json!(rng.pick_str(tables::TRANSACTION_DESCRIPTIONS)),
        ),
        Resource::PatientInsurancePlans => {
            set(
                v,
                "groupNumber",
                json!(format!("{:06}", rng.below(1_000_000))),
            );
        }
        Resource::GlobalInsuranceCarriers | Resource::Locations => {
            set(
                v,
                "phone",
                json!(format!("(800) 555-{:04}", rng.below(10_000))),
            );
        }
        Resource::Providers | Resource::Operatories => {
            let active = v.get("active").and_then(Value::as_bool).unwrap_or(true);
            set(v, "active", json!(!active));
        }
        Resource::Visits => {
            let n = world.count(Resource::Providers);
            let p = world.id(Resource::Providers, rng.below(n));
            set(
                v,
                "provider",
                ref_value(&world.api_base, Resource::Providers, p),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Size;
    use crate::store::{Plan, TotalsCache};

    fn live_ids(world: &World, data: &OrgData, res: Resource) -> Vec<u64> {
        let mut out = Vec::new();
        View::new(world, data, res).scan(&Plan::all(), 0, |id, _| {
            out.push(id);
            true
        });
        out
    }

    #[test]
    fn mutate_is_deterministic_and_consistent() -> Result<(), String> {
        let world = World::new(
            4,
            0,
            Size::Small,
            crate::world::TEST_DAY,
            "http://h/ascend-gateway/api".into(),
        );
        let run = || -> Result<(MutateResult, OrgData), String> {
            let mut data = OrgData::new(&world);
            let req = MutateRequest {
                resource: None,
                creates: 30,
                updates: 40,
                deletes: 20,
                seed: 5,
            };
            let r = mutate(&world, &mut data, &req)?;
            Ok((r, data))
        };
        let (a, data) = run()?;
        let (b, _) = run()?;
        assert_eq!(a.created, b.created);
        assert_eq!(a.updated, b.updated);
        assert_eq!(a.deleted, b.deleted);
        assert_eq!(
            (a.created.len(), a.updated.len(), a.deleted.len()),
            (30, 40, 20)
        );
        assert!(
            !a.by_resource.contains_key("locations")
                || a.by_resource["locations"].deleted.is_empty()
        );
        for (name, ch) in &a.by_resource {
            let res = Resource::from_path(name).ok_or("bad name")?;
            let live = live_ids(&world, &data, res);
            for id in &ch.deleted {
                assert!(
                    !live.contains(&id.parse().map_err(|_| "id")?),
                    "{name} {id} still live"
                );
            }
            let view = View::new(&world, &data, res);
            for id in ch.created.iter().chain(&ch.updated) {
                let id: u64 = id.parse().map_err(|_| "id")?;
                let rec = view.get(id).ok_or("missing")?;
                assert_eq!(view.last_modified_of(rec), data.max_last_modified);
                let v = view.to_value(rec);
                assert_eq!(v["id"], id.to_string().as_str());
                assert_eq!(v["lastModified"], a.last_modified.as_deref().unwrap_or(""));
            }
            let expected = world.count(res) as usize + ch.created.len() - ch.deleted.len();
            assert_eq!(live.len(), expected, "{name}");
            assert_eq!(
                view.total(&Plan::all(), &TotalsCache::default(), ""),
                expected as u64
            );
        }
        // New ids are above every generated id.
        for (name, ch) in &a.by_resource {
            let res = Resource::from_path(name).ok_or("bad name")?;
            for id in &ch.created {
                assert!(id.parse::<u64>().map_err(|_| "id")? > world.space(res).max_id());
            }
        }
        Ok(())
    }

    #[test]
    fn updates_and_deletes_reach_created_records_and_never_exceed_live() -> Result<(), String> {
        let world = World::new(
            4,
            0,
            Size::Small,
            crate::world::TEST_DAY,
            "http://h/ascend-gateway/api".into(),
        );
        let mut data = OrgData::new(&world);
        let n = world.count(Resource::Locations) as usize;
        let req = |creates, deletes| MutateRequest {
            resource: Some("locations".into()),
            creates,
            updates: 0,
            deletes,
            seed: 1,
        };
        let r = mutate(&world, &mut data, &req(1, n + 5))?;
        assert_eq!(
            r.deleted.len(),
            n,
            "only what exists, and was not created in this batch, is deleted"
        );
        assert_eq!(live_ids(&world, &data, Resource::Locations).len(), 1);
        let r2 = mutate(&world, &mut data, &req(0, 5))?;
        assert_eq!(
            r2.deleted, r.created,
            "a created record can be deleted later"
        );
        assert!(live_ids(&world, &data, Resource::Locations).is_empty());
        assert!(
            mutate(
                &world,
                &mut data,
                &MutateRequest {
                    resource: Some("nope".into()),
                    ..MutateRequest::default()
                }
            )
            .is_err()
        );
        Ok(())
    }
}
