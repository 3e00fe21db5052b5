//! The plugin's config section and the session config, validated and turned into ElevenLabs
//! request parts (URLs, `output_format`, `voice_settings`): no I/O here.
//!
//! Sources (checked against the vendor SDK, `elevenlabs/elevenlabs-python` at 54e5899):
//! - `output_format` values: `src/elevenlabs/text_to_speech/types/text_to_speech_stream_request_output_format.py`
//!   (`pcm_8000|16000|22050|24000|32000|44100|48000`, `ulaw_8000`, `alaw_8000`,
//!   `mp3_22050_32`, `mp3_24000_48`, `mp3_44100_{32,64,96,128,192}`, `opus_48000_*`). `pcm_*` is
//!   headerless 16-bit little-endian mono (TTS_PROTOCOLS.md §2; the sample format itself is
//!   UNCONFIRMED in a primary source, but every SDK and integration treats it so).
//! - `voice_settings` fields: `src/elevenlabs/types/voice_settings.py` (REST) and
//!   `realtime_voice_settings.py` (WebSocket): `stability`, `similarity_boost`, `style`,
//!   `use_speaker_boost`, `speed` ("0.7 to 1.2, 1.0 default").
//! - WebSocket query parameters: TTS_PROTOCOLS.md §2 "WebSocket stream-input" (`model_id`,
//!   `output_format`, `language_code`, `enable_logging`, `enable_ssml_parsing`,
//!   `inactivity_timeout` ≤ 180, `auto_mode`, `apply_text_normalization`), the same set the
//!   LiveKit plugin sends to `multi-stream-input` (`livekit-plugins-elevenlabs/.../tts.py`,
//!   `_multi_stream_url`).

use std::time::Duration;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, TtsSessionConfig};

/// Production endpoint (REST; the WebSocket URL is the same host with `wss://`).
pub const DEFAULT_BASE_URL: &str = "https://api.elevenlabs.io";
/// Model used when neither the session nor the config names one: the low-latency model
/// ElevenLabs recommends for realtime use.
pub const DEFAULT_MODEL: &str = "eleven_flash_v2_5";
/// Voice used when neither the session nor the config names one ("George", a premade voice
/// used throughout the ElevenLabs API reference examples).
pub const DEFAULT_VOICE: &str = "JBFqnCBsd6RMkjVDRZzb";
/// Documented range of `voice_settings.speed` (`realtime_voice_settings.py`).
pub const SPEED_RANGE: (f32, f32) = (0.7, 1.2);
/// PCM rates the vendor offers (`pcm_<rate>`).
pub const PCM_RATES: &[u32] = &[8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000];
/// MP3 rates the vendor offers, with the bitrate used for each (44.1 kHz: `mp3_bitrate`).
const MP3_RATES: &[(u32, u32)] = &[(22_050, 32), (24_000, 48), (44_100, 128)];
/// Bitrates `mp3_44100_<kbps>` exists with.
const MP3_44100_BITRATES: &[u32] = &[32, 64, 96, 128, 192];
/// Simultaneous contexts per multi-context socket: ElevenLabs refuses a sixth with
/// `max_active_conversations` and closes the socket with 1008 (observed, reported in
/// livekit/agents-js#1985; UNCONFIRMED in vendor docs).
const DEFAULT_MAX_CONTEXTS: usize = 5;

/// How the session's audio is produced from what the vendor sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transcode {
    /// The vendor's bytes are the session's format.
    None,
    /// The vendor sends PCM16; G.711 mu-law is produced locally (mulaw at a rate other than
    /// 8 kHz, which ElevenLabs only offers as PCM).
    Mulaw,
    /// As `Mulaw`, for A-law.
    Alaw,
}

/// The vendor `output_format` for a session, and any local step after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFormat {
    /// `pcm_16000`, `ulaw_8000`, `mp3_44100_128`, …
    pub vendor: String,
    /// What to do with the vendor's bytes.
    pub transcode: Transcode,
}

/// `apply_text_normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalization {
    /// `auto` (the vendor default).
    Auto,
    /// `on`.
    On,
    /// `off`.
    Off,
}

