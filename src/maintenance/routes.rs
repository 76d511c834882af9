//! HTTP handlers of maintenance and backups (admin only).

use axum::body::Body;
use axum::extract::FromRef;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio_util::io::ReaderStream;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Maintenance;
use super::backup::Backup;
use super::model::Report;
use crate::error::{Problem, Result};
use crate::http::extract::{AdminUser, Json, Page, PageParams, Path, Query};
use crate::jobs::{Job, NewJob};
use crate::sessions::auth::AuthCache;

pub fn router<S>() -> OpenApiRouter<S>
where
    Maintenance: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(optimize_preview, optimize_apply))
        .routes(routes!(list_backups, create_backup))
        .routes(routes!(download_backup))
}

/// What maintenance would do now (dry run, changes nothing): expired
/// sessions, finished jobs past retention, old log rows, orphaned files,
/// dead cache entries, free pages and the WAL size (admin).
#[utoipa::path(get, path = "/api/performance/optimize", tag = "maintenance",
    security(("bearer" = [])),
    responses((status = 200, body = Report), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn optimize_preview(
    State(state): State<Maintenance>,
    _admin: AdminUser,
) -> Result<impl IntoResponse> {
    Ok(Json(super::run(&state, false).await))
}

/// Run maintenance now and report what it did, with counts and bytes freed
/// (admin).
#[utoipa::path(post, path = "/api/performance/optimize", tag = "maintenance",
    security(("bearer" = [])),
    responses((status = 200, body = Report), (status = 401, body = Problem), (status = 403, body = Problem)))]
async fn optimize_apply(
    State(state): State<Maintenance>,
    _admin: AdminUser,
) -> Result<impl IntoResponse> {
    Ok(Json(super::run(&state, true).await))
}

/// Backups made by the service, newest first (admin).
#[utoipa::path(get, path = "/api/maintenance/backups", tag = "maintenance",
    params(PageParams), security(("bearer" = [])),
    responses((status = 200, body = Page<Backup>), (status = 400, body = Problem), (status = 401, body = Problem), (status = 403, body = Problem), (status = 422, body = Problem)))]
async fn list_backups(
    State(state): State<Maintenance>,
    _admin: AdminUser,
    Query(page): Query<PageParams>,
) -> Result<impl IntoResponse> {
    let limit = page.limit()?;
    let rows = super::backup::list(&state, page.cursor.as_deref(), limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |b: &Backup| {
        b.id.clone()
    })))
}

/// Make an online backup of the database now, as a `maintenance.backup` job
/// (admin). The job's result is the backup; `Prefer: wait=N` waits for it.
#[utoipa::path(post, path = "/api/maintenance/backups", tag = "maintenance",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "the backup job is queued", body = Job),
        (status = 200, description = "finished within `Prefer: wait=N`", body = Job),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 507, description = "`insufficient_storage`: the disk is at its free-space floor", body = Problem),
    ))]
async fn create_backup(
    State(state): State<Maintenance>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
) -> Result<impl IntoResponse> {
    let database = std::fs::metadata(state.config.database_path()).map_or(0, |m| m.len());
    crate::files::space::ensure_room(
        &state.config.data_dir,
        state.files.files.limits().min_free,
        database,
    )?;
    let job = state
        .jobs
        .enqueue(
            NewJob::new(super::BACKUP_JOB, serde_json::json!({"trigger": "admin"}))
                .owner(&admin.user_id)
                .idempotency_key(crate::jobs::idempotency_key(&headers)),
        )
        .await?;
    crate::jobs::respond(&state.jobs, &headers, job).await
}

/// Download a backup file (admin), streamed from disk. `x-checksum-sha256`
/// carries the file's hex SHA-256 (compare with `sha256sum`), `Repr-Digest`
/// the same digest as RFC 9530 `sha-256=:<base64>:`, and the `ETag` the hex
/// digest. The id is looked up in the backups table: no path is taken from
/// the request.
#[utoipa::path(get, path = "/api/maintenance/backups/{backupId}", tag = "maintenance",
    params(("backupId" = String, Path, description = "backup id (from `GET /api/maintenance/backups`)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the backup file (a SQLite database)", content_type = "application/octet-stream",
            headers(
                ("x-checksum-sha256" = String, description = "hex SHA-256 of the body"),
                ("Repr-Digest" = String, description = "RFC 9530 `sha-256=:<base64>:`"),
                ("Content-Disposition" = String, description = "`attachment` with the backup's file name"),
            )),
        (status = 401, body = Problem),
        (status = 403, body = Problem),
        (status = 404, description = "no backup with this id", body = Problem),
        (status = 409, description = "`backup_unavailable`: running, failed, rotated out or missing from disk", body = Problem),
    ))]
async fn download_backup(
    State(state): State<Maintenance>,
    _admin: AdminUser,
    Path(backup_id): Path<String>,
) -> Result<Response> {
    let d = super::download::open_download(&state, &backup_id).await?;
    let digest = hex::decode(&d.sha256).unwrap_or_default();
    let mut res = Response::new(Body::from_stream(ReaderStream::with_capacity(
        d.file,
        64 * 1024,
    )));
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(d.size));
    h.insert(
        header::CONTENT_DISPOSITION,
        crate::files::routes::content_disposition(&d.file_name),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in [
        ("x-checksum-sha256", d.sha256.clone()),
        (
            "repr-digest",
            format!(
                "sha-256=:{}:",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ),
        ),
        ("etag", format!("\"{}\"", d.sha256)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    Ok(res)
}
