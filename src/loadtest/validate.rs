//! Validation of a load test request: every invalid field reported at once,
//! the valid request turned into a [`Plan`].

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::PathAndQuery;
use serde_json::Value;

use super::model::{
    Caps, DEFAULT_TIMEOUT_MS, Load, LoadTestRequest, MAX_BODY_BYTES, MAX_HEADERS, MAX_RATE,
    MAX_STEPS, Plan, ScenarioStep, Step, Thresholds, USER_ID_PLACEHOLDER, VIRTUAL_USERS,
};
use crate::error::FieldError;

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
        if self.scenario.is_empty() {
            errors.push(FieldError::new(
                "scenario",
                "must hold at least one request",
            ));
        }
        if self.scenario.len() > MAX_STEPS {
            errors.push(FieldError::new(
                "scenario",
                format!("must hold at most {MAX_STEPS} requests"),
            ));
        }
        let steps: Vec<Step> = (self.scenario.iter().enumerate())
            .filter_map(|(i, s)| s.check(i, &mut errors))
            .collect();
        let virtual_users = self.virtual_users.unwrap_or(0);
        if self.virtual_users.is_some() && !VIRTUAL_USERS.contains(&virtual_users) {
            errors.push(FieldError::new(
                "virtualUsers",
                format!(
                    "must be from {} to {}",
                    VIRTUAL_USERS.start(),
                    VIRTUAL_USERS.end()
                ),
            ));
        }
        // With virtual users and no load model: one worker per user.
        let concurrency = match (self.concurrency, self.rate, self.virtual_users) {
            (None, None, Some(n)) => Some(n.clamp(*VIRTUAL_USERS.start(), *VIRTUAL_USERS.end())),
            (c, _, _) => c,
        };
        let load = check_load(concurrency, self.rate, caps, &mut errors);
        let duration = check_duration(self.duration_seconds, self.requests, caps, &mut errors);
        let ramp_up = Duration::from_secs(u64::from(self.ramp_up_seconds.unwrap_or(0)));
        if let Some(d) = duration
            && !ramp_up.is_zero()
            && ramp_up >= d
        {
            errors.push(FieldError::new(
                "rampUpSeconds",
                "must be shorter than the test",
            ));
        }
        let thresholds = self.thresholds.clone().unwrap_or_default();
        thresholds.check(&mut errors);
        let timeout_ms = self.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
        if !(1..=60_000).contains(&timeout_ms) {
            errors.push(FieldError::new("timeoutMs", "must be from 1 to 60000"));
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
                virtual_users,
                exempt_from_rate_limits: self
                    .exempt_from_rate_limits
                    .unwrap_or(self.virtual_users.is_none()),
            }),
            _ => Err(errors),
        }
    }
}

impl ScenarioStep {
    /// Scenario step `i` as a request to send, if it is valid.
    fn check(&self, i: usize, errors: &mut Vec<FieldError>) -> Option<Step> {
        let at = |f: &str| format!("scenario[{i}].{f}");
        let method = self.method.to_ascii_uppercase();
        let method = if METHODS.contains(&method.as_str()) {
            http::Method::from_str(&method).ok()
        } else {
            errors.push(FieldError::new(
                at("method"),
                format!("must be one of {}", METHODS.join(", ")),
            ));
            None
        };
        // `{userId}` stands for an id: checked with one in its place.
        let sample = self.path.replace(USER_ID_PLACEHOLDER, "u0");
        let path = match parse_path(&sample) {
            Ok(_) => Some(self.path.clone()),
            Err(m) => {
                errors.push(FieldError::new(at("path"), m));
                None
            }
        };
        let weight = self.weight.unwrap_or(1);
        if !(1..=1000).contains(&weight) {
            errors.push(FieldError::new(at("weight"), "must be from 1 to 1000"));
        }
        let body = match &self.body {
            None | Some(Value::Null) => None,
            Some(v) => {
                let bytes = serde_json::to_vec(v).unwrap_or_default();
                if bytes.len() > MAX_BODY_BYTES {
                    errors.push(FieldError::new(
                        at("body"),
                        format!("must be at most {MAX_BODY_BYTES} bytes"),
                    ));
                }
                Some(Bytes::from(bytes))
            }
        };
        let headers = check_headers(
            &at("headers"),
            self.headers.as_ref(),
            body.is_some(),
            errors,
        );
        Some(Step {
            method: method?,
            path: path?,
            body,
            headers,
            weight,
        })
    }
}

