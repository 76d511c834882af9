//! The admin console in a real headless Chromium: an admin signs in through
//! the page and opens every view; the charts show data this test created;
//! no script fails, the CSP is never violated, and no request leaves the
//! service. A plain user is shown the refusal and no data. Screenshots are
//! kept in a temporary directory (their paths are printed).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::log::EventEntryAdded;
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::cdp::js_protocol::runtime::{
    ConsoleApiCalledType, EventConsoleApiCalled, EventExceptionThrown,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::ScreenshotParams;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestUser, spawn_app, wait_until};

/// Problems the page reported: script exceptions, console errors, CSP
/// violations, and requests to anywhere but the service.
#[derive(Default)]
struct Seen {
    problems: Vec<String>,
    requests: Vec<String>,
}

/// A headless Chromium with one page on the service, recording what the
/// page does.
struct Console {
    browser: Browser,
    page: Page,
    seen: Arc<Mutex<Seen>>,
    shots: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Endpoints the console calls that the service does not have yet
/// (docs/console.md, "Endpoints the console needs"); remove each once it
/// lands.
/// Collects the page's CSP violations in `window.__csp` (DevTools scripts
/// are not subject to the page's CSP).
const WATCH_CSP: &str = "window.__csp = []; document.addEventListener('securitypolicyviolation', \
    (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));";

impl Console {
    async fn open(app: &TestApp) -> Console {
        let profile = app.data_dir().join("console-browser");
        let exe = std::env::var_os("CHROMIUM_PATH")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::split_paths(&std::env::var_os("PATH")?)
                    .map(|dir| dir.join("chromium"))
                    .find(|p| p.is_file())
            })
            .expect("chromium on PATH (or CHROMIUM_PATH)");
        let config = BrowserConfig::builder()
            .chrome_executable(exe)
            .user_data_dir(&profile)
            .no_sandbox()
            .launch_timeout(Duration::from_secs(30))
            .window_size(1366, 900)
            .viewport(Viewport {
                width: 1366,
                height: 900,
                ..Viewport::default()
            })
            .args([
                "--disable-gpu",
                "--disable-quic",
                "--disable-component-update",
                "--disable-dev-shm-usage",
                "--proxy-bypass-list=<-loopback>",
            ])
            .build()
            .expect("browser configuration");
        let (browser, mut handler) = Browser::launch(config).await.expect("chromium launches");
        // Drive the DevTools connection; its errors show up as failed calls.
        let mut tasks = vec![tokio::spawn(async move {
            while handler.next().await.is_some() {}
        })];
        let page = browser.new_page("about:blank").await.expect("a page");
        page.execute(SetDeviceMetricsOverrideParams::new(1366, 900, 1.0, false))
            .await
            .expect("viewport");
        page.evaluate_on_new_document(WATCH_CSP)
            .await
            .expect("CSP watcher");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let origin = app.addr.clone();

