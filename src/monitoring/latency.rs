//! The one latency estimator: every percentile the service shows (live
//! figures, alerts, hourly roll-ups, the console, the API, the analysts'
//! SQL, load-test reports) comes from these buckets and [`quantile_ms`].
//!
//! Buckets are log-linear over whole microseconds, HdrHistogram-style:
//! bucket 0 holds everything under 8 µs; above it, each power of two
//! `[2^k, 2^(k+1))` µs is cut into [`SUB_BUCKETS`] equal parts, up to
//! 2^29 µs (about 537 s); the last bucket holds everything slower. A
//! bucket is at most 1/8 of its lower bound wide, and a percentile is the
//! middle of its bucket (capped by the exact maximum), so from 8 µs to
//! 537 s a reported percentile is within 6.25% of a value in the bucket
//! that holds the true one.
//!
//! The same buckets exist in SQL: migration
//! `20261130170100_latency_buckets.sql` fills `latency_buckets` (index,
//! bounds, value) from the same formula, and `request_rollup_buckets`
//! stores the counts per roll-up (docs/analytics.md has the query).

/// Sub-buckets per power of two (a power of two itself).
pub const SUB_BUCKETS: u64 = 8;
const SUB_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// The first power of two with sub-buckets: 2^3 = 8 µs.
const FIRST_OCTAVE: u32 = SUB_BITS;
/// The last power of two with sub-buckets: [2^28, 2^29) µs.
const LAST_OCTAVE: u32 = 28;
/// Bucket 0, the sub-buckets, and the overflow bucket.
pub const BUCKETS: usize = 2 + ((LAST_OCTAVE - FIRST_OCTAVE + 1) as usize) * SUB_BUCKETS as usize;
/// The first duration of the overflow bucket, in microseconds.
pub const OVERFLOW_US: u64 = 1 << (LAST_OCTAVE + 1);

/// The bucket of a duration given in milliseconds (as the request log
/// stores it): whole microseconds, truncated, exactly as SQL's
/// `CAST(duration_ms * 1000.0 AS INTEGER)`. A few integer operations.
#[inline]
pub fn bucket_of_ms(ms: f64) -> usize {
    // `as` saturates: negative and NaN give 0.
    bucket_of_us((ms * 1000.0) as u64)
}

/// The bucket of a duration in whole microseconds.
#[inline]
pub fn bucket_of_us(us: u64) -> usize {
    if us < SUB_BUCKETS {
        return 0;
    }
    if us >= OVERFLOW_US {
        return BUCKETS - 1;
    }
    let octave = 63 - us.leading_zeros();
    let sub = (us >> (octave - SUB_BITS)) & (SUB_BUCKETS - 1);
    1 + ((octave - FIRST_OCTAVE) as usize) * SUB_BUCKETS as usize + sub as usize
}

/// `[lower, upper)` of a bucket in microseconds (`upper` of the overflow
/// bucket is `u64::MAX`).
pub fn bucket_bounds_us(i: usize) -> (u64, u64) {
    match i {
        0 => (0, SUB_BUCKETS),
        i if i >= BUCKETS - 1 => (OVERFLOW_US, u64::MAX),
        i => {
            let octave = (i as u64 - 1) / SUB_BUCKETS + u64::from(FIRST_OCTAVE);
            let sub = (i as u64 - 1) % SUB_BUCKETS;
            let shift = octave - u64::from(SUB_BITS);
            (
                (SUB_BUCKETS + sub) << shift,
                (SUB_BUCKETS + sub + 1) << shift,
            )
        }
    }
}

/// The value (ms) a percentile falling in bucket `i` reads: the middle of
/// the bucket (`(lower + upper) / 2000.0`, as `latency_buckets.value_ms`),
/// the lower bound for the overflow bucket.
pub fn bucket_value_ms(i: usize) -> f64 {
    let (lower, upper) = bucket_bounds_us(i);
    if i >= BUCKETS - 1 {
        return lower as f64 / 1000.0;
    }
    (lower + upper) as f64 / 2000.0
}

/// The `q` quantile (0..=1) of bucket counts, in ms: the value of the first
/// bucket whose cumulative count reaches `q` x the total, never above
/// `max_ms`; 0 when there is nothing. The SQL in docs/analytics.md
/// ([`crate::analytics::P95_SQL`]) computes exactly this.
pub fn quantile_ms(counts: impl IntoIterator<Item = (usize, u64)>, max_ms: f64, q: f64) -> f64 {
    let counts: Vec<(usize, u64)> = counts.into_iter().filter(|(_, c)| *c > 0).collect();
    let total: u64 = counts.iter().map(|(_, c)| c).sum();
    if total == 0 {
        return 0.0;
    }
    let target = q * total as f64;
    let mut seen = 0u64;
    for (i, c) in counts {
        seen += c;
        if seen as f64 >= target {
            return bucket_value_ms(i).min(max_ms);
        }
    }
    max_ms
}

