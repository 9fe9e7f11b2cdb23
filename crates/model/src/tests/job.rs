//! The job message: its wire form, and every way a body is refused.

use serde_json::{Value, json};
use time::macros::datetime;

use crate::job::{ECHO_LIMIT, MAX_ID_LEN};
use crate::{
    JOB_VERSION, Job, JobError, JobKind, JobMeta, Lane, PracticeStatus, Resource, Trigger,
};

fn meta(trigger: Trigger) -> JobMeta {
    JobMeta {
        job_id: "job-1".into(),
        practice_id: "practice-1".into(),
        trigger,
        enqueued_at: datetime!(2025-01-02 03:04:05.123456 UTC),
    }
}

fn chunk_job() -> Job {
    Job::InitialChunk {
        meta: meta(Trigger::Schedule),
        resource: Resource::Patients,
        chunk_id: 42,
    }
}

/// A job of each kind with `trigger`.
fn every_kind(trigger: Trigger) -> Vec<Job> {
    vec![
        Job::InitialPlan {
            meta: meta(trigger),
        },
        Job::InitialChunk {
            meta: meta(trigger),
            resource: Resource::TxCases,
            chunk_id: 7,
        },
        Job::Incremental {
            meta: meta(trigger),
        },
        Job::Writeback {
            meta: meta(trigger),
        },
    ]
}

/// A valid body as JSON, to be damaged by a test.
fn valid_value() -> Value {
    serde_json::from_str(&chunk_job().encode()).expect("encode writes JSON")
}

fn decode_value(value: &Value) -> Result<Job, JobError> {
    Job::decode(&value.to_string())
}

#[test]
fn encode_writes_the_documented_wire_form() {
    let value = valid_value();
    assert_eq!(
        value,
        json!({
            "v": 1,
            "job_id": "job-1",
            "practice_id": "practice-1",
            "kind": "initial_chunk",
            "trigger": "schedule",
            "resource": "patients",
            "chunk_id": 42,
            "enqueued_at": "2025-01-02T03:04:05.123456Z",
        })
    );
    assert!(
        chunk_job().encode().starts_with("{\"v\":1,"),
        "the version comes first"
    );
}

#[test]
fn every_kind_and_trigger_round_trips() {
    for trigger in Trigger::ALL {
        let jobs = every_kind(trigger);
        let kinds: Vec<JobKind> = jobs.iter().map(Job::kind).collect();
        assert_eq!(kinds, JobKind::ALL);
        for job in jobs {
            assert_eq!(Job::decode(&job.encode()), Ok(job));
        }
    }
    let names: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        ["initial_plan", "initial_chunk", "incremental", "writeback"]
    );
    let names: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, ["schedule", "force", "admin"]);
}

#[test]
fn fields_a_kind_does_not_have_are_left_out_and_ignored() {
    let job = Job::Incremental {
        meta: meta(Trigger::Schedule),
    };
    let body = job.encode();
    let value: Value = serde_json::from_str(&body).expect("JSON");
    let object = value.as_object().expect("an object");
    for absent in ["resource", "chunk_id", "range"] {
        assert!(!object.contains_key(absent), "{absent} is left out");
    }
    assert_eq!(Job::decode(&body), Ok(job.clone()));
    // null reads as absent; a chunk field on another kind is ignored.
    let mut with_nulls = value.clone();
    with_nulls["resource"] = Value::Null;
    with_nulls["chunk_id"] = json!(3);
    assert_eq!(decode_value(&with_nulls), Ok(job));
}

#[test]
fn constructors_choose_the_kind_and_name_chunks_after_their_plan() {
    let now = datetime!(2025-01-02 03:04:05 UTC);
    let make = |status| Job::for_practice(status, "j".into(), "p".into(), Trigger::Force, now);
    assert_eq!(
        make(PracticeStatus::InitialSync).kind(),
        JobKind::InitialPlan
    );
    assert_eq!(make(PracticeStatus::Active).kind(), JobKind::Incremental);
    let plan = make(PracticeStatus::InitialSync);
    let chunk = Job::chunk(plan.meta(), Resource::Visits, 12, now);
    assert_eq!(chunk.job_id(), "j-c12");
    assert_eq!(chunk.practice_id(), "p");
    assert_eq!(chunk.meta().trigger, Trigger::Force);
    assert!(matches!(
        chunk,
        Job::InitialChunk {
            resource: Resource::Visits,
            chunk_id: 12,
            ..
        }
    ));
}

