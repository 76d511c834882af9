//! Every SQL statement of the monitoring domain.

use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use chrono::NaiveDate;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::model::{
    Alert, ErrorEvent, ErrorGroup, ErrorRecord, LogEntry, ROLLUP_BUCKETS, RequestRecord,
};
use crate::ids::UserId;
use crate::time::Timestamp;

/// Rows per multi-row INSERT: fewer rows cost more per row, more gain little
/// (bench/sqlite/insert_floor.sh).
const CHUNK: usize = 100;

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
    pub buckets: [i64; ROLLUP_BUCKETS],
}

/// (hour, route, method, status, source)
pub type RollupKey = (Timestamp, String, &'static str, u16, &'static str);

/// Adds aggregates to the hourly roll-ups.
pub async fn add_rollups(
    conn: &mut SqliteConnection,
    rows: &[(RollupKey, RollupDelta)],
) -> sqlx::Result<()> {
    for chunk in rows.chunks(100) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO request_rollups (hour, route, method, status, source, requests, \
             total_ms, max_ms, bytes_in, bytes_out, le_1, le_2_5, le_5, le_10, le_25, le_50, \
             le_100, le_250, le_500, le_1000, le_2500, le_5000, le_10000, le_inf) ",
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
                for c in d.buckets {
                    b.push_bind(c);
                }
            },
        );
        qb.push(
            " ON CONFLICT (hour, route, method, status, source) DO UPDATE SET \
             requests = requests + excluded.requests, total_ms = total_ms + excluded.total_ms, \
             max_ms = max(max_ms, excluded.max_ms), bytes_in = bytes_in + excluded.bytes_in, \
             bytes_out = bytes_out + excluded.bytes_out, \
             le_1 = le_1 + excluded.le_1, le_2_5 = le_2_5 + excluded.le_2_5, \
             le_5 = le_5 + excluded.le_5, le_10 = le_10 + excluded.le_10, \
             le_25 = le_25 + excluded.le_25, le_50 = le_50 + excluded.le_50, \
             le_100 = le_100 + excluded.le_100, le_250 = le_250 + excluded.le_250, \
             le_500 = le_500 + excluded.le_500, le_1000 = le_1000 + excluded.le_1000, \
             le_2500 = le_2500 + excluded.le_2500, le_5000 = le_5000 + excluded.le_5000, \
             le_10000 = le_10000 + excluded.le_10000, le_inf = le_inf + excluded.le_inf",
        );
        // Sizes vary from batch to batch: not worth caching.
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

