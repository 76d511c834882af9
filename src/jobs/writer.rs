//! Group commit for the queue's writes: enqueues, outcomes and progress are
//! sent to one task that applies everything waiting in a single IMMEDIATE
//! transaction, then acknowledges. Durability per job is unchanged (nothing
//! is acknowledged before its commit), while one fsync serves many jobs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::db::{self, InsertJob};
use super::model::{Job, NewJob};
use crate::db::Db;
use crate::error::AppError;
use crate::ids::{JobId, UserId};
use crate::time::Timestamp;

/// Most operations applied in one transaction.
const MAX_BATCH: usize = 512;

/// Jobs the writer claims for a waiting runner in the very transaction that
/// inserts them: the runner offers its free slots (`demand`) while it
/// waits, and gets the jobs without a claim round of its own.
pub(super) struct Handoff {
    /// Free runner slots on offer (0: none, the runner is busy).
    pub demand: AtomicUsize,
    /// Claimed for the runner, committed, not yet taken.
    pub jobs: Mutex<Vec<db::Claimed>>,
    /// Wakes the runner (new work, a free slot, handed-off jobs).
    pub wake: Notify,
    owner: String,
    lease: std::time::Duration,
    /// The registry's lanes (JSON), set when the runner starts.
    lanes: std::sync::OnceLock<String>,
}

impl Handoff {
    pub fn new(owner: String, lease: std::time::Duration) -> Self {
        Self {
            demand: AtomicUsize::new(0),
            jobs: Mutex::new(Vec::new()),
            wake: Notify::new(),
            owner,
            lease,
            lanes: std::sync::OnceLock::new(),
        }
    }

    /// Sets the lanes every claim respects (once, at start).
    pub fn set_lanes(&self, lanes: String) {
        let _ = self.lanes.set(lanes);
    }

    fn lanes(&self) -> &str {
        self.lanes.get().map_or("{}", String::as_str)
    }

    /// The jobs claimed for the runner since it last looked.
    pub fn take(&self) -> Vec<db::Claimed> {
        std::mem::take(&mut *self.jobs.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub(super) enum WriteOp {
    Insert {
        job: Box<NewJob>,
        ack: oneshot::Sender<Result<Job, AppError>>,
    },
    Finish {
        id: JobId,
        token: String,
        outcome: Outcome,
        /// Other domains' writes to commit with the outcome.
        writes: Vec<super::OutcomeWrite>,
        ack: oneshot::Sender<bool>,
    },
    Progress {
        id: JobId,
        token: String,
        percent: i64,
        message: Option<String>,
    },
    Claim {
        owner: String,
        /// How many jobs to claim, read when the claim is applied rather
        /// than when it was sent: slots freed while the claim waited for the
        /// writer are filled by this same claim, so that a busy queue makes
        /// few large claims instead of one per finished job.
        n: ClaimSize,
        lease_expires_at: Timestamp,
        ack: oneshot::Sender<Result<Vec<db::Claimed>, AppError>>,
    },
}

/// The size of a claim: the runner's free slots at the moment the claim is
/// applied (at least 1, at most `max`).
pub(super) struct ClaimSize {
    pub slots: std::sync::Arc<tokio::sync::Semaphore>,
    pub max: usize,
}

impl ClaimSize {
    fn now(&self) -> i64 {
        self.slots.available_permits().clamp(1, self.max) as i64
    }
}

/// How an attempt ended.
pub(super) enum Outcome {
    Succeeded(String),
    Failed {
        code: String,
        message: String,
    },
    Cancelled {
        code: String,
        message: String,
    },
    Retry {
        code: String,
        message: String,
        run_at: Timestamp,
    },
}

enum Pending {
    Claim(
        oneshot::Sender<Result<Vec<db::Claimed>, AppError>>,
        Vec<db::Claimed>,
    ),
    Insert(
        oneshot::Sender<Result<Job, AppError>>,
        Box<Result<Job, AppError>>,
    ),
    Finish(oneshot::Sender<bool>, JobId, bool, bool),
}

pub(super) async fn run(
    db: Db,
    synchronous_full: bool,
    mut rx: mpsc::Receiver<WriteOp>,
    finished: broadcast::Sender<JobId>,
    handoff: std::sync::Arc<Handoff>,
    stop: CancellationToken,
) {
    loop {
        // Ops already sent are applied before stopping.
        let first = tokio::select! {
            biased;
            op = rx.recv() => match op {
                Some(op) => op,
                None => break,
            },
            () = stop.cancelled() => break,
        };
        let mut batch = Vec::with_capacity(64);
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        apply(&db, batch, &finished, &handoff, synchronous_full).await;
    }
}

/// A batch of only claims and progress is committed without waiting for the
/// disk (synchronous NORMAL) even when the database runs FULL: losing such a
/// transaction in a power cut is harmless (the job is still queued and runs,
/// as execution is at-least-once anyway), and it saves an fsync between
/// enqueue and start. Enqueues and outcomes always get the configured
/// durability.
async fn apply(
    db: &Db,
    batch: Vec<WriteOp>,
    finished: &broadcast::Sender<JobId>,
    handoff: &Handoff,
    synchronous_full: bool,
) {
    let now = Timestamp::now();
    let relaxed = synchronous_full
        && batch
            .iter()
            .all(|op| matches!(op, WriteOp::Claim { .. } | WriteOp::Progress { .. }));
    let mut conn = match db.writer.acquire().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "job writer could not get the database connection");
            for op in batch {
                fail_op(op);
            }
            return;
        }
    };
    if relaxed && let Err(e) = db::set_synchronous(&mut conn, false).await {
        tracing::warn!(error = %e, "could not relax synchronous for a claim");
    }
    apply_on(&mut conn, batch, finished, handoff, now).await;
    if relaxed && let Err(e) = db::set_synchronous(&mut conn, true).await {
        // Never leave the writer less durable than configured.
        tracing::error!(error = %e, "could not restore synchronous FULL; closing the connection");
        conn.close_on_drop();
    }
}

