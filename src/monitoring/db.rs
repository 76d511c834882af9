//! Every SQL statement of the monitoring domain.

use std::ffi::{c_char, c_int};
use std::net::IpAddr;
use std::ptr::NonNull;
use std::sync::LazyLock;

use libsqlite3_sys as ffi;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::model::{
    Alert, ErrorEvent, ErrorGroup, ErrorRecord, LogEntry, ROLLUP_BUCKETS, RequestRecord,
};

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

/// Inserts request rows, in multi-row INSERTs, through SQLite's C API on
/// `db`: the writer connection's handle, locked by the caller for the
/// duration of the call, inside the caller's transaction.
///
/// Not through sqlx, because the request log is the one statement run once
/// per HTTP request: sqlx copies every bound string into an allocation of
/// its own and hands each statement to its connection thread, which cost
/// about as much as SQLite's own insert work. Here the values are bound in
/// place (`SQLITE_STATIC`: SQLite reads them from the records while it
/// steps) and the full-size statement is prepared once per batch.
pub fn insert_requests(
    db: NonNull<ffi::sqlite3>,
    requests: &[&RequestRecord],
) -> anyhow::Result<()> {
    // Each distinct client address of the batch as text, once.
    let mut ips: foldhash::HashMap<IpAddr, String> = foldhash::HashMap::default();
    for r in requests {
        if let Some(ip) = r.client_ip {
            ips.entry(ip).or_insert_with(|| ip.to_string());
        }
    }
    static FULL: LazyLock<String> = LazyLock::new(|| insert_requests_sql(CHUNK));
    let mut full: Option<RawStatement> = None;
    for chunk in requests.chunks(CHUNK) {
        if chunk.len() == CHUNK {
            let stmt = match full {
                Some(ref stmt) => stmt,
                None => full.insert(RawStatement::prepare(db, &FULL)?),
            };
            insert_chunk(stmt, chunk, &ips)?;
        } else {
            // The remainder, once per batch: not worth keeping prepared.
            let stmt = RawStatement::prepare(db, &insert_requests_sql(chunk.len()))?;
            insert_chunk(&stmt, chunk, &ips)?;
        }
    }
    Ok(())
}

fn insert_chunk(
    stmt: &RawStatement,
    chunk: &[&RequestRecord],
    ips: &foldhash::HashMap<IpAddr, String>,
) -> anyhow::Result<()> {
    let mut i = 0;
    let mut next = || {
        i += 1;
        i
    };
    for r in chunk {
        stmt.int(next(), Some(r.at.timestamp_millis()))?;
        stmt.text(next(), Some(r.method))?;
        stmt.text(next(), Some(&r.route))?;
        stmt.int(next(), Some(i64::from(r.status)))?;
        stmt.double(next(), r.duration_ms)?;
        stmt.int(next(), r.bytes_in)?;
        stmt.int(next(), r.bytes_out)?;
        stmt.text(next(), r.user_id.as_deref())?;
        stmt.text(
            next(),
            r.client_ip.and_then(|ip| ips.get(&ip)).map(String::as_str),
        )?;
        stmt.text(next(), r.user_agent.as_deref())?;
        stmt.text(next(), r.request_id.as_deref())?;
        stmt.text(next(), Some(r.source()))?;
        stmt.text(next(), r.loadtest_id.as_deref())?;
    }
    stmt.execute()
}

/// A statement prepared through SQLite's C API, finalized when dropped. The
/// text it binds must outlive it: see [`RawStatement::text`].
struct RawStatement {
    db: NonNull<ffi::sqlite3>,
    stmt: NonNull<ffi::sqlite3_stmt>,
}

#[allow(unsafe_code)]
impl RawStatement {
    fn prepare(db: NonNull<ffi::sqlite3>, sql: &str) -> anyhow::Result<Self> {
        let len = c_int::try_from(sql.len())?;
        let mut stmt = std::ptr::null_mut();
        // SAFETY: `db` is an open connection that no other thread uses while
        // the caller holds its lock; `sql` is valid for `len` bytes; `stmt`
        // is a valid place for the result.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                db.as_ptr(),
                sql.as_ptr().cast::<c_char>(),
                len,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut stmt,
                std::ptr::null_mut(),
            )
        };
        raw_check(db, rc)?;
        let stmt = NonNull::new(stmt).ok_or_else(|| anyhow::anyhow!("empty SQL statement"))?;
        Ok(Self { db, stmt })
    }

    fn int(&self, index: c_int, value: Option<i64>) -> anyhow::Result<()> {
        // SAFETY: a live statement; SQLite checks the index.
        let rc = unsafe {
            match value {
                Some(v) => ffi::sqlite3_bind_int64(self.stmt.as_ptr(), index, v),
                None => ffi::sqlite3_bind_null(self.stmt.as_ptr(), index),
            }
        };
        raw_check(self.db, rc)
    }

    fn double(&self, index: c_int, value: f64) -> anyhow::Result<()> {
        // SAFETY: a live statement; SQLite checks the index.
        let rc = unsafe { ffi::sqlite3_bind_double(self.stmt.as_ptr(), index, value) };
        raw_check(self.db, rc)
    }

    /// Binds text without copying it: SQLite reads it when the statement
    /// steps, so it must stay alive and unchanged until the statement is
    /// rebound or finalized. Every caller binds from records that outlive
    /// the statement (both live through [`insert_requests`]).
    fn text(&self, index: c_int, value: Option<&str>) -> anyhow::Result<()> {
        let rc = match value {
            Some(v) => {
                let len = c_int::try_from(v.len())?;
                // SAFETY: a live statement; `v` is valid for `len` bytes of
                // UTF-8 and outlives the statement (above).
                unsafe {
                    ffi::sqlite3_bind_text(
                        self.stmt.as_ptr(),
                        index,
                        v.as_ptr().cast::<c_char>(),
                        len,
                        ffi::SQLITE_STATIC(),
                    )
                }
            }
            // SAFETY: a live statement; SQLite checks the index.
            None => unsafe { ffi::sqlite3_bind_null(self.stmt.as_ptr(), index) },
        };
        raw_check(self.db, rc)
    }

    /// Runs a statement that returns no rows, then resets it for reuse.
    fn execute(&self) -> anyhow::Result<()> {
        // SAFETY: a live statement whose parameters are all bound.
        let rc = unsafe { ffi::sqlite3_step(self.stmt.as_ptr()) };
        // SAFETY: a live statement; resetting returns the step's error
        // again, which is already reported below.
        unsafe { ffi::sqlite3_reset(self.stmt.as_ptr()) };
        if rc == ffi::SQLITE_DONE {
            return Ok(());
        }
        raw_check(self.db, rc)?;
        Err(anyhow::anyhow!("unexpected SQLite result {rc}"))
    }
}

