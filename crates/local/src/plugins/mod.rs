//! The local engines as gateway plugins: STT `local` (Whisper), TTS `local` (Piper) and TTS
//! `espeak`. They register like any other plugin; none needs an API key.
//!
//! Every plugin refuses (with `PluginError::Config`, before allocating anything) sample rates
//! outside [`MIN_SAMPLE_RATE`]..=[`MAX_SAMPLE_RATE`] and, for STT, channel counts outside
//! 1..=[`MAX_CHANNELS`]. Blocking and CPU-heavy work (inference, espeak-ng, resampler set-up,
//! pronunciation rewriting) runs on blocking threads, never on the runtime's workers.

mod espeak;
mod input;
#[cfg(feature = "piper")]
mod piper;
mod pool;
mod settings;
#[cfg(feature = "whisper")]
mod stt;
mod tts_session;

pub use espeak::EspeakTts;
pub use input::InputConverter;
#[cfg(feature = "piper")]
pub use piper::{LocalTts, PIPER_MODEL, PIPER_VOICE};
pub use pool::Pool;
pub use settings::{MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE};
#[cfg(feature = "whisper")]
pub use stt::{LocalStt, MAX_PENDING_FINALS, MODEL_ID as WHISPER_MODEL_ID};

#[cfg(feature = "whisper")]
waav_plugin_api::register_plugin!(Stt, LocalStt::default());
#[cfg(feature = "piper")]
waav_plugin_api::register_plugin!(Tts, LocalTts::default());
waav_plugin_api::register_plugin!(Tts, EspeakTts::default());
