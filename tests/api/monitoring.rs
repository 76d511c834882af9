//! Tests of the monitoring domain: request log, rate limits, error tracking,
//! retention, alerts with a webhook, metrics, and admin-only access.

use std::sync::{Arc, Mutex};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::{
    TestApp, assert_problem, spawn_app, spawn_app_in, spawn_app_with, wait_until,
};

impl TestApp {
    /// Waits until the request log has at least `n` entries for `route`.
    pub async fn wait_for_logged(&self, token: &str, route: &str, n: usize) -> Vec<Value> {
        let path = format!("/api/monitoring/logs?limit=200&route={}", urlencode(route));
        wait_until(&format!("{n} logged requests of {route}"), async || {
            let res = self.get(&path, Some(token)).await;
            assert_eq!(res.status(), StatusCode::OK);
            let body: Value = res.json().await.unwrap();
            let items = body["items"].as_array().unwrap().clone();
            if items.len() >= n {
                Ok(items)
            } else {
                Err(body)
            }
        })
        .await
    }

    /// Waits until an error group of `kind` at `location` appears.
    pub async fn wait_for_error_group(&self, token: &str, kind: &str, location: &str) -> Value {
        wait_until(&format!("a {kind} error group at {location}"), async || {
            let body: Value = self
                .get_json(&format!("/api/monitoring/errors?kind={kind}"), token)
                .await;
            let group = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|g| g["location"] == location)
                .cloned();
            group.ok_or(body)
        })
        .await
    }
}

pub fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

const ADMIN_ROUTES: &[&str] = &[
    "/api/monitoring/logs",
    "/api/monitoring/errors",
    "/api/monitoring/performance",
    "/api/monitoring/system",
    "/api/monitoring/health-detailed",
    "/api/monitoring/alerts",
    "/api/analytics/summary",
    "/metrics",
];

#[tokio::test]
async fn requests_appear_in_the_log_with_their_route_template() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for _ in 0..3 {
        assert_eq!(
            app.get_user(&user.id, &user.token).await.status(),
            StatusCode::OK
        );
    }
    let items = app
        .wait_for_logged(&admin.token, "/api/users/{userId}", 3)
        .await;
    assert_eq!(items.len(), 3);
    for e in &items {
        assert_eq!(e["route"], "/api/users/{userId}");
        assert_eq!(e["method"], "GET");
        assert_eq!(e["status"], 200);
        assert_eq!(e["userId"], user.id.as_str());
        assert_eq!(e["source"], "api");
        assert_eq!(e["clientIp"], "127.0.0.1");
        assert!(e["durationMs"].as_f64().unwrap() >= 0.0);
        assert!(e["bytesOut"].as_i64().unwrap() > 0);
        assert!(!e["requestId"].as_str().unwrap().is_empty());
        assert!(!e.to_string().contains(&format!("/api/users/{}", user.id)));
    }
    // Filters: by user, by status class, by minimum duration.
    let by_user: Value = app
        .get_json(
            &format!("/api/monitoring/logs?userId={}&statusClass=2xx", user.id),
            &admin.token,
        )
        .await;
    assert!(
        by_user["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["userId"] == user.id.as_str())
    );
    let unmatched = app.get("/no/such/path", None).await;
    assert_eq!(unmatched.status(), StatusCode::NOT_FOUND);
    let items = app.wait_for_logged(&admin.token, "unmatched", 1).await;
    assert_eq!(items[0]["status"], 404);
    let bad = app
        .get("/api/monitoring/logs?statusClass=9xx", Some(&admin.token))
        .await;
    assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}

#[tokio::test]
async fn the_log_pages_with_a_cursor() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    for _ in 0..5 {
        app.get("/health", None).await;
    }
    app.wait_for_logged(&admin.token, "/health", 5).await;
    let first: Value = app
        .get_json("/api/monitoring/logs?route=%2Fhealth&limit=2", &admin.token)
        .await;
    let cursor = first["nextCursor"].as_str().unwrap();
    let second: Value = app
        .get_json(
            &format!("/api/monitoring/logs?route=%2Fhealth&limit=2&cursor={cursor}"),
            &admin.token,
        )
        .await;
    let a = first["items"][1]["id"].as_i64().unwrap();
    let b = second["items"][0]["id"].as_i64().unwrap();
    assert!(b < a, "pages go from newest to oldest");
}

