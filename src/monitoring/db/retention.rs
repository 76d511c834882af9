//! Retention: roll-ups rebuilt from raw rows, and old rows counted or deleted.

use chrono::NaiveDate;
use sqlx::SqliteConnection;

use crate::time::Timestamp;

/// Recomputes the roll-ups of every hour before `before_ms` (an hour
/// boundary, Unix milliseconds) from the raw rows still present (all rows of
/// an hour are deleted together, so the recomputed values are complete), and
/// the per-day user activity.
pub async fn rebuild_rollups_before(
    conn: &mut SqliteConnection,
    before_ms: i64,
) -> sqlx::Result<u64> {
    let done = sqlx::query!(
        r#"INSERT INTO request_rollups (hour, route, method, status, source, requests, total_ms,
               max_ms, bytes_in, bytes_out)
           SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'), route, method, status, source, count(*),
                  sum(duration_ms), max(duration_ms), coalesce(sum(bytes_in), 0),
                  coalesce(sum(bytes_out), 0)
           FROM request_log
           WHERE at_ms < ?1
           GROUP BY 1, route, method, status, source
           ON CONFLICT (hour, route, method, status, source) DO UPDATE SET
               requests = excluded.requests, total_ms = excluded.total_ms,
               max_ms = excluded.max_ms, bytes_in = excluded.bytes_in,
               bytes_out = excluded.bytes_out"#,
        before_ms
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    // The histograms of the same hours, replaced whole; each duration's
    // bucket as crate::monitoring::latency::bucket_of_ms computes it.
    sqlx::query!(
        r#"DELETE FROM request_rollup_buckets
           WHERE hour IN (SELECT DISTINCT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch')
                          FROM request_log WHERE at_ms < ?1)"#,
        before_ms
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO request_rollup_buckets (hour, route, method, source, bucket, count)
           SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'), route, method, source,
                  (SELECT bucket FROM latency_buckets
                   WHERE lower_us <= max(0, CAST(duration_ms * 1000.0 AS INTEGER))
                   ORDER BY lower_us DESC LIMIT 1),
                  count(*)
           FROM request_log
           WHERE at_ms < ?1
           GROUP BY 1, route, method, source, 5
           ON CONFLICT (hour, route, method, source, bucket) DO UPDATE SET
               count = excluded.count"#,
        before_ms
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO user_activity (day, user_id, requests)
           SELECT date(at_ms / 1000, 'unixepoch'), user_id, count(*)
           FROM request_log
           WHERE at_ms < ?1 AND user_id IS NOT NULL
           GROUP BY 1, user_id
           ON CONFLICT (day, user_id) DO UPDATE SET
               requests = max(requests, excluded.requests)"#,
        before_ms
    )
    .execute(&mut *conn)
    .await?;
    Ok(done)
}

/// The UTC day of the oldest raw row, if any.
pub async fn oldest_request_day(conn: &mut SqliteConnection) -> sqlx::Result<Option<NaiveDate>> {
    sqlx::query_scalar!(
        r#"SELECT date(min(at_ms) / 1000, 'unixepoch') AS "day: NaiveDate" FROM request_log"#
    )
    .fetch_one(conn)
    .await
}

/// Raw rows older than `before_ms` (Unix milliseconds).
pub async fn count_requests_before(
    conn: &mut SqliteConnection,
    before_ms: i64,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!: i64" FROM request_log WHERE at_ms < ?"#,
        before_ms
    )
    .fetch_one(conn)
    .await
}

/// Deletes up to `limit` raw rows older than `before_ms`; returns how many.
pub async fn delete_requests_before(
    conn: &mut SqliteConnection,
    before_ms: i64,
    limit: i64,
) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM request_log WHERE id IN
             (SELECT id FROM request_log WHERE at_ms < ? ORDER BY at_ms LIMIT CAST(? AS INTEGER))",
        before_ms,
        limit
    )
    .execute(conn)
    .await?
    .rows_affected())
}

pub async fn count_error_events_before(
    conn: &mut SqliteConnection,
    before: Timestamp,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!: i64" FROM error_events WHERE at < ?"#,
        before
    )
    .fetch_one(conn)
    .await
}

pub async fn delete_error_events_before(
    conn: &mut SqliteConnection,
    before: Timestamp,
) -> sqlx::Result<u64> {
    Ok(
        sqlx::query!("DELETE FROM error_events WHERE at < ?", before)
            .execute(conn)
            .await?
            .rows_affected(),
    )
}

pub async fn count_rollups_before(
    conn: &mut SqliteConnection,
    before_hour: Timestamp,
    before_day: NaiveDate,
) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT (SELECT count(*) FROM request_rollups WHERE hour < ?1)
                + (SELECT count(*) FROM user_activity WHERE day < ?2)
                + (SELECT count(*) FROM request_rollup_daily_buckets WHERE day < ?2)
                + (SELECT count(*) FROM request_rollup_hour_users WHERE hour < ?1)
                + (SELECT count(*) FROM alerts WHERE status = 'resolved' AND fired_at < ?1)
                + (SELECT count(*) FROM error_groups WHERE last_seen < ?1) AS "n!: i64""#,
        before_hour,
        before_day
    )
    .fetch_one(conn)
    .await
}

/// Deletes roll-ups, activity days, resolved alerts and error groups older
/// than the roll-up retention.
pub async fn delete_rollups_before(
    conn: &mut SqliteConnection,
    before_hour: Timestamp,
    before_day: NaiveDate,
) -> sqlx::Result<u64> {
    let mut n = sqlx::query!("DELETE FROM request_rollups WHERE hour < ?", before_hour)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    sqlx::query!(
        "DELETE FROM request_rollup_buckets WHERE hour < ?",
        before_hour
    )
    .execute(&mut *conn)
    .await?;
    n += sqlx::query!(
        "DELETE FROM request_rollup_daily_buckets WHERE day < ?",
        before_day
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    n += sqlx::query!(
        "DELETE FROM request_rollup_hour_users WHERE hour < ?",
        before_hour
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    n += sqlx::query!("DELETE FROM user_activity WHERE day < ?", before_day)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    n += sqlx::query!(
        "DELETE FROM alerts WHERE status = 'resolved' AND fired_at < ?",
        before_hour
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    n += sqlx::query!("DELETE FROM error_groups WHERE last_seen < ?", before_hour)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    Ok(n)
}
