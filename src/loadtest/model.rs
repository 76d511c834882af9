//! Load test types: the request as submitted, its validated plan, and the
//! report (field names fixed by API.md's "Load test" body).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::FieldError;
use crate::ids::JobId;
use crate::time::Timestamp;

/// `POST /api/load-test/start`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoadTestRequest {
    /// One or more requests, picked at random by weight.
    pub scenario: Vec<ScenarioStep>,
    /// Closed model: this many workers, each sending its next request when
    /// the previous answered. With `rate`: the most requests in flight.
    pub concurrency: Option<u32>,
    /// Open model: target requests per second (latency is measured from the
    /// intended send time, correcting for coordinated omission).
    pub rate: Option<f64>,
    /// Linear ramp from 0 to `rate` (or workers started gradually).
    pub ramp_up_seconds: Option<u32>,
    /// How long to run (at most LOADTEST_MAX_DURATION_SECONDS).
    pub duration_seconds: Option<u32>,
    /// How many requests to send (at most LOADTEST_MAX_REQUESTS).
    pub requests: Option<u64>,
    pub thresholds: Option<Thresholds>,
    /// Per-request timeout (default 10000, at most 60000).
    pub timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScenarioStep {
    /// GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS.
    pub method: String,
    /// A path of this service, starting with `/` (query allowed); never a
    /// scheme, host or port.
    pub path: String,
    /// JSON body (sent with `Content-Type: application/json`).
    #[schema(value_type = Option<Object>)]
    pub body: Option<Value>,
    /// Extra headers (not Host, Authorization, Cookie or hop-by-hop ones).
    pub headers: Option<BTreeMap<String, String>>,
    /// Relative weight, 1-1000 (default 1).
    pub weight: Option<u32>,
}

/// Pass/fail limits; each one set gets a verdict in the report.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Thresholds {
    /// 95th percentile latency of all requests must be at most this (ms).
    pub p95_ms: Option<f64>,
    /// 99th percentile latency of all requests must be at most this (ms).
    pub p99_ms: Option<f64>,
    /// failed / requests must be at most this (0-1).
    pub error_rate: Option<f64>,
}

/// The limits of `LOADTEST_MAX_*`.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub max_concurrency: u32,
    pub max_duration_seconds: u32,
    pub max_requests: u64,
}

pub const MAX_RATE: f64 = 1_000_000.0;
pub const MAX_STEPS: usize = 50;
pub const MAX_BODY_BYTES: usize = 64 * 1024;
pub const MAX_HEADERS: usize = 20;
pub const DEFAULT_TIMEOUT_MS: u64 = 10_000;

/// One validated request of the scenario.
#[derive(Debug, Clone)]
pub struct Step {
    pub method: http::Method,
    pub path: PathAndQuery,
    pub body: Option<Bytes>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub weight: u32,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    /// Closed model: this many workers.
    Concurrency(u32),
    /// Open model: target rate, with at most `max_in_flight` in flight.
    Rate { rps: f64, max_in_flight: u32 },
}

/// A validated load test.
#[derive(Debug, Clone)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub load: Load,
    pub ramp_up: Duration,
    /// Hard stop (the requested duration, or the cap when only a request
    /// count was given).
    pub duration: Duration,
    pub max_requests: Option<u64>,
    pub thresholds: Thresholds,
    pub timeout: Duration,
}

impl Plan {
    pub fn workers(&self) -> u32 {
        match self.load {
            Load::Concurrency(n) => n,
            Load::Rate { max_in_flight, .. } => max_in_flight,
        }
    }

    pub fn mode(&self) -> &'static str {
        match self.load {
            Load::Concurrency(_) => "concurrency",
            Load::Rate { .. } => "rate",
        }
    }

    pub fn target_rps(&self) -> Option<f64> {
        match self.load {
            Load::Concurrency(_) => None,
            Load::Rate { rps, .. } => Some(rps),
        }
    }
}

const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Headers the client may not set: the tester owns identity, framing and the
/// connection.
const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "cookie",
    "x-hs-loadtest",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
    "te",
    "trailer",
    "proxy-authorization",
    "proxy-connection",
];

