//! The durable job queue: every piece of long or failure-prone work is a row
//! in `jobs`, executed at least once by the in-process runner.
//!
//! - [`Queue::enqueue`] writes the row (through the group-commit writer, so
//!   concurrent enqueues share one transaction) and wakes the runner at once.
//! - The runner ([`runner`]) claims due rows in one atomic statement, highest
//!   priority first then oldest, runs up to `JOB_CONCURRENCY` at once, holds a
//!   lease it keeps extending, and records the outcome only if its lease is
//!   still current (a stale attempt cannot overwrite a newer one).
//! - Failures are retried with exponential backoff and jitter up to
//!   `max_attempts`; [`JobError::Fail`] fails at once.
//! - Jobs whose process died are re-queued at start-up and when their lease
//!   lapses. Execution is therefore at-least-once: handlers must tolerate
//!   running again.

pub mod db;
pub mod model;
pub mod routes;
pub mod runner;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

pub use self::model::{Job, JobError, JobStatus, NewJob, with_priority};
pub use self::runner::spawn_runner;
use self::writer::WriteOp;
use crate::config::Config;
use crate::db::Db;
use crate::error::{AppError, Result};
use crate::http::extract::Json;
use crate::ids::{JobId, UserId};
use crate::sessions::auth::Principal;
use crate::time::Timestamp;

/// Payload bytes of unfinished jobs, everyone's and `user_id`'s, leaving
/// out the job `except` (storage quotas count queued payloads).
pub async fn pending_payload_bytes(
    conn: &mut sqlx::SqliteConnection,
    user_id: &UserId,
    except: Option<&JobId>,
) -> sqlx::Result<(i64, i64)> {
    db::pending_payload_bytes(conn, user_id, except).await
}

/// Longest `Prefer: wait=N` honoured, in seconds.
pub const MAX_PREFER_WAIT: u64 = 60;

type HandlerFn =
    Arc<dyn Fn(JobContext) -> BoxFuture<'static, Result<Value, JobError>> + Send + Sync>;

/// The handlers of every job kind. Built once at start-up.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, HandlerFn>,
    lanes: HashMap<String, usize>,
}

impl Registry {
    pub fn register<F, Fut>(&mut self, kind: &str, handler: F)
    where
        F: Fn(JobContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Value, JobError>> + Send + 'static,
    {
        self.handlers.insert(
            kind.to_string(),
            Arc::new(move |ctx| Box::pin(handler(ctx))),
        );
    }

    /// At most `max` jobs of `kind` run at once (across the runners sharing
    /// the database); its other jobs wait in the queue without holding a
    /// runner slot another kind could use.
    pub fn lane(&mut self, kind: &str, max: usize) {
        self.lanes.insert(kind.to_string(), max);
    }

    /// The lanes as the claim takes them: a JSON object kind -> max.
    fn lanes_json(&self) -> String {
        serde_json::to_string(&self.lanes).unwrap_or_else(|_| "{}".into())
    }

    pub fn get(&self, kind: &str) -> Option<HandlerFn> {
        self.handlers.get(kind).cloned()
    }

    pub fn kinds(&self) -> Vec<String> {
        let mut k: Vec<String> = self.handlers.keys().cloned().collect();
        k.sort();
        k
    }
}

/// Kinds the queue itself provides.
pub fn register_jobs(registry: &mut Registry) {
    // A job that does nothing: used by the queue benchmark and as a probe.
    registry.register("jobs.noop", |_ctx| async { Ok(Value::Null) });
}

/// What a handler gets: its job, the state, and a cancellation signal.
pub struct JobContext {
    pub id: JobId,
    pub kind: String,
    pub user_id: Option<UserId>,
    pub payload: Value,
    pub attempt: i64,
    pub max_attempts: i64,
    /// The queue, for progress reports. (A handler's own domain service is
    /// captured by the closure it was registered with.)
    pub queue: Queue,
    /// Cancelled when a client cancels the job or the service stops.
    pub cancel: CancellationToken,
    lease_token: String,
    last_progress: Mutex<Option<Instant>>,
    outcome_writes: Arc<Mutex<Vec<OutcomeWrite>>>,
}

/// A write of another domain, committed in the same transaction as a job
/// attempt's outcome (see [`JobContext::commit_with_outcome`]).
pub type OutcomeWrite = Box<
    dyn for<'c> FnOnce(&'c mut sqlx::SqliteConnection) -> BoxFuture<'c, anyhow::Result<()>> + Send,
