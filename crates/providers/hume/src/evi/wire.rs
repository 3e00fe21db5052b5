//! EVI chat messages both ways, as JSON, and the WAV unwrapping of `audio_output`.
//!
//! Client messages (`PublishEvent`, HumeAI/hume-python-sdk
//! `src/hume/empathic_voice/chat/types/publish_event.py`): `session_settings`
//! (`types/session_settings.py`, `audio_configuration.py`, `tool.py`, `builtin_tool_config.py`,
//! `context.py`), `audio_input` (`audio_input.py`), `user_input` (`user_input.py`),
//! `tool_response` (`tool_response_message.py`), `pause_assistant_message` /
//! `resume_assistant_message` (`pause_assistant_message.py`, `resume_assistant_message.py`).
//!
//! Server messages (`SubscribeEvent`, `types/subscribe_event.py`) are read from a
//! [`serde_json::Value`] field by field, so a message with a missing or mistyped field is
//! skipped rather than failing the session.

use super::settings::Settings;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use waav_plugin_api::RealtimeSessionConfig;

/// The `audio` block (`audio_configuration.py`: `encoding` `linear16`, `sample_rate` and
/// `channels` required): the host hands the plugin mono 16-bit PCM at `sample_rate`.
pub fn audio_block(sample_rate: u32) -> Value {
    json!({"encoding": "linear16", "sample_rate": sample_rate, "channels": 1})
}

/// The `/realtime` tools mapped onto EVI's: function tools (`{type: "function", function:
/// {name, description?, parameters?}}` or the flat `{name, description?, parameters?}`) become
/// `tool.py` `{type: "function", name, description?, parameters: <JSON schema as a string>}`;
/// `{type: "builtin", name}` becomes a `builtin_tool_config.py` `{name, fallback_content?}`.
pub fn tools(config_tools: &[Value]) -> (Vec<Value>, Vec<Value>) {
    let mut functions = Vec::new();
    let mut builtins = Vec::new();
    for t in config_tools {
        let f = t.get("function").filter(|f| f.is_object()).unwrap_or(t);
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            continue; // the gateway validated names; nothing to send without one
        };
        if t.get("type").and_then(Value::as_str) == Some("builtin") {
            let mut b = json!({"name": name});
            if let Some(fc) = f.get("fallback_content").and_then(Value::as_str) {
                b["fallback_content"] = fc.into();
            }
            builtins.push(b);
            continue;
        }
        // `parameters` is "a stringified JSON schema" (tool.py) and required.
        let parameters = match f.get("parameters") {
            Some(Value::String(s)) => s.clone(),
            Some(v) if v.is_object() => v.to_string(),
            _ => r#"{"type":"object","properties":{}}"#.to_owned(),
        };
        let mut tool = json!({"type": "function", "name": name, "parameters": parameters});
        for key in ["description", "fallback_content"] {
            if let Some(d) = f.get(key).and_then(Value::as_str) {
                tool[key] = d.into();
            }
        }
        functions.push(tool);
    }
    (functions, builtins)
}

/// A `session_settings` message for `config` (the whole session state: EVI applies each
/// message on top of the chat's configuration). `send_tools` forces a `tools` list even when
/// empty (to clear tools sent before).
pub fn session_settings(
    s: &Settings,
    config: &RealtimeSessionConfig,
    send_tools: bool,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), "session_settings".into());
    m.insert("audio".into(), audio_block(config.input_format.sample_rate));
    // session_settings.py `system_prompt`: overrides the configuration's prompt.
    if let Some(p) = config
        .instructions
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .or(s.system_prompt.as_deref())
    {
        m.insert("system_prompt".into(), p.into());
    }
    // session_settings.py `voice_id`: "change the voice during an active chat".
    let voice = Some(config.voice.trim())
        .filter(|v| !v.is_empty())
        .or(s.voice_id.as_deref());
    if let Some(v) = voice {
        m.insert("voice_id".into(), v.into());
    }
    let (functions, mut builtins) = tools(&config.tools);
    if !functions.is_empty() || send_tools {
        m.insert("tools".into(), Value::Array(functions));
    }
    for name in &s.builtin_tools {
        if !builtins.iter().any(|b| b["name"] == name.as_str()) {
            builtins.push(json!({"name": name}));
        }
    }
    if !builtins.is_empty() {
        m.insert("builtin_tools".into(), Value::Array(builtins));
    }
    if let Some(v) = &s.variables {
        m.insert("variables".into(), Value::Object(v.clone()));
    }
    if let Some(c) = &s.context {
        m.insert("context".into(), c.clone());
    }
    if let Some(k) = &s.language_model_api_key {
        m.insert("language_model_api_key".into(), k.expose().into());
    }
    m
}

