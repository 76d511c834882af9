//! The response cache for expensive admin reads (analytics summary,
//! health-detailed, performance): moka, bounded to 32 MiB of bodies, with a
//! time to live per entry. Keys hold everything that changes the answer:
//! the endpoint, the caller's user id (never shared between users) and the
//! full query string. `Cache-Control: no-cache` on the request skips the
//! lookup (the fresh answer is stored). Hits and misses are counted in
//! `hs_cache_requests_total`.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use moka::Expiry;
use moka::future::Cache;
use serde::Serialize;

use crate::error::Result;

pub struct Cached {
    status: StatusCode,
    body: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Arc<Cached>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Arc<Cached>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Clone freely: clones share the cache.
#[derive(Clone)]
pub struct ResponseCache {
    cache: Cache<String, Arc<Cached>>,
}

impl Default for ResponseCache {
    fn default() -> Self {
        Self::new()
    }
}

impl ResponseCache {
    pub fn new() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(32 * 1024 * 1024)
                .weigher(|k: &String, v: &Arc<Cached>| {
                    u32::try_from(k.len() + v.body.len()).unwrap_or(u32::MAX)
                })
                .expire_after(PerEntryTtl)
                .build(),
        }
    }

    /// Answers from the cache, or computes, stores and answers. `name`
    /// labels the metrics; `user_id` and `query` make the key.
    pub async fn json<T, F, Fut>(
        &self,
        name: &'static str,
        user_id: &str,
        query: &str,
        headers: &HeaderMap,
        ttl: Duration,
        compute: F,
    ) -> Result<Response>
    where
        T: Serialize,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(StatusCode, T)>>,
    {
        let key = format!("{name}\n{user_id}\n{query}");
        let bypass = headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("no-cache") || v.contains("no-store"));
        if !bypass && let Some(hit) = self.cache.get(&key).await {
            metrics::counter!("hs_cache_requests_total", "cache" => name, "result" => "hit")
                .increment(1);
            return Ok(respond(&hit, "hit"));
        }
        metrics::counter!("hs_cache_requests_total", "cache" => name, "result" => "miss")
            .increment(1);
        let (status, value) = compute().await?;
        let body = Bytes::from(serde_json::to_vec(&value).map_err(anyhow::Error::from)?);
        let cached = Arc::new(Cached { status, body, ttl });
        self.cache.insert(key, cached.clone()).await;
        Ok(respond(&cached, "miss"))
    }
}

fn respond(c: &Cached, result: &'static str) -> Response {
    let mut res = (c.status, c.body.clone()).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert("x-cache", HeaderValue::from_static(result));
    res
}