async fn burst_is_limited(hops: &str, spoof: impl Fn(usize) -> String) {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "5"), ("TRUST_PROXY_HOPS", hops)]).await;
    for i in 0..5 {
        let res = app
            .client
            .get(app.url("/api/users/someone"))
            .header("x-forwarded-for", spoof(i))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "request {i}");
    }
    let res = app
        .client
        .get(app.url("/api/users/someone"))
        .header("x-forwarded-for", spoof(99))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    let rl = res.headers()["ratelimit"].to_str().unwrap().to_string();
    assert!(rl.contains("limit=5") && rl.contains("remaining=0"), "{rl}");
    let policy = res.headers()["ratelimit-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(policy.starts_with("5;w=60"), "{policy}");
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Exempt: liveness.
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_burst_beyond_the_limit_gets_429_and_spoofed_forwarded_for_does_not_reset_it() {
    // No trusted proxy: the header is ignored altogether.
    burst_is_limited("0", |i| format!("10.9.9.{i}")).await;
}

#[tokio::test]
async fn behind_one_proxy_only_the_right_most_forwarded_entry_counts() {
    // The client writes the left entries; the proxy appends the real one.
    burst_is_limited("1", |i| format!("10.9.9.{i}, 203.0.113.7")).await;
    // A different client (as seen by the proxy) has its own allowance.
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "2"), ("TRUST_PROXY_HOPS", "1")]).await;
    for ip in ["203.0.113.1", "203.0.113.1", "203.0.113.2", "203.0.113.2"] {
        let res = app
            .client
            .get(app.url("/api/users/someone"))
            .header("x-forwarded-for", ip)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    let res = app
        .client
        .get(app.url("/api/users/someone"))
        .header("x-forwarded-for", "203.0.113.1")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn authenticated_callers_are_limited_per_user_and_ai_chat_has_its_own_limit() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_PER_MINUTE", "100"),
        ("AI_RATE_LIMIT_PER_MINUTE", "2"),
    ])
    .await;
    let user = app.new_user().await;
    let other = app.new_user().await;
    let chat = serde_json::json!({"message": "hi"});
    // No ANTHROPIC_API_KEY: a chat that passes the limiter answers 503.
    for _ in 0..2 {
        let res = app
            .post("/api/claude-ai/chat", Some(&user.token), chat.clone())
            .await;
        assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "not_configured").await;
    }
    let res = app
        .post("/api/claude-ai/chat", Some(&user.token), chat.clone())
        .await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    // Another user on the same IP is not affected; other routes neither.
    let res = app
        .post("/api/claude-ai/chat", Some(&other.token), chat)
        .await;
    assert_problem(res, StatusCode::SERVICE_UNAVAILABLE, "not_configured").await;
    assert_eq!(
        app.get_user(&user.id, &user.token).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_wrong_load_test_secret_is_neither_exempt_nor_tagged() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    let mut last = StatusCode::OK;
    for _ in 0..3 {
        last = app
            .client
            .get(app.url("/api/users/someone"))
            .header("x-hs-loadtest", "guessed-secret:test1")
            .send()
            .await
            .unwrap()
            .status();
    }
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn an_injected_panic_is_answered_500_tracked_and_the_service_keeps_serving() {
    let app = spawn_app_with(&[("DEBUG_ROUTES", "true")]).await;
    let admin = app.new_admin().await;
    let res = app
        .get("/api/monitoring/debug/fail", Some(&admin.token))
        .await;
    let request_id = res.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = assert_problem(res, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    assert!(!body.to_string().contains("injected"), "no internals leak");
    // Still serving.
    assert_eq!(app.get("/health", None).await.status(), StatusCode::OK);
    let user = app.new_user().await;
    assert_eq!(
        app.get_user(&user.id, &user.token).await.status(),
        StatusCode::OK
    );
    let group = app
        .wait_for_error_group(&admin.token, "panic", "GET /api/monitoring/debug/fail")
        .await;
    assert_eq!(group["count"], 1);
    assert!(
        group["message"]
            .as_str()
            .unwrap()
            .contains("injected panic")
    );
    assert_eq!(group["lastRequestId"], request_id.as_str());
    assert_eq!(group["lastContext"]["route"], "/api/monitoring/debug/fail");
    // A second panic joins the same group; its occurrences are listed.
    app.get("/api/monitoring/debug/fail", Some(&admin.token))
        .await;
    let fp = group["fingerprint"].as_str().unwrap();
    let detail = wait_until("the second panic in its group", async || {
        let detail: Value = app
            .get_json(
                &format!("/api/monitoring/errors?fingerprint={fp}"),
                &admin.token,
            )
            .await;
        if detail["items"][0]["count"] == 2 {
            Ok(detail)
        } else {
            Err(detail)
        }
    })
    .await;
    assert_eq!(detail["items"][0]["events"].as_array().unwrap().len(), 2);
    // Internal errors (not panics) are tracked under their own kind.
    let res = app
        .get("/api/monitoring/debug/fail?mode=error", Some(&admin.token))
        .await;
    assert_problem(res, StatusCode::INTERNAL_SERVER_ERROR, "internal").await;
    let group = app
        .wait_for_error_group(&admin.token, "http_500", "GET /api/monitoring/debug/fail")
        .await;
    assert!(
        group["message"]
            .as_str()
            .unwrap()
            .contains("injected failure")
    );
}

#[tokio::test]
async fn the_failure_route_is_hidden_unless_enabled() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let res = app
        .get("/api/monitoring/debug/fail", Some(&admin.token))
        .await;
    assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    assert!(doc["paths"].get("/api/monitoring/debug/fail").is_none());
    assert!(doc["paths"].get("/api/monitoring/logs").is_some());
    assert!(doc["paths"].get("/metrics").is_some());
}

#[tokio::test]
async fn logs_survive_a_restart() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    app.get_user(&user.id, &user.token).await;
    app.get_user(&user.id, &user.token).await;
    let before = app
        .wait_for_logged(&admin.token, "/api/users/{userId}", 2)
        .await;
    let app = app.restart().await;
    let admin = app.login_as(&admin.id, &admin.email, &admin.password).await;
    let after = app
        .wait_for_logged(&admin.token, "/api/users/{userId}", 2)
        .await;
    let ids = |v: &[Value]| {
        v.iter()
            .map(|e| e["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&before), ids(&after));
}

#[tokio::test]
async fn request_log_rows_written_before_the_integer_times_keep_their_times() {
    // A database as the previous version left it: every migration before
    // request_log.at became at_ms, and a row with the old text time.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hs-platform.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .create_if_missing(true);
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap();
    hs_platform::db::MIGRATOR
        .run_to(20261127000020, &mut conn)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO request_log (at, method, route, status, duration_ms, bytes_out, user_id, \
         client_ip, user_agent, request_id) VALUES ('2026-11-20T10:11:12.345Z', 'GET', \
         '/api/old', 200, 1.5, 42, 'u-old', '203.0.113.9', 'curl/8', 'req-old')",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::Connection::close(conn).await.unwrap();

    let app = spawn_app_in(dir).await;
    let admin = app.new_admin().await;
    let page: Value = app
        .get_json(
            "/api/monitoring/logs?route=%2Fapi%2Fold\
             &from=2026-11-20T10:11:12.345Z&to=2026-11-20T10:11:12.346Z",
            &admin.token,
        )
        .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    let row = &items[0];
    assert_eq!(row["at"], "2026-11-20T10:11:12.345Z");
    assert_eq!(row["status"], 200);
    assert_eq!(row["durationMs"], 1.5);
    assert_eq!(row["bytesOut"], 42);
    assert_eq!(row["userId"], "u-old");
    assert_eq!(row["clientIp"], "203.0.113.9");
    assert_eq!(row["requestId"], "req-old");
    // One millisecond later is outside the range.
    let later: Value = app
        .get_json(
            "/api/monitoring/logs?route=%2Fapi%2Fold&from=2026-11-20T10:11:12.346Z",
            &admin.token,
        )
        .await;
    assert_eq!(later["items"].as_array().unwrap().len(), 0, "{later}");
    // Analysts read the time as text through v_request_log, and new rows
    // get the same text as the API shows.
    assert_eq!(
        app.sqlite3("SELECT at, at_ms FROM v_request_log WHERE route = '/api/old'"),
        "2026-11-20T10:11:12.345Z|1795169472345"
    );
    let fresh = app.wait_for_logged(&admin.token, "/api/sessions", 1).await;
    let id = fresh[0]["id"].as_i64().unwrap();
    assert_eq!(
        app.sqlite3(&format!("SELECT at FROM v_request_log WHERE id = {id}")),
        fresh[0]["at"].as_str().unwrap()
    );
}

#[tokio::test]
async fn retention_rolls_old_requests_up_and_deletes_them() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for _ in 0..6 {
        app.get_user(&user.id, &user.token).await;
    }
    app.wait_for_logged(&admin.token, "/api/users/{userId}", 6)
        .await;

    // A second handle on the same database, running retention as if it
    // were 8 days later (LOG_RETENTION_DAYS defaults to 7).
    let config = hs_platform::config::Config::from_map(&app.env).unwrap();
    let db = hs_platform::db::Db::open(&config).await.unwrap();
    let later = hs_platform::time::Timestamp::now() + chrono::Duration::days(8);
    let dry = hs_platform::monitoring::retention::run(&db, &config, later, false)
        .await
        .unwrap();
    let prune = dry
        .iter()
        .find(|a| a.name == "monitoring.request_log.prune")
        .unwrap();
    assert!(prune.count >= 6, "{prune:?}");
    // A dry run deletes nothing.
    app.wait_for_logged(&admin.token, "/api/users/{userId}", 6)
        .await;
    let done = hs_platform::monitoring::retention::run(&db, &config, later, true)
        .await
        .unwrap();
    let pruned = done
        .iter()
        .find(|a| a.name == "monitoring.request_log.prune")
        .unwrap();
    assert!(pruned.count >= 6);
    assert!(done.iter().any(|a| a.name == "monitoring.vacuum"));
    db.close().await;

    let logs: Value = app
        .get_json(
            "/api/monitoring/logs?route=%2Fapi%2Fusers%2F%7BuserId%7D",
            &admin.token,
        )
        .await;
    assert_eq!(logs["items"].as_array().unwrap().len(), 0);
    // The hourly roll-ups still hold them, exactly once.
    let perf: Value = app
        .get_json("/api/monitoring/performance?window=1d", &admin.token)
        .await;
    assert_eq!(perf["source"], "database");
    let route = perf["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/users/{userId}" && r["method"] == "GET")
        .unwrap();
    assert_eq!(route["requests"], 6);
}

/// A webhook receiver on loopback that records the JSON bodies posted.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let store = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let store = store.clone();
            async move {
                store.lock().unwrap().push(body);
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), seen)
}

