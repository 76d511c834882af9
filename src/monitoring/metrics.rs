//! Prometheus metrics: the process-wide recorder (installed once, however
//! many apps a test process starts), the request metrics, and a sampler that
//! sets gauges from the database and the process every few seconds.
//!
//! Other domains emit `metrics::counter!/histogram!/gauge!` with an `hs_`
//! prefix; histograms whose name ends in `_seconds` get the buckets below.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;

use super::Monitoring;
use crate::time::Timestamp;

/// Bucket bounds of every `_seconds` histogram: from 100 µs (most API
/// requests answer in under a millisecond) to 300 s (AI calls and jobs).
/// Prometheus' own `histogram_quantile` interpolates within these; the
/// service's figures come from the finer estimator in [`super::latency`].
pub const SECONDS_BUCKETS: [f64; 20] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// The git commit the binary was built from, when the build set
/// `HS_GIT_COMMIT` (the Dockerfile and CI do); `unknown` otherwise.
pub const GIT_COMMIT: &str = match option_env!("HS_GIT_COMMIT") {
    Some(c) if !c.is_empty() => c,
    _ => "unknown",
};

/// The compiler version, when the build set `HS_RUSTC_VERSION`.
pub const RUSTC_VERSION: &str = match option_env!("HS_RUSTC_VERSION") {
    Some(v) if !v.is_empty() => v,
    _ => "unknown",
};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder if this process has none yet; returns the handle
/// that renders the exposition.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &SECONDS_BUCKETS)
                .expect("non-empty buckets");
            match builder.install_recorder() {
                Ok(handle) => {
                    describe();
                    metrics::gauge!(
                        "hs_build_info",
                        "version" => env!("CARGO_PKG_VERSION"),
                        "git_commit" => GIT_COMMIT,
                        "rustc" => RUSTC_VERSION
                    )
                    .set(1.0);
                    handle
                }
                Err(err) => {
                    // Another recorder owns the process (an embedding
                    // application): render an empty registry of our own.
                    tracing::warn!(error = %err, "metrics recorder already installed elsewhere");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "hs_http_requests_total",
        "HTTP requests by route template, method and status class"
    );
    describe_histogram!(
        "hs_http_request_duration_seconds",
        Unit::Seconds,
        "HTTP request duration by route template, method and status class"
    );
    describe_counter!(
        "hs_rate_limited_total",
        "Requests answered 429 by the rate limiter"
    );
    describe_counter!(
        "hs_request_log_dropped_total",
        "Monitoring records dropped because the writer could not keep up"
    );
    describe_counter!("hs_request_log_written_total", "Request-log rows written");
    describe_counter!("hs_errors_tracked_total", "Tracked errors by kind");
    describe_counter!(
        "hs_cache_requests_total",
        "Response cache lookups by cache and result (hit or miss)"
    );
    describe_gauge!(
        "hs_jobs_active",
        "Queued and running jobs by kind and status"
    );
    describe_gauge!("hs_job_queue_depth", "Jobs due and waiting to run");
    describe_gauge!(
        "hs_job_queue_oldest_seconds",
        "Age of the oldest job waiting to run"
    );
    describe_gauge!(
        "hs_db_pool_connections",
        "Database connections by pool and state"
    );
    describe_gauge!("hs_alerts_firing", "1 while an alert rule is firing");
    describe_gauge!("hs_process_resident_memory_bytes", "Resident set size");
    describe_gauge!(
        "hs_rate_limiter_keys",
        "Clients tracked by the rate limiters"
    );
    describe_gauge!(
        "hs_build_info",
        "Always 1, labelled with the version, git commit and compiler of the binary"
    );
    describe_counter!("hs_ai_calls_total", "Claude API calls by model and outcome");
    describe_counter!(
        "hs_ai_tokens_total",
        "Claude API tokens by model and direction (input or output)"
    );
    describe_histogram!(
        "hs_ai_call_duration_seconds",
        Unit::Seconds,
        "Claude API call duration by model and outcome"
    );
    describe_counter!("hs_jobs_enqueued_total", "Jobs enqueued by kind");
    describe_counter!(
        "hs_jobs_finished_total",
        "Job attempts finished by kind and status"
    );
    describe_histogram!(
        "hs_job_duration_seconds",
        Unit::Seconds,
        "Job run duration by kind"
    );
    describe_counter!(
        "hs_connections_refused_total",
        "Connections refused because the connection limit was reached"
    );
}

/// Request count and duration, labelled by route template (bounded),
/// method (bounded) and status class, through the route's cached handles.
pub fn record_request(route: &super::live::RouteStats, status: u16, elapsed: Duration) {
    let (count, duration) = route.metrics(status);
    count.increment(1);
    duration.record(elapsed.as_secs_f64());
}

/// Renders the Prometheus text exposition.
pub fn render() -> String {
    install().render()
}

/// Every 5 seconds: job queue gauges (from the jobs table), pool use,
/// process memory, limiter size, and the exporter's upkeep.
pub async fn sampler(state: Monitoring, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        if let Err(err) = sample(&state).await {
            tracing::debug!(error = %format!("{err:#}"), "metrics sampling failed");
        }
        install().run_upkeep();
    }
}

async fn sample(state: &Monitoring) -> anyhow::Result<()> {
    for (pool, p) in [("reader", &state.db.reader), ("writer", &state.db.writer)] {
        let size = p.size();
        let idle = u32::try_from(p.num_idle()).unwrap_or(u32::MAX);
        metrics::gauge!("hs_db_pool_connections", "pool" => pool, "state" => "idle")
            .set(f64::from(idle));
        metrics::gauge!("hs_db_pool_connections", "pool" => pool, "state" => "in_use")
            .set(f64::from(size.saturating_sub(idle)));
    }
    metrics::gauge!("hs_rate_limiter_keys").set(state.limits.keys() as f64);
    if let Some(rss) = state.monitor.system().rss_bytes() {
        metrics::gauge!("hs_process_resident_memory_bytes").set(rss as f64);
    }
    let mut conn = state.db.reader.acquire().await?;
    let q = crate::jobs::db::queue_stats(&mut conn, Timestamp::now()).await?;
    metrics::gauge!("hs_job_queue_depth").set(q.queued as f64);
    metrics::gauge!("hs_job_queue_oldest_seconds").set(age_seconds(q.oldest_queued_run_at));
    let by_kind = crate::jobs::db::active_jobs_by_kind(&mut conn).await?;
    for status in ["queued", "running"] {
        // Kinds that emptied since the last sample go back to zero.
        for kind in state.monitor.system().known_job_kinds() {
            metrics::gauge!("hs_jobs_active", "kind" => kind.clone(), "status" => status).set(0.0);
        }
    }
    for (kind, status, n) in by_kind {
        state.monitor.system().note_job_kind(&kind);
        metrics::gauge!("hs_jobs_active", "kind" => kind, "status" => status).set(n as f64);
    }
    Ok(())
}

/// Seconds since a time (0 when absent).
pub fn age_seconds(at: Option<Timestamp>) -> f64 {
    at.map(|t| ((Timestamp::now() - t).num_milliseconds() as f64 / 1000.0).max(0.0))
        .unwrap_or(0.0)
}
