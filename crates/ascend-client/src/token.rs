//! The access-token cache of one organization's credentials: client
//! credentials grant, refresh ahead of expiry, one refresh at a time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio::time::Instant;
use url::Url;

use crate::config::Connection;
use crate::error::{AuthFailure, ClientError, body_message};
use crate::http::{BodyError, ERROR_BODY_BYTES, location, read_body, read_error_body, retry_after};
use crate::ids::OrganizationId;

/// Lifetime assumed when the token endpoint does not say (`expires_in`).
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// A usable access token.
pub(crate) struct Token {
    /// `Bearer <token>`, marked sensitive so that it is never printed.
    pub(crate) authorization: HeaderValue,
    /// Tokens are numbered; a caller that saw a 401 asks for one newer
    /// than the one it used.
    pub(crate) generation: u64,
    /// When to fetch the next one.
    refresh_at: Instant,
}

impl Token {
    /// Removes this token from a server-provided message, in case the
    /// server echoes it.
    pub(crate) fn redact(&self, message: String) -> String {
        let token = self
            .authorization
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "));
        match token {
            Some(token) if !token.is_empty() && message.contains(token) => {
                message.replace(token, "[REDACTED]")
            }
            _ => message,
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("authorization", &"[REDACTED]")
            .field("generation", &self.generation)
            .field("refresh_at", &self.refresh_at)
            .finish()
    }
}

/// When to refresh a token that lives `lifetime`: a minute before expiry,
/// or at half-life when it lives less than two minutes.
pub(crate) fn refresh_after(lifetime: Duration) -> Duration {
    if lifetime >= Duration::from_secs(120) {
        lifetime - Duration::from_secs(60)
    } else {
        lifetime / 2
    }
}

/// The token endpoint's answer. Unknown members are ignored.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    access_token: Option<SecretString>,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Reads `expires_in`: seconds as a string (`"3600"`, the API's way) or a
/// number.
fn lifetime(expires_in: Option<&serde_json::Value>) -> Option<Duration> {
    match expires_in? {
        serde_json::Value::String(s) => s.trim().parse::<u64>().ok().map(Duration::from_secs),
        serde_json::Value::Number(n) => n.as_u64().map(Duration::from_secs).or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0)
                .and_then(|f| Duration::try_from_secs_f64(f).ok())
        }),
        _ => None,
    }
}

/// What the token cache needs from its owner for one fetch.
pub(crate) struct FetchContext<'a> {
    pub(crate) http: &'a reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) refreshes: &'a AtomicU64,
}

/// The token cache for one organization's credentials.
pub(crate) struct TokenCache {
    organization_id: OrganizationId,
    /// The token URL with `grant_type=client_credentials` added.
    request_url: Url,
    token_url: Url,
    client_id: String,
    client_secret: SecretString,
    current: Mutex<Option<Arc<Token>>>,
    refresh: tokio::sync::Mutex<()>,
    generations: AtomicU64,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("organization_id", &self.organization_id)
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish_non_exhaustive()
    }
}

impl TokenCache {
    pub(crate) fn new(connection: &Connection) -> Self {
        let mut request_url = connection.token_url.clone();
        request_url
            .query_pairs_mut()
            .append_pair("grant_type", "client_credentials");
        TokenCache {
            organization_id: connection.organization_id.clone(),
            request_url,
            token_url: connection.token_url.clone(),
            client_id: connection.client_id.clone(),
            client_secret: connection.client_secret.clone(),
            current: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
            generations: AtomicU64::new(0),
        }
    }

    /// Whether this cache serves exactly these credentials.
    pub(crate) fn serves(&self, connection: &Connection) -> bool {
        self.token_url == connection.token_url
            && self.client_id == connection.client_id
            && self.client_secret.expose_secret() == connection.client_secret.expose_secret()
    }

