//! `spawn_app()` and typed helpers: one method per endpoint, so that tests
//! read as scenarios.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use hs_platform::app::Application;
use hs_platform::config::Config;
use hs_platform::files::resolver::Resolver;
use hs_platform::jobs::Registry;
use hs_platform::state::AppState;
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub addr: String,
    pub client: reqwest::Client,
    pub dir: TempDir,
    pub env: HashMap<String, String>,
    /// The running service's state, for tests that drive the job queue
    /// directly (enqueueing kinds no endpoint offers).
    pub state: AppState,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub token: String,
    pub session_id: String,
}

impl TestUser {
    /// The id as the service's type, for calls into the library.
    pub fn user_id(&self) -> hs_platform::ids::UserId {
        self.id.as_str().into()
    }
}

/// Settings every test app gets unless the test overrides them.
fn base_env(dir: &TempDir) -> HashMap<String, String> {
    let mut env = HashMap::new();
    env.insert("DATA_DIR".into(), dir.path().display().to_string());
    env.insert("HOST".into(), "127.0.0.1".into());
    env.insert("PORT".into(), "0".into());
    env.insert("RATE_LIMIT_PER_MINUTE".into(), "0".into());
    env.insert("AI_RATE_LIMIT_PER_MINUTE".into(), "0".into());
    env.insert("SHUTDOWN_GRACE_SECONDS".into(), "5".into());
    env.insert("SQLITE_SYNCHRONOUS".into(), "NORMAL".into());
    // Tests do not depend on how full the build machine's disk is; the
    // floor's own tests set it.
    env.insert("STORAGE_MIN_FREE_BYTES".into(), "1048576".into());
    env
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

pub fn unique_email(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{n}-{}@example.com", uuid::Uuid::new_v4().simple())
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the real service with extra settings (`("SESSION_TTL_SECONDS", "2")`).
pub async fn spawn_app_with(settings: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = base_env(&dir);
    for (k, v) in settings {
        env.insert((*k).to_string(), (*v).to_string());
    }
    start(dir, env).await
}

/// Starts the real service on a data directory the test prepared (a
/// database file left by an earlier version, say).
pub async fn spawn_app_in(dir: TempDir) -> TestApp {
    spawn_app_in_with(dir, &[]).await
}

/// [`spawn_app_in`] with extra settings.
pub async fn spawn_app_in_with(dir: TempDir, settings: &[(&str, &str)]) -> TestApp {
    let mut env = base_env(&dir);
    for (k, v) in settings {
        env.insert((*k).to_string(), (*v).to_string());
    }
    start(dir, env).await
}

/// Starts the real service with extra job handlers registered (the runner
/// under test control).
pub async fn spawn_app_with_jobs(
    settings: &[(&str, &str)],
    jobs: impl FnOnce(&mut Registry),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = base_env(&dir);
    for (k, v) in settings {
        env.insert((*k).to_string(), (*v).to_string());
    }
    start_with(dir, env, Resolver::system(), jobs).await
}

/// Starts the real service whose screenshot check and egress proxy ask
/// `resolver` (a stand-in DNS) instead of the system's.
pub async fn spawn_app_with_resolver(settings: &[(&str, &str)], resolver: Resolver) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = base_env(&dir);
    for (k, v) in settings {
        env.insert((*k).to_string(), (*v).to_string());
    }
    start_with(dir, env, resolver, |_| {}).await
}

/// A second service on the same data directory as `other` (as if a new
/// process started after `other` crashed).
pub async fn spawn_app_sharing(
    other: &TestApp,
    settings: &[(&str, &str)],
    jobs: impl FnOnce(&mut Registry),
) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env: HashMap<String, String> = settings
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert(
        "DATABASE_URL".into(),
        format!("sqlite://{}", other.db_path().display()),
    );
    env.insert("DATA_DIR".into(), dir.path().display().to_string());
    start_with(dir, env, Resolver::system(), jobs).await
}

async fn start(dir: TempDir, env: HashMap<String, String>) -> TestApp {
    start_with(dir, env, Resolver::system(), |_| {}).await
}

