//! The writer: drains the bounded channel of request and error records and
//! stores them in batches (multi-row INSERTs, one transaction per batch),
//! maintaining the hourly roll-ups and daily user activity as it goes, and
//! rolling up each day and hour once it is over (see [`db::roll_closed`]).
//! Requests never wait for it: when the channel is full, records are dropped
//! and counted (see [`super::Monitor::record_request`]).

use std::time::Duration;

use chrono::NaiveDate;
use foldhash::HashMap;

use tokio_util::sync::CancellationToken;

use super::db::{self, BucketKey, RollupDelta, RollupKey};
use super::latency::bucket_of_ms;
use super::model::{Record, RequestRecord};
use crate::db::Db;
use crate::time::Timestamp;

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
    let requests = batch
        .iter()
        .filter(|r| matches!(r, Record::Request(_)))
        .count() as u64;
    if let Err(err) = write_batch(db, batch).await {
        tracing::error!(error = %format!("{err:#}"), count, "failed to write the monitoring records");
        monitor.note_write_failure(count as u64);
    } else {
        monitor.note_written(requests);
    }
    batch.clear();
    if batch.capacity() > 4 * FLUSH_AT {
        // A burst's buffer is not kept for the quiet times after it.
        batch.shrink_to(FLUSH_AT);
    }
}

/// Writes a batch in one transaction: the request rows (see
/// [`db::insert_requests`]), their roll-ups and activity, and the errors.
async fn write_batch(db: &Db, batch: &[Record]) -> anyhow::Result<()> {
    let requests: Vec<&RequestRecord> = request_records(batch).collect();
    let Aggregates {
        rollups,
        buckets,
        activity,
    } = aggregate(&requests);
    let mut tx = db.begin_write().await?;
    if !requests.is_empty() {
        db::insert_requests(&mut tx, &requests).await?;
        db::add_rollups(&mut tx, &rollups).await?;
        db::add_rollup_buckets(&mut tx, &buckets).await?;
        db::add_activity(&mut tx, &activity).await?;
        if let Some(earliest) = requests.iter().map(|r| r.at).min() {
            db::roll_closed(&mut tx, Timestamp::now(), earliest).await?;
        }
    }
    for r in batch {
        if let Record::Error(e) = r {
            db::add_error(&mut tx, e).await?;
        }
    }
    tx.commit().await?;
    Ok(())
}

fn request_records(batch: &[Record]) -> impl Iterator<Item = &RequestRecord> {
    batch.iter().filter_map(|r| match r {
        Record::Request(r) => Some(r),
        Record::Error(_) => None,
    })
}

/// The roll-up, latency bucket and activity increments of a batch.
pub struct Aggregates {
    pub rollups: Vec<(RollupKey, RollupDelta)>,
    pub buckets: Vec<(BucketKey, i64)>,
    pub activity: Vec<((NaiveDate, String), i64)>,
}

