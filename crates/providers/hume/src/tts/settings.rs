//! The Octave TTS plugin's settings (its config section) and the request body it sends.
//!
//! Body fields as in `TTS_PROTOCOLS.md` §9 "Body (PostedTts)", checked against
//! HumeAI/hume-python-sdk `src/hume/tts/types/posted_tts.py`, `posted_utterance.py`,
//! `posted_utterance_voice_with_name.py` / `_with_id.py`, `format_pcm.py`, `octave_version.py`
//! (`"1"` | `"2"`, sent as a string) and `voice_provider.py` (`HUME_AI` | `CUSTOM_VOICE`).

use serde_json::{json, Value};
use std::time::Duration;
use waav_plugin_api::{AudioEncoding, Emotion, PluginConfig, PluginError, TtsSessionConfig};

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.hume.ai";
/// The default voice: a Voice Library voice, by name (used by Hume's own examples and
/// jambonz' default).
pub const DEFAULT_VOICE: &str = "Ava Song";
/// The provider the default voice belongs to.
pub const DEFAULT_VOICE_PROVIDER: &str = "HUME_AI";
/// The only output rate: `audio_encoding.py` documents 48000 Hz as "the default sample rate",
/// and the request has no rate field. The PCM is 16-bit little-endian mono (what pipecat's
/// and Hume's LiveKit example feed on as raw frames; not stated in the SDK: UNCONFIRMED).
pub const SAMPLE_RATE: u32 = 48_000;
/// Models the plugin accepts in `model`, mapped to the `version` field.
pub const MODELS: &[(&str, &str, &str)] =
    &[("octave-1", "Octave 1", "1"), ("octave-2", "Octave 2", "2")];
/// `speed` bounds (posted_utterance.py warns of instability outside 0.75–1.5; the hard limits
/// 0.25–3.0 are Agora's documentation of the same field: UNCONFIRMED from Hume).
pub const SPEED_RANGE: (f32, f32) = (0.25, 3.0);
/// Recommended longest acting instructions (posted_utterance.py: "100 characters or fewer").
pub const DESCRIPTION_HINT_CHARS: usize = 100;

/// The plugin's settings, from its config section.
///
/// Keys (all optional): `base_url`, `voice` (default [`DEFAULT_VOICE`]), `voice_provider`
/// (`HUME_AI` | `CUSTOM_VOICE`, default `HUME_AI`; used when the voice is given by name),
/// `version` (`1` | `2`; default: let Hume route), `description` (acting instructions put before
/// the emotion's), `instant_mode` (default true), `trailing_silence` (seconds, 0–5),
/// `include_custom_voices` (list the account's `CUSTOM_VOICE`s too, default false),
/// `response_timeout_ms` (20000: the response head and each body chunk), `connect_timeout_ms`
/// (10000), `voices_ttl_secs` (300).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Base URL without trailing slash.
    pub base_url: String,
    /// Default voice (name or id).
    pub voice: String,
    /// Provider for voices given by name.
    pub voice_provider: String,
    /// Octave version, when pinned.
    pub version: Option<String>,
    /// Base acting instructions.
    pub description: Option<String>,
    /// `instant_mode`.
    pub instant_mode: bool,
    /// `trailing_silence` seconds.
    pub trailing_silence: Option<f64>,
    /// Whether the voice listing includes the account's custom voices.
    pub include_custom_voices: bool,
    /// Deadline for the response head and for each body chunk.
    pub response_timeout: Duration,
    /// TCP + TLS deadline.
    pub connect_timeout: Duration,
    /// How long a voice listing is reused.
    pub voices_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self::from_config(&PluginConfig::default()).expect("defaults are valid")
    }
}

fn clean(cfg: &PluginConfig, key: &str) -> Result<Option<String>, PluginError> {
    match cfg.string(key)? {
        Some(s) if s.chars().any(char::is_control) => Err(PluginError::Config(format!(
            "{}.{key}: must not contain control characters",
            cfg.path()
        ))),
        Some(s) => Ok(Some(s.trim().to_owned()).filter(|s| !s.is_empty())),
        None => Ok(None),
    }
}

