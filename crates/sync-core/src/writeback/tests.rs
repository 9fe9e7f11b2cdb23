use serde_json::json;
use time::macros::datetime;

use super::*;

fn item(kind: WritebackType, submitted_at: OffsetDateTime, status: ItemStatus) -> OutboxItem {
    OutboxItem {
        item_id: 1,
        practice_id: "p".into(),
        kind,
        idempotency_key: "k".into(),
        marker: "asy-0".into(),
        body: "{}".into(),
        status,
        reason: None,
        attempts: 0,
        submitted_at,
        submitted_by: "t".into(),
        first_sent_at: None,
        next_attempt_at: None,
        sent_at: None,
        ascend_id: None,
        found: false,
    }
}

fn setting(enabled: bool, enabled_at: Option<OffsetDateTime>) -> TypeSetting {
    TypeSetting {
        kind: WritebackType::SmsLog,
        enabled,
        enabled_at,
        changed_at: None,
        changed_by: None,
    }
}

#[test]
fn every_type_reads_a_good_request() {
    let good = [
        (
            WritebackType::SmsLog,
            json!({"patient_id": "12", "direction": "outbound", "text": "See you at 9", "sent_at": "2026-12-04T10:00:00Z"}),
        ),
        (
            WritebackType::EmailLog,
            json!({"patient_id": 12, "direction": "inbound", "subject": "Hi", "body": "b", "sent_at": "2026-12-04T10:00:00Z"}),
        ),
        (
            WritebackType::CallLog,
            json!({"patient_id": "12", "direction": "outbound", "summary": "s", "duration_seconds": 95, "at": "2026-12-04T10:00:00Z"}),
        ),
        (
            WritebackType::Confirmation,
            json!({"appointment_id": "7000000000001", "status": "CONFIRMED"}),
        ),
        (
            WritebackType::Document,
            json!({"patient_id": "12", "name": "Consent", "content_type": "application/pdf", "content_base64": "JVBERi0xLjQK"}),
        ),
        (
            WritebackType::NewPatient,
            json!({"first_name": "Ada", "last_name": "Byron", "date_of_birth": "1984-03-07"}),
        ),
        (
            WritebackType::NewAppointment,
            json!({"patient_id": "12", "start": "2026-12-10T09:00:00Z", "duration_minutes": 30}),
        ),
    ];
    for (kind, body) in good {
        let write = parse(kind, &body).unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert_eq!(write.kind(), kind);
        // What the outbox stores reads back the same.
        let stored = serde_json::to_string(&write).expect("serializes");
        let back: Write = serde_json::from_str(&stored).expect("reads back");
        assert_eq!(back, write);
    }
}

#[test]
fn bad_requests_are_refused_with_the_field_named() {
    let cases = [
        (WritebackType::SmsLog, json!([1]), "JSON object"),
        (
            WritebackType::SmsLog,
            json!({"direction": "outbound", "text": "t", "sent_at": "2026-12-04T10:00:00Z"}),
            "'patient_id' is required",
        ),
        (
            WritebackType::SmsLog,
            json!({"patient_id": "x1", "direction": "outbound", "text": "t", "sent_at": "2026-12-04T10:00:00Z"}),
            "'patient_id' must be an Ascend id",
        ),
        (
            WritebackType::SmsLog,
            json!({"patient_id": "1", "direction": "sideways", "text": "t", "sent_at": "2026-12-04T10:00:00Z"}),
            "'direction'",
        ),
        (
            WritebackType::SmsLog,
            json!({"patient_id": "1", "direction": "outbound", "text": " ", "sent_at": "2026-12-04T10:00:00Z"}),
            "'text' must not be empty",
        ),
        (
            WritebackType::SmsLog,
            json!({"patient_id": "1", "direction": "outbound", "text": "t", "sent_at": "yesterday"}),
            "'sent_at' must be a time",
        ),
        (
            WritebackType::SmsLog,
            json!({"patient_id": "1", "direction": "outbound", "text": "t", "sent_at": "2026-12-04T10:00:00Z", "colour": 1}),
            "unknown field",
        ),
        (
            WritebackType::Confirmation,
            json!({"appointment_id": "1", "status": "MAYBE"}),
            "CONFIRMED or UNCONFIRMED",
        ),
        (
            WritebackType::Document,
            json!({"patient_id": "1", "name": "n", "content_type": "application/pdf", "content_base64": "not base64!"}),
            "not base64",
        ),
        (
            WritebackType::NewPatient,
            json!({"first_name": "A", "last_name": "B", "date_of_birth": "07/03/1984"}),
            "date_of_birth",
        ),
        (
            WritebackType::NewAppointment,
            json!({"patient_id": "1", "start": "2026-12-10T09:00:00Z", "duration_minutes": 0}),
            "at least 1",
        ),
        (
            WritebackType::NewAppointment,
            json!({"patient_id": "1", "start": "2026-12-10T09:00:00Z"}),
            "'duration_minutes' is required",
        ),
    ];
    for (kind, body, expected) in cases {
        match parse(kind, &body) {
            Ok(w) => panic!("{kind} {body} was accepted: {w:?}"),
            Err(Invalid(message)) => assert!(
                message.contains(expected),
                "{kind} {body}: {message:?} does not say {expected:?}"
            ),
        }
    }
}

