//! Measurements of a load test and the report built from them: per-worker
//! recorders (no sharing on the hot path), per-second timeline aggregation,
//! latency statistics and threshold verdicts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::model::{
    Errors, LatencyBucket, LatencyMs, ThresholdVerdict, Thresholds, TimelinePoint, Totals,
};
use crate::monitoring::latency::{self, Histogram};

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

/// The estimator's histogram (the same buckets as the live figures and the
/// roll-ups) with the exact minimum and the sum of squares, for the report's
/// min and standard deviation.
#[derive(Clone, Default)]
pub struct Stats {
    pub hist: Histogram,
    min_ms: Option<f64>,
    sum_sq: f64,
}

impl Stats {
    pub fn record_us(&mut self, us: u64) {
        let ms = us as f64 / 1000.0;
        self.hist.record_ms(ms);
        self.min_ms = Some(self.min_ms.map_or(ms, |m| m.min(ms)));
        self.sum_sq += ms * ms;
    }

    pub fn add(&mut self, other: &Stats) {
        self.hist.merge(&other.hist);
        self.min_ms = match (self.min_ms, other.min_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.sum_sq += other.sum_sq;
    }

    pub fn count(&self) -> u64 {
        self.hist.count
    }

    /// The estimator's quantile ([`latency::quantile_ms`]: the middle of the
    /// bucket reaching `q`, at most the maximum), raised to the exact
    /// minimum when every value sits low in one bucket: it stays in the
    /// bucket that holds the true quantile.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        if self.hist.count == 0 {
            return 0.0;
        }
        self.hist.quantile_ms(q).max(self.min_ms.unwrap_or(0.0))
    }
}

/// One second of the timeline.
#[derive(Default)]
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    pub hist: Stats,
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
            v.push(Second::default());
        }
        v[i].requests += s.requests;
        v[i].errors += s.errors;
        v[i].hist.add(&s.hist);
    }

    pub fn points(&self) -> Vec<TimelinePoint> {
        let v = self.seconds.lock().unwrap_or_else(|e| e.into_inner());
        v.iter()
            .enumerate()
            .map(|(i, s)| TimelinePoint {
                second: i as u64,
                requests: s.requests,
                p50_ms: s.hist.quantile_ms(0.5),
                p99_ms: s.hist.quantile_ms(0.99),
                errors: s.errors,
            })
            .collect()
    }
}

/// A worker's measurements.
#[derive(Default)]
pub struct Recorder {
    ok: Stats,
    fail: Stats,
    codes: BTreeMap<u16, u64>,
    errors: Errors,
    current_second: u64,
    current: Second,
}

