//! The job queue: ordering, retries, cancellation, idempotency, recovery,
//! ownership.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use hs_platform::jobs::{Job, JobError, NewJob, Registry};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::helpers::{TestApp, TestUser, assert_problem, spawn_app_with_jobs, wait_until};

/// Registers `kind` as a job that waits for a permit of `gate` before it
/// answers `result` (and fails once the gate is closed).
fn register_gated(r: &mut Registry, kind: &str, gate: &Arc<Semaphore>, result: Value) {
    let gate = gate.clone();
    r.register(kind, move |_ctx| {
        let (gate, result) = (gate.clone(), result.clone());
        async move {
            let _p = gate
                .acquire()
                .await
                .map_err(|e| JobError::fail("closed", e.to_string()))?;
            Ok(result)
        }
    });
}

/// Registers `kind` as a job that finishes only when it gets a permit of
/// `gate`, which it keeps: each permit added lets exactly one job finish.
pub(crate) fn register_held(r: &mut Registry, kind: &str, gate: &Arc<Semaphore>) {
    let gate = gate.clone();
    r.register(kind, move |_ctx| {
        let gate = gate.clone();
        async move {
            gate.acquire()
                .await
                .map_err(|e| JobError::fail("closed", e.to_string()))?
                .forget();
            Ok(Value::Null)
        }
    });
}

/// Registers `kind` as a job that appends its payload's `field` to `order`.
pub(crate) fn register_recorder(
    r: &mut Registry,
    kind: &str,
    field: &'static str,
    order: &Arc<Mutex<Vec<String>>>,
) {
    let order = order.clone();
    r.register(kind, move |ctx| {
        let order = order.clone();
        async move {
            order
                .lock()
                .unwrap()
                .push(ctx.payload[field].as_str().unwrap().to_string());
            Ok(Value::Null)
        }
    });
}

impl TestApp {
    /// Enqueues a job of `kind` with an empty payload, owned by `owner`.
    async fn enqueue_empty(&self, kind: &str, owner: &TestUser) -> Job {
        self.state
            .jobs
            .enqueue(NewJob::new(kind, json!({})).owner(&owner.user_id()))
            .await
            .unwrap()
    }

    /// A `test.record` job (see `register_recorder`) named `name`.
    async fn enqueue_recorded(&self, owner: &TestUser, name: &str, priority: i64) -> Job {
        self.state
            .jobs
            .enqueue(
                NewJob::new("test.record", json!({"name": name}))
                    .owner(&owner.user_id())
                    .priority(priority),
            )
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn higher_priority_jobs_run_first_then_oldest() {
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let gate = Arc::new(Semaphore::new(0));
    let (o, g) = (order.clone(), gate.clone());
    let app = spawn_app_with_jobs(&[("JOB_CONCURRENCY", "1")], move |r| {
        register_gated(r, "test.block", &g, Value::Null);
        register_recorder(r, "test.record", "name", &o);
    })
    .await;
    let user = app.new_user().await;
    let blocker = app.enqueue_empty("test.block", &user).await;
    // Wait until the blocker holds the only slot.
    app.wait_job_status(blocker.id.as_str(), "running").await;
    let mut ids = Vec::new();
    for (name, priority) in [("low-1", 0), ("high", 10), ("low-2", 0), ("mid", 5)] {
        let job = app.enqueue_recorded(&user, name, priority).await;
        ids.push(job.id);
    }
    gate.add_permits(1);
    for id in &ids {
        app.wait_job(id.as_str(), &user.token).await;
    }
    assert_eq!(*order.lock().unwrap(), ["high", "mid", "low-1", "low-2"]);
}

#[tokio::test]
async fn a_failing_job_is_retried_then_failed_with_its_error() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let app = spawn_app_with_jobs(&[("JOB_RETRY_BASE_MS", "10")], move |r| {
        r.register("test.flaky", move |_ctx| {
            let c = c.clone();
            async move {
                *c.lock().unwrap() += 1;
                Err(JobError::retry(
                    "upstream_unavailable",
                    "the upstream is down",
                ))
            }
        });
    })
    .await;
    let user = app.new_user().await;
    let job = app
        .state
        .jobs
        .enqueue(
            NewJob::new("test.flaky", json!({}))
                .owner(&user.user_id())
                .max_attempts(3),
        )
        .await
        .unwrap();
    let done = app.wait_job(job.id.as_str(), &user.token).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["maxAttempts"], 3);
    assert_eq!(done["error"]["code"], "upstream_unavailable");
    assert_eq!(done["error"]["message"], "the upstream is down");
    assert!(done["finishedAt"].is_string());
    assert_eq!(*calls.lock().unwrap(), 3);
}

