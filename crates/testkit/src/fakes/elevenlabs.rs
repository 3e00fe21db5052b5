//! A fake of ElevenLabs text-to-speech, on 127.0.0.1: the REST streaming endpoint, the voice
//! listing and the multi-context WebSocket, all on one port (the client derives `ws://` from
//! the `http://` base URL, as the SDKs do).
//!
//! It follows the wire protocol as documented (`TTS_PROTOCOLS.md` §2; message shapes from
//! `elevenlabs/elevenlabs-python` `src/elevenlabs/types/*_multi.py`, `close_context.py`):
//! - `POST /v1/text-to-speech/{voice_id}/stream?output_format=…` with `xi-api-key` and a JSON
//!   body (`text`, `model_id`, `voice_settings`, …) answers with chunked raw audio. A missing or
//!   wrong key is `401 {"detail":{"status":"invalid_api_key",…}}`, an unknown voice
//!   `404 {"detail":{"status":"voice_not_found",…}}`, a missing text or unknown output format a
//!   FastAPI-style `422 {"detail":[{"loc","msg","type"}]}`.
//! - `GET /v1/voices` answers `{"voices":[…]}` with [`FakeOptions::voices`].
//! - `GET /v1/text-to-speech/{voice_id}/multi-stream-input?model_id=…&output_format=…` upgrades
//!   to a WebSocket (a wrong `xi-api-key` header is refused with 401; without the header the key
//!   must come as `xi_api_key`/`xi-api-key` in the first message). Per context: `{"text":" ",
//!   "context_id"}` opens it (with `voice_settings`), text is buffered, `flush: true` generates the
//!   buffer as `{"audio": b64, "isFinal": null, "contextId", …}` messages, and `close_context`
//!   ends it: a flushed context "will continue flushing" and then gets `{"isFinal": true,
//!   "contextId"}`; an unflushed one gets its final at once. Contexts generate concurrently.
//!   More than [`FakeOptions::max_contexts`] open contexts get the reported
//!   `{"error":"max_active_conversations",…,"code":1008}` and a 1008 close. No client message
//!   for [`FakeOptions::inactivity`] while idle: an `input_timeout_exceeded` error and a 1008
//!   close (vendor behaviour as reported; UNCONFIRMED). `{"close_socket": true}` finishes every
//!   context and closes with 1000.
//!
//! Audio is deterministic ([`audio_for`]): a 440 Hz tone of [`FakeOptions::ms_per_char`] per
//! character in the requested format (PCM16, G.711, or MP3-like frames), streamed in chunks of
//! [`FakeOptions::chunk_ms`] with [`FakeOptions::chunk_delay`] between them. Everything received
//! is recorded, and [`Fault`] makes it misbehave.

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};

use super::{HttpFake, SeenRequest};
use waav_plugin_api::codec::{alaw_encode, mulaw_encode};

