//! AI chat through the stand-in Claude server: jobs, `Prefer: wait`,
//! streaming, retries, failures, the circuit breaker, budgets, accounting.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Row;

use crate::fake_claude::{FAKE_KEY, FakeClaude, Reply};
use crate::helpers::{TestApp, assert_problem, error_fields, spawn_app_with, wait_until};

/// Settings that keep AI tests fast: short timeouts, quick job retries.
const FAST: &[(&str, &str)] = &[
    ("AI_MAX_RETRIES", "2"),
    ("AI_TIMEOUT_SECONDS", "5"),
    ("AI_CONNECT_TIMEOUT_SECONDS", "2"),
    ("JOB_RETRY_BASE_MS", "50"),
    ("JOB_RETRY_MAX_MS", "200"),
    ("JOB_POLL_INTERVAL_MS", "50"),
];

/// The service pointed at `fake`, with `FAST` and then `extra` settings.
async fn spawn_ai_app(fake: &FakeClaude, extra: &[(&str, &str)]) -> TestApp {
    let fake_env = fake.env();
    let mut settings: Vec<(&str, &str)> = fake_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    settings.extend_from_slice(FAST);
    settings.extend_from_slice(extra);
    spawn_app_with(&settings).await
}

/// Status and headers of an answer whose body was consumed.
struct Head {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
}

/// A parsed Server-Sent Event.
#[derive(Debug)]
struct Sse {
    event: String,
    data: Value,
}

impl TestApp {
    async fn chat(&self, token: &str, body: Value) -> reqwest::Response {
        self.post("/api/claude-ai/chat", Some(token), body).await
    }

