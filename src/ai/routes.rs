//! HTTP handlers of the ai domain: `POST /api/claude-ai/chat`.

use std::convert::Infallible;

use axum::extract::FromRef;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::Chat;
use super::model::{ChatDelta, ChatParams, ChatRequest, ChatResult};
use super::{ChatError, Refusal};
use crate::error::{AppError, Problem};
use crate::http::extract::{AuthUser, Json};
use crate::http::request_id::current_request_id;
use crate::ids::UserId;
use crate::jobs::Job;
use crate::sessions::auth::AuthCache;

pub fn router<S>() -> OpenApiRouter<S>
where
    Chat: FromRef<S>,
    AuthCache: FromRef<S>,
    S: Clone + Send + Sync + 'static,
{
    OpenApiRouter::new().routes(routes!(chat))
}

/// Chat with Claude. Answers `202` with an `ai.chat` job (`Location:
/// /api/jobs/{id}`; the job's `result` is a `ChatResult`), or `200` with the
/// finished job under `Prefer: wait=N`. With `"stream": true` it answers a
/// `text/event-stream`: `event: delta` (`{"text"}`) per piece in order, then
/// `event: done` with the `ChatResult`, or `event: error` with a problem.
#[utoipa::path(post, path = "/api/claude-ai/chat", tag = "ai", request_body(content = ChatRequest, example = json!({"message": "Summarise the water cycle in one sentence.", "maxTokens": 256})),
    security(("bearer" = [])),
    params(
        ("Prefer" = Option<String>, Header, description = "`wait=N` (N <= 60): answer the finished job if it completes in time"),
        ("Idempotency-Key" = Option<String>, Header, description = "the same key returns the same job"),
    ),
    responses(
        (status = 200, description = "the finished job under `Prefer: wait` (its `result` is a ChatResult); with `stream: true`, a text/event-stream of `delta` events (`{\"text\"}`), then `done` (ChatResult) or `error` (Problem)",
            content((Job = "application/json"), (String = "text/event-stream"))),
        (status = 202, description = "the chat job was queued; poll Location", body = Job),
        (status = 401, body = Problem),
        (status = 422, description = "invalid fields, a model outside ANTHROPIC_ALLOWED_MODELS, maxTokens above AI_MAX_TOKENS", body = Problem),
        (status = 429, description = "`budget_exhausted`: the daily token budget is spent (Retry-After until 00:00 UTC)", body = Problem),
        (status = 503, description = "`not_configured` (no API key) or `upstream_unavailable` (circuit open, with Retry-After)", body = Problem),
    ))]
async fn chat(
    State(state): State<Chat>,
    user: AuthUser,
    headers: HeaderMap,
    Json(req): Json<ChatRequest>,
) -> Result<Response, Refusal> {
    let requested = req.priority;
    let ((params, stream), priority) =
        crate::jobs::with_priority(req.validate(&state.config), requested, user.is_admin())?;
    // Checked even when a stream makes no job, as the document says.
    if let Some(key) = crate::jobs::idempotency_key(&headers) {
        crate::jobs::check_idempotency_key(&key)?;
    }
    state.ai.admit(&state.db, &user.user_id).await?;
    if stream {
        let reservation = state.ai.reserve_for_request(&user.user_id, &params).await?;
        let permit = state.ai.permit().map_err(AppError::from)?;
        return Ok(stream_chat(
            state,
            user.user_id.clone(),
            params,
            permit,
            reservation,
        ));
    }
    Ok(super::enqueue_chat(&state, &user, &headers, params, priority).await?)
}

/// Relays the upstream stream: the call runs in its own task (so that it is
/// recorded even when the client goes away), deltas flow through a channel
/// in order, and the final event follows the last delta.
fn stream_chat(
    state: Chat,
    user_id: UserId,
    params: ChatParams,
    permit: super::breaker::Permit,
    reservation: super::budget::Reservation,
) -> Response {
    let request_id = current_request_id();
    let (delta_tx, delta_rx) = mpsc::channel::<String>(64);
    let (final_tx, final_rx) = oneshot::channel::<Event>();
    tokio::spawn(async move {
        let result = state
            .ai
            .chat_stream(
                &state.db,
                permit,
                reservation,
                Some(&user_id),
                &params,
                &delta_tx,
            )
            .await;
        drop(delta_tx);
        let _ = final_tx.send(final_event(result, request_id));
    });
    let deltas = futures::stream::unfold(delta_rx, |mut rx| async move {
        let text = rx.recv().await?;
        Some((delta_event(text), rx))
    });
    let last = futures::stream::once(async move {
        final_rx.await.unwrap_or_else(|_| {
            problem_event(
                AppError::Internal(anyhow::anyhow!("stream task ended")),
                None,
            )
        })
    });
    let events = deltas.chain(last).map(Ok::<_, Infallible>);
    let mut res = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    res.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

fn delta_event(text: String) -> Event {
    Event::default()
        .event("delta")
        .json_data(ChatDelta { text })
        .unwrap_or_else(|_| Event::default().event("delta").data("{}"))
}

fn final_event(result: Result<ChatResult, ChatError>, request_id: Option<String>) -> Event {
    match result {
        Ok(r) => Event::default()
            .event("done")
            .json_data(&r)
            .unwrap_or_else(|_| Event::default().event("done").data("{}")),
        Err(e) => problem_event(AppError::from(e), request_id),
    }
}

fn problem_event(err: AppError, request_id: Option<String>) -> Event {
    let mut problem = Problem::new(err.status(), err.code(), err.public_message());
    if problem.request_id.is_none() {
        problem.request_id = request_id;
    }
    Event::default()
        .event("error")
        .json_data(&problem)
        .unwrap_or_else(|_| Event::default().event("error").data("{}"))
}
