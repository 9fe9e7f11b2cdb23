//! The queue's errors: each says what happened and what an operator does.
//!
//! No error carries a message body (bodies hold identifiers only, but an
//! error is not the place for them either): queues, operations, message
//! ids, and the service's own codes and messages are shown.

/// An error of the job queue.
///
/// [`QueueError::is_retryable`] tells a caller whether the same call may
/// succeed later unchanged; every other error needs a change first, named
/// in its message.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The queue's configuration cannot work.
    #[error("the job queue is misconfigured: {reason}")]
    Config {
        /// What is wrong and what to set.
        reason: String,
    },

    /// The call itself is not allowed (a delay over 15 minutes, an empty
    /// body...). Nothing was sent or changed.
    #[error("{reason}; nothing was sent or changed (this is a bug in the caller)")]
    Invalid {
        /// What is wrong.
        reason: String,
    },

    /// SQS could not be reached, timed out, throttled or failed (5xx).
    #[error(
        "SQS did not complete {operation} on {queue}: {message}; check the network path to SQS \
         (VPC endpoint, security groups, the configured endpoint URL) if this persists (retried \
         automatically)"
    )]
    Unreachable {
        /// The queue URL.
        queue: String,
        /// The SQS operation.
        operation: &'static str,
        /// What the SDK or the service said.
        message: String,
    },

    /// No AWS credentials could be found.
    #[error(
        "no AWS credentials for {operation} on {queue}: {message}; give the task an IAM role, or \
         set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    NoCredentials {
        /// The queue URL.
        queue: String,
        /// The SQS operation.
        operation: &'static str,
        /// What the SDK said.
        message: String,
    },

    /// The queue does not exist.
    #[error(
        "the SQS queue {queue} does not exist ({operation}); create the queues (the \
         infrastructure stack, or `SqsQueue::provision` for local set-ups) or fix the configured \
         queue URL (region and account included)"
    )]
    NotFound {
        /// The queue URL.
        queue: String,
        /// The SQS operation.
        operation: &'static str,
    },

    /// SQS refused the credentials or the permission.
    #[error(
        "SQS denied {operation} on {queue}: {message}; grant the task role {permission} on that \
         queue (and kms:Decrypt/kms:GenerateDataKey on its key if it is encrypted with a \
         customer key)"
    )]
    Denied {
        /// The queue URL.
        queue: String,
        /// The SQS operation.
        operation: &'static str,
        /// The IAM action needed.
        permission: &'static str,
        /// The service's message.
        message: String,
    },

    /// SQS refused the request for another reason.
    #[error(
        "SQS refused {operation} on {queue} ({code}): {message}; check the queue's attributes \
         against the configured settings, or report this as a bug"
    )]
    Rejected {
        /// The queue URL.
        queue: String,
        /// The SQS operation.
        operation: &'static str,
        /// The service's error code.
        code: String,
        /// The service's message.
        message: String,
    },

    /// The receipt no longer names the message's latest delivery: its
    /// visibility ran out and it was delivered again, or it became a dead
    /// letter. Nothing was changed.
    #[error(
        "message {message_id} was delivered again (its visibility ran out) or is already a dead \
         letter, so this receipt no longer applies and nothing was changed; the message will be \
         processed again, which is harmless. If this repeats, extend the visibility (heartbeat) \
         sooner than it runs out"
    )]
    ReceiptExpired {
        /// The message.
        message_id: String,
    },

    /// Some entries of a batch kept failing after retries; the others
    /// succeeded. Nothing was dropped silently: `done` did, `failed` did not.
    #[error(
        "{operation} on {queue}: {done} message(s) done, {failed} kept failing ({code}: \
         {message}); {advice}"
    )]
    BatchIncomplete {
        /// The queue URL.
        queue: String,
        /// The SQS operation.
        operation: &'static str,
        /// How many entries succeeded.
        done: usize,
        /// How many did not.
        failed: usize,
        /// The last failing entry's code.
        code: String,
        /// The last failing entry's message.
        message: String,
        /// What to do.
        advice: &'static str,
    },

    /// The database queue's store failed (its text says what to do).
    #[error("the database job queue failed: {0}")]
    Store(#[from] store::StoreError),
    /// The database queue's receive task ended without an answer (it
    /// panicked, or the runtime is shutting down).
    #[error(
        "the database queue's receive was interrupted ({reason}); nothing was lost: what it \
         took comes back when its visibility runs out"
    )]
    Interrupted {
        /// What ended it.
        reason: String,
    },
}

impl QueueError {
    /// Whether the same call may succeed later unchanged.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::Unreachable { .. } | QueueError::BatchIncomplete { .. } => true,
            QueueError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}
