//! AI chat through the Anthropic Claude Messages API: the production client with retries, a circuit breaker, token accounting and budgets, and the chat endpoint.
//!
//! A chat is admitted only when a key is configured (else 503
//! `not_configured`), the breaker is not open (else 503
//! `upstream_unavailable` + `Retry-After`, without calling upstream) and the
//! user's daily token budget is not spent (else 429 `budget_exhausted` +
//! `Retry-After` until UTC midnight). It then runs as an `ai.chat` job, or is
//! streamed to the client as Server-Sent Events. Each upstream call first
//! reserves its input estimate plus `maxTokens` from the budgets
//! ([`budget`]) and settles its real usage after. Every upstream call (after
//! its retries) writes one `ai_calls` row and updates the metrics.

pub mod breaker;
pub mod budget;
pub mod client;
pub mod db;
pub mod model;
pub mod routes;
pub mod sse;
pub mod upstream;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::breaker::{Breaker, Permit};
use self::budget::{Budgets, Exhausted, Reservation};
use self::client::{CallReport, ClaudeClient};
pub use self::model::AiHealth;
use self::model::{ChatParams, ChatResult};
use self::upstream::UpstreamError;
use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::ids::UserId;
use crate::jobs::{JobContext, JobError, NewJob, Queue, Registry};

/// The AI dependency: client (when a key is configured), breaker, limits.
#[derive(Clone, Debug)]
pub struct AiService {
    inner: Arc<Inner>,
}

/// The ai domain's service for its route: exactly the handles it needs.
#[derive(Clone)]
pub struct Chat {
    pub db: Db,
    pub config: Arc<Config>,
    pub ai: AiService,
    /// Non-streamed chats are jobs.
    pub jobs: Queue,
}

#[derive(Debug)]
struct Inner {
    client: Option<ClaudeClient>,
    breaker: Arc<Breaker>,
    budgets: Arc<Budgets>,
    /// The ledger the budgets are seeded from.
    db: Db,
    models: Vec<String>,
    /// Configured models the Models API did not know at start-up.
    unknown_models: Mutex<Vec<String>>,
    /// Upstream failures are tracked with the service's other errors.
    monitor: crate::monitoring::Monitor,
    /// Ledger writes that outlive their stream run under the service's
    /// tracker, so that shutdown waits for them.
    tasks: TaskTracker,
}

/// Why a chat did not produce an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatError {
    /// No `ANTHROPIC_API_KEY`.
    NotConfigured,
    /// The breaker is open; retry after this long.
    BreakerOpen(Duration),
    Upstream(UpstreamError),
}

impl ChatError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::BreakerOpen(_) => "upstream_unavailable",
            Self::Upstream(e) => e.code,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Self::NotConfigured => {
                "AI chat is not configured on this server (ANTHROPIC_API_KEY is unset)".into()
            }
            Self::BreakerOpen(d) => format!(
                "the Claude API is failing; calls are paused for {} s",
                d.as_secs().max(1)
            ),
            Self::Upstream(e) => e.message.clone(),
        }
    }
}

impl From<ChatError> for AppError {
    fn from(err: ChatError) -> Self {
        match err {
            ChatError::NotConfigured => AppError::Unavailable {
                code: "not_configured",
                message: err.message(),
                retry_after: None,
            },
            ChatError::BreakerOpen(d) => AppError::Unavailable {
                code: "upstream_unavailable",
                message: err.message(),
                retry_after: Some(d),
            },
            ChatError::Upstream(e) => AppError::Problem {
                status: match e.code {
                    "upstream_timeout" => StatusCode::GATEWAY_TIMEOUT,
                    "upstream_auth"
                    | "upstream_spend_limit"
                    | "upstream_overloaded"
                    | "upstream_rate_limited"
                    | "upstream_unreachable" => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::BAD_GATEWAY,
                },
                code: e.code,
                message: e.message,
            },
        }
    }
}

