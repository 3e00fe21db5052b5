//! The Polly config section, and one request's body (voice, engine, format, SSML). No I/O.
//!
//! Field names, enums and limits from botocore `botocore/data/polly/2016-06-10/service-2.json`
//! (snapshot cd92077): `SynthesizeSpeechInput` (`Text`, `VoiceId`, `OutputFormat` ∈ {json, mp3,
//! ogg_vorbis, pcm}, `SampleRate` a string, `Engine` ∈ {standard, neural, long-form,
//! generative}, `TextType` ∈ {ssml, text}, `LanguageCode`, `LexiconNames` ≤ 5 matching
//! `[0-9A-Za-z]{1,20}`), and the `SampleRate` documentation: mp3/ogg_vorbis take 8000, 16000,
//! 22050 and 24000; pcm takes 8000 and 16000 only (so no 24 kHz PCM, whatever the engine).
//! `ogg_opus` is not in that enum (the fact sheet saw it in newer SDK enums, **UNCONFIRMED**),
//! so it is not offered.

use super::ssml;
use crate::auth;
use serde::Serialize;
use std::time::Duration;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, TtsSessionConfig};

/// The plugin id.
pub const ID: &str = "aws-polly";
/// The default voice (neural and standard).
pub const DEFAULT_VOICE: &str = "Joanna";
/// The engines (`Engine` enum), also offered as the session's `model`.
pub const ENGINES: [&str; 4] = ["standard", "neural", "long-form", "generative"];
/// PCM rates Polly produces.
pub const PCM_RATES: [u32; 2] = [8_000, 16_000];
/// MP3 rates Polly produces.
pub const MP3_RATES: [u32; 4] = [8_000, 16_000, 22_050, 24_000];
/// `TextLengthExceededException`: at most 6000 characters in total per `SynthesizeSpeech`.
pub const MAX_TEXT_CHARS: usize = 6_000;

/// How the request's text is typed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMode {
    /// SSML when the text starts with `<speak`, else plain text (the default).
    Auto,
    /// Always plain text (wrapped in generated SSML only for the rate and style controls).
    Text,
    /// The text is SSML, sent as is.
    Ssml,
}

/// Validated settings of the plugin's config section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `endpoint` (or `base_url`): the service URL; `https://polly.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Default voice.
    pub voice: String,
    /// Default engine.
    pub engine: String,
    /// `LanguageCode`, for bilingual voices.
    pub language_code: Option<String>,
    /// `LexiconNames`.
    pub lexicons: Vec<String>,
    /// Text typing.
    pub text_mode: TextMode,
    /// Voice listing cache lifetime.
    pub voices_ttl: Duration,
    /// TCP + TLS deadline.
    pub connect_timeout: Duration,
    /// Deadline for the response head and for each body chunk.
    pub read_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            endpoint: None,
            voice: DEFAULT_VOICE.to_owned(),
            engine: "neural".to_owned(),
            language_code: None,
            lexicons: Vec::new(),
            text_mode: TextMode::Auto,
            voices_ttl: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(15),
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
    "voice",
    "engine",
    "language_code",
    "lexicons",
    "text_type",
    "voices_ttl_secs",
    "connect_timeout_ms",
    "read_timeout_ms",
];

