//! The writer: drains the bounded channel of request and error records and
//! stores them in batches (multi-row INSERTs, one transaction per batch),
//! maintaining the hourly roll-ups and daily user activity as it goes.
//! Requests never wait for it: when the channel is full, records are dropped
//! and counted (see [`super::Monitor::record_request`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::db::{self, RollupDelta, RollupKey};
use super::model::{Record, RequestRecord, rollup_bucket};
use crate::db::Db;

/// Records waiting that wake the writer before its interval is over, so that
/// batches (and the memory they hold) stay small under heavy load.
pub const FLUSH_AT: usize = 2048;
/// How long the writer gathers records before writing them: a few large
/// transactions cost far less than many small ones, and a writer that sleeps
/// is not woken by every request.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

pub async fn run(db: Db, monitor: super::Monitor, shutdown: CancellationToken) {
    let mut batch = Vec::new();
    loop {
        // Wait for the first record, then let the others gather without
        // waking this task for each of them.
        tokio::select! {
            () = monitor.records_arrived() => {}
            () = shutdown.cancelled() => break,
        }
        tokio::select! {
            () = tokio::time::sleep(FLUSH_INTERVAL) => {}
            () = monitor.flush_requested() => {}
            () = shutdown.cancelled() => {}
        }
        monitor.take_pending(&mut batch);
        write(&db, &monitor, &mut batch).await;
        if shutdown.is_cancelled() {
            break;
        }
    }
    // Requests still in flight during the graceful shutdown keep sending for
    // a moment: drain until nothing has arrived for a short while.
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        monitor.take_pending(&mut batch);
        if batch.is_empty() {
            break;
        }
        write(&db, &monitor, &mut batch).await;
    }
}

async fn write(db: &Db, monitor: &super::Monitor, batch: &mut Vec<Record>) {
    if batch.is_empty() {
        return;
    }
    let count = batch.len();
    if let Err(err) = write_batch(db, batch).await {
        tracing::error!(error = %format!("{err:#}"), count, "failed to write monitoring records");
        monitor.note_write_failure(count as u64);
    } else {
        monitor.note_written(
            batch
                .iter()
                .filter(|r| matches!(r, Record::Request(_)))
                .count() as u64,
        );
    }
    batch.clear();
    if batch.capacity() > 4 * FLUSH_AT {
        // A burst's buffer is not kept for the quiet times after it.
        batch.shrink_to(FLUSH_AT);
    }
}

async fn write_batch(db: &Db, records: &[Record]) -> anyhow::Result<()> {
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    for r in records {
        match r {
            Record::Request(r) => requests.push(r),
            Record::Error(e) => errors.push(e),
        }
    }
    // The stored timestamps, formatted here rather than on the request path.
    let rows: Vec<(Arc<str>, &RequestRecord)> = requests
        .into_iter()
        .map(|r| (Arc::from(crate::db::ts(r.at)), r))
        .collect();
    let (rollups, activity) = aggregate(&rows);
    let mut tx = db.begin_write().await?;
    if !rows.is_empty() {
        db::insert_requests(&mut tx, &rows).await?;
        db::add_rollups(&mut tx, &rollups).await?;
        db::add_activity(&mut tx, &activity).await?;
    }
    for e in errors {
        db::add_error(&mut tx, e).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The roll-up and activity increments of a batch of (stored timestamp,
/// record) pairs.
#[allow(clippy::type_complexity)]
pub fn aggregate(
    requests: &[(Arc<str>, &RequestRecord)],
) -> (Vec<(RollupKey, RollupDelta)>, Vec<((String, String), i64)>) {
    let mut rollups: HashMap<(&str, &str, &'static str, u16, &'static str), RollupDelta> =
        HashMap::new();
    let mut activity: HashMap<(&str, &str), i64> = HashMap::new();
    for (at, r) in requests {
        let at: &str = at;
        let hour = at.get(..13).unwrap_or(at);
        let key = (hour, &*r.route, r.method, r.status, r.source());
        let d = rollups.entry(key).or_default();
        d.requests += 1;
        d.total_ms += r.duration_ms;
        d.max_ms = d.max_ms.max(r.duration_ms);
        d.bytes_in += r.bytes_in.unwrap_or(0);
        d.bytes_out += r.bytes_out.unwrap_or(0);
        d.buckets[rollup_bucket(r.duration_ms)] += 1;
        if let Some(user) = &r.user_id {
            *activity
                .entry((at.get(..10).unwrap_or(at), &**user))
                .or_default() += 1;
        }
    }
    (
        rollups
            .into_iter()
            .map(|((hour, route, method, status, source), d)| {
                let hour = format!("{hour}:00:00.000Z");
                ((hour, route.to_string(), method, status, source), d)
            })
            .collect(),
        activity
            .into_iter()
            .map(|((day, user), n)| ((day.to_string(), user.to_string()), n))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at: &str, status: u16, ms: f64, user: Option<&str>) -> RequestRecord {
        RequestRecord {
            at: crate::db::parse_ts(at).unwrap(),
            method: "GET",
            route: "/x".into(),
            status,
            duration_ms: ms,
            bytes_in: None,
            bytes_out: Some(10),
            user_id: user.map(Into::into),
            client_ip: None,
            user_agent: None,
            request_id: None,
            loadtest_id: None,
        }
    }

    #[test]
    fn a_batch_is_aggregated_per_hour_route_and_status() {
        let a = rec("2026-11-27T18:01:00.000Z", 200, 3.0, Some("u1"));
        let b = rec("2026-11-27T18:59:00.000Z", 200, 30.0, Some("u1"));
        let c = rec("2026-11-27T19:00:00.000Z", 200, 3.0, None);
        let rows = [&a, &b, &c].map(|r| (Arc::from(crate::db::ts(r.at)), r));
        let (rollups, activity) = aggregate(&rows);
        assert_eq!(rollups.len(), 2);
        let h18 = rollups
            .iter()
            .find(|(k, _)| k.0 == "2026-11-27T18:00:00.000Z")
            .unwrap();
        assert_eq!(h18.1.requests, 2);
        assert_eq!(h18.1.max_ms, 30.0);
        assert_eq!(h18.1.bytes_out, 20);
        assert_eq!(h18.1.buckets[2] + h18.1.buckets[5], 2);
        assert_eq!(
            activity,
            vec![(("2026-11-27".to_string(), "u1".to_string()), 2)]
        );
    }
}
