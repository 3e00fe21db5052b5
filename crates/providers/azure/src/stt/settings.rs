//! The plugin's config section and the session URL (validation only, no I/O).

use std::time::Duration;
use waav_plugin_api::{PluginConfig, PluginError};

/// `SpeechConnectionFactory.ts`: the v1 recognition paths (`conversationRelativeUri`,
/// `dictationRelativeUri`). The SDK's newest default is `/stt/speech/universal/v2`
/// (`RecognizerConfig.recognitionEndpointVersion` defaults to "2"); we use the documented v1
/// conversation endpoint, which a custom `base_url` with a path can replace.
pub const CONVERSATION_PATH: &str = "/speech/recognition/conversation/cognitiveservices/v1";
/// The dictation endpoint (`dictationRelativeUri`).
pub const DICTATION_PATH: &str = "/speech/recognition/dictation/cognitiveservices/v1";

/// Recognition mode: the endpoint path and the `recognition` field of `speech.config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Continuous recognition (the default).
    Conversation,
    /// Continuous recognition with spoken punctuation; ends with `EndOfDictation`.
    Dictation,
}

impl Mode {
    /// The path under the host.
    pub fn path(self) -> &'static str {
        match self {
            Self::Conversation => CONVERSATION_PATH,
            Self::Dictation => DICTATION_PATH,
        }
    }

    /// `RecognitionMode[value].toLowerCase()`, as `speech.config` carries it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Conversation => "conversation",
            Self::Dictation => "dictation",
        }
    }
}

/// Result format (`format` query parameter; `OutputFormat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `DisplayText` only.
    Simple,
    /// `NBest` with confidence, lexical/ITN forms and word timings.
    Detailed,
}

/// Validated settings of a plugin instance.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Full URL override (`base_url` or `endpoint`).
    pub base_url: Option<String>,
    /// Recognition mode.
    pub mode: Mode,
    /// Result format.
    pub format: Format,
    /// `profanity`: masked, removed or raw.
    pub profanity: Option<String>,
    /// `cid`: a Custom Speech endpoint id (a session's non-empty `model` overrides it).
    pub endpoint_id: Option<String>,
    /// `wordLevelTimestamps`.
    pub word_timestamps: bool,
    /// `initialSilenceTimeoutMs`.
    pub initial_silence_timeout_ms: Option<u64>,
    /// `endSilenceTimeoutMs`.
    pub end_silence_timeout_ms: Option<u64>,
    /// `segmentationSilenceTimeoutMs`: the pause that ends a phrase.
    pub segmentation_silence_timeout_ms: Option<u64>,
    /// `stableIntermediateThreshold`.
    pub stable_intermediate_threshold: Option<u64>,
    /// `storeAudio`.
    pub store_audio: Option<bool>,
    /// A phrase list sent in `speech.context` on every turn.
    pub phrases: Vec<String>,
    /// WebSocket ping interval (`None`: no pings).
    pub ping_interval: Option<Duration>,
    /// Fail when nothing at all (not even a pong) arrives for this long.
    pub idle_timeout: Option<Duration>,
    /// Deadline for `turn.end` after a finalize.
    pub finalize_timeout: Duration,
    /// Deadline for the last results after the input closed.
    pub drain_timeout: Duration,
    /// Audio held while a finalized turn ends, in milliseconds of audio.
    pub max_pending_ms: u64,
    /// Largest message accepted from the service.
    pub max_message_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: None,
            mode: Mode::Conversation,
            format: Format::Detailed,
            profanity: None,
            endpoint_id: None,
            word_timestamps: true,
            initial_silence_timeout_ms: None,
            end_silence_timeout_ms: None,
            segmentation_silence_timeout_ms: None,
            stable_intermediate_threshold: None,
            store_audio: None,
            phrases: Vec::new(),
            ping_interval: Some(Duration::from_secs(20)),
            idle_timeout: Some(Duration::from_secs(60)),
            finalize_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(10),
            max_pending_ms: 10_000,
            max_message_bytes: 1 << 20,
        }
    }
}