>;

impl JobContext {
    /// Commits `write` in the transaction that records this attempt's
    /// outcome, whatever it is: the two become visible together, and the
    /// write costs no commit of its own. (If the service stops before the
    /// outcome is recorded, the write is lost with it.)
    pub fn commit_with_outcome(&self, write: OutcomeWrite) {
        if let Ok(mut writes) = self.outcome_writes.lock() {
            writes.push(write);
        }
    }

    /// The payload as a typed request (a bad payload fails the job at once).
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, JobError> {
        serde_json::from_value(self.payload.clone())
            .map_err(|e| JobError::fail("invalid_payload", format!("invalid job payload: {e}")))
    }

    /// Reports progress (0-100). Writes are throttled to a few per second.
    pub async fn progress(&self, percent: u8, message: impl Into<String>) {
        let now = Instant::now();
        if let Ok(mut last) = self.last_progress.lock() {
            if percent < 100
                && last.is_some_and(|t| now.duration_since(t) < Duration::from_millis(200))
            {
                return;
            }
            *last = Some(now);
        }
        self.queue.write_progress(
            &self.id,
            &self.lease_token,
            i64::from(percent.min(100)),
            Some(message.into()),
        );
    }
}

struct RunningJob {
    token: CancellationToken,
    cancelled_by_client: Arc<AtomicBool>,
}

/// The job if `caller` owns it or is an admin, else 404.
fn visible_to(caller: &Principal, job: Job) -> Result<Job> {
    match &job.user_id {
        Some(owner) if caller.can_see(owner) => Ok(job),
        None if caller.is_admin() => Ok(job),
        _ => Err(AppError::NotFound),
    }
}

/// Handle to the queue; clone freely.
#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: Arc<Config>,
    handoff: Arc<writer::Handoff>,
    finished: broadcast::Sender<JobId>,
    running: Mutex<HashMap<JobId, RunningJob>>,
    writer: mpsc::Sender<WriteOp>,
    /// The writer's end of the channel until the writer is started (see
    /// [`runner::spawn_runner`]).
    writer_rx: Mutex<Option<mpsc::Receiver<WriteOp>>>,
    /// This process's runner identity (lease owner).
    owner: String,
}

impl Queue {
    /// Creates the queue; its group-commit writer starts with the runner.
    pub fn new(db: Db, config: Arc<Config>) -> Self {
        let (tx, rx) = mpsc::channel(4096);
        // A waiter that lags re-reads the job, so the ring need not be long.
        let (finished, _) = broadcast::channel(1024);
        let owner = format!("runner-{}", uuid::Uuid::new_v4().simple());
        let handoff = Arc::new(writer::Handoff::new(owner.clone(), config.job_lease));
        let inner = Arc::new(Inner {
            db,
            config,
            handoff,
            finished,
            running: Mutex::default(),
            writer: tx,
            writer_rx: Mutex::new(Some(rx)),
            owner,
        });
        Self { inner }
    }

    /// The group-commit writer, to run until `stop` (once: `None` after the
    /// first call).
    fn writer(&self, stop: CancellationToken) -> Option<impl Future<Output = ()> + use<>> {
        let rx = self.inner.writer_rx.lock().ok()?.take()?;
        let full = self.inner.config.sqlite_synchronous == crate::config::Synchronous::Full;
        Some(writer::run(
            self.inner.db.clone(),
            full,
            rx,
            self.inner.finished.clone(),
            self.inner.handoff.clone(),
            stop,
        ))
    }

    /// Jobs, newest first, with optional filters (`limit` rows at most).
    pub async fn list(
        &self,
        owner: Option<&UserId>,
        status: Option<&str>,
        kind: Option<&str>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let mut conn = self.inner.db.reader.acquire().await?;
        let rows = db::list(&mut conn, owner, status, kind, cursor, limit).await?;
        Ok(rows.into_iter().map(Job::from).collect())
    }

    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    /// `JOB_MAX_PENDING_PER_USER`: for [`NewJob::max_pending`] on jobs a
    /// user's request creates.
    pub fn max_pending_per_user(&self) -> i64 {
        self.inner.config.job_max_pending_per_user
    }

