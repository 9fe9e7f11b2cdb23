//! Tolerant extraction of typed column values from a record's JSON.
//!
//! The core of landing that cannot fail on a value: a missing, `null`,
//! mistyped or unparseable value yields [`Value::Null`]. Only a record that
//! is not a JSON object at all is refused (by [`Record::parse`]), because
//! that is a caller's bug, not data.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime, UtcOffset};

use crate::spec::{Column, Kind, TableSpec};

/// A typed column value, as extracted from JSON or read back from a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// No usable value.
    Null,
    /// [`Kind::Text`].
    Text(String),
    /// [`Kind::Id`] and [`Kind::Int`].
    Int(i64),
    /// [`Kind::Date`].
    Date(Date),
    /// [`Kind::Timestamp`], in UTC, truncated to microseconds.
    Timestamp(OffsetDateTime),
    /// [`Kind::Decimal`]: the canonical decimal text with two places,
    /// e.g. `"125.50"`, `"-3.00"`.
    Decimal(String),
}

/// A parsed record: its top-level fields, borrowed from the raw text.
pub(crate) struct Record<'a> {
    fields: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> Record<'a> {
    /// Parses a record; `Err` with a short reason when `raw` is not a JSON
    /// object.
    pub(crate) fn parse(raw: &'a str) -> Result<Record<'a>, String> {
        let mut de = serde_json::Deserializer::from_str(raw);
        let fields = de
            .deserialize_map(FieldsVisitor)
            .map_err(|e| format!("not a JSON object: {e}"))?;
        de.end()
            .map_err(|e| format!("trailing characters after the object: {e}"))?;
        Ok(Record { fields })
    }

    /// The raw JSON at a dotted path, if every step is present.
    fn get(&self, path: &str) -> Option<&'a RawValue> {
        let mut segments = path.split('.');
        let first = segments.next()?;
        let mut current = lookup(&self.fields, first)?;
        for segment in segments {
            let nested = parse_fields(current.get())?;
            current = lookup(&nested, segment)?;
        }
        Some(current)
    }

    /// The value of one typed column.
    pub(crate) fn column(&self, column: &Column) -> Value {
        match self.get(column.path) {
            Some(raw) => value_of(raw.get(), column.kind),
            None => Value::Null,
        }
    }

    /// The values of every typed column of a table, in spec order.
    pub(crate) fn columns(&self, spec: &TableSpec) -> Vec<Value> {
        spec.columns.iter().map(|c| self.column(c)).collect()
    }
}

fn lookup<'a>(fields: &[(Cow<'a, str>, &'a RawValue)], key: &str) -> Option<&'a RawValue> {
    // The last occurrence wins, like serde_json's own maps.
    fields.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
}

fn parse_fields(raw: &str) -> Option<Vec<(Cow<'_, str>, &RawValue)>> {
    let mut de = serde_json::Deserializer::from_str(raw);
    de.deserialize_map(FieldsVisitor).ok()
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(16));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            fields.push((key.0, value));
        }
        Ok(fields)
    }
}

/// A map key, borrowed unless it holds escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// What a raw JSON value is, by its first character.
enum Scalar<'a> {
    /// A JSON string, unescaped.
    String(Cow<'a, str>),
    /// A number, as its literal text.
    Number(&'a str),
    /// `true` or `false`.
    Bool(&'a str),
    /// `null`, an object or an array.
    Other,
}

fn scalar(raw: &str) -> Scalar<'_> {
    let raw = raw.trim();
    match raw.as_bytes().first() {
        Some(b'"') => match serde_json::from_str::<Cow<'_, str>>(raw) {
            Ok(s) => Scalar::String(s),
            Err(_) => Scalar::Other,
        },
        Some(b'-' | b'0'..=b'9') => Scalar::Number(raw),
        Some(b't' | b'f') => Scalar::Bool(raw),
        _ => Scalar::Other,
    }
}

