//! Text-to-speech provider plugins and their per-session channels.

use crate::{
    AudioEncoding, Credentials, Plugin, PluginConfig, PluginError, ProviderTask, Secret, VoiceInfo,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A pronunciation override: say `word` as `pronunciation`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pronunciation {
    /// The word as written.
    pub word: String,
    /// How to say it (respelling or phonemes, provider-dependent).
    pub pronunciation: String,
}

/// Emotion and delivery hints; providers map what they support and ignore the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Emotion {
    /// Emotion name (`happy`, `calm`, …).
    pub emotion: Option<String>,
    /// Intensity 0–1 (the host maps `low`/`medium`/`high` to 0.3/0.6/0.9).
    pub intensity: Option<f32>,
    /// Delivery style (`whispered`, `storytelling`, …).
    pub delivery_style: Option<String>,
    /// Free-text description.
    pub description: Option<String>,
}

impl Emotion {
    /// Whether no field is set.
    pub fn is_empty(&self) -> bool {
        self.emotion.is_none()
            && self.intensity.is_none()
            && self.delivery_style.is_none()
            && self.description.is_none()
    }
}

/// Per-session TTS settings, resolved by the host from the client's `tts_config`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TtsSessionConfig {
    /// Voice id; empty means the provider default.
    pub voice_id: String,
    /// Model id; empty means the provider default.
    pub model: String,
    /// Speaking rate multiplier (1.0 normal).
    pub speaking_rate: f32,
    /// Encoding of the audio the plugin produces: chosen by the host from the plugin's declared
    /// encodings (the client's own when the plugin offers it, else PCM the host converts).
    pub encoding: AudioEncoding,
    /// Sample rate of the audio the plugin produces (mono), chosen the same way.
    pub sample_rate: u32,
    /// Pronunciation overrides, for reference (cache keys, SSML lexicons): the host has already
    /// applied them to every [`SpeakRequest::text`], so a plugin must not apply them again.
    pub pronunciations: Vec<Pronunciation>,
    /// Emotion and delivery hints.
    pub emotion: Emotion,
    /// The API key to use. `None` for keyless plugins.
    pub api_key: Option<Secret>,
    /// The plugin's config section.
    pub plugin_config: PluginConfig,
    /// Every resolved credential (the client's per-session values, else the instance's), by
    /// field name; `api_key` is also in [`Self::api_key`].
    pub credentials: Credentials,
}

impl TtsSessionConfig {
    /// A config producing `encoding` at `sample_rate` with default voice and model.
    pub fn new(encoding: AudioEncoding, sample_rate: u32) -> Self {
        Self {
            voice_id: String::new(),
            model: String::new(),
            speaking_rate: 1.0,
            encoding,
            sample_rate,
            pronunciations: Vec::new(),
            emotion: Emotion::default(),
            api_key: None,
            plugin_config: PluginConfig::default(),
            credentials: Credentials::default(),
        }
    }

    /// Sets the voice.
    pub fn with_voice(mut self, voice: impl Into<String>) -> Self {
        self.voice_id = voice.into();
        self
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

    /// Applies the pronunciation overrides to `text` (whole words, case-sensitive; see
    /// [`replace_words`](crate::replace_words)). The host calls it once per request; plugins
    /// receive the result.
    pub fn apply_pronunciations(&self, text: &str) -> String {
        crate::processor::replace_words(text, &self.pronunciations)
    }
}

/// One piece of text to synthesise.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakRequest {
    /// Host-assigned id, echoed in the events for this request.
    pub id: u64,
    /// The text.
    pub text: String,
    /// Synthesize now rather than waiting for more text (streaming-input providers).
    pub flush: bool,
}

/// What the host sends to a TTS session, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum TtsInput {
    /// Synthesise a request. Requests are handled in order.
    Speak(SpeakRequest),
    /// Drop all requests with id ≤ `up_to` that are queued or in flight. The host already discards
    /// their audio; honouring this saves provider work.
    Cancel {
        /// The highest id to cancel.
        up_to: u64,
    },
}

