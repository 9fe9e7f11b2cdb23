//! The archive in S3 (production).

use std::error::Error as StdError;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;

use crate::error::BlobError;
use crate::key::{PageKey, RAW, check_name};
use crate::page::{MAX_PAGE_BYTES, decode_page, gzip, json_lines};
use crate::run_blocking;

/// Where and how the archive is kept in S3.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Config {
    /// The bucket (ASCEND_SYNC_ARCHIVE_BUCKET).
    pub bucket: String,
    /// A key prefix inside the bucket (`a/b`: pages live under `a/b/raw/`);
    /// segments follow the practice id rules. None: the bucket's root.
    pub prefix: Option<String>,
    /// The KMS key (id, ARN or alias) that encrypts every object with
    /// `aws:kms`. None: the bucket's default `aws/s3` key.
    pub kms_key_id: Option<String>,
    /// An endpoint instead of AWS's (moto in tests, a VPC endpoint URL).
    pub endpoint_url: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`), which moto needs.
    pub force_path_style: bool,
    /// The region; None: the environment's (AWS_REGION, the profile).
    pub region: Option<String>,
}

/// The archive in an S3 bucket. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct S3Archive {
    pub(crate) client: Client,
    bucket: String,
    /// Empty, or the configured prefix with one trailing `/`.
    prefix: String,
    kms_key_id: Option<String>,
}

/// The S3 operations used, with the IAM permission each needs.
#[derive(Debug, Clone, Copy)]
enum Op {
    Put,
    Get,
    List,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::Put => "PutObject",
            Op::Get => "GetObject",
            Op::List => "ListObjectsV2",
        }
    }

    fn permission(self) -> &'static str {
        match self {
            Op::Put => "s3:PutObject",
            Op::Get => "s3:GetObject",
            Op::List => "s3:ListBucket",
        }
    }
}

impl S3Archive {
    /// Reads AWS configuration the standard way (environment, profile, web
    /// identity, ECS task role, instance metadata; SSO and credential
    /// processes are not built in) with `config`'s overrides, and builds the
    /// client. Makes no request: a missing bucket or permission shows on the
    /// first call, as an error that names it.
    pub async fn connect(config: S3Config) -> Result<S3Archive, BlobError> {
        let S3Config {
            bucket,
            prefix,
            kms_key_id,
            endpoint_url,
            force_path_style,
            region,
        } = config;
        let config_error = |reason: String| Err(BlobError::Config { reason });
        if bucket.is_empty() {
            return config_error("no bucket is configured: set ASCEND_SYNC_ARCHIVE_BUCKET".into());
        }
        if bucket.contains('/') || bucket.chars().any(char::is_whitespace) {
            return config_error(format!(
                "the bucket name {bucket:?} holds '/' or whitespace: set ASCEND_SYNC_ARCHIVE_BUCKET \
                 to the bucket's name only (a prefix is configured separately)"
            ));
        }
        let prefix = normalize_prefix(prefix.as_deref())?;
        if kms_key_id.as_deref().is_some_and(|k| k.trim().is_empty()) {
            return config_error(
                "the archive KMS key id is empty: unset it to use the bucket's default aws/s3 \
                 key, or set a key id, ARN or alias"
                    .into(),
            );
        }

        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(180))
                .build(),
        );
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(endpoint) = endpoint_url {
            match url::Url::parse(&endpoint) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => {
                    return config_error(format!(
                        "the S3 endpoint URL {endpoint:?} is not an http(s) URL: fix it or unset \
                         it to use AWS's endpoint"
                    ));
                }
            }
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        if shared.region().is_none() {
            return config_error(
                "no AWS region is configured: set AWS_REGION (or the archive's region)".into(),
            );
        }
        let s3_config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(force_path_style)
            .build();
        Ok(S3Archive {
            client: Client::from_conf(s3_config),
            bucket,
            prefix,
            kms_key_id,
        })
    }

    /// The bucket.
    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix: empty, or ending in `/`.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full object key of a page, prefix included.
    pub(crate) fn full_key(&self, key: &PageKey) -> String {
        format!("{}{}", self.prefix, key.object_key())
    }

    fn location(&self, full_key: &str) -> String {
        format!("s3://{}/{full_key}", self.bucket)
    }

    pub(crate) async fn put_page(&self, key: &PageKey, records: &[&str]) -> Result<u64, BlobError> {
        key.validate()?;
        let full_key = self.full_key(key);
        let text = json_lines(records.iter().copied())?;
        let body = run_blocking("compress a page", move || gzip(&text)).await?;
        let written = body.len() as u64;
        let mut request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .content_type("application/gzip")
            .server_side_encryption(ServerSideEncryption::AwsKms)
            .bucket_key_enabled(true)
            .metadata("records", records.len().to_string())
            .body(ByteStream::from(body));
        if let Some(kms) = &self.kms_key_id {
            request = request.ssekms_key_id(kms);
        }
        request
            .send()
            .await
            .map_err(|err| self.error(Op::Put, &full_key, err))?;
        Ok(written)
    }

    pub(crate) async fn get_page(&self, key: &PageKey) -> Result<Vec<String>, BlobError> {
        key.validate()?;
        let full_key = self.full_key(key);
        let location = self.location(&full_key);
        let output = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&full_key)
            .send()
            .await
            .map_err(|err| self.error(Op::Get, &full_key, err))?;
        if output
            .content_length()
            .is_some_and(|n| u64::try_from(n).map_or(true, |n| n > MAX_PAGE_BYTES))
        {
            return Err(BlobError::BadArchive {
                location,
                reason: format!("the object is larger than {MAX_PAGE_BYTES} bytes"),
            });
        }
        let bytes = output
            .body
            .collect()
            .await
            .map_err(|err| BlobError::Unreachable {
                bucket: self.bucket.clone(),
                operation: Op::Get.name(),
                message: format!("reading the body of {location} failed: {}", causes(&err)),
            })?
            .into_bytes();
        run_blocking("decompress a page", move || {
            decode_page(&bytes).map_err(|err| err.at(&location))
        })
        .await
    }

    pub(crate) async fn list_pages(&self, practice_id: &str) -> Result<Vec<PageKey>, BlobError> {
        check_name("practice_id", practice_id)?;
        // The trailing '/' keeps practice "p1" from listing "p10".
        let wanted = format!("{}{RAW}/{practice_id}/", self.prefix);
        let mut pages = Vec::new();
        let mut stream = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&wanted)
            .into_paginator()
            .send();
        while let Some(listing) = stream.next().await {
            let listing = listing.map_err(|err| self.error(Op::List, &wanted, err))?;
            for object in listing.contents() {
                let Some(full_key) = object.key() else {
                    continue;
                };
                let relative = full_key.strip_prefix(&self.prefix).unwrap_or(full_key);
                match PageKey::parse(relative) {
                    Ok(key) if key.practice_id == practice_id => pages.push(key),
                    Ok(_) => {}
                    Err(error) => tracing::warn!(
                        message = "Skipping an object that is not an archived page.",
                        %error,
                        bucket = %self.bucket,
                        key = full_key,
                    ),
                }
            }
        }
        pages.sort_unstable();
        Ok(pages)
    }

    /// Maps an SDK error to one that names the operator's action.
    ///
    /// `target` is the object key (or the listed prefix) the call was about.
    fn error<E>(&self, op: Op, target: &str, err: SdkError<E>) -> BlobError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let status = err.raw_response().map(|r| r.status().as_u16());
        let code = err
            .as_service_error()
            .and_then(ProvideErrorMetadata::code)
            .map(str::to_owned);
        let service_message = err
            .as_service_error()
            .and_then(ProvideErrorMetadata::message)
            .map(str::to_owned);
        let message = service_message.clone().unwrap_or_else(|| causes(&err));
        let bucket = self.bucket.clone();
        let operation = op.name();

        if matches!(
            err,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
        ) {
            let message = causes(&err);
            // The SDK reports missing credentials as a dispatch failure whose
            // cause is a credentials error; its type is not re-exported, so
            // it is recognised by its text.
            let no_credentials = match &err {
                SdkError::DispatchFailure(failure) => {
                    failure.as_connector_error().is_some_and(|c| c.is_other())
                        && message.to_ascii_lowercase().contains("credential")
                }
                _ => false,
            };
            if no_credentials {
                return BlobError::NoCredentials {
                    bucket,
                    operation,
                    message,
                };
            }
            return BlobError::Unreachable {
                bucket,
                operation,
                message,
            };
        }
        let code_str = code.as_deref().unwrap_or("");
        let mentions_kms = service_message
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("kms"));
        if code_str.starts_with("KMS.") || (code_str == "AccessDenied" && mentions_kms) {
            return BlobError::Kms {
                bucket,
                operation,
                key: self.kms_key_id.as_ref().map_or_else(
                    || "(the bucket's default aws/s3 key)".to_owned(),
                    |k| format!("{k:?}"),
                ),
                message,
            };
        }
        match code_str {
            // PermanentRedirect and AuthorizationHeaderMalformed: the bucket
            // is in another region than the one configured.
            "NoSuchBucket" | "PermanentRedirect" | "AuthorizationHeaderMalformed" => {
                return BlobError::BucketMissing {
                    bucket,
                    operation,
                    message,
                };
            }
            "NoSuchKey" | "NotFound" => {
                return BlobError::NotFound {
                    location: self.location(target),
                };
            }
            "AccessDenied"
            | "AllAccessDisabled"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "TokenRefreshRequired" => {
                return BlobError::AccessDenied {
                    bucket,
                    operation,
                    permission: op.permission(),
                    message,
                };
            }
            _ => {}
        }
        let throttled = matches!(
            code_str,
            "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeout"
                | "InternalError"
                | "ServiceUnavailable"
        );
        let retryable = throttled
            || status.is_some_and(|s| s >= 500 || s == 429)
            || matches!(err, SdkError::ResponseError(_));
        if status == Some(404) && matches!(op, Op::Get) {
            return BlobError::NotFound {
                location: self.location(target),
            };
        }
        if status == Some(403) {
            return BlobError::AccessDenied {
                bucket,
                operation,
                permission: op.permission(),
                message,
            };
        }
        BlobError::S3 {
            bucket,
            operation,
            status,
            code: code.unwrap_or_else(|| "unknown".to_owned()),
            message,
            retryable,
        }
    }
}

/// `None`, `""` and `"/"` are no prefix; otherwise `a/b/` from `a/b`,
/// `/a/b/` and the like, each segment following the practice id rules.
fn normalize_prefix(prefix: Option<&str>) -> Result<String, BlobError> {
    let trimmed = prefix.unwrap_or("").trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for segment in trimmed.split('/') {
        check_name("prefix segment", segment).map_err(|err| BlobError::Config {
            reason: format!("the archive prefix {prefix:?} is not usable: {err}"),
        })?;
    }
    Ok(format!("{trimmed}/"))
}

/// An error and its causes, one after the other, each once.
fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
