//! A fake of the OpenAI audio API and Groq's OpenAI-compatible copy of it, on 127.0.0.1, one
//! port for all endpoints:
//!
//! - `POST /v1/audio/transcriptions` (OpenAI) and `POST /openai/v1/audio/transcriptions`
//!   (Groq; configure the Groq plugin with [`OpenAiFake::groq_base_url`]): `Authorization:
//!   Bearer <key>` (each API has its own key), a `multipart/form-data` body parsed and recorded
//!   part by part (`STT_PROTOCOLS.md` §9a, §10; openai-python
//!   `types/audio/transcription_create_params.py`, groq-python's copy). It checks the model
//!   against the API's list, the file's extension, a WAV file's header (PCM16, its `data`
//!   length equal to the bytes sent), `response_format` (gpt-4o models take `json` only),
//!   `timestamp_granularities[]` (needs `verbose_json`), `include[]=logprobs` (json + gpt-4o),
//!   a minimum length of 0.1 s (`audio_too_short`) and a size limit (413). Errors use the
//!   OpenAI envelope `{"error": {"message", "type", "param", "code"}}`.
//!   The transcript is deterministic: one word from [`VOCABULARY`] per
//!   [`FakeOptions::ms_per_word`] of non-silent audio (10 ms frames whose peak exceeds 500),
//!   answered as `json` (`text`, `usage`, `logprobs` when asked), `verbose_json` (`language`,
//!   `duration`, `segments` with `avg_logprob`, `words` with times) or, with `stream=true` on a
//!   gpt-4o model (OpenAI only; whisper and Groq ignore it), SSE: one
//!   `transcript.text.delta` per word then `transcript.text.done`.
//! - `POST /v1/audio/speech` (`TTS_PROTOCOLS.md` §6; `speech_create_params.py`): JSON body
//!   checked (`model`, `input` ≤ 4096 characters, `voice` a built-in name or `{"id": …}`,
//!   `response_format`, `speed` 0.25–4, no `instructions` for tts-1 models), answered with a
//!   chunked body: `pcm` is a 440 Hz tone at 24 kHz PCM16 LE mono of
//!   [`FakeOptions::ms_per_char`] per character divided by `speed`; `wav` the same with a
//!   header; mp3/opus/aac/flac stand-in bytes with the format's magic.
//!
//! Everything received is recorded ([`TranscriptionLog`], [`SpeechLog`]) and [`Fault`] makes
//! the fake misbehave, on every request, on one ([`FakeOptions::fault_on`]) or on the first few
//! ([`FakeOptions::fault_first`]).

use crate::fakes::{HttpFake, SeenRequest};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Words the fake "hears", in order.
pub const VOCABULARY: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];
/// OpenAI transcription models (openai-python `types/audio_model.py`).
pub const OPENAI_STT_MODELS: &[&str] = &[
    "whisper-1",
    "gpt-transcribe",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "gpt-4o-mini-transcribe-2025-12-15",
    "gpt-4o-transcribe-diarize",
];
/// Groq transcription models (groq-python `transcription_create_params.py`).
pub const GROQ_STT_MODELS: &[&str] = &["whisper-large-v3", "whisper-large-v3-turbo"];
/// Speech models (`speech_model.py`).
pub const TTS_MODELS: &[&str] = &[
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "gpt-4o-mini-tts-2025-12-15",
];
/// Built-in voices (`speech_create_params.py`).
pub const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer", "verse",
    "marin", "cedar",
];
/// Speech `response_format` values.
pub const SPEECH_FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];
/// Upload formats, by file extension.
pub const FILE_FORMATS: &[&str] = &[
    "flac", "mp3", "mp4", "mpeg", "mpga", "m4a", "ogg", "wav", "webm",
];

/// Which API an endpoint belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/...`.
    OpenAi,
    /// `/openai/v1/...`.
    Groq,
}

/// How the fake misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// Answers `status` with `body` (and `retry-after: <secs>` when set), after the auth check.
    Status {
        /// HTTP status.
        status: u16,
        /// Response body (an OpenAI error envelope, or anything).
        body: String,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
    },
    /// Transcriptions: a 200 JSON body that does not parse; with SSE, junk events (non-JSON
    /// data, an unknown type, an array) before each real one. Speech: a 200
    /// `application/json` body instead of audio.
    Garbage,
    /// The body stops with an error after this many chunks (speech) or events (SSE); a JSON
    /// transcript is cut in the middle.
    Truncate {
        /// Chunks or events sent first.
        after_chunks: usize,
    },
    /// The response head is sent, then nothing.
    Silent,
    /// After the first speech chunk or SSE delta, waits for [`OpenAiFake::release`].
    HoldAfterFirstChunk,
    /// Transcription request 0 is answered only after request 1 was (bounded at 10 s).
    AnswerSecondFirst,
}

