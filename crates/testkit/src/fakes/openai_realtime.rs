//! A fake of the OpenAI Realtime API (GA WebSocket protocol, `/v1/realtime?model=…`), on
//! 127.0.0.1.
//!
//! It follows `TTS_PROTOCOLS.md` §12 and the GA types of openai-python
//! (`src/openai/types/realtime/`):
//! - the upgrade needs `GET /v1/realtime` with a `model` query parameter and `Authorization:
//!   Bearer <key>`; a wrong or missing key is refused with 401 and the OpenAI error envelope
//!   (`{"error":{"message","type":"invalid_request_error","code":"invalid_api_key"}}`); an
//!   `OpenAI-Beta` header is recorded (the GA protocol needs none) but not refused;
//! - the server speaks first: `session.created` with the effective session (`type: realtime`,
//!   `id`, `model`, server VAD, `alloy`, PCM 24 kHz both ways);
//! - `session.update` is checked strictly against the GA `RealtimeSessionCreateRequest`
//!   (`type: "realtime"` required; unknown keys such as the beta `temperature` are
//!   `unknown_parameter` errors; formats, voices, turn detection, `output_modalities`,
//!   `max_output_tokens`, tools checked), merged, and answered with `session.updated`;
//! - `input_audio_buffer.append` (base64) feeds a deterministic VAD when turn detection is on
//!   (a chunk whose peak is above [`SPEECH_LEVEL`] is speech): `speech_started`
//!   (`audio_start_ms`; a response under way is cancelled with `turn_detected` unless
//!   `interrupt_response: false`), and after `silence_duration_ms` (default 500) of silence
//!   `speech_stopped` (`audio_end_ms`), `committed`, `conversation.item.added`, the
//!   transcription (`…input_audio_transcription.delta` + `.completed` with `heard N ms`) when
//!   enabled, and a response unless `create_response: false`;
//! - `input_audio_buffer.commit` (error `input_audio_buffer_commit_empty` when empty) and
//!   `.clear`; `conversation.item.create` with a user message or a `function_call_output`
//!   (its `call_id` must be one the fake issued); `response.create` (error
//!   `conversation_already_has_active_response` while one runs); `response.cancel` (error
//!   `response_cancel_not_active` when none runs); `conversation.item.truncate` (the item must
//!   be an assistant audio item and `audio_end_ms` within its audio);
//! - a response to `call NAME` text, when the session has the function tool `NAME`, is a
//!   function call (`output_item.added`, `function_call_arguments.delta`/`.done` with `name`,
//!   `output_item.done`, `response.done`) with arguments [`CALL_ARGUMENTS`]; any other response
//!   says `reply to: <input>` as audio ([`FakeOptions::response_ms`] of a tone in the session's
//!   output format, [`FakeOptions::chunk_ms`] per delta, paced by [`FakeOptions::pace`]) with
//!   its transcript, or as text with `output_modalities: ["text"]`;
//! - unknown client events get `invalid_request_error`/`invalid_value`, malformed JSON gets
//!   `invalid_request_error`/`invalid_json` (that code is UNCONFIRMED).
//!
//! Every connection's traffic is recorded ([`ConnLog`]); [`Fault`] makes it misbehave.

use super::elevenlabs_stt::base64_decode;
use super::{FakeSocket, Reject, SeenRequest, WsFake, WsMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use waav_plugin_api::codec;

/// A chunk whose peak sample is above this is speech.
pub const SPEECH_LEVEL: i16 = 500;
/// The arguments of every function call.
pub const CALL_ARGUMENTS: &str = r#"{"city":"Paris"}"#;
/// Built-in voices (`realtime_audio_config_output.py`).
pub const VOICES: &[&str] = &[
    "alloy", "ash", "ballad", "coral", "echo", "sage", "shimmer", "verse", "marin", "cedar",
];
/// Keys of the GA session object (`realtime_session_create_request.py`).
const SESSION_KEYS: &[&str] = &[
    "type",
    "model",
    "instructions",
    "output_modalities",
    "audio",
    "include",
    "max_output_tokens",
    "tools",
    "tool_choice",
    "tracing",
    "truncation",
    "prompt",
    "reasoning",
    "parallel_tool_calls",
];

/// How the fake misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// Sends malformed messages before every real one (invalid JSON, arrays, unknown types,
    /// known types with missing or mistyped fields, binary frames).
    Garbage,
    /// Accepts the upgrade, reads everything, never sends anything.
    Silent,
    /// Answers `response.create` with this `error` event (type, code, message) instead.
    ErrorOnResponse {
        /// `error.type`.
        kind: String,
        /// `error.code`.
        code: String,
        /// `error.message`.
        message: String,
    },
    /// On `response.create`, sends a close frame with this code and reason.
    CloseOnResponse {
        /// Close code.
        code: u16,
        /// Reason.
        reason: String,
    },
    /// On `response.create`, drops the TCP connection without a close frame.
    DropOnResponse,
}

