//! Online backups and restore.
//!
//! A backup is `VACUUM INTO` on a dedicated read-only connection: one read
//! transaction that copies a consistent snapshot while writers carry on (in
//! WAL mode a reader never blocks the writer; the WAL only grows until the
//! copy ends). The copy is written beside its destination, checked with
//! `PRAGMA integrity_check`, synced and renamed into place, so a backup file
//! that exists is complete and sound.
//!
//! Restore refuses while the service holds the database (the service keeps a
//! shared lock on `<database>.lock` for its whole life), verifies the
//! backup, keeps the current database aside as `<database>.pre-restore-<time>`
//! and puts the backup in place without any stale `-wal`/`-shm` file.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::Utc;
use serde::Serialize;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use utoipa::ToSchema;

use super::Maintenance;
use super::db;
use crate::config::Config;
use crate::ids::JobId;
use crate::jobs::JobContext;
use crate::time::Timestamp;

/// A lock on `<database>.lock`. The service holds it shared for its whole
/// life; `restore` takes it exclusively, so it cannot replace the database
/// under a running service (a crashed service's lock is released by the OS).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

/// The lock file of a database.
pub fn lock_path(config: &Config) -> PathBuf {
    sibling(&config.database_path(), ".lock")
}

impl DataDirLock {
    /// The service's lock (shared: it never blocks another service).
    pub fn acquire(config: &Config) -> anyhow::Result<Self> {
        Self::take(config, false)
    }

    /// The exclusive lock of a restore: fails while a service runs.
    pub fn acquire_exclusive(config: &Config) -> anyhow::Result<Self> {
        Self::take(config, true)
    }

    fn take(config: &Config, exclusive: bool) -> anyhow::Result<Self> {
        let path = lock_path(config);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("failed to open the lock file {}", path.display()))?;
        let locked = if exclusive {
            file.try_lock()
        } else {
            file.try_lock_shared()
        };
        match locked {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => bail!(
                "the database {} is in use by a running hs-platform (lock {} is held); stop it first",
                config.database_path().display(),
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("failed to lock {}", path.display()))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// `path` with `suffix` appended to its file name (`db` -> `db-wal`).
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// A read-only connection of its own to the live database (not one of the
/// service's pooled readers, which a long copy would hold for minutes).
async fn open_live_readonly(config: &Config) -> anyhow::Result<SqliteConnection> {
    SqliteConnectOptions::from_str(&config.database_url())
        .with_context(|| format!("DATABASE_URL: invalid: {:?}", config.database_url()))?
        .read_only(true)
        .busy_timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("failed to open {}", config.database_path().display()))
}

async fn open_file_readonly(path: &Path) -> anyhow::Result<SqliteConnection> {
    if !path.is_file() {
        bail!("{} is not a file", path.display());
    }
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .with_context(|| format!("failed to open {} as a SQLite database", path.display()))
}

/// What a checked backup file holds.
#[derive(Debug, Clone)]
pub struct Verified {
    /// Highest migration applied in it (None: not an hs-platform database).
    pub schema_version: Option<i64>,
}

/// Runs `PRAGMA integrity_check` on a database file; an error lists the
/// problems found.
pub async fn verify_file(path: &Path) -> anyhow::Result<Verified> {
    let mut conn = open_file_readonly(path).await?;
    let problems = db::integrity_problems(&mut conn, false)
        .await
        .with_context(|| format!("failed to check the integrity of {}", path.display()))?;
    if !problems.is_empty() {
        bail!(
            "{} fails PRAGMA integrity_check: {}",
            path.display(),
            problems.join("; ")
        );
    }
    let schema_version = db::schema_version(&mut conn)
        .await
        .with_context(|| format!("failed to read the schema version of {}", path.display()))?;
    let _ = sqlx::Connection::close(conn).await;
    Ok(Verified { schema_version })
}

/// A backup that was written and checked.
#[derive(Debug, Clone)]
pub struct Written {
    pub size_bytes: u64,
    pub duration: Duration,
    /// Hex SHA-256 of the file.
    pub sha256: String,
}

/// Writes a consistent, checked copy of the live database to `dest`, which
/// must not exist. Safe while the service runs.
pub async fn write_backup(config: &Config, dest: &Path) -> anyhow::Result<Written> {
    write_backup_observed(config, dest, &Arc::new(AtomicU64::new(0))).await
}

/// [`write_backup`], counting the bytes copied so far into `copied` (read by
/// the backup job to report its progress).
pub async fn write_backup_observed(
    config: &Config,
    dest: &Path,
    copied: &Arc<AtomicU64>,
) -> anyhow::Result<Written> {
    let started = Instant::now();
    if dest.exists() {
        bail!("{} already exists; choose a new file name", dest.display());
    }
    let file_name = dest
        .file_name()
        .with_context(|| format!("{} has no file name", dest.display()))?
        .to_string_lossy()
        .to_string();
    let partial = dest.with_file_name(format!(".{file_name}.partial"));
    let _ = std::fs::remove_file(&partial);

    let mut conn = open_live_readonly(config).await?;
    let partial_str = partial
        .to_str()
        .with_context(|| format!("{} is not valid UTF-8", partial.display()))?;
    let flushing = tokio_util::sync::CancellationToken::new();
    let flusher = tokio::task::spawn_blocking({
        let (partial, flushing, copied) = (partial.clone(), flushing.clone(), copied.clone());
        move || flush_while_copying(&partial, &flushing, &copied)
    });
    let copied = db::vacuum_into(&mut conn, partial_str).await;
    flushing.cancel();
    let _ = flusher.await;
    let _ = sqlx::Connection::close(conn).await;
    if let Err(e) = copied {
        // A copy that met a full disk leaves no partial file behind.
        let _ = std::fs::remove_file(&partial);
        return Err(anyhow::Error::new(e).context(format!(
            "failed to copy the database to {}",
            partial.display()
        )));
    }

    if let Err(e) = verify_file(&partial).await {
        let _ = std::fs::remove_file(&partial);
        return Err(e.context("the backup copy is corrupt"));
    }
    let dest_owned = dest.to_path_buf();
    let (size_bytes, sha256) =
        tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, String)> {
            let put_in_place = || -> anyhow::Result<(u64, String)> {
                let f = File::open(&partial)?;
                f.sync_all()?;
                let size = f.metadata()?.len();
                let sha256 = super::download::sha256_of(&partial)?;
                std::fs::rename(&partial, &dest_owned).with_context(|| {
                    format!("failed to move the backup to {}", dest_owned.display())
                })?;
                Ok((size, sha256))
            };
            let size = put_in_place().inspect_err(|_| {
                let _ = std::fs::remove_file(&partial);
            })?;
            sync_parent(&dest_owned);
            Ok(size)
        })
        .await
        .context("backup task panicked")??;
    Ok(Written {
        size_bytes,
        duration: started.elapsed(),
        sha256,
    })
}

