//! Minting and hashing admin tokens (`asy_{id}_{secret}`).

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use secrecy::{ExposeSecret, SecretString};

use crate::AccessError;

const PREFIX: &str = "asy_";
const ID_BYTES: usize = 8;
const SECRET_BYTES: usize = 32;

/// A new token: its public id, its value (shown once) and its hash.
pub struct Minted {
    pub token_id: String,
    pub token: SecretString,
    pub hash: [u8; 32],
}

/// Draws a new token from the system's secure random source.
pub fn mint_token() -> Result<Minted, AccessError> {
    let rng = SystemRandom::new();
    let mut id = [0u8; ID_BYTES];
    let mut secret = [0u8; SECRET_BYTES];
    rng.fill(&mut id)
        .and_then(|()| rng.fill(&mut secret))
        .map_err(|_| AccessError::Random)?;
    let token_id = hex(&id);
    let value = format!("{PREFIX}{token_id}_{}", hex(&secret));
    secret.fill(0);
    let hash = hash_token(&value);
    Ok(Minted {
        token_id,
        token: SecretString::from(value),
        hash,
    })
}

/// The SHA-256 of a token's whole value, as the store keeps it.
pub fn hash_token(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// The hash of `token` if it has a token's form (so garbage never reaches
/// the database).
pub(crate) fn hash_if_well_formed(token: &SecretString) -> Option<[u8; 32]> {
    let value = token.expose_secret();
    let rest = value.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let well_formed = id.len() == ID_BYTES * 2
        && secret.len() == SECRET_BYTES * 2
        && id
            .bytes()
            .chain(secret.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then(|| hash_token(value))
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}
