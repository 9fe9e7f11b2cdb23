//! The admin API end to end (issue 16): a real server on a loopback port,
//! a real store (Postgres), the database queue, the simulator behind
//! `connect`, and a worker that runs what the API enqueues.
//!
//! What the people using it would notice: each role can do exactly what
//! the role matrix says and nothing else, every refusal and every change
//! is in the audit log under the token's name, Force Sync Now and resync
//! really sync, history pages through every attempt once, and bad input
//! gets a clear JSON 4xx that changes nothing.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use ascend_client::Resource;
use model::{ItemStatus, PracticeStatus};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use store::{AuditOutcome, Table};
use system_tests::admin_app::{App, OTHER, PRACTICE};

/// Every endpoint against every role: the status each gets. `A` admin,
/// `U` the practice user of PRACTICE, `O` the practice user of another
/// practice, `R` readonly.
#[tokio::test]
async fn every_role_gets_what_the_matrix_says_and_refusals_are_audited() -> Result<()> {
    let app = App::start().await?;
    let p = PRACTICE;
    // (method, path, body, admin, user of p, user of another, readonly)
    let ok = StatusCode::OK;
    let no = StatusCode::FORBIDDEN;
    let acc = StatusCode::ACCEPTED;
    let cases: Vec<(Method, String, Option<Value>, [StatusCode; 4])> = vec![
        (
            Method::GET,
            "/api/v1/practices".into(),
            None,
            [ok, ok, ok, ok],
        ),
        (
            Method::GET,
            format!("/api/v1/practices/{p}"),
            None,
            [ok, ok, no, ok],
        ),
        (
            Method::GET,
            format!("/api/v1/practices/{p}/settings"),
            None,
            [ok, ok, no, ok],
        ),
        (
            Method::PATCH,
            format!("/api/v1/practices/{p}/settings"),
            Some(json!({"sync_interval_minutes": 15})),
            [ok, ok, no, no],
        ),
        (
            Method::GET,
            format!("/api/v1/history?practice={p}"),
            None,
            [ok, ok, no, ok],
        ),
        (
            Method::GET,
            "/api/v1/history".into(),
            None,
            [ok, ok, ok, ok],
        ),
        (
            Method::GET,
            "/api/v1/dead-letters".into(),
            None,
            [ok, no, no, ok],
        ),
        (Method::GET, "/api/v1/outbox".into(), None, [ok, ok, ok, ok]),
        (
            Method::GET,
            format!("/api/v1/outbox?practice={p}"),
            None,
            [ok, ok, no, ok],
        ),
        (
            Method::POST,
            "/api/v1/dead-letters/redrive".into(),
            Some(json!({})),
            [ok, no, no, no],
        ),
        (
            Method::POST,
            format!("/api/v1/practices/{p}/force"),
            None,
            [acc, acc, no, no],
        ),
        (
            Method::POST,
            format!("/api/v1/practices/{OTHER}/enable"),
            None,
            [ok, no, no, no],
        ),
        (
            Method::POST,
            format!("/api/v1/practices/{OTHER}/disable"),
            None,
            [ok, no, no, no],
        ),
        (
            Method::POST,
            format!("/api/v1/practices/{p}/resync"),
            Some(json!({})),
            [no, no, no, no],
        ),
        (
            Method::POST,
            format!("/api/v1/practices/{OTHER}/remove"),
            None,
            [ok, no, no, no],
        ),
    ];
    // Resync is checked as the admin on its own (it runs a sync); here
    // only the refusals count: put the admin's expectation aside.
    let tokens = [&app.admin, &app.user, &app.other_user, &app.readonly];
    for (method, path, body, expected) in &cases {
        for (who, (token, want)) in ["admin", "user", "other user", "readonly"]
            .iter()
            .zip(tokens.iter().zip(expected))
        {
            if path.ends_with("/resync") && *who == "admin" {
                continue;
            }
            let (got, answer) = app.call(method.clone(), path, token, body.clone()).await?;
            ensure!(
                got == *want,
                "{who} {method} {path}: expected {want}, got {got} {answer}"
            );
            if got == StatusCode::FORBIDDEN {
                ensure!(
                    answer["error"]["code"] == "forbidden",
                    "a refusal is JSON with a stable code: {answer}"
                );
            }
        }
        // The queued Force Sync Now must not linger into the next case.
        app.drain().await?;
    }
    // Every refusal is in the audit log, under the token that was refused.
    let refused: Vec<_> = app
        .store
        .store
        .audit_log(None, 1000)
        .await?
        .into_iter()
        .filter(|r| r.outcome == AuditOutcome::Refused)
        .collect();
    let expected_refusals = cases
        .iter()
        .map(|(_, path, _, want)| {
            want.iter()
                .enumerate()
                .filter(|(i, s)| **s == no && !(path.ends_with("/resync") && *i == 0))
                .count()
        })
        .sum::<usize>();
    ensure!(
        refused.len() == expected_refusals,
        "{} refusals audited, {expected_refusals} expected: {refused:#?}",
        refused.len()
    );
    ensure!(
        refused
            .iter()
            .any(|r| r.actor == App::token_id(&app.readonly) && r.action == "dlq.redrive"),
        "the readonly token's refused redrive is audited under its id"
    );
    // No token, a malformed token, an unknown token: 401, JSON; the two
    // attempts with a token are audited as auth.failed, without the token.
    let forged = format!("{}_{}", &app.admin[..20], "0".repeat(64));
    for token in ["", "not-a-token", forged.as_str()] {
        let (status, body) = app
            .call(Method::GET, "/api/v1/practices", token, None)
            .await?;
        ensure!(status == StatusCode::UNAUTHORIZED, "{token:?}: {status}");
        ensure!(body["error"]["code"] == "unauthenticated", "{body}");
    }
    let failed = app.audit("auth.failed").await?;
    ensure!(failed.len() == 2, "two failed authentications: {failed:#?}");
    for row in &failed {
        let detail = row.detail.clone().unwrap_or_default();
        ensure!(
            !detail.contains(&forged) && !detail.contains("not-a-token"),
            "{detail}"
        );
    }
    ensure!(
        failed.iter().any(|r| r
            .detail
            .as_deref()
            .unwrap_or("")
            .contains(&app.admin[4..20])),
        "the forged token's public id is named: {failed:#?}"
    );
    // Changes are audited as the token's principal.
    let settings = app.audit("practice.interval").await?;
    ensure!(
        settings.iter().any(|r| r.actor == App::token_id(&app.user)),
        "the practice user's settings change is audited under its token: {settings:#?}"
    );
    let removed: Vec<_> = app
        .audit("practice.remove")
        .await?
        .into_iter()
        .filter(|r| r.outcome == AuditOutcome::Done)
        .collect();
    ensure!(
        removed.len() == 1 && removed[0].actor == App::token_id(&app.admin),
        "{removed:#?}"
    );
    Ok(())
}