/// Validates a base URL: `http(s)://host[:port][/prefix]`, no query, trailing slash dropped.
pub fn base_url(cfg: &PluginConfig, default: &str) -> Result<String, PluginError> {
    let url = cfg
        .string("base_url")?
        .unwrap_or_else(|| default.to_owned());
    let url = url.trim().trim_end_matches('/').to_owned();
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(['?', '#', ' ']) => Ok(url),
        _ => Err(PluginError::Config(format!(
            "{}.base_url: expected http(s)://host[:port][/path], got {url:?}",
            cfg.path()
        ))),
    }
}

fn provider(cfg: &PluginConfig) -> Result<String, PluginError> {
    let p = clean(cfg, "voice_provider")?.unwrap_or_else(|| DEFAULT_VOICE_PROVIDER.to_owned());
    match p.to_ascii_uppercase().as_str() {
        "HUME_AI" => Ok("HUME_AI".to_owned()),
        "CUSTOM_VOICE" => Ok("CUSTOM_VOICE".to_owned()),
        _ => Err(PluginError::Config(format!(
            "{}.voice_provider: expected HUME_AI or CUSTOM_VOICE, got {p:?}",
            cfg.path()
        ))),
    }
}

/// The `version` for a model id or version string (`octave-2`, `2`), if known.
pub fn version_of(model: &str) -> Option<&'static str> {
    let m = model.trim();
    MODELS
        .iter()
        .find(|(id, _, v)| id.eq_ignore_ascii_case(m) || *v == m)
        .map(|(_, _, v)| *v)
}

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        let raw_version = match cfg.raw("version") {
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => clean(cfg, "version")?,
        };
        let version = match raw_version {
            None => None,
            Some(v) => Some(
                version_of(&v)
                    .ok_or_else(|| {
                        PluginError::Config(format!(
                            "{}.version: expected 1 or 2, got {v:?}",
                            cfg.path()
                        ))
                    })?
                    .to_owned(),
            ),
        };
        let trailing_silence = match cfg.f64("trailing_silence")? {
            None => None,
            Some(s) if s.is_finite() && (0.0..=5.0).contains(&s) => Some(s),
            Some(s) => {
                return Err(PluginError::Config(format!(
                    "{}.trailing_silence: {s} is outside 0–5 seconds",
                    cfg.path()
                )))
            }
        };
        Ok(Self {
            base_url: base_url(cfg, DEFAULT_BASE_URL)?,
            voice: clean(cfg, "voice")?.unwrap_or_else(|| DEFAULT_VOICE.to_owned()),
            voice_provider: provider(cfg)?,
            version,
            description: clean(cfg, "description")?,
            instant_mode: cfg.bool("instant_mode")?.unwrap_or(true),
            trailing_silence,
            include_custom_voices: cfg.bool("include_custom_voices")?.unwrap_or(false),
            response_timeout: Duration::from_millis(cfg.u64_in(
                "response_timeout_ms",
                20_000,
                100..=600_000,
            )?),
            connect_timeout: Duration::from_millis(cfg.u64_in(
                "connect_timeout_ms",
                10_000,
                100..=120_000,
            )?),
            voices_ttl: Duration::from_secs(cfg.u64_in("voices_ttl_secs", 300, 0..=86_400)?),
        })
    }
}

/// The wire `format.type` for a host encoding, or `None` if Hume cannot stream it raw (`wav`
/// is never asked for: the host adds headers itself).
pub fn format_type(encoding: AudioEncoding) -> Option<&'static str> {
    match encoding {
        AudioEncoding::Linear16 => Some("pcm"),
        AudioEncoding::Mp3 => Some("mp3"),
        _ => None,
    }
}

