//! Closed days and hours: the daily latency buckets and the distinct users
//! per hour, rolled by the writer as days and hours close
//! (`migrations/20261130190000_rollup_closed_days.sql`), and the reads that
//! combine them with the hourly roll-ups and the raw rows.

use chrono::NaiveDate;
use sqlx::SqliteConnection;

use crate::time::Timestamp;

/// How far the closed tables are complete: every day before `days_before`
/// is in `request_rollup_daily_buckets`, every hour before `hours_before`
/// in `request_rollup_hour_users`.
#[derive(Debug, Clone, Copy)]
pub struct Closed {
    pub days_before: NaiveDate,
    pub hours_before: Timestamp,
}

pub async fn closed(conn: &mut SqliteConnection) -> sqlx::Result<Closed> {
    let r = sqlx::query!(
        r#"SELECT days_before AS "days_before: NaiveDate",
                  hours_before AS "hours_before: Timestamp"
           FROM rollup_closed WHERE id = 1"#
    )
    .fetch_one(conn)
    .await?;
    Ok(Closed {
        days_before: r.days_before,
        hours_before: r.hours_before,
    })
}

/// Rolls up what closed by `now`, inside the writer's transaction: the
/// days from the first not rolled (or from the day of `earliest`, the
/// oldest record just written, if that one is already rolled) to
/// yesterday, and likewise the hours. Rolling replaces, so rolling a day
/// or hour again is harmless.
pub async fn roll_closed(
    conn: &mut SqliteConnection,
    now: Timestamp,
    earliest: Timestamp,
) -> sqlx::Result<()> {
    let c = closed(&mut *conn).await?;
    let hour = now.start_of_hour();
    let from_hour = c.hours_before.min(earliest.start_of_hour());
    if from_hour < hour {
        sqlx::query!(
            r#"INSERT INTO request_rollup_hour_users (hour, users)
               SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'),
                      count(DISTINCT user_id)
               FROM request_log
               WHERE at_ms >= ?1 AND at_ms < ?2 AND user_id IS NOT NULL AND source = 'api'
               GROUP BY 1
               ON CONFLICT (hour) DO UPDATE SET users = excluded.users"#,
            from_hour.unix_ms(),
            hour.unix_ms()
        )
        .execute(&mut *conn)
        .await?;
    }
    let today = now.date();
    let from_day = c.days_before.min(earliest.date());
    if from_day < today {
        reroll_days(&mut *conn, from_day, today).await?;
    }
    if from_hour < hour || from_day < today {
        let hours_before = c.hours_before.max(hour);
        let days_before = c.days_before.max(today);
        sqlx::query!(
            "UPDATE rollup_closed SET days_before = ?, hours_before = ? WHERE id = 1",
            days_before,
            hours_before
        )
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Replaces the daily roll-ups (totals and buckets) of the days `[from,
/// to)` with the sums of their hourly ones.
pub async fn reroll_days(
    conn: &mut SqliteConnection,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM request_rollup_daily_buckets WHERE day >= ? AND day < ?",
        from,
        to
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "DELETE FROM request_rollup_daily WHERE day >= ? AND day < ?",
        from,
        to
    )
    .execute(&mut *conn)
    .await?;
    // `hour < to` holds for every hour of the day before `to` ('...T23' <
    // 'YYYY-MM-DD' of the next day) and none of that day.
    sqlx::query!(
        r#"INSERT INTO request_rollup_daily_buckets (day, route, method, source, bucket, count)
           SELECT substr(hour, 1, 10), route, method, source, bucket, sum(count)
           FROM request_rollup_buckets
           WHERE hour >= ?1 AND hour < ?2
           GROUP BY 1, route, method, source, bucket"#,
        from,
        to
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        r#"INSERT INTO request_rollup_daily (day, route, method, status, source, requests,
               total_ms, max_ms, bytes_in, bytes_out)
           SELECT substr(hour, 1, 10), route, method, status, source, sum(requests),
                  sum(total_ms), max(max_ms), sum(bytes_in), sum(bytes_out)
           FROM request_rollups
           WHERE hour >= ?1 AND hour < ?2
           GROUP BY 1, route, method, status, source"#,
        from,
        to
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The whole days of `[from_hour, to)` that the daily table answers (closed
/// ones), as `[first, end)`, or `None`.
pub fn daily_span(
    from_hour: Timestamp,
    to: Option<Timestamp>,
    days_before: NaiveDate,
) -> Option<(NaiveDate, NaiveDate)> {
    let first = if from_hour == from_hour.start_of_day() {
        from_hour.date()
    } else {
        from_hour.date().succ_opt()?
    };
    let end = to.map_or(days_before, |t| t.date().min(days_before));
    (first < end).then_some((first, end))
}

/// Midnight UTC of a day.
pub fn day_start(day: NaiveDate) -> Timestamp {
    Timestamp::from_datetime(day.and_time(chrono::NaiveTime::MIN).and_utc())
}

/// A range of hours `[from_hour, to)` cut for reading: hours `[from_hour,
/// head_end)` and `[tail, to)` from the hourly roll-ups, the closed whole
/// days `[first, end)` between them from the daily ones (the same sums).
#[derive(Debug, Clone, Copy)]
pub struct Split {
    pub from_hour: Timestamp,
    pub head_end: Timestamp,
    pub first: NaiveDate,
    pub end: NaiveDate,
    pub tail: Timestamp,
    pub to: Option<Timestamp>,
}

pub async fn split(
    conn: &mut SqliteConnection,
    from_hour: Timestamp,
    to: Option<Timestamp>,
) -> sqlx::Result<Split> {
    let c = closed(conn).await?;
    let (head_end, first, end, tail) = match daily_span(from_hour, to, c.days_before) {
        Some((first, end)) => (day_start(first), first, end, day_start(end)),
        None => (from_hour, c.days_before, c.days_before, from_hour),
    };
    Ok(Split {
        from_hour,
        head_end,
        first,
        end,
        tail,
        to,
    })
}

/// One route's API roll-up totals: (route, method, requests, server errors,
/// total ms, max ms).
pub type RouteTotals = (String, String, i64, i64, f64, f64);

/// API request totals per route and method over a [`Split`], ordered by
/// route and method.
pub async fn route_totals(conn: &mut SqliteConnection, s: Split) -> sqlx::Result<Vec<RouteTotals>> {
    let rows = sqlx::query!(
        r#"SELECT route AS "route!: String", method AS "method!: String",
                  sum(requests) AS "requests!: i64",
                  sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS "server_errors!: i64",
                  sum(total_ms) AS "total_ms!: f64", max(max_ms) AS "max_ms!: f64"
           FROM (
               SELECT route, method, status, requests, total_ms, max_ms FROM request_rollups
               WHERE hour >= ?1 AND hour < ?2 AND source = 'api'
               UNION ALL
               SELECT route, method, status, requests, total_ms, max_ms FROM request_rollup_daily
               WHERE day >= ?3 AND day < ?4 AND source = 'api'
               UNION ALL
               SELECT route, method, status, requests, total_ms, max_ms FROM request_rollups
               WHERE hour >= ?5 AND (?6 IS NULL OR hour < ?6) AND source = 'api'
           )
           GROUP BY route, method
           ORDER BY route, method"#,
        s.from_hour,
        s.head_end,
        s.first,
        s.end,
        s.tail,
        s.to
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            (
                r.route,
                r.method,
                r.requests,
                r.server_errors,
                r.total_ms,
                r.max_ms,
            )
        })
        .collect())
}

/// API latency bucket counts per route and method over a [`Split`]:
/// (route, method, bucket, count).
pub async fn route_buckets(
    conn: &mut SqliteConnection,
    s: Split,
) -> sqlx::Result<Vec<(String, String, usize, u64)>> {
    let rows = sqlx::query!(
        r#"SELECT route AS "route!: String", method AS "method!: String",
                  bucket AS "bucket!: i64", sum(n) AS "count!: i64"
           FROM (
               SELECT route, method, bucket, count AS n FROM request_rollup_buckets
               WHERE hour >= ?1 AND hour < ?2 AND source = 'api'
               UNION ALL
               SELECT route, method, bucket, count FROM request_rollup_daily_buckets
               WHERE day >= ?3 AND day < ?4 AND source = 'api'
               UNION ALL
               SELECT route, method, bucket, count FROM request_rollup_buckets
               WHERE hour >= ?5 AND (?6 IS NULL OR hour < ?6) AND source = 'api'
           )
           GROUP BY route, method, bucket"#,
        s.from_hour,
        s.head_end,
        s.first,
        s.end,
        s.tail,
        s.to
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let n = r.count.max(0) as u64;
            (r.route, r.method, r.bucket.max(0) as usize, n)
        })
        .collect())
}