/// Whether `session_settings` carries function tools for `config`.
pub fn has_function_tools(config: &RealtimeSessionConfig) -> bool {
    !tools(&config.tools).0.is_empty()
}

/// `{"type":"audio_input","data":<b64>}`.
pub fn audio_input(pcm: &[u8]) -> String {
    let data = base64::engine::general_purpose::STANDARD.encode(pcm);
    json!({"type": "audio_input", "data": data}).to_string()
}

/// `{"type":"user_input","text":…}`: text as if the user had said it.
pub fn user_input(text: &str) -> String {
    json!({"type": "user_input", "text": text}).to_string()
}

/// `{"type":"tool_response","tool_call_id","content","tool_name"?,"tool_type":"function"}`.
pub fn tool_response(call_id: &str, content: &str, tool_name: Option<&str>) -> String {
    let mut m = json!({"type": "tool_response", "tool_call_id": call_id, "content": content,
        "tool_type": "function"});
    if let Some(n) = tool_name {
        m["tool_name"] = n.into();
    }
    m.to_string()
}

/// `{"type":"pause_assistant_message"}`.
pub fn pause() -> String {
    json!({"type": "pause_assistant_message"}).to_string()
}

/// `{"type":"resume_assistant_message"}`.
pub fn resume() -> String {
    json!({"type": "resume_assistant_message"}).to_string()
}

/// A server message, as far as the plugin reads it.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// `chat_metadata` (`chat_metadata.py`): `chat_id`, `chat_group_id`, `request_id`?.
    ChatMetadata {
        /// `chat_id`.
        chat_id: String,
        /// `chat_group_id` (pass as `resumed_chat_group_id` to continue the conversation).
        chat_group_id: String,
    },
    /// `user_message` (`user_message.py`): `message.content`, `interim`, `from_text`,
    /// `time {begin, end}` (ms). `models.prosody` is ignored.
    UserMessage {
        /// The transcript.
        text: String,
        /// An unfinalized transcript (only with `verbose_transcription`).
        interim: bool,
        /// It came from our `user_input`.
        from_text: bool,
        /// `time.begin`, ms.
        begin: Option<u64>,
        /// `time.end`, ms.
        end: Option<u64>,
    },
    /// `assistant_message` (`assistant_message.py`): `id`?, `message.content`, `from_text`.
    AssistantMessage {
        /// `id`.
        id: Option<String>,
        /// The text of this piece of the response.
        text: String,
    },
    /// `audio_output` (`audio_output.py`): `id`, `index`, `data` (b64 WAV, 48 kHz).
    AudioOutput {
        /// `id`.
        id: Option<String>,
        /// The decoded bytes (a WAV file per chunk).
        data: Vec<u8>,
    },
    /// `assistant_end` (`assistant_end.py`): the response is complete.
    AssistantEnd,
    /// `user_interruption` (`user_interruption.py`): the user talked over the response.
    UserInterruption,
    /// `tool_call` (`tool_call_message.py`): `name`, `parameters` (JSON text),
    /// `tool_call_id`, `response_required`.
    ToolCall {
        /// `tool_call_id`.
        call_id: String,
        /// `name`.
        name: String,
        /// `parameters`.
        arguments: String,
    },
    /// `error` (`web_socket_error.py`): `code`, `slug`, `message`.
    Error {
        /// `code` (`E0100`, `I0100`, …).
        code: String,
        /// `slug`.
        slug: String,
        /// `message`.
        message: String,
    },
    /// A known message the plugin has no use for (`assistant_prosody`, echoes of
    /// `tool_response` / `tool_error` / `session_settings`).
    Ignored(String),
    /// Not a message the plugin understands (bad JSON, an unknown `type`, missing fields).
    Malformed(String),
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// Reads one text frame.
pub fn parse(text: &str) -> Incoming {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Incoming::Malformed("not JSON".into());
    };
    let Some(ty) = v.get("type").and_then(Value::as_str) else {
        return Incoming::Malformed("no type".into());
    };
    let missing = |what: &str| Incoming::Malformed(format!("{ty} without {what}"));
    match ty {
        "chat_metadata" => match (str_at(&v, "/chat_id"), str_at(&v, "/chat_group_id")) {
            (Some(c), g) => Incoming::ChatMetadata {
                chat_id: c.to_owned(),
                chat_group_id: g.unwrap_or_default().to_owned(),
            },
            _ => missing("chat_id"),
        },
        "user_message" => {
            let Some(text) = str_at(&v, "/message/content") else {
                return missing("message.content");
            };
            Incoming::UserMessage {
                text: text.to_owned(),
                interim: v.get("interim").and_then(Value::as_bool).unwrap_or(false),
                from_text: v.get("from_text").and_then(Value::as_bool).unwrap_or(false),
                begin: v.pointer("/time/begin").and_then(Value::as_u64),
                end: v.pointer("/time/end").and_then(Value::as_u64),
            }
        }
        "assistant_message" => match str_at(&v, "/message/content") {
            Some(t) => Incoming::AssistantMessage {
                id: str_at(&v, "/id").map(str::to_owned),
                text: t.to_owned(),
            },
            None => missing("message.content"),
        },
        "audio_output" => {
            let Some(b64) = str_at(&v, "/data") else {
                return missing("data");
            };
            match base64::engine::general_purpose::STANDARD.decode(b64) {
                Ok(data) => Incoming::AudioOutput {
                    id: str_at(&v, "/id").map(str::to_owned),
                    data,
                },
                Err(_) => Incoming::Malformed("audio_output data is not base64".into()),
            }
        }
        "assistant_end" => Incoming::AssistantEnd,
        "user_interruption" => Incoming::UserInterruption,
        "tool_call" => match (str_at(&v, "/tool_call_id"), str_at(&v, "/name")) {
            (Some(id), Some(name)) => Incoming::ToolCall {
                call_id: id.to_owned(),
                name: name.to_owned(),
                arguments: match v.get("parameters") {
                    Some(Value::String(s)) => s.clone(),
                    Some(p) if !p.is_null() => p.to_string(),
                    _ => "{}".to_owned(),
                },
            },
            _ => missing("tool_call_id or name"),
        },
        "error" => {
            let (code, message) = (str_at(&v, "/code"), str_at(&v, "/message"));
            if code.is_none() && message.is_none() {
                return missing("code and message");
            }
            Incoming::Error {
                code: code.unwrap_or_default().to_owned(),
                slug: str_at(&v, "/slug").unwrap_or_default().to_owned(),
                message: message.unwrap_or_default().to_owned(),
            }
        }
        "assistant_prosody" | "tool_response" | "tool_error" | "session_settings" => {
            Incoming::Ignored(ty.to_owned())
        }
        other => Incoming::Malformed(format!("unknown type {other:?}")),
    }
}

