//! Realtime STT wire messages: the client's `input_audio_chunk` and the server's messages by
//! `message_type` (serde types only, no I/O).
//!
//! Shapes from `elevenlabs/elevenlabs-python` at 54e5899 (Fern-generated from the vendor's API
//! definition):
//! - client: `types/input_audio_chunk_payload.py` (`message_type: "input_audio_chunk"`,
//!   `audio_base_64`, `commit`, `sample_rate`, optional `previous_text` "only alongside the first
//!   audio chunk"); the commit is `realtime/connection.py` `commit()`: the same message with
//!   empty audio and `commit: true`.
//! - server: `v_1_speech_to_text_realtime/types/receive_transcription.py` (the union) and
//!   `types/session_started_payload.py`, `partial_transcript_payload.py`,
//!   `committed_transcript_payload.py`, `committed_transcript_with_timestamps_payload.py`
//!   (`text`, `language_code`, `words`), `transcription_word.py` (`text`, `start`, `end` in
//!   seconds, `type` `word`|`spacing` (the sheet's example also shows `punctuation`),
//!   `speaker_id`, `logprob`), and the `scribe_*_error_payload.py` files (every error carries
//!   `error: str`; `message_type` values below). `realtime/connection.py` lists the same error
//!   types in `RealtimeEvents`, except that its `unaccepted_terms_error` differs from the
//!   payload's literal `unaccepted_terms`: both are accepted.

use base64::Engine;
use serde::Deserialize;

/// The start of every audio chunk message, up to the base64 payload.
const CHUNK_HEAD: &str = r#"{"message_type":"input_audio_chunk","audio_base_64":""#;

/// One `input_audio_chunk` as JSON, built in one allocation (base64 is written in place).
pub fn audio_chunk(audio: &[u8], sample_rate: u32, previous_text: Option<&str>) -> String {
    let b64_len = audio.len().div_ceil(3) * 4;
    let mut s = String::with_capacity(CHUNK_HEAD.len() + b64_len + 64);
    s.push_str(CHUNK_HEAD);
    base64::engine::general_purpose::STANDARD.encode_string(audio, &mut s);
    s.push_str(r#"","commit":false,"sample_rate":"#);
    s.push_str(&sample_rate.to_string());
    if let Some(text) = previous_text {
        s.push_str(r#","previous_text":"#);
        // A JSON string of arbitrary text: serde's escaping.
        s.push_str(&serde_json::Value::from(text).to_string());
    }
    s.push('}');
    s
}

/// The manual commit (`RealtimeConnection.commit`).
pub fn commit(sample_rate: u32) -> String {
    format!(
        r#"{{"message_type":"input_audio_chunk","audio_base_64":"","commit":true,"sample_rate":{sample_rate}}}"#
    )
}

/// One word of `committed_transcript_with_timestamps` (`transcription_word.py`).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct WireWord {
    /// The word, space or punctuation.
    pub text: Option<String>,
    /// Start, seconds.
    pub start: Option<f64>,
    /// End, seconds.
    pub end: Option<f64>,
    /// `word`, `spacing` or `punctuation`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Speaker id, when diarised.
    pub speaker_id: Option<String>,
    /// Log probability of the word.
    pub logprob: Option<f64>,
}

/// A server message's transcript payload.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TranscriptPayload {
    /// The text.
    pub text: String,
    /// Detected or requested language (timestamped messages).
    pub language_code: Option<String>,
    /// Words (timestamped messages).
    pub words: Option<Vec<WireWord>>,
}

/// What an error message means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `auth_error`.
    Auth,
    /// `quota_exceeded`: billing, an operator must act.
    Quota,
    /// `unaccepted_terms`: the account must accept the terms first.
    UnacceptedTerms,
    /// `rate_limited`.
    RateLimited,
    /// `resource_exhausted` (concurrency or capacity).
    ResourceExhausted,
    /// `queue_overflow`: the server fell behind the audio.
    QueueOverflow,
    /// `commit_throttled`: too many manual commits; the session goes on.
    CommitThrottled,
    /// `transcriber_error`: the vendor's engine failed.
    Transcriber,
    /// `input_error` / `invalid_request`: the request or audio is malformed.
    Input,
    /// `chunk_size_exceeded`.
    ChunkSize,
    /// `session_time_limit_exceeded`.
    SessionTimeLimit,
    /// `insufficient_audio_activity`: no speech for too long.
    InsufficientAudio,
    /// `error` (generic).
    Generic,
}

/// A parsed server message.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerMessage {
    /// `session_started` (its `config` echo is logged only).
    SessionStarted {
        /// `session_id`.
        session_id: String,
    },
    /// `partial_transcript`: interim text, replaced by later partials.
    Partial(TranscriptPayload),
    /// `committed_transcript`: the final text of a committed segment.
    Committed(TranscriptPayload),
    /// `committed_transcript_with_timestamps`: the same segment with words.
    CommittedWithTimestamps(TranscriptPayload),
    /// One of the error types, with its `error` text.
    Error {
        /// Its meaning.
        kind: ErrorKind,
        /// `message_type` as sent.
        message_type: String,
        /// `error` (or `message`) text.
        text: String,
    },
    /// A type this client does not use (`final_transcript*`, `committed_transcript_entities`,
    /// newer ones).
    Other(String),
}

