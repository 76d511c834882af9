//! The runner: claims due jobs, runs their handlers with bounded
//! concurrency, keeps their leases alive, recovers abandoned jobs, and on
//! shutdown stops claiming, lets running jobs finish for a bounded time and
//! gives the rest back to the queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::db::{self, Claimed};
use super::model::{JobError, backoff};
use super::writer::{Outcome, WriteOp};
use super::{JobContext, Queue, Registry, RunningJob};
use crate::state::AppState;
use crate::time::Timestamp;

/// Most jobs claimed by one statement.
const MAX_CLAIM: usize = 64;
/// How long a cancelled handler may take to stop before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Starts the runner with the given handlers.
pub fn spawn_runner(
    state: &AppState,
    registry: Registry,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let state = state.clone();
    let registry = Arc::new(registry);
    let keeper_state = state.clone();
    let keeper_shutdown = shutdown.clone();
    tracker.spawn(lease_keeper(keeper_state, keeper_shutdown));
    tracker.spawn(run(state, registry, shutdown));
}

async fn run(state: AppState, registry: Arc<Registry>, shutdown: CancellationToken) {
    let queue = state.jobs.clone();
    let config = state.config.clone();
    if let Err(e) = recover(&state, true).await {
        tracing::error!(error = %format!("{e:#}"), "failed to recover abandoned jobs at start-up");
    }
    let slots = Arc::new(Semaphore::new(config.job_concurrency));
    let jobs = TaskTracker::new();
    let stopping = Arc::new(AtomicBool::new(false));

    let handoff = queue.inner.handoff.clone();
    // Claimed jobs waiting for a free slot (only handed-off jobs can outnumber
    // the free slots, and only by the slots offered).
    let mut ready: VecDeque<Claimed> = VecDeque::new();
    while !shutdown.is_cancelled() {
        ready.extend(handoff.take());
        while !ready.is_empty() {
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                break;
            };
            if let Some(job) = ready.pop_front() {
                jobs.spawn(execute(
                    state.clone(),
                    registry.clone(),
                    job,
                    permit,
                    stopping.clone(),
                ));
            }
        }
        let free = slots.available_permits().min(MAX_CLAIM);
        if free == 0 || !ready.is_empty() {
            tokio::select! {
                () = handoff.wake.notified() => {}
                () = shutdown.cancelled() => break,
            }
            continue;
        }
        let claimed = match claim(&state, free).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "failed to claim jobs");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = shutdown.cancelled() => break,
                }
                continue;
            }
        };
        if claimed.is_empty() {
            let idle = idle_wait(&state).await;
            // While this waits, the writer claims new jobs for the free slots
            // in the transaction that inserts them.
            handoff.demand.store(free, Ordering::SeqCst);
            let stop = tokio::select! {
                () = handoff.wake.notified() => false,
                () = tokio::time::sleep(idle) => false,
                () = shutdown.cancelled() => true,
            };
            handoff.demand.store(0, Ordering::SeqCst);
            if stop {
                break;
            }
            continue;
        }
        ready.extend(claimed);
    }

    // Shutdown: no more claims; give running jobs a bounded time.
    stopping.store(true, Ordering::SeqCst);
    jobs.close();
    let grace = config.shutdown_grace / 2;
    if tokio::time::timeout(grace, jobs.wait()).await.is_err() {
        tracing::warn!(
            "jobs still running at shutdown; cancelling them and releasing them to the queue"
        );
        if let Ok(running) = queue.inner.running.lock() {
            for r in running.values() {
                r.token.cancel();
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), jobs.wait()).await;
    }
    match release(&state).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(released = n, "running jobs released back to the queue"),
        Err(e) => tracing::error!(error = %format!("{e:#}"), "failed to release running jobs"),
    }
}

/// Claims through the group-commit writer, so that a claim shares its
/// transaction with the outcomes and enqueues of the same moment.
async fn claim(state: &AppState, n: usize) -> anyhow::Result<Vec<Claimed>> {
    let lease = Timestamp::now() + chrono::Duration::from_std(state.config.job_lease)?;
    let (ack, rx) = oneshot::channel();
    state
        .jobs
        .inner
        .writer
        .send(WriteOp::Claim {
            owner: state.jobs.owner().to_string(),
            n: n as i64,
            lease_expires_at: lease,
            ack,
        })
        .await
        .map_err(|_| anyhow::anyhow!("job writer stopped"))?;
    rx.await
        .map_err(|_| anyhow::anyhow!("job writer dropped the claim"))?
        .map_err(|e| anyhow::anyhow!("claim failed: {e}"))
}

