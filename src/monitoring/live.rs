//! Live, in-process latency statistics per route: a ring of one-minute
//! histograms per (method, route) for the last hour, and a "since the last
//! alert evaluation" histogram. Histograms are small fixed arrays of
//! logarithmic buckets (10% wide), so memory is bounded by the number of
//! route templates, and merging is adding arrays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

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

/// Buckets of 10% width from 1 microsecond: bucket `i` holds durations in
/// `[1.1^i, 1.1^(i+1))` microseconds; the last one everything above ~3 min.
const BUCKETS: usize = 200;
const GROWTH: f64 = 1.1;
/// Minutes kept for live windows.
pub const LIVE_MINUTES: usize = 60;

#[derive(Clone)]
pub struct LatencyHist {
    counts: Vec<u32>,
    pub count: u64,
    pub errors: u64,
    pub sum_us: u64,
    pub max_us: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            errors: 0,
            sum_us: 0,
            max_us: 0,
        }
    }
}

fn index_of(us: u64) -> usize {
    if us <= 1 {
        return 0;
    }
    let i = ((us as f64).ln() / GROWTH.ln()).floor() as usize;
    i.min(BUCKETS - 1)
}

impl LatencyHist {
    pub fn record(&mut self, us: u64, server_error: bool) {
        let i = index_of(us);
        self.counts[i] = self.counts[i].saturating_add(1);
        self.count += 1;
        self.errors += u64::from(server_error);
        self.sum_us += us;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &LatencyHist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.count += other.count;
        self.errors += other.errors;
        self.sum_us += other.sum_us;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The `q` quantile (0..=1) in milliseconds: the geometric middle of the
    /// bucket holding it, capped by the exact maximum.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        if rank >= self.count {
            return self.max_us as f64 / 1000.0;
        }
        let mut seen = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            seen += u64::from(*c);
            if seen >= rank {
                let mid = GROWTH.powf(i as f64 + 0.5);
                return mid.min(self.max_us as f64) / 1000.0;
            }
        }
        self.max_us as f64 / 1000.0
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_us as f64 / self.count as f64 / 1000.0
        }
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
    pub fn record(&self, us: u64, server_error: bool) {
        let minute = minute_now();
        let mut live = self.live.lock().unwrap_or_else(|e| e.into_inner());
        let idx = minute.rem_euclid(LIVE_MINUTES as i64) as usize;
        let slot = &mut live.slots[idx];
        match slot {
            Some(s) if s.minute == minute => s.hist.record(us, server_error),
            _ => {
                let mut hist = LatencyHist::default();
                hist.record(us, server_error);
                *slot = Some(Slot { minute, hist });
            }
        }
        live.pending.record(us, server_error);
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
            if hist.count > 0 {
                out.push(RouteWindow {
                    method: entry.method.to_string(),
                    route: entry.route.to_string(),
                    hist,
                });
            }
        });
        out
    }

    /// Everything recorded since the previous call, over all routes.
    pub fn take_pending(&self) -> LatencyHist {
        let mut total = LatencyHist::default();
        self.each(|entry| {
            let mut live = entry.live.lock().unwrap_or_else(|e| e.into_inner());
            if live.pending.count > 0 {
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
    fn quantiles_are_within_a_bucket_of_the_truth() {
        let mut h = LatencyHist::default();
        for ms in 1..=100u64 {
            h.record(ms * 1000, false);
        }
        let p50 = h.quantile_ms(0.5);
        let p95 = h.quantile_ms(0.95);
        assert!((45.0..=55.0).contains(&p50), "p50 {p50}");
        assert!((90.0..=100.0).contains(&p95), "p95 {p95}");
        assert_eq!(h.quantile_ms(1.0), 100.0);
    }

    #[test]
    fn pending_statistics_are_taken_once() {
        let live = LiveStats::default();
        live.route("GET", "/a").record(1000, true);
        live.route("GET", "/b").record(3000, false);
        let p = live.take_pending();
        assert_eq!((p.count, p.errors), (2, 1));
        assert_eq!(live.take_pending().count, 0);
        assert_eq!(live.window(5).len(), 2);
    }
}