    /// Wakes the runner (new work, or a free slot).
    pub fn wake(&self) {
        self.inner.handoff.wake.notify_one();
    }

    /// Enqueues a job. With an idempotency key, the same key for the same
    /// owner and kind returns the existing job (409 if its payload differs).
    #[tracing::instrument(skip_all, fields(kind = %job.kind))]
    pub async fn enqueue(&self, job: NewJob) -> Result<Job> {
        if let Some(key) = &job.idempotency_key {
            check_idempotency_key(key)?;
        }
        let (ack, rx) = tokio::sync::oneshot::channel();
        self.inner
            .writer
            .send(WriteOp::Insert {
                job: Box::new(job),
                ack,
            })
            .await
            .map_err(|_| anyhow::anyhow!("job writer stopped"))?;
        let job = rx
            .await
            .map_err(|_| anyhow::anyhow!("job writer dropped the insert"))??;
        metrics::counter!("hs_jobs_enqueued_total", "kind" => job.kind.clone()).increment(1);
        self.wake();
        Ok(job)
    }

    /// Reads a job.
    pub async fn get(&self, id: &JobId) -> Result<Option<Job>> {
        let mut conn = self.inner.db.reader.acquire().await?;
        Ok(db::find(&mut conn, id).await?.map(Job::from))
    }

    /// A job the caller may see (owner or admin), else 404.
    pub async fn get_visible(&self, caller: &Principal, id: &JobId) -> Result<Job> {
        let job = self.get(id).await?.ok_or(AppError::NotFound)?;
        visible_to(caller, job)
    }

    /// [`Queue::get_visible`] with the job's payload.
    pub async fn get_visible_with_payload(&self, caller: &Principal, id: &JobId) -> Result<Job> {
        let row = {
            let mut conn = self.inner.db.reader.acquire().await?;
            db::find(&mut conn, id).await?.ok_or(AppError::NotFound)?
        };
        let payload = serde_json::from_str(&row.payload).ok();
        visible_to(
            caller,
            Job {
                payload,
                ..Job::from(row)
            },
        )
    }

    /// Waits up to `timeout` for the job to finish; returns its latest state.
    pub async fn wait_finished(&self, id: &JobId, timeout: Duration) -> Result<Job> {
        let mut rx = self.inner.finished.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.get(id).await?.ok_or(AppError::NotFound)?;
            if job.status.is_finished() {
                return Ok(job);
            }
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Err(_) => return self.get(id).await?.ok_or(AppError::NotFound),
                    Ok(Ok(done)) if &done == id => break,
                    Ok(Ok(_)) => continue,
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => break,
                    Ok(Err(broadcast::error::RecvError::Closed)) => {
                        return self.get(id).await?.ok_or(AppError::NotFound);
                    }
                }
            }
        }
    }

    /// Cancels a queued job, or signals a running one's handler.
    pub async fn cancel(&self, caller: &Principal, id: &JobId) -> Result<Job> {
        let job = self.get_visible(caller, id).await?;
        if matches!(job.status, JobStatus::Succeeded | JobStatus::Failed) {
            return Err(AppError::Conflict(format!(
                "the job already {}",
                job.status.as_str()
            )));
        }
        let mut tx = self.inner.db.begin_write().await?;
        db::cancel(&mut tx, id, Timestamp::now()).await?;
        tx.commit().await?;
        if let Ok(running) = self.inner.running.lock()
            && let Some(r) = running.get(id)
        {
            r.cancelled_by_client.store(true, Ordering::SeqCst);
            r.token.cancel();
        }
        let job = self.get(id).await?.ok_or(AppError::NotFound)?;
        if job.status == JobStatus::Cancelled {
            let _ = self.inner.finished.send(job.id.clone());
        }
        Ok(job)
    }

    /// Removes every job of a user (a load test's throwaway account):
    /// running ones are told to stop, and all rows are deleted, so the
    /// runner neither claims nor finishes them. Returns how many.
    pub async fn purge_user(&self, user_id: &UserId) -> anyhow::Result<u64> {
        let mut tx = self.inner.db.begin_write().await?;
        let ids = db::delete_of_user(&mut tx, user_id).await?;
        tx.commit().await?;
        if let Ok(running) = self.inner.running.lock() {
            for id in &ids {
                if let Some(r) = running.get(id) {
                    r.token.cancel();
                }
            }
        }
        Ok(ids.len() as u64)
    }

    fn write_progress(&self, id: &JobId, token: &str, percent: i64, message: Option<String>) {
        let _ = self.inner.writer.try_send(WriteOp::Progress {
            id: id.clone(),
            token: token.to_string(),
            percent,
            message,
        });
    }

    /// Deletes finished jobs older than `JOB_RETENTION_DAYS`.
    pub async fn prune(&self) -> anyhow::Result<u64> {
        let before = self.retention_cutoff();
        let mut tx = self.inner.db.begin_write().await?;
        let n = db::prune_finished(&mut tx, before).await?;
        tx.commit().await?;
        Ok(n)
    }

    fn retention_cutoff(&self) -> Timestamp {
        Timestamp::now() - chrono::Duration::days(i64::from(self.inner.config.job_retention_days))
    }
}

