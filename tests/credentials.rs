//! Where a practice's Client Secret may go (issue 16, security point 1):
//! its token URL and API base are sealed with its credentials, and both
//! are held to the host allow-list, at connect and at every open.
//!
//! Each test connects a practice of the simulator (on 127.0.0.1, allowed
//! explicitly as a test host) through `control::connect` into SQLite,
//! then runs its jobs with an in-process worker that opens the sealed row
//! as production's does. A "foreign host" is a TCP listener on 127.0.0.1
//! that counts the connections it receives: it must receive none.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_sim::{SimConfig, Size};
use control::{Connector, ControlError, NewConnection};
use model::{HostPolicy, NewPractice, PracticeStatus};
use queue::{DbQueue, Queue, QueueSettings};
use secrecy::SecretString;
use store::{AuditOutcome, Store};
use system_tests::{Db, Sim, TempDir, TestStore, fleet_client, sim_hosts, test_client};
use vault::{LocalVault, Purpose, SealContext, Vault};
use worker::credentials::{VaultCredentials, to_stored};
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

const PRACTICE: &str = "p1";

/// The simulator, a SQLite store, a local vault and a work folder.
struct Env {
    sim: Sim,
    db: TestStore,
    vault: Vault,
    dir: TempDir,
}

impl Env {
    async fn new() -> Result<Env> {
        let sim = Sim::start(SimConfig {
            orgs: 1,
            size: Size::Tiny,
            seed: 16,
            ..SimConfig::default()
        })
        .await?;
        let db = TestStore::new(Db::Sqlite).await?;
        let dir = TempDir::new("credentials")?;
        let vault = Vault::Local(LocalVault::open(&dir.path().join("master.key"))?);
        Ok(Env {
            sim,
            db,
            vault,
            dir,
        })
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    fn connector(&self, hosts: HostPolicy) -> Result<Connector> {
        Ok(Connector {
            store: self.store().clone(),
            vault: self.vault.clone(),
            client: test_client(2000)?,
            hosts,
        })
    }

    /// The simulator's organization 0 as a new practice, with these URLs.
    fn new_connection(&self, api_base: &str, token_url: &str) -> NewConnection {
        let info = self.sim.org(0);
        NewConnection {
            practice: NewPractice {
                practice_id: PRACTICE.to_owned(),
                organization_id: info.organization_id.clone(),
                location_id: 0,
                api_base: api_base.to_owned(),
                sync_interval_minutes: 15,
            },
            token_url: token_url.to_owned(),
            client_id: info.client_id.clone(),
            client_secret: SecretString::from(info.client_secret.clone()),
        }
    }

    /// Connects the practice with the simulator's URLs, the test host
    /// allowed.
    async fn connect(&self) -> Result<()> {
        let info = self.sim.org(0);
        control::connect(
            &self.connector(sim_hosts())?,
            self.new_connection(&info.api_base, &info.token_url),
            "test",
        )
        .await?;
        Ok(())
    }

    /// Runs the practice's jobs (Force Sync Now, then a worker until the
    /// queue is empty) with credentials opened under `hosts`; the practice
    /// afterwards.
    async fn sync(&self, hosts: HostPolicy) -> Result<model::Practice> {
        let queue = Queue::Database(DbQueue::new(
            self.store().clone(),
            QueueSettings {
                max_receive_count: 2,
                visibility: Duration::from_secs(30),
            },
        ));
        let syncer = Syncer::new(
            self.store().clone(),
            blob::Archive::local(self.dir.path().join("archive"))?,
            SyncConfig::default(),
        );
        let worker = Worker::new(
            syncer,
            queue.clone(),
            fleet_client(self.store(), 2000.0)?,
            Arc::new(VaultCredentials::new(
                self.store().clone(),
                self.vault.clone(),
                hosts,
            )),
            WorkerConfig {
                receive_wait: Duration::from_millis(200),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ..WorkerConfig::default()
            },
        );
        let synced = control::sync_and_wait(
            self.store(),
            &queue,
            &worker,
            PRACTICE,
            Duration::from_secs(120),
        )
        .await?;
        Ok(synced.practice)
    }

    /// Replaces the plain token URL column and keeps the sealed value, as
    /// someone who can write to the database but not open the vault would.
    async fn change_token_url(&self, token_url: &str) -> Result<()> {
        let mut stored = self
            .store()
            .practice_credentials(PRACTICE)
            .await?
            .context("credentials stored")?;
        stored.token_url = token_url.to_owned();
        self.store()
            .replace_credentials(PRACTICE, &stored, "intruder")
            .await?;
        Ok(())
    }

    async fn token_requests(&self) -> Result<u64> {
        Ok(self.sim.counters(0).await?.token_requests)
    }
}

/// A TCP listener on 127.0.0.1 that counts the connections it accepts.
struct Listener {
    url: String,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    async fn start() -> Result<Listener> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                drop(socket);
            }
        });
        Ok(Listener {
            url,
            connections,
            task,
        })
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The token URL changed in the database after connect, to a host the
/// policy allows (so only the seal can tell): the job fails as needing a
/// reconnect, naming the token URL, and nothing reaches that host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_url_changed_in_the_database_gets_no_secret() -> Result<()> {
    let env = Env::new().await?;
    env.connect().await?;
    let foreign = Listener::start().await?;
    env.change_token_url(&format!(
        "{}/oauth/client_credential/accesstoken",
        foreign.url
    ))
    .await?;
    let tokens_before = env.token_requests().await?;

    let practice = env.sync(sim_hosts()).await?;

    ensure!(
        practice.status == PracticeStatus::AuthFailed,
        "the practice waits for a person: {practice:?}"
    );
    let detail = practice.status_detail.unwrap_or_default();
    ensure!(
        detail.contains("token URL") && detail.contains("not the one sealed"),
        "the reason names the token URL: {detail}"
    );
    ensure!(
        detail.contains("rotate-credentials"),
        "the reason says how to recover: {detail}"
    );
    ensure!(
        foreign.connections() == 0,
        "the changed host received {} connection(s)",
        foreign.connections()
    );
    ensure!(
        env.token_requests().await? == tokens_before,
        "no token was asked for with the secret"
    );
    env.sim.shutdown().await;
    Ok(())
}

