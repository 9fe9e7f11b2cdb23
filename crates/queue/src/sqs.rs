//! The SQS queue (production): three standard queues.
//!
//! - a **Priority** lane and a **Standard** lane, each with a RedrivePolicy
//!   (`maxReceiveCount` = the settings' `max_receive_count`) pointing at
//! - one **dead-letter queue** (14 days' retention).
//!
//! Every message is sent with a `lane` message attribute, which SQS keeps
//! when the RedrivePolicy moves it, so a dead letter knows its lane.
//! [`crate::Queue::dead_letter`] sends the body to the dead-letter queue
//! with `reason`, `lane`, `receive_count` and `source_message_id`
//! attributes, then deletes it from its lane (a crash in between leaves a
//! duplicate, never a loss).
//!
//! **Redrive.** `All` first tries `StartMessageMoveTask` (source: the
//! dead-letter queue's ARN, no destination, so SQS returns each message to
//! the queue it came from), sent once, without SDK retries. When the
//! endpoint does not implement it (moto, some SQS look-alikes) it falls back
//! to receive from the dead letters, send the same body to its lane, and
//! delete from the dead letters only after the send succeeded. `Id` always
//! uses that fallback (receiving until the id shows up; the others are made
//! visible again at once). The lane of a dead letter without a `lane`
//! attribute (sent by another tool) is read from its body: a job triggered
//! by "Force Sync Now" goes to Priority, anything else to Standard. One
//! fallback run handles at most 10,000 dead letters; run it again for more.
//!
//! "Does not implement it" is decided precisely: the answer carries the
//! code `UnsupportedOperation`, `InvalidAction`, `UnknownOperation(Exception)`
//! or `NotImplemented`, or HTTP 501; or it is not an SQS answer at all (a
//! 400, 404, 405 or 500 whose body holds no SQS error code: moto answers 500
//! with an HTML page; or a body the SDK cannot read). Real SQS answers every
//! error with a JSON body and a code, so its own failures (InternalError,
//! AccessDenied, throttling) are reported, never taken for "unsupported";
//! a 502, 503 or 504 without a code is a gateway problem, reported too.
//!
//! **Batches.** Sends, deletes and visibility resets go in batches of 10;
//! failed entries are retried ([`BATCH_ATTEMPTS`] times in all, backing
//! off) unless SQS says the sender is at fault; entries that keep failing
//! are reported ([`QueueError::BatchIncomplete`]), never dropped silently.
//!
//! **Receive** asks the Priority lane without waiting, then (if it gave
//! fewer than asked) the Standard lane: without waiting when Priority gave
//! something, else long-polling up to the wait (whole seconds, at most 20).
//! A priority job sent during a Standard long poll waits for that poll to
//! end: pass a shorter wait to bound that latency. Short polls on real SQS
//! sample a subset of servers, so a Priority message may occasionally be
//! seen one receive later.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};
use tokio::sync::OnceCell;

use crate::{
    DeadLetter, Delivery, Depth, Lane, MAX_BODY_BYTES, Outgoing, QueueError, QueueSettings,
    RedriveMethod, RedriveReport, RedriveSelector, lane_from_body, secs_i32,
};

/// Attempts at a batch's failed entries, the first included.
pub const BATCH_ATTEMPTS: u32 = 4;
/// The wait before the second attempt (doubled each time after).
const BATCH_BACKOFF: Duration = Duration::from_millis(100);
/// How long a dead letter stays invisible while it is listed.
const LIST_VISIBILITY: Duration = Duration::from_secs(30);
/// How long a dead letter stays invisible while it is being redriven.
const REDRIVE_VISIBILITY: Duration = Duration::from_secs(60);
/// The long poll that tells "the dead letters are empty (for now)".
const DRAIN_WAIT: i32 = 1;
/// The most receives of one redrive or listing (10 messages each).
const MAX_ROUNDS: usize = 1000;
/// The dead-letter queue's retention (SQS's maximum, 14 days).
const DEAD_LETTER_RETENTION_SECS: u32 = 14 * 24 * 3600;

const ATTR_LANE: &str = "lane";
const ATTR_REASON: &str = "reason";
const ATTR_RECEIVE_COUNT: &str = "receive_count";
const ATTR_SOURCE_ID: &str = "source_message_id";

/// Where the SQS queues are.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SqsConfig {
    /// An endpoint instead of AWS's (moto in tests, a VPC endpoint URL).
    pub endpoint_url: Option<String>,
    /// The region; None: the environment's (AWS_REGION, the profile).
    pub region: Option<String>,
    /// The Priority lane's queue URL.
    pub priority_queue_url: String,
    /// The Standard lane's queue URL.
    pub standard_queue_url: String,
    /// The dead-letter queue's URL (both lanes' RedrivePolicy target).
    pub dead_letter_queue_url: String,
    /// Must agree with the queues' RedrivePolicy (`max_receive_count`); the
    /// visibility is sent with every receive.
    pub settings: QueueSettings,
}

/// The job queue on SQS. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    pub(crate) client: Client,
    pub(crate) priority: String,
    pub(crate) standard: String,
    pub(crate) dead: String,
    settings: QueueSettings,
    dead_arn: Arc<OnceCell<String>>,
}

