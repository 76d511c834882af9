//! The screenshot browser's way out (issue 12), through the real server and
//! Chromium: DNS rebinding with a stand-in resolver passed to the service
//! (the only difference from production), and the context prepared in
//! advance for the next job.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hs_platform::files::resolver::{Lookup, Resolver};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with, spawn_app_with_resolver, wait_until};

/// A stand-in DNS: `p<k>.rebind.test` answers a public address to its
/// first `k` lookups and loopback to every later one (a rebinding name
/// with a zero TTL). Counts lookups per name.
#[derive(Default)]
struct Rebinding {
    calls: Mutex<HashMap<String, usize>>,
}

impl Lookup for Rebinding {
    fn lookup(&self, host: &str, _port: u16) -> io::Result<Vec<IpAddr>> {
        let public_first: usize = host
            .strip_suffix(".rebind.test")
            .and_then(|h| h.strip_prefix('p'))
            .and_then(|k| k.parse().ok())
            .ok_or(io::ErrorKind::NotFound)?;
        let mut calls = self.calls.lock().unwrap();
        let n = calls.entry(host.to_string()).or_default();
        *n += 1;
        let ip = if *n <= public_first {
            "93.184.216.34"
        } else {
            "127.0.0.1"
        };
        Ok(vec![ip.parse().unwrap()])
    }
}

/// A server on loopback counting every request it gets.
async fn canary() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move || async move {
        h.fetch_add(1, Ordering::SeqCst);
        axum::response::Html("<body style='background:red'>secret</body>")
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (port, hits)
}

/// Creates a screenshot job and waits for it to finish.
async fn shoot(app: &TestApp, token: &str, url: &str) -> Value {
    let res = app
        .client
        .post(app.url("/api/files/generate/screenshot"))
        .bearer_auth(token)
        .header("prefer", "wait=55")
        .json(
            &json!({"url": url, "viewport": {"width": 100, "height": 80},
                      "waitUntil": "load", "timeoutMs": 20000}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    res.json().await.unwrap()
}

/// The egress proxy's counters.
fn egress(app: &TestApp) -> Value {
    app.state.files.files.browser_health()["egress"].clone()
}

fn count(v: &Value, key: &str) -> i64 {
    v[key].as_i64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[tokio::test]
async fn a_name_that_rebinds_to_a_loopback_canary_is_refused_wherever_it_flips_and_never_reached() {
    let (port, hits) = canary().await;
    let app = spawn_app_with_resolver(
        &[("SCREENSHOT_CONCURRENCY", "1")],
        Resolver::new(Arc::new(Rebinding::default()), 4, Duration::from_secs(5)),
    )
    .await;
    let user = app.new_user().await;

    // A name that answers loopback at once is refused when the job is
    // created.
    let res = app
        .post(
            "/api/files/generate/screenshot",
            Some(&user.token),
            json!({"url": format!("http://p0.rebind.test:{port}/")}),
        )
        .await;
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Later flips: the request check when the job runs, the page's request
    // guard, and at last the egress proxy, which is asked after every
    // check before it has seen a public answer. Each job fails as refused
    // and the canary is never reached.
    let mut proxy_refused_at = None;
    for k in 1..=6 {
        let before = egress(&app);
        let job = shoot(
            &app,
            &user.token,
            &format!("http://p{k}.rebind.test:{port}/"),
        )
        .await;
        let after = egress(&app);
        assert_eq!(job["status"], "failed", "p{k}: {job}");
        assert_eq!(job["error"]["code"], "url_refused", "p{k}: {job}");
        assert_eq!(
            hits.load(Ordering::SeqCst),
            0,
            "p{k}: the canary was reached"
        );
        let delta = |key| count(&after, key) - count(&before, key);
        if delta("refused") > 0 {
            // The proxy resolved the name itself, once per request it was
            // asked, and got the loopback answer: it connected to nothing.
            assert_eq!(
                delta("lookups"),
                delta("refused"),
                "p{k}: {before} -> {after}"
            );
            assert_eq!(
                delta("forwarded") + delta("tunnels") + delta("unreachable"),
                0
            );
            proxy_refused_at = Some(k);
            break;
        }
    }
    let k = proxy_refused_at.expect("some flip reached the egress proxy");
    assert!(k >= 2, "the checks before the browser saw public answers");
}

/// A plain page on loopback (allowed by `SCREENSHOT_ALLOWED_HOSTS`).
async fn page() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(|| async { axum::response::Html("<body style='background:white'>hi</body>") });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    port
}

fn browser_health(app: &TestApp) -> Value {
    app.state.files.files.browser_health()
}

#[tokio::test]
async fn a_context_prepared_for_the_next_job_but_never_used_is_closed_at_idle_shutdown() {
    let app = spawn_app_with(&[
        ("SCREENSHOT_ALLOWED_HOSTS", "127.0.0.1"),
        ("SCREENSHOT_IDLE_SECONDS", "1"),
    ])
    .await;
    let user = app.new_user().await;
    let port = page().await;
    let job = shoot(&app, &user.token, &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // The job's port is closed; the browser's own and the spare's are open.
    wait_until("a spare context is ready", async || {
        let h = browser_health(&app);
        if h["spareReady"] == true && count(&h["egress"], "listeners") == 2 {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    wait_until("the idle browser and its spare are gone", async || {
        let h = browser_health(&app);
        if h["running"] == false
            && h["spareReady"] == false
            && count(&h["egress"], "listeners") == 0
        {
            Ok(())
        } else {
            Err(h.to_string())
        }
    })
    .await;
    // The next job relaunches the browser and works as before.
    let job = shoot(&app, &user.token, &format!("http://127.0.0.1:{port}/")).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(browser_health(&app)["launches"], 2);
}
