//! Envelope encryption of a practice's Ascend Client Secret (the key to its
//! patients' records).
//!
//! # The envelope
//! Every [`Vault::seal`] draws a fresh 256-bit data key and a random 96-bit
//! nonce, and encrypts the secret with AES-256-GCM under that data key. The
//! data key itself is then wrapped by a key-encryption key: a KMS key
//! ([`KmsVault`], production: `GenerateDataKey`) or a local master key file
//! ([`LocalVault`], embedded use: AES-256-GCM with its own random nonce).
//! A [`Sealed`] keeps the ciphertext, the nonce, the wrapped data key and
//! the id of the key that wrapped it; the plaintext data key is never stored
//! and lives in memory only inside `Zeroizing` buffers.
//!
//! [`Vault::rewrap`] re-encrypts only the wrapped data key under another key
//! (KMS `ReEncrypt`), leaving ciphertext and nonce unchanged: keys can be
//! rotated without decrypting the secrets in the application.
//!
//! # The context rule
//! A [`SealContext`] (practice id and purpose) binds a sealed secret to the
//! row it belongs to. Its canonical encoding (a version tag, then each field
//! as a 4-byte big-endian length followed by its UTF-8 bytes) is the AEAD's
//! additional authenticated data for the secret and, locally, for the
//! wrapped data key; with KMS it is also the `EncryptionContext`
//! (`{"practice_id", "purpose"}`), so KMS itself refuses to unwrap a data key
//! for another practice. A sealed secret copied to another practice's row, or
//! opened for another purpose, fails with [`VaultError::WrongContext`] or
//! [`VaultError::Tampered`]; it never yields a plaintext.
//!
//! # Sealed credentials and their URLs
//! [`Vault::seal_credentials`] seals a practice's Client ID and Secret
//! together with the two URLs they are used with, its token URL and API
//! base ([`Endpoints`]), as one plaintext: `ascend-credentials/v2`, the
//! token URL, the API base, the Client ID and the Client Secret, one a
//! line (the secret last: it may hold line breaks). The store keeps both
//! URLs in plain columns too; whoever opens the credentials compares the
//! two ([`OpenedCredentials::endpoints`]) and refuses to send the secret
//! to a URL that was not sealed with it (`worker::credentials`). So a
//! person who can write to the database but not open the vault cannot
//! point a practice's token URL at their own host and receive the secret.
//!
//! The URLs are in the plaintext rather than in the encryption context:
//! the context (and KMS's `EncryptionContext`, which `ReEncrypt` must be
//! given again) stays the practice id and purpose, so [`Vault::rewrap`]
//! and values sealed before the URLs were bound open as before, and a
//! mismatch can say which URL changed instead of only "altered". The AEAD
//! authenticates the plaintext, so the sealed URLs cannot be changed
//! without the key either.
//!
//! Values sealed before (`ascend-credentials/v1`: the Client ID and the
//! Client Secret only) still open, with no sealed URLs
//! ([`OpenedCredentials::endpoints`] is None); their URLs are then held to
//! the host allow-list on every open (`model::HostPolicy`). Rotating a
//! practice's credentials (`practice rotate-credentials`) seals them anew
//! as v2. `keys rewrap` does not change the plaintext, so it keeps a v1
//! value v1.
//!
//! # Why aws-lc-rs
//! The workspace already builds aws-lc-rs as rustls' (and sqlx's) crypto
//! provider; using it for AES-256-GCM, randomness and SHA-256 adds no second
//! crypto stack (no ring, openssl or RustCrypto AEAD) and no compile time.

mod crypto;
mod error;
mod kms;
mod local;

#[cfg(test)]
mod tests;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

pub use error::VaultError;
pub use kms::{KmsConfig, KmsVault};
pub use local::LocalVault;

/// What a sealed secret is for: part of the encryption context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A practice's Ascend Client ID and Secret, sealed together.
    AscendCredentials,
}

impl Purpose {
    /// The stable name used in the encryption context.
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::AscendCredentials => "ascend-credentials",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The row a secret belongs to: sealed under one context, it opens only
/// under the same context.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SealContext {
    pub practice_id: String,
    pub purpose: Purpose,
}

