//! The job message: what the scheduler, Force Sync Now and an initial
//! sync's plan put on the queue and a worker takes off it, as versioned
//! JSON.
//!
//! Wire form (`v` first; fields a kind does not have are left out):
//!
//! ```json
//! {"v":1,"job_id":"j-1","practice_id":"p-1","kind":"initial_chunk","trigger":"schedule",
//!  "resource":"patients","chunk_id":42,"enqueued_at":"2025-01-02T03:04:05.123456Z"}
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
//!
//! Jobs are made by their constructors only ([`Job::for_practice`],
//! [`Job::chunk`]), and [`Job::lane`] is the one lane policy.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::{Lane, Outgoing, PracticeStatus, Resource};

/// The version this build writes and the only one it reads.
pub const JOB_VERSION: u32 = 1;

/// How many characters of a refused value an error shows.
pub const ECHO_LIMIT: usize = 64;

/// The longest `job_id` or `practice_id` accepted, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// What a job does: the kind of a [`Job`], as written on the wire and in
/// history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Plan a practice's initial sync (split each resource into id ranges).
    InitialPlan,
    /// Sync one planned chunk of the initial sync.
    InitialChunk,
    /// One incremental cycle of a practice.
    Incremental,
    /// Send a practice's due write-back items (issue 15).
    Writeback,
}

impl JobKind {
    /// Every kind, in declaration order.
    pub const ALL: [JobKind; 4] = [
        JobKind::InitialPlan,
        JobKind::InitialChunk,
        JobKind::Incremental,
        JobKind::Writeback,
    ];

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            JobKind::InitialPlan => "initial_plan",
            JobKind::InitialChunk => "initial_chunk",
            JobKind::Incremental => "incremental",
            JobKind::Writeback => "writeback",
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
    /// An administrator's command (the demo's cycles, `sync`).
    Admin,
}

impl Trigger {
    /// Every trigger, in declaration order.
    pub const ALL: [Trigger; 3] = [Trigger::Schedule, Trigger::Force, Trigger::Admin];

    /// The wire name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Force => "force",
            Trigger::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Option<Trigger> {
        Trigger::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

/// What every job carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobMeta {
    /// Unique per enqueue (duplicates of one delivery share it).
    pub job_id: String,
    /// The practice the job is for.
    pub practice_id: String,
    /// Why.
    pub trigger: Trigger,
    /// When the job was enqueued (written in UTC, RFC 3339).
    pub enqueued_at: OffsetDateTime,
}

/// One job message: each kind with exactly its fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Job {
    /// Plan the practice's initial sync, then enqueue its pending chunks.
    InitialPlan {
        /// Who, why, when.
        meta: JobMeta,
    },
    /// Pull one planned chunk of the practice's initial sync.
    InitialChunk {
        /// Who, why, when.
        meta: JobMeta,
        /// The chunk's resource.
        resource: Resource,
        /// The chunk (`sync_chunks.chunk_id`).
        chunk_id: i64,
    },
    /// One incremental cycle of the practice.
    Incremental {
        /// Who, why, when.
        meta: JobMeta,
    },
    /// Send the practice's due write-back items of enabled types.
    Writeback {
        /// Who, why, when.
        meta: JobMeta,
    },
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
         initial_chunk, incremental); it goes to the dead letters: run \
         workers of the same release as the scheduler, then redrive it"
    )]
    UnknownKind {
        /// The kind found, escaped and cut short.
        kind: String,
    },
    /// A `trigger` this build does not know.
    #[error(
        "the job message's trigger {trigger} is not one this build knows (schedule, force, \
         admin); it goes to the dead letters: run workers of the same release as the \
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
    enqueued_at: Value,
}

impl Job {
    /// The job a practice in `status` gets when its interval comes round
    /// or a person forces it: the initial sync's plan while the initial
    /// sync runs, else an incremental cycle. The scheduler and Force Sync
    /// Now both make their jobs here.
    #[must_use]
    pub fn for_practice(
        status: PracticeStatus,
        job_id: String,
        practice_id: String,
        trigger: Trigger,
        now: OffsetDateTime,
    ) -> Job {
        let meta = JobMeta {
            job_id,
            practice_id,
            trigger,
            enqueued_at: now,
        };
        match status {
            PracticeStatus::InitialSync => Job::InitialPlan { meta },
            _ => Job::Incremental { meta },
        }
    }

    /// A write-back job for `practice_id`: sends its due items. The
    /// scheduler makes them (its trigger) for practices with items due.
    #[must_use]
    pub fn writeback(
        job_id: String,
        practice_id: String,
        trigger: Trigger,
        now: OffsetDateTime,
    ) -> Job {
        Job::Writeback {
            meta: JobMeta {
                job_id,
                practice_id,
                trigger,
                enqueued_at: now,
            },
        }
    }

