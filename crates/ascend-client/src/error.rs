//! The client's one error type. Each variant says what an operator (or the
//! sync engine's scheduler) has to do about it; none of them ever carries a
//! client secret or an access token.

use std::fmt;
use std::time::Duration;

use crate::Resource;
use crate::ids::OrganizationId;
use crate::query::Cursor;
use model::ErrorClass;

/// Longest server-provided message kept in an error, in characters.
pub(crate) const MAX_MESSAGE_CHARS: usize = 300;

/// Everything that can go wrong talking to the Ascend API.
///
/// Use [`ClientError::is_retryable`] to decide whether trying again later can
/// help, and [`ClientError::class`] for a short stable label in history rows
/// and metrics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The organization's credentials or enablement are wrong. Never retried:
    /// a person must act.
    #[error("organization {organization_id}: {reason}")]
    Auth {
        /// The organization the call was made for.
        organization_id: OrganizationId,
        /// What exactly was refused.
        reason: AuthFailure,
    },
    /// The API answered `429 Too Many Requests` on every attempt, or asked us
    /// to wait longer than the client is willing to wait in place.
    #[error("the Ascend API is rate limiting this organization{}; the organization's request budget should be lowered if this repeats", RetryAfterText(*.retry_after))]
    RateLimited {
        /// The wait the server asked for (`Retry-After`), if it said.
        retry_after: Option<Duration>,
    },
    /// A failure that usually passes: a 5xx answer, a timeout, a refused or
    /// broken connection. Retried by the client, then reported.
    #[error("transient failure talking to the Ascend API{}: {detail}; try again later", StatusText(*.status))]
    Transient {
        /// The HTTP status, when the server answered.
        status: Option<u16>,
        /// What happened.
        detail: String,
    },
    /// `404` on a list: this resource is not offered to this organization
    /// (e.g. `/v1/transactions`). Not a failure of the sync as a whole.
    #[error("{resource} is not offered to this organization (404 on {}); skip it", .resource.path())]
    NotOffered {
        /// The resource that was asked for.
        resource: Resource,
    },
    /// `403` on a list: this organization may not read this resource. Only
    /// that resource is affected, unless every resource answers so (then the
    /// vendor has not enabled the integration: see [`AuthFailure::NotEnabled`]).
    #[error(
        "the organization may not read {resource} (403 on {}): the vendor has not allowed it \
         for this integration; the other resources go on, ask the vendor if it is needed",
        .resource.path()
    )]
    Forbidden {
        /// The resource that was asked for.
        resource: Resource,
    },
    /// The server answered 2xx with a body we cannot use. Not retried by the
    /// client: the same request would most likely get the same answer.
    #[error(
        "unusable answer for {resource} at {page}: {detail}; report it to the vendor if it persists"
    )]
    BadPayload {
        /// The resource that was asked for.
        resource: Resource,
        /// Which page: the page number or the `lastId` cursor.
        page: Cursor,
        /// What was wrong with the body.
        detail: String,
    },
    /// Any other 4xx, e.g. `400` for a filter the API does not accept. The
    /// request itself must change; retrying it cannot help.
    #[error("the Ascend API rejected the request ({status}): {message}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's message, shortened.
        message: String,
    },
    /// The client's configuration or a connection's settings are wrong
    /// (endpoint not allowed, bad filter field, redirect answered, ...).
    #[error("configuration error: {detail}")]
    Config {
        /// What is wrong and what to change.
        detail: String,
    },
}

/// What exactly the API refused in a [`ClientError::Auth`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// The token endpoint refused the Client ID / Client Secret.
    BadCredentials {
        /// The token endpoint's HTTP status.
        status: u16,
        /// The token endpoint's message, shortened (never the secret).
        message: String,
    },
    /// The API answered `401` again right after a fresh token was issued.
    TokenRefused,
    /// `403`: the vendor has not enabled the integration for this
    /// organization.
    NotEnabled,
    /// The token endpoint answered 2xx but without a usable access token.
    UnusableTokenResponse {
        /// What was wrong.
        detail: String,
    },
}

