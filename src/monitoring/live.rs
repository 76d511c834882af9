//! Live, in-process latency statistics per route: a ring of one-minute
//! histograms per (method, route) for the last hour, and a "since the last
//! alert evaluation" histogram. Histograms are small fixed arrays of
//! logarithmic buckets (10% wide), so memory is bounded by the number of
//! route templates, and merging is adding arrays.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

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

/// Statistics of one route over a window.
pub struct RouteWindow {
    pub method: String,
    pub route: String,
    pub hist: LatencyHist,
}

/// (method, route)
type RouteKey = (String, String);

#[derive(Default)]
pub struct LiveStats {
    routes: RwLock<HashMap<RouteKey, Arc<Mutex<RouteLive>>>>,
}

fn minute_now() -> i64 {
    chrono::Utc::now().timestamp() / 60
}

impl LiveStats {
    pub fn record(&self, method: &str, route: &str, us: u64, server_error: bool) {
        let entry = {
            let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
            map.get(&(method.to_string(), route.to_string())).cloned()
        };
        let entry = match entry {
            Some(e) => e,
            None => {
                let mut map = self.routes.write().unwrap_or_else(|e| e.into_inner());
                map.entry((method.to_string(), route.to_string()))
                    .or_insert_with(|| {
                        Arc::new(Mutex::new(RouteLive {
                            slots: (0..LIVE_MINUTES).map(|_| None).collect(),
                            pending: LatencyHist::default(),
                        }))
                    })
                    .clone()
            }
        };
        let minute = minute_now();
        let mut live = entry.lock().unwrap_or_else(|e| e.into_inner());
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

    /// Per-route statistics of the last `minutes` minutes (the current,
    /// partial minute included).
    pub fn window(&self, minutes: usize) -> Vec<RouteWindow> {
        let minutes = minutes.clamp(1, LIVE_MINUTES) as i64;
        let now = minute_now();
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for ((method, route), entry) in map.iter() {
            let live = entry.lock().unwrap_or_else(|e| e.into_inner());
            let mut hist = LatencyHist::default();
            for s in live.slots.iter().flatten() {
                if s.minute > now - minutes && s.minute <= now {
                    hist.merge(&s.hist);
                }
            }
            if hist.count > 0 {
                out.push(RouteWindow {
                    method: method.clone(),
                    route: route.clone(),
                    hist,
                });
            }
        }
        out
    }

    /// Everything recorded since the previous call, over all routes.
    pub fn take_pending(&self) -> LatencyHist {
        let map = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut total = LatencyHist::default();
        for entry in map.values() {
            let mut live = entry.lock().unwrap_or_else(|e| e.into_inner());
            if live.pending.count > 0 {
                total.merge(&live.pending);
                live.pending = LatencyHist::default();
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        live.record("GET", "/a", 1000, true);
        live.record("GET", "/b", 3000, false);
        let p = live.take_pending();
        assert_eq!((p.count, p.errors), (2, 1));
        assert_eq!(live.take_pending().count, 0);
        assert_eq!(live.window(5).len(), 2);
    }
}
