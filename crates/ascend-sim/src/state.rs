//! The simulator's shared state: organizations, tokens, counters.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::watch;

use crate::OrgInfo;
use crate::auth::TokenStore;
use crate::clock::{Ts, now_ms};
use crate::control::{Counters, RequestLogEntry, WriteRecord};
use crate::faults::{Bucket, FaultState};
use crate::store::{OrgData, TotalsCache};
use crate::world::World;

/// How many write calls an organization's journal keeps.
pub(crate) const WRITES_CAPACITY: usize = 100_000;

/// How many request-log entries an organization keeps.
pub(crate) const LOG_CAPACITY: usize = 200_000;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn read<T>(m: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn write<T>(m: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// Counters and the request log of one organization.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) counters: Counters,
    pub(crate) log: VecDeque<RequestLogEntry>,
}

/// One simulated organization.
#[derive(Debug)]
pub(crate) struct Org {
    pub(crate) info: OrgInfo,
    pub(crate) world: World,
    pub(crate) data: RwLock<OrgData>,
    pub(crate) totals: TotalsCache,
    pub(crate) faults: Mutex<FaultState>,
    pub(crate) rate: Mutex<Option<Bucket>>,
    pub(crate) stats: Mutex<Stats>,
    /// Every write call received, in order (the last [`WRITES_CAPACITY`]).
    pub(crate) writes: Mutex<VecDeque<WriteRecord>>,
    write_seq: AtomicU64,
    /// Revocation generation: tokens of older generations are invalid.
    generation: AtomicU64,
}

impl Org {
    pub(crate) fn new(info: OrgInfo, world: World, rps: Option<u32>) -> Self {
        let data = OrgData::new(&world);
        let faults = FaultState::new(world.seed);
        Self {
            info,
            world,
            data: RwLock::new(data),
            totals: TotalsCache::default(),
            faults: Mutex::new(faults),
            rate: Mutex::new(rps.map(Bucket::new)),
            stats: Mutex::new(Stats::default()),
            writes: Mutex::new(VecDeque::new()),
            write_seq: AtomicU64::new(0),
            generation: AtomicU64::new(0),
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub(crate) fn revoke_tokens(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts and logs one request. `api_call` requests count in `calls`.
    pub(crate) fn record(
        &self,
        api_call: bool,
        method: &str,
        path: &str,
        query: &str,
        template: &str,
        status: u16,
    ) {
        let mut stats = lock(&self.stats);
        let c = &mut stats.counters;
        if api_call {
            *c.calls.entry(format!("{method} {template}")).or_default() += 1;
        } else {
            c.token_requests += 1;
        }
        *c.responses_by_status.entry(status).or_default() += 1;
        if stats.log.len() >= LOG_CAPACITY {
            stats.log.pop_front();
        }
        stats.log.push_back(RequestLogEntry {
            method: method.to_string(),
            path: path.to_string(),
            query: query.to_string(),
            template: template.to_string(),
            status,
            time: Ts(now_ms()).to_string(),
        });
    }

    /// Appends a write call to the journal.
    pub(crate) fn journal(&self, mut record: WriteRecord) {
        record.seq = self.write_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let mut writes = lock(&self.writes);
        if writes.len() >= WRITES_CAPACITY {
            writes.pop_front();
        }
        writes.push_back(record);
    }

    pub(crate) fn count_write(&self, kind: &str) {
        *lock(&self.stats)
            .counters
            .writes
            .entry(kind.to_string())
            .or_default() += 1;
    }
}

/// The whole simulator.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) orgs: Vec<Org>,
    pub(crate) by_org_id: HashMap<String, usize>,
    pub(crate) by_client_id: HashMap<String, usize>,
    pub(crate) tokens: TokenStore,
    /// Flips to `true` when the simulator shuts down (ends hanging calls).
    pub(crate) shutdown: watch::Receiver<bool>,
}

impl Sim {
    pub(crate) fn org(&self, org_id: &str) -> Option<&Org> {
        self.by_org_id.get(org_id).and_then(|i| self.orgs.get(*i))
    }

    /// Sleeps `ms`, or less if the simulator shuts down.
    pub(crate) async fn sleep(&self, ms: u64) {
        let mut rx = self.shutdown.clone();
        if *rx.borrow() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_millis(ms)) => {}
            _ = rx.changed() => {}
        }
    }
}

/// An answer before it becomes an HTTP response (so faults can cut it).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Vec<u8>,
    pub(crate) content_type: &'static str,
    pub(crate) retry_after: Option<u64>,
}

impl Reply {
    pub(crate) fn json(status: StatusCode, body: Vec<u8>) -> Self {
        Self {
            status,
            body,
            content_type: "application/json",
            retry_after: None,
        }
    }

    pub(crate) fn value(status: StatusCode, v: &serde_json::Value) -> Self {
        Self::json(status, serde_json::to_vec(v).unwrap_or_default())
    }

    /// The API's error envelope: `{"data":null,"warnings":[],"errors":[{"code","message"}]}`.
    pub(crate) fn error(status: StatusCode, code: &str, message: &str) -> Self {
        Self::value(
            status,
            &json!({"data": null, "warnings": [], "errors": [{"code": code, "message": message}]}),
        )
    }

    /// An Apigee fault body.
    pub(crate) fn fault(status: StatusCode, faultstring: &str, errorcode: &str) -> Self {
        Self::value(
            status,
            &json!({"fault": {"faultstring": faultstring, "detail": {"errorcode": errorcode}}}),
        )
    }

    pub(crate) fn invalid_token() -> Self {
        Self::fault(
            StatusCode::UNAUTHORIZED,
            "Invalid access token",
            "oauth.v2.InvalidAccessToken",
        )
    }

    pub(crate) fn expired_token() -> Self {
        Self::fault(
            StatusCode::UNAUTHORIZED,
            "Access Token expired",
            "keymanagement.service.access_token_expired",
        )
    }

    pub(crate) fn no_content() -> Self {
        Self {
            status: StatusCode::NO_CONTENT,
            body: Vec::new(),
            content_type: "application/json",
            retry_after: None,
        }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body).into_response();
        let headers = resp.headers_mut();
        if self.status != StatusCode::NO_CONTENT {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
