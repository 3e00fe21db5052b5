//! A fake of Hume's EVI chat WebSocket (`/v0/evi/chat`) on 127.0.0.1 (`TTS_PROTOCOLS.md` §13;
//! HumeAI/hume-python-sdk `src/hume/empathic_voice/chat/raw_client.py`,
//! `chat/types/publish_event.py`, `types/subscribe_event.py` and the message types under
//! `empathic_voice/types/`):
//!
//! - auth: the `X-Hume-Api-Key` header, `?api_key=` or `?access_token=` (any one); otherwise the
//!   upgrade is refused with 401 (the SDK: "Websocket initialized with invalid credentials").
//!   [`HumeEviOptions::reject`] refuses every upgrade (429, 503…).
//! - `chat_metadata {chat_id, chat_group_id, request_id}` first.
//! - client messages, validated: `session_settings` (`audio {encoding: linear16, sample_rate,
//!   channels}` with integer rate and channels, `tools[] {type, name, parameters: string}`,
//!   `builtin_tools[] {name}`, `variables` of scalars, `system_prompt` / `voice_id` strings),
//!   `audio_input {data: b64}` (needs an `audio` block first: raw linear16 cannot be decoded
//!   otherwise), `user_input {text}`, `assistant_input {text}`, `tool_response {tool_call_id,
//!   content}` and `tool_error {tool_call_id, error, content?}` (for a call it made),
//!   `pause_assistant_message`, `resume_assistant_message`. Bad JSON gets `error E0100`, a bad
//!   message `E0101`, bad base64 `E0201`, audio without settings `E0202` (slugs UNCONFIRMED);
//!   errors never close the chat.
//! - turns: every audio byte counts as speech; with `verbose_transcription=true` an interim
//!   `user_message` "heard N ms" per started 100 ms; after [`HumeEviOptions::turn_ms`] of audio
//!   a final `user_message` (`time {begin, end}` in ms of the chat's audio), then a response.
//!   `user_input` echoes a `user_message` with `from_text: true`, then a response.
//! - a response: `assistant_message {id, message {role, content: "reply to: …"}, models
//!   {prosody {scores}}, from_text, is_quick_response}`, `audio_output {id, index, data}` chunks
//!   (each a standalone WAV: 44-byte header + 48 kHz 16-bit mono tone,
//!   [`HumeEviOptions::chunk_ms`] each, [`HumeEviOptions::response_ms`] in all; paced in real
//!   time with [`HumeEviOptions::paced`]), then `assistant_end`.
//! - `user_input` "call NAME" asks for a tool: `tool_call {name, parameters: "{}", tool_call_id
//!   "call-N", tool_type: function, response_required: true}`; the answer gets a response
//!   "reply to: NAME returned CONTENT".
//! - barge-in: audio while a response is still being sent stops it with `user_interruption
//!   {time}` (and, with [`HumeEviOptions::end_after_interruption`], an `assistant_end`).
//! - pause: while paused no response is started; resume answers the last user message held.
//! - fault triggers in `user_input` text: `error CODE SLUG` (an `error` message), `fatal CODE
//!   SLUG` (an `error`, then close 1008), `close CODE` (close frame), `disconnect` (TCP dropped
//!   without a close), `garbage` (malformed messages, then a normal response), `silence` (stop
//!   reading and sending). [`HumeEviOptions`] has the same for connection start.
//!
//! Everything received is recorded per connection ([`EviSession`]).

