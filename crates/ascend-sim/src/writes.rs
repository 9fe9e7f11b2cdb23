//! Writes through the API (write-back): patients, appointments, and the
//! things written to a patient (notes, communications, call logs,
//! documents). Each validates a minimal set of fields, answers `400` with a
//! message otherwise, and is visible to later reads.
//!
//! Required fields (the paths marked *assumed* in the contract use these):
//! - `POST /v1/patients`: `firstName`, `lastName` (non-empty strings);
//! - `POST /v1/appointments`: `patient` (a reference or id of a live
//!   patient) and `start` (ISO-8601); `duration` (minutes) or `end` optional;
//! - `PUT`: any subset of fields; `id` and `lastModified` are the server's;
//! - `POST /v1/patients/{id}/notes`: `note`;
//! - `POST /v1/patients/{id}/communications`: `subject` or `body`;
//! - `POST /v1/patients/{id}/calllogs`: `note` or `summary`;
//! - `POST /v1/patients/{id}/documents`: `name` or `fileName`.
//!
//! References may be sent as `{"id":"123"}`, `{"id":123}`, `"123"` or `123`;
//! they are checked to exist and stored in the full reference form.

use serde_json::{Map, Value, json};

use crate::clock::{Ts, parse_instant};
use crate::records::ref_value;
use crate::resource::Resource;
use crate::store::{OrgData, PatientWrite, Stored, View};
use crate::world::World;

/// Why a write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteError {
    BadRequest(String),
    NotFound(String),
}

type Result<T> = std::result::Result<T, WriteError>;

fn bad<T>(m: impl Into<String>) -> Result<T> {
    Err(WriteError::BadRequest(m.into()))
}

fn object(body: &Value) -> Result<&Map<String, Value>> {
    body.as_object()
        .map_or_else(|| bad("the body must be a JSON object"), Ok)
}

/// The id in a reference as clients may send it.
fn ref_id(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        Value::Object(m) => m.get("id").and_then(ref_id),
        _ => None,
    }
}

/// Checks a reference to a live record and returns it in full form.
fn reference(
    world: &World,
    data: &OrgData,
    res: Resource,
    field: &str,
    v: &Value,
) -> Result<Value> {
    let Some(id) = ref_id(v) else {
        return bad(format!(
            "'{field}' must be a reference like {{\"id\":\"123\"}}"
        ));
    };
    if View::new(world, data, res).get(id).is_none() {
        return bad(format!("'{field}': no {} with id {id}", res.path()));
    }
    Ok(ref_value(&world.api_base, res, id))
}

fn non_empty_str(m: &Map<String, Value>, field: &str) -> Result<Option<String>> {
    match m.get(field) {
        None => Ok(None),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        Some(_) => bad(format!("'{field}' must be a non-empty string")),
    }
}

fn enum_like(m: &Map<String, Value>, field: &str) -> Result<()> {
    match m.get(field) {
        None => Ok(()),
        Some(Value::String(s))
            if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') =>
        {
            Ok(())
        }
        Some(other) => bad(format!(
            "'{field}' must be an upper-case value like CONFIRMED, got {other}"
        )),
    }
}

fn instant(m: &Map<String, Value>, field: &str) -> Result<Option<i64>> {
    match m.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => match parse_instant(s) {
            Some(ms) => Ok(Some(ms)),
            None => bad(format!(
                "'{field}' must be an ISO-8601 timestamp, got '{s}'"
            )),
        },
        Some(other) => bad(format!(
            "'{field}' must be an ISO-8601 timestamp, got {other}"
        )),
    }
}

/// Copies the client's fields over `target`, except the server's own.
fn merge(target: &mut Map<String, Value>, body: &Map<String, Value>) {
    for (k, v) in body {
        if k != "id" && k != "lastModified" {
            target.insert(k.clone(), v.clone());
        }
    }
}

fn current(world: &World, data: &OrgData, res: Resource, id: u64) -> Result<Map<String, Value>> {
    let view = View::new(world, data, res);
    match view.get(id).map(|rec| view.to_value(rec)) {
        Some(Value::Object(m)) => Ok(m),
        _ => Err(WriteError::NotFound(format!(
            "no {} with id {id}",
            res.path()
        ))),
    }
}

