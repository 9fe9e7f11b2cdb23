//! Where a practice's Client Secret and bearer tokens may go: the host
//! allow-list (issue 16).
//!
//! A practice's token URL and API base are kept in plain columns; the
//! Client Secret is sent to the first and tokens to the second. So both
//! are held to one rule, [`HostPolicy::check`], when a practice is
//! connected or its credentials rotated (`control`), every time a worker
//! opens its credentials (`worker::credentials`), and for the by-hand
//! `sync` and `pull` commands. By default only `https` to the vendor's
//! hosts ([`VENDOR_HOSTS`], on the default port) passes. A deployment that
//! talks to a test server (the simulator) names that one host explicitly
//! ([`HostPolicy::allowing_test_host`], `ASCEND_SYNC_ALLOW_TEST_HOST`):
//! `http` or `https`, any port, for that host only.

use std::fmt;

use url::Url;

/// The vendor's hosts: production and the sandbox.
pub const VENDOR_HOSTS: [&str; 2] = ["prod.hs1api.com", "test.hs1api.com"];

/// The environment variable (and the `--allow-test-host` flag's) that
/// names a deployment's test host.
pub const ALLOW_TEST_HOST_ENV: &str = "ASCEND_SYNC_ALLOW_TEST_HOST";

/// Which of a practice's two URLs is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The OAuth token URL: receives the Client ID and Secret.
    TokenUrl,
    /// The API base: receives the bearer tokens.
    ApiBase,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Endpoint::TokenUrl => "token URL",
            Endpoint::ApiBase => "API base",
        })
    }
}

/// Why a URL may not receive a practice's secret or tokens. Says which
/// hosts are allowed and how a deployment allows a test host.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {endpoint} {shown} is refused: {reason}. Only https to {vendor} is allowed{test}; a \
     deployment that talks to a test server allows that one host explicitly with \
     {ALLOW_TEST_HOST_ENV}=HOST (or --allow-test-host HOST)",
    vendor = VENDOR_HOSTS.join(" or "),
    test = match &self.test_host {
        Some(host) => format!(", and http or https to the test host {host}"),
        None => String::new(),
    }
)]
pub struct HostRefused {
    /// Which URL.
    pub endpoint: Endpoint,
    /// The URL's scheme, host and port (never a user name or password).
    pub shown: String,
    /// What is wrong with it.
    pub reason: String,
    /// The test host the deployment allows, if any.
    pub test_host: Option<String>,
}

/// The hosts a deployment sends secrets and tokens to. The default is
/// the vendor's hosts only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostPolicy {
    test_host: Option<String>,
}

impl HostPolicy {
    /// The vendor's hosts only, over https: production's policy.
    #[must_use]
    pub fn vendor_only() -> HostPolicy {
        HostPolicy::default()
    }

    /// The vendor's hosts, and `host` (a name or an IP address, without
    /// scheme, port or path) over http or https on any port: a deployment
    /// that talks to a test server, the demo and the tests.
    pub fn allowing_test_host(host: &str) -> Result<HostPolicy, String> {
        let host = host.trim();
        let refuse = || {
            format!(
                "{ALLOW_TEST_HOST_ENV} must be one host name or IP address, without scheme, port \
                 or path (e.g. 127.0.0.1), not {host:?}"
            )
        };
        if host.is_empty() || host.contains(['/', '@', '?', '#']) {
            return Err(refuse());
        }
        let url = Url::parse(&format!("http://{host}/")).map_err(|_| refuse())?;
        if url.port().is_some() {
            return Err(refuse());
        }
        let normal = url.host_str().ok_or_else(refuse)?.to_owned();
        Ok(HostPolicy {
            test_host: Some(normal),
        })
    }

    /// The policy a deployment's setting gives: the vendor's hosts, and
    /// the test host if one is named (an empty setting names none).
    pub fn from_setting(test_host: Option<&str>) -> Result<HostPolicy, String> {
        match test_host.map(str::trim).filter(|h| !h.is_empty()) {
            Some(host) => HostPolicy::allowing_test_host(host),
            None => Ok(HostPolicy::vendor_only()),
        }
    }

    /// The test host allowed, if any (normalized: lower case, IPv6 in
    /// brackets).
    #[must_use]
    pub fn test_host(&self) -> Option<&str> {
        self.test_host.as_deref()
    }

