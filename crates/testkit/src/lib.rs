//! Test support for WaaV Gateway.
//!
//! Linking this crate registers deterministic **loopback** providers (STT and TTS, id `loopback`)
//! and a `faulty` STT plugin whose `init` can be told to fail. They exist for tests and benchmarks
//! and are never linked into the production binary.
//!
//! Loopback behaviour is tuned per session through the `model` string, as comma-separated knobs
//! (see [`Knobs`]): `"latency_ms=50"`, `"fault=panic,after=3"`, `"fault=stall"`.
#![warn(missing_docs)]

pub mod audio;
mod faulty;
mod knobs;
mod loopback_stt;
mod loopback_tts;

pub use faulty::FaultyPlugin;
pub use knobs::{Fault, Knobs};
pub use loopback_stt::LoopbackStt;
pub use loopback_tts::{tone_ms_for_text, LoopbackTts};

waav_plugin_api::register_plugin!(Stt, LoopbackStt);
waav_plugin_api::register_plugin!(Tts, LoopbackTts);
waav_plugin_api::register_plugin!(Stt, FaultyPlugin);

/// Call from a test or benchmark binary to make sure this crate (and so its registrations) is
/// linked even when nothing else from it is used.
pub fn link() {}