/// Fake settings.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The key it accepts.
    pub api_key: String,
    /// Misbehaviour.
    pub fault: Fault,
    /// Audio per response.
    pub response_ms: u32,
    /// Audio per `response.output_audio.delta`.
    pub chunk_ms: u32,
    /// Delay between audio deltas (`None`: all at once).
    pub pace: Option<Duration>,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            api_key: "test-key".into(),
            fault: Fault::None,
            response_ms: 200,
            chunk_ms: 20,
            pace: None,
        }
    }
}

impl FakeOptions {
    /// Options accepting `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            api_key: key.into(),
            ..Self::default()
        }
    }

    /// Sets the fault.
    pub fn fault(mut self, f: Fault) -> Self {
        self.fault = f;
        self
    }

    /// Paces audio deltas `pace` apart, `response_ms` of audio per response.
    pub fn paced(mut self, pace: Duration, response_ms: u32) -> Self {
        self.pace = Some(pace);
        self.response_ms = response_ms;
        self
    }
}

/// One connection's traffic.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConnLog {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// Every client event, parsed, in order (malformed ones as `{"malformed": text}`).
    pub events: Vec<Value>,
    /// Every appended audio byte (decoded base64), in order.
    pub audio: Vec<u8>,
    /// The effective session.
    pub session: Value,
    /// Every server event type sent, in order.
    pub sent: Vec<String>,
    /// Every output audio byte sent (wire format), in order.
    pub sent_audio: Vec<u8>,
    /// The close code the client sent.
    pub client_close: Option<u16>,
    /// The connection ended.
    pub ended: bool,
}

impl ConnLog {
    /// The client events of type `ty`.
    pub fn of(&self, ty: &str) -> Vec<Value> {
        self.events
            .iter()
            .filter(|e| e["type"] == ty)
            .cloned()
            .collect()
    }

    /// Client event types, in order (appends excluded).
    pub fn types(&self) -> Vec<String> {
        self.events
            .iter()
            .filter_map(|e| e["type"].as_str())
            .filter(|t| *t != "input_audio_buffer.append")
            .map(str::to_owned)
            .collect()
    }
}

type Logs = Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake; stops when dropped.
#[derive(Debug)]
pub struct OpenAiRealtimeFake {
    ws: WsFake,
    logs: Logs,
}

impl OpenAiRealtimeFake {
    /// Starts a fake on 127.0.0.1.
    pub async fn start(opts: FakeOptions) -> Self {
        let logs: Logs = Arc::default();
        let key = opts.api_key.clone();
        let logs2 = logs.clone();
        let opts = Arc::new(opts);
        let ws = WsFake::start_with(
            move |r: &SeenRequest| {
                if r.path() != "/v1/realtime" {
                    return Err(Reject::status(404).body(envelope(
                        "invalid_request_error",
                        "not_found",
                        "Not found",
                    )));
                }
                if r.query("model").is_none_or(str::is_empty) {
                    return Err(Reject::status(400).body(envelope(
                        "invalid_request_error",
                        "missing_model",
                        "Missing required parameter: 'model'.",
                    )));
                }
                if r.header("authorization") != Some(format!("Bearer {key}").as_str()) {
                    return Err(Reject::status(401)
                        .header("content-type", "application/json")
                        .body(envelope(
                            "invalid_request_error",
                            "invalid_api_key",
                            "Incorrect API key provided.",
                        )));
                }
                Ok(())
            },
            move |req, socket| {
                let log = Arc::new(Mutex::new(ConnLog {
                    request: Some(req.clone()),
                    ..Default::default()
                }));
                lock(&logs2).push(log.clone());
                let opts = opts.clone();
                async move {
                    let mut c = Conn::new(socket, opts, log.clone(), &req);
                    c.run().await;
                    lock(&log).ended = true;
                }
            },
        )
        .await;
        Self { ws, logs }
    }

    /// `ws://127.0.0.1:port`.
    pub fn base_url(&self) -> String {
        self.ws.base_url()
    }

