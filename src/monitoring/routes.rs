//! HTTP handlers of the monitoring domain (admin only) and `/metrics`.

use std::time::Duration;

use axum::Extension;
use axum::extract::{FromRef, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Monitoring;
use super::db::{self, LogFilter};
use super::latency::Histogram;
use super::live::LatencyHist;
use super::model::{
    Alerts, ErrorGroup, ErrorQuery, LogEntry, LogQuery, Performance, RouteStats, SystemInfo,
    Thresholds, Timeseries, TimeseriesQuery, WindowQuery,
};
use crate::error::{AppError, Problem, Result};
use crate::http::extract::{AdminUser, Json, Query};
use crate::sessions::auth::{AuthCache, Principal};
use crate::time::Timestamp;

/// How long expensive answers are served from the response cache.
pub const PERFORMANCE_TTL: Duration = Duration::from_secs(2);

pub fn router<S>() -> OpenApiRouter<S>
where
    Monitoring: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    let router = OpenApiRouter::new()
        .routes(routes!(logs))
        .routes(routes!(errors))
        .routes(routes!(performance))
        .routes(routes!(timeseries))
        .routes(routes!(system))
        .routes(routes!(alerts))
        .routes(routes!(metrics));
    debug_routes(router)
}

/// A route that fails on purpose, for the tests of error tracking and
/// alerts. Compiled only in debug builds, and answering 404 unless
/// `DEBUG_ROUTES=true`; never part of a release binary or the OpenAPI
/// document.
#[cfg(debug_assertions)]
fn debug_routes<S>(router: OpenApiRouter<S>) -> OpenApiRouter<S>
where
    Monitoring: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    router.route("/api/monitoring/debug/fail", axum::routing::get(debug_fail))
}

#[cfg(not(debug_assertions))]
fn debug_routes<S>(router: OpenApiRouter<S>) -> OpenApiRouter<S> {
    router
}

#[cfg(debug_assertions)]
#[derive(serde::Deserialize)]
struct FailQuery {
    mode: Option<String>,
}

#[cfg(debug_assertions)]
async fn debug_fail(
    State(state): State<Monitoring>,
    _admin: AdminUser,
    Query(q): Query<FailQuery>,
) -> Result<StatusCode> {
    if !state.config.debug_routes {
        return Err(AppError::NotFound);
    }
    match q.mode.as_deref() {
        Some("error") => Err(anyhow::anyhow!("injected failure for tests").into()),
        _ => panic!("injected panic for tests"),
    }
}

fn page_limit(limit: Option<u32>) -> Result<i64> {
    crate::http::extract::PageParams {
        limit,
        cursor: None,
    }
    .limit()
}

/// An RFC 3339 time filter.
fn parse_time(field: &str, value: Option<&String>) -> Result<Option<Timestamp>> {
    value
        .map(|v| {
            Timestamp::parse(v)
                .ok_or_else(|| AppError::validation(field, "must be an RFC 3339 timestamp"))
        })
        .transpose()
}

/// An RFC 3339 time filter as Unix milliseconds (how the request log keeps
/// its times).
fn parse_time_ms(field: &str, value: Option<&String>) -> Result<Option<i64>> {
    Ok(parse_time(field, value)?.map(Timestamp::unix_ms))
}

/// The request log, newest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/api/monitoring/logs", tag = "monitoring",
    params(LogQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = inline(crate::http::extract::Page<LogEntry>)),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem),
    ))]
