//! The HTTP calls (`rest-text-to-speech.md`, MicrosoftDocs/azure-ai-docs, checked):
//!
//! - `POST {root}/cognitiveservices/v1` with `Ocp-Apim-Subscription-Key`, `Content-Type:
//!   application/ssml+xml`, `X-Microsoft-OutputFormat` and `User-Agent` (required, fewer than
//!   255 characters); the body is the SSML document; a 200 carries the audio itself (no
//!   envelope), "played as it's transferred": each body chunk goes into the sink as it arrives.
//! - `GET {root}/cognitiveservices/voices/list` with the key header: a JSON array of voices
//!   with PascalCase keys (`ShortName`, `DisplayName`, `Gender`, `Locale`, `LocaleName`,
//!   `StyleList`, `SampleRateHertz` as a string, …).
//!
//! Status codes (the doc's tables): 400 (a parameter missing or invalid, "often a header that
//! is too long") and 415 (wrong `Content-Type`) are Config here (the text is escaped by us, so
//! a 400 is the voice, the format or the headers); 401 Auth; 429 RateLimited (`Retry-After`
//! honoured when sent: **UNCONFIRMED** that the service sends it); 502/503 Transient; others
//! per the kit's table. The error body "is usually empty or short text" (**UNCONFIRMED**
//! shape); the Cognitive Services gateway's JSON `{"error": {"code", "message"}}` is parsed when
//! it comes, else a bounded excerpt of the text is used.

use super::settings::{Transcode, WireFormat};
use crate::protocol::AUTH_KEY;
use bytes::Bytes;
use serde::Deserialize;
use std::time::Duration;
use waav_plugin_api::http;
use waav_plugin_api::{codec, AudioSink, ErrorCategory, PluginError, Secret, VoiceInfo};
use waav_provider_kit::errors;
use waav_provider_kit::http::audio::stream_into;
use waav_provider_kit::http::{map_reqwest_error, HttpClient, RequestBuilder, Response};
use waav_provider_kit::redact::Redactor;

/// Names the provider in messages.
pub const CONTEXT: &str = "azure tts";
/// The output format header.
pub const OUTPUT_FORMAT: &str = "X-Microsoft-OutputFormat";
/// The SSML content type.
pub const SSML: &str = "application/ssml+xml";
/// Largest voice listing accepted (the full listing is a few hundred KiB).
const MAX_VOICES_BODY: usize = 16 << 20;

