//! HTTP handlers of the files domain.

use axum::body::Body;
use axum::extract::FromRef;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use super::Files;
use super::jobs::{CSV, DOCX, PDF, SCREENSHOT};
use super::model::{CsvRequest, Document, File, FileKind, ListFilter, ScreenshotRequest};
use super::{check_quota, db, ssrf};
use crate::error::{AppError, FieldError, Problem, Result};
use crate::http::extract::{AuthUser, Json, Page, PageParams, Path, Query};
use crate::ids::FileId;
use crate::jobs::{Job, NewJob, with_priority};
use crate::sessions::auth::AuthCache;

pub fn router<S>() -> OpenApiRouter<S>
where
    Files: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new()
        .routes(routes!(generate_pdf))
        .routes(routes!(generate_docx))
        .routes(routes!(generate_csv))
        .routes(routes!(generate_screenshot))
        .routes(routes!(upload_file).layer(DefaultBodyLimit::disable()))
        .routes(routes!(list_files))
        .routes(routes!(download_file, delete_file))
}

/// A generation request: checked (field errors answer 422) before the quota
/// pre-check and the job it becomes.
trait GenerateRequest: serde::Serialize + Sync {
    fn check(
        &self,
        state: &Files,
    ) -> impl Future<Output = std::result::Result<(), Vec<FieldError>>> + Send;

    /// The `priority` the request asked for.
    fn priority(&self) -> Option<i64>;
}

impl GenerateRequest for Document {
    async fn check(&self, _: &Files) -> std::result::Result<(), Vec<FieldError>> {
        self.validate()
    }

    fn priority(&self) -> Option<i64> {
        self.priority
    }
}

impl GenerateRequest for CsvRequest {
    async fn check(&self, _: &Files) -> std::result::Result<(), Vec<FieldError>> {
        self.validate()
    }

    fn priority(&self) -> Option<i64> {
        self.priority
    }
}

impl GenerateRequest for ScreenshotRequest {
    fn priority(&self) -> Option<i64> {
        self.priority
    }

    async fn check(&self, state: &Files) -> std::result::Result<(), Vec<FieldError>> {
        self.validate()?;
        let browser = state.files.browser();
        ssrf::check(&self.url, browser.allowed_hosts(), browser.resolver())
            .await
            .map_err(|message| vec![FieldError::new("url", message)])
    }
}

/// The body of every `POST /api/files/generate/*`: check the request, check
/// the quota and the disk's floor, enqueue a job of `kind` owned by the caller, answer it.
async fn generate<T: GenerateRequest>(
    state: &Files,
    user: &AuthUser,
    headers: &HeaderMap,
    kind: &str,
    req: &T,
) -> Result<Response> {
    let checked = req.check(state).await.map_err(AppError::Validation);
    let ((), priority) = with_priority(checked, req.priority(), user.is_admin())?;
    let payload = serde_json::to_value(req).map_err(anyhow::Error::from)?;
    // The queued payload counts against the caller's quota until the job ends.
    check_quota(state, &user.user_id, payload.to_string().len() as u64).await?;
    let job: Job = state
        .jobs
        .enqueue(
            NewJob::new(kind, payload)
                .owner(&user.user_id)
                .priority(priority)
                .max_attempts(3)
                .max_pending(state.jobs.max_pending_per_user())
                .idempotency_key(crate::jobs::idempotency_key(headers)),
        )
        .await?;
    crate::jobs::respond(&state.jobs, headers, job).await
}

/// Generate a PDF from a document (a job).
#[utoipa::path(post, path = "/api/files/generate/pdf", tag = "files", request_body(content = Document, example = json!({"title": "Quarterly report", "sections": [{"type": "heading", "text": "Summary"}, {"type": "paragraph", "text": "Revenue grew 12%."}, {"type": "list", "items": ["North", "South"]}]})),
    security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N` (N <= 60): answer with the finished job"),
           ("Idempotency-Key" = Option<String>, Header, description = "repeat-safe submission")),
    responses(
        (status = 202, description = "job queued; `Location: /api/jobs/{id}`; its result is `{file: File}`", body = Job),
        (status = 200, description = "finished in time under `Prefer: wait`", body = Job),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 422, description = "invalid document, with field errors", body = Problem),
        (status = 507, description = "`quota_exceeded` (a quota is spent) or `insufficient_storage` (the disk is full)", body = Problem),
    ))]
async fn generate_pdf(
    State(state): State<Files>,
    user: AuthUser,
    headers: HeaderMap,
    Json(doc): Json<Document>,
) -> Result<Response> {
    generate(&state, &user, &headers, PDF, &doc).await
}

/// Generate a Word document from a document (a job).
#[utoipa::path(post, path = "/api/files/generate/docx", tag = "files", request_body(content = Document, example = json!({"title": "Quarterly report", "sections": [{"type": "heading", "text": "Summary"}, {"type": "paragraph", "text": "Revenue grew 12%."}, {"type": "list", "items": ["North", "South"]}]})),
    security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N` (N <= 60)"),
           ("Idempotency-Key" = Option<String>, Header, description = "repeat-safe submission")),
    responses(
        (status = 202, description = "job queued; its result is `{file: File}`", body = Job),
        (status = 200, description = "finished in time under `Prefer: wait`", body = Job),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 422, body = Problem), (status = 507, body = Problem),
    ))]
