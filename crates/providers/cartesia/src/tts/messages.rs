//! Cartesia's server messages and error bodies, parsed leniently (unknown fields and types are
//! ignored, so a new server field never breaks a session).
//!
//! WebSocket messages (TTS_PROTOCOLS.md §5 "Server to client"; SDK 2.0.17
//! `tts/types/web_socket_response.py`, `web_socket_chunk_response.py`,
//! `web_socket_flush_done_response.py`, `word_timestamps.py`): every message has `type`,
//! `context_id` (optional), `status_code` and `done`; `chunk` carries base64 `data`,
//! `timestamps` carries `word_timestamps {words, start, end}`, `error` carries `error` (a
//! string) or, from API version 2026-03-01, `error_code`/`title`/`message`/`request_id`.
//!
//! REST error bodies (docs.cartesia.ai "API errors"): from 2026-03-01 JSON
//! `{"error_code","title","message","request_id","doc_url"}`; older versions plain text
//! `Title: Message`.

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use waav_plugin_api::{http, ErrorCategory, PluginError};
use waav_provider_kit::errors;
use waav_provider_kit::redact::Redactor;

/// One parsed server message.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// Audio for a context.
    Chunk {
        /// The context.
        context_id: Option<String>,
        /// Decoded audio.
        audio: Bytes,
        /// The message also ended the context.
        done: bool,
    },
    /// The context is complete.
    Done {
        /// The context.
        context_id: Option<String>,
    },
    /// Word timestamps (parsed, not part of the plugin contract yet).
    Timestamps {
        /// The context.
        context_id: Option<String>,
        /// `(word, start s, end s)`.
        words: Vec<(String, f64, f64)>,
        /// The message also ended the context.
        done: bool,
    },
    /// The context (or, without one, the connection) failed.
    Error {
        /// The context.
        context_id: Option<String>,
        /// What went wrong, categorised.
        error: PluginError,
    },
    /// Something else (`flush_done`, `phoneme_timestamps`, a future type), with its `done` flag.
    Other {
        /// The context.
        context_id: Option<String>,
        /// `type`, for logs.
        kind: String,
        /// The message ended the context.
        done: bool,
    },
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    context_id: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    done: Option<bool>,
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    word_timestamps: Option<RawWords>,
}

#[derive(Deserialize)]
struct RawWords {
    #[serde(default)]
    words: Vec<String>,
    #[serde(default)]
    start: Vec<f64>,
    #[serde(default)]
    end: Vec<f64>,
}

/// Parses one text frame. `Err` is a frame that is not a Cartesia message at all (not JSON, not
/// an object): the caller logs and skips it. A `chunk` whose audio is not base64 is an
/// [`ServerMessage::Error`] for its context.
pub fn parse(text: &str, redactor: &Redactor) -> Result<ServerMessage, String> {
    let raw: Raw =
        serde_json::from_str(text).map_err(|e| format!("not a Cartesia message: {e}"))?;
    let done = raw.done.unwrap_or(false);
    let kind = raw.kind.clone().unwrap_or_default();
    Ok(match kind.as_str() {
        "chunk" => {
            let data = raw.data.as_deref().unwrap_or("");
            match base64::engine::general_purpose::STANDARD.decode(data) {
                Ok(audio) => ServerMessage::Chunk {
                    context_id: raw.context_id,
                    audio: Bytes::from(audio),
                    done,
                },
                // Corrupt audio fails its request rather than playing a gap.
                Err(e) => ServerMessage::Error {
                    context_id: raw.context_id,
                    error: errors::make(
                        ErrorCategory::Permanent,
                        format!("cartesia: chunk data is not base64: {e}"),
                        None,
                        redactor,
                    ),
                },
            }
        }
        "done" => ServerMessage::Done {
            context_id: raw.context_id,
        },
        "timestamps" => {
            let words = raw
                .word_timestamps
                .map(|w| {
                    w.words
                        .into_iter()
                        .zip(w.start)
                        .zip(w.end)
                        .map(|((w, s), e)| (w, s, e))
                        .collect()
                })
                .unwrap_or_default();
            ServerMessage::Timestamps {
                context_id: raw.context_id,
                words,
                done,
            }
        }
        "error" => {
            let text = error_text(
                raw.error.as_ref(),
                raw.error_code.as_deref(),
                raw.title.as_deref(),
                raw.message.as_deref(),
            );
            ServerMessage::Error {
                context_id: raw.context_id,
                error: categorise(raw.status_code, None, &text, redactor),
            }
        }
        _ if raw.error.is_some() && raw.status_code.is_some_and(|s| s >= 400) => {
            // An error without `type` (seen in older versions' shapes; defensive).
            let text = error_text(raw.error.as_ref(), None, None, None);
            ServerMessage::Error {
                context_id: raw.context_id,
                error: categorise(raw.status_code, None, &text, redactor),
            }
        }
        _ => ServerMessage::Other {
            context_id: raw.context_id,
            kind,
            done,
        },
    })
}

/// The human part of an error: `title: message (error_code)`, or the `error` string.
fn error_text(
    error: Option<&serde_json::Value>,
    code: Option<&str>,
    title: Option<&str>,
    message: Option<&str>,
) -> String {
    let mut parts = Vec::new();
    if let Some(t) = title.filter(|t| !t.is_empty()) {
        parts.push(t.to_owned());
    }
    if let Some(m) = message.filter(|m| !m.is_empty()) {
        parts.push(m.to_owned());
    }
    match error {
        Some(serde_json::Value::String(s)) if !s.is_empty() => parts.push(s.clone()),
        Some(serde_json::Value::Null) | None => {}
        Some(other) => parts.push(other.to_string()),
    }
    let mut text = parts.join(": ");
    if let Some(c) = code.filter(|c| !c.is_empty()) {
        text.push_str(&format!(" ({c})"));
    }
    if text.is_empty() {
        text = "unspecified error".to_owned();
    }
    text
}

