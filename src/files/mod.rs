//! Files: document generation (PDF, DOCX, CSV, screenshots), uploads,
//! quota-bounded storage under `DATA_DIR/files`, and secure downloads.
//!
//! - Requests are checked field by field ([`document`] for documents); the
//!   renderers ([`pdf`], [`docx`], [`csv`]) are pure functions of a validated
//!   model and run in `spawn_blocking` under `RENDER_CONCURRENCY`.
//! - Screenshots ([`screenshot`]) share one lazily launched Chromium with at
//!   most `SCREENSHOT_CONCURRENCY` pages; every request the page makes is
//!   checked by [`ssrf`].
//! - Bytes are stored by [`storage`] (temp file, fsync, rename) and then
//!   recorded, with the quota checked inside the write transaction. Queued
//!   job payloads count against their owner's quota; [`space`] derives the
//!   limits from the disk and keeps a free-space floor for the database.

pub mod csv;
pub mod db;
pub mod document;
pub mod docx;
pub mod egress;
pub mod jobs;
pub mod model;
pub mod pdf;
pub mod resolver;
pub mod routes;
pub mod screenshot;
pub mod space;
pub mod ssrf;
pub mod storage;
pub mod upload;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::jobs::register_jobs;
use self::model::{CsvRequest, Document, File, FileKind};
use self::storage::{Storage, Stored};
use crate::config::Config;
use crate::db::Db;
use crate::error::{AppError, Result};
use crate::ids::{FileId, JobId, UserId};
use crate::jobs::Queue;
use crate::time::Timestamp;
use crate::users::Users;

/// The files domain's service: exactly the handles its routes, jobs and
/// maintenance need.
#[derive(Clone)]
pub struct Files {
    pub db: Db,
    pub config: Arc<Config>,
    /// Storage, renderers and the shared browser.
    pub files: FileService,
    /// Profiles show file usage: recording or deleting a file invalidates it.
    pub users: Users,
    pub jobs: Queue,
}

/// Storage, renderers and the shared browser of the files domain; clone
/// freely.
#[derive(Clone)]
pub struct FileService {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Storage,
    limits: space::Limits,
    render: Arc<Semaphore>,
    fonts: OnceLock<Arc<pdf::Fonts>>,
    font_path: Option<std::path::PathBuf>,
    browser: screenshot::BrowserPool,
}

impl FileService {
    /// `resolver` answers every name the screenshot check and the egress
    /// proxy look up.
    pub fn new(config: &Config, resolver: resolver::Resolver) -> anyhow::Result<Self> {
        let storage = Storage::new(config.files_dir())?;
        let disk_total = space::disk_space(storage.dir())
            .ok()
            .map(|(_, total)| total);
        let limits = space::Limits::resolve(config, disk_total)?;
        tracing::info!(
            disk_total,
            quota = limits.quota,
            user_quota = limits.user_quota,
            min_free = limits.min_free,
            "storage limits"
        );
        if let Some(p) = &config.font_path
            && !p.is_file()
        {
            anyhow::bail!("FONT_PATH: {} is not a file", p.display());
        }
        Ok(Self {
            inner: Arc::new(Inner {
                storage,
                limits,
                render: Arc::new(Semaphore::new(config.render_concurrency)),
                fonts: OnceLock::new(),
                font_path: config.font_path.clone(),
                browser: screenshot::BrowserPool::new(config, resolver),
            }),
        })
    }

    pub fn storage(&self) -> &Storage {
        &self.inner.storage
    }

    /// The storage limits in force (quotas and the free-space floor).
    pub fn limits(&self) -> space::Limits {
        self.inner.limits
    }

    /// 507 `insufficient_storage` unless `incoming` more bytes leave the
    /// disk above its free-space floor.
    pub fn ensure_room(&self, incoming: u64) -> Result<()> {
        space::ensure_room(
            self.inner.storage.dir(),
            self.inner.limits.min_free,
            incoming,
        )
    }

    pub fn browser(&self) -> &screenshot::BrowserPool {
        &self.inner.browser
    }

    /// For monitoring: is a browser configured, running, how many pages are
    /// in use, how often it was (re)launched.
    pub fn browser_health(&self) -> serde_json::Value {
        self.inner.browser.health()
    }

    fn fonts(&self) -> anyhow::Result<Arc<pdf::Fonts>> {
        if let Some(f) = self.inner.fonts.get() {
            return Ok(f.clone());
        }
        let fonts = Arc::new(pdf::Fonts::load(self.inner.font_path.as_deref())?);
        Ok(self.inner.fonts.get_or_init(|| fonts).clone())
    }

