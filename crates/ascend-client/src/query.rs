//! What a list call asks for: the filter, the page size, the cursor; and the
//! one function that turns them into a URL.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use url::Url;

use crate::Resource;
use crate::error::ClientError;
use crate::ids::AscendId;

/// The largest page size the API accepts (assumed).
pub const MAX_PAGE_SIZE: u32 = 500;

/// How the API writes timestamps: UTC with milliseconds.
const TIMESTAMP: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// Formats a timestamp the way filters need it: `2026-11-20T00:00:00.000Z`
/// (converted to UTC, truncated to milliseconds).
pub fn format_timestamp(ts: OffsetDateTime) -> Option<String> {
    ts.to_offset(time::UtcOffset::UTC).format(TIMESTAMP).ok()
}

/// One value on the right of a filter clause, already in its text form.
///
/// Built from strings, ids, integers, booleans and timestamps
/// (`OffsetDateTime` becomes `2026-11-20T00:00:00.000Z`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterValue(Result<String, String>);

impl FilterValue {
    /// A text value, taken as is (escaped when the clause is written).
    pub fn text(value: impl Into<String>) -> Self {
        FilterValue(Ok(value.into()))
    }
}

impl From<&str> for FilterValue {
    fn from(value: &str) -> Self {
        FilterValue::text(value)
    }
}

impl From<String> for FilterValue {
    fn from(value: String) -> Self {
        FilterValue::text(value)
    }
}

impl From<&String> for FilterValue {
    fn from(value: &String) -> Self {
        FilterValue::text(value.as_str())
    }
}

impl From<AscendId> for FilterValue {
    fn from(value: AscendId) -> Self {
        FilterValue::text(value.to_string())
    }
}

impl From<u64> for FilterValue {
    fn from(value: u64) -> Self {
        FilterValue::text(value.to_string())
    }
}

impl From<i64> for FilterValue {
    fn from(value: i64) -> Self {
        FilterValue::text(value.to_string())
    }
}

impl From<u32> for FilterValue {
    fn from(value: u32) -> Self {
        FilterValue::text(value.to_string())
    }
}

impl From<bool> for FilterValue {
    fn from(value: bool) -> Self {
        FilterValue::text(if value { "true" } else { "false" })
    }
}

impl From<OffsetDateTime> for FilterValue {
    fn from(value: OffsetDateTime) -> Self {
        match format_timestamp(value) {
            Some(text) => FilterValue(Ok(text)),
            None => FilterValue(Err(format!(
                "timestamp {value} cannot be written as YYYY-MM-DDTHH:MM:SS.mmmZ"
            ))),
        }
    }
}

/// The API's `filter=` parameter: comma-separated clauses, all ANDed, e.g.
/// `location.id==7000000000114,lastModified>=2026-11-20T00:00:00.000Z`.
///
/// Build it clause by clause. Field names must be dotted paths of letters,
/// digits and `_` (`patient.id`); a bad field name or value does not panic:
/// the filter remembers the problem and the request fails with
/// [`ClientError::Config`] before anything is sent.
///
/// Values are escaped so that they cannot end a clause or a list: `\`, `,`,
/// `[` and `]` get a backslash in front (an assumption about the API, kept in
/// one function).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    clauses: Vec<String>,
    problem: Option<String>,
}

impl Filter {
    /// An empty filter (everything matches).
    pub fn new() -> Self {
        Filter::default()
    }

    /// `field==value`.
    pub fn eq(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.clause(field, "==", value.into())
    }

    /// `field>value`.
    pub fn gt(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.clause(field, ">", value.into())
    }

    /// `field>=value`, e.g. `lastModified>=` for "changed since".
    pub fn ge(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.clause(field, ">=", value.into())
    }

    /// `field<value`.
    pub fn lt(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.clause(field, "<", value.into())
    }

    /// `field<=value`.
    pub fn le(self, field: &str, value: impl Into<FilterValue>) -> Self {
        self.clause(field, "<=", value.into())
    }

