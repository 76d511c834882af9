//! Per-account login backoff: password guessing at one account slows down
//! exponentially, whichever tokens or addresses the guesses come from.
//!
//! Every login attempt counts as a failure of its email until it succeeds
//! (so parallel guesses count too). After [`FREE_FAILURES`] failures in a
//! row, each further attempt is admitted only after a delay that doubles
//! from [`BASE_DELAY`] up to [`MAX_DELAY`]; meanwhile the login answers 429
//! with `Retry-After` without checking the password. A success resets the
//! count. So that a guesser cannot lock the owner out, an address from
//! which the account has logged in before (a session from it is still
//! kept) is not held by the email's backoff, only by its own count for
//! that email and address. Counts are in memory (bounded, forgotten after an
//! hour without attempts) and start again at zero on restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::sync::Cache;

/// Failures in a row admitted without delay.
pub const FREE_FAILURES: u32 = 5;
/// The delay after the first failure beyond [`FREE_FAILURES`].
pub const BASE_DELAY: Duration = Duration::from_secs(2);
/// The longest delay: an attacker keeping an account backed off gets one
/// guess per this period; its owner waits at most this long (none from an
/// address it used before).
pub const MAX_DELAY: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Count {
    failures: u32,
    until: Option<Instant>,
}

/// Failure counts by key (an email, or an email and an address).
#[derive(Clone)]
pub struct LoginBackoff {
    counts: Cache<String, Arc<Mutex<Count>>>,
}

impl Default for LoginBackoff {
    fn default() -> Self {
        Self {
            counts: Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }
}

/// The delay after `failures` failures in a row.
pub fn delay(failures: u32) -> Duration {
    if failures < FREE_FAILURES {
        return Duration::ZERO;
    }
    let doublings = (failures - FREE_FAILURES).min(16);
    (BASE_DELAY * 2u32.pow(doublings)).min(MAX_DELAY)
}

impl LoginBackoff {
    /// Admits an attempt on `key` and counts it as a failure until
    /// [`LoginBackoff::succeeded`]; `Err(wait)` while `key` is backed off
    /// (the attempt is then not counted).
    pub fn attempt(&self, key: &str) -> Result<(), Duration> {
        let count = self.counts.get_with_by_ref(key, Arc::default);
        let mut c = count.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        if let Some(until) = c.until
            && until > now
        {
            return Err(until - now);
        }
        c.failures = c.failures.saturating_add(1);
        c.until = Some(now + delay(c.failures)).filter(|_| c.failures >= FREE_FAILURES);
        Ok(())
    }

    /// The attempt failed: the delay runs from now (not from when the
    /// password check began).
    pub fn failed(&self, key: &str) {
        if let Some(count) = self.counts.get(key) {
            let mut c = count.lock().unwrap_or_else(|e| e.into_inner());
            if c.failures >= FREE_FAILURES {
                c.until = Some(Instant::now() + delay(c.failures));
            }
        }
    }

    /// The attempt succeeded: the count starts again.
    pub fn succeeded(&self, key: &str) {
        self.counts.invalidate(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_after_the_free_failures_and_is_capped() {
        assert_eq!(delay(4), Duration::ZERO);
        assert_eq!(delay(5), Duration::from_secs(2));
        assert_eq!(delay(6), Duration::from_secs(4));
        assert_eq!(delay(12), Duration::from_secs(256));
        assert_eq!(delay(13), MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn five_failures_pass_then_the_key_waits_and_a_success_resets_it() {
        let b = LoginBackoff::default();
        for _ in 0..FREE_FAILURES {
            assert!(b.attempt("a@example.com").is_ok());
            b.failed("a@example.com");
        }
        let wait = b.attempt("a@example.com").unwrap_err();
        assert!(wait > Duration::ZERO && wait <= BASE_DELAY, "{wait:?}");
        assert!(b.attempt("b@example.com").is_ok(), "other keys are free");
        b.succeeded("a@example.com");
        assert!(b.attempt("a@example.com").is_ok());
    }

    #[test]
    fn parallel_attempts_count_before_they_finish() {
        let b = LoginBackoff::default();
        for _ in 0..FREE_FAILURES {
            assert!(b.attempt("a@example.com").is_ok());
        }
        assert!(b.attempt("a@example.com").is_err());
    }
}
