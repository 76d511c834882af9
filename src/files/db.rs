//! Every SQL statement of the files domain.

use sqlx::SqliteConnection;

use super::model::File;
use crate::ids::{FileId, JobId, UserId};
use crate::time::Timestamp;

/// A row of `files`.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub id: FileId,
    pub user_id: UserId,
    pub kind: String,
    pub file_name: String,
    pub mime_type: String,
    pub size: i64,
    pub sha256: String,
    pub storage_name: String,
    pub job_id: Option<JobId>,
    pub created_at: Timestamp,
}

impl FileRow {
    pub fn to_file(&self) -> File {
        File {
            id: self.id.clone(),
            kind: self.kind.clone(),
            owner_id: self.user_id.clone(),
            file_name: self.file_name.clone(),
            mime_type: self.mime_type.clone(),
            size: self.size,
            sha256: self.sha256.clone(),
            created_at: self.created_at,
            job_id: self.job_id.clone(),
            download_url: format!("/api/files/{}", self.id),
        }
    }
}

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut SqliteConnection, row: &FileRow) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO files (id, user_id, kind, file_name, mime_type, size, sha256, storage_name, job_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        row.id,
        row.user_id,
        row.kind,
        row.file_name,
        row.mime_type,
        row.size,
        row.sha256,
        row.storage_name,
        row.job_id,
        row.created_at,
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip_all)]
pub async fn find(conn: &mut SqliteConnection, id: &FileId) -> sqlx::Result<Option<FileRow>> {
    sqlx::query_as!(
        FileRow,
        r#"SELECT id AS "id!: FileId", user_id AS "user_id: UserId", kind, file_name, mime_type, size,
                  sha256, storage_name, job_id AS "job_id?: JobId", created_at AS "created_at: Timestamp"
           FROM files WHERE id = ?1"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// The file a job produced (a retried job answers with it again).
#[tracing::instrument(skip_all)]
pub async fn find_by_job(
    conn: &mut SqliteConnection,
    job_id: &JobId,
) -> sqlx::Result<Option<FileRow>> {
    sqlx::query_as!(
        FileRow,
        r#"SELECT id AS "id!: FileId", user_id AS "user_id: UserId", kind, file_name, mime_type, size,
                  sha256, storage_name, job_id AS "job_id?: JobId", created_at AS "created_at: Timestamp"
           FROM files WHERE job_id = ?1 LIMIT 1"#,
        job_id
    )
    .fetch_optional(conn)
    .await
}

/// Newest first; `owner` None lists everyone's files (admins).
#[tracing::instrument(skip_all)]
pub async fn list(
    conn: &mut SqliteConnection,
    owner: Option<&UserId>,
    kind: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<FileRow>> {
    sqlx::query_as!(
        FileRow,
        r#"SELECT id AS "id!: FileId", user_id AS "user_id: UserId", kind, file_name, mime_type, size,
                  sha256, storage_name, job_id AS "job_id?: JobId", created_at AS "created_at: Timestamp"
           FROM files
           WHERE (?1 IS NULL OR user_id = ?1)
             AND (?2 IS NULL OR kind = ?2)
             AND (?3 IS NULL OR id < ?3)
           ORDER BY id DESC
           LIMIT CAST(?4 AS INTEGER)"#,
        owner,
        kind,
        cursor,
        limit
    )
    .fetch_all(conn)
    .await
}

/// Deletes a row and says which stored file it named.
#[tracing::instrument(skip_all)]
pub async fn delete(conn: &mut SqliteConnection, id: &FileId) -> sqlx::Result<Option<String>> {
    let row = sqlx::query!(
        r#"DELETE FROM files WHERE id = ?1 RETURNING storage_name AS "storage_name!""#,
        id
    )
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|r| r.storage_name))
}

/// Deletes every row of a user and says which stored files they named.
#[tracing::instrument(skip_all)]
pub async fn delete_of_user(
    conn: &mut SqliteConnection,
    user_id: &UserId,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar!(
        r#"DELETE FROM files WHERE user_id = ?1 RETURNING storage_name AS "storage_name!""#,
        user_id
    )
    .fetch_all(conn)
    .await
}

/// Bytes stored in total and by one user.
#[tracing::instrument(skip_all)]
pub async fn usage(conn: &mut SqliteConnection, user_id: &UserId) -> sqlx::Result<(i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT coalesce(sum(size), 0) AS "total!: i64",
                  coalesce(sum(CASE WHEN user_id = ?1 THEN size ELSE 0 END), 0) AS "mine!: i64"
           FROM files"#,
        user_id
    )
    .fetch_one(conn)
    .await?;
    Ok((r.total, r.mine))
}

/// Every row's id, storage name and size (reconciliation).
#[tracing::instrument(skip_all)]
pub async fn all_storage(conn: &mut SqliteConnection) -> sqlx::Result<Vec<(FileId, String, i64)>> {
    let rows = sqlx::query!(r#"SELECT id AS "id!: FileId", storage_name, size FROM files"#)
        .fetch_all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.storage_name, r.size))
        .collect())
}
