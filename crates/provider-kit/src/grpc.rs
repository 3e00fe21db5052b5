//! A tonic channel builder for gRPC providers (Google Speech v2, Text-to-Speech), and the
//! mapping of `tonic::Status` codes onto [`PluginError`] categories.

use crate::errors;
use crate::redact::Redactor;
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code;
use waav_plugin_api::{ErrorCategory, PluginError, Secret};

pub use tonic;

/// How to reach one gRPC service.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// `https://speech.googleapis.com` (or `http://127.0.0.1:port` for a local fake).
    pub endpoint: String,
    /// Deadline for TCP + TLS + HTTP/2 setup.
    pub connect_timeout: Duration,
    /// Deadline per request (`None` for long-lived streams).
    pub timeout: Option<Duration>,
    /// Set `TCP_NODELAY` (default on: streaming audio is many small frames).
    pub tcp_nodelay: bool,
    /// HTTP/2 keepalive ping interval (`None`: off).
    pub keepalive: Option<Duration>,
    /// How long a keepalive ping may go unanswered.
    pub keepalive_timeout: Duration,
    /// Use TLS (webpki roots, `ring`); the endpoint should then be `https://`.
    pub tls: bool,
    /// Override the TLS server name (defaults to the endpoint's host).
    pub tls_domain: Option<String>,
    /// The `user-agent` header.
    pub user_agent: Option<String>,
    /// Names the provider in error messages.
    pub context: String,
}

impl GrpcConfig {
    /// Defaults for `endpoint`: 10 s connect, no request timeout, nodelay, 30 s keepalive, TLS
    /// when the endpoint is `https://`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        let endpoint = endpoint.into();
        Self {
            tls: endpoint.starts_with("https://"),
            endpoint,
            connect_timeout: Duration::from_secs(10),
            timeout: None,
            tcp_nodelay: true,
            keepalive: Some(Duration::from_secs(30)),
            keepalive_timeout: Duration::from_secs(10),
            tls_domain: None,
            user_agent: None,
            context: "grpc".to_owned(),
        }
    }
}

fn config_err(cfg: &GrpcConfig, what: &str, e: impl std::fmt::Display) -> PluginError {
    errors::make(
        ErrorCategory::Config,
        format!("{}: {what}: {e}", cfg.context),
        None,
        &Redactor::new(),
    )
}

/// The tonic [`Endpoint`] for `cfg` (for callers that need more knobs).
pub fn endpoint(cfg: &GrpcConfig) -> Result<Endpoint, PluginError> {
    let mut ep = Endpoint::from_shared(cfg.endpoint.clone())
        .map_err(|e| config_err(cfg, "invalid endpoint", e))?
        .connect_timeout(cfg.connect_timeout)
        .tcp_nodelay(cfg.tcp_nodelay)
        .keep_alive_timeout(cfg.keepalive_timeout);
    if let Some(t) = cfg.timeout {
        ep = ep.timeout(t);
    }
    if let Some(k) = cfg.keepalive {
        ep = ep.http2_keep_alive_interval(k).keep_alive_while_idle(true);
    }
    if let Some(ua) = &cfg.user_agent {
        ep = ep
            .user_agent(ua.clone())
            .map_err(|e| config_err(cfg, "invalid user agent", e))?;
    }
    if cfg.tls {
        let mut tls = ClientTlsConfig::new().with_webpki_roots();
        if let Some(d) = &cfg.tls_domain {
            tls = tls.domain_name(d.clone());
        }
        ep = ep
            .tls_config(tls)
            .map_err(|e| config_err(cfg, "tls", errors::chain(&e)))?;
    }
    Ok(ep)
}

/// Connects now; a failure is Transient (or Timeout).
pub async fn connect(cfg: &GrpcConfig) -> Result<Channel, PluginError> {
    let ep = endpoint(cfg)?;
    ep.connect().await.map_err(|e| {
        let msg = errors::chain(&e);
        let c = if msg.contains("timed out") {
            ErrorCategory::Timeout
        } else {
            ErrorCategory::Transient
        };
        errors::make(
            c,
            format!("{}: connect: {msg}", cfg.context),
            None,
            &Redactor::new(),
        )
    })
}

/// A channel that connects on first use (and reconnects after failures by itself).
pub fn connect_lazy(cfg: &GrpcConfig) -> Result<Channel, PluginError> {
    Ok(endpoint(cfg)?.connect_lazy())
}

