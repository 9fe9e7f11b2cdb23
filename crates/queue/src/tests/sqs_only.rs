//! What only the SQS adapter has to prove: the move task is requested as
//! SQS expects it, an endpoint without move tasks is told apart from a
//! failing one, partial batch failures are retried and never dropped, and
//! SDK errors name the operator's action.
//!
//! The move task and batch failures run against a stub: a tiny HTTP server
//! speaking SQS's JSON protocol (`X-Amz-Target: AmazonSQS.<Operation>`),
//! so the SDK sends its real requests. Error mapping runs against moto.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{endpoint, settings, standard, unique_name};
use crate::{
    Delivery, Lane, Queue, QueueError, QueueSettings, RedriveMethod, RedriveSelector, SqsConfig,
    SqsQueue,
};

const DEAD_ARN: &str = "arn:aws:sqs:us-east-1:000000000000:stub-dead-letters";

/// How the stub answers StartMessageMoveTask.
#[derive(Debug, Clone, Copy, Default)]
enum MoveTask {
    /// `{"TaskHandle": ...}`.
    #[default]
    Supported,
    /// moto: 500 with an HTML page.
    HtmlError,
    /// Real SQS failing: 500 with a JSON InternalError.
    InternalError,
    /// Real SQS refusing: 400 AccessDenied.
    AccessDenied,
    /// An SQS-compatible service: 400 UnsupportedOperation.
    Unsupported,
}

#[derive(Debug, Default)]
struct Stub {
    move_task: MoveTask,
    /// SendMessageBatch fails entry "1" (not the sender's fault) this many
    /// times.
    failing_sends: usize,
    /// SendMessageBatch fails entry "1" as the sender's fault.
    sender_fault: bool,
    /// Every call: (operation, content type, request body).
    calls: Vec<(String, String, Value)>,
}

type Shared = Arc<Mutex<Stub>>;

async fn answer(State(stub): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start_matches("AmazonSQS.")
        .to_owned();
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let request: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let mut stub = stub.lock().expect("stub lock");
    stub.calls
        .push((target.clone(), content_type, request.clone()));
    let json_answer = |status: StatusCode, value: Value| {
        (
            status,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.0")],
            value.to_string(),
        )
            .into_response()
    };
    match target.as_str() {
        "GetQueueAttributes" => json_answer(
            StatusCode::OK,
            json!({"Attributes": {"QueueArn": DEAD_ARN, "ApproximateNumberOfMessages": "3"}}),
        ),
        "StartMessageMoveTask" => match stub.move_task {
            MoveTask::Supported => {
                json_answer(StatusCode::OK, json!({"TaskHandle": "stub-task-handle"}))
            }
            MoveTask::HtmlError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                "<!doctype html><title>500 Internal Server Error</title><h1>Internal Server \
                 Error</h1>"
                    .to_owned(),
            )
                .into_response(),
            MoveTask::InternalError => json_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"__type": "com.amazonaws.sqs#InternalError", "message": "try again"}),
            ),
            MoveTask::AccessDenied => json_answer(
                StatusCode::BAD_REQUEST,
                json!({"__type": "com.amazon.coral.service#AccessDeniedException", "message": "no"}),
            ),
            MoveTask::Unsupported => json_answer(
                StatusCode::BAD_REQUEST,
                json!({"__type": "com.amazonaws.sqs#UnsupportedOperation", "message": "not here"}),
            ),
        },
        "ReceiveMessage" => json_answer(StatusCode::OK, json!({"Messages": []})),
        "SendMessageBatch" => {
            let mut successful = Vec::new();
            let mut failed = Vec::new();
            let fail_now = stub.sender_fault || stub.failing_sends > 0;
            if stub.failing_sends > 0 {
                stub.failing_sends -= 1;
            }
            for entry in request["Entries"].as_array().cloned().unwrap_or_default() {
                let id = entry["Id"].as_str().unwrap_or("").to_owned();
                if id == "1" && fail_now {
                    failed.push(json!({
                        "Id": id,
                        "SenderFault": stub.sender_fault,
                        "Code": if stub.sender_fault { "InvalidMessageContents" } else { "InternalError" },
                        "Message": "stub failure",
                    }));
                } else {
                    successful.push(json!({
                        "Id": id,
                        "MessageId": format!("stub-{}", stub.calls.len() * 100 + successful.len()),
                        "MD5OfMessageBody": "00000000000000000000000000000000",
                    }));
                }
            }
            json_answer(
                StatusCode::OK,
                json!({"Successful": successful, "Failed": failed}),
            )
        }
        _ => json_answer(
            StatusCode::BAD_REQUEST,
            json!({"__type": "com.amazonaws.sqs#InvalidAction", "message": "stub"}),
        ),
    }
}

