//! WaaV Gateway providers for Deepgram.
//!
//! - [`DeepgramStt`] (plugin id `deepgram`): streaming speech-to-text over Deepgram's
//!   `/v1/listen` WebSocket, against `wss://api.deepgram.com` or a self-hosted `ws://` server.
//!   Credential `api_key` (environment `DEEPGRAM_API_KEY`), sent as `Authorization: Token <key>`.
//! - [`DeepgramTts`] (plugin id `deepgram`, TTS): Aura text-to-speech over `POST /v1/speak`
//!   (streamed) and the `/v1/speak` WebSocket, same credential.
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod stt;
pub mod tts;

pub use stt::DeepgramStt;
pub use tts::DeepgramTts;

waav_plugin_api::register_plugin!(Stt, DeepgramStt::new());
waav_plugin_api::register_plugin!(Tts, DeepgramTts::new());
