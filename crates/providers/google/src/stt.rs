//! The Google Cloud Speech-to-Text v2 plugin: gRPC `google.cloud.speech.v2.Speech/StreamingRecognize`.
//!
//! One bidirectional call per stream (STT_PROTOCOLS.md §7; proto
//! `google/cloud/speech/v2/cloud_speech.proto` as generated in
//! `googleapis-tonic-google-cloud-speech-v2` 0.37): the first request carries `recognizer`
//! (`projects/{project}/locations/{location}/recognizers/_`, the implicit recognizer, whose
//! config comes inline) and `streaming_config` only; every later one carries `audio` only (at
//! most 15 KB each, the proto's limit on `audio`). Half-closing the send side makes the server
//! send the remaining finals and end the call with OK. See [`session`] for the flow, the
//! mapping of results and voice-activity events, and the 5-minute stream limit.

pub(crate) mod session;

use crate::auth::{self, AuthCache};
use crate::common::{self, Channels};
use googleapis_tonic_google_cloud_speech_v2::google::cloud::speech::v2 as pb;
use std::sync::Arc;
use std::time::Duration;
use waav_plugin_api::{
    AudioEncoding, Capabilities, ModelInfo, Plugin, PluginConfig, PluginError, PluginInfo,
    ProviderTask, SttIo, SttPlugin, SttSessionConfig,
};

/// Names the provider in messages.
pub(crate) const CTX: &str = "google stt";
/// The global endpoint.
pub const GLOBAL_ENDPOINT: &str = "https://speech.googleapis.com";
/// The model when neither the session nor the config names one. `long` is served in the
/// `global` location; `chirp_2`/`chirp_3` need a regional location (us-central1, europe-west4,
/// asia-southeast1: cloud.google.com/speech-to-text/v2/docs/chirp_2-model "Regional
/// availability") and are slower to finalise.
pub const DEFAULT_MODEL: &str = "long";

/// Models accepted in `model` (cloud.google.com/speech-to-text/v2/docs/transcription-model,
/// "Transcription models"; `chirp` is batch only, so it is not listed).
pub const MODELS: &[&str] = &[
    "long",
    "short",
    "telephony",
    "telephony_short",
    "latest_long",
    "latest_short",
    "chirp_2",
    "chirp_3",
    "medical_conversation",
    "medical_dictation",
];

/// The Speech-to-Text plugin (id `google`).
#[derive(Debug, Default)]
pub struct GoogleStt {
    channels: Channels,
    auth: Arc<AuthCache>,
}

impl GoogleStt {
    /// A plugin with empty caches.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token and key-file cache (tests read its exchange count).
    pub fn auth_cache(&self) -> &AuthCache {
        &self.auth
    }
}

/// Settings of one session, from its config and the plugin section.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub endpoint: String,
    pub recognizer: String,
    pub model: String,
    pub interim_results: bool,
    pub voice_activity_events: bool,
    pub word_time_offsets: bool,
    pub word_confidence: bool,
    pub profanity_filter: bool,
    pub user_project: Option<String>,
    pub drain_timeout: Duration,
    pub rotate_after: Duration,
    pub max_stream: Duration,
    pub keepalive: Option<Duration>,
    pub connect_timeout: Duration,
}

fn flag(cfg: &PluginConfig, key: &str, default: bool) -> Result<bool, PluginError> {
    Ok(cfg.bool(key)?.unwrap_or(default))
}

fn valid_segment(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
}

