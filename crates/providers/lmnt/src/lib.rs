//! WaaV Gateway providers for LMNT.
//!
//! - [`LmntTts`] (plugin id `lmnt`, TTS): `POST /v1/ai/speech/bytes`, streamed, per request;
//!   sessions over the `/v1/ai/speech/stream` WebSocket (one socket per session). Credential
//!   `api_key` (environment `LMNT_API_KEY`).
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod tts;

pub use tts::LmntTts;

waav_plugin_api::register_plugin!(Tts, LmntTts::new());