/// Maintenance of this domain: finished jobs past retention.
pub async fn maintenance(
    queue: &Queue,
    apply: bool,
) -> anyhow::Result<Vec<crate::maintenance::model::Action>> {
    let count = if apply {
        queue.prune().await?
    } else {
        let mut conn = queue.inner.db.reader.acquire().await?;
        db::count_prunable(&mut conn, queue.retention_cutoff())
            .await?
            .max(0) as u64
    };
    Ok(vec![crate::maintenance::model::Action {
        name: "jobs.prune".into(),
        description: format!(
            "delete jobs finished more than {} days ago (JOB_RETENTION_DAYS)",
            queue.inner.config.job_retention_days
        ),
        count,
        bytes: 0,
    }])
}

/// The seconds of a `Prefer: wait=N` header (RFC 7240), capped.
pub fn prefer_wait(headers: &HeaderMap, request_timeout: Duration) -> Option<Duration> {
    let cap = MAX_PREFER_WAIT.min(request_timeout.as_secs().saturating_sub(2).max(1));
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("wait")
                .then(|| v.trim().trim_matches('"').parse::<u64>().ok())?
        })
        .next()
        .map(|n| Duration::from_secs(n.min(cap)))
}

/// The client's `Idempotency-Key` header, if any.
/// The `Idempotency-Key` rule (also stated in the OpenAPI document).
pub fn check_idempotency_key(key: &str) -> Result<()> {
    if model::IDEMPOTENCY_KEY_BYTES.contains(&key.len()) {
        return Ok(());
    }
    Err(AppError::validation(
        "Idempotency-Key",
        format!(
            "must be {} to {} characters",
            model::IDEMPOTENCY_KEY_BYTES.start(),
            model::IDEMPOTENCY_KEY_BYTES.end()
        ),
    ))
}

pub fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// Answers a started job per the API convention: `202 Accepted` with the job
/// and `Location`, or, under `Prefer: wait=N`, `200` with the finished job
/// when it finishes in time.
pub async fn respond(queue: &Queue, headers: &HeaderMap, job: Job) -> Result<Response> {
    let wait = prefer_wait(headers, queue.inner.config.request_timeout);
    let job = match wait {
        Some(w) if !job.status.is_finished() => queue.wait_finished(&job.id, w).await?,
        _ => job,
    };
    let location = HeaderValue::from_str(&format!("/api/jobs/{}", job.id)).ok();
    let status = if job.status.is_finished() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut res = (status, Json(job)).into_response();
    if let Some(loc) = location {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    if let Some(w) = wait
        && let Ok(v) = HeaderValue::from_str(&format!("wait={}", w.as_secs()))
    {
        res.headers_mut().insert("preference-applied", v);
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("prefer", v.parse().unwrap());
        h
    }

    #[test]
    fn prefer_wait_is_parsed_and_capped() {
        let t = Duration::from_secs(90);
        assert_eq!(
            prefer_wait(&headers("wait=5"), t),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            prefer_wait(&headers("respond-async, wait=10"), t),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            prefer_wait(&headers("wait=600"), t),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            prefer_wait(&headers("wait=600"), Duration::from_secs(30)),
            Some(Duration::from_secs(28))
        );
        assert_eq!(prefer_wait(&headers("return=minimal"), t), None);
        assert_eq!(prefer_wait(&HeaderMap::new(), t), None);
    }
}
