//! A stand-in for the Anthropic Messages API: a real HTTP server on loopback
//! that checks `x-api-key`, `anthropic-version` and the request body like the
//! real API, answers the real JSON, error and SSE shapes with a `request-id`
//! header, is scriptable per request, and records what it received.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// The key the fake accepts.
pub const FAKE_KEY: &str = "test-only-fake-claude-key-do-not-leak-4f9c";

/// Model IDs the fake's Models API lists; their aliases resolve too.
pub const MODELS: &[(&str, &str)] = &[
    ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("claude-opus-4-5-20251101", "claude-opus-4-5"),
    ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
];

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A normal answer with this text, as JSON or as a stream, whichever
    /// the request asked for.
    Answer(String),
    /// A complete HTTP answer.
    Http {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// `200 text/event-stream`: each chunk is written after its delay.
    Sse { chunks: Vec<(Duration, String)> },
    /// Never answers (the connection stays open).
    Hang,
}

impl Reply {
    pub fn answer(text: &str) -> Self {
        Self::Answer(text.to_string())
    }

    /// An error with the real body `{"type":"error","error":{type,message}}`.
    pub fn error(status: u16, error_type: &str, message: &str) -> Self {
        Self::Http {
            status,
            headers: vec![],
            body: json!({"type": "error", "error": {"type": error_type, "message": message}})
                .to_string(),
        }
    }

    pub fn overloaded() -> Self {
        Self::error(529, "overloaded_error", "Overloaded")
    }

    /// A 429 rate limit asking for a wait of `ms` milliseconds.
    pub fn rate_limited_ms(ms: u64) -> Self {
        Self::error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
        .with_header("retry-after-ms", &ms.to_string())
        .with_header("retry-after", "1")
    }

    /// `200 application/json` whose body is not JSON.
    pub fn malformed() -> Self {
        Self::Http {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: "{\"id\": \"msg_01\", \"type\": \"message\", \"content\": [".into(),
        }
    }

    /// A stream of these text pieces (10 ms apart), ending normally.
    pub fn stream(pieces: &[&str]) -> Self {
        Self::Sse {
            chunks: sse_events(pieces, None)
                .into_iter()
                .map(|c| (Duration::from_millis(10), c))
                .collect(),
        }
    }

    /// A stream of these pieces with `delay` before each event.
    pub fn slow_stream(pieces: &[&str], delay: Duration) -> Self {
        Self::Sse {
            chunks: sse_events(pieces, None)
                .into_iter()
                .map(|c| (delay, c))
                .collect(),
        }
    }

    /// A stream of these pieces, then an `error` event of this type.
    pub fn stream_then_error(pieces: &[&str], error_type: &str) -> Self {
        Self::Sse {
            chunks: sse_events(pieces, Some(error_type))
                .into_iter()
                .map(|c| (Duration::from_millis(10), c))
                .collect(),
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        if let Self::Http { headers, .. } = &mut self {
            headers.push((name.to_string(), value.to_string()));
        }
        self
    }
}

/// A request the fake received.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: Instant,
}

struct Inner {
    queue: Mutex<VecDeque<Reply>>,
    default: Mutex<Option<Reply>>,
    requests: Mutex<Vec<Recorded>>,
}

pub struct FakeClaude {
    pub url: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeClaude {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeClaude {
    pub async fn start() -> Self {
        let inner = Arc::new(Inner {
            queue: Mutex::new(VecDeque::new()),
            default: Mutex::new(None),
            requests: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/models", get(list_models))
            .route("/v1/models/{id}", get(get_model))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, inner, task }
    }

    /// Queues a reply for the next `POST /v1/messages`.
    pub fn push(&self, reply: Reply) {
        self.inner.queue.lock().unwrap().push_back(reply);
    }

    /// The reply used when the queue is empty (`None`: a normal answer).
    pub fn set_default(&self, reply: Option<Reply>) {
        *self.inner.default.lock().unwrap() = reply;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// The `POST /v1/messages` requests received.
    pub fn message_requests(&self) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/messages")
            .collect()
    }

    pub fn message_calls(&self) -> usize {
        self.message_requests().len()
    }

    /// Settings that point the service at this fake with its key.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ANTHROPIC_API_KEY", FAKE_KEY.to_string()),
            ("ANTHROPIC_BASE_URL", self.url.clone()),
        ]
    }
}

fn record(inner: &Inner, method: &str, path: &str, headers: &HeaderMap, body: &Bytes) {
    let body = serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()));
    inner.requests.lock().unwrap().push(Recorded {
        method: method.into(),
        path: path.into(),
        headers: headers.clone(),
        body,
        at: Instant::now(),
    });
}

