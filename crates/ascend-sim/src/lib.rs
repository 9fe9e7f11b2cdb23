//! A faithful, adversarial HTTP simulator of the Dentrix Ascend Public API.
//!
//! It is the test double of every test and of the demo: it serves the
//! contract in `shared/reference/ascend-api.md` (OAuth client-credentials
//! tokens, the `/v1` resources with offset and keyset paging, filters,
//! `responseFields`, write-back) for any number of organizations, and adds a
//! control API under `/_sim/` to change data, inject faults, throttle, and
//! read counters and a request log.
//!
//! # The model
//!
//! Data is generated lazily and deterministically: record `i` of resource
//! `r` of an organization is a pure function of `(seed, org, r, i)` and the
//! day the world is placed at (modules `world` and `records`), ids ascend
//! with `i`, and nothing per generated record is stored. That day is the
//! simulator clock's today unless [`SimConfig::today`] fixes it: the last
//! 90 days hold the appointments a practice has just seen, the next year
//! its schedule, and no `lastModified` lies in the simulator's future. A large organization (about a million records) starts
//! instantly and costs kilobytes. Changes (from the control API's mutate, or
//! from writes through the API) live in a small overlay per resource
//! (created, updated, deleted ids), merged in id order when reading (module
//! `store`). Queries are planned so that a keyset page costs O(page), and
//! totals that need a scan are cached per filter and data version.
//!
//! The real API's sharp edges are present on purpose: ids of 3-4, 6 and 13
//! digits in one resource (including both `999` and `1000`), hundreds of
//! records sharing one `lastModified` millisecond, unknown extra fields,
//! unicode names, `null` where a value is usual, `expires_in` as a string.
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `POST /oauth/client_credential/accesstoken?grant_type=client_credentials` | a token (form body `client_id`, `client_secret`, or Basic auth) |
//! | `GET /ascend-gateway/api/v1/<resource>` | a page: `page`, `pageSize` (≤ 500, default 100), `lastId`, `filter`, `responseFields` |
//! | `GET /ascend-gateway/api/v1/<resource>/{id}` | `{"data":{...}}` or 404 |
//! | `POST`/`PUT /v1/patients[/{id}]`, `POST`/`PUT`/`DELETE /v1/appointments[/{id}]` | writes |
//! | `POST`/`GET /v1/patients/{id}/notes\|communications\|calllogs\|documents` | writes to a patient (assumed paths) |
//! | `GET /_sim/orgs` | every [`OrgInfo`] |
//! | `POST /_sim/orgs/{org_id}/mutate` | [`MutateRequest`] → [`MutateResult`] |
//! | `GET /_sim/orgs/{org_id}/snapshot/{resource}[?full=true]` | `[`[`SnapshotEntry`]`]` in id order |
//! | `PUT`/`GET /_sim/orgs/{org_id}/faults` | [`FaultConfig`] (`pretty_pages`: list pages pretty-printed) |
//! | `POST /_sim/orgs/{org_id}/bad-records` | [`BadRecordsRequest`] → [`BadRecordsResult`]: records served bad ([`BadRecordKind`]) |
//! | `GET /_sim/orgs/{org_id}/bad-records` | `[`[`BadRecord`]`]` |
//! | `POST /_sim/orgs/{org_id}/bad-records/repair` | [`RepairRequest`] → `{"repaired":[`[`BadRecord`]`],"last_modified":...}` |
//! | `POST /_sim/orgs/{org_id}/revoke-tokens` | every token of the org is now 401 |
//! | `GET /_sim/orgs/{org_id}/tokens` | `{"tokens": [...]}`: every access token issued to the org that the simulator still remembers (for leak tests) |
//! | `PUT`/`GET /_sim/orgs/{org_id}/rate-limit` | [`RateLimit`] |
//! | `PUT`/`GET /_sim/token-ttl` | [`TokenTtl`], for tokens issued from now on |
//! | `GET /_sim/counters` | organization id → [`Counters`] |
//! | `GET /_sim/orgs/{org_id}/counters` | [`Counters`] |
//! | `POST /_sim/counters/reset` | clears counters and request logs |
//! | `GET /_sim/orgs/{org_id}/requests` | `[`[`RequestLogEntry`]`]`, the last 200,000 |
//!
//! ```no_run
//! # async fn demo() -> Result<(), ascend_sim::SimError> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let sim = ascend_sim::spawn(ascend_sim::SimConfig::default(), listener).await?;
//! let org = &sim.orgs()[0];
//! println!("{}", org.api_base); // http://127.0.0.1:PORT/ascend-gateway/api
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod api;
mod auth;
mod bad;
mod clock;
mod control;
mod faults;
mod filter;
mod hash;
mod ids;
mod mutate;
mod records;
mod resource;
mod server;
mod state;
mod store;
mod tables;
mod textbuf;
mod world;
mod writes;

