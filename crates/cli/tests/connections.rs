//! Practice connections end to end, with the `ascend-sync` binary as an
//! operator runs it: `practice add` proving and sealing credentials, worker
//! and scheduler processes opening them, the lifecycle, key rewrap, admin
//! tokens, and the leak test.
//!
//! Each test runs twice, as each deployment pairs them: embedded (the local
//! master key file, the database queue) and production (KMS and SQS on
//! moto, a fresh key and queues per test). They need `DATABASE_URL` and
//! `ASCEND_SYNC_TEST_AWS_ENDPOINT` (moto; `cargo xtask test` starts it).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use access::{Action, Gate};
use anyhow::{Context, Result, ensure};
use ascend_client::Resource;
use ascend_sim::{FaultConfig, MutateRequest, SimConfig, Size};
use queue::{DbQueue, Lane, Outgoing, Queue, QueueSettings, SqsQueue};
use secrecy::SecretString;
use store::{HistoryQuery, PracticeStatus, RunState, Store};
use sync_core::Scope;
use system_tests::{
    Db, SIM_HOST, Sim, TempDir, TestStore, assert_table_equals_source, cli_operator, eventually,
};
use worker::credentials::to_stored;

const ENDPOINT_VAR: &str = "ASCEND_SYNC_TEST_AWS_ENDPOINT";
const BIN: &str = env!("CARGO_BIN_EXE_ascend-sync");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VaultKind {
    Local,
    Kms,
}

macro_rules! on_both_vaults {
    ($($name:ident),* $(,)?) => {
        mod local_key {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::VaultKind::Local).await
                }
            )*
        }
        mod kms {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() -> anyhow::Result<()> {
                    super::$name(super::VaultKind::Kms).await
                }
            )*
        }
    };
}

on_both_vaults!(
    connecting_proves_seals_and_keeps_practices_apart,
    rewrap_disable_enable_and_remove,
    no_secret_or_token_appears_anywhere,
);

/// The simulator, a scratch database, a work folder, a vault, and what the
/// binary needs to join them; every output of every command it ran, for
/// the leak scan.
struct Env {
    sim: Sim,
    db: TestStore,
    dir: TempDir,
    /// `--master-key-file ...` or `--kms-key-id ... --kms-endpoint ...`.
    vault_args: Vec<String>,
    /// The same vault, in process (to seal what a test plants).
    vault: vault::Vault,
    /// KMS: a client for creating keys.
    kms: Option<aws_sdk_kms::Client>,
    /// The queue (database or SQS) and its `--queue ...` arguments.
    queue: Queue,
    queue_args: Vec<String>,
    outputs: Mutex<Vec<(String, String)>>,
}

