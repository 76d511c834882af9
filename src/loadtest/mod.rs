//! The built-in load tester: scenarios against this service itself, run as a
//! job, as the admin who started it or as N virtual users, measured with the
//! service's one latency estimator, stored in SQLite.
//!
//! - [`model`]: the request, the plan, the report.
//! - [`validate`]: the request checked field by field into a plan.
//! - [`engine`]: the workers that send requests over keep-alive HTTP/1.1
//!   connections to the service's own bound address, the schedule of a
//!   target rate (coordinated omission corrected) and the live counters.
//! - [`report`]: histograms (the service's one latency estimator,
//!   `monitoring::latency`) and timeline into the report.
//! - [`users`]: the test's virtual users (throwaway accounts) and their
//!   removal.
//! - [`db`]: the `load_tests` table.

pub mod db;
pub mod engine;
pub mod model;
pub mod report;
pub mod routes;
mod run;
pub mod users;
pub mod validate;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use utoipa::ToSchema;

use self::model::{Caps, LoadTestRequest, LoadTestResult, Plan};
use crate::config::Config;
use crate::db::Db;
use crate::error::{AppError, Result};
use crate::ids::{JobId, UserId};
use crate::jobs::{Job, JobContext, JobError, NewJob, Queue, Registry};
use crate::sessions::Sessions;
use crate::sessions::auth::Principal;
use crate::time::Timestamp;

pub const JOB_KIND: &str = "loadtest.run";

/// The load tester's service: exactly the handles it needs.
#[derive(Clone)]
pub struct LoadTesting {
    pub db: Db,
    pub config: Arc<Config>,
    pub jobs: Queue,
    /// The test runs as its admin, with a session of its own, or as
    /// virtual users with one session each.
    pub sessions: Sessions,
    /// Makes and deletes the virtual users' accounts.
    pub users: crate::users::Users,
    /// Removes what virtual users stored.
    pub files: crate::files::Files,
    pub loadtests: LoadTests,
    /// Sent in the `x-hs-loadtest` header so that the test's requests are
    /// recognised (tagged in the request log; exempt from rate limits
    /// unless the test asked otherwise).
    pub loadtest_secret: Arc<str>,
    /// The address the listener is bound to: the test's only target.
    pub bound_addr: Arc<OnceLock<SocketAddr>>,
}

/// The one running (or starting) load test, shared by the handlers and the
/// job that runs it. One instance serves the service, so the slot lives in
/// memory; the `load_tests` table keeps the history.
#[derive(Clone, Default)]
pub struct LoadTests {
    active: Arc<Mutex<Option<Active>>>,
}

/// A test that holds the single slot.
#[derive(Clone)]
pub struct Active {
    /// Set once the job exists (the test id is the job id).
    pub test_id: Option<String>,
    claim: String,
    pub live: Arc<engine::Live>,
}

impl LoadTests {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Active>> {
        self.active.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes the free slot: returns a claim key, or the holder.
    fn claim(&self, test_id: Option<&str>) -> Result<(String, Arc<engine::Live>), Option<String>> {
        let mut slot = self.lock();
        if let Some(a) = slot.as_ref() {
            return Err(a.test_id.clone());
        }
        let live = Arc::new(engine::Live::default());
        let claim = uuid::Uuid::new_v4().to_string();
        *slot = Some(Active {
            test_id: test_id.map(str::to_string),
            claim: claim.clone(),
            live: live.clone(),
        });
        Ok((claim, live))
    }

    fn bind(&self, claim: &str, test_id: &str) {
        if let Some(a) = self.lock().as_mut().filter(|a| a.claim == claim) {
            a.test_id = Some(test_id.to_string());
        }
    }

    fn release_claim(&self, claim: &str) {
        let mut slot = self.lock();
        if slot.as_ref().is_some_and(|a| a.claim == claim) {
            *slot = None;
        }
    }

    fn release(&self, test_id: &str) {
        let mut slot = self.lock();
        if slot
            .as_ref()
            .is_some_and(|a| a.test_id.as_deref() == Some(test_id))
        {
            *slot = None;
        }
    }