/// What one `audio_output` chunk holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavChunk<'a> {
    /// The samples (the `data` chunk, or the whole buffer when it has no RIFF header).
    pub pcm: &'a [u8],
    /// `fmt ` sample rate, when there was a header.
    pub sample_rate: Option<u32>,
    /// `fmt ` channels.
    pub channels: Option<u16>,
    /// `fmt ` bits per sample.
    pub bits: Option<u16>,
    /// `fmt ` format tag (1 PCM, 0xFFFE extensible).
    pub format_tag: Option<u16>,
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Unwraps one `audio_output` chunk. `audio_output.py` says "The returned audio format is WAV";
/// the SDK's player (`chat/audio/chat_client.py`) notes that every chunk is a `.wav` file with
/// its own 44-byte header and skips it on all but the first. Here the RIFF chunks are walked
/// (`fmt ` read, `LIST` and others skipped) so a longer header is handled too; a `data` size
/// of 0 or one beyond the buffer (streamed WAVs) means "to the end". A buffer without a RIFF
/// header is taken as raw PCM.
pub fn unwrap_wav(b: &[u8]) -> WavChunk<'_> {
    let raw = WavChunk {
        pcm: b,
        sample_rate: None,
        channels: None,
        bits: None,
        format_tag: None,
    };
    if !b.starts_with(b"RIFF") {
        return raw;
    }
    if b.len() < 12 || &b[8..12] != b"WAVE" {
        // A RIFF header cut short: no samples in it.
        return WavChunk { pcm: &[], ..raw };
    }
    let mut out = WavChunk { pcm: &[], ..raw };
    let mut at = 12usize;
    while at + 8 <= b.len() {
        let id = &b[at..at + 4];
        let size = le32(b, at + 4).unwrap_or(0) as usize;
        let body = at + 8;
        if id == b"data" {
            let end = if size == 0 || body.saturating_add(size) > b.len() {
                b.len()
            } else {
                body + size
            };
            out.pcm = &b[body..end];
            return out;
        }
        if id == b"fmt " {
            out.format_tag = le16(b, body);
            out.channels = le16(b, body + 2);
            out.sample_rate = le32(b, body + 4);
            out.bits = le16(b, body + 14);
        }
        // Chunks are padded to an even size.
        at = body.saturating_add(size).saturating_add(size & 1);
    }
    out
}

