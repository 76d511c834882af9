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
use super::writer::{ClaimSize, Outcome, WriteOp};
use super::{JobContext, Queue, Registry, RunningJob};
use crate::config::Config;
use crate::db::Db;
use crate::monitoring::Monitor;
use crate::time::Timestamp;

/// Most jobs claimed by one statement.
const MAX_CLAIM: usize = 64;
/// How long a cancelled handler may take to stop before it is dropped.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// What the runner works with.
#[derive(Clone)]
pub struct Runner {
    pub jobs: Queue,
    pub db: Db,
    pub config: Arc<Config>,
    /// Failed attempts are tracked with the service's other errors.
    pub monitor: Monitor,
}

/// Starts the queue's writer and the runner with the given handlers. The
/// writer stops once the runner has stopped (it records outcomes through the
/// writer until its last running job has finished) and `drained` is
/// cancelled (no request can enqueue any more).
pub fn spawn_runner(
    state: &Runner,
    registry: Registry,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
    drained: CancellationToken,
) {
    state.jobs.inner.handoff.set_lanes(registry.lanes_json());
    let writer_stop = CancellationToken::new();
    if let Some(writer) = state.jobs.writer(writer_stop.clone()) {
        tracker.spawn(writer);
    }
    let state = state.clone();
    let registry = Arc::new(registry);
    let keeper_state = state.clone();
    let keeper_shutdown = shutdown.clone();
    tracker.spawn(lease_keeper(keeper_state, keeper_shutdown));
    tracker.spawn(async move {
        run(state, registry, shutdown).await;
        drained.cancelled().await;
        writer_stop.cancel();
    });
}

