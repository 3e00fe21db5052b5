//! Speech-to-text over the OpenAI transcriptions API, and Groq's OpenAI-compatible copy of it:
//! one implementation ([`TranscriptionsStt`]), two configurations ([`settings::OPENAI`],
//! [`settings::GROQ`]).
//!
//! The API is request/response, so the plugin cuts the stream into utterances itself
//! ([`segmenter`]): on the session VAD's `SpeechEnded`, on `Finalize`, at `max_utterance_ms`,
//! and at input close; silence outside speech is never uploaded once VAD events arrive. Each
//! utterance becomes one `POST {base_url}/v1/audio/transcriptions` with a WAV file; at most
//! `max_inflight` run at once and results come out in order ([`session`]). gpt-4o models on
//! OpenAI stream SSE interims (`stream=true`); whisper models answer `verbose_json` with word
//! timings.
//!
//! Config section (all optional):
//!
//! | key | default | |
//! |---|---|---|
//! | `base_url` | `https://api.openai.com` / `https://api.groq.com/openai` | `http://` allowed |
//! | `model` | `gpt-4o-transcribe` / `whisper-large-v3-turbo` | the session's `model` wins |
//! | `stream` | true | SSE interims (gpt-4o models, OpenAI only) |
//! | `prompt`, `temperature` | — | sent as is (`temperature` 0–1) |
//! | `word_timestamps` | true | whisper models: `verbose_json` + word/segment granularity |
//! | `logprobs` | true | gpt-4o models: `include[]=logprobs`, the confidence |
//! | `organization`, `project` | — | `OpenAI-Organization` / `OpenAI-Project` (OpenAI only) |
//! | `max_utterance_ms` | 30000 | 1000–60000 |
//! | `min_utterance_ms` | 200 | shorter cuts are skipped |
//! | `pre_roll_ms` | 300 | audio kept before VAD speech starts |
//! | `silence_level` | 64 | peak PCM level at or below which a cut is silence (skipped) |
//! | `max_inflight` | 2 | concurrent requests, 1–8 |
//! | `max_queued` | 8 | cut utterances waiting for a slot; more are dropped with an error |
//! | `connect_timeout_ms`, `request_timeout_ms`, `drain_timeout_ms` | 10000, 30000, 30000 | |
//!
//! Errors: 401/403 Auth, a 429 for exhausted billing (`insufficient_quota`, Auth) and a 400
//! about the request (model, format…) Config end the session; everything else (429 RateLimited with `retry-after`, 413 "audio too large" and a 400 about
//! the file Permanent, 5xx Transient, timeouts) is a non-fatal `SttEvent::Error` for that
//! utterance, and the session goes on.

pub mod client;
pub mod segmenter;
pub mod session;
pub mod settings;

use crate::common::{self, ClientSlot};
use settings::{Flavor, Settings};
use std::sync::Arc;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, ModelInfo, Plugin, PluginError, PluginInfo,
    ProviderTask, SttIo, SttPlugin, SttSessionConfig,
};

/// Sample rates declared (the host converts others); 16 kHz first, what Whisper runs at.
pub const SAMPLE_RATES: &[u32] = &[16_000, 8_000, 24_000];

const OPENAI_CREDENTIALS: &[CredentialField] =
    &[CredentialField::secret("api_key", "OPENAI_API_KEY")];
const GROQ_CREDENTIALS: &[CredentialField] = &[CredentialField::secret("api_key", "GROQ_API_KEY")];

/// The transcription plugin for one provider (OpenAI or Groq).
#[derive(Debug)]
pub struct TranscriptionsStt {
    flavor: Flavor,
    http: ClientSlot,
}

impl TranscriptionsStt {
    /// A plugin for `flavor`.
    pub fn new(flavor: Flavor) -> Self {
        Self {
            flavor,
            http: ClientSlot::default(),
        }
    }

    /// OpenAI speech-to-text, plugin id `openai`.
    pub fn openai() -> Self {
        Self::new(settings::OPENAI)
    }

    /// Groq speech-to-text, plugin id `groq`.
    pub fn groq() -> Self {
        Self::new(settings::GROQ)
    }

    /// The provider configuration.
    pub fn flavor(&self) -> &Flavor {
        &self.flavor
    }
}

#[async_trait::async_trait]
impl Plugin for TranscriptionsStt {
    fn info(&self) -> PluginInfo {
        let f = &self.flavor;
        PluginInfo::new(f.id, f.name)
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(f.aliases)
            .description(f.description)
            .credentials(if f.id == settings::GROQ.id {
                GROQ_CREDENTIALS
            } else {
                OPENAI_CREDENTIALS
            })
    }

    fn capabilities(&self) -> Capabilities {
        let f = &self.flavor;
        let interim = f.streams(f.default_model) || f.models.iter().any(|(m, _)| f.streams(m));
        Capabilities::new()
            .models(f.models.iter().map(|(id, name)| ModelInfo::new(*id, *name)))
            .encodings([AudioEncoding::Linear16])
            .sample_rates(SAMPLE_RATES.iter().copied())
            .max_channels(1)
            .features(true, true, interim, true)
    }
}

#[async_trait::async_trait]
impl SttPlugin for TranscriptionsStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let f = self.flavor;
        let settings = Settings::from_config(&f, &config.plugin_config)?;
        if config.encoding != AudioEncoding::Linear16 {
            return Err(PluginError::Config(format!(
                "{}: encoding {} is not accepted (linear16 only)",
                f.context, config.encoding
            )));
        }
        if config.channels != 1 {
            return Err(PluginError::Config(format!(
                "{}: {} channels; mono only",
                f.context, config.channels
            )));
        }
        if !SAMPLE_RATES.contains(&config.sample_rate) {
            return Err(PluginError::Config(format!(
                "{}: sample rate {} is not accepted (8000, 16000, 24000)",
                f.context, config.sample_rate
            )));
        }
        let key = common::api_key(
            config.api_key.as_ref(),
            &config.credentials,
            f.context,
            f.key_env,
        )?;
        let model = Some(config.model.trim())
            .filter(|m| !m.is_empty())
            .unwrap_or(&settings.model)
            .to_owned();
        if model.chars().any(|c| c.is_control() || c == '"') {
            return Err(PluginError::Config(format!("{}: invalid model", f.context)));
        }
        let http = self.http.get(f.context, settings.connect_timeout)?;
        let redactor = http.redactor().clone().with_secret(&key);
        let client = client::Client {
            http,
            flavor: f,
            settings: Arc::new(settings),
            key,
            model,
            language: settings::iso639_1(&config.language),
            sample_rate: config.sample_rate,
            redactor,
        };
        Ok(Box::pin(session::Session::new(client, io).run()))
    }
}
