//! The STT config section and the session config, validated and turned into the
//! `/stt/websocket` URL and handshake headers (no I/O here).
//!
//! Sources (`cartesia-ai/cartesia-python`):
//! - 2.0.17 (`222fb56`, API version 2024-11-13): `src/cartesia/stt/_async_websocket.py`
//!   (`{ws_url}/stt/websocket?model=…&api_key=…&cartesia_version=…&encoding=…&sample_rate=…`,
//!   optional `language`, `min_volume`, `max_silence_duration_secs`; text commands `finalize`
//!   and `done`), `stt/types/stt_encoding.py`.
//! - 4.0.1 (`30f08c7`, API version 2026-08-14; the same shapes since 3.2.0 with 2025-11-04):
//!   `resources/stt/manual_finalize.py` (`/stt/websocket`, query `encoding`, `model`,
//!   `sample_rate`, repeated `keyterm`, `language`, `max_silence_duration_secs`, `min_volume`;
//!   `Authorization: Bearer` and `cartesia-version` headers; commands `finalize` and `close`),
//!   `types/stt/manual_finalize_websocket_params.py` (keyterms: "up to 100 keyterms totaling
//!   1200 characters"; `min_volume` and `max_silence_duration_secs` "used by ink-whisper models
//!   only"), `types/stt/stt_manual_finalize_model.py` (`ink-2`, `ink-whisper`,
//!   `ink-whisper-2025-06-04`), `types/stt_encoding.py`.
//! - docs.cartesia.ai "Migrate from Deepgram Nova" (STT): the server-side header
//!   `X-API-Key: <key>`; `ink-2` is English-only; one mono stream per connection.
//!
//! Which close command a version takes: `done` up to the 2024-11-13 generation (SDK 2.x and the
//! API reference page), `close` from 2025-11-04 (SDK 3.2+). The exact cut-over date is
//! UNCONFIRMED, so `close_command` can override the choice.

use crate::tts::{DEFAULT_BASE_URL, DEFAULT_VERSION};
use std::time::Duration;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, Secret, SttSessionConfig};

/// The streaming path.
pub const STT_PATH: &str = "/stt/websocket";
/// Model used when neither the session nor the config names one.
pub const DEFAULT_MODEL: &str = "ink-whisper";
/// Models of the manual-finalize socket (`stt_manual_finalize_model.py`).
pub const MODELS: &[(&str, &str)] = &[
    ("ink-whisper", "Ink Whisper"),
    ("ink-whisper-2025-06-04", "Ink Whisper (2025-06-04)"),
    ("ink-2", "Ink 2 (English)"),
];
/// Sample rates accepted. The API takes any `sample_rate` (bounds UNCONFIRMED; 16 kHz is
/// recommended); telephony to studio rates, the host resamples into it.
pub const SAMPLE_RATES: (u32, u32) = (8_000, 48_000);
/// The first API version whose close command is `close` (SDK 3.2.0 pins it).
const CLOSE_VERSION: &str = "2025-11-04";

/// Query keys this plugin sets itself; `extra_query` may not set them.
const MANAGED_KEYS: &[&str] = &[
    "model",
    "encoding",
    "sample_rate",
    "language",
    "min_volume",
    "max_silence_duration_secs",
    "keyterm",
    "api_key",
    "access_token",
    "cartesia_version",
];

/// How the key reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SttAuth {
    /// `X-API-Key: <key>` (server-side header, the default).
    ApiKey,
    /// `Authorization: Bearer <key>` (SDK 4.x).
    Bearer,
    /// `?api_key=<key>` in the query (SDK 2.x).
    Query,
}

/// The text command that ends the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCommand {
    /// By API version (see the module docs).
    Auto,
    /// `done`.
    Done,
    /// `close`.
    Close,
}

