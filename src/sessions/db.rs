//! Every SQL statement of the sessions domain.

use sqlx::SqliteConnection;

use super::model::Session;
use crate::ids::{SessionId, UserId};
use crate::time::Timestamp;
use crate::users::model::object_from_db;

pub struct SessionRow {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub last_seen_at: Option<Timestamp>,
    pub data: String,
    pub metadata: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl SessionRow {
    pub fn into_session(self, now: Timestamp) -> Session {
        Session {
            active: self.revoked_at.is_none() && self.expires_at > now,
            id: self.id,
            user_id: self.user_id,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            last_seen_at: self.last_seen_at,
            data: object_from_db(&self.data),
            metadata: object_from_db(&self.metadata),
            ip: self.ip,
            user_agent: self.user_agent,
        }
    }
}

pub struct NewSession<'a> {
    pub id: &'a SessionId,
    pub user_id: &'a UserId,
    pub token_hash: &'a str,
    pub expires_at: Timestamp,
    pub metadata: &'a str,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut SqliteConnection, s: &NewSession<'_>) -> sqlx::Result<SessionRow> {
    sqlx::query_as!(
        SessionRow,
        r#"INSERT INTO sessions (id, user_id, token_hash, expires_at, metadata, ip, user_agent)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           RETURNING id AS "id!: SessionId", user_id AS "user_id: UserId",
                     created_at AS "created_at: Timestamp", expires_at AS "expires_at: Timestamp",
                     revoked_at AS "revoked_at?: Timestamp", last_seen_at AS "last_seen_at?: Timestamp",
                     data, metadata, ip, user_agent"#,
        s.id,
        s.user_id,
        s.token_hash,
        s.expires_at,
        s.metadata,
        s.ip,
        s.user_agent
    )
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip(conn))]
pub async fn find(conn: &mut SqliteConnection, id: &SessionId) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"SELECT id AS "id!: SessionId", user_id AS "user_id: UserId",
                  created_at AS "created_at: Timestamp", expires_at AS "expires_at: Timestamp",
                  revoked_at AS "revoked_at?: Timestamp", last_seen_at AS "last_seen_at?: Timestamp",
                  data, metadata, ip, user_agent
           FROM sessions WHERE id = ?"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Whether a kept session of the user (live, or ended less than a day ago)
/// logged in from `ip`.
pub async fn has_session_from(
    conn: &mut SqliteConnection,
    user_id: &UserId,
    ip: &str,
) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM sessions WHERE user_id = ? AND ip = ?) AS "known!: bool""#,
        user_id,
        ip
    )
    .fetch_one(conn)
    .await
}

/// A live session found by its token hash, with what authorization needs.
pub struct LiveSession {
    pub session_id: SessionId,
    pub user_id: UserId,
    pub role: String,
    pub expires_at: Timestamp,
}

#[tracing::instrument(skip_all)]
pub async fn find_live_by_token_hash(
    conn: &mut SqliteConnection,
    token_hash: &str,
    now: Timestamp,
) -> sqlx::Result<Option<LiveSession>> {
    sqlx::query_as!(
        LiveSession,
        r#"SELECT s.id AS "session_id!: SessionId", s.user_id AS "user_id: UserId", u.role,
                  s.expires_at AS "expires_at: Timestamp"
           FROM sessions s JOIN users u ON u.id = s.user_id
           WHERE s.token_hash = ? AND s.revoked_at IS NULL AND s.expires_at > ?"#,
        token_hash,
        now
    )
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip(conn))]
pub async fn list_for_user(
    conn: &mut SqliteConnection,
    user_id: &UserId,
    cursor: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"SELECT id AS "id!: SessionId", user_id AS "user_id: UserId",
                  created_at AS "created_at: Timestamp", expires_at AS "expires_at: Timestamp",
                  revoked_at AS "revoked_at?: Timestamp", last_seen_at AS "last_seen_at?: Timestamp",
                  data, metadata, ip, user_agent
           FROM sessions
           WHERE user_id = ?1 AND (?2 IS NULL OR id < ?2)
           ORDER BY id DESC LIMIT CAST(?3 AS INTEGER)"#,
        user_id,
        cursor,
        limit
    )
    .fetch_all(conn)
    .await
}

