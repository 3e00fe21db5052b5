//! One pooled HTTP client per plugin instance, with categorised errors and streaming bodies.
//!
//! Share one [`HttpClient`] across a plugin instance's sessions: it keeps TLS connections warm
//! (the first byte of a TTS response is then one round trip away, not three).
//!
//! # Timeouts
//!
//! Every request is bounded: `connect_timeout` (TCP + TLS, default 10 s), `headers_timeout` (from
//! sending to the response head, per attempt, default 30 s), `read_timeout` (no body bytes for
//! that long, default 30 s; reqwest also applies it to the wait for the head) and, for
//! non-streaming use, an optional total `timeout`.
//!
//! # Retries
//!
//! [`HttpClient::send`], [`send_streaming`](HttpClient::send_streaming),
//! [`send_bytes`](HttpClient::send_bytes), [`send_json`](HttpClient::send_json) and
//! [`execute`](HttpClient::execute) retry a failed attempt before its response head reached the
//! caller, within the client's [`RetryBudget`] (one per client, i.e. per plugin instance): see
//! [`crate::retry`] for what is retried and why. Requests built with [`HttpClient::request`]
//! but sent with reqwest's own `RequestBuilder::send` bypass this.
//!
//! A caller bounding the request with its own timeout uses
//! [`execute_within`](HttpClient::execute_within) with that deadline, so no retry sleeps past
//! it; a provider whose vendor marks "do not retry" in a response head only it understands sets
//! [`HttpClientConfig::retry_veto`].

pub mod audio;
pub mod chunks;
pub mod lines;
pub mod sse;

use crate::errors;
use crate::redact::Redactor;
use crate::retry::{self, Classify, Replay, RetryBudget, RetryConfig, Verdict};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;
use tower::ServiceExt;
use waav_plugin_api::{ErrorCategory, PluginError, Secret};

pub use reqwest::header::HeaderMap;
pub use reqwest::{Method, RequestBuilder, Response, StatusCode};

/// A response body as a stream of byte chunks, delivered as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, PluginError>> + Send>>;

/// A provider's veto on retrying a response head the kit would otherwise retry (a 5xx, 408/504,
/// a short-`retry-after` 429): when it returns `true` for the status and headers, that response
/// goes back to the caller at once. Transport failures are not shown to it.
#[derive(Clone)]
pub struct RetryVeto(Arc<VetoFn>);

type VetoFn = dyn Fn(StatusCode, &HeaderMap) -> bool + Send + Sync;

impl RetryVeto {
    /// A veto from a predicate (`true`: do not retry this response).
    pub fn new(f: impl Fn(StatusCode, &HeaderMap) -> bool + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// Vetoes a 429 that carries no `retry-after` (nor `retry-after-ms`): for vendors whose
    /// quota or billing refusals are 429s without one, told from a rate limit only by the body.
    pub fn rate_limit_without_retry_after() -> Self {
        Self::new(|status, headers| {
            status == StatusCode::TOO_MANY_REQUESTS && errors::retry_after(headers).is_none()
        })
    }

    /// Whether the response with `status` and `headers` must not be retried.
    pub fn vetoes(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        (self.0)(status, headers)
    }
}

impl std::fmt::Debug for RetryVeto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetryVeto(..)")
    }
}

/// How to build an [`HttpClient`].
#[derive(Debug, Clone)]
pub struct HttpClientConfig {
    /// Deadline for a whole request including its body (`None` for streaming use: bound reads
    /// with `read_timeout` instead).
    pub timeout: Option<Duration>,
    /// Deadline for TCP + TLS.
    pub connect_timeout: Duration,
    /// Fail if no body bytes arrive for this long (`None`: no limit).
    pub read_timeout: Option<Duration>,
    /// Deadline from sending a request to its response head, per attempt (`None`: none, then
    /// `read_timeout` or `timeout` bound it). A passed deadline is a retryable Timeout.
    pub headers_timeout: Option<Duration>,
    /// Retries before the response head, within one budget per client; see [`crate::retry`].
    pub retry: RetryConfig,
    /// Response heads not to retry although their status would be (`None`: the status decides).
    pub retry_veto: Option<RetryVeto>,
    /// Close pooled connections idle for this long.
    pub pool_idle: Duration,
    /// Pooled idle connections kept per host.
    pub pool_max_idle_per_host: usize,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// The instance's secrets, redacted from every error.
    pub secrets: Vec<Secret>,
    /// Names the provider in error messages.
    pub context: String,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            timeout: None,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Some(Duration::from_secs(30)),
            headers_timeout: Some(Duration::from_secs(30)),
            retry: RetryConfig::default(),
            retry_veto: None,
            pool_idle: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            user_agent: concat!("waav-gateway/", env!("CARGO_PKG_VERSION")).to_owned(),
            secrets: Vec::new(),
            context: "http".to_owned(),
        }
    }
}

/// A pooled client (cheap to clone: clones share the pool).
#[derive(Debug, Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    redactor: Redactor,
    context: String,
    headers_timeout: Option<Duration>,
    retry: RetryBudget,
    retry_veto: Option<RetryVeto>,
}