impl SealContext {
    /// A context for `practice_id` and `purpose`.
    pub fn new(practice_id: impl Into<String>, purpose: Purpose) -> SealContext {
        SealContext {
            practice_id: practice_id.into(),
            purpose,
        }
    }

    /// The canonical encoding, used as additional authenticated data.
    pub(crate) fn aad(&self, label: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for field in [
            "ascend-sync/vault/v1",
            label,
            self.practice_id.as_str(),
            self.purpose.as_str(),
        ] {
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out
    }
}

/// A sealed secret, as the store keeps it. Not secret by itself: opening it
/// needs the key that `key_id` names and the same [`SealContext`].
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The secret, AES-256-GCM under the data key, with the 16-byte tag.
    pub ciphertext: Vec<u8>,
    /// The nonce of `ciphertext`.
    pub nonce: [u8; 12],
    /// The data key, wrapped by the key `key_id` names.
    pub encrypted_data_key: Vec<u8>,
    /// The wrapping key: the KMS key ARN as KMS reports it, or `local:` and
    /// the master key's fingerprint.
    pub key_id: String,
}

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealed")
            .field("ciphertext_len", &self.ciphertext.len())
            .field("nonce_len", &self.nonce.len())
            .field("encrypted_data_key_len", &self.encrypted_data_key.len())
            .field("key_id", &self.key_id)
            .finish()
    }
}

/// A practice's Ascend Client ID and Secret: sealed together, as one value
/// under [`Purpose::AscendCredentials`]. Neither is shown by `Debug`.
pub struct AscendCredentials {
    pub client_id: SecretString,
    pub client_secret: SecretString,
}

impl fmt::Debug for AscendCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AscendCredentials([REDACTED])")
    }
}

/// The URLs a practice's credentials are used with, sealed with them: the
/// Client Secret goes only to `token_url`, the bearer tokens only to
/// `api_base`. Not secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// The OAuth token URL, as stored.
    pub token_url: String,
    /// The API base, as stored.
    pub api_base: String,
}

/// What [`Vault::open_credentials`] opened.
#[derive(Debug)]
pub struct OpenedCredentials {
    /// The Client ID and Secret.
    pub credentials: AscendCredentials,
    /// The URLs sealed with them; None for a value sealed before URLs
    /// were bound (v1): the caller then holds the stored URLs to the host
    /// allow-list.
    pub endpoints: Option<Endpoints>,
}

/// The first line of credentials sealed before their URLs were bound,
/// followed by the Client ID and the Client Secret, each after a line
/// break. Still opened, never written.
const CREDENTIALS_V1: &str = "ascend-credentials/v1";

/// The first line of the sealed credentials' plaintext, followed by the
/// token URL, the API base, the Client ID and the Client Secret, each
/// after a line break.
const CREDENTIALS_V2: &str = "ascend-credentials/v2";

/// Seals and opens secrets: with KMS (production) or a local master key.
#[derive(Debug, Clone)]
pub enum Vault {
    Kms(KmsVault),
    Local(LocalVault),
}

impl Vault {
    /// Encrypts `secret` under a fresh data key and nonce, bound to `ctx`.
    pub async fn seal(
        &self,
        ctx: &SealContext,
        secret: &SecretString,
    ) -> Result<Sealed, VaultError> {
        let (data_key, encrypted_data_key, key_id) = match self {
            Vault::Kms(kms) => kms.generate_data_key(ctx).await?,
            Vault::Local(local) => local.generate_data_key(ctx)?,
        };
        let (ciphertext, nonce) = crypto::seal_secret(&data_key, ctx, secret)?;
        Ok(Sealed {
            ciphertext,
            nonce,
            encrypted_data_key,
            key_id,
        })
    }

    /// Decrypts `sealed`, which must have been sealed under `ctx`.
    pub async fn open(
        &self,
        ctx: &SealContext,
        sealed: &Sealed,
    ) -> Result<SecretString, VaultError> {
        let data_key = match self {
            Vault::Kms(kms) => kms.decrypt_data_key(ctx, sealed).await?,
            Vault::Local(local) => local.unwrap_data_key(ctx, sealed)?,
        };
        crypto::open_secret(&data_key, ctx, sealed)
    }

