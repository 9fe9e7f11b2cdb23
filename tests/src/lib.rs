//! Helpers for the system tests: a simulator on a free loopback port with a
//! typed handle on its control API, and clients wired to it the way
//! production wires them to Ascend (only the loopback opt-in differs).

use std::num::NonZeroU32;
use std::time::Duration;

use anyhow::{Context, Result};
use ascend_client::{
    AscendClient, ClientConfig, Connection, InsecureLoopback, OrgClient, Resource,
};
use ascend_sim::{
    Counters, FaultConfig, MutateRequest, MutateResult, OrgInfo, RateLimit, RequestLogEntry,
    RunningSim, SimConfig, SnapshotEntry, TokenTtl,
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

    pub async fn counters(&self, org: usize) -> Result<Counters> {
        let url = self.control(&format!("/orgs/{}/counters", self.org(org).organization_id));
        self.send(self.http.get(url)).await
    }

    pub async fn requests(&self, org: usize) -> Result<Vec<RequestLogEntry>> {
        let url = self.control(&format!("/orgs/{}/requests", self.org(org).organization_id));
        self.send(self.http.get(url)).await
    }

    pub async fn reset_counters(&self) -> Result<()> {
        let _: serde_json::Value = self
            .send(self.http.post(self.control("/counters/reset")))
            .await?;
        Ok(())
    }

    pub async fn shutdown(self) {
        self.running.shutdown().await;
    }
}

/// A client configured as production would be, except that it may speak
/// plain http to the loopback simulator, with short backoff so tests are quick.
pub fn test_client(requests_per_second: u32) -> Result<AscendClient> {
    let mut config = ClientConfig::default();
    config.requests_per_second = NonZeroU32::new(requests_per_second).context("rps must be > 0")?;
    config.burst = config.requests_per_second;
    config.base_delay = Duration::from_millis(20);
    config.max_delay = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(10);
    config.insecure_loopback = InsecureLoopback::allow_for_local_testing();
    Ok(AscendClient::new(config)?)
}

/// Connects organization `index` of `sim` through `client`.
pub fn connect(client: &AscendClient, sim: &Sim, index: usize) -> Result<OrgClient> {
    Ok(client.connect(sim.connection(index)?)?)
}
