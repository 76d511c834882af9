//! Monitoring types: the records the writer stores and the bodies of the
//! monitoring endpoints.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::ids::UserId;
use crate::time::Timestamp;

/// A string kept inside the value when it is short (up to 39 bytes: the
/// generated request ids have 32, user ids 36), on the heap otherwise.
///
/// Request records are made on the request threads and dropped by the
/// writer, thousands at a time. A heap string freed by another thread than
/// the one that allocated it, long after, misses glibc's per-thread cache and
/// piles up in its arena's bins, which the next large allocation must sweep:
/// with two such strings per request that cost more than the rest of the
/// record. Copying the ids into the record instead leaves the request's own
/// strings to be freed where they were made, at once.
#[derive(Clone)]
pub enum ShortStr {
    Inline { len: u8, bytes: [u8; SHORT_STR_MAX] },
    Heap(Box<str>),
}

pub const SHORT_STR_MAX: usize = 39;

impl ShortStr {
    pub fn new(s: &str) -> Self {
        match u8::try_from(s.len()) {
            Ok(len) if s.len() <= SHORT_STR_MAX => {
                let mut bytes = [0; SHORT_STR_MAX];
                bytes[..s.len()].copy_from_slice(s.as_bytes());
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(s.into()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            // Always valid: copied from a `str` whole.
            Self::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            Self::Heap(s) => s,
        }
    }
}

impl std::ops::Deref for ShortStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Debug for ShortStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

impl PartialEq for ShortStr {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl From<&str> for ShortStr {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

/// One request, as the writer stores it in `request_log`. Built on the
/// request path, so it holds cheap forms (a time, a shared route name, ids
/// copied in, an address) that the writer turns into stored values off that
/// path.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub at: Timestamp,
    pub method: &'static str,
    pub route: std::sync::Arc<str>,
    pub status: u16,
    pub duration_ms: f64,
    pub bytes_in: Option<i64>,
    pub bytes_out: Option<i64>,
    pub user_id: Option<ShortStr>,
    pub client_ip: Option<std::net::IpAddr>,
    pub user_agent: Option<String>,
    pub request_id: Option<ShortStr>,
    pub loadtest_id: Option<String>,
}

impl RequestRecord {
    pub fn source(&self) -> &'static str {
        if self.loadtest_id.is_some() {
            "loadtest"
        } else {
            "api"
        }
    }
}

/// One occurrence of a tracked error.
#[derive(Debug, Clone)]
pub struct ErrorRecord {
    pub at: Timestamp,
    pub fingerprint: String,
    pub kind: String,
    pub location: String,
    pub message: String,
    pub context: String,
    pub request_id: Option<String>,
}

/// What the writer receives.
#[derive(Debug)]
// Not boxed: requests are nearly every record, and a box would be one more
// allocation per request, freed by another thread (see `ShortStr`).
#[allow(clippy::large_enum_variant)]
pub enum Record {
    Request(RequestRecord),
    /// Boxed: errors are rare and larger than requests.
    Error(Box<ErrorRecord>),
}

/// `GET /api/monitoring/logs` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogQuery {
    /// Requests at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Requests before this time (RFC 3339).
    pub to: Option<String>,
    /// Exact status code, e.g. 404.
    pub status: Option<u16>,
    /// Status class: `2xx`, `3xx`, `4xx` or `5xx`.
    pub status_class: Option<String>,
    /// Route template, e.g. `/api/users/{userId}`.
    pub route: Option<String>,
    pub method: Option<String>,
    pub user_id: Option<String>,
    /// Only requests that took at least this long.
    pub min_duration_ms: Option<f64>,
    /// `api` or `loadtest`.
    pub source: Option<String>,
    pub request_id: Option<String>,
    /// Items per page, 1-200 (default 50).
    pub limit: Option<u32>,
    /// The `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub id: i64,
    pub at: Timestamp,
    pub method: String,
    pub route: String,
    pub status: i64,
    pub duration_ms: f64,
    pub bytes_in: Option<i64>,
    pub bytes_out: Option<i64>,
    pub user_id: Option<UserId>,
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub request_id: Option<String>,
    pub source: String,
    pub loadtest_id: Option<String>,
}

/// `GET /api/monitoring/errors` filters.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ErrorQuery {
    /// `http_500`, `panic`, `job`, `upstream`, ...
    pub kind: Option<String>,
    /// Groups seen at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only this group, with its recent occurrences.
    pub fingerprint: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorGroup {
    pub fingerprint: String,
    pub kind: String,
    pub location: String,
    /// Latest message.
    pub message: String,
    pub count: i64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub last_request_id: Option<String>,
    #[schema(value_type = Object)]
    pub last_context: Value,
    /// Recent occurrences (only when filtering by `fingerprint`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<ErrorEvent>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEvent {
    pub at: Timestamp,
    pub message: String,
    #[schema(value_type = Object)]
    pub context: Value,
    pub request_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct WindowQuery {
    /// `30s`, `5m`, `1h`, `24h`, `7d` or seconds (default `5m`, at most
    /// 400 days). Up to one hour is answered from live in-process
    /// histograms, longer windows from the hourly roll-ups.
    pub window: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TimeseriesQuery {
    /// `15m`, `1h`, `24h`, `7d` or `30d` (default `1h`).
    pub window: Option<String>,
    /// Only this method (`GET`, `POST`, ...).
    pub method: Option<String>,
    /// Only this route template, e.g. `/api/users/{userId}`.
    pub route: Option<String>,
}

/// Requests, errors, latency and active users over a window, one point per
/// step, empty steps as zeros.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timeseries {
    pub window: String,
    pub window_seconds: u64,
    /// 60 for `15m` and `1h`, 3600 for `24h` and `7d`, 86400 for `30d`.
    pub step_seconds: u64,
    /// `live` (in-process one-minute histograms) or `database` (hourly
    /// roll-ups).
    pub source: &'static str,
    pub points: Vec<TimeseriesPoint>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeseriesPoint {
    /// Start of the step.
    pub at: Timestamp,
    pub requests: u64,
    pub requests_per_second: f64,
    pub server_errors: u64,
    /// Server errors (5xx) / requests; 0 without requests.
    pub error_rate: f64,
    /// Percentiles of the one latency estimator (docs/metrics.md); 0
    /// without requests.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Distinct signed-in users with a request in the step (windows up to
    /// 24 h, from the request log), or on the step's UTC day (7 d, 30 d,
    /// from `user_activity`, not filtered by method or route).
    pub active_users: i64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Performance {
    pub window: String,
    pub window_seconds: u64,
    /// `live` (in-process histograms) or `database` (hourly roll-ups).
    pub source: &'static str,
    pub totals: RouteStats,
    pub routes: Vec<RouteStats>,
}

#[derive(Debug, Serialize, ToSchema, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteStats {
    pub method: String,
    pub route: String,
    pub requests: u64,
    pub requests_per_second: f64,
    pub server_errors: u64,
    /// Server errors (5xx) / requests.
    pub error_rate: f64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemInfo {
    pub version: &'static str,
    pub uptime_seconds: u64,
    pub pid: u32,
    pub rss_bytes: u64,
    /// Percent of one core since the previous reading.
    pub cpu_percent: f32,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
    pub database_bytes: u64,
    pub wal_bytes: u64,
    pub data_dir_free_bytes: Option<u64>,
    pub data_dir_total_bytes: Option<u64>,
    pub queue_depth: i64,
    pub oldest_queued_age_seconds: Option<f64>,
    pub running_jobs: i64,
    /// Chromium processes that are children of this service.
    pub browser_processes: u64,
    /// Their resident memory together (`rssBytes` is the service's own).
    pub browser_rss_bytes: u64,
    pub request_log_dropped: u64,
    pub request_log_written: u64,
    pub rate_limiter_keys: u64,
    pub db_reader_connections: u32,
    pub db_reader_idle: u32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: String,
    /// `error_rate`, `p95_latency`, `job_failure_rate`, `queue_age`,
    /// `free_disk`, `log_drops`.
    pub rule: String,
    /// `firing` or `resolved`.
    pub status: String,
    pub value: f64,
    pub last_value: f64,
    pub threshold: f64,
    pub message: String,
    pub fired_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Thresholds {
    pub error_rate: f64,
    pub p95_ms: f64,
    pub job_failure_rate: f64,
    pub queue_age_seconds: u64,
    pub min_free_disk_bytes: u64,
    pub log_drops: u64,
    pub max_rss_bytes: u64,
    pub interval_seconds: u64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Alerts {
    pub firing: Vec<Alert>,
    /// The most recent alerts (firing and resolved), newest first.
    pub recent: Vec<Alert>,
    pub thresholds: Thresholds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_strings_are_kept_whole_inline_or_on_the_heap() {
        for s in [
            "",
            "a",
            &"u".repeat(36),
            &"x".repeat(39),
            &"y".repeat(40),
            "héllo",
        ] {
            let short = ShortStr::new(s);
            assert_eq!(&*short, s);
            assert_eq!(matches!(short, ShortStr::Inline { .. }), s.len() <= 39);
        }
        let long = "z".repeat(300);
        assert_eq!(&*ShortStr::new(&long), long);
    }
}
