//! Speech-to-speech (realtime) provider plugins and their per-session channels.

use crate::{Credentials, Plugin, PluginConfig, PluginError, ProviderTask, Secret};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Per-session realtime settings (the client's `config` / `update_session` on `/realtime`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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

/// What the host sends to a realtime session.
#[derive(Debug, Clone, PartialEq)]
pub enum RealtimeInput {
    /// User audio.
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
    /// A response finished.
    ResponseDone {
        /// Provider response id.
        response_id: String,
    },
    /// Output audio.
    Audio(Bytes),
    /// A non-fatal error.
    Error(PluginError),
}

/// The channels a realtime session works with.
pub type RealtimeIo = crate::SessionIo<RealtimeInput, RealtimeEvent>;
/// The host's ends of a realtime session's channels.
pub type RealtimePeer = crate::SessionPeer<RealtimeInput, RealtimeEvent>;

/// A speech-to-speech provider.
#[async_trait::async_trait]
pub trait RealtimePlugin: Plugin {
    /// Opens a session and returns its task.
    async fn connect(
        &self,
        config: RealtimeSessionConfig,
        io: RealtimeIo,
    ) -> Result<ProviderTask, PluginError>;
}
