//! One page of a list, read tolerantly: every record is kept as its raw JSON,
//! and only a cheap typed head (id, lastModified) is parsed out of it.
//!
//! Validity is decided record by record: a record whose head cannot be read
//! (no id, an id that is not a decimal number or is beyond the contract's
//! range, an unreadable `lastModified`) is a [`Rejected`] record of the page,
//! kept whole with the reason, and the page's other records are read as
//! usual. Only an unreadable envelope fails the page. Every record's text is
//! minified (the whitespace between tokens removed, nothing else changed), so
//! a pretty-printed body yields one-line records.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::Resource;
use crate::error::{ClientError, shorten};
use crate::ids::{AscendId, MAX_ID};
use crate::query::Cursor;

/// One record of a list: its id, its `lastModified` and the whole record as
/// the API sent it (unknown fields included).
#[derive(Debug, Clone)]
pub struct Record {
    /// The record's `id`.
    pub id: AscendId,
    /// The record's `lastModified`, when it has one.
    pub last_modified: Option<OffsetDateTime>,
    /// The record as sent, minified: the whitespace between tokens removed,
    /// strings, numbers and keys byte for byte as sent.
    pub raw: Box<RawValue>,
}

/// A record of a page that could not be read: kept whole, with what is
/// wrong with it, so that the caller can set it aside and land the rest of
/// its page.
///
/// Its `raw` text and `reason` may quote patient data: keep them out of
/// logs and error messages.
#[derive(Clone)]
pub struct Rejected {
    /// Its position in the page's `data` array (0-based).
    pub index: usize,
    /// Its id as sent, when it has one that is a string or a non-negative
    /// integer (`"abc"`, `"99999999999999999999"`).
    pub id: Option<String>,
    /// Its id as a number, when it is one that fits 64 bits unsigned (even
    /// beyond [`MAX_ID`]): where the keyset cursor may move past it.
    pub numeric_id: Option<AscendId>,
    /// The record as sent, minified.
    pub raw: Box<RawValue>,
    /// What is wrong with it, in words for an operator.
    pub reason: String,
}

impl fmt::Debug for Rejected {
    /// The index, id and the reason's length only: the record is patient data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rejected")
            .field("index", &self.index)
            .field("id", &self.id)
            .field("raw_len", &self.raw.get().len())
            .finish_non_exhaustive()
    }
}

/// One page of a list answer.
#[derive(Debug, Clone)]
pub struct Page {
    /// The resource listed.
    pub resource: Resource,
    /// The page that was asked for.
    pub cursor: Cursor,
    /// The records that could be read, in the order the API sent them.
    pub records: Vec<Record>,
    /// The records that could not be read, in the order the API sent them.
    pub rejected: Vec<Rejected>,
    /// `meta.pagination.total`: how many records match the filter, if said.
    pub total: Option<u64>,
    /// `meta.pagination.pageSize`, if said.
    pub reported_page_size: Option<u32>,
    /// The envelope's `warnings`, as sent.
    pub warnings: Vec<Box<RawValue>>,
    /// The envelope's `errors`, as sent (unusual on a 2xx answer).
    pub errors: Vec<Box<RawValue>>,
    /// Size of the answer's body in bytes.
    pub bytes: usize,
    /// HTTP requests this page took (1 unless retried).
    pub attempts: u32,
    /// The share of the client's `max_bytes_in_flight` this page holds
    /// until it is dropped.
    pub(crate) held: Option<std::sync::Arc<crate::memory::Held>>,
}