impl Fault {
    /// The 429 of an account out of credits (OpenAI's error-codes guide, "429 - You exceeded
    /// your current quota, please check your plan and billing details"), in the shape the API
    /// sends: `type` and `code` `insufficient_quota`.
    pub fn insufficient_quota() -> Self {
        Self::Status {
            status: 429,
            body: json!({"error": {
                "message": "You exceeded your current quota, please check your plan and billing details.",
                "type": "insufficient_quota",
                "param": null,
                "code": "insufficient_quota",
            }})
            .to_string(),
            retry_after: None,
        }
    }
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The key `/v1/...` accepts.
    pub api_key: String,
    /// The key `/openai/v1/...` (Groq) accepts.
    pub groq_api_key: String,
    /// Misbehaviour.
    pub fault: Fault,
    /// Apply the fault only to the request with this index (per endpoint kind: the n-th
    /// transcription, or the n-th speech request); `None`: every request.
    pub fault_on: Option<usize>,
    /// Apply the fault only to the first this many requests (per endpoint kind, as
    /// `fault_on`): a fault that outlasts the client's retries, then clears; `None`: no limit.
    pub fault_first: Option<usize>,
    /// Non-silent audio per transcribed word.
    pub ms_per_word: u32,
    /// Speech tone per character (before `speed`).
    pub ms_per_char: u32,
    /// Bytes per speech chunk.
    pub chunk_bytes: usize,
    /// Pause between speech chunks and SSE events.
    pub chunk_delay: Duration,
    /// Largest upload accepted (413 beyond).
    pub max_file_bytes: usize,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            api_key: "test-key".to_owned(),
            groq_api_key: "groq-test-key".to_owned(),
            fault: Fault::None,
            fault_on: None,
            fault_first: None,
            ms_per_word: 250,
            ms_per_char: 20,
            chunk_bytes: 960,
            chunk_delay: Duration::from_millis(2),
            max_file_bytes: 25 << 20,
        }
    }
}

impl FakeOptions {
    /// Options accepting `api_key` for OpenAI (Groq keeps `groq-test-key`).
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            ..Self::default()
        }
    }

    /// Sets the Groq key.
    pub fn groq_key(mut self, key: impl Into<String>) -> Self {
        self.groq_api_key = key.into();
        self
    }

    /// Sets the fault (for every request).
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// Applies the fault to request `index` only.
    pub fn fault_on(mut self, index: usize) -> Self {
        self.fault_on = Some(index);
        self
    }

    /// Applies the fault to the first `n` requests only.
    pub fn fault_first(mut self, n: usize) -> Self {
        self.fault_first = Some(n);
        self
    }

    /// Sets the audio per word.
    pub fn ms_per_word(mut self, ms: u32) -> Self {
        self.ms_per_word = ms;
        self
    }

    /// Sets the speech chunk size.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n;
        self
    }

    /// Sets the upload limit.
    pub fn max_file_bytes(mut self, n: usize) -> Self {
        self.max_file_bytes = n;
        self
    }
}

/// One part of a multipart form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The field name.
    pub name: String,
    /// The file name, for file parts.
    pub filename: Option<String>,
    /// The part's `Content-Type`, if given.
    pub content_type: Option<String>,
    /// The content.
    pub data: Vec<u8>,
}

/// A WAV upload's header and data, as parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WavInfo {
    /// `fmt ` format tag (1 = PCM).
    pub format: u16,
    /// Channels.
    pub channels: u16,
    /// Sample rate.
    pub sample_rate: u32,
    /// Byte rate.
    pub byte_rate: u32,
    /// Bits per sample.
    pub bits: u16,
    /// The RIFF size field.
    pub riff_len: u32,
    /// The `data` size field.
    pub data_len: u32,
    /// The samples after the header.
    pub pcm: Vec<u8>,
}

/// One transcription request as received and answered.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscriptionLog {
    /// Which API.
    pub api: Api,
    /// Path and headers.
    pub request: SeenRequest,
    /// The form parts, in order.
    pub parts: Vec<Part>,
    /// The uploaded WAV, if it parsed.
    pub wav: Option<WavInfo>,
    /// The status answered (0 until answered).
    pub status: u16,
    /// The transcript produced.
    pub text: String,
    /// Answered with SSE.
    pub streamed: bool,
    /// SSE events sent.
    pub events_sent: usize,
    /// Position among answered transcription requests (0 = first answered).
    pub answered: Option<usize>,
}

impl TranscriptionLog {
    /// The first text field `name`.
    pub fn field(&self, name: &str) -> Option<String> {
        self.fields(name).into_iter().next()
    }

    /// Every text field `name`, in order.
    pub fn fields(&self, name: &str) -> Vec<String> {
        self.parts
            .iter()
            .filter(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .collect()
    }

    /// The `file` part.
    pub fn file(&self) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == "file")
    }
}

