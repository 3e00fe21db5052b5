//! Amazon Transcribe streaming speech to text (`aws-transcribe`, aliases `transcribe`,
//! `amazon-transcribe`).
//!
//! # Transport: the WebSocket API, not HTTP/2
//!
//! StartStreamTranscription exists over HTTP/2 (`POST /stream-transcription`, every audio event
//! wrapped in a chained-signature envelope) and over WebSocket (`GET
//! wss://transcribestreaming.{region}.amazonaws.com:8443/stream-transcription-websocket` with a
//! SigV4 **presigned** query, IAM action `transcribe:StartStreamTranscriptionWebSocket`). Both
//! carry the same `application/vnd.amazon.eventstream` messages. This plugin speaks the
//! WebSocket one: it reuses the kit's WebSocket client (keepalive, idle timeout, close-code
//! mapping, TLS) that every other streaming provider uses, needs no HTTP/2 client, and is what
//! most non-SDK clients use. The kit's event signer for the HTTP/2 variant stays unused.
//!
//! Sources: Transcribe Developer Guide `websocket.md` (URL and query parameters, the three
//! `AudioEvent` headers, the empty event that ends the stream, exception frames followed by a
//! close, `X-Amz-Expires` ≤ 300, `X-Amz-SignedHeaders=host`), `event-stream.md`, and
//! `STT_PROTOCOLS.md` §8 (result shape, exception names).
//!
//! # Sessions
//!
//! `connect` validates the config, presigns and dials (so a refused signature is an Auth error
//! from `connect`), then [`session`] runs the stream. Audio: `linear16` mono at 8–48 kHz
//! (`media-encoding=pcm`; the service documents 8000–48000 Hz for PCM streams). The session's
//! `language` is `language-code` (default `en-US`); a non-empty `model` is a custom language
//! model (`language-model-name`).
//!
//! # Config (`plugins.stt.aws-transcribe`)
//!
//! Credentials as for Polly; `endpoint` or `base_url` (`ws://`/`wss://`, default
//! `wss://transcribestreaming.{region}.amazonaws.com:8443`, the path appended);
//! `vocabulary_name`, `vocabulary_filter_name`, `vocabulary_filter_method`,
//! `language_model_name`, `show_speaker_label`, `partial_results_stability`, `session_id`,
//! `content_redaction_type`, `pii_entity_types`; `url_expires_secs` (300), `max_chunk_ms` (200),
//! `ping_interval_ms` (10000) / `idle_timeout_ms` (30000; 0 turns either off),
//! `finalize_timeout_ms` / `drain_timeout_ms` (10000), `max_pending_ms` (10000),
//! `max_message_bytes` (1 MiB).
//!
//! **UNCONFIRMED**: the service's no-audio timeout (about 15 s) and maximum stream length; that
//! it answers WebSocket pings (RFC 6455 requires it); the optional query parameters other than
//! `session-id` and `vocabulary-name` (taken from the HTTP/2 header names).

mod messages;
pub mod session;
pub mod settings;

pub use settings::{Settings, ID};

use crate::auth;
use waav_plugin_api::{
    AudioEncoding, Capabilities, Plugin, PluginConfig, PluginContext, PluginError, PluginInfo,
    ProviderTask, Secret, SttIo, SttPlugin, SttSessionConfig,
};
use waav_provider_kit::ws::WsConfig;

/// Lowest and highest PCM rates the service takes.
pub const SAMPLE_RATE_RANGE: (u32, u32) = (8_000, 48_000);

/// Amazon Transcribe streaming. See the module docs.
#[derive(Debug, Default, Clone, Copy)]
pub struct TranscribeStt;

#[async_trait::async_trait]
impl Plugin for TranscribeStt {
    fn info(&self) -> PluginInfo {
        PluginInfo::new(ID, "Amazon Transcribe")
            .version(env!("CARGO_PKG_VERSION"))
            .aliases(&["transcribe", "amazon-transcribe"])
            .description("Amazon Transcribe streaming over its presigned WebSocket API")
            .credentials(auth::CREDENTIALS)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
            .encodings([AudioEncoding::Linear16])
            .sample_rate_range(SAMPLE_RATE_RANGE.0, SAMPLE_RATE_RANGE.1)
            .max_channels(1)
            .features(true, false, true, true)
    }

    async fn init(&self, _ctx: &PluginContext, config: &PluginConfig) -> Result<(), PluginError> {
        Settings::from_config(config).map(drop)
    }
}

/// Validates a session config into the session's parameters (no I/O).
pub fn plan(config: &SttSessionConfig) -> Result<session::Params, PluginError> {
    let bad = |m: String| PluginError::Config(format!("{ID}: {m}"));
    let caps = TranscribeStt.capabilities();
    caps.check_encoding(config.encoding).map_err(bad)?;
    caps.check_sample_rate(config.sample_rate).map_err(bad)?;
    if config.channels != 1 {
        return Err(bad(format!(
            "unsupported channel count {}; this plugin streams mono audio",
            config.channels
        )));
    }
    let settings = Settings::from_config(&config.plugin_config)?;
    let language = Some(config.language.trim())
        .filter(|l| !l.is_empty())
        .unwrap_or("en-US");
    if !settings::is_token(language) || language.contains(',') {
        return Err(bad(format!("invalid language {language:?}")));
    }
    let model = Some(config.model.trim()).filter(|m| !m.is_empty());
    if let Some(m) = model.filter(|m| !settings::is_token(m)) {
        return Err(bad(format!("invalid model (custom language model) {m:?}")));
    }
    let creds = if config.credentials.contains(auth::ACCESS_KEY_ID) {
        config.credentials.clone()
    } else {
        auth::from_section(&config.plugin_config)?.unwrap_or_else(|| config.credentials.clone())
    };
    let resolved = auth::resolve(&creds, ID)?;
    let url = settings.url(&resolved.region, language, config.sample_rate, model);
    let mut ws = WsConfig::new(url.clone())
        .context(session::CONTEXT)
        .secret(Secret::new(resolved.creds.access_key_id.as_str()))
        .secret(resolved.creds.secret_access_key.clone());
    if let Some(t) = &resolved.creds.session_token {
        ws = ws.secret(t.clone());
    }
    ws.ping_interval = settings.ping_interval;
    ws.idle_timeout = settings.idle_timeout;
    ws.max_message_size = settings.max_message_bytes;
    Ok(session::Params {
        signer: resolved.signer("transcribe"),
        url,
        ws,
        bytes_per_sec: u64::from(config.sample_rate) * 2,
        punctuation: config.punctuation,
        settings,
    })
}

#[async_trait::async_trait]
impl SttPlugin for TranscribeStt {
    async fn connect(
        &self,
        config: SttSessionConfig,
        io: SttIo,
    ) -> Result<ProviderTask, PluginError> {
        let params = plan(&config)?;
        let conn = session::dial(&params).await?;
        Ok(Box::pin(session::Session::new(params, conn, io).run()))
    }
}
