//! Fake Microsoft Azure Speech recognition service: the WebSocket protocol the Speech SDKs speak
//! (fact sheet §5a; framing and message order as in `microsoft/cognitive-services-speech-sdk-js`,
//! `WebsocketMessageFormatter.ts`, `ServiceRecognizerBase.ts`).
//!
//! What it checks, recording a violation for anything else (tests assert there are none):
//! - the upgrade carries `Ocp-Apim-Subscription-Key` equal to [`AzureFakeConfig::key`]
//!   (otherwise HTTP 401);
//! - every client message has `Path`, a 32-hex-digit `X-RequestId` and an ISO-8601 `X-Timestamp`;
//!   binary messages have a big-endian 2-byte header length;
//! - `speech.config` (JSON) comes first; a turn is `speech.context` (optional), then an `audio`
//!   message with `Content-Type: audio/x-wav` and a 44-byte RIFF/WAVE header, then `audio`
//!   messages without a content type, then one with an empty payload (end of audio); every
//!   message of a turn carries the turn's request id.
//!
//! What it answers, all with the turn's `X-RequestId`: `turn.start` on the WAV header,
//! `speech.startDetected` on the first audio, a `speech.hypothesis` every
//! [`AzureFakeConfig::hypothesis_every_ms`] of audio, a `speech.phrase` at the end of the audio
//! (and every [`AzureFakeConfig::phrase_every_ms`] if set), then `speech.endDetected` and
//! `turn.end`. Transcripts are deterministic: one word of [`AzureFakeConfig::script`] per
//! [`AzureFakeConfig::ms_per_word`] of audio, cycling; an all-zero (silent) segment gives
//! `NoMatch`. The `format` (`simple`/`detailed`) and `wordLevelTimestamps` query parameters are
//! honoured. Offsets are 100-ns ticks relative to the turn's first audio byte, as the service's.
//!
//! Server messages are written `Name:value` without a space after the colon, as captures of the
//! service show (**UNCONFIRMED**: from captures, not a spec); clients must trim.

use super::{FakeSocket, Reject, SeenRequest, WsFake, WsMessage};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Ticks (100 ns) per millisecond.
const TICKS_PER_MS: u64 = 10_000;

/// A fault to inject.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AzureFault {
    /// Behave.
    #[default]
    None,
    /// After `after_bytes` of PCM on a connection, send a `speech.phrase` with this
    /// `RecognitionStatus` (`Error`, `TooManyRequests`, `BadRequest`, `Forbidden`, …).
    Status {
        /// PCM bytes to wait for.
        after_bytes: usize,
        /// The status string.
        status: String,
    },
    /// After `after_bytes` of PCM, close with `code` and `reason`.
    Close {
        /// PCM bytes to wait for.
        after_bytes: usize,
        /// Close code.
        code: u16,
        /// Close reason.
        reason: String,
    },
    /// After `after_bytes` of PCM, drop the TCP connection without a closing handshake.
    Disconnect {
        /// PCM bytes to wait for.
        after_bytes: usize,
    },
    /// At every `turn.start`, also send malformed and foreign messages (no headers, bad JSON,
    /// unknown paths and statuses, another request id, binary junk, a 200 KB body).
    Garbage,
    /// At the first audio, send one text message of `bytes` bytes.
    Huge {
        /// Size of the message.
        bytes: usize,
    },
    /// Read and record everything, answer nothing (pongs still go out).
    Silent,
    /// Stop reading the socket after `speech.config`: no answers, no pongs.
    Hang,
}

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct AzureFakeConfig {
    /// The subscription key the upgrade must carry.
    pub key: String,
    /// Reject every upgrade with this HTTP status (after the key check).
    pub reject_status: Option<u16>,
    /// A `Retry-After` header (seconds) on that rejection.
    pub reject_retry_after: Option<u64>,
    /// Words transcripts are made of, cycling.
    pub script: Vec<String>,
    /// Audio per word.
    pub ms_per_word: u32,
    /// Audio between hypotheses (0: none).
    pub hypothesis_every_ms: u32,
    /// End a phrase after this much audio, not only at the end of the audio.
    pub phrase_every_ms: Option<u32>,
    /// `NBest[0].Confidence` and per-word confidence.
    pub confidence: f64,
    /// `SpeakerId` on phrases and hypotheses.
    pub speaker: Option<String>,
    /// `PrimaryLanguage.Language` on phrases.
    pub language: Option<String>,
    /// Close the socket with this code after every `turn.end` (1000: an idle connection ended).
    pub close_after_turn: Option<u16>,
    /// The fault to inject.
    pub fault: AzureFault,
}