/// API request totals per step, optionally of one method and route
/// template: per day from the daily roll-ups for the closed days of `daily`
/// (`[first, end)`), per hour from the hourly ones from `hours_from`:
/// (day or hour, requests, server errors, total ms, max ms).
pub async fn step_totals(
    conn: &mut SqliteConnection,
    daily: (NaiveDate, NaiveDate),
    hours_from: Timestamp,
    method: Option<&str>,
    route: Option<&str>,
) -> sqlx::Result<Vec<(Timestamp, i64, i64, f64, f64)>> {
    let rows = sqlx::query!(
        r#"SELECT at AS "at!: Timestamp", sum(requests) AS "requests!: i64",
                  sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS "server_errors!: i64",
                  sum(total_ms) AS "total_ms!: f64", max(max_ms) AS "max_ms!: f64"
           FROM (
               SELECT day || 'T00:00:00.000Z' AS at, status, requests, total_ms, max_ms
               FROM request_rollup_daily
               WHERE day >= ?1 AND day < ?2 AND source = 'api'
                 AND (?3 IS NULL OR method = ?3) AND (?4 IS NULL OR route = ?4)
               UNION ALL
               SELECT hour, status, requests, total_ms, max_ms FROM request_rollups
               WHERE hour >= ?5 AND source = 'api'
                 AND (?3 IS NULL OR method = ?3) AND (?4 IS NULL OR route = ?4)
           )
           GROUP BY at"#,
        daily.0,
        daily.1,
        method,
        route,
        hours_from
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.at, r.requests, r.server_errors, r.total_ms, r.max_ms))
        .collect())
}

