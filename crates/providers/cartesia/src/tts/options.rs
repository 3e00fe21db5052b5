//! The plugin's config section and the session config, validated and turned into Cartesia's
//! generation request (no I/O).
//!
//! Field names and values are checked against `TTS_PROTOCOLS.md` §5 and the official Python SDK
//! (`cartesia-ai/cartesia-python`): 2.0.17 (API version 2024-11-13, Fern-generated) for
//! `core/client_wrapper.py` (`X-API-Key`, `Cartesia-Version: 2024-11-13`),
//! `tts/requests/generation_request.py` (the WebSocket request: `model_id`, `transcript`,
//! `voice`, `output_format`, `language`, `generation_config`, `context_id`, `continue`,
//! `max_buffer_delay_ms`, `add_timestamps`, `pronunciation_dict_id`),
//! `tts/types/tts_request_id_specifier.py` (`{"mode":"id","id":…,"__experimental_controls":…}`),
//! `tts/types/controls.py` + `natural_specifier.py` + `emotion_deprecated.py` (the older
//! controls) and `tts/types/generation_config.py` (sonic-3 `speed` 0.6–1.5, `volume` 0.5–2.0,
//! `emotion`); and 4.0.1 (API version 2026-08-14) for `types/raw_output_format_param.py` (sample
//! rates 8000, 16000, 22050, 24000, 44100, 48000), `types/raw_encoding.py`, `types/emotion.py`
//! (the sonic-3 emotion list) and `types/tts_model.py` (model ids).
//!
//! The numeric range of `__experimental_controls.speed` ([-1.0, 1.0], 0 = normal) is from
//! docs.cartesia.ai "Controlling Speed & Emotion" (user-guides/voice-control), which also marks
//! those controls deprecated since April 2025 in favour of sonic-3's `generation_config`.

use serde_json::{json, Map, Value};
use std::time::Duration;
use waav_plugin_api::{AudioEncoding, Emotion, PluginConfig, PluginError, TtsSessionConfig};

/// Production endpoint (REST; the WebSocket URL is derived: `https` → `wss`).
pub const DEFAULT_BASE_URL: &str = "https://api.cartesia.ai";
/// The API version sent by default: the one the 2.x SDK pins (TTS_PROTOCOLS.md §5), whose
/// documented auth is `X-API-Key` (REST) and `?api_key=` (WebSocket).
pub const DEFAULT_VERSION: &str = "2024-11-13";
/// Model used when neither the session nor the config names one.
pub const DEFAULT_MODEL: &str = "sonic-2";
/// Voice used when neither the session nor the config names one ("Barbershop Man", the voice
/// of the protocol sheet's examples).
pub const DEFAULT_VOICE: &str = "a0e99841-438c-4a64-b679-ae501e7d6091";
/// Output sample rates the API accepts (`raw_output_format_param.py`).
pub const SAMPLE_RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

/// Model ids offered: 4.0.1 `types/tts_model.py` plus the older families still served.
/// `models` in the config adds others (dated snapshots).
pub const MODELS: &[(&str, &str)] = &[
    ("sonic-2", "Sonic 2"),
    ("sonic-3", "Sonic 3"),
    ("sonic-3.5", "Sonic 3.5"),
    ("sonic-latest", "Sonic (latest)"),
    ("sonic-3.5-2026-05-04", "Sonic 3.5 (2026-05-04)"),
    ("sonic-3-2026-01-12", "Sonic 3 (2026-01-12)"),
    ("sonic-3-2025-10-27", "Sonic 3 (2025-10-27)"),
    ("sonic-turbo", "Sonic Turbo"),
    ("sonic", "Sonic"),
];

/// Languages of `types/supported_language.py` (4.0.1).
pub const LANGUAGES: &[&str] = &[
    "en", "fr", "de", "es", "pt", "zh", "ja", "hi", "it", "ko", "nl", "pl", "ru", "sv", "tr", "tl",
    "bg", "ro", "ar", "cs", "el", "fi", "hr", "ms", "sk", "da", "ta", "uk", "hu", "no", "vi", "bn",
    "th", "he", "ka", "id", "te", "gu", "kn", "ml", "mr", "pa", "or", "ur",
];

