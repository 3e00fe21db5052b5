//! ElevenLabs wire messages: the multi-context WebSocket's client and server messages, the
//! REST error body, and the audio step after decoding.
//!
//! Message shapes, from `elevenlabs/elevenlabs-python` (54e5899) `src/elevenlabs/types/`:
//! - client: `initialize_connection_multi.py` (`{"text":" ","context_id","voice_settings",
//!   "generation_config"}`), `send_text_multi.py` (`{"text","context_id","flush"}`),
//!   `close_context.py` (`{"context_id","close_context":true}`; "if it has already been set to
//!   flush it will continue flushing") (`close_socket` is not used: a close frame ends the session);
//! - server: `audio_output_multi.py` (`{"audio": b64, "contextId", "alignment",
//!   "normalizedAlignment"}`) and `final_output_multi.py` (`{"isFinal": true, "contextId"}`).
//!   `websocket_tts_server_message_multi.py` spells the flag `is_final`, and live servers send
//!   `context_id` in snake case (livekit/agents commit dbdf14f, "ElevenLabs currently sends
//!   snake_case context IDs"), so both spellings of both are accepted. A final may carry the
//!   last audio. `{"type":"flush_done",…}` messages (same commit) are ignored.
//! - WebSocket errors: `{"message": "...", "error": "max_active_conversations", "code": 1008}`
//!   then a close (TTS_PROTOCOLS.md §2, livekit/agents-js#1985); the shape is UNCONFIRMED in
//!   vendor docs, so any message with an `error` field counts as one.
//! - Alignment (`alignment`, `normalizedAlignment`: `chars`, `charStartTimesMs`,
//!   `charDurationsMs`) is not part of the plugin contract yet: it is not parsed.

use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use waav_plugin_api::codec::{alaw_encode, mulaw_encode};
use waav_plugin_api::http;
use waav_plugin_api::{ErrorCategory, PluginError};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;

use super::settings::Transcode;

/// BOS of a context: a single space, with the context's settings (only accepted here).
pub fn init_context(
    context_id: &str,
    voice_settings: Option<&Value>,
    chunk_length_schedule: Option<&[u64]>,
) -> String {
    let mut m = json!({ "text": " ", "context_id": context_id });
    if let Some(vs) = voice_settings {
        m["voice_settings"] = vs.clone();
    }
    if let Some(s) = chunk_length_schedule {
        m["generation_config"] = json!({ "chunk_length_schedule": s });
    }
    m.to_string()
}

/// The request's text, flushed (text chunks should end with one space).
pub fn send_text(context_id: &str, text: &str) -> String {
    let mut t = text.trim_end().to_owned();
    t.push(' ');
    json!({ "text": t, "context_id": context_id, "flush": true }).to_string()
}

/// Ends a context: after a flush the server finishes it and sends the final; on cancel no
/// further audio is generated (what was already flushed may still arrive and is dropped).
pub fn close_context(context_id: &str) -> String {
    json!({ "context_id": context_id, "close_context": true }).to_string()
}

/// A server message of the multi-context socket; unknown fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct ServerMessage {
    #[serde(default)]
    audio: Option<Value>,
    #[serde(default, rename = "isFinal")]
    is_final_camel: Option<Value>,
    #[serde(default, rename = "is_final")]
    is_final_snake: Option<Value>,
    #[serde(default, rename = "contextId")]
    context_camel: Option<Value>,
    #[serde(default, rename = "context_id")]
    context_snake: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default, rename = "type")]
    kind: Option<Value>,
}

impl ServerMessage {
    /// Parses a text frame; `None` for anything that is not a JSON object.
    pub fn parse(text: &str) -> Option<Self> {
        match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => serde_json::from_value(v).ok(),
            _ => None,
        }
    }

    /// The context this message is about.
    pub fn context_id(&self) -> Option<&str> {
        self.context_camel
            .as_ref()
            .and_then(Value::as_str)
            .or_else(|| self.context_snake.as_ref().and_then(Value::as_str))
    }

    /// The base64 audio, when present and non-empty.
    pub fn audio_b64(&self) -> Option<&str> {
        self.audio
            .as_ref()
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether this is the context's last message.
    pub fn is_final(&self) -> bool {
        [&self.is_final_camel, &self.is_final_snake]
            .iter()
            .any(|v| matches!(v, Some(Value::Bool(true))))
    }

    /// A `flush_done` notice (ignored).
    pub fn is_flush_done(&self) -> bool {
        self.kind.as_ref().and_then(Value::as_str) == Some("flush_done")
    }

    /// Whether this is the notice the vendor sends before closing a socket that had no input
    /// for its `inactivity_timeout` (`{"error": "input_timeout_exceeded", …}`, then a close).
    pub fn is_idle_timeout(&self) -> bool {
        self.error.as_ref().and_then(Value::as_str) == Some("input_timeout_exceeded")
    }

    /// The error this message reports, if it is an error message.
    pub fn error(&self, redactor: &Redactor) -> Option<PluginError> {
        let code = match self.error.as_ref()? {
            Value::Null | Value::Bool(false) => return None,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let message = self
            .message
            .as_ref()
            .map(|m| {
                m.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| m.to_string())
            })
            .unwrap_or_default();
        let text = if message.is_empty() {
            code.clone()
        } else {
            format!("{code}: {message}")
        };
        let text = errors::excerpt(text.as_bytes(), errors::BODY_EXCERPT_LIMIT);
        Some(errors::make(
            status_category(&code, None).unwrap_or(ErrorCategory::Permanent),
            format!("elevenlabs: {text}"),
            None,
            redactor,
        ))
    }
}

