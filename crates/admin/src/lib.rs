//! `ascend-sync admin`: the HTTP admin API (`/api/v1`, described at
//! `/openapi.json`) and the server-rendered pages people use (PMS Sync
//! Settings, Sync History, Practices, Dead letters).
//!
//! - Every request that reads or changes a practice passes the same
//!   [`access::Gate`] as the CLI, and every change is a `control` use case
//!   audited as the authenticated principal ([`auth`]).
//! - Errors are JSON with a stable code ([`error`]); input is checked
//!   before any use case runs; bodies are at most [`MAX_BODY_BYTES`].
//! - `/healthz` says the process is alive; `/readyz` that the database
//!   and the queue answer.

pub mod api;
pub mod auth;
pub mod error;
mod openapi;
mod pages;

use std::net::SocketAddr;

use access::Gate;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use queue::Queue;
use store::Store;

pub use openapi::openapi_json;

/// The largest request body accepted (JSON or form), in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AdminState {
    pub store: Store,
    pub queue: Queue,
    pub gate: Gate,
    /// Proves and seals credentials (connect, rotate, enable).
    pub connector: control::Connector,
}

impl AdminState {
    pub fn new(store: Store, queue: Queue, connector: control::Connector) -> AdminState {
        AdminState {
            gate: Gate::new(store.clone()),
            store,
            queue,
            connector,
        }
    }
}

/// The whole admin surface: API, OpenAPI document, health and pages.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/openapi.json", get(openapi::serve))
        .route(
            "/api/v1/practices",
            get(api::list_practices).post(api::connect_practice),
        )
        .route("/api/v1/practices/{id}", get(api::get_practice))
        .route(
            "/api/v1/practices/{id}/settings",
            get(api::get_settings).patch(api::patch_settings),
        )
        .route(
            "/api/v1/practices/{id}/credentials",
            post(api::rotate_credentials),
        )
        .route(
            "/api/v1/practices/{id}/disable",
            post(api::disable_practice),
        )
        .route("/api/v1/practices/{id}/enable", post(api::enable_practice))
        .route("/api/v1/practices/{id}/remove", post(api::remove_practice))
        .route("/api/v1/practices/{id}/force", post(api::force))
        .route("/api/v1/practices/{id}/resync", post(api::resync))
        .route("/api/v1/history", get(api::history))
        .route("/api/v1/history/{run_id}", get(api::run_details))
        .route("/api/v1/dead-letters", get(api::dead_letters))
        .route("/api/v1/dead-letters/redrive", post(api::redrive))
        .route("/api/v1/outbox", get(api::outbox))
        .route("/api/v1/outbox/{item_id}/retry", post(api::retry_item))
        .merge(pages::routes())
        .fallback(|| async { error::ApiError::not_found("no such endpoint: see /openapi.json") })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
