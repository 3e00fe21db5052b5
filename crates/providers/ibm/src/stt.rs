//! The IBM Watson Speech to Text plugin (WebSocket `/v1/recognize`).
//!
//! One socket per session: `wss://<instance>/v1/recognize?access_token=<IAM token>&model=…`
//! (cloud.ibm.com docs "The WebSocket interface", "Open a connection"; STT_PROTOCOLS.md §6),
//! a `start` message, the audio as binary frames, `{"action": "stop"}` for `Finalize` and at
//! the end. See [`session`] for the message flow.

pub mod messages;
mod session;

use crate::common::{self, AuthMode};
use crate::iam::TokenCache;
use serde_json::{Map, Value};
use std::sync::RwLock;
use std::time::Duration;
use waav_plugin_api::{
    AudioEncoding, Capabilities, CredentialField, ModelInfo, Plugin, PluginConfig, PluginContext,
    PluginError, PluginInfo, ProviderTask, SttIo, SttPlugin, SttSessionConfig,
};
use waav_provider_kit::ws::{self, WsConfig};
use waav_provider_kit::Secret;

/// Environment variable of the API key.
pub const API_KEY_ENV: &str = "IBM_STT_API_KEY";
/// Environment variable of the service instance URL.
pub const URL_ENV: &str = "IBM_STT_URL";
/// The model when neither the session nor the config names one and the language is en-US.
pub const DEFAULT_MODEL: &str = "en-US_Multimedia";
/// Names the provider in messages.
pub(crate) const CTX: &str = "ibm stt";

/// Credentials: the IBM Cloud API key and the service instance URL (not secret).
const CREDENTIALS: &[CredentialField] = &[
    CredentialField::secret("api_key", API_KEY_ENV),
    CredentialField::setting(common::URL_FIELD, URL_ENV),
];

/// Next-generation models (cloud.ibm.com docs "Next-generation languages and models", table
/// "Supported next-generation language models"; the previous-generation Broadband/Narrowband
/// models were discontinued on 2023-08-01). `models` in the config adds others (custom base
/// models, large speech models). The list itself is as recalled from the docs: UNCONFIRMED
/// that it is complete.
pub const MODELS: &[&str] = &[
    "ar-MS_Telephony",
    "cs-CZ_Telephony",
    "de-DE_Multimedia",
    "de-DE_Telephony",
    "en-AU_Multimedia",
    "en-AU_Telephony",
    "en-GB_Multimedia",
    "en-GB_Telephony",
    "en-IN_Telephony",
    "en-US_Multimedia",
    "en-US_Telephony",
    "en-WW_Medical_Telephony",
    "es-ES_Multimedia",
    "es-ES_Telephony",
    "es-LA_Telephony",
    "fr-CA_Multimedia",
    "fr-CA_Telephony",
    "fr-FR_Multimedia",
    "fr-FR_Telephony",
    "hi-IN_Telephony",
    "it-IT_Multimedia",
    "it-IT_Telephony",
    "ja-JP_Multimedia",
    "ja-JP_Telephony",
    "ko-KR_Multimedia",
    "ko-KR_Telephony",
    "nl-BE_Telephony",
    "nl-NL_Multimedia",
    "nl-NL_Telephony",
    "pt-BR_Multimedia",
    "pt-BR_Telephony",
    "sv-SE_Telephony",
    "zh-CN_Telephony",
];

/// Rates declared: IBM takes `audio/l16`, `audio/mulaw` and `audio/alaw` at any `rate` and
/// downsamples to the model's (16 kHz Multimedia, 8 kHz Telephony); it never upsamples, so
/// audio below a model's rate is refused (docs "Audio terminology and characteristics",
/// "Sampling rate").
pub const SAMPLE_RATES: &[u32] = &[
    8_000, 11_025, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000,
];

