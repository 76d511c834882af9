//! Every SQL statement of the maintenance domain: database-level pragmas
//! (integrity checks, optimize, checkpoints, the online copy) and the
//! `backups` table. The page counts and the incremental vacuum, which the
//! log retention uses too, are in [`crate::db`].

use sqlx::SqliteConnection;

use crate::ids::JobId;
use crate::time::Timestamp;

/// `PRAGMA integrity_check` (or the cheaper `quick_check`): the problems found,
/// empty when the database is sound (SQLite answers the single row `ok`).
#[tracing::instrument(skip(conn))]
pub async fn integrity_problems(
    conn: &mut SqliteConnection,
    quick: bool,
) -> sqlx::Result<Vec<String>> {
    let sql = if quick {
        "PRAGMA quick_check(20)"
    } else {
        "PRAGMA integrity_check(20)"
    };
    let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(conn).await?;
    Ok(rows.into_iter().filter(|r| r != "ok").collect())
}

/// Writes a transactionally consistent copy of the database to `path` (which
/// must not exist). Runs as one read transaction: in WAL mode writers carry on.
#[tracing::instrument(skip(conn))]
pub async fn vacuum_into(conn: &mut SqliteConnection, path: &str) -> sqlx::Result<()> {
    sqlx::query("VACUUM INTO ?")
        .bind(path)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn optimize(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    sqlx::query("PRAGMA optimize").execute(conn).await?;
    Ok(())
}

/// The result row of `PRAGMA wal_checkpoint(TRUNCATE)`.
pub struct Checkpoint {
    /// 1 when a reader or writer kept the checkpoint from completing.
    pub busy: i64,
    pub log_frames: i64,
    pub checkpointed_frames: i64,
}

pub async fn wal_checkpoint_truncate(conn: &mut SqliteConnection) -> sqlx::Result<Checkpoint> {
    let (busy, log_frames, checkpointed_frames): (i64, i64, i64) =
        sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(conn)
            .await?;
    Ok(Checkpoint {
        busy,
        log_frames,
        checkpointed_frames,
    })
}

/// The highest migration version recorded in a database (a backup's schema
/// version), if it has the migrations table.
pub async fn schema_version(conn: &mut SqliteConnection) -> sqlx::Result<Option<i64>> {
    let has: i64 = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!: i64" FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"#
    )
    .fetch_one(&mut *conn)
    .await?;
    if has == 0 {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success = 1")
        .fetch_one(conn)
        .await
}

// --- backups table -----------------------------------------------------------

#[derive(Debug, Clone)]
pub struct BackupRow {
    pub id: String,
    pub job_id: Option<JobId>,
    pub trigger: String,
    pub file_name: String,
    pub status: String,
    pub size_bytes: Option<i64>,
    pub integrity: Option<String>,
    pub duration_ms: Option<i64>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub finished_at: Option<Timestamp>,
    pub sha256: Option<String>,
}

#[tracing::instrument(skip(conn))]
pub async fn insert_backup(
    conn: &mut SqliteConnection,
    id: &str,
    job_id: Option<&JobId>,
    trigger: &str,
    file_name: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO backups (id, job_id, trigger, file_name) VALUES (?, ?, ?, ?)",
        id,
        job_id,
        trigger,
        file_name
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub struct BackupOutcome<'a> {
    pub status: &'a str,
    pub size_bytes: Option<i64>,
    pub integrity: Option<&'a str>,
    pub duration_ms: i64,
    pub error: Option<&'a str>,
    pub finished_at: Timestamp,
    pub sha256: Option<&'a str>,
}

#[tracing::instrument(skip(conn, o))]
pub async fn finish_backup(
    conn: &mut SqliteConnection,
    id: &str,
    o: &BackupOutcome<'_>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE backups SET status = ?, size_bytes = ?, integrity = ?, duration_ms = ?, error = ?,
                finished_at = ?, sha256 = ?
         WHERE id = ?",
        o.status,
        o.size_bytes,
        o.integrity,
        o.duration_ms,
        o.error,
        o.finished_at,
        o.sha256,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip(conn))]
pub async fn mark_backup_deleted(conn: &mut SqliteConnection, id: &str) -> sqlx::Result<()> {
    sqlx::query!("UPDATE backups SET status = 'deleted' WHERE id = ?", id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Backups newest first (`cursor`: the last id of the previous page).
#[tracing::instrument(skip(conn))]
pub async fn list_backups(
    conn: &mut SqliteConnection,
    cursor: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<BackupRow>> {
    sqlx::query_as!(
        BackupRow,
        r#"SELECT id AS "id!", job_id AS "job_id?: JobId", trigger, file_name, status, size_bytes,
                  integrity, duration_ms, error, created_at AS "created_at: Timestamp",
                  finished_at AS "finished_at?: Timestamp", sha256
           FROM backups WHERE (?1 IS NULL OR id < ?1) ORDER BY id DESC LIMIT CAST(?2 AS INTEGER)"#,
        cursor,
        limit
    )
    .fetch_all(conn)
    .await
}

/// One backup by id.
#[tracing::instrument(skip(conn))]
pub async fn backup_by_id(
    conn: &mut SqliteConnection,
    id: &str,
) -> sqlx::Result<Option<BackupRow>> {
    sqlx::query_as!(
        BackupRow,
        r#"SELECT id AS "id!", job_id AS "job_id?: JobId", trigger, file_name, status, size_bytes,
                  integrity, duration_ms, error, created_at AS "created_at: Timestamp",
                  finished_at AS "finished_at?: Timestamp", sha256
           FROM backups WHERE id = ?1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Records the checksum of a backup made before checksums were stored.
#[tracing::instrument(skip(conn))]
pub async fn set_backup_sha256(
    conn: &mut SqliteConnection,
    id: &str,
    sha256: &str,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE backups SET sha256 = ? WHERE id = ? AND sha256 IS NULL",
        sha256,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Succeeded backups still on disk, newest first (rotation keeps the first
/// BACKUP_KEEP).
#[tracing::instrument(skip(conn))]
pub async fn kept_backups(conn: &mut SqliteConnection) -> sqlx::Result<Vec<BackupRow>> {
    sqlx::query_as!(
        BackupRow,
        r#"SELECT id AS "id!", job_id AS "job_id?: JobId", trigger, file_name, status, size_bytes,
                  integrity, duration_ms, error, created_at AS "created_at: Timestamp",
                  finished_at AS "finished_at?: Timestamp", sha256
           FROM backups WHERE status = 'succeeded' ORDER BY id DESC"#
    )
    .fetch_all(conn)
    .await
}

/// When the latest backup (of any outcome but a crash) was started.
#[tracing::instrument(skip(conn))]
pub async fn last_backup_at(conn: &mut SqliteConnection) -> sqlx::Result<Option<Timestamp>> {
    let row = sqlx::query_scalar!(
        r#"SELECT max(created_at) AS "at?: Timestamp" FROM backups WHERE status IN ('succeeded', 'deleted', 'running')"#
    )
    .fetch_one(conn)
    .await?;
    Ok(row)
}