impl Default for AzureFakeConfig {
    fn default() -> Self {
        Self {
            key: "azure-test-key".into(),
            reject_status: None,
            reject_retry_after: None,
            script: ["hello", "world", "from", "the", "azure", "fake"]
                .map(String::from)
                .to_vec(),
            ms_per_word: 100,
            hypothesis_every_ms: 100,
            phrase_every_ms: None,
            confidence: 0.9,
            speaker: None,
            language: None,
            close_after_turn: None,
            fault: AzureFault::None,
        }
    }
}

/// One message a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureMessage {
    /// Whether it was a binary frame.
    pub binary: bool,
    /// Header names (as sent) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (text) or payload (binary).
    pub body: Vec<u8>,
    /// The whole frame as received.
    pub raw: Vec<u8>,
}

impl AzureMessage {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `Path` header, or empty.
    pub fn path(&self) -> &str {
        self.header("Path").unwrap_or("")
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One turn as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AzureTurn {
    /// The turn's `X-RequestId`.
    pub request_id: String,
    /// The `audio/x-wav` payload.
    pub wav_header: Vec<u8>,
    /// The PCM that followed, concatenated.
    pub audio: Vec<u8>,
    /// Whether the client sent the end of audio.
    pub ended: bool,
}

/// One connection as the fake saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureConnection {
    /// The upgrade request.
    pub request: SeenRequest,
    /// Every text and binary message, in order.
    pub messages: Vec<AzureMessage>,
    /// Turns, in order.
    pub turns: Vec<AzureTurn>,
    /// WebSocket pings received.
    pub pings: usize,
    /// Protocol violations found.
    pub violations: Vec<String>,
    /// Whether the client sent a close frame, and its code.
    pub close_code: Option<u16>,
}

type Log = Arc<Mutex<Vec<AzureConnection>>>;

/// The fake service. Stops when dropped.
#[derive(Debug)]
pub struct AzureFake {
    ws: WsFake,
    log: Log,
}

impl AzureFake {
    /// Starts a fake on 127.0.0.1 with `config`.
    pub async fn start(config: AzureFakeConfig) -> Self {
        let log: Log = Arc::default();
        let config = Arc::new(config);
        let accept_cfg = config.clone();
        let log2 = log.clone();
        let ws = WsFake::start_with(
            move |req: &SeenRequest| {
                if req.header("ocp-apim-subscription-key") != Some(accept_cfg.key.as_str()) {
                    return Err(Reject::status(401));
                }
                let Some(status) = accept_cfg.reject_status else {
                    return Ok(());
                };
                let mut r = Reject::status(status);
                if let Some(secs) = accept_cfg.reject_retry_after {
                    r = r.header("Retry-After", secs.to_string());
                }
                Err(r)
            },
            move |req, socket| {
                let (config, log) = (config.clone(), log2.clone());
                async move { serve(req, socket, config, log).await }
            },
        )
        .await;
        Self { ws, log }
    }

    /// `ws://127.0.0.1:port`, the `base_url` to configure the plugin with.
    pub fn base_url(&self) -> String {
        self.ws.base_url()
    }

    /// Every upgrade request, accepted or not.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.ws.requests()
    }

    /// Every accepted connection so far.
    pub fn connections(&self) -> Vec<AzureConnection> {
        self.log.lock().expect("azure fake log").clone()
    }

    /// Every violation on every connection.
    pub fn violations(&self) -> Vec<String> {
        self.connections()
            .into_iter()
            .flat_map(|c| c.violations)
            .collect()
    }
}

