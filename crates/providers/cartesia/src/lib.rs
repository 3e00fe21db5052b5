//! WaaV Gateway providers for Cartesia.
//!
//! - [`CartesiaTts`] (plugin id `cartesia`): Sonic text-to-speech. Whole requests stream over
//!   `POST /tts/bytes`; sessions keep one `/tts/websocket` connection with one `context_id` per
//!   request. Credential `api_key` (environment `CARTESIA_API_KEY`).
//! - [`CartesiaStt`] (plugin id `cartesia`, STT): Ink streaming speech-to-text over
//!   `/stt/websocket` (binary audio, `finalize`, `done`/`close`), same credential.
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod stt;
pub mod tts;

pub use stt::CartesiaStt;
pub use tts::CartesiaTts;

waav_plugin_api::register_plugin!(Stt, CartesiaStt::new());
waav_plugin_api::register_plugin!(Tts, CartesiaTts::new());