/// Force Sync Now from the practice's own user runs a sync that history
/// shows; history pages through every attempt exactly once.
#[tokio::test]
async fn force_sync_now_shows_a_new_attempt_and_history_pages_through_all() -> Result<()> {
    let app = App::start().await?;
    let path = format!("/api/v1/practices/{PRACTICE}/force");
    let (status, body) = app.call(Method::POST, &path, &app.user, None).await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {body}");
    ensure!(body["outcome"] == "enqueued", "{body}");
    let job_id = body["job_id"].as_str().context("a job id")?.to_owned();
    // A second press while it is queued folds into it.
    let (_, again) = app.call(Method::POST, &path, &app.user, None).await?;
    ensure!(again["outcome"] == "already_queued", "{again}");
    app.drain().await?;
    let (status, page) = app
        .call(
            Method::GET,
            &format!("/api/v1/history?practice={PRACTICE}&limit=1"),
            &app.user,
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "{page}");
    ensure!(page["runs"][0]["job_id"] == job_id.as_str(), "{page}");
    ensure!(page["runs"][0]["trigger"] == "force", "{page}");
    ensure!(page["runs"][0]["status"] == "succeeded", "{page}");
    // Every attempt, a page of 2 at a time: each once, newest first.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("/api/v1/history?limit=2&practice={PRACTICE}");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={}", url_escape(c)));
        }
        let (status, page) = app.call(Method::GET, &url, &app.admin, None).await?;
        ensure!(status == StatusCode::OK, "{page}");
        for run in page["runs"].as_array().context("runs")? {
            seen.push(run["run_id"].as_str().context("run id")?.to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let all: Vec<String> = app
        .store
        .store
        .history(&store::HistoryQuery {
            practice_id: Some(PRACTICE.into()),
            failed_only: false,
            since: None,
            limit: 10_000,
        })
        .await?
        .into_iter()
        .map(|r| r.run_id)
        .collect();
    ensure!(
        all.len() >= 3,
        "the initial sync and the force ran: {all:?}"
    );
    ensure!(seen == all, "paged {seen:?}\nstore {all:?}");
    // One attempt's details, with its resources.
    let (status, run) = app
        .call(
            Method::GET,
            &format!("/api/v1/history/{}", seen[0]),
            &app.user,
            None,
        )
        .await?;
    ensure!(status == StatusCode::OK, "{run}");
    ensure!(
        run["resources"].as_array().is_some_and(|r| !r.is_empty()),
        "{run}"
    );
    // Another practice's user may not read it.
    let (status, _) = app
        .call(
            Method::GET,
            &format!("/api/v1/history/{}", seen[0]),
            &app.other_user,
            None,
        )
        .await?;
    ensure!(status == StatusCode::FORBIDDEN);
    // Filters: failures only (none here), and by kind.
    let (_, failures) = app
        .call(
            Method::GET,
            "/api/v1/history?status=failures",
            &app.admin,
            None,
        )
        .await?;
    ensure!(
        failures["runs"].as_array().is_some_and(|r| r.is_empty()),
        "{failures}"
    );
    let (_, incremental) = app
        .call(
            Method::GET,
            "/api/v1/history?kind=incremental",
            &app.admin,
            None,
        )
        .await?;
    ensure!(
        incremental["runs"]
            .as_array()
            .is_some_and(|r| !r.is_empty() && r.iter().all(|x| x["kind"] == "incremental")),
        "{incremental}"
    );
    Ok(())
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Settings change through the API, persist, and are audited; a resync
/// of one resource pulls it whole again and repairs a gap.
#[tokio::test]
async fn settings_persist_and_a_resync_repairs_a_gap() -> Result<()> {
    let app = App::start().await?;
    let path = format!("/api/v1/practices/{PRACTICE}/settings");
    let provider = app
        .store
        .store
        .landed_records(PRACTICE, Table::Providers)
        .await?
        .first()
        .context("a provider")?
        .id;
    let (status, body) = app
        .call(
            Method::PATCH,
            &path,
            &app.user,
            Some(json!({
                "sync_interval_minutes": 5,
                "writeback": {"sms_log": true, "call_log": false},
                "note_provider_id": provider,
                "nightly": {"start": "02:00", "end": "04:30", "time_zone": "America/Chicago"},
            })),
        )
        .await?;
    ensure!(status == StatusCode::OK, "{status} {body}");
    let (_, settings) = app.call(Method::GET, &path, &app.readonly, None).await?;
    ensure!(settings["sync_interval_minutes"] == 5, "{settings}");
    ensure!(settings["note_provider_id"] == provider, "{settings}");
    ensure!(settings["nightly"]["start"] == "02:00", "{settings}");
    ensure!(settings["nightly"]["end"] == "04:30", "{settings}");
    ensure!(
        settings["nightly"]["time_zone"] == "America/Chicago",
        "{settings}"
    );
    let sms = settings["writeback"]
        .as_array()
        .and_then(|t| t.iter().find(|x| x["type"] == "sms_log"))
        .context("sms_log")?;
    ensure!(sms["enabled"] == true, "{settings}");
    let practice = app
        .store
        .store
        .get_practice(PRACTICE)
        .await?
        .context("practice")?;
    ensure!(practice.sync_interval_minutes == 5);
    let switches = app.audit("writeback.switch").await?;
    ensure!(
        switches.iter().any(|r| r.actor == App::token_id(&app.user)
            && r.detail.as_deref().unwrap_or("").contains("sms_log")),
        "{switches:#?}"
    );
    // A gap behind the sync's back, repaired by a resync of that resource.
    let patients = app
        .store
        .store
        .landed_records(PRACTICE, Table::Patients)
        .await?;
    let victim = patients.first().context("a patient")?.id;
    app.store
        .delete_row(PRACTICE, Table::Patients, victim)
        .await?;
    let (status, body) = app
        .call(
            Method::POST,
            &format!("/api/v1/practices/{PRACTICE}/resync"),
            &app.admin,
            Some(json!({"resource": "patients"})),
        )
        .await?;
    ensure!(status == StatusCode::ACCEPTED, "{status} {body}");
    ensure!(body["resources"] == json!(["patients"]), "{body}");
    app.drain().await?;
    system_tests::assert_table_equals_source(
        &app.sim,
        0,
        &app.store.store,
        PRACTICE,
        sync_core::Scope::of(&practice),
        Resource::Patients,
    )
    .await?;
    // The resync's attempt pulled every patient again, not just changes.
    let latest = app
        .store
        .store
        .history(&store::HistoryQuery {
            practice_id: Some(PRACTICE.into()),
            failed_only: false,
            since: None,
            limit: 1,
        })
        .await?;
    let pulled = latest
        .first()
        .and_then(|r| r.resources.iter().find(|c| c.resource == "patients"))
        .map_or(0, |c| c.fetched);
    ensure!(
        usize::try_from(pulled)? >= patients.len(),
        "the resync fetched {pulled} patients of {}",
        patients.len()
    );
    let resync = app.audit("practice.resync").await?;
    ensure!(
        resync.len() == 1 && resync[0].actor == App::token_id(&app.admin),
        "{resync:#?}"
    );
    Ok(())
}

/// Bad input: a clear JSON 4xx with a stable code, and nothing changed.
#[tokio::test]
async fn bad_input_is_a_clear_4xx_and_changes_nothing() -> Result<()> {
    let app = App::start().await?;
    let settings = format!("/api/v1/practices/{PRACTICE}/settings");
    let big = "x".repeat(admin::MAX_BODY_BYTES + 1);
    let cases: Vec<(Method, String, Option<Value>, StatusCode, &str)> = vec![
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"sync_interval_minutes": 7})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"writeback": {"fax": true}})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"sync_interval_minutes": 5, "nightly": {"start": "25:00"}})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"sync_interval_minutes": 5, "nightly": {"time_zone": "Mars/Olympus"}})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"sync_interval_minutes": 5, "writeback": {"sms_log": true}})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"interval": 5})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"note_provider_id": 999_999_999_u64})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::PATCH,
            settings.clone(),
            Some(json!({"sync_interval_minutes": 5, "padding": big})),
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
        ),
        (
            Method::POST,
            format!("/api/v1/practices/{PRACTICE}/resync"),
            Some(json!({"resource": "x-rays"})),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::GET,
            "/api/v1/practices/...".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::GET,
            "/api/v1/practices/a%20b".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::GET,
            "/api/v1/practices/a%2Fb".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::GET,
            "/api/v1/practices/nobody".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/history?status=exploded".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::GET,
            "/api/v1/history?cursor=garbage".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::GET,
            "/api/v1/history?limit=0".into(),
            None,
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::POST,
            "/api/v1/practices".into(),
            Some(
                json!({"practice_id": "bad/id", "organization_id": "x", "api_base": "x",
                "token_url": "x", "client_id": "x", "client_secret": "x"}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::POST,
            "/api/v1/practices".into(),
            Some(
                json!({"practice_id": "evil-1", "organization_id": app.sim.org(0).organization_id,
                "api_base": "https://prod.hs1api.com/ascend-gateway/api",
                "token_url": "https://collector.example.com/oauth/client_credential/accesstoken",
                "client_id": "x", "client_secret": "x"}),
            ),
            StatusCode::BAD_REQUEST,
            "invalid",
        ),
        (
            Method::GET,
            "/api/v1/nothing-here".into(),
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];
    let audit_before = app.store.store.audit_log(None, 10_000).await?.len();
    for (method, path, body, want, code) in cases {
        let (got, answer) = app.call(method.clone(), &path, &app.admin, body).await?;
        ensure!(
            got == want,
            "{method} {path}: expected {want}, got {got} {answer}"
        );
        ensure!(answer["error"]["code"] == code, "{method} {path}: {answer}");
        ensure!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer}"
        );
    }
    let practice = app
        .store
        .store
        .get_practice(PRACTICE)
        .await?
        .context("practice")?;
    ensure!(practice.sync_interval_minutes == 15, "nothing changed");
    // Bad input writes no audit row, except the connect to a foreign
    // host: a refused attempt on credentials is kept as `refused`.
    let after = app.store.store.audit_log(None, 10_000).await?;
    ensure!(after.len() == audit_before + 1, "{after:#?}");
    ensure!(
        after[0].action == "practice.add"
            && after[0].outcome == AuditOutcome::Refused
            && after[0].practice_id.as_deref() == Some("evil-1"),
        "{:#?}",
        after[0]
    );
    ensure!(
        app.store.store.get_practice("evil-1").await?.is_none(),
        "nothing of the refused connect was saved"
    );
    Ok(())
}