/// Parses `Name: value` lines as the SDK does (split at the first colon, trim both).
fn parse_headers(block: &str) -> Vec<(String, String)> {
    block
        .split(['\r', '\n'])
        .filter(|l| !l.is_empty())
        .filter_map(|l| {
            let (n, v) = l.split_once(':')?;
            Some((n.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn is_request_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_timestamp(s: &str) -> bool {
    // 2024-05-01T10:00:00.123Z
    let b = s.as_bytes();
    b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z'
}

/// A server text message: headers without a space after the colon, a blank line, the body.
fn server_message(path: &str, request_id: &str, body: &str) -> WsMessage {
    WsMessage::text(format!(
        "X-RequestId:{request_id}\r\nContent-Type:application/json; charset=utf-8\r\nPath:{path}\r\n\r\n{body}"
    ))
}

/// The state of the turn in progress.
#[derive(Debug, Default)]
struct TurnState {
    id: String,
    bytes_per_ms: u64,
    /// PCM bytes received in the turn.
    received: u64,
    /// Where the current segment starts (bytes into the turn).
    segment_start: u64,
    /// Whether the segment has a non-zero sample.
    segment_voiced: bool,
    next_hypothesis: u64,
    started: bool,
    wav_seen: bool,
    ended: bool,
}

struct Conn {
    config: Arc<AzureFakeConfig>,
    log: Log,
    index: usize,
    format_detailed: bool,
    words_on: bool,
    turn: Option<TurnState>,
    /// Words used so far on this connection (the script cycles across segments).
    word_cursor: usize,
    /// PCM bytes on the connection (for faults).
    pcm_total: usize,
    huge_sent: bool,
    fault_fired: bool,
}

enum Next {
    Continue,
    Stop,
}

async fn serve(req: SeenRequest, mut ws: FakeSocket, config: Arc<AzureFakeConfig>, log: Log) {
    let index = {
        let mut l = log.lock().expect("azure fake log");
        l.push(AzureConnection {
            request: req.clone(),
            messages: Vec::new(),
            turns: Vec::new(),
            pings: 0,
            violations: Vec::new(),
            close_code: None,
        });
        l.len() - 1
    };
    let mut c = Conn {
        format_detailed: req.query("format") == Some("detailed"),
        words_on: req.query("wordLevelTimestamps") == Some("true"),
        config,
        log,
        index,
        turn: None,
        word_cursor: 0,
        pcm_total: 0,
        huge_sent: false,
        fault_fired: false,
    };
    let mut first = true;
    while let Some(frame) = ws.next().await {
        let Ok(frame) = frame else { return };
        let next = match frame {
            WsMessage::Ping(_) => {
                c.with(|r| r.pings += 1);
                // Answer now (tungstenite queues the pong until the next write or flush).
                let _ = ws.flush().await;
                Next::Continue
            }
            WsMessage::Close(f) => {
                c.with(|r| r.close_code = Some(f.as_ref().map_or(1005, |f| u16::from(f.code))));
                let _ = ws.flush().await;
                Next::Stop
            }
            WsMessage::Text(t) => c.text(t.as_str(), &mut first).await,
            WsMessage::Binary(b) => c.binary(&mut ws, b, &mut first).await,
            _ => Next::Continue,
        };
        if matches!(next, Next::Stop) {
            return;
        }
        if matches!(c.config.fault, AzureFault::Hang) && !first {
            // Never read again; hold the socket open until the client gives up.
            std::future::pending::<()>().await;
        }
    }
}

impl Conn {
    fn with<R>(&self, f: impl FnOnce(&mut AzureConnection) -> R) -> R {
        let mut l = self.log.lock().expect("azure fake log");
        f(&mut l[self.index])
    }

    fn violation(&self, what: String) {
        self.with(|r| r.violations.push(what));
    }

    fn record(&self, msg: AzureMessage) {
        self.with(|r| r.messages.push(msg));
    }

    fn check_common(&self, m: &AzureMessage) {
        let path = m.path().to_owned();
        if path.is_empty() {
            self.violation("a message without Path".into());
        }
        match m.header("X-RequestId") {
            Some(id) if is_request_id(id) => {}
            other => self.violation(format!("{path}: bad X-RequestId {other:?}")),
        }
        match m.header("X-Timestamp") {
            Some(ts) if is_timestamp(ts) => {}
            other => self.violation(format!("{path}: bad X-Timestamp {other:?}")),
        }
    }

    fn silent(&self) -> bool {
        matches!(self.config.fault, AzureFault::Silent | AzureFault::Hang)
    }

    async fn send(&self, ws: &mut FakeSocket, path: &str, body: &str) -> bool {
        if self.silent() {
            return true;
        }
        let id = self.turn.as_ref().map_or("", |t| t.id.as_str());
        ws.send(server_message(path, id, body)).await.is_ok()
    }

    async fn text(&mut self, text: &str, first: &mut bool) -> Next {
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let m = AzureMessage {
            binary: false,
            headers: parse_headers(head),
            body: body.as_bytes().to_vec(),
            raw: text.as_bytes().to_vec(),
        };
        self.check_common(&m);
        let path = m.path().to_ascii_lowercase();
        let id = m.header("X-RequestId").unwrap_or("").to_owned();
        let json_ok = serde_json::from_str::<Value>(body).is_ok();
        let json_ct = m
            .header("Content-Type")
            .is_some_and(|ct| ct.starts_with("application/json"));
        if std::mem::replace(first, false) && path != "speech.config" {
            self.violation(format!("first message is {path:?}, not speech.config"));
        }
        match path.as_str() {
            "speech.config" | "speech.context" => {
                if !json_ok || !json_ct {
                    self.violation(format!(
                        "{path}: not a JSON body with Content-Type application/json"
                    ));
                }
                if path == "speech.context" {
                    if let Some(t) = &self.turn {
                        if !t.ended {
                            self.violation("speech.context inside an open turn".into());
                        }
                    }
                    self.turn = Some(TurnState {
                        id,
                        ..TurnState::default()
                    });
                }
            }
            "telemetry" => {}
            other => self.violation(format!("unexpected text message {other:?}")),
        }
        self.record(m);
        Next::Continue
    }

    async fn binary(&mut self, ws: &mut FakeSocket, data: Bytes, first: &mut bool) -> Next {
        if std::mem::replace(first, false) {
            self.violation("first message is binary, not speech.config".into());
        }
        let parsed = (data.len() >= 2)
            .then(|| usize::from(u16::from_be_bytes([data[0], data[1]])))
            .and_then(|n| {
                let head = std::str::from_utf8(data.get(2..2 + n)?).ok()?;
                Some((
                    parse_headers(head),
                    data[2 + n..].to_vec(),
                    head.ends_with("\r\n"),
                ))
            });
        let Some((headers, payload, crlf)) = parsed else {
            self.violation("binary message with a bad header length".into());
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::Invalid,
                    reason: "Invalid binary message format".into(),
                }))
                .await;
            return Next::Stop;
        };
        let m = AzureMessage {
            binary: true,
            headers,
            body: payload,
            raw: data.to_vec(),
        };
        self.check_common(&m);
        if !crlf {
            self.violation("binary headers do not end in CRLF".into());
        }
        if !m.path().eq_ignore_ascii_case("audio") {
            self.violation(format!("unexpected binary message {:?}", m.path()));
            self.record(m);
            return Next::Continue;
        }
        let id = m.header("X-RequestId").unwrap_or("").to_owned();
        let wav = m.header("Content-Type") == Some("audio/x-wav");
        let payload = m.body.clone();
        self.record(m);
        if self.turn.as_ref().is_some_and(|t| t.ended && t.id == id) {
            self.violation("audio after the end of audio".into());
            return Next::Continue;
        }
        // A WAV header without a preceding speech.context still opens a turn.
        if self.turn.as_ref().is_none_or(|t| t.ended || t.id != id) {
            if self.turn.as_ref().is_some_and(|t| !t.ended) {
                self.violation(format!("audio for request {id} inside another open turn"));
            }
            self.turn = Some(TurnState {
                id: id.clone(),
                ..TurnState::default()
            });
        }
        let wav_seen = self.turn.as_ref().is_some_and(|t| t.wav_seen);
        if wav {
            if wav_seen {
                self.violation("a second audio/x-wav message in one turn".into());
            }
            if let Some(t) = self.turn.as_mut() {
                t.wav_seen = true;
            }
            return self.wav_header(ws, &id, &payload).await;
        }
        if !wav_seen {
            self.violation("a turn's first audio message is not audio/x-wav".into());
            return Next::Continue;
        }
        if payload.is_empty() {
            return self.end_of_audio(ws).await;
        }
        self.pcm(ws, &payload).await
    }

    async fn wav_header(&mut self, ws: &mut FakeSocket, id: &str, h: &[u8]) -> Next {
        let ok = h.len() == 44
            && &h[0..4] == b"RIFF"
            && &h[8..16] == b"WAVEfmt "
            && &h[36..40] == b"data";
        if !ok {
            self.violation(format!("bad WAV header ({} bytes)", h.len()));
        }
        let (rate, channels, bits) = if h.len() >= 36 {
            (
                u32::from_le_bytes([h[24], h[25], h[26], h[27]]),
                u16::from_le_bytes([h[22], h[23]]),
                u16::from_le_bytes([h[34], h[35]]),
            )
        } else {
            (16_000, 1, 16)
        };
        let bytes_per_ms =
            (u64::from(rate) * u64::from(channels) * u64::from(bits / 8) / 1000).max(1);
        if let Some(t) = self.turn.as_mut() {
            t.bytes_per_ms = bytes_per_ms;
        }
        self.with(|r| {
            r.turns.push(AzureTurn {
                request_id: id.to_owned(),
                wav_header: h.to_vec(),
                ..AzureTurn::default()
            })
        });
        // `turn.start` body: `{context:{serviceTag}}` (`ServiceRecognizerBase`, turn.start case).
        let tag = format!("{:032X}", self.index as u128 + 0x7B33_613B);
        if !self
            .send(
                ws,
                "turn.start",
                &json!({"context": {"serviceTag": tag}}).to_string(),
            )
            .await
        {
            return Next::Stop;
        }
        if matches!(self.config.fault, AzureFault::Garbage) {
            self.garbage(ws).await;
        }
        Next::Continue
    }

    async fn garbage(&self, ws: &mut FakeSocket) {
        let id = self.turn.as_ref().map_or(String::new(), |t| t.id.clone());
        let junk = [
            WsMessage::text("no headers at all"),
            WsMessage::text(""),
            server_message("speech.phrase", &id, "{not json"),
            server_message("speech.hypothesis", &id, r#"{"Text":42}"#),
            server_message("speech.phrase", &id, r#"{"RecognitionStatus":"Weird","DisplayText":"x"}"#),
            server_message("speech.phrase", &id, r#"{"RecognitionStatus":"Success","NBest":[{"Confidence":"high","Words":7}]}"#),
            server_message("speech.unknown", &id, "{}"),
            server_message(
                "speech.phrase",
                "0123456789ABCDEF0123456789ABCDEF",
                r#"{"RecognitionStatus":"Success","DisplayText":"other turn","NBest":[{"Display":"other turn"}]}"#,
            ),
            WsMessage::text("Path:speech.phrase\r\n\r\n{\"RecognitionStatus\":\"Success\",\"DisplayText\":\"no id\"}"),
            WsMessage::binary(Bytes::from_static(&[0xff, 0xff, 1, 2, 3])),
            WsMessage::binary(Bytes::new()),
            server_message("speech.phrase", &id, &format!("[\"{}\"]", "x".repeat(200_000))),
        ];
        for m in junk {
            if ws.send(m).await.is_err() {
                return;
            }
        }
    }

    /// The words of the next `n` positions of the script.
    fn words(&self, n: usize) -> Vec<String> {
        let script = &self.config.script;
        if script.is_empty() {
            return vec!["word".to_owned(); n];
        }
        (0..n)
            .map(|i| script[(self.word_cursor + i) % script.len()].clone())
            .collect()
    }

    async fn pcm(&mut self, ws: &mut FakeSocket, pcm: &[u8]) -> Next {
        self.with(|r| {
            if let Some(t) = r.turns.last_mut() {
                t.audio.extend_from_slice(pcm);
            }
        });
        self.pcm_total += pcm.len();
        if let Some(next) = self.fault_after_audio(ws).await {
            return next;
        }
        let Some(turn) = self.turn.as_mut() else {
            return Next::Continue;
        };
        turn.received += pcm.len() as u64;
        turn.segment_voiced |= pcm.iter().any(|&b| b != 0);
        let first = !std::mem::replace(&mut turn.started, true);
        if first {
            let offset = turn.segment_start / turn.bytes_per_ms * TICKS_PER_MS;
            if !self
                .send(
                    ws,
                    "speech.startDetected",
                    &json!({"Offset": offset}).to_string(),
                )
                .await
            {
                return Next::Stop;
            }
            if let AzureFault::Huge { bytes } = self.config.fault {
                if !std::mem::replace(&mut self.huge_sent, true) {
                    let body = format!("\"{}\"", "y".repeat(bytes));
                    if !self.send(ws, "speech.hypothesis", &body).await {
                        return Next::Stop;
                    }
                }
            }
        }
        // Hypotheses every `hypothesis_every_ms` of the segment's audio.
        let hyp_ms = u64::from(self.config.hypothesis_every_ms);
        while let Some(t) = self.turn.as_mut() {
            let seg = t.received - t.segment_start;
            if hyp_ms == 0 {
                break;
            }
            if t.next_hypothesis == 0 {
                t.next_hypothesis = hyp_ms * t.bytes_per_ms;
            }
            if seg < t.next_hypothesis || !t.segment_voiced {
                break;
            }
            t.next_hypothesis += hyp_ms * t.bytes_per_ms;
            let (start, bpm) = (t.segment_start, t.bytes_per_ms);
            let n = self.word_count(seg, bpm);
            let text = self.words(n).join(" ");
            let mut body = json!({
                "Text": text,
                "Offset": start / bpm * TICKS_PER_MS,
                "Duration": seg / bpm * TICKS_PER_MS,
            });
            if let Some(s) = &self.config.speaker {
                body["SpeakerId"] = json!(s);
            }
            if !self.send(ws, "speech.hypothesis", &body.to_string()).await {
                return Next::Stop;
            }
        }
        // A phrase every `phrase_every_ms`, if set.
        if let (Some(every), Some(t)) = (self.config.phrase_every_ms, self.turn.as_ref()) {
            if t.received - t.segment_start >= u64::from(every) * t.bytes_per_ms
                && !self.phrase(ws).await
            {
                return Next::Stop;
            }
        }
        Next::Continue
    }

    fn word_count(&self, seg_bytes: u64, bytes_per_ms: u64) -> usize {
        let ms = seg_bytes / bytes_per_ms.max(1);
        let per = u64::from(self.config.ms_per_word.max(1));
        usize::try_from(ms.div_ceil(per).clamp(1, 10_000)).unwrap_or(1)
    }

    /// Sends the `speech.phrase` for the current segment and starts the next one.
    async fn phrase(&mut self, ws: &mut FakeSocket) -> bool {
        let Some(t) = self.turn.as_ref() else {
            return true;
        };
        let (start, end, bpm, voiced) = (
            t.segment_start,
            t.received,
            t.bytes_per_ms,
            t.segment_voiced,
        );
        if end == start {
            return true;
        }
        let offset = start / bpm * TICKS_PER_MS;
        let duration = (end - start) / bpm * TICKS_PER_MS;
        let body = if voiced {
            let n = self.word_count(end - start, bpm);
            let words = self.words(n);
            self.word_cursor += n;
            let lexical = words.join(" ");
            let mut display: String = lexical.clone();
            if let Some(c) = display.get_mut(0..1) {
                c.make_ascii_uppercase();
            }
            display.push('.');
            let mut body = if self.format_detailed {
                let mut best = json!({
                    "Confidence": self.config.confidence,
                    "Lexical": lexical,
                    "ITN": lexical,
                    "MaskedITN": lexical,
                    "Display": display,
                });
                if self.words_on {
                    let per = u64::from(self.config.ms_per_word.max(1)) * TICKS_PER_MS;
                    let list: Vec<Value> = words
                        .iter()
                        .enumerate()
                        .map(|(i, w)| {
                            json!({
                                "Word": w,
                                "Offset": offset + i as u64 * per,
                                "Duration": per,
                                "Confidence": self.config.confidence,
                            })
                        })
                        .collect();
                    best["Words"] = json!(list);
                }
                json!({
                    "RecognitionStatus": "Success",
                    "Offset": offset,
                    "Duration": duration,
                    "NBest": [best],
                    "DisplayText": display,
                })
            } else {
                json!({
                    "RecognitionStatus": "Success",
                    "DisplayText": display,
                    "Offset": offset,
                    "Duration": duration,
                })
            };
            if let Some(s) = &self.config.speaker {
                body["SpeakerId"] = json!(s);
            }
            if let Some(l) = &self.config.language {
                body["PrimaryLanguage"] = json!({"Language": l, "Confidence": "High"});
            }
            body
        } else {
            json!({"RecognitionStatus": "NoMatch", "Offset": offset, "Duration": duration})
        };
        if let Some(t) = self.turn.as_mut() {
            t.segment_start = t.received;
            t.segment_voiced = false;
            t.next_hypothesis = 0;
        }
        self.send(ws, "speech.phrase", &body.to_string()).await
    }

    async fn end_of_audio(&mut self, ws: &mut FakeSocket) -> Next {
        self.with(|r| {
            if let Some(t) = r.turns.last_mut() {
                t.ended = true;
            }
        });
        if !self.phrase(ws).await {
            return Next::Stop;
        }
        let Some(t) = self.turn.as_mut() else {
            return Next::Continue;
        };
        t.ended = true;
        let end = t.received / t.bytes_per_ms.max(1) * TICKS_PER_MS;
        if !self
            .send(
                ws,
                "speech.endDetected",
                &json!({"Offset": end}).to_string(),
            )
            .await
            || !self.send(ws, "turn.end", "{}").await
        {
            return Next::Stop;
        }
        if let Some(code) = self.config.close_after_turn {
            let _ = ws
                .close(Some(CloseFrame {
                    code: CloseCode::from(code),
                    reason: "idle".into(),
                }))
                .await;
            // Let the client answer the close; then the connection ends.
            while let Some(Ok(m)) = ws.next().await {
                if let WsMessage::Close(f) = m {
                    self.with(|r| {
                        r.close_code = Some(f.as_ref().map_or(1005, |f| u16::from(f.code)))
                    });
                }
            }
            return Next::Stop;
        }
        Next::Continue
    }

    async fn fault_after_audio(&mut self, ws: &mut FakeSocket) -> Option<Next> {
        if self.fault_fired {
            return None;
        }
        let due = match &self.config.fault {
            AzureFault::Status { after_bytes, .. }
            | AzureFault::Close { after_bytes, .. }
            | AzureFault::Disconnect { after_bytes } => self.pcm_total >= *after_bytes,
            _ => false,
        };
        if !due {
            return None;
        }
        self.fault_fired = true;
        match self.config.fault.clone() {
            AzureFault::Status { status, .. } => {
                let body = json!({"RecognitionStatus": status, "Offset": 0, "Duration": 0});
                self.send(ws, "speech.phrase", &body.to_string()).await;
                // The service ends the turn after a failed phrase (UNCONFIRMED; the SDK cancels
                // on the phrase alone).
                self.send(ws, "turn.end", "{}").await;
                if let Some(t) = self.turn.as_mut() {
                    t.ended = true;
                }
                Some(Next::Continue)
            }
            AzureFault::Close { code, reason, .. } => {
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::from(code),
                        reason: reason.into(),
                    }))
                    .await;
                while let Some(Ok(_)) = ws.next().await {}
                Some(Next::Stop)
            }
            AzureFault::Disconnect { .. } => Some(Next::Stop),
            _ => None,
        }
    }
}
