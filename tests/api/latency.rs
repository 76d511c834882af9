//! One latency story: the p95 of the same requests read from the live
//! figures, the hourly roll-ups (through the API) and the analysts' SQL
//! documented in docs/analytics.md agree, and the SQL's bucket table is the
//! estimator's.

use serde_json::Value;

use crate::helpers::{TestApp, TestUser, spawn_app, wait_until};
use hs_platform::monitoring::latency::{BUCKETS, bucket_bounds_us, bucket_value_ms};

const ROUTE: &str = "/api/users/{userId}";

/// The SQL block after `marker` in docs/analytics.md, exactly as shown,
/// with its `params` line replaced.
fn documented_sql(marker: &str, params: &str, replacement: &str) -> String {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md")).unwrap();
    let sql = doc
        .split(marker)
        .nth(1)
        .and_then(|s| s.split("```sql").nth(1))
        .and_then(|s| s.split("```").next())
        .unwrap_or_else(|| panic!("a sql block after {marker} in docs/analytics.md"));
    assert!(sql.contains(params), "the documented params line changed");
    sql.replace(params, replacement)
}

/// The route-percentile query, its `params` line set to every hour and `q`.
fn documented_percentile_sql(q: f64) -> String {
    documented_sql(
        "<!-- route-percentile-sql -->",
        "SELECT '2026-11-30T00:00:00.000Z' AS from_hour, '9999-12-31' AS to_hour, 0.95 AS q",
        &format!("SELECT '2000-01-01' AS from_hour, '9999-12-31' AS to_hour, {q} AS q"),
    )
}

fn route_p95(body: &Value) -> f64 {
    body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == ROUTE && r["method"] == "GET")
        .unwrap_or_else(|| panic!("{ROUTE} in {body}"))["p95Ms"]
        .as_f64()
        .unwrap()
}

/// A service with 40 logged requests of [`ROUTE`]: its admin and the live
/// figures of the last hour.
async fn forty_requests() -> (TestApp, TestUser, Value) {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for _ in 0..40 {
        app.get_user(&user.id, &user.token).await;
    }
    app.wait_for_logged(&admin.token, ROUTE, 40).await;
    let live: Value = app
        .get_json("/api/monitoring/performance?window=1h", &admin.token)
        .await;
    assert_eq!(live["source"], "live");
    (app, admin, live)
}

#[tokio::test]
async fn live_rollup_and_documented_sql_p95_agree_on_the_same_requests() {
    let (app, admin, live) = forty_requests().await;
    let rolled: Value = app
        .get_json("/api/monitoring/performance?window=2h", &admin.token)
        .await;
    assert_eq!(rolled["source"], "database");
    let summary: Value = app.get_json("/api/analytics/summary", &admin.token).await;
    let summary_p95 = summary["requests"]["slowestRoutes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == ROUTE && r["method"] == "GET")
        .unwrap()["p95Ms"]
        .as_f64()
        .unwrap();

    let out = app.sqlite3(&documented_percentile_sql(0.95));
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("{ROUTE}|GET|")))
        .unwrap_or_else(|| panic!("{ROUTE} in {out}"));
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(fields[2], "40");
    let sql_p95: f64 = fields[3].parse().unwrap();

    let live_p95 = route_p95(&live);
    assert!(live_p95 > 0.0);
    assert_eq!(live_p95, route_p95(&rolled), "live vs roll-ups");
    assert_eq!(live_p95, summary_p95, "live vs summary");
    // sqlite3 prints 15 significant digits.
    assert!(
        (live_p95 - sql_p95).abs() <= live_p95 * 1e-12,
        "live {live_p95} vs SQL {sql_p95}"
    );
}

/// The documented query for windows of days (closed days from the daily
/// tables, the open day from the hourly ones), over every day and `q`.
fn documented_daily_percentile_sql(q: f64) -> String {
    documented_sql(
        "<!-- route-percentile-daily-sql -->",
        "SELECT '2026-11-01' AS from_day, '9999-12-31' AS to_day, 0.95 AS q",
        &format!("SELECT '2000-01-01' AS from_day, '9999-12-31' AS to_day, {q} AS q"),
    )
}

