//! What the STT and TTS plugins share: credentials, the service instance URL, the auth mode, and
//! small config helpers.

use crate::iam::{TokenCache, DEFAULT_IAM_URL};
use std::time::Duration;
use waav_plugin_api::{Credentials, PluginConfig, PluginError, Secret};

/// The credential field of the service instance URL.
pub const URL_FIELD: &str = "url";

/// How a session authenticates to the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Exchange the API key for an IAM access token at `iam_url` (IBM Cloud; the default).
    Iam {
        /// The IAM token endpoint.
        iam_url: String,
    },
    /// The `api_key` already is a bearer access token (IBM Cloud Pak for Data, or a token the
    /// operator refreshes): sent as is.
    Bearer,
}

impl AuthMode {
    /// Reads `auth` (`iam` | `bearer`, default `iam`) and `iam_url` from a config section.
    pub fn from_config(c: &PluginConfig) -> Result<Self, PluginError> {
        let mode = c.string("auth")?.unwrap_or_else(|| "iam".to_owned());
        match mode.to_ascii_lowercase().as_str() {
            "iam" => {
                let iam_url = c
                    .string("iam_url")?
                    .unwrap_or_else(|| DEFAULT_IAM_URL.to_owned());
                check_http_url(&iam_url, &format!("{}.iam_url", c.path()))?;
                Ok(Self::Iam { iam_url })
            }
            "bearer" => Ok(Self::Bearer),
            other => Err(PluginError::Config(format!(
                "{}.auth: expected iam or bearer, found {other:?}",
                c.path()
            ))),
        }
    }

    /// The access token for `api_key`: from the cache (IAM), or the key itself (bearer).
    pub async fn token(&self, cache: &TokenCache, api_key: &Secret) -> Result<Secret, PluginError> {
        match self {
            Self::Iam { iam_url } => cache.token(iam_url, api_key).await,
            Self::Bearer => Ok(api_key.clone()),
        }
    }

    /// Forgets a cached token the service refused (the next session fetches a new one).
    pub async fn refused(&self, cache: &TokenCache, api_key: &Secret) {
        if let Self::Iam { iam_url } = self {
            cache.invalidate(iam_url, api_key).await;
        }
    }
}

/// The session's API key: its `api_key`, else the `api_key` credential.
pub fn api_key(
    api_key: Option<&Secret>,
    creds: &Credentials,
    ctx: &str,
    env: &str,
) -> Result<Secret, PluginError> {
    api_key
        .cloned()
        .or_else(|| creds.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| PluginError::Auth(format!("{ctx}: no API key (set api_key or {env})")))
}

/// The service instance URL (`https://api.<region>.<service>.watson.cloud.ibm.com/instances/<id>`)
/// from the `url` credential, without a trailing `/`. `http://` is allowed (tests, proxies);
/// `ws(s)://` too when `allow_ws` (the STT socket).
pub fn instance_url(
    creds: &Credentials,
    ctx: &str,
    env: &str,
    allow_ws: bool,
) -> Result<String, PluginError> {
    let url = creds
        .expose(URL_FIELD)
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            PluginError::Config(format!(
                "{ctx}: no service instance URL (set url or {env}, e.g. \
                 https://api.us-south.{}.watson.cloud.ibm.com/instances/<id>)",
                if ctx.contains("tts") {
                    "text-to-speech"
                } else {
                    "speech-to-text"
                }
            ))
        })?;
    let ok_scheme = url.starts_with("https://")
        || url.starts_with("http://")
        || (allow_ws && (url.starts_with("wss://") || url.starts_with("ws://")));
    let host_part = url.split_once("://").map_or("", |(_, rest)| rest);
    if !ok_scheme || host_part.is_empty() || host_part.starts_with('/') {
        return Err(PluginError::Config(format!(
            "{ctx}: url must be an http(s) URL of the service instance, found {url:?}"
        )));
    }
    if url.contains('?') || url.contains('#') {
        return Err(PluginError::Config(format!(
            "{ctx}: url must not carry a query or fragment, found {url:?}"
        )));
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// Checks that `url` is an `http(s)://` URL with a host.
pub fn check_http_url(url: &str, what: &str) -> Result<(), PluginError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') => Ok(()),
        _ => Err(PluginError::Config(format!(
            "{what}: expected an http(s) URL, found {url:?}"
        ))),
    }
}