impl Normalization {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::On => "on",
            Self::Off => "off",
        }
    }
}

/// Everything the config section can set, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `http[s]://host[:port][/prefix]`, without a trailing slash.
    pub base_url: String,
    /// Voice when the session names none.
    pub voice_id: String,
    /// Model when the session names none.
    pub model: String,
    /// Extra model ids the capabilities list (custom or newer models).
    pub extra_models: Vec<String>,
    /// `language_code` (ISO 639-1), when set.
    pub language_code: Option<String>,
    /// Default `voice_settings.stability` (0–1).
    pub stability: Option<f32>,
    /// Default `voice_settings.similarity_boost` (0–1).
    pub similarity_boost: Option<f32>,
    /// Default `voice_settings.style` (0–1).
    pub style: Option<f32>,
    /// `voice_settings.use_speaker_boost`.
    pub use_speaker_boost: Option<bool>,
    /// `enable_logging` (false = zero retention, enterprise only). Sent only when false.
    pub enable_logging: bool,
    /// `apply_text_normalization`, when set.
    pub normalization: Option<Normalization>,
    /// Bitrate of 44.1 kHz MP3 (`mp3_44100_<kbps>`).
    pub mp3_bitrate: u32,
    /// Whether `open_stream` uses the multi-context WebSocket (else the host drives REST).
    pub stream_input: bool,
    /// `generation_config.chunk_length_schedule` (WebSocket), when set.
    pub chunk_length_schedule: Option<Vec<u64>>,
    /// `auto_mode` (WebSocket), when set.
    pub auto_mode: Option<bool>,
    /// `inactivity_timeout` seconds (WebSocket, vendor default 20, max 180), when set.
    pub inactivity_timeout: Option<u64>,
    /// Most contexts open on one socket, cancelled ones still draining included.
    pub max_contexts: usize,
    /// How long a request may go without audio (first byte included) before the vendor
    /// counts as silent.
    pub response_timeout: Duration,
    /// Dial + TLS (+ WebSocket upgrade).
    pub connect_timeout: Duration,
    /// Largest WebSocket message accepted (base64 audio inside JSON).
    pub max_message_bytes: usize,
    /// Voice list cache lifetime.
    pub voices_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            voice_id: DEFAULT_VOICE.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            extra_models: Vec::new(),
            language_code: None,
            stability: None,
            similarity_boost: None,
            style: None,
            use_speaker_boost: None,
            enable_logging: true,
            normalization: None,
            mp3_bitrate: 128,
            stream_input: true,
            chunk_length_schedule: None,
            auto_mode: None,
            inactivity_timeout: None,
            max_contexts: DEFAULT_MAX_CONTEXTS,
            response_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(10),
            max_message_bytes: 4 << 20,
            voices_ttl: Duration::from_secs(300),
        }
    }
}

fn config_err(c: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", c.path()))
}

