//! A session's settings: the plugin config section and the session config, validated, and the
//! streaming URL built from them (no I/O).

use std::time::Duration;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, SttSessionConfig};

/// Production streaming host (docs "Streaming API": `wss://streaming.assemblyai.com/v3/ws`; EU:
/// `wss://streaming.eu.assemblyai.com`).
pub const DEFAULT_BASE_URL: &str = "wss://streaming.assemblyai.com";
/// The streaming path under the base URL.
pub const WS_PATH: &str = "/v3/ws";
/// The temporary-token path (SDK `create_temporary_token`: `GET https://<host>/v3/token`).
pub const TOKEN_PATH: &str = "/v3/token";
/// The API version header value the official SDK sends (`_build_headers`); whether the service
/// requires it is UNCONFIRMED, so it is configurable (`api_version: ""` omits it).
pub const DEFAULT_API_VERSION: &str = "2025-05-12";
/// The default model when neither the session nor the config names one. The newer docs say
/// `speech_model` is required ("there is no default model"), so it is always sent.
pub const DEFAULT_MODEL: &str = "universal-streaming-english";
/// The multilingual model, the default for a non-English session language.
pub const MULTILINGUAL_MODEL: &str = "universal-streaming-multilingual";
/// Streaming models known to the SDK (`SpeechModel` enum), deprecated `u3-pro` excluded.
pub const MODELS: &[(&str, &str)] = &[
    (
        "universal-streaming-english",
        "Universal Streaming (English)",
    ),
    (
        "universal-streaming-multilingual",
        "Universal Streaming (multilingual)",
    ),
    ("u3-rt-pro", "Universal-3 Pro Streaming"),
    ("universal-3-5-pro", "Universal-3.5 Pro"),
    ("whisper-rt", "Whisper Streaming"),
];

/// Each audio message must hold 50–1000 ms of audio (docs "Streaming API", sendAudio; error
/// 3007 otherwise).
pub const MIN_CHUNK_MS: u64 = 50;
/// See [`MIN_CHUNK_MS`].
pub const MAX_CHUNK_MS: u64 = 1000;

/// How the session authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// `Authorization: <api key>` on the upgrade (the key raw, no scheme, as the SDK sends it).
    Header,
    /// Mint a one-use temporary token with the key (`GET /v3/token`) and connect with
    /// `?token=…`, so the long-lived key never travels on the streaming socket.
    TemporaryToken,
}

/// Everything a session needs, validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `ws[s]://host[:port]` without the path.
    pub base_url: String,
    /// `http[s]://host[:port]` for `/v3/token`.
    pub token_url: String,
    /// The query string (without `token`), already percent-encoded.
    pub query: String,
    /// Whether `format_turns=true` was requested.
    pub format_turns: bool,
    /// Authentication mode.
    pub auth: AuthMode,
    /// `expires_in_seconds` for a minted token (1–600).
    pub token_expires_in: u64,
    /// `max_session_duration_seconds` for a minted token (60–10800), when set.
    pub token_max_session: Option<u64>,
    /// `AssemblyAI-Version` header value, or `None`.
    pub api_version: Option<String>,
    /// Bytes per sample frame (2 for pcm_s16le, 1 for pcm_mulaw; mono).
    pub frame_bytes: usize,
    /// Smallest audio message, bytes (frame-aligned).
    pub min_chunk: usize,
    /// Largest audio message, bytes (frame-aligned).
    pub max_chunk: usize,
    /// The byte that encodes silence (padding of a short last chunk).
    pub silence: u8,
    /// Send `KeepAlive` after this long without audio.
    pub keepalive: Option<Duration>,
    /// WebSocket ping interval.
    pub ping_interval: Option<Duration>,
    /// Fail when nothing (not even a pong) arrives for this long.
    pub idle_timeout: Option<Duration>,
    /// Wait for `Begin` this long in `connect`.
    pub begin_timeout: Duration,
    /// After `Terminate`, wait this long for `Termination`.
    pub drain_timeout: Duration,
    /// With `format_turns`, wait this long for the formatted Turn after the unformatted
    /// end-of-turn before emitting the unformatted text as the final.
    pub format_wait: Duration,
    /// Largest incoming message accepted.
    pub max_message_bytes: usize,
}

fn bad(cfg: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", cfg.path()))
}