#[allow(unsafe_code)]
impl Drop for RawStatement {
    fn drop(&mut self) {
        // SAFETY: finalized once, here; nothing uses the statement after.
        unsafe { ffi::sqlite3_finalize(self.stmt.as_ptr()) };
    }
}

/// `rc` as a result, with SQLite's message for the connection's last error.
#[allow(unsafe_code)]
fn raw_check(db: NonNull<ffi::sqlite3>, rc: c_int) -> anyhow::Result<()> {
    if rc == ffi::SQLITE_OK {
        return Ok(());
    }
    // SAFETY: `db` is open; sqlite3_errmsg returns a NUL-terminated string
    // that stays valid until the next call on the connection, and it is
    // copied at once.
    let message = unsafe { std::ffi::CStr::from_ptr(ffi::sqlite3_errmsg(db.as_ptr())) }
        .to_string_lossy()
        .into_owned();
    Err(anyhow::anyhow!("SQLite error {rc}: {message}"))
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
pub type RollupKey = (String, String, &'static str, u16, &'static str);

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
    rows: &[((String, String), i64)],
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
    pub user_id: Option<String>,
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
    user_id: Option<String>,
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
            at: crate::db::ts(chrono::DateTime::from_timestamp_millis(r.at_ms).unwrap_or_default()),
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
    first_seen: String,
    last_seen: String,
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
    since: Option<&str>,
    fingerprint: Option<&str>,
    cursor: Option<(&str, &str)>,
    limit: i64,
) -> sqlx::Result<Vec<ErrorGroup>> {
    let (c_seen, c_fp) = match cursor {
        Some((s, f)) => (Some(s), Some(f)),
        None => (None, None),
    };
    let limit = limit + 1;
    let rows = sqlx::query_as!(
        GroupRow,
        r#"SELECT fingerprint AS "fingerprint!", kind, location, message, count, first_seen,
                  last_seen, last_request_id, last_context
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
        r#"SELECT at, message, context, request_id FROM error_events
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
    from_hour: &str,
    to: Option<&str>,
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
    before: &str,
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
    before: &str,
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
    before_hour: &str,
    before_day: &str,
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
    before_hour: &str,
    before_day: &str,
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
    at: &str,
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
        r#"SELECT id AS "id!", rule, status, value, last_value, threshold, message, fired_at,
                  resolved_at
           FROM alerts WHERE status = 'firing' ORDER BY fired_at DESC"#
    )
    .fetch_all(conn)
    .await
}

pub async fn recent_alerts(conn: &mut SqliteConnection, limit: i64) -> sqlx::Result<Vec<Alert>> {
    sqlx::query_as!(
        Alert,
        r#"SELECT id AS "id!", rule, status, value, last_value, threshold, message, fired_at,
                  resolved_at
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
            at: chrono::DateTime::from_timestamp_millis(1_795_000_000_000 + i as i64).unwrap(),
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
    async fn raw_inserts_store_every_value_of_full_and_partial_chunks() {
        let (_dir, mut conn) = migrated().await;
        // Two full statements and a remainder.
        let records: Vec<RequestRecord> = (0..2 * CHUNK + 37).map(record).collect();
        let refs: Vec<&RequestRecord> = records.iter().collect();
        {
            let mut handle = conn.lock_handle().await.unwrap();
            insert_requests(handle.as_raw_handle(), &refs).unwrap();
        }
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
                (
                    &r.at.timestamp_millis(),
                    r.method,
                    &*r.route,
                    &i64::from(r.status)
                )
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

    #[tokio::test]
    async fn raw_insert_errors_carry_sqlites_message() {
        let (_dir, mut conn) = migrated().await;
        sqlx::query("DROP VIEW v_request_log")
            .execute(&mut conn)
            .await
            .unwrap();
        sqlx::query("DROP TABLE request_log")
            .execute(&mut conn)
            .await
            .unwrap();
        let r = record(1);
        let mut handle = conn.lock_handle().await.unwrap();
        let err = insert_requests(handle.as_raw_handle(), &[&r]).unwrap_err();
        assert!(
            err.to_string().contains("no such table: request_log"),
            "{err}"
        );
    }
}