/// Resolves and validates a session's settings (no network).
pub(crate) fn settings(
    config: &SttSessionConfig,
    project_fallback: Option<&str>,
) -> Result<Settings, PluginError> {
    let pc = &config.plugin_config;
    let path = pc.path().to_owned();
    let location = pc.string("location")?.unwrap_or_else(|| "global".into());
    if !valid_segment(&location) {
        return Err(PluginError::Config(format!(
            "{path}.location: {location:?} is not a location id"
        )));
    }
    let recognizer = pc.string("recognizer")?.unwrap_or_else(|| "_".into());
    let recognizer = if recognizer.starts_with("projects/") {
        recognizer
    } else {
        if !valid_segment(&recognizer) {
            return Err(PluginError::Config(format!(
                "{path}.recognizer: {recognizer:?} is neither a recognizer id nor a full name"
            )));
        }
        let project = match pc.string("project_id")? {
            Some(p) => p,
            None => project_fallback.map(str::to_owned).ok_or_else(|| {
                PluginError::Config(format!(
                    "{path}.project_id is required (or a service-account key with project_id)"
                ))
            })?,
        };
        if !valid_segment(&project) {
            return Err(PluginError::Config(format!(
                "{path}.project_id: {project:?} is not a project id"
            )));
        }
        format!("projects/{project}/locations/{location}/recognizers/{recognizer}")
    };
    let endpoint = match common::endpoint_override(pc)? {
        Some(e) => e,
        None if location == "global" => GLOBAL_ENDPOINT.to_owned(),
        // Regional endpoints (cloud.google.com/speech-to-text/v2/docs/speech-to-text-supported-languages,
        // "Regional endpoints"): recognizers in a region are served only there.
        None => format!("https://{location}-speech.googleapis.com"),
    };
    let model = if !config.model.is_empty() {
        config.model.clone()
    } else {
        pc.string("model")?.unwrap_or_else(|| DEFAULT_MODEL.into())
    };
    let rotate_after = Duration::from_secs(match pc.u64("rotate_after_secs")? {
        None => 240,
        Some(v) if (1..=290).contains(&v) => v,
        Some(v) => {
            return Err(PluginError::Config(format!(
                "{path}.rotate_after_secs: {v} is outside 1–290"
            )))
        }
    });
    let keepalive = match pc.u64("keepalive_secs")? {
        None => Some(Duration::from_secs(30)),
        Some(0) => None,
        Some(v) => Some(Duration::from_secs(v.clamp(5, 3600))),
    };
    Ok(Settings {
        endpoint,
        recognizer,
        model,
        interim_results: flag(pc, "interim_results", true)?,
        voice_activity_events: flag(pc, "voice_activity_events", true)?,
        word_time_offsets: flag(pc, "word_time_offsets", true)?,
        word_confidence: flag(pc, "word_confidence", true)?,
        profanity_filter: flag(pc, "profanity_filter", false)?,
        user_project: common::user_project(pc)?,
        drain_timeout: common::millis(pc, "drain_timeout_ms", Duration::from_secs(5), 10, 60_000)?,
        rotate_after,
        // Google ends a stream after 5 minutes (305 s in practice): rotate even mid-utterance
        // shortly before.
        max_stream: Duration::from_secs(285).max(rotate_after),
        keepalive,
        connect_timeout: common::millis(
            pc,
            "connect_timeout_ms",
            Duration::from_secs(10),
            10,
            60_000,
        )?,
    })
}

/// Checks the audio format against what `ExplicitDecodingConfig` takes.
pub(crate) fn check_format(
    config: &SttSessionConfig,
) -> Result<pb::explicit_decoding_config::AudioEncoding, PluginError> {
    use pb::explicit_decoding_config::AudioEncoding as E;
    let enc = match config.encoding {
        AudioEncoding::Linear16 => E::Linear16,
        AudioEncoding::Mulaw => E::Mulaw,
        AudioEncoding::Alaw => E::Alaw,
        other => {
            return Err(PluginError::Config(format!(
                "{CTX}: encoding {other} is not accepted (linear16, mulaw, alaw)"
            )))
        }
    };
    // "Valid values are: 8000-48000" (ExplicitDecodingConfig.sample_rate_hertz).
    if !(8_000..=48_000).contains(&config.sample_rate) {
        return Err(PluginError::Config(format!(
            "{CTX}: sample rate {} is outside 8000–48000 Hz",
            config.sample_rate
        )));
    }
    // "The maximum allowed value is 8" (audio_channel_count).
    if !(1..=8).contains(&config.channels) {
        return Err(PluginError::Config(format!(
            "{CTX}: {} channels (1–8 accepted)",
            config.channels
        )));
    }
    Ok(enc)
}

