//! The STT config section and the session config, validated and turned into the realtime URL
//! (no I/O here).
//!
//! Sources, checked against the vendor SDK (`elevenlabs/elevenlabs-python` at 54e5899):
//! - URL and query: `src/elevenlabs/realtime/scribe.py` (`ScribeRealtime._build_websocket_url`:
//!   base `wss://api.elevenlabs.io`, path `/v1/speech-to-text/realtime`, `model_id`,
//!   `audio_format`, `commit_strategy` always; `vad_silence_threshold_secs`, `vad_threshold`,
//!   `min_speech_duration_ms`, `min_silence_duration_ms`, `language_code` when set;
//!   `include_timestamps=true|false`; repeated `keyterms=`; `no_verbatim=true|false`), and
//!   `src/elevenlabs/url_utils.py` (`https`→`wss`, `http`→`ws`).
//! - Ranges: the `RealtimeAudioOptions` docstring in `scribe.py` (VAD silence 0.3–3.0 s, VAD
//!   threshold 0.1–0.9, min speech / silence 50–2000 ms). The SDK does not enforce them; the
//!   server does (UNCONFIRMED how), so they are checked here before dialling.
//! - `audio_format` values: `AudioFormat` in `scribe.py` and `types/audio_format_enum.py`
//!   (`pcm_8000|16000|22050|24000|44100|48000`, `ulaw_8000`).
//! - `enable_logging` appears in the `session_started` config echo
//!   (`types/session_started_payload_config.py`) but the SDK never sends it; as a query
//!   parameter it is UNCONFIRMED (STT_PROTOCOLS.md §3), so it is sent only when configured.

use std::time::Duration;
use waav_plugin_api::{AudioEncoding, PluginConfig, PluginError, SttSessionConfig};

/// Production endpoint (`ScribeRealtime.__init__` default).
pub const DEFAULT_BASE_URL: &str = "wss://api.elevenlabs.io";
/// The realtime path, appended to the base URL.
pub const REALTIME_PATH: &str = "/v1/speech-to-text/realtime";
/// The realtime model (the only one the SDK and docs name).
pub const DEFAULT_MODEL: &str = "scribe_v2_realtime";
/// PCM16 rates the vendor takes (`pcm_<rate>`).
pub const PCM_RATES: &[u32] = &[8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

/// Query keys this plugin sets itself; `extra_query` may not set them.
const MANAGED_KEYS: &[&str] = &[
    "model_id",
    "audio_format",
    "commit_strategy",
    "vad_silence_threshold_secs",
    "vad_threshold",
    "min_speech_duration_ms",
    "min_silence_duration_ms",
    "language_code",
    "include_timestamps",
    "keyterms",
    "no_verbatim",
    "enable_logging",
    "token",
];

/// `commit_strategy`: who ends a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitStrategy {
    /// The server commits when its VAD hears the speaker stop.
    Vad,
    /// The client commits (on `Finalize`, and on the host VAD's end of speech when
    /// `commit_on_vad` is set).
    Manual,
}

impl CommitStrategy {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vad => "vad",
            Self::Manual => "manual",
        }
    }
}