impl Env {
    async fn new(kind: VaultKind, orgs: usize, seed: u64) -> Result<Env> {
        let sim = Sim::start(SimConfig {
            orgs,
            size: Size::Tiny,
            seed,
            ..SimConfig::default()
        })
        .await?;
        let db = TestStore::new(Db::Postgres).await?;
        let dir = TempDir::new("connections")?;
        let (vault_args, vault, kms) = match kind {
            VaultKind::Local => {
                let path = dir.path().join("master.key");
                let vault = vault::Vault::Local(vault::LocalVault::open(&path)?);
                let args = vec![
                    "--master-key-file".to_owned(),
                    path.to_string_lossy().into_owned(),
                ];
                (args, vault, None)
            }
            VaultKind::Kms => {
                let endpoint = std::env::var(ENDPOINT_VAR).with_context(|| {
                    format!("{ENDPOINT_VAR} is not set: run `cargo xtask test`")
                })?;
                let client = kms_client(&endpoint).await;
                let key_id = create_key(&client).await?;
                let vault = vault::Vault::Kms(
                    vault::KmsVault::connect(vault::KmsConfig {
                        endpoint_url: Some(endpoint.clone()),
                        region: Some("us-east-1".into()),
                        key_id: key_id.clone(),
                    })
                    .await?,
                );
                let args = vec![
                    "--kms-key-id".to_owned(),
                    key_id,
                    "--kms-endpoint".to_owned(),
                    endpoint,
                ];
                (args, vault, Some(client))
            }
        };
        let settings = QueueSettings {
            max_receive_count: 2,
            visibility: Duration::from_secs(30),
        };
        let (queue, queue_args) = match kind {
            VaultKind::Local => (
                Queue::Database(DbQueue::new(db.store.clone(), settings)),
                vec!["--queue".to_owned(), "database".to_owned()],
            ),
            VaultKind::Kms => {
                let endpoint = std::env::var(ENDPOINT_VAR)?;
                let prefix = format!("cx{}x{}", std::process::id(), seed);
                let sqs = SqsQueue::provision(
                    Some(endpoint.clone()),
                    Some("us-east-1".into()),
                    &prefix,
                    settings,
                )
                .await?;
                let (priority, standard, dead) = sqs.queue_urls();
                let args = [
                    "--queue",
                    "sqs",
                    "--sqs-endpoint",
                    &endpoint,
                    "--sqs-priority-url",
                    priority,
                    "--sqs-standard-url",
                    standard,
                    "--sqs-dead-letter-url",
                    dead,
                ]
                .map(str::to_owned)
                .to_vec();
                (Queue::Sqs(sqs), args)
            }
        };
        let mut queue_args = queue_args;
        queue_args
            .extend(["--max-receive-count", "2", "--visibility-secs", "30"].map(str::to_owned));
        Ok(Env {
            sim,
            db,
            dir,
            vault_args,
            vault,
            kms,
            queue,
            queue_args,
            outputs: Mutex::new(Vec::new()),
        })
    }

    fn store(&self) -> &Store {
        &self.db.store
    }

    fn database_url(&self) -> &str {
        self.db.url()
    }

