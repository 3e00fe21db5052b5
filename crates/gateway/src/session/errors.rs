//! Every client-facing `/ws` error, with its exact message and machine-readable code.

use super::protocol::ServerMessage;
use crate::registry::LookupError;
use waav_plugin_api::PluginError;

/// An error reported to the client as `{"type":"error","message",…,"code"}`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WsError {
    /// Text frame over 1 MiB.
    #[error("Message too large: {0} bytes (max 1048576 bytes)")]
    MessageTooLarge(usize),
    /// Binary frame over 5 MiB.
    #[error("Audio frame too large: {0} bytes (max 5242880 bytes)")]
    AudioFrameTooLarge(usize),
    /// Unparseable JSON, unknown type, wrong field types.
    #[error("Invalid message format: {0}")]
    InvalidFormat(String),
    /// A field over its size limit.
    #[error("Field {field} too large: {size} bytes (max {max} bytes)")]
    FieldTooLarge {
        /// `speak.text`, `config.stream_id`, …
        field: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// No client message for the idle timeout.
    #[error("Connection closed due to inactivity")]
    Idle,
    /// Audio before a successful config with audio.
    #[error("Audio processing is disabled. Send config message with audio=true first.")]
    AudioDisabled,
    /// Audio with no STT provider configured.
    #[error("STT is not configured for this session. Send config message with stt_config first.")]
    SttNotConfigured,
    /// `speak` with no TTS provider configured.
    #[error("TTS is not configured for this session. Send config message with tts_config first.")]
    TtsNotConfigured,
    /// `config` with audio but neither STT nor TTS.
    #[error("At least one of stt_config or tts_config is required when audio=true")]
    NothingToConfigure,
    /// A config value the provider does not support.
    #[error("Invalid {section}: {message}")]
    InvalidConfig {
        /// `stt_config` or `tts_config`.
        section: &'static str,
        /// What is wrong (lists the supported values).
        message: String,
    },
    /// Provider resolution failed.
    #[error("{0}")]
    Lookup(#[from] LookupError),
    /// Providers did not connect in time.
    #[error("Timeout waiting for voice providers to be ready")]
    ProviderTimeout,
    /// A provider failed (connect, a request, or its session ended).
    #[error("{role} provider {provider} failed: {error}")]
    Provider {
        /// `STT` or `TTS`.
        role: &'static str,
        /// Plugin id.
        provider: &'static str,
        /// The plugin's error.
        error: PluginError,
    },
    /// A binary frame that is not a whole number of samples.
    #[error("Audio frame of {len} bytes is not a whole number of {sample_bytes}-byte samples (all channels); frame dropped")]
    MisalignedAudio {
        /// The frame's size.
        len: usize,
        /// Bytes per sample across channels.
        sample_bytes: usize,
    },
    /// The provider cannot keep up with the audio.
    #[error("STT provider {0} is not keeping up; audio dropped")]
    SttBackpressure(&'static str),
    /// A pending-auth connection sent something else.
    #[error("Authentication required. Send auth message first.")]
    AuthRequired,
    /// Bad token.
    #[error("Invalid authentication token")]
    InvalidToken,
    /// `custom` with a type no plugin handles.
    #[error("Unknown custom message type: {0}")]
    UnknownCustomType(String),
    /// A `custom` handler failed, panicked or timed out.
    #[error("Custom message handler for {message_type} failed: {error}")]
    CustomHandler {
        /// The message type.
        message_type: String,
        /// What happened.
        error: PluginError,
    },
    /// A provider did not read its input within the stall bound; it was disconnected.
    #[error("{role} provider {provider} stopped reading its input; disconnected")]
    ProviderStalled {
        /// `STT` or `TTS`.
        role: &'static str,
        /// Plugin id.
        provider: &'static str,
    },
    /// A processor (audio or text) failed (error or panic) and is disabled for the rest of the session;
    /// audio keeps flowing without it.
    #[error("processor {name} failed and is disabled for this session: {error}")]
    ProcessorFailed {
        /// The processor instance.
        name: String,
        /// What went wrong.
        error: PluginError,
    },
    /// Every provider of the chain is behind an open circuit breaker (or failed).
    #[error(
        "{role} provider {provider} is failing (circuit open) and no fallback could take over"
    )]
    CircuitOpen {
        /// `STT` or `TTS`.
        role: &'static str,
        /// Plugin id.
        provider: &'static str,
    },
    /// Too many `speak` requests queued or in flight.
    #[error("TTS queue full: {queued} requests and {bytes} bytes of text pending (max {max_requests} requests, {max_bytes} bytes); wait for tts_playback_complete or send clear")]
    TtsQueueFull {
        /// Requests pending.
        queued: usize,
        /// Text bytes pending.
        bytes: usize,
        /// The request limit.
        max_requests: usize,
        /// The byte limit.
        max_bytes: usize,
    },
    /// No `auth` message within the auth timeout.
    #[error("Authentication timed out: no auth message within {0} s")]
    AuthTimeout(u64),
    /// The server is stopping.
    #[error("Server is shutting down")]
    ShuttingDown,
    /// `send_message` without LiveKit.
    #[error(
        "LiveKit client not configured. Send config message with livekit configuration first."
    )]
    LiveKitNotConfigured,
}

impl WsError {
    /// Machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MessageTooLarge(_) => "message_too_large",
            Self::AudioFrameTooLarge(_) => "audio_frame_too_large",
            Self::InvalidFormat(_) => "invalid_message",
            Self::FieldTooLarge { .. } => "field_too_large",
            Self::Idle => "idle_timeout",
            Self::AudioDisabled => "audio_disabled",
            Self::SttNotConfigured => "stt_not_configured",
            Self::TtsNotConfigured => "tts_not_configured",
            Self::NothingToConfigure => "invalid_config",
            Self::InvalidConfig { .. } => "invalid_config",
            Self::Lookup(e) => e.code(),
            Self::ProviderTimeout => "provider_timeout",
            Self::Provider { error, .. } => error.code(),
            Self::SttBackpressure(_) => "stt_backpressure",
            Self::MisalignedAudio { .. } => "invalid_audio_frame",
            Self::AuthRequired => "auth_required",
            Self::InvalidToken => "invalid_token",
            Self::UnknownCustomType(_) => "unknown_custom_type",
            Self::CustomHandler { .. } => "custom_handler_failed",
            Self::LiveKitNotConfigured => "livekit_not_configured",
            Self::ProviderStalled { .. } => "provider_stalled",
            Self::ProcessorFailed { .. } => "processor_failed",
            Self::CircuitOpen { .. } => "provider_circuit_open",
            Self::TtsQueueFull { .. } => "tts_queue_full",
            Self::AuthTimeout(_) => "auth_timeout",
            Self::ShuttingDown => "server_shutdown",
        }
    }

    /// The provider failure behind this error, when it is one (what breakers count).
    pub fn provider_failure(&self) -> Option<PluginError> {
        match self {
            Self::Provider { error, .. } => Some(error.clone()),
            Self::ProviderTimeout => Some(PluginError::Timeout("connect timed out".into())),
            Self::ProviderStalled { .. } => Some(PluginError::Timeout("stopped reading".into())),
            _ => None,
        }
    }

    /// Checks a field's size.
    pub fn check_size(field: &'static str, size: usize, max: usize) -> Result<(), Self> {
        if size > max {
            Err(Self::FieldTooLarge { field, size, max })
        } else {
            Ok(())
        }
    }
}

impl From<WsError> for ServerMessage {
    fn from(e: WsError) -> Self {
        ServerMessage::error(e.code(), e.to_string())
    }
}
