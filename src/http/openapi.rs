//! The OpenAPI 3.1 document: general information and the bearer scheme. The
//! paths come from each handler's `#[utoipa::path]` through the routers.

use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hs-platform",
        description = "Accounts, durable jobs, AI chat, documents and monitoring in one service. \
                       Errors are RFC 9457 problem+json bodies with a stable `code`.",
    ),
    modifiers(&BearerScheme),
    components(schemas(crate::error::Problem, crate::error::FieldError)),
    tags(
        (name = "health", description = "Liveness"),
        (name = "users", description = "Accounts"),
        (name = "sessions", description = "Login, logout and sessions"),
        (name = "jobs", description = "The durable job queue"),
        (name = "ai", description = "AI chat through the Claude Messages API"),
        (name = "files", description = "Document generation, uploads and downloads"),
        (name = "monitoring", description = "Request log, errors, performance, system, alerts, metrics (admin)"),
        (name = "analytics", description = "Platform analytics computed by SQL (admin)"),
        (name = "loadtest", description = "Built-in load testing (admin)"),
        (name = "maintenance", description = "Maintenance and backups (admin)"),
    )
)]
pub struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The token answered by POST /api/sessions"))
                    .build(),
            ),
        );
    }
}
