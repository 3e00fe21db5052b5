//! The HTTP paths: `POST /api/v2/tts/stream` (raw audio bytes over chunked HTTP, forwarded as
//! they arrive; docs.play.ht "HTTP Streaming Endpoints": headers `AUTHORIZATION: <key>`,
//! `X-USER-ID: <user id>`, `accept` an audio type, which answers 200 with the bytes, whereas
//! `application/json` would answer 201 with a link) and `GET /api/v2/voices` (prebuilt voices)
//! plus `GET /api/v2/cloned-voices` when configured (JSON arrays; their shape is UNCONFIRMED:
//! `id`, `name`, `sample`, `accent`, `gender`, `language`, `language_code`, … are read when
//! present).
//!
//! Errors: a JSON body like `{"error_message": "…", "error_id": "…"}` (UNCONFIRMED); `message`
//! and `error` keys are read too.

use super::settings::{self, Plan, Settings};
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use waav_plugin_api::http::{header, HeaderMap, HeaderValue};
use waav_plugin_api::{AudioSink, ErrorCategory, PluginError, Secret, SpeakRequest, VoiceInfo};
use waav_provider_kit::errors;
use waav_provider_kit::http::audio::{stream_into, StreamEnd};
use waav_provider_kit::http::{map_reqwest_error, HttpClient, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Names the provider in messages.
pub const CONTEXT: &str = "playht";
/// The auth header (docs: `AUTHORIZATION: <API key>`; pyht's lease flow sends `Authorization`).
pub const KEY_HEADER: &str = "AUTHORIZATION";
/// The account header.
pub const USER_HEADER: &str = "X-USER-ID";
/// Largest voice listing accepted.
const MAX_VOICES_BODY: usize = 8 << 20;

fn key_header(key: &Secret) -> Result<HeaderValue, PluginError> {
    let mut v = HeaderValue::from_str(key.expose())
        .map_err(|_| PluginError::Auth("playht: the API key is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The message and id of a Play.ht error body, whichever of the accepted shapes it has.
pub fn parse_error(body: &[u8]) -> Option<(String, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = v["error_id"].as_str().map(str::to_owned);
    for key in ["error_message", "message"] {
        if let Some(m) = v[key].as_str() {
            return Some((m.to_owned(), id));
        }
    }
    match &v["error"] {
        serde_json::Value::String(s) => Some((s.clone(), id)),
        o @ serde_json::Value::Object(_) => o["message"].as_str().map(|m| (m.to_owned(), id)),
        _ => None,
    }
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
                "playht: waiting for the response",
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

fn user_header(user: &str) -> Result<HeaderValue, PluginError> {
    HeaderValue::from_str(user)
        .map_err(|_| PluginError::Config("playht: the user id is not a valid header value".into()))
}

/// Synthesises one request, forwarding each body chunk into `out` as it arrives. Texts past the
/// engine's limit become consecutive requests.
pub async fn synthesize(
    http: &HttpClient,
    s: &Settings,
    plan: &Plan,
    key: &Secret,
    user: &str,
    request: SpeakRequest,
    out: AudioSink,
) -> Result<(), PluginError> {
    let redactor = http.redactor().clone().with_secret(key);
    let url = format!("{}/api/v2/tts/stream", s.base_url);
    for piece in settings::split_text(&request.text, settings::max_chars(&plan.voice_engine)) {
        let req = http
            .post(&url)
            .header(KEY_HEADER, key_header(key)?)
            .header(USER_HEADER, user_header(user)?)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, plan.accept)
            .body(settings::body(plan, piece).to_string());
        let resp = send(http, req, s.response_timeout, &redactor).await?;
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if resp.status().as_u16() != 200
            || content_type.starts_with("application/json")
            || content_type.starts_with("text/")
        {
            // A 201 with a link (the JSON answer), or anything else that is not audio.
            return Err(errors::make(
                ErrorCategory::Permanent,
                format!(
                    "{CONTEXT}: expected audio, got HTTP {} {content_type}",
                    resp.status().as_u16()
                ),
                None,
                &redactor,
            ));
        }
        let context = format!("{CONTEXT}: request {} audio", request.id);
        if stream_into(resp, &out, s.response_timeout, &context, &redactor, Ok).await?
            == StreamEnd::Stopped
        {
            return Ok(());
        }
    }
    Ok(())
}

/// A voice of `/api/v2/voices` or `/api/v2/cloned-voices` (fields as far as known).
#[derive(Debug, Deserialize)]
struct VoiceDto {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    sample: Option<String>,
    #[serde(default)]
    accent: Option<String>,
    #[serde(default)]
    gender: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    language_code: Option<String>,
}

async fn list(
    http: &HttpClient,
    s: &Settings,
    key: &Secret,
    user: &str,
    path: &str,
    redactor: &Redactor,
) -> Result<Vec<VoiceDto>, PluginError> {
    let req = http
        .get(&format!("{}{path}", s.base_url))
        .header(KEY_HEADER, key_header(key)?)
        .header(USER_HEADER, user_header(user)?)
        .header(header::ACCEPT, "application/json");
    let resp = send(http, req, s.response_timeout, redactor).await?;
    let mut chunks = resp.bytes_stream();
    let mut body = Vec::new();
    let read = async {
        while let Some(c) = chunks.next().await {
            let c = c.map_err(|e| map_reqwest_error(e, CONTEXT, redactor))?;
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
                "playht: voices",
                s.response_timeout,
                redactor,
            ))
        }
        Ok(r) => r?,
    }
    serde_json::from_slice(&body).map_err(|e| {
        errors::make(
            ErrorCategory::Permanent,
            format!(
                "{CONTEXT}: invalid voice list: {e}: {}",
                errors::excerpt(&body, 200)
            ),
            None,
            redactor,
        )
    })
}

/// `GET /api/v2/voices` (and `/api/v2/cloned-voices` when configured), mapped to [`VoiceInfo`]:
/// id, name, sample URL, accent, gender, and `language_code` (else `language`).
pub async fn voices(
    http: &HttpClient,
    s: &Settings,
    key: &Secret,
    user: &str,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let redactor = http.redactor().clone().with_secret(key);
    let mut all = list(http, s, key, user, "/api/v2/voices", &redactor).await?;
    if s.include_cloned_voices {
        all.extend(list(http, s, key, user, "/api/v2/cloned-voices", &redactor).await?);
    }
    Ok(all
        .into_iter()
        .map(|v| VoiceInfo {
            name: v.name.unwrap_or_else(|| v.id.clone()),
            id: v.id,
            sample: v.sample.unwrap_or_default(),
            accent: v.accent.unwrap_or_default(),
            gender: v.gender.unwrap_or_default(),
            language: v.language_code.or(v.language).unwrap_or_default(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes() {
        let r = Redactor::new().with_secret(&Secret::new("ph-secret"));
        let h = HeaderMap::new();
        let e = error_from_parts(
            400,
            &h,
            br#"{"error_message":"Invalid voice","error_id":"BAD_REQUEST"}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Config);
        assert!(e.to_string().contains("Invalid voice (BAD_REQUEST)"), "{e}");
        let e = error_from_parts(
            400,
            &h,
            br#"{"error_message":"text is longer than 2000 characters"}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Permanent);
        let e = error_from_parts(401, &h, br#"{"message":"bad key ph-secret"}"#, &r);
        assert_eq!(e.category(), ErrorCategory::Auth);
        assert!(!e.to_string().contains("ph-secret"), "{e}");
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("2"));
        match error_from_parts(429, &h, b"{}", &r) {
            PluginError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(2)))
            }
            other => panic!("{other:?}"),
        }
    }
}
