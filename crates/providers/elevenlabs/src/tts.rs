//! The ElevenLabs text-to-speech plugin: REST `…/stream` for [`TtsPlugin::synthesize`], the
//! `multi-stream-input` WebSocket for [`TtsPlugin::open_stream`], `GET /v1/voices` for
//! [`TtsPlugin::voices`].

mod messages;
mod rest;
mod settings;
mod stream;

pub use settings::{Settings, DEFAULT_BASE_URL, DEFAULT_MODEL, DEFAULT_VOICE, PCM_RATES};

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig,
    PluginContext, PluginError, PluginInfo, ProviderTask, Secret, SpeakRequest, TtsIo, TtsPlugin,
    TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::http::{HttpClient, HttpClientConfig};
use waav_provider_kit::ws::WsConfig;

/// The credential: an ElevenLabs API key, sent as `xi-api-key`.
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "ELEVENLABS_API_KEY")];

/// Text-to-speech models (elevenlabs.io/docs "Models"; `models` in the config adds others).
/// `eleven_v3` is listed for REST; whether it is served on the WebSocket is UNCONFIRMED.
const MODELS: &[(&str, &str)] = &[
    ("eleven_flash_v2_5", "Eleven Flash v2.5"),
    ("eleven_flash_v2", "Eleven Flash v2"),
    ("eleven_turbo_v2_5", "Eleven Turbo v2.5"),
    ("eleven_turbo_v2", "Eleven Turbo v2"),
    ("eleven_multilingual_v2", "Eleven Multilingual v2"),
    ("eleven_v3", "Eleven v3"),
    ("eleven_monolingual_v1", "Eleven English v1"),
    ("eleven_multilingual_v1", "Eleven Multilingual v1"),
];

/// Cached voice listings by (base URL, API key), with the time each was fetched.
type VoiceCache = HashMap<(String, Secret), (Instant, Vec<VoiceInfo>)>;

/// ElevenLabs text-to-speech. Plugin id `elevenlabs` (aliases `eleven-labs`, `11labs`).
///
/// Config section (all optional): `base_url` (default `https://api.elevenlabs.io`; `http://`
/// allowed; the WebSocket URL is derived, `https`→`wss`), `voice_id` (default
/// [`DEFAULT_VOICE`]), `model` (default [`DEFAULT_MODEL`]), `models` (extra model ids),
/// `language_code`, the base `voice_settings` `stability`, `similarity_boost`, `style` (0–1)
/// and `use_speaker_boost`, `enable_logging` (false = zero retention), `apply_text_normalization`
/// (`auto`|`on`|`off`), `mp3_bitrate` (44.1 kHz MP3: 32/64/96/128/192, default 128),
/// `stream_input` (default true: sessions use the multi-context WebSocket; false: the host
/// drives REST per request), `chunk_length_schedule`, `auto_mode`, `inactivity_timeout` (s,
/// WebSocket), `max_contexts` (default 5), `response_timeout_ms` (20000: a request without audio
/// for this long fails with Timeout), `connect_timeout_ms` (10000), `max_message_bytes` (4 MiB),
/// `voices_ttl_secs` (300).
///
/// Audio: linear16 at 8/16/22.05/24/32/44.1/48 kHz (`pcm_<rate>`, raw little-endian PCM16),
/// mulaw/alaw (`ulaw_8000`/`alaw_8000`; other rates from PCM, G.711-encoded here), mp3 at
/// 22.05/24/44.1 kHz (passthrough). Emotion and speaking rate: see [`Settings`] and
/// `voice_settings` mapping in the `settings` module docs (style/stability, speed 0.7–1.2).
/// Word timings (alignment) are not produced: the contract has no place for them yet.
#[derive(Debug, Default)]
pub struct ElevenLabsTts {
    /// Settings from `init` (for capabilities and voices).
    settings: RwLock<Settings>,
    /// One pooled client per instance.
    http: OnceLock<HttpClient>,
    /// Voice listings by (base URL, key).
    voices: Mutex<VoiceCache>,
}

