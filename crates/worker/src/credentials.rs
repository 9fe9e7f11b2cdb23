//! Where a worker gets a practice's Ascend connection.
//!
//! [`VaultCredentials`] (production and embedded) reads the practice's
//! sealed credentials from the store and opens them with the vault for each
//! job: the plaintext lives only in the job's [`Connection`] (a `secrecy`
//! type, zeroized when dropped), never in a cache, a log or an error.
//!
//! The token URL and API base come from plain columns, so each open holds
//! them to the deployment's [`HostPolicy`] before anything is decrypted,
//! and, for credentials sealed with their URLs (v2), to the URLs sealed
//! with them: a URL changed in the database after the practice was
//! connected fails the job with [`CredentialsError::needs_reconnect`],
//! naming which URL changed, and the secret is sent nowhere. Credentials
//! sealed before URLs were bound (v1) get the host policy only, until
//! they are rotated.

use std::future::Future;
use std::pin::Pin;

use ascend_client::Connection;
use model::{Endpoint, HostPolicy};
use secrecy::ExposeSecret;
use store::{Practice, Store};
use url::Url;
use vault::{Sealed, Vault, VaultError};

/// A boxed future of a [`Credentials`] call.
pub type CredentialsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Opened, CredentialsError>> + Send + 'a>>;

/// A practice's connection, opened for one job, and the version of the
/// credentials it holds ([`store::Practice::credential_version`]): an auth
/// failure of the job counts only while that version is the practice's.
pub struct Opened {
    /// What the Ascend client needs.
    pub connection: Connection,
    /// The credentials' version.
    pub version: i64,
}

/// Where a worker gets a practice's Ascend connection.
pub trait Credentials: Send + Sync {
    /// The connection for `practice`, or why there is none.
    fn connection<'a>(&'a self, practice: &'a Practice) -> CredentialsFuture<'a>;
}

/// One connection for every practice, given by the caller (the by-hand
/// `sync` command, which reads it from a credentials file and stores no
/// credentials). Its version is the practice's.
pub struct FixedCredentials(pub Connection);

impl Credentials for FixedCredentials {
    fn connection<'a>(&'a self, practice: &'a Practice) -> CredentialsFuture<'a> {
        Box::pin(async move {
            Ok(Opened {
                connection: self.0.clone(),
                version: practice.credential_version,
            })
        })
    }
}

/// Why a practice has no usable connection. Never holds a secret.
#[derive(Debug, thiserror::Error)]
#[error("no usable credentials for practice {practice_id:?}: {detail}")]
pub struct CredentialsError {
    pub practice_id: String,
    pub detail: String,
    /// Whether a person must act (reconnect the practice); false when the
    /// same call may work later (KMS unreachable or refusing).
    pub needs_reconnect: bool,
}

/// Credentials sealed in the store, opened by the vault, used only with
/// URLs the host policy allows and, when sealed with their URLs, only
/// with those.
#[derive(Debug, Clone)]
pub struct VaultCredentials {
    store: Store,
    vault: Vault,
    hosts: HostPolicy,
}

impl VaultCredentials {
    /// Opens `store`'s sealed credentials with `vault`, for URLs `hosts`
    /// allows.
    pub fn new(store: Store, vault: Vault, hosts: HostPolicy) -> VaultCredentials {
        VaultCredentials {
            store,
            vault,
            hosts,
        }
    }

    /// The vault (to seal what is connected).
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    async fn open(&self, practice: &Practice) -> Result<Opened, CredentialsError> {
        let id = practice.practice_id.as_str();
        let fail = |detail: String, needs_reconnect: bool| CredentialsError {
            practice_id: id.to_owned(),
            detail,
            needs_reconnect,
        };
        let (stored, version) = self
            .store
            .credentials_for_job(id)
            .await
            .map_err(|e| fail(format!("the store could not be read: {e}"), false))?
            .ok_or_else(|| {
                fail(
                    "none are stored: connect it with `ascend-sync practice add`".into(),
                    true,
                )
            })?;
        let sealed = to_sealed(&stored).ok_or_else(|| {
            fail(
                "the stored nonce is not 12 bytes: reconnect the practice".into(),
                true,
            )
        })?;
        // Both URLs pass the host policy before anything is decrypted.
        let allowed = |endpoint: Endpoint, url: &str| {
            self.hosts
                .check(endpoint, url)
                .map_err(|e| fail(format!("{e}; then reconnect the practice"), true))
        };
        let api_base = allowed(Endpoint::ApiBase, &practice.api_base)?;
        let token_url = allowed(Endpoint::TokenUrl, &stored.token_url)?;
        let opened = self
            .vault
            .open_credentials(id, &sealed)
            .await
            .map_err(|e| fail(e.to_string(), needs_reconnect(&e)))?;
        if let Some(sealed_urls) = &opened.endpoints {
            for (endpoint, stored_url, url, sealed_url) in [
                (
                    Endpoint::TokenUrl,
                    &stored.token_url,
                    &token_url,
                    &sealed_urls.token_url,
                ),
                (
                    Endpoint::ApiBase,
                    &practice.api_base,
                    &api_base,
                    &sealed_urls.api_base,
                ),
            ] {
                if Url::parse(sealed_url).ok().as_ref() != Some(url) {
                    return Err(fail(
                        format!(
                            "its {endpoint} in the database ({stored_url:?}) is not the one \
                             sealed with its credentials ({sealed_url:?}): it was changed after \
                             the practice was connected, and the Client Secret was sent nowhere. \
                             Find out who changed it, then reconnect the practice (`ascend-sync \
                             practice rotate-credentials`)"
                        ),
                        true,
                    ));
                }
            }
        }
        let bad = |what: &str, value: &str| {
            fail(
                format!("its {what} {value:?} is not valid: fix it and reconnect"),
                true,
            )
        };
        let connection = Connection {
            api_base,
            token_url,
            organization_id: practice
                .organization_id
                .parse()
                .map_err(|_| bad("Organization-ID", &practice.organization_id))?,
            client_id: opened.credentials.client_id.expose_secret().to_owned(),
            client_secret: opened.credentials.client_secret,
        };
        Ok(Opened {
            connection,
            version,
        })
    }
}

impl Credentials for VaultCredentials {
    fn connection<'a>(&'a self, practice: &'a Practice) -> CredentialsFuture<'a> {
        Box::pin(self.open(practice))
    }
}

/// The vault's form of what the store holds; None if the nonce is damaged.
pub fn to_sealed(stored: &store::SealedCredentials) -> Option<Sealed> {
    Some(Sealed {
        ciphertext: stored.ciphertext.clone(),
        nonce: stored.nonce.as_slice().try_into().ok()?,
        encrypted_data_key: stored.encrypted_data_key.clone(),
        key_id: stored.key_id.clone(),
    })
}

/// The store's form of what the vault sealed.
pub fn to_stored(sealed: Sealed, token_url: &str) -> store::SealedCredentials {
    store::SealedCredentials {
        token_url: token_url.to_owned(),
        ciphertext: sealed.ciphertext,
        nonce: sealed.nonce.to_vec(),
        encrypted_data_key: sealed.encrypted_data_key,
        key_id: sealed.key_id,
    }
}

/// Whether a vault error needs a person to reconnect the practice (the
/// sealed value is damaged or not this practice's), rather than time.
fn needs_reconnect(error: &VaultError) -> bool {
    matches!(
        error,
        VaultError::WrongContext { .. } | VaultError::Tampered { .. }
    )
}
