//! A fake of Deepgram's Aura text-to-speech (`/v1/speak`, REST and WebSocket) and its model
//! listing (`GET /v1/models`), on 127.0.0.1, one port for all three as on `api.deepgram.com`.
//!
//! It follows the wire protocol as documented (`TTS_PROTOCOLS.md` §1; deepgram-python-sdk
//! `speak/v1/audio/raw_client.py`, `speak/v1/raw_client.py`, `speak/v1/types/*`):
//! - `POST /v1/speak?model&encoding&container&sample_rate&bit_rate&speed&…` with
//!   `Authorization: Token <key>` (or `Bearer <key>`) and the JSON body `{"text": …}` answers
//!   200 with the audio as a chunked stream, `content-type` of the format and a `dg-request-id`
//!   header. No `encoding` means mp3 (UNCONFIRMED: the docs disagree); linear16/mulaw/alaw come
//!   in a WAV container unless `container=none`. Refusals are JSON bodies in Deepgram's two
//!   documented shapes (`err_code`/`err_msg`, `category`/`message`/`details`).
//! - The WebSocket upgrade on `GET /v1/speak?model&encoding&sample_rate&speed` checks the same
//!   credential (401 with a JSON body otherwise) and accepts only linear16/mulaw/alaw at
//!   8000/16000/24000/32000/48000 Hz. The server sends `Metadata` first; text frames `Speak`
//!   append to a buffer, `Flush` synthesises it (binary frames, then `Flushed` with a
//!   `sequence_id`), `Clear` drops the buffer and queued audio and answers `Cleared`, `Close`
//!   sends what is queued and closes with 1000.
//! - `GET /v1/models` returns `{"stt": […], "tts": […]}` (no key needed, as documented; a wrong
//!   key is still refused).
//!
//! Audio is deterministic ([`speech`]): a 440 Hz tone, [`TtsFakeOptions::ms_per_char`] per
//! character divided by `speed`, in the requested encoding and rate (mp3/opus are stand-in
//! bytes with the right magic, not decodable audio), streamed in chunks of
//! [`TtsFakeOptions::chunk_bytes`] every [`TtsFakeOptions::chunk_delay`].
//!
//! Everything received is recorded ([`SpeakLog`] per REST request, [`StreamLog`] per socket),
//! and [`TtsFault`] makes it misbehave.

use crate::fakes::{HttpFake, SeenRequest};
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Default tone length per character of text.
pub const DEFAULT_MS_PER_CHAR: u32 = 20;
/// Encodings the REST endpoint accepts (python SDK `audio_generate_request_encoding.py`).
pub const REST_ENCODINGS: &[&str] = &["linear16", "mulaw", "alaw", "mp3", "opus", "flac", "aac"];
/// Encodings the WebSocket accepts (python SDK `types/speak_v1encoding.py`).
pub const WS_ENCODINGS: &[&str] = &["linear16", "mulaw", "alaw"];
/// Sample rates the WebSocket accepts (python SDK `types/speak_v1sample_rate.py`), and linear16
/// over REST.
pub const SAMPLE_RATES: &[u32] = &[8_000, 16_000, 24_000, 32_000, 48_000];