/// How the fake misbehaves (the same for every request and connection).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// Answers synthesis requests and WebSocket upgrades with this status, headers and body
    /// (after the auth check).
    Status {
        /// HTTP status.
        status: u16,
        /// Extra headers (`retry-after`, …).
        headers: Vec<(String, String)>,
        /// The body.
        body: String,
    },
    /// REST: `200` with a JSON body instead of audio. WebSocket: before every real message,
    /// junk (invalid JSON, an array, a binary frame, a mistyped audio field, a message for an
    /// unknown context, a `flush_done` notice).
    Garbage,
    /// REST: the body stops with a transport error after this many chunks. WebSocket: the TCP
    /// connection is dropped (no close frame) after this many audio messages.
    Truncate {
        /// Chunks (or audio messages) sent first.
        after_chunks: usize,
    },
    /// REST: the head is sent, then nothing. WebSocket: reads everything, never answers.
    Silent,
    /// REST: never sends a response head.
    Hang,
    /// WebSocket: audio fields that are not base64.
    BadAudio,
    /// WebSocket: each connection serves its first context only. The next request (its
    /// opening, its text and its `close_context`) is read in full and not answered; then the
    /// socket ends as when the vendor's idle close crosses a request just sent: with `notice`,
    /// the `input_timeout_exceeded` error and a 1008 close, without it a dropped TCP
    /// connection (no close frame). A client that sends the request again on a new connection
    /// is served there.
    CloseOnNextRequest {
        /// Send the idle notice and a close frame (else drop the connection).
        notice: bool,
    },
    /// WebSocket: after this many audio messages, sends `json` and closes with `code`.
    WsError {
        /// Audio messages sent first.
        after_audio: usize,
        /// The text frame to send.
        json: String,
        /// Close code sent after it.
        code: u16,
    },
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The accepted API key.
    pub api_key: String,
    /// The voice listing (`GET /v1/voices` items); synthesis accepts only these `voice_id`s.
    pub voices: Vec<Value>,
    /// Audio per character of text.
    pub ms_per_char: u32,
    /// Audio per chunk (REST) or per audio message (WebSocket).
    pub chunk_ms: u32,
    /// Pause between chunks.
    pub chunk_delay: Duration,
    /// After the first chunk of each response, wait for [`ElevenLabsFake::release`].
    pub hold_after_first_chunk: bool,
    /// Server messages spell `is_final`/`context_id` (snake case) instead of
    /// `isFinal`/`contextId`.
    pub snake_case: bool,
    /// `close_context` stops a flushed context at once (instead of letting it finish).
    pub abort_on_close: bool,
    /// Most open contexts per socket.
    pub max_contexts: usize,
    /// Idle time after which the socket is closed.
    pub inactivity: Duration,
    /// Misbehaviour.
    pub fault: Fault,
    /// REST: [`fault`](Self::fault) applies to the first this many authorised synthesis
    /// requests only, later ones are served (`None`: to every request). A client retrying a
    /// transient failure then succeeds.
    pub fault_first: Option<usize>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            api_key: "test-key".to_owned(),
            voices: default_voices(),
            ms_per_char: 10,
            chunk_ms: 20,
            chunk_delay: Duration::from_millis(2),
            hold_after_first_chunk: false,
            snake_case: false,
            abort_on_close: false,
            max_contexts: 5,
            inactivity: Duration::from_secs(20),
            fault: Fault::None,
            fault_first: None,
        }
    }
}

impl FakeOptions {
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

    /// Limits the fault to the first `n` REST synthesis requests
    /// ([`fault_first`](Self::fault_first)).
    pub fn fault_first(mut self, n: usize) -> Self {
        self.fault_first = Some(n);
        self
    }
}

/// Two premade voices in the vendor's shape.
pub fn default_voices() -> Vec<Value> {
    vec![
        json!({"voice_id": "JBFqnCBsd6RMkjVDRZzb", "name": "George", "category": "premade",
               "labels": {"accent": "british", "gender": "male", "age": "middle_aged"},
               "preview_url": "https://example.invalid/george.mp3",
               "settings": {"stability": 0.5, "similarity_boost": 0.75}}),
        json!({"voice_id": "21m00Tcm4TlvDq8ikWAM", "name": "Rachel", "category": "premade",
               "labels": {"accent": "american", "gender": "female"},
               "preview_url": "https://example.invalid/rachel.mp3",
               "verified_languages": [{"language": "en", "model_id": "eleven_flash_v2_5", "locale": "en-US"}]}),
    ]
}

/// A synthesis request received over REST.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpRequestLog {
    /// Path and query.
    pub uri: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The JSON body (`Null` when it did not parse).
    pub body: Value,
}

impl HttpRequestLog {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of query parameter `name` (not percent-decoded).
    pub fn query(&self, name: &str) -> Option<&str> {
        query_value(&self.uri, name)
    }
}

/// One WebSocket connection.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WsSessionLog {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// Every text frame received, parsed (`Null` for non-JSON).
    pub received: Vec<Value>,
    /// Contexts the client closed with `close_context`, in order.
    pub closed_contexts: Vec<String>,
    /// Audio messages sent.
    pub audio_sent: usize,
    /// The connection ended.
    pub ended: bool,
}

