//! Tests of the analytics domain: the summary's figures equal what the test
//! did, and the analysts' SQL views answer through the `sqlite3` command
//! line tool against the live service's database file.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestUser, assert_problem, spawn_app, wait_until};

impl TestApp {
    pub async fn analytics_summary(&self, token: &str, query: &str) -> reqwest::Response {
        self.client
            .get(self.url(&format!("/api/analytics/summary{query}")))
            .bearer_auth(token)
            .header("cache-control", "no-cache")
            .send()
            .await
            .expect("request sent")
    }

    /// Runs SQL with the `sqlite3` command-line tool on the live database,
    /// as an analyst would (waiting for the service's write lock like any
    /// second writer must).
    pub fn sqlite3(&self, sql: &str) -> String {
        let mut last_error = String::new();
        for _ in 0..5 {
            let out = Command::new("sqlite3")
                .arg("-cmd")
                .arg(".timeout 10000")
                .arg(self.db_path())
                .arg(sql)
                .output()
                .expect("sqlite3 is installed");
            if out.status.success() {
                return String::from_utf8(out.stdout).unwrap().trim().to_string();
            }
            last_error = String::from_utf8_lossy(&out.stderr).to_string();
            if !last_error.contains("locked") {
                break;
            }
        }
        panic!("sqlite3 failed: {last_error}");
    }
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn tomorrow() -> String {
    (chrono::Utc::now() + chrono::Duration::days(1))
        .format("%Y-%m-%d")
        .to_string()
}

/// Users, profile reads and rows in the jobs, files and AI tables whose
/// figures the tests know exactly.
async fn scenario(app: &TestApp) -> (TestUser, Vec<TestUser>) {
    let admin = app.new_admin().await;
    let mut users = Vec::new();
    for reads in 1..=3 {
        let u = app.new_user().await;
        for _ in 0..reads {
            assert_eq!(app.get_user(&u.id, &u.token).await.status(), StatusCode::OK);
        }
        users.push(u);
    }
    // Two 404s: a user reading someone else's profile.
    for _ in 0..2 {
        let res = app.get_user(&users[1].id, &users[0].token).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }
    app.wait_for_logged(&admin.token, "/api/users/{userId}", 8)
        .await;
    // The admin's own (authenticated) requests count as activity too: wait
    // until one of them is written.
    let mine = format!("/api/monitoring/logs?userId={}", admin.id);
    wait_until("a logged request of the admin", async || {
        let body: Value = app.get_json(&mine, &admin.token).await;
        if body["items"].as_array().unwrap().is_empty() {
            Err(body)
        } else {
            Ok(())
        }
    })
    .await;
    // Jobs, files and AI calls written by an outside writer (these domains
    // write them in production), while the service runs.
    let u0 = &users[0].id;
    app.sqlite3(&format!(
        "BEGIN IMMEDIATE;
         INSERT INTO jobs (id, kind, status, user_id, started_at, finished_at) VALUES
           ('j1', 'files.pdf', 'succeeded', '{u0}', strftime('%Y-%m-%dT%H:%M:%fZ','now','-2 seconds'), strftime('%Y-%m-%dT%H:%M:%fZ','now')),
           ('j2', 'files.pdf', 'succeeded', '{u0}', strftime('%Y-%m-%dT%H:%M:%fZ','now','-4 seconds'), strftime('%Y-%m-%dT%H:%M:%fZ','now')),
           ('j3', 'files.pdf', 'failed', '{u0}', strftime('%Y-%m-%dT%H:%M:%fZ','now','-1 seconds'), strftime('%Y-%m-%dT%H:%M:%fZ','now')),
           ('j4', 'ai.chat', 'queued', '{u0}', NULL, NULL);
         INSERT INTO files (id, user_id, kind, file_name, mime_type, size, sha256, storage_name) VALUES
           ('f1', '{u0}', 'pdf', 'a.pdf', 'application/pdf', 1000, 'x', 's1'),
           ('f2', '{u0}', 'pdf', 'b.pdf', 'application/pdf', 500, 'y', 's2'),
           ('f3', '{u0}', 'csv', 'c.csv', 'text/csv', 20, 'z', 's3');
         INSERT INTO ai_calls (id, user_id, model, input_tokens, output_tokens, outcome) VALUES
           ('a1', '{u0}', 'claude-haiku-4-5', 10, 20, 'succeeded'),
           ('a2', '{u0}', 'claude-haiku-4-5', 5, 7, 'succeeded'),
           ('a3', '{u0}', 'claude-haiku-4-5', 0, 0, 'failed');
         COMMIT;"
    ));
    (admin, users)
}

#[tokio::test]
async fn analytics_figures_equal_the_counts_the_test_made() {
    let app = spawn_app().await;
    let (admin, _users) = scenario(&app).await;
    let query = format!("?from={}&to={}", today(), tomorrow());
    let res = app.analytics_summary(&admin.token, &query).await;
    assert_eq!(res.status(), StatusCode::OK);
    let s: Value = res.json().await.unwrap();

    assert_eq!(s["users"]["total"], 4);
    assert_eq!(s["users"]["newInRange"], 4);
    assert_eq!(s["users"]["newPerDay"][0]["day"], today());
    assert_eq!(s["users"]["newPerDay"][0]["count"], 4);
    // The three users and the admin made authenticated requests today.
    assert_eq!(s["users"]["activePerDay"][0]["count"], 4);
    assert_eq!(s["users"]["activeInRange"], 4);
    assert_eq!(s["sessions"]["active"], 4);
    assert_eq!(s["sessions"]["createdInRange"], 4);

    let route = s["requests"]["slowestRoutes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/users/{userId}")
        .expect("the profile route is listed")
        .clone();
    assert_eq!(route["requests"], 8);
    assert_eq!(route["serverErrors"], 0);
    assert!(route["p95Ms"].as_f64().unwrap() > 0.0);
    assert!(s["requests"]["clientErrors"].as_i64().unwrap() >= 2);
    assert!(s["requests"]["total"].as_i64().unwrap() >= 8);
    assert_eq!(s["requests"]["serverErrors"], 0);

    let jobs = s["jobs"]["byKindAndStatus"].as_array().unwrap();
    let count = |kind: &str, status: &str| {
        jobs.iter()
            .find(|j| j["kind"] == kind && j["status"] == status)
            .map(|j| j["count"].as_i64().unwrap())
    };
    assert_eq!(count("files.pdf", "succeeded"), Some(2));
    assert_eq!(count("files.pdf", "failed"), Some(1));
    assert_eq!(count("ai.chat", "queued"), Some(1));
    let pdf = &s["jobs"]["stats"][0];
    assert_eq!(pdf["kind"], "files.pdf");
    assert_eq!(pdf["finished"], 3);
    assert_eq!(pdf["succeeded"], 2);
    let rate = pdf["successRate"].as_f64().unwrap();
    assert!((rate - 2.0 / 3.0).abs() < 1e-9);
    let mean = pdf["meanMs"].as_f64().unwrap();
    assert!((2900.0..=3100.0).contains(&mean), "mean {mean}");
    let p95 = pdf["p95Ms"].as_f64().unwrap();
    assert!((3900.0..=4100.0).contains(&p95), "p95 {p95}");

    let files = s["files"]["byKind"].as_array().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["kind"], "csv");
    assert_eq!(files[1]["files"], 2);
    assert_eq!(files[1]["bytes"], 1500);
    assert_eq!(s["files"]["storedBytes"], 1520);

