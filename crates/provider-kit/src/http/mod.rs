//! One pooled HTTP client per plugin instance, with categorised errors and streaming bodies.
//!
//! Share one [`HttpClient`] across a plugin instance's sessions: it keeps TLS connections warm
//! (the first byte of a TTS response is then one round trip away, not three).

pub mod audio;
pub mod chunks;
pub mod lines;
pub mod sse;

use crate::errors;
use crate::redact::Redactor;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use std::pin::Pin;
use std::time::Duration;
use waav_plugin_api::{ErrorCategory, PluginError, Secret};

pub use reqwest::{Method, RequestBuilder, Response};

/// A response body as a stream of byte chunks, delivered as they arrive.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, PluginError>> + Send>>;

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
        Ok(Self {
            inner,
            redactor,
            context: cfg.context,
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

    /// Sends `req`; a non-2xx status becomes a categorised error carrying a bounded excerpt of
    /// the body.
    pub async fn send(&self, req: RequestBuilder) -> Result<Response, PluginError> {
        let resp = req.send().await.map_err(|e| self.map_error(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        Err(self.error_from_response(resp).await)
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

/// Maps a reqwest error: timeouts → Timeout, connect failures → Transient, a bad request
/// (builder) → Config, a status error → per status, body/decode failures → Transient.
pub fn map_reqwest_error(err: reqwest::Error, context: &str, redactor: &Redactor) -> PluginError {
    let category = if err.is_timeout() {
        ErrorCategory::Timeout
    } else if err.is_builder() {
        ErrorCategory::Config
    } else if let Some(s) = err.status() {
        errors::status_category(s.as_u16()).unwrap_or(ErrorCategory::Permanent)
    } else {
        ErrorCategory::Transient
    };
    let err = err.without_url();
    errors::make(
        category,
        format!("{context}: {}", errors::chain(&err)),
        None,
        redactor,
    )
}