async fn apply_on(
    conn: &mut sqlx::SqliteConnection,
    batch: Vec<WriteOp>,
    finished: &broadcast::Sender<JobId>,
    handoff: &Handoff,
    now: Timestamp,
) {
    let mut tx = match sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => {
            tracing::error!(error = %e, "job writer could not begin a transaction");
            for op in batch {
                fail_op(op);
            }
            return;
        }
    };
    let mut pending = Vec::with_capacity(batch.len());
    // New jobs first, in one statement; then everything else in order (so
    // that a claim of this batch already sees them).
    let (inserts, others) = split_inserts(batch);
    let handed = insert_and_hand_off(&mut tx, inserts, handoff, now, &mut pending).await;
    for op in others {
        apply_op(&mut tx, op, handoff.lanes(), now, &mut pending).await;
    }
    if let Err(e) = tx.commit().await {
        tracing::error!(error = %e, "job writer failed to commit");
        // Whatever was claimed for the runner is queued again: let it look.
        handoff.wake.notify_one();
        for p in pending {
            p.fail();
        }
        return;
    }
    if !handed.is_empty() {
        handoff
            .jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(handed);
        handoff.wake.notify_one();
    }
    for p in pending {
        p.deliver(finished);
    }
}

type InsertAck = oneshot::Sender<Result<Job, AppError>>;

/// The batch's new jobs (with their acknowledgements) apart from its other
/// operations, each in its order.
fn split_inserts(batch: Vec<WriteOp>) -> (Vec<(Box<NewJob>, InsertAck)>, Vec<WriteOp>) {
    let (mut inserts, mut others) = (Vec::new(), Vec::new());
    for op in batch {
        match op {
            WriteOp::Insert { job, ack } => inserts.push((job, ack)),
            op => others.push(op),
        }
    }
    (inserts, others)
}