/// Keeps a written record; `new` records go with the created ones.
fn store(
    data: &mut OrgData,
    res: Resource,
    id: u64,
    stamp: i64,
    value: Map<String, Value>,
    new: bool,
) -> Value {
    let stored = Stored::new(id, stamp, Value::Object(value));
    let out = stored.value.clone();
    let rd = data.of_mut(res);
    if new || rd.created.contains_key(&id) {
        rd.created.insert(id, stored);
    } else {
        rd.updated.insert(id, stored);
    }
    rd.version += 1;
    out
}

fn into_map(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn new_id(data: &mut OrgData, res: Resource) -> u64 {
    let rd = data.of_mut(res);
    let id = rd.next_id;
    rd.next_id += 1;
    id
}

fn patient_refs(
    world: &World,
    data: &OrgData,
    body: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<()> {
    for (field, res) in [
        ("preferredLocation", Resource::Locations),
        ("primaryProvider", Resource::Providers),
        ("primaryGuarantor", Resource::Patients),
    ] {
        if let Some(v) = body.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), reference(world, data, res, field, v)?);
        }
    }
    Ok(())
}

fn check_patient_fields(m: &Map<String, Value>) -> Result<()> {
    non_empty_str(m, "firstName")?;
    non_empty_str(m, "lastName")?;
    enum_like(m, "patientStatus")?;
    if let Some(v) = m.get("dateOfBirth").filter(|v| !v.is_null())
        && v.as_str().and_then(parse_instant).is_none()
    {
        return bad(format!(
            "'dateOfBirth' must be a date like 1985-03-02, got {v}"
        ));
    }
    if let Some(v) = m.get("emailAddress").filter(|v| !v.is_null())
        && !v.as_str().is_some_and(|s| s.contains('@'))
    {
        return bad(format!("'emailAddress' must be an e-mail address, got {v}"));
    }
    if m.get("phones").is_some_and(|p| !p.is_array()) {
        return bad("'phones' must be an array");
    }
    Ok(())
}

pub(crate) fn create_patient(world: &World, data: &mut OrgData, body: &Value) -> Result<Value> {
    let m = object(body)?;
    check_patient_fields(m)?;
    if non_empty_str(m, "firstName")?.is_none() || non_empty_str(m, "lastName")?.is_none() {
        return bad("'firstName' and 'lastName' are required");
    }
    let mut refs = Map::new();
    patient_refs(world, data, m, &mut refs)?;
    let id = new_id(data, Resource::Patients);
    let base = &world.api_base;
    let mut out = into_map(json!({
        "firstName": null, "lastName": null, "preferredName": null, "dateOfBirth": null,
        "gender": "UNKNOWN", "patientStatus": "ACTIVE", "chartNumber": null, "phones": [],
        "emailAddress": null, "primaryProvider": null,
        "primaryGuarantor": ref_value(base, Resource::Patients, id),
        "preferredLocation": ref_value(base, Resource::Locations, world.id(Resource::Locations, 0)),
        "firstVisitDate": null,
    }));
    merge(&mut out, m);
    out.extend(refs);
    let stamp = data.stamp();
    Ok(store(data, Resource::Patients, id, stamp, out, true))
}

pub(crate) fn update_patient(
    world: &World,
    data: &mut OrgData,
    id: u64,
    body: &Value,
) -> Result<Value> {
    let m = object(body)?;
    let mut record = current(world, data, Resource::Patients, id)?;
    check_patient_fields(m)?;
    let mut refs = Map::new();
    patient_refs(world, data, m, &mut refs)?;
    merge(&mut record, m);
    record.extend(refs);
    let stamp = data.stamp();
    Ok(store(data, Resource::Patients, id, stamp, record, false))
}

/// The location of an operatory or a patient, from its record.
fn location_of(
    world: &World,
    data: &OrgData,
    res: Resource,
    id: u64,
    field: &str,
) -> Option<Value> {
    let view = View::new(world, data, res);
    let v = view.to_value(view.get(id)?);
    let loc = ref_id(v.get(field)?)?;
    Some(ref_value(&world.api_base, Resource::Locations, loc))
}

