//! Every SQL statement of the job queue.

use sqlx::SqliteConnection;

use super::model::{Job, JobErrorBody, JobStatus, Progress};
use crate::ids::{JobId, UserId};
use crate::time::Timestamp;

pub struct JobRow {
    pub id: JobId,
    pub kind: String,
    pub status: String,
    pub priority: i64,
    pub payload: String,
    pub user_id: Option<UserId>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub run_at: Timestamp,
    pub progress_percent: i64,
    pub progress_message: Option<String>,
    pub result: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub cancel_requested: i64,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub updated_at: Timestamp,
}

impl From<JobRow> for Job {
    fn from(r: JobRow) -> Self {
        Job {
            id: r.id,
            kind: r.kind,
            status: JobStatus::from_db(&r.status),
            priority: r.priority,
            progress: Progress {
                percent: r.progress_percent,
                message: r.progress_message,
            },
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            run_at: r.run_at,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            updated_at: r.updated_at,
            user_id: r.user_id,
            cancel_requested: r.cancel_requested != 0,
            result: r.result.and_then(|t| serde_json::from_str(&t).ok()),
            error: match (r.error_code, r.error_message) {
                (Some(code), message) => Some(JobErrorBody {
                    code,
                    message: message.unwrap_or_default(),
                }),
                _ => None,
            },
            payload: None,
        }
    }
}

/// A job to insert, as one element of [`insert_many`]'s JSON array.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InsertJob<'a> {
    pub id: JobId,
    pub kind: &'a str,
    pub priority: i64,
    /// The payload as JSON text.
    pub payload: String,
    pub user_id: Option<&'a UserId>,
    pub idempotency_key: Option<&'a str>,
    pub max_attempts: i64,
    pub run_at: Timestamp,
}

/// Inserts many jobs in one statement. `jobs` is a JSON array of objects
/// with the fields of [`InsertJob`] (camelCase, `payload` as JSON text);
/// returns the rows inserted: a job whose idempotency key exists already is
/// left out (see [`find_by_idempotency_key`]).
pub async fn insert_many(
    conn: &mut SqliteConnection,
    jobs: &str,
    now: Timestamp,
) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as!(
        JobRow,
        r#"INSERT INTO jobs (id, kind, priority, payload, user_id, idempotency_key, max_attempts,
                             run_at, created_at, updated_at)
           SELECT j.value ->> 'id', j.value ->> 'kind', j.value ->> 'priority',
                  j.value ->> 'payload', j.value ->> 'userId', j.value ->> 'idempotencyKey',
                  j.value ->> 'maxAttempts', j.value ->> 'runAt', ?2, ?2
           FROM json_each(?1) AS j WHERE true
           ON CONFLICT (user_id, kind, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
           RETURNING id AS "id!: JobId", kind, status, priority, payload, user_id AS "user_id?: UserId",
                     attempts, max_attempts, run_at AS "run_at: Timestamp", progress_percent, progress_message,
                     result, error_code, error_message, cancel_requested, created_at AS "created_at: Timestamp",
                     started_at AS "started_at?: Timestamp", finished_at AS "finished_at?: Timestamp",
                     updated_at AS "updated_at: Timestamp""#,
        jobs,
        now
    )
    .fetch_all(conn)
    .await
}

pub async fn find_by_idempotency_key(
    conn: &mut SqliteConnection,
    user_id: Option<&UserId>,
    kind: &str,
    key: &str,
) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as!(
        JobRow,
        r#"SELECT id AS "id!: JobId", kind, status, priority, payload, user_id AS "user_id?: UserId",
                  attempts, max_attempts, run_at AS "run_at: Timestamp", progress_percent, progress_message,
                  result, error_code, error_message, cancel_requested, created_at AS "created_at: Timestamp",
                  started_at AS "started_at?: Timestamp", finished_at AS "finished_at?: Timestamp",
                  updated_at AS "updated_at: Timestamp"
           FROM jobs WHERE user_id IS ?1 AND kind = ?2 AND idempotency_key = ?3"#,
        user_id,
        kind,
        key
    )
    .fetch_optional(conn)
    .await
}

