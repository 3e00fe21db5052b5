//! Azure AI Speech text to speech over the REST API (`microsoft-azure`, alias `azure`; the TTS
//! plugin of that id, next to the STT one).
//!
//! - [`synthesize`](TtsPlugin::synthesize): `POST https://<region>.tts.speech.microsoft.com/
//!   cognitiveservices/v1` (or `base_url`) with an SSML body ([`ssml`]) and the
//!   `X-Microsoft-OutputFormat` of the session's format ([`settings::output_format`]); the
//!   chunked audio body goes into the sink chunk by chunk as it arrives ([`rest`]). The REST
//!   API takes the whole text in one request, so there is no `open_stream`: the host drives
//!   `synthesize` per request. (The Speech SDK's WebSocket synthesis protocol is proprietary
//!   and out of scope.)
//! - [`voices`](TtsPlugin::voices): `GET …/cognitiveservices/voices/list`, mapped to
//!   [`VoiceInfo`] (`ShortName` → id, `DisplayName` → name, `Gender`, `Locale` → language,
//!   `LocaleName` → accent) and cached for `voices_ttl_secs`.
//! - Formats declared: `linear16` (`raw-<rate>-16bit-mono-pcm`, little-endian, no header) at
//!   8, 16, 22.05, 24, 44.1 and 48 kHz; `mulaw`/`alaw` (`raw-8khz-8bit-mono-*` at 8 kHz;
//!   at the other rates raw PCM from the service is G.711-encoded in the plugin, since the
//!   declared rate list is shared by every encoding); `mp3` and `opus` (Ogg) passed through
//!   at 16, 24 and 48 kHz only (other rates are refused in `prepare`).
//! - `speaking_rate` → `<prosody rate='+N%'>`; `emotion` / `delivery_style` → an Azure style
//!   in `<mstts:express-as style styledegree>` (intensity 0–1 → styledegree 0.01–2), emitted
//!   whenever a name maps to a documented style: whether the voice has that style is in its
//!   `StyleList`, which is not checked (the service ignores a style the voice lacks).
//! - A session's `model` is a custom voice deployment id (`…voice.speech…/cognitiveservices/
//!   v1?deploymentId=<id>`); the voice is then the custom voice's name.
//! - Word boundaries are not available over REST (the SDK reports them over its WebSocket);
//!   timings are not part of the contract yet anyway.
//!
//! # Config (`plugins.tts.microsoft-azure`)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `api_key` | env `AZURE_SPEECH_SUBSCRIPTION_KEY` | resource key, sent as `Ocp-Apim-Subscription-Key` |
//! | `region` | env `AZURE_SPEECH_REGION` | builds `https://<region>.tts.speech.microsoft.com` (`.azure.cn` / `.azure.us` for China / US Gov regions) |
//! | `base_url` (or `endpoint`) | — | `http(s)://host[:port][/prefix]` instead of the region's; `/cognitiveservices/v1` and `/cognitiveservices/voices/list` are appended (a full synthesis URL is accepted too) |
//! | `voice` | `en-US-JennyNeural` | default voice (`ShortName`) |
//! | `language` | the voice's locale, else `en-US` | `xml:lang` of `<speak>` |
//! | `deployment_id` | — | custom voice deployment id (a session's `model` overrides it) |
//! | `role` | — | `mstts:express-as` `role` (`YoungAdultFemale`, `Narrator`, …), sent with a style |
//! | `user_agent` | `waav-gateway/<version>` | the required `User-Agent` (≤ 254 characters) |
//! | `voices_ttl_secs` | 300 | voice listing cache lifetime |
//! | `connect_timeout_ms` / `read_timeout_ms` | 10000 / 15000 | TCP+TLS; the response head and each body chunk |
//!
//! # Voice listing credentials
//!
//! `TtsPlugin::voices` gets only an `api_key`; the region (or `base_url`) comes from the
//! section given to `init`, else from the last session prepared. With neither, it fails with
//! a Config error.
//!
//! # Sources
//!
//! MicrosoftDocs/azure-ai-docs (stored snapshot): `articles/ai-services/speech-service/
//! rest-text-to-speech.md` (endpoints, headers, streaming and non-streaming output formats,
//! status tables, voice listing sample) and `speech-synthesis-markup-voice.md` (`voice`,
//! `mstts:express-as` attributes and style table, `prosody rate`); the custom voice endpoint
//! table (`…voice.speech.microsoft.com/cognitiveservices/v1?deploymentId=`) of the older
//! `rest-text-to-speech` revisions; `speech-services-quotas-and-limits.md` (10 minutes of
//! audio per request at most; the 64 KB SSML limit is documented for the WebSocket only, so
//! texts are sent whole). **UNCONFIRMED**: the error body shape, `Retry-After` on 429, the
//! service's answer to an unknown voice (the fake says 400), and the response
//! `Content-Type`s (only JSON or text ones are refused as "not audio").

pub mod rest;
pub mod settings;
pub mod ssml;

pub use settings::{Settings, DEFAULT_VOICE};

