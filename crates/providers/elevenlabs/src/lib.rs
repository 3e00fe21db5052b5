//! WaaV Gateway providers for ElevenLabs.
//!
//! - [`ElevenLabsTts`] (plugin id `elevenlabs`, aliases `eleven-labs`, `11labs`): text-to-speech
//!   over `POST /v1/text-to-speech/{voice_id}/stream` (one request at a time) and the
//!   `multi-stream-input` WebSocket (one socket per session, one context per request).
//!   Credential `api_key` (environment `ELEVENLABS_API_KEY`), sent as `xi-api-key`.
//! - [`ElevenLabsStt`] (plugin id `elevenlabs`, STT): Scribe v2 Realtime speech-to-text over
//!   the `/v1/speech-to-text/realtime` WebSocket (base64 audio in JSON chunks, commits),
//!   same credential.
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod stt;
pub mod tts;

pub use stt::ElevenLabsStt;
pub use tts::ElevenLabsTts;

waav_plugin_api::register_plugin!(Stt, ElevenLabsStt::new());
waav_plugin_api::register_plugin!(Tts, ElevenLabsTts::new());
