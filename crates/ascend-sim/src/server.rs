//! Building the simulator, its router, and the control API handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::watch;

use crate::api::{API_PREFIX, TOKEN_PATH, api, token};
use crate::auth::{TokenStore, base62};
use crate::control::{
    BadRecordsRequest, Counters, FaultConfig, MutateRequest, RateLimit, RepairRequest,
    RequestLogEntry, TokenTtl, WriteRecord,
};
use crate::faults::Bucket;
use crate::hash::hash3;
use crate::resource::Resource;
use crate::state::{Org, Reply, Sim, lock, read, write};
use crate::store::{View, snapshot};
use crate::world::World;
use crate::{OrgInfo, SimConfig};

const ORG_STREAM: u64 = 0x0126;

/// The credentials and URLs of organization `i`, deterministic from the seed.
pub(crate) fn org_info(seed: u64, i: u64, base_url: &str) -> OrgInfo {
    let (a, b) = (hash3(seed, ORG_STREAM, i), hash3(seed, ORG_STREAM + 1, i));
    OrgInfo {
        organization_id: format!("{a:016x}{:08x}", b as u32),
        client_id: base62(seed, 0xC1_1E00 + i, 32),
        client_secret: base62(seed, 0x5E_C000 + i, 16),
        location_ids: Vec::new(),
        api_base: format!("{base_url}{API_PREFIX}"),
        token_url: format!("{base_url}{TOKEN_PATH}"),
    }
}

/// Builds the whole state, every world placed at `anchor_day` (days since
/// 1970-01-01). Cheap: nothing per record is generated.
pub(crate) fn build(
    config: &SimConfig,
    anchor_day: i64,
    base_url: &str,
    shutdown: watch::Receiver<bool>,
) -> Sim {
    let mut orgs = Vec::with_capacity(config.orgs);
    for i in 0..config.orgs as u64 {
        let mut info = org_info(config.seed, i, base_url);
        let world = World::with_locations(
            config.seed,
            i,
            config.size,
            config.locations,
            anchor_day,
            info.api_base.clone(),
        );
        info.location_ids = (0..world.count(Resource::Locations))
            .map(|l| world.id(Resource::Locations, l).to_string())
            .collect();
        orgs.push(Org::new(info, world, config.rate_limit_rps));
    }
    let by_org_id = orgs
        .iter()
        .enumerate()
        .map(|(i, o)| (o.info.organization_id.clone(), i))
        .collect();
    let by_client_id = orgs
        .iter()
        .enumerate()
        .map(|(i, o)| (o.info.client_id.clone(), i))
        .collect();
    Sim {
        orgs,
        by_org_id,
        by_client_id,
        tokens: TokenStore::new(config.seed, config.token_ttl),
        shutdown,
    }
}

/// Every route of the simulator.
pub(crate) fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route(TOKEN_PATH, post(token))
        .route(&format!("{API_PREFIX}/{{*rest}}"), any(api))
        .route("/_sim/orgs", get(list_orgs))
        .route("/_sim/orgs/{org}/mutate", post(mutate))
        .route(
            "/_sim/orgs/{org}/snapshot/{resource}",
            get(snapshot_handler),
        )
        .route("/_sim/orgs/{org}/faults", put(set_faults).get(get_faults))
        .route(
            "/_sim/orgs/{org}/bad-records",
            post(make_bad_records).get(list_bad_records),
        )
        .route(
            "/_sim/orgs/{org}/bad-records/repair",
            post(repair_bad_records),
        )
        .route("/_sim/orgs/{org}/revoke-tokens", post(revoke_tokens))
        .route("/_sim/orgs/{org}/tokens", get(issued_tokens))
        .route(
            "/_sim/orgs/{org}/rate-limit",
            put(set_rate_limit).get(get_rate_limit),
        )
        .route("/_sim/orgs/{org}/counters", get(org_counters))
        .route("/_sim/orgs/{org}/requests", get(requests))
        .route("/_sim/orgs/{org}/writes", get(writes).delete(clear_writes))
        .route("/_sim/token-ttl", put(set_token_ttl).get(get_token_ttl))
        .route("/_sim/counters", get(counters))
        .route("/_sim/counters/reset", post(reset_counters))
        .fallback(fallback)
        .with_state(sim)
}

async fn fallback(uri: Uri) -> Response {
    Reply::error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        &format!("no resource at {}", uri.path()),
    )
    .into_response()
}

fn control_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn unknown_org(org: &str) -> Response {
    control_error(StatusCode::NOT_FOUND, &format!("no organization '{org}'"))
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(control_error(
            StatusCode::BAD_REQUEST,
            &format!("invalid body: {e}"),
        ))
    })
}

fn org_index(sim: &Sim, org: &str) -> Result<usize, Box<Response>> {
    sim.by_org_id
        .get(org)
        .copied()
        .ok_or_else(|| Box::new(unknown_org(org)))
}

async fn list_orgs(State(sim): State<Arc<Sim>>) -> Response {
    let infos: Vec<&OrgInfo> = sim.orgs.iter().map(|o| &o.info).collect();
    axum::Json(infos).into_response()
}

