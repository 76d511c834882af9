//! Load test types: the request as submitted, its validated plan, and the
//! report (field names fixed by API.md's "Load test" body).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

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
    /// Run as this many virtual users (1-50): throwaway accounts
    /// (`loadtest-<testId>-<i>@loadtest.invalid`, role user) with one
    /// session each, removed with everything they created when the test
    /// ends. Worker i acts as user i (modulo N); `concurrency` defaults to
    /// N. Without it the test runs as the admin who started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = 10)]
    pub virtual_users: Option<u32>,
    /// Whether rate limits skip the test's requests. Default: off with
    /// `virtualUsers` (each user gets a real user's allowance, so 429s show
    /// up in `statusCodes`), on without (the admin's own allowance would
    /// throttle the test).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = false)]
    pub exempt_from_rate_limits: Option<bool>,
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
/// Bounds of `virtualUsers` (each is an account, a password hash and a
/// session made before the test starts).
pub const VIRTUAL_USERS: std::ops::RangeInclusive<u32> = 1..=50;
/// What a scenario path says to mean the acting user's id.
pub const USER_ID_PLACEHOLDER: &str = "{userId}";

/// One validated request of the scenario.
#[derive(Debug, Clone)]
pub struct Step {
    pub method: http::Method,
    /// The path as given: it may hold [`USER_ID_PLACEHOLDER`].
    pub path: String,
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
    /// Accounts to act as (0: the admin who started the test).
    pub virtual_users: u32,
    pub exempt_from_rate_limits: bool,
}

impl Step {
    /// The request path for the user `user_id`.
    pub fn path_for(&self, user_id: &str) -> Option<PathAndQuery> {
        let path = self.path.replace(USER_ID_PLACEHOLDER, user_id);
        PathAndQuery::from_maybe_shared(Bytes::from(path)).ok()
    }
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

/// Latency statistics in milliseconds, from the service's one latency
/// estimator (`monitoring::latency`: log-linear buckets, a percentile is the
/// middle of its bucket, within 6.25% from 8 µs to 537 s; min, max, mean and
/// stddev are exact).
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
#[schema(as = LoadTestTotals)]
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

/// One bucket of a latency histogram.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LatencyBucket {
    /// Upper bound (ms, exclusive); the bucket holds latencies from the
    /// previous bound.
    pub le_ms: f64,
    pub count: u64,
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
    /// Distinct accounts the test ran as (0: the admin who started it).
    #[serde(default)]
    pub virtual_users: u32,
    /// Whether rate limits skipped the test's requests.
    #[serde(default)]
    pub exempt_from_rate_limits: bool,
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
    /// Latency of the successful requests in the estimator's buckets (the
    /// same as the live figures and the roll-ups), from the first non-empty
    /// bucket to the last, empty ones included; the counts add up to
    /// `latencyMs.count`. Reports made before the change hold log-2 buckets.
    #[serde(default)]
    pub histogram: Vec<LatencyBucket>,
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
