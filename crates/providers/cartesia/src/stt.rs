//! The Cartesia Ink speech-to-text plugin (`/stt/websocket`, manual finalize).
//!
//! Audio goes out as binary frames, untouched; `Finalize` (and the host VAD's end of speech)
//! becomes the `finalize` text command; closing the input sends `done` or `close` (by API
//! version) and waits for the server's `done`. See [`CartesiaStt`] for the config section.

mod messages;
mod session;
mod settings;

pub use settings::{CloseCommand, Settings, SttAuth, DEFAULT_MODEL, SAMPLE_RATES};

use std::sync::RwLock;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, ProviderTask, Secret, SttIo, SttPlugin, SttSessionConfig,
};
use waav_provider_kit::ws::{self, WsConfig};

/// The credential: a Cartesia API key (the same declaration as the TTS plugin).
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "CARTESIA_API_KEY")];

/// Cartesia Ink streaming speech-to-text. Plugin id `cartesia` (STT; aliases `cartesia-stt`,
/// `cartesia-ink`).
///
/// Config section (all optional): `base_url` (default `wss://api.cartesia.ai`; `ws://`, and
/// `http(s)://` mapped to `ws(s)://`), `cartesia_version` (default `2024-11-13`, as the TTS
/// plugin), `auth_scheme` (`api_key`: `X-API-Key` header, the default; `bearer`:
/// `Authorization: Bearer`; `query`: `?api_key=&cartesia_version=` as SDK 2.x), `model`
/// (default `ink-whisper`), `models` (extra ids), `language` (ISO-639-1; default the session
/// language's primary subtag), `min_volume` (0–1), `max_silence_duration_secs` (ink-whisper
/// endpointing), `keyterm` (list), `close_command` (`auto` by version, `done`, `close`),
/// `finalize_on_vad` (default true), `extra_query`, and the bounds `response_timeout_ms`
/// (15000, 0 = off: a `finalize` unanswered this long fails the session), `drain_timeout_ms`
/// (5000), `connect_timeout_ms` (10000), `ping_interval_ms` (10000, 0 = off),
/// `idle_timeout_ms` (45000, 0 = off), `max_message_bytes` (1 MiB).
///
/// Audio: mono linear16 (`pcm_s16le`), mulaw (`pcm_mulaw`), alaw (`pcm_alaw`) at 8–48 kHz.
/// Results: interims, and finals that end the utterance, with word timings (no confidence:
/// the vendor gives none, reported as 0).
#[derive(Debug, Default)]
pub struct CartesiaStt {
    /// Settings from `init`, for the capabilities.
    settings: RwLock<Settings>,
}

impl CartesiaStt {
    /// A plugin with default settings until `init`.
    pub fn new() -> Self {
        Self::default()
    }
}

/// The resolved API key: the session's `api_key`, else the `api_key` credential.
fn api_key(config: &SttSessionConfig) -> Result<Secret, PluginError> {
    config
        .api_key
        .clone()
        .or_else(|| config.credentials.get("api_key").cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            PluginError::Auth("cartesia: no API key (set api_key or CARTESIA_API_KEY)".to_owned())
        })
}

#[async_trait::async_trait]
impl Plugin for CartesiaStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("cartesia", "Cartesia")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["cartesia-stt", "cartesia-ink"])
            .description("Cartesia Ink streaming speech-to-text (/stt/websocket)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let s = self.settings.read().map(|s| s.clone()).unwrap_or_default();
        let mut models: Vec<ModelInfo> = settings::MODELS
            .iter()
            .map(|(id, name)| ModelInfo::new(*id, *name))
            .collect();
        for id in s.extra_models.iter().chain([&s.model]) {
            if !models.iter().any(|m| m.id.eq_ignore_ascii_case(id)) {
                models.push(ModelInfo::new(id.clone(), id.clone()));
            }
        }
        let (lo, hi) = SAMPLE_RATES;
        Capabilities::new()
            .models(models)
            // Preferred first: 16-bit PCM (the vendor's recommendation); G.711 natively.
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
            ])
            .sample_rate_range(lo, hi)
            .max_channels(1)
            .features(true, false, true, true)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        let unknown = Settings::unknown_keys(config);
        if !unknown.is_empty() {
            tracing::warn!(path = config.path(), keys = ?unknown, "cartesia: unknown STT config keys ignored");
        }
        if let Ok(mut w) = self.settings.write() {
            *w = s;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SttPlugin for CartesiaStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let s = Settings::from_config(&config.plugin_config)?;
        settings::check_session(&s, &config)?;
        let key = api_key(&config)?;
        let url = settings::stt_url(&s, &config, &key)?;
        let mut ws_cfg = WsConfig::new(url)
            .header("Cartesia-Version", s.version.as_str())
            .secret(key.clone())
            .context("cartesia");
        ws_cfg = match s.auth {
            SttAuth::ApiKey => ws_cfg.header("X-API-Key", key),
            SttAuth::Bearer => ws_cfg.header(
                "Authorization",
                Secret::new(format!("Bearer {}", key.expose())),
            ),
            SttAuth::Query => ws_cfg,
        };
        ws_cfg.connect_timeout = s.connect_timeout;
        ws_cfg.max_message_size = s.max_message_bytes;
        ws_cfg.ping_interval = s.ping_interval;
        ws_cfg.idle_timeout = s.idle_timeout;
        let redactor = ws_cfg.redactor();
        let conn = ws::connect(&ws_cfg).await.map_err(session::refine)?;
        let (tx, rx) = conn.split();
        let setup = session::Setup {
            close_command: s.close_command(),
            finalize_on_vad: s.finalize_on_vad,
            response_timeout: s.response_timeout,
            drain_timeout: s.drain_timeout,
        };
        Ok(Box::pin(session::run(tx, rx, io, setup, redactor)))
    }
}
