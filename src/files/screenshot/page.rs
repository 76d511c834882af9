//! The page side of a screenshot: opening and hardening the page, waiting
//! for the network to go quiet, and computing the capped clip to capture.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::emulation::SetDeviceMetricsOverrideParams;
use chromiumoxide::cdp::browser_protocol::network::{
    EventLoadingFailed, EventLoadingFinished, EventRequestWillBeSent,
};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, CaptureScreenshotFormat, Viewport as ClipViewport,
};
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::error::CdpError;
use chromiumoxide::{Browser, Page};
use futures::StreamExt;

use crate::files::egress::Listener;
use crate::files::model::{ImageFormat, ScreenshotRequest};

use super::{HARDEN_JS, MAX_CAPTURE_PX, ShotError};

pub(super) fn cdp(e: CdpError) -> ShotError {
    ShotError::Page(e.to_string())
}

/// In-flight request tracking for `networkidle`.
pub(super) async fn track_inflight(page: &Page) -> Result<Arc<Inflight>, ShotError> {
    let tracker = Arc::new(Inflight::default());
    let mut sent = page
        .event_listener::<EventRequestWillBeSent>()
        .await
        .map_err(cdp)?;
    let mut done = page
        .event_listener::<EventLoadingFinished>()
        .await
        .map_err(cdp)?;
    let mut failed = page
        .event_listener::<EventLoadingFailed>()
        .await
        .map_err(cdp)?;
    let t = tracker.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(_) = sent.next() => t.change(1),
                Some(_) = done.next() => t.change(-1),
                Some(_) = failed.next() => t.change(-1),
                else => break,
            }
        }
    });
    Ok(tracker)
}

/// The script that removes the network APIs the Fetch domain cannot see,
/// run in every frame before the page's own.
pub(super) async fn harden(page: &Page) -> Result<(), ShotError> {
    page.execute(AddScriptToEvaluateOnNewDocumentParams::new(HARDEN_JS))
        .await
        .map_err(cdp)?;
    Ok(())
}

/// The requested viewport.
pub(super) async fn set_viewport(page: &Page, req: &ScreenshotRequest) -> Result<(), ShotError> {
    page.execute(SetDeviceMetricsOverrideParams::new(
        i64::from(req.viewport.width),
        i64::from(req.viewport.height),
        1.0,
        false,
    ))
    .await
    .map_err(cdp)?;
    Ok(())
}

/// The image format and, for JPEG, its quality (80 unless given).
pub(super) fn capture_format(req: &ScreenshotRequest) -> (CaptureScreenshotFormat, Option<i64>) {
    match req.format {
        ImageFormat::Png => (CaptureScreenshotFormat::Png, None),
        ImageFormat::Jpeg => (
            CaptureScreenshotFormat::Jpeg,
            Some(i64::from(req.quality.unwrap_or(80))),
        ),
    }
}

/// A script answering the page position and size of the first element that
/// `selector` matches (scrolled into view), `null` when none does, or
/// `{error}` when the selector is invalid.
pub(super) fn element_rect_js(selector: &str) -> String {
    let selector_json = serde_json::to_string(selector).unwrap_or_default();
    format!(
        "(() => {{ let e; try {{ e = document.querySelector({selector_json}); }} catch (err) {{ return {{error: 'invalid'}}; }} if (!e) return null; e.scrollIntoView(); const r = e.getBoundingClientRect(); return {{x: r.left + window.scrollX, y: r.top + window.scrollY, w: r.width, h: r.height}}; }})()"
    )
}

/// The clip of an element from what [`element_rect_js`] answered.
pub(super) fn element_clip(value: Option<serde_json::Value>) -> Result<ClipViewport, ShotError> {
    let rect = match value {
        Some(v) if v.get("error").is_some() => {
            return Err(ShotError::Page("selector: not a valid CSS selector".into()));
        }
        Some(v) if v.is_object() => v,
        _ => return Err(ShotError::Page("selector: no element matches".into())),
    };
    let num = |k: &str| {
        rect.get(k)
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    let (w, h) = (num("w"), num("h"));
    if w < 1.0 || h < 1.0 {
        return Err(ShotError::Page("selector: the element has no size".into()));
    }
    Ok(ClipViewport {
        x: num("x"),
        y: num("y"),
        width: w,
        height: h,
        scale: 1.0,
    })
}

/// `clip` with its width and height cut to [`MAX_CAPTURE_PX`].
pub(super) fn capped(clip: ClipViewport) -> ClipViewport {
    ClipViewport {
        width: clip.width.min(MAX_CAPTURE_PX),
        height: clip.height.min(MAX_CAPTURE_PX),
        ..clip
    }
}

/// The whole page from its top left, at most [`MAX_CAPTURE_PX`] each way,
/// with the viewport resized to it (so that the page lays out as tall).
pub(super) async fn full_page_clip(page: &Page) -> Result<ClipViewport, ShotError> {
    let size = page.layout_metrics().await.map_err(cdp)?.css_content_size;
    let clip = capped(ClipViewport {
        x: 0.0,
        y: 0.0,
        width: size.width.max(1.0),
        height: size.height.max(1.0),
        scale: 1.0,
    });
    page.execute(SetDeviceMetricsOverrideParams::new(
        clip.width.ceil() as i64,
        clip.height.ceil() as i64,
        1.0,
        false,
    ))
    .await
    .map_err(cdp)?;
    Ok(clip)
}

/// A page in a new browser context whose requests go through `proxy`.
pub(super) async fn open_page(
    browser: &Browser,
    proxy: &Listener,
) -> Result<(Page, BrowserContextId), CdpError> {
    let context = browser
        .create_browser_context(
            CreateBrowserContextParams::builder()
                .proxy_server(proxy.proxy_url())
                .proxy_bypass_list("<-loopback>")
                .build(),
        )
        .await?;
    let target = CreateTargetParams::builder()
        .url("about:blank")
        .browser_context_id(context.clone())
        .build()
        .map_err(CdpError::msg)?;
    match browser.new_page(target).await {
        Ok(page) => Ok((page, context)),
        Err(e) => {
            let _ = browser.dispose_browser_context(context).await;
            Err(e)
        }
    }
}

/// Whether the proxy refused the host and port of the job's own URL.
pub(super) fn proxy_refused_url(proxy: &Listener, url: &str) -> bool {
    let Ok(url) = url::Url::parse(url) else {
        return false;
    };
    let (Some(host), Some(port)) = (url.host_str(), url.port_or_known_default()) else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let target = format!("{}:{port}", host.to_ascii_lowercase());
    proxy.refused().contains(&target)
}

/// Requests in flight and when that number last changed.
#[derive(Default)]
pub(super) struct Inflight {
    count: std::sync::Mutex<(i64, Option<Instant>)>,
}

impl Inflight {
    fn change(&self, delta: i64) {
        if let Ok(mut c) = self.count.lock() {
            c.0 = (c.0 + delta).max(0);
            c.1 = Some(Instant::now());
        }
    }

    /// Returns once no request has been in flight for `quiet`.
    pub(super) async fn wait_idle(&self, quiet: Duration) {
        loop {
            let (n, last) = self.count.lock().map(|c| *c).unwrap_or((0, None));
            let idle_for = last.map(|t| t.elapsed()).unwrap_or(quiet);
            if n == 0 && idle_for >= quiet {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