/// A window of days reads closed days from the daily roll-up, rolled by the
/// writer once the day is over: the same p95 as the live figures for the
/// same requests, from the API (7 d performance, 30 d time series) and from
/// the documented SQL.
#[tokio::test]
async fn a_window_of_days_reads_closed_days_from_the_daily_table_with_the_same_p95() {
    let (app, admin, live) = forty_requests().await;
    let live_p95 = route_p95(&live);

    // The same requests three days ago in the hourly roll-ups, and the
    // daily roll-up marked as complete only up to four days ago: the
    // writer's next batch rolls those days up.
    app.sqlite3(&format!(
        "INSERT INTO request_rollups SELECT strftime('%Y-%m-%dT%H:00:00.000Z', hour, '-3 days'), \
           route, method, status, source, requests, total_ms, max_ms, bytes_in, bytes_out \
         FROM request_rollups WHERE route = '{ROUTE}'; \
         INSERT INTO request_rollup_buckets SELECT strftime('%Y-%m-%dT%H:00:00.000Z', hour, \
           '-3 days'), route, method, source, bucket, count \
         FROM request_rollup_buckets WHERE route = '{ROUTE}'; \
         UPDATE rollup_closed SET days_before = date('now', '-4 days');"
    ));
    app.get_json("/api/monitoring/alerts", &admin.token).await;
    wait_until("the copied day rolled up", async || {
        let done = app.sqlite3("SELECT days_before = date('now') FROM rollup_closed");
        if done == "1" { Ok(()) } else { Err(done) }
    })
    .await;
    let daily = app.sqlite3(&format!(
        "SELECT sum(count) FROM request_rollup_daily_buckets \
         WHERE route = '{ROUTE}' AND day = date('now', '-3 days')"
    ));
    assert_eq!(daily, "40");
    // Only the daily tables hold that day now.
    app.sqlite3(
        "DELETE FROM request_rollup_buckets WHERE hour < date('now'); \
         DELETE FROM request_rollups WHERE hour < date('now');",
    );

    let week: Value = app
        .get_json("/api/monitoring/performance?window=7d", &admin.token)
        .await;
    assert_eq!(week["source"], "database");
    let row = week["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == ROUTE && r["method"] == "GET")
        .unwrap();
    assert_eq!(row["requests"], 80);
    assert_eq!(route_p95(&week), live_p95, "live vs 7 d (daily + hourly)");

    let month: Value = app
        .get_json(
            &format!(
                "/api/monitoring/timeseries?window=30d&method=GET&route={}",
                crate::monitoring::urlencode(ROUTE)
            ),
            &admin.token,
        )
        .await;
    let three_days_ago = (chrono::Utc::now() - chrono::Duration::days(3))
        .format("%Y-%m-%dT00:00:00.000Z")
        .to_string();
    let point = month["points"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["at"] == three_days_ago.as_str())
        .unwrap_or_else(|| panic!("{three_days_ago} in {month}"));
    assert_eq!(point["requests"], 40);
    assert_eq!(
        point["p95Ms"].as_f64().unwrap(),
        live_p95,
        "live vs 30 d day"
    );

    let out = app.sqlite3(&documented_daily_percentile_sql(0.95));
    let row = out
        .lines()
        .find(|l| l.starts_with(&format!("{ROUTE}|GET|")))
        .unwrap_or_else(|| panic!("{ROUTE} in {out}"));
    let fields: Vec<&str> = row.split('|').collect();
    assert_eq!(fields[2], "80");
    let sql_p95: f64 = fields[3].parse().unwrap();
    assert!(
        (live_p95 - sql_p95).abs() <= live_p95 * 1e-12,
        "live {live_p95} vs SQL {sql_p95}"
    );
}

#[tokio::test]
async fn the_sql_bucket_table_is_the_estimators() {
    let app = spawn_app().await;
    let out = app.sqlite3(
        "SELECT bucket, lower_us, coalesce(upper_us, -1), printf('%!.17g', value_ms) \
         FROM latency_buckets ORDER BY bucket",
    );
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), BUCKETS);
    for (i, row) in rows.iter().enumerate() {
        let f: Vec<&str> = row.split('|').collect();
        let (lower, upper) = bucket_bounds_us(i);
        assert_eq!(f[0].parse::<usize>().unwrap(), i);
        assert_eq!(f[1].parse::<u64>().unwrap(), lower, "bucket {i}");
        let upper_sql: i64 = f[2].parse().unwrap();
        if i == BUCKETS - 1 {
            assert_eq!(upper_sql, -1);
        } else {
            assert_eq!(upper_sql as u64, upper, "bucket {i}");
        }
        assert_eq!(
            f[3].parse::<f64>().unwrap(),
            bucket_value_ms(i),
            "bucket {i}"
        );
    }
}

/// The metric names of the catalogue in docs/metrics.md, with whether each
/// is present from start-up.
fn catalogue() -> Vec<(String, bool)> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
    let table = doc.split("<!-- metrics-catalogue -->").nth(1).unwrap();
    table
        .lines()
        .skip_while(|l| !l.starts_with("| `"))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            (
                cells[1].trim_matches('`').to_string(),
                cells[5].starts_with("always"),
            )
        })
        .collect()
}

/// `hs_` metric names in a PromQL expression, without histogram suffixes.
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(i) = rest.find("hs_") {
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        out.push(base.to_string());
    }
    out
}