/// The category of a non-success status.
pub fn category(status: u16) -> ErrorCategory {
    match status {
        400 | 415 => ErrorCategory::Config,
        s => errors::status_category(s).unwrap_or(ErrorCategory::Permanent),
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: Inner,
}

#[derive(Deserialize)]
struct Inner {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
struct Flat {
    #[serde(default, alias = "Message")]
    message: Option<String>,
}

/// The message of a JSON error body (`{"error": {"code", "message"}}` or `{"message"}`), if
/// the body is one.
pub fn error_message(body: &[u8]) -> Option<String> {
    if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) {
        let code = match error.code {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        return match (code, error.message) {
            (Some(c), Some(m)) => Some(format!("{c}: {m}")),
            (c, m) => m.or(c),
        };
    }
    serde_json::from_slice::<Flat>(body).ok()?.message
}

/// A non-2xx response as a categorised, redacted error with the service's message.
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
    let mut msg = format!(
        "{CONTEXT}: HTTP {} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    let detail = error_message(&body).unwrap_or_else(|| String::from_utf8_lossy(&body).into());
    let detail = errors::excerpt(detail.as_bytes(), errors::BODY_EXCERPT_LIMIT);
    if !detail.is_empty() {
        msg = format!("{}: {detail}", msg.trim_end());
    }
    errors::make(
        category(status.as_u16()),
        msg.trim_end(),
        errors::retry_after(&headers),
        redactor,
    )
}

/// Sends `req`, bounding the wait for the response head.
async fn send(
    client: &HttpClient,
    req: RequestBuilder,
    timeout: Duration,
    redactor: &Redactor,
) -> Result<Response, PluginError> {
    // The kit's retry never sleeps past this wait (a 429 asking for longer comes back at once).
    let until = tokio::time::Instant::now() + timeout;
    match tokio::time::timeout_at(until, client.execute_within(req, until)).await {
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

/// G.711 encoding of PCM16 LE that may arrive split mid-sample.
#[derive(Debug)]
pub struct G711 {
    kind: Transcode,
    carry: Option<u8>,
}

impl G711 {
    /// An encoder for `kind` (`Transcode::None` passes bytes through).
    pub fn new(kind: Transcode) -> Self {
        Self { kind, carry: None }
    }

    /// The bytes of `chunk` in the session's encoding.
    pub fn push(&mut self, chunk: Bytes) -> Bytes {
        let encode: fn(i16) -> u8 = match self.kind {
            Transcode::None => return chunk,
            Transcode::Mulaw => codec::mulaw_encode,
            Transcode::Alaw => codec::alaw_encode,
        };
        let mut out = Vec::with_capacity(chunk.len() / 2 + 1);
        let mut rest: &[u8] = &chunk;
        if let Some(lo) = self.carry.take() {
            match rest.split_first() {
                Some((&hi, tail)) => {
                    out.push(encode(i16::from_le_bytes([lo, hi])));
                    rest = tail;
                }
                None => {
                    self.carry = Some(lo);
                    return Bytes::new();
                }
            }
        }
        let mut pairs = rest.chunks_exact(2);
        out.extend(
            pairs
                .by_ref()
                .map(|p| encode(i16::from_le_bytes([p[0], p[1]]))),
        );
        self.carry = pairs.remainder().first().copied();
        Bytes::from(out)
    }
}

/// One synthesis: streams the audio body into `out` as it arrives. Returns once the body
/// ended, or early (Ok) when the sink refuses audio: the response is dropped, which closes
/// the connection.
#[allow(clippy::too_many_arguments)]
pub async fn synthesize(
    client: &HttpClient,
    url: &str,
    key: &Secret,
    user_agent: &str,
    format: WireFormat,
    ssml: String,
    timeout: Duration,
    out: &AudioSink,
) -> Result<(), PluginError> {
    let redactor = client.redactor().clone().with_secret(key);
    let mut key_value = http::HeaderValue::from_str(key.expose()).map_err(|_| {
        PluginError::Auth(format!(
            "{CONTEXT}: the API key is not a valid header value"
        ))
    })?;
    key_value.set_sensitive(true);
    let req = client
        .post(url)
        .header(AUTH_KEY, key_value)
        .header(http::header::CONTENT_TYPE, SSML)
        .header(OUTPUT_FORMAT, format.header)
        .header(http::header::USER_AGENT, user_agent)
        .body(ssml);
    let mut resp = send(client, req, timeout, &redactor).await?;
    let content_type = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.contains("json") || content_type.starts_with("text/") {
        // A 200 that is not audio (a proxy's page): never play it.
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
            &redactor,
        ));
    }
    let mut g711 = G711::new(format.transcode);
    let context = format!("{CONTEXT}: reading audio");
    stream_into(
        resp,
        out,
        timeout,
        &context,
        &redactor,
        |c| Ok(g711.push(c)),
    )
    .await?;
    Ok(())
}

/// One entry of the voice listing (every key optional in practice).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Voice {
    /// `Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)`.
    pub name: Option<String>,
    /// `Jenny`.
    pub display_name: Option<String>,
    /// The name in the voice's language.
    pub local_name: Option<String>,
    /// `en-US-JennyNeural`: what `<voice name>` takes.
    pub short_name: Option<String>,
    /// `Female`, `Male`, `Neutral`.
    pub gender: Option<String>,
    /// `en-US`.
    pub locale: Option<String>,
    /// `English (United States)`.
    pub locale_name: Option<String>,
    /// Styles for `mstts:express-as`.
    pub style_list: Vec<String>,
    /// Roles for `mstts:express-as`.
    pub role_play_list: Vec<String>,
    /// `Neural`.
    pub voice_type: Option<String>,
    /// `GA`, `Preview`, `Deprecated`.
    pub status: Option<String>,
}

impl From<Voice> for VoiceInfo {
    fn from(v: Voice) -> Self {
        let id = v.short_name.unwrap_or_default();
        VoiceInfo {
            name: v
                .display_name
                .or(v.local_name)
                .or(v.name)
                .unwrap_or_else(|| id.clone()),
            id,
            sample: String::new(),
            accent: v.locale_name.unwrap_or_default(),
            gender: v.gender.unwrap_or_default(),
            language: v.locale.unwrap_or_default(),
        }
    }
}

/// Parses a voice listing body.
pub fn parse_voices(body: &[u8]) -> Result<Vec<VoiceInfo>, String> {
    // Entries that are not objects of the expected shape are skipped, not fatal.
    let items: Vec<serde_json::Value> = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    Ok(items
        .into_iter()
        .filter_map(|v| serde_json::from_value::<Voice>(v).ok())
        .map(VoiceInfo::from)
        .filter(|v| !v.id.is_empty())
        .collect())
}

/// `GET voices/list`.
pub async fn list_voices(
    client: &HttpClient,
    url: &str,
    key: &Secret,
    user_agent: &str,
    timeout: Duration,
) -> Result<Vec<VoiceInfo>, PluginError> {
    let redactor = client.redactor().clone().with_secret(key);
    let mut key_value = http::HeaderValue::from_str(key.expose()).map_err(|_| {
        PluginError::Auth(format!(
            "{CONTEXT}: the API key is not a valid header value"
        ))
    })?;
    key_value.set_sensitive(true);
    let req = client
        .get(url)
        .header(AUTH_KEY, key_value)
        .header(http::header::USER_AGENT, user_agent);
    let mut resp = send(client, req, timeout, &redactor).await?;
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
                            &redactor,
                        ));
                    }
                }
                Ok(None) => return Ok(()),
                Err(e) => return Err(map_reqwest_error(e, CONTEXT, &redactor)),
            }
        }
    };
    match tokio::time::timeout(timeout, read).await {
        Err(_) => {
            return Err(errors::timeout(
                &format!("{CONTEXT}: reading the voice listing"),
                timeout,
                &redactor,
            ))
        }
        Ok(r) => r?,
    }
    parse_voices(&body).map_err(|e| {
        errors::make(
            ErrorCategory::Permanent,
            format!(
                "{CONTEXT}: invalid voice listing: {e}: {}",
                errors::excerpt(&body, 120)
            ),
            None,
            &redactor,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_across_split_samples() {
        let pcm: Vec<u8> = [1000i16, -2000, 3000, -4000, 5]
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect();
        let whole: Vec<u8> = G711::new(Transcode::Mulaw)
            .push(Bytes::from(pcm.clone()))
            .to_vec();
        assert_eq!(whole.len(), 5);
        for split in 1..4 {
            let mut enc = G711::new(Transcode::Mulaw);
            let mut got = Vec::new();
            for piece in pcm.chunks(split) {
                got.extend_from_slice(&enc.push(Bytes::copy_from_slice(piece)));
            }
            assert_eq!(got, whole, "split {split}");
        }
        assert_eq!(whole[0], codec::mulaw_encode(1000));
        let b = Bytes::from_static(b"abc");
        assert_eq!(G711::new(Transcode::None).push(b.clone()), b);
    }

    #[test]
    fn error_bodies_and_categories() {
        assert_eq!(
            error_message(br#"{"error":{"code":"401","message":"Access denied"}}"#).as_deref(),
            Some("401: Access denied")
        );
        assert_eq!(error_message(br#"{"Message":"x"}"#).as_deref(), Some("x"));
        assert_eq!(error_message(b"plain text"), None);
        assert_eq!(category(400), ErrorCategory::Config);
        assert_eq!(category(415), ErrorCategory::Config);
        assert_eq!(category(401), ErrorCategory::Auth);
        assert_eq!(category(429), ErrorCategory::RateLimited);
        assert_eq!(category(502), ErrorCategory::Transient);
        assert_eq!(category(503), ErrorCategory::Transient);
    }

    #[test]
    fn voices_map_and_skip_junk() {
        let body =
            br#"[{"Name":"Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)",
            "DisplayName":"Jenny","ShortName":"en-US-JennyNeural","Gender":"Female",
            "Locale":"en-US","LocaleName":"English (United States)","StyleList":["chat"],
            "SampleRateHertz":"24000","WordsPerMinute":"152"}, 7, {"DisplayName":"no id"}]"#;
        let v = parse_voices(body).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(
            (v[0].id.as_str(), v[0].name.as_str(), v[0].gender.as_str()),
            ("en-US-JennyNeural", "Jenny", "Female")
        );
        assert_eq!(v[0].accent, "English (United States)");
        assert!(parse_voices(b"{\"not\": \"a list\"}").is_err());
    }
}