#[tracing::instrument(skip_all, fields(session_id = %id))]
pub async fn update_data(
    conn: &mut SqliteConnection,
    id: &SessionId,
    data: Option<&str>,
    metadata: Option<&str>,
) -> sqlx::Result<Option<SessionRow>> {
    sqlx::query_as!(
        SessionRow,
        r#"UPDATE sessions SET data = coalesce(?1, data), metadata = coalesce(?2, metadata)
           WHERE id = ?3
           RETURNING id AS "id!: SessionId", user_id AS "user_id: UserId",
                     created_at AS "created_at: Timestamp", expires_at AS "expires_at: Timestamp",
                     revoked_at AS "revoked_at?: Timestamp", last_seen_at AS "last_seen_at?: Timestamp",
                     data, metadata, ip, user_agent"#,
        data,
        metadata,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Revokes one session; returns its token hash so caches can forget it.
#[tracing::instrument(skip(conn))]
pub async fn revoke(
    conn: &mut SqliteConnection,
    id: &SessionId,
    now: Timestamp,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        r#"UPDATE sessions SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2
           RETURNING token_hash"#,
        now,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Revokes every live session of a user.
#[tracing::instrument(skip(conn))]
pub async fn revoke_all_for_user(
    conn: &mut SqliteConnection,
    user_id: &UserId,
    now: Timestamp,
) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        "UPDATE sessions SET revoked_at = ?1 WHERE user_id = ?2 AND revoked_at IS NULL",
        now,
        user_id
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Deletes sessions that expired or were revoked before `before`.
#[tracing::instrument(skip(conn))]
pub async fn delete_dead(conn: &mut SqliteConnection, before: Timestamp) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        "DELETE FROM sessions WHERE expires_at <= ?1 OR revoked_at <= ?1",
        before
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Counts what [`delete_dead`] would delete.
pub async fn count_dead(conn: &mut SqliteConnection, before: Timestamp) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!: i64" FROM sessions WHERE expires_at <= ?1 OR revoked_at <= ?1"#,
        before
    )
    .fetch_one(conn)
    .await
}

pub async fn touch(
    conn: &mut SqliteConnection,
    id: &SessionId,
    seen_at: Timestamp,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE sessions SET last_seen_at = ?1 WHERE id = ?2 AND (last_seen_at IS NULL OR last_seen_at < ?1)",
        seen_at,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends every session of a user by deleting it and records that for every
/// process's authentication cache (promotion to admin: no token issued
/// before may act as admin, in this process, another one, or after a
/// restart); returns how many. The caller owns the transaction and then
/// calls `AuthCache::forget_user`; other processes forget within
/// `auth::INVALIDATION_POLL`.
pub async fn end_all_for_user(conn: &mut SqliteConnection, user_id: &UserId) -> sqlx::Result<u64> {
    let n = delete_all_for_user(conn, user_id).await?;
    log_invalidation(conn, Some(user_id), None).await?;
    Ok(n)
}

/// Deletes every session of a user (promotion to admin: no token issued
/// before it may act as admin); returns how many.
#[tracing::instrument(skip(conn))]
pub async fn delete_all_for_user(
    conn: &mut SqliteConnection,
    user_id: &UserId,
) -> sqlx::Result<u64> {
    let r = sqlx::query!("DELETE FROM sessions WHERE user_id = ?", user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// Records that cached authentications of `user_id` (every session) or of
/// `token_hash` (one session) must be forgotten by every process.
#[tracing::instrument(skip_all)]
pub async fn log_invalidation(
    conn: &mut SqliteConnection,
    user_id: Option<&UserId>,
    token_hash: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO auth_invalidations (user_id, token_hash) VALUES (?, ?)",
        user_id,
        token_hash
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub struct Invalidation {
    pub seq: i64,
    pub user_id: Option<UserId>,
    pub token_hash: Option<String>,
}

/// Invalidations recorded after `seq`, oldest first.
pub async fn invalidations_since(
    conn: &mut SqliteConnection,
    seq: i64,
    limit: i64,
) -> sqlx::Result<Vec<Invalidation>> {
    sqlx::query_as!(
        Invalidation,
        r#"SELECT seq AS "seq!", user_id AS "user_id: UserId", token_hash FROM auth_invalidations
           WHERE seq > ? ORDER BY seq LIMIT CAST(? AS INTEGER)"#,
        seq,
        limit
    )
    .fetch_all(conn)
    .await
}

/// The newest invalidation's `seq` (0 when there is none).
pub async fn last_invalidation(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT coalesce(max(seq), 0) AS "n!: i64" FROM auth_invalidations"#)
        .fetch_one(conn)
        .await
}

/// Deletes invalidations recorded before `before` (every process has
/// applied them long since).
pub async fn prune_invalidations(
    conn: &mut SqliteConnection,
    before: Timestamp,
) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        "DELETE FROM auth_invalidations WHERE created_at < ?",
        before
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}