/// sonic-3 `generation_config.emotion` values (4.0.1 `types/emotion.py`).
const SONIC3_EMOTIONS: &[&str] = &[
    "neutral",
    "happy",
    "excited",
    "enthusiastic",
    "elated",
    "euphoric",
    "triumphant",
    "amazed",
    "surprised",
    "flirtatious",
    "curious",
    "content",
    "peaceful",
    "serene",
    "calm",
    "grateful",
    "affectionate",
    "trust",
    "sympathetic",
    "anticipation",
    "mysterious",
    "angry",
    "mad",
    "outraged",
    "frustrated",
    "agitated",
    "threatened",
    "disgusted",
    "contempt",
    "envious",
    "sarcastic",
    "ironic",
    "sad",
    "dejected",
    "melancholic",
    "disappointed",
    "hurt",
    "guilty",
    "bored",
    "tired",
    "rejected",
    "nostalgic",
    "wistful",
    "apologetic",
    "hesitant",
    "insecure",
    "confused",
    "resigned",
    "anxious",
    "panicked",
    "alarmed",
    "scared",
    "proud",
    "confident",
    "distant",
    "skeptical",
    "contemplative",
    "determined",
];

const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_VOICES_TTL: Duration = Duration::from_secs(300);
const DEFAULT_MP3_BIT_RATE: u64 = 128_000;
/// Audio messages carry ~100 ms of base64 audio; anything this large is not one.
const DEFAULT_MAX_MESSAGE: usize = 4 << 20;
/// Audio of prefetched requests held while the one before them plays.
const DEFAULT_MAX_PREFETCH_BYTES: usize = 8 << 20;

/// How the key is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `X-API-Key: <key>` on REST, `?api_key=<key>` on the WebSocket (API versions up to
    /// 2024-11-13 document this; SDK 2.x).
    ApiKey,
    /// `Authorization: Bearer <key>` on REST and on the WebSocket upgrade (current docs, SDK 4.x).
    Bearer,
}

/// Which speed/emotion controls requests carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Controls {
    /// `generation_config` for sonic-3 models (`sonic-3*`, `sonic-latest`), else
    /// `voice.__experimental_controls`.
    Auto,
    /// Always `generation_config`.
    GenerationConfig,
    /// Always `voice.__experimental_controls`.
    Experimental,
    /// Neither (speed and emotion are ignored).
    None,
}

/// Everything the config section can set, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `http[s]://host[:port][/prefix]` without a trailing slash.
    pub base_url: String,
    /// The `Cartesia-Version` date (`YYYY-MM-DD`).
    pub version: String,
    /// How the key is sent.
    pub auth: AuthScheme,
    /// Model when the session names none.
    pub model: String,
    /// Extra model ids the capabilities list.
    pub extra_models: Vec<String>,
    /// Voice when the session names none.
    pub voice: String,
    /// `language`, when set.
    pub language: Option<String>,
    /// Speed/emotion control style.
    pub controls: Controls,
    /// sonic-3 `generation_config.volume`, when set (0.5–2.0).
    pub volume: Option<f64>,
    /// `max_buffer_delay_ms` on the WebSocket, when set (0–1000).
    pub max_buffer_delay_ms: Option<u64>,
    /// `pronunciation_dict_id`, when set.
    pub pronunciation_dict_id: Option<String>,
    /// Ask for word timestamps on the WebSocket (parsed and logged, not emitted).
    pub add_timestamps: bool,
    /// MP3 bit rate for `POST /tts/bytes` when the host asks for MP3.
    pub mp3_bit_rate: u64,
    /// Requests sent to the WebSocket ahead of the one playing (0 = one at a time).
    pub prefetch: usize,
    /// Audio held for prefetched requests before they are cancelled and re-sent later.
    pub max_prefetch_bytes: usize,
    /// How long a request may go without any vendor message.
    pub response_timeout: Duration,
    /// Dial + TLS + upgrade bound.
    pub connect_timeout: Duration,
    /// How long a voice listing is reused.
    pub voices_ttl: Duration,
    /// Largest WebSocket message accepted.
    pub max_message_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            version: DEFAULT_VERSION.to_owned(),
            auth: AuthScheme::ApiKey,
            model: DEFAULT_MODEL.to_owned(),
            extra_models: Vec::new(),
            voice: DEFAULT_VOICE.to_owned(),
            language: None,
            controls: Controls::Auto,
            volume: None,
            max_buffer_delay_ms: None,
            pronunciation_dict_id: None,
            add_timestamps: false,
            mp3_bit_rate: DEFAULT_MP3_BIT_RATE,
            prefetch: 1,
            max_prefetch_bytes: DEFAULT_MAX_PREFETCH_BYTES,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            voices_ttl: DEFAULT_VOICES_TTL,
            max_message_bytes: DEFAULT_MAX_MESSAGE,
        }
    }
}