/// A duration in milliseconds from `key`, `default` when absent; `0` means `None` when
/// `zero_off`, else is refused.
pub fn millis(
    c: &PluginConfig,
    key: &str,
    default: u64,
    zero_off: bool,
) -> Result<Option<Duration>, PluginError> {
    let v = c.u64(key)?.unwrap_or(default);
    if v == 0 {
        if zero_off {
            return Ok(None);
        }
        return Err(PluginError::Config(format!(
            "{}.{key}: must be greater than 0",
            c.path()
        )));
    }
    if v > 3_600_000 {
        return Err(PluginError::Config(format!(
            "{}.{key}: at most 3600000 ms, found {v}",
            c.path()
        )));
    }
    Ok(Some(Duration::from_millis(v)))
}

/// A number in `lo..=hi` from `key`, if set.
pub fn ranged(c: &PluginConfig, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, PluginError> {
    match c.f64(key)? {
        None => Ok(None),
        Some(v) if v.is_finite() && (lo..=hi).contains(&v) => Ok(Some(v)),
        Some(v) => Err(PluginError::Config(format!(
            "{}.{key}: expected {lo}–{hi}, found {v}",
            c.path()
        ))),
    }
}

/// An identifier-like string from `key` (customization ids, model names, voice names): no
/// characters that would need escaping in a URL query.
pub fn ident(c: &PluginConfig, key: &str) -> Result<Option<String>, PluginError> {
    match c.string(key)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) if is_ident(&s) => Ok(Some(s)),
        Some(s) => Err(PluginError::Config(format!(
            "{}.{key}: unexpected characters in {s:?}",
            c.path()
        ))),
    }
}

/// Whether `s` is made of `[A-Za-z0-9_.:-]` only (and at most 200 of them).
pub fn is_ident(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

/// The message carried by a PluginError.
pub fn message(e: &PluginError) -> &str {
    match e {
        PluginError::Config(m)
        | PluginError::Auth(m)
        | PluginError::Transient(m)
        | PluginError::Permanent(m)
        | PluginError::Timeout(m)
        | PluginError::Panicked(m) => m,
        PluginError::RateLimited { message, .. } => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn creds(url: &str) -> Credentials {
        let mut c = Credentials::new();
        c.set(URL_FIELD, Secret::from(url));
        c
    }

    #[test]
    fn instance_urls() {
        let u = instance_url(
            &creds("https://api.us-south.speech-to-text.watson.cloud.ibm.com/instances/abc/"),
            "ibm stt",
            "IBM_STT_URL",
            true,
        )
        .unwrap();
        assert_eq!(
            u,
            "https://api.us-south.speech-to-text.watson.cloud.ibm.com/instances/abc"
        );
        assert!(instance_url(&creds("ws://127.0.0.1:1/x"), "ibm stt", "E", true).is_ok());
        assert!(instance_url(&creds("ws://127.0.0.1:1/x"), "ibm tts", "E", false).is_err());
        assert!(instance_url(&creds("ftp://x"), "ibm tts", "E", false).is_err());
        assert!(instance_url(&creds("https://"), "ibm tts", "E", false).is_err());
        assert!(instance_url(&creds("https://h/i?x=1"), "ibm tts", "E", false).is_err());
        let e = instance_url(&Credentials::new(), "ibm tts", "IBM_TTS_URL", false).unwrap_err();
        assert!(e.to_string().contains("IBM_TTS_URL"), "{e}");
    }

    #[test]
    fn auth_modes() {
        let c = PluginConfig::from_value("p", json!({})).unwrap();
        assert_eq!(
            AuthMode::from_config(&c).unwrap(),
            AuthMode::Iam {
                iam_url: DEFAULT_IAM_URL.into()
            }
        );
        let c = PluginConfig::from_value("p", json!({"auth": "bearer"})).unwrap();
        assert_eq!(AuthMode::from_config(&c).unwrap(), AuthMode::Bearer);
        let c = PluginConfig::from_value("p", json!({"auth": "basic"})).unwrap();
        assert!(AuthMode::from_config(&c).is_err());
        let c = PluginConfig::from_value("p", json!({"iam_url": "iam.example"})).unwrap();
        assert!(AuthMode::from_config(&c).is_err());
    }
}
