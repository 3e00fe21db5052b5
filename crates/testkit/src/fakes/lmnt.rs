//! A fake of LMNT's speech API on 127.0.0.1 (`TTS_PROTOCOLS.md` §10; lmnt-com/lmnt-python
//! `resources/speech.py`, `resources/voices.py`, `types/speech_generate_params.py`,
//! `types/voice.py`, `types/error_body.py`):
//!
//! - `POST /v1/ai/speech/bytes`: `X-API-Key` checked (401), the JSON body validated (`text`
//!   1–5000 characters, `voice` a known voice id, `format`
//!   `aac|mp3|ulaw|wav|webm|pcm_s16le|pcm_f32le` (default mp3), `sample_rate` 8000|16000|24000
//!   (default 24000, 8000 for ulaw), `model` `blizzard`, `language` `auto` or a listed code,
//!   `temperature` ≥ 0, `top_p` 0–1, and the v1 `speed` 0.25–2). Refusals are
//!   `{"error": {"message", "type"}}` (the `ErrorBody` inside `error`, as `_exceptions.py` reads
//!   it; the exact envelope is UNCONFIRMED). The answer is a chunked body of
//!   [`audio_for`]: a 440 Hz tone of [`FakeOptions::ms_per_char`] per character divided by
//!   `speed`, as PCM16 (`pcm_s16le`), f32 (`pcm_f32le`), G.711 µ-law after a WAV header
//!   (`ulaw`), PCM16 in WAV (`wav`), or stand-in bytes with the format's magic (mp3, webm, aac).
//! - `GET /v1/ai/speech/stream` (WebSocket; lmnt-python `resources/sessions.py`): the first
//!   text frame is the init object (`X-API-Key`, `voice`, `format` `mp3|pcm_s16le|pcm_f32le|ulaw|webm`,
//!   `sample_rate`, `language`, `lmnt-version`, `return_timestamps`; an optional `type: init`),
//!   answered `{"type": "ready", "request_id"}` or, when refused, `{"type": "error", "error":
//!   {"message", "type"}, "request_id"}` and a close. Then `text` messages buffer text, `flush`
//!   synthesises the buffer as binary frames (the same [`audio_for`] audio, a `ulaw` request's
//!   own WAV header first) followed by `{"type": "flush_complete", "nonce"}`; `reset` drops the
//!   buffer and the audio not yet sent and answers `reset_complete`; `finish` sends what is
//!   pending and closes (1000). [`WsFault`] makes it misbehave; every session is recorded
//!   ([`WsSessionLog`]).
//! - `GET /v1/ai/voice/list?owner=system|me|all&starred=true`: a JSON array of `Voice`
//!   (`id, name, owner, state, description, gender, preview_url, starred, tags, type`) from
//!   [`FakeOptions::voices`]; without `owner`, every voice (UNCONFIRMED default).
//!
//! Everything received is recorded ([`SpeechLog`], [`LmntFake::voice_requests`]), and
//! [`Fault`] makes the synthesis misbehave, on every request or one ([`FakeOptions::fault_on`]).

use crate::fakes::{HttpFake, SeenRequest};
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use waav_plugin_api::codec::mulaw_encode;

/// Output formats (`speech_generate_params.py`).
pub const FORMATS: &[&str] = &[
    "aac",
    "mp3",
    "ulaw",
    "wav",
    "webm",
    "pcm_s16le",
    "pcm_f32le",
];
/// Output rates.
pub const SAMPLE_RATES: &[u64] = &[8_000, 16_000, 24_000];
/// Languages besides `auto`.
pub const LANGUAGES: &[&str] = &[
    "ar", "as", "bn", "cs", "da", "de", "en", "es", "fi", "fr", "hi", "id", "it", "ja", "ko", "ml",
    "mr", "nl", "pl", "pt", "ru", "sk", "sv", "ta", "te", "th", "tr", "uk", "ur", "vi", "zh",
];

/// A voice the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVoice {
    /// Voice id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `system`, `me` or `other`.
    pub owner: String,
    /// `male`, `female`, ….
    pub gender: String,
    /// Starred by the caller.
    pub starred: bool,
}

impl FakeVoice {
    /// A voice.
    pub fn new(id: &str, name: &str, owner: &str, gender: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            owner: owner.to_owned(),
            gender: gender.to_owned(),
            starred: false,
        }
    }
}

