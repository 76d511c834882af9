//! Maintenance and backups: the orchestration of every domain's maintenance
//! (pruning, reconciliation), the database's own upkeep (`PRAGMA optimize`,
//! WAL checkpoint, incremental vacuum), cache purges, online backups and
//! restore, and the schedule that runs them as jobs.

pub mod backup;
pub mod db;
pub mod download;
pub mod model;
pub mod routes;

use std::future::Future;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::model::Action;
use self::model::{DatabaseStats, Failure, Report, Totals};
use crate::config::Config;
use crate::db::Db;
use crate::files::Files;
use crate::ids::JobId;
use crate::jobs::Queue;
use crate::monitoring::Monitoring;
use crate::sessions::Sessions;
use crate::sessions::auth::AuthCache;
use crate::time::Timestamp;
use crate::users::Users;

/// The maintenance domain's service: the handles of its own work (the
/// database, backups, the caches) and the services of the domains whose
/// maintenance it runs.
#[derive(Clone)]
pub struct Maintenance {
    pub db: Db,
    pub config: Arc<Config>,
    pub jobs: Queue,
    pub auth: AuthCache,
    pub users: Users,
    pub sessions: Sessions,
    pub monitoring: Monitoring,
    pub files: Files,
}

/// Runs (when `apply`) or previews maintenance of every domain, then of the
/// database itself. A failing step is reported and does not stop the others.
///
/// Each domain takes one line here: its
/// `maintenance(state, apply) -> anyhow::Result<Vec<Action>>`. The database
/// step comes last so that it reclaims the space the domains freed.
pub async fn run(state: &Maintenance, apply: bool) -> Report {
    let mut run = Run::new(apply);
    run.step(
        "sessions",
        crate::sessions::maintenance(&state.sessions, apply),
    )
    .await;
    run.step("jobs", crate::jobs::maintenance(&state.jobs, apply))
        .await;
    run.step(
        "monitoring",
        crate::monitoring::maintenance(&state.monitoring, apply),
    )
    .await;
    run.step("files", crate::files::maintenance(&state.files, apply))
        .await;
    run.step("caches", caches(state, apply)).await;
    let db_stats = run.step_with("database", database(state, apply)).await;
    run.finish(db_stats)
}

struct Run {
    apply: bool,
    started_at: Timestamp,
    started: Instant,
    actions: Vec<Action>,
    failures: Vec<Failure>,
}

impl Run {
    fn new(apply: bool) -> Self {
        Self {
            apply,
            started_at: Timestamp::now(),
            started: Instant::now(),
            actions: Vec::new(),
            failures: Vec::new(),
        }
    }

    async fn step(&mut self, domain: &str, fut: impl Future<Output = anyhow::Result<Vec<Action>>>) {
        match fut.await {
            Ok(actions) => self.actions.extend(actions),
            Err(e) => self.fail(domain, e),
        }
    }

    async fn step_with<T>(
        &mut self,
        domain: &str,
        fut: impl Future<Output = anyhow::Result<(Vec<Action>, T)>>,
    ) -> Option<T> {
        match fut.await {
            Ok((actions, extra)) => {
                self.actions.extend(actions);
                Some(extra)
            }
            Err(e) => {
                self.fail(domain, e);
                None
            }
        }
    }

    fn fail(&mut self, domain: &str, e: anyhow::Error) {
        tracing::error!(domain, error = %format!("{e:#}"), "maintenance step failed");
        self.failures.push(Failure {
            domain: domain.to_string(),
            message: format!("{e:#}"),
        });
    }

    fn finish(self, database: Option<DatabaseStats>) -> Report {
        let totals = Totals {
            count: self.actions.iter().map(|a| a.count).sum(),
            bytes: self.actions.iter().map(|a| a.bytes).sum(),
        };
        Report {
            applied: self.apply,
            started_at: self.started_at,
            finished_at: Timestamp::now(),
            duration_ms: self.started.elapsed().as_millis() as u64,
            actions: self.actions,
            totals,
            database,
            failures: self.failures,
        }
    }
}