    /// `field~=text`: text match.
    pub fn matches(self, field: &str, text: impl Into<FilterValue>) -> Self {
        self.clause(field, "~=", text.into())
    }

    /// `field->[a,b,c]`: the field is one of the values.
    pub fn is_in<V: Into<FilterValue>>(
        mut self,
        field: &str,
        values: impl IntoIterator<Item = V>,
    ) -> Self {
        if let Err(problem) = check_field(field) {
            self.note_problem(problem);
            return self;
        }
        let mut clause = format!("{field}->[");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                clause.push(',');
            }
            match value.into().0 {
                Ok(text) => escape_value(&text, &mut clause),
                Err(problem) => {
                    self.note_problem(problem);
                    return self;
                }
            }
        }
        clause.push(']');
        self.clauses.push(clause);
        self
    }

    /// Every clause of `other` added to this filter.
    pub fn and(mut self, other: Filter) -> Self {
        self.clauses.extend(other.clauses);
        if let Some(problem) = other.problem {
            self.note_problem(problem);
        }
        self
    }

    /// Whether the filter has no clauses.
    pub fn is_empty(&self) -> bool {
        self.clauses.is_empty() && self.problem.is_none()
    }

    /// The `filter=` value (before URL encoding), `None` when empty, or the
    /// problem a clause had.
    pub fn encode(&self) -> Result<Option<String>, ClientError> {
        if let Some(problem) = &self.problem {
            return Err(ClientError::config(format!("bad filter: {problem}")));
        }
        if self.clauses.is_empty() {
            return Ok(None);
        }
        Ok(Some(self.clauses.join(",")))
    }

    fn clause(mut self, field: &str, op: &str, value: FilterValue) -> Self {
        if let Err(problem) = check_field(field) {
            self.note_problem(problem);
            return self;
        }
        match value.0 {
            Ok(text) => {
                let mut clause = String::with_capacity(field.len() + op.len() + text.len() + 2);
                clause.push_str(field);
                clause.push_str(op);
                escape_value(&text, &mut clause);
                self.clauses.push(clause);
            }
            Err(problem) => self.note_problem(problem),
        }
        self
    }

    fn note_problem(&mut self, problem: String) {
        if self.problem.is_none() {
            self.problem = Some(problem);
        }
    }
}

impl fmt::Display for Filter {
    /// The clauses joined by commas (what `filter=` carries before URL
    /// encoding); a filter with a problem shows it instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.problem {
            Some(problem) => write!(f, "<invalid filter: {problem}>"),
            None => f.write_str(&self.clauses.join(",")),
        }
    }
}

fn check_field(field: &str) -> Result<(), String> {
    let ok = !field.is_empty()
        && field.split('.').all(|part| {
            !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        let shown: String = field.chars().take(64).collect();
        Err(format!(
            "field {shown:?} is not a dotted path of letters, digits and _"
        ))
    }
}

/// Writes a clause value, escaping what would end a clause or a list.
fn escape_value(value: &str, out: &mut String) {
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '[' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// What a list call asks for, apart from the cursor.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// The `filter=` clauses.
    pub filter: Filter,
    /// Records per page; `None` for the client's configured page size.
    /// Clamped to `1..=500`.
    pub page_size: Option<u32>,
    /// Ask for ids only (`responseFields=id`), e.g. to reconcile deletes.
    pub ids_only: bool,
}

impl ListQuery {
    /// Everything, at the configured page size.
    pub fn new() -> Self {
        ListQuery::default()
    }

    /// The same query with this filter.
    pub fn with_filter(mut self, filter: Filter) -> Self {
        self.filter = filter;
        self
    }

    /// The same query with this page size.
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = Some(page_size);
        self
    }

    /// The same query asking for ids only.
    pub fn with_ids_only(mut self) -> Self {
        self.ids_only = true;
        self
    }
}

