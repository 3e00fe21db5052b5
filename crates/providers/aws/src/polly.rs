//! Amazon Polly text-to-speech (`aws-polly`, aliases `polly`, `amazon-polly`).
//!
//! - [`synthesize`](TtsPlugin::synthesize): `POST {endpoint}/v1/speech` (SynthesizeSpeech,
//!   restJson1) signed with SigV4 for service `polly`, JSON body from
//!   [`settings::SynthesizeBody`]; the audio body is streamed into the sink chunk by chunk as
//!   Polly produces it (no buffering). Polly has no streaming-input API here, so there is no
//!   `open_stream`: the host drives `synthesize` per request.
//! - [`voices`](TtsPlugin::voices): DescribeVoices (`GET /v1/voices`, paginated), cached for
//!   `voices_ttl_secs`.
//! - Formats: `linear16` (`OutputFormat: pcm`, signed 16-bit LE mono) at 8 or 16 kHz, and `mp3`
//!   passed through at the same rates (Polly's mp3 also does 22.05/24 kHz, but the declared rate
//!   list is shared by both encodings and PCM stops at 16 kHz, so only 8/16 kHz are declared).
//! - `speaking_rate` → `<prosody rate="N%">` around the XML-escaped text (TextType `ssml`);
//!   delivery styles → `amazon:domain` / `amazon:effect` where the engine has them (see
//!   [`ssml`]); emotions are ignored with a debug log. Text that already is SSML (starts with
//!   `<speak`, or `text_type: ssml`) is sent as is.
//! - The session's `model` is the engine (`standard`, `neural`, `long-form`, `generative`).
//! - Speech marks (word timings, `OutputFormat: json`) are not requested: timings are not part
//!   of the contract yet.
//!
//! # Config (`plugins.tts.aws-polly`)
//!
//! `access_key_id`, `secret_access_key`, `session_token`, `region` (credentials; else the
//! `AWS_*` environment), `endpoint` or `base_url` (default `https://polly.{region}.amazonaws.com`;
//! `http://` allowed), `voice` (`Joanna`), `engine` (`neural`), `language_code`, `lexicons`,
//! `text_type` (`auto` | `text` | `ssml`), `voices_ttl_secs` (300), `connect_timeout_ms`
//! (10000), `read_timeout_ms` (15000: the response head and each body chunk).
//!
//! # Voice listing credentials
//!
//! `TtsPlugin::voices` receives only an `api_key`, which AWS has not; it signs with the
//! credentials of the config section (read at `init`), else with those of the last session
//! prepared, else it fails with an Auth error.

mod messages;
mod rest;
pub mod settings;
pub mod ssml;

pub use settings::{Settings, DEFAULT_VOICE, ENGINES, ID};

use crate::auth;
use std::sync::{Mutex, RwLock};
use std::time::Instant;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, Credentials, ModelInfo, Plugin, PluginConfig,
    PluginContext, PluginError, PluginInfo, Secret, SpeakRequest, TtsPlugin, TtsSessionConfig,
    VoiceInfo,
};
use waav_provider_kit::http::{HttpClient, HttpClientConfig};

/// A cached voice listing.
#[derive(Debug)]
struct VoiceCache {
    at: Instant,
    key: String,
    voices: Vec<VoiceInfo>,
}

/// Amazon Polly. See the module docs.
#[derive(Debug, Default)]
pub struct PollyTts {
    /// The section given to `init`, and the credentials written in it.
    section: RwLock<Option<(Settings, Option<Credentials>)>>,
    /// Credentials of the last session prepared (for the voice listing).
    last_credentials: Mutex<Option<Credentials>>,
    http: Mutex<Option<HttpClient>>,
    voices: Mutex<Option<VoiceCache>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl PollyTts {
    /// A plugin with no configuration yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn init_settings(&self) -> Option<Settings> {
        let g = self.section.read().unwrap_or_else(|p| p.into_inner());
        g.as_ref().map(|(s, _)| s.clone())
    }

    fn http(&self, settings: &Settings) -> Result<HttpClient, PluginError> {
        let mut slot = lock(&self.http);
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let connect_timeout = self
            .init_settings()
            .map_or(settings.connect_timeout, |s| s.connect_timeout);
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

    /// The session's credentials: the host's resolved values, else the session section's.
    fn session_credentials(cfg: &TtsSessionConfig) -> Result<Credentials, PluginError> {
        if cfg.credentials.contains(auth::ACCESS_KEY_ID) {
            return Ok(cfg.credentials.clone());
        }
        Ok(auth::from_section(&cfg.plugin_config)?.unwrap_or_else(|| cfg.credentials.clone()))
    }
}

#[async_trait::async_trait]
impl Plugin for PollyTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Amazon Polly")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["polly", "amazon-polly"])
            .description("Amazon Polly SynthesizeSpeech (SigV4-signed REST, streamed audio)")
            .credentials(auth::CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models(
                ENGINES
                    .iter()
                    .map(|e| ModelInfo::new(*e, format!("Polly {e} engine"))),
            )
            .encodings([AudioEncoding::Linear16, AudioEncoding::Mp3])
            .sample_rates(settings::PCM_RATES)
            .features(true, true, false, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let settings = Settings::from_config(config)?;
        let creds = auth::from_section(config)?;
        *self.section.write().unwrap_or_else(|p| p.into_inner()) = Some((settings, creds));
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for PollyTts {
    async fn prepare(&self, cfg: &TtsSessionConfig) -> Result<(), PluginError> {
        settings::plan(cfg)?;
        let creds = Self::session_credentials(cfg)?;
        auth::resolve(&creds, ID)?;
        *lock(&self.last_credentials) = Some(creds);
        Ok(())
    }

    async fn synthesize(
        &self,
        cfg: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let plan = settings::plan(cfg)?;
        let resolved = auth::resolve(&Self::session_credentials(cfg)?, ID)?;
        if request.text.trim().is_empty() {
            return Ok(()); // nothing to say; Polly would refuse it
        }
        let body = plan.body(&request.text)?;
        let signer = resolved.signer("polly");
        let endpoint = plan.settings.endpoint(&resolved.region);
        let client = self.http(&plan.settings)?;
        rest::synthesize(&client, &signer, &plan, &endpoint, &body, &out).await
    }

    async fn voices(&self, _api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let settings = self.init_settings().unwrap_or_default();
        let section = self
            .section
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|(_, c)| c.clone());
        let creds = section
            .or_else(|| lock(&self.last_credentials).clone())
            .ok_or_else(|| {
                PluginError::Auth(format!(
                    "{ID}: the voice listing needs AWS credentials in the plugin's config section \
                     (or a session prepared first)"
                ))
            })?;
        let resolved = auth::resolve(&creds, ID)?;
        let endpoint = settings.endpoint(&resolved.region);
        let key = format!("{endpoint} {}", resolved.creds.access_key_id);
        if let Some(c) = lock(&self.voices).as_ref() {
            if c.key == key && c.at.elapsed() < settings.voices_ttl {
                return Ok(c.voices.clone());
            }
        }
        let client = self.http(&settings)?;
        let signer = resolved.signer("polly");
        let voices = rest::list_voices(&client, &signer, &endpoint, settings.read_timeout).await?;
        *lock(&self.voices) = Some(VoiceCache {
            at: Instant::now(),
            key,
            voices: voices.clone(),
        });
        Ok(voices)
    }
}