impl fmt::Display for AuthFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuthFailure::BadCredentials { status, message } => write!(
                f,
                "the token endpoint refused the client credentials ({status}: {message}); \
                 a person must check or replace the Client ID and Client Secret"
            ),
            AuthFailure::TokenRefused => f.write_str(
                "the API refused a freshly issued access token (401 after one token refresh); \
                 a person must check that the credentials belong to this organization",
            ),
            AuthFailure::NotEnabled => f.write_str(
                "the vendor has not enabled the integration for this organization (403); \
                 a person must act (ask the vendor to enable it); retrying cannot help",
            ),
            AuthFailure::UnusableTokenResponse { detail } => write!(
                f,
                "the token endpoint answered without a usable access token ({detail}); \
                 a person must check the token URL"
            ),
        }
    }
}

struct RetryAfterText(Option<Duration>);

impl fmt::Display for RetryAfterText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(wait) => write!(f, " (Retry-After {} s)", wait.as_secs_f64().ceil()),
            None => Ok(()),
        }
    }
}

struct StatusText(Option<u16>);

impl fmt::Display for StatusText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(status) => write!(f, " ({status})"),
            None => Ok(()),
        }
    }
}

impl ClientError {
    /// Whether trying the same call again later can succeed: true for
    /// [`ClientError::RateLimited`] and [`ClientError::Transient`] only.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ClientError::RateLimited { .. } | ClientError::Transient { .. }
        )
    }

    /// A short stable label for the variant, for history rows and metrics:
    /// `auth`, `rate_limited`, `transient`, `not_offered`, `bad_payload`,
    /// `rejected` or `config`.
    pub fn class(&self) -> ErrorClass {
        match self {
            ClientError::Auth { .. } => ErrorClass::Auth,
            ClientError::RateLimited { .. } => ErrorClass::RateLimited,
            ClientError::Transient { .. } => ErrorClass::Transient,
            ClientError::NotOffered { .. } => ErrorClass::NotOffered,
            ClientError::Forbidden { .. } => ErrorClass::Forbidden,
            ClientError::BadPayload { .. } => ErrorClass::BadPayload,
            ClientError::Rejected { .. } => ErrorClass::Rejected,
            ClientError::Config { .. } => ErrorClass::Config,
        }
    }

    pub(crate) fn config(detail: impl Into<String>) -> Self {
        ClientError::Config {
            detail: detail.into(),
        }
    }

    pub(crate) fn transient(status: Option<u16>, detail: impl Into<String>) -> Self {
        ClientError::Transient {
            status,
            detail: detail.into(),
        }
    }

    pub(crate) fn bad_payload(
        resource: Resource,
        page: &Cursor,
        detail: impl Into<String>,
    ) -> Self {
        ClientError::BadPayload {
            resource,
            page: *page,
            detail: detail.into(),
        }
    }

    /// Maps a transport error (no usable HTTP answer) to an error.
    pub(crate) fn from_transport(error: &reqwest::Error, timeout: Duration) -> Self {
        if error.is_builder() {
            return ClientError::config(format!(
                "cannot build the request: {}",
                error_chain(error)
            ));
        }
        if error.is_timeout() {
            return ClientError::transient(
                None,
                format!(
                    "no complete answer within {} s: {}",
                    timeout.as_secs_f64(),
                    error_chain(error)
                ),
            );
        }
        ClientError::transient(None, error_chain(error))
    }
}

/// An error and its sources, joined with `: `.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Shortens a server-provided text to [`MAX_MESSAGE_CHARS`] characters on a
/// character boundary, and replaces control characters by spaces.
pub(crate) fn shorten(text: &str) -> String {
    let trimmed = text.trim();
    let mut out = String::with_capacity(trimmed.len().min(MAX_MESSAGE_CHARS + 3));
    for (count, c) in trimmed.chars().enumerate() {
        if count == MAX_MESSAGE_CHARS {
            out.push_str("...");
            break;
        }
        out.push(if c.is_control() { ' ' } else { c });
    }
    out
}