#[test]
fn enqueued_at_is_written_in_utc_and_any_offset_is_read() {
    let mut at_offset = meta(Trigger::Schedule);
    at_offset.enqueued_at = datetime!(2025-01-02 05:04:05 +02:00);
    let job = Job::Incremental { meta: at_offset };
    let value: Value = serde_json::from_str(&job.encode()).expect("JSON");
    assert_eq!(value["enqueued_at"], "2025-01-02T03:04:05Z");
    let decoded = Job::decode(&job.encode()).expect("decodes");
    assert_eq!(decoded.meta().enqueued_at, job.meta().enqueued_at);
}

#[test]
fn unknown_fields_are_ignored() {
    let mut value = valid_value();
    value["added_by_a_newer_sender"] = json!({"deep": [1, 2, {"x": null}]});
    value["another"] = json!("text");
    assert_eq!(decode_value(&value), Ok(chunk_job()));
}

#[test]
fn non_json_and_non_objects_are_malformed() {
    for body in [
        "",
        "not json",
        "{\"v\":1,",
        "[1,2,3]",
        "\"a string\"",
        "42",
        "null",
        "{\"v\":1}}",
    ] {
        let error = Job::decode(body).expect_err("refused");
        assert!(
            matches!(error, JobError::Malformed { .. }),
            "{body:?} gave {error:?}"
        );
        assert!(
            error.to_string().contains("dead letters"),
            "the text says where the message goes: {error}"
        );
    }
}

#[test]
fn missing_or_ill_typed_fields_are_malformed() {
    for field in [
        "v",
        "job_id",
        "practice_id",
        "kind",
        "trigger",
        "enqueued_at",
    ] {
        let mut value = valid_value();
        value.as_object_mut().expect("object").remove(field);
        let error = decode_value(&value).expect_err("refused");
        assert!(
            matches!(&error, JobError::Malformed { detail } if detail.contains(field)),
            "without {field}: {error:?}"
        );
    }
    let cases = [
        ("v", json!("1")),
        ("v", json!(1.5)),
        ("v", json!(-1)),
        ("job_id", json!(7)),
        ("practice_id", json!(["p"])),
        ("kind", json!({"k": 1})),
        ("trigger", json!(true)),
        ("chunk_id", json!("42")),
        ("chunk_id", json!(4.2)),
        ("resource", json!(5)),
        ("enqueued_at", json!(1_700_000_000)),
        ("enqueued_at", json!("yesterday")),
    ];
    for (field, bad) in cases {
        let mut value = valid_value();
        value[field] = bad.clone();
        let error = decode_value(&value).expect_err("refused");
        assert!(
            matches!(&error, JobError::Malformed { detail } if detail.contains(field)),
            "{field} = {bad}: {error:?}"
        );
    }
}

#[test]
fn another_version_is_unsupported_whatever_else_it_holds() {
    for version in [0_u64, 2, 99, u64::MAX] {
        let body = json!({"v": version, "entirely": "different"}).to_string();
        assert_eq!(
            Job::decode(&body),
            Err(JobError::UnsupportedVersion { version })
        );
    }
    let error = JobError::UnsupportedVersion { version: 2 };
    let text = error.to_string();
    assert!(text.contains('2') && text.contains(&JOB_VERSION.to_string()));
    assert!(text.contains("dead letters"));
}

#[test]
fn unknown_kind_and_trigger_are_named() {
    let mut value = valid_value();
    value["kind"] = json!("defragment");
    assert_eq!(
        decode_value(&value),
        Err(JobError::UnknownKind {
            kind: "\"defragment\"".into()
        })
    );
    let mut value = valid_value();
    value["trigger"] = json!("Schedule");
    assert_eq!(
        decode_value(&value),
        Err(JobError::UnknownTrigger {
            trigger: "\"Schedule\"".into()
        })
    );
}

