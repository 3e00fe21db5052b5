//! TTS plugin `espeak`: the espeak-ng program as a subprocess (never linked: it is GPL-3).

use super::pool::Pool;
use super::settings::{engine_health, espeak_timeout_from, InitError};
use super::tts_session::{check_format, pool_from, synthesize, SynthFn};
use crate::espeak::{espeak_synthesize_with, espeak_voices, RunLimits};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, HealthStatus, ModelInfo, Plugin, PluginConfig,
    PluginContext, PluginError, PluginInfo, SpeakRequest, TtsPlugin, TtsSessionConfig, VoiceInfo,
};

/// The rate espeak-ng writes its WAV output at.
pub const ESPEAK_RATE: u32 = 22_050;

struct EspeakLoaded {
    voices: Vec<VoiceInfo>,
    pool: Pool,
    timeout: Duration,
}

/// The `espeak` TTS plugin (espeak-ng subprocess).
#[derive(Default)]
pub struct EspeakTts {
    loaded: OnceLock<EspeakLoaded>,
    init_error: InitError,
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
            .map(|l| l.voices.clone())
            .unwrap_or_default();
        // Linear16 at espeak-ng's own rate; the host converts to what clients ask for.
        Capabilities::new()
            .sample_rates([ESPEAK_RATE])
            .models([ModelInfo::new("espeak-ng", "eSpeak NG")])
            .voices(voices)
            .encodings([AudioEncoding::Linear16])
            .features(true, true, false, false)
    }

    /// Config: `workers`, `max_queue` (16), `espeak_timeout_ms` (10000, per espeak-ng run).
    async fn init(&self, ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        self.load(ctx, config)
            .await
            .map_err(|e| self.init_error.record(e))
    }

    /// `Unhealthy` when espeak-ng did not run at `init`, `Degraded` while the queue is full.
    fn health(&self) -> HealthStatus {
        engine_health(
            self.loaded.get().map(|l| &l.pool),
            &self.init_error,
            "espeak-ng",
        )
    }
}

impl EspeakTts {
    async fn load(&self, _: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let timeout = espeak_timeout_from(config)?;
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
        let _ = self.loaded.set(EspeakLoaded {
            voices,
            pool,
            timeout,
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for EspeakTts {
    async fn prepare(&self, cfg: &TtsSessionConfig) -> Result<(), PluginError> {
        if self.loaded.get().is_none() {
            return Err(PluginError::Config("espeak TTS is not initialised".into()));
        }
        check_format(cfg, ESPEAK_RATE)
    }

    async fn synthesize(
        &self,
        cfg: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let (pool, timeout) = self
            .loaded
            .get()
            .map(|l| (l.pool.clone(), l.timeout))
            .ok_or_else(|| PluginError::Config("espeak TTS is not initialised".into()))?;
        let voice = if cfg.voice_id.is_empty() {
            "en-us".to_owned()
        } else {
            cfg.voice_id.clone()
        };
        let synth: SynthFn = Arc::new(move |text: &str, rate: f32, limits: &RunLimits| {
            let wpm = (175.0 * rate) as u32;
            Ok(espeak_synthesize_with(text, &voice, wpm, limits)?)
        });
        synthesize(&synth, &pool, timeout, cfg, request.text, out).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::espeak::espeak_or_skip;
    use waav_plugin_api::CancelFlag;

    fn config(values: serde_json::Value) -> PluginConfig {
        PluginConfig::from_value("plugins.tts.espeak", values).unwrap()
    }

    #[tokio::test]
    async fn health_follows_espeak_and_the_queue() {
        let tts = EspeakTts::default();
        assert!(
            matches!(tts.health(), HealthStatus::Unhealthy(ref r) if r.contains("not initialised"))
        );
        if !espeak_or_skip() {
            return;
        }
        let cfg = config(serde_json::json!({ "workers": 1, "max_queue": 1 }));
        tts.init(&PluginContext::default(), &cfg).await.unwrap();
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
        assert!(matches!(tts.health(), HealthStatus::Degraded(_)));
        tx.send(()).unwrap();
        busy.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        assert_eq!(tts.health(), HealthStatus::Healthy);
    }

    /// The configured time limit reaches the espeak-ng process of a request: a tiny limit
    /// (1 ms) fails it promptly with a timeout.
    #[tokio::test]
    async fn the_timeout_applies_to_requests() {
        if !espeak_or_skip() {
            return;
        }
        let tts = EspeakTts::default();
        let cfg = config(serde_json::json!({ "espeak_timeout_ms": 1 }));
        tts.init(&PluginContext::default(), &cfg).await.unwrap();
        let session = TtsSessionConfig::new(AudioEncoding::Linear16, ESPEAK_RATE);
        tts.prepare(&session).await.unwrap();
        let started = std::time::Instant::now();
        let (tx, _rx) = tokio::sync::mpsc::channel(8);
        let request = SpeakRequest {
            id: 1,
            text: "The quick brown fox jumps over the lazy dog. ".repeat(10),
            flush: true,
        };
        let out = AudioSink::new(1, tx, CancelFlag::new());
        match tts.synthesize(&session, request, out).await {
            Err(PluginError::Timeout(m)) => assert!(m.contains("espeak-ng"), "{m}"),
            other => panic!("expected a timeout, got {other:?}"),
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }

    #[tokio::test]
    async fn prepare_refuses_formats_it_does_not_produce() {
        let tts = EspeakTts::default();
        let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, ESPEAK_RATE);
        assert!(tts.prepare(&cfg).await.is_err(), "not initialised");
        if !espeak_or_skip() {
            return;
        }
        tts.init(&PluginContext::default(), &config(serde_json::json!({})))
            .await
            .unwrap();
        for rate in [u32::MAX, 0, 16_000] {
            let cfg = TtsSessionConfig::new(AudioEncoding::Linear16, rate);
            assert!(matches!(
                tts.prepare(&cfg).await,
                Err(PluginError::Config(_))
            ));
        }
        tts.prepare(&cfg).await.unwrap();
    }
}