/// Dead letters are listed and redriven; a dead write-back item is
/// retried once, and a second retry is a conflict. Health, readiness
/// and the OpenAPI document answer.
#[tokio::test]
async fn dead_letters_outbox_health_and_openapi() -> Result<()> {
    let app = App::start().await?;
    // A job that failed for good.
    let job = model::Job::for_practice(
        PracticeStatus::Active,
        "job-dead-1".into(),
        PRACTICE.into(),
        model::Trigger::Schedule,
        time::OffsetDateTime::now_utc(),
    );
    app.queue.send(&[job.outgoing(Duration::ZERO)]).await?;
    let got = app.queue.receive(1, Duration::from_secs(1)).await?;
    let delivery = got.first().context("the job")?;
    app.queue.dead_letter(delivery, "test: given up").await?;
    let direct = app.queue.dead_letters(10).await?;
    ensure!(
        direct.len() == 1,
        "dead-lettered: {direct:?} (received {delivery:?})"
    );
    let (status, letters) = app
        .call(Method::GET, "/api/v1/dead-letters", &app.readonly, None)
        .await?;
    ensure!(status == StatusCode::OK);
    ensure!(letters[0]["job_id"] == "job-dead-1", "{letters}");
    ensure!(letters[0]["practice_id"] == PRACTICE, "{letters}");
    let (status, moved) = app
        .call(
            Method::POST,
            "/api/v1/dead-letters/redrive",
            &app.admin,
            Some(json!({"message_id": letters[0]["message_id"]})),
        )
        .await?;
    ensure!(status == StatusCode::OK && moved["moved"] == 1, "{moved}");
    ensure!(app.queue.dead_letters(10).await?.is_empty());
    let redrives = app.audit("dlq.redrive").await?;
    ensure!(
        redrives
            .iter()
            .any(|r| r.actor == App::token_id(&app.admin))
    );
    app.drain().await?;

    // A write-back item given up, retried by a person.
    app.store
        .store
        .change_writeback_settings(
            PRACTICE,
            &store::SettingsChange {
                switch: vec![(model::WritebackType::CallLog, true)],
                note_provider_id: None,
            },
            "test",
        )
        .await?;
    let submitted = app
        .store
        .store
        .submit_writeback(&store::NewItem {
            practice_id: PRACTICE.into(),
            kind: model::WritebackType::CallLog,
            idempotency_key: "retry-1".into(),
            body: "{}".into(),
            submitted_by: "test".into(),
        })
        .await?;
    let item = submitted.item.item_id;
    let ended = app
        .store
        .store
        .end_writeback(
            item,
            &store::ItemEnd::Dead {
                reason: "test: refused".into(),
            },
            time::OffsetDateTime::now_utc(),
        )
        .await?;
    ensure!(ended, "the item is dead");
    let (_, listed) = app
        .call(Method::GET, "/api/v1/outbox?status=dead", &app.user, None)
        .await?;
    ensure!(listed[0]["item_id"] == item, "{listed}");
    ensure!(
        listed[0].get("body").is_none(),
        "no request body (PHI) is listed"
    );
    let retry = format!("/api/v1/outbox/{item}/retry");
    let (status, _) = app.call(Method::POST, &retry, &app.user, None).await?;
    ensure!(
        status == StatusCode::FORBIDDEN,
        "a practice user may not retry"
    );
    let (status, body) = app.call(Method::POST, &retry, &app.admin, None).await?;
    ensure!(status == StatusCode::NO_CONTENT, "{status} {body}");
    let after = app
        .store
        .store
        .writeback_item(item)
        .await?
        .context("item")?;
    ensure!(
        after.status == ItemStatus::Pending && after.attempts == 0,
        "{after:?}"
    );
    let (status, body) = app.call(Method::POST, &retry, &app.admin, None).await?;
    ensure!(
        status == StatusCode::CONFLICT && body["error"]["code"] == "conflict",
        "{body}"
    );

    // Health and readiness, without a token.
    let (status, _) = app.call(Method::GET, "/healthz", "", None).await?;
    ensure!(status == StatusCode::OK);
    let (status, ready) = app.call(Method::GET, "/readyz", "", None).await?;
    ensure!(
        status == StatusCode::OK && ready["database"] == "ok",
        "{ready}"
    );
    // The document names every endpoint the router serves.
    let (status, doc) = app.call(Method::GET, "/openapi.json", "", None).await?;
    ensure!(status == StatusCode::OK);
    let paths = doc["paths"].as_object().context("paths")?;
    for path in [
        "/api/v1/practices",
        "/api/v1/practices/{id}",
        "/api/v1/practices/{id}/settings",
        "/api/v1/practices/{id}/credentials",
        "/api/v1/practices/{id}/disable",
        "/api/v1/practices/{id}/enable",
        "/api/v1/practices/{id}/remove",
        "/api/v1/practices/{id}/force",
        "/api/v1/practices/{id}/resync",
        "/api/v1/history",
        "/api/v1/history/{run_id}",
        "/api/v1/dead-letters",
        "/api/v1/dead-letters/redrive",
        "/api/v1/outbox",
        "/api/v1/outbox/{item_id}/retry",
        "/healthz",
        "/readyz",
    ] {
        ensure!(paths.contains_key(path), "{path} is not documented");
    }
    Ok(())
}
