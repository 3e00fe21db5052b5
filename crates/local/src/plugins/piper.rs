//! TTS plugin `local`: Piper neural voices on ONNX Runtime.

use super::pool::Pool;
use super::settings::{engine_health, espeak_timeout_from, models_from, InitError};
use super::tts_session::{check_format, pool_from, synthesize, SynthFn};
use crate::espeak::RunLimits;
use crate::piper::{PiperOptions, PiperVoice};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, HealthStatus, ModelInfo, Plugin, PluginConfig,
    PluginContext, PluginError, PluginInfo, SpeakRequest, TtsPlugin, TtsSessionConfig, VoiceInfo,
};

/// The Piper voice id.
pub const PIPER_VOICE: &str = crate::models::DEFAULT_PIPER_VOICE;
/// The Piper model id.
pub const PIPER_MODEL: &str = "piper";

#[derive(Clone)]
struct PiperLoaded {
    voice: Arc<PiperVoice>,
    synth: SynthFn,
    pool: Pool,
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

    /// Linear16 at the loaded voice's own rate; the host converts to what clients ask for.
    fn capabilities(&self) -> Capabilities {
        let caps = Capabilities::new()
            .models([ModelInfo::new(PIPER_MODEL, "Piper (VITS, ONNX)")])
            .voices([piper_voice_info()])
            .languages(["en-US"])
            .encodings([AudioEncoding::Linear16])
            .features(true, true, false, false);
        match self.loaded.get() {
            Some(l) => caps.sample_rates([l.voice.sample_rate()]),
            None => caps,
        }
    }

    /// Config: `models_dir`, `workers`, `threads`, `max_queue` (16), `espeak_timeout_ms`
    /// (10000, per phonemizer run), `noise_scale` and `noise_w` (0–2, default the voice's own;
    /// both 0 make every synthesis of a text identical).
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
        let noise = |key: &str| -> Result<Option<f32>, PluginError> {
            Ok(config.f64_opt_in(key, 0.0..=2.0)?.map(|v| v as f32))
        };
        let options = PiperOptions {
            ort_library: Some(models.onnxruntime_lib()),
            threads,
            noise_scale: noise("noise_scale")?,
            noise_w: noise("noise_w")?,
        };
        let voice =
            tokio::task::spawn_blocking(move || PiperVoice::load_with(&onnx, &json, &options))
                .await
                .map_err(|e| PluginError::Panicked(e.to_string()))?
                .map_err(|e| PluginError::Config(e.to_string()))?;
        let voice = Arc::new(voice);
        let synth: SynthFn = {
            let voice = voice.clone();
            Arc::new(move |text: &str, rate: f32, limits: &RunLimits| {
                // Piper's length scale is the inverse of speed; 1.0 keeps the voice's own.
                let base = voice.length_scale();
                let pcm =
                    voice.synthesize_with(text, Some(base / rate.clamp(0.25, 4.0)), limits)?;
                Ok((pcm, voice.sample_rate()))
            })
        };
        let _ = self.loaded.set(PiperLoaded {
            voice,
            synth,
            pool,
            espeak_timeout: espeak_timeout_from(config)?,
        });
        Ok(())
    }
}

impl LocalTts {
    fn loaded(&self) -> Result<&PiperLoaded, PluginError> {
        self.loaded
            .get()
            .ok_or_else(|| PluginError::Config("local TTS is not initialised".into()))
    }
}

#[async_trait::async_trait]
impl TtsPlugin for LocalTts {
    async fn prepare(&self, cfg: &TtsSessionConfig) -> Result<(), PluginError> {
        check_format(cfg, self.loaded()?.voice.sample_rate())
    }

    async fn synthesize(
        &self,
        cfg: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let l = self.loaded()?;
        synthesize(&l.synth, &l.pool, l.espeak_timeout, cfg, request.text, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::test_models;

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
    async fn noise_is_range_checked_and_zero_makes_synthesis_repeatable() {
        for (key, value) in [
            ("noise_scale", serde_json::json!(2.5)),
            ("noise_w", serde_json::json!(-0.1)),
            ("noise_scale", serde_json::json!("loud")),
        ] {
            let mut map = serde_json::Map::new();
            map.insert("models_dir".into(), "/nonexistent/waav-models".into());
            map.insert(key.into(), value.clone());
            let config = PluginConfig::new("plugins.tts.local", map);
            match LocalTts::default()
                .init(&PluginContext::default(), &config)
                .await
            {
                Err(PluginError::Config(m)) => assert!(m.contains(key), "{key}={value}: {m}"),
                other => panic!("{key}={value}: {other:?}"),
            }
        }
        let Some(models) = test_models() else { return };
        let speak_twice = |noise: Option<f32>| {
            let models = models.root().to_owned();
            async move {
                let mut map = serde_json::Map::new();
                map.insert("models_dir".into(), models.display().to_string().into());
                if let Some(n) = noise {
                    map.insert("noise_scale".into(), n.into());
                    map.insert("noise_w".into(), n.into());
                }
                let tts = LocalTts::default();
                tts.init(&PluginContext::default(), &PluginConfig::new("t", map))
                    .await
                    .expect("init");
                let voice = tts.loaded().unwrap().voice.clone();
                let text = "Please call me back tomorrow morning.";
                (
                    voice.synthesize(text, None).unwrap(),
                    voice.synthesize(text, None).unwrap(),
                )
            }
        };
        let (a, b) = speak_twice(Some(0.0)).await;
        assert!(!a.is_empty());
        assert_eq!(
            a, b,
            "without noise, a text is spoken the same way every time"
        );
        // The voice's own noise is drawn afresh on each call (why fixtures turn it off).
        let (a, b) = speak_twice(None).await;
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn prepare_refuses_before_init_and_formats_it_does_not_produce() {
        let tts = LocalTts::default();
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, 22_050);
        assert!(matches!(
            tts.prepare(&cfg).await,
            Err(PluginError::Config(_))
        ));
        let Some(models) = test_models() else { return };
        tts.init(&PluginContext::default(), &config(models.root()))
            .await
            .expect("init");
        let rate = tts.loaded().unwrap().voice.sample_rate();
        assert_eq!(tts.capabilities().sample_rates, vec![rate]);
        for bad in [u32::MAX, 0, rate + 1] {
            let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, bad);
            assert!(matches!(
                tts.prepare(&cfg).await,
                Err(PluginError::Config(_))
            ));
        }
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, rate);
        tts.prepare(&cfg).await.unwrap();
    }
}
