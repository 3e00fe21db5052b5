//! The HTTP paths: `POST /v0/tts/stream/file` (raw audio bytes, chunked, forwarded as they
//! arrive) and `GET /v0/tts/voices` (paged).
//!
//! Why `/stream/file` rather than `/stream/json`: both stream (hume-python-sdk
//! `tts/raw_client.py` `synthesize_file_streaming` reads `iter_bytes`,
//! `synthesize_json_streaming` reads `iter_lines` of `SnippetAudioChunk`/`TimestampMessage`),
//! but the file stream carries the audio itself, with no base64 (a third smaller) and no JSON
//! to parse; the JSON stream's only extra is timestamps, which the contract has no place for yet.
//!
//! Errors (`TTS_PROTOCOLS.md` §9 "Errors"; raw_client.py raises `UnprocessableEntityError`
//! with `HttpValidationError` for 422, `ApiError` with the JSON body otherwise;
//! `types/error_response.py` `{code?, error?, message?}`; the gateway's `{"message": …}`).

use super::settings::{Plan, Settings};
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use waav_plugin_api::http::{header, HeaderMap, HeaderValue};
use waav_plugin_api::{AudioSink, ErrorCategory, PluginError, Secret, SpeakRequest, VoiceInfo};
use waav_provider_kit::errors;
use waav_provider_kit::http::audio::stream_into;
use waav_provider_kit::http::{map_reqwest_error, HttpClient, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Names the provider in messages.
pub const CONTEXT: &str = "hume";
/// The auth header (core/client_wrapper.py).
pub const KEY_HEADER: &str = "X-Hume-Api-Key";
/// Most voice pages read (100 voices each).
const MAX_PAGES: u32 = 50;
/// Voices per page (return_paged_voices: page_size 1–100).
const PAGE_SIZE: u32 = 100;
/// Largest voice page accepted.
const MAX_PAGE_BYTES: usize = 4 << 20;

fn key_header(key: &Secret) -> Result<HeaderValue, PluginError> {
    let mut v = HeaderValue::from_str(key.expose())
        .map_err(|_| PluginError::Auth("hume: the API key is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The message of a Hume error body, whichever shape it has, and whether a validation error
/// points at the text (`loc` ending in `text`).
pub fn parse_error(body: &[u8]) -> (Option<String>, bool) {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        error: Option<serde_json::Value>,
        #[serde(default)]
        code: Option<serde_json::Value>,
        #[serde(default)]
        detail: Option<serde_json::Value>,
    }
    let Ok(l) = serde_json::from_slice::<Loose>(body) else {
        return (None, false);
    };
    let mut blames_text = false;
    let mut parts: Vec<String> = Vec::new();
    if let Some(m) = l.message.filter(|m| !m.trim().is_empty()) {
        parts.push(m);
    }
    if let Some(serde_json::Value::String(e)) = &l.error {
        if !parts.contains(e) {
            parts.push(e.clone());
        }
    }
    match &l.detail {
        Some(serde_json::Value::String(d)) => parts.push(d.clone()),
        Some(serde_json::Value::Array(items)) => {
            for item in items {
                let loc: Vec<String> = item["loc"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|x| match x {
                                serde_json::Value::String(s) => s.clone(),
                                other => other.to_string(),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                if loc.last().is_some_and(|l| l == "text") {
                    blames_text = true;
                }
                let msg = item["msg"].as_str().unwrap_or("invalid");
                parts.push(if loc.is_empty() {
                    msg.to_owned()
                } else {
                    format!("{}: {msg}", loc.join("."))
                });
            }
        }
        _ => {}
    }
    if let Some(c) = l.code.as_ref().and_then(|c| match c {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }) {
        parts.push(format!("(code {c})"));
    }
    let msg = parts.join("; ");
    ((!msg.is_empty()).then_some(msg), blames_text)
}

/// A non-2xx answer as a categorised error: the kit's table, with 400 and 422 as Config
/// (the request we built was refused: voice, version, format) unless the vendor blames the
/// text, which is Permanent for this request only.
pub fn error_from_parts(
    status: u16,
    headers: &HeaderMap,
    body: &[u8],
    redactor: &Redactor,
) -> PluginError {
    let (detail, blames_text) = parse_error(body);
    let mut category = errors::status_category(status).unwrap_or(ErrorCategory::Permanent);
    if status == 400 || status == 422 {
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
    let detail = detail.unwrap_or_else(|| errors::excerpt(body, errors::BODY_EXCERPT_LIMIT));
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
                "hume: waiting for the response",
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

/// Synthesises one request over `/v0/tts/stream/file`, forwarding each body chunk into `out`
/// as it arrives.
pub async fn synthesize(
    http: &HttpClient,
    s: &Settings,
    plan: &Plan,
    key: &Secret,
    request: SpeakRequest,
    out: AudioSink,
) -> Result<(), PluginError> {
    let redactor = http.redactor().clone().with_secret(key);
    let body = super::settings::body(plan, &request.text);
    let req = http
        .post(&format!("{}/v0/tts/stream/file", s.base_url))
        .header(KEY_HEADER, key_header(key)?)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    let resp = send(http, req, s.response_timeout, &redactor).await?;
    if let Some(id) = resp
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
    {
        tracing::debug!(request_id = id, id = request.id, "hume: synthesis started");
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/") {
        // A 200 that is not audio (a proxy's page, a JSON answer we did not ask for).
        return Err(errors::make(
            ErrorCategory::Permanent,
            format!("{CONTEXT}: expected audio, got {content_type}"),
            None,
            &redactor,
        ));
    }
    let context = format!("{CONTEXT}: request {} audio", request.id);
    stream_into(resp, &out, s.response_timeout, &context, &redactor, Ok).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    total_pages: u32,
    #[serde(default)]
    voices_page: Vec<VoiceDto>,
}

/// `ReturnVoice` (return_voice.py): `id`, `name`, `provider`, `compatible_octave_models`.
#[derive(Debug, Deserialize)]
struct VoiceDto {
    id: String,
    #[serde(default)]
    name: Option<String>,
}

fn query(pairs: &[(&str, String)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        q.append_pair(k, v);
    }
    q.finish()
}

/// `GET /v0/tts/voices?provider=…&page_number=…&page_size=100` for each provider (HUME_AI, and
/// CUSTOM_VOICE when configured), every page, mapped to [`VoiceInfo`] with the voice's id (the
/// id works for either provider in `utterances[].voice`).
pub async fn voices(
    http: &HttpClient,
    s: &Settings,
    key: &Secret,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let redactor = http.redactor().clone().with_secret(key);
    let mut providers = vec!["HUME_AI"];
    if s.include_custom_voices {
        providers.push("CUSTOM_VOICE");
    }
    let mut out: Vec<VoiceInfo> = Vec::new();
    for provider in providers {
        let mut page = 0u32;
        loop {
            let url = format!(
                "{}/v0/tts/voices?{}",
                s.base_url,
                query(&[
                    ("provider", provider.to_owned()),
                    ("page_number", page.to_string()),
                    ("page_size", PAGE_SIZE.to_string()),
                ])
            );
            let req = http
                .get(&url)
                .header(KEY_HEADER, key_header(key)?)
                .header(header::ACCEPT, "application/json");
            let resp = send(http, req, s.response_timeout, &redactor).await?;
            let body = read_bounded(resp, s.response_timeout, &redactor).await?;
            let parsed: Page = serde_json::from_slice(&body).map_err(|e| {
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
            let empty = parsed.voices_page.is_empty();
            for v in parsed.voices_page {
                if out.iter().any(|o| o.id == v.id) {
                    continue;
                }
                out.push(VoiceInfo {
                    name: v.name.clone().unwrap_or_else(|| v.id.clone()),
                    id: v.id,
                    sample: String::new(),
                    accent: String::new(),
                    gender: String::new(),
                    language: String::new(),
                });
            }
            page += 1;
            if empty || page >= parsed.total_pages || page >= MAX_PAGES {
                break;
            }
        }
    }
    Ok(out)
}

async fn read_bounded(
    resp: Response,
    wait: Duration,
    redactor: &Redactor,
) -> Result<Vec<u8>, PluginError> {
    let mut chunks = resp.bytes_stream();
    let mut body = Vec::new();
    let read = async {
        while let Some(c) = chunks.next().await {
            let c = c.map_err(|e| map_reqwest_error(e, CONTEXT, redactor))?;
            if body.len() + c.len() > MAX_PAGE_BYTES {
                return Err(PluginError::Permanent(format!(
                    "{CONTEXT}: voice page exceeds {MAX_PAGE_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&c);
        }
        Ok(())
    };
    match tokio::time::timeout(wait, read).await {
        Err(_) => Err(errors::timeout("hume: voices", wait, redactor)),
        Ok(r) => r.map(|()| body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shapes() {
        let r = Redactor::new().with_secret(&Secret::new("hk-secret"));
        let h = HeaderMap::new();
        let v = br#"{"detail":[{"loc":["body","utterances",0,"text"],"msg":"too long","type":"value_error"}]}"#;
        let e = error_from_parts(422, &h, v, &r);
        assert_eq!(e.category(), ErrorCategory::Permanent);
        assert!(
            e.to_string().contains("body.utterances.0.text: too long"),
            "{e}"
        );
        let v = br#"{"detail":[{"loc":["body","version"],"msg":"bad","type":"x"}]}"#;
        assert_eq!(
            error_from_parts(422, &h, v, &r).category(),
            ErrorCategory::Config
        );
        let e = error_from_parts(
            400,
            &h,
            br#"{"code":"E0100","error":"Bad voice","message":"Voice not found"}"#,
            &r,
        );
        assert_eq!(e.category(), ErrorCategory::Config);
        assert!(
            e.to_string()
                .contains("Voice not found; Bad voice; (code E0100)"),
            "{e}"
        );
        let e = error_from_parts(401, &h, br#"{"message":"Invalid key hk-secret"}"#, &r);
        assert_eq!(e.category(), ErrorCategory::Auth);
        assert!(!e.to_string().contains("hk-secret"), "{e}");
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("4"));
        match error_from_parts(429, &h, br#"{"message":"API rate limit exceeded"}"#, &r) {
            PluginError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(4)))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            error_from_parts(503, &h, b"<html>", &r).category(),
            ErrorCategory::Transient
        );
    }
}