/// The first request of a stream: recognizer plus the inline config.
pub(crate) fn config_request(
    config: &SttSessionConfig,
    s: &Settings,
    encoding: pb::explicit_decoding_config::AudioEncoding,
) -> pb::StreamingRecognizeRequest {
    use pb::streaming_recognize_request::StreamingRequest;
    let features = pb::RecognitionFeatures {
        profanity_filter: s.profanity_filter,
        enable_word_time_offsets: s.word_time_offsets,
        enable_word_confidence: s.word_confidence,
        enable_automatic_punctuation: config.punctuation,
        ..Default::default()
    };
    let rc = pb::RecognitionConfig {
        model: s.model.clone(),
        language_codes: vec![config.language.clone()],
        features: Some(features),
        decoding_config: Some(
            pb::recognition_config::DecodingConfig::ExplicitDecodingConfig(
                pb::ExplicitDecodingConfig {
                    encoding: encoding as i32,
                    sample_rate_hertz: config.sample_rate as i32,
                    audio_channel_count: i32::from(config.channels),
                },
            ),
        ),
        ..Default::default()
    };
    pb::StreamingRecognizeRequest {
        recognizer: s.recognizer.clone(),
        streaming_request: Some(StreamingRequest::StreamingConfig(
            pb::StreamingRecognitionConfig {
                config: Some(rc),
                config_mask: None,
                streaming_features: Some(pb::StreamingRecognitionFeatures {
                    enable_voice_activity_events: s.voice_activity_events,
                    interim_results: s.interim_results,
                    voice_activity_timeout: None,
                    endpointing_sensitivity: 0,
                }),
            },
        )),
    }
}

#[async_trait::async_trait]
impl Plugin for GoogleStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new("google", "Google Cloud Speech-to-Text")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["google-stt", "gcp"])
            .description("Google Cloud Speech-to-Text v2 streaming recognition over gRPC")
            .credentials(auth::CREDENTIAL_FIELDS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .models(MODELS.iter().map(|m| ModelInfo::new(*m, *m)))
            .encodings([
                AudioEncoding::Linear16,
                AudioEncoding::Mulaw,
                AudioEncoding::Alaw,
            ])
            // Without a multi-channel mode Google recognises one channel: let the host mix down.
            .max_channels(1)
            .sample_rate_range(8_000, 48_000)
            .features(true, false, true, true)
    }
}

#[async_trait::async_trait]
impl SttPlugin for GoogleStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let encoding = check_format(&config)?;
        let auth = self
            .auth
            .resolve(
                config.api_key.as_ref(),
                &config.credentials,
                &config.plugin_config,
            )
            .await?;
        let project = match &auth {
            auth::Auth::ServiceAccount { account, .. } => account.project_id.clone(),
            auth::Auth::ApiKey(_) => None,
        };
        let s = settings(&config, project.as_deref())?;
        if !config.model.is_empty() || config.plugin_config.raw("model").is_some() {
            self.capabilities()
                .check_model(&s.model)
                .map_err(|e| PluginError::Config(format!("{CTX}: {e}")))?;
        }
        // Fetch the token now: a refused key fails the connect, not the first audio.
        if matches!(auth, auth::Auth::ServiceAccount { .. }) {
            self.auth.token(&auth).await?;
        }
        let channel = self
            .channels
            .get(&s.endpoint, s.connect_timeout, s.keepalive, CTX)?;
        let first = config_request(&config, &s, encoding);
        let bytes_per_sec = f64::from(config.sample_rate)
            * f64::from(config.channels)
            * config.encoding.bytes_per_sample().unwrap_or(2) as f64;
        let frame = config.encoding.bytes_per_sample().unwrap_or(2) * usize::from(config.channels);
        let session = session::Session::new(session::Params {
            channel,
            auth,
            cache: self.auth.clone(),
            settings: s,
            first,
            bytes_per_sec,
            frame,
        });
        Ok(Box::pin(session.run(io)))
    }
}
