//! The LMNT plugin's settings (its config section) and the request body it sends.
//!
//! Body fields as in `TTS_PROTOCOLS.md` §10, checked against lmnt-com/lmnt-python
//! `src/lmnt/types/speech_generate_params.py` (current v2 SDK): `text` (≤ 5000 characters),
//! `voice`, `format` (`aac|mp3|ulaw|wav|webm|pcm_s16le|pcm_f32le`; streamable: mp3, ulaw (with a
//! WAV header), webm, pcm_s16le, pcm_f32le), `sample_rate` (8000|16000|24000), `language`,
//! `model` (`blizzard`), `temperature`, `top_p`, `debug`. The older format name `raw` is not
//! used: the sheet says it was f32 PCM, the v2 SDK names both PCM layouts explicitly.
//!
//! `speed` (0.25–2.0) is a field of the v1 SDK (`speech.py` before commit 1fc6b78 "v2.0.0 SDK"
//! sent it as form data) that the v2 SDK no longer lists; whether the service still honours it
//! is UNCONFIRMED, so it is sent only when the rate is not 1 and `send_speed` is on (default).

use serde_json::{json, Value};
use std::time::Duration;
use waav_plugin_api::{AudioEncoding, Emotion, PluginConfig, PluginError, TtsSessionConfig};

/// The production base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.lmnt.com";
/// The default voice (a system voice; the sheet's example).
pub const DEFAULT_VOICE: &str = "ava";
/// The default (and only documented) model.
pub const DEFAULT_MODEL: &str = "blizzard";
/// Output rates (`sample_rate`).
pub const SAMPLE_RATES: [u32; 3] = [8_000, 16_000, 24_000];
/// Most characters per request.
pub const MAX_TEXT_CHARS: usize = 5000;
/// `speed` bounds of the v1 API.
pub const SPEED_RANGE: (f32, f32) = (0.25, 2.0);
/// Languages of `language` (speech_generate_params.py), besides `auto`.
pub const LANGUAGES: &[&str] = &[
    "ar", "as", "bn", "cs", "da", "de", "en", "es", "fi", "fr", "hi", "id", "it", "ja", "ko", "ml",
    "mr", "nl", "pl", "pt", "ru", "sk", "sv", "ta", "te", "th", "tr", "uk", "ur", "vi", "zh",
];

