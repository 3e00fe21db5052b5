//! The Deepgram streaming STT plugin (`/v1/listen`).

mod messages;
mod options;
mod session;

pub use options::{Settings, DEFAULT_BASE_URL, DEFAULT_MODEL};

use std::sync::RwLock;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, ProviderTask, SttIo, SttPlugin, SttSessionConfig,
};
use waav_provider_kit::errors::CloseCodeOverrides;
use waav_provider_kit::ws::{self, WsConfig};
use waav_provider_kit::{ErrorCategory, Secret};

/// The credential this plugin needs: an API key (or, with `auth_scheme: bearer`, a temporary
/// token from `POST /v1/auth/grant`).
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "DEEPGRAM_API_KEY")];

/// Models offered (developers.deepgram.com "Models & Languages"); `models` in the config adds
/// custom or newer ids.
const MODELS: &[(&str, &str)] = &[
    ("nova-3", "Nova-3"),
    ("nova-3-general", "Nova-3 General"),
    ("nova-3-medical", "Nova-3 Medical"),
    ("nova-2", "Nova-2"),
    ("nova-2-general", "Nova-2 General"),
    ("nova-2-meeting", "Nova-2 Meeting"),
    ("nova-2-phonecall", "Nova-2 Phone Call"),
    ("nova-2-voicemail", "Nova-2 Voicemail"),
    ("nova-2-finance", "Nova-2 Finance"),
    ("nova-2-conversationalai", "Nova-2 Conversational AI"),
    ("nova-2-video", "Nova-2 Video"),
    ("nova-2-medical", "Nova-2 Medical"),
    ("nova-2-drivethru", "Nova-2 Drive-thru"),
    ("nova-2-automotive", "Nova-2 Automotive"),
    ("nova-2-atc", "Nova-2 Air Traffic Control"),
    ("nova", "Nova"),
    ("enhanced", "Enhanced"),
    ("base", "Base"),
];

/// Close codes with a Deepgram meaning the kit's table lacks. 1008 is left to the kit (Auth,
/// its generic "policy violation") and refined by reason (`DATA-0000` → Config) in
/// [`session::refine`]; 1011 stays Transient unless the reason is `NET-0001` (idle → Timeout).
const CLOSE_CODES: &CloseCodeOverrides = &[
    // Older documentation used 1002 for undecodable audio (STT_PROTOCOLS.md §1).
    (1002, ErrorCategory::Config),
];

/// Deepgram streaming speech-to-text. Plugin id `deepgram`.
///
/// Config section (all optional): `base_url` (default `wss://api.deepgram.com`; `ws://` for
/// self-hosted), `model` (default `nova-3`), `models` (extra model ids to accept),
/// `auth_scheme` (`token` | `bearer`), `interim_results` (default true), `vad_events` (default
/// true), `smart_format`, `diarize`, `endpointing` (ms or false), `utterance_end_ms`, `keyterm`
/// and `keywords` (lists), `extra_query` (other `/v1/listen` parameters), and the waits
/// `keepalive_interval_ms` (default 4000, 0 = off), `response_timeout_ms` (30000, 0 = off),
/// `drain_timeout_ms` (5000), `connect_timeout_ms` (10000), plus `max_message_bytes` (1 MiB).
#[derive(Debug, Default)]
pub struct DeepgramStt {
    /// Extra model ids from `init`, for the capabilities.
    extra_models: RwLock<Vec<String>>,
}

impl DeepgramStt {
    /// A plugin with no configuration yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Plugin for DeepgramStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("deepgram", "Deepgram")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["deepgram-stt"])
            .description("Deepgram streaming speech-to-text (/v1/listen)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let mut models: Vec<ModelInfo> = MODELS
            .iter()
            .map(|(id, name)| ModelInfo::new(*id, *name))
            .collect();
        if let Ok(extra) = self.extra_models.read() {
            for id in extra.iter() {
                if !models.iter().any(|m| m.id.eq_ignore_ascii_case(id)) {
                    models.push(ModelInfo::new(id.clone(), id.clone()));
                }
            }
        }
        let (lo, hi) = options::SAMPLE_RATES;
        Capabilities::new()
            .models(models)
            // Preferred first: raw PCM needs no decoding on either side.
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
                AudioEncoding::Flac,
                AudioEncoding::Opus,
                AudioEncoding::Wav,
                AudioEncoding::Mp3,
            ])
            .sample_rate_range(lo, hi)
            .features(true, false, true, true)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        if let Ok(mut m) = self.extra_models.write() {
            *m = s.extra_models;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SttPlugin for DeepgramStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let settings = Settings::from_config(&config.plugin_config)?;
        options::check_session(&config)?;
        let key = api_key(&config)?;
        let url = options::listen_url(&settings, &config)?;
        let auth = Secret::new(format!(
            "{} {}",
            settings.auth_scheme.prefix(),
            key.expose()
        ));
        let mut ws_cfg = WsConfig::new(url)
            .header("Authorization", auth)
            .secret(key)
            .context("deepgram");
        ws_cfg.connect_timeout = settings.connect_timeout;
        ws_cfg.max_message_size = settings.max_message_bytes;
        ws_cfg.close_codes = CLOSE_CODES.to_vec();
        let redactor = ws_cfg.redactor();
        let conn = ws::connect(&ws_cfg).await.map_err(session::refine)?;
        if let Some(id) = conn
            .info()
            .response_headers
            .get("dg-request-id")
            .and_then(|v| v.to_str().ok())
        {
            tracing::debug!(request_id = id, "deepgram: stream open");
        }
        let timing = session::Timing {
            keepalive: settings.keepalive,
            response_timeout: settings.response_timeout,
            drain_timeout: settings.drain_timeout,
        };
        Ok(Box::pin(session::run(conn, io, timing, redactor)))
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
            PluginError::Auth("deepgram: no API key (set api_key or DEEPGRAM_API_KEY)".to_owned())
        })
}