/// While `VACUUM INTO` writes the copy, flushes it to disk every few
/// milliseconds. Left alone, a large copy piles up gigabytes of dirty pages;
/// the kernel then throttles every process that writes (the service's own
/// commits included) and the final sync stalls the disk. Flushing as it goes
/// keeps the copy's unwritten data, and so the writers' stalls, small.
/// Records the copy's size in `copied` as it grows.
fn flush_while_copying(
    partial: &Path,
    stop: &tokio_util::sync::CancellationToken,
    copied: &AtomicU64,
) {
    let mut file = None;
    while !stop.is_cancelled() {
        std::thread::sleep(Duration::from_millis(20));
        if file.is_none() {
            file = File::open(partial).ok();
        }
        if let Some(f) = &file {
            let _ = f.sync_data();
            if let Ok(m) = f.metadata() {
                copied.store(m.len(), Ordering::Relaxed);
            }
        }
    }
}

fn sync_parent(path: &Path) {
    if let Some(parent) = path.parent()
        && let Ok(dir) = File::open(parent)
    {
        let _ = dir.sync_all();
    }
}

/// What a restore did.
#[derive(Debug)]
pub struct Restored {
    pub database: PathBuf,
    /// Where the database that was replaced now lives (with its WAL).
    pub previous: Option<PathBuf>,
    pub schema_version: Option<i64>,
}

/// Puts the backup `src` in place of the database. Refuses while the service
/// runs, and refuses a file that fails `integrity_check`, is not an
/// hs-platform database, or comes from a newer version of the service.
/// Migrations newer than the backup are applied when the service next starts.
pub async fn restore(config: &Config, src: &Path) -> anyhow::Result<Restored> {
    let lock = DataDirLock::acquire_exclusive(config)?;
    let restored = restore_locked(config, src).await?;
    drop(lock);
    Ok(restored)
}

