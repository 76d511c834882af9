//! Health: liveness (`/health` answers from a background probe of the
//! database, so that a flood of health checks costs no database round trips)
//! and the checks of every dependency behind `health-detailed`
//! ([`detailed`]).

pub mod db;
pub mod detailed;
pub mod model;
pub mod probe;

use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::detailed::Checks;
use self::model::{CheckStatus, HealthDetailed};
pub use self::probe::{Probe, spawn_workers};
use crate::error::{Problem, Result};
use crate::http::extract::{AdminUser, Json};
use crate::sessions::auth::AuthCache;

/// How long a `health-detailed` answer is served from the response cache.
pub const HEALTH_TTL: Duration = Duration::from_secs(2);

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok` or `down`.
    pub status: &'static str,
    pub database: &'static str,
    pub version: &'static str,
    pub uptime_seconds: u64,
}

pub fn router<S>() -> OpenApiRouter<S>
where
    Probe: FromRef<S>,
    Checks: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(health_detailed))
}

/// Liveness: 200 while the process and the database answer, else 503.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(probe): State<Probe>) -> impl IntoResponse {
    let ok = probe.database_ok();
    let body = Health {
        status: if ok { "ok" } else { "down" },
        database: if ok { "ok" } else { "unavailable" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: probe.uptime().as_secs(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// Each dependency's check and an overall verdict: 200 when `ok` or
/// `degraded`, 503 when `down`.
#[utoipa::path(get, path = "/api/monitoring/health-detailed", tag = "monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, body = HealthDetailed),
        (status = 503, description = "a critical check is down", body = HealthDetailed),
        (status = 401, body = Problem), (status = 403, body = Problem),
    ))]
async fn health_detailed(
    State(checks): State<Checks>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
) -> Result<Response> {
    let st = checks.clone();
    let mut res = checks
        .cache
        .json(
            "health_detailed",
            &admin.user_id,
            "",
            &headers,
            HEALTH_TTL,
            || async move {
                let body = detailed::health_detailed(&st).await;
                let status = if body.status == CheckStatus::Down {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                };
                Ok((status, body))
            },
        )
        .await?;
    if res.status() == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    Ok(res)
}