/// Voice ids are ASCII names (`Joanna`, `Kevin`); anything else is refused before a request.
pub fn valid_voice(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn valid_language(l: &str) -> bool {
    !l.is_empty() && l.len() <= 16 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn engine(value: &str, what: &str) -> Result<String, PluginError> {
    ENGINES
        .iter()
        .find(|e| e.eq_ignore_ascii_case(value))
        .map(|e| (*e).to_owned())
        .ok_or_else(|| {
            PluginError::Config(format!(
                "{what}: unknown engine {value:?}; supported: {}",
                ENGINES.join(", ")
            ))
        })
}

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        auth::check_keys(cfg, KEYS)?;
        let mut s = Self::default();
        let path = cfg.path();
        s.endpoint = match auth::base_url(cfg, "endpoint", &["http", "https"])? {
            Some(u) => Some(u),
            None => auth::base_url(cfg, "base_url", &["http", "https"])?,
        };
        if let Some(v) = cfg.string("voice")? {
            if !valid_voice(&v) {
                return Err(PluginError::Config(format!("{path}.voice: invalid {v:?}")));
            }
            s.voice = v;
        }
        if let Some(e) = cfg.string("engine")? {
            s.engine = engine(&e, &format!("{path}.engine"))?;
        }
        if let Some(l) = cfg.string("language_code")? {
            if !valid_language(&l) {
                return Err(PluginError::Config(format!(
                    "{path}.language_code: invalid {l:?}"
                )));
            }
            s.language_code = Some(l);
        }
        if let Some(l) = cfg.strings("lexicons")? {
            let ok = |n: &String| {
                (1..=20).contains(&n.len()) && n.bytes().all(|b| b.is_ascii_alphanumeric())
            };
            if l.len() > 5 || !l.iter().all(ok) {
                return Err(PluginError::Config(format!(
                    "{path}.lexicons: at most 5 names matching [0-9A-Za-z]{{1,20}}"
                )));
            }
            s.lexicons = l;
        }
        if let Some(t) = cfg.string("text_type")? {
            s.text_mode = match t.as_str() {
                "auto" => TextMode::Auto,
                "text" => TextMode::Text,
                "ssml" => TextMode::Ssml,
                _ => {
                    return Err(PluginError::Config(format!(
                        "{path}.text_type: {t:?} is not auto, text or ssml"
                    )))
                }
            };
        }
        if let Some(t) = cfg.u64("voices_ttl_secs")? {
            s.voices_ttl = Duration::from_secs(t.min(86_400));
        }
        if let Some(d) = auth::millis(cfg, "connect_timeout_ms", 120_000)? {
            s.connect_timeout = d.max(Duration::from_millis(1));
        }
        if let Some(d) = auth::millis(cfg, "read_timeout_ms", 600_000)? {
            s.read_timeout = d.max(Duration::from_millis(1));
        }
        Ok(s)
    }

    /// The service URL for `region`.
    pub fn endpoint(&self, region: &str) -> String {
        self.endpoint
            .clone()
            .unwrap_or_else(|| format!("https://polly.{region}.amazonaws.com"))
    }
}

/// `SynthesizeSpeechInput` as sent (PascalCase keys; `SampleRate` is a string in the model).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct SynthesizeBody {
    /// The text or SSML.
    pub text: String,
    /// The voice.
    pub voice_id: String,
    /// `pcm` or `mp3`.
    pub output_format: &'static str,
    /// `"8000"`, `"16000"`, …
    pub sample_rate: String,
    /// The engine.
    pub engine: String,
    /// `text` or `ssml`.
    pub text_type: &'static str,
    /// For bilingual voices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language_code: Option<String>,
    /// Lexicons to apply.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lexicon_names: Vec<String>,
}

/// What one session asks of Polly, derived once per request from the session config.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The settings of the session's section.
    pub settings: Settings,
    /// The voice.
    pub voice: String,
    /// The engine.
    pub engine: String,
    /// `OutputFormat`.
    pub output_format: &'static str,
    /// The sample rate.
    pub sample_rate: u32,
    /// `<prosody rate>` percentage, when the speaking rate is not 1.
    pub rate_percent: Option<u32>,
    /// The SSML style element for the session's delivery style, if Polly has one.
    pub style: Option<ssml::Style>,
}

/// Validates a session config into a plan (no I/O).
pub fn plan(cfg: &TtsSessionConfig) -> Result<Plan, PluginError> {
    let settings = Settings::from_config(&cfg.plugin_config)?;
    let bad = |m: String| PluginError::Config(format!("{ID}: {m}"));
    let (output_format, rates): (&'static str, &[u32]) = match cfg.encoding {
        AudioEncoding::Linear16 => ("pcm", &PCM_RATES),
        AudioEncoding::Mp3 => ("mp3", &MP3_RATES),
        other => {
            return Err(bad(format!(
                "unsupported encoding {other}; Polly produces linear16 (pcm) and mp3"
            )))
        }
    };
    if !rates.contains(&cfg.sample_rate) {
        let list: Vec<String> = rates.iter().map(u32::to_string).collect();
        return Err(bad(format!(
            "unsupported sample rate {} for {output_format}; supported: {}",
            cfg.sample_rate,
            list.join(", ")
        )));
    }
    let voice = if cfg.voice_id.trim().is_empty() {
        settings.voice.clone()
    } else {
        cfg.voice_id.trim().to_owned()
    };
    if !valid_voice(&voice) {
        return Err(bad(format!("invalid voice {voice:?}")));
    }
    let engine = if cfg.model.trim().is_empty() {
        settings.engine.clone()
    } else {
        self::engine(cfg.model.trim(), &format!("{ID}: model"))?
    };
    let rate_percent = ssml::rate_percent(cfg.speaking_rate);
    let style = ssml::style(&cfg.emotion, &engine);
    Ok(Plan {
        settings,
        voice,
        engine,
        output_format,
        sample_rate: cfg.sample_rate,
        rate_percent,
        style,
    })
}

