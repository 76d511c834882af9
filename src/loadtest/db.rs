//! Every SQL statement of the loadtest domain (the `load_tests` table).

use sqlx::SqliteConnection;

use crate::ids::{JobId, UserId};
use crate::time::Timestamp;

pub struct LoadTestRow {
    pub id: String,
    pub job_id: Option<JobId>,
    pub user_id: Option<UserId>,
    pub status: String,
    pub request: String,
    pub mode: String,
    pub concurrency: i64,
    pub target_rps: Option<f64>,
    pub requests: Option<i64>,
    pub succeeded: Option<i64>,
    pub failed: Option<i64>,
    pub achieved_rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub passed: Option<i64>,
    pub report: Option<String>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
}

pub struct NewLoadTest<'a> {
    pub id: &'a str,
    pub user_id: Option<&'a UserId>,
    pub request: &'a str,
    pub mode: &'a str,
    pub concurrency: i64,
    pub target_rps: Option<f64>,
    pub duration_seconds: Option<i64>,
    pub max_requests: Option<i64>,
}

/// Records a test (no-op when it exists: the start handler and the job both
/// call this).
#[tracing::instrument(skip_all, fields(test_id = t.id))]
pub async fn insert(conn: &mut SqliteConnection, t: &NewLoadTest<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT OR IGNORE INTO load_tests
            (id, job_id, user_id, request, mode, concurrency, target_rps, duration_seconds, max_requests)
         VALUES (?1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        t.id,
        t.user_id,
        t.request,
        t.mode,
        t.concurrency,
        t.target_rps,
        t.duration_seconds,
        t.max_requests
    )
    .execute(conn)
    .await?;
    Ok(())
}

#[tracing::instrument(skip(conn))]
pub async fn set_running(
    conn: &mut SqliteConnection,
    id: &str,
    now: Timestamp,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE load_tests SET status = 'running', started_at = ?1 WHERE id = ?2",
        now,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The outcome of a test, with the columns an analyst queries and the full
/// report.
pub struct Finished<'a> {
    pub status: &'a str,
    pub requests: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub achieved_rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub error_rate: f64,
    pub passed: Option<i64>,
    pub report: &'a str,
    pub error: Option<&'a str>,
    pub finished_at: Timestamp,
}

#[tracing::instrument(skip(conn, f))]
pub async fn finish(conn: &mut SqliteConnection, id: &str, f: &Finished<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE load_tests SET status = ?1, requests = ?2, succeeded = ?3, failed = ?4,
                achieved_rps = ?5, p50_ms = ?6, p95_ms = ?7, p99_ms = ?8, max_ms = ?9,
                error_rate = ?10, passed = ?11, report = ?12, error = ?13, finished_at = ?14
         WHERE id = ?15",
        f.status,
        f.requests,
        f.succeeded,
        f.failed,
        f.achieved_rps,
        f.p50_ms,
        f.p95_ms,
        f.p99_ms,
        f.max_ms,
        f.error_rate,
        f.passed,
        f.report,
        f.error,
        f.finished_at,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Ends a test that never produced a report (failed to start, cancelled while
/// queued, interrupted by a restart).
#[tracing::instrument(skip(conn))]
pub async fn end_without_report(
    conn: &mut SqliteConnection,
    id: &str,
    status: &str,
    error: Option<&str>,
    now: Timestamp,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE load_tests SET status = ?1, error = ?2, finished_at = ?3
         WHERE id = ?4 AND status IN ('queued', 'running')",
        status,
        error,
        now,
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Tests left running by a process that stopped without finishing them.
#[tracing::instrument(skip(conn))]
pub async fn fail_interrupted(conn: &mut SqliteConnection, now: Timestamp) -> sqlx::Result<u64> {
    let r = sqlx::query!(
        "UPDATE load_tests SET status = 'failed', error = 'interrupted: the service stopped',
                finished_at = ?1
         WHERE status = 'running'",
        now
    )
    .execute(conn)
    .await?;
    Ok(r.rows_affected())
}

#[tracing::instrument(skip(conn))]
pub async fn find(conn: &mut SqliteConnection, id: &str) -> sqlx::Result<Option<LoadTestRow>> {
    sqlx::query_as!(
        LoadTestRow,
        r#"SELECT id AS "id!", job_id AS "job_id?: JobId", user_id AS "user_id?: UserId", status,
                  request, mode, concurrency, target_rps,
                  requests, succeeded, failed, achieved_rps, p50_ms, p99_ms, passed, report, error,
                  created_at AS "created_at: Timestamp", started_at AS "started_at?: Timestamp",
                  finished_at AS "finished_at?: Timestamp"
           FROM load_tests WHERE id = ?"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// The most recent tests, newest first (without their reports).
#[tracing::instrument(skip(conn))]
pub async fn recent(conn: &mut SqliteConnection, limit: i64) -> sqlx::Result<Vec<LoadTestRow>> {
    sqlx::query_as!(
        LoadTestRow,
        r#"SELECT id AS "id!", job_id AS "job_id?: JobId", user_id AS "user_id?: UserId", status,
                  request, mode, concurrency, target_rps,
                  requests, succeeded, failed, achieved_rps, p50_ms, p99_ms, passed,
                  NULL AS "report?: String", error, created_at AS "created_at: Timestamp",
                  started_at AS "started_at?: Timestamp", finished_at AS "finished_at?: Timestamp"
           FROM load_tests ORDER BY created_at DESC, id DESC LIMIT CAST(? AS INTEGER)"#,
        limit
    )
    .fetch_all(conn)
    .await
}
