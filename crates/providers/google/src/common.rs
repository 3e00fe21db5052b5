//! What the STT and TTS plugins share: channels per endpoint and plugin-config helpers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use waav_plugin_api::{PluginConfig, PluginError};
use waav_provider_kit::grpc::{self, tonic::transport::Channel, GrpcConfig};

/// Channels per endpoint URL: gRPC multiplexes every session's calls over one HTTP/2
/// connection, so sessions share them (cloning a channel is cheap).
#[derive(Debug, Default)]
pub struct Channels {
    map: Mutex<HashMap<String, Channel>>,
}

impl Channels {
    /// The channel for `endpoint` (created lazily: the connection is made on the first call,
    /// and re-made by tonic after a failure).
    pub fn get(
        &self,
        endpoint: &str,
        connect_timeout: Duration,
        keepalive: Option<Duration>,
        context: &str,
    ) -> Result<Channel, PluginError> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(endpoint) {
            return Ok(c.clone());
        }
        let mut cfg = GrpcConfig::new(endpoint);
        cfg.connect_timeout = connect_timeout;
        cfg.keepalive = keepalive;
        cfg.context = context.to_owned();
        cfg.user_agent = Some(concat!("waav-gateway/", env!("CARGO_PKG_VERSION")).to_owned());
        let ch = grpc::connect_lazy(&cfg)?;
        if map.len() >= 16 {
            map.clear();
        }
        map.insert(endpoint.to_owned(), ch.clone());
        Ok(ch)
    }
}

/// `endpoint` (alias `base_url`) from the plugin config, validated, without a trailing `/`.
pub fn endpoint_override(cfg: &PluginConfig) -> Result<Option<String>, PluginError> {
    let v = match cfg.string("endpoint")? {
        Some(v) => Some(v),
        None => cfg.string("base_url")?,
    };
    match v {
        None => Ok(None),
        Some(v) if v.starts_with("https://") || v.starts_with("http://") => {
            Ok(Some(v.trim_end_matches('/').to_owned()))
        }
        Some(v) => Err(PluginError::Config(format!(
            "{}.endpoint: {v:?} must start with https:// (or http:// for a local server)",
            cfg.path()
        ))),
    }
}

/// A duration in milliseconds from `key`, within `min..=max`, else `default`.
pub fn millis(
    cfg: &PluginConfig,
    key: &str,
    default: Duration,
    min: u64,
    max: u64,
) -> Result<Duration, PluginError> {
    match cfg.u64(key)? {
        None => Ok(default),
        Some(v) if (min..=max).contains(&v) => Ok(Duration::from_millis(v)),
        Some(v) => Err(PluginError::Config(format!(
            "{}.{key}: {v} is outside {min}–{max}",
            cfg.path()
        ))),
    }
}

/// An optional non-empty string (`x-goog-user-project`).
pub fn user_project(cfg: &PluginConfig) -> Result<Option<String>, PluginError> {
    Ok(cfg.string("user_project")?.filter(|s| !s.is_empty()))
}