fn ms(cfg: &PluginConfig, key: &str, default: u64, range: (u64, u64)) -> Result<u64, PluginError> {
    let v = cfg.u64(key)?.unwrap_or(default);
    if v != 0 && !(range.0..=range.1).contains(&v) {
        return Err(bad(
            cfg,
            key,
            format!("{v} outside {}–{} (0 disables)", range.0, range.1),
        ));
    }
    Ok(v)
}

/// Like [`ms`], but 0 is not allowed (a bound that must exist).
fn ms_bound(
    cfg: &PluginConfig,
    key: &str,
    default: u64,
    range: (u64, u64),
) -> Result<u64, PluginError> {
    let v = cfg.u64(key)?.unwrap_or(default);
    if !(range.0..=range.1).contains(&v) {
        return Err(bad(
            cfg,
            key,
            format!("{v} outside {}–{}", range.0, range.1),
        ));
    }
    Ok(v)
}

fn opt_duration(v: u64) -> Option<Duration> {
    (v > 0).then(|| Duration::from_millis(v))
}

fn unit(cfg: &PluginConfig, key: &str) -> Result<Option<f64>, PluginError> {
    match cfg.f64(key)? {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(bad(cfg, key, format!("{v} outside 0–1"))),
        v => Ok(v),
    }
}

fn check_url(
    cfg: &PluginConfig,
    key: &str,
    url: &str,
    schemes: &[&str],
) -> Result<String, PluginError> {
    let url = url.trim().trim_end_matches('/');
    let ok = schemes.iter().any(|s| {
        url.strip_prefix(s)
            .and_then(|r| r.strip_prefix("://"))
            .is_some_and(|h| !h.is_empty())
    });
    if !ok || url.contains(['?', '#', ' ']) {
        return Err(bad(
            cfg,
            key,
            format!("{url:?} is not a {} URL without query", schemes.join("/")),
        ));
    }
    Ok(url.to_owned())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
pub fn encode(value: &str, out: &mut String) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(b & 15)]));
        }
    }
}

struct Query(String);

impl Query {
    fn put(&mut self, key: &str, value: impl std::fmt::Display) {
        if !self.0.is_empty() {
            self.0.push('&');
        }
        self.0.push_str(key);
        self.0.push('=');
        encode(&value.to_string(), &mut self.0);
    }
}

