//! The plugin's config section, the wire audio formats, and the `session.update` body built from
//! a [`RealtimeSessionConfig`].
//!
//! Shapes are the GA ones of openai-python `src/openai/types/realtime/`:
//! `realtime_session_create_request.py` (the `session` object: `type: "realtime"`, `instructions`,
//! `output_modalities`, `audio`, `max_output_tokens` 1–4096 or `"inf"`, `tools`, `tool_choice`;
//! there is no `temperature` in the GA session), `realtime_audio_config_input.py` (`format`,
//! `noise_reduction`, `transcription`, `turn_detection`), `realtime_audio_config_output.py`
//! (`format`, `speed`, `voice`: a name or `{"id": "voice_…"}`), `realtime_audio_formats.py`
//! (`{"type":"audio/pcm","rate":24000}` — "Only a 24kHz sample rate is supported" —,
//! `{"type":"audio/pcmu"}`, `{"type":"audio/pcma"}`), `realtime_audio_input_turn_detection.py`
//! (`server_vad`: `threshold`, `prefix_padding_ms`, `silence_duration_ms`, `create_response`,
//! `interrupt_response`, `idle_timeout_ms`; `semantic_vad`: `eagerness`, `create_response`,
//! `interrupt_response`; `null` turns it off), `audio_transcription.py` (`model`, `language`,
//! `prompt`), `realtime_function_tool.py` (`{"type":"function","name","description",
//! "parameters"}`, flat, unlike Chat Completions).

use crate::common::{self, AccountHeaders};
use serde_json::{json, Map, Value};
use std::time::Duration;
use waav_plugin_api::{
    AudioEncoding, AudioFormat, PluginConfig, PluginError, RealtimeSessionConfig,
};

/// The production base URL (the SDK joins `/realtime` onto `wss://api.openai.com/v1`).
pub const DEFAULT_BASE_URL: &str = "wss://api.openai.com";
/// The default model.
pub const DEFAULT_MODEL: &str = "gpt-realtime";
/// The default input transcription model.
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "gpt-4o-mini-transcribe";
/// The PCM rate (`realtime_audio_formats.py`: always 24000).
pub const PCM_RATE: u32 = 24_000;
/// The G.711 rate (UNCONFIRMED from a primary source; telephony G.711 is 8 kHz).
pub const G711_RATE: u32 = 8_000;
/// The largest `max_output_tokens` (`realtime_session_create_request.py`: 1–4096 or `inf`).
pub const MAX_OUTPUT_TOKENS: u32 = 4096;

/// The plugin's settings, from its config section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `ws(s)://host[:port][/prefix]`, no trailing slash; the path `/v1/realtime` is appended.
    pub base_url: String,
    /// Default model.
    pub model: String,
    /// Extra model ids to declare.
    pub extra_models: Vec<String>,
    /// Default voice (`None`: the vendor's).
    pub voice: Option<String>,
    /// Model for input transcription when the session asks for it.
    pub transcription_model: String,
    /// Language hint for input transcription.
    pub transcription_language: Option<String>,
    /// `audio.input.noise_reduction.type` (`near_field` / `far_field`).
    pub noise_reduction: Option<String>,
    /// `audio.output.speed` (0.25–1.5).
    pub speed: Option<f64>,
    /// `tool_choice` when the session has tools (`auto`, `none`, `required`).
    pub tool_choice: String,
    /// `conversation.item.truncate` the assistant audio on cancel and barge-in, to an estimate of
    /// what was played (see the session module).
    pub truncate_on_interrupt: bool,
    /// Account headers (`OpenAI-Organization`, `OpenAI-Project`).
    pub account: AccountHeaders,
    /// TCP + TLS + handshake deadline.
    pub connect_timeout: Duration,
    /// Bound on waiting for `session.created` and the first `session.updated`.
    pub setup_timeout: Duration,
    /// A response asked for (or a commit) with nothing from the vendor for this long fails the
    /// session; `None`: never.
    pub response_timeout: Option<Duration>,
    /// Keepalive ping interval; `None`: off.
    pub ping_interval: Option<Duration>,
    /// Nothing received (not even a pong) for this long fails the session; `None`: off.
    pub idle_timeout: Option<Duration>,
    /// Bound on the closing handshake after the host closes its input.
    pub close_timeout: Duration,
    /// Largest vendor message accepted.
    pub max_message_bytes: usize,
    /// Most audio bytes (in the wire format) per `input_audio_buffer.append`.
    pub max_append_bytes: usize,
}

