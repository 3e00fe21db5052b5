//! WaaV Gateway providers for IBM Watson.
//!
//! - [`IbmStt`] (plugin id `ibm-watson`, aliases `watson`, `ibm`): streaming speech-to-text over
//!   the Speech to Text service's `/v1/recognize` WebSocket.
//! - [`IbmTts`] (plugin id `ibm-watson`, aliases `watson`, `ibm`, TTS): text-to-speech over the
//!   Text to Speech service's `POST /v1/synthesize`, streamed; voices from `GET /v1/voices`.
//!
//! Both authenticate with an IBM Cloud API key exchanged at IAM for a bearer token ([`iam`]),
//! cached per key in the plugin and refreshed before it expires. Credentials:
//!
//! | plugin | `api_key` env | `url` env (service instance URL, required, not secret) |
//! |---|---|---|
//! | STT | `IBM_STT_API_KEY` | `IBM_STT_URL`, e.g. `https://api.us-south.speech-to-text.watson.cloud.ibm.com/instances/<id>` |
//! | TTS | `IBM_TTS_API_KEY` | `IBM_TTS_URL`, e.g. `https://api.us-south.text-to-speech.watson.cloud.ibm.com/instances/<id>` |
//!
//! The two services have separate instances and keys on IBM Cloud, hence separate variables
//! (IBM's own SDKs read `SPEECH_TO_TEXT_APIKEY`/`_URL` and `TEXT_TO_SPEECH_APIKEY`/`_URL`
//! from credential files; the `IBM_*` names follow this gateway's `<VENDOR>_…` convention).
//!
//! Linking this crate registers the plugins.
#![warn(missing_docs)]

pub mod common;
pub mod iam;
pub mod stt;
pub mod tts;

pub use stt::IbmStt;
pub use tts::IbmTts;

waav_plugin_api::register_plugin!(Stt, IbmStt::new());
waav_plugin_api::register_plugin!(Tts, IbmTts::new());