impl Settings {
    /// Validates `config` (and its plugin section) and builds the settings. Every failure is a
    /// [`PluginError::Config`] naming the key.
    pub fn from_session(config: &SttSessionConfig) -> Result<Self, PluginError> {
        let cfg = &config.plugin_config;
        // Audio format: the vendor takes mono pcm_s16le or pcm_mulaw (docs "Streaming API",
        // `encoding`); opus/ogg_opus/aac exist in the SDK but need packet framing the gateway
        // does not guarantee, so they are not offered.
        let (encoding, frame_bytes, silence) = match config.encoding {
            AudioEncoding::Linear16 => ("pcm_s16le", 2usize, 0u8),
            AudioEncoding::Mulaw => ("pcm_mulaw", 1, 0xFF),
            other => {
                return Err(PluginError::Config(format!(
                    "assemblyai: encoding {other} is not supported (linear16 or mulaw)"
                )))
            }
        };
        if config.channels != 1 {
            // Multichannel audio is streamed as one session per channel (docs "Label speakers
            // and separate channels").
            return Err(PluginError::Config(format!(
                "assemblyai: {} channels requested; the streaming API takes mono audio",
                config.channels
            )));
        }
        let rate = config.sample_rate;
        if !(crate::MIN_RATE..=crate::MAX_RATE).contains(&rate) {
            return Err(PluginError::Config(format!(
                "assemblyai: sample rate {rate} outside {}–{} Hz",
                crate::MIN_RATE,
                crate::MAX_RATE
            )));
        }

        let base_url = match cfg.string("base_url")? {
            Some(u) => check_url(cfg, "base_url", &u, &["wss", "ws"])?,
            None => DEFAULT_BASE_URL.to_owned(),
        };
        let token_url = match cfg.string("token_url")? {
            Some(u) => check_url(cfg, "token_url", &u, &["https", "http"])?,
            None => base_url
                .replacen("wss://", "https://", 1)
                .replacen("ws://", "http://", 1),
        };

        // Model: the session's, else the config's, else by language.
        let model = match (config.model.trim(), cfg.string("speech_model")?) {
            (m, _) if !m.is_empty() => m.to_owned(),
            (_, Some(m)) if !m.trim().is_empty() => m.trim().to_owned(),
            _ => {
                let lang = config.language.split(['-', '_']).next().unwrap_or("");
                if lang.is_empty() || lang.eq_ignore_ascii_case("en") {
                    DEFAULT_MODEL.to_owned()
                } else {
                    MULTILINGUAL_MODEL.to_owned()
                }
            }
        };

        let mut q = Query(String::with_capacity(160));
        // Order as the SDK builds it is irrelevant to the server; keep it stable for tests.
        q.put("sample_rate", rate);
        q.put("encoding", encoding);
        q.put("speech_model", &model);
        // `format_turns` follows the session's `punctuation` unless the config says otherwise.
        let format_turns = cfg.bool("format_turns")?.unwrap_or(config.punctuation);
        q.put("format_turns", format_turns);
        if let Some(v) = unit(cfg, "end_of_turn_confidence_threshold")? {
            q.put("end_of_turn_confidence_threshold", v);
        }
        // `min_end_of_turn_silence_when_confident` is the deprecated name; the SDK collapses it
        // into `min_turn_silence` so only one key goes on the wire. We do the same.
        let min_silence = match cfg.u64("min_turn_silence")? {
            Some(v) => Some(v),
            None => cfg.u64("min_end_of_turn_silence_when_confident")?,
        };
        if let Some(v) = min_silence {
            q.put("min_turn_silence", v);
        }
        if let Some(v) = cfg.u64("max_turn_silence")? {
            q.put("max_turn_silence", v);
        }
        if let Some(v) = unit(cfg, "vad_threshold")? {
            q.put("vad_threshold", v);
        }
        // Lists are JSON-encoded strings (SDK `_build_uri`), e.g. `keyterms_prompt=["a","b"]`.
        let keyterms = match cfg.strings("keyterms")? {
            Some(k) => Some(k),
            None => cfg.strings("keyterms_prompt")?,
        };
        if let Some(k) = keyterms.filter(|k| !k.is_empty()) {
            let json = serde_json::to_string(&k).map_err(|e| bad(cfg, "keyterms", e))?;
            q.put("keyterms_prompt", json);
        }
        for key in ["language_detection", "filter_profanity", "speaker_labels"] {
            if let Some(v) = cfg.bool(key)? {
                q.put(key, v);
            }
        }
        if let Some(v) = cfg.u64("max_speakers")? {
            q.put("max_speakers", v);
        }
        if let Some(v) = cfg.u64("inactivity_timeout")? {
            if !(5..=3600).contains(&v) {
                return Err(bad(
                    cfg,
                    "inactivity_timeout",
                    format!("{v} s outside 5–3600"),
                ));
            }
            q.put("inactivity_timeout", v);
        }

        let auth = match cfg.string("auth")?.as_deref() {
            None | Some("header" | "api_key") => AuthMode::Header,
            Some("temporary_token" | "token") => AuthMode::TemporaryToken,
            Some(other) => {
                return Err(bad(
                    cfg,
                    "auth",
                    format!("{other:?}: expected \"header\" or \"temporary_token\""),
                ))
            }
        };
        let token_expires_in = cfg.u64("token_expires_in_seconds")?.unwrap_or(60);
        if !(1..=600).contains(&token_expires_in) {
            return Err(bad(cfg, "token_expires_in_seconds", "outside 1–600"));
        }
        let token_max_session = cfg.u64("max_session_duration_seconds")?;
        if token_max_session.is_some_and(|v| !(60..=10_800).contains(&v)) {
            return Err(bad(cfg, "max_session_duration_seconds", "outside 60–10800"));
        }
        let api_version = match cfg.string("api_version")? {
            Some(v) if v.is_empty() => None,
            Some(v) => Some(v),
            None => Some(DEFAULT_API_VERSION.to_owned()),
        };

        let chunk_ms = cfg.u64("chunk_ms")?.unwrap_or(MIN_CHUNK_MS);
        if !(MIN_CHUNK_MS..=MAX_CHUNK_MS).contains(&chunk_ms) {
            return Err(bad(
                cfg,
                "chunk_ms",
                format!("{chunk_ms} outside {MIN_CHUNK_MS}–{MAX_CHUNK_MS}"),
            ));
        }
        let bytes_for = |ms: u64| {
            // Round the minimum up and the maximum down so both stay within the bounds.
            let frames = (u64::from(rate) * ms).div_ceil(1000) as usize;
            frames * frame_bytes
        };
        let min_chunk = bytes_for(chunk_ms);
        let max_chunk = (u64::from(rate) * MAX_CHUNK_MS / 1000) as usize * frame_bytes;

        let ping = ms(cfg, "ping_interval_ms", 10_000, (100, 600_000))?;
        let idle = ms(cfg, "idle_timeout_ms", 30_000, (100, 3_600_000))?;
        if ping > 0 && idle > 0 && idle <= ping {
            return Err(bad(cfg, "idle_timeout_ms", "must exceed ping_interval_ms"));
        }
        let keepalive = ms(cfg, "keepalive_ms", 0, (100, 3_600_000))?;
        let begin = ms_bound(cfg, "begin_timeout_ms", 10_000, (10, 120_000))?;
        let drain = ms_bound(cfg, "drain_timeout_ms", 5_000, (10, 120_000))?;
        let format_wait = ms_bound(cfg, "format_wait_ms", 1_500, (10, 60_000))?;
        let max_message = cfg.u64("max_message_bytes")?.unwrap_or(1 << 20);
        if !(1024..=(64 << 20)).contains(&max_message) {
            return Err(bad(cfg, "max_message_bytes", "outside 1 KiB–64 MiB"));
        }

        Ok(Self {
            base_url,
            token_url,
            query: q.0,
            format_turns,
            auth,
            token_expires_in,
            token_max_session,
            api_version,
            frame_bytes,
            min_chunk,
            max_chunk,
            silence,
            keepalive: opt_duration(keepalive),
            ping_interval: opt_duration(ping),
            idle_timeout: opt_duration(idle),
            begin_timeout: Duration::from_millis(begin),
            drain_timeout: Duration::from_millis(drain),
            format_wait: Duration::from_millis(format_wait),
            max_message_bytes: max_message as usize,
        })
    }