/// Every key the section may hold (an unknown key is a config error: a typo would otherwise
/// silently change nothing).
const KEYS: &[&str] = &[
    "enabled",
    "api_key",
    "region",
    "base_url",
    "endpoint",
    "mode",
    "format",
    "profanity",
    "endpoint_id",
    "word_timestamps",
    "initial_silence_timeout_ms",
    "end_silence_timeout_ms",
    "segmentation_silence_timeout_ms",
    "stable_intermediate_threshold",
    "store_audio",
    "phrases",
    "ping_interval_ms",
    "idle_timeout_ms",
    "finalize_timeout_ms",
    "drain_timeout_ms",
    "max_pending_ms",
    "max_message_bytes",
];

fn config_err(cfg: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", cfg.path()))
}

fn ms(cfg: &PluginConfig, key: &str, max: u64) -> Result<Option<u64>, PluginError> {
    match cfg.u64(key)? {
        Some(v) if v > max => Err(config_err(cfg, key, format!("at most {max}"))),
        v => Ok(v),
    }
}

// `0` turns a timer off; absent keeps the default.
fn opt_duration(
    cfg: &PluginConfig,
    key: &str,
    default: Option<Duration>,
) -> Result<Option<Duration>, PluginError> {
    Ok(match ms(cfg, key, 3_600_000)? {
        None => default,
        Some(0) => None,
        Some(v) => Some(Duration::from_millis(v)),
    })
}

fn duration(cfg: &PluginConfig, key: &str, default: Duration) -> Result<Duration, PluginError> {
    Ok(match ms(cfg, key, 600_000)? {
        None => default,
        Some(0) => return Err(config_err(cfg, key, "must be positive")),
        Some(v) => Duration::from_millis(v),
    })
}