/// Inserts the new jobs in one statement and, when the runner waits for
/// work, claims some of them for it in the same transaction.
async fn insert_and_hand_off(
    tx: &mut sqlx::SqliteConnection,
    inserts: Vec<(Box<NewJob>, InsertAck)>,
    handoff: &Handoff,
    now: Timestamp,
    pending: &mut Vec<Pending>,
) -> Vec<db::Claimed> {
    if inserts.is_empty() {
        return Vec::new();
    }
    let (jobs, acks): (Vec<Box<NewJob>>, Vec<InsertAck>) = inserts.into_iter().unzip();
    let results = insert_all(tx, &jobs, now).await;
    for (ack, r) in acks.into_iter().zip(results) {
        pending.push(Pending::Insert(ack, Box::new(r)));
    }
    let want = handoff.demand.swap(0, Ordering::SeqCst);
    if want == 0 {
        return Vec::new();
    }
    let lease = Timestamp::now() + chrono::Duration::from_std(handoff.lease).unwrap_or_default();
    match db::claim(tx, &handoff.owner, want as i64, handoff.lanes(), lease, now).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(error = %e, "could not claim new jobs for the runner");
            Vec::new()
        }
    }
}

/// Applies one operation other than an insert inside the batch's
/// transaction; what must wait for the commit goes to `pending`.
async fn apply_op(
    tx: &mut sqlx::SqliteConnection,
    op: WriteOp,
    lanes: &str,
    now: Timestamp,
    pending: &mut Vec<Pending>,
) {
    match op {
        WriteOp::Insert { .. } => {} // inserted before
        WriteOp::Finish {
            id,
            token,
            outcome,
            writes,
            ack,
        } => {
            for write in writes {
                if let Err(e) = write(tx).await {
                    tracing::error!(job_id = %id, error = %format!("{e:#}"), "a write with a job outcome failed");
                }
            }
            let terminal = !matches!(outcome, Outcome::Retry { .. });
            let r = finish_one(tx, &id, &token, &outcome, now).await;
            let ok = r.unwrap_or_else(|e| {
                tracing::error!(job_id = %id, error = %e, "failed to record a job outcome");
                false
            });
            pending.push(Pending::Finish(ack, id, ok, terminal));
        }
        WriteOp::Claim {
            owner,
            n,
            lease_expires_at,
            ack,
        } => match db::claim(tx, &owner, n.now(), lanes, lease_expires_at, now).await {
            Ok(rows) => pending.push(Pending::Claim(ack, rows)),
            Err(e) => {
                let _ = ack.send(Err(e.into()));
            }
        },
        WriteOp::Progress {
            id,
            token,
            percent,
            message,
        } => {
            if let Err(e) =
                db::set_progress(tx, &id, &token, percent, message.as_deref(), now).await
            {
                tracing::warn!(job_id = %id, error = %e, "failed to record job progress");
            }
        }
    }
}

impl Pending {
    /// The batch was committed: acknowledge, and announce finished jobs.
    fn deliver(self, finished: &broadcast::Sender<JobId>) {
        match self {
            Pending::Claim(ack, rows) => {
                let _ = ack.send(Ok(rows));
            }
            Pending::Insert(ack, r) => {
                let _ = ack.send(*r);
            }
            Pending::Finish(ack, id, ok, terminal) => {
                if ok && terminal {
                    let _ = finished.send(id);
                }
                let _ = ack.send(ok);
            }
        }
    }

    /// The batch's commit failed: nothing of it happened.
    fn fail(self) {
        match self {
            Pending::Claim(ack, _) => {
                let _ = ack.send(Err(anyhow::anyhow!("failed to commit the claim").into()));
            }
            Pending::Insert(ack, _) => {
                let _ = ack.send(Err(anyhow::anyhow!("failed to commit the job").into()));
            }
            Pending::Finish(ack, ..) => {
                let _ = ack.send(false);
            }
        }
    }
}

fn fail_op(op: WriteOp) {
    match op {
        WriteOp::Insert { ack, .. } => {
            let _ = ack.send(Err(anyhow::anyhow!("the database is unavailable").into()));
        }
        WriteOp::Finish { ack, .. } => {
            let _ = ack.send(false);
        }
        WriteOp::Claim { ack, .. } => {
            let _ = ack.send(Err(anyhow::anyhow!("the database is unavailable").into()));
        }
        WriteOp::Progress { .. } => {}
    }
}