/// Keys the section understands.
pub const KEYS: &[&str] = &[
    "base_url",
    "model",
    "models",
    "voice",
    "transcription_model",
    "transcription_language",
    "noise_reduction",
    "speed",
    "tool_choice",
    "truncate_on_interrupt",
    "organization",
    "project",
    "connect_timeout_ms",
    "setup_timeout_ms",
    "response_timeout_ms",
    "ping_interval_ms",
    "idle_timeout_ms",
    "close_timeout_ms",
    "max_message_bytes",
    "max_append_bytes",
    "api_key",
    "enabled",
    "required",
];

impl Default for Settings {
    fn default() -> Self {
        Self::from_config(&PluginConfig::default()).expect("defaults are valid")
    }
}

fn optional_ms(
    cfg: &PluginConfig,
    key: &str,
    default: u64,
    max: u64,
) -> Result<Option<Duration>, PluginError> {
    let d = common::millis(cfg, key, default, 0, max)?;
    Ok((!d.is_zero()).then_some(d))
}

fn name(cfg: &PluginConfig, key: &str) -> Result<Option<String>, PluginError> {
    let v = common::header_value(cfg, key)?;
    if let Some(s) = &v {
        if s.len() > 256 {
            return Err(PluginError::Config(format!(
                "{}.{key}: at most 256 bytes",
                cfg.path()
            )));
        }
    }
    Ok(v)
}