/// What a TTS session emits, in order, through one channel.
#[derive(Debug, Clone, PartialEq)]
pub enum TtsEvent {
    /// A chunk of audio for request `id`, in the session's encoding and sample rate.
    Audio {
        /// The request.
        id: u64,
        /// Audio bytes.
        data: Bytes,
    },
    /// Request `id` is fully synthesised (all its audio was sent before this event).
    Done {
        /// The request.
        id: u64,
    },
    /// Request `id` failed; the session continues with the next request.
    Error {
        /// The request.
        id: u64,
        /// What went wrong.
        error: PluginError,
    },
}

/// How far a session's requests have been cancelled: every id ≤ the value is cancelled.
///
/// Shared between the host and the synthesis of a request, and cheap to poll from a blocking
/// thread (an inference loop can check it between steps).
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicU64>);

impl CancelFlag {
    /// A flag with nothing cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every request with id ≤ `up_to` (never un-cancels).
    pub fn cancel_up_to(&self, up_to: u64) {
        self.0.fetch_max(up_to, Ordering::AcqRel);
    }

    /// Whether request `id` is cancelled.
    pub fn is_cancelled(&self, id: u64) -> bool {
        id <= self.0.load(Ordering::Acquire)
    }
}

/// Where a TTS plugin writes the audio of one request.
///
/// Audio is in the format of [`TtsSessionConfig::encoding`] and [`TtsSessionConfig::sample_rate`]
/// (mono), which the host chose from the plugin's declared capabilities; chunks may have any size,
/// even split mid-sample: the host re-frames. Sending waits while the host's bounded queue is
/// full, which paces a plugin that synthesises faster than real time.
#[derive(Debug, Clone)]
pub struct AudioSink {
    id: u64,
    events: tokio::sync::mpsc::Sender<TtsEvent>,
    cancel: CancelFlag,
}

/// Why [`AudioSink::send`] did not take the audio: stop synthesising this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SinkClosed {
    /// The request was cancelled (`clear`, or an earlier timeout).
    #[error("the request was cancelled")]
    Cancelled,
    /// The session ended.
    #[error("the session ended")]
    SessionEnded,
}

impl AudioSink {
    /// A sink for request `id` that emits [`TtsEvent::Audio`] into `events`. The host builds
    /// these; tests and conformance suites may too.
    pub fn new(id: u64, events: tokio::sync::mpsc::Sender<TtsEvent>, cancel: CancelFlag) -> Self {
        Self { id, events, cancel }
    }

    /// The request this sink belongs to.
    pub fn request_id(&self) -> u64 {
        self.id
    }

    /// Whether the request was cancelled: stop work the host would discard.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.is_cancelled(self.id)
    }

    /// The cancellation flag, for blocking code that cannot hold the sink.
    pub fn cancel_flag(&self) -> CancelFlag {
        self.cancel.clone()
    }

    /// Sends a chunk of audio; an empty chunk is ignored.
    pub async fn send(&self, data: Bytes) -> Result<(), SinkClosed> {
        if self.is_cancelled() {
            return Err(SinkClosed::Cancelled);
        }
        if data.is_empty() {
            return Ok(());
        }
        self.events
            .send(TtsEvent::Audio { id: self.id, data })
            .await
            .map_err(|_| SinkClosed::SessionEnded)
    }
}

impl From<SinkClosed> for PluginError {
    fn from(e: SinkClosed) -> Self {
        PluginError::Transient(e.to_string())
    }
}

/// The channels a streaming TTS session works with (see [`TtsPlugin::open_stream`]).
pub type TtsIo = crate::SessionIo<TtsInput, TtsEvent>;
/// The host's ends of a TTS session's channels.
pub type TtsPeer = crate::SessionPeer<TtsInput, TtsEvent>;

