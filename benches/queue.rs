//! Queue benchmark (not a test): durable no-op jobs enqueued and completed
//! per second with JOB_CONCURRENCY 1 and 8, enqueue-to-start latency on an
//! idle queue, and the same throughput with many finished jobs kept.
//!
//!     cargo bench --bench queue            # default SQLITE_SYNCHRONOUS=FULL
//!     JOBS=50000 cargo bench --bench queue
//!     USERS=100 cargo bench --bench queue  # jobs owned by 100 users in turn
//!
//! `USERS=N` (default 0: jobs without an owner, as system jobs) spreads the
//! jobs over N accounts, so that the fair claim computes its per-user turns
//! over N users' due jobs. Logs at `RUST_LOG` (default `info`) as JSON lines,
//! as a deployment does.
//!
//! It runs the real service (real SQLite file in a temp dir, the real
//! runner), enqueueing through `Queue::enqueue` from many concurrent tasks as
//! HTTP handlers would.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hs_platform::app::Application;
use hs_platform::config::Config;
use hs_platform::ids::UserId;
use hs_platform::jobs::NewJob;
use serde_json::json;
use tokio::sync::mpsc;

static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

fn micros() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_micros() as u64
}

struct Bench {
    app_state: hs_platform::state::AppState,
    shutdown: tokio_util::sync::CancellationToken,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
    done: Arc<AtomicU64>,
    starts: mpsc::UnboundedReceiver<u64>,
}

async fn start(concurrency: usize) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let mut env = HashMap::new();
    env.insert("DATA_DIR".to_string(), dir.path().display().to_string());
    env.insert("PORT".to_string(), "0".to_string());
    env.insert("JOB_CONCURRENCY".to_string(), concurrency.to_string());
    if let Ok(s) = std::env::var("SQLITE_SYNCHRONOUS") {
        env.insert("SQLITE_SYNCHRONOUS".to_string(), s);
    }
    let config = Config::from_map(&env).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let (tx, starts) = mpsc::unbounded_channel();
    let d = done.clone();
    let app = Application::build_with_jobs(config, move |r| {
        let d = d.clone();
        let tx = tx.clone();
        r.register("bench.noop", move |ctx| {
            let d = d.clone();
            let tx = tx.clone();
            async move {
                if ctx.payload["t"].is_u64() {
                    let _ = tx.send(micros());
                }
                d.fetch_add(1, Ordering::Relaxed);
                Ok(serde_json::Value::Null)
            }
        });
    })
    .await
    .unwrap();
    let app_state = app.state().clone();
    let shutdown = app.shutdown_token();
    let handle = tokio::spawn(app.run());
    Bench {
        app_state,
        shutdown,
        handle,
        _dir: dir,
        done,
        starts,
    }
}

/// Jobs of this run committed as succeeded (ids are time-ordered).
async fn succeeded_since(b: &Bench, first_id: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND id >= ?1",
    )
    .bind(first_id)
    .fetch_one(&b.app_state.db.reader)
    .await
    .unwrap()
}