/// Checks that `path` names a resource of this service: it starts with one
/// `/`, holds no scheme, authority, backslash, fragment, space or control
/// character, and parses as an origin-form request target.
pub fn parse_path(path: &str) -> Result<PathAndQuery, &'static str> {
    if !path.starts_with('/') {
        return Err("must be a path of this service starting with `/` (no scheme, host or port)");
    }
    if path.contains("//") {
        return Err("must not contain `//` (no scheme or host)");
    }
    if path.len() > 2048 {
        return Err("must be at most 2048 characters");
    }
    if path
        .chars()
        .any(|c| !c.is_ascii_graphic() || c == '\\' || c == '#')
    {
        return Err("must be printable ASCII without spaces, `\\` or `#` (percent-encode them)");
    }
    PathAndQuery::from_str(path).map_err(|_| "is not a valid request path")
}

impl LoadTestRequest {
    /// Validates everything, reporting every invalid field at once.
    pub fn validate(&self, caps: Caps) -> Result<Plan, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut err = |field: String, msg: String| errors.push(FieldError::new(field, msg));

        if self.scenario.is_empty() {
            err("scenario".into(), "must hold at least one request".into());
        }
        if self.scenario.len() > MAX_STEPS {
            err(
                "scenario".into(),
                format!("must hold at most {MAX_STEPS} requests"),
            );
        }
        let mut steps = Vec::new();
        for (i, s) in self.scenario.iter().enumerate() {
            let at = |f: &str| format!("scenario[{i}].{f}");
            let method = s.method.to_ascii_uppercase();
            let method = if METHODS.contains(&method.as_str()) {
                http::Method::from_str(&method).ok()
            } else {
                err(
                    at("method"),
                    format!("must be one of {}", METHODS.join(", ")),
                );
                None
            };
            let path = match parse_path(&s.path) {
                Ok(p) => Some(p),
                Err(m) => {
                    err(at("path"), m.into());
                    None
                }
            };
            let weight = s.weight.unwrap_or(1);
            if !(1..=1000).contains(&weight) {
                err(at("weight"), "must be from 1 to 1000".into());
            }
            let body = match &s.body {
                None | Some(Value::Null) => None,
                Some(v) => {
                    let bytes = serde_json::to_vec(v).unwrap_or_default();
                    if bytes.len() > MAX_BODY_BYTES {
                        err(
                            at("body"),
                            format!("must be at most {MAX_BODY_BYTES} bytes"),
                        );
                    }
                    Some(Bytes::from(bytes))
                }
            };
            let mut headers = Vec::new();
            let given = s.headers.as_ref().map(|h| h.len()).unwrap_or(0);
            if given > MAX_HEADERS {
                err(
                    at("headers"),
                    format!("must hold at most {MAX_HEADERS} headers"),
                );
            }
            for (name, value) in s.headers.iter().flatten() {
                let lower = name.to_ascii_lowercase();
                if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
                    err(at("headers"), format!("{name} cannot be set by a scenario"));
                    continue;
                }
                match (HeaderName::from_str(&lower), HeaderValue::from_str(value)) {
                    (Ok(n), Ok(v)) => headers.push((n, v)),
                    _ => err(at("headers"), format!("{name} is not a valid header")),
                }
            }
            if body.is_some() && !headers.iter().any(|(n, _)| n == http::header::CONTENT_TYPE) {
                headers.push((
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                ));
            }
            if let (Some(method), Some(path)) = (method, path) {
                steps.push(Step {
                    method,
                    path,
                    body,
                    headers,
                    weight,
                });
            }
        }

        let load = match (self.concurrency, self.rate) {
            (None, None) => {
                err("concurrency".into(), "give `concurrency` or `rate`".into());
                None
            }
            (c, r) => {
                let c_ok = match c {
                    Some(n) if n == 0 || n > caps.max_concurrency => {
                        err(
                            "concurrency".into(),
                            format!(
                                "must be from 1 to {} (LOADTEST_MAX_CONCURRENCY)",
                                caps.max_concurrency
                            ),
                        );
                        false
                    }
                    _ => true,
                };
                match r {
                    None => c.filter(|_| c_ok).map(Load::Concurrency),
                    Some(rps) if !(rps.is_finite() && rps > 0.0 && rps <= MAX_RATE) => {
                        err(
                            "rate".into(),
                            format!("must be above 0 and at most {MAX_RATE}"),
                        );
                        None
                    }
                    Some(rps) => c_ok.then(|| Load::Rate {
                        rps,
                        max_in_flight: c.unwrap_or_else(|| {
                            // Enough in flight for ~50 ms latency at the target.
                            ((rps / 20.0).ceil() as u32).clamp(2, caps.max_concurrency.max(1))
                        }),
                    }),
                }
            }
        };

        let duration = match (self.duration_seconds, self.requests) {
            (None, None) => {
                err(
                    "durationSeconds".into(),
                    "give `durationSeconds` or `requests`".into(),
                );
                None
            }
            (d, r) => {
                if let Some(n) = r
                    && (n == 0 || n > caps.max_requests)
                {
                    err(
                        "requests".into(),
                        format!(
                            "must be from 1 to {} (LOADTEST_MAX_REQUESTS)",
                            caps.max_requests
                        ),
                    );
                }
                match d {
                    Some(s) if s == 0 || s > caps.max_duration_seconds => {
                        err(
                            "durationSeconds".into(),
                            format!(
                                "must be from 1 to {} (LOADTEST_MAX_DURATION_SECONDS)",
                                caps.max_duration_seconds
                            ),
                        );
                        None
                    }
                    Some(s) => Some(Duration::from_secs(u64::from(s))),
                    None => Some(Duration::from_secs(u64::from(caps.max_duration_seconds))),
                }
            }
        };

        let ramp_up = Duration::from_secs(u64::from(self.ramp_up_seconds.unwrap_or(0)));
        if let Some(d) = duration
            && !ramp_up.is_zero()
            && ramp_up >= d
        {
            err(
                "rampUpSeconds".into(),
                "must be shorter than the test".into(),
            );
        }

        let thresholds = self.thresholds.clone().unwrap_or_default();
        for (name, v) in [("p95Ms", thresholds.p95_ms), ("p99Ms", thresholds.p99_ms)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                err(
                    format!("thresholds.{name}"),
                    "must be a positive number of ms".into(),
                );
            }
        }
        if let Some(v) = thresholds.error_rate
            && !(v.is_finite() && (0.0..=1.0).contains(&v))
        {
            err("thresholds.errorRate".into(), "must be from 0 to 1".into());
        }

        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=60_000).contains(&timeout_ms) {
            err("timeoutMs".into(), "must be from 1 to 60000".into());
        }

        match (errors.is_empty(), load, duration) {
            (true, Some(load), Some(duration)) => Ok(Plan {
                steps,
                load,
                ramp_up,
                duration,
                max_requests: self.requests,
                thresholds,
                timeout: Duration::from_millis(timeout_ms),
            }),
            _ => Err(errors),
        }
    }
}