/// One speech request as received and answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechLog {
    /// Path and headers.
    pub request: SeenRequest,
    /// The JSON body (`Value::Null` if it did not parse).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// Audio chunks sent.
    pub chunks_sent: usize,
    /// Audio bytes sent.
    pub bytes_sent: usize,
    /// The whole audio was sent.
    pub completed: bool,
    /// The client went away before the audio ended.
    pub client_gone: bool,
}

#[derive(Debug)]
struct Shared {
    opts: FakeOptions,
    transcriptions: Mutex<Vec<Arc<Mutex<TranscriptionLog>>>>,
    speeches: Mutex<Vec<Arc<Mutex<SpeechLog>>>>,
    answered: Mutex<usize>,
    answered_tx: watch::Sender<usize>,
    release: watch::Sender<bool>,
}

impl Shared {
    fn fault_for(&self, index: usize) -> Fault {
        match (self.opts.fault_on, self.opts.fault_first) {
            (Some(i), _) if i != index => Fault::None,
            (_, Some(n)) if index >= n => Fault::None,
            _ => self.opts.fault.clone(),
        }
    }

    fn mark_answered(&self, log: &Mutex<TranscriptionLog>) {
        let mut n = self.answered.lock().expect("answered lock");
        log.lock().expect("log lock").answered = Some(*n);
        *n += 1;
        self.answered_tx.send_replace(*n);
    }
}

/// The fake service. Stops when dropped.
#[derive(Debug)]
pub struct OpenAiFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl OpenAiFake {
    /// Starts a fake accepting `api_key` (OpenAI) and `groq-test-key` (Groq), behaving.
    pub async fn start(api_key: impl Into<String>) -> Self {
        Self::with_options(FakeOptions::new(api_key)).await
    }

    /// Starts a fake with `opts`.
    pub async fn with_options(opts: FakeOptions) -> Self {
        let shared = Arc::new(Shared {
            opts,
            transcriptions: Mutex::default(),
            speeches: Mutex::default(),
            answered: Mutex::new(0),
            answered_tx: watch::channel(0).0,
            release: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/v1/audio/transcriptions", post(transcribe_openai))
            .route("/openai/v1/audio/transcriptions", post(transcribe_groq))
            .route("/v1/audio/speech", post(speech))
            .layer(DefaultBodyLimit::max(128 << 20))
            .with_state(shared.clone());
        let http = HttpFake::start(router).await;
        Self { http, shared }
    }

    /// `http://127.0.0.1:port`: the OpenAI `base_url`.
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// `http://127.0.0.1:port/openai`: the Groq `base_url`.
    pub fn groq_base_url(&self) -> String {
        format!("{}/openai", self.http.base_url())
    }

    /// Every transcription request so far (both APIs), in arrival order.
    pub fn transcriptions(&self) -> Vec<TranscriptionLog> {
        let logs = self.shared.transcriptions.lock().expect("lock");
        logs.iter()
            .map(|l| l.lock().expect("log lock").clone())
            .collect()
    }

    /// Every speech request so far, in arrival order.
    pub fn speeches(&self) -> Vec<SpeechLog> {
        let logs = self.shared.speeches.lock().expect("lock");
        logs.iter()
            .map(|l| l.lock().expect("log lock").clone())
            .collect()
    }

    /// Lets [`Fault::HoldAfterFirstChunk`] continue (for every held and later response).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Waits (polling, at most `timeout`) until speech request `index` exists and `pred` holds.
    pub async fn wait_for_speech(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SpeechLog) -> bool,
    ) -> Option<SpeechLog> {
        poll(timeout, || {
            self.speeches().into_iter().nth(index).filter(&pred)
        })
        .await
    }

    /// Waits (polling, at most `timeout`) until transcription request `index` exists and
    /// `pred` holds.
    pub async fn wait_for_transcription(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&TranscriptionLog) -> bool,
    ) -> Option<TranscriptionLog> {
        poll(timeout, || {
            self.transcriptions().into_iter().nth(index).filter(&pred)
        })
        .await
    }
}

