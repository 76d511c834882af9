//! What the `observe` middleware asks of monitoring: who is calling
//! (before the handler) and what to record (after it).

use std::sync::Arc;
use std::time::Duration;

use axum::body::HttpBody;
use axum::http::request::Parts;
use axum::http::{Method, header};
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::Monitoring;
use super::live::RouteStats;
use super::model::{RequestRecord, ShortStr};
use crate::error::{InternalCause, Panicked};
use crate::http::client_ip::client_ip;
use crate::http::extract::request_token;
use crate::http::ratelimit::Caller;

/// Header by which the built-in load tester marks its requests:
/// `<loadtest secret>:<test id>`, or `<loadtest secret>:<test id>:limited`
/// when the test is not exempt from rate limits.
pub const LOADTEST_HEADER: &str = "x-hs-loadtest";

/// Identifies the caller: authenticates the bearer token or session cookie
/// (answered from the in-memory cache on the hot path) and leaves the
/// `Principal` in the extensions, so `AuthUser` does not repeat the work.
pub async fn identify(state: &Monitoring, parts: &mut Parts) -> Caller {
    let mut caller = Caller {
        client_ip: client_ip(
            &parts.headers,
            &parts.extensions,
            state.config.trust_proxy_hops,
        ),
        loadtest_id: None,
        loadtest_exempt: false,
        user_id: None,
    };
    if let Some((id, exempt)) = loadtest_tag(state, parts) {
        caller.loadtest_id = Some(id);
        caller.loadtest_exempt = exempt;
    }
    if let Some(token) = request_token(parts)
        && let Ok(Some(principal)) = state.auth.authenticate(token).await
    {
        caller.user_id = Some(Arc::from(principal.user_id.as_str()));
        parts.extensions.insert(principal);
    }
    if state.limits.any() {
        // For the rate limiter, which runs later.
        parts.extensions.insert(caller.clone());
    }
    caller
}

fn loadtest_tag(state: &Monitoring, parts: &Parts) -> Option<(String, bool)> {
    let value = parts.headers.get(LOADTEST_HEADER)?.to_str().ok()?;
    parse_loadtest_header(&state.loadtest_secret, value)
}

/// The test id of a `<secret>:<testId>[:limited]` header value when the
/// secret matches (compared in constant time) and the id is sane, with
/// whether the test is exempt from rate limits (no `:limited`).
pub fn parse_loadtest_header(expected_secret: &str, value: &str) -> Option<(String, bool)> {
    let (secret, rest) = value.split_once(':')?;
    let (id, exempt) = match rest.strip_suffix(":limited") {
        Some(id) => (id, false),
        None => (rest, true),
    };
    let ok: bool = secret.as_bytes().ct_eq(expected_secret.as_bytes()).into();
    let id_ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (ok && id_ok).then(|| (id.to_string(), exempt))
}

/// A method label from a bounded set.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// What the middleware knew when the request arrived.
pub struct Started {
    pub at: crate::time::Timestamp,
    pub route: Arc<RouteStats>,
    pub request_id: Arc<str>,
    pub user_agent: Option<String>,
    pub bytes_in: Option<i64>,
    pub caller: Caller,
}

impl Started {
    pub fn new(
        state: &Monitoring,
        parts: &Parts,
        route: Arc<RouteStats>,
        request_id: Arc<str>,
    ) -> Self {
        // The user agent is only kept for the request log.
        let user_agent = if state.monitor.request_log_enabled() {
            parts
                .headers
                .get(header::USER_AGENT)
                .map(|v| escape_user_agent(v.as_bytes()))
        } else {
            None
        };
        Self {
            at: crate::time::Timestamp::now(),
            route,
            request_id,
            user_agent,
            bytes_in: parts
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
            caller: Caller::default(),
        }
    }
}

/// At most 256 characters, with control and non-ASCII bytes escaped, so
/// that a user agent cannot forge log lines or break a terminal.
pub fn escape_user_agent(raw: &[u8]) -> String {
    let raw = &raw[..raw.len().min(256)];
    if raw.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        // The common case: one exact allocation, no escaping.
        return raw.iter().map(|&b| char::from(b)).collect();
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for b in raw {
        if b.is_ascii_graphic() || *b == b' ' {
            out.push(*b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Records a finished request: live histogram, metrics, request log, and
/// error tracking for 500s and panics.
pub fn finish(state: &Monitoring, started: Started, elapsed: Duration, res: &Response) {
    let status = res.status().as_u16();
    let monitor = &state.monitor;
    let server_error = status >= 500;
    let route = &started.route;
    let duration_ms = elapsed.as_secs_f64() * 1000.0;
    route.record(duration_ms, server_error);
    super::metrics::record_request(route, status, elapsed);
    if server_error && let Some(cause) = res.extensions().get::<InternalCause>() {
        let panicked = res.extensions().get::<Panicked>().is_some();
        let kind = if panicked { "panic" } else { "http_500" };
        let location = format!("{} {}", route.method, route.route);
        monitor.track_error(
            kind,
            &location,
            &cause.0,
            serde_json::json!({
                "method": route.method,
                "route": &*route.route,
                "status": status,
                "userId": started.caller.user_id.as_deref(),
            }),
            Some(&started.request_id),
        );
    }
    if !monitor.request_log_enabled() {
        return;
    }
    let bytes_out = res
        .body()
        .size_hint()
        .exact()
        .and_then(|n| i64::try_from(n).ok());
    monitor.record_request(RequestRecord {
        at: started.at,
        method: route.method,
        route: route.route.clone(),
        status,
        duration_ms,
        bytes_in: started.bytes_in,
        bytes_out,
        user_id: started.caller.user_id.as_deref().map(ShortStr::new),
        client_ip: started.caller.client_ip,
        user_agent: started.user_agent,
        request_id: Some(ShortStr::new(&started.request_id)),
        loadtest_id: started.caller.loadtest_id,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_escaped_and_truncated() {
        assert_eq!(escape_user_agent(b"curl/8.0"), "curl/8.0");
        assert_eq!(escape_user_agent(b"a\nb\x1b"), "a\\x0ab\\x1b");
        assert_eq!(escape_user_agent(&[b'x'; 400]).len(), 256);
    }

    #[test]
    fn load_test_headers_need_the_secret_and_a_sane_id() {
        assert_eq!(
            parse_loadtest_header("s3cret", "s3cret:test-1"),
            Some(("test-1".to_string(), true))
        );
        assert_eq!(
            parse_loadtest_header("s3cret", "s3cret:test-1:limited"),
            Some(("test-1".to_string(), false))
        );
        assert_eq!(parse_loadtest_header("s3cret", "s3cret:test-1:other"), None);
        assert_eq!(parse_loadtest_header("s3cret", "guess:test-1"), None);
        assert_eq!(parse_loadtest_header("s3cret", "s3cret:"), None);
        assert_eq!(parse_loadtest_header("s3cret", "s3cret:a b"), None);
        assert_eq!(parse_loadtest_header("s3cret", "s3cret"), None);
    }

    #[test]
    fn limit_keys_prefer_the_user() {
        let mut c = Caller {
            user_id: Some("u1".into()),
            client_ip: Some("1.2.3.4".parse().unwrap()),
            loadtest_id: None,
            loadtest_exempt: false,
        };
        assert_eq!(c.limit_key(), "user:u1");
        c.user_id = None;
        assert_eq!(c.limit_key(), "ip:1.2.3.4");
    }
}