/// Settings from the plugin's config section.
#[derive(Debug, Clone)]
pub struct Settings {
    /// IAM exchange (default) or a ready bearer token.
    pub auth: AuthMode,
    /// Default model (else derived from the session's language and rate).
    pub model: Option<String>,
    /// Extra model ids accepted.
    pub extra_models: Vec<String>,
    /// `interim_results` (default true).
    pub interim_results: bool,
    /// `smart_formatting` (default: the session's `punctuation`).
    pub smart_formatting: Option<bool>,
    /// `speaker_labels` (default false).
    pub speaker_labels: bool,
    /// `inactivity_timeout` in seconds (default -1: never; IBM's own default of 30 s would
    /// end a session whose caller stays quiet).
    pub inactivity_timeout: i64,
    /// Further `start` fields.
    pub start_extra: Map<String, Value>,
    /// Connection query parameters (`language_customization_id`, `acoustic_customization_id`,
    /// `base_model_version`, `x-watson-learning-opt-out`).
    pub query: Vec<(&'static str, String)>,
    /// WebSocket ping interval (default 20 s; `keepalive_interval_ms: 0` disables).
    pub keepalive: Option<Duration>,
    /// Fail when nothing (not even a pong) arrives this long (default 60 s; 0 disables).
    pub idle_timeout: Option<Duration>,
    /// How long a `start` or `stop` may wait for its `listening` (default 10 s).
    pub ack_timeout: Duration,
    /// How long the close may wait for the last finals (default 5 s).
    pub drain_timeout: Duration,
    /// TCP + TLS + upgrade deadline (default 10 s).
    pub connect_timeout: Duration,
    /// Largest message accepted from the service (default 1 MiB).
    pub max_message_bytes: usize,
}

impl Settings {
    /// Reads and validates a config section.
    pub fn from_config(c: &PluginConfig) -> Result<Self, PluginError> {
        let path = c.path().to_owned();
        let bad = |key: &str, what: String| PluginError::Config(format!("{path}.{key}: {what}"));
        let model = common::ident(c, "model")?;
        let extra_models = c.strings("models")?.unwrap_or_default();
        if let Some(m) = extra_models.iter().find(|m| !common::is_ident(m)) {
            return Err(bad("models", format!("unexpected characters in {m:?}")));
        }
        let inactivity_timeout = c.i64("inactivity_timeout")?.unwrap_or(-1);
        if inactivity_timeout < -1 || inactivity_timeout == 0 || inactivity_timeout > 86_400 {
            return Err(bad(
                "inactivity_timeout",
                format!("expected -1 or 1–86400 seconds, found {inactivity_timeout}"),
            ));
        }
        let mut start_extra = Map::new();
        if let Some(b) = c.bool("profanity_filter")? {
            start_extra.insert("profanity_filter".into(), b.into());
        }
        if let Some(v) = common::ranged(c, "end_of_phrase_silence_time", 0.0, 120.0)? {
            start_extra.insert("end_of_phrase_silence_time".into(), v.into());
        }
        if let Some(b) = c.bool("split_transcript_at_phrase_end")? {
            start_extra.insert("split_transcript_at_phrase_end".into(), b.into());
        }
        if let Some(v) = common::ranged(c, "speech_detector_sensitivity", 0.0, 1.0)? {
            start_extra.insert("speech_detector_sensitivity".into(), v.into());
        }
        if let Some(v) = common::ranged(c, "background_audio_suppression", 0.0, 1.0)? {
            start_extra.insert("background_audio_suppression".into(), v.into());
        }
        if let Some(b) = c.bool("low_latency")? {
            start_extra.insert("low_latency".into(), b.into());
        }
        if let Some(v) = common::ranged(c, "customization_weight", 0.0, 1.0)? {
            start_extra.insert("customization_weight".into(), v.into());
        }
        if let Some(extra) = c.section("extra_start")? {
            for (k, v) in extra.as_map() {
                if matches!(k.as_str(), "action" | "content-type") {
                    return Err(bad("extra_start", format!("{k:?} is set by the plugin")));
                }
                start_extra.insert(k.clone(), v.clone());
            }
        }
        let mut query = Vec::new();
        for (key, param) in [
            ("language_customization_id", "language_customization_id"),
            ("acoustic_customization_id", "acoustic_customization_id"),
            ("base_model_version", "base_model_version"),
        ] {
            if let Some(v) = common::ident(c, key)? {
                query.push((param, v));
            }
        }
        if let Some(b) = c.bool("learning_opt_out")? {
            query.push(("x-watson-learning-opt-out", b.to_string()));
        }
        let max_message_bytes = c.u64("max_message_bytes")?.unwrap_or(1 << 20);
        if !(1024..=(64 << 20)).contains(&max_message_bytes) {
            return Err(bad(
                "max_message_bytes",
                format!("expected 1024–67108864, found {max_message_bytes}"),
            ));
        }
        let required = |key: &str, default: u64| -> Result<Duration, PluginError> {
            Ok(common::millis(c, key, default, false)?.unwrap_or_default())
        };
        Ok(Self {
            auth: AuthMode::from_config(c)?,
            model,
            extra_models,
            interim_results: c.bool("interim_results")?.unwrap_or(true),
            smart_formatting: c.bool("smart_formatting")?,
            speaker_labels: c.bool("speaker_labels")?.unwrap_or(false),
            inactivity_timeout,
            start_extra,
            query,
            keepalive: common::millis(c, "keepalive_interval_ms", 20_000, true)?,
            idle_timeout: common::millis(c, "idle_timeout_ms", 60_000, true)?,
            ack_timeout: required("ack_timeout_ms", 10_000)?,
            drain_timeout: required("drain_timeout_ms", 5_000)?,
            connect_timeout: required("connect_timeout_ms", 10_000)?,
            max_message_bytes: max_message_bytes as usize,
        })
    }
}

/// IBM Watson Speech to Text. Plugin id `ibm-watson` (aliases `watson`, `ibm`).
///
/// Credentials: `api_key` (env `IBM_STT_API_KEY`), exchanged at IBM Cloud IAM for an access
/// token cached per key; `url`, the service instance URL (env `IBM_STT_URL`, required), e.g.
/// `https://api.us-south.speech-to-text.watson.cloud.ibm.com/instances/<id>` (`http://` and
/// `ws://` allowed for tests and proxies).
///
/// Config section (all optional): `auth` (`iam` | `bearer`: the key is already a token),
/// `iam_url` (default `https://iam.cloud.ibm.com/identity/token`), `model` (default: the
/// session's model, else `<language>_Multimedia`, or `_Telephony` below 16 kHz), `models`
/// (extra ids), `interim_results` (true), `smart_formatting` (default: the session's
/// `punctuation`), `speaker_labels`, `inactivity_timeout` (s, -1 default = never),
/// `profanity_filter`, `end_of_phrase_silence_time`, `split_transcript_at_phrase_end`,
/// `speech_detector_sensitivity`, `background_audio_suppression`, `low_latency`,
/// `customization_weight`, `extra_start` (a map merged into `start`),
/// `language_customization_id`, `acoustic_customization_id`, `base_model_version`,
/// `learning_opt_out`, and the waits `keepalive_interval_ms` (20000; 0 = off),
/// `idle_timeout_ms` (60000; 0 = off), `ack_timeout_ms` (10000), `drain_timeout_ms` (5000),
/// `connect_timeout_ms` (10000), plus `max_message_bytes` (1 MiB).
#[derive(Debug, Default)]
pub struct IbmStt {
    tokens: TokenCache,
    extra_models: RwLock<Vec<String>>,
}

impl IbmStt {
    /// A plugin with no configuration yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The plugin's token cache (shared by its sessions).
    pub fn tokens(&self) -> &TokenCache {
        &self.tokens
    }
}

#[async_trait::async_trait]
impl Plugin for IbmStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("ibm-watson", "IBM Watson Speech to Text")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["watson", "ibm"])
            .description(
                "IBM Watson Speech to Text streaming recognition (WebSocket /v1/recognize)",
            )
            .credentials(CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        let mut models: Vec<ModelInfo> = MODELS.iter().map(|m| ModelInfo::new(*m, *m)).collect();
        if let Ok(extra) = self.extra_models.read() {
            for id in extra.iter() {
                if !models.iter().any(|m| m.id.eq_ignore_ascii_case(id)) {
                    models.push(ModelInfo::new(id.clone(), id.clone()));
                }
            }
        }
        let mut languages: Vec<String> = Vec::new();
        for m in MODELS {
            let lang = m.split('_').next().unwrap_or_default().to_owned();
            if !languages.contains(&lang) {
                languages.push(lang);
            }
        }
        Capabilities::new()
            .models(models)
            .languages(languages)
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
            ])
            // IBM mixes `channels=N` down itself, but one channel is all it recognises.
            .max_channels(1)
            .sample_rates(SAMPLE_RATES.iter().copied())
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
impl SttPlugin for IbmStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let settings = Settings::from_config(&config.plugin_config)?;
        let content_type = content_type(&config)?;
        let model = model_for(&settings, &config)?;
        let min_rate = model_min_rate(&model);
        if config.sample_rate < min_rate {
            return Err(PluginError::Config(format!(
                "{CTX}: model {model} needs audio of at least {min_rate} Hz (IBM never \
                 upsamples), got {} Hz; use a Telephony model",
                config.sample_rate
            )));
        }
        let key = common::api_key(
            config.api_key.as_ref(),
            &config.credentials,
            CTX,
            API_KEY_ENV,
        )?;
        let instance = common::instance_url(&config.credentials, CTX, URL_ENV, true)?;
        let token = settings.auth.token(&self.tokens, &key).await?;
        let url = recognize_url(&instance, &token, &model, &settings);
        let mut ws_cfg = WsConfig::new(url)
            .secret(token)
            .secret(key.clone())
            .context(CTX);
        ws_cfg.connect_timeout = settings.connect_timeout;
        ws_cfg.max_message_size = settings.max_message_bytes;
        ws_cfg.ping_interval = settings.keepalive;
        ws_cfg.idle_timeout = settings.idle_timeout;
        let redactor = ws_cfg.redactor();
        let conn = match ws::connect(&ws_cfg).await {
            Ok(c) => c,
            Err(e) => {
                let e = session::refine(e);
                if matches!(e, PluginError::Auth(_)) {
                    // A revoked or otherwise refused token: the next session fetches anew.
                    settings.auth.refused(&self.tokens, &key).await;
                }
                return Err(e);
            }
        };
        if let Some(id) = conn
            .info()
            .response_headers
            .get("x-global-transaction-id")
            .and_then(|v| v.to_str().ok())
        {
            tracing::debug!(transaction_id = id, model = %model, "ibm stt: socket open");
        }
        let start = messages::Start {
            action: "start",
            content_type,
            interim_results: settings.interim_results,
            word_confidence: true,
            timestamps: true,
            smart_formatting: settings.smart_formatting.unwrap_or(config.punctuation),
            inactivity_timeout: settings.inactivity_timeout,
            speaker_labels: settings.speaker_labels,
            extra: settings.start_extra.clone(),
        };
        let timing = session::Timing {
            ack_timeout: settings.ack_timeout,
            drain_timeout: settings.drain_timeout,
        };
        let silence = match config.encoding {
            AudioEncoding::Mulaw => 0xFF,
            AudioEncoding::Alaw => 0xD5,
            _ => 0x00,
        };
        Ok(Box::pin(session::run(
            conn,
            io,
            start.to_json(),
            silence,
            timing,
            redactor,
        )))
    }
}

