//! The Deepgram Aura text-to-speech plugin (`/v1/speak`, REST and WebSocket).
//!
//! - [`synthesize`](TtsPlugin::synthesize): `POST /v1/speak` with the options in the query and
//!   `{"text": …}` as the body; the audio body is streamed into the sink as it arrives.
//! - [`open_stream`](TtsPlugin::open_stream): one speak WebSocket per session (see
//!   [`stream`]) when the format is one the socket produces (linear16, mulaw, alaw at
//!   8/16/24/32/48 kHz) and `streaming` is not switched off; otherwise the host drives
//!   `synthesize`.
//! - [`voices`](TtsPlugin::voices): the `tts` models of `GET /v1/models`, cached for
//!   `voices_ttl_secs` (default 300).
//!
//! Aura has no emotion or style control (style comes from the voice): `emotion` is ignored with
//! a debug log; `speaking_rate` becomes `speed` (0.7–1.5, clamped). Deepgram sends no word
//! timings for TTS, so there is nothing to parse there.

mod messages;
mod options;
mod rest;
mod stream;

pub use options::{Settings, DEFAULT_BASE_URL, DEFAULT_VOICE};

use std::sync::{Mutex, RwLock};
use std::time::Instant;
use waav_plugin_api::{
    AudioSink, Capabilities, CredentialField, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProviderTask, Secret, SpeakRequest, TtsIo, TtsPlugin, TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::http::{HttpClient, HttpClientConfig};
use waav_provider_kit::ws::WsConfig;

/// The credential: an API key (or, with `auth_scheme: bearer`, a temporary token).
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "DEEPGRAM_API_KEY")];

/// A cached voice listing.
#[derive(Debug)]
struct VoiceCache {
    at: Instant,
    base_url: String,
    voices: Vec<VoiceInfo>,
}

/// Deepgram Aura text-to-speech. Plugin id `deepgram` (TTS).
///
/// Config section (all optional): `base_url` (default `https://api.deepgram.com`; `http://` for
/// self-hosted or tests; the WebSocket URL is derived), `voice` (or `model`; default
/// `aura-2-thalia-en`), `auth_scheme` (`token` | `bearer`), `streaming` (default true: use the
/// WebSocket for sessions), `bit_rate` (mp3/opus), `mip_opt_out`, `tag` (string or list; REST
/// usage labels), `voices_ttl_secs` (300), and the waits `connect_timeout_ms` (10000),
/// `read_timeout_ms` (15000: REST head and each body chunk), `response_timeout_ms` (15000:
/// WebSocket silence while audio is owed), `drain_timeout_ms` (2000), plus `max_message_bytes`.
#[derive(Debug, Default)]
pub struct DeepgramTts {
    /// Settings from `init` (used by `voices`, which has no session config).
    settings: RwLock<Option<Settings>>,
    /// One pooled client per plugin instance, built on first use.
    http: Mutex<Option<HttpClient>>,
    voices: Mutex<Option<VoiceCache>>,
}

impl DeepgramTts {
    /// A plugin with no configuration yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn http(&self) -> Result<HttpClient, PluginError> {
        let mut slot = self.http.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let connect_timeout = self
            .init_settings()
            .map_or(Settings::default().connect_timeout, |s| s.connect_timeout);
        let client = HttpClient::new(HttpClientConfig {
            // Streaming bodies: reads are bounded per chunk by `read_timeout_ms` instead.
            timeout: None,
            read_timeout: None,
            connect_timeout,
            context: rest::CONTEXT.to_owned(),
            ..HttpClientConfig::default()
        })?;
        *slot = Some(client.clone());
        Ok(client)
    }

    fn init_settings(&self) -> Option<Settings> {
        self.settings.read().ok().and_then(|s| s.as_ref().cloned())
    }
}

/// The session's key: its `api_key`, else the `api_key` credential.
fn api_key(config: &TtsSessionConfig) -> Result<Secret, PluginError> {
    config
        .api_key
        .clone()
        .or_else(|| config.credentials.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            PluginError::Auth(
                "deepgram tts: no API key (set api_key or DEEPGRAM_API_KEY)".to_owned(),
            )
        })
}

#[async_trait::async_trait]
impl Plugin for DeepgramTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("deepgram", "Deepgram")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["deepgram-tts", "deepgram-aura"])
            .description("Deepgram Aura text-to-speech (/v1/speak, REST and WebSocket)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        // Voices are not declared here (the list grows; `voices()` fetches it), so any model id
        // passes the host's check and Deepgram judges it.
        Capabilities::new()
            .encodings(options::ENCODINGS.iter().copied())
            .sample_rates(options::SAMPLE_RATES.iter().copied())
            .features(true, true, false, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        if let Ok(mut slot) = self.settings.write() {
            *slot = Some(s);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for DeepgramTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        let settings = Settings::from_config(&config.plugin_config)?;
        api_key(config)?;
        options::resolve(&settings, config)?;
        Ok(())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let settings = Settings::from_config(&config.plugin_config)?;
        let key = api_key(config)?;
        let req = options::resolve(&settings, config)?;
        if request.text.trim().is_empty() {
            // Nothing to say; Deepgram would refuse an empty text.
            return Ok(());
        }
        let http = self.http()?;
        rest::synthesize(&http, &settings, &req, &key, &request.text, &out).await
    }

    async fn open_stream(
        &self,
        config: &TtsSessionConfig,
        io: TtsIo,
    ) -> Result<Option<ProviderTask>, PluginError> {
        let settings = Settings::from_config(&config.plugin_config)?;
        let key = api_key(config)?;
        let req = options::resolve(&settings, config)?;
        if !settings.streaming || !options::ws_supports(&req) {
            return Ok(None);
        }
        let auth = Secret::new(rest::auth_value(&settings, &key));
        let mut ws_cfg = WsConfig::new(options::ws_url(&settings, &req))
            .header("Authorization", auth)
            .secret(key)
            .context(rest::CONTEXT);
        ws_cfg.connect_timeout = settings.connect_timeout;
        ws_cfg.max_message_size = settings.max_message_bytes;
        // Dial now, so a refused key or voice fails the session's start, not its first request.
        let conn = stream::connect(&ws_cfg).await?;
        let session = stream::Session::new(settings, ws_cfg, io, Some(conn));
        Ok(Some(Box::pin(session.run())))
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let settings = self.init_settings().unwrap_or_default();
        {
            let cache = self.voices.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = cache.as_ref() {
                if c.base_url == settings.base_url && c.at.elapsed() < settings.voices_ttl {
                    return Ok(c.voices.clone());
                }
            }
        }
        let http = self.http()?;
        let key = api_key.filter(|k| !k.is_empty());
        let voices = rest::list_voices(&http, &settings, key.as_ref()).await?;
        let mut cache = self.voices.lock().unwrap_or_else(|p| p.into_inner());
        *cache = Some(VoiceCache {
            at: Instant::now(),
            base_url: settings.base_url.clone(),
            voices: voices.clone(),
        });
        Ok(voices)
    }
}
