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
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::mpsc;

use super::model::{
    ChatParams, ChatResult, ErrorBody, ErrorEnvelope, MessageResponse, MessagesRequest, ModelsPage,
    StreamEvent, TokenUsage,
};
use super::sse::SseParser;
use super::upstream::{
    UpstreamError, classify_status, malformed, request_id_of, retry_after_of, retry_delay,
    stream_error, timeout_error,
};
use crate::config::Config;

pub const ANTHROPIC_VERSION: &str = "2023-06-01";

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

/// What one streamed attempt has read so far.
#[derive(Debug)]
struct StreamReading {
    text: String,
    model: String,
    stop_reason: Option<String>,
    /// Text was relayed to the caller: the attempt can no longer be retried.
    relayed: bool,
    input: Option<u64>,
    output: Option<u64>,
}

/// What to do after one stream event.
#[derive(Debug)]
enum Step {
    Continue,
    /// Relay this text to the caller.
    Relay(String),
    /// `message_stop`: the answer is complete.
    Done,
    /// An `error` event (its message is for the log only).
    Failed(ErrorBody),
}

impl StreamReading {
    fn new(model: String) -> Self {
        Self {
            text: String::new(),
            model,
            stop_reason: None,
            relayed: false,
            input: None,
            output: None,
        }
    }

    /// Takes one event into account.
    fn apply(&mut self, event: StreamEvent) -> Step {
        match event {
            StreamEvent::MessageStart { message } => {
                self.model = message.model;
                self.input = message.usage.input().or(self.input);
                self.output = message.usage.output_tokens.or(self.output);
            }
            StreamEvent::ContentBlockDelta { delta } => {
                if delta.type_ == "text_delta"
                    && let Some(piece) = delta.text
                    && !piece.is_empty()
                {
                    self.text.push_str(&piece);
                    self.relayed = true;
                    return Step::Relay(piece);
                }
            }
            StreamEvent::MessageDelta { delta, usage } => {
                if delta.stop_reason.is_some() {
                    self.stop_reason = delta.stop_reason;
                }
                self.input = usage.input().or(self.input);
                self.output = usage.output_tokens.or(self.output);
            }
            StreamEvent::MessageStop {} => return Step::Done,
            StreamEvent::Error { error } => return Step::Failed(error),
            StreamEvent::ContentBlockStart {}
            | StreamEvent::ContentBlockStop {}
            | StreamEvent::Ping {}
            | StreamEvent::Unknown => {}
        }
        Step::Continue
    }

    /// The tokens reported so far (partial streams included).
    fn usage(&self) -> TokenUsage {
        TokenUsage {
            input_tokens: self.input.unwrap_or(0),
            output_tokens: self.output.unwrap_or(0),
        }
    }

