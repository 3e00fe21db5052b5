//! Speech-to-text provider plugins and their per-session channels.

use crate::{AudioEncoding, Credentials, Plugin, PluginConfig, PluginError, Secret};
use bytes::Bytes;
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;

/// The running half of a provider session, spawned and supervised by the host.
///
/// It ends when the input channel closes (the host hung up) or on a fatal error. The host catches
/// a panic inside it and reports it as [`PluginError::Panicked`] to that session alone.
pub type ProviderTask = Pin<Box<dyn Future<Output = Result<(), PluginError>> + Send + 'static>>;

/// Per-session STT settings, resolved by the host from the client's `stt_config`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SttSessionConfig {
    /// BCP-47 language, e.g. `en-US`.
    pub language: String,
    /// Sample rate of the audio the client sends.
    pub sample_rate: u32,
    /// Interleaved channels of the audio.
    pub channels: u16,
    /// Encoding of the audio.
    pub encoding: AudioEncoding,
    /// Add punctuation to transcripts.
    pub punctuation: bool,
    /// Model id; empty means the provider default.
    pub model: String,
    /// The API key to use: the client's override, else the server's. `None` for keyless plugins.
    pub api_key: Option<Secret>,
    /// Provider-specific options (the plugin's config section, for defaults such as a base URL).
    pub plugin_config: PluginConfig,
    /// Every resolved credential (the client's per-session values, else the instance's), by
    /// field name; `api_key` is also in [`Self::api_key`].
    pub credentials: Credentials,
    /// The session's pre-STT pipeline has a voice activity detector: [`SttInput::Vad`]
    /// boundaries will come, and a plugin that cuts utterances itself should follow them rather
    /// than run a detector of its own (one VAD decides for every provider).
    pub vad_events: bool,
}

impl SttSessionConfig {
    /// A config for mono PCM16 at `sample_rate` in `language`, with defaults elsewhere.
    pub fn new(language: impl Into<String>, sample_rate: u32) -> Self {
        Self {
            language: language.into(),
            sample_rate,
            channels: 1,
            encoding: AudioEncoding::Linear16,
            punctuation: true,
            model: String::new(),
            api_key: None,
            plugin_config: PluginConfig::default(),
            credentials: Credentials::default(),
            vad_events: false,
        }
    }

    /// Sets the model.
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model = model.into();
        self
    }

    /// Sets the API key.
    pub fn with_api_key(mut self, key: Option<Secret>) -> Self {
        self.api_key = key;
        self
    }

    /// Sets the encoding and channel count.
    pub fn with_format(mut self, encoding: AudioEncoding, channels: u16) -> Self {
        self.encoding = encoding;
        self.channels = channels;
        self
    }

    /// Sets the plugin config section.
    pub fn with_plugin_config(mut self, config: PluginConfig) -> Self {
        self.plugin_config = config;
        self
    }

    /// Sets the resolved credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = credentials;
        self
    }
}

/// What the host sends to an STT session, in order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SttInput {
    /// A chunk of audio in the session's format (any size).
    Audio(Bytes),
    /// Finish the current utterance now (flush buffered audio into a final result).
    Finalize,
    /// The session's voice activity detector (a pre-STT processor) marked a speech boundary.
    /// Providers that cut utterances themselves (request/response transcription) segment on
    /// these; streaming providers with their own endpointing may ignore them.
    Vad(VadEvent),
}

/// A speech boundary from the session's VAD, timed on the audio stream sent to the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// Speech began this many ms into the stream.
    SpeechStarted {
        /// Offset in the stream, ms.
        at_ms: u64,
    },
    /// Speech ended this many ms into the stream.
    SpeechEnded {
        /// Offset in the stream, ms.
        at_ms: u64,
    },
}

/// One word with timing, when the provider reports them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Word {
    /// The word as transcribed.
    pub word: String,
    /// Start in seconds from the stream start.
    pub start: f64,
    /// End in seconds from the stream start.
    pub end: f64,
    /// Confidence 0–1.
    pub confidence: f32,
    /// Speaker label when the provider diarises (`"0"`, `"1"`, or the vendor's label).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub speaker: Option<String>,
}

/// A transcription result.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Transcript {
    /// The text.
    pub text: String,
    /// The text of this segment will not change.
    pub is_final: bool,
    /// The provider detected the end of the speaker's turn.
    pub is_speech_final: bool,
    /// Confidence 0–1.
    pub confidence: f32,
    /// Word timings, if any.
    pub words: Vec<Word>,
    /// Detected language, if reported.
    pub language: Option<String>,
    /// Speaker label of the whole segment when the provider diarises.
    pub speaker: Option<String>,
}

impl Transcript {
    /// An interim (non-final) result.
    pub fn interim(text: impl Into<String>, confidence: f32) -> Self {
        Self {
            text: text.into(),
            confidence,
            ..Self::default()
        }
    }

    /// A final result; `speech_final` marks the end of the turn too.
    pub fn final_result(text: impl Into<String>, confidence: f32, speech_final: bool) -> Self {
        Self {
            text: text.into(),
            is_final: true,
            is_speech_final: speech_final,
            confidence,
            ..Self::default()
        }
    }
}

/// What an STT session emits, in order, through one channel.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// A transcript (interim or final). Boxed: events wait in a channel whose slots all take the
    /// largest variant's size, and a session holds one such channel even when idle.
    Transcript(Box<Transcript>),
    /// The provider heard speech begin.
    SpeechStarted,
    /// The provider detected the end of an utterance without a transcript attached.
    UtteranceEnd,
    /// A non-fatal error; the session continues. Fatal errors end the task instead.
    Error(PluginError),
}

impl From<Transcript> for SttEvent {
    fn from(t: Transcript) -> Self {
        Self::Transcript(Box::new(t))
    }
}

/// The channels an STT session works with.
pub type SttIo = crate::SessionIo<SttInput, SttEvent>;
/// The host's ends of an STT session's channels.
pub type SttPeer = crate::SessionPeer<SttInput, SttEvent>;

/// A speech-to-text provider.
#[async_trait::async_trait]
pub trait SttPlugin: Plugin {
    /// Opens a session: validates `config`, connects to the provider (the host applies a timeout),
    /// and returns the task that moves audio in and events out over `io` until `io.input` closes.
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError>;
}
