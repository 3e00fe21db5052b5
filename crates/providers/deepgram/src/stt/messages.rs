//! Deepgram streaming (`/v1/listen`) wire messages: serde types only, no I/O.
//!
//! Sources (checked for this crate):
//! - Deepgram's AsyncAPI spec and docs as summarised in `STT_PROTOCOLS.md` §1 ("S→C messages").
//! - The official Rust SDK, `deepgram/deepgram-rust-sdk` @ ce267bb: `src/common/stream_response.rs`
//!   (Results / Metadata / SpeechStarted / UtteranceEnd shapes, `speaker` an integer) and
//!   `src/listen/websocket.rs` (`ControlMessage` serialised with `#[serde(tag = "type")]`, so
//!   `{"type":"KeepAlive"}`, `{"type":"Finalize"}`, `{"type":"CloseStream"}`).
//! - The official Go SDK, `deepgram/deepgram-go-sdk` `pkg/api/live/v1/router.go` and
//!   `interfaces/types.go`: messages are routed on `type` (`Results`, `Metadata`, `UtteranceEnd`,
//!   `SpeechStarted`, `Error`); an `Error` carries `description`, `message`, `variant`.
//!
//! Every field the vendor may omit is `#[serde(default)]`, and unknown keys are ignored, so a
//! newer server never breaks parsing.

use serde::Deserialize;

/// `{"type":"KeepAlive"}`: keeps the socket open while no audio flows (text frame; the docs warn
/// that a binary KeepAlive is mishandled). The server does not answer it.
pub const KEEP_ALIVE: &str = r#"{"type":"KeepAlive"}"#;
/// `{"type":"Finalize"}`: process all buffered audio now; the results carry `from_finalize`.
pub const FINALIZE: &str = r#"{"type":"Finalize"}"#;
/// `{"type":"CloseStream"}`: finish the remaining audio, send the last `Results` and a `Metadata`
/// summary, then close with 1000.
pub const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

/// A server message, discriminated by `type` (Go SDK `router.go`, spec §"S→C messages").
#[derive(Debug, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// A transcript for a chunk of audio (interim or final).
    Results(Results),
    /// The summary after `CloseStream` (request id, audio duration, sha256).
    Metadata(Metadata),
    /// Word-timing gap detector fired (`utterance_end_ms`, needs `interim_results=true`).
    UtteranceEnd(UtteranceEnd),
    /// VAD heard speech begin (`vad_events=true`).
    SpeechStarted(SpeechStarted),
    /// A typed error (Go SDK `ErrorResponse`: `description`, `message`, `variant`).
    Error(TypedError),
    /// Any type this client does not know (logged and skipped).
    #[serde(other)]
    Unknown,
}

/// `Results` (spec example in `STT_PROTOCOLS.md` §1; Rust SDK `TranscriptResponse`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Results {
    /// `[index, total]` of the audio channel.
    pub channel_index: Vec<u32>,
    /// Seconds of audio this chunk covers.
    pub duration: f64,
    /// Start of this chunk, seconds from the stream start.
    pub start: f64,
    /// This time range will not be revised.
    pub is_final: bool,
    /// Endpointing saw a pause: the speaker's turn ended.
    pub speech_final: bool,
    /// Produced by a client `Finalize`.
    pub from_finalize: bool,
    /// The transcript alternatives.
    pub channel: Channel,
    /// Request and model ids.
    pub metadata: ResultMetadata,
}

/// `channel` of a `Results`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Channel {
    /// Alternatives, best first.
    pub alternatives: Vec<Alternative>,
}

/// One alternative of a `Results`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Alternative {
    /// The text (punctuated when `punctuate`/`smart_format` is on).
    pub transcript: String,
    /// 0–1.
    pub confidence: f64,
    /// Word timings.
    pub words: Vec<ResultWord>,
    /// Detected languages (multilingual models).
    pub languages: Vec<String>,
}

/// One word of an alternative.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResultWord {
    /// The word, lower-case and unpunctuated.
    pub word: String,
    /// Start in seconds from the stream start.
    pub start: f64,
    /// End in seconds from the stream start.
    pub end: f64,
    /// 0–1.
    pub confidence: f64,
    /// The word as it appears in the punctuated transcript.
    pub punctuated_word: Option<String>,
    /// Speaker index with `diarize=true` (an integer in the SDKs; kept as JSON to accept a
    /// string label too).
    pub speaker: Option<serde_json::Value>,
    /// Language of the word (multilingual models).
    pub language: Option<String>,
}

/// `metadata` of a `Results`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResultMetadata {
    /// The request id (also the `dg-request-id` response header).
    pub request_id: String,
    /// The model's uuid.
    pub model_uuid: String,
}

/// `Metadata` summary (spec example in `STT_PROTOCOLS.md` §1).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Metadata {
    /// The request id.
    pub request_id: String,
    /// Seconds of audio received.
    pub duration: f64,
    /// Channels received.
    pub channels: u32,
    /// Hex sha256 of the received audio.
    pub sha256: String,
}

/// `UtteranceEnd`: `{type, channel:[idx,total], last_word_end}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct UtteranceEnd {
    /// `[index, total]` of the audio channel.
    pub channel: Vec<u32>,
    /// End of the last word, seconds.
    pub last_word_end: f64,
}

/// `SpeechStarted`: `{type, channel:[idx,total], timestamp}`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct SpeechStarted {
    /// `[index, total]` of the audio channel.
    pub channel: Vec<u32>,
    /// When speech began, seconds.
    pub timestamp: f64,
}

