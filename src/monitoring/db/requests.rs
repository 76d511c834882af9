//! The request log: batched inserts, hourly roll-ups, daily activity, and
//! the queries that read them.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use chrono::NaiveDate;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use crate::ids::UserId;
use crate::monitoring::latency::Histogram;
use crate::monitoring::model::{LogEntry, RequestRecord};
use crate::time::Timestamp;

/// Rows per multi-row INSERT: fewer rows cost more per row, more gain little
/// (bench/sqlite/insert_floor.sh).
pub(super) const CHUNK: usize = 100;

const REQUEST_COLUMNS: usize = 13;

/// `INSERT INTO request_log ... VALUES (...), ...` for `rows` rows.
fn insert_requests_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; REQUEST_COLUMNS].join(", "));
    format!(
        "INSERT INTO request_log (at_ms, method, route, status, duration_ms, bytes_in, bytes_out, \
         user_id, client_ip, user_agent, request_id, source, loadtest_id) VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Inserts request rows inside the caller's transaction, in multi-row
/// INSERTs of [`CHUNK`] rows: the full-size statement stays prepared on the
/// connection (sqlx's statement cache), the remainder of a batch is
/// prepared once. Texts that repeat within a batch (client address, user,
/// agent, route, method, source) are bound as one shared string each, so
/// that sqlx's copy of a bound value is made once per distinct value.
pub async fn insert_requests(
    conn: &mut SqliteConnection,
    requests: &[&RequestRecord],
) -> sqlx::Result<()> {
    static FULL: LazyLock<String> = LazyLock::new(|| insert_requests_sql(CHUNK));
    let mut texts = SharedTexts::default();
    let mut ips: foldhash::HashMap<IpAddr, Arc<str>> = foldhash::HashMap::default();
    for chunk in requests.chunks(CHUNK) {
        let mut query = if chunk.len() == CHUNK {
            sqlx::query(FULL.as_str())
        } else {
            // Only the row count varies: the text is built here, not taken
            // from input.
            sqlx::query(sqlx::AssertSqlSafe(insert_requests_sql(chunk.len()))).persistent(false)
        };
        for r in chunk {
            let ip = r
                .client_ip
                .map(|ip| Arc::clone(ips.entry(ip).or_insert_with(|| ip.to_string().into())));
            query = query
                .bind(r.at.unix_ms())
                .bind(texts.get(r.method))
                .bind(Arc::clone(&r.route))
                .bind(i64::from(r.status))
                .bind(r.duration_ms)
                .bind(r.bytes_in)
                .bind(r.bytes_out)
                .bind(r.user_id.as_deref().map(|u| texts.get(u)))
                .bind(ip)
                .bind(r.user_agent.as_deref().map(|a| texts.get(a)))
                .bind(r.request_id.as_deref().map(Arc::<str>::from))
                .bind(texts.get(r.source()))
                .bind(r.loadtest_id.as_deref().map(|l| texts.get(l)));
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// One shared copy of each distinct text of a batch.
#[derive(Default)]
struct SharedTexts<'a>(foldhash::HashMap<&'a str, Arc<str>>);

impl<'a> SharedTexts<'a> {
    fn get(&mut self, text: &'a str) -> Arc<str> {
        Arc::clone(self.0.entry(text).or_insert_with(|| text.into()))
    }
}

/// One hourly aggregate to add to `request_rollups`.
#[derive(Debug, Default, Clone)]
pub struct RollupDelta {
    pub requests: i64,
    pub total_ms: f64,
    pub max_ms: f64,
    pub bytes_in: i64,
    pub bytes_out: i64,
}

/// (hour, route, method, status, source)
pub type RollupKey = (Timestamp, String, &'static str, u16, &'static str);

/// (hour, route, method, source, bucket of [`crate::monitoring::latency`])
pub type BucketKey = (Timestamp, String, &'static str, &'static str, usize);

/// Adds aggregates to the hourly roll-ups.
pub async fn add_rollups(
    conn: &mut SqliteConnection,
    rows: &[(RollupKey, RollupDelta)],
) -> sqlx::Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO request_rollups (hour, route, method, status, source, requests, \
             total_ms, max_ms, bytes_in, bytes_out) ",
        );
        qb.push_values(
            chunk,
            |mut b, ((hour, route, method, status, source), d)| {
                b.push_bind(hour)
                    .push_bind(route)
                    .push_bind(*method)
                    .push_bind(i64::from(*status))
                    .push_bind(*source)
                    .push_bind(d.requests)
                    .push_bind(d.total_ms)
                    .push_bind(d.max_ms)
                    .push_bind(d.bytes_in)
                    .push_bind(d.bytes_out);
            },
        );
        qb.push(
            " ON CONFLICT (hour, route, method, status, source) DO UPDATE SET \
             requests = requests + excluded.requests, total_ms = total_ms + excluded.total_ms, \
             max_ms = max(max_ms, excluded.max_ms), bytes_in = bytes_in + excluded.bytes_in, \
             bytes_out = bytes_out + excluded.bytes_out",
        );
        // Sizes vary from batch to batch: not worth caching.
        qb.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Adds latency bucket counts to the hourly roll-ups' histograms.
pub async fn add_rollup_buckets(
    conn: &mut SqliteConnection,
    rows: &[(BucketKey, i64)],
) -> sqlx::Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO request_rollup_buckets (hour, route, method, source, bucket, count) ",
        );
        qb.push_values(
            chunk,
            |mut b, ((hour, route, method, source, bucket), n)| {
                b.push_bind(hour)
                    .push_bind(route)
                    .push_bind(*method)
                    .push_bind(*source)
                    .push_bind(*bucket as i64)
                    .push_bind(*n);
            },
        );
        qb.push(
            " ON CONFLICT (hour, route, method, source, bucket) DO UPDATE SET \
             count = count + excluded.count",
        );
        qb.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Adds authenticated requests per (day, user).
pub async fn add_activity(
    conn: &mut SqliteConnection,
    rows: &[((NaiveDate, String), i64)],
) -> sqlx::Result<()> {
    for chunk in rows.chunks(CHUNK) {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO user_activity (day, user_id, requests) ");
        qb.push_values(chunk, |mut b, ((day, user), n)| {
            b.push_bind(day).push_bind(user).push_bind(*n);
        });
        qb.push(
            " ON CONFLICT (day, user_id) DO UPDATE SET requests = requests + excluded.requests",
        );
        qb.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes a user's activity rows (a load test's throwaway account).
pub async fn delete_activity(conn: &mut SqliteConnection, user_id: &UserId) -> sqlx::Result<u64> {
    let r = sqlx::query!("DELETE FROM user_activity WHERE user_id = ?", user_id)
        .execute(conn)
        .await?;
    Ok(r.rows_affected())
}

/// Filters of the request log, already parsed.
#[derive(Debug, Default)]
pub struct LogFilter {
    /// Unix milliseconds, inclusive.
    pub from_ms: Option<i64>,
    /// Unix milliseconds, exclusive.
    pub to_ms: Option<i64>,
    pub status: Option<i64>,
    /// Inclusive status range of a class (400..=499).
    pub status_range: Option<(i64, i64)>,
    pub route: Option<String>,
    pub method: Option<String>,
    pub user_id: Option<UserId>,
    pub min_duration_ms: Option<f64>,
    pub source: Option<String>,
    pub request_id: Option<String>,
    pub before_id: Option<i64>,
    pub limit: i64,
}

/// The request log, newest first, with dynamic filters.
pub async fn list_logs(conn: &mut SqliteConnection, f: &LogFilter) -> sqlx::Result<Vec<LogEntry>> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "SELECT id, at_ms, method, route, status, duration_ms, bytes_in, bytes_out, user_id, \
         client_ip, user_agent, request_id, source, loadtest_id FROM request_log WHERE 1 = 1",
    );
    if let Some(v) = f.from_ms {
        qb.push(" AND at_ms >= ").push_bind(v);
    }
    if let Some(v) = f.to_ms {
        qb.push(" AND at_ms < ").push_bind(v);
    }
    if let Some(v) = f.status {
        qb.push(" AND status = ").push_bind(v);
    }
    if let Some((lo, hi)) = f.status_range {
        qb.push(" AND status BETWEEN ")
            .push_bind(lo)
            .push(" AND ")
            .push_bind(hi);
    }
    if let Some(v) = &f.route {
        qb.push(" AND route = ").push_bind(v);
    }
    if let Some(v) = &f.method {
        qb.push(" AND method = ").push_bind(v);
    }
    if let Some(v) = &f.user_id {
        qb.push(" AND user_id = ").push_bind(v);
    }
    if let Some(v) = f.min_duration_ms {
        qb.push(" AND duration_ms >= ").push_bind(v);
    }
    if let Some(v) = &f.source {
        qb.push(" AND source = ").push_bind(v);
    }
    if let Some(v) = &f.request_id {
        qb.push(" AND request_id = ").push_bind(v);
    }
    if let Some(v) = f.before_id {
        qb.push(" AND id < ").push_bind(v);
    }
    qb.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit + 1);
    qb.build_query_as::<LogRow>()
        .fetch_all(conn)
        .await
        .map(|rows| rows.into_iter().map(Into::into).collect())
}