/// Decodes a base64 audio chunk.
pub fn decode_audio(b64: &str) -> Result<Vec<u8>, PluginError> {
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| PluginError::Permanent(format!("elevenlabs: invalid base64 audio: {e}")))
}

/// Re-encodes vendor PCM16 to G.711 when the session asked for it at a rate the vendor only
/// offers as PCM. `carry` holds an odd byte between chunks.
#[derive(Debug, Default)]
pub struct Transcoder {
    mode: Option<Transcode>,
    carry: Option<u8>,
}

impl Transcoder {
    /// A transcoder for `mode`.
    pub fn new(mode: Transcode) -> Self {
        Self {
            mode: (mode != Transcode::None).then_some(mode),
            carry: None,
        }
    }

    /// The session's bytes for a vendor chunk.
    pub fn push(&mut self, data: Bytes) -> Bytes {
        let Some(mode) = self.mode else { return data };
        let mut pcm = Vec::with_capacity(data.len() + 1);
        pcm.extend(self.carry.take());
        pcm.extend_from_slice(&data);
        if pcm.len() % 2 == 1 {
            self.carry = pcm.pop();
        }
        let enc = match mode {
            Transcode::Alaw => alaw_encode,
            _ => mulaw_encode,
        };
        pcm.chunks_exact(2)
            .map(|b| enc(i16::from_le_bytes([b[0], b[1]])))
            .collect::<Vec<u8>>()
            .into()
    }
}

/// The REST error body: `{"detail": {"status", "message"}}` (400/401/404), or FastAPI's
/// `{"detail": [{"loc", "msg", "type"}]}` (422).
#[derive(Debug, Default, PartialEq)]
pub struct ApiError {
    /// `detail.status`, e.g. `invalid_api_key`, `voice_not_found`.
    pub status: Option<String>,
    /// `detail.message` or the joined `msg`s.
    pub message: Option<String>,
    /// Whether a 422 validation error is about the `text` field.
    pub about_text: bool,
}

impl ApiError {
    /// Parses a body; unknown shapes give an empty value.
    pub fn parse(body: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        match v.get("detail") {
            Some(Value::Object(d)) => Self {
                status: d.get("status").and_then(Value::as_str).map(str::to_owned),
                message: d.get("message").and_then(Value::as_str).map(str::to_owned),
                about_text: false,
            },
            Some(Value::Array(items)) => {
                let msgs: Vec<String> = items
                    .iter()
                    .filter_map(|i| {
                        let loc = i.get("loc").map(Value::to_string).unwrap_or_default();
                        let msg = i.get("msg").and_then(Value::as_str)?;
                        Some(format!("{loc}: {msg}"))
                    })
                    .collect();
                let about_text = items.iter().any(|i| {
                    i.get("loc")
                        .and_then(Value::as_array)
                        .is_some_and(|l| l.iter().any(|p| p.as_str() == Some("text")))
                });
                Self {
                    status: Some("validation_error".into()),
                    message: (!msgs.is_empty()).then(|| msgs.join("; ")),
                    about_text,
                }
            }
            Some(Value::String(s)) => Self {
                status: None,
                message: Some(s.clone()),
                about_text: false,
            },
            _ => Self::default(),
        }
    }
}

/// The category an ElevenLabs `status`/`error` code implies, if it refines the HTTP status.
fn status_category(code: &str, http: Option<u16>) -> Option<ErrorCategory> {
    use ErrorCategory as C;
    Some(match code {
        "invalid_api_key"
        | "unauthorized"
        | "quota_exceeded"
        | "payment_required"
        | "missing_permissions"
        | "needs_authorization" => C::Auth,
        "too_many_concurrent_requests"
        | "system_busy"
        | "rate_limit_exceeded"
        | "max_active_conversations" => C::RateLimited,
        "voice_not_found"
        | "voice_does_not_exist"
        | "model_not_found"
        | "invalid_model_id"
        | "output_format_not_allowed"
        | "invalid_output_format"
        | "invalid_voice_settings" => C::Config,
        "max_character_limit_exceeded" | "text_too_long" | "invalid_text" => C::Permanent,
        "input_timeout_exceeded" => C::Timeout,
        _ => match http {
            // 400 without a known reason: a parameter we sent (voice, model, format) is wrong.
            Some(400) => C::Config,
            _ => return None,
        },
    })
}