/// Converts one raw JSON value to a column value of `kind`.
pub(crate) fn value_of(raw: &str, kind: Kind) -> Value {
    let scalar = scalar(raw);
    let converted = match kind {
        Kind::Text => match scalar {
            Scalar::String(s) => Some(Value::Text(s.into_owned())),
            Scalar::Number(s) | Scalar::Bool(s) => Some(Value::Text(s.to_owned())),
            Scalar::Other => None,
        },
        Kind::Id => match scalar {
            Scalar::String(s) => parse_id(&s),
            Scalar::Number(s) => parse_id(s),
            _ => None,
        }
        .map(Value::Int),
        Kind::Int => match scalar {
            Scalar::String(s) => parse_int(&s),
            Scalar::Number(s) => parse_int(s),
            _ => None,
        }
        .map(Value::Int),
        Kind::Date => match scalar {
            Scalar::String(s) => parse_date(&s).map(Value::Date),
            _ => None,
        },
        Kind::Timestamp => match scalar {
            Scalar::String(s) => parse_timestamp(&s).map(Value::Timestamp),
            _ => None,
        },
        Kind::Decimal => match scalar {
            Scalar::String(s) => normalize_decimal(s.trim()),
            Scalar::Number(s) => normalize_decimal(s),
            _ => None,
        }
        .map(Value::Decimal),
    };
    converted.unwrap_or(Value::Null)
}

/// Decimal digits of a non-negative id below 2^63.
fn parse_id(s: &str) -> Option<i64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An optionally signed integer that fits i64.
fn parse_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim();
    let format = format_description!("[year]-[month]-[day]");
    if let Ok(date) = Date::parse(s, &format) {
        return in_range_date(date);
    }
    // A full timestamp: its date as written (a date of birth sent as
    // midnight must not move to the day before in another offset).
    if let Ok(ts) = OffsetDateTime::parse(s, &Rfc3339) {
        return in_range_date(ts.date());
    }
    parse_naive(s).and_then(|ts| in_range_date(ts.date()))
}

fn parse_naive(s: &str) -> Option<PrimitiveDateTime> {
    let with_fraction =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]");
    let without = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(s, &with_fraction)
        .or_else(|_| PrimitiveDateTime::parse(s, &without))
        .ok()
}

fn in_range_date(date: Date) -> Option<Date> {
    (1..=9999).contains(&date.year()).then_some(date)
}

/// An RFC 3339 timestamp (or one without an offset, taken as UTC), in UTC,
/// truncated to microseconds; `None` outside years 1 to 9999.
pub(crate) fn parse_timestamp(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    let ts = match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(ts) => ts,
        Err(_) => parse_naive(s)?.assume_utc(),
    };
    normalize_timestamp(ts)
}

/// The form in which both backends store an instant: UTC, microseconds
/// (Postgres' precision), years 1 to 9999 (a fixed-width text form on
/// SQLite, so that text order is time order). `None` outside that range.
pub(crate) fn normalize_timestamp(ts: OffsetDateTime) -> Option<OffsetDateTime> {
    let utc = ts.to_offset(UtcOffset::UTC);
    if !(1..=9999).contains(&utc.year()) {
        return None;
    }
    let micros = utc.nanosecond() / 1_000 * 1_000;
    utc.replace_nanosecond(micros).ok()
}

/// The canonical text of an instant on SQLite: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
/// The input must come from [`normalize_timestamp`] (UTC, years 1 to 9999).
pub(crate) fn timestamp_text(ts: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        ts.year(),
        u8::from(ts.month()),
        ts.day(),
        ts.hour(),
        ts.minute(),
        ts.second(),
        ts.microsecond()
    )
}

/// Reads the text written by [`timestamp_text`] (or any RFC 3339 text).
pub(crate) fn timestamp_from_text(s: &str) -> Option<OffsetDateTime> {
    parse_timestamp(s)
}

/// The canonical text of a date on SQLite: `YYYY-MM-DD`.
pub(crate) fn date_text(date: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        date.year(),
        u8::from(date.month()),
        date.day()
    )
}