async fn poll<T>(timeout: Duration, f: impl Fn() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn seen(uri: &Uri, headers: &HeaderMap) -> SeenRequest {
    SeenRequest {
        uri: uri.to_string(),
        headers: headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
    }
}

/// An OpenAI error envelope answer.
fn error(
    status: u16,
    message: &str,
    kind: &str,
    param: Option<&str>,
    code: Option<&str>,
) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn invalid(message: &str, param: Option<&str>, code: Option<&str>) -> Response {
    error(400, message, "invalid_request_error", param, code)
}

fn check_auth(headers: &HeaderMap, key: &str) -> Option<Response> {
    let got = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match got.strip_prefix("Bearer ") {
        Some(k) if k == key => None,
        Some(_) => Some(error(
            401,
            "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )),
        None => Some(error(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            "invalid_request_error",
            None,
            None,
        )),
    }
}

fn fault_status(fault: &Fault) -> Option<Response> {
    let Fault::Status {
        status,
        body,
        retry_after,
    } = fault
    else {
        return None;
    };
    let mut r = (
        StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.clone(),
    )
        .into_response();
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(*s));
    }
    Some(r)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || hay.len() < needle.len() {
        return None;
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses a `multipart/form-data` body (RFC 7578) with `boundary`.
pub fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    let delim = format!("--{boundary}");
    let start = find(body, delim.as_bytes()).ok_or("no opening boundary")?;
    let mut rest = &body[start + delim.len()..];
    let next_delim = format!("\r\n--{boundary}");
    let mut parts = Vec::new();
    loop {
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        rest = rest
            .strip_prefix(b"\r\n")
            .ok_or("boundary not followed by CRLF")?;
        let head_end = find(rest, b"\r\n\r\n").ok_or("part headers not terminated")?;
        let head = std::str::from_utf8(&rest[..head_end]).map_err(|_| "part headers not UTF-8")?;
        rest = &rest[head_end + 4..];
        let end = find(rest, next_delim.as_bytes()).ok_or("part not terminated by a boundary")?;
        let data = rest[..end].to_vec();
        rest = &rest[end + next_delim.len()..];
        let mut name = None;
        let mut filename = None;
        let mut content_type = None;
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(':').ok_or("malformed part header")?;
            match k.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    let mut items = v.split(';').map(str::trim);
                    if items.next() != Some("form-data") {
                        return Err("content-disposition is not form-data".into());
                    }
                    for item in items {
                        if let Some((ik, iv)) = item.split_once('=') {
                            let iv = iv.trim_matches('"').to_owned();
                            match ik.trim() {
                                "name" => name = Some(iv),
                                "filename" => filename = Some(iv),
                                _ => {}
                            }
                        }
                    }
                }
                "content-type" => content_type = Some(v.trim().to_owned()),
                _ => {}
            }
        }
        parts.push(Part {
            name: name.ok_or("part without a name")?,
            filename,
            content_type,
            data,
        });
    }
}

/// Parses a 44-byte-header PCM WAV file (RIFF, `fmt `, `data`).
pub fn parse_wav(file: &[u8]) -> Result<WavInfo, String> {
    if file.len() < 44 || &file[0..4] != b"RIFF" || &file[8..12] != b"WAVE" {
        return Err("not a RIFF/WAVE file".into());
    }
    if &file[12..16] != b"fmt " || &file[36..40] != b"data" {
        return Err("expected a fmt chunk then a data chunk".into());
    }
    let u16at = |i: usize| u16::from_le_bytes([file[i], file[i + 1]]);
    let u32at = |i: usize| u32::from_le_bytes([file[i], file[i + 1], file[i + 2], file[i + 3]]);
    Ok(WavInfo {
        riff_len: u32at(4),
        format: u16at(20),
        channels: u16at(22),
        sample_rate: u32at(24),
        byte_rate: u32at(28),
        bits: u16at(34),
        data_len: u32at(40),
        pcm: file[44..].to_vec(),
    })
}

/// Non-silent 10 ms frames of PCM16 mono: (speech ms, offset of the first speech frame in ms).
fn speech_ms(pcm: &[u8], rate: u32) -> (u32, u32) {
    let frame = (rate as usize / 100).max(1) * 2;
    let mut speech = 0;
    let mut first = None;
    for (i, f) in pcm.chunks(frame).enumerate() {
        let peak = f
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]).unsigned_abs())
            .max()
            .unwrap_or(0);
        if peak > 500 {
            speech += 10;
            first.get_or_insert(i as u32 * 10);
        }
    }
    (speech, first.unwrap_or(0))
}

/// The words the fake hears in `pcm`.
pub fn transcript_words(pcm: &[u8], rate: u32, ms_per_word: u32) -> Vec<&'static str> {
    let (speech, _) = speech_ms(pcm, rate);
    let n = speech.div_ceil(ms_per_word.max(1)) as usize;
    (0..n).map(|i| VOCABULARY[i % VOCABULARY.len()]).collect()
}

fn language_name(code: Option<&str>) -> &'static str {
    match code {
        Some("de") => "german",
        Some("fr") => "french",
        Some("es") => "spanish",
        _ => "english",
    }
}

async fn transcribe_openai(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    transcribe(st, Api::OpenAi, uri, headers, body).await
}

async fn transcribe_groq(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    transcribe(st, Api::Groq, uri, headers, body).await
}

async fn transcribe(
    st: Arc<Shared>,
    api: Api,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let log = Arc::new(Mutex::new(TranscriptionLog {
        api,
        request: seen(&uri, &headers),
        parts: Vec::new(),
        wav: None,
        status: 0,
        text: String::new(),
        streamed: false,
        events_sent: 0,
        answered: None,
    }));
    let index = {
        let mut all = st.transcriptions.lock().expect("lock");
        all.push(log.clone());
        all.len() - 1
    };
    let response = transcribe_inner(&st, api, index, &headers, &body, &log).await;
    {
        let mut l = log.lock().expect("log lock");
        l.status = response.status().as_u16();
    }
    if !log.lock().expect("log lock").streamed {
        st.mark_answered(&log);
    }
    response
}