impl Page {
    /// Parses a list answer's body. `resource` and `cursor` only label
    /// errors and the page. `bytes` is the body's length and `attempts` 0.
    ///
    /// Fails with [`ClientError::BadPayload`] only when the envelope cannot
    /// be read: the body is not a JSON object, is truncated or malformed, or
    /// has no `data` array. A record that is not an object, has no id, has
    /// an id that is not a decimal number or is beyond [`MAX_ID`], or has a
    /// `lastModified` that is not a timestamp is [`Rejected`]; the others
    /// are read. Unknown fields and values never fail.
    pub fn parse(resource: Resource, cursor: Cursor, body: &[u8]) -> Result<Page, ClientError> {
        let bad = |detail: String| ClientError::bad_payload(resource, &cursor, detail);
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        match first {
            Some(b'{') => {}
            None => return Err(bad("the body is empty".to_string())),
            Some(_) => {
                let start = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
                return Err(bad(format!(
                    "the body is not a JSON object (it starts {:?})",
                    shorten(&start)
                )));
            }
        }
        let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| {
            if e.is_eof() {
                bad(format!("truncated JSON ({e})"))
            } else {
                bad(format!("malformed JSON ({e})"))
            }
        })?;
        let errors = envelope.errors.map(as_list).unwrap_or_default();
        let data = match envelope.data {
            Data::Records(records) => records,
            Data::Null => return Err(bad(format!("`data` is null{}", errors_note(&errors)))),
            Data::Other(kind) => return Err(bad(format!("`data` is {kind}, not an array"))),
            Data::Missing => {
                return Err(bad(format!(
                    "the envelope has no `data` array{}",
                    errors_note(&errors)
                )));
            }
        };
        let mut records = Vec::with_capacity(data.len());
        let mut rejected = Vec::new();
        for (index, raw) in data.into_iter().enumerate() {
            match read_head(raw) {
                Ok((id, last_modified)) => records.push(Record {
                    id,
                    last_modified,
                    raw: minified(raw),
                }),
                Err(unread) => rejected.push(Rejected {
                    index,
                    id: unread.id,
                    numeric_id: unread.numeric_id,
                    raw: minified(raw),
                    reason: unread.reason,
                }),
            }
        }
        let warnings = envelope.warnings.map(as_list).unwrap_or_default();
        let pagination = envelope.meta.and_then(|m| m.pagination);
        let total = pagination.as_ref().and_then(|p| p.total.0);
        let reported_page_size = pagination
            .as_ref()
            .and_then(|p| p.page_size.0)
            .and_then(|n| u32::try_from(n).ok());
        Ok(Page {
            resource,
            cursor,
            records,
            rejected,
            total,
            reported_page_size,
            warnings,
            errors,
            bytes: body.len(),
            attempts: 0,
            held: None,
        })
    }
}

impl Page {
    /// Records in the page, read or not.
    pub fn entries(&self) -> usize {
        self.records.len() + self.rejected.len()
    }

    /// The largest numeric id in the page, read or rejected: where keyset
    /// paging goes on from.
    pub fn last_id(&self) -> Option<AscendId> {
        self.records
            .iter()
            .map(|r| r.id)
            .chain(self.rejected.iter().filter_map(|r| r.numeric_id))
            .max()
    }

    /// Every record's text (minified), read or rejected, in the order the
    /// API sent them: what the raw archive keeps.
    pub fn texts(&self) -> Vec<&str> {
        let mut texts = Vec::with_capacity(self.entries());
        let mut read = self.records.iter();
        let mut rejected = self.rejected.iter().peekable();
        for index in 0..self.entries() {
            match rejected.peek() {
                Some(r) if r.index == index => {
                    texts.push(r.raw.get());
                    rejected.next();
                }
                _ => {
                    if let Some(record) = read.next() {
                        texts.push(record.raw.get());
                    }
                }
            }
        }
        // Indexes that do not interleave (never from `parse`): the rest.
        texts.extend(rejected.map(|r| r.raw.get()));
        texts
    }
}

/// `raw` minified, as an owned raw value.
fn minified(raw: &RawValue) -> Box<RawValue> {
    match minify(raw.get()) {
        Cow::Borrowed(_) => raw.to_owned(),
        Cow::Owned(text) => RawValue::from_string(text).unwrap_or_else(|_| raw.to_owned()),
    }
}

