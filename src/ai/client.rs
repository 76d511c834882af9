//! The production client of the Anthropic Messages API.
//!
//! `POST {ANTHROPIC_BASE_URL}/v1/messages` with `x-api-key` and
//! `anthropic-version: 2023-06-01`, a connect timeout and a total timeout
//! per attempt (for streams: a timeout for the response head and then for
//! each silence between chunks). Retries follow the official SDKs: connection
//! errors, timeouts, 408, 409, 429 and every 5xx (529 is `overloaded_error`)
//! are retried up to `AI_MAX_RETRIES` times; `x-should-retry: true|false`
//! overrides that; the wait is `retry-after-ms`, else `retry-after` (when
//! within 0-60 s), else `min(0.5 * 2^n, 8)` s minus up to 25 % jitter. A 429
//! whose error says a spend or usage limit was reached is permanent, as are
//! 400, 401, 403, 404 and 413. A stream is retried only before its first
//! text delta was relayed.
//!
//! Errors carry our own wording plus the API's error `type`; the API's
//! message is logged (with the key redacted), never returned.

use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

use super::model::{
    ChatParams, ChatResult, ErrorEnvelope, MessageResponse, MessagesRequest, ModelsPage,
    StreamEvent, TokenUsage,
};
use super::sse::SseParser;
use crate::config::Config;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

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
    fn new(code: &'static str, message: impl Into<String>, retryable: bool) -> Self {
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

/// What one logical call (all its attempts) came to.
#[derive(Debug, Clone)]
pub struct CallReport {
    pub outcome: Result<ChatResult, UpstreamError>,
    /// Upstream attempts made (1 + retries).
    pub attempts: u32,
    /// HTTP status of the last attempt, if one was received.
    pub http_status: Option<u16>,
    /// `request-id` of the last attempt, if one was received.
    pub request_id: Option<String>,
    /// Tokens the API reported over all attempts (partial streams included).
    pub usage: TokenUsage,
    pub latency: Duration,
}

/// One attempt's outcome with what was learnt along the way.
struct Attempt {
    outcome: Result<ChatResult, UpstreamError>,
    http_status: Option<u16>,
    request_id: Option<String>,
    usage: TokenUsage,
}

impl Attempt {
    fn failed(err: UpstreamError) -> Self {
        Self {
            outcome: Err(err),
            http_status: None,
            request_id: None,
            usage: TokenUsage::default(),
        }
    }
}

#[derive(Clone)]
pub struct ClaudeClient {
    http: reqwest::Client,
    base: String,
    key: SecretString,
    timeout: Duration,
    max_retries: u32,
}

impl std::fmt::Debug for ClaudeClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClaudeClient")
            .field("base", &self.base)
            .field("key", &"[REDACTED]")
            .finish()
    }
}

impl ClaudeClient {
    pub fn new(config: &Config, key: SecretString) -> anyhow::Result<Self> {
        crate::init_crypto();
        let http = reqwest::Client::builder()
            .connect_timeout(config.ai_connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .user_agent(concat!("hs-platform/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| anyhow::anyhow!("failed to build the Claude API client: {e}"))?;
        Ok(Self {
            http,
            base: config.anthropic_base_url.clone(),
            key,
            timeout: config.ai_timeout,
            max_retries: config.ai_max_retries,
        })
    }

    fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Ok(mut v) = HeaderValue::from_str(self.key.expose_secret()) {
            v.set_sensitive(true);
            h.insert("x-api-key", v);
        }
        h.insert(
            "anthropic-version",
            HeaderValue::from_static(ANTHROPIC_VERSION),
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h
    }

    /// Replaces the key wherever it might appear in text we log.
    fn redact(&self, text: &str) -> String {
        let key = self.key.expose_secret();
        let mut s: String = text.chars().take(300).collect();
        if !key.is_empty() {
            s = s.replace(key, "[REDACTED]");
        }
        s
    }

    /// One chat, answered as a whole message.
    pub async fn complete(&self, params: &ChatParams) -> CallReport {
        self.with_retries(|| self.complete_once(params)).await
    }

    /// One chat, streamed: every text delta is sent to `deltas` in order.
    /// Retried only until the first delta was sent.
    pub async fn stream(&self, params: &ChatParams, deltas: &mpsc::Sender<String>) -> CallReport {
        self.with_retries(|| self.stream_once(params, deltas)).await
    }

    async fn with_retries<F, Fut>(&self, mut attempt: F) -> CallReport
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Attempt>,
    {
        let started = Instant::now();
        let mut usage = TokenUsage::default();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let a = attempt().await;
            usage.input_tokens += a.usage.input_tokens;
            usage.output_tokens += a.usage.output_tokens;
            if let Err(err) = &a.outcome
                && err.retryable
                && attempts <= self.max_retries
            {
                let delay = retry_delay(attempts - 1, err.retry_after);
                tracing::warn!(
                    code = err.code,
                    http_status = a.http_status,
                    request_id = a.request_id.as_deref(),
                    attempt = attempts,
                    delay_ms = delay.as_millis() as u64,
                    "Claude API call failed; retrying"
                );
                tokio::time::sleep(delay).await;
                continue;
            }
            return CallReport {
                outcome: a.outcome,
                attempts,
                http_status: a.http_status,
                request_id: a.request_id,
                usage,
                latency: started.elapsed(),
            };
        }
    }

    async fn complete_once(&self, params: &ChatParams) -> Attempt {
        let res = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .headers(self.headers())
            .timeout(self.timeout)
            .json(&MessagesRequest::new(params, false))
            .send()
            .await;
        let res = match res {
            Ok(r) => r,
            Err(e) => return Attempt::failed(self.transport_error(&e)),
        };
        let status = res.status().as_u16();
        let request_id = request_id_of(res.headers());
        let headers = res.headers().clone();
        let body = match res.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt {
                    http_status: Some(status),
                    request_id,
                    ..Attempt::failed(self.transport_error(&e))
                };
            }
        };
        if !(200..300).contains(&status) {
            return Attempt {
                http_status: Some(status),
                request_id,
                ..Attempt::failed(self.status_error(status, &headers, &body))
            };
        }
        match serde_json::from_slice::<MessageResponse>(&body) {
            Ok(msg) if msg.type_ == "message" => {
                let usage = msg.usage.to_usage();
                Attempt {
                    outcome: Ok(ChatResult {
                        text: msg.text(),
                        model: msg.model.clone(),
                        stop_reason: msg.stop_reason.clone(),
                        usage,
                        request_id: request_id.clone(),
                    }),
                    http_status: Some(status),
                    request_id,
                    usage,
                }
            }
            _ => {
                tracing::warn!(
                    http_status = status,
                    "the Claude API answered a body that is not a message"
                );
                Attempt {
                    http_status: Some(status),
                    request_id,
                    ..Attempt::failed(malformed())
                }
            }
        }
    }

