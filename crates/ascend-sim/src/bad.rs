//! Records served bad on purpose (the control API's bad-records), and
//! pretty-printed pages: what a real API sometimes serves and a reader must
//! survive record by record (`shared/reference/ascend-api.md`: "a bad
//! record, not a bad page").
//!
//! A corrupted record is corrupted as served only: its stored value stays
//! whole (the snapshot shows the truth) and it keeps its place in id order.
//! Records with ids beyond 2^63-1 are real records of the overlay, created
//! with ids above every other, so they come last in id order like any
//! record created later.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::clock::Ts;
use crate::control::{
    BadRecord, BadRecordKind, BadRecordsRequest, BadRecordsResult, RepairRequest,
};
use crate::hash::{SplitMix, hash3};
use crate::resource::Resource;
use crate::store::{OrgData, Rec, Stored, View};
use crate::world::World;

const BAD_STREAM: u64 = 0xBAD;

/// The first id beyond what a signed 64-bit integer holds.
const BEYOND_I64: u64 = i64::MAX as u64 + 1;

/// Stands for the lone surrogate escape in a serialized record until
/// [`finish`] writes the escape itself (a Rust string cannot hold one).
const SURROGATE_MARKER: &str = "__sim_lone_surrogate__";

/// What `kind` does to a record's value (as served; `id` is its true id).
pub(crate) fn corrupt(value: &mut Value, id: u64, kind: BadRecordKind) {
    let Value::Object(map) = value else { return };
    match kind {
        BadRecordKind::IdBeyondI64 => {}
        BadRecordKind::NonNumericId => {
            map.insert("id".into(), json!(format!("{id}x")));
        }
        BadRecordKind::BadLastModified => {
            map.insert("lastModified".into(), json!("yesterday"));
        }
        BadRecordKind::LoneSurrogate => {
            let field = ["firstName", "name"]
                .into_iter()
                .find(|f| map.get(*f).is_some_and(Value::is_string))
                .unwrap_or("note");
            let text = match map.get(field) {
                Some(Value::String(s)) => format!("{s}{SURROGATE_MARKER}"),
                _ => format!("Lone {SURROGATE_MARKER} surrogate"),
            };
            map.insert(field.into(), Value::String(text));
        }
    }
}

/// Writes the lone surrogate escapes of a record serialized from `start`.
pub(crate) fn finish(buf: &mut Vec<u8>, start: usize) {
    let marker = SURROGATE_MARKER.as_bytes();
    let Some(at) = buf[start..]
        .windows(marker.len())
        .position(|w| w == marker)
        .map(|p| start + p)
    else {
        return;
    };
    buf.splice(at..at + marker.len(), br"\ud800".iter().copied());
}

/// The served text of an ids-only record.
pub(crate) fn id_only(id: u64, kind: Option<BadRecordKind>) -> String {
    match kind {
        Some(BadRecordKind::NonNumericId) => format!("{{\"id\":\"{id}x\"}}"),
        _ => format!("{{\"id\":\"{id}\"}}"),
    }
}

fn resource_of(name: &str) -> Result<Resource, String> {
    Resource::from_path(name).ok_or_else(|| format!("unknown resource '{name}'"))
}

fn parse_ids(ids: &[String]) -> Result<Vec<u64>, String> {
    ids.iter()
        .map(|id| {
            id.parse::<u64>()
                .map_err(|_| format!("'{id}' is not a decimal id"))
        })
        .collect()
}

/// Applies a bad-records request.
pub(crate) fn make_bad(
    world: &World,
    data: &mut OrgData,
    req: &BadRecordsRequest,
) -> Result<BadRecordsResult, String> {
    let res = resource_of(&req.resource)?;
    if req.count == 0 && req.ids.is_empty() {
        return Err("count must be at least 1".into());
    }
    if req.count > 10_000 {
        return Err("count must be at most 10000".into());
    }
    let stamp = data.stamp();
    let mut result = BadRecordsResult {
        last_modified: Some(Ts(stamp).to_string()),
        ..BadRecordsResult::default()
    };
    if req.kind == BadRecordKind::IdBeyondI64 {
        if !req.ids.is_empty() {
            return Err("id_beyond_i64 creates records: give a count, not ids".into());
        }
        let template = {
            let view = View::new(world, data, res);
            if world.count(res) == 0 {
                json!({})
            } else {
                view.to_value(Rec::Gen(0))
            }
        };
        let rd = data.of_mut(res);
        let mut next = rd
            .created
            .keys()
            .next_back()
            .map_or(BEYOND_I64, |last| last.saturating_add(1).max(BEYOND_I64));
        for _ in 0..req.count {
            let id = next;
            next = next.saturating_add(3);
            rd.created
                .insert(id, Stored::new(id, stamp, template.clone()));
            rd.bad.insert(id, BadRecordKind::IdBeyondI64);
            result.ids.push(id.to_string());
            result.served_ids.push(id.to_string());
        }
        rd.version += 1;
        return Ok(result);
    }
    let ids = if req.ids.is_empty() {
        pick(world, data, res, req.count, req.seed)
    } else {
        parse_ids(&req.ids)?
    };
    for id in ids {
        let value = {
            let view = View::new(world, data, res);
            let rec = view
                .get(id)
                .ok_or_else(|| format!("no live {} record with id {id}", res.path()))?;
            view.to_value(rec)
        };
        let rd = data.of_mut(res);
        let stored = Stored::new(id, stamp, value);
        if let Some(slot) = rd.created.get_mut(&id) {
            *slot = stored;
        } else {
            rd.updated.insert(id, stored);
        }
        rd.bad.insert(id, req.kind);
        result.ids.push(id.to_string());
        result.served_ids.push(match req.kind {
            BadRecordKind::NonNumericId => format!("{id}x"),
            _ => id.to_string(),
        });
    }
    data.of_mut(res).version += 1;
    Ok(result)
}

