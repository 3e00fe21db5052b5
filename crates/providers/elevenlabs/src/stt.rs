//! The ElevenLabs realtime speech-to-text plugin (Scribe v2 Realtime,
//! `/v1/speech-to-text/realtime`).
//!
//! Audio goes out as base64 inside JSON `input_audio_chunk` text frames; `Finalize` (and, with
//! `commit_strategy: manual`, the host VAD's end of speech) becomes a commit; every
//! `committed_transcript` is a final that ends the utterance, with words from its
//! `committed_transcript_with_timestamps` copy. See [`ElevenLabsStt`] for the config section.

mod messages;
mod session;
mod settings;

pub use settings::{CommitStrategy, Settings, DEFAULT_BASE_URL, DEFAULT_MODEL, PCM_RATES};

use std::sync::RwLock;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, ProviderTask, Secret, SttIo, SttPlugin, SttSessionConfig,
};
use waav_provider_kit::ws::{self, WsConfig};

/// The credential: an ElevenLabs API key, sent as `xi-api-key` (as the TTS plugin does).
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "ELEVENLABS_API_KEY")];

/// Realtime models (`scribe.py` examples; `models` in the config adds others).
const MODELS: &[(&str, &str)] = &[("scribe_v2_realtime", "Scribe v2 Realtime")];

/// ElevenLabs realtime speech-to-text. Plugin id `elevenlabs` (STT; aliases `eleven-labs`,
/// `11labs`, `elevenlabs-stt`).
///
/// Config section (all optional): `base_url` (default `wss://api.elevenlabs.io`; `ws://`, and
/// `http(s)://` mapped to `ws(s)://`), `model` (default `scribe_v2_realtime`), `models` (extra
/// ids), `language_code` (ISO-639-1/3; default: the session language's primary subtag, none for
/// `auto`/`multi`), `commit_strategy` (`vad`, the default, or `manual`),
/// `vad_silence_threshold_secs` (0.3–3.0), `vad_threshold` (0.1–0.9), `min_speech_duration_ms`
/// and `min_silence_duration_ms` (50–2000), `include_timestamps` (default true), `keyterms`
/// (list), `no_verbatim`, `enable_logging`, `previous_text` (context with the first chunk),
/// `extra_query` (other query parameters), `commit_on_vad` (manual strategy: commit on the host
/// VAD's end of speech, default true), `wait_session_started` (default true), and the bounds
/// `timestamps_wait_ms` (1000), `response_timeout_ms` (15000, 0 = off: a commit unanswered
/// this long fails the session), `drain_timeout_ms` (5000), `connect_timeout_ms` (10000),
/// `ping_interval_ms` (10000, 0 = off), `idle_timeout_ms` (45000, 0 = off),
/// `max_message_bytes` (1 MiB), `max_chunk_ms` (1000).
///
/// Audio: mono linear16 at 8/16/22.05/24/44.1/48 kHz (`pcm_<rate>`), mu-law at 8 kHz
/// (`ulaw_8000`); mu-law at the other rates is decoded to PCM here. `punctuation: false` has
/// no vendor switch and is ignored.
#[derive(Debug, Default)]
pub struct ElevenLabsStt {
    /// Settings from `init`, for the capabilities.
    settings: RwLock<Settings>,
}

impl ElevenLabsStt {
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
            PluginError::Auth(
                "elevenlabs: no API key (set api_key or ELEVENLABS_API_KEY)".to_owned(),
            )
        })
}

#[async_trait::async_trait]
impl Plugin for ElevenLabsStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("elevenlabs", "ElevenLabs")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["eleven-labs", "11labs", "elevenlabs-stt"])
            .description("ElevenLabs Scribe v2 Realtime speech-to-text (WebSocket)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let extra = self
            .settings
            .read()
            .map(|s| s.extra_models.clone())
            .unwrap_or_default();
        let mut models: Vec<ModelInfo> = MODELS
            .iter()
            .map(|(id, name)| ModelInfo::new(*id, *name))
            .collect();
        for id in extra {
            if !models.iter().any(|m| m.id.eq_ignore_ascii_case(&id)) {
                models.push(ModelInfo::new(id.clone(), id));
            }
        }
        Capabilities::new()
            .models(models)
            // Preferred first: PCM16 is native at every rate; mu-law natively at 8 kHz.
            .encodings([AudioEncoding::Linear16, AudioEncoding::Mulaw])
            .sample_rates(PCM_RATES.iter().copied())
            .max_channels(1)
            .features(true, false, true, true)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        let unknown = Settings::unknown_keys(config);
        if !unknown.is_empty() {
            tracing::warn!(path = config.path(), keys = ?unknown, "elevenlabs: unknown STT config keys ignored");
        }
        if let Ok(mut w) = self.settings.write() {
            *w = s;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl SttPlugin for ElevenLabsStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let s = Settings::from_config(&config.plugin_config)?;
        let audio = settings::wire_audio(&config)?;
        let url = settings::realtime_url(&s, &config)?;
        let key = api_key(&config)?;
        let mut ws_cfg = WsConfig::new(url)
            .header("xi-api-key", key.clone())
            .secret(key)
            .context("elevenlabs");
        ws_cfg.connect_timeout = s.connect_timeout;
        ws_cfg.max_message_size = s.max_message_bytes;
        ws_cfg.ping_interval = s.ping_interval;
        ws_cfg.idle_timeout = s.idle_timeout;
        let redactor = ws_cfg.redactor();
        let conn = ws::connect(&ws_cfg).await?;
        let (tx, mut rx) = conn.split();
        if s.wait_session_started {
            session::await_started(&mut rx, s.connect_timeout, &redactor).await?;
        }
        // Whole samples per chunk, at most `max_chunk_ms` of audio.
        let bytes =
            u64::from(audio.sample_rate) * audio.sample_bytes as u64 * s.max_chunk_ms / 1000;
        let max_chunk_bytes = (bytes as usize / audio.sample_bytes).max(1) * audio.sample_bytes;
        let setup = session::Setup {
            audio,
            commit_strategy: s.commit_strategy,
            commit_on_vad: s.commit_on_vad,
            include_timestamps: s.include_timestamps,
            timestamps_wait: s.timestamps_wait,
            previous_text: s.previous_text,
            response_timeout: s.response_timeout,
            drain_timeout: s.drain_timeout,
            max_chunk_bytes,
        };
        Ok(Box::pin(session::run(tx, rx, io, setup, redactor)))
    }
}