/// The `content-type` of the `start` message for the session's audio (docs "Supported audio
/// formats": `audio/l16;rate=N;channels=N;endianness=…` — little-endian said explicitly,
/// `audio/mulaw;rate=N`, `audio/alaw;rate=N`).
pub fn content_type(config: &SttSessionConfig) -> Result<String, PluginError> {
    if !SAMPLE_RATES.contains(&config.sample_rate) {
        let list: Vec<String> = SAMPLE_RATES.iter().map(u32::to_string).collect();
        return Err(PluginError::Config(format!(
            "{CTX}: unsupported sample rate {}; supported: {}",
            config.sample_rate,
            list.join(", ")
        )));
    }
    if config.channels != 1 {
        return Err(PluginError::Config(format!(
            "{CTX}: {} channels; the provider takes mono",
            config.channels
        )));
    }
    let rate = config.sample_rate;
    Ok(match config.encoding {
        AudioEncoding::Linear16 => {
            format!("audio/l16;rate={rate};channels=1;endianness=little-endian")
        }
        AudioEncoding::Mulaw => format!("audio/mulaw;rate={rate}"),
        AudioEncoding::Alaw => format!("audio/alaw;rate={rate}"),
        other => {
            return Err(PluginError::Config(format!(
                "{CTX}: unsupported encoding {other:?}; supported: linear16, mulaw, alaw"
            )))
        }
    })
}

