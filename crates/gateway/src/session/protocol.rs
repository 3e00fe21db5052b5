//! The `/ws` wire messages (see docs/protocol.md), as typed structs.

use serde::{Deserialize, Serialize};

/// Largest text frame accepted, in bytes.
pub const MAX_TEXT_FRAME: usize = 1024 * 1024;
/// Largest binary (audio) frame accepted, in bytes.
pub const MAX_AUDIO_FRAME: usize = 5 * 1024 * 1024;
/// Largest WebSocket message or frame the transport reads at all.
pub const MAX_WS_MESSAGE: usize = 10 * 1024 * 1024;
/// Field limits: `speak.text`.
pub const MAX_SPEAK_TEXT: usize = 100 * 1024;
/// Field limits: `send_message.message`.
pub const MAX_SEND_MESSAGE: usize = 50 * 1024;
/// Field limits: `custom.payload` (serialized).
pub const MAX_CUSTOM_PAYLOAD: usize = 50 * 1024;
/// Field limits: `config.stream_id`.
pub const MAX_STREAM_ID: usize = 256;
/// Field limits: `auth.token`.
pub const MAX_AUTH_TOKEN: usize = 4 * 1024;
/// Sample rates the core accepts for client audio in and out (plugins may narrow it).
pub const SAMPLE_RATES: std::ops::RangeInclusive<u32> = 8_000..=192_000;
/// Channel counts the core accepts for client audio.
pub const CHANNELS: std::ops::RangeInclusive<u16> = 1..=8;
/// `tts_config.request_timeout` and `connection_timeout`, in seconds (0 means the minimum, 1 s,
/// as WaaV clients may send it).
pub const TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 0..=3600;
/// Short string fields: provider, model, voice, language, emotion names.
pub const MAX_NAME: usize = 256;
/// `api_key` overrides.
pub const MAX_API_KEY: usize = 4 * 1024;
/// Per-session `credentials`: entries.
pub const MAX_CREDENTIALS: usize = 16;
/// `tts_config.emotion_description`.
pub const MAX_DESCRIPTION: usize = 1024;
/// `tts_config.pronunciations`: entries, and bytes of each word and pronunciation.
pub const MAX_PRONUNCIATIONS: usize = 100;
/// See [`MAX_PRONUNCIATIONS`].
pub const MAX_PRONUNCIATION_FIELD: usize = 256;

/// A message from the client, tagged by `type`. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMessage {
    /// Configure (or reconfigure) the session.
    Config(Box<ConfigMessage>),
    /// Synthesize text.
    Speak {
        /// The text.
        text: String,
        /// Synthesize now (default true).
        #[serde(default)]
        flush: Option<bool>,
        /// Whether `clear` and STT results may interrupt this utterance (default true).
        #[serde(default)]
        allow_interruption: Option<bool>,
    },
    /// Drop queued and in-flight TTS.
    Clear,
    /// LiveKit data message.
    SendMessage {
        /// The text.
        message: String,
        /// Sender role.
        #[serde(default)]
        role: Option<String>,
        /// Topic.
        #[serde(default)]
        topic: Option<String>,
        /// Debug payload.
        #[serde(default)]
        debug: Option<serde_json::Value>,
    },
    /// SIP call transfer.
    SipTransfer {
        /// `+` and digits.
        transfer_to: String,
    },
    /// Authenticate a pending connection.
    Auth {
        /// Bearer token or API secret.
        token: String,
    },
    /// A message for a route plugin.
    Custom {
        /// Selects the handler.
        message_type: String,
        /// Opaque payload.
        #[serde(default)]
        payload: serde_json::Value,
    },
}

impl ClientMessage {
    /// The `type` tag, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Speak { .. } => "speak",
            Self::Clear => "clear",
            Self::SendMessage { .. } => "send_message",
            Self::SipTransfer { .. } => "sip_transfer",
            Self::Auth { .. } => "auth",
            Self::Custom { .. } => "custom",
        }
    }
}

