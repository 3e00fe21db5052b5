//! TTS plugin `local`: Piper neural voices on ONNX Runtime.

use super::pool::Pool;
use super::settings::models_from;
use super::tts_session::{check_encoding, pool_from, Session, SynthFn, ENCODINGS};
use crate::piper::{PiperOptions, PiperVoice};
use std::sync::{Arc, OnceLock};
use waav_plugin_api::{
    Capabilities, ModelInfo, Plugin, PluginConfig, PluginContext, PluginError, PluginInfo,
    ProviderTask, TtsIo, TtsPlugin, TtsSessionConfig, VoiceInfo,
};

/// The Piper voice id.
pub const PIPER_VOICE: &str = crate::models::DEFAULT_PIPER_VOICE;
/// The Piper model id.
pub const PIPER_MODEL: &str = "piper";

#[derive(Clone)]
struct PiperLoaded {
    voice: Arc<PiperVoice>,
    pool: Pool,
    frame_ms: u32,
}

/// The `local` TTS plugin (Piper).
#[derive(Default)]
pub struct LocalTts {
    loaded: OnceLock<PiperLoaded>,
}

fn piper_voice_info() -> VoiceInfo {
    VoiceInfo {
        id: PIPER_VOICE.into(),
        sample: String::new(),
        name: "Joe (US English, medium)".into(),
        accent: "American".into(),
        gender: "male".into(),
        language: "en-US".into(),
    }
}

#[async_trait::async_trait]
impl Plugin for LocalTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("local", "Local Piper")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["piper", "local-tts"])
            .description("Offline Piper neural TTS on ONNX Runtime (no API key)")
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models([ModelInfo::new(PIPER_MODEL, "Piper (VITS, ONNX)")])
            .voices([piper_voice_info()])
            .languages(["en-US"])
            .encodings(ENCODINGS)
            .features(true, true, false, false)
    }

    /// Config: `models_dir`, `workers`, `threads`, `max_queue` (16), `frame_ms` (40).
    async fn init(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let models = models_from(config)?;
        let (pool, threads) = pool_from(config, "piper")?;
        let (onnx, json) = (models.piper_onnx(), models.piper_json());
        let options = PiperOptions {
            ort_library: Some(models.onnxruntime_lib()),
            threads,
        };
        let voice =
            tokio::task::spawn_blocking(move || PiperVoice::load_with(&onnx, &json, &options))
                .await
                .map_err(|e| PluginError::Panicked(e.to_string()))?
                .map_err(|e| PluginError::Config(e.to_string()))?;
        let frame_ms = config.u64("frame_ms")?.unwrap_or(40).clamp(10, 1000) as u32;
        let _ = self.loaded.set(PiperLoaded {
            voice: Arc::new(voice),
            pool,
            frame_ms,
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for LocalTts {
    async fn connect(&self, cfg: TtsSessionConfig, io: TtsIo) -> Result<ProviderTask, PluginError> {
        let loaded = self
            .loaded
            .get()
            .cloned()
            .ok_or_else(|| PluginError::Config("local TTS is not initialised".into()))?;
        check_encoding(&cfg)?;
        let voice = loaded.voice.clone();
        let synth: SynthFn = Arc::new(move |text: &str, rate: f32| {
            // Piper's length scale is the inverse of speed; 1.0 keeps the voice's own.
            let base = voice.length_scale();
            let pcm = voice
                .synthesize(text, Some(base / rate.clamp(0.25, 4.0)))
                .map_err(|e| PluginError::Transient(e.to_string()))?;
            Ok((pcm, voice.sample_rate()))
        });
        Ok(Box::pin(
            Session::new(synth, loaded.pool, cfg, io, loaded.frame_ms).run(),
        ))
    }
}
