//! What an answer of the Claude API means: the error a caller may see, how
//! an HTTP status or a stream's `error` event is classified (the way the
//! official SDKs do), and when to retry.

use std::time::Duration;

use reqwest::header::HeaderMap;

/// Why an upstream call failed, in terms safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamError {
    /// Our stable code: `upstream_auth`, `upstream_invalid_request`,
    /// `upstream_not_found`, `upstream_request_too_large`,
    /// `upstream_spend_limit`, `upstream_rate_limited`,
    /// `upstream_overloaded`, `upstream_error`, `upstream_timeout`,
    /// `upstream_unreachable`, `upstream_malformed`,
    /// `upstream_stream_incomplete`, `client_disconnected`.
    pub code: &'static str,
    /// Our wording (with the API's error type where known).
    pub message: String,
    /// Retrying the same request may succeed.
    pub retryable: bool,
    /// The failure says the API (or our access to it) is unhealthy, so it
    /// counts towards opening the circuit breaker.
    pub unhealthy: bool,
    /// Wait asked for by the API (`retry-after-ms` / `retry-after`).
    pub retry_after: Option<Duration>,
}

impl UpstreamError {
    pub(super) fn new(code: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        Self {
            code,
            message: message.into(),
            retryable,
            unhealthy: retryable,
            retry_after: None,
        }
    }

    /// The caller stopped listening (stream client gone, job cancelled).
    pub fn client_disconnected() -> Self {
        Self {
            unhealthy: false,
            ..Self::new("client_disconnected", "the caller went away", false)
        }
    }
}

pub(super) fn request_id_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
}

pub(super) fn timeout_error() -> UpstreamError {
    UpstreamError::new(
        "upstream_timeout",
        "the Claude API did not answer in time",
        true,
    )
}

pub(super) fn malformed() -> UpstreamError {
    UpstreamError {
        unhealthy: true,
        ..UpstreamError::new(
            "upstream_malformed",
            "the Claude API answered something that is not a valid message",
            false,
        )
    }
}

/// The API's error types are short identifiers; anything else is not shown.
fn safe_type(t: &str) -> &str {
    if !t.is_empty() && t.len() <= 40 && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        t
    } else {
        "unknown_error"
    }
}

/// Whether an error message says a spend or usage limit (not a rate limit)
/// was reached: waiting seconds will not help.
pub fn is_spend_limit(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    [
        "spend limit",
        "spending limit",
        "usage limit",
        "credit balance",
        "billing",
    ]
    .iter()
    .any(|needle| m.contains(needle))
}

/// Classifies an HTTP error answer the way the official SDKs do.
pub fn classify_status(
    status: u16,
    error_type: &str,
    error_message: &str,
    headers: &HeaderMap,
) -> UpstreamError {
    let t = safe_type(error_type);
    let mut err = match status {
        401 | 403 => UpstreamError {
            unhealthy: true,
            ..UpstreamError::new(
                "upstream_auth",
                format!("the Claude API refused our credentials ({t}); check ANTHROPIC_API_KEY"),
                false,
            )
        },
        400 | 422 => UpstreamError::new(
            "upstream_invalid_request",
            format!("the Claude API rejected the request ({t})"),
            false,
        ),
        404 => UpstreamError::new(
            "upstream_not_found",
            format!("the Claude API does not know this model or endpoint ({t})"),
            false,
        ),
        413 => UpstreamError::new(
            "upstream_request_too_large",
            format!("the request is too large for the Claude API ({t})"),
            false,
        ),
        429 if is_spend_limit(error_message) => UpstreamError {
            unhealthy: true,
            ..UpstreamError::new(
                "upstream_spend_limit",
                "the Claude API spend or usage limit of this account was reached",
                false,
            )
        },
        429 => UpstreamError::new(
            "upstream_rate_limited",
            format!("the Claude API is rate limiting us ({t})"),
            true,
        ),
        529 => UpstreamError::new(
            "upstream_overloaded",
            format!("the Claude API is overloaded ({t})"),
            true,
        ),
        408 | 409 | 500..=599 => UpstreamError::new(
            "upstream_error",
            format!("the Claude API failed with HTTP {status} ({t})"),
            true,
        ),
        _ => UpstreamError::new(
            "upstream_error",
            format!("the Claude API answered HTTP {status} ({t})"),
            false,
        ),
    };
    if err.code != "upstream_spend_limit" {
        match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
            Some("true") => err.retryable = true,
            Some("false") => err.retryable = false,
            _ => {}
        }
    }
    err
}

