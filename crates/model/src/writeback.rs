//! Write-back (issue 15): what the platform may write into a practice's
//! Ascend, as it is stored in the outbox and handed to the client.
//!
//! A request arrives as JSON, is checked by `sync_core::writeback::parse`
//! (the one place that knows each type's schema) into a [`Write`], and is
//! stored in that typed form. The client turns a [`Write`] into an API call
//! (`ascend_client::writes`, the one place that knows the vendor's paths).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

text_enum!(
    /// A type of write-back. Each is off by default and switched per
    /// practice (`writeback settings`).
    WritebackType, "write-back type", {
        /// An SMS, written as a patient note attributed to the practice's
        /// chosen provider.
        SmsLog => "sms_log",
        /// An email, in the patient's communication history.
        EmailLog => "email_log",
        /// A phone call, as a call log entry.
        CallLog => "call_log",
        /// An appointment set to CONFIRMED, or back to UNCONFIRMED.
        Confirmation => "confirmation",
        /// A form or document attached to the patient.
        Document => "document",
        /// A new patient.
        NewPatient => "new_patient",
        /// A new appointment.
        NewAppointment => "new_appointment",
    }
);

text_enum!(
    /// Where an outbox item stands.
    ItemStatus, "write-back status", {
        /// Waiting to be sent (its type was enabled when it was submitted).
        Pending => "pending",
        /// Held: its type is off, or was turned on only after the item was
        /// submitted. Never sent.
        Blocked => "blocked",
        /// A send began and its outcome is not known yet (the request may
        /// have reached Ascend). Looked up in Ascend before any new send.
        Sending => "sending",
        /// Ascend has it (`ascend_id`).
        Sent => "sent",
        /// The last attempt failed; tried again at `next_attempt_at`.
        Failed => "failed",
        /// Given up after its last attempt, or refused by Ascend; kept with
        /// the reason for a person to look at.
        Dead => "dead",
    }
);

text_enum!(
    /// Which way a message went.
    Direction, "direction", {
        /// From the practice to the patient.
        Outbound => "outbound",
        /// From the patient to the practice.
        Inbound => "inbound",
    }
);

text_enum!(
    /// The status a confirmation write-back sets.
    ConfirmationStatus, "confirmation status", {
        /// The patient confirmed.
        Confirmed => "CONFIRMED",
        /// Back to unconfirmed.
        Unconfirmed => "UNCONFIRMED",
    }
);

/// An SMS, written as a patient note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsLog {
    /// The patient's Ascend id.
    pub patient_id: u64,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The other party's number, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// The message.
    pub text: String,
    /// When it was sent (RFC 3339).
    pub sent_at: String,
}

/// An email, in the patient's communication history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailLog {
    /// The patient's Ascend id.
    pub patient_id: u64,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The other party's address, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The subject line.
    pub subject: String,
    /// The text.
    pub body: String,
    /// When it was sent (RFC 3339).
    pub sent_at: String,
}

/// A phone call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallLog {
    /// The patient's Ascend id.
    pub patient_id: u64,
    /// `outbound` or `inbound`.
    pub direction: String,
    /// The other party's number, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// What was said.
    pub summary: String,
    /// How long it lasted, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<u32>,
    /// When it happened (RFC 3339).
    pub at: String,
}

/// An appointment confirmed or unconfirmed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The appointment's Ascend id.
    pub appointment_id: u64,
    /// `CONFIRMED` or `UNCONFIRMED`.
    pub status: String,
}

/// A form or document attached to a patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// The patient's Ascend id.
    pub patient_id: u64,
    /// Its name as staff will see it.
    pub name: String,
    /// Its media type (`application/pdf`).
    pub content_type: String,
    /// Its bytes, base64 (standard alphabet, padded).
    pub content_base64: String,
}

/// A new patient.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPatient {
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Date of birth (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_of_birth: Option<String>,
    /// Email address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Phone number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

/// A new appointment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewAppointment {
    /// The patient's Ascend id.
    pub patient_id: u64,
    /// When it starts (RFC 3339).
    pub start: String,
    /// How long, in minutes.
    pub duration_minutes: u32,
    /// The provider's Ascend id, if chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<u64>,
    /// The operatory's Ascend id, if chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operatory_id: Option<u64>,
    /// A note for staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A checked write-back request of one type, as stored in the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Write {
    /// See [`SmsLog`].
    SmsLog(SmsLog),
    /// See [`EmailLog`].
    EmailLog(EmailLog),
    /// See [`CallLog`].
    CallLog(CallLog),
    /// See [`Confirmation`].
    Confirmation(Confirmation),
    /// See [`Document`].
    Document(Document),
    /// See [`NewPatient`].
    NewPatient(NewPatient),
    /// See [`NewAppointment`].
    NewAppointment(NewAppointment),
}

