//! A job's browser context ("slot"): its own egress port, a fresh browser
//! context whose requests go through that port, and a blank page already
//! guarded (Fetch domain) and hardened. One spare slot is prepared in the
//! background when the browser starts and after each job, so that the next
//! warm job does not pay for opening a context, a page and its renderer; a spare was never used by
//! any page, so handing it to a job shares nothing between jobs.
//!
//! At the end of a job its port is closed at once (every connection and
//! tunnel of the context is cut, and nothing the page left running can
//! reach the network again); the page and the context are then closed in
//! the background while the job's page slot stays taken.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::fetch::{
    self, ContinueRequestParams, EventRequestPaused, FailRequestParams, RequestPattern,
};
use chromiumoxide::cdp::browser_protocol::network::ErrorReason;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;
use tokio::sync::Mutex;

use super::page::{cdp, harden, open_page};
use super::{BrowserPool, Listener, ShotError, ssrf};

/// The URLs the request guard refused.
pub(super) type Blocked = Arc<std::sync::Mutex<Vec<String>>>;

/// One job's context; see the module documentation.
pub(super) struct Slot {
    pub proxy: Listener,
    pub context: BrowserContextId,
    pub page: Page,
    pub blocked: Blocked,
}

impl BrowserPool {
    /// The spare slot of launch `generation` (waiting for one being
    /// prepared), or a new one.
    pub(super) async fn slot(
        &self,
        browser: &Arc<Mutex<Browser>>,
        generation: u64,
    ) -> Result<Slot, ShotError> {
        let spare = loop {
            // Created before looking, so that a preparation ending in
            // between still wakes it.
            let prepared = self.inner.prepared.notified();
            let spare = {
                let mut live = self.inner.live.lock().await;
                live.as_mut()
                    .filter(|l| l.generation == generation)
                    .and_then(|l| l.spare.take())
            };
            if spare.is_some() || !self.inner.preparing.load(Ordering::SeqCst) {
                break spare;
            }
            // One is on its way: waiting for it costs less than opening
            // another beside it.
            if tokio::time::timeout(Duration::from_secs(20), prepared)
                .await
                .is_err()
            {
                break None;
            }
        };
        if spare.is_some() {
            self.inner.spare_ready.store(false, Ordering::Relaxed);
        }
        let slot = match spare {
            Some(slot) => slot,
            None => self.open_slot(browser).await?,
        };
        Ok(slot)
    }

    /// A new context with its own egress port and a guarded, hardened
    /// blank page.
    async fn open_slot(&self, browser: &Arc<Mutex<Browser>>) -> Result<Slot, ShotError> {
        let proxy = self
            .inner
            .egress
            .listen()
            .await
            .map_err(|e| ShotError::Browser(format!("the egress proxy did not open: {e}")))?;
        let (page, context) = {
            let b = browser.lock().await;
            tokio::time::timeout(Duration::from_secs(20), open_page(&b, &proxy))
                .await
                .map_err(|_| ShotError::Browser("the browser did not open a page".into()))?
                .map_err(|e| ShotError::Browser(format!("the browser did not open a page: {e}")))?
        };
        let slot = Slot {
            proxy,
            context,
            page,
            blocked: Blocked::default(),
        };
        let ready = async {
            self.guard_requests(&slot.page, slot.blocked.clone())
                .await?;
            harden(&slot.page).await
        };
        match tokio::time::timeout(Duration::from_secs(20), ready).await {
            Ok(Ok(())) => Ok(slot),
            Ok(Err(e)) => {
                self.finish(browser.clone(), slot, ());
                Err(e)
            }
            Err(_) => {
                self.finish(browser.clone(), slot, ());
                Err(ShotError::Browser(
                    "the browser did not prepare a page".into(),
                ))
            }
        }
    }

