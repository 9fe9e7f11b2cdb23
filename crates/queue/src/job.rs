//! The job message: what the scheduler (and the admin tools) put on the
//! queue and a worker takes off it, as versioned JSON.
//!
//! Wire form (`v` first; absent optional fields are left out):
//!
//! ```json
//! {"v":1,"job_id":"j-1","practice_id":"p-1","kind":"initial_chunk","trigger":"schedule",
//!  "resource":"patients","chunk_id":42,"range":{"from":1,"to":5000},
//!  "enqueued_at":"2025-01-02T03:04:05.123456Z"}
//! ```
//!
//! Decoding is tolerant of unknown *fields* (a newer sender may add some)
//! but not of an unknown version, kind or trigger: those are errors a
//! worker cannot act on, and the message goes to the dead letters with the
//! error's text as its reason. Every error text is bounded: echoed input is
//! cut to [`ECHO_LIMIT`] characters and escaped.
//!
//! Bodies carry identifiers only (practice, job, resource, ids), never
//! credentials or records, so a body may be shown to an operator.

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The version this build writes and the only one it reads.
pub const JOB_VERSION: u32 = 1;

/// How many characters of a refused value an error shows.
pub const ECHO_LIMIT: usize = 64;

/// The longest `job_id` or `practice_id` accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Plan a practice's initial sync (split each resource into id ranges).
    InitialPlan,
    /// Sync one planned chunk (`chunk_id`) of the initial sync.
    InitialChunk,
    /// One incremental cycle of a practice.
    Incremental,
    /// Re-read a practice (or one `resource`) from the API.
    Resync,
    /// Write changes back to Ascend.
    WriteBack,
}

impl JobKind {
    /// Every kind, in declaration order.
    pub const ALL: [JobKind; 5] = [
        JobKind::InitialPlan,
        JobKind::InitialChunk,
        JobKind::Incremental,
        JobKind::Resync,
        JobKind::WriteBack,
    ];

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::InitialPlan => "initial_plan",
            JobKind::InitialChunk => "initial_chunk",
            JobKind::Incremental => "incremental",
            JobKind::Resync => "resync",
            JobKind::WriteBack => "write_back",
        }
    }

    fn parse(text: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// Why a job was enqueued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The scheduler: the practice's interval came round.
    Schedule,
    /// A person pressed "Force Sync Now" (goes on the Priority lane).
    Force,
    /// An administrator's command.
    Admin,
    /// Re-enqueued from the dead letters.
    Redrive,
}

impl Trigger {
    /// Every trigger, in declaration order.
    pub const ALL: [Trigger; 4] = [
        Trigger::Schedule,
        Trigger::Force,
        Trigger::Admin,
        Trigger::Redrive,
    ];

    /// The wire name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Force => "force",
            Trigger::Admin => "admin",
            Trigger::Redrive => "redrive",
        }
    }

    fn parse(text: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// A half-open id range `[from, to)`, as the initial sync plans them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct IdRange {
    /// The first id (inclusive).
    pub from: i64,
    /// The end (exclusive); greater than `from`.
    pub to: i64,
}

/// One job message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// Unique per enqueue (duplicates of one delivery share it).
    pub job_id: String,
    /// The practice the job is for.
    pub practice_id: String,
    /// What to do.
    pub kind: JobKind,
    /// Why.
    pub trigger: Trigger,
    /// The landed table / resource name, when the job is about one.
    pub resource: Option<String>,
    /// The initial-sync chunk; required for [`JobKind::InitialChunk`].
    pub chunk_id: Option<i64>,
    /// An id range, when the job is about one.
    pub range: Option<IdRange>,
    /// When the job was enqueued (written in UTC, RFC 3339).
    pub enqueued_at: OffsetDateTime,
}