#[tokio::test]
async fn a_permanent_error_fails_at_once_and_success_after_a_retry_is_kept() {
    let calls = Arc::new(Mutex::new(0));
    let c = calls.clone();
    let app = spawn_app_with_jobs(&[("JOB_RETRY_BASE_MS", "10")], move |r| {
        r.register("test.bad_input", |_ctx| async {
            Err(JobError::fail("invalid_request", "no"))
        });
        r.register("test.second_time", move |ctx| {
            let c = c.clone();
            async move {
                *c.lock().unwrap() += 1;
                ctx.progress(50, "half way").await;
                if ctx.attempt < 2 {
                    Err(JobError::retry("flaky", "first attempt fails"))
                } else {
                    Ok(json!({"answer": 42}))
                }
            }
        });
    })
    .await;
    let user = app.new_user().await;
    let bad = app.enqueue_empty("test.bad_input", &user).await;
    let done = app.wait_job(bad.id.as_str(), &user.token).await;
    assert_eq!(done["status"], "failed");
    assert_eq!(done["attempts"], 1);

    let ok = app.enqueue_empty("test.second_time", &user).await;
    let done = app.wait_job(ok.id.as_str(), &user.token).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["attempts"], 2);
    assert_eq!(done["result"]["answer"], 42);
    assert_eq!(done["progress"]["percent"], 100);
    assert!(done["error"].is_null());
}