/// The message of a REST error body: the JSON fields when it is JSON, else the text.
pub fn rest_error_text(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        error_code: Option<String>,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        error: Option<serde_json::Value>,
    }
    if let Ok(b) = serde_json::from_slice::<Body>(body) {
        if b.title.is_some() || b.message.is_some() || b.error.is_some() {
            return error_text(
                b.error.as_ref(),
                b.error_code.as_deref(),
                b.title.as_deref(),
                b.message.as_deref(),
            );
        }
    }
    errors::excerpt(body, errors::BODY_EXCERPT_LIMIT)
}

/// The error for a vendor status and message. The kit's table, except that 400 and 422 are
/// Config (a bad voice, model, format or option: the session config must change) unless the
/// message is about the transcript, which makes it Permanent (only that text fails).
pub fn categorise(
    status: Option<u16>,
    headers: Option<&http::HeaderMap>,
    text: &str,
    redactor: &Redactor,
) -> PluginError {
    let Some(status) = status.filter(|s| *s >= 400) else {
        return errors::make(
            ErrorCategory::Permanent,
            format!("cartesia: {text}"),
            None,
            redactor,
        );
    };
    let code = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_REQUEST);
    let empty = http::HeaderMap::new();
    let base = errors::from_http(
        code,
        headers.unwrap_or(&empty),
        text.as_bytes(),
        "cartesia",
        redactor,
    );
    if matches!(status, 400 | 422) {
        let lower = text.to_ascii_lowercase();
        let category = if lower.contains("transcript") {
            ErrorCategory::Permanent
        } else {
            ErrorCategory::Config
        };
        return errors::make(category, base.to_string_message(), None, redactor);
    }
    base
}

/// The message inside a [`PluginError`], without the category prefix `Display` adds.
trait MessageOf {
    fn to_string_message(&self) -> String;
}

impl MessageOf for PluginError {
    fn to_string_message(&self) -> String {
        match self {
            PluginError::Config(m)
            | PluginError::Auth(m)
            | PluginError::Transient(m)
            | PluginError::Permanent(m)
            | PluginError::Timeout(m)
            | PluginError::Panicked(m) => m.clone(),
            PluginError::RateLimited { message, .. } => message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        let r = Redactor::new();
        let m = parse(
            r#"{"type":"chunk","data":"AAABAA==","step_time":1.5,"context_id":"c","status_code":206,"done":false}"#,
            &r,
        )
        .unwrap();
        assert_eq!(
            m,
            ServerMessage::Chunk {
                context_id: Some("c".into()),
                audio: Bytes::from_static(&[0, 0, 1, 0]),
                done: false
            }
        );
        let m = parse(
            r#"{"type":"timestamps","word_timestamps":{"words":["Hi","there"],"start":[0.0,0.4],"end":[0.3,0.9]},"context_id":"c","status_code":206,"done":false}"#,
            &r,
        )
        .unwrap();
        let ServerMessage::Timestamps { words, .. } = m else {
            panic!("{m:?}")
        };
        assert_eq!(words[1], ("there".to_owned(), 0.4, 0.9));
        let m = parse(
            r#"{"type":"error","error":"Invalid voice ID","context_id":"c","status_code":400,"done":true}"#,
            &r,
        )
        .unwrap();
        let ServerMessage::Error { error, .. } = m else {
            panic!()
        };
        assert_eq!(error.category(), ErrorCategory::Config, "{error}");
        assert!(error.to_string().contains("Invalid voice ID"));
        let m = parse(
            r#"{"type":"error","done":true,"status_code":429,"error_code":"concurrency_limited","title":"Too many concurrent requests","message":"slow down","request_id":"r","context_id":"c"}"#,
            &r,
        )
        .unwrap();
        let ServerMessage::Error { error, .. } = m else {
            panic!()
        };
        assert_eq!(error.category(), ErrorCategory::RateLimited);
        assert!(
            error
                .to_string()
                .contains("Too many concurrent requests: slow down (concurrency_limited)"),
            "{error}"
        );
        assert!(matches!(
            parse(r#"{"type":"flush_done","flush_id":1,"done":false}"#, &r),
            Ok(ServerMessage::Other { .. })
        ));
        assert!(parse("not json", &r).is_err());
        assert!(parse("[1,2]", &r).is_err());
        assert!(matches!(
            parse(r#"{"type":"chunk","data":"@@@","context_id":"c"}"#, &r),
            Ok(ServerMessage::Error { .. })
        ));
    }

    #[test]
    fn rest_errors() {
        assert_eq!(
            rest_error_text(
                br#"{"error_code":null,"title":"Invalid request","message":"bad voice"}"#
            ),
            "Invalid request: bad voice"
        );
        assert_eq!(
            rest_error_text(b"Bad Request: transcript is empty\n"),
            "Bad Request: transcript is empty"
        );
        let r = Redactor::new();
        let e = categorise(Some(400), None, "transcript is empty", &r);
        assert_eq!(e.category(), ErrorCategory::Permanent);
        let e = categorise(Some(500), None, "oops", &r);
        assert_eq!(e.category(), ErrorCategory::Transient);
        let e = categorise(Some(402), None, "no credits", &r);
        assert_eq!(e.category(), ErrorCategory::Auth);
    }
}
