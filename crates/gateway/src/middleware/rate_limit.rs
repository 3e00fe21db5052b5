//! Per-client-IP token-bucket rate limiting.
//!
//! `requests_per_second` is a sustained rate and `burst` the bucket size (a deliberate fix of the
//! older gateways, where the two were confused). Refusals are `429 text/plain` with `retry-after`.
//! The core applies it when `limits.requests_per_second` (or `RATE_LIMIT_REQUESTS_PER_SECOND`) is
//! set; the same limiter is also a middleware plugin (`type: token_bucket`).

use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use waav_plugin_api::{
    MiddlewarePlugin, Plugin, PluginConfig, PluginContext, PluginError, PluginInfo,
};

/// A keyed token bucket.
#[derive(Clone)]
pub struct RateLimit {
    limiter: Arc<DefaultKeyedRateLimiter<IpAddr>>,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit")
    }
}

impl RateLimit {
    /// `per_second` sustained requests per IP with bursts of up to `burst` (default: one second's
    /// worth, at least 1).
    pub fn new(per_second: f64, burst: Option<u32>) -> Result<Self, String> {
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
            limiter: Arc::new(RateLimiter::keyed(quota)),
        })
    }

    /// Checks one request from `ip`; `Err(wait)` when over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

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
            Err(wait) => {
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let mut res = (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    format!("Too Many Requests! Wait for {secs}s"),
                )
                    .into_response();
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                res
            }
        }
    }
}

/// Middleware plugin `token_bucket`: config `requests_per_second` (required) and `burst`.
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

impl MiddlewarePlugin for TokenBucketPlugin {
    fn order(&self) -> i32 {
        // Outermost of the usual middleware: refuse floods before doing any other work.
        100
    }

    fn apply(&self, router: axum::Router) -> axum::Router {
        match self.limit.get() {
            Some(l) => l.apply(router),
            None => router,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