impl Settings {
    /// Parses and validates a config section.
    pub fn from_config(cfg: &PluginConfig) -> Result<Self, PluginError> {
        let base_url = ws_base_url(
            &cfg.string("base_url")?
                .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned()),
        )
        .map_err(|e| PluginError::Config(format!("{}.base_url: {e}", cfg.path())))?;
        let noise_reduction = name(cfg, "noise_reduction")?;
        if let Some(n) = noise_reduction
            .as_deref()
            .filter(|n| !matches!(*n, "near_field" | "far_field"))
        {
            return Err(PluginError::Config(format!(
                "{}.noise_reduction: {n:?} must be near_field or far_field",
                cfg.path()
            )));
        }
        let speed = cfg.f64("speed")?;
        if let Some(s) = speed.filter(|s| !(0.25..=1.5).contains(s)) {
            return Err(PluginError::Config(format!(
                "{}.speed: {s} is outside 0.25–1.5",
                cfg.path()
            )));
        }
        let tool_choice = name(cfg, "tool_choice")?.unwrap_or_else(|| "auto".to_owned());
        if !matches!(tool_choice.as_str(), "auto" | "none" | "required") {
            return Err(PluginError::Config(format!(
                "{}.tool_choice: {tool_choice:?} must be auto, none or required",
                cfg.path()
            )));
        }
        let max_message_bytes = cfg.u64("max_message_bytes")?.unwrap_or(4 << 20);
        if !(64 * 1024..=64 << 20).contains(&max_message_bytes) {
            return Err(PluginError::Config(format!(
                "{}.max_message_bytes: {max_message_bytes} is outside 64 KiB–64 MiB",
                cfg.path()
            )));
        }
        let max_append_bytes = cfg.u64("max_append_bytes")?.unwrap_or(256 * 1024);
        if !(320..=8 << 20).contains(&max_append_bytes) {
            return Err(PluginError::Config(format!(
                "{}.max_append_bytes: {max_append_bytes} is outside 320 B–8 MiB",
                cfg.path()
            )));
        }
        Ok(Self {
            base_url,
            model: name(cfg, "model")?.unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
            extra_models: cfg.strings("models")?.unwrap_or_default(),
            voice: name(cfg, "voice")?,
            transcription_model: name(cfg, "transcription_model")?
                .unwrap_or_else(|| DEFAULT_TRANSCRIPTION_MODEL.to_owned()),
            transcription_language: name(cfg, "transcription_language")?,
            noise_reduction,
            speed,
            tool_choice,
            truncate_on_interrupt: cfg.bool("truncate_on_interrupt")?.unwrap_or(true),
            account: AccountHeaders::from_config(cfg)?,
            connect_timeout: common::millis(cfg, "connect_timeout_ms", 10_000, 100, 120_000)?,
            setup_timeout: common::millis(cfg, "setup_timeout_ms", 10_000, 100, 120_000)?,
            response_timeout: optional_ms(cfg, "response_timeout_ms", 30_000, 600_000)?,
            ping_interval: optional_ms(cfg, "ping_interval_ms", 15_000, 600_000)?,
            idle_timeout: optional_ms(cfg, "idle_timeout_ms", 60_000, 3_600_000)?,
            close_timeout: common::millis(cfg, "close_timeout_ms", 3_000, 10, 60_000)?,
            max_message_bytes: max_message_bytes as usize,
            max_append_bytes: max_append_bytes as usize,
        })
    }

    /// Keys of `cfg` this section does not know.
    pub fn unknown_keys(cfg: &PluginConfig) -> Vec<String> {
        cfg.keys()
            .filter(|k| !KEYS.contains(k))
            .map(str::to_owned)
            .collect()
    }

    /// The model of a session: its own, else the configured default.
    pub fn model_for(&self, session: &RealtimeSessionConfig) -> String {
        Some(session.model.trim())
            .filter(|m| !m.is_empty())
            .unwrap_or(&self.model)
            .to_owned()
    }

    /// `…/v1/realtime?model=<model>` (openai-python `resources/realtime/realtime.py`
    /// `_prepare_url` + the `model` query parameter).
    pub fn url(&self, model: &str) -> String {
        format!(
            "{}/v1/realtime?model={}",
            self.base_url,
            query_escape(model)
        )
    }
}

/// `wss://`/`ws://` (and `https://`/`http://`, mapped) plus host and optional path prefix.
pub fn ws_base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("expected ws(s)://host[:port][/path], got {url:?}"))?;
    let scheme = match scheme {
        "wss" | "https" => "wss",
        "ws" | "http" => "ws",
        _ => return Err(format!("unsupported scheme in {url:?}")),
    };
    if rest.is_empty() || rest.starts_with('/') || rest.contains(['?', '#', ' ']) {
        return Err(format!("expected ws(s)://host[:port][/path], got {url:?}"));
    }
    let rest = rest.strip_suffix("/v1").unwrap_or(rest);
    Ok(format!("{scheme}://{rest}"))
}

fn query_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A vendor audio format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// `audio/pcm` at 24 kHz.
    Pcm,
    /// `audio/pcmu` (G.711 mu-law, 8 kHz).
    Pcmu,
    /// `audio/pcma` (G.711 A-law, 8 kHz).
    Pcma,
}

impl Wire {
    /// The `format` object.
    pub fn json(self) -> Value {
        match self {
            Self::Pcm => json!({"type": "audio/pcm", "rate": PCM_RATE}),
            Self::Pcmu => json!({"type": "audio/pcmu"}),
            Self::Pcma => json!({"type": "audio/pcma"}),
        }
    }
}

/// The conversion this plugin does between the host's format and the wire format.
///
/// The host picks formats from the declared encodings (linear16, mulaw, alaw) and rates (24000,
/// 8000) independently, so it may ask for linear16 at 8 kHz or G.711 at 24 kHz; those are served
/// by G.711 transcoding here (never resampling): linear16 8 kHz ↔ `audio/pcmu`, G.711 24 kHz ↔
/// `audio/pcm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transcode {
    /// Bytes pass through.
    None,
    /// Host linear16 ↔ wire mu-law.
    Pcm16Mulaw,
    /// Host mu-law ↔ wire linear16.
    MulawPcm16,
    /// Host A-law ↔ wire linear16.
    AlawPcm16,
}

