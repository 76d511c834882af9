//! Load tests as N virtual users: distinct accounts and sessions through the
//! real service, per-user rate limits unless exempted, and nothing left of
//! them afterwards (end, cancel, crash).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, assert_problem, error_fields, spawn_app, spawn_app_with, wait_until,
};

impl TestApp {
    /// Starts a load test and waits for its job to finish in the same
    /// request (`Prefer: wait`): one call, for tests where the admin is rate
    /// limited too. Returns the result.
    async fn run_load_test_waiting(&self, token: &str, body: Value) -> Value {
        let res = self
            .client
            .post(self.url("/api/load-test/start"))
            .bearer_auth(token)
            .header("prefer", "wait=25")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::OK,
            "{}",
            res.text().await.unwrap()
        );
        let job: Value = res.json().await.unwrap();
        let id = job["id"].as_str().unwrap();
        self.get_json(&format!("/api/load-test/results/{id}"), token)
            .await
    }

    /// How many rows `sql` (a `SELECT count(*)`) counts.
    pub fn count(&self, sql: &str) -> u64 {
        self.sqlite3(sql).parse().unwrap()
    }

    /// Test accounts, their sessions and their activity rows.
    pub fn virtual_user_rows(&self) -> (u64, u64, u64) {
        let accounts = "SELECT id FROM users WHERE email LIKE 'loadtest-%@loadtest.invalid'";
        (
            self.count(&format!("SELECT count(*) FROM ({accounts})")),
            self.count(&format!(
                "SELECT count(*) FROM sessions WHERE user_id IN ({accounts})"
            )),
            self.count(&format!(
                "SELECT count(*) FROM user_activity WHERE user_id IN ({accounts})"
            )),
        )
    }
}

fn codes(r: &Value) -> &serde_json::Map<String, Value> {
    r["statusCodes"].as_object().unwrap()
}

fn code(r: &Value, c: &str) -> u64 {
    codes(r).get(c).and_then(Value::as_u64).unwrap_or(0)
}

#[tokio::test]
async fn three_virtual_users_reach_the_service_as_three_users_and_leave_nothing_behind() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let id = app
        .start_load_test_id(
            &admin.token,
            json!({
                "scenario": [
                    {"method": "GET", "path": "/api/users/{userId}", "weight": 20},
                    {"method": "POST", "path": "/api/files/generate/csv", "weight": 1,
                     "body": {"columns": [{"key": "a"}], "rows": [{"a": 1}], "fileName": "vu.csv"}}
                ],
                "virtualUsers": 3,
                "durationSeconds": 2
            }),
        )
        .await;
    // While it runs: three accounts with a session each.
    wait_until("the virtual users to exist", async || {
        match app.virtual_user_rows() {
            (3, 3, _) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    let r = app.load_test_result(&admin.token, &id).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["virtualUsers"], 3);
    assert_eq!(r["concurrency"], 3);
    assert_eq!(r["exemptFromRateLimits"], false);
    // Each user read its own profile (another's is 404, no session 401),
    // and made CSV jobs of its own.
    assert!(code(&r, "200") > 0 && code(&r, "202") > 0, "{r}");
    assert_eq!(code(&r, "401") + code(&r, "404"), 0, "{r}");

    // The request log saw three distinct users on the profile route, none
    // of them the admin, every request tagged as load-test traffic.
    let total = r["totals"]["requests"].as_u64().unwrap();
    wait_until("the test's requests in the request log", async || {
        let n = app.count(&format!(
            "SELECT count(*) FROM request_log WHERE loadtest_id = '{id}'"
        ));
        if n == total { Ok(()) } else { Err(n) }
    })
    .await;
    let users = app.sqlite3(&format!(
        "SELECT group_concat(user_id) FROM (SELECT DISTINCT user_id FROM request_log
         WHERE loadtest_id = '{id}' AND route = '/api/users/{{userId}}' AND status = 200)"
    ));
    let users: Vec<&str> = users.split(',').collect();
    assert_eq!(users.len(), 3, "{users:?}");
    assert!(!users.contains(&admin.id.as_str()));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM request_log WHERE loadtest_id = '{id}' AND source != 'loadtest'"
        )),
        0
    );

    // Afterwards: no account, session, activity row, job or file of theirs.
    assert_eq!(app.virtual_user_rows(), (0, 0, 0));
    let ids = users
        .iter()
        .map(|u| format!("'{u}'"))
        .collect::<Vec<_>>()
        .join(",");
    for table in ["users", "sessions", "user_activity", "jobs", "files"] {
        let col = if table == "users" { "id" } else { "user_id" };
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM {table} WHERE {col} IN ({ids})"
            )),
            0,
            "{table}"
        );
    }
    assert_eq!(
        app.count("SELECT count(*) FROM jobs WHERE kind != 'loadtest.run'"),
        0
    );
}