impl HttpClient {
    /// Builds the client: rustls (ring, webpki roots), HTTP/1.1, `TCP_NODELAY`.
    pub fn new(cfg: HttpClientConfig) -> Result<Self, PluginError> {
        let redactor = Redactor::from_secrets(&cfg.secrets);
        let mut b = reqwest::Client::builder()
            .tls_backend_preconfigured((*crate::tls::http1_config()).clone())
            .tcp_nodelay(true)
            .connect_timeout(cfg.connect_timeout)
            .pool_idle_timeout(cfg.pool_idle)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .user_agent(cfg.user_agent.clone());
        if let Some(t) = cfg.timeout {
            b = b.timeout(t);
        }
        if let Some(t) = cfg.read_timeout {
            b = b.read_timeout(t);
        }
        let inner = b.build().map_err(|e| {
            errors::make(
                ErrorCategory::Config,
                format!(
                    "{}: building HTTP client: {}",
                    cfg.context,
                    errors::chain(&e)
                ),
                None,
                &redactor,
            )
        })?;
        let retry = RetryBudget::with_redactor(cfg.retry, cfg.context.clone(), redactor.clone());
        Ok(Self {
            inner,
            redactor,
            context: cfg.context,
            headers_timeout: cfg.headers_timeout,
            retry,
            retry_veto: cfg.retry_veto,
        })
    }

    /// The underlying reqwest client.
    pub fn inner(&self) -> &reqwest::Client {
        &self.inner
    }

    /// The redactor for this instance's secrets.
    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// Starts a request.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.inner.request(method, url)
    }

    /// Starts a GET.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.inner.get(url)
    }

    /// Starts a POST.
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.inner.post(url)
    }

    /// The retry budget shared by this client's requests.
    pub fn retry_budget(&self) -> &RetryBudget {
        &self.retry
    }

    /// Sends `req`; a non-2xx status becomes a categorised error carrying a bounded excerpt of
    /// the body. Retried as [`execute`](Self::execute) is; when retries are exhausted the last
    /// attempt's error is returned (a 5xx stays Transient, a 429 RateLimited with its
    /// `retry-after`).
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, PluginError> {
        let resp = self.execute(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.error_from_response(resp).await)
    }

    /// Sends `req`, retrying within the budget until a response head arrives that is not worth
    /// retrying, and returns it whatever its status (for providers that map vendor errors
    /// themselves; use it instead of `RequestBuilder::send`). A transport failure of the last
    /// attempt is a categorised error (the URL dropped). The body is not read here: once the
    /// head is returned nothing is retried.
    pub async fn execute(&self, req: RequestBuilder) -> Result<Response, PluginError> {
        self.execute_until(req, None).await
    }

    /// [`execute`](Self::execute) for a caller that gives up at `deadline` (its own
    /// `tokio::time::timeout` around this call): a retry whose backoff or `retry-after` would end
    /// at or after `deadline` is not slept on, and the last attempt's response (a 429 with its
    /// `retry-after`, a 503) or error goes back at once for the caller to map. An attempt in
    /// flight is not cut at `deadline`; the caller's timeout does that.
    pub async fn execute_within(
        &self,
        req: RequestBuilder,
        deadline: Instant,
    ) -> Result<Response, PluginError> {
        self.execute_until(req, Some(deadline)).await
    }

    async fn execute_until(
        &self,
        req: RequestBuilder,
        deadline: Option<Instant>,
    ) -> Result<Response, PluginError> {
        let (client, req) = req.build_split();
        let req = req.map_err(|e| self.map_error(e))?;
        let attempt = Attempt {
            client,
            headers_timeout: self.headers_timeout,
            veto: self.retry_veto.clone(),
        };
        let svc = tower::retry::Retry::new(self.retry.policy_until("http", deadline), attempt);
        match svc.oneshot(req).await {
            Ok(head) => Ok(head.resp),
            Err(AttemptError::Http(e)) => Err(self.map_error(e)),
            Err(AttemptError::HeadersTimeout(d)) => Err(errors::timeout(
                &format!("{}: waiting for the response head", self.context),
                d,
                &self.redactor,
            )),
        }
    }

    /// Sends `req` and returns the body as chunks as they arrive.
    pub async fn send_streaming(&self, req: RequestBuilder) -> Result<ByteStream, PluginError> {
        let resp = self.send(req).await?;
        Ok(self.body_stream(resp))
    }

    /// The body of `resp` as a [`ByteStream`].
    pub fn body_stream(&self, resp: Response) -> ByteStream {
        let this = self.clone();
        Box::pin(
            resp.bytes_stream()
                .map(move |r| r.map_err(|e| this.map_error(e))),
        )
    }

    /// Sends `req` and collects the body, failing if it exceeds `max_bytes`.
    pub async fn send_bytes(
        &self,
        req: RequestBuilder,
        max_bytes: usize,
    ) -> Result<Bytes, PluginError> {
        let mut body = self.send_streaming(req).await?;
        let mut out = bytes::BytesMut::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > max_bytes {
                return Err(errors::make(
                    ErrorCategory::Permanent,
                    format!("{}: response body exceeds {max_bytes} bytes", self.context),
                    None,
                    &self.redactor,
                ));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// Sends `req` and parses a JSON body of at most `max_bytes`.
    pub async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        req: RequestBuilder,
        max_bytes: usize,
    ) -> Result<T, PluginError> {
        let body = self.send_bytes(req, max_bytes).await?;
        serde_json::from_slice(&body).map_err(|e| {
            errors::make(
                ErrorCategory::Permanent,
                format!(
                    "{}: invalid JSON response: {e}: {}",
                    self.context,
                    errors::excerpt(&body, errors::BODY_EXCERPT_LIMIT)
                ),
                None,
                &self.redactor,
            )
        })
    }

    /// The error for a non-success response, reading at most [`errors::BODY_EXCERPT_LIMIT`]
    /// bytes of its body.
    pub async fn error_from_response(&self, mut resp: Response) -> PluginError {
        let status = resp.status();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        // Bounded read: a vendor's HTML error page need not be downloaded whole.
        while body.len() < errors::BODY_EXCERPT_LIMIT + 1 {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
        errors::from_http(status, &headers, &body, &self.context, &self.redactor)
    }

    /// Maps a reqwest error (the URL, which may carry a key, is dropped; the rest is redacted).
    pub fn map_error(&self, err: reqwest::Error) -> PluginError {
        map_reqwest_error(err, &self.context, &self.redactor)
    }
}

/// Why one attempt produced no response head.
#[derive(Debug)]
enum AttemptError {
    Http(reqwest::Error),
    HeadersTimeout(Duration),
}

/// One attempt: send the request, wait for the response head (bounded).
#[derive(Clone)]
struct Attempt {
    client: reqwest::Client,
    headers_timeout: Option<Duration>,
    veto: Option<RetryVeto>,
}

/// An attempt's response head, and whether the provider vetoed retrying it.
struct Head {
    resp: Response,
    vetoed: bool,
}

type AttemptFuture = Pin<Box<dyn Future<Output = Result<Head, AttemptError>> + Send>>;

impl tower::Service<reqwest::Request> for Attempt {
    type Response = Head;
    type Error = AttemptError;
    type Future = AttemptFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: reqwest::Request) -> Self::Future {
        let fut = self.client.execute(req);
        let limit = self.headers_timeout;
        let veto = self.veto.clone();
        Box::pin(async move {
            let resp = match limit {
                Some(d) => match tokio::time::timeout(d, fut).await {
                    Ok(r) => r.map_err(AttemptError::Http)?,
                    Err(_) => return Err(AttemptError::HeadersTimeout(d)),
                },
                None => fut.await.map_err(AttemptError::Http)?,
            };
            let vetoed = !resp.status().is_success()
                && veto.is_some_and(|v| v.vetoes(resp.status(), resp.headers()));
            Ok(Head { resp, vetoed })
        })
    }
}

