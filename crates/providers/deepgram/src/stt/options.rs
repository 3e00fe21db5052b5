//! The plugin's config section and the session config, validated and turned into the
//! `/v1/listen` URL (no I/O).
//!
//! Query parameters as documented in `STT_PROTOCOLS.md` §1 "Query parameters" (Deepgram API
//! reference for `/v1/listen`), cross-checked with the Rust SDK's `WebsocketBuilder::as_url`
//! (`src/listen/websocket.rs`: `encoding`, `sample_rate`, `channels`, `endpointing`,
//! `utterance_end_ms`, `interim_results`, `vad_events`) and its `Options` serialiser
//! (`src/common/options.rs`: repeated `keyterm=`/`keywords=` pairs).
//!
//! Encodings, from developers.deepgram.com/docs/encoding: raw audio needs `encoding` and
//! `sample_rate` (`linear16`, `mulaw`, `alaw`, `flac`, … are listed); containerised audio (WAV,
//! Ogg, WebM, MP3) must omit both, and Deepgram reads the container header.

use std::time::Duration;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, SttSessionConfig};

/// Production endpoint.
pub const DEFAULT_BASE_URL: &str = "wss://api.deepgram.com";
/// The streaming path, the same for self-hosted deployments.
pub const LISTEN_PATH: &str = "/v1/listen";
/// Model used when neither the session nor the config names one.
pub const DEFAULT_MODEL: &str = "nova-3";

/// KeepAlive cadence while no audio flows. The docs say every 3–5 s (the server closes with
/// 1011 NET-0001 after 10 s without audio or KeepAlive); the Rust SDK uses 3 s.
const DEFAULT_KEEPALIVE: Duration = Duration::from_secs(4);
/// How long sent audio may go unanswered before the vendor counts as silent. Deepgram answers
/// streamed audio every second or so (interim results, and finals with empty transcripts over
/// silence: observed behaviour, UNCONFIRMED as a guarantee), so this is generous: a false alarm
/// would end a healthy session.
const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait for the last results and the close after `CloseStream`.
const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Dial + TLS + upgrade (the host applies its own connect timeout too).
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Results messages are a few KiB; anything this large is not a transcript.
const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// Query keys this plugin sets itself; `extra_query` may not set them.
const MANAGED_KEYS: &[&str] = &[
    "model",
    "language",
    "encoding",
    "sample_rate",
    "channels",
    "punctuate",
    "interim_results",
    "smart_format",
    "diarize",
    "vad_events",
    "endpointing",
    "utterance_end_ms",
    "keyterm",
    "keywords",
    "multichannel",
    "callback",
    "callback_method",
];

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

/// `endpointing`: milliseconds of silence before `speech_final`, or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpointing {
    /// `endpointing=<ms>`.
    Ms(u64),
    /// `endpointing=false`.
    Off,
    /// `endpointing=true` (the vendor's default length).
    On,
}

/// Everything the config section can set, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ws[s]://host[:port][/prefix]`; `/v1/listen` is appended.
    pub base_url: String,
    /// Model when the session names none.
    pub model: String,
    /// Extra model ids (custom or newer models) the capabilities list.
    pub extra_models: Vec<String>,
    /// Authorization scheme for the credential.
    pub auth_scheme: AuthScheme,
    /// `interim_results` (default true).
    pub interim_results: bool,
    /// `vad_events` (default true, so `SpeechStarted` reaches the host).
    pub vad_events: bool,
    /// `smart_format`, when set.
    pub smart_format: Option<bool>,
    /// `diarize`, when set.
    pub diarize: Option<bool>,
    /// `endpointing`, when set.
    pub endpointing: Option<Endpointing>,
    /// `utterance_end_ms`, when set.
    pub utterance_end_ms: Option<u64>,
    /// Repeated `keyterm=` (Nova-3 keyterm prompting).
    pub keyterms: Vec<String>,
    /// Repeated `keywords=` (`term` or `term:boost`, older models).
    pub keywords: Vec<String>,
    /// Other query parameters passed through (in key order, list values in order).
    pub extra_query: Vec<(String, String)>,
    /// KeepAlive cadence while no audio flows; `None` disables it.
    pub keepalive: Option<Duration>,
    /// Silent-vendor deadline; `None` disables it.
    pub response_timeout: Option<Duration>,
    /// Drain bound after `CloseStream`.
    pub drain_timeout: Duration,
    /// Connect bound.
    pub connect_timeout: Duration,
    /// Largest incoming message.
    pub max_message_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            extra_models: Vec::new(),
            auth_scheme: AuthScheme::Token,
            interim_results: true,
            vad_events: true,
            smart_format: None,
            diarize: None,
            endpointing: None,
            utterance_end_ms: None,
            keyterms: Vec::new(),
            keywords: Vec::new(),
            extra_query: Vec::new(),
            keepalive: Some(DEFAULT_KEEPALIVE),
            response_timeout: Some(DEFAULT_RESPONSE_TIMEOUT),
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_MESSAGE,
        }
    }
}