/// A valid JSON text without the whitespace between its tokens: strings
/// (escapes included), numbers and keys are kept byte for byte, so nothing
/// a reader sees changes. A pretty-printed record becomes one line.
pub(crate) fn minify(text: &str) -> Cow<'_, str> {
    let bytes = text.as_bytes();
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let (mut in_string, mut escaped) = (false, false);
    let mut out: Option<Vec<u8>> = None;
    for (i, &b) in bytes.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if b == b'"' {
            in_string = true;
        } else if is_space(b) {
            out.get_or_insert_with(|| {
                let mut kept = Vec::with_capacity(bytes.len());
                kept.extend_from_slice(&bytes[..i]);
                kept
            });
            continue;
        }
        if let Some(out) = out.as_mut() {
            out.push(b);
        }
    }
    match out {
        // Only ASCII bytes outside strings were left out: still UTF-8.
        Some(out) => String::from_utf8(out).map_or(Cow::Borrowed(text), Cow::Owned),
        None => Cow::Borrowed(text),
    }
}

fn errors_note(errors: &[Box<RawValue>]) -> String {
    match errors.first() {
        Some(first) => format!("; errors: {}", shorten(first.get())),
        None => String::new(),
    }
}

/// A `warnings`/`errors` member: an array's elements, or a lone value as a
/// one-element list; `null` as nothing.
fn as_list(raw: &RawValue) -> Vec<Box<RawValue>> {
    if let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
        return items.into_iter().map(ToOwned::to_owned).collect();
    }
    if raw.get() == "null" {
        Vec::new()
    } else {
        vec![raw.to_owned()]
    }
}

/// The list envelope. Unknown members are ignored.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(default, borrow)]
    data: Data<'a>,
    #[serde(default, borrow)]
    warnings: Option<&'a RawValue>,
    #[serde(default, borrow)]
    errors: Option<&'a RawValue>,
    #[serde(default)]
    meta: Option<Meta>,
}