/// The error for a non-success REST response: the kit's status mapping (and `retry-after`),
/// refined by the vendor's `detail.status`, with the vendor's message.
pub fn rest_error(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    redactor: &Redactor,
) -> PluginError {
    let base = errors::from_http(status, headers, body, "elevenlabs", redactor);
    let parsed = ApiError::parse(body);
    let mut category = base.category();
    if let Some(c) = parsed
        .status
        .as_deref()
        .and_then(|s| status_category(s, Some(status.as_u16())))
    {
        // A 401/403 stays Auth and a 429 stays RateLimited whatever the body says.
        if !matches!(category, ErrorCategory::Auth | ErrorCategory::RateLimited) {
            category = c;
        }
    } else if status.as_u16() == 400 {
        category = ErrorCategory::Config;
    }
    if parsed.status.as_deref() == Some("validation_error") {
        category = if parsed.about_text {
            ErrorCategory::Permanent
        } else {
            ErrorCategory::Config
        };
    }
    let retry_after = match &base {
        PluginError::RateLimited { retry_after, .. } => *retry_after,
        _ => errors::retry_after(headers),
    };
    let trace = headers
        .get("x-trace-id")
        .or_else(|| headers.get("request-id"))
        .and_then(|v| v.to_str().ok());
    let mut msg = format!(
        "elevenlabs: HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    match (&parsed.status, &parsed.message) {
        (Some(s), Some(m)) => msg.push_str(&format!(": {s}: {m}")),
        (None, Some(m)) => msg.push_str(&format!(": {m}")),
        (Some(s), None) => msg.push_str(&format!(": {s}")),
        (None, None) => {
            let ex = errors::excerpt(body, errors::BODY_EXCERPT_LIMIT);
            if !ex.is_empty() {
                msg.push_str(&format!(": {ex}"));
            }
        }
    }
    if let Some(t) = trace {
        msg.push_str(&format!(" (trace {t})"));
    }
    let msg = errors::excerpt(msg.as_bytes(), errors::BODY_EXCERPT_LIMIT + 100);
    let retry_after = if category == ErrorCategory::RateLimited {
        retry_after
    } else {
        None
    };
    errors::make(category, msg, retry_after, redactor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_messages_in_both_spellings() {
        let m =
            ServerMessage::parse(r#"{"audio":"AAE=","isFinal":null,"contextId":"r1"}"#).unwrap();
        assert_eq!(
            (m.context_id(), m.audio_b64(), m.is_final()),
            (Some("r1"), Some("AAE="), false)
        );
        let m = ServerMessage::parse(r#"{"is_final":true,"context_id":"r2"}"#).unwrap();
        assert_eq!(
            (m.context_id(), m.audio_b64(), m.is_final()),
            (Some("r2"), None, true)
        );
        assert!(ServerMessage::parse("[1]").is_none());
        assert!(ServerMessage::parse("nope").is_none());
        let m = ServerMessage::parse(r#"{"audio":5,"isFinal":"yes","contextId":7}"#).unwrap();
        assert_eq!(
            (m.context_id(), m.audio_b64(), m.is_final()),
            (None, None, false)
        );
        let e = ServerMessage::parse(
            r#"{"message":"Maximum simultaneous contexts","error":"max_active_conversations","code":1008}"#,
        )
        .unwrap()
        .error(&Redactor::new())
        .unwrap();
        assert_eq!(e.category(), ErrorCategory::RateLimited);
        let idle = ServerMessage::parse(
            r#"{"message":"Have not received a new text input within the timeout of 20s.","error":"input_timeout_exceeded","code":1008}"#,
        )
        .unwrap();
        assert!(idle.is_idle_timeout());
        let not_idle = ServerMessage::parse(r#"{"error":"max_active_conversations"}"#).unwrap();
        assert!(!not_idle.is_idle_timeout());
    }

    #[test]
    fn rest_errors_are_refined() {
        let r = Redactor::new();
        let h = http::HeaderMap::new();
        let e = rest_error(
            http::StatusCode::NOT_FOUND,
            &h,
            br#"{"detail":{"status":"voice_not_found","message":"A voice with the voice_id foo was not found."}}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Config);
        assert!(e.to_string().contains("voice_not_found: A voice"), "{e}");
        let e = rest_error(
            http::StatusCode::BAD_REQUEST,
            &h,
            br#"{"detail":{"status":"max_character_limit_exceeded","message":"too long"}}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Permanent);
        let e = rest_error(
            http::StatusCode::UNPROCESSABLE_ENTITY,
            &h,
            br#"{"detail":[{"loc":["body","text"],"msg":"field required","type":"value_error.missing"}]}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Permanent);
        let e = rest_error(http::StatusCode::BAD_REQUEST, &h, b"<html>", &r);
        assert_eq!(e.category(), ErrorCategory::Config);
    }

    #[test]
    fn transcoder_keeps_odd_bytes() {
        let mut t = Transcoder::new(Transcode::Mulaw);
        let a = t.push(Bytes::from_static(&[0, 0, 0]));
        let b = t.push(Bytes::from_static(&[0]));
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_eq!(a[0], mulaw_encode(0));
    }
}
