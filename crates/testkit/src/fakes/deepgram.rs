//! A fake of Deepgram's streaming speech-to-text WebSocket (`/v1/listen`), on 127.0.0.1.
//!
//! It follows the wire protocol as documented (`STT_PROTOCOLS.md` §1; Deepgram's Rust and Go
//! SDKs for message shapes):
//! - the upgrade checks `Authorization: Token <key>` (or `Bearer <key>`), the path and the query
//!   (`encoding` from the documented list, `sample_rate` required with `encoding`, booleans
//!   `true`/`false`, a known model family); a refusal is an HTTP status with `dg-error` and
//!   `dg-request-id` headers and a JSON body (`err_code`, `err_msg`, `request_id`), and a
//!   `retry-after` header when asked to;
//! - binary frames are audio; text frames are `KeepAlive`, `Finalize` and `CloseStream`;
//!   a zero-length binary frame ends the stream, as the docs warn;
//! - results are deterministic: one word per [`FakeOptions::ms_per_word`] of non-silent audio
//!   (PCM16 above a small level, G.711 bytes other than silence codes; every other encoding
//!   counts as speech), words from a fixed list, interim `Results` every
//!   [`FakeOptions::interim_every_ms`] of speech when `interim_results=true`, a final with
//!   `speech_final: true` after `endpointing` ms of silence (default 10), `SpeechStarted` with
//!   `vad_events=true`, `UtteranceEnd` after `utterance_end_ms` of silence, a final with
//!   `from_finalize: true` on `Finalize`, and on `CloseStream` the last final, a `Metadata`
//!   summary and a 1000 close;
//! - no audio or KeepAlive for [`FakeOptions::idle_timeout`] closes with 1011 `NET-0001`.
//!
//! Everything received is recorded per connection ([`SessionLog`]) for assertions, and
//! [`Fault`] makes it misbehave in the ways the real service can (or worse).
//!
//! The text-to-speech side (`/v1/speak` REST and WebSocket, `/v1/models`) is in [`tts`]
//! ([`DeepgramTtsFake`]).