    /// Runs a CPU-heavy render off the async threads, bounded by
    /// `RENDER_CONCURRENCY`.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self
            .inner
            .render
            .clone()
            .acquire_owned()
            .await
            .context("render semaphore closed")?;
        tokio::task::spawn_blocking(f)
            .await
            .context("render task panicked")?
    }

    pub async fn render_pdf(&self, doc: Document) -> anyhow::Result<Vec<u8>> {
        let this = self.clone();
        self.blocking(move || {
            let fonts = this.fonts()?;
            pdf::render(&doc, &fonts)
        })
        .await
    }

    pub async fn render_docx(&self, doc: Document) -> anyhow::Result<Vec<u8>> {
        self.blocking(move || docx::render(&doc)).await
    }

    pub async fn render_csv(&self, req: CsvRequest) -> anyhow::Result<Vec<u8>> {
        self.blocking(move || csv::render(&req)).await
    }
}

/// What to record for newly stored bytes.
pub struct NewFile<'a> {
    pub owner: &'a UserId,
    pub kind: FileKind,
    pub file_name: String,
    pub mime_type: String,
    pub job_id: Option<&'a JobId>,
}

fn quota_error(total: bool) -> AppError {
    AppError::QuotaExceeded(if total {
        "the storage quota is exhausted".into()
    } else {
        "your storage quota is exhausted".into()
    })
}

/// 507 when `incoming` more bytes (at least one) would not fit: over a
/// quota (`quota_exceeded`, queued job payloads included) or below the
/// disk's free-space floor (`insufficient_storage`).
pub async fn check_quota(state: &Files, user_id: &UserId, incoming: u64) -> Result<()> {
    check_room(state, user_id, incoming, None).await
}

/// [`check_quota`] for a job's own result: its payload does not count.
async fn check_room(
    state: &Files,
    user_id: &UserId,
    incoming: u64,
    except_job: Option<&JobId>,
) -> Result<()> {
    let incoming = incoming.max(1);
    let mut conn = state.db.reader.acquire().await?;
    let (total, mine) = usage(&mut conn, user_id, except_job).await?;
    fits(state.files.limits(), total, mine, incoming)?;
    state.files.ensure_room(incoming)
}

/// Bytes of stored files plus the payloads of unfinished jobs (but
/// `except_job`), in total and of `user_id`.
async fn usage(
    conn: &mut sqlx::SqliteConnection,
    user_id: &UserId,
    except_job: Option<&JobId>,
) -> Result<(i64, i64)> {
    let (files_total, files_mine) = db::usage(&mut *conn, user_id).await?;
    let (jobs_total, jobs_mine) =
        crate::jobs::pending_payload_bytes(&mut *conn, user_id, except_job).await?;
    Ok((
        files_total.saturating_add(jobs_total),
        files_mine.saturating_add(jobs_mine),
    ))
}

fn fits(limits: space::Limits, total: i64, mine: i64, incoming: u64) -> Result<()> {
    let incoming = i64::try_from(incoming).unwrap_or(i64::MAX);
    let limit = |q: u64| i64::try_from(q).unwrap_or(i64::MAX);
    if total.saturating_add(incoming) > limit(limits.quota) {
        return Err(quota_error(true));
    }
    if mine.saturating_add(incoming) > limit(limits.user_quota) {
        return Err(quota_error(false));
    }
    Ok(())
}

/// Records stored bytes, checking the quota inside the write transaction
/// (so concurrent writers cannot overshoot it together). The stored file is
/// removed again when it cannot be recorded.
pub async fn record(state: &Files, new: NewFile<'_>, stored: Stored) -> Result<File> {
    let row = db::FileRow {
        id: FileId::generate(),
        user_id: new.owner.clone(),
        kind: new.kind.as_str().to_string(),
        file_name: new.file_name,
        mime_type: new.mime_type,
        size: i64::try_from(stored.size).unwrap_or(i64::MAX),
        sha256: stored.sha256,
        storage_name: stored.storage_name.clone(),
        job_id: new.job_id.cloned(),
        created_at: Timestamp::now(),
    };
    let result: Result<()> = async {
        let mut tx = state.db.begin_write().await?;
        let (total, mine) = usage(&mut tx, &row.user_id, row.job_id.as_ref()).await?;
        fits(state.files.limits(), total, mine, stored.size)?;
        db::insert(&mut tx, &row).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        if let Err(rm) = state.files.storage().remove(&stored.storage_name).await {
            tracing::warn!(error = %format!("{rm:#}"), "failed to remove an unrecorded file");
        }
        return Err(e);
    }
    state.users.invalidate_profile(&row.user_id);
    Ok(row.to_file())
}

/// Stores generated bytes and records them.
pub async fn store_bytes(state: &Files, new: NewFile<'_>, bytes: Vec<u8>) -> Result<File> {
    check_room(state, new.owner, bytes.len() as u64, new.job_id).await?;
    let stored = state.files.storage().write(bytes).await?;
    record(state, new, stored).await
}

/// A file the caller may see, or 404 (missing, not theirs, or not an id).
pub async fn visible(
    state: &Files,
    caller: &crate::sessions::auth::Principal,
    id: &FileId,
) -> Result<db::FileRow> {
    if uuid::Uuid::parse_str(id.as_str()).is_err() || id.as_str().len() != 36 {
        return Err(AppError::NotFound);
    }
    let mut conn = state.db.reader.acquire().await?;
    let row = db::find(&mut conn, id).await?.ok_or(AppError::NotFound)?;
    if !caller.can_see(&row.user_id) {
        return Err(AppError::NotFound);
    }
    Ok(row)
}

