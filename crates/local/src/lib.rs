//! Offline inference engines for the WaaV Gateway: everything runs on this machine, with
//! models that `scripts/fetch-models.sh` takes from pinned PyPI wheels.
//!
//! - [`whisper::WhisperEngine`]: Whisper tiny.en speech-to-text on CTranslate2 (feature `whisper`).
//! - [`piper::PiperVoice`]: Piper neural text-to-speech on ONNX Runtime (feature `piper`).
//! - [`espeak`]: espeak-ng subprocess TTS (tiny, robotic fallback) and voice listing.
//! - [`segmenter::Segmenter`]: voice-activity based utterance segmentation (earshot, or the
//!   session's VAD when it has one).
//! - [`resample`]: sample-rate conversion.
//! - [`text::split_sentences`]: sentence splitting for incremental TTS.
//! - [`models::ModelPaths`]: where the models live.
//! - [`silero`]: Silero VAD v5 as the `silero_vad` processor plugin (feature `piper`: ONNX).
//! - [`plugins`]: all of the above as gateway plugins (STT `local`, TTS `local` and `espeak`).
//!
//! The API is blocking: call it from a blocking thread pool in async code.

#![warn(missing_docs)]

mod error;

pub mod espeak;
pub mod models;
pub mod plugins;
pub mod resample;
pub mod segmenter;
pub mod text;

#[cfg(feature = "piper")]
mod infer_pool;
#[cfg(feature = "piper")]
pub mod onnx;
#[cfg(feature = "piper")]
pub mod piper;
#[cfg(feature = "piper")]
pub mod silero;
#[cfg(all(feature = "piper", feature = "whisper"))]
pub mod turn;
#[cfg(feature = "whisper")]
pub mod whisper;

pub use error::{LocalError, Result};
pub use espeak::{
    espeak_synthesize, espeak_synthesize_with, espeak_voices, CancelToken, EspeakVoice, RunLimits,
    ESPEAK_TIMEOUT, MAX_ESPEAK_INPUT,
};
pub use models::ModelPaths;
pub use resample::{resample_i16, to_mono_16k};
pub use segmenter::{Boundary, SegmentEvent, Segmenter, SegmenterConfig};
pub use text::{chunk_text, split_long, split_sentences};

#[cfg(feature = "piper")]
pub use piper::{PiperOptions, PiperVoice};
#[cfg(feature = "whisper")]
pub use whisper::{Transcription, WhisperEngine};

#[cfg(all(feature = "piper", feature = "whisper"))]
waav_plugin_api::register_plugin!(Processor, turn::TurnDetectPlugin::default());
#[cfg(feature = "piper")]
waav_plugin_api::register_plugin!(Processor, silero::SileroVadPlugin::default());
