//! The admin server as the admin tests and the browser tests use it: a
//! real server on a loopback port, a real store (Postgres), the database
//! queue, the simulator behind `connect`, and a worker that runs what the
//! server enqueues.

use std::sync::Arc;
use std::time::Duration;

use access::{Gate, Principal, Role};
use anyhow::{Context, Result, ensure};
use ascend_sim::{SimConfig, Size};
use model::PracticeStatus;
use queue::{DbQueue, Queue, QueueSettings};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use worker::credentials::FixedCredentials;
use worker::jobs::{Worker, WorkerConfig};
use worker::{SyncConfig, Syncer};

use crate::{Db, Sim, TempDir, TestStore, test_client_config};

/// The practice connected and synced.
pub const PRACTICE: &str = "practice-1";
/// A practice connected and paused.
pub const OTHER: &str = "practice-2";

/// The server and what it runs on.
pub struct App {
    pub sim: Sim,
    pub store: TestStore,
    pub queue: Queue,
    pub worker: Worker,
    pub base: String,
    pub http: reqwest::Client,
    pub admin: String,
    pub user: String,
    pub other_user: String,
    pub readonly: String,
    _dirs: (TempDir, TempDir),
}

impl App {
    /// The server, with PRACTICE connected through the API (as the admin)
    /// and synced, and OTHER registered; a token of each role.
    pub async fn start() -> Result<App> {
        let sim = Sim::start(SimConfig {
            size: Size::Tiny,
            seed: 16,
            ..SimConfig::default()
        })
        .await?;
        let store = TestStore::new(Db::Postgres).await?;
        let key_dir = TempDir::new("vault")?;
        let archive_dir = TempDir::new("archive")?;
        let vault =
            vault::Vault::Local(vault::LocalVault::open(&key_dir.path().join("master.key"))?);
        let queue = Queue::from(DbQueue::new(
            store.store.clone(),
            QueueSettings {
                max_receive_count: 3,
                visibility: Duration::from_secs(5),
            },
        ));
        let client = ascend_client::AscendClient::new(test_client_config(1000)?)?;
        let connector = control::Connector {
            store: store.store.clone(),
            vault,
            client: client.clone(),
            hosts: crate::sim_hosts(),
        };
        let worker = Worker::new(
            Syncer::new(
                store.store.clone(),
                blob::Archive::local(archive_dir.path().to_path_buf())?,
                SyncConfig::default(),
            ),
            queue.clone(),
            client,
            Arc::new(FixedCredentials(sim.connection(0)?)),
            WorkerConfig {
                worker_id: "admin-test-worker".into(),
                concurrency: 2,
                visibility: Duration::from_secs(5),
                receive_wait: Duration::from_millis(200),
                first_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_millis(500),
                ..WorkerConfig::default()
            },
        );
        let state = admin::AdminState::new(store.store.clone(), queue.clone(), connector);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        tokio::spawn(admin::serve(listener, state, std::future::pending()));
        let gate = Gate::new(store.store.clone());
        let by = Principal::operator("admin-test");
        let token = |role, practice: Option<&'static str>| {
            let gate = gate.clone();
            let by = by.clone();
            async move {
                let made = gate.create_token(&by, role, practice, "test").await?;
                Ok::<String, anyhow::Error>(made.token.expose_secret().to_owned())
            }
        };
        let admin = token(Role::CloudPmsAdmin, None).await?;
        let readonly = token(Role::Readonly, None).await?;
        let mut app = App {
            sim,
            store,
            queue,
            worker,
            base,
            http: reqwest::Client::new(),
            admin,
            user: String::new(),
            other_user: String::new(),
            readonly,
            _dirs: (key_dir, archive_dir),
        };
        let connection = app.sim.connection(0)?;
        let location: i64 = app
            .sim
            .org(0)
            .location_ids
            .first()
            .context("no location")?
            .parse()?;
        let connect = |id: &str| {
            json!({
                "practice_id": id,
                "organization_id": app.sim.org(0).organization_id,
                "location_id": location,
                "api_base": connection.api_base.as_str(),
                "token_url": connection.token_url.as_str(),
                "client_id": connection.client_id,
                "client_secret": connection.client_secret.expose_secret(),
            })
        };
        for id in [PRACTICE, OTHER] {
            let (status, body) = app
                .call(
                    Method::POST,
                    "/api/v1/practices",
                    &app.admin,
                    Some(connect(id)),
                )
                .await?;
            ensure!(
                status == StatusCode::CREATED,
                "connect {id}: {status} {body}"
            );
        }
        // OTHER stays out of the way: only PRACTICE syncs.
        let (status, _) = app
            .call(
                Method::POST,
                &format!("/api/v1/practices/{OTHER}/disable"),
                &app.admin,
                None,
            )
            .await?;
        ensure!(status == StatusCode::OK);
        app.user = token(Role::PracticeUser, Some(PRACTICE)).await?;
        app.other_user = token(Role::PracticeUser, Some(OTHER)).await?;
        let synced = control::sync_and_wait(
            &app.store.store,
            &app.queue,
            &app.worker,
            PRACTICE,
            Duration::from_secs(300),
        )
        .await?;
        ensure!(synced.practice.status == PracticeStatus::Active);
        Ok(app)
    }

    /// One API call as `token` (none when empty): the status and the
    /// body (JSON, or the text as a JSON string).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value)> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, value))
    }

    /// Runs the worker until the queue is empty.
    pub async fn drain(&self) -> Result<()> {
        worker::drain::run_until_idle(&self.worker, &self.queue, Duration::from_secs(120)).await?;
        Ok(())
    }

    /// The audit rows of `action`, newest first.
    pub async fn audit(&self, action: &str) -> Result<Vec<store::AuditRecord>> {
        Ok(self
            .store
            .store
            .audit_log(None, 1000)
            .await?
            .into_iter()
            .filter(|r| r.action == action)
            .collect())
    }

    /// The audit log's name of a token.
    pub fn token_id(token: &str) -> String {
        format!("token:{}", &token[4..20])
    }
}
