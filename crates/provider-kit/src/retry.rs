//! Budgeted retries of provider requests, before the first response byte.
//!
//! # What is retried
//!
//! A request is retried only while nothing of its response has reached the caller:
//!
//! - HTTP ([`crate::http::HttpClient`]): connect failures, resets and timeouts before the response
//!   head, a 5xx other than 501 (Transient), 408/504 (Timeout), and a 429 whose `retry-after` is
//!   absent or at most [`RetryConfig::max_retry_after`] (that long is then slept first). A longer
//!   `retry-after` is not slept on: the error goes back at once so the core can fail over and the
//!   breaker can honour it. The attempt ends at the response head; the body (the audio) is the
//!   caller's, so a body that fails after its first bytes is never retried (the caller would hear
//!   the start twice).
//! - WebSocket ([`crate::ws::connect`]): the handshake only (connection refused or reset, connect
//!   timeout, a 5xx or short-`retry-after` 429 upgrade response). Once the socket is open nothing
//!   is replayed here; resuming a stream is [`crate::ws::Reconnector`]'s and the provider's job.
//! - Never: Auth (401/402/403), Config (404, 405, 426, a bad URL or header) and Permanent (other
//!   4xx, 501) errors: the same request fails the same way. A request whose body cannot be cloned
//!   (a streaming upload, `try_clone() == None`) is sent once. Nor a response head the provider
//!   vetoes ([`RetryVeto`](crate::http::RetryVeto), e.g. OpenAI's billing 429, which only its body
//!   tells from a rate limit).
//!
//! # Deadlines
//!
//! A caller that bounds the whole request (`tokio::time::timeout(wait, …)`) passes the same
//! deadline to [`HttpClient::execute_within`](crate::http::HttpClient::execute_within): a retry
//! whose backoff or `retry-after` would end at or after it is not slept on, and the last attempt's
//! response (or error) goes back at once, so a 429 surfaces as RateLimited with its `retry-after`
//! rather than as the caller's own Timeout. The attempts themselves are not cut at the deadline
//! (the caller's timeout does that, in its own words).
//!
//! Provider synthesis and token requests are treated as idempotent: a request that died before
//! its response head may have reached the vendor, and retrying it costs at most a duplicate
//! billing of one short request, never duplicate audio.
//!
//! # Why a budget
//!
//! Per-request attempt limits alone multiply load during an outage (every session retries, and
//! the core fails over on top). Each [`RetryBudget`] is tower's [`TpsBudget`]: every original
//! request deposits, a retry withdraws, so retries stay within [`RetryConfig::budget_percent`] of
//! recent requests plus a small floor ([`RetryConfig::budget_min_per_sec`]) over a window of
//! [`RetryConfig::budget_ttl`]. An [`HttpClient`](crate::http::HttpClient) owns one budget (one
//! per plugin instance); WebSocket connects share one budget per provider context unless the
//! [`WsConfig`](crate::ws::WsConfig) carries its own. A refused withdrawal returns the error at
//! once. Retries are spaced by a short jittered [`Backoff`].
//!
//! Every decision is counted in `waav_provider_retries_total{provider, transport, outcome}`
//! (`outcome`: `retried`, `budget_exhausted`, `attempts_exhausted`, `retry_after_too_long`,
//! `past_deadline`) and
//! logged at debug with the (already redacted) error, never with the URL.

use crate::backoff::{Backoff, BackoffPolicy};
use crate::redact::Redactor;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;
use waav_plugin_api::{ErrorCategory, PluginError};

/// The metric counting retry decisions.
pub const RETRIES_METRIC: &str = "waav_provider_retries_total";

