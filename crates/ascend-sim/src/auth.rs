//! OAuth client-credentials tokens, as Apigee issues them in front of Ascend.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::hash::hash3;

const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` base-62 characters derived from `seed` and `salt`.
pub(crate) fn base62(seed: u64, salt: u64, len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut k = 0;
    while out.len() < len {
        let mut h = hash3(seed, salt, k);
        for _ in 0..10 {
            if out.len() == len {
                break;
            }
            out.push(char::from(ALPHABET[(h % 62) as usize]));
            h /= 62;
        }
        k += 1;
    }
    out
}

#[derive(Clone, Copy, Debug)]
struct TokenInfo {
    org: usize,
    expires: Instant,
    generation: u64,
}

/// Why a token was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TokenError {
    /// Unknown, malformed or revoked.
    Invalid,
    Expired,
}

/// Every token issued, by value.
#[derive(Debug)]
pub(crate) struct TokenStore {
    seed: u64,
    tokens: Mutex<HashMap<String, TokenInfo>>,
    issued: AtomicU64,
    ttl_secs: AtomicU64,
}

impl TokenStore {
    pub(crate) fn new(seed: u64, ttl: Duration) -> Self {
        Self {
            seed,
            tokens: Mutex::new(HashMap::new()),
            issued: AtomicU64::new(0),
            ttl_secs: AtomicU64::new(ttl.as_secs()),
        }
    }

    pub(crate) fn ttl_secs(&self) -> u64 {
        self.ttl_secs.load(Ordering::Relaxed)
    }

    pub(crate) fn set_ttl_secs(&self, secs: u64) {
        self.ttl_secs.store(secs, Ordering::Relaxed);
    }

    /// Issues a token for `org`, valid for the current TTL and until the
    /// organization's tokens are revoked (its generation moves on).
    pub(crate) fn issue(&self, org: usize, generation: u64) -> (String, u64) {
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        let token = base62(self.seed, 0x70C0 + n, 28);
        let ttl = self.ttl_secs();
        let info = TokenInfo {
            org,
            expires: Instant::now() + Duration::from_secs(ttl),
            generation,
        };
        if let Ok(mut map) = self.tokens.lock() {
            let now = Instant::now();
            if map.len() > 10_000 {
                map.retain(|_, t| t.expires > now);
            }
            map.insert(token.clone(), info);
        }
        (token, ttl)
    }

    /// The organization a token belongs to. `generation` gives the current
    /// revocation generation of an organization.
    pub(crate) fn check(
        &self,
        token: &str,
        generation: impl Fn(usize) -> u64,
    ) -> Result<usize, TokenError> {
        let info = {
            let map = self.tokens.lock().map_err(|_| TokenError::Invalid)?;
            *map.get(token).ok_or(TokenError::Invalid)?
        };
        if info.generation != generation(info.org) {
            return Err(TokenError::Invalid);
        }
        if Instant::now() >= info.expires {
            return Err(TokenError::Expired);
        }
        Ok(info.org)
    }

    /// Every token issued to `org` that the store still remembers (expired
    /// and revoked ones included), sorted: for leak tests.
    pub(crate) fn issued_to(&self, org: usize) -> Vec<String> {
        let Ok(map) = self.tokens.lock() else {
            return Vec::new();
        };
        let mut out: Vec<String> = map
            .iter()
            .filter(|(_, t)| t.org == org)
            .map(|(token, _)| token.clone())
            .collect();
        out.sort();
        out
    }

    /// The organization a token was issued to, valid or not (to attribute
    /// refused calls in the counters).
    pub(crate) fn owner(&self, token: &str) -> Option<usize> {
        self.tokens.lock().ok()?.get(token).map(|t| t.org)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_check_revocation_and_expiry() {
        let store = TokenStore::new(1, Duration::from_secs(3600));
        let (a, ttl) = store.issue(0, 0);
        assert_eq!(ttl, 3600);
        assert_eq!(a.len(), 28);
        assert_eq!(store.check(&a, |_| 0), Ok(0));
        assert_eq!(store.check(&a, |_| 1), Err(TokenError::Invalid), "revoked");
        assert_eq!(store.check("nope", |_| 0), Err(TokenError::Invalid));
        store.set_ttl_secs(0);
        let (b, _) = store.issue(1, 0);
        assert_ne!(a, b);
        assert_eq!(store.check(&b, |_| 0), Err(TokenError::Expired));
        assert_eq!(store.owner(&b), Some(1));
    }
}