        let mut exceptions = page.event_listener::<EventExceptionThrown>().await.unwrap();
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = exceptions.next().await {
                let d = &e.exception_details;
                let text = d
                    .exception
                    .as_ref()
                    .and_then(|x| x.description.clone())
                    .unwrap_or_else(|| d.text.clone());
                s.lock()
                    .unwrap()
                    .problems
                    .push(format!("exception: {text}"));
            }
        }));
        let mut console = page
            .event_listener::<EventConsoleApiCalled>()
            .await
            .unwrap();
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = console.next().await {
                if matches!(
                    e.r#type,
                    ConsoleApiCalledType::Error | ConsoleApiCalledType::Warning
                ) {
                    let args: Vec<String> = e
                        .args
                        .iter()
                        .map(|a| {
                            a.value
                                .as_ref()
                                .map(|v| v.to_string())
                                .or_else(|| a.description.clone())
                                .unwrap_or_default()
                        })
                        .collect();
                    s.lock()
                        .unwrap()
                        .problems
                        .push(format!("console: {}", args.join(" ")));
                }
            }
        }));
        let mut log = page.event_listener::<EventEntryAdded>().await.unwrap();
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = log.next().await {
                let level = format!("{:?}", e.entry.level);
                if level == "Error" {
                    s.lock().unwrap().problems.push(format!(
                        "log: {} {}",
                        e.entry.text,
                        e.entry.url.clone().unwrap_or_default()
                    ));
                }
            }
        }));
        let mut requests = page
            .event_listener::<EventRequestWillBeSent>()
            .await
            .unwrap();
        let s = seen.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(e) = requests.next().await {
                let url = e.request.url.clone();
                let mut seen = s.lock().unwrap();
                if !(url.starts_with(&format!("{origin}/")) || url == "about:blank") {
                    seen.problems
                        .push(format!("request left the service: {url}"));
                }
                seen.requests.push(url);
            }
        }));

        // Outside the app's data directory, which is removed with the
        // test: the screenshots stay for a person to look at.
        let shots = std::env::temp_dir().join(format!(
            "hs-platform-console-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&shots).unwrap();
        Console {
            browser,
            page,
            seen,
            shots,
            tasks,
        }
    }

    async fn eval<T: serde::de::DeserializeOwned>(&self, js: &str) -> T {
        self.page
            .evaluate(js)
            .await
            .unwrap_or_else(|e| panic!("evaluating {js}: {e}"))
            .into_value()
            .unwrap_or_else(|e| panic!("value of {js}: {e}"))
    }

    /// Waits until `js` evaluates to true, or fails saying what it waited for.
    async fn wait_for(&self, js: &str, what: &str) {
        wait_until(what, async || {
            let ok = self
                .page
                .evaluate(js)
                .await
                .ok()
                .and_then(|v| v.into_value::<bool>().ok())
                .unwrap_or(false);
            if ok {
                return Ok(());
            }
            // What the page shows, for the panic message if it never comes.
            let body: String = self.eval("document.body.innerText").await;
            Err(format!("page text:\n{body}"))
        })
        .await;
    }

    async fn shot(&self, name: &str) -> PathBuf {
        let path = self.shots.join(format!("{name}.png"));
        self.page
            .save_screenshot(ScreenshotParams::builder().full_page(true).build(), &path)
            .await
            .expect("screenshot");
        println!("console screenshot: {}", path.display());
        path
    }

    async fn sign_in(&self, email: &str, password: &str) {
        self.wait_for(
            "!document.getElementById('signin').hidden",
            "the sign-in form",
        )
        .await;
        let js = format!(
            "(() => {{ const f = document.getElementById('signin-form'); f.email.value = {}; \
             f.password.value = {}; f.requestSubmit(); return true; }})()",
            json!(email),
            json!(password)
        );
        let _: bool = self.eval(&js).await;
    }

    /// Opens a view and waits until it has drawn: its title shown, `marker`
    /// (text only that view has) in it, no loading error, and every chart
    /// placed.
    async fn open_view(&self, hash: &str, title: &str, marker: &str) {
        let js = format!("location.hash = {}; true", json!(hash));
        let _: bool = self.eval(&js).await;
        let ready = format!(
            "document.getElementById('view-title').textContent === {} \
             && document.getElementById('view').innerText.includes({}) \
             && !document.querySelector('#view .notice.bad') \
             && [...document.querySelectorAll('#view .chart')].every((c) => c.querySelector('canvas'))",
            json!(title),
            json!(marker)
        );
        self.wait_for(&ready, &format!("the {title} view")).await;
    }

    /// `data-sum` of the chart named `name` (the sum of its first series).
    async fn chart_sum(&self, name: &str) -> f64 {
        let js = format!(
            "(() => {{ const c = document.querySelector('[data-chart={}]'); \
             return c ? Number(c.dataset.sum) : -1; }})()",
            json!(name)
        );
        self.eval(&js).await
    }

    async fn text(&self) -> String {
        self.eval("document.body.innerText").await
    }

    /// What went wrong in the page, leaving out only the 401 of `GET
    /// /api/sessions/current` when the page opens before sign-in (how it
    /// learns that nobody is signed in).
    fn problems(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .problems
            .iter()
            .filter(|p| {
                let failed = p.starts_with("log: Failed to load resource");
                !(failed && p.contains("status of 401") && p.ends_with("/api/sessions/current"))
            })
            .cloned()
            .collect()
    }

    async fn close(mut self) {
        let _ = self.browser.close().await;
        let _ = self.browser.wait().await;
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

async fn csp_violations(console: &Console) -> Vec<String> {
    console.eval("window.__csp || []").await
}

/// Data for the views: requests (some failing), a finished job, a load test.
async fn create_data(app: &TestApp, admin: &TestUser, user: &TestUser) -> String {
    for _ in 0..20 {
        let res = app
            .get(&format!("/api/users/{}", user.id), Some(&user.token))
            .await;
        assert_eq!(res.status(), StatusCode::OK);
    }
    let res = app
        .post(
            "/api/files/generate/csv",
            Some(&user.token),
            json!({"columns": [{"key": "a", "title": "A"}], "rows": [{"a": 1}], "fileName": "console.csv"}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let job: Value = res.json().await.unwrap();
    let job_id = job["id"].as_str().unwrap().to_string();
    app.wait_job(&job_id, &user.token).await;
    let res = app
        .post(
            "/api/load-test/start",
            Some(&admin.token),
            json!({"scenario": [{"method": "GET", "path": "/health"}], "concurrency": 2, "requests": 200}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::ACCEPTED);
    let test: Value = res.json().await.unwrap();
    let test_id = test["id"].as_str().unwrap().to_string();
    app.wait_job(&test_id, &admin.token).await;
    let backup = app.backup_now(&admin.token).await;
    assert_eq!(backup["status"], "succeeded", "{backup}");
    job_id
}

#[tokio::test]
async fn an_admin_signs_in_and_every_view_draws_the_services_data() {
    let app = spawn_app().await;
    let admin = app.new_admin().await;
    let user = app.new_user().await;
    let job_id = create_data(&app, &admin, &user).await;

    let console = Console::open(&app).await;
    console.page.goto(app.url("/admin")).await.unwrap();
    console.sign_in(&admin.email, &admin.password).await;
    console
        .wait_for(
            "!document.getElementById('shell').hidden",
            "the console after sign-in",
        )
        .await;
    // A reload finds the session from the cookie alone
    // (`GET /api/sessions/current`).
    console.page.reload().await.unwrap();
    console
        .wait_for(
            "!document.getElementById('shell').hidden",
            "the console after a reload, without signing in again",
        )
        .await;

    console
        .open_view("#/overview", "Overview", "Jobs by status")
        .await;
    assert!(
        console.chart_sum("jobs-by-status").await >= 1.0,
        "the CSV job is counted"
    );
    let stored = app.get_json("/api/analytics/storage", &admin.token).await;
    assert!(stored["totalBytes"].as_i64().unwrap() > 0, "{stored}");
    assert_eq!(
        console.chart_sum("storage-per-user").await,
        stored["totalBytes"].as_f64().unwrap(),
        "the CSV file is the only stored file: storage per user sums to it"
    );
    let text = console.text().await;
    assert!(text.contains("Active users"), "{text}");
    assert!(
        text.contains(&user.email),
        "storage per user names the owner: {text}"
    );
    // Requests and latency over the window come from the time series of the
    // requests this test made.
    assert!(console.chart_sum("rps").await > 0.0, "requests charted");
    assert!(console.chart_sum("latency").await > 0.0, "latency charted");
    console.shot("overview").await;

    // 15 minutes: the requests this test made are in the window.
    let _: bool = console
        .eval("document.querySelector('#windows [data-window=\"15m\"]').click(); true")
        .await;
    console
        .open_view("#/performance", "Performance", "Routes")
        .await;
    let text = console.text().await;
    assert!(text.contains("/api/users/{userId}"), "{text}");
    assert!(
        console.chart_sum("route-latency").await > 0.0,
        "the selected route's latency is charted"
    );
    console.shot("performance").await;

    console
        .open_view("#/errors", "Errors", "Error groups")
        .await;
    console.shot("errors").await;
    console.open_view("#/alerts", "Alerts", "Thresholds").await;
    console.shot("alerts").await;

    console
        .open_view(&format!("#/jobs?id={job_id}"), "Jobs", "User id")
        .await;
    let text = console.text().await;
    assert!(
        text.contains(&job_id) && text.contains("files.csv"),
        "{text}"
    );
    assert!(
        text.contains("Payload") && text.contains("console.csv"),
        "the job's payload is shown: {text}"
    );
    console.shot("jobs").await;

    console
        .open_view("#/loadtests", "Load tests", "Start a load test")
        .await;
    assert_eq!(
        console.chart_sum("loadtest-timeline").await,
        200.0,
        "every request of the load test is on its timeline"
    );
    assert_eq!(
        console.chart_sum("loadtest-histogram").await,
        200.0,
        "every (successful) request of the load test is in its latency histogram"
    );
    console.shot("loadtests").await;
    // The "10 users" preset means 10 virtual users, limited like real
    // users: run it for a second from the form.
    let before: Value = app.get_json("/api/load-test/status", &admin.token).await;
    let chosen: Value = console
        .eval(
            "(() => { const f = document.getElementById('loadtest-form'); \
             f.querySelector('[data-preset=\"10 users\"]').click(); \
             const chosen = { virtualUsers: f.virtualUsers.value, \
               exempt: f.exemptFromRateLimits.checked, scenario: f.scenario.value }; \
             f.durationSeconds.value = 1; f.rampUpSeconds.value = 0; f.requestSubmit(); \
             return chosen; })()",
        )
        .await;
    assert_eq!(chosen["virtualUsers"], "10", "{chosen}");
    assert_eq!(chosen["exempt"], false, "{chosen}");
    assert!(
        chosen["scenario"].as_str().unwrap().contains("{userId}"),
        "{chosen}"
    );
    let earlier = before["recent"][0]["id"].clone();
    let r = wait_until("the preset's load test to finish", async || {
        let status: Value = app.get_json("/api/load-test/status", &admin.token).await;
        let latest = &status["recent"][0];
        match latest["status"].as_str() {
            Some("succeeded") if latest["id"] != earlier => Ok(latest["id"].clone()),
            _ => Err(status),
        }
    })
    .await;
    let r: Value = app
        .get_json(
            &format!("/api/load-test/results/{}", r.as_str().unwrap()),
            &admin.token,
        )
        .await;
    assert_eq!(r["virtualUsers"], 10, "{r}");
    assert_eq!(r["exemptFromRateLimits"], false, "{r}");
    assert_eq!(app.virtual_user_rows(), (0, 0, 0));

    console.open_view("#/system", "System", "Resources").await;
    let text = console.text().await;
    assert!(text.contains("Health") && text.contains("WAL"), "{text}");
    let backups = app.get_json("/api/maintenance/backups", &admin.token).await;
    let backup = &backups["items"][0];
    // The page's download link fetches the file with its checksum.
    let fetched: Value = console
        .eval(&format!(
            "(async () => {{ const a = document.querySelector('a[data-backup={}]'); \
             const r = await fetch(a.href); const b = await r.arrayBuffer(); \
             return {{ status: r.status, sha: r.headers.get('x-checksum-sha256'), \
             bytes: b.byteLength, download: a.getAttribute('download') }}; }})()",
            json!(backup["id"])
        ))
        .await;
    assert_eq!(fetched["status"], 200, "{fetched}");
    assert_eq!(fetched["sha"], backup["sha256"], "{fetched}");
    assert_eq!(fetched["bytes"], backup["sizeBytes"], "{fetched}");
    assert_eq!(fetched["download"], backup["fileName"], "{fetched}");
    console.shot("system").await;

    // Search by email, then revoke the user's sessions and make them an
    // admin through the page.
    console
        .open_view(
            &format!("#/users?q={}&id={}", user.email, user.id),
            "Users",
            "Accounts",
        )
        .await;
    let text = console.text().await;
    assert!(
        text.contains(&user.email) && text.contains("1 shown"),
        "{text}"
    );
    console.shot("users").await;
    let _: bool = console
        .eval("document.getElementById('revoke-all').click(); true")
        .await;
    wait_until("the user's sessions to be revoked", async || {
        let status = app
            .get("/api/sessions/current", Some(&user.token))
            .await
            .status();
        if status == StatusCode::UNAUTHORIZED {
            Ok(())
        } else {
            Err(status)
        }
    })
    .await;
    console
        .wait_for(
            "!document.getElementById('revoke-all')",
            "the users view after the revocation",
        )
        .await;
    let _: bool = console
        .eval(
            "(() => { const s = document.querySelector('#view select[name=role]'); \
             s.value = 'admin'; s.form.requestSubmit(); return true; })()",
        )
        .await;
    wait_until("the user to become an admin", async || {
        let u = app
            .get_json(&format!("/api/users/{}", user.id), &admin.token)
            .await;
        if u["role"] == "admin" { Ok(()) } else { Err(u) }
    })
    .await;

    assert_eq!(console.problems(), Vec::<String>::new());
    assert_eq!(csp_violations(&console).await, Vec::<String>::new());
    let requests = console.seen.lock().unwrap().requests.len();
    assert!(requests > 20, "the page made {requests} requests");
    console.close().await;
}

#[tokio::test]
async fn a_plain_user_is_shown_the_refusal_and_no_data() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let console = Console::open(&app).await;
    console.page.goto(app.url("/admin")).await.unwrap();
    console.sign_in(&user.email, &user.password).await;
    console
        .wait_for("!document.getElementById('refusal').hidden", "the refusal")
        .await;
    let text = console.text().await;
    assert!(
        text.contains("Admins only") && text.contains(&user.email),
        "{text}"
    );
    let shell_hidden: bool = console
        .eval("document.getElementById('shell').hidden")
        .await;
    assert!(shell_hidden);
    console.shot("refusal").await;
    let monitoring: Vec<String> = console
        .seen
        .lock()
        .unwrap()
        .requests
        .iter()
        .filter(|u| u.contains("/api/monitoring") || u.contains("/api/analytics"))
        .cloned()
        .collect();
    assert_eq!(monitoring, Vec::<String>::new(), "no data was asked for");
    assert_eq!(console.problems(), Vec::<String>::new());
    console.close().await;
}

#[tokio::test]
async fn the_console_is_served_from_the_binary_under_a_strict_csp() {
    let app = spawn_app().await;
    let res = app.get("/admin", None).await;
    assert_eq!(res.status(), StatusCode::OK);
    let h = res.headers().clone();
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self';") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let etag = h["etag"].to_str().unwrap().to_string();
    let html = res.text().await.unwrap();
    assert!(html.contains("/admin/assets/js/app.js"));

    let res = app
        .get("/admin/assets/vendor/uplot/uPlot.iife.min.js", None)
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(res.text().await.unwrap().contains("uPlot"));

    let res = app
        .client
        .get(app.url("/admin"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_MODIFIED);

    let res = app.get("/admin/assets/js/nope.js", None).await;
    crate::helpers::assert_problem(res, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn cookie_writes_from_another_site_are_refused_and_from_the_console_pass() {
    let app = spawn_app().await;
    let user = app.new_user().await;
    let cookie = format!("hs_session={}", user.token);
    let logout = |origin: &'static str, site: &'static str| {
        app.client
            .delete(app.url(&format!("/api/sessions/{}", user.session_id)))
            .header("cookie", &cookie)
            .header("origin", origin)
            .header("sec-fetch-site", site)
            .send()
    };
    let res = logout("https://evil.example", "cross-site").await.unwrap();
    crate::helpers::assert_problem(res, StatusCode::FORBIDDEN, "cross_site_request").await;
    // Still signed in: the refused request did nothing.
    let res = app
        .get(&format!("/api/users/{}", user.id), Some(&user.token))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    // The same request from the service's own page passes.
    let res = logout("http://127.0.0.1", "same-origin").await.unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
}
