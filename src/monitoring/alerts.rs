//! Alerts: every `ALERT_INTERVAL_SECONDS` the rules are evaluated over what
//! happened since the previous evaluation (requests) or now (queue, disk).
//! A rule crossing its threshold opens a `firing` alert (stored, logged,
//! posted to `ALERT_WEBHOOK_URL`); when its value is back within the
//! threshold the alert is `resolved` (stored, logged, posted). Webhook
//! deliveries run in their own tasks with retries, never on a request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Monitoring;
use super::model::Alert;
use crate::time::Timestamp;

/// Fewer requests (or finished jobs) than this in a window never fire a
/// rate-based alert: one failure out of two requests is not an incident.
pub const MIN_SAMPLES: u64 = 5;
/// Window of the job failure rate.
pub const JOB_WINDOW: Duration = Duration::from_secs(300);
/// Webhook delivery attempts (backoff 1 s, 2 s, 4 s between them).
pub const WEBHOOK_ATTEMPTS: u32 = 4;
const WEBHOOK_BACKOFF_BASE: Duration = Duration::from_secs(1);
const WEBHOOK_BACKOFF_MAX: Duration = Duration::from_secs(4);

#[derive(Default)]
pub struct AlertState {
    open: Mutex<HashMap<String, Alert>>,
    last_drops: AtomicU64,
}

/// One rule's reading.
#[derive(Debug, Clone)]
pub struct Reading {
    pub rule: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub firing: bool,
    pub message: String,
}

pub async fn evaluator(state: Monitoring, shutdown: CancellationToken) {
    let client = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .build()
    {
        Ok(c) => c,
        Err(err) => {
            tracing::error!(error = %err, "alert webhook client unavailable; alerts not evaluated");
            return;
        }
    };
    if let Ok(mut conn) = state.db.reader.acquire().await
        && let Ok(firing) = super::db::firing_alerts(&mut conn).await
        && let Ok(mut open) = state.monitor.alerts().open.lock()
    {
        for a in firing {
            open.insert(a.rule.clone(), a);
        }
    }
    state
        .monitor
        .alerts()
        .last_drops
        .store(state.monitor.dropped(), Ordering::Relaxed);
    let mut tick = tokio::time::interval(state.config.alert_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        let readings = readings(&state).await;
        for r in readings {
            if let Err(err) = apply(&state, &client, r).await {
                tracing::warn!(error = %format!("{err:#}"), "failed to store an alert");
            }
        }
    }
}

/// Evaluates every rule now.
pub async fn readings(state: &Monitoring) -> Vec<Reading> {
    let c = &state.config;
    let mut out = Vec::new();
    let pending = state.monitor.live().take_pending();
    let enough = pending.count() >= MIN_SAMPLES;
    let error_rate = if pending.count() == 0 {
        0.0
    } else {
        pending.errors as f64 / pending.count() as f64
    };
    out.push(Reading {
        rule: "error_rate",
        value: error_rate,
        threshold: c.alert_error_rate,
        firing: enough && error_rate > c.alert_error_rate,
        message: format!(
            "{} of {} requests answered 5xx ({:.1}%)",
            pending.errors,
            pending.count(),
            error_rate * 100.0
        ),
    });
    let p95 = pending.quantile_ms(0.95);
    out.push(Reading {
        rule: "p95_latency",
        value: p95,
        threshold: c.alert_p95_ms,
        firing: enough && p95 > c.alert_p95_ms,
        message: format!("p95 latency {p95:.1} ms over {} requests", pending.count()),
    });

    let now = Timestamp::now();
    let since = now - chrono::Duration::from_std(JOB_WINDOW).unwrap_or_default();
    if let Ok(mut conn) = state.db.reader.acquire().await {
        if let Ok((ok, failed)) = crate::jobs::db::job_outcomes_since(&mut conn, since).await {
            let total = (ok + failed).max(0) as u64;
            let rate = if total == 0 {
                0.0
            } else {
                failed as f64 / total as f64
            };
            out.push(Reading {
                rule: "job_failure_rate",
                value: rate,
                threshold: c.alert_job_failure_rate,
                firing: total >= MIN_SAMPLES && rate > c.alert_job_failure_rate,
                message: format!("{failed} of {total} jobs failed in the last 5 minutes"),
            });
        }
        if let Ok(q) = crate::jobs::db::queue_stats(&mut conn, now).await {
            let age = super::metrics::age_seconds(q.oldest_queued_run_at);
            out.push(Reading {
                rule: "queue_age",
                value: age,
                threshold: c.alert_queue_age_seconds as f64,
                firing: age > c.alert_queue_age_seconds as f64,
                message: format!("oldest queued job waiting {age:.0} s ({} queued)", q.queued),
            });
        }
    }
    if let Some((free, _)) = super::system::disk_space(&c.data_dir) {
        out.push(Reading {
            rule: "free_disk",
            value: free as f64,
            threshold: c.alert_min_free_disk_bytes as f64,
            firing: free < c.alert_min_free_disk_bytes,
            message: format!("{free} bytes free in DATA_DIR"),
        });
    }
    let sampler = state.clone();
    if let Ok(p) = tokio::task::spawn_blocking(move || sampler.monitor.system().process()).await {
        let rss = p.rss_bytes + p.browser_rss_bytes;
        out.push(Reading {
            rule: "max_rss",
            value: rss as f64,
            threshold: c.alert_max_rss_bytes as f64,
            firing: rss > c.alert_max_rss_bytes,
            message: format!(
                "{rss} bytes resident: the service {} and its browser {}",
                p.rss_bytes, p.browser_rss_bytes
            ),
        });
    }
    let drops = state.monitor.dropped();
    let last = state
        .monitor
        .alerts()
        .last_drops
        .swap(drops, Ordering::Relaxed);
    let delta = drops.saturating_sub(last);
    out.push(Reading {
        rule: "log_drops",
        value: delta as f64,
        threshold: c.alert_log_drops as f64,
        firing: c.alert_log_drops > 0 && delta >= c.alert_log_drops,
        message: format!("{delta} monitoring records dropped since the last evaluation"),
    });
    out
}

