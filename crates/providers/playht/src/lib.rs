//! WaaV Gateway providers for Play.ht.
//!
//! - [`PlayHtTts`] (plugin id `playht`, aliases `play.ht`, `play-ht`, TTS):
//!   `POST /api/v2/tts/stream`, streamed. Credentials `api_key` (environment `PLAYHT_API_KEY`)
//!   and `user_id` (environment `PLAYHT_USER_ID`).
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod tts;

pub use tts::PlayHtTts;

waav_plugin_api::register_plugin!(Tts, PlayHtTts::new());
