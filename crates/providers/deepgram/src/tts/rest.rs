//! The REST path: `POST /v1/speak` streamed into the sink, and `GET /v1/models`.
//!
//! Request shape per `TTS_PROTOCOLS.md` §1 "REST request" and python SDK
//! `speak/v1/audio/raw_client.py` (`POST v1/speak`, options in the query, JSON body
//! `{"text": …}`, `content-type: application/json`, the body streamed back as audio bytes).

use super::messages;
use super::options::{self, Request, Settings};
use std::time::Duration;
use waav_plugin_api::{AudioSink, ErrorCategory, PluginError, Secret, VoiceInfo};
use waav_provider_kit::errors;
use waav_provider_kit::http::audio::stream_into;
use waav_provider_kit::http::{map_reqwest_error, HttpClient, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Names the provider in messages.
pub const CONTEXT: &str = "deepgram tts";

/// Largest `/v1/models` body accepted.
const MAX_MODELS_BODY: usize = 4 << 20;

/// The `Authorization` header value.
pub fn auth_value(settings: &Settings, key: &Secret) -> String {
    format!("{} {}", settings.auth_scheme.prefix(), key.expose())
}

/// Sends `req` with a deadline for the response head.
async fn send(
    http: &HttpClient,
    req: RequestBuilder,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Response, PluginError> {
    // The kit's retry never sleeps past this wait (a 429 asking for longer comes back at once).
    let until = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout_at(until, http.execute_within(req, until)).await {
        Err(_) => Err(errors::timeout(
            &format!("{CONTEXT}: waiting for the response"),
            timeout,
            redactor,
        )),
        Ok(Err(e)) => Err(redactor.redact_error(e)),
        Ok(Ok(resp)) if resp.status().is_success() => Ok(resp),
        Ok(Ok(resp)) => Err(error_from_response(resp, timeout, redactor).await),
    }
}

/// A non-2xx response as a categorised error carrying Deepgram's message.
///
/// The kit's status table applies (401/403 Auth, 429 RateLimited with `retry-after`, 5xx
/// Transient, 408/504 Timeout) with one refinement: a 400 is Config (the query we built was
/// refused: an unknown model, a format combination) unless Deepgram's message is about the text
/// itself, which no retry or reconfiguration fixes (Permanent).
async fn error_from_response(
    mut resp: Response,
    timeout: Duration,
    redactor: &Redactor,
) -> PluginError {
    let status = resp.status();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let read = async {
        while body.len() <= errors::BODY_EXCERPT_LIMIT * 4 {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(timeout, read).await;
    let mut category = errors::status_category(status.as_u16()).unwrap_or(ErrorCategory::Permanent);
    let detail = messages::error_message(&body);
    if status.as_u16() == 400 {
        let about_text = detail
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("text"));
        category = if about_text {
            ErrorCategory::Permanent
        } else {
            ErrorCategory::Config
        };
    }
    let mut msg = format!(
        "{CONTEXT}: HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let detail = detail.unwrap_or_else(|| errors::excerpt(&body, errors::BODY_EXCERPT_LIMIT));
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&errors::excerpt(
            detail.as_bytes(),
            errors::BODY_EXCERPT_LIMIT,
        ));
    }
    if let Some(id) = headers.get("dg-request-id").and_then(|v| v.to_str().ok()) {
        msg.push_str(&format!(" (request {id})"));
    }
    errors::make(
        category,
        msg.trim_end(),
        errors::retry_after(&headers),
        redactor,
    )
}

/// Synthesises `text` over REST into `out`, chunk by chunk as the body arrives. Returns once the
/// body ended, or early (Ok) when the sink refuses audio: the response is dropped, which closes
/// the connection.
pub async fn synthesize(
    http: &HttpClient,
    settings: &Settings,
    req: &Request,
    key: &Secret,
    text: &str,
    out: &AudioSink,
) -> Result<(), PluginError> {
    let redactor = http.redactor().clone().with_secret(key);
    let url = options::rest_url(settings, req);
    let body = serde_json::json!({ "text": text }).to_string();
    let builder = http
        .post(&url)
        .header("Authorization", auth_value(settings, key))
        .header("Content-Type", "application/json")
        .body(body);
    let resp = send(http, builder, settings.read_timeout, &redactor).await?;
    if let Some(id) = resp
        .headers()
        .get("dg-request-id")
        .and_then(|v| v.to_str().ok())
    {
        tracing::debug!(request_id = id, "deepgram tts: speaking");
    }
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/") {
        // A 200 that is not audio (a proxy page, a callback acknowledgement): never play it.
        let mut resp = resp;
        let mut head = Vec::new();
        let read = async {
            while head.len() < 256 {
                match resp.chunk().await {
                    Ok(Some(c)) => head.extend_from_slice(&c),
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(settings.read_timeout, read).await;
        return Err(errors::make(
            ErrorCategory::Permanent,
            format!(
                "{CONTEXT}: expected audio, got {content_type}: {}",
                errors::excerpt(&head, 200)
            ),
            None,
            &redactor,
        ));
    }
    let context = format!("{CONTEXT}: reading audio");
    stream_into(resp, out, settings.read_timeout, &context, &redactor, Ok).await?;
    Ok(())
}

/// `GET /v1/models`, mapped to voices. The docs say the listing needs no key; one is sent when
/// available.
pub async fn list_voices(
    http: &HttpClient,
    settings: &Settings,
    key: Option<&Secret>,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let mut redactor = http.redactor().clone();
    let mut req = http.get(&options::models_url(settings));
    if let Some(k) = key {
        redactor.add(k);
        req = req.header("Authorization", auth_value(settings, k));
    }
    let mut resp = send(http, req, settings.read_timeout, &redactor).await?;
    let mut body = Vec::new();
    let read = async {
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    body.extend_from_slice(&c);
                    if body.len() > MAX_MODELS_BODY {
                        return Err(errors::make(
                            ErrorCategory::Permanent,
                            format!("{CONTEXT}: model listing exceeds {MAX_MODELS_BODY} bytes"),
                            None,
                            &redactor,
                        ));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(map_reqwest_error(e, CONTEXT, &redactor)),
            }
        }
    };
    match tokio::time::timeout(settings.read_timeout, read).await {
        Err(_) => {
            return Err(errors::timeout(
                &format!("{CONTEXT}: reading the model listing"),
                settings.read_timeout,
                &redactor,
            ))
        }
        Ok(r) => r?,
    }
    messages::voices(&body).map_err(|e| {
        errors::make(
            ErrorCategory::Permanent,
            format!(
                "{CONTEXT}: invalid model listing: {e}: {}",
                errors::excerpt(&body, 120)
            ),
            None,
            &redactor,
        )
    })
}