/// Deletes the row and then the bytes (a crash in between leaves a file
/// without a row, which maintenance removes).
pub async fn delete(
    state: &Files,
    caller: &crate::sessions::auth::Principal,
    id: &FileId,
) -> Result<()> {
    let row = visible(state, caller, id).await?;
    let mut tx = state.db.begin_write().await?;
    let storage_name = db::delete(&mut tx, &row.id).await?;
    tx.commit().await?;
    if let Some(name) = storage_name {
        state.files.storage().remove(&name).await?;
    }
    state.users.invalidate_profile(&row.user_id);
    Ok(())
}

/// Deletes every file of a user, rows then bytes (a load test's throwaway
/// account); returns how many.
pub async fn purge_user(state: &Files, user_id: &UserId) -> anyhow::Result<u64> {
    let mut tx = state.db.begin_write().await?;
    let names = db::delete_of_user(&mut tx, user_id).await?;
    tx.commit().await?;
    for name in &names {
        state.files.storage().remove(name).await?;
    }
    state.users.invalidate_profile(user_id);
    Ok(names.len() as u64)
}

/// Orphaned paths with their sizes, and the stored names found on disk.
type Scan = (Vec<(std::path::PathBuf, u64)>, Vec<String>);

/// Files younger than this are never treated as orphans: they may be
/// between their rename and their row.
const ORPHAN_GRACE: Duration = Duration::from_secs(600);

/// Reconciles disk and database: stored files without rows (older than a
/// few minutes), stale temporary files, and rows whose files are gone.
/// Counts them (dry run) or removes them (`apply`).
pub async fn maintenance(
    state: &Files,
    apply: bool,
) -> anyhow::Result<Vec<crate::maintenance::model::Action>> {
    let storage = state.files.storage().clone();
    let rows = {
        let mut conn = state.db.reader.acquire().await?;
        db::all_storage(&mut conn).await?
    };
    let known: std::collections::HashSet<String> =
        rows.iter().map(|(_, name, _)| name.clone()).collect();

    // Files on disk (stored and temporary) that nothing refers to.
    let scan = {
        let storage = storage.clone();
        tokio::task::spawn_blocking(move || -> anyhow::Result<Scan> {
            let now = std::time::SystemTime::now();
            let old = |m: &std::fs::Metadata| {
                m.modified()
                    .ok()
                    .and_then(|t| now.duration_since(t).ok())
                    .is_some_and(|age| age >= ORPHAN_GRACE)
            };
            let mut orphans = Vec::new();
            let mut present = Vec::new();
            for dir in [storage.dir(), storage.tmp_dir()] {
                let entries = match std::fs::read_dir(dir) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).context("failed to list the files directory"),
                };
                for entry in entries.flatten() {
                    let Ok(meta) = entry.metadata() else { continue };
                    if !meta.is_file() {
                        continue;
                    }
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if dir == storage.dir() && known.contains(&name) {
                        present.push(name);
                    } else if old(&meta) {
                        orphans.push((entry.path(), meta.len()));
                    }
                }
            }
            Ok((orphans, present))
        })
        .await??
    };
    let (orphans, present) = scan;
    let present: std::collections::HashSet<String> = present.into_iter().collect();
    let missing: Vec<&(FileId, String, i64)> = rows
        .iter()
        .filter(|(_, name, _)| !present.contains(name))
        .collect();

    let orphan_bytes: u64 = orphans.iter().map(|(_, n)| n).sum();
    let missing_bytes: u64 = missing.iter().map(|(_, _, n)| (*n).max(0) as u64).sum();
    if apply {
        for (path, _) in &orphans {
            if let Err(e) = tokio::fs::remove_file(path).await {
                tracing::warn!(error = %e, "failed to remove an orphaned file");
            }
        }
        if !missing.is_empty() {
            let mut tx = state.db.begin_write().await?;
            for (id, _, _) in &missing {
                db::delete(&mut tx, id).await?;
            }
            tx.commit().await?;
        }
    }
    Ok(vec![
        crate::maintenance::model::Action {
            name: "files.orphans".into(),
            description:
                "delete stored or temporary files that no row refers to (older than 10 minutes)"
                    .into(),
            count: orphans.len() as u64,
            bytes: orphan_bytes,
        },
        crate::maintenance::model::Action {
            name: "files.missing".into(),
            description: "delete file rows whose stored file is gone".into(),
            count: missing.len() as u64,
            bytes: missing_bytes,
        },
    ])
}

/// Background work: close the shared browser when the service stops.
pub fn spawn_workers(state: &Files, tracker: &TaskTracker, shutdown: CancellationToken) {
    let pool = state.files.browser().clone();
    tracker.spawn(async move {
        shutdown.cancelled().await;
        pool.shutdown().await;
    });
}
