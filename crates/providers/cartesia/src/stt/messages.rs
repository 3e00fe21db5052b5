//! `/stt/websocket` server messages, discriminated by `type` (serde types only, no I/O).
//!
//! Shapes (`cartesia-ai/cartesia-python`):
//! - 2.0.17 `src/cartesia/stt/types/`: `transcript_message.py` (`request_id`, `text`,
//!   `is_final`, optional `duration`, `language`, `words`), `transcription_word.py` (`word`,
//!   `start`, `end`, seconds), `flush_done_message.py`, `done_message.py` (`request_id`),
//!   `error_message.py` (`message`, optional `request_id`).
//! - 4.0.1 `src/cartesia/types/stt/`: `stt_manual_finalize_transcript_response.py` (the same
//!   fields; `text` "is a delta from the last transcript chunk with is_final: true"),
//!   `stt_manual_finalize_flush_done_response.py`, `stt_manual_finalize_done_response.py`
//!   ("acknowledgment for the close command … before the connection closes"), and
//!   `types/stt_error_response.py` (`message`, `status_code`, `title`, optional `error_code`,
//!   `doc_url`, `request_id`).
//!
//! Client commands are plain text frames, not JSON: `finalize`, and `done` or `close`.

use serde::Deserialize;

/// The flush command (both API generations).
pub const FINALIZE: &str = "finalize";

/// One word with timing.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct WireWord {
    /// The word.
    pub word: String,
    /// Start, seconds.
    pub start: Option<f64>,
    /// End, seconds.
    pub end: Option<f64>,
}

/// A `transcript` message.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TranscriptMessage {
    /// The connection's id.
    pub request_id: String,
    /// Text (may be empty early on).
    pub text: String,
    /// Whether `text` is final.
    pub is_final: bool,
    /// Seconds of audio behind this chunk.
    pub duration: Option<f64>,
    /// Detected language (ISO-639-1).
    pub language: Option<String>,
    /// Word timings.
    pub words: Option<Vec<WireWord>>,
}

/// An `error` message (either generation).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct ErrorMessage {
    /// Human-readable message.
    pub message: Option<String>,
    /// HTTP-style status (2025-11-04 and later).
    pub status_code: Option<u16>,
    /// Short title (2025-11-04 and later).
    pub title: Option<String>,
    /// Machine-readable code (2025-11-04 and later).
    pub error_code: Option<String>,
    /// The connection's id, when known.
    pub request_id: Option<String>,
}

/// A parsed server message.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `transcript`.
    Transcript(TranscriptMessage),
    /// `flush_done`: the `finalize` was processed.
    FlushDone,
    /// `done`: the close command was processed; the server closes next.
    Done,
    /// `error`.
    Error(ErrorMessage),
    /// Another `type` (ignored).
    Other(String),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: String,
}

/// Parses one text frame; `None` for anything that is not a JSON object with a string `type`,
/// or whose known type has the wrong field types.
pub fn parse(text: &str) -> Option<ServerMessage> {
    let env: Envelope = serde_json::from_str(text).ok()?;
    Some(match env.kind.as_str() {
        "transcript" => ServerMessage::Transcript(serde_json::from_str(text).ok()?),
        "flush_done" => ServerMessage::FlushDone,
        "done" => ServerMessage::Done,
        "error" => ServerMessage::Error(serde_json::from_str(text).unwrap_or_default()),
        other => ServerMessage::Other(other.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_generations() {
        let Some(ServerMessage::Transcript(t)) = parse(
            r#"{"type":"transcript","request_id":"stt_1","text":"Hello world","is_final":true,
            "duration":1.8,"language":"en","words":[{"word":"Hello","start":0.2,"end":0.6}]}"#,
        ) else {
            panic!()
        };
        assert!(t.is_final);
        assert_eq!(t.words.unwrap()[0].word, "Hello");
        assert_eq!(
            parse(r#"{"type":"flush_done","request_id":"r"}"#),
            Some(ServerMessage::FlushDone)
        );
        assert_eq!(
            parse(r#"{"type":"done","request_id":"r"}"#),
            Some(ServerMessage::Done)
        );
        let Some(ServerMessage::Error(e)) = parse(r#"{"type":"error","message":"bad"}"#) else {
            panic!()
        };
        assert_eq!((e.message.as_deref(), e.status_code), (Some("bad"), None));
        let Some(ServerMessage::Error(e)) = parse(
            r#"{"type":"error","message":"slow","status_code":429,"title":"Too Many","error_code":"rate_limited"}"#,
        ) else {
            panic!()
        };
        assert_eq!(e.status_code, Some(429));
        assert_eq!(
            parse(r#"{"type":"new"}"#),
            Some(ServerMessage::Other("new".into()))
        );
        for bad in [
            "{",
            "[]",
            "null",
            r#"{"type":1}"#,
            r#"{"type":"transcript","is_final":"yes"}"#,
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