fn config_err(c: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", c.path()))
}

/// A duration in milliseconds where 0 means "off".
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

/// A model id or other token that goes into the URL: `[A-Za-z0-9._:-]`, 1–128 characters.
pub fn valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
}

/// A list of non-empty strings of at most `max_len` bytes, at most `max_items` of them.
fn string_list(
    c: &PluginConfig,
    key: &str,
    max_items: usize,
    max_len: usize,
) -> Result<Vec<String>, PluginError> {
    let list = c.strings(key)?.unwrap_or_default();
    if list.len() > max_items {
        return Err(config_err(c, key, format!("at most {max_items} entries")));
    }
    if let Some(bad) = list
        .iter()
        .find(|s| s.trim().is_empty() || s.len() > max_len)
    {
        return Err(config_err(
            c,
            key,
            format!("entries must be 1–{max_len} bytes, not {:?}", bad.len()),
        ));
    }
    Ok(list)
}

/// Checks a base URL: `ws://`, `wss://` (or `http(s)://`, mapped to `ws(s)://` as the SDKs do),
/// a host, no query or fragment. Returns it without a trailing slash.
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
    if rest.contains(['?', '#', ' ']) || rest.contains('@') {
        return Err(format!(
            "{raw:?} must not carry a query, fragment, spaces or credentials"
        ));
    }
    Ok(format!("{scheme}://{rest}"))
}

impl Settings {
    /// Reads and validates the config section (every key optional).
    pub fn from_config(c: &PluginConfig) -> Result<Self, PluginError> {
        let mut s = Settings::default();
        if let Some(url) = c.string("base_url")? {
            s.base_url = normalise_base_url(&url).map_err(|e| config_err(c, "base_url", e))?;
        }
        if let Some(m) = c.string("model")?.filter(|m| !m.is_empty()) {
            if !valid_token(&m) {
                return Err(config_err(c, "model", format!("invalid model id {m:?}")));
            }
            s.model = m;
        }
        s.extra_models = string_list(c, "models", 64, 128)?;
        if let Some(bad) = s.extra_models.iter().find(|m| !valid_token(m)) {
            return Err(config_err(c, "models", format!("invalid model id {bad:?}")));
        }
        if let Some(scheme) = c.string("auth_scheme")? {
            s.auth_scheme = match scheme.to_ascii_lowercase().as_str() {
                "token" => AuthScheme::Token,
                "bearer" => AuthScheme::Bearer,
                _ => {
                    return Err(config_err(
                        c,
                        "auth_scheme",
                        format!("{scheme:?}: expected \"token\" or \"bearer\""),
                    ))
                }
            };
        }
        s.interim_results = c.bool("interim_results")?.unwrap_or(true);
        s.vad_events = c.bool("vad_events")?.unwrap_or(true);
        s.smart_format = c.bool("smart_format")?;
        s.diarize = c.bool("diarize")?;
        s.endpointing = match c.raw("endpointing") {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::Bool(false)) => Some(Endpointing::Off),
            Some(serde_json::Value::Bool(true)) => Some(Endpointing::On),
            Some(v) => match v.as_u64() {
                Some(ms) if ms <= 60_000 => Some(Endpointing::Ms(ms)),
                _ => {
                    return Err(config_err(
                        c,
                        "endpointing",
                        "expected milliseconds (0–60000) or false",
                    ))
                }
            },
        };
        s.utterance_end_ms = match c.u64("utterance_end_ms")? {
            None => None,
            Some(ms) if (1..=60_000).contains(&ms) => Some(ms),
            Some(_) => return Err(config_err(c, "utterance_end_ms", "expected 1–60000 ms")),
        };
        if s.utterance_end_ms.is_some() && !s.interim_results {
            // Deepgram: UtteranceEnd works from interim results (docs/utterance-end).
            return Err(config_err(
                c,
                "utterance_end_ms",
                "needs interim_results: true",
            ));
        }
        s.keyterms = string_list(c, "keyterm", 100, 256)?;
        s.keywords = string_list(c, "keywords", 100, 256)?;
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
        s.keepalive = millis_opt(c, "keepalive_interval_ms", s.keepalive, 9_000)?;
        s.response_timeout = millis_opt(c, "response_timeout_ms", s.response_timeout, 600_000)?;
        s.drain_timeout = millis(c, "drain_timeout_ms", s.drain_timeout, 120_000)?;
        s.connect_timeout = millis(c, "connect_timeout_ms", s.connect_timeout, 120_000)?;
        if let Some(n) = c.u64("max_message_bytes")? {
            if !(1024..=(64 << 20)).contains(&n) {
                return Err(config_err(c, "max_message_bytes", "expected 1 KiB–64 MiB"));
            }
            s.max_message_bytes = n as usize;
        }
        Ok(s)
    }
}