/// Checks that `src` can be restored (integrity, an hs-platform schema not
/// newer than this binary).
async fn verify_restorable(src: &Path) -> anyhow::Result<Verified> {
    let verified = verify_file(src).await?;
    let known = crate::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0);
    match verified.schema_version {
        None => bail!("{} is not an hs-platform database", src.display()),
        Some(v) if v > known => bail!(
            "{} has schema version {v}, newer than this binary's {known}: restore it with a newer hs-platform",
            src.display()
        ),
        Some(_) => {}
    }
    Ok(verified)
}

async fn restore_locked(config: &Config, src: &Path) -> anyhow::Result<Restored> {
    let verified = verify_restorable(src).await?;
    let database = config.database_path();
    let staging = sibling(&database, ".restoring");
    std::fs::copy(src, &staging)
        .with_context(|| format!("failed to copy {} to {}", src.display(), staging.display()))?;
    File::open(&staging)?.sync_all()?;

    let wal = sibling(&database, "-wal");
    let shm = sibling(&database, "-shm");
    let previous = if database.exists() {
        let stamp = Utc::now().format("%Y%m%dT%H%M%SZ");
        let aside = sibling(&database, &format!(".pre-restore-{stamp}"));
        std::fs::rename(&database, &aside).with_context(|| {
            format!("failed to move the current database to {}", aside.display())
        })?;
        if wal.exists() {
            // Kept under the name SQLite looks for, so the set-aside copy
            // still opens with every committed transaction.
            std::fs::rename(&wal, sibling(&aside, "-wal"))
                .context("failed to move the current WAL aside")?;
        }
        Some(aside)
    } else {
        None
    };
    for stale in [&wal, &shm] {
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("failed to remove {}", stale.display()));
            }
        }
    }
    std::fs::rename(&staging, &database)
        .with_context(|| format!("failed to move the backup to {}", database.display()))?;
    sync_parent(&database);
    Ok(Restored {
        database,
        previous,
        schema_version: verified.schema_version,
    })
}

/// The marker of a restore staged for the next start.
pub fn pending_restore_path(config: &Config) -> PathBuf {
    sibling(&config.database_path(), ".restore-pending")
}

/// Stages a restore for the next start of the service (for hosts such as
/// Render where the service cannot be stopped while keeping a shell on its
/// disk): the backup is verified now, its path recorded, and the service
/// restores it before opening the database when it next starts.
pub async fn stage_restore(config: &Config, src: &Path) -> anyhow::Result<PathBuf> {
    verify_restorable(src).await?;
    let src = std::fs::canonicalize(src)
        .with_context(|| format!("failed to resolve {}", src.display()))?;
    let marker = pending_restore_path(config);
    std::fs::write(&marker, src.to_string_lossy().as_bytes())
        .with_context(|| format!("failed to write {}", marker.display()))?;
    Ok(src)
}

/// At start-up, before the database is opened: performs a staged restore.
/// A staged restore that fails stops start-up (the marker stays, so the
/// cause is visible and nothing half-done is served).
pub async fn apply_pending_restore(config: &Config) -> anyhow::Result<Option<Restored>> {
    let marker = pending_restore_path(config);
    let src = match std::fs::read_to_string(&marker) {
        Ok(s) => PathBuf::from(s.trim()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("failed to read {}", marker.display())),
    };
    let restored = restore(config, &src).await.with_context(|| {
        format!(
            "the restore staged in {} failed (delete that file to start without it)",
            marker.display()
        )
    })?;
    std::fs::remove_file(&marker)
        .with_context(|| format!("failed to remove {}", marker.display()))?;
    tracing::warn!(
        backup = %src.display(),
        previous = ?restored.previous,
        "restored the database from a backup staged for this start"
    );
    Ok(Some(restored))
}

