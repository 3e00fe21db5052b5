//! The two configurations of the transcription client (OpenAI and Groq) and the settings parsed
//! from a plugin config section.

use crate::common::{self, AccountHeaders};
use std::time::Duration;
use waav_plugin_api::{PluginConfig, PluginError};

/// What differs between OpenAI and Groq: everything else is one implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flavor {
    /// Plugin id.
    pub id: &'static str,
    /// Display name.
    pub name: &'static str,
    /// Aliases.
    pub aliases: &'static [&'static str],
    /// Description.
    pub description: &'static str,
    /// Names the provider in messages.
    pub context: &'static str,
    /// The API key's environment variable.
    pub key_env: &'static str,
    /// Default base URL (paths `/v1/audio/transcriptions` are appended).
    pub base_url: &'static str,
    /// Default model.
    pub default_model: &'static str,
    /// Models `(id, name)`.
    pub models: &'static [(&'static str, &'static str)],
    /// Whether the account headers (`OpenAI-Organization`, `OpenAI-Project`) apply.
    pub account_headers: bool,
}

/// OpenAI: `POST https://api.openai.com/v1/audio/transcriptions` (openai-python
/// `resources/audio/transcriptions.py`; models from `types/audio_model.py`).
pub const OPENAI: Flavor = Flavor {
    id: "openai",
    name: "OpenAI",
    aliases: &["openai-stt", "openai-whisper"],
    description:
        "OpenAI speech-to-text (POST /v1/audio/transcriptions, per utterance; SSE interims)",
    context: "openai stt",
    key_env: "OPENAI_API_KEY",
    base_url: common::OPENAI_BASE_URL,
    default_model: "gpt-4o-transcribe",
    models: &[
        ("gpt-4o-transcribe", "GPT-4o Transcribe"),
        ("gpt-4o-mini-transcribe", "GPT-4o mini Transcribe"),
        (
            "gpt-4o-mini-transcribe-2025-12-15",
            "GPT-4o mini Transcribe (2025-12-15)",
        ),
        ("gpt-transcribe", "GPT Transcribe"),
        ("whisper-1", "Whisper V2"),
    ],
    account_headers: true,
};

/// Groq: `POST https://api.groq.com/openai/v1/audio/transcriptions` (groq-python
/// `resources/audio/transcriptions.py`; models from `types/audio/transcription_create_params.py`:
/// `whisper-large-v3` and `whisper-large-v3-turbo`; `distil-whisper-large-v3-en` is retired per
/// `STT_PROTOCOLS.md` §10 and not declared). No streaming.
pub const GROQ: Flavor = Flavor {
    id: "groq",
    name: "Groq",
    aliases: &["groq-stt", "groq-whisper"],
    description: "Groq Whisper speech-to-text (OpenAI-compatible /openai/v1/audio/transcriptions)",
    context: "groq stt",
    key_env: "GROQ_API_KEY",
    base_url: common::GROQ_BASE_URL,
    default_model: "whisper-large-v3-turbo",
    models: &[
        ("whisper-large-v3-turbo", "Whisper Large v3 Turbo"),
        ("whisper-large-v3", "Whisper Large v3"),
    ],
    account_headers: false,
};

impl Flavor {
    /// Whether `model` streams SSE with `stream=true` (the gpt-4o transcribe family on OpenAI;
    /// "Streaming is not supported for the whisper-1 model and will be ignored",
    /// transcription_create_params.py). Groq never streams.
    pub fn streams(&self, model: &str) -> bool {
        self.id == OPENAI.id && !is_whisper(model)
    }

    /// Whether `model` takes `include[]=logprobs` (json + gpt-4o models; not the diarize one).
    pub fn logprobs(&self, model: &str) -> bool {
        self.id == OPENAI.id && model.starts_with("gpt-4o") && !model.contains("diarize")
    }
}

/// Whisper models answer `verbose_json` with word timestamps; the gpt-4o ones only `json`.
pub fn is_whisper(model: &str) -> bool {
    model.contains("whisper")
}

/// Parsed settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Base URL without trailing slash.
    pub base_url: String,
    /// Default model (the session's `model` wins).
    pub model: String,
    /// Stream SSE interims where the model supports it.
    pub stream: bool,
    /// `prompt`.
    pub prompt: Option<String>,
    /// `temperature` 0–1.
    pub temperature: Option<f64>,
    /// Ask whisper models for word timestamps (`verbose_json` + `timestamp_granularities[]=word`).
    pub word_timestamps: bool,
    /// Ask gpt-4o models for `include[]=logprobs` (the transcript confidence).
    pub logprobs: bool,
    /// Account headers (OpenAI only).
    pub account: AccountHeaders,
    /// Longest utterance uploaded; longer speech is cut.
    pub max_utterance: Duration,
    /// Shorter utterances are skipped.
    pub min_utterance: Duration,
    /// Audio kept before VAD speech starts.
    pub pre_roll: Duration,
    /// Peak sample level at or below which an utterance counts as silence.
    pub silence_level: u16,
    /// Requests run at once.
    pub max_inflight: usize,
    /// Cut utterances waiting for a request slot; beyond it an utterance is dropped (with an
    /// error event).
    pub max_queued: usize,
    /// TCP + TLS deadline.
    pub connect_timeout: Duration,
    /// Deadline for the response head (the upload included), and for each SSE chunk.
    pub request_timeout: Duration,
    /// After the input closes, how long to wait for outstanding results.
    pub drain_timeout: Duration,
}