    async fn chat_wait(&self, token: &str, body: Value, secs: u64) -> reqwest::Response {
        self.client
            .post(self.url("/api/claude-ai/chat"))
            .bearer_auth(token)
            .header("prefer", format!("wait={secs}"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Posts a streamed chat and reads the whole event stream.
    async fn chat_stream(&self, token: &str, mut body: Value) -> (Head, Vec<Sse>) {
        body["stream"] = json!(true);
        let res = self.chat(token, body).await;
        let head = Head {
            status: res.status(),
            headers: res.headers().clone(),
        };
        let text = res.text().await.unwrap();
        let events = text
            .split("\n\n")
            .filter_map(|block| {
                let mut event = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                Some(Sse {
                    event: event?,
                    data: serde_json::from_str(&data).unwrap_or(Value::Null),
                })
            })
            .collect();
        (head, events)
    }

    /// Every `ai_calls` row, oldest first, as JSON objects.
    async fn ai_calls(&self) -> Vec<Value> {
        let rows = sqlx::query(
            "SELECT user_id, job_id, model, input_tokens, output_tokens, latency_ms, outcome,
                    error_code, http_status, upstream_request_id, stop_reason, streamed, attempts
             FROM ai_calls ORDER BY created_at, id",
        )
        .fetch_all(&self.state.db.reader)
        .await
        .unwrap();
        rows.iter()
            .map(|r| {
                json!({
                    "userId": r.get::<Option<String>, _>("user_id"),
                    "jobId": r.get::<Option<String>, _>("job_id"),
                    "model": r.get::<String, _>("model"),
                    "inputTokens": r.get::<i64, _>("input_tokens"),
                    "outputTokens": r.get::<i64, _>("output_tokens"),
                    "latencyMs": r.get::<i64, _>("latency_ms"),
                    "outcome": r.get::<String, _>("outcome"),
                    "errorCode": r.get::<Option<String>, _>("error_code"),
                    "httpStatus": r.get::<Option<i64>, _>("http_status"),
                    "requestId": r.get::<Option<String>, _>("upstream_request_id"),
                    "stopReason": r.get::<Option<String>, _>("stop_reason"),
                    "streamed": r.get::<i64, _>("streamed"),
                    "attempts": r.get::<i64, _>("attempts"),
                })
            })
            .collect()
    }

    /// Waits until `n` ai_calls rows exist (streams record after the answer).
    async fn wait_ai_calls(&self, n: usize) -> Vec<Value> {
        wait_until(&format!("{n} ai_calls rows"), async || {
            let rows = self.ai_calls().await;
            if rows.len() >= n {
                Ok(rows)
            } else {
                Err(Value::from(rows))
            }
        })
        .await
    }
}

fn location(res: &reqwest::Response) -> String {
    res.headers()
        .get("location")
        .expect("Location header")
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn chat_is_answered_end_to_end_as_a_job() {
    let fake = FakeClaude::start().await;
    fake.push(Reply::answer("Paris is the capital of France."));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let res = app
        .chat(
            &user.token,
            json!({"message": "What is the capital of France?", "system": "Be brief.",
                   "temperature": 0.2, "maxTokens": 100}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let loc = location(&res);
    let job: Value = res.json().await.unwrap();
    assert_eq!(loc, format!("/api/jobs/{}", job["id"].as_str().unwrap()));
    assert_eq!(job["kind"], "ai.chat");

    let done = app.wait_job(job["id"].as_str().unwrap(), &user.token).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let result = &done["result"];
    assert_eq!(result["text"], "Paris is the capital of France.");
    assert_eq!(result["model"], "claude-sonnet-4-5");
    assert_eq!(result["stopReason"], "end_turn");
    assert_eq!(result["usage"]["inputTokens"], 11);
    assert_eq!(result["usage"]["outputTokens"], 6);

    // The upstream request is the real Messages API shape.
    let sent = fake.message_requests();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.headers["x-api-key"], FAKE_KEY);
    assert_eq!(req.headers["anthropic-version"], "2023-06-01");
    assert_eq!(
        req.body,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "system": "Be brief.",
               "temperature": 0.2,
               "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    );

    // One ledger row, attributed to the user and the job, with the request id.
    let rows = app.ai_calls().await;
    assert_eq!(rows.len(), 1);
    let row = &rows[0];
    assert_eq!(row["userId"], user.id.as_str());
    assert_eq!(row["jobId"], job["id"]);
    assert_eq!(row["outcome"], "succeeded");
    assert_eq!(row["httpStatus"], 200);
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["streamed"], 0);
    assert_eq!(row["inputTokens"], 11);
    assert_eq!(row["outputTokens"], 6);
    assert_eq!(row["stopReason"], "end_turn");
    assert!(row["requestId"].as_str().unwrap().starts_with("req_"));
    assert_eq!(row["requestId"], result["requestId"]);
}

#[tokio::test]
async fn chat_with_prefer_wait_answers_the_finished_job() {
    let fake = FakeClaude::start().await;
    fake.push(Reply::answer("Four."));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let res = app
        .chat_wait(
            &user.token,
            json!({"messages": [
                {"role": "user", "content": "2+2?"},
                {"role": "assistant", "content": "Let me think."},
                {"role": "user", "content": "Answer in one word."}],
                "model": "claude-haiku-4-5"}),
            10,
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(res.headers().contains_key("location"));
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["result"]["text"], "Four.");
    assert_eq!(job["result"]["model"], "claude-haiku-4-5");
    assert_eq!(
        fake.message_requests()[0].body["messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn a_stream_relays_the_deltas_in_order_then_done_with_usage() {
    let fake = FakeClaude::start().await;
    fake.push(Reply::stream(&["Once ", "upon ", "a ", "time."]));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let (res, events) = app
        .chat_stream(&user.token, json!({"message": "Tell me a story"}))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["delta", "delta", "delta", "delta", "done"]);
    let texts: Vec<&str> = events[..4]
        .iter()
        .map(|e| e.data["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["Once ", "upon ", "a ", "time."]);
    let done = &events[4].data;
    assert_eq!(done["text"], "Once upon a time.");
    assert_eq!(done["model"], "claude-sonnet-4-5");
    assert_eq!(done["stopReason"], "end_turn");
    assert_eq!(done["usage"]["inputTokens"], 7);
    assert_eq!(done["usage"]["outputTokens"], 4);
    assert!(done["requestId"].as_str().unwrap().starts_with("req_"));

    assert_eq!(fake.message_requests()[0].body["stream"], true);
    let rows = app.wait_ai_calls(1).await;
    assert_eq!(rows[0]["streamed"], 1);
    assert_eq!(rows[0]["outcome"], "succeeded");
    assert_eq!(rows[0]["outputTokens"], 4);
    assert_eq!(rows[0]["jobId"], Value::Null);
}

#[tokio::test]
async fn an_error_event_after_deltas_ends_the_stream_with_an_error_and_no_retry() {
    let fake = FakeClaude::start().await;
    fake.push(Reply::stream_then_error(
        &["Half ", "an "],
        "overloaded_error",
    ));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let (_, events) = app
        .chat_stream(&user.token, json!({"message": "Tell me a story"}))
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["delta", "delta", "error"]);
    let problem = &events[2].data;
    assert_eq!(problem["code"], "upstream_overloaded");
    assert_eq!(problem["status"], 503);
    assert!(problem["requestId"].is_string(), "{problem}");
    // Text was already relayed: retrying would repeat it.
    assert_eq!(fake.message_calls(), 1);
    let rows = app.wait_ai_calls(1).await;
    assert_eq!(rows[0]["outcome"], "failed");
    assert_eq!(rows[0]["errorCode"], "upstream_overloaded");
}

#[tokio::test]
async fn an_error_event_before_any_delta_is_retried() {
    let fake = FakeClaude::start().await;
    fake.push(Reply::stream_then_error(&[], "overloaded_error"));
    fake.push(Reply::stream(&["Fine ", "now."]));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let (_, events) = app
        .chat_stream(&user.token, json!({"message": "Hello"}))
        .await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["delta", "delta", "done"]);
    assert_eq!(events[2].data["text"], "Fine now.");
    assert_eq!(fake.message_calls(), 2);
    let rows = app.wait_ai_calls(1).await;
    assert_eq!(rows[0]["attempts"], 2);
}

#[tokio::test]
async fn a_stream_whose_reader_goes_away_is_recorded_as_disconnected() {
    let fake = FakeClaude::start().await;
    fake.push(Reply::slow_stream(
        &["one ", "two ", "three ", "four ", "five"],
        Duration::from_millis(150),
    ));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let mut res = app
        .chat(&user.token, json!({"message": "Count", "stream": true}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut seen = String::new();
    while !seen.contains("event: delta") {
        let chunk = res.chunk().await.unwrap().expect("a delta before the end");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(res);

    let rows = app.wait_ai_calls(1).await;
    assert_eq!(rows[0]["outcome"], "failed");
    assert_eq!(rows[0]["errorCode"], "client_disconnected");
    assert_eq!(rows[0]["streamed"], 1);
    assert_eq!(rows[0]["attempts"], 1);
    assert_eq!(fake.message_calls(), 1);
    // The reader going away says nothing about the API's health.
    assert_eq!(app.state.ai.health().detail, "ok");
}

#[tokio::test]
async fn overloaded_twice_then_success_makes_three_upstream_calls_and_one_answer() {
    let fake = FakeClaude::start().await;
    fake.push(Reply::overloaded());
    fake.push(Reply::overloaded());
    fake.push(Reply::answer("Third time lucky."));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let res = app
        .chat_wait(&user.token, json!({"message": "Hello"}), 20)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["text"], "Third time lucky.");
    // The client retried; the job itself ran once.
    assert_eq!(job["attempts"], 1);
    assert_eq!(fake.message_calls(), 3);
    let rows = app.ai_calls().await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["attempts"], 3);
    assert_eq!(rows[0]["outcome"], "succeeded");
}

#[tokio::test]
async fn a_429_is_retried_after_the_wait_it_asks_for() {
    let fake = FakeClaude::start().await;
    // Far longer than the default first backoff (at most 0.5 s).
    fake.push(Reply::rate_limited_ms(1500));
    fake.push(Reply::answer("Patience pays."));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let res = app
        .chat_wait(&user.token, json!({"message": "Hello"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let sent = fake.message_requests();
    assert_eq!(sent.len(), 2);
    let gap = sent[1].at.duration_since(sent[0].at);
    assert!(
        gap >= Duration::from_millis(1450),
        "retried after {gap:?}, before retry-after-ms"
    );
}

#[tokio::test]
async fn a_spend_limit_429_fails_at_once() {
    let fake = FakeClaude::start().await;
    fake.set_default(Some(Reply::error(
        429,
        "rate_limit_error",
        "You have reached your specified API usage limits. You will regain access on 2026-12-01.",
    )));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let res = app
        .chat_wait(&user.token, json!({"message": "Hello"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "upstream_spend_limit");
    assert_eq!(fake.message_calls(), 1);
}

#[tokio::test]
async fn an_upstream_401_fails_the_job_at_once_without_leaking_the_key() {
    let fake = FakeClaude::start().await;
    let wrong_key = "test-only-wrong-claude-key-7d1e";
    let mut settings: Vec<(&str, &str)> = vec![
        ("ANTHROPIC_API_KEY", wrong_key),
        ("ANTHROPIC_BASE_URL", fake.url.as_str()),
    ];
    settings.extend_from_slice(FAST);
    let app = spawn_app_with(&settings).await;
    let user = app.new_user().await;

    let res = app
        .chat_wait(&user.token, json!({"message": "Hello"}), 20)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let text = res.text().await.unwrap();
    let job: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["attempts"], 1);
    assert_eq!(job["error"]["code"], "upstream_auth");
    assert_eq!(fake.message_calls(), 1, "a 401 is not retried");
    assert_eq!(
        fake.message_requests()[0].headers["x-api-key"],
        wrong_key,
        "the configured key was sent"
    );

    // The key is nowhere: not in the answer, the job, the stream, the database.
    assert!(!text.contains(wrong_key));
    let polled = app
        .get_job(job["id"].as_str().unwrap(), &user.token)
        .await
        .text()
        .await
        .unwrap();
    assert!(!polled.contains(wrong_key));
    let (_, events) = app
        .chat_stream(&user.token, json!({"message": "Hello"}))
        .await;
    assert_eq!(events.last().unwrap().event, "error");
    assert_eq!(events.last().unwrap().data["code"], "upstream_auth");
    assert!(!format!("{:?}", events).contains(wrong_key));
    app.wait_ai_calls(2).await;
    let _ = sqlx::query("PRAGMA wal_checkpoint(FULL)")
        .execute(&app.state.db.writer)
        .await;
    for suffix in ["", "-wal"] {
        let path = format!("{}{suffix}", app.db_path().display());
        if let Ok(bytes) = std::fs::read(&path) {
            let hay = String::from_utf8_lossy(&bytes);
            assert!(!hay.contains(wrong_key), "the key is in {path}");
        }
    }
    assert!(!format!("{:?}", app.state.config).contains(wrong_key));
}

#[tokio::test]
async fn malformed_upstream_json_fails_the_job_clearly() {
    let fake = FakeClaude::start().await;
    fake.set_default(Some(Reply::malformed()));
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;

    let res = app
        .chat_wait(&user.token, json!({"message": "Hello"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "upstream_malformed");
    assert!(
        job["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a valid message")
    );
    assert_eq!(fake.message_calls(), 1);
    let rows = app.ai_calls().await;
    assert_eq!(rows[0]["errorCode"], "upstream_malformed");
    assert_eq!(rows[0]["httpStatus"], 200);
}

#[tokio::test]
async fn a_hung_upstream_times_out_and_fails_the_job() {
    let fake = FakeClaude::start().await;
    fake.set_default(Some(Reply::Hang));
    let app = spawn_ai_app(
        &fake,
        &[("AI_TIMEOUT_SECONDS", "1"), ("AI_MAX_RETRIES", "0")],
    )
    .await;
    let user = app.new_user().await;

    let res = app.chat(&user.token, json!({"message": "Hello"})).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let job: Value = res.json().await.unwrap();
    let done = app.wait_job(job["id"].as_str().unwrap(), &user.token).await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["code"], "upstream_timeout");
    // A timeout is worth another try: the job made both its attempts.
    assert_eq!(done["attempts"], 2);
    assert_eq!(fake.message_calls(), 2);

    // A stream whose upstream hangs ends with an error event too.
    let (_, events) = app
        .chat_stream(&user.token, json!({"message": "Hello"}))
        .await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "error");
    assert_eq!(events[0].data["code"], "upstream_timeout");
    assert_eq!(events[0].data["status"], 504);
}

#[tokio::test]
async fn the_breaker_opens_after_repeated_failures_then_a_probe_closes_it() {
    let fake = FakeClaude::start().await;
    fake.set_default(Some(Reply::error(
        500,
        "api_error",
        "Internal server error",
    )));
    let app = spawn_ai_app(
        &fake,
        &[
            ("AI_MAX_RETRIES", "0"),
            ("AI_BREAKER_FAILURES", "2"),
            ("AI_BREAKER_COOLDOWN_SECONDS", "1"),
        ],
    )
    .await;
    let user = app.new_user().await;
    assert_eq!(app.state.ai.health().breaker, "closed");

    // One job, two attempts, two upstream failures: the breaker opens.
    let res = app
        .chat_wait(&user.token, json!({"message": "Hello"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(fake.message_calls(), 2);
    assert_eq!(app.state.ai.health().breaker, "open");

    // Refused at once, without upstream calls and without a job.
    let res = app.chat(&user.token, json!({"message": "Hello"})).await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=1).contains(&retry_after));
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable").await;
    let (res, _) = app
        .chat_stream(&user.token, json!({"message": "Hello"}))
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(res.headers.contains_key("retry-after"));
    assert_eq!(fake.message_calls(), 2);
    let jobs: Value = app.get_json("/api/jobs?kind=ai.chat", &user.token).await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1);

    // After the cool-down, one probe succeeds and closes it.
    fake.set_default(None);
    wait_until("the breaker to half-open after its cool-down", async || {
        let breaker = app.state.ai.health().breaker;
        if breaker == "half_open" {
            Ok(())
        } else {
            Err(breaker)
        }
    })
    .await;
    let res = app
        .chat_wait(&user.token, json!({"message": "Hello"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(fake.message_calls(), 3);
    assert_eq!(app.state.ai.health().breaker, "closed");
    let res = app
        .chat_wait(&user.token, json!({"message": "Again"}), 20)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn without_an_api_key_chat_answers_503_not_configured() {
    let app = spawn_app_with(&[]).await;
    let user = app.new_user().await;
    let res = app.chat(&user.token, json!({"message": "Hello"})).await;
    let body = assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "not_configured").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("ANTHROPIC_API_KEY")
    );
    let res = app
        .chat(&user.token, json!({"message": "Hello", "stream": true}))
        .await;
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "not_configured").await;
    let health = app.state.ai.health();
    assert!(!health.configured);
    // No job was created.
    let jobs: Value = app.get_json("/api/jobs", &user.token).await;
    assert!(jobs["items"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn chat_needs_authentication() {
    let app = spawn_app_with(&[]).await;
    let res = app
        .post("/api/claude-ai/chat", None, json!({"message": "Hello"}))
        .await;
    assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
}

#[tokio::test]
async fn invalid_chats_are_422_with_the_fields_at_fault() {
    let fake = FakeClaude::start().await;
    let app = spawn_ai_app(&fake, &[("AI_MAX_TOKENS", "1000")]).await;
    let user = app.new_user().await;

    let res = app
        .chat(&user.token, json!({"message": "Hello", "model": "gpt-4o"}))
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "model");

    let res = app
        .chat(
            &user.token,
            json!({"message": "Hello", "maxTokens": 1001, "temperature": 2}),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = error_fields(&body);
    assert_eq!(fields, ["maxTokens", "temperature"]);

    let res = app
        .chat(&user.token, json!({"message": "x".repeat(100_001)}))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let res = app
        .chat(
            &user.token,
            json!({"messages": [{"role": "system", "content": "x"}]}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;

    let res = app
        .chat(&user.token, json!({"message": "Hello", "max_tokens": 5}))
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "max_tokens", "{body}");

    assert_eq!(fake.message_calls(), 0);
}

#[tokio::test]
async fn a_spent_daily_budget_answers_429_until_midnight() {
    let fake = FakeClaude::start().await;
    let app = spawn_ai_app(&fake, &[("AI_DAILY_TOKEN_BUDGET", "10")]).await;
    let user = app.new_user().await;
    let other = app.new_user().await;

    // The first chat is admitted and spends more than the budget.
    let res = app
        .chat_wait(&user.token, json!({"message": "Hello there"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let used = job["result"]["usage"]["inputTokens"].as_u64().unwrap()
        + job["result"]["usage"]["outputTokens"].as_u64().unwrap();
    assert!(used >= 10);

    let res = app.chat(&user.token, json!({"message": "More"})).await;
    let retry_after: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=86_400).contains(&retry_after));
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "budget_exhausted").await;
    let res = app
        .chat(&user.token, json!({"message": "More", "stream": true}))
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "budget_exhausted").await;
    assert_eq!(fake.message_calls(), 1);

    // The budget is per user.
    let res = app
        .chat_wait(&other.token, json!({"message": "Hi"}), 20)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn parallel_chats_against_a_small_budget_reach_upstream_only_as_often_as_it_allows() {
    let fake = FakeClaude::start().await;
    // Every answer costs 5 input + 30 output tokens.
    fake.set_default(Some(Reply::answer(&"word ".repeat(30))));
    let app = spawn_ai_app(&fake, &[("AI_DAILY_TOKEN_BUDGET", "100")]).await;
    let attacker = app.new_user().await;
    // Each call reserves its input estimate (16) plus maxTokens (40) = 56.
    let body = json!({"message": "Hello there", "maxTokens": 40});
    let jobs = (0..12).map(|_| app.chat_wait(&attacker.token, body.clone(), 30));
    let streams = (0..12).map(|_| app.chat_stream(&attacker.token, body.clone()));
    let (jobs, streams) = tokio::join!(
        futures::future::join_all(jobs),
        futures::future::join_all(streams)
    );

    let mut answered = 0;
    for res in jobs {
        if res.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "budget_exhausted").await;
            continue;
        }
        assert_eq!(res.status(), StatusCode::OK);
        let job: Value = res.json().await.unwrap();
        match job["status"].as_str() {
            Some("succeeded") => answered += 1,
            _ => assert_eq!(job["error"]["code"], "budget_exhausted", "{job}"),
        }
    }
    for (head, events) in streams {
        if head.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(head.headers.contains_key("retry-after"));
            continue;
        }
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(events.last().unwrap().event, "done", "{events:?}");
        answered += 1;
    }
    // A call starts only while used + reserved < 100, and each uses 35:
    // at most (100 + 56) / 35 = 4 calls, whatever the interleaving.
    let calls = fake.message_calls();
    assert!((1..=4).contains(&calls), "{calls} calls reached upstream");
    assert_eq!(answered, calls);

    // Another account's budget is its own.
    let other = app.new_user().await;
    let res = app.chat_wait(&other.token, body.clone(), 30).await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
}

#[tokio::test]
async fn a_global_budget_stops_every_account_once_spent() {
    let fake = FakeClaude::start().await;
    let app = spawn_ai_app(&fake, &[("AI_GLOBAL_DAILY_TOKEN_BUDGET", "10")]).await;
    let first = app.new_user().await;
    let second = app.new_user().await;
    let res = app
        .chat_wait(&first.token, json!({"message": "Hello there"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["status"], "succeeded", "{job}");
    let res = app.chat(&second.token, json!({"message": "Hi"})).await;
    assert!(res.headers().contains_key("retry-after"));
    let body = assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "budget_exhausted").await;
    assert!(
        body["detail"].as_str().unwrap().contains("service's"),
        "{body}"
    );
    assert_eq!(fake.message_calls(), 1);
}

#[tokio::test]
async fn token_usage_appears_in_the_user_profile_statistics() {
    let fake = FakeClaude::start().await;
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;
    let res = app
        .chat_wait(&user.token, json!({"message": "Count my tokens"}), 20)
        .await;
    let job: Value = res.json().await.unwrap();
    let usage = job["result"]["usage"].clone();

    // Profiles are cached for a few seconds: poll.
    let profile = wait_until("the profile's stats to show the call", async || {
        let profile: Value = app
            .get_user(&user.id, &user.token)
            .await
            .json()
            .await
            .unwrap();
        if profile["stats"]["aiCalls"] == 1 {
            Ok(profile)
        } else {
            Err(profile)
        }
    })
    .await;
    let stats = &profile["stats"];
    assert_eq!(stats["aiInputTokens"], usage["inputTokens"]);
    assert_eq!(stats["aiOutputTokens"], usage["outputTokens"]);
}

#[tokio::test]
async fn another_users_chat_job_is_not_found() {
    let fake = FakeClaude::start().await;
    let app = spawn_ai_app(&fake, &[]).await;
    let owner = app.new_user().await;
    let stranger = app.new_user().await;
    let res = app.chat(&owner.token, json!({"message": "Secret"})).await;
    let job: Value = res.json().await.unwrap();
    let res = app
        .get_job(job["id"].as_str().unwrap(), &stranger.token)
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_chat_job() {
    let fake = FakeClaude::start().await;
    let app = spawn_ai_app(&fake, &[]).await;
    let user = app.new_user().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let res = app
            .client
            .post(app.url("/api/claude-ai/chat"))
            .bearer_auth(&user.token)
            .header("idempotency-key", "chat-42")
            .header("prefer", "wait=10")
            .json(&json!({"message": "Once only"}))
            .send()
            .await
            .unwrap();
        let job: Value = res.json().await.unwrap();
        ids.push(job["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids[0], ids[1]);
    assert_eq!(fake.message_calls(), 1);
}

#[tokio::test]
async fn configured_models_are_checked_against_the_models_api_at_start_up() {
    let fake = FakeClaude::start().await;
    let app = spawn_ai_app(
        &fake,
        &[(
            "ANTHROPIC_ALLOWED_MODELS",
            "claude-sonnet-4-5,claude-haiku-4-5-20251001,claude-retired-3-0",
        )],
    )
    .await;
    let health = wait_until("the retired model to be reported", async || {
        let health = app.state.ai.health();
        if health.detail.contains("claude-retired-3-0") {
            Ok(health)
        } else {
            Err(format!("{health:?}"))
        }
    })
    .await;
    assert!(health.configured);
    assert!(!health.detail.contains("claude-sonnet-4-5,"));
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/v1/models".to_string()), "{paths:?}");
    // The alias is not listed; it was resolved individually and exists.
    assert!(paths.contains(&"/v1/models/claude-sonnet-4-5".to_string()));
    assert_eq!(
        app.state.ai.health().detail,
        "configured models unknown to the Claude API: claude-retired-3-0"
    );
}