/// The model: the session's, else the config's, else `<language>_Multimedia` (or
/// `_Telephony` below 16 kHz, or when the language has no Multimedia model).
pub fn model_for(settings: &Settings, config: &SttSessionConfig) -> Result<String, PluginError> {
    if !config.model.is_empty() {
        if !common::is_ident(&config.model) {
            return Err(PluginError::Config(format!(
                "{CTX}: unexpected characters in model {:?}",
                config.model
            )));
        }
        return Ok(config.model.clone());
    }
    if let Some(m) = &settings.model {
        return Ok(m.clone());
    }
    let lang = normalise_language(&config.language);
    let lang = if lang.is_empty() {
        "en-US".to_owned()
    } else {
        lang
    };
    let find = |kind: &str| {
        let want = format!("{lang}_{kind}");
        MODELS
            .iter()
            .find(|m| m.eq_ignore_ascii_case(&want))
            .map(|m| (*m).to_owned())
    };
    let wideband = config.sample_rate >= 16_000;
    let found = if wideband {
        find("Multimedia").or_else(|| find("Telephony"))
    } else {
        find("Telephony")
    };
    found.ok_or_else(|| {
        PluginError::Config(format!(
            "{CTX}: no model known for language {:?} at {} Hz; set model",
            config.language, config.sample_rate
        ))
    })
}

