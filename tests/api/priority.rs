//! `priority` on job-creating requests: the caller's range (users -10..=10,
//! admins -100..=100), and how it orders a user's own jobs while fairness
//! decides between users.

use std::sync::{Arc, Mutex};

use hs_platform::jobs::NewJob;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::fake_claude::{FakeClaude, Reply};
use crate::helpers::{
    TestApp, TestUser, assert_problem, error_fields, spawn_app_with, spawn_app_with_jobs,
};
use crate::jobs::{register_held, register_recorder};

const CSV: &str = "/api/files/generate/csv";
const CHAT: &str = "/api/claude-ai/chat";

/// A small CSV request named `name` (its `fileName`) with `priority`.
fn csv(name: &str, priority: i64) -> Value {
    json!({"columns": [{"key": "a"}], "rows": [{"a": 1}], "fileName": name, "priority": priority})
}

impl TestApp {
    /// Posts `body` and expects a queued job with this `priority`.
    async fn post_queued(&self, path: &str, who: &TestUser, body: Value, priority: i64) -> Value {
        let res = self.post(path, Some(&who.token), body).await;
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let job: Value = res.json().await.unwrap();
        assert_eq!(job["priority"], priority, "{job}");
        job
    }

    /// Posts `body` and expects a 422 whose field errors are `fields`.
    async fn post_invalid(&self, path: &str, who: &TestUser, body: Value, fields: &[&str]) {
        let res = self.post(path, Some(&who.token), body).await;
        let problem =
            assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
        assert_eq!(error_fields(&problem), fields, "{problem}");
    }
}

#[tokio::test]
async fn a_priority_outside_the_callers_range_is_refused_naming_priority() {
    let fake = FakeClaude::start().await;
    for _ in 0..3 {
        fake.push(Reply::answer("ok"));
    }
    let env = fake.env();
    let settings: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&settings).await;
    let (user, admin) = (app.new_user().await, app.new_admin().await);

    for priority in [50, 11, -11] {
        app.post_invalid(CSV, &user, csv("x", priority), &["priority"])
            .await;
    }
    app.post_invalid(CSV, &admin, csv("x", 101), &["priority"])
        .await;
    // Reported with the request's other field errors, not instead of them.
    let bad = json!({"columns": [], "rows": [], "priority": 50});
    let res = app.post(CSV, Some(&user.token), bad).await;
    let problem = assert_problem(res, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    let fields = error_fields(&problem);
    assert!(
        fields.len() >= 2 && fields.last() == Some(&"priority"),
        "{problem}"
    );
    let doc =
        json!({"title": "t", "sections": [{"type": "paragraph", "text": "x"}], "priority": 11});
    app.post_invalid("/api/files/generate/pdf", &user, doc, &["priority"])
        .await;
    let chat = json!({"message": "hi", "priority": 50});
    app.post_invalid(CHAT, &user, chat, &["priority"]).await;

    // In range: queued with that priority; no priority is 0.
    app.post_queued(CSV, &user, csv("x", 10), 10).await;
    app.post_queued(CSV, &user, csv("x", -10), -10).await;
    let plain = json!({"columns": [{"key": "a"}], "rows": [{"a": 1}]});
    app.post_queued(CSV, &user, plain, 0).await;
    app.post_queued(CSV, &admin, csv("x", 50), 50).await;
    app.post_queued(CSV, &admin, csv("x", -100), -100).await;
    let chat = json!({"message": "hi", "priority": 7});
    app.post_queued(CHAT, &user, chat, 7).await;
    let chat = json!({"message": "hi", "priority": 50});
    app.post_queued(CHAT, &admin, chat, 50).await;
}

#[tokio::test]
async fn priority_orders_a_users_own_jobs_and_does_not_starve_another_user() {
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let gate = Arc::new(Semaphore::new(0));
    let (o, g) = (order.clone(), gate.clone());
    // One slot; CSV jobs record their `fileName` in the order they run.
    let app = spawn_app_with_jobs(&[("JOB_CONCURRENCY", "1")], move |r| {
        register_held(r, "test.block", &g);
        register_recorder(r, "files.csv", "fileName", &o);
    })
    .await;
    let (eager, other, third) = (
        app.new_user().await,
        app.new_user().await,
        app.new_user().await,
    );
    let blocker = app
        .state
        .jobs
        .enqueue(NewJob::new("test.block", json!({})).owner(&third.user_id()))
        .await
        .unwrap();
    app.wait_job_status(&blocker.id, "running").await;
    let mut queued = Vec::new();
    for (who, name, priority) in [
        (&eager, "low", 0),
        (&other, "other", 0),
        (&eager, "high-1", 10),
        (&eager, "high-2", 10),
    ] {
        let job = app
            .post_queued(CSV, who, csv(name, priority), priority)
            .await;
        queued.push((job["id"].as_str().unwrap().to_string(), who.token.clone()));
    }
    gate.add_permits(1);
    for (id, token) in &queued {
        assert_eq!(app.wait_job(id, token).await["status"], "succeeded");
    }
    // The eager user's high-priority jobs pass their own earlier one, but
    // not the other user's job queued before them: between users, priority
    // does not count (with one slot, nobody has a job running at a claim, so
    // the older of the two users' next jobs goes first).
    assert_eq!(*order.lock().unwrap(), ["other", "high-1", "high-2", "low"]);
}
