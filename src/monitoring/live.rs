//! Live, in-process latency statistics per route: a ring of one-minute
//! histograms per (method, route) for the last hour, and a "since the last
//! alert evaluation" histogram. Histograms are the one estimator's fixed
//! arrays ([`super::latency`]), so memory is bounded by the number of route
//! templates (about 1.7 KB per route and minute with traffic), and merging
//! is adding arrays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use super::latency::Histogram;

/// The status class labels, in order.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Minutes kept for live windows.
pub const LIVE_MINUTES: usize = 60;

/// The latencies of a set of requests and how many answered 5xx.
#[derive(Clone, Default)]
pub struct LatencyHist {
    pub latency: Histogram,
    pub errors: u64,
}

impl LatencyHist {
    #[inline]
    pub fn record(&mut self, ms: f64, server_error: bool) {
        self.latency.record_ms(ms);
        self.errors += u64::from(server_error);
    }

    pub fn merge(&mut self, other: &LatencyHist) {
        self.latency.merge(&other.latency);
        self.errors += other.errors;
    }

    pub fn count(&self) -> u64 {
        self.latency.count
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        self.latency.quantile_ms(q)
    }
}

struct Slot {
    minute: i64,
    hist: LatencyHist,
}

struct RouteLive {
    slots: Vec<Option<Slot>>,
    pending: LatencyHist,
}

/// Everything kept per (method, route template): the live histograms and
/// the route's Prometheus handles (one pair per status class), looked up
/// once per request without allocating.
pub struct RouteStats {
    pub method: &'static str,
    pub route: Arc<str>,
    live: Mutex<RouteLive>,
    metrics: [OnceLock<(metrics::Counter, metrics::Histogram)>; STATUS_CLASSES.len()],
}

impl RouteStats {
    fn new(method: &'static str, route: &str) -> Self {
        Self {
            method,
            route: Arc::from(route),
            live: Mutex::new(RouteLive {
                slots: (0..LIVE_MINUTES).map(|_| None).collect(),
                pending: LatencyHist::default(),
            }),
            metrics: Default::default(),
        }
    }

    /// Adds one request to the current minute and the pending histogram.
    pub fn record(&self, ms: f64, server_error: bool) {
        let minute = minute_now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let idx = minute.rem_euclid(LIVE_MINUTES as i64) as usize;
        let slot = &mut live.slots[idx];
        match slot {
            Some(s) if s.minute == minute => s.hist.record(ms, server_error),
            _ => {
                let mut hist = LatencyHist::default();
                hist.record(ms, server_error);
                *slot = Some(Slot { minute, hist });
            }
        }
        live.pending.record(ms, server_error);
    }

    /// The request counter and duration histogram of this route for a
    /// status code (by class, so label sets stay bounded).
    pub fn metrics(&self, status: u16) -> &(metrics::Counter, metrics::Histogram) {
        let class = status_class(status);
        let i = STATUS_CLASSES.iter().position(|c| *c == class).unwrap_or(0);
        self.metrics[i].get_or_init(|| {
            let labels = [
                ("route", self.route.to_string()),
                ("method", self.method.to_string()),
                ("status", class.to_string()),
            ];
            (
                metrics::counter!("hs_http_requests_total", &labels),
                metrics::histogram!("hs_http_request_duration_seconds", &labels),
            )
        })
    }
}

/// Statistics of one route over a window.
pub struct RouteWindow {
    pub method: String,
    pub route: String,
    pub hist: LatencyHist,
}

/// The methods with their own statistics; any other counts as `OTHER`.
const METHODS: [&str; 8] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "OTHER",
];

/// Per-route statistics, one map per method so that a lookup borrows the
/// route template instead of building a key.
#[derive(Default)]
pub struct LiveStats {
    routes: [RwLock<HashMap<Box<str>, Arc<RouteStats>>>; METHODS.len()],
}

fn minute_now() -> i64 {
    chrono::Utc::now().timestamp() / 60
}

impl LiveStats {
    /// The statistics of a (method label, route template), created on first
    /// use. Route templates are bounded (unmatched paths share one), so the
    /// map is too.
    pub fn route(&self, method: &'static str, route: &str) -> Arc<RouteStats> {
        let i = METHODS
            .iter()
            .position(|m| *m == method)
            .unwrap_or(METHODS.len() - 1);
        let map = &self.routes[i];
        if let Some(entry) = map.read().unwrap_or_else(|e| e.into_inner()).get(route) {
            return entry.clone();
        }
        map.write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(Box::from(route))
            .or_insert_with(|| Arc::new(RouteStats::new(METHODS[i], route)))
            .clone()
    }

    fn each(&self, mut f: impl FnMut(&RouteStats)) {
        for map in &self.routes {
            for entry in map.read().unwrap_or_else(|e| e.into_inner()).values() {
                f(entry);
            }
        }
    }

    /// Per-route statistics of the last `minutes` minutes (the current,
    /// partial minute included).
    pub fn window(&self, minutes: usize) -> Vec<RouteWindow> {
        let minutes = minutes.clamp(1, LIVE_MINUTES) as i64;
        let now = minute_now();
        let mut out = Vec::new();
        self.each(|entry| {
            let live = entry.live.lock().unwrap_or_else(|e| e.into_inner());
            let mut hist = LatencyHist::default();
            for s in live.slots.iter().flatten() {
                if s.minute > now - minutes && s.minute <= now {
                    hist.merge(&s.hist);
                }
            }
            if hist.count() > 0 {
                out.push(RouteWindow {
                    method: entry.method.to_string(),
                    route: entry.route.to_string(),
                    hist,
                });
            }
        });
        out
    }

    /// One histogram per minute of the last `minutes` minutes (oldest first,
    /// the current minute last, empty minutes included), over the routes
    /// matching the filters.
    pub fn series(
        &self,
        minutes: usize,
        method: Option<&str>,
        route: Option<&str>,
    ) -> (i64, Vec<LatencyHist>) {
        let minutes = minutes.clamp(1, LIVE_MINUTES);
        let now = minute_now();
        let first = now - minutes as i64 + 1;
        let mut out = vec![LatencyHist::default(); minutes];
        self.each(|entry| {
            if method.is_some_and(|m| m != entry.method)
                || route.is_some_and(|r| r != &*entry.route)
            {
                return;
            }
            let live = entry.live.lock().unwrap_or_else(|e| e.into_inner());
            for s in live.slots.iter().flatten() {
                if (first..=now).contains(&s.minute) {
                    out[(s.minute - first) as usize].merge(&s.hist);
                }
            }
        });
        (first * 60, out)
    }

    /// Everything recorded since the previous call, over all routes.
    pub fn take_pending(&self) -> LatencyHist {
        let mut total = LatencyHist::default();
        self.each(|entry| {
            let mut live = entry.live.lock().unwrap_or_else(|e| e.into_inner());
            if live.pending.count() > 0 {
                total.merge(&live.pending);
                live.pending = LatencyHist::default();
            }
        });
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_classes() {
        assert_eq!(status_class(204), "2xx");
        assert_eq!(status_class(429), "4xx");
        assert_eq!(status_class(503), "5xx");
    }

    #[test]
    fn pending_statistics_are_taken_once() {
        let live = LiveStats::default();
        live.route("GET", "/a").record(1.0, true);
        live.route("GET", "/b").record(3.0, false);
        let p = live.take_pending();
        assert_eq!((p.count(), p.errors), (2, 1));
        assert_eq!(live.take_pending().count(), 0);
        assert_eq!(live.window(5).len(), 2);
    }
}
