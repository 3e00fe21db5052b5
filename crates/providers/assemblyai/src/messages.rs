//! AssemblyAI Universal Streaming v3 wire messages (serde types only, no I/O).
//!
//! Shapes verified against the official Python SDK, `assemblyai/streaming/v3/models.py`
//! (AssemblyAI/assemblyai-python-sdk @ 530eca5), and the "Streaming API" reference and
//! "Message Sequence" pages of assemblyai.com/docs. Every field the vendor marks optional (and
//! some it does not) defaults here, and unknown keys are ignored, so a new server field never
//! drops a message.

use serde::{Deserialize, Deserializer};

/// C→S `{"type":"ForceEndpoint"}`: end the current turn now (SDK `ForceEndpoint`).
pub const FORCE_ENDPOINT: &str = r#"{"type":"ForceEndpoint"}"#;
/// C→S `{"type":"Terminate"}`: flush, send the last Turn(s) and `Termination`, close 1000
/// (SDK `TerminateSession`; docs "Message Sequence").
pub const TERMINATE: &str = r#"{"type":"Terminate"}"#;
/// C→S `{"type":"KeepAlive"}`: resets the inactivity timer (SDK `KeepAlive`; docs: "only needed
/// with `inactivity_timeout`").
pub const KEEP_ALIVE: &str = r#"{"type":"KeepAlive"}"#;

/// S→C messages, discriminated by `type` (SDK `EventMessage` / `_parse_message`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// `{"type":"Begin","id":"…","expires_at":…}` (SDK `BeginEvent`).
    Begin(Begin),
    /// A transcript update for one turn (SDK `TurnEvent`).
    Turn(Turn),
    /// `{"type":"SpeechStarted","timestamp":320}` (SDK `SpeechStartedEvent`, ms).
    SpeechStarted(SpeechStarted),
    /// `{"type":"Termination","audio_duration_seconds":…,"session_duration_seconds":…}`
    /// (SDK `TerminationEvent`): the last message of a session.
    Termination(Termination),
    /// `{"type":"Error","error_code":3006,"error":"…"}` (SDK `ErrorEvent`).
    Error(ErrorMessage),
    /// `{"type":"Warning","warning_code":…,"warning":"…"}` (SDK `WarningEvent`).
    Warning(Warning),
    /// Anything else (`Heartbeat`, `LLMGatewayResponse`, `SpeakerRevision`, future types).
    #[serde(other)]
    Other,
}

impl ServerMessage {
    /// Parses a text frame, also accepting the legacy untyped error `{"error":"…"}` (SDK
    /// `_parse_message`: no `type` but an `error` key is an `ErrorEvent`).
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        match serde_json::from_str::<Self>(text) {
            Ok(m) => Ok(m),
            Err(e) => match serde_json::from_str::<LegacyError>(text) {
                Ok(l) => Ok(Self::Error(ErrorMessage {
                    error_code: None,
                    error: l.error,
                })),
                Err(_) => Err(e),
            },
        }
    }
}

#[derive(Deserialize)]
struct LegacyError {
    error: String,
}

/// Session start. `expires_at` is ISO-8601 in the spec but integer Unix seconds in the docs'
/// examples, so it is kept as raw JSON.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Begin {
    /// Session id (uuid).
    #[serde(default)]
    pub id: String,
    /// Expiry, either form.
    #[serde(default)]
    pub expires_at: serde_json::Value,
}

/// One Turn update (SDK `TurnEvent`; docs "Turn object").
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Turn {
    /// Turn index, from 0, incremented per turn.
    pub turn_order: u64,
    /// Whether `transcript` is formatted (punctuated, cased, ITN); only with `format_turns`.
    pub turn_is_formatted: bool,
    /// This message ends the turn.
    pub end_of_turn: bool,
    /// Only the finalised words of the turn so far.
    pub transcript: String,
    /// Probability (0–1) that the speaker has finished.
    pub end_of_turn_confidence: f64,
    /// Every word so far, the last ones possibly not final.
    pub words: Vec<TurnWord>,
    /// Language detected (multilingual model with `language_detection`).
    pub language_code: Option<String>,
    /// Speaker of the turn (with `speaker_labels`).
    #[serde(deserialize_with = "string_or_number")]
    pub speaker_label: Option<String>,
}

