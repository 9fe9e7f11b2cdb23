//! The pages (written next).
use crate::AdminState;
use axum::Router;

pub(crate) fn routes() -> Router<AdminState> {
    Router::new()
}
