//! Monitoring: the request log, error tracking, performance, system
//! statistics, alerts and Prometheus metrics. (The rate limiter and the
//! response cache are in [`crate::http`], the dependency checks in
//! [`crate::health`].)
//!
//! The request path only touches memory: [`observe::identify`] names the
//! caller (user from the cached token lookup, client IP per
//! `TRUST_PROXY_HOPS`, load-test tag), [`crate::http::ratelimit::middleware`]
//! applies the limits, and [`observe::finish`] updates the live histograms and metrics
//! and hands a record to the bounded channel of the [`writer`], which stores
//! records in batches. Background workers: the writer, the metrics sampler,
//! the alert evaluator, the daily retention and the limiter's clean-up.

pub mod alerts;
pub mod db;
pub mod latency;
pub mod live;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod retention;
pub mod routes;
pub mod system;
pub mod timeseries;
pub mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::model::{ErrorRecord, Record, RequestRecord};
use crate::config::Config;
use crate::db::Db;
use crate::health::probe::Probe;
use crate::http::cache::ResponseCache;
use crate::http::ratelimit::RateLimits;
use crate::sessions::auth::AuthCache;

/// Most records waiting for the writer; beyond it, records are dropped (and
/// counted). At 60k requests/s it absorbs about a second of writer stall.
pub const PENDING_CAPACITY: usize = 65_536;

impl std::fmt::Debug for Monitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Monitor")
    }
}

/// The monitoring domain's service: exactly the handles its routes, the
/// request-edge hooks ([`observe`]) and its workers need.
#[derive(Clone)]
pub struct Monitoring {
    pub db: Db,
    pub config: Arc<Config>,
    pub monitor: Monitor,
    /// The service's uptime, for `system`.
    pub health: Probe,
    /// The rate limits: their keys are counted, idle ones cleaned up.
    pub limits: Arc<RateLimits>,
    /// Callers are identified from their tokens at the edge.
    pub auth: AuthCache,
    /// Recognises the load tester's own requests (see
    /// [`observe::LOADTEST_HEADER`]).
    pub loadtest_secret: Arc<str>,
    /// Alert webhooks are sent under the service's task tracker.
    pub tasks: TaskTracker,
}

/// The monitoring handle: the request log's buffer, live statistics, limits;
/// cheap to clone.
#[derive(Clone)]
pub struct Monitor {
    inner: Arc<Inner>,
}

struct Inner {
    /// Records waiting for the writer, which takes them all at once (a
    /// lock and a push per request: cheaper than a channel, and no
    /// allocation once the buffer has grown).
    pending: Mutex<Vec<Record>>,
    /// Wakes the writer when the first record arrives.
    arrived: Notify,
    /// Wakes the writer early when a batch's worth of records is waiting.
    flush: Notify,
    writer_spawned: AtomicBool,
    request_log: bool,
    dropped: AtomicU64,
    written: AtomicU64,
    live: live::LiveStats,
    cache: ResponseCache,
    system: system::SystemSampler,
    alerts: alerts::AlertState,
}