/// `data`: an array of records (each borrowed raw), or something unusable.
#[derive(Default)]
enum Data<'a> {
    Records(Vec<&'a RawValue>),
    Null,
    Other(&'static str),
    #[default]
    Missing,
}

impl<'de: 'a, 'a> Deserialize<'de> for Data<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DataVisitor;
        impl<'de> Visitor<'de> for DataVisitor {
            type Value = Data<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Data<'de>, A::Error> {
                let mut records = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
                while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                    records.push(raw);
                }
                Ok(Data::Records(records))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Data<'de>, E> {
                Ok(Data::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Data<'de>, E> {
                Ok(Data::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Data<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Data::Other("an object"))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Data<'de>, E> {
                Ok(Data::Other("a string"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Data<'de>, E> {
                Ok(Data::Other("a boolean"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Data<'de>, E> {
                Ok(Data::Other("a number"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Data<'de>, E> {
                Ok(Data::Other("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Data<'de>, E> {
                Ok(Data::Other("a number"))
            }
        }
        deserializer.deserialize_any(DataVisitor)
    }
}

#[derive(Deserialize)]
struct Meta {
    #[serde(default)]
    pagination: Option<Pagination>,
}

#[derive(Deserialize)]
struct Pagination {
    #[serde(default, rename = "pageSize")]
    page_size: LenientU64,
    #[serde(default)]
    total: LenientU64,
}

/// A count that may come as a number or a numeric string; anything else
/// reads as unknown rather than failing the page.
#[derive(Default)]
struct LenientU64(Option<u64>);

impl<'de> Deserialize<'de> for LenientU64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenientVisitor;
        impl<'de> Visitor<'de> for LenientVisitor {
            type Value = LenientU64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<LenientU64, E> {
                Ok(LenientU64(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<LenientU64, E> {
                Ok(LenientU64(u64::try_from(v).ok()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<LenientU64, E> {
                let ok = v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(LenientU64(ok.then_some(v as u64)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<LenientU64, E> {
                Ok(LenientU64(v.trim().parse().ok()))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<LenientU64, E> {
                Ok(LenientU64(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<LenientU64, E> {
                Ok(LenientU64(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<LenientU64, E> {
                Ok(LenientU64(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LenientU64, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(LenientU64(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LenientU64, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(LenientU64(None))
            }
        }
        deserializer.deserialize_any(LenientVisitor)
    }
}

/// The typed head of a record. Other members are skipped.
#[derive(Deserialize)]
struct Head<'a> {
    #[serde(default, borrow)]
    id: Option<Scalar<'a>>,
    #[serde(default, borrow, rename = "lastModified")]
    last_modified: Option<Scalar<'a>>,
}

/// A JSON value seen only for what kind it is, keeping strings and
/// non-negative integers.
enum Scalar<'a> {
    Text(Cow<'a, str>),
    Unsigned(u64),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Scalar<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl<'de> Visitor<'de> for ScalarVisitor {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other("a negative number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other("a fractional number"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other("a boolean"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other("an object"))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// Why a record's head could not be read, with what of its id could be.
struct Unread {
    id: Option<String>,
    numeric_id: Option<AscendId>,
    reason: String,
}

/// Reads a record's id and `lastModified`; the error says what is wrong.
fn read_head(raw: &RawValue) -> Result<(AscendId, Option<OffsetDateTime>), Unread> {
    let unread = |id: Option<String>, numeric_id: Option<AscendId>, reason: String| Unread {
        id,
        numeric_id,
        reason,
    };
    let text = raw.get();
    if !text.starts_with('{') {
        return Err(unread(None, None, "the record is not a JSON object".into()));
    }
    let head: Head<'_> = serde_json::from_str(text)
        .map_err(|e| unread(None, None, format!("the record cannot be read ({e})")))?;
    let (id_text, id) = match head.id {
        None => return Err(unread(None, None, "the record has no id".into())),
        Some(Scalar::Unsigned(n)) => (n.to_string(), AscendId(n)),
        Some(Scalar::Text(s)) => match AscendId::parse_digits(&s) {
            Some(id) => (s.into_owned(), id),
            None => {
                let reason = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                    format!(
                        "its id {} is beyond the largest id the API contract allows ({MAX_ID})",
                        shorten(&s)
                    )
                } else {
                    format!("its id {:?} is not a decimal number", shorten(&s))
                };
                return Err(unread(Some(s.into_owned()), None, reason));
            }
        },
        Some(Scalar::Other(kind)) => {
            return Err(unread(
                None,
                None,
                format!("its id is {kind}, not a decimal number"),
            ));
        }
    };
    if id.0 > MAX_ID {
        return Err(unread(
            Some(id_text),
            Some(id),
            format!("its id {id} is beyond the largest id the API contract allows ({MAX_ID})"),
        ));
    }
    let last_modified = match head.last_modified {
        None => None,
        Some(Scalar::Text(s)) => match parse_timestamp(&s) {
            Some(ts) => Some(ts),
            None => {
                return Err(unread(
                    Some(id_text),
                    Some(id),
                    format!("its lastModified {:?} is not a timestamp", shorten(&s)),
                ));
            }
        },
        Some(Scalar::Unsigned(_)) => {
            return Err(unread(
                Some(id_text),
                Some(id),
                "its lastModified is a number, not a timestamp".into(),
            ));
        }
        Some(Scalar::Other(kind)) => {
            return Err(unread(
                Some(id_text),
                Some(id),
                format!("its lastModified is {kind}, not a timestamp"),
            ));
        }
    };
    Ok((id, last_modified))
}

/// Parses an API timestamp: RFC 3339 (`2016-04-20T01:14:04.737Z`), else any
/// ISO 8601 form with an offset, else an ISO 8601 date-time without offset
/// taken as UTC.
pub(crate) fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    if let Ok(ts) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(ts);
    }
    if let Ok(ts) = OffsetDateTime::parse(text, &Iso8601::DEFAULT) {
        return Some(ts);
    }
    PrimitiveDateTime::parse(text, &Iso8601::DEFAULT)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn parse(body: &str) -> Result<Page, ClientError> {
        Page::parse(
            Resource::Patients,
            Cursor::AfterId(AscendId(7000000000114)),
            body.as_bytes(),
        )
    }

    fn bad_detail(body: &str) -> String {
        match parse(body) {
            Err(ClientError::BadPayload {
                resource,
                page,
                detail,
            }) => {
                assert_eq!(resource, Resource::Patients);
                assert_eq!(page, Cursor::AfterId(AscendId(7000000000114)));
                let error = ClientError::BadPayload {
                    resource,
                    page,
                    detail: detail.clone(),
                }
                .to_string();
                assert!(
                    error.contains("patients") && error.contains("lastId=7000000000114"),
                    "{error}"
                );
                detail
            }
            Err(other) => panic!("expected BadPayload, got {other}"),
            Ok(page) => panic!("expected BadPayload, got {} records", page.records.len()),
        }
    }

    #[test]
    fn reads_a_full_envelope() {
        let body = r#"{
            "data": [
                {"id": "1000", "lastModified": "2016-04-20T01:14:04.737Z", "firstName": "Ann",
                 "newField": {"nested": [1, 2, {"x": null}]}, "status": "SOME_NEW_ENUM"},
                {"id": 999, "lastModified": null},
                {"id": "7000000457903", "patient": {"id": "5", "type": "PatientV1", "url": "u"}}
            ],
            "warnings": [{"message": "w"}],
            "errors": [],
            "meta": {"pagination": {"page": 1, "pageSize": 500, "total": "1234"}, "other": true},
            "unknownTopLevel": [1, 2, 3]
        }"#;
        let page = parse(body).expect("valid page");
        assert_eq!(page.records.len(), 3);
        assert!(page.rejected.is_empty());
        assert_eq!(page.records[0].id, AscendId(1000));
        assert_eq!(
            page.records[0].last_modified,
            Some(datetime!(2016-04-20 01:14:04.737 UTC))
        );
        assert_eq!(page.records[1].id, AscendId(999));
        assert_eq!(page.records[1].last_modified, None);
        assert_eq!(page.records[2].last_modified, None);
        assert!(page.records[0].raw.get().contains("\"newField\""));
        assert!(page.records[0].raw.get().contains("SOME_NEW_ENUM"));
        assert_eq!(page.total, Some(1234));
        assert_eq!(page.reported_page_size, Some(500));
        assert_eq!(page.warnings.len(), 1);
        assert!(page.errors.is_empty());
        assert_eq!(page.bytes, body.len());
    }

    #[test]
    fn tolerates_missing_meta_and_odd_members() {
        let page = parse(r#"{"data":[],"warnings":null,"meta":{"pagination":{"total":"lots"}}}"#)
            .expect("valid");
        assert!(page.records.is_empty());
        assert_eq!(page.total, None);
        let page =
            parse(r#"{"data":[{"id":"1"}],"warnings":"careful","meta":null}"#).expect("valid");
        assert_eq!(page.warnings.len(), 1);
        assert_eq!(page.total, None);
        let page = parse(r#"  {"data":[{"id":"1","lastModified":"2016-04-20T01:14:04Z"}]}"#)
            .expect("valid");
        assert_eq!(
            page.records[0].last_modified,
            Some(datetime!(2016-04-20 01:14:04 UTC))
        );
    }

    #[test]
    fn escaped_strings_in_the_head_are_fine() {
        let page = parse(
            r#"{"data":[{"id":"\u0031\u0032","lastModified":"2016-04-20T01:14:04.737\u005a"}]}"#,
        )
        .expect("valid");
        assert_eq!(page.records[0].id, AscendId(12));
        assert!(page.records[0].last_modified.is_some());
    }

    #[test]
    fn truncated_json_is_bad_payload() {
        let detail = bad_detail(r#"{"data":[{"id":"1"},{"id":"2","na"#);
        assert!(detail.contains("truncated"), "{detail}");
    }

    #[test]
    fn malformed_json_is_bad_payload() {
        let detail = bad_detail(r#"{"data":[{"id":"1"} {"id":"2"}]}"#);
        assert!(detail.contains("malformed"), "{detail}");
        let detail = bad_detail("<html>Bad gateway</html>");
        assert!(detail.contains("not a JSON object"), "{detail}");
        let detail = bad_detail("[]");
        assert!(detail.contains("not a JSON object"), "{detail}");
        let detail = bad_detail("");
        assert!(detail.contains("empty"), "{detail}");
    }

    #[test]
    fn missing_or_wrong_data_is_bad_payload() {
        assert!(bad_detail(r#"{"meta":{}}"#).contains("no `data` array"));
        let detail = bad_detail(r#"{"errors":[{"message":"boom"}]}"#);
        assert!(
            detail.contains("no `data` array") && detail.contains("boom"),
            "{detail}"
        );
        assert!(bad_detail(r#"{"data":null}"#).contains("null"));
        assert!(bad_detail(r#"{"data":{"id":"1"}}"#).contains("an object"));
    }

    /// The page's one rejected record: (index, id, reason); the page read.
    fn rejected(body: &str) -> (usize, Option<String>, Option<AscendId>, String) {
        let page = parse(body).expect("a bad record does not fail its page");
        assert_eq!(page.rejected.len(), 1, "{:?}", page.rejected);
        let r = &page.rejected[0];
        (r.index, r.id.clone(), r.numeric_id, r.reason.clone())
    }

    #[test]
    fn records_without_usable_ids_are_rejected_alone() {
        let page = parse(r#"{"data":[{"id":"1"},{"name":"x"},{"id":"3"}]}"#).expect("read");
        assert_eq!(
            page.records.iter().map(|r| r.id.0).collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(page.rejected.len(), 1);
        assert_eq!(page.rejected[0].index, 1);
        assert_eq!(page.rejected[0].raw.get(), r#"{"name":"x"}"#);
        assert!(page.rejected[0].reason.contains("no id"));
        let (_, id, _, reason) = rejected(r#"{"data":[{"id":null}]}"#);
        assert!(id.is_none() && reason.contains("no id"), "{reason}");
        let (_, id, numeric, reason) = rejected(r#"{"data":[{"id":"abc"}]}"#);
        assert_eq!(id.as_deref(), Some("abc"));
        assert_eq!(numeric, None);
        assert!(reason.contains("not a decimal number"), "{reason}");
        let (_, id, _, reason) = rejected(r#"{"data":[{"id":"-4"}]}"#);
        assert_eq!(id.as_deref(), Some("-4"));
        assert!(reason.contains("not a decimal number"), "{reason}");
        let (_, _, _, reason) = rejected(r#"{"data":[{"id":-4}]}"#);
        assert!(reason.contains("negative"), "{reason}");
        let (_, _, _, reason) = rejected(r#"{"data":[{"id":1.5}]}"#);
        assert!(reason.contains("fractional"), "{reason}");
        let (_, _, _, reason) = rejected(r#"{"data":[{"id":{"x":1}}]}"#);
        assert!(reason.contains("an object"), "{reason}");
        let (_, id, _, reason) = rejected(r#"{"data":["1"]}"#);
        assert!(
            id.is_none() && reason.contains("not a JSON object"),
            "{reason}"
        );
        let (_, _, _, reason) = rejected(r#"{"data":[{"id":"1","id":"2"}]}"#);
        assert!(reason.contains("cannot be read"), "{reason}");
    }

    #[test]
    fn ids_beyond_the_contract_are_rejected_with_their_number() {
        // i64::MAX is the last id the contract allows.
        let page = parse(r#"{"data":[{"id":"9223372036854775807"}]}"#).expect("read");
        assert_eq!(page.records[0].id, AscendId(MAX_ID));
        let (_, id, numeric, reason) = rejected(r#"{"data":[{"id":"9223372036854775808"}]}"#);
        assert_eq!(id.as_deref(), Some("9223372036854775808"));
        assert_eq!(numeric, Some(AscendId(MAX_ID + 1)));
        assert!(reason.contains("beyond the largest id"), "{reason}");
        let (_, id, numeric, reason) = rejected(r#"{"data":[{"id":18446744073709551615}]}"#);
        assert_eq!(id.as_deref(), Some("18446744073709551615"));
        assert_eq!(numeric, Some(AscendId(u64::MAX)));
        assert!(reason.contains("beyond the largest id"), "{reason}");
        // Beyond 64 bits: no number to page past.
        let (_, id, numeric, reason) = rejected(r#"{"data":[{"id":"99999999999999999999"}]}"#);
        assert_eq!(id.as_deref(), Some("99999999999999999999"));
        assert_eq!(numeric, None);
        assert!(reason.contains("beyond the largest id"), "{reason}");
    }

    #[test]
    fn unreadable_last_modified_is_rejected_with_its_id() {
        let (index, id, numeric, reason) =
            rejected(r#"{"data":[{"id":"4"},{"id":"5","lastModified":"yesterday"},{"id":"6"}]}"#);
        assert_eq!(index, 1);
        assert_eq!(id.as_deref(), Some("5"));
        assert_eq!(numeric, Some(AscendId(5)));
        assert!(
            reason.contains("lastModified \"yesterday\" is not a timestamp"),
            "{reason}"
        );
        let (_, _, _, reason) = rejected(r#"{"data":[{"id":"5","lastModified":12345}]}"#);
        assert!(reason.contains("number"), "{reason}");
    }

    #[test]
    fn a_lone_surrogate_outside_the_head_does_not_stop_the_reader() {
        // Valid JSON text that many databases refuse: the client keeps it
        // as sent; whether it can be stored is the store's question.
        let page = parse(r#"{"data":[{"id":"5","firstName":"A\ud800B"}]}"#).expect("read");
        assert_eq!(page.records.len(), 1);
        assert!(page.records[0].raw.get().contains(r"\ud800"));
    }

    #[test]
    fn pretty_printed_records_are_minified_and_nothing_else_changes() {
        let body = "{\n  \"data\": [\n    {\n      \"id\": \"7\",\n      \"name\": \"A  B\\n C\",\n      \"x\": [ 1, 2.50 ,\t{ \"k\" : \"\\\" }\" } ]\n    },\n    {\n      \"id\": \"x y\"\n    }\n  ],\n  \"meta\": { \"pagination\": { \"total\": 2 } }\n}\n";
        let page = parse(body).expect("read");
        assert_eq!(
            page.records[0].raw.get(),
            r#"{"id":"7","name":"A  B\n C","x":[1,2.50,{"k":"\" }"}]}"#
        );
        assert_eq!(page.rejected[0].raw.get(), r#"{"id":"x y"}"#);
        assert_eq!(
            page.texts(),
            [page.records[0].raw.get(), page.rejected[0].raw.get()]
        );
        assert!(page.texts().iter().all(|t| !t.contains('\n')));
        assert_eq!(page.total, Some(2));
        // A compact record is borrowed as it is.
        assert!(matches!(minify(r#"{"a":"b c"}"#), Cow::Borrowed(_)));
        assert_eq!(minify("[ \"\\\\\" , 1 ]"), r#"["\\",1]"#);
    }

    #[test]
    fn the_cursor_goes_past_rejected_numbers_and_texts_keep_the_order() {
        let page = parse(
            r#"{"data":[{"id":"abc"},{"id":"10"},{"id":"11","lastModified":"x"},{"id":"12"},{"id":"9223372036854775809"}]}"#,
        )
        .expect("read");
        assert_eq!(page.entries(), 5);
        assert_eq!(page.last_id(), Some(AscendId(MAX_ID + 2)));
        let texts = page.texts();
        assert_eq!(texts.len(), 5);
        assert!(
            texts[0].contains("abc") && texts[2].contains("\"11\"") && texts[3].contains("\"12\"")
        );
        let only_bad = parse(r#"{"data":[{"id":"abc"}]}"#).expect("read");
        assert_eq!(only_bad.last_id(), None);
    }

    #[test]
    fn timestamp_forms() {
        assert_eq!(
            parse_timestamp("2016-04-20T01:14:04.737Z"),
            Some(datetime!(2016-04-20 01:14:04.737 UTC))
        );
        assert_eq!(
            parse_timestamp("2016-04-20T01:14:04.737+02:00"),
            Some(datetime!(2016-04-19 23:14:04.737 UTC))
        );
        assert_eq!(
            parse_timestamp("2016-04-20T01:14:04.737"),
            Some(datetime!(2016-04-20 01:14:04.737 UTC))
        );
        assert_eq!(parse_timestamp("not a time"), None);
        assert_eq!(parse_timestamp(""), None);
    }
}
