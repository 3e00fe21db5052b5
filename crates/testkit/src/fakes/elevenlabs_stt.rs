//! Fake ElevenLabs realtime speech-to-text (Scribe v2 Realtime, `/v1/speech-to-text/realtime`)
//! on 127.0.0.1.
//!
//! It follows the protocol as the vendor's SDK speaks it (`elevenlabs/elevenlabs-python`
//! `realtime/scribe.py`, `realtime/connection.py`, and the Fern types under `types/`;
//! STT_PROTOCOLS.md §3 and Appendix A):
//!
//! - auth: header `xi-api-key` (or `?token=` with [`ElevenLabsSttOptions::token`]); a bad key
//!   is refused per [`AuthFailure`];
//! - `session_started` first, echoing the query as its `config`;
//! - client text frames `{"message_type":"input_audio_chunk","audio_base_64",…,"commit",
//!   "sample_rate"}`: audio is base64-decoded and recorded; a `sample_rate` that differs from
//!   `audio_format`'s, bad base64, bad JSON or another `message_type` get an `input_error` and a
//!   close (1008);
//! - `partial_transcript` after every started 100 ms of a segment's audio;
//! - `commit: true` (or, with `commit_strategy=vad`, [`ElevenLabsSttOptions::vad_commit_after_ms`]
//!   of segment audio) ends the segment: `committed_transcript`, then with
//!   `include_timestamps=true` `committed_transcript_with_timestamps`;
//! - errors are a JSON message followed by a close; the client's close ends the session.
//!
//! Transcripts are deterministic: one word per started 100 ms of a segment's audio, `w1 w2 …`;
//! the committed text is `w1 w2 ….` with timestamped words (`word`, `spacing`, `punctuation`
//! entries, seconds from the stream start, word `i` spanning `[segment start + 0.1·i, +0.08]`,
//! `logprob` -0.1, `speaker_id` `speaker_0`).

use super::{FakeSocket, Reject, SeenRequest, WsFake, WsMessage};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How a bad key is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// Refuse the upgrade with this HTTP status (e.g. 401).
    Http(u16),
    /// Accept the upgrade, send `{"message_type":"auth_error","error":…}`, then close 1008.
    Message,
}

/// Behaviour and fault knobs of the fake.
#[derive(Debug, Clone)]
pub struct ElevenLabsSttOptions {
    /// The one valid API key.
    pub api_key: String,
    /// A single-use token accepted once as `?token=`, if any.
    pub token: Option<String>,
    /// How a missing or wrong key is refused.
    pub auth_failure: AuthFailure,
    /// Refuse every upgrade with this response (429 with `retry-after`, 503…), whatever the key.
    pub reject: Option<Reject>,
    /// After this many audio chunks, send `{"message_type":t,"error":text}` and close with
    /// code `c`: `(after, t, text, c)`.
    pub error_after: Option<(usize, String, String, u16)>,
    /// After this many audio chunks, close with this code (no message).
    pub close_after: Option<(usize, u16)>,
    /// After this many audio chunks, drop the TCP connection without a close frame.
    pub disconnect_after: Option<usize>,
    /// Accept the upgrade, then never send (not even `session_started`) nor read.
    pub silent: bool,
    /// After this many audio chunks, stop reading and sending (pings go unanswered).
    pub silent_after: Option<usize>,
    /// Read everything but never answer a commit.
    pub ignore_commit: bool,
    /// Answer a commit with `commit_throttled` instead of a transcript.
    pub throttle_commits: bool,
    /// Right after `session_started`, send malformed messages (bad JSON, unknown types, wrong
    /// field types, a binary frame).
    pub garbage: bool,
    /// Right after `session_started`, send one text message of this many bytes.
    pub huge_message: Option<usize>,
    /// With `commit_strategy=vad`: commit a segment by itself after this much audio.
    pub vad_commit_after_ms: Option<u64>,
    /// With `include_timestamps=true`, never send the timestamped copy.
    pub drop_timestamps: bool,
}

