//! HTTP handlers of the load tester (admin only).

use axum::extract::FromRef;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::LoadTesting;
use super::Status;
use super::model::{LoadTestRequest, LoadTestResult};
use crate::error::{Problem, Result};
use crate::http::extract::{AdminUser, Json, Path};
use crate::jobs::Job;
use crate::sessions::auth::AuthCache;

pub fn router<S>() -> OpenApiRouter<S>
where
    LoadTesting: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(status))
        .routes(routes!(results))
}

/// Start a load test against this service itself (admin). Answers the
/// `loadtest.run` job (202, `Location: /api/jobs/{id}`); the test's id is the
/// job's id. Cancel it with `POST /api/jobs/{id}/cancel`.
#[utoipa::path(post, path = "/api/load-test/start", tag = "loadtest",
    request_body(content = LoadTestRequest, example = json!({"scenario": [{"method": "GET", "path": "/health"}], "concurrency": 10, "durationSeconds": 10})), security(("bearer" = [])),
    responses(
        (status = 202, description = "the test is queued", body = Job),
        (status = 200, description = "finished within `Prefer: wait=N`", body = Job),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 409, description = "another test is running", body = Problem),
        (status = 422, description = "invalid scenario or limits", body = Problem),
    ))]
async fn start(
    State(state): State<LoadTesting>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
    Json(req): Json<LoadTestRequest>,
) -> Result<impl IntoResponse> {
    let job = super::start(&state, &admin, req).await?;
    crate::jobs::respond(&state.jobs, &headers, job).await
}

/// The running test's live progress and the recent tests (admin).
#[utoipa::path(get, path = "/api/load-test/status", tag = "loadtest",
    security(("bearer" = [])),
    responses((status = 200, body = Status), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn status(State(state): State<LoadTesting>, _admin: AdminUser) -> Result<impl IntoResponse> {
    Ok(Json(super::status(&state).await?))
}

/// The full result of a test: totals, throughput, latency percentiles for
/// successes and failures, status codes, errors, per-second timeline and
/// threshold verdicts (admin).
#[utoipa::path(get, path = "/api/load-test/results/{testId}", tag = "loadtest",
    params(("testId" = String, Path)), security(("bearer" = [])),
    responses((status = 200, body = LoadTestResult), (status = 401, body = Problem), (status = 403, body = Problem), (status = 404, body = Problem)))]
async fn results(
    State(state): State<LoadTesting>,
    _admin: AdminUser,
    Path(id): Path<String>,
) -> Result<impl IntoResponse> {
    Ok(Json(super::result(&state, &id).await?))
}