/// Everything the config section can set, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ws[s]://host[:port][/prefix]`; the realtime path is appended.
    pub base_url: String,
    /// Model when the session names none.
    pub model: String,
    /// Extra model ids the capabilities list.
    pub extra_models: Vec<String>,
    /// `language_code` override (else derived from the session language).
    pub language_code: Option<String>,
    /// `commit_strategy` (default `vad`: the vendor ends utterances by itself).
    pub commit_strategy: CommitStrategy,
    /// `vad_silence_threshold_secs`.
    pub vad_silence_threshold_secs: Option<f64>,
    /// `vad_threshold`.
    pub vad_threshold: Option<f64>,
    /// `min_speech_duration_ms`.
    pub min_speech_duration_ms: Option<u64>,
    /// `min_silence_duration_ms`.
    pub min_silence_duration_ms: Option<u64>,
    /// `include_timestamps` (default true: committed transcripts carry words).
    pub include_timestamps: bool,
    /// Repeated `keyterms=`.
    pub keyterms: Vec<String>,
    /// `no_verbatim`, when set.
    pub no_verbatim: Option<bool>,
    /// `enable_logging`, when set.
    pub enable_logging: Option<bool>,
    /// `previous_text` sent with the first audio chunk, when set.
    pub previous_text: Option<String>,
    /// Other query parameters passed through.
    pub extra_query: Vec<(String, String)>,
    /// Manual strategy: commit when the host's VAD reports the end of speech.
    pub commit_on_vad: bool,
    /// Wait for the connection's `session_started` inside `connect`.
    pub wait_session_started: bool,
    /// With timestamps: how long a `committed_transcript` waits for its timestamped copy.
    pub timestamps_wait: Duration,
    /// A commit unanswered this long means the vendor went silent; `None`: never.
    pub response_timeout: Option<Duration>,
    /// Bound on the final commit and close after the input ends.
    pub drain_timeout: Duration,
    /// Dial + TLS + upgrade (+ `session_started`).
    pub connect_timeout: Duration,
    /// WebSocket ping cadence; `None`: no pings.
    pub ping_interval: Option<Duration>,
    /// Nothing (not even a pong) received this long ends the session; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// Largest incoming message.
    pub max_message_bytes: usize,
    /// Longest audio in one `input_audio_chunk`; longer host chunks are split.
    pub max_chunk_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            base_url: DEFAULT_BASE_URL.to_owned(),
            model: DEFAULT_MODEL.to_owned(),
            extra_models: Vec::new(),
            language_code: None,
            commit_strategy: CommitStrategy::Vad,
            vad_silence_threshold_secs: None,
            vad_threshold: None,
            min_speech_duration_ms: None,
            min_silence_duration_ms: None,
            include_timestamps: true,
            keyterms: Vec::new(),
            no_verbatim: None,
            enable_logging: None,
            previous_text: None,
            extra_query: Vec::new(),
            commit_on_vad: true,
            wait_session_started: true,
            timestamps_wait: Duration::from_millis(1_000),
            response_timeout: Some(Duration::from_secs(15)),
            drain_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
            ping_interval: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(45)),
            max_message_bytes: 1 << 20,
            // The vendor's chunk limit (`chunk_size_exceeded`) is UNCONFIRMED; one second is
            // far above the gateway's 20 ms frames and what the SDK's 8 KiB reads hold.
            max_chunk_ms: 1_000,
        }
    }
}

/// Every key the section may hold (unknown ones are logged by `init`).
pub const KNOWN_KEYS: &[&str] = &[
    "base_url",
    "model",
    "models",
    "language_code",
    "commit_strategy",
    "vad_silence_threshold_secs",
    "vad_threshold",
    "min_speech_duration_ms",
    "min_silence_duration_ms",
    "include_timestamps",
    "keyterms",
    "no_verbatim",
    "enable_logging",
    "previous_text",
    "extra_query",
    "commit_on_vad",
    "wait_session_started",
    "timestamps_wait_ms",
    "response_timeout_ms",
    "drain_timeout_ms",
    "connect_timeout_ms",
    "ping_interval_ms",
    "idle_timeout_ms",
    "max_message_bytes",
    "max_chunk_ms",
    "api_key",
];

fn config_err(c: &PluginConfig, key: &str, what: impl std::fmt::Display) -> PluginError {
    PluginError::Config(format!("{}.{key}: {what}", c.path()))
}

/// A model id or language code that goes into the query: `[A-Za-z0-9._-]`, 1–128 characters.
pub fn valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A duration in ms where 0 means off.
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

fn ranged_f64(c: &PluginConfig, key: &str, lo: f64, hi: f64) -> Result<Option<f64>, PluginError> {
    match c.f64(key)? {
        None => Ok(None),
        Some(v) if v.is_finite() && (lo..=hi).contains(&v) => Ok(Some(v)),
        Some(v) => Err(config_err(c, key, format!("{v} outside {lo}–{hi}"))),
    }
}

fn ranged_u64(c: &PluginConfig, key: &str, lo: u64, hi: u64) -> Result<Option<u64>, PluginError> {
    match c.u64(key)? {
        None => Ok(None),
        Some(v) if (lo..=hi).contains(&v) => Ok(Some(v)),
        Some(v) => Err(config_err(c, key, format!("{v} outside {lo}–{hi}"))),
    }
}