/// Which page of a list to fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Cursor {
    /// The first page (neither `lastId` nor `page`).
    Start,
    /// Keyset paging: the records after this id (`lastId=`).
    AfterId(AscendId),
    /// Offset paging: this 1-based page (`page=`).
    Page(u32),
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cursor::Start => f.write_str("the first page"),
            Cursor::AfterId(id) => write!(f, "lastId={id}"),
            Cursor::Page(n) => write!(f, "page {n}"),
        }
    }
}

/// The page size a request asks for: the query's, else the configured one,
/// clamped to `1..=500`.
pub(crate) fn effective_page_size(query: &ListQuery, configured: u32) -> u32 {
    query
        .page_size
        .unwrap_or(configured)
        .clamp(1, MAX_PAGE_SIZE)
}

/// Builds the URL of one list call. The only place that knows the query
/// string's shape:
/// - first page: `pageSize=N&filter=...`
/// - keyset: `pageSize=N&lastId=ID&filter=...`
/// - offset: `page=P&pageSize=N&filter=...`
///
/// then `responseFields=id` when only ids are wanted.
pub(crate) fn list_url(
    api_base: &Url,
    resource: Resource,
    query: &ListQuery,
    cursor: &Cursor,
    page_size: u32,
) -> Result<Url, ClientError> {
    let filter = query.filter.encode()?;
    let mut url = api_base.clone();
    let path = format!(
        "{}{}",
        api_base.path().trim_end_matches('/'),
        resource.path()
    );
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut pairs = url.query_pairs_mut();
        let size = page_size.to_string();
        match cursor {
            Cursor::Start => {
                pairs.append_pair("pageSize", &size);
            }
            Cursor::AfterId(id) => {
                pairs.append_pair("pageSize", &size);
                pairs.append_pair("lastId", &id.to_string());
            }
            Cursor::Page(page) => {
                pairs.append_pair("page", &page.to_string());
                pairs.append_pair("pageSize", &size);
            }
        }
        if let Some(filter) = &filter {
            pairs.append_pair("filter", filter);
        }
        if query.ids_only {
            pairs.append_pair("responseFields", "id");
        }
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn base() -> Url {
        Url::parse("https://prod.hs1api.com/ascend-gateway/api").expect("valid url")
    }

    #[test]
    fn filter_clauses_and_operators() {
        let filter = Filter::new()
            .eq("location.id", AscendId(7000000000114))
            .ge("lastModified", datetime!(2026-11-20 00:00:00 UTC))
            .gt("a", 1u64)
            .lt("b", 2i64)
            .le("c", "x")
            .matches("lastName", "Smi")
            .is_in("patient.id", [AscendId(1), AscendId(22)]);
        assert_eq!(
            filter.encode().expect("valid").as_deref(),
            Some(
                "location.id==7000000000114,lastModified>=2026-11-20T00:00:00.000Z,a>1,b<2,c<=x,\
                 lastName~=Smi,patient.id->[1,22]"
            )
        );
        assert_eq!(
            filter.to_string(),
            filter.encode().expect("valid").unwrap_or_default()
        );
    }

    #[test]
    fn empty_filter_encodes_to_nothing() {
        assert!(Filter::new().is_empty());
        assert_eq!(Filter::new().encode().expect("valid"), None);
    }

    #[test]
    fn timestamps_are_utc_with_milliseconds() {
        let ts = datetime!(2026-11-20 01:02:03.456789 +02:00);
        assert_eq!(
            format_timestamp(ts).as_deref(),
            Some("2026-11-19T23:02:03.456Z")
        );
        let filter = Filter::new().ge("lastModified", datetime!(2016-04-20 01:14:04.737 UTC));
        assert_eq!(filter.to_string(), "lastModified>=2016-04-20T01:14:04.737Z");
    }

    #[test]
    fn values_are_escaped() {
        let filter = Filter::new()
            .matches("name", r"a,b\c[d]")
            .is_in("x", ["p,q", "r"]);
        assert_eq!(filter.to_string(), r"name~=a\,b\\c\[d\],x->[p\,q,r]");
    }

    #[test]
    fn bad_fields_become_config_errors() {
        for field in ["", "a..b", ".a", "a.", "a b", "a==b", "a,b"] {
            let filter = Filter::new().eq(field, "v");
            let error = filter.encode().expect_err("invalid field");
            assert_eq!(error.class().as_str(), "config", "{field:?}");
            let error = Filter::new()
                .is_in(field, ["v"])
                .encode()
                .expect_err("invalid field");
            assert_eq!(error.class().as_str(), "config", "{field:?}");
        }
        let filter = Filter::new()
            .eq("ok", 1u64)
            .and(Filter::new().eq("bad field", 2u64));
        assert!(filter.encode().is_err());
        assert!(filter.to_string().contains("invalid filter"));
    }

    #[test]
    fn keyset_url() {
        let query = ListQuery::new().with_filter(Filter::new().eq("location.id", 7u64));
        let url = list_url(
            &base(),
            Resource::Patients,
            &query,
            &Cursor::AfterId(AscendId(123)),
            500,
        )
        .expect("url");
        assert_eq!(
            url.as_str(),
            "https://prod.hs1api.com/ascend-gateway/api/v1/patients?pageSize=500&lastId=123&filter=location.id%3D%3D7"
        );
        let url = list_url(
            &base(),
            Resource::Patients,
            &ListQuery::new(),
            &Cursor::Start,
            500,
        )
        .expect("url");
        assert_eq!(
            url.as_str(),
            "https://prod.hs1api.com/ascend-gateway/api/v1/patients?pageSize=500"
        );
    }

    #[test]
    fn offset_url_and_ids_only() {
        let query = ListQuery::new().with_ids_only();
        let base = Url::parse("https://h.example/ascend-gateway/api/").expect("valid url");
        let url = list_url(
            &base,
            Resource::InsuranceCarriers,
            &query,
            &Cursor::Page(3),
            100,
        )
        .expect("url");
        assert_eq!(
            url.as_str(),
            "https://h.example/ascend-gateway/api/v1/globalinsurancecarriers?page=3&pageSize=100&responseFields=id"
        );
    }

    #[test]
    fn filter_url_round_trips_through_decoding() {
        let query = ListQuery::new().with_filter(
            Filter::new()
                .ge("lastModified", datetime!(2026-11-20 00:00:00 UTC))
                .matches("lastName", "O'Brien & Sons"),
        );
        let url =
            list_url(&base(), Resource::Appointments, &query, &Cursor::Start, 500).expect("url");
        let filter: Vec<String> = url
            .query_pairs()
            .filter(|(k, _)| k == "filter")
            .map(|(_, v)| v.into_owned())
            .collect();
        assert_eq!(
            filter,
            ["lastModified>=2026-11-20T00:00:00.000Z,lastName~=O'Brien & Sons"]
        );
    }

    #[test]
    fn bad_filter_fails_url_building() {
        let query = ListQuery::new().with_filter(Filter::new().eq("", 1u64));
        assert!(list_url(&base(), Resource::Patients, &query, &Cursor::Start, 500).is_err());
    }

    #[test]
    fn page_size_is_clamped() {
        assert_eq!(effective_page_size(&ListQuery::new(), 500), 500);
        assert_eq!(
            effective_page_size(&ListQuery::new().with_page_size(0), 500),
            1
        );
        assert_eq!(
            effective_page_size(&ListQuery::new().with_page_size(10_000), 500),
            500
        );
        assert_eq!(
            effective_page_size(&ListQuery::new().with_page_size(7), 500),
            7
        );
    }

    #[test]
    fn cursor_display() {
        assert_eq!(Cursor::Start.to_string(), "the first page");
        assert_eq!(Cursor::AfterId(AscendId(9)).to_string(), "lastId=9");
        assert_eq!(Cursor::Page(2).to_string(), "page 2");
    }
}