    /// A token that is not due for refresh. With `stale` set (the
    /// generation that just got a 401), a newer one. Only one caller fetches
    /// at a time; the others wait for its result.
    pub(crate) async fn token(
        &self,
        ctx: &FetchContext<'_>,
        stale: Option<u64>,
    ) -> Result<Arc<Token>, ClientError> {
        if let Some(token) = self.usable(stale) {
            return Ok(token);
        }
        let _refreshing = self.refresh.lock().await;
        if let Some(token) = self.usable(stale) {
            return Ok(token);
        }
        let token = Arc::new(self.fetch(ctx).await?);
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&token));
        Ok(token)
    }

    /// Forgets the token of `generation` (the API refused it), so no later
    /// call, retry or task uses it again; a newer token is kept.
    pub(crate) fn invalidate(&self, generation: u64) {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref().is_some_and(|t| t.generation == generation) {
            *current = None;
        }
    }

    fn usable(&self, stale: Option<u64>) -> Option<Arc<Token>> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()?;
        if Instant::now() >= current.refresh_at || stale == Some(current.generation) {
            return None;
        }
        Some(current)
    }

    fn auth(&self, reason: AuthFailure) -> ClientError {
        ClientError::Auth {
            organization_id: self.organization_id.clone(),
            reason,
        }
    }

    /// Redacts the secret from a server-provided message, in case it is
    /// echoed.
    fn redact(&self, message: String) -> String {
        let secret = self.client_secret.expose_secret();
        if secret.is_empty() {
            message
        } else {
            message.replace(secret, "[REDACTED]")
        }
    }

    async fn fetch(&self, ctx: &FetchContext<'_>) -> Result<Token, ClientError> {
        let started = Instant::now();
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", &self.client_id)
            .append_pair("client_secret", self.client_secret.expose_secret())
            .finish();
        let sent = ctx
            .http
            .post(self.request_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .timeout(ctx.timeout)
            .body(form)
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                let error = ClientError::from_transport(&error.without_url(), ctx.timeout);
                tracing::warn!(organization_id = %self.organization_id, error = %error, "token request failed");
                return Err(error);
            }
        };
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let error = match status {
                400 | 401 | 403 => {
                    let message = self.redact(body_message(&read_error_body(&mut response).await));
                    self.auth(AuthFailure::BadCredentials { status, message })
                }
                429 => ClientError::RateLimited {
                    retry_after: retry_after(&response),
                },
                408 | 500..=599 => {
                    let message = self.redact(body_message(&read_error_body(&mut response).await));
                    ClientError::transient(
                        Some(status),
                        format!("the token endpoint answered: {message}"),
                    )
                }
                300..=399 => ClientError::config(format!(
                    "the token endpoint {} answered a redirect ({status}) to {}; redirects are not followed, \
                     set the token URL to the final address",
                    self.token_url,
                    location(&response)
                )),
                404 => ClientError::config(format!(
                    "the token endpoint {} does not exist (404); check the token URL",
                    self.token_url
                )),
                _ => ClientError::Rejected {
                    status,
                    message: self.redact(body_message(&read_error_body(&mut response).await)),
                },
            };
            tracing::warn!(organization_id = %self.organization_id, status, error = %error, "token request refused");
            return Err(error);
        }
        let body = match read_body(&mut response, ERROR_BODY_BYTES).await {
            Ok(body) => body,
            Err(BodyError::TooLarge { limit }) => {
                return Err(self.auth(AuthFailure::UnusableTokenResponse {
                    detail: format!("the answer is larger than {limit} bytes"),
                }));
            }
            Err(BodyError::Transport(error)) => {
                return Err(ClientError::from_transport(
                    &error.without_url(),
                    ctx.timeout,
                ));
            }
        };
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            // The serde message could quote the body; say only where it broke.
            self.auth(AuthFailure::UnusableTokenResponse {
                detail: format!(
                    "not the expected JSON ({:?} error at line {} column {})",
                    e.classify(),
                    e.line(),
                    e.column()
                ),
            })
        })?;
        let Some(access_token) = answer
            .access_token
            .filter(|t| !t.expose_secret().trim().is_empty())
        else {
            return Err(self.auth(AuthFailure::UnusableTokenResponse {
                detail: "no access_token".to_string(),
            }));
        };
        if let Some(kind) = answer
            .token_type
            .as_deref()
            .filter(|k| !k.eq_ignore_ascii_case("bearer"))
        {
            tracing::warn!(organization_id = %self.organization_id, token_type = kind, "unexpected token_type; using it as a bearer token");
        }
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {}", access_token.expose_secret().trim()))
                .map_err(|_| {
                    self.auth(AuthFailure::UnusableTokenResponse {
                        detail: "the access_token has characters a header cannot carry".to_string(),
                    })
                })?;
        authorization.set_sensitive(true);
        let lifetime = lifetime(answer.expires_in.as_ref()).unwrap_or_else(|| {
            tracing::warn!(organization_id = %self.organization_id, "no readable expires_in; assuming one hour");
            DEFAULT_LIFETIME
        });
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        ctx.refreshes.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            organization_id = %self.organization_id,
            lifetime_s = lifetime.as_secs(),
            generation,
            "obtained an access token"
        );
        Ok(Token {
            authorization,
            generation,
            refresh_at: started + refresh_after(lifetime),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn refresh_a_minute_early_or_at_half_life() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(3540)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(120)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(119)),
            Duration::from_millis(59_500)
        );
        assert_eq!(
            refresh_after(Duration::from_secs(4)),
            Duration::from_secs(2)
        );
        assert_eq!(refresh_after(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn expires_in_string_or_number() {
        assert_eq!(
            lifetime(Some(&json!("3600"))),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            lifetime(Some(&json!(" 60 "))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            lifetime(Some(&json!(3600))),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            lifetime(Some(&json!(1.5))),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(lifetime(Some(&json!("soon"))), None);
        assert_eq!(lifetime(Some(&json!(-5))), None);
        assert_eq!(lifetime(Some(&json!(null))), None);
        assert_eq!(lifetime(None), None);
    }

    #[test]
    fn token_answer_reads_the_documented_shape() {
        let answer: TokenAnswer = serde_json::from_str(
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":"3600","extra":1}"#,
        )
        .expect("parses");
        assert_eq!(
            answer
                .access_token
                .map(|t| t.expose_secret().to_string())
                .as_deref(),
            Some("abc")
        );
        assert_eq!(
            lifetime(answer.expires_in.as_ref()),
            Some(Duration::from_secs(3600))
        );
    }
}
