//! AWS speech providers for WaaV Gateway.
//!
//! - [`polly::PollyTts`] (`aws-polly`, aliases `polly`, `amazon-polly`): Amazon Polly
//!   SynthesizeSpeech over SigV4-signed REST, the audio streamed as Polly produces it.
//! - [`transcribe::TranscribeStt`] (`aws-transcribe`, aliases `transcribe`,
//!   `amazon-transcribe`): Amazon Transcribe streaming over its WebSocket API (a SigV4
//!   presigned `wss://` URL; audio and results as `application/vnd.amazon.eventstream`
//!   messages).
//!
//! Both declare the same credentials ([`auth::CREDENTIALS`]): `access_key_id`
//! (`AWS_ACCESS_KEY_ID`), `secret_access_key` (`AWS_SECRET_ACCESS_KEY`), `session_token`
//! (`AWS_SESSION_TOKEN`, optional) and `region` (`AWS_REGION`, optional, default
//! `us-east-1`). Signing, presigning and the event-stream codec come from the provider kit's
//! `aws` module (the `aws-sigv4` and `aws-smithy-eventstream` crates); nothing here hashes or
//! computes a CRC.

pub mod auth;
pub mod polly;
pub mod transcribe;

pub use polly::PollyTts;
pub use transcribe::TranscribeStt;

waav_plugin_api::register_plugin!(Tts, PollyTts::new());
waav_plugin_api::register_plugin!(Stt, TranscribeStt);
