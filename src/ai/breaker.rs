//! The circuit breaker in front of the Claude API.
//!
//! Closed: calls pass; consecutive failures are counted, a success resets
//! the count. After `AI_BREAKER_FAILURES` consecutive failures it opens:
//! calls are refused at once (503 + `Retry-After`) without reaching the API.
//! When `AI_BREAKER_COOLDOWN_SECONDS` have passed it is half-open: exactly
//! one call (the probe) is let through; its success closes the breaker, its
//! failure opens it for another cool-down. A probe that ends without a
//! verdict (the caller went away) lets the next call probe instead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What callers are told to wait while a probe is in flight.
const PROBE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    cooldown: Duration,
}

/// The right to make one upstream call. Report its verdict with
/// [`Permit::success`] or [`Permit::failure`]; dropping it says nothing.
#[derive(Debug)]
pub struct Permit {
    breaker: Arc<Breaker>,
    probe: bool,
    done: bool,
}

impl Breaker {
    pub fn new(threshold: u32, cooldown: Duration) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            cooldown,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call would be admitted now, without taking a permit (and so
    /// without using up the half-open probe). `Err` carries how long to wait.
    pub fn check(&self) -> Result<(), Duration> {
        self.check_at(Instant::now())
    }

    fn check_at(&self, now: Instant) -> Result<(), Duration> {
        match *self.lock() {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => Ok(()),
            State::HalfOpen { probing: false } => Ok(()),
            State::HalfOpen { probing: true } => Err(PROBE_WAIT),
        }
    }

    /// Takes a permit for one call, or says how long to wait.
    pub fn acquire(self: &Arc<Self>) -> Result<Permit, Duration> {
        self.acquire_at(Instant::now())
    }

    fn acquire_at(self: &Arc<Self>, now: Instant) -> Result<Permit, Duration> {
        let mut state = self.lock();
        let probe = match *state {
            State::Closed { .. } => false,
            State::Open { until } if now < until => return Err(until - now),
            State::Open { .. } | State::HalfOpen { probing: false } => {
                *state = State::HalfOpen { probing: true };
                true
            }
            State::HalfOpen { probing: true } => return Err(PROBE_WAIT),
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            done: false,
        })
    }

    /// `closed`, `open` or `half_open` (an open breaker whose cool-down has
    /// passed is half-open: the next call probes).
    pub fn state_name(&self) -> &'static str {
        match *self.lock() {
            State::Closed { .. } => "closed",
            State::Open { until } if Instant::now() < until => "open",
            State::Open { .. } | State::HalfOpen { .. } => "half_open",
        }
    }

    /// Consecutive failures counted while closed.
    pub fn failures(&self) -> u32 {
        match *self.lock() {
            State::Closed { failures } => failures,
            _ => self.threshold,
        }
    }

    fn record(&self, probe: bool, ok: bool, now: Instant) {
        let mut state = self.lock();
        let next = match (*state, ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) => {
                let failures = failures + 1;
                if failures >= self.threshold {
                    tracing::warn!(
                        failures,
                        cooldown_s = self.cooldown.as_secs(),
                        "AI circuit breaker opened"
                    );
                    State::Open {
                        until: now + self.cooldown,
                    }
                } else {
                    State::Closed { failures }
                }
            }
            (State::HalfOpen { .. }, false) if probe => {
                tracing::warn!("AI circuit breaker probe failed; open again");
                State::Open {
                    until: now + self.cooldown,
                }
            }
            // A late failure of a call admitted before the breaker opened
            // does not extend the cool-down.
            (other, false) => other,
        };
        if matches!(*state, State::HalfOpen { .. } | State::Open { .. })
            && matches!(next, State::Closed { .. })
        {
            tracing::info!("AI circuit breaker closed");
        }
        *state = next;
    }

    fn release_probe(&self) {
        let mut state = self.lock();
        if *state == (State::HalfOpen { probing: true }) {
            *state = State::HalfOpen { probing: false };
        }
    }
}

impl Permit {
    /// The upstream answered: the breaker closes (or stays closed).
    pub fn success(mut self) {
        self.done = true;
        self.breaker.record(self.probe, true, Instant::now());
    }

    /// The upstream failed (unreachable, timed out, 5xx, overloaded ...).
    pub fn failure(mut self) {
        self.done = true;
        self.breaker.record(self.probe, false, Instant::now());
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.probe {
            self.breaker.release_probe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let b = Breaker::new(3, COOL);
        b.acquire().unwrap().failure();
        b.acquire().unwrap().failure();
        b.acquire().unwrap().success();
        assert_eq!(b.failures(), 0);
        for _ in 0..3 {
            b.acquire().unwrap().failure();
        }
        assert_eq!(b.state_name(), "open");
        let wait = b.acquire().unwrap_err();
        assert!(wait > Duration::from_secs(9) && wait <= COOL);
        assert!(b.check().is_err());
    }

    #[test]
    fn after_the_cool_down_one_probe_decides() {
        let b = Breaker::new(1, COOL);
        let t0 = Instant::now();
        b.acquire_at(t0).unwrap().failure();
        let later = Instant::now() + COOL + Duration::from_millis(1);
        assert!(b.check_at(later).is_ok());
        let probe = b.acquire_at(later).unwrap();
        assert!(probe.probe);
        assert_eq!(b.acquire_at(later).unwrap_err(), PROBE_WAIT);
        assert!(b.check_at(later).is_err());
        probe.success();
        assert_eq!(b.state_name(), "closed");
        assert!(b.acquire_at(later).is_ok());
    }

    #[test]
    fn a_failed_probe_opens_again() {
        let b = Breaker::new(1, COOL);
        b.acquire().unwrap().failure();
        let later = Instant::now() + COOL + Duration::from_millis(1);
        b.acquire_at(later).unwrap().failure();
        assert_eq!(b.state_name(), "open");
    }

    #[test]
    fn a_probe_dropped_without_verdict_lets_another_probe() {
        let b = Breaker::new(1, COOL);
        b.acquire().unwrap().failure();
        let later = Instant::now() + COOL + Duration::from_millis(1);
        drop(b.acquire_at(later).unwrap());
        let again = b.acquire_at(later).unwrap();
        assert!(again.probe);
    }
}