/// Why a message body is not a job this build can run. Each text says
/// what happened and that the message goes to the dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Not JSON, not an object, or a field missing or of the wrong type.
    #[error(
        "the job message is malformed ({detail}); it goes to the dead letters: it was not \
         written by this program's scheduler, or was damaged on the way"
    )]
    Malformed {
        /// What is wrong (bounded; input shown escaped and cut short).
        detail: String,
    },
    /// A version this build does not read.
    #[error(
        "the job message has version {version}, this build reads only version {JOB_VERSION}; it \
         goes to the dead letters: run workers of the same release as the scheduler, then \
         redrive it"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u64,
    },
    /// A `kind` this build does not know.
    #[error(
        "the job message's kind {kind} is not one this build knows (initial_plan, \
         initial_chunk, incremental, resync, write_back); it goes to the dead letters: run \
         workers of the same release as the scheduler, then redrive it"
    )]
    UnknownKind {
        /// The kind found, escaped and cut short.
        kind: String,
    },
    /// A `trigger` this build does not know.
    #[error(
        "the job message's trigger {trigger} is not one this build knows (schedule, force, \
         admin, redrive); it goes to the dead letters: run workers of the same release as the \
         scheduler, then redrive it"
    )]
    UnknownTrigger {
        /// The trigger found, escaped and cut short.
        trigger: String,
    },
    /// Well-formed, but its values do not make a job (empty ids, a chunk
    /// job without its chunk, an empty range...).
    #[error(
        "the job message is not a valid job ({detail}); it goes to the dead letters: this is a \
         bug in its sender"
    )]
    Invalid {
        /// What is wrong (bounded).
        detail: String,
    },
}

/// The wire form, for encoding.
#[derive(Serialize)]
struct Wire<'a> {
    v: u32,
    job_id: &'a str,
    practice_id: &'a str,
    kind: JobKind,
    trigger: Trigger,
    #[serde(skip_serializing_if = "Option::is_none")]
    resource: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunk_id: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    range: Option<IdRange>,
    enqueued_at: Value,
}

impl Job {
    /// The message body.
    ///
    /// `enqueued_at` is written in UTC, RFC 3339. A time RFC 3339 cannot
    /// express (a year before 0000, which no clock gives) is written as a
    /// number instead, which [`Job::decode`] refuses: such a job ends in the
    /// dead letters, visibly, rather than being changed silently.
    #[must_use]
    pub fn encode(&self) -> String {
        let utc = self.enqueued_at.to_offset(time::UtcOffset::UTC);
        let enqueued_at = utc
            .format(&Rfc3339)
            .map_or_else(|_| Value::from(utc.unix_timestamp()), Value::String);
        let wire = Wire {
            v: JOB_VERSION,
            job_id: &self.job_id,
            practice_id: &self.practice_id,
            kind: self.kind,
            trigger: self.trigger,
            resource: self.resource.as_deref(),
            chunk_id: self.chunk_id,
            range: self.range,
            enqueued_at,
        };
        // Serializing strings, integers and enums into a String cannot
        // fail; the fallback keeps this total anyway (and decodes as
        // Malformed).
        serde_json::to_string(&wire).unwrap_or_else(|_| String::from("{}"))
    }

    /// Reads a message body. Unknown fields are ignored; see [`JobError`]
    /// for what is refused.
    pub fn decode(body: &str) -> Result<Job, JobError> {
        let value: Value = serde_json::from_str(body).map_err(|e| JobError::Malformed {
            detail: format!(
                "not JSON: {} at line {} column {}",
                json_category(&e),
                e.line(),
                e.column()
            ),
        })?;
        let Value::Object(map) = value else {
            return Err(malformed(format!(
                "the body is {} where a JSON object is expected",
                type_name(&value)
            )));
        };

        // The version first: another version may have other fields.
        let version = match map.get("v") {
            None => return Err(malformed("field \"v\" (the version) is missing".into())),
            Some(v) => v.as_u64().ok_or_else(|| {
                malformed(format!(
                    "field \"v\" must be a whole number, found {}",
                    type_name(v)
                ))
            })?,
        };
        if version != u64::from(JOB_VERSION) {
            return Err(JobError::UnsupportedVersion { version });
        }

        let kind_text = required_str(&map, "kind")?;
        let kind = JobKind::parse(kind_text).ok_or_else(|| JobError::UnknownKind {
            kind: shown(kind_text),
        })?;
        let trigger_text = required_str(&map, "trigger")?;
        let trigger = Trigger::parse(trigger_text).ok_or_else(|| JobError::UnknownTrigger {
            trigger: shown(trigger_text),
        })?;
        let job_id = required_str(&map, "job_id")?.to_owned();
        let practice_id = required_str(&map, "practice_id")?.to_owned();
        let resource = optional(
            &map,
            "resource",
            |v| v.as_str().map(str::to_owned),
            "a string",
        )?;
        let chunk_id = optional(&map, "chunk_id", Value::as_i64, "a whole number")?;
        let range = optional(&map, "range", read_range, "an object {\"from\":N,\"to\":N}")?;
        let enqueued_text = required_str(&map, "enqueued_at")?;
        let enqueued_at = OffsetDateTime::parse(enqueued_text, &Rfc3339).map_err(|_| {
            malformed(format!(
                "field \"enqueued_at\" is not an RFC 3339 time: {}",
                shown(enqueued_text)
            ))
        })?;

        let job = Job {
            job_id,
            practice_id,
            kind,
            trigger,
            resource,
            chunk_id,
            range,
            enqueued_at,
        };
        job.validate()?;
        Ok(job)
    }