    /// Seals a practice's Client ID and Secret for `practice_id`, with the
    /// URLs they are used with (v2, see the crate documentation). A Client
    /// ID or URL with a line break, or an empty ID, secret or URL, is
    /// refused.
    pub async fn seal_credentials(
        &self,
        practice_id: &str,
        credentials: &AscendCredentials,
        endpoints: &Endpoints,
    ) -> Result<Sealed, VaultError> {
        let client_id = credentials.client_id.expose_secret();
        let client_secret = credentials.client_secret.expose_secret();
        if client_id.trim().is_empty() || client_secret.is_empty() {
            return Err(VaultError::BadCredentials {
                reason: "the Client ID and the Client Secret must not be empty".into(),
            });
        }
        if client_id.contains(['\n', '\r']) {
            return Err(VaultError::BadCredentials {
                reason: "the Client ID contains a line break".into(),
            });
        }
        for (what, url) in [
            ("token URL", &endpoints.token_url),
            ("API base", &endpoints.api_base),
        ] {
            if url.trim().is_empty() || url.contains(['\n', '\r']) {
                return Err(VaultError::BadCredentials {
                    reason: format!("the {what} is empty or contains a line break"),
                });
            }
        }
        let plain = Zeroizing::new(format!(
            "{CREDENTIALS_V2}\n{}\n{}\n{client_id}\n{client_secret}",
            endpoints.token_url, endpoints.api_base
        ));
        let plain = SecretString::from(plain.as_str());
        let ctx = SealContext::new(practice_id, Purpose::AscendCredentials);
        self.seal(&ctx, &plain).await
    }

    /// Opens what [`Vault::seal_credentials`] sealed for `practice_id`
    /// (v2, with its URLs), or what it sealed before URLs were bound (v1,
    /// without).
    pub async fn open_credentials(
        &self,
        practice_id: &str,
        sealed: &Sealed,
    ) -> Result<OpenedCredentials, VaultError> {
        let ctx = SealContext::new(practice_id, Purpose::AscendCredentials);
        let plain = self.open(&ctx, sealed).await?;
        let text = plain.expose_secret();
        let credentials = |client_id: &str, client_secret: &str| AscendCredentials {
            client_id: SecretString::from(client_id),
            client_secret: SecretString::from(client_secret),
        };
        match text.split_once('\n') {
            Some((CREDENTIALS_V2, rest)) => {
                let mut parts = rest.splitn(4, '\n');
                if let (Some(token_url), Some(api_base), Some(client_id), Some(client_secret)) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                {
                    return Ok(OpenedCredentials {
                        credentials: credentials(client_id, client_secret),
                        endpoints: Some(Endpoints {
                            token_url: token_url.to_owned(),
                            api_base: api_base.to_owned(),
                        }),
                    });
                }
            }
            Some((CREDENTIALS_V1, rest)) => {
                if let Some((client_id, client_secret)) = rest.split_once('\n') {
                    return Ok(OpenedCredentials {
                        credentials: credentials(client_id, client_secret),
                        endpoints: None,
                    });
                }
            }
            _ => {}
        }
        Err(VaultError::Tampered {
            practice_id: practice_id.to_owned(),
            reason: "the opened value is not sealed credentials of a known version".into(),
        })
    }

    /// The key new secrets are sealed under (`keys rewrap` targets another).
    pub fn key_id(&self) -> &str {
        match self {
            Vault::Kms(kms) => kms.key_id(),
            Vault::Local(local) => local.key_id(),
        }
    }

    /// Re-encrypts only the data key under `new_key_id` (ciphertext and
    /// nonce unchanged): `keys rewrap` without downtime. The local vault
    /// rewraps only to its own master key's id (a fresh wrapping nonce):
    /// moving to a new master key file is not supported.
    pub async fn rewrap(
        &self,
        ctx: &SealContext,
        sealed: &Sealed,
        new_key_id: &str,
    ) -> Result<Sealed, VaultError> {
        let (encrypted_data_key, key_id) = match self {
            Vault::Kms(kms) => kms.rewrap_data_key(ctx, sealed, new_key_id).await?,
            Vault::Local(local) => local.rewrap_data_key(ctx, sealed, new_key_id)?,
        };
        Ok(Sealed {
            ciphertext: sealed.ciphertext.clone(),
            nonce: sealed.nonce,
            encrypted_data_key,
            key_id,
        })
    }
}
