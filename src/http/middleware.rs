//! What happens to every request around its handler, in one middleware so
//! that the stack stays short (each `from_fn` layer costs a clone of the
//! inner service and a boxed future per request): the request id, a tracing
//! span, caller identification, the logging of internal causes (once,
//! here), error responses normalised to problem+json, security headers, and
//! the hand-over to monitoring. Panics are turned into 500s by the
//! `CatchPanicLayer` inside it.

use std::any::Any;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::error::{InternalCause, PROBLEM_JSON, Panicked, Problem};
use crate::http::route::route_of;
use crate::http::{csrf, request_id};
use crate::monitoring;
use crate::monitoring::observe::method_label;
use crate::state::AppState;

/// The outermost middleware. Assigns the request id (returned in
/// `x-request-id` and visible to error bodies), opens the request span,
/// identifies the caller, runs the rest of the stack, normalises error
/// responses, adds the security headers, logs the cause of any 500 and hands
/// the request to monitoring (request log, metrics, live statistics, error
/// tracking).
pub async fn edge(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let (request_id, id_header) = request_id::assign(req.headers());
    let is_docs = req.uri().path() == "/docs";
    let route = state
        .monitor
        .live()
        .route(method_label(req.method()), route_of(&req));
    // At debug level only: a span costs its fields' formatting and the JSON
    // layer's bookkeeping on every request even when no event fires, which
    // at the default `info` was a tenth of `/health`'s throughput. The
    // events below that fire at `info` carry the same fields themselves.
    let span = tracing::debug_span!(
        "request",
        method = route.method,
        route = %route.route,
        request_id = %request_id,
        status = tracing::field::Empty
    );
    let handled = {
        let request_id = request_id.clone();
        async move {
            let (mut parts, body) = req.into_parts();
            let mut record =
                monitoring::observe::Started::new(&state.monitoring, &parts, route, request_id);
            record.caller = monitoring::observe::identify(&state.monitoring, &mut parts).await;
            let res = match csrf::check(&parts.method, &parts.headers, &state.config.cors_origins) {
                Ok(()) => next.run(Request::from_parts(parts, body)).await,
                Err(refused) => refused.into_response(),
            };
            let mut res = problem_errors(res);
            security_headers(&mut res, is_docs);
            let status = res.status();
            tracing::Span::current().record("status", status.as_u16());
            let elapsed = started.elapsed();
            let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
            if let Some(cause) = res.extensions().get::<InternalCause>() {
                tracing::error!(
                    method = record.route.method,
                    route = %record.route.route,
                    request_id = %record.request_id,
                    status = status.as_u16(),
                    cause = %cause.0,
                    elapsed_ms,
                    "request failed"
                );
            } else if status.is_server_error() {
                tracing::warn!(
                    method = record.route.method,
                    route = %record.route.route,
                    request_id = %record.request_id,
                    status = status.as_u16(),
                    elapsed_ms,
                    "request answered with a server error"
                );
            } else {
                tracing::debug!(elapsed_ms, "request finished");
            }
            monitoring::observe::finish(&state.monitoring, record, elapsed, &res);
            res
        }
        .instrument(span)
    };
    let mut res = request_id::scope(request_id, handled).await;
    res.headers_mut().insert(request_id::HEADER, id_header);
    res
}

/// Error responses that did not come from `AppError` (axum's 404 and 405,
/// timeouts, limits) are rewritten as problem+json with a stable code.
fn problem_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_problem = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return res;
    }
    let (parts, _) = res.into_parts();
    let code = code_for_status(status);
    let detail = match status {
        StatusCode::NOT_FOUND => "no route matches this path".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "this path does not accept that method".to_string(),
        StatusCode::REQUEST_TIMEOUT => "the request took too long to handle".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_string(),
        _ => status.canonical_reason().unwrap_or("error").to_string(),
    };
    let mut new = Problem::new(status, code, detail).into_response_with_status();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            new.headers_mut().insert(name, v.clone());
        }
    }
    new.extensions_mut().extend(parts.extensions);
    new
}

pub fn code_for_status(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        409 => "conflict",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "validation_failed",
        429 => "rate_limited",
        503 => "unavailable",
        507 => "quota_exceeded",
        s if s >= 500 => "internal",
        _ => "invalid_request",
    }
}

/// Security headers on every response. Downloads set their own stricter
/// CSP; the API reference page (`/docs`) needs scripts, so gets none.
fn security_headers(res: &mut Response, is_docs: bool) {
    let h = res.headers_mut();
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) && !is_docs {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

/// Turns a panic into a 500 problem whose cause is logged like any other.
pub fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let message = if let Some(s) = err.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = err.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "unknown panic".to_string()
    };
    let mut res = Problem::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error",
    )
    .into_response_with_status()
    .into_response();
    res.extensions_mut()
        .insert(InternalCause(std::sync::Arc::new(format!(
            "panic: {message}"
        ))));
    res.extensions_mut().insert(Panicked);
    res
}
