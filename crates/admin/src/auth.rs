//! Who is asking: a bearer token (the API) or the session cookie that
//! holds one (the pages), both turned into a principal by the Gate.
//!
//! - A token that is malformed, unknown or revoked is refused (401) and
//!   the attempt is audited as `auth.failed` (`anonymous`, with the
//!   token's public id when it has one; never the token). A request with
//!   no token at all is refused without an audit row: it is not an
//!   attempt.
//! - The session cookie (`asy_session`) holds the token itself, `Secure`,
//!   `HttpOnly`, `SameSite=Strict`, for 8 hours; every request
//!   authenticates it again, so a revoked token ends its sessions at once.
//! - Forms carry a CSRF token derived from the session's token
//!   (`SHA-256("ascend-sync/csrf/v1", token)`): a page of another site can
//!   neither read the cookie nor compute it.

use access::{Gate, Principal};
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use store::{AuditEntry, AuditOutcome, Store};

use crate::error::ApiError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "asy_session";

/// How long a session cookie lives, in seconds.
pub const SESSION_SECONDS: u32 = 8 * 3600;

/// The bearer token of an `Authorization` header, if any.
pub fn bearer(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?;
    Some(SecretString::from(token.trim().to_owned()))
}

/// The session cookie's token, if any.
pub fn session(headers: &HeaderMap) -> Option<SecretString> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| SecretString::from(value.trim().to_owned()))
        .filter(|t| !t.expose_secret().is_empty())
}

/// The principal `token` stands for; a refused token is audited.
pub async fn authenticate(
    gate: &Gate,
    store: &Store,
    token: &SecretString,
    via: &str,
) -> Result<Principal, ApiError> {
    match gate.authenticate(token).await {
        Ok(principal) => Ok(principal),
        Err(access::AccessError::Unauthenticated) => {
            let which = public_id(token)
                .map(|id| format!("token {id}"))
                .unwrap_or_else(|| "a token of the wrong form".to_owned());
            store
                .record_audit(&AuditEntry {
                    actor: "anonymous".to_owned(),
                    action: "auth.failed".to_owned(),
                    practice_id: None,
                    outcome: AuditOutcome::Refused,
                    detail: Some(format!("{via}: {which} was refused")),
                })
                .await?;
            Err(access::AccessError::Unauthenticated.into())
        }
        Err(other) => Err(other.into()),
    }
}

/// The API's principal: from the bearer token.
pub async fn api_principal(
    gate: &Gate,
    store: &Store,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    let token = bearer(headers).ok_or(access::AccessError::Unauthenticated)?;
    authenticate(gate, store, &token, "bearer").await
}

/// The public id of a token of the right form (`asy_{id}_...`), for the
/// audit log; never more of it.
fn public_id(token: &SecretString) -> Option<String> {
    let rest = token.expose_secret().strip_prefix("asy_")?;
    let (id, _) = rest.split_once('_')?;
    (id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_owned())
}

/// The CSRF token of a session.
pub fn csrf_token(session: &SecretString) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"ascend-sync/csrf/v1\n");
    hasher.update(session.expose_secret().as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `given` is the session's CSRF token (compared in constant
/// time).
pub fn csrf_ok(session: &SecretString, given: &str) -> bool {
    let want = csrf_token(session);
    want.len() == given.len()
        && want
            .bytes()
            .zip(given.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The `Set-Cookie` value of a new session.
pub fn session_cookie(token: &SecretString) -> String {
    format!(
        "{SESSION_COOKIE}={}; Path=/; Max-Age={SESSION_SECONDS}; Secure; HttpOnly; SameSite=Strict",
        token.expose_secret()
    )
}

/// The `Set-Cookie` value that ends a session.
pub fn cleared_cookie() -> String {
    format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict")
}