#[derive(Deserialize)]
struct Envelope {
    message_type: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Started {
    session_id: String,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct ErrorBody {
    error: Option<serde_json::Value>,
    message: Option<serde_json::Value>,
}

fn error_kind(t: &str) -> Option<ErrorKind> {
    Some(match t {
        "auth_error" => ErrorKind::Auth,
        "quota_exceeded" => ErrorKind::Quota,
        "unaccepted_terms" | "unaccepted_terms_error" => ErrorKind::UnacceptedTerms,
        "rate_limited" => ErrorKind::RateLimited,
        "resource_exhausted" => ErrorKind::ResourceExhausted,
        "queue_overflow" => ErrorKind::QueueOverflow,
        "commit_throttled" => ErrorKind::CommitThrottled,
        "transcriber_error" => ErrorKind::Transcriber,
        "input_error" | "invalid_request" => ErrorKind::Input,
        "chunk_size_exceeded" => ErrorKind::ChunkSize,
        "session_time_limit_exceeded" => ErrorKind::SessionTimeLimit,
        "insufficient_audio_activity" => ErrorKind::InsufficientAudio,
        "error" => ErrorKind::Generic,
        _ => return None,
    })
}

/// Parses one text frame; `None` for anything that is not a JSON object with a string
/// `message_type`, or whose known type has the wrong field types.
pub fn parse(text: &str) -> Option<ServerMessage> {
    let env: Envelope = serde_json::from_str(text).ok()?;
    let t = env.message_type.as_str();
    Some(match t {
        "session_started" => {
            let s: Started = serde_json::from_str(text).ok()?;
            ServerMessage::SessionStarted {
                session_id: s.session_id,
            }
        }
        "partial_transcript" => ServerMessage::Partial(serde_json::from_str(text).ok()?),
        "committed_transcript" => ServerMessage::Committed(serde_json::from_str(text).ok()?),
        "committed_transcript_with_timestamps" => {
            ServerMessage::CommittedWithTimestamps(serde_json::from_str(text).ok()?)
        }
        other => match error_kind(other) {
            Some(kind) => {
                let body: ErrorBody = serde_json::from_str(text).unwrap_or_default();
                let as_text = |v: serde_json::Value| match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                let text = body.error.or(body.message).map(as_text).unwrap_or_default();
                ServerMessage::Error {
                    kind,
                    message_type: other.to_owned(),
                    text,
                }
            }
            None => ServerMessage::Other(other.to_owned()),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages() {
        let m = audio_chunk(&[0, 1, 2, 3], 16_000, None);
        assert_eq!(
            m,
            r#"{"message_type":"input_audio_chunk","audio_base_64":"AAECAw==","commit":false,"sample_rate":16000}"#
        );
        let v: serde_json::Value =
            serde_json::from_str(&audio_chunk(b"x", 8_000, Some("a \"q\""))).unwrap();
        assert_eq!(v["previous_text"], "a \"q\"");
        assert_eq!(v["sample_rate"], 8000);
        let v: serde_json::Value = serde_json::from_str(&commit(24_000)).unwrap();
        assert_eq!(v["commit"], true);
        assert_eq!(v["audio_base_64"], "");
    }

    #[test]
    fn server_messages() {
        assert_eq!(
            parse(
                r#"{"message_type":"session_started","session_id":"abc","config":{"sample_rate":16000}}"#
            ),
            Some(ServerMessage::SessionStarted {
                session_id: "abc".into()
            })
        );
        let Some(ServerMessage::CommittedWithTimestamps(p)) = parse(
            r#"{"message_type":"committed_transcript_with_timestamps","text":"Hello.","language_code":"en",
            "words":[{"text":"Hello","start":0.0,"end":0.32,"type":"word","logprob":-0.1,"speaker_id":"s1"},
                     {"text":".","start":0.32,"end":0.35,"type":"punctuation"}]}"#,
        ) else {
            panic!()
        };
        assert_eq!(p.language_code.as_deref(), Some("en"));
        assert_eq!(
            p.words.as_ref().unwrap()[0].speaker_id.as_deref(),
            Some("s1")
        );
        assert_eq!(
            parse(r#"{"message_type":"auth_error","error":"Invalid API key"}"#),
            Some(ServerMessage::Error {
                kind: ErrorKind::Auth,
                message_type: "auth_error".into(),
                text: "Invalid API key".into()
            })
        );
        let Some(ServerMessage::Error { kind, text, .. }) =
            parse(r#"{"message_type":"unaccepted_terms_error","message":"accept"}"#)
        else {
            panic!()
        };
        assert_eq!(
            (kind, text.as_str()),
            (ErrorKind::UnacceptedTerms, "accept")
        );
        assert_eq!(
            parse(r#"{"message_type":"final_transcript","text":"x"}"#),
            Some(ServerMessage::Other("final_transcript".into()))
        );
        for bad in [
            "{not json",
            "[]",
            "null",
            r#"{"message_type":5}"#,
            r#"{"message_type":"partial_transcript","text":7}"#,
            r#"{"message_type":"committed_transcript_with_timestamps","text":"x","words":"none"}"#,
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