/// The `config` message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ConfigMessage {
    /// Echoed in `ready`; a UUIDv4 when absent.
    #[serde(default)]
    pub stream_id: Option<String>,
    /// Enable the voice pipeline (default true).
    #[serde(default)]
    pub audio: Option<bool>,
    /// STT settings.
    #[serde(default)]
    pub stt_config: Option<SttConfig>,
    /// TTS settings.
    #[serde(default)]
    pub tts_config: Option<TtsConfig>,
    /// Barge-in: when the session's VAD hears the user start speaking over interruptible TTS
    /// audio, the TTS is cleared and `tts_interrupted` sent (additive; default off).
    #[serde(default)]
    pub barge_in: Option<bool>,
    /// `false` opts the session out of `provider_switched` events (failovers, hedges and
    /// returns still happen; additive, default `true`).
    #[serde(default)]
    pub provider_switched: Option<bool>,
    /// LiveKit room settings.
    #[serde(default)]
    pub livekit: Option<serde_json::Value>,
}

/// `stt_config`: all seven fields required, as in WaaV.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SttConfig {
    /// Provider id or alias.
    pub provider: String,
    /// BCP-47 language.
    pub language: String,
    /// Sample rate of the binary audio.
    pub sample_rate: u32,
    /// Channels of the binary audio.
    pub channels: u16,
    /// Punctuate transcripts.
    pub punctuation: bool,
    /// Audio encoding (`linear16` = PCM16LE).
    pub encoding: String,
    /// Model; empty for the provider default.
    pub model: String,
    /// Per-session key override; empty means the server's key.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Per-session values of the provider's other credential fields (additive; see `/plugins`).
    #[serde(default)]
    pub credentials: Option<std::collections::BTreeMap<String, String>>,
    /// Providers to fail over to, in order (additive; replaces `resilience.failover.stt` for
    /// this session, `[]` for none).
    #[serde(default)]
    pub fallback: Option<Vec<String>>,
    /// Pre-STT processor instances (names from `plugins.processors`), in order; replaces
    /// `plugins.pipelines.default_stt_pre` for this session, `[]` runs none (additive).
    #[serde(default)]
    pub pipeline: Option<Vec<String>>,
    /// Post-STT text processor instances, run on each transcript before it is sent; replaces
    /// `plugins.pipelines.default_stt_post` for this session, `[]` runs none (additive).
    #[serde(default)]
    pub post_pipeline: Option<Vec<String>>,
}

/// A pronunciation override.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PronunciationMsg {
    /// The word.
    pub word: String,
    /// How to say it.
    pub pronunciation: String,
}

/// `emotion_intensity`: a number 0–1 or `low`/`medium`/`high`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Intensity {
    /// 0–1.
    Number(f32),
    /// `low`, `medium`, `high`.
    Level(String),
}

/// `tts_config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TtsConfig {
    /// Provider id or alias.
    pub provider: String,
    /// Model; may be empty.
    pub model: String,
    /// Voice id.
    #[serde(default)]
    pub voice_id: Option<String>,
    /// Speaking rate (1.0).
    #[serde(default)]
    pub speaking_rate: Option<f32>,
    /// Output encoding (`linear16` default).
    #[serde(default)]
    pub audio_format: Option<String>,
    /// Output sample rate (24000 default).
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// Seconds to wait for the provider to connect (30).
    #[serde(default)]
    pub connection_timeout: Option<u64>,
    /// Seconds a request may go without progress (60).
    #[serde(default)]
    pub request_timeout: Option<u64>,
    /// Pronunciation overrides.
    #[serde(default)]
    pub pronunciations: Vec<PronunciationMsg>,
    /// Per-session key override.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Per-session values of the provider's other credential fields (additive; see `/plugins`).
    #[serde(default)]
    pub credentials: Option<std::collections::BTreeMap<String, String>>,
    /// Providers to fail over to, in order, each `provider` or `provider:voice` (additive;
    /// replaces `resilience.failover.tts` for this session, `[]` for none).
    #[serde(default)]
    pub fallback: Option<Vec<String>>,
    /// Hedged first byte (additive; default `resilience.tts_hedge`): the session's first
    /// cache-miss request (and the first after a failover) also goes to the next provider of its
    /// chain; the first to send audio keeps the session, the other is cancelled.
    #[serde(default)]
    pub hedge: Option<bool>,
    /// Post-TTS processor instances (names from `plugins.processors`), in order; replaces
    /// `plugins.pipelines.default_tts_post` for this session, `[]` runs none (additive).
    #[serde(default)]
    pub pipeline: Option<Vec<String>>,
    /// Pre-TTS text processor instances, run on each text to speak before the provider and the
    /// cache see it; replaces `plugins.pipelines.default_tts_pre` for this session, `[]` runs
    /// none (additive).
    #[serde(default)]
    pub pre_pipeline: Option<Vec<String>>,
    /// Emotion name.
    #[serde(default)]
    pub emotion: Option<String>,
    /// Emotion intensity.
    #[serde(default)]
    pub emotion_intensity: Option<Intensity>,
    /// Delivery style.
    #[serde(default)]
    pub delivery_style: Option<String>,
    /// Free-text emotion description.
    #[serde(default)]
    pub emotion_description: Option<String>,
}

