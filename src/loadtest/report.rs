//! Measurements of a load test and the report built from them: per-worker
//! recorders (no sharing on the hot path), per-second timeline aggregation,
//! latency statistics and threshold verdicts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use hdrhistogram::Histogram;

use super::model::{
    Errors, LatencyBucket, LatencyMs, ThresholdVerdict, Thresholds, TimelinePoint, Totals,
};

/// Latencies are recorded in microseconds, clamped to this.
pub const MAX_LATENCY_US: u64 = 3_600_000_000;

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Status(u16),
    Timeout,
    Connect,
    Other,
}

impl Outcome {
    pub fn failed(self) -> bool {
        !matches!(self, Outcome::Status(s) if s < 400)
    }
}

fn histogram(sigfig: u8) -> Histogram<u64> {
    // Auto-resizing: it grows to the largest latency seen, so a worker's
    // histograms stay small.
    Histogram::new(sigfig).expect("valid histogram precision")
}

/// One second of the timeline.
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub hist: Histogram<u64>,
}

impl Second {
    fn new() -> Self {
        Self {
            requests: 0,
            errors: 0,
            hist: histogram(2),
        }
    }
}

/// The timeline shared by the workers: each flushes its current second here
/// when its clock moves on (one lock per worker per second).
#[derive(Default)]
pub struct Timeline {
    seconds: Mutex<Vec<Second>>,
}

impl Timeline {
    fn add(&self, index: u64, s: &Second) {
        if s.requests == 0 {
            return;
        }
        let mut v = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        let i = index as usize;
        while v.len() <= i {
            v.push(Second::new());
        }
        v[i].requests += s.requests;
        v[i].errors += s.errors;
        let _ = v[i].hist.add(&s.hist);
    }

    pub fn points(&self) -> Vec<TimelinePoint> {
        let v = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .enumerate()
            .map(|(i, s)| TimelinePoint {
                second: i as u64,
                requests: s.requests,
                p50_ms: if s.requests == 0 {
                    0.0
                } else {
                    ms(s.hist.value_at_quantile(0.5))
                },
                p99_ms: if s.requests == 0 {
                    0.0
                } else {
                    ms(s.hist.value_at_quantile(0.99))
                },
                errors: s.errors,
            })
            .collect()
    }
}

/// A worker's measurements.
pub struct Recorder {
    ok: Histogram<u64>,
    fail: Histogram<u64>,
    codes: BTreeMap<u16, u64>,
    errors: Errors,
    current_second: u64,
    current: Second,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            ok: histogram(3),
            fail: histogram(3),
            codes: BTreeMap::new(),
            errors: Errors::default(),
            current_second: 0,
            current: Second::new(),
        }
    }
}

impl Recorder {
    /// Records a request that completed during `second` (since the start).
    pub fn record(&mut self, timeline: &Timeline, second: u64, latency_us: u64, outcome: Outcome) {
        let v = latency_us.clamp(1, MAX_LATENCY_US);
        if second != self.current_second {
            timeline.add(self.current_second, &self.current);
            self.current = Second::new();
            self.current_second = second;
        }
        self.current.requests += 1;
        let _ = self.current.hist.record(v);
        let failed = outcome.failed();
        if failed {
            self.current.errors += 1;
            let _ = self.fail.record(v);
        } else {
            let _ = self.ok.record(v);
        }
        match outcome {
            Outcome::Status(code) => {
                *self.codes.entry(code).or_insert(0) += 1;
                match code {
                    400..=499 => self.errors.status4xx += 1,
                    500..=599 => self.errors.status5xx += 1,
                    _ => {}
                }
            }
            Outcome::Timeout => self.errors.timeout += 1,
            Outcome::Connect => self.errors.connect += 1,
            Outcome::Other => self.errors.other += 1,
        }
    }

    /// Flushes the current second to the timeline.
    pub fn finish(mut self, timeline: &Timeline) -> Self {
        timeline.add(self.current_second, &self.current);
        self.current = Second::new();
        self
    }
}