/// Records one occurrence of an error in its group.
pub async fn add_error(conn: &mut SqliteConnection, e: &ErrorRecord) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO error_groups (fingerprint, kind, location, message, count, first_seen,
                                     last_seen, last_request_id, last_context)
           VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5, ?6, ?7)
           ON CONFLICT (fingerprint) DO UPDATE SET
               message = excluded.message, count = count + 1, last_seen = excluded.last_seen,
               last_request_id = excluded.last_request_id, last_context = excluded.last_context"#,
        e.fingerprint,
        e.kind,
        e.location,
        e.message,
        e.at,
        e.request_id,
        e.context
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!(
        "INSERT INTO error_events (fingerprint, at, message, context, request_id)
         VALUES (?, ?, ?, ?, ?)",
        e.fingerprint,
        e.at,
        e.message,
        e.context,
        e.request_id
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
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

struct GroupRow {
    fingerprint: String,
    kind: String,
    location: String,
    message: String,
    count: i64,
    first_seen: Timestamp,
    last_seen: Timestamp,
    last_request_id: Option<String>,
    last_context: String,
}

impl From<GroupRow> for ErrorGroup {
    fn from(r: GroupRow) -> Self {
        ErrorGroup {
            fingerprint: r.fingerprint,
            kind: r.kind,
            location: r.location,
            message: r.message,
            count: r.count,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            last_request_id: r.last_request_id,
            last_context: serde_json::from_str(&r.last_context).unwrap_or_default(),
            events: None,
        }
    }
}

/// Error groups, most recently seen first. The cursor is
/// (last_seen, fingerprint) of the previous page's last item.
#[allow(clippy::too_many_arguments)]
pub async fn list_error_groups(
    conn: &mut SqliteConnection,
    kind: Option<&str>,
    since: Option<Timestamp>,
    fingerprint: Option<&str>,
    cursor: Option<(Timestamp, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<ErrorGroup>> {
    let (c_seen, c_fp) = match cursor {
        Some((s, f)) => (Some(s), Some(f)),
        None => (None, None),
    };
    let limit = limit + 1;
    let rows = sqlx::query_as!(
        GroupRow,
        r#"SELECT fingerprint AS "fingerprint!", kind, location, message, count,
                  first_seen AS "first_seen: Timestamp", last_seen AS "last_seen: Timestamp",
                  last_request_id, last_context
           FROM error_groups
           WHERE (?1 IS NULL OR kind = ?1)
             AND (?2 IS NULL OR last_seen >= ?2)
             AND (?3 IS NULL OR fingerprint = ?3)
             AND (?4 IS NULL OR last_seen < ?4 OR (last_seen = ?4 AND fingerprint > ?5))
           ORDER BY last_seen DESC, fingerprint
           LIMIT ?6"#,
        kind,
        since,
        fingerprint,
        c_seen,
        c_fp,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub async fn recent_error_events(
    conn: &mut SqliteConnection,
    fingerprint: &str,
    limit: i64,
) -> sqlx::Result<Vec<ErrorEvent>> {
    let rows = sqlx::query!(
        r#"SELECT at AS "at: Timestamp", message, context, request_id FROM error_events
           WHERE fingerprint = ? ORDER BY id DESC LIMIT ?"#,
        fingerprint,
        limit
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ErrorEvent {
            at: r.at,
            message: r.message,
            context: serde_json::from_str(&r.context).unwrap_or_default(),
            request_id: r.request_id,
        })
        .collect())
}

/// Per-route aggregates of the roll-ups from `from_hour` (inclusive).
pub struct RouteRollup {
    pub route: String,
    pub method: String,
    pub requests: i64,
    pub server_errors: i64,
    pub total_ms: f64,
    pub max_ms: f64,
    pub buckets: [i64; ROLLUP_BUCKETS],
}

/// API request roll-ups per route from `from_hour` (inclusive) to `to`
/// (exclusive; open-ended when `None`).
pub async fn rollups_by_route(
    conn: &mut SqliteConnection,
    from_hour: Timestamp,
    to: Option<Timestamp>,
) -> sqlx::Result<Vec<RouteRollup>> {
    let rows = sqlx::query!(
        r#"SELECT route AS "route!: String", method AS "method!: String",
                  sum(requests) AS "requests!: i64",
                  sum(CASE WHEN status >= 500 THEN requests ELSE 0 END) AS "server_errors!: i64",
                  sum(total_ms) AS "total_ms!: f64", max(max_ms) AS "max_ms!: f64",
                  sum(le_1) AS "le_1!: i64", sum(le_2_5) AS "le_2_5!: i64",
                  sum(le_5) AS "le_5!: i64", sum(le_10) AS "le_10!: i64",
                  sum(le_25) AS "le_25!: i64", sum(le_50) AS "le_50!: i64",
                  sum(le_100) AS "le_100!: i64", sum(le_250) AS "le_250!: i64",
                  sum(le_500) AS "le_500!: i64", sum(le_1000) AS "le_1000!: i64",
                  sum(le_2500) AS "le_2500!: i64", sum(le_5000) AS "le_5000!: i64",
                  sum(le_10000) AS "le_10000!: i64", sum(le_inf) AS "le_inf!: i64"
           FROM request_rollups
           WHERE hour >= ?1 AND (?2 IS NULL OR hour < ?2) AND source = 'api'
           GROUP BY route, method"#,
        from_hour,
        to
    )
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| RouteRollup {
            route: r.route,
            method: r.method,
            requests: r.requests,
            server_errors: r.server_errors,
            total_ms: r.total_ms,
            max_ms: r.max_ms,
            buckets: [
                r.le_1, r.le_2_5, r.le_5, r.le_10, r.le_25, r.le_50, r.le_100, r.le_250, r.le_500,
                r.le_1000, r.le_2500, r.le_5000, r.le_10000, r.le_inf,
            ],
        })
        .collect())
}

// --- retention ---------------------------------------------------------------

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
               max_ms, bytes_in, bytes_out, le_1, le_2_5, le_5, le_10, le_25, le_50, le_100,
               le_250, le_500, le_1000, le_2500, le_5000, le_10000, le_inf)
           SELECT strftime('%Y-%m-%dT%H:00:00.000Z', at_ms / 1000, 'unixepoch'), route, method, status, source, count(*),
                  sum(duration_ms), max(duration_ms), coalesce(sum(bytes_in), 0),
                  coalesce(sum(bytes_out), 0),
                  sum(duration_ms <= 1),
                  sum(duration_ms > 1 AND duration_ms <= 2.5),
                  sum(duration_ms > 2.5 AND duration_ms <= 5),
                  sum(duration_ms > 5 AND duration_ms <= 10),
                  sum(duration_ms > 10 AND duration_ms <= 25),
                  sum(duration_ms > 25 AND duration_ms <= 50),
                  sum(duration_ms > 50 AND duration_ms <= 100),
                  sum(duration_ms > 100 AND duration_ms <= 250),
                  sum(duration_ms > 250 AND duration_ms <= 500),
                  sum(duration_ms > 500 AND duration_ms <= 1000),
                  sum(duration_ms > 1000 AND duration_ms <= 2500),
                  sum(duration_ms > 2500 AND duration_ms <= 5000),
                  sum(duration_ms > 5000 AND duration_ms <= 10000),
                  sum(duration_ms > 10000)
           FROM request_log
           WHERE at_ms < ?1
           GROUP BY 1, route, method, status, source
           ON CONFLICT (hour, route, method, status, source) DO UPDATE SET
               requests = excluded.requests, total_ms = excluded.total_ms,
               max_ms = excluded.max_ms, bytes_in = excluded.bytes_in,
               bytes_out = excluded.bytes_out, le_1 = excluded.le_1, le_2_5 = excluded.le_2_5,
               le_5 = excluded.le_5, le_10 = excluded.le_10, le_25 = excluded.le_25,
               le_50 = excluded.le_50, le_100 = excluded.le_100, le_250 = excluded.le_250,
               le_500 = excluded.le_500, le_1000 = excluded.le_1000,
               le_2500 = excluded.le_2500, le_5000 = excluded.le_5000,
               le_10000 = excluded.le_10000, le_inf = excluded.le_inf"#,
        before_ms
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
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
             (SELECT id FROM request_log WHERE at_ms < ? ORDER BY at_ms LIMIT ?)",
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

// --- alerts ------------------------------------------------------------------

pub async fn insert_alert(conn: &mut SqliteConnection, a: &Alert) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO alerts (id, rule, status, value, last_value, threshold, message, fired_at)
         VALUES (?, ?, 'firing', ?, ?, ?, ?, ?)",
        a.id,
        a.rule,
        a.value,
        a.last_value,
        a.threshold,
        a.message,
        a.fired_at
    )
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn resolve_alert(
    conn: &mut SqliteConnection,
    id: &str,
    last_value: f64,
    at: Timestamp,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE alerts SET status = 'resolved', last_value = ?, resolved_at = ? WHERE id = ?",
        last_value,
        at,
        id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn update_alert_value(
    conn: &mut SqliteConnection,
    id: &str,
    last_value: f64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE alerts SET last_value = ? WHERE id = ?",
        last_value,
        id
    )
    .execute(conn)
    .await
    .map(|_| ())
}