    /// The attempt's outcome once reading ended with `end`. A failure after
    /// text was relayed is not retried (the caller already has part of it).
    fn outcome(
        self,
        end: Result<(), UpstreamError>,
        request_id: Option<String>,
    ) -> Result<ChatResult, UpstreamError> {
        let usage = self.usage();
        match end {
            Ok(()) => Ok(ChatResult {
                text: self.text,
                model: self.model,
                stop_reason: self.stop_reason,
                usage,
                request_id,
            }),
            Err(mut e) => {
                if self.relayed {
                    e.retryable = false;
                }
                Err(e)
            }
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

        let mut reading = StreamReading::new(params.model.clone());
        let end = self
            .read_stream(res.bytes_stream(), &mut reading, deltas)
            .await;
        attempt.usage = reading.usage();
        attempt.outcome = reading.outcome(end, request_id);
        attempt
    }

    /// Reads the events of a stream into `reading`, relaying text deltas,
    /// until `message_stop` (`Ok`) or a failure.
    async fn read_stream<B>(
        &self,
        mut body: B,
        reading: &mut StreamReading,
        deltas: &mpsc::Sender<String>,
    ) -> Result<(), UpstreamError>
    where
        B: futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin,
    {
        let mut parser = SseParser::new();
        loop {
            let chunk = match tokio::time::timeout(self.timeout, body.next()).await {
                Err(_) => return Err(timeout_error()),
                Ok(None) => {
                    return Err(UpstreamError::new(
                        "upstream_stream_incomplete",
                        "the Claude API stream ended before message_stop",
                        true,
                    ));
                }
                Ok(Some(Err(e))) => return Err(self.transport_error(&e)),
                Ok(Some(Ok(c))) => c,
            };
            let events = parser.push(&chunk).map_err(|_| malformed())?;
            for ev in events {
                let parsed: StreamEvent =
                    serde_json::from_str(&ev.data).map_err(|_| malformed())?;
                match reading.apply(parsed) {
                    Step::Continue => {}
                    Step::Relay(piece) => {
                        if deltas.send(piece).await.is_err() {
                            return Err(UpstreamError::client_disconnected());
                        }
                    }
                    Step::Done => return Ok(()),
                    Step::Failed(error) => {
                        tracing::warn!(
                            upstream_type = %self.redact(&error.type_),
                            upstream_message = %self.redact(&error.message),
                            "the Claude API stream carried an error event"
                        );
                        return Err(stream_error(&error.type_));
                    }
                }
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: &str) -> StreamEvent {
        serde_json::from_str(json).unwrap()
    }

    fn read(reading: &mut StreamReading, events: &[&str]) -> Vec<String> {
        let mut relayed = Vec::new();
        for e in events {
            if let Step::Relay(piece) = reading.apply(event(e)) {
                relayed.push(piece);
            }
        }
        relayed
    }

    #[test]
    fn a_complete_stream_gives_the_text_model_stop_reason_and_usage() {
        let mut r = StreamReading::new("asked-for".into());
        let relayed = read(
            &mut r,
            &[
                r#"{"type":"message_start","message":{"model":"claude-x","usage":{"input_tokens":7,"cache_read_input_tokens":3,"output_tokens":1}}}"#,
                r#"{"type":"content_block_start"}"#,
                r#"{"type":"ping"}"#,
                r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"Hel"}}"#,
                r#"{"type":"content_block_delta","delta":{"type":"input_json_delta"}}"#,
                r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":""}}"#,
                r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"lo"}}"#,
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":12}}"#,
            ],
        );
        assert_eq!(relayed, ["Hel", "lo"]);
        assert!(matches!(
            r.apply(event(r#"{"type":"message_stop"}"#)),
            Step::Done
        ));
        assert_eq!(
            r.usage(),
            TokenUsage {
                input_tokens: 10,
                output_tokens: 12
            }
        );
        let done = r.outcome(Ok(()), Some("req-1".into())).unwrap();
        assert_eq!(
            (done.text.as_str(), done.model.as_str()),
            ("Hello", "claude-x")
        );
        assert_eq!(done.stop_reason.as_deref(), Some("end_turn"));
        assert_eq!(done.request_id.as_deref(), Some("req-1"));
    }

    #[test]
    fn an_error_event_stops_the_reading_with_its_type() {
        let mut r = StreamReading::new("m".into());
        let step = r.apply(event(
            r#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
        ));
        assert!(matches!(step, Step::Failed(e) if e.type_ == "overloaded_error"));
    }

    #[test]
    fn a_failure_is_retryable_only_before_text_was_relayed() {
        let overloaded = || stream_error("overloaded_error");
        let fresh = StreamReading::new("m".into());
        assert!(
            fresh
                .outcome(Err(overloaded()), None)
                .unwrap_err()
                .retryable
        );

        let mut partial = StreamReading::new("m".into());
        read(
            &mut partial,
            &[r#"{"type":"content_block_delta","delta":{"type":"text_delta","text":"a"}}"#],
        );
        let err = partial.outcome(Err(overloaded()), None).unwrap_err();
        assert_eq!(err.code, "upstream_overloaded");
        assert!(!err.retryable);
    }
}
