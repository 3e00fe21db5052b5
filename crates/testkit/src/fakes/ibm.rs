//! A fake of IBM Cloud IAM and the IBM Watson Speech to Text and Text to Speech services, on one
//! 127.0.0.1 port (the real services are three hosts; the plugins take each URL separately).
//!
//! Wire behaviour as documented (STT_PROTOCOLS.md §6, TTS_PROTOCOLS.md §8; cloud.ibm.com docs
//! "Generating an IBM Cloud IAM token by using an API key", "The WebSocket interface", "The HTTP
//! interface", "Using audio formats", "Listing information about voices"):
//! - `POST /identity/token`, form `grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=…`
//!   → `{"access_token", "refresh_token": "not_supported", "token_type": "Bearer",
//!   "expires_in", "expiration", "scope"}`; an unknown key → 400 with IAM's
//!   `{"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found.", …}`.
//!   Each token is `fake-token-<n>`; the other endpoints accept only issued tokens.
//! - `GET /instances/{id}/v1/recognize?access_token=…&model=…` upgrades to the recognition
//!   socket (a bad token: 401 with a Watson JSON error). The client's `start` is answered with
//!   `{"state": "listening"}`; binary audio accumulates; an interim result is sent every
//!   [`IbmFakeOptions::interim_every_bytes`] when `interim_results` is on; `{"action": "stop"}`
//!   (or an empty binary frame) is answered with the request's final result and `listening`.
//!   With [`IbmFakeOptions::final_every_bytes`] set, a final also closes each phrase of that
//!   many bytes while audio flows, as the service's end-of-phrase results do.
//!   A request with fewer than 100 bytes is refused as the service does (`{"error": "Stream was
//!   N bytes but needs to be at least 100 bytes."}` and close 1011). The transcript is
//!   deterministic: `heard <ms> milliseconds` for the request's audio duration, with word
//!   timings, word confidences and (with `speaker_labels`) speaker 0.
//! - `POST /instances/{id}/v1/synthesize?voice=…` with `Authorization: Bearer <token>`, the
//!   format in `Accept` (or the `accept` query) and `{"text": …}`: a 440 Hz tone of
//!   [`IbmFakeOptions::ms_per_char`] per character of the text without SSML tags, in the format,
//!   streamed in chunks. `audio/l16` and `audio/mulaw`/`alaw` need `rate` (400 otherwise); an
//!   unknown format is 406, an unknown voice 404; l16 is little-endian unless
//!   `endianness=big-endian` is asked for or [`IbmFakeOptions::l16_big_endian`] is set.
//! - `GET /instances/{id}/v1/voices` → `{"voices": […]}` of [`VOICES`].
//!
//! Everything is recorded ([`TokenLog`], [`SttLog`], [`SynthLog`]), and [`SttFault`],
//! [`TtsFault`] and [`IbmFake::set_iam_fault`] make it misbehave.

use crate::fakes::{HttpFake, SeenRequest};
use axum::body::{Body, Bytes};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The grant type IAM expects.
pub const GRANT_TYPE: &str = "urn:ibm:params:oauth:grant-type:apikey";
/// The instance id in the fake's service URLs.
pub const INSTANCE: &str = "fake-instance";
/// Voices served: (name, language, gender, description).
pub const VOICES: &[(&str, &str, &str, &str)] = &[
    (
        "en-US_MichaelV3Voice",
        "en-US",
        "male",
        "Michael: American English male voice. Dnn technology.",
    ),
    (
        "en-US_EmmaExpressive",
        "en-US",
        "female",
        "Emma: American English female voice. Expressive neural technology.",
    ),
    (
        "en-GB_KateV3Voice",
        "en-GB",
        "female",
        "Kate: British English female voice. Dnn technology.",
    ),
];

/// How IAM refuses token requests.
#[derive(Debug, Clone, PartialEq)]
pub struct IamFault {
    /// HTTP status.
    pub status: u16,
    /// Response body.
    pub body: String,
}