/// Reads the text written by [`date_text`].
pub(crate) fn date_from_text(s: &str) -> Option<Date> {
    let format = format_description!("[year]-[month]-[day]");
    Date::parse(s, &format).ok()
}

/// The largest number of integer digits `numeric(14,2)` holds.
const MAX_INTEGER_DIGITS: usize = 12;

/// Normalizes a decimal literal (`"125.5"`, `"-0.005"`, `"1.2e3"`) to the
/// text `numeric(14,2)` holds (`"125.50"`, `"-0.01"`, `"1200.00"`),
/// rounding half away from zero like Postgres does. `None` for anything
/// that is not a plain decimal number, or does not fit 12 integer digits.
pub(crate) fn normalize_decimal(s: &str) -> Option<String> {
    let (negative, unsigned) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(i) => {
            let exp = &unsigned[i + 1..];
            let exp_digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if exp_digits.is_empty()
                || exp_digits.len() > 4
                || !exp_digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            (&unsigned[..i], exp.parse::<i32>().ok()?)
        }
        None => (unsigned, 0),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part.bytes().all(|b| b.is_ascii_digit())
        || !frac_part.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits * 10^-scale
    let mut digits: Vec<u8> = int_part
        .bytes()
        .chain(frac_part.bytes())
        .map(|b| b - b'0')
        .collect();
    let mut scale = i64::try_from(frac_part.len()).ok()? - i64::from(exponent);
    // Strip leading zeros so that the length check below means magnitude.
    let first_nonzero = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    digits.drain(..first_nonzero);
    if scale < 2 {
        let pad = usize::try_from(2 - scale).ok()?;
        if digits.len() + pad > MAX_INTEGER_DIGITS + 2 {
            // Too large, unless the value is zero.
            if !digits.is_empty() {
                return None;
            }
        } else {
            digits.extend(std::iter::repeat_n(0, pad));
        }
        scale = 2;
    }
    if scale > 2 {
        let drop = usize::try_from(scale - 2).ok()?;
        if drop > digits.len() {
            // Less than half a cent, whatever the digits: rounds to zero.
            digits.clear();
        } else {
            let keep = digits.len() - drop;
            let round_up = digits[keep] >= 5;
            digits.truncate(keep);
            if round_up {
                let mut i = digits.len();
                loop {
                    if i == 0 {
                        digits.insert(0, 1);
                        break;
                    }
                    i -= 1;
                    if digits[i] == 9 {
                        digits[i] = 0;
                    } else {
                        digits[i] += 1;
                        break;
                    }
                }
            }
        }
    }
    // Now value = digits * 10^-2.
    let first_nonzero = digits.iter().position(|&d| d != 0).unwrap_or(digits.len());
    digits.drain(..first_nonzero);
    if digits.len() > MAX_INTEGER_DIGITS + 2 {
        return None;
    }
    while digits.len() < 3 {
        digits.insert(0, 0);
    }
    let is_zero = digits.iter().all(|&d| d == 0);
    let split = digits.len() - 2;
    let mut out = String::with_capacity(digits.len() + 2);
    if negative && !is_zero {
        out.push('-');
    }
    out.extend(digits[..split].iter().map(|d| char::from(b'0' + d)));
    out.push('.');
    out.extend(digits[split..].iter().map(|d| char::from(b'0' + d)));
    Some(out)
}