/// The default voices: three system voices and one of the caller's.
pub fn default_voices() -> Vec<FakeVoice> {
    vec![
        FakeVoice::new("ava", "Ava", "system", "female"),
        FakeVoice::new("lily", "Lily", "system", "female"),
        FakeVoice::new("daniel", "Daniel", "system", "male"),
        FakeVoice::new("my-clone", "My clone", "me", "nonbinary"),
    ]
}

/// How the synthesis misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// Answers `status` with `body` (and `retry-after` when set), after the auth check.
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
    },
    /// A 200 `application/json` body that does not parse, instead of audio.
    Garbage,
    /// The body stops with an error after this many chunks.
    Truncate {
        /// Chunks sent first.
        after_chunks: usize,
    },
    /// The response head is sent, then nothing.
    Silent,
    /// After the first chunk, waits for [`LmntFake::release`] (or the client to leave).
    HoldAfterFirstChunk,
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The key accepted in `X-API-Key`.
    pub api_key: String,
    /// Misbehaviour of the synthesis endpoint.
    pub fault: Fault,
    /// Apply the fault only to synthesis request `index`; `None`: every request.
    pub fault_on: Option<usize>,
    /// Tone per character (before `speed`).
    pub ms_per_char: u32,
    /// Bytes per chunk.
    pub chunk_bytes: usize,
    /// Pause between chunks.
    pub chunk_delay: Duration,
    /// The voices served and accepted.
    pub voices: Vec<FakeVoice>,
    /// Misbehaviour of the WebSocket sessions.
    pub ws_fault: WsFault,
    /// With [`WsFault::Refuse`], refuse only the first this many upgrades (a vendor that
    /// recovers); `None`: every upgrade.
    pub refuse_first: Option<usize>,
}

/// How a WebSocket session misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WsFault {
    /// Behaves.
    #[default]
    None,
    /// Answers flush number `n` (counting from 0 across all sessions) with an `error` message
    /// (`internal_server_error`) and closes.
    ErrorOnFlush(usize),
    /// Closes the socket (1000) right after completing this many flushes, as an idle timeout
    /// would.
    CloseAfterFlushes(usize),
    /// Never answers a flush (no audio, no `flush_complete`).
    SilentFlush,
    /// After the first audio frame of each flush, waits for [`LmntFake::release`] (or a reset).
    HoldAfterFirstFrame,
    /// Refuses the upgrade with `status` (a JSON `ErrorBody` in `error`) and, when set,
    /// `retry-after: <secs>` (a rate limiter or gateway in front of the socket).
    Refuse {
        /// HTTP status.
        status: u16,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
    },
    /// Answers flush number `flush` (counting from 0 across all sessions) with an `error`
    /// message of `kind` (`error_body.py` `type`, e.g. `rate_limit_error`) and `message`, and
    /// closes (1011).
    ErrorMessageOnFlush {
        /// The flush to fail.
        flush: usize,
        /// The error's `type`.
        kind: &'static str,
        /// The error's `message`.
        message: &'static str,
    },
    /// Junk text frames (not JSON, an array, an unknown type, a `flush_complete` for a nonce
    /// never sent) before every text message the fake sends.
    Garbage,
    /// Drops the TCP connection (no close frame) once this many audio frames went out on a
    /// socket.
    DropAfterFrames(usize),
}

/// One WebSocket session as seen by the fake.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WsSessionLog {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// The init message.
    pub init: Value,
    /// Every later client message, in order.
    pub messages: Vec<Value>,
    /// Audio frames sent.
    pub audio_frames: usize,
    /// `flush_complete`s sent.
    pub flushes_completed: usize,
    /// `reset_complete`s sent.
    pub resets_completed: usize,
    /// The session ended (either side).
    pub ended: bool,
}

impl FakeOptions {
    /// Options accepting `api_key`, behaving.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            fault: Fault::None,
            fault_on: None,
            ms_per_char: 20,
            chunk_bytes: 960,
            chunk_delay: Duration::from_millis(2),
            voices: default_voices(),
            ws_fault: WsFault::None,
            refuse_first: None,
        }
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// Applies the fault to request `index` only.
    pub fn fault_on(mut self, index: usize) -> Self {
        self.fault_on = Some(index);
        self
    }
}