    assert_eq!(s["ai"]["calls"], 3);
    assert_eq!(s["ai"]["failed"], 1);
    assert_eq!(s["ai"]["inputTokens"], 15);
    assert_eq!(s["ai"]["outputTokens"], 27);
    assert_eq!(s["ai"]["byDayAndModel"][0]["model"], "claude-haiku-4-5");

    // A range before anything happened is empty.
    let empty: Value = app
        .analytics_summary(&admin.token, "?from=2020-01-01&to=2020-02-01")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(empty["users"]["newInRange"], 0);
    assert_eq!(empty["requests"]["total"], 0);
    assert_eq!(empty["ai"]["calls"], 0);
}

#[tokio::test]
async fn the_sql_views_answer_with_the_sqlite3_cli_while_the_service_serves() {
    let app = spawn_app().await;
    let (admin, users) = scenario(&app).await;
    // Keep the service busy (and writing its log) while the analyst reads.
    let busy_client = app.client.clone();
    let busy_url = app.url(&format!("/api/users/{}", users[2].id));
    let token = users[2].token.clone();
    let busy = tokio::spawn(async move {
        for _ in 0..200 {
            let _ = busy_client.get(&busy_url).bearer_auth(&token).send().await;
        }
    });

    let day = today();
    assert_eq!(
        app.sqlite3(&format!(
            "SELECT new_users, active_users FROM v_users_daily WHERE day = '{day}'"
        )),
        "4|4"
    );
    assert_eq!(
        app.sqlite3("SELECT active_sessions, users_with_sessions FROM v_active_sessions"),
        "4|4"
    );
    assert_eq!(
        app.sqlite3("SELECT kind, status, jobs FROM v_jobs_by_kind ORDER BY kind, status"),
        "ai.chat|queued|1\nfiles.pdf|failed|1\nfiles.pdf|succeeded|2"
    );
    assert_eq!(
        app.sqlite3("SELECT kind, finished, succeeded, failed, success_rate FROM v_job_stats"),
        "files.pdf|3|2|1|0.6667"
    );
    assert_eq!(
        app.sqlite3("SELECT kind, files, bytes FROM v_files_by_kind ORDER BY kind"),
        "csv|1|20\npdf|2|1500"
    );
    assert_eq!(
        app.sqlite3(&format!(
            "SELECT calls, failed, input_tokens, output_tokens FROM v_ai_daily WHERE day = '{day}'"
        )),
        "3|1|15|27"
    );
    busy.await.unwrap();
    // The request views agree with the summary once the log is written.
    let view: i64 = wait_until("208 logged reads in v_route_latency_daily", async || {
        let view: i64 = app
            .sqlite3(&format!(
                "SELECT coalesce(sum(requests), 0) FROM v_route_latency_daily
                 WHERE day = '{day}' AND route = '/api/users/{{userId}}' AND method = 'GET'"
            ))
            .parse()
            .unwrap();
        if view >= 208 { Ok(view) } else { Err(view) }
    })
    .await;
    assert_eq!(view, 208);
    let p95: f64 = app
        .sqlite3(&format!(
            "SELECT p95_ms FROM v_route_latency_daily
             WHERE day = '{day}' AND route = '/api/users/{{userId}}'"
        ))
        .parse()
        .unwrap();
    let s: Value = app
        .analytics_summary(&admin.token, &format!("?from={day}&to={}", tomorrow()))
        .await
        .json()
        .await
        .unwrap();
    let route = s["requests"]["slowestRoutes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/users/{userId}")
        .unwrap()
        .clone();
    assert_eq!(route["requests"], 208);
    // The sqlite3 CLI prints 15 significant digits; the API the exact f64.
    let api_p95 = route["p95Ms"].as_f64().unwrap();
    assert!((api_p95 - p95).abs() < 1e-9, "{api_p95} vs {p95}");
    let daily = app.sqlite3(&format!(
        "SELECT requests, client_errors FROM v_requests_daily WHERE day = '{day}' AND source = 'api'"
    ));
    let (requests, client_errors) = daily.split_once('|').unwrap();
    assert!(requests.parse::<i64>().unwrap() >= 208);
    assert!(client_errors.parse::<i64>().unwrap() >= 2);
}

