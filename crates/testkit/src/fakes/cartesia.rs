//! A fake of Cartesia's TTS API on 127.0.0.1: `POST /tts/bytes`, the `/tts/websocket`
//! WebSocket and `GET /voices`, all on one port (as on `api.cartesia.ai`, where the WebSocket
//! URL is the REST base with `wss://`).
//!
//! It follows the protocol as documented (`TTS_PROTOCOLS.md` §5; Cartesia's Python SDK 2.0.17
//! and 4.0.1 for message shapes):
//! - auth: REST `X-API-Key: <key>` (or `Authorization: Bearer <key>`); WebSocket
//!   `?api_key=<key>` (or the Bearer header). A version is required: `Cartesia-Version` header,
//!   or on the WebSocket `?cartesia_version=` (which wins). A bad key is 401; no version is 400
//!   (how the real service treats a missing version is UNCONFIRMED).
//! - error bodies follow the version: from `2026-03-01` JSON
//!   `{"error_code","title","message","request_id"}`, before it plain text `Title: Message`.
//! - generation requests are validated: `model_id` (a `sonic…` id), `transcript` (a string,
//!   non-empty over REST), `voice` (`{"mode":"id","id":…}`, optional `__experimental_controls`,
//!   or a bare id string), `output_format` (`raw` with `pcm_s16le|pcm_f32le|pcm_mulaw|pcm_alaw`,
//!   `wav`, or `mp3` with `bit_rate`; REST only for the last two) at 8000, 16000, 22050, 24000,
//!   44100 or 48000 Hz; invalid ones get 400 (REST) or an `error` message (WebSocket).
//! - audio is deterministic ([`expected_audio`]): a 440 Hz tone of
//!   [`CartesiaOptions::ms_per_char`] per character of the transcript, in the requested encoding
//!   and rate, streamed in chunks of [`CartesiaOptions::chunk_ms`].
//! - WebSocket: text frames are generation requests (accumulated per `context_id` while
//!   `continue` is true; generated when a request with `continue: false` ends the context) or
//!   `{"context_id":…,"cancel":true}`. Replies are `chunk` (base64 `data`, `step_time`,
//!   `status_code: 206`, `done: false`), `timestamps` (with `add_timestamps`), then `done`;
//!   contexts run concurrently and interleave.
//! - `GET /voices?limit=&starting_after=`: `{"data":[…],"has_more":…,"next_page":…}`.
//!
//! `POST /tts/sse` is not served (the plugin does not use it). Every request is recorded, and
//! [`Fault`] makes the fake misbehave.

use super::{HttpFake, SeenRequest};
use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// Sample rates the API accepts.
pub const SAMPLE_RATES: [u32; 6] = [8_000, 16_000, 22_050, 24_000, 44_100, 48_000];

/// How the fake misbehaves (on every request and connection).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// REST answers, and WebSocket upgrades are refused, with this status, extra headers and
    /// body (`None`: the version's error body).
    Status {
        /// HTTP status.
        status: u16,
        /// Extra headers (`retry-after`, …).
        headers: Vec<(String, String)>,
        /// Body; `None` builds one in the version's error format.
        body: Option<String>,
    },
    /// Every generation fails: REST with this status and the version's error body, WebSocket
    /// with an `error` message for the context.
    GenerationError {
        /// The status (`status_code` on the WebSocket).
        status: u16,
        /// The message.
        message: String,
    },
    /// REST: `200` with `application/json` garbage instead of audio. WebSocket: malformed
    /// frames (not JSON, a JSON array, an unknown type, a binary frame, a chunk without
    /// context) before every real message.
    Garbage,
    /// After this many audio chunks the connection is dropped: REST mid-body (the declared
    /// length not reached), WebSocket without a close frame.
    Truncate {
        /// Chunks sent first.
        after_chunks: usize,
    },
    /// WebSocket: after this many audio chunks, a close frame with `code`. REST: as `Truncate`.
    CloseAfterChunks {
        /// Chunks sent first.
        after_chunks: usize,
        /// Close code.
        code: u16,
    },
    /// REST: headers, then no body bytes ever. WebSocket: reads everything, never answers.
    Silent,
    /// After the first audio chunk of each generation, wait for [`CartesiaFake::release`].
    HoldAfterFirstChunk,
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct CartesiaOptions {
    /// The API key it accepts.
    pub api_key: String,
    /// Misbehaviour.
    pub fault: Fault,
    /// Tone per transcript character.
    pub ms_per_char: u32,
    /// Audio per chunk.
    pub chunk_ms: u32,
    /// Pause between chunks (zero: none).
    pub chunk_delay: Duration,
    /// The voices `GET /voices` lists (Cartesia voice objects).
    pub voices: Vec<Value>,
    /// WebSocket: close (1000, "idle timeout") after this long without a client message,
    /// like the real service's inactivity timeout.
    pub idle_close: Option<Duration>,
    /// WebSocket: close (1000) after this many contexts have completed on a connection.
    pub close_after_contexts: Option<usize>,
}

