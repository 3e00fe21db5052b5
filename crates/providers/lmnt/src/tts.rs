//! LMNT text-to-speech: `POST /v1/ai/speech/bytes` for [`TtsPlugin::synthesize`] (the audio
//! bytes streamed into the sink as LMNT encodes them), `GET /v1/ai/voice/list` for
//! [`TtsPlugin::voices`]. Plugin id `lmnt`.
//!
//! Audio: `pcm_s16le` (Linear16), `ulaw` (Mulaw; its WAV header is removed here) and `mp3`
//! (passthrough), each at 8, 16 or 24 kHz (`sample_rate`). `pcm_f32le`, `webm`, `aac` and `wav`
//! are not declared (no host use: the host converts PCM16 itself).
//!
//! Controls: `cfg.voice_id` → `voice`, `cfg.model` → `model` (`blizzard`),
//! `cfg.speaking_rate` → `speed` (a v1 API field the v2 SDK dropped: sent only when not 1,
//! `send_speed` turns it off; UNCONFIRMED that the service honours it), `cfg.emotion`'s
//! intensity → `temperature` (LMNT's only expressiveness control; emotion names, styles and
//! descriptions have no LMNT equivalent and are ignored with a debug log).
//!
//! Sessions: [`TtsPlugin::open_stream`] keeps one `/v1/ai/speech/stream` WebSocket per session
//! (the typed session protocol of lmnt-python `resources/sessions.py`; see the `stream` module),
//! unless `stream_input` is off or the session needs speed / temperature / top_p, which only
//! the HTTP body carries: then the host drives `synthesize` per request. Word timestamps (a
//! WebSocket feature) are not produced, the contract having no place for them yet.

mod rest;
mod settings;
mod stream;
mod wav;

pub use settings::{
    emotion_temperature, Settings, DEFAULT_BASE_URL, DEFAULT_MODEL, DEFAULT_VOICE, SAMPLE_RATES,
};
pub use wav::WavStripper;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Instant;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig,
    PluginContext, PluginError, PluginInfo, ProviderTask, Secret, SpeakRequest, TtsIo, TtsPlugin,
    TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::http::{HttpClient, HttpClientConfig};
use waav_provider_kit::ws::WsConfig;

const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "LMNT_API_KEY")];

/// Cached voice listings by (base URL, key, owner filter).
type VoiceCache = HashMap<(String, Secret, Option<String>), (Instant, Vec<VoiceInfo>)>;

/// LMNT text-to-speech. Plugin id `lmnt`; credential `api_key` (environment `LMNT_API_KEY`),
/// sent as `X-API-Key`. Config keys: see [`Settings`].
#[derive(Debug, Default)]
pub struct LmntTts {
    settings: RwLock<Settings>,
    http: OnceLock<HttpClient>,
    voices: Mutex<VoiceCache>,
}

impl LmntTts {
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
        .ok_or_else(|| PluginError::Auth("lmnt: no API key (set api_key or LMNT_API_KEY)".into()))
}

fn check(config: &TtsSessionConfig) -> Result<(Settings, settings::Plan, Secret), PluginError> {
    let s = Settings::from_config(&config.plugin_config)?;
    let key = api_key(config)?;
    let plan = settings::plan(&s, config)?;
    Ok((s, plan, key))
}

#[async_trait::async_trait]
impl Plugin for LmntTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("lmnt", "LMNT")
            .version(env!("CARGO_PKG_VERSION"))
            .description("LMNT text-to-speech (POST /v1/ai/speech/bytes, streamed)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models([ModelInfo::new(DEFAULT_MODEL, "Blizzard")])
            .languages(settings::LANGUAGES.iter().copied())
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Mp3,
            ])
            .sample_rates(SAMPLE_RATES)
            .features(self.settings().stream_input, true, false, false)
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
impl TtsPlugin for LmntTts {
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
            return Ok(()); // nothing to say; LMNT refuses empty text
        }
        let http = self.http(&s)?;
        rest::synthesize(http, &s, &plan, &key, request, out).await
    }

    async fn open_stream(
        &self,
        config: &TtsSessionConfig,
        io: TtsIo,
    ) -> Result<Option<ProviderTask>, PluginError> {
        let (s, plan, key) = check(config)?;
        if !s.stream_input {
            return Ok(None);
        }
        if settings::needs_http(&plan) {
            tracing::debug!("lmnt: speed/temperature/top_p need the HTTP endpoint; no WebSocket");
            return Ok(None);
        }
        let mut ws = WsConfig::new(settings::stream_url(&s.base_url))
            .secret(key.clone())
            .context("lmnt");
        ws.connect_timeout = s.connect_timeout;
        ws.ping_interval = Some(std::time::Duration::from_secs(15));
        let setup = stream::StreamSetup {
            ws,
            init: settings::init_message(&plan, key.expose()),
            strip_wav: plan.format == "ulaw",
            response_timeout: s.response_timeout,
        };
        Ok(Some(Box::pin(stream::run(setup, io))))
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let key = api_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| PluginError::Auth("lmnt: no API key to list voices with".into()))?;
        let s = self.settings();
        let cache_key = (s.base_url.clone(), key.clone(), s.voices_owner.clone());
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
