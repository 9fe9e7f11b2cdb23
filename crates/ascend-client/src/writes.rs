//! Write-back's calls (issue 15): the one place that knows how each
//! [`Write`] becomes a call to the vendor's API, and how what a send
//! created is found again.
//!
//! What the contract (`reference/ascend-api.md`, "Writes") says, and what
//! is assumed here:
//! - known: `POST /v1/patients`, `POST /v1/appointments`,
//!   `PUT /v1/appointments/{id}` (confirm: status `CONFIRMED`, unconfirm:
//!   back to `UNCONFIRMED`);
//! - assumed: patient notes (`/v1/patients/{id}/notes`, field `note`, a
//!   `provider` reference), communication history
//!   (`/v1/patients/{id}/communications`, `type` `EMAIL`, `subject`,
//!   `body`), call logs (`/v1/patients/{id}/calllogs`, `summary`) and
//!   documents (`/v1/patients/{id}/documents`, `name`, `fileName`,
//!   `contentType`, `content` base64), each listed by `GET` on the same
//!   path; the field names of a new patient's phone (`phones`:
//!   `[{"number", "type"}]`) and of references (`{"id": "..."}`); the
//!   created record's id in the answer's `data.id`.
//!
//! Each created record carries the item's marker (`[ref asy-...]`) where
//! the type has free text: a note's text, an email's body, a call log's
//! summary, a document's name, an appointment's note. A new patient has
//! none, so it is found by its name and date of birth among the patients
//! changed since the first send (an assumption a practice registering the
//! same person twice within minutes would defeat); a confirmation is found
//! when the appointment already has the status.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use model::Write;
use model::writeback::WriteContext;

use crate::client::CallFailure;
use crate::query::{Filter, ListQuery};
use crate::{ClientError, OrgClient, Resource};

/// What a send achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    /// The created record's id (a confirmation: the appointment's).
    pub ascend_id: u64,
}

/// Whether a failed send may have reached Ascend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It certainly did not: refused, throttled, or never connected.
    No,
    /// It may have: a timeout, a 5xx, a connection lost after sending, an
    /// answer without a readable id. Look before sending again.
    Unknown,
}

/// A send that failed, and whether it may have been applied.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}{}", if *.applied == Applied::Unknown { " (the write may have been applied)" } else { "" })]
pub struct WriteFailure {
    /// What happened.
    pub error: ClientError,
    /// Whether the write may have reached Ascend.
    pub applied: Applied,
}

impl From<CallFailure> for WriteFailure {
    fn from(f: CallFailure) -> Self {
        WriteFailure {
            error: f.error,
            applied: if f.maybe_applied {
                Applied::Unknown
            } else {
                Applied::No
            },
        }
    }
}

/// How far before the first send a lookup by `lastModified` reaches
/// (clocks differ; Ascend's stamp is its own).
const LOOKUP_SLACK: time::Duration = time::Duration::minutes(2);

/// Records a lookup reads at most (a patient's notes, the patients changed
/// since a send).
const LOOKUP_LIMIT: usize = 10_000;

/// The text a record carries to be found again.
fn tag(marker: &str) -> String {
    format!("[ref {marker}]")
}

fn reference(id: u64) -> Value {
    json!({ "id": id.to_string() })
}

/// Where a write goes and what it sends.
struct Call {
    method: reqwest::Method,
    path: String,
    resource: Resource,
    body: Value,
}

/// The patient sub-collection a type is written to, and the field that
/// carries the marker.
fn collection(write: &Write) -> Option<(u64, &'static str, &'static str)> {
    match write {
        Write::SmsLog(w) => Some((w.patient_id, "notes", "note")),
        Write::EmailLog(w) => Some((w.patient_id, "communications", "body")),
        Write::CallLog(w) => Some((w.patient_id, "calllogs", "summary")),
        Write::Document(w) => Some((w.patient_id, "documents", "name")),
        _ => None,
    }
}

