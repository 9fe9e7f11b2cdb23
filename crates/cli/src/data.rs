//! `ascend-sync migrate` and `ascend-sync replay`: the store and the archive
//! without the API.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use store::Store;
use worker::{SyncConfig, Syncer};

/// Where the landed tables live.
#[derive(Args)]
pub struct DatabaseArgs {
    /// `postgres://...` (production: RDS) or `sqlite:PATH` (embedded).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

impl DatabaseArgs {
    async fn connect(&self) -> Result<Store> {
        Store::connect(&self.database_url)
            .await
            .context("cannot connect to the database")
    }
}

/// Where raw pages are archived.
#[derive(Args)]
pub struct ArchiveArgs {
    /// A local folder (embedded mode).
    #[arg(
        long,
        env = "ASCEND_SYNC_ARCHIVE_DIR",
        conflicts_with = "archive_bucket"
    )]
    archive_dir: Option<PathBuf>,
    /// An S3 bucket (production); objects are encrypted with KMS.
    #[arg(long, env = "ASCEND_SYNC_ARCHIVE_BUCKET")]
    archive_bucket: Option<String>,
    /// Key prefix inside the bucket.
    #[arg(long, env = "ASCEND_SYNC_ARCHIVE_PREFIX")]
    archive_prefix: Option<String>,
    /// KMS key for the archive's server-side encryption (default: the bucket's).
    #[arg(long, env = "ASCEND_SYNC_ARCHIVE_KMS_KEY_ID")]
    archive_kms_key_id: Option<String>,
    /// S3 endpoint override (tests against moto).
    #[arg(long, env = "ASCEND_SYNC_S3_ENDPOINT")]
    s3_endpoint: Option<String>,
}

impl ArchiveArgs {
    pub async fn open(&self) -> Result<blob::Archive> {
        match (&self.archive_dir, &self.archive_bucket) {
            (Some(dir), None) => Ok(blob::Archive::local(dir.clone())?),
            (None, Some(bucket)) => Ok(blob::Archive::s3(blob::S3Config {
                bucket: bucket.clone(),
                prefix: self.archive_prefix.clone(),
                kms_key_id: self.archive_kms_key_id.clone(),
                force_path_style: self.s3_endpoint.is_some(),
                endpoint_url: self.s3_endpoint.clone(),
                region: None,
            })
            .await?),
            _ => bail!("give the raw archive: --archive-dir DIR or --archive-bucket BUCKET"),
        }
    }
}

#[derive(Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    database: DatabaseArgs,
}

pub async fn migrate(args: MigrateArgs) -> Result<()> {
    let store = args.database.connect().await?;
    store.migrate().await.context("migrations failed")?;
    println!("migrations applied ({:?})", store.backend());
    Ok(())
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The practice whose tables are rebuilt.
    #[arg(long)]
    practice: String,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    archive: ArchiveArgs,
}

pub async fn replay(args: ReplayArgs) -> Result<()> {
    let store = args.database.connect().await?;
    // Rebuilding a practice's tables is the admin team's, as a resync is.
    let who = crate::operator::operator();
    crate::operator::gate(&store, &who, access::Action::Resync(args.practice.clone())).await?;
    let archive = args.archive.open().await?;
    let result = Syncer::new(store.clone(), archive, SyncConfig::default())
        .replay(&args.practice)
        .await;
    let entry = store::AuditEntry::done(&who.actor, "practice.replay", &args.practice);
    let entry = match &result {
        Ok(report) => entry.with_detail(format!(
            "{} pages, {} records, {} rows written, {} set aside in quarantine",
            report.pages, report.records, report.written, report.quarantined
        )),
        Err(error) => store::AuditEntry {
            outcome: store::AuditOutcome::Failed,
            ..entry.with_detail(error.to_string())
        },
    };
    store
        .record_audit(&entry)
        .await
        .context("cannot write the audit log")?;
    let report = result.with_context(|| format!("replaying practice {}", args.practice))?;
    println!(
        "replayed {} pages, {} records, {} rows written, {} set aside in quarantine for practice {}",
        report.pages, report.records, report.written, report.quarantined, args.practice
    );
    Ok(())
}