/// How the recognition socket misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum SttFault {
    /// Behaves.
    #[default]
    None,
    /// Refuses the upgrade (after the token check) with `status`, `body` and, when set,
    /// `retry-after`.
    Reject {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
    },
    /// After the `start`, sends `{"error": message}` and closes with `code`.
    ErrorAfterStart {
        /// The error text.
        message: String,
        /// Close code.
        code: u16,
    },
    /// After the `start`'s `listening`, closes with `code` and `reason` (no error message).
    CloseAfterStart {
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Sends junk before `listening`: invalid JSON, unknown objects, arrays, wrong types, a
    /// binary frame and a message of [`IbmFakeOptions::huge_bytes`]; then behaves.
    Garbage,
    /// Accepts and reads, never sends anything.
    Silent,
    /// After this many audio bytes, drops the TCP connection without a close frame.
    DisconnectAfterAudio {
        /// Bytes received first.
        bytes: usize,
    },
}

/// How the synthesis endpoint misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum TtsFault {
    /// Behaves.
    #[default]
    None,
    /// Answers `status` with `body` (and `retry-after` when set), after the token check.
    Status {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
    },
    /// 200 with `content-type: application/json` and a body that is not audio.
    Garbage,
    /// After this many chunks the body fails (cut off).
    Truncate {
        /// Chunks sent first.
        after_chunks: usize,
    },
    /// The response head, then nothing.
    Silent,
    /// After the first chunk waits for [`IbmFake::release`].
    HoldAfterFirstChunk,
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct IbmFakeOptions {
    /// The API key IAM accepts.
    pub api_key: String,
    /// `expires_in` of issued tokens (seconds); changeable with [`IbmFake::set_expires_in`].
    pub expires_in: u64,
    /// IAM waits this long before answering.
    pub iam_delay: Duration,
    /// Recognition faults.
    pub stt_fault: SttFault,
    /// Synthesis faults.
    pub tts_fault: TtsFault,
    /// STT: an interim result every this many audio bytes of a request (0: none).
    pub interim_every_bytes: usize,
    /// STT: a final result every this many audio bytes of a request, while audio flows (the
    /// service's end-of-phrase results, as with `end_of_phrase_silence_time`); 0: finals only
    /// on `stop`.
    pub final_every_bytes: usize,
    /// STT: raw text messages sent after the first `listening` (scripted results).
    pub script: Vec<String>,
    /// STT: size of the huge junk message of [`SttFault::Garbage`].
    pub huge_bytes: usize,
    /// TTS: tone per character.
    pub ms_per_char: u32,
    /// TTS: bytes per chunk.
    pub chunk_bytes: usize,
    /// TTS: pause between chunks.
    pub chunk_delay: Duration,
    /// TTS: answer l16 big-endian (and say so in `content-type`) whatever was asked.
    pub l16_big_endian: bool,
}

impl Default for IbmFakeOptions {
    fn default() -> Self {
        Self {
            api_key: "test-key".to_owned(),
            expires_in: 3600,
            iam_delay: Duration::ZERO,
            stt_fault: SttFault::None,
            tts_fault: TtsFault::None,
            interim_every_bytes: 6400,
            final_every_bytes: 0,
            script: Vec::new(),
            huge_bytes: 300_000,
            ms_per_char: 20,
            chunk_bytes: 960,
            chunk_delay: Duration::from_millis(2),
            l16_big_endian: false,
        }
    }
}

impl IbmFakeOptions {
    /// Options accepting `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            ..Self::default()
        }
    }
}

/// One IAM token request.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenLog {
    /// `content-type` header.
    pub content_type: String,
    /// `accept` header.
    pub accept: String,
    /// The decoded form fields, in order.
    pub form: Vec<(String, String)>,
    /// The status answered.
    pub status: u16,
}

impl TokenLog {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One recognition socket.
#[derive(Debug, Clone, PartialEq)]
pub struct SttLog {
    /// The upgrade request.
    pub request: SeenRequest,
    /// Text messages received, in order.
    pub texts: Vec<String>,
    /// Every audio byte received.
    pub audio: Vec<u8>,
    /// Binary frames received.
    pub audio_frames: usize,
    /// `stop` actions received (and empty binary frames).
    pub stops: usize,
    /// WebSocket pings received.
    pub pings: usize,
    /// Final results sent.
    pub finals_sent: usize,
    /// The client's close code, if it closed.
    pub closed_with: Option<u16>,
    /// The connection ended.
    pub ended: bool,
}

/// One `POST /v1/synthesize`.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthLog {
    /// Path, query and headers.
    pub request: SeenRequest,
    /// The JSON body as received.
    pub body: String,
    /// Its `text`.
    pub text: String,
    /// Status answered.
    pub status: u16,
    /// Chunks handed to the server.
    pub chunks_sent: usize,
    /// Bytes handed to the server.
    pub bytes_sent: usize,
    /// The client went away before the end.
    pub client_gone: bool,
    /// Every chunk was handed over.
    pub completed: bool,
}

