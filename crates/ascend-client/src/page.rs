//! One page of a list, read tolerantly: every record is kept as its raw JSON,
//! and only a cheap typed head (id, lastModified) is parsed out of it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;
use time::format_description::well_known::{Iso8601, Rfc3339};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::Resource;
use crate::error::{ClientError, shorten};
use crate::ids::AscendId;
use crate::query::Cursor;

/// One record of a list: its id, its `lastModified` and the whole record as
/// the API sent it (unknown fields included).
#[derive(Debug, Clone)]
pub struct Record {
    /// The record's `id`.
    pub id: AscendId,
    /// The record's `lastModified`, when it has one.
    pub last_modified: Option<OffsetDateTime>,
    /// The record exactly as sent.
    pub raw: Box<RawValue>,
}

/// One page of a list answer.
#[derive(Debug, Clone)]
pub struct Page {
    /// The resource listed.
    pub resource: Resource,
    /// The page that was asked for.
    pub cursor: Cursor,
    /// The records, in the order the API sent them.
    pub records: Vec<Record>,
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
    /// Fails with [`ClientError::BadPayload`] when the body is not a JSON
    /// object, is truncated or malformed, has no `data` array, or holds a
    /// record that is not an object, has no id, has an id that is not a
    /// decimal number, or has a `lastModified` that is not a timestamp.
    /// Unknown fields and values never fail.
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
        for (index, raw) in data.into_iter().enumerate() {
            let (id, last_modified) =
                read_head(raw).map_err(|detail| bad(format!("record #{index} {detail}")))?;
            records.push(Record {
                id,
                last_modified,
                raw: raw.to_owned(),
            });
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

/// Reads a record's id and `lastModified`; the error says what is wrong
/// (it is prefixed with `record #N`).
fn read_head(raw: &RawValue) -> Result<(AscendId, Option<OffsetDateTime>), String> {
    let text = raw.get();
    if !text.starts_with('{') {
        return Err("is not a JSON object".to_string());
    }
    let head: Head<'_> = serde_json::from_str(text).map_err(|e| format!("cannot be read ({e})"))?;
    let id = match head.id {
        None => return Err("has no id".to_string()),
        Some(Scalar::Unsigned(n)) => AscendId(n),
        Some(Scalar::Text(s)) => AscendId::parse_digits(&s)
            .ok_or_else(|| format!("has a non-numeric id {:?}", shorten(&s)))?,
        Some(Scalar::Other(kind)) => {
            return Err(format!("has an id that is {kind}, not a decimal number"));
        }
    };
    let last_modified = match head.last_modified {
        None => None,
        Some(Scalar::Text(s)) => Some(parse_timestamp(&s).ok_or_else(|| {
            format!("(id {id}) has an unreadable lastModified {:?}", shorten(&s))
        })?),
        Some(Scalar::Unsigned(_)) => {
            return Err(format!(
                "(id {id}) has a lastModified that is a number, not a timestamp"
            ));
        }
        Some(Scalar::Other(kind)) => {
            return Err(format!(
                "(id {id}) has a lastModified that is {kind}, not a timestamp"
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

    #[test]
    fn records_without_usable_ids_are_bad_payload() {
        let detail = bad_detail(r#"{"data":[{"id":"1"},{"name":"x"}]}"#);
        assert!(detail.contains("record #1 has no id"), "{detail}");
        let detail = bad_detail(r#"{"data":[{"id":null}]}"#);
        assert!(detail.contains("record #0 has no id"), "{detail}");
        let detail = bad_detail(r#"{"data":[{"id":"abc"}]}"#);
        assert!(detail.contains("non-numeric id"), "{detail}");
        let detail = bad_detail(r#"{"data":[{"id":"-4"}]}"#);
        assert!(detail.contains("non-numeric id"), "{detail}");
        let detail = bad_detail(r#"{"data":[{"id":-4}]}"#);
        assert!(detail.contains("negative"), "{detail}");
        let detail = bad_detail(r#"{"data":[{"id":1.5}]}"#);
        assert!(detail.contains("fractional"), "{detail}");
        let detail = bad_detail(r#"{"data":[{"id":{"x":1}}]}"#);
        assert!(detail.contains("an object"), "{detail}");
        let detail = bad_detail(r#"{"data":["1"]}"#);
        assert!(
            detail.contains("record #0 is not a JSON object"),
            "{detail}"
        );
        let detail = bad_detail(r#"{"data":[{"id":"1","id":"2"}]}"#);
        assert!(detail.contains("record #0 cannot be read"), "{detail}");
    }

    #[test]
    fn unreadable_last_modified_is_bad_payload() {
        let detail = bad_detail(r#"{"data":[{"id":"5","lastModified":"yesterday"}]}"#);
        assert!(
            detail.contains("record #0 (id 5) has an unreadable lastModified"),
            "{detail}"
        );
        let detail = bad_detail(r#"{"data":[{"id":"5","lastModified":12345}]}"#);
        assert!(detail.contains("number"), "{detail}");
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
