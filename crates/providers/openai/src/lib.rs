//! WaaV Gateway providers for OpenAI and OpenAI-compatible audio APIs.
//!
//! - [`OpenAiTts`] (plugin id `openai`, TTS): `POST /v1/audio/speech`, the chunked audio body
//!   streamed into the sink (`pcm` 24 kHz, or mp3 / opus passthrough). Credential `api_key`
//!   (environment `OPENAI_API_KEY`).
//! - [`TranscriptionsStt::openai`] (plugin id `openai`, STT): `POST /v1/audio/transcriptions`
//!   per utterance (the plugin segments the stream on the session's VAD boundaries,
//!   `Finalize` and a length bound), SSE interims for the gpt-4o models. Same credential.
//! - [`TranscriptionsStt::groq`] (plugin id `groq`, STT): the same client against Groq's
//!   OpenAI-compatible API (`https://api.groq.com/openai/v1/audio/transcriptions`), Whisper
//!   models, no streaming. Credential `api_key` (environment `GROQ_API_KEY`).
//!
//! Linking this crate registers the three plugins.
#![warn(missing_docs)]

pub mod common;
pub mod realtime;
pub mod stt;
pub mod tts;

pub use stt::TranscriptionsStt;
pub use tts::OpenAiTts;

waav_plugin_api::register_plugin!(Stt, TranscriptionsStt::openai());
waav_plugin_api::register_plugin!(Stt, TranscriptionsStt::groq());
waav_plugin_api::register_plugin!(Tts, OpenAiTts::new());
waav_plugin_api::register_plugin!(Realtime, realtime::OpenAiRealtime::new());