#[tokio::test]
async fn the_summary_rejects_bad_ranges() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let res = app
        .analytics_summary(&admin.token, "?from=2026-02-01&to=2026-01-01")
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.analytics_summary(&admin.token, "?from=yesterday").await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let res = app.analytics_summary(&admin.token, "?bogus=1").await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(body["errors"][0]["field"], "bogus", "{body}");
}

#[tokio::test]
async fn the_summary_is_cached_per_admin_and_query_never_shared() {
    let app = spawn_app().await;
    let a = app.new_admin().await;
    let b = app.new_admin().await;
    let get = |token: String, q: &'static str| {
        let req = app
            .client
            .get(app.url(&format!("/api/analytics/summary{q}")))
            .bearer_auth(token);
        async move { req.send().await.unwrap() }
    };
    let first = get(a.token.clone(), "?from=2026-01-01").await;
    assert_eq!(first.headers()["x-cache"], "miss");
    let second = get(a.token.clone(), "?from=2026-01-01").await;
    assert_eq!(second.headers()["x-cache"], "hit");
    let other_query = get(a.token.clone(), "?from=2026-01-02").await;
    assert_eq!(other_query.headers()["x-cache"], "miss");
    let other_admin = get(b.token.clone(), "?from=2026-01-01").await;
    assert_eq!(other_admin.headers()["x-cache"], "miss");
}