    async fn stream_once(&self, params: &ChatParams, deltas: &mpsc::Sender<String>) -> Attempt {
        let send = self
            .http
            .post(format!("{}/v1/messages", self.base))
            .headers(self.headers())
            .header("accept", "text/event-stream")
            .json(&MessagesRequest::new(params, true))
            .send();
        let res = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return Attempt::failed(timeout_error()),
            Ok(Err(e)) => return Attempt::failed(self.transport_error(&e)),
            Ok(Ok(r)) => r,
        };
        let status = res.status().as_u16();
        let request_id = request_id_of(res.headers());
        let mut attempt = Attempt {
            http_status: Some(status),
            request_id: request_id.clone(),
            ..Attempt::failed(malformed())
        };
        if !(200..300).contains(&status) {
            let headers = res.headers().clone();
            let body = match tokio::time::timeout(self.timeout, res.bytes()).await {
                Ok(Ok(b)) => b,
                _ => Default::default(),
            };
            attempt.outcome = Err(self.status_error(status, &headers, &body));
            return attempt;
        }

        let mut body = res.bytes_stream();
        let mut parser = SseParser::new();
        let mut text = String::new();
        let mut model = params.model.clone();
        let mut stop_reason = None;
        let mut relayed = false;
        let mut input: Option<u64> = None;
        let mut output: Option<u64> = None;
        let result = 'read: loop {
            let chunk = match tokio::time::timeout(self.timeout, body.next()).await {
                Err(_) => break 'read Err(timeout_error()),
                Ok(None) => {
                    break 'read Err(UpstreamError::new(
                        "upstream_stream_incomplete",
                        "the Claude API stream ended before message_stop",
                        true,
                    ));
                }
                Ok(Some(Err(e))) => break 'read Err(self.transport_error(&e)),
                Ok(Some(Ok(c))) => c,
            };
            let events = match parser.push(&chunk) {
                Ok(ev) => ev,
                Err(_) => break 'read Err(malformed()),
            };
            for ev in events {
                let parsed: StreamEvent = match serde_json::from_str(&ev.data) {
                    Ok(p) => p,
                    Err(_) => break 'read Err(malformed()),
                };
                match parsed {
                    StreamEvent::MessageStart { message } => {
                        model = message.model;
                        input = message.usage.input().or(input);
                        output = message.usage.output_tokens.or(output);
                    }
                    StreamEvent::ContentBlockDelta { delta } => {
                        if delta.type_ == "text_delta"
                            && let Some(piece) = delta.text
                            && !piece.is_empty()
                        {
                            text.push_str(&piece);
                            relayed = true;
                            if deltas.send(piece).await.is_err() {
                                break 'read Err(UpstreamError::client_disconnected());
                            }
                        }
                    }
                    StreamEvent::MessageDelta { delta, usage } => {
                        if delta.stop_reason.is_some() {
                            stop_reason = delta.stop_reason;
                        }
                        input = usage.input().or(input);
                        output = usage.output_tokens.or(output);
                    }
                    StreamEvent::MessageStop {} => break 'read Ok(()),
                    StreamEvent::Error { error } => {
                        tracing::warn!(
                            upstream_type = %self.redact(&error.type_),
                            upstream_message = %self.redact(&error.message),
                            "the Claude API stream carried an error event"
                        );
                        break 'read Err(stream_error(&error.type_));
                    }
                    StreamEvent::ContentBlockStart {}
                    | StreamEvent::ContentBlockStop {}
                    | StreamEvent::Ping {}
                    | StreamEvent::Unknown => {}
                }
            }
        };
        attempt.usage = TokenUsage {
            input_tokens: input.unwrap_or(0),
            output_tokens: output.unwrap_or(0),
        };
        attempt.outcome = match result {
            Ok(()) => Ok(ChatResult {
                text,
                model,
                stop_reason,
                usage: attempt.usage,
                request_id,
            }),
            Err(mut e) => {
                if relayed {
                    e.retryable = false;
                }
                Err(e)
            }
        };
        attempt
    }

    fn transport_error(&self, e: &reqwest::Error) -> UpstreamError {
        tracing::warn!(error = %self.redact(&format!("{e:#}")), "Claude API transport error");
        if e.is_timeout() {
            timeout_error()
        } else if e.is_connect() {
            UpstreamError::new(
                "upstream_unreachable",
                "could not connect to the Claude API",
                true,
            )
        } else {
            UpstreamError::new(
                "upstream_unreachable",
                "the connection to the Claude API failed",
                true,
            )
        }
    }

    fn status_error(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> UpstreamError {
        let envelope = serde_json::from_slice::<ErrorEnvelope>(body).ok();
        let (etype, emsg) = envelope
            .map(|e| (e.error.type_, e.error.message))
            .unwrap_or_default();
        tracing::warn!(
            http_status = status,
            upstream_type = %self.redact(&etype),
            upstream_message = %self.redact(&emsg),
            "the Claude API answered an error"
        );
        let mut err = classify_status(status, &etype, &emsg, headers);
        err.retry_after = retry_after_of(headers);
        err
    }

    /// The model IDs the API lists (`GET /v1/models`, all pages).
    pub async fn list_models(&self) -> Result<Vec<String>, UpstreamError> {
        let mut ids = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..20 {
            let mut url =
                url::Url::parse(&format!("{}/v1/models", self.base)).map_err(|_| malformed())?;
            url.query_pairs_mut().append_pair("limit", "1000");
            if let Some(a) = &after {
                url.query_pairs_mut().append_pair("after_id", a);
            }
            let res = self
                .http
                .get(url)
                .headers(self.headers())
                .timeout(self.timeout)
                .send()
                .await
                .map_err(|e| self.transport_error(&e))?;
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.bytes().await.map_err(|e| self.transport_error(&e))?;
            if !(200..300).contains(&status) {
                return Err(self.status_error(status, &headers, &body));
            }
            let page: ModelsPage = serde_json::from_slice(&body).map_err(|_| malformed())?;
            ids.extend(page.data.into_iter().map(|m| m.id));
            match (page.has_more, page.last_id) {
                (true, Some(last)) => after = Some(last),
                _ => break,
            }
        }
        Ok(ids)
    }

    /// Whether the API knows this model ID or alias (`GET /v1/models/{id}`).
    pub async fn model_exists(&self, model: &str) -> Result<bool, UpstreamError> {
        let url = format!(
            "{}/v1/models/{}",
            self.base,
            url::form_urlencoded::byte_serialize(model.as_bytes()).collect::<String>()
        );
        let res = self
            .http
            .get(url)
            .headers(self.headers())
            .timeout(self.timeout)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        match res.status().as_u16() {
            200..=299 => Ok(true),
            404 => Ok(false),
            status => {
                let headers = res.headers().clone();
                let body = res.bytes().await.unwrap_or_default();
                Err(self.status_error(status, &headers, &body))
            }
        }
    }
}

fn request_id_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
}

fn timeout_error() -> UpstreamError {
    UpstreamError::new(
        "upstream_timeout",
        "the Claude API did not answer in time",
        true,
    )
}

fn malformed() -> UpstreamError {
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
fn stream_error(error_type: &str) -> UpstreamError {
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

/// The wait before retry number `retries_done + 1`.
pub fn retry_delay(retries_done: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(d) = retry_after {
        return d;
    }
    let base = backoff_base(retries_done);
    let jitter = 1.0 - 0.25 * rand::rng().random::<f64>();
    Duration::from_secs_f64(base * jitter)
}

/// `min(0.5 * 2^n, 8)` seconds.
pub fn backoff_base(retries_done: u32) -> f64 {
    (0.5 * 2f64.powi(retries_done.min(30) as i32)).min(8.0)
}

#[cfg(test)]
mod tests {
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
        assert_eq!(backoff_base(0), 0.5);
        assert_eq!(backoff_base(1), 1.0);
        assert_eq!(backoff_base(3), 4.0);
        assert_eq!(backoff_base(4), 8.0);
        assert_eq!(backoff_base(10), 8.0);
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