/// Replaces the JSON escape `\u0000` with `\ufffd`: Postgres cannot store
/// U+0000 in `jsonb` or `text`, and one such character must not make a
/// page fail forever. Applied on both backends so they hold the same.
pub(crate) fn without_nul_escapes(raw: &str) -> Cow<'_, str> {
    if !raw.contains("\\u0000") {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let escape = &rest[i..];
        if let Some(after) = escape.strip_prefix("\\u0000") {
            out.push_str("\\ufffd");
            rest = after;
        } else {
            // Copy the backslash and the escaped character as they are
            // (`\\` must not be read as the start of another escape).
            let len = escape[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
            out.push_str(&escape[..len]);
            rest = &escape[len..];
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Table;
    use time::macros::{date, datetime};

    fn v(raw: &str, kind: Kind) -> Value {
        value_of(raw, kind)
    }

    #[test]
    fn decimals_are_exact_and_canonical() {
        let cases = [
            ("\"125.50\"", Some("125.50")),
            ("125.5", Some("125.50")),
            ("125", Some("125.00")),
            ("\"-3\"", Some("-3.00")),
            ("0", Some("0.00")),
            ("-0.0", Some("0.00")),
            ("0.005", Some("0.01")),
            ("-0.005", Some("-0.01")),
            ("0.004999", Some("0.00")),
            ("19.995", Some("20.00")),
            ("999999999999.99", Some("999999999999.99")),
            ("999999999999.995", None),
            ("1000000000000", None),
            ("1.2e3", Some("1200.00")),
            ("125E-2", Some("1.25")),
            ("1e-30", Some("0.00")),
            ("0e999", Some("0.00")),
            ("\" 7.10 \"", Some("7.10")),
            ("\".5\"", Some("0.50")),
            ("\"5.\"", Some("5.00")),
            ("\"+5\"", Some("5.00")),
            ("0000123.4", Some("123.40")),
            ("\"\"", None),
            ("\"abc\"", None),
            ("\"1,000.00\"", None),
            ("\"$5\"", None),
            ("\".\"", None),
            ("\"1e\"", None),
            ("\"NaN\"", None),
            ("1e99999", None),
            ("true", None),
            ("null", None),
            ("{\"amount\":1}", None),
        ];
        for (raw, want) in cases {
            let got = v(raw, Kind::Decimal);
            let want = want.map_or(Value::Null, |s| Value::Decimal(s.to_owned()));
            assert_eq!(got, want, "{raw}");
        }
    }

    #[test]
    fn ids_ints_texts() {
        assert_eq!(
            v("\"7000000457903\"", Kind::Id),
            Value::Int(7_000_000_457_903)
        );
        assert_eq!(v("7000000457903", Kind::Id), Value::Int(7_000_000_457_903));
        for bad in [
            "\"-1\"",
            "-1",
            "\"\"",
            "\"12a\"",
            "1.5",
            "\"9223372036854775808\"",
            "null",
            "{}",
            "[]",
            "true",
        ] {
            assert_eq!(v(bad, Kind::Id), Value::Null, "{bad}");
        }
        assert_eq!(v("\"9223372036854775807\"", Kind::Id), Value::Int(i64::MAX));
        assert_eq!(v("30", Kind::Int), Value::Int(30));
        assert_eq!(v("\"-5\"", Kind::Int), Value::Int(-5));
        assert_eq!(v("30.0", Kind::Int), Value::Null);
        assert_eq!(v("\"thirty\"", Kind::Int), Value::Null);
        assert_eq!(
            v("\"Ann \\\"Nan\\\"\"", Kind::Text),
            Value::Text("Ann \"Nan\"".into())
        );
        assert_eq!(v("42", Kind::Text), Value::Text("42".into()));
        assert_eq!(v("false", Kind::Text), Value::Text("false".into()));
        assert_eq!(v("null", Kind::Text), Value::Null);
        assert_eq!(v("{\"a\":1}", Kind::Text), Value::Null);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(
            v("\"1980-02-29\"", Kind::Date),
            Value::Date(date!(1980 - 02 - 29))
        );
        assert_eq!(
            v("\"1980-02-29T00:00:00.000-05:00\"", Kind::Date),
            Value::Date(date!(1980 - 02 - 29))
        );
        assert_eq!(
            v("\"1980-02-29T00:00:00\"", Kind::Date),
            Value::Date(date!(1980 - 02 - 29))
        );
        for bad in [
            "\"1981-02-29\"",
            "\"02/03/1980\"",
            "\"\"",
            "19800229",
            "null",
            "\"0000-01-01\"",
        ] {
            assert_eq!(v(bad, Kind::Date), Value::Null, "{bad}");
        }
        assert_eq!(
            v("\"2016-04-20T01:14:04.737Z\"", Kind::Timestamp),
            Value::Timestamp(datetime!(2016-04-20 01:14:04.737 UTC))
        );
        assert_eq!(
            v("\"2016-04-20T03:14:04.123456789+02:00\"", Kind::Timestamp),
            Value::Timestamp(datetime!(2016-04-20 01:14:04.123456 UTC))
        );
        assert_eq!(
            v("\"2016-04-20T01:14:04\"", Kind::Timestamp),
            Value::Timestamp(datetime!(2016-04-20 01:14:04 UTC))
        );
        for bad in ["\"2016-04-20\"", "\"yesterday\"", "1461114844", "null"] {
            assert_eq!(v(bad, Kind::Timestamp), Value::Null, "{bad}");
        }
    }

    #[test]
    fn timestamp_text_is_fixed_width_and_round_trips() {
        let a = normalize_timestamp(datetime!(2016-04-20 01:14:04 UTC)).expect("in range");
        let b = normalize_timestamp(datetime!(2016-04-20 01:14:04.5 UTC)).expect("in range");
        let c = normalize_timestamp(datetime!(0999-01-01 00:00 UTC)).expect("in range");
        assert_eq!(timestamp_text(a), "2016-04-20T01:14:04.000000Z");
        assert_eq!(timestamp_text(c), "0999-01-01T00:00:00.000000Z");
        assert!(timestamp_text(a) < timestamp_text(b));
        assert!(timestamp_text(c) < timestamp_text(a));
        assert_eq!(timestamp_from_text(&timestamp_text(b)), Some(b));
        assert_eq!(normalize_timestamp(datetime!(-0001-01-01 00:00 UTC)), None);
        assert_eq!(
            date_from_text(&date_text(date!(0999 - 01 - 02))),
            Some(date!(0999 - 01 - 02))
        );
    }

    #[test]
    fn paths_reach_into_references() {
        let raw = r#"{"id":"1","patient":{"id":"7000000000114","type":"PatientV1","url":"u"},
            "visit":null,"provider":"5","fee":"125.50","proc\u0065dureCode":"D0120",
            "procedureCode":"D0150"}"#;
        let record = Record::parse(raw).expect("object");
        let spec = Table::PatientProcedures.spec();
        let by_name = |name: &str| {
            let c = spec
                .columns
                .iter()
                .find(|c| c.name == name)
                .expect("column");
            record.column(c)
        };
        assert_eq!(by_name("patient_id"), Value::Int(7_000_000_000_114));
        assert_eq!(by_name("visit_id"), Value::Null);
        assert_eq!(
            by_name("provider_id"),
            Value::Null,
            "a reference that is not an object"
        );
        assert_eq!(by_name("location_id"), Value::Null);
        assert_eq!(by_name("fee"), Value::Decimal("125.50".into()));
        assert_eq!(
            by_name("procedure_code"),
            Value::Text("D0150".into()),
            "last duplicate wins"
        );
    }

    #[test]
    fn only_objects_are_records() {
        for bad in ["", "[]", "null", "\"x\"", "{", "{\"a\":1} x", "{\"a\":}"] {
            assert!(Record::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Record::parse(" {} ").is_ok());
    }

    #[test]
    fn nul_escapes_are_replaced_and_nothing_else() {
        assert_eq!(without_nul_escapes(r#"{"a":"x"}"#), r#"{"a":"x"}"#);
        assert_eq!(
            without_nul_escapes(r#"{"a":"x\u0000y"}"#),
            r#"{"a":"x\ufffdy"}"#
        );
        // An escaped backslash followed by the text u0000 is not a NUL.
        assert_eq!(
            without_nul_escapes(r#"{"a":"\\u0000\u0000é\"\\"}"#),
            r#"{"a":"\\u0000\ufffdé\"\\"}"#
        );
        let record_text = without_nul_escapes(r#"{"firstName":"A\u0000B"}"#);
        let record = Record::parse(&record_text).expect("object");
        let c = Table::Providers.spec().columns[0];
        assert_eq!(record.column(&c), Value::Text("A\u{fffd}B".into()));
    }
}
