//! Metrics as CloudWatch Embedded Metric Format (EMF) lines: one JSON
//! object per line on standard output, which the ECS log driver ships to
//! CloudWatch Logs, where each line becomes metric data points in the
//! namespace [`NAMESPACE`]. No agent, no API calls, no extra IAM.
//!
//! - [`Document`]: one EMF object: a timestamp, dimensions (keys whose
//!   string values are members of the object) and metrics (names whose
//!   numeric values are members), checked against the format's rules when
//!   it is built ([`EmfError`]).
//! - [`Sink`]: where documents go: standard output, memory (tests), or
//!   nowhere (the default of the tools people run by hand).
//! - [`names`]: every metric the alarms and dashboards read, with its unit.
//!
//! Values are counts and durations only: never a secret, never patient
//! data. The one dimension is `PracticeId` (our id, not a name).

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "AscendSync";

/// The dimension of per-practice metrics.
pub const PRACTICE_ID: &str = "PracticeId";

/// The most dimension keys in one set (CloudWatch: 30).
pub const MAX_DIMENSIONS: usize = 30;
/// The most metrics in one document (EMF: 100).
pub const MAX_METRICS: usize = 100;

/// A metric's unit (a subset of CloudWatch's `StandardUnit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Count,
    None,
}

impl Unit {
    /// CloudWatch's name of the unit.
    pub const fn as_str(self) -> &'static str {
        match self {
            Unit::Seconds => "Seconds",
            Unit::Count => "Count",
            Unit::None => "None",
        }
    }
}

/// The metrics, by name and unit.
pub mod names {
    use super::Unit;

    /// A metric's name and unit.
    pub type Name = (&'static str, Unit);

    /// Per practice, every minute (scheduler): seconds since its last
    /// successful sync (since it was connected, before one).
    pub const STALENESS_SECONDS: Name = ("StalenessSeconds", Unit::Seconds);
    /// Fleet, every minute (scheduler): the largest staleness of an
    /// active practice over its stale limit (two intervals and five
    /// minutes); above 1, a practice is stale.
    pub const MAX_STALENESS_RATIO: Name = ("MaxStalenessRatio", Unit::None);
    /// Fleet, every minute (scheduler): practices stale now.
    pub const STALE_PRACTICES: Name = ("StalePractices", Unit::Count);
    /// Fleet, every minute (scheduler): records in quarantine now.
    pub const RECORDS_QUARANTINED_NOW: Name = ("RecordsQuarantined", Unit::Count);
    /// Fleet, every minute (scheduler): jobs ready in both lanes.
    pub const QUEUE_BACKLOG: Name = ("QueueBacklog", Unit::Count);
    /// Fleet, every minute (scheduler): dead letters now.
    pub const DEAD_LETTERS: Name = ("DeadLetters", Unit::Count);
    /// Per practice and fleet, per attempt (worker).
    pub const SYNC_DURATION_SECONDS: Name = ("SyncDurationSeconds", Unit::Seconds);
    /// Per practice and fleet, per attempt (worker): rows written.
    pub const RECORDS_SYNCED: Name = ("RecordsSynced", Unit::Count);
    /// Per practice and fleet, per attempt (worker): 1 when it failed.
    pub const SYNC_FAILURES: Name = ("SyncFailures", Unit::Count);
    /// Per practice and fleet, per attempt (worker): 1.
    pub const SYNC_ATTEMPTS: Name = ("SyncAttempts", Unit::Count);
    /// Per practice and fleet, per attempt (worker): requests answered 429.
    pub const API_THROTTLED: Name = ("ApiThrottled", Unit::Count);
    /// Per practice and fleet, per attempt (worker): requests made.
    pub const API_REQUESTS: Name = ("ApiRequests", Unit::Count);
    /// Per practice and fleet, per attempt (worker): records set aside.
    pub const RECORDS_SET_ASIDE: Name = ("RecordsSetAside", Unit::Count);
    /// Per practice and fleet, per attempt (worker): deletes captured.
    pub const DELETES_CAPTURED: Name = ("DeletesCaptured", Unit::Count);
    /// Per practice and fleet (worker): 1 when a job was given up.
    pub const JOBS_DEAD_LETTERED: Name = ("JobsDeadLettered", Unit::Count);
    /// Per practice and fleet, per write-back job (worker).
    pub const WRITEBACKS_SENT: Name = ("WritebacksSent", Unit::Count);
    /// Per practice and fleet, per write-back job (worker).
    pub const WRITEBACKS_FAILED: Name = ("WritebacksFailed", Unit::Count);
    /// Per practice and fleet, per nightly pass (nightly).
    pub const DELETES_APPLIED: Name = ("DeletesApplied", Unit::Count);
}

/// A document that breaks the format's rules (a bug in the caller).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmfError {
    #[error("metric {0:?} is not a finite number; nothing was emitted")]
    NotFinite(&'static str),
    #[error("{0:?} is both a dimension and a metric, or given twice; nothing was emitted")]
    Duplicate(String),
    #[error("a document holds at most {MAX_METRICS} metrics and {MAX_DIMENSIONS} dimensions")]
    TooMany,
    #[error("a dimension value must not be empty ({0:?}); nothing was emitted")]
    EmptyDimension(&'static str),
}

/// One EMF document: every metric shares the document's dimensions, and
/// each is published twice: with the dimensions and without (the fleet).
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    timestamp_ms: i128,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(names::Name, f64)>,
}

impl Document {
    /// An empty document at `at`.
    pub fn new(at: OffsetDateTime) -> Document {
        Document {
            timestamp_ms: at.unix_timestamp_nanos() / 1_000_000,
            dimensions: Vec::new(),
            metrics: Vec::new(),
        }
    }