#[derive(Debug)]
struct Shared {
    opts: IbmFakeOptions,
    expires_in: AtomicU64,
    iam_fault: Mutex<Option<IamFault>>,
    tokens: Mutex<HashSet<String>>,
    counter: AtomicUsize,
    token_log: Mutex<Vec<TokenLog>>,
    stt: Mutex<Vec<Arc<Mutex<SttLog>>>>,
    synth: Mutex<Vec<Arc<Mutex<SynthLog>>>>,
    listings: AtomicUsize,
    release: watch::Sender<bool>,
}

/// The fake (IAM, STT and TTS on one port). Stops when dropped.
#[derive(Debug)]
pub struct IbmFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl IbmFake {
    /// Starts a fake accepting `api_key`, behaving.
    pub async fn start(api_key: impl Into<String>) -> Self {
        Self::with_options(IbmFakeOptions::new(api_key)).await
    }

    /// Starts a fake with `opts`.
    pub async fn with_options(opts: IbmFakeOptions) -> Self {
        let shared = Arc::new(Shared {
            expires_in: AtomicU64::new(opts.expires_in),
            opts,
            iam_fault: Mutex::new(None),
            tokens: Mutex::default(),
            counter: AtomicUsize::new(0),
            token_log: Mutex::default(),
            stt: Mutex::default(),
            synth: Mutex::default(),
            listings: AtomicUsize::new(0),
            release: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/identity/token", post(token))
            .route("/instances/{id}/v1/recognize", get(recognize))
            .route("/instances/{id}/v1/synthesize", post(synthesize))
            .route("/instances/{id}/v1/voices", get(voices))
            .with_state(shared.clone());
        let http = HttpFake::start(router).await;
        Self { http, shared }
    }

    /// `http://127.0.0.1:port/identity/token`, the plugins' `iam_url`.
    pub fn iam_url(&self) -> String {
        format!("{}/identity/token", self.http.base_url())
    }

    /// `http://127.0.0.1:port/instances/fake-instance`, the service instance `url` (the STT
    /// plugin turns it into `ws://`).
    pub fn instance_url(&self) -> String {
        format!("{}/instances/{INSTANCE}", self.http.base_url())
    }

    /// Changes `expires_in` of tokens issued from now on.
    pub fn set_expires_in(&self, secs: u64) {
        self.shared.expires_in.store(secs, Ordering::SeqCst);
    }

    /// Makes IAM refuse (Some) or behave (None) from now on.
    pub fn set_iam_fault(&self, fault: Option<IamFault>) {
        *self.shared.iam_fault.lock().expect("iam lock") = fault;
    }

    /// Forgets every issued token (the services refuse them from now on).
    pub fn revoke_tokens(&self) {
        self.shared.tokens.lock().expect("tokens lock").clear();
    }

    /// Every token request so far.
    pub fn token_requests(&self) -> Vec<TokenLog> {
        self.shared.token_log.lock().expect("log lock").clone()
    }

    /// Every recognition socket so far (accepted upgrades), in order.
    pub fn stt_sessions(&self) -> Vec<SttLog> {
        let logs = self.shared.stt.lock().expect("stt lock");
        logs.iter()
            .map(|l| l.lock().expect("log").clone())
            .collect()
    }

    /// Every synthesis request so far, in order.
    pub fn synth_requests(&self) -> Vec<SynthLog> {
        let logs = self.shared.synth.lock().expect("synth lock");
        logs.iter()
            .map(|l| l.lock().expect("log").clone())
            .collect()
    }

    /// How many times `GET /v1/voices` was served.
    pub fn voice_listings(&self) -> usize {
        self.shared.listings.load(Ordering::SeqCst)
    }

    /// Lets [`TtsFault::HoldAfterFirstChunk`] continue.
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Waits (polling, at most `timeout`) until STT session `index` exists and `pred` holds.
    pub async fn wait_for_stt(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SttLog) -> bool,
    ) -> Option<SttLog> {
        poll(timeout, || {
            self.stt_sessions().into_iter().nth(index).filter(&pred)
        })
        .await
    }

    /// Waits (polling, at most `timeout`) until synthesis request `index` exists and `pred`
    /// holds.
    pub async fn wait_for_synth(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SynthLog) -> bool,
    ) -> Option<SynthLog> {
        poll(timeout, || {
            self.synth_requests().into_iter().nth(index).filter(&pred)
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

fn watson_error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let body = json!({
        "code": status,
        "code_description": code.canonical_reason().unwrap_or(""),
        "error": message,
    });
    (
        code,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn status_response(status: u16, body: &str, retry_after: Option<u64>) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (code, body.to_owned()).into_response();
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(s));
    }
    r
}

/// Percent-decodes one `application/x-www-form-urlencoded` component.
fn form_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (form_decode(k), form_decode(v))
        })
        .collect()
}

