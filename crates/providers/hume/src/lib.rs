//! WaaV Gateway providers for Hume AI.
//!
//! - [`HumeTts`] (plugin id `hume`, alias `hume-ai`, TTS): Octave text-to-speech over
//!   `POST /v0/tts/stream/file`, streamed. Credential `api_key` (environment `HUME_API_KEY`).
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod evi;
pub mod tts;

pub use tts::HumeTts;

waav_plugin_api::register_plugin!(Tts, HumeTts::new());
waav_plugin_api::register_plugin!(Realtime, evi::HumeEvi::new());