/// Checks a base URL: `wss://`/`ws://` (or `https://`/`http://`, mapped as the SDK's
/// `build_ws_url` does), a host, no query, fragment or credentials. No trailing slash.
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
        let models = c.strings("models")?.unwrap_or_default();
        if models.len() > 64 {
            return Err(config_err(c, "models", "at most 64 entries"));
        }
        if let Some(bad) = models.iter().find(|m| !valid_token(m)) {
            return Err(config_err(c, "models", format!("invalid model id {bad:?}")));
        }
        s.extra_models = models;
        if let Some(l) = c.string("language_code")?.filter(|l| !l.is_empty()) {
            if !valid_language(&l) {
                return Err(config_err(
                    c,
                    "language_code",
                    format!("{l:?}: expected an ISO-639-1 or ISO-639-3 code"),
                ));
            }
            s.language_code = Some(l.to_ascii_lowercase());
        }
        if let Some(v) = c.string("commit_strategy")? {
            s.commit_strategy = match v.to_ascii_lowercase().as_str() {
                "vad" => CommitStrategy::Vad,
                "manual" => CommitStrategy::Manual,
                _ => {
                    return Err(config_err(
                        c,
                        "commit_strategy",
                        format!("{v:?}: expected \"vad\" or \"manual\""),
                    ))
                }
            };
        }
        s.vad_silence_threshold_secs = ranged_f64(c, "vad_silence_threshold_secs", 0.3, 3.0)?;
        s.vad_threshold = ranged_f64(c, "vad_threshold", 0.1, 0.9)?;
        s.min_speech_duration_ms = ranged_u64(c, "min_speech_duration_ms", 50, 2_000)?;
        s.min_silence_duration_ms = ranged_u64(c, "min_silence_duration_ms", 50, 2_000)?;
        s.include_timestamps = c.bool("include_timestamps")?.unwrap_or(true);
        let keyterms = c.strings("keyterms")?.unwrap_or_default();
        if keyterms.len() > 100 {
            return Err(config_err(c, "keyterms", "at most 100 entries"));
        }
        if keyterms
            .iter()
            .any(|k| k.trim().is_empty() || k.len() > 256)
        {
            return Err(config_err(c, "keyterms", "entries must be 1–256 bytes"));
        }
        s.keyterms = keyterms;
        s.no_verbatim = c.bool("no_verbatim")?;
        s.enable_logging = c.bool("enable_logging")?;
        if let Some(t) = c.string("previous_text")?.filter(|t| !t.is_empty()) {
            // The docs' 50-character advice is UNCONFIRMED as a limit; this only bounds size.
            if t.len() > 4_096 {
                return Err(config_err(c, "previous_text", "at most 4096 bytes"));
            }
            s.previous_text = Some(t);
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
        s.commit_on_vad = c.bool("commit_on_vad")?.unwrap_or(true);
        s.wait_session_started = c.bool("wait_session_started")?.unwrap_or(true);
        s.timestamps_wait = match c.u64("timestamps_wait_ms")? {
            None => s.timestamps_wait,
            Some(ms) if ms <= 10_000 => Duration::from_millis(ms),
            Some(_) => return Err(config_err(c, "timestamps_wait_ms", "at most 10000 ms")),
        };
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
        if let Some(ms) = c.u64("max_chunk_ms")? {
            if !(20..=10_000).contains(&ms) {
                return Err(config_err(c, "max_chunk_ms", "expected 20–10000 ms"));
            }
            s.max_chunk_ms = ms;
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
}

/// An ISO-639-1/-3 code (2–3 ASCII letters).
fn valid_language(l: &str) -> bool {
    (2..=3).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphabetic())
}

/// How the session's audio goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireAudio {
    /// `audio_format`.
    pub format: &'static str,
    /// The `sample_rate` field of each chunk.
    pub sample_rate: u32,
    /// Bytes per sample on the wire (2 for PCM16, 1 for mu-law).
    pub sample_bytes: usize,
    /// Mu-law input at a rate the vendor only takes as PCM: decode locally to PCM16.
    pub decode_mulaw: bool,
}

/// The `audio_format` for a session, or a config error naming what the vendor takes.
pub fn wire_audio(cfg: &SttSessionConfig) -> Result<WireAudio, PluginError> {
    if cfg.channels != 1 {
        return Err(PluginError::Config(format!(
            "elevenlabs: {} channels not supported (mono only)",
            cfg.channels
        )));
    }
    let pcm = |rate: u32| -> Option<&'static str> {
        Some(match rate {
            8_000 => "pcm_8000",
            16_000 => "pcm_16000",
            22_050 => "pcm_22050",
            24_000 => "pcm_24000",
            44_100 => "pcm_44100",
            48_000 => "pcm_48000",
            _ => return None,
        })
    };
    let rates = || {
        PCM_RATES
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match cfg.encoding {
        AudioEncoding::Linear16 => match pcm(cfg.sample_rate) {
            Some(format) => Ok(WireAudio {
                format,
                sample_rate: cfg.sample_rate,
                sample_bytes: 2,
                decode_mulaw: false,
            }),
            None => Err(PluginError::Config(format!(
                "elevenlabs: sample rate {} Hz not supported (linear16 at {} Hz)",
                cfg.sample_rate,
                rates()
            ))),
        },
        AudioEncoding::Mulaw if cfg.sample_rate == 8_000 => Ok(WireAudio {
            format: "ulaw_8000",
            sample_rate: 8_000,
            sample_bytes: 1,
            decode_mulaw: false,
        }),
        AudioEncoding::Mulaw => match pcm(cfg.sample_rate) {
            Some(format) => Ok(WireAudio {
                format,
                sample_rate: cfg.sample_rate,
                sample_bytes: 2,
                decode_mulaw: true,
            }),
            None => Err(PluginError::Config(format!(
                "elevenlabs: mulaw at {} Hz not supported (8000 Hz, or {} Hz decoded to PCM)",
                cfg.sample_rate,
                rates()
            ))),
        },
        other => Err(PluginError::Config(format!(
            "elevenlabs: encoding {} not supported (linear16, mulaw)",
            other.as_str()
        ))),
    }
}