impl Default for ElevenLabsSttOptions {
    fn default() -> Self {
        Self {
            api_key: "test-elevenlabs-key".into(),
            token: None,
            auth_failure: AuthFailure::Message,
            reject: None,
            error_after: None,
            close_after: None,
            disconnect_after: None,
            silent: false,
            silent_after: None,
            ignore_commit: false,
            throttle_commits: false,
            garbage: false,
            huge_message: None,
            vad_commit_after_ms: None,
            drop_timestamps: false,
        }
    }
}

/// What the fake saw on one accepted connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FakeSession {
    /// The upgrade request.
    pub request: Option<SeenRequest>,
    /// Every decoded audio byte, in order.
    pub audio: Vec<u8>,
    /// Decoded size of each audio chunk.
    pub chunk_sizes: Vec<usize>,
    /// Every text message from the client, raw.
    pub texts: Vec<String>,
    /// How many commits arrived.
    pub commits: usize,
    /// `previous_text` values, with the index of the chunk that carried each.
    pub previous_texts: Vec<(usize, String)>,
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
    /// Whether the single-use token was used.
    token_used: Mutex<bool>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running fake.
#[derive(Debug)]
pub struct ElevenLabsSttFake {
    ws: WsFake,
    shared: Arc<Shared>,
}

