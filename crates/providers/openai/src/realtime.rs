//! OpenAI Realtime API (speech-to-speech over WebSocket), plugin id `openai` (realtime kind).
//!
//! Protocol: `TTS_PROTOCOLS.md` §12, checked against openai-python (`src/openai/types/realtime/`
//! for every message shape, `src/openai/resources/realtime/realtime.py` for the connection).
//!
//! - Connection: `wss://api.openai.com/v1/realtime?model=<model>` (the SDK joins `/realtime`
//!   onto its `…/v1` base and puts `model` in the query), `Authorization: Bearer <key>` plus the
//!   optional `OpenAI-Organization` / `OpenAI-Project` headers.
//! - API version: **GA**. The GA resource (`resources/realtime/realtime.py` `_connect_ws`)
//!   sends only the auth headers; the `OpenAI-Beta: realtime=v1` header is added only by the
//!   deprecated beta resource (`resources/beta/realtime/realtime.py`), whose session shape
//!   differs (top-level `modalities`, `voice`, `input_audio_format`, `temperature`, …). This
//!   plugin speaks the GA shape and sends no beta header; it also understands the beta names of
//!   the server events (`response.audio.delta`, `response.audio_transcript.*`,
//!   `response.text.*`), mapped onto the GA ones. The GA session has no `temperature`, so a
//!   session temperature is not sent (logged at debug).
//! - Session mapping ([`settings::session_object`]): `model` → the URL; `voice` →
//!   `audio.output.voice` (`voice_…` ids as `{"id"}`); `instructions`; `max_response_tokens` →
//!   `max_output_tokens` (capped at 4096); `turn_detection` `{mode: server_vad, threshold,
//!   silence_duration_ms, prefix_padding_ms}` → `{type: server_vad, …}`, `{mode: semantic,
//!   eagerness}` → `{type: semantic_vad, eagerness}`, `{mode: manual}` → `null` (absent: the
//!   vendor default, server VAD); `tools` → flat GA function tools with `tool_choice`;
//!   `modalities` → `output_modalities` (`["audio"]` or `["text"]`: GA allows one; audio
//!   includes its transcript); `transcribe_input` → `audio.input.transcription {model}`; the
//!   host's formats → `audio.input.format` / `audio.output.format`.
//! - Formats declared: linear16 at 24 kHz (`audio/pcm`, 24 kHz only) and mu-law / A-law at
//!   8 kHz (`audio/pcmu` / `audio/pcma`; the rate is UNCONFIRMED). The host may combine them
//!   (linear16 at 8 kHz, G.711 at 24 kHz); those are G.711-transcoded here, see
//!   [`settings::Transcode`].
//! - Session behaviour (inputs, events, barge-in, truncation, errors, bounds): see
//!   [`session`].
//!
//! Config section `plugins.realtime.openai` (all optional): `api_key`, `base_url` (default
//! `wss://api.openai.com`; `ws://` allowed, `http(s)://` mapped to `ws(s)://`), `model`
//! (`gpt-realtime`), `models` (extra ids to accept), `voice`, `transcription_model`
//! (`gpt-4o-mini-transcribe`), `transcription_language`, `noise_reduction`
//! (`near_field`|`far_field`), `speed` (0.25–1.5), `tool_choice` (`auto`|`none`|`required`,
//! default `auto`), `truncate_on_interrupt` (true), `organization`, `project`, and the bounds
//! `connect_timeout_ms` (10000), `setup_timeout_ms` (10000), `response_timeout_ms` (30000,
//! 0 = off), `ping_interval_ms` (15000, 0 = off), `idle_timeout_ms` (60000, 0 = off),
//! `close_timeout_ms` (3000), `max_message_bytes` (4 MiB), `max_append_bytes` (256 KiB).

mod messages;
pub mod session;
pub mod settings;

pub use settings::{Settings, DEFAULT_BASE_URL, DEFAULT_MODEL};

use crate::common;
use std::sync::RwLock;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, ProviderTask, RealtimeIo, RealtimePlugin, RealtimeSessionConfig,
    Secret, VoiceInfo,
};
use waav_provider_kit::ws::{self, WsConfig};

const CONTEXT: &str = "openai realtime";
/// The same credential as the TTS and STT plugins (`api_key`, environment `OPENAI_API_KEY`).
const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "OPENAI_API_KEY")];

