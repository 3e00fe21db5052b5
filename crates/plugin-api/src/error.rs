//! Errors a plugin reports, with a category the core acts on.

use std::time::Duration;

/// What the core should do about a [`PluginError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// The configuration is wrong; retrying will not help until it changes.
    Config,
    /// Credentials are missing or rejected.
    Auth,
    /// The provider asked us to slow down.
    RateLimited,
    /// A passing failure (network blip, 5xx); a retry or failover may succeed.
    Transient,
    /// The request cannot succeed as made.
    Permanent,
    /// A deadline passed.
    Timeout,
    /// The plugin panicked; the core contained it.
    Panicked,
}

/// An error reported by a plugin or raised by the core on a plugin's behalf.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginError {
    /// Invalid or missing configuration (names the offending key where possible).
    #[error("configuration error: {0}")]
    Config(String),
    /// Missing or rejected credentials.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The provider is rate limiting us; `retry_after` is its hint, when it gave one.
    #[error("rate limited: {message}")]
    RateLimited {
        /// How long the provider asked us to wait.
        retry_after: Option<Duration>,
        /// The provider's explanation.
        message: String,
    },
    /// A failure that may go away on retry.
    #[error("transient error: {0}")]
    Transient(String),
    /// A failure that will not go away on retry.
    #[error("{0}")]
    Permanent(String),
    /// An operation exceeded its deadline.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The plugin panicked; the message is the panic payload.
    #[error("plugin panicked: {0}")]
    Panicked(String),
}

impl PluginError {
    /// The category of this error.
    pub fn category(&self) -> ErrorCategory {
        match self {
            Self::Config(_) => ErrorCategory::Config,
            Self::Auth(_) => ErrorCategory::Auth,
            Self::RateLimited { .. } => ErrorCategory::RateLimited,
            Self::Transient(_) => ErrorCategory::Transient,
            Self::Permanent(_) => ErrorCategory::Permanent,
            Self::Timeout(_) => ErrorCategory::Timeout,
            Self::Panicked(_) => ErrorCategory::Panicked,
        }
    }

    /// Whether retrying (or failing over) can reasonably help.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.category(),
            ErrorCategory::RateLimited | ErrorCategory::Transient | ErrorCategory::Timeout
        )
    }

    /// A stable machine-readable code, used as the `code` of client-facing errors.
    pub fn code(&self) -> &'static str {
        match self.category() {
            ErrorCategory::Config => "provider_config",
            ErrorCategory::Auth => "provider_auth",
            ErrorCategory::RateLimited => "provider_rate_limited",
            ErrorCategory::Transient => "provider_unavailable",
            ErrorCategory::Permanent => "provider_error",
            ErrorCategory::Timeout => "provider_timeout",
            ErrorCategory::Panicked => "provider_panicked",
        }
    }

    /// Builds a [`PluginError::Panicked`] from a payload caught by `catch_unwind`.
    pub fn from_panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        Self::Panicked(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_and_retryability() {
        assert!(PluginError::Transient("x".into()).is_retryable());
        assert!(!PluginError::Auth("x".into()).is_retryable());
        let e = PluginError::RateLimited {
            retry_after: Some(Duration::from_secs(2)),
            message: "slow down".into(),
        };
        assert_eq!(e.category(), ErrorCategory::RateLimited);
        assert_eq!(e.code(), "provider_rate_limited");
        assert_eq!(e.to_string(), "rate limited: slow down");
    }

    #[test]
    fn panic_payloads() {
        let r = std::panic::catch_unwind(|| panic!("boom {}", 1)).unwrap_err();
        assert_eq!(
            PluginError::from_panic(&*r),
            PluginError::Panicked("boom 1".into())
        );
        let r = std::panic::catch_unwind(|| panic!("static")).unwrap_err();
        assert_eq!(
            PluginError::from_panic(&*r),
            PluginError::Panicked("static".into())
        );
    }
}