    /// The streaming URL, with `token` appended when given.
    pub fn ws_url(&self, token: Option<&str>) -> String {
        let mut url = format!("{}{WS_PATH}?{}", self.base_url, self.query);
        if let Some(t) = token {
            url.push_str("&token=");
            encode(t, &mut url);
        }
        url
    }

    /// The temporary-token request URL.
    pub fn token_request_url(&self) -> String {
        let mut url = format!(
            "{}{TOKEN_PATH}?expires_in_seconds={}",
            self.token_url, self.token_expires_in
        );
        if let Some(m) = self.token_max_session {
            url.push_str(&format!("&max_session_duration_seconds={m}"));
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn session(plugin: serde_json::Value) -> SttSessionConfig {
        SttSessionConfig::new("en-US", 16_000)
            .with_plugin_config(PluginConfig::from_value("plugins.stt.assemblyai", plugin).unwrap())
    }

    #[test]
    fn builds_the_documented_query() {
        let s = Settings::from_session(&session(json!({
            "keyterms": ["WaaV", "a b"], "end_of_turn_confidence_threshold": 0.6,
            "min_turn_silence": 300, "max_turn_silence": 1000
        })))
        .unwrap();
        assert_eq!(
            s.ws_url(Some("t/k")),
            "wss://streaming.assemblyai.com/v3/ws?sample_rate=16000&encoding=pcm_s16le\
             &speech_model=universal-streaming-english&format_turns=true\
             &end_of_turn_confidence_threshold=0.6&min_turn_silence=300&max_turn_silence=1000\
             &keyterms_prompt=%5B%22WaaV%22%2C%22a%20b%22%5D&token=t%2Fk"
        );
        assert_eq!(s.min_chunk, 1600);
        assert_eq!(s.max_chunk, 32_000);
        assert_eq!(s.token_url, "https://streaming.assemblyai.com");
    }

    #[test]
    fn rejects_bad_values() {
        for bad in [
            json!({"base_url": "http://x"}),
            json!({"chunk_ms": 20}),
            json!({"vad_threshold": 2.0}),
            json!({"auth": "magic"}),
            json!({"inactivity_timeout": 1}),
            json!({"format_turns": "yes"}),
        ] {
            let e = Settings::from_session(&session(bad.clone())).unwrap_err();
            assert!(matches!(e, PluginError::Config(_)), "{bad}: {e}");
        }
        let mut c = session(json!({}));
        c.encoding = AudioEncoding::Mp3;
        assert!(Settings::from_session(&c).is_err());
    }

    #[test]
    fn non_english_defaults_to_multilingual() {
        let mut c = session(json!({}));
        c.language = "es-ES".into();
        let s = Settings::from_session(&c).unwrap();
        assert!(s
            .query
            .contains("speech_model=universal-streaming-multilingual"));
    }
}