    /// Every upgrade request, accepted or not.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.ws.requests()
    }

    /// Every accepted connection's log so far.
    pub fn connections(&self) -> Vec<ConnLog> {
        lock(&self.logs).iter().map(|l| lock(l).clone()).collect()
    }

    /// The last connection's log, once `ready` holds for it (polled; panics after 10 s).
    pub async fn wait_for(&self, ready: impl Fn(&ConnLog) -> bool) -> ConnLog {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(l) = self.connections().pop().filter(|l| ready(l)) {
                return l;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "fake: condition not met in 10 s; last: {:?}",
                    self.connections().pop()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The OpenAI error envelope (HTTP bodies).
fn envelope(kind: &str, code: &str, message: &str) -> String {
    json!({"error": {"message": message, "type": kind, "param": null, "code": code}}).to_string()
}

/// Standard base64 with padding.
pub fn b64(data: &[u8]) -> String {
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

/// The wire format named by a `format` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `audio/pcm` 24 kHz.
    Pcm,
    /// `audio/pcmu`.
    Pcmu,
    /// `audio/pcma`.
    Pcma,
}

impl Format {
    fn of(v: &Value) -> Option<Self> {
        match v.get("type")?.as_str()? {
            "audio/pcm" => Some(Self::Pcm),
            "audio/pcmu" => Some(Self::Pcmu),
            "audio/pcma" => Some(Self::Pcma),
            _ => None,
        }
    }

    /// Bytes per ms.
    pub fn bytes_per_ms(self) -> usize {
        match self {
            Self::Pcm => 48,
            _ => 8,
        }
    }

    fn samples(self, b: &[u8]) -> Vec<i16> {
        match self {
            Self::Pcm => b
                .chunks_exact(2)
                .map(|p| i16::from_le_bytes([p[0], p[1]]))
                .collect(),
            Self::Pcmu => b.iter().map(|&x| codec::mulaw_decode(x)).collect(),
            Self::Pcma => b.iter().map(|&x| codec::alaw_decode(x)).collect(),
        }
    }

    /// `ms` of the response tone starting at sample `pos`, in this format.
    pub fn tone(self, pos: usize, ms: u32) -> Vec<u8> {
        let rate = if self == Self::Pcm { 24_000 } else { 8_000 };
        let n = (rate * ms / 1000) as usize;
        let mut out = Vec::with_capacity(n * 2);
        for i in pos..pos + n {
            let s = ((i as f32 * 0.05).sin() * 8_000.0) as i16;
            match self {
                Self::Pcm => out.extend_from_slice(&s.to_le_bytes()),
                Self::Pcmu => out.push(codec::mulaw_encode(s)),
                Self::Pcma => out.push(codec::alaw_encode(s)),
            }
        }
        out
    }
}

/// A response under way.
struct Playing {
    id: String,
    item_id: String,
    text: String,
    chunks_left: u32,
    pos: usize,
    transcript_sent: bool,
}

struct Conn {
    ws: FakeSocket,
    opts: Arc<FakeOptions>,
    log: Arc<Mutex<ConnLog>>,
    session: Value,
    seq: u64,
    buffer_ms: u64,
    total_ms: u64,
    speaking: bool,
    speech_start: u64,
    silence_ms: u64,
    last_input: String,
    playing: Option<Playing>,
    calls: HashSet<String>,
    audio_items: Vec<(String, u64)>,
    garbage: usize,
    dead: bool,
}

impl Conn {
    fn new(
        ws: FakeSocket,
        opts: Arc<FakeOptions>,
        log: Arc<Mutex<ConnLog>>,
        req: &SeenRequest,
    ) -> Self {
        let model = req.query("model").unwrap_or("gpt-realtime").to_owned();
        let session = json!({
            "type": "realtime",
            "object": "realtime.session",
            "id": "sess_fake1",
            "model": model,
            "output_modalities": ["audio"],
            "instructions": "You are a helpful assistant.",
            "tools": [],
            "tool_choice": "auto",
            "max_output_tokens": "inf",
            "audio": {
                "input": {
                    "format": {"type": "audio/pcm", "rate": 24000},
                    "transcription": null,
                    "noise_reduction": null,
                    "turn_detection": {"type": "server_vad", "threshold": 0.5,
                        "prefix_padding_ms": 300, "silence_duration_ms": 500,
                        "create_response": true, "interrupt_response": true},
                },
                "output": {"format": {"type": "audio/pcm", "rate": 24000}, "voice": "alloy", "speed": 1.0},
            },
        });
        lock(&log).session = session.clone();
        Self {
            ws,
            opts,
            log,
            session,
            seq: 0,
            buffer_ms: 0,
            total_ms: 0,
            speaking: false,
            speech_start: 0,
            silence_ms: 0,
            last_input: String::new(),
            playing: None,
            calls: HashSet::new(),
            audio_items: Vec::new(),
            garbage: 0,
            dead: false,
        }
    }

    fn id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        format!("{prefix}_{}", self.seq)
    }

    async fn run(&mut self) {
        if self.opts.fault == Fault::Silent {
            while let Some(Ok(m)) = self.ws.next().await {
                if let WsMessage::Close(f) = m {
                    lock(&self.log).client_close = f.map(|f| u16::from(f.code));
                    return;
                }
            }
            return;
        }
        let s = self.session.clone();
        self.send(json!({"type": "session.created", "session": s}))
            .await;
        while !self.dead {
            let pace = self.opts.pace.filter(|_| self.playing.is_some());
            tokio::select! {
                msg = self.ws.next() => match msg {
                    Some(Ok(WsMessage::Text(t))) => self.on_text(t.as_str()).await,
                    Some(Ok(WsMessage::Close(f))) => {
                        lock(&self.log).client_close = f.map(|f| u16::from(f.code));
                        let _ = self.ws.close(None).await;
                        return;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return,
                },
                () = tokio::time::sleep(pace.unwrap_or_default()), if pace.is_some() => {
                    self.play_chunk().await;
                }
            }
        }
    }

    async fn send(&mut self, mut v: Value) {
        if self.dead {
            return;
        }
        if self.opts.fault == Fault::Garbage {
            self.send_garbage().await;
        }
        let eid = self.id("event");
        v["event_id"] = Value::String(eid);
        let ty = v["type"].as_str().unwrap_or("").to_owned();
        lock(&self.log).sent.push(ty);
        if self
            .ws
            .send(WsMessage::Text(v.to_string().into()))
            .await
            .is_err()
        {
            self.dead = true;
        }
    }

    async fn send_garbage(&mut self) {
        const G: &[&str] = &[
            "{not json",
            "[1,2,3]",
            "42",
            r#"{"type":7}"#,
            r#"{"type":"no.such.event","x":1}"#,
            r#"{"type":"response.output_audio.delta","delta":12}"#,
            r#"{"type":"response.output_audio.delta","item_id":"junk","delta":"%%% not base64 %%%"}"#,
            r#"{"type":"input_audio_buffer.speech_started","audio_start_ms":"soon"}"#,
            r#"{"type":"response.done","response":"nope"}"#,
            r#"{"type":"error","error":7}"#,
            r#"{"type":"response.function_call_arguments.done","arguments":{}}"#,
            r#"{"type":"response.output_item.done","item":{"type":"function_call"}}"#,
            r#"{"type":"conversation.item.input_audio_transcription.completed","transcript":null}"#,
            "",
        ];
        let g = G[self.garbage % G.len()];
        self.garbage += 1;
        let _ = self.ws.send(WsMessage::Text(g.into())).await;
        if self.garbage.is_multiple_of(5) {
            let _ = self
                .ws
                .send(WsMessage::Binary(vec![0xff, 0x00, 0x13].into()))
                .await;
        }
    }

    async fn error(
        &mut self,
        kind: &str,
        code: &str,
        message: &str,
        param: Option<&str>,
        about: &Value,
    ) {
        let mut e = json!({"type": kind, "code": code, "message": message, "param": param});
        if let Some(id) = about.get("event_id").and_then(Value::as_str) {
            e["event_id"] = Value::String(id.to_owned());
        }
        self.send(json!({"type": "error", "error": e})).await;
    }

    async fn invalid(&mut self, code: &str, message: &str, param: Option<&str>, about: &Value) {
        self.error("invalid_request_error", code, message, param, about)
            .await;
    }

    async fn on_text(&mut self, text: &str) {
        let Ok(ev) = serde_json::from_str::<Value>(text) else {
            lock(&self.log).events.push(json!({"malformed": text}));
            return self
                .invalid(
                    "invalid_json",
                    "The message is not valid JSON.",
                    None,
                    &Value::Null,
                )
                .await;
        };
        let ty = ev
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if ty == "input_audio_buffer.append" {
            let audio = ev
                .get("audio")
                .and_then(Value::as_str)
                .and_then(base64_decode);
            let mut logged = ev.clone();
            logged["audio"] = json!(audio.as_ref().map_or(0, Vec::len));
            lock(&self.log).events.push(logged);
            match audio {
                Some(a) => self.on_audio(a).await,
                None => {
                    self.invalid(
                        "invalid_value",
                        "Invalid 'audio': not base64.",
                        Some("audio"),
                        &ev,
                    )
                    .await
                }
            }
            return;
        }
        lock(&self.log).events.push(ev.clone());
        match ty.as_str() {
            "session.update" => self.on_session_update(&ev).await,
            "input_audio_buffer.commit" => {
                if self.buffer_ms == 0 {
                    return self
                        .invalid(
                            "input_audio_buffer_commit_empty",
                            "Error committing input audio buffer: buffer too small.",
                            None,
                            &ev,
                        )
                        .await;
                }
                let heard = self.buffer_ms;
                self.speaking = false;
                self.end_turn(heard, false).await;
            }
            "input_audio_buffer.clear" => {
                self.buffer_ms = 0;
                self.speaking = false;
                self.send(json!({"type": "input_audio_buffer.cleared"}))
                    .await;
            }
            "conversation.item.create" => self.on_item(&ev).await,
            "response.create" => self.on_response_create(&ev).await,
            "response.cancel" => {
                if self.playing.is_some() {
                    self.finish("cancelled", Some("client_cancelled")).await;
                } else {
                    self.invalid(
                        "response_cancel_not_active",
                        "Cancellation failed: no active response found",
                        None,
                        &ev,
                    )
                    .await;
                }
            }
            "conversation.item.truncate" => {
                let item = ev["item_id"].as_str().unwrap_or("");
                let end = ev["audio_end_ms"].as_u64();
                let known = self
                    .audio_items
                    .iter()
                    .find(|(i, _)| i == item)
                    .map(|x| x.1);
                match (known, end) {
                    (Some(ms), Some(end)) if end <= ms && ev["content_index"] == 0 => {
                        self.send(json!({"type": "conversation.item.truncated",
                            "item_id": item, "content_index": 0, "audio_end_ms": end}))
                            .await;
                    }
                    _ => {
                        self.invalid(
                            "invalid_value",
                            "Invalid truncate request.",
                            Some("audio_end_ms"),
                            &ev,
                        )
                        .await
                    }
                }
            }
            "" => {
                self.invalid("invalid_value", "Missing 'type'.", Some("type"), &ev)
                    .await
            }
            other => {
                let m =
                    format!("Invalid value: '{other}'. Supported values are: 'session.update', …");
                self.invalid("invalid_value", &m, Some("type"), &ev).await
            }
        }
    }

    fn check_session(s: &Value) -> Result<(), (String, String, String)> {
        let bad = |code: &str, m: &str, p: &str| Err((code.to_owned(), m.to_owned(), p.to_owned()));
        let Some(obj) = s.as_object() else {
            return bad("invalid_type", "session must be an object", "session");
        };
        if s["type"] != "realtime" {
            return bad(
                "missing_required_parameter",
                "Missing required parameter: 'session.type'.",
                "session.type",
            );
        }
        for k in obj.keys() {
            if !SESSION_KEYS.contains(&k.as_str()) {
                return bad(
                    "unknown_parameter",
                    &format!("Unknown parameter: 'session.{k}'."),
                    &format!("session.{k}"),
                );
            }
        }
        if let Some(m) = s.get("output_modalities") {
            let ok = m
                .as_array()
                .is_some_and(|a| a.len() == 1 && (a[0] == "audio" || a[0] == "text"));
            if !ok {
                return bad(
                    "invalid_value",
                    "output_modalities must be ['audio'] or ['text']",
                    "session.output_modalities",
                );
            }
        }
        if let Some(n) = s.get("max_output_tokens") {
            if !(n == "inf" || n.as_u64().is_some_and(|n| (1..=4096).contains(&n))) {
                return bad(
                    "invalid_value",
                    "max_output_tokens must be 1-4096 or 'inf'",
                    "session.max_output_tokens",
                );
            }
        }
        if let Some(t) = s.get("tools") {
            let ok = t.as_array().is_some_and(|a| {
                a.iter().all(|t| {
                    t["type"] == "function"
                        && t["name"].as_str().is_some_and(|n| !n.is_empty())
                        && t.get("function").is_none()
                })
            });
            if !ok {
                return bad(
                    "invalid_value",
                    "tools must be flat function tools",
                    "session.tools",
                );
            }
        }
        for side in ["input", "output"] {
            if let Some(f) = s.pointer(&format!("/audio/{side}/format")) {
                let ok = Format::of(f).is_some()
                    && (f["type"] != "audio/pcm" || f.get("rate").is_none_or(|r| r == 24000));
                if !ok {
                    return bad(
                        "invalid_value",
                        "invalid audio format",
                        &format!("session.audio.{side}.format"),
                    );
                }
            }
        }
        if let Some(v) = s.pointer("/audio/output/voice") {
            let ok = v.as_str().is_some_and(|v| VOICES.contains(&v))
                || v.get("id")
                    .and_then(Value::as_str)
                    .is_some_and(|i| i.starts_with("voice_"));
            if !ok {
                return bad(
                    "invalid_value",
                    "Invalid value for 'session.audio.output.voice'.",
                    "session.audio.output.voice",
                );
            }
        }
        if let Some(td) = s.pointer("/audio/input/turn_detection") {
            let ok =
                td.is_null() || matches!(td["type"].as_str(), Some("server_vad" | "semantic_vad"));
            if !ok {
                return bad(
                    "invalid_value",
                    "invalid turn_detection",
                    "session.audio.input.turn_detection",
                );
            }
        }
        Ok(())
    }

    async fn on_session_update(&mut self, ev: &Value) {
        let s = ev.get("session").cloned().unwrap_or(Value::Null);
        if let Err((code, m, p)) = Self::check_session(&s) {
            return self.invalid(&code, &m, Some(&p), ev).await;
        }
        merge(&mut self.session, &s);
        lock(&self.log).session = self.session.clone();
        let s = self.session.clone();
        self.send(json!({"type": "session.updated", "session": s}))
            .await;
    }

    fn input_format(&self) -> Format {
        self.session
            .pointer("/audio/input/format")
            .and_then(Format::of)
            .unwrap_or(Format::Pcm)
    }

    fn output_format(&self) -> Format {
        self.session
            .pointer("/audio/output/format")
            .and_then(Format::of)
            .unwrap_or(Format::Pcm)
    }

    fn vad(&self) -> Option<Value> {
        self.session
            .pointer("/audio/input/turn_detection")
            .filter(|t| t.is_object())
            .cloned()
    }

    async fn on_audio(&mut self, audio: Vec<u8>) {
        let f = self.input_format();
        lock(&self.log).audio.extend_from_slice(&audio);
        let samples = f.samples(&audio);
        let ms = (audio.len() / f.bytes_per_ms()) as u64;
        let speech = samples
            .iter()
            .any(|s| s.unsigned_abs() > SPEECH_LEVEL as u16);
        let start = self.total_ms;
        self.total_ms += ms;
        self.buffer_ms += ms;
        let Some(vad) = self.vad() else { return };
        if speech {
            self.silence_ms = 0;
            if !self.speaking {
                self.speaking = true;
                self.speech_start = start;
                let item = self.id("item");
                self.send(json!({"type": "input_audio_buffer.speech_started",
                    "audio_start_ms": start, "item_id": item}))
                    .await;
                if self.playing.is_some() && vad["interrupt_response"] != false {
                    self.finish("cancelled", Some("turn_detected")).await;
                }
            }
        } else if self.speaking {
            self.silence_ms += ms;
            let wait = vad["silence_duration_ms"].as_u64().unwrap_or(500);
            if self.silence_ms >= wait {
                self.speaking = false;
                let end = self.total_ms;
                self.send(json!({"type": "input_audio_buffer.speech_stopped",
                    "audio_end_ms": end, "item_id": "item_vad"}))
                    .await;
                let heard = end - self.speech_start;
                self.end_turn(heard, vad["create_response"] != false).await;
            }
        }
    }

    async fn end_turn(&mut self, heard: u64, respond: bool) {
        self.buffer_ms = 0;
        let item = self.id("item");
        self.send(json!({"type": "input_audio_buffer.committed", "previous_item_id": null, "item_id": item}))
            .await;
        self.send(json!({"type": "conversation.item.added", "item": {"id": item, "type": "message", "role": "user",
            "content": [{"type": "input_audio", "transcript": null}]}}))
            .await;
        if self
            .session
            .pointer("/audio/input/transcription")
            .is_some_and(Value::is_object)
        {
            self.send(
                json!({"type": "conversation.item.input_audio_transcription.delta",
                "item_id": item, "content_index": 0, "delta": "heard "}),
            )
            .await;
            self.send(
                json!({"type": "conversation.item.input_audio_transcription.completed",
                "item_id": item, "content_index": 0, "transcript": format!("heard {heard} ms"),
                "usage": {"type": "duration", "seconds": heard as f64 / 1000.0}}),
            )
            .await;
        }
        self.last_input = format!("{heard} ms of audio");
        if respond && self.playing.is_none() {
            self.start_response().await;
        }
    }

    async fn on_item(&mut self, ev: &Value) {
        let item = &ev["item"];
        match item["type"].as_str() {
            Some("message") if item["role"] == "user" => {
                let text = item["content"]
                    .as_array()
                    .and_then(|c| c.iter().find(|p| p["type"] == "input_text"))
                    .and_then(|p| p["text"].as_str());
                let Some(text) = text else {
                    return self
                        .invalid(
                            "invalid_value",
                            "content needs input_text",
                            Some("item.content"),
                            ev,
                        )
                        .await;
                };
                self.last_input = text.to_owned();
            }
            Some("function_call_output") => {
                let call = item["call_id"].as_str().unwrap_or("");
                let Some(out) = item["output"].as_str() else {
                    return self
                        .invalid(
                            "missing_required_parameter",
                            "Missing 'item.output'.",
                            Some("item.output"),
                            ev,
                        )
                        .await;
                };
                if !self.calls.contains(call) {
                    return self
                        .invalid(
                            "invalid_value",
                            "No tool call found for call_id.",
                            Some("item.call_id"),
                            ev,
                        )
                        .await;
                }
                self.last_input = format!("{call} returned {out}");
            }
            _ => {
                return self
                    .invalid("invalid_value", "Unsupported item.", Some("item"), ev)
                    .await
            }
        }
        let id = self.id("item");
        let mut added = item.clone();
        added["id"] = Value::String(id);
        self.send(json!({"type": "conversation.item.added", "previous_item_id": null, "item": added.clone()}))
            .await;
        self.send(
            json!({"type": "conversation.item.done", "previous_item_id": null, "item": added}),
        )
        .await;
    }

    async fn on_response_create(&mut self, ev: &Value) {
        match self.opts.fault.clone() {
            Fault::ErrorOnResponse {
                kind,
                code,
                message,
            } => return self.error(&kind, &code, &message, None, ev).await,
            Fault::CloseOnResponse { code, reason } => {
                let _ = self
                    .ws
                    .close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }))
                    .await;
                self.dead = true;
                return;
            }
            Fault::DropOnResponse => {
                self.dead = true;
                return;
            }
            _ => {}
        }
        if self.playing.is_some() {
            return self
                .invalid(
                    "conversation_already_has_active_response",
                    "Conversation already has an active response in progress.",
                    None,
                    ev,
                )
                .await;
        }
        self.start_response().await;
    }

    fn has_tool(&self, name: &str) -> bool {
        self.session["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["name"] == name))
    }

    async fn start_response(&mut self) {
        let rid = self.id("resp");
        let input = std::mem::take(&mut self.last_input);
        let modalities = self.session["output_modalities"].clone();
        self.send(json!({"type": "response.created", "response": {"id": rid, "object": "realtime.response",
            "status": "in_progress", "output": [], "output_modalities": modalities}}))
            .await;
        if let Some(name) = input
            .strip_prefix("call ")
            .map(str::trim)
            .filter(|n| self.has_tool(n))
        {
            let name = name.to_owned();
            let (item, call) = (self.id("item"), self.id("call"));
            self.calls.insert(call.clone());
            let fc = |status: &str, args: &str| {
                json!({"id": item, "object": "realtime.item", "type": "function_call",
                "status": status, "name": name, "call_id": call, "arguments": args})
            };
            self.send(
                json!({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
                "item": fc("in_progress", "")}),
            )
            .await;
            self.send(
                json!({"type": "response.function_call_arguments.delta", "response_id": rid,
                "item_id": item, "output_index": 0, "call_id": call, "delta": CALL_ARGUMENTS}),
            )
            .await;
            self.send(json!({"type": "response.function_call_arguments.done", "response_id": rid,
                "item_id": item, "output_index": 0, "call_id": call, "name": name, "arguments": CALL_ARGUMENTS})).await;
            let done = fc("completed", CALL_ARGUMENTS);
            self.send(
                json!({"type": "response.output_item.done", "response_id": rid, "output_index": 0,
                "item": done.clone()}),
            )
            .await;
            self.send(json!({"type": "response.done", "response": {"id": rid, "object": "realtime.response",
                "status": "completed", "status_details": null, "output": [done]}})).await;
            return;
        }
        let text = format!("reply to: {input}");
        let item = self.id("item");
        self.send(json!({"type": "response.output_item.added", "response_id": rid, "output_index": 0,
            "item": {"id": item, "type": "message", "role": "assistant", "status": "in_progress", "content": []}}))
            .await;
        if self.session["output_modalities"] == json!(["text"]) {
            let (a, b) = text.split_at(text.len() / 2);
            for d in [a, b] {
                self.send(json!({"type": "response.output_text.delta", "response_id": rid, "item_id": item,
                    "output_index": 0, "content_index": 0, "delta": d})).await;
            }
            self.send(
                json!({"type": "response.output_text.done", "response_id": rid, "item_id": item,
                "output_index": 0, "content_index": 0, "text": text}),
            )
            .await;
            self.playing = Some(Playing {
                id: rid,
                item_id: item,
                text,
                chunks_left: 0,
                pos: 0,
                transcript_sent: true,
            });
            return self.finish("completed", None).await;
        }
        self.audio_items.push((item.clone(), 0));
        let chunks = self.opts.response_ms.div_ceil(self.opts.chunk_ms.max(1));
        self.playing = Some(Playing {
            id: rid,
            item_id: item,
            text,
            chunks_left: chunks,
            pos: 0,
            transcript_sent: false,
        });
        if self.opts.pace.is_none() {
            while self.playing.is_some() && !self.dead {
                self.play_chunk().await;
            }
        }
    }

    async fn play_chunk(&mut self) {
        let f = self.output_format();
        let Some(p) = self.playing.as_mut() else {
            return;
        };
        if p.chunks_left == 0 {
            return self.finish("completed", None).await;
        }
        let ms = self.opts.chunk_ms.max(1);
        let audio = f.tone(p.pos, ms);
        p.pos += audio.len() / if f == Format::Pcm { 2 } else { 1 };
        p.chunks_left -= 1;
        let (rid, item) = (p.id.clone(), p.item_id.clone());
        let first = !p.transcript_sent;
        p.transcript_sent = true;
        let text = p.text.clone();
        if let Some(a) = self.audio_items.iter_mut().find(|(i, _)| *i == item) {
            a.1 += u64::from(ms);
        }
        lock(&self.log).sent_audio.extend_from_slice(&audio);
        self.send(
            json!({"type": "response.output_audio.delta", "response_id": rid, "item_id": item,
            "output_index": 0, "content_index": 0, "delta": b64(&audio)}),
        )
        .await;
        if first {
            let (a, b) = text.split_at(text.len() / 2);
            for d in [a, b] {
                self.send(
                    json!({"type": "response.output_audio_transcript.delta", "response_id": rid,
                    "item_id": item, "output_index": 0, "content_index": 0, "delta": d}),
                )
                .await;
            }
        }
    }

    /// Ends the response under way with `status`.
    async fn finish(&mut self, status: &str, reason: Option<&str>) {
        let Some(p) = self.playing.take() else { return };
        let (rid, item) = (p.id, p.item_id);
        let completed = status == "completed";
        if completed
            && !p.text.is_empty()
            && p.chunks_left == 0
            && self.session["output_modalities"] != json!(["text"])
        {
            self.send(
                json!({"type": "response.output_audio.done", "response_id": rid, "item_id": item,
                "output_index": 0, "content_index": 0}),
            )
            .await;
            self.send(json!({"type": "response.output_audio_transcript.done", "response_id": rid, "item_id": item,
                "output_index": 0, "content_index": 0, "transcript": p.text})).await;
        }
        let item_status = if completed { "completed" } else { "incomplete" };
        self.send(
            json!({"type": "response.output_item.done", "response_id": rid, "output_index": 0,
            "item": {"id": item, "type": "message", "role": "assistant", "status": item_status}}),
        )
        .await;
        let details = reason.map(|r| json!({"type": status, "reason": r}));
        self.send(
            json!({"type": "response.done", "response": {"id": rid, "object": "realtime.response",
            "status": status, "status_details": details, "output": []}}),
        )
        .await;
    }
}

