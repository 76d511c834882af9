//! Analytics computed by SQL over the real tables, for admin dashboards:
//! users, sessions, requests (from the hourly roll-ups, so months stay
//! cheap), jobs, files and AI calls. Analysts get the same figures as SQL
//! views (migration `20261127000019_analytics_views.sql`, docs/analytics.md).

pub mod db;
pub mod model;
pub mod routes;

use chrono::NaiveDate;

use self::model::{
    AiFigures, FileFigures, JobFigures, RequestFigures, RouteLatency, SessionFigures, Storage,
    Summary, UserFigures,
};
use crate::db::Db;
use crate::error::{AppError, Result};
use crate::http::cache::ResponseCache;
use crate::time::Timestamp;

/// Longest range a summary may cover.
pub const MAX_RANGE_DAYS: i64 = 3660;
/// Routes with fewer requests are left out of the slowest-routes list.
pub const MIN_ROUTE_REQUESTS: i64 = 5;

/// The analytics domain's service: exactly the handles it needs. (It has no
/// background work: everything is computed on request and cached briefly.)
#[derive(Clone)]
pub struct Analytics {
    pub db: Db,
    pub cache: ResponseCache,
    /// The storage quotas, reported beside the storage used.
    pub storage_limits: crate::files::space::Limits,
}

/// Stored bytes and files per user (the `limit` largest), the totals and the
/// quotas.
pub async fn storage(state: &Analytics, limit: i64) -> Result<Storage> {
    let mut conn = state.db.reader.acquire().await?;
    let (total_files, total_bytes) = db::files_stored(&mut conn).await?;
    let users_with_files = db::users_with_files(&mut conn).await?;
    let items = db::storage_per_user(&mut conn, limit).await?;
    Ok(Storage {
        total_files,
        total_bytes,
        users_with_files,
        quota_bytes: state.storage_limits.quota,
        user_quota_bytes: state.storage_limits.user_quota,
        items,
    })
}