#[derive(Debug, Default)]
struct Shared {
    http: Mutex<Vec<HttpRequestLog>>,
    ws: Mutex<Vec<WsSessionLog>>,
    voices_hits: AtomicUsize,
    aborted: AtomicUsize,
    completed: AtomicUsize,
    /// Authorised REST synthesis requests so far (for `fault_first`).
    rest_authorised: AtomicUsize,
    hold: Notify,
}

#[derive(Clone)]
struct App {
    opts: Arc<FakeOptions>,
    shared: Arc<Shared>,
}

/// The running fake. Stops when dropped.
#[derive(Debug)]
pub struct ElevenLabsFake {
    server: HttpFake,
    shared: Arc<Shared>,
}

impl ElevenLabsFake {
    /// Starts the fake on a free 127.0.0.1 port.
    pub async fn start(opts: FakeOptions) -> Self {
        let shared = Arc::new(Shared::default());
        let app = App {
            opts: Arc::new(opts),
            shared: shared.clone(),
        };
        let router = Router::new()
            .route("/v1/text-to-speech/{voice_id}/stream", post(rest_stream))
            .route(
                "/v1/text-to-speech/{voice_id}/multi-stream-input",
                get(multi_stream),
            )
            .route("/v1/voices", get(voices))
            .with_state(app);
        Self {
            server: HttpFake::start(router).await,
            shared,
        }
    }

    /// `http://127.0.0.1:port`, the `base_url` to configure the plugin with.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Every REST synthesis request so far.
    pub fn http_requests(&self) -> Vec<HttpRequestLog> {
        self.shared.http.lock().expect("lock").clone()
    }

    /// Every WebSocket connection so far (upgrades refused included, without messages).
    pub fn ws_sessions(&self) -> Vec<WsSessionLog> {
        self.shared.ws.lock().expect("lock").clone()
    }

    /// How many times `GET /v1/voices` was called.
    pub fn voices_hits(&self) -> usize {
        self.shared.voices_hits.load(Ordering::SeqCst)
    }

    /// REST audio responses whose client went away before the last chunk.
    pub fn aborted_responses(&self) -> usize {
        self.shared.aborted.load(Ordering::SeqCst)
    }

    /// REST audio responses sent to the end.
    pub fn completed_responses(&self) -> usize {
        self.shared.completed.load(Ordering::SeqCst)
    }

    /// Lets a response held by [`FakeOptions::hold_after_first_chunk`] continue.
    pub fn release(&self) {
        self.shared.hold.notify_one();
    }
}

/// An output format the fake understands: `(codec, sample_rate, kbps)`.
fn parse_format(f: &str) -> Option<(&str, u32, u32)> {
    let mut parts = f.split('_');
    let codec = parts.next()?;
    let rate: u32 = parts.next()?.parse().ok()?;
    let kbps: u32 = match parts.next() {
        Some(k) => k.parse().ok()?,
        None => 0,
    };
    if parts.next().is_some() {
        return None;
    }
    let ok = match codec {
        "pcm" => {
            [8_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000].contains(&rate) && kbps == 0
        }
        "ulaw" | "alaw" => rate == 8_000 && kbps == 0,
        "mp3" => matches!(
            (rate, kbps),
            (22_050, 32) | (24_000, 48) | (44_100, 32 | 64 | 96 | 128 | 192)
        ),
        "opus" => rate == 48_000 && [32, 64, 96, 128, 192].contains(&kbps),
        _ => false,
    };
    ok.then_some((codec, rate, kbps))
}