/// A voice id, model id or language code that goes into a URL path or query:
/// `[A-Za-z0-9._-]`, 1–128 characters.
pub fn valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Checks a base URL: `https://` or `http://` (or `wss://`/`ws://`, mapped to the HTTP
/// schemes), a host, no query, fragment or credentials. Returns it without a trailing slash.
pub fn normalise_base_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("{raw:?} is not a URL (expected https://host)"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => "https",
        "http" | "ws" => "http",
        other => {
            return Err(format!(
                "unsupported scheme {other:?} (use https:// or http://)"
            ))
        }
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{raw:?} has no host"));
    }
    if rest.contains(['?', '#', ' ', '@']) {
        return Err(format!(
            "{raw:?} must not carry a query, fragment, spaces or credentials"
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

fn unit(c: &PluginConfig, key: &str) -> Result<Option<f32>, PluginError> {
    match c.f64(key)? {
        None => Ok(None),
        Some(v) if (0.0..=1.0).contains(&v) => Ok(Some(v as f32)),
        Some(v) => Err(config_err(c, key, format!("{v} is not within 0–1"))),
    }
}

fn millis(
    c: &PluginConfig,
    key: &str,
    default: Duration,
    max: u64,
) -> Result<Duration, PluginError> {
    match c.u64(key)? {
        None => Ok(default),
        Some(ms) if (1..=max).contains(&ms) => Ok(Duration::from_millis(ms)),
        Some(_) => Err(config_err(c, key, format!("expected 1–{max} ms"))),
    }
}

impl Settings {
    /// Reads and validates the config section (every key optional).
    pub fn from_config(c: &PluginConfig) -> Result<Self, PluginError> {
        let mut s = Settings::default();
        if let Some(url) = c.string("base_url")? {
            s.base_url = normalise_base_url(&url).map_err(|e| config_err(c, "base_url", e))?;
        }
        for (key, slot) in [("voice_id", &mut s.voice_id), ("model", &mut s.model)] {
            if let Some(v) = c.string(key)?.filter(|v| !v.is_empty()) {
                if !valid_token(&v) {
                    return Err(config_err(c, key, format!("invalid id {v:?}")));
                }
                *slot = v;
            }
        }
        if let Some(models) = c.strings("models")? {
            if let Some(bad) = models.iter().find(|m| !valid_token(m)) {
                return Err(config_err(c, "models", format!("invalid model id {bad:?}")));
            }
            s.extra_models = models;
        }
        if let Some(lang) = c.string("language_code")?.filter(|l| !l.is_empty()) {
            if !valid_token(&lang) || lang.len() > 16 {
                return Err(config_err(c, "language_code", format!("invalid {lang:?}")));
            }
            s.language_code = Some(lang);
        }
        s.stability = unit(c, "stability")?;
        s.similarity_boost = unit(c, "similarity_boost")?;
        s.style = unit(c, "style")?;
        s.use_speaker_boost = c.bool("use_speaker_boost")?;
        s.enable_logging = c.bool("enable_logging")?.unwrap_or(true);
        s.normalization = match c.string("apply_text_normalization")?.as_deref() {
            None => None,
            Some("auto") => Some(Normalization::Auto),
            Some("on") => Some(Normalization::On),
            Some("off") => Some(Normalization::Off),
            Some(other) => {
                return Err(config_err(
                    c,
                    "apply_text_normalization",
                    format!("{other:?}: expected auto, on or off"),
                ))
            }
        };
        if let Some(b) = c.u64("mp3_bitrate")? {
            let b = u32::try_from(b).unwrap_or(0);
            if !MP3_44100_BITRATES.contains(&b) {
                return Err(config_err(
                    c,
                    "mp3_bitrate",
                    format!("{b}: expected one of {MP3_44100_BITRATES:?}"),
                ));
            }
            s.mp3_bitrate = b;
        }
        s.stream_input = c.bool("stream_input")?.unwrap_or(true);
        if let Some(raw) = c.raw("chunk_length_schedule").filter(|v| !v.is_null()) {
            let list: Option<Vec<u64>> = raw
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_u64()).collect());
            match list {
                Some(l)
                    if !l.is_empty()
                        && l.len() <= 16
                        && l.iter().all(|n| (50..=500).contains(n)) =>
                {
                    s.chunk_length_schedule = Some(l)
                }
                _ => {
                    return Err(config_err(
                        c,
                        "chunk_length_schedule",
                        "expected 1–16 integers, each 50–500",
                    ))
                }
            }
        }
        s.auto_mode = c.bool("auto_mode")?;
        s.inactivity_timeout = match c.u64("inactivity_timeout")? {
            None => None,
            Some(n) if (1..=180).contains(&n) => Some(n),
            Some(_) => return Err(config_err(c, "inactivity_timeout", "expected 1–180 s")),
        };
        s.max_contexts = match c.u64("max_contexts")? {
            None => DEFAULT_MAX_CONTEXTS,
            Some(n) if (1..=64).contains(&n) => n as usize,
            Some(_) => return Err(config_err(c, "max_contexts", "expected 1–64")),
        };
        s.response_timeout = millis(c, "response_timeout_ms", s.response_timeout, 600_000)?;
        s.connect_timeout = millis(c, "connect_timeout_ms", s.connect_timeout, 120_000)?;
        s.max_message_bytes = match c.u64("max_message_bytes")? {
            None => s.max_message_bytes,
            Some(n) if (1024..=(64 << 20)).contains(&n) => n as usize,
            Some(_) => return Err(config_err(c, "max_message_bytes", "expected 1 KiB–64 MiB")),
        };
        if let Some(ttl) = c.u64("voices_ttl_secs")? {
            s.voices_ttl = Duration::from_secs(ttl.min(86_400));
        }
        Ok(s)
    }

    /// The WebSocket base: `https` → `wss`, `http` → `ws` (as the SDKs derive it).
    pub fn ws_base(&self) -> String {
        if let Some(rest) = self.base_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base_url.clone()
        }
    }
}

/// The session's voice (or the configured default), validated for use in a URL path.
pub fn voice_id<'a>(s: &'a Settings, cfg: &'a TtsSessionConfig) -> Result<&'a str, PluginError> {
    let v = if cfg.voice_id.is_empty() {
        s.voice_id.as_str()
    } else {
        cfg.voice_id.as_str()
    };
    if valid_token(v) {
        Ok(v)
    } else {
        Err(PluginError::Config(format!(
            "elevenlabs: invalid voice id {v:?}"
        )))
    }
}

/// The session's model (or the configured default), validated.
pub fn model_id<'a>(s: &'a Settings, cfg: &'a TtsSessionConfig) -> Result<&'a str, PluginError> {
    let m = if cfg.model.is_empty() {
        s.model.as_str()
    } else {
        cfg.model.as_str()
    };
    if valid_token(m) {
        Ok(m)
    } else {
        Err(PluginError::Config(format!(
            "elevenlabs: invalid model id {m:?}"
        )))
    }
}

/// The vendor `output_format` for the session's encoding and rate.
///
/// linear16 → `pcm_<rate>`; mulaw/alaw at 8 kHz → `ulaw_8000`/`alaw_8000`, at another PCM rate
/// → `pcm_<rate>` encoded to G.711 here (the vendor has no other G.711 rate, and the host's
/// capability model has one rate list for every encoding); mp3 → `mp3_22050_32`,
/// `mp3_24000_48` or `mp3_44100_<mp3_bitrate>`. Anything else is a config error.
pub fn output_format(s: &Settings, cfg: &TtsSessionConfig) -> Result<OutputFormat, PluginError> {
    let rate = cfg.sample_rate;
    let pcm_ok = PCM_RATES.contains(&rate);
    let unsupported = || {
        PluginError::Config(format!(
            "elevenlabs: cannot produce {} at {rate} Hz (linear16, mulaw and alaw at {PCM_RATES:?} Hz; mp3 at 22050, 24000 or 44100 Hz)",
            cfg.encoding
        ))
    };
    let fmt = |vendor: String, transcode| OutputFormat { vendor, transcode };
    Ok(match cfg.encoding {
        AudioEncoding::Linear16 if pcm_ok => fmt(format!("pcm_{rate}"), Transcode::None),
        AudioEncoding::Mulaw if rate == 8_000 => fmt("ulaw_8000".into(), Transcode::None),
        AudioEncoding::Alaw if rate == 8_000 => fmt("alaw_8000".into(), Transcode::None),
        AudioEncoding::Mulaw if pcm_ok => fmt(format!("pcm_{rate}"), Transcode::Mulaw),
        AudioEncoding::Alaw if pcm_ok => fmt(format!("pcm_{rate}"), Transcode::Alaw),
        AudioEncoding::Mp3 => match MP3_RATES.iter().find(|(r, _)| *r == rate) {
            Some((44_100, _)) => fmt(format!("mp3_44100_{}", s.mp3_bitrate), Transcode::None),
            Some((r, kbps)) => fmt(format!("mp3_{r}_{kbps}"), Transcode::None),
            None => return Err(unsupported()),
        },
        _ => return Err(unsupported()),
    })
}

fn round2(v: f32) -> f64 {
    (f64::from(v) * 100.0).round() / 100.0
}

/// Emotion names that ask for a steadier, less exaggerated delivery.
const CALM: &[&str] = &[
    "calm",
    "neutral",
    "serious",
    "relaxed",
    "soothing",
    "professional",
    "monotone",
];

/// `voice_settings` for the session, or `None` when nothing is set (the voice's stored
/// settings then apply).
///
/// ElevenLabs has no emotion enum (TTS_PROTOCOLS.md §2 "Emotion and style"): expressiveness
/// comes from `style` (exaggeration) and a lower `stability` (wider emotional range), so
/// `cfg.emotion` maps onto those two with intensity `i` (default 0.6 when an emotion or
/// delivery style is named):
/// - a calm emotion (`calm`, `neutral`, `serious`, …) or delivery: `stability` raised to
///   at least `0.5 + 0.4·i`, `style` 0;
/// - any other emotion or delivery style: `style = i`, `stability` lowered to at most
///   `0.5 − 0.35·i`;
/// - `description` has no control to map to and is ignored (debug log).
///
/// `cfg.speaking_rate` becomes `speed`, clamped to the documented 0.7–1.2 (sent only when it is
/// not 1.0). The configured `stability`, `similarity_boost`, `style` and `use_speaker_boost`
/// are the base values.
pub fn voice_settings(s: &Settings, cfg: &TtsSessionConfig) -> Option<serde_json::Value> {
    let mut stability = s.stability;
    let mut style = s.style;
    let e = &cfg.emotion;
    let named = e.emotion.as_deref().or(e.delivery_style.as_deref());
    if let Some(name) = named {
        let i = e.intensity.unwrap_or(0.6).clamp(0.0, 1.0);
        let lower = name.trim().to_ascii_lowercase();
        let base = stability.unwrap_or(0.5);
        if CALM.contains(&lower.as_str()) {
            stability = Some(base.max(0.5 + 0.4 * i));
            style = Some(0.0);
        } else {
            stability = Some(base.min(0.5 - 0.35 * i).max(0.0));
            style = Some(i);
        }
    } else if e.intensity.is_some() {
        tracing::debug!("elevenlabs: emotion intensity without an emotion is ignored");
    }
    if e.description.is_some() {
        tracing::debug!("elevenlabs: emotion description has no vendor control; ignored");
    }
    let mut map = serde_json::Map::new();
    if let Some(v) = stability {
        map.insert("stability".into(), round2(v).into());
    }
    if let Some(v) = s.similarity_boost {
        map.insert("similarity_boost".into(), round2(v).into());
    }
    if let Some(v) = style {
        map.insert("style".into(), round2(v).into());
    }
    if let Some(b) = s.use_speaker_boost {
        map.insert("use_speaker_boost".into(), b.into());
    }
    let rate = cfg.speaking_rate;
    if rate.is_finite() && rate > 0.0 && (rate - 1.0).abs() > 1e-3 {
        let speed = rate.clamp(SPEED_RANGE.0, SPEED_RANGE.1);
        if speed != rate {
            tracing::debug!(rate, speed, "elevenlabs: speaking rate clamped to 0.7–1.2");
        }
        map.insert("speed".into(), round2(speed).into());
    }
    (!map.is_empty()).then_some(serde_json::Value::Object(map))
}

/// `POST {base}/v1/text-to-speech/{voice}/stream?output_format=…[&enable_logging=false]`.
pub fn stream_url(s: &Settings, voice: &str, format: &OutputFormat) -> String {
    let mut url = format!(
        "{}/v1/text-to-speech/{voice}/stream?output_format={}",
        s.base_url, format.vendor
    );
    if !s.enable_logging {
        url.push_str("&enable_logging=false");
    }
    url
}

/// `wss://…/v1/text-to-speech/{voice}/multi-stream-input?model_id=…&output_format=…&…`.
pub fn multi_stream_url(s: &Settings, voice: &str, model: &str, format: &OutputFormat) -> String {
    let mut url = format!(
        "{}/v1/text-to-speech/{voice}/multi-stream-input?model_id={model}&output_format={}",
        s.ws_base(),
        format.vendor
    );
    if let Some(l) = &s.language_code {
        url.push_str(&format!("&language_code={l}"));
    }
    if !s.enable_logging {
        url.push_str("&enable_logging=false");
    }
    if let Some(n) = s.normalization {
        url.push_str(&format!("&apply_text_normalization={}", n.as_str()));
    }
    if let Some(t) = s.inactivity_timeout {
        url.push_str(&format!("&inactivity_timeout={t}"));
    }
    if let Some(a) = s.auto_mode {
        url.push_str(&format!("&auto_mode={a}"));
    }
    url
}

/// The REST body: `text`, `model_id`, and `voice_settings`, `language_code`,
/// `apply_text_normalization` when set.
pub fn rest_body(
    s: &Settings,
    cfg: &TtsSessionConfig,
    model: &str,
    text: &str,
) -> serde_json::Value {
    let mut body = serde_json::json!({ "text": text, "model_id": model });
    if let Some(vs) = voice_settings(s, cfg) {
        body["voice_settings"] = vs;
    }
    if let Some(l) = &s.language_code {
        body["language_code"] = l.clone().into();
    }
    if let Some(n) = s.normalization {
        body["apply_text_normalization"] = n.as_str().into();
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use waav_plugin_api::Emotion;

    fn cfg(v: serde_json::Value) -> Result<Settings, PluginError> {
        Settings::from_config(&PluginConfig::from_value("plugins.tts.elevenlabs", v).unwrap())
    }

    #[test]
    fn defaults_and_validation() {
        let s = cfg(json!({})).unwrap();
        assert_eq!(s.base_url, DEFAULT_BASE_URL);
        assert_eq!(s.ws_base(), "wss://api.elevenlabs.io");
        let s = cfg(json!({"base_url": "http://127.0.0.1:9/"})).unwrap();
        assert_eq!(s.ws_base(), "ws://127.0.0.1:9");
        for bad in [
            json!({"base_url": "ftp://x"}),
            json!({"stability": 1.5}),
            json!({"model": "a b"}),
            json!({"mp3_bitrate": 100}),
            json!({"chunk_length_schedule": [10]}),
            json!({"inactivity_timeout": 500}),
            json!({"apply_text_normalization": "maybe"}),
        ] {
            let e = cfg(bad.clone()).unwrap_err();
            assert!(
                e.to_string().contains("plugins.tts.elevenlabs."),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn formats() {
        let s = Settings::default();
        let f = |enc, rate| output_format(&s, &TtsSessionConfig::new(enc, rate));
        assert_eq!(
            f(AudioEncoding::Linear16, 16_000).unwrap().vendor,
            "pcm_16000"
        );
        assert_eq!(f(AudioEncoding::Mulaw, 8_000).unwrap().vendor, "ulaw_8000");
        assert_eq!(f(AudioEncoding::Alaw, 8_000).unwrap().vendor, "alaw_8000");
        let m = f(AudioEncoding::Mulaw, 16_000).unwrap();
        assert_eq!(
            (m.vendor.as_str(), m.transcode),
            ("pcm_16000", Transcode::Mulaw)
        );
        assert_eq!(
            f(AudioEncoding::Mp3, 44_100).unwrap().vendor,
            "mp3_44100_128"
        );
        assert_eq!(
            f(AudioEncoding::Mp3, 22_050).unwrap().vendor,
            "mp3_22050_32"
        );
        assert!(f(AudioEncoding::Mp3, 16_000).is_err());
        assert!(f(AudioEncoding::Linear16, 11_025).is_err());
        assert!(f(AudioEncoding::Opus, 48_000).is_err());
    }

    #[test]
    fn emotion_and_rate_mapping() {
        let s = Settings::default();
        let mut c = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
        assert_eq!(voice_settings(&s, &c), None);
        c.speaking_rate = 2.0;
        assert_eq!(voice_settings(&s, &c), Some(json!({"speed": 1.2})));
        c.speaking_rate = 1.0;
        c.emotion = Emotion {
            emotion: Some("happy".into()),
            intensity: Some(0.9),
            ..Emotion::default()
        };
        assert_eq!(
            voice_settings(&s, &c),
            Some(json!({"stability": 0.19, "style": 0.9}))
        );
        c.emotion.emotion = Some("Calm".into());
        assert_eq!(
            voice_settings(&s, &c),
            Some(json!({"stability": 0.86, "style": 0.0}))
        );
    }
}