/// How requests are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Retries per request on top of the first attempt (0: never retry). Default 2.
    pub max_retries: u32,
    /// How long a request's deposit (and a retry's withdrawal) counts in the budget, 1..=60 s.
    /// Default 10 s.
    pub budget_ttl: Duration,
    /// Retries allowed per second of `budget_ttl` regardless of traffic (a new or quiet instance
    /// can still retry). Default 1 (10 retries per 10 s window).
    pub budget_min_per_sec: u32,
    /// Retries allowed as a fraction of requests, 0..=1000. Default 0.2 (one retry per five
    /// requests).
    pub budget_percent: f32,
    /// Spacing of retries (only `initial`, `max_delay`, `multiplier` and `jitter` are used;
    /// `max_retries` bounds the count). Default 50 ms doubling to 1 s, 50 % jitter.
    pub backoff: BackoffPolicy,
    /// The longest `retry-after` (429, or a 503 that sends one) slept on before a retry; a longer
    /// one returns the error at once. Default 1 s.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            budget_ttl: Duration::from_secs(10),
            budget_min_per_sec: 1,
            budget_percent: 0.2,
            backoff: BackoffPolicy {
                initial: Duration::from_millis(50),
                max_delay: Duration::from_secs(1),
                multiplier: 2.0,
                jitter: 0.5,
                max_attempts: None,
                max_elapsed: None,
            },
            max_retry_after: Duration::from_secs(1),
        }
    }
}

impl RetryConfig {
    /// A config that never retries.
    pub fn disabled() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }
}

/// One retry budget, shared by every request of a plugin instance (cheap to clone: clones share
/// the budget).
#[derive(Clone)]
pub struct RetryBudget {
    inner: Arc<BudgetInner>,
}

struct BudgetInner {
    budget: TpsBudget,
    config: RetryConfig,
    provider: String,
    redactor: Redactor,
}

impl fmt::Debug for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryBudget")
            .field("provider", &self.inner.provider)
            .field("config", &self.inner.config)
            .finish()
    }
}

impl RetryBudget {
    /// A budget for `provider` (the metric label) from `config`; out-of-range budget values are
    /// clamped to what [`TpsBudget`] accepts.
    pub fn new(config: RetryConfig, provider: impl Into<String>) -> Self {
        Self::with_redactor(config, provider, Redactor::new())
    }

    /// [`new`](Self::new), with the redactor applied to every logged reason.
    pub fn with_redactor(
        config: RetryConfig,
        provider: impl Into<String>,
        redactor: Redactor,
    ) -> Self {
        let ttl = config
            .budget_ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60));
        let percent = if config.budget_percent.is_finite() {
            config.budget_percent.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let min = config.budget_min_per_sec.min(i32::MAX as u32 - 1);
        Self {
            inner: Arc::new(BudgetInner {
                budget: TpsBudget::new(ttl, min, percent),
                config,
                provider: provider.into(),
                redactor,
            }),
        }
    }

    /// The config it was built from.
    pub fn config(&self) -> &RetryConfig {
        &self.inner.config
    }

    /// The provider label.
    pub fn provider(&self) -> &str {
        &self.inner.provider
    }

    /// The per-request policy for `transport` (`"http"` or `"ws"`).
    pub(crate) fn policy(&self, transport: &'static str) -> RetryPolicy {
        self.policy_until(transport, None)
    }

    /// [`policy`](Self::policy) for a request whose caller gives up at `deadline`: no retry is
    /// slept on past it.
    pub(crate) fn policy_until(
        &self,
        transport: &'static str,
        deadline: Option<Instant>,
    ) -> RetryPolicy {
        RetryPolicy {
            budget: self.clone(),
            transport,
            attempts: 0,
            deposited: false,
            backoff: None,
            deadline,
        }
    }
}

/// The budget shared by every user of `provider` in this process (created from `config` on first
/// use; later configs for the same name are ignored). WebSocket connects use it, as their config
/// is built per session.
pub fn shared_budget(provider: &str, config: &RetryConfig) -> RetryBudget {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static BUDGETS: OnceLock<Mutex<HashMap<String, RetryBudget>>> = OnceLock::new();
    let mut map = BUDGETS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    map.entry(provider.to_owned())
        .or_insert_with(|| RetryBudget::new(config.clone(), provider))
        .clone()
}

impl Replay for () {
    fn replay(&self) -> Option<Self> {
        Some(())
    }
}

/// What an attempt's outcome asks for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Success, or a failure no retry fixes: hand it to the caller.
    Done,
    /// Retryable, waiting at least this long first.
    Retry {
        /// A `retry-after` floor.
        floor: Duration,
        /// The failure, for the log line.
        reason: String,
    },
}

/// A request that can be sent again.
pub(crate) trait Replay: Sized {
    /// A copy for another attempt, or `None` if the body cannot be replayed.
    fn replay(&self) -> Option<Self>;
}