use crate::stt::{ID, REGION};
use std::sync::{Mutex, RwLock};
use std::time::Instant;
use waav_plugin_api::credentials::API_KEY;
use waav_plugin_api::{
    AudioEncoding, AudioSink, Capabilities, CredentialField, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, Secret, SpeakRequest, TtsPlugin, TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::http::{HttpClient, HttpClientConfig};

/// The same credentials as the STT plugin: the key, and a region that a `base_url` makes
/// unnecessary (checked in `prepare`).
const CREDENTIALS: &[CredentialField] = &[
    CredentialField::secret(API_KEY, "AZURE_SPEECH_SUBSCRIPTION_KEY"),
    CredentialField::setting(REGION, "AZURE_SPEECH_REGION").optional(),
];

/// A cached voice listing.
#[derive(Debug)]
struct VoiceCache {
    at: Instant,
    url: String,
    key: Secret,
    voices: Vec<VoiceInfo>,
}

/// Where the voice listing is fetched: its URL and a key to send.
#[derive(Debug, Clone)]
struct ListingTarget {
    url: String,
    key: Option<Secret>,
}

/// Azure AI Speech TTS. See the module docs.
#[derive(Debug, Default)]
pub struct AzureTts {
    /// The settings of the section given to `init`, and the listing target it defines.
    section: RwLock<Option<(Settings, Option<ListingTarget>)>>,
    /// The listing target of the last session prepared.
    last: Mutex<Option<ListingTarget>>,
    http: Mutex<Option<HttpClient>>,
    voices: Mutex<Option<VoiceCache>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl AzureTts {
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
}

#[async_trait::async_trait]
impl Plugin for AzureTts {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Microsoft Azure Speech")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["azure"])
            .description("Azure AI Speech text to speech (REST cognitiveservices/v1, streamed)")
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
                AudioEncoding::Mp3,
                AudioEncoding::Opus,
            ])
            .sample_rates(settings::PCM_RATES)
            .features(true, true, false, false)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        let s = Settings::from_config(config)?;
        let region = config.string(REGION)?.filter(|r| !r.trim().is_empty());
        let target = match s.voices_url(region.as_deref()) {
            Ok(url) => Some(ListingTarget {
                url,
                key: config.secret(API_KEY)?,
            }),
            Err(_) => None,
        };
        *self.section.write().unwrap_or_else(|p| p.into_inner()) = Some((s, target));
        Ok(())
    }
}

#[async_trait::async_trait]
impl TtsPlugin for AzureTts {
    async fn prepare(&self, cfg: &TtsSessionConfig) -> Result<(), PluginError> {
        let plan = settings::plan(cfg)?;
        *lock(&self.last) = Some(ListingTarget {
            url: plan.voices_url,
            key: Some(plan.key),
        });
        Ok(())
    }

    async fn synthesize(
        &self,
        cfg: &TtsSessionConfig,
        request: SpeakRequest,
        out: AudioSink,
    ) -> Result<(), PluginError> {
        let plan = settings::plan(cfg)?;
        if request.text.trim().is_empty() {
            return Ok(()); // nothing to say
        }
        let rate = ssml::rate_attr(cfg.speaking_rate);
        let style = ssml::style(&cfg.emotion, plan.settings.role.as_deref());
        let body = ssml::document(
            &plan.language,
            &plan.voice,
            rate.as_deref(),
            style.as_ref(),
            &request.text,
        );
        let client = self.http(&plan.settings)?;
        rest::synthesize(
            &client,
            &plan.url,
            &plan.key,
            &plan.settings.user_agent,
            plan.format,
            body,
            plan.settings.read_timeout,
            &out,
        )
        .await
    }

    async fn voices(&self, api_key: Option<Secret>) -> Result<Vec<VoiceInfo>, PluginError> {
        let settings = self.init_settings().unwrap_or_default();
        let from_section = self
            .section
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .and_then(|(_, t)| t.clone());
        let last = lock(&self.last).clone();
        let target = from_section.or(last.clone()).ok_or_else(|| {
            PluginError::Config(format!(
                "{ID}: the voice listing needs a `region` or `base_url` in the plugin's config \
                 section (or a session prepared first)"
            ))
        })?;
        let key = api_key
            .filter(|k| !k.is_empty())
            .or(target.key)
            .or(last.and_then(|l| l.key))
            .ok_or_else(|| {
                PluginError::Auth(format!(
                    "{ID}: no API key configured (AZURE_SPEECH_SUBSCRIPTION_KEY)"
                ))
            })?;
        if let Some(c) = lock(&self.voices).as_ref() {
            if c.url == target.url && c.key == key && c.at.elapsed() < settings.voices_ttl {
                return Ok(c.voices.clone());
            }
        }
        let client = self.http(&settings)?;
        let voices = rest::list_voices(
            &client,
            &target.url,
            &key,
            &settings.user_agent,
            settings.read_timeout,
        )
        .await?;
        *lock(&self.voices) = Some(VoiceCache {
            at: Instant::now(),
            url: target.url,
            key,
            voices: voices.clone(),
        });
        Ok(voices)
    }
}