/// The audio the fake produces for `text` in `output_format` (`None` for an unknown format):
/// `ms_per_char` ms per character (at least 20 ms) of a 440 Hz tone.
pub fn audio_for(text: &str, output_format: &str, ms_per_char: u32) -> Option<Vec<u8>> {
    let (codec, rate, kbps) = parse_format(output_format)?;
    let ms = (text.trim().chars().count() as u64 * u64::from(ms_per_char)).max(20);
    if matches!(codec, "mp3" | "opus") {
        // Compressed formats: frame-like deterministic bytes at the nominal bitrate.
        let len = (ms * u64::from(kbps) / 8) as usize;
        let mut out = Vec::with_capacity(len);
        for i in 0..len {
            out.push(match i % 417 {
                0 => 0xFF,
                1 => 0xFB,
                n => (n % 251) as u8,
            });
        }
        return Some(out);
    }
    let samples = (ms * u64::from(rate) / 1000) as usize;
    let step = 2.0 * std::f32::consts::PI * 440.0 / rate as f32;
    let tone = (0..samples).map(|i| ((i as f32 * step).sin() * 8_000.0) as i16);
    Some(match codec {
        "ulaw" => tone.map(mulaw_encode).collect(),
        "alaw" => tone.map(alaw_encode).collect(),
        _ => tone.flat_map(i16::to_le_bytes).collect(),
    })
}

/// `audio` cut into the chunks the fake streams.
pub fn chunks_of(audio: &[u8], output_format: &str, chunk_ms: u32) -> Vec<Vec<u8>> {
    let Some((codec, rate, kbps)) = parse_format(output_format) else {
        return vec![audio.to_vec()];
    };
    let per_ms = match codec {
        "pcm" => rate as usize * 2 / 1000,
        "ulaw" | "alaw" => rate as usize / 1000,
        _ => (kbps as usize / 8).max(1),
    };
    let size = (per_ms * chunk_ms.max(1) as usize).max(1);
    // PCM16 chunks stay whole samples.
    let size = if codec == "pcm" { size / 2 * 2 } else { size };
    audio.chunks(size.max(2)).map(<[u8]>::to_vec).collect()
}

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn detail(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"detail": {"status": code, "message": message}}).to_string(),
    )
        .into_response()
}

fn validation(loc: &[&str], msg: &str) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        [("content-type", "application/json")],
        json!({"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]}).to_string(),
    )
        .into_response()
}