/// How the fake misbehaves (the same on every request and connection).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TtsFault {
    /// Behaves.
    #[default]
    None,
    /// Refuses `POST /v1/speak` and the WebSocket upgrade (after the auth check) with `status`,
    /// `body` and, when set, `retry-after: <secs>`.
    Status {
        /// HTTP status.
        status: u16,
        /// Response body (JSON in Deepgram's shapes, or anything).
        body: String,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
    },
    /// REST: 200 with `content-type: application/json` and a body that is not audio.
    /// WebSocket: junk text frames (invalid JSON, unknown types, arrays) before every real one.
    Garbage,
    /// REST: after this many chunks the body stream fails (the chunked body is cut off).
    /// WebSocket: after this many binary frames the TCP connection is dropped (no close frame).
    Truncate {
        /// Chunks (frames) sent first.
        after_chunks: usize,
    },
    /// REST: the response head is sent, then nothing. WebSocket: accepted, reads, never answers.
    Silent,
    /// After the first audio chunk (REST) or frame (WebSocket), waits for
    /// [`DeepgramTtsFake::release`] before sending more (the socket is still read meanwhile).
    HoldAfterFirstChunk,
    /// WebSocket: after this many binary frames, closes with `code` and `reason`.
    CloseAfterAudio {
        /// Frames sent first.
        frames: usize,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct TtsFakeOptions {
    /// The key it accepts (`Token <key>` or `Bearer <key>`).
    pub api_key: String,
    /// Misbehaviour.
    pub fault: TtsFault,
    /// Tone per character (before `speed`).
    pub ms_per_char: u32,
    /// Bytes per streamed chunk (REST) or binary frame (WebSocket).
    pub chunk_bytes: usize,
    /// Pause between chunks.
    pub chunk_delay: Duration,
    /// WebSocket: close with 1000 after this many `Flushed` (a server that ends idle sockets).
    pub close_after_flushes: Option<usize>,
}

impl Default for TtsFakeOptions {
    fn default() -> Self {
        Self {
            api_key: "test-key".to_owned(),
            fault: TtsFault::None,
            ms_per_char: DEFAULT_MS_PER_CHAR,
            chunk_bytes: 960,
            chunk_delay: Duration::from_millis(2),
            close_after_flushes: None,
        }
    }
}

impl TtsFakeOptions {
    /// Options accepting `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            ..Self::default()
        }
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: TtsFault) -> Self {
        self.fault = fault;
        self
    }

    /// Sets the chunk size.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n.max(1);
        self
    }

    /// Sets the pause between chunks.
    pub fn chunk_delay(mut self, d: Duration) -> Self {
        self.chunk_delay = d;
        self
    }

    /// Closes sockets after `n` flushes.
    pub fn close_after_flushes(mut self, n: usize) -> Self {
        self.close_after_flushes = Some(n);
        self
    }
}

/// One `POST /v1/speak` as received and answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeakLog {
    /// Method, path and headers.
    pub request: SeenRequest,
    /// The body, verbatim (lossy UTF-8).
    pub body: String,
    /// The status answered.
    pub status: u16,
    /// Audio chunks sent.
    pub chunks_sent: usize,
    /// Audio bytes sent.
    pub bytes_sent: usize,
    /// The whole audio was sent.
    pub completed: bool,
    /// The client went away before the audio ended (a send failed).
    pub client_gone: bool,
}

/// One WebSocket connection as received and answered.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamLog {
    /// The upgrade request.
    pub request: SeenRequest,
    /// Every text frame received, verbatim.
    pub texts: Vec<String>,
    /// The `text` of every `Speak`, in order.
    pub speaks: Vec<String>,
    /// `Flush` messages received.
    pub flushes: usize,
    /// `Clear` messages received.
    pub clears: usize,
    /// `Close` messages received.
    pub closes: usize,
    /// Every text frame sent, verbatim.
    pub sent: Vec<String>,
    /// Binary frames sent.
    pub audio_frames_sent: usize,
    /// Audio bytes sent.
    pub audio_bytes_sent: usize,
    /// The close code the fake sent, if it closed.
    pub closed_with: Option<u16>,
    /// The connection ended (either side).
    pub ended: bool,
}

#[derive(Debug)]
struct Shared {
    opts: TtsFakeOptions,
    rest: Mutex<Vec<Arc<Mutex<SpeakLog>>>>,
    streams: Mutex<Vec<Arc<Mutex<StreamLog>>>>,
    listings: AtomicUsize,
    counter: AtomicUsize,
    release: watch::Sender<bool>,
}

impl Shared {
    fn request_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed) + 1;
        format!("5e1f0000-0000-4000-8000-{n:012}")
    }
}

/// The fake service (REST, WebSocket and model listing on one port). Stops when dropped.
#[derive(Debug)]
pub struct DeepgramTtsFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl DeepgramTtsFake {
    /// Starts a fake accepting `api_key`, behaving.
    pub async fn start(api_key: impl Into<String>) -> Self {
        Self::with_options(TtsFakeOptions::new(api_key)).await
    }