impl Monitor {
    pub fn new(config: &Config) -> Self {
        metrics::install();
        Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(Vec::new()),
                arrived: Notify::new(),
                flush: Notify::new(),
                writer_spawned: AtomicBool::new(false),
                request_log: config.request_log,
                dropped: AtomicU64::new(0),
                written: AtomicU64::new(0),
                live: live::LiveStats::default(),
                cache: ResponseCache::new(),
                system: system::SystemSampler::new(),
                alerts: alerts::AlertState::default(),
            }),
        }
    }

    /// Hands a request record to the writer without waiting: when the
    /// channel is full the record is dropped and counted.
    /// Whether requests are logged (`REQUEST_LOG`).
    pub fn request_log_enabled(&self) -> bool {
        self.inner.request_log
    }

    pub fn record_request(&self, record: RequestRecord) {
        if !self.inner.request_log {
            return;
        }
        self.send(Record::Request(record));
    }

    /// Tracks an error (a 500 cause, a panic, a failed job, a failed
    /// upstream call), grouped by `kind` + `location`. Never blocks; pass no
    /// secrets and no request bodies (messages are truncated to 2,000
    /// characters, context to 4,000 bytes of JSON).
    pub fn track_error(
        &self,
        kind: &str,
        location: &str,
        message: &str,
        context: serde_json::Value,
        request_id: Option<&str>,
    ) {
        ::metrics::counter!("hs_errors_tracked_total", "kind" => kind.to_string()).increment(1);
        let mut context = context.to_string();
        if context.len() > 4000 {
            context = serde_json::json!({"truncated": true}).to_string();
        }
        let record = ErrorRecord {
            at: crate::time::Timestamp::now(),
            fingerprint: fingerprint(kind, location),
            kind: truncate(kind, 64),
            location: truncate(location, 300),
            message: truncate(message, 2000),
            context,
            request_id: request_id.map(|r| truncate(r, 128)),
        };
        self.send(Record::Error(Box::new(record)));
    }

    fn send(&self, record: Record) {
        let waiting = {
            let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
            if pending.len() >= PENDING_CAPACITY {
                None
            } else {
                pending.push(record);
                Some(pending.len())
            }
        };
        match waiting {
            None => {
                self.inner.dropped.fetch_add(1, Ordering::Relaxed);
                ::metrics::counter!("hs_request_log_dropped_total").increment(1);
            }
            Some(1) => self.inner.arrived.notify_one(),
            Some(writer::FLUSH_AT) => self.inner.flush.notify_one(),
            Some(_) => {}
        }
    }

    /// Resolves once a record is waiting.
    async fn records_arrived(&self) {
        loop {
            let empty = self
                .inner
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            if !empty {
                return;
            }
            self.inner.arrived.notified().await;
        }
    }

    /// Resolves when the writer should not wait for its flush interval.
    async fn flush_requested(&self) {
        self.inner.flush.notified().await;
    }

    /// Moves every waiting record into `batch` (empty, its capacity reused
    /// as the next buffer).
    fn take_pending(&self, batch: &mut Vec<Record>) {
        let mut pending = self.inner.pending.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::swap(&mut *pending, batch);
    }

    /// Records dropped because the writer could not keep up (or failed).
    pub fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Request records written to the database.
    pub fn written(&self) -> u64 {
        self.inner.written.load(Ordering::Relaxed)
    }

    fn note_written(&self, n: u64) {
        self.inner.written.fetch_add(n, Ordering::Relaxed);
        ::metrics::counter!("hs_request_log_written_total").increment(n);
    }

    fn note_write_failure(&self, n: u64) {
        self.inner.dropped.fetch_add(n, Ordering::Relaxed);
        ::metrics::counter!("hs_request_log_dropped_total").increment(n);
    }

    pub fn live(&self) -> &live::LiveStats {
        &self.inner.live
    }

    pub fn cache(&self) -> &ResponseCache {
        &self.inner.cache
    }

    pub fn system(&self) -> &system::SystemSampler {
        &self.inner.system
    }

    pub fn alerts(&self) -> &alerts::AlertState {
        &self.inner.alerts
    }

    /// True the first time only: one writer per monitor.
    fn claim_writer(&self) -> bool {
        !self.inner.writer_spawned.swap(true, Ordering::SeqCst)
    }
}

/// The group of an error: a digest of its kind and location.
pub fn fingerprint(kind: &str, location: &str) -> String {
    let digest = Sha256::digest(format!("{kind}\n{location}").as_bytes());
    hex::encode(&digest[..8])
}

fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max_chars).collect();
    out.push('…');
    out
}

/// Starts the writer, the metrics sampler, the alert evaluator, the daily
/// retention and the rate limiter's clean-up.
pub fn spawn_workers(state: &Monitoring, tracker: &TaskTracker, shutdown: CancellationToken) {
    if state.monitor.claim_writer() {
        tracker.spawn(writer::run(
            state.db.clone(),
            state.monitor.clone(),
            shutdown.clone(),
        ));
    }
    tracker.spawn(metrics::sampler(state.clone(), shutdown.clone()));
    tracker.spawn(alerts::evaluator(state.clone(), shutdown.clone()));
    tracker.spawn(retention::daily(state.clone(), shutdown.clone()));
    let limits_state = state.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = tick.tick() => limits_state.limits.clean_up(),
                () = shutdown.cancelled() => break,
            }
        }
    });
}

/// What the log retention would do (`apply = false`) or did: roll raw
/// request rows older than `LOG_RETENTION_DAYS` up into the hourly
/// aggregates and delete them, delete old error occurrences, roll-ups older
/// than `ROLLUP_RETENTION_DAYS`, and return free pages to the file system.
pub async fn maintenance(
    state: &Monitoring,
    apply: bool,
) -> anyhow::Result<Vec<crate::maintenance::model::Action>> {
    retention::run(
        &state.db,
        &state.config,
        crate::time::Timestamp::now(),
        apply,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_depend_on_kind_and_location_only() {
        assert_eq!(
            fingerprint("panic", "GET /a"),
            fingerprint("panic", "GET /a")
        );
        assert_ne!(
            fingerprint("panic", "GET /a"),
            fingerprint("panic", "GET /b")
        );
        assert_ne!(fingerprint("http_500", "x"), fingerprint("panic", "x"));
        assert_eq!(fingerprint("a", "b").len(), 16);
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("héllo", 2), "hé…");
    }
}