/// Whether `v` is a voice id (a UUID: 8-4-4-4-12 hex digits) rather than a name.
pub fn is_voice_id(v: &str) -> bool {
    let parts: Vec<&str> = v.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// The acting-instructions sentence for `emotion`, e.g. `{emotion: happy, intensity: 0.9,
/// delivery_style: whispered, description: "like a tour guide"}` → "Very happy, whispered,
/// like a tour guide." Hume's guide asks for short, natural-language directions
/// (posted_utterance.py `description`); `None` when nothing is set.
pub fn emotion_description(emotion: &Emotion) -> Option<String> {
    let trimmed = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let degree = emotion.intensity.filter(|i| i.is_finite()).map(|i| {
        if i < 0.4 {
            "slightly"
        } else if i < 0.7 {
            "moderately"
        } else {
            "very"
        }
    });
    let mut parts: Vec<String> = Vec::new();
    match (trimmed(&emotion.emotion), degree) {
        (Some(e), Some(d)) => parts.push(format!("{d} {e}")),
        (Some(e), None) => parts.push(e),
        (None, Some(d)) => parts.push(format!("{d} expressive")),
        (None, None) => {}
    }
    if let Some(style) = trimmed(&emotion.delivery_style) {
        parts.push(style);
    }
    if let Some(desc) = trimmed(&emotion.description) {
        parts.push(desc.trim_end_matches(['.', '!', '?']).to_owned());
    }
    if parts.is_empty() {
        return None;
    }
    let mut s = parts.join(", ");
    if let Some(first) = s.chars().next() {
        let upper: String = first.to_uppercase().collect();
        s.replace_range(..first.len_utf8(), &upper);
    }
    s.push('.');
    Some(s)
}

/// Everything of a request but its text, resolved from the settings and the session.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `utterances[].voice`.
    pub voice: Value,
    /// `format.type`.
    pub format: &'static str,
    /// `utterances[].speed`, when not 1.
    pub speed: Option<f32>,
    /// `utterances[].description`.
    pub description: Option<String>,
    /// `version`.
    pub version: Option<String>,
    /// `instant_mode`.
    pub instant_mode: bool,
    /// `utterances[].trailing_silence`.
    pub trailing_silence: Option<f64>,
}

/// Resolves and validates a session config.
pub fn plan(s: &Settings, cfg: &TtsSessionConfig) -> Result<Plan, PluginError> {
    let format = format_type(cfg.encoding).ok_or_else(|| {
        PluginError::Config(format!(
            "hume: encoding {} is not produced (linear16, mp3)",
            cfg.encoding
        ))
    })?;
    if cfg.sample_rate != SAMPLE_RATE {
        return Err(PluginError::Config(format!(
            "hume: sample rate {} is not produced (48000 only)",
            cfg.sample_rate
        )));
    }
    let voice = Some(cfg.voice_id.trim())
        .filter(|v| !v.is_empty())
        .unwrap_or(&s.voice);
    if voice.chars().any(char::is_control) {
        return Err(PluginError::Config("hume: invalid voice".into()));
    }
    let voice = if is_voice_id(voice) {
        json!({ "id": voice })
    } else {
        json!({ "name": voice, "provider": s.voice_provider })
    };
    let version = match cfg.model.trim() {
        "" => s.version.clone(),
        m => Some(
            version_of(m)
                .ok_or_else(|| {
                    PluginError::Config(format!("hume: unknown model {m:?} (octave-1, octave-2)"))
                })?
                .to_owned(),
        ),
    };
    let speed = if cfg.speaking_rate.is_finite() && cfg.speaking_rate > 0.0 {
        let v = cfg.speaking_rate.clamp(SPEED_RANGE.0, SPEED_RANGE.1);
        ((v - 1.0).abs() > f32::EPSILON).then_some(v)
    } else {
        None
    };
    let description = match (s.description.clone(), emotion_description(&cfg.emotion)) {
        (Some(a), Some(b)) => Some(format!("{}, {}", a.trim_end_matches('.'), lower_first(&b))),
        (a, b) => a.or(b),
    };
    if let Some(d) = &description {
        if d.chars().count() > DESCRIPTION_HINT_CHARS {
            tracing::debug!(
                chars = d.chars().count(),
                "hume: acting instructions longer than the recommended 100 characters"
            );
        }
    }
    Ok(Plan {
        voice,
        format,
        speed,
        description,
        version,
        instant_mode: s.instant_mode,
        trailing_silence: s.trailing_silence,
    })
}

