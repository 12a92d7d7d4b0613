//! A circuit breaker: after `failure_threshold` consecutive failures calls fail fast for
//! `open_for`; then one probe is let through (half-open) and its outcome closes or re-opens it.
//! The state machine is separate from the tower layer so non-tower clients (the HTTP payment
//! gateway) share it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probe_in_flight: bool,
    opened_count: u64,
}

/// Shared by every clone; one breaker per downstream dependency.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    name: Arc<str>,
    config: BreakerConfig,
    inner: Arc<Mutex<Inner>>,
}

/// The call is refused because the breaker is open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("circuit breaker for {0} is open")]
pub struct BreakerOpen(pub Arc<str>);

/// Permission to make one call; report its outcome with [`Permit::record`]. Dropping a permit
/// without recording counts as neither success nor failure (e.g. the caller was cancelled).
#[must_use]
pub struct Permit {
    breaker: CircuitBreaker,
    probe: bool,
    recorded: bool,
}

impl CircuitBreaker {
    pub fn new(name: impl Into<Arc<str>>, config: BreakerConfig) -> Self {
        let inner = Inner {
            consecutive_failures: 0,
            open_until: None,
            probe_in_flight: false,
            opened_count: 0,
        };
        Self {
            name: name.into(),
            config,
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn state(&self) -> BreakerState {
        let inner = self.inner.lock().expect("breaker lock");
        match inner.open_until {
            None => BreakerState::Closed,
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// How many times the breaker has opened since it was made (for metrics and tests).
    pub fn opened_count(&self) -> u64 {
        self.inner.lock().expect("breaker lock").opened_count
    }

    pub fn try_acquire(&self) -> Result<Permit, BreakerOpen> {
        let mut inner = self.inner.lock().expect("breaker lock");
        let probe = match inner.open_until {
            None => false,
            Some(until) if Instant::now() < until => return Err(BreakerOpen(self.name.clone())),
            Some(_) if inner.probe_in_flight => return Err(BreakerOpen(self.name.clone())),
            Some(_) => {
                inner.probe_in_flight = true;
                true
            }
        };
        Ok(Permit {
            breaker: self.clone(),
            probe,
            recorded: false,
        })
    }

    fn record(&self, probe: bool, success: bool) {
        let mut inner = self.inner.lock().expect("breaker lock");
        if probe {
            inner.probe_in_flight = false;
        }
        if success {
            if inner.open_until.is_some() {
                tracing::info!(dependency = %self.name, "circuit closed");
            }
            inner.consecutive_failures = 0;
            inner.open_until = None;
            return;
        }
        inner.consecutive_failures += 1;
        if probe || inner.consecutive_failures >= self.config.failure_threshold {
            if inner.open_until.is_none() || probe {
                inner.opened_count += 1;
                tracing::warn!(dependency = %self.name, failures = inner.consecutive_failures, "circuit opened");
            }
            inner.open_until = Some(Instant::now() + self.config.open_for);
        }
    }
}

impl Permit {
    pub fn record(mut self, success: bool) {
        self.recorded = true;
        self.breaker.record(self.probe, success);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.recorded && self.probe {
            // A cancelled probe must not leave the breaker half-open forever.
            self.breaker.inner.lock().expect("breaker lock").probe_in_flight = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for_ms: u64) -> CircuitBreaker {
        CircuitBreaker::new(
            "dep",
            BreakerConfig {
                failure_threshold: 3,
                open_for: Duration::from_millis(open_for_ms),
            },
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(60_000);
        for _ in 0..2 {
            b.try_acquire().unwrap().record(false);
        }
        b.try_acquire().unwrap().record(true);
        for _ in 0..2 {
            b.try_acquire().unwrap().record(false);
        }
        assert_eq!(b.state(), BreakerState::Closed, "a success resets the count");
        b.try_acquire().unwrap().record(false);
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.try_acquire().is_err());
        assert_eq!(b.opened_count(), 1);
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_outcome_decides() {
        let b = breaker(1);
        for _ in 0..3 {
            b.try_acquire().unwrap().record(false);
        }
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let probe = b.try_acquire().expect("one probe");
        assert!(b.try_acquire().is_err(), "only one probe at a time");
        probe.record(false);
        assert_eq!(b.opened_count(), 2, "a failed probe re-opens");
        std::thread::sleep(Duration::from_millis(5));
        b.try_acquire().unwrap().record(true);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_dropped_probe_frees_the_half_open_slot() {
        let b = breaker(1);
        for _ in 0..3 {
            b.try_acquire().unwrap().record(false);
        }
        std::thread::sleep(Duration::from_millis(5));
        drop(b.try_acquire().unwrap());
        assert!(b.try_acquire().is_ok());
    }
}