/// The category of a gRPC status code.
///
/// | code | category |
/// |---|---|
/// | Unauthenticated, PermissionDenied | Auth |
/// | ResourceExhausted | RateLimited |
/// | DeadlineExceeded | Timeout |
/// | Unavailable, Aborted, Internal, Unknown, Cancelled, DataLoss | Transient |
/// | InvalidArgument, NotFound, FailedPrecondition, Unimplemented | Config |
/// | AlreadyExists, OutOfRange, Ok (an error with code OK is a broken peer) | Permanent |
pub fn code_category(code: Code) -> ErrorCategory {
    match code {
        Code::Unauthenticated | Code::PermissionDenied => ErrorCategory::Auth,
        Code::ResourceExhausted => ErrorCategory::RateLimited,
        Code::DeadlineExceeded => ErrorCategory::Timeout,
        Code::Unavailable
        | Code::Aborted
        | Code::Internal
        | Code::Unknown
        | Code::Cancelled
        | Code::DataLoss => ErrorCategory::Transient,
        Code::InvalidArgument | Code::NotFound | Code::FailedPrecondition | Code::Unimplemented => {
            ErrorCategory::Config
        }
        Code::AlreadyExists | Code::OutOfRange | Code::Ok => ErrorCategory::Permanent,
    }
}

/// The error for a status: category from [`code_category`], message `context: Code: message`
/// (bounded, redacted), and a `retry-after` metadata hint for ResourceExhausted.
pub fn from_status(status: &tonic::Status, context: &str, redactor: &Redactor) -> PluginError {
    let retry_after = status
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let msg = format!(
        "{context}: {:?}: {}",
        status.code(),
        errors::excerpt(status.message().as_bytes(), errors::BODY_EXCERPT_LIMIT)
    );
    errors::make(
        code_category(status.code()),
        msg.trim_end_matches([' ', ':']),
        retry_after,
        redactor,
    )
}

/// A metadata value for a credential (`authorization: Bearer …`, `x-goog-api-key`), marked
/// sensitive so it is not logged.
pub fn secret_metadata(
    value: &Secret,
) -> Result<tonic::metadata::MetadataValue<tonic::metadata::Ascii>, PluginError> {
    let mut v = tonic::metadata::MetadataValue::try_from(value.expose())
        .map_err(|_| PluginError::Config("credential is not valid ASCII metadata".to_owned()))?;
    v.set_sensitive(true);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        use ErrorCategory::*;
        let table = [
            (Code::Unauthenticated, Auth),
            (Code::PermissionDenied, Auth),
            (Code::ResourceExhausted, RateLimited),
            (Code::Unavailable, Transient),
            (Code::DeadlineExceeded, Timeout),
            (Code::InvalidArgument, Config),
            (Code::NotFound, Config),
            (Code::FailedPrecondition, Config),
            (Code::Unimplemented, Config),
            (Code::Internal, Transient),
            (Code::Aborted, Transient),
            (Code::Cancelled, Transient),
            (Code::Unknown, Transient),
            (Code::DataLoss, Transient),
            (Code::AlreadyExists, Permanent),
            (Code::OutOfRange, Permanent),
            (Code::Ok, Permanent),
        ];
        for (code, want) in table {
            assert_eq!(code_category(code), want, "{code:?}");
        }
    }

    #[test]
    fn status_to_error_redacts_and_reads_retry_after() {
        let key = Secret::new("AIzaSyExampleKey123");
        let r = Redactor::new().with_secret(&key);
        let mut s = tonic::Status::resource_exhausted("quota for AIzaSyExampleKey123 exceeded");
        s.metadata_mut().insert("retry-after", "4".parse().unwrap());
        let e = from_status(&s, "google-stt", &r);
        assert_eq!(
            e,
            PluginError::RateLimited {
                retry_after: Some(Duration::from_secs(4)),
                message: "google-stt: ResourceExhausted: quota for *** exceeded".into()
            }
        );
        let e = from_status(&tonic::Status::unauthenticated(""), "g", &r);
        assert_eq!(e, PluginError::Auth("g: Unauthenticated".into()));
    }

    #[tokio::test]
    async fn channels_build_and_connect_failures_map() {
        // TLS endpoint builds (ring + webpki roots) without connecting.
        let cfg = GrpcConfig::new("https://speech.googleapis.com");
        assert!(cfg.tls);
        connect_lazy(&cfg).unwrap();
        // A closed local port: Transient.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut cfg = GrpcConfig::new(format!("http://127.0.0.1:{port}"));
        cfg.connect_timeout = Duration::from_secs(2);
        let e = connect(&cfg).await.unwrap_err();
        assert_eq!(e.category(), ErrorCategory::Transient, "{e}");
        assert!(endpoint(&GrpcConfig::new("not a uri")).is_err());
        let v = secret_metadata(&Secret::new("Bearer abc")).unwrap();
        assert!(v.is_sensitive());
    }
}