fn check_pipeline(names: Option<&[String]>) -> Result<(), String> {
    let names = names.unwrap_or_default();
    if names.len() > crate::pipeline::MAX_PROCESSORS {
        return Err(format!(
            "pipeline has {} processors; at most {}",
            names.len(),
            crate::pipeline::MAX_PROCESSORS
        ));
    }
    names
        .iter()
        .try_for_each(|name| check_len("pipeline entry", name, MAX_NAME))
}

fn check_chain(chain: Option<&[String]>) -> Result<(), String> {
    let chain = chain.unwrap_or_default();
    if chain.len() > crate::config::MAX_CHAIN {
        return Err(format!(
            "fallback has {} providers; at most {}",
            chain.len(),
            crate::config::MAX_CHAIN
        ));
    }
    chain
        .iter()
        .try_for_each(|name| check_len("fallback entry", name, MAX_NAME))
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.len() > max {
        return Err(format!("{field} is {} bytes (max {max})", value.len()));
    }
    Ok(())
}

fn check_credentials(
    creds: Option<&std::collections::BTreeMap<String, String>>,
) -> Result<(), String> {
    let Some(creds) = creds else { return Ok(()) };
    if creds.len() > MAX_CREDENTIALS {
        return Err(format!(
            "{} credentials (max {MAX_CREDENTIALS})",
            creds.len()
        ));
    }
    for (name, value) in creds {
        check_len("credentials name", name, MAX_NAME)?;
        check_len("credentials value", value, MAX_API_KEY)?;
    }
    Ok(())
}

fn check_rate(rate: u32) -> Result<(), String> {
    if !SAMPLE_RATES.contains(&rate) {
        return Err(format!(
            "sample_rate {rate} is out of range {}–{} Hz",
            SAMPLE_RATES.start(),
            SAMPLE_RATES.end()
        ));
    }
    Ok(())
}

impl SttConfig {
    /// Checks every number and size against the core's limits, before anything is resolved,
    /// allocated or dialled.
    pub fn validate(&self) -> Result<(), String> {
        check_rate(self.sample_rate)?;
        if !CHANNELS.contains(&self.channels) {
            return Err(format!(
                "channels {} is out of range {}–{}",
                self.channels,
                CHANNELS.start(),
                CHANNELS.end()
            ));
        }
        check_len("provider", &self.provider, MAX_NAME)?;
        check_len("language", &self.language, MAX_NAME)?;
        check_len("encoding", &self.encoding, MAX_NAME)?;
        check_len("model", &self.model, MAX_NAME)?;
        check_len(
            "api_key",
            self.api_key.as_deref().unwrap_or(""),
            MAX_API_KEY,
        )?;
        check_chain(self.fallback.as_deref())?;
        check_pipeline(self.pipeline.as_deref())?;
        check_pipeline(self.post_pipeline.as_deref())?;
        check_credentials(self.credentials.as_ref())
    }
}