/// The wire format and conversion for a host format.
pub fn wire_for(format: AudioFormat, what: &str) -> Result<(Wire, Transcode), PluginError> {
    use AudioEncoding::{Alaw, Linear16, Mulaw};
    if format.channels != 1 {
        return Err(PluginError::Config(format!(
            "openai realtime: {what} audio must be mono, got {} channels",
            format.channels
        )));
    }
    Ok(match (format.encoding, format.sample_rate) {
        (Linear16, PCM_RATE) => (Wire::Pcm, Transcode::None),
        (Mulaw, G711_RATE) => (Wire::Pcmu, Transcode::None),
        (Alaw, G711_RATE) => (Wire::Pcma, Transcode::None),
        (Linear16, G711_RATE) => (Wire::Pcmu, Transcode::Pcm16Mulaw),
        (Mulaw, PCM_RATE) => (Wire::Pcm, Transcode::MulawPcm16),
        (Alaw, PCM_RATE) => (Wire::Pcm, Transcode::AlawPcm16),
        (e, r) => {
            return Err(PluginError::Config(format!(
                "openai realtime: {what} audio {e} at {r} Hz is not supported \
                 (linear16 at 24000 Hz, mulaw/alaw at 8000 Hz)"
            )))
        }
    })
}

/// The `turn_detection` value for the host's `{mode, …}` object: `Ok(None)` to leave the
/// vendor default (no object given), `Ok(Some(Value::Null))` for manual turns.
pub fn turn_detection(td: Option<&Value>) -> Result<Option<Value>, PluginError> {
    let Some(td) = td else { return Ok(None) };
    let bad = |m: String| PluginError::Config(format!("openai realtime: turn_detection: {m}"));
    let mode = td
        .get("mode")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("needs a mode: server_vad, semantic or manual".into()))?;
    let copy = |out: &mut Map<String, Value>, keys: &[&str]| {
        for k in keys {
            if let Some(v) = td.get(*k).filter(|v| !v.is_null()) {
                out.insert((*k).to_owned(), v.clone());
            }
        }
    };
    let mut out = Map::new();
    match mode {
        "server_vad" => {
            out.insert("type".into(), "server_vad".into());
            copy(
                &mut out,
                &[
                    "threshold",
                    "prefix_padding_ms",
                    "silence_duration_ms",
                    "create_response",
                    "interrupt_response",
                    "idle_timeout_ms",
                ],
            );
            for k in [
                "prefix_padding_ms",
                "silence_duration_ms",
                "idle_timeout_ms",
            ] {
                if let Some(v) = out.get_mut(k) {
                    // The vendor takes integers (`Optional[int]`).
                    let n = v
                        .as_f64()
                        .filter(|n| n.is_finite() && *n >= 0.0)
                        .ok_or_else(|| bad(format!("{k} must be a non-negative number")))?;
                    *v = json!(n.round() as u64);
                }
            }
        }
        "semantic" | "semantic_vad" => {
            out.insert("type".into(), "semantic_vad".into());
            copy(
                &mut out,
                &["eagerness", "create_response", "interrupt_response"],
            );
        }
        "manual" => return Ok(Some(Value::Null)),
        other => return Err(bad(format!("unknown mode {other:?}"))),
    }
    for k in ["create_response", "interrupt_response"] {
        if out.get(k).is_some_and(|v| !v.is_boolean()) {
            return Err(bad(format!("{k} must be a boolean")));
        }
    }
    Ok(Some(Value::Object(out)))
}

/// Whether turns are committed by the client (`turn_detection: null`).
pub fn is_manual(td: Option<&Value>) -> bool {
    td.and_then(|t| t.get("mode"))
        .and_then(Value::as_str)
        .is_some_and(|m| m == "manual")
}