fn request_id() -> String {
    format!("req_{}", uuid::Uuid::new_v4().simple())
}

fn error_response(status: u16, error_type: &str, message: &str) -> Response {
    let body = json!({"type": "error", "error": {"type": error_type, "message": message}});
    let mut res = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    res.headers_mut()
        .insert("request-id", request_id().parse().unwrap());
    res
}

/// The checks the real API makes before anything else: the rejection, if any.
fn check_headers(headers: &HeaderMap) -> Option<Response> {
    if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(FAKE_KEY) {
        return Some(error_response(
            401,
            "authentication_error",
            "invalid x-api-key",
        ));
    }
    match headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
    {
        Some("2023-06-01") => None,
        Some(_) => Some(error_response(
            400,
            "invalid_request_error",
            "anthropic-version: invalid version",
        )),
        None => Some(error_response(
            400,
            "invalid_request_error",
            "anthropic-version: header is required",
        )),
    }
}

/// The body checks of the real API (the subset hs-platform uses).
fn check_body(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("body: expected an object")?;
    const KNOWN: &[&str] = &[
        "model",
        "max_tokens",
        "messages",
        "system",
        "temperature",
        "stream",
        "metadata",
        "stop_sequences",
        "top_p",
        "top_k",
    ];
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(format!("{k}: Extra inputs are not permitted"));
    }
    match obj.get("model").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => {}
        _ => return Err("model: Field required".into()),
    }
    match obj.get("max_tokens").and_then(Value::as_u64) {
        Some(n) if n >= 1 => {}
        _ => return Err("max_tokens: Field required".into()),
    }
    let messages = obj
        .get("messages")
        .and_then(Value::as_array)
        .ok_or("messages: Field required")?;
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
        match m.get("content") {
            Some(Value::String(s)) if !s.is_empty() => {}
            Some(Value::Array(a)) if !a.is_empty() => {}
            _ => return Err(format!("messages.{i}.content: Field required")),
        }
    }
    if messages[0].get("role").and_then(Value::as_str) != Some("user") {
        return Err("messages: first message must use the \"user\" role".into());
    }
    if let Some(t) = obj.get("temperature") {
        match t.as_f64() {
            Some(t) if (0.0..=1.0).contains(&t) => {}
            _ => return Err("temperature: must be between 0 and 1".into()),
        }
    }
    if let Some(s) = obj.get("system")
        && !s.is_string()
        && !s.is_array()
    {
        return Err("system: Input should be a valid string".into());
    }
    if let Some(s) = obj.get("stream")
        && !s.is_boolean()
    {
        return Err("stream: Input should be a valid boolean".into());
    }
    Ok(())
}

/// Deterministic token counts: words of the request and of the answer.
fn input_tokens(body: &Value) -> u64 {
    let mut text = body["system"].as_str().unwrap_or("").to_string();
    for m in body["messages"].as_array().into_iter().flatten() {
        text.push(' ');
        text.push_str(m["content"].as_str().unwrap_or(""));
    }
    text.split_whitespace().count() as u64 + 3
}

