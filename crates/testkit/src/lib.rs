//! Test support for WaaV Gateway.
//!
//! Linking this crate registers deterministic **loopback** providers (STT and TTS, id `loopback`)
//! a `faulty` STT plugin whose `init` can be told to fail, and a `level-vad` processor. They exist for tests and benchmarks
//! and are never linked into the production binary.
//!
//! Loopback behaviour is tuned per session through the `model` string, as comma-separated knobs
//! (see [`Knobs`]): `"latency_ms=50"`, `"fault=panic,after=3"`, `"fault=stall"`.
#![warn(missing_docs)]

pub mod audio;
pub mod conformance;
pub mod fakes;
mod faulty;
mod knobs;
mod level_vad;
mod loopback_realtime;
mod loopback_stt;
mod loopback_tts;
mod route;
pub mod stamp;
mod text_probe;

pub use faulty::FaultyPlugin;
pub use knobs::{Fault, Knobs};
pub use level_vad::LevelVad;
pub use loopback_realtime::LoopbackRealtime;
pub use loopback_stt::LoopbackStt;
pub use loopback_tts::{tone_ms_for_text, LoopbackTts};
pub use route::TestRoutes;
pub use text_probe::TextProbe;

waav_plugin_api::register_plugin!(Stt, LoopbackStt);
waav_plugin_api::register_plugin!(Tts, LoopbackTts);
waav_plugin_api::register_plugin!(Stt, FaultyPlugin);
waav_plugin_api::register_plugin!(Stt, KeyedStt);
waav_plugin_api::register_plugin!(Route, TestRoutes);
waav_plugin_api::register_plugin!(Processor, LevelVad);
waav_plugin_api::register_plugin!(Realtime, LoopbackRealtime);
waav_plugin_api::register_plugin!(Processor, TextProbe);

/// STT plugin `keyed`: the loopback STT behind an API key (`WAAV_TESTKIT_KEYED_API_KEY` or a
/// per-session `api_key`), to exercise key resolution.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyedStt;

impl waav_plugin_api::Plugin for KeyedStt {
    fn info(&self) -> waav_plugin_api::PluginInfo {
        waav_plugin_api::PluginInfo::new("keyed", "Keyed")
            .version(env!("CARGO_PKG_VERSION"))
            .api_key_env("WAAV_TESTKIT_KEYED_API_KEY")
    }
}

#[async_trait::async_trait]
impl waav_plugin_api::SttPlugin for KeyedStt {
    async fn connect(
        &self,
        config: waav_plugin_api::SttSessionConfig,
        io: waav_plugin_api::SttIo,
    ) -> Result<waav_plugin_api::ProviderTask, waav_plugin_api::PluginError> {
        if config
            .api_key
            .as_ref()
            .is_none_or(|k| k.expose() != "good-key")
        {
            return Err(waav_plugin_api::PluginError::Auth(
                "keyed: invalid API key".into(),
            ));
        }
        LoopbackStt.connect(config, io).await
    }
}

/// Call from a test or benchmark binary to make sure this crate (and so its registrations) is
/// linked even when nothing else from it is used.
pub fn link() {}
