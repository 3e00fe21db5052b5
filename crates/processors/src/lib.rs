//! The built-in processors of WaaV Gateway, each a [`ProcessorPlugin`] registered when this
//! crate is linked. Audio processors:
//!
//! | id | aliases | what it does | settings | events |
//! |---|---|---|---|---|
//! | [`resample`](resample::ResamplePlugin) | `resampler`, `rubato` | streaming rate conversion | `to_rate` (required) | — |
//! | [`vad`](vad::VadPlugin) | `earshot` | voice activity detection | `threshold`, `neg_threshold`, `min_speech_ms`, `min_silence_ms`, `quiet_db` | `speech_started`, `speech_ended` |
//! | [`denoise`](denoise::DenoisePlugin) | `nnnoiseless`, `rnnoise` | RNNoise noise suppression | `mix` | — |
//! | [`gain`](gain::GainPlugin) | `agc` | fixed gain or AGC + limiter | `mode`, `gain_db` / `target_dbfs`, … | — |
//!
//! Text processors ([`text`]; post-STT transcripts and pre-TTS text):
//!
//! | id | aliases | stages | what it does | settings |
//! |---|---|---|---|---|
//! | [`redact_pii`](text::RedactPiiPlugin) | `pii` | post-STT, pre-TTS | masks e-mail addresses, phone numbers, Luhn-valid card numbers | `kinds`, `replacement` |
//! | [`pronunciations`](text::PronunciationsPlugin) | — | pre-TTS | whole-word, case-sensitive replacements | `words` |
//!
//! The rest of this page is about the audio processors.
//!
//! Every processor is created per session (state is never shared), accepts 8–192 kHz and 1–8
//! channels, runs synchronously, takes no lock and allocates nothing per frame once its buffers
//! have grown to the working block size (they are sized in `create` for blocks up to 100 ms).
//! Unknown settings and out-of-range values are [`PluginError::Config`] errors at `create`,
//! checked before anything is sized from them.
//!
//! A block whose rate or channel count differs from the one the processor was created for
//! rebuilds the processor's internal state for the new layout (which allocates, once per format
//! change). A block that is not a whole number of sample frames, or whose layout is outside the
//! accepted range, is a [`PluginError::Permanent`] error.
//!
//! [`ProcessorPlugin`]: waav_plugin_api::ProcessorPlugin
//! [`PluginError::Config`]: waav_plugin_api::PluginError::Config
//! [`PluginError::Permanent`]: waav_plugin_api::PluginError::Permanent

pub mod denoise;
pub mod gain;
pub mod resample;
mod settings;
mod stream;
pub mod text;
pub mod vad;

pub use denoise::{DenoisePlugin, DenoiseProcessor};
pub use gain::{AgcSettings, GainMode, GainPlugin, GainProcessor};
pub use resample::{ResamplePlugin, ResampleProcessor};
pub use settings::{CHANNEL_RANGE, RATE_RANGE};
pub use text::{PronunciationsPlugin, RedactPiiPlugin};
pub use vad::{VadPlugin, VadProcessor, VadSettings};

waav_plugin_api::register_plugin!(Processor, ResamplePlugin);
waav_plugin_api::register_plugin!(Processor, VadPlugin);
waav_plugin_api::register_plugin!(Processor, DenoisePlugin);
waav_plugin_api::register_plugin!(Processor, GainPlugin);
waav_plugin_api::register_plugin!(Processor, RedactPiiPlugin);
waav_plugin_api::register_plugin!(Processor, PronunciationsPlugin);

/// The ids of the processors this crate registers.
pub const PROCESSOR_IDS: [&str; 6] = [
    resample::ID,
    vad::ID,
    denoise::ID,
    gain::ID,
    text::pii::ID,
    text::pronunciations::ID,
];