/// The GA tool for a host tool: `{type, function: {name, description, parameters}}` (the
/// `/realtime` client shape) or an already flat `{type: function, name, …}` becomes
/// `{type: "function", name, description?, parameters?}`; other tool types pass through.
pub fn tool(t: &Value) -> Result<Value, PluginError> {
    let ty = t.get("type").and_then(Value::as_str).unwrap_or("function");
    if ty != "function" {
        return Ok(t.clone());
    }
    let f = t.get("function").filter(|f| f.is_object()).unwrap_or(t);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| PluginError::Config("openai realtime: a tool has no name".into()))?;
    let mut out = json!({"type": "function", "name": name});
    for k in ["description", "parameters"] {
        if let Some(v) = f.get(k).filter(|v| !v.is_null()) {
            out[k] = v.clone();
        }
    }
    Ok(out)
}

/// The voice value (`realtime_audio_config_output.py`: a name, or `{"id"}` for a custom voice).
pub fn voice(v: &str) -> Value {
    if v.starts_with("voice_") {
        json!({ "id": v })
    } else {
        Value::String(v.to_owned())
    }
}

/// What a `session.update` is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The first update after `session.created`: unset fields are left at the vendor defaults.
    Initial,
    /// A later update: fields the host can clear are sent explicitly (empty tools, no
    /// transcription); `voice` is sent only when it changes (it cannot change once the model
    /// has spoken).
    Update,
}

/// The `session` object of a `session.update`.
pub fn session_object(
    s: &Settings,
    c: &RealtimeSessionConfig,
    input: Wire,
    output: Wire,
    purpose: Purpose,
    previous_voice: Option<&str>,
) -> Result<Value, PluginError> {
    let mut session = json!({"type": "realtime"});
    if let Some(i) = &c.instructions {
        session["instructions"] = Value::String(i.clone());
    }
    // GA: one of `audio` (audio plus transcript) or `text`; both means audio.
    if !c.modalities.is_empty() {
        let m = if c.modalities.iter().any(|m| m == "audio") {
            "audio"
        } else if c.modalities.iter().any(|m| m == "text") {
            "text"
        } else {
            return Err(PluginError::Config(format!(
                "openai realtime: modalities {:?} must be audio and/or text",
                c.modalities
            )));
        };
        session["output_modalities"] = json!([m]);
    }
    if let Some(n) = c.max_response_tokens {
        session["max_output_tokens"] = json!(n.clamp(1, MAX_OUTPUT_TOKENS));
    }
    if let Some(t) = c.temperature {
        // The GA session has no temperature (realtime_session_create_request.py); only the
        // beta session had one.
        tracing::debug!(
            temperature = t,
            "openai realtime: temperature is not a GA session field; not sent"
        );
    }
    if !c.tools.is_empty() || purpose == Purpose::Update {
        let tools = c.tools.iter().map(tool).collect::<Result<Vec<_>, _>>()?;
        if !tools.is_empty() {
            session["tool_choice"] = Value::String(s.tool_choice.clone());
        }
        session["tools"] = Value::Array(tools);
    }
    let mut audio_in = json!({ "format": input.json() });
    if let Some(td) = turn_detection(c.turn_detection.as_ref())? {
        audio_in["turn_detection"] = td;
    }
    if c.transcribe_input {
        let mut t = json!({ "model": s.transcription_model });
        if let Some(l) = &s.transcription_language {
            t["language"] = Value::String(l.clone());
        }
        audio_in["transcription"] = t;
    } else if purpose == Purpose::Update {
        audio_in["transcription"] = Value::Null;
    }
    if let Some(n) = &s.noise_reduction {
        audio_in["noise_reduction"] = json!({ "type": n });
    }
    let mut audio_out = json!({ "format": output.json() });
    if let Some(v) =
        voice_of(s, c).filter(|v| purpose == Purpose::Initial || previous_voice != Some(v))
    {
        if v.chars().any(char::is_control) {
            return Err(PluginError::Config("openai realtime: invalid voice".into()));
        }
        audio_out["voice"] = voice(&v);
    }
    if let Some(sp) = s.speed {
        audio_out["speed"] = json!(sp);
    }
    session["audio"] = json!({ "input": audio_in, "output": audio_out });
    Ok(session)
}