/// A stub on 127.0.0.1:0 and a queue pointed at it.
async fn stub_queue(stub: Stub) -> (Queue, Shared) {
    let shared: Shared = Arc::new(Mutex::new(stub));
    let app = Router::new()
        .fallback(answer)
        .with_state(Arc::clone(&shared));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the stub");
    let address = listener.local_addr().expect("stub address");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let base = format!("http://{address}");
    let queue = SqsQueue::connect(SqsConfig {
        endpoint_url: Some(base.clone()),
        region: Some("us-east-1".into()),
        priority_queue_url: format!("{base}/000000000000/stub-priority"),
        standard_queue_url: format!("{base}/000000000000/stub-standard"),
        dead_letter_queue_url: format!("{base}/000000000000/stub-dead-letters"),
        settings: QueueSettings::default(),
    })
    .await
    .expect("the stub queue is configured");
    (queue.into(), shared)
}

fn calls_of(stub: &Shared, operation: &str) -> Vec<Value> {
    stub.lock()
        .expect("stub lock")
        .calls
        .iter()
        .filter(|(op, _, _)| op == operation)
        .map(|(_, _, body)| body.clone())
        .collect()
}

#[tokio::test]
async fn redrive_all_starts_a_move_task_back_to_each_source() {
    let (queue, stub) = stub_queue(Stub::default()).await;
    let report = queue.redrive(&RedriveSelector::All).await.expect("redrive");
    assert_eq!(report.method, RedriveMethod::MoveTask);
    assert_eq!(
        report.moved, 3,
        "the dead-letter count when the task started"
    );

    let calls = stub.lock().expect("stub lock").calls.clone();
    let (_, content_type, request) = calls
        .iter()
        .find(|(op, _, _)| op == "StartMessageMoveTask")
        .expect("StartMessageMoveTask was called");
    assert_eq!(content_type, "application/x-amz-json-1.0");
    assert_eq!(request["SourceArn"], DEAD_ARN);
    assert!(
        request.get("DestinationArn").is_none(),
        "no destination: SQS returns each message to its source queue ({request})"
    );
    assert!(
        calls_of(&stub, "ReceiveMessage").is_empty(),
        "no fallback when the move task started"
    );
}

#[tokio::test]
async fn an_endpoint_without_move_tasks_gets_the_fallback() {
    for mode in [MoveTask::HtmlError, MoveTask::Unsupported] {
        let (queue, stub) = stub_queue(Stub {
            move_task: mode,
            ..Stub::default()
        })
        .await;
        let report = queue.redrive(&RedriveSelector::All).await.expect("redrive");
        assert_eq!(report.method, RedriveMethod::Fallback, "{mode:?}");
        assert_eq!(report.moved, 0, "the stub's dead letters are empty");
        assert_eq!(
            calls_of(&stub, "StartMessageMoveTask").len(),
            1,
            "tried once, without retries ({mode:?})"
        );
        let receives = calls_of(&stub, "ReceiveMessage");
        assert!(!receives.is_empty(), "the fallback read the dead letters");
        assert!(
            receives[0]["QueueUrl"]
                .as_str()
                .is_some_and(|u| u.ends_with("/stub-dead-letters"))
        );
    }
}