pub use control::{
    BadRecord, BadRecordKind, BadRecordsRequest, BadRecordsResult, Counters, FaultConfig,
    FaultKind, MutateRequest, MutateResult, RateLimit, RepairRequest, RequestLogEntry,
    ResourceChanges, ScriptedFault, SnapshotEntry, TokenTtl, WriteRecord,
};

/// The path names of every resource served under `/v1/`, which are also
/// the resource names of the control API.
pub const RESOURCES: [&str; 11] = [
    "locations",
    "providers",
    "operatories",
    "patients",
    "appointments",
    "txcases",
    "visits",
    "patientprocedures",
    "patientinsuranceplans",
    "globalinsurancecarriers",
    "transactions",
];

/// How much data each organization holds: about 250 records (tiny: fleets
/// of many practices in tests), 5,000 (small), 100,000 (medium) or
/// 1,000,000 (large), in realistic ratios (large: ~60k patients, 300k
/// appointments, 450k procedures, 150k transactions).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Tiny,
    Small,
    Medium,
    Large,
}

/// A size name other than `small`, `medium` or `large`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown size '{0}': expected tiny, small, medium or large")]
pub struct ParseSizeError(pub String);

impl FromStr for Size {
    type Err = ParseSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tiny" => Ok(Size::Tiny),
            "small" => Ok(Size::Small),
            "medium" => Ok(Size::Medium),
            "large" => Ok(Size::Large),
            _ => Err(ParseSizeError(s.to_string())),
        }
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Size::Tiny => "tiny",
            Size::Small => "small",
            Size::Medium => "medium",
            Size::Large => "large",
        })
    }
}

/// How to build a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Number of organizations.
    pub orgs: usize,
    pub size: Size,
    /// Same seed, same data, ids and credentials, forever.
    pub seed: u64,
    /// Lifetime of issued tokens (changeable at run time: `PUT /_sim/token-ttl`).
    pub token_ttl: Duration,
    /// Requests per second per organization; `None` = unlimited.
    pub rate_limit_rps: Option<u32>,
    /// The day the generated world is placed at (UTC): appointments of the
    /// last 90 days were seen, the next year's are scheduled, and no
    /// `lastModified` is later than its midnight. `None`: the simulator
    /// clock's today when it starts, so a sync planned now finds recent
    /// data; fix it for data that stays the same from day to day (same
    /// seed, same day, same data). It may not lie after the clock's today.
    pub today: Option<time::Date>,
    /// The number of locations of every organization (1 to
    /// [`MAX_LOCATIONS`]; operatories scale with it). `None`: drawn from
    /// the size (1 to 4), as for any seed before this setting existed, so
    /// the same seed keeps its data. Record volumes do not depend on it:
    /// more locations share the same patients, appointments and the rest.
    pub locations: Option<u32>,
}

/// The most locations [`SimConfig::locations`] may give an organization.
pub const MAX_LOCATIONS: u32 = 64;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            orgs: 1,
            size: Size::Small,
            seed: 1,
            token_ttl: Duration::from_secs(3600),
            rate_limit_rps: None,
            today: None,
            locations: None,
        }
    }
}

/// What a client needs to connect to one simulated organization (the CLI
/// prints one JSON line of this per organization).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct OrgInfo {
    /// 24 lowercase hex digits, sent as `Organization-ID`.
    pub organization_id: String,
    pub client_id: String,
    pub client_secret: String,
    /// The organization's practice locations (ids as decimal strings).
    pub location_ids: Vec<String>,
    /// `http://HOST:PORT/ascend-gateway/api`; paths below it are `/v1/...`.
    pub api_base: String,
    /// `http://HOST:PORT/oauth/client_credential/accesstoken`.
    pub token_url: String,
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("the simulator's listener failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("invalid simulator configuration: {0}")]
    Config(String),
}