impl Write {
    /// Its type.
    #[must_use]
    pub fn kind(&self) -> WritebackType {
        match self {
            Write::SmsLog(_) => WritebackType::SmsLog,
            Write::EmailLog(_) => WritebackType::EmailLog,
            Write::CallLog(_) => WritebackType::CallLog,
            Write::Confirmation(_) => WritebackType::Confirmation,
            Write::Document(_) => WritebackType::Document,
            Write::NewPatient(_) => WritebackType::NewPatient,
            Write::NewAppointment(_) => WritebackType::NewAppointment,
        }
    }

    /// The patient it is written to, if it names one.
    #[must_use]
    pub fn patient_id(&self) -> Option<u64> {
        match self {
            Write::SmsLog(w) => Some(w.patient_id),
            Write::EmailLog(w) => Some(w.patient_id),
            Write::CallLog(w) => Some(w.patient_id),
            Write::Document(w) => Some(w.patient_id),
            Write::NewAppointment(w) => Some(w.patient_id),
            Write::Confirmation(_) | Write::NewPatient(_) => None,
        }
    }

    /// The appointment it changes, if any.
    #[must_use]
    pub fn appointment_id(&self) -> Option<u64> {
        match self {
            Write::Confirmation(w) => Some(w.appointment_id),
            _ => None,
        }
    }
}

/// What the worker needs beside the request to send it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteContext {
    /// The text that marks what this item created in Ascend, so a send
    /// whose outcome was lost can be found again instead of repeated
    /// (`asy-` and 16 hex digits, unique per practice and idempotency key).
    pub marker: String,
    /// The provider the practice chose for notes (SMS logs).
    pub note_provider_id: Option<u64>,
    /// The practice's location (0: the whole organization).
    pub location_id: u64,
}

/// One type's switch for a practice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeSetting {
    /// The type.
    pub kind: WritebackType,
    /// Whether it is on.
    pub enabled: bool,
    /// When it was last turned on: only items submitted at or after it are
    /// sent.
    pub enabled_at: Option<OffsetDateTime>,
    /// When it was last changed, and by whom.
    pub changed_at: Option<OffsetDateTime>,
    /// Who changed it last.
    pub changed_by: Option<String>,
}

/// A practice's write-back settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritebackSettings {
    /// The practice.
    pub practice_id: String,
    /// One entry per type, in [`WritebackType::ALL`] order (off unless
    /// stored otherwise).
    pub types: Vec<TypeSetting>,
    /// The provider SMS notes are attributed to.
    pub note_provider_id: Option<u64>,
}

impl WritebackSettings {
    /// The setting of `kind`.
    #[must_use]
    pub fn of(&self, kind: WritebackType) -> Option<&TypeSetting> {
        self.types.iter().find(|t| t.kind == kind)
    }
}

/// One item of the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its number (unique in the deployment).
    pub item_id: i64,
    /// The practice it is written for.
    pub practice_id: String,
    /// Its type.
    pub kind: WritebackType,
    /// The submitter's key: a second submit with it stores nothing new.
    pub idempotency_key: String,
    /// See [`WriteContext::marker`].
    pub marker: String,
    /// The request, as stored (the JSON of a [`Write`]).
    pub body: String,
    /// Where it stands.
    pub status: ItemStatus,
    /// Why it is held, failed or dead.
    pub reason: Option<String>,
    /// Sends begun so far.
    pub attempts: u32,
    /// When it was submitted, and by whom.
    pub submitted_at: OffsetDateTime,
    /// Who submitted it.
    pub submitted_by: String,
    /// When the first send began (a lookup searches from it).
    pub first_sent_at: Option<OffsetDateTime>,
    /// When it may be tried next.
    pub next_attempt_at: Option<OffsetDateTime>,
    /// When it reached Ascend.
    pub sent_at: Option<OffsetDateTime>,
    /// What Ascend calls it (the created record's id; a confirmation's
    /// appointment).
    pub ascend_id: Option<u64>,
    /// Whether `ascend_id` was found by a lookup after a lost outcome
    /// rather than read from Ascend's answer.
    pub found: bool,
}