/// A text-to-speech provider.
///
/// The host owns everything around synthesis: the per-session queue and its order, `flush`,
/// `clear` (cancellation), pronunciations (requests arrive rewritten), the cache, timeouts, and
/// audio conversion: a plugin produces audio in the format the host put in the config (chosen
/// from [`Capabilities::encodings`](crate::Capabilities) and the declared rates), and the host
/// resamples, encodes, adds the WAV header and frames it for the client.
///
/// Most plugins implement [`synthesize`](Self::synthesize) only. Vendors whose API streams text
/// in over one connection per session (so a sentence can start before the text is complete)
/// implement [`open_stream`](Self::open_stream) as well.
#[async_trait::async_trait]
pub trait TtsPlugin: Plugin {
    /// Checks a session's config before its first request (the host applies the connect
    /// timeout), e.g. that the voice exists. The default accepts it.
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        let _ = config;
        Ok(())
    }

    /// Synthesises one request, writing its audio into `out`, and returns once all of it was
    /// sent. The host calls it for one request at a time per session, in order, and drops the
    /// future when the request is cancelled; blocking work should poll `out.is_cancelled()`.
    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError>;

    /// The lower-level, streaming contract: one provider connection per session, fed every
    /// [`TtsInput`] as it arrives and answering with [`TtsEvent`]s (audio per request id, then
    /// `Done` or `Error`; audio for cancelled ids is discarded by the host). Returns `None` (the
    /// default) to have the host drive [`synthesize`](Self::synthesize) instead.
    async fn open_stream(
        &self,
        config: &TtsSessionConfig,
        io: TtsIo,
    ) -> Result<Option<ProviderTask>, PluginError> {
        let _ = (config, io);
        Ok(None)
    }

    /// Voices for `GET /voices`. The default returns the voices in [`Plugin::capabilities`].
    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let _ = api_key;
        Ok(self.capabilities().voices)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sink_stops_on_cancel_and_on_session_end() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let cancel = CancelFlag::new();
        let sink = AudioSink::new(3, tx, cancel.clone());
        sink.send(Bytes::from_static(&[1, 2])).await.unwrap();
        sink.send(Bytes::new()).await.unwrap();
        assert_eq!(
            rx.recv().await,
            Some(TtsEvent::Audio {
                id: 3,
                data: Bytes::from_static(&[1, 2])
            })
        );
        cancel.cancel_up_to(2);
        assert!(!sink.is_cancelled());
        cancel.cancel_up_to(3);
        cancel.cancel_up_to(1);
        assert!(sink.is_cancelled());
        assert_eq!(
            sink.send(Bytes::from_static(&[1])).await,
            Err(SinkClosed::Cancelled)
        );
        let live = AudioSink::new(4, sink.events.clone(), cancel);
        drop(rx);
        assert_eq!(
            live.send(Bytes::from_static(&[1])).await,
            Err(SinkClosed::SessionEnded)
        );
    }

    #[test]
    fn pronunciations_replace_whole_words() {
        let mut cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
        cfg.pronunciations = vec![Pronunciation {
            word: "SQL".into(),
            pronunciation: "sequel".into(),
        }];
        assert_eq!(
            cfg.apply_pronunciations("SQL and MySQL, SQL."),
            "sequel and MySQL, sequel."
        );
        let one = |word: &str, with: &str, text: &str| {
            let mut c = TtsSessionConfig::new(AudioEncoding::Linear16, 16_000);
            c.pronunciations = vec![Pronunciation {
                word: word.into(),
                pronunciation: with.into(),
            }];
            c.apply_pronunciations(text)
        };
        // Boundaries come from the original text, not from what a previous match left.
        assert_eq!(one("ha", "X", "haha"), "haha");
        assert_eq!(one("a", "b", "aa"), "aa");
        assert_eq!(one("a", "b", "a a"), "b b");
        assert_eq!(one("é", "e", "é café é"), "e café e");
    }
}