/// The model for a session: its own, else the configured one.
pub fn model_id<'a>(s: &'a Settings, cfg: &'a SttSessionConfig) -> Result<&'a str, PluginError> {
    let m = if cfg.model.is_empty() {
        s.model.as_str()
    } else {
        cfg.model.as_str()
    };
    if !valid_token(m) {
        return Err(PluginError::Config(format!(
            "elevenlabs: invalid model id {m:?}"
        )));
    }
    Ok(m)
}

/// `language_code`: the configured one, else the primary subtag of the session's BCP-47
/// language (`en-US` → `en`); none (auto-detect) for an empty, `auto` or `multi` language.
pub fn language_code(s: &Settings, cfg: &SttSessionConfig) -> Result<Option<String>, PluginError> {
    if let Some(l) = &s.language_code {
        return Ok(Some(l.clone()));
    }
    let lang = cfg.language.trim();
    if lang.is_empty() || lang.eq_ignore_ascii_case("auto") || lang.eq_ignore_ascii_case("multi") {
        return Ok(None);
    }
    let primary = lang.split(['-', '_']).next().unwrap_or_default();
    if !valid_language(primary) {
        return Err(PluginError::Config(format!(
            "elevenlabs: language {lang:?} has no ISO-639 code"
        )));
    }
    Ok(Some(primary.to_ascii_lowercase()))
}

