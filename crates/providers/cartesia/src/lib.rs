//! WaaV Gateway providers for Cartesia.
//!
//! - [`CartesiaTts`] (plugin id `cartesia`): Sonic text-to-speech. Whole requests stream over
//!   `POST /tts/bytes`; sessions keep one `/tts/websocket` connection with one `context_id` per
//!   request. Credential `api_key` (environment `CARTESIA_API_KEY`).
//!
//! Linking this crate registers the plugins. Speech-to-text may later live alongside in an `stt`
//! module.
#![warn(missing_docs)]

pub mod tts;

pub use tts::CartesiaTts;

waav_plugin_api::register_plugin!(Tts, CartesiaTts::new());
