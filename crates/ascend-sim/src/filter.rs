//! The `filter=` grammar and its evaluation.
//!
//! ```text
//! filter  = clause ("," clause)*            all clauses ANDed
//! clause  = path op value | path "->" "[" value ("," value)* "]"
//! path    = name ("." name)*                dotted paths reach into references
//! op      = "==" | ">" | ">=" | "<" | "<=" | "~="
//! ```
//!
//! Comparison rules, applied to the record's value at `path`:
//! - a path ending in `id` compares numerically (`"999" < "1000"`); the
//!   filter value must then be decimal digits (or `null`);
//! - a string that parses as an ISO-8601 date or instant, compared with a
//!   filter value that does too, compares as instants (`lastModified`
//!   requires a timestamp value);
//! - JSON numbers compare numerically, booleans by `true`/`false`;
//! - other strings compare as strings (byte order), `~=` is a
//!   case-insensitive substring match;
//! - a reference (object with `id`) compared directly compares its id;
//! - arrays match when any element matches (`phones.number~=555`);
//! - a missing or `null` field matches only `==null`.
//!
//! Anything else (an unknown operator such as `!=`, a clause without a
//! value, an unterminated list, a non-numeric id, a non-timestamp
//! `lastModified`) is a [`FilterError`], answered with `400`.

use std::cmp::Ordering;

use serde_json::Value;

use crate::clock::{Ts, parse_instant};

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Gt,
    Ge,
    Lt,
    Le,
    /// `~=`: case-insensitive substring.
    Like,
    /// `->[a,b,c]`: equal to one of the list.
    In,
}

/// A filter value, pre-parsed into every type it might compare as.
#[derive(Clone, Debug)]
pub(crate) struct Operand {
    pub(crate) text: String,
    lower: String,
    pub(crate) id: Option<u64>,
    pub(crate) ts: Option<i64>,
    num: Option<f64>,
    is_null: bool,
}

impl Operand {
    fn new(text: &str) -> Self {
        let id = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            text.parse().ok()
        } else {
            None
        };
        Self {
            text: text.to_string(),
            lower: text.to_lowercase(),
            id,
            ts: parse_instant(text),
            num: text.parse::<f64>().ok().filter(|n| n.is_finite()),
            is_null: text == "null",
        }
    }
}

/// One `path op value` clause.
#[derive(Clone, Debug)]
pub(crate) struct Clause {
    pub(crate) path: Vec<String>,
    pub(crate) op: Op,
    /// One value, or the list of an `In`.
    pub(crate) values: Vec<Operand>,
}

/// Why a filter was rejected; the message is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct FilterError(pub(crate) String);

const OPERATORS: [(&str, Op); 7] = [
    ("==", Op::Eq),
    (">=", Op::Ge),
    ("<=", Op::Le),
    ("~=", Op::Like),
    ("->", Op::In),
    (">", Op::Gt),
    ("<", Op::Lt),
];

const HELP: &str = "supported operators: ==, >, >=, <, <=, ~=, ->[a,b,c]";

