//! The job kinds of the files domain: `files.pdf`, `files.docx`,
//! `files.csv` and `files.screenshot`. Each renders, stores and records one
//! file and answers `{"file": File}`. A retried attempt whose file was
//! already recorded answers with that file instead of making another.

use serde_json::{Value, json};

use super::model::{CsvRequest, Document, FileKind, ScreenshotRequest, sanitize_file_name};
use super::screenshot::ShotError;
use super::{Files, NewFile, db, store_bytes};
use crate::error::FieldError;
use crate::ids::UserId;
use crate::jobs::{JobContext, JobError, Registry};

pub const PDF: &str = "files.pdf";
pub const DOCX: &str = "files.docx";
pub const CSV: &str = "files.csv";
pub const SCREENSHOT: &str = "files.screenshot";

pub fn register_jobs(registry: &mut Registry, files: &Files) {
    let f = files.clone();
    registry.register(PDF, move |ctx| document(f.clone(), ctx, FileKind::Pdf));
    let f = files.clone();
    registry.register(DOCX, move |ctx| document(f.clone(), ctx, FileKind::Docx));
    let f = files.clone();
    registry.register(CSV, move |ctx| csv(f.clone(), ctx));
    let f = files.clone();
    registry.register(SCREENSHOT, move |ctx| screenshot(f.clone(), ctx));
    // Jobs waiting for a browser page or a renderer wait in the queue, not
    // in a runner slot.
    registry.lane(SCREENSHOT, files.config.screenshot_concurrency);
    registry.lane(PDF, files.config.render_concurrency);
    registry.lane(DOCX, files.config.render_concurrency);
}

fn invalid(errors: Vec<FieldError>) -> JobError {
    let fields: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    JobError::fail("validation_failed", fields.join("; "))
}

fn owner(ctx: &JobContext) -> Result<UserId, JobError> {
    ctx.user_id
        .clone()
        .ok_or_else(|| JobError::fail("invalid_payload", "a file job needs an owner"))
}

/// The file an earlier attempt of this job already recorded, if any.
async fn already_done(files: &Files, ctx: &JobContext) -> Result<Option<Value>, JobError> {
    let mut conn = files
        .db
        .reader
        .acquire()
        .await
        .map_err(|e| JobError::from(anyhow::Error::new(e)))?;
    let row = db::find_by_job(&mut conn, &ctx.id)
        .await
        .map_err(|e| JobError::from(anyhow::Error::new(e)))?;
    Ok(row.map(|r| json!({ "file": r.to_file() })))
}

async fn finish(
    files: &Files,
    ctx: &JobContext,
    kind: FileKind,
    file_name: String,
    mime: &str,
    bytes: Vec<u8>,
) -> Result<Value, JobError> {
    let owner = owner(ctx)?;
    ctx.progress(90, "storing").await;
    let file = store_bytes(
        files,
        NewFile {
            owner: &owner,
            kind,
            file_name,
            mime_type: mime.to_string(),
            job_id: Some(&ctx.id),
        },
        bytes,
    )
    .await?;
    Ok(json!({ "file": file }))
}

async fn document(files: Files, ctx: JobContext, kind: FileKind) -> Result<Value, JobError> {
    if let Some(done) = already_done(&files, &ctx).await? {
        return Ok(done);
    }
    let doc: Document = ctx.payload()?;
    doc.validate().map_err(invalid)?;
    ctx.progress(10, "rendering").await;
    let stem = doc.title.clone();
    let (bytes, ext, mime) = match kind {
        FileKind::Pdf => (
            files.files.render_pdf(doc.clone()).await?,
            "pdf",
            "application/pdf",
        ),
        _ => (
            files.files.render_docx(doc.clone()).await?,
            "docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    };
    let name = sanitize_file_name(
        doc.file_name.as_deref().or(Some(&stem)),
        "document",
        Some(ext),
    );
    finish(&files, &ctx, kind, name, mime, bytes).await
}

async fn csv(files: Files, ctx: JobContext) -> Result<Value, JobError> {
    if let Some(done) = already_done(&files, &ctx).await? {
        return Ok(done);
    }
    let req: CsvRequest = ctx.payload()?;
    req.validate().map_err(invalid)?;
    ctx.progress(10, "rendering").await;
    let name = sanitize_file_name(req.file_name.as_deref(), "export", Some("csv"));
    let bytes = files.files.render_csv(req).await?;
    finish(
        &files,
        &ctx,
        FileKind::Csv,
        name,
        "text/csv; charset=utf-8",
        bytes,
    )
    .await
}

async fn screenshot(files: Files, ctx: JobContext) -> Result<Value, JobError> {
    if let Some(done) = already_done(&files, &ctx).await? {
        return Ok(done);
    }
    let req: ScreenshotRequest = ctx.payload()?;
    req.validate().map_err(invalid)?;
    let owner = owner(&ctx)?;
    super::check_quota(&files, &owner, 1).await?;
    ctx.progress(10, "loading the page").await;
    let pool = files.files.browser().clone();
    // Run the capture in its own task: if this job's future is dropped or
    // cancelled, the capture still finishes its own clean-up (closing the
    // page) within its timeout.
    let shot = {
        let req = req.clone();
        tokio::spawn(async move { pool.capture(&req).await })
    };
    let bytes = tokio::select! {
        r = shot => r
            .map_err(|e| JobError::retry("browser_failed", format!("the capture task failed: {e}")))?
            .map_err(|e| match e {
            ShotError::Refused(m) => JobError::fail("url_refused", m),
            ShotError::Page(m) => JobError::fail("page_failed", m),
            ShotError::TooLarge(m) => JobError::fail("page_too_large", m),
            ShotError::Timeout => JobError::fail("timeout", e.to_string()),
            ShotError::Unavailable(m) => JobError::retry("browser_unavailable", m),
            ShotError::Browser(m) => JobError::retry("browser_failed", m),
        })?,
        () = ctx.cancel.cancelled() => return Err(JobError::fail("cancelled", "the job was cancelled")),
    };
    let (ext, mime) = match req.format {
        super::model::ImageFormat::Png => ("png", "image/png"),
        super::model::ImageFormat::Jpeg => ("jpg", "image/jpeg"),
    };
    let name = sanitize_file_name(req.file_name.as_deref(), "screenshot", Some(ext));
    finish(&files, &ctx, FileKind::Screenshot, name, mime, bytes).await
}