/// Whether `s` is a plain token: ASCII letters, digits, `-` and `_` (regions, ids, locales).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Settings {
    /// Reads and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        if let Some(k) = cfg.keys().find(|k| !KEYS.contains(k)) {
            return Err(config_err(
                cfg,
                k,
                format!("unknown option; known: {}", KEYS.join(", ")),
            ));
        }
        let d = Self::default();
        let base_url = match (cfg.string("base_url")?, cfg.string("endpoint")?) {
            (Some(_), Some(_)) => {
                return Err(config_err(
                    cfg,
                    "endpoint",
                    "set base_url or endpoint, not both",
                ))
            }
            (a, b) => a.or(b).filter(|s| !s.trim().is_empty()),
        };
        if let Some(url) = &base_url {
            let scheme_ok = url.starts_with("wss://") || url.starts_with("ws://");
            if !scheme_ok || url.contains(char::is_whitespace) {
                return Err(config_err(
                    cfg,
                    "base_url",
                    "expected a ws:// or wss:// URL without spaces",
                ));
            }
        }
        let mode = match cfg.string("mode")?.as_deref() {
            None | Some("conversation") => Mode::Conversation,
            Some("dictation") => Mode::Dictation,
            Some(other) => {
                return Err(config_err(
                    cfg,
                    "mode",
                    format!("{other:?}: expected conversation or dictation"),
                ))
            }
        };
        let format = match cfg.string("format")?.as_deref() {
            None | Some("detailed") => Format::Detailed,
            Some("simple") => Format::Simple,
            Some(other) => {
                return Err(config_err(
                    cfg,
                    "format",
                    format!("{other:?}: expected detailed or simple"),
                ))
            }
        };
        let profanity = cfg.string("profanity")?;
        if let Some(p) = &profanity {
            if !["masked", "removed", "raw"].contains(&p.as_str()) {
                return Err(config_err(
                    cfg,
                    "profanity",
                    format!("{p:?}: expected masked, removed or raw"),
                ));
            }
        }
        let endpoint_id = cfg.string("endpoint_id")?.filter(|s| !s.is_empty());
        if let Some(id) = &endpoint_id {
            if !is_token(id) {
                return Err(config_err(
                    cfg,
                    "endpoint_id",
                    "expected an id (letters, digits, -)",
                ));
            }
        }
        let phrases = cfg.strings("phrases")?.unwrap_or_default();
        if phrases.len() > 500 || phrases.iter().any(|p| p.len() > 256) {
            return Err(config_err(
                cfg,
                "phrases",
                "at most 500 phrases of at most 256 bytes",
            ));
        }
        let max_message_bytes = match cfg.u64("max_message_bytes")? {
            None => d.max_message_bytes,
            Some(v) if (4096..=(64 << 20)).contains(&v) => v as usize,
            Some(_) => {
                return Err(config_err(
                    cfg,
                    "max_message_bytes",
                    "between 4096 and 64 MiB",
                ))
            }
        };
        Ok(Self {
            base_url,
            mode,
            format,
            profanity,
            endpoint_id,
            word_timestamps: cfg.bool("word_timestamps")?.unwrap_or(d.word_timestamps),
            initial_silence_timeout_ms: ms(cfg, "initial_silence_timeout_ms", 600_000)?,
            end_silence_timeout_ms: ms(cfg, "end_silence_timeout_ms", 600_000)?,
            segmentation_silence_timeout_ms: ms(cfg, "segmentation_silence_timeout_ms", 600_000)?,
            stable_intermediate_threshold: ms(cfg, "stable_intermediate_threshold", 1000)?,
            store_audio: cfg.bool("store_audio")?,
            phrases,
            ping_interval: opt_duration(cfg, "ping_interval_ms", d.ping_interval)?,
            idle_timeout: opt_duration(cfg, "idle_timeout_ms", d.idle_timeout)?,
            finalize_timeout: duration(cfg, "finalize_timeout_ms", d.finalize_timeout)?,
            drain_timeout: duration(cfg, "drain_timeout_ms", d.drain_timeout)?,
            max_pending_ms: ms(cfg, "max_pending_ms", 600_000)?.unwrap_or(d.max_pending_ms),
            max_message_bytes,
        })
    }

    /// The session URL: `base_url` (its path kept when it has one, else the mode's path
    /// appended) or `wss://<region>.stt.speech.<suffix><path>`, then the query parameters the
    /// SDK sends (`SpeechConnectionFactory.create`, `ConnectionFactoryBase.setCommonUrlParams`):
    /// `cid` when a custom endpoint id is set, otherwise `language`; `format`; and the optional
    /// ones. As in the SDK, a parameter already in a custom URL is not added again.
    pub fn url(&self, region: Option<&str>, language: &str, endpoint_id: Option<&str>) -> String {
        let mut url = match &self.base_url {
            Some(base) => {
                let after_scheme = base.split_once("://").map_or(base.as_str(), |(_, r)| r);
                let has_path = after_scheme
                    .split_once('/')
                    .is_some_and(|(_, p)| !p.is_empty() && !p.starts_with('?'));
                if has_path {
                    base.clone()
                } else {
                    format!("{}{}", base.trim_end_matches('/'), self.mode.path())
                }
            }
            None => {
                let region = region.unwrap_or_default().to_ascii_lowercase();
                format!(
                    "wss://{region}.stt.speech{}{}",
                    host_suffix(&region),
                    self.mode.path()
                )
            }
        };
        let existing = url.split_once('?').map(|(_, q)| q.to_owned());
        let present = |name: &str| {
            existing
                .as_deref()
                .is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some(name)))
        };
        let mut params: Vec<(&str, String)> = Vec::new();
        match endpoint_id {
            Some(id) => params.push(("cid", id.to_owned())),
            None => params.push(("language", language.to_owned())),
        }
        params.push((
            "format",
            match self.format {
                Format::Simple => "simple",
                Format::Detailed => "detailed",
            }
            .to_owned(),
        ));
        if let Some(p) = &self.profanity {
            params.push(("profanity", p.clone()));
        }
        if self.word_timestamps {
            params.push(("wordLevelTimestamps", "true".to_owned()));
        }
        if let Some(v) = self.initial_silence_timeout_ms {
            params.push(("initialSilenceTimeoutMs", v.to_string()));
        }
        if let Some(v) = self.end_silence_timeout_ms {
            params.push(("endSilenceTimeoutMs", v.to_string()));
        }
        if let Some(v) = self.segmentation_silence_timeout_ms {
            params.push(("segmentationSilenceTimeoutMs", v.to_string()));
        }
        if let Some(v) = self.stable_intermediate_threshold {
            params.push(("stableIntermediateThreshold", v.to_string()));
        }
        if let Some(v) = self.store_audio {
            params.push(("storeAudio", v.to_string()));
        }
        for (name, value) in params {
            if present(name) {
                continue;
            }
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(name);
            url.push('=');
            // Values are validated tokens, numbers or booleans: nothing to percent-encode.
            url.push_str(&value);
        }
        url
    }
}