#[tokio::test]
async fn a_failing_move_task_is_reported_not_bypassed() {
    let (queue, stub) = stub_queue(Stub {
        move_task: MoveTask::InternalError,
        ..Stub::default()
    })
    .await;
    let error = queue
        .redrive(&RedriveSelector::All)
        .await
        .expect_err("SQS failed");
    assert!(matches!(error, QueueError::Unreachable { .. }), "{error}");
    assert!(error.is_retryable());
    assert!(calls_of(&stub, "ReceiveMessage").is_empty());

    let (queue, stub) = stub_queue(Stub {
        move_task: MoveTask::AccessDenied,
        ..Stub::default()
    })
    .await;
    let error = queue
        .redrive(&RedriveSelector::All)
        .await
        .expect_err("SQS refused");
    assert!(
        matches!(error, QueueError::Denied { .. })
            && error.to_string().contains("sqs:StartMessageMoveTask"),
        "{error}"
    );
    assert!(calls_of(&stub, "ReceiveMessage").is_empty());
}

#[tokio::test]
async fn failed_batch_entries_are_retried_until_sent() {
    let (queue, stub) = stub_queue(Stub {
        failing_sends: 2,
        ..Stub::default()
    })
    .await;
    let jobs = [standard("a"), standard("b"), standard("c")];
    let ids = queue.send(&jobs).await.expect("sent after retries");
    assert_eq!(ids.len(), 3, "{ids:?}");
    let batches = calls_of(&stub, "SendMessageBatch");
    assert_eq!(batches.len(), 3, "one batch, then two retries");
    assert_eq!(batches[0]["Entries"].as_array().map(Vec::len), Some(3));
    for retry in &batches[1..] {
        let entries = retry["Entries"].as_array().expect("entries");
        assert_eq!(entries.len(), 1, "only the failed entry is sent again");
        assert_eq!(entries[0]["MessageBody"], "b");
        assert_eq!(
            entries[0]["MessageAttributes"]["lane"]["StringValue"],
            "standard"
        );
    }
}

#[tokio::test]
async fn entries_that_keep_failing_are_reported_not_dropped() {
    let (queue, stub) = stub_queue(Stub {
        failing_sends: usize::MAX,
        ..Stub::default()
    })
    .await;
    let jobs: Vec<_> = (0..12).map(|i| standard(&format!("j{i}"))).collect();
    let error = queue.send(&jobs).await.expect_err("one keeps failing");
    match &error {
        QueueError::BatchIncomplete {
            done, failed, code, ..
        } => {
            // Entry "1" of each of the two batches (10 + 2) fails.
            assert_eq!((*done, *failed), (10, 2), "{error}");
            assert_eq!(code, "InternalError");
        }
        other => panic!("expected BatchIncomplete, got {other}"),
    }
    assert!(error.to_string().contains("send them again"), "{error}");
    let batches = calls_of(&stub, "SendMessageBatch");
    assert_eq!(
        batches.len(),
        2 * crate::sqs::BATCH_ATTEMPTS as usize,
        "each batch's failed entry was tried BATCH_ATTEMPTS times"
    );

    // The sender's fault is not retried.
    let (queue, stub) = stub_queue(Stub {
        sender_fault: true,
        ..Stub::default()
    })
    .await;
    let error = queue
        .send(&[standard("a"), standard("b")])
        .await
        .expect_err("refused");
    assert!(
        matches!(&error, QueueError::BatchIncomplete { done: 1, failed: 1, code, .. } if code == "InvalidMessageContents"),
        "{error}"
    );
    assert_eq!(calls_of(&stub, "SendMessageBatch").len(), 1);
}