    /// Starts a fake with `options`.
    pub async fn with_options(opts: TtsFakeOptions) -> Self {
        let shared = Arc::new(Shared {
            opts,
            rest: Mutex::default(),
            streams: Mutex::default(),
            listings: AtomicUsize::new(0),
            counter: AtomicUsize::new(0),
            release: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/v1/speak", post(rest_speak).get(ws_speak))
            .route("/v1/models", get(models))
            .with_state(shared.clone());
        let http = HttpFake::start(router).await;
        Self { http, shared }
    }

    /// `http://127.0.0.1:port`, the `base_url` to configure the plugin with (the WebSocket is
    /// `ws://` on the same port).
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// Every `POST /v1/speak` so far, in arrival order.
    pub fn rest_requests(&self) -> Vec<SpeakLog> {
        let logs = self.shared.rest.lock().expect("rest lock");
        logs.iter()
            .map(|l| l.lock().expect("log lock").clone())
            .collect()
    }

    /// Every accepted WebSocket connection so far, in accept order.
    pub fn sessions(&self) -> Vec<StreamLog> {
        let logs = self.shared.streams.lock().expect("streams lock");
        logs.iter()
            .map(|l| l.lock().expect("log lock").clone())
            .collect()
    }

    /// How many times `GET /v1/models` was served.
    pub fn model_listings(&self) -> usize {
        self.shared.listings.load(Ordering::SeqCst)
    }

    /// Lets [`TtsFault::HoldAfterFirstChunk`] continue (for every held and later response).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Waits (polling, at most `timeout`) until REST request `index` exists and `pred` holds.
    pub async fn wait_for_rest(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SpeakLog) -> bool,
    ) -> Option<SpeakLog> {
        poll(timeout, || {
            self.rest_requests().into_iter().nth(index).filter(&pred)
        })
        .await
    }

    /// Waits (polling, at most `timeout`) until connection `index` exists and `pred` holds.
    pub async fn wait_for_session(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&StreamLog) -> bool,
    ) -> Option<StreamLog> {
        poll(timeout, || {
            self.sessions().into_iter().nth(index).filter(&pred)
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

/// The fake's speech for `text`: a 440 Hz tone of `ms_per_char` per character (at least one)
/// divided by `speed`, in `encoding` (wire name) at `sample_rate`. linear16 is PCM16 LE, mulaw
/// and alaw are G.711; mp3, opus, flac and aac are deterministic stand-in bytes (starting with
/// the format's magic) of a plausible size. No container.
pub fn speech(
    text: &str,
    encoding: &str,
    sample_rate: u32,
    speed: f64,
    ms_per_char: u32,
) -> Vec<u8> {
    let chars = text.chars().count().max(1) as f64;
    let ms = chars * f64::from(ms_per_char) / speed.clamp(0.1, 10.0);
    let rate = if sample_rate == 0 {
        24_000
    } else {
        sample_rate
    };
    let n = (ms * f64::from(rate) / 1000.0).round().max(1.0) as usize;
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(rate);
    let sample = |i: usize| ((i as f64 * step).sin() * 8_000.0) as i16;
    match encoding {
        "linear16" => (0..n).flat_map(|i| sample(i).to_le_bytes()).collect(),
        "mulaw" => (0..n).map(|i| mulaw(sample(i))).collect(),
        "alaw" => (0..n).map(|i| alaw(sample(i))).collect(),
        other => {
            // ~32 kbit/s of stand-in bytes.
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

/// G.711 mu-law of one sample.
fn mulaw(s: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut v = i32::from(s);
    let sign = if v < 0 {
        v = -v;
        0x80
    } else {
        0
    };
    v = (v + BIAS).min(0x7FFF);
    let exp = (7 - (v.leading_zeros() as i32 - 17)).clamp(0, 7);
    let mant = (v >> (exp + 3)) & 0x0F;
    !(sign | (exp << 4) as u8 | mant as u8)
}

/// G.711 A-law of one sample.
fn alaw(s: i16) -> u8 {
    let mut v = i32::from(s) >> 3;
    let sign = if v >= 0 {
        0x80
    } else {
        v = -v - 1;
        0
    };
    let v = v.min(0x0FFF);
    let out = if v < 32 {
        (v >> 1) as u8
    } else {
        let exp = (31 - v.leading_zeros() as i32 - 4).clamp(1, 7);
        ((exp << 4) as u8) | ((v >> exp) & 0x0F) as u8
    };
    (sign | out) ^ 0x55
}

/// A 44-byte PCM WAV header for `data_len` bytes (streamed: sizes as the vendor writes them).
fn wav_header(rate: u32, bits: u16, format: u16, data_len: u32) -> Vec<u8> {
    let block = bits / 8;
    let mut h = Vec::with_capacity(44);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&rate.to_le_bytes());
    h.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
    h.extend_from_slice(&block.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// Query parameters, percent-decoded.
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    let q = uri.query().unwrap_or("");
    q.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (super::percent_decode(k), super::percent_decode(v))
        })
        .collect()
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

/// An error answer: `status`, a JSON body, `dg-request-id`.
fn refuse(status: u16, body: Value, request_id: &str) -> Response {
    let mut r = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        r.headers_mut().insert("dg-request-id", v);
    }
    r
}

fn bad_request(msg: impl Into<String>, request_id: &str) -> Response {
    refuse(
        400,
        json!({"err_code": "Bad Request", "err_msg": msg.into(), "request_id": request_id}),
        request_id,
    )
}

/// `None` when the credential is right; the 401 otherwise (`required`: a missing header too).
fn check_auth(
    headers: &HeaderMap,
    key: &str,
    request_id: &str,
    required: bool,
) -> Option<Response> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let ok = match auth {
        None => !required,
        Some(a) => ["Token ", "Bearer "].iter().any(|p| {
            a.strip_prefix(p)
                .is_some_and(|k| !key.is_empty() && k == key)
        }),
    };
    (!ok).then(|| {
        refuse(
            401,
            json!({"err_code": "INVALID_AUTH", "err_msg": "Invalid credentials.", "request_id": request_id}),
            request_id,
        )
    })
}

fn fault_status(fault: &TtsFault, request_id: &str) -> Option<Response> {
    let TtsFault::Status {
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
    let h = r.headers_mut();
    if let Some(s) = retry_after {
        h.insert("retry-after", HeaderValue::from(*s));
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("dg-request-id", v);
    }
    Some(r)
}

/// The synthesis parameters of a request.
#[derive(Debug, Clone)]
struct Params {
    model: String,
    encoding: String,
    container: String,
    sample_rate: u32,
    speed: f64,
}

fn valid_model(m: &str) -> bool {
    // `aura-<voice>-<lang>` or `aura-2-<voice>-<lang>` (TTS_PROTOCOLS.md §1).
    let parts: Vec<&str> = m.split('-').collect();
    parts.first() == Some(&"aura")
        && matches!(parts.len(), 3 | 4)
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric()))
        && (parts.len() == 3 || parts[1] == "2")
}

fn parse_params(uri: &Uri, ws: bool) -> Result<Params, String> {
    let pairs = query_pairs(uri);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let model = get("model").unwrap_or("aura-asteria-en").to_owned();
    if !valid_model(&model) {
        return Err(format!("No such model: {model}"));
    }
    let default_encoding = if ws { "linear16" } else { "mp3" };
    let encoding = get("encoding").unwrap_or(default_encoding).to_owned();
    let allowed = if ws { WS_ENCODINGS } else { REST_ENCODINGS };
    if !allowed.contains(&encoding.as_str()) {
        return Err(format!("Invalid query string: encoding={encoding}"));
    }
    let raw = matches!(encoding.as_str(), "linear16" | "mulaw" | "alaw");
    let container = match (get("container"), encoding.as_str()) {
        (Some(c), _) if ws && c != "none" => {
            return Err(format!("Invalid query string: container={c}"))
        }
        (Some(c @ ("none" | "wav")), _) if raw => c.to_owned(),
        (Some(c @ ("none" | "ogg")), "opus") => c.to_owned(),
        (Some("none"), _) => "none".to_owned(),
        (Some(c), e) => return Err(format!("container={c} is not available for encoding={e}")),
        (None, _) if ws => "none".to_owned(),
        (None, _) if raw => "wav".to_owned(),
        (None, "opus") => "ogg".to_owned(),
        (None, _) => "none".to_owned(),
    };
    let sample_rate = match get("sample_rate") {
        None => match encoding.as_str() {
            "mulaw" | "alaw" if !ws => 8_000,
            "mp3" | "aac" => 22_050,
            "opus" => 48_000,
            _ => 24_000,
        },
        Some(v) => {
            let r: u32 = v
                .parse()
                .map_err(|_| format!("Invalid query string: sample_rate={v}"))?;
            let ok = match encoding.as_str() {
                "linear16" => SAMPLE_RATES.contains(&r),
                "mulaw" | "alaw" if ws => SAMPLE_RATES.contains(&r),
                "mulaw" | "alaw" => [8_000, 16_000].contains(&r),
                // Not configurable for compressed formats (docs "Audio Format Combinations").
                _ => false,
            };
            if !ok {
                return Err(format!(
                    "sample_rate={r} is not supported for encoding={encoding}"
                ));
            }
            r
        }
    };
    let speed = match get("speed") {
        None => 1.0,
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|s| (0.7..=1.5).contains(s))
            .ok_or_else(|| format!("Invalid query string: speed={v} (0.7–1.5)"))?,
    };
    if let Some(b) = get("bit_rate") {
        if b.parse::<u64>().is_err() || raw {
            return Err(format!("Invalid query string: bit_rate={b}"));
        }
    }
    Ok(Params {
        model,
        encoding,
        container,
        sample_rate,
        speed,
    })
}

fn content_type(p: &Params) -> &'static str {
    match (p.encoding.as_str(), p.container.as_str()) {
        (_, "wav") => "audio/wav",
        ("linear16", _) => "audio/l16",
        ("mulaw", _) => "audio/basic",
        ("alaw", _) => "audio/x-alaw-basic",
        ("mp3", _) => "audio/mpeg",
        ("opus", _) => "audio/ogg",
        ("flac", _) => "audio/flac",
        _ => "audio/aac",
    }
}

async fn rest_speak(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let rid = st.request_id();
    let log = Arc::new(Mutex::new(SpeakLog {
        request: seen(&uri, &headers),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 0,
        chunks_sent: 0,
        bytes_sent: 0,
        completed: false,
        client_gone: false,
    }));
    st.rest.lock().expect("rest lock").push(log.clone());
    let answer = |r: Response| {
        log.lock().expect("log lock").status = r.status().as_u16();
        r
    };
    if let Some(r) = check_auth(&headers, &st.opts.api_key, &rid, true) {
        return answer(r);
    }
    if let Some(r) = fault_status(&st.opts.fault, &rid) {
        return answer(r);
    }
    let p = match parse_params(&uri, false) {
        Ok(p) => p,
        Err(m) => return answer(bad_request(m, &rid)),
    };
    let text = match serde_json::from_slice::<Value>(&body) {
        Err(e) => {
            return answer(refuse(
                400,
                json!({"category": "INVALID_JSON", "message": "Invalid JSON submitted.",
                       "details": format!("Json deserialize error: {e}"), "request_id": rid}),
                &rid,
            ))
        }
        Ok(v) => match v.get("text") {
            Some(Value::String(t)) => t.clone(),
            _ => {
                return answer(refuse(
                    400,
                    json!({"category": "INVALID_JSON", "message": "Invalid JSON submitted.",
                           "details": "Json deserialize error: missing field `text`", "request_id": rid}),
                    &rid,
                ))
            }
        },
    };
    if text.trim().is_empty() {
        return answer(bad_request("The text field must not be empty.", &rid));
    }
    let fault = st.opts.fault.clone();
    let ok = |ct: &'static str, body: Body| {
        let mut r = (StatusCode::OK, [("content-type", ct)], body).into_response();
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&rid) {
            h.insert("dg-request-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&p.model) {
            h.insert("dg-model-name", v);
        }
        h.insert("dg-char-count", HeaderValue::from(text.chars().count()));
        r
    };
    match fault {
        TtsFault::Garbage => {
            log.lock().expect("log lock").status = 200;
            return ok(
                "application/json",
                Body::from(r#"{"metadata": {"oops": tru"#),
            );
        }
        TtsFault::Silent => {
            log.lock().expect("log lock").status = 200;
            let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            return ok(content_type(&p), Body::from_stream(never));
        }
        _ => {}
    }
    let mut audio = speech(
        &text,
        &p.encoding,
        p.sample_rate,
        p.speed,
        st.opts.ms_per_char,
    );
    if p.container == "wav" {
        let (bits, format) = match p.encoding.as_str() {
            "mulaw" => (8, 7),
            "alaw" => (8, 6),
            _ => (16, 1),
        };
        let mut with_header = wav_header(p.sample_rate, bits, format, audio.len() as u32);
        with_header.append(&mut audio);
        audio = with_header;
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let opts = st.opts.clone();
    let release = st.release.subscribe();
    let plog = log.clone();
    tokio::spawn(produce(audio, tx, opts, release, plog));
    log.lock().expect("log lock").status = 200;
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    ok(content_type(&p), Body::from_stream(stream))
}

/// Returns once [`DeepgramTtsFake::release`] was called (never, if the fake is gone).
async fn released(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Waits `d` between chunks. Zero sends at once: tokio's timer rounds every sleep, even a zero
/// one, up to its next 1 ms tick, which would add up to a millisecond of jitter to a
/// first-byte measurement.
async fn pace(d: Duration) {
    if d.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::time::sleep(d).await;
    }
}

/// Streams `audio` in chunks into `tx`, applying the fault; records progress.
async fn produce(
    audio: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    opts: TtsFakeOptions,
    mut release: watch::Receiver<bool>,
    log: Arc<Mutex<SpeakLog>>,
) {
    let chunks: Vec<Bytes> = audio
        .chunks(opts.chunk_bytes.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if let TtsFault::Truncate { after_chunks } = opts.fault {
            if i >= after_chunks {
                let _ = tx.send(Err(std::io::Error::other("fake: truncated"))).await;
                return;
            }
        }
        if i > 0 {
            if opts.fault == TtsFault::HoldAfterFirstChunk && i == 1 {
                tokio::select! {
                    () = released(&mut release) => {}
                    () = tx.closed() => {
                        log.lock().expect("log lock").client_gone = true;
                        return;
                    }
                }
            }
            pace(opts.chunk_delay).await;
        }
        let len = chunk.len();
        if tx.send(Ok(chunk)).await.is_err() {
            log.lock().expect("log lock").client_gone = true;
            return;
        }
        let mut l = log.lock().expect("log lock");
        l.chunks_sent += 1;
        l.bytes_sent += len;
    }
    // Every chunk was handed to the server (dropping `tx` ends the body).
    log.lock().expect("log lock").completed = true;
}

/// The `tts` (and a token `stt`) models of `GET /v1/models` (@deepgram/sdk
/// `GetModelsResponse.ts` shape).
pub fn model_listing() -> Value {
    let tts = |name: &str, canonical: &str, arch: &str, langs: &[&str], accent: &str, tag: &str| {
        json!({
            "name": name, "canonical_name": canonical, "architecture": arch,
            "languages": langs, "version": "2025-04-07.0",
            "uuid": format!("00000000-0000-4000-9000-{:012}", canonical.len()),
            "metadata": {"accent": accent, "color": "#C58DFF",
                         "image": format!("https://static.example/{name}.png"),
                         "sample": format!("https://static.example/{name}.wav"),
                         "tags": [tag]}
        })
    };
    json!({
        "stt": [{"name": "nova-3", "canonical_name": "nova-3", "architecture": "nova-3",
                 "languages": ["en"], "version": "2024-12-20.0", "uuid": "1dbdfb4d",
                 "batch": true, "streaming": true, "formatted_output": true}],
        "tts": [
            tts("thalia", "aura-2-thalia-en", "aura-2", &["en", "en-US"], "American", "feminine"),
            tts("apollo", "aura-2-apollo-en", "aura-2", &["en", "en-US"], "American", "masculine"),
            tts("celeste", "aura-2-celeste-es", "aura-2", &["es", "es-CO"], "Colombian", "feminine"),
            tts("asteria", "aura-asteria-en", "aura", &["en", "en-US"], "American", "feminine"),
        ]
    })
}

async fn models(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let rid = st.request_id();
    if let Some(r) = check_auth(&headers, &st.opts.api_key, &rid, false) {
        return r;
    }
    st.listings.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        model_listing().to_string(),
    )
        .into_response()
}

async fn ws_speak(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let rid = st.request_id();
    if let Some(r) = check_auth(&headers, &st.opts.api_key, &rid, true) {
        return r;
    }
    if let Some(r) = fault_status(&st.opts.fault, &rid) {
        return r;
    }
    let p = match parse_params(&uri, true) {
        Ok(p) => p,
        Err(m) => return bad_request(m, &rid),
    };
    let log = Arc::new(Mutex::new(StreamLog {
        request: seen(&uri, &headers),
        texts: Vec::new(),
        speaks: Vec::new(),
        flushes: 0,
        clears: 0,
        closes: 0,
        sent: Vec::new(),
        audio_frames_sent: 0,
        audio_bytes_sent: 0,
        closed_with: None,
        ended: false,
    }));
    st.streams.lock().expect("streams lock").push(log.clone());
    let st2 = st.clone();
    let rid2 = rid.clone();
    let mut r = upgrade.on_upgrade(move |ws| async move {
        serve(ws, p, st2, rid2, log.clone()).await;
        log.lock().expect("log lock").ended = true;
    });
    if let Ok(v) = HeaderValue::from_str(&rid) {
        r.headers_mut().insert("dg-request-id", v);
    }
    r
}

/// Something queued for the client.
enum Out {
    Audio(Bytes),
    Flushed(u64),
}

async fn serve(
    mut ws: WebSocket,
    p: Params,
    st: Arc<Shared>,
    request_id: String,
    log: Arc<Mutex<StreamLog>>,
) {
    let opts = &st.opts;
    let silent = opts.fault == TtsFault::Silent;
    let mut release = st.release.subscribe();
    let metadata = json!({"type": "Metadata", "request_id": request_id, "model_name": p.model,
        "model_version": "2025-04-07.0", "model_uuid": "0d1b7e0c-aaaa-bbbb-cccc-000000000001"});
    if !silent
        && send_text(&mut ws, &log, opts, metadata.to_string())
            .await
            .is_err()
    {
        return;
    }
    let mut buffer = String::new();
    let mut queue: VecDeque<Out> = VecDeque::new();
    let mut seq: u64 = 0;
    let mut frames = 0usize;
    let mut flushes_sent = 0usize;
    let mut closing = false;
    let mut held = false;
    loop {
        let ready = !queue.is_empty() && !held;
        tokio::select! {
            msg = ws.recv() => {
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                };
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
                {
                    let mut l = log.lock().expect("log lock");
                    l.texts.push(text.clone());
                    match kind.as_str() {
                        "Speak" => l.speaks.push(v.get("text").and_then(Value::as_str).unwrap_or("").to_owned()),
                        "Flush" => l.flushes += 1,
                        "Clear" => l.clears += 1,
                        "Close" => l.closes += 1,
                        _ => {}
                    }
                }
                if silent {
                    continue;
                }
                match kind.as_str() {
                    "Speak" => {
                        if let Some(t) = v.get("text").and_then(Value::as_str) {
                            buffer.push_str(t);
                        }
                    }
                    "Flush" => {
                        if !buffer.is_empty() {
                            let audio = speech(&buffer, &p.encoding, p.sample_rate, p.speed, opts.ms_per_char);
                            buffer.clear();
                            for c in audio.chunks(opts.chunk_bytes.max(1)) {
                                queue.push_back(Out::Audio(Bytes::copy_from_slice(c)));
                            }
                        }
                        queue.push_back(Out::Flushed(seq));
                        seq += 1;
                    }
                    "Clear" => {
                        buffer.clear();
                        queue.clear();
                        held = false;
                        let m = json!({"type": "Cleared", "sequence_id": seq});
                        seq += 1;
                        if send_text(&mut ws, &log, opts, m.to_string()).await.is_err() {
                            return;
                        }
                    }
                    "Close" => closing = true,
                    _ => {
                        let m = json!({"type": "Warning", "description": format!("Unknown message type {kind:?}"), "code": "UNKNOWN_MESSAGE"});
                        if send_text(&mut ws, &log, opts, m.to_string()).await.is_err() {
                            return;
                        }
                    }
                }
            }
            () = released(&mut release), if held => held = false,
            () = pace(opts.chunk_delay), if ready => {
                match queue.pop_front() {
                    Some(Out::Audio(b)) => {
                        if let TtsFault::Truncate { after_chunks } = opts.fault {
                            if frames >= after_chunks {
                                // Drop the TCP connection without a close frame.
                                return;
                            }
                        }
                        if let TtsFault::CloseAfterAudio { frames: n, code, reason } = &opts.fault {
                            if frames >= *n {
                                close(&mut ws, &log, *code, reason).await;
                                return;
                            }
                        }
                        let len = b.len();
                        if ws.send(Message::Binary(b)).await.is_err() {
                            return;
                        }
                        frames += 1;
                        {
                            let mut l = log.lock().expect("log lock");
                            l.audio_frames_sent += 1;
                            l.audio_bytes_sent += len;
                        }
                        if frames == 1 && opts.fault == TtsFault::HoldAfterFirstChunk && !*st.release.borrow() {
                            held = true;
                        }
                    }
                    Some(Out::Flushed(n)) => {
                        let m = json!({"type": "Flushed", "sequence_id": n});
                        if send_text(&mut ws, &log, opts, m.to_string()).await.is_err() {
                            return;
                        }
                        flushes_sent += 1;
                        if opts.close_after_flushes.is_some_and(|max| flushes_sent >= max) {
                            close(&mut ws, &log, 1000, "").await;
                            return;
                        }
                    }
                    None => {}
                }
            }
        }
        if closing && (queue.is_empty() || held) {
            close(&mut ws, &log, 1000, "").await;
            return;
        }
    }
}