/// The voice a session config resolves to (`None`: the vendor default).
pub fn voice_of(s: &Settings, c: &RealtimeSessionConfig) -> Option<String> {
    Some(c.voice.trim())
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .or_else(|| s.voice.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_map_to_ws_schemes() {
        assert_eq!(
            ws_base_url("wss://api.openai.com").unwrap(),
            "wss://api.openai.com"
        );
        assert_eq!(
            ws_base_url("https://api.openai.com/v1/").unwrap(),
            "wss://api.openai.com"
        );
        assert_eq!(
            ws_base_url("http://127.0.0.1:9/x").unwrap(),
            "ws://127.0.0.1:9/x"
        );
        for bad in ["ftp://x", "ws://", "api.openai.com", "ws://x/?a=1"] {
            assert!(ws_base_url(bad).is_err(), "{bad}");
        }
        let s = Settings::default();
        assert_eq!(
            s.url("gpt-realtime"),
            "wss://api.openai.com/v1/realtime?model=gpt-realtime"
        );
        assert_eq!(
            s.url("a b&c"),
            "wss://api.openai.com/v1/realtime?model=a%20b%26c"
        );
    }

    #[test]
    fn formats_and_transcoding() {
        let f = |e, r| AudioFormat {
            encoding: e,
            sample_rate: r,
            channels: 1,
        };
        use AudioEncoding::*;
        assert_eq!(
            wire_for(f(Linear16, 24_000), "in").unwrap(),
            (Wire::Pcm, Transcode::None)
        );
        assert_eq!(
            wire_for(f(Mulaw, 8_000), "in").unwrap(),
            (Wire::Pcmu, Transcode::None)
        );
        assert_eq!(
            wire_for(f(Alaw, 8_000), "in").unwrap(),
            (Wire::Pcma, Transcode::None)
        );
        assert_eq!(
            wire_for(f(Linear16, 8_000), "in").unwrap(),
            (Wire::Pcmu, Transcode::Pcm16Mulaw)
        );
        assert_eq!(
            wire_for(f(Alaw, 24_000), "in").unwrap(),
            (Wire::Pcm, Transcode::AlawPcm16)
        );
        assert!(wire_for(f(Linear16, 16_000), "in").is_err());
        assert!(wire_for(f(Opus, 24_000), "in").is_err());
    }

    #[test]
    fn turn_detection_modes() {
        assert_eq!(turn_detection(None).unwrap(), None);
        assert_eq!(
            turn_detection(Some(&json!({"mode":"manual"}))).unwrap(),
            Some(Value::Null)
        );
        assert_eq!(
            turn_detection(Some(
                &json!({"mode":"server_vad","threshold":0.6,"silence_duration_ms":300.0})
            ))
            .unwrap(),
            Some(json!({"type":"server_vad","threshold":0.6,"silence_duration_ms":300}))
        );
        assert_eq!(
            turn_detection(Some(&json!({"mode":"semantic","eagerness":"low"}))).unwrap(),
            Some(json!({"type":"semantic_vad","eagerness":"low"}))
        );
        assert!(turn_detection(Some(&json!({"mode":"psychic"}))).is_err());
        assert!(
            turn_detection(Some(&json!({"mode":"server_vad","create_response":"yes"}))).is_err()
        );
    }

    #[test]
    fn tools_are_flattened() {
        let t = json!({"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object"}}});
        assert_eq!(
            tool(&t).unwrap(),
            json!({"type":"function","name":"f","description":"d","parameters":{"type":"object"}})
        );
        assert_eq!(
            tool(&json!({"name":"g"})).unwrap(),
            json!({"type":"function","name":"g"})
        );
        assert!(tool(&json!({"type":"function","function":{}})).is_err());
        let mcp = json!({"type":"mcp","server_label":"x"});
        assert_eq!(tool(&mcp).unwrap(), mcp);
    }
}
