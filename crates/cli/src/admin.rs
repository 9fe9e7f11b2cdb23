//! `ascend-sync admin`: serves the admin API and pages.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;

use crate::connect::ClientArgs;
use crate::practice::{VaultArgs, connector};
use crate::runtime::{QueueArgs, StoreArgs, shutdown_signal};

#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(flatten)]
    queue: QueueArgs,
    /// Where connected practices' credentials are sealed.
    #[command(flatten)]
    vault: VaultArgs,
    /// How connect and rotate prove credentials with Ascend.
    #[command(flatten)]
    client: ClientArgs,
    /// Where to listen. Behind a TLS-terminating load balancer in
    /// production: the session cookie is `Secure`.
    #[arg(
        long,
        env = "ASCEND_SYNC_ADMIN_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    listen: SocketAddr,
    /// Print the OpenAPI document and exit.
    #[arg(long)]
    openapi: bool,
}

pub async fn run(args: AdminArgs) -> Result<()> {
    if args.openapi {
        println!("{}", admin::openapi_json());
        return Ok(());
    }
    let store = args.store.open().await?;
    let queue = args.queue.open(&store).await?;
    let connector = connector(&store, &args.vault, &args.client).await?;
    let state = admin::AdminState::new(store.clone(), queue, connector);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener
        .local_addr()
        .context("the listener has no address")?;
    eprintln!("admin: serving http://{addr}/ (API under /api/v1, document at /openapi.json)");
    let mut stop = shutdown_signal();
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    admin::serve(listener, state, shutdown)
        .await
        .context("the admin server failed")?;
    store.close().await;
    Ok(())
}
