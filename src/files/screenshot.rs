//! Screenshots with one shared Chromium (chromiumoxide), launched lazily,
//! relaunched when it has died, and driving at most
//! `SCREENSHOT_CONCURRENCY` pages at once.
//!
//! Every request a page makes (the navigation, each redirect hop, every
//! sub-resource) is paused by the Fetch domain and continued only if
//! [`ssrf::check`] allows it after DNS resolution; refused ones fail with
//! `BlockedByClient` and the page renders without them. Pages are closed
//! whatever happens; a page that times out or a browser that stops
//! answering gets the whole browser killed and relaunched on the next job.
//!
//! Structurally, every network request of the browser goes through the
//! service's egress proxy ([`super::egress`]), which resolves each host once
//! and connects only to the addresses it checked. Each job gets its own
//! proxy port and browser context ([`slot`]); at the end of the job the port
//! is closed at once (cutting whatever the page left running) and the
//! context is disposed, closing every popup, worker and service worker the
//! page created. The next job's context is prepared in the background when
//! the browser starts and after each job, so a warm job finds one ready.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chromiumoxide::cdp::browser_protocol::page::{CaptureScreenshotParams, NavigateParams};
use chromiumoxide::error::CdpError;
use chromiumoxide::{Browser, BrowserConfig, Page};
use futures::StreamExt;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::egress::{Egress, EgressConfig, Listener};
use super::model::{ScreenshotRequest, WaitUntil};
use super::resolver::Resolver;
use super::ssrf;
use crate::config::Config;

mod page;
mod slot;
use page::{
    capped, capture_format, cdp, element_clip, element_rect_js, full_page_clip, proxy_refused_url,
    set_viewport, track_inflight,
};
use slot::Slot;

/// Why a screenshot failed, so that the job can say whether to retry.
#[derive(Debug, thiserror::Error)]
pub enum ShotError {
    /// The URL (or where it redirected) is not allowed.
    #[error("{0}")]
    Refused(String),
    /// The page could not be loaded or the selector matched nothing.
    #[error("{0}")]
    Page(String),
    #[error("the page did not finish within the timeout")]
    Timeout,
    /// No browser is configured or it cannot start.
    #[error("{0}")]
    Unavailable(String),
    /// The capture would exceed [`MAX_CAPTURE_BYTES`].
    #[error("{0}")]
    TooLarge(String),
    /// The browser failed underneath us (crashed, killed): worth a retry.
    #[error("{0}")]
    Browser(String),
}

/// Full-page and selector captures are clipped to this many CSS pixels in
/// each dimension, so Chromium never renders (nor we receive) a larger one.
pub const MAX_CAPTURE_PX: f64 = 16_384.0;

/// A capture whose image is larger than this is refused (`page_too_large`)
/// before it is decoded.
pub const MAX_CAPTURE_BYTES: usize = 20 << 20;

/// One running browser.
struct Live {
    browser: Arc<Mutex<Browser>>,
    dead: Arc<AtomicBool>,
    user_data: PathBuf,
    pid: Option<u32>,
    /// Which launch this is (the idle watcher stops only its own).
    generation: u64,
    /// The egress port of the browser's default context; dropped (closed)
    /// with the browser.
    _proxy: Listener,
    /// A context prepared for the next job, never used yet; closed with
    /// the browser (idle shutdown, restart).
    spare: Option<Slot>,
}

struct PoolInner {
    executable: Option<PathBuf>,
    /// Fresh profiles are created under here (`DATA_DIR/chromium`).
    profiles: PathBuf,
    allowed_hosts: Vec<String>,
    /// Answers every name the request check and the egress proxy look up.
    resolver: Resolver,
    pages: Arc<Semaphore>,
    concurrency: usize,
    live: Mutex<Option<Live>>,
    in_use: AtomicUsize,
    launches: AtomicU64,
    pid: AtomicU32,
    running: AtomicBool,
    last_error: std::sync::Mutex<Option<String>>,
    /// `SCREENSHOT_IDLE_SECONDS`: the browser is shut down after this long
    /// without screenshots and relaunched by the next one.
    idle: Duration,
    /// When the last screenshot ended, in milliseconds since `epoch`.
    last_used_ms: AtomicU64,
    epoch: Instant,
    /// The browser connections' event loops and the egress proxy;
    /// [`BrowserPool::shutdown`] cancels and waits for them.
    tasks: TaskTracker,
    cancel: CancellationToken,
    /// Every network request of the browser goes through this proxy.
    egress: Egress,
    /// A spare context is being prepared.
    preparing: AtomicBool,
    /// Woken when a preparation ends (with a spare or without).
    prepared: tokio::sync::Notify,
    /// A spare context is ready (for monitoring).
    spare_ready: AtomicBool,
}

