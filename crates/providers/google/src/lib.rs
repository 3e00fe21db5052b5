//! WaaV Gateway providers for Google Cloud (gRPC, generated clients from `googleapis-tonic-*`).
//!
//! - [`GoogleStt`] (plugin id `google`, STT): Speech-to-Text v2 `StreamingRecognize`.
//! - [`GoogleTts`] (plugin id `google`, TTS): Text-to-Speech v1 `StreamingSynthesize` for
//!   streaming-capable voices (Chirp 3 HD), else `SynthesizeSpeech`; voices from `ListVoices`.
//!
//! Credentials (both plugins; one of them must resolve, a service account wins over a key):
//!
//! | field | env | kind |
//! |---|---|---|
//! | `credentials_file` | `GOOGLE_APPLICATION_CREDENTIALS` | path of a service-account key JSON (not secret; read at connect/prepare) |
//! | `credentials_json` | — | the key JSON inline (secret) |
//! | `api_key` | `GOOGLE_API_KEY` | API key, sent as `x-goog-api-key` (secret) |
//!
//! A service account's RS256-signed JWT is exchanged for an OAuth2 token at `token_uri`
//! (`plugin_config.token_url` overrides it), cached per account until 5 minutes before it
//! expires ([`auth`]). Plugin config shared by both: `endpoint` (alias `base_url`; `http://`
//! for a local server), `user_project` (`x-goog-user-project`), `token_url`.
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod auth;
pub mod common;
pub mod stt;
pub mod tts;

pub use stt::GoogleStt;
pub use tts::GoogleTts;

waav_plugin_api::register_plugin!(Stt, GoogleStt::new());
waav_plugin_api::register_plugin!(Tts, GoogleTts::new());