async fn mutate(State(sim): State<Arc<Sim>>, Path(org): Path<String>, body: Bytes) -> Response {
    let idx = match org_index(&sim, &org) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let req: MutateRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let sim2 = Arc::clone(&sim);
    let outcome = tokio::task::spawn_blocking(move || {
        let org = sim2
            .orgs
            .get(idx)
            .ok_or_else(|| "no such organization".to_string())?;
        let mut data = write(&org.data);
        crate::mutate::mutate(&org.world, &mut data, &req)
    })
    .await;
    match outcome {
        Ok(Ok(result)) => axum::Json(result).into_response(),
        Ok(Err(message)) => control_error(StatusCode::BAD_REQUEST, &message),
        Err(e) => control_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn make_bad_records(
    State(sim): State<Arc<Sim>>,
    Path(org): Path<String>,
    body: Bytes,
) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let req: BadRecordsRequest = match parse_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let mut data = write(&o.data);
    match crate::bad::make_bad(&o.world, &mut data, &req) {
        Ok(result) => axum::Json(result).into_response(),
        Err(message) => control_error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn list_bad_records(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let data = read(&o.data);
    axum::Json(crate::bad::list(&data)).into_response()
}

async fn repair_bad_records(
    State(sim): State<Arc<Sim>>,
    Path(org): Path<String>,
    body: Bytes,
) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let req: RepairRequest = if body.is_empty() {
        RepairRequest::default()
    } else {
        match parse_body(&body) {
            Ok(r) => r,
            Err(r) => return *r,
        }
    };
    let mut data = write(&o.data);
    match crate::bad::repair(&o.world, &mut data, &req) {
        Ok((repaired, last_modified)) => {
            axum::Json(json!({"repaired": repaired, "last_modified": last_modified}))
                .into_response()
        }
        Err(message) => control_error(StatusCode::BAD_REQUEST, &message),
    }
}

#[derive(Deserialize)]
struct SnapshotParams {
    #[serde(default)]
    full: Option<String>,
}

async fn snapshot_handler(
    State(sim): State<Arc<Sim>>,
    Path((org, resource)): Path<(String, String)>,
    Query(params): Query<SnapshotParams>,
) -> Response {
    let idx = match org_index(&sim, &org) {
        Ok(i) => i,
        Err(r) => return *r,
    };
    let Some(res) = Resource::from_path(&resource) else {
        return control_error(StatusCode::NOT_FOUND, &format!("no resource '{resource}'"));
    };
    let full = params
        .full
        .as_deref()
        .is_some_and(|f| f == "true" || f == "1");
    let sim2 = Arc::clone(&sim);
    let outcome = tokio::task::spawn_blocking(move || {
        let org = sim2.orgs.get(idx)?;
        let data = read(&org.data);
        Some(snapshot(&View::new(&org.world, &data, res), full))
    })
    .await;
    match outcome {
        Ok(Some(Ok(body))) => Reply::json(StatusCode::OK, body).into_response(),
        Ok(Some(Err(e))) => control_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        Ok(None) => unknown_org(&org),
        Err(e) => control_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

async fn set_faults(State(sim): State<Arc<Sim>>, Path(org): Path<String>, body: Bytes) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let config: FaultConfig = match parse_body(&body) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut f = lock(&o.faults);
    match f.set(o.world.seed, config) {
        Ok(()) => axum::Json(&f.config).into_response(),
        Err(m) => control_error(StatusCode::BAD_REQUEST, &m),
    }
}

async fn get_faults(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let config = lock(&o.faults).config.clone();
    axum::Json(config).into_response()
}

async fn revoke_tokens(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    o.revoke_tokens();
    axum::Json(json!({"revoked": true})).into_response()
}

async fn issued_tokens(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(index) = sim.by_org_id.get(&org).copied() else {
        return unknown_org(&org);
    };
    axum::Json(json!({"tokens": sim.tokens.issued_to(index)})).into_response()
}

async fn set_rate_limit(
    State(sim): State<Arc<Sim>>,
    Path(org): Path<String>,
    body: Bytes,
) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let limit: RateLimit = match parse_body(&body) {
        Ok(l) => l,
        Err(r) => return *r,
    };
    if limit.rps == Some(0) {
        return control_error(
            StatusCode::BAD_REQUEST,
            "rps must be at least 1 (null for no limit)",
        );
    }
    *lock(&o.rate) = limit.rps.map(Bucket::new);
    axum::Json(limit).into_response()
}

async fn get_rate_limit(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let rps = lock(&o.rate).as_ref().map(|b| b.rps);
    axum::Json(RateLimit { rps }).into_response()
}

async fn set_token_ttl(State(sim): State<Arc<Sim>>, body: Bytes) -> Response {
    let ttl: TokenTtl = match parse_body(&body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    sim.tokens.set_ttl_secs(ttl.seconds);
    axum::Json(ttl).into_response()
}

async fn get_token_ttl(State(sim): State<Arc<Sim>>) -> Response {
    axum::Json(TokenTtl {
        seconds: sim.tokens.ttl_secs(),
    })
    .into_response()
}

async fn counters(State(sim): State<Arc<Sim>>) -> Response {
    let all: BTreeMap<String, Counters> = sim
        .orgs
        .iter()
        .map(|o| {
            (
                o.info.organization_id.clone(),
                lock(&o.stats).counters.clone(),
            )
        })
        .collect();
    axum::Json(all).into_response()
}

async fn org_counters(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let c = lock(&o.stats).counters.clone();
    axum::Json(c).into_response()
}

async fn reset_counters(State(sim): State<Arc<Sim>>) -> Response {
    for o in &sim.orgs {
        let mut s = lock(&o.stats);
        s.counters = Counters::default();
        s.log.clear();
    }
    axum::Json(json!({"reset": true})).into_response()
}

async fn writes(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let writes: Vec<WriteRecord> = lock(&o.writes).iter().cloned().collect();
    axum::Json(writes).into_response()
}

async fn clear_writes(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    lock(&o.writes).clear();
    axum::Json(json!({"cleared": true})).into_response()
}

async fn requests(State(sim): State<Arc<Sim>>, Path(org): Path<String>) -> Response {
    let Some(o) = sim.org(&org) else {
        return unknown_org(&org);
    };
    let log: Vec<RequestLogEntry> = lock(&o.stats).log.iter().cloned().collect();
    axum::Json(log).into_response()
}