    /// Checks the values [`Job::decode`] checks (senders call it before
    /// enqueueing, so a bad job fails at its source).
    pub fn validate(&self) -> Result<(), JobError> {
        check_id("job_id", &self.job_id)?;
        check_id("practice_id", &self.practice_id)?;
        if let Some(resource) = &self.resource {
            check_id("resource", resource)?;
        }
        if self.kind == JobKind::InitialChunk && self.chunk_id.is_none() {
            return Err(invalid(
                "an initial_chunk job needs \"chunk_id\", and it is missing".into(),
            ));
        }
        if let Some(range) = self.range
            && range.from >= range.to
        {
            return Err(invalid(format!(
                "its range is empty: \"from\" ({}) must be less than \"to\" ({})",
                range.from, range.to
            )));
        }
        Ok(())
    }
}

fn malformed(detail: String) -> JobError {
    JobError::Malformed { detail }
}

fn invalid(detail: String) -> JobError {
    JobError::Invalid { detail }
}

fn check_id(field: &str, value: &str) -> Result<(), JobError> {
    if value.is_empty() {
        return Err(invalid(format!("\"{field}\" is empty")));
    }
    if value.len() > MAX_ID_LEN {
        return Err(invalid(format!(
            "\"{field}\" is longer than {MAX_ID_LEN} bytes: {}",
            shown(value)
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(format!(
            "\"{field}\" holds a control character: {}",
            shown(value)
        )));
    }
    Ok(())
}

fn required_str<'a>(map: &'a Map<String, Value>, field: &str) -> Result<&'a str, JobError> {
    match map.get(field) {
        None | Some(Value::Null) => Err(malformed(format!("field \"{field}\" is missing"))),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(malformed(format!(
            "field \"{field}\" must be a string, found {}",
            type_name(other)
        ))),
    }
}

/// An optional field: absent or `null` is `None`; present, it must read.
fn optional<T>(
    map: &Map<String, Value>,
    field: &str,
    read: impl Fn(&Value) -> Option<T>,
    expected: &str,
) -> Result<Option<T>, JobError> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => read(value).map(Some).ok_or_else(|| {
            malformed(format!(
                "field \"{field}\" must be {expected}, found {}",
                describe(value)
            ))
        }),
    }
}

fn read_range(value: &Value) -> Option<IdRange> {
    let map = value.as_object()?;
    Some(IdRange {
        from: map.get("from")?.as_i64()?,
        to: map.get("to")?.as_i64()?,
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value's type, and a string's or number's text cut short.
fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {}", shown(s)),
        Value::Number(n) => format!("the number {}", shown(&n.to_string())),
        Value::Object(map) => format!("an object with {} field(s)", map.len()),
        other => type_name(other).to_owned(),
    }
}

/// serde_json's error category, without its text (which may quote input).
fn json_category(error: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match error.classify() {
        Category::Io => "read error",
        Category::Syntax => "syntax error",
        Category::Data => "unexpected data",
        Category::Eof => "unexpected end of input",
    }
}

/// `value` escaped (as a Rust string literal) and cut to [`ECHO_LIMIT`]
/// characters, with `…` and the full length when cut.
#[must_use]
pub fn shown(value: &str) -> String {
    let count = value.chars().count();
    if count <= ECHO_LIMIT {
        format!("{value:?}")
    } else {
        let head: String = value.chars().take(ECHO_LIMIT).collect();
        format!("{head:?}… ({count} characters)")
    }
}