/// Models (`realtime_session_create_request.py` `model` literals); others are accepted through
/// the `models` setting.
pub const MODELS: &[&str] = &[
    "gpt-realtime",
    "gpt-realtime-2025-08-28",
    "gpt-realtime-mini",
    "gpt-realtime-mini-2025-10-06",
    "gpt-realtime-mini-2025-12-15",
    "gpt-realtime-1.5",
    "gpt-realtime-2",
    "gpt-realtime-2.1",
    "gpt-realtime-2.1-mini",
    "gpt-4o-realtime-preview",
    "gpt-4o-realtime-preview-2024-10-01",
    "gpt-4o-realtime-preview-2024-12-17",
    "gpt-4o-realtime-preview-2025-06-03",
    "gpt-4o-mini-realtime-preview",
    "gpt-4o-mini-realtime-preview-2024-12-17",
    "gpt-audio-1.5",
    "gpt-audio-mini",
    "gpt-audio-mini-2025-10-06",
    "gpt-audio-mini-2025-12-15",
];

/// Built-in voices (`realtime_audio_config_output.py`).
pub const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];

/// OpenAI Realtime. Plugin id `openai` (realtime kind; alias `openai-realtime`).
#[derive(Debug, Default)]
pub struct OpenAiRealtime {
    settings: RwLock<Settings>,
}

impl OpenAiRealtime {
    /// A plugin with default settings until `init`.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait::async_trait]
impl Plugin for OpenAiRealtime {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("openai", "OpenAI Realtime")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["openai-realtime"])
            .description("OpenAI Realtime API speech-to-speech (WebSocket, GA protocol)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let extra = self
            .settings
            .read()
            .map(|s| s.extra_models.clone())
            .unwrap_or_default();
        let mut models: Vec<ModelInfo> = MODELS.iter().map(|m| ModelInfo::new(*m, *m)).collect();
        for id in extra {
            if !models.iter().any(|m| m.id == id) {
                models.push(ModelInfo::new(id.clone(), id));
            }
        }
        let voices = VOICES.iter().map(|v| {
            let mut name = v.to_string();
            name[..1].make_ascii_uppercase();
            VoiceInfo {
                id: (*v).to_owned(),
                sample: String::new(),
                name,
                accent: String::new(),
                gender: String::new(),
                language: String::new(),
            }
        });
        Capabilities::new()
            .models(models)
            .voices(voices)
            // Linear16 first: the host prefers the first PCM encoding it can convert to.
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
            ])
            .sample_rates([settings::PCM_RATE, settings::G711_RATE])
            .max_channels(1)
            .features(true, false, true, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        let unknown = Settings::unknown_keys(config);
        if !unknown.is_empty() {
            tracing::warn!(path = config.path(), keys = ?unknown, "{CONTEXT}: unknown config keys ignored");
        }
        if let Ok(mut w) = self.settings.write() {
            *w = s;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl RealtimePlugin for OpenAiRealtime {
    async fn connect(
        &self,
        config: RealtimeSessionConfig,
        io: RealtimeIo,
    ) -> Result<ProviderTask, PluginError> {
        let s = Settings::from_config(&config.plugin_config)?;
        let key = common::api_key(
            config.api_key.as_ref(),
            &config.credentials,
            CONTEXT,
            "OPENAI_API_KEY",
        )?;
        let (input, input_transcode) = settings::wire_for(config.input_format, "input")?;
        let (output, output_transcode) = settings::wire_for(config.output_format, "output")?;
        let formats = session::Formats {
            input,
            input_transcode,
            output,
            output_transcode,
        };
        // Checks the whole mapping before dialling.
        settings::session_object(&s, &config, input, output, settings::Purpose::Initial, None)?;
        let model = s.model_for(&config);
        let mut ws_cfg = WsConfig::new(s.url(&model))
            .header(
                "Authorization",
                Secret::new(format!("Bearer {}", key.expose())),
            )
            .secret(key)
            .context(CONTEXT);
        if let Some(o) = &s.account.organization {
            ws_cfg = ws_cfg.header("OpenAI-Organization", o.as_str());
        }
        if let Some(p) = &s.account.project {
            ws_cfg = ws_cfg.header("OpenAI-Project", p.as_str());
        }
        ws_cfg.connect_timeout = s.connect_timeout;
        ws_cfg.max_message_size = s.max_message_bytes;
        ws_cfg.ping_interval = s.ping_interval;
        ws_cfg.idle_timeout = s.idle_timeout;
        let redactor = ws_cfg.redactor();
        let (tx, mut rx) = ws::connect(&ws_cfg).await?.split();
        let (session_id, vendor_model) =
            session::setup(&tx, &mut rx, &s, &config, formats, &redactor).await?;
        let session = session::Session::new(session::Parts {
            tx,
            rx,
            io,
            settings: s,
            config,
            formats,
            redactor,
            session_id,
            model: vendor_model.filter(|m| !m.is_empty()).unwrap_or(model),
        });
        Ok(Box::pin(session.run()))
    }
}
