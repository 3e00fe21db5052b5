//! A circuit breaker per plugin instance, shared by every session of the process.
//!
//! Closed → open after `failures` counted failures within `window` → half-open once `open_for`
//! has passed (or a rate limit's `retry-after`), letting `probes` sessions through → closed on a
//! success, open again on a failure. Auth and config errors never open it (retrying cannot fix
//! them, and they are the caller's to see), and are never retried.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use waav_plugin_api::{ErrorCategory, PluginError};

/// Breaker settings (`resilience.breaker` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerSettings {
    /// Failures within `window` that open the breaker.
    pub failures: u32,
    /// The counting window.
    pub window: Duration,
    /// How long it stays open before probing.
    pub open_for: Duration,
    /// Sessions let through while half-open.
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            failures: 5,
            window: Duration::from_secs(30),
            open_for: Duration::from_secs(15),
            probes: 1,
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Sessions go through.
    Closed,
    /// Sessions fail fast (or fail over) until it half-opens.
    Open,
    /// A few probe sessions go through.
    HalfOpen,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// Failure times within the window (bounded by `failures`).
    recent: Vec<Instant>,
    opened_until: Instant,
    probes_left: u32,
}

/// One instance's breaker. Sessions consult it at connect and report outcomes; the lock is held
/// for a few comparisons, once per connect or failure, never per frame.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// What a transition was, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Closed or half-open → open.
    Opened,
    /// Half-open → closed.
    Closed,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Self {
        Self {
            settings,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                recent: Vec::with_capacity(settings.failures as usize),
                opened_until: Instant::now(),
                probes_left: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state now (an open breaker whose time is up reads as half-open).
    pub fn state(&self) -> BreakerState {
        let mut g = self.lock();
        Self::tick(&mut g, self.settings);
        g.state
    }

    fn tick(g: &mut Inner, s: BreakerSettings) {
        if g.state == BreakerState::Open && Instant::now() >= g.opened_until {
            g.state = BreakerState::HalfOpen;
            g.probes_left = s.probes.max(1);
        }
    }

    /// Whether a new session may use the instance now (a half-open breaker hands out probes).
    pub fn allow(&self) -> bool {
        let mut g = self.lock();
        Self::tick(&mut g, self.settings);
        match g.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen if g.probes_left > 0 => {
                g.probes_left -= 1;
                true
            }
            BreakerState::HalfOpen => false,
        }
    }

    /// A session connected and worked.
    pub fn on_success(&self) -> Option<Transition> {
        let mut g = self.lock();
        g.recent.clear();
        if g.state == BreakerState::HalfOpen {
            g.state = BreakerState::Closed;
            return Some(Transition::Closed);
        }
        None
    }

    /// A connect or a session failed with `error`.
    pub fn on_failure(&self, error: &PluginError) -> Option<Transition> {
        if !counts(error) {
            return None;
        }
        let s = self.settings;
        let now = Instant::now();
        let mut g = self.lock();
        Self::tick(&mut g, s);
        let open_for = match error {
            PluginError::RateLimited {
                retry_after: Some(d),
                ..
            } => (*d).clamp(s.open_for, Duration::from_secs(600)),
            _ => s.open_for,
        };
        let was_open = g.state == BreakerState::Open;
        if g.state == BreakerState::HalfOpen {
            g.state = BreakerState::Open;
            g.opened_until = now + open_for;
            return Some(Transition::Opened);
        }
        g.recent.retain(|t| now.duration_since(*t) < s.window);
        g.recent.push(now);
        // A rate limit opens at once: the vendor said when to come back.
        let limited = matches!(
            error,
            PluginError::RateLimited {
                retry_after: Some(_),
                ..
            }
        );
        if !was_open && (limited || g.recent.len() >= s.failures as usize) {
            g.state = BreakerState::Open;
            g.opened_until = now + open_for;
            g.recent.clear();
            return Some(Transition::Opened);
        }
        None
    }
}

/// Whether an error counts against a provider (and may be retried elsewhere).
pub fn counts(error: &PluginError) -> bool {
    !matches!(
        error.category(),
        ErrorCategory::Auth | ErrorCategory::Config
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failures: 3,
            window: Duration::from_secs(60),
            open_for: Duration::from_millis(50),
            probes: 1,
        }
    }

    fn transient() -> PluginError {
        PluginError::Transient("boom".into())
    }

    #[test]
    fn opens_after_n_failures_half_opens_and_recovers() {
        let b = Breaker::new(settings());
        assert!(b.allow());
        assert_eq!(b.on_failure(&transient()), None);
        assert_eq!(b.on_failure(&transient()), None);
        assert_eq!(b.on_failure(&transient()), Some(Transition::Opened));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(b.allow(), "one probe");
        assert!(!b.allow(), "only one");
        assert_eq!(b.on_success(), Some(Transition::Closed));
        assert!(b.allow());
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = Breaker::new(settings());
        for _ in 0..3 {
            b.on_failure(&transient());
        }
        std::thread::sleep(Duration::from_millis(60));
        assert!(b.allow());
        assert_eq!(b.on_failure(&transient()), Some(Transition::Opened));
        assert!(!b.allow());
    }

    #[test]
    fn auth_and_config_errors_open_nothing_and_success_resets_the_count() {
        let b = Breaker::new(settings());
        for _ in 0..10 {
            assert_eq!(b.on_failure(&PluginError::Auth("no".into())), None);
            assert_eq!(b.on_failure(&PluginError::Config("no".into())), None);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(&transient());
        b.on_failure(&transient());
        b.on_success();
        b.on_failure(&transient());
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn a_rate_limit_with_retry_after_opens_at_once_for_that_long() {
        let b = Breaker::new(settings());
        let e = PluginError::RateLimited {
            message: "slow down".into(),
            retry_after: Some(Duration::from_millis(200)),
        };
        assert_eq!(b.on_failure(&e), Some(Transition::Opened));
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(b.state(), BreakerState::Open, "retry-after beats open_for");
    }
}