/// How long a client refused by the per-user cap is told to wait.
const PENDING_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// Inserts new jobs with one statement; the outcome of each, in order.
async fn insert_all(
    conn: &mut sqlx::SqliteConnection,
    jobs: &[Box<NewJob>],
    now: Timestamp,
) -> Vec<Result<Job, AppError>> {
    let over = match over_cap(conn, jobs).await {
        Ok(over) => over,
        Err(e) => {
            tracing::error!(error = %e, "failed to count unfinished jobs");
            return jobs
                .iter()
                .map(|_| Err(anyhow::anyhow!("failed to insert the job").into()))
                .collect();
        }
    };
    let rows: Vec<Option<InsertJob>> = jobs
        .iter()
        .zip(&over)
        .map(|(job, &over)| {
            (!over).then(|| InsertJob {
                id: JobId::generate(),
                kind: &job.kind,
                priority: job.priority,
                payload: job.payload.to_string(),
                user_id: job.user_id.as_ref(),
                idempotency_key: job.idempotency_key.as_deref(),
                max_attempts: job.max_attempts,
                run_at: job.run_at.unwrap_or(now),
            })
        })
        .collect();
    let to_insert: Vec<&InsertJob> = rows.iter().flatten().collect();
    let inserted = match serde_json::to_string(&to_insert) {
        Ok(json) => db::insert_many(conn, &json, now)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(e.into()),
    };
    let mut inserted: HashMap<JobId, db::JobRow> = match inserted {
        Ok(list) => list.into_iter().map(|r| (r.id.clone(), r)).collect(),
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), count = jobs.len(), "failed to insert jobs");
            return jobs
                .iter()
                .map(|_| Err(anyhow::anyhow!("failed to insert the job").into()))
                .collect();
        }
    };
    let mut out = Vec::with_capacity(jobs.len());
    for (row, job) in rows.iter().zip(jobs) {
        out.push(match row.as_ref().and_then(|r| inserted.remove(&r.id)) {
            Some(r) => Ok(r.into()),
            None if row.is_some() => existing_for_key(conn, job).await,
            None => refused_over_cap(conn, job).await,
        });
    }
    out
}

/// Which of `jobs` would take their owner past its cap of unfinished jobs
/// (`NewJob::max_pending`), counting the jobs before them in the batch. The
/// count runs in the inserting transaction: parallel requests cannot pass
/// the cap.
async fn over_cap(
    conn: &mut sqlx::SqliteConnection,
    jobs: &[Box<NewJob>],
) -> anyhow::Result<Vec<bool>> {
    let capped: Vec<&UserId> = jobs
        .iter()
        .filter(|j| j.max_pending.is_some())
        .filter_map(|j| j.user_id.as_ref())
        .collect();
    if capped.is_empty() {
        return Ok(vec![false; jobs.len()]);
    }
    let ids = serde_json::to_string(&capped)?;
    let mut counts: HashMap<UserId, i64> = db::count_unfinished_by_user(conn, &ids)
        .await?
        .into_iter()
        .collect();
    Ok(jobs
        .iter()
        .map(|job| match (job.max_pending, job.user_id.as_ref()) {
            (Some(cap), Some(user)) => {
                let n = counts.entry(user.clone()).or_default();
                *n += 1;
                *n > cap
            }
            _ => false,
        })
        .collect())
}

/// The answer to a job over its owner's cap: the existing job when it
/// repeats an idempotent request, else 429 `too_many_jobs`.
async fn refused_over_cap(
    conn: &mut sqlx::SqliteConnection,
    job: &NewJob,
) -> Result<Job, AppError> {
    if job.idempotency_key.is_some() {
        match existing_for_key(conn, job).await {
            Ok(existing) => return Ok(existing),
            Err(e @ AppError::Conflict(_)) => return Err(e),
            Err(_) => {}
        }
    }
    Err(AppError::TooMany {
        code: "too_many_jobs",
        message: format!(
            "you have {} unfinished jobs, the most allowed; retry when some have finished",
            job.max_pending.unwrap_or_default()
        ),
        retry_after: PENDING_RETRY_AFTER,
    })
}