/// Keys the section may hold; others are reported (as a warning, at `init`) as likely typos.
const KNOWN_KEYS: &[&str] = &[
    "base_url",
    "cartesia_version",
    "auth_scheme",
    "model",
    "default_model",
    "models",
    "voice",
    "default_voice",
    "voice_id",
    "language",
    "controls",
    "volume",
    "max_buffer_delay_ms",
    "pronunciation_dict_id",
    "add_timestamps",
    "mp3_bit_rate",
    "prefetch",
    "max_prefetch_bytes",
    "response_timeout_ms",
    "connect_timeout_ms",
    "voices_ttl_secs",
    "max_message_bytes",
    // Resolved by the host as credentials, never read here.
    "api_key",
    "enabled",
];

impl Settings {
    /// Reads and validates the section.
    pub fn from_config(c: &PluginConfig) -> Result<Self, PluginError> {
        let path = c.path().to_owned();
        let bad = |key: &str, what: String| PluginError::Config(format!("{path}.{key}: {what}"));
        let mut s = Self::default();
        if let Some(url) = c.string("base_url")? {
            s.base_url = check_base_url(&url).map_err(|e| bad("base_url", e))?;
        }
        if let Some(v) = c.string("cartesia_version")? {
            if !is_date(&v) {
                return Err(bad(
                    "cartesia_version",
                    format!("{v:?} is not a YYYY-MM-DD date"),
                ));
            }
            s.version = v;
        }
        if let Some(a) = c.string("auth_scheme")? {
            s.auth = match a.to_ascii_lowercase().as_str() {
                "api_key" | "x-api-key" | "x_api_key" => AuthScheme::ApiKey,
                "bearer" => AuthScheme::Bearer,
                other => {
                    return Err(bad(
                        "auth_scheme",
                        format!("{other:?}; expected api_key or bearer"),
                    ))
                }
            };
        }
        for key in ["model", "default_model"] {
            if let Some(m) = c.string(key)? {
                s.model = non_empty_token(&m).map_err(|e| bad(key, e))?;
            }
        }
        if let Some(models) = c.strings("models")? {
            for m in &models {
                non_empty_token(m).map_err(|e| bad("models", e))?;
            }
            s.extra_models = models;
        }
        for key in ["voice", "default_voice", "voice_id"] {
            if let Some(v) = c.string(key)? {
                s.voice = non_empty_token(&v).map_err(|e| bad(key, e))?;
            }
        }
        if let Some(l) = c.string("language")? {
            s.language = Some(non_empty_token(&l).map_err(|e| bad("language", e))?);
        }
        if let Some(x) = c.string("controls")? {
            s.controls = match x.to_ascii_lowercase().as_str() {
                "auto" => Controls::Auto,
                "generation_config" => Controls::GenerationConfig,
                "experimental" | "__experimental_controls" => Controls::Experimental,
                "none" | "off" => Controls::None,
                other => {
                    return Err(bad(
                        "controls",
                        format!(
                            "{other:?}; expected auto, generation_config, experimental or none"
                        ),
                    ))
                }
            };
        }
        if let Some(v) = c.f64("volume")? {
            if !(0.5..=2.0).contains(&v) {
                return Err(bad("volume", format!("{v} is outside 0.5–2.0")));
            }
            s.volume = Some(v);
        }
        if let Some(ms) = c.u64("max_buffer_delay_ms")? {
            if ms > 1000 {
                return Err(bad("max_buffer_delay_ms", format!("{ms} is above 1000")));
            }
            s.max_buffer_delay_ms = Some(ms);
        }
        if let Some(d) = c.string("pronunciation_dict_id")? {
            s.pronunciation_dict_id =
                Some(non_empty_token(&d).map_err(|e| bad("pronunciation_dict_id", e))?);
        }
        if let Some(b) = c.bool("add_timestamps")? {
            s.add_timestamps = b;
        }
        if let Some(b) = c.u64("mp3_bit_rate")? {
            if !(8_000..=320_000).contains(&b) {
                return Err(bad("mp3_bit_rate", format!("{b} is outside 8000–320000")));
            }
            s.mp3_bit_rate = b;
        }
        if let Some(p) = c.u64("prefetch")? {
            if p > 8 {
                return Err(bad("prefetch", format!("{p} is above 8")));
            }
            s.prefetch = p as usize;
        }
        if let Some(b) = c.u64("max_prefetch_bytes")? {
            s.max_prefetch_bytes = b as usize;
        }
        let ms = |key: &str, min: u64| -> Result<Option<Duration>, PluginError> {
            match c.u64(key)? {
                None => Ok(None),
                Some(v) if v < min || v > 600_000 => {
                    Err(bad(key, format!("{v} is outside {min}–600000 ms")))
                }
                Some(v) => Ok(Some(Duration::from_millis(v))),
            }
        };
        if let Some(d) = ms("response_timeout_ms", 1)? {
            s.response_timeout = d;
        }
        if let Some(d) = ms("connect_timeout_ms", 1)? {
            s.connect_timeout = d;
        }
        if let Some(t) = c.u64("voices_ttl_secs")? {
            s.voices_ttl = Duration::from_secs(t);
        }
        if let Some(b) = c.u64("max_message_bytes")? {
            if b < 1024 {
                return Err(bad("max_message_bytes", format!("{b} is below 1024")));
            }
            s.max_message_bytes = b as usize;
        }
        Ok(s)
    }