async fn logs(
    State(state): State<Monitoring>,
    _admin: AdminUser,
    Query(q): Query<LogQuery>,
) -> Result<impl IntoResponse> {
    let limit = page_limit(q.limit)?;
    let status_range = match q.status_class.as_deref() {
        None => None,
        Some(c) => {
            let digit = c.trim_end_matches("xx").trim_end_matches("XX");
            match digit {
                "1" | "2" | "3" | "4" | "5" => {
                    let d: i64 = digit.parse().unwrap_or(0);
                    Some((d * 100, d * 100 + 99))
                }
                _ => {
                    return Err(AppError::validation(
                        "statusClass",
                        "must be 1xx, 2xx, 3xx, 4xx or 5xx",
                    ));
                }
            }
        }
    };
    if let Some(s) = &q.source
        && s != "api"
        && s != "loadtest"
    {
        return Err(AppError::validation("source", "must be api or loadtest"));
    }
    let before_id = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| AppError::BadRequest("invalid cursor".into()))
        })
        .transpose()?;
    let filter = LogFilter {
        from_ms: parse_time_ms("from", q.from.as_ref())?,
        to_ms: parse_time_ms("to", q.to.as_ref())?,
        status: q.status.map(i64::from),
        status_range,
        route: q.route,
        method: q.method.map(|m| m.to_ascii_uppercase()),
        user_id: q.user_id.map(crate::ids::UserId::from),
        min_duration_ms: q.min_duration_ms,
        source: q.source,
        request_id: q.request_id,
        before_id,
        limit,
    };
    let mut conn = state.db.reader.acquire().await?;
    let rows = db::list_logs(&mut conn, &filter).await?;
    Ok(Json(crate::http::extract::Page::from_rows(
        rows,
        limit,
        |r| r.id.to_string(),
    )))
}

/// Tracked errors grouped by fingerprint, most recently seen first. With
/// `fingerprint`, the group's recent occurrences are included.
#[utoipa::path(get, path = "/api/monitoring/errors", tag = "monitoring",
    params(ErrorQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = inline(crate::http::extract::Page<ErrorGroup>)),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem),
    ))]
async fn errors(
    State(state): State<Monitoring>,
    _admin: AdminUser,
    Query(q): Query<ErrorQuery>,
) -> Result<impl IntoResponse> {
    let limit = page_limit(q.limit)?;
    let since = parse_time("since", q.since.as_ref())?;
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            c.split_once('|')
                .and_then(|(seen, fp)| Some((Timestamp::parse(seen)?, fp)))
                .ok_or_else(|| AppError::BadRequest("invalid cursor".into()))?,
        ),
    };
    let mut conn = state.db.reader.acquire().await?;
    let mut groups = db::list_error_groups(
        &mut conn,
        q.kind.as_deref(),
        since,
        q.fingerprint.as_deref(),
        cursor,
        limit,
    )
    .await?;
    if let Some(fp) = &q.fingerprint {
        for g in &mut groups {
            g.events = Some(db::recent_error_events(&mut conn, fp, 20).await?);
        }
    }
    Ok(Json(crate::http::extract::Page::from_rows(
        groups,
        limit,
        |g| format!("{}|{}", g.last_seen, g.fingerprint),
    )))
}

/// Parses `30s`, `5m`, `1h`, `7d` or plain seconds.
pub fn parse_window(raw: &str) -> Option<u64> {
    let raw = raw.trim();
    let (num, unit) = match raw.char_indices().last()? {
        (i, c) if c.is_ascii_alphabetic() => (&raw[..i], c),
        _ => (raw, 's'),
    };
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        's' => n,
        'm' => n.checked_mul(60)?,
        'h' => n.checked_mul(3600)?,
        'd' => n.checked_mul(86_400)?,
        _ => return None,
    };
    (1..=400 * 86_400).contains(&secs).then_some(secs)
}

/// A route's figures over a window of `secs` seconds, from the one
/// estimator's histogram (live or rolled up).
pub fn route_stats(method: &str, route: &str, h: &Histogram, errors: u64, secs: u64) -> RouteStats {
    RouteStats {
        method: method.to_string(),
        route: route.to_string(),
        requests: h.count,
        requests_per_second: h.count as f64 / secs.max(1) as f64,
        server_errors: errors,
        error_rate: if h.count == 0 {
            0.0
        } else {
            errors as f64 / h.count as f64
        },
        mean_ms: h.mean_ms(),
        p50_ms: h.quantile_ms(0.5),
        p95_ms: h.quantile_ms(0.95),
        p99_ms: h.quantile_ms(0.99),
        max_ms: h.max_ms,
    }
}