use super::{FakeSocket, SeenRequest, WsMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

pub mod tts;
pub use tts::{DeepgramTtsFake, SpeakLog, StreamLog, TtsFakeOptions, TtsFault};

/// Words the fake "hears", in order.
pub const VOCABULARY: &[&str] = &[
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet",
];

/// Encodings the documentation lists for raw audio.
const ENCODINGS: &[&str] = &[
    "linear16", "linear32", "flac", "alaw", "mulaw", "amr-nb", "amr-wb", "opus", "ogg-opus",
    "speex", "g729",
];

/// Model families the fake knows (`nova-3-medical` is family `nova-3`).
const MODEL_FAMILIES: &[&str] = &["nova-3", "nova-2", "nova", "enhanced", "base"];

const MODEL_UUID: &str = "1dbdfb4d-85b2-4659-9c6b-3bba3ec4d6ad";

/// How the fake misbehaves (the same on every connection).
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// Refuses the upgrade with `status` (after the auth check passes), a `dg-error` reason and,
    /// when set, `retry-after: <secs>`.
    Reject {
        /// HTTP status (400, 402, 429, 503, …).
        status: u16,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
        /// The `dg-error` text.
        reason: String,
    },
    /// After `after_audio` audio frames, sends the text frame `json` and then closes with
    /// `code` and `reason`.
    ErrorMessage {
        /// Audio frames received first.
        after_audio: usize,
        /// The text frame to send.
        json: String,
        /// Close code sent after it.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// After `after_audio` audio frames, closes with `code` and `reason` (`1008`/`DATA-0000`,
    /// `1011`/`NET-0000`, …).
    Close {
        /// Audio frames received first.
        after_audio: usize,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// Sends garbage before every real message: invalid JSON, an unknown type, a binary frame,
    /// a mistyped `Results`, a JSON array.
    Garbage,
    /// After the first audio frame, sends one text message of this many bytes.
    Huge(usize),
    /// Accepts and reads everything but never answers or closes (and never idles out).
    Silent,
    /// After `after_audio` audio frames, drops the TCP connection without a close frame.
    Disconnect {
        /// Audio frames received first.
        after_audio: usize,
    },
    /// Ignores `CloseStream`: no last results, no close.
    IgnoreCloseStream,
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The API key it accepts (`Token <key>` or `Bearer <key>`).
    pub api_key: String,
    /// Misbehaviour.
    pub fault: Fault,
    /// Close with 1011 `NET-0001` after this long without audio or KeepAlive (Deepgram: 10 s).
    pub idle_timeout: Duration,
    /// Audio per transcribed word.
    pub ms_per_word: u32,
    /// Speech between interim results.
    pub interim_every_ms: u32,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            api_key: "test-key".to_owned(),
            fault: Fault::None,
            idle_timeout: Duration::from_secs(10),
            ms_per_word: 250,
            interim_every_ms: 500,
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

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, d: Duration) -> Self {
        self.idle_timeout = d;
        self
    }
}

/// What one accepted connection received and sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionLog {
    /// The upgrade request.
    pub request: SeenRequest,
    /// Every audio byte, in order.
    pub audio: Vec<u8>,
    /// Non-empty binary frames received.
    pub audio_frames: usize,
    /// Zero-length binary frames received (the docs say never to send one).
    pub empty_frames: usize,
    /// Every text frame received, verbatim.
    pub texts: Vec<String>,
    /// `{"type":"KeepAlive"}` messages received.
    pub keepalives: usize,
    /// `{"type":"Finalize"}` messages received.
    pub finalizes: usize,
    /// `{"type":"CloseStream"}` messages received.
    pub close_streams: usize,
    /// Every text frame sent, verbatim.
    pub sent: Vec<String>,
    /// The close code the fake sent, if it closed.
    pub closed_with: Option<u16>,
    /// The connection ended (either side).
    pub ended: bool,
}

impl SessionLog {
    fn new(request: SeenRequest) -> Self {
        Self {
            request,
            audio: Vec::new(),
            audio_frames: 0,
            empty_frames: 0,
            texts: Vec::new(),
            keepalives: 0,
            finalizes: 0,
            close_streams: 0,
            sent: Vec::new(),
            closed_with: None,
            ended: false,
        }
    }
}

type Logs = Arc<Mutex<Vec<Arc<Mutex<SessionLog>>>>>;

/// The fake service. Stops when dropped.
#[derive(Debug)]
pub struct DeepgramFake {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    sessions: Logs,
    task: JoinHandle<()>,
}

impl DeepgramFake {
    /// Starts a fake accepting `api_key`, behaving.
    pub async fn start(api_key: impl Into<String>) -> Self {
        Self::with_options(FakeOptions::new(api_key)).await
    }

