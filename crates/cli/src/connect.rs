//! What the subcommands that talk to Ascend share: the client's settings
//! and reading a credentials file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use ascend_client::{AscendClient, ClientConfig, Connection, InsecureLoopback};
use clap::Args;
use model::{Endpoint, HostPolicy};
use secrecy::SecretString;
use serde::Deserialize;
use store::Store;
use sync_core::budget::Policy;
use worker::budget::FleetBudget;

/// The client's settings on the command line.
#[derive(Args)]
pub struct ClientArgs {
    /// Each organization's request budget, in requests per second. With a
    /// database, the default for the whole fleet: every worker shares it,
    /// and an organization's own setting (`ascend-sync budget set`) wins.
    #[arg(long, env = "ASCEND_REQUESTS_PER_SECOND", default_value_t = 10)]
    requests_per_second: u32,
    /// Most MiB of Ascend answers this process holds in memory at once
    /// (being read, or fetched and not yet landed); a read beyond it waits.
    #[arg(long, env = "ASCEND_MAX_MIB_IN_FLIGHT", default_value_t = 256, value_parser = clap::value_parser!(u32).range(64..=65536))]
    max_mib_in_flight: u32,
    /// Allow plain http to a loopback host (the simulator). Never production.
    #[arg(long)]
    insecure_loopback: bool,
    /// A test host (name or IP address, no port) a practice's token URL
    /// and API base may point at besides the vendor's hosts
    /// (prod.hs1api.com, test.hs1api.com), over http or https on any port:
    /// the simulator. Never production.
    #[arg(long, env = model::hosts::ALLOW_TEST_HOST_ENV)]
    allow_test_host: Option<String>,
}

impl ClientArgs {
    /// A client with this process's own budget per organization (no
    /// database: `pull`).
    pub fn client(&self) -> Result<AscendClient> {
        AscendClient::new(self.config()?).context("bad client configuration")
    }

    /// A client drawing from the fleet's budget in `store`.
    pub fn fleet_client(&self, store: &Store) -> Result<AscendClient> {
        let policy = Policy::new(f64::from(self.requests_per_second));
        let budget = Arc::new(FleetBudget::new(store.clone(), policy));
        AscendClient::with_budget(self.config()?, budget).context("bad client configuration")
    }

    /// Where a practice's secret and tokens may go: the vendor's hosts,
    /// and `--allow-test-host` if given.
    pub fn hosts(&self) -> Result<HostPolicy> {
        HostPolicy::from_setting(self.allow_test_host.as_deref()).map_err(anyhow::Error::msg)
    }

    fn config(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::default();
        config.requests_per_second = std::num::NonZeroU32::new(self.requests_per_second)
            .context("--requests-per-second must be at least 1")?;
        config.burst = config.requests_per_second;
        config.max_bytes_in_flight = usize::try_from(self.max_mib_in_flight)
            .context("--max-mib-in-flight")?
            .saturating_mul(1024 * 1024);
        if self.insecure_loopback {
            config.insecure_loopback = InsecureLoopback::allow_for_local_testing();
        }
        Ok(config)
    }
}

/// The credentials line printed by `ascend-sync sim`.
#[derive(Deserialize)]
struct CredentialsLine {
    organization_id: String,
    client_id: String,
    client_secret: SecretString,
    api_base: String,
    token_url: String,
}

/// Builds a connection from its parts, naming the part that is wrong; the
/// URLs must pass `hosts`.
pub fn connection(
    hosts: &HostPolicy,
    organization_id: &str,
    client_id: String,
    client_secret: SecretString,
    api_base: &str,
    token_url: &str,
) -> Result<Connection> {
    Ok(Connection {
        api_base: hosts.check(Endpoint::ApiBase, api_base)?,
        token_url: hosts.check(Endpoint::TokenUrl, token_url)?,
        organization_id: organization_id
            .parse()
            .with_context(|| format!("bad Organization-ID {organization_id:?}"))?,
        client_id,
        client_secret,
    })
}

/// Reads the first non-empty line of a credentials file: a JSON object with
/// organization_id, client_id, client_secret, api_base and token_url (the
/// URLs must pass `hosts`).
pub fn read_credentials_file(hosts: &HostPolicy, path: &Path) -> Result<Connection> {
    read_credentials_lines(hosts, path)?
        .into_iter()
        .next()
        .map(|(_, connection)| connection)
        .context("the credentials file is empty")
}

/// Reads every non-empty line of a credentials file, each with its
/// Organization-ID (the URLs must pass `hosts`).
pub fn read_credentials_lines(
    hosts: &HostPolicy,
    path: &Path,
) -> Result<Vec<(String, Connection)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read credentials file {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            let file: CredentialsLine = serde_json::from_str(line).with_context(|| {
                format!(
                    "line {} of {} is not the expected JSON",
                    n + 1,
                    path.display()
                )
            })?;
            let connection = connection(
                hosts,
                &file.organization_id,
                file.client_id,
                file.client_secret,
                &file.api_base,
                &file.token_url,
            )?;
            Ok((file.organization_id, connection))
        })
        .collect()
}