    /// The job of one planned chunk, enqueued by the plan job `plan`: its
    /// id is the plan's with `-c{chunk_id}`, its trigger the plan's.
    #[must_use]
    pub fn chunk(plan: &JobMeta, resource: Resource, chunk_id: i64, now: OffsetDateTime) -> Job {
        Job::InitialChunk {
            meta: JobMeta {
                job_id: format!("{}-c{chunk_id}", plan.job_id),
                practice_id: plan.practice_id.clone(),
                trigger: plan.trigger,
                enqueued_at: now,
            },
            resource,
            chunk_id,
        }
    }

    /// Who, why, when.
    #[must_use]
    pub fn meta(&self) -> &JobMeta {
        match self {
            Job::InitialPlan { meta }
            | Job::InitialChunk { meta, .. }
            | Job::Incremental { meta }
            | Job::Writeback { meta } => meta,
        }
    }

    /// The job's id.
    #[must_use]
    pub fn job_id(&self) -> &str {
        &self.meta().job_id
    }

    /// The job's practice.
    #[must_use]
    pub fn practice_id(&self) -> &str {
        &self.meta().practice_id
    }

    /// The kind.
    #[must_use]
    pub fn kind(&self) -> JobKind {
        match self {
            Job::InitialPlan { .. } => JobKind::InitialPlan,
            Job::InitialChunk { .. } => JobKind::InitialChunk,
            Job::Incremental { .. } => JobKind::Incremental,
            Job::Writeback { .. } => JobKind::Writeback,
        }
    }

    /// The lane policy, in one place: a person's Force Sync Now goes on the
    /// Priority lane, except an initial sync's chunks, which always go on
    /// the Standard lane (a forced initial sync's plan is one Priority
    /// message; its hundreds of chunks must not hold up other practices'
    /// Force Sync Now).
    #[must_use]
    pub fn lane(&self) -> Lane {
        match self {
            Job::InitialChunk { .. } => Lane::Standard,
            _ if self.meta().trigger == Trigger::Force => Lane::Priority,
            _ => Lane::Standard,
        }
    }

    /// The message to send: the body on the job's lane after `delay`.
    #[must_use]
    pub fn outgoing(&self, delay: Duration) -> Outgoing {
        Outgoing {
            body: self.encode(),
            lane: self.lane(),
            delay,
        }
    }

    /// The message body.
    ///
    /// `enqueued_at` is written in UTC, RFC 3339. A time RFC 3339 cannot
    /// express (a year before 0000, which no clock gives) is written as a
    /// number instead, which [`Job::decode`] refuses: such a job ends in the
    /// dead letters, visibly, rather than being changed silently.
    #[must_use]
    pub fn encode(&self) -> String {
        let meta = self.meta();
        let utc = meta.enqueued_at.to_offset(time::UtcOffset::UTC);
        let enqueued_at = utc
            .format(&Rfc3339)
            .map_or_else(|_| Value::from(utc.unix_timestamp()), Value::String);
        let (resource, chunk_id) = match self {
            Job::InitialChunk {
                resource, chunk_id, ..
            } => (Some(resource.name()), Some(*chunk_id)),
            _ => (None, None),
        };
        let wire = Wire {
            v: JOB_VERSION,
            job_id: &meta.job_id,
            practice_id: &meta.practice_id,
            kind: self.kind(),
            trigger: meta.trigger,
            resource,
            chunk_id,
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
        let enqueued_text = required_str(&map, "enqueued_at")?;
        let enqueued_at = OffsetDateTime::parse(enqueued_text, &Rfc3339).map_err(|_| {
            malformed(format!(
                "field \"enqueued_at\" is not an RFC 3339 time: {}",
                shown(enqueued_text)
            ))
        })?;

        let meta = JobMeta {
            job_id,
            practice_id,
            trigger,
            enqueued_at,
        };
        let job = match kind {
            JobKind::InitialPlan => Job::InitialPlan { meta },
            JobKind::Incremental => Job::Incremental { meta },
            JobKind::Writeback => Job::Writeback { meta },
            JobKind::InitialChunk => {
                let chunk_id = chunk_id.ok_or_else(|| {
                    invalid("an initial_chunk job needs \"chunk_id\", and it is missing".into())
                })?;
                let resource = resource.ok_or_else(|| {
                    invalid("an initial_chunk job needs \"resource\", and it is missing".into())
                })?;
                let resource = resource.parse::<Resource>().map_err(|_| {
                    invalid(format!(
                        "\"resource\" is not a resource this build syncs: {}",
                        shown(&resource)
                    ))
                })?;
                Job::InitialChunk {
                    meta,
                    resource,
                    chunk_id,
                }
            }
        };
        job.validate()?;
        Ok(job)
    }

    /// Checks the values [`Job::decode`] checks (senders call it before
    /// enqueueing, so a bad job fails at its source).
    pub fn validate(&self) -> Result<(), JobError> {
        check_id("job_id", self.job_id())?;
        check_id("practice_id", self.practice_id())?;
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