/// The SQS operations used, with the IAM permission each needs.
#[derive(Debug, Clone, Copy)]
enum Op {
    Send,
    SendBatch,
    Receive,
    Delete,
    DeleteBatch,
    ChangeVisibility,
    ChangeVisibilityBatch,
    GetAttributes,
    MoveTask,
    CreateQueue,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Send => "SendMessage",
            Op::SendBatch => "SendMessageBatch",
            Op::Receive => "ReceiveMessage",
            Op::Delete => "DeleteMessage",
            Op::DeleteBatch => "DeleteMessageBatch",
            Op::ChangeVisibility => "ChangeMessageVisibility",
            Op::ChangeVisibilityBatch => "ChangeMessageVisibilityBatch",
            Op::GetAttributes => "GetQueueAttributes",
            Op::MoveTask => "StartMessageMoveTask",
            Op::CreateQueue => "CreateQueue",
        }
    }

    fn permission(self) -> &'static str {
        match self {
            Op::Send | Op::SendBatch => "sqs:SendMessage",
            Op::Receive => "sqs:ReceiveMessage",
            Op::Delete | Op::DeleteBatch => "sqs:DeleteMessage",
            Op::ChangeVisibility | Op::ChangeVisibilityBatch => "sqs:ChangeMessageVisibility",
            Op::GetAttributes => "sqs:GetQueueAttributes",
            Op::MoveTask => {
                "sqs:StartMessageMoveTask (with sqs:ReceiveMessage, sqs:DeleteMessage and \
                 sqs:GetQueueAttributes on the dead-letter queue and sqs:SendMessage on the lanes)"
            }
            Op::CreateQueue => "sqs:CreateQueue",
        }
    }
}

/// One message to send in a batch.
struct OutEntry {
    body: String,
    delay_secs: i32,
    attributes: Vec<(&'static str, String)>,
}

/// What one batch call answered: (entry index, message id) for each
/// success, (entry index, sender's fault, code, message) for each failure.
#[derive(Default)]
struct BatchAnswer {
    ok: Vec<(usize, String)>,
    failed: Vec<(usize, bool, String, String)>,
}

/// The final outcome of each entry of a batch: a message id (empty for
/// operations that give none), or the last (code, message).
type EntryOutcome = Result<String, (String, String)>;

impl SqsQueue {
    /// Reads AWS configuration the standard way (environment, profile, web
    /// identity, ECS task role, instance metadata) with `config`'s
    /// overrides and builds the client. Makes no request: a missing queue or
    /// permission shows on the first call, as an error that names it.
    pub async fn connect(config: SqsConfig) -> Result<SqsQueue, QueueError> {
        let SqsConfig {
            endpoint_url,
            region,
            priority_queue_url,
            standard_queue_url,
            dead_letter_queue_url,
            settings,
        } = config;
        settings.validate()?;
        for (name, url) in [
            ("Priority lane", &priority_queue_url),
            ("Standard lane", &standard_queue_url),
            ("dead-letter", &dead_letter_queue_url),
        ] {
            check_url(&format!("the {name} queue URL"), url)?;
        }
        if priority_queue_url == standard_queue_url
            || priority_queue_url == dead_letter_queue_url
            || standard_queue_url == dead_letter_queue_url
        {
            return Err(QueueError::Config {
                reason:
                    "the Priority lane, Standard lane and dead-letter queue URLs must be three \
                         different queues"
                        .into(),
            });
        }
        let client = build_client(endpoint_url, region).await?;
        Ok(SqsQueue {
            client,
            priority: priority_queue_url,
            standard: standard_queue_url,
            dead: dead_letter_queue_url,
            settings,
            dead_arn: Arc::new(OnceCell::new()),
        })
    }

    /// Creates (or finds, if they exist with the same attributes) the three
    /// queues `{name_prefix}-priority`, `{name_prefix}-standard` and
    /// `{name_prefix}-dead-letters`, both lanes' RedrivePolicy pointing at
    /// the last with `settings.max_receive_count`, and connects to them.
    /// For local set-ups, tests and the embedded tooling; production queues
    /// come from the infrastructure stack.
    pub async fn provision(
        endpoint_url: Option<String>,
        region: Option<String>,
        name_prefix: &str,
        settings: QueueSettings,
    ) -> Result<SqsQueue, QueueError> {
        settings.validate()?;
        if name_prefix.is_empty()
            || name_prefix.len() > 60
            || !name_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        {
            return Err(QueueError::Config {
                reason: format!(
                    "the queue name prefix {} is not usable: use 1 to 60 letters, digits, '-' \
                     and '_'",
                    model::job::shown(name_prefix)
                ),
            });
        }
        let client = build_client(endpoint_url.clone(), region.clone()).await?;
        let retention = DEAD_LETTER_RETENTION_SECS.to_string();
        let dead_name = format!("{name_prefix}-dead-letters");
        let dead = create_queue(
            &client,
            &dead_name,
            &[(
                QueueAttributeName::MessageRetentionPeriod,
                retention.clone(),
            )],
        )
        .await?;
        let dead_arn = queue_attributes(&client, &dead, &[QueueAttributeName::QueueArn])
            .await?
            .remove(&QueueAttributeName::QueueArn)
            .ok_or_else(|| QueueError::Rejected {
                queue: dead.clone(),
                operation: Op::GetAttributes.name(),
                code: "MissingQueueArn".into(),
                message: "the answer has no QueueArn".into(),
            })?;
        let policy = serde_json::json!({
            "deadLetterTargetArn": dead_arn,
            "maxReceiveCount": settings.max_receive_count,
        })
        .to_string();
        let visibility = secs_i32(settings.visibility).to_string();
        let lane_attributes = [
            (QueueAttributeName::RedrivePolicy, policy),
            (QueueAttributeName::VisibilityTimeout, visibility),
            (QueueAttributeName::MessageRetentionPeriod, retention),
        ];
        let priority = create_queue(
            &client,
            &format!("{name_prefix}-priority"),
            &lane_attributes,
        )
        .await?;
        let standard = create_queue(
            &client,
            &format!("{name_prefix}-standard"),
            &lane_attributes,
        )
        .await?;
        let queue = SqsQueue::connect(SqsConfig {
            endpoint_url,
            region,
            priority_queue_url: priority,
            standard_queue_url: standard,
            dead_letter_queue_url: dead,
            settings,
        })
        .await?;
        // Already known: saves a call at the first redrive.
        let _ = queue.dead_arn.set(dead_arn);
        Ok(queue)
    }

