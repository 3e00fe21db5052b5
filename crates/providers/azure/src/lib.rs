//! Microsoft Azure AI Speech providers for WaaV Gateway.
//!
//! - [`stt::AzureStt`] (`microsoft-azure`, alias `azure`): continuous speech recognition over the
//!   WebSocket protocol the Speech SDKs speak ([`protocol`] has the framing).
//!
//! # Configuration (`plugins.stt.microsoft-azure`)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `api_key` | env `AZURE_SPEECH_SUBSCRIPTION_KEY` | subscription key, sent as `Ocp-Apim-Subscription-Key` |
//! | `region` | env `AZURE_SPEECH_REGION` | builds `wss://<region>.stt.speech.microsoft.com/…` |
//! | `base_url` (or `endpoint`) | — | full `ws://`/`wss://` URL instead of the region's; its path is kept, or the mode's path appended when it has none |
//! | `mode` | `conversation` | `conversation` or `dictation` |
//! | `format` | `detailed` | `detailed` (confidence, words) or `simple` |
//! | `profanity` | service default | `masked`, `removed` or `raw` |
//! | `endpoint_id` | — | Custom Speech endpoint id (`cid`); a session's `model` overrides it |
//! | `word_timestamps` | `true` | `wordLevelTimestamps` |
//! | `initial_silence_timeout_ms`, `end_silence_timeout_ms`, `segmentation_silence_timeout_ms` | service default | silence timeouts |
//! | `stable_intermediate_threshold` | service default | hypothesis stability |
//! | `store_audio` | service default | `storeAudio` |
//! | `phrases` | — | a phrase list (`speech.context` `dgi`) |
//! | `ping_interval_ms` / `idle_timeout_ms` | 20000 / 60000 | WebSocket pings; fail when nothing arrives for that long (0: off) |
//! | `finalize_timeout_ms` / `drain_timeout_ms` | 10000 / 10000 | wait for `turn.end` after a finalize / after the input closed |
//! | `max_pending_ms` | 10000 | audio held while a finalized turn ends |
//! | `max_message_bytes` | 1 MiB | largest service message accepted |
//!
//! Audio: 16-bit mono PCM (`linear16`) at 8 or 16 kHz, the formats the service documents for
//! streamed input.

pub mod protocol;
pub mod stt;
pub mod tts;

pub use stt::AzureStt;

waav_plugin_api::register_plugin!(Stt, AzureStt);
waav_plugin_api::register_plugin!(Tts, tts::AzureTts::default());