/// `en-us` → `en-US`, `EN` → `en`.
fn normalise_language(lang: &str) -> String {
    let mut parts = lang.trim().splitn(2, ['-', '_']);
    let base = parts.next().unwrap_or("").to_ascii_lowercase();
    match parts.next() {
        Some(region) if !region.is_empty() => {
            format!("{base}-{}", region.to_ascii_uppercase())
        }
        _ => base,
    }
}

/// The lowest rate a model takes: 16 kHz for Multimedia and (previous-generation) Broadband
/// models, else 8 kHz.
pub fn model_min_rate(model: &str) -> u32 {
    let m = model.to_ascii_lowercase();
    if m.contains("multimedia") || m.contains("broadband") {
        16_000
    } else {
        8_000
    }
}

/// `wss://<instance>/v1/recognize?access_token=…&model=…[&customization ids…]`
/// (docs "Open a connection": `access_token` in the query, since browsers cannot set headers
/// on a WebSocket upgrade; `https` becomes `wss`, `http` becomes `ws`).
pub fn recognize_url(instance: &str, token: &Secret, model: &str, settings: &Settings) -> String {
    let base = if let Some(rest) = instance.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = instance.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        instance.to_owned()
    };
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("access_token", token.expose());
    q.append_pair("model", model);
    for (k, v) in &settings.query {
        q.append_pair(k, v);
    }
    format!("{base}/v1/recognize?{}", q.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: Value) -> Result<Settings, PluginError> {
        Settings::from_config(&PluginConfig::from_value("plugins.stt.ibm-watson", v).unwrap())
    }

    #[test]
    fn models_follow_language_and_rate() {
        let s = settings(json!({})).unwrap();
        let cfg = |lang: &str, rate: u32| SttSessionConfig::new(lang, rate);
        assert_eq!(
            model_for(&s, &cfg("en-US", 16_000)).unwrap(),
            "en-US_Multimedia"
        );
        assert_eq!(
            model_for(&s, &cfg("en-us", 8_000)).unwrap(),
            "en-US_Telephony"
        );
        assert_eq!(
            model_for(&s, &cfg("es-LA", 16_000)).unwrap(),
            "es-LA_Telephony"
        );
        assert!(model_for(&s, &cfg("xx-YY", 16_000)).is_err());
        assert_eq!(
            model_for(&s, &cfg("de-DE", 16_000).with_model("de-DE_Telephony")).unwrap(),
            "de-DE_Telephony"
        );
        assert!(model_for(&s, &cfg("de-DE", 16_000).with_model("a b")).is_err());
        let s = settings(json!({"model": "en-GB_Multimedia"})).unwrap();
        assert_eq!(
            model_for(&s, &cfg("en-US", 16_000)).unwrap(),
            "en-GB_Multimedia"
        );
        assert_eq!(model_min_rate("en-US_Multimedia"), 16_000);
        assert_eq!(model_min_rate("en-US_Telephony"), 8_000);
    }

    #[test]
    fn content_types() {
        let c = SttSessionConfig::new("en-US", 16_000);
        assert_eq!(
            content_type(&c).unwrap(),
            "audio/l16;rate=16000;channels=1;endianness=little-endian"
        );
        let c = SttSessionConfig::new("en-US", 8_000).with_format(AudioEncoding::Mulaw, 1);
        assert_eq!(content_type(&c).unwrap(), "audio/mulaw;rate=8000");
        let c = SttSessionConfig::new("en-US", 8_000).with_format(AudioEncoding::Opus, 1);
        assert!(content_type(&c).is_err());
        let c = SttSessionConfig::new("en-US", 16_000).with_format(AudioEncoding::Linear16, 2);
        assert!(content_type(&c).is_err());
        assert!(content_type(&SttSessionConfig::new("en-US", 0)).is_err());
    }

    #[test]
    fn settings_validate() {
        assert!(settings(json!({"inactivity_timeout": 0})).is_err());
        assert!(settings(json!({"speech_detector_sensitivity": 2.0})).is_err());
        assert!(settings(json!({"extra_start": {"action": "x"}})).is_err());
        assert!(settings(json!({"models": ["bad model"]})).is_err());
        assert!(settings(json!({"ack_timeout_ms": 0})).is_err());
        let s = settings(
            json!({"low_latency": true, "extra_start": {"max_alternatives": 2},
            "language_customization_id": "abc-123", "learning_opt_out": true}),
        )
        .unwrap();
        assert_eq!(s.start_extra["low_latency"], true);
        assert_eq!(s.start_extra["max_alternatives"], 2);
        let url = recognize_url(
            "https://api.us-south.speech-to-text.watson.cloud.ibm.com/instances/i",
            &Secret::from("t.o+k"),
            "en-US_Multimedia",
            &s,
        );
        assert_eq!(
            url,
            "wss://api.us-south.speech-to-text.watson.cloud.ibm.com/instances/i/v1/recognize?\
             access_token=t.o%2Bk&model=en-US_Multimedia&language_customization_id=abc-123&\
             x-watson-learning-opt-out=true"
        );
    }
}