/// Parses a range bound: RFC 3339, or `YYYY-MM-DD` meaning midnight UTC.
pub fn parse_bound(field: &str, raw: &str) -> Result<Timestamp> {
    if let Some(t) = Timestamp::parse(raw) {
        return Ok(t);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .map(|d| Timestamp::from_datetime(d.and_time(chrono::NaiveTime::MIN).and_utc()))
        .ok_or_else(|| AppError::validation(field, "must be RFC 3339 or YYYY-MM-DD"))
}

/// The validated range `[from, to)`.
pub fn range(from: Option<&str>, to: Option<&str>) -> Result<(Timestamp, Timestamp)> {
    let to = match to {
        Some(t) => parse_bound("to", t)?,
        None => Timestamp::now(),
    };
    let from = match from {
        Some(f) => parse_bound("from", f)?,
        None => to - chrono::Duration::days(30),
    };
    if from >= to {
        return Err(AppError::validation("from", "must be before to"));
    }
    if to - from > chrono::Duration::days(MAX_RANGE_DAYS) {
        return Err(AppError::validation(
            "from",
            format!("the range may cover at most {MAX_RANGE_DAYS} days"),
        ));
    }
    Ok((from, to))
}

/// Every day from `first` to `last`, inclusive.
pub fn days_between(first: NaiveDate, last: NaiveDate) -> Vec<NaiveDate> {
    first.iter_days().take_while(|d| *d <= last).collect()
}

/// One row per day of `days`, in order: the row of `rows` for that day, or
/// `zero(day)` (empty days are shown as zeros, not skipped).
pub fn fill_days<T>(
    days: &[NaiveDate],
    rows: Vec<T>,
    day_of: impl Fn(&T) -> NaiveDate,
    zero: impl Fn(NaiveDate) -> T,
) -> Vec<T> {
    let mut by_day: std::collections::HashMap<NaiveDate, T> =
        rows.into_iter().map(|r| (day_of(&r), r)).collect();
    days.iter()
        .map(|d| by_day.remove(d).unwrap_or_else(|| zero(*d)))
        .collect()
}

/// Computes the summary for `[from, to)`.
pub async fn summary(state: &Analytics, from: Timestamp, to: Timestamp) -> Result<Summary> {
    let from_hour = from.start_of_hour();
    let from_day = from.date();
    let last_day = (to - chrono::Duration::milliseconds(1)).date();
    let now = Timestamp::now();
    let mut conn = state.db.reader.acquire().await?;
    // Request figures: closed whole days from the daily roll-ups.
    let split = crate::monitoring::db::split(&mut conn, from_hour, Some(to)).await?;

    let days = days_between(from_day, last_day);
    let day_count = |day| model::DayCount { day, count: 0 };
    let users = UserFigures {
        total: db::users_total(&mut conn).await?,
        new_per_day: fill_days(
            &days,
            db::users_new_per_day(&mut conn, from, to).await?,
            |d| d.day,
            day_count,
        ),
        new_in_range: 0,
        active_per_day: fill_days(
            &days,
            db::active_per_day(&mut conn, from_day, last_day).await?,
            |d| d.day,
            day_count,
        ),
        active_in_range: db::active_in_range(&mut conn, from_day, last_day).await?,
    };
    let users = UserFigures {
        new_in_range: users.new_per_day.iter().map(|d| d.count).sum(),
        ..users
    };

    let (active, with_sessions, created) = db::sessions(&mut conn, now, from, to).await?;
    let sessions = SessionFigures {
        active,
        users_with_active_sessions: with_sessions,
        created_in_range: created,
    };

    let (per_day, loadtest_requests) = db::requests_per_day(&mut conn, split).await?;
    let per_day = fill_days(
        &days,
        per_day,
        |d| d.day,
        |day| model::RequestDay {
            day,
            requests: 0,
            client_errors: 0,
            server_errors: 0,
            error_rate: 0.0,
        },
    );
    let total: i64 = per_day.iter().map(|d| d.requests).sum();
    let server_errors: i64 = per_day.iter().map(|d| d.server_errors).sum();
    let mut slowest: Vec<RouteLatency> =
        crate::monitoring::db::rollups_by_route(&mut conn, from_hour, Some(to))
            .await?
            .into_iter()
            .filter(|r| r.hist.count >= MIN_ROUTE_REQUESTS as u64)
            .map(|r| RouteLatency {
                p95_ms: r.hist.quantile_ms(0.95),
                mean_ms: r.hist.mean_ms(),
                method: r.method,
                route: r.route,
                requests: r.hist.count as i64,
                server_errors: r.server_errors,
                max_ms: r.hist.max_ms,
            })
            .collect();
    slowest.sort_by(|a, b| {
        b.p95_ms
            .total_cmp(&a.p95_ms)
            .then(b.mean_ms.total_cmp(&a.mean_ms))
    });
    slowest.truncate(10);
    let requests = RequestFigures {
        total,
        client_errors: per_day.iter().map(|d| d.client_errors).sum(),
        server_errors,
        error_rate: if total == 0 {
            0.0
        } else {
            server_errors as f64 / total as f64
        },
        loadtest_requests,
        per_day,
        slowest_routes: slowest,
    };

    let jobs = JobFigures {
        by_kind_and_status: db::jobs_by_kind_and_status(&mut conn, from, to).await?,
        stats: db::job_stats(&mut conn, from, to).await?,
    };

    let (stored_files, stored_bytes) = db::files_stored(&mut conn).await?;
    let files = FileFigures {
        by_kind: db::files_by_kind(&mut conn, from, to).await?,
        stored_files,
        stored_bytes,
    };

    let by_day = db::ai_by_day_and_model(&mut conn, from, to).await?;
    let calls: i64 = by_day.iter().map(|d| d.calls).sum();
    let failed: i64 = by_day.iter().map(|d| d.failed).sum();
    let ai = AiFigures {
        calls,
        failed,
        failure_rate: if calls == 0 {
            0.0
        } else {
            failed as f64 / calls as f64
        },
        input_tokens: by_day.iter().map(|d| d.input_tokens).sum(),
        output_tokens: by_day.iter().map(|d| d.output_tokens).sum(),
        by_day_and_model: by_day,
    };

    Ok(Summary {
        from,
        to,
        generated_at: now,
        users,
        sessions,
        requests,
        jobs,
        files,
        ai,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_days_are_filled_with_zeros_in_order() {
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).unwrap();
        let days = days_between(day(28), day(30));
        assert_eq!(days, vec![day(28), day(29), day(30)]);
        let filled = fill_days(&days, vec![(day(29), 5)], |r| r.0, |d| (d, 0));
        assert_eq!(filled, vec![(day(28), 0), (day(29), 5), (day(30), 0)]);
    }

    #[test]
    fn ranges_accept_dates_and_timestamps() {
        let (f, t) = range(Some("2026-11-01"), Some("2026-11-27T12:00:00Z")).unwrap();
        assert_eq!(f.to_string(), "2026-11-01T00:00:00.000Z");
        assert_eq!(t.to_string(), "2026-11-27T12:00:00.000Z");
        assert!(range(Some("2026-11-27"), Some("2026-11-01")).is_err());
        assert!(range(Some("yesterday"), None).is_err());
        let (f, t) = range(None, None).unwrap();
        assert_eq!((t - f).num_days(), 30);
    }
}
