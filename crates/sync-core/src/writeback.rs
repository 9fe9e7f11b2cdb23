//! The rules of write-back (issue 15; `docs/writeback.md`): what a request
//! must hold to enter the outbox, which items may be sent, what an
//! attempt's end makes of an item, and when it is tried again.
//!
//! Exactly once rests on three rules kept here and executed by the worker:
//! a send is recorded as begun before the request leaves
//! ([`ItemStatus::Sending`]); an item found `sending` is looked up in
//! Ascend before anything is sent again ([`next_step`]); and a failure
//! after which the request may have been applied is never retried blindly
//! ([`after_failure`] with [`Applied::Unknown`]).

use std::time::Duration;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use model::writeback::{
    CallLog, Confirmation, ConfirmationStatus, Direction, Document, EmailLog, NewAppointment,
    NewPatient, SmsLog, TypeSetting,
};
use model::{ItemStatus, OutboxItem, PracticeStatus, Write, WritebackType};

/// The largest document accepted, decoded (5 MiB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024 * 1024;

/// The largest text field (an SMS, a summary, an email's body).
pub const MAX_TEXT_CHARS: usize = 20_000;

/// The longest idempotency key.
pub const MAX_KEY_LEN: usize = 128;

/// Sends begun before an item is given up.
pub const MAX_ATTEMPTS: u32 = 6;

/// The first retry's delay; doubled per attempt up to [`MAX_RETRY_DELAY`].
pub const RETRY_BASE: Duration = Duration::from_secs(30);

/// The longest delay between two attempts.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60 * 60);

/// Why a request was refused at submit time. The text says what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

fn invalid<T>(message: impl Into<String>) -> Result<T, Invalid> {
    Err(Invalid(message.into()))
}

/// Checks an idempotency key: 1 to 128 characters of `A-Z a-z 0-9 . _ : -`.
pub fn check_key(key: &str) -> Result<(), Invalid> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LEN
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        invalid(format!(
            "the idempotency key must be 1 to {MAX_KEY_LEN} characters of A-Z a-z 0-9 . _ : - \
             (got {})",
            model::job::shown(key)
        ))
    }
}

/// Reads a request of type `kind` from its JSON body: every field known,
/// required ones present, values of the right form and size. The answer is
/// what the outbox stores.
pub fn parse(kind: WritebackType, body: &Value) -> Result<Write, Invalid> {
    let Some(m) = body.as_object() else {
        return invalid(format!("a {kind} request must be a JSON object"));
    };
    let fields = Fields { m, kind };
    let write = match kind {
        WritebackType::SmsLog => {
            fields.only(&["patient_id", "direction", "phone", "text", "sent_at"])?;
            Write::SmsLog(SmsLog {
                patient_id: fields.id("patient_id")?,
                direction: fields.direction()?,
                phone: fields.opt_text("phone", 40)?,
                text: fields.text("text", MAX_TEXT_CHARS)?,
                sent_at: fields.instant("sent_at")?,
            })
        }
        WritebackType::EmailLog => {
            fields.only(&[
                "patient_id",
                "direction",
                "address",
                "subject",
                "body",
                "sent_at",
            ])?;
            Write::EmailLog(EmailLog {
                patient_id: fields.id("patient_id")?,
                direction: fields.direction()?,
                address: fields.opt_text("address", 320)?,
                subject: fields.text("subject", 998)?,
                body: fields.text("body", MAX_TEXT_CHARS)?,
                sent_at: fields.instant("sent_at")?,
            })
        }
        WritebackType::CallLog => {
            fields.only(&[
                "patient_id",
                "direction",
                "phone",
                "summary",
                "duration_seconds",
                "at",
            ])?;
            Write::CallLog(CallLog {
                patient_id: fields.id("patient_id")?,
                direction: fields.direction()?,
                phone: fields.opt_text("phone", 40)?,
                summary: fields.text("summary", MAX_TEXT_CHARS)?,
                duration_seconds: fields.opt_count("duration_seconds", 24 * 3600)?,
                at: fields.instant("at")?,
            })
        }
        WritebackType::Confirmation => {
            fields.only(&["appointment_id", "status"])?;
            let status = fields.text("status", 20)?;
            if status.parse::<ConfirmationStatus>().is_err() {
                return invalid(format!(
                    "'status' must be CONFIRMED or UNCONFIRMED (got {})",
                    model::job::shown(&status)
                ));
            }
            Write::Confirmation(Confirmation {
                appointment_id: fields.id("appointment_id")?,
                status,
            })
        }
        WritebackType::Document => {
            fields.only(&["patient_id", "name", "content_type", "content_base64"])?;
            let content = fields.text("content_base64", usize::MAX)?;
            let bytes = base64_len(&content).ok_or_else(|| {
                Invalid("'content_base64' is not base64 (standard alphabet, padded)".into())
            })?;
            if bytes > MAX_DOCUMENT_BYTES {
                return invalid(format!(
                    "the document is {bytes} bytes; at most {MAX_DOCUMENT_BYTES} bytes (5 MiB) \
                     are accepted"
                ));
            }
            let content_type = fields.text("content_type", 100)?;
            if !content_type.contains('/') {
                return invalid("'content_type' must be a media type like application/pdf");
            }
            Write::Document(Document {
                patient_id: fields.id("patient_id")?,
                name: fields.text("name", 200)?,
                content_type,
                content_base64: content,
            })
        }
        WritebackType::NewPatient => {
            fields.only(&["first_name", "last_name", "date_of_birth", "email", "phone"])?;
            let date_of_birth = fields.opt_text("date_of_birth", 10)?;
            if let Some(d) = &date_of_birth {
                let format = time::macros::format_description!("[year]-[month]-[day]");
                if time::Date::parse(d, &format).is_err() {
                    return invalid("'date_of_birth' must be a date like 1984-03-07");
                }
            }
            Write::NewPatient(NewPatient {
                first_name: fields.text("first_name", 100)?,
                last_name: fields.text("last_name", 100)?,
                date_of_birth,
                email: fields.opt_text("email", 320)?,
                phone: fields.opt_text("phone", 40)?,
            })
        }
        WritebackType::NewAppointment => {
            fields.only(&[
                "patient_id",
                "start",
                "duration_minutes",
                "provider_id",
                "operatory_id",
                "note",
            ])?;
            let Some(duration_minutes) = fields.opt_count("duration_minutes", 24 * 60)? else {
                return invalid("'duration_minutes' is required");
            };
            if duration_minutes == 0 {
                return invalid("'duration_minutes' must be at least 1");
            }
            Write::NewAppointment(NewAppointment {
                patient_id: fields.id("patient_id")?,
                start: fields.instant("start")?,
                duration_minutes,
                provider_id: fields.opt_id("provider_id")?,
                operatory_id: fields.opt_id("operatory_id")?,
                note: fields.opt_text("note", MAX_TEXT_CHARS)?,
            })
        }
    };
    Ok(write)
}

