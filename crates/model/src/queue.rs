//! What the job queue carries, on SQS and on the database alike.

use std::time::Duration;

use crate::UnknownValue;

/// A queue lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    /// Jobs a person waits for ("Force Sync Now"); always received first.
    Priority,
    /// Everything else (scheduled cycles, initial-sync chunks).
    Standard,
}

impl Lane {
    /// The lane's name (`priority`, `standard`), as written in SQS message
    /// attributes and the database.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Lane::Priority => "priority",
            Lane::Standard => "standard",
        }
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Lane {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Lane, UnknownValue> {
        match s {
            "priority" => Ok(Lane::Priority),
            "standard" => Ok(Lane::Standard),
            _ => Err(UnknownValue {
                what: "lane",
                value: s.chars().take(64).collect(),
                expected: "priority standard",
            }),
        }
    }
}

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The body (usually [`crate::Job::encode`]).
    pub body: String,
    /// Its lane.
    pub lane: Lane,
    /// How long it stays invisible after being sent (at most 15 min).
    pub delay: Duration,
}

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message's id (the same at each delivery of one message).
    pub message_id: String,
    /// This delivery's receipt (needed to delete it, change its visibility
    /// or dead-letter it).
    pub receipt: String,
    /// The body.
    pub body: String,
    /// How many times it has been delivered, this time included.
    pub receive_count: u32,
    /// The lane it was received from.
    pub lane: Lane,
}

/// A dead letter, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Its id in the dead letters (redrive takes it).
    pub message_id: String,
    /// The body.
    pub body: String,
    /// Why it was moved; None when it reached `max_receive_count` (see the
    /// sync history for the last error).
    pub reason: Option<String>,
    /// How many times it was delivered before it was moved.
    pub receive_count: u32,
    /// The lane it came from, when known (SQS dead letters sent by other
    /// tools may not say; redrive then reads it from the body).
    pub lane: Option<Lane>,
}

/// How many messages are where (approximate on SQS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Depth {
    /// Ready to be received, both lanes.
    pub visible: u64,
    /// Received and not yet deleted or visible again, both lanes.
    pub in_flight: u64,
    /// Dead letters.
    pub dead: u64,
    /// Sent with a delay that has not run out yet, both lanes.
    pub delayed: u64,
}