/// Latency statistics in milliseconds (HdrHistogram, 3 significant digits).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyMs {
    /// Requests measured.
    pub count: u64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p75: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub requests: u64,
    /// Answered with a status below 400.
    pub succeeded: u64,
    /// Answered 4xx/5xx, or no answer (timeout, connection, other).
    pub failed: u64,
}

/// Why requests failed. `timeout + connect + other` are requests without an
/// answer; with `statusCodes` they add up to `totals.requests`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Errors {
    pub timeout: u64,
    pub connect: u64,
    pub other: u64,
    /// Answers with a 4xx status.
    pub status4xx: u64,
    /// Answers with a 5xx status.
    pub status5xx: u64,
}

/// One second of the test (by completion time).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimelinePoint {
    /// Seconds since the start (0 is the first second).
    pub second: u64,
    /// Requests completed in this second.
    pub requests: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed requests completed in this second.
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ThresholdVerdict {
    /// `p95Ms`, `p99Ms` or `errorRate`.
    pub name: String,
    pub limit: f64,
    pub actual: f64,
    pub passed: bool,
}

/// The result of a load test (`GET /api/load-test/results/{testId}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoadTestResult {
    pub id: String,
    pub job_id: Option<JobId>,
    /// queued, running, succeeded (ran to its end), failed or cancelled.
    pub status: String,
    /// `concurrency` or `rate`.
    pub mode: String,
    pub concurrency: u32,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    /// Seconds from the first request sent to the last answer.
    pub duration_seconds: f64,
    pub totals: Totals,
    pub achieved_rps: f64,
    pub target_rps: Option<f64>,
    /// Successful requests.
    pub latency_ms: LatencyMs,
    /// Failed requests (including those without an answer).
    pub failure_latency_ms: LatencyMs,
    pub status_codes: BTreeMap<String, u64>,
    pub errors: Errors,
    pub timeline: Vec<TimelinePoint>,
    /// True at a target rate: latency counts from when each request should
    /// have been sent, so a stalled server cannot hide its queueing delay.
    pub coordinated_omission_corrected: bool,
    pub thresholds: Vec<ThresholdVerdict>,
    /// Every threshold passed (null when none was set).
    pub passed: Option<bool>,
    /// Why the test could not run, if it failed.
    pub error: Option<String>,
    /// The request as submitted.
    #[schema(value_type = Object)]
    pub request: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps() -> Caps {
        Caps {
            max_concurrency: 100,
            max_duration_seconds: 60,
            max_requests: 1000,
        }
    }

    fn req(v: Value) -> LoadTestRequest {
        serde_json::from_value(v).unwrap()
    }

    fn fields(r: Result<Plan, Vec<FieldError>>) -> Vec<String> {
        r.err().unwrap().into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn paths_with_a_scheme_or_host_are_rejected() {
        for bad in [
            "http://example.com/",
            "//example.com/x",
            "example.com/x",
            "/a//b",
            "/x y",
            "/\\evil",
            "/a#frag",
            "",
        ] {
            assert!(parse_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["/health", "/api/users/1?x=1&y=http:%2F%2Fz", "/@x"] {
            assert!(parse_path(good).is_ok(), "{good:?} rejected");
        }
    }

    #[test]
    fn a_valid_request_becomes_a_plan() {
        let plan = req(serde_json::json!({
            "scenario": [{"method": "get", "path": "/health"},
                         {"method": "POST", "path": "/api/x", "body": {"a": 1}, "weight": 3}],
            "concurrency": 4, "durationSeconds": 2,
            "thresholds": {"p95Ms": 100, "errorRate": 0.01}
        }))
        .validate(caps())
        .unwrap();
        assert_eq!(plan.load, Load::Concurrency(4));
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.steps[1].weight, 3);
        assert!(
            plan.steps[1]
                .headers
                .iter()
                .any(|(n, _)| n == "content-type")
        );
        assert_eq!(plan.duration, Duration::from_secs(2));
    }

    #[test]
    fn caps_and_missing_choices_are_reported_per_field() {
        let f = fields(
            req(serde_json::json!({
                "scenario": [{"method": "TRACE", "path": "http://x/", "headers": {"Host": "x"}}],
                "concurrency": 101, "durationSeconds": 61, "requests": 1001,
                "thresholds": {"errorRate": 2}
            }))
            .validate(caps()),
        );
        for expected in [
            "scenario[0].method",
            "scenario[0].path",
            "scenario[0].headers",
            "concurrency",
            "durationSeconds",
            "requests",
            "thresholds.errorRate",
        ] {
            assert!(
                f.contains(&expected.to_string()),
                "{expected} missing in {f:?}"
            );
        }
        let f = fields(req(serde_json::json!({"scenario": []})).validate(caps()));
        assert!(f.contains(&"scenario".to_string()));
        assert!(f.contains(&"concurrency".to_string()));
        assert!(f.contains(&"durationSeconds".to_string()));
    }

    #[test]
    fn a_rate_gets_an_in_flight_cap_and_a_request_count_gets_the_duration_cap() {
        let plan = req(serde_json::json!({
            "scenario": [{"method": "GET", "path": "/health"}],
            "rate": 1000, "requests": 500, "rampUpSeconds": 5
        }))
        .validate(caps())
        .unwrap();
        assert_eq!(
            plan.load,
            Load::Rate {
                rps: 1000.0,
                max_in_flight: 50
            }
        );
        assert_eq!(plan.duration, Duration::from_secs(60));
        assert_eq!(plan.max_requests, Some(500));
    }
}
