//! Processor `text-probe`: a deterministic text processor for pipeline tests, with fault knobs.

use waav_plugin_api::{
    Plugin, PluginConfig, PluginError, PluginInfo, ProcessorContext, ProcessorPlugin, Stage,
    TextProcessor,
};

/// Appends `append` (default nothing) to every text, so tests can put chosen words into a
/// transcript or a request; `panic_after` / `error_after` (texts) inject a fault, after
/// half-rewriting the text (the host must discard the partial rewrite). Post-STT and pre-TTS.
#[derive(Debug, Default, Clone, Copy)]
pub struct TextProbe;

impl Plugin for TextProbe {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("text-probe", "Text probe (test)")
            .version(env!("CARGO_PKG_VERSION"))
            .description("Deterministic text processor for tests")
    }
}

impl ProcessorPlugin for TextProbe {
    fn stages(&self) -> &'static [Stage] {
        &[Stage::PostStt, Stage::PreTts]
    }

    fn create_text(
        &self,
        _ctx: &ProcessorContext,
        config: &PluginConfig,
    ) -> Result<Box<dyn TextProcessor>, PluginError> {
        Ok(Box::new(Probe {
            append: config.string("append")?.unwrap_or_default(),
            panic_after: config.u64("panic_after")?,
            error_after: config.u64("error_after")?,
            texts: 0,
        }))
    }
}

struct Probe {
    append: String,
    panic_after: Option<u64>,
    error_after: Option<u64>,
    texts: u64,
}

impl TextProcessor for Probe {
    fn process(&mut self, text: &mut String) -> Result<(), PluginError> {
        self.texts += 1;
        let fault = |after: Option<u64>| after.is_some_and(|n| self.texts > n);
        if fault(self.panic_after) || fault(self.error_after) {
            text.push_str(" PARTIAL");
        }
        if fault(self.panic_after) {
            panic!("text-probe: injected panic");
        }
        if fault(self.error_after) {
            return Err(PluginError::Permanent("text-probe: injected error".into()));
        }
        text.push_str(&self.append);
        Ok(())
    }
}