    /// Adds a dimension.
    #[must_use]
    pub fn dimension(mut self, key: &'static str, value: impl Into<String>) -> Document {
        self.dimensions.push((key, value.into()));
        self
    }

    /// Adds a metric.
    #[must_use]
    pub fn metric(mut self, name: names::Name, value: f64) -> Document {
        self.metrics.push((name, value));
        self
    }

    /// Adds a count.
    #[must_use]
    pub fn count(self, name: names::Name, value: u64) -> Document {
        #[allow(clippy::cast_precision_loss)]
        self.metric(name, value as f64)
    }

    /// The document as one JSON line (without the line break), or why it
    /// breaks the format's rules.
    pub fn to_line(&self) -> Result<String, EmfError> {
        if self.metrics.len() > MAX_METRICS || self.dimensions.len() > MAX_DIMENSIONS {
            return Err(EmfError::TooMany);
        }
        let mut root = Map::new();
        for (key, value) in &self.dimensions {
            if value.is_empty() {
                return Err(EmfError::EmptyDimension(key));
            }
            if root
                .insert((*key).to_owned(), Value::String(value.clone()))
                .is_some()
            {
                return Err(EmfError::Duplicate((*key).to_owned()));
            }
        }
        let mut definitions = Vec::new();
        for ((name, unit), value) in &self.metrics {
            let number = serde_json::Number::from_f64(*value).ok_or(EmfError::NotFinite(name))?;
            if root
                .insert((*name).to_owned(), Value::Number(number))
                .is_some()
            {
                return Err(EmfError::Duplicate((*name).to_owned()));
            }
            definitions.push(serde_json::json!({"Name": name, "Unit": unit.as_str()}));
        }
        let keys: Vec<&str> = self.dimensions.iter().map(|(k, _)| *k).collect();
        // With the dimensions, and the fleet-wide rollup without them.
        let sets: Vec<Vec<&str>> = if keys.is_empty() {
            vec![Vec::new()]
        } else {
            vec![keys, Vec::new()]
        };
        root.insert(
            "_aws".to_owned(),
            serde_json::json!({
                "Timestamp": i64::try_from(self.timestamp_ms).unwrap_or(0),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": sets,
                    "Metrics": definitions,
                }],
            }),
        );
        Ok(Value::Object(root).to_string())
    }
}

/// Where documents go. Cheap to clone.
#[derive(Clone, Default)]
pub enum Sink {
    /// Nowhere (the tools people run by hand).
    #[default]
    Off,
    /// Standard output, a line each (the roles in a deployment).
    Stdout,
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<String>>>),
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Sink::Off => "Sink::Off",
            Sink::Stdout => "Sink::Stdout",
            Sink::Memory(_) => "Sink::Memory",
        })
    }
}

impl Sink {
    /// A sink that keeps the lines, and the lines it keeps.
    pub fn memory() -> (Sink, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        (Sink::Memory(lines.clone()), lines)
    }

