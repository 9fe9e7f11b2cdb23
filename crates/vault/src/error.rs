//! What went wrong, in words that tell an operator what to do. No variant
//! holds a secret, a data key or key material.

use std::path::PathBuf;

use crate::SealContext;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The AEAD (or KMS) refused the sealed secret under this context.
    #[error(
        "the sealed secret does not belong to practice {practice_id:?} ({purpose}) or was \
         altered: reconnect the practice"
    )]
    WrongContext {
        practice_id: String,
        purpose: &'static str,
    },
    /// The sealed secret is damaged in a way seen before decryption.
    #[error(
        "the sealed secret of practice {practice_id:?} does not belong to this practice or was \
         altered ({reason}): reconnect the practice"
    )]
    Tampered { practice_id: String, reason: String },
    /// KMS refused the request (permissions, a disabled key, a key policy).
    #[error(
        "KMS refused {operation} with key {key_id:?}: {reason}: grant the task role \
         kms:{operation} on the key and check that the key is enabled"
    )]
    KmsDenied {
        operation: &'static str,
        key_id: String,
        reason: String,
    },
    /// No answer from KMS.
    #[error(
        "KMS could not be reached for {operation}: {reason}: check the network path to KMS \
         (VPC endpoint, security groups), the endpoint URL and the region"
    )]
    KmsUnreachable {
        operation: &'static str,
        reason: String,
    },
    /// The key does not exist (here, in this region or account).
    #[error(
        "the key {key_id:?} was not found: {reason}: check the key id, alias or ARN and the \
         region, or open the secret with the key it was sealed under"
    )]
    KeyNotFound { key_id: String, reason: String },
    /// The local master key file cannot be used.
    #[error("the master key file {path:?} cannot be used: {reason}")]
    MasterKeyFile { path: PathBuf, reason: String },
    /// Credentials that cannot be sealed as they are.
    #[error("the credentials cannot be sealed: {reason}")]
    BadCredentials { reason: String },
    /// The vault is configured wrongly.
    #[error("the vault is misconfigured: {reason}")]
    Config { reason: String },
}

impl VaultError {
    pub(crate) fn wrong_context(ctx: &SealContext) -> VaultError {
        VaultError::WrongContext {
            practice_id: ctx.practice_id.clone(),
            purpose: ctx.purpose.as_str(),
        }
    }
}
