//! Fake AssemblyAI Universal Streaming v3 (`/v3/ws`) and its temporary-token endpoint
//! (`GET /v3/token`), on 127.0.0.1.
//!
//! It follows the protocol as the vendor documents it (docs "Streaming API" and "Message
//! Sequence"; Python SDK `assemblyai/streaming/v3/models.py`):
//!
//! - auth: `Authorization: <key>` (raw, no scheme) or `?token=<one-use token>` minted by
//!   `GET /v3/token?expires_in_seconds=N` with `Authorization: <key>`;
//! - `Begin` first; binary audio frames, each 50–1000 ms (else `Error` 3007 and close 3007);
//! - `Turn` messages: partials while audio arrives, the end-of-turn Turn on `ForceEndpoint` (or
//!   after [`AssemblyAiOptions::eot_after_ms`] of audio), then, with `format_turns=true`, the
//!   formatted copy of the same `turn_order`;
//! - `SpeechStarted` at the first audio of each turn;
//! - `Terminate`: the open turn is ended, then `Termination`, then close 1000;
//! - a bad JSON message closes with 4100, an unknown `type` with 4101.
//!
//! Transcripts are deterministic: one word per started 100 ms of a turn's audio, `w1 w2 …`, word
//! `i` spanning `[turn start + 100·i, +80]` ms; the formatted copy is `W1 w2 ….`.

use super::{FakeSocket, HttpFake, SeenRequest, WsFake, WsMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How a bad key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Refuse the upgrade with this HTTP status (e.g. 401).
    Http(u16),
    /// Accept the upgrade, then close with this code (e.g. 4001 "Not Authorized", or 1008).
    Close(u16),
}

/// Behaviour and fault knobs of the fake.
#[derive(Debug, Clone)]
pub struct AssemblyAiOptions {
    /// The one valid API key.
    pub api_key: String,
    /// How a missing or wrong key is refused.
    pub auth_failure: AuthFailure,
    /// Refuse every upgrade with this status (429, 503…), whatever the key.
    pub reject_status: Option<u16>,
    /// After this many audio messages, send `{"type":"Error","error_code":c,"error":m}` and close
    /// with code `c`.
    pub error_after: Option<(usize, u16, String)>,
    /// After this many audio messages, close with this code (no Error message).
    pub close_after: Option<(usize, u16)>,
    /// After this many audio messages, drop the TCP connection without a close frame.
    pub disconnect_after: Option<usize>,
    /// Accept the upgrade, then never send (not even `Begin`) nor read.
    pub silent: bool,
    /// After this many audio messages, stop reading and sending (pings go unanswered).
    pub silent_after: Option<usize>,
    /// Right after `Begin`, send malformed messages (bad JSON, unknown types, wrong field types,
    /// a binary frame).
    pub garbage: bool,
    /// Right after `Begin`, send one text message of this many bytes.
    pub huge_message: Option<usize>,
    /// Do not answer `Terminate` (no final Turn, no `Termination`, no close).
    pub ignore_terminate: bool,
    /// End a turn by itself after this much audio (vendor endpointing).
    pub eot_after_ms: Option<u64>,
    /// Enforce the 50–1000 ms per audio message rule.
    pub strict_chunks: bool,
    /// With `format_turns=true`, never send the formatted copy of a turn.
    pub drop_formatted: bool,
}

impl Default for AssemblyAiOptions {
    fn default() -> Self {
        Self {
            api_key: "test-assemblyai-key".into(),
            auth_failure: AuthFailure::Http(401),
            reject_status: None,
            error_after: None,
            close_after: None,
            disconnect_after: None,
            silent: false,
            silent_after: None,
            garbage: false,
            huge_message: None,
            ignore_terminate: false,
            eot_after_ms: None,
            strict_chunks: true,
            drop_formatted: false,
        }
    }
}

/// What the fake saw on one accepted connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeSession {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// Every audio byte, in order.
    pub audio: Vec<u8>,
    /// The size of each audio message.
    pub chunk_sizes: Vec<usize>,
    /// Every text message from the client, raw.
    pub texts: Vec<String>,
    /// Whether a `Terminate` arrived.
    pub terminated: bool,
}

