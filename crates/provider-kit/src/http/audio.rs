//! Streaming an HTTP TTS response into the host's [`AudioSink`]: the loop every HTTP TTS
//! provider needs, so each provider keeps only its request and error shapes.

use super::map_reqwest_error;
use crate::errors;
use crate::redact::Redactor;
use bytes::Bytes;
use futures::StreamExt;
use reqwest::Response;
use std::time::Duration;
use waav_plugin_api::{AudioSink, ErrorCategory, PluginError};

/// How a streamed response ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamEnd {
    /// The body ended: all audio was handed over.
    Complete,
    /// The sink refused (the request was cancelled or the host went away); the body was dropped,
    /// which closes the connection.
    Stopped,
}

/// Refuses a successful response whose body is not audio: vendors answer some failures with
/// 200 and a JSON or text body, which must never be played.
pub fn expect_audio(
    resp: &Response,
    context: &str,
    redactor: &Redactor,
) -> Result<(), PluginError> {
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/json") || content_type.starts_with("text/") {
        return Err(errors::make(
            ErrorCategory::Permanent,
            format!("{context}: expected audio, got {content_type}"),
            None,
            redactor,
        ));
    }
    Ok(())
}

/// Forwards `resp`'s body into `out` chunk by chunk as it arrives (never buffering the
/// utterance), each read bounded by `read_timeout`. `map` may transform each chunk (strip a WAV
/// header, swap byte order); an empty result is skipped.
pub async fn stream_into(
    resp: Response,
    out: &AudioSink,
    read_timeout: Duration,
    context: &str,
    redactor: &Redactor,
    mut map: impl FnMut(Bytes) -> Result<Bytes, PluginError>,
) -> Result<StreamEnd, PluginError> {
    let mut body = resp.bytes_stream();
    loop {
        let chunk = match tokio::time::timeout(read_timeout, body.next()).await {
            Err(_) => return Err(errors::timeout(context, read_timeout, redactor)),
            Ok(None) => return Ok(StreamEnd::Complete),
            Ok(Some(Err(e))) => return Err(map_reqwest_error(e, context, redactor)),
            Ok(Some(Ok(c))) => map(c)?,
        };
        if chunk.is_empty() {
            continue;
        }
        if out.send(chunk).await.is_err() {
            return Ok(StreamEnd::Stopped);
        }
    }
}