#[derive(sqlx::FromRow)]
struct LogRow {
    id: i64,
    at_ms: i64,
    method: String,
    route: String,
    status: i64,
    duration_ms: f64,
    bytes_in: Option<i64>,
    bytes_out: Option<i64>,
    user_id: Option<UserId>,
    client_ip: Option<String>,
    user_agent: Option<String>,
    request_id: Option<String>,
    source: String,
    loadtest_id: Option<String>,
}

impl From<LogRow> for LogEntry {
    fn from(r: LogRow) -> Self {
        LogEntry {
            id: r.id,
            at: Timestamp::from_unix_ms(r.at_ms).unwrap_or(Timestamp::UNIX_EPOCH),
            method: r.method,
            route: r.route,
            status: r.status,
            duration_ms: r.duration_ms,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            user_id: r.user_id,
            client_ip: r.client_ip,
            user_agent: r.user_agent,
            request_id: r.request_id,
            source: r.source,
            loadtest_id: r.loadtest_id,
        }
    }
}

/// Per-route aggregates of the roll-ups from `from_hour` (inclusive).
pub struct RouteRollup {
    pub route: String,
    pub method: String,
    pub server_errors: i64,
    /// Requests, total and maximum latency, and the latency buckets.
    pub hist: Histogram,
}