/// Everything the config section can set, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ws[s]://host[:port][/prefix]` without a trailing slash; the path is appended.
    pub base_url: String,
    /// `Cartesia-Version` (`YYYY-MM-DD`).
    pub version: String,
    /// How the key is sent.
    pub auth: SttAuth,
    /// Model when the session names none.
    pub model: String,
    /// Extra model ids the capabilities list.
    pub extra_models: Vec<String>,
    /// `language` override (else the session language's primary subtag).
    pub language: Option<String>,
    /// `min_volume` (0–1), when set.
    pub min_volume: Option<f64>,
    /// `max_silence_duration_secs`, when set.
    pub max_silence_duration_secs: Option<f64>,
    /// Repeated `keyterm=`.
    pub keyterms: Vec<String>,
    /// Which close command to send.
    pub close_command: CloseCommand,
    /// Other query parameters passed through.
    pub extra_query: Vec<(String, String)>,
    /// Send `finalize` when the host's VAD reports the end of speech.
    pub finalize_on_vad: bool,
    /// A `finalize` unanswered this long fails the session; `None`: never.
    pub response_timeout: Option<Duration>,
    /// Bound on the close command's `done`.
    pub drain_timeout: Duration,
    /// Dial + TLS + upgrade.
    pub connect_timeout: Duration,
    /// WebSocket ping cadence; `None`: no pings.
    pub ping_interval: Option<Duration>,
    /// Nothing (not even a pong) received this long ends the session; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Largest incoming message.
    pub max_message_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: ws_base(DEFAULT_BASE_URL),
            version: DEFAULT_VERSION.to_owned(),
            auth: SttAuth::ApiKey,
            model: DEFAULT_MODEL.to_owned(),
            extra_models: Vec::new(),
            language: None,
            min_volume: None,
            max_silence_duration_secs: None,
            keyterms: Vec::new(),
            close_command: CloseCommand::Auto,
            extra_query: Vec::new(),
            finalize_on_vad: true,
            response_timeout: Some(Duration::from_secs(15)),
            drain_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            // Idle sockets are closed after 5 minutes (docs "Concurrency Limits and Timeouts");
            // pings only detect a dead peer, audio keeps the session busy.
            ping_interval: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(45)),
            max_message_bytes: 1 << 20,
        }
    }
}

/// Every key the section may hold (unknown ones are logged by `init`).
pub const KNOWN_KEYS: &[&str] = &[
    "base_url",
    "cartesia_version",
    "auth_scheme",
    "model",
    "models",
    "language",
    "min_volume",
    "max_silence_duration_secs",
    "keyterm",
    "close_command",
    "extra_query",
    "finalize_on_vad",
    "response_timeout_ms",
    "drain_timeout_ms",
    "connect_timeout_ms",
    "ping_interval_ms",
    "idle_timeout_ms",
    "max_message_bytes",
    "api_key",
];

fn config_err(c: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", c.path()))
}

/// `https` → `wss`, `http` → `ws` (as the SDKs derive their WebSocket base).
fn ws_base(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        url.to_owned()
    }
}