impl Recorder {
    /// Records a request that completed during `second` (since the start).
    pub fn record(&mut self, timeline: &Timeline, second: u64, latency_us: u64, outcome: Outcome) {
        let v = latency_us.clamp(1, MAX_LATENCY_US);
        if second != self.current_second {
            timeline.add(self.current_second, &self.current);
            self.current = Second::default();
            self.current_second = second;
        }
        self.current.requests += 1;
        self.current.hist.record_us(v);
        let failed = outcome.failed();
        if failed {
            self.current.errors += 1;
            self.fail.record_us(v);
        } else {
            self.ok.record_us(v);
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
        self.current = Second::default();
        self
    }
}

/// Every worker's measurements merged.
pub struct Collected {
    pub ok: Stats,
    pub fail: Stats,
    pub codes: BTreeMap<u16, u64>,
    pub errors: Errors,
    pub timeline: Vec<TimelinePoint>,
}

pub fn merge(recorders: Vec<Recorder>, timeline: &Timeline) -> Collected {
    let mut c = Collected {
        ok: Stats::default(),
        fail: Stats::default(),
        codes: BTreeMap::new(),
        errors: Errors::default(),
        timeline: Vec::new(),
    };
    for r in recorders {
        c.ok.add(&r.ok);
        c.fail.add(&r.fail);
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

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Statistics of the estimator's histogram, in milliseconds.
pub fn latency(h: &Stats) -> LatencyMs {
    let n = h.count();
    if n == 0 {
        return LatencyMs::default();
    }
    let mean = h.hist.mean_ms();
    let variance = (h.sum_sq / n as f64 - mean * mean).max(0.0);
    LatencyMs {
        count: n,
        mean: round3(mean),
        stddev: round3(variance.sqrt()),
        min: round3(h.min_ms.unwrap_or(0.0)),
        p50: h.quantile_ms(0.50),
        p75: h.quantile_ms(0.75),
        p90: h.quantile_ms(0.90),
        p95: h.quantile_ms(0.95),
        p99: h.quantile_ms(0.99),
        p999: h.quantile_ms(0.999),
        max: h.hist.max_ms,
    }
}

/// The latency histogram of `h` in the estimator's buckets, from the first
/// non-empty one to the last (empty ones in between as 0), so the counts add
/// up to the count of `h`. A bucket's `leMs` is its exclusive upper bound.
pub fn buckets(h: &Stats) -> Vec<LatencyBucket> {
    let counts: Vec<(usize, u64)> = h.hist.buckets().collect();
    let (Some(&(first, _)), Some(&(last, _))) = (counts.first(), counts.last()) else {
        return Vec::new();
    };
    let mut out: Vec<LatencyBucket> = (first..=last)
        .map(|i| LatencyBucket {
            le_ms: if i == latency::BUCKETS - 1 {
                h.hist.max_ms
            } else {
                latency::bucket_bounds_us(i).1 as f64 / 1000.0
            },
            count: 0,
        })
        .collect();
    for (i, n) in counts {
        out[i - first].count = n;
    }
    out
}

impl Collected {
    pub fn totals(&self) -> Totals {
        let succeeded = self.ok.count();
        let failed = self.fail.count();
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
        all.add(&self.fail);
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
            push("p95Ms", limit, all.quantile_ms(0.95));
        }
        if let Some(limit) = t.p99_ms {
            push("p99Ms", limit, all.quantile_ms(0.99));
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
    fn histogram_buckets_are_the_estimators_and_hold_every_request() {
        assert!(buckets(&Stats::default()).is_empty());
        let mut h = Stats::default();
        for us in [10, 60, 70, 150, 900, 5_000] {
            h.record_us(us);
        }
        let b = buckets(&h);
        assert_eq!(b.iter().map(|x| x.count).sum::<u64>(), 6);
        // Contiguous estimator buckets from the one holding 10 us ([10, 11)
        // us) to the one holding 5 ms.
        assert_eq!(
            b.len(),
            latency::bucket_of_us(5_000) - latency::bucket_of_us(10) + 1
        );
        assert_eq!(b[0].le_ms, 0.011);
        assert_eq!(b[0].count, 1);
        assert!(b.windows(2).all(|w| w[0].le_ms < w[1].le_ms));
        assert_eq!(b.last().unwrap().count, 1);
        assert!(b.last().unwrap().le_ms > 5.0);
    }

    #[test]
    fn percentiles_agree_with_the_estimators_bucket_bounds() {
        // Spread over five decades: each reported percentile lies in the
        // estimator's bucket holding the exact percentile, and equals what
        // the live figures' histogram reads for the same requests.
        let timeline = Timeline::default();
        let mut r = Recorder::default();
        let mut exact: Vec<u64> = Vec::new();
        let mut live = Histogram::default();
        for i in 0..5_000u64 {
            let us = 9 + (i * i * 37) % 900_000;
            exact.push(us);
            live.record_ms(us as f64 / 1000.0);
            r.record(&timeline, i / 1000, us, Outcome::Status(200));
        }
        exact.sort_unstable();
        let c = merge(vec![r.finish(&timeline)], &timeline);
        let l = latency(&c.ok);
        for (q, got) in [
            (0.5, l.p50),
            (0.75, l.p75),
            (0.9, l.p90),
            (0.95, l.p95),
            (0.99, l.p99),
            (0.999, l.p999),
        ] {
            let rank = ((q * exact.len() as f64).ceil() as usize).max(1) - 1;
            let (lo, hi) = latency::bucket_bounds_us(latency::bucket_of_us(exact[rank]));
            let got_us = got * 1000.0;
            assert!(
                lo as f64 <= got_us && got_us < hi as f64,
                "q {q}: {got_us} us outside [{lo}, {hi}) holding {}",
                exact[rank]
            );
            assert_eq!(got, live.quantile_ms(q), "q {q}");
        }
        assert_eq!(l.min, 0.009);
        assert_eq!(l.max, *exact.last().unwrap() as f64 / 1000.0);
        // The timeline's seconds read the same estimator.
        assert!(c.timeline.iter().all(|p| p.p50_ms <= p.p99_ms));
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