async fn run(state: Runner, registry: Arc<Registry>, shutdown: CancellationToken) {
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
        let claimed = match claim(&state, &slots).await {
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
/// The claim takes as many jobs as there are free slots when the writer
/// applies it (slots keep freeing while it waits; only this loop takes them).
async fn claim(state: &Runner, slots: &Arc<Semaphore>) -> anyhow::Result<Vec<Claimed>> {
    let lease = Timestamp::now() + chrono::Duration::from_std(state.config.job_lease)?;
    let (ack, rx) = oneshot::channel();
    state
        .jobs
        .inner
        .writer
        .send(WriteOp::Claim {
            owner: state.jobs.owner().to_string(),
            n: ClaimSize {
                slots: slots.clone(),
                max: MAX_CLAIM,
            },
            lease_expires_at: lease,
            ack,
        })
        .await
        .map_err(|_| anyhow::anyhow!("job writer stopped"))?;
    rx.await
        .map_err(|_| anyhow::anyhow!("job writer dropped the claim"))?
        .map_err(|e| anyhow::anyhow!("claim failed: {e}"))
}

/// How long to sleep when nothing could be claimed: the poll interval, or
/// less when a scheduled job comes due sooner. (Due jobs left over wait for
/// a full lane: a finishing job wakes the runner.)
async fn idle_wait(state: &Runner) -> Duration {
    let poll = state.config.job_poll_interval;
    let next = async {
        let mut conn = state.db.reader.acquire().await.ok()?;
        db::next_run_at(&mut conn).await.ok()?
    }
    .await;
    match next {
        Some(at) => (at - Timestamp::now())
            .to_std()
            .map_or(poll, |d| d.clamp(Duration::from_millis(5), poll)),
        None => poll,
    }
}

async fn execute(
    state: Runner,
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
    let outcome_writes = Arc::new(std::sync::Mutex::new(Vec::new()));
    let span =
        tracing::info_span!("job", job_id = %job.id, kind = %job.kind, attempt = job.attempts);
    let result = run_handler(&state, &registry, &job, &token, &outcome_writes, &span).await;
    if let Ok(mut running) = queue.inner.running.lock() {
        running.remove(&job.id);
    }

    let interrupted = stopping.load(Ordering::SeqCst) && token.is_cancelled();
    let Some((outcome, wake_after)) = outcome_of(
        result,
        by_client.load(Ordering::SeqCst),
        interrupted,
        &job,
        (state.config.job_retry_base, state.config.job_retry_max),
        rand::random::<f64>(),
        Timestamp::now(),
    ) else {
        // Interrupted by shutdown: leave the row to be released to the queue.
        drop(permit);
        return;
    };
    if let Some(delay) = wake_after {
        schedule_wake(&queue, delay);
    }
    let status = outcome_status(&outcome);
    if let Outcome::Failed { code, message } | Outcome::Retry { code, message, .. } = &outcome {
        {
            let _e = span.enter();
            tracing::warn!(%code, %message, status, "job attempt failed");
        }
        track_failure(&state, &job, status, code, message);
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

/// Runs the job's handler in a task of its own. `None` when it did not stop
/// within [`CANCEL_GRACE`] of being cancelled (it is then aborted).
async fn run_handler(
    state: &Runner,
    registry: &Registry,
    job: &Claimed,
    token: &CancellationToken,
    outcome_writes: &Arc<std::sync::Mutex<Vec<super::OutcomeWrite>>>,
    span: &tracing::Span,
) -> Option<Result<serde_json::Value, JobError>> {
    let Some(handler) = registry.get(&job.kind) else {
        return Some(Err(JobError::fail(
            "unknown_kind",
            format!("no handler for job kind {:?}", job.kind),
        )));
    };
    let ctx = JobContext {
        id: job.id.clone(),
        kind: job.kind.clone(),
        user_id: job.user_id.clone(),
        payload: serde_json::from_str(&job.payload).unwrap_or(serde_json::Value::Null),
        attempt: job.attempts,
        max_attempts: job.max_attempts,
        queue: state.jobs.clone(),
        cancel: token.clone(),
        lease_token: job.lease_token.clone(),
        last_progress: std::sync::Mutex::new(None),
        outcome_writes: outcome_writes.clone(),
    };
    let mut handle = tokio::spawn(tracing::Instrument::instrument(handler(ctx), span.clone()));
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

/// What an attempt's end means for its job, and when to wake the runner for
/// a retry. `None`: the attempt was interrupted by shutdown and the job goes
/// back to the queue as it is. `retry` is the backoff's (base, max).
fn outcome_of(
    result: Option<Result<serde_json::Value, JobError>>,
    cancelled_by_client: bool,
    interrupted_by_shutdown: bool,
    job: &Claimed,
    retry: (Duration, Duration),
    jitter: f64,
    now: Timestamp,
) -> Option<(Outcome, Option<Duration>)> {
    let outcome = match result {
        Some(Ok(value)) => Outcome::Succeeded(value.to_string()),
        _ if cancelled_by_client => Outcome::Cancelled {
            code: "cancelled".into(),
            message: "cancelled by request".into(),
        },
        _ if interrupted_by_shutdown => return None,
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
                let delay = backoff(job.attempts, retry.0, retry.1, retry_after, jitter);
                let run_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                return Some((
                    Outcome::Retry {
                        code,
                        message,
                        run_at,
                    },
                    Some(delay),
                ));
            }
            Outcome::Failed { code, message }
        }
    };
    Some((outcome, None))
}

/// The `status` label of an outcome in metrics and logs.
fn outcome_status(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Succeeded(_) => "succeeded",
        Outcome::Failed { .. } => "failed",
        Outcome::Cancelled { .. } => "cancelled",
        Outcome::Retry { .. } => "retrying",
    }
}

/// A failed or retried attempt is tracked with the service's other errors.
fn track_failure(state: &Runner, job: &Claimed, status: &str, code: &str, message: &str) {
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
async fn lease_keeper(state: Runner, shutdown: CancellationToken) {
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

async fn extend(state: &Runner) -> anyhow::Result<()> {
    let expires = Timestamp::now() + chrono::Duration::from_std(state.config.job_lease)?;
    let mut tx = state.db.begin_write().await?;
    db::extend_leases(&mut tx, state.jobs.owner(), expires).await?;
    tx.commit().await?;
    Ok(())
}

async fn recover(state: &Runner, at_start: bool) -> anyhow::Result<u64> {
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

async fn release(state: &Runner) -> anyhow::Result<u64> {
    let mut tx = state.db.begin_write().await?;
    let n = db::release(&mut tx, state.jobs.owner(), Timestamp::now()).await?;
    tx.commit().await?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed(attempts: i64, max_attempts: i64) -> Claimed {
        Claimed {
            id: "j".into(),
            kind: "k".into(),
            payload: "{}".into(),
            user_id: None,
            attempts,
            max_attempts,
            lease_token: "t".into(),
        }
    }

    const RETRY: (Duration, Duration) = (Duration::from_secs(1), Duration::from_secs(60));

    fn outcome(
        result: Option<Result<serde_json::Value, JobError>>,
        by_client: bool,
        interrupted: bool,
        job: &Claimed,
    ) -> Option<(Outcome, Option<Duration>)> {
        let now = Timestamp::UNIX_EPOCH;
        outcome_of(result, by_client, interrupted, job, RETRY, 0.0, now)
    }

    #[test]
    fn a_retryable_failure_is_retried_after_the_backoff_until_the_last_attempt() {
        let err = || Some(Err(JobError::retry("flaky", "try again")));
        let Some((Outcome::Retry { code, run_at, .. }, Some(wake))) =
            outcome(err(), false, false, &claimed(2, 3))
        else {
            panic!("expected a retry");
        };
        assert_eq!((code.as_str(), wake), ("flaky", Duration::from_secs(2)));
        assert_eq!(run_at.to_string(), "1970-01-01T00:00:02.000Z");
        let last = outcome(err(), false, false, &claimed(3, 3));
        assert!(matches!(last, Some((Outcome::Failed { .. }, None))));
    }

    #[test]
    fn cancellation_and_shutdown_decide_before_the_handlers_error() {
        let failed = || Some(Err(JobError::fail("bad", "no")));
        let job = claimed(1, 3);
        assert!(matches!(
            outcome(failed(), true, true, &job),
            Some((Outcome::Cancelled { .. }, None))
        ));
        assert!(outcome(failed(), false, true, &job).is_none());
        assert!(matches!(
            outcome(None, false, false, &job),
            Some((Outcome::Failed { .. }, None))
        ));
        let done = outcome(Some(Ok(serde_json::json!(1))), true, true, &job);
        assert!(matches!(done, Some((Outcome::Succeeded(v), None)) if v == "1"));
    }
}