    /// The queue URLs: (Priority lane, Standard lane, dead letters).
    #[must_use]
    pub fn queue_urls(&self) -> (&str, &str, &str) {
        (&self.priority, &self.standard, &self.dead)
    }

    pub(crate) fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    fn lane_url(&self, lane: Lane) -> &str {
        match lane {
            Lane::Priority => &self.priority,
            Lane::Standard => &self.standard,
        }
    }

    // ---- send ---------------------------------------------------------------

    pub(crate) async fn send(&self, jobs: &[Outgoing]) -> Result<Vec<String>, QueueError> {
        let mut ids: Vec<Option<String>> = vec![None; jobs.len()];
        let mut failures: Vec<(String, String)> = Vec::new();
        for lane in [Lane::Priority, Lane::Standard] {
            let url = self.lane_url(lane);
            let indices: Vec<usize> = (0..jobs.len()).filter(|&i| jobs[i].lane == lane).collect();
            for chunk in batches(&indices, |&i| jobs[i].body.len()) {
                let entries: Vec<OutEntry> = chunk
                    .iter()
                    .map(|&i| OutEntry {
                        body: jobs[i].body.clone(),
                        delay_secs: secs_i32(jobs[i].delay),
                        attributes: vec![(ATTR_LANE, lane.as_str().to_owned())],
                    })
                    .collect();
                let outcomes = self.send_entries(url, &entries).await?;
                for (k, outcome) in outcomes.into_iter().enumerate() {
                    match outcome {
                        Ok(id) => ids[chunk[k]] = Some(id),
                        Err(failure) => failures.push(failure),
                    }
                }
            }
        }
        if let Some((code, message)) = failures.last().cloned() {
            let done = ids.iter().filter(|id| id.is_some()).count();
            return Err(QueueError::BatchIncomplete {
                queue: format!("{} / {}", self.priority, self.standard),
                operation: Op::SendBatch.name(),
                done,
                failed: failures.len(),
                code,
                message,
                advice: "the failed messages were not sent: send them again (a duplicate of one \
                         that was sent is harmless)",
            });
        }
        Ok(ids.into_iter().flatten().collect())
    }

    /// Sends up to 10 entries to `url`, retrying failed entries.
    async fn send_entries(
        &self,
        url: &str,
        entries: &[OutEntry],
    ) -> Result<Vec<EntryOutcome>, QueueError> {
        retry_batch(entries.len(), |pending| {
            let built: Result<Vec<SendMessageBatchRequestEntry>, QueueError> = pending
                .iter()
                .map(|&i| {
                    let entry = &entries[i];
                    let mut builder = SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&entry.body)
                        .delay_seconds(entry.delay_secs);
                    for (name, value) in &entry.attributes {
                        builder = builder.message_attributes(*name, string_attribute(value)?);
                    }
                    builder.build().map_err(build_error)
                })
                .collect();
            let request = built.map(|entries| {
                self.client
                    .send_message_batch()
                    .queue_url(url)
                    .set_entries(Some(entries))
            });
            async move {
                let output = request?
                    .send()
                    .await
                    .map_err(|e| sdk_error(url, Op::SendBatch, e))?;
                let mut answer = BatchAnswer::default();
                for ok in output.successful() {
                    if let Ok(i) = ok.id().parse() {
                        answer.ok.push((i, ok.message_id().to_owned()));
                    }
                }
                for failed in output.failed() {
                    if let Ok(i) = failed.id().parse() {
                        answer.failed.push((
                            i,
                            failed.sender_fault(),
                            failed.code().to_owned(),
                            failed.message().unwrap_or("").to_owned(),
                        ));
                    }
                }
                Ok(answer)
            }
        })
        .await
    }

    // ---- receive ------------------------------------------------------------