async fn start_with(
    dir: TempDir,
    env: HashMap<String, String>,
    resolver: Resolver,
    jobs: impl FnOnce(&mut Registry),
) -> TestApp {
    hs_platform::init_crypto();
    let config = Config::from_map(&env).expect("valid test configuration");
    let app = Application::build_with(config, resolver, jobs)
        .await
        .expect("app builds");
    let state = app.state().clone();
    let addr = format!("http://{}", app.addr());
    let shutdown = app.shutdown_token();
    let handle = tokio::spawn(app.run());
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestApp {
        addr,
        client,
        dir,
        env,
        state,
        shutdown,
        handle: Some(handle),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn db_path(&self) -> PathBuf {
        self.dir.path().join("hs-platform.db")
    }

    /// Stops the service gracefully and waits until it has closed.
    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(h) = self.handle.take() {
            h.await
                .expect("server task")
                .expect("server stopped cleanly");
        }
    }

    /// Stops the service and starts it again on the same data directory.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let env = self.env.clone();
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        start(dir, env).await
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut req = self.client.request(method, self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent")
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Response {
        self.request(Method::DELETE, path, token, None).await
    }

    // --- users and sessions -------------------------------------------------

    pub async fn sign_up(&self, body: Value) -> Response {
        self.post("/api/users", None, body).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post(
            "/api/sessions",
            None,
            json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn get_user(&self, id: &str, token: &str) -> Response {
        self.get(&format!("/api/users/{id}"), Some(token)).await
    }

    pub async fn update_user(&self, id: &str, token: &str, body: Value) -> Response {
        self.put(&format!("/api/users/{id}"), Some(token), body)
            .await
    }

    /// `id`: the text of a job id, or a `JobId`.
    pub async fn get_job(&self, id: &(impl AsRef<str> + ?Sized), token: &str) -> Response {
        let id = id.as_ref();
        self.get(&format!("/api/jobs/{id}"), Some(token)).await
    }

    /// Waits until a job is finished; returns its body.
    pub async fn wait_job(&self, id: &(impl AsRef<str> + ?Sized), token: &str) -> Value {
        let id = id.as_ref();
        wait_until(&format!("job {id} to finish"), async || {
            let res = self.get_job(id, token).await;
            assert_eq!(res.status(), StatusCode::OK);
            let job: Value = res.json().await.unwrap();
            match job["status"].as_str() {
                Some("succeeded" | "failed" | "cancelled") => Ok(job),
                _ => Err(job),
            }
        })
        .await
    }

    /// Waits until the queue reports job `id` in `status`.
    pub async fn wait_job_status(&self, id: &(impl AsRef<str> + ?Sized), status: &str) {
        let id = hs_platform::ids::JobId::from(id.as_ref());
        wait_until(&format!("job {id} to be {status}"), async || {
            let job = self.state.jobs.get(&id).await.unwrap().unwrap();
            let now = job.status.as_str();
            if now == status {
                Ok(())
            } else {
                Err(now.to_string())
            }
        })
        .await
    }

    /// `GET path` with a token, its JSON body (whatever the status).
    pub async fn get_json(&self, path: &str, token: &str) -> Value {
        self.get(path, Some(token)).await.json().await.unwrap()
    }

    /// Asserts that `method path` answers 401 to the anonymous and 403 to
    /// `user_token` (a signed-in non-admin).
    pub async fn assert_admin_only(
        &self,
        method: Method,
        path: &str,
        user_token: &str,
        body: Option<Value>,
    ) {
        let res = self.request(method.clone(), path, None, body.clone()).await;
        assert_problem(res, StatusCode::UNAUTHORIZED, "unauthorized").await;
        let res = self.request(method, path, Some(user_token), body).await;
        assert_problem(res, StatusCode::FORBIDDEN, "forbidden").await;
    }

    pub async fn logout(&self, session_id: &str, token: &str) -> Response {
        self.delete(&format!("/api/sessions/{session_id}"), Some(token))
            .await
    }

    /// Signs up a new user and logs in.
    pub async fn new_user(&self) -> TestUser {
        let email = unique_email("user");
        let password = "correct horse battery".to_string();
        let res = self
            .sign_up(json!({"email": email, "password": password, "name": "Test User"}))
            .await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        let user: Value = res.json().await.unwrap();
        self.login_as(user["id"].as_str().unwrap(), &email, &password)
            .await
    }

    pub async fn login_as(&self, id: &str, email: &str, password: &str) -> TestUser {
        let res = self.login(email, password).await;
        assert_eq!(
            res.status(),
            StatusCode::CREATED,
            "{}",
            res.text().await.unwrap()
        );
        let body: Value = res.json().await.unwrap();
        TestUser {
            id: id.to_string(),
            email: email.to_string(),
            password: password.to_string(),
            token: body["token"].as_str().unwrap().to_string(),
            session_id: body["session"]["id"].as_str().unwrap().to_string(),
        }
    }

    /// An admin: created through the same code path as `create-admin`.
    pub async fn new_admin(&self) -> TestUser {
        let email = unique_email("admin");
        let password = "admin password 123".to_string();
        let config = Config::from_map(&self.env).unwrap();
        let db = hs_platform::db::Db::open(&config).await.unwrap();
        let state =
            hs_platform::state::AppState::build(config, db.clone(), CancellationToken::new())
                .await
                .unwrap();
        let id = state
            .users
            .ensure_admin(&email, password.clone().into(), false)
            .await
            .unwrap();
        db.close().await;
        self.login_as(id.as_str(), &email, &password).await
    }
}

/// Asserts a problem+json answer with this status and code; returns the body.
pub async fn assert_problem(res: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(res.status(), status, "unexpected status");
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type was {ct:?}"
    );
    assert!(res.headers().contains_key("x-request-id"));
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status.as_u16());
    assert_eq!(body["code"], code, "body: {body}");
    assert!(body["title"].is_string() && body["detail"].is_string() && body["type"].is_string());
    assert!(body["requestId"].is_string(), "body: {body}");
    body
}

/// How long [`wait_until`] waits before it gives up.
pub const WAIT_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// The one polling loop of the tests: calls `check` every 20 ms until it
/// gives `Ok`, whose value it returns. After [`WAIT_LIMIT`] it panics with
/// what it waited for and the last `Err` (the state it saw instead).
pub async fn wait_until<T, E: std::fmt::Display>(
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = std::time::Instant::now() + WAIT_LIMIT;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) if std::time::Instant::now() >= deadline => {
                panic!("gave up after {WAIT_LIMIT:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
}

/// The `field` of each entry of a validation problem's `errors`, in order.
pub fn error_fields(body: &Value) -> Vec<&str> {
    body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect()
}