pub async fn firing_alerts(conn: &mut SqliteConnection) -> sqlx::Result<Vec<Alert>> {
    sqlx::query_as!(
        Alert,
        r#"SELECT id AS "id!", rule, status, value, last_value, threshold, message,
                  fired_at AS "fired_at: Timestamp", resolved_at AS "resolved_at?: Timestamp"
           FROM alerts WHERE status = 'firing' ORDER BY fired_at DESC"#
    )
    .fetch_all(conn)
    .await
}

pub async fn recent_alerts(conn: &mut SqliteConnection, limit: i64) -> sqlx::Result<Vec<Alert>> {
    sqlx::query_as!(
        Alert,
        r#"SELECT id AS "id!", rule, status, value, last_value, threshold, message,
                  fired_at AS "fired_at: Timestamp", resolved_at AS "resolved_at?: Timestamp"
           FROM alerts ORDER BY fired_at DESC, id DESC LIMIT ?"#,
        limit
    )
    .fetch_all(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::monitoring::model::ShortStr;
    use sqlx::Connection;

    async fn migrated() -> (tempfile::TempDir, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(dir.path().join("t.db"))
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        crate::db::MIGRATOR.run(&mut conn).await.unwrap();
        (dir, conn)
    }

    fn record(i: usize) -> RequestRecord {
        RequestRecord {
            at: Timestamp::from_unix_ms(1_795_000_000_000 + i as i64).unwrap(),
            method: if i.is_multiple_of(2) { "GET" } else { "POST" },
            route: format!("/r/{}", i % 3).into(),
            status: 200 + (i % 5) as u16,
            duration_ms: i as f64 / 8.0,
            bytes_in: (i.is_multiple_of(4)).then_some(i as i64),
            bytes_out: Some(1000 + i as i64),
            user_id: (i.is_multiple_of(3)).then(|| ShortStr::new(&format!("user-{i}"))),
            client_ip: Some(format!("203.0.113.{}", i % 7).parse().unwrap()),
            user_agent: (i % 2 == 1).then(|| format!("agent {i}")),
            request_id: Some(ShortStr::new(&format!("req-{i}-{}", "x".repeat(i % 50)))),
            loadtest_id: (i.is_multiple_of(10)).then(|| format!("lt{i}")),
        }
    }

    #[tokio::test]
    async fn inserts_store_every_value_of_full_and_partial_chunks() {
        let (_dir, mut conn) = migrated().await;
        // Two full statements and a remainder.
        let records: Vec<RequestRecord> = (0..2 * CHUNK + 37).map(record).collect();
        let refs: Vec<&RequestRecord> = records.iter().collect();
        insert_requests(&mut conn, &refs).await.unwrap();
        type Row = (
            i64,
            String,
            String,
            i64,
            f64,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
            String,
            Option<String>,
        );
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT at_ms, method, route, status, duration_ms, bytes_in, bytes_out, user_id, \
             client_ip, user_agent, request_id, source, loadtest_id FROM request_log ORDER BY id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(rows.len(), records.len());
        for (row, r) in rows.iter().zip(&records) {
            let (at_ms, method, route, status, duration_ms, bytes_in, bytes_out) =
                (&row.0, &row.1, &row.2, &row.3, &row.4, &row.5, &row.6);
            assert_eq!(
                (at_ms, method.as_str(), route.as_str(), status),
                (&r.at.unix_ms(), r.method, &*r.route, &i64::from(r.status))
            );
            assert_eq!(
                (duration_ms, bytes_in, bytes_out),
                (&r.duration_ms, &r.bytes_in, &r.bytes_out)
            );
            assert_eq!(
                (
                    row.7.as_deref(),
                    row.8.clone(),
                    row.9.as_deref(),
                    row.10.as_deref(),
                    row.11.as_str(),
                    row.12.as_deref()
                ),
                (
                    r.user_id.as_deref(),
                    r.client_ip.map(|ip| ip.to_string()),
                    r.user_agent.as_deref(),
                    r.request_id.as_deref(),
                    r.source(),
                    r.loadtest_id.as_deref()
                )
            );
        }
    }
}