/// Parses a `filter=` value. An empty filter has no clauses.
pub(crate) fn parse(input: &str) -> Result<Vec<Clause>, FilterError> {
    let err = |m: String| Err(FilterError(format!("invalid filter '{input}': {m}")));
    let mut clauses = Vec::new();
    if input.trim().is_empty() {
        return Ok(clauses);
    }
    let b = input.as_bytes();
    let skip_spaces = |mut p: usize| {
        while b.get(p) == Some(&b' ') {
            p += 1;
        }
        p
    };
    let mut pos = 0;
    loop {
        pos = skip_spaces(pos);
        let start = pos;
        while b
            .get(pos)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
        {
            pos += 1;
        }
        let field = &input[start..pos];
        if field.is_empty() {
            return match b.get(pos) {
                None | Some(b',') => err(format!("empty clause at position {pos}")),
                Some(_) => err(format!("expected a field name at position {pos}")),
            };
        }
        if field.split('.').any(str::is_empty) {
            return err(format!("'{field}' is not a valid field path"));
        }
        pos = skip_spaces(pos);
        let rest = &input[pos..];
        let Some((sym, op)) = OPERATORS.iter().find(|(sym, _)| rest.starts_with(sym)) else {
            let bad: String = rest
                .chars()
                .take_while(|c| "!=<>~-:^$*".contains(*c))
                .collect();
            return if rest.is_empty() || rest.starts_with(',') {
                err(format!("clause '{field}' has no operator ({HELP})"))
            } else if bad.is_empty() {
                let shown: String = rest.chars().take(10).collect();
                err(format!(
                    "expected an operator after '{field}', found '{shown}' ({HELP})"
                ))
            } else {
                err(format!("unknown operator '{bad}' after '{field}' ({HELP})"))
            };
        };
        pos += sym.len();
        let path: Vec<String> = field.split('.').map(str::to_string).collect();
        let values = if *op == Op::In {
            pos = skip_spaces(pos);
            if b.get(pos) != Some(&b'[') {
                return err(format!("'{field}->' needs a list like {field}->[1,2,3]"));
            }
            let Some(close) = input[pos..].find(']') else {
                return err(format!("unterminated list after '{field}->'"));
            };
            let inner = &input[pos + 1..pos + close];
            pos += close + 1;
            inner
                .split(',')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(Operand::new)
                .collect()
        } else {
            let end = input[pos..].find(',').map_or(input.len(), |k| pos + k);
            let value = input[pos..end].trim();
            if value.is_empty() {
                return err(format!("clause '{field}{sym}' has no value"));
            }
            pos = end;
            vec![Operand::new(value)]
        };
        let clause = Clause {
            path,
            op: *op,
            values,
        };
        check_types(&clause).map_err(|m| FilterError(format!("invalid filter '{input}': {m}")))?;
        clauses.push(clause);
        pos = skip_spaces(pos);
        match b.get(pos) {
            None => break,
            Some(b',') => {
                pos += 1;
                if skip_spaces(pos) >= b.len() {
                    return err("trailing ','".to_string());
                }
            }
            Some(c) => return err(format!("unexpected '{}' at position {pos}", *c as char)),
        }
    }
    Ok(clauses)
}

fn check_types(c: &Clause) -> Result<(), String> {
    if c.op == Op::Like {
        return Ok(());
    }
    let field = c.path.join(".");
    for v in &c.values {
        if v.is_null {
            continue;
        }
        if c.path.last().is_some_and(|l| l == "id") && v.id.is_none() {
            return Err(format!(
                "'{field}' compares ids: '{}' is not a decimal id",
                v.text
            ));
        }
        if c.path.last().is_some_and(|l| l == "lastModified") && v.ts.is_none() {
            return Err(format!(
                "'{field}' compares instants: '{}' is not an ISO-8601 timestamp like 2026-11-20T00:00:00.000Z",
                v.text
            ));
        }
    }
    Ok(())
}

fn holds(ord: Option<Ordering>, op: Op) -> bool {
    match (ord, op) {
        (None, _) => false,
        (Some(o), Op::Eq | Op::In) => o == Ordering::Equal,
        (Some(o), Op::Gt) => o == Ordering::Greater,
        (Some(o), Op::Ge) => o != Ordering::Less,
        (Some(o), Op::Lt) => o == Ordering::Less,
        (Some(o), Op::Le) => o != Ordering::Greater,
        (Some(_), Op::Like) => false,
    }
}

impl Clause {
    fn is_id_path(&self) -> bool {
        self.path.last().is_some_and(|l| l == "id")
    }

    /// The operands and the operator each is compared with.
    fn each(&self) -> impl Iterator<Item = (&Operand, Op)> {
        let op = if self.op == Op::In { Op::Eq } else { self.op };
        self.values.iter().map(move |v| (v, op))
    }

    /// Whether an id (`None` = the reference is absent) satisfies the clause.
    pub(crate) fn matches_id(&self, id: Option<u64>) -> bool {
        self.each().any(|(o, op)| match id {
            None => o.is_null && op == Op::Eq,
            Some(id) if op == Op::Like => id.to_string().contains(&o.lower),
            Some(id) => o.id.is_some_and(|b| holds(Some(id.cmp(&b)), op)),
        })
    }

