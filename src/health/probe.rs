//! The liveness probe: a background read of the database every second, so
//! that `/health` answers from memory.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::db::Db;

pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// A probe older than this means the prober is stuck: report down.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Probe {
    inner: Arc<ProbeInner>,
}

struct ProbeInner {
    started: Instant,
    db_ok: AtomicBool,
    last_probe_ms: AtomicI64,
}

impl Probe {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(ProbeInner {
                started: Instant::now(),
                db_ok: AtomicBool::new(true),
                last_probe_ms: AtomicI64::new(chrono::Utc::now().timestamp_millis()),
            }),
        }
    }

    pub fn uptime(&self) -> Duration {
        self.inner.started.elapsed()
    }

    /// Whether the database answered the latest probe, and that probe is fresh.
    pub fn database_ok(&self) -> bool {
        let age = chrono::Utc::now().timestamp_millis()
            - self.inner.last_probe_ms.load(Ordering::Relaxed);
        self.inner.db_ok.load(Ordering::Relaxed) && age < STALE_AFTER.as_millis() as i64
    }

    pub async fn check(&self, db: &Db) {
        // The same read probe as health-detailed's database check.
        let ok = tokio::time::timeout(Duration::from_secs(3), async {
            let mut conn = db.reader.acquire().await?;
            super::db::read_probe(&mut conn).await
        })
        .await
        .is_ok_and(|r| r.is_ok());
        if !ok && self.inner.db_ok.load(Ordering::Relaxed) {
            tracing::error!("database probe failed");
        }
        self.inner.db_ok.store(ok, Ordering::Relaxed);
        self.inner
            .last_probe_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }
}

impl Default for Probe {
    fn default() -> Self {
        Self::new()
    }
}

pub fn spawn_workers(probe: &Probe, db: &Db, tracker: &TaskTracker, shutdown: CancellationToken) {
    let probe = probe.clone();
    let db = db.clone();
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(PROBE_INTERVAL);
        loop {
            tokio::select! {
                _ = tick.tick() => probe.check(&db).await,
                () = shutdown.cancelled() => break,
            }
        }
    });
}
