//! Text-to-speech provider plugins and their per-session channels.

use crate::{
    AudioEncoding, Credentials, Plugin, PluginConfig, PluginError, ProviderTask, Secret, VoiceInfo,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};

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
    /// Encoding of the audio to produce.
    pub encoding: AudioEncoding,
    /// Sample rate of the audio to produce.
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

    /// Applies the pronunciation overrides to `text` (whole words, case-sensitive). The host
    /// calls it once per request; plugins receive the result.
    pub fn apply_pronunciations(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for p in &self.pronunciations {
            out = replace_word(&out, &p.word, &p.pronunciation);
        }
        out
    }
}

/// Replaces whole-word occurrences of `word`. Word boundaries are judged against the original
/// text (not what is left after the previous match), in one linear pass per word.
fn replace_word(text: &str, word: &str, with: &str) -> String {
    if word.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (pos, _) in text.match_indices(word) {
        if pos < copied {
            continue; // overlaps a replaced match
        }
        let before_ok = text[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let end = pos + word.len();
        let after_ok = text[end..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_alphanumeric());
        if before_ok && after_ok {
            out.push_str(&text[copied..pos]);
            out.push_str(with);
            copied = end;
        }
    }
    out.push_str(&text[copied..]);
    out
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

/// The request side of a TTS session: keeps `speak` requests in order and applies `Cancel`, so a
/// plugin only has to synthesise. Owns the session's input channel.
///
/// It reads ahead (so a `Cancel` behind queued requests is seen early) but never holds more than
/// [`SpeakQueue::MAX_QUEUED`] requests: past that it leaves input in the bounded channel, which
/// pushes back on the host. The host itself bounds requests per session far below that.
///
/// ```
/// # use waav_plugin_api::*;
/// # async fn serve(io: TtsIo) {
/// let TtsIo { input, events } = io;
/// let mut requests = SpeakQueue::new(input);
/// while let Some(req) = requests.next().await {
///     for chunk in [bytes::Bytes::from_static(&[0; 640])] {
///         if requests.is_cancelled(req.id) {
///             break; // `clear`ed: stop synthesising this request
///         }
///         let _ = events.send(TtsEvent::Audio { id: req.id, data: chunk }).await;
///     }
///     let _ = events.send(TtsEvent::Done { id: req.id }).await;
/// }
/// # }
/// ```
#[derive(Debug)]
pub struct SpeakQueue {
    input: tokio::sync::mpsc::Receiver<TtsInput>,
    queue: std::collections::VecDeque<SpeakRequest>,
    cancelled: u64,
}

impl SpeakQueue {
    /// Most requests held after reading ahead.
    pub const MAX_QUEUED: usize = 16 * 1024;

    /// Wraps a session's input channel.
    pub fn new(input: tokio::sync::mpsc::Receiver<TtsInput>) -> Self {
        Self {
            input,
            queue: std::collections::VecDeque::new(),
            cancelled: 0,
        }
    }

    fn accept(&mut self, input: TtsInput) {
        match input {
            TtsInput::Speak(r) if r.id > self.cancelled => self.queue.push_back(r),
            TtsInput::Speak(_) => {}
            TtsInput::Cancel { up_to } => {
                self.cancelled = self.cancelled.max(up_to);
                self.queue.retain(|r| r.id > up_to);
            }
        }
    }

    fn poll_input(&mut self) {
        while self.queue.len() < Self::MAX_QUEUED {
            let Ok(input) = self.input.try_recv() else {
                break;
            };
            self.accept(input);
        }
    }

    /// The next request to synthesise, waiting for one; `None` once the host closed the session.
    pub async fn next(&mut self) -> Option<SpeakRequest> {
        loop {
            self.poll_input();
            if let Some(r) = self.queue.pop_front() {
                return Some(r);
            }
            let input = self.input.recv().await?;
            self.accept(input);
        }
    }

    /// Whether request `id` has been cancelled (reads pending input first). Check it between
    /// chunks to stop work the host will discard anyway.
    pub fn is_cancelled(&mut self, id: u64) -> bool {
        self.poll_input();
        id <= self.cancelled
    }
}

/// The channels a TTS session works with.
pub type TtsIo = crate::SessionIo<TtsInput, TtsEvent>;
/// The host's ends of a TTS session's channels.
pub type TtsPeer = crate::SessionPeer<TtsInput, TtsEvent>;

/// A text-to-speech provider.
#[async_trait::async_trait]
pub trait TtsPlugin: Plugin {
    /// Opens a session: validates `config`, connects (the host applies a timeout) and returns the
    /// task that serves requests from `io.input` until it closes.
    async fn connect(
        &self,
        config: TtsSessionConfig,
        io: TtsIo,
    ) -> Result<ProviderTask, PluginError>;

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
    async fn speak_queue_orders_and_cancels() {
        let (io, peer) = TtsIo::pair(8);
        let mut q = SpeakQueue::new(io.input);
        let speak = |id| {
            TtsInput::Speak(SpeakRequest {
                id,
                text: String::new(),
                flush: true,
            })
        };
        for input in [
            speak(1),
            speak(2),
            speak(3),
            TtsInput::Cancel { up_to: 2 },
            speak(4),
        ] {
            peer.input.send(input).await.unwrap();
        }
        assert_eq!(q.next().await.unwrap().id, 3);
        assert!(!q.is_cancelled(3));
        peer.input
            .send(TtsInput::Cancel { up_to: 3 })
            .await
            .unwrap();
        assert!(q.is_cancelled(3));
        assert_eq!(q.next().await.unwrap().id, 4);
        drop(peer);
        assert!(q.next().await.is_none());
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