/// Counts per bucket with the count, sum and maximum: what every window of
/// requests is summarised as. Merging is adding.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    counts: Box<[u64; BUCKETS]>,
    pub count: u64,
    pub sum_ms: f64,
    pub max_ms: f64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: Box::new([0; BUCKETS]),
            count: 0,
            sum_ms: 0.0,
            max_ms: 0.0,
        }
    }
}

impl Histogram {
    #[inline]
    pub fn record_ms(&mut self, ms: f64) {
        self.counts[bucket_of_ms(ms)] += 1;
        self.count += 1;
        self.sum_ms += ms;
        self.max_ms = self.max_ms.max(ms);
    }

    /// Adds `n` durations known only by their bucket (stored roll-ups).
    pub fn add_bucket(&mut self, i: usize, n: u64) {
        if let Some(c) = self.counts.get_mut(i) {
            *c += n;
        }
    }

    /// Adds the count, sum and maximum of durations whose buckets were
    /// added with [`Self::add_bucket`].
    pub fn add_totals(&mut self, count: u64, sum_ms: f64, max_ms: f64) {
        self.count += count;
        self.sum_ms += sum_ms;
        self.max_ms = self.max_ms.max(max_ms);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
        self.add_totals(other.count, other.sum_ms, other.max_ms);
    }

    /// The non-empty buckets as (index, count).
    pub fn buckets(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(i, c)| (i, *c))
    }

    pub fn quantile_ms(&self, q: f64) -> f64 {
        quantile_ms(self.buckets(), self.max_ms, q)
    }

    pub fn mean_ms(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum_ms / self.count as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_8_us_to_past_300_s_in_order() {
        assert_eq!(BUCKETS, 210);
        assert_eq!(bucket_of_us(0), 0);
        assert_eq!(bucket_of_us(7), 0);
        assert_eq!(bucket_of_us(8), 1);
        assert_eq!(bucket_of_us(15), 8);
        assert_eq!(bucket_of_us(16), 9);
        assert!(bucket_of_us(300_000_000) < BUCKETS - 1);
        assert_eq!(bucket_of_us(OVERFLOW_US), BUCKETS - 1);
        assert_eq!(bucket_of_ms(f64::NAN), 0);
        assert_eq!(bucket_of_ms(-1.0), 0);
        assert_eq!(bucket_of_ms(1e12), BUCKETS - 1);
        // Contiguous bounds, each value in its own bucket, width <= 1/8.
        let mut prev_upper = 0;
        for i in 0..BUCKETS {
            let (lo, hi) = bucket_bounds_us(i);
            assert_eq!(lo, prev_upper, "bucket {i}");
            assert_eq!(bucket_of_us(lo), i);
            assert_eq!(bucket_of_us(hi - 1), i);
            if (1..BUCKETS - 1).contains(&i) {
                assert!((hi - lo) * SUB_BUCKETS <= lo, "bucket {i} too wide");
            }
            prev_upper = hi;
        }
    }

    #[test]
    fn quantiles_are_within_the_documented_resolution() {
        // Sub-millisecond requests read as such, not as "1 ms".
        for truth_us in [12u64, 85, 250, 999, 4_321, 77_777, 1_234_567, 299_000_000] {
            let mut h = Histogram::default();
            for _ in 0..100 {
                h.record_ms(truth_us as f64 / 1000.0);
            }
            h.record_ms(truth_us as f64 * 2.0 / 1000.0);
            let p50 = h.quantile_ms(0.5) * 1000.0;
            let err = (p50 - truth_us as f64).abs() / truth_us as f64;
            assert!(err <= 0.0625, "{truth_us} us read as {p50} us");
        }
    }

    #[test]
    fn quantile_is_the_value_of_the_bucket_reaching_the_share_capped_by_max() {
        let mut h = Histogram::default();
        for ms in 1..=100 {
            h.record_ms(f64::from(ms));
        }
        let p95 = h.quantile_ms(0.95);
        assert!((p95 - 95.0).abs() / 95.0 <= 0.0625, "p95 {p95}");
        assert_eq!(h.quantile_ms(1.0), 100.0);
        assert_eq!(Histogram::default().quantile_ms(0.5), 0.0);
        let mut merged = Histogram::default();
        merged.merge(&h);
        merged.merge(&h);
        assert_eq!(merged.count, 200);
        assert_eq!(merged.quantile_ms(0.95), p95);
    }
}