/// How long to sleep when nothing is due: the poll interval, or less when a
/// scheduled job comes due sooner.
async fn idle_wait(state: &AppState) -> Duration {
    let poll = state.config.job_poll_interval;
    let next = async {
        let mut conn = state.db.reader.acquire().await.ok()?;
        db::next_run_at(&mut conn).await.ok()?
    }
    .await;
    match next {
        Some(at) => (at - Timestamp::now())
            .to_std()
            .unwrap_or(Duration::from_millis(5))
            .clamp(Duration::from_millis(5), poll),
        None => poll,
    }
}

async fn execute(
    state: AppState,
    registry: Arc<Registry>,
    job: Claimed,
    permit: OwnedSemaphorePermit,
    stopping: Arc<AtomicBool>,
) {
    let queue = state.jobs.clone();
    let started = Instant::now();
    let token = CancellationToken::new();
    let by_client = Arc::new(AtomicBool::new(false));
    if let Ok(mut running) = queue.inner.running.lock() {
        running.insert(
            job.id.clone(),
            RunningJob {
                token: token.clone(),
                cancelled_by_client: by_client.clone(),
            },
        );
    }
    let payload = serde_json::from_str(&job.payload).unwrap_or(serde_json::Value::Null);
    let outcome_writes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let span =
        tracing::info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempts);
    let result = match registry.get(&job.kind) {
        None => Some(Err(JobError::fail(
            "unknown_kind",
            format!("no handler for job kind {:?}", job.kind),
        ))),
        Some(handler) => {
            let ctx = JobContext {
                id: job.id.clone(),
                kind: job.kind.clone(),
                user_id: job.user_id.clone(),
                payload,
                attempt: job.attempts,
                max_attempts: job.max_attempts,
                state: state.clone(),
                cancel: token.clone(),
                lease_token: job.lease_token.clone(),
                last_progress: std::sync::Mutex::new(None),
                outcome_writes: outcome_writes.clone(),
            };
            let mut handle =
                tokio::spawn(tracing::Instrument::instrument(handler(ctx), span.clone()));
            tokio::select! {
                r = &mut handle => Some(joined(r)),
                () = token.cancelled() => match tokio::time::timeout(CANCEL_GRACE, &mut handle).await {
                    Ok(r) => Some(joined(r)),
                    Err(_) => {
                        handle.abort();
                        None
                    }
                },
            }
        }
    };
    if let Ok(mut running) = queue.inner.running.lock() {
        running.remove(&job.id);
    }

    let cancelled_by_client = by_client.load(Ordering::SeqCst);
    let outcome = match result {
        Some(Ok(value)) => Outcome::Succeeded(value.to_string()),
        _ if cancelled_by_client => Outcome::Cancelled {
            code: "cancelled".into(),
            message: "cancelled by request".into(),
        },
        // Interrupted by shutdown: leave the row to be released to the queue.
        _ if stopping.load(Ordering::SeqCst) && token.is_cancelled() => {
            drop(permit);
            return;
        }
        None => Outcome::Failed {
            code: "cancelled".into(),
            message: "the job did not stop after cancellation".into(),
        },
        Some(Err(JobError::Fail { code, message })) => Outcome::Failed { code, message },
        Some(Err(JobError::Retry {
            code,
            message,
            retry_after,
        })) => {
            if job.attempts < job.max_attempts {
                let delay = backoff(
                    job.attempts,
                    state.config.job_retry_base,
                    state.config.job_retry_max,
                    retry_after,
                    rand::random::<f64>(),
                );
                let run_at =
                    Timestamp::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                schedule_wake(&queue, delay);
                Outcome::Retry {
                    code,
                    message,
                    run_at,
                }
            } else {
                Outcome::Failed { code, message }
            }
        }
    };
    let status = match &outcome {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Failed { .. } => "failed",
        Outcome::Cancelled { .. } => "cancelled",
        Outcome::Retry { .. } => "retrying",
    };
    if let Outcome::Failed { code, message } | Outcome::Retry { code, message, .. } = &outcome {
        {
            let _e = span.enter();
            tracing::warn!(%code, %message, status, "job attempt failed");
        }
        state.monitor.track_error(
            if status == "failed" {
                "job_failure"
            } else {
                "job_retry"
            },
            &format!("{}:{code}", job.kind),
            message,
            serde_json::json!({
                "jobId": job.id,
                "kind": job.kind,
                "attempt": job.attempts,
                "maxAttempts": job.max_attempts,
            }),
            None,
        );
    }
    metrics::counter!("hs_jobs_finished_total", "kind" => job.kind.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("hs_job_duration_seconds", "kind" => job.kind.clone())
        .record(started.elapsed().as_secs_f64());

    let writes = std::mem::take(&mut *outcome_writes.lock().unwrap_or_else(|e| e.into_inner()));
    let (ack, rx) = oneshot::channel();
    let sent = queue
        .inner
        .writer
        .send(WriteOp::Finish {
            id: job.id.clone(),
            token: job.lease_token.clone(),
            outcome,
            writes,
            ack,
        })
        .await;
    // The handler is done: its slot goes to the next job while the outcome
    // is committed (this task, tracked until shutdown, still waits for it).
    drop(permit);
    queue.wake();
    let accepted = sent.is_ok() && rx.await.unwrap_or(false);
    if !accepted {
        tracing::warn!(job_id = %job.id, "outcome not recorded: the lease was no longer current");
    }
}

