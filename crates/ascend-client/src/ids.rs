//! Identifiers: the organization an API call is made for, and record ids.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A value that could not be parsed as one of this crate's types.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a valid {what}: {reason}")]
pub struct ParseError {
    what: &'static str,
    input: String,
    reason: &'static str,
}

impl ParseError {
    pub(crate) fn new(what: &'static str, input: &str, reason: &'static str) -> Self {
        // Keep the echoed input short: it may come from anywhere.
        let input: String = input.chars().take(64).collect();
        ParseError {
            what,
            input,
            reason,
        }
    }
}

/// The `Organization-ID` the vendor issues per organization: 24 hexadecimal
/// digits. Any case is accepted and kept as given; comparison and hashing
/// ignore case.
#[derive(Clone)]
pub struct OrganizationId(Box<str>);

impl OrganizationId {
    /// The id as it was given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for OrganizationId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 24 {
            return Err(ParseError::new(
                "Organization-ID",
                s,
                "expected 24 hexadecimal digits",
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::new(
                "Organization-ID",
                s,
                "expected only hexadecimal digits",
            ));
        }
        Ok(OrganizationId(s.into()))
    }
}

impl fmt::Display for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OrganizationId({})", self.0)
    }
}

impl PartialEq for OrganizationId {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_ignore_ascii_case(&other.0)
    }
}

impl Eq for OrganizationId {}

impl Hash for OrganizationId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        for b in self.0.bytes() {
            state.write_u8(b.to_ascii_lowercase());
        }
    }
}

impl Serialize for OrganizationId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OrganizationId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// The largest record id the API contract allows: every id fits a signed
/// 64-bit integer (`shared/reference/ascend-api.md`). A record with a
/// larger id is a bad record, not a bad page.
pub const MAX_ID: u64 = i64::MAX as u64;

/// A record id. The API sends ids as decimal strings of varying length
/// (`"7000000457903"`), so they are kept as numbers and ordered numerically:
/// `"999" < "1000"`. Serialized as a decimal string, like the API does;
/// deserialized from a string or a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AscendId(pub u64);

impl AscendId {
    /// Parses the decimal digits of an id; `None` for anything else
    /// (empty, signs, spaces, other characters, more than `u64::MAX`).
    pub(crate) fn parse_digits(s: &str) -> Option<AscendId> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok().map(AscendId)
    }
}

impl fmt::Display for AscendId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for AscendId {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AscendId::parse_digits(s).ok_or_else(|| {
            ParseError::new(
                "record id",
                s,
                "expected decimal digits of a number below 2^64",
            )
        })
    }
}

impl From<u64> for AscendId {
    fn from(value: u64) -> Self {
        AscendId(value)
    }
}

impl Serialize for AscendId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

struct AscendIdVisitor;

impl Visitor<'_> for AscendIdVisitor {
    type Value = AscendId;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record id: a decimal string or a non-negative integer")
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<AscendId, E> {
        Ok(AscendId(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<AscendId, E> {
        u64::try_from(v)
            .map(AscendId)
            .map_err(|_| E::custom(format!("negative record id {v}")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AscendId, E> {
        v.parse().map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for AscendId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(AscendIdVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn organization_id_accepts_24_hex_any_case_and_keeps_it() {
        let lower: OrganizationId = "0123456789abcdef01234567".parse().expect("valid");
        let upper: OrganizationId = "0123456789ABCDEF01234567".parse().expect("valid");
        assert_eq!(upper.to_string(), "0123456789ABCDEF01234567");
        assert_eq!(lower, upper);
        let set: HashSet<_> = [lower, upper].into_iter().collect();
        assert_eq!(set.len(), 1);
    }

    #[test]
    fn organization_id_rejects_bad_input() {
        for bad in [
            "",
            "0123456789abcdef0123456",
            "0123456789abcdef012345678",
            "0123456789abcdef0123456g",
            " 123456789abcdef01234567",
        ] {
            assert!(bad.parse::<OrganizationId>().is_err(), "{bad:?}");
        }
        let error = "xyz".parse::<OrganizationId>().expect_err("invalid");
        assert!(error.to_string().contains("Organization-ID"), "{error}");
    }

    #[test]
    fn organization_id_serde_round_trip() {
        let id: OrganizationId =
            serde_json::from_str("\"0123456789abcdef01234567\"").expect("valid");
        assert_eq!(
            serde_json::to_string(&id).expect("serializes"),
            "\"0123456789abcdef01234567\""
        );
        assert!(serde_json::from_str::<OrganizationId>("\"nope\"").is_err());
    }

    #[test]
    fn ascend_ids_order_numerically() {
        let a: AscendId = "999".parse().expect("valid");
        let b: AscendId = "1000".parse().expect("valid");
        assert!(a < b);
        let mut ids: Vec<AscendId> = ["7000000457903", "10", "9", "7000000000114"]
            .iter()
            .map(|s| s.parse().expect("valid"))
            .collect();
        ids.sort();
        let shown: Vec<String> = ids.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["9", "10", "7000000000114", "7000000457903"]);
    }

    #[test]
    fn ascend_id_parsing_is_strict() {
        assert_eq!(
            "18446744073709551615".parse::<AscendId>(),
            Ok(AscendId(u64::MAX))
        );
        for bad in [
            "",
            "-1",
            "+1",
            " 1",
            "1 ",
            "1.0",
            "1e3",
            "abc",
            "18446744073709551616",
        ] {
            assert!(bad.parse::<AscendId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ascend_id_serde_from_string_or_number() {
        assert_eq!(
            serde_json::from_str::<AscendId>("\"7000000457903\"").expect("string"),
            AscendId(7000000457903)
        );
        assert_eq!(
            serde_json::from_str::<AscendId>("7000000457903").expect("number"),
            AscendId(7000000457903)
        );
        for bad in ["-5", "1.5", "\"x\"", "null", "true", "{}"] {
            assert!(serde_json::from_str::<AscendId>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&AscendId(42)).expect("serializes"),
            "\"42\""
        );
    }
}