    /// The live counters of `test_id` if it holds the slot.
    fn live_of(&self, test_id: &str) -> Option<Arc<engine::Live>> {
        self.lock()
            .as_ref()
            .filter(|a| a.test_id.as_deref() == Some(test_id))
            .map(|a| a.live.clone())
    }

    pub fn current(&self) -> Option<Active> {
        self.lock().clone()
    }
}

fn caps(state: &LoadTesting) -> Caps {
    Caps {
        max_concurrency: state.config.loadtest_max_concurrency,
        max_duration_seconds: state.config.loadtest_max_duration_seconds,
        max_requests: state.config.loadtest_max_requests,
    }
}

/// Frees the slot when its job finished without running the test (cancelled
/// while queued): the holder's row is closed too.
async fn reconcile(state: &LoadTesting) -> anyhow::Result<()> {
    let Some(test_id) = state.loadtests.current().and_then(|a| a.test_id) else {
        return Ok(());
    };
    let Some(job) = state.jobs.get(&JobId::from(test_id.as_str())).await? else {
        return Ok(());
    };
    if job.status.is_finished() {
        let mut tx = state.db.begin_write().await?;
        db::end_without_report(
            &mut tx,
            &test_id,
            job.status.as_str(),
            job.error.as_ref().map(|e| e.message.as_str()),
            Timestamp::now(),
        )
        .await?;
        tx.commit().await?;
        state.loadtests.release(&test_id);
    }
    Ok(())
}

fn conflict(holder: Option<String>) -> AppError {
    AppError::Conflict(match holder {
        Some(id) => format!("load test {id} is running; one test at a time"),
        None => "a load test is starting; one test at a time".into(),
    })
}

/// Validates and queues a load test as a `loadtest.run` job owned by the
/// admin. The test's id is its job's id.
#[tracing::instrument(skip_all)]
pub async fn start(state: &LoadTesting, admin: &Principal, req: LoadTestRequest) -> Result<Job> {
    let plan = req.validate(caps(state)).map_err(AppError::Validation)?;
    if state.bound_addr.get().is_none() {
        return Err(AppError::Unavailable {
            code: "not_ready",
            message: "the service is not listening yet".into(),
            retry_after: Some(Duration::from_secs(1)),
        });
    }
    reconcile(state).await?;
    let (claim, _live) = state.loadtests.claim(None).map_err(conflict)?;
    let queued = async {
        let payload = serde_json::to_value(&req).map_err(anyhow::Error::from)?;
        let job = state
            .jobs
            .enqueue(
                NewJob::new(JOB_KIND, payload)
                    .owner(&admin.user_id)
                    .priority(100)
                    .max_attempts(1),
            )
            .await?;
        state.loadtests.bind(&claim, job.id.as_str());
        record(state, job.id.as_str(), Some(&admin.user_id), &req, &plan).await?;
        Ok::<Job, AppError>(job)
    }
    .await;
    if queued.is_err() {
        state.loadtests.release_claim(&claim);
    }
    queued
}

async fn record(
    state: &LoadTesting,
    id: &str,
    user_id: Option<&UserId>,
    req: &LoadTestRequest,
    plan: &Plan,
) -> anyhow::Result<()> {
    let request = serde_json::to_string(req)?;
    let mut tx = state.db.begin_write().await?;
    db::insert(
        &mut tx,
        &db::NewLoadTest {
            id,
            user_id,
            request: &request,
            mode: plan.mode(),
            concurrency: i64::from(plan.workers()),
            target_rps: plan.target_rps(),
            duration_seconds: req.duration_seconds.map(i64::from),
            max_requests: req.requests.map(|n| n.min(i64::MAX as u64) as i64),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Registers the `loadtest.run` job.
pub fn register_jobs(registry: &mut Registry, loadtest: &LoadTesting) {
    let lt = loadtest.clone();
    registry.register(JOB_KIND, move |ctx| execute(lt.clone(), ctx));
}

/// The job: runs the test as the admin who started it, then stores the
/// report. Cancelling the job (or stopping the service) stops the test and
/// keeps what was measured.
async fn execute(
    state: LoadTesting,
    ctx: JobContext,
) -> std::result::Result<serde_json::Value, JobError> {
    let test_id = ctx.id.to_string();
    let req: LoadTestRequest = ctx.payload()?;
    let plan = req.validate(caps(&state)).map_err(|errors| {
        let fields: Vec<String> = errors
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        JobError::fail("invalid_request", fields.join("; "))
    })?;
    let user_id = ctx
        .user_id
        .clone()
        .ok_or_else(|| JobError::fail("invalid_request", "a load test needs an owner"))?;
    record(&state, &test_id, Some(&user_id), &req, &plan).await?;

    let live = slot_for(&state, &test_id).await;
    let live = match live {
        Ok(live) => live,
        Err(holder) => {
            let msg = conflict(holder).public_message();
            end(&state, &test_id, "failed", Some(&msg)).await;
            return Err(JobError::fail("conflict", msg));
        }
    };
    let outcome = run::run_test(&ctx, &state, &test_id, &user_id, &req, plan, live).await;
    state.loadtests.release(&test_id);
    match outcome {
        Ok(result) => Ok(serde_json::json!({
            "testId": result.id,
            "status": result.status,
            "totals": result.totals,
            "achievedRps": result.achieved_rps,
            "passed": result.passed,
            "resultsUrl": format!("/api/load-test/results/{}", result.id),
        })),
        Err(e) => {
            let msg = format!("{e:#}");
            tracing::error!(test_id, error = %msg, "load test failed");
            end(&state, &test_id, "failed", Some("internal error")).await;
            Err(JobError::fail("internal", "the load test could not run"))
        }
    }
}

/// The slot of this test: taken by the start handler (which may still be
/// binding it to the job id when the runner is quicker), or taken now when
/// the job runs without one (queued before a restart).
async fn slot_for(
    state: &LoadTesting,
    test_id: &str,
) -> std::result::Result<Arc<engine::Live>, Option<String>> {
    for _ in 0..200 {
        if let Some(live) = state.loadtests.live_of(test_id) {
            return Ok(live);
        }
        match state.loadtests.current() {
            Some(a) if a.test_id.is_none() => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => break,
        }
    }
    state.loadtests.claim(Some(test_id)).map(|(_, live)| live)
}

async fn end(state: &LoadTesting, test_id: &str, status: &str, error: Option<&str>) {
    let done = async {
        let mut tx = state.db.begin_write().await?;
        db::end_without_report(&mut tx, test_id, status, error, Timestamp::now()).await?;
        tx.commit().await?;
        Ok::<(), anyhow::Error>(())
    };
    if let Err(e) = done.await {
        tracing::warn!(test_id, error = %format!("{e:#}"), "failed to record the end of a load test");
    }
}

/// A test in the status list (no percentiles beyond p50/p99: see results).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TestSummary {
    pub id: String,
    pub status: String,
    pub mode: String,
    pub concurrency: i64,
    pub target_rps: Option<f64>,
    pub requests: Option<i64>,
    pub succeeded: Option<i64>,
    pub failed: Option<i64>,
    pub achieved_rps: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub passed: Option<bool>,
    pub error: Option<String>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub finished_at: Option<Timestamp>,
    pub results_url: String,
}

impl From<db::LoadTestRow> for TestSummary {
    fn from(r: db::LoadTestRow) -> Self {
        Self {
            results_url: format!("/api/load-test/results/{}", r.id),
            id: r.id,
            status: r.status,
            mode: r.mode,
            concurrency: r.concurrency,
            target_rps: r.target_rps,
            requests: r.requests,
            succeeded: r.succeeded,
            failed: r.failed,
            achieved_rps: r.achieved_rps,
            p50_ms: r.p50_ms,
            p99_ms: r.p99_ms,
            passed: r.passed.map(|p| p != 0),
            error: r.error,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// Live progress of the running test.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Running {
    /// Null while the test is being queued.
    pub id: Option<String>,
    pub status: String,
    pub elapsed_seconds: f64,
    /// Requests completed so far.
    pub requests: u64,
    pub succeeded: u64,
    pub failed: u64,
    /// Requests completed per second so far.
    pub current_rps: f64,
}

/// `GET /api/load-test/status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    pub running: Option<Running>,
    /// The latest tests, newest first.
    pub recent: Vec<TestSummary>,
}

pub async fn status(state: &LoadTesting) -> Result<Status> {
    reconcile(state).await?;
    let running = state.loadtests.current().map(|a| {
        let completed = a.live.completed.load(Ordering::Relaxed);
        let failed = a.live.failed.load(Ordering::Relaxed);
        let started = a.live.started_ms.load(Ordering::Relaxed);
        let elapsed = if started == 0 {
            0.0
        } else {
            (chrono::Utc::now().timestamp_millis() - started).max(0) as f64 / 1000.0
        };
        Running {
            id: a.test_id,
            status: if started == 0 { "queued" } else { "running" }.into(),
            elapsed_seconds: elapsed,
            requests: completed,
            succeeded: completed.saturating_sub(failed),
            failed,
            current_rps: if elapsed > 0.0 {
                (completed as f64 / elapsed * 10.0).round() / 10.0
            } else {
                0.0
            },
        }
    });
    let mut conn = state.db.reader.acquire().await?;
    let recent = db::recent(&mut conn, 20)
        .await?
        .into_iter()
        .map(TestSummary::from)
        .collect();
    Ok(Status { running, recent })
}

/// The full result of a finished test; for a test still queued or running,
/// its live totals (latency statistics come with the final report).
pub async fn result(state: &LoadTesting, id: &str) -> Result<LoadTestResult> {
    let row = {
        let mut conn = state.db.reader.acquire().await?;
        db::find(&mut conn, id).await?.ok_or(AppError::NotFound)?
    };
    if let Some(report) = &row.report {
        let r: LoadTestResult =
            serde_json::from_str(report).map_err(|e| anyhow::anyhow!("stored report: {e}"))?;
        return Ok(r);
    }
    let mut r = LoadTestResult {
        id: row.id.clone(),
        job_id: row.job_id.clone(),
        status: row.status.clone(),
        mode: row.mode.clone(),
        concurrency: u32::try_from(row.concurrency).unwrap_or(0),
        started_at: row.started_at,
        finished_at: row.finished_at,
        target_rps: row.target_rps,
        coordinated_omission_corrected: row.target_rps.is_some(),
        error: row.error.clone(),
        request: serde_json::from_str(&row.request).unwrap_or_default(),
        ..Default::default()
    };
    if let Some(live) = state.loadtests.live_of(id) {
        let completed = live.completed.load(Ordering::Relaxed);
        let failed = live.failed.load(Ordering::Relaxed);
        r.totals = model::Totals {
            requests: completed,
            succeeded: completed.saturating_sub(failed),
            failed,
        };
    }
    Ok(r)
}

/// At start-up: tests the previous process left running are marked failed,
/// and the virtual users it left are removed.
pub fn spawn_workers(state: &LoadTesting, tracker: &TaskTracker, _shutdown: CancellationToken) {
    let st = state.clone();
    tracker.spawn(async move {
        let done = async {
            let mut tx = st.db.begin_write().await?;
            let n = db::fail_interrupted(&mut tx, Timestamp::now()).await?;
            tx.commit().await?;
            Ok::<u64, anyhow::Error>(n)
        };
        match done.await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                tests = n,
                "load tests interrupted by the last shutdown marked failed"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "failed to close interrupted load tests")
            }
        }
        // Their virtual users too.
        match users::remove_leftovers(&st).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                accounts = n,
                "virtual users of interrupted load tests removed"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "failed to remove leftover virtual users")
            }
        }
    });
}
