//! Server events, parsed leniently (unknown fields ignored, a malformed event is `None` and is
//! skipped, never a panic), and the client events this plugin sends.
//!
//! Server event shapes (openai-python `src/openai/types/realtime/`, GA names; the beta names
//! of `types/beta/realtime/` are mapped onto them as TTS_PROTOCOLS.md §12 advises):
//! - `session_created_event.py`, `session_updated_event.py`: `{session: {id, model, …}}`
//! - `input_audio_buffer_speech_started_event.py` (`audio_start_ms`, `item_id`),
//!   `input_audio_buffer_speech_stopped_event.py` (`audio_end_ms`, `item_id`)
//! - `conversation_item_input_audio_transcription_delta_event.py` (`item_id`, `delta`),
//!   `…_completed_event.py` (`item_id`, `transcript`), `…_failed_event.py` (`error`)
//! - `response_created_event.py`, `response_done_event.py` (`response: {id, status,
//!   status_details: {reason, error: {type, code}}}`, `realtime_response.py`,
//!   `realtime_response_status.py`)
//! - `response_audio_delta_event.py` (`response.output_audio.delta`; beta
//!   `response.audio.delta`): `response_id`, `item_id`, `content_index`, `delta` (base64)
//! - `response_audio_transcript_delta_event.py` / `…_done_event.py`
//!   (`response.output_audio_transcript.{delta,done}`; beta `response.audio_transcript.*`):
//!   `delta` / `transcript`; `response_text_delta_event.py` / `…_done_event.py`
//!   (`response.output_text.{delta,done}`; beta `response.text.*`): `delta` / `text`
//! - `response_function_call_arguments_done_event.py`: `call_id`, `name`, `arguments`,
//!   `item_id` (this SDK has `name`; older ones did not, so the item's name from
//!   `response.output_item.added/done` is the fallback)
//! - `response_output_item_added_event.py` / `response_output_item_done_event.py`: `item`
//!   (`realtime_conversation_item_function_call.py`: `type: function_call`, `id`, `call_id`,
//!   `name`, `arguments`, `status`)
//! - `realtime_error_event.py` + `realtime_error.py`: `{error: {type, code, message, param,
//!   event_id}}`

use serde_json::{json, Value};

/// A server event this plugin acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum Server {
    /// `session.created`.
    SessionCreated {
        /// `session.id`.
        id: String,
        /// `session.model`.
        model: Option<String>,
    },
    /// `session.updated`.
    SessionUpdated,
    /// `input_audio_buffer.speech_started`.
    SpeechStarted {
        /// `audio_start_ms`.
        ms: u64,
    },
    /// `input_audio_buffer.speech_stopped`.
    SpeechStopped {
        /// `audio_end_ms`.
        ms: u64,
    },
    /// User transcription text.
    UserTranscript {
        /// The text (`delta` or `transcript`).
        text: String,
        /// `.completed` rather than `.delta`.
        is_final: bool,
    },
    /// `conversation.item.input_audio_transcription.failed`.
    TranscriptionFailed {
        /// `error.message`.
        message: String,
    },
    /// `response.created`.
    ResponseCreated {
        /// `response.id`.
        id: String,
    },
    /// `response.done`.
    ResponseDone {
        /// `response.id`.
        id: String,
        /// `response.status`.
        status: String,
        /// `status_details.reason`.
        reason: Option<String>,
        /// `status_details.error` as `type`/`code`, when failed.
        error: Option<(String, Option<String>)>,
    },
    /// Output audio.
    Audio {
        /// `item_id`.
        item_id: String,
        /// The base64 `delta`.
        delta: String,
    },
    /// Assistant transcript or text.
    AssistantText {
        /// The text.
        text: String,
        /// `.done` rather than `.delta`.
        is_final: bool,
    },
    /// `response.function_call_arguments.done`.
    ArgumentsDone {
        /// `item_id`.
        item_id: String,
        /// `call_id`.
        call_id: String,
        /// `name`, when the event has it.
        name: Option<String>,
        /// `arguments`.
        arguments: String,
    },
    /// `response.output_item.added` / `.done` with a `function_call` item.
    FunctionItem {
        /// `.done` rather than `.added`.
        done: bool,
        /// `item.id`.
        item_id: String,
        /// `item.call_id`.
        call_id: Option<String>,
        /// `item.name`.
        name: Option<String>,
        /// `item.arguments`.
        arguments: Option<String>,
        /// `item.status`.
        status: Option<String>,
    },
    /// `error`.
    Error(VendorError),
    /// Anything else (known to be harmless, or unknown): ignored.
    Other(String),
}