#[test]
fn an_oversized_document_is_refused() {
    let chunk = "AAAA".repeat(MAX_DOCUMENT_BYTES / 3 + 1);
    let body = json!({"patient_id": "1", "name": "scan", "content_type": "image/png", "content_base64": chunk});
    let Err(Invalid(message)) = parse(WritebackType::Document, &body) else {
        panic!("an oversized document was accepted");
    };
    assert!(message.contains("at most 5242880 bytes"), "{message}");
    let fits = "AAAA".repeat(MAX_DOCUMENT_BYTES / 3);
    let body = json!({"patient_id": "1", "name": "scan", "content_type": "image/png", "content_base64": fits});
    assert!(parse(WritebackType::Document, &body).is_ok());
}

#[test]
fn keys_are_checked() {
    assert!(check_key("sms-8812:2026.12.04_a").is_ok());
    assert!(check_key("").is_err());
    assert!(check_key("has space").is_err());
    assert!(check_key(&"k".repeat(MAX_KEY_LEN + 1)).is_err());
    assert!(check_key("naïve").is_err());
}

#[test]
fn only_items_submitted_while_their_type_is_on_are_sent() {
    let on_at = datetime!(2026-12-04 10:00 UTC);
    let before = item(
        WritebackType::SmsLog,
        on_at - time::Duration::minutes(1),
        ItemStatus::Pending,
    );
    let after = item(WritebackType::SmsLog, on_at, ItemStatus::Pending);
    assert_eq!(
        admit_item(&after, Some(&setting(true, Some(on_at)))),
        Admission::Send
    );
    assert!(
        matches!(admit_item(&before, Some(&setting(true, Some(on_at)))), Admission::Hold(r) if r.contains("turned on after"))
    );
    assert!(
        matches!(admit_item(&after, Some(&setting(false, Some(on_at)))), Admission::Hold(r) if r.contains("is off"))
    );
    assert!(matches!(admit_item(&after, None), Admission::Hold(_)));
}

#[test]
fn a_send_of_unknown_outcome_is_looked_up_first() {
    let at = datetime!(2026-12-04 10:00 UTC);
    assert_eq!(
        next_step(&item(WritebackType::SmsLog, at, ItemStatus::Pending)),
        Step::Send
    );
    assert_eq!(
        next_step(&item(WritebackType::SmsLog, at, ItemStatus::Failed)),
        Step::Send
    );
    assert_eq!(
        next_step(&item(WritebackType::SmsLog, at, ItemStatus::Sending)),
        Step::LookUp
    );
}

#[test]
fn failures_retry_with_doubling_delays_then_give_up() {
    let now = datetime!(2026-12-04 10:00 UTC);
    let base = Duration::from_secs(30);
    assert_eq!(
        after_failure(1, Applied::No, true, base, now),
        AfterFailure::Retry(now + Duration::from_secs(30))
    );
    assert_eq!(
        after_failure(3, Applied::Unknown, true, base, now),
        AfterFailure::Retry(now + Duration::from_secs(120))
    );
    assert_eq!(
        after_failure(MAX_ATTEMPTS, Applied::No, true, base, now),
        AfterFailure::Dead
    );
    // An unknown outcome at the last attempt is looked up once more.
    assert!(matches!(
        after_failure(MAX_ATTEMPTS, Applied::Unknown, true, base, now),
        AfterFailure::Retry(_)
    ));
    assert!(!may_send_again(MAX_ATTEMPTS));
    // A refusal is not retried.
    assert_eq!(
        after_failure(1, Applied::No, false, base, now),
        AfterFailure::Dead
    );
    assert_eq!(retry_delay(40, base), MAX_RETRY_DELAY);
}

#[test]
fn only_syncing_practices_send() {
    for status in PracticeStatus::ALL {
        assert_eq!(
            practice_sends(*status),
            matches!(status, PracticeStatus::InitialSync | PracticeStatus::Active),
            "{status}"
        );
    }
}