impl ElevenLabsTts {
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
        // Timeouts per request are applied around each call; the client only bounds connects.
        let client = HttpClient::new(HttpClientConfig {
            timeout: None,
            read_timeout: None,
            connect_timeout: s.connect_timeout,
            context: "elevenlabs".to_owned(),
            ..HttpClientConfig::default()
        })?;
        Ok(self.http.get_or_init(|| client))
    }
}

/// The resolved API key: the session's `api_key`, else the `api_key` credential.
fn api_key(config: &TtsSessionConfig) -> Result<Secret, PluginError> {
    config
        .api_key
        .clone()
        .or_else(|| config.credentials.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            PluginError::Auth(
                "elevenlabs: no API key (set api_key or ELEVENLABS_API_KEY)".to_owned(),
            )
        })
}

/// Validates everything a request needs, without I/O.
fn check(config: &TtsSessionConfig) -> Result<(Settings, Secret), PluginError> {
    let s = Settings::from_config(&config.plugin_config)?;
    let key = api_key(config)?;
    settings::voice_id(&s, config)?;
    settings::model_id(&s, config)?;
    settings::output_format(&s, config)?;
    Ok((s, key))
}

#[async_trait::async_trait]
impl Plugin for ElevenLabsTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("elevenlabs", "ElevenLabs")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["eleven-labs", "11labs"])
            .description("ElevenLabs text-to-speech (REST stream, multi-context WebSocket)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let s = self.settings();
        let mut models: Vec<ModelInfo> = MODELS
            .iter()
            .map(|(id, name)| ModelInfo::new(*id, *name))
            .collect();
        for id in &s.extra_models {
            if !models.iter().any(|m| m.id.eq_ignore_ascii_case(id)) {
                models.push(ModelInfo::new(id.clone(), id.clone()));
            }
        }
        Capabilities::new()
            .models(models)
            // Preferred first: raw PCM; G.711 for telephony; MP3 only as a passthrough.
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
                AudioEncoding::Mp3,
            ])
            .sample_rates(PCM_RATES.iter().copied())
            .features(s.stream_input, true, false, false)
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
impl TtsPlugin for ElevenLabsTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        check(config).map(|_| ())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let (s, key) = check(config)?;
        let http = self.http(&s)?;
        rest::synthesize(http, &s, config, &key, request, out).await
    }

    async fn open_stream(
        &self,
        config: &TtsSessionConfig,
        io: TtsIo,
    ) -> Result<Option<ProviderTask>, PluginError> {
        let (s, key) = check(config)?;
        if !s.stream_input {
            return Ok(None);
        }
        let voice = settings::voice_id(&s, config)?;
        let model = settings::model_id(&s, config)?;
        let format = settings::output_format(&s, config)?;
        let url = settings::multi_stream_url(&s, voice, model, &format);
        let mut ws = WsConfig::new(url)
            .header("xi-api-key", key.clone())
            .secret(key)
            .context("elevenlabs");
        ws.connect_timeout = s.connect_timeout;
        ws.max_message_size = s.max_message_bytes;
        ws.ping_interval = Some(Duration::from_secs(15));
        let setup = stream::StreamSetup {
            ws,
            voice_settings: settings::voice_settings(&s, config),
            chunk_length_schedule: s.chunk_length_schedule.clone(),
            transcode: format.transcode,
            response_timeout: s.response_timeout,
            max_contexts: s.max_contexts,
        };
        Ok(Some(Box::pin(stream::run(setup, io))))
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let key = api_key.filter(|k| !k.is_empty()).ok_or_else(|| {
            PluginError::Auth("elevenlabs: no API key to list voices with".to_owned())
        })?;
        let s = self.settings();
        let cache_key = (s.base_url.clone(), key.clone());
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
