//! The TTS plugin's config section and the session config, validated and turned into the
//! `/v1/speak` URLs (no I/O).
//!
//! Query parameters, from `TTS_PROTOCOLS.md` §1 "REST request" / "WebSocket protocol", checked
//! against deepgram/deepgram-python-sdk (commit 7da415d): `src/deepgram/speak/v1/audio/raw_client.py`
//! (REST: `model`, `encoding`, `container`, `sample_rate`, `bit_rate`, `speed`, `mip_opt_out`,
//! `tag`, `callback*`), `speak/v1/audio/types/audio_generate_request_container.py` (`none`,
//! `wav`, `ogg`) and `speak/v1/raw_client.py` (WebSocket: `model`, `encoding`, `sample_rate`,
//! `speed`, `mip_opt_out`), `types/speak_v1encoding.py` (WebSocket encodings `linear16`, `mulaw`,
//! `alaw`) and `types/speak_v1sample_rate.py` (WebSocket rates 8000, 16000, 24000, 32000, 48000;
//! the fact sheet's 44100 is from an older SDK). `speed` (0.7–1.5) is from developers.deepgram.com
//! "TTS Voice Controls" and the 2026-05-04 changelog (REST and WebSocket).

use std::time::Duration;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, TtsSessionConfig};

/// Production endpoint (REST; the WebSocket URL is derived: https→wss, http→ws).
pub const DEFAULT_BASE_URL: &str = "https://api.deepgram.com";
/// Both the REST and the WebSocket path.
pub const SPEAK_PATH: &str = "/v1/speak";
/// The model listing (`GET /v1/models`, developers.deepgram.com reference/manage/models/list).
pub const MODELS_PATH: &str = "/v1/models";
/// Voice (Deepgram calls it the model) used when neither the session nor the config names one.
pub const DEFAULT_VOICE: &str = "aura-2-thalia-en";

/// Sample rates the WebSocket accepts (python SDK `speak_v1sample_rate.py`). The REST endpoint
/// takes the same set for linear16 (docs "Audio Format Combinations"; UNCONFIRMED in detail).
pub const SAMPLE_RATES: &[u32] = &[8_000, 16_000, 24_000, 32_000, 48_000];
/// G.711 output rates. UNCONFIRMED: from the docs' combination table as remembered (8000 default,
/// 16000); the SDK types do not restrict it.
pub const G711_RATES: &[u32] = &[8_000, 16_000];
/// `speed` bounds (docs "TTS Voice Controls").
pub const SPEED_RANGE: (f32, f32) = (0.7, 1.5);

const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No audio byte for this long fails a REST request (Timeout).
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// A streaming request with nothing from the vendor for this long fails (Timeout).
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(15);
/// How long `Close` may take at the end of a session.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Audio frames are small; control messages tiny.
const DEFAULT_MAX_MESSAGE: usize = 4 << 20;
const DEFAULT_VOICES_TTL: Duration = Duration::from_secs(300);

/// `Authorization` scheme: `Token <api key>` or `Bearer <temporary JWT>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthScheme {
    /// `Authorization: Token <key>` (API keys).
    Token,
    /// `Authorization: Bearer <jwt>` (tokens from `POST /v1/auth/grant`).
    Bearer,
}

impl AuthScheme {
    /// The header value prefix.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Token => "Token",
            Self::Bearer => "Bearer",
        }
    }
}

/// Everything the TTS config section can set, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `http[s]://host[:port][/prefix]` (a `ws[s]://` base is accepted and mapped back).
    pub base_url: String,
    /// Voice when the session names none (`voice`, or `model`).
    pub voice: String,
    /// Authorization scheme for the credential.
    pub auth_scheme: AuthScheme,
    /// Use the speak WebSocket for sessions (`streaming`, default true); otherwise the host
    /// drives one REST request per utterance.
    pub streaming: bool,
    /// `bit_rate` for mp3/opus (REST).
    pub bit_rate: Option<u64>,
    /// `mip_opt_out`, when set.
    pub mip_opt_out: Option<bool>,
    /// Repeated `tag=` usage labels (REST).
    pub tags: Vec<String>,
    /// Bound on dial + TLS (+ upgrade).
    pub connect_timeout: Duration,
    /// REST: longest wait for the response head or the next body chunk.
    pub read_timeout: Duration,
    /// WebSocket: longest silence while a request is outstanding.
    pub response_timeout: Duration,
    /// WebSocket: bound on the closing handshake.
    pub drain_timeout: Duration,
    /// WebSocket: largest incoming message.
    pub max_message_bytes: usize,
    /// How long a voice listing is reused.
    pub voices_ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            voice: DEFAULT_VOICE.to_owned(),
            auth_scheme: AuthScheme::Token,
            streaming: true,
            bit_rate: None,
            mip_opt_out: None,
            tags: Vec::new(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            read_timeout: DEFAULT_READ_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE,
            voices_ttl: DEFAULT_VOICES_TTL,
        }
    }
}

