//! `health-detailed`: every dependency's check with its status and detail,
//! and an overall verdict (`down` when a critical check is down, answered
//! with 503; `degraded` when anything else is not ok or an alert fires).
//!
//! Adding a check is one line in [`run_checks`]: a function returning a
//! [`Check`].

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::model::{Check, CheckStatus, HealthDetailed};
use crate::ai::AiService;
use crate::config::Config;
use crate::db::Db;
use crate::files::FileService;
use crate::http::cache::ResponseCache;
use crate::time::Timestamp;

const TIMEOUT: Duration = Duration::from_secs(3);

/// What the checks look at: exactly the handles they need.
#[derive(Clone)]
pub struct Checks {
    pub db: Db,
    pub config: Arc<Config>,
    pub ai: AiService,
    pub files: FileService,
    /// `health-detailed` answers are cached briefly (see [`super::HEALTH_TTL`]).
    pub cache: ResponseCache,
}

/// Runs every check.
pub async fn run_checks(state: &Checks) -> Vec<Check> {
    vec![
        timed(database_read(state)).await,
        timed(database_write(state)).await,
        timed(async { disk_space(state) }).await,
        timed(queue_backlog(state)).await,
        timed(async { ai(state) }).await,
        timed(async { browser(state) }).await,
    ]
}

pub async fn health_detailed(state: &Checks) -> HealthDetailed {
    let checks = run_checks(state).await;
    let firing_alerts = match state.db.reader.acquire().await {
        Ok(mut conn) => crate::monitoring::db::firing_alerts(&mut conn)
            .await
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let status = overall(&checks, !firing_alerts.is_empty());
    HealthDetailed {
        status,
        checked_at: Timestamp::now(),
        checks,
        firing_alerts,
    }
}

pub fn overall(checks: &[Check], alerts_firing: bool) -> CheckStatus {
    if checks
        .iter()
        .any(|c| c.critical && c.status == CheckStatus::Down)
    {
        CheckStatus::Down
    } else if alerts_firing || checks.iter().any(|c| c.status != CheckStatus::Ok) {
        CheckStatus::Degraded
    } else {
        CheckStatus::Ok
    }
}

async fn timed(check: impl Future<Output = Check>) -> Check {
    let started = Instant::now();
    let mut c = check.await;
    c.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    c
}

async fn database_read(state: &Checks) -> Check {
    let result = tokio::time::timeout(TIMEOUT, async {
        let mut conn = state.db.reader.acquire().await?;
        super::db::read_probe(&mut conn).await
    })
    .await;
    match result {
        Ok(Ok(_)) => Check::new("database_read", CheckStatus::Ok, "reader pool answered"),
        Ok(Err(err)) => Check::new(
            "database_read",
            CheckStatus::Down,
            format!("read failed: {err}"),
        ),
        Err(_) => Check::new("database_read", CheckStatus::Down, "read timed out"),
    }
    .critical()
}

/// Takes the write lock (BEGIN IMMEDIATE) and rolls back: proves the writer
/// connection works and nobody holds the lock for long.
async fn database_write(state: &Checks) -> Check {
    let result = tokio::time::timeout(TIMEOUT, async {
        let tx = state.db.begin_write().await?;
        tx.rollback().await
    })
    .await;
    match result {
        Ok(Ok(())) => Check::new("database_write", CheckStatus::Ok, "write lock acquired"),
        Ok(Err(err)) => Check::new(
            "database_write",
            CheckStatus::Down,
            format!("write failed: {err}"),
        ),
        Err(_) => Check::new(
            "database_write",
            CheckStatus::Down,
            "write lock not acquired in time",
        ),
    }
    .critical()
}

fn disk_space(state: &Checks) -> Check {
    let min = state.config.alert_min_free_disk_bytes;
    match crate::monitoring::system::disk_space(&state.config.data_dir) {
        Some((free, total)) if free >= min => Check::new(
            "disk_space",
            CheckStatus::Ok,
            format!("{free} of {total} bytes free in DATA_DIR"),
        ),
        Some((free, total)) => Check::new(
            "disk_space",
            if free == 0 {
                CheckStatus::Down
            } else {
                CheckStatus::Degraded
            },
            format!("{free} of {total} bytes free in DATA_DIR, below {min}"),
        ),
        None => Check::new(
            "disk_space",
            CheckStatus::Degraded,
            "free space of DATA_DIR unknown",
        ),
    }
}

async fn queue_backlog(state: &Checks) -> Check {
    let stats = async {
        let mut conn = state.db.reader.acquire().await?;
        crate::jobs::db::queue_stats(&mut conn, Timestamp::now()).await
    }
    .await;
    match stats {
        Ok(q) => {
            let age = crate::monitoring::metrics::age_seconds(q.oldest_queued_run_at);
            let limit = state.config.alert_queue_age_seconds as f64;
            let detail = format!(
                "{} queued (oldest waiting {age:.0} s), {} running",
                q.queued, q.running
            );
            let status = if age > limit {
                CheckStatus::Degraded
            } else {
                CheckStatus::Ok
            };
            Check::new("queue_backlog", status, detail)
        }
        Err(err) => Check::new(
            "queue_backlog",
            CheckStatus::Degraded,
            format!("queue unreadable: {err}"),
        ),
    }
}

/// The AI dependency: configured, and the circuit breaker's state. An open
/// breaker degrades the service (chat answers 503); no key is a choice.
fn ai(state: &Checks) -> Check {
    let h = state.ai.health();
    let status = if h.configured && h.breaker == "open" {
        CheckStatus::Degraded
    } else {
        CheckStatus::Ok
    };
    Check::new(
        "ai",
        status,
        format!("{} (breaker {})", h.detail, h.breaker),
    )
}

/// The shared Chromium of the screenshot jobs: available, running, pages.
fn browser(state: &Checks) -> Check {
    let h = state.files.browser_health();
    let available = h["available"].as_bool().unwrap_or(false);
    let detail = match (available, h["running"].as_bool().unwrap_or(false)) {
        (false, _) => "no Chromium found (CHROMIUM_PATH or PATH): screenshots fail".to_string(),
        (true, running) => format!(
            "{} ({}; {} of {} pages in use, {} launches){}",
            h["executable"].as_str().unwrap_or("chromium"),
            match h["rssBytes"].as_u64() {
                Some(rss) if running => format!("running, {} MiB resident", rss >> 20),
                _ => "started on first use".to_string(),
            },
            h["pagesInUse"],
            h["maxPages"],
            h["launches"],
            h["lastError"]
                .as_str()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        ),
    };
    let status = if available {
        CheckStatus::Ok
    } else {
        CheckStatus::Degraded
    };
    Check::new("browser", status, detail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_critical_check_is_down_others_degrade() {
        let ok = Check::new("a", CheckStatus::Ok, "");
        let bad = Check::new("b", CheckStatus::Down, "");
        assert_eq!(overall(std::slice::from_ref(&ok), false), CheckStatus::Ok);
        assert_eq!(
            overall(std::slice::from_ref(&ok), true),
            CheckStatus::Degraded
        );
        assert_eq!(
            overall(&[ok.clone(), bad.clone()], false),
            CheckStatus::Degraded
        );
        assert_eq!(overall(&[ok, bad.critical()], false), CheckStatus::Down);
    }
}