/// `POST /identity/token`.
async fn token(State(st): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    if !st.opts.iam_delay.is_zero() {
        tokio::time::sleep(st.opts.iam_delay).await;
    }
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let mut log = TokenLog {
        content_type: header("content-type"),
        accept: header("accept"),
        form: parse_form(&body),
        status: 200,
    };
    let fault = st.iam_fault.lock().expect("iam lock").clone();
    let resp = if let Some(f) = fault {
        log.status = f.status;
        status_response(f.status, &f.body, None)
    } else if !log
        .content_type
        .starts_with("application/x-www-form-urlencoded")
        || log.field("grant_type") != Some(GRANT_TYPE)
    {
        log.status = 400;
        let body = json!({"errorCode": "BXNIM0109E", "errorMessage": "Property missing or empty.",
            "context": {"requestId": "fake"}});
        status_response(400, &body.to_string(), None)
    } else if log.field("apikey") != Some(st.opts.api_key.as_str()) {
        log.status = 400;
        let body = json!({"errorCode": "BXNIM0415E",
            "errorMessage": "Provided API key could not be found.",
            "context": {"requestId": "fake"}});
        status_response(400, &body.to_string(), None)
    } else {
        let n = st.counter.fetch_add(1, Ordering::SeqCst) + 1;
        let tok = format!("fake-token-{n}");
        st.tokens.lock().expect("tokens lock").insert(tok.clone());
        let expires_in = st.expires_in.load(Ordering::SeqCst);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let body = json!({"access_token": tok, "refresh_token": "not_supported",
            "token_type": "Bearer", "expires_in": expires_in, "expiration": now + expires_in,
            "scope": "ibm openid"});
        status_response(200, &body.to_string(), None)
    };
    st.token_log.lock().expect("log lock").push(log);
    resp
}

fn issued(st: &Shared, token: Option<&str>) -> bool {
    token.is_some_and(|t| st.tokens.lock().expect("tokens lock").contains(t))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

/// `GET /instances/{id}/v1/recognize`: the upgrade.
async fn recognize(
    State(st): State<Arc<Shared>>,
    Path(_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let req = seen(&uri, &headers);
    let token = req
        .query("access_token")
        .map(form_decode)
        .or_else(|| bearer(&headers).map(str::to_owned));
    if !issued(&st, token.as_deref()) {
        return watson_error(401, "Unauthorized");
    }
    if let SttFault::Reject {
        status,
        body,
        retry_after,
    } = &st.opts.stt_fault
    {
        return status_response(*status, body, *retry_after);
    }
    let log = Arc::new(Mutex::new(SttLog {
        request: req,
        texts: Vec::new(),
        audio: Vec::new(),
        audio_frames: 0,
        stops: 0,
        pings: 0,
        finals_sent: 0,
        closed_with: None,
        ended: false,
    }));
    st.stt.lock().expect("stt lock").push(log.clone());
    let opts = st.opts.clone();
    ws.max_message_size(64 << 20)
        .on_upgrade(move |socket| async move {
            stt_session(socket, opts, log.clone()).await;
            log.lock().expect("log").ended = true;
        })
}

/// Per-request recognition state.
#[derive(Debug, Default)]
struct Request {
    bytes: usize,
    interims: usize,
    offset_s: f64,
}

/// Bytes per second of a `content-type`, if it is one the fake knows.
fn byte_rate(content_type: &str) -> Option<f64> {
    let ct = content_type.to_ascii_lowercase();
    let rate = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("rate="))
        .and_then(|r| r.parse::<f64>().ok())?;
    let channels = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("channels="))
        .and_then(|c| c.parse::<f64>().ok())
        .unwrap_or(1.0);
    if ct.starts_with("audio/l16") {
        Some(rate * 2.0 * channels)
    } else if ct.starts_with("audio/mulaw") || ct.starts_with("audio/alaw") {
        Some(rate * channels)
    } else {
        None
    }
}