async fn close(ws: &mut WebSocket, log: &Mutex<StreamLog>, code: u16, reason: &str) {
    log.lock().expect("log lock").closed_with = Some(code);
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    let _ = ws.send(Message::Close(Some(frame))).await;
    // Let the client finish the closing handshake (bounded).
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = ws.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

async fn send_text(
    ws: &mut WebSocket,
    log: &Mutex<StreamLog>,
    opts: &TtsFakeOptions,
    text: String,
) -> Result<(), axum::Error> {
    if opts.fault == TtsFault::Garbage {
        for g in [
            "this is not json",
            r#"{"type":"Brand-New","x":1}"#,
            "[1,2,3]",
            r#"{"type":5}"#,
            r#"{"no_type":true}"#,
            r#"{"type":"Warning","code":7}"#,
        ] {
            log.lock().expect("log lock").sent.push(g.to_owned());
            ws.send(Message::Text(g.into())).await?;
        }
    }
    log.lock().expect("log lock").sent.push(text.clone());
    ws.send(Message::Text(text.into())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g711_matches_reference_values() {
        // Silence and full scale, from the G.711 tables.
        assert_eq!(mulaw(0), 0xFF);
        assert_eq!(mulaw(-1), 0x7F);
        assert_eq!(mulaw(i16::MAX), 0x80);
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(alaw(-1), 0x55);
        assert_eq!(alaw(i16::MAX), 0xAA);
    }

    #[test]
    fn speech_length_follows_text_and_speed() {
        let a = speech("abcd", "linear16", 16_000, 1.0, 10);
        assert_eq!(a.len(), 40 * 16 * 2);
        let fast = speech("abcd", "linear16", 16_000, 1.25, 10);
        assert_eq!(fast.len(), 32 * 16 * 2);
        assert_eq!(speech("abcd", "mulaw", 8_000, 1.0, 10).len(), 320);
        assert!(speech("abcd", "mp3", 0, 1.0, 10).starts_with(&[0xFF, 0xFB]));
    }

    #[test]
    fn query_validation() {
        let ok = |q: &str, ws| parse_params(&format!("/v1/speak?{q}").parse().unwrap(), ws);
        let p = ok(
            "model=aura-2-thalia-en&encoding=linear16&container=none&sample_rate=16000",
            false,
        )
        .unwrap();
        assert_eq!((p.container.as_str(), p.sample_rate), ("none", 16_000));
        assert_eq!(ok("encoding=linear16", false).unwrap().container, "wav");
        assert_eq!(ok("", false).unwrap().encoding, "mp3");
        assert!(ok("model=nova-3", false).is_err());
        assert!(ok("encoding=mp3&sample_rate=24000", false).is_err());
        assert!(ok("encoding=mp3", true).is_err());
        assert!(ok("encoding=mulaw&sample_rate=24000", false).is_err());
        assert!(ok("speed=2", true).is_err());
        assert!(ok("encoding=linear16&container=wav", true).is_err());
    }
}
