//! `GET /api/monitoring/timeseries`: requests, errors, latency percentiles
//! and active users per step over a window, every step present (zeros where
//! nothing happened). Up to an hour from the live one-minute histograms,
//! longer from the hourly roll-ups (30 days: the daily roll-ups of closed
//! days): the one estimator either way, so a point's p95 is what
//! `/performance` says for the same requests.

use std::collections::HashMap;

use chrono::NaiveDate;

use super::Monitoring;
use super::db;
use super::live::LatencyHist;
use super::model::{Timeseries, TimeseriesPoint};
use crate::error::{AppError, Result};
use crate::time::Timestamp;

const MINUTE: i64 = 60;
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// (window, seconds, step seconds) of the windows the endpoint accepts.
pub const WINDOWS: [(&str, i64, i64); 5] = [
    ("15m", 900, MINUTE),
    ("1h", HOUR, MINUTE),
    ("24h", DAY, HOUR),
    ("7d", 7 * DAY, HOUR),
    ("30d", 30 * DAY, DAY),
];

/// The (seconds, step) of a window name.
pub fn parse(window: &str) -> Result<(i64, i64)> {
    WINDOWS
        .iter()
        .find(|(w, ..)| *w == window)
        .map(|(_, secs, step)| (*secs, *step))
        .ok_or_else(|| {
            let names: Vec<&str> = WINDOWS.iter().map(|(w, ..)| *w).collect();
            AppError::validation("window", format!("expected one of {}", names.join(", ")))
        })
}

pub async fn compute(
    state: &Monitoring,
    window: &str,
    method: Option<&str>,
    route: Option<&str>,
) -> Result<Timeseries> {
    let (secs, step) = parse(window)?;
    let now = Timestamp::now();
    let steps = (secs / step) as usize;
    let (source, span, hists) = if step == MINUTE {
        let (first, hists) = state.monitor.live().series(steps, method, route);
        let span = Steps {
            first,
            step,
            count: steps,
        };
        ("live", span, hists)
    } else {
        let first =
            now.unix_ms().div_euclid(1000).div_euclid(step) * step - (steps as i64 - 1) * step;
        let span = Steps {
            first,
            step,
            count: steps,
        };
        (
            "database",
            span,
            from_rollups(state, span, method, route).await?,
        )
    };
    let users = active_users(state, span, method, route).await?;
    let points = hists
        .iter()
        .zip(users)
        .enumerate()
        .map(|(i, (h, active_users))| point(span.start(i), step, h, active_users))
        .collect();
    Ok(Timeseries {
        window: window.to_string(),
        window_seconds: secs as u64,
        step_seconds: step as u64,
        source,
        points,
    })
}

fn point(at_secs: i64, step: i64, h: &LatencyHist, active_users: i64) -> TimeseriesPoint {
    let n = h.count();
    TimeseriesPoint {
        at: Timestamp::from_unix_ms(at_secs * 1000).unwrap_or(Timestamp::UNIX_EPOCH),
        requests: n,
        requests_per_second: n as f64 / step as f64,
        server_errors: h.errors,
        error_rate: if n == 0 {
            0.0
        } else {
            h.errors as f64 / n as f64
        },
        p50_ms: h.quantile_ms(0.5),
        p95_ms: h.quantile_ms(0.95),
        p99_ms: h.quantile_ms(0.99),
        max_ms: h.latency.max_ms,
        active_users,
    }
}

/// The steps of a window: `count` steps of `step` seconds from `first`
/// (Unix seconds).
#[derive(Clone, Copy)]
struct Steps {
    first: i64,
    step: i64,
    count: usize,
}

impl Steps {
    /// Index of the step holding `secs`, if inside the window.
    fn index(self, secs: i64) -> Option<usize> {
        let i = (secs - self.first).div_euclid(self.step);
        usize::try_from(i).ok().filter(|i| *i < self.count)
    }

    fn start(self, i: usize) -> i64 {
        self.first + i as i64 * self.step
    }
}