    /// Keys of `c` this plugin does not know (likely typos; credentials fields are known).
    pub fn unknown_keys(c: &PluginConfig) -> Vec<String> {
        c.keys()
            .filter(|k| !KNOWN_KEYS.contains(k))
            .map(str::to_owned)
            .collect()
    }

    /// `ws[s]://…/tts/websocket?…` for `key` (the key is in the query only with
    /// [`AuthScheme::ApiKey`]).
    pub fn websocket_url(&self, key: &str) -> String {
        let base = if let Some(rest) = self.base_url.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base_url.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base_url.clone()
        };
        let mut q = form_urlencoded::Serializer::new(String::new());
        if self.auth == AuthScheme::ApiKey {
            q.append_pair("api_key", key);
        }
        q.append_pair("cartesia_version", &self.version);
        format!("{base}/tts/websocket?{}", q.finish())
    }

    /// The model a session uses.
    pub fn model_for<'a>(&'a self, cfg: &'a TtsSessionConfig) -> &'a str {
        if cfg.model.is_empty() {
            &self.model
        } else {
            &cfg.model
        }
    }

    /// The voice a session uses.
    pub fn voice_for<'a>(&'a self, cfg: &'a TtsSessionConfig) -> &'a str {
        if cfg.voice_id.is_empty() {
            &self.voice
        } else {
            &cfg.voice_id
        }
    }
}

fn check_base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url:?} must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} has no host"));
    }
    if url.contains('?') || url.contains('#') || url.contains(char::is_whitespace) {
        return Err(format!("{url:?} may not hold a query, fragment or spaces"));
    }
    Ok(url.to_owned())
}