fn appointment_refs(
    world: &World,
    data: &OrgData,
    m: &Map<String, Value>,
    out: &mut Map<String, Value>,
) -> Result<()> {
    for (field, res) in [
        ("patient", Resource::Patients),
        ("provider", Resource::Providers),
        ("operatory", Resource::Operatories),
        ("location", Resource::Locations),
    ] {
        if let Some(v) = m.get(field).filter(|v| !v.is_null()) {
            out.insert(field.into(), reference(world, data, res, field, v)?);
        }
    }
    Ok(())
}

fn duration_of(m: &Map<String, Value>) -> Result<Option<i64>> {
    match m.get("duration") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64().filter(|d| (1..=1440).contains(d)) {
            Some(d) => Ok(Some(d)),
            None => bad(format!(
                "'duration' must be whole minutes between 1 and 1440, got {v}"
            )),
        },
    }
}

/// Sets `start`, `end` and `duration` consistently.
fn schedule(
    out: &mut Map<String, Value>,
    start: i64,
    end: Option<i64>,
    duration: Option<i64>,
) -> Result<()> {
    let (end, duration) = match (end, duration) {
        (Some(end), _) if end <= start => return bad("'end' must be after 'start'"),
        (Some(end), _) => (end, (end - start) / 60_000),
        (None, Some(d)) => (start + d * 60_000, d),
        (None, None) => (start + 60 * 60_000, 60),
    };
    out.insert("start".into(), json!(Ts(start).to_string()));
    out.insert("end".into(), json!(Ts(end).to_string()));
    out.insert("duration".into(), json!(duration));
    Ok(())
}

pub(crate) fn create_appointment(world: &World, data: &mut OrgData, body: &Value) -> Result<Value> {
    let m = object(body)?;
    if m.get("patient").is_none_or(Value::is_null) {
        return bad("'patient' is required");
    }
    let Some(start) = instant(m, "start")? else {
        return bad("'start' is required");
    };
    let end = instant(m, "end")?;
    let duration = duration_of(m)?;
    enum_like(m, "status")?;
    enum_like(m, "bookingType")?;
    let mut refs = Map::new();
    appointment_refs(world, data, m, &mut refs)?;
    if !refs.contains_key("location") {
        let from_operatory = refs
            .get("operatory")
            .and_then(ref_id)
            .and_then(|op| location_of(world, data, Resource::Operatories, op, "location"));
        let from_patient = || {
            refs.get("patient")
                .and_then(ref_id)
                .and_then(|p| location_of(world, data, Resource::Patients, p, "preferredLocation"))
        };
        let loc = from_operatory.or_else(from_patient).unwrap_or_else(|| {
            ref_value(
                &world.api_base,
                Resource::Locations,
                world.id(Resource::Locations, 0),
            )
        });
        refs.insert("location".into(), loc);
    }
    let mut out = Map::new();
    for k in ["provider", "operatory", "note"] {
        out.insert(k.into(), Value::Null);
    }
    out.insert("status".into(), json!("UNCONFIRMED"));
    out.insert("bookingType".into(), json!("EXISTING_PATIENT"));
    merge(&mut out, m);
    out.extend(refs);
    schedule(&mut out, start, end, duration)?;
    let id = new_id(data, Resource::Appointments);
    let stamp = data.stamp();
    Ok(store(data, Resource::Appointments, id, stamp, out, true))
}

