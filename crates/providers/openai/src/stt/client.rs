//! One transcription request: the multipart form, the response (JSON, verbose JSON or SSE),
//! and its mapping onto transcripts.
//!
//! Wire shapes (`STT_PROTOCOLS.md` §9a, §10; openai-python `types/audio/`
//! `transcription_create_params.py`, `transcription.py`, `transcription_verbose.py`,
//! `transcription_word.py`, `transcription_text_delta_event.py`,
//! `transcription_text_done_event.py`; list fields are sent with brackets, `include[]`,
//! `timestamp_granularities[]`, as `_base_client.py` encodes multipart forms with
//! `array_format="brackets"`):
//! - request: `multipart/form-data` with `file` (a WAV we build), `model`, `language`,
//!   `prompt`, `temperature`, `response_format` (`json`, or `verbose_json` for whisper models
//!   with `timestamp_granularities[]=word` and `=segment`), `include[]=logprobs` (json and
//!   gpt-4o models), `stream=true` (gpt-4o models);
//! - `json`: `{"text", "logprobs"?: [{token, logprob, bytes}], "usage"?}`;
//! - `verbose_json`: `{"language", "duration", "text", "segments"?: [{…, avg_logprob,
//!   no_speech_prob}], "words"?: [{word, start, end}]}`, times in seconds;
//! - SSE: `data: {"type":"transcript.text.delta","delta":…}` repeated, then
//!   `data: {"type":"transcript.text.done","text":…,"logprobs"?,"usage"?}`; a trailing
//!   `data: [DONE]` (UNCONFIRMED for this endpoint; the SDK's stream reader stops on it) ends
//!   the stream too.

use super::segmenter::Utterance;
use super::settings::{is_whisper, Flavor, Settings};
use crate::common::{self, Subject};
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::mpsc;
use waav_plugin_api::codec::wav_header;
use waav_plugin_api::{ErrorCategory, PluginError, Secret, Transcript, Word};
use waav_provider_kit::errors;
use waav_provider_kit::http::{sse, HttpClient};
use waav_provider_kit::redact::Redactor;

/// Largest JSON response accepted.
const MAX_JSON_BODY: usize = 4 << 20;
/// SSE bounds.
const MAX_SSE_LINE: usize = 1 << 20;
const MAX_SSE_EVENT: usize = 1 << 20;

/// What a request reports, in order: interims (streaming only), then one final or a failure.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The text so far.
    Interim(Transcript),
    /// The utterance's transcript.
    Final(Transcript),
    /// The request failed.
    Failed(PluginError),
}

/// A multipart form under construction.
#[derive(Debug)]
pub struct Form {
    boundary: String,
    body: BytesMut,
}

impl Form {
    /// A form whose boundary does not occur in `payload`.
    pub fn new(payload: &[u8], seed: u64) -> Self {
        let mut n = seed;
        loop {
            // splitmix64: a cheap, well-spread sequence of candidates.
            n = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = n;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            let boundary = format!("waav-{z:016x}{:016x}", z.rotate_left(17) ^ seed);
            if !contains(payload, boundary.as_bytes()) {
                return Self {
                    boundary,
                    body: BytesMut::with_capacity(payload.len() + 1024),
                };
            }
        }
    }

    /// The `Content-Type` header value.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// Adds a text field.
    pub fn text(&mut self, name: &str, value: &str) {
        self.body.put_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        self.body.put_slice(value.as_bytes());
        self.body.put_slice(b"\r\n");
    }

    /// Adds a file field from parts (written one after the other).
    pub fn file(&mut self, name: &str, filename: &str, content_type: &str, parts: &[&[u8]]) {
        self.body.put_slice(
            format!(
                "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: {content_type}\r\n\r\n",
                self.boundary
            )
            .as_bytes(),
        );
        for p in parts {
            self.body.put_slice(p);
        }
        self.body.put_slice(b"\r\n");
    }