fn is_date(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

fn non_empty_token(v: &str) -> Result<String, String> {
    let t = v.trim();
    if t.is_empty() {
        return Err("may not be empty".to_owned());
    }
    if t.chars().any(|c| c.is_control()) {
        return Err(format!("{t:?} holds control characters"));
    }
    Ok(t.to_owned())
}

/// `output_format` for the encoding and rate the host wants. The WebSocket allows only `raw`
/// (TTS_PROTOCOLS.md §5); MP3 is for `POST /tts/bytes`.
pub fn output_format(
    encoding: AudioEncoding,
    sample_rate: u32,
    mp3_bit_rate: u64,
) -> Result<Value, PluginError> {
    if !SAMPLE_RATES.contains(&sample_rate) {
        return Err(PluginError::Config(format!(
            "cartesia: unsupported sample rate {sample_rate}; supported: {}",
            SAMPLE_RATES.map(|r| r.to_string()).join(", ")
        )));
    }
    let raw = |enc: &str| json!({"container": "raw", "encoding": enc, "sample_rate": sample_rate});
    Ok(match encoding {
        AudioEncoding::Linear16 => raw("pcm_s16le"),
        AudioEncoding::Mulaw => raw("pcm_mulaw"),
        AudioEncoding::Alaw => raw("pcm_alaw"),
        AudioEncoding::Mp3 => {
            json!({"container": "mp3", "sample_rate": sample_rate, "bit_rate": mp3_bit_rate})
        }
        other => {
            return Err(PluginError::Config(format!(
                "cartesia: unsupported encoding {other}; supported: linear16, mulaw, alaw, mp3"
            )))
        }
    })
}

/// Whether `model` takes sonic-3's `generation_config` (`sonic-3`, `sonic-3.5`, their dated
/// snapshots, `sonic-latest`).
pub fn is_sonic3(model: &str) -> bool {
    let m = model.to_ascii_lowercase();
    m.starts_with("sonic-3") || m == "sonic-latest"
}

/// The generation request body shared by `POST /tts/bytes` and the WebSocket (which adds
/// `context_id`, `continue`, and its own options): `model_id`, `transcript`, `voice`,
/// `output_format`, `language`, the speed/emotion controls and `pronunciation_dict_id`.
pub fn generation_body(
    s: &Settings,
    cfg: &TtsSessionConfig,
    transcript: &str,
) -> Result<Map<String, Value>, PluginError> {
    let model = s.model_for(cfg);
    let mut voice = Map::new();
    voice.insert("mode".into(), "id".into());
    voice.insert("id".into(), s.voice_for(cfg).into());
    let mut body = Map::new();
    body.insert("model_id".into(), model.into());
    body.insert("transcript".into(), transcript.into());
    let style = match s.controls {
        Controls::Auto if is_sonic3(model) => Controls::GenerationConfig,
        Controls::Auto => Controls::Experimental,
        other => other,
    };
    match style {
        Controls::GenerationConfig => {
            let mut g = Map::new();
            if let Some(speed) = sonic3_speed(cfg.speaking_rate) {
                g.insert("speed".into(), json!(speed));
            }
            if let Some(v) = s.volume {
                g.insert("volume".into(), json!(v));
            }
            if let Some(e) = sonic3_emotion(&cfg.emotion) {
                g.insert("emotion".into(), e.into());
            }
            if !g.is_empty() {
                body.insert("generation_config".into(), Value::Object(g));
            }
        }
        Controls::Experimental => {
            let mut x = Map::new();
            if let Some(speed) = experimental_speed(cfg.speaking_rate) {
                x.insert("speed".into(), json!(speed));
            }
            let emotions = experimental_emotion(&cfg.emotion);
            if !emotions.is_empty() {
                x.insert("emotion".into(), json!(emotions));
            }
            if s.volume.is_some() {
                tracing::debug!(model, "cartesia: volume needs a sonic-3 model; ignored");
            }
            if !x.is_empty() {
                voice.insert("__experimental_controls".into(), Value::Object(x));
            }
        }
        Controls::Auto | Controls::None => {
            if cfg.speaking_rate != 1.0 || !cfg.emotion.is_empty() {
                tracing::debug!("cartesia: controls are off; speaking rate and emotion ignored");
            }
        }
    }
    body.insert("voice".into(), Value::Object(voice));
    body.insert(
        "output_format".into(),
        output_format(cfg.encoding, cfg.sample_rate, s.mp3_bit_rate)?,
    );
    if let Some(l) = &s.language {
        body.insert("language".into(), l.as_str().into());
    }
    if let Some(d) = &s.pronunciation_dict_id {
        body.insert("pronunciation_dict_id".into(), d.as_str().into());
    }
    Ok(body)
}

/// sonic-3 `generation_config.speed`: the rate as a multiplier, clamped to 0.6–1.5; `None` for
/// the normal rate.
pub fn sonic3_speed(rate: f32) -> Option<f64> {
    if !rate.is_finite() || (rate - 1.0).abs() < 0.005 {
        return None;
    }
    let r = f64::from(rate).clamp(0.6, 1.5);
    if r != f64::from(rate) {
        tracing::debug!(
            rate,
            clamped = r,
            "cartesia: speaking rate clamped to 0.6–1.5"
        );
    }
    Some((r * 100.0).round() / 100.0)
}

/// `__experimental_controls.speed` in [-1, 1] (0 normal): rate 2.0 → 1.0, rate 0.5 → -1.0,
/// linear in between on each side; `None` for the normal rate.
pub fn experimental_speed(rate: f32) -> Option<f64> {
    if !rate.is_finite() || (rate - 1.0).abs() < 0.005 {
        return None;
    }
    let r = f64::from(rate);
    let v = if r > 1.0 {
        (r - 1.0).min(1.0)
    } else {
        ((r - 1.0) * 2.0).max(-1.0)
    };
    Some((v * 100.0).round() / 100.0)
}

/// sonic-3 `generation_config.emotion`: the host's emotion when Cartesia knows it (or a close
/// synonym); intensity and delivery style have no sonic-3 field and are ignored.
pub fn sonic3_emotion(e: &Emotion) -> Option<&'static str> {
    if e.intensity.is_some() || e.delivery_style.is_some() || e.description.is_some() {
        tracing::debug!("cartesia: sonic-3 takes an emotion name only; intensity/style ignored");
    }
    let name = e.emotion.as_deref()?.trim().to_ascii_lowercase();
    let name = match name.as_str() {
        "joyful" | "cheerful" | "joy" | "glad" => "happy",
        "anger" | "annoyed" => "angry",
        "fear" | "afraid" | "fearful" => "scared",
        "sadness" | "unhappy" => "sad",
        "surprise" => "surprised",
        "excitement" => "excited",
        "curiosity" => "curious",
        "relaxed" => "calm",
        "empathetic" => "sympathetic",
        other => other,
    }
    .to_owned();
    let found = SONIC3_EMOTIONS.iter().find(|k| **k == name).copied();
    if found.is_none() {
        tracing::debug!(emotion = %name, "cartesia: no sonic-3 emotion of that name; ignored");
    }
    found
}