    pub(crate) async fn receive(
        &self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let visibility = secs_i32(self.settings.visibility);
        let mut deliveries = self
            .receive_lane(Lane::Priority, max, 0, visibility)
            .await?;
        if deliveries.len() < max {
            let wait_secs = if deliveries.is_empty() {
                i32::try_from(wait.as_secs().min(20)).unwrap_or(20)
            } else {
                0
            };
            let rest = self
                .receive_lane(
                    Lane::Standard,
                    max - deliveries.len(),
                    wait_secs,
                    visibility,
                )
                .await?;
            deliveries.extend(rest);
        }
        Ok(deliveries)
    }

    async fn receive_lane(
        &self,
        lane: Lane,
        max: usize,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> Result<Vec<Delivery>, QueueError> {
        let url = self.lane_url(lane);
        let messages = self
            .receive_raw(url, max, wait_secs, visibility_secs)
            .await?;
        Ok(messages
            .into_iter()
            .filter_map(|m| {
                let (message_id, receipt) = ids_of(&m, url)?;
                Some(Delivery {
                    message_id,
                    receipt,
                    body: m.body().unwrap_or("").to_owned(),
                    receive_count: approximate_receive_count(&m).unwrap_or(1),
                    lane,
                })
            })
            .collect())
    }

    async fn receive_raw(
        &self,
        url: &str,
        max: usize,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> Result<Vec<Message>, QueueError> {
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.min(10)).unwrap_or(10))
            .wait_time_seconds(wait_secs)
            .visibility_timeout(visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| sdk_error(url, Op::Receive, e))?;
        Ok(output.messages.unwrap_or_default())
    }

    // ---- delete, visibility, dead letter ------------------------------------

