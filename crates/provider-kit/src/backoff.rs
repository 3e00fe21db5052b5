//! Exponential backoff with jitter, bounded by attempts and by elapsed time.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};
use waav_plugin_api::PluginError;

/// How to space out retries.
#[derive(Debug, Clone, PartialEq)]
pub struct BackoffPolicy {
    /// The first delay.
    pub initial: Duration,
    /// No delay is longer than this (before jitter).
    pub max_delay: Duration,
    /// Each delay is the previous one times this.
    pub multiplier: f64,
    /// Fraction (0..=1) of each delay that is randomised away, so many sessions dropped by one
    /// outage do not reconnect in lockstep.
    pub jitter: f64,
    /// Give up after this many retries (`None`: no limit).
    pub max_attempts: Option<u32>,
    /// Give up once this much time has passed since the first failure (`None`: no limit).
    pub max_elapsed: Option<Duration>,
}

impl Default for BackoffPolicy {
    /// 100 ms doubling to 5 s, 50 % jitter, at most 5 retries within 30 s.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.5,
            max_attempts: Some(5),
            max_elapsed: Some(Duration::from_secs(30)),
        }
    }
}

/// The running state of one retry sequence.
#[derive(Debug)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
    started: Instant,
    rng: u64,
}

impl Backoff {
    /// Starts a sequence now.
    pub fn new(policy: BackoffPolicy) -> Self {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x9E37_79B9_7F4A_7C15);
        Self {
            policy,
            attempt: 0,
            started: Instant::now(),
            rng: h.finish() | 1,
        }
    }

    /// How many delays were handed out.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Starts over (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.started = Instant::now();
    }

    /// The delay before the next retry, or `None` when the policy says give up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.next_delay_at_least(Duration::ZERO)
    }

    /// Like [`next_delay`](Self::next_delay) but never shorter than `floor` (a vendor's
    /// `retry-after`); gives up if waiting would cross `max_elapsed`.
    pub fn next_delay_at_least(&mut self, floor: Duration) -> Option<Duration> {
        let p = self.policy.clone();
        if p.max_attempts.is_some_and(|m| self.attempt >= m) {
            return None;
        }
        let exp = p.multiplier.max(1.0).powi(self.attempt.min(63) as i32);
        let base = p.initial.as_secs_f64() * exp;
        let base = base.min(p.max_delay.as_secs_f64());
        let jitter = p.jitter.clamp(0.0, 1.0);
        let delay = Duration::from_secs_f64(base * (1.0 - jitter * self.unit()));
        let delay = delay.max(floor);
        if let Some(max) = p.max_elapsed {
            if self.started.elapsed() + delay > max {
                return None;
            }
        }
        self.attempt += 1;
        Some(delay)
    }

    /// The delay before retrying after `err`, or `None` if `err` is not retryable or the policy
    /// says give up. A rate-limit `retry_after` is a floor.
    pub fn delay_for(&mut self, err: &PluginError) -> Option<Duration> {
        if !err.is_retryable() {
            return None;
        }
        let floor = match err {
            PluginError::RateLimited {
                retry_after: Some(d),
                ..
            } => *d,
            _ => Duration::ZERO,
        };
        self.next_delay_at_least(floor)
    }

    // xorshift64*: jitter needs spread, not cryptographic quality.
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_stops() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
            multiplier: 2.0,
            jitter: 0.0,
            max_attempts: Some(4),
            max_elapsed: None,
        });
        let d: Vec<_> = std::iter::from_fn(|| b.next_delay()).collect();
        assert_eq!(d, [10, 20, 40, 40].map(Duration::from_millis).to_vec());
        b.reset();
        assert_eq!(b.next_delay(), Some(Duration::from_millis(10)));
    }

    #[test]
    fn jitter_stays_in_range_and_varies() {
        let mut b = Backoff::new(BackoffPolicy {
            initial: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            jitter: 0.5,
            max_attempts: None,
            max_elapsed: None,
            ..Default::default()
        });
        let d: Vec<_> = (0..50).map(|_| b.next_delay().unwrap()).collect();
        assert!(d
            .iter()
            .all(|d| *d >= Duration::from_millis(50) && *d <= Duration::from_millis(100)));
        assert!(d.iter().any(|x| *x != d[0]));
    }

    #[test]
    fn elapsed_bound_and_retry_after() {
        let mut b = Backoff::new(BackoffPolicy {
            max_elapsed: Some(Duration::from_secs(1)),
            jitter: 0.0,
            ..Default::default()
        });
        let limited = PluginError::RateLimited {
            retry_after: Some(Duration::from_millis(700)),
            message: String::new(),
        };
        assert_eq!(b.delay_for(&limited), Some(Duration::from_millis(700)));
        let limited = PluginError::RateLimited {
            retry_after: Some(Duration::from_secs(5)),
            message: String::new(),
        };
        assert_eq!(b.delay_for(&limited), None, "would cross max_elapsed");
        assert_eq!(b.delay_for(&PluginError::Auth("no".into())), None);
    }
}
