//! The REST side: `POST /tts/bytes` (one request → the audio as a streamed body) and
//! `GET /voices` (paginated listing).
//!
//! Endpoints as in TTS_PROTOCOLS.md §5 and the SDK 2.0.17 clients (`tts/client.py` `bytes`,
//! `voices/client.py` `list`: `limit` 1–100, `starting_after`, response
//! `{"data": [...], "has_more": bool, "next_page": id|null}`, `voices/types/voice.py`).
//! Headers: `Cartesia-Version`, and `X-API-Key` or `Authorization: Bearer` (see
//! [`AuthScheme`]).

use super::messages;
use super::options::{self, AuthScheme, Settings};
use bytes::Bytes;
use futures::StreamExt;
use serde::Deserialize;
use std::time::Duration;
use waav_plugin_api::{
    AudioSink, ErrorCategory, PluginError, Secret, SpeakRequest, TtsSessionConfig, VoiceInfo,
};
use waav_provider_kit::errors;
use waav_provider_kit::http::{HttpClient, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Voices per page (the documented maximum).
const PAGE: usize = 100;
/// Pages fetched at most (10 000 voices): a bound against a cursor that never ends.
const MAX_PAGES: usize = 100;
/// Largest voices page accepted.
const MAX_PAGE_BYTES: usize = 8 << 20;

fn with_auth(req: RequestBuilder, s: &Settings, key: &Secret) -> RequestBuilder {
    let req = req.header("Cartesia-Version", s.version.as_str());
    match s.auth {
        AuthScheme::ApiKey => req.header("X-API-Key", key.expose()),
        AuthScheme::Bearer => req.header("Authorization", format!("Bearer {}", key.expose())),
    }
}

/// Sends `req` within `deadline`; a non-2xx status becomes the vendor's categorised error.
async fn send(
    http: &HttpClient,
    req: RequestBuilder,
    deadline: Duration,
    what: &str,
    redactor: &Redactor,
) -> Result<Response, PluginError> {
    // The kit's retry never sleeps past this wait (a 429 asking for longer comes back at once).
    let until = tokio::time::Instant::now() + deadline;
    let resp = match tokio::time::timeout_at(until, http.execute_within(req, until)).await {
        Err(_) => {
            return Err(errors::timeout(
                &format!("cartesia: {what}"),
                deadline,
                redactor,
            ))
        }
        Ok(Err(e)) => return Err(redactor.redact_error(e)),
        Ok(Ok(r)) => r,
    };
    if resp.status().is_success() {
        return Ok(resp);
    }
    Err(error_from(resp, deadline, redactor).await)
}

/// The error for a non-success response, from at most a bounded piece of its body.
async fn error_from(mut resp: Response, deadline: Duration, redactor: &Redactor) -> PluginError {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = Vec::new();
    let read = async {
        while body.len() <= errors::BODY_EXCERPT_LIMIT {
            match resp.chunk().await {
                Ok(Some(c)) => body.extend_from_slice(&c),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(deadline, read).await;
    let text = messages::rest_error_text(&body);
    messages::categorise(Some(status), Some(&headers), &text, redactor)
}

/// Synthesises one request over `POST /tts/bytes`, forwarding body chunks as they arrive.
pub async fn synthesize(
    http: &HttpClient,
    s: &Settings,
    cfg: &TtsSessionConfig,
    key: &Secret,
    request: SpeakRequest,
    out: AudioSink,
) -> Result<(), PluginError> {
    if request.text.trim().is_empty() {
        // Cartesia rejects an empty transcript; there is nothing to say.
        return Ok(());
    }
    let redactor = Redactor::new().with_secret(key);
    let body = options::generation_body(s, cfg, &request.text)?;
    let body = serde_json::to_vec(&body)
        .map_err(|e| PluginError::Permanent(format!("cartesia: encoding the request: {e}")))?;
    let url = format!("{}/tts/bytes", s.base_url);
    let req = with_auth(http.post(&url), s, key)
        .header("Content-Type", "application/json")
        .body(body);
    let deadline = s.connect_timeout + s.response_timeout;
    let resp = send(http, req, deadline, "POST /tts/bytes", &redactor).await?;
    // A 200 that is JSON or text is an error report, not audio (never play it).
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/") {
        let e = error_from(resp, s.response_timeout, &redactor).await;
        return Err(errors::make(
            ErrorCategory::Permanent,
            format!("cartesia: /tts/bytes answered {content_type} instead of audio: {e}"),
            None,
            &redactor,
        ));
    }
    let mut body = http.body_stream(resp);
    let mut total = 0usize;
    loop {
        let next = match tokio::time::timeout(s.response_timeout, body.next()).await {
            Err(_) => {
                return Err(errors::timeout(
                    "cartesia: /tts/bytes body stalled",
                    s.response_timeout,
                    &redactor,
                ))
            }
            Ok(n) => n,
        };
        match next {
            None => break,
            Some(Err(e)) => return Err(redactor.redact_error(e)),
            Some(Ok(chunk)) => {
                total += chunk.len();
                if out.send(chunk).await.is_err() {
                    // Cancelled or the host is gone: dropping the body closes the connection.
                    tracing::debug!(id = request.id, "cartesia: request stopped by the host");
                    return Ok(());
                }
            }
        }
    }
    if total == 0 {
        tracing::debug!(id = request.id, "cartesia: /tts/bytes returned no audio");
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(untagged)]
enum VoicesPage {
    Paged {
        data: Vec<RawVoice>,
        #[serde(default)]
        has_more: Option<bool>,
        #[serde(default)]
        next_page: Option<String>,
    },
    /// API version 2024-06-10 returned a plain array.
    Plain(Vec<RawVoice>),
}

#[derive(Deserialize)]
struct RawVoice {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    gender: Option<String>,
    #[serde(default)]
    accent: Option<String>,
    #[serde(default)]
    preview_file_url: Option<String>,
}

impl From<RawVoice> for VoiceInfo {
    fn from(v: RawVoice) -> Self {
        VoiceInfo {
            name: v.name.unwrap_or_else(|| v.id.clone()),
            id: v.id,
            sample: v
                .preview_file_url
                .filter(|u| !u.is_empty())
                .or(v.description)
                .unwrap_or_default(),
            accent: v.accent.unwrap_or_default(),
            gender: v.gender.unwrap_or_default(),
            language: v.language.unwrap_or_default(),
        }
    }
}

/// Every voice the key can use, following `starting_after` while `has_more` (or, for older
/// versions, `next_page`) says there are more.
pub async fn list_voices(
    http: &HttpClient,
    s: &Settings,
    key: &Secret,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let redactor = Redactor::new().with_secret(key);
    let deadline = s.connect_timeout + s.response_timeout;
    let mut out: Vec<VoiceInfo> = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut url = format!("{}/voices?limit={PAGE}", s.base_url);
        if let Some(a) = &after {
            let enc: String = form_urlencoded::byte_serialize(a.as_bytes()).collect();
            url.push_str("&starting_after=");
            url.push_str(&enc);
        }
        let req = with_auth(http.get(&url), s, key);
        let resp = send(http, req, deadline, "GET /voices", &redactor).await?;
        let body = read_bounded(http, resp, deadline, &redactor).await?;
        let page: VoicesPage = serde_json::from_slice(&body).map_err(|e| {
            errors::make(
                ErrorCategory::Permanent,
                format!(
                    "cartesia: GET /voices: unexpected response: {e}: {}",
                    errors::excerpt(&body, 200)
                ),
                None,
                &redactor,
            )
        })?;
        let (voices, more, next) = match page {
            VoicesPage::Paged {
                data,
                has_more,
                next_page,
            } => (data, has_more, next_page),
            VoicesPage::Plain(v) => (v, Some(false), None),
        };
        let last = voices.last().map(|v| v.id.clone());
        let n = voices.len();
        out.extend(voices.into_iter().map(VoiceInfo::from));
        let more = more.unwrap_or(next.is_some()) && n > 0;
        if !more {
            return Ok(out);
        }
        let cursor = last.or(next);
        if cursor.is_none() || cursor == after {
            return Ok(out);
        }
        after = cursor;
    }
    tracing::warn!(
        voices = out.len(),
        "cartesia: voice listing cut at {MAX_PAGES} pages"
    );
    Ok(out)
}

async fn read_bounded(
    http: &HttpClient,
    resp: Response,
    deadline: Duration,
    redactor: &Redactor,
) -> Result<Bytes, PluginError> {
    let mut body = http.body_stream(resp);
    let mut out = bytes::BytesMut::new();
    let read = async {
        while let Some(chunk) = body.next().await {
            let chunk = chunk?;
            if out.len() + chunk.len() > MAX_PAGE_BYTES {
                return Err(PluginError::Permanent(format!(
                    "cartesia: GET /voices: page exceeds {MAX_PAGE_BYTES} bytes"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(deadline, read).await {
        Err(_) => Err(errors::timeout(
            "cartesia: GET /voices body",
            deadline,
            redactor,
        )),
        Ok(Err(e)) => Err(redactor.redact_error(e)),
        Ok(Ok(())) => Ok(out.freeze()),
    }
}