/// Enqueues `n` jobs from 64 concurrent producers; returns jobs/s from the
/// first enqueue until the last completion is committed.
async fn throughput(b: &Bench, n: u64, owners: &Arc<Vec<UserId>>) -> f64 {
    let first_id = hs_platform::db::new_id();
    let target = b.done.load(Ordering::Relaxed) + n;
    let started = Instant::now();
    let producers = 64;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let q = b.app_state.jobs.clone();
        let owners = owners.clone();
        tasks.push(tokio::spawn(async move {
            for i in (p..n).step_by(producers as usize) {
                let mut job = NewJob::new("bench.noop", json!({}));
                if !owners.is_empty() {
                    job = job.owner(&owners[i as usize % owners.len()]);
                }
                q.enqueue(job).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Handlers ran; then wait for their outcomes to be committed.
    while b.done.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    while succeeded_since(b, &first_id).await < n as i64 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// One job at a time on an idle queue. Returns (p50, p99) in ms of: the
/// enqueue call to handler start, and the enqueue's acknowledgement (the job
/// is durable) to handler start.
async fn latency(b: &mut Bench, samples: usize) -> [f64; 4] {
    let mut from_call = Vec::with_capacity(samples);
    let mut from_ack = Vec::with_capacity(samples);
    for _ in 0..samples {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let t0 = micros();
        b.app_state
            .jobs
            .enqueue(NewJob::new("bench.noop", json!({"t": t0})))
            .await
            .unwrap();
        let t1 = micros();
        let start = b.starts.recv().await.unwrap();
        from_call.push(start.saturating_sub(t0));
        from_ack.push(start.saturating_sub(t1));
    }
    let pct = |v: &mut Vec<u64>, p: f64| {
        v.sort_unstable();
        v[((v.len() as f64 * p) as usize).min(v.len() - 1)] as f64 / 1000.0
    };
    [
        pct(&mut from_call, 0.50),
        pct(&mut from_call, 0.99),
        pct(&mut from_ack, 0.50),
        pct(&mut from_ack, 0.99),
    ]
}

async fn seed_finished(b: &Bench, n: u64) {
    // Finished jobs as the queue leaves them, written in bulk.
    sqlx::query(
        "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < ?1)
         INSERT INTO jobs (id, kind, status, attempts, finished_at, result)
         SELECT printf('00000000-seed-%012d', i), 'bench.noop', 'succeeded', 1,
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), 'null' FROM c",
    )
    .bind(n as i64)
    .execute(&b.app_state.db.writer)
    .await
    .unwrap();
}

/// `n` accounts to own the jobs, written in bulk.
async fn seed_users(b: &Bench, n: usize) -> Arc<Vec<UserId>> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = hs_platform::db::new_id();
        sqlx::query("INSERT INTO users (id, email, password_hash) VALUES (?1, ?2, 'x')")
            .bind(&id)
            .bind(format!("bench-{i}@example.com"))
            .execute(&b.app_state.db.writer)
            .await
            .unwrap();
        ids.push(UserId::from(id));
    }
    Arc::new(ids)
}

async fn stop(b: Bench) {
    b.shutdown.cancel();
    b.handle.await.unwrap().unwrap();
}

struct Run {
    jobs_per_s: f64,
    latency: [f64; 4],
    jobs_per_s_kept: f64,
}

#[tokio::main]
async fn main() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    hs_platform::telemetry::init(hs_platform::config::LogFormat::Json, &filter);
    let users: usize = std::env::var("USERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let n: u64 = std::env::var("JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let sync = std::env::var("SQLITE_SYNCHRONOUS").unwrap_or_else(|_| "FULL".into());
    println!(
        "queue benchmark: {n} no-op jobs per run, SQLITE_SYNCHRONOUS={sync}, owned by {users} users\n"
    );
    let mut runs = Vec::new();
    for c in [1usize, 8] {
        let mut b = start(c).await;
        let owners = seed_users(&b, users).await;
        let _ = throughput(&b, 1000, &owners).await; // warm-up
        let jobs_per_s = throughput(&b, n, &owners).await;
        let latency = latency(&mut b, 1000).await;
        seed_finished(&b, 500_000).await;
        let jobs_per_s_kept = throughput(&b, n, &owners).await;
        runs.push(Run {
            jobs_per_s,
            latency,
            jobs_per_s_kept,
        });
        stop(b).await;
    }
    println!("| measure | JOB_CONCURRENCY=1 | JOB_CONCURRENCY=8 |");
    println!("|---|---|---|");
    let row = |name: &str, f: &dyn Fn(&Run) -> String| {
        println!("| {name} | {} | {} |", f(&runs[0]), f(&runs[1]))
    };
    row("jobs/s (enqueue + complete)", &|r| {
        format!("{:.0}", r.jobs_per_s)
    });
    row("jobs/s with 500,000 finished jobs kept", &|r| {
        format!("{:.0}", r.jobs_per_s_kept)
    });
    let names = [
        "enqueue call to start, p50 (ms)",
        "enqueue call to start, p99 (ms)",
        "enqueue acknowledged to start, p50 (ms)",
        "enqueue acknowledged to start, p99 (ms)",
    ];
    for (k, name) in names.iter().enumerate() {
        row(name, &|r| format!("{:.2}", r.latency[k]));
    }
}