#[tokio::test]
async fn cancelling_a_queued_job_stops_it_from_running_and_a_running_one_is_signalled() {
    let ran = Arc::new(Mutex::new(0));
    let r2 = ran.clone();
    let app = spawn_app_with_jobs(&[("JOB_CONCURRENCY", "1")], move |r| {
        r.register("test.until_cancelled", |ctx| async move {
            ctx.cancel.cancelled().await;
            Err(JobError::fail("stopped", "stopped on request"))
        });
        r.register("test.count", move |_ctx| {
            let r2 = r2.clone();
            async move {
                *r2.lock().unwrap() += 1;
                Ok(Value::Null)
            }
        });
    })
    .await;
    let user = app.new_user().await;
    let running = app.enqueue_empty("test.until_cancelled", &user).await;
    let queued = app.enqueue_empty("test.count", &user).await;
    app.wait_job_status(running.id.as_str(), "running").await;
    let res = app
        .post(
            &format!("/api/jobs/{}/cancel", queued.id),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");

    let res = app
        .post(
            &format!("/api/jobs/{}/cancel", running.id),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let done = app.wait_job(running.id.as_str(), &user.token).await;
    assert_eq!(done["status"], "cancelled");
    // The queue is free again and the cancelled job never ran: a job
    // enqueued after it runs (one at a time, oldest first), and only it.
    let later = app.enqueue_empty("test.count", &user).await;
    let done = app.wait_job(&later.id, &user.token).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(*ran.lock().unwrap(), 1);
    let q: Value = app
        .get_job(queued.id.as_str(), &user.token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(q["status"], "cancelled");
    assert_eq!(q["attempts"], 0);
    // A finished job cannot be cancelled.
    let res = app
        .post(
            &format!("/api/jobs/{}/cancel", queued.id),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_eq!(
        res.status(),
        StatusCode::OK,
        "cancelling a cancelled job is idempotent"
    );
}

#[tokio::test]
async fn cancelling_a_finished_job_is_a_409() {
    let app = spawn_app_with_jobs(&[], |_| {}).await;
    let user = app.new_user().await;
    let job = app.enqueue_empty("jobs.noop", &user).await;
    app.wait_job(job.id.as_str(), &user.token).await;
    let res = app
        .post(
            &format!("/api/jobs/{}/cancel", job.id),
            Some(&user.token),
            json!({}),
        )
        .await;
    assert_problem(res, StatusCode::CONFLICT, "conflict").await;
}

#[tokio::test]
async fn the_same_idempotency_key_returns_the_same_job() {
    let app = spawn_app_with_jobs(&[], |_| {}).await;
    let user = app.new_user().await;
    let new = || {
        NewJob::new("jobs.noop", json!({"x": 1}))
            .owner(&user.user_id())
            .idempotency_key(Some("order-17".into()))
    };
    let a = app.state.jobs.enqueue(new()).await.unwrap();
    let b = app.state.jobs.enqueue(new()).await.unwrap();
    assert_eq!(a.id, b.id);
    let other = NewJob::new("jobs.noop", json!({"x": 2}))
        .owner(&user.user_id())
        .idempotency_key(Some("order-17".into()));
    let err = app.state.jobs.enqueue(other).await.unwrap_err();
    assert_eq!(err.code(), "conflict");
    let list: Value = app.get_json("/api/jobs", &user.token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn concurrent_enqueues_with_one_idempotency_key_make_one_job() {
    // Enqueued at the same moment, these land in the same group commit.
    let app = spawn_app_with_jobs(&[], |_| {}).await;
    let user = app.new_user().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let queue = app.state.jobs.clone();
        let owner = user.user_id();
        tasks.push(tokio::spawn(async move {
            // Half share a key and a payload; the others are plain jobs.
            let key = (i % 2 == 0).then(|| "batch-key".to_string());
            queue
                .enqueue(
                    NewJob::new("jobs.noop", json!({"same": true}))
                        .owner(&owner)
                        .idempotency_key(key),
                )
                .await
                .unwrap()
        }));
    }
    let mut keyed = Vec::new();
    let mut plain = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        let job = t.await.unwrap();
        if i % 2 == 0 {
            keyed.push(job.id)
        } else {
            plain.push(job.id)
        }
    }
    keyed.dedup();
    assert_eq!(keyed.len(), 1, "one job for one key");
    plain.sort();
    plain.dedup();
    assert_eq!(plain.len(), 10);
    let list: Value = app.get_json("/api/jobs?limit=100", &user.token).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 11);
}

#[tokio::test]
async fn another_users_job_is_a_404_and_lists_show_only_your_own() {
    let app = spawn_app_with_jobs(&[], |_| {}).await;
    let ann = app.new_user().await;
    let bob = app.new_user().await;
    let admin = app.new_admin().await;
    let job = app.enqueue_empty("jobs.noop", &ann).await;
    app.wait_job(job.id.as_str(), &ann.token).await;
    assert_problem(
        app.get_job(job.id.as_str(), &bob.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let res = app
        .post(
            &format!("/api/jobs/{}/cancel", job.id),
            Some(&bob.token),
            json!({}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    let list: Value = app.get_json("/api/jobs", &bob.token).await;
    assert!(list["items"].as_array().unwrap().is_empty());
    assert_eq!(
        app.get_job(job.id.as_str(), &admin.token).await.status(),
        StatusCode::OK
    );
    let list: Value = app
        .get_json("/api/jobs?status=succeeded&kind=jobs.noop", &admin.token)
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let res = app.get("/api/jobs?status=bogus", Some(&ann.token)).await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        app.get("/api/jobs", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_job_left_running_by_another_process_is_recovered_and_the_stale_attempt_cannot_overwrite_it()
 {
    // Process A claims the job and hangs; process B starts on the same
    // database (as after a crash of A) and re-runs it. A's late completion
    // is refused because its lease is no longer current.
    let gate = Arc::new(Semaphore::new(0));
    let returned = Arc::new(AtomicBool::new(false));
    let (g, done) = (gate.clone(), returned.clone());
    let mut a = spawn_app_with_jobs(&[], move |r| {
        r.register("test.work", move |_ctx| {
            let (g, done) = (g.clone(), done.clone());
            async move {
                let _p = g.acquire().await.unwrap();
                done.store(true, Ordering::SeqCst);
                Ok(json!({"by": "A"}))
            }
        });
    })
    .await;
    let user = a.new_user().await;
    let job = a.enqueue_empty("test.work", &user).await;
    a.wait_job_status(job.id.as_str(), "running").await;
    let settings: Vec<(String, String)> =
        a.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let settings: Vec<(&str, &str)> = settings
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let b = crate::helpers::spawn_app_sharing(&a, &settings, |r| {
        r.register("test.work", |_ctx| async { Ok(json!({"by": "B"})) });
    })
    .await;
    let done = b.wait_job(job.id.as_str(), &user.token).await;
    assert_eq!(done["status"], "succeeded");
    assert_eq!(done["result"]["by"], "B");
    assert_eq!(done["attempts"], 2);
    gate.add_permits(1);
    wait_until("A's stale attempt to return", async || {
        if returned.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err("A still waits at the gate")
        }
    })
    .await;
    // Stopping A waits until its runner has offered that outcome to the
    // database (refused: the lease is B's now).
    a.stop().await;
    let after: Value = b.get_job(&job.id, &user.token).await.json().await.unwrap();
    assert_eq!(
        after["result"]["by"], "B",
        "the stale attempt must not overwrite the result"
    );
}

/// The real binary, started in `dir` on `port` with these settings and no
/// DATA_DIR: it creates and uses `./data` there, as `cargo run` does.
fn start_binary(
    dir: &std::path::Path,
    port: u16,
    settings: &[(&str, String)],
) -> std::process::Child {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hs-platform"));
    cmd.env_clear()
        .current_dir(dir)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOST", "127.0.0.1")
        .env("PORT", port.to_string())
        .env("RATE_LIMIT_PER_MINUTE", "0")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    for (k, v) in settings {
        cmd.env(k, v);
    }
    cmd.spawn().expect("the hs-platform binary starts")
}

/// `GET /api/jobs/{id}` on a service started with `start_binary`.
async fn fetch_job(client: &reqwest::Client, base: &str, id: &str, token: &str) -> Value {
    client
        .get(format!("{base}/api/jobs/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    wait_until("the service to answer /health", async || {
        match client.get(format!("{base}/health")).send().await {
            Ok(res) if res.status() == StatusCode::OK => Ok(()),
            Ok(res) => Err(res.status().to_string()),
            Err(e) => Err(e.to_string()),
        }
    })
    .await
}

#[tokio::test]
async fn a_job_whose_server_process_was_killed_mid_run_completes_after_restart() {
    use crate::fake_claude::{FakeClaude, Reply};
    let fake = FakeClaude::start().await;
    fake.push(Reply::Hang);
    fake.push(Reply::answer("answered after the restart"));
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let settings: Vec<(&str, String)> = fake.env().into_iter().collect();
    let client = reqwest::Client::new();

    let mut first = start_binary(dir.path(), port, &settings);
    wait_healthy(&client, &base).await;
    let email = crate::helpers::unique_email("crash");
    let res = client
        .post(format!("{base}/api/users"))
        .json(&json!({"email": email, "password": "crash test password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let login: Value = client
        .post(format!("{base}/api/sessions"))
        .json(&json!({"email": email, "password": "crash test password"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["token"].as_str().unwrap().to_string();
    let res = client
        .post(format!("{base}/api/claude-ai/chat"))
        .bearer_auth(&token)
        .json(&json!({"message": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let job_id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Wait until the job is running and its upstream call is in flight.
    wait_until(
        "the job to run with its upstream call in flight",
        async || {
            let job = fetch_job(&client, &base, &job_id, &token).await;
            match (job["status"].as_str(), fake.message_calls()) {
                (Some("running"), 1) => Ok(()),
                (status, calls) => Err(format!("{status:?}, {calls} upstream calls")),
            }
        },
    )
    .await;
    first.kill().expect("kill -9 the service");
    first.wait().unwrap();

    let mut second = start_binary(dir.path(), port, &settings);
    wait_healthy(&client, &base).await;
    let job = wait_until("the job to finish after the restart", async || {
        let job = fetch_job(&client, &base, &job_id, &token).await;
        match job["status"].as_str() {
            Some("succeeded" | "failed") => Ok(job),
            _ => Err(job),
        }
    })
    .await;
    second.kill().unwrap();
    second.wait().unwrap();
    assert!(dir.path().join("data/hs-platform.db").is_file());
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 2);
    assert_eq!(job["result"]["text"], "answered after the restart");
    assert_eq!(fake.message_calls(), 2);
}

const CSV: &str = "/api/files/generate/csv";

fn small_csv() -> Value {
    json!({"columns": [{"key": "a"}], "rows": [{"a": 1}]})
}

#[tokio::test]
async fn one_user_cannot_queue_more_unfinished_jobs_than_the_cap_even_in_parallel() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    // CSV jobs that do not finish until the test lets them, one per permit.
    let app = spawn_app_with_jobs(&[("JOB_MAX_PENDING_PER_USER", "3")], move |r| {
        register_held(r, "files.csv", &g);
    })
    .await;
    let (attacker, other) = (app.new_user().await, app.new_user().await);
    let answers = futures::future::join_all(
        (0..6).map(|_| app.post(CSV, Some(&attacker.token), small_csv())),
    )
    .await;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for res in answers {
        match res.status() {
            StatusCode::ACCEPTED => accepted.push(res.json::<Value>().await.unwrap()),
            StatusCode::TOO_MANY_REQUESTS => {
                let after: u64 = res.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(after >= 1, "{after}");
                assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_jobs").await;
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((accepted.len(), refused), (3, 3));
    let res = app.post(CSV, Some(&attacker.token), small_csv()).await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_jobs").await;
    // Another account is not affected.
    let res = app.post(CSV, Some(&other.token), small_csv()).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    // Once one of the attacker's jobs has finished, one more is accepted.
    gate.add_permits(1);
    wait_until("one of the attacker's jobs to finish", async || {
        for job in &accepted {
            let id = job["id"].as_str().unwrap();
            let job: Value = app.get_job(id, &attacker.token).await.json().await.unwrap();
            if job["status"] == "succeeded" {
                return Ok(());
            }
        }
        Err("none succeeded yet")
    })
    .await;
    let res = app.post(CSV, Some(&attacker.token), small_csv()).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let res = app.post(CSV, Some(&attacker.token), small_csv()).await;
    assert_problem(res, StatusCode::TOO_MANY_REQUESTS, "too_many_jobs").await;
    gate.close();
}

/// How long a job waited in the queue: its startedAt minus its createdAt.
fn queued_for(job: &Value) -> chrono::Duration {
    let at = |f: &str| {
        chrono::DateTime::parse_from_rfc3339(
            job[f].as_str().unwrap_or_else(|| panic!("{f}: {job}")),
        )
        .unwrap()
    };
    at("startedAt") - at("createdAt")
}

#[tokio::test]
async fn one_accounts_slow_jobs_do_not_delay_another_accounts_csv() {
    let gate = Arc::new(Semaphore::new(0));
    let g = gate.clone();
    // A slow kind with a lane of 2 (as screenshots have SCREENSHOT_CONCURRENCY).
    let app = spawn_app_with_jobs(&[("JOB_CONCURRENCY", "8")], move |r| {
        register_gated(r, "test.slow", &g, Value::Null);
        r.lane("test.slow", 2);
    })
    .await;
    let (attacker, other) = (app.new_user().await, app.new_user().await);
    let mut slow = Vec::new();
    for _ in 0..16 {
        slow.push(app.enqueue_empty("test.slow", &attacker).await);
    }
    app.wait_job_status(&slow[1].id, "running").await;
    let running = app
        .state
        .jobs
        .list(Some(&attacker.user_id()), Some("running"), None, None, 100)
        .await
        .unwrap();
    assert_eq!(running.len(), 2, "the lane holds at most 2");

    let res = app.post(CSV, Some(&other.token), small_csv()).await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let id = res.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let csv = app.wait_job(&id, &other.token).await;
    assert_eq!(csv["status"], "succeeded", "{csv}");
    let waited = queued_for(&csv);
    assert!(
        waited < chrono::Duration::seconds(2),
        "the CSV waited {waited}"
    );
    // The slow jobs still all run, two at a time.
    gate.add_permits(16);
    for job in &slow {
        assert_eq!(
            app.wait_job(&job.id, &attacker.token).await["status"],
            "succeeded"
        );
    }
}

#[tokio::test]
async fn the_user_with_fewer_running_jobs_is_served_first_priority_orders_a_users_own() {
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let gate = Arc::new(Semaphore::new(0));
    let (o, g) = (order.clone(), gate.clone());
    let app = spawn_app_with_jobs(&[("JOB_CONCURRENCY", "2")], move |r| {
        register_held(r, "test.block", &g);
        register_recorder(r, "test.record", "name", &o);
    })
    .await;
    let (greedy, polite) = (app.new_user().await, app.new_user().await);
    let blockers = [
        app.enqueue_empty("test.block", &greedy).await,
        app.enqueue_empty("test.block", &greedy).await,
    ];
    for b in &blockers {
        app.wait_job_status(&b.id, "running").await;
    }
    let mut ids = Vec::new();
    for (user, name, priority) in [
        (&greedy, "g-1", 0),
        (&greedy, "g-2", 0),
        (&greedy, "g-high", 10),
        (&polite, "p-1", 0),
        (&polite, "p-2", 0),
    ] {
        let job = app.enqueue_recorded(user, name, priority).await;
        ids.push((job.id, user.token.clone()));
    }
    // One slot frees while greedy still runs a blocker: polite, with
    // nothing running, goes first; greedy's own jobs by priority.
    gate.add_permits(1);
    for (id, token) in &ids {
        app.wait_job(id, token).await;
    }
    assert_eq!(
        *order.lock().unwrap(),
        ["p-1", "p-2", "g-high", "g-1", "g-2"]
    );
    gate.close();
}
