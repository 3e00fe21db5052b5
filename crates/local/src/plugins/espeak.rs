//! TTS plugin `espeak`: the espeak-ng program as a subprocess (never linked: it is GPL-3).

use super::pool::Pool;
use super::tts_session::{check_encoding, pool_from, Session, SynthFn, ENCODINGS};
use crate::espeak::{espeak_synthesize, espeak_voices};
use std::sync::{Arc, OnceLock};
use waav_plugin_api::{
    Capabilities, ModelInfo, Plugin, PluginConfig, PluginContext, PluginError, PluginInfo,
    ProviderTask, TtsIo, TtsPlugin, TtsSessionConfig, VoiceInfo,
};

/// The `espeak` TTS plugin (espeak-ng subprocess).
#[derive(Default)]
pub struct EspeakTts {
    loaded: OnceLock<(Vec<VoiceInfo>, Pool)>,
}

#[async_trait::async_trait]
impl Plugin for EspeakTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("espeak", "eSpeak NG")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["espeak-ng"])
            .description("Offline espeak-ng formant TTS: robotic, tiny and fast (no API key)")
    }

    fn capabilities(&self) -> Capabilities {
        let voices = self
            .loaded
            .get()
            .map(|(v, _)| v.clone())
            .unwrap_or_default();
        Capabilities::new()
            .models([ModelInfo::new("espeak-ng", "eSpeak NG")])
            .voices(voices)
            .encodings(ENCODINGS)
            .features(true, true, false, false)
    }

    /// Config: `workers`, `max_queue` (16).
    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let (pool, _) = pool_from(config, "espeak")?;
        let voices = tokio::task::spawn_blocking(espeak_voices)
            .await
            .map_err(|e| PluginError::Panicked(e.to_string()))?
            .map_err(|e| {
                PluginError::Config(format!("{e} (install it: apt-get install espeak-ng)"))
            })?;
        let voices = voices
            .into_iter()
            .map(|v| VoiceInfo {
                id: v.language.clone(),
                sample: String::new(),
                name: v.name,
                accent: String::new(),
                gender: match v.gender.as_str() {
                    "M" => "male".into(),
                    "F" => "female".into(),
                    _ => String::new(),
                },
                language: v.language,
            })
            .collect();
        let _ = self.loaded.set((voices, pool));
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for EspeakTts {
    async fn connect(&self, cfg: TtsSessionConfig, io: TtsIo) -> Result<ProviderTask, PluginError> {
        let (_, pool) = self
            .loaded
            .get()
            .cloned()
            .ok_or_else(|| PluginError::Config("espeak TTS is not initialised".into()))?;
        check_encoding(&cfg)?;
        let voice = if cfg.voice_id.is_empty() {
            "en-us".to_owned()
        } else {
            cfg.voice_id.clone()
        };
        let synth: SynthFn = Arc::new(move |text: &str, rate: f32| {
            let wpm = (175.0 * rate) as u32;
            espeak_synthesize(text, &voice, wpm).map_err(|e| PluginError::Transient(e.to_string()))
        });
        Ok(Box::pin(Session::new(synth, pool, cfg, io, 40).run()))
    }
}