/// One synthesis request as received and answered.
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
    speeches: Mutex<Vec<Arc<Mutex<SpeechLog>>>>,
    voice_requests: Mutex<Vec<SeenRequest>>,
    ws: Mutex<Vec<WsSessionLog>>,
    ws_flushes: std::sync::atomic::AtomicUsize,
    release: watch::Sender<bool>,
}

/// The fake service. Stops when dropped.
#[derive(Debug)]
pub struct LmntFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl LmntFake {
    /// Starts a fake with `opts`.
    pub async fn start(opts: FakeOptions) -> Self {
        let shared = Arc::new(Shared {
            opts,
            speeches: Mutex::default(),
            voice_requests: Mutex::default(),
            ws: Mutex::default(),
            ws_flushes: Default::default(),
            release: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/v1/ai/speech/bytes", post(speech_bytes))
            .route("/v1/ai/voice/list", get(voices))
            .route("/v1/ai/speech/stream", get(speech_stream))
            .with_state(shared.clone());
        Self {
            http: HttpFake::start(router).await,
            shared,
        }
    }

    /// `http://127.0.0.1:port`, the `base_url`.
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// Every synthesis request so far, in arrival order.
    pub fn speeches(&self) -> Vec<SpeechLog> {
        let all = self.shared.speeches.lock().expect("lock");
        all.iter().map(|l| l.lock().expect("log").clone()).collect()
    }

    /// `ws://127.0.0.1:port`.
    pub fn ws_url(&self) -> String {
        self.http.base_url().replacen("http://", "ws://", 1)
    }

    /// Every WebSocket session so far, in arrival order.
    pub fn ws_sessions(&self) -> Vec<WsSessionLog> {
        self.shared.ws.lock().expect("lock").clone()
    }

    /// Every voice-listing request so far.
    pub fn voice_requests(&self) -> Vec<SeenRequest> {
        self.shared.voice_requests.lock().expect("lock").clone()
    }

    /// Lets [`Fault::HoldAfterFirstChunk`] go on (for every held and later response).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Waits (polling, at most `timeout`) until request `index` exists and `pred` holds.
    pub async fn wait_for_speech(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SpeechLog) -> bool,
    ) -> Option<SpeechLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.speeches().into_iter().nth(index).filter(&pred) {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// An `ErrorBody` answer inside `error`.
fn error(status: u16, kind: &str, message: &str) -> Response {
    json_answer(status, json!({"error": {"message": message, "type": kind}}))
}

fn invalid(message: &str) -> Response {
    error(400, "invalid_request_error", message)
}

fn check_auth(headers: &HeaderMap, key: &str) -> Option<Response> {
    match headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        Some(k) if k == key => None,
        Some(_) => Some(error(401, "authentication_error", "Invalid API key")),
        None => Some(error(
            401,
            "authentication_error",
            "Missing X-API-Key header",
        )),
    }
}

fn wav_header(format_tag: u16, bits: u16, rate: u32, data_len: u32) -> Vec<u8> {
    let block = bits / 8;
    let mut out = Vec::with_capacity(44);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&format_tag.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    out.extend_from_slice(&block.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out
}

/// The tone's samples for `text` at `rate` (see the module docs).
pub fn tone_for(text: &str, rate: u32, speed: f64, ms_per_char: u32) -> Vec<i16> {
    let ms = text.chars().count().max(1) as f64 * f64::from(ms_per_char) / speed.clamp(0.25, 2.0);
    let n = (ms * f64::from(rate) / 1000.0).round().max(1.0) as usize;
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(rate);
    (0..n)
        .map(|i| ((i as f64 * step).sin() * 8_000.0) as i16)
        .collect()
}

/// The fake's audio for `text` in `format` at `rate` (see the module docs).
pub fn audio_for(text: &str, format: &str, rate: u32, speed: f64, ms_per_char: u32) -> Vec<u8> {
    let tone = tone_for(text, rate, speed, ms_per_char);
    let pcm: Vec<u8> = tone.iter().flat_map(|s| s.to_le_bytes()).collect();
    match format {
        "pcm_s16le" => pcm,
        "pcm_f32le" => tone
            .iter()
            .flat_map(|&s| (f32::from(s) / 32768.0).to_le_bytes())
            .collect(),
        "ulaw" => {
            // A streamed WAV header: the sizes are not known yet (UNCONFIRMED which LMNT writes).
            let mut out = wav_header(7, 8, rate, u32::MAX - 36);
            out.extend(tone.iter().map(|&s| mulaw_encode(s)));
            out
        }
        "wav" => {
            let mut out = wav_header(1, 16, rate, pcm.len() as u32);
            out.extend_from_slice(&pcm);
            out
        }
        other => {
            let magic: &[u8] = match other {
                "mp3" => &[0xFF, 0xFB, 0x90, 0x64],
                "webm" => &[0x1A, 0x45, 0xDF, 0xA3],
                _ => &[0xFF, 0xF1, 0x50, 0x80],
            };
            let len = (tone.len() * 4 * 1000 / rate as usize / 10).max(16);
            let mut out = magic.to_vec();
            out.extend((magic.len()..len).map(|i| (i * 31 + 7) as u8));
            out
        }
    }
}

fn content_type(format: &str) -> &'static str {
    match format {
        "mp3" => "audio/mpeg",
        "ulaw" | "wav" => "audio/wav",
        "webm" => "audio/webm",
        "aac" => "audio/aac",
        _ => "application/octet-stream",
    }
}

/// A validated request: text, format, rate, speed.
type Checked = (String, String, u32, f64);

fn validate(voices: &[FakeVoice], body: &Value) -> Result<Checked, String> {
    if !body.is_object() {
        return Err("Request body must be a JSON object".into());
    }
    let text = match body["text"].as_str() {
        Some(t) if !t.trim().is_empty() && t.chars().count() <= 5000 => t,
        Some(t) if t.trim().is_empty() => return Err("text must not be empty".into()),
        Some(_) => return Err("text exceeds 5000 characters".into()),
        None => return Err("Missing required field: text".into()),
    };
    match body["voice"].as_str() {
        Some(v) if voices.iter().any(|x| x.id == v) => {}
        Some(v) => return Err(format!("Invalid voice: {v}")),
        None => return Err("Missing required field: voice".into()),
    }
    let format = match &body["format"] {
        Value::Null => "mp3",
        Value::String(f) if FORMATS.contains(&f.as_str()) => f.as_str(),
        _ => return Err("Invalid format".into()),
    };
    let rate = match &body["sample_rate"] {
        Value::Null if format == "ulaw" => 8_000,
        Value::Null => 24_000,
        v => match v.as_u64() {
            Some(r) if SAMPLE_RATES.contains(&r) => r as u32,
            _ => return Err("sample_rate must be one of 8000, 16000, 24000".into()),
        },
    };
    match &body["model"] {
        Value::Null => {}
        Value::String(m) if m == "blizzard" => {}
        _ => return Err("Invalid model".into()),
    }
    match &body["language"] {
        Value::Null => {}
        Value::String(l) if l == "auto" || LANGUAGES.contains(&l.as_str()) => {}
        _ => return Err("Invalid language".into()),
    }
    for (key, max) in [("temperature", f64::MAX), ("top_p", 1.0)] {
        match &body[key] {
            Value::Null => {}
            v => match v.as_f64() {
                Some(x) if (0.0..=max).contains(&x) => {}
                _ => return Err(format!("Invalid {key}")),
            },
        }
    }
    let speed = match &body["speed"] {
        Value::Null => 1.0,
        v => match v.as_f64() {
            Some(s) if (0.25..=2.0).contains(&s) => s,
            _ => return Err("speed must be between 0.25 and 2.0".into()),
        },
    };
    Ok((text.to_owned(), format.to_owned(), rate, speed))
}

async fn speech_bytes(
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
    let r = speech_inner(&st, index, &headers, &parsed, &log);
    log.lock().expect("log").status = r.status().as_u16();
    r
}

fn speech_inner(
    st: &Arc<Shared>,
    index: usize,
    headers: &HeaderMap,
    body: &Value,
    log: &Arc<Mutex<SpeechLog>>,
) -> Response {
    if let Some(r) = check_auth(headers, &st.opts.api_key) {
        return r;
    }
    let fault = match st.opts.fault_on {
        Some(i) if i != index => Fault::None,
        _ => st.opts.fault.clone(),
    };
    if let Some(r) = fault_status(&fault) {
        return r;
    }
    let (text, format, rate, speed) = match validate(&st.opts.voices, body) {
        Ok(v) => v,
        Err(m) => return invalid(&m),
    };
    match fault {
        Fault::Garbage => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"audio": "AAAA", "durations": [tru"#,
            )
                .into_response()
        }
        Fault::Silent => {
            let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            return (
                StatusCode::OK,
                [("content-type", content_type(&format))],
                Body::from_stream(never),
            )
                .into_response();
        }
        _ => {}
    }
    let audio = audio_for(&text, &format, rate, speed, st.opts.ms_per_char);
    let stream = stream_chunks(
        audio,
        st.opts.clone(),
        fault,
        st.release.subscribe(),
        log.clone(),
    );
    (
        StatusCode::OK,
        [("content-type", content_type(&format))],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn voices(State(st): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    st.voice_requests
        .lock()
        .expect("lock")
        .push(seen(&uri, &headers));
    if let Some(r) = check_auth(&headers, &st.opts.api_key) {
        return r;
    }
    let owner = query_param(&uri, "owner");
    if owner
        .as_deref()
        .is_some_and(|o| !["system", "me", "all"].contains(&o))
    {
        return invalid("owner must be one of system, me, all");
    }
    let starred = query_param(&uri, "starred").as_deref() == Some("true");
    let list: Vec<Value> = st
        .opts
        .voices
        .iter()
        .filter(|v| match owner.as_deref() {
            None | Some("all") => true,
            Some(o) => v.owner == o,
        })
        .filter(|v| !starred || v.starred)
        .map(|v| {
            json!({"id": v.id, "name": v.name, "owner": v.owner, "state": "ready",
                   "description": format!("{} voice", v.name), "gender": v.gender,
                   "preview_url": format!("https://fake.lmnt.invalid/preview/{}.mp3", v.id),
                   "starred": v.starred, "tags": [], "type": "instant"})
        })
        .collect();
    json_answer(200, Value::Array(list))
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

fn json_answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
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

/// Streams `audio` in chunks with the fault applied, recording progress in `log`.
fn stream_chunks(
    audio: Vec<u8>,
    opts: FakeOptions,
    fault: Fault,
    mut release: watch::Receiver<bool>,
    log: Arc<Mutex<SpeechLog>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
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
                            log.lock().expect("log").client_gone = true;
                            return;
                        }
                    }
                }
                tokio::time::sleep(opts.chunk_delay).await;
            }
            let len = chunk.len();
            if tx.send(Ok(chunk)).await.is_err() {
                log.lock().expect("log").client_gone = true;
                return;
            }
            let mut l = log.lock().expect("log");
            l.chunks_sent += 1;
            l.bytes_sent += len;
        }
        log.lock().expect("log").completed = true;
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