#[tokio::test]
async fn the_dashboard_and_metrics_endpoint_match_the_catalogue() {
    let catalogue = catalogue();
    assert!(catalogue.len() >= 20, "{catalogue:?}");
    let known = |name: &str| catalogue.iter().any(|(n, _)| n == name);

    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docs/grafana/hs-platform.json"
        ))
        .unwrap(),
    )
    .expect("the dashboard is valid JSON");
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queried.extend(metric_names(target["expr"].as_str().unwrap()));
        }
    }
    assert!(queried.len() >= 20);
    for name in &queried {
        assert!(
            known(name),
            "the dashboard queries {name}, not in docs/metrics.md"
        );
    }

    let app = crate::helpers::spawn_app_with(&[("METRICS_TOKEN", "metrics-token-for-test")]).await;
    let user = app.new_user().await;
    app.get_user(&user.id, &user.token).await;
    let text = wait_until("the sampled gauges in /metrics", async || {
        let text = app
            .get("/metrics", Some("metrics-token-for-test"))
            .await
            .text()
            .await
            .unwrap();
        let missing: Vec<&String> = catalogue
            .iter()
            .filter(|(name, always)| *always && !text.contains(&format!("# TYPE {name} ")))
            .map(|(name, _)| name)
            .collect();
        if missing.is_empty() {
            Ok(text)
        } else {
            Err(format!("{missing:?}"))
        }
    })
    .await;
    for line in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = line.split(' ').next().unwrap();
        assert!(
            known(name),
            "/metrics exposes {name}, not in docs/metrics.md"
        );
    }
    assert!(text.contains("# TYPE hs_http_request_duration_seconds histogram"));
    assert!(text.contains(r#"le="300""#), "buckets reach 300 s");
    assert!(text.contains(r#"le="0.0001""#), "buckets start at 100 us");
    let build = text
        .lines()
        .find(|l| l.starts_with("hs_build_info{"))
        .expect("hs_build_info");
    assert!(
        build.contains(&format!(r#"version="{}""#, env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(
        build.contains("git_commit=") && build.contains("rustc="),
        "{build}"
    );
    assert!(build.ends_with(" 1"), "{build}");
}

#[tokio::test]
async fn timeseries_has_every_step_of_the_window_and_counts_the_requests_made() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for _ in 0..7 {
        app.get_user(&user.id, &user.token).await;
    }
    app.wait_for_logged(&admin.token, ROUTE, 7).await;
    let route = super::monitoring::urlencode(ROUTE);
    for (window, step, points, source) in [
        ("15m", 60, 15, "live"),
        ("1h", 60, 60, "live"),
        ("24h", 3600, 24, "database"),
        ("7d", 3600, 168, "database"),
        ("30d", 86_400, 30, "database"),
    ] {
        let body: Value = app
            .get_json(
                &format!("/api/monitoring/timeseries?window={window}&method=GET&route={route}"),
                &admin.token,
            )
            .await;
        assert_eq!(body["source"], source, "{window}");
        assert_eq!(body["stepSeconds"], step, "{window}");
        let pts = body["points"].as_array().unwrap();
        assert_eq!(pts.len(), points, "{window}");
        let requests: u64 = pts.iter().map(|p| p["requests"].as_u64().unwrap()).sum();
        assert_eq!(requests, 7, "{window}");
        let busy: Vec<&Value> = pts.iter().filter(|p| p["requests"] != 0).collect();
        assert!(busy.iter().all(|p| p["p95Ms"].as_f64().unwrap() > 0.0));
        // The user who made them (windows over a day count the users of
        // the whole day, the admin included).
        assert!(
            busy.iter().any(|p| p["activeUsers"].as_i64().unwrap() >= 1),
            "{window}: {busy:?}"
        );
        let empty = pts.iter().find(|p| p["requests"] == 0).unwrap();
        assert_eq!(
            (empty["p95Ms"].as_f64(), empty["errorRate"].as_f64()),
            (Some(0.0), Some(0.0))
        );
        // Steps follow each other without gaps.
        let at =
            |p: &Value| chrono::DateTime::parse_from_rfc3339(p["at"].as_str().unwrap()).unwrap();
        for pair in pts.windows(2) {
            assert_eq!(
                (at(&pair[1]) - at(&pair[0])).num_seconds(),
                step,
                "{window}"
            );
        }
    }
    let bad = app
        .get("/api/monitoring/timeseries?window=2h", Some(&admin.token))
        .await;
    crate::helpers::assert_problem(
        bad,
        reqwest::StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    app.assert_admin_only(
        reqwest::Method::GET,
        "/api/monitoring/timeseries",
        &user.token,
        None,
    )
    .await;
}