/// An error answer that may carry `Retry-After` whatever its code (the
/// budget's 429 is not the rate limiter's `rate_limited`).
#[derive(Debug)]
pub struct Refusal {
    pub error: AppError,
    pub retry_after: Option<Duration>,
}

impl From<AppError> for Refusal {
    fn from(error: AppError) -> Self {
        Self {
            error,
            retry_after: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut res = self.error.into_response();
        if let Some(d) = self.retry_after {
            let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

/// 429 `budget_exhausted` with `Retry-After` until the budget renews.
fn budget_refusal(e: Exhausted) -> Refusal {
    Refusal {
        error: AppError::Problem {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "budget_exhausted",
            message: e.message(),
        },
        retry_after: Some(e.retry_after),
    }
}

impl AiService {
    pub fn new(
        config: &Config,
        db: Db,
        monitor: crate::monitoring::Monitor,
        tasks: TaskTracker,
    ) -> anyhow::Result<Self> {
        let client = match &config.anthropic_api_key {
            Some(key) => Some(ClaudeClient::new(config, key.clone())?),
            None => None,
        };
        let mut models = vec![config.anthropic_model.clone()];
        for m in &config.anthropic_allowed_models {
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                breaker: Breaker::new(config.ai_breaker_failures, config.ai_breaker_cooldown),
                budgets: Budgets::new(
                    config.ai_daily_token_budget,
                    config.ai_global_daily_token_budget,
                ),
                db,
                models,
                unknown_models: Mutex::new(Vec::new()),
                monitor,
                tasks,
            }),
        })
    }

    pub fn is_configured(&self) -> bool {
        self.inner.client.is_some()
    }

    /// The state of the AI dependency, for monitoring.
    pub fn health(&self) -> AiHealth {
        let breaker = self.inner.breaker.state_name();
        let detail = if !self.is_configured() {
            "ANTHROPIC_API_KEY is not set: chat answers 503 not_configured".to_string()
        } else {
            match breaker {
                "open" => format!(
                    "circuit open after repeated upstream failures; calls refused for {} s",
                    self.inner
                        .breaker
                        .check()
                        .err()
                        .unwrap_or_default()
                        .as_secs()
                        .max(1)
                ),
                "half_open" => "cool-down over: the next call probes the Claude API".into(),
                _ => {
                    let unknown = self
                        .inner
                        .unknown_models
                        .lock()
                        .map(|u| u.clone())
                        .unwrap_or_default();
                    let failures = self.inner.breaker.failures();
                    if !unknown.is_empty() {
                        format!(
                            "configured models unknown to the Claude API: {}",
                            unknown.join(", ")
                        )
                    } else if failures > 0 {
                        format!("ok ({failures} consecutive failures)")
                    } else {
                        "ok".into()
                    }
                }
            }
        };
        AiHealth {
            configured: self.is_configured(),
            breaker: breaker.to_string(),
            detail,
        }
    }

    /// The checks before a chat is accepted: configured, breaker not open,
    /// budget not spent. Takes no breaker permit.
    pub async fn admit(&self, db: &Db, user_id: &UserId) -> Result<(), Refusal> {
        if !self.is_configured() {
            return Err(AppError::from(ChatError::NotConfigured).into());
        }
        if let Err(wait) = self.inner.breaker.check() {
            return Err(AppError::from(ChatError::BreakerOpen(wait)).into());
        }
        self.inner
            .budgets
            .check(db, Some(user_id))
            .await
            .map_err(AppError::from)?
            .map_err(budget_refusal)?;
        Ok(())
    }

    /// Reserves a call's input estimate plus its `maxTokens` from the
    /// budgets: the outer error is the database's (seeding the ledger), the
    /// inner one a spent budget.
    pub async fn reserve(
        &self,
        user_id: Option<&UserId>,
        params: &ChatParams,
    ) -> sqlx::Result<Result<Reservation, Exhausted>> {
        self.inner
            .budgets
            .reserve(&self.inner.db, user_id, budget::reservation_for(params))
            .await
    }

    /// [`AiService::reserve`] for a request: 429 `budget_exhausted`.
    pub async fn reserve_for_request(
        &self,
        user_id: &UserId,
        params: &ChatParams,
    ) -> Result<Reservation, Refusal> {
        self.reserve(Some(user_id), params)
            .await
            .map_err(AppError::from)?
            .map_err(budget_refusal)
    }

    /// A breaker permit for one call, or why there is none.
    pub fn permit(&self) -> Result<Permit, ChatError> {
        if !self.is_configured() {
            return Err(ChatError::NotConfigured);
        }
        self.inner.breaker.acquire().map_err(ChatError::BreakerOpen)
    }

    /// Runs one chat as a whole message (the job path). Its `ai_calls` row
    /// is committed with the job attempt's outcome, in one transaction.
    pub async fn chat(
        &self,
        job: &JobContext,
        params: &ChatParams,
        reservation: Reservation,
    ) -> Result<ChatResult, ChatError> {
        let permit = self.permit()?;
        let client = self.inner.client.as_ref().ok_or(ChatError::NotConfigured)?;
        let report = client.complete(params).await;
        self.finish(permit, reservation, Ledger::WithJob(job), params, report)
            .await
    }

    /// Runs one streamed chat with an already taken permit and reservation;
    /// text deltas go to `deltas` in order. Records the call.
    pub async fn chat_stream(
        &self,
        db: &Db,
        permit: Permit,
        reservation: Reservation,
        user_id: Option<&UserId>,
        params: &ChatParams,
        deltas: &mpsc::Sender<String>,
    ) -> Result<ChatResult, ChatError> {
        let client = self.inner.client.as_ref().ok_or(ChatError::NotConfigured)?;
        let report = client.stream(params, deltas).await;
        let ledger = Ledger::Stream {
            db,
            user_id: user_id.cloned(),
        };
        self.finish(permit, reservation, ledger, params, report)
            .await
    }

    /// The breaker's verdict, the `ai_calls` row and the metrics of a call.
    async fn finish(
        &self,
        permit: Permit,
        reservation: Reservation,
        ledger: Ledger<'_>,
        params: &ChatParams,
        report: CallReport,
    ) -> Result<ChatResult, ChatError> {
        let (user_id, job_id, streamed) = match &ledger {
            Ledger::WithJob(job) => (job.user_id.as_ref(), Some(&job.id), false),
            Ledger::Stream { user_id, .. } => (user_id.as_ref(), None, true),
        };
        match &report.outcome {
            Ok(_) => permit.success(),
            Err(e) if e.code == "client_disconnected" => drop(permit),
            Err(e) if e.unhealthy => permit.failure(),
            // The API answered (e.g. a 400 for this request): it is up.
            Err(_) => permit.success(),
        }
        // Tokens a failed call used count too; the rest is released.
        reservation.settle(
            report
                .usage
                .input_tokens
                .saturating_add(report.usage.output_tokens),
        );
        let (outcome, error_code, stop_reason) = match &report.outcome {
            Ok(r) => ("succeeded", None, r.stop_reason.as_deref()),
            Err(e) => ("failed", Some(e.code), None),
        };
        let latency_ms = i64::try_from(report.latency.as_millis()).unwrap_or(i64::MAX);
        if let Err(e) = &report.outcome
            && e.code != "client_disconnected"
        {
            self.inner.monitor.track_error(
                "upstream_failure",
                &format!("anthropic.messages:{}", e.code),
                &e.message,
                serde_json::json!({
                    "model": params.model,
                    "httpStatus": report.http_status,
                    "attempts": report.attempts,
                    "upstreamRequestId": report.request_id,
                    "streamed": streamed,
                    "jobId": job_id,
                }),
                None,
            );
        }
        let row = db::NewCall {
            user_id: user_id.cloned(),
            job_id: job_id.cloned(),
            model: params.model.clone(),
            input_tokens: i64::try_from(report.usage.input_tokens).unwrap_or(i64::MAX),
            output_tokens: i64::try_from(report.usage.output_tokens).unwrap_or(i64::MAX),
            latency_ms,
            outcome,
            error_code,
            http_status: report.http_status.map(i64::from),
            upstream_request_id: report.request_id.clone(),
            stop_reason: stop_reason.map(str::to_owned),
            streamed,
            attempts: i64::from(report.attempts),
        };
        match ledger {
            // A job's result becomes visible together with its call's row.
            Ledger::WithJob(job) => job.commit_with_outcome(Box::new(move |conn| {
                Box::pin(async move {
                    db::insert_call(conn, &row)
                        .await
                        .context("failed to record an AI call")?;
                    Ok(())
                })
            })),
            // The stream's final event need not wait for the ledger write.
            Ledger::Stream { db, .. } => {
                let db = db.clone();
                self.inner.tasks.spawn(async move {
                    let recorded = async {
                        let mut conn = db.writer.acquire().await?;
                        db::insert_call(&mut conn, &row).await
                    }
                    .await;
                    if let Err(e) = recorded {
                        tracing::error!(error = %e, "failed to record an AI call");
                    }
                });
            }
        }
        let model = params.model.clone();
        metrics::counter!("hs_ai_calls_total", "model" => model.clone(), "outcome" => outcome)
            .increment(1);
        metrics::counter!("hs_ai_tokens_total", "model" => model.clone(), "direction" => "input")
            .increment(report.usage.input_tokens);
        metrics::counter!("hs_ai_tokens_total", "model" => model.clone(), "direction" => "output")
            .increment(report.usage.output_tokens);
        metrics::histogram!("hs_ai_call_duration_seconds", "model" => model, "outcome" => outcome)
            .record(report.latency.as_secs_f64());
        tracing::info!(
            model = %params.model,
            outcome,
            error_code,
            attempts = report.attempts,
            latency_ms,
            input_tokens = report.usage.input_tokens,
            output_tokens = report.usage.output_tokens,
            request_id = report.request_id.as_deref(),
            streamed,
            "AI call finished"
        );
        report.outcome.map_err(ChatError::Upstream)
    }

    /// Checks the configured models against the Models API and logs an
    /// error naming each one the API does not know.
    pub async fn check_models(&self) {
        let Some(client) = &self.inner.client else {
            return;
        };
        let listed = match client.list_models().await {
            Ok(ids) => ids,
            Err(e) if e.code == "upstream_auth" => {
                tracing::error!(
                    "the Claude API refused ANTHROPIC_API_KEY at start-up: every chat will fail"
                );
                return;
            }
            Err(e) => {
                tracing::warn!(
                    code = e.code,
                    "could not list the Claude models at start-up"
                );
                return;
            }
        };
        let mut unknown = Vec::new();
        for model in &self.inner.models {
            if listed.contains(model) {
                continue;
            }
            // Aliases (`claude-sonnet-4-5`) are not listed but resolve.
            match client.model_exists(model).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::error!(
                        model = %model,
                        "configured Claude model does not exist (check ANTHROPIC_MODEL and ANTHROPIC_ALLOWED_MODELS): every call with it will fail"
                    );
                    unknown.push(model.clone());
                }
                Err(e) => {
                    tracing::warn!(model = %model, code = e.code, "could not check a Claude model");
                }
            }
        }
        if unknown.is_empty() {
            tracing::info!(models = ?self.inner.models, "configured Claude models exist");
        }
        if let Ok(mut u) = self.inner.unknown_models.lock() {
            *u = unknown;
        }
    }
}