/// Every example query in docs/analytics.md runs with the `sqlite3` tool on a
/// live service's database, and the request-log ones find the test's
/// requests.
#[tokio::test]
async fn the_example_queries_of_the_analysts_guide_run() {
    let app = spawn_app().await;
    scenario(&app).await;
    let guide =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/analytics.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in guide.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```sql") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 10, "{} SQL blocks", blocks.len());
    for block in &blocks {
        let out = app.sqlite3(block);
        if block.contains("FROM v_request_log") {
            // The slowest requests of the last hour: the scenario's.
            assert!(out.contains("/api/users/{userId}"), "{block}\n=> {out}");
        }
    }
}

#[tokio::test]
async fn storage_lists_bytes_and_files_per_user_largest_first_with_totals_and_quotas() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let small = app.new_user().await;
    let big = app.new_user().await;
    app.assert_admin_only(
        reqwest::Method::GET,
        "/api/analytics/storage",
        &small.token,
        None,
    )
    .await;
    for (user, size) in [(&small, 100), (&big, 3000), (&big, 2000)] {
        let res = app
            .upload(&user.token, "a.txt", "text/plain", &vec![b'x'; size])
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let storage = app
        .get_json("/api/analytics/storage?limit=1", &admin.token)
        .await;
    assert_eq!(storage["totalFiles"], 3);
    assert_eq!(storage["totalBytes"], 5100);
    assert_eq!(storage["usersWithFiles"], 2);
    assert!(storage["quotaBytes"].as_u64().unwrap() > 0);
    assert!(storage["userQuotaBytes"].as_u64().unwrap() > 0);
    let items = storage["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["userId"], big.id.as_str());
    assert_eq!(items[0]["email"], big.email.as_str());
    assert_eq!(items[0]["files"], 2);
    assert_eq!(items[0]["bytes"], 5000);
    let storage = app.get_json("/api/analytics/storage", &admin.token).await;
    assert_eq!(storage["items"][1]["userId"], small.id.as_str());
    assert_eq!(storage["items"][1]["bytes"], 100);
    let res = app
        .get("/api/analytics/storage?limit=101", Some(&admin.token))
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn the_summary_shows_every_day_of_the_range_with_zeros_for_empty_ones() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let day = |offset: i64| {
        (chrono::Utc::now() + chrono::Duration::days(offset))
            .format("%Y-%m-%d")
            .to_string()
    };
    let query = format!("?from={}&to={}", day(-2), day(1));
    wait_until("today's requests in the summary", async || {
        let s: Value = app
            .analytics_summary(&admin.token, &query)
            .await
            .json()
            .await
            .unwrap();
        let per_day = s["requests"]["perDay"].as_array().unwrap().clone();
        let days: Vec<&str> = per_day.iter().map(|d| d["day"].as_str().unwrap()).collect();
        assert_eq!(days, [day(-2), day(-1), day(0)]);
        assert_eq!(per_day[0]["requests"], 0);
        assert_eq!(per_day[1]["requests"], 0);
        assert_eq!(s["users"]["newPerDay"].as_array().unwrap().len(), 3);
        assert_eq!(s["users"]["newPerDay"][0]["count"], 0);
        assert_eq!(s["users"]["activePerDay"].as_array().unwrap().len(), 3);
        if per_day[2]["requests"].as_i64().unwrap() > 0 {
            Ok(())
        } else {
            Err(s)
        }
    })
    .await;
}
