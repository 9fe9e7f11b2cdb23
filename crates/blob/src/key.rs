//! Where a page lives: [`PageKey`] and its one textual form.

use std::cmp::Ordering;
use std::fmt;

use time::{Date, Month};

use crate::error::{BlobError, shown};

/// The longest practice id, resource name or run id accepted.
const MAX_COMPONENT: usize = 128;

/// The suffix of every page object.
const SUFFIX: &str = ".jsonl.gz";

/// The first segment of every page's key.
pub(crate) const RAW: &str = "raw";

/// The identity of one archived page.
///
/// Its textual form ([`PageKey::object_key`]) is
/// `raw/{practice_id}/{resource}/{yyyy-mm-dd}/{run_id}/{seq:010}.jsonl.gz`,
/// the same under an S3 prefix and under a local folder.
///
/// The fields are public for construction; every archive operation checks
/// them ([`PageKey::validate`]) before touching storage:
///
/// - `practice_id`, `resource`: 1 to 128 of `A-Z a-z 0-9 _ . -`, never `.`
///   and never containing `..`;
/// - `run_id`: 1 to 128 of `A-Z a-z 0-9 _ -`;
/// - `date`: a year from 0000 to 9999.
///
/// The order ([`Ord`]) is replay order: by `date`, then `run_id`, then
/// `resource`, then `seq` (then `practice_id`, so the order is total) — the
/// order the pages were fetched in, given run ids that sort by time (ULIDs
/// or timestamps).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    /// The practice the page belongs to.
    pub practice_id: String,
    /// The resource (the landed table's name, e.g. `patient_procedures`).
    pub resource: String,
    /// The UTC day the page was fetched.
    pub date: Date,
    /// The sync run that fetched it (a ULID-like or timestamp id).
    pub run_id: String,
    /// The page's number within the run and resource.
    pub seq: u64,
}

impl PageKey {
    /// The key's textual form:
    /// `raw/{practice_id}/{resource}/{yyyy-mm-dd}/{run_id}/{seq:010}.jsonl.gz`.
    ///
    /// Only meaningful for a key that passes [`PageKey::validate`]; the
    /// archive validates before it uses this.
    #[must_use]
    pub fn object_key(&self) -> String {
        format!(
            "{RAW}/{}/{}/{}/{}/{}",
            self.practice_id,
            self.resource,
            DateText(self.date),
            self.run_id,
            self.file_name()
        )
    }

    /// The last segment: `{seq:010}.jsonl.gz`.
    pub(crate) fn file_name(&self) -> String {
        format!("{:010}{SUFFIX}", self.seq)
    }

    /// The date segment: `yyyy-mm-dd`.
    pub(crate) fn date_text(&self) -> String {
        DateText(self.date).to_string()
    }

    /// Checks every component; see the type's documentation for the rules.
    pub fn validate(&self) -> Result<(), BlobError> {
        check_name("practice_id", &self.practice_id)?;
        check_name("resource", &self.resource)?;
        check_run_id(&self.run_id)?;
        if !(0..=9999).contains(&self.date.year()) {
            return Err(BlobError::InvalidKey {
                field: "date",
                value: shown(&self.date.to_string()),
                reason: "the year must be from 0000 to 9999",
            });
        }
        Ok(())
    }

    /// Reads a key written by [`PageKey::object_key`] (without any S3 prefix).
    ///
    /// Accepts exactly the canonical form: the sequence has 10 digits (more
    /// only when it needs more, never a superfluous leading zero), so each
    /// page has one key.
    pub fn parse(key: &str) -> Result<PageKey, BlobError> {
        let not = |reason| BlobError::NotAPageKey {
            key: shown(key),
            reason,
        };
        let segments: Vec<&str> = key.split('/').collect();
        let [raw, practice_id, resource, date, run_id, file] = segments[..] else {
            return Err(not("it does not have six '/'-separated segments"));
        };
        if raw != RAW {
            return Err(not("it does not start with raw/"));
        }
        let as_not = |err: BlobError| match err {
            BlobError::InvalidKey { reason, .. } => not(reason),
            other => other,
        };
        check_name("practice_id", practice_id).map_err(as_not)?;
        check_name("resource", resource).map_err(as_not)?;
        check_run_id(run_id).map_err(as_not)?;
        let date =
            parse_date(date).ok_or_else(|| not("the date segment is not a YYYY-MM-DD day"))?;
        let digits = file
            .strip_suffix(SUFFIX)
            .ok_or_else(|| not("the file name does not end in .jsonl.gz"))?;
        let seq = parse_seq(digits).ok_or_else(|| {
            not("the file name is not a sequence number of at least 10 digits, zero-padded")
        })?;
        Ok(PageKey {
            practice_id: practice_id.to_owned(),
            resource: resource.to_owned(),
            date,
            run_id: run_id.to_owned(),
            seq,
        })
    }
}

impl Ord for PageKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.date
            .cmp(&other.date)
            .then_with(|| self.run_id.cmp(&other.run_id))
            .then_with(|| self.resource.cmp(&other.resource))
            .then_with(|| self.seq.cmp(&other.seq))
            .then_with(|| self.practice_id.cmp(&other.practice_id))
    }
}

impl PartialOrd for PageKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.object_key())
    }
}

/// Checks a practice id or resource name: one safe path segment.
pub(crate) fn check_name(field: &'static str, value: &str) -> Result<(), BlobError> {
    let refuse = |reason| {
        Err(BlobError::InvalidKey {
            field,
            value: shown(value),
            reason,
        })
    };
    if value.is_empty() {
        return refuse("it is empty");
    }
    if value.len() > MAX_COMPONENT {
        return refuse("it is longer than 128 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return refuse("it holds a character other than A-Z, a-z, 0-9, '_', '.' and '-'");
    }
    if value == "." || value.contains("..") {
        return refuse("it is '.' or contains '..'");
    }
    Ok(())
}

fn check_run_id(value: &str) -> Result<(), BlobError> {
    let refuse = |reason| {
        Err(BlobError::InvalidKey {
            field: "run_id",
            value: shown(value),
            reason,
        })
    };
    if value.is_empty() {
        return refuse("it is empty");
    }
    if value.len() > MAX_COMPONENT {
        return refuse("it is longer than 128 characters");
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
    {
        return refuse("it holds a character other than A-Z, a-z, 0-9, '_' and '-'");
    }
    Ok(())
}

/// `yyyy-mm-dd`, the year always four digits.
struct DateText(Date);

impl fmt::Display for DateText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02}",
            self.0.year(),
            u8::from(self.0.month()),
            self.0.day()
        )
    }
}

fn parse_date(text: &str) -> Option<Date> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = text.get(range)?;
        if !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(number(0..4)?).ok()?;
    let month = Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?;
    let day = u8::try_from(number(8..10)?).ok()?;
    Date::from_calendar_date(year, month, day).ok()
}

fn parse_seq(digits: &str) -> Option<u64> {
    if digits.len() < 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seq: u64 = digits.parse().ok()?;
    // Canonical only: "00000000001" (11 digits) is not the key of page 1.
    (format!("{seq:010}") == digits).then_some(seq)
}
