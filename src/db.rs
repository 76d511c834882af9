//! SQLite storage: one writer connection and a pool of readers on the same WAL
//! database, the pragmas that make it safe, and the embedded migrations
//! (times are stored as [`crate::time::Timestamp`] writes them).
//!
//! All writes go through [`Db::writer`] (a pool of exactly one connection), so
//! writers queue in-process instead of fighting over SQLite's lock; readers
//! never block the writer thanks to WAL. Write transactions begin
//! `IMMEDIATE` ([`Db::begin_write`]) so they take the lock up front and wait
//! `busy_timeout` for an outside writer (an analyst's `sqlite3`) instead of
//! failing with SQLITE_BUSY half-way.

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Sqlite, SqliteConnection, Transaction};

use crate::config::{Config, Synchronous};

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handles to the database: clone freely.
#[derive(Clone, Debug)]
pub struct Db {
    /// The single writer connection. Use for every statement that writes.
    pub writer: SqlitePool,
    /// Read-only connections for queries.
    pub reader: SqlitePool,
}

impl Db {
    /// Opens (creating if needed) the database and applies migrations.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let base = SqliteConnectOptions::from_str(&config.database_url())
            .with_context(|| format!("DATABASE_URL: invalid: {:?}", config.database_url()))?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.sqlite_synchronous {
                Synchronous::Full => SqliteSynchronous::Full,
                Synchronous::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("journal_size_limit", "67108864")
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-4000")
            .statement_cache_capacity(256);

        if let Some(parent) = config.database_path().parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("failed to create directory {}", parent.display()))?;
        }

        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(
                base.clone()
                    // SQLite's 4 KiB pages are kept: 8 or 16 KiB pages would
                    // make each request-log row cheaper to insert (0.91 or
                    // 0.86 us against 1.05, bench/sqlite/insert_floor.sh),
                    // but cost 0.5-1 MiB of idle memory, as every connection
                    // caches at least a page of each table it has touched.
                    // Writes touch few pages (the right edges of append-mostly
                    // tables and indexes): a smaller cache than the readers'.
                    .pragma("cache_size", "-1500")
                    .create_if_missing(true)
                    .auto_vacuum(SqliteAutoVacuum::Incremental)
                    .optimize_on_close(true, 400),
            )
            .await
            .context("failed to open the database for writing")?;

        MIGRATOR
            .run(&writer)
            .await
            .context("failed to apply database migrations")?;

        let reader = SqlitePoolOptions::new()
            .max_connections(config.db_readers)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(base.read_only(true))
            .await
            .context("failed to open the database for reading")?;

        Ok(Self { writer, reader })
    }

    /// Begins a write transaction that takes SQLite's write lock at once.
    pub async fn begin_write(&self) -> sqlx::Result<Transaction<'static, Sqlite>> {
        self.writer.begin_with("BEGIN IMMEDIATE").await
    }

    /// Closes both pools; the writer runs `PRAGMA optimize` as it closes.
    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

// --- database-level pragmas shared by maintenance and monitoring's retention

pub async fn page_size(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("PRAGMA page_size").fetch_one(conn).await
}

pub async fn page_count(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(conn)
        .await
}

pub async fn freelist_count(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    sqlx::query_scalar("PRAGMA freelist_count")
        .fetch_one(conn)
        .await
}

/// Frees every page of the free list (the database uses
/// `auto_vacuum = INCREMENTAL`).
pub async fn incremental_vacuum(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    sqlx::query("PRAGMA incremental_vacuum")
        .execute(conn)
        .await?;
    Ok(())
}

/// A new opaque, time-ordered identifier (UUID v7), so that ordering by id is
/// ordering by creation and cursors are simple.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite re-prepares a statement whose LIMIT is a bound parameter each
    /// time that parameter is bound (see docs/architecture.md): every LIMIT
    /// takes `CAST(?N AS INTEGER)` instead.
    #[test]
    fn no_statement_binds_its_limit_directly() {
        let needle = concat!("LIMIT", " ?");
        let mut offenders = Vec::new();
        let mut dirs = vec![std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src"
        ))];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        if line.contains(needle) {
                            offenders.push(format!("{}:{}", path.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "bound LIMIT in {offenders:?}");
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id();
        let b = new_id();
        assert!(a < b);
    }
}
