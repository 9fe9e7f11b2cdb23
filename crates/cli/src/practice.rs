//! Connecting practices and keeping their credentials: `practice add |
//! rotate-credentials | disable | enable | remove | list | audit`, `keys
//! rewrap` and `admin-token create | list | revoke`.
//!
//! These commands act as an operator holding the database's credentials
//! (the Cloud PMS Admin role, `crate::operator`): each change passes
//! [`access::Gate`] and its `control` use case, and is written to the audit
//! log as `cli:{login}`. The admin API checks bearer tokens with the same
//! gate and calls the same use cases.

use std::io::BufRead;
use std::path::PathBuf;

use access::{Action, Gate, Principal, Role};
use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use control::{Connector, NewConnection};
use secrecy::{ExposeSecret, SecretString};
use store::{DEFAULT_SYNC_INTERVAL_MINUTES, NewPractice, Practice, Store};
use vault::{KmsConfig, KmsVault, LocalVault, Vault};
use zeroize::Zeroizing;

use crate::connect::ClientArgs;
use crate::operator::{gate, operator};
use crate::runtime::StoreArgs;

/// Ascend's production API base.
const DEFAULT_API_BASE: &str = "https://prod.hs1api.com/ascend-gateway/api";
/// Ascend's production token endpoint.
const DEFAULT_TOKEN_URL: &str = "https://prod.hs1api.com/oauth/client_credential/accesstoken";

/// Where secrets are sealed: KMS (production) or a local master key file
/// (embedded mode). Exactly one.
#[derive(Args, Debug, Clone)]
pub struct VaultArgs {
    /// The KMS key (id, ARN or alias) that wraps each practice's data key.
    #[arg(
        long,
        env = "ASCEND_SYNC_KMS_KEY_ID",
        conflicts_with = "master_key_file"
    )]
    kms_key_id: Option<String>,
    /// KMS endpoint override (tests against moto, a VPC endpoint).
    #[arg(long, env = "ASCEND_SYNC_KMS_ENDPOINT")]
    kms_endpoint: Option<String>,
    /// Embedded mode: a local master key file, created (mode 0600) on
    /// first use. Never in production.
    #[arg(long, env = "ASCEND_SYNC_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
}

impl VaultArgs {
    pub async fn open(&self) -> Result<Vault> {
        match (&self.kms_key_id, &self.master_key_file) {
            (Some(key_id), None) => Ok(Vault::Kms(
                KmsVault::connect(KmsConfig {
                    endpoint_url: self.kms_endpoint.clone(),
                    region: None,
                    key_id: key_id.clone(),
                })
                .await
                .context("cannot set up the KMS client")?,
            )),
            (None, Some(path)) => Ok(Vault::Local(
                LocalVault::open(path).context("cannot open the local master key")?,
            )),
            _ => bail!(
                "say where secrets are sealed: --kms-key-id (production) or --master-key-file \
                 (embedded mode)"
            ),
        }
    }
}

#[derive(Args)]
pub struct PracticeArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// Print the practice (or the list) as JSON, a line per practice.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    action: PracticeAction,
}

#[derive(Subcommand)]
pub enum PracticeAction {
    /// Connect a practice location: one cheap call proves the credentials,
    /// the Organization-ID and the vendor's enablement, then the Client ID
    /// and Secret are sealed and stored, and the initial sync is due.
    Add(AddArgs),
    /// Replace a practice's Client ID and Secret (proved first). A practice
    /// in auth_failed resumes.
    RotateCredentials(RotateArgs),
    /// Pause a practice: no further syncs; credentials and data kept.
    Disable(PracticeIdArgs),
    /// Resume a paused or auth_failed practice (auth_failed: its stored
    /// credentials are proved first).
    Enable(EnableArgs),
    /// Destroy a practice's credentials and stop it for good; every landed
    /// row and its sync history are kept.
    Remove(RemoveArgs),
    /// Set a practice's sync interval (2, 5, 10, 15, 30, 45 or 60 minutes).
    Interval {
        #[arg(long)]
        practice_id: String,
        /// Minutes between incremental syncs.
        #[arg(long)]
        minutes: i16,
    },
    /// Pull a practice's whole history again (every synced resource, or
    /// one): its watermarks are forgotten and a Force Sync Now starts the
    /// pass. Refused while a sync of it runs, and during its initial sync.
    Resync(ResyncArgs),
    /// Show or set a practice's processing window (when the nightly role
    /// applies its captured deletes) and its own time zone.
    Window(crate::nightly::WindowArgs),
    /// Every practice: status (since when, why) and its credentials' key.
    List,
    /// The audit log, newest first.
    Audit {
        #[arg(long)]
        practice_id: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Args)]