impl ElevenLabsSttFake {
    /// Starts the server on a free 127.0.0.1 port.
    pub async fn start(options: ElevenLabsSttOptions) -> Self {
        let shared = Arc::new(Shared::default());
        let opts = Arc::new(options);
        let (s1, o1) = (shared.clone(), opts.clone());
        let accept = move |req: &SeenRequest| {
            if let Some(r) = &o1.reject {
                return Err(r.clone());
            }
            let header_ok = req.header("xi-api-key") == Some(o1.api_key.as_str());
            let token_ok = !header_ok
                && o1.token.as_deref().is_some_and(|t| {
                    let mut used = lock(&s1.token_used);
                    let ok = !*used && req.query("token") == Some(t);
                    *used |= ok;
                    ok
                });
            let ok = header_ok || token_ok;
            match (ok, o1.auth_failure) {
                (false, AuthFailure::Http(status)) => Err(Reject::status(status).body(
                    r#"{"detail":{"status":"invalid_api_key","message":"Invalid API key"}}"#,
                )),
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

/// Decodes standard base64 with padding (RFC 4648 §4); `None` for anything else.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, q) in b.chunks(4).enumerate() {
        let last = i + 1 == b.len() / 4;
        let pad = q.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &q[..4 - pad] {
            n = n << 6 | val(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Per-connection protocol state.
struct Conn {
    ws: FakeSocket,
    shared: Arc<Shared>,
    index: usize,
    /// Bytes per second of audio.
    byte_rate: u64,
    rate: u64,
    vad: bool,
    timestamps: bool,
    language: String,
    segment_bytes: u64,
    segment_start_ms: u64,
    stream_bytes: u64,
    words_sent: u64,
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

    /// An error message, then a close (STT_PROTOCOLS.md §3: "An error message is sent before
    /// the server closes the socket").
    async fn fail(&mut self, message_type: &str, error: &str, code: u16) {
        self.send(json!({"message_type": message_type, "error": error}))
            .await;
        self.close(code, error).await;
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
            let p = json!({"message_type": "partial_transcript", "text": Self::text(count)});
            if !self.send(p).await {
                return false;
            }
        }
        true
    }

    /// Ends the segment: `committed_transcript`, then the timestamped copy when asked for.
    async fn commit(&mut self, drop_timestamps: bool) -> bool {
        let count = self.ms(self.segment_bytes).div_ceil(100);
        let mut text = Self::text(count);
        if count > 0 {
            text.push('.');
        }
        if !self
            .send(json!({"message_type": "committed_transcript", "text": text}))
            .await
        {
            return false;
        }
        if self.timestamps && !drop_timestamps {
            let start = self.segment_start_ms as f64 / 1000.0;
            let mut words = Vec::new();
            for i in 0..count {
                let s = start + 0.1 * i as f64;
                if i > 0 {
                    words.push(json!({"text": " ", "start": s, "end": s, "type": "spacing"}));
                }
                words.push(
                    json!({"text": format!("w{}", i + 1), "start": s, "end": s + 0.08,
                    "type": "word", "logprob": -0.1, "speaker_id": "speaker_0"}),
                );
            }
            if count > 0 {
                let e = start + 0.1 * (count - 1) as f64 + 0.08;
                words.push(json!({"text": ".", "start": e, "end": e, "type": "punctuation"}));
            }
            let m = json!({"message_type": "committed_transcript_with_timestamps", "text": text,
                "language_code": self.language, "words": words});
            if !self.send(m).await {
                return false;
            }
        }
        self.segment_bytes = 0;
        self.words_sent = 0;
        true
    }
}

/// The sample rate an `audio_format` names (`pcm_16000` → 16000), and its bytes per sample.
fn format_rate(f: &str) -> Option<(u64, u64)> {
    match f {
        "ulaw_8000" => Some((8_000, 1)),
        _ => {
            let r: u64 = f.strip_prefix("pcm_")?.parse().ok()?;
            [8_000, 16_000, 22_050, 24_000, 44_100, 48_000]
                .contains(&r)
                .then_some((r, 2))
        }
    }
}

async fn serve(
    shared: Arc<Shared>,
    opts: Arc<ElevenLabsSttOptions>,
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
    let format = req.query("audio_format").unwrap_or("pcm_16000").to_owned();
    let (rate, sample_bytes) = format_rate(&format).unwrap_or((0, 2));
    let mut c = Conn {
        ws,
        shared,
        index,
        byte_rate: rate * sample_bytes,
        rate,
        vad: req.query("commit_strategy") == Some("vad"),
        timestamps: req.query("include_timestamps") == Some("true"),
        language: req.query("language_code").unwrap_or("en").to_owned(),
        segment_bytes: 0,
        segment_start_ms: 0,
        stream_bytes: 0,
        words_sent: 0,
    };
    if !authorized {
        c.fail("auth_error", "Invalid API key", 1008).await;
        return;
    }
    if opts.silent {
        tokio::time::sleep(Duration::from_secs(120)).await;
        return;
    }
    if req.query("model_id").is_none() || rate == 0 {
        c.fail(
            "invalid_request",
            "model_id and a valid audio_format are required",
            1008,
        )
        .await;
        return;
    }
    let mut config = Map::new();
    for key in [
        "model_id",
        "audio_format",
        "commit_strategy",
        "language_code",
        "include_timestamps",
    ] {
        if let Some(v) = req.query(key) {
            config.insert(key.into(), Value::from(v));
        }
    }
    config.insert("sample_rate".into(), Value::from(rate));
    let started = json!({"message_type": "session_started",
        "session_id": format!("fake-session-{index}"), "config": config});
    if !c.send(started).await {
        return;
    }
    if opts.garbage {
        for g in [
            "{not json",
            "[]",
            "null",
            r#"{"message_type":"mystery","x":1}"#,
            r#"{"message_type":5}"#,
            r#"{"message_type":"partial_transcript","text":7}"#,
            r#"{"message_type":"committed_transcript_with_timestamps","text":"x","words":"none"}"#,
            r#"{"message_type":"final_transcript","text":"ignored"}"#,
            r#"{"message_type":"session_started"}"#,
            "\u{0}\u{1}garbage",
        ] {
            let _ = c.ws.send(WsMessage::Text(g.into())).await;
        }
        let _ = c.ws.send(WsMessage::Binary(vec![0xde, 0xad].into())).await;
    }
    if let Some(n) = opts.huge_message {
        let huge = format!(
            r#"{{"message_type":"partial_transcript","text":"{}"}}"#,
            "x".repeat(n)
        );
        let _ = c.ws.send(WsMessage::Text(huge.into())).await;
    }
    let mut chunks = 0usize;
    while let Some(msg) = c.ws.next().await {
        let Ok(msg) = msg else { return };
        let text = match msg {
            WsMessage::Text(t) => t.to_string(),
            WsMessage::Ping(_) => {
                c.record(|s| s.pings += 1);
                continue;
            }
            WsMessage::Close(frame) => {
                let cc = frame.map(|f| (u16::from(f.code), f.reason.to_string()));
                c.record(|s| s.client_close = cc.or(Some((1005, String::new()))));
                // tungstenite answers the close; drain until the socket ends.
                while let Some(Ok(_)) = c.ws.next().await {}
                return;
            }
            WsMessage::Binary(_) => {
                c.fail(
                    "input_error",
                    "binary frames are not accepted; send input_audio_chunk",
                    1008,
                )
                .await;
                return;
            }
            _ => continue,
        };
        c.record(|s| s.texts.push(text.clone()));
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            c.fail("input_error", "invalid JSON", 1008).await;
            return;
        };
        if v.get("message_type").and_then(Value::as_str) != Some("input_audio_chunk") {
            c.fail("input_error", "unknown message_type", 1008).await;
            return;
        }
        let (Some(b64), Some(commit), Some(sr)) = (
            v.get("audio_base_64").and_then(Value::as_str),
            v.get("commit").and_then(Value::as_bool),
            v.get("sample_rate").and_then(Value::as_u64),
        ) else {
            c.fail(
                "input_error",
                "audio_base_64, commit and sample_rate are required",
                1008,
            )
            .await;
            return;
        };
        if sr != c.rate {
            c.fail(
                "input_error",
                "sample_rate does not match audio_format",
                1008,
            )
            .await;
            return;
        }
        let Some(audio) = base64_decode(b64) else {
            c.fail("input_error", "audio_base_64 is not valid base64", 1008)
                .await;
            return;
        };
        if let Some(p) = v.get("previous_text").and_then(Value::as_str) {
            let at = chunks;
            c.record(|s| s.previous_texts.push((at, p.to_owned())));
        }
        if !audio.is_empty() {
            chunks += 1;
            c.record(|s| {
                s.audio.extend_from_slice(&audio);
                s.chunk_sizes.push(audio.len());
            });
            if let Some((after, t, e, code)) = &opts.error_after {
                if chunks >= *after {
                    c.fail(t, e, *code).await;
                    return;
                }
            }
            if let Some((after, code)) = opts.close_after {
                if chunks >= after {
                    c.close(code, "closed by the fake").await;
                    return;
                }
            }
            if opts.disconnect_after.is_some_and(|a| chunks >= a) {
                return; // dropping the socket: no close frame
            }
            if opts.silent_after.is_some_and(|a| chunks >= a) {
                tokio::time::sleep(Duration::from_secs(120)).await;
                return;
            }
            if !c.on_audio(audio.len()).await {
                return;
            }
            if c.vad
                && opts
                    .vad_commit_after_ms
                    .is_some_and(|ms| c.ms(c.segment_bytes) >= ms)
                && !c.commit(opts.drop_timestamps).await
            {
                return;
            }
        }
        if commit {
            c.record(|s| s.commits += 1);
            if opts.ignore_commit {
                continue;
            }
            if opts.throttle_commits {
                let m = json!({"message_type": "commit_throttled", "error": "Commit throttled"});
                if !c.send(m).await {
                    return;
                }
                continue;
            }
            if !c.commit(opts.drop_timestamps).await {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_rfc4648_vectors() {
        for (enc, dec) in [
            ("", ""),
            ("Zg==", "f"),
            ("Zm8=", "fo"),
            ("Zm9v", "foo"),
            ("Zm9vYg==", "foob"),
            ("Zm9vYmE=", "fooba"),
            ("Zm9vYmFy", "foobar"),
        ] {
            assert_eq!(base64_decode(enc).as_deref(), Some(dec.as_bytes()), "{enc}");
        }
        for bad in ["Zg=", "Z===", "Zg==Zg==", "Zm9v!A==", "%%%%"] {
            assert_eq!(base64_decode(bad), None, "{bad}");
        }
    }
}