/// A request's fields, read with errors that name the field.
struct Fields<'a> {
    m: &'a Map<String, Value>,
    kind: WritebackType,
}

impl Fields<'_> {
    fn only(&self, known: &[&str]) -> Result<(), Invalid> {
        match self.m.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => invalid(format!(
                "unknown field {} for {}; the fields are: {}",
                model::job::shown(k),
                self.kind,
                known.join(", ")
            )),
            None => Ok(()),
        }
    }

    fn opt_id(&self, field: &str) -> Result<Option<u64>, Invalid> {
        let id = match self.m.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            Some(Value::Number(n)) => n.as_u64(),
            Some(_) => None,
        };
        match id {
            Some(id) if id > 0 && i64::try_from(id).is_ok() => Ok(Some(id)),
            _ => invalid(format!(
                "'{field}' must be an Ascend id (a positive whole number, as a string or a number)"
            )),
        }
    }

    fn id(&self, field: &str) -> Result<u64, Invalid> {
        self.opt_id(field)?
            .ok_or_else(|| Invalid(format!("'{field}' is required")))
    }

    fn opt_text(&self, field: &str, max: usize) -> Result<Option<String>, Invalid> {
        match self.m.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => {
                invalid(format!("'{field}' must not be empty"))
            }
            Some(Value::String(s)) if s.chars().count() > max => {
                invalid(format!("'{field}' is longer than {max} characters"))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => invalid(format!("'{field}' must be a string")),
        }
    }

    fn text(&self, field: &str, max: usize) -> Result<String, Invalid> {
        self.opt_text(field, max)?
            .ok_or_else(|| Invalid(format!("'{field}' is required")))
    }

    fn opt_count(&self, field: &str, max: u32) -> Result<Option<u32>, Invalid> {
        match self.m.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64().and_then(|v| u32::try_from(v).ok()) {
                Some(v) if v <= max => Ok(Some(v)),
                _ => invalid(format!("'{field}' must be a whole number from 0 to {max}")),
            },
            Some(_) => invalid(format!("'{field}' must be a number")),
        }
    }

    fn instant(&self, field: &str) -> Result<String, Invalid> {
        let text = self.text(field, 40)?;
        match OffsetDateTime::parse(&text, &Rfc3339) {
            Ok(_) => Ok(text),
            Err(_) => invalid(format!(
                "'{field}' must be a time like 2026-12-04T10:30:00Z (RFC 3339)"
            )),
        }
    }

    fn direction(&self) -> Result<String, Invalid> {
        let text = self.text("direction", 10)?;
        match text.parse::<Direction>() {
            Ok(d) => Ok(d.as_str().to_owned()),
            Err(_) => invalid("'direction' must be outbound or inbound"),
        }
    }
}