/// An attempt's result that can be classified.
pub(crate) trait Classify {
    /// Whether to retry, ignoring budget and attempt counts.
    fn verdict(&self) -> Verdict;
}

/// The verdict for a categorised error with an optional `retry-after`.
pub(crate) fn verdict_for(
    category: ErrorCategory,
    retry_after: Option<Duration>,
    reason: impl FnOnce() -> String,
) -> Verdict {
    match category {
        ErrorCategory::Transient | ErrorCategory::Timeout | ErrorCategory::RateLimited => {
            Verdict::Retry {
                floor: retry_after.unwrap_or(Duration::ZERO),
                reason: reason(),
            }
        }
        ErrorCategory::Auth
        | ErrorCategory::Config
        | ErrorCategory::Permanent
        | ErrorCategory::Panicked => Verdict::Done,
    }
}

impl<T> Classify for Result<T, PluginError> {
    fn verdict(&self) -> Verdict {
        let Err(e) = self else {
            return Verdict::Done;
        };
        let retry_after = match e {
            PluginError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        };
        verdict_for(e.category(), retry_after, || e.to_string())
    }
}

/// The per-request state of tower's retry: the budget, attempts so far and the backoff.
pub(crate) struct RetryPolicy {
    budget: RetryBudget,
    transport: &'static str,
    attempts: u32,
    deposited: bool,
    backoff: Option<Backoff>,
    /// When the caller gives up (`None`: no deadline).
    deadline: Option<Instant>,
}

impl Clone for RetryPolicy {
    /// A clone starts a new request with the same deadline (tower clones the policy once per
    /// call).
    fn clone(&self) -> Self {
        self.budget.policy_until(self.transport, self.deadline)
    }
}

impl RetryPolicy {
    fn count(&self, outcome: &'static str) {
        metrics::counter!(
            RETRIES_METRIC,
            "provider" => self.budget.inner.provider.clone(),
            "transport" => self.transport,
            "outcome" => outcome,
        )
        .increment(1);
    }

    /// The delay before the next attempt, or `None` to hand `verdict`'s result to the caller.
    fn decide(&mut self, verdict: Verdict) -> Option<Duration> {
        let Verdict::Retry { floor, reason } = verdict else {
            return None;
        };
        let reason = self.budget.inner.redactor.redact(&reason);
        let cfg = &self.budget.inner.config;
        let provider = &self.budget.inner.provider;
        if floor > cfg.max_retry_after {
            tracing::debug!(provider = %provider, transport = self.transport, retry_after_ms = floor.as_millis() as u64, error = %reason, "not retrying: retry-after too long");
            self.count("retry_after_too_long");
            return None;
        }
        if self.attempts >= cfg.max_retries {
            if cfg.max_retries > 0 {
                tracing::debug!(provider = %provider, transport = self.transport, attempts = self.attempts + 1, error = %reason, "not retrying: attempts exhausted");
                self.count("attempts_exhausted");
            }
            return None;
        }
        let backoff = self
            .backoff
            .get_or_insert_with(|| Backoff::new(cfg.backoff.clone()));
        let delay = backoff
            .next_delay_at_least(floor)
            .unwrap_or(floor)
            .max(floor);
        if let Some(deadline) = self.deadline {
            // Checked before the budget: a retry not taken withdraws nothing.
            if Instant::now() + delay >= deadline {
                tracing::debug!(provider = %provider, transport = self.transport, delay_ms = delay.as_millis() as u64, error = %reason, "not retrying: the wait would pass the caller's deadline");
                self.count("past_deadline");
                return None;
            }
        }
        if !self.budget.inner.budget.withdraw() {
            tracing::debug!(provider = %provider, transport = self.transport, error = %reason, "not retrying: retry budget exhausted");
            self.count("budget_exhausted");
            return None;
        }
        self.attempts += 1;
        tracing::debug!(provider = %provider, transport = self.transport, retry = self.attempts, delay_ms = delay.as_millis() as u64, error = %reason, "retrying");
        self.count("retried");
        Some(delay)
    }
}

