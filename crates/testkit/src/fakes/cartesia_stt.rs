//! Fake Cartesia Ink streaming speech-to-text (`/stt/websocket`, manual finalize) on 127.0.0.1.
//!
//! It follows the protocol of both API generations as the vendor's SDK speaks them
//! (`cartesia-ai/cartesia-python` 2.0.17 `stt/_async_websocket.py` and `stt/types/*` for
//! 2024-11-13; 4.0.1 `resources/stt/manual_finalize.py` and `types/stt/*` for 2025-11-04 and
//! later; STT_PROTOCOLS.md §4 and Appendix A):
//!
//! - auth: `X-API-Key: <key>`, `Authorization: Bearer <key>` or `?api_key=<key>`; the version
//!   from `Cartesia-Version` or `?cartesia_version=` (missing: HTTP 400); a bad key is refused
//!   per [`AuthFailure`]; `model`, `encoding` and `sample_rate` are required (else HTTP 400);
//! - binary frames are audio, recorded byte-exact; `transcript` interims after every started
//!   100 ms of a segment's audio;
//! - the text command `finalize` ends the segment (a final `transcript`, when it had audio) and
//!   is answered by `flush_done`; the close command (`done` before 2025-11-04, `close` from
//!   then on) does the same, then `done`, then close 1000; any other text is an `error`;
//! - `error` messages are `{"type":"error","message"}` (plus `status_code`, `title`,
//!   `error_code` from 2025-11-04), followed by a close.
//!
//! Transcripts are deterministic: one word per started 100 ms of a segment's audio, `w1 w2 …`,
//! each interim holding the segment's text so far and each final the segment (leading space
//! after the first, as the vendor's deltas carry), words `{word, start, end}` in seconds from
//! the stream start, word `i` spanning `[segment start + 0.1·i, +0.08]`.

use super::{FakeSocket, Reject, SeenRequest, WsFake, WsMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The first API version whose close command is `close`.
const CLOSE_VERSION: &str = "2025-11-04";

/// How a bad key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Refuse the upgrade with this HTTP status (the SDK maps 401, 402, 403).
    Http(u16),
    /// Accept the upgrade, send an `error` message, then close 1008.
    Message,
}

/// Behaviour and fault knobs of the fake.
#[derive(Debug, Clone)]
pub struct CartesiaSttOptions {
    /// The one valid API key.
    pub api_key: String,
    /// How a missing or wrong key is refused.
    pub auth_failure: AuthFailure,
    /// Refuse every upgrade with this response (429 with `retry-after`, 503…), whatever the key.
    pub reject: Option<Reject>,
    /// After this many audio frames, send an `error` with this message (and, from 2025-11-04,
    /// this status) and close 1011: `(after, message, status)`.
    pub error_after: Option<(usize, String, u16)>,
    /// After this many audio frames, close with this code (no message).
    pub close_after: Option<(usize, u16)>,
    /// After this many audio frames, drop the TCP connection without a close frame.
    pub disconnect_after: Option<usize>,
    /// Accept the upgrade, then never send nor read.
    pub silent: bool,
    /// After this many audio frames, stop reading and sending (pings go unanswered).
    pub silent_after: Option<usize>,
    /// Read `finalize` but never answer it.
    pub ignore_finalize: bool,
    /// Read the close command but never answer it.
    pub ignore_close: bool,
    /// Right after the upgrade, send malformed messages (bad JSON, unknown types, wrong field
    /// types, a binary frame).
    pub garbage: bool,
    /// Right after the upgrade, send one text message of this many bytes.
    pub huge_message: Option<usize>,
    /// Finalize a segment by itself after this much audio (ink-whisper's silence endpointing).
    pub auto_final_after_ms: Option<u64>,
}