impl TtsConfig {
    /// Checks every number and size against the core's limits, before anything is resolved,
    /// allocated or dialled.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(rate) = self.sample_rate {
            check_rate(rate)?;
        }
        for (field, value) in [
            ("connection_timeout", self.connection_timeout),
            ("request_timeout", self.request_timeout),
        ] {
            if let Some(v) = value.filter(|v| !TIMEOUT_SECS.contains(v)) {
                return Err(format!(
                    "{field} {v} is out of range {}–{} s",
                    TIMEOUT_SECS.start(),
                    TIMEOUT_SECS.end()
                ));
            }
        }
        check_len("provider", &self.provider, MAX_NAME)?;
        check_len("model", &self.model, MAX_NAME)?;
        for (field, value) in [
            ("voice_id", &self.voice_id),
            ("audio_format", &self.audio_format),
            ("emotion", &self.emotion),
            ("delivery_style", &self.delivery_style),
        ] {
            check_len(field, value.as_deref().unwrap_or(""), MAX_NAME)?;
        }
        check_len(
            "emotion_description",
            self.emotion_description.as_deref().unwrap_or(""),
            MAX_DESCRIPTION,
        )?;
        check_len(
            "api_key",
            self.api_key.as_deref().unwrap_or(""),
            MAX_API_KEY,
        )?;
        check_credentials(self.credentials.as_ref())?;
        check_chain(self.fallback.as_deref())?;
        check_pipeline(self.pipeline.as_deref())?;
        check_pipeline(self.pre_pipeline.as_deref())?;
        if self.pronunciations.len() > MAX_PRONUNCIATIONS {
            return Err(format!(
                "{} pronunciations (max {MAX_PRONUNCIATIONS})",
                self.pronunciations.len()
            ));
        }
        for p in &self.pronunciations {
            check_len("pronunciations.word", &p.word, MAX_PRONUNCIATION_FIELD)?;
            check_len(
                "pronunciations.pronunciation",
                &p.pronunciation,
                MAX_PRONUNCIATION_FIELD,
            )?;
        }
        Ok(())
    }
}

/// A message to the client, tagged by `type`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Providers are connected.
    Ready {
        /// The session's stream id.
        stream_id: String,
        /// LiveKit URL (empty without LiveKit; always present).
        livekit_url: String,
    },
    /// A transcript.
    SttResult {
        /// Text.
        transcript: String,
        /// Final for this segment.
        is_final: bool,
        /// End of the speaker's turn.
        is_speech_final: bool,
        /// 0–1.
        confidence: f32,
        /// Provider id.
        #[serde(skip_serializing_if = "Option::is_none")]
        provider: Option<&'static str>,
        /// Detected language.
        #[serde(skip_serializing_if = "Option::is_none")]
        language: Option<String>,
        /// Word timings.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        words: Vec<waav_plugin_api::Word>,
        /// Speaker label, when the provider diarises (additive).
        #[serde(skip_serializing_if = "Option::is_none")]
        speaker: Option<String>,
    },
    /// The session's VAD heard speech start or stop (additive; only with a VAD processor).
    SpeechEvent {
        /// `started` or `stopped`.
        event: &'static str,
        /// When, in ms of audio received.
        audio_ms: u64,
    },
    /// The user spoke over interruptible TTS audio, which was cleared (barge-in; additive).
    TtsInterrupted {
        /// Milliseconds since the Unix epoch.
        timestamp: u64,
    },
    /// A provider failed and the next of its chain took over (additive).
    ProviderSwitched {
        /// `stt` or `tts`.
        role: &'static str,
        /// The failed provider.
        from: &'static str,
        /// The provider now serving.
        to: &'static str,
        /// Why.
        reason: String,
    },
    /// `/realtime`: the provider session exists.
    SessionCreated {
        /// Provider session id.
        session_id: String,
        /// Provider id.
        provider: &'static str,
        /// Model in use.
        model: String,
    },
    /// `/realtime`: settings were applied.
    SessionUpdated,
    /// `/realtime`: transcript text of either side.
    Transcript {
        /// The text.
        text: String,
        /// `user` or `assistant`.
        role: waav_plugin_api::Role,
        /// Final or partial.
        is_final: bool,
    },
    /// `/realtime`: the model calls a function; answer with `function_result`.
    FunctionCall {
        /// Call id.
        call_id: String,
        /// Function name.
        name: String,
        /// Arguments (JSON text).
        arguments: String,
    },
    /// `/realtime`: a response finished or was cancelled.
    ResponseDone {
        /// Provider response id.
        response_id: String,
    },
    /// `/realtime`: the user spoke over the response, which stopped (additive).
    ResponseInterrupted,
    /// The TTS queue drained.
    TtsPlaybackComplete {
        /// Milliseconds since the Unix epoch.
        timestamp: u64,
    },
    /// An error; the connection stays open unless stated.
    Error {
        /// Human-readable message.
        message: String,
        /// Machine-readable code.
        code: &'static str,
    },
    /// SIP transfer failed.
    SipTransferError {
        /// Why.
        message: String,
    },
    /// Send `auth` first.
    AuthRequired,
    /// Authentication succeeded.
    Authenticated {
        /// The client id.
        id: String,
    },
    /// A route plugin's reply to `custom`.
    PluginResponse {
        /// Echo of the request's type.
        message_type: String,
        /// The reply.
        payload: serde_json::Value,
    },
}

