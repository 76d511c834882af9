//! HTTP handlers of the job queue.

use axum::extract::FromRef;
use axum::extract::State;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Queue;
use super::model::{Job, JobFilter};
use crate::error::{AppError, Problem, Result};
use crate::http::extract::{AuthUser, Json, Page, PageParams, Path, Query};
use crate::ids::JobId;
use crate::sessions::auth::AuthCache;

pub fn router<S>() -> OpenApiRouter<S>
where
    Queue: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
}

/// A job: status, progress, attempts, result or error, and its `payload`
/// (the input it was enqueued with) (owner or admin).
#[utoipa::path(get, path = "/api/jobs/{jobId}", tag = "jobs",
    params(("jobId" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 401, body = Problem), (status = 404, body = Problem)))]
async fn get_job(
    State(queue): State<Queue>,
    user: AuthUser,
    Path(id): Path<JobId>,
) -> Result<impl IntoResponse> {
    Ok(Json(queue.get_visible_with_payload(&user, &id).await?))
}

/// Jobs, newest first: the caller's own, or (admins) everyone's.
#[utoipa::path(get, path = "/api/jobs", tag = "jobs",
    params(JobFilter), security(("bearer" = [])),
    responses((status = 200, body = Page<Job>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, description = "`userId` of another user, by a non-admin", body = Problem), (status = 422, body = Problem)))]
async fn list_jobs(
    State(queue): State<Queue>,
    user: AuthUser,
    Query(filter): Query<JobFilter>,
) -> Result<impl IntoResponse> {
    let page = PageParams {
        limit: filter.limit,
        cursor: filter.cursor.clone(),
    };
    let limit = page.limit()?;
    let owner = if user.is_admin() {
        filter.user_id.clone()
    } else {
        if filter.user_id.as_ref().is_some_and(|u| *u != user.user_id) {
            // A rule about the caller, not the request's shape.
            return Err(AppError::Forbidden);
        }
        Some(user.user_id.clone())
    };
    let jobs = queue
        .list(
            owner.as_ref(),
            filter.status.map(|s| s.as_str()),
            filter.kind.as_deref(),
            filter.cursor.as_deref(),
            limit + 1,
        )
        .await?;
    Ok(Json(Page::from_rows(jobs, limit, |j: &Job| {
        j.id.to_string()
    })))
}

/// Cancel a queued job (it will not run) or a running one (its handler is
/// signalled). A finished job answers 409.
#[utoipa::path(post, path = "/api/jobs/{jobId}/cancel", tag = "jobs",
    params(("jobId" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = Job), (status = 401, body = Problem), (status = 404, body = Problem),
              (status = 409, description = "already finished", body = Problem)))]
async fn cancel_job(
    State(queue): State<Queue>,
    user: AuthUser,
    Path(id): Path<JobId>,
) -> Result<impl IntoResponse> {
    Ok(Json(queue.cancel(&user, &id).await?))
}
