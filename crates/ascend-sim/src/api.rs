//! The Ascend API as served: token endpoint, auth, faults, routing, reads
//! and writes.
//!
//! Every call to `/ascend-gateway/api/...` goes through, in order:
//! 1. the bearer token (`401` Apigee fault: invalid, revoked or expired);
//! 2. `Organization-ID` (`400` if missing; `403` if the token was issued to
//!    another organization);
//! 3. the organization's switch (`403` "integration not enabled");
//! 4. its rate limit (`429` with `Retry-After`);
//! 5. injected faults (scripts first, then rates);
//! 6. `not_offered` resources (`404`);
//! 7. the route itself.
//!
//! Every call is counted and logged against the organization it names (or
//! the one its token belongs to).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::auth::TokenError;
use crate::faults::Decision;
use crate::filter;
use crate::resource::Resource;
use crate::state::{Reply, Sim, lock, read, write};
use crate::store::{Fields, ListQuery, Plan, View, list_page};
use crate::writes::{self, PATIENT_WRITES, WriteError};

/// Where the API lives on the simulator's host.
pub(crate) const API_PREFIX: &str = "/ascend-gateway/api";
/// The token endpoint's path.
pub(crate) const TOKEN_PATH: &str = "/oauth/client_credential/accesstoken";

const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_PAGE_SIZE: u64 = 100;