/// A step's extra headers, and `Content-Type: application/json` for a body
/// unless given.
fn check_headers(
    field: &str,
    given: Option<&BTreeMap<String, String>>,
    has_body: bool,
    errors: &mut Vec<FieldError>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers = Vec::new();
    if given.map(|h| h.len()).unwrap_or(0) > MAX_HEADERS {
        errors.push(FieldError::new(
            field,
            format!("must hold at most {MAX_HEADERS} headers"),
        ));
    }
    for (name, value) in given.into_iter().flatten() {
        let lower = name.to_ascii_lowercase();
        if FORBIDDEN_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
            errors.push(FieldError::new(
                field,
                format!("{name} cannot be set by a scenario"),
            ));
            continue;
        }
        match (HeaderName::from_str(&lower), HeaderValue::from_str(value)) {
            (Ok(n), Ok(v)) => headers.push((n, v)),
            _ => errors.push(FieldError::new(
                field,
                format!("{name} is not a valid header"),
            )),
        }
    }
    if has_body && !headers.iter().any(|(n, _)| n == http::header::CONTENT_TYPE) {
        headers.push((
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ));
    }
    headers
}

/// The closed (`concurrency`) or open (`rate`) load model.
fn check_load(
    concurrency: Option<u32>,
    rate: Option<f64>,
    caps: Caps,
    errors: &mut Vec<FieldError>,
) -> Option<Load> {
    if concurrency.is_none() && rate.is_none() {
        errors.push(FieldError::new(
            "concurrency",
            "give `concurrency` or `rate`",
        ));
        return None;
    }
    let c_ok = match concurrency {
        Some(n) if n == 0 || n > caps.max_concurrency => {
            errors.push(FieldError::new(
                "concurrency",
                format!(
                    "must be from 1 to {} (LOADTEST_MAX_CONCURRENCY)",
                    caps.max_concurrency
                ),
            ));
            false
        }
        _ => true,
    };
    match rate {
        None => concurrency.filter(|_| c_ok).map(Load::Concurrency),
        Some(rps) if !(rps.is_finite() && rps > 0.0 && rps <= MAX_RATE) => {
            errors.push(FieldError::new(
                "rate",
                format!("must be above 0 and at most {MAX_RATE}"),
            ));
            None
        }
        Some(rps) => c_ok.then(|| Load::Rate {
            rps,
            max_in_flight: concurrency.unwrap_or_else(|| {
                // Enough in flight for ~50 ms latency at the target.
                ((rps / 20.0).ceil() as u32).clamp(2, caps.max_concurrency.max(1))
            }),
        }),
    }
}

/// The hard stop: the requested duration, or the cap when only a request
/// count was given.
fn check_duration(
    duration_seconds: Option<u32>,
    requests: Option<u64>,
    caps: Caps,
    errors: &mut Vec<FieldError>,
) -> Option<Duration> {
    if duration_seconds.is_none() && requests.is_none() {
        errors.push(FieldError::new(
            "durationSeconds",
            "give `durationSeconds` or `requests`",
        ));
        return None;
    }
    if let Some(n) = requests
        && (n == 0 || n > caps.max_requests)
    {
        errors.push(FieldError::new(
            "requests",
            format!(
                "must be from 1 to {} (LOADTEST_MAX_REQUESTS)",
                caps.max_requests
            ),
        ));
    }
    match duration_seconds {
        Some(s) if s == 0 || s > caps.max_duration_seconds => {
            errors.push(FieldError::new(
                "durationSeconds",
                format!(
                    "must be from 1 to {} (LOADTEST_MAX_DURATION_SECONDS)",
                    caps.max_duration_seconds
                ),
            ));
            None
        }
        Some(s) => Some(Duration::from_secs(u64::from(s))),
        None => Some(Duration::from_secs(u64::from(caps.max_duration_seconds))),
    }
}

