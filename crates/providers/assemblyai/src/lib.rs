//! WaaV Gateway provider for AssemblyAI: Universal Streaming v3 speech-to-text.
//!
//! Plugin id `assemblyai` (alias `assembly-ai`); credential `api_key` (env `ASSEMBLYAI_API_KEY`),
//! sent raw as the `Authorization` header of the upgrade (or, with `auth: temporary_token`,
//! exchanged per session for a one-use token passed as the `token` query parameter).
//!
//! The session streams `wss://streaming.assemblyai.com/v3/ws?sample_rate=…&encoding=…&
//! speech_model=…&format_turns=…` with binary audio re-chunked to 50–1000 ms per message,
//! maps `Finalize` to `ForceEndpoint`, and on input close sends `Terminate` and drains the last
//! Turns until `Termination` (bounded by `drain_timeout_ms`). See [`turns`] for how Turns become
//! interim and final transcripts.
//!
//! Plugin config (`plugins.stt.assemblyai`), all optional:
//!
//! | key | meaning |
//! |---|---|
//! | `base_url` | `wss://streaming.assemblyai.com` (EU: `wss://streaming.eu.assemblyai.com`; `ws://` for tests) |
//! | `speech_model` | default model when the session names none (else by language) |
//! | `format_turns` | formatted finals; default: the session's `punctuation` |
//! | `end_of_turn_confidence_threshold`, `vad_threshold` | 0–1 |
//! | `min_turn_silence`, `max_turn_silence` | ms (`min_end_of_turn_silence_when_confident` accepted as the old name) |
//! | `keyterms` (or `keyterms_prompt`) | list of strings |
//! | `language_detection`, `filter_profanity`, `speaker_labels`, `max_speakers`, `inactivity_timeout` | passed through |
//! | `auth` | `header` (default) or `temporary_token`; then `token_url`, `token_expires_in_seconds` (1–600), `max_session_duration_seconds` |
//! | `api_version` | `AssemblyAI-Version` header (default `2025-05-12`, `""` omits it) |
//! | `chunk_ms` | smallest audio message, 50–1000 (default 50) |
//! | `keepalive_ms` | send `KeepAlive` after this long without audio (default off) |
//! | `ping_interval_ms`, `idle_timeout_ms` | WebSocket pings (10 s) and silent-vendor timeout (30 s); 0 disables |
//! | `begin_timeout_ms`, `drain_timeout_ms`, `format_wait_ms`, `max_message_bytes` | bounds |

pub mod chunker;
pub mod messages;
pub mod settings;
pub mod stt;
pub mod turns;

pub use stt::{AssemblyAiStt, CLOSE_CODES, MAX_RATE, MIN_RATE};

waav_plugin_api::register_plugin!(Stt, AssemblyAiStt::new());