impl Default for CartesiaSttOptions {
    fn default() -> Self {
        Self {
            api_key: "test-cartesia-key".into(),
            auth_failure: AuthFailure::Http(401),
            reject: None,
            error_after: None,
            close_after: None,
            disconnect_after: None,
            silent: false,
            silent_after: None,
            ignore_finalize: false,
            ignore_close: false,
            garbage: false,
            huge_message: None,
            auto_final_after_ms: None,
        }
    }
}

/// What the fake saw on one accepted connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeSession {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// The API version in effect.
    pub version: String,
    /// Every audio byte, in order.
    pub audio: Vec<u8>,
    /// The size of each audio frame.
    pub chunk_sizes: Vec<usize>,
    /// Every text frame from the client, raw.
    pub texts: Vec<String>,
    /// Pings received.
    pub pings: usize,
    /// The client's close frame (code, reason), if one arrived.
    pub client_close: Option<(u16, String)>,
}

#[derive(Debug, Default)]
struct Shared {
    sessions: Mutex<Vec<FakeSession>>,
    /// Auth verdicts of accepted upgrades, by `Sec-WebSocket-Key`.
    verdicts: Mutex<HashMap<String, bool>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake.
#[derive(Debug)]
pub struct CartesiaSttFake {
    ws: WsFake,
    shared: Arc<Shared>,
}

/// The version a request asks for (header first, then query).
fn version_of(req: &SeenRequest) -> Option<String> {
    req.header("cartesia-version")
        .or_else(|| req.query("cartesia_version"))
        .map(str::to_owned)
}

impl CartesiaSttFake {
    /// Starts the server on a free 127.0.0.1 port.
    pub async fn start(options: CartesiaSttOptions) -> Self {
        let shared = Arc::new(Shared::default());
        let opts = Arc::new(options);
        let (s1, o1) = (shared.clone(), opts.clone());
        let accept = move |req: &SeenRequest| {
            if let Some(r) = &o1.reject {
                return Err(r.clone());
            }
            let key = o1.api_key.as_str();
            let ok = req.header("x-api-key") == Some(key)
                || req
                    .header("authorization")
                    .and_then(|v| v.strip_prefix("Bearer "))
                    == Some(key)
                || req.query("api_key") == Some(key);
            if let (false, AuthFailure::Http(status)) = (ok, o1.auth_failure) {
                return Err(Reject::status(status).body(r#"{"error":"Invalid API key"}"#));
            }
            if version_of(req).is_none() {
                return Err(Reject::status(400).body(r#"{"error":"Cartesia-Version is required"}"#));
            }
            let missing = ["model", "encoding", "sample_rate"]
                .into_iter()
                .find(|k| req.query(k).is_none());
            let rate_ok = req
                .query("sample_rate")
                .and_then(|r| r.parse::<u32>().ok())
                .is_some_and(|r| r > 0);
            if let Some(k) = missing {
                return Err(Reject::status(400).body(format!(r#"{{"error":"{k} is required"}}"#)));
            }
            if !rate_ok {
                return Err(Reject::status(400).body(r#"{"error":"invalid sample_rate"}"#));
            }
            if let Some(k) = req.header("sec-websocket-key") {
                lock(&s1.verdicts).insert(k.to_owned(), ok);
            }
            Ok(())
        };
        let (s2, o2) = (shared.clone(), opts.clone());
        let handler = move |req: SeenRequest, ws: FakeSocket| {
            let (shared, opts) = (s2.clone(), o2.clone());
            async move { serve(shared, opts, req, ws).await }
        };
        let ws = WsFake::start_with(accept, handler).await;
        Self { ws, shared }
    }

    /// `ws://127.0.0.1:port`: the plugin's `base_url`.
    pub fn base_url(&self) -> String {
        self.ws.base_url()
    }

    /// Every upgrade request, accepted or not.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.ws.requests()
    }

    /// Every accepted connection, in order of arrival.
    pub fn sessions(&self) -> Vec<FakeSession> {
        lock(&self.shared.sessions).clone()
    }
}

/// Per-connection protocol state.
struct Conn {
    ws: FakeSocket,
    shared: Arc<Shared>,
    index: usize,
    request_id: String,
    /// The 2025-11-04 generation (error shape, close command).
    new_api: bool,
    byte_rate: u64,
    language: String,
    segment_bytes: u64,
    segment_start_ms: u64,
    stream_bytes: u64,
    words_sent: u64,
    finals_sent: u64,
}

impl Conn {
    fn record(&self, f: impl FnOnce(&mut FakeSession)) {
        if let Some(s) = lock(&self.shared.sessions).get_mut(self.index) {
            f(s);
        }
    }

    async fn send(&mut self, v: Value) -> bool {
        self.ws
            .send(WsMessage::Text(v.to_string().into()))
            .await
            .is_ok()
    }

    async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    /// An `error` in this generation's shape, then a close.
    async fn fail(&mut self, message: &str, status: u16, close: u16) {
        let mut e = json!({"type": "error", "message": message, "request_id": self.request_id});
        if self.new_api {
            e["status_code"] = json!(status);
            e["title"] = json!(match status {
                400 => "Bad Request",
                401 => "Unauthorized",
                429 => "Too Many Requests",
                _ => "Error",
            });
            e["error_code"] = json!(format!("fake_{status}"));
        }
        self.send(e).await;
        self.close(close, message).await;
    }

    fn ms(&self, bytes: u64) -> u64 {
        bytes * 1000 / self.byte_rate.max(1)
    }

    fn text(count: u64) -> String {
        (1..=count)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    async fn on_audio(&mut self, len: usize) -> bool {
        if self.segment_bytes == 0 {
            self.segment_start_ms = self.ms(self.stream_bytes);
        }
        self.segment_bytes += len as u64;
        self.stream_bytes += len as u64;
        let count = self.ms(self.segment_bytes) / 100;
        if count > self.words_sent {
            self.words_sent = count;
            let t = json!({"type": "transcript", "request_id": self.request_id,
                "text": Self::text(count), "is_final": false});
            if !self.send(t).await {
                return false;
            }
        }
        true
    }

    /// The final of the current segment, when it had audio.
    async fn final_segment(&mut self) -> bool {
        if self.segment_bytes == 0 {
            return true;
        }
        let count = self.ms(self.segment_bytes).div_ceil(100);
        let start = self.segment_start_ms as f64 / 1000.0;
        let words: Vec<Value> = (0..count)
            .map(|i| {
                let s = start + 0.1 * i as f64;
                json!({"word": format!("w{}", i + 1), "start": s, "end": s + 0.08})
            })
            .collect();
        // Deltas since the previous final: a space joins them.
        let lead = if self.finals_sent > 0 { " " } else { "" };
        let t = json!({"type": "transcript", "request_id": self.request_id,
            "text": format!("{lead}{}", Self::text(count)), "is_final": true,
            "duration": self.ms(self.segment_bytes) as f64 / 1000.0,
            "language": self.language, "words": words});
        self.segment_bytes = 0;
        self.words_sent = 0;
        self.finals_sent += 1;
        self.send(t).await
    }
}

async fn serve(
    shared: Arc<Shared>,
    opts: Arc<CartesiaSttOptions>,
    req: SeenRequest,
    ws: FakeSocket,
) {
    let version = version_of(&req).unwrap_or_default();
    let index = {
        let mut s = lock(&shared.sessions);
        s.push(FakeSession {
            request: Some(req.clone()),
            version: version.clone(),
            ..FakeSession::default()
        });
        s.len() - 1
    };
    let authorized = req
        .header("sec-websocket-key")
        .and_then(|k| lock(&shared.verdicts).remove(k))
        .unwrap_or(false);
    let rate: u64 = req
        .query("sample_rate")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_000);
    let bytes_per_sample = match req.query("encoding") {
        Some("pcm_mulaw" | "pcm_alaw") => 1,
        Some("pcm_s32le" | "pcm_f32le") => 4,
        _ => 2,
    };
    let new_api = version.as_str() >= CLOSE_VERSION;
    let mut c = Conn {
        ws,
        shared,
        index,
        request_id: format!("stt_fake_{index}"),
        new_api,
        byte_rate: rate * bytes_per_sample,
        language: req.query("language").unwrap_or("en").to_owned(),
        segment_bytes: 0,
        segment_start_ms: 0,
        stream_bytes: 0,
        words_sent: 0,
        finals_sent: 0,
    };
    if !authorized {
        c.fail("Invalid API key", 401, 1008).await;
        return;
    }
    if opts.silent {
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    }
    let close_command = if new_api { "close" } else { "done" };
    if opts.garbage {
        for g in [
            "{not json",
            "[]",
            "null",
            r#"{"type":"mystery","x":1}"#,
            r#"{"type":7}"#,
            r#"{"type":"transcript","text":5,"is_final":"no"}"#,
            r#"{"type":"transcript","text":"x","is_final":true,"words":"none"}"#,
            r#"{"type":"flush_done"}"#,
            "\u{0}\u{1}garbage",
        ] {
            let _ = c.ws.send(WsMessage::Text(g.into())).await;
        }
        let _ = c.ws.send(WsMessage::Binary(vec![0xde, 0xad].into())).await;
    }
    if let Some(n) = opts.huge_message {
        let huge = format!(
            r#"{{"type":"transcript","text":"{}","is_final":false}}"#,
            "x".repeat(n)
        );
        let _ = c.ws.send(WsMessage::Text(huge.into())).await;
    }
    let mut frames = 0usize;
    while let Some(msg) = c.ws.next().await {
        let Ok(msg) = msg else { return };
        match msg {
            WsMessage::Binary(b) => {
                frames += 1;
                c.record(|s| {
                    s.audio.extend_from_slice(&b);
                    s.chunk_sizes.push(b.len());
                });
                if let Some((after, message, status)) = &opts.error_after {
                    if frames >= *after {
                        c.fail(message, *status, 1011).await;
                        return;
                    }
                }
                if let Some((after, code)) = opts.close_after {
                    if frames >= after {
                        c.close(code, "closed by the fake").await;
                        return;
                    }
                }
                if opts.disconnect_after.is_some_and(|a| frames >= a) {
                    return; // dropping the socket: no close frame
                }
                if opts.silent_after.is_some_and(|a| frames >= a) {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    return;
                }
                if !c.on_audio(b.len()).await {
                    return;
                }
                if opts
                    .auto_final_after_ms
                    .is_some_and(|ms| c.ms(c.segment_bytes) >= ms)
                    && !c.final_segment().await
                {
                    return;
                }
            }
            WsMessage::Text(t) => {
                let text = t.to_string();
                c.record(|s| s.texts.push(text.clone()));
                if text == "finalize" {
                    if opts.ignore_finalize {
                        continue;
                    }
                    if !c.final_segment().await {
                        return;
                    }
                    let fd = json!({"type": "flush_done", "request_id": c.request_id});
                    if !c.send(fd).await {
                        return;
                    }
                } else if text == close_command {
                    if opts.ignore_close {
                        continue;
                    }
                    if !c.final_segment().await {
                        return;
                    }
                    let done = json!({"type": "done", "request_id": c.request_id});
                    c.send(done).await;
                    c.close(1000, "").await;
                    return;
                } else {
                    c.fail(&format!("unknown command {text:?}"), 400, 1008)
                        .await;
                    return;
                }
            }
            WsMessage::Ping(_) => c.record(|s| s.pings += 1),
            WsMessage::Close(frame) => {
                let cc = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                c.record(|s| s.client_close = cc.or(Some((1005, String::new()))));
                while let Some(Ok(_)) = c.ws.next().await {}
                return;
            }
            _ => {}
        }
    }
}