/// What a call asks for.
#[derive(Clone, Debug)]
enum Route {
    List(Resource),
    Get(Resource, String),
    Create(Resource),
    Update(Resource, String),
    Delete(Resource, String),
    PatientWrite(&'static str, String),
    PatientWrites(&'static str, String),
    MethodNotAllowed(Resource),
    NotFound,
}

impl Route {
    /// The route and its template (`/v1/patients/{id}`).
    fn parse(method: &Method, rel: &str) -> (Self, String) {
        let segs: Vec<&str> = rel.trim_matches('/').split('/').collect();
        let (name, rest) = match segs.as_slice() {
            ["v1", name, rest @ ..] => (*name, rest),
            _ => return (Route::NotFound, rel.to_string()),
        };
        let Some(r) = Resource::from_path(name) else {
            return (Route::NotFound, rel.to_string());
        };
        let writable = matches!(r, Resource::Patients | Resource::Appointments);
        match rest {
            [] => {
                let route = match *method {
                    Method::GET => Route::List(r),
                    Method::POST if writable => Route::Create(r),
                    _ => Route::MethodNotAllowed(r),
                };
                (route, format!("/v1/{name}"))
            }
            [id] => {
                let id = (*id).to_string();
                let route = match *method {
                    Method::GET => Route::Get(r, id),
                    Method::PUT if writable => Route::Update(r, id),
                    Method::DELETE if r == Resource::Appointments => Route::Delete(r, id),
                    _ => Route::MethodNotAllowed(r),
                };
                (route, format!("/v1/{name}/{{id}}"))
            }
            [id, sub] if r == Resource::Patients => {
                let Some((kind, _, _)) = PATIENT_WRITES.iter().find(|(k, _, _)| k == sub) else {
                    return (Route::NotFound, rel.to_string());
                };
                let id = (*id).to_string();
                let route = match *method {
                    Method::POST => Route::PatientWrite(kind, id),
                    Method::GET => Route::PatientWrites(kind, id),
                    _ => Route::MethodNotAllowed(Resource::Patients),
                };
                (route, format!("/v1/patients/{{id}}/{kind}"))
            }
            _ => (Route::NotFound, rel.to_string()),
        }
    }

    /// Whether the call writes.
    fn is_write(&self) -> bool {
        matches!(
            self,
            Route::Create(_) | Route::Update(..) | Route::Delete(..) | Route::PatientWrite(..)
        )
    }

    /// The id in the path of an update or delete.
    fn path_id(&self) -> Option<String> {
        match self {
            Route::Update(_, id) | Route::Delete(_, id) => Some(id.clone()),
            _ => None,
        }
    }

    fn resource(&self) -> Option<Resource> {
        match self {
            Route::List(r)
            | Route::Get(r, _)
            | Route::Create(r)
            | Route::Update(r, _)
            | Route::Delete(r, _) => Some(*r),
            Route::MethodNotAllowed(r) => Some(*r),
            Route::PatientWrite(..) | Route::PatientWrites(..) => Some(Resource::Patients),
            Route::NotFound => None,
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// `/ascend-gateway/api/...`, any method.
///
/// Each call is handled on a task of its own, as a real backend finishes
/// a request whose client has gone: a write whose caller timed out or was
/// killed while it was in flight is still applied (and journaled).
pub(crate) async fn api(
    State(sim): State<Arc<Sim>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let handled = tokio::spawn(serve(sim, method, uri, headers, body)).await;
    match handled {
        Ok(reply) => reply.into_response(),
        Err(e) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            &e.to_string(),
        )
        .into_response(),
    }
}

async fn serve(sim: Arc<Sim>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Reply {
    let full_path = uri.path();
    let rel = full_path.strip_prefix(API_PREFIX).unwrap_or(full_path);
    let query = uri.query().unwrap_or("");
    let (route, template) = Route::parse(&method, rel);
    let is_write = route.is_write();
    let sent = is_write.then(|| serde_json::from_slice(&body).unwrap_or(Value::Null));
    let (org, reply, handled) = handle(&sim, &headers, full_path, query, route, body).await;
    if let Some(org) = org.and_then(|o| sim.orgs.get(o)) {
        org.record(
            true,
            method.as_str(),
            rel,
            query,
            &template,
            reply.status.as_u16(),
        );
        if let Some(body) = sent {
            let (applied, id) = handled
                .as_ref()
                .map_or((false, None), |h| (h.applied, h.id.clone()));
            org.journal(crate::control::WriteRecord {
                seq: 0,
                method: method.as_str().to_owned(),
                path: rel.to_owned(),
                template: template.clone(),
                status: reply.status.as_u16(),
                applied,
                id,
                body,
            });
        }
    }
    if handled.is_some_and(|h| h.stall) {
        sim.sleep(60_000).await;
    }
    reply
}

async fn handle(
    sim: &Arc<Sim>,
    headers: &HeaderMap,
    full_path: &str,
    query: &str,
    route: Route,
    body: Bytes,
) -> (Option<usize>, Reply, Option<Handled>) {
    let header_org = headers
        .get("organization-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let header_idx = header_org.and_then(|o| sim.by_org_id.get(o).copied());
    let Some(token) = bearer(headers) else {
        return (header_idx, Reply::invalid_token(), None);
    };
    let org = match sim.tokens.check(token, |o| {
        sim.orgs.get(o).map_or(u64::MAX, |org| org.generation())
    }) {
        Ok(o) => o,
        Err(e) => {
            let who = header_idx.or_else(|| sim.tokens.owner(token));
            let reply = if e == TokenError::Expired {
                Reply::expired_token()
            } else {
                Reply::invalid_token()
            };
            return (who, reply, None);
        }
    };
    match header_org {
        None | Some("") => {
            let r = Reply::error(
                StatusCode::BAD_REQUEST,
                "MISSING_ORGANIZATION_ID",
                "the Organization-ID header is required",
            );
            return (Some(org), r, None);
        }
        Some(h) if header_idx != Some(org) => {
            let msg = format!("the access token is not valid for Organization-ID '{h}'");
            return (
                header_idx.or(Some(org)),
                Reply::error(StatusCode::FORBIDDEN, "FORBIDDEN", &msg),
                None,
            );
        }
        Some(_) => {}
    }
    let Some(o) = sim.orgs.get(org) else {
        return (None, Reply::invalid_token(), None);
    };
    let target = if query.is_empty() {
        full_path.to_string()
    } else {
        format!("{full_path}?{query}")
    };
    let write_id = route.path_id();
    let (forbidden, not_offered) = {
        let f = lock(&o.faults);
        let listed = |names: &[String]| {
            route
                .resource()
                .is_some_and(|r| names.iter().any(|n| n == r.path()))
        };
        (
            f.config.forbidden || listed(&f.config.forbidden_resources),
            listed(&f.config.not_offered),
        )
    };
    if forbidden {
        return (Some(org), not_enabled(), None);
    }
    if let Some(bucket) = lock(&o.rate).as_mut()
        && let Err(secs) = bucket.take(std::time::Instant::now())
    {
        return (Some(org), spike_arrest(secs), None);
    }
    let decision = lock(&o.faults).decide(&target, false);
    let reply = match decision {
        Some(Decision::Error5xx(status)) => return (Some(org), server_error(status), None),
        Some(Decision::RateLimited(secs)) => return (Some(org), quota_violation(secs), None),
        Some(Decision::Unauthorized) => return (Some(org), Reply::invalid_token(), None),
        Some(Decision::Malformed) => {
            let n = {
                let mut f = lock(&o.faults);
                f.malformed_count += 1;
                f.malformed_count
            };
            return (Some(org), malformed(n), None);
        }
        Some(Decision::Timeout) => {
            sim.sleep(60_000).await;
            return (Some(org), server_error(504), None);
        }
        Some(Decision::LostReply(_)) => None,
        Some(Decision::Slow(ms)) => {
            sim.sleep(ms).await;
            None
        }
        Some(Decision::Truncated) | None => None,
    };
    let mut reply = match reply {
        Some(r) => r,
        None if not_offered => not_found(full_path),
        None => {
            let sim = Arc::clone(sim);
            let query = query.to_string();
            let path = full_path.to_string();
            match tokio::task::spawn_blocking(move || run(&sim, org, route, &query, &body, &path))
                .await
            {
                Ok(r) => r,
                Err(e) => Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    &e.to_string(),
                ),
            }
        }
    };
    // What the write did, before its answer may be lost.
    let applied = reply.status.is_success();
    let mut handled = Handled {
        applied,
        id: if applied {
            write_id.or_else(|| created_id(&reply))
        } else {
            None
        },
        stall: false,
    };
    if let Some(Decision::LostReply(status)) = decision {
        // Without a status: no answer for 60 s, then 504 (the caller
        // journals the write first, so a caller that gives up earlier
        // still finds it in the journal).
        handled.stall = status.is_none();
        return (
            Some(org),
            server_error(status.unwrap_or(504)),
            Some(handled),
        );
    }
    if decision == Some(Decision::Truncated) {
        reply.status = StatusCode::OK;
        let keep = reply.body.len() / 2;
        reply
            .body
            .truncate(keep.max(1).min(reply.body.len().saturating_sub(1)));
    }
    (Some(org), reply, Some(handled))
}

/// What a handled call did (for the write journal).
struct Handled {
    applied: bool,
    id: Option<String>,
    /// Answer only after the timeout's 60 s (a lost reply without status).
    stall: bool,
}

/// The id of the record a successful create answered with (`data.id`).
fn created_id(reply: &Reply) -> Option<String> {
    let v: Value = serde_json::from_slice(&reply.body).ok()?;
    match v.get("data")?.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn not_enabled() -> Reply {
    Reply::error(
        StatusCode::FORBIDDEN,
        "INTEGRATION_NOT_ENABLED",
        "The integration is not enabled for this organization. Ask the practice to enable it in Ascend.",
    )
}

fn not_found(path: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("no resource at {path}"),
    )
}

fn spike_arrest(secs: u64) -> Reply {
    let mut r = Reply::fault(
        StatusCode::TOO_MANY_REQUESTS,
        "Spike arrest violation. Allowed rate exceeded.",
        "policies.ratelimit.SpikeArrestViolation",
    );
    r.retry_after = Some(secs);
    r
}

fn quota_violation(secs: u64) -> Reply {
    let mut r = Reply::fault(
        StatusCode::TOO_MANY_REQUESTS,
        "Rate limit quota violation. Quota limit exceeded.",
        "policies.ratelimit.QuotaViolation",
    );
    r.retry_after = Some(secs);
    r
}

fn server_error(status: u16) -> Reply {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match status {
        502 => Reply {
            status: code,
            body: b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>".to_vec(),
            content_type: "text/html",
            retry_after: None,
        },
        503 => Reply::fault(code, "The Service is temporarily unavailable", "messaging.adaptors.http.flow.ServiceUnavailable"),
        504 => Reply::fault(code, "Gateway Timeout", "messaging.adaptors.http.flow.GatewayTimeout"),
        _ => Reply::error(code, "INTERNAL_SERVER_ERROR", "An unexpected error occurred"),
    }
}

/// A `200` whose body is not the API's envelope; three kinds in turn.
fn malformed(n: u64) -> Reply {
    match n % 3 {
        1 => Reply {
            status: StatusCode::OK,
            body: b"<!DOCTYPE html><html><body><h1>Scheduled maintenance</h1><p>Back soon.</p></body></html>".to_vec(),
            content_type: "text/html",
            retry_after: None,
        },
        2 => Reply::value(StatusCode::OK, &json!({"result": "ok", "items": "not-a-list"})),
        _ => Reply::value(StatusCode::OK, &json!({"data": "unavailable", "meta": {"pagination": "none"}})),
    }
}

fn parse_id(s: &str) -> Option<u64> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

fn bad_request(message: &str) -> Reply {
    Reply::error(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
}

fn data_reply(status: StatusCode, v: Value) -> Reply {
    Reply::value(status, &json!({ "data": v }))
}

fn write_reply(
    org: &crate::state::Org,
    kind: &str,
    status: StatusCode,
    r: Result<Value, WriteError>,
) -> Reply {
    match r {
        Ok(v) => {
            org.count_write(kind);
            data_reply(status, v)
        }
        Err(WriteError::BadRequest(m)) => bad_request(&m),
        Err(WriteError::NotFound(m)) => Reply::error(StatusCode::NOT_FOUND, "NOT_FOUND", &m),
    }
}

fn json_body(body: &[u8]) -> Result<Value, Reply> {
    serde_json::from_slice(body)
        .map_err(|e| bad_request(&format!("the body is not valid JSON: {e}")))
}

/// Runs a routed call (on a blocking thread: pages and scans are CPU work).
fn run(sim: &Sim, org_idx: usize, route: Route, query: &str, body: &[u8], path: &str) -> Reply {
    let Some(org) = sim.orgs.get(org_idx) else {
        return not_found(path);
    };
    let w = &org.world;
    match route {
        Route::NotFound => not_found(path),
        Route::MethodNotAllowed(_) => Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            &format!("method not allowed on {path}"),
        ),
        Route::List(res) => list(org, res, query),
        Route::Get(res, id) => {
            let Some(id) = parse_id(&id) else {
                return not_found(path);
            };
            let fields = Fields::parse(query_param(query, "responseFields").as_deref());
            let data = read(&org.data);
            let view = View::new(w, &data, res);
            let Some(rec) = view.get(id) else {
                return not_found(path);
            };
            let mut buf = b"{\"data\":".to_vec();
            if let Err(e) = view.write_served(&mut buf, rec, &fields) {
                return Reply::error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL_ERROR",
                    &e.to_string(),
                );
            }
            buf.push(b'}');
            Reply::json(StatusCode::OK, buf)
        }
        Route::Create(res) => {
            let body = match json_body(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let mut data = write(&org.data);
            if res == Resource::Patients {
                let r = writes::create_patient(w, &mut data, &body);
                write_reply(org, "patient_create", StatusCode::CREATED, r)
            } else {
                let r = writes::create_appointment(w, &mut data, &body);
                write_reply(org, "appointment_create", StatusCode::CREATED, r)
            }
        }
        Route::Update(res, id) => {
            let Some(id) = parse_id(&id) else {
                return not_found(path);
            };
            let body = match json_body(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let mut data = write(&org.data);
            if res == Resource::Patients {
                let r = writes::update_patient(w, &mut data, id, &body);
                write_reply(org, "patient_update", StatusCode::OK, r)
            } else {
                let r = writes::update_appointment(w, &mut data, id, &body);
                write_reply(org, "appointment_update", StatusCode::OK, r)
            }
        }
        Route::Delete(_, id) => {
            let Some(id) = parse_id(&id) else {
                return not_found(path);
            };
            let mut data = write(&org.data);
            match writes::delete_appointment(w, &mut data, id) {
                Ok(()) => {
                    org.count_write("appointment_delete");
                    Reply::no_content()
                }
                Err(WriteError::NotFound(m) | WriteError::BadRequest(m)) => {
                    Reply::error(StatusCode::NOT_FOUND, "NOT_FOUND", &m)
                }
            }
        }
        Route::PatientWrite(kind, id) => {
            let Some(id) = parse_id(&id) else {
                return not_found(path);
            };
            let body = match json_body(body) {
                Ok(b) => b,
                Err(r) => return r,
            };
            let counter = PATIENT_WRITES
                .iter()
                .find(|(k, _, _)| *k == kind)
                .map_or(kind, |(_, c, _)| *c);
            let mut data = write(&org.data);
            let r = writes::patient_write(w, &mut data, kind, id, &body);
            write_reply(org, counter, StatusCode::CREATED, r)
        }
        Route::PatientWrites(kind, id) => {
            let Some(id) = parse_id(&id) else {
                return not_found(path);
            };
            let data = read(&org.data);
            match writes::list_patient_writes(w, &data, kind, id) {
                Ok(items) => {
                    let total = items.len();
                    Reply::value(
                        StatusCode::OK,
                        &json!({"data": items, "warnings": [], "errors": [],
                            "meta": {"pagination": {"page": 1, "pageSize": total, "total": total}}}),
                    )
                }
                Err(WriteError::NotFound(m) | WriteError::BadRequest(m)) => {
                    Reply::error(StatusCode::NOT_FOUND, "NOT_FOUND", &m)
                }
            }
        }
    }
}

/// The first value of a query parameter, decoded.
fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Parses the paging and filter parameters of a list call.
fn parse_list_query(res: Resource, query: &str) -> Result<ListQuery, String> {
    let number = |name: &str| -> Result<Option<u64>, String> {
        match query_param(query, name) {
            None => Ok(None),
            Some(v) => parse_id(v.trim())
                .map(Some)
                .ok_or_else(|| format!("{name} must be a whole number, got '{v}'")),
        }
    };
    let page_size = number("pageSize")?.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(format!(
            "pageSize must be between 1 and {MAX_PAGE_SIZE}, got {page_size}"
        ));
    }
    let page = number("page")?.unwrap_or(1);
    if page == 0 {
        return Err("page is 1-based: page must be at least 1".to_string());
    }
    let last_id = number("lastId")?;
    let filter_text = query_param(query, "filter").unwrap_or_default();
    let clauses = filter::parse(&filter_text).map_err(|e| e.0)?;
    Ok(ListQuery {
        filter_key: filter_text,
        plan: Plan::new(res, clauses),
        page,
        page_size,
        last_id,
        fields: Fields::parse(query_param(query, "responseFields").as_deref()),
        serve_cap: None,
    })
}

fn list(org: &crate::state::Org, res: Resource, query: &str) -> Reply {
    let mut q = match parse_list_query(res, query) {
        Ok(q) => q,
        Err(m) => return bad_request(&m),
    };
    let pretty = {
        let faults = lock(&org.faults);
        q.serve_cap = faults.config.page_cap;
        faults.config.pretty_pages
    };
    let data = read(&org.data);
    let view = View::new(&org.world, &data, res);
    match list_page(&view, &q, &org.totals) {
        Ok(body) if pretty => Reply::json(StatusCode::OK, crate::bad::pretty(&body)),
        Ok(body) => Reply::json(StatusCode::OK, body),
        Err(e) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            &e.to_string(),
        ),
    }
}

fn token_error(status: StatusCode, code: &str, error: &str) -> Reply {
    Reply::value(status, &json!({"ErrorCode": code, "Error": error}))
}

/// Client id and secret from the form body, else HTTP Basic auth, else
/// the query string.
fn credentials(headers: &HeaderMap, body: &[u8], query: &str) -> Option<(String, String)> {
    let pair = |raw: &[u8]| {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(raw)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        get("client_id").zip(get("client_secret"))
    };
    pair(body)
        .or_else(|| basic_credentials(headers))
        .or_else(|| pair(query.as_bytes()))
}

fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = auth.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(b64.trim())?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `POST /oauth/client_credential/accesstoken?grant_type=client_credentials`.
pub(crate) async fn token(
    State(sim): State<Arc<Sim>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or("");
    let grant = query_param(query, "grant_type")
        .or_else(|| query_param(std::str::from_utf8(&body).unwrap_or(""), "grant_type"));
    if grant.as_deref() != Some("client_credentials") {
        let shown = grant.unwrap_or_default();
        return token_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("Unsupported grant type : {shown}"),
        )
        .into_response();
    }
    let Some((client_id, secret)) = credentials(&headers, &body, query) else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "ClientId is Invalid",
        )
        .into_response();
    };
    let Some(org_idx) = sim.by_client_id.get(&client_id).copied() else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "ClientId is Invalid",
        )
        .into_response();
    };
    let Some(org) = sim.orgs.get(org_idx) else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "ClientId is Invalid",
        )
        .into_response();
    };
    let reply = token_reply(&sim, org_idx, &secret, query).await;
    org.record(
        false,
        "POST",
        TOKEN_PATH,
        query,
        TOKEN_PATH,
        reply.status.as_u16(),
    );
    reply.into_response()
}