/// The `error` object of an `error` event.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VendorError {
    /// `type` (`invalid_request_error`, `server_error`, …).
    pub kind: String,
    /// `code`.
    pub code: Option<String>,
    /// `message`.
    pub message: String,
    /// `param`.
    pub param: Option<String>,
    /// `event_id` of the client event that failed.
    pub event_id: Option<String>,
}

fn s(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_owned)
}

/// The object at `key` (a string or a number there makes the event malformed).
fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|o| o.is_object())
}

fn ms(v: &Value, key: &str) -> Option<u64> {
    let n = v.get(key)?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// Parses one text frame; `None` when it is not a JSON object with a `type`, or when an event
/// this plugin acts on lacks a field it needs.
pub fn parse(text: &str) -> Option<Server> {
    let v: Value = serde_json::from_str(text).ok()?;
    let ty = v.get("type")?.as_str()?;
    Some(match ty {
        "session.created" => {
            let sess = obj(&v, "session")?;
            Server::SessionCreated {
                id: s(sess, "id").unwrap_or_default(),
                model: s(sess, "model"),
            }
        }
        "session.updated" => Server::SessionUpdated,
        "input_audio_buffer.speech_started" => Server::SpeechStarted {
            ms: ms(&v, "audio_start_ms")?,
        },
        "input_audio_buffer.speech_stopped" => Server::SpeechStopped {
            ms: ms(&v, "audio_end_ms")?,
        },
        "conversation.item.input_audio_transcription.delta" => Server::UserTranscript {
            text: s(&v, "delta")?,
            is_final: false,
        },
        "conversation.item.input_audio_transcription.completed" => Server::UserTranscript {
            text: s(&v, "transcript")?,
            is_final: true,
        },
        "conversation.item.input_audio_transcription.failed" => Server::TranscriptionFailed {
            message: v
                .get("error")
                .and_then(|e| s(e, "message"))
                .unwrap_or_else(|| "input transcription failed".into()),
        },
        "response.created" => Server::ResponseCreated {
            id: s(obj(&v, "response")?, "id").unwrap_or_default(),
        },
        "response.done" => {
            let r = obj(&v, "response")?;
            let details = r.get("status_details");
            Server::ResponseDone {
                id: s(r, "id").unwrap_or_default(),
                status: s(r, "status").unwrap_or_default(),
                reason: details.and_then(|d| s(d, "reason")),
                error: details
                    .and_then(|d| d.get("error"))
                    .filter(|e| e.is_object())
                    .map(|e| (s(e, "type").unwrap_or_default(), s(e, "code"))),
            }
        }
        "response.output_audio.delta" | "response.audio.delta" => Server::Audio {
            item_id: s(&v, "item_id").unwrap_or_default(),
            delta: s(&v, "delta")?,
        },
        "response.output_audio_transcript.delta"
        | "response.audio_transcript.delta"
        | "response.output_text.delta"
        | "response.text.delta" => Server::AssistantText {
            text: s(&v, "delta")?,
            is_final: false,
        },
        "response.output_audio_transcript.done" | "response.audio_transcript.done" => {
            Server::AssistantText {
                text: s(&v, "transcript")?,
                is_final: true,
            }
        }
        "response.output_text.done" | "response.text.done" => Server::AssistantText {
            text: s(&v, "text")?,
            is_final: true,
        },
        "response.function_call_arguments.done" => Server::ArgumentsDone {
            item_id: s(&v, "item_id").unwrap_or_default(),
            call_id: s(&v, "call_id")?,
            name: s(&v, "name").filter(|n| !n.is_empty()),
            arguments: s(&v, "arguments").unwrap_or_default(),
        },
        "response.output_item.added" | "response.output_item.done" => {
            let item = obj(&v, "item")?;
            if item.get("type").and_then(Value::as_str) != Some("function_call") {
                return Some(Server::Other(ty.to_owned()));
            }
            Server::FunctionItem {
                done: ty.ends_with(".done"),
                item_id: s(item, "id").unwrap_or_default(),
                call_id: s(item, "call_id"),
                name: s(item, "name").filter(|n| !n.is_empty()),
                arguments: s(item, "arguments"),
                status: s(item, "status"),
            }
        }
        "error" => {
            let e = obj(&v, "error")?;
            Server::Error(VendorError {
                kind: s(e, "type").unwrap_or_default(),
                code: s(e, "code"),
                message: s(e, "message").unwrap_or_default(),
                param: s(e, "param"),
                event_id: s(e, "event_id"),
            })
        }
        other => Server::Other(other.to_owned()),
    })
}

/// `session.update` (`session_update_event.py`).
pub fn session_update(event_id: &str, session: Value) -> String {
    json!({"type": "session.update", "event_id": event_id, "session": session}).to_string()
}

/// `input_audio_buffer.append` (`input_audio_buffer_append_event.py`: base64 `audio`).
pub fn append(event_id: &str, audio_b64: &str) -> String {
    json!({"type": "input_audio_buffer.append", "event_id": event_id, "audio": audio_b64})
        .to_string()
}

/// A body-less client event: `input_audio_buffer.commit`, `input_audio_buffer.clear`
/// (`input_audio_buffer_{commit,clear}_event.py`).
pub fn simple(event_id: &str, ty: &str) -> String {
    json!({"type": ty, "event_id": event_id}).to_string()
}

/// `conversation.item.create` with a user text message
/// (`conversation_item_create_event.py`, `realtime_conversation_item_user_message.py`).
pub fn user_text(event_id: &str, text: &str) -> String {
    json!({
        "type": "conversation.item.create",
        "event_id": event_id,
        "item": {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": text}],
        },
    })
    .to_string()
}

/// `conversation.item.create` with a function result
/// (`realtime_conversation_item_function_call_output.py`: `call_id`, `output`).
pub fn function_output(event_id: &str, call_id: &str, output: &str) -> String {
    json!({
        "type": "conversation.item.create",
        "event_id": event_id,
        "item": {"type": "function_call_output", "call_id": call_id, "output": output},
    })
    .to_string()
}

/// `response.create` (`response_create_event.py`; the session's settings apply).
pub fn response_create(event_id: &str) -> String {
    simple(event_id, "response.create")
}

/// `response.cancel` (`response_cancel_event.py`; `response_id` optional).
pub fn response_cancel(event_id: &str, response_id: Option<&str>) -> String {
    let mut v = json!({"type": "response.cancel", "event_id": event_id});
    if let Some(id) = response_id.filter(|id| !id.is_empty()) {
        v["response_id"] = Value::String(id.to_owned());
    }
    v.to_string()
}

/// `conversation.item.truncate` (`conversation_item_truncate_event.py`: `item_id`,
/// `content_index` 0, `audio_end_ms`).
pub fn truncate(event_id: &str, item_id: &str, audio_end_ms: u64) -> String {
    json!({
        "type": "conversation.item.truncate",
        "event_id": event_id,
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": audio_end_ms,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ga_and_beta_names() {
        let a = r#"{"type":"response.output_audio.delta","event_id":"e","response_id":"r","item_id":"i","output_index":0,"content_index":0,"delta":"AAA="}"#;
        assert_eq!(
            parse(a),
            Some(Server::Audio {
                item_id: "i".into(),
                delta: "AAA=".into()
            })
        );
        let b = r#"{"type":"response.audio.delta","item_id":"i","delta":"AAA="}"#;
        assert_eq!(parse(a), parse(b));
        let t = r#"{"type":"response.audio_transcript.done","transcript":"hi"}"#;
        assert_eq!(
            parse(t),
            Some(Server::AssistantText {
                text: "hi".into(),
                is_final: true
            })
        );
    }

    #[test]
    fn malformed_events_are_none() {
        for bad in [
            "",
            "{",
            "[]",
            "42",
            r#"{"type":5}"#,
            r#"{"no":"type"}"#,
            r#"{"type":"response.output_audio.delta","delta":7}"#,
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":"x"}"#,
            r#"{"type":"response.done"}"#,
            r#"{"type":"error","error":"boom"}"#,
            r#"{"type":"response.done","response":"nope"}"#,
            r#"{"type":"response.created","response":7}"#,
            r#"{"type":"session.created","session":[]}"#,
            r#"{"type":"response.function_call_arguments.done","arguments":"{}"}"#,
        ] {
            let p = parse(bad);
            assert!(p.is_none(), "{bad}: {p:?}");
        }
        assert_eq!(
            parse(r#"{"type":"rate_limits.updated"}"#),
            Some(Server::Other("rate_limits.updated".into()))
        );
    }

    #[test]
    fn errors_and_done() {
        let e = r#"{"type":"error","event_id":"e1","error":{"type":"invalid_request_error","code":"invalid_value","message":"bad voice","param":"session.audio.output.voice","event_id":"c1"}}"#;
        let Some(Server::Error(e)) = parse(e) else {
            panic!()
        };
        assert_eq!(e.kind, "invalid_request_error");
        assert_eq!(e.code.as_deref(), Some("invalid_value"));
        assert_eq!(e.event_id.as_deref(), Some("c1"));
        let d = r#"{"type":"response.done","response":{"id":"r1","status":"cancelled","status_details":{"type":"cancelled","reason":"turn_detected"}}}"#;
        assert_eq!(
            parse(d),
            Some(Server::ResponseDone {
                id: "r1".into(),
                status: "cancelled".into(),
                reason: Some("turn_detected".into()),
                error: None
            })
        );
    }
}