async fn generate_docx(
    State(state): State<Files>,
    user: AuthUser,
    headers: HeaderMap,
    Json(doc): Json<Document>,
) -> Result<Response> {
    generate(&state, &user, &headers, DOCX, &doc).await
}

/// Generate a CSV file (a job).
#[utoipa::path(post, path = "/api/files/generate/csv", tag = "files", request_body(content = CsvRequest, example = json!({"columns": [{"key": "name", "title": "Name"}, {"key": "total"}], "rows": [{"name": "Ann", "total": 3}], "fileName": "totals.csv"})),
    security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N` (N <= 60)"),
           ("Idempotency-Key" = Option<String>, Header, description = "repeat-safe submission")),
    responses(
        (status = 202, description = "job queued; its result is `{file: File}`", body = Job),
        (status = 200, description = "finished in time under `Prefer: wait`", body = Job),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 422, body = Problem), (status = 507, body = Problem),
    ))]
async fn generate_csv(
    State(state): State<Files>,
    user: AuthUser,
    headers: HeaderMap,
    Json(req): Json<CsvRequest>,
) -> Result<Response> {
    generate(&state, &user, &headers, CSV, &req).await
}

/// Screenshot a web page (a job). The URL must be http(s) and resolve to a
/// public address unless its host is in `SCREENSHOT_ALLOWED_HOSTS`; every
/// request the page makes is checked the same way.
#[utoipa::path(post, path = "/api/files/generate/screenshot", tag = "files", request_body(content = ScreenshotRequest, example = json!({"url": "https://example.com/", "viewport": {"width": 1280, "height": 800}, "format": "png"})),
    security(("bearer" = [])),
    params(("Prefer" = Option<String>, Header, description = "`wait=N` (N <= 60)"),
           ("Idempotency-Key" = Option<String>, Header, description = "repeat-safe submission")),
    responses(
        (status = 202, description = "job queued; its result is `{file: File}`", body = Job),
        (status = 200, description = "finished in time under `Prefer: wait`", body = Job),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 422, description = "invalid request or refused URL (field `url`)", body = Problem),
        (status = 507, body = Problem),
    ))]
async fn generate_screenshot(
    State(state): State<Files>,
    user: AuthUser,
    headers: HeaderMap,
    Json(req): Json<ScreenshotRequest>,
) -> Result<Response> {
    generate(&state, &user, &headers, SCREENSHOT, &req).await
}

/// Upload a file (multipart, part `file`). Its type is sniffed from the
/// content and must be in `UPLOAD_ALLOWED_TYPES`.
#[utoipa::path(post, path = "/api/files", tag = "files",
    request_body(content = crate::files::model::UploadForm, content_type = "multipart/form-data", description = "one part named `file`"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "stored", body = File),
        (status = 400, description = "malformed multipart body", body = Problem),
        (status = 401, body = Problem),
        (status = 413, description = "larger than `UPLOAD_MAX_BYTES`", body = Problem),
        (status = 415, description = "not multipart, or content of a type not allowed", body = Problem),
        (status = 422, description = "no `file` part, or an empty file", body = Problem),
        (status = 507, description = "`quota_exceeded` (a quota is spent) or `insufficient_storage` (the disk is full)", body = Problem),
    ))]
async fn upload_file(
    State(state): State<Files>,
    user: AuthUser,
    headers: HeaderMap,
    multipart: std::result::Result<Multipart, MultipartRejection>,
) -> Result<impl IntoResponse> {
    let declared_len = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let max = state.config.upload_max_bytes;
    if declared_len.is_some_and(|n| n > max.saturating_add(64 * 1024)) {
        return Err(AppError::PayloadTooLarge(format!(
            "the file is larger than the limit of {max} bytes"
        )));
    }
    let multipart = multipart.map_err(|_| {
        AppError::UnsupportedMediaType("expected a multipart/form-data body".into())
    })?;
    let file = super::upload::upload(&state, &user.user_id, multipart).await?;
    let location = HeaderValue::from_str(&file.download_url).ok();
    let mut res = (StatusCode::CREATED, Json(file)).into_response();
    if let Some(l) = location {
        res.headers_mut().insert(header::LOCATION, l);
    }
    Ok(res)
}

/// Your files, newest first (admins: everyone's, or one user's with `userId`).
#[utoipa::path(get, path = "/api/files", tag = "files", params(ListFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, body = inline(Page<File>)),
        (status = 401, body = Problem),
        (status = 422, description = "bad filter", body = Problem),
    ))]
async fn list_files(
    State(state): State<Files>,
    user: AuthUser,
    Query(filter): Query<ListFilter>,
) -> Result<Json<Page<File>>> {
    let limit = PageParams {
        limit: filter.limit,
        cursor: None,
    }
    .limit()?;
    if let Some(k) = &filter.kind
        && FileKind::parse(k).is_none()
    {
        return Err(AppError::validation(
            "kind",
            "must be pdf, docx, csv, screenshot or upload",
        ));
    }
    let owner = if user.is_admin() {
        filter.user_id.clone()
    } else {
        Some(user.user_id.clone())
    };
    let mut conn = state.db.reader.acquire().await?;
    let rows = db::list(
        &mut conn,
        owner.as_ref(),
        filter.kind.as_deref(),
        filter.cursor.as_deref(),
        limit + 1,
    )
    .await?;
    let files: Vec<File> = rows.iter().map(db::FileRow::to_file).collect();
    Ok(Json(Page::from_rows(files, limit, |f| f.id.to_string())))
}

/// An RFC 6266 `Content-Disposition` with an ASCII fallback and the exact
/// UTF-8 name in `filename*`.
pub(crate) fn content_disposition(name: &str) -> HeaderValue {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for b in name.as_bytes() {
        let c = *b as char;
        if c.is_ascii_alphanumeric() || "!#$&+-.^_`|~".contains(c) {
            encoded.push(c);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    HeaderValue::from_str(&format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// A single byte range of a `size`-byte file: `Ok(None)` means serve it all,
/// `Err(())` is unsatisfiable (416).
fn parse_range(value: &str, size: u64) -> std::result::Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        // Several ranges: allowed to answer with the whole file.
        return Ok(None);
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = (start.trim(), end.trim());
    let range = if start.is_empty() {
        let n: u64 = end.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let s: u64 = start.parse().map_err(|_| ())?;
        let e: u64 = if end.is_empty() {
            size.saturating_sub(1)
        } else {
            end.parse::<u64>()
                .map_err(|_| ())?
                .min(size.saturating_sub(1))
        };
        if s >= size || e < s {
            return Err(());
        }
        (s, e)
    };
    Ok(Some(range))
}

fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match.split(',').any(|t| {
        let t = t.trim();
        t == "*" || t == etag || t.strip_prefix("W/") == Some(etag)
    })
}

/// Download a file (owner or admin). Streams from disk; supports a single
/// `Range`, `If-None-Match` and `ETag` (the SHA-256).
#[utoipa::path(get, path = "/api/files/{fileId}", tag = "files",
    params(("fileId" = String, Path, description = "file id"),
           ("Range" = Option<String>, Header, description = "one byte range, e.g. `bytes=0-1023`"),
           ("If-None-Match" = Option<String>, Header, description = "the ETag you have")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "the file, with its own media type (`mimeType`)", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range", content_type = "application/octet-stream"),
        (status = 304, description = "not modified"),
        (status = 401, body = Problem),
        (status = 404, description = "no such file, or not yours", body = Problem),
        (status = 416, description = "range not satisfiable", body = Problem),
    ))]
async fn download_file(
    State(state): State<Files>,
    user: AuthUser,
    Path(file_id): Path<FileId>,
    headers: HeaderMap,
) -> Result<Response> {
    let row = super::visible(&state, &user, &file_id).await?;
    let (mut file, size) = open_stored(&state, &row).await?;
    let etag = format!("\"{}\"", row.sha256);
    let common = download_headers(&etag)?;
    let (status, start, len, range) = match plan_download(&headers, &etag, size) {
        Serve::NotModified => {
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            res.headers_mut().extend(common);
            return Ok(res);
        }
        Serve::Unsatisfiable => return Ok(range_not_satisfiable(size)),
        Serve::Whole => (StatusCode::OK, 0, size, None),
        Serve::Range(s, e) => (StatusCode::PARTIAL_CONTENT, s, e - s + 1, Some((s, e))),
    };
    if start > 0 {
        file.seek(std::io::SeekFrom::Start(start))
            .await
            .map_err(|e| anyhow::Error::new(e).context("failed to seek a stored file"))?;
    }
    let body = Body::from_stream(ReaderStream::with_capacity(file.take(len), 64 * 1024));
    let mut res = Response::new(body);
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.extend(common);
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&row.mime_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(
        header::CONTENT_DISPOSITION,
        content_disposition(&row.file_name),
    );
    if let Some((s, e)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{e}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(res)
}

/// Opens a file's stored bytes; answers them with their size. A row without
/// its stored file is a 404 (and a warning).
async fn open_stored(state: &Files, row: &db::FileRow) -> Result<(tokio::fs::File, u64)> {
    let path = state
        .files
        .storage()
        .path_of(&row.storage_name)
        .ok_or(AppError::NotFound)?;
    let file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!(file_id = %row.id, "a file row has no stored file");
            return Err(AppError::NotFound);
        }
        Err(e) => {
            return Err(anyhow::Error::new(e)
                .context("failed to open a stored file")
                .into());
        }
    };
    let size = file
        .metadata()
        .await
        .map_err(|e| anyhow::Error::new(e).context("failed to stat a stored file"))?
        .len();
    Ok((file, size))
}