async fn apply(state: &Monitoring, client: &reqwest::Client, r: Reading) -> anyhow::Result<()> {
    let open = state
        .monitor
        .alerts()
        .open
        .lock()
        .ok()
        .and_then(|m| m.get(r.rule).cloned());
    metrics::gauge!("hs_alerts_firing", "rule" => r.rule).set(if r.firing { 1.0 } else { 0.0 });
    match (open, r.firing) {
        (None, true) => {
            let alert = Alert {
                id: crate::db::new_id(),
                rule: r.rule.to_string(),
                status: "firing".into(),
                value: r.value,
                last_value: r.value,
                threshold: r.threshold,
                message: r.message,
                fired_at: Timestamp::now(),
                resolved_at: None,
            };
            let mut tx = state.db.begin_write().await?;
            super::db::insert_alert(&mut tx, &alert).await?;
            tx.commit().await?;
            tracing::warn!(rule = %alert.rule, value = alert.value, threshold = alert.threshold,
                message = %alert.message, "alert firing");
            if let Ok(mut m) = state.monitor.alerts().open.lock() {
                m.insert(alert.rule.clone(), alert.clone());
            }
            notify(state, client, alert);
        }
        (Some(mut alert), false) => {
            let at = Timestamp::now();
            let mut tx = state.db.begin_write().await?;
            super::db::resolve_alert(&mut tx, &alert.id, r.value, at).await?;
            tx.commit().await?;
            alert.status = "resolved".into();
            alert.last_value = r.value;
            alert.resolved_at = Some(at);
            tracing::info!(rule = %alert.rule, value = r.value, "alert resolved");
            if let Ok(mut m) = state.monitor.alerts().open.lock() {
                m.remove(r.rule);
            }
            notify(state, client, alert);
        }
        (Some(alert), true) => {
            let mut tx = state.db.begin_write().await?;
            super::db::update_alert_value(&mut tx, &alert.id, r.value).await?;
            tx.commit().await?;
        }
        (None, false) => {}
    }
    Ok(())
}

/// Posts the alert to `ALERT_WEBHOOK_URL` in a task of its own, retrying.
fn notify(state: &Monitoring, client: &reqwest::Client, alert: Alert) {
    let Some(url) = state.config.alert_webhook_url.clone() else {
        return;
    };
    let client = client.clone();
    state.tasks.spawn(async move {
        let body = serde_json::json!({
            "service": "hs-platform",
            "event": alert.status,
            "alert": alert,
        });
        for attempt in 0..WEBHOOK_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(crate::retry::exponential(
                    attempt - 1,
                    WEBHOOK_BACKOFF_BASE,
                    WEBHOOK_BACKOFF_MAX,
                ))
                .await;
            }
            match client.post(&url).json(&body).send().await {
                Ok(res) if res.status().is_success() => return,
                Ok(res) => {
                    tracing::warn!(
                        status = res.status().as_u16(),
                        attempt,
                        "alert webhook refused"
                    );
                }
                Err(err) => {
                    tracing::warn!(error = %err.without_url(), attempt, "alert webhook failed");
                }
            }
        }
        tracing::error!(rule = %alert.rule, "alert webhook gave up");
    });
}
