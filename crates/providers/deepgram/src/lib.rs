//! WaaV Gateway providers for Deepgram.
//!
//! - [`DeepgramStt`] (plugin id `deepgram`): streaming speech-to-text over Deepgram's
//!   `/v1/listen` WebSocket, against `wss://api.deepgram.com` or a self-hosted `ws://` server.
//!   Credential `api_key` (environment `DEEPGRAM_API_KEY`), sent as `Authorization: Token <key>`.
//!
//! Linking this crate registers the plugins. Text-to-speech (`/v1/speak`) will live alongside in
//! a `tts` module.
#![warn(missing_docs)]

pub mod stt;

pub use stt::DeepgramStt;

waav_plugin_api::register_plugin!(Stt, DeepgramStt::new());
