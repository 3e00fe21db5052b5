//! The HTTP paths: `POST /v1/ai/speech/bytes` (binary audio, streamed while it is encoded for
//! the streamable formats; lmnt-python `resources/speech.py` `generate` posts JSON with
//! `Accept: application/octet-stream`) and `GET /v1/ai/voice/list` (`resources/voices.py`,
//! a JSON array of `types/voice.py` `Voice`).
//!
//! Errors: `types/error_body.py` `ErrorBody {message, type}` with `type` one of
//! `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
//! `payment_required_error`, `rate_limit_error`, `internal_server_error`; `_exceptions.py`
//! reads it from the body's `error` key. Both `{"error": {…}}` and a bare `ErrorBody` (and the
//! older `{"error": "…"}`) are accepted; which one the service sends is UNCONFIRMED.

use super::settings::{self, Plan, Settings};
use super::wav::WavStripper;
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use waav_plugin_api::http::{header, HeaderMap, HeaderValue};
use waav_plugin_api::{AudioSink, ErrorCategory, PluginError, Secret, SpeakRequest, VoiceInfo};
use waav_provider_kit::errors;
use waav_provider_kit::http::{map_reqwest_error, HttpClient, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Names the provider in messages.
pub const CONTEXT: &str = "lmnt";
/// The auth header (`_client.py` `auth_headers`).
pub const KEY_HEADER: &str = "X-API-Key";
/// Largest voice listing accepted.
const MAX_VOICES_BODY: usize = 8 << 20;

fn key_header(key: &Secret) -> Result<HeaderValue, PluginError> {
    let mut v = HeaderValue::from_str(key.expose())
        .map_err(|_| PluginError::Auth("lmnt: the API key is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The message and `type` of an LMNT error body, whichever of the accepted shapes it has.
pub fn parse_error(body: &[u8]) -> Option<(String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let inner = match &v["error"] {
        serde_json::Value::String(s) => return Some((s.clone(), None)),
        o @ serde_json::Value::Object(_) => o,
        _ => &v,
    };
    let message = inner["message"].as_str()?.to_owned();
    Some((message, inner["type"].as_str().map(str::to_owned)))
}

/// A non-2xx answer as a categorised error: the kit's table, with 400/422 as Config unless the
/// vendor blames the text (Permanent for this request only).
pub fn error_from_parts(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    redactor: &Redactor,
) -> PluginError {
    let parsed = parse_error(body);
    let mut category = errors::status_category(status).unwrap_or(ErrorCategory::Permanent);
    if status == 400 || status == 422 {
        let blames_text = parsed
            .as_ref()
            .is_some_and(|(m, _)| m.to_ascii_lowercase().contains("text"));
        category = if blames_text {
            ErrorCategory::Permanent
        } else {
            ErrorCategory::Config
        };
    }
    let reason = waav_plugin_api::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut msg = format!("{CONTEXT}: HTTP {status} {reason}");
    let detail = match parsed {
        Some((m, Some(t))) => format!("{m} ({t})"),
        Some((m, None)) => m,
        None => errors::excerpt(body, errors::BODY_EXCERPT_LIMIT),
    };
    if !detail.trim().is_empty() {
        msg.push_str(": ");
        msg.push_str(&errors::excerpt(
            detail.trim().as_bytes(),
            errors::BODY_EXCERPT_LIMIT,
        ));
    }
    errors::make(
        category,
        msg.trim_end(),
        errors::retry_after(headers),
        redactor,
    )
}

async fn error_from(mut resp: Response, wait: Duration, redactor: &Redactor) -> PluginError {
    let status = resp.status().as_u16();
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
    error_from_parts(status, &headers, &body, redactor)
}

async fn send(
    http: &HttpClient,
    req: RequestBuilder,
    wait: Duration,
    redactor: &Redactor,
) -> Result<Response, PluginError> {
    // The kit's retry never sleeps past this wait (a 429 asking for longer comes back at once).
    let until = tokio::time::Instant::now() + wait;
    let resp = match tokio::time::timeout_at(until, http.execute_within(req, until)).await {
        Err(_) => {
            return Err(errors::timeout(
                "lmnt: waiting for the response",
                wait,
                redactor,
            ))
        }
        Ok(Err(e)) => return Err(redactor.redact_error(e)),
        Ok(Ok(r)) => r,
    };
    if resp.status().is_success() {
        Ok(resp)
    } else {
        Err(error_from(resp, wait, redactor).await)
    }
}

/// Synthesises one request, forwarding each body chunk into `out` as it arrives (the `ulaw`
/// WAV header removed). Texts past the 5000-character limit become consecutive requests.
pub async fn synthesize(
    http: &HttpClient,
    s: &Settings,
    plan: &Plan,
    key: &Secret,
    request: SpeakRequest,
    out: AudioSink,
) -> Result<(), PluginError> {
    let redactor = http.redactor().clone().with_secret(key);
    let url = format!("{}/v1/ai/speech/bytes", s.base_url);
    for piece in settings::split_text(&request.text, settings::MAX_TEXT_CHARS) {
        let req = http
            .post(&url)
            .header(KEY_HEADER, key_header(key)?)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/octet-stream")
            .body(settings::body(plan, piece).to_string());
        let resp = send(http, req, s.response_timeout, &redactor).await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("application/json") || content_type.starts_with("text/") {
            return Err(errors::make(
                ErrorCategory::Permanent,
                format!("{CONTEXT}: expected audio, got {content_type}"),
                None,
                &redactor,
            ));
        }
        let mut stripper = (plan.format == "ulaw").then(WavStripper::new);
        let mut chunks = resp.bytes_stream();
        loop {
            let chunk: Bytes = match tokio::time::timeout(s.response_timeout, chunks.next()).await {
                Err(_) => {
                    return Err(errors::timeout(
                        &format!("{CONTEXT}: request {} audio", request.id),
                        s.response_timeout,
                        &redactor,
                    ))
                }
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(map_reqwest_error(e, CONTEXT, &redactor)),
                Ok(Some(Ok(c))) => c,
            };
            let chunk = match stripper.as_mut() {
                None => chunk,
                Some(st) => st
                    .push(chunk)
                    .map_err(|e| PluginError::Permanent(format!("{CONTEXT}: ulaw audio: {e}")))?,
            };
            if out.send(chunk).await.is_err() {
                // Cancelled or the host went away: dropping `chunks` closes the connection.
                return Ok(());
            }
        }
    }
    Ok(())
}

/// `types/voice.py`.
#[derive(Debug, Deserialize)]
struct VoiceDto {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    gender: Option<String>,
    #[serde(default)]
    preview_url: Option<String>,
}

/// `GET /v1/ai/voice/list` (with `owner` when configured), mapped to [`VoiceInfo`]: id, name,
/// gender, `preview_url` as the sample. LMNT voices are multilingual: no language is set.
pub async fn voices(
    http: &HttpClient,
    s: &Settings,
    key: &Secret,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let redactor = http.redactor().clone().with_secret(key);
    let mut url = format!("{}/v1/ai/voice/list", s.base_url);
    if let Some(o) = &s.voices_owner {
        url.push_str("?owner=");
        url.push_str(o);
    }
    let req = http
        .get(&url)
        .header(KEY_HEADER, key_header(key)?)
        .header(header::ACCEPT, "application/json");
    let resp = send(http, req, s.response_timeout, &redactor).await?;
    let mut chunks = resp.bytes_stream();
    let mut body = Vec::new();
    let read = async {
        while let Some(c) = chunks.next().await {
            let c = c.map_err(|e| map_reqwest_error(e, CONTEXT, &redactor))?;
            if body.len() + c.len() > MAX_VOICES_BODY {
                return Err(PluginError::Permanent(format!(
                    "{CONTEXT}: voice list exceeds {MAX_VOICES_BODY} bytes"
                )));
            }
            body.extend_from_slice(&c);
        }
        Ok(())
    };
    match tokio::time::timeout(s.response_timeout, read).await {
        Err(_) => {
            return Err(errors::timeout(
                "lmnt: voices",
                s.response_timeout,
                &redactor,
            ))
        }
        Ok(r) => r?,
    }
    let parsed: Vec<VoiceDto> = serde_json::from_slice(&body).map_err(|e| {
        errors::make(
            ErrorCategory::Permanent,
            format!(
                "{CONTEXT}: invalid voice list: {e}: {}",
                errors::excerpt(&body, 200)
            ),
            None,
            &redactor,
        )
    })?;
    Ok(parsed
        .into_iter()
        .map(|v| VoiceInfo {
            name: v.name.unwrap_or_else(|| v.id.clone()),
            id: v.id,
            sample: v.preview_url.unwrap_or_default(),
            accent: String::new(),
            gender: v.gender.unwrap_or_default(),
            language: String::new(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes() {
        let r = Redactor::new().with_secret(&Secret::new("lm-secret"));
        let h = HeaderMap::new();
        let e = error_from_parts(
            400,
            &h,
            br#"{"error":{"message":"Invalid voice","type":"invalid_request_error"}}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Config);
        assert!(
            e.to_string()
                .contains("Invalid voice (invalid_request_error)"),
            "{e}"
        );
        let e = error_from_parts(
            400,
            &h,
            br#"{"message":"text exceeds 5000 characters","type":"invalid_request_error"}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Permanent);
        let e = error_from_parts(401, &h, br#"{"error":"bad key lm-secret"}"#, &r);
        assert_eq!(e.category(), ErrorCategory::Auth);
        assert!(!e.to_string().contains("lm-secret"), "{e}");
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        match error_from_parts(429, &h, b"{}", &r) {
            PluginError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error_from_parts(502, &h, b"<html>", &r).category(),
            ErrorCategory::Transient
        );
    }
}