/// `count` live generated records of `res` that are not bad yet, picked
/// from `seed`.
fn pick(world: &World, data: &OrgData, res: Resource, count: usize, seed: u64) -> Vec<u64> {
    let n = world.count(res);
    let rd = data.of(res);
    let mut rng = SplitMix::new(hash3(seed, BAD_STREAM, world.seed));
    let mut picked = Vec::new();
    let mut seen = HashSet::new();
    let mut attempts = count * 30 + 1000;
    while picked.len() < count && attempts > 0 && n > 0 {
        attempts -= 1;
        let id = world.id(res, rng.below(n));
        if !rd.deleted.contains(&id) && !rd.bad.contains_key(&id) && seen.insert(id) {
            picked.push(id);
        }
    }
    picked.sort_unstable();
    picked
}

/// Serves bad records whole again, stamped now. Returns those repaired and
/// the `lastModified` they got.
pub(crate) fn repair(
    world: &World,
    data: &mut OrgData,
    req: &RepairRequest,
) -> Result<(Vec<BadRecord>, String), String> {
    let only = req.resource.as_deref().map(resource_of).transpose()?;
    let ids = parse_ids(&req.ids)?;
    let stamp = data.stamp();
    let mut repaired = Vec::new();
    for res in Resource::ALL {
        if only.is_some_and(|r| r != res) {
            continue;
        }
        let targets: Vec<(u64, BadRecordKind)> = data
            .of(res)
            .bad
            .iter()
            .filter(|(id, kind)| {
                **kind != BadRecordKind::IdBeyondI64 && (ids.is_empty() || ids.contains(id))
            })
            .map(|(id, kind)| (*id, *kind))
            .collect();
        for (id, kind) in targets {
            let value = {
                let view = View::new(world, data, res);
                view.get(id).map(|rec| view.to_value(rec))
            };
            let rd = data.of_mut(res);
            rd.bad.remove(&id);
            if let Some(value) = value {
                let stored = Stored::new(id, stamp, value);
                if let Some(slot) = rd.created.get_mut(&id) {
                    *slot = stored;
                } else {
                    rd.updated.insert(id, stored);
                }
            }
            rd.version += 1;
            repaired.push(BadRecord {
                resource: res.path().to_string(),
                id: id.to_string(),
                kind,
            });
        }
    }
    Ok((repaired, Ts(stamp).to_string()))
}

/// Every bad record, by resource then id.
pub(crate) fn list(data: &OrgData) -> Vec<BadRecord> {
    Resource::ALL
        .iter()
        .flat_map(|res| {
            data.of(*res).bad.iter().map(|(id, kind)| BadRecord {
                resource: res.path().to_string(),
                id: id.to_string(),
                kind: *kind,
            })
        })
        .collect()
}

/// A JSON text pretty-printed: two spaces of indentation, a line break
/// after every opening bracket, member and element, a space after each
/// colon. Strings are copied byte for byte.
pub(crate) fn pretty(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() * 2);
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.extend(std::iter::repeat_n(b' ', depth * 2));
    };
    for &b in body {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                out.push(b);
            }
            b'{' | b'[' => {
                out.push(b);
                depth += 1;
                newline(&mut out, depth);
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            b' ' | b'\n' | b'\r' | b'\t' => {}
            _ => out.push(b),
        }
    }
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_pages_are_the_same_json_on_many_lines() {
        let body = br#"{"data":[{"id":"1","name":"a, b: {c}","x":[]},{"id":"2"}],"meta":{"pagination":{"total":2}}}"#;
        let text = pretty(body);
        let lines = text.iter().filter(|b| **b == b'\n').count();
        assert!(lines > 10, "{}", String::from_utf8_lossy(&text));
        let a: Value = serde_json::from_slice(body).expect("json");
        let b: Value = serde_json::from_slice(&text).expect("still json");
        assert_eq!(a, b);
    }

    #[test]
    fn corruptions_are_as_documented() {
        let mut v = json!({"id":"5","lastModified":"2026-01-01T00:00:00.000Z","firstName":"Ann"});
        corrupt(&mut v, 5, BadRecordKind::NonNumericId);
        assert_eq!(v["id"], "5x");
        corrupt(&mut v, 5, BadRecordKind::BadLastModified);
        assert_eq!(v["lastModified"], "yesterday");
        corrupt(&mut v, 5, BadRecordKind::LoneSurrogate);
        let mut buf = b"[".to_vec();
        serde_json::to_writer(&mut buf, &v).expect("serializes");
        finish(&mut buf, 1);
        let text = String::from_utf8(buf).expect("utf-8");
        assert!(text.contains(r#""firstName":"Ann\ud800""#), "{text}");
        // Valid JSON text, but not a valid Rust string.
        assert!(serde_json::from_str::<Value>(&text[1..]).is_err());
        assert!(serde_json::from_str::<&serde_json::value::RawValue>(&text[1..]).is_ok());
        assert_eq!(
            id_only(5, Some(BadRecordKind::NonNumericId)),
            r#"{"id":"5x"}"#
        );
    }
}
