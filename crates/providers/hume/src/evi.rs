//! Hume EVI (Empathic Voice Interface) speech-to-speech over the chat WebSocket
//! (`wss://api.hume.ai/v0/evi/chat`). Plugin id `hume` (realtime; aliases `hume-evi`,
//! `hume-ai`); credential `api_key` (environment `HUME_API_KEY`), sent as the `X-Hume-Api-Key`
//! header by default (or `?api_key=` / `?access_token=`, see [`settings::Settings`]).
//!
//! Protocol: `TTS_PROTOCOLS.md` §13, checked against HumeAI/hume-python-sdk
//! (`src/hume/empathic_voice/chat/raw_client.py`, `chat/types/publish_event.py`,
//! `types/subscribe_event.py` and the message types under `empathic_voice/types/`); the
//! message mapping both ways is in [`session`].
//!
//! Session fields: `instructions` → `session_settings.system_prompt`; `voice` →
//! `session_settings.voice_id`; `tools` → `tools` (function tools, parameters as a JSON string)
//! and `builtin_tools` (`{type: "builtin", name}`); `model` → an EVI configuration
//! (`config_id[@config_version]`, default the plugin's `config_id`); `turn_detection` `manual`
//! → emulated with `pause_assistant_message` / `resume_assistant_message`, `server_vad` and
//! `semantic` → EVI's own turn detection (tuned in the EVI configuration, parameters ignored);
//! `modalities` without `audio` → output audio is dropped (EVI always speaks);
//! `transcribe_input` → `verbose_transcription` (interim user transcripts) unless the plugin
//! config sets it; `temperature` and `max_response_tokens` have no per-session field in EVI
//! (they belong to the configuration's language model) and are ignored with a debug log.
//!
//! Audio: input is mono linear16 at the rate the host chose, declared in
//! `session_settings.audio`; output is `audio_output`'s WAV chunks unwrapped to mono linear16
//! at 48 kHz. EVI's input and output share one declared rate list here, so the plugin declares
//! 48 kHz only (the host converts both ways).

pub mod session;
pub mod settings;
pub mod wire;

pub use session::OUTPUT_RATE;
pub use settings::{AuthMode, Settings, DEFAULT_BASE_URL};

use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProviderTask, RealtimeIo, RealtimePlugin, RealtimeSessionConfig,
};

const CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "HUME_API_KEY")];

/// Hume EVI speech-to-speech. Config keys: see [`Settings`].
#[derive(Debug, Default, Clone, Copy)]
pub struct HumeEvi;

impl HumeEvi {
    /// The plugin.
    pub fn new() -> Self {
        Self
    }
}

#[async_trait::async_trait]
impl Plugin for HumeEvi {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("hume", "Hume EVI")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["hume-evi", "hume-ai"])
            .description("Hume EVI speech-to-speech (WebSocket /v0/evi/chat)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([AudioEncoding::Linear16])
            .sample_rates([OUTPUT_RATE])
            .max_channels(1)
            .features(true, false, true, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        Settings::from_config(config).map(|_| ())
    }
}

#[async_trait::async_trait]
impl RealtimePlugin for HumeEvi {
    async fn connect(
        &self,
        config: RealtimeSessionConfig,
        io: RealtimeIo,
    ) -> Result<ProviderTask, PluginError> {
        session::connect(config, io).await
    }
}