async fn compute_performance(state: &Monitoring, window: &str, secs: u64) -> Result<Performance> {
    let mut total = LatencyHist::default();
    let (source, mut routes): (_, Vec<RouteStats>) = if secs <= 3600 {
        let minutes = secs.div_ceil(60) as usize;
        let routes = state
            .monitor
            .live()
            .window(minutes)
            .into_iter()
            .map(|w| {
                total.merge(&w.hist);
                route_stats(&w.method, &w.route, &w.hist.latency, w.hist.errors, secs)
            })
            .collect();
        ("live", routes)
    } else {
        let from_hour = (Timestamp::now() - chrono::Duration::seconds(secs as i64)).start_of_hour();
        let mut conn = state.db.reader.acquire().await?;
        let routes = db::rollups_by_route(&mut conn, from_hour, None)
            .await?
            .into_iter()
            .map(|r| {
                let errors = r.server_errors.max(0) as u64;
                total.latency.merge(&r.hist);
                total.errors += errors;
                route_stats(&r.method, &r.route, &r.hist, errors, secs)
            })
            .collect();
        ("database", routes)
    };
    routes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.route.cmp(&b.route)));
    Ok(Performance {
        window: window.to_string(),
        window_seconds: secs,
        source,
        totals: route_stats("*", "*", &total.latency, total.errors, secs),
        routes,
    })
}

/// Per route over `?window=`: requests, requests/s, error rate, latency
/// percentiles. Up to 1 hour from live in-process histograms, longer from
/// the hourly roll-ups; both with the one estimator (docs/metrics.md).
#[utoipa::path(get, path = "/api/monitoring/performance", tag = "monitoring",
    params(WindowQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Performance),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem),
    ))]
async fn performance(
    State(state): State<Monitoring>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<WindowQuery>,
) -> Result<Response> {
    let window = q.window.unwrap_or_else(|| "5m".to_string());
    let secs = parse_window(&window).ok_or_else(|| {
        AppError::validation(
            "window",
            "expected 30s, 5m, 1h, 7d or seconds, at most 400d",
        )
    })?;
    let st = state.clone();
    state
        .monitor
        .cache()
        .json(
            "performance",
            admin.user_id.as_str(),
            raw.as_deref().unwrap_or(""),
            &headers,
            PERFORMANCE_TTL,
            || async move {
                Ok((
                    StatusCode::OK,
                    compute_performance(&st, &window, secs).await?,
                ))
            },
        )
        .await
}

/// Requests/s, error rate, p50/p95/p99 and active users per step over
/// `?window=` (`15m`, `1h`: per minute from live histograms; `24h`, `7d`:
/// per hour, `30d`: per day, from the hourly roll-ups), optionally of one
/// method and route; every step present, zeros where nothing happened.
#[utoipa::path(get, path = "/api/monitoring/timeseries", tag = "monitoring",
    params(TimeseriesQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = Timeseries),
        (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem), (status = 422, body = Problem),
    ))]
async fn timeseries(
    State(state): State<Monitoring>,
    AdminUser(admin): AdminUser,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(q): Query<TimeseriesQuery>,
) -> Result<Response> {
    let window = q.window.unwrap_or_else(|| "1h".to_string());
    super::timeseries::parse(&window)?;
    let st = state.clone();
    state
        .monitor
        .cache()
        .json(
            "timeseries",
            admin.user_id.as_str(),
            raw.as_deref().unwrap_or(""),
            &headers,
            PERFORMANCE_TTL,
            || async move {
                let series = super::timeseries::compute(
                    &st,
                    &window,
                    q.method.as_deref(),
                    q.route.as_deref(),
                )
                .await?;
                Ok((StatusCode::OK, series))
            },
        )
        .await
}

/// Process and host resources, database and disk, queue, request-log drops.
#[utoipa::path(get, path = "/api/monitoring/system", tag = "monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, body = SystemInfo),
        (status = 401, body = Problem), (status = 403, body = Problem),
    ))]
