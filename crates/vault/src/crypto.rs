//! AES-256-GCM with aws-lc-rs: the secret under the data key, and (locally)
//! the data key under the master key.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::{SealContext, Sealed, VaultError};

/// A plaintext data key (or master key): zeroed on drop.
pub(crate) type KeyBytes = Zeroizing<[u8; 32]>;

/// The AAD label of the secret's ciphertext.
const SECRET_LABEL: &str = "secret";

pub(crate) fn random_key() -> Result<KeyBytes, VaultError> {
    let mut key = Zeroizing::new([0u8; 32]);
    fill(&mut key[..])?;
    Ok(key)
}

pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill(&mut nonce)?;
    Ok(nonce)
}

fn fill(dest: &mut [u8]) -> Result<(), VaultError> {
    aws_lc_rs::rand::fill(dest).map_err(|_| VaultError::Config {
        reason: "the system random number generator failed".into(),
    })
}

pub(crate) fn aead_key(key: &[u8]) -> Result<LessSafeKey, VaultError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| VaultError::Config {
            reason: "an AES-256 key of the wrong length".into(),
        })
}

/// Encrypts `plaintext` under `key` with a fresh nonce.
pub(crate) fn encrypt(
    key: &LessSafeKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(Vec<u8>, [u8; NONCE_LEN]), VaultError> {
    let nonce = random_nonce()?;
    let mut in_out = Zeroizing::new(plaintext.to_vec());
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut *in_out,
    )
    .map_err(|_| VaultError::Config {
        reason: "AES-256-GCM encryption failed".into(),
    })?;
    Ok((in_out.to_vec(), nonce))
}

/// Decrypts and authenticates; None when the key, nonce, AAD or ciphertext
/// do not match.
pub(crate) fn decrypt(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    let mut in_out = Zeroizing::new(ciphertext.to_vec());
    let len = key
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut in_out[..],
        )
        .ok()?
        .len();
    in_out.truncate(len);
    Some(in_out)
}

pub(crate) fn seal_secret(
    data_key: &KeyBytes,
    ctx: &SealContext,
    secret: &SecretString,
) -> Result<(Vec<u8>, [u8; NONCE_LEN]), VaultError> {
    let key = aead_key(&data_key[..])?;
    encrypt(
        &key,
        &ctx.aad(SECRET_LABEL),
        secret.expose_secret().as_bytes(),
    )
}

pub(crate) fn open_secret(
    data_key: &KeyBytes,
    ctx: &SealContext,
    sealed: &Sealed,
) -> Result<SecretString, VaultError> {
    let key = aead_key(&data_key[..])?;
    let plaintext = decrypt(
        &key,
        sealed.nonce,
        &ctx.aad(SECRET_LABEL),
        &sealed.ciphertext,
    )
    .ok_or_else(|| VaultError::wrong_context(ctx))?;
    let text = std::str::from_utf8(&plaintext).map_err(|_| VaultError::Tampered {
        practice_id: ctx.practice_id.clone(),
        reason: "the opened secret is not UTF-8".into(),
    })?;
    Ok(SecretString::from(text.to_owned()))
}

/// A plaintext data key of exactly 32 bytes, from a buffer KMS returned.
pub(crate) fn key_from_slice(bytes: &[u8]) -> Option<KeyBytes> {
    let array: [u8; 32] = bytes.try_into().ok()?;
    Some(Zeroizing::new(array))
}
