//! HTTP handlers of the analytics domain.

use std::time::Duration;

use axum::extract::{FromRef, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Analytics;
use super::model::{STORAGE_LIMIT, Storage, StorageQuery, Summary, SummaryQuery};
use crate::error::{AppError, Problem, Result};
use crate::http::extract::{AdminUser, Json, Query};
use crate::sessions::auth::AuthCache;

/// How long a computed summary is served from the response cache (per
/// admin and query).
pub const SUMMARY_TTL: Duration = Duration::from_secs(10);

pub fn router<S>() -> OpenApiRouter<S>
where
    Analytics: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(summary))
        .routes(routes!(storage))
}

/// Platform analytics for `[from, to)` computed by SQL: users, sessions,
/// requests (hourly roll-ups), jobs, files, AI. Cached for 10 s per admin and
/// query; send `Cache-Control: no-cache` for a fresh computation.
#[utoipa::path(get, path = "/api/analytics/summary", tag = "analytics",
    params(SummaryQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Summary),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem),
    ))]
async fn summary(
    State(state): State<Analytics>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<SummaryQuery>,
) -> Result<Response> {
    let (from, to) = super::range(q.from.as_deref(), q.to.as_deref())?;
    let st = state.clone();
    state
        .cache
        .json(
            "analytics_summary",
            admin.user_id.as_str(),
            raw.as_deref().unwrap_or(""),
            &headers,
            SUMMARY_TTL,
            || async move { Ok((StatusCode::OK, super::summary(&st, from, to).await?)) },
        )
        .await
}

/// Storage used now (admin): stored files and bytes in total and per user
/// (the `limit` largest), with the quotas in force. Computed by SQL on each
/// request (one grouped scan of `files`).
#[utoipa::path(get, path = "/api/analytics/storage", tag = "analytics",
    params(StorageQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Storage),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 422, description = "`limit` out of 1-100", body = Problem),
    ))]
async fn storage(
    State(state): State<Analytics>,
    _admin: AdminUser,
    Query(q): Query<StorageQuery>,
) -> Result<Json<Storage>> {
    let limit = match q.limit {
        None => 10,
        Some(n) if STORAGE_LIMIT.contains(&n) => i64::from(n),
        Some(_) => {
            return Err(AppError::validation(
                "limit",
                format!(
                    "must be from {} to {}",
                    STORAGE_LIMIT.start(),
                    STORAGE_LIMIT.end()
                ),
            ));
        }
    };
    Ok(Json(super::storage(&state, limit).await?))
}
