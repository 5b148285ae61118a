//! Reconnect policy, pure: exponential backoff with jitter, reset only after a connection has
//! stayed up, and a longer penalty when the server rate-limits us. The caller supplies time and
//! randomness, so tests drive it without a clock.

use std::time::Duration;

/// Why the last connection ended, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setback {
    /// Network drop, ping timeout, server restart (503, 500): ordinary backoff.
    Transient,
    /// The server asked us to slow down (429): at least the rate-limit penalty.
    RateLimited,
    /// The server asked for an immediate restart (515, after pairing): no delay.
    RestartRequired,
}

/// Backoff state for one client.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    rate_limit_penalty: Duration,
    stable_after: Duration,
    failures: u32,
}

impl Default for Backoff {
    /// 1 s doubling to a 15-minute cap; 5 minutes after a 429; reset after 60 s of uptime.
    fn default() -> Backoff {
        Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(15 * 60),
            Duration::from_secs(5 * 60),
            Duration::from_secs(60),
        )
    }
}

impl Backoff {
    /// A policy with explicit parameters.
    pub fn new(
        base: Duration,
        cap: Duration,
        rate_limit_penalty: Duration,
        stable_after: Duration,
    ) -> Backoff {
        Backoff {
            base,
            cap,
            rate_limit_penalty,
            stable_after,
            failures: 0,
        }
    }

    /// Consecutive failures counted so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records how long the last connection was up: a stable one resets the backoff.
    pub fn connection_ended(&mut self, up_for: Duration) {
        if up_for >= self.stable_after {
            self.failures = 0;
        }
    }

    /// The delay before the next attempt. `jitter` in [0, 1) spreads clients apart: the delay
    /// is drawn from [½·d, d] where d is the exponential step ("equal jitter").
    pub fn next_delay(&mut self, setback: Setback, jitter: f64) -> Duration {
        if setback == Setback::RestartRequired {
            return Duration::ZERO;
        }
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(self.failures.min(30)).unwrap_or(u32::MAX));
        let step = exp.min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let jitter = jitter.clamp(0.0, 1.0);
        let d = step.mul_f64(0.5 + 0.5 * jitter);
        match setback {
            Setback::RateLimited => d.max(self.rate_limit_penalty),
            _ => d,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_to_the_cap_and_resets_only_when_stable() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..14)
            .map(|_| b.next_delay(Setback::Transient, 1.0).as_secs())
            .collect();
        assert_eq!(&delays[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(*delays.last().unwrap(), 900);
        b.connection_ended(Duration::from_secs(5));
        assert_eq!(b.next_delay(Setback::Transient, 1.0).as_secs(), 900);
        b.connection_ended(Duration::from_secs(120));
        assert_eq!(b.next_delay(Setback::Transient, 1.0).as_secs(), 1);
    }

    #[test]
    fn jitter_rate_limit_and_restart() {
        let mut b = Backoff::default();
        assert_eq!(
            b.next_delay(Setback::Transient, 0.0),
            Duration::from_millis(500)
        );
        assert!(b.next_delay(Setback::RateLimited, 0.0) >= Duration::from_secs(300));
        assert_eq!(b.next_delay(Setback::RestartRequired, 0.7), Duration::ZERO);
    }
}