pub(crate) fn update_appointment(
    world: &World,
    data: &mut OrgData,
    id: u64,
    body: &Value,
) -> Result<Value> {
    let m = object(body)?;
    let mut record = current(world, data, Resource::Appointments, id)?;
    enum_like(m, "status")?;
    enum_like(m, "bookingType")?;
    let new_start = instant(m, "start")?;
    let new_end = instant(m, "end")?;
    let new_duration = duration_of(m)?;
    let mut refs = Map::new();
    appointment_refs(world, data, m, &mut refs)?;
    let old_start = record
        .get("start")
        .and_then(Value::as_str)
        .and_then(parse_instant);
    let old_duration = record.get("duration").and_then(Value::as_i64);
    merge(&mut record, m);
    record.extend(refs);
    if new_start.is_some() || new_end.is_some() || new_duration.is_some() {
        let start = new_start.or(old_start).unwrap_or(0);
        schedule(&mut record, start, new_end, new_duration.or(old_duration))?;
    }
    let stamp = data.stamp();
    Ok(store(
        data,
        Resource::Appointments,
        id,
        stamp,
        record,
        false,
    ))
}

pub(crate) fn delete_appointment(world: &World, data: &mut OrgData, id: u64) -> Result<()> {
    let exists = View::new(world, data, Resource::Appointments)
        .get(id)
        .is_some();
    if !exists {
        return Err(WriteError::NotFound(format!(
            "no appointments with id {id}"
        )));
    }
    let rd = data.of_mut(Resource::Appointments);
    if rd.created.remove(&id).is_none() {
        rd.updated.remove(&id);
        rd.deleted.insert(id);
    }
    rd.version += 1;
    Ok(())
}

/// The kinds of things written to a patient: (path segment, counter name,
/// fields of which at least one is required).
pub(crate) const PATIENT_WRITES: [(&str, &str, &[&str]); 4] = [
    ("notes", "patient_note", &["note"]),
    ("communications", "communication", &["subject", "body"]),
    ("calllogs", "call_log", &["note", "summary"]),
    ("documents", "document", &["name", "fileName"]),
];

pub(crate) fn patient_write(
    world: &World,
    data: &mut OrgData,
    kind: &'static str,
    patient: u64,
    body: &Value,
) -> Result<Value> {
    let m = object(body)?;
    current(world, data, Resource::Patients, patient)?;
    let Some((_, _, required)) = PATIENT_WRITES.iter().find(|(k, _, _)| *k == kind) else {
        return Err(WriteError::NotFound(format!(
            "no such patient collection '{kind}'"
        )));
    };
    let mut present = false;
    for f in *required {
        present |= non_empty_str(m, f)?.is_some();
    }
    if !present {
        return bad(format!(
            "one of {} is required (a non-empty string)",
            required.join(", ")
        ));
    }
    let mut out = Map::new();
    if let Some(v) = m.get("provider").filter(|v| !v.is_null()) {
        out.insert(
            "provider".into(),
            reference(world, data, Resource::Providers, "provider", v)?,
        );
    }
    let mut record = Map::new();
    merge(&mut record, m);
    record.extend(out);
    let id = data.next_write_id;
    data.next_write_id += 1;
    let stamp = data.stamp();
    record.insert("id".into(), json!(id.to_string()));
    record.insert(
        "patient".into(),
        ref_value(&world.api_base, Resource::Patients, patient),
    );
    record.insert("lastModified".into(), json!(Ts(stamp).to_string()));
    if kind == "communications" {
        record.entry("type").or_insert(json!("EMAIL"));
    }
    let value = Value::Object(record);
    data.patient_writes.push(PatientWrite {
        kind,
        patient_id: patient,
        value: value.clone(),
    });
    Ok(value)
}