/// `ConnectionFactoryBase.getHostSuffix`: China regions use `.azure.cn`, US Government ones
/// `.azure.us`, the rest `.microsoft.com`.
pub fn host_suffix(region: &str) -> &'static str {
    if region.starts_with("china") {
        ".azure.cn"
    } else if region.starts_with("usgov") {
        ".azure.us"
    } else {
        ".microsoft.com"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: serde_json::Value) -> Result<Settings, PluginError> {
        Settings::from_config(&PluginConfig::from_value("plugins.stt.microsoft-azure", v).unwrap())
    }

    #[test]
    fn the_default_url_is_the_regional_conversation_endpoint() {
        let s = settings(json!({})).unwrap();
        assert_eq!(
            s.url(Some("westeurope"), "en-US", None),
            "wss://westeurope.stt.speech.microsoft.com/speech/recognition/conversation/\
             cognitiveservices/v1?language=en-US&format=detailed&wordLevelTimestamps=true"
        );
        assert!(s
            .url(Some("chinaeast2"), "zh-CN", None)
            .starts_with("wss://chinaeast2.stt.speech.azure.cn/"));
        assert!(s
            .url(Some("usgovvirginia"), "en-US", None)
            .starts_with("wss://usgovvirginia.stt.speech.azure.us/"));
        assert!(s
            .url(Some("eastus"), "en-US", Some("abc-123"))
            .contains("?cid=abc-123&format=detailed"));
    }

    #[test]
    fn a_base_url_overrides_the_region() {
        let s = settings(json!({"base_url": "ws://127.0.0.1:9", "format": "simple",
            "word_timestamps": false, "profanity": "raw", "mode": "dictation",
            "segmentation_silence_timeout_ms": 500}))
        .unwrap();
        assert_eq!(
            s.url(None, "de-DE", None),
            "ws://127.0.0.1:9/speech/recognition/dictation/cognitiveservices/v1?language=de-DE\
             &format=simple&profanity=raw&segmentationSilenceTimeoutMs=500"
        );
        let s = settings(json!({"endpoint": "wss://host/custom/path?format=detailed"})).unwrap();
        assert_eq!(
            s.url(None, "en-US", None),
            "wss://host/custom/path?format=detailed&language=en-US&wordLevelTimestamps=true"
        );
    }

    #[test]
    fn bad_values_are_config_errors_naming_the_key() {
        for (v, key) in [
            (json!({"mode": "interactive"}), "mode"),
            (json!({"format": "verbose"}), "format"),
            (json!({"profanity": "none"}), "profanity"),
            (json!({"base_url": "https://x"}), "base_url"),
            (
                json!({"base_url": "ws://a", "endpoint": "ws://b"}),
                "endpoint",
            ),
            (json!({"finalize_timeout_ms": 0}), "finalize_timeout_ms"),
            (json!({"word_timestamps": "yes"}), "word_timestamps"),
            (json!({"endpoint_id": "a/b"}), "endpoint_id"),
            (json!({"max_message_bytes": 1}), "max_message_bytes"),
            (json!({"segmentation_silence": 1}), "segmentation_silence"),
        ] {
            let e = settings(v).unwrap_err();
            assert!(
                matches!(&e, PluginError::Config(m) if m.contains(key)),
                "{key}: {e}"
            );
        }
        let s = settings(json!({"ping_interval_ms": 0, "idle_timeout_ms": 5})).unwrap();
        assert_eq!(s.ping_interval, None);
        assert_eq!(s.idle_timeout, Some(Duration::from_millis(5)));
    }
}
