//! `ascend-sync pull`: pulls every resource of one organization through the
//! Ascend client with keyset paging and reports what arrived. It stores
//! nothing: it is the client's end-to-end check and benchmark until the sync
//! engine lands rows.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use ascend_client::{Connection, ListQuery, OrgClient, Resource};
use clap::Args;
use secrecy::SecretString;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::connect::{ClientArgs, connection, read_credentials_file};

#[derive(Args)]
pub struct PullArgs {
    /// A JSON file with organization_id, client_id, client_secret, api_base
    /// and token_url (the line `ascend-sync sim` prints per organization).
    #[arg(long, conflicts_with_all = ["organization_id", "client_id", "api_base", "token_url"])]
    credentials_file: Option<PathBuf>,
    /// The Organization-ID the vendor issued (24 hex digits).
    #[arg(long)]
    organization_id: Option<String>,
    /// The Client ID the vendor issued. The secret is read from stdin.
    #[arg(long, requires = "organization_id")]
    client_id: Option<String>,
    #[arg(long, default_value = "https://prod.hs1api.com/ascend-gateway/api")]
    api_base: String,
    #[arg(
        long,
        default_value = "https://prod.hs1api.com/oauth/client_credential/accesstoken"
    )]
    token_url: String,
    /// Comma-separated resources (default: all), e.g. patients,appointments.
    #[arg(long, value_delimiter = ',')]
    resources: Vec<Resource>,
    /// Resources pulled at once; they share the organization's request budget.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[command(flatten)]
    client: ClientArgs,
}

/// What one resource's pull delivered.
#[derive(Debug, Clone, Serialize)]
pub struct ResourceReport {
    pub resource: Resource,
    /// Records delivered, read or not.
    pub records: u64,
    /// Of those, records the client could not read (no usable id or
    /// `lastModified`); the sync sets such records aside in quarantine.
    pub unreadable: u64,
    pub pages: u64,
    /// `meta.pagination.total` of the first page.
    pub total_reported: Option<u64>,
    pub bytes: u64,
    pub error: Option<String>,
}

pub async fn run(args: PullArgs) -> Result<()> {
    let connection = connection_from_args(&args)?;
    let organization_id = connection.organization_id.to_string();
    let client = args.client.client()?;
    let org = client
        .connect(connection)
        .context("cannot connect to the organization")?;
    let resources = if args.resources.is_empty() {
        Resource::ALL.to_vec()
    } else {
        args.resources.clone()
    };

    let started = Instant::now();
    let reports = pull_organization(&org, &resources, args.concurrency, |_, _| {}).await;
    let elapsed = started.elapsed();
    print_summary(&organization_id, &reports, elapsed);
    if let Some(failed) = reports.iter().find(|r| r.error.is_some()) {
        bail!(
            "pulling {} failed: {}",
            failed.resource,
            failed.error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

fn connection_from_args(args: &PullArgs) -> Result<Connection> {
    let hosts = args.client.hosts()?;
    if let Some(path) = &args.credentials_file {
        return read_credentials_file(&hosts, path);
    }
    let organization_id = args
        .organization_id
        .clone()
        .context("give --credentials-file or --organization-id")?;
    let client_id = args
        .client_id
        .clone()
        .context("give --client-id with --organization-id")?;
    let mut secret = String::new();
    std::io::stdin()
        .read_to_string(&mut secret)
        .context("cannot read the client secret from stdin")?;
    let secret = SecretString::from(secret.trim().to_string());
    connection(
        &hosts,
        &organization_id,
        client_id,
        secret,
        &args.api_base,
        &args.token_url,
    )
}

/// Pulls each resource with keyset paging, `concurrency` resources at once.
/// `progress(resource, report_so_far)` is called after every page. A failing
/// resource does not stop the others; its report carries the error.
pub async fn pull_organization(
    org: &OrgClient,
    resources: &[Resource],
    concurrency: usize,
    progress: impl Fn(Resource, &ResourceReport) + Send + Sync + 'static,
) -> Vec<ResourceReport> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let progress = Arc::new(progress);
    let mut tasks = JoinSet::new();
    for (index, &resource) in resources.iter().enumerate() {
        let org = org.clone();
        let permits = permits.clone();
        let progress = progress.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let mut report = ResourceReport {
                resource,
                records: 0,
                unreadable: 0,
                pages: 0,
                total_reported: None,
                bytes: 0,
                error: None,
            };
            let mut pager = org.keyset(resource, ListQuery::default(), None);
            loop {
                match pager.next_page().await {
                    Ok(Some(page)) => {
                        if report.pages == 0 {
                            report.total_reported = page.total;
                        }
                        report.pages += 1;
                        report.records += page.entries() as u64;
                        report.unreadable += page.rejected.len() as u64;
                        report.bytes += page.bytes as u64;
                        progress(resource, &report);
                    }
                    Ok(None) => break,
                    Err(error) => {
                        report.error = Some(error.to_string());
                        break;
                    }
                }
            }
            (index, report)
        });
    }
    let mut reports: Vec<Option<ResourceReport>> = vec![None; resources.len()];
    while let Some(joined) = tasks.join_next().await {
        if let Ok((index, report)) = joined {
            reports[index] = Some(report);
        }
    }
    reports.into_iter().flatten().collect()
}

fn print_summary(organization_id: &str, reports: &[ResourceReport], elapsed: Duration) {
    let records: u64 = reports.iter().map(|r| r.records).sum();
    let bytes: u64 = reports.iter().map(|r| r.bytes).sum();
    println!("organization {organization_id}");
    println!(
        "{:<26} {:>10} {:>10} {:>8}  status",
        "resource", "records", "total", "pages"
    );
    for r in reports {
        let total = r
            .total_reported
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into());
        let status = match (&r.error, r.unreadable) {
            (Some(error), _) => error.clone(),
            (None, 0) => "ok".to_owned(),
            (None, n) => format!("ok, {n} unreadable"),
        };
        println!(
            "{:<26} {:>10} {:>10} {:>8}  {status}",
            r.resource.to_string(),
            r.records,
            total,
            r.pages
        );
    }
    let secs = elapsed.as_secs_f64().max(1e-9);
    println!(
        "pulled {records} records ({:.1} MiB) in {secs:.2} s: {:.0} records/s",
        bytes as f64 / 1_048_576.0,
        records as f64 / secs
    );
    if let Some(peak) = crate::peak_rss_bytes() {
        println!("peak memory (VmHWM) {:.1} MiB", peak as f64 / 1_048_576.0);
    }
}