/// The decoded length of standard, padded base64 text, or None if it is
/// not such text.
fn base64_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &b[..b.len() - pad];
    if !body
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/'))
    {
        return None;
    }
    Some(b.len() / 4 * 3 - pad)
}

/// Whether an item of `setting`'s type, submitted at `submitted_at`, may
/// be sent now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Send it (or look it up first, see [`next_step`]).
    Send,
    /// Hold it: it stays `blocked`, with the reason.
    Hold(String),
}

/// An item is sent only if its type is on now and was already on when the
/// item was submitted: turning a type on releases only the items submitted
/// after it, never what was held before.
#[must_use]
pub fn admit_item(item: &OutboxItem, setting: Option<&TypeSetting>) -> Admission {
    let kind = item.kind;
    match setting {
        Some(s) if s.enabled => match s.enabled_at {
            Some(on) if item.submitted_at >= on => Admission::Send,
            _ => Admission::Hold(format!(
                "{kind} was turned on after this item was submitted: only later items are sent"
            )),
        },
        _ => Admission::Hold(format!("{kind} is off for this practice: held, never sent")),
    }
}

/// Whether a practice in `status` sends anything: only while it syncs
/// (initial sync or active). A paused, removed or auth-failed practice
/// sends nothing; its items wait.
#[must_use]
pub fn practice_sends(status: PracticeStatus) -> bool {
    status.is_syncing()
}

/// What to do with a due item first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing was sent before, or the last send certainly was not
    /// applied: send.
    Send,
    /// A send began and its outcome is unknown: look for it in Ascend; send
    /// again only if it is not there.
    LookUp,
}

/// The first step for a due item.
#[must_use]
pub fn next_step(item: &OutboxItem) -> Step {
    if item.status == ItemStatus::Sending {
        Step::LookUp
    } else {
        Step::Send
    }
}

/// Whether a failed send may have reached Ascend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It certainly did not (refused, throttled, never connected).
    No,
    /// It may have (a timeout, a 5xx, a lost connection after sending).
    Unknown,
}

/// What a failure makes of an item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterFailure {
    /// Try again (`Applied::No`: send; `Applied::Unknown`: look up first)
    /// at this time.
    Retry(OffsetDateTime),
    /// Give up: the item is dead, kept with its reason.
    Dead,
}

/// The item's fate after its `attempts`-th send failed at `now`. A refusal
/// (`retryable` false: Ascend answered 4xx, the request is wrong) is dead
/// at once; otherwise retried with doubling delays from `base` until
/// [`MAX_ATTEMPTS`] sends have begun. An unknown outcome at the last
/// attempt is still looked up once before the item is given up, so a
/// write that did land is recorded `sent`, not `dead`.
#[must_use]
pub fn after_failure(
    attempts: u32,
    applied: Applied,
    retryable: bool,
    base: Duration,
    now: OffsetDateTime,
) -> AfterFailure {
    if !retryable && applied == Applied::No {
        return AfterFailure::Dead;
    }
    if attempts >= MAX_ATTEMPTS && applied == Applied::No {
        return AfterFailure::Dead;
    }
    AfterFailure::Retry(now + retry_delay(attempts, base))
}

/// The delay after the `attempts`-th send: `base` doubled per attempt, at
/// most [`MAX_RETRY_DELAY`].
#[must_use]
pub fn retry_delay(attempts: u32, base: Duration) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    base.saturating_mul(factor).min(MAX_RETRY_DELAY)
}

/// Whether a looked-up item that Ascend does not have may be sent again:
/// not once its sends are used up (it is given up instead).
#[must_use]
pub fn may_send_again(attempts: u32) -> bool {
    attempts < MAX_ATTEMPTS
}

/// The one line a write-back job's history says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tally {
    /// Items that reached Ascend by this job's send.
    pub sent: u64,
    /// Items found in Ascend after a lost answer (recorded, not sent).
    pub found: u64,
    /// Items held (type off).
    pub blocked: u64,
    /// Items that failed and will be tried again.
    pub retrying: u64,
    /// Items given up.
    pub dead: u64,
}

impl Tally {
    /// "sent 3, found after a lost answer 1, held 1, retrying 0, given up 0".
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "sent {}, found in Ascend after a lost answer {}, held {}, to retry {}, given up {}",
            self.sent, self.found, self.blocked, self.retrying, self.dead
        )
    }

    /// Whether every item of the job reached Ascend or was held as the
    /// settings say (nothing to retry, nothing given up).
    #[must_use]
    pub fn clean(&self) -> bool {
        self.retrying == 0 && self.dead == 0
    }
}

#[cfg(test)]
mod tests;