    /// Starts a fake with `options`.
    pub async fn with_options(options: FakeOptions) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1");
        let addr = listener.local_addr().expect("local addr");
        let requests: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let sessions: Logs = Arc::default();
        let options = Arc::new(options);
        let (reqs, logs) = (requests.clone(), sessions.clone());
        let task = tokio::spawn(async move {
            let mut counter = 0u64;
            while let Ok((tcp, _)) = listener.accept().await {
                counter += 1;
                let request_id = format!("00000000-0000-4000-8000-{counter:012}");
                let (opts, reqs, logs) = (options.clone(), reqs.clone(), logs.clone());
                tokio::spawn(async move {
                    let mut captured = None;
                    let rid = request_id.clone();
                    // tungstenite's callback signature fixes the large error type.
                    #[allow(clippy::result_large_err)]
                    let callback = |req: &Request, mut resp: Response| {
                        let seen = SeenRequest {
                            uri: req.uri().to_string(),
                            headers: req
                                .headers()
                                .iter()
                                .map(|(n, v)| {
                                    (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect(),
                        };
                        let verdict = check_upgrade(&seen, &opts);
                        captured = Some(seen);
                        match verdict {
                            Ok(()) => {
                                if let Ok(v) = HeaderValue::from_str(&rid) {
                                    resp.headers_mut().insert("dg-request-id", v);
                                }
                                Ok(resp)
                            }
                            Err(r) => Err(r.response(&rid)),
                        }
                    };
                    let ws = tokio_tungstenite::accept_hdr_async(tcp, callback).await;
                    let Some(req) = captured else { return };
                    reqs.lock().expect("requests lock").push(req.clone());
                    let Ok(ws) = ws else { return };
                    let log = Arc::new(Mutex::new(SessionLog::new(req.clone())));
                    logs.lock().expect("sessions lock").push(log.clone());
                    serve(ws, req, &opts, request_id, log.clone()).await;
                    log.lock().expect("log lock").ended = true;
                });
            }
        });
        Self {
            addr,
            requests,
            sessions,
            task,
        }
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:port`, the `base_url` to configure the plugin with.
    pub fn base_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Every upgrade request received, accepted or not.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.requests.lock().expect("requests lock").clone()
    }

    /// A snapshot of every accepted connection's log, in accept order.
    pub fn sessions(&self) -> Vec<SessionLog> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .iter()
            .map(|l| l.lock().expect("log lock").clone())
            .collect()
    }

    /// Waits (polling, at most `timeout`) until connection `index` exists and `pred` holds for
    /// its log; returns that log, or `None` on timeout.
    pub async fn wait_for(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SessionLog) -> bool,
    ) -> Option<SessionLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(log) = self.sessions().into_iter().nth(index) {
                if pred(&log) {
                    return Some(log);
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for DeepgramFake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A refused upgrade.
struct Refusal {
    status: u16,
    err_code: &'static str,
    reason: String,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: u16, err_code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            err_code,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// The HTTP response: `dg-error` and `dg-request-id` headers, the reason in the body too
    /// (STT_PROTOCOLS.md §1 "Connection").
    fn response(&self, request_id: &str) -> ErrorResponse {
        let body =
            json!({"err_code": self.err_code, "err_msg": self.reason, "request_id": request_id});
        let mut r = ErrorResponse::new(Some(body.to_string()));
        *r.status_mut() = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let h = r.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.reason) {
            h.insert("dg-error", v);
        }
        if let Ok(v) = HeaderValue::from_str(request_id) {
            h.insert("dg-request-id", v);
        }
        if let Some(s) = self.retry_after {
            h.insert("retry-after", HeaderValue::from(s));
        }
        h.insert("content-type", HeaderValue::from_static("application/json"));
        r
    }
}

/// Query parameters, percent-decoded (`+` is a space).
fn query_pairs(uri: &str) -> Vec<(String, String)> {
    let Some((_, q)) = uri.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
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
                    out.push(h << 4 | l);
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

/// The session parameters the fake acts on, from the query.
#[derive(Debug, Clone)]
struct Params {
    model: String,
    encoding: Option<String>,
    sample_rate: u32,
    channels: u32,
    interim_results: bool,
    punctuate: bool,
    vad_events: bool,
    diarize: bool,
    /// `None`: endpointing off.
    endpointing_ms: Option<f64>,
    utterance_end_ms: Option<f64>,
}

fn parse_params(req: &SeenRequest) -> Result<Params, Refusal> {
    let pairs = query_pairs(&req.uri);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let bad = |what: String| Refusal::new(400, "Bad Request", what);
    let boolean = |k: &str| -> Result<bool, Refusal> {
        match get(k) {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(bad(format!("Invalid query string: {k}={v}"))),
        }
    };
    let model = get("model").unwrap_or("base").to_owned();
    if !MODEL_FAMILIES
        .iter()
        .any(|f| model == *f || model.starts_with(&format!("{f}-")))
    {
        return Err(bad(
            "No such model/language/tier combination found. Use the /v1/models endpoint to see available models.".into(),
        ));
    }
    let encoding = get("encoding").map(str::to_owned);
    if let Some(e) = &encoding {
        if !ENCODINGS.contains(&e.as_str()) {
            return Err(bad(format!("Invalid query string: encoding={e}")));
        }
    }
    let sample_rate = match (get("sample_rate"), &encoding) {
        (Some(v), _) => v
            .parse::<u32>()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| bad(format!("Invalid query string: sample_rate={v}")))?,
        (None, Some(_)) => {
            return Err(bad(
                "sample_rate is required when encoding is specified".into()
            ))
        }
        (None, None) => 16_000,
    };
    let channels = match get("channels") {
        None => 1,
        Some(v) => v
            .parse::<u32>()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| bad(format!("Invalid query string: channels={v}")))?,
    };
    let endpointing_ms = match get("endpointing") {
        None | Some("true") => Some(10.0),
        Some("false") => None,
        Some(v) => Some(
            v.parse::<f64>()
                .map_err(|_| bad(format!("Invalid query string: endpointing={v}")))?,
        ),
    };
    let utterance_end_ms = match get("utterance_end_ms") {
        None => None,
        Some(v) => Some(
            v.parse::<f64>()
                .map_err(|_| bad(format!("Invalid query string: utterance_end_ms={v}")))?,
        ),
    };
    Ok(Params {
        model,
        encoding,
        sample_rate,
        channels,
        interim_results: boolean("interim_results")?,
        punctuate: boolean("punctuate")? || boolean("smart_format")?,
        vad_events: boolean("vad_events")?,
        diarize: boolean("diarize")?,
        endpointing_ms,
        utterance_end_ms,
    })
}

fn check_upgrade(req: &SeenRequest, opts: &FakeOptions) -> Result<(), Refusal> {
    if req.path() != "/v1/listen" {
        return Err(Refusal::new(404, "Not Found", "Not Found"));
    }
    let auth = req.header("authorization").unwrap_or("");
    let ok = ["Token ", "Bearer "].iter().any(|p| {
        auth.strip_prefix(p)
            .is_some_and(|k| !opts.api_key.is_empty() && k == opts.api_key)
    });
    if !ok {
        return Err(Refusal::new(401, "INVALID_AUTH", "Invalid credentials."));
    }
    parse_params(req)?;
    if let Fault::Reject {
        status,
        retry_after,
        reason,
    } = &opts.fault
    {
        let mut r = Refusal::new(*status, "REJECTED", reason.clone());
        r.retry_after = *retry_after;
        return Err(r);
    }
    Ok(())
}

/// The transcription state of one connection.
struct Engine {
    p: Params,
    request_id: String,
    bytes_per_ms: f64,
    ms_per_word: f64,
    interim_every_ms: f64,
    /// Audio position, ms.
    pos_ms: f64,
    in_speech: bool,
    seg_start_ms: f64,
    speech_ms: f64,
    last_interim_ms: f64,
    silence_ms: f64,
    /// Silence since the last final word, for UtteranceEnd; `None` when none is pending.
    since_last_word: Option<(f64, f64)>,
    segments: u64,
    words_total: usize,
}

impl Engine {
    fn new(p: Params, request_id: String, opts: &FakeOptions) -> Self {
        let per_sample = match p.encoding.as_deref() {
            Some("linear16") => 2.0,
            Some("linear32") => 4.0,
            Some("mulaw" | "alaw") => 1.0,
            // Compressed or containerised: a nominal 16 kHz PCM16 rate.
            _ => 2.0,
        };
        let rate = if p.encoding.is_some() {
            f64::from(p.sample_rate)
        } else {
            16_000.0
        };
        Self {
            bytes_per_ms: (per_sample * rate * f64::from(p.channels) / 1000.0).max(1.0),
            p,
            request_id,
            ms_per_word: f64::from(opts.ms_per_word.max(1)),
            interim_every_ms: f64::from(opts.interim_every_ms.max(1)),
            pos_ms: 0.0,
            in_speech: false,
            seg_start_ms: 0.0,
            speech_ms: 0.0,
            last_interim_ms: 0.0,
            silence_ms: 0.0,
            since_last_word: None,
            segments: 0,
            words_total: 0,
        }
    }

    fn is_silent(&self, audio: &[u8]) -> bool {
        match self.p.encoding.as_deref() {
            Some("linear16") => audio
                .chunks_exact(2)
                .all(|s| i16::from_le_bytes([s[0], s[1]]).unsigned_abs() < 100),
            Some("mulaw") => audio.iter().all(|b| matches!(b, 0xFF | 0x7F)),
            Some("alaw") => audio.iter().all(|b| matches!(b, 0xD5 | 0x55)),
            _ => false,
        }
    }

    /// Messages to send after `audio`.
    fn on_audio(&mut self, audio: &[u8]) -> Vec<Value> {
        let mut out = Vec::new();
        let dur = audio.len() as f64 / self.bytes_per_ms;
        let silent = self.is_silent(audio);
        if !silent {
            if !self.in_speech {
                self.in_speech = true;
                self.seg_start_ms = self.pos_ms;
                self.speech_ms = 0.0;
                self.last_interim_ms = 0.0;
                self.since_last_word = None;
                if self.p.vad_events {
                    out.push(json!({"type": "SpeechStarted", "channel": [0, 1], "timestamp": secs(self.pos_ms)}));
                }
            }
            self.speech_ms += dur;
            self.silence_ms = 0.0;
            if self.p.interim_results
                && self.speech_ms - self.last_interim_ms >= self.interim_every_ms
            {
                self.last_interim_ms = self.speech_ms;
                out.push(self.results(false, false, false));
            }
        } else if self.in_speech {
            self.silence_ms += dur;
            if self.p.endpointing_ms.is_some_and(|e| self.silence_ms >= e) {
                out.push(self.finish(true, false));
            }
        }
        self.pos_ms += dur;
        if silent {
            if let (Some((end, gap)), Some(limit)) = (self.since_last_word, self.p.utterance_end_ms)
            {
                let gap = gap + dur;
                if gap >= limit {
                    out.push(json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": secs(end)}));
                    self.since_last_word = None;
                } else {
                    self.since_last_word = Some((end, gap));
                }
            }
        }
        out
    }

    /// The final for the current segment (possibly empty), which ends it.
    fn finish(&mut self, speech_final: bool, from_finalize: bool) -> Value {
        let v = self.results(true, speech_final, from_finalize);
        if self.in_speech {
            let n = self.word_count();
            self.words_total += n;
            self.segments += 1;
            let end = self.seg_start_ms + self.speech_ms;
            // The chunk that ended the segment is counted by the caller.
            self.since_last_word = Some((end, 0.0));
        }
        self.in_speech = false;
        self.speech_ms = 0.0;
        self.silence_ms = 0.0;
        v
    }

    fn word_count(&self) -> usize {
        if !self.in_speech || self.speech_ms <= 0.0 {
            return 0;
        }
        (self.speech_ms / self.ms_per_word).ceil().max(1.0) as usize
    }

    /// A `Results` message for the current segment (Rust SDK `TranscriptResponse` shape).
    fn results(&self, is_final: bool, speech_final: bool, from_finalize: bool) -> Value {
        let n = self.word_count();
        let mut words = Vec::with_capacity(n);
        let mut text = Vec::with_capacity(n);
        for i in 0..n {
            let word = VOCABULARY[(self.words_total + i) % VOCABULARY.len()];
            let start = self.seg_start_ms + i as f64 * self.ms_per_word;
            let end = (start + self.ms_per_word).min(self.seg_start_ms + self.speech_ms);
            let confidence = 0.9 + 0.01 * ((self.words_total + i) % 10) as f64;
            let mut w = json!({"word": word, "start": secs(start), "end": secs(end), "confidence": confidence});
            let shown = if self.p.punctuate {
                let mut p = word.to_owned();
                if i == 0 {
                    p[..1].make_ascii_uppercase();
                }
                if is_final && i + 1 == n {
                    p.push('.');
                }
                w["punctuated_word"] = json!(p);
                p
            } else {
                word.to_owned()
            };
            if self.p.diarize {
                w["speaker"] = json!(self.segments % 2);
            }
            text.push(shown);
            words.push(w);
        }
        let confidence = if n == 0 { 0.0 } else { 0.95 };
        let start = if self.in_speech {
            self.seg_start_ms
        } else {
            self.pos_ms
        };
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": secs(self.speech_ms + self.silence_ms),
            "start": secs(start),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{"transcript": text.join(" "), "confidence": confidence, "words": words}]},
            "metadata": {"request_id": self.request_id, "model_uuid": MODEL_UUID,
                         "model_info": {"name": format!("general-{}", self.p.model), "version": "2024-12-20.0", "arch": self.p.model}}
        })
    }

    /// The summary after CloseStream. `sha256` is a stand-in digest of the right shape (64 hex
    /// characters), not a real SHA-256.
    fn metadata(&self, audio: &[u8]) -> Value {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in audio {
            h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
        json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": format!("{h:016x}").repeat(4),
            "created": "2024-08-29T22:37:55.202Z",
            "duration": secs(self.pos_ms),
            "channels": self.p.channels,
            "models": [MODEL_UUID],
            "model_info": {MODEL_UUID: {"name": format!("general-{}", self.p.model), "version": "2024-12-20.0", "arch": self.p.model}}
        })
    }
}

fn secs(ms: f64) -> f64 {
    ms.round() / 1000.0
}

/// What ended the serve loop.
enum End {
    /// Close with this code and reason.
    Close(u16, String),
    /// Drop the connection without a close frame.
    Drop,
    /// The client closed or went away.
    Gone,
}

async fn serve(
    mut ws: FakeSocket,
    req: SeenRequest,
    opts: &FakeOptions,
    request_id: String,
    log: Arc<Mutex<SessionLog>>,
) {
    let Ok(params) = parse_params(&req) else {
        return;
    };
    let mut engine = Engine::new(params, request_id, opts);
    let silent = opts.fault == Fault::Silent;
    let mut closing_ignored = false;
    let idle = tokio::time::sleep(opts.idle_timeout);
    tokio::pin!(idle);
    let end = loop {
        let frame = tokio::select! {
            f = ws.next() => f,
            () = &mut idle, if !silent && !closing_ignored => break End::Close(1011, "NET-0001".into()),
        };
        let mut out: Vec<Value> = Vec::new();
        match frame {
            Some(Ok(WsMessage::Binary(b))) if b.is_empty() => {
                // Legacy end-of-stream signal; the docs warn it closes the connection.
                log.lock().expect("log lock").empty_frames += 1;
                if silent {
                    continue;
                }
                break End::Close(1000, String::new());
            }
            Some(Ok(WsMessage::Binary(b))) => {
                idle.as_mut()
                    .reset(tokio::time::Instant::now() + opts.idle_timeout);
                let frames = {
                    let mut l = log.lock().expect("log lock");
                    l.audio.extend_from_slice(&b);
                    l.audio_frames += 1;
                    l.audio_frames
                };
                if silent || closing_ignored {
                    continue;
                }
                match &opts.fault {
                    Fault::Close {
                        after_audio,
                        code,
                        reason,
                    } if frames >= *after_audio => break End::Close(*code, reason.clone()),
                    Fault::Disconnect { after_audio } if frames >= *after_audio => break End::Drop,
                    Fault::ErrorMessage {
                        after_audio,
                        json,
                        code,
                        reason,
                    } if frames >= *after_audio => {
                        if send_text(&mut ws, &log, json.clone()).await.is_err() {
                            break End::Gone;
                        }
                        break End::Close(*code, reason.clone());
                    }
                    Fault::Huge(n) if frames == 1 => {
                        let pad = "x".repeat(n.saturating_sub(40));
                        let huge = format!(r#"{{"type":"Results","pad":"{pad}"}}"#);
                        if send_text(&mut ws, &log, huge).await.is_err() {
                            break End::Gone;
                        }
                    }
                    _ => {}
                }
                out = engine.on_audio(&b);
            }
            Some(Ok(WsMessage::Text(t))) => {
                let kind = serde_json::from_str::<Value>(t.as_str())
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
                {
                    let mut l = log.lock().expect("log lock");
                    l.texts.push(t.to_string());
                    match kind.as_deref() {
                        Some("KeepAlive") => l.keepalives += 1,
                        Some("Finalize") => l.finalizes += 1,
                        Some("CloseStream") => l.close_streams += 1,
                        _ => {}
                    }
                }
                if kind.as_deref() == Some("KeepAlive") {
                    idle.as_mut()
                        .reset(tokio::time::Instant::now() + opts.idle_timeout);
                }
                if silent || closing_ignored {
                    continue;
                }
                match kind.as_deref() {
                    Some("Finalize") => out.push(engine.finish(false, true)),
                    Some("CloseStream") => {
                        if opts.fault == Fault::IgnoreCloseStream {
                            closing_ignored = true;
                            continue;
                        }
                        if engine.in_speech {
                            out.push(engine.finish(false, false));
                        }
                        let audio = log.lock().expect("log lock").audio.clone();
                        out.push(engine.metadata(&audio));
                        let mut ok = true;
                        for v in out.drain(..) {
                            ok = ok && send_json(&mut ws, &log, &opts.fault, v).await.is_ok();
                        }
                        if !ok {
                            break End::Gone;
                        }
                        break End::Close(1000, String::new());
                    }
                    // KeepAlive needs no answer; anything else is ignored.
                    _ => {}
                }
            }
            Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break End::Gone,
            Some(Ok(_)) => {}
        }
        let mut ok = true;
        for v in out {
            ok = ok && send_json(&mut ws, &log, &opts.fault, v).await.is_ok();
        }
        if !ok {
            break End::Gone;
        }
    };
    match end {
        End::Close(code, reason) => {
            log.lock().expect("log lock").closed_with = Some(code);
            let frame = CloseFrame {
                code: CloseCode::from(code),
                reason: reason.into(),
            };
            let _ = ws.close(Some(frame)).await;
            // Let the client finish the closing handshake (bounded).
            let _ = tokio::time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        }
        End::Drop => drop(ws),
        End::Gone => {}
    }
}

async fn send_text(
    ws: &mut FakeSocket,
    log: &Mutex<SessionLog>,
    text: String,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    log.lock().expect("log lock").sent.push(text.clone());
    ws.send(WsMessage::Text(text.into())).await
}

async fn send_json(
    ws: &mut FakeSocket,
    log: &Mutex<SessionLog>,
    fault: &Fault,
    v: Value,
) -> Result<(), tokio_tungstenite::tungstenite::Error> {
    if *fault == Fault::Garbage {
        for g in [
            "this is not json",
            r#"{"type":"Brand-New","x":1}"#,
            r#"{"type":"Results","is_final":"yes"}"#,
            "[1,2,3]",
            r#"{"type":"Results","channel":{"alternatives":[]}}"#,
        ] {
            send_text(ws, log, g.to_owned()).await?;
        }
        ws.send(WsMessage::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()))
            .await?;
    }
    send_text(ws, log, v.to_string()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_queries() {
        let q = query_pairs("/v1/listen?keyterm=tail+number&x=%C3%9Cn&bad=%zz&empty=");
        assert_eq!(q[0], ("keyterm".into(), "tail number".into()));
        assert_eq!(q[1].1, "Ün");
        assert_eq!(q[2].1, "%zz");
        assert_eq!(q[3].1, "");
        assert_eq!(percent_decode("%4"), "%4");
    }
}
