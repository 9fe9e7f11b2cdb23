//! The client's settings, one organization's connection settings, and the
//! rule for which endpoints may receive a bearer token.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use secrecy::SecretString;
use url::{Host, Url};

use crate::error::ClientError;
use crate::ids::OrganizationId;
use crate::query::MAX_PAGE_SIZE;

/// Whether plain `http://` may be used for loopback hosts (a local simulator).
///
/// Production never needs it, so it can only be switched on in code, on
/// purpose, with [`InsecureLoopback::allow_for_local_testing`]: it is not
/// deserializable and has no public fields. Even when allowed, an `http://`
/// URL whose host is not loopback (`127.0.0.0/8`, `::1`, `localhost`) is
/// refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InsecureLoopback {
    allowed: bool,
}

impl InsecureLoopback {
    /// Only `https://` endpoints (the default).
    pub const fn deny() -> Self {
        InsecureLoopback { allowed: false }
    }

    /// Also allow `http://` to loopback hosts. For tests and demos against a
    /// local simulator only.
    pub const fn allow_for_local_testing() -> Self {
        InsecureLoopback { allowed: true }
    }

    /// Whether `http://` to loopback hosts is allowed.
    pub const fn is_allowed(self) -> bool {
        self.allowed
    }
}

/// Settings shared by every organization the process talks to.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Each organization's request budget: sustained requests per second,
    /// shared by every task of this process (default 10).
    pub requests_per_second: NonZeroU32,
    /// How many requests an organization may make at once before the budget
    /// paces it (default 10).
    pub burst: NonZeroU32,
    /// Most HTTP attempts for one call when it fails transiently or is rate
    /// limited, the first included (default 6; at least 1).
    pub max_attempts: usize,
    /// First backoff ceiling; it doubles per retry (default 500 ms). Each
    /// wait is drawn uniformly below the ceiling ("full jitter").
    pub base_delay: Duration,
    /// Largest backoff ceiling (default 30 s).
    pub max_delay: Duration,
    /// Longest `Retry-After` the client waits out in place; a longer one
    /// ends the call with [`ClientError::RateLimited`] so that the caller
    /// can reschedule (default 120 s).
    pub max_retry_after: Duration,
    /// Time limit for one HTTP request, body included (default 60 s).
    pub request_timeout: Duration,
    /// Time limit for establishing a connection (default 10 s).
    pub connect_timeout: Duration,
    /// Default records per page, `1..=500` (default 500).
    pub page_size: u32,
    /// Most fetches of one page whose body cannot be read (truncated,
    /// malformed), the first included, with the same backoff as transient
    /// failures between them, before the call ends in
    /// [`ClientError::BadPayload`] (default 3; at least 1).
    pub body_attempts: usize,
    /// Largest response body accepted, in bytes (default 64 MiB).
    pub max_response_bytes: usize,
    /// Most answer bytes this process holds in memory at once: answers
    /// being read and parsed, and pages not yet landed (default 256 MiB; at
    /// least `max_response_bytes`). A read that would go beyond it waits.
    pub max_bytes_in_flight: usize,
    /// Plain http to a loopback host (tests only; denied by default).
    pub insecure_loopback: InsecureLoopback,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            requests_per_second: NonZeroU32::MIN.saturating_add(9),
            burst: NonZeroU32::MIN.saturating_add(9),
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            page_size: MAX_PAGE_SIZE,
            body_attempts: 3,
            max_response_bytes: 64 * 1024 * 1024,
            max_bytes_in_flight: 256 * 1024 * 1024,
            insecure_loopback: InsecureLoopback::deny(),
        }
    }
}

impl ClientConfig {
    /// Checks the settings; the error says which one is wrong.
    pub fn validate(&self) -> Result<(), ClientError> {
        if self.max_attempts == 0 {
            return Err(ClientError::config("max_attempts must be at least 1"));
        }
        if self.body_attempts == 0 {
            return Err(ClientError::config("body_attempts must be at least 1"));
        }
        if self.page_size == 0 || self.page_size > MAX_PAGE_SIZE {
            return Err(ClientError::config(format!(
                "page_size must be between 1 and {MAX_PAGE_SIZE}"
            )));
        }
        if self.request_timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ClientError::config(
                "request_timeout and connect_timeout must be above zero",
            ));
        }
        if self.base_delay > self.max_delay {
            return Err(ClientError::config("base_delay must not exceed max_delay"));
        }
        if self.max_response_bytes < 1024 {
            return Err(ClientError::config(
                "max_response_bytes must be at least 1024",
            ));
        }
        if self.max_bytes_in_flight < self.max_response_bytes {
            return Err(ClientError::config(
                "max_bytes_in_flight must be at least max_response_bytes",
            ));
        }
        Ok(())
    }
}