pub struct AddArgs {
    #[arg(long)]
    practice_id: String,
    /// The Ascend Organization-ID (24 hex digits).
    #[arg(long)]
    organization_id: String,
    /// The Ascend location id of this practice; 0 syncs the whole
    /// organization (a single-location organization).
    #[arg(long)]
    location_id: i64,
    #[arg(long)]
    client_id: String,
    /// Read the Client Secret from the first line of standard input (never
    /// from an argument: arguments are visible to every user of the host).
    #[arg(long, required = true)]
    client_secret_stdin: bool,
    /// Minutes between incremental syncs: 2, 5, 10, 15, 30, 45 or 60.
    #[arg(long, default_value_t = DEFAULT_SYNC_INTERVAL_MINUTES)]
    interval: i16,
    #[arg(long, default_value = DEFAULT_API_BASE)]
    api_base: String,
    #[arg(long, default_value = DEFAULT_TOKEN_URL)]
    token_url: String,
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct RotateArgs {
    #[arg(long)]
    practice_id: String,
    #[arg(long)]
    client_id: String,
    /// Read the new Client Secret from the first line of standard input.
    #[arg(long, required = true)]
    client_secret_stdin: bool,
    /// A new token URL (default: the stored one).
    #[arg(long)]
    token_url: Option<String>,
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ResyncArgs {
    #[arg(long)]
    practice_id: String,
    /// Only this resource (`patients`, `appointments`...).
    #[arg(long)]
    resource: Option<String>,
    #[command(flatten)]
    queue: crate::runtime::QueueArgs,
}

#[derive(Args)]
pub struct PracticeIdArgs {
    #[arg(long)]
    practice_id: String,
}

#[derive(Args)]
pub struct EnableArgs {
    #[arg(long)]
    practice_id: String,
    #[command(flatten)]
    vault: VaultArgs,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct RemoveArgs {
    #[arg(long)]
    practice_id: String,
    /// Confirm: the credentials are destroyed (the data is kept).
    #[arg(long)]
    yes: bool,
}

/// The first line of standard input, as a secret (its line break removed).
fn secret_from_stdin() -> Result<SecretString> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the Client Secret from standard input")?;
    let secret = line.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("standard input held no Client Secret: pipe it in, e.g. `< secret-file`");
    }
    Ok(SecretString::from(secret))
}

pub async fn practice(args: PracticeArgs) -> Result<()> {
    let store = args.store.open().await?;
    let who = operator();
    let result = practice_action(&store, &who, args.action, args.json).await;
    store.close().await;
    result
}

async fn practice_action(
    store: &Store,
    who: &Principal,
    action: PracticeAction,
    json: bool,
) -> Result<()> {
    match action {
        PracticeAction::Add(add) => {
            gate(store, who, Action::AddPractice(add.practice_id.clone())).await?;
            add_practice(store, who, add, json).await
        }
        PracticeAction::RotateCredentials(rotate) => {
            gate(
                store,
                who,
                Action::RotateCredentials(rotate.practice_id.clone()),
            )
            .await?;
            rotate_credentials(store, who, rotate, json).await
        }
        PracticeAction::Interval {
            practice_id,
            minutes,
        } => {
            gate(store, who, Action::UpdateSettings(practice_id.clone())).await?;
            let old =
                control::admin::set_interval(store, &practice_id, minutes, &who.actor).await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"practice_id": practice_id, "old_minutes": old,
                        "sync_interval_minutes": minutes})
                );
            } else {
                println!("practice {practice_id}: every {minutes} minutes (was {old})");
            }
            Ok(())
        }
        PracticeAction::Resync(args) => {
            let tables = match args.resource.as_deref() {
                None => Vec::new(),
                Some(name) => vec![name.parse::<store::Table>().map_err(|e| {
                    anyhow::anyhow!("{e}: give one of the resources `status --practice` lists")
                })?],
            };
            gate(store, who, Action::Resync(args.practice_id.clone())).await?;
            let queue = args.queue.open(store).await?;
            let done =
                control::admin::resync(store, &queue, &args.practice_id, &tables, &who.actor)
                    .await?;
            let names: Vec<&str> = done.resources.iter().map(|t| t.as_str()).collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"practice_id": args.practice_id, "resources": names,
                        "force": format!("{:?}", done.decision)})
                );
            } else {
                println!(
                    "practice {}: {} pulled whole again by the next pass ({:?})",
                    args.practice_id,
                    names.join(", "),
                    done.decision
                );
            }
            Ok(())
        }
        PracticeAction::Disable(p) => {
            gate(store, who, Action::DisablePractice(p.practice_id.clone())).await?;
            let practice = control::disable(store, &p.practice_id, &who.actor).await?;
            print_practice("disabled", &practice, json);
            Ok(())
        }
        PracticeAction::Enable(enable) => {
            gate(
                store,
                who,
                Action::EnablePractice(enable.practice_id.clone()),
            )
            .await?;
            enable_practice(store, who, enable, json).await
        }
        PracticeAction::Remove(remove) => {
            if !remove.yes {
                bail!(
                    "remove destroys practice {:?}'s credentials (its data and history are \
                     kept); run again with --yes",
                    remove.practice_id
                );
            }
            gate(
                store,
                who,
                Action::RemovePractice(remove.practice_id.clone()),
            )
            .await?;
            let practice = control::remove(store, &remove.practice_id, &who.actor).await?;
            print_practice("removed", &practice, json);
            Ok(())
        }
        PracticeAction::Window(window) => crate::nightly::window(store, who, window).await,
        PracticeAction::List => list(store, json).await,
        PracticeAction::Audit { practice_id, limit } => {
            for r in store
                .audit_log(practice_id.as_deref(), limit.max(1))
                .await?
            {
                println!(
                    "{}  {:<8} {:<28} {:<20} {:<24} {}",
                    r.at,
                    r.outcome,
                    r.action,
                    r.practice_id.as_deref().unwrap_or("-"),
                    r.actor,
                    r.detail.as_deref().unwrap_or("")
                );
            }
            Ok(())
        }
    }
}

