//! The binary as an operator runs it, against SQLite: `writeback` (issue
//! 15: a practice synced by `ascend-sync sync`, its switches shown and
//! changed, a request submitted from a file twice, bad requests refused,
//! the outbox listed), and the checks and audit rows of issue 16's
//! security points (practice ids at connect; every changing command gated
//! and audited as the operator, the system login; a practice's URLs held
//! to the vendor's hosts unless a test host is allowed).

use std::process::{Command, Output};

use anyhow::{Context, Result, ensure};
use ascend_sim::{SimConfig, Size};
use serde_json::{Value, json};
use store::{Store, Table};
use system_tests::{SIM_HOST, Sim, TempDir, cli_operator};

const BIN: &str = env!("CARGO_BIN_EXE_ascend-sync");

fn run(args: &[&str], db: &str) -> Result<Output> {
    Command::new(BIN)
        .args(args)
        .env("DATABASE_URL", db)
        // Not read any more: the actor is the system login.
        .env("ASCEND_SYNC_ACTOR", "cli:not-the-operator")
        .output()
        .context("cannot run ascend-sync")
}

fn ok(args: &[&str], db: &str) -> Result<String> {
    let out = run(args, db)?;
    ensure!(
        out.status.success(),
        "ascend-sync {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn refused(args: &[&str], db: &str) -> Result<String> {
    let out = run(args, db)?;
    ensure!(!out.status.success(), "ascend-sync {args:?} was accepted");
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A simulator and practice `p1` of its organization 0, synced by
/// `ascend-sync sync` into a SQLite file in `dir`; the database URL.
async fn synced(dir: &TempDir) -> Result<(Sim, String)> {
    let sim = Sim::start(SimConfig {
        size: Size::Tiny,
        ..SimConfig::default()
    })
    .await?;
    let db = format!("sqlite:{}", dir.path().join("db.sqlite").display());
    let info = sim.org(0);
    let creds = dir.path().join("creds.jsonl");
    std::fs::write(
        &creds,
        json!({
            "organization_id": info.organization_id,
            "client_id": info.client_id,
            "client_secret": info.client_secret,
            "api_base": info.api_base,
            "token_url": info.token_url,
        })
        .to_string(),
    )?;
    let location = info.location_ids.first().context("no location")?.clone();
    let archive = dir.path().join("archive");
    ok(
        &[
            "sync",
            "--credentials-file",
            &creds.to_string_lossy(),
            "--practice-id",
            "p1",
            "--location-id",
            &location,
            "--archive-dir",
            &archive.to_string_lossy(),
            "--requests-per-second",
            "1000",
            "--insecure-loopback",
            "--allow-test-host",
            SIM_HOST,
        ],
        &db,
    )?;
    Ok((sim, db))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_switches_submits_and_lists() -> Result<()> {
    let dir = TempDir::new("writeback-cli")?;
    let (sim, db) = synced(&dir).await?;
    let store = Store::connect(&db).await?;
    let patient = store
        .landed_records("p1", Table::Patients)
        .await?
        .first()
        .context("no patient landed")?
        .id;
    let provider = store
        .landed_records("p1", Table::Providers)
        .await?
        .first()
        .context("no provider landed")?
        .id;
    store.close().await;

    // Every type is off at first.
    let shown: Value = serde_json::from_str(&ok(
        &["writeback", "settings", "--practice", "p1", "--json"],
        &db,
    )?)?;
    let types = shown["types"].as_array().context("no types")?;
    ensure!(
        types.len() == 7 && types.iter().all(|t| t["enabled"] == false),
        "{shown}"
    );
    // sms_log needs a provider.
    let err = refused(
        &[
            "writeback",
            "settings",
            "--practice",
            "p1",
            "--enable",
            "sms_log",
        ],
        &db,
    )?;
    ensure!(err.contains("provider"), "{err}");
    let table = ok(
        &[
            "writeback",
            "settings",
            "--practice",
            "p1",
            "--enable",
            "sms_log",
            "--note-provider",
            &provider.to_string(),
        ],
        &db,
    )?;
    ensure!(
        table.contains("sms_log") && table.contains(&cli_operator()?),
        "{table}"
    );

    // A request from a file, with its key inside; the same file again stores
    // nothing.
    let request = dir.path().join("sms.json");
    std::fs::write(
        &request,
        json!({"idempotency_key": "sms-8812", "patient_id": patient.to_string(),
               "direction": "outbound", "text": "See you at 9", "sent_at": "2026-12-04T10:00:00Z"})
        .to_string(),
    )?;
    let args = [
        "writeback",
        "submit",
        "--practice",
        "p1",
        "--type",
        "sms_log",
        "--json",
        &request.to_string_lossy(),
    ];
    let first = ok(&args, &db)?;
    ensure!(first.contains("stored; pending"), "{first}");
    let second = ok(&args, &db)?;
    ensure!(second.contains("already in the outbox"), "{second}");
    let listed: Value = serde_json::from_str(
        ok(&["writeback", "list", "--practice", "p1", "--json"], &db)?
            .lines()
            .next()
            .context("one item listed")?,
    )?;
    ensure!(
        listed["submitted_by"] == cli_operator()?.as_str(),
        "the item records the operator as its submitter: {listed}"
    );
    // A type that is off is held, and a bad request is refused.
    let call = dir.path().join("call.json");
    std::fs::write(
        &call,
        json!({"patient_id": patient, "direction": "inbound", "summary": "s", "at": "2026-12-04T10:00:00Z"})
            .to_string(),
    )?;
    let held = ok(
        &[
            "writeback",
            "submit",
            "--practice",
            "p1",
            "--type",
            "call_log",
            "--json",
            &call.to_string_lossy(),
            "--key",
            "call-1",
        ],
        &db,
    )?;
    ensure!(held.contains("held: call_log is off"), "{held}");
    let err = refused(
        &[
            "writeback",
            "submit",
            "--practice",
            "p1",
            "--type",
            "call_log",
            "--json",
            &call.to_string_lossy(),
        ],
        &db,
    )?;
    ensure!(err.contains("idempotency key"), "{err}");
    let err = refused(
        &[
            "writeback",
            "submit",
            "--practice",
            "p1",
            "--type",
            "fax",
            "--json",
            &call.to_string_lossy(),
            "--key",
            "k",
        ],
        &db,
    )?;
    ensure!(err.contains("not a valid write-back type"), "{err}");

    let listed = ok(&["writeback", "list", "--practice", "p1", "--json"], &db)?;
    let items: Vec<Value> = listed
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let statuses: Vec<(&str, &str)> = items
        .iter()
        .map(|i| {
            (
                i["type"].as_str().unwrap_or_default(),
                i["status"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    ensure!(
        statuses == [("call_log", "blocked"), ("sms_log", "pending")],
        "{statuses:?}"
    );
    sim.shutdown().await;
    Ok(())
}

/// A practice id that would fail archive keys and job ids later is refused
/// when the practice is connected, before any call or any row.
#[tokio::test]
async fn a_practice_id_outside_the_allowed_set_is_refused_at_connect() -> Result<()> {
    let dir = TempDir::new("bad-practice-id")?;
    let db = format!("sqlite:{}", dir.path().join("db.sqlite").display());
    ok(&["migrate"], &db)?;
    let key = dir.path().join("master.key");
    for bad in ["../escape", "has space", "a/b", ".."] {
        let mut child = Command::new(BIN)
            .args([
                "practice",
                "add",
                "--practice-id",
                bad,
                "--organization-id",
                "0123456789abcdef01234567",
                "--location-id",
                "0",
                "--client-id",
                "id",
                "--client-secret-stdin",
                "--master-key-file",
                &key.to_string_lossy(),
            ])
            .env("DATABASE_URL", &db)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin.write_all(b"secret\n")?;
        }
        let out = child.wait_with_output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(!out.status.success(), "practice id {bad:?} was accepted");
        ensure!(err.contains("1 to 64 characters"), "{bad:?}: {err}");
        let err = refused(
            &[
                "sync",
                "--credentials-file",
                "/nonexistent",
                "--practice-id",
                bad,
                "--archive-dir",
                &dir.path().join("archive").to_string_lossy(),
            ],
            &db,
        )?;
        ensure!(err.contains("1 to 64 characters"), "{bad:?}: {err}");
    }
    let store = Store::connect(&db).await?;
    ensure!(
        store.list_practices().await?.is_empty(),
        "a practice was stored"
    );
    store.close().await;
    Ok(())
}

/// `force` and `dlq redrive` pass the Gate and are audited with the
/// operator as the actor; a refused force is audited as refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_and_redrive_are_audited_as_the_operator() -> Result<()> {
    let dir = TempDir::new("force-audit")?;
    let (sim, db) = synced(&dir).await?;
    let forced = ok(&["force", "--practice-id", "p1"], &db)?;
    ensure!(forced.contains("enqueued job"), "{forced}");
    let redriven = ok(&["dlq", "redrive", "--all"], &db)?;
    ensure!(redriven.contains("moved 0 job(s)"), "{redriven}");
    ok(&["practice", "disable", "--practice-id", "p1"], &db)?;
    let err = refused(&["force", "--practice-id", "p1"], &db)?;
    ensure!(err.contains("paused"), "{err}");
    let store = Store::connect(&db).await?;
    let audit = store.audit_log(None, 100).await?;
    store.close().await;
    let rows: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|a| a.action == "practice.force" || a.action == "dlq.redrive")
        .map(|a| (a.action.as_str(), a.outcome.as_str(), a.actor.as_str()))
        .collect();
    let operator = cli_operator()?;
    for expected in [
        ("practice.force", "done", operator.as_str()),
        ("dlq.redrive", "done", operator.as_str()),
        ("practice.force", "refused", operator.as_str()),
    ] {
        ensure!(
            rows.contains(&expected),
            "no audit row {expected:?} in {rows:?}"
        );
    }
    sim.shutdown().await;
    Ok(())
}

/// `practice add` for organization 0 of `sim` as `practice_id`, the
/// secret on standard input, with `extra` arguments.
fn add(sim: &Sim, db: &str, key: &str, practice_id: &str, extra: &[&str]) -> Result<Output> {
    let info = sim.org(0);
    let mut child = Command::new(BIN)
        .args([
            "practice",
            "add",
            "--practice-id",
            practice_id,
            "--organization-id",
            &info.organization_id,
            "--location-id",
            "0",
            "--client-id",
            &info.client_id,
            "--client-secret-stdin",
            "--api-base",
            &info.api_base,
            "--token-url",
            &info.token_url,
            "--master-key-file",
            key,
            "--insecure-loopback",
        ])
        .args(extra)
        .env("DATABASE_URL", db)
        .env("ASCEND_SYNC_ACTOR", "cli:not-the-operator")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write;
        stdin.write_all(format!("{}\n", info.client_secret).as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// Every command that changes something passes the gate and is audited
/// with the operator (the system login) as the actor, whatever
/// `ASCEND_SYNC_ACTOR` says; `--actor` is no longer accepted. A practice
/// added with the simulator's URLs is refused unless the test host is
/// allowed, and the refusal is audited too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_changing_command_is_audited_as_the_operator() -> Result<()> {
    let dir = TempDir::new("operator-audit")?;
    let (sim, db) = synced(&dir).await?;
    let key = dir.path().join("master.key").to_string_lossy().into_owned();
    let operator = cli_operator()?;
    let info = sim.org(0).clone();
    let key_id = vault::LocalVault::open(std::path::Path::new(&key))?
        .key_id()
        .to_owned();

    // The simulator is not a vendor host: refused until allowed.
    let out = add(&sim, &db, &key, "p2", &[])?;
    ensure!(!out.status.success(), "a non-vendor host was accepted");
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        err.contains("prod.hs1api.com") && err.contains("ASCEND_SYNC_ALLOW_TEST_HOST"),
        "{err}"
    );
    let out = add(&sim, &db, &key, "p2", &["--allow-test-host", SIM_HOST])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let commands: Vec<Vec<&str>> = vec![
        vec![
            "practice",
            "window",
            "--practice-id",
            "p1",
            "--start",
            "02:00",
            "--end",
            "04:00",
        ],
        vec!["practice", "disable", "--practice-id", "p1"],
        vec![
            "practice",
            "enable",
            "--practice-id",
            "p1",
            "--master-key-file",
            &key,
        ],
        vec![
            "budget",
            "set",
            "--organization-id",
            &info.organization_id,
            "--requests-per-second",
            "50",
        ],
        vec![
            "admin-token",
            "create",
            "--role",
            "readonly",
            "--label",
            "audit-test",
        ],
        vec![
            "writeback",
            "settings",
            "--practice",
            "p1",
            "--enable",
            "call_log",
        ],
        vec![
            "keys",
            "rewrap",
            "--to-key-id",
            &key_id,
            "--master-key-file",
            &key,
        ],
        vec!["practice", "remove", "--practice-id", "p2", "--yes"],
    ];
    for command in &commands {
        ok(command, &db)?;
    }
    let store = Store::connect(&db).await?;
    let token = store
        .list_admin_tokens()
        .await?
        .into_iter()
        .find(|t| t.label == "audit-test")
        .context("the token was created")?;
    store.close().await;
    ok(&["admin-token", "revoke", "--id", &token.token_id], &db)?;
    let err = refused(
        &[
            "practice",
            "disable",
            "--practice-id",
            "p1",
            "--actor",
            "mallory",
        ],
        &db,
    )?;
    ensure!(err.contains("--actor"), "free text is not an actor: {err}");

    let store = Store::connect(&db).await?;
    let audit = store.audit_log(None, 1000).await?;
    store.close().await;
    ensure!(
        token.created_by == operator,
        "the token's creator is the operator: {}",
        token.created_by
    );
    for (action, outcome) in [
        ("practice.register", "done"),
        ("practice.add", "refused"),
        ("practice.add", "done"),
        ("practice.window", "done"),
        ("practice.disable", "done"),
        ("practice.enable", "done"),
        ("budget.set", "done"),
        ("admin-token.create", "done"),
        ("admin-token.revoke", "done"),
        ("writeback.switch", "done"),
        ("keys.rewrap", "done"),
        ("practice.remove", "done"),
    ] {
        ensure!(
            audit.iter().any(|a| a.action == action
                && a.outcome.as_str() == outcome
                && a.actor == operator),
            "no {action} {outcome} by {operator} in {:?}",
            audit
                .iter()
                .map(|a| (a.action.as_str(), a.outcome.as_str(), a.actor.as_str()))
                .collect::<Vec<_>>()
        );
    }
    ensure!(
        audit.iter().all(|a| a.actor == operator),
        "every row is the operator's: {:?}",
        audit.iter().map(|a| &a.actor).collect::<Vec<_>>()
    );
    sim.shutdown().await;
    Ok(())
}

/// The admin API's other changes as CLI commands (issue 16): a practice's
/// interval, a resync, a retry of a write-back item given up; each with
/// `--json`, each gated and audited as the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_resync_and_retry_are_commands_too() -> Result<()> {
    let dir = TempDir::new("admin-commands")?;
    let (sim, db) = synced(&dir).await?;
    let out = ok(
        &[
            "practice",
            "interval",
            "--practice-id",
            "p1",
            "--minutes",
            "5",
            "--json",
        ],
        &db,
    )?;
    let line: Value = serde_json::from_str(out.trim())?;
    ensure!(
        line["old_minutes"] == 15 && line["sync_interval_minutes"] == 5,
        "{line}"
    );
    let err = refused(
        &[
            "practice",
            "interval",
            "--practice-id",
            "p1",
            "--minutes",
            "7",
        ],
        &db,
    )?;
    ensure!(err.contains("not offered"), "{err}");
    let out = ok(
        &[
            "practice",
            "resync",
            "--practice-id",
            "p1",
            "--resource",
            "patients",
            "--json",
        ],
        &db,
    )?;
    let line: Value = serde_json::from_str(out.trim())?;
    ensure!(line["resources"] == json!(["patients"]), "{line}");
    let err = refused(
        &[
            "practice",
            "resync",
            "--practice-id",
            "p1",
            "--resource",
            "x-rays",
        ],
        &db,
    )?;
    ensure!(err.contains("x-rays"), "{err}");
    // A dead item, retried.
    let store = Store::connect(&db).await?;
    store
        .change_writeback_settings(
            "p1",
            &store::SettingsChange {
                switch: vec![(model::WritebackType::CallLog, true)],
                note_provider_id: None,
            },
            "test",
        )
        .await?;
    let item = store
        .submit_writeback(&store::NewItem {
            practice_id: "p1".into(),
            kind: model::WritebackType::CallLog,
            idempotency_key: "cli-retry-1".into(),
            body: "{}".into(),
            submitted_by: "test".into(),
        })
        .await?
        .item
        .item_id;
    store
        .end_writeback(
            item,
            &store::ItemEnd::Dead {
                reason: "test".into(),
            },
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    let out = ok(
        &["writeback", "retry", "--item", &item.to_string(), "--json"],
        &db,
    )?;
    let line: Value = serde_json::from_str(out.trim())?;
    ensure!(line["status"] == "pending", "{line}");
    let err = refused(&["writeback", "retry", "--item", &item.to_string()], &db)?;
    ensure!(err.contains("only dead and failed"), "{err}");
    // Rebuilding the tables from the archive is gated and audited too.
    let archive = dir.path().join("archive");
    let out = ok(
        &[
            "replay",
            "--practice",
            "p1",
            "--archive-dir",
            &archive.to_string_lossy(),
        ],
        &db,
    )?;
    ensure!(out.contains("replayed"), "{out}");
    let audit = store.audit_log(None, 200).await?;
    store.close().await;
    let operator = cli_operator()?;
    for action in [
        "practice.interval",
        "practice.resync",
        "writeback.retry",
        "practice.replay",
    ] {
        ensure!(
            audit
                .iter()
                .any(|a| a.action == action && a.actor == operator && a.outcome.as_str() == "done"),
            "no {action} audit row by {operator}"
        );
    }
    sim.shutdown().await;
    Ok(())
}