/// `__experimental_controls.emotion` tags (`<name>[:level]`): the host's emotion mapped onto
/// anger, positivity, surprise, sadness or curiosity, its intensity onto the five levels
/// (the host's low/medium/high = 0.3/0.6/0.9 become low/(moderate)/high).
pub fn experimental_emotion(e: &Emotion) -> Vec<String> {
    let Some(name) = e.emotion.as_deref() else {
        return Vec::new();
    };
    let base = match name.trim().to_ascii_lowercase().as_str() {
        "angry" | "anger" | "mad" | "frustrated" | "annoyed" | "outraged" => "anger",
        "happy" | "joyful" | "cheerful" | "positive" | "excited" | "enthusiastic" | "content"
        | "positivity" => "positivity",
        "surprised" | "surprise" | "amazed" | "astonished" => "surprise",
        "sad" | "sadness" | "melancholic" | "disappointed" | "dejected" => "sadness",
        "curious" | "curiosity" | "inquisitive" => "curiosity",
        other => {
            tracing::debug!(
                emotion = other,
                "cartesia: no experimental control for it; ignored"
            );
            return Vec::new();
        }
    };
    let level = match e.intensity {
        None => None,
        Some(i) if !i.is_finite() => None,
        Some(i) if i < 0.15 => Some("lowest"),
        Some(i) if i < 0.45 => Some("low"),
        Some(i) if i < 0.75 => None,
        Some(i) if i < 0.95 => Some("high"),
        Some(_) => Some("highest"),
    };
    if e.delivery_style.is_some() {
        tracing::debug!("cartesia: delivery style has no Cartesia control; ignored");
    }
    vec![match level {
        Some(l) => format!("{base}:{l}"),
        None => base.to_owned(),
    }]
}