/// The job already holding a new job's idempotency key: the same request
/// gets the same job; a different request with that key is a conflict.
async fn existing_for_key(
    conn: &mut sqlx::SqliteConnection,
    job: &NewJob,
) -> Result<Job, AppError> {
    let key = job.idempotency_key.as_deref().unwrap_or_default();
    let existing = db::find_by_idempotency_key(conn, job.user_id.as_ref(), &job.kind, key)
        .await?
        .ok_or_else(|| anyhow::anyhow!("idempotent job vanished"))?;
    let same = serde_json::from_str::<serde_json::Value>(&existing.payload)
        .is_ok_and(|p| p == job.payload);
    if !same {
        return Err(AppError::Conflict(
            "this Idempotency-Key was already used for a different request".into(),
        ));
    }
    Ok(existing.into())
}

async fn finish_one(
    conn: &mut sqlx::SqliteConnection,
    id: &JobId,
    token: &str,
    outcome: &Outcome,
    now: Timestamp,
) -> sqlx::Result<bool> {
    match outcome {
        Outcome::Succeeded(result) => db::succeed(conn, id, token, result, now).await,
        Outcome::Failed { code, message } => {
            db::finish_unsuccessfully(conn, id, token, "failed", code, message, now).await
        }
        Outcome::Cancelled { code, message } => {
            db::finish_unsuccessfully(conn, id, token, "cancelled", code, message, now).await
        }
        Outcome::Retry {
            code,
            message,
            run_at,
        } => db::retry_later(conn, id, token, code, message, *run_at, now).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(id: &str) -> WriteOp {
        WriteOp::Progress {
            id: id.into(),
            token: "t".into(),
            percent: 1,
            message: None,
        }
    }

    #[test]
    fn inserts_are_taken_apart_in_order() {
        let (a, _) = oneshot::channel();
        let (b, _) = oneshot::channel();
        let batch = vec![
            progress("p1"),
            WriteOp::Insert {
                job: Box::new(NewJob::new("a", serde_json::Value::Null)),
                ack: a,
            },
            progress("p2"),
            WriteOp::Insert {
                job: Box::new(NewJob::new("b", serde_json::Value::Null)),
                ack: b,
            },
        ];
        let (inserts, others) = split_inserts(batch);
        let kinds: Vec<&str> = inserts.iter().map(|(j, _)| j.kind.as_str()).collect();
        assert_eq!(kinds, ["a", "b"]);
        let ids: Vec<&str> = others
            .iter()
            .map(|op| match op {
                WriteOp::Progress { id, .. } => id.as_str(),
                _ => "?",
            })
            .collect();
        assert_eq!(ids, ["p1", "p2"]);
    }

    #[test]
    fn a_committed_terminal_outcome_is_announced_a_retry_is_not() {
        let (finished, mut announced) = broadcast::channel(4);
        let (ack, mut acked) = oneshot::channel();
        Pending::Finish(ack, "retried".into(), true, false).deliver(&finished);
        assert_eq!(acked.try_recv(), Ok(true));
        let (ack, mut acked) = oneshot::channel();
        Pending::Finish(ack, "done".into(), true, true).deliver(&finished);
        assert_eq!(acked.try_recv(), Ok(true));
        assert_eq!(announced.try_recv().unwrap().as_str(), "done");
        assert!(announced.try_recv().is_err());
    }

    #[test]
    fn a_failed_commit_acknowledges_nothing_as_done() {
        let (ack, mut acked) = oneshot::channel();
        Pending::Finish(ack, "j".into(), true, true).fail();
        assert_eq!(acked.try_recv(), Ok(false));
        let (ack, mut acked) = oneshot::channel();
        Pending::Claim(ack, Vec::new()).fail();
        assert!(acked.try_recv().unwrap().is_err());
        let (ack, mut acked) = oneshot::channel();
        Pending::Insert(ack, Box::new(Err(AppError::NotFound))).fail();
        assert!(acked.try_recv().unwrap().is_err());
    }
}