impl Default for CartesiaOptions {
    fn default() -> Self {
        Self {
            api_key: "test-cartesia-key".to_owned(),
            fault: Fault::None,
            ms_per_char: 20,
            chunk_ms: 40,
            chunk_delay: Duration::ZERO,
            voices: default_voices(),
            idle_close: None,
            close_after_contexts: None,
        }
    }
}

impl CartesiaOptions {
    /// Options accepting `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            ..Self::default()
        }
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }
}

/// Three voices in the shape `GET /voices` returns them.
pub fn default_voices() -> Vec<Value> {
    vec![
        json!({"id": "a0e99841-438c-4a64-b679-ae501e7d6091", "is_owner": false,
            "name": "Barbershop Man", "description": "Smooth male voice",
            "created_at": "2024-05-01T00:00:00Z", "language": "en"}),
        json!({"id": "6ccbfb76-1fc6-48f7-b71d-91ac6298247b", "is_owner": false,
            "name": "Tessa", "description": "Warm female voice", "gender": "feminine",
            "created_at": "2025-01-01T00:00:00Z", "language": "en"}),
        json!({"id": "00000000-0000-4000-8000-0000000000de", "is_owner": true,
            "name": "Klaus", "description": "", "language": "de",
            "created_at": "2025-02-02T00:00:00Z",
            "preview_file_url": "https://example.invalid/klaus.wav"}),
    ]
}

/// A recorded REST request.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpLog {
    /// `GET` or `POST`.
    pub method: String,
    /// Path, query and headers.
    pub request: SeenRequest,
    /// The JSON body, when there was one.
    pub body: Option<Value>,
    /// Audio chunks sent.
    pub chunks_sent: usize,
    /// The whole response body was produced.
    pub finished: bool,
    /// The client went away before the body was complete.
    pub dropped: bool,
}

/// What one WebSocket connection received and sent.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WsLog {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// Every text frame received, parsed (non-JSON frames as strings).
    pub received: Vec<Value>,
    /// Context ids cancelled by the client.
    pub cancels: Vec<String>,
    /// Context ids generated to the end (`done` sent).
    pub completed: Vec<String>,
    /// Audio chunks sent.
    pub chunks_sent: usize,
    /// The client sent a close frame.
    pub client_closed: bool,
    /// The connection ended (either side).
    pub ended: bool,
}

#[derive(Debug, Default)]
struct Logs {
    http: Vec<Arc<Mutex<HttpLog>>>,
    ws: Vec<Arc<Mutex<WsLog>>>,
    ws_upgrades: Vec<SeenRequest>,
}

#[derive(Debug)]
struct Shared {
    opts: CartesiaOptions,
    logs: Mutex<Logs>,
    release: watch::Sender<bool>,
    requests: AtomicUsize,
}

/// The fake service. Stops when dropped.
#[derive(Debug)]
pub struct CartesiaFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl CartesiaFake {
    /// Starts a fake accepting `api_key`, behaving.
    pub async fn start(api_key: impl Into<String>) -> Self {
        Self::with_options(CartesiaOptions::new(api_key)).await
    }