/// Checks a base URL (`wss`, `ws`, `https`, `http`; a host; no query, fragment, spaces or
/// credentials) and returns its WebSocket form without a trailing slash.
pub fn normalise_base_url(raw: &str) -> Result<String, String> {
    let raw = raw.trim().trim_end_matches('/');
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| format!("{raw:?} is not a URL (expected wss://host)"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "wss" | "https" => "wss",
        "ws" | "http" => "ws",
        other => {
            return Err(format!(
                "unsupported scheme {other:?} (use wss:// or ws://)"
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

/// A model id that goes into the query: `[A-Za-z0-9._-]`, 1–128 characters.
pub fn valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
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

/// An ISO-639-1 code (2 ASCII letters; 3 accepted for ISO-639-3 style ids).
fn valid_language(l: &str) -> bool {
    (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic())
}

fn millis_opt(
    c: &PluginConfig,
    key: &str,
    default: Option<Duration>,
    max: u64,
) -> Result<Option<Duration>, PluginError> {
    match c.u64(key)? {
        None => Ok(default),
        Some(0) => Ok(None),
        Some(ms) if ms > max => Err(config_err(c, key, format!("at most {max} ms"))),
        Some(ms) => Ok(Some(Duration::from_millis(ms))),
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
        if let Some(v) = c.string("cartesia_version")? {
            if !is_date(&v) {
                return Err(config_err(
                    c,
                    "cartesia_version",
                    format!("{v:?} is not a YYYY-MM-DD date"),
                ));
            }
            s.version = v;
        }
        if let Some(a) = c.string("auth_scheme")? {
            s.auth = match a.to_ascii_lowercase().as_str() {
                "api_key" | "x-api-key" | "x_api_key" => SttAuth::ApiKey,
                "bearer" => SttAuth::Bearer,
                "query" => SttAuth::Query,
                _ => {
                    return Err(config_err(
                        c,
                        "auth_scheme",
                        format!("{a:?}: expected \"api_key\", \"bearer\" or \"query\""),
                    ))
                }
            };
        }
        if let Some(m) = c.string("model")?.filter(|m| !m.is_empty()) {
            if !valid_token(&m) {
                return Err(config_err(c, "model", format!("invalid model id {m:?}")));
            }
            s.model = m;
        }
        let models = c.strings("models")?.unwrap_or_default();
        if models.len() > 64 {
            return Err(config_err(c, "models", "at most 64 entries"));
        }
        if let Some(bad) = models.iter().find(|m| !valid_token(m)) {
            return Err(config_err(c, "models", format!("invalid model id {bad:?}")));
        }
        s.extra_models = models;
        if let Some(l) = c.string("language")?.filter(|l| !l.is_empty()) {
            if !valid_language(&l) {
                return Err(config_err(
                    c,
                    "language",
                    format!("{l:?}: expected an ISO-639-1 code"),
                ));
            }
            s.language = Some(l.to_ascii_lowercase());
        }
        s.min_volume = match c.f64("min_volume")? {
            None => None,
            Some(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Some(v),
            Some(v) => return Err(config_err(c, "min_volume", format!("{v} outside 0–1"))),
        };
        s.max_silence_duration_secs = match c.f64("max_silence_duration_secs")? {
            None => None,
            // The vendor documents no range (UNCONFIRMED); this only refuses nonsense.
            Some(v) if v.is_finite() && v > 0.0 && v <= 60.0 => Some(v),
            Some(v) => {
                return Err(config_err(
                    c,
                    "max_silence_duration_secs",
                    format!("{v} outside (0, 60] s"),
                ))
            }
        };
        let keyterms = c.strings("keyterm")?.unwrap_or_default();
        if keyterms.len() > 100 || keyterms.iter().map(String::len).sum::<usize>() > 1200 {
            return Err(config_err(
                c,
                "keyterm",
                "at most 100 keyterms totaling 1200 characters",
            ));
        }
        if keyterms.iter().any(|k| k.trim().is_empty()) {
            return Err(config_err(c, "keyterm", "entries may not be empty"));
        }
        s.keyterms = keyterms;
        if let Some(v) = c.string("close_command")? {
            s.close_command = match v.to_ascii_lowercase().as_str() {
                "auto" => CloseCommand::Auto,
                "done" => CloseCommand::Done,
                "close" => CloseCommand::Close,
                _ => {
                    return Err(config_err(
                        c,
                        "close_command",
                        format!("{v:?}: expected \"auto\", \"done\" or \"close\""),
                    ))
                }
            };
        }
        if let Some(extra) = c.section("extra_query")? {
            for (k, v) in extra.as_map() {
                if !valid_token(k) || MANAGED_KEYS.contains(&k.as_str()) {
                    return Err(config_err(
                        c,
                        "extra_query",
                        format!("{k:?} cannot be set here"),
                    ));
                }
                let values: Vec<&serde_json::Value> = match v {
                    serde_json::Value::Array(a) => a.iter().collect(),
                    other => vec![other],
                };
                for v in values {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        serde_json::Value::Bool(b) => b.to_string(),
                        serde_json::Value::Number(n) => n.to_string(),
                        _ => {
                            return Err(config_err(
                                c,
                                "extra_query",
                                format!("{k}: expected strings, numbers or booleans"),
                            ))
                        }
                    };
                    s.extra_query.push((k.clone(), text));
                }
            }
        }
        s.finalize_on_vad = c.bool("finalize_on_vad")?.unwrap_or(true);
        s.response_timeout = millis_opt(c, "response_timeout_ms", s.response_timeout, 600_000)?;
        s.drain_timeout = millis(c, "drain_timeout_ms", s.drain_timeout, 120_000)?;
        s.connect_timeout = millis(c, "connect_timeout_ms", s.connect_timeout, 120_000)?;
        s.ping_interval = millis_opt(c, "ping_interval_ms", s.ping_interval, 300_000)?;
        s.idle_timeout = millis_opt(c, "idle_timeout_ms", s.idle_timeout, 3_600_000)?;
        if let (Some(p), Some(i)) = (s.ping_interval, s.idle_timeout) {
            if i <= p {
                return Err(config_err(
                    c,
                    "idle_timeout_ms",
                    "must be longer than ping_interval_ms (pongs keep the session alive)",
                ));
            }
        }
        if let Some(n) = c.u64("max_message_bytes")? {
            if !(1024..=(64 << 20)).contains(&n) {
                return Err(config_err(c, "max_message_bytes", "expected 1 KiB–64 MiB"));
            }
            s.max_message_bytes = n as usize;
        }
        Ok(s)
    }

    /// Keys of `c` this plugin does not know.
    pub fn unknown_keys(c: &PluginConfig) -> Vec<String> {
        c.keys()
            .filter(|k| !KNOWN_KEYS.contains(k))
            .map(str::to_owned)
            .collect()
    }

    /// The close command for this version.
    pub fn close_command(&self) -> &'static str {
        match self.close_command {
            CloseCommand::Done => "done",
            CloseCommand::Close => "close",
            // Dates compare as text (YYYY-MM-DD).
            CloseCommand::Auto if self.version.as_str() >= CLOSE_VERSION => "close",
            CloseCommand::Auto => "done",
        }
    }
}

/// The `encoding` query value for a gateway encoding.
pub fn encoding(e: AudioEncoding) -> Option<&'static str> {
    Some(match e {
        AudioEncoding::Linear16 => "pcm_s16le",
        AudioEncoding::Mulaw => "pcm_mulaw",
        AudioEncoding::Alaw => "pcm_alaw",
        _ => return None,
    })
}

/// The model for a session: its own, else the configured one.
pub fn model_id<'a>(s: &'a Settings, cfg: &'a SttSessionConfig) -> &'a str {
    if cfg.model.is_empty() {
        &s.model
    } else {
        &cfg.model
    }
}

/// `language`: the configured one, else the primary subtag of the session's BCP-47 language
/// (`en-US` → `en`); none (the vendor's default, `en`) for an empty, `auto` or `multi` one.
pub fn language(s: &Settings, cfg: &SttSessionConfig) -> Result<Option<String>, PluginError> {
    if let Some(l) = &s.language {
        return Ok(Some(l.clone()));
    }
    let lang = cfg.language.trim();
    if lang.is_empty() || lang.eq_ignore_ascii_case("auto") || lang.eq_ignore_ascii_case("multi") {
        return Ok(None);
    }
    let primary = lang.split(['-', '_']).next().unwrap_or_default();
    if !valid_language(primary) {
        return Err(PluginError::Config(format!(
            "cartesia: language {lang:?} has no ISO-639-1 code"
        )));
    }
    Ok(Some(primary.to_ascii_lowercase()))
}

/// Checks the session against what the vendor takes (before any dialling).
pub fn check_session(s: &Settings, cfg: &SttSessionConfig) -> Result<(), PluginError> {
    if cfg.channels != 1 {
        return Err(PluginError::Config(format!(
            "cartesia: {} channels not supported (one mono stream per connection)",
            cfg.channels
        )));
    }
    let (lo, hi) = SAMPLE_RATES;
    if !(lo..=hi).contains(&cfg.sample_rate) {
        return Err(PluginError::Config(format!(
            "cartesia: sample rate {} Hz not supported ({lo}–{hi} Hz)",
            cfg.sample_rate
        )));
    }
    if encoding(cfg.encoding).is_none() {
        return Err(PluginError::Config(format!(
            "cartesia: encoding {} not supported (linear16, mulaw, alaw)",
            cfg.encoding.as_str()
        )));
    }
    let model = model_id(s, cfg);
    if !valid_token(model) {
        return Err(PluginError::Config(format!(
            "cartesia: invalid model id {model:?}"
        )));
    }
    let lang = language(s, cfg)?;
    if model.starts_with("ink-2") && lang.as_deref().is_some_and(|l| l != "en") {
        return Err(PluginError::Config(format!(
            "cartesia: {model} is English-only, not {:?}",
            lang.unwrap_or_default()
        )));
    }
    Ok(())
}

/// The full `/stt/websocket` URL for a session (`key` goes in only with [`SttAuth::Query`]).
pub fn stt_url(s: &Settings, cfg: &SttSessionConfig, key: &Secret) -> Result<String, PluginError> {
    check_session(s, cfg)?;
    let mut q = form_urlencoded::Serializer::new(String::with_capacity(256));
    q.append_pair("model", model_id(s, cfg));
    if let Some(l) = language(s, cfg)? {
        q.append_pair("language", &l);
    }
    q.append_pair("encoding", encoding(cfg.encoding).unwrap_or("pcm_s16le"));
    q.append_pair("sample_rate", &cfg.sample_rate.to_string());
    if let Some(v) = s.min_volume {
        q.append_pair("min_volume", &v.to_string());
    }
    if let Some(v) = s.max_silence_duration_secs {
        q.append_pair("max_silence_duration_secs", &v.to_string());
    }
    for k in &s.keyterms {
        q.append_pair("keyterm", k);
    }
    for (k, v) in &s.extra_query {
        q.append_pair(k, v);
    }
    if s.auth == SttAuth::Query {
        q.append_pair("api_key", key.expose());
        q.append_pair("cartesia_version", &s.version);
    }
    let base = s.base_url.as_str();
    let path = if base.ends_with(STT_PATH) {
        ""
    } else {
        STT_PATH
    };
    Ok(format!("{base}{path}?{}", q.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(v: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.stt.cartesia", v).unwrap()
    }

    fn key() -> Secret {
        Secret::from("sk-test")
    }

    #[test]
    fn defaults_and_url() {
        let s = Settings::from_config(&section(json!({}))).unwrap();
        assert_eq!(s.version, "2024-11-13");
        assert_eq!(s.close_command(), "done");
        let cfg = SttSessionConfig::new("en-US", 16_000);
        assert_eq!(
            stt_url(&s, &cfg, &key()).unwrap(),
            "wss://api.cartesia.ai/stt/websocket?model=ink-whisper&language=en\
             &encoding=pcm_s16le&sample_rate=16000"
        );
    }

    #[test]
    fn options_reach_the_query() {
        let s = Settings::from_config(&section(json!({
            "base_url": "http://127.0.0.1:9/c/", "auth_scheme": "query",
            "cartesia_version": "2026-03-01", "min_volume": 0.15,
            "max_silence_duration_secs": 0.6, "keyterm": ["WaaV", "Ink Whisper"],
            "extra_query": {"foo": 1}
        })))
        .unwrap();
        assert_eq!(s.close_command(), "close");
        let cfg = SttSessionConfig::new("de-DE", 8_000).with_format(AudioEncoding::Mulaw, 1);
        assert_eq!(
            stt_url(&s, &cfg, &key()).unwrap(),
            "ws://127.0.0.1:9/c/stt/websocket?model=ink-whisper&language=de&encoding=pcm_mulaw\
             &sample_rate=8000&min_volume=0.15&max_silence_duration_secs=0.6&keyterm=WaaV\
             &keyterm=Ink+Whisper&foo=1&api_key=sk-test&cartesia_version=2026-03-01"
        );
        let s = Settings::from_config(&section(json!({"close_command": "close"}))).unwrap();
        assert_eq!(s.close_command(), "close");
    }

    #[test]
    fn sessions_are_checked() {
        let s = Settings::default();
        let ok = SttSessionConfig::new("en", 16_000);
        assert!(check_session(&s, &ok).is_ok());
        let alaw = SttSessionConfig::new("", 8_000).with_format(AudioEncoding::Alaw, 1);
        assert!(check_session(&s, &alaw).is_ok());
        for bad in [
            SttSessionConfig::new("en", 0),
            SttSessionConfig::new("en", 96_000),
            SttSessionConfig::new("en", 16_000).with_format(AudioEncoding::Linear16, 2),
            SttSessionConfig::new("en", 16_000).with_format(AudioEncoding::Opus, 1),
            SttSessionConfig::new("english", 16_000),
            SttSessionConfig::new("en", 16_000).with_model("ink 2"),
            SttSessionConfig::new("fr", 16_000).with_model("ink-2"),
        ] {
            assert!(
                matches!(check_session(&s, &bad), Err(PluginError::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn bad_values_are_config_errors() {
        for bad in [
            json!({"base_url": "ftp://x"}),
            json!({"base_url": "wss://"}),
            json!({"cartesia_version": "latest"}),
            json!({"auth_scheme": "basic"}),
            json!({"model": "a b"}),
            json!({"language": "en-US"}),
            json!({"min_volume": 2}),
            json!({"max_silence_duration_secs": 0}),
            json!({"keyterm": [""]}),
            json!({"keyterm": ["x".repeat(1201)]}),
            json!({"close_command": "bye"}),
            json!({"extra_query": {"model": "x"}}),
            json!({"drain_timeout_ms": 0}),
            json!({"ping_interval_ms": 5000, "idle_timeout_ms": 100}),
        ] {
            let e = Settings::from_config(&section(bad.clone())).unwrap_err();
            assert!(matches!(e, PluginError::Config(_)), "{bad}: {e:?}");
        }
    }
}