    pub(crate) async fn delete(&self, d: &Delivery) -> Result<(), QueueError> {
        let url = self.lane_url(d.lane);
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(&d.receipt)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| receipt_error(url, Op::Delete, d, e))
    }

    pub(crate) async fn set_visibility(
        &self,
        d: &Delivery,
        after: Duration,
    ) -> Result<(), QueueError> {
        let url = self.lane_url(d.lane);
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&d.receipt)
            .visibility_timeout(secs_i32(after))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| receipt_error(url, Op::ChangeVisibility, d, e))
    }

    pub(crate) async fn dead_letter(&self, d: &Delivery, reason: &str) -> Result<(), QueueError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.dead)
            .message_body(&d.body);
        for (name, value) in [
            (ATTR_REASON, reason.to_owned()),
            (ATTR_LANE, d.lane.as_str().to_owned()),
            (ATTR_RECEIVE_COUNT, d.receive_count.to_string()),
            (ATTR_SOURCE_ID, d.message_id.clone()),
        ] {
            request = request.message_attributes(name, string_attribute(&value)?);
        }
        request
            .send()
            .await
            .map_err(|e| sdk_error(&self.dead, Op::Send, e))?;
        // Only now, with the dead letter stored, leave the lane.
        self.delete(d).await
    }

    // ---- dead letters -------------------------------------------------------

    pub(crate) async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let mut listed: Vec<DeadLetter> = Vec::new();
        let mut receipts: HashMap<String, String> = HashMap::new();
        let visibility = secs_i32(LIST_VISIBILITY);
        let mut outcome = Ok(());
        for _ in 0..MAX_ROUNDS {
            if listed.len() >= max {
                break;
            }
            let messages = match self
                .receive_raw(&self.dead, max - listed.len(), DRAIN_WAIT, visibility)
                .await
            {
                Ok(messages) => messages,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            if messages.is_empty() {
                break;
            }
            for m in messages {
                let Some((message_id, receipt)) = ids_of(&m, &self.dead) else {
                    continue;
                };
                if receipts.insert(message_id.clone(), receipt).is_none() {
                    listed.push(self.dead_letter_of(&m, message_id));
                }
            }
        }
        // Whatever happened, make every listed message visible again now.
        let receipts: Vec<String> = receipts.into_values().collect();
        let reset = self.reset_visibility(&self.dead, &receipts).await;
        outcome?;
        if let Err(error) = reset {
            // They come back on their own after LIST_VISIBILITY: not lost.
            tracing::warn!(
                message = "Listed dead letters stay invisible until their listing visibility runs out.",
                %error,
                seconds = LIST_VISIBILITY.as_secs(),
            );
        }
        listed.truncate(max);
        Ok(listed)
    }

    fn dead_letter_of(&self, m: &Message, message_id: String) -> DeadLetter {
        let receive_count = attribute(m, ATTR_RECEIVE_COUNT)
            .and_then(|c| c.parse().ok())
            // Moved by the RedrivePolicy: received exactly that many times.
            .unwrap_or(self.settings.max_receive_count);
        DeadLetter {
            message_id,
            body: m.body().unwrap_or("").to_owned(),
            reason: attribute(m, ATTR_REASON).map(str::to_owned),
            receive_count,
            lane: attribute(m, ATTR_LANE).and_then(|text| text.parse::<Lane>().ok()),
        }
    }

    /// Sets the visibility of `receipts` on `url` to zero, in batches.
    async fn reset_visibility(&self, url: &str, receipts: &[String]) -> Result<(), QueueError> {
        let mut failures = Vec::new();
        for chunk in receipts.chunks(10) {
            let outcomes = retry_batch(chunk.len(), |pending| {
                let built: Result<Vec<_>, _> = pending
                    .iter()
                    .map(|&i| {
                        ChangeMessageVisibilityBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&chunk[i])
                            .visibility_timeout(0)
                            .build()
                            .map_err(build_error)
                    })
                    .collect();
                let request = built.map(|entries| {
                    self.client
                        .change_message_visibility_batch()
                        .queue_url(url)
                        .set_entries(Some(entries))
                });
                async move {
                    let output = request?
                        .send()
                        .await
                        .map_err(|e| sdk_error(url, Op::ChangeVisibilityBatch, e))?;
                    let mut answer = BatchAnswer::default();
                    for ok in output.successful() {
                        if let Ok(i) = ok.id().parse() {
                            answer.ok.push((i, String::new()));
                        }
                    }
                    for f in output.failed() {
                        if let Ok(i) = f.id().parse() {
                            answer.failed.push((
                                i,
                                f.sender_fault(),
                                f.code().to_owned(),
                                f.message().unwrap_or("").to_owned(),
                            ));
                        }
                    }
                    Ok(answer)
                }
            })
            .await?;
            failures.extend(outcomes.into_iter().filter_map(Result::err));
        }
        batch_result(
            url,
            Op::ChangeVisibilityBatch,
            receipts.len(),
            failures,
            "they become visible again on their own when their visibility runs out",
        )
    }

    /// Deletes `receipts` from `url` in batches; returns each one's outcome.
    async fn delete_receipts(
        &self,
        url: &str,
        receipts: &[String],
    ) -> Result<Vec<EntryOutcome>, QueueError> {
        let mut all = Vec::with_capacity(receipts.len());
        for chunk in receipts.chunks(10) {
            let outcomes = retry_batch(chunk.len(), |pending| {
                let built: Result<Vec<_>, _> = pending
                    .iter()
                    .map(|&i| {
                        DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&chunk[i])
                            .build()
                            .map_err(build_error)
                    })
                    .collect();
                let request = built.map(|entries| {
                    self.client
                        .delete_message_batch()
                        .queue_url(url)
                        .set_entries(Some(entries))
                });
                async move {
                    let output = request?
                        .send()
                        .await
                        .map_err(|e| sdk_error(url, Op::DeleteBatch, e))?;
                    let mut answer = BatchAnswer::default();
                    for ok in output.successful() {
                        if let Ok(i) = ok.id().parse() {
                            answer.ok.push((i, String::new()));
                        }
                    }
                    for f in output.failed() {
                        if let Ok(i) = f.id().parse() {
                            answer.failed.push((
                                i,
                                f.sender_fault(),
                                f.code().to_owned(),
                                f.message().unwrap_or("").to_owned(),
                            ));
                        }
                    }
                    Ok(answer)
                }
            })
            .await?;
            all.extend(outcomes);
        }
        Ok(all)
    }

    // ---- redrive ------------------------------------------------------------

    pub(crate) async fn redrive(
        &self,
        which: &RedriveSelector,
    ) -> Result<RedriveReport, QueueError> {
        match which {
            RedriveSelector::All => match self.start_move_task().await? {
                Some(moved) => Ok(RedriveReport {
                    moved,
                    method: RedriveMethod::MoveTask,
                }),
                None => self.redrive_fallback(None).await,
            },
            RedriveSelector::Id(id) => self.redrive_fallback(Some(id)).await,
        }
    }

    /// Starts a move task from the dead letters back to their sources.
    /// `Some(dead-letter count at the start)`, or `None` when the endpoint
    /// does not implement move tasks.
    async fn start_move_task(&self) -> Result<Option<u64>, QueueError> {
        let mut attributes = queue_attributes(
            &self.client,
            &self.dead,
            &[
                QueueAttributeName::QueueArn,
                QueueAttributeName::ApproximateNumberOfMessages,
            ],
        )
        .await?;
        let waiting = attributes
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let arn = match attributes.remove(&QueueAttributeName::QueueArn) {
            Some(arn) => arn,
            None => match self.dead_arn.get() {
                Some(arn) => arn.clone(),
                None => {
                    return Err(QueueError::Rejected {
                        queue: self.dead.clone(),
                        operation: Op::GetAttributes.name(),
                        code: "MissingQueueArn".into(),
                        message: "the answer has no QueueArn".into(),
                    });
                }
            },
        };
        let _ = self.dead_arn.set(arn.clone());
        // No retries: an endpoint without move tasks answers each attempt
        // the same, and a real transient error is reported (retryable).
        let result = self
            .client
            .start_message_move_task()
            .source_arn(&arn)
            .customize()
            .config_override(
                aws_sdk_sqs::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Some(waiting)),
            Err(error) if move_task_unsupported(&error) => {
                tracing::info!(
                    message = "The SQS endpoint does not implement StartMessageMoveTask; redriving message by message.",
                    queue = %self.dead,
                    status = error.raw_response().map(|r| r.status().as_u16()),
                );
                Ok(None)
            }
            Err(error) => Err(sdk_error(&self.dead, Op::MoveTask, error)),
        }
    }

    /// Receive from the dead letters, send to the lane, delete from the
    /// dead letters once sent: every one (`wanted` None) or the one with
    /// that id.
    async fn redrive_fallback(&self, wanted: Option<&str>) -> Result<RedriveReport, QueueError> {
        let visibility = secs_i32(REDRIVE_VISIBILITY);
        let mut moved: u64 = 0;
        let mut put_back: Vec<String> = Vec::new();
        let mut failures: Vec<(String, String)> = Vec::new();
        let mut outcome = Ok(());
        for _ in 0..MAX_ROUNDS {
            let messages = match self
                .receive_raw(&self.dead, 10, DRAIN_WAIT, visibility)
                .await
            {
                Ok(messages) => messages,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            if messages.is_empty() {
                break;
            }
            let mut chosen: Vec<(Lane, String, String)> = Vec::new(); // lane, body, receipt
            for m in &messages {
                let Some((message_id, receipt)) = ids_of(m, &self.dead) else {
                    continue;
                };
                if wanted.is_some_and(|w| w != message_id) {
                    put_back.push(receipt);
                    continue;
                }
                let body = m.body().unwrap_or("").to_owned();
                let lane = attribute(m, ATTR_LANE)
                    .and_then(|text| text.parse::<Lane>().ok())
                    .unwrap_or_else(|| lane_from_body(&body));
                chosen.push((lane, body, receipt));
            }
            match self.move_back(&chosen).await {
                Ok((n, failed)) => {
                    moved += n;
                    failures.extend(failed);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
            if wanted.is_some() && !chosen.is_empty() {
                break;
            }
        }
        if !put_back.is_empty()
            && let Err(error) = self.reset_visibility(&self.dead, &put_back).await
        {
            tracing::warn!(
                message = "Dead letters passed over stay invisible until their redrive visibility runs out.",
                %error,
                seconds = REDRIVE_VISIBILITY.as_secs(),
            );
        }
        outcome?;
        if let Some((code, message)) = failures.last().cloned() {
            return Err(QueueError::BatchIncomplete {
                queue: self.dead.clone(),
                operation: "redrive",
                done: usize::try_from(moved).unwrap_or(usize::MAX),
                failed: failures.len(),
                code,
                message,
                advice: "the failed ones stay in the dead letters (or, if only their removal \
                         failed, are back on their lane and will show again as dead letters: a \
                         harmless duplicate); run the redrive again",
            });
        }
        Ok(RedriveReport {
            moved,
            method: RedriveMethod::Fallback,
        })
    }

    /// Sends each (lane, body, receipt) to its lane, then deletes from the
    /// dead letters the ones sent. Returns how many were sent, and the
    /// failures (of sending, or of the delete after a send).
    async fn move_back(
        &self,
        chosen: &[(Lane, String, String)],
    ) -> Result<(u64, Vec<(String, String)>), QueueError> {
        let mut moved = 0;
        let mut failures = Vec::new();
        for lane in [Lane::Priority, Lane::Standard] {
            let of_lane: Vec<&(Lane, String, String)> =
                chosen.iter().filter(|(l, _, _)| *l == lane).collect();
            if of_lane.is_empty() {
                continue;
            }
            let entries: Vec<OutEntry> = of_lane
                .iter()
                .map(|(_, body, _)| OutEntry {
                    body: body.clone(),
                    delay_secs: 0,
                    attributes: vec![(ATTR_LANE, lane.as_str().to_owned())],
                })
                .collect();
            let sent = self.send_entries(self.lane_url(lane), &entries).await?;
            let mut to_delete = Vec::new();
            for (k, outcome) in sent.into_iter().enumerate() {
                match outcome {
                    Ok(_) => {
                        moved += 1;
                        to_delete.push(of_lane[k].2.clone());
                    }
                    Err(failure) => failures.push(failure),
                }
            }
            let deleted = self.delete_receipts(&self.dead, &to_delete).await?;
            failures.extend(deleted.into_iter().filter_map(Result::err));
        }
        Ok((moved, failures))
    }

    // ---- depth --------------------------------------------------------------

    pub(crate) async fn depth(&self) -> Result<Depth, QueueError> {
        let names = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let mut depth = Depth::default();
        for url in [&self.priority, &self.standard, &self.dead] {
            let attributes = queue_attributes(&self.client, url, &names).await?;
            let count = |name: &QueueAttributeName| -> u64 {
                attributes
                    .get(name)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0)
            };
            let visible = count(&QueueAttributeName::ApproximateNumberOfMessages);
            let in_flight = count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
            let delayed = count(&QueueAttributeName::ApproximateNumberOfMessagesDelayed);
            if *url == self.dead {
                depth.dead = visible + in_flight + delayed;
            } else {
                depth.visible += visible;
                depth.in_flight += in_flight;
                depth.delayed += delayed;
            }
        }
        Ok(depth)
    }
}

// ---- helpers -----------------------------------------------------------------

async fn build_client(
    endpoint_url: Option<String>,
    region: Option<String>,
) -> Result<Client, QueueError> {
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(5))
            // A receive long-polls up to 20 s.
            .operation_attempt_timeout(Duration::from_secs(40))
            .operation_timeout(Duration::from_secs(120))
            .build(),
    );
    if let Some(region) = region {
        loader = loader.region(Region::new(region));
    }
    if let Some(endpoint) = endpoint_url {
        check_url("the SQS endpoint URL", &endpoint)?;
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    if shared.region().is_none() {
        return Err(QueueError::Config {
            reason: "no AWS region is configured: set AWS_REGION (or the queue's region)".into(),
        });
    }
    Ok(Client::new(&shared))
}