/// Checks what the host may ask for before any request: a known encoding and rate, a sane
/// speaking rate.
pub fn check_session(cfg: &TtsSessionConfig, s: &Settings) -> Result<(), PluginError> {
    output_format(cfg.encoding, cfg.sample_rate, s.mp3_bit_rate)?;
    if !cfg.speaking_rate.is_finite() || cfg.speaking_rate <= 0.0 {
        return Err(PluginError::Config(format!(
            "cartesia: speaking rate {} must be a positive number",
            cfg.speaking_rate
        )));
    }
    if cfg.voice_id.chars().any(char::is_control) || cfg.model.chars().any(char::is_control) {
        return Err(PluginError::Config(
            "cartesia: voice and model may not hold control characters".to_owned(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(v: Value) -> Result<Settings, PluginError> {
        Settings::from_config(&PluginConfig::from_value("plugins.tts.cartesia", v).unwrap())
    }

    #[test]
    fn defaults_and_validation() {
        let s = cfg(json!({})).unwrap();
        assert_eq!(s, Settings::default());
        let typo = PluginConfig::from_value("p", json!({"modle": "x", "api_key": "k"})).unwrap();
        assert_eq!(Settings::unknown_keys(&typo), ["modle"]);
        assert_eq!(
            s.websocket_url("k y&"),
            "wss://api.cartesia.ai/tts/websocket?api_key=k+y%26&cartesia_version=2024-11-13"
        );
        let s = cfg(
            json!({"base_url": "http://127.0.0.1:9/x/", "auth_scheme": "bearer",
            "cartesia_version": "2026-03-01"}),
        )
        .unwrap();
        assert_eq!(s.base_url, "http://127.0.0.1:9/x");
        assert_eq!(
            s.websocket_url("k"),
            "ws://127.0.0.1:9/x/tts/websocket?cartesia_version=2026-03-01"
        );
        for bad in [
            json!({"base_url": "ftp://x"}),
            json!({"cartesia_version": "2024-1-13"}),
            json!({"auth_scheme": "basic"}),
            json!({"volume": 3.0}),
            json!({"max_buffer_delay_ms": 5000}),
            json!({"voice": " "}),
            json!({"controls": "loud"}),
            json!({"response_timeout_ms": 0}),
        ] {
            let e = cfg(bad.clone()).unwrap_err();
            assert!(matches!(e, PluginError::Config(_)), "{bad}: {e:?}");
            assert!(e.to_string().contains("plugins.tts.cartesia."), "{e}");
        }
    }

    #[test]
    fn controls_follow_the_model_family() {
        let s = Settings::default();
        let mut c = TtsSessionConfig::new(AudioEncoding::Linear16, 24_000);
        c.speaking_rate = 1.25;
        c.emotion.emotion = Some("Happy".into());
        c.emotion.intensity = Some(0.9);
        let b = generation_body(&s, &c, "hi").unwrap();
        assert_eq!(
            b["voice"],
            json!({"mode": "id", "id": DEFAULT_VOICE,
                "__experimental_controls": {"speed": 0.25, "emotion": ["positivity:high"]}})
        );
        assert!(b.get("generation_config").is_none());
        let c3 = c.clone().with_model("sonic-3");
        let b = generation_body(&s, &c3, "hi").unwrap();
        assert_eq!(
            b["generation_config"],
            json!({"speed": 1.25, "emotion": "happy"})
        );
        assert_eq!(b["voice"], json!({"mode": "id", "id": DEFAULT_VOICE}));
        assert_eq!(
            b["output_format"],
            json!({"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000})
        );
        assert_eq!(experimental_speed(0.5), Some(-1.0));
        assert_eq!(experimental_speed(0.75), Some(-0.5));
        assert_eq!(experimental_speed(3.0), Some(1.0));
        assert_eq!(experimental_speed(1.0), None);
        assert_eq!(sonic3_speed(2.0), Some(1.5));
        assert_eq!(sonic3_speed(0.3), Some(0.6));
    }

    #[test]
    fn formats() {
        assert!(output_format(AudioEncoding::Opus, 24_000, 128_000).is_err());
        assert!(output_format(AudioEncoding::Linear16, 11_025, 128_000).is_err());
        assert_eq!(
            output_format(AudioEncoding::Mulaw, 8_000, 1)
                .unwrap()
                .get("encoding"),
            Some(&json!("pcm_mulaw"))
        );
        assert_eq!(
            output_format(AudioEncoding::Mp3, 44_100, 96_000).unwrap(),
            json!({"container": "mp3", "sample_rate": 44100, "bit_rate": 96000})
        );
    }
}
