//! Backup benchmark (not a test): how long the writer is held up while an
//! online backup of a large database runs.
//!
//!     cargo bench --bench backup                   # a 1 GiB database
//!     BACKUP_BENCH_MB=256 cargo bench --bench backup
//!
//! It fills a database of the given size (a bench table of 4 KiB rows), then
//! commits one small row at a time through the service's single writer
//! (`Db::begin_write`, as every write path does) while
//! `maintenance::backup::write_backup` (the code of the `backup` subcommand
//! and of the backup job) copies the database. It reports the longest and
//! the 99th percentile commit latency during the backup, against the same
//! without a backup, and the backup's duration and size.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hs_platform::config::Config;
use hs_platform::db::Db;
use tokio_util::sync::CancellationToken;

const ROW_BYTES: usize = 4096;

async fn fill(db: &Db, mb: u64) {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_fill (id INTEGER PRIMARY KEY, payload BLOB NOT NULL)",
    )
    .execute(&db.writer)
    .await
    .unwrap();
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_writes (id INTEGER PRIMARY KEY, at TEXT NOT NULL)",
    )
    .execute(&db.writer)
    .await
    .unwrap();
    let rows = mb * 1024 * 1024 / ROW_BYTES as u64;
    let started = Instant::now();
    let mut done = 0;
    while done < rows {
        let batch = (rows - done).min(2000);
        let mut tx = db.begin_write().await.unwrap();
        let mut qb = sqlx::QueryBuilder::new("INSERT INTO bench_fill (payload) ");
        qb.push_values(0..batch, |mut b, i| {
            let byte = ((done + i) % 251) as u8;
            b.push_bind(vec![byte; ROW_BYTES]);
        });
        qb.build().execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
        done += batch;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&db.writer)
        .await
        .unwrap();
    eprintln!(
        "filled {rows} rows in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Commits single-row transactions until `stop`; returns each commit's
/// latency in microseconds. Commits slower than 50 ms are printed with their
/// time since `origin`.
async fn write_loop(db: Db, stop: CancellationToken, origin: Instant) -> Vec<u64> {
    let mut lat = Vec::new();
    while !stop.is_cancelled() {
        let t = Instant::now();
        let mut tx = db.begin_write().await.unwrap();
        sqlx::query("INSERT INTO bench_writes (at) VALUES (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let took = t.elapsed();
        if took > Duration::from_millis(50) {
            eprintln!(
                "slow commit: {:.0} ms, began {:.2} s after the phase started",
                took.as_secs_f64() * 1000.0,
                t.duration_since(origin).as_secs_f64()
            );
        }
        lat.push(took.as_micros() as u64);
    }
    lat
}

fn summary(mut lat: Vec<u64>) -> (usize, f64, f64) {
    lat.sort_unstable();
    let p99 = lat[(lat.len() * 99 / 100).min(lat.len() - 1)] as f64 / 1000.0;
    let max = *lat.last().unwrap() as f64 / 1000.0;
    (lat.len(), p99, max)
}

#[tokio::main]
async fn main() {
    let mb: u64 = std::env::var("BACKUP_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let dir = tempfile::tempdir().unwrap();
    let env: HashMap<String, String> = [
        ("DATA_DIR", dir.path().display().to_string()),
        ("SQLITE_SYNCHRONOUS", "FULL".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let config = Config::from_map(&env).unwrap();
    let db = Db::open(&config).await.unwrap();
    fill(&db, mb).await;
    let size = std::fs::metadata(config.database_path()).unwrap().len();

    // Baseline: the same writes for 5 s without a backup.
    let stop = CancellationToken::new();
    let w = tokio::spawn(write_loop(db.clone(), stop.clone(), Instant::now()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    stop.cancel();
    let (n0, p99_0, max0) = summary(w.await.unwrap());

    // During the backup.
    let stop = CancellationToken::new();
    let origin = Instant::now();
    let w = tokio::spawn(write_loop(db.clone(), stop.clone(), origin));
    tokio::time::sleep(Duration::from_millis(200)).await;
    eprintln!("backup starts at {:.2} s", origin.elapsed().as_secs_f64());
    let dest = dir.path().join("backup.db");
    let written = hs_platform::maintenance::backup::write_backup(&config, &dest)
        .await
        .unwrap();
    eprintln!("backup ends at {:.2} s", origin.elapsed().as_secs_f64());
    stop.cancel();
    let (n1, p99_1, max1) = summary(w.await.unwrap());
    db.close().await;

    println!(
        "database {:.0} MiB; backup (VACUUM INTO + integrity_check) {:.1} s, {:.0} MiB",
        size as f64 / 1048576.0,
        written.duration.as_secs_f64(),
        written.size_bytes as f64 / 1048576.0
    );
    println!();
    println!("| Single-row commits (synchronous FULL) | commits | p99 ms | max ms |");
    println!("|---|---|---|---|");
    println!("| without a backup (5 s) | {n0} | {p99_0:.2} | {max0:.2} |");
    println!("| during the backup | {n1} | {p99_1:.2} | {max1:.2} |");
}
