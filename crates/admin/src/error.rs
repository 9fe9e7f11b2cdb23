//! Every refusal and failure of the API as JSON: a stable `code` for
//! programs and a `message` for people (`{"error": {"code", "message"}}`).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An answer other than success.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable: `unauthenticated`, `forbidden`, `invalid`, `not_found`,
    /// `conflict`, `too_large`, `credentials_refused`, `ascend_unreachable`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// For a person: what happened and what to do.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, message = %self.message, "admin API error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_owned(),
                message: self.message,
            },
        };
        (self.status, Json(body)).into_response()
    }
}

impl From<access::AccessError> for ApiError {
    fn from(error: access::AccessError) -> ApiError {
        use access::AccessError as E;
        match error {
            E::Unauthenticated => ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                error.to_string(),
            ),
            E::Refused(_) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", error.to_string()),
            E::BadToken(_) => ApiError::invalid(error.to_string()),
            E::Random => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                error.to_string(),
            ),
            E::Store(e) => e.into(),
        }
    }
}

impl From<store::StoreError> for ApiError {
    fn from(error: store::StoreError) -> ApiError {
        use store::StoreError as E;
        match &error {
            E::UnknownPractice { .. } => ApiError::not_found(error.to_string()),
            E::PracticeRemoved { .. } | E::Conflict { .. } => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            E::Constraint { .. } => ApiError::invalid(error.to_string()),
            _ if error.is_retryable() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                error.to_string(),
            ),
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            ),
        }
    }
}

impl From<control::ControlError> for ApiError {
    fn from(error: control::ControlError) -> ApiError {
        use control::ControlError as E;
        match error {
            E::Invalid(_) => ApiError::invalid(error.to_string()),
            E::Refused(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "credentials_refused",
                error.to_string(),
            ),
            E::NotProved(_) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "ascend_unreachable",
                error.to_string(),
            ),
            E::NotSyncable(_) | E::Credentials(_) => {
                ApiError::new(StatusCode::CONFLICT, "conflict", error.to_string())
            }
            E::Store(e) => e.into(),
            E::Queue(_) | E::Seal(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                error.to_string(),
            ),
            E::Drain(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                error.to_string(),
            ),
        }
    }
}

impl From<queue::QueueError> for ApiError {
    fn from(error: queue::QueueError) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("queue: {error}"),
        )
    }
}
