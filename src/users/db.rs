//! Every SQL statement of the users domain.

use sqlx::SqliteConnection;

use super::model::{Role, User, UserStats, object_from_db};
use crate::ids::UserId;
use crate::time::Timestamp;

pub struct UserRow {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub role: String,
    pub preferences: String,
    pub metadata: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            email: r.email,
            name: r.name,
            role: Role::from_db(&r.role),
            preferences: object_from_db(&r.preferences),
            metadata: object_from_db(&r.metadata),
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

pub struct NewUserRow<'a> {
    pub id: &'a UserId,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub name: Option<&'a str>,
    pub role: Role,
    pub preferences: &'a str,
    pub metadata: &'a str,
}

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut SqliteConnection, u: &NewUserRow<'_>) -> sqlx::Result<UserRow> {
    let role = u.role.as_str();
    sqlx::query_as!(
        UserRow,
        r#"INSERT INTO users (id, email, password_hash, name, role, preferences, metadata)
           VALUES (?, ?, ?, ?, ?, ?, ?)
           RETURNING id AS "id!: UserId", email, name, role, preferences, metadata,
                     created_at AS "created_at: Timestamp", updated_at AS "updated_at: Timestamp""#,
        u.id,
        u.email,
        u.password_hash,
        u.name,
        role,
        u.preferences,
        u.metadata
    )
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip(conn))]
pub async fn find(conn: &mut SqliteConnection, id: &UserId) -> sqlx::Result<Option<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id AS "id!: UserId", email, name, role, preferences, metadata,
                     created_at AS "created_at: Timestamp", updated_at AS "updated_at: Timestamp"
           FROM users WHERE id = ?"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Accounts newest first (ids are UUIDv7, so time-ordered): `pattern` is a
/// `LIKE` pattern (already escaped with `\\`) matched against email and
/// name, `cursor` the last id of the previous page.
#[tracing::instrument(skip(conn))]
pub async fn list(
    conn: &mut SqliteConnection,
    pattern: Option<&str>,
    role: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<UserRow>> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id AS "id!: UserId", email, name, role, preferences, metadata,
                  created_at AS "created_at: Timestamp", updated_at AS "updated_at: Timestamp"
           FROM users
           WHERE (?1 IS NULL OR email LIKE ?1 ESCAPE '\' OR name LIKE ?1 ESCAPE '\')
             AND (?2 IS NULL OR role = ?2)
             AND (?3 IS NULL OR id < ?3)
           ORDER BY id DESC LIMIT CAST(?4 AS INTEGER)"#,
        pattern,
        role,
        cursor,
        limit
    )
    .fetch_all(conn)
    .await
}

pub struct Credentials {
    pub id: UserId,
    pub password_hash: String,
}

#[tracing::instrument(skip_all)]
pub async fn credentials_by_email(
    conn: &mut SqliteConnection,
    email: &str,
) -> sqlx::Result<Option<Credentials>> {
    sqlx::query_as!(
        Credentials,
        r#"SELECT id AS "id!: UserId", password_hash FROM users WHERE email = ?"#,
        email
    )
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn password_hash(
    conn: &mut SqliteConnection,
    id: &UserId,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!("SELECT password_hash FROM users WHERE id = ?", id)
        .fetch_optional(conn)
        .await
}

/// Applies the given changes (NULL leaves a column as it is).
pub struct UserChanges<'a> {
    pub name: Option<&'a str>,
    pub preferences: Option<&'a str>,
    pub metadata: Option<&'a str>,
    pub role: Option<Role>,
    pub password_hash: Option<&'a str>,
}

#[tracing::instrument(skip_all, fields(user_id = %id))]
pub async fn update(
    conn: &mut SqliteConnection,
    id: &UserId,
    c: &UserChanges<'_>,
    now: Timestamp,
) -> sqlx::Result<Option<UserRow>> {
    let role = c.role.map(Role::as_str);
    sqlx::query_as!(
        UserRow,
        r#"UPDATE users SET
             name = coalesce(?1, name),
             preferences = coalesce(?2, preferences),
             metadata = coalesce(?3, metadata),
             role = coalesce(?4, role),
             password_hash = coalesce(?5, password_hash),
             updated_at = ?6
           WHERE id = ?7
           RETURNING id AS "id!: UserId", email, name, role, preferences, metadata,
                     created_at AS "created_at: Timestamp", updated_at AS "updated_at: Timestamp""#,
        c.name,
        c.preferences,
        c.metadata,
        role,
        c.password_hash,
        now,
        id
    )
    .fetch_optional(conn)
    .await
}

