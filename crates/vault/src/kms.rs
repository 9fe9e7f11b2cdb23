//! The KMS vault (production): data keys from `GenerateDataKey`, unwrapped
//! by `Decrypt` and rewrapped by `ReEncrypt`, all under the encryption
//! context `{"practice_id", "purpose"}`.

use std::collections::HashMap;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_kms::Client;
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use crate::crypto::{self, KeyBytes};
use crate::{SealContext, Sealed, VaultError};

/// Which KMS key, and how to reach KMS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KmsConfig {
    /// An endpoint instead of AWS's (moto in tests, a VPC endpoint URL).
    pub endpoint_url: Option<String>,
    /// The region; None: the environment's (AWS_REGION, the profile).
    pub region: Option<String>,
    /// The key (id, ARN or alias) new secrets are sealed under.
    pub key_id: String,
}

/// Data keys from KMS. Cheap to clone (the client is shared).
#[derive(Debug, Clone)]
pub struct KmsVault {
    client: Client,
    key_id: String,
}

impl KmsVault {
    /// Reads AWS configuration the standard way with `config`'s overrides
    /// and builds the client. Makes no request: a missing key or permission
    /// shows on the first seal or open.
    pub async fn connect(config: KmsConfig) -> Result<KmsVault, VaultError> {
        let KmsConfig {
            endpoint_url,
            region,
            key_id,
        } = config;
        if key_id.trim().is_empty() {
            return Err(VaultError::Config {
                reason: "no KMS key is configured: set a key id, ARN or alias".into(),
            });
        }
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(20))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        );
        if let Some(region) = region {
            loader = loader.region(Region::new(region));
        }
        if let Some(endpoint) = endpoint_url {
            match url::Url::parse(&endpoint) {
                Ok(url) if matches!(url.scheme(), "http" | "https") => {}
                _ => {
                    return Err(VaultError::Config {
                        reason: format!(
                            "the KMS endpoint {endpoint:?} is not an http(s) URL: set a URL \
                             such as https://kms.us-east-1.amazonaws.com, or unset it"
                        ),
                    });
                }
            }
            loader = loader.endpoint_url(endpoint);
        }
        let sdk_config = loader.load().await;
        if sdk_config.region().is_none() {
            return Err(VaultError::Config {
                reason: "no AWS region is configured for KMS: set AWS_REGION".into(),
            });
        }
        Ok(KmsVault {
            client: Client::new(&sdk_config),
            key_id,
        })
    }

    /// The key new secrets are sealed under, as configured.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) async fn generate_data_key(
        &self,
        ctx: &SealContext,
    ) -> Result<(KeyBytes, Vec<u8>, String), VaultError> {
        const OP: &str = "GenerateDataKey";
        let out = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| kms_error(OP, &self.key_id, ctx, e))?;
        let plaintext = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        let data_key =
            crypto::key_from_slice(&plaintext).ok_or_else(|| missing(OP, "a 32-byte Plaintext"))?;
        let wrapped = out
            .ciphertext_blob
            .map(Blob::into_inner)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| missing(OP, "a CiphertextBlob"))?;
        let key_id = out.key_id.ok_or_else(|| missing(OP, "a KeyId"))?;
        Ok((data_key, wrapped, key_id))
    }

    pub(crate) async fn decrypt_data_key(
        &self,
        ctx: &SealContext,
        sealed: &Sealed,
    ) -> Result<KeyBytes, VaultError> {
        const OP: &str = "Decrypt";
        check_kms_key_id(&sealed.key_id)?;
        let out = self
            .client
            .decrypt()
            .key_id(&sealed.key_id)
            .ciphertext_blob(Blob::new(sealed.encrypted_data_key.clone()))
            .set_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| kms_error(OP, &sealed.key_id, ctx, e))?;
        let plaintext = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        crypto::key_from_slice(&plaintext).ok_or_else(|| VaultError::Tampered {
            practice_id: ctx.practice_id.clone(),
            reason: "KMS returned a data key that is not 32 bytes".into(),
        })
    }

    pub(crate) async fn rewrap_data_key(
        &self,
        ctx: &SealContext,
        sealed: &Sealed,
        new_key_id: &str,
    ) -> Result<(Vec<u8>, String), VaultError> {
        const OP: &str = "ReEncrypt";
        check_kms_key_id(&sealed.key_id)?;
        check_kms_key_id(new_key_id)?;
        let out = self
            .client
            .re_encrypt()
            .ciphertext_blob(Blob::new(sealed.encrypted_data_key.clone()))
            .source_key_id(&sealed.key_id)
            .set_source_encryption_context(Some(context(ctx)))
            .destination_key_id(new_key_id)
            .set_destination_encryption_context(Some(context(ctx)))
            .send()
            .await
            .map_err(|e| kms_error(OP, new_key_id, ctx, e))?;
        let wrapped = out
            .ciphertext_blob
            .map(Blob::into_inner)
            .filter(|b| !b.is_empty())
            .ok_or_else(|| missing(OP, "a CiphertextBlob"))?;
        let key_id = out.key_id.ok_or_else(|| missing(OP, "a KeyId"))?;
        Ok((wrapped, key_id))
    }
}

fn context(ctx: &SealContext) -> HashMap<String, String> {
    HashMap::from([
        ("practice_id".to_owned(), ctx.practice_id.clone()),
        ("purpose".to_owned(), ctx.purpose.as_str().to_owned()),
    ])
}

fn check_kms_key_id(key_id: &str) -> Result<(), VaultError> {
    if key_id.starts_with("local:") {
        return Err(VaultError::KeyNotFound {
            key_id: key_id.to_owned(),
            reason: "it is a local master key, not a KMS key: open the secret with the local \
                     vault it was sealed with"
                .into(),
        });
    }
    Ok(())
}

fn missing(operation: &'static str, what: &str) -> VaultError {
    VaultError::KmsUnreachable {
        operation,
        reason: format!("the answer lacks {what}"),
    }
}

fn kms_error<E, R>(
    operation: &'static str,
    key_id: &str,
    ctx: &SealContext,
    err: SdkError<E, R>,
) -> VaultError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    let reason = |code: Option<&str>, message: Option<&str>| {
        format!(
            "{}: {}",
            code.unwrap_or("an unknown error"),
            message.unwrap_or("no message")
        )
    };
    match &err {
        SdkError::ServiceError(service) => {
            let e = service.err();
            let reason = reason(e.code(), e.message());
            match e.code() {
                Some("InvalidCiphertextException" | "IncorrectKeyException") => {
                    VaultError::wrong_context(ctx)
                }
                Some("NotFoundException") => VaultError::KeyNotFound {
                    key_id: key_id.to_owned(),
                    reason,
                },
                Some(
                    "DependencyTimeoutException"
                    | "KMSInternalException"
                    | "ThrottlingException"
                    | "ServiceUnavailableException",
                ) => VaultError::KmsUnreachable { operation, reason },
                _ => VaultError::KmsDenied {
                    operation,
                    key_id: key_id.to_owned(),
                    reason,
                },
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            VaultError::KmsUnreachable {
                operation,
                reason: error_chain(&err),
            }
        }
        _ => VaultError::Config {
            reason: format!(
                "the {operation} request could not be built: {}",
                error_chain(&err)
            ),
        },
    }
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}
