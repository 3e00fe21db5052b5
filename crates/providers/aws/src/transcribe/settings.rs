//! The Transcribe config section and the session URL (validation only, no I/O).
//!
//! Query parameters from the Transcribe Developer Guide, "Using Amazon Transcribe streaming with
//! WebSockets" (`awsdocs/amazon-transcribe-developer-guide`, `doc_source/websocket.md`):
//! `language-code`, `media-encoding`, `sample-rate`, `session-id`, `vocabulary-name`, then the
//! SigV4 query parameters (`X-Amz-Expires` at most 300). The other parameters are the
//! `x-amzn-transcribe-*` request headers of StartStreamTranscription without their prefix
//! (`STT_PROTOCOLS.md` §8): `vocabulary-filter-name`, `vocabulary-filter-method`,
//! `language-model-name`, `show-speaker-label`, `enable-partial-results-stabilization`,
//! `partial-results-stability`, `content-redaction-type`, `pii-entity-types`; their use as
//! WebSocket query parameters is **UNCONFIRMED** beyond the guide's examples.

use crate::auth;
use std::time::Duration;
use waav_plugin_api::{PluginConfig, PluginError};

/// The plugin id.
pub const ID: &str = "aws-transcribe";
/// The WebSocket path.
pub const PATH: &str = "/stream-transcription-websocket";
/// `X-Amz-Expires` may not exceed 300 s (`websocket.md`).
pub const MAX_URL_EXPIRY: Duration = Duration::from_secs(300);

/// Validated settings of the plugin's config section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `endpoint` (or `base_url`): `wss://transcribestreaming.{region}.amazonaws.com:8443`.
    pub endpoint: Option<String>,
    /// `vocabulary-name`.
    pub vocabulary_name: Option<String>,
    /// `vocabulary-filter-name`.
    pub vocabulary_filter_name: Option<String>,
    /// `vocabulary-filter-method`: remove, mask or tag.
    pub vocabulary_filter_method: Option<String>,
    /// `language-model-name` (a session's non-empty `model` overrides it).
    pub language_model_name: Option<String>,
    /// `show-speaker-label`.
    pub show_speaker_label: bool,
    /// `partial-results-stability` (low, medium, high), which also turns on
    /// `enable-partial-results-stabilization`.
    pub partial_results_stability: Option<String>,
    /// `session-id`.
    pub session_id: Option<String>,
    /// `content-redaction-type` (`PII`).
    pub content_redaction_type: Option<String>,
    /// `pii-entity-types`.
    pub pii_entity_types: Option<String>,
    /// `X-Amz-Expires` of the presigned URL.
    pub url_expiry: Duration,
    /// Largest audio payload per `AudioEvent` (larger chunks are split).
    pub max_chunk_ms: u64,
    /// WebSocket ping interval (`None`: off).
    pub ping_interval: Option<Duration>,
    /// Fail when nothing at all (not even a pong) arrives for this long.
    pub idle_timeout: Option<Duration>,
    /// After a finalize: how long to wait for the service to close the stream.
    pub finalize_timeout: Duration,
    /// After the input closed: how long to wait for the last results.
    pub drain_timeout: Duration,
    /// Audio held while a finalized stream ends, in ms.
    pub max_pending_ms: u64,
    /// Largest service message accepted.
    pub max_message_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            vocabulary_name: None,
            vocabulary_filter_name: None,
            vocabulary_filter_method: None,
            language_model_name: None,
            show_speaker_label: false,
            partial_results_stability: None,
            session_id: None,
            content_redaction_type: None,
            pii_entity_types: None,
            url_expiry: MAX_URL_EXPIRY,
            max_chunk_ms: 200,
            ping_interval: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(30)),
            finalize_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            max_pending_ms: 10_000,
            max_message_bytes: 1 << 20,
        }
    }
}

