//! Tests of the built-in load tester (small and bounded: a few seconds at low
//! concurrency).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_problem, error_fields, spawn_app, spawn_app_with, wait_until,
};

impl TestApp {
    pub async fn start_load_test(&self, token: &str, body: Value) -> reqwest::Response {
        self.post("/api/load-test/start", Some(token), body).await
    }

    /// Starts a load test that must be accepted; returns its id.
    pub async fn start_load_test_id(&self, token: &str, body: Value) -> String {
        let res = self.start_load_test(token, body).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        res.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Polls the result until the test has finished.
    pub async fn load_test_result(&self, token: &str, id: &str) -> Value {
        wait_until(&format!("load test {id} to finish"), async || {
            let res = self
                .get(&format!("/api/load-test/results/{id}"), Some(token))
                .await;
            assert_eq!(res.status(), StatusCode::OK);
            let body: Value = res.json().await.unwrap();
            match body["status"].as_str() {
                Some("queued" | "running") => Err(body),
                _ => Ok(body),
            }
        })
        .await
    }
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn assert_ordered(l: &Value) {
    let keys = ["min", "p50", "p75", "p90", "p95", "p99", "p999", "max"];
    for w in keys.windows(2) {
        assert!(f(&l[w[0]]) <= f(&l[w[1]]), "{} > {} in {l}", w[0], w[1]);
    }
    assert!(
        f(&l["min"]) <= f(&l["mean"]) && f(&l["mean"]) <= f(&l["max"]),
        "{l}"
    );
}

#[tokio::test]
async fn a_load_test_runs_end_to_end_with_a_consistent_report() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let res = app
        .start_load_test(
            &admin.token,
            json!({
                "scenario": [
                    {"method": "GET", "path": "/health", "weight": 3},
                    {"method": "GET", "path": format!("/api/users/{}", admin.id)},
                    {"method": "GET", "path": "/api/no-such-route"}
                ],
                "concurrency": 3,
                "durationSeconds": 2,
                "thresholds": {"p95Ms": 60000, "errorRate": 0.9}
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/api/jobs/")
    );
    let job: Value = res.json().await.unwrap();
    assert_eq!(job["kind"], "loadtest.run");
    let id = job["id"].as_str().unwrap();

    let r = app.load_test_result(&admin.token, id).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["id"], id);
    let total = u(&r["totals"]["requests"]);
    let ok = u(&r["totals"]["succeeded"]);
    let failed = u(&r["totals"]["failed"]);
    assert!(total > 10, "only {total} requests in 2 s");
    assert_eq!(ok + failed, total);
    // The profile read authenticated as the admin: no 401, and the unknown
    // route answered 404 (a failure by status).
    let codes = r["statusCodes"].as_object().unwrap();
    assert!(!codes.contains_key("401"), "{codes:?}");
    assert!(u(&codes["200"]) > 0 && u(&codes["404"]) > 0, "{codes:?}");
    let code_sum: u64 = codes.values().map(u).sum();
    let e = &r["errors"];
    assert_eq!(
        code_sum + u(&e["timeout"]) + u(&e["connect"]) + u(&e["other"]),
        total
    );
    assert_eq!(
        u(&e["status4xx"])
            + u(&e["status5xx"])
            + u(&e["timeout"])
            + u(&e["connect"])
            + u(&e["other"]),
        failed
    );
    assert_eq!(u(&codes["404"]), failed);

    assert_eq!(u(&r["latencyMs"]["count"]), ok);
    // The histogram holds the same successful requests, in doubling buckets.
    let buckets = r["histogram"].as_array().unwrap();
    assert_eq!(buckets.iter().map(|b| u(&b["count"])).sum::<u64>(), ok);
    assert!(
        buckets
            .windows(2)
            .all(|w| w[1]["leMs"].as_f64() > w[0]["leMs"].as_f64())
    );
    assert_eq!(u(&r["failureLatencyMs"]["count"]), failed);
    assert_ordered(&r["latencyMs"]);
    assert_ordered(&r["failureLatencyMs"]);

    let timeline = r["timeline"].as_array().unwrap();
    assert!(
        timeline.len() >= 2 && timeline.len() <= 4,
        "{} seconds",
        timeline.len()
    );
    assert_eq!(
        timeline.iter().map(|p| u(&p["requests"])).sum::<u64>(),
        total
    );
    assert_eq!(
        timeline.iter().map(|p| u(&p["errors"])).sum::<u64>(),
        failed
    );
    for (i, p) in timeline.iter().enumerate() {
        assert_eq!(u(&p["second"]), i as u64);
        assert!(f(&p["p50Ms"]) <= f(&p["p99Ms"]));
    }
    let rps = f(&r["achievedRps"]);
    let secs = f(&r["durationSeconds"]);
    assert!((rps * secs - total as f64).abs() <= total as f64 * 0.01 + 1.0);
    assert!(r["targetRps"].is_null());
    assert_eq!(r["coordinatedOmissionCorrected"], false);

    let verdicts = r["thresholds"].as_array().unwrap();
    assert_eq!(verdicts.len(), 2);
    assert!(verdicts.iter().all(|v| v["passed"] == true), "{verdicts:?}");
    assert_eq!(r["passed"], true);

    // The test's own session is revoked at the end.
    let sessions: Value = app
        .get_json(&format!("/api/users/{}/sessions", admin.id), &admin.token)
        .await;
    let internal: Vec<&Value> = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metadata"]["purpose"] == "loadtest")
        .collect();
    assert_eq!(internal.len(), 1);
    assert_eq!(internal[0]["active"], false);

    // Listed among the recent tests, with nothing running.
    let status: Value = app.get_json("/api/load-test/status", &admin.token).await;
    assert!(status["running"].is_null(), "{status}");
    assert_eq!(status["recent"][0]["id"], id);
    assert_eq!(u(&status["recent"][0]["requests"]), total);
    let job: Value = app.get_json(&format!("/api/jobs/{id}"), &admin.token).await;
    assert_eq!(job["status"], "succeeded");
    assert_eq!(job["result"]["testId"], id);
}

#[tokio::test]
async fn a_rate_test_sends_the_requested_count_and_corrects_for_coordinated_omission() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let res = app
        .start_load_test(
            &admin.token,
            json!({
                "scenario": [{"method": "GET", "path": "/health"}],
                "rate": 40, "requests": 30, "rampUpSeconds": 1, "durationSeconds": 10,
                "thresholds": {"p99Ms": 0.001}
            }),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.load_test_result(&admin.token, &id).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(u(&r["totals"]["requests"]), 30);
    assert_eq!(r["coordinatedOmissionCorrected"], true);
    assert_eq!(f(&r["targetRps"]), 40.0);
    assert_eq!(r["mode"], "rate");
    // An impossible threshold fails, and says so.
    assert_eq!(r["passed"], false);
    assert_eq!(r["thresholds"][0]["name"], "p99Ms");
    assert_eq!(r["thresholds"][0]["passed"], false);
}

#[tokio::test]
async fn a_scenario_with_a_host_or_scheme_is_rejected() {
    let app = spawn_app_with(&[("LOADTEST_MAX_CONCURRENCY", "4")]).await;
    let admin = app.new_admin().await;
    for path in [
        "http://example.com/",
        "//example.com/health",
        "example.com/health",
        "/health//x",
    ] {
        let res = app
            .start_load_test(
                &admin.token,
                json!({"scenario": [{"method": "GET", "path": path}], "concurrency": 1, "durationSeconds": 1}),
            )
            .await;
        let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(
            body["errors"][0]["field"], "scenario[0].path",
            "{path}: {body}"
        );
    }
    // Over LOADTEST_MAX_CONCURRENCY, and a Host header.
    let res = app
        .start_load_test(
            &admin.token,
            json!({"scenario": [{"method": "GET", "path": "/health", "headers": {"Host": "example.com"}}],
                   "concurrency": 5, "durationSeconds": 1}),
        )
        .await;
    let body = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = error_fields(&body);
    assert!(
        fields.contains(&"concurrency") && fields.contains(&"scenario[0].headers"),
        "{body}"
    );
    // Nothing was queued.
    let status: Value = app.get_json("/api/load-test/status", &admin.token).await;
    assert!(status["recent"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn load_test_routes_need_an_admin() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let body = json!({"scenario": [{"method": "GET", "path": "/health"}], "concurrency": 1, "durationSeconds": 1});
    for (method, path) in [
        (reqwest::Method::POST, "/api/load-test/start"),
        (reqwest::Method::GET, "/api/load-test/status"),
        (reqwest::Method::GET, "/api/load-test/results/some-id"),
    ] {
        let b = (method == reqwest::Method::POST).then(|| body.clone());
        app.assert_admin_only(method, path, &user.token, b).await;
    }
}

#[tokio::test]
async fn a_second_concurrent_test_is_refused_and_cancelling_frees_the_slot() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let long = json!({"scenario": [{"method": "GET", "path": "/health"}], "concurrency": 1, "durationSeconds": 30});
    let res = app.start_load_test(&admin.token, long.clone()).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();

    let res = app.start_load_test(&admin.token, long.clone()).await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;

    // Live progress while it runs.
    let status = wait_until("live progress of the running test", async || {
        let status: Value = app.get_json("/api/load-test/status", &admin.token).await;
        let running = &status["running"];
        if running["status"] == "running" && running["requests"].as_u64() > Some(0) {
            Ok(status)
        } else {
            Err(status)
        }
    })
    .await;
    assert_eq!(status["running"]["id"], id.as_str());

    let res = app
        .post(
            &format!("/api/jobs/{id}/cancel"),
            Some(&admin.token),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let r = app.load_test_result(&admin.token, &id).await;
    assert_eq!(r["status"], "cancelled", "{r}");
    assert!(u(&r["totals"]["requests"]) > 0);
    assert!(
        f(&r["durationSeconds"]) < 20.0,
        "the cancel did not stop it"
    );

    // The slot is free again.
    let res = app
        .start_load_test(
            &admin.token,
            json!({"scenario": [{"method": "GET", "path": "/health"}], "concurrency": 1, "requests": 5}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id2 = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.load_test_result(&admin.token, &id2).await;
    assert_eq!(u(&r["totals"]["requests"]), 5);
}

#[tokio::test]
async fn the_openapi_document_lists_the_load_test_and_maintenance_routes() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json", None).await.json().await.unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/api/load-test/start", "post"),
        ("/api/load-test/status", "get"),
        ("/api/load-test/results/{testId}", "get"),
        ("/api/performance/optimize", "get"),
        ("/api/performance/optimize", "post"),
        ("/api/maintenance/backups", "get"),
        ("/api/maintenance/backups", "post"),
    ] {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert!(op["security"].is_array(), "{method} {path} has no security");
        assert!(
            op["responses"]["403"].is_object(),
            "{method} {path} has no 403"
        );
    }
}