async fn system(State(state): State<Monitoring>, _admin: AdminUser) -> Result<Json<SystemInfo>> {
    use super::system as sys;
    let sampler_state = state.clone();
    let process = tokio::task::spawn_blocking(move || sampler_state.monitor.system().process())
        .await
        .map_err(anyhow::Error::from)?;
    let data_dir = state.config.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || sys::disk_space(&data_dir))
        .await
        .map_err(anyhow::Error::from)?;
    let db_path = state.config.database_path();
    let wal_path = {
        let mut p = db_path.clone().into_os_string();
        p.push("-wal");
        std::path::PathBuf::from(p)
    };
    let mut conn = state.db.reader.acquire().await?;
    let q = crate::jobs::db::queue_stats(&mut conn, Timestamp::now()).await?;
    drop(conn);
    Ok(Json(SystemInfo {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.health.uptime().as_secs(),
        pid: std::process::id(),
        rss_bytes: process.rss_bytes,
        cpu_percent: process.cpu_percent,
        threads: sys::threads(),
        open_fds: sys::open_fds(),
        database_bytes: sys::file_size(&db_path),
        wal_bytes: sys::file_size(&wal_path),
        data_dir_free_bytes: disk.map(|d| d.0),
        data_dir_total_bytes: disk.map(|d| d.1),
        queue_depth: q.queued,
        oldest_queued_age_seconds: q
            .oldest_queued_run_at
            .map(|t| super::metrics::age_seconds(Some(t))),
        running_jobs: q.running,
        browser_processes: process.browser_processes,
        browser_rss_bytes: process.browser_rss_bytes,
        request_log_dropped: state.monitor.dropped(),
        request_log_written: state.monitor.written(),
        rate_limiter_keys: state.limits.keys() as u64,
        db_reader_connections: state.db.reader.size(),
        db_reader_idle: u32::try_from(state.db.reader.num_idle()).unwrap_or(u32::MAX),
    }))
}

/// Firing and recent alerts with the configured thresholds.
#[utoipa::path(get, path = "/api/monitoring/alerts", tag = "monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, body = Alerts),
        (status = 401, body = Problem), (status = 403, body = Problem),
    ))]
async fn alerts(State(state): State<Monitoring>, _admin: AdminUser) -> Result<Json<Alerts>> {
    let c = &state.config;
    let mut conn = state.db.reader.acquire().await?;
    let firing = db::firing_alerts(&mut conn).await?;
    let recent = db::recent_alerts(&mut conn, 100).await?;
    Ok(Json(Alerts {
        firing,
        recent,
        thresholds: Thresholds {
            error_rate: c.alert_error_rate,
            p95_ms: c.alert_p95_ms,
            job_failure_rate: c.alert_job_failure_rate,
            queue_age_seconds: c.alert_queue_age_seconds,
            min_free_disk_bytes: c.alert_min_free_disk_bytes,
            log_drops: c.alert_log_drops,
            max_rss_bytes: c.alert_max_rss_bytes,
            interval_seconds: c.alert_interval.as_secs(),
        },
    }))
}

/// Prometheus text exposition. Accepts an admin's bearer token or
/// `METRICS_TOKEN`.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text format 0.0.4",
            content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, body = Problem), (status = 403, body = Problem),
    ))]
async fn metrics(
    State(state): State<Monitoring>,
    headers: HeaderMap,
    principal: Option<Extension<Principal>>,
) -> Result<Response> {
    let presented = crate::http::extract::bearer_token(&headers);
    let token_ok = match (&state.config.metrics_token, presented) {
        (Some(expected), Some(given)) => {
            bool::from(given.as_bytes().ct_eq(expected.expose_secret().as_bytes()))
        }
        _ => false,
    };
    if !token_ok {
        match principal {
            Some(Extension(p)) if p.is_admin() => {}
            Some(_) => return Err(AppError::Forbidden),
            None => return Err(AppError::Unauthorized),
        }
    }
    let body = super::metrics::render();
    let mut res = body.into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_parse_with_units() {
        assert_eq!(parse_window("30s"), Some(30));
        assert_eq!(parse_window("5m"), Some(300));
        assert_eq!(parse_window("24h"), Some(86_400));
        assert_eq!(parse_window("7d"), Some(604_800));
        assert_eq!(parse_window("90"), Some(90));
        assert_eq!(parse_window("0"), None);
        assert_eq!(parse_window("5w"), None);
        assert_eq!(parse_window("999d"), None);
        assert_eq!(parse_window(""), None);
    }
}