async fn send_text(socket: &mut WebSocket, v: String) -> bool {
    socket.send(Message::Text(v.into())).await.is_ok()
}

/// Sends a close frame, then reads (bounded) until the client's close: like the service, the
/// fake finishes the closing handshake instead of dropping a socket with audio still unread
/// (which would reset the connection and lose the error message sent just before).
async fn close(socket: &mut WebSocket, code: u16, reason: &str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })))
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

fn result_json(
    req: &Request,
    bps: f64,
    is_final: bool,
    speakers: bool,
    index: usize,
) -> (String, f64) {
    let dur = req.bytes as f64 / bps;
    let ms = (dur * 1000.0).round() as u64;
    let s = req.offset_s;
    let third = dur / 3.0;
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let words = [
        ("heard".to_owned(), r3(s), r3(s + third)),
        (ms.to_string(), r3(s + third), r3(s + 2.0 * third)),
        ("milliseconds".to_owned(), r3(s + 2.0 * third), r3(s + dur)),
    ];
    let msg = if is_final {
        let timestamps: Vec<Value> = words.iter().map(|(w, a, b)| json!([w, a, b])).collect();
        let confs: Vec<Value> = words.iter().map(|(w, _, _)| json!([w, 0.9])).collect();
        let mut m = json!({"result_index": index, "results": [{"final": true,
            "alternatives": [{"transcript": format!("heard {ms} milliseconds "),
            "confidence": 0.9, "timestamps": timestamps, "word_confidence": confs}]}]});
        if speakers {
            let labels: Vec<Value> = words
                .iter()
                .map(|(_, a, b)| json!({"from": a, "to": b, "speaker": 0, "confidence": 0.8, "final": true}))
                .collect();
            m["speaker_labels"] = Value::Array(labels);
        }
        m
    } else {
        json!({"result_index": index, "results": [{"final": false,
            "alternatives": [{"transcript": "heard ",
            "timestamps": [[words[0].0, words[0].1, words[0].2]]}]}]})
    };
    (msg.to_string(), dur)
}