impl Plan {
    /// The request body for `text`, or a Permanent error when the text is longer than Polly
    /// takes in one request.
    pub fn body(&self, text: &str) -> Result<SynthesizeBody, PluginError> {
        let as_ssml = match self.settings.text_mode {
            TextMode::Ssml => true,
            TextMode::Text => false,
            TextMode::Auto => text.trim_start().starts_with("<speak"),
        };
        let (text, text_type) = if as_ssml {
            if self.rate_percent.is_some() || self.style.is_some() {
                tracing::debug!(
                    "aws polly: SSML input sent as is; speaking rate and style not applied"
                );
            }
            (text.to_owned(), "ssml")
        } else if self.rate_percent.is_some() || self.style.is_some() {
            (ssml::wrap(text, self.rate_percent, self.style), "ssml")
        } else {
            (text.to_owned(), "text")
        };
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(PluginError::Permanent(format!(
                "{ID}: text of {} characters exceeds Polly's {MAX_TEXT_CHARS} per request",
                text.chars().count()
            )));
        }
        Ok(SynthesizeBody {
            text,
            voice_id: self.voice.clone(),
            output_format: self.output_format,
            sample_rate: self.sample_rate.to_string(),
            engine: self.engine.clone(),
            text_type,
            language_code: self.settings.language_code.clone(),
            lexicon_names: self.settings.lexicons.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(section: serde_json::Value) -> TtsSessionConfig {
        TtsSessionConfig::new(AudioEncoding::Linear16, 16_000)
            .with_plugin_config(PluginConfig::from_value("plugins.tts.aws-polly", section).unwrap())
    }

    #[test]
    fn body_shape_matches_the_model() {
        let p = plan(&cfg(json!({}))).unwrap();
        let b = serde_json::to_value(p.body("Hello from Polly.").unwrap()).unwrap();
        assert_eq!(
            b,
            json!({"Text": "Hello from Polly.", "VoiceId": "Joanna", "OutputFormat": "pcm",
                   "SampleRate": "16000", "Engine": "neural", "TextType": "text"})
        );
        let mut c = cfg(json!({"language_code": "en-IN", "lexicons": ["abc"]}));
        c.speaking_rate = 1.25;
        c.model = "standard".into();
        c.voice_id = "Aditi".into();
        let b = serde_json::to_value(plan(&c).unwrap().body("a < b").unwrap()).unwrap();
        assert_eq!(b["TextType"], "ssml");
        assert_eq!(
            b["Text"],
            "<speak><prosody rate=\"125%\">a &lt; b</prosody></speak>"
        );
        assert_eq!(
            (b["Engine"].as_str(), b["VoiceId"].as_str()),
            (Some("standard"), Some("Aditi"))
        );
        assert_eq!(b["LanguageCode"], "en-IN");
        assert_eq!(b["LexiconNames"], json!(["abc"]));
        // SSML input passes through.
        let b = p.body("<speak>Hi</speak>").unwrap();
        assert_eq!(
            (b.text.as_str(), b.text_type),
            ("<speak>Hi</speak>", "ssml")
        );
        assert!(matches!(
            p.body(&"x".repeat(MAX_TEXT_CHARS + 1)),
            Err(PluginError::Permanent(_))
        ));
    }

    #[test]
    fn refuses_what_polly_cannot_do() {
        let mut c = cfg(json!({}));
        c.sample_rate = 24_000;
        assert!(plan(&c).is_err(), "no 24 kHz pcm");
        c.encoding = AudioEncoding::Mp3;
        assert_eq!(plan(&c).unwrap().output_format, "mp3");
        c.encoding = AudioEncoding::Mulaw;
        assert!(plan(&c).is_err());
        let mut c = cfg(json!({}));
        c.model = "turbo".into();
        assert!(plan(&c).is_err());
        c.model = String::new();
        c.voice_id = "Jo anna".into();
        assert!(plan(&c).is_err());
        for bad in [
            json!({"engine": "x"}),
            json!({"endpoint": "ftp://x"}),
            json!({"lexicons": ["a-b"]}),
            json!({"text_type": "html"}),
            json!({"typo": 1}),
        ] {
            assert!(
                Settings::from_config(&PluginConfig::from_value("p", bad.clone()).unwrap())
                    .is_err(),
                "{bad}"
            );
        }
    }
}