fn check_url(what: &str, url: &str) -> Result<(), QueueError> {
    match url::Url::parse(url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => Ok(()),
        _ => Err(QueueError::Config {
            reason: format!(
                "{what} {} is not an http(s) URL: set it to the URL SQS gives the queue \
                 (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
                model::job::shown(url)
            ),
        }),
    }
}

async fn create_queue(
    client: &Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> Result<String, QueueError> {
    let mut request = client.create_queue().queue_name(name);
    for (key, value) in attributes {
        request = request.attributes(key.clone(), value);
    }
    let output = request
        .send()
        .await
        .map_err(|e| sdk_error(name, Op::CreateQueue, e))?;
    output
        .queue_url()
        .map(str::to_owned)
        .ok_or_else(|| QueueError::Rejected {
            queue: name.to_owned(),
            operation: Op::CreateQueue.name(),
            code: "MissingQueueUrl".into(),
            message: "the answer has no QueueUrl".into(),
        })
}

async fn queue_attributes(
    client: &Client,
    url: &str,
    names: &[QueueAttributeName],
) -> Result<HashMap<QueueAttributeName, String>, QueueError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .set_attribute_names(Some(names.to_vec()))
        .send()
        .await
        .map_err(|e| sdk_error(url, Op::GetAttributes, e))?;
    Ok(output.attributes.unwrap_or_default())
}