/// One backup made by the service, as listed by `GET /api/maintenance/backups`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    pub id: String,
    pub job_id: Option<JobId>,
    /// `schedule` or `admin`.
    pub trigger: String,
    /// File inside `DATA_DIR/backups`.
    pub file_name: String,
    /// `running`, `succeeded`, `failed` or `deleted` (rotated out).
    pub status: String,
    pub size_bytes: Option<i64>,
    /// `ok`, or what `PRAGMA integrity_check` found.
    pub integrity: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    /// Hex SHA-256 of the file (what `sha256sum` prints); absent for a
    /// backup not finished, or made before checksums were stored until its
    /// first download.
    pub sha256: Option<String>,
}

impl From<db::BackupRow> for Backup {
    fn from(r: db::BackupRow) -> Self {
        Self {
            id: r.id,
            job_id: r.job_id,
            trigger: r.trigger,
            file_name: r.file_name,
            status: r.status,
            size_bytes: r.size_bytes,
            integrity: r.integrity,
            duration_ms: r.duration_ms,
            error: r.error,
            created_at: r.created_at,
            finished_at: r.finished_at,
            sha256: r.sha256,
        }
    }
}

/// Makes a backup into `DATA_DIR/backups`, records it, and rotates old ones
/// out (keeping `BACKUP_KEEP`). A corrupt copy is logged at error level and
/// fails.
/// With a job context, the job's progress follows the bytes copied (against
/// the database's size) up to 90 %, then the check and checksum.
#[tracing::instrument(skip(state, ctx))]
pub async fn create(
    state: &Maintenance,
    trigger: &str,
    ctx: Option<&JobContext>,
) -> anyhow::Result<Backup> {
    let job_id = ctx.map(|c| &c.id);
    let dir = state.config.backups_dir();
    tokio::fs::create_dir_all(&dir)
        .await
        .with_context(|| format!("failed to create {}", dir.display()))?;
    let id = crate::db::new_id();
    let file_name = format!(
        "hs-platform-{}-{}.db",
        Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
        &id[id.len() - 8..]
    );
    {
        let mut tx = state.db.begin_write().await?;
        db::insert_backup(&mut tx, &id, job_id, trigger, &file_name).await?;
        tx.commit().await?;
    }
    let started = Instant::now();
    // A copy is about the database's size: refused (and recorded as failed)
    // when it would take the disk below its free-space floor.
    let estimate = std::fs::metadata(state.config.database_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let floor = state.files.files.limits().min_free;
    let result = if crate::files::space::below_floor(&dir, floor, estimate) {
        Err(crate::files::space::floor_error())
    } else {
        let copied = Arc::new(AtomicU64::new(0));
        let dest = dir.join(&file_name);
        let write = write_backup_observed(&state.config, &dest, &copied);
        match ctx {
            Some(ctx) => report_progress(ctx, write, &copied, estimate).await,
            None => write.await,
        }
    };
    let finished_at = Timestamp::now();
    let duration_ms = started.elapsed().as_millis() as i64;
    let (status, size_bytes, integrity, error, sha256) = match &result {
        Ok(w) => (
            "succeeded",
            Some(w.size_bytes as i64),
            Some("ok".to_string()),
            None,
            Some(w.sha256.as_str()),
        ),
        Err(e) => {
            let msg = format!("{e:#}");
            let integrity = msg.contains("integrity_check").then(|| msg.clone());
            ("failed", None, integrity, Some(msg), None)
        }
    };
    let outcome = db::BackupOutcome {
        status,
        size_bytes,
        integrity: integrity.as_deref(),
        duration_ms,
        error: error.as_deref(),
        finished_at,
        sha256,
    };
    {
        let mut tx = state.db.begin_write().await?;
        db::finish_backup(&mut tx, &id, &outcome).await?;
        tx.commit().await?;
    }
    if let Some(msg) = &error {
        tracing::error!(backup = %file_name, error = %msg, "DATABASE BACKUP FAILED");
    }
    result?;
    rotate(state).await?;
    let mut conn = state.db.reader.acquire().await?;
    let row = db::backup_by_id(&mut conn, &id)
        .await?
        .context("the backup row vanished")?;
    Ok(row.into())
}

/// Runs the copy while reporting the job's progress every 250 ms: the bytes
/// copied against `estimate` (the database's size) map to 0-90 %; the
/// integrity check and checksum that follow the copy are the rest.
async fn report_progress(
    ctx: &JobContext,
    write: impl std::future::Future<Output = anyhow::Result<Written>>,
    copied: &AtomicU64,
    estimate: u64,
) -> anyhow::Result<Written> {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tokio::pin!(write);
    loop {
        tokio::select! {
            written = &mut write => return written,
            _ = tick.tick() => {
                let bytes = copied.load(Ordering::Relaxed);
                let percent = copy_percent(bytes, estimate);
                let message = if percent < 90 {
                    format!("copying the database: {bytes} of about {estimate} bytes")
                } else {
                    "checking the copy and computing its checksum".to_string()
                };
                ctx.progress(percent, message).await;
            }
        }
    }
}

/// 0-90 % for `bytes` copied of about `estimate` (a copy can end smaller
/// or larger than the live file: it is compacted, and writers carry on).
fn copy_percent(bytes: u64, estimate: u64) -> u8 {
    if estimate == 0 {
        return 0;
    }
    (bytes.saturating_mul(90) / estimate).min(90) as u8
}

/// Deletes succeeded backups beyond the newest `BACKUP_KEEP`.
async fn rotate(state: &Maintenance) -> anyhow::Result<()> {
    let keep = state.config.backup_keep as usize;
    let rows = {
        let mut conn = state.db.reader.acquire().await?;
        db::kept_backups(&mut conn).await?
    };
    let dir = state.config.backups_dir();
    for old in rows.into_iter().skip(keep) {
        match tokio::fs::remove_file(dir.join(&old.file_name)).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %old.file_name, error = %e, "failed to delete an old backup");
                continue;
            }
        }
        let mut tx = state.db.begin_write().await?;
        db::mark_backup_deleted(&mut tx, &old.id).await?;
        tx.commit().await?;
    }
    Ok(())
}