/// How the session's audio is declared to Deepgram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Raw audio: `encoding=<name>&sample_rate=<hz>&channels=<n>`.
    Raw(&'static str),
    /// Containerised audio (WAV, MP3, Ogg Opus): no `encoding`/`sample_rate`, Deepgram reads
    /// the header.
    Container,
}

/// The wire format for a gateway encoding.
pub fn wire_format(e: AudioEncoding) -> WireFormat {
    match e {
        AudioEncoding::Linear16 => WireFormat::Raw("linear16"),
        AudioEncoding::Mulaw => WireFormat::Raw("mulaw"),
        AudioEncoding::Alaw => WireFormat::Raw("alaw"),
        AudioEncoding::Flac => WireFormat::Raw("flac"),
        // The gateway's Opus is Ogg Opus; MP3 and WAV carry their own headers.
        AudioEncoding::Wav | AudioEncoding::Mp3 | AudioEncoding::Opus => WireFormat::Container,
    }
}

/// Sample rates accepted for raw audio. Deepgram documents no bounds (UNCONFIRMED); telephony
/// 8 kHz to studio 48 kHz covers every documented example, and the host resamples into it.
pub const SAMPLE_RATES: (u32, u32) = (8_000, 48_000);
/// Most interleaved channels accepted (UNCONFIRMED upper bound; the docs only say "int").
pub const MAX_CHANNELS: u16 = 8;

/// Checks the session against what the vendor takes (before any dialling).
pub fn check_session(cfg: &SttSessionConfig) -> Result<(), PluginError> {
    let (lo, hi) = SAMPLE_RATES;
    if let WireFormat::Raw(_) = wire_format(cfg.encoding) {
        if !(lo..=hi).contains(&cfg.sample_rate) {
            return Err(PluginError::Config(format!(
                "deepgram: sample rate {} Hz not supported ({lo}–{hi} Hz)",
                cfg.sample_rate
            )));
        }
    }
    if !(1..=MAX_CHANNELS).contains(&cfg.channels) {
        return Err(PluginError::Config(format!(
            "deepgram: {} channels not supported (1–{MAX_CHANNELS})",
            cfg.channels
        )));
    }
    if !cfg.model.is_empty() && !valid_token(&cfg.model) {
        return Err(PluginError::Config(format!(
            "deepgram: invalid model id {:?}",
            cfg.model
        )));
    }
    let lang_ok = cfg.language.len() <= 35
        && cfg
            .language
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !lang_ok {
        return Err(PluginError::Config(format!(
            "deepgram: invalid language {:?}",
            cfg.language
        )));
    }
    Ok(())
}