    /// Runs `ascend-sync ARGS` with `stdin`; its output, whatever its exit.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<Output> {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .env("DATABASE_URL", self.database_url())
            // Not read any more: the actor is the system login.
            .env("ASCEND_SYNC_ACTOR", "cli:not-the-operator")
            .env("ASCEND_SYNC_LOG", "debug")
            .env("ASCEND_SYNC_ALLOW_TEST_HOST", SIM_HOST)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn()?;
        if let (Some(mut pipe), Some(text)) = (child.stdin.take(), stdin) {
            pipe.write_all(text.as_bytes())?;
        }
        let output = child.wait_with_output()?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if let Ok(mut outputs) = self.outputs.lock() {
            outputs.push((args.join(" "), text));
        }
        Ok(output)
    }

    /// Runs `ascend-sync ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let output = self.run(args, stdin)?;
        ensure!(
            output.status.success(),
            "ascend-sync {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8(output.stdout)?)
    }

    /// Runs `ascend-sync ARGS`, which must fail; its stderr.
    fn fails(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let output = self.run(args, stdin)?;
        ensure!(
            !output.status.success(),
            "ascend-sync {args:?} succeeded but should have failed"
        );
        Ok(String::from_utf8(output.stderr)?)
    }

    /// `args`, then the queue's arguments (a subcommand's own go last).
    fn with_queue<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut out = args.to_vec();
        out.extend(self.queue_args.iter().map(String::as_str));
        out
    }

    /// `ascend-sync force` for `practice_id`: its stdout.
    fn force(&self, practice_id: &str) -> Result<String> {
        self.ok(
            &self.with_queue(&["force", "--practice-id", practice_id]),
            None,
        )
    }

    fn with_vault<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut out = args.to_vec();
        out.extend(self.vault_args.iter().map(String::as_str));
        out
    }

    /// `practice add` for the simulator's organization `org`, as
    /// `practice_id`, at `location` (0: the whole organization), with
    /// `secret` on stdin.
    fn add(&self, practice_id: &str, org: usize, location: &str, secret: &str) -> Result<Output> {
        let info = self.sim.org(org);
        let args = self.with_vault(&[
            "practice",
            "add",
            "--practice-id",
            practice_id,
            "--organization-id",
            &info.organization_id,
            "--location-id",
            location,
            "--client-id",
            &info.client_id,
            "--client-secret-stdin",
            "--api-base",
            &info.api_base,
            "--token-url",
            &info.token_url,
            "--insecure-loopback",
            "--allow-test-host",
            SIM_HOST,
            "--requests-per-second",
            "2000",
        ]);
        self.run(&args, Some(&format!("{secret}\n")))
    }

    /// A worker or scheduler process, its log (debug) in the work folder.
    fn spawn(&self, role: &str, extra: &[&str]) -> Result<Child> {
        let log = std::fs::File::create(self.log_path(role))?;
        let mut cmd = Command::new(BIN);
        cmd.arg(role)
            .args(&self.queue_args)
            .args(extra)
            .env("DATABASE_URL", self.database_url())
            .env("ASCEND_SYNC_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        if role == "worker" {
            cmd.args(&self.vault_args)
                .arg("--archive-dir")
                .arg(self.archive_dir())
                .args(["--insecure-loopback", "--requests-per-second", "2000"])
                .args(["--allow-test-host", SIM_HOST])
                .args(["--receive-wait-secs", "1", "--concurrency", "4"]);
        } else {
            cmd.args(["--tick-secs", "1", "--max-spread-secs", "0"]);
        }
        Ok(cmd.spawn()?)
    }

    fn log_path(&self, role: &str) -> PathBuf {
        self.dir.path().join(format!("{role}.log"))
    }

    fn archive_dir(&self) -> PathBuf {
        self.dir.path().join("archive")
    }

    /// Seals `secret` for `practice_id` in process and stores it, as if
    /// the practice's credentials had changed at Ascend since (no proving
    /// call: that is what `practice rotate-credentials` would refuse).
    async fn plant_credentials(&self, practice_id: &str, org: usize, secret: &str) -> Result<()> {
        let info = self.sim.org(org);
        let sealed = self
            .vault
            .seal_credentials(
                practice_id,
                &vault::AscendCredentials {
                    client_id: info.client_id.clone().into(),
                    client_secret: secret.to_owned().into(),
                },
                &vault::Endpoints {
                    token_url: info.token_url.clone(),
                    api_base: info.api_base.clone(),
                },
            )
            .await?;
        self.store()
            .replace_credentials(practice_id, &to_stored(sealed, &info.token_url), "test")
            .await?;
        Ok(())
    }

    async fn status(&self, practice_id: &str) -> Result<PracticeStatus> {
        Ok(self
            .store()
            .get_practice(practice_id)
            .await?
            .context("practice exists")?
            .status)
    }

    async fn wait_status(&self, practice_id: &str, want: PracticeStatus) -> Result<()> {
        eventually(
            &format!("{practice_id} is {want}"),
            Duration::from_secs(120),
            || async move { Ok(self.status(practice_id).await? == want) },
        )
        .await
    }

    /// Every table of `practice_id` equals the simulator's organization
    /// `org` (within `location`, if any).
    async fn assert_converged(&self, practice_id: &str, org: usize, location: u64) -> Result<()> {
        let scope = Scope {
            location_id: (location > 0).then_some(location),
        };
        let mut total = 0;
        for &resource in Resource::ALL {
            total += assert_table_equals_source(
                &self.sim,
                org,
                self.store(),
                practice_id,
                scope,
                resource,
            )
            .await?;
        }
        ensure!(total > 0, "{practice_id} landed nothing");
        Ok(())
    }

    async fn succeeded_runs(&self, practice_id: &str) -> Result<usize> {
        Ok(self
            .store()
            .history(&HistoryQuery {
                practice_id: Some(practice_id.to_owned()),
                failed_only: false,
                since: None,
                limit: 10_000,
            })
            .await?
            .iter()
            .filter(|r| r.status == RunState::Succeeded)
            .count())
    }

    /// `scheduler --once`: how many jobs the tick enqueued.
    fn tick(&self) -> Result<u64> {
        let out = self.ok(
            &self.with_queue(&["scheduler", "--once", "--max-spread-secs", "0"]),
            None,
        )?;
        let n = out
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("unexpected tick output {out:?}"))?;
        Ok(n)
    }
}

async fn kms_client(endpoint: &str) -> aws_sdk_kms::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .load()
        .await;
    aws_sdk_kms::Client::new(&sdk)
}

