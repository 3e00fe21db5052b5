//! Per-client-IP token-bucket rate limiting.
//!
//! `requests_per_second` is a sustained rate and `burst` the bucket size (a deliberate fix of the
//! older gateways, where the two were confused). Refusals are `429 text/plain` with `retry-after`.
//! The core applies it when `limits.requests_per_second` (or `RATE_LIMIT_REQUESTS_PER_SECOND`) is
//! set; the same limiter is also a middleware plugin (`type: token_bucket`).
//!
//! Every client IP gets an entry in a map, so a stream of distinct IPs would grow it forever.
//! Idle entries (whose bucket has refilled, so they are indistinguishable from a fresh one) are
//! evicted on the request path, every `max(PRUNE_MIN_CHECKS, keys left after the last prune)`
//! checks. That interval keeps the sweep amortised O(1) per request and bounds the map to about
//! twice the keys that are genuinely busy plus `PRUNE_MIN_CHECKS`, with no background task to
//! start, stop or leak (it works without a runtime, and a limiter nobody checks cannot grow).

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use waav_plugin_api::{
    MiddlewarePlugin, Plugin, PluginConfig, PluginContext, PluginError, PluginInfo,
};

/// Fewest checks between two sweeps of idle keys (a sweep visits every key).
const PRUNE_MIN_CHECKS: usize = 4096;

type KeyedLimiter<C> =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A keyed token bucket. `C` is the clock (the real one except in tests).
pub struct RateLimit<C: Clock = DefaultClock> {
    inner: Arc<Inner<C>>,
}

struct Inner<C: Clock> {
    limiter: KeyedLimiter<C>,
    /// Checks since the last sweep.
    checks: AtomicUsize,
    /// Checks between sweeps: `max(PRUNE_MIN_CHECKS, keys left by the last sweep)`.
    prune_every: AtomicUsize,
}

impl<C: Clock> Clone for RateLimit<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: Clock> std::fmt::Debug for RateLimit<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("keys", &self.len())
            .finish()
    }
}

impl RateLimit {
    /// `per_second` sustained requests per IP with bursts of up to `burst` (default: one second's
    /// worth, at least 1).
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<Self, String> {
        Self::with_clock(per_second, burst, DefaultClock::default())
    }
}

impl<C: Clock> RateLimit<C> {
    /// [`RateLimit::new`] on `clock`.
    pub fn with_clock(per_second: f64, burst: Option<u32>, clock: C) -> Result<Self, String> {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Err(format!(
                "requests_per_second must be positive, not {per_second}"
            ));
        }
        let burst = burst.unwrap_or(per_second.ceil() as u32).max(1);
        let period = Duration::from_secs_f64(1.0 / per_second);
        let quota = Quota::with_period(period)
            .ok_or("requests_per_second is too large")?
            .allow_burst(NonZeroU32::new(burst).expect("burst is at least 1"));
        Ok(Self {
            inner: Arc::new(Inner {
                limiter: RateLimiter::dashmap_with_clock(quota, clock),
                checks: AtomicUsize::new(0),
                prune_every: AtomicUsize::new(PRUNE_MIN_CHECKS),
            }),
        })
    }

    /// Checks one request from `ip`; `Err(wait)` when over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let inner = &*self.inner;
        let n = inner.checks.fetch_add(1, Ordering::Relaxed) + 1;
        // Only the check that resets the counter sweeps; a lost race just retries next check.
        if n >= inner.prune_every.load(Ordering::Relaxed)
            && inner
                .checks
                .compare_exchange(n, 0, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.prune();
        }
        inner
            .limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(inner.limiter.clock().now()))
    }

    /// Evicts idle keys now and releases the memory they held (normally done by [`check`]).
    ///
    /// [`check`]: RateLimit::check
    pub fn prune(&self) {
        let limiter = &self.inner.limiter;
        limiter.retain_recent();
        limiter.shrink_to_fit();
        self.inner
            .prune_every
            .store(limiter.len().max(PRUNE_MIN_CHECKS), Ordering::Relaxed);
    }

    /// Client IPs currently tracked.
    pub fn len(&self) -> usize {
        self.inner.limiter.len()
    }
}