/// The full `/v1/listen` URL for a session.
pub fn listen_url(s: &Settings, cfg: &SttSessionConfig) -> Result<String, PluginError> {
    let model = if cfg.model.is_empty() {
        s.model.as_str()
    } else {
        cfg.model.as_str()
    };
    if !s.keyterms.is_empty() && !model.to_ascii_lowercase().starts_with("nova-3") {
        // Keyterm prompting is a Nova-3 feature (STT_PROTOCOLS.md §1: "Nova-3 only").
        return Err(PluginError::Config(format!(
            "deepgram: keyterm needs a nova-3 model, not {model:?} (use keywords for older models)"
        )));
    }
    let mut q = form_urlencoded::Serializer::new(String::with_capacity(256));
    q.append_pair("model", model);
    if !cfg.language.is_empty() {
        q.append_pair("language", &cfg.language);
    }
    if let WireFormat::Raw(name) = wire_format(cfg.encoding) {
        q.append_pair("encoding", name);
        q.append_pair("sample_rate", &cfg.sample_rate.to_string());
        q.append_pair("channels", &cfg.channels.to_string());
    }
    let b = |v: bool| if v { "true" } else { "false" };
    q.append_pair("punctuate", b(cfg.punctuation));
    q.append_pair("interim_results", b(s.interim_results));
    if let Some(v) = s.smart_format {
        q.append_pair("smart_format", b(v));
    }
    if let Some(v) = s.diarize {
        q.append_pair("diarize", b(v));
    }
    q.append_pair("vad_events", b(s.vad_events));
    match s.endpointing {
        None => {}
        Some(Endpointing::Off) => {
            q.append_pair("endpointing", "false");
        }
        Some(Endpointing::On) => {
            q.append_pair("endpointing", "true");
        }
        Some(Endpointing::Ms(ms)) => {
            q.append_pair("endpointing", &ms.to_string());
        }
    }
    if let Some(ms) = s.utterance_end_ms {
        q.append_pair("utterance_end_ms", &ms.to_string());
    }
    for k in &s.keyterms {
        q.append_pair("keyterm", k);
    }
    for k in &s.keywords {
        q.append_pair("keywords", k);
    }
    for (k, v) in &s.extra_query {
        q.append_pair(k, v);
    }
    let base = s.base_url.as_str();
    let path = if base.ends_with(LISTEN_PATH) {
        ""
    } else {
        LISTEN_PATH
    };
    Ok(format!("{base}{path}?{}", q.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(v: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.stt.deepgram", v).unwrap()
    }

    #[test]
    fn defaults_and_url() {
        let s = Settings::from_config(&section(json!({}))).unwrap();
        let cfg = SttSessionConfig::new("en-US", 16_000);
        assert_eq!(
            listen_url(&s, &cfg).unwrap(),
            "wss://api.deepgram.com/v1/listen?model=nova-3&language=en-US&encoding=linear16\
             &sample_rate=16000&channels=1&punctuate=true&interim_results=true&vad_events=true"
        );
    }

    #[test]
    fn options_reach_the_query() {
        let s = Settings::from_config(&section(json!({
            "base_url": "http://10.0.0.5:8080/dg/",
            "endpointing": false, "utterance_end_ms": 1000, "smart_format": true,
            "diarize": true, "keyterm": ["tail number", "Ünïcode"],
            "extra_query": {"tag": ["a", "b"], "numerals": true}
        })))
        .unwrap();
        let cfg = SttSessionConfig::new("de", 8_000)
            .with_format(AudioEncoding::Mulaw, 1)
            .with_model("nova-3-medical");
        let url = listen_url(&s, &cfg).unwrap();
        assert!(url.starts_with("ws://10.0.0.5:8080/dg/v1/listen?model=nova-3-medical&language=de&encoding=mulaw&sample_rate=8000"), "{url}");
        assert!(
            url.contains("&endpointing=false&utterance_end_ms=1000"),
            "{url}"
        );
        assert!(
            url.contains("&keyterm=tail+number&keyterm=%C3%9Cn%C3%AFcode"),
            "{url}"
        );
        assert!(url.ends_with("&numerals=true&tag=a&tag=b"), "{url}");
        let wav = SttSessionConfig::new("en", 16_000).with_format(AudioEncoding::Wav, 1);
        let url = listen_url(&s, &wav).unwrap();
        assert!(
            !url.contains("encoding=") && !url.contains("sample_rate="),
            "{url}"
        );
    }

    #[test]
    fn bad_values_are_config_errors() {
        for bad in [
            json!({"base_url": "ftp://x"}),
            json!({"base_url": "wss://"}),
            json!({"base_url": "wss://h/?x=1"}),
            json!({"model": "nova 3"}),
            json!({"auth_scheme": "basic"}),
            json!({"endpointing": "soon"}),
            json!({"utterance_end_ms": 1000, "interim_results": false}),
            json!({"utterance_end_ms": 0}),
            json!({"keyterm": [""]}),
            json!({"keyterm": "one"}),
            json!({"extra_query": {"model": "x"}}),
            json!({"extra_query": {"x": {"y": 1}}}),
            json!({"keepalive_interval_ms": 60_000}),
            json!({"drain_timeout_ms": 0}),
            json!({"interim_results": "yes"}),
        ] {
            let e = Settings::from_config(&section(bad.clone())).unwrap_err();
            assert!(matches!(e, PluginError::Config(_)), "{bad}: {e:?}");
        }
        let s = Settings::from_config(&section(json!({"keyterm": ["x"]}))).unwrap();
        let cfg = SttSessionConfig::new("en", 16_000).with_model("nova-2");
        assert!(matches!(listen_url(&s, &cfg), Err(PluginError::Config(_))));
        let s = Settings::from_config(&section(json!({"keepalive_interval_ms": 0}))).unwrap();
        assert_eq!(s.keepalive, None);
    }

    #[test]
    fn session_checks() {
        let ok = SttSessionConfig::new("en-US", 16_000);
        assert!(check_session(&ok).is_ok());
        for bad in [
            SttSessionConfig::new("en-US", 0),
            SttSessionConfig::new("en-US", u32::MAX),
            SttSessionConfig::new("en-US", 16_000).with_format(AudioEncoding::Linear16, 0),
            SttSessionConfig::new("en-US", 16_000).with_format(AudioEncoding::Linear16, 99),
            SttSessionConfig::new("en US", 16_000),
            SttSessionConfig::new("en", 16_000).with_model("x&y=z"),
        ] {
            assert!(matches!(check_session(&bad), Err(PluginError::Config(_))));
        }
        // Containerised audio carries its own rate.
        let wav = SttSessionConfig::new("en", 44_100 * 4).with_format(AudioEncoding::Wav, 1);
        assert!(check_session(&wav).is_ok());
    }
}