fn call(write: &Write, ctx: &WriteContext) -> Call {
    let marker = tag(&ctx.marker);
    let post = reqwest::Method::POST;
    let patient_path = |id: u64, sub: &str| format!("/v1/patients/{id}/{sub}");
    match write {
        Write::SmsLog(w) => {
            let who = w
                .phone
                .as_deref()
                .map(|p| format!(" {p}"))
                .unwrap_or_default();
            let mut body = json!({
                "note": format!("SMS {}{who}: {}\n{marker}", w.direction, w.text),
                "date": w.sent_at,
            });
            if let Some(provider) = ctx.note_provider_id {
                body["provider"] = reference(provider);
            }
            Call {
                method: post,
                path: patient_path(w.patient_id, "notes"),
                resource: Resource::Patients,
                body,
            }
        }
        Write::EmailLog(w) => {
            let mut body = json!({
                "type": "EMAIL",
                "direction": w.direction.to_uppercase(),
                "subject": w.subject,
                "body": format!("{}\n{marker}", w.body),
                "date": w.sent_at,
            });
            if let Some(address) = &w.address {
                body["address"] = json!(address);
            }
            Call {
                method: post,
                path: patient_path(w.patient_id, "communications"),
                resource: Resource::Patients,
                body,
            }
        }
        Write::CallLog(w) => {
            let mut body = json!({
                "summary": format!("{}\n{marker}", w.summary),
                "direction": w.direction.to_uppercase(),
                "date": w.at,
            });
            if let Some(phone) = &w.phone {
                body["phone"] = json!(phone);
            }
            if let Some(secs) = w.duration_seconds {
                body["durationSeconds"] = json!(secs);
            }
            Call {
                method: post,
                path: patient_path(w.patient_id, "calllogs"),
                resource: Resource::Patients,
                body,
            }
        }
        Write::Document(w) => Call {
            method: post,
            path: patient_path(w.patient_id, "documents"),
            resource: Resource::Patients,
            body: json!({
                "name": format!("{} {marker}", w.name),
                "fileName": w.name,
                "contentType": w.content_type,
                "content": w.content_base64,
            }),
        },
        Write::Confirmation(w) => Call {
            method: reqwest::Method::PUT,
            path: format!("/v1/appointments/{}", w.appointment_id),
            resource: Resource::Appointments,
            body: json!({ "status": w.status }),
        },
        Write::NewPatient(w) => {
            let mut body = Map::new();
            body.insert("firstName".into(), json!(w.first_name));
            body.insert("lastName".into(), json!(w.last_name));
            if let Some(d) = &w.date_of_birth {
                body.insert("dateOfBirth".into(), json!(d));
            }
            if let Some(e) = &w.email {
                body.insert("emailAddress".into(), json!(e));
            }
            if let Some(p) = &w.phone {
                body.insert("phones".into(), json!([{ "number": p, "type": "MOBILE" }]));
            }
            if ctx.location_id != 0 {
                body.insert("preferredLocation".into(), reference(ctx.location_id));
            }
            Call {
                method: post,
                path: "/v1/patients".into(),
                resource: Resource::Patients,
                body: Value::Object(body),
            }
        }
        Write::NewAppointment(w) => {
            let note = match &w.note {
                Some(note) => format!("{note}\n{marker}"),
                None => marker,
            };
            let mut body = json!({
                "patient": reference(w.patient_id),
                "start": w.start,
                "duration": w.duration_minutes,
                "note": note,
            });
            if let Some(p) = w.provider_id {
                body["provider"] = reference(p);
            }
            if let Some(o) = w.operatory_id {
                body["operatory"] = reference(o);
            }
            if ctx.location_id != 0 {
                body["location"] = reference(ctx.location_id);
            }
            Call {
                method: post,
                path: "/v1/appointments".into(),
                resource: Resource::Appointments,
                body,
            }
        }
    }
}

