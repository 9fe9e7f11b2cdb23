//! Helpers for the system tests: a simulator on a free loopback port with a
//! typed handle on its control API, and clients wired to it the way
//! production wires them to Ascend (only the loopback opt-in differs).

pub mod admin_app;

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{Context, Result};
use ascend_client::{
    AscendClient, ClientConfig, Connection, InsecureLoopback, OrgClient, Resource,
};
use ascend_sim::{
    BadRecord, BadRecordsRequest, BadRecordsResult, Counters, FaultConfig, MutateRequest,
    MutateResult, OrgInfo, RateLimit, RepairRequest, RequestLogEntry, RunningSim, SimConfig,
    SnapshotEntry, TokenTtl,
};
use secrecy::SecretString;
use serde::de::DeserializeOwned;
use url::Url;

/// A running simulator and a plain HTTP client for its control API.
pub struct Sim {
    running: RunningSim,
    http: reqwest::Client,
}

impl Sim {
    pub async fn start(config: SimConfig) -> Result<Sim> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let running = ascend_sim::spawn(config, listener).await?;
        Ok(Sim {
            running,
            http: reqwest::Client::new(),
        })
    }

    pub fn org(&self, index: usize) -> &OrgInfo {
        &self.running.orgs()[index]
    }

    /// The connection a practice of organization `index` would be given.
    pub fn connection(&self, index: usize) -> Result<Connection> {
        let info = self.org(index);
        Ok(Connection {
            api_base: Url::parse(&info.api_base)?,
            token_url: Url::parse(&info.token_url)?,
            organization_id: info.organization_id.parse()?,
            client_id: info.client_id.clone(),
            client_secret: SecretString::from(info.client_secret.clone()),
        })
    }

    fn control(&self, path: &str) -> String {
        format!("{}/_sim{path}", self.running.base_url())
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request.timeout(Duration::from_secs(120)).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "simulator control answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).context("simulator control answer")
    }

    pub async fn mutate(&self, org: usize, request: &MutateRequest) -> Result<MutateResult> {
        let url = self.control(&format!("/orgs/{}/mutate", self.org(org).organization_id));
        self.send(self.http.post(url).json(request)).await
    }

    /// Every live record of `resource` (full records when `full`).
    pub async fn snapshot(
        &self,
        org: usize,
        resource: Resource,
        full: bool,
    ) -> Result<Vec<SnapshotEntry>> {
        let name = resource.path().trim_start_matches("/v1/");
        let url = self.control(&format!(
            "/orgs/{}/snapshot/{name}?full={full}",
            self.org(org).organization_id
        ));
        self.send(self.http.get(url)).await
    }

    pub async fn set_faults(&self, org: usize, faults: &FaultConfig) -> Result<()> {
        let url = self.control(&format!("/orgs/{}/faults", self.org(org).organization_id));
        let _: serde_json::Value = self.send(self.http.put(url).json(faults)).await?;
        Ok(())
    }

    /// Serves records of a resource bad (see [`ascend_sim::BadRecordKind`]).
    pub async fn bad_records(
        &self,
        org: usize,
        request: &BadRecordsRequest,
    ) -> Result<BadRecordsResult> {
        let url = self.control(&format!(
            "/orgs/{}/bad-records",
            self.org(org).organization_id
        ));
        self.send(self.http.post(url).json(request)).await
    }

    /// Every record served bad now.
    pub async fn list_bad_records(&self, org: usize) -> Result<Vec<BadRecord>> {
        let url = self.control(&format!(
            "/orgs/{}/bad-records",
            self.org(org).organization_id
        ));
        self.send(self.http.get(url)).await
    }

    /// Serves bad records whole again (stamped now); returns those repaired.
    pub async fn repair_bad_records(
        &self,
        org: usize,
        request: &RepairRequest,
    ) -> Result<Vec<BadRecord>> {
        #[derive(serde::Deserialize)]
        struct Repaired {
            repaired: Vec<BadRecord>,
        }
        let url = self.control(&format!(
            "/orgs/{}/bad-records/repair",
            self.org(org).organization_id
        ));
        let repaired: Repaired = self.send(self.http.post(url).json(request)).await?;
        Ok(repaired.repaired)
    }

    pub async fn set_rate_limit(&self, org: usize, rps: Option<u32>) -> Result<()> {
        let url = self.control(&format!(
            "/orgs/{}/rate-limit",
            self.org(org).organization_id
        ));
        let _: serde_json::Value = self
            .send(self.http.put(url).json(&RateLimit { rps }))
            .await?;
        Ok(())
    }

    pub async fn set_token_ttl(&self, seconds: u64) -> Result<()> {
        let url = self.control("/token-ttl");
        let _: serde_json::Value = self
            .send(self.http.put(url).json(&TokenTtl { seconds }))
            .await?;
        Ok(())
    }

    pub async fn revoke_tokens(&self, org: usize) -> Result<()> {
        let url = self.control(&format!(
            "/orgs/{}/revoke-tokens",
            self.org(org).organization_id
        ));
        let _: serde_json::Value = self.send(self.http.post(url)).await?;
        Ok(())
    }

    /// Every access token the simulator issued to `org` (for leak tests).
    pub async fn issued_tokens(&self, org: usize) -> Result<Vec<String>> {
        #[derive(serde::Deserialize)]
        struct Issued {
            tokens: Vec<String>,
        }
        let url = self.control(&format!("/orgs/{}/tokens", self.org(org).organization_id));
        let issued: Issued = self.send(self.http.get(url)).await?;
        Ok(issued.tokens)
    }

    pub async fn counters(&self, org: usize) -> Result<Counters> {
        let url = self.control(&format!("/orgs/{}/counters", self.org(org).organization_id));
        self.send(self.http.get(url)).await
    }

    pub async fn requests(&self, org: usize) -> Result<Vec<RequestLogEntry>> {
        let url = self.control(&format!("/orgs/{}/requests", self.org(org).organization_id));
        self.send(self.http.get(url)).await
    }

    /// Every write call the simulator received for `org`, in order.
    pub async fn writes(&self, org: usize) -> Result<Vec<ascend_sim::WriteRecord>> {
        let url = self.control(&format!("/orgs/{}/writes", self.org(org).organization_id));
        self.send(self.http.get(url)).await
    }

    pub async fn reset_counters(&self) -> Result<()> {
        let _: serde_json::Value = self
            .send(self.http.post(self.control("/counters/reset")))
            .await?;
        Ok(())
    }

    /// A call to the public API as a practice's own software would make
    /// it (a token, then `method path` with `body`): how a test moves an
    /// appointment to another location. Returns the answer's JSON.
    pub async fn api(
        &self,
        org: usize,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<serde_json::Value> {
        let info = self.org(org);
        let token: serde_json::Value = self
            .send(
                self.http
                    .post(format!("{}?grant_type=client_credentials", info.token_url))
                    .basic_auth(&info.client_id, Some(&info.client_secret)),
            )
            .await?;
        let token = token["access_token"]
            .as_str()
            .context("no access_token in the token answer")?;
        let mut request = self
            .http
            .request(method, format!("{}{path}", info.api_base))
            .bearer_auth(token)
            .header("Organization-ID", &info.organization_id);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.timeout(Duration::from_secs(30)).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        anyhow::ensure!(
            status.is_success(),
            "the simulator's API answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        if bytes.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).context("the simulator's API answer")
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// A client configured as production would be, except that it may speak
/// plain http to the loopback simulator, with short backoff so tests are quick.
pub fn test_client(requests_per_second: u32) -> Result<AscendClient> {
    Ok(AscendClient::new(test_client_config(requests_per_second)?)?)
}

/// The configuration [`test_client`] uses, to adjust before building one.
/// A client drawing from the fleet's budget in `store`, as every worker
/// process of a deployment does, at `requests_per_second` per organization.
pub fn fleet_client(store: &store::Store, requests_per_second: f64) -> Result<AscendClient> {
    let budget = worker::budget::FleetBudget::new(
        store.clone(),
        sync_core::budget::Policy::new(requests_per_second),
    );
    Ok(AscendClient::with_budget(
        test_client_config(1000)?,
        std::sync::Arc::new(budget),
    )?)
}

pub fn test_client_config(requests_per_second: u32) -> Result<ClientConfig> {
    let mut config = ClientConfig::default();
    config.requests_per_second = NonZeroU32::new(requests_per_second).context("rps must be > 0")?;
    config.burst = config.requests_per_second;
    config.base_delay = Duration::from_millis(20);
    config.max_delay = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(10);
    config.insecure_loopback = InsecureLoopback::allow_for_local_testing();
    Ok(config)
}

/// The host policy of a deployment that talks to the simulator: the
/// vendor's hosts and the loopback address the simulator listens on.
pub fn sim_hosts() -> model::HostPolicy {
    model::HostPolicy::allowing_test_host(SIM_HOST).unwrap_or_default()
}

/// The actor the CLI records for the user running the tests:
/// `cli:{login}`, the login as `id -un` reports it.
pub fn cli_operator() -> Result<String> {
    let out = std::process::Command::new("id").arg("-un").output()?;
    anyhow::ensure!(out.status.success(), "`id -un` failed");
    Ok(format!("cli:{}", String::from_utf8(out.stdout)?.trim()))
}

/// The host the simulator listens on, allowed explicitly by the tests
/// (`--allow-test-host`, `ASCEND_SYNC_ALLOW_TEST_HOST`).
pub const SIM_HOST: &str = "127.0.0.1";

/// Connects organization `index` of `sim` through `client`.
pub fn connect(client: &AscendClient, sim: &Sim, index: usize) -> Result<OrgClient> {
    Ok(client.connect(sim.connection(index)?)?)
}

/// Where a test lands rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Postgres,
    Sqlite,
}

/// A migrated store in a database of its own, removed when dropped
/// (Postgres: a fresh database on `DATABASE_URL`'s server; SQLite: a file in
/// a temporary folder).
pub struct TestStore {
    pub store: store::Store,
    admin_url: Option<String>,
    url: String,
    _dir: TempDir,
}

impl TestStore {
    pub async fn new(db: Db) -> Result<TestStore> {
        let dir = TempDir::new("store")?;
        let (admin_url, url) = match db {
            Db::Postgres => {
                let admin = std::env::var("DATABASE_URL")
                    .context("DATABASE_URL is not set: run the tests with `cargo xtask test`")?;
                let url = store::Store::create_scratch_database(&admin, "systest").await?;
                (Some(admin), url)
            }
            Db::Sqlite => (
                None,
                format!("sqlite:{}", dir.path().join("landed.sqlite").display()),
            ),
        };
        let store = store::Store::connect(&url).await?;
        store.migrate().await?;
        Ok(TestStore {
            store,
            admin_url,
            url,
            _dir: dir,
        })
    }

    /// The database's URL, for processes of their own.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Deletes one landed row behind the sync's back, as someone with
    /// database access might: the gap a reconciliation must find. Through
    /// a connection of its own (the store has no API that deletes a live
    /// row, by design).
    pub async fn delete_row(&self, practice_id: &str, table: store::Table, id: i64) -> Result<()> {
        let sql = format!(
            "DELETE FROM {} WHERE practice_id = $1 AND id = $2",
            table.as_str()
        );
        let deleted = if self.admin_url.is_some() {
            let pool = sqlx::PgPool::connect(&self.url).await?;
            let done = sqlx::query(&sql)
                .bind(practice_id)
                .bind(id)
                .execute(&pool)
                .await?;
            pool.close().await;
            done.rows_affected()
        } else {
            let pool = sqlx::SqlitePool::connect(&self.url).await?;
            let done = sqlx::query(&sql)
                .bind(practice_id)
                .bind(id)
                .execute(&pool)
                .await?;
            pool.close().await;
            done.rows_affected()
        };
        anyhow::ensure!(deleted == 1, "no row {id} of {table} for {practice_id}");
        Ok(())
    }

    /// Closes the pool and drops the scratch database.
    pub async fn remove(self) -> Result<()> {
        self.store.close().await;
        if let Some(admin) = &self.admin_url {
            store::Store::drop_database(admin, &self.url).await?;
        }
        Ok(())
    }
}

/// A temporary folder, removed when dropped.
pub struct TempDir(std::path::PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Result<TempDir> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ascend-sync-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }

    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Checks that a practice's landed table equals the simulator's records in
/// the practice's scope: the same ids, and for each the same
/// `lastModified` and the same raw JSON. Returns the number of records.
pub async fn assert_table_equals_source(
    sim: &Sim,
    org: usize,
    store: &store::Store,
    practice_id: &str,
    scope: sync_core::Scope,
    resource: Resource,
) -> Result<usize> {
    assert_table_equals_source_except(sim, org, store, practice_id, scope, resource, &[]).await
}

/// [`assert_table_equals_source`] of every record but those with the ids
/// in `except` (records served bad: in quarantine, not landed). A record
/// of `except` landed all the same fails the check, unless it is also
/// in the store's table with another version: such ids are skipped on both
/// sides.
pub async fn assert_table_equals_source_except(
    sim: &Sim,
    org: usize,
    store: &store::Store,
    practice_id: &str,
    scope: sync_core::Scope,
    resource: Resource,
    except: &[u64],
) -> Result<usize> {
    let snapshot = sim.snapshot(org, resource, true).await?;
    let expected: Vec<worker::verify::SourceRecord<'_>> = snapshot
        .iter()
        .filter(|e| e.id.parse::<u64>().is_ok_and(|id| !except.contains(&id)))
        .filter_map(|e| e.record.as_ref().map(|r| (e, r)))
        .filter(|(_, r)| scope.contains(resource, r))
        .map(|(e, record)| {
            Ok(worker::verify::SourceRecord {
                id: e.id.parse()?,
                last_modified: Some(e.last_modified.as_str()),
                record,
            })
        })
        .collect::<Result<_>>()?;
    Ok(worker::verify::compare_except(store, practice_id, resource, &expected, except).await?)
}

/// Waits until `check` says true, polling every 200 ms; fails after
/// `limit`, naming `what`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let started = std::time::Instant::now();
    loop {
        if check().await? {
            return Ok(());
        }
        if started.elapsed() > limit {
            anyhow::bail!("gave up waiting ({} s) for: {what}", limit.as_secs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
