//! Rate limiting (governor, GCRA): `RATE_LIMIT_PER_MINUTE` per client for
//! the whole API and `AI_RATE_LIMIT_PER_MINUTE` per client for
//! `POST /api/claude-ai/chat`, each with a burst of the full minute's
//! allowance. Clients are users when authenticated, else client IPs (see
//! `http::client_ip`: only the trusted proxies' X-Forwarded-For entries
//! count); login and sign-up are always limited by client IP, whatever
//! token the request carries (N throwaway accounts must not give N
//! allowances of password guesses; the per-account backoff is
//! `sessions::backoff`). `/health`, `/metrics` and the load tester's requests are exempt
//! (unless the test asked to be limited: virtual users are, by default).
//! Idle keys are dropped every minute so memory stays bounded.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::AppError;
use crate::http::route::route_of;

/// The AI chat route, limited separately.
pub const AI_CHAT_ROUTE: &str = "/api/claude-ai/chat";
/// Routes (POST) where a caller proves or creates an identity: limited by
/// client IP only.
pub const CREDENTIAL_ROUTES: [&str; 2] = ["/api/sessions", "/api/users"];
/// Routes never limited: probes, the scraper, and the console's static
/// files (a page load fetches a dozen; its API calls are limited as usual).
pub const EXEMPT_ROUTES: [&str; 5] = [
    "/health",
    "/metrics",
    "/admin",
    "/admin/",
    "/admin/assets/{*path}",
];

pub struct Limit {
    per_minute: u32,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl Limit {
    fn new(per_minute: u32) -> Option<Self> {
        let n = NonZeroU32::new(per_minute)?;
        Some(Self {
            per_minute,
            limiter: RateLimiter::keyed(Quota::per_minute(n).allow_burst(n)),
        })
    }

    /// `Err(wait)` when the key is over its limit.
    fn check(&self, key: &String) -> Result<(), Duration> {
        self.limiter
            .check_key(key)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

pub struct RateLimits {
    general: Option<Limit>,
    ai: Option<Limit>,
}

impl RateLimits {
    /// 0 turns a limit off.
    pub fn new(per_minute: u32, ai_per_minute: u32) -> Self {
        Self {
            general: Limit::new(per_minute),
            ai: Limit::new(ai_per_minute),
        }
    }

    /// Forgets clients whose allowance is full again and frees the memory.
    pub fn clean_up(&self) {
        for l in [&self.general, &self.ai].into_iter().flatten() {
            l.limiter.retain_recent();
            l.limiter.shrink_to_fit();
        }
    }

    /// Whether any limit is on.
    pub fn any(&self) -> bool {
        self.general.is_some() || self.ai.is_some()
    }

    pub fn keys(&self) -> usize {
        [&self.general, &self.ai]
            .into_iter()
            .flatten()
            .map(|l| l.limiter.len())
            .sum()
    }
}

/// The caller of a request, known before the handler runs. Inserted in the
/// request extensions for the rate limiter.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub user_id: Option<Arc<str>>,
    pub client_ip: Option<IpAddr>,
    /// Set for the built-in load tester's requests (secret verified).
    pub loadtest_id: Option<String>,
    /// The load test asked for its requests to skip the rate limits.
    pub loadtest_exempt: bool,
}

impl Caller {
    /// The rate-limit key: the user when authenticated, else the client IP.
    pub fn limit_key(&self) -> String {
        match &self.user_id {
            Some(u) => format!("user:{u}"),
            None => self.ip_key(),
        }
    }

    /// The client IP's rate-limit key, whoever is authenticated.
    pub fn ip_key(&self) -> String {
        match &self.client_ip {
            Some(ip) => format!("ip:{ip}"),
            None => "ip:unknown".to_string(),
        }
    }
}

/// The middleware: runs after `observe` identified the caller.
pub async fn middleware(
    State(limits): State<Arc<RateLimits>>,
    req: Request,
    next: Next,
) -> Response {
    if !limits.any() {
        return next.run(req).await;
    }
    if EXEMPT_ROUTES.contains(&route_of(&req)) {
        return next.run(req).await;
    }
    let Some(caller) = req.extensions().get::<Caller>() else {
        return next.run(req).await;
    };
    if caller.loadtest_id.is_some() && caller.loadtest_exempt {
        return next.run(req).await;
    }
    let key = if req.method() == Method::POST && CREDENTIAL_ROUTES.contains(&route_of(&req)) {
        caller.ip_key()
    } else {
        caller.limit_key()
    };
    if let Some(limit) = &limits.general
        && let Err(wait) = limit.check(&key)
    {
        return limited("general", limit, wait);
    }
    if req.method() == Method::POST
        && req.uri().path().trim_end_matches('/') == AI_CHAT_ROUTE
        && let Some(limit) = &limits.ai
        && let Err(wait) = limit.check(&key)
    {
        return limited("ai", limit, wait);
    }
    next.run(req).await
}

/// 429 problem+json with `Retry-After` and the IETF draft `RateLimit` /
/// `RateLimit-Policy` headers.
fn limited(name: &'static str, limit: &Limit, wait: Duration) -> Response {
    metrics::counter!("hs_rate_limited_total", "limit" => name).increment(1);
    let reset = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut res = AppError::RateLimited { retry_after: wait }.into_response();
    let h = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "limit={}, remaining=0, reset={}",
        limit.per_minute,
        reset.max(1)
    )) {
        h.insert("ratelimit", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{};w=60;burst={};comment=\"{name}\"",
        limit.per_minute, limit.per_minute
    )) {
        h.insert("ratelimit-policy", v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_the_minute_allowance_passes_then_limits() {
        let limits = RateLimits::new(3, 0);
        let general = limits.general.as_ref().unwrap();
        let key = "ip:1.2.3.4".to_string();
        for _ in 0..3 {
            assert!(general.check(&key).is_ok());
        }
        let wait = general.check(&key).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(20));
        assert!(general.check(&"ip:5.6.7.8".to_string()).is_ok());
        assert!(limits.ai.is_none());
    }
}
