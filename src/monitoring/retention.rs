//! Retention of the monitoring tables, daily: raw request rows older than
//! `LOG_RETENTION_DAYS` (whole hours) are rolled up into `request_rollups`
//! and deleted in chunks; error occurrences older than that are deleted;
//! roll-ups, activity days, resolved alerts and stale error groups older
//! than `ROLLUP_RETENTION_DAYS` are deleted; then `PRAGMA
//! incremental_vacuum` returns the free pages to the file system.

use std::time::Duration;

use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;

use super::Monitoring;
use crate::config::Config;
use crate::db::Db;
use crate::maintenance::model::Action;
use crate::time::Timestamp;

/// Raw rows deleted per transaction, so the writer is never held up long.
const DELETE_CHUNK: i64 = 5000;
/// A rough size of a request-log row with its index entries, for dry runs.
const ROW_BYTES_ESTIMATE: u64 = 180;

pub async fn daily(state: Monitoring, shutdown: CancellationToken) {
    // First run a minute after start, then every day.
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => break,
        }
        match run(&state.db, &state.config, Timestamp::now(), true).await {
            Ok(actions) => {
                for a in actions.iter().filter(|a| a.count > 0) {
                    tracing::info!(action = %a.name, count = a.count, bytes = a.bytes, "retention");
                }
            }
            Err(err) => tracing::error!(error = %format!("{err:#}"), "retention failed"),
        }
        wait = Duration::from_secs(24 * 3600);
    }
}

/// The boundaries for a given "now": raw rows before `log_cutoff` (an hour
/// boundary) go; aggregates before `rollup_cutoff` go.
/// The activity day of `rollup_cutoff` is the day boundary.
pub fn cutoffs(config: &Config, now: Timestamp) -> (Timestamp, Timestamp, NaiveDate) {
    let rollup = now - chrono::Duration::days(i64::from(config.rollup_retention_days));
    let rollup = rollup.start_of_hour();
    (log_boundary(config, now), rollup, rollup.date())
}

/// Raw request rows before this hour boundary go.
fn log_boundary(config: &Config, now: Timestamp) -> Timestamp {
    (now - chrono::Duration::days(i64::from(config.log_retention_days))).start_of_hour()
}

/// Applies (or, with `apply = false`, reports) the retention as of `now`.
pub async fn run(
    db: &Db,
    config: &Config,
    now: Timestamp,
    apply: bool,
) -> anyhow::Result<Vec<Action>> {
    use super::db as q;
    let (log_cutoff, rollup_cutoff, rollup_day) = cutoffs(config, now);
    // request_log keeps its times as Unix milliseconds; the other tables, as
    // text.
    let log_cutoff_ms = log_cutoff.unix_ms();
    let mut conn = db.reader.acquire().await?;
    let old_rows = q::count_requests_before(&mut conn, log_cutoff_ms).await?;
    let old_events = q::count_error_events_before(&mut conn, log_cutoff).await?;
    let old_aggregates = q::count_rollups_before(&mut conn, rollup_cutoff, rollup_day).await?;
    drop(conn);

    let mut actions = Vec::new();
    let mut deleted_rows = 0u64;
    let mut deleted_events = 0u64;
    let mut deleted_aggregates = 0u64;
    let mut freed = 0u64;
    let mut freed_pages = 0u64;
    if apply {
        if old_rows > 0 {
            let mut tx = db.begin_write().await?;
            q::rebuild_rollups_before(&mut tx, log_cutoff_ms).await?;
            // The closed days among those hours, summed again.
            let closed = q::closed(&mut tx).await?;
            let oldest = q::oldest_request_day(&mut tx).await?;
            if let Some(from) = oldest {
                let to = log_cutoff
                    .date()
                    .succ_opt()
                    .unwrap_or(closed.days_before)
                    .min(closed.days_before);
                q::reroll_days(&mut tx, from, to).await?;
            }
            tx.commit().await?;
            loop {
                let mut tx = db.begin_write().await?;
                let n = q::delete_requests_before(&mut tx, log_cutoff_ms, DELETE_CHUNK).await?;
                tx.commit().await?;
                deleted_rows += n;
                if n < DELETE_CHUNK as u64 {
                    break;
                }
                tokio::task::yield_now().await;
            }
        }
        let mut tx = db.begin_write().await?;
        deleted_events = q::delete_error_events_before(&mut tx, log_cutoff).await?;
        deleted_aggregates = q::delete_rollups_before(&mut tx, rollup_cutoff, rollup_day).await?;
        tx.commit().await?;
        let mut conn = db.writer.acquire().await?;
        let page = crate::db::page_size(&mut conn).await?;
        let before = crate::db::page_count(&mut conn).await?;
        crate::db::incremental_vacuum(&mut conn).await?;
        let after = crate::db::page_count(&mut conn).await?;
        freed_pages = u64::try_from((before - after).max(0)).unwrap_or(0);
        freed = freed_pages * u64::try_from(page).unwrap_or(0);
    }
    let rows = if apply {
        deleted_rows
    } else {
        old_rows.max(0) as u64
    };
    actions.push(Action {
        name: "monitoring.request_log.prune".into(),
        description: format!(
            "roll up and delete raw request-log rows before {log_cutoff} (LOG_RETENTION_DAYS={})",
            config.log_retention_days
        ),
        count: rows,
        bytes: rows * ROW_BYTES_ESTIMATE,
    });
    actions.push(Action {
        name: "monitoring.error_events.prune".into(),
        description: format!("delete error occurrences before {log_cutoff}"),
        count: if apply {
            deleted_events
        } else {
            old_events.max(0) as u64
        },
        bytes: 0,
    });
    actions.push(Action {
        name: "monitoring.rollups.prune".into(),
        description: format!(
            "delete hourly roll-ups, activity days, resolved alerts and error groups before \
             {rollup_cutoff} (ROLLUP_RETENTION_DAYS={})",
            config.rollup_retention_days
        ),
        count: if apply {
            deleted_aggregates
        } else {
            old_aggregates.max(0) as u64
        },
        bytes: 0,
    });
    if apply {
        actions.push(Action {
            name: "monitoring.vacuum".into(),
            description: "PRAGMA incremental_vacuum: free pages returned to the file system".into(),
            count: freed_pages,
            bytes: freed,
        });
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn cutoffs_fall_on_whole_hours() {
        let config = Config::from_map(&HashMap::from([
            ("LOG_RETENTION_DAYS".to_string(), "7".to_string()),
            ("ROLLUP_RETENTION_DAYS".to_string(), "30".to_string()),
        ]))
        .unwrap();
        let now = Timestamp::parse("2026-11-27T18:34:56.789Z").unwrap();
        let (log, rollup, day) = cutoffs(&config, now);
        assert_eq!(log.to_string(), "2026-11-20T18:00:00.000Z");
        assert_eq!(rollup.to_string(), "2026-10-28T18:00:00.000Z");
        assert_eq!(day.to_string(), "2026-10-28");
    }
}