/// Unfinished (queued or running) jobs of each user of `user_ids` (a JSON
/// array) that has any.
pub async fn count_unfinished_by_user(
    conn: &mut SqliteConnection,
    user_ids: &str,
) -> sqlx::Result<Vec<(UserId, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT user_id AS "user_id!: UserId", count(*) AS "n!: i64" FROM jobs
           WHERE status IN ('queued', 'running')
             AND user_id IN (SELECT value FROM json_each(?1))
           GROUP BY user_id"#,
        user_ids
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.user_id, r.n)).collect())
}

pub async fn find(conn: &mut SqliteConnection, id: &JobId) -> sqlx::Result<Option<JobRow>> {
    sqlx::query_as!(
        JobRow,
        r#"SELECT id AS "id!: JobId", kind, status, priority, payload, user_id AS "user_id?: UserId",
                  attempts, max_attempts, run_at AS "run_at: Timestamp", progress_percent, progress_message,
                  result, error_code, error_message, cancel_requested, created_at AS "created_at: Timestamp",
                  started_at AS "started_at?: Timestamp", finished_at AS "finished_at?: Timestamp",
                  updated_at AS "updated_at: Timestamp"
           FROM jobs WHERE id = ?"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Newest first; every filter optional.
pub async fn list(
    conn: &mut SqliteConnection,
    user_id: Option<&UserId>,
    status: Option<&str>,
    kind: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<JobRow>> {
    sqlx::query_as!(
        JobRow,
        r#"SELECT id AS "id!: JobId", kind, status, priority, payload, user_id AS "user_id?: UserId",
                  attempts, max_attempts, run_at AS "run_at: Timestamp", progress_percent, progress_message,
                  result, error_code, error_message, cancel_requested, created_at AS "created_at: Timestamp",
                  started_at AS "started_at?: Timestamp", finished_at AS "finished_at?: Timestamp",
                  updated_at AS "updated_at: Timestamp"
           FROM jobs
           WHERE (?1 IS NULL OR user_id = ?1) AND (?2 IS NULL OR status = ?2)
             AND (?3 IS NULL OR kind = ?3) AND (?4 IS NULL OR id < ?4)
           ORDER BY id DESC LIMIT CAST(?5 AS INTEGER)"#,
        user_id,
        status,
        kind,
        cursor,
        limit
    )
    .fetch_all(conn)
    .await
}

/// A job claimed by this runner.
pub struct Claimed {
    pub id: JobId,
    pub kind: String,
    pub payload: String,
    pub user_id: Option<UserId>,
    pub attempts: i64,
    pub max_attempts: i64,
    pub lease_token: String,
}

/// Claims up to `n` due jobs in one atomic statement, fairly between users:
/// each user's due jobs take turns after the jobs it already runs (`turn`:
/// the user's running jobs plus the job's place in the user's own order,
/// highest priority first, then oldest), the lowest turn first, then the
/// oldest job. So the user with the fewest running jobs goes first, and
/// priority orders a user's own jobs but never passes another user's job
/// (between users, at the same turn, the older job goes first). `lanes`
/// (a JSON object: kind -> most running at once) caps kinds: a job whose lane is full is passed over and holds no slot.
/// Each claim gets a lease token unique to the attempt.
///
/// Only the first `n` due jobs of each (owner, kind) pair are ranked, found
/// through `jobs_queued_owner_kind` (one seek per pair): a claim costs
/// O(pairs x n), not O(queued rows). The first `n` turns of every owner are
/// exact (each job ahead of one of them is among the first `n` of its own
/// kind); beyond them turns are counted among the ranked jobs only.
///
/// `running` is `MATERIALIZED` on purpose: SQLite 3.51 (the bundled one)
/// otherwise inlines it into the per-row counts and scans the whole `jobs`
/// table for each ranked job, so a claim with 500,000 finished jobs kept took
/// 1.2-1.3 s (3.40, the Debian CLI, materialized it by itself and hid this).
pub async fn claim(
    conn: &mut SqliteConnection,
    owner: &str,
    n: i64,
    lanes: &str,
    lease_expires_at: Timestamp,
    now: Timestamp,
) -> sqlx::Result<Vec<Claimed>> {
    sqlx::query_as!(
        Claimed,
        r#"UPDATE jobs SET status = 'running', attempts = attempts + 1,
               lease_owner = ?1, lease_token = ?1 || ':' || id || ':' || (attempts + 1),
               lease_expires_at = ?3, started_at = coalesce(started_at, ?4), updated_at = ?4,
               error_code = NULL, error_message = NULL
           WHERE id IN (
               WITH RECURSIVE
               owner_kinds(k) AS (
                   SELECT (SELECT min(coalesce(user_id, '') || char(31) || kind) FROM jobs
                           WHERE status = 'queued')
                   UNION ALL
                   SELECT (SELECT min(coalesce(user_id, '') || char(31) || kind) FROM jobs
                           WHERE status = 'queued'
                             AND coalesce(user_id, '') || char(31) || kind > o.k)
                   FROM owner_kinds o WHERE o.k IS NOT NULL),
               due AS (
                   SELECT q.id, q.user_id, q.kind, q.priority FROM owner_kinds o JOIN jobs q
                   ON q.rowid IN (SELECT x.rowid FROM jobs x
                                  WHERE x.status = 'queued'
                                    AND coalesce(x.user_id, '') || char(31) || x.kind = o.k
                                    AND x.run_at <= ?4
                                  ORDER BY x.priority DESC, x.id LIMIT CAST(?2 AS INTEGER))),
               running AS MATERIALIZED (
                   SELECT user_id, kind FROM jobs WHERE status = 'running'),
               by_user AS (
                   SELECT q.id, q.kind,
                          row_number() OVER (PARTITION BY q.user_id ORDER BY q.priority DESC, q.id)
                          + (SELECT count(*) FROM running r WHERE r.user_id IS q.user_id) AS turn
                   FROM due q),
               by_kind AS (
                   SELECT b.id, b.turn, lane.value AS lane,
                          row_number() OVER (PARTITION BY b.kind ORDER BY b.turn, b.id)
                          + (SELECT count(*) FROM running r WHERE r.kind = b.kind) AS place
                   FROM by_user b LEFT JOIN json_each(?5) AS lane ON lane.key = b.kind)
               SELECT id FROM by_kind WHERE lane IS NULL OR place <= lane
               ORDER BY turn, id LIMIT CAST(?2 AS INTEGER))
           RETURNING id AS "id!: JobId", kind, payload, user_id AS "user_id?: UserId", attempts,
                     max_attempts, lease_token AS "lease_token!""#,
        owner,
        n,
        lease_expires_at,
        now,
        lanes
    )
    .fetch_all(conn)
    .await
}

/// Extends the leases of every job this runner holds.
pub async fn extend_leases(
    conn: &mut SqliteConnection,
    owner: &str,
    expires_at: Timestamp,
) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        "UPDATE jobs SET lease_expires_at = ?2 WHERE status = 'running' AND lease_owner = ?1",
        owner,
        expires_at
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

pub async fn succeed(
    conn: &mut SqliteConnection,
    id: &JobId,
    token: &str,
    result: &str,
    now: Timestamp,
) -> sqlx::Result<bool> {
    let r = sqlx::query!(
        r#"UPDATE jobs SET status = 'succeeded', result = ?3, finished_at = ?4, updated_at = ?4,
               progress_percent = 100, lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL
           WHERE id = ?1 AND lease_token = ?2 AND status = 'running'"#,
        id,
        token,
        result,
        now
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Ends an attempt without success: `status` is 'failed' or 'cancelled'.
pub async fn finish_unsuccessfully(
    conn: &mut SqliteConnection,
    id: &JobId,
    token: &str,
    status: &str,
    code: &str,
    message: &str,
    now: Timestamp,
) -> sqlx::Result<bool> {
    let r = sqlx::query!(
        r#"UPDATE jobs SET status = ?3, error_code = ?4, error_message = ?5, finished_at = ?6,
               updated_at = ?6, lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL
           WHERE id = ?1 AND lease_token = ?2 AND status = 'running'"#,
        id,
        token,
        status,
        code,
        message,
        now
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Puts a failed attempt back in the queue to run at `run_at`.
pub async fn retry_later(
    conn: &mut SqliteConnection,
    id: &JobId,
    token: &str,
    code: &str,
    message: &str,
    run_at: Timestamp,
    now: Timestamp,
) -> sqlx::Result<bool> {
    let r = sqlx::query!(
        r#"UPDATE jobs SET status = 'queued', error_code = ?3, error_message = ?4, run_at = ?5,
               updated_at = ?6, lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL
           WHERE id = ?1 AND lease_token = ?2 AND status = 'running'"#,
        id,
        token,
        code,
        message,
        run_at,
        now
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

pub async fn set_progress(
    conn: &mut SqliteConnection,
    id: &JobId,
    token: &str,
    percent: i64,
    message: Option<&str>,
    now: Timestamp,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE jobs SET progress_percent = ?3, progress_message = ?4, updated_at = ?5
           WHERE id = ?1 AND lease_token = ?2 AND status = 'running'"#,
        id,
        token,
        percent,
        message,
        now
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Cancels a queued job at once; for a running one records the request.
/// Returns the status after the statement (None when the job is missing).
pub async fn cancel(
    conn: &mut SqliteConnection,
    id: &JobId,
    now: Timestamp,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar!(
        r#"UPDATE jobs SET
               status = CASE WHEN status = 'queued' THEN 'cancelled' ELSE status END,
               finished_at = CASE WHEN status = 'queued' THEN ?2 ELSE finished_at END,
               error_code = CASE WHEN status = 'queued' THEN 'cancelled' ELSE error_code END,
               error_message = CASE WHEN status = 'queued' THEN 'cancelled before it ran'
                                    ELSE error_message END,
               cancel_requested = CASE WHEN status IN ('queued', 'running') THEN 1
                                       ELSE cancel_requested END,
               updated_at = ?2
           WHERE id = ?1
           RETURNING status"#,
        id,
        now
    )
    .fetch_optional(conn)
    .await
}

/// Deletes every job of a user; returns their ids.
#[tracing::instrument(skip(conn))]
pub async fn delete_of_user(
    conn: &mut SqliteConnection,
    user_id: &UserId,
) -> sqlx::Result<Vec<JobId>> {
    sqlx::query_scalar!(
        r#"DELETE FROM jobs WHERE user_id = ? RETURNING id AS "id!: JobId""#,
        user_id
    )
    .fetch_all(conn)
    .await
}

/// Gives this runner's running jobs back to the queue (shutdown); the
/// interrupted attempt does not count.
pub async fn release(
    conn: &mut SqliteConnection,
    owner: &str,
    now: Timestamp,
) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        r#"UPDATE jobs SET status = 'queued', attempts = max(attempts - 1, 0), run_at = ?2,
               updated_at = ?2, lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL
           WHERE status = 'running' AND lease_owner = ?1"#,
        owner,
        now
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Running jobs whose holder is gone: those with a lapsed lease, or (at
/// start-up, `foreign_owner_too`) any holder other than `owner`. They are
/// re-queued, or failed when they used up their attempts.
pub async fn recover_abandoned(
    conn: &mut SqliteConnection,
    owner: &str,
    foreign_owner_too: bool,
    now: Timestamp,
) -> sqlx::Result<u64> {
    let foreign = i64::from(foreign_owner_too);
    let r = sqlx::query!(
        r#"UPDATE jobs SET
               status = CASE WHEN attempts >= max_attempts THEN 'failed' ELSE 'queued' END,
               error_code = 'abandoned',
               error_message = 'the process running this job stopped before it finished',
               finished_at = CASE WHEN attempts >= max_attempts THEN ?3 ELSE NULL END,
               run_at = ?3, updated_at = ?3,
               lease_token = NULL, lease_owner = NULL, lease_expires_at = NULL
           WHERE status = 'running'
             AND (lease_expires_at < ?3 OR (?2 = 1 AND lease_owner IS NOT ?1))"#,
        owner,
        foreign,
        now
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

/// Deletes finished jobs older than `before`.
pub async fn prune_finished(conn: &mut SqliteConnection, before: Timestamp) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        "DELETE FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1",
        before
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

pub async fn count_prunable(conn: &mut SqliteConnection, before: Timestamp) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!: i64" FROM jobs WHERE finished_at IS NOT NULL AND finished_at < ?1"#,
        before
    )
    .fetch_one(conn)
    .await
}

/// Payload bytes of unfinished jobs: everyone's and `user_id`'s (queued
/// payloads count against their owner's storage quota). `except` leaves one
/// job out (the job now storing its own result).
pub async fn pending_payload_bytes(
    conn: &mut SqliteConnection,
    user_id: &UserId,
    except: Option<&JobId>,
) -> sqlx::Result<(i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT coalesce(sum(length(CAST(payload AS BLOB))), 0) AS "total!: i64",
                  coalesce(sum(CASE WHEN user_id = ?1 THEN length(CAST(payload AS BLOB)) ELSE 0 END), 0)
                      AS "mine!: i64"
           FROM jobs
           WHERE status IN ('queued', 'running') AND (?2 IS NULL OR id <> ?2)"#,
        user_id,
        except
    )
    .fetch_one(conn)
    .await?;
    Ok((r.total, r.mine))
}

/// The earliest run_at of queued jobs (to wake the runner for scheduled work).
pub async fn next_run_at(conn: &mut SqliteConnection) -> sqlx::Result<Option<Timestamp>> {
    sqlx::query_scalar!(
        r#"SELECT min(run_at) AS "at?: Timestamp" FROM jobs WHERE status = 'queued'"#
    )
    .fetch_one(conn)
    .await
}

/// Switches the connection's `synchronous` setting between FULL and NORMAL
/// (outside a transaction).
pub async fn set_synchronous(conn: &mut SqliteConnection, full: bool) -> sqlx::Result<()> {
    if full {
        sqlx::query!("PRAGMA synchronous = FULL")
            .execute(conn)
            .await?;
    } else {
        sqlx::query!("PRAGMA synchronous = NORMAL")
            .execute(conn)
            .await?;
    }
    Ok(())
}

// --- queue statistics (read-only, for monitoring and health) ----------------

pub struct QueueStats {
    pub queued: i64,
    pub running: i64,
    pub oldest_queued_run_at: Option<Timestamp>,
}

/// Depth of the queue: jobs waiting to run now, running, and the oldest due.
pub async fn queue_stats(conn: &mut SqliteConnection, now: Timestamp) -> sqlx::Result<QueueStats> {
    let r = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM jobs WHERE status = 'queued' AND run_at <= ?1) AS "queued!: i64",
                  (SELECT count(*) FROM jobs WHERE status = 'running') AS "running!: i64",
                  (SELECT min(run_at) FROM jobs WHERE status = 'queued' AND run_at <= ?1) AS "oldest: Timestamp""#,
        now
    )
    .fetch_one(conn)
    .await?;
    Ok(QueueStats {
        queued: r.queued,
        running: r.running,
        oldest_queued_run_at: r.oldest,
    })
}

/// Queued and running jobs per kind, for gauges.
pub async fn active_jobs_by_kind(
    conn: &mut SqliteConnection,
) -> sqlx::Result<Vec<(String, String, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT kind, status, count(*) AS "n!: i64" FROM jobs
           WHERE status IN ('queued', 'running') GROUP BY kind, status"#
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.kind, r.status, r.n)).collect())
}

/// (succeeded, failed) jobs finished since `since`.
pub async fn job_outcomes_since(
    conn: &mut SqliteConnection,
    since: Timestamp,
) -> sqlx::Result<(i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT coalesce(sum(status = 'succeeded'), 0) AS "ok!: i64",
                  coalesce(sum(status = 'failed'), 0) AS "failed!: i64"
           FROM jobs WHERE finished_at >= ? AND status IN ('succeeded', 'failed')"#,
        since
    )
    .fetch_one(conn)
    .await?;
    Ok((r.ok, r.failed))
}