/// Lists the backups made by the service, newest first.
pub async fn list(
    state: &Maintenance,
    cursor: Option<&str>,
    limit: i64,
) -> anyhow::Result<Vec<Backup>> {
    let mut conn = state.db.reader.acquire().await?;
    Ok(db::list_backups(&mut conn, cursor, limit)
        .await?
        .into_iter()
        .map(Backup::from)
        .collect())
}

/// Whether a scheduled backup is due (BACKUP_INTERVAL_HOURS since the last).
pub async fn due(state: &Maintenance) -> anyhow::Result<bool> {
    let hours = state.config.backup_interval_hours;
    if hours == 0 {
        return Ok(false);
    }
    let last = {
        let mut conn = state.db.reader.acquire().await?;
        db::last_backup_at(&mut conn).await?
    };
    Ok(match last {
        None => true,
        Some(at) => Timestamp::now() - at >= chrono::Duration::hours(i64::from(hours)),
    })
}

/// The integrity check run at start-up: `integrity_check`, or `quick_check`
/// when the database is larger than 1 GiB (a full check reads every index).
pub async fn check_at_startup(db: &crate::db::Db, config: &Config) -> anyhow::Result<()> {
    let size = std::fs::metadata(config.database_path())
        .map(|m| m.len())
        .unwrap_or(0);
    let quick = size > 1 << 30;
    let mut conn = db.reader.acquire().await?;
    let problems = db::integrity_problems(&mut conn, quick)
        .await
        .context("failed to run the start-up integrity check")?;
    if problems.is_empty() {
        tracing::info!(quick, "database integrity check passed");
        return Ok(());
    }
    tracing::error!(problems = %problems.join("; "), "DATABASE INTEGRITY CHECK FAILED");
    bail!(
        "the database {} fails PRAGMA {}: {}. Restore the latest good backup with \
         `hs-platform restore DATA_DIR/backups/<file>` (see docs/operations.md)",
        config.database_path().display(),
        if quick {
            "quick_check"
        } else {
            "integrity_check"
        },
        problems.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_progress_stays_within_0_to_90_percent() {
        assert_eq!(copy_percent(0, 1000), 0);
        assert_eq!(copy_percent(500, 1000), 45);
        assert_eq!(copy_percent(5000, 1000), 90);
        assert_eq!(copy_percent(10, 0), 0);
    }

    #[test]
    fn siblings_append_to_the_file_name() {
        let p = Path::new("/var/data/hs-platform.db");
        assert_eq!(
            sibling(p, "-wal"),
            Path::new("/var/data/hs-platform.db-wal")
        );
        assert_eq!(
            sibling(p, ".lock"),
            Path::new("/var/data/hs-platform.db.lock")
        );
    }
}