    /// `url`, parsed, if `endpoint` may point there: https to a vendor
    /// host on the default port, or the allowed test host (http or https,
    /// any port). A URL with a user name or password is refused.
    pub fn check(&self, endpoint: Endpoint, url: &str) -> Result<Url, HostRefused> {
        let refused = |shown: String, reason: &str| HostRefused {
            endpoint,
            shown,
            reason: reason.to_owned(),
            test_host: self.test_host.clone(),
        };
        let parsed = Url::parse(url)
            .map_err(|_| refused(format!("{url:?}"), "it is not a valid absolute URL"))?;
        let host = parsed.host_str().unwrap_or("").to_owned();
        let shown = match parsed.port() {
            Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
            None => format!("{}://{host}", parsed.scheme()),
        };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refused(shown, "it carries a user name or password"));
        }
        if self.test_host.as_deref() == Some(host.as_str()) {
            return match parsed.scheme() {
                "http" | "https" => Ok(parsed),
                _ => Err(refused(shown, "its scheme is not http or https")),
            };
        }
        if !VENDOR_HOSTS.contains(&host.as_str()) {
            return Err(refused(shown, "its host is not the vendor's"));
        }
        if parsed.scheme() != "https" {
            return Err(refused(shown, "it is not https"));
        }
        if parsed.port_or_known_default() != Some(443) {
            return Err(refused(shown, "it is not the default https port"));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_vendors_hosts_over_https_by_default() {
        let policy = HostPolicy::vendor_only();
        for good in [
            "https://prod.hs1api.com/ascend-gateway/api",
            "https://test.hs1api.com/oauth/client_credential/accesstoken",
            "https://PROD.hs1api.com:443/ascend-gateway/api",
        ] {
            assert!(policy.check(Endpoint::ApiBase, good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("http://prod.hs1api.com/ascend-gateway/api", "not https"),
            ("https://prod.hs1api.com:8443/x", "default https port"),
            ("https://evil.example/oauth", "not the vendor's"),
            ("https://prod.hs1api.com.evil.example/x", "not the vendor's"),
            ("https://me:pw@prod.hs1api.com/x", "user name or password"),
            ("http://127.0.0.1:8080/x", "not the vendor's"),
            ("not a url", "not a valid absolute URL"),
        ] {
            let err = policy.check(Endpoint::TokenUrl, bad).expect_err("refused");
            let text = err.to_string();
            assert!(text.contains(why), "{bad}: {text}");
            assert!(
                text.contains("prod.hs1api.com or test.hs1api.com"),
                "{text}"
            );
            assert!(text.contains(ALLOW_TEST_HOST_ENV), "{text}");
            assert!(text.starts_with("the token URL"), "{text}");
            assert!(!text.contains("pw"), "no password shown: {text}");
        }
    }

    #[test]
    fn an_allowed_test_host_takes_http_on_any_port_and_nothing_else_changes() {
        let policy = HostPolicy::allowing_test_host("127.0.0.1").expect("a host");
        assert_eq!(policy.test_host(), Some("127.0.0.1"));
        assert!(
            policy
                .check(Endpoint::ApiBase, "http://127.0.0.1:4321/a")
                .is_ok()
        );
        assert!(
            policy
                .check(Endpoint::ApiBase, "https://127.0.0.1/a")
                .is_ok()
        );
        assert!(
            policy
                .check(Endpoint::ApiBase, "http://127.0.0.2:4321/a")
                .is_err()
        );
        assert!(
            policy
                .check(Endpoint::ApiBase, "http://localhost:4321/a")
                .is_err()
        );
        assert!(
            policy
                .check(Endpoint::ApiBase, "http://prod.hs1api.com/a")
                .is_err()
        );
        let err = policy
            .check(Endpoint::ApiBase, "http://10.0.0.1/a")
            .expect_err("refused");
        assert!(err.to_string().contains("test host 127.0.0.1"), "{err}");
        let named = HostPolicy::allowing_test_host("Sim.Local").expect("a name");
        assert!(
            named
                .check(Endpoint::TokenUrl, "http://sim.local:9/t")
                .is_ok()
        );
    }

    #[test]
    fn a_test_host_setting_is_one_bare_host() {
        for bad in ["", "http://127.0.0.1", "127.0.0.1:8080", "a/b", "u@h"] {
            assert!(HostPolicy::allowing_test_host(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            HostPolicy::from_setting(Some("  ")),
            Ok(HostPolicy::vendor_only())
        );
        assert_eq!(
            HostPolicy::from_setting(None),
            Ok(HostPolicy::vendor_only())
        );
        let v6 = HostPolicy::allowing_test_host("[::1]").expect("IPv6");
        assert!(v6.check(Endpoint::ApiBase, "http://[::1]:80/a").is_ok());
    }
}