/// One word of a Turn (SDK `Word`): times are integer milliseconds from the stream start.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct TurnWord {
    /// The word.
    pub text: String,
    /// Start, ms.
    pub start: f64,
    /// End, ms.
    pub end: f64,
    /// Confidence 0–1.
    pub confidence: f64,
    /// Whether the word will not change any more.
    pub word_is_final: bool,
    /// Speaker label (with `speaker_labels`).
    #[serde(deserialize_with = "string_or_number")]
    pub speaker: Option<String>,
}

/// Speech onset.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct SpeechStarted {
    /// Ms from the stream start.
    pub timestamp: f64,
}

/// Session end summary.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Termination {
    /// Audio received, seconds.
    pub audio_duration_seconds: Option<f64>,
    /// Session length, seconds.
    pub session_duration_seconds: Option<f64>,
}

/// A vendor error; the session ends after it.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ErrorMessage {
    /// The code (same table as the close codes), when given.
    pub error_code: Option<u16>,
    /// The vendor's text.
    pub error: String,
}

/// A vendor warning; the session continues.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct Warning {
    /// The code.
    pub warning_code: Option<u16>,
    /// The vendor's text.
    pub warning: String,
}

/// Speaker labels are strings in the SDK (`"A"`); accept numbers too rather than drop a Turn.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes() {
        let begin = r#"{"type":"Begin","id":"de5d9927","expires_at":1745483367}"#;
        assert!(
            matches!(ServerMessage::parse(begin).unwrap(), ServerMessage::Begin(b) if b.id == "de5d9927")
        );
        let iso = r#"{"type":"Begin","id":"x","expires_at":"2025-04-24T08:29:27Z"}"#;
        assert!(matches!(
            ServerMessage::parse(iso).unwrap(),
            ServerMessage::Begin(_)
        ));
        let turn = r#"{"type":"Turn","turn_order":0,"turn_is_formatted":false,"end_of_turn":false,
            "transcript":"hello","end_of_turn_confidence":0.05,"utterance":"",
            "words":[{"text":"hello","start":320,"end":560,"confidence":0.97,"word_is_final":true},
                     {"text":"wor","start":600,"end":720,"confidence":0.61,"word_is_final":false,"speaker":"A"}]}"#;
        let ServerMessage::Turn(t) = ServerMessage::parse(turn).unwrap() else {
            panic!("not a turn")
        };
        assert_eq!(t.words.len(), 2);
        assert_eq!(t.words[1].speaker.as_deref(), Some("A"));
        assert_eq!(t.words[0].start, 320.0);
        let err = r#"{"type":"Error","error_code":3006,"error":"bad"}"#;
        assert!(matches!(
            ServerMessage::parse(err).unwrap(),
            ServerMessage::Error(ErrorMessage {
                error_code: Some(3006),
                ..
            })
        ));
        let legacy = r#"{"error":"Not authorized"}"#;
        assert!(matches!(
            ServerMessage::parse(legacy).unwrap(),
            ServerMessage::Error(ErrorMessage {
                error_code: None,
                ..
            })
        ));
        let hb = r#"{"type":"Heartbeat","total_audio_received_ms":1}"#;
        assert_eq!(ServerMessage::parse(hb).unwrap(), ServerMessage::Other);
        let term =
            r#"{"type":"Termination","audio_duration_seconds":12,"session_duration_seconds":14}"#;
        assert!(matches!(
            ServerMessage::parse(term).unwrap(),
            ServerMessage::Termination(_)
        ));
        assert!(ServerMessage::parse("{not json").is_err());
        assert!(ServerMessage::parse(r#"{"type":"Turn","words":"nope"}"#).is_err());
    }
}