async fn stt_session(mut socket: WebSocket, opts: IbmFakeOptions, log: Arc<Mutex<SttLog>>) {
    let silent = opts.stt_fault == SttFault::Silent;
    let mut bps: Option<f64> = None;
    let mut interim = false;
    let mut speakers = false;
    let mut req = Request::default();
    let mut index = 0usize;
    let mut total = 0usize;
    let mut scripted = false;
    while let Some(msg) = socket.recv().await {
        let Ok(msg) = msg else { return };
        match msg {
            Message::Text(t) => {
                log.lock().expect("log").texts.push(t.to_string());
                if silent {
                    continue;
                }
                let v: Value = serde_json::from_str(&t).unwrap_or(Value::Null);
                match v.get("action").and_then(Value::as_str) {
                    Some("start") => {
                        let ct = v.get("content-type").and_then(Value::as_str).unwrap_or("");
                        let Some(rate) = byte_rate(ct) else {
                            let e = format!(
                                "Unable to transcode data stream {ct} -> audio/x-float-array"
                            );
                            send_text(&mut socket, json!({ "error": e }).to_string()).await;
                            close(&mut socket, 1011, "").await;
                            return;
                        };
                        bps = Some(rate);
                        interim = v.get("interim_results").and_then(Value::as_bool) == Some(true);
                        speakers = v.get("speaker_labels").and_then(Value::as_bool) == Some(true);
                        match &opts.stt_fault {
                            SttFault::ErrorAfterStart { message, code } => {
                                send_text(&mut socket, json!({ "error": message }).to_string())
                                    .await;
                                close(&mut socket, *code, "").await;
                                return;
                            }
                            SttFault::Garbage => {
                                for junk in [
                                    "not json at all".to_owned(),
                                    r#"{"unknown": true}"#.to_owned(),
                                    "[1, 2, 3]".to_owned(),
                                    r#"{"results": "nope"}"#.to_owned(),
                                    r#"{"results": [{"final": "yes", "alternatives": [{"transcript": 7, "timestamps": [[1, "a"]]}]}]}"#.to_owned(),
                                    r#"{"state": 5}"#.to_owned(),
                                    r#"{"state": "thinking"}"#.to_owned(),
                                    format!(r#"{{"padding": "{}"}}"#, "x".repeat(opts.huge_bytes)),
                                ] {
                                    send_text(&mut socket, junk).await;
                                }
                                let _ = socket
                                    .send(Message::Binary(Bytes::from_static(&[0xde, 0xad])))
                                    .await;
                            }
                            _ => {}
                        }
                        send_text(&mut socket, r#"{"state": "listening"}"#.to_owned()).await;
                        if let SttFault::CloseAfterStart { code, reason } = &opts.stt_fault {
                            close(&mut socket, *code, reason).await;
                            return;
                        }
                        if !scripted {
                            scripted = true;
                            for m in &opts.script {
                                send_text(&mut socket, m.clone()).await;
                            }
                        }
                    }
                    Some("stop") => {
                        if !stop(&mut socket, &log, &mut req, bps, speakers, &mut index).await {
                            return;
                        }
                    }
                    _ => {
                        let w = json!({"warnings": ["Unknown arguments: the message was not understood."]});
                        send_text(&mut socket, w.to_string()).await;
                    }
                }
            }
            Message::Binary(b) => {
                {
                    let mut l = log.lock().expect("log");
                    l.audio.extend_from_slice(&b);
                    l.audio_frames += 1;
                }
                if silent {
                    continue;
                }
                if b.is_empty() {
                    if !stop(&mut socket, &log, &mut req, bps, speakers, &mut index).await {
                        return;
                    }
                    continue;
                }
                total += b.len();
                if let SttFault::DisconnectAfterAudio { bytes } = opts.stt_fault {
                    if total >= bytes {
                        return; // dropping the socket: no close frame
                    }
                }
                let Some(rate) = bps else {
                    send_text(
                        &mut socket,
                        json!({"error": "You must send a start message before audio."}).to_string(),
                    )
                    .await;
                    close(&mut socket, 1011, "").await;
                    return;
                };
                req.bytes += b.len();
                if interim
                    && opts.interim_every_bytes > 0
                    && req.bytes / opts.interim_every_bytes > req.interims
                {
                    req.interims = req.bytes / opts.interim_every_bytes;
                    let (m, _) = result_json(&req, rate, false, false, index);
                    send_text(&mut socket, m).await;
                }
                if opts.final_every_bytes > 0 && req.bytes >= opts.final_every_bytes {
                    let (m, dur) = result_json(&req, rate, true, speakers, index);
                    send_text(&mut socket, m).await;
                    log.lock().expect("log").finals_sent += 1;
                    index += 1;
                    req = Request {
                        offset_s: req.offset_s + dur,
                        ..Request::default()
                    };
                }
            }
            Message::Ping(_) => log.lock().expect("log").pings += 1,
            Message::Pong(_) => {}
            Message::Close(frame) => {
                log.lock().expect("log").closed_with = Some(frame.map_or(1005, |f| f.code));
                return;
            }
        }
    }
}

/// Answers a stop: the final, then `listening`. Returns false when the socket was closed.
async fn stop(
    socket: &mut WebSocket,
    log: &Arc<Mutex<SttLog>>,
    req: &mut Request,
    bps: Option<f64>,
    speakers: bool,
    index: &mut usize,
) -> bool {
    log.lock().expect("log").stops += 1;
    if req.bytes < 100 {
        let e = format!(
            "Stream was {} bytes but needs to be at least 100 bytes.",
            req.bytes
        );
        send_text(socket, json!({ "error": e }).to_string()).await;
        close(socket, 1011, "").await;
        return false;
    }
    let (m, dur) = result_json(req, bps.unwrap_or(32_000.0), true, speakers, *index);
    send_text(socket, m).await;
    log.lock().expect("log").finals_sent += 1;
    *index += 1;
    let offset = req.offset_s + dur;
    *req = Request {
        offset_s: offset,
        ..Request::default()
    };
    send_text(socket, r#"{"state": "listening"}"#.to_owned()).await
}

/// The output format of an `Accept` value: (encoding, rate, big-endian, content-type).
fn output_format(
    accept: &str,
    big_endian: bool,
) -> Result<(&'static str, u32, bool, String), (u16, String)> {
    let lower = accept.to_ascii_lowercase().replace(' ', "");
    let mut parts = lower.split(';');
    let mime = parts.next().unwrap_or("");
    let params: Vec<&str> = parts.collect();
    let param = |k: &str| {
        params
            .iter()
            .find_map(|p| p.strip_prefix(&format!("{k}=")))
            .map(str::to_owned)
    };
    let rate = param("rate").and_then(|r| r.parse::<u32>().ok());
    if let Some(r) = rate {
        if !(8_000..=192_000).contains(&r) {
            return Err((
                400,
                "The sampling rate must lie in the range of 8 kHz to 192 kHz.".to_owned(),
            ));
        }
    }
    let needs_rate = |enc: &'static str| {
        rate.ok_or_else(|| {
            (
                400,
                format!("audio/{enc} requires the rate parameter, e.g. audio/{enc};rate=16000"),
            )
        })
    };
    Ok(match (mime, param("codecs").as_deref()) {
        ("audio/l16", _) => {
            let r = needs_rate("l16")?;
            let be = big_endian || param("endianness").as_deref() == Some("big-endian");
            let ct = format!(
                "audio/l16;rate={r};endianness={}",
                if be { "big-endian" } else { "little-endian" }
            );
            ("l16", r, be, ct)
        }
        ("audio/mulaw", _) => {
            let r = needs_rate("mulaw")?;
            ("mulaw", r, false, format!("audio/mulaw;rate={r}"))
        }
        ("audio/alaw", _) => {
            let r = needs_rate("alaw")?;
            ("alaw", r, false, format!("audio/alaw;rate={r}"))
        }
        ("audio/basic", _) => ("mulaw", 8_000, false, "audio/basic".to_owned()),
        ("audio/mp3" | "audio/mpeg", _) => {
            ("mp3", rate.unwrap_or(22_050), false, "audio/mp3".to_owned())
        }
        ("audio/ogg", Some("opus")) | ("", _) => (
            "opus",
            rate.unwrap_or(48_000),
            false,
            "audio/ogg;codecs=opus".to_owned(),
        ),
        _ => {
            return Err((
                406,
                format!("Unsupported audio format (MIME type) {accept:?}"),
            ))
        }
    })
}

fn mulaw(s: i16) -> u8 {
    const BIAS: i32 = 0x84;
    let mut x = i32::from(s);
    let sign = if x < 0 {
        x = -x;
        0x80
    } else {
        0
    };
    x = (x + BIAS).min(32_635 + BIAS);
    let exp = (31 - (x as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mant = (x >> (exp + 3)) & 0x0F;
    !(sign | (exp << 4) as u8 as i32 | mant) as u8
}

fn alaw(s: i16) -> u8 {
    let mut x = i32::from(s) >> 3;
    let sign = if x >= 0 { 0xD5 } else { 0x55 };
    if x < 0 {
        x = -x - 1;
    }
    let seg = (0..8).find(|&i| x < (0x20 << i)).unwrap_or(7);
    let v = if seg < 2 { x >> 1 } else { x >> seg };
    (((seg << 4) | (v & 0x0F)) as u8) ^ sign as u8
}

/// The fake's speech: a 440 Hz tone of `ms_per_char` per character (at least one) of `text`
/// without SSML tags, in `encoding` (`l16`, `mulaw`, `alaw`; mp3/opus are stand-in bytes with
/// the format's magic) at `rate`.
pub fn speech(
    text: &str,
    encoding: &str,
    rate: u32,
    big_endian: bool,
    ms_per_char: u32,
) -> Vec<u8> {
    let plain = strip_tags(text);
    let chars = plain.trim().chars().count().max(1) as u32;
    let samples = crate::audio::tone(440.0, chars * ms_per_char, rate);
    match encoding {
        "l16" if big_endian => samples.iter().flat_map(|s| s.to_be_bytes()).collect(),
        "l16" => crate::audio::to_le_bytes(&samples),
        "mulaw" => samples.iter().map(|&s| mulaw(s)).collect(),
        "alaw" => samples.iter().map(|&s| alaw(s)).collect(),
        other => {
            let magic: &[u8] = if other == "mp3" { b"ID3\x04" } else { b"OggS" };
            let mut v = magic.to_vec();
            v.extend((0..samples.len() / 8).map(|i| (i % 251) as u8));
            v
        }
    }
}

/// `text` without `<…>` tags (SSML), entities left as they are.
pub fn strip_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_tag = false;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// `POST /instances/{id}/v1/synthesize`.
async fn synthesize(
    State(st): State<Arc<Shared>>,
    Path(_id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let req = seen(&uri, &headers);
    let log = Arc::new(Mutex::new(SynthLog {
        request: req.clone(),
        body: body.clone(),
        text: String::new(),
        status: 0,
        chunks_sent: 0,
        bytes_sent: 0,
        client_gone: false,
        completed: false,
    }));
    st.synth.lock().expect("synth lock").push(log.clone());
    let set_status = |s: u16| log.lock().expect("log").status = s;
    if !issued(&st, bearer(&headers)) {
        set_status(401);
        return watson_error(401, "Unauthorized");
    }
    if let TtsFault::Status {
        status,
        body,
        retry_after,
    } = &st.opts.tts_fault
    {
        set_status(*status);
        return status_response(*status, body, *retry_after);
    }
    let voice = req
        .query("voice")
        .map(form_decode)
        .unwrap_or_else(|| "en-US_MichaelV3Voice".into());
    if !VOICES.iter().any(|(n, ..)| *n == voice) {
        set_status(404);
        return watson_error(404, &format!("Model {voice} not found"));
    }
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.query("accept").map(form_decode))
        .unwrap_or_default();
    let (encoding, rate, be, content_type) = match output_format(&accept, st.opts.l16_big_endian) {
        Ok(f) => f,
        Err((status, message)) => {
            set_status(status);
            return watson_error(status, &message);
        }
    };
    let text = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("text").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    log.lock().expect("log").text = text.clone();
    if text.trim().is_empty() {
        set_status(400);
        return watson_error(400, "No text specified");
    }
    if text.len() > 5_000 {
        set_status(413);
        return watson_error(413, "The text exceeds the 5 KB limit");
    }
    set_status(200);
    let ok = |ct: &str, body: Body| {
        let mut r = Response::new(body);
        if let Ok(v) = HeaderValue::from_str(ct) {
            r.headers_mut().insert("content-type", v);
        }
        r
    };
    match st.opts.tts_fault {
        TtsFault::Garbage => return ok("application/json", Body::from(r#"{"results": [tru"#)),
        TtsFault::Silent => {
            let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            return ok(&content_type, Body::from_stream(never));
        }
        _ => {}
    }
    let audio = speech(&text, encoding, rate, be, st.opts.ms_per_char);
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(produce(
        audio,
        tx,
        st.opts.clone(),
        st.release.subscribe(),
        log,
    ));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    ok(&content_type, Body::from_stream(stream))
}

async fn released(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn produce(
    audio: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    opts: IbmFakeOptions,
    mut release: watch::Receiver<bool>,
    log: Arc<Mutex<SynthLog>>,
) {
    let chunks: Vec<Bytes> = audio
        .chunks(opts.chunk_bytes.max(1))
        .map(Bytes::copy_from_slice)
        .collect();
    for (i, chunk) in chunks.into_iter().enumerate() {
        if let TtsFault::Truncate { after_chunks } = opts.tts_fault {
            if i >= after_chunks {
                let _ = tx.send(Err(std::io::Error::other("fake: truncated"))).await;
                return;
            }
        }
        if i > 0 {
            if opts.tts_fault == TtsFault::HoldAfterFirstChunk && i == 1 {
                tokio::select! {
                    () = released(&mut release) => {}
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
}

/// `GET /instances/{id}/v1/voices`.
async fn voices(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if !issued(&st, bearer(&headers)) {
        return watson_error(401, "Unauthorized");
    }
    st.listings.fetch_add(1, Ordering::SeqCst);
    let list: Vec<Value> = VOICES
        .iter()
        .map(|(name, lang, gender, desc)| {
            json!({"name": name, "language": lang, "gender": gender, "description": desc,
                "url": format!("/v1/voices/{name}"), "customizable": true,
                "supported_features": {"voice_transformation": false, "custom_pronunciation": true}})
        })
        .collect();
    status_response(200, &json!({ "voices": list }).to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_and_formats() {
        assert_eq!(form_decode("a%3Ab+c%"), "a:b c%");
        let f = parse_form("grant_type=urn%3Aibm%3Aparams&apikey=k%2B1");
        assert_eq!(f[1], ("apikey".into(), "k+1".into()));
        assert!(output_format("audio/l16", false).is_err());
        let (e, r, be, _) =
            output_format("audio/l16;rate=16000;endianness=big-endian", false).unwrap();
        assert_eq!((e, r, be), ("l16", 16_000, true));
        assert!(output_format("audio/x-unknown", false).is_err());
        assert_eq!(mulaw(0), 0xFF);
        assert_eq!(alaw(0), 0xD5);
        assert_eq!(strip_tags("<speak>Hi <b>x</b></speak>"), "Hi x");
    }
}