fn joined(
    r: Result<Result<serde_json::Value, JobError>, tokio::task::JoinError>,
) -> Result<serde_json::Value, JobError> {
    match r {
        Ok(r) => r,
        Err(e) if e.is_panic() => {
            tracing::error!("job handler panicked");
            Err(JobError::retry("panic", "the job handler crashed"))
        }
        Err(_) => Err(JobError::retry("aborted", "the job handler was aborted")),
    }
}

fn schedule_wake(queue: &Queue, after: Duration) {
    let q = queue.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        q.wake();
    });
}

/// Extends this runner's leases, recovers lapsed ones, prunes old jobs.
async fn lease_keeper(state: AppState, shutdown: CancellationToken) {
    let period = (state.config.job_lease / 3).max(Duration::from_millis(500));
    let mut tick = tokio::time::interval(period);
    let mut last_prune = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => break,
        }
        if let Err(e) = extend(&state).await {
            tracing::warn!(error = %format!("{e:#}"), "failed to extend job leases");
        }
        match recover(&state, false).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(recovered = n, "re-queued jobs whose lease lapsed");
                state.jobs.wake();
            }
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "failed to recover lapsed jobs"),
        }
        if last_prune.elapsed() > Duration::from_secs(3600) {
            last_prune = Instant::now();
            match state.jobs.prune().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "pruned finished jobs past retention"),
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "failed to prune jobs"),
            }
        }
    }
}

async fn extend(state: &AppState) -> anyhow::Result<()> {
    let expires = Timestamp::now() + chrono::Duration::from_std(state.config.job_lease)?;
    let mut tx = state.db.begin_write().await?;
    db::extend_leases(&mut tx, state.jobs.owner(), expires).await?;
    tx.commit().await?;
    Ok(())
}

async fn recover(state: &AppState, at_start: bool) -> anyhow::Result<u64> {
    let mut tx = state.db.begin_write().await?;
    let n = db::recover_abandoned(&mut tx, state.jobs.owner(), at_start, Timestamp::now()).await?;
    tx.commit().await?;
    if at_start && n > 0 {
        tracing::warn!(
            recovered = n,
            "re-queued jobs left running by a previous process"
        );
    }
    Ok(n)
}

async fn release(state: &AppState) -> anyhow::Result<u64> {
    let mut tx = state.db.begin_write().await?;
    let n = db::release(&mut tx, state.jobs.owner(), Timestamp::now()).await?;
    tx.commit().await?;
    Ok(n)
}
