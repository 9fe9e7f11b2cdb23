//! `ascend-sync demo`: everything embedded on one machine. Starts the
//! simulator, pulls every organization through the real client with a
//! progress bar per resource, then checks each resource's count against the
//! simulator's own snapshot.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ascend_client::{AscendClient, ClientConfig, Connection, InsecureLoopback, Resource};
use ascend_sim::{SimConfig, Size};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use secrecy::SecretString;
use url::Url;

use crate::pull::pull_organization;

#[derive(Args)]
pub struct DemoArgs {
    /// Organizations the simulator serves.
    #[arg(long, default_value_t = 3)]
    orgs: usize,
    /// Data volume per organization.
    #[arg(long, default_value = "small")]
    size: Size,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub async fn run(args: DemoArgs) -> Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = ascend_sim::spawn(
        SimConfig {
            orgs: args.orgs,
            size: args.size,
            seed: args.seed,
            ..SimConfig::default()
        },
        listener,
    )
    .await
    .context("the simulator could not start")?;
    println!(
        "simulator serving {} organizations at {}",
        sim.orgs().len(),
        sim.base_url()
    );

    let mut config = ClientConfig::default();
    config.requests_per_second = std::num::NonZeroU32::new(200).context("rate")?;
    config.burst = config.requests_per_second;
    config.insecure_loopback = InsecureLoopback::allow_for_local_testing();
    let client = AscendClient::new(config)?;
    let http = reqwest::Client::new();
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>40} [{bar:30}] {pos:>7}/{len:7} {msg}")
        .context("progress template")?
        .progress_chars("=> ");

    let started = Instant::now();
    let mut mismatches = Vec::new();
    let mut total_records = 0u64;
    for info in sim.orgs() {
        let org = client.connect(Connection {
            api_base: Url::parse(&info.api_base)?,
            token_url: Url::parse(&info.token_url)?,
            organization_id: info.organization_id.parse()?,
            client_id: info.client_id.clone(),
            client_secret: SecretString::from(info.client_secret.clone()),
        })?;
        let org_bar: Vec<(Resource, ProgressBar)> = Resource::ALL
            .iter()
            .map(|&r| {
                let bar = bars.add(ProgressBar::new(0).with_style(style.clone()));
                bar.set_prefix(format!("{} {}", &info.organization_id[..8], r));
                (r, bar)
            })
            .collect();
        let lookup = org_bar.clone();
        let reports = pull_organization(&org, Resource::ALL, 4, move |resource, report| {
            if let Some((_, bar)) = lookup.iter().find(|(r, _)| *r == resource) {
                if let Some(total) = report.total_reported {
                    bar.set_length(total);
                }
                bar.set_position(report.records);
            }
        })
        .await;
        for report in &reports {
            let bar = org_bar
                .iter()
                .find(|(r, _)| *r == report.resource)
                .map(|(_, b)| b);
            let expected = snapshot_len(
                &http,
                &sim.base_url(),
                &info.organization_id,
                report.resource,
            )
            .await?;
            total_records += report.records;
            let verdict = match (&report.error, expected) {
                (Some(error), _) => format!("failed: {error}"),
                (None, n) if n == report.records => "= simulator".to_string(),
                (None, n) => {
                    mismatches.push(format!(
                        "{} {}: pulled {} but simulator holds {n}",
                        info.organization_id, report.resource, report.records
                    ));
                    format!("MISMATCH (simulator holds {n})")
                }
            };
            if let Some(bar) = bar {
                bar.finish_with_message(verdict.clone());
            }
            if bars.is_hidden() {
                println!(
                    "{} {:<24} {:>7} records  {verdict}",
                    &info.organization_id[..8],
                    report.resource.to_string(),
                    report.records
                );
            }
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    println!(
        "pulled {total_records} records in {secs:.1} s ({:.0} records/s)",
        total_records as f64 / secs
    );
    sim.shutdown().await;
    if !mismatches.is_empty() {
        bail!(
            "the pull does not match the simulator:\n{}",
            mismatches.join("\n")
        );
    }
    Ok(())
}

/// Number of live records of a resource, from the simulator's control API.
async fn snapshot_len(
    http: &reqwest::Client,
    base: &str,
    org: &str,
    resource: Resource,
) -> Result<u64> {
    let path = resource.path().trim_start_matches("/v1/");
    let url = format!("{base}/_sim/orgs/{org}/snapshot/{path}");
    let entries: Vec<serde_json::Value> = http
        .get(&url)
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .with_context(|| format!("simulator snapshot {url}"))?
        .json()
        .await
        .with_context(|| format!("simulator snapshot {url} is not JSON"))?;
    Ok(entries.len() as u64)
}
