//! The one backoff schedule of the service: exponential from a base, capped,
//! less up to a quarter of jitter. Job retries, the Claude API client's
//! retries and the alert webhook's deliveries all wait by it.

use std::time::Duration;

/// `min(base * 2^retries_done, max)`: the wait before retry number
/// `retries_done + 1`, without jitter.
pub fn exponential(retries_done: u32, base: Duration, max: Duration) -> Duration {
    base.saturating_mul(2u32.saturating_pow(retries_done.min(30)))
        .min(max)
}

/// `delay` less up to 25 %: `jitter` in `[0, 1]` (a uniform random draw)
/// takes that share of the quarter off, so that clients that failed together
/// do not retry together.
pub fn jittered(delay: Duration, jitter: f64) -> Duration {
    delay.mul_f64(1.0 - 0.25 * jitter.clamp(0.0, 1.0))
}

/// [`exponential`] with [`jittered`] applied.
pub fn backoff(retries_done: u32, base: Duration, max: Duration, jitter: f64) -> Duration {
    jittered(exponential(retries_done, base, max), jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_wait_doubles_from_the_base_up_to_the_cap() {
        let (base, max) = (Duration::from_millis(500), S(8));
        let waits: Vec<Duration> = (0..6).map(|n| exponential(n, base, max)).collect();
        assert_eq!(
            waits,
            [Duration::from_millis(500), S(1), S(2), S(4), S(8), S(8)]
        );
        assert_eq!(exponential(u32::MAX, S(1), S(60)), S(60));
    }

    #[test]
    fn jitter_takes_at_most_a_quarter_off() {
        assert_eq!(jittered(S(4), 0.0), S(4));
        assert_eq!(jittered(S(4), 1.0), S(3));
        assert_eq!(jittered(S(4), 0.5), Duration::from_millis(3500));
        assert_eq!(jittered(S(4), 7.0), S(3));
        assert_eq!(backoff(1, S(1), S(8), 1.0), Duration::from_millis(1500));
    }
}