use super::{FakeSocket, Reject, SeenRequest, WsFake, WsMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// The output rate (`audio_output.py`: "WAV and the sample rate is 48kHz").
pub const OUTPUT_RATE: u32 = 48_000;
/// The chat endpoint.
pub const CHAT_PATH: &str = "/v0/evi/chat";

/// Behaviour and fault knobs.
#[derive(Debug, Clone)]
pub struct HumeEviOptions {
    /// The one valid API key (header or `api_key`).
    pub api_key: String,
    /// An access token accepted as `?access_token=`.
    pub access_token: Option<String>,
    /// Refuse every upgrade with this response.
    pub reject: Option<Reject>,
    /// Accept the upgrade, then never send (not even `chat_metadata`) nor read.
    pub silent: bool,
    /// Right after `chat_metadata`, send malformed messages.
    pub garbage: bool,
    /// Right after `chat_metadata`, send an `error` message `(code, slug, message)`.
    pub error_first: Option<(String, String, String)>,
    /// Instead of `chat_metadata`, send an `error` message and close (1008).
    pub error_instead_of_metadata: Option<(String, String, String)>,
    /// Audio per user turn.
    pub turn_ms: u64,
    /// Length of each response's audio.
    pub response_ms: u32,
    /// Audio per `audio_output` chunk.
    pub chunk_ms: u32,
    /// Send `audio_output` chunks in real time (one per `chunk_ms`).
    pub paced: bool,
    /// After a `user_interruption`, also send `assistant_end` for the stopped response.
    pub end_after_interruption: bool,
    /// Assistant messages per response (the text is split across them).
    pub assistant_messages: usize,
    /// The `fmt ` rate written into `audio_output` WAV headers (to test a mismatch).
    pub wav_rate: u32,
    /// After this many `audio_input` messages, drop the TCP connection.
    pub disconnect_after_audio: Option<usize>,
}

impl Default for HumeEviOptions {
    fn default() -> Self {
        Self {
            api_key: "test-hume-key".into(),
            access_token: None,
            reject: None,
            silent: false,
            garbage: false,
            error_first: None,
            error_instead_of_metadata: None,
            turn_ms: 200,
            response_ms: 200,
            chunk_ms: 20,
            paced: false,
            end_after_interruption: false,
            assistant_messages: 1,
            wav_rate: OUTPUT_RATE,
            disconnect_after_audio: None,
        }
    }
}

/// What the fake saw on one accepted connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EviSession {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// Every client text message, parsed (unparsable ones as `Value::String`).
    pub messages: Vec<Value>,
    /// Every `session_settings` message.
    pub settings: Vec<Value>,
    /// Every decoded audio byte, in order.
    pub audio: Vec<u8>,
    /// How many `audio_input` messages.
    pub audio_messages: usize,
    /// `user_input` texts.
    pub user_inputs: Vec<String>,
    /// `tool_response` and `tool_error` messages.
    pub tool_answers: Vec<Value>,
    /// `pause_assistant_message` count.
    pub pauses: usize,
    /// `resume_assistant_message` count.
    pub resumes: usize,
    /// Responses started.
    pub responses: usize,
    /// `user_interruption`s sent.
    pub interruptions: usize,
    /// Pings received.
    pub pings: usize,
    /// The client's close code (1005 for a close without one).
    pub client_close: Option<u16>,
}