impl ServerMessage {
    /// The `type` tag, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Ready { .. } => "ready",
            Self::SttResult { .. } => "stt_result",
            Self::SpeechEvent { .. } => "speech_event",
            Self::TtsInterrupted { .. } => "tts_interrupted",
            Self::TtsPlaybackComplete { .. } => "tts_playback_complete",
            Self::SessionCreated { .. } => "session_created",
            Self::ProviderSwitched { .. } => "provider_switched",
            Self::SessionUpdated => "session_updated",
            Self::Transcript { .. } => "transcript",
            Self::FunctionCall { .. } => "function_call",
            Self::ResponseDone { .. } => "response_done",
            Self::ResponseInterrupted => "response_interrupted",
            Self::Error { .. } => "error",
            Self::SipTransferError { .. } => "sip_transfer_error",
            Self::AuthRequired => "auth_required",
            Self::Authenticated { .. } => "authenticated",
            Self::PluginResponse { .. } => "plugin_response",
        }
    }

    /// An `error` message.
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Self::Error {
            message: message.into(),
            code,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_messages_and_ignores_unknown_fields() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"speak","text":"hi","extra":1}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Speak {
                text: "hi".into(),
                flush: None,
                allow_interruption: None
            }
        );
        let m: ClientMessage = serde_json::from_str(r#"{"type":"clear"}"#).unwrap();
        assert_eq!(m, ClientMessage::Clear);
    }

    #[test]
    fn numbers_are_strict_and_stt_fields_required() {
        let base = r#"{"type":"config","stt_config":{"provider":"x","language":"en-US","sample_rate":16000.5,"channels":1,"punctuation":true,"encoding":"linear16","model":""}}"#;
        assert!(serde_json::from_str::<ClientMessage>(base).is_err());
        let missing = r#"{"type":"config","stt_config":{"provider":"x","language":"en-US","sample_rate":16000,"channels":1,"encoding":"linear16","model":""}}"#;
        let e = serde_json::from_str::<ClientMessage>(missing).unwrap_err();
        assert!(e.to_string().contains("punctuation"), "{e}");
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"dance"}"#).is_err());
    }

    #[test]
    fn server_messages_have_the_wire_shape() {
        let v = serde_json::to_value(ServerMessage::Ready {
            stream_id: "s".into(),
            livekit_url: String::new(),
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"ready","stream_id":"s","livekit_url":""})
        );
        let v = serde_json::to_value(ServerMessage::SttResult {
            transcript: String::new(),
            is_final: true,
            is_speech_final: true,
            confidence: 1.0,
            provider: None,
            language: None,
            words: vec![],
            speaker: None,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type":"stt_result","transcript":"","is_final":true,"is_speech_final":true,"confidence":1.0})
        );
        let v = serde_json::to_value(ServerMessage::AuthRequired).unwrap();
        assert_eq!(v, serde_json::json!({"type":"auth_required"}));
    }
}

