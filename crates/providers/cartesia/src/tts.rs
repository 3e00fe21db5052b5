//! The Cartesia Sonic TTS plugin.
//!
//! - [`synthesize`](TtsPlugin::synthesize): `POST /tts/bytes`, whose body is the raw audio,
//!   streamed as it is generated (docs.cartesia.ai "Compare TTS endpoints": all three endpoints
//!   stream; bytes is the better HTTP choice for audio only, being smaller than the base64 JSON
//!   of `/tts/sse`, whose only extra is timestamps, which the contract does not carry yet).
//! - [`open_stream`](TtsPlugin::open_stream): one `/tts/websocket` per session, one
//!   `context_id` per request, `{"context_id":…,"cancel":true}` on cancel; the next request is
//!   sent ahead while the current one plays (`prefetch`, default 1) and its audio held until its
//!   turn. MP3 (REST only) makes `open_stream` decline, so the host drives `synthesize`.
//! - [`voices`](TtsPlugin::voices): `GET /voices`, paginated, cached per key for
//!   `voices_ttl_secs` (default 300).

mod messages;
mod options;
mod rest;
mod stream;

pub use options::{
    AuthScheme, Controls, Settings, DEFAULT_BASE_URL, DEFAULT_MODEL, DEFAULT_VERSION,
    DEFAULT_VOICE, SAMPLE_RATES,
};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig,
    PluginContext, PluginError, PluginInfo, ProviderTask, Secret, SpeakRequest, TtsIo, TtsPlugin,
    TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::http::{HttpClient, HttpClientConfig};

/// The credential this plugin needs.
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "CARTESIA_API_KEY")];

/// Cached voice listings kept at most (one per key and base URL).
const VOICE_CACHE_ENTRIES: usize = 32;

type VoiceCache = HashMap<(String, Secret), (Instant, Arc<Vec<VoiceInfo>>)>;

/// Cartesia Sonic text-to-speech. Plugin id `cartesia`.
///
/// Config section (all optional): `base_url` (default `https://api.cartesia.ai`; `http://` for
/// tests; the WebSocket URL is derived), `cartesia_version` (default `2024-11-13`),
/// `auth_scheme` (`api_key`: `X-API-Key` + `?api_key=`, the default; `bearer`:
/// `Authorization: Bearer` on both), `model` (default `sonic-2`), `models` (extra ids),
/// `voice` (default voice id), `language`, `controls` (`auto` | `generation_config` |
/// `experimental` | `none`), `volume` (sonic-3, 0.5–2.0), `max_buffer_delay_ms`,
/// `pronunciation_dict_id`, `add_timestamps` (parsed and logged only), `mp3_bit_rate`
/// (default 128000), `prefetch` (0–8, default 1), `max_prefetch_bytes`, `response_timeout_ms`
/// (default 15000), `connect_timeout_ms` (10000), `voices_ttl_secs` (300),
/// `max_message_bytes` (4 MiB).
#[derive(Debug, Default)]
pub struct CartesiaTts {
    settings: RwLock<Settings>,
    http: Mutex<Option<HttpClient>>,
    voices: Mutex<VoiceCache>,
}

impl CartesiaTts {
    /// A plugin with default settings (until `init`).
    pub fn new() -> Self {
        Self::default()
    }

    fn init_settings(&self) -> Settings {
        self.settings.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// The instance's pooled HTTP client (built on first use). Reads are bounded per request by
    /// `response_timeout_ms`, not by the client.
    fn http(&self) -> Result<HttpClient, PluginError> {
        let mut slot = self.http.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let s = self.init_settings();
        let client = HttpClient::new(HttpClientConfig {
            timeout: None,
            connect_timeout: s.connect_timeout,
            read_timeout: None,
            context: "cartesia".to_owned(),
            ..HttpClientConfig::default()
        })?;
        *slot = Some(client.clone());
        Ok(client)
    }
}

#[async_trait::async_trait]
impl Plugin for CartesiaTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("cartesia", "Cartesia")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["cartesia-tts", "cartesia-sonic"])
            .description("Cartesia Sonic text-to-speech (/tts/bytes, /tts/websocket)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let s = self.init_settings();
        let mut models: Vec<ModelInfo> = options::MODELS
            .iter()
            .map(|(id, name)| ModelInfo::new(*id, *name))
            .collect();
        for id in s.extra_models.iter().chain([&s.model]) {
            if !models.iter().any(|m| m.id.eq_ignore_ascii_case(id)) {
                models.push(ModelInfo::new(id.clone(), id.clone()));
            }
        }
        Capabilities::new()
            .models(models)
            .languages(options::LANGUAGES.iter().copied())
            // Preferred first: raw PCM. G.711 is produced natively; MP3 over REST only.
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
                AudioEncoding::Mp3,
            ])
            .sample_rates(SAMPLE_RATES)
            // Word timestamps are parsed on the WebSocket but not emitted (not in the contract).
            .features(true, true, false, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        let unknown = Settings::unknown_keys(config);
        if !unknown.is_empty() {
            tracing::warn!(path = config.path(), keys = ?unknown, "cartesia: unknown config keys ignored");
        }
        if let Ok(mut slot) = self.settings.write() {
            *slot = s;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for CartesiaTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(&config.plugin_config)?;
        api_key(config)?;
        options::check_session(config, &s)?;
        // The body must build (it validates the format once more, cheaply).
        options::generation_body(&s, config, "")?;
        Ok(())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let s = Settings::from_config(&config.plugin_config)?;
        let key = api_key(config)?;
        options::check_session(config, &s)?;
        let http = self.http()?;
        rest::synthesize(&http, &s, config, &key, request, out).await
    }

    async fn open_stream(
        &self,
        config: &TtsSessionConfig,
        io: TtsIo,
    ) -> Result<Option<ProviderTask>, PluginError> {
        if config.encoding == AudioEncoding::Mp3 {
            // The WebSocket carries raw audio only; MP3 goes through `POST /tts/bytes`.
            return Ok(None);
        }
        let s = Settings::from_config(&config.plugin_config)?;
        let key = api_key(config)?;
        options::check_session(config, &s)?;
        let session = stream::Session::open(s, config.clone(), key, io).await?;
        Ok(Some(Box::pin(session.run())))
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let key = api_key.filter(|k| !k.is_empty()).ok_or_else(missing_key)?;
        let s = self.init_settings();
        let cache_key = (s.base_url.clone(), key.clone());
        if let Some((at, voices)) = self
            .voices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&cache_key)
        {
            if at.elapsed() < s.voices_ttl {
                return Ok(voices.as_ref().clone());
            }
        }
        let http = self.http()?;
        let voices = Arc::new(rest::list_voices(&http, &s, &key).await?);
        let mut cache = self.voices.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|_, (at, _)| at.elapsed() < s.voices_ttl);
        if cache.len() >= VOICE_CACHE_ENTRIES {
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(cache_key, (Instant::now(), voices.clone()));
        Ok(voices.as_ref().clone())
    }
}

fn missing_key() -> PluginError {
    PluginError::Auth("cartesia: no API key (set api_key or CARTESIA_API_KEY)".to_owned())
}

/// The resolved API key: the session's `api_key`, else the `api_key` credential.
fn api_key(config: &TtsSessionConfig) -> Result<Secret, PluginError> {
    config
        .api_key
        .clone()
        .or_else(|| config.credentials.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(missing_key)
}
