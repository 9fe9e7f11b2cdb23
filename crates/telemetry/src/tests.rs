//! The lines against the Embedded Metric Format's rules, as its
//! specification states them, checked by a reader written apart from the
//! writer.

use serde_json::Value;
use time::macros::datetime;

use super::*;

const AT: time::OffsetDateTime = datetime!(2026-12-04 12:00:00.250 UTC);

#[test]
fn a_practice_s_attempt_is_a_valid_document() {
    let doc = Document::new(AT)
        .dimension(PRACTICE_ID, "practice-1")
        .metric(names::SYNC_DURATION_SECONDS, 12.5)
        .count(names::RECORDS_SYNCED, 40)
        .count(names::SYNC_FAILURES, 0)
        .count(names::SYNC_ATTEMPTS, 1)
        .count(names::API_THROTTLED, 2);
    let line = doc.to_line().expect("a valid document");
    check_line(&line).expect("the format's rules");
    let value: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(value["_aws"]["Timestamp"], 1_796_385_600_250_i64);
    assert_eq!(
        value["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        NAMESPACE
    );
    // Per practice, and the fleet's rollup.
    assert_eq!(
        value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([["PracticeId"], []])
    );
    assert_eq!(value["PracticeId"], "practice-1");
    assert_eq!(value["SyncDurationSeconds"], 12.5);
    assert_eq!(value["RecordsSynced"], 40.0);
    assert!(!line.contains('\n'), "one line");
}

#[test]
fn a_fleet_document_has_no_dimensions() {
    let line = Document::new(AT)
        .count(names::QUEUE_BACKLOG, 7)
        .metric(names::MAX_STALENESS_RATIO, 0.4)
        .to_line()
        .expect("valid");
    check_line(&line).expect("the format's rules");
    let value: Value = serde_json::from_str(&line).expect("JSON");
    assert_eq!(
        value["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        serde_json::json!([[]])
    );
}

#[test]
fn documents_that_break_the_rules_are_refused() {
    let nan = Document::new(AT).metric(names::SYNC_DURATION_SECONDS, f64::NAN);
    assert_eq!(
        nan.to_line(),
        Err(EmfError::NotFinite("SyncDurationSeconds"))
    );
    let twice = Document::new(AT)
        .count(names::RECORDS_SYNCED, 1)
        .count(names::RECORDS_SYNCED, 2);
    assert!(matches!(twice.to_line(), Err(EmfError::Duplicate(_))));
    let empty = Document::new(AT)
        .dimension(PRACTICE_ID, "")
        .count(names::RECORDS_SYNCED, 1);
    assert_eq!(empty.to_line(), Err(EmfError::EmptyDimension(PRACTICE_ID)));
    let mut many = Document::new(AT);
    for _ in 0..=MAX_METRICS {
        many = many.count(names::RECORDS_SYNCED, 1);
    }
    assert_eq!(many.to_line(), Err(EmfError::TooMany));
}

#[test]
fn the_checker_catches_what_it_should() {
    // The reader is not a rubber stamp: broken documents fail it.
    assert!(check_line(r#"{"a":1}"#).is_err());
    assert!(check_line(
        r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["P"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"M":1}"#
    )
    .is_err());
    assert!(check_line(
        r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M","Unit":"Furlongs"}]}]},"M":1}"#
    )
    .is_err());
    assert!(check_line(
        r#"{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[[]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"M":"1"}"#
    )
    .is_err());
}

#[test]
fn the_memory_sink_keeps_valid_lines_and_off_keeps_none() {
    let (sink, lines) = Sink::memory();
    sink.emit(&Document::new(AT).count(names::DEAD_LETTERS, 0));
    sink.emit(&Document::new(AT).metric(names::SYNC_DURATION_SECONDS, f64::INFINITY));
    let kept = lines.lock().expect("lock").clone();
    assert_eq!(kept.len(), 1, "the broken document is dropped");
    check_line(&kept[0]).expect("valid");
    assert!(!Sink::Off.is_on());
    Sink::Off.emit(&Document::new(AT).count(names::DEAD_LETTERS, 0));
}