/// One organization's connection settings, as the vendor issues them.
#[derive(Clone)]
pub struct Connection {
    /// The API base, e.g. `https://prod.hs1api.com/ascend-gateway/api`.
    pub api_base: Url,
    /// The token endpoint, e.g.
    /// `https://prod.hs1api.com/oauth/client_credential/accesstoken`.
    pub token_url: Url,
    /// The `Organization-ID` sent with every call.
    pub organization_id: OrganizationId,
    /// The Client ID.
    pub client_id: String,
    /// The Client Secret; never logged or shown.
    pub client_secret: SecretString,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("api_base", &self.api_base.as_str())
            .field("token_url", &self.token_url.as_str())
            .field("organization_id", &self.organization_id)
            .field("client_id", &self.client_id)
            .field("client_secret", &"[REDACTED]")
            .finish()
    }
}

/// Whether a host is loopback: `127.0.0.0/8`, `::1` or `localhost`.
fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(name) => name.eq_ignore_ascii_case("localhost"),
    }
}

/// Checks that a bearer token (or the client secret) may be sent to `url`:
/// `https://` anywhere; `http://` only to a loopback host and only when
/// `insecure_loopback` allows it. `what` names the setting in the error.
pub(crate) fn check_endpoint(
    what: &str,
    url: &Url,
    insecure_loopback: InsecureLoopback,
) -> Result<(), ClientError> {
    let shown = redacted(url);
    let host = url
        .host()
        .ok_or_else(|| ClientError::config(format!("{what} {shown} has no host")))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ClientError::config(format!(
            "{what} {shown} must not carry user information"
        )));
    }
    if url.fragment().is_some() {
        return Err(ClientError::config(format!(
            "{what} {shown} must not have a fragment"
        )));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&host) && insecure_loopback.is_allowed() => Ok(()),
        "http" if is_loopback(&host) => Err(ClientError::config(format!(
            "{what} {shown} is plain http; the bearer token goes over https only \
             (plain http to a loopback simulator needs the explicit insecure-loopback setting)"
        ))),
        "http" => Err(ClientError::config(format!(
            "{what} {shown} is plain http to a host that is not loopback; the bearer token goes over https only"
        ))),
        other => Err(ClientError::config(format!(
            "{what} {shown} has scheme {other:?}; use https"
        ))),
    }
}

/// A URL for messages: without user information.
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(url: &str, allow: bool) -> Result<(), ClientError> {
        let url = Url::parse(url).expect("parses");
        let policy = if allow {
            InsecureLoopback::allow_for_local_testing()
        } else {
            InsecureLoopback::deny()
        };
        check_endpoint("api_base", &url, policy)
    }

    #[test]
    fn https_is_always_fine() {
        assert!(check("https://prod.hs1api.com/ascend-gateway/api", false).is_ok());
        assert!(check("https://prod.hs1api.com/ascend-gateway/api", true).is_ok());
        assert!(check("https://127.0.0.1:8443/api", false).is_ok());
    }

    #[test]
    fn http_loopback_needs_the_opt_in() {
        for url in [
            "http://127.0.0.1:8080/api",
            "http://127.1.2.3/",
            "http://[::1]:9000/x",
            "http://localhost:1/",
            "http://LOCALHOST/",
        ] {
            assert!(check(url, true).is_ok(), "{url}");
            let error = check(url, false).expect_err("refused without opt-in");
            assert_eq!(error.class().as_str(), "config");
            assert!(error.to_string().contains("https only"), "{error}");
        }
    }

    #[test]
    fn http_elsewhere_is_refused_even_with_the_opt_in() {
        for url in [
            "http://prod.hs1api.com/ascend-gateway/api",
            "http://10.0.0.1/",
            "http://128.0.0.1/",
            "http://localhost.example.com/",
            "http://[::2]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(check(url, true).is_err(), "{url}");
            assert!(check(url, false).is_err(), "{url}");
        }
    }

    #[test]
    fn other_schemes_and_odd_urls_are_refused() {
        assert!(check("ftp://prod.hs1api.com/", true).is_err());
        assert!(check("file:///etc/passwd", true).is_err());
        assert!(check("https://user:pw@prod.hs1api.com/", true).is_err());
        assert!(check("https://prod.hs1api.com/api#frag", true).is_err());
        let error = check("https://user:hunter2@prod.hs1api.com/", true).expect_err("refused");
        assert!(!error.to_string().contains("hunter2"), "{error}");
    }

    #[test]
    fn default_config_is_valid_and_denies_http() {
        let config = ClientConfig::default();
        assert!(config.validate().is_ok());
        assert!(!config.insecure_loopback.is_allowed());
        assert_eq!(config.page_size, 500);
        assert_eq!(config.requests_per_second.get(), 10);
    }

    #[test]
    fn bad_configs_are_refused() {
        let bad = [
            ClientConfig {
                max_attempts: 0,
                ..ClientConfig::default()
            },
            ClientConfig {
                page_size: 0,
                ..ClientConfig::default()
            },
            ClientConfig {
                page_size: 501,
                ..ClientConfig::default()
            },
            ClientConfig {
                request_timeout: Duration::ZERO,
                ..ClientConfig::default()
            },
            ClientConfig {
                base_delay: Duration::from_secs(60),
                ..ClientConfig::default()
            },
        ];
        for config in bad {
            assert_eq!(
                config.validate().expect_err("invalid").class().as_str(),
                "config",
                "{config:?}"
            );
        }
    }
}