/// Merges a `session.update` into the effective session: top-level keys replace, `audio.input`
/// and `audio.output` keys replace one by one.
fn merge(into: &mut Value, update: &Value) {
    let Some(u) = update.as_object() else { return };
    for (k, v) in u {
        if k == "audio" {
            for side in ["input", "output"] {
                if let Some(m) = v.get(side).and_then(Value::as_object) {
                    let target = &mut into["audio"][side];
                    if !target.is_object() {
                        *target = Value::Object(Map::new());
                    }
                    for (k2, v2) in m {
                        target[k2] = v2.clone();
                    }
                }
            }
        } else {
            into[k] = v.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            assert_eq!(base64_decode(&b64(data)).unwrap(), data);
        }
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn sessions_are_checked_like_ga() {
        assert!(Conn::check_session(&json!({"type":"realtime","instructions":"x"})).is_ok());
        assert!(Conn::check_session(&json!({"instructions":"x"})).is_err());
        assert!(Conn::check_session(&json!({"type":"realtime","temperature":0.8})).is_err());
        assert!(Conn::check_session(
            &json!({"type":"realtime","output_modalities":["audio","text"]})
        )
        .is_err());
        assert!(Conn::check_session(
            &json!({"type":"realtime","audio":{"output":{"voice":"nobody"}}})
        )
        .is_err());
        assert!(Conn::check_session(&json!({"type":"realtime","audio":{"input":{"format":{"type":"audio/pcm","rate":16000}}}})).is_err());
        assert!(Conn::check_session(
            &json!({"type":"realtime","tools":[{"type":"function","function":{"name":"f"}}]})
        )
        .is_err());
    }
}