/// The increments of a batch of requests.
pub fn aggregate(requests: &[&RequestRecord]) -> Aggregates {
    const HOUR: i64 = 3600;
    const DAY: i64 = 86_400;
    // Keyed by the hour and day numbers; their stored forms are made once
    // per distinct key, not per request.
    let mut rollups: HashMap<(i64, &str, &'static str, u16, &'static str), RollupDelta> =
        HashMap::default();
    let mut buckets: HashMap<(i64, &str, &'static str, &'static str, usize), i64> =
        HashMap::default();
    let mut activity: HashMap<(i64, &str), i64> = HashMap::default();
    for r in requests {
        let secs = r.at.unix_ms().div_euclid(1000);
        let hour = secs.div_euclid(HOUR);
        let key = (hour, &*r.route, r.method, r.status, r.source());
        let d = rollups.entry(key).or_default();
        d.requests += 1;
        d.total_ms += r.duration_ms;
        d.max_ms = d.max_ms.max(r.duration_ms);
        d.bytes_in += r.bytes_in.unwrap_or(0);
        d.bytes_out += r.bytes_out.unwrap_or(0);
        let bucket = bucket_of_ms(r.duration_ms);
        *buckets
            .entry((hour, &*r.route, r.method, r.source(), bucket))
            .or_default() += 1;
        // Load-test traffic is not a person's activity (its virtual users
        // are deleted when the test ends).
        if let Some(user) = &r.user_id
            && r.loadtest_id.is_none()
        {
            *activity.entry((secs.div_euclid(DAY), user)).or_default() += 1;
        }
    }
    let at = |secs: i64| Timestamp::from_unix_ms(secs * 1000).unwrap_or(Timestamp::UNIX_EPOCH);
    Aggregates {
        rollups: rollups
            .into_iter()
            .map(|((hour, route, method, status, source), d)| {
                (
                    (at(hour * HOUR), route.to_string(), method, status, source),
                    d,
                )
            })
            .collect(),
        buckets: buckets
            .into_iter()
            .map(|((hour, route, method, source, bucket), n)| {
                (
                    (at(hour * HOUR), route.to_string(), method, source, bucket),
                    n,
                )
            })
            .collect(),
        activity: activity
            .into_iter()
            .map(|((day, user), n)| ((at(day * DAY).date(), user.to_string()), n))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(at: &str, status: u16, ms: f64, user: Option<&str>) -> RequestRecord {
        RequestRecord {
            at: Timestamp::parse(at).unwrap(),
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

    async fn logged(db: &Db) -> (i64, i64, i64) {
        let mut conn = db.reader.acquire().await.unwrap();
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM request_log), \
                    (SELECT coalesce(sum(requests), 0) FROM request_rollups), \
                    (SELECT coalesce(sum(count), 0) FROM error_groups)",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap()
    }

    /// A small batch and one of several full statements plus a remainder
    /// are both stored whole and rolled up, with their errors.
    #[tokio::test]
    async fn small_and_large_batches_are_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::config::Config::from_map(&std::collections::HashMap::from([(
            "DATA_DIR".to_string(),
            dir.path().display().to_string(),
        )]))
        .unwrap();
        let db = Db::open(&config).await.unwrap();
        let error = || {
            Record::Error(Box::new(crate::monitoring::model::ErrorRecord {
                at: Timestamp::now(),
                fingerprint: "f1".into(),
                kind: "http_500".into(),
                location: "GET /x".into(),
                message: "boom".into(),
                context: "{}".into(),
                request_id: None,
            }))
        };
        let batch_of = |n: usize| {
            let mut batch: Vec<Record> = (0..n)
                .map(|i| {
                    Record::Request(rec("2026-11-27T18:01:00.000Z", 200, i as f64, Some("u1")))
                })
                .collect();
            batch.push(error());
            batch
        };
        for (n, total, errors) in [(3, 3, 1), (237, 240, 2)] {
            write_batch(&db, &batch_of(n)).await.unwrap();
            assert_eq!(logged(&db).await, (total, total, errors));
        }
        db.close().await;
    }

    #[test]
    fn a_batch_is_aggregated_per_hour_route_and_status() {
        let a = rec("2026-11-27T18:01:00.000Z", 200, 3.0, Some("u1"));
        let b = rec("2026-11-27T18:59:00.000Z", 200, 30.0, Some("u1"));
        let c = rec("2026-11-27T19:00:00.000Z", 200, 3.0, None);
        let Aggregates {
            rollups,
            buckets,
            activity,
        } = aggregate(&[&a, &b, &c]);
        assert_eq!(rollups.len(), 2);
        let h18 = rollups
            .iter()
            .find(|(k, _)| k.0.to_string() == "2026-11-27T18:00:00.000Z")
            .unwrap();
        assert_eq!(h18.1.requests, 2);
        assert_eq!(h18.1.max_ms, 30.0);
        assert_eq!(h18.1.bytes_out, 20);
        let mut h18_buckets: Vec<(usize, i64)> = buckets
            .iter()
            .filter(|(k, _)| k.0 == h18.0.0)
            .map(|(k, n)| (k.4, *n))
            .collect();
        h18_buckets.sort();
        assert_eq!(
            h18_buckets,
            vec![(bucket_of_ms(3.0), 1), (bucket_of_ms(30.0), 1)]
        );
        assert_eq!(
            activity,
            vec![(
                (
                    NaiveDate::from_ymd_opt(2026, 11, 27).unwrap(),
                    "u1".to_string()
                ),
                2
            )]
        );
    }
}