/// Largest `instructions` of a `/realtime` session.
pub const MAX_INSTRUCTIONS: usize = 64 * 1024;
/// Most tools of a `/realtime` session.
pub const MAX_TOOLS: usize = 128;

/// A `/realtime` client message.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RealtimeClientMessage {
    /// Open (or replace) the provider session.
    Config(Box<RealtimeConfig>),
    /// Change settings of the open session.
    UpdateSession(Box<RealtimeConfig>),
    /// User text.
    Text {
        /// The text.
        text: String,
    },
    /// Ask for a response now.
    CreateResponse,
    /// Stop the response in progress.
    CancelResponse,
    /// Commit buffered input audio (manual turn detection).
    CommitAudio,
    /// Discard buffered input audio.
    ClearAudio,
    /// Answer a `function_call`.
    FunctionResult {
        /// The call answered.
        call_id: String,
        /// Its result (usually JSON text).
        result: String,
    },
    /// Authenticate a pending connection.
    Auth {
        /// The token.
        token: String,
    },
}

impl RealtimeClientMessage {
    /// The `type` tag, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::UpdateSession(_) => "update_session",
            Self::Text { .. } => "text",
            Self::CreateResponse => "create_response",
            Self::CancelResponse => "cancel_response",
            Self::CommitAudio => "commit_audio",
            Self::ClearAudio => "clear_audio",
            Self::FunctionResult { .. } => "function_result",
            Self::Auth { .. } => "auth",
        }
    }
}

/// `/realtime` settings (`config` and `update_session`); every field optional.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealtimeConfig {
    /// Provider id or alias (default `openai`).
    #[serde(default)]
    pub provider: Option<String>,
    /// Model.
    #[serde(default)]
    pub model: Option<String>,
    /// Voice.
    #[serde(default)]
    pub voice: Option<String>,
    /// System instructions.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Sampling temperature (0–2).
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Cap on response tokens (1–100000).
    #[serde(default)]
    pub max_response_tokens: Option<u32>,
    /// `{mode: server_vad, threshold?, silence_duration_ms?, prefix_padding_ms?}`,
    /// `{mode: semantic, eagerness?}` or `{mode: manual}`.
    #[serde(default)]
    pub turn_detection: Option<serde_json::Value>,
    /// Tools `[{type, function: {name, description?, parameters?}}]`.
    #[serde(default)]
    pub tools: Option<Vec<serde_json::Value>>,
    /// Output modalities (`audio`, `text`).
    #[serde(default)]
    pub modalities: Option<Vec<String>>,
    /// Transcribe the user's audio too.
    #[serde(default)]
    pub transcribe_input: Option<bool>,
    /// Client audio in: `pcm16` (linear16, default 24 kHz), `g711_ulaw`, `g711_alaw` (8 kHz), or
    /// any encoding name `/ws` takes.
    #[serde(default)]
    pub input_audio_format: Option<String>,
    /// Client audio out, same names.
    #[serde(default)]
    pub output_audio_format: Option<String>,
    /// Rate of the input audio (additive; default by format).
    #[serde(default)]
    pub input_sample_rate: Option<u32>,
    /// Rate of the output audio (additive; default by format).
    #[serde(default)]
    pub output_sample_rate: Option<u32>,
    /// Per-session key override (additive).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Processor instances run on the input audio, in order (additive; replaces
    /// `plugins.pipelines.default_stt_pre`, `[]` for none).
    #[serde(default)]
    pub pipeline: Option<Vec<String>>,
    /// Processor instances run on the output audio, in order (additive; replaces
    /// `plugins.pipelines.default_tts_post`, `[]` for none).
    #[serde(default)]
    pub output_pipeline: Option<Vec<String>>,
    /// Text processor instances run on the user's transcripts before they are sent (additive;
    /// replaces `plugins.pipelines.default_stt_post`, `[]` for none).
    #[serde(default)]
    pub post_pipeline: Option<Vec<String>>,
}