pub(crate) fn list_patient_writes(
    world: &World,
    data: &OrgData,
    kind: &str,
    patient: u64,
) -> Result<Vec<Value>> {
    current(world, data, Resource::Patients, patient)?;
    Ok(data
        .patient_writes
        .iter()
        .filter(|w| w.kind == kind && w.patient_id == patient)
        .map(|w| w.value.clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Size;

    fn setup() -> (World, OrgData) {
        let w = World::new(
            2,
            0,
            Size::Small,
            crate::world::TEST_DAY,
            "http://h/ascend-gateway/api".into(),
        );
        let d = OrgData::new(&w);
        (w, d)
    }

    #[test]
    fn patient_create_validates_and_is_readable() {
        let (w, mut d) = setup();
        assert!(matches!(
            create_patient(&w, &mut d, &json!({"firstName": "A"})),
            Err(WriteError::BadRequest(_))
        ));
        assert!(matches!(
            create_patient(&w, &mut d, &json!([1])),
            Err(WriteError::BadRequest(_))
        ));
        assert!(matches!(
            create_patient(&w, &mut d, &json!({"firstName": "A", "lastName": "B", "preferredLocation": {"id": "1"}})),
            Err(WriteError::BadRequest(m)) if m.contains("no locations")
        ));
        let loc = w.id(Resource::Locations, 1);
        let created = create_patient(
            &w,
            &mut d,
            &json!({"firstName": "Ana", "lastName": "Núñez", "id": "5", "preferredLocation": loc}),
        );
        let Ok(v) = created else {
            panic!("{created:?}")
        };
        let id: u64 = v["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        assert!(id > w.space(Resource::Patients).max_id());
        assert_eq!(v["preferredLocation"]["id"], loc.to_string().as_str());
        assert_eq!(v["preferredLocation"]["type"], "LocationV1");
        let view = View::new(&w, &d, Resource::Patients);
        assert_eq!(view.get(id).map(|r| view.to_value(r)), Some(v));
    }

    #[test]
    fn appointment_lifecycle() {
        let (w, mut d) = setup();
        let patient = w.id(Resource::Patients, 3);
        let made = create_appointment(
            &w,
            &mut d,
            &json!({"patient": {"id": patient.to_string()}, "start": "2026-12-01T15:00:00Z", "duration": 30}),
        );
        let Ok(v) = made else { panic!("{made:?}") };
        assert_eq!(v["end"], "2026-12-01T15:30:00.000Z");
        assert_eq!(v["status"], "UNCONFIRMED");
        let want_loc = w.id(
            Resource::Locations,
            w.location_of(Resource::Patients, 3).unwrap_or(9),
        );
        assert_eq!(v["location"]["id"], want_loc.to_string().as_str());
        let id: u64 = v["id"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        let confirmed = update_appointment(&w, &mut d, id, &json!({"status": "CONFIRMED"}));
        assert!(confirmed.is_ok_and(|v| v["status"] == "CONFIRMED"));
        assert!(matches!(
            update_appointment(&w, &mut d, id, &json!({"status": "confirmed!"})),
            Err(WriteError::BadRequest(_))
        ));
        assert!(matches!(
            update_appointment(&w, &mut d, id, &json!({"end": "2026-12-01T14:00:00Z"})),
            Err(WriteError::BadRequest(_))
        ));
        let generated = w.id(Resource::Appointments, 0);
        assert!(delete_appointment(&w, &mut d, generated).is_ok());
        assert!(matches!(
            delete_appointment(&w, &mut d, generated),
            Err(WriteError::NotFound(_))
        ));
        assert!(delete_appointment(&w, &mut d, id).is_ok());
        assert!(View::new(&w, &d, Resource::Appointments).get(id).is_none());
        assert!(matches!(
            create_appointment(&w, &mut d, &json!({"patient": "1", "start": "x"})),
            Err(WriteError::BadRequest(_))
        ));
        assert!(matches!(
            create_appointment(&w, &mut d, &json!({"start": "2026-12-01T15:00:00Z"})),
            Err(WriteError::BadRequest(_))
        ));
    }

    #[test]
    fn notes_need_text_and_a_live_patient() {
        let (w, mut d) = setup();
        let p = w.id(Resource::Patients, 0);
        assert!(matches!(
            patient_write(&w, &mut d, "notes", p, &json!({"text": "x"})),
            Err(WriteError::BadRequest(_))
        ));
        assert!(matches!(
            patient_write(&w, &mut d, "notes", 1, &json!({"note": "x"})),
            Err(WriteError::NotFound(_))
        ));
        assert!(patient_write(&w, &mut d, "notes", p, &json!({"note": "SMS: see you 🦷"})).is_ok());
        assert!(
            patient_write(&w, &mut d, "communications", p, &json!({"body": "hi"}))
                .is_ok_and(|v| v["type"] == "EMAIL")
        );
        assert_eq!(
            list_patient_writes(&w, &d, "notes", p).map(|l| l.len()),
            Ok(1)
        );
    }
}