    /// Closes the form and returns the body.
    pub fn finish(mut self) -> Bytes {
        self.body
            .put_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        self.body.freeze()
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Everything a session's requests share.
#[derive(Debug, Clone)]
pub struct Client {
    /// The pooled HTTP client.
    pub http: HttpClient,
    /// The provider.
    pub flavor: Flavor,
    /// Settings.
    pub settings: Arc<Settings>,
    /// The API key.
    pub key: Secret,
    /// The model.
    pub model: String,
    /// `language`, if any.
    pub language: Option<String>,
    /// Stream sample rate.
    pub sample_rate: u32,
    /// Redacts the key.
    pub redactor: Redactor,
}

impl Client {
    fn url(&self) -> String {
        format!("{}/v1/audio/transcriptions", self.settings.base_url)
    }

    /// Whether requests stream SSE.
    pub fn streaming(&self) -> bool {
        self.settings.stream && self.flavor.streams(&self.model)
    }

    fn verbose(&self) -> bool {
        self.settings.word_timestamps && is_whisper(&self.model)
    }

    /// The multipart form for `pcm`.
    pub fn form(&self, pcm: &[u8], seed: u64) -> Form {
        let header = wav_header(
            self.sample_rate,
            1,
            u32::try_from(pcm.len()).unwrap_or(u32::MAX),
        );
        let mut f = Form::new(pcm, seed);
        f.file("file", "audio.wav", "audio/wav", &[&header, pcm]);
        f.text("model", &self.model);
        if let Some(l) = &self.language {
            f.text("language", l);
        }
        if let Some(p) = &self.settings.prompt {
            f.text("prompt", p);
        }
        if let Some(t) = self.settings.temperature {
            f.text("temperature", &t.to_string());
        }
        if self.verbose() {
            f.text("response_format", "verbose_json");
            f.text("timestamp_granularities[]", "word");
            f.text("timestamp_granularities[]", "segment");
        } else {
            f.text("response_format", "json");
            if self.settings.logprobs && self.flavor.logprobs(&self.model) {
                f.text("include[]", "logprobs");
            }
        }
        if self.streaming() {
            f.text("stream", "true");
        }
        f
    }

    /// Transcribes `utt`, reporting into `tx` (interims with `try_send`: a busy receiver
    /// loses interims, never the final). Returns when done or when `tx` is closed.
    pub async fn transcribe(&self, utt: &Utterance, seq: u64, tx: &mpsc::Sender<Outcome>) {
        let outcome = match self.run(utt, seq, tx).await {
            Ok(t) => Outcome::Final(t),
            Err(e) => Outcome::Failed(e),
        };
        let _ = tx.send(outcome).await;
    }

    async fn run(
        &self,
        utt: &Utterance,
        seq: u64,
        tx: &mpsc::Sender<Outcome>,
    ) -> Result<Transcript, PluginError> {
        let ctx = self.flavor.context;
        let form = self.form(&utt.pcm, seq ^ utt.pcm.len() as u64);
        let content_type = form.content_type();
        let req = self
            .settings
            .account
            .apply(self.http.post(&self.url()), &self.key)
            .header("Content-Type", content_type)
            .body(form.finish());
        let wait = self.settings.request_timeout;
        // The kit retries before the response head (the form is in memory, so it can be sent
        // again); a billing 429 has no retry-after and is not (see `common::http_client`).
        let resp = common::send(&self.http, req, wait, Subject::Audio, ctx, &self.redactor).await?;
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let speech_final = utt.cut.speech_final();
        if ct.starts_with("text/event-stream") {
            let events = sse::events(
                self.http.body_stream(resp),
                MAX_SSE_LINE,
                MAX_SSE_EVENT,
                self.redactor.clone(),
            );
            return self.read_sse(events, utt, speech_final, tx).await;
        }
        let mut body = Vec::new();
        let mut stream = self.http.body_stream(resp);
        let read = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                if body.len() + chunk.len() > MAX_JSON_BODY {
                    return Err(
                        self.permanent(format!("response body exceeds {MAX_JSON_BODY} bytes"))
                    );
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(wait, read).await {
            Err(_) => {
                return Err(errors::timeout(
                    &format!("{ctx}: reading the transcript"),
                    wait,
                    &self.redactor,
                ))
            }
            Ok(r) => r?,
        }
        let parsed: Response = serde_json::from_slice(&body).map_err(|e| {
            self.permanent(format!(
                "invalid transcript JSON: {e}: {}",
                errors::excerpt(&body, 200)
            ))
        })?;
        Ok(parsed.into_transcript(utt.start_secs, speech_final))
    }

    async fn read_sse(
        &self,
        events: impl futures::Stream<Item = Result<sse::SseEvent, PluginError>>,
        utt: &Utterance,
        speech_final: bool,
        tx: &mpsc::Sender<Outcome>,
    ) -> Result<Transcript, PluginError> {
        let ctx = self.flavor.context;
        let wait = self.settings.request_timeout;
        futures::pin_mut!(events);
        let mut text = String::new();
        loop {
            let ev = match tokio::time::timeout(wait, events.next()).await {
                Err(_) => {
                    return Err(errors::timeout(
                        &format!("{ctx}: waiting for transcript events"),
                        wait,
                        &self.redactor,
                    ))
                }
                Ok(None) => {
                    return Err(errors::make(
                        ErrorCategory::Transient,
                        format!("{ctx}: the event stream ended before transcript.text.done"),
                        None,
                        &self.redactor,
                    ))
                }
                Ok(Some(ev)) => ev?,
            };
            if ev.data.trim() == "[DONE]" {
                continue; // the end marker; the stream ends next
            }
            let msg: StreamEvent = match serde_json::from_str(&ev.data) {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "{ctx}: skipping an unreadable event");
                    continue;
                }
            };
            if let Some(err) = msg.error {
                let detail = err.message.unwrap_or_else(|| "stream error".to_owned());
                return Err(errors::make(
                    ErrorCategory::Transient,
                    format!("{ctx}: {detail}"),
                    None,
                    &self.redactor,
                ));
            }
            match msg.kind.as_str() {
                "transcript.text.delta" => {
                    text.push_str(msg.delta.as_deref().unwrap_or(""));
                    let trimmed = text.trim();
                    if !trimmed.is_empty() {
                        let t = Transcript::interim(trimmed, logprob_confidence(&[]));
                        let _ = tx.try_send(Outcome::Interim(t));
                    }
                }
                "transcript.text.done" => {
                    let done = Response {
                        text: msg.text.unwrap_or(text),
                        logprobs: msg.logprobs,
                        ..Response::default()
                    };
                    return Ok(done.into_transcript(utt.start_secs, speech_final));
                }
                other => tracing::debug!(kind = other, "{ctx}: ignoring event"),
            }
        }
    }

    fn permanent(&self, msg: String) -> PluginError {
        errors::make(
            ErrorCategory::Permanent,
            format!("{}: {msg}", self.flavor.context),
            None,
            &self.redactor,
        )
    }
}

/// A `json` or `verbose_json` transcription body (unknown fields ignored).
#[derive(Debug, Default, Deserialize)]
pub struct Response {
    /// The text.
    #[serde(default)]
    pub text: String,
    /// Token log probabilities (json + `include[]=logprobs`).
    #[serde(default)]
    pub logprobs: Option<Vec<Logprob>>,
    /// Detected language (verbose_json; whisper-1 names it, e.g. `english`).
    #[serde(default)]
    pub language: Option<String>,
    /// Words with times (verbose_json + word granularity).
    #[serde(default)]
    pub words: Option<Vec<WireWord>>,
    /// Segments (verbose_json).
    #[serde(default)]
    pub segments: Option<Vec<Segment>>,
}

/// One token's log probability.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct Logprob {
    /// The log probability.
    #[serde(default)]
    pub logprob: Option<f64>,
}