/// Interleaved 16-bit stereo (or more channels) mixed down to mono.
pub fn downmix(pcm: &[u8], channels: u16) -> Vec<u8> {
    let ch = usize::from(channels.max(1));
    let frame = ch * 2;
    let mut out = Vec::with_capacity(pcm.len() / ch);
    for f in pcm.chunks_exact(frame) {
        let sum: i32 = f
            .chunks_exact(2)
            .map(|s| i32::from(i16::from_le_bytes([s[0], s[1]])))
            .sum();
        let m = (sum / ch as i32) as i16;
        out.extend_from_slice(&m.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use waav_plugin_api::codec::wav_header;

    #[test]
    fn wav_headers_are_stripped() {
        let mut wav = wav_header(48_000, 1, 4).to_vec();
        wav.extend_from_slice(&[1, 2, 3, 4]);
        let c = unwrap_wav(&wav);
        assert_eq!(c.pcm, [1, 2, 3, 4]);
        assert_eq!(
            (c.sample_rate, c.channels, c.bits, c.format_tag),
            (Some(48_000), Some(1), Some(16), Some(1))
        );
        // A LIST chunk before data, an odd-sized chunk with its pad byte, a bogus data size.
        let mut long = wav_header(48_000, 1, 0)[..36].to_vec();
        long.extend_from_slice(b"LIST\x03\x00\x00\x00abc\x00");
        long.extend_from_slice(b"data\xff\xff\xff\xff");
        long.extend_from_slice(&[9, 9]);
        assert_eq!(unwrap_wav(&long).pcm, [9, 9]);
        // No header: raw PCM.
        assert_eq!(unwrap_wav(&[5, 6]).pcm, [5, 6]);
        // A header and nothing else, or a header cut short.
        assert!(unwrap_wav(&wav[..20]).pcm.is_empty());
        assert!(unwrap_wav(b"RIFF").pcm.is_empty());
    }

    #[test]
    fn stereo_is_mixed_down() {
        let s: Vec<u8> = [100i16, 300, -50, -150]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        assert_eq!(
            downmix(&s, 2),
            [200i16.to_le_bytes(), (-100i16).to_le_bytes()].concat()
        );
    }

    #[test]
    fn server_messages_parse_and_garbage_does_not() {
        assert_eq!(
            parse(r#"{"type":"chat_metadata","chat_id":"c","chat_group_id":"g"}"#),
            Incoming::ChatMetadata {
                chat_id: "c".into(),
                chat_group_id: "g".into()
            }
        );
        assert_eq!(
            parse(r#"{"type":"tool_call","name":"f","parameters":"{\"a\":1}","tool_call_id":"t"}"#),
            Incoming::ToolCall {
                call_id: "t".into(),
                name: "f".into(),
                arguments: r#"{"a":1}"#.into()
            }
        );
        for g in [
            "{",
            "[]",
            "null",
            r#"{"type":7}"#,
            r#"{"type":"user_message"}"#,
            r#"{"type":"user_message","message":{"content":5}}"#,
            r#"{"type":"audio_output","data":"%%%"}"#,
            r#"{"type":"tool_call","name":"x"}"#,
            r#"{"type":"mystery"}"#,
            r#"{"type":"error"}"#,
        ] {
            assert!(matches!(parse(g), Incoming::Malformed(_)), "{g}");
        }
    }

    #[test]
    fn tools_map_both_shapes() {
        let (f, b) = tools(&[
            json!({"type":"function","function":{"name":"w","description":"d","parameters":{"type":"object"}}}),
            json!({"type":"function","name":"flat"}),
            json!({"type":"builtin","name":"web_search"}),
        ]);
        assert_eq!(
            f[0],
            json!({"type":"function","name":"w","description":"d","parameters":"{\"type\":\"object\"}"})
        );
        assert_eq!(f[1]["parameters"], r#"{"type":"object","properties":{}}"#);
        assert_eq!(b, [json!({"name":"web_search"})]);
    }
}
