//! WaaV Gateway providers for LMNT.
//!
//! - [`LmntTts`] (plugin id `lmnt`, TTS): `POST /v1/ai/speech/bytes`, streamed. Credential
//!   `api_key` (environment `LMNT_API_KEY`).
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod tts;

pub use tts::LmntTts;

waav_plugin_api::register_plugin!(Tts, LmntTts::new());
