//! Processors and their plugins: audio processors (VAD, denoise, resample, turn detection) on
//! the audio stages, text processors (redaction, pronunciations) on the text stages.

use crate::{AudioBuffer, Plugin, PluginConfig, PluginError, Pronunciation};
use serde::Serialize;
use std::time::Duration;

/// Where in a session a processor runs. Two stages carry audio ([`AudioProcessor`]), two carry
/// text ([`TextProcessor`]); see [`Stage::is_text`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Audio: client audio before it reaches the STT provider.
    PreStt,
    /// Text: each transcript (interim and final) after the STT provider, before it is sent to
    /// the client.
    PostStt,
    /// Text: each text to speak, before the TTS provider (and the TTS cache) sees it.
    PreTts,
    /// Audio: TTS audio before it is sent to the client.
    PostTts,
}

impl Stage {
    /// Whether the stage carries text (post-STT, pre-TTS) rather than audio.
    pub const fn is_text(self) -> bool {
        matches!(self, Self::PostStt | Self::PreTts)
    }

    /// The snake-case name used in configuration, metrics and listings (`pre_stt`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::PreStt => "pre_stt",
            Self::PostStt => "post_stt",
            Self::PreTts => "pre_tts",
            Self::PostTts => "post_tts",
        }
    }
}

/// Something a processor noticed in the audio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProcessorEvent {
    /// Speech began.
    SpeechStarted,
    /// Speech ended.
    SpeechEnded,
    /// The speaker finished their turn, with the detector's probability.
    EndOfTurn {
        /// 0–1.
        probability: f32,
    },
}

/// A per-session audio processor.
///
/// Real-time safe: `process` never blocks or awaits and, once warmed up, does not allocate.
/// `Sync` because a session is shared by reference across its own awaits (never across tasks).
/// It transforms `audio` in place (it may change its length or sample rate, for resampling) and
/// pushes any events onto `events` (which the pipeline clears between frames).
pub trait AudioProcessor: Send + Sync {
    /// Processes one block of audio.
    fn process(
        &mut self,
        audio: &mut AudioBuffer,
        events: &mut Vec<ProcessorEvent>,
    ) -> Result<(), PluginError>;

    /// Added latency (look-ahead) this processor introduces.
    fn latency(&self) -> Duration {
        Duration::ZERO
    }

    /// Forgets all state (a new utterance or stream).
    fn reset(&mut self) {}
}

/// A per-session text processor, run on each transcript (post-STT) or each text to speak
/// (pre-TTS).
///
/// `process` is synchronous and runs on the session's task: its work must be bounded and linear
/// in the text (the text is client- or provider-controlled, up to the `speak` size limit), so no
/// backtracking pattern matching. It rewrites `text` in place. An error or a panic disables the
/// processor for the session; the host then passes the text on as it was before this processor
/// (a partial rewrite is discarded).
///
/// ```
/// use waav_plugin_api::*;
///
/// struct Upper;
/// impl Plugin for Upper {
///     fn info(&self) -> PluginInfo { PluginInfo::new("upper", "Upper") }
/// }
/// struct Upping;
/// impl TextProcessor for Upping {
///     fn process(&mut self, text: &mut String) -> Result<(), PluginError> {
///         *text = text.to_uppercase();
///         Ok(())
///     }
/// }
/// impl ProcessorPlugin for Upper {
///     fn stages(&self) -> &'static [Stage] { &[Stage::PreTts] }
///     fn create_text(&self, _: &ProcessorContext, _: &PluginConfig) -> Result<Box<dyn TextProcessor>, PluginError> {
///         Ok(Box::new(Upping))
///     }
/// }
///
/// let cfg = PluginConfig::default();
/// let mut p = Upper.create_text(&ProcessorContext::text(Stage::PreTts), &cfg).unwrap();
/// let mut text = String::from("hello");
/// p.process(&mut text).unwrap();
/// assert_eq!(text, "HELLO");
/// // No audio form: `create` keeps its refusing default.
/// assert!(Upper.create(&ProcessorContext::new(Stage::PreStt, 16_000, 1), &cfg).is_err());
/// ```
pub trait TextProcessor: Send + Sync {
    /// Processes one text.
    fn process(&mut self, text: &mut String) -> Result<(), PluginError>;
}

/// Replaces whole-word occurrences of each `pronunciations` word, in order, with its
/// pronunciation: the matcher behind `tts_config.pronunciations` and the `pronunciations`
/// processor.
///
/// Matching is case-sensitive (list each casing to replace) and whole-word: the characters
/// either side of a match must not be alphanumeric, judged against the text before that word's
/// pass (not what an earlier match of the same word left). Each word is one linear pass over the
/// text; an empty word is ignored.
///
/// ```
/// use waav_plugin_api::{replace_words, Pronunciation};
/// let p = [Pronunciation { word: "SQL".into(), pronunciation: "sequel".into() }];
/// assert_eq!(replace_words("SQL, MySQL and sql", &p), "sequel, MySQL and sql");
/// ```
pub fn replace_words(text: &str, pronunciations: &[Pronunciation]) -> String {
    let mut out = text.to_owned();
    for p in pronunciations {
        if out.contains(p.word.as_str()) {
            out = replace_word(&out, &p.word, &p.pronunciation);
        }
    }
    out
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

/// Per-session facts a processor is created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorContext {
    /// The stage it will run at.
    pub stage: Stage,
    /// Sample rate of the audio it will see (0 at a text stage).
    pub sample_rate: u32,
    /// Channels of the audio it will see (0 at a text stage).
    pub channels: u16,
}

impl ProcessorContext {
    /// A context for `stage` with the given audio layout.
    pub fn new(stage: Stage, sample_rate: u32, channels: u16) -> Self {
        Self {
            stage,
            sample_rate,
            channels,
        }
    }

    /// A context for a text stage (no audio layout).
    pub fn text(stage: Stage) -> Self {
        Self::new(stage, 0, 0)
    }
}

/// A plugin that creates one [`AudioProcessor`] (audio stages) or [`TextProcessor`] (text
/// stages) per session and stage; state is never shared.
pub trait ProcessorPlugin: Plugin {
    /// Stages this processor can run at: audio stages are served by [`Self::create`], text
    /// stages ([`Stage::is_text`]) by [`Self::create_text`].
    fn stages(&self) -> &'static [Stage];

    /// Typical added latency, for planning pipelines.
    fn latency_estimate(&self) -> Duration {
        Duration::ZERO
    }

    /// Whether its processors report speech boundaries ([`ProcessorEvent::SpeechStarted`] and
    /// [`ProcessorEvent::SpeechEnded`]): a voice activity detector. A pre-STT pipeline with one
    /// tells the provider so ([`SttSessionConfig::vad_events`](crate::SttSessionConfig)), and a
    /// provider that segments follows it instead of a detector of its own.
    fn reports_speech(&self) -> bool {
        false
    }

    /// Creates an audio processor for one session at an audio stage. `config` is the
    /// processor's `config:` map. The default refuses (a text-only processor).
    fn create(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError> {
        let _ = config;
        Err(PluginError::Config(format!(
            "{} processes text, not audio (stage {})",
            self.info().id,
            ctx.stage.as_str()
        )))
    }

    /// Creates a text processor for one session at a text stage. The default refuses: a plugin
    /// that processes only audio needs nothing here.
    fn create_text(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn TextProcessor>, PluginError> {
        let _ = config;
        Err(PluginError::Config(format!(
            "{} processes audio, not text (stage {})",
            self.info().id,
            ctx.stage.as_str()
        )))
    }
}