/// The day the world is placed at: the configured one, checked, or the
/// clock's today.
fn anchor_day(config: &SimConfig) -> Result<(i64, time::Date), SimError> {
    let clock_today = clock::now_ms().div_euclid(clock::MS_PER_DAY);
    let day = config.today.map_or(clock_today, clock::days_of_date);
    let show = |days: i64| clock::Date(days).to_string();
    if day > clock_today {
        return Err(SimError::Config(format!(
            "today {} lies after the clock's today {}: generated records would have been \
             modified in the future",
            show(day),
            show(clock_today)
        )));
    }
    if day < world::EARLIEST_ANCHOR_DAY {
        return Err(SimError::Config(format!(
            "today {} is too early: the world's seven years of history begin after its legacy \
             import; the earliest today is {}",
            show(day),
            show(world::EARLIEST_ANCHOR_DAY)
        )));
    }
    let date = clock::date_of_days(day)
        .ok_or_else(|| SimError::Config(format!("today {} is out of range", show(day))))?;
    Ok((day, date))
}

/// A simulator serving on a spawned task. Dropping it stops the server too
/// (without waiting); [`RunningSim::shutdown`] stops it and waits.
#[derive(Debug)]
pub struct RunningSim {
    addr: SocketAddr,
    base_url: String,
    orgs: Vec<OrgInfo>,
    today: time::Date,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl RunningSim {
    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The organizations served, in order.
    pub fn orgs(&self) -> &[OrgInfo] {
        &self.orgs
    }

    /// The day the world is placed at ([`SimConfig::today`], or the
    /// clock's today when the simulator started).
    pub fn today(&self) -> time::Date {
        self.today
    }

    /// `http://127.0.0.1:PORT` (the loopback address when the listener is
    /// bound to an unspecified address).
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Stops serving: ends hanging (timeout-fault) calls, lets in-flight
    /// calls finish for up to five seconds, then aborts the rest.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Builds the simulator's state and serves it on `listener` from a spawned
/// task. Returns at once: nothing per record is generated up front.
pub async fn spawn(
    config: SimConfig,
    listener: tokio::net::TcpListener,
) -> Result<RunningSim, SimError> {
    if config.orgs == 0 {
        return Err(SimError::Config("orgs must be at least 1".into()));
    }
    if config.orgs > 10_000 {
        return Err(SimError::Config("orgs must be at most 10000".into()));
    }
    if let Some(n) = config.locations
        && !(1..=MAX_LOCATIONS).contains(&n)
    {
        return Err(SimError::Config(format!(
            "locations must be 1 to {MAX_LOCATIONS} per organization, not {n}"
        )));
    }
    let (anchor_day, today) = anchor_day(&config)?;
    let addr = listener.local_addr()?;
    let public = if addr.ip().is_unspecified() {
        SocketAddr::new(
            match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            },
            addr.port(),
        )
    } else {
        addr
    };
    let base_url = format!("http://{public}");
    let (stop, stopped) = watch::channel(false);
    let sim = Arc::new(server::build(
        &config,
        anchor_day,
        &base_url,
        stopped.clone(),
    ));
    let orgs = sim.orgs.iter().map(|o| o.info.clone()).collect();
    let app = server::router(sim);
    let mut signal = stopped;
    let task = tokio::spawn(async move {
        let shutdown = async move {
            while !*signal.borrow() {
                if signal.changed().await.is_err() {
                    break;
                }
            }
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(message = "Simulator server stopped with an error.", %error);
        }
    });
    Ok(RunningSim {
        addr,
        base_url,
        orgs,
        today,
        stop,
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_parses_and_displays() {
        for s in [Size::Tiny, Size::Small, Size::Medium, Size::Large] {
            assert_eq!(s.to_string().parse::<Size>(), Ok(s));
        }
        assert_eq!("LARGE".parse::<Size>(), Ok(Size::Large));
        assert!("huge".parse::<Size>().is_err());
    }

    #[test]
    fn resource_names_match_the_routes() {
        let names: Vec<&str> = resource::Resource::ALL.iter().map(|r| r.path()).collect();
        assert_eq!(names, RESOURCES);
    }

    #[test]
    fn org_credentials_are_deterministic_and_distinct() {
        let a = server::org_info(5, 0, "http://h");
        assert_eq!(a, server::org_info(5, 0, "http://h"));
        assert_ne!(
            a.organization_id,
            server::org_info(5, 1, "http://h").organization_id
        );
        assert_ne!(a.client_id, server::org_info(6, 0, "http://h").client_id);
        assert_eq!(a.organization_id.len(), 24);
        assert!(
            a.organization_id
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        );
        assert_eq!(a.api_base, "http://h/ascend-gateway/api");
        assert_eq!(a.token_url, "http://h/oauth/client_credential/accesstoken");
    }
}