    /// Starts a fake with `options`.
    pub async fn with_options(opts: CartesiaOptions) -> Self {
        let shared = Arc::new(Shared {
            opts,
            logs: Mutex::default(),
            release: watch::channel(false).0,
            requests: AtomicUsize::new(0),
        });
        let router = axum::Router::new()
            .route("/tts/bytes", axum::routing::post(bytes_handler))
            .route("/tts/websocket", axum::routing::get(ws_handler))
            .route("/voices", axum::routing::get(voices_handler))
            .with_state(shared.clone());
        Self {
            http: HttpFake::start(router).await,
            shared,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// `http://127.0.0.1:port`, the `base_url` to configure the plugin with (the WebSocket is
    /// at `ws://127.0.0.1:port/tts/websocket`).
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// Lets every generation held by [`Fault::HoldAfterFirstChunk`] continue (now and later).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Every REST request so far (`/tts/bytes` and `/voices`), in arrival order.
    pub fn http_requests(&self) -> Vec<HttpLog> {
        let logs = self.shared.logs.lock().expect("logs");
        logs.http
            .iter()
            .map(|l| l.lock().expect("log").clone())
            .collect()
    }

    /// How many `GET /voices` requests arrived.
    pub fn voices_requests(&self) -> usize {
        self.http_requests()
            .iter()
            .filter(|r| r.request.path() == "/voices")
            .count()
    }

    /// Every WebSocket upgrade request, accepted or not.
    pub fn ws_upgrades(&self) -> Vec<SeenRequest> {
        self.shared.logs.lock().expect("logs").ws_upgrades.clone()
    }

    /// A snapshot of every accepted WebSocket connection's log, in accept order.
    pub fn ws_sessions(&self) -> Vec<WsLog> {
        let logs = self.shared.logs.lock().expect("logs");
        logs.ws
            .iter()
            .map(|l| l.lock().expect("log").clone())
            .collect()
    }

    /// Requests of any kind received (REST requests and WebSocket upgrades).
    pub fn request_count(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Polls (every 10 ms, at most `timeout`) until `pred` holds for the fake; returns whether
    /// it did.
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&Self) -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if pred(self) {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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

/// Query parameters, percent-decoded (`+` is a space).
fn query(uri: &Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or("")
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                b.get(i + 1).copied().and_then(hex),
                b.get(i + 2).copied().and_then(hex),
            ) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `version` uses the JSON error shape (2026-03-01 and later).
fn json_errors(version: &str) -> bool {
    version >= "2026-03-01"
}

/// An error body in the version's format.
fn error_body(version: &str, status: u16, message: &str) -> (String, &'static str) {
    let title = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    if json_errors(version) {
        let code = match status {
            401 => json!("unauthorized"),
            429 => json!("concurrency_limited"),
            _ => Value::Null,
        };
        let body = json!({"error_code": code, "title": title, "message": message,
            "request_id": "00000000-0000-4000-8000-00000000000f"});
        (body.to_string(), "application/json")
    } else {
        (format!("{title}: {message}"), "text/plain; charset=utf-8")
    }
}

fn error_response(version: &str, status: u16, message: &str) -> Response {
    let (body, ct) = error_body(version, status, message);
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (code, [("content-type", ct)], body).into_response()
}

fn fault_response(
    version: &str,
    status: u16,
    headers: &[(String, String)],
    body: &Option<String>,
) -> Response {
    let mut r = match body {
        Some(b) => {
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            (code, b.clone()).into_response()
        }
        None => error_response(version, status, "injected failure"),
    };
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(n.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    r
}

fn key_ok(headers: &HeaderMap, query_key: Option<&str>, key: &str) -> bool {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    query_key == Some(key)
        || header("x-api-key") == Some(key)
        || header("authorization").and_then(|a| a.strip_prefix("Bearer ")) == Some(key)
}

/// The output format of a request: `(container, encoding, rate, bit_rate)`.
#[derive(Debug, Clone, PartialEq)]
struct Format {
    container: String,
    encoding: String,
    sample_rate: u32,
    bit_rate: u32,
}

/// Validates a generation request; `Err` is the 400 message.
fn validate(req: &Value, websocket: bool) -> Result<Format, String> {
    let obj = req.as_object().ok_or("the request must be a JSON object")?;
    let model = obj
        .get("model_id")
        .and_then(Value::as_str)
        .ok_or("model_id is required")?;
    if !model.starts_with("sonic") {
        return Err(format!("Invalid model_id {model:?}"));
    }
    let transcript = obj.get("transcript").ok_or("transcript is required")?;
    let transcript = transcript.as_str().ok_or("transcript must be a string")?;
    if !websocket && transcript.trim().is_empty() {
        return Err("transcript must not be empty".into());
    }
    match obj.get("voice") {
        Some(Value::String(id)) if !id.is_empty() => {}
        Some(Value::Object(v)) => {
            if v.get("mode").and_then(Value::as_str) != Some("id") {
                return Err("voice.mode must be \"id\"".into());
            }
            if v.get("id")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                return Err("Invalid voice ID".into());
            }
            if let Some(c) = v.get("__experimental_controls") {
                if !c.is_object() {
                    return Err("voice.__experimental_controls must be an object".into());
                }
            }
        }
        _ => return Err("voice is required".into()),
    }
    if let Some(g) = obj.get("generation_config") {
        let g = g.as_object().ok_or("generation_config must be an object")?;
        if let Some(s) = g.get("speed").and_then(Value::as_f64) {
            if !(0.6..=1.5).contains(&s) {
                return Err("generation_config.speed must be between 0.6 and 1.5".into());
            }
        }
    }
    let f = obj
        .get("output_format")
        .and_then(Value::as_object)
        .ok_or("output_format is required")?;
    let container = f.get("container").and_then(Value::as_str).unwrap_or("");
    let rate = f.get("sample_rate").and_then(Value::as_u64).unwrap_or(0) as u32;
    if !SAMPLE_RATES.contains(&rate) {
        return Err(format!("Invalid sample_rate {rate}"));
    }
    let encoding = f.get("encoding").and_then(Value::as_str).unwrap_or("");
    match container {
        "raw" | "wav" if !websocket || container == "raw" => {
            if !["pcm_s16le", "pcm_f32le", "pcm_mulaw", "pcm_alaw"].contains(&encoding) {
                return Err(format!("Invalid encoding {encoding:?}"));
            }
        }
        "mp3" if !websocket => {
            if f.get("bit_rate").and_then(Value::as_u64).is_none() {
                return Err("output_format.bit_rate is required for mp3".into());
            }
        }
        other => return Err(format!("Invalid container {other:?}")),
    }
    Ok(Format {
        container: container.to_owned(),
        encoding: encoding.to_owned(),
        sample_rate: rate,
        bit_rate: f.get("bit_rate").and_then(Value::as_u64).unwrap_or(128_000) as u32,
    })
}

/// The audio the fake produces for `transcript`: a 440 Hz tone of `ms_per_char` per character
/// (at least 20 ms) at `sample_rate` in `encoding` (`pcm_s16le`, `pcm_f32le`, `pcm_mulaw`,
/// `pcm_alaw`, or `mp3`: deterministic pseudo-frames of `bit_rate`, not real MP3).
pub fn expected_audio(
    transcript: &str,
    encoding: &str,
    sample_rate: u32,
    ms_per_char: u32,
) -> Vec<u8> {
    expected_audio_with(transcript, encoding, sample_rate, ms_per_char, 128_000)
}

fn expected_audio_with(
    transcript: &str,
    encoding: &str,
    sample_rate: u32,
    ms_per_char: u32,
    bit_rate: u32,
) -> Vec<u8> {
    let ms = (transcript.chars().count() as u32 * ms_per_char).max(20);
    if encoding == "mp3" {
        let n = (u64::from(bit_rate) / 8 * u64::from(ms) / 1000) as usize;
        return (0..n)
            .map(|i| if i % 417 == 0 { 0xFF } else { (i % 251) as u8 })
            .collect();
    }
    let samples = crate::audio::tone(440.0, ms, sample_rate);
    match encoding {
        "pcm_f32le" => samples
            .iter()
            .flat_map(|s| (f32::from(*s) / 32768.0).to_le_bytes())
            .collect(),
        "pcm_mulaw" => samples
            .iter()
            .map(|s| waav_plugin_api::codec::mulaw_encode(*s))
            .collect(),
        "pcm_alaw" => samples
            .iter()
            .map(|s| waav_plugin_api::codec::alaw_encode(*s))
            .collect(),
        _ => crate::audio::to_le_bytes(&samples),
    }
}

fn render(transcript: &str, f: &Format, opts: &CartesiaOptions) -> (Vec<u8>, usize) {
    let enc = if f.container == "mp3" {
        "mp3"
    } else {
        f.encoding.as_str()
    };
    let audio = expected_audio_with(transcript, enc, f.sample_rate, opts.ms_per_char, f.bit_rate);
    let per_sample = match enc {
        "pcm_f32le" => 4,
        "pcm_s16le" => 2,
        _ => 1,
    };
    let chunk = match enc {
        "mp3" => (f.bit_rate as usize / 8 * opts.chunk_ms as usize / 1000).max(1),
        _ => (f.sample_rate as usize * opts.chunk_ms as usize / 1000 * per_sample).max(per_sample),
    };
    (audio, chunk)
}

/// Sets `dropped` if the response body is dropped before it finished.
struct BodyGuard {
    log: Arc<Mutex<HttpLog>>,
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        let mut l = self.log.lock().expect("log");
        if !l.finished {
            l.dropped = true;
        }
    }
}

fn record_http(
    shared: &Shared,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Option<Value>,
) -> Arc<Mutex<HttpLog>> {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let log = Arc::new(Mutex::new(HttpLog {
        method: method.to_owned(),
        request: seen(uri, headers),
        body,
        chunks_sent: 0,
        finished: false,
        dropped: false,
    }));
    shared.logs.lock().expect("logs").http.push(log.clone());
    log
}

fn version_of(headers: &HeaderMap) -> Option<String> {
    headers
        .get("cartesia-version")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn bytes_handler(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let log = record_http(&shared, "POST", &parts.uri, &parts.headers, json.clone());
    let opts = &shared.opts;
    let version = version_of(&parts.headers).unwrap_or_default();
    if !key_ok(&parts.headers, None, &opts.api_key) {
        return error_response(&version, 401, "Invalid API key");
    }
    if version.is_empty() {
        return error_response("", 400, "Cartesia-Version header is required");
    }
    match &opts.fault {
        Fault::Status {
            status,
            headers,
            body,
        } => return fault_response(&version, *status, headers, body),
        Fault::GenerationError { status, message } => {
            return error_response(&version, *status, message)
        }
        Fault::Garbage => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                "{\"type\":\"chunk\",\"da",
            )
                .into_response()
        }
        _ => {}
    }
    let Some(json) = json else {
        return error_response(&version, 400, "the body is not JSON");
    };
    let format = match validate(&json, false) {
        Ok(f) => f,
        Err(m) => return error_response(&version, 400, &m),
    };
    let transcript = json["transcript"].as_str().unwrap_or("").to_owned();
    let (audio, chunk) = render(&transcript, &format, opts);
    let total = audio.len();
    let content_type = match format.container.as_str() {
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    };
    let limit = match opts.fault {
        Fault::Truncate { after_chunks } | Fault::CloseAfterChunks { after_chunks, .. } => {
            Some(after_chunks)
        }
        _ => None,
    };
    let silent = opts.fault == Fault::Silent;
    let hold = opts.fault == Fault::HoldAfterFirstChunk;
    let delay = opts.chunk_delay;
    let chunks: Vec<Bytes> = audio.chunks(chunk).map(Bytes::copy_from_slice).collect();
    let release = shared.release.subscribe();
    let guard = BodyGuard { log: log.clone() };
    let stream = futures::stream::unfold(
        (chunks.into_iter(), 0usize, guard, release),
        move |(mut it, sent, guard, mut release)| async move {
            if silent {
                futures::future::pending::<()>().await;
            }
            if sent > 0 {
                if hold && sent == 1 {
                    let _ = release.wait_for(|r| *r).await;
                }
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
            }
            if limit == Some(sent) {
                return Some((
                    Err(std::io::Error::other("truncated by the fake")),
                    (it, sent, guard, release),
                ));
            }
            match it.next() {
                Some(c) => {
                    guard.log.lock().expect("log").chunks_sent = sent + 1;
                    Some((Ok(c), (it, sent + 1, guard, release)))
                }
                None => {
                    guard.log.lock().expect("log").finished = true;
                    None
                }
            }
        },
    );
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .header("content-length", total.to_string())
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

async fn voices_handler(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    record_http(&shared, "GET", &uri, &headers, None);
    let opts = &shared.opts;
    let version = version_of(&headers).unwrap_or_default();
    if !key_ok(&headers, None, &opts.api_key) {
        return error_response(&version, 401, "Invalid API key");
    }
    if version.is_empty() {
        return error_response("", 400, "Cartesia-Version header is required");
    }
    if let Fault::Status {
        status,
        headers,
        body,
    } = &opts.fault
    {
        return fault_response(&version, *status, headers, body);
    }
    let q = query(&uri);
    let limit = q
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return error_response(&version, 400, "limit must be between 1 and 100");
    }
    let start = match q.get("starting_after") {
        None => 0,
        Some(after) => match opts
            .voices
            .iter()
            .position(|v| v["id"].as_str() == Some(after))
        {
            Some(i) => i + 1,
            None => return error_response(&version, 400, "starting_after is not a voice id"),
        },
    };
    let page: Vec<Value> = opts
        .voices
        .iter()
        .skip(start)
        .take(limit)
        .cloned()
        .collect();
    let has_more = start + page.len() < opts.voices.len();
    let next = if has_more {
        page.last().map(|v| v["id"].clone())
    } else {
        None
    };
    axum::Json(json!({"data": page, "has_more": has_more, "next_page": next})).into_response()
}

async fn ws_handler(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let req = seen(&uri, &headers);
    shared
        .logs
        .lock()
        .expect("logs")
        .ws_upgrades
        .push(req.clone());
    let q = query(&uri);
    let opts = &shared.opts;
    let version = q
        .get("cartesia_version")
        .cloned()
        .or_else(|| version_of(&headers))
        .unwrap_or_default();
    if !key_ok(
        &headers,
        q.get("api_key").map(String::as_str),
        &opts.api_key,
    ) {
        return error_response(&version, 401, "Invalid API key");
    }
    if version.is_empty() {
        return error_response("", 400, "cartesia_version is required");
    }
    if let Fault::Status {
        status,
        headers,
        body,
    } = &opts.fault
    {
        return fault_response(&version, *status, headers, body);
    }
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let log = Arc::new(Mutex::new(WsLog {
        request: Some(req),
        ..WsLog::default()
    }));
    shared.logs.lock().expect("logs").ws.push(log.clone());
    upgrade.on_upgrade(move |socket| async move {
        serve_ws(socket, shared.clone(), log.clone(), version).await;
        log.lock().expect("log").ended = true;
    })
}

/// What the writer task sends.
enum Out {
    Msg(Message),
    /// Drop the connection without a close frame.
    Abort,
}

/// One context being received.
struct Ctx {
    transcript: String,
    first: Value,
    cancel: Arc<AtomicBool>,
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

fn garbage(ctx: &str) -> Vec<Message> {
    vec![
        Message::Text("this is not json".into()),
        Message::Text("[1,2,3]".into()),
        Message::Text(
            json!({"type": "mystery", "context_id": ctx, "status_code": 206, "done": false})
                .to_string()
                .into(),
        ),
        Message::Binary(Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef])),
        Message::Text(
            json!({"type": "chunk", "data": "AAAA", "status_code": 206, "done": false})
                .to_string()
                .into(),
        ),
    ]
}

async fn serve_ws(socket: WebSocket, shared: Arc<Shared>, log: Arc<Mutex<WsLog>>, version: String) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
    let writer = tokio::spawn(async move {
        while let Some(out) = rx.recv().await {
            match out {
                Out::Msg(m) => {
                    let close = matches!(m, Message::Close(_));
                    if sink.send(m).await.is_err() || close {
                        break;
                    }
                }
                Out::Abort => return,
            }
        }
        let _ = sink.close().await;
    });
    let opts = &shared.opts;
    let mut contexts: HashMap<String, Ctx> = HashMap::new();
    let chunks = Arc::new(AtomicUsize::new(0));
    let completed = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(watch::channel(false).0);
    let mut stopped = stop.subscribe();
    loop {
        let idle = async {
            match opts.idle_close {
                Some(d) => tokio::time::sleep(d).await,
                None => futures::future::pending().await,
            }
        };
        let next = tokio::select! {
            n = stream.next() => n,
            _ = stopped.wait_for(|s| *s) => break,
            () = idle => {
                let _ = tx.send(Out::Msg(Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "idle timeout".into(),
                }))));
                break;
            }
        };
        let text = match next {
            Some(Ok(Message::Text(t))) => t.to_string(),
            Some(Ok(Message::Close(_))) => {
                log.lock().expect("log").client_closed = true;
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => break,
        };
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        log.lock().expect("log").received.push(value.clone());
        if opts.fault == Fault::Silent {
            continue;
        }
        let ctx_id = value
            .get("context_id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let send_error = |status: u16, message: &str| {
            let msg = if json_errors(&version) {
                json!({"type": "error", "done": true, "status_code": status, "error_code": Value::Null,
                    "title": "Invalid request", "message": message, "context_id": ctx_id,
                    "request_id": "00000000-0000-4000-8000-00000000000f"})
            } else {
                json!({"type": "error", "error": message, "status_code": status, "done": true,
                    "context_id": ctx_id})
            };
            let _ = tx.send(Out::Msg(Message::Text(msg.to_string().into())));
        };
        if value.get("cancel").and_then(Value::as_bool) == Some(true) {
            log.lock().expect("log").cancels.push(ctx_id.clone());
            if let Some(c) = contexts.remove(&ctx_id) {
                c.cancel.store(true, Ordering::SeqCst);
            }
            continue;
        }
        if ctx_id.is_empty() {
            send_error(400, "context_id is required");
            continue;
        }
        if let Fault::GenerationError { status, message } = &opts.fault {
            send_error(*status, message);
            continue;
        }
        if let Err(m) = validate(&value, true) {
            send_error(400, &m);
            contexts.remove(&ctx_id);
            continue;
        }
        let piece = value["transcript"].as_str().unwrap_or("").to_owned();
        let ctx = contexts.entry(ctx_id.clone()).or_insert_with(|| Ctx {
            transcript: String::new(),
            first: value.clone(),
            cancel: Arc::new(AtomicBool::new(false)),
        });
        ctx.transcript.push_str(&piece);
        if value.get("continue").and_then(Value::as_bool) == Some(true) {
            continue;
        }
        let Some(ctx) = contexts.remove(&ctx_id) else {
            continue;
        };
        let format = validate(&ctx.first, true).expect("validated");
        let (audio, chunk) = render(&ctx.transcript, &format, opts);
        let words: Vec<&str> = ctx.transcript.split_whitespace().collect();
        let timestamps = ctx.first.get("add_timestamps").and_then(Value::as_bool) == Some(true);
        let ts = json!({"type": "timestamps", "context_id": ctx_id, "status_code": 206, "done": false,
            "word_timestamps": {"words": words,
                "start": (0..words.len()).map(|i| i as f64 * 0.3).collect::<Vec<_>>(),
                "end": (0..words.len()).map(|i| i as f64 * 0.3 + 0.25).collect::<Vec<_>>()}});
        let job = Job {
            tx: tx.clone(),
            ctx_id,
            audio,
            chunk,
            timestamps: timestamps.then_some(ts),
            cancel: ctx.cancel,
            chunks: chunks.clone(),
            completed: completed.clone(),
            stop: stop.clone(),
            log: log.clone(),
            release: shared.release.subscribe(),
            opts: opts.clone(),
        };
        tokio::spawn(job.run());
    }
    for c in contexts.values() {
        c.cancel.store(true, Ordering::SeqCst);
    }
    stop.send_replace(true);
    drop(tx);
    let _ = writer.await;
}

