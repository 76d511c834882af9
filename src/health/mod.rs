//! Health: liveness (`/health` answers from a background probe of the
//! database, so that a flood of health checks costs no database round trips)
//! and the checks of every dependency behind `health-detailed`
//! ([`detailed`]).

pub mod db;
pub mod detailed;
pub mod model;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::db::Db;
use crate::http::extract::Json;
use crate::state::AppState;

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
            db::read_probe(&mut conn).await
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

pub fn spawn_workers(state: &AppState, tracker: &TaskTracker, shutdown: CancellationToken) {
    let probe = state.health.clone();
    let db = state.db.clone();
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

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok` or `down`.
    pub status: &'static str,
    pub database: &'static str,
    pub version: &'static str,
    pub uptime_seconds: u64,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(health))
}

/// Liveness: 200 while the process and the database answer, else 503.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(state): State<AppState>) -> impl IntoResponse {
    let ok = state.health.database_ok();
    let body = Health {
        status: if ok { "ok" } else { "down" },
        database: if ok { "ok" } else { "unavailable" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.health.uptime().as_secs(),
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}
