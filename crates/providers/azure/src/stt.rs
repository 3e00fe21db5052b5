//! Azure Speech to text over the Speech SDK's WebSocket protocol (continuous recognition).
//!
//! One session is one WebSocket to `wss://<region>.stt.speech.microsoft.com/speech/recognition/
//! conversation/cognitiveservices/v1?language=..&format=detailed` (or `base_url`), with the
//! `Ocp-Apim-Subscription-Key` and `X-ConnectionId` upgrade headers
//! (`SpeechConnectionFactory.ts`). On it the client sends `speech.config` once, then for every
//! turn `speech.context`, a WAV header and the audio (`ServiceRecognizerBase.ts`,
//! `configureConnection` / `sendPrePayloadJSON` / `sendWaveHeader` / `sendAudio`); see
//! `stt/session.rs` for the turn life cycle and the result mapping.
//!
//! # Sources
//!
//! Checked against `microsoft/cognitive-services-speech-sdk-js` (snapshot 9e88223):
//! `WebsocketMessageFormatter.ts`, `SpeechConnectionMessage.Internal.ts`, `HeaderNames.ts`,
//! `QueryParameterNames.ts`, `SpeechConnectionFactory.ts`, `ConnectionFactoryBase.ts`,
//! `ServiceRecognizerBase.ts`, `SpeechServiceRecognizer.ts`, `EnumTranslation.ts`,
//! `RecognizerConfig.ts`, `RequestSession.ts`, `SpeechServiceConfig.ts`, `SpeechContext.ts`,
//! `DynamicGrammarBuilder.ts`, `ServiceMessages/*.ts`, `sdk/Audio/AudioStreamFormat.ts`; and
//! Microsoft Learn, "How to use the audio input stream" (PCM16 mono, 8 or 16 kHz).
//! Differences from the SDK, on purpose: the key goes in the `Ocp-Apim-Subscription-Key`
//! header, not the query string (the browser SDK cannot set headers); the default endpoint is
//! the v1 conversation path, while the newest SDK defaults to `/stt/speech/universal/v2`
//! (`RecognizerConfig.recognitionEndpointVersion`); no telemetry message is sent.
//!
//! **UNCONFIRMED** (no primary source): that the service takes a new turn on the same
//! connection after the client's own end of audio (the SDK starts one after a `turn.end` while
//! recognising continuously; if the service closes instead, we redial); how and when the
//! service closes idle or long (~10 min) connections; `Retry-After` on a 429 upgrade.

mod messages;
mod session;
mod settings;

pub use settings::Settings;

use crate::protocol::{self, AUTH_KEY, CONNECTION_ID};
use settings::is_token;
use waav_plugin_api::credentials::API_KEY;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, Plugin, PluginConfig, PluginContext, PluginError,
    PluginInfo, ProviderTask, SttIo, SttPlugin, SttSessionConfig,
};
use waav_provider_kit::ws::{self, WsConfig};
use waav_provider_kit::ErrorCategory;

/// The plugin id.
pub const ID: &str = "microsoft-azure";
/// The `region` credential field.
pub const REGION: &str = "region";
/// Sample rates the service takes for raw PCM (Microsoft Learn, "How to use the audio input
/// stream": 16-bit mono PCM at 8 or 16 kHz).
pub const SAMPLE_RATES: [u32; 2] = [8_000, 16_000];

const CREDENTIALS: &[CredentialField] = &[
    CredentialField::secret(API_KEY, "AZURE_SPEECH_SUBSCRIPTION_KEY"),
    // Not required: a `base_url` makes it unnecessary; `connect` checks that one of them is set.
    CredentialField::setting(REGION, "AZURE_SPEECH_REGION").optional(),
];

/// The Azure Speech STT plugin (`microsoft-azure`, alias `azure`).
#[derive(Debug, Default, Clone, Copy)]
pub struct AzureStt;

#[async_trait::async_trait]
impl Plugin for AzureStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Microsoft Azure Speech")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["azure"])
            .description(
                "Azure AI Speech continuous recognition over the Speech SDK WebSocket protocol",
            )
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([AudioEncoding::Linear16])
            .sample_rates(SAMPLE_RATES)
            .max_channels(1)
            .features(true, false, true, true)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        Settings::from_config(config).map(drop)
    }
}

/// What `connect` derived from the session config, before dialling.
#[derive(Debug)]
struct Plan {
    settings: Settings,
    ws: WsConfig,
}

fn plan(config: &SttSessionConfig) -> Result<Plan, PluginError> {
    let caps = AzureStt.capabilities();
    let bad = |m: String| PluginError::Config(format!("{ID}: {m}"));
    caps.check_encoding(config.encoding).map_err(bad)?;
    caps.check_sample_rate(config.sample_rate).map_err(bad)?;
    if config.channels != 1 {
        return Err(bad(format!(
            "unsupported channel count {}; the service takes mono audio",
            config.channels
        )));
    }
    let settings = Settings::from_config(&config.plugin_config)?;
    let language = if config.language.is_empty() {
        "en-US"
    } else {
        config.language.as_str()
    };
    if !is_token(language) {
        return Err(bad(format!("invalid language {language:?}")));
    }
    // A session's model is a Custom Speech endpoint id; it overrides the instance's.
    let endpoint_id = Some(config.model.as_str())
        .filter(|m| !m.is_empty())
        .or(settings.endpoint_id.as_deref());
    if let Some(id) = endpoint_id.filter(|id| !is_token(id)) {
        return Err(bad(format!(
            "invalid model (Custom Speech endpoint id) {id:?}"
        )));
    }
    let region = config.credentials.expose(REGION).filter(|r| !r.is_empty());
    if let Some(r) = region.filter(|r| !is_token(r)) {
        return Err(bad(format!("invalid region {r:?}")));
    }
    if region.is_none() && settings.base_url.is_none() {
        return Err(bad(
            "no region configured (set `region`, AZURE_SPEECH_REGION, or a `base_url`)".into(),
        ));
    }
    let key = config
        .api_key
        .clone()
        .or_else(|| config.credentials.get(API_KEY).cloned())
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            PluginError::Auth(format!(
                "{ID}: no API key configured (AZURE_SPEECH_SUBSCRIPTION_KEY)"
            ))
        })?;
    let url = settings.url(region, language, endpoint_id);
    let mut ws = WsConfig::new(url)
        .header(AUTH_KEY, key)
        .header(CONNECTION_ID, protocol::new_id())
        .context("azure stt");
    ws.ping_interval = settings.ping_interval;
    ws.idle_timeout = settings.idle_timeout;
    ws.max_message_size = settings.max_message_bytes;
    // The SDK reports 1007 as `BadRequestParameters` (`ServiceRecognizerBase` constructor,
    // ConnectionClosedEvent handler), and the service closes with it for a bad audio header
    // ("Unsupported audio format", "Invalid audio channel configuration": issues #1432, #2168,
    // #2180 of Azure-Samples/cognitive-services-speech-sdk): a config fault, not a passing one.
    // Other codes keep the kit's table (1011 and 1001 Transient, 1008 Auth, 4xxx Permanent).
    ws.close_codes = vec![(1007, ErrorCategory::Config)];
    Ok(Plan { settings, ws })
}

#[async_trait::async_trait]
impl SttPlugin for AzureStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let Plan { settings, ws } = plan(&config)?;
        let conn = ws::connect(&ws).await?;
        let session = session::Session::start(settings, ws, conn, &config, io).await?;
        Ok(Box::pin(session.run()))
    }
}