struct Job {
    tx: mpsc::UnboundedSender<Out>,
    ctx_id: String,
    audio: Vec<u8>,
    chunk: usize,
    timestamps: Option<Value>,
    cancel: Arc<AtomicBool>,
    chunks: Arc<AtomicUsize>,
    completed: Arc<AtomicUsize>,
    stop: Arc<watch::Sender<bool>>,
    log: Arc<Mutex<WsLog>>,
    release: watch::Receiver<bool>,
    opts: CartesiaOptions,
}

impl Job {
    async fn run(mut self) {
        let live = |j: &Self| !j.cancel.load(Ordering::SeqCst) && !*j.stop.borrow();
        let send = |j: &Self, m: Message| {
            let _ = j.tx.send(Out::Msg(m));
        };
        for (i, piece) in self.audio.chunks(self.chunk).enumerate() {
            if i > 0 {
                if i == 1 && self.opts.fault == Fault::HoldAfterFirstChunk {
                    let _ = self.release.wait_for(|r| *r).await;
                }
                if !self.opts.chunk_delay.is_zero() {
                    tokio::time::sleep(self.opts.chunk_delay).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
            if !live(&self) {
                return;
            }
            if self.opts.fault == Fault::Garbage {
                for g in garbage(&self.ctx_id) {
                    send(&self, g);
                }
            }
            let msg = json!({"type": "chunk", "data": b64(piece), "step_time": 12.5,
                "context_id": self.ctx_id, "status_code": 206, "done": false});
            send(&self, Message::Text(msg.to_string().into()));
            let n = self.chunks.fetch_add(1, Ordering::SeqCst) + 1;
            self.log.lock().expect("log").chunks_sent = n;
            match self.opts.fault {
                Fault::Truncate { after_chunks } if n >= after_chunks => {
                    self.stop.send_replace(true);
                    let _ = self.tx.send(Out::Abort);
                    return;
                }
                Fault::CloseAfterChunks { after_chunks, code } if n >= after_chunks => {
                    self.stop.send_replace(true);
                    send(
                        &self,
                        Message::Close(Some(CloseFrame {
                            code,
                            reason: "closed by the fake".into(),
                        })),
                    );
                    return;
                }
                _ => {}
            }
        }
        if !live(&self) {
            return;
        }
        if let Some(ts) = self.timestamps.take() {
            send(&self, Message::Text(ts.to_string().into()));
        }
        let done =
            json!({"type": "done", "context_id": self.ctx_id, "status_code": 206, "done": true});
        send(&self, Message::Text(done.to_string().into()));
        self.log
            .lock()
            .expect("log")
            .completed
            .push(self.ctx_id.clone());
        let n = self.completed.fetch_add(1, Ordering::SeqCst) + 1;
        if self.opts.close_after_contexts == Some(n) {
            self.stop.send_replace(true);
            send(
                &self,
                Message::Close(Some(CloseFrame {
                    code: 1000,
                    reason: "closing after contexts".into(),
                })),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(&[0xfb, 0xff]), "+/8=");
    }

    #[test]
    fn audio_is_deterministic_and_sized_by_text() {
        let a = expected_audio("Hello", "pcm_s16le", 16_000, 20);
        assert_eq!(a.len(), 100 * 16 * 2);
        assert_eq!(a, expected_audio("Hello", "pcm_s16le", 16_000, 20));
        assert_eq!(expected_audio("Hello", "pcm_mulaw", 8_000, 20).len(), 800);
        assert_eq!(expected_audio("", "pcm_alaw", 8_000, 20).len(), 160);
    }

    #[test]
    fn requests_are_validated() {
        let ok = json!({"model_id": "sonic-2", "transcript": "hi",
            "voice": {"mode": "id", "id": "v"},
            "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 24000}});
        assert!(validate(&ok, true).is_ok());
        let mut bad = ok.clone();
        bad["output_format"]["sample_rate"] = json!(11025);
        assert!(validate(&bad, false).is_err());
        let mut mp3 = ok.clone();
        mp3["output_format"] =
            json!({"container": "mp3", "sample_rate": 44100, "bit_rate": 128000});
        assert!(validate(&mp3, false).is_ok());
        assert!(
            validate(&mp3, true).is_err(),
            "the WebSocket takes raw only"
        );
        let mut empty = ok;
        empty["transcript"] = json!(" ");
        assert!(validate(&empty, false).is_err());
        assert!(validate(&empty, true).is_ok());
    }
}