/// What proves and seals credentials: the store, the vault and a client.
pub(crate) async fn connector(
    store: &Store,
    vault: &VaultArgs,
    client: &ClientArgs,
) -> Result<Connector> {
    Ok(Connector {
        store: store.clone(),
        vault: vault.open().await?,
        client: client.fleet_client(store)?,
        hosts: client.hosts()?,
    })
}

async fn add_practice(store: &Store, who: &Principal, args: AddArgs, json: bool) -> Result<()> {
    let with = connector(store, &args.vault, &args.client).await?;
    let practice = control::connect(
        &with,
        NewConnection {
            practice: NewPractice {
                practice_id: args.practice_id,
                organization_id: args.organization_id,
                location_id: args.location_id,
                api_base: args.api_base,
                sync_interval_minutes: args.interval,
            },
            token_url: args.token_url,
            client_id: args.client_id,
            client_secret: secret_from_stdin()?,
        },
        &who.actor,
    )
    .await?;
    print_practice("connected", &practice, json);
    Ok(())
}

async fn rotate_credentials(
    store: &Store,
    who: &Principal,
    args: RotateArgs,
    json: bool,
) -> Result<()> {
    let with = connector(store, &args.vault, &args.client).await?;
    let practice = control::rotate_credentials(
        &with,
        &args.practice_id,
        args.token_url.as_deref(),
        args.client_id,
        secret_from_stdin()?,
        &who.actor,
    )
    .await?;
    print_practice("credentials replaced", &practice, json);
    Ok(())
}

async fn enable_practice(
    store: &Store,
    who: &Principal,
    args: EnableArgs,
    json: bool,
) -> Result<()> {
    let with = connector(store, &args.vault, &args.client).await?;
    let practice = control::enable(&with, &args.practice_id, &who.actor).await?;
    print_practice("enabled", &practice, json);
    Ok(())
}

fn print_practice(what: &str, p: &Practice, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({
                "done": what,
                "practice_id": p.practice_id,
                "organization_id": p.organization_id,
                "location_id": p.location_id,
                "status": p.status.as_str(),
                "status_detail": p.status_detail,
                "sync_interval_minutes": p.sync_interval_minutes,
            })
        );
        return;
    }
    let next = match p.status {
        store::PracticeStatus::InitialSync => "its initial sync runs from the next scheduler tick",
        store::PracticeStatus::Active => "it syncs on its interval",
        store::PracticeStatus::Paused => "it is not scheduled until enabled",
        store::PracticeStatus::AuthFailed => "it waits for new credentials",
        store::PracticeStatus::Removed => "it is never synced again; its data is kept",
    };
    println!(
        "{what} practice {} (organization {}, location {}): status {}; {next}",
        p.practice_id, p.organization_id, p.location_id, p.status
    );
}

