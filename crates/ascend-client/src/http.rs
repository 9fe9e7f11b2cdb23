//! Small HTTP helpers shared by the token cache and the API calls.

use std::time::{Duration, SystemTime};

use reqwest::Response;
use reqwest::header::{LOCATION, RETRY_AFTER};

use crate::retry::parse_retry_after;

/// How much of an error answer's body is read for its message.
pub(crate) const ERROR_BODY_BYTES: usize = 64 * 1024;

/// Why a body could not be read whole.
pub(crate) enum BodyError {
    /// Longer than allowed.
    TooLarge { limit: usize },
    /// The connection failed or timed out mid-body.
    Transport(reqwest::Error),
}

/// Reads a response body, refusing more than `limit` bytes.
pub(crate) async fn read_body(response: &mut Response, limit: usize) -> Result<Vec<u8>, BodyError> {
    let expected = response
        .content_length()
        .and_then(|n| usize::try_from(n).ok());
    if expected.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge { limit });
    }
    let mut body = Vec::with_capacity(expected.unwrap_or(16 * 1024));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Transport)? {
        if body.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads (the start of) an error answer's body; failures read as empty.
pub(crate) async fn read_error_body(response: &mut Response) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = ERROR_BODY_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_BYTES {
            break;
        }
    }
    body
}

/// The `Retry-After` header, read as a wait from now.
pub(crate) fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.headers().get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(value, SystemTime::now())
}

/// The `Location` header of a redirect, for the error message.
pub(crate) fn location(response: &Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(crate::error::shorten)
        .unwrap_or_else(|| "(no Location)".to_string())
}