#[tokio::test]
async fn a_missing_queue_says_to_create_it() {
    let queue: Queue = SqsQueue::connect(SqsConfig {
        endpoint_url: Some(endpoint()),
        region: Some("us-east-1".into()),
        priority_queue_url: format!("{}/123456789012/{}", endpoint(), unique_name("nope-p")),
        standard_queue_url: format!("{}/123456789012/{}", endpoint(), unique_name("nope-s")),
        dead_letter_queue_url: format!("{}/123456789012/{}", endpoint(), unique_name("nope-d")),
        settings: QueueSettings::default(),
    })
    .await
    .expect("configured")
    .into();
    let error = queue
        .receive(1, Duration::ZERO)
        .await
        .expect_err("no such queue");
    assert!(matches!(error, QueueError::NotFound { .. }), "{error}");
    assert!(error.to_string().contains("create the queues"), "{error}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn an_unreachable_endpoint_is_retryable() {
    let queue: Queue = SqsQueue::connect(SqsConfig {
        endpoint_url: Some("http://127.0.0.1:1".into()),
        region: Some("us-east-1".into()),
        priority_queue_url: "http://127.0.0.1:1/0/p".into(),
        standard_queue_url: "http://127.0.0.1:1/0/s".into(),
        dead_letter_queue_url: "http://127.0.0.1:1/0/d".into(),
        settings: QueueSettings::default(),
    })
    .await
    .expect("configured")
    .into();
    let error = queue
        .send(&[standard("x")])
        .await
        .expect_err("nobody listens");
    assert!(matches!(error, QueueError::Unreachable { .. }), "{error}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn bad_configuration_is_refused_before_any_request() {
    let good = SqsConfig {
        endpoint_url: None,
        region: Some("us-east-1".into()),
        priority_queue_url: "https://sqs.us-east-1.amazonaws.com/1/p".into(),
        standard_queue_url: "https://sqs.us-east-1.amazonaws.com/1/s".into(),
        dead_letter_queue_url: "https://sqs.us-east-1.amazonaws.com/1/d".into(),
        settings: QueueSettings::default(),
    };
    let cases = [
        SqsConfig {
            priority_queue_url: "sqs-priority".into(),
            ..good.clone()
        },
        SqsConfig {
            standard_queue_url: good.priority_queue_url.clone(),
            ..good.clone()
        },
        SqsConfig {
            settings: settings(0, 60),
            ..good.clone()
        },
        SqsConfig {
            settings: settings(5, 13 * 3600),
            ..good.clone()
        },
    ];
    for config in cases {
        let error = SqsQueue::connect(config).await.expect_err("refused");
        assert!(matches!(error, QueueError::Config { .. }), "{error}");
    }
    SqsQueue::connect(good)
        .await
        .expect("the good one connects");
}

#[tokio::test]
async fn a_dead_letter_without_lane_goes_back_by_its_body() {
    // A dead letter sent by another tool (no lane attribute) holding a
    // forced job goes back to the Priority lane; anything else to Standard.
    let queue = SqsQueue::provision(
        Some(endpoint()),
        Some("us-east-1".into()),
        &unique_name("q"),
        settings(5, 300),
    )
    .await
    .expect("queues");
    let forced = crate::Job::for_practice(
        store::PracticeStatus::Active,
        "j-1".into(),
        "p-1".into(),
        crate::Trigger::Force,
        time::OffsetDateTime::now_utc(),
    );
    for body in [forced.encode(), "not a job".to_owned()] {
        queue
            .client
            .send_message()
            .queue_url(&queue.dead)
            .message_body(body)
            .send()
            .await
            .expect("raw send to the dead letters");
    }
    let queue: Queue = queue.into();
    let listed = queue.dead_letters(10).await.expect("list");
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|d| d.lane.is_none() && d.reason.is_none())
    );
    let report = queue.redrive(&RedriveSelector::All).await.expect("redrive");
    assert_eq!(report.moved, 2);
    let back: Vec<Delivery> = super::receive_n(&queue, 2).await;
    let forced_back = back
        .iter()
        .find(|d| d.body == forced.encode())
        .expect("forced job back");
    assert_eq!(forced_back.lane, Lane::Priority);
    let other = back
        .iter()
        .find(|d| d.body == "not a job")
        .expect("other back");
    assert_eq!(other.lane, Lane::Standard);
}