/// The in-memory caches: dead authentication answers and computed profiles.
async fn caches(state: &Maintenance, apply: bool) -> anyhow::Result<Vec<Action>> {
    Ok(vec![
        Action {
            name: "cache.auth.purge".into(),
            description: "drop cached answers for unknown tokens and expired sessions".into(),
            count: state.auth.purge_dead(apply),
            bytes: 0,
        },
        Action {
            name: "cache.profiles.purge".into(),
            description: "drop cached user profiles (rebuilt on the next read)".into(),
            count: state.users.purge_profiles(apply),
            bytes: 0,
        },
    ])
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn wal_path(config: &Config) -> std::path::PathBuf {
    let db = config.database_path();
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push("-wal");
    db.with_file_name(name)
}

/// A connection of its own for the checkpoint, with a short busy timeout: a
/// TRUNCATE checkpoint holds new writers back while it waits for readers, so
/// it waits at most this long and otherwise reports the WAL as busy.
const CHECKPOINT_WAIT: Duration = Duration::from_millis(100);

async fn open_for_checkpoint(config: &Config) -> anyhow::Result<SqliteConnection> {
    SqliteConnectOptions::from_str(&config.database_url())
        .context("DATABASE_URL: invalid")?
        .busy_timeout(CHECKPOINT_WAIT)
        .connect()
        .await
        .context("failed to open the database for a checkpoint")
}

/// The database's own upkeep: free pages, WAL checkpoint, planner statistics.
async fn database(
    state: &Maintenance,
    apply: bool,
) -> anyhow::Result<(Vec<Action>, DatabaseStats)> {
    let wal = wal_path(&state.config);
    let wal_before = file_len(&wal);
    let (page_size, free_before, pages_before) = {
        let mut conn = state.db.reader.acquire().await?;
        (
            crate::db::page_size(&mut conn).await?,
            crate::db::freelist_count(&mut conn).await?,
            crate::db::page_count(&mut conn).await?,
        )
    };
    let mut actions = Vec::new();
    let page = page_size.max(0) as u64;

    let freed_pages = if apply {
        let mut conn = state.db.writer.acquire().await?;
        crate::db::incremental_vacuum(&mut conn).await?;
        let after = crate::db::freelist_count(&mut conn).await?;
        (free_before - after).max(0) as u64
    } else {
        free_before.max(0) as u64
    };
    actions.push(Action {
        name: "database.incremental_vacuum".into(),
        description: "return free pages to the file system (PRAGMA incremental_vacuum)".into(),
        count: freed_pages,
        bytes: freed_pages * page,
    });

    if apply {
        let mut conn = state.db.writer.acquire().await?;
        db::optimize(&mut conn).await?;
    }
    actions.push(Action {
        name: "database.optimize".into(),
        description: "refresh the query planner's statistics where useful (PRAGMA optimize)".into(),
        count: 0,
        bytes: 0,
    });

    let (wal_after, checkpoint_busy) = if apply {
        let mut conn = open_for_checkpoint(&state.config).await?;
        let cp = db::wal_checkpoint_truncate(&mut conn).await;
        let _ = sqlx::Connection::close(conn).await;
        let busy = match cp {
            Ok(cp) => {
                tracing::debug!(
                    busy = cp.busy,
                    log = cp.log_frames,
                    checkpointed = cp.checkpointed_frames,
                    "WAL checkpoint"
                );
                cp.busy != 0
            }
            // SQLITE_BUSY: readers kept it from finishing within CHECKPOINT_WAIT.
            Err(sqlx::Error::Database(e)) if e.message().contains("locked") => true,
            Err(e) => return Err(e).context("failed to checkpoint the WAL"),
        };
        (file_len(&wal), busy)
    } else {
        (wal_before, false)
    };
    actions.push(Action {
        name: "database.wal_checkpoint".into(),
        description: if apply {
            format!(
                "copy the WAL into the database and truncate it (TRUNCATE): {wal_before} -> {wal_after} bytes{}",
                if checkpoint_busy { " (readers were active; retried next run)" } else { "" }
            )
        } else {
            format!("copy the WAL into the database and truncate it (TRUNCATE): {wal_before} bytes now")
        },
        count: 1,
        bytes: wal_before.saturating_sub(if apply { wal_after } else { 0 }),
    });

    let (pages_after, free_after) = {
        let mut conn = state.db.reader.acquire().await?;
        (
            crate::db::page_count(&mut conn).await?,
            crate::db::freelist_count(&mut conn).await?,
        )
    };
    let stats = DatabaseStats {
        page_size: page,
        size_bytes_before: pages_before.max(0) as u64 * page,
        size_bytes_after: pages_after.max(0) as u64 * page,
        free_bytes_before: free_before.max(0) as u64 * page,
        free_bytes_after: free_after.max(0) as u64 * page,
        wal_bytes_before: wal_before,
        wal_bytes_after: wal_after,
        checkpoint_busy,
    };
    Ok((actions, stats))
}

/// The scheduled maintenance job.
pub const MAINTENANCE_JOB: &str = "maintenance.run";
/// A backup (scheduled or requested by an admin).
pub const BACKUP_JOB: &str = "maintenance.backup";

/// How often the scheduler checks whether a backup is due.
const BACKUP_CHECK_EVERY: Duration = Duration::from_secs(300);

pub fn register_jobs(registry: &mut crate::jobs::Registry, maintenance: &Maintenance) {
    let state = maintenance.clone();
    registry.register(MAINTENANCE_JOB, move |ctx: crate::jobs::JobContext| {
        let state = state.clone();
        async move {
            ctx.progress(0, "running maintenance").await;
            let report = run(&state, true).await;
            serde_json::to_value(&report).map_err(|e| anyhow::Error::from(e).into())
        }
    });
    let state = maintenance.clone();
    registry.register(BACKUP_JOB, move |ctx| backup_job(state.clone(), ctx));
}

async fn backup_job(
    state: Maintenance,
    ctx: crate::jobs::JobContext,
) -> Result<serde_json::Value, crate::jobs::JobError> {
    #[derive(serde::Deserialize)]
    struct Payload {
        trigger: String,
    }
    let p: Payload = ctx.payload()?;
    let trigger = if p.trigger == "admin" {
        "admin"
    } else {
        "schedule"
    };
    ctx.progress(0, "copying the database").await;
    match backup::create(&state, trigger, Some(&ctx)).await {
        Ok(b) => Ok(serde_json::json!({ "backup": b })),
        Err(e) if format!("{e:#}").contains("integrity_check") => Err(crate::jobs::JobError::fail(
            "integrity_check_failed",
            format!("{e:#}"),
        )),
        Err(e) if crate::error::chain_is_disk_full(&e) => Err(crate::jobs::JobError::fail(
            "insufficient_storage",
            "the disk is full",
        )),
        Err(e) => Err(e.into()),
    }
}

/// The schedule: maintenance every MAINTENANCE_INTERVAL_SECONDS and a backup
/// whenever BACKUP_INTERVAL_HOURS have passed since the last one (checked
/// every few minutes, so restarts do not postpone backups), both as jobs.
pub fn spawn_workers(state: &Maintenance, tracker: &TaskTracker, shutdown: CancellationToken) {
    let st = state.clone();
    tracker.spawn(async move {
        let every = st.config.maintenance_interval;
        let mut maintenance =
            tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut backups = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_secs(60),
            BACKUP_CHECK_EVERY,
        );
        maintenance.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        backups.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending_backup: Option<JobId> = None;
        loop {
            tokio::select! {
                _ = maintenance.tick() => {
                    let job = crate::jobs::NewJob::new(MAINTENANCE_JOB, serde_json::json!({}))
                        .max_attempts(1);
                    if let Err(e) = st.jobs.enqueue(job).await {
                        tracing::warn!(error = %e, "failed to schedule maintenance");
                    }
                }
                _ = backups.tick() => {
                    match schedule_backup(&st, pending_backup.as_ref()).await {
                        Ok(Some(id)) => pending_backup = Some(id),
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %format!("{e:#}"), "failed to schedule a backup"),
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
    });
}

async fn schedule_backup(
    state: &Maintenance,
    pending: Option<&JobId>,
) -> anyhow::Result<Option<JobId>> {
    if let Some(id) = pending
        && let Some(job) = state.jobs.get(id).await?
        && !job.status.is_finished()
    {
        return Ok(None);
    }
    if !backup::due(state).await? {
        return Ok(None);
    }
    let job = state
        .jobs
        .enqueue(crate::jobs::NewJob::new(
            BACKUP_JOB,
            serde_json::json!({"trigger": "schedule"}),
        ))
        .await?;
    tracing::info!(job_id = %job.id, "scheduled backup queued");
    Ok(Some(job.id))
}