/// The plugin's settings, from its config section.
///
/// Keys (all optional): `base_url`, `voice` (default [`DEFAULT_VOICE`]), `model` (default
/// [`DEFAULT_MODEL`]), `language` (`auto` or ISO 639-1; default: not sent, which is `auto`),
/// `temperature` (0–2: expressiveness; default: the emotion's intensity, else not sent),
/// `top_p` (0–1), `send_speed` (default true), `stream_input` (default true: sessions use the
/// `/v1/ai/speech/stream` WebSocket unless they need a control only the HTTP body has: speed,
/// temperature, top_p; false: the host drives HTTP per request), `voices_owner` (`system`|`me`|`all`: the voice
/// listing's `owner` filter; default: not sent), `response_timeout_ms` (20000: the response head
/// and each body chunk), `connect_timeout_ms` (10000), `voices_ttl_secs` (300).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Base URL without trailing slash.
    pub base_url: String,
    /// Default voice id.
    pub voice: String,
    /// Default model.
    pub model: String,
    /// `language`.
    pub language: Option<String>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// Whether a non-1 speaking rate is sent as `speed`.
    pub send_speed: bool,
    /// Whether sessions use the WebSocket.
    pub stream_input: bool,
    /// `owner` filter of the voice listing.
    pub voices_owner: Option<String>,
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

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        let language = clean(cfg, "language")?.map(|l| l.to_ascii_lowercase());
        if let Some(l) = &language {
            if l != "auto" && !LANGUAGES.contains(&l.as_str()) {
                return Err(PluginError::Config(format!(
                    "{}.language: {l:?} is not auto or a supported ISO 639-1 code",
                    cfg.path()
                )));
            }
        }
        let voices_owner = clean(cfg, "voices_owner")?;
        if let Some(o) = &voices_owner {
            if !["system", "me", "all"].contains(&o.as_str()) {
                return Err(PluginError::Config(format!(
                    "{}.voices_owner: expected system, me or all, got {o:?}",
                    cfg.path()
                )));
            }
        }
        Ok(Self {
            base_url: base_url(cfg, DEFAULT_BASE_URL)?,
            voice: clean(cfg, "voice")?.unwrap_or_else(|| DEFAULT_VOICE.to_owned()),
            model: clean(cfg, "model")?.unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            language,
            temperature: cfg.f64_opt_in("temperature", 0.0..=2.0)?,
            top_p: cfg.f64_opt_in("top_p", 0.0..=1.0)?,
            send_speed: cfg.bool("send_speed")?.unwrap_or(true),
            stream_input: cfg.bool("stream_input")?.unwrap_or(true),
            voices_owner,
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

/// The wire `format` for a host encoding, or `None` if LMNT cannot stream it raw.
pub fn format_of(encoding: AudioEncoding) -> Option<&'static str> {
    match encoding {
        AudioEncoding::Linear16 => Some("pcm_s16le"),
        AudioEncoding::Mulaw => Some("ulaw"),
        AudioEncoding::Mp3 => Some("mp3"),
        _ => None,
    }
}

/// The `temperature` for an emotion: LMNT has no discrete emotions, only expressiveness
/// ("0.3 neutral, 1.0 dynamic"), so the intensity 0–1 maps onto 0.3–1.0; an emotion named
/// without an intensity gets 0.8. `None` when the emotion sets neither.
pub fn emotion_temperature(emotion: &Emotion) -> Option<f64> {
    match emotion.intensity.filter(|i| i.is_finite()) {
        Some(i) => Some(0.3 + 0.7 * f64::from(i.clamp(0.0, 1.0))),
        None if emotion
            .emotion
            .as_deref()
            .is_some_and(|e| !e.trim().is_empty()) =>
        {
            Some(0.8)
        }
        None => None,
    }
}

/// Everything of a request but its text.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `voice`.
    pub voice: String,
    /// `model`.
    pub model: String,
    /// `format`.
    pub format: &'static str,
    /// `sample_rate`.
    pub sample_rate: u32,
    /// `language`.
    pub language: Option<String>,
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `speed`.
    pub speed: Option<f32>,
}

/// Resolves and validates a session config.
pub fn plan(s: &Settings, cfg: &TtsSessionConfig) -> Result<Plan, PluginError> {
    let format = format_of(cfg.encoding).ok_or_else(|| {
        PluginError::Config(format!(
            "lmnt: encoding {} is not produced (linear16, mulaw, mp3)",
            cfg.encoding
        ))
    })?;
    if !SAMPLE_RATES.contains(&cfg.sample_rate) {
        return Err(PluginError::Config(format!(
            "lmnt: sample rate {} is not produced (8000, 16000, 24000)",
            cfg.sample_rate
        )));
    }
    let pick = |a: &str, b: &str| {
        Some(a.trim())
            .filter(|v| !v.is_empty())
            .unwrap_or(b)
            .to_owned()
    };
    let voice = pick(&cfg.voice_id, &s.voice);
    let model = pick(&cfg.model, &s.model);
    if voice.chars().any(char::is_control) || model.chars().any(char::is_control) {
        return Err(PluginError::Config("lmnt: invalid voice or model".into()));
    }
    let speed = if s.send_speed && cfg.speaking_rate.is_finite() && cfg.speaking_rate > 0.0 {
        let v = cfg.speaking_rate.clamp(SPEED_RANGE.0, SPEED_RANGE.1);
        ((v - 1.0).abs() > f32::EPSILON).then_some(v)
    } else {
        None
    };
    let temperature = s.temperature.or_else(|| emotion_temperature(&cfg.emotion));
    if cfg.emotion.delivery_style.is_some() || cfg.emotion.description.is_some() {
        tracing::debug!("lmnt: delivery style and description have no LMNT control; ignored");
    }
    Ok(Plan {
        voice,
        model,
        format,
        sample_rate: cfg.sample_rate,
        language: s.language.clone(),
        temperature,
        top_p: s.top_p,
        speed,
    })
}