/// Every worker's measurements merged.
pub struct Collected {
    pub ok: Histogram<u64>,
    pub fail: Histogram<u64>,
    pub codes: BTreeMap<u16, u64>,
    pub errors: Errors,
    pub timeline: Vec<TimelinePoint>,
}

pub fn merge(recorders: Vec<Recorder>, timeline: &Timeline) -> Collected {
    let mut c = Collected {
        ok: histogram(3),
        fail: histogram(3),
        codes: BTreeMap::new(),
        errors: Errors::default(),
        timeline: Vec::new(),
    };
    for r in recorders {
        let _ = c.ok.add(&r.ok);
        let _ = c.fail.add(&r.fail);
        for (code, n) in r.codes {
            *c.codes.entry(code).or_insert(0) += n;
        }
        c.errors.timeout += r.errors.timeout;
        c.errors.connect += r.errors.connect;
        c.errors.other += r.errors.other;
        c.errors.status4xx += r.errors.status4xx;
        c.errors.status5xx += r.errors.status5xx;
    }
    c.timeline = timeline.points();
    c
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Statistics of a histogram of microseconds, in milliseconds.
pub fn latency(h: &Histogram<u64>) -> LatencyMs {
    if h.is_empty() {
        return LatencyMs::default();
    }
    LatencyMs {
        count: h.len(),
        mean: round3(h.mean() / 1000.0),
        stddev: round3(h.stdev() / 1000.0),
        min: ms(h.min()),
        p50: ms(h.value_at_quantile(0.50)),
        p75: ms(h.value_at_quantile(0.75)),
        p90: ms(h.value_at_quantile(0.90)),
        p95: ms(h.value_at_quantile(0.95)),
        p99: ms(h.value_at_quantile(0.99)),
        p999: ms(h.value_at_quantile(0.999)),
        max: ms(h.max()),
    }
}

/// Upper bound of the first histogram bucket, in microseconds; each next
/// bucket doubles it (50 us, 100 us, 200 us ... up to the largest latency).
pub const HISTOGRAM_FIRST_US: u64 = 50;

/// The latency histogram of `h` in log-2 buckets from
/// [`HISTOGRAM_FIRST_US`]; every bucket up to the largest latency is listed
/// (empty ones as 0), so the counts add up to `h.len()`. A bucket's bound is
/// the histogram's highest value equivalent to 50 us, 100 us ... (0.049 ms,
/// 0.099 ms at 3 significant digits).
pub fn buckets(h: &Histogram<u64>) -> Vec<LatencyBucket> {
    if h.is_empty() {
        return Vec::new();
    }
    h.iter_log(HISTOGRAM_FIRST_US, 2.0)
        .map(|v| LatencyBucket {
            le_ms: ms(v.value_iterated_to()),
            count: v.count_since_last_iteration(),
        })
        .collect()
}

impl Collected {
    pub fn totals(&self) -> Totals {
        let succeeded = self.ok.len();
        let failed = self.fail.len();
        Totals {
            requests: succeeded + failed,
            succeeded,
            failed,
        }
    }

    pub fn status_codes(&self) -> BTreeMap<String, u64> {
        self.codes
            .iter()
            .map(|(c, n)| (c.to_string(), *n))
            .collect()
    }

    /// The verdict of each threshold set. Latency thresholds apply to all
    /// requests; a test that sent nothing passes none.
    pub fn verdicts(&self, t: &Thresholds) -> Vec<ThresholdVerdict> {
        let mut all = self.ok.clone();
        let _ = all.add(&self.fail);
        let totals = self.totals();
        let mut out = Vec::new();
        let mut push = |name: &str, limit: f64, actual: f64| {
            out.push(ThresholdVerdict {
                name: name.into(),
                limit,
                actual,
                passed: totals.requests > 0 && actual <= limit,
            })
        };
        if let Some(limit) = t.p95_ms {
            push(
                "p95Ms",
                limit,
                if all.is_empty() {
                    0.0
                } else {
                    ms(all.value_at_quantile(0.95))
                },
            );
        }
        if let Some(limit) = t.p99_ms {
            push(
                "p99Ms",
                limit,
                if all.is_empty() {
                    0.0
                } else {
                    ms(all.value_at_quantile(0.99))
                },
            );
        }
        if let Some(limit) = t.error_rate {
            let rate = if totals.requests == 0 {
                0.0
            } else {
                totals.failed as f64 / totals.requests as f64
            };
            push("errorRate", limit, (rate * 1e6).round() / 1e6);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_double_and_hold_every_request() {
        assert!(buckets(&histogram(3)).is_empty());
        let mut h = histogram(3);
        for us in [10, 60, 70, 150, 900, 5_000] {
            h.record(us).unwrap();
        }
        let b = buckets(&h);
        assert_eq!(b.iter().map(|x| x.count).sum::<u64>(), 6);
        // Bounds are the histogram's highest value equivalent to 50 us,
        // 100 us ... (0.049 ms, 0.099 ms at 3 significant digits).
        assert!((b[0].le_ms - 0.05).abs() < 0.002, "{}", b[0].le_ms);
        assert_eq!(b[0].count, 1);
        assert!((b[1].le_ms - 0.1).abs() < 0.002, "{}", b[1].le_ms);
        assert_eq!(b[1].count, 2);
        assert!(b.last().unwrap().le_ms >= 5.0);
    }

    #[test]
    fn counts_percentiles_and_timeline_agree() {
        let timeline = Timeline::default();
        let mut a = Recorder::default();
        let mut b = Recorder::default();
        for i in 0..1000u64 {
            let (r, second) = if i % 2 == 0 {
                (&mut a, i / 400)
            } else {
                (&mut b, i / 400)
            };
            let outcome = match i % 50 {
                0 => Outcome::Status(500),
                1 => Outcome::Timeout,
                _ => Outcome::Status(200),
            };
            r.record(&timeline, second, 1000 + i * 10, outcome);
        }
        let c = merge(vec![a.finish(&timeline), b.finish(&timeline)], &timeline);
        let t = c.totals();
        assert_eq!(t.requests, 1000);
        assert_eq!(t.succeeded + t.failed, t.requests);
        assert_eq!(t.failed, 40);
        assert_eq!(c.timeline.iter().map(|p| p.requests).sum::<u64>(), 1000);
        assert_eq!(c.timeline.iter().map(|p| p.errors).sum::<u64>(), 40);
        assert_eq!(c.timeline.len(), 3);
        let codes: u64 = c.codes.values().sum();
        assert_eq!(
            codes + c.errors.timeout + c.errors.connect + c.errors.other,
            1000
        );
        let l = latency(&c.ok);
        assert!(l.min <= l.p50 && l.p50 <= l.p75 && l.p75 <= l.p90 && l.p90 <= l.p95);
        assert!(l.p95 <= l.p99 && l.p99 <= l.p999 && l.p999 <= l.max);
        assert!((l.p50 - 6.0).abs() < 0.2, "p50 {}", l.p50);
        assert_eq!(l.count, 960);
    }

    #[test]
    fn thresholds_get_verdicts() {
        let timeline = Timeline::default();
        let mut r = Recorder::default();
        for i in 0..100 {
            let o = if i < 10 {
                Outcome::Connect
            } else {
                Outcome::Status(200)
            };
            r.record(&timeline, 0, 2000, o);
        }
        let c = merge(vec![r.finish(&timeline)], &timeline);
        let v = c.verdicts(&Thresholds {
            p95_ms: Some(5.0),
            p99_ms: Some(1.0),
            error_rate: Some(0.05),
        });
        assert_eq!(v.len(), 3);
        assert!(v[0].passed);
        assert!(!v[1].passed);
        assert!(!v[2].passed);
        assert!((v[2].actual - 0.1).abs() < 1e-9);
    }
}
