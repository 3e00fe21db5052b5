//! The REST paths: `POST /v1/text-to-speech/{voice_id}/stream` (chunked raw audio, one request
//! per [`SpeakRequest`]) and `GET /v1/voices`.
//!
//! Endpoints and body fields as in TTS_PROTOCOLS.md §2 "Endpoints and auth" / "REST body",
//! checked against `elevenlabs-python` `src/elevenlabs/text_to_speech/raw_client.py` (`stream`)
//! and `src/elevenlabs/types/voice.py`, `verified_voice_language_response_model.py`.

use super::messages::{rest_error, Transcoder};
use super::settings::{self, Settings};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use std::collections::HashMap;
use std::time::Duration;
use waav_plugin_api::http::{header, HeaderValue};
use waav_plugin_api::{
    AudioSink, ErrorCategory, PluginError, Secret, SpeakRequest, TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::errors;
use waav_provider_kit::http::{HttpClient, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Largest voice listing accepted (accounts with many cloned voices list a few MiB).
const MAX_VOICES_BODY: usize = 16 << 20;

fn key_header(key: &Secret) -> Result<HeaderValue, PluginError> {
    let mut v = HeaderValue::from_str(key.expose()).map_err(|_| {
        PluginError::Auth("elevenlabs: the API key is not a valid header value".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Sends `req`, waiting at most `wait` for the response head; a non-success status becomes
/// the vendor's error.
async fn send(
    http: &HttpClient,
    req: RequestBuilder,
    wait: Duration,
    redactor: &Redactor,
) -> Result<Response, PluginError> {
    // The kit's retry never sleeps past this wait (a 429 asking for longer comes back at once).
    let until = tokio::time::Instant::now() + wait;
    let resp = match tokio::time::timeout_at(until, http.execute_within(req, until)).await {
        Err(_) => return Err(errors::timeout("elevenlabs: response", wait, redactor)),
        Ok(Err(e)) => return Err(redactor.redact_error(e)),
        Ok(Ok(r)) => r,
    };
    if resp.status().is_success() {
        return Ok(resp);
    }
    Err(error_from(resp, wait, redactor).await)
}

/// Reads at most a bounded excerpt of an error body (bounded in time too).
async fn error_from(mut resp: Response, wait: Duration, redactor: &Redactor) -> PluginError {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let read = async {
        while body.len() <= errors::BODY_EXCERPT_LIMIT * 8 {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(wait, read).await;
    rest_error(status, &headers, &body, redactor)
}

/// Synthesises one request over the streaming REST endpoint, forwarding each body chunk to
/// `out` as it arrives.
pub async fn synthesize(
    http: &HttpClient,
    s: &Settings,
    cfg: &TtsSessionConfig,
    key: &Secret,
    request: SpeakRequest,
    out: AudioSink,
) -> Result<(), PluginError> {
    if request.text.trim().is_empty() {
        // Nothing to say; the vendor would reject the empty text with a 400/422.
        return Ok(());
    }
    let voice = settings::voice_id(s, cfg)?;
    let model = settings::model_id(s, cfg)?;
    let format = settings::output_format(s, cfg)?;
    let url = settings::stream_url(s, voice, &format);
    let body = settings::rest_body(s, cfg, model, &request.text);
    let redactor = Redactor::new().with_secret(key);
    let accept = if format.vendor.starts_with("mp3") {
        "audio/mpeg"
    } else {
        "*/*"
    };
    let req = http
        .post(&url)
        .header("xi-api-key", key_header(key)?)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, accept)
        .body(body.to_string());
    let resp = send(http, req, s.response_timeout, &redactor).await?;
    if let Some(trace) = resp
        .headers()
        .get("x-trace-id")
        .and_then(|v| v.to_str().ok())
    {
        tracing::debug!(trace, id = request.id, "elevenlabs: synthesis started");
    }
    let json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    if json {
        // A 200 with JSON is not audio (seen with misrouted proxies); report its excerpt.
        let wait = s.response_timeout;
        let e = error_from(resp, wait, &redactor).await;
        return Err(errors::make(
            ErrorCategory::Permanent,
            format!("elevenlabs: expected audio, got JSON: {e}"),
            None,
            &redactor,
        ));
    }
    let mut chunks = http.body_stream(resp);
    let mut transcoder = Transcoder::new(format.transcode);
    loop {
        let next = tokio::time::timeout(s.response_timeout, chunks.next()).await;
        let chunk: Bytes = match next {
            Err(_) => {
                return Err(errors::timeout(
                    &format!("elevenlabs: request {} audio", request.id),
                    s.response_timeout,
                    &redactor,
                ))
            }
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(redactor.redact_error(e)),
            Ok(Some(Ok(c))) => c,
        };
        // Dropping `chunks` on the way out (cancel, host gone) closes the connection.
        out.send(transcoder.push(chunk)).await?;
    }
}

#[derive(Debug, Deserialize)]
struct VoicesResponse {
    #[serde(default)]
    voices: Vec<VoiceDto>,
}

#[derive(Debug, Deserialize)]
struct VoiceDto {
    voice_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    labels: Option<HashMap<String, serde_json::Value>>,
    #[serde(default)]
    preview_url: Option<String>,
    #[serde(default)]
    verified_languages: Option<Vec<VerifiedLanguage>>,
}

#[derive(Debug, Deserialize)]
struct VerifiedLanguage {
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    locale: Option<String>,
}

impl VoiceDto {
    fn label(&self, key: &str) -> String {
        self.labels
            .as_ref()
            .and_then(|l| l.get(key))
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    }

    fn into_info(self) -> VoiceInfo {
        let mut language = self.label("language");
        if language.is_empty() {
            if let Some(l) = self.verified_languages.as_ref().and_then(|v| v.first()) {
                language = l
                    .locale
                    .clone()
                    .or_else(|| l.language.clone())
                    .unwrap_or_default();
            }
        }
        VoiceInfo {
            accent: self.label("accent"),
            gender: self.label("gender"),
            name: self.name.clone().unwrap_or_else(|| self.voice_id.clone()),
            sample: self.preview_url.clone().unwrap_or_default(),
            id: self.voice_id,
            language,
        }
    }
}

/// `GET /v1/voices`, mapped to [`VoiceInfo`] (labels `accent`, `gender`, `language`; else the
/// first verified language's locale).
pub async fn voices(
    http: &HttpClient,
    s: &Settings,
    key: &Secret,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let redactor = Redactor::new().with_secret(key);
    let req = http
        .get(&format!("{}/v1/voices", s.base_url))
        .header("xi-api-key", key_header(key)?)
        .header(header::ACCEPT, "application/json");
    let resp = send(http, req, s.response_timeout, &redactor).await?;
    let mut chunks = http.body_stream(resp);
    let mut body = Vec::new();
    let read = async {
        while let Some(c) = chunks.next().await {
            let c = c.map_err(|e| redactor.redact_error(e))?;
            if body.len() + c.len() > MAX_VOICES_BODY {
                return Err(PluginError::Permanent(format!(
                    "elevenlabs: voice list exceeds {MAX_VOICES_BODY} bytes"
                )));
            }
            body.extend_from_slice(&c);
        }
        Ok(())
    };
    match tokio::time::timeout(s.response_timeout, read).await {
        Err(_) => {
            return Err(errors::timeout(
                "elevenlabs: voices",
                s.response_timeout,
                &redactor,
            ))
        }
        Ok(r) => r?,
    }
    let parsed: VoicesResponse = serde_json::from_slice(&body).map_err(|e| {
        errors::make(
            ErrorCategory::Permanent,
            format!(
                "elevenlabs: invalid voice list: {e}: {}",
                errors::excerpt(&body, 200)
            ),
            None,
            &redactor,
        )
    })?;
    Ok(parsed.voices.into_iter().map(VoiceDto::into_info).collect())
}