async fn token_reply(sim: &Sim, org_idx: usize, secret: &str, query: &str) -> Reply {
    let Some(org) = sim.orgs.get(org_idx) else {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "ClientId is Invalid",
        );
    };
    if secret != org.info.client_secret {
        return token_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Invalid client secret",
        );
    }
    let target = format!("{TOKEN_PATH}?{query}");
    let decision = lock(&org.faults).decide(&target, true);
    match decision {
        Some(Decision::Error5xx(s)) => return server_error(s),
        Some(Decision::RateLimited(secs)) => return quota_violation(secs),
        Some(Decision::Unauthorized) => {
            return token_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "ClientId is Invalid",
            );
        }
        Some(Decision::Malformed) => return malformed(1),
        Some(Decision::Timeout) => {
            sim.sleep(60_000).await;
            return server_error(504);
        }
        Some(Decision::Slow(ms)) => sim.sleep(ms).await,
        Some(Decision::Truncated | Decision::LostReply(_)) | None => {}
    }
    let (token, ttl) = sim.tokens.issue(org_idx, org.generation());
    if let Some(Decision::LostReply(status)) = decision {
        // Issued, and the answer lost.
        if status.is_none() {
            sim.sleep(60_000).await;
        }
        return server_error(status.unwrap_or(504));
    }
    let mut reply = Reply::value(
        StatusCode::OK,
        &json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": ttl.to_string(),
            "issued_at": crate::clock::now_ms().to_string(),
            "client_id": org.info.client_id,
            "status": "approved",
            "scope": "",
        }),
    );
    if decision == Some(Decision::Truncated) {
        let keep = reply.body.len() / 2;
        reply.body.truncate(keep);
    }
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_templates() {
        let (r, t) = Route::parse(&Method::GET, "/v1/patients");
        assert!(matches!(r, Route::List(Resource::Patients)) && t == "/v1/patients");
        let (r, t) = Route::parse(&Method::PUT, "/v1/appointments/123");
        assert!(matches!(r, Route::Update(Resource::Appointments, ref id) if id == "123"));
        assert_eq!(t, "/v1/appointments/{id}");
        let (r, t) = Route::parse(&Method::POST, "/v1/patients/5/calllogs");
        assert!(
            matches!(r, Route::PatientWrite("calllogs", _)) && t == "/v1/patients/{id}/calllogs"
        );
        assert!(matches!(
            Route::parse(&Method::DELETE, "/v1/patients/5").0,
            Route::MethodNotAllowed(_)
        ));
        assert!(matches!(
            Route::parse(&Method::GET, "/v1/nothing").0,
            Route::NotFound
        ));
        assert!(matches!(
            Route::parse(&Method::GET, "/v2/patients").0,
            Route::NotFound
        ));
    }

    #[test]
    fn list_query_validation() {
        let ok = |q: &str| parse_list_query(Resource::Patients, q);
        assert!(ok("pageSize=501").is_err_and(|m| m.contains("between 1 and 500")));
        assert!(ok("pageSize=0").is_err());
        assert!(ok("pageSize=abc").is_err_and(|m| m.contains("whole number")));
        assert!(ok("page=0").is_err());
        assert!(ok("lastId=-1").is_err());
        assert!(ok("filter=id%21%3D5").is_err_and(|m| m.contains("unknown operator")));
        let q = ok(
            "pageSize=500&lastId=999&filter=lastModified%3E%3D2026-01-01T00%3A00%3A00.000Z&responseFields=id",
        );
        assert!(q.is_ok_and(|q| q.page_size == 500
            && q.last_id == Some(999)
            && q.fields == Fields::IdOnly));
        assert!(ok("").is_ok_and(|q| q.page_size == DEFAULT_PAGE_SIZE && q.page == 1));
    }

    #[test]
    fn base64_decodes_basic_credentials() {
        assert_eq!(
            base64_decode("YWxhZGRpbjpvcGVuc2VzYW1l").as_deref(),
            Some(&b"aladdin:opensesame"[..])
        );
        assert_eq!(base64_decode("YQ==").as_deref(), Some(&b"a"[..]));
        assert!(base64_decode("a*b").is_none());
    }
}