/// An `error` event inside a stream that began with HTTP 200.
pub(super) fn stream_error(error_type: &str) -> UpstreamError {
    let t = safe_type(error_type);
    match t {
        "overloaded_error" => UpstreamError::new(
            "upstream_overloaded",
            "the Claude API is overloaded (overloaded_error)",
            true,
        ),
        "rate_limit_error" => UpstreamError::new(
            "upstream_rate_limited",
            "the Claude API is rate limiting us (rate_limit_error)",
            true,
        ),
        "api_error" | "timeout_error" => UpstreamError::new(
            "upstream_error",
            format!("the Claude API failed during the stream ({t})"),
            true,
        ),
        _ => UpstreamError {
            unhealthy: true,
            ..UpstreamError::new(
                "upstream_error",
                format!("the Claude API stream failed ({t})"),
                false,
            )
        },
    }
}

/// `retry-after-ms` (milliseconds), else `retry-after` (seconds or an HTTP
/// date), honoured only within (0, 60] s like the SDKs.
pub fn retry_after_of(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let secs = get("retry-after-ms")
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|ms| ms / 1000.0)
        .or_else(|| {
            let v = get("retry-after")?.trim();
            v.parse::<f64>().ok().or_else(|| {
                let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
                let d = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
                Some(d.num_milliseconds() as f64 / 1000.0)
            })
        })?;
    (secs.is_finite() && secs > 0.0 && secs <= 60.0).then(|| Duration::from_secs_f64(secs))
}

/// The SDKs' first wait, doubled per retry...
pub const RETRY_BASE: Duration = Duration::from_millis(500);
/// ...up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(8);

/// The wait before retry number `retries_done + 1`: what the API asked for,
/// else `min(0.5 * 2^n, 8)` s less up to 25 % jitter, like the SDKs.
pub fn retry_delay(retries_done: u32, retry_after: Option<Duration>) -> Duration {
    retry_after.unwrap_or_else(|| {
        crate::retry::backoff(retries_done, RETRY_BASE, RETRY_MAX, rand::random())
    })
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn backoff_doubles_from_half_a_second_up_to_eight() {
        let base = |n| crate::retry::exponential(n, RETRY_BASE, RETRY_MAX).as_secs_f64();
        assert_eq!(base(0), 0.5);
        assert_eq!(base(1), 1.0);
        assert_eq!(base(3), 4.0);
        assert_eq!(base(4), 8.0);
        assert_eq!(base(10), 8.0);
        for _ in 0..100 {
            let d = retry_delay(1, None).as_secs_f64();
            assert!((0.75..=1.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after_and_is_bounded() {
        let h = headers(&[("retry-after-ms", "200"), ("retry-after", "5")]);
        assert_eq!(retry_after_of(&h), Some(Duration::from_millis(200)));
        let h = headers(&[("retry-after", "3")]);
        assert_eq!(retry_after_of(&h), Some(Duration::from_secs(3)));
        assert_eq!(retry_after_of(&headers(&[("retry-after", "120")])), None);
        assert_eq!(retry_after_of(&headers(&[("retry-after", "0")])), None);
        assert_eq!(retry_after_of(&headers(&[("retry-after", "soon")])), None);
        let date = (chrono::Utc::now() + chrono::Duration::seconds(10)).to_rfc2822();
        let d = retry_after_of(&headers(&[("retry-after", &date)])).unwrap();
        assert!(d > Duration::from_secs(5) && d <= Duration::from_secs(10));
        assert_eq!(
            retry_delay(0, Some(Duration::from_millis(200))),
            Duration::from_millis(200)
        );
    }

    #[test]
    fn statuses_are_classified_like_the_sdks() {
        let none = HeaderMap::new();
        for s in [408, 409, 429, 500, 502, 503, 529] {
            assert!(classify_status(s, "x", "", &none).retryable, "{s}");
        }
        for s in [400, 401, 403, 404, 413, 422] {
            assert!(!classify_status(s, "x", "", &none).retryable, "{s}");
        }
        assert_eq!(
            classify_status(529, "overloaded_error", "", &none).code,
            "upstream_overloaded"
        );
        assert_eq!(
            classify_status(401, "authentication_error", "", &none).code,
            "upstream_auth"
        );
    }

    #[test]
    fn x_should_retry_overrides_the_status() {
        let yes = headers(&[("x-should-retry", "true")]);
        let no = headers(&[("x-should-retry", "false")]);
        assert!(classify_status(400, "x", "", &yes).retryable);
        assert!(!classify_status(529, "x", "", &no).retryable);
    }

    #[test]
    fn a_spend_limit_429_is_never_retried() {
        let yes = headers(&[("x-should-retry", "true")]);
        let err = classify_status(
            429,
            "rate_limit_error",
            "You have reached your specified API usage limits.",
            &yes,
        );
        assert_eq!(err.code, "upstream_spend_limit");
        assert!(!err.retryable);
        assert!(
            classify_status(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your per-minute rate limit",
                &HeaderMap::new()
            )
            .retryable
        );
    }

    #[test]
    fn odd_error_types_are_not_echoed() {
        let err = classify_status(400, "<script>alert(1)</script>", "", &HeaderMap::new());
        assert!(err.message.contains("unknown_error"));
        assert!(!err.message.contains("script"));
    }
}
