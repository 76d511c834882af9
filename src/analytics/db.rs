//! Every SQL statement of the analytics domain: read-only aggregates over
//! users, sessions, request roll-ups, user activity, jobs, files and AI
//! calls. Ranges are `[from, to)`; activity is per day, from the day of
//! `from` to the day of the range's last millisecond (`last_day`).

use chrono::NaiveDate;
use sqlx::SqliteConnection;

use super::model::{AiDay, DayCount, FileKind, JobCount, JobStats, RequestDay, UserStorage};
use crate::ids::UserId;
use crate::monitoring::db::Split;
use crate::time::Timestamp;

pub async fn users_total(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(*) AS "n!: i64" FROM users"#)
        .fetch_one(conn)
        .await
}

pub async fn users_new_per_day(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
) -> sqlx::Result<Vec<DayCount>> {
    sqlx::query_as!(
        DayCount,
        r#"SELECT substr(created_at, 1, 10) AS "day!: NaiveDate", count(*) AS "count!: i64"
           FROM users WHERE created_at >= ? AND created_at < ?
           GROUP BY 1 ORDER BY 1"#,
        from,
        to
    )
    .fetch_all(conn)
    .await
}

pub async fn active_per_day(
    conn: &mut SqliteConnection,
    from_day: NaiveDate,
    last_day: NaiveDate,
) -> sqlx::Result<Vec<DayCount>> {
    sqlx::query_as!(
        DayCount,
        r#"SELECT day AS "day!: NaiveDate", count(*) AS "count!: i64"
           FROM user_activity WHERE day >= ? AND day <= ?
           GROUP BY day ORDER BY day"#,
        from_day,
        last_day
    )
    .fetch_all(conn)
    .await
}

pub async fn active_in_range(
    conn: &mut SqliteConnection,
    from_day: NaiveDate,
    last_day: NaiveDate,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(DISTINCT user_id) AS "n!: i64"
           FROM user_activity WHERE day >= ? AND day <= ?"#,
        from_day,
        last_day
    )
    .fetch_one(conn)
    .await
}

/// (active sessions, users with one, sessions created in the range)
pub async fn sessions(
    conn: &mut SqliteConnection,
    now: Timestamp,
    from: Timestamp,
    to: Timestamp,
) -> sqlx::Result<(i64, i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT
             (SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1) AS "active!: i64",
             (SELECT count(DISTINCT user_id) FROM sessions WHERE revoked_at IS NULL AND expires_at > ?1) AS "users!: i64",
             (SELECT count(*) FROM sessions WHERE created_at >= ?2 AND created_at < ?3) AS "created!: i64""#,
        now,
        from,
        to
    )
    .fetch_one(conn)
    .await?;
    Ok((r.active, r.users, r.created))
}

/// API requests per day, and load-test requests in all, over a range cut
/// by [`crate::monitoring::db::split`]: closed whole days from the daily
/// roll-ups, the hours around them from the hourly ones.
pub async fn requests_per_day(
    conn: &mut SqliteConnection,
    s: Split,
) -> sqlx::Result<(Vec<RequestDay>, i64)> {
    let rows = sqlx::query!(
        r#"SELECT day AS "day!: NaiveDate", source AS "source!: String",
                  sum(requests) AS "requests!: i64",
                  sum(CASE WHEN status BETWEEN 400 AND 499 THEN requests ELSE 0 END) AS "client!: i64",
                  sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS "server!: i64"
           FROM (
               SELECT substr(hour, 1, 10) AS day, source, status, requests FROM request_rollups
               WHERE hour >= ?1 AND hour < ?2
               UNION ALL
               SELECT day, source, status, requests FROM request_rollup_daily
               WHERE day >= ?3 AND day < ?4
               UNION ALL
               SELECT substr(hour, 1, 10), source, status, requests FROM request_rollups
               WHERE hour >= ?5 AND (?6 IS NULL OR hour < ?6)
           )
           GROUP BY 1, source ORDER BY 1"#,
        s.from_hour,
        s.head_end,
        s.first,
        s.end,
        s.tail,
        s.to
    )
    .fetch_all(conn)
    .await?;
    let (api, loadtest): (Vec<_>, Vec<_>) = rows.into_iter().partition(|r| r.source == "api");
    let days = api
        .into_iter()
        .map(|r| RequestDay {
            error_rate: if r.requests == 0 {
                0.0
            } else {
                r.server as f64 / r.requests as f64
            },
            day: r.day,
            requests: r.requests,
            client_errors: r.client,
            server_errors: r.server,
        })
        .collect();
    Ok((
        days,
        loadtest
            .iter()
            .filter(|r| r.source == "loadtest")
            .map(|r| r.requests)
            .sum(),
    ))
}