/// The JSON body of `POST /v1/ai/speech/bytes` for `text`.
pub fn body(plan: &Plan, text: &str) -> Value {
    let mut b = json!({
        "text": text,
        "voice": plan.voice,
        "model": plan.model,
        "format": plan.format,
        "sample_rate": plan.sample_rate,
    });
    if let Some(l) = &plan.language {
        b["language"] = json!(l);
    }
    if let Some(t) = plan.temperature {
        b["temperature"] = json!((t * 1000.0).round() / 1000.0);
    }
    if let Some(p) = plan.top_p {
        b["top_p"] = json!(p);
    }
    if let Some(s) = plan.speed {
        b["speed"] = json!(s);
    }
    b
}

/// The WebSocket URL for a base URL (`https` → `wss`, `http` → `ws`; sessions.py
/// `_ws_url_from_base`).
pub fn stream_url(base_url: &str) -> String {
    let ws = if let Some(rest) = base_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base_url.to_owned()
    };
    format!("{ws}/v1/ai/speech/stream")
}

/// The session init message (sessions.py `connect`; `lmnt-version` from `_api_version.py`).
pub fn init_message(plan: &Plan, key: &str) -> Value {
    let mut m = json!({
        "X-API-Key": key,
        "lmnt-version": "1.1",
        "voice": plan.voice,
        "format": plan.format,
        "sample_rate": plan.sample_rate,
    });
    if let Some(l) = &plan.language {
        m["language"] = json!(l);
    }
    m
}

/// Whether `plan` needs a control the WebSocket init does not carry (speed, temperature,
/// top_p: SpeechSessionInit has none of them).
pub fn needs_http(plan: &Plan) -> bool {
    plan.speed.is_some() || plan.temperature.is_some() || plan.top_p.is_some()
}

/// Splits `text` into pieces of at most `max` characters, at a sentence end or a space when
/// there is one in the second half of the window.
pub fn split_text(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text.trim();
    while rest.chars().count() > max {
        let end = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let window = &rest[..end];
        let half = window.len() / 2;
        let cut = window
            .rfind(['.', '!', '?', '\n'])
            .filter(|&i| i >= half)
            .map(|i| i + 1)
            .or_else(|| window.rfind(' ').filter(|&i| i >= half))
            .unwrap_or(end);
        out.push(rest[..cut].trim());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> PluginConfig {
        PluginConfig::from_value("plugins.tts.lmnt", v).unwrap()
    }

    #[test]
    fn settings_validate() {
        let s = Settings::default();
        assert_eq!((s.voice.as_str(), s.model.as_str()), ("ava", "blizzard"));
        for bad in [
            json!({"language": "xx"}),
            json!({"temperature": 5}),
            json!({"top_p": 2}),
            json!({"voices_owner": "you"}),
            json!({"base_url": "lmnt.com"}),
        ] {
            assert!(Settings::from_config(&cfg(bad.clone())).is_err(), "{bad}");
        }
    }

    #[test]
    fn plans_and_bodies() {
        let s = Settings::from_config(&cfg(json!({"language": "EN", "top_p": 0.5}))).unwrap();
        let mut c = TtsSessionConfig::new(AudioEncoding::Mulaw, 8_000).with_voice("lily");
        c.speaking_rate = 3.0;
        c.emotion.intensity = Some(1.0);
        let p = plan(&s, &c).unwrap();
        assert_eq!(
            body(&p, "Hi"),
            json!({"text": "Hi", "voice": "lily", "model": "blizzard", "format": "ulaw",
                   "sample_rate": 8000, "language": "en", "temperature": 1.0, "top_p": 0.5,
                   "speed": 2.0})
        );
        assert!(plan(&s, &TtsSessionConfig::new(AudioEncoding::Linear16, 44_100)).is_err());
        assert!(plan(&s, &TtsSessionConfig::new(AudioEncoding::Opus, 24_000)).is_err());
        let mut named = Emotion::default();
        assert_eq!(emotion_temperature(&named), None);
        named.emotion = Some("happy".into());
        assert_eq!(emotion_temperature(&named), Some(0.8));
    }

    #[test]
    fn long_text_is_split() {
        let text = "One two three. Four five six. Seven eight nine.";
        let parts = split_text(text, 20);
        assert!(parts.iter().all(|p| p.chars().count() <= 20), "{parts:?}");
        assert_eq!(parts.join(" "), text);
        let cjk = "語".repeat(50);
        assert_eq!(split_text(&cjk, 16).concat(), cjk);
    }
}
