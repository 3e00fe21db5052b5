//! Audio processors (VAD, denoise, resample, turn detection) and their plugins.

use crate::{AudioBuffer, Plugin, PluginConfig, PluginError};
use serde::Serialize;
use std::time::Duration;

/// Where in a session a processor runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// On client audio before it reaches the STT provider.
    PreStt,
    /// On client audio after it was handed to the STT provider (turn detection, analytics).
    PostStt,
    /// On TTS audio before post-processing (rarely used; text transforms live in the TTS plugin).
    PreTts,
    /// On TTS audio before it is sent to the client.
    PostTts,
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

/// Per-session facts a processor is created for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessorContext {
    /// The stage it will run at.
    pub stage: Stage,
    /// Sample rate of the audio it will see.
    pub sample_rate: u32,
    /// Channels of the audio it will see.
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
}

/// A plugin that creates one [`AudioProcessor`] per session (state is never shared).
pub trait ProcessorPlugin: Plugin {
    /// Stages this processor can run at.
    fn stages(&self) -> &'static [Stage];

    /// Typical added latency, for planning pipelines.
    fn latency_estimate(&self) -> Duration {
        Duration::ZERO
    }

    /// Creates a processor for one session. `config` is the processor's `config:` map.
    fn create(
        &self,
        ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn AudioProcessor>, PluginError>;
}