impl<C> RateLimit<C>
where
    C: Clock + Send + Sync + 'static,
{
    /// Wraps `router` so every request is checked.
    pub fn apply(&self, router: axum::Router) -> axum::Router {
        let this = self.clone();
        router.layer(axum::middleware::from_fn(
            move |req: Request, next: Next| {
                let this = this.clone();
                async move { this.handle(req, next).await }
            },
        ))
    }

    async fn handle(&self, req: Request, next: Next) -> Response {
        let ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        match self.check(ip) {
            Ok(()) => next.run(req).await,
            Err(wait) => refusal(wait).map(axum::body::Body::from),
        }
    }
}

/// `429 Too Many Requests! Wait for Ns` with `retry-after`.
fn refusal(wait: Duration) -> waav_plugin_api::HttpResponse {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut res = waav_plugin_api::HttpResponse::new(bytes::Bytes::from(format!(
        "Too Many Requests! Wait for {secs}s"
    )));
    *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    res
}

/// Middleware plugin `token_bucket`: config `requests_per_second` (required) and `burst`.
///
/// It wraps a [`RateLimit`], so it evicts idle client IPs the same way.
#[derive(Debug, Default)]
pub struct TokenBucketPlugin {
    limit: OnceLock<RateLimit>,
}

waav_plugin_api::register_plugin!(Middleware, TokenBucketPlugin::default());

#[async_trait::async_trait]
impl Plugin for TokenBucketPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("token_bucket", "Token-bucket rate limit")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["rate_limit", "rate_limiting"])
            .description("Per-IP request rate limit (429 with retry-after)")
    }

    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let rps = config.f64("requests_per_second")?.ok_or_else(|| {
            PluginError::Config(format!("{}.requests_per_second is required", config.path()))
        })?;
        let burst = config
            .u64("burst")?
            .map(|b| u32::try_from(b).unwrap_or(u32::MAX));
        let limit = RateLimit::new(rps, burst)
            .map_err(|e| PluginError::Config(format!("{}: {e}", config.path())))?;
        let _ = self.limit.set(limit);
        Ok(())
    }
}

#[async_trait::async_trait]
impl MiddlewarePlugin for TokenBucketPlugin {
    fn order(&self) -> i32 {
        // First of the usual middleware: refuse floods before doing any other work.
        100
    }

    async fn check(
        &self,
        _: &axum::http::request::Parts,
        peer: Option<SocketAddr>,
    ) -> Option<waav_plugin_api::HttpResponse> {
        let ip = peer.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |p| p.ip());
        self.limit.get()?.check(ip).err().map(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn burst_then_refusal_with_wait() {
        let l = RateLimit::new(1.0, Some(2)).unwrap();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        let wait = l.check(ip).unwrap_err();
        assert!(wait <= Duration::from_secs(1) && wait > Duration::ZERO);
        assert!(l.check("10.1.2.4".parse().unwrap()).is_ok(), "per IP");
        assert!(RateLimit::new(0.0, None).is_err());
    }

    #[test]
    fn idle_keys_are_evicted_by_later_checks() {
        let clock = FakeRelativeClock::default();
        let l = RateLimit::with_clock(10.0, Some(5), clock.clone()).unwrap();
        let distinct = 3 * PRUNE_MIN_CHECKS as u32;
        for i in 0..distinct {
            assert!(l.check(IpAddr::V4(Ipv4Addr::from(i))).is_ok());
        }
        // Sweeps ran meanwhile, but every bucket was still draining: nothing is idle yet.
        assert_eq!(l.len(), distinct as usize);
        // Long enough for every bucket to refill: all those keys are now idle.
        clock.advance(Duration::from_secs(1));
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        let mut checks = 0;
        while l.len() > 1 {
            let _ = l.check(busy);
            checks += 1;
            assert!(
                checks <= distinct as usize + PRUNE_MIN_CHECKS,
                "no sweep after {checks} checks ({} keys)",
                l.len()
            );
        }
        // The busy key survives a sweep; its state is not reset.
        for _ in 0..5 {
            let _ = l.check(busy);
        }
        l.prune();
        assert_eq!(l.len(), 1);
        assert!(l.check(busy).is_err());
    }

    #[test]
    fn wait_time_uses_the_limiter_clock() {
        let clock = FakeRelativeClock::default();
        let l = RateLimit::with_clock(2.0, Some(1), clock.clone()).unwrap();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check(ip).is_ok());
        assert_eq!(l.check(ip), Err(Duration::from_millis(500)));
        clock.advance(Duration::from_millis(500));
        assert!(l.check(ip).is_ok());
    }
}