fn string_attribute(value: &str) -> Result<MessageAttributeValue, QueueError> {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .map_err(build_error)
}

fn build_error(error: aws_sdk_sqs::error::BuildError) -> QueueError {
    QueueError::Invalid {
        reason: format!("an SQS request could not be built: {error}"),
    }
}

fn attribute<'m>(m: &'m Message, name: &str) -> Option<&'m str> {
    m.message_attributes()?.get(name)?.string_value()
}

fn approximate_receive_count(m: &Message) -> Option<u32> {
    m.attributes()?
        .get(&MessageSystemAttributeName::ApproximateReceiveCount)?
        .parse()
        .ok()
}

/// A message's id and receipt handle. SQS always gives both; a message
/// without them cannot be acted on, and comes back after its visibility.
fn ids_of(m: &Message, url: &str) -> Option<(String, String)> {
    match (m.message_id(), m.receipt_handle()) {
        (Some(id), Some(receipt)) => Some((id.to_owned(), receipt.to_owned())),
        _ => {
            tracing::warn!(
                message =
                    "SQS returned a message without an id or receipt; it will be delivered again.",
                queue = url,
            );
            None
        }
    }
}

/// Splits `indices` into SQS batches: at most 10 entries, and bodies
/// totalling at most [`MAX_BODY_BYTES`] (SQS's classic batch limit).
fn batches(indices: &[usize], size: impl Fn(&usize) -> usize) -> Vec<Vec<usize>> {
    const ATTRIBUTE_ALLOWANCE: usize = 64;
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    let mut bytes = 0;
    for i in indices {
        let n = size(i) + ATTRIBUTE_ALLOWANCE;
        if !current.is_empty() && (current.len() == 10 || bytes + n > MAX_BODY_BYTES) {
            out.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(*i);
        bytes += n;
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Calls `call` with the indices of the entries not done yet, until each
/// succeeded, failed by the sender's fault, or [`BATCH_ATTEMPTS`] ran out.
/// An error of the call as a whole (after the SDK's own retries) ends it.
async fn retry_batch<F, Fut>(count: usize, mut call: F) -> Result<Vec<EntryOutcome>, QueueError>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<BatchAnswer, QueueError>>,
{
    let mut outcomes: Vec<Option<EntryOutcome>> = vec![None; count];
    let mut last: Vec<Option<(String, String)>> = vec![None; count];
    let mut pending: Vec<usize> = (0..count).collect();
    let mut backoff = BATCH_BACKOFF;
    for attempt in 0..BATCH_ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        if attempt > 0 {
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
        let answer = call(pending.clone()).await?;
        for (i, id) in answer.ok {
            if let Some(slot) = outcomes.get_mut(i) {
                *slot = Some(Ok(id));
            }
        }
        for (i, sender_fault, code, message) in answer.failed {
            if i >= count {
                continue;
            }
            if sender_fault {
                outcomes[i] = Some(Err((code, message)));
            } else {
                last[i] = Some((code, message));
            }
        }
        pending.retain(|&i| outcomes[i].is_none());
        if !pending.is_empty() {
            tracing::debug!(
                message = "Retrying the failed entries of an SQS batch.",
                failed = pending.len(),
                attempt,
            );
        }
    }
    Ok(outcomes
        .into_iter()
        .zip(last)
        .map(|(outcome, last)| {
            outcome.unwrap_or_else(|| {
                Err(last.unwrap_or_else(|| {
                    (
                        "NoAnswer".to_owned(),
                        "SQS answered for neither success nor failure of the entry".to_owned(),
                    )
                }))
            })
        })
        .collect())
}

/// `Ok` when nothing failed, else [`QueueError::BatchIncomplete`].
fn batch_result(
    url: &str,
    op: Op,
    total: usize,
    failures: Vec<(String, String)>,
    advice: &'static str,
) -> Result<(), QueueError> {
    match failures.last() {
        None => Ok(()),
        Some((code, message)) => Err(QueueError::BatchIncomplete {
            queue: url.to_owned(),
            operation: op.name(),
            done: total - failures.len(),
            failed: failures.len(),
            code: code.clone(),
            message: message.clone(),
            advice,
        }),
    }
}

/// The error codes an endpoint without move tasks answers with.
const UNSUPPORTED_CODES: &[&str] = &[
    "UnsupportedOperation",
    "AWS.SimpleQueueService.UnsupportedOperation",
    "InvalidAction",
    "UnknownOperation",
    "UnknownOperationException",
    "NotImplemented",
];

/// Whether a `StartMessageMoveTask` error means "this endpoint does not
/// implement move tasks" (then redrive falls back), as opposed to a failure
/// of the task (then it is reported). The rule is in the module's doc.
pub(crate) fn move_task_unsupported<E>(error: &SdkError<E>) -> bool
where
    E: ProvideErrorMetadata,
{
    match error {
        SdkError::ResponseError(_) => true,
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            match service.err().code().filter(|c| !c.is_empty()) {
                Some(code) => UNSUPPORTED_CODES.contains(&code) || status == 501,
                None => matches!(status, 400 | 404 | 405 | 500 | 501),
            }
        }
        _ => false,
    }
}

/// An error of a call holding a receipt: a stale receipt is
/// [`QueueError::ReceiptExpired`].
fn receipt_error<E>(url: &str, op: Op, d: &Delivery, error: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    if let Some(service) = error.as_service_error() {
        let code = service.code().unwrap_or("");
        let message = service.message().unwrap_or("").to_ascii_lowercase();
        let stale = code.contains("ReceiptHandleIsInvalid")
            || code.contains("MessageNotInflight")
            || (code.contains("InvalidParameterValue") && message.contains("receipt"));
        if stale {
            return QueueError::ReceiptExpired {
                message_id: d.message_id.clone(),
            };
        }
    }
    sdk_error(url, op, error)
}

/// Maps an SDK error to one that names the operator's action.
fn sdk_error<E>(queue: &str, op: Op, error: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let queue = queue.to_owned();
    let operation = op.name();
    match &error {
        SdkError::ConstructionFailure(_) => {
            return QueueError::Config {
                reason: format!(
                    "the {operation} request could not be built: {}",
                    causes(&error)
                ),
            };
        }
        SdkError::DispatchFailure(failure) => {
            let message = causes(&error);
            // Missing credentials show as a dispatch failure whose cause is
            // a credentials error (its type is not re-exported).
            if failure.as_connector_error().is_some_and(|c| c.is_other())
                && message.to_ascii_lowercase().contains("credential")
            {
                return QueueError::NoCredentials {
                    queue,
                    operation,
                    message,
                };
            }
            return QueueError::Unreachable {
                queue,
                operation,
                message,
            };
        }
        SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            return QueueError::Unreachable {
                queue,
                operation,
                message: causes(&error),
            };
        }
        _ => {}
    }
    let status = error.raw_response().map(|r| r.status().as_u16());
    let code = error
        .as_service_error()
        .and_then(ProvideErrorMetadata::code)
        .unwrap_or("")
        .to_owned();
    let message = error
        .as_service_error()
        .and_then(ProvideErrorMetadata::message)
        .map_or_else(|| causes(&error), str::to_owned);
    if code.contains("NonExistentQueue") || code.contains("QueueDoesNotExist") {
        return QueueError::NotFound { queue, operation };
    }
    let denied = matches!(
        code.as_str(),
        "AccessDenied"
            | "AccessDeniedException"
            | "InvalidClientTokenId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "UnrecognizedClientException"
            | "InvalidSecurity"
            | "MissingAuthenticationToken"
            | "KmsAccessDenied"
            | "KmsDisabled"
    ) || status == Some(403);
    if denied {
        return QueueError::Denied {
            queue,
            operation,
            permission: op.permission(),
            message: format!("{code}: {message}"),
        };
    }
    let transient = matches!(
        code.as_str(),
        "RequestThrottled"
            | "ThrottlingException"
            | "KmsThrottled"
            | "ServiceUnavailable"
            | "InternalError"
            | "InternalFailure"
            | "OverLimit"
    ) || status.is_some_and(|s| s >= 500 || s == 429);
    if transient {
        return QueueError::Unreachable {
            queue,
            operation,
            message: format!(
                "{}: {message}",
                if code.is_empty() { "HTTP error" } else { &code }
            ),
        };
    }
    QueueError::Rejected {
        queue,
        operation,
        code: if code.is_empty() {
            status.map_or_else(|| "unknown".to_owned(), |s| format!("HTTP {s}"))
        } else {
            code
        },
        message,
    }
}

/// An error and its causes, one after the other, each once.
fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
