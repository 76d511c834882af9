//! SQLite storage: one writer connection and a pool of readers on the same WAL
//! database, the pragmas that make it safe, the embedded migrations, and the
//! timestamp format every table uses.
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
use chrono::{DateTime, SecondsFormat, Utc};
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

/// Every timestamp is stored as TEXT in this one format: RFC 3339, UTC,
/// milliseconds, `Z` (e.g. `2026-11-27T18:00:00.123Z`). It sorts as text and
/// equals SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')`.
/// Written by hand: chrono's general formatter costs several times as much,
/// and it runs for every stored time.
pub fn ts(dt: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    let year = dt.year();
    if !(0..=9999).contains(&year) || dt.nanosecond() >= 1_000_000_000 {
        // Out of the four-digit range, or a leap second: the general path.
        return dt.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let mut out = [0u8; 24];
    let mut put = |at: usize, value: u32, digits: usize| {
        let mut v = value;
        for i in (0..digits).rev() {
            out[at + i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year as u32, 4);
    put(5, dt.month(), 2);
    put(8, dt.day(), 2);
    put(11, dt.hour(), 2);
    put(14, dt.minute(), 2);
    put(17, dt.second(), 2);
    put(20, dt.nanosecond() / 1_000_000, 3);
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = sep;
    }
    out.iter().map(|b| char::from(*b)).collect()
}

/// Turns off SQLite's memory statistics, which take a global mutex on every
/// allocation and free inside SQLite (nothing here reads them). Must run
/// before the first connection initialises the library; later it is a no-op.
#[allow(unsafe_code)]
pub fn tune_sqlite() {
    // SAFETY: sqlite3_config only changes global settings, and SQLite refuses
    // it (SQLITE_MISUSE, ignored) once initialised; the one variadic argument
    // is the int that SQLITE_CONFIG_MEMSTATUS takes.
    unsafe {
        libsqlite3_sys::sqlite3_config(
            libsqlite3_sys::SQLITE_CONFIG_MEMSTATUS,
            0 as std::ffi::c_int,
        );
    }
}

/// The current time in the stored format.
pub fn now() -> String {
    ts(Utc::now())
}

/// Parses a stored or client-supplied RFC 3339 timestamp.
pub fn parse_ts(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.with_timezone(&Utc))
}

/// A new opaque, time-ordered identifier (UUID v7), so that ordering by id is
/// ordering by creation and cursors are simple.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_formatted_like_chrono_does() {
        let mut t = DateTime::parse_from_rfc3339("1999-12-31T23:59:59.999Z")
            .unwrap()
            .with_timezone(&Utc);
        for _ in 0..5000 {
            assert_eq!(ts(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
            t += chrono::Duration::microseconds(3_722_417_123);
        }
        assert_eq!(ts(DateTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn timestamps_round_trip_in_the_stored_format() {
        let t = parse_ts("2026-11-27T18:00:00.123Z").unwrap();
        assert_eq!(ts(t), "2026-11-27T18:00:00.123Z");
        assert_eq!(now().len(), 24);
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = new_id();
        let b = new_id();
        assert!(a < b);
    }
}