#[derive(Debug, Default)]
struct Shared {
    sessions: Mutex<Vec<EviSession>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake.
#[derive(Debug)]
pub struct HumeEviFake {
    ws: WsFake,
    shared: Arc<Shared>,
}

impl HumeEviFake {
    /// Starts the server on a free 127.0.0.1 port.
    pub async fn start(options: HumeEviOptions) -> Self {
        let shared = Arc::new(Shared::default());
        let opts = Arc::new(options);
        let o1 = opts.clone();
        let accept = move |req: &SeenRequest| {
            if let Some(r) = &o1.reject {
                return Err(r.clone());
            }
            if req.path() != CHAT_PATH {
                return Err(Reject::status(404).body(r#"{"message":"Not Found"}"#));
            }
            let key = o1.api_key.as_str();
            let ok = req.header("x-hume-api-key") == Some(key)
                || req.query("api_key") == Some(key)
                || o1
                    .access_token
                    .as_deref()
                    .is_some_and(|t| req.query("access_token") == Some(t));
            if ok {
                Ok(())
            } else {
                Err(Reject::status(401)
                    .body(r#"{"message":"Websocket initialized with invalid credentials."}"#))
            }
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
    pub fn sessions(&self) -> Vec<EviSession> {
        lock(&self.shared.sessions).clone()
    }

    /// The last accepted connection.
    pub fn last(&self) -> EviSession {
        self.sessions().pop().unwrap_or_default()
    }
}

/// Standard base64 with padding.
pub fn b64_encode(data: &[u8]) -> String {
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

/// Decodes standard base64 with padding; `None` for anything else.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    let quads = b.len() / 4;
    for (i, q) in b.chunks(4).enumerate() {
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | val(c)?;
        }
        n <<= 6 * pad as u32;
        out.extend_from_slice(&n.to_be_bytes()[1..4 - pad]);
    }
    Some(out)
}

/// One `audio_output` chunk: a standalone WAV (44-byte header) of `samples` tone samples from
/// sample `start`, written with header rate `rate`.
pub fn wav_chunk(start: usize, samples: usize, rate: u32) -> Vec<u8> {
    let data_len = (samples * 2) as u32;
    let mut v = Vec::with_capacity(44 + samples * 2);
    v.extend_from_slice(b"RIFF");
    v.extend_from_slice(&(36 + data_len).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes());
    v.extend_from_slice(&rate.to_le_bytes());
    v.extend_from_slice(&(rate * 2).to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&16u16.to_le_bytes());
    v.extend_from_slice(b"data");
    v.extend_from_slice(&data_len.to_le_bytes());
    for i in start..start + samples {
        v.extend_from_slice(&tone_sample(i).to_le_bytes());
    }
    v
}

/// Sample `i` of the fake's output tone (440 Hz at 48 kHz).
pub fn tone_sample(i: usize) -> i16 {
    ((i as f64 * 440.0 * std::f64::consts::TAU / f64::from(OUTPUT_RATE)).sin() * 8_000.0) as i16
}

/// A response being sent.
struct Playing {
    id: String,
    /// Samples sent so far, and in all.
    pos: usize,
    total: usize,
    index: u64,
}

struct Conn {
    ws: FakeSocket,
    shared: Arc<Shared>,
    opts: Arc<HumeEviOptions>,
    index: usize,
    verbose: bool,
    /// Input bytes per second, from `session_settings.audio` (0: none yet).
    byte_rate: u64,
    /// Audio bytes of the chat, and of the current turn.
    chat_bytes: u64,
    turn_bytes: u64,
    turn_start_ms: u64,
    interims_sent: u64,
    paused: bool,
    /// The last user message held while paused.
    held: Option<String>,
    playing: Option<Playing>,
    responses: usize,
    calls: Vec<(String, String)>,
}

/// What to do after handling a message.
enum Next {
    Go,
    /// End the connection (already closed or dropped).
    End,
    /// Stop reading and sending.
    Silence,
}

impl Conn {
    fn record(&self, f: impl FnOnce(&mut EviSession)) {
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

    async fn error(&mut self, code: &str, slug: &str, message: &str) -> bool {
        self.send(json!({"type": "error", "code": code, "slug": slug, "message": message}))
            .await
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

    fn ms(&self, bytes: u64) -> u64 {
        bytes * 1000 / self.byte_rate.max(1)
    }

    /// Starts a response to `to` (or holds it while paused).
    async fn respond(&mut self, to: String) -> bool {
        if self.paused {
            self.held = Some(to);
            return true;
        }
        self.responses += 1;
        self.record(|s| s.responses += 1);
        let id = format!("am_{}", self.responses);
        let text = format!("reply to: {to}");
        let parts = self.opts.assistant_messages.max(1);
        let words: Vec<&str> = text.split(' ').collect();
        let per = words.len().div_ceil(parts).max(1);
        for (i, chunk) in words.chunks(per).enumerate() {
            let mut content = chunk.join(" ");
            if i > 0 {
                content.insert(0, ' ');
            }
            let m = json!({"type": "assistant_message", "id": id,
                "message": {"role": "assistant", "content": content},
                "models": {"prosody": {"scores": {"Calmness": 0.5, "Interest": 0.3,
                    "Surprise (positive)": 0.1}}},
                "from_text": false, "is_quick_response": false});
            if !self.send(m).await {
                return false;
            }
        }
        let total = (OUTPUT_RATE as usize) * self.opts.response_ms as usize / 1000;
        self.playing = Some(Playing {
            id,
            pos: 0,
            total,
            index: 0,
        });
        if !self.opts.paced {
            while self.playing.is_some() {
                if !self.play_chunk().await {
                    return false;
                }
            }
        }
        true
    }

    async fn play_chunk(&mut self) -> bool {
        let Some(mut p) = self.playing.take() else {
            return true;
        };
        let per = (OUTPUT_RATE as usize * self.opts.chunk_ms.max(1) as usize / 1000).max(1);
        let n = per.min(p.total - p.pos);
        if n > 0 {
            let wav = wav_chunk(p.pos, n, self.opts.wav_rate);
            let m = json!({"type": "audio_output", "id": p.id, "index": p.index,
                "data": b64_encode(&wav)});
            if !self.send(m).await {
                return false;
            }
            p.pos += n;
            p.index += 1;
        }
        if p.pos >= p.total {
            return self.send(json!({"type": "assistant_end"})).await;
        }
        self.playing = Some(p);
        true
    }

    async fn user_message(&mut self, text: &str, interim: bool, from_text: bool) -> bool {
        let (begin, end) = (self.turn_start_ms, self.ms(self.chat_bytes));
        let m = json!({"type": "user_message",
            "message": {"role": "user", "content": text},
            "models": {"prosody": {"scores": {"Calmness": 0.4, "Interest": 0.3}}},
            "time": {"begin": begin, "end": end}, "from_text": from_text, "interim": interim});
        self.send(m).await
    }

    async fn on_audio(&mut self, len: usize) -> bool {
        if self.playing.take().is_some() {
            // The user talks over the response: EVI stops it and says so.
            self.record(|s| s.interruptions += 1);
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            if !self
                .send(json!({"type": "user_interruption", "time": now}))
                .await
            {
                return false;
            }
            if self.opts.end_after_interruption
                && !self.send(json!({"type": "assistant_end"})).await
            {
                return false;
            }
        }
        if self.turn_bytes == 0 {
            self.turn_start_ms = self.ms(self.chat_bytes);
        }
        self.turn_bytes += len as u64;
        self.chat_bytes += len as u64;
        let heard = self.ms(self.turn_bytes);
        if heard >= self.opts.turn_ms {
            self.turn_bytes = 0;
            self.interims_sent = 0;
            let text = format!("heard {heard} ms");
            if !self.user_message(&text, false, false).await {
                return false;
            }
            return self.respond(format!("{heard} ms of audio")).await;
        }
        if self.verbose && heard / 100 > self.interims_sent {
            self.interims_sent = heard / 100;
            return self
                .user_message(&format!("heard {heard} ms"), true, false)
                .await;
        }
        true
    }

    /// A `user_input`: fault triggers, tool calls, or text the assistant answers.
    async fn on_user_input(&mut self, text: &str) -> Next {
        let words: Vec<&str> = text.split_whitespace().collect();
        let ok = go;
        match words.as_slice() {
            ["error", code, slug, ..] => ok(self.error(code, slug, "injected error").await),
            ["fatal", code, slug, ..] => {
                self.error(code, slug, "injected fatal error").await;
                self.close(1008, "fatal").await;
                Next::End
            }
            ["close", code] => {
                self.close(code.parse().unwrap_or(1011), "closed by the fake")
                    .await;
                Next::End
            }
            ["disconnect"] => Next::End,
            ["silence"] => Next::Silence,
            ["garbage"] => {
                if !self.user_message(text, false, true).await {
                    return Next::End;
                }
                for g in garbage() {
                    let _ = self.ws.send(g).await;
                }
                ok(self.respond("garbage".into()).await)
            }
            ["call", name] => {
                if !self.user_message(text, false, true).await {
                    return Next::End;
                }
                let id = format!("call-{}", self.calls.len() + 1);
                self.calls.push((id.clone(), (*name).to_owned()));
                ok(self
                    .send(
                        json!({"type": "tool_call", "name": name, "parameters": "{}",
                        "tool_call_id": id, "tool_type": "function", "response_required": true}),
                    )
                    .await)
            }
            _ => {
                if !self.user_message(text, false, true).await {
                    return Next::End;
                }
                ok(self.respond(text.to_owned()).await)
            }
        }
    }

    /// One client text message.
    async fn on_text(&mut self, text: &str) -> Next {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            self.record(|s| s.messages.push(Value::String(text.to_owned())));
            return go(self
                .error("E0100", "invalid_json", "Unable to parse message as JSON")
                .await);
        };
        self.record(|s| s.messages.push(v.clone()));
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        match ty {
            "session_settings" => {
                self.record(|s| s.settings.push(v.clone()));
                match check_settings(&v) {
                    Ok(rate) => {
                        if let Some(r) = rate {
                            self.byte_rate = r * 2;
                        }
                        Next::Go
                    }
                    Err(e) => go(self.error("E0101", "invalid_session_settings", &e).await),
                }
            }
            "audio_input" => {
                let Some(audio) = s("data").as_deref().and_then(b64_decode) else {
                    return go(self
                        .error("E0201", "invalid_base64", "data is not base64")
                        .await);
                };
                let n = {
                    let mut n = 0;
                    self.record(|s| {
                        s.audio.extend_from_slice(&audio);
                        s.audio_messages += 1;
                        n = s.audio_messages;
                    });
                    n
                };
                if self.opts.disconnect_after_audio.is_some_and(|a| n >= a) {
                    return Next::End;
                }
                if self.byte_rate == 0 {
                    return go(self
                        .error(
                            "E0202",
                            "no_audio_signal",
                            "no audio could be inferred: send session_settings.audio for linear16",
                        )
                        .await);
                }
                let ok = self.on_audio(audio.len()).await;
                go(ok)
            }
            "user_input" => match s("text") {
                Some(t) => {
                    self.record(|s| s.user_inputs.push(t.clone()));
                    self.on_user_input(&t).await
                }
                None => go(self
                    .error("E0101", "invalid_message", "text required")
                    .await),
            },
            "assistant_input" => match s("text") {
                Some(t) => {
                    let ok = self.respond(t).await;
                    go(ok)
                }
                None => go(self
                    .error("E0101", "invalid_message", "text required")
                    .await),
            },
            "tool_response" | "tool_error" => {
                self.record(|s| s.tool_answers.push(v.clone()));
                let id = s("tool_call_id").unwrap_or_default();
                let Some(pos) = self.calls.iter().position(|(c, _)| *c == id) else {
                    return go(self
                        .error("E0101", "invalid_tool_call_id", "unknown tool_call_id")
                        .await);
                };
                let (_, name) = self.calls.remove(pos);
                let content = if ty == "tool_response" {
                    s("content")
                } else {
                    s("content").or_else(|| s("error"))
                };
                let Some(content) = content else {
                    return go(self
                        .error("E0101", "invalid_message", "content required")
                        .await);
                };
                let ok = self.respond(format!("{name} returned {content}")).await;
                go(ok)
            }
            "pause_assistant_message" => {
                self.record(|s| s.pauses += 1);
                self.paused = true;
                Next::Go
            }
            "resume_assistant_message" => {
                self.record(|s| s.resumes += 1);
                self.paused = false;
                match self.held.take() {
                    Some(t) => {
                        let ok = self.respond(t).await;
                        go(ok)
                    }
                    None => Next::Go,
                }
            }
            _ => go(self
                .error("E0101", "invalid_message", "unknown message type")
                .await),
        }
    }
}

fn go(ok: bool) -> Next {
    if ok {
        Next::Go
    } else {
        Next::End
    }
}

/// `session_settings` checks (`session_settings.py`, `audio_configuration.py`, `tool.py`); the
/// input rate when an `audio` block is present.
fn check_settings(v: &Value) -> Result<Option<u64>, String> {
    let mut rate = None;
    if let Some(a) = v.get("audio").filter(|a| !a.is_null()) {
        if a.get("encoding")
            .is_some_and(|e| e.as_str() != Some("linear16"))
        {
            return Err("audio.encoding must be linear16".into());
        }
        let r = a
            .get("sample_rate")
            .and_then(Value::as_u64)
            .filter(|r| *r > 0)
            .ok_or("audio.sample_rate must be a positive integer")?;
        a.get("channels")
            .and_then(Value::as_u64)
            .filter(|c| *c >= 1)
            .ok_or("audio.channels must be a positive integer")?;
        rate = Some(r);
    }
    for key in [
        "system_prompt",
        "voice_id",
        "custom_session_id",
        "language_model_api_key",
    ] {
        if v.get(key).is_some_and(|x| !x.is_string() && !x.is_null()) {
            return Err(format!("{key} must be a string"));
        }
    }
    if let Some(tools) = v.get("tools").filter(|t| !t.is_null()) {
        let tools = tools.as_array().ok_or("tools must be a list")?;
        for t in tools {
            let ok = t.get("name").is_some_and(Value::is_string)
                && t.get("parameters").is_some_and(Value::is_string)
                && t.get("type").is_some_and(Value::is_string);
            if !ok {
                return Err("every tool needs type, name and parameters (a JSON string)".into());
            }
        }
    }
    if let Some(b) = v.get("builtin_tools").filter(|t| !t.is_null()) {
        let ok = b.as_array().is_some_and(|l| {
            l.iter()
                .all(|t| t.get("name").is_some_and(Value::is_string))
        });
        if !ok {
            return Err("builtin_tools must be a list of {name}".into());
        }
    }
    if let Some(vars) = v.get("variables").filter(|t| !t.is_null()) {
        let ok = vars.as_object().is_some_and(|m| {
            m.values()
                .all(|x| x.is_string() || x.is_number() || x.is_boolean())
        });
        if !ok {
            return Err("variables must map to strings, numbers or booleans".into());
        }
    }
    Ok(rate)
}

/// Malformed server messages a client must survive.
fn garbage() -> Vec<WsMessage> {
    let texts = [
        "{not json",
        "[]",
        "null",
        "42",
        r#"{"type":7}"#,
        r#"{"no_type":true}"#,
        r#"{"type":"mystery","x":1}"#,
        r#"{"type":"user_message"}"#,
        r#"{"type":"user_message","message":{"content":5},"interim":"yes"}"#,
        r#"{"type":"assistant_message","message":null}"#,
        r#"{"type":"audio_output","data":"%%%not base64"}"#,
        r#"{"type":"audio_output","data":12}"#,
        r#"{"type":"audio_output","id":"x","index":0,"data":"UklGRg=="}"#,
        r#"{"type":"tool_call","name":"x"}"#,
        r#"{"type":"error"}"#,
        r#"{"type":"chat_metadata"}"#,
        r#"{"type":"assistant_prosody","models":{}}"#,
        "\u{0}\u{1}",
    ];
    let mut v: Vec<WsMessage> = texts.iter().map(|t| WsMessage::Text((*t).into())).collect();
    v.push(WsMessage::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()));
    v
}

async fn serve(shared: Arc<Shared>, opts: Arc<HumeEviOptions>, req: SeenRequest, ws: FakeSocket) {
    let index = {
        let mut s = lock(&shared.sessions);
        s.push(EviSession {
            request: Some(req.clone()),
            ..EviSession::default()
        });
        s.len() - 1
    };
    let mut c = Conn {
        ws,
        shared,
        opts: opts.clone(),
        index,
        verbose: req.query("verbose_transcription") == Some("true"),
        byte_rate: 0,
        chat_bytes: 0,
        turn_bytes: 0,
        turn_start_ms: 0,
        interims_sent: 0,
        paused: false,
        held: None,
        playing: None,
        responses: 0,
        calls: Vec::new(),
    };
    if opts.silent {
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    }
    if let Some((code, slug, msg)) = &opts.error_instead_of_metadata {
        c.error(code, slug, msg).await;
        c.close(1008, slug).await;
        return;
    }
    let meta = json!({"type": "chat_metadata", "chat_id": format!("chat_{index}"),
        "chat_group_id": format!("cg_{index}"), "request_id": format!("req_{index}")});
    if !c.send(meta).await {
        return;
    }
    if opts.garbage {
        for g in garbage() {
            let _ = c.ws.send(g).await;
        }
    }
    if let Some((code, slug, msg)) = &opts.error_first {
        c.error(code, slug, msg).await;
    }
    let tick = Duration::from_millis(u64::from(opts.chunk_ms.max(1)));
    loop {
        let pacing = opts.paced && c.playing.is_some();
        let msg = tokio::select! {
            m = c.ws.next() => m,
            () = tokio::time::sleep(tick), if pacing => {
                if !c.play_chunk().await {
                    return;
                }
                continue;
            }
        };
        let Some(Ok(msg)) = msg else { return };
        let next = match msg {
            WsMessage::Text(t) => c.on_text(t.as_str()).await,
            WsMessage::Ping(_) => {
                c.record(|s| s.pings += 1);
                Next::Go
            }
            WsMessage::Close(frame) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                c.record(|s| s.client_close = Some(code));
                while let Some(Ok(_)) = c.ws.next().await {}
                return;
            }
            WsMessage::Binary(_) => {
                if c.error("E0101", "invalid_message", "binary frames are not accepted")
                    .await
                {
                    Next::Go
                } else {
                    Next::End
                }
            }
            _ => Next::Go,
        };
        match next {
            Next::Go => {}
            Next::End => return,
            Next::Silence => {
                tokio::time::sleep(Duration::from_secs(120)).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for data in [&b""[..], b"f", b"fo", b"foo", b"foob", b"fooba", b"foobar"] {
            assert_eq!(b64_decode(&b64_encode(data)).as_deref(), Some(data));
        }
        for bad in ["Zg=", "Z===", "Zg==Zg==", "%%%%"] {
            assert_eq!(b64_decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn wav_chunks_have_a_44_byte_header() {
        let w = wav_chunk(0, 10, OUTPUT_RATE);
        assert_eq!(w.len(), 44 + 20);
        assert_eq!(&w[..4], b"RIFF");
        assert_eq!(&w[36..40], b"data");
        assert_eq!(
            u32::from_le_bytes(w[24..28].try_into().unwrap()),
            OUTPUT_RATE
        );
    }

    #[test]
    fn settings_are_checked() {
        assert_eq!(
            check_settings(
                &json!({"audio":{"encoding":"linear16","sample_rate":16000,"channels":1}})
            ),
            Ok(Some(16_000))
        );
        for bad in [
            json!({"audio":{"encoding":"mp3","sample_rate":16000,"channels":1}}),
            json!({"audio":{"sample_rate":"16000","channels":1}}),
            json!({"audio":{"sample_rate":16000}}),
            json!({"tools":[{"type":"function","name":"f","parameters":{}}]}),
            json!({"variables":{"a":[1]}}),
            json!({"voice_id": 5}),
        ] {
            assert!(check_settings(&bad).is_err(), "{bad}");
        }
    }
}
