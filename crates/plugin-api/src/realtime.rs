//! Speech-to-speech (realtime) provider plugins and their per-session channels.

use crate::{AudioFormat, Credentials, Plugin, PluginConfig, PluginError, ProviderTask, Secret};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Per-session realtime settings (the client's `config` / `update_session` on `/realtime`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RealtimeSessionConfig {
    /// Model id; empty means the provider default.
    #[serde(default)]
    pub model: String,
    /// Voice id; empty means the provider default.
    #[serde(default)]
    pub voice: String,
    /// System instructions.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Cap on response tokens.
    #[serde(default)]
    pub max_response_tokens: Option<u32>,
    /// Turn detection settings, tagged by `mode` (`server_vad`, `semantic`, `manual`).
    #[serde(default)]
    pub turn_detection: Option<serde_json::Value>,
    /// Tool definitions, passed through.
    #[serde(default)]
    pub tools: Vec<serde_json::Value>,
    /// Output modalities (`audio`, `text`).
    #[serde(default)]
    pub modalities: Vec<String>,
    /// Transcribe the user's audio too.
    #[serde(default)]
    pub transcribe_input: bool,
    /// Format of the input audio the plugin receives, chosen by the host from the plugin's
    /// declared capabilities (the host converts the client's audio to it).
    #[serde(skip, default = "default_format")]
    pub input_format: AudioFormat,
    /// Format of the output audio the plugin produces (the host converts it for the client).
    #[serde(skip, default = "default_format")]
    pub output_format: AudioFormat,
    /// The API key to use.
    #[serde(skip)]
    pub api_key: Option<Secret>,
    /// The plugin's config section.
    #[serde(skip)]
    pub plugin_config: PluginConfig,
    /// Every resolved credential, by field name.
    #[serde(skip)]
    pub credentials: Credentials,
}

fn default_format() -> AudioFormat {
    AudioFormat::linear16(24_000)
}

impl Default for RealtimeSessionConfig {
    fn default() -> Self {
        Self {
            model: String::new(),
            voice: String::new(),
            instructions: None,
            temperature: None,
            max_response_tokens: None,
            turn_detection: None,
            tools: Vec::new(),
            modalities: Vec::new(),
            transcribe_input: false,
            input_format: default_format(),
            output_format: default_format(),
            api_key: None,
            plugin_config: PluginConfig::default(),
            credentials: Credentials::default(),
        }
    }
}

/// What the host sends to a realtime session.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeInput {
    /// User audio, in [`RealtimeSessionConfig::input_format`].
    Audio(Bytes),
    /// User text.
    Text(String),
    /// Ask for a response now.
    CreateResponse,
    /// Cancel the response in progress.
    CancelResponse,
    /// Commit buffered input audio (manual turn detection).
    CommitAudio,
    /// Discard buffered input audio.
    ClearAudio,
    /// The result of a function call.
    FunctionResult {
        /// The call being answered.
        call_id: String,
        /// Its result (usually JSON text).
        result: String,
    },
    /// Change session settings.
    UpdateSession(Box<RealtimeSessionConfig>),
}

/// Speaker of a realtime transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The human.
    User,
    /// The model.
    Assistant,
}

/// What a realtime session emits, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeEvent {
    /// The provider session exists.
    SessionCreated {
        /// Provider session id.
        session_id: String,
        /// Model in use.
        model: String,
    },
    /// Settings were applied.
    SessionUpdated,
    /// Transcript text.
    Transcript {
        /// The text.
        text: String,
        /// Who spoke.
        role: Role,
        /// Final or partial.
        is_final: bool,
    },
    /// Speech started or stopped in the input.
    Speech {
        /// `true` on start, `false` on stop.
        started: bool,
        /// Position in the input audio, in ms.
        audio_ms: u64,
    },
    /// The model calls a function.
    FunctionCall {
        /// Call id to answer with.
        call_id: String,
        /// Function name.
        name: String,
        /// Arguments (JSON text).
        arguments: String,
    },
    /// A response finished (or was cancelled).
    ResponseDone {
        /// Provider response id.
        response_id: String,
    },
    /// The provider detected the user talking over the response and stopped it (barge-in);
    /// audio already sent for it should not be played further.
    Interrupted,
    /// Output audio, in [`RealtimeSessionConfig::output_format`].
    Audio(Bytes),
    /// A non-fatal error.
    Error(PluginError),
}

/// The channels a realtime session works with.
pub type RealtimeIo = crate::SessionIo<RealtimeInput, RealtimeEvent>;
/// The host's ends of a realtime session's channels.
pub type RealtimePeer = crate::SessionPeer<RealtimeInput, RealtimeEvent>;

/// A speech-to-speech provider.
///
/// Declare the audio formats the vendor takes and produces in [`Plugin::capabilities`]
/// (`encodings`, `sample_rates`): the host converts the client's audio both ways, so a plugin
/// handles only its vendor's formats.
#[async_trait::async_trait]
pub trait RealtimePlugin: Plugin {
    /// Opens a session (the host applies a connect timeout) and returns its task, which emits
    /// [`RealtimeEvent::SessionCreated`] first, then events in order until `io.input` closes.
    async fn connect(
        &self,
        config: RealtimeSessionConfig,
        io: RealtimeIo,
    ) -> Result<ProviderTask, PluginError>;
}