/// `{"type":"Error", "description", "message", "variant"}` (Go SDK `ErrorResponse`). Whether
/// the STT server emits it rather than only closing is UNCONFIRMED; it is handled if it comes.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TypedError {
    /// Human-readable explanation.
    pub description: String,
    /// Short message or code.
    pub message: String,
    /// Sub-kind.
    pub variant: String,
}

/// The untyped error JSON listed in the AsyncAPI spec:
/// `{"error_code":400|401|402|403|429|503,"error_message":"…","request_id":"…"}` (UNCONFIRMED
/// that streaming STT emits it; streaming errors normally arrive as close frames). The REST
/// shape `{"err_code":"INVALID_AUTH","err_msg":"…"}` is accepted too.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CodedError {
    /// HTTP-like status.
    pub error_code: Option<u16>,
    /// Explanation.
    pub error_message: Option<String>,
    /// REST-style symbolic code.
    pub err_code: Option<String>,
    /// REST-style explanation.
    pub err_msg: Option<String>,
}

impl CodedError {
    /// Whether this looks like an error at all (some field present).
    pub fn is_error(&self) -> bool {
        self.error_code.is_some()
            || self.error_message.is_some()
            || self.err_code.is_some()
            || self.err_msg.is_some()
    }
}

/// What one text frame from the server is.
#[derive(Debug)]
pub enum Incoming {
    /// A typed message.
    Message(ServerMessage),
    /// An untyped error object.
    Error(CodedError),
}

/// Parses one text frame; `None` for something that is neither a known shape nor an error
/// (garbage, which the caller logs and skips).
pub fn parse(text: &str) -> Option<Incoming> {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(m) => Some(Incoming::Message(m)),
        // Only an object can be an error (serde would read `[429]` as a struct too).
        Err(_) if !text.trim_start().starts_with('{') => None,
        Err(_) => serde_json::from_str::<CodedError>(text)
            .ok()
            .filter(CodedError::is_error)
            .map(Incoming::Error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_examples() {
        let r = r#"{"type":"Results","channel_index":[0,1],"duration":1.02,"start":3.5,"is_final":true,"speech_final":true,"from_finalize":false,
 "channel":{"alternatives":[{"transcript":"hello world","confidence":0.98,
   "words":[{"word":"hello","start":3.6,"end":3.9,"confidence":0.99,"punctuated_word":"Hello"},
            {"word":"world","start":3.9,"end":4.3,"confidence":0.97,"punctuated_word":"world.","speaker":1}]}]},
 "metadata":{"request_id":"8c8ebea9","model_uuid":"1dbd","model_info":{"name":"general-nova-3","version":"2024-12-20.0","arch":"nova-3"}}}"#;
        let Some(Incoming::Message(ServerMessage::Results(r))) = parse(r) else {
            panic!("not results")
        };
        assert!(r.is_final && r.speech_final && !r.from_finalize);
        let alt = &r.channel.alternatives[0];
        assert_eq!(alt.transcript, "hello world");
        assert_eq!(alt.words[1].punctuated_word.as_deref(), Some("world."));
        assert_eq!(alt.words[1].speaker, Some(serde_json::json!(1)));
        assert_eq!(r.metadata.request_id, "8c8ebea9");

        let m = r#"{"type":"Metadata","transaction_key":"deprecated","request_id":"8c8e","sha256":"e3b0","created":"2024-08-29T22:37:55.202Z","duration":12.4,"channels":1}"#;
        assert!(matches!(
            parse(m),
            Some(Incoming::Message(ServerMessage::Metadata(Metadata {
                channels: 1,
                ..
            })))
        ));
        let u = r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":4.3}"#;
        assert!(matches!(
            parse(u),
            Some(Incoming::Message(ServerMessage::UtteranceEnd(_)))
        ));
        let s = r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":3.52}"#;
        assert!(matches!(
            parse(s),
            Some(Incoming::Message(ServerMessage::SpeechStarted(_)))
        ));
    }

    #[test]
    fn errors_unknown_types_and_garbage() {
        let e = r#"{"error_code":429,"error_message":"slow down","request_id":"x"}"#;
        let Some(Incoming::Error(e)) = parse(e) else {
            panic!("not an error")
        };
        assert_eq!(e.error_code, Some(429));
        let t = r#"{"type":"Error","description":"bad","message":"DATA-0000","variant":"x"}"#;
        assert!(matches!(
            parse(t),
            Some(Incoming::Message(ServerMessage::Error(_)))
        ));
        assert!(matches!(
            parse(r#"{"type":"Brand-New","x":1}"#),
            Some(Incoming::Message(ServerMessage::Unknown))
        ));
        assert!(parse("not json").is_none());
        assert!(parse(r#"{"hello":"world"}"#).is_none());
        assert!(parse("[1,2]").is_none());
        assert!(parse("[429]").is_none());
        // A Results with wrong field types is garbage, not a panic.
        assert!(parse(r#"{"type":"Results","is_final":"yes"}"#).is_none());
    }

    #[test]
    fn control_messages_match_the_sdk_serialisation() {
        for (text, ty) in [
            (KEEP_ALIVE, "KeepAlive"),
            (FINALIZE, "Finalize"),
            (CLOSE_STREAM, "CloseStream"),
        ] {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(v, serde_json::json!({ "type": ty }));
        }
    }
}
