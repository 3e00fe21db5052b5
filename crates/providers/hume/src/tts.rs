//! Hume Octave text-to-speech: `POST /v0/tts/stream/file` for [`TtsPlugin::synthesize`] (the
//! audio bytes streamed into the sink as Hume produces them), `GET /v0/tts/voices` for
//! [`TtsPlugin::voices`]. Plugin id `hume` (alias `hume-ai`).
//!
//! Audio: `pcm` (16-bit little-endian mono at 48 kHz: Linear16 @ 48000) and `mp3` (48 kHz,
//! passthrough). Hume has no rate field; the host resamples. `wav` is not declared (the host
//! writes headers itself).
//!
//! Controls: `cfg.voice_id` (a UUID → `{"id"}`, else a name → `{"name", "provider"}`),
//! `cfg.model` (`octave-1` / `octave-2` → `version`), `cfg.speaking_rate` → `speed`
//! (0.25–3.0), `cfg.emotion` → a short acting-instructions sentence in `description`, after
//! the config's own `description`. `instant_mode` is on by default (low latency; it needs a
//! voice, and the plugin always sends one).
//!
//! Not done: the `/v0/tts/stream/input` WebSocket (its protocol is UNCONFIRMED), and word
//! timestamps (only on `/stream/json`; the contract has no place for them yet).

mod rest;
mod settings;

pub use settings::{
    emotion_description, Settings, DEFAULT_BASE_URL, DEFAULT_VOICE, MODELS, SAMPLE_RATE,
};

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Instant;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig,
    PluginContext, PluginError, PluginInfo, Secret, SpeakRequest, TtsPlugin, TtsSessionConfig,
    VoiceInfo,
};
use waav_provider_kit::http::{HttpClient, HttpClientConfig};

const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "HUME_API_KEY")];

/// Cached voice listings by (base URL, key, custom voices included).
type VoiceCache = HashMap<(String, Secret, bool), (Instant, Vec<VoiceInfo>)>;

/// Hume Octave text-to-speech. Plugin id `hume` (alias `hume-ai`); credential `api_key`
/// (environment `HUME_API_KEY`), sent as `X-Hume-Api-Key`. Config keys: see [`Settings`].
#[derive(Debug, Default)]
pub struct HumeTts {
    settings: RwLock<Settings>,
    http: OnceLock<HttpClient>,
    voices: Mutex<VoiceCache>,
}

impl HumeTts {
    /// A plugin with default settings until `init`.
    pub fn new() -> Self {
        Self::default()
    }

    fn settings(&self) -> Settings {
        self.settings.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn http(&self, s: &Settings) -> Result<&HttpClient, PluginError> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        // Streaming bodies: reads are bounded per chunk by `response_timeout_ms` instead.
        let client = HttpClient::new(HttpClientConfig {
            timeout: None,
            read_timeout: None,
            connect_timeout: s.connect_timeout,
            context: rest::CONTEXT.to_owned(),
            ..HttpClientConfig::default()
        })?;
        Ok(self.http.get_or_init(|| client))
    }
}

fn api_key(config: &TtsSessionConfig) -> Result<Secret, PluginError> {
    config
        .api_key
        .clone()
        .or_else(|| config.credentials.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| PluginError::Auth("hume: no API key (set api_key or HUME_API_KEY)".into()))
}

fn check(config: &TtsSessionConfig) -> Result<(Settings, settings::Plan, Secret), PluginError> {
    let s = Settings::from_config(&config.plugin_config)?;
    let key = api_key(config)?;
    let plan = settings::plan(&s, config)?;
    Ok((s, plan, key))
}

#[async_trait::async_trait]
impl Plugin for HumeTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("hume", "Hume")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["hume-ai"])
            .description("Hume Octave text-to-speech (POST /v0/tts/stream/file, streamed)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models(
                MODELS
                    .iter()
                    .map(|(id, name, _)| ModelInfo::new(*id, *name)),
            )
            .encodings([AudioEncoding::Linear16, AudioEncoding::Mp3])
            .sample_rates([SAMPLE_RATE])
            .features(true, true, false, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        if let Ok(mut w) = self.settings.write() {
            *w = s;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for HumeTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        check(config).map(|_| ())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let (s, plan, key) = check(config)?;
        if request.text.trim().is_empty() {
            return Ok(()); // nothing to say; Hume refuses empty text with a 422
        }
        let http = self.http(&s)?;
        rest::synthesize(http, &s, &plan, &key, request, out).await
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let key = api_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| PluginError::Auth("hume: no API key to list voices with".into()))?;
        let s = self.settings();
        let cache_key = (s.base_url.clone(), key.clone(), s.include_custom_voices);
        if let Ok(cache) = self.voices.lock() {
            if let Some((at, list)) = cache.get(&cache_key) {
                if at.elapsed() < s.voices_ttl {
                    return Ok(list.clone());
                }
            }
        }
        let list = rest::voices(self.http(&s)?, &s, &key).await?;
        if let Ok(mut cache) = self.voices.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < s.voices_ttl);
            cache.insert(cache_key, (Instant::now(), list.clone()));
        }
        Ok(list)
    }
}