/// The most useful message in an error body: `errors[0].message`, `message`,
/// `error_description`, `fault.faultstring`, `error`, or else the text itself;
/// shortened.
pub(crate) fn body_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        let candidates = [
            value.pointer("/errors/0/message"),
            value.pointer("/errors/0"),
            value.pointer("/message"),
            value.pointer("/error_description"),
            value.pointer("/fault/faultstring"),
            value.pointer("/error"),
        ];
        for candidate in candidates.into_iter().flatten() {
            if let Some(s) = candidate.as_str()
                && !s.trim().is_empty()
            {
                return shorten(s);
            }
        }
    }
    if text.trim().is_empty() {
        return "(empty body)".to_string();
    }
    shorten(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_retryability() {
        let org: OrganizationId = "0123456789abcdef01234567".parse().expect("valid id");
        let cases: Vec<(ClientError, &str, bool)> = vec![
            (
                ClientError::Auth {
                    organization_id: org,
                    reason: AuthFailure::NotEnabled,
                },
                "auth",
                false,
            ),
            (
                ClientError::RateLimited {
                    retry_after: Some(Duration::from_secs(3)),
                },
                "rate_limited",
                true,
            ),
            (ClientError::transient(Some(503), "x"), "transient", true),
            (
                ClientError::Forbidden {
                    resource: Resource::Visits,
                },
                "forbidden",
                false,
            ),
            (
                ClientError::NotOffered {
                    resource: Resource::Transactions,
                },
                "not_offered",
                false,
            ),
            (
                ClientError::bad_payload(Resource::Patients, &Cursor::Page(3), "x"),
                "bad_payload",
                false,
            ),
            (
                ClientError::Rejected {
                    status: 400,
                    message: "bad filter".into(),
                },
                "rejected",
                false,
            ),
            (ClientError::config("x"), "config", false),
        ];
        for (error, class, retryable) in cases {
            assert_eq!(error.class().as_str(), class);
            assert_eq!(error.is_retryable(), retryable, "{error}");
        }
    }

    #[test]
    fn messages_say_what_to_do() {
        let org: OrganizationId = "0123456789ABCDEF01234567".parse().expect("valid id");
        let text = ClientError::Auth {
            organization_id: org,
            reason: AuthFailure::NotEnabled,
        }
        .to_string();
        assert!(text.contains("0123456789ABCDEF01234567"), "{text}");
        assert!(text.contains("has not enabled the integration"), "{text}");
        assert!(text.contains("a person must act"), "{text}");
        let text = ClientError::RateLimited {
            retry_after: Some(Duration::from_millis(2500)),
        }
        .to_string();
        assert!(text.contains("Retry-After 3 s"), "{text}");
        let text = ClientError::bad_payload(
            Resource::Patients,
            &Cursor::AfterId(crate::AscendId(7000000000114)),
            "record #3 has no id",
        )
        .to_string();
        assert!(text.contains("patients"), "{text}");
        assert!(text.contains("lastId=7000000000114"), "{text}");
        assert!(text.contains("record #3 has no id"), "{text}");
        let text = ClientError::NotOffered {
            resource: Resource::Transactions,
        }
        .to_string();
        assert!(text.contains("/v1/transactions"), "{text}");
    }

    #[test]
    fn shorten_truncates_on_char_boundary() {
        let long = "é".repeat(1000);
        let short = shorten(&long);
        assert_eq!(short.chars().count(), MAX_MESSAGE_CHARS + 3);
        assert!(short.ends_with("..."));
        assert_eq!(shorten("  a\nb  "), "a b");
    }

    #[test]
    fn body_message_prefers_structured_fields() {
        assert_eq!(
            body_message(br#"{"errors":[{"message":"bad filter field foo"}]}"#),
            "bad filter field foo"
        );
        assert_eq!(body_message(br#"{"message":"nope"}"#), "nope");
        assert_eq!(
            body_message(br#"{"fault":{"faultstring":"Invalid access token","detail":{}}}"#),
            "Invalid access token"
        );
        assert_eq!(body_message(b"plain text"), "plain text");
        assert_eq!(body_message(b""), "(empty body)");
        assert_eq!(body_message(&vec![b'x'; 5000]).len(), MAX_MESSAGE_CHARS + 3);
    }
}