fn fault_response(status: u16, headers: &[(String, String)], body: &str) -> Response {
    let mut resp = Response::new(Body::from(body.to_owned()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (
            axum::http::HeaderName::try_from(n.as_str()),
            axum::http::HeaderValue::try_from(v.as_str()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

fn header_list(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect()
}

fn authorised(app: &App, h: &HeaderMap) -> bool {
    h.get("xi-api-key").and_then(|v| v.to_str().ok()) == Some(app.opts.api_key.as_str())
}

fn known_voice(app: &App, id: &str) -> bool {
    app.opts
        .voices
        .iter()
        .any(|v| v.get("voice_id").and_then(Value::as_str) == Some(id))
}

fn query_value<'a>(uri: &'a str, name: &str) -> Option<&'a str> {
    uri.split_once('?')?
        .1
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Counts a response body that was dropped before its end.
struct BodyGuard {
    shared: Arc<Shared>,
    finished: bool,
}

impl BodyGuard {
    fn finish(&mut self) {
        self.finished = true;
    }
}

impl Drop for BodyGuard {
    fn drop(&mut self) {
        let c = if self.finished {
            &self.shared.completed
        } else {
            &self.shared.aborted
        };
        c.fetch_add(1, Ordering::SeqCst);
    }
}

async fn rest_stream(
    State(app): State<App>,
    Path(voice_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let uri = uri.to_string();
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    app.shared.http.lock().expect("lock").push(HttpRequestLog {
        uri: uri.clone(),
        headers: header_list(&headers),
        body: parsed.clone(),
    });
    if !authorised(&app, &headers) {
        return detail(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        );
    }
    let index = app.shared.rest_authorised.fetch_add(1, Ordering::SeqCst);
    let fault = match app.opts.fault_first {
        Some(n) if index >= n => Fault::None,
        _ => app.opts.fault.clone(),
    };
    match &fault {
        Fault::Status {
            status,
            headers,
            body,
        } => return fault_response(*status, headers, body),
        Fault::Hang => std::future::pending::<()>().await,
        Fault::Garbage => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"detail": "not audio""#,
            )
                .into_response()
        }
        _ => {}
    }
    if !known_voice(&app, &voice_id) {
        return detail(
            StatusCode::NOT_FOUND,
            "voice_not_found",
            &format!("A voice with the voice_id {voice_id} was not found."),
        );
    }
    let Some(text) = parsed.get("text").and_then(Value::as_str) else {
        return validation(&["body", "text"], "field required");
    };
    // The API's default output format.
    let format = query_value(&uri, "output_format")
        .unwrap_or("mp3_44100_128")
        .to_owned();
    let Some(audio) = audio_for(text, &format, app.opts.ms_per_char) else {
        return validation(
            &["query", "output_format"],
            "value is not a valid enumeration member",
        );
    };
    let chunks: VecDeque<Vec<u8>> = chunks_of(&audio, &format, app.opts.chunk_ms).into();
    let content_type = match format.split('_').next() {
        Some("mp3") => "audio/mpeg",
        Some("opus") => "audio/ogg",
        Some("ulaw" | "alaw") => "audio/basic",
        _ => "audio/pcm",
    };
    let response = |body: Body| {
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", content_type)
            .header("x-trace-id", "fake-trace-0001")
            .body(body)
            .expect("response")
    };
    if fault == Fault::Silent {
        // The head goes out; the first chunk never does.
        let pending = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        return response(Body::from_stream(pending));
    }
    let opts = app.opts.clone();
    let truncate = match fault {
        Fault::Truncate { after_chunks } => Some(after_chunks),
        _ => None,
    };
    let guard = BodyGuard {
        shared: app.shared.clone(),
        finished: false,
    };
    let state = (chunks, guard, 0usize);
    let stream = futures::stream::unfold(state, move |(mut chunks, mut guard, sent)| {
        let opts = opts.clone();
        async move {
            if sent > 0 {
                if opts.hold_after_first_chunk && sent == 1 {
                    guard.shared.hold.notified().await;
                }
                tokio::time::sleep(opts.chunk_delay).await;
            }
            if let Some(after_chunks) = truncate {
                if sent >= after_chunks {
                    let e = std::io::Error::other("fake: truncated");
                    return Some((Err(e), (VecDeque::new(), guard, usize::MAX / 2)));
                }
            }
            match chunks.pop_front() {
                Some(c) => Some((Ok(Bytes::from(c)), (chunks, guard, sent + 1))),
                None => {
                    guard.finish();
                    None
                }
            }
        }
    });
    response(Body::from_stream(stream))
}

async fn voices(State(app): State<App>, headers: HeaderMap) -> Response {
    app.shared.voices_hits.fetch_add(1, Ordering::SeqCst);
    if !authorised(&app, &headers) {
        return detail(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        );
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"voices": app.opts.voices}).to_string(),
    )
        .into_response()
}

async fn multi_stream(
    State(app): State<App>,
    Path(voice_id): Path<String>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    upgrade: WebSocketUpgrade,
) -> Response {
    let request = SeenRequest {
        uri: uri.to_string(),
        headers: header_list(&headers),
    };
    let index = {
        let mut ws = app.shared.ws.lock().expect("lock");
        ws.push(WsSessionLog {
            request: Some(request.clone()),
            ..WsSessionLog::default()
        });
        ws.len() - 1
    };
    let header_key = headers.get("xi-api-key").is_some();
    if header_key && !authorised(&app, &headers) {
        return detail(
            StatusCode::UNAUTHORIZED,
            "invalid_api_key",
            "Invalid API key",
        );
    }
    if let Fault::Status {
        status,
        headers,
        body,
    } = &app.opts.fault
    {
        return fault_response(*status, headers, body);
    }
    if !known_voice(&app, &voice_id) {
        return detail(
            StatusCode::NOT_FOUND,
            "voice_not_found",
            &format!("A voice with the voice_id {voice_id} was not found."),
        );
    }
    let format = request
        .query("output_format")
        .unwrap_or("mp3_44100_128")
        .to_owned();
    if parse_format(&format).is_none() {
        return validation(
            &["query", "output_format"],
            "value is not a valid enumeration member",
        );
    }
    upgrade.on_upgrade(move |socket| async move {
        let session = Session {
            app: app.clone(),
            index,
            format,
            authed: header_key,
        };
        session.run(socket).await;
        if let Some(log) = app.shared.ws.lock().expect("lock").get_mut(index) {
            log.ended = true;
        }
    })
}

enum Out {
    Msg(Message),
    Close(u16, String),
    Kill,
}

#[derive(Debug, Default)]
struct Ctx {
    buffer: String,
    flushed: bool,
    closed: bool,
    generating: bool,
}

struct Session {
    app: App,
    index: usize,
    format: String,
    authed: bool,
}

type Contexts = Arc<Mutex<HashMap<String, Ctx>>>;

impl Session {
    fn log(&self, f: impl FnOnce(&mut WsSessionLog)) {
        if let Some(l) = self.app.shared.ws.lock().expect("lock").get_mut(self.index) {
            f(l);
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let (tx, mut rx) = mpsc::unbounded_channel::<Out>();
        let kill = Arc::new(Notify::new());
        let kill2 = kill.clone();
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                match out {
                    Out::Msg(m) => {
                        if sink.send(m).await.is_err() {
                            break;
                        }
                    }
                    Out::Close(code, reason) => {
                        let _ = sink
                            .send(Message::Close(Some(CloseFrame {
                                code,
                                reason: reason.into(),
                            })))
                            .await;
                        break;
                    }
                    Out::Kill => {
                        kill2.notify_one();
                        return;
                    }
                }
            }
            // Keep the socket open until the reader ends (a close frame was sent above).
            let _ = sink.flush().await;
        });
        let contexts: Contexts = Arc::default();
        let audio_count = Arc::new(AtomicUsize::new(0));
        let opts = self.app.opts.clone();
        let mut last_input = tokio::time::Instant::now();
        // The first context this connection saw (for `Fault::CloseOnNextRequest`).
        let mut first_context: Option<String> = None;
        loop {
            let next = tokio::select! {
                m = stream.next() => m,
                _ = kill.notified() => break,
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    // The inactivity clock runs while no context is generating.
                    let idle = contexts.lock().expect("lock").values().all(|c| !c.generating);
                    if !idle {
                        last_input = tokio::time::Instant::now();
                    }
                    if idle && opts.fault != Fault::Silent && last_input.elapsed() >= opts.inactivity {
                        let msg = json!({"message": format!("Have not received a new text input within the timeout of {}s.", opts.inactivity.as_secs()), "error": "input_timeout_exceeded", "code": 1008});
                        let _ = tx.send(Out::Msg(Message::Text(msg.to_string().into())));
                        let _ = tx.send(Out::Close(1008, "input_timeout_exceeded".into()));
                        break;
                    }
                    continue;
                }
            };
            last_input = tokio::time::Instant::now();
            let text = match next {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) => t.to_string(),
                Some(Ok(_)) => continue,
            };
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            self.log(|l| l.received.push(v.clone()));
            if opts.fault == Fault::Silent {
                continue;
            }
            if !self.authed {
                let key = v
                    .get("xi_api_key")
                    .or_else(|| v.get("xi-api-key"))
                    .and_then(Value::as_str);
                if key == Some(opts.api_key.as_str()) {
                    self.authed = true;
                } else {
                    let msg = json!({"message": "Invalid API key", "error": "invalid_api_key", "code": 1008});
                    let _ = tx.send(Out::Msg(Message::Text(msg.to_string().into())));
                    let _ = tx.send(Out::Close(1008, "invalid_api_key".into()));
                    break;
                }
            }
            if v.get("close_socket").and_then(Value::as_bool) == Some(true) {
                let ids: Vec<String> = contexts.lock().expect("lock").keys().cloned().collect();
                for id in ids {
                    self.close_context(&id, &contexts, &tx, &audio_count, true);
                }
                let (contexts, tx) = (contexts.clone(), tx.clone());
                tokio::spawn(async move {
                    // Every context finishes first, then the socket closes normally.
                    for _ in 0..6_000 {
                        if contexts.lock().expect("lock").is_empty() {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let _ = tx.send(Out::Close(1000, String::new()));
                });
                continue;
            }
            let ctx = v
                .get("context_id")
                .or_else(|| v.get("contextId"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            if let Fault::CloseOnNextRequest { notice } = opts.fault {
                if *first_context.get_or_insert_with(|| ctx.clone()) != ctx {
                    if v.get("close_context").and_then(Value::as_bool) != Some(true) {
                        continue;
                    }
                    // The whole request is in: end the socket without answering it.
                    if notice {
                        let msg = json!({"message": format!("Have not received a new text input within the timeout of {}s.", opts.inactivity.as_secs()), "error": "input_timeout_exceeded", "code": 1008});
                        let _ = tx.send(Out::Msg(Message::Text(msg.to_string().into())));
                        let _ = tx.send(Out::Close(1008, "input_timeout_exceeded".into()));
                    } else {
                        let _ = tx.send(Out::Kill);
                    }
                    break;
                }
            }
            if v.get("close_context").and_then(Value::as_bool) == Some(true) {
                self.log(|l| l.closed_contexts.push(ctx.clone()));
                self.close_context(&ctx, &contexts, &tx, &audio_count, false);
                continue;
            }
            let Some(t) = v.get("text").and_then(Value::as_str) else {
                continue;
            };
            let flush = v.get("flush").and_then(Value::as_bool) == Some(true);
            {
                let mut map = contexts.lock().expect("lock");
                if !map.contains_key(&ctx) {
                    let open = map.values().filter(|c| !c.closed || c.generating).count();
                    if open >= opts.max_contexts {
                        drop(map);
                        let msg = json!({"message": format!("Maximum simultaneous contexts per WebSocket connection exceeded ({}). Please close an existing context before opening a new one.", opts.max_contexts), "error": "max_active_conversations", "code": 1008});
                        let _ = tx.send(Out::Msg(Message::Text(msg.to_string().into())));
                        let _ = tx.send(Out::Close(1008, "max_active_conversations".into()));
                        break;
                    }
                    map.insert(ctx.clone(), Ctx::default());
                }
                let c = map.get_mut(&ctx).expect("inserted");
                if t != " " {
                    c.buffer.push_str(t);
                }
            }
            if flush {
                self.generate(&ctx, &contexts, &tx, &audio_count);
            }
        }
        drop(tx);
        let _ = writer.await;
    }

    /// Starts generating a context's buffer unless it already is.
    fn generate(
        &self,
        ctx: &str,
        contexts: &Contexts,
        tx: &mpsc::UnboundedSender<Out>,
        count: &Arc<AtomicUsize>,
    ) {
        {
            let mut map = contexts.lock().expect("lock");
            let Some(c) = map.get_mut(ctx) else { return };
            c.flushed = true;
            if c.generating {
                return;
            }
            c.generating = true;
        }
        let (contexts, tx, count) = (contexts.clone(), tx.clone(), count.clone());
        let (app, ctx, format, index) = (
            self.app.clone(),
            ctx.to_owned(),
            self.format.clone(),
            self.index,
        );
        tokio::spawn(async move {
            let opts = app.opts.clone();
            let mut first = true;
            loop {
                let text = {
                    let mut map = contexts.lock().expect("lock");
                    let Some(c) = map.get_mut(&ctx) else { return };
                    if c.buffer.trim().is_empty() || (c.closed && opts.abort_on_close) {
                        c.generating = false;
                        if c.closed {
                            map.remove(&ctx);
                            drop(map);
                            let _ = tx.send(Out::Msg(final_message(&ctx, opts.snake_case)));
                        }
                        return;
                    }
                    std::mem::take(&mut c.buffer)
                };
                let audio = audio_for(&text, &format, opts.ms_per_char).unwrap_or_default();
                for chunk in chunks_of(&audio, &format, opts.chunk_ms) {
                    if opts.abort_on_close
                        && contexts
                            .lock()
                            .expect("lock")
                            .get(&ctx)
                            .is_none_or(|c| c.closed)
                    {
                        break;
                    }
                    let n = count.fetch_add(1, Ordering::SeqCst);
                    match &opts.fault {
                        Fault::Truncate { after_chunks } if n >= *after_chunks => {
                            let _ = tx.send(Out::Kill);
                            return;
                        }
                        Fault::WsError {
                            after_audio,
                            json,
                            code,
                        } if n >= *after_audio => {
                            let _ = tx.send(Out::Msg(Message::Text(json.clone().into())));
                            let _ = tx.send(Out::Close(*code, "error".into()));
                            return;
                        }
                        Fault::Garbage => {
                            for junk in garbage(opts.snake_case) {
                                let _ = tx.send(Out::Msg(junk));
                            }
                        }
                        _ => {}
                    }
                    let audio_field = if opts.fault == Fault::BadAudio {
                        "%%% not base64 %%%".to_owned()
                    } else {
                        b64(&chunk)
                    };
                    let _ = tx.send(Out::Msg(audio_message(&ctx, audio_field, opts.snake_case)));
                    if let Some(l) = app.shared.ws.lock().expect("lock").get_mut(index) {
                        l.audio_sent += 1;
                    }
                    if first && opts.hold_after_first_chunk {
                        app.shared.hold.notified().await;
                    }
                    first = false;
                    tokio::time::sleep(opts.chunk_delay).await;
                }
            }
        });
    }

    /// `close_context`: a flushed context keeps generating and gets its final at the end; an
    /// idle one gets it now.
    fn close_context(
        &self,
        ctx: &str,
        contexts: &Contexts,
        tx: &mpsc::UnboundedSender<Out>,
        count: &Arc<AtomicUsize>,
        flush_first: bool,
    ) {
        let idle = {
            let mut map = contexts.lock().expect("lock");
            let Some(c) = map.get_mut(ctx) else { return };
            c.closed = true;
            if flush_first && !c.buffer.trim().is_empty() && !c.generating {
                c.flushed = true;
            }
            !c.generating && (!flush_first || c.buffer.trim().is_empty())
        };
        if idle {
            contexts.lock().expect("lock").remove(ctx);
            let _ = tx.send(Out::Msg(final_message(ctx, self.app.opts.snake_case)));
        } else if flush_first {
            self.generate(ctx, contexts, tx, count);
        }
    }
}

fn audio_message(ctx: &str, audio: String, snake: bool) -> Message {
    let v = if snake {
        json!({"audio": audio, "is_final": false, "context_id": ctx, "alignment": null, "normalizedAlignment": null})
    } else {
        json!({"audio": audio, "isFinal": null, "contextId": ctx, "alignment": null, "normalizedAlignment": null})
    };
    Message::Text(v.to_string().into())
}

fn final_message(ctx: &str, snake: bool) -> Message {
    let v = if snake {
        json!({"is_final": true, "context_id": ctx})
    } else {
        json!({"isFinal": true, "contextId": ctx})
    };
    Message::Text(v.to_string().into())
}

fn garbage(snake: bool) -> Vec<Message> {
    vec![
        Message::Text("{not json".into()),
        Message::Text("[1,2,3]".into()),
        Message::Binary(Bytes::from_static(&[0xde, 0xad])),
        Message::Text(r#"{"audio": 12, "isFinal": "soon"}"#.into()),
        audio_message("no-such-context", b64(&[1, 2, 3, 4]), snake),
        Message::Text(
            r#"{"type":"flush_done","context_id":"x","status_code":206,"done":false,"data":"","flush_done":true}"#
                .into(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn audio_follows_text_and_format() {
        let a = audio_for("0123456789", "pcm_16000", 10).unwrap();
        assert_eq!(a.len(), 100 * 16 * 2);
        assert_eq!(audio_for("0123456789", "ulaw_8000", 10).unwrap().len(), 800);
        assert!(audio_for("x", "pcm_11025", 10).is_none());
        let chunks = chunks_of(&a, "pcm_16000", 20);
        assert_eq!(chunks.len(), 5);
        assert!(chunks.iter().all(|c| c.len() % 2 == 0));
    }
}