async fn create_key(client: &aws_sdk_kms::Client) -> Result<String> {
    let key = client.create_key().send().await?;
    key.key_metadata()
        .map(|m| m.arn().unwrap_or(m.key_id()).to_owned())
        .context("the new key has metadata")
}

/// Stops a process with SIGTERM and waits for it.
fn stop(mut child: Child) -> Result<()> {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    for _ in 0..200 {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// Kills the processes when a test ends, however it ends.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Processes {
    fn stop_all(&mut self) -> Result<()> {
        for child in self.0.drain(..) {
            stop(child)?;
        }
        Ok(())
    }
}

// ---- the tests ----------------------------------------------------------------

/// `practice add` proves before it saves (wrong secret, integration not
/// enabled: refused in words, nothing saved, audited), seals what it saves,
/// and practices sharing an organization sync apart. A sealed value copied
/// to another practice's row does not open there.
async fn connecting_proves_seals_and_keeps_practices_apart(kind: VaultKind) -> Result<()> {
    let env = Env::new(kind, 2, 21).await?;
    let org0 = env.sim.org(0).clone();
    let location: u64 = org0.location_ids[0].parse()?;

    // A wrong secret: refused by Ascend's token endpoint, nothing saved.
    let err = env.add("p-whole", 0, "0", "not-the-secret")?;
    ensure!(!err.status.success(), "a wrong secret must be refused");
    let stderr = String::from_utf8(err.stderr)?;
    ensure!(
        stderr.contains("Ascend refused the connection")
            && stderr.contains("Client ID and Client Secret"),
        "the refusal says what to fix: {stderr}"
    );
    ensure!(env.store().get_practice("p-whole").await?.is_none());

    // The vendor has not enabled the integration: 403, said in words.
    env.sim
        .set_faults(
            1,
            &FaultConfig {
                forbidden: true,
                ..FaultConfig::default()
            },
        )
        .await?;
    let err = env.add("p-other", 1, "0", &env.sim.org(1).client_secret)?;
    ensure!(!err.status.success());
    let stderr = String::from_utf8(err.stderr)?;
    ensure!(
        stderr.contains("vendor has not enabled the integration"),
        "the 403 is explained: {stderr}"
    );
    ensure!(env.store().get_practice("p-other").await?.is_none());
    env.sim.set_faults(1, &FaultConfig::default()).await?;

    let audit = env.store().audit_log(None, 100).await?;
    ensure!(
        audit
            .iter()
            .filter(|r| r.outcome == store::AuditOutcome::Failed && r.action == "practice.add")
            .count()
            == 2,
        "both refused connects are audited as failed: {audit:?}"
    );

    // Three practices: two share organization 0 (the whole organization and
    // one location), one is organization 1.
    for (id, org, loc) in [
        ("p-whole", 0, "0".to_owned()),
        ("p-location", 0, location.to_string()),
        ("p-other", 1, "0".to_owned()),
    ] {
        let out = env.add(id, org, &loc, &env.sim.org(org).client_secret)?;
        ensure!(
            out.status.success(),
            "{id}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ensure!(env.status(id).await? == PracticeStatus::InitialSync);
    }
    // The second connect of a practice is refused: credentials change
    // through rotate-credentials.
    let again = env.add("p-whole", 0, "0", &org0.client_secret)?;
    ensure!(!again.status.success());
    ensure!(String::from_utf8(again.stderr)?.contains("already connected"));

    // What is stored is sealed: neither the secret nor the Client ID is in
    // it, and the key is the vault's.
    let stored = env
        .store()
        .practice_credentials("p-whole")
        .await?
        .context("stored")?;
    ensure!(stored.key_id.starts_with(match kind {
        VaultKind::Local => "local:",
        VaultKind::Kms => "arn:aws:kms:",
    }));
    for needle in [&org0.client_secret, &org0.client_id] {
        ensure!(
            !contains(&stored.ciphertext, needle.as_bytes()),
            "the ciphertext holds a plaintext"
        );
    }

    let mut processes = Processes(vec![
        env.spawn("scheduler", &[])?,
        env.spawn("worker", &[])?,
    ]);
    for id in ["p-whole", "p-location", "p-other"] {
        env.wait_status(id, PracticeStatus::Active).await?;
    }
    env.assert_converged("p-whole", 0, 0).await?;
    env.assert_converged("p-location", 0, location).await?;
    env.assert_converged("p-other", 1, 0).await?;

    // A sealed value copied to another practice's row does not open there:
    // the worker refuses it, and the practice waits for a person.
    let foreign = env
        .store()
        .practice_credentials("p-other")
        .await?
        .context("stored")?;
    env.store()
        .replace_credentials("p-whole", &foreign, "test")
        .await?;
    env.force("p-whole")?;
    env.wait_status("p-whole", PracticeStatus::AuthFailed)
        .await?;
    let practice = env
        .store()
        .get_practice("p-whole")
        .await?
        .context("exists")?;
    let detail = practice.status_detail.unwrap_or_default();
    ensure!(
        detail.contains("does not belong to practice") || detail.contains("altered"),
        "the reason names the practice's credentials: {detail}"
    );
    let status = env.ok(&["status"], None)?;
    let line = status
        .lines()
        .find(|l| l.starts_with("p-whole"))
        .context("p-whole in status")?;
    ensure!(
        line.contains("auth_failed") && line.contains("since "),
        "status shows auth_failed and since when: {line}"
    );

    // Reconnecting: new credentials are proved first (a wrong secret is
    // refused and changes nothing), then the practice resumes.
    let rotate = |secret: &str| {
        env.run(
            &env.with_vault(&[
                "practice",
                "rotate-credentials",
                "--practice-id",
                "p-whole",
                "--client-id",
                &org0.client_id,
                "--client-secret-stdin",
                "--insecure-loopback",
                "--requests-per-second",
                "2000",
            ]),
            Some(&format!("{secret}\n")),
        )
    };
    ensure!(!rotate("still-wrong")?.status.success());
    ensure!(env.status("p-whole").await? == PracticeStatus::AuthFailed);
    let out = rotate(&org0.client_secret)?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        env.status("p-whole").await? == PracticeStatus::Active,
        "a finished initial sync is not run again"
    );
    env.sim
        .mutate(
            0,
            &MutateRequest {
                creates: 3,
                updates: 3,
                seed: 9,
                ..MutateRequest::default()
            },
        )
        .await?;
    let before = env.succeeded_runs("p-whole").await?;
    env.force("p-whole")?;
    eventually("p-whole syncs again", Duration::from_secs(60), || async {
        Ok(env.succeeded_runs("p-whole").await? > before)
    })
    .await?;
    env.assert_converged("p-whole", 0, 0).await?;
    processes.stop_all()?;
    Ok(())
}

/// Key rewrap leaves every practice able to sync, under the new key; disable stops scheduling within one tick; enable
/// resumes; remove destroys the credentials and keeps every row and the
/// history.
async fn rewrap_disable_enable_and_remove(kind: VaultKind) -> Result<()> {
    let env = Env::new(kind, 2, 22).await?;
    for (id, org) in [("p-a", 0), ("p-b", 1)] {
        let out = env.add(id, org, "0", &env.sim.org(org).client_secret)?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut processes = Processes(vec![env.spawn("worker", &[])?]);
    ensure!(env.tick()? == 2, "both initial syncs are due at once");
    for id in ["p-a", "p-b"] {
        env.wait_status(id, PracticeStatus::Active).await?;
    }

    // Rewrap every data key under a new key.
    let before_rewrap = env
        .store()
        .practice_credentials("p-a")
        .await?
        .context("stored")?;
    let new_key = match (&env.kms, &env.vault) {
        (Some(client), _) => create_key(client).await?,
        (None, vault) => vault.key_id().to_owned(),
    };
    let out = env.ok(
        &env.with_vault(&["keys", "rewrap", "--to-key-id", &new_key]),
        None,
    )?;
    ensure!(out.contains("2 rewrapped"), "{out}");
    for id in ["p-a", "p-b"] {
        let stored = env
            .store()
            .practice_credentials(id)
            .await?
            .context("stored")?;
        ensure!(stored.key_id == new_key, "{id} is under the new key");
        if id == "p-a" {
            ensure!(
                stored.ciphertext == before_rewrap.ciphertext,
                "ciphertext kept"
            );
            ensure!(
                stored.encrypted_data_key != before_rewrap.encrypted_data_key,
                "the data key is wrapped anew"
            );
        }
    }
    if env.kms.is_some() {
        // moto neither disables keys by ARN nor refuses a disabled key's
        // data keys, but it does refuse a data key opened under a key id
        // that did not wrap it, and the vault opens under the stored key
        // id. So: a row still wrapped by the old key, labelled with the new
        // one, does not open (this test can fail), and the rewrapped rows
        // open (the sync below).
        let mislabelled = store::SealedCredentials {
            key_id: new_key.clone(),
            ..before_rewrap.clone()
        };
        let sealed = worker::credentials::to_sealed(&mislabelled).context("nonce")?;
        ensure!(
            env.vault.open_credentials("p-a", &sealed).await.is_err(),
            "a data key wrapped by the old key does not open as the new key's"
        );
    }
    env.sim
        .mutate(
            0,
            &MutateRequest {
                creates: 5,
                updates: 5,
                seed: 3,
                ..MutateRequest::default()
            },
        )
        .await?;
    let before = env.succeeded_runs("p-a").await?;
    env.force("p-a")?;
    eventually(
        "a sync after the rewrap",
        Duration::from_secs(60),
        || async { Ok(env.succeeded_runs("p-a").await? > before) },
    )
    .await?;
    env.assert_converged("p-a", 0, 0).await?;

    // Disable a due practice: the next tick enqueues nothing for it.
    env.store().set_next_sync_at("p-a", None).await?;
    env.store().set_next_sync_at("p-b", None).await?;
    env.ok(&["practice", "disable", "--practice-id", "p-a"], None)?;
    let runs_a = env.succeeded_runs("p-a").await?;
    let runs_b = env.succeeded_runs("p-b").await?;
    ensure!(env.tick()? == 1, "only p-b is enqueued");
    eventually("p-b synced", Duration::from_secs(60), || async {
        Ok(env.succeeded_runs("p-b").await? > runs_b)
    })
    .await?;
    ensure!(env.tick()? == 0, "a disabled practice is not scheduled");
    tokio::time::sleep(Duration::from_secs(2)).await;
    ensure!(env.succeeded_runs("p-a").await? == runs_a);

    // Enable: due at once, and it syncs.
    env.ok(
        &env.with_vault(&["practice", "enable", "--practice-id", "p-a"]),
        None,
    )?;
    ensure!(env.tick()? == 1, "an enabled practice is due at once");
    eventually("p-a synced again", Duration::from_secs(60), || async {
        Ok(env.succeeded_runs("p-a").await? > runs_a)
    })
    .await?;

    // Remove: credentials destroyed, data and history kept as they were.
    let rows_before = landed_counts(env.store(), "p-b").await?;
    let history_before = env.succeeded_runs("p-b").await?;
    let refused = env.fails(&["practice", "remove", "--practice-id", "p-b"], None)?;
    ensure!(refused.contains("--yes"), "remove asks for confirmation");
    env.ok(
        &["practice", "remove", "--practice-id", "p-b", "--yes"],
        None,
    )?;
    ensure!(env.store().practice_credentials("p-b").await?.is_none());
    env.store().set_next_sync_at("p-b", None).await?;
    ensure!(env.tick()? == 0, "a removed practice is not scheduled");
    let forced = env.fails(&env.with_queue(&["force", "--practice-id", "p-b"]), None)?;
    ensure!(forced.contains("removed"), "{forced}");
    ensure!(landed_counts(env.store(), "p-b").await? == rows_before);
    ensure!(env.succeeded_runs("p-b").await? == history_before);
    ensure!(env.status("p-b").await? == PracticeStatus::Removed);

    let audit = env.ok(&["practice", "audit"], None)?;
    let operator = cli_operator()?;
    for action in [
        "practice.add",
        "keys.rewrap",
        "practice.disable",
        "practice.enable",
        "practice.remove",
    ] {
        ensure!(
            audit
                .lines()
                .any(|l| l.contains(action) && l.contains(&operator)),
            "the audit log has {action} by its actor:\n{audit}"
        );
    }
    processes.stop_all()?;
    Ok(())
}

async fn landed_counts(store: &Store, practice_id: &str) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for table in store::Table::ALL {
        out.push(store.count(practice_id, table).await?);
    }
    Ok(out)
}

/// The leak test: a full sync with injected failures (server errors,
/// malformed pages, revoked tokens, a poison message, credentials that
/// stopped working, refused admin tokens), then a scan of every table of
/// the database (including the queue and its dead letters), every log and
/// command output, and the archive: no Client Secret, Client ID, access
/// token or admin token appears anywhere.
async fn no_secret_or_token_appears_anywhere(kind: VaultKind) -> Result<()> {
    let env = Env::new(kind, 2, 23).await?;
    let (org0, org1) = (env.sim.org(0).clone(), env.sim.org(1).clone());
    let wrong_secret = "Wr0ng-s3cret-that-must-not-leak-7c1f";

    ensure!(!env.add("leak-a", 0, "0", wrong_secret)?.status.success());
    for (id, org) in [("leak-a", 0), ("leak-b", 1)] {
        let out = env.add(id, org, "0", &env.sim.org(org).client_secret)?;
        ensure!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    env.sim
        .set_faults(
            0,
            &FaultConfig {
                error_5xx_rate: 0.15,
                malformed_rate: 0.05,
                seed: Some(5),
                ..FaultConfig::default()
            },
        )
        .await?;
    let queue = env.queue.clone();
    queue
        .send(&[Outgoing {
            body: format!("{{\"poison\": \"{}\"", org0.organization_id),
            lane: Lane::Standard,
            delay: Duration::ZERO,
        }])
        .await?;
    let mut processes = Processes(vec![
        env.spawn("scheduler", &[])?,
        env.spawn("worker", &[])?,
    ]);
    env.sim.revoke_tokens(0).await?;
    env.wait_status("leak-b", PracticeStatus::Active).await?;
    env.sim.revoke_tokens(1).await?;
    env.wait_status("leak-a", PracticeStatus::Active).await?;

    // leak-b's credentials stop working: the next sync fails on auth.
    let planted_secret = "Pl4nted-wr0ng-secret-9e2d";
    env.plant_credentials("leak-b", 1, planted_secret).await?;
    env.force("leak-b")?;
    env.wait_status("leak-b", PracticeStatus::AuthFailed)
        .await?;
    eventually(
        "the poison message in the dead letters",
        Duration::from_secs(30),
        || async { Ok(queue.depth().await?.dead > 0) },
    )
    .await?;

    // Admin tokens: created (printed once), used, refused, revoked.
    let user_token = env
        .ok(
            &[
                "admin-token",
                "create",
                "--role",
                "practice_user",
                "--practice",
                "leak-a",
            ],
            None,
        )?
        .trim()
        .to_owned();
    let reader_token = env
        .ok(&["admin-token", "create", "--role", "readonly"], None)?
        .trim()
        .to_owned();
    ensure!(user_token.starts_with("asy_") && reader_token.starts_with("asy_"));
    let gate = Gate::new(env.store().clone());
    let user = gate
        .authenticate(&SecretString::from(user_token.clone()))
        .await?;
    ensure!(
        gate.authorize(&user, &Action::ForceSync("leak-b".into()))
            .await
            .is_err()
    );
    let reader = gate
        .authenticate(&SecretString::from(reader_token.clone()))
        .await?;
    ensure!(
        gate.authorize(&reader, &Action::RemovePractice("leak-a".into()))
            .await
            .is_err()
    );
    let listed = env.ok(&["admin-token", "list"], None)?;
    let reader_id = reader.actor.trim_start_matches("token:");
    env.ok(&["admin-token", "revoke", "--id", reader_id], None)?;
    let mut dlq = vec!["dlq"];
    dlq.extend(env.queue_args.iter().map(String::as_str));
    dlq.push("list");
    env.ok(&dlq, None)?;
    env.ok(&["history", "--failed"], None)?;
    env.ok(&["status", "--json"], None)?;
    env.ok(&["practice", "list"], None)?;
    env.ok(&["practice", "audit"], None)?;
    processes.stop_all()?;
    ensure!(listed.contains(reader_id));

    // What must appear nowhere.
    let mut needles: Vec<(String, String)> = vec![
        (
            "organization 0's Client Secret".into(),
            org0.client_secret.clone(),
        ),
        (
            "organization 1's Client Secret".into(),
            org1.client_secret.clone(),
        ),
        ("organization 0's Client ID".into(), org0.client_id.clone()),
        ("organization 1's Client ID".into(), org1.client_id.clone()),
        (
            "a wrong secret given to practice add".into(),
            wrong_secret.into(),
        ),
        ("the planted secret".into(), planted_secret.into()),
        ("the practice_user admin token".into(), user_token.clone()),
        ("the readonly admin token".into(), reader_token.clone()),
    ];
    for org in 0..2 {
        let tokens = env.sim.issued_tokens(org).await?;
        ensure!(
            tokens.len() >= 2,
            "organization {org}: tokens were issued and revoked, got {}",
            tokens.len()
        );
        needles.extend(
            tokens
                .into_iter()
                .map(|t| (format!("an access token of organization {org}"), t)),
        );
    }

    // Where they must not be: the whole database, every log and output
    // (but the one line that hands each admin token to its creator), the
    // archive.
    let dump = Command::new("pg_dump")
        .args(["--data-only", "--no-owner", env.database_url()])
        .output()?;
    ensure!(dump.status.success(), "pg_dump failed");
    let mut haystacks: Vec<(String, Vec<u8>)> = vec![("the database".into(), dump.stdout)];
    for role in ["worker", "scheduler"] {
        haystacks.push((
            format!("the {role}'s log"),
            std::fs::read(env.log_path(role))?,
        ));
    }
    for (args, text) in env
        .outputs
        .lock()
        .map_err(|_| anyhow::anyhow!("lock"))?
        .iter()
    {
        if args.starts_with("admin-token create") {
            continue;
        }
        haystacks.push((format!("the output of `{args}`"), text.clone().into_bytes()));
    }
    // The queue: SQS holds its messages apart from the database (the
    // database queue's are in the dump already).
    if let Queue::Sqs(_) = &env.queue {
        let mut bodies = String::new();
        for letter in queue.dead_letters(100).await? {
            bodies.push_str(&letter.body);
            bodies.push('\n');
        }
        loop {
            let got = queue.receive(10, Duration::from_millis(200)).await?;
            if got.is_empty() {
                break;
            }
            for delivery in got {
                bodies.push_str(&delivery.body);
                bodies.push('\n');
            }
        }
        ensure!(
            bodies.contains("poison"),
            "the dead letters were read: {bodies}"
        );
        haystacks.push((
            "the SQS queues and dead letters".into(),
            bodies.into_bytes(),
        ));
    }
    let archived = archive_files(&env.archive_dir())?;
    ensure!(archived.len() > 20, "the archive holds the pages");
    haystacks.extend(archived);

    // The scan can fail: the Organization-ID is in the database, the
    // archive is readable text.
    ensure!(contains(&haystacks[0].1, org0.organization_id.as_bytes()));
    ensure!(
        haystacks
            .iter()
            .any(|(what, bytes)| what.starts_with("the archive") && contains(bytes, b"\"id\""))
    );
    let mut leaks = Vec::new();
    for (what, needle) in &needles {
        let forms = [
            needle.as_bytes().to_vec(),
            hex(needle.as_bytes()).into_bytes(),
        ];
        for (place, bytes) in &haystacks {
            if forms.iter().any(|form| contains(bytes, form)) {
                leaks.push(format!("{what} is in {place}"));
            }
        }
    }
    ensure!(leaks.is_empty(), "leaks:\n{}", leaks.join("\n"));
    Ok(())
}

/// Every archived page, decompressed, by path.
fn archive_files(root: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let raw = std::fs::read(&path)?;
            let mut text = Vec::new();
            if path.to_string_lossy().ends_with(".gz") {
                flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut text)?;
            } else {
                text = raw;
            }
            out.push((format!("the archive file {}", path.display()), text));
        }
    }
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