impl FakeSession {
    /// The `type` of every JSON text message, in order.
    pub fn message_types(&self) -> Vec<String> {
        self.texts
            .iter()
            .filter_map(|t| serde_json::from_str::<Value>(t).ok())
            .filter_map(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
            .collect()
    }
}

#[derive(Debug, Default)]
struct Shared {
    sessions: Mutex<Vec<FakeSession>>,
    /// Minted, unused temporary tokens.
    tokens: Mutex<HashSet<String>>,
    /// Auth verdicts of accepted upgrades, by `Sec-WebSocket-Key`.
    verdicts: Mutex<HashMap<String, bool>>,
    token_requests: Mutex<Vec<SeenRequest>>,
    minted: Mutex<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake: a WebSocket server for `/v3/ws` and an HTTP server for `/v3/token`.
#[derive(Debug)]
pub struct AssemblyAiFake {
    ws: WsFake,
    http: HttpFake,
    shared: Arc<Shared>,
}

impl AssemblyAiFake {
    /// Starts both servers on free 127.0.0.1 ports.
    pub async fn start(options: AssemblyAiOptions) -> Self {
        let shared = Arc::new(Shared::default());
        let opts = Arc::new(options);
        let (s1, o1) = (shared.clone(), opts.clone());
        let accept = move |req: &SeenRequest| {
            if let Some(status) = o1.reject_status {
                return Err(status);
            }
            let header_ok = req.header("authorization") == Some(o1.api_key.as_str());
            let token_ok = !header_ok
                && req
                    .query("token")
                    .is_some_and(|t| lock(&s1.tokens).remove(&percent_decode(t)));
            let ok = header_ok || token_ok;
            match (ok, o1.auth_failure) {
                (false, AuthFailure::Http(status)) => Err(status),
                _ => {
                    if let Some(k) = req.header("sec-websocket-key") {
                        lock(&s1.verdicts).insert(k.to_owned(), ok);
                    }
                    Ok(())
                }
            }
        };
        let (s2, o2) = (shared.clone(), opts.clone());
        let handler = move |req: SeenRequest, ws: FakeSocket| {
            let (shared, opts) = (s2.clone(), o2.clone());
            async move { serve(shared, opts, req, ws).await }
        };
        let ws = WsFake::start(accept, handler).await;
        let router = token_router(shared.clone(), opts.api_key.clone());
        let http = HttpFake::start(router).await;
        Self { ws, http, shared }
    }

    /// `ws://127.0.0.1:port`: the plugin's `base_url`.
    pub fn base_url(&self) -> String {
        self.ws.base_url()
    }

    /// `http://127.0.0.1:port`: the plugin's `token_url`.
    pub fn token_url(&self) -> String {
        self.http.base_url()
    }

    /// Every upgrade request, accepted or not.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.ws.requests()
    }

    /// Every accepted connection, in order of arrival.
    pub fn sessions(&self) -> Vec<FakeSession> {
        lock(&self.shared.sessions).clone()
    }