impl Replay for reqwest::Request {
    fn replay(&self) -> Option<Self> {
        self.try_clone()
    }
}

impl Classify for Result<Head, AttemptError> {
    fn verdict(&self) -> Verdict {
        match self {
            Ok(Head { vetoed: true, resp }) => {
                tracing::debug!(
                    status = resp.status().as_u16(),
                    "not retrying: vetoed by the provider"
                );
                Verdict::Done
            }
            Ok(Head { resp, .. }) => {
                let status = resp.status();
                match errors::status_category(status.as_u16()) {
                    None => Verdict::Done,
                    Some(c) => retry::verdict_for(c, errors::retry_after(resp.headers()), || {
                        format!("HTTP {}", status.as_u16())
                    }),
                }
            }
            Err(AttemptError::HeadersTimeout(d)) => Verdict::Retry {
                floor: Duration::ZERO,
                reason: format!("no response head after {d:?}"),
            },
            Err(AttemptError::Http(e)) => {
                // The error's own text names the URL (which may carry a key): log its sources.
                let reason = || {
                    std::error::Error::source(e)
                        .map(errors::chain)
                        .unwrap_or_else(|| "request failed".to_owned())
                };
                retry::verdict_for(reqwest_category(e), None, reason)
            }
        }
    }
}

fn reqwest_category(err: &reqwest::Error) -> ErrorCategory {
    if err.is_timeout() {
        ErrorCategory::Timeout
    } else if err.is_builder() {
        ErrorCategory::Config
    } else if let Some(s) = err.status() {
        errors::status_category(s.as_u16()).unwrap_or(ErrorCategory::Permanent)
    } else {
        ErrorCategory::Transient
    }
}

/// Maps a reqwest error: timeouts → Timeout, connect failures → Transient, a bad request
/// (builder) → Config, a status error → per status, body/decode failures → Transient.
pub fn map_reqwest_error(err: reqwest::Error, context: &str, redactor: &Redactor) -> PluginError {
    let category = reqwest_category(&err);
    let err = err.without_url();
    errors::make(
        category,
        format!("{context}: {}", errors::chain(&err)),
        None,
        redactor,
    )
}