/// API latency bucket counts per step from `from_hour`, optionally of one
/// method and route template: per day from the daily table for the closed
/// days of `daily` (`[first, end)`), per hour from the hourly roll-ups from
/// `hours_from`: (day or hour, bucket, count).
pub async fn step_buckets(
    conn: &mut SqliteConnection,
    daily: (NaiveDate, NaiveDate),
    hours_from: Timestamp,
    method: Option<&str>,
    route: Option<&str>,
) -> sqlx::Result<Vec<(Timestamp, usize, u64)>> {
    let rows = sqlx::query!(
        r#"SELECT at AS "at!: Timestamp", bucket AS "bucket!: i64", sum(n) AS "count!: i64"
           FROM (
               SELECT day || 'T00:00:00.000Z' AS at, bucket, count AS n
               FROM request_rollup_daily_buckets
               WHERE day >= ?1 AND day < ?2 AND source = 'api'
                 AND (?3 IS NULL OR method = ?3) AND (?4 IS NULL OR route = ?4)
               UNION ALL
               SELECT hour, bucket, count FROM request_rollup_buckets
               WHERE hour >= ?5 AND source = 'api'
                 AND (?3 IS NULL OR method = ?3) AND (?4 IS NULL OR route = ?4)
           )
           GROUP BY at, bucket"#,
        daily.0,
        daily.1,
        method,
        route,
        hours_from
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.at, r.bucket.max(0) as usize, r.count.max(0) as u64))
        .collect())
}

/// Distinct authenticated users of api traffic per closed hour in
/// `[from_hour, to_hour)`: (hour, users).
pub async fn hour_users(
    conn: &mut SqliteConnection,
    from_hour: Timestamp,
    to_hour: Timestamp,
) -> sqlx::Result<Vec<(Timestamp, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT hour AS "hour!: Timestamp", users AS "users!: i64"
           FROM request_rollup_hour_users WHERE hour >= ?1 AND hour < ?2"#,
        from_hour,
        to_hour
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.hour, r.users)).collect())
}