#[test]
fn values_that_make_no_job_are_invalid() {
    type Damage = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Damage)> = vec![
        ("empty job_id", Box::new(|v| v["job_id"] = json!(""))),
        (
            "empty practice_id",
            Box::new(|v| v["practice_id"] = json!("")),
        ),
        ("empty resource", Box::new(|v| v["resource"] = json!(""))),
        (
            "unknown resource",
            Box::new(|v| v["resource"] = json!("invoices")),
        ),
        (
            "chunk without resource",
            Box::new(|v| {
                v.as_object_mut().expect("object").remove("resource");
            }),
        ),
        (
            "control character",
            Box::new(|v| v["practice_id"] = json!("p\u{0}1")),
        ),
        (
            "chunk without chunk_id",
            Box::new(|v| {
                v.as_object_mut().expect("object").remove("chunk_id");
            }),
        ),
        (
            "long id",
            Box::new(|v| v["job_id"] = json!("j".repeat(MAX_ID_LEN + 1))),
        ),
    ];
    for (what, damage) in cases {
        let mut value = valid_value();
        damage(&mut value);
        let error = decode_value(&value).expect_err(what);
        assert!(
            matches!(error, JobError::Invalid { .. }),
            "{what}: {error:?}"
        );
        assert!(error.to_string().contains("dead letters"), "{what}");
    }
    // The same rules, before sending.
    let mut empty = meta(Trigger::Schedule);
    empty.practice_id.clear();
    let job = Job::Incremental { meta: empty };
    assert!(matches!(job.validate(), Err(JobError::Invalid { .. })));
    assert_eq!(chunk_job().validate(), Ok(()));
}

#[test]
fn hostile_input_gives_bounded_errors() {
    let huge = "x".repeat(1_000_000);
    let bound = 600;

    let mut value = valid_value();
    value["kind"] = json!(huge);
    let error = decode_value(&value).expect_err("refused");
    assert!(matches!(error, JobError::UnknownKind { .. }));
    assert!(
        error.to_string().len() < bound,
        "{} bytes",
        error.to_string().len()
    );

    let mut value = valid_value();
    value["trigger"] = json!(huge);
    let error = decode_value(&value).expect_err("refused");
    assert!(error.to_string().len() < bound);

    let mut value = valid_value();
    value["job_id"] = json!(huge);
    let error = decode_value(&value).expect_err("refused");
    assert!(matches!(error, JobError::Invalid { .. }));
    assert!(error.to_string().len() < bound);

    let mut value = valid_value();
    value["enqueued_at"] = json!(huge);
    let error = decode_value(&value).expect_err("refused");
    assert!(error.to_string().len() < bound);

    let mut value = valid_value();
    value["chunk_id"] = json!(huge);
    let error = decode_value(&value).expect_err("refused");
    assert!(error.to_string().len() < bound);

    // Escapes do not smuggle control characters into a log line.
    let mut value = valid_value();
    value["kind"] = json!("evil\n\u{1b}[31mred");
    let error = decode_value(&value).expect_err("refused");
    let text = error.to_string();
    assert!(!text.contains('\n') && !text.contains('\u{1b}'), "{text}");

    // Deep nesting: refused, not a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(matches!(
        Job::decode(&deep),
        Err(JobError::Malformed { .. })
    ));
    let valid = chunk_job().encode();
    let body = format!(
        "{},\"junk\":{}1{}}}",
        &valid[..valid.len() - 1],
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    assert!(matches!(
        Job::decode(&body),
        Err(JobError::Malformed { .. })
    ));

    // A huge body with a valid job inside is still read.
    let mut value = valid_value();
    value["padding"] = json!(huge);
    assert_eq!(decode_value(&value), Ok(chunk_job()));
}

#[test]
fn shown_input_is_cut_and_escaped() {
    let long = "é".repeat(ECHO_LIMIT * 3);
    let shown = crate::job::shown(&long);
    assert!(shown.contains(&format!("({} characters)", ECHO_LIMIT * 3)));
    assert_eq!(shown.matches('é').count(), ECHO_LIMIT);
    assert_eq!(crate::job::shown("a\"b"), "\"a\\\"b\"");
}

#[test]
fn force_jobs_go_on_the_priority_lane_but_chunks_never_do() {
    let [plan, chunk, incremental, writeback] =
        <[Job; 4]>::try_from(every_kind(Trigger::Force)).expect("four kinds");
    assert_eq!(plan.lane(), Lane::Priority);
    assert_eq!(incremental.lane(), Lane::Priority);
    assert_eq!(writeback.lane(), Lane::Priority);
    assert_eq!(
        chunk.lane(),
        Lane::Standard,
        "a forced initial sync's chunks"
    );
    for trigger in [Trigger::Schedule, Trigger::Admin] {
        for job in every_kind(trigger) {
            assert_eq!(job.lane(), Lane::Standard, "{job:?}");
            assert_eq!(job.outgoing(std::time::Duration::ZERO).lane, Lane::Standard);
        }
    }
}