    /// Emits `doc`; a document that breaks the rules is dropped with an
    /// error line on stderr (metrics never stop a sync).
    pub fn emit(&self, doc: &Document) {
        if matches!(self, Sink::Off) {
            return;
        }
        let line = match doc.to_line() {
            Ok(line) => line,
            Err(error) => {
                eprintln!("telemetry: a metrics document was dropped: {error}");
                return;
            }
        };
        match self {
            Sink::Off => {}
            Sink::Stdout => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Sink::Memory(lines) => {
                if let Ok(mut lines) = lines.lock() {
                    lines.push(line);
                }
            }
        }
    }

    /// Whether documents go anywhere.
    pub fn is_on(&self) -> bool {
        !matches!(self, Sink::Off)
    }
}

/// CloudWatch's units (`StandardUnit`).
pub const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// Checks one line against the Embedded Metric Format specification's
/// rules, read apart from [`Document::to_line`] (the tests of this crate
/// and of the roles use it); an error names the first rule broken.
pub fn check_line(line: &str) -> Result<(), String> {
    let doc: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let root = doc.as_object().ok_or("the root is not an object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .ok_or("no _aws object")?;
    let ts = aws.get("Timestamp").ok_or("no Timestamp")?;
    if !ts.is_i64() && !ts.is_u64() {
        return Err("Timestamp is not an integer of milliseconds".into());
    }
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .ok_or("no CloudWatchMetrics array")?;
    if directives.is_empty() {
        return Err("CloudWatchMetrics is empty".into());
    }
    for directive in directives {
        let ns = directive["Namespace"].as_str().ok_or("no Namespace")?;
        if ns.is_empty() || ns.len() > 255 {
            return Err("Namespace length".into());
        }
        let sets = directive["Dimensions"]
            .as_array()
            .ok_or("Dimensions is not an array")?;
        for set in sets {
            let keys = set.as_array().ok_or("a DimensionSet is not an array")?;
            if keys.len() > 30 {
                return Err("more than 30 dimensions in a set".into());
            }
            for key in keys {
                let key = key.as_str().ok_or("a dimension key is not a string")?;
                match root.get(key) {
                    Some(Value::String(_)) => {}
                    _ => return Err(format!("dimension {key} is not a string member")),
                }
            }
        }
        let metrics = directive["Metrics"]
            .as_array()
            .ok_or("Metrics is not an array")?;
        if metrics.len() > 100 {
            return Err("more than 100 metrics".into());
        }
        for metric in metrics {
            let name = metric["Name"].as_str().ok_or("a metric without Name")?;
            if name.is_empty() || name.len() > 255 {
                return Err("metric name length".into());
            }
            if let Some(unit) = metric.get("Unit") {
                let unit = unit.as_str().ok_or("Unit is not a string")?;
                if !UNITS.contains(&unit) {
                    return Err(format!("unit {unit} is not a CloudWatch unit"));
                }
            }
            match root.get(name) {
                Some(Value::Number(_)) => {}
                Some(Value::Array(values))
                    if values.len() <= 100 && values.iter().all(Value::is_number) => {}
                _ => return Err(format!("metric {name} is not a number member")),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;

/// What one attempt of a job did, as the worker emits it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attempt {
    pub practice_id: String,
    pub seconds: f64,
    /// Rows written.
    pub written: u64,
    pub failed: bool,
    pub api_requests: u64,
    pub api_throttled: u64,
    pub set_aside: u64,
    pub deletes_captured: u64,
    pub dead_lettered: bool,
    /// A write-back job: items sent (or found already sent) and items
    /// that failed or were given up.
    pub writebacks: Option<(u64, u64)>,
}

impl Attempt {
    /// The attempt's document, per practice (and the fleet's rollup).
    pub fn document(&self, at: OffsetDateTime) -> Document {
        let mut doc = Document::new(at)
            .dimension(PRACTICE_ID, self.practice_id.clone())
            .metric(names::SYNC_DURATION_SECONDS, self.seconds)
            .count(names::RECORDS_SYNCED, self.written)
            .count(names::SYNC_FAILURES, u64::from(self.failed))
            .count(names::SYNC_ATTEMPTS, 1)
            .count(names::API_REQUESTS, self.api_requests)
            .count(names::API_THROTTLED, self.api_throttled)
            .count(names::RECORDS_SET_ASIDE, self.set_aside)
            .count(names::DELETES_CAPTURED, self.deletes_captured)
            .count(names::JOBS_DEAD_LETTERED, u64::from(self.dead_lettered));
        if let Some((sent, failed)) = self.writebacks {
            doc = doc
                .count(names::WRITEBACKS_SENT, sent)
                .count(names::WRITEBACKS_FAILED, failed);
        }
        doc
    }
}