const WS_FORMATS: &[&str] = &["mp3", "pcm_s16le", "pcm_f32le", "ulaw", "webm"];

async fn speech_stream(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let index = {
        let mut all = st.ws.lock().expect("lock");
        all.push(WsSessionLog {
            request: Some(seen(&uri, &headers)),
            ..WsSessionLog::default()
        });
        all.len() - 1
    };
    let refused = st.opts.refuse_first.is_none_or(|n| index < n);
    if let (
        WsFault::Refuse {
            status,
            retry_after,
        },
        true,
    ) = (st.opts.ws_fault, refused)
    {
        ws_log(&st, index, |l| l.ended = true);
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let kind = match status {
            401 => "authentication_error",
            429 => "rate_limit_error",
            s if s >= 500 => "internal_server_error",
            _ => "invalid_request_error",
        };
        let body = json!({"error": {"message": "injected failure", "type": kind}}).to_string();
        let mut r = (code, [("content-type", "application/json")], body).into_response();
        if let Some(secs) = retry_after {
            r.headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        return r;
    }
    upgrade.on_upgrade(move |socket| async move {
        ws_session(st.clone(), index, socket).await;
        if let Some(l) = st.ws.lock().expect("lock").get_mut(index) {
            l.ended = true;
        }
    })
}

fn ws_log(st: &Shared, index: usize, f: impl FnOnce(&mut WsSessionLog)) {
    if let Some(l) = st.ws.lock().expect("lock").get_mut(index) {
        f(l);
    }
}

/// [`WsFault::Garbage`]'s junk, sent before a real text message.
async fn junk<S>(st: &Shared, sink: &mut S) -> Result<(), S::Error>
where
    S: futures::Sink<Message> + Unpin,
{
    if st.opts.ws_fault != WsFault::Garbage {
        return Ok(());
    }
    for j in [
        "this is not json",
        "[1,2,3]",
        r#"{"type":"brand_new","x":1}"#,
        r#"{"type":"flush_complete","nonce":987654321}"#,
        r#"{"type":5}"#,
    ] {
        sink.send(Message::Text(j.into())).await?;
    }
    Ok(())
}

fn ws_error(kind: &str, message: &str, request_id: &str) -> Message {
    Message::Text(
        json!({"type": "error", "error": {"message": message, "type": kind}, "request_id": request_id})
            .to_string()
            .into(),
    )
}

/// Checks an init message: `Err((type, message))` refuses the session.
fn check_init(st: &Shared, init: &Value) -> Result<(String, u32), (&'static str, String)> {
    if init["X-API-Key"].as_str() != Some(st.opts.api_key.as_str()) {
        return Err(("authentication_error", "Invalid API key".into()));
    }
    match init["voice"].as_str() {
        Some(v) if st.opts.voices.iter().any(|x| x.id == v) => {}
        _ => return Err(("invalid_request_error", "Invalid voice".into())),
    }
    let format = match &init["format"] {
        Value::Null => "mp3",
        Value::String(f) if WS_FORMATS.contains(&f.as_str()) => f.as_str(),
        _ => return Err(("invalid_request_error", "Invalid format".into())),
    };
    let rate = match &init["sample_rate"] {
        Value::Null => 24_000,
        // The v1 SDK sent the rate as a string; both are accepted.
        v => match v
            .as_u64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        {
            Some(r) if SAMPLE_RATES.contains(&r) => r as u32,
            _ => return Err(("invalid_request_error", "Invalid sample_rate".into())),
        },
    };
    Ok((format.to_owned(), rate))
}

async fn ws_session(st: Arc<Shared>, index: usize, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let request_id = format!("req-{index}");
    let init = loop {
        match stream.next().await {
            Some(Ok(Message::Text(t))) => {
                break serde_json::from_str::<Value>(&t).unwrap_or(Value::Null)
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => continue,
        }
    };
    ws_log(&st, index, |l| l.init = init.clone());
    let (format, rate) = match check_init(&st, &init) {
        Ok(v) => v,
        Err((kind, message)) => {
            let _ = sink.send(ws_error(kind, &message, &request_id)).await;
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
            return;
        }
    };
    let ready = json!({"type": "ready", "request_id": request_id}).to_string();
    if junk(&st, &mut sink).await.is_err() || sink.send(Message::Text(ready.into())).await.is_err()
    {
        return;
    }
    let mut buffer = String::new();
    // Audio frames to send, then the flush's nonce to complete.
    let mut pending: VecDeque<Result<Bytes, u64>> = VecDeque::new();
    let mut finishing = false;
    let mut held = false;
    let mut frames_in_flush = 0usize;
    let mut frames_sent = 0usize;
    let mut release = st.release.subscribe();
    loop {
        if finishing && pending.is_empty() {
            let _ = sink
                .send(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "".into(),
                })))
                .await;
            return;
        }
        let sending = !pending.is_empty() && !held;
        tokio::select! {
            msg = stream.next() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                    Some(Ok(_)) => continue,
                };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                ws_log(&st, index, |l| l.messages.push(v.clone()));
                match v["type"].as_str() {
                    Some("text") => buffer.push_str(v["text"].as_str().unwrap_or("")),
                    Some("flush") => {
                        let nonce = v["nonce"].as_u64().unwrap_or(0);
                        let n = st.ws_flushes.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        match st.opts.ws_fault {
                            WsFault::ErrorOnFlush(k) if k == n => {
                                let _ = sink.send(ws_error("internal_server_error", "synthesis failed", &request_id)).await;
                                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1011, reason: "".into() }))).await;
                                return;
                            }
                            WsFault::ErrorMessageOnFlush { flush, kind, message } if flush == n => {
                                let _ = sink.send(ws_error(kind, message, &request_id)).await;
                                let _ = sink.send(Message::Close(Some(CloseFrame { code: 1011, reason: "".into() }))).await;
                                return;
                            }
                            WsFault::SilentFlush => {
                                buffer.clear();
                                continue;
                            }
                            _ => {}
                        }
                        let text = std::mem::take(&mut buffer);
                        if !text.trim().is_empty() {
                            let audio = audio_for(&text, &format, rate, 1.0, st.opts.ms_per_char);
                            for c in audio.chunks(st.opts.chunk_bytes.max(1)) {
                                pending.push_back(Ok(Bytes::copy_from_slice(c)));
                            }
                        }
                        pending.push_back(Err(nonce));
                    }
                    Some("reset") => {
                        buffer.clear();
                        // Drop the audio not yet sent and any flush not yet completed.
                        pending.clear();
                        held = false;
                        frames_in_flush = 0;
                        let nonce = v["nonce"].as_u64().unwrap_or(0);
                        let done = json!({"type": "reset_complete", "nonce": nonce}).to_string();
                        if sink.send(Message::Text(done.into())).await.is_err() {
                            return;
                        }
                        ws_log(&st, index, |l| l.resets_completed += 1);
                    }
                    Some("finish") => finishing = true,
                    _ => {
                        let _ = sink.send(ws_error("invalid_request_error", "Unknown message", &request_id)).await;
                    }
                }
            }
            changed = release.changed(), if held => {
                if changed.is_err() || *release.borrow_and_update() {
                    held = false;
                }
            }
            () = tokio::time::sleep(st.opts.chunk_delay), if sending => {
                match pending.pop_front() {
                    Some(Ok(frame)) => {
                        if st.opts.ws_fault == WsFault::DropAfterFrames(frames_sent) {
                            // Dropping both halves ends the TCP connection without a close frame.
                            return;
                        }
                        if sink.send(Message::Binary(frame)).await.is_err() {
                            return;
                        }
                        frames_sent += 1;
                        ws_log(&st, index, |l| l.audio_frames += 1);
                        frames_in_flush += 1;
                        if st.opts.ws_fault == WsFault::HoldAfterFirstFrame && frames_in_flush == 1 && !*release.borrow() {
                            held = true;
                        }
                    }
                    Some(Err(nonce)) => {
                        frames_in_flush = 0;
                        let done = json!({"type": "flush_complete", "nonce": nonce}).to_string();
                        if junk(&st, &mut sink).await.is_err() || sink.send(Message::Text(done.into())).await.is_err() {
                            return;
                        }
                        let completed = {
                            let mut all = st.ws.lock().expect("lock");
                            let l = &mut all[index];
                            l.flushes_completed += 1;
                            l.flushes_completed
                        };
                        if st.opts.ws_fault == WsFault::CloseAfterFlushes(completed) {
                            let _ = sink.send(Message::Close(Some(CloseFrame { code: 1000, reason: "idle".into() }))).await;
                            return;
                        }
                    }
                    None => {}
                }
            }
        }
    }
}