/// An id as the API writes it: a decimal string or a number.
fn id_of(value: &Value) -> Option<u64> {
    match value.get("id")? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

/// The records of a list answer (`{"data": [...]}`, or a bare array).
fn records(answer: &Value) -> &[Value] {
    answer
        .get("data")
        .unwrap_or(answer)
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn text_has(record: &Value, field: &str, needle: &str) -> bool {
    record
        .get(field)
        .and_then(Value::as_str)
        .is_some_and(|t| t.contains(needle))
}

fn same_name(record: &Value, field: &str, want: &str) -> bool {
    record
        .get(field)
        .and_then(Value::as_str)
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(want.trim()))
}

impl OrgClient {
    /// Sends `write` once. A write is retried in place only when its
    /// request certainly did not reach Ascend; otherwise the failure says
    /// whether it may have been applied ([`Applied::Unknown`]): look it up
    /// with [`OrgClient::find_write`] before sending it again.
    pub async fn send_write(
        &self,
        write: &Write,
        ctx: &WriteContext,
    ) -> Result<Sent, WriteFailure> {
        let call = call(write, ctx);
        let url = self.api_url(&call.path);
        let kind = write.kind();
        let answer = self
            .call_json(call.method, &url, Some(&call.body), call.resource, true)
            .await
            .map_err(WriteFailure::from)?;
        if let Write::Confirmation(c) = write {
            return Ok(Sent {
                ascend_id: c.appointment_id,
            });
        }
        let created = answer.get("data").unwrap_or(&answer);
        match id_of(created) {
            Some(ascend_id) => Ok(Sent { ascend_id }),
            None => Err(WriteFailure {
                error: ClientError::bad_payload(
                    call.resource,
                    &crate::query::Cursor::Start,
                    format!("the answer to a {kind} write has no readable data.id"),
                ),
                applied: Applied::Unknown,
            }),
        }
    }

    /// Looks in Ascend for what an earlier send of `write` with `ctx`'s
    /// marker created, at or after `since` (the first send): its id, or
    /// `None` if Ascend does not have it. A confirmation is found when the
    /// appointment already has the status; a deleted appointment is `None`
    /// (the send will be refused and the item given up).
    pub async fn find_write(
        &self,
        write: &Write,
        ctx: &WriteContext,
        since: OffsetDateTime,
    ) -> Result<Option<u64>, ClientError> {
        let marker = tag(&ctx.marker);
        if let Some((patient, sub, field)) = collection(write) {
            let url = self.api_url(&format!("/v1/patients/{patient}/{sub}"));
            let answer = match self
                .call_json(reqwest::Method::GET, &url, None, Resource::Patients, false)
                .await
            {
                Ok(answer) => answer,
                // The patient is gone: nothing of ours is there (the send
                // will be refused and the item given up).
                Err(CallFailure {
                    error: ClientError::Rejected { status: 404, .. },
                    ..
                }) => return Ok(None),
                Err(f) => return Err(f.error),
            };
            return Ok(records(&answer)
                .iter()
                .find(|r| text_has(r, field, &marker))
                .and_then(id_of));
        }
        match write {
            Write::Confirmation(c) => {
                let url = self.api_url(&format!("/v1/appointments/{}", c.appointment_id));
                match self
                    .call_json(
                        reqwest::Method::GET,
                        &url,
                        None,
                        Resource::Appointments,
                        false,
                    )
                    .await
                {
                    Ok(answer) => {
                        let record = answer.get("data").unwrap_or(&answer);
                        let has =
                            record.get("status").and_then(Value::as_str) == Some(c.status.as_str());
                        Ok(has.then_some(c.appointment_id))
                    }
                    Err(CallFailure {
                        error: ClientError::Rejected { status: 404, .. },
                        ..
                    }) => Ok(None),
                    Err(f) => Err(f.error),
                }
            }
            Write::NewPatient(p) => {
                let found = self
                    .changed_since(Resource::Patients, Filter::new(), since, |r| {
                        same_name(r, "firstName", &p.first_name)
                            && same_name(r, "lastName", &p.last_name)
                            && p.date_of_birth
                                .as_deref()
                                .is_none_or(|d| same_name(r, "dateOfBirth", d))
                    })
                    .await?;
                Ok(found)
            }
            Write::NewAppointment(a) => {
                let filter = Filter::new().eq("patient.id", a.patient_id);
                self.changed_since(Resource::Appointments, filter, since, |r| {
                    text_has(r, "note", &marker)
                })
                .await
            }
            _ => Ok(None),
        }
    }

    /// The smallest id among `resource`'s records changed at or after
    /// `since` (less [`LOOKUP_SLACK`]) that match `filter` and `wanted`.
    async fn changed_since(
        &self,
        resource: Resource,
        filter: Filter,
        since: OffsetDateTime,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Option<u64>, ClientError> {
        let filter = filter.ge("lastModified", since - LOOKUP_SLACK);
        let mut pager = self.keyset(resource, ListQuery::new().with_filter(filter), None);
        let mut seen = 0;
        while let Some(page) = pager.next_page().await? {
            for record in &page.records {
                seen += 1;
                let Ok(value) = serde_json::from_str::<Value>(record.raw.get()) else {
                    continue;
                };
                if wanted(&value) {
                    return Ok(Some(record.id.0));
                }
            }
            if seen >= LOOKUP_LIMIT {
                break;
            }
        }
        Ok(None)
    }
}
