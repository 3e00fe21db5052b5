//! The HTTP calls: `POST /v1/speech` (SynthesizeSpeech) streamed into the sink, and
//! `GET /v1/voices` (DescribeVoices), both SigV4-signed for service `polly`.
//!
//! Paths and methods from botocore `polly/2016-06-10/service-2.json` (`"requestUri":
//! "/v1/speech"`, POST; `"/v1/voices"`, GET with `NextToken` in the query); the response body of
//! SynthesizeSpeech is the audio itself (`"payload": "AudioStream"`, a streaming blob), with the
//! `Content-Type` header saying which (`audio/pcm`, `audio/mpeg`).

use super::messages;
use super::settings::{Plan, SynthesizeBody};
use crate::auth;
use std::time::Duration;
use waav_plugin_api::{AudioSink, ErrorCategory, PluginError, VoiceInfo};
use waav_provider_kit::aws::{AwsSigner, Payload};
use waav_provider_kit::errors;
use waav_provider_kit::http::audio::stream_into;
use waav_provider_kit::http::{map_reqwest_error, HttpClient, Method, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Names the provider in messages.
pub const CONTEXT: &str = "aws polly";
/// Largest voice listing page accepted.
const MAX_VOICES_BODY: usize = 4 << 20;
/// Most DescribeVoices pages followed.
const MAX_VOICE_PAGES: usize = 20;

/// RFC 3986 percent-encoding of everything but unreserved characters (SigV4's encoding).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A reqwest request for `method url` carrying the SigV4 headers (`authorization`,
/// `x-amz-date`, `x-amz-security-token` with temporary credentials) over the method, the URL,
/// `host`, `content-type` and the body's SHA-256.
pub fn signed(
    client: &HttpClient,
    signer: &AwsSigner,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> Result<RequestBuilder, PluginError> {
    let mut b = http::Request::builder().method(method.as_str()).uri(url);
    if body.is_some() {
        b = b.header(http::header::CONTENT_TYPE, "application/json");
    }
    let mut req = b.body(()).map_err(|e| {
        errors::make(
            ErrorCategory::Config,
            format!("{CONTEXT}: invalid request URL: {e}"),
            None,
            signer.redactor(),
        )
    })?;
    let payload = Payload::Bytes(body.as_deref().unwrap_or_default());
    signer.sign_request(&mut req, payload, auth::now())?;
    let mut out = client.request(method, url);
    for (name, value) in req.headers() {
        // reqwest writes `host` from the URL, as the signer derived it.
        if name == http::header::HOST {
            continue;
        }
        let mut value = value.clone();
        if name == http::header::AUTHORIZATION || name.as_str() == "x-amz-security-token" {
            value.set_sensitive(true);
        }
        out = out.header(name.clone(), value);
    }
    if let Some(body) = body {
        out = out.body(body);
    }
    Ok(out)
}

/// Sends `req`, bounding the wait for the response head (all attempts included). The kit retries
/// a refused connection, a 5xx, 408/504 or a short 429 before the head, within the client's
/// budget, but never sleeps past `timeout`: a 429 asking for longer comes back as RateLimited.
async fn send(
    client: &HttpClient,
    req: RequestBuilder,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Response, PluginError> {
    let deadline = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout_at(deadline, client.execute_within(req, deadline)).await {
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

/// A non-2xx response as a categorised error: the error name (`x-amzn-ErrorType` or the
/// body) decides the category where we know it, else the kit's status table; the message is
/// Polly's, redacted and bounded; `retry-after` is honoured when sent.
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
    let header = headers
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok());
    let name = messages::error_name(header, &body);
    let category = name
        .as_deref()
        .and_then(messages::error_category)
        .or_else(|| errors::status_category(status.as_u16()))
        .unwrap_or(ErrorCategory::Permanent);
    let mut msg = format!("{CONTEXT}: HTTP {}", status.as_u16());
    if let Some(n) = &name {
        msg.push_str(&format!(" {n}"));
    }
    let detail = messages::error_message(&body)
        .unwrap_or_else(|| errors::excerpt(&body, errors::BODY_EXCERPT_LIMIT));
    if !detail.is_empty() {
        msg.push_str(": ");
        msg.push_str(&errors::excerpt(
            detail.as_bytes(),
            errors::BODY_EXCERPT_LIMIT,
        ));
    }
    if let Some(id) = headers
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
    {
        msg.push_str(&format!(
            " (request {})",
            errors::excerpt(id.as_bytes(), 64)
        ));
    }
    errors::make(category, msg, errors::retry_after(&headers), redactor)
}

/// SynthesizeSpeech: streams the audio body into `out` as it arrives. Returns once the body
/// ended, or early (Ok) when the sink refuses audio: the response is dropped, which closes the
/// connection.
pub async fn synthesize(
    client: &HttpClient,
    signer: &AwsSigner,
    plan: &Plan,
    endpoint: &str,
    body: &SynthesizeBody,
    out: &AudioSink,
) -> Result<(), PluginError> {
    let redactor = signer.redactor();
    let url = format!("{endpoint}/v1/speech");
    let json = serde_json::to_vec(body)
        .map_err(|e| PluginError::Permanent(format!("{CONTEXT}: encoding the request: {e}")))?;
    let req = signed(client, signer, Method::POST, &url, Some(json))?;
    let timeout = plan.settings.read_timeout;
    let mut resp = send(client, req, timeout, redactor).await?;
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("json") || content_type.starts_with("text/") {
        // A 200 that is not audio (a proxy page, speech marks): never play it.
        let mut head = Vec::new();
        let read = async {
            while head.len() < 256 {
                match resp.chunk().await {
                    Ok(Some(c)) => head.extend_from_slice(&c),
                    _ => break,
                }
            }
        };
        let _ = tokio::time::timeout(timeout, read).await;
        return Err(errors::make(
            ErrorCategory::Permanent,
            format!(
                "{CONTEXT}: expected audio, got {content_type}: {}",
                errors::excerpt(&head, 200)
            ),
            None,
            redactor,
        ));
    }
    if let Some(n) = resp
        .headers()
        .get("x-amzn-requestcharacters")
        .and_then(|v| v.to_str().ok())
    {
        tracing::debug!(characters = n, "aws polly: synthesizing");
    }
    let context = format!("{CONTEXT}: reading audio");
    stream_into(resp, out, timeout, &context, redactor, Ok).await?;
    Ok(())
}

/// Reads a whole (bounded) body.
async fn body(
    mut resp: Response,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Vec<u8>, PluginError> {
    let mut body = Vec::new();
    let read = async {
        loop {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    body.extend_from_slice(&c);
                    if body.len() > MAX_VOICES_BODY {
                        return Err(errors::make(
                            ErrorCategory::Permanent,
                            format!("{CONTEXT}: voice listing exceeds {MAX_VOICES_BODY} bytes"),
                            None,
                            redactor,
                        ));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(map_reqwest_error(e, CONTEXT, redactor)),
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => Err(errors::timeout(
            &format!("{CONTEXT}: reading the voice listing"),
            timeout,
            redactor,
        )),
        Ok(r) => r.map(|()| body),
    }
}

/// DescribeVoices, every page (at most [`MAX_VOICE_PAGES`]).
pub async fn list_voices(
    client: &HttpClient,
    signer: &AwsSigner,
    endpoint: &str,
    timeout: Duration,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let redactor = signer.redactor();
    let mut voices = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_VOICE_PAGES {
        let url = match &token {
            None => format!("{endpoint}/v1/voices"),
            Some(t) => format!("{endpoint}/v1/voices?NextToken={}", encode(t)),
        };
        let req = signed(client, signer, Method::GET, &url, None)?;
        let resp = send(client, req, timeout, redactor).await?;
        let body = body(resp, timeout, redactor).await?;
        let page: messages::DescribeVoicesOutput = serde_json::from_slice(&body).map_err(|e| {
            errors::make(
                ErrorCategory::Permanent,
                format!(
                    "{CONTEXT}: invalid voice listing: {e}: {}",
                    errors::excerpt(&body, 120)
                ),
                None,
                redactor,
            )
        })?;
        voices.extend(page.voices.into_iter().map(VoiceInfo::from));
        match page.next_token.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(voices),
        }
    }
    tracing::debug!("aws polly: voice listing cut at {MAX_VOICE_PAGES} pages");
    Ok(voices)
}

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_like_sigv4() {
        assert_eq!(super::encode("a b/c=d~"), "a%20b%2Fc%3Dd~");
    }
}