/// Starts this domain's background work: the start-up check of the
/// configured models (non-blocking).
pub fn spawn_workers(ai: &AiService, tracker: &TaskTracker, shutdown: CancellationToken) {
    if !ai.is_configured() {
        tracing::warn!("ANTHROPIC_API_KEY is not set: AI chat answers 503 not_configured");
        return;
    }
    let ai = ai.clone();
    tracker.spawn(async move {
        tokio::select! {
            () = shutdown.cancelled() => {}
            () = ai.check_models() => {}
        }
    });
}

/// The job kind of a non-streamed chat.
pub const CHAT_JOB: &str = "ai.chat";

/// Attempts of a chat job. Each attempt already retries upstream
/// `AI_MAX_RETRIES` times, so the queue adds one more try at most.
pub const CHAT_JOB_ATTEMPTS: i64 = 2;

/// Queues a chat job and answers it per the API convention (202 + Location,
/// or the finished job under `Prefer: wait=N`).
/// A chat job reports progress ("asking Claude") once its call has taken
/// this long.
const PROGRESS_AFTER: Duration = Duration::from_millis(250);

/// Where a call's `ai_calls` row goes.
enum Ledger<'a> {
    /// With the outcome of the job that made the call.
    WithJob(&'a JobContext),
    /// Written on its own, in the background (a streamed chat).
    Stream { db: &'a Db, user_id: Option<UserId> },
}

pub async fn enqueue_chat(
    state: &Chat,
    user: &crate::sessions::auth::Principal,
    headers: &axum::http::HeaderMap,
    params: ChatParams,
    priority: i64,
) -> Result<Response, AppError> {
    let payload = serde_json::to_value(&params).map_err(|e| {
        AppError::Internal(anyhow::Error::new(e).context("failed to encode a chat"))
    })?;
    let job = state
        .jobs
        .enqueue(
            NewJob::new(CHAT_JOB, payload)
                .owner(&user.user_id)
                .priority(priority)
                .max_attempts(CHAT_JOB_ATTEMPTS)
                .max_pending(state.jobs.max_pending_per_user())
                .idempotency_key(crate::jobs::idempotency_key(headers)),
        )
        .await?;
    crate::jobs::respond(&state.jobs, headers, job).await
}

/// Registers the `ai.chat` job handler: one upstream call (with the
/// client's retries); its result is the `ChatResult`.
pub fn register_jobs(registry: &mut Registry, ai: &AiService) {
    let ai = ai.clone();
    registry.register(CHAT_JOB, move |ctx| chat_job(ai.clone(), ctx));
}

async fn chat_job(ai: AiService, ctx: JobContext) -> Result<serde_json::Value, JobError> {
    let params: ChatParams = ctx.payload()?;
    // Reserved when the call is about to run, not when it was queued: queued
    // chats cannot together pass the budget either.
    let reservation = ai
        .reserve(ctx.user_id.as_ref(), &params)
        .await
        .map_err(|e| JobError::from(anyhow::Error::new(e)))?
        .map_err(|e| JobError::fail("budget_exhausted", e.message()))?;
    let call = ai.chat(&ctx, &params, reservation);
    // Progress is only worth a write when the answer takes a while.
    let announce = async {
        tokio::time::sleep(PROGRESS_AFTER).await;
        ctx.progress(10, "asking Claude").await;
        std::future::pending::<std::convert::Infallible>().await
    };
    let result = tokio::select! {
        r = call => r,
        never = announce => match never {},
        () = ctx.cancel.cancelled() => {
            return Err(JobError::retry("cancelled", "the chat was interrupted"));
        }
    };
    match result {
        Ok(r) => serde_json::to_value(r)
            .map_err(|e| JobError::fail("internal", format!("failed to encode the answer: {e}"))),
        Err(e) => Err(job_error(e)),
    }
}

/// Permanent upstream errors fail the job at once; retryable ones (the
/// client's own retries already spent) go back to the queue.
fn job_error(err: ChatError) -> JobError {
    let (code, message) = (err.code(), err.message());
    match err {
        ChatError::NotConfigured => JobError::fail(code, message),
        ChatError::BreakerOpen(wait) => JobError::retry_after(code, message, wait),
        ChatError::Upstream(e) if e.retryable => match e.retry_after {
            Some(wait) => JobError::retry_after(code, message, wait),
            None => JobError::retry(code, message),
        },
        ChatError::Upstream(_) => JobError::fail(code, message),
    }
}