/// API request roll-ups per route from `from_hour` (inclusive) to `to`
/// (exclusive; open-ended when `None`): closed whole days from the daily
/// roll-ups, the hours around them from the hourly ones.
pub async fn rollups_by_route(
    conn: &mut SqliteConnection,
    from_hour: Timestamp,
    to: Option<Timestamp>,
) -> sqlx::Result<Vec<RouteRollup>> {
    let split = super::split(&mut *conn, from_hour, to).await?;
    let rows = super::route_totals(&mut *conn, split).await?;
    let buckets = super::route_buckets(&mut *conn, split).await?;
    let mut out: Vec<RouteRollup> = rows
        .into_iter()
        .map(
            |(route, method, requests, server_errors, total_ms, max_ms)| {
                let mut hist = Histogram::default();
                hist.add_totals(requests.max(0) as u64, total_ms, max_ms);
                RouteRollup {
                    route,
                    method,
                    server_errors,
                    hist,
                }
            },
        )
        .collect();
    for (route, method, bucket, n) in buckets {
        if let Ok(i) = out.binary_search_by(|r| {
            (r.route.as_str(), r.method.as_str()).cmp(&(route.as_str(), method.as_str()))
        }) {
            out[i].hist.add_bucket(bucket, n);
        }
    }
    Ok(out)
}

/// Distinct authenticated users per step of `step_ms` from `from_ms` (Unix
/// ms), from the raw request log: (step start in Unix ms, users).
pub async fn active_users_per_step(
    conn: &mut SqliteConnection,
    from_ms: i64,
    step_ms: i64,
    method: Option<&str>,
    route: Option<&str>,
) -> sqlx::Result<Vec<(i64, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT (at_ms - ?1) / ?2 AS "step!: i64", count(DISTINCT user_id) AS "users!: i64"
           FROM request_log
           WHERE at_ms >= ?1 AND user_id IS NOT NULL AND source = 'api'
             AND (?3 IS NULL OR method = ?3) AND (?4 IS NULL OR route = ?4)
           GROUP BY 1"#,
        from_ms,
        step_ms,
        method,
        route
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| (from_ms + r.step * step_ms, r.users))
        .collect())
}

/// Distinct authenticated users per UTC day from `from_day` (inclusive),
/// from `user_activity`.
pub async fn active_users_per_day(
    conn: &mut SqliteConnection,
    from_day: NaiveDate,
) -> sqlx::Result<Vec<(NaiveDate, i64)>> {
    let rows = sqlx::query!(
        r#"SELECT day AS "day!: NaiveDate", count(*) AS "users!: i64"
           FROM user_activity WHERE day >= ?1
           GROUP BY day"#,
        from_day
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.day, r.users)).collect())
}
