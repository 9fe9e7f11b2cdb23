//! The job message: its wire form, and every way a body is refused.

use serde_json::{Value, json};
use time::macros::datetime;

use crate::job::{ECHO_LIMIT, MAX_ID_LEN};
use crate::{IdRange, JOB_VERSION, Job, JobError, JobKind, Lane, Trigger};

fn chunk_job() -> Job {
    Job {
        job_id: "job-1".into(),
        practice_id: "practice-1".into(),
        kind: JobKind::InitialChunk,
        trigger: Trigger::Schedule,
        resource: Some("patients".into()),
        chunk_id: Some(42),
        range: Some(IdRange { from: 1, to: 5000 }),
        enqueued_at: datetime!(2025-01-02 03:04:05.123456 UTC),
    }
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
            "range": {"from": 1, "to": 5000},
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
    for kind in JobKind::ALL {
        for trigger in Trigger::ALL {
            let job = Job {
                kind,
                trigger,
                chunk_id: Some(7),
                ..chunk_job()
            };
            assert_eq!(Job::decode(&job.encode()), Ok(job));
        }
    }
    let names: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "initial_plan",
            "initial_chunk",
            "incremental",
            "resync",
            "write_back"
        ]
    );
    let names: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(names, ["schedule", "force", "admin", "redrive"]);
}

#[test]
fn optional_fields_are_left_out_and_read_back_as_none() {
    let job = Job {
        kind: JobKind::Incremental,
        resource: None,
        chunk_id: None,
        range: None,
        ..chunk_job()
    };
    let body = job.encode();
    let value: Value = serde_json::from_str(&body).expect("JSON");
    let object = value.as_object().expect("an object");
    for absent in ["resource", "chunk_id", "range"] {
        assert!(!object.contains_key(absent), "{absent} is left out");
    }
    assert_eq!(Job::decode(&body), Ok(job.clone()));
    // null reads as absent.
    let mut with_nulls = value.clone();
    with_nulls["resource"] = Value::Null;
    with_nulls["chunk_id"] = Value::Null;
    with_nulls["range"] = Value::Null;
    assert_eq!(decode_value(&with_nulls), Ok(job));
}

#[test]
fn enqueued_at_is_written_in_utc_and_any_offset_is_read() {
    let job = Job {
        enqueued_at: datetime!(2025-01-02 05:04:05 +02:00),
        ..chunk_job()
    };
    let value: Value = serde_json::from_str(&job.encode()).expect("JSON");
    assert_eq!(value["enqueued_at"], "2025-01-02T03:04:05Z");
    let decoded = Job::decode(&job.encode()).expect("decodes");
    assert_eq!(decoded.enqueued_at, job.enqueued_at);
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
        ("range", json!([1, 2])),
        ("range", json!({"from": 1})),
        ("range", json!({"from": "1", "to": 2})),
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
            "empty range",
            Box::new(|v| v["range"] = json!({"from": 5, "to": 5})),
        ),
        (
            "reversed range",
            Box::new(|v| v["range"] = json!({"from": 9, "to": 1})),
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
    let job = Job {
        chunk_id: None,
        ..chunk_job()
    };
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
fn force_jobs_go_on_the_priority_lane() {
    let force = Job {
        trigger: Trigger::Force,
        ..chunk_job()
    };
    assert_eq!(Lane::for_job(&force), Lane::Priority);
    assert_eq!(Lane::for_job(&chunk_job()), Lane::Standard);
    assert_eq!(crate::lane_from_body(&force.encode()), Lane::Priority);
    assert_eq!(crate::lane_from_body(&chunk_job().encode()), Lane::Standard);
    assert_eq!(crate::lane_from_body("not a job"), Lane::Standard);
}