    /// In the background, unless a spare is ready or being prepared: a
    /// spare slot for launch `generation`, kept with that browser (and
    /// closed with it) or closed at once if the browser changed meanwhile.
    pub(super) fn prepare_spare(&self, browser: Arc<Mutex<Browser>>, generation: u64) {
        if self.inner.preparing.swap(true, Ordering::SeqCst) {
            return;
        }
        let pool = self.clone();
        self.inner.tasks.spawn(async move {
            let wanted = pool
                .inner
                .live
                .lock()
                .await
                .as_ref()
                .is_some_and(|l| l.generation == generation && l.spare.is_none());
            let made = if wanted {
                tokio::select! {
                    made = pool.open_slot(&browser) => made.ok(),
                    () = pool.inner.cancel.cancelled() => None,
                }
            } else {
                None
            };
            if let Some(slot) = made {
                let mut live = pool.inner.live.lock().await;
                match live.as_mut() {
                    Some(l)
                        if l.generation == generation
                            && l.spare.is_none()
                            && !l.dead.load(Ordering::Relaxed) =>
                    {
                        l.spare = Some(slot);
                        pool.inner.spare_ready.store(true, Ordering::Relaxed);
                    }
                    _ => {
                        drop(live);
                        pool.finish(browser, slot, ());
                    }
                }
            }
            pool.inner.preparing.store(false, Ordering::SeqCst);
            pool.inner.prepared.notify_waiters();
        });
    }

    /// Ends a slot: its egress port closes now; its page and context are
    /// closed in the background, holding `held` (the job's page permit)
    /// until then. A browser that cannot close them is restarted.
    pub(super) fn finish(
        &self,
        browser: Arc<Mutex<Browser>>,
        slot: Slot,
        held: impl Send + 'static,
    ) {
        let Slot {
            proxy,
            context,
            page,
            ..
        } = slot;
        drop(proxy);
        let pool = self.clone();
        self.inner.tasks.spawn(async move {
            let _held = held;
            let closed = tokio::time::timeout(Duration::from_secs(5), page.close()).await;
            let disposed = tokio::time::timeout(Duration::from_secs(5), async {
                browser.lock().await.dispose_browser_context(context).await
            })
            .await;
            if !matches!(closed, Ok(Ok(()))) || !matches!(disposed, Ok(Ok(()))) {
                tracing::warn!("a page or its context did not close; restarting the browser");
                pool.restart().await;
            }
        });
    }

    /// The request guard: every request the page makes is paused, checked,
    /// then continued or failed (and noted in `blocked`). It ends when the
    /// page closes (the stream ends).
    async fn guard_requests(&self, page: &Page, blocked: Blocked) -> Result<(), ShotError> {
        let mut paused = page
            .event_listener::<EventRequestPaused>()
            .await
            .map_err(cdp)?;
        let guard_page = page.clone();
        let allowed = self.inner.allowed_hosts.clone();
        let resolver = self.inner.resolver.clone();
        let blocked_log = blocked;
        tokio::spawn(async move {
            while let Some(ev) = paused.next().await {
                let page = guard_page.clone();
                let allowed = allowed.clone();
                let resolver = resolver.clone();
                let blocked_log = blocked_log.clone();
                tokio::spawn(async move {
                    let url = ev.request.url.clone();
                    match ssrf::check(&url, &allowed, &resolver).await {
                        Ok(()) => {
                            let _ = page
                                .execute(ContinueRequestParams::new(ev.request_id.clone()))
                                .await;
                        }
                        Err(reason) => {
                            tracing::info!(%reason, "screenshot sub-request refused");
                            if let Ok(mut b) = blocked_log.lock() {
                                b.push(url);
                            }
                            let _ = page
                                .execute(FailRequestParams::new(
                                    ev.request_id.clone(),
                                    ErrorReason::BlockedByClient,
                                ))
                                .await;
                        }
                    }
                });
            }
        });
        page.execute(
            fetch::EnableParams::builder()
                .pattern(RequestPattern::builder().url_pattern("*").build())
                .build(),
        )
        .await
        .map_err(cdp)?;
        Ok(())
    }
}