impl RealtimeConfig {
    /// Checks every number and size before anything is resolved or dialled.
    pub fn validate(&self) -> Result<(), String> {
        for (field, value) in [
            ("provider", &self.provider),
            ("model", &self.model),
            ("voice", &self.voice),
            ("input_audio_format", &self.input_audio_format),
            ("output_audio_format", &self.output_audio_format),
        ] {
            check_len(field, value.as_deref().unwrap_or(""), MAX_NAME)?;
        }
        check_len(
            "instructions",
            self.instructions.as_deref().unwrap_or(""),
            MAX_INSTRUCTIONS,
        )?;
        check_len(
            "api_key",
            self.api_key.as_deref().unwrap_or(""),
            MAX_API_KEY,
        )?;
        if let Some(t) = self.temperature.filter(|t| !(0.0..=2.0).contains(t)) {
            return Err(format!("temperature {t} is out of range 0–2"));
        }
        if let Some(n) = self
            .max_response_tokens
            .filter(|n| !(1..=100_000).contains(n))
        {
            return Err(format!("max_response_tokens {n} is out of range 1–100000"));
        }
        for rate in [self.input_sample_rate, self.output_sample_rate]
            .into_iter()
            .flatten()
        {
            check_rate(rate)?;
        }
        if let Some(tools) = &self.tools {
            if tools.len() > MAX_TOOLS {
                return Err(format!("{} tools; at most {MAX_TOOLS}", tools.len()));
            }
            for t in tools {
                let name = t
                    .pointer("/function/name")
                    .or_else(|| t.get("name"))
                    .and_then(|n| n.as_str());
                if name.is_none_or(|n| n.is_empty() || n.len() > MAX_NAME) {
                    return Err("every tool needs a function name (1–256 bytes)".into());
                }
            }
        }
        if let Some(m) = &self.modalities {
            if m.iter().any(|m| m != "audio" && m != "text") || m.len() > 2 {
                return Err("modalities are \"audio\" and/or \"text\"".into());
            }
        }
        if let Some(td) = &self.turn_detection {
            check_turn_detection(td)?;
        }
        check_pipeline(self.pipeline.as_deref())?;
        check_pipeline(self.output_pipeline.as_deref())?;
        check_pipeline(self.post_pipeline.as_deref())?;
        Ok(())
    }
}

fn check_turn_detection(td: &serde_json::Value) -> Result<(), String> {
    let mode = td
        .get("mode")
        .and_then(|m| m.as_str())
        .ok_or("turn_detection needs a mode: server_vad, semantic or manual")?;
    let num = |key: &str, range: std::ops::RangeInclusive<f64>| -> Result<(), String> {
        match td.get(key) {
            None | Some(serde_json::Value::Null) => Ok(()),
            Some(v) => match v.as_f64() {
                Some(n) if range.contains(&n) => Ok(()),
                _ => Err(format!(
                    "turn_detection.{key} must be a number in {}–{}",
                    range.start(),
                    range.end()
                )),
            },
        }
    };
    match mode {
        "server_vad" => {
            num("threshold", 0.0..=1.0)?;
            num("silence_duration_ms", 0.0..=10_000.0)?;
            num("prefix_padding_ms", 0.0..=10_000.0)
        }
        "semantic" => match td.get("eagerness").and_then(|e| e.as_str()) {
            None | Some("low" | "medium" | "high" | "auto") => Ok(()),
            Some(e) => Err(format!(
                "turn_detection.eagerness {e:?} must be low, medium, high or auto"
            )),
        },
        "manual" => Ok(()),
        other => Err(format!(
            "turn_detection.mode {other:?} must be server_vad, semantic or manual"
        )),
    }
}
