//! The archive's errors: each says what happened and what an operator does.
//!
//! No error carries a record's text: records are PHI. Keys, paths, bucket
//! names and the storage service's own messages are shown; hostile key
//! components are shown escaped and cut short.

use std::io;
use std::path::PathBuf;

/// An error of the raw archive.
///
/// [`BlobError::is_retryable`] tells a caller whether the same call may
/// succeed later unchanged (S3 unreachable, throttling, a 5xx); every other
/// error needs a change first, named in its message.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// A component of a [`crate::PageKey`] (or a practice id given to
    /// `list_pages`) is not allowed: it could escape the archive's prefix or
    /// folder, or could not be read back. Nothing was read or written.
    #[error(
        "the page key's {field} {value} is refused: {reason}; nothing was read or written (a \
         practice id or resource name may hold only letters, digits, '_', '.' and '-', a run id \
         only letters, digits, '_' and '-'; this is a bug in the caller or hostile input)"
    )]
    InvalidKey {
        /// Which component: `practice_id`, `resource`, `date`, `run_id`.
        field: &'static str,
        /// The refused value, escaped and cut short.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A storage key or file path under the archive is not the key of a
    /// page this crate wrote.
    #[error(
        "{key} is not a raw archive page key ({reason}); expected \
         raw/PRACTICE/RESOURCE/YYYY-MM-DD/RUN/SEQUENCE.jsonl.gz with a 10-digit sequence: the \
         object was not written by ascend-sync; move it out of the archive's raw/ prefix"
    )]
    NotAPageKey {
        /// The key, escaped and cut short.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A record cannot be written as one line of JSON Lines.
    #[error(
        "record {index} of the page cannot be archived: {reason}; archive each record as compact \
         JSON text, one line per record (nothing of this page was written)"
    )]
    BadRecord {
        /// The record's position in the page, from 0.
        index: usize,
        /// What is wrong with it (never its content).
        reason: &'static str,
    },

    /// An archived page is not gzipped JSON Lines as this crate writes it.
    #[error(
        "the archived page {location} is damaged: {reason}; restore the object from a backup or \
         an earlier bucket version, or delete it and sync the practice from the API again \
         (replay cannot rebuild from it)"
    )]
    BadArchive {
        /// Where the page lives (`s3://bucket/key`, a file path, or `page
        /// bytes` when decoded without a location).
        location: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No page is archived under the key.
    #[error(
        "no archived page at {location}; list the practice's pages for the keys that exist (it \
         may have been deleted, or written under another prefix or folder)"
    )]
    NotFound {
        /// Where it was looked for.
        location: String,
    },

    /// The archive configuration cannot be used as given.
    #[error("the raw archive configuration is not usable: {reason}")]
    Config {
        /// What is wrong and what to set.
        reason: String,
    },

    /// The bucket does not exist (in this region, for these credentials).
    #[error(
        "bucket {bucket} does not exist or is not reachable: check ASCEND_SYNC_ARCHIVE_BUCKET, \
         the region, and that the stack created the bucket ({operation} answered: {message})"
    )]
    BucketMissing {
        /// The configured bucket.
        bucket: String,
        /// The S3 operation.
        operation: &'static str,
        /// The service's message.
        message: String,
    },

    /// S3 refused the credentials or the permission.
    #[error(
        "access denied by S3 for {operation} on bucket {bucket}: grant the task role \
         {permission} on the bucket (and check the bucket policy and the credentials in use) \
         ({message})"
    )]
    AccessDenied {
        /// The configured bucket.
        bucket: String,
        /// The S3 operation.
        operation: &'static str,
        /// The IAM permission the operation needs.
        permission: &'static str,
        /// The service's message.
        message: String,
    },

    /// S3 could not use the KMS key that encrypts the archive.
    #[error(
        "S3 could not use the KMS key {key} for {operation} on bucket {bucket}: check the \
         configured archive KMS key id, that the key is enabled and in the bucket's region, and \
         that the task role may use it (kms:GenerateDataKey to write, kms:Decrypt to read) \
         ({message})"
    )]
    Kms {
        /// The configured bucket.
        bucket: String,
        /// The S3 operation.
        operation: &'static str,
        /// The configured key id, or a note that the bucket's default key is in use.
        key: String,
        /// The service's message.
        message: String,
    },

    /// S3 could not be reached, or did not answer in time.
    #[error(
        "could not reach S3 for {operation} on bucket {bucket}: {message}; check network access \
         to S3 (VPC endpoint or NAT) and the endpoint URL if one is configured (retried \
         automatically)"
    )]
    Unreachable {
        /// The configured bucket.
        bucket: String,
        /// The S3 operation.
        operation: &'static str,
        /// What the SDK reported, with its causes.
        message: String,
    },

    /// No AWS credentials could be found.
    #[error(
        "no AWS credentials for {operation} on bucket {bucket}: on ECS give the task definition \
         a task role; elsewhere set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE \
         ({message})"
    )]
    NoCredentials {
        /// The configured bucket.
        bucket: String,
        /// The S3 operation.
        operation: &'static str,
        /// What the SDK reported, with its causes.
        message: String,
    },

    /// Any other S3 failure.
    #[error(
        "S3 {operation} failed on bucket {bucket} (HTTP {status}, {code}): {message}{hint}",
        status = status.map_or_else(|| "no status".to_owned(), |s| s.to_string()),
        hint = if *retryable { "; retried automatically" } else { "" }
    )]
    S3 {
        /// The configured bucket.
        bucket: String,
        /// The S3 operation.
        operation: &'static str,
        /// The HTTP status, when a response came.
        status: Option<u16>,
        /// The S3 error code, or `unknown`.
        code: String,
        /// The service's message, with causes.
        message: String,
        /// Whether the same call may succeed later (throttling, 5xx).
        retryable: bool,
    },

    /// A file system operation of the local archive failed.
    #[error(
        "could not {operation} {path}: {source}; check that the archive folder exists and is \
         writable by this user, and that the disk has space"
    )]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Compressing a page in memory failed.
    #[error("compressing a page failed: {source}; the process may be out of memory")]
    Compress {
        /// The compressor's error.
        #[source]
        source: io::Error,
    },

    /// The background task doing blocking work did not finish (the runtime
    /// is shutting down).
    #[error(
        "the archive's background task to {operation} did not finish: {message}; the process is \
         shutting down (retry after restart)"
    )]
    Interrupted {
        /// What was being done.
        operation: &'static str,
        /// The runtime's report.
        message: String,
    },
}