async fn transcribe_inner(
    st: &Arc<Shared>,
    api: Api,
    index: usize,
    headers: &HeaderMap,
    body: &[u8],
    log: &Arc<Mutex<TranscriptionLog>>,
) -> Response {
    let key = match api {
        Api::OpenAi => &st.opts.api_key,
        Api::Groq => &st.opts.groq_api_key,
    };
    if let Some(r) = check_auth(headers, key) {
        return r;
    }
    let fault = st.fault_for(index);
    if let Some(r) = fault_status(&fault) {
        return r;
    }
    if fault == Fault::AnswerSecondFirst && index == 0 {
        let mut rx = st.answered_tx.subscribe();
        let second_answered = |st: &Shared| {
            st.transcriptions
                .lock()
                .expect("lock")
                .get(1)
                .is_some_and(|l| l.lock().expect("log lock").answered.is_some())
        };
        let wait = async {
            while !second_answered(st) {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(10), wait).await;
    }
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(boundary) = ct
        .strip_prefix("multipart/form-data")
        .and_then(|r| r.split("boundary=").nth(1))
        .map(|b| {
            b.split(';')
                .next()
                .unwrap_or("")
                .trim_matches('"')
                .to_owned()
        })
    else {
        return invalid("Expected multipart/form-data with a boundary.", None, None);
    };
    let parts = match parse_multipart(body, &boundary) {
        Ok(p) => p,
        Err(e) => return invalid(&format!("Could not parse multipart form: {e}"), None, None),
    };
    log.lock().expect("log lock").parts = parts.clone();
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
    };
    let fields = |name: &str| -> Vec<String> {
        parts
            .iter()
            .filter(|p| p.name == name)
            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
            .collect()
    };
    let Some(model) = field("model") else {
        return invalid("you must provide a model parameter", Some("model"), None);
    };
    let models = match api {
        Api::OpenAi => OPENAI_STT_MODELS,
        Api::Groq => GROQ_STT_MODELS,
    };
    if !models.contains(&model.as_str()) {
        return invalid(
            &format!("The model `{model}` does not exist or you do not have access to it."),
            Some("model"),
            Some("model_not_found"),
        );
    }
    let Some(file) = parts
        .iter()
        .find(|p| p.name == "file" && p.filename.is_some())
    else {
        return invalid("you must provide a file", Some("file"), None);
    };
    if file.data.len() > st.opts.max_file_bytes {
        return error(
            413,
            &format!(
                "Maximum content size limit ({}) exceeded",
                st.opts.max_file_bytes
            ),
            "invalid_request_error",
            Some("file"),
            None,
        );
    }
    let filename = file.filename.clone().unwrap_or_default();
    let ext = filename
        .rsplit('.')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    if !filename.contains('.') || !FILE_FORMATS.contains(&ext.as_str()) {
        return invalid(
            &format!("Invalid file format. Supported formats: {FILE_FORMATS:?}"),
            Some("file"),
            Some("invalid_value"),
        );
    }
    let (pcm, rate) = if ext == "wav" {
        let wav = match parse_wav(&file.data) {
            Ok(w) => w,
            Err(e) => {
                return invalid(
                    &format!(
                        "The audio file could not be decoded or its format is not supported: {e}"
                    ),
                    Some("file"),
                    Some("invalid_value"),
                )
            }
        };
        log.lock().expect("log lock").wav = Some(wav.clone());
        let consistent = wav.format == 1
            && wav.bits == 16
            && wav.channels >= 1
            && wav.sample_rate > 0
            && wav.data_len as usize == wav.pcm.len()
            && wav.riff_len == wav.data_len + 36
            && wav.byte_rate == wav.sample_rate * u32::from(wav.channels) * 2;
        if !consistent {
            return invalid(
                "The audio file could not be decoded or its format is not supported.",
                Some("file"),
                Some("invalid_value"),
            );
        }
        (wav.pcm, wav.sample_rate)
    } else {
        (Vec::new(), 16_000)
    };
    if ext == "wav" && pcm.len() < (rate as usize / 10) * 2 {
        return invalid(
            "Audio file is too short. Minimum audio length is 0.1 seconds.",
            Some("file"),
            Some("audio_too_short"),
        );
    }
    let whisper = model.contains("whisper");
    let format = field("response_format").unwrap_or_else(|| "json".to_owned());
    let allowed: &[&str] = if whisper {
        &["json", "text", "srt", "verbose_json", "vtt"]
    } else {
        &["json"]
    };
    if !allowed.contains(&format.as_str()) {
        return invalid(
            &format!("response_format '{format}' is not compatible with model '{model}'. Use 'json' or 'text' instead."),
            Some("response_format"),
            Some("unsupported_value"),
        );
    }
    let granularities = fields("timestamp_granularities[]");
    if !granularities.is_empty() && format != "verbose_json" {
        return invalid(
            "timestamp_granularities requires response_format verbose_json",
            Some("timestamp_granularities"),
            None,
        );
    }
    if granularities.iter().any(|g| g != "word" && g != "segment") {
        return invalid(
            "Invalid timestamp granularity",
            Some("timestamp_granularities"),
            None,
        );
    }
    let include = fields("include[]");
    let logprobs = include.iter().any(|i| i == "logprobs");
    if logprobs && (format != "json" || !model.starts_with("gpt-4o")) {
        return invalid(
            "logprobs are only supported with json and gpt-4o transcribe models",
            Some("include"),
            None,
        );
    }
    if let Some(t) = field("temperature") {
        if !t.parse::<f64>().is_ok_and(|t| (0.0..=1.0).contains(&t)) {
            return invalid(
                "temperature must be between 0 and 1",
                Some("temperature"),
                None,
            );
        }
    }
    let words = transcript_words(&pcm, rate, st.opts.ms_per_word);
    let text = words.join(" ");
    log.lock().expect("log lock").text = text.clone();
    let secs = pcm.len() as f64 / 2.0 / f64::from(rate.max(1));
    let stream = field("stream").as_deref() == Some("true") && api == Api::OpenAi && !whisper;
    if stream {
        log.lock().expect("log lock").streamed = true;
        return sse_answer(st.clone(), log.clone(), fault, words, logprobs);
    }
    let mut answer = match format.as_str() {
        "verbose_json" => {
            let (_, first) = speech_ms(&pcm, rate);
            let word_items: Vec<Value> = words
                .iter()
                .enumerate()
                .map(|(i, w)| {
                    let start = f64::from(first + i as u32 * st.opts.ms_per_word) / 1000.0;
                    json!({"word": w, "start": start, "end": start + f64::from(st.opts.ms_per_word) * 0.8 / 1000.0})
                })
                .collect();
            let mut v = json!({
                "task": "transcribe",
                "language": language_name(field("language").as_deref()),
                "duration": secs,
                "text": text,
                "segments": [{
                    "id": 0, "seek": 0, "start": 0.0, "end": secs, "text": text,
                    "tokens": [50364, 1044], "temperature": 0.0, "avg_logprob": -0.05,
                    "compression_ratio": 1.0, "no_speech_prob": 0.01
                }],
                "usage": {"type": "duration", "seconds": secs.ceil()}
            });
            if granularities.iter().any(|g| g == "word") {
                v["words"] = Value::Array(word_items);
            }
            v
        }
        "text" | "srt" | "vtt" => {
            return (StatusCode::OK, [("content-type", "text/plain")], text).into_response();
        }
        _ => {
            let mut v = json!({"text": text});
            if whisper {
                v["usage"] = json!({"type": "duration", "seconds": secs.ceil()});
            } else {
                let n = words.len() as u64;
                v["usage"] = json!({"type": "tokens", "input_tokens": 10 + n, "output_tokens": n,
                    "total_tokens": 10 + 2 * n, "input_token_details": {"audio_tokens": 10 + n, "text_tokens": 0}});
            }
            if logprobs {
                v["logprobs"] = Value::Array(
                    words
                        .iter()
                        .map(|w| json!({"token": w, "logprob": -0.01, "bytes": w.as_bytes()}))
                        .collect(),
                );
            }
            v
        }
    };
    if api == Api::Groq {
        // groq-python responses carry `x_groq: {id}` (UNCONFIRMED for transcriptions).
        answer["x_groq"] = json!({"id": format!("req_fake{index:06}")});
    }
    let body = answer.to_string();
    match fault {
        Fault::Garbage => json_response(Body::from(r#"{"text": "alpha", "usage": tru"#)),
        Fault::Silent => json_response(Body::from_stream(futures::stream::pending::<
            Result<Bytes, std::io::Error>,
        >())),
        Fault::Truncate { .. } => {
            let half = Bytes::from(body[..body.len() / 2].to_owned());
            let items: Vec<Result<Bytes, std::io::Error>> =
                vec![Ok(half), Err(std::io::Error::other("fake: truncated"))];
            json_response(Body::from_stream(futures::stream::iter(items)))
        }
        _ => json_response(Body::from(body)),
    }
}

fn json_response(body: Body) -> Response {
    (StatusCode::OK, [("content-type", "application/json")], body).into_response()
}

/// The SSE answer: a delta per word, then done; produced by a task so faults can pace it.
fn sse_answer(
    st: Arc<Shared>,
    log: Arc<Mutex<TranscriptionLog>>,
    fault: Fault,
    words: Vec<&'static str>,
    logprobs: bool,
) -> Response {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let mut release = st.release.subscribe();
    let delay = st.opts.chunk_delay;
    tokio::spawn(async move {
        if fault == Fault::Silent {
            tx.closed().await;
            return;
        }
        let lp = |w: &str| json!([{"token": w, "logprob": -0.01, "bytes": w.as_bytes()}]);
        let mut events: Vec<Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let delta = if i == 0 {
                    (*w).to_owned()
                } else {
                    format!(" {w}")
                };
                let mut e = json!({"type": "transcript.text.delta", "delta": delta});
                if logprobs {
                    e["logprobs"] = lp(w);
                }
                e
            })
            .collect();
        let n = words.len() as u64;
        let mut done = json!({"type": "transcript.text.done", "text": words.join(" "),
            "usage": {"type": "tokens", "input_tokens": 10 + n, "output_tokens": n, "total_tokens": 10 + 2 * n}});
        if logprobs {
            done["logprobs"] = Value::Array(
                words
                    .iter()
                    .map(|w| json!({"token": w, "logprob": -0.01, "bytes": w.as_bytes()}))
                    .collect(),
            );
        }
        events.push(done);
        let total = events.len();
        for (i, e) in events.into_iter().enumerate() {
            if let Fault::Truncate { after_chunks } = fault {
                if i >= after_chunks {
                    let _ = tx.send(Err(std::io::Error::other("fake: truncated"))).await;
                    return;
                }
            }
            if i == 1 && fault == Fault::HoldAfterFirstChunk {
                while !*release.borrow_and_update() {
                    if release.changed().await.is_err() {
                        return;
                    }
                }
            }
            if i > 0 {
                tokio::time::sleep(delay).await;
            }
            if fault == Fault::Garbage {
                for junk in [
                    "not json at all",
                    r#"{"type":"transcript.unknown","x":1}"#,
                    "[1,2,3]",
                ] {
                    let _ = tx.send(Ok(Bytes::from(format!("data: {junk}\n\n")))).await;
                }
            }
            if i + 1 == total {
                st.mark_answered(&log);
            }
            if tx
                .send(Ok(Bytes::from(format!("data: {e}\n\n"))))
                .await
                .is_err()
            {
                return;
            }
            log.lock().expect("log lock").events_sent += 1;
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        StatusCode::OK,
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// The fake's speech for `text` in `format` (see the module docs); `pcm` and `wav` at 24 kHz.
pub fn speech_audio(text: &str, format: &str, speed: f64, ms_per_char: u32) -> Vec<u8> {
    let chars = text.chars().count().max(1) as f64;
    let ms = chars * f64::from(ms_per_char) / speed.clamp(0.25, 4.0);
    let rate = 24_000u32;
    let n = (ms * f64::from(rate) / 1000.0).round().max(1.0) as usize;
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(rate);
    let pcm: Vec<u8> = (0..n)
        .flat_map(|i| (((i as f64 * step).sin() * 8_000.0) as i16).to_le_bytes())
        .collect();
    match format {
        "pcm" => pcm,
        "wav" => {
            // Streamed WAV: OpenAI writes the header before the length is known (UNCONFIRMED
            // which sizes it writes); the fake writes the real sizes.
            let mut out = Vec::with_capacity(pcm.len() + 44);
            let len = pcm.len() as u32;
            out.extend_from_slice(b"RIFF");
            out.extend_from_slice(&(36 + len).to_le_bytes());
            out.extend_from_slice(b"WAVEfmt ");
            out.extend_from_slice(&16u32.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&rate.to_le_bytes());
            out.extend_from_slice(&(rate * 2).to_le_bytes());
            out.extend_from_slice(&2u16.to_le_bytes());
            out.extend_from_slice(&16u16.to_le_bytes());
            out.extend_from_slice(b"data");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&pcm);
            out
        }
        other => {
            let len = ((ms * 4.0) as usize).max(16);
            let magic: &[u8] = match other {
                "mp3" => &[0xFF, 0xFB, 0x90, 0x64],
                "opus" => b"OggS",
                "flac" => b"fLaC",
                _ => &[0xFF, 0xF1, 0x50, 0x80],
            };
            let mut out = magic.to_vec();
            out.extend((magic.len()..len).map(|i| (i * 31 + 7) as u8));
            out
        }
    }
}

fn content_type(format: &str) -> &'static str {
    match format {
        "pcm" => "audio/pcm",
        "wav" => "audio/wav",
        "opus" => "audio/ogg",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        _ => "audio/mpeg",
    }
}

async fn speech(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let log = Arc::new(Mutex::new(SpeechLog {
        request: seen(&uri, &headers),
        body: parsed.clone(),
        status: 0,
        chunks_sent: 0,
        bytes_sent: 0,
        completed: false,
        client_gone: false,
    }));
    let index = {
        let mut all = st.speeches.lock().expect("lock");
        all.push(log.clone());
        all.len() - 1
    };
    let r = speech_inner(&st, index, &headers, &parsed, &log).await;
    log.lock().expect("log lock").status = r.status().as_u16();
    r
}

async fn speech_inner(
    st: &Arc<Shared>,
    index: usize,
    headers: &HeaderMap,
    body: &Value,
    log: &Arc<Mutex<SpeechLog>>,
) -> Response {
    if let Some(r) = check_auth(headers, &st.opts.api_key) {
        return r;
    }
    let fault = st.fault_for(index);
    if let Some(r) = fault_status(&fault) {
        return r;
    }
    if body.is_null() {
        return invalid(
            "We could not parse the JSON body of your request.",
            None,
            None,
        );
    }
    let model = body["model"].as_str().unwrap_or("");
    if !TTS_MODELS.contains(&model) {
        return invalid(
            &format!("Invalid value for 'model': '{model}'."),
            Some("model"),
            Some("invalid_value"),
        );
    }
    let Some(input) = body["input"].as_str() else {
        return invalid("Missing required parameter: 'input'.", Some("input"), None);
    };
    if input.trim().is_empty() || input.chars().count() > 4096 {
        return invalid(
            "Invalid 'input': string must be 1 to 4096 characters.",
            Some("input"),
            Some("string_above_max_length"),
        );
    }
    let voice_ok = match &body["voice"] {
        Value::String(v) => VOICES.contains(&v.as_str()),
        Value::Object(o) => o
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with("voice_")),
        _ => false,
    };
    if !voice_ok {
        return invalid(
            "Invalid value for 'voice'.",
            Some("voice"),
            Some("invalid_value"),
        );
    }
    let format = body["response_format"].as_str().unwrap_or("mp3");
    if !SPEECH_FORMATS.contains(&format) {
        return invalid(
            "Invalid value for 'response_format'.",
            Some("response_format"),
            Some("invalid_value"),
        );
    }
    let speed = match &body["speed"] {
        Value::Null => 1.0,
        v => match v.as_f64() {
            Some(s) if (0.25..=4.0).contains(&s) => s,
            _ => return invalid("Invalid 'speed': must be 0.25 to 4.0.", Some("speed"), None),
        },
    };
    if body.get("instructions").is_some() && model.starts_with("tts-1") {
        // The docs say instructions "do not work" with tts-1; whether the API rejects or
        // ignores them is UNCONFIRMED: the fake is strict.
        return invalid(
            "instructions are not supported for this model",
            Some("instructions"),
            None,
        );
    }
    if body.get("stream_format").and_then(Value::as_str) == Some("sse") {
        return invalid(
            "The fake does not serve stream_format sse.",
            Some("stream_format"),
            None,
        );
    }
    match fault {
        Fault::Garbage => return json_response(Body::from(r#"{"object": "speech", "oops": tru"#)),
        Fault::Silent => {
            let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            return (
                StatusCode::OK,
                [("content-type", content_type(format))],
                Body::from_stream(never),
            )
                .into_response();
        }
        _ => {}
    }
    let audio = speech_audio(input, format, speed, st.opts.ms_per_char);
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let opts = st.opts.clone();
    let mut release = st.release.subscribe();
    let plog = log.clone();
    tokio::spawn(async move {
        let chunks: Vec<Bytes> = audio
            .chunks(opts.chunk_bytes.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        for (i, chunk) in chunks.into_iter().enumerate() {
            if let Fault::Truncate { after_chunks } = fault {
                if i >= after_chunks {
                    let _ = tx.send(Err(std::io::Error::other("fake: truncated"))).await;
                    return;
                }
            }
            if i > 0 {
                if fault == Fault::HoldAfterFirstChunk && i == 1 {
                    let held = async {
                        while !*release.borrow_and_update() {
                            if release.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                    };
                    tokio::select! {
                        () = held => {}
                        () = tx.closed() => {
                            plog.lock().expect("log lock").client_gone = true;
                            return;
                        }
                    }
                }
                tokio::time::sleep(opts.chunk_delay).await;
            }
            let len = chunk.len();
            if tx.send(Ok(chunk)).await.is_err() {
                plog.lock().expect("log lock").client_gone = true;
                return;
            }
            let mut l = plog.lock().expect("log lock");
            l.chunks_sent += 1;
            l.bytes_sent += len;
        }
        plog.lock().expect("log lock").completed = true;
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (
        StatusCode::OK,
        [("content-type", content_type(format))],
        Body::from_stream(stream),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_round_trip() {
        let body = b"--xyz\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\nRI\r\nFF\r\n--xyz--\r\n";
        let parts = parse_multipart(body, "xyz").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].data, b"whisper-1");
        assert_eq!(parts[1].filename.as_deref(), Some("a.wav"));
        assert_eq!(parts[1].data, b"RI\r\nFF");
        assert!(parse_multipart(b"garbage", "xyz").is_err());
    }

    #[test]
    fn words_follow_speech() {
        let rate = 16_000;
        let tone: Vec<u8> = (0..rate / 2)
            .flat_map(|i| (if i % 16 < 8 { 4000i16 } else { -4000 }).to_le_bytes())
            .collect();
        assert_eq!(transcript_words(&tone, rate, 250), ["alpha", "bravo"]);
        assert!(transcript_words(&vec![0; 32_000], rate, 250).is_empty());
    }
}