/// The API base changed in the database after connect: the same, naming
/// the API base; no token goes anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_base_changed_in_the_database_gets_no_token() -> Result<()> {
    let env = Env::new().await?;
    env.connect().await?;
    let foreign = Listener::start().await?;
    let mut practice = env
        .store()
        .get_practice(PRACTICE)
        .await?
        .context("practice")?;
    practice.api_base = format!("{}/ascend-gateway/api", foreign.url);
    env.store()
        .upsert_practice(&NewPractice {
            practice_id: practice.practice_id.clone(),
            organization_id: practice.organization_id.clone(),
            location_id: practice.location_id,
            api_base: practice.api_base.clone(),
            sync_interval_minutes: practice.sync_interval_minutes,
        })
        .await?;
    let tokens_before = env.token_requests().await?;

    let practice = env.sync(sim_hosts()).await?;

    ensure!(
        practice.status == PracticeStatus::AuthFailed,
        "{practice:?}"
    );
    let detail = practice.status_detail.unwrap_or_default();
    ensure!(
        detail.contains("API base") && detail.contains("not the one sealed"),
        "{detail}"
    );
    ensure!(foreign.connections() == 0, "the changed host was called");
    ensure!(env.token_requests().await? == tokens_before);
    env.sim.shutdown().await;
    Ok(())
}

/// A row sealed before URLs were bound (v1) still opens and syncs; its
/// URLs are held to the host allow-list on every open, so the same row
/// read by a worker that does not allow the test host fails, before
/// anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_sealed_before_urls_were_bound_still_opens() -> Result<()> {
    let env = Env::new().await?;
    env.connect().await?;
    let info = env.sim.org(0);
    let v1 = env
        .vault
        .seal(
            &SealContext::new(PRACTICE, Purpose::AscendCredentials),
            &SecretString::from(format!(
                "ascend-credentials/v1\n{}\n{}",
                info.client_id, info.client_secret
            )),
        )
        .await?;
    env.store()
        .replace_credentials(PRACTICE, &to_stored(v1, &info.token_url), "test")
        .await?;

    let practice = env.sync(sim_hosts()).await?;
    ensure!(
        practice.status == PracticeStatus::Active,
        "a v1 row syncs: {practice:?}"
    );

    // The same row, opened where only the vendor's hosts are allowed.
    let tokens_before = env.token_requests().await?;
    let practice = env.sync(HostPolicy::vendor_only()).await?;
    ensure!(
        practice.status == PracticeStatus::AuthFailed,
        "{practice:?}"
    );
    let detail = practice.status_detail.unwrap_or_default();
    ensure!(
        detail.contains("prod.hs1api.com") && detail.contains("ASCEND_SYNC_ALLOW_TEST_HOST"),
        "the reason names the allowed hosts and how to allow a test host: {detail}"
    );
    ensure!(env.token_requests().await? == tokens_before);
    env.sim.shutdown().await;
    Ok(())
}

/// Connecting (and rotating) with a URL outside the vendor's hosts is
/// refused before any call, audited, and nothing is saved, unless the
/// deployment allows that test host; then it connects and syncs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_vendor_host_is_refused_unless_allowed() -> Result<()> {
    let env = Env::new().await?;
    let info = env.sim.org(0);
    let refused = control::connect(
        &env.connector(HostPolicy::vendor_only())?,
        env.new_connection(&info.api_base, &info.token_url),
        "test",
    )
    .await
    .expect_err("the simulator is not a vendor host");
    let text = refused.to_string();
    ensure!(matches!(refused, ControlError::Invalid(_)), "{text}");
    ensure!(
        text.contains("prod.hs1api.com or test.hs1api.com")
            && text.contains("ASCEND_SYNC_ALLOW_TEST_HOST"),
        "{text}"
    );
    ensure!(env.token_requests().await? == 0, "nothing was sent");
    ensure!(env.store().get_practice(PRACTICE).await?.is_none());
    let audit = env.store().audit_log(Some(PRACTICE), 10).await?;
    ensure!(
        audit
            .iter()
            .any(|a| a.action == "practice.add" && a.outcome == AuditOutcome::Refused),
        "the refusal is audited: {audit:?}"
    );

    // Allowed explicitly, the same connection works.
    env.connect().await?;
    let practice = env.sync(sim_hosts()).await?;
    ensure!(practice.status == PracticeStatus::Active, "{practice:?}");

    // Rotating to a foreign token URL is refused too, and changes nothing.
    let before = env.store().practice_credentials(PRACTICE).await?;
    let err = control::rotate_credentials(
        &env.connector(sim_hosts())?,
        PRACTICE,
        Some("https://evil.example/oauth/client_credential/accesstoken"),
        info.client_id.clone(),
        SecretString::from(info.client_secret.clone()),
        "test",
    )
    .await
    .expect_err("a foreign token URL");
    ensure!(
        err.to_string().contains("evil.example"),
        "the refusal names the URL: {err}"
    );
    ensure!(env.store().practice_credentials(PRACTICE).await? == before);
    env.sim.shutdown().await;
    Ok(())
}