fn lower_first(s: &str) -> String {
    let mut out = s.to_owned();
    if let Some(first) = s.chars().next() {
        let lower: String = first.to_lowercase().collect();
        out.replace_range(..first.len_utf8(), &lower);
    }
    out
}

/// The JSON body (`PostedTts`) for `text`. `strip_headers: true` makes the chunks of a
/// generation one file (posted_tts.py), which matters for mp3.
pub fn body(plan: &Plan, text: &str) -> Value {
    let mut utterance = json!({ "text": text, "voice": plan.voice });
    if let Some(d) = &plan.description {
        utterance["description"] = Value::String(d.clone());
    }
    if let Some(speed) = plan.speed {
        utterance["speed"] = json!(speed);
    }
    if let Some(t) = plan.trailing_silence {
        utterance["trailing_silence"] = json!(t);
    }
    let mut b = json!({
        "utterances": [utterance],
        "format": { "type": plan.format },
        "strip_headers": true,
        "instant_mode": plan.instant_mode,
    });
    if let Some(v) = &plan.version {
        b["version"] = Value::String(v.clone());
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> PluginConfig {
        PluginConfig::from_value("plugins.tts.hume", v).unwrap()
    }

    #[test]
    fn settings_validate() {
        let s = Settings::default();
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(
            (s.voice.as_str(), s.voice_provider.as_str()),
            (DEFAULT_VOICE, "HUME_AI")
        );
        assert!(s.instant_mode && s.version.is_none());
        let s = Settings::from_config(&cfg(
            json!({"version": 2, "voice_provider": "custom_voice"}),
        ))
        .unwrap();
        assert_eq!(s.version.as_deref(), Some("2"));
        assert_eq!(s.voice_provider, "CUSTOM_VOICE");
        for bad in [
            json!({"version": "3"}),
            json!({"voice_provider": "ELEVEN"}),
            json!({"trailing_silence": 9}),
            json!({"base_url": "ftp://x"}),
            json!({"response_timeout_ms": 1}),
        ] {
            assert!(Settings::from_config(&cfg(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn voices_by_id_or_name() {
        assert!(is_voice_id("9e068547-5ba4-4c8e-8e03-69282a008f04"));
        assert!(!is_voice_id("Ava Song"));
        let s = Settings::default();
        let mut c = TtsSessionConfig::new(AudioEncoding::Linear16, 48_000);
        assert_eq!(
            plan(&s, &c).unwrap().voice,
            json!({"name": "Ava Song", "provider": "HUME_AI"})
        );
        c.voice_id = "9e068547-5ba4-4c8e-8e03-69282a008f04".into();
        assert_eq!(
            plan(&s, &c).unwrap().voice,
            json!({"id": "9e068547-5ba4-4c8e-8e03-69282a008f04"})
        );
    }

    #[test]
    fn controls_map() {
        let s = Settings::from_config(&cfg(json!({"description": "Warm and calm."}))).unwrap();
        let mut c = TtsSessionConfig::new(AudioEncoding::Mp3, 48_000).with_model("octave-2");
        c.speaking_rate = 9.0;
        c.emotion = Emotion {
            emotion: Some("happy".into()),
            intensity: Some(0.9),
            delivery_style: Some("whispered".into()),
            description: None,
        };
        let p = plan(&s, &c).unwrap();
        assert_eq!(p.format, "mp3");
        assert_eq!(p.speed, Some(3.0));
        assert_eq!(p.version.as_deref(), Some("2"));
        assert_eq!(
            p.description.as_deref(),
            Some("Warm and calm, very happy, whispered.")
        );
        assert_eq!(emotion_description(&Emotion::default()), None);
        c.speaking_rate = 1.0;
        assert_eq!(plan(&s, &c).unwrap().speed, None);
        assert!(plan(&s, &TtsSessionConfig::new(AudioEncoding::Wav, 48_000)).is_err());
        assert!(plan(&s, &TtsSessionConfig::new(AudioEncoding::Linear16, 24_000)).is_err());
        assert!(plan(
            &s,
            &TtsSessionConfig::new(AudioEncoding::Linear16, 48_000).with_model("octave-9")
        )
        .is_err());
    }
}