impl Settings {
    /// Parses and validates a config section for `flavor`.
    pub fn from_config(flavor: &Flavor, cfg: &PluginConfig) -> Result<Self, PluginError> {
        let path = cfg.path().to_owned();
        let bad = |key: &str, what: String| PluginError::Config(format!("{path}.{key}: {what}"));
        let model = cfg
            .string("model")?
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| flavor.default_model.to_owned());
        let temperature = cfg.f64("temperature")?;
        if let Some(t) = temperature {
            if !(0.0..=1.0).contains(&t) {
                return Err(bad("temperature", format!("{t} is outside 0–1")));
            }
        }
        let max_inflight = cfg.u64("max_inflight")?.unwrap_or(2);
        if !(1..=8).contains(&max_inflight) {
            return Err(bad(
                "max_inflight",
                format!("{max_inflight} is outside 1–8"),
            ));
        }
        let max_queued = cfg.u64("max_queued")?.unwrap_or(8);
        if !(1..=64).contains(&max_queued) {
            return Err(bad("max_queued", format!("{max_queued} is outside 1–64")));
        }
        let silence_level = cfg.u64("silence_level")?.unwrap_or(64);
        if silence_level > 32_767 {
            return Err(bad(
                "silence_level",
                format!("{silence_level} is over 32767"),
            ));
        }
        let min_utterance = common::millis(cfg, "min_utterance_ms", 200, 0, 10_000)?;
        let max_utterance = common::millis(cfg, "max_utterance_ms", 30_000, 1_000, 60_000)?;
        if min_utterance >= max_utterance {
            return Err(bad(
                "min_utterance_ms",
                "must be less than max_utterance_ms".to_owned(),
            ));
        }
        let account = if flavor.account_headers {
            AccountHeaders::from_config(cfg)?
        } else {
            AccountHeaders::default()
        };
        Ok(Self {
            base_url: common::base_url(cfg, flavor.base_url)?,
            model,
            stream: cfg.bool("stream")?.unwrap_or(true),
            prompt: cfg.string("prompt")?.filter(|p| !p.trim().is_empty()),
            temperature,
            word_timestamps: cfg.bool("word_timestamps")?.unwrap_or(true),
            logprobs: cfg.bool("logprobs")?.unwrap_or(true),
            account,
            max_utterance,
            min_utterance,
            pre_roll: common::millis(cfg, "pre_roll_ms", 300, 0, 5_000)?,
            silence_level: silence_level as u16,
            max_inflight: max_inflight as usize,
            max_queued: max_queued as usize,
            connect_timeout: common::millis(cfg, "connect_timeout_ms", 10_000, 100, 120_000)?,
            request_timeout: common::millis(cfg, "request_timeout_ms", 30_000, 100, 600_000)?,
            drain_timeout: common::millis(cfg, "drain_timeout_ms", 30_000, 0, 600_000)?,
        })
    }
}

/// The ISO-639-1 code of a BCP-47 tag (`en-US` → `en`), or `None` to let the vendor detect
/// the language (empty, `auto`, `multi`, `und`, or a primary subtag that is not two letters).
pub fn iso639_1(bcp47: &str) -> Option<String> {
    let primary = bcp47.trim().split(['-', '_']).next()?.to_ascii_lowercase();
    (primary.len() == 2 && primary.bytes().all(|b| b.is_ascii_lowercase())).then_some(primary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.stt.openai", v).unwrap()
    }

    #[test]
    fn defaults_and_bounds() {
        let s = Settings::from_config(&OPENAI, &cfg(json!({}))).unwrap();
        assert_eq!(s.model, "gpt-4o-transcribe");
        assert_eq!(s.max_utterance, Duration::from_secs(30));
        assert_eq!((s.max_inflight, s.stream), (2, true));
        let g = Settings::from_config(&GROQ, &cfg(json!({"organization": "org"}))).unwrap();
        assert_eq!(g.base_url, "https://api.groq.com/openai");
        assert_eq!(g.account, AccountHeaders::default());
        for bad in [
            json!({"max_utterance_ms": 61_000}),
            json!({"max_inflight": 0}),
            json!({"temperature": 2}),
            json!({"min_utterance_ms": 5000, "max_utterance_ms": 2000}),
            json!({"stream": "yes"}),
        ] {
            assert!(
                Settings::from_config(&OPENAI, &cfg(bad.clone())).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn languages_and_models() {
        assert_eq!(iso639_1("en-US").as_deref(), Some("en"));
        assert_eq!(iso639_1("PT_br").as_deref(), Some("pt"));
        assert_eq!(iso639_1("auto"), None);
        assert_eq!(iso639_1(""), None);
        assert_eq!(iso639_1("yue-HK"), None);
        assert!(OPENAI.streams("gpt-4o-mini-transcribe"));
        assert!(!OPENAI.streams("whisper-1"));
        assert!(!GROQ.streams("whisper-large-v3"));
    }
}