/// The value of query parameter `name`, `+` and `%XX` decoded.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_follows_format_rate_and_speed() {
        let pcm = audio_for("abcd", "pcm_s16le", 16_000, 1.0, 10);
        assert_eq!(pcm.len(), 4 * 10 * 16 * 2);
        assert_eq!(
            audio_for("abcd", "pcm_s16le", 16_000, 2.0, 10).len(),
            pcm.len() / 2
        );
        assert_eq!(
            audio_for("abcd", "pcm_f32le", 16_000, 1.0, 10).len(),
            pcm.len() * 2
        );
        let ulaw = audio_for("abcd", "ulaw", 8_000, 1.0, 10);
        assert_eq!(&ulaw[..4], b"RIFF");
        assert_eq!(ulaw.len(), 44 + 320);
        assert_eq!(
            &audio_for("abcd", "mp3", 24_000, 1.0, 10)[..2],
            &[0xFF, 0xFB]
        );
    }

    #[test]
    fn validation() {
        let v = default_voices();
        let ok = json!({"text": "Hi", "voice": "ava", "format": "ulaw"});
        assert_eq!(validate(&v, &ok).unwrap().2, 8_000);
        for bad in [
            json!({"text": "", "voice": "ava"}),
            json!({"text": "x", "voice": "nobody"}),
            json!({"text": "x", "voice": "ava", "format": "flac"}),
            json!({"text": "x", "voice": "ava", "sample_rate": 44100}),
            json!({"text": "x", "voice": "ava", "speed": 3}),
            json!({"text": "x".repeat(5001), "voice": "ava"}),
        ] {
            assert!(validate(&v, &bad).is_err(), "{bad}");
        }
    }
}
