//! The raw archive: every page fetched from the Ascend API, kept as it was
//! received, so a practice's tables can be rebuilt without a single API call
//! (`ascend-sync replay --practice P`).
//!
//! A page is gzipped JSON Lines ([`encode_page`], [`decode_page`]): one
//! record per line, exactly the JSON text received. It is stored under its
//! [`PageKey`], `raw/{practice}/{resource}/{yyyy-mm-dd}/{run}/{seq:010}.jsonl.gz`,
//! in one of two places behind one [`Archive`]:
//!
//! - **S3** (production): every object written with server-side encryption
//!   `aws:kms` (a configured key, or the bucket's default `aws/s3` key), an
//!   optional key prefix, ListObjectsV2 paginated to the end;
//! - **a local folder** (embedded mode): files 0600, folders 0700, each
//!   write atomic (temporary file, fsync, rename).
//!
//! Writing a page again under the same key replaces it, so a retried page is
//! harmless. [`Archive::list_pages`] returns a practice's pages in replay
//! order (date, run, resource, sequence).
//!
//! **Invariants.** Records are PHI: no error or log line carries a record's
//! text. Every key component is checked before it reaches storage
//! ([`PageKey::validate`]): no input can name an object outside the
//! configured prefix or a file outside the archive folder, and one practice's
//! listing never returns another's pages. Decoding never panics on damaged
//! bytes; it names what is wrong.

mod error;
mod key;
mod local;
mod page;
mod s3;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::PathBuf;

pub use error::BlobError;
pub use key::PageKey;
pub use local::LocalArchive;
pub use page::{MAX_PAGE_BYTES, decode_page, encode_page};
pub use s3::{S3Archive, S3Config};

/// Where pages are archived: S3 or a local folder. Cheap to clone; clones
/// share the S3 client.
#[derive(Debug, Clone)]
pub enum Archive {
    /// An S3 bucket (production).
    S3(S3Archive),
    /// A local folder (embedded mode).
    Local(LocalArchive),
}

impl Archive {
    /// The archive in S3, configured from the environment's AWS settings
    /// with `config`'s overrides. Checks the configuration but makes no
    /// request; see [`S3Archive::connect`].
    pub async fn s3(config: S3Config) -> Result<Archive, BlobError> {
        S3Archive::connect(config).await.map(Archive::S3)
    }

    /// The archive in the folder `root`, created (0700) if missing.
    pub fn local(root: PathBuf) -> Result<Archive, BlobError> {
        LocalArchive::open(root).map(Archive::Local)
    }

    /// Archives a page under `key`, replacing any page already there.
    /// Returns the bytes written (compressed).
    ///
    /// Refuses an invalid key ([`BlobError::InvalidKey`]) or a record that
    /// cannot be one line ([`BlobError::BadRecord`]) before writing anything.
    pub async fn put_page(&self, key: &PageKey, records: &[&str]) -> Result<u64, BlobError> {
        match self {
            Archive::S3(s3) => s3.put_page(key, records).await,
            Archive::Local(local) => local.put_page(key, records).await,
        }
    }

    /// Every page archived for `practice_id`, in replay order: by date, run
    /// id, resource, then sequence ([`PageKey`]'s [`Ord`]).
    ///
    /// Objects or files under the practice that are not page keys are
    /// skipped with a warning (a crashed local write's temporary file
    /// silently).
    pub async fn list_pages(&self, practice_id: &str) -> Result<Vec<PageKey>, BlobError> {
        match self {
            Archive::S3(s3) => s3.list_pages(practice_id).await,
            Archive::Local(local) => local.list_pages(practice_id).await,
        }
    }

    /// The records of the page under `key`, as they were received.
    ///
    /// [`BlobError::NotFound`] when there is none; [`BlobError::BadArchive`]
    /// naming the object when its bytes are damaged.
    pub async fn get_page(&self, key: &PageKey) -> Result<Vec<String>, BlobError> {
        match self {
            Archive::S3(s3) => s3.get_page(key).await,
            Archive::Local(local) => local.get_page(key).await,
        }
    }
}

impl fmt::Display for Archive {
    /// `s3://bucket/prefix/` or the folder's path, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Archive::S3(s3) => write!(f, "s3://{}/{}", s3.bucket(), s3.prefix()),
            Archive::Local(local) => write!(f, "{}", local.root().display()),
        }
    }
}

/// Runs blocking work (compression, file I/O) off the async threads.
async fn run_blocking<T, F>(operation: &'static str, work: F) -> Result<T, BlobError>
where
    F: FnOnce() -> Result<T, BlobError> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| BlobError::Interrupted {
            operation,
            message: err.to_string(),
        })?
}