fn config_err(c: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", c.path()))
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

/// A model (voice) id or other token that goes into the URL: `[A-Za-z0-9._:-]`, 1–128 bytes.
pub fn valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

impl Settings {
    /// Reads and validates a config section (every key optional; keys it does not know are
    /// left to the host, which may keep its own there).
    pub fn from_config(c: &PluginConfig) -> Result<Self, PluginError> {
        let mut s = Self::default();
        if let Some(url) = c.string("base_url")? {
            s.base_url = normalise_base(&url).map_err(|e| config_err(c, "base_url", e))?;
        }
        let voice = match (c.string("voice")?, c.string("model")?) {
            (Some(v), _) | (None, Some(v)) => Some(v),
            (None, None) => None,
        };
        if let Some(v) = voice {
            if !valid_token(&v) {
                return Err(config_err(c, "voice", format!("invalid voice id {v:?}")));
            }
            s.voice = v;
        }
        if let Some(a) = c.string("auth_scheme")? {
            s.auth_scheme = match a.to_ascii_lowercase().as_str() {
                "token" => AuthScheme::Token,
                "bearer" => AuthScheme::Bearer,
                _ => return Err(config_err(c, "auth_scheme", "expected token or bearer")),
            };
        }
        if let Some(b) = c.bool("streaming")? {
            s.streaming = b;
        }
        if let Some(b) = c.u64("bit_rate")? {
            if !(1_000..=1_000_000).contains(&b) {
                return Err(config_err(c, "bit_rate", "expected 1000–1000000 bits/s"));
            }
            s.bit_rate = Some(b);
        }
        s.mip_opt_out = c.bool("mip_opt_out")?;
        s.tags = match c.raw("tag") {
            Some(serde_json::Value::String(t)) => vec![t.clone()],
            _ => c.strings("tag")?.unwrap_or_default(),
        };
        if s.tags.len() > 16 || s.tags.iter().any(|t| t.is_empty() || t.len() > 128) {
            return Err(config_err(
                c,
                "tag",
                "at most 16 non-empty tags of ≤128 bytes",
            ));
        }
        s.connect_timeout = millis(c, "connect_timeout_ms", s.connect_timeout, 120_000)?;
        s.read_timeout = millis(c, "read_timeout_ms", s.read_timeout, 600_000)?;
        s.response_timeout = millis(c, "response_timeout_ms", s.response_timeout, 600_000)?;
        s.drain_timeout = millis(c, "drain_timeout_ms", s.drain_timeout, 60_000)?;
        if let Some(n) = c.u64("max_message_bytes")? {
            if !(1024..=64 << 20).contains(&n) {
                return Err(config_err(c, "max_message_bytes", "expected 1 KiB–64 MiB"));
            }
            s.max_message_bytes = n as usize;
        }
        if let Some(secs) = c.u64("voices_ttl_secs")? {
            s.voices_ttl = Duration::from_secs(secs);
        }
        Ok(s)
    }

    /// The WebSocket base (`wss://…` for `https://…`, `ws://…` for `http://…`).
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

/// `http[s]://host[:port][/prefix]` without a trailing slash; `ws[s]://` becomes `http[s]://`.
fn normalise_base(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("expected http(s)://host, got {url:?}"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "https" | "wss" => "https",
        "http" | "ws" => "http",
        other => return Err(format!("unsupported scheme {other:?} (use https or http)")),
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ', '@']) {
        return Err(format!(
            "expected {scheme}://host[:port][/prefix], got {url:?}"
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

/// What a session asks Deepgram for, resolved from the session and the settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// `model` (Deepgram's voice id).
    pub model: String,
    /// The encoding to produce.
    pub encoding: AudioEncoding,
    /// The rate to produce.
    pub sample_rate: u32,
    /// `speed`, when not the default 1.0.
    pub speed: Option<f32>,
}

/// The encodings the plugin produces, preferred first: raw PCM, G.711, then the two compressed
/// formats the REST endpoint streams (passed through when a client asks for exactly that).
pub const ENCODINGS: &[AudioEncoding] = &[
    AudioEncoding::Linear16,
    AudioEncoding::Mulaw,
    AudioEncoding::Alaw,
    AudioEncoding::Mp3,
    AudioEncoding::Opus,
];

/// Validates the session against the settings (no I/O).
pub fn resolve(settings: &Settings, cfg: &TtsSessionConfig) -> Result<Request, PluginError> {
    let model = [cfg.voice_id.as_str(), cfg.model.as_str()]
        .into_iter()
        .map(str::trim)
        .find(|s| !s.is_empty())
        .unwrap_or(settings.voice.as_str())
        .to_owned();
    if !valid_token(&model) {
        return Err(PluginError::Config(format!(
            "deepgram tts: invalid voice {model:?} (expected a model id such as {DEFAULT_VOICE})"
        )));
    }
    if !ENCODINGS.contains(&cfg.encoding) {
        return Err(PluginError::Config(format!(
            "deepgram tts: unsupported encoding {}; supported: linear16, mulaw, alaw, mp3, opus",
            cfg.encoding
        )));
    }
    match cfg.encoding {
        AudioEncoding::Mulaw | AudioEncoding::Alaw if !G711_RATES.contains(&cfg.sample_rate) => {
            return Err(PluginError::Config(format!(
                "deepgram tts: {} is produced at 8000 or 16000 Hz, not {}",
                cfg.encoding, cfg.sample_rate
            )));
        }
        // Compressed output carries its own rate (mp3 22050 Hz, opus 48000 Hz per the docs'
        // combination table; UNCONFIRMED) and the host passes it through untouched.
        AudioEncoding::Mp3 | AudioEncoding::Opus => {}
        _ if !SAMPLE_RATES.contains(&cfg.sample_rate) => {
            return Err(PluginError::Config(format!(
                "deepgram tts: unsupported sample rate {}; supported: 8000, 16000, 24000, 32000, 48000",
                cfg.sample_rate
            )));
        }
        _ => {}
    }
    let rate = cfg.speaking_rate;
    let speed = if !rate.is_finite() || rate <= 0.0 {
        return Err(PluginError::Config(format!(
            "deepgram tts: invalid speaking rate {rate}"
        )));
    } else if (rate - 1.0).abs() < 1e-3 {
        None
    } else {
        let clamped = rate.clamp(SPEED_RANGE.0, SPEED_RANGE.1);
        if clamped != rate {
            tracing::debug!(
                rate,
                clamped,
                "deepgram tts: speaking rate clamped to 0.7–1.5"
            );
        }
        Some(clamped)
    };
    if !cfg.emotion.is_empty() {
        // Aura has no emotion or style parameter: style comes from the voice (TTS_PROTOCOLS.md §1).
        tracing::debug!(emotion = ?cfg.emotion, "deepgram tts: emotion hints ignored (not supported)");
    }
    Ok(Request {
        model,
        encoding: cfg.encoding,
        sample_rate: cfg.sample_rate,
        speed,
    })
}

/// Whether the WebSocket can produce this session's format (linear16/mulaw/alaw only).
pub fn ws_supports(req: &Request) -> bool {
    matches!(
        req.encoding,
        AudioEncoding::Linear16 | AudioEncoding::Mulaw | AudioEncoding::Alaw
    ) && SAMPLE_RATES.contains(&req.sample_rate)
}

fn push(q: &mut form_urlencoded::Serializer<'_, String>, k: &str, v: &str) {
    q.append_pair(k, v);
}

/// `POST {base}/v1/speak?…`: model, encoding, container/sample_rate as the encoding needs
/// (`container=none` for raw PCM and G.711, so no WAV header arrives; `ogg` for opus; mp3 has
/// neither), then bit_rate, speed, mip_opt_out, tags.
pub fn rest_url(s: &Settings, r: &Request) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    push(&mut q, "model", &r.model);
    push(&mut q, "encoding", r.encoding.as_str());
    match r.encoding {
        AudioEncoding::Linear16 | AudioEncoding::Mulaw | AudioEncoding::Alaw => {
            push(&mut q, "container", "none");
            push(&mut q, "sample_rate", &r.sample_rate.to_string());
        }
        AudioEncoding::Opus => push(&mut q, "container", "ogg"),
        _ => {}
    }
    if matches!(r.encoding, AudioEncoding::Mp3 | AudioEncoding::Opus) {
        if let Some(b) = s.bit_rate {
            push(&mut q, "bit_rate", &b.to_string());
        }
    }
    if let Some(speed) = r.speed {
        push(&mut q, "speed", &format_speed(speed));
    }
    if let Some(m) = s.mip_opt_out {
        push(&mut q, "mip_opt_out", if m { "true" } else { "false" });
    }
    for t in &s.tags {
        push(&mut q, "tag", t);
    }
    format!("{}{SPEAK_PATH}?{}", s.base_url, q.finish())
}

/// `{ws base}/v1/speak?model&encoding&sample_rate[&speed][&mip_opt_out]` (no container on WS).
pub fn ws_url(s: &Settings, r: &Request) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    push(&mut q, "model", &r.model);
    push(&mut q, "encoding", r.encoding.as_str());
    push(&mut q, "sample_rate", &r.sample_rate.to_string());
    if let Some(speed) = r.speed {
        push(&mut q, "speed", &format_speed(speed));
    }
    if let Some(m) = s.mip_opt_out {
        push(&mut q, "mip_opt_out", if m { "true" } else { "false" });
    }
    format!("{}{SPEAK_PATH}?{}", s.ws_base(), q.finish())
}

/// `GET {base}/v1/models`.
pub fn models_url(s: &Settings) -> String {
    format!("{}{MODELS_PATH}", s.base_url)
}

/// Two decimals, trailing zeros dropped (`0.9`, `1.25`).
fn format_speed(speed: f32) -> String {
    let s = format!("{speed:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: serde_json::Value) -> Result<Settings, PluginError> {
        Settings::from_config(&PluginConfig::from_value("plugins.tts.deepgram", v).unwrap())
    }

    #[test]
    fn config_is_validated() {
        let s = settings(
            json!({"base_url": "http://127.0.0.1:9/", "voice": "aura-2-zeus-en",
            "tag": "a", "bit_rate": 48000}),
        )
        .unwrap();
        assert_eq!(s.base_url, "http://127.0.0.1:9");
        assert_eq!(s.ws_base(), "ws://127.0.0.1:9");
        assert_eq!(s.voice, "aura-2-zeus-en");
        assert_eq!(s.tags, ["a"]);
        assert_eq!(
            settings(json!({})).unwrap().ws_base(),
            "wss://api.deepgram.com"
        );
        assert_eq!(
            settings(json!({"base_url": "wss://x.example"}))
                .unwrap()
                .base_url,
            "https://x.example"
        );
        for bad in [
            json!({"base_url": "ftp://x"}),
            json!({"voice": "a b"}),
            json!({"auth_scheme": "basic"}),
            json!({"bit_rate": 5}),
            json!({"read_timeout_ms": 0}),
        ] {
            assert!(settings(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_follow_the_encoding() {
        let s = Settings::default();
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
        let r = resolve(&s, &cfg).unwrap();
        assert_eq!(
            rest_url(&s, &r),
            "https://api.deepgram.com/v1/speak?model=aura-2-thalia-en&encoding=linear16&container=none&sample_rate=16000"
        );
        assert_eq!(
            ws_url(&s, &r),
            "wss://api.deepgram.com/v1/speak?model=aura-2-thalia-en&encoding=linear16&sample_rate=16000"
        );
        let mut cfg =
            TtsSessionConfig::new(AudioEncoding::Mp3, 24_000).with_voice("aura-2-zeus-en");
        cfg.speaking_rate = 3.0;
        let r = resolve(&s, &cfg).unwrap();
        assert!(!ws_supports(&r));
        assert_eq!(
            rest_url(&s, &r),
            "https://api.deepgram.com/v1/speak?model=aura-2-zeus-en&encoding=mp3&speed=1.5"
        );
        let cfg = TtsSessionConfig::new(AudioEncoding::Mulaw, 24_000);
        assert!(resolve(&s, &cfg).is_err());
        let cfg = TtsSessionConfig::new(AudioEncoding::Flac, 24_000);
        assert!(resolve(&s, &cfg).is_err());
        assert_eq!(format_speed(0.9), "0.9");
        assert_eq!(format_speed(1.25), "1.25");
    }
}