/// The headers of every download answer (304 included): the ETag, ranges
/// accepted, no caching by shared caches, and a sandbox for the content.
fn download_headers(etag: &str) -> Result<HeaderMap> {
    let mut common = HeaderMap::new();
    common.insert(
        header::ETAG,
        HeaderValue::from_str(etag).map_err(anyhow::Error::from)?,
    );
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    common.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    common.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(common)
}

/// What a download answers, from the request's conditional and range
/// headers.
#[derive(Debug, PartialEq, Eq)]
enum Serve {
    /// 304: the client has this version (`If-None-Match`).
    NotModified,
    /// 416.
    Unsatisfiable,
    /// 200 with every byte.
    Whole,
    /// 206 with bytes `start..=end`.
    Range(u64, u64),
}

fn plan_download(headers: &HeaderMap, etag: &str, size: u64) -> Serve {
    if let Some(inm) = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        && etag_matches(inm, etag)
    {
        return Serve::NotModified;
    }
    match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(r) => match parse_range(r, size) {
            Ok(Some((s, e))) => Serve::Range(s, e),
            Ok(None) => Serve::Whole,
            Err(()) => Serve::Unsatisfiable,
        },
        None => Serve::Whole,
    }
}

/// 416 problem+json with `Content-Range: bytes */size`.
fn range_not_satisfiable(size: u64) -> Response {
    let mut res = AppError::Problem {
        status: StatusCode::RANGE_NOT_SATISFIABLE,
        code: "range_not_satisfiable",
        message: format!("the file has {size} bytes"),
    }
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
        res.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    res
}

/// Delete a file and its metadata (owner or admin).
#[utoipa::path(delete, path = "/api/files/{fileId}", tag = "files",
    params(("fileId" = String, Path, description = "file id")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "deleted"),
        (status = 401, body = Problem),
        (status = 404, description = "no such file, or not yours", body = Problem),
    ))]
async fn delete_file(
    State(state): State<Files>,
    user: AuthUser,
    Path(file_id): Path<FileId>,
) -> Result<StatusCode> {
    super::delete(&state, &user, &file_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn a_download_is_planned_from_the_conditional_then_the_range() {
        let etag = "\"abc\"";
        assert_eq!(plan_download(&request(&[]), etag, 10), Serve::Whole);
        let cached = request(&[
            (header::IF_NONE_MATCH, "W/\"abc\""),
            (header::RANGE, "bytes=0-1"),
        ]);
        assert_eq!(plan_download(&cached, etag, 10), Serve::NotModified);
        let stale = request(&[
            (header::IF_NONE_MATCH, "\"old\""),
            (header::RANGE, "bytes=2-"),
        ]);
        assert_eq!(plan_download(&stale, etag, 10), Serve::Range(2, 9));
        let beyond = request(&[(header::RANGE, "bytes=10-")]);
        assert_eq!(plan_download(&beyond, etag, 10), Serve::Unsatisfiable);
        let several = request(&[(header::RANGE, "bytes=0-1,4-5")]);
        assert_eq!(plan_download(&several, etag, 10), Serve::Whole);
    }

    #[test]
    fn every_download_answer_carries_the_etag_and_the_sandbox() {
        let h = download_headers("\"abc\"").unwrap();
        assert_eq!(h[header::ETAG], "\"abc\"");
        assert_eq!(h[header::ACCEPT_RANGES], "bytes");
        assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("sandbox")
        );
        let res = range_not_satisfiable(10);
        assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(res.headers()[header::CONTENT_RANGE], "bytes */10");
    }

    #[test]
    fn ranges_are_parsed_per_rfc_9110() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=50-500", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=9-3", 100), Err(()));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
    }

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_utf8_name() {
        let v = content_disposition("Résumé \"x\".pdf");
        let s = v.to_str().unwrap();
        assert_eq!(
            s,
            "attachment; filename=\"R_sum_ _x_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22x%22.pdf"
        );
    }
}