impl<Req, Res, E> Policy<Req, Res, E> for RetryPolicy
where
    Req: Replay,
    Result<Res, E>: Classify,
{
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _req: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        self.decide(result.verdict()).map(tokio::time::sleep)
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        if !self.deposited {
            // Every original request earns retries for later ones, replayable or not.
            self.deposited = true;
            self.budget.inner.budget.deposit();
        }
        if self.budget.inner.config.max_retries == 0 {
            return None;
        }
        req.replay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(cfg: RetryConfig) -> RetryBudget {
        RetryBudget::new(cfg, "test")
    }

    fn retry(reason: &str) -> Verdict {
        Verdict::Retry {
            floor: Duration::ZERO,
            reason: reason.into(),
        }
    }

    #[test]
    fn categories_decide_what_is_retried() {
        use ErrorCategory::*;
        for c in [Transient, Timeout, RateLimited] {
            assert!(matches!(
                verdict_for(c, None, String::new),
                Verdict::Retry { .. }
            ));
        }
        for c in [Auth, Config, Permanent, Panicked] {
            assert_eq!(verdict_for(c, None, String::new), Verdict::Done);
        }
        let e = PluginError::RateLimited {
            retry_after: Some(Duration::from_millis(300)),
            message: "slow".into(),
        };
        assert!(
            matches!(Err::<(), _>(e).verdict(), Verdict::Retry { floor, .. } if floor == Duration::from_millis(300))
        );
        assert_eq!(Ok::<(), PluginError>(()).verdict(), Verdict::Done);
    }

    #[test]
    fn attempts_and_retry_after_bound_one_request() {
        let b = budget(RetryConfig {
            budget_min_per_sec: 100,
            ..RetryConfig::default()
        });
        let mut p = b.policy("http");
        assert!(p.decide(retry("a")).is_some());
        assert!(p.decide(retry("b")).is_some());
        assert_eq!(p.decide(retry("c")), None, "max_retries is 2");
        // A clone is a fresh request.
        let mut q = p.clone();
        let long = Verdict::Retry {
            floor: Duration::from_secs(5),
            reason: "429".into(),
        };
        assert_eq!(q.decide(long), None, "a long retry-after is not slept on");
        let short = Verdict::Retry {
            floor: Duration::from_millis(700),
            reason: "429".into(),
        };
        assert!(q.decide(short).unwrap() >= Duration::from_millis(700));
        assert_eq!(q.decide(Verdict::Done), None);
    }

    #[tokio::test]
    async fn no_retry_is_slept_on_past_the_deadline() {
        let b = budget(RetryConfig {
            budget_min_per_sec: 100,
            ..RetryConfig::default()
        });
        let mut p = b.policy_until("http", Some(Instant::now() + Duration::from_millis(900)));
        let after = |ms| Verdict::Retry {
            floor: Duration::from_millis(ms),
            reason: "429".into(),
        };
        // 950 ms is within max_retry_after (1 s) but ends after the deadline.
        assert_eq!(p.decide(after(950)), None, "950 ms would end after 900 ms");
        assert!(p.decide(after(100)).unwrap() >= Duration::from_millis(100));
        // A clone (a new request) keeps the deadline.
        let mut q = p.clone();
        assert_eq!(q.decide(after(950)), None);
        // Without a deadline the same wait is taken.
        let mut r = b.policy("http");
        assert!(r.decide(after(950)).unwrap() >= Duration::from_millis(950));
    }

    #[test]
    fn the_budget_caps_retries_across_requests() {
        // No floor; one retry per five requests.
        let b = budget(RetryConfig {
            budget_min_per_sec: 0,
            budget_percent: 0.2,
            budget_ttl: Duration::from_secs(60),
            ..RetryConfig::default()
        });
        let mut retried = 0;
        for _ in 0..20 {
            let mut p = b.policy("http");
            let _ = Policy::<Dummy, (), PluginError>::clone_request(&mut p, &Dummy);
            while p.decide(retry("x")).is_some() {
                retried += 1;
            }
        }
        assert!(retried >= 1, "some retries are allowed");
        assert!(retried <= 4, "at most 20 % of 20 requests: {retried}");
    }

    struct Dummy;
    impl Replay for Dummy {
        fn replay(&self) -> Option<Self> {
            Some(Dummy)
        }
    }
}
