//! Play.ht text-to-speech: `POST /api/v2/tts/stream` for [`TtsPlugin::synthesize`] (raw audio
//! bytes streamed into the sink as Play.ht produces them), `GET /api/v2/voices` for
//! [`TtsPlugin::voices`]. Plugin id `playht` (aliases `play.ht`, `play-ht`).
//!
//! Audio: `raw` (Linear16), `mulaw` and `mp3` (passthrough) at 8–48 kHz (`sample_rate`).
//! Controls: `cfg.voice_id` → `voice` (a voice id or manifest URL), `cfg.model` →
//! `voice_engine`, `cfg.speaking_rate` → `speed` (0.1–5), `cfg.emotion` → `emotion` and
//! `style_guidance` on the PlayHT2.0 engines (see the settings module docs).
//!
//! Credentials: `api_key` (secret, environment `PLAYHT_API_KEY`) sent as `AUTHORIZATION`, and
//! `user_id` (not secret, required, environment `PLAYHT_USER_ID`) sent as `X-USER-ID`. The
//! voice listing receives only the API key from the host, so it takes the user id from the
//! config section's `user_id`, else from the last session prepared.
//!
//! Play.ht (PlayAI) reportedly wound its public API down in 2025 (UNCONFIRMED): this is a
//! legacy integration, tested against the fake only. The gRPC and WebSocket paths of the pyht
//! SDK are not implemented; the HTTP stream is the documented low-latency path.

mod rest;
mod settings;

pub use settings::{
    playht_emotion, Settings, DEFAULT_BASE_URL, DEFAULT_ENGINE, DEFAULT_VOICE, ENGINES,
    SAMPLE_RATES,
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

const CREDENTIALS: &[CredentialField] = &[
    CredentialField::secret("api_key", "PLAYHT_API_KEY"),
    CredentialField::setting("user_id", "PLAYHT_USER_ID"),
];

/// Cached voice listings by (base URL, key, user id, cloned voices included).
type VoiceCache = HashMap<(String, Secret, String, bool), (Instant, Vec<VoiceInfo>)>;

/// Play.ht text-to-speech. Plugin id `playht` (aliases `play.ht`, `play-ht`). Config keys: see
/// [`Settings`].
#[derive(Debug, Default)]
pub struct PlayHtTts {
    settings: RwLock<Settings>,
    http: OnceLock<HttpClient>,
    voices: Mutex<VoiceCache>,
    /// The user id of the last session prepared (for the voice listing).
    last_user: Mutex<Option<String>>,
}

impl PlayHtTts {
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

    fn check(
        &self,
        config: &TtsSessionConfig,
    ) -> Result<(Settings, settings::Plan, Secret, String), PluginError> {
        let s = Settings::from_config(&config.plugin_config)?;
        let key = config
            .api_key
            .clone()
            .or_else(|| config.credentials.get("api_key").cloned())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                PluginError::Auth("playht: no API key (set api_key or PLAYHT_API_KEY)".into())
            })?;
        let user = config
            .credentials
            .expose("user_id")
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                PluginError::Auth("playht: no user id (set user_id or PLAYHT_USER_ID)".into())
            })?
            .to_owned();
        if user.chars().any(char::is_control) {
            return Err(PluginError::Config("playht: invalid user id".into()));
        }
        let plan = settings::plan(&s, config)?;
        if let Ok(mut last) = self.last_user.lock() {
            *last = Some(user.clone());
        }
        Ok((s, plan, key, user))
    }
}

#[async_trait::async_trait]
impl Plugin for PlayHtTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("playht", "Play.ht")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["play.ht", "play-ht"])
            .description("Play.ht text-to-speech (POST /api/v2/tts/stream, streamed)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models(
                ENGINES
                    .iter()
                    .filter(|e| **e != "PlayDialog-turbo")
                    .map(|e| ModelInfo::new(*e, *e)),
            )
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Mp3,
            ])
            .sample_rates(SAMPLE_RATES)
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
impl TtsPlugin for PlayHtTts {
    async fn prepare(&self, config: &TtsSessionConfig) -> Result<(), PluginError> {
        self.check(config).map(|_| ())
    }

    async fn synthesize(
        &self,
        config: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let (s, plan, key, user) = self.check(config)?;
        if request.text.trim().is_empty() {
            return Ok(()); // nothing to say; Play.ht refuses empty text
        }
        let http = self.http(&s)?;
        rest::synthesize(http, &s, &plan, &key, &user, request, out).await
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let key = api_key
            .filter(|k| !k.is_empty())
            .ok_or_else(|| PluginError::Auth("playht: no API key to list voices with".into()))?;
        let s = self.settings();
        let user = s
            .user_id
            .clone()
            .or_else(|| self.last_user.lock().ok().and_then(|u| u.clone()))
            .ok_or_else(|| {
                PluginError::Auth(
                    "playht: the voice listing needs user_id in the plugin's config section \
                     (or a session prepared first)"
                        .into(),
                )
            })?;
        let cache_key = (
            s.base_url.clone(),
            key.clone(),
            user.clone(),
            s.include_cloned_voices,
        );
        if let Ok(cache) = self.voices.lock() {
            if let Some((at, list)) = cache.get(&cache_key) {
                if at.elapsed() < s.voices_ttl {
                    return Ok(list.clone());
                }
            }
        }
        let list = rest::voices(self.http(&s)?, &s, &key, &user).await?;
        if let Ok(mut cache) = self.voices.lock() {
            cache.retain(|_, (at, _)| at.elapsed() < s.voices_ttl);
            cache.insert(cache_key, (Instant::now(), list.clone()));
        }
        Ok(list)
    }
}