    /// Whether an instant satisfies the clause.
    pub(crate) fn matches_instant(&self, ms: i64) -> bool {
        self.each().any(|(o, op)| match op {
            Op::Like => Ts(ms).to_string().to_lowercase().contains(&o.lower),
            _ => o.ts.is_some_and(|b| holds(Some(ms.cmp(&b)), op)),
        })
    }

    /// Whether a JSON record satisfies the clause.
    pub(crate) fn matches_value(&self, record: &Value) -> bool {
        self.at_path(record, &self.path)
    }

    fn at_path(&self, v: &Value, path: &[String]) -> bool {
        if let Value::Array(items) = v {
            return items.iter().any(|x| self.at_path(x, path));
        }
        match path.split_first() {
            None => self.leaf(v, self.is_id_path()),
            Some((head, rest)) => match v.get(head.as_str()) {
                Some(next) => self.at_path(next, rest),
                None => self.leaf(&Value::Null, false),
            },
        }
    }

    fn leaf(&self, v: &Value, is_id: bool) -> bool {
        self.each().any(|(o, op)| compare(v, op, o, is_id))
    }
}

fn compare(v: &Value, op: Op, o: &Operand, is_id: bool) -> bool {
    match v {
        Value::Null => o.is_null && op == Op::Eq,
        Value::String(s) => {
            if op == Op::Like {
                return s.to_lowercase().contains(&o.lower);
            }
            if o.is_null {
                return false;
            }
            if is_id && let (Ok(a), Some(b)) = (s.parse::<u64>(), o.id) {
                return holds(Some(a.cmp(&b)), op);
            }
            if let Some(b) = o.ts
                && let Some(a) = parse_instant(s)
            {
                return holds(Some(a.cmp(&b)), op);
            }
            holds(Some(s.as_str().cmp(o.text.as_str())), op)
        }
        Value::Number(n) => match op {
            Op::Like => n.to_string().contains(&o.lower),
            _ => holds(
                n.as_f64().zip(o.num).and_then(|(a, b)| a.partial_cmp(&b)),
                op,
            ),
        },
        Value::Bool(b) => op == Op::Eq && o.lower == if *b { "true" } else { "false" },
        Value::Object(m) => m.get("id").is_some_and(|id| compare(id, op, o, true)),
        Value::Array(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(filter: &str, record: &Value) -> bool {
        match parse(filter) {
            Ok(clauses) => clauses.iter().all(|c| c.matches_value(record)),
            Err(e) => panic!("{filter}: {e}"),
        }
    }

    fn rejects(filter: &str) -> String {
        match parse(filter) {
            Ok(c) => panic!("{filter} parsed as {c:?}"),
            Err(e) => e.0,
        }
    }

    fn patient() -> Value {
        json!({
            "id": "1000",
            "firstName": "Zoë",
            "lastName": "O'Brien",
            "preferredName": null,
            "fee": 125.50,
            "active": true,
            "lastModified": "2016-04-20T01:14:04.737Z",
            "dateOfBirth": "1985-03-02",
            "phones": [{"type": "MOBILE", "number": "(512) 555-0101"}, {"type": "HOME", "number": "(512) 555-0199"}],
            "preferredLocation": {"id": "7000000000114", "type": "LocationV1", "url": "u"},
            "patient": {"id": "999"},
        })
    }

    #[test]
    fn every_operator() {
        let p = patient();
        assert!(matches("id==1000", &p));
        assert!(!matches("id==999", &p));
        assert!(matches("id>999", &p) && !matches("id>1000", &p));
        assert!(matches("id>=1000", &p) && !matches("id>=1001", &p));
        assert!(matches("id<1001", &p) && !matches("id<1000", &p));
        assert!(matches("id<=1000", &p) && !matches("id<=999", &p));
        assert!(matches("lastName~=brien", &p) && matches("firstName~=ZOË", &p));
        assert!(!matches("lastName~=smith", &p));
        assert!(matches("id->[1,1000,7]", &p) && !matches("id->[1,7]", &p));
        assert!(matches("lastName->[Smith,O'Brien]", &p));
    }

    #[test]
    fn ids_compare_as_numbers_not_text() {
        let p = patient();
        // As text "999" > "1000"; as numbers it is smaller.
        assert!(matches("patient.id<1000", &p));
        assert!(!matches("patient.id>1000", &p));
        assert!(matches("preferredLocation.id>999", &p));
        assert!(matches("preferredLocation.id==7000000000114", &p));
        assert!(
            matches("preferredLocation==7000000000114", &p),
            "a reference compares as its id"
        );
    }

    #[test]
    fn timestamps_numbers_bools_nulls_and_arrays() {
        let p = patient();
        assert!(matches("lastModified>=2016-04-20T01:14:04.737Z", &p));
        assert!(!matches("lastModified>2016-04-20T01:14:04.737Z", &p));
        assert!(
            matches("lastModified>2016-04-20T02:00:00+01:00", &p),
            "offsets are instants"
        );
        assert!(matches("lastModified<2016-04-21", &p));
        assert!(matches(
            "dateOfBirth<1990-01-01,dateOfBirth>=1985-03-02",
            &p
        ));
        assert!(matches("fee>125.49,fee<=125.5", &p) && !matches("fee>200", &p));
        assert!(matches("active==true", &p) && !matches("active==false", &p));
        assert!(matches("preferredName==null", &p) && matches("emailAddress==null", &p));
        assert!(!matches("preferredName~=a", &p) && !matches("firstName==null", &p));
        assert!(matches("phones.number~=0199", &p) && matches("phones.type==HOME", &p));
        assert!(!matches("phones.type==WORK", &p));
        assert!(
            matches("firstName==Zoë,lastName~=o'b", &p),
            "clauses are ANDed"
        );
        assert!(!matches("firstName==Zoë,lastName==Smith", &p));
        assert!(
            matches("firstName>Z", &p) && matches("firstName<Zz", &p),
            "strings compare as strings"
        );
    }

    #[test]
    fn syntax_errors_are_clear() {
        assert!(rejects("status!=CONFIRMED").contains("unknown operator '!='"));
        assert!(rejects("status=CONFIRMED").contains("unknown operator '='"));
        assert!(rejects("status").contains("no operator"));
        assert!(rejects("status==").contains("no value"));
        assert!(rejects("id==1,").contains("trailing"));
        assert!(rejects("id==1,,id==2").contains("empty clause"));
        assert!(rejects("id->1,2").contains("needs a list"));
        assert!(rejects("id->[1,2").contains("unterminated"));
        assert!(rejects("id->[1]x").contains("unexpected 'x'"));
        assert!(rejects("id==abc").contains("not a decimal id"));
        assert!(rejects("patient.id>=12a").contains("not a decimal id"));
        assert!(rejects("lastModified>=yesterday").contains("ISO-8601"));
        assert!(rejects("a..b==1").contains("not a valid field path"));
        assert!(rejects("==1").contains("expected a field name"));
        assert!(rejects("status CONFIRMED").contains("expected an operator"));
        assert!(parse("").is_ok_and(|c| c.is_empty()));
        assert!(parse(" id >= 5 , lastName ~= x ").is_ok_and(|c| c.len() == 2));
        assert!(parse("id->[]").is_ok_and(|c| c[0].values.is_empty()));
    }

    #[test]
    fn cheap_matchers_agree_with_json_matching() {
        let c = &parse("id->[5,999]").unwrap_or_default()[0];
        assert!(c.matches_id(Some(999)) && !c.matches_id(Some(1000)) && !c.matches_id(None));
        let c = &parse("location.id==null").unwrap_or_default()[0];
        assert!(c.matches_id(None) && !c.matches_id(Some(1)));
        let c = &parse("lastModified>=2016-04-20T01:14:04.737Z").unwrap_or_default()[0];
        assert!(c.matches_instant(1_461_114_844_737) && !c.matches_instant(1_461_114_844_736));
        let c = &parse("lastModified~=2016-04").unwrap_or_default()[0];
        assert!(c.matches_instant(1_461_114_844_737));
    }
}
