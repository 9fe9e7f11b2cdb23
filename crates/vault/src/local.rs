//! The local vault (embedded use): data keys wrapped by a 32-byte master key
//! kept in a file of mode 0600.
//!
//! `encrypted_data_key` = the wrapping nonce (12 bytes) followed by the data
//! key under AES-256-GCM with the master key (32 + 16 bytes), AAD = the
//! context. `key_id` = `local:` and the first 8 bytes of the master key's
//! SHA-256, in hex. Rewrapping is supported only to this vault's own key id
//! (a fresh wrapping nonce); a new master key file is not a rewrap target.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::aead::{LessSafeKey, NONCE_LEN};
use aws_lc_rs::digest;
use zeroize::Zeroizing;

use crate::crypto::{self, KeyBytes};
use crate::{SealContext, Sealed, VaultError};

/// The AAD label of the wrapped data key.
const DATA_KEY_LABEL: &str = "data-key";
const WRAPPED_LEN: usize = NONCE_LEN + 32 + 16;

/// Data keys wrapped by a local master key. Cheap to clone.
#[derive(Clone)]
pub struct LocalVault {
    master: Arc<LessSafeKey>,
    key_id: String,
    path: PathBuf,
}

impl fmt::Debug for LocalVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalVault")
            .field("key_id", &self.key_id)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl LocalVault {
    /// Opens the master key file, creating it (32 random bytes, mode 0600,
    /// synced) when it does not exist. Refuses a file that is not exactly 32
    /// bytes or that group or others may read or write.
    pub fn open(master_key_path: &Path) -> Result<LocalVault, VaultError> {
        let path = master_key_path.to_path_buf();
        let fail = |reason: String| VaultError::MasterKeyFile {
            path: path.clone(),
            reason,
        };
        create_if_missing(master_key_path).map_err(&fail)?;
        let mut file =
            File::open(master_key_path).map_err(|e| fail(format!("it cannot be opened ({e})")))?;
        let meta = file
            .metadata()
            .map_err(|e| fail(format!("its metadata cannot be read ({e})")))?;
        if !meta.is_file() {
            return Err(fail("it is not a regular file".into()));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "its mode is {mode:04o}, so group or others may access it: run \
                 `chmod 600` on it (and consider the key exposed if others could read it)"
            )));
        }
        if meta.len() != 32 {
            return Err(fail(format!(
                "it holds {} bytes, not 32: restore the original master key file (a new \
                 one cannot open secrets sealed under the old one)",
                meta.len()
            )));
        }
        let mut key: KeyBytes = Zeroizing::new([0u8; 32]);
        file.read_exact(&mut key[..])
            .map_err(|e| fail(format!("it cannot be read ({e})")))?;
        let fingerprint = digest::digest(&digest::SHA256, &key[..]);
        let key_id = format!("local:{}", hex(&fingerprint.as_ref()[..8]));
        let master = crypto::aead_key(&key[..])?;
        Ok(LocalVault {
            master: Arc::new(master),
            key_id,
            path,
        })
    }

    /// This vault's key id (`local:` and the master key's fingerprint).
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    pub(crate) fn generate_data_key(
        &self,
        ctx: &SealContext,
    ) -> Result<(KeyBytes, Vec<u8>, String), VaultError> {
        let data_key = crypto::random_key()?;
        let wrapped = self.wrap(ctx, &data_key)?;
        Ok((data_key, wrapped, self.key_id.clone()))
    }

    fn wrap(&self, ctx: &SealContext, data_key: &KeyBytes) -> Result<Vec<u8>, VaultError> {
        let (ciphertext, nonce) =
            crypto::encrypt(&self.master, &ctx.aad(DATA_KEY_LABEL), &data_key[..])?;
        let mut wrapped = Vec::with_capacity(WRAPPED_LEN);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&ciphertext);
        Ok(wrapped)
    }

    pub(crate) fn unwrap_data_key(
        &self,
        ctx: &SealContext,
        sealed: &Sealed,
    ) -> Result<KeyBytes, VaultError> {
        if sealed.key_id != self.key_id {
            return Err(VaultError::KeyNotFound {
                key_id: sealed.key_id.clone(),
                reason: format!(
                    "this local vault's master key is {}; open the secret with the master \
                     key file it was sealed under",
                    self.key_id
                ),
            });
        }
        let wrapped = &sealed.encrypted_data_key;
        if wrapped.len() != WRAPPED_LEN {
            return Err(VaultError::Tampered {
                practice_id: ctx.practice_id.clone(),
                reason: format!(
                    "the encrypted data key is {} bytes, not {WRAPPED_LEN}",
                    wrapped.len()
                ),
            });
        }
        let (nonce, ciphertext) = wrapped.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| VaultError::wrong_context(ctx))?;
        let plain = crypto::decrypt(&self.master, nonce, &ctx.aad(DATA_KEY_LABEL), ciphertext)
            .ok_or_else(|| VaultError::wrong_context(ctx))?;
        crypto::key_from_slice(&plain).ok_or_else(|| VaultError::wrong_context(ctx))
    }

    pub(crate) fn rewrap_data_key(
        &self,
        ctx: &SealContext,
        sealed: &Sealed,
        new_key_id: &str,
    ) -> Result<(Vec<u8>, String), VaultError> {
        if new_key_id != self.key_id {
            return Err(VaultError::Config {
                reason: format!(
                    "a local vault rewraps only to its own master key {}, not {new_key_id:?}",
                    self.key_id
                ),
            });
        }
        let data_key = self.unwrap_data_key(ctx, sealed)?;
        Ok((self.wrap(ctx, &data_key)?, self.key_id.clone()))
    }
}

/// Creates the key file with 32 random bytes, mode 0600, and syncs it (and
/// its folder). An existing file is left alone.
fn create_if_missing(path: &Path) -> Result<(), String> {
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(format!("it does not exist and cannot be created ({e})")),
    };
    let key = crypto::random_key().map_err(|e| e.to_string())?;
    let written = file.write_all(&key[..]).and_then(|()| file.sync_all());
    if let Err(e) = written {
        let _ = std::fs::remove_file(path);
        return Err(format!("it was created but cannot be written ({e})"));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && let Ok(dir) = File::open(dir)
    {
        let _ = dir.sync_all();
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