    /// Every `GET /v3/token` request.
    pub fn token_requests(&self) -> Vec<SeenRequest> {
        lock(&self.shared.token_requests).clone()
    }
}

fn token_router(shared: Arc<Shared>, key: String) -> axum::Router {
    use axum::http::{HeaderMap, StatusCode, Uri};
    let handler = move |uri: Uri, headers: HeaderMap| {
        let (shared, key) = (shared.clone(), key.clone());
        async move {
            let seen = SeenRequest {
                uri: uri.to_string(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
            };
            lock(&shared.token_requests).push(seen.clone());
            if seen.header("authorization") != Some(key.as_str()) {
                let body = json!({"error": "Invalid API key"});
                return (StatusCode::UNAUTHORIZED, axum::Json(body));
            }
            let expires = seen
                .query("expires_in_seconds")
                .and_then(|v| v.parse::<u64>().ok());
            let Some(expires) = expires.filter(|e| (1..=600).contains(e)) else {
                let body = json!({"error": "expires_in_seconds must be 1-600"});
                return (StatusCode::BAD_REQUEST, axum::Json(body));
            };
            let token = {
                let mut n = lock(&shared.minted);
                *n += 1;
                format!("tmp-token-{}", *n)
            };
            lock(&shared.tokens).insert(token.clone());
            let body = json!({"token": token, "expires_in_seconds": expires});
            (StatusCode::OK, axum::Json(body))
        }
    };
    axum::Router::new().route("/v3/token", axum::routing::get(handler))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', ..) => {
                out.push(b' ');
                i += 1;
            }
            (c, ..) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Per-connection protocol state.
struct Conn {
    ws: FakeSocket,
    shared: Arc<Shared>,
    index: usize,
    /// Bytes per second of audio.
    byte_rate: u64,
    format_turns: bool,
    turn_order: u64,
    turn_bytes: u64,
    turn_start_ms: u64,
    stream_bytes: u64,
    words_sent: u64,
    started: Instant,
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
        // Let the client answer the closing handshake (bounded).
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }

    fn ms(&self, bytes: u64) -> u64 {
        bytes * 1000 / self.byte_rate.max(1)
    }

    fn words(&self, count: u64, all_final: bool) -> Vec<Value> {
        (0..count)
            .map(|i| {
                let is_final = all_final || i + 1 < count;
                json!({
                    "text": format!("w{}", i + 1),
                    "start": self.turn_start_ms + 100 * i,
                    "end": self.turn_start_ms + 100 * i + 80,
                    "confidence": if is_final { 0.9 } else { 0.6 },
                    "word_is_final": is_final,
                })
            })
            .collect()
    }

    fn text(count: u64) -> String {
        (1..=count)
            .map(|i| format!("w{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    async fn on_audio(&mut self, len: usize) -> bool {
        if self.turn_bytes == 0 {
            self.turn_start_ms = self.ms(self.stream_bytes);
            let ts = self.turn_start_ms;
            if !self
                .send(json!({"type": "SpeechStarted", "timestamp": ts}))
                .await
            {
                return false;
            }
        }
        self.turn_bytes += len as u64;
        self.stream_bytes += len as u64;
        let count = self.ms(self.turn_bytes) / 100;
        if count > self.words_sent {
            self.words_sent = count;
            // Partial: `transcript` holds only the finalised words (all but the last).
            let turn = json!({
                "type": "Turn", "turn_order": self.turn_order, "turn_is_formatted": false,
                "end_of_turn": false, "transcript": Self::text(count - 1),
                "end_of_turn_confidence": 0.05, "words": self.words(count, false), "utterance": "",
            });
            if !self.send(turn).await {
                return false;
            }
        }
        true
    }

    /// Ends the current turn: the end-of-turn Turn, then the formatted copy when asked for.
    async fn end_turn(&mut self) -> bool {
        let count = self.ms(self.turn_bytes).div_ceil(100);
        let text = Self::text(count);
        let eot = json!({
            "type": "Turn", "turn_order": self.turn_order, "turn_is_formatted": false,
            "end_of_turn": true, "transcript": text, "end_of_turn_confidence": 0.9,
            "words": self.words(count, true), "utterance": text,
        });
        if !self.send(eot).await {
            return false;
        }
        if self.format_turns && count > 0 {
            let mut formatted = text.clone();
            formatted[..1].make_ascii_uppercase();
            formatted.push('.');
            let turn = json!({
                "type": "Turn", "turn_order": self.turn_order, "turn_is_formatted": true,
                "end_of_turn": true, "transcript": formatted, "end_of_turn_confidence": 0.9,
                "words": self.words(count, true), "utterance": "",
            });
            if !self.send(turn).await {
                return false;
            }
        }
        self.turn_order += 1;
        self.turn_bytes = 0;
        self.words_sent = 0;
        true
    }
}

async fn serve(
    shared: Arc<Shared>,
    opts: Arc<AssemblyAiOptions>,
    req: SeenRequest,
    ws: FakeSocket,
) {
    let index = {
        let mut s = lock(&shared.sessions);
        s.push(FakeSession {
            request: Some(req.clone()),
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
    let bytes_per_sample = if req.query("encoding") == Some("pcm_mulaw") {
        1
    } else {
        2
    };
    let mut c = Conn {
        ws,
        shared,
        index,
        byte_rate: rate * bytes_per_sample,
        format_turns: req.query("format_turns") == Some("true") && !opts.drop_formatted,
        turn_order: 0,
        turn_bytes: 0,
        turn_start_ms: 0,
        stream_bytes: 0,
        words_sent: 0,
        started: Instant::now(),
    };
    if !authorized {
        if let AuthFailure::Close(code) = opts.auth_failure {
            c.close(code, "Not Authorized").await;
        }
        return;
    }
    if opts.silent {
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    }
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() + 3600)
        .unwrap_or(0);
    let begin =
        json!({"type": "Begin", "id": format!("fake-session-{index}"), "expires_at": expires});
    if !c.send(begin).await {
        return;
    }
    if opts.garbage {
        for g in [
            "{not json",
            "[]",
            "null",
            r#"{"type":"Mystery","x":1}"#,
            r#"{"type":"Turn","turn_order":"zero","words":"none"}"#,
            r#"{"type":"Turn","words":[{"text":5}]}"#,
            r#"{"type":"Begin"}"#,
            r#"{"type":"Heartbeat","total_audio_received_ms":0,"total_duration_ms":0}"#,
            "\u{0}\u{1}garbage",
        ] {
            let _ = c.ws.send(WsMessage::Text(g.into())).await;
        }
        let _ = c.ws.send(WsMessage::Binary(vec![0xde, 0xad].into())).await;
    }
    if let Some(n) = opts.huge_message {
        let huge = format!(
            r#"{{"type":"Warning","warning_code":0,"warning":"{}"}}"#,
            "x".repeat(n)
        );
        let _ = c.ws.send(WsMessage::Text(huge.into())).await;
    }
    let mut audio_messages = 0usize;
    while let Some(msg) = c.ws.next().await {
        let Ok(msg) = msg else { return };
        match msg {
            WsMessage::Binary(b) => {
                audio_messages += 1;
                c.record(|s| {
                    s.audio.extend_from_slice(&b);
                    s.chunk_sizes.push(b.len());
                });
                let n = b.len() as u64;
                // 50 ms ≤ n / byte_rate ≤ 1000 ms, in integers.
                if opts.strict_chunks
                    && (n * 1000 < 50 * c.byte_rate || n * 1000 > 1000 * c.byte_rate)
                {
                    let ms = c.ms(n);
                    let e = json!({"type": "Error", "error_code": 3007,
                        "error": format!("Input duration violation: {ms} ms. Expected between 50 and 1000 ms")});
                    c.send(e).await;
                    c.close(3007, "Input duration violation").await;
                    return;
                }
                if let Some((after, code, text)) = &opts.error_after {
                    if audio_messages >= *after {
                        c.send(json!({"type": "Error", "error_code": code, "error": text}))
                            .await;
                        c.close(*code, text).await;
                        return;
                    }
                }
                if let Some((after, code)) = opts.close_after {
                    if audio_messages >= after {
                        c.close(code, "closed by the fake").await;
                        return;
                    }
                }
                if opts.disconnect_after.is_some_and(|a| audio_messages >= a) {
                    return; // dropping the socket: no close frame
                }
                if opts.silent_after.is_some_and(|a| audio_messages >= a) {
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    return;
                }
                if !c.on_audio(b.len()).await {
                    return;
                }
                if opts
                    .eot_after_ms
                    .is_some_and(|eot| c.ms(c.turn_bytes) >= eot)
                    && !c.end_turn().await
                {
                    return;
                }
            }
            WsMessage::Text(t) => {
                let text = t.to_string();
                c.record(|s| s.texts.push(text.clone()));
                let Ok(v) = serde_json::from_str::<Value>(&text) else {
                    c.close(4100, "Endpoint received invalid JSON").await;
                    return;
                };
                match v.get("type").and_then(Value::as_str) {
                    Some("ForceEndpoint") => {
                        if !c.end_turn().await {
                            return;
                        }
                    }
                    Some("Terminate") => {
                        c.record(|s| s.terminated = true);
                        if opts.ignore_terminate {
                            continue;
                        }
                        if c.turn_bytes > 0 && !c.end_turn().await {
                            return;
                        }
                        let audio_s = c.ms(c.stream_bytes) / 1000;
                        let session_s = c.started.elapsed().as_secs();
                        c.send(
                            json!({"type": "Termination", "audio_duration_seconds": audio_s,
                            "session_duration_seconds": session_s}),
                        )
                        .await;
                        c.close(1000, "").await;
                        return;
                    }
                    Some("KeepAlive" | "UpdateConfiguration") => {}
                    _ => {
                        c.close(4101, "Endpoint received a message with an invalid schema")
                            .await;
                        return;
                    }
                }
            }
            WsMessage::Close(_) => return,
            _ => {}
        }
    }
}