/// The shared browser; clone freely.
#[derive(Clone)]
pub struct BrowserPool {
    inner: Arc<PoolInner>,
}

/// `CHROMIUM_PATH`, else the usual names on `PATH`.
fn find_executable(config: &Config) -> Option<PathBuf> {
    if let Some(p) = &config.chromium_path {
        return Some(p.clone());
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Chromium's switches without their leading `--` (chromiumoxide adds it;
/// a switch written `--x` would reach Chromium as `----x` and be ignored).
/// chromiumoxide's defaults are off: they include `disable-popup-blocking`,
/// so these are Puppeteer's defaults without it (`window.open` without a
/// user gesture is blocked), plus the egress settings.
///
/// Each job's fresh browser context gets a hidden window of its own; by
/// default Chromium 156 starts three renderers for it: the page's, a spare
/// bound to that context (never used: the next job has a new context) and
/// one for the window's omnibox popup (WebUI). The `disable-features` list
/// turns the last two off: one renderer per context, about 190 instead of
/// 540 ms of CPU per job beyond a reused page (raw CDP study, 2 cores,
/// docs/files.md). Renderers are never shared between contexts either
/// way. One `disable-features` only: a second replaces the first.
const BROWSER_SWITCHES: &[&str] = &[
    "disable-background-networking",
    "disable-background-timer-throttling",
    "disable-backgrounding-occluded-windows",
    "disable-breakpad",
    "disable-client-side-phishing-detection",
    "disable-component-extensions-with-background-pages",
    "disable-component-update",
    "disable-default-apps",
    "disable-dev-shm-usage",
    "disable-domain-reliability",
    "disable-gpu",
    "disable-hang-monitor",
    "disable-ipc-flooding-protection",
    "disable-prompt-on-repost",
    "disable-quic",
    "disable-renderer-backgrounding",
    "disable-sync",
    "dns-prefetch-disable",
    "force-color-profile=srgb",
    "metrics-recording-only",
    "no-default-browser-check",
    "no-first-run",
    "no-pings",
    "password-store=basic",
    "use-mock-keychain",
    "lang=en_US",
    "force-webrtc-ip-handling-policy=disable_non_proxied_udp",
    "proxy-bypass-list=<-loopback>",
    "disable-features=Translate,TranslateUI,MediaRouter,OptimizationHints,DialMediaRouteProvider,\
     WebUIOmniboxPopup,WebUIOmniboxAimPopup,WebUIOmniboxFullPopup,SpareRendererForSitePerProcess",
];

/// Script run in every frame before the page's own: removes the network
/// APIs the Fetch domain cannot see.
const HARDEN_JS: &str = "(() => { for (const k of ['WebSocket','WebSocketStream','RTCPeerConnection','webkitRTCPeerConnection','RTCDataChannel','WebTransport']) { try { Object.defineProperty(window, k, {value: undefined, configurable: false, writable: false}); } catch (e) {} } })();";

impl BrowserPool {
    /// `resolver` answers every name the request check and the egress proxy
    /// look up.
    pub fn new(config: &Config, resolver: Resolver) -> Self {
        let tasks = TaskTracker::new();
        let cancel = CancellationToken::new();
        let egress = Egress::new(
            EgressConfig::new(config.screenshot_allowed_hosts.clone()),
            resolver.clone(),
            tasks.clone(),
            cancel.clone(),
        );
        Self {
            inner: Arc::new(PoolInner {
                executable: find_executable(config),
                profiles: config.data_dir.join("chromium"),
                allowed_hosts: config.screenshot_allowed_hosts.clone(),
                resolver,
                pages: Arc::new(Semaphore::new(config.screenshot_concurrency)),
                concurrency: config.screenshot_concurrency,
                live: Mutex::new(None),
                in_use: AtomicUsize::new(0),
                launches: AtomicU64::new(0),
                pid: AtomicU32::new(0),
                running: AtomicBool::new(false),
                last_error: std::sync::Mutex::new(None),
                idle: config.screenshot_idle,
                last_used_ms: AtomicU64::new(0),
                epoch: Instant::now(),
                tasks,
                cancel,
                egress,
                preparing: AtomicBool::new(false),
                prepared: tokio::sync::Notify::new(),
                spare_ready: AtomicBool::new(false),
            }),
        }
    }

    pub fn allowed_hosts(&self) -> &[String] {
        &self.inner.allowed_hosts
    }

    /// The resolver of the request check and the egress proxy.
    pub fn resolver(&self) -> &Resolver {
        &self.inner.resolver
    }

    /// For monitoring.
    pub fn health(&self) -> serde_json::Value {
        let i = &self.inner;
        let pid = i.pid.load(Ordering::Relaxed);
        serde_json::json!({
            "available": i.executable.is_some(),
            "executable": i.executable.as_ref().map(|p| p.display().to_string()),
            "running": i.running.load(Ordering::Relaxed),
            "pid": (pid != 0).then_some(pid),
            "pagesInUse": i.in_use.load(Ordering::Relaxed),
            "maxPages": i.concurrency,
            "launches": i.launches.load(Ordering::Relaxed),
            "lastError": i.last_error.lock().ok().and_then(|e| e.clone()),
            "rssBytes": (pid != 0).then(|| tree_rss_bytes(pid)),
            "egress": i.egress.health(),
            "lookups": i.resolver.lookups(),
            "spareReady": i.spare_ready.load(Ordering::Relaxed),
        })
    }

    /// The running browser and its launch number, launching one if there
    /// is none or it died.
    async fn browser(&self) -> Result<(Arc<Mutex<Browser>>, u64), ShotError> {
        let mut slot = self.inner.live.lock().await;
        if let Some(live) = slot.as_ref()
            && !live.dead.load(Ordering::Relaxed)
        {
            return Ok((live.browser.clone(), live.generation));
        }
        if let Some(old) = slot.take() {
            self.dispose(old).await;
        }
        let live = self.launch().await.map_err(|e| {
            let msg = format!("{e:#}");
            if let Ok(mut last) = self.inner.last_error.lock() {
                *last = Some(msg.clone());
            }
            ShotError::Unavailable(format!("the browser could not be started: {msg}"))
        })?;
        let browser = (live.browser.clone(), live.generation);
        // The first job waits for this one rather than opening another.
        self.prepare_spare(live.browser.clone(), live.generation);
        *slot = Some(live);
        Ok(browser)
    }

    async fn launch(&self) -> anyhow::Result<Live> {
        let exe = self
            .inner
            .executable
            .clone()
            .context("no browser: set CHROMIUM_PATH or install chromium")?;
        let user_data = self
            .inner
            .profiles
            .join(uuid::Uuid::new_v4().simple().to_string());
        std::fs::create_dir_all(&user_data).context("failed to create the browser profile")?;
        let proxy = self
            .inner
            .egress
            .listen()
            .await
            .context("failed to open the egress proxy")?;
        let mut builder = BrowserConfig::builder()
            .chrome_executable(&exe)
            .user_data_dir(&user_data)
            .launch_timeout(Duration::from_secs(20))
            .request_timeout(Duration::from_secs(30))
            .disable_default_args()
            .args(BROWSER_SWITCHES.iter().copied())
            .arg(format!("proxy-server={}", proxy.proxy_url()));
        if running_as_root() {
            builder = builder.no_sandbox();
        }
        let config = builder
            .build()
            .map_err(|e| anyhow::anyhow!("invalid browser configuration: {e}"))?;
        let (mut browser, mut handler) = match Browser::launch(config).await {
            Ok(b) => b,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&user_data);
                return Err(anyhow::Error::new(e).context("failed to launch the browser"));
            }
        };
        let dead = Arc::new(AtomicBool::new(false));
        let flag = dead.clone();
        let inner = self.inner.clone();
        self.inner.tasks.spawn(async move {
            while let Some(event) = handler.next().await {
                match event {
                    Ok(()) | Err(CdpError::InvalidMessage(..)) => {}
                    Err(CdpError::Serde(_)) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "browser connection failed");
                        break;
                    }
                }
            }
            flag.store(true, Ordering::Relaxed);
            inner.running.store(false, Ordering::Relaxed);
        });
        let pid = browser.get_mut_child().and_then(|c| c.inner.id());
        self.inner.pid.store(pid.unwrap_or(0), Ordering::Relaxed);
        self.inner.running.store(true, Ordering::Relaxed);
        let generation = self.inner.launches.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(pid, "browser launched");
        self.touch();
        let pool = self.clone();
        self.inner
            .tasks
            .spawn(async move { pool.stop_when_idle(generation).await });
        Ok(Live {
            browser: Arc::new(Mutex::new(browser)),
            dead,
            user_data,
            pid,
            generation,
            _proxy: proxy,
            spare: None,
        })
    }

    /// Notes a screenshot starting or ending now.
    fn touch(&self) {
        let ms = self.inner.epoch.elapsed().as_millis();
        self.inner
            .last_used_ms
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long no screenshot has been running.
    fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.inner.last_used_ms.load(Ordering::Relaxed));
        self.inner.epoch.elapsed().saturating_sub(last)
    }

    /// Shuts launch `generation` down once it has been unused for
    /// `SCREENSHOT_IDLE_SECONDS` (so an idle service does not keep Chromium
    /// resident); ends when that browser is gone for any reason.
    async fn stop_when_idle(&self, generation: u64) {
        let every = (self.inner.idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            tokio::select! {
                () = self.inner.cancel.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            let mut slot = self.inner.live.lock().await;
            match slot.as_ref() {
                Some(live) if live.generation == generation => {}
                _ => return,
            }
            if self.inner.in_use.load(Ordering::Relaxed) == 0 && self.idle_for() >= self.inner.idle
            {
                let live = slot.take();
                drop(slot);
                if let Some(live) = live {
                    tracing::info!(idle = ?self.inner.idle, "browser idle: shutting it down");
                    self.dispose(live).await;
                }
                return;
            }
        }
    }

    /// Kills a browser, reaps it, and removes its profile.
    async fn dispose(&self, live: Live) {
        {
            let mut b = live.browser.lock().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), b.kill()).await;
            let _ = tokio::time::timeout(Duration::from_secs(5), b.wait()).await;
        }
        live.dead.store(true, Ordering::Relaxed);
        // The spare context died with the browser; its port closes here.
        drop(live.spare);
        self.inner.spare_ready.store(false, Ordering::Relaxed);
        self.inner.running.store(false, Ordering::Relaxed);
        if self.inner.pid.load(Ordering::Relaxed) == live.pid.unwrap_or(0) {
            self.inner.pid.store(0, Ordering::Relaxed);
        }
        let dir = live.user_data.clone();
        let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
    }

    /// Kills the browser (it is relaunched by the next screenshot).
    pub async fn restart(&self) {
        let old = self.inner.live.lock().await.take();
        if let Some(old) = old {
            self.dispose(old).await;
        }
    }

    /// Closes the browser for good (service shutdown).
    pub async fn shutdown(&self) {
        self.inner.pages.close();
        self.restart().await;
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        // The killed browser's connection ends at once; do not hang on it.
        let _ = tokio::time::timeout(Duration::from_secs(5), self.inner.tasks.wait()).await;
    }

    /// Takes a screenshot: validated request in, image bytes out.
    pub async fn capture(&self, req: &ScreenshotRequest) -> Result<Vec<u8>, ShotError> {
        ssrf::check(&req.url, &self.inner.allowed_hosts, &self.inner.resolver)
            .await
            .map_err(|m| ShotError::Refused(format!("url: {m}")))?;
        let permit = self
            .inner
            .pages
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ShotError::Unavailable("the service is stopping".into()))?;
        self.inner.in_use.fetch_add(1, Ordering::Relaxed);
        let in_use = InUse(self.clone());

        let (browser, generation) = self.browser().await?;
        // The job's own egress port and browser context: everything the
        // page opens (popups, workers, service workers) lives in the
        // context, goes through this port, and ends with the job.
        let slot = self.slot(&browser, generation).await?;
        let outcome = tokio::time::timeout(req.timeout(), self.shoot(&slot.page, req)).await;
        let result = match outcome {
            Ok(r) => r,
            Err(_) => Err(ShotError::Timeout),
        };
        let url_refused = proxy_refused_url(&slot.proxy, &req.url);
        let blocked = slot.blocked.lock().map(|b| b.clone()).unwrap_or_default();
        // The port closes now; the page slot stays taken until the context
        // is disposed.
        self.finish(browser.clone(), slot, (permit, in_use));
        // The next job's context, made while this one's result is stored.
        self.prepare_spare(browser, generation);
        match result {
            Ok(_) | Err(ShotError::Page(_)) if url_refused => Err(ShotError::Refused(
                "url: the egress proxy refused the page's address".into(),
            )),
            Err(ShotError::Page(m)) | Err(ShotError::Browser(m)) if self.is_dead().await => {
                Err(ShotError::Browser(format!("the browser stopped: {m}")))
            }
            Err(ShotError::Page(m)) => {
                if blocked.iter().any(|u| u == req.url.as_str())
                    || (!blocked.is_empty() && m.contains("ERR_BLOCKED_BY_CLIENT"))
                {
                    Err(ShotError::Refused(format!(
                        "url: the page redirected to a refused address ({})",
                        blocked.first().cloned().unwrap_or_default()
                    )))
                } else {
                    Err(ShotError::Page(m))
                }
            }
            other => other,
        }
    }

    async fn is_dead(&self) -> bool {
        match self.inner.live.lock().await.as_ref() {
            Some(l) => l.dead.load(Ordering::Relaxed),
            None => true,
        }
    }

    /// Navigates a prepared page (guarded and hardened) and captures it.
    async fn shoot(&self, page: &Page, req: &ScreenshotRequest) -> Result<Vec<u8>, ShotError> {
        let tracker = if req.wait_until == WaitUntil::Networkidle {
            Some(track_inflight(page).await?)
        } else {
            None
        };
        set_viewport(page, req).await?;
        page.goto(NavigateParams::new(req.url.clone()))
            .await
            .map_err(cdp)?;
        if let Some(tracker) = tracker {
            tracker.wait_idle(Duration::from_millis(500)).await;
        }
        let (format, quality) = capture_format(req);
        let clip = match &req.selector {
            Some(selector) => {
                let value: Option<serde_json::Value> = page
                    .evaluate(element_rect_js(selector))
                    .await
                    .map_err(cdp)?
                    .into_value()
                    .ok();
                Some(capped(element_clip(value)?))
            }
            None if req.full_page => Some(full_page_clip(page).await?),
            None => None,
        };
        let params = CaptureScreenshotParams {
            format: Some(format),
            quality,
            capture_beyond_viewport: Some(clip.is_some()),
            clip,
            from_surface: Some(true),
            optimize_for_speed: None,
        };
        self.capture_raw(page, params).await
    }

    async fn capture_raw(
        &self,
        page: &Page,
        params: CaptureScreenshotParams,
    ) -> Result<Vec<u8>, ShotError> {
        let res = page
            .execute(params)
            .await
            .map_err(|e| ShotError::Page(e.to_string()))?;
        let data = AsRef::<[u8]>::as_ref(&res.result.data);
        // Base64 holds 3 bytes in 4 characters: refuse before decoding.
        if data.len() / 4 * 3 > MAX_CAPTURE_BYTES {
            return Err(ShotError::TooLarge(format!(
                "the screenshot would be larger than {} MiB",
                MAX_CAPTURE_BYTES >> 20
            )));
        }
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| ShotError::Page(format!("bad screenshot data: {e}")))
    }
}

/// Resident memory of process `root` and all its descendants (Linux /proc:
/// the browser's renderers, GPU and utility processes are its children).
fn tree_rss_bytes(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut children: std::collections::HashMap<u32, Vec<u32>> = Default::default();
    for entry in entries.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let ppid = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                rest.split_whitespace().nth(1)?.parse::<u32>().ok()
            });
        if let Some(ppid) = ppid {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut total = 0;
    let mut todo = vec![root];
    while let Some(pid) = todo.pop() {
        total += std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .unwrap_or(0)
            * 1024;
        todo.extend(children.remove(&pid).unwrap_or_default());
    }
    total
}

/// A screenshot in progress; its end counts as the browser's last use.
struct InUse(BrowserPool);

impl Drop for InUse {
    fn drop(&mut self) {
        self.0.touch();
        self.0.inner.in_use.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests;