async fn messages(State(inner): State<Arc<Inner>>, headers: HeaderMap, body: Bytes) -> Response {
    record(&inner, "POST", "/v1/messages", &headers, &body);
    if let Some(res) = check_headers(&headers) {
        return res;
    }
    let json: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return error_response(400, "invalid_request_error", "body: invalid JSON"),
    };
    if let Err(msg) = check_body(&json) {
        return error_response(400, "invalid_request_error", &msg);
    }
    let reply = inner
        .queue
        .lock()
        .unwrap()
        .pop_front()
        .or_else(|| inner.default.lock().unwrap().clone())
        .unwrap_or_else(|| Reply::answer("Hello from the fake Claude."));
    let streamed = json["stream"].as_bool().unwrap_or(false);
    let model = json["model"].as_str().unwrap_or_default().to_string();
    let input = input_tokens(&json);
    match reply {
        Reply::Hang => std::future::pending().await,
        Reply::Http {
            status,
            headers,
            body,
        } => {
            let mut res = (StatusCode::from_u16(status).unwrap(), body).into_response();
            res.headers_mut()
                .insert("content-type", "application/json".parse().unwrap());
            res.headers_mut()
                .insert("request-id", request_id().parse().unwrap());
            for (k, v) in headers {
                res.headers_mut().insert(
                    axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            res
        }
        Reply::Answer(text) if !streamed => {
            let output = text.split_whitespace().count() as u64;
            let body = json!({
                "id": format!("msg_{}", uuid::Uuid::new_v4().simple()),
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": output,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
            });
            let mut res = (
                StatusCode::OK,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response();
            res.headers_mut()
                .insert("request-id", request_id().parse().unwrap());
            res
        }
        Reply::Answer(text) => {
            let pieces: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            sse_response(
                sse_events_for(&model, input, &refs, None)
                    .into_iter()
                    .map(|c| (Duration::from_millis(5), c))
                    .collect(),
            )
        }
        Reply::Sse { chunks } => {
            // Scripted streams carry a placeholder model and input count.
            let chunks = chunks
                .into_iter()
                .map(|(d, c)| {
                    (
                        d,
                        c.replace("__MODEL__", &model)
                            .replace("\"__INPUT__\"", &input.to_string()),
                    )
                })
                .collect();
            sse_response(chunks)
        }
    }
}

fn sse_response(chunks: Vec<(Duration, String)>) -> Response {
    let stream = futures::stream::unfold(chunks.into_iter(), |mut it| async move {
        let (delay, chunk) = it.next()?;
        tokio::time::sleep(delay).await;
        Some((Ok::<_, Infallible>(Bytes::from(chunk)), it))
    });
    let mut res = Response::new(Body::from_stream(stream));
    res.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    res.headers_mut()
        .insert("cache-control", "no-cache".parse().unwrap());
    res.headers_mut()
        .insert("request-id", request_id().parse().unwrap());
    res
}

fn event(name: &str, data: Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// The real event sequence for these pieces; with `error`, an error event
/// replaces the end of the message.
fn sse_events(pieces: &[&str], error: Option<&str>) -> Vec<String> {
    sse_events_for("__MODEL__", 0, pieces, error)
        .into_iter()
        .map(|c| c.replace("\"input_tokens\":0", "\"input_tokens\":\"__INPUT__\""))
        .collect()
}

fn sse_events_for(model: &str, input: u64, pieces: &[&str], error: Option<&str>) -> Vec<String> {
    let mut out = vec![
        event(
            "message_start",
            json!({"type": "message_start", "message": {
                "id": format!("msg_{}", uuid::Uuid::new_v4().simple()), "type": "message",
                "role": "assistant", "content": [], "model": model,
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": input, "output_tokens": 1}}}),
        ),
        event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "text", "text": ""}}),
        ),
        event("ping", json!({"type": "ping"})),
    ];
    for p in pieces {
        out.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "text_delta", "text": p}}),
        ));
    }
    if let Some(t) = error {
        out.push(event(
            "error",
            json!({"type": "error", "error": {"type": t, "message": "Overloaded"}}),
        ));
        return out;
    }
    out.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(event(
        "message_delta",
        json!({"type": "message_delta",
               "delta": {"stop_reason": "end_turn", "stop_sequence": null},
               "usage": {"output_tokens": pieces.len()}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

async fn list_models(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    record(&inner, "GET", uri.path(), &headers, &Bytes::new());
    if let Some(res) = check_headers(&headers) {
        return res;
    }
    let data: Vec<Value> = MODELS
        .iter()
        .map(|(id, _)| {
            json!({"type": "model", "id": id, "display_name": id,
                   "created_at": "2025-09-29T00:00:00Z"})
        })
        .collect();
    let body = json!({"data": data, "has_more": false,
        "first_id": MODELS[0].0, "last_id": MODELS[MODELS.len() - 1].0});
    axum::Json(body).into_response()
}

async fn get_model(
    State(inner): State<Arc<Inner>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    record(
        &inner,
        "GET",
        &format!("/v1/models/{id}"),
        &headers,
        &Bytes::new(),
    );
    if let Some(res) = check_headers(&headers) {
        return res;
    }
    match MODELS.iter().find(|(m, alias)| *m == id || *alias == id) {
        Some((m, _)) => axum::Json(json!({"type": "model", "id": m, "display_name": m,
                                          "created_at": "2025-09-29T00:00:00Z"}))
        .into_response(),
        None => error_response(404, "not_found_error", &format!("model: {id}")),
    }
}
