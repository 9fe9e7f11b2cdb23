//! The admin pages in a real browser (issue 16): the server of
//! `admin_app` with a worker running beside it, driven by
//! `tests/browser/admin_pages.mjs` in headless Chromium (playwright-core,
//! Debian's `chromium`; `cargo xtask test` installs both). The script's
//! checks are the assertions; its screenshots land in
//! `target/tmp/pages/`.

use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use model::RunState;
use system_tests::admin_app::{App, OTHER, PRACTICE};
use time::OffsetDateTime;

/// A failed attempt in the practice's history, as a worker that lost
/// its connection to Ascend would have left it: what the history page's
/// failures filter and Resync button act on.
async fn a_failed_attempt(app: &App) -> Result<()> {
    let store = &app.store.store;
    let started = OffsetDateTime::now_utc() - time::Duration::minutes(3);
    store
        .start_run(&store::NewRun {
            run_id: "run-failed-for-the-browser".into(),
            job_id: "job-failed-for-the-browser".into(),
            practice_id: PRACTICE.into(),
            kind: "incremental".into(),
            trigger: "schedule".into(),
            attempt: 1,
            worker: Some("worker-gone".into()),
            started_at: started,
        })
        .await?;
    store
        .finish_run(
            "run-failed-for-the-browser",
            &store::RunEnd {
                status: RunState::Failed,
                ended_at: started + time::Duration::seconds(20),
                resources: Vec::new(),
                fetched: 0,
                written: 0,
                api_calls: 3,
                bytes: 0,
                error_class: Some("transient".into()),
                error_message: Some("connection reset by Ascend after 3 tries".into()),
            },
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn the_pages_work_in_a_real_browser() -> Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("browser/admin_pages.mjs");
    ensure!(
        root.join("browser/node_modules/playwright-core").exists(),
        "playwright-core is not installed in tests/browser: run the tests with `cargo xtask \
         test`, which installs it (npm ci)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    ensure!(
        std::path::Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run the tests with `cargo xtask test`, which installs \
         Debian's chromium"
    );
    let app = App::start().await?;
    a_failed_attempt(&app).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = app.worker.clone();
    let running = tokio::spawn(async move { worker.run(stopped).await });
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages");
    let output = tokio::time::timeout(
        Duration::from_secs(240),
        tokio::process::Command::new("node")
            .arg(&script)
            .env("BASE_URL", app.base.replace("127.0.0.1", "localhost"))
            .env("ADMIN_TOKEN", &app.admin)
            .env("USER_TOKEN", &app.user)
            .env("PRACTICE", PRACTICE)
            .env("OTHER", OTHER)
            .env("SCREENSHOT_DIR", &shots)
            .env("CHROMIUM", &chromium)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the browser checks took more than 4 minutes")??;
    let _ = stop.send(true);
    let _ = running.await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    ensure!(
        output.status.success(),
        "the browser checks failed:\n{stdout}\n{stderr}"
    );
    ensure!(stdout.contains("all browser checks passed"), "{stdout}");
    for page in [
        "practices",
        "settings",
        "history",
        "dead-letters",
        "refused",
    ] {
        let shot = shots.join(format!("{page}.png"));
        ensure!(
            std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
            "no screenshot of the {page} page at {}",
            shot.display()
        );
    }
    // The resync the browser asked for is audited as the admin's token.
    let resync = app.audit("practice.resync").await?;
    ensure!(
        resync.len() == 1 && resync[0].actor == App::token_id(&app.admin),
        "{resync:#?}"
    );
    Ok(())
}
