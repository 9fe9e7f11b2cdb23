//! The OpenAPI document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::error;

#[derive(OpenApi)]
#[openapi(
    info(title = "ascend-sync admin API", description = "Practices, settings, Force Sync Now, \
        resync, sync history, dead letters and the write-back outbox. Every endpoint but the \
        health checks takes `Authorization: Bearer asy_...` (`ascend-sync admin-token create`)."),
    paths(
        api::list_practices, api::get_practice, api::connect_practice, api::rotate_credentials,
        api::disable_practice, api::enable_practice, api::remove_practice, api::get_settings,
        api::patch_settings, api::force, api::resync, api::history, api::run_details,
        api::dead_letters, api::redrive, api::outbox, api::retry_item, api::healthz, api::readyz,
    ),
    components(schemas(error::ErrorBody, error::ErrorDetail)),
    modifiers(&Bearer)
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = doc.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
            );
        }
    }
}

/// The document as JSON text.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub(crate) async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