pub async fn jobs_by_kind_and_status(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
) -> sqlx::Result<Vec<JobCount>> {
    sqlx::query_as!(
        JobCount,
        r#"SELECT kind, status, count(*) AS "count!: i64"
           FROM jobs WHERE created_at >= ? AND created_at < ?
           GROUP BY kind, status ORDER BY kind, status"#,
        from,
        to
    )
    .fetch_all(conn)
    .await
}

pub async fn job_stats(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
) -> sqlx::Result<Vec<JobStats>> {
    let rows = sqlx::query!(
        r#"WITH f AS (
               SELECT kind, status,
                      (julianday(finished_at) - julianday(started_at)) * 86400000.0 AS ms
               FROM jobs
               WHERE status IN ('succeeded', 'failed')
                 AND finished_at >= ?1 AND finished_at < ?2
           ),
           s AS (
               SELECT kind, ms,
                      row_number() OVER (PARTITION BY kind ORDER BY ms) AS rn,
                      count(*) OVER (PARTITION BY kind) AS n
               FROM f WHERE status = 'succeeded' AND ms IS NOT NULL
           ),
           p AS (
               SELECT kind, avg(ms) AS mean_ms,
                      min(CASE WHEN rn >= 0.95 * n THEN ms END) AS p95_ms
               FROM s GROUP BY kind
           )
           SELECT f.kind AS "kind!: String",
                  count(*) AS "finished!: i64",
                  sum(f.status = 'succeeded') AS "succeeded!: i64",
                  sum(f.status = 'failed') AS "failed!: i64",
                  max(p.mean_ms) AS "mean_ms: f64",
                  max(p.p95_ms) AS "p95_ms: f64"
           FROM f LEFT JOIN p ON p.kind = f.kind
           GROUP BY f.kind ORDER BY f.kind"#,
        from,
        to
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| JobStats {
            success_rate: if r.finished == 0 {
                0.0
            } else {
                r.succeeded as f64 / r.finished as f64
            },
            kind: r.kind,
            finished: r.finished,
            succeeded: r.succeeded,
            failed: r.failed,
            mean_ms: r.mean_ms,
            p95_ms: r.p95_ms,
        })
        .collect())
}

pub async fn files_by_kind(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
) -> sqlx::Result<Vec<FileKind>> {
    sqlx::query_as!(
        FileKind,
        r#"SELECT kind, count(*) AS "files!: i64", coalesce(sum(size), 0) AS "bytes!: i64"
           FROM files WHERE created_at >= ? AND created_at < ?
           GROUP BY kind ORDER BY kind"#,
        from,
        to
    )
    .fetch_all(conn)
    .await
}

/// (files, bytes) stored now.
pub async fn files_stored(conn: &mut SqliteConnection) -> sqlx::Result<(i64, i64)> {
    let r = sqlx::query!(
        r#"SELECT count(*) AS "files!: i64", coalesce(sum(size), 0) AS "bytes!: i64" FROM files"#
    )
    .fetch_one(conn)
    .await?;
    Ok((r.files, r.bytes))
}

pub async fn ai_by_day_and_model(
    conn: &mut SqliteConnection,
    from: Timestamp,
    to: Timestamp,
) -> sqlx::Result<Vec<AiDay>> {
    sqlx::query_as!(
        AiDay,
        r#"SELECT substr(created_at, 1, 10) AS "day!: NaiveDate", model,
                  count(*) AS "calls!: i64",
                  sum(outcome = 'failed') AS "failed!: i64",
                  sum(input_tokens) AS "input_tokens!: i64",
                  sum(output_tokens) AS "output_tokens!: i64"
           FROM ai_calls WHERE created_at >= ? AND created_at < ?
           GROUP BY 1, model ORDER BY 1, model"#,
        from,
        to
    )
    .fetch_all(conn)
    .await
}

/// Stored files and bytes per user, largest first (files without an owner
/// are left out).
pub async fn storage_per_user(
    conn: &mut SqliteConnection,
    limit: i64,
) -> sqlx::Result<Vec<UserStorage>> {
    sqlx::query_as!(
        UserStorage,
        r#"SELECT f.user_id AS "user_id!: UserId", u.email AS "email?", count(*) AS "files!: i64",
                  coalesce(sum(f.size), 0) AS "bytes!: i64"
           FROM files f LEFT JOIN users u ON u.id = f.user_id
           WHERE f.user_id IS NOT NULL
           GROUP BY f.user_id ORDER BY 4 DESC, f.user_id LIMIT CAST(? AS INTEGER)"#,
        limit
    )
    .fetch_all(conn)
    .await
}

/// How many users have at least one stored file.
pub async fn users_with_files(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar!(r#"SELECT count(DISTINCT user_id) AS "n!: i64" FROM files"#)
        .fetch_one(conn)
        .await
}