/// The full realtime URL for a session.
pub fn realtime_url(s: &Settings, cfg: &SttSessionConfig) -> Result<String, PluginError> {
    let model = model_id(s, cfg)?;
    let audio = wire_audio(cfg)?;
    let language = language_code(s, cfg)?;
    let b = |v: bool| if v { "true" } else { "false" };
    let mut q = form_urlencoded::Serializer::new(String::with_capacity(256));
    q.append_pair("model_id", model);
    q.append_pair("audio_format", audio.format);
    q.append_pair("commit_strategy", s.commit_strategy.as_str());
    if let Some(v) = s.vad_silence_threshold_secs {
        q.append_pair("vad_silence_threshold_secs", &v.to_string());
    }
    if let Some(v) = s.vad_threshold {
        q.append_pair("vad_threshold", &v.to_string());
    }
    if let Some(v) = s.min_speech_duration_ms {
        q.append_pair("min_speech_duration_ms", &v.to_string());
    }
    if let Some(v) = s.min_silence_duration_ms {
        q.append_pair("min_silence_duration_ms", &v.to_string());
    }
    if let Some(l) = &language {
        q.append_pair("language_code", l);
    }
    q.append_pair("include_timestamps", b(s.include_timestamps));
    for k in &s.keyterms {
        q.append_pair("keyterms", k);
    }
    if let Some(v) = s.no_verbatim {
        q.append_pair("no_verbatim", b(v));
    }
    if let Some(v) = s.enable_logging {
        q.append_pair("enable_logging", b(v));
    }
    for (k, v) in &s.extra_query {
        q.append_pair(k, v);
    }
    let base = s.base_url.as_str();
    let path = if base.ends_with(REALTIME_PATH) {
        ""
    } else {
        REALTIME_PATH
    };
    Ok(format!("{base}{path}?{}", q.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn section(v: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.stt.elevenlabs", v).unwrap()
    }

    #[test]
    fn defaults_and_url() {
        let s = Settings::from_config(&section(json!({}))).unwrap();
        let cfg = SttSessionConfig::new("en-US", 16_000);
        assert_eq!(
            realtime_url(&s, &cfg).unwrap(),
            "wss://api.elevenlabs.io/v1/speech-to-text/realtime?model_id=scribe_v2_realtime\
             &audio_format=pcm_16000&commit_strategy=vad&language_code=en&include_timestamps=true"
        );
    }

    #[test]
    fn options_reach_the_query() {
        let s = Settings::from_config(&section(json!({
            "base_url": "http://127.0.0.1:9/el/", "commit_strategy": "manual",
            "vad_silence_threshold_secs": 0.5, "vad_threshold": 0.3,
            "min_speech_duration_ms": 100, "min_silence_duration_ms": 200,
            "language_code": "DEU", "include_timestamps": false,
            "keyterms": ["WaaV Gateway", "Scribe"], "no_verbatim": true,
            "enable_logging": false, "extra_query": {"include_language_detection": true}
        })))
        .unwrap();
        let cfg = SttSessionConfig::new("en", 8_000).with_format(AudioEncoding::Mulaw, 1);
        let url = realtime_url(&s, &cfg).unwrap();
        assert_eq!(
            url,
            "ws://127.0.0.1:9/el/v1/speech-to-text/realtime?model_id=scribe_v2_realtime\
             &audio_format=ulaw_8000&commit_strategy=manual&vad_silence_threshold_secs=0.5\
             &vad_threshold=0.3&min_speech_duration_ms=100&min_silence_duration_ms=200\
             &language_code=deu&include_timestamps=false&keyterms=WaaV+Gateway&keyterms=Scribe\
             &no_verbatim=true&enable_logging=false&include_language_detection=true"
        );
    }

    #[test]
    fn wire_formats() {
        let f = |e, r| wire_audio(&SttSessionConfig::new("en", r).with_format(e, 1));
        assert_eq!(
            f(AudioEncoding::Linear16, 44_100).unwrap().format,
            "pcm_44100"
        );
        let m = f(AudioEncoding::Mulaw, 16_000).unwrap();
        assert_eq!(
            (m.format, m.decode_mulaw, m.sample_bytes),
            ("pcm_16000", true, 2)
        );
        let m = f(AudioEncoding::Mulaw, 8_000).unwrap();
        assert_eq!(
            (m.format, m.decode_mulaw, m.sample_bytes),
            ("ulaw_8000", false, 1)
        );
        for (e, r) in [
            (AudioEncoding::Linear16, 32_000),
            (AudioEncoding::Linear16, 0),
            (AudioEncoding::Alaw, 8_000),
            (AudioEncoding::Opus, 48_000),
            (AudioEncoding::Mulaw, 11_025),
        ] {
            assert!(matches!(f(e, r), Err(PluginError::Config(_))), "{e:?} {r}");
        }
        let stereo = SttSessionConfig::new("en", 16_000).with_format(AudioEncoding::Linear16, 2);
        assert!(matches!(wire_audio(&stereo), Err(PluginError::Config(_))));
    }

    #[test]
    fn languages() {
        let s = Settings::default();
        let l = |lang: &str| language_code(&s, &SttSessionConfig::new(lang, 16_000));
        assert_eq!(l("pt-BR").unwrap().as_deref(), Some("pt"));
        assert_eq!(l("").unwrap(), None);
        assert_eq!(l("multi").unwrap(), None);
        assert!(l("english").is_err());
    }

    #[test]
    fn bad_values_are_config_errors() {
        for bad in [
            json!({"base_url": "ftp://x"}),
            json!({"base_url": "wss://"}),
            json!({"base_url": "wss://h?x=1"}),
            json!({"model": "scribe v2"}),
            json!({"commit_strategy": "auto"}),
            json!({"vad_silence_threshold_secs": 0.1}),
            json!({"vad_threshold": 1.0}),
            json!({"min_speech_duration_ms": 10}),
            json!({"min_silence_duration_ms": 5000}),
            json!({"language_code": "en-US"}),
            json!({"keyterms": [""]}),
            json!({"extra_query": {"model_id": "x"}}),
            json!({"extra_query": {"x": {"y": 1}}}),
            json!({"drain_timeout_ms": 0}),
            json!({"ping_interval_ms": 5000, "idle_timeout_ms": 1000}),
            json!({"max_chunk_ms": 5}),
            json!({"include_timestamps": "yes"}),
        ] {
            let e = Settings::from_config(&section(bad.clone())).unwrap_err();
            assert!(matches!(e, PluginError::Config(_)), "{bad}: {e:?}");
        }
        let s = Settings::from_config(&section(json!({"ping_interval_ms": 0}))).unwrap();
        assert_eq!(s.ping_interval, None);
        assert_eq!(
            Settings::unknown_keys(&section(json!({"model": "x", "mystery": 1}))),
            ["mystery"]
        );
    }
}