impl BlobError {
    /// Whether the same call may succeed later unchanged.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            BlobError::Unreachable { .. } | BlobError::Interrupted { .. } => true,
            BlobError::S3 { retryable, .. } => *retryable,
            BlobError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::Interrupted | io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ),
            BlobError::InvalidKey { .. }
            | BlobError::NotAPageKey { .. }
            | BlobError::BadRecord { .. }
            | BlobError::BadArchive { .. }
            | BlobError::NotFound { .. }
            | BlobError::Config { .. }
            | BlobError::BucketMissing { .. }
            | BlobError::AccessDenied { .. }
            | BlobError::NoCredentials { .. }
            | BlobError::Kms { .. }
            | BlobError::Compress { .. } => false,
        }
    }

    /// Sets the location of a [`BlobError::BadArchive`] (decoding knows only
    /// bytes; the adapter knows where they came from).
    pub(crate) fn at(self, place: &str) -> BlobError {
        match self {
            BlobError::BadArchive { reason, .. } => BlobError::BadArchive {
                location: place.to_owned(),
                reason,
            },
            other => other,
        }
    }
}

/// Escapes untrusted text for an error message and cuts it short.
pub(crate) fn shown(value: &str) -> String {
    const MAX_CHARS: usize = 120;
    let mut cut: String = value.chars().take(MAX_CHARS).collect();
    if cut.len() < value.len() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}