async fn list(store: &Store, json: bool) -> Result<()> {
    let practices = store.list_practices().await?;
    let keys: std::collections::HashMap<String, String> = store
        .all_credentials()
        .await?
        .into_iter()
        .map(|(id, c)| (id, c.key_id))
        .collect();
    if !json {
        println!(
            "{:<24} {:<13} {:<27} {:<40} DETAIL",
            "PRACTICE", "STATUS", "SINCE", "KEY"
        );
    }
    for p in &practices {
        let key = keys.get(&p.practice_id).map_or("-", String::as_str);
        let since = p
            .status_changed_at
            .unwrap_or(p.created_at)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "practice_id": p.practice_id,
                    "organization_id": p.organization_id,
                    "location_id": p.location_id,
                    "status": p.status.as_str(),
                    "status_since": since,
                    "status_detail": p.status_detail,
                    "key_id": keys.get(&p.practice_id),
                })
            );
        } else {
            println!(
                "{:<24} {:<13} {:<27} {:<40} {}",
                p.practice_id,
                p.status,
                since,
                key,
                p.status_detail
                    .as_deref()
                    .and_then(|d| d.lines().next())
                    .unwrap_or("")
            );
        }
    }
    Ok(())
}

#[derive(Args)]
pub struct KeysArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    action: KeysAction,
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// Re-encrypt every practice's data key under another key (KMS
    /// ReEncrypt: no secret is decrypted here). Workers keep syncing
    /// throughout: a row opens under its old key until it is rewrapped,
    /// under the new one after. Point new seals at the new key afterwards
    /// (--kms-key-id). Safe to run again: rows already under the key are
    /// rewrapped again, harmlessly.
    Rewrap(RewrapArgs),
}

#[derive(Args)]
pub struct RewrapArgs {
    /// The key to wrap under (KMS id, ARN or alias; local: the master
    /// key's own id).
    #[arg(long)]
    to_key_id: String,
    #[command(flatten)]
    vault: VaultArgs,
}

pub async fn keys(args: KeysArgs) -> Result<()> {
    let store = args.store.open().await?;
    let who = operator();
    let KeysAction::Rewrap(RewrapArgs { to_key_id, vault }) = args.action;
    let result = async {
        gate(&store, &who, Action::RewrapKeys).await?;
        let vault = vault.open().await?;
        let report = control::admin::rewrap_keys(&store, &vault, &to_key_id, &who.actor).await?;
        println!("{}", report.summary(&to_key_id));
        if !report.failed.is_empty() {
            bail!(
                "these practices keep their old key (run again once fixed):\n{}",
                report.failed.join("\n")
            );
        }
        Ok(())
    }
    .await;
    store.close().await;
    result
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    action: TokenAction,
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// Create a bearer token for the admin API; it is printed once, on
    /// standard output, and only its hash is kept.
    Create {
        /// cloud_pms_admin, practice_user or readonly.
        #[arg(long)]
        role: String,
        /// The practice of a practice_user token.
        #[arg(long)]
        practice: Option<String>,
        /// What the token is for (shown in lists).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Every token: id, role, practice, label, creator, revoked (never a
    /// value).
    List,
    /// Revoke a token by id: it stops working at once.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

pub async fn admin_token(args: TokenArgs) -> Result<()> {
    let store = args.store.open().await?;
    let who = operator();
    let gate = Gate::new(store.clone());
    match args.action {
        TokenAction::Create {
            role,
            practice,
            label,
        } => {
            let role: Role = role.parse().map_err(anyhow::Error::new)?;
            let created = gate
                .create_token(&who, role, practice.as_deref(), &label)
                .await?;
            eprintln!(
                "created token {} ({}); it is shown once, below: keep it in a secret store",
                created.record.token_id, created.record.role
            );
            println!("{}", created.token.expose_secret());
        }
        TokenAction::List => {
            for t in store.list_admin_tokens().await? {
                println!(
                    "{:<18} {:<16} {:<20} {:<20} {:<20} {}",
                    t.token_id,
                    t.role,
                    t.practice_id.as_deref().unwrap_or("-"),
                    t.label,
                    t.created_by,
                    t.revoked_at
                        .map_or("live".to_owned(), |at| format!("revoked {at}"))
                );
            }
        }
        TokenAction::Revoke { id } => {
            if !gate.revoke_token(&who, &id).await? {
                bail!("no live token has id {id:?} (see `admin-token list`)");
            }
            println!("revoked token {id}");
        }
    }
    store.close().await;
    Ok(())
}