pub async fn admin_exists(conn: &mut SqliteConnection) -> sqlx::Result<bool> {
    let n = sqlx::query_scalar!(r#"SELECT count(*) AS "n!: i64" FROM users WHERE role = 'admin'"#)
        .fetch_one(conn)
        .await?;
    Ok(n > 0)
}

/// Makes the account with this email an admin with this password, creating
/// it if needed. Returns its id.
pub async fn upsert_admin(
    conn: &mut SqliteConnection,
    id: &UserId,
    email: &str,
    password_hash: &str,
    now: Timestamp,
) -> sqlx::Result<UserId> {
    sqlx::query_scalar!(
        r#"INSERT INTO users (id, email, password_hash, role, name)
           VALUES (?1, ?2, ?3, 'admin', 'Administrator')
           ON CONFLICT (email) DO UPDATE SET role = 'admin', password_hash = excluded.password_hash,
                                             updated_at = ?4
           RETURNING id AS "id!: UserId""#,
        id,
        email,
        password_hash,
        now
    )
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip(conn))]
pub async fn stats(
    conn: &mut SqliteConnection,
    id: &UserId,
    now: Timestamp,
) -> sqlx::Result<UserStats> {
    let r = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM sessions WHERE user_id = ?1) AS "sessions!: i64",
             (SELECT count(*) FROM sessions WHERE user_id = ?1 AND revoked_at IS NULL
                AND expires_at > ?2) AS "active_sessions!: i64",
             (SELECT max(coalesce(last_seen_at, created_at)) FROM sessions WHERE user_id = ?1)
                AS "last_activity_at?: Timestamp",
             (SELECT count(*) FROM jobs WHERE user_id = ?1) AS "jobs!: i64",
             (SELECT count(*) FROM jobs WHERE user_id = ?1 AND status = 'succeeded') AS "jobs_succeeded!: i64",
             (SELECT count(*) FROM jobs WHERE user_id = ?1 AND status = 'failed') AS "jobs_failed!: i64",
             (SELECT count(*) FROM files WHERE user_id = ?1) AS "files!: i64",
             (SELECT coalesce(sum(size), 0) FROM files WHERE user_id = ?1) AS "file_bytes!: i64",
             (SELECT count(*) FROM ai_calls WHERE user_id = ?1) AS "ai_calls!: i64",
             (SELECT coalesce(sum(input_tokens), 0) FROM ai_calls WHERE user_id = ?1) AS "ai_input_tokens!: i64",
             (SELECT coalesce(sum(output_tokens), 0) FROM ai_calls WHERE user_id = ?1) AS "ai_output_tokens!: i64"
        "#,
        id,
        now
    )
    .fetch_one(conn)
    .await?;
    Ok(UserStats {
        sessions: r.sessions,
        active_sessions: r.active_sessions,
        last_activity_at: r.last_activity_at,
        jobs: r.jobs,
        jobs_succeeded: r.jobs_succeeded,
        jobs_failed: r.jobs_failed,
        files: r.files,
        file_bytes: r.file_bytes,
        ai_calls: r.ai_calls,
        ai_input_tokens: r.ai_input_tokens,
        ai_output_tokens: r.ai_output_tokens,
    })
}

/// Test accounts (role user, email in `domain`) whose email starts with
/// `prefix`: (id, email).
#[tracing::instrument(skip(conn))]
pub async fn test_accounts(
    conn: &mut SqliteConnection,
    prefix: &str,
    domain: &str,
) -> sqlx::Result<Vec<(UserId, String)>> {
    let rows = sqlx::query!(
        r#"SELECT id AS "id!: UserId", email FROM users
           WHERE role = 'user' AND substr(email, 1, length(?1)) = ?1
             AND substr(email, -length(?2)) = ?2"#,
        prefix,
        domain
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.id, r.email)).collect())
}

/// Deletes a test account (role user, email in `domain`); its sessions and
/// file rows go with it (foreign keys).
#[tracing::instrument(skip(conn))]
pub async fn delete_test_account(
    conn: &mut SqliteConnection,
    id: &UserId,
    domain: &str,
) -> sqlx::Result<bool> {
    let r = sqlx::query!(
        "DELETE FROM users WHERE id = ?1 AND role = 'user' AND substr(email, -length(?2)) = ?2",
        id,
        domain
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() > 0)
}
