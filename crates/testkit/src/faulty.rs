//! A plugin whose `init` fails on request, to prove start-up isolation.

use waav_plugin_api::{
    Plugin, PluginConfig, PluginContext, PluginError, PluginInfo, ProviderTask, SttIo, SttPlugin,
    SttSessionConfig,
};

/// STT plugin `faulty`: with `panic_on_init: true` (or `fail_on_init: true`) in its config section
/// its `init` panics (or fails); sessions panic in `connect`. Harmless when left unconfigured.
#[derive(Debug, Default, Clone, Copy)]
pub struct FaultyPlugin;

#[async_trait::async_trait]
impl Plugin for FaultyPlugin {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("faulty", "Faulty")
            .version(env!("CARGO_PKG_VERSION"))
            .description("Test plugin that fails on request")
    }

    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        if config.bool("panic_on_init")? == Some(true) {
            panic!("faulty: injected panic in init");
        }
        if config.bool("fail_on_init")? == Some(true) {
            return Err(PluginError::Config("faulty: injected init failure".into()));
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SttPlugin for FaultyPlugin {
    async fn connect(&self, _: SttSessionConfig, _: SttIo) -> Result<ProviderTask, PluginError> {
        panic!("faulty: injected panic in connect")
    }
}
