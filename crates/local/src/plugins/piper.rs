//! TTS plugin `local`: Piper neural voices on ONNX Runtime.

use super::pool::Pool;
use super::settings::{
    engine_health, espeak_timeout_from, models_from, InitError, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE,
};
use super::tts_session::{check_encoding, pool_from, Session, SynthFn, ENCODINGS};
use crate::espeak::RunLimits;
use crate::piper::{PiperOptions, PiperVoice};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use waav_plugin_api::{
    Capabilities, HealthStatus, ModelInfo, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProviderTask, TtsIo, TtsPlugin, TtsSessionConfig, VoiceInfo,
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
    espeak_timeout: Duration,
}

/// The `local` TTS plugin (Piper).
#[derive(Default)]
pub struct LocalTts {
    loaded: OnceLock<PiperLoaded>,
    init_error: InitError,
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
            .sample_rate_range(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
            .models([ModelInfo::new(PIPER_MODEL, "Piper (VITS, ONNX)")])
            .voices([piper_voice_info()])
            .languages(["en-US"])
            .encodings(ENCODINGS)
            .features(true, true, false, false)
    }

    /// Config: `models_dir`, `workers`, `threads`, `max_queue` (16), `frame_ms` (40),
    /// `espeak_timeout_ms` (10000, per phonemizer run).
    async fn init(&self, ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        self.load(ctx, config)
            .await
            .map_err(|e| self.init_error.record(e))
    }

    /// `Unhealthy` when the voice did not load, `Degraded` while the inference queue is full.
    fn health(&self) -> HealthStatus {
        engine_health(
            self.loaded.get().map(|l| &l.pool),
            &self.init_error,
            "the Piper voice",
        )
    }
}

impl LocalTts {
    async fn load(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
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
            espeak_timeout: espeak_timeout_from(config)?,
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for LocalTts {
    async fn connect(&self, cfg: TtsSessionConfig, io: TtsIo) -> Result<ProviderTask, PluginError> {
        check_encoding(&cfg)?;
        let loaded = self
            .loaded
            .get()
            .cloned()
            .ok_or_else(|| PluginError::Config("local TTS is not initialised".into()))?;
        let voice = loaded.voice.clone();
        let synth: SynthFn = Arc::new(move |text: &str, rate: f32, limits: &RunLimits| {
            // Piper's length scale is the inverse of speed; 1.0 keeps the voice's own.
            let base = voice.length_scale();
            let pcm = voice.synthesize_with(text, Some(base / rate.clamp(0.25, 4.0)), limits)?;
            Ok((pcm, voice.sample_rate()))
        });
        let session = Session::new(
            synth,
            loaded.pool,
            cfg,
            io,
            loaded.frame_ms,
            loaded.espeak_timeout,
        );
        Ok(Box::pin(session.run()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_models;
    use waav_plugin_api::AudioEncoding;

    fn config(models_dir: &std::path::Path) -> PluginConfig {
        PluginConfig::from_value(
            "plugins.tts.local",
            serde_json::json!({ "models_dir": models_dir, "workers": 1, "max_queue": 1 }),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn health_follows_the_voice_and_the_queue() {
        let tts = LocalTts::default();
        assert!(matches!(tts.health(), HealthStatus::Unhealthy(_)));
        let missing = config(std::path::Path::new("/nonexistent/models"));
        assert!(tts.init(&PluginContext::default(), &missing).await.is_err());
        match tts.health() {
            HealthStatus::Unhealthy(r) => assert!(r.contains("did not load"), "{r}"),
            other => panic!("expected Unhealthy, got {other:?}"),
        }

        let Some(models) = test_models() else { return };
        let tts = LocalTts::default();
        tts.init(&PluginContext::default(), &config(models.root()))
            .await
            .expect("init");
        assert_eq!(tts.health(), HealthStatus::Healthy);
        let pool = tts.loaded.get().unwrap().pool.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || rx.recv().ok()).await })
        };
        while pool.running() == 0 {
            tokio::task::yield_now().await;
        }
        let queued = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(|| ()).await })
        };
        while pool.queued() == 0 {
            tokio::task::yield_now().await;
        }
        assert!(
            matches!(tts.health(), HealthStatus::Degraded(ref r) if r.starts_with("inference queue saturated")),
            "{:?}",
            tts.health()
        );
        tx.send(()).unwrap();
        busy.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        assert_eq!(tts.health(), HealthStatus::Healthy);
    }

    #[tokio::test]
    async fn connect_refuses_absurd_rates_first() {
        let tts = LocalTts::default();
        for rate in [u32::MAX, 0, 7_999, 192_001] {
            let (io, _peer) = TtsIo::pair(1);
            let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, rate);
            match tts.connect(cfg, io).await {
                Err(PluginError::Config(m)) => assert!(m.contains("sample rate"), "{m}"),
                Err(e) => panic!("{rate} Hz: {e}"),
                Ok(_) => panic!("{rate} Hz accepted"),
            }
        }
    }
}