async fn from_rollups(
    state: &Monitoring,
    span: Steps,
    method: Option<&str>,
    route: Option<&str>,
) -> Result<Vec<LatencyHist>> {
    let from_hour = Timestamp::from_unix_ms(span.first * 1000).unwrap_or(Timestamp::UNIX_EPOCH);
    let mut conn = state.db.reader.acquire().await?;
    let mut out = vec![LatencyHist::default(); span.count];
    let secs = |t: Timestamp| t.unix_ms().div_euclid(1000);
    // Day steps: closed days from the daily roll-ups, the open day's hours
    // from the hourly ones (the same sums); hour steps: hours.
    let (daily, hours_from) = if span.step == DAY {
        let s = db::split(&mut conn, from_hour, None).await?;
        ((s.first, s.end), s.tail)
    } else {
        ((from_hour.date(), from_hour.date()), from_hour)
    };
    for (at, requests, errors, total_ms, max_ms) in
        db::step_totals(&mut conn, daily, hours_from, method, route).await?
    {
        if let Some(i) = span.index(secs(at)) {
            out[i]
                .latency
                .add_totals(requests.max(0) as u64, total_ms, max_ms);
            out[i].errors += errors.max(0) as u64;
        }
    }
    for (at, bucket, n) in db::step_buckets(&mut conn, daily, hours_from, method, route).await? {
        if let Some(i) = span.index(secs(at)) {
            out[i].latency.add_bucket(bucket, n);
        }
    }
    Ok(out)
}

async fn active_users(
    state: &Monitoring,
    span: Steps,
    method: Option<&str>,
    route: Option<&str>,
) -> Result<Vec<i64>> {
    let mut out = vec![0; span.count];
    let mut conn = state.db.reader.acquire().await?;
    if span.step <= HOUR && span.count as i64 * span.step <= DAY {
        // Whole hours of all routes that are over: counted when they closed.
        let mut raw_from = span.first;
        if span.step == HOUR && method.is_none() && route.is_none() {
            let at =
                |secs: i64| Timestamp::from_unix_ms(secs * 1000).unwrap_or(Timestamp::UNIX_EPOCH);
            let closed = db::closed(&mut conn).await?.hours_before;
            for (hour, n) in db::hour_users(&mut conn, at(span.first), closed).await? {
                if let Some(i) = span.index(hour.unix_ms().div_euclid(1000)) {
                    out[i] = n;
                }
            }
            raw_from = raw_from.max(closed.unix_ms().div_euclid(1000));
        }
        let rows =
            db::active_users_per_step(&mut conn, raw_from * 1000, span.step * 1000, method, route)
                .await?;
        for (at_ms, n) in rows {
            if let Some(i) = span.index(at_ms.div_euclid(1000)) {
                out[i] = n;
            }
        }
        return Ok(out);
    }
    let day_of = |secs: i64| {
        Timestamp::from_unix_ms(secs * 1000)
            .unwrap_or(Timestamp::UNIX_EPOCH)
            .date()
    };
    let per_day: HashMap<NaiveDate, i64> = db::active_users_per_day(&mut conn, day_of(span.first))
        .await?
        .into_iter()
        .collect();
    for (i, n) in out.iter_mut().enumerate() {
        *n = per_day.get(&day_of(span.start(i))).copied().unwrap_or(0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_have_their_steps_and_others_are_refused() {
        assert_eq!(parse("15m").unwrap(), (900, 60));
        assert_eq!(parse("24h").unwrap(), (86_400, 3600));
        assert_eq!(parse("30d").unwrap(), (2_592_000, 86_400));
        assert!(parse("2h").is_err());
        let span = Steps {
            first: 60,
            step: 60,
            count: 3,
        };
        assert_eq!(span.index(120), Some(1));
        assert_eq!(span.index(59), None);
        assert_eq!(span.index(240), None);
        assert_eq!(span.start(2), 180);
    }
}