#[tokio::test]
async fn virtual_users_meet_the_per_user_rate_limit_unless_the_test_is_exempt() {
    let app = spawn_app_with(&[("RATE_LIMIT_PER_MINUTE", "100")]).await;
    let admin = app.new_admin().await;
    let body = |exempt: Option<bool>| {
        let mut b = json!({
            "scenario": [{"method": "GET", "path": "/api/users/{userId}"}],
            "virtualUsers": 2,
            "requests": 400,
            "durationSeconds": 20
        });
        if let Some(e) = exempt {
            b["exemptFromRateLimits"] = json!(e);
        }
        b
    };
    // Not exempt (the default with virtual users): each user gets its own
    // allowance (a burst of 100), then 429s, shown per status.
    let r = app.run_load_test_waiting(&admin.token, body(None)).await;
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(r["exemptFromRateLimits"], false);
    assert_eq!(r["totals"]["requests"], 400);
    let (ok, limited) = (code(&r, "200"), code(&r, "429"));
    assert_eq!(ok + limited, 400, "{r}");
    assert!(limited > 0, "{r}");
    // Two allowances, not one shared: at least 2 x 100 answered.
    assert!((200..=230).contains(&ok), "{ok} answered");

    let r = app
        .run_load_test_waiting(&admin.token, body(Some(true)))
        .await;
    assert_eq!(r["exemptFromRateLimits"], true);
    assert_eq!(code(&r, "200"), 400, "{r}");
    assert_eq!(code(&r, "429"), 0, "{r}");
    assert_eq!(app.virtual_user_rows(), (0, 0, 0));
}

#[tokio::test]
async fn a_cancelled_virtual_user_test_removes_its_accounts() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let id = app
        .start_load_test_id(
            &admin.token,
            json!({"scenario": [{"method": "GET", "path": "/api/users/{userId}"}],
                   "virtualUsers": 3, "durationSeconds": 30}),
        )
        .await;
    wait_until("the test to send requests", async || {
        let status: Value = app.get_json("/api/load-test/status", &admin.token).await;
        if status["running"]["requests"].as_u64() > Some(0) {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;
    assert_eq!(app.virtual_user_rows().0, 3);
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
    assert_eq!(app.virtual_user_rows(), (0, 0, 0));
}

#[tokio::test]
async fn virtual_users_left_by_a_crash_are_removed_at_start_up() {
    let app = spawn_app().await;
    // What a process killed mid-test leaves: an account, its session and
    // activity (and an ordinary account that must stay).
    let user = app.new_user().await;
    app.sqlite3(
        "BEGIN IMMEDIATE;
         INSERT INTO users (id, email, password_hash, role) VALUES
           ('vu0', 'loadtest-0192f0c4-7a1b-7c3d-8e9f-a0b1c2d3e4f5-0@loadtest.invalid', 'x', 'user');
         INSERT INTO sessions (id, user_id, token_hash, expires_at) VALUES
           ('s0', 'vu0', 'h0', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 hour'));
         INSERT INTO user_activity (day, user_id, requests) VALUES (date('now'), 'vu0', 5);
         COMMIT;",
    );
    assert_eq!(app.virtual_user_rows(), (1, 1, 1));
    let app = app.restart().await;
    wait_until(
        "the leftover virtual user to be removed",
        async || match app.virtual_user_rows() {
            (0, 0, 0) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
    assert_eq!(
        app.count("SELECT count(*) FROM user_activity WHERE user_id = 'vu0'"),
        0
    );
    let res = app.get_user(&user.id, &user.token).await;
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn virtual_users_out_of_bounds_are_a_422() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    for n in [json!(0), json!(51), json!(-1)] {
        let res = app
            .start_load_test(
                &admin.token,
                json!({"scenario": [{"method": "GET", "path": "/health"}],
                       "virtualUsers": n, "durationSeconds": 1}),
            )
            .await;
        let status = res.status();
        let body: Value = res.json().await.unwrap();
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{n}: {body}");
        if n != json!(-1) {
            assert_eq!(error_fields(&body), ["virtualUsers"], "{n}: {body}");
        }
    }
    let res = app
        .start_load_test(
            &admin.token,
            json!({"scenario": [{"method": "GET", "path": "/health"}],
                   "virtualUsers": 2, "exemptFromRateLimits": "yes", "durationSeconds": 1}),
        )
        .await;
    assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    // Nothing was queued.
    let status: Value = app.get_json("/api/load-test/status", &admin.token).await;
    assert!(status["recent"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn nobody_can_sign_up_or_move_into_the_load_testers_email_domain() {
    // Its accounts are deleted with their test (and at start-up): an account
    // there would be removed by the next start.
    let app = spawn_app().await;
    let res = app
        .sign_up(json!({"email": "loadtest-x-1@LoadTest.invalid", "password": "a password 123"}))
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_fields(&body), ["email"], "{body}");

    let user = app.new_user().await;
    let res = app
        .update_user(
            &user.id,
            &user.token,
            json!({"email": "me@loadtest.invalid"}),
        )
        .await;
    let status = res.status();
    let body: Value = res.json().await.unwrap();
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(error_fields(&body), ["email"], "{body}");
}