async fn wait_for_event(seen: &Arc<Mutex<Vec<Value>>>, rule: &str, event: &str) -> Value {
    wait_until(&format!("a {event} event for {rule}"), async || {
        let seen = seen.lock().unwrap();
        let found = seen
            .iter()
            .find(|v| v["event"] == event && v["alert"]["rule"] == rule);
        found.cloned().ok_or_else(|| Value::from(seen.clone()))
    })
    .await
}

#[tokio::test]
async fn an_alert_fires_on_a_burst_of_500s_resolves_after_and_reaches_the_webhook() {
    let (url, seen) = webhook_receiver().await;
    let app = spawn_app_with(&[
        ("DEBUG_ROUTES", "true"),
        ("ALERT_INTERVAL_SECONDS", "1"),
        ("ALERT_WEBHOOK_URL", &url),
        ("ALERT_ERROR_RATE", "0.5"),
        ("ALERT_MIN_FREE_DISK_BYTES", "0"),
    ])
    .await;
    let admin = app.new_admin().await;
    for _ in 0..20 {
        app.get("/api/monitoring/debug/fail?mode=error", Some(&admin.token))
            .await;
    }
    let fired = wait_for_event(&seen, "error_rate", "firing").await;
    assert_eq!(fired["alert"]["status"], "firing");
    assert!(fired["alert"]["value"].as_f64().unwrap() > 0.5);
    assert_eq!(fired["alert"]["threshold"], 0.5);
    // While firing it shows in health-detailed and the alerts list.
    let alerts: Value = app.get_json("/api/monitoring/alerts", &admin.token).await;
    assert!(
        alerts["recent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "error_rate")
    );
    // Errors stop: the next evaluation resolves it.
    let resolved = wait_for_event(&seen, "error_rate", "resolved").await;
    assert_eq!(resolved["alert"]["id"], fired["alert"]["id"]);
    assert!(resolved["alert"]["resolvedAt"].is_string());
    let alerts: Value = app.get_json("/api/monitoring/alerts", &admin.token).await;
    let stored = alerts["recent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["id"] == fired["alert"]["id"])
        .unwrap()
        .clone();
    assert_eq!(stored["status"], "resolved");
    assert!(
        !alerts["firing"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["rule"] == "error_rate")
    );
    assert_eq!(alerts["thresholds"]["errorRate"], 0.5);
}

fn assert_prometheus_text(text: &str) {
    let mut samples = 0;
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            assert!(
                rest.starts_with("HELP ") || rest.starts_with("TYPE "),
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        assert!(
            value.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&value),
            "bad value in {line}"
        );
        let name = series.split('{').next().unwrap();
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if let Some(labels) = series.strip_prefix(name)
            && !labels.is_empty()
        {
            assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
        }
        samples += 1;
    }
    assert!(samples > 0);
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_for_admins_and_the_metrics_token() {
    let app = spawn_app_with(&[("METRICS_TOKEN", "metrics-secret-token")]).await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    app.get_user(&user.id, &user.token).await;

    let res = app.get("/metrics", Some("metrics-secret-token")).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    assert_prometheus_text(&text);
    assert!(text.contains("# TYPE hs_http_requests_total counter"));
    assert!(text.contains(r#"route="/api/users/{userId}""#));
    assert!(text.contains("hs_http_request_duration_seconds_bucket"));
    assert!(!text.contains("metrics-secret-token"));

    let res = app.get("/metrics", Some(&admin.token)).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_problem(
        app.get("/metrics", Some("wrong-token")).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    assert_problem(
        app.get("/metrics", Some(&user.token)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
}

#[tokio::test]
async fn non_admins_get_403_and_anonymous_401_on_every_admin_route() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for route in ADMIN_ROUTES {
        app.assert_admin_only(Method::GET, route, &user.token, None)
            .await;
        let res = app.get(route, Some(&admin.token)).await;
        assert_eq!(res.status(), StatusCode::OK, "{route}");
    }
}

#[tokio::test]
async fn health_detailed_reports_each_check_and_an_overall_verdict() {
    let app = spawn_app_with(&[("ALERT_MIN_FREE_DISK_BYTES", "0")]).await;
    let admin = app.new_admin().await;
    let res = app
        .get("/api/monitoring/health-detailed", Some(&admin.token))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    let checks = body["checks"].as_array().unwrap();
    for name in [
        "database_read",
        "database_write",
        "disk_space",
        "queue_backlog",
        "ai",
        "browser",
    ] {
        let c = checks.iter().find(|c| c["name"] == name).expect(name);
        assert!(c["detail"].is_string());
    }
    for name in [
        "database_read",
        "database_write",
        "disk_space",
        "queue_backlog",
    ] {
        let c = checks.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert!(["ok", "degraded"].contains(&body["status"].as_str().unwrap()));
    // Served from the cache for the same admin, fresh on request.
    let again = app
        .get("/api/monitoring/health-detailed", Some(&admin.token))
        .await;
    assert_eq!(again.headers()["x-cache"], "hit");
    let fresh = app
        .client
        .get(app.url("/api/monitoring/health-detailed"))
        .bearer_auth(&admin.token)
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.headers()["x-cache"], "miss");
}

#[tokio::test]
async fn system_reports_process_database_and_queue_figures() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let body: Value = app.get_json("/api/monitoring/system", &admin.token).await;
    assert!(body["rssBytes"].as_u64().unwrap() > 0, "{body}");
    assert!(body["databaseBytes"].as_u64().unwrap() > 0);
    assert!(body["threads"].as_u64().unwrap() > 0);
    assert!(body["openFds"].as_u64().unwrap() > 0);
    assert_eq!(body["queueDepth"], 0);
    assert_eq!(body["requestLogDropped"], 0);
    assert!(body["version"].is_string());
}

#[tokio::test]
async fn performance_reports_live_route_statistics() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    for _ in 0..5 {
        app.get_user(&user.id, &user.token).await;
    }
    let body: Value = app
        .get_json("/api/monitoring/performance?window=5m", &admin.token)
        .await;
    assert_eq!(body["source"], "live");
    assert_eq!(body["windowSeconds"], 300);
    let route = body["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"] == "/api/users/{userId}")
        .unwrap();
    assert_eq!(route["requests"], 5);
    assert_eq!(route["errorRate"], 0.0);
    assert!(route["p95Ms"].as_f64().unwrap() > 0.0);
    assert!(route["maxMs"].as_f64().unwrap() >= route["p50Ms"].as_f64().unwrap());
    let bad = app
        .get("/api/monitoring/performance?window=5w", Some(&admin.token))
        .await;
    assert_problem(bad, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
}