const KEYS: &[&str] = &[
    "enabled",
    auth::ACCESS_KEY_ID,
    auth::SECRET_ACCESS_KEY,
    auth::SESSION_TOKEN,
    auth::REGION,
    "endpoint",
    "base_url",
    "vocabulary_name",
    "vocabulary_filter_name",
    "vocabulary_filter_method",
    "language_model_name",
    "show_speaker_label",
    "partial_results_stability",
    "session_id",
    "content_redaction_type",
    "pii_entity_types",
    "url_expires_secs",
    "max_chunk_ms",
    "ping_interval_ms",
    "idle_timeout_ms",
    "finalize_timeout_ms",
    "drain_timeout_ms",
    "max_pending_ms",
    "max_message_bytes",
];

/// A value safe in a query string without encoding: names, ids, language codes, comma lists.
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 200
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b','))
}

fn token(cfg: &PluginConfig, key: &str) -> Result<Option<String>, PluginError> {
    match cfg.string(key)? {
        None => Ok(None),
        Some(v) if is_token(&v) => Ok(Some(v)),
        Some(v) => Err(PluginError::Config(format!(
            "{}.{key}: invalid value {v:?}",
            cfg.path()
        ))),
    }
}

fn one_of(cfg: &PluginConfig, key: &str, allowed: &[&str]) -> Result<Option<String>, PluginError> {
    match cfg.string(key)? {
        None => Ok(None),
        Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v)),
        Some(v) => Err(PluginError::Config(format!(
            "{}.{key}: {v:?} is not one of {}",
            cfg.path(),
            allowed.join(", ")
        ))),
    }
}

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        auth::check_keys(cfg, KEYS)?;
        let d = Self::default();
        let opt_ms =
            |key: &str, default: Option<Duration>| -> Result<Option<Duration>, PluginError> {
                Ok(match auth::millis(cfg, key, 3_600_000)? {
                    None => default,
                    Some(z) if z.is_zero() => None,
                    Some(v) => Some(v),
                })
            };
        let endpoint = match auth::base_url(cfg, "endpoint", &["ws", "wss"])? {
            Some(u) => Some(u),
            None => auth::base_url(cfg, "base_url", &["ws", "wss"])?,
        };
        let url_expiry = match cfg.u64("url_expires_secs")? {
            None => d.url_expiry,
            Some(s @ 1..=300) => Duration::from_secs(s),
            Some(s) => {
                return Err(PluginError::Config(format!(
                    "{}.url_expires_secs: {s} is outside 1–300",
                    cfg.path()
                )))
            }
        };
        Ok(Self {
            endpoint,
            vocabulary_name: token(cfg, "vocabulary_name")?,
            vocabulary_filter_name: token(cfg, "vocabulary_filter_name")?,
            vocabulary_filter_method: one_of(
                cfg,
                "vocabulary_filter_method",
                &["remove", "mask", "tag"],
            )?,
            language_model_name: token(cfg, "language_model_name")?,
            show_speaker_label: cfg.bool("show_speaker_label")?.unwrap_or(false),
            partial_results_stability: one_of(
                cfg,
                "partial_results_stability",
                &["low", "medium", "high"],
            )?,
            session_id: token(cfg, "session_id")?,
            content_redaction_type: one_of(cfg, "content_redaction_type", &["PII"])?,
            pii_entity_types: token(cfg, "pii_entity_types")?,
            url_expiry,
            max_chunk_ms: cfg
                .u64("max_chunk_ms")?
                .unwrap_or(d.max_chunk_ms)
                .clamp(10, 1000),
            ping_interval: opt_ms("ping_interval_ms", d.ping_interval)?,
            idle_timeout: opt_ms("idle_timeout_ms", d.idle_timeout)?,
            finalize_timeout: opt_ms("finalize_timeout_ms", Some(d.finalize_timeout))?
                .unwrap_or(Duration::from_millis(1)),
            drain_timeout: opt_ms("drain_timeout_ms", Some(d.drain_timeout))?
                .unwrap_or(Duration::from_millis(1)),
            max_pending_ms: cfg
                .u64("max_pending_ms")?
                .unwrap_or(d.max_pending_ms)
                .min(600_000),
            max_message_bytes: cfg
                .u64("max_message_bytes")?
                .map_or(d.max_message_bytes, |b| b.clamp(4096, 64 << 20) as usize),
        })
    }

    /// The URL to presign: endpoint, path and the session's query parameters (no SigV4 ones).
    pub fn url(
        &self,
        region: &str,
        language: &str,
        sample_rate: u32,
        model: Option<&str>,
    ) -> String {
        let base = self
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("wss://transcribestreaming.{region}.amazonaws.com:8443"));
        let mut url = if base.ends_with(PATH) {
            base
        } else {
            format!("{base}{PATH}")
        };
        url.push_str(&format!(
            "?language-code={language}&media-encoding=pcm&sample-rate={sample_rate}"
        ));
        let mut add = |k: &str, v: &str| url.push_str(&format!("&{k}={v}"));
        if let Some(v) = &self.session_id {
            add("session-id", v);
        }
        if let Some(v) = &self.vocabulary_name {
            add("vocabulary-name", v);
        }
        if let Some(v) = &self.vocabulary_filter_name {
            add("vocabulary-filter-name", v);
        }
        if let Some(v) = &self.vocabulary_filter_method {
            add("vocabulary-filter-method", v);
        }
        if let Some(v) = model.or(self.language_model_name.as_deref()) {
            add("language-model-name", v);
        }
        if self.show_speaker_label {
            add("show-speaker-label", "true");
        }
        if let Some(v) = &self.partial_results_stability {
            add("enable-partial-results-stabilization", "true");
            add("partial-results-stability", v);
        }
        if let Some(v) = &self.content_redaction_type {
            add("content-redaction-type", v);
        }
        if let Some(v) = &self.pii_entity_types {
            // A comma list: commas are encoded as SigV4 canonicalisation expects.
            add("pii-entity-types", &v.replace(',', "%2C"));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Settings, PluginError> {
        Settings::from_config(&PluginConfig::from_value("plugins.stt.aws-transcribe", v).unwrap())
    }

    #[test]
    fn url_and_validation() {
        let s = parse(json!({})).unwrap();
        assert_eq!(
            s.url("eu-west-1", "en-GB", 8000, None),
            "wss://transcribestreaming.eu-west-1.amazonaws.com:8443/stream-transcription-websocket\
             ?language-code=en-GB&media-encoding=pcm&sample-rate=8000"
        );
        let s = parse(
            json!({"endpoint": "ws://127.0.0.1:9/", "show_speaker_label": true,
            "partial_results_stability": "high", "vocabulary_name": "v1",
            "pii_entity_types": "NAME,SSN", "content_redaction_type": "PII"}),
        )
        .unwrap();
        let u = s.url("x", "en-US", 16000, Some("clm"));
        assert!(
            u.starts_with("ws://127.0.0.1:9/stream-transcription-websocket?"),
            "{u}"
        );
        for part in [
            "&vocabulary-name=v1",
            "&language-model-name=clm",
            "&show-speaker-label=true",
            "&enable-partial-results-stabilization=true&partial-results-stability=high",
            "&pii-entity-types=NAME%2CSSN",
        ] {
            assert!(u.contains(part), "{u} lacks {part}");
        }
        for bad in [
            json!({"endpoint": "https://x"}),
            json!({"vocabulary_name": "a b"}),
            json!({"partial_results_stability": "max"}),
            json!({"url_expires_secs": 301}),
            json!({"nope": true}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
        let s = parse(json!({"ping_interval_ms": 0, "idle_timeout_ms": 0})).unwrap();
        assert_eq!((s.ping_interval, s.idle_timeout), (None, None));
    }
}