impl Thresholds {
    fn check(&self, errors: &mut Vec<FieldError>) {
        for (name, v) in [("p95Ms", self.p95_ms), ("p99Ms", self.p99_ms)] {
            if let Some(v) = v
                && !(v.is_finite() && v > 0.0)
            {
                errors.push(FieldError::new(
                    format!("thresholds.{name}"),
                    "must be a positive number of ms",
                ));
            }
        }
        if let Some(v) = self.error_rate
            && !(v.is_finite() && (0.0..=1.0).contains(&v))
        {
            errors.push(FieldError::new(
                "thresholds.errorRate",
                "must be from 0 to 1",
            ));
        }
    }
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
    fn step_headers_refuse_identity_and_framing_and_type_a_body() {
        let mut errors = Vec::new();
        let given: BTreeMap<String, String> = [
            ("Authorization", "Bearer x"),
            ("Proxy-Foo", "1"),
            ("X-Ok", "yes"),
            ("Bad Name", "v"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let headers = check_headers("h", Some(&given), true, &mut errors);
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["x-ok", "content-type"]);
        assert_eq!(errors.len(), 3);
        assert!(errors.iter().all(|e| e.field == "h"));
        assert!(check_headers("h", None, false, &mut errors).is_empty());
    }

    #[test]
    fn the_load_model_is_concurrency_or_a_rate_with_an_in_flight_cap() {
        let mut errors = Vec::new();
        assert!(matches!(
            check_load(Some(5), None, caps(), &mut errors),
            Some(Load::Concurrency(5))
        ));
        assert!(matches!(
            check_load(None, Some(1000.0), caps(), &mut errors),
            Some(Load::Rate {
                max_in_flight: 50,
                ..
            })
        ));
        assert!(errors.is_empty());
        assert!(check_load(None, None, caps(), &mut errors).is_none());
        assert!(check_load(Some(0), Some(10.0), caps(), &mut errors).is_none());
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["concurrency", "concurrency"]);
    }

    #[test]
    fn a_request_count_alone_runs_for_at_most_the_duration_cap() {
        let mut errors = Vec::new();
        assert_eq!(
            check_duration(None, Some(10), caps(), &mut errors),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            check_duration(Some(5), None, caps(), &mut errors),
            Some(Duration::from_secs(5))
        );
        assert!(errors.is_empty());
        assert_eq!(check_duration(Some(61), Some(0), caps(), &mut errors), None);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["requests", "durationSeconds"]);
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
    fn virtual_users_default_the_workers_and_are_limited_unless_exempted() {
        let plan = req(serde_json::json!({
            "scenario": [{"method": "GET", "path": "/api/users/{userId}"}],
            "virtualUsers": 3, "durationSeconds": 2
        }))
        .validate(caps())
        .unwrap();
        assert_eq!(plan.load, Load::Concurrency(3));
        assert_eq!(plan.virtual_users, 3);
        assert!(!plan.exempt_from_rate_limits);
        assert_eq!(plan.steps[0].path_for("u7").unwrap(), "/api/users/u7");
        let plan = req(serde_json::json!({
            "scenario": [{"method": "GET", "path": "/health"}],
            "virtualUsers": 3, "concurrency": 6, "exemptFromRateLimits": true,
            "durationSeconds": 2
        }))
        .validate(caps())
        .unwrap();
        assert_eq!(plan.load, Load::Concurrency(6));
        assert!(plan.exempt_from_rate_limits);
        // Without virtual users: the admin, exempt as before.
        let plan = req(serde_json::json!({
            "scenario": [{"method": "GET", "path": "/health"}],
            "concurrency": 1, "durationSeconds": 2
        }))
        .validate(caps())
        .unwrap();
        assert_eq!(plan.virtual_users, 0);
        assert!(plan.exempt_from_rate_limits);
        for bad in [0, 51] {
            let f = fields(
                req(serde_json::json!({
                    "scenario": [{"method": "GET", "path": "/health"}],
                    "virtualUsers": bad, "durationSeconds": 2
                }))
                .validate(caps()),
            );
            assert!(f.contains(&"virtualUsers".to_string()), "{bad}: {f:?}");
        }
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
