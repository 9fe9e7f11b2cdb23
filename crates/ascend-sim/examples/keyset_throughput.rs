//! Pulls one resource of a large simulated organization by keyset pages of
//! 500 over HTTP and prints the records per second the simulator served.
//!
//! `cargo run --release -p ascend-sim --example keyset_throughput [resource] [size]`

use std::time::Instant;

use anyhow::{Context, Result};
use ascend_sim::{SimConfig, Size};
use serde_json::Value;

/// Only what paging needs; the rest of each record is skipped.
#[derive(serde::Deserialize)]
struct Page {
    data: Vec<IdOnly>,
}

#[derive(serde::Deserialize)]
struct IdOnly {
    id: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let resource = args.next().unwrap_or_else(|| "patientprocedures".into());
    let size: Size = args.next().as_deref().unwrap_or("large").parse()?;
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sim = ascend_sim::spawn(
        SimConfig {
            size,
            ..SimConfig::default()
        },
        listener,
    )
    .await?;
    println!("started in {:?}", started.elapsed());
    let org = sim.orgs().first().context("no org")?.clone();
    let http = reqwest::Client::new();
    let token: Value = http
        .post(format!("{}?grant_type=client_credentials", org.token_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "client_id={}&client_secret={}",
            org.client_id, org.client_secret
        ))
        .send()
        .await?
        .json()
        .await?;
    let token = token["access_token"]
        .as_str()
        .context("no token")?
        .to_string();
    let t0 = Instant::now();
    let (mut records, mut bytes, mut last) = (0usize, 0usize, String::new());
    loop {
        let mut url = format!("{}/v1/{resource}?pageSize=500", org.api_base);
        if !last.is_empty() {
            url.push_str(&format!("&lastId={last}"));
        }
        let body = http
            .get(url)
            .bearer_auth(&token)
            .header("Organization-ID", &org.organization_id)
            .send()
            .await?
            .bytes()
            .await?;
        bytes += body.len();
        let page: Page = serde_json::from_slice(&body)?;
        records += page.data.len();
        if page.data.len() < 500 {
            break;
        }
        last = page.data.last().context("no record")?.id.clone();
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{records} {resource} in {secs:.2} s: {:.0} records/s, {:.1} MB/s (client parsing included)",
        records as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    sim.shutdown().await;
    Ok(())
}