/// A timed word.
#[derive(Debug, Deserialize)]
pub struct WireWord {
    /// The word.
    #[serde(default)]
    pub word: String,
    /// Start (s, from the file start).
    #[serde(default)]
    pub start: f64,
    /// End (s).
    #[serde(default)]
    pub end: f64,
}

/// A verbose segment (only the confidence-related fields are read).
#[derive(Debug, Deserialize)]
pub struct Segment {
    /// Mean token log probability.
    #[serde(default)]
    pub avg_logprob: Option<f64>,
}

/// An SSE event body.
#[derive(Debug, Deserialize)]
struct StreamEvent {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    delta: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    logprobs: Option<Vec<Logprob>>,
    #[serde(default)]
    error: Option<common::ErrorBody>,
}

/// `exp(mean logprob)` in 0–1, or 0 when there are none (the vendor reported no confidence).
fn logprob_confidence(lps: &[f64]) -> f32 {
    let finite: Vec<f64> = lps.iter().copied().filter(|l| l.is_finite()).collect();
    if finite.is_empty() {
        return 0.0;
    }
    let mean = finite.iter().sum::<f64>() / finite.len() as f64;
    (mean.exp() as f32).clamp(0.0, 1.0)
}

impl Response {
    /// The final transcript; word times are moved onto the stream's timeline by `offset` s.
    pub fn into_transcript(self, offset: f64, speech_final: bool) -> Transcript {
        let lps: Vec<f64> = match (&self.logprobs, &self.segments) {
            (Some(l), _) if !l.is_empty() => l.iter().filter_map(|l| l.logprob).collect(),
            (_, Some(s)) => s.iter().filter_map(|s| s.avg_logprob).collect(),
            _ => Vec::new(),
        };
        let confidence = logprob_confidence(&lps);
        let words = self
            .words
            .unwrap_or_default()
            .into_iter()
            .filter(|w| w.start.is_finite() && w.end.is_finite())
            .map(|w| Word {
                word: w.word.trim().to_owned(),
                start: offset + w.start.max(0.0),
                end: offset + w.end.max(w.start).max(0.0),
                confidence,
                speaker: None,
            })
            .collect();
        Transcript {
            text: self.text.trim().to_owned(),
            is_final: true,
            is_speech_final: speech_final,
            confidence,
            words,
            language: self.language.filter(|l| !l.is_empty()),
            speaker: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_shape() {
        let payload = b"--waav-abc\r\n";
        let mut f = Form::new(payload, 1);
        assert!(!contains(payload, f.boundary.as_bytes()));
        f.text("model", "whisper-1");
        f.file("file", "a.wav", "audio/wav", &[b"RIFF", b"data"]);
        let ct = f.content_type();
        let b = String::from_utf8(f.finish().to_vec()).unwrap();
        let boundary = ct.split("boundary=").nth(1).unwrap();
        assert!(b.starts_with(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        )));
        assert!(b.contains("filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFFdata\r\n"));
        assert!(b.ends_with(&format!("--{boundary}--\r\n")));
    }

    #[test]
    fn verbose_words_are_offset_and_confidence_comes_from_logprobs() {
        let body = r#"{"language":"english","duration":1.0,"text":" hello world ",
            "segments":[{"id":0,"avg_logprob":-0.1,"no_speech_prob":0.01}],
            "words":[{"word":"hello","start":0.1,"end":0.4},{"word":"world","start":0.5,"end":0.9}],
            "extra": 1}"#;
        let r: Response = serde_json::from_str(body).unwrap();
        let t = r.into_transcript(2.0, true);
        assert_eq!(t.text, "hello world");
        assert!(t.is_final && t.is_speech_final);
        assert_eq!(t.words.len(), 2);
        assert!((t.words[1].start - 2.5).abs() < 1e-9);
        assert!((t.confidence - (-0.1f64).exp() as f32).abs() < 1e-6);
        assert_eq!(t.language.as_deref(), Some("english"));
        let r: Response =
            serde_json::from_str(r#"{"text":"hi","logprobs":[{"token":"hi","logprob":0.0}]}"#)
                .unwrap();
        assert_eq!(r.into_transcript(0.0, false).confidence, 1.0);
        let r: Response = serde_json::from_str(r#"{"text":"hi"}"#).unwrap();
        assert_eq!(r.into_transcript(0.0, false).confidence, 0.0);
    }
}
