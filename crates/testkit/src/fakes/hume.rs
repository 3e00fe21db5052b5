//! A fake of Hume's Octave TTS API on 127.0.0.1 (`TTS_PROTOCOLS.md` §9; hume-python-sdk
//! `src/hume/tts/raw_client.py`, `tts/voices/raw_client.py`, `tts/types/*.py`):
//!
//! - `POST /v0/tts/stream/file`: `X-Hume-Api-Key` checked (401 `{"message": …}`, the gateway's
//!   shape), the `PostedTts` JSON body validated (`utterances` non-empty with non-empty `text`,
//!   `voice` `{id}` or `{name, provider?}` (provider defaults to `CUSTOM_VOICE`) naming a known
//!   voice, `format.type` `mp3|pcm|wav` (default mp3), `speed` 0.25–3, `trailing_silence`
//!   0–5, `version` `"1"|"2"` (2 needs a voice), `instant_mode` needs a voice and at most one
//!   generation). Validation failures answer 422 `{"detail": [{"loc", "msg", "type"}]}`; an
//!   unknown voice 400 with an `ErrorResponse` (`{"code", "error", "message"}`, UNCONFIRMED
//!   which status Hume uses). The answer is a chunked body: `pcm` is a 440 Hz tone, 48 kHz
//!   16-bit LE mono, [`FakeOptions::ms_per_char`] per character of all utterances divided by
//!   each utterance's `speed`; `wav` the same with a header; `mp3` stand-in bytes starting with
//!   an MPEG frame sync ([`audio_for`]).
//! - `GET /v0/tts/voices?provider=HUME_AI|CUSTOM_VOICE&page_number=0&page_size=10`:
//!   `ReturnPagedVoices` `{page_number, page_size, total_pages, voices_page: [{id, name,
//!   provider, compatible_octave_models}]}` from [`FakeOptions::voices`].
//!
//! Everything received is recorded ([`SpeechLog`], [`HumeFake::voice_requests`]), and
//! [`Fault`] makes the synthesis misbehave, on every request or one ([`FakeOptions::fault_on`]).

use crate::fakes::{HttpFake, SeenRequest};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// The output rate of every format.
pub const SAMPLE_RATE: u32 = 48_000;

/// A voice the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVoice {
    /// UUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// `HUME_AI` or `CUSTOM_VOICE`.
    pub provider: String,
}

impl FakeVoice {
    /// A voice.
    pub fn new(id: &str, name: &str, provider: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            provider: provider.to_owned(),
        }
    }
}

/// The default voice list: three Voice Library voices and one custom voice.
pub fn default_voices() -> Vec<FakeVoice> {
    vec![
        FakeVoice::new(
            "5bb7de05-c8fe-426a-8fcc-ba4fc4ce9f9c",
            "Ava Song",
            "HUME_AI",
        ),
        FakeVoice::new(
            "b201d214-914c-4d0a-b8e4-54adfc14a0dd",
            "Male English Actor",
            "HUME_AI",
        ),
        FakeVoice::new(
            "9e068547-5ba4-4c8e-8e03-69282a008f04",
            "Colton Rivers",
            "HUME_AI",
        ),
        FakeVoice::new(
            "0c8a2a5e-1f34-4f6e-9d6b-3a2b1c0d9e8f",
            "My Narrator",
            "CUSTOM_VOICE",
        ),
    ]
}

/// How the synthesis misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// Answers `status` with `body` (and `retry-after` when set), after the auth check.
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
        /// `retry-after` seconds.
        retry_after: Option<u64>,
    },
    /// A 200 `application/json` body that does not parse, instead of audio.
    Garbage,
    /// The body stops with an error after this many chunks.
    Truncate {
        /// Chunks sent first.
        after_chunks: usize,
    },
    /// The response head is sent, then nothing.
    Silent,
    /// After the first chunk, waits for [`HumeFake::release`] (or the client to leave).
    HoldAfterFirstChunk,
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The key accepted in `X-Hume-Api-Key`.
    pub api_key: String,
    /// Misbehaviour of the synthesis endpoint.
    pub fault: Fault,
    /// Apply the fault only to synthesis request `index`; `None`: every request.
    pub fault_on: Option<usize>,
    /// Tone per character (before `speed`).
    pub ms_per_char: u32,
    /// Bytes per chunk.
    pub chunk_bytes: usize,
    /// Pause between chunks.
    pub chunk_delay: Duration,
    /// The voices served and accepted.
    pub voices: Vec<FakeVoice>,
}

impl FakeOptions {
    /// Options accepting `api_key`, behaving.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            fault: Fault::None,
            fault_on: None,
            ms_per_char: 20,
            chunk_bytes: 1920,
            chunk_delay: Duration::from_millis(2),
            voices: default_voices(),
        }
    }

    /// Sets the fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// Applies the fault to request `index` only.
    pub fn fault_on(mut self, index: usize) -> Self {
        self.fault_on = Some(index);
        self
    }
}

/// One synthesis request as received and answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechLog {
    /// Path and headers.
    pub request: SeenRequest,
    /// The JSON body (`Value::Null` if it did not parse).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// Audio chunks sent.
    pub chunks_sent: usize,
    /// Audio bytes sent.
    pub bytes_sent: usize,
    /// The whole audio was sent.
    pub completed: bool,
    /// The client went away before the audio ended.
    pub client_gone: bool,
}

#[derive(Debug)]
struct Shared {
    opts: FakeOptions,
    speeches: Mutex<Vec<Arc<Mutex<SpeechLog>>>>,
    voice_requests: Mutex<Vec<SeenRequest>>,
    release: watch::Sender<bool>,
}

/// The fake service. Stops when dropped.
#[derive(Debug)]
pub struct HumeFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl HumeFake {
    /// Starts a fake with `opts`.
    pub async fn start(opts: FakeOptions) -> Self {
        let shared = Arc::new(Shared {
            opts,
            speeches: Mutex::default(),
            voice_requests: Mutex::default(),
            release: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/v0/tts/stream/file", post(stream_file))
            .route("/v0/tts/voices", get(voices))
            .with_state(shared.clone());
        Self {
            http: HttpFake::start(router).await,
            shared,
        }
    }

    /// `http://127.0.0.1:port`, the `base_url`.
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// Every synthesis request so far, in arrival order.
    pub fn speeches(&self) -> Vec<SpeechLog> {
        let all = self.shared.speeches.lock().expect("lock");
        all.iter().map(|l| l.lock().expect("log").clone()).collect()
    }

    /// Every voice-listing request so far.
    pub fn voice_requests(&self) -> Vec<SeenRequest> {
        self.shared.voice_requests.lock().expect("lock").clone()
    }

    /// Lets [`Fault::HoldAfterFirstChunk`] go on (for every held and later response).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Waits (polling, at most `timeout`) until request `index` exists and `pred` holds.
    pub async fn wait_for_speech(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SpeechLog) -> bool,
    ) -> Option<SpeechLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.speeches().into_iter().nth(index).filter(&pred) {
                return Some(l);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
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

fn json_answer(status: u16, body: Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A refused request: status and JSON body (small, unlike a `Response`).
type Refusal = (u16, Value);

/// A 422 `HTTPValidationError`.
fn refuse(loc: &[Value], msg: &str) -> Refusal {
    (
        422,
        json!({"detail": [{"loc": loc, "msg": msg, "type": "value_error"}]}),
    )
}

/// [`refuse`] as an answer.
fn invalid(loc: &[Value], msg: &str) -> Response {
    let (status, body) = refuse(loc, msg);
    json_answer(status, body)
}

fn check_auth(headers: &HeaderMap, key: &str) -> Option<Response> {
    match headers.get("x-hume-api-key").and_then(|v| v.to_str().ok()) {
        Some(k) if k == key => None,
        Some(_) => Some(json_answer(401, json!({"message": "Invalid ApiKey"}))),
        None => Some(json_answer(
            401,
            json!({"message": "Missing API key. Provide X-Hume-Api-Key."}),
        )),
    }
}

fn fault_status(fault: &Fault) -> Option<Response> {
    let Fault::Status {
        status,
        body,
        retry_after,
    } = fault
    else {
        return None;
    };
    let mut r = (
        StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", "application/json")],
        body.clone(),
    )
        .into_response();
    if let Some(s) = retry_after {
        r.headers_mut().insert("retry-after", HeaderValue::from(*s));
    }
    Some(r)
}

/// The fake's audio for utterances of `(text, speed)` in `format` (see the module docs).
pub fn audio_for(utterances: &[(&str, f64)], format: &str, ms_per_char: u32) -> Vec<u8> {
    let ms: f64 = utterances
        .iter()
        .map(|(t, speed)| {
            t.chars().count().max(1) as f64 * f64::from(ms_per_char) / speed.clamp(0.25, 3.0)
        })
        .sum();
    let n = (ms * f64::from(SAMPLE_RATE) / 1000.0).round().max(1.0) as usize;
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(SAMPLE_RATE);
    let pcm: Vec<u8> = (0..n)
        .flat_map(|i| (((i as f64 * step).sin() * 8_000.0) as i16).to_le_bytes())
        .collect();
    match format {
        "pcm" => pcm,
        "wav" => {
            let len = pcm.len() as u32;
            let mut out = Vec::with_capacity(pcm.len() + 44);
            out.extend_from_slice(b"RIFF");
            out.extend_from_slice(&(36 + len).to_le_bytes());
            out.extend_from_slice(b"WAVEfmt ");
            out.extend_from_slice(&16u32.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&1u16.to_le_bytes());
            out.extend_from_slice(&SAMPLE_RATE.to_le_bytes());
            out.extend_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
            out.extend_from_slice(&2u16.to_le_bytes());
            out.extend_from_slice(&16u16.to_le_bytes());
            out.extend_from_slice(b"data");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&pcm);
            out
        }
        _ => {
            let len = ((ms * 4.0) as usize).max(16);
            let mut out = vec![0xFF, 0xFB, 0x90, 0x64];
            out.extend((4..len).map(|i| (i * 31 + 7) as u8));
            out
        }
    }
}

fn content_type(format: &str) -> &'static str {
    match format {
        "pcm" => "audio/pcm",
        "wav" => "audio/wav",
        _ => "audio/mpeg",
    }
}

/// Checks `voice`; `Err` is the answer.
fn check_voice(voices: &[FakeVoice], i: usize, voice: &Value) -> Result<(), Refusal> {
    let loc = |k: &str| {
        [
            json!("body"),
            json!("utterances"),
            json!(i),
            json!("voice"),
            json!(k),
        ]
    };
    let Some(o) = voice.as_object() else {
        return Err(refuse(&loc("")[..4], "value is not a valid dict"));
    };
    if let Some(id) = o.get("id") {
        let Some(id) = id.as_str() else {
            return Err(refuse(&loc("id"), "str type expected"));
        };
        return if voices.iter().any(|v| v.id == id) {
            Ok(())
        } else {
            Err((
                400,
                json!({"code": "E0303", "error": "Voice not found", "message": format!("No voice found with id {id}")}),
            ))
        };
    }
    let Some(name) = o.get("name").and_then(Value::as_str) else {
        return Err(refuse(&loc("name"), "field required"));
    };
    let provider = match o.get("provider") {
        None | Some(Value::Null) => "CUSTOM_VOICE",
        Some(Value::String(p)) if p == "HUME_AI" || p == "CUSTOM_VOICE" => p.as_str(),
        Some(_) => {
            return Err(refuse(
                &loc("provider"),
                "value is not a valid enumeration member; permitted: 'HUME_AI', 'CUSTOM_VOICE'",
            ))
        }
    };
    if voices
        .iter()
        .any(|v| v.name == name && v.provider == provider)
    {
        Ok(())
    } else {
        Err((
            400,
            json!({"code": "E0303", "error": "Voice not found", "message": format!("No voice found with name '{name}' for provider {provider}")}),
        ))
    }
}

/// Validates a `PostedTts`; returns the format and the utterances' `(text, speed)`.
fn validate(voices: &[FakeVoice], body: &Value) -> Result<(String, Vec<(String, f64)>), Refusal> {
    if !body.is_object() {
        return Err(refuse(&[json!("body")], "value is not a valid dict"));
    }
    let Some(utterances) = body["utterances"].as_array().filter(|u| !u.is_empty()) else {
        return Err(refuse(
            &[json!("body"), json!("utterances")],
            "ensure this value has at least 1 items",
        ));
    };
    let mut out = Vec::new();
    let mut has_voice = false;
    for (i, u) in utterances.iter().enumerate() {
        let at = |k: &str| [json!("body"), json!("utterances"), json!(i), json!(k)];
        let text = match u["text"].as_str() {
            Some(t) if !t.trim().is_empty() => t,
            Some(_) => {
                return Err(refuse(
                    &at("text"),
                    "ensure this value has at least 1 characters",
                ))
            }
            None => return Err(refuse(&at("text"), "field required")),
        };
        if !u["voice"].is_null() {
            check_voice(voices, i, &u["voice"])?;
            has_voice = true;
        }
        let speed = match &u["speed"] {
            Value::Null => 1.0,
            v => match v.as_f64() {
                Some(s) if (0.25..=3.0).contains(&s) => s,
                _ => return Err(refuse(&at("speed"), "speed must be between 0.25 and 3.0")),
            },
        };
        match &u["trailing_silence"] {
            Value::Null => {}
            v => match v.as_f64() {
                Some(s) if (0.0..=5.0).contains(&s) => {}
                _ => return Err(refuse(&at("trailing_silence"), "must be between 0 and 5")),
            },
        }
        if let Some(d) = u.get("description").filter(|d| !d.is_null()) {
            if !d.is_string() {
                return Err(refuse(&at("description"), "str type expected"));
            }
        }
        out.push((text.to_owned(), speed));
    }
    let format = match &body["format"] {
        Value::Null => "mp3".to_owned(),
        f => match f["type"].as_str() {
            Some(t @ ("mp3" | "pcm" | "wav")) => t.to_owned(),
            _ => {
                return Err(refuse(
                    &[json!("body"), json!("format"), json!("type")],
                    "permitted: 'mp3', 'pcm', 'wav'",
                ))
            }
        },
    };
    match &body["version"] {
        Value::Null => {}
        Value::String(v) if v == "1" => {}
        Value::String(v) if v == "2" => {
            if !has_voice {
                return Err(refuse(
                    &[json!("body"), json!("version")],
                    "version 2 requires a voice",
                ));
            }
        }
        _ => {
            return Err(refuse(
                &[json!("body"), json!("version")],
                "permitted: '1', '2'",
            ))
        }
    }
    if body["instant_mode"].as_bool() == Some(true) {
        if !has_voice {
            return Err(refuse(
                &[json!("body"), json!("instant_mode")],
                "instant mode requires a voice",
            ));
        }
        if body["num_generations"].as_u64().is_some_and(|n| n > 1) {
            return Err(refuse(
                &[json!("body"), json!("num_generations")],
                "num_generations must be 1 with instant mode",
            ));
        }
    }
    Ok((format, out))
}

async fn stream_file(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let log = Arc::new(Mutex::new(SpeechLog {
        request: seen(&uri, &headers),
        body: parsed.clone(),
        status: 0,
        chunks_sent: 0,
        bytes_sent: 0,
        completed: false,
        client_gone: false,
    }));
    let index = {
        let mut all = st.speeches.lock().expect("lock");
        all.push(log.clone());
        all.len() - 1
    };
    let r = stream_inner(&st, index, &headers, &parsed, &log);
    log.lock().expect("log").status = r.status().as_u16();
    r
}

fn stream_inner(
    st: &Arc<Shared>,
    index: usize,
    headers: &HeaderMap,
    body: &Value,
    log: &Arc<Mutex<SpeechLog>>,
) -> Response {
    if let Some(r) = check_auth(headers, &st.opts.api_key) {
        return r;
    }
    let fault = match st.opts.fault_on {
        Some(i) if i != index => Fault::None,
        _ => st.opts.fault.clone(),
    };
    if let Some(r) = fault_status(&fault) {
        return r;
    }
    let (format, utterances) = match validate(&st.opts.voices, body) {
        Ok(v) => v,
        Err((status, body)) => return json_answer(status, body),
    };
    match fault {
        Fault::Garbage => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"generations": [{"audio": tru"#,
            )
                .into_response()
        }
        Fault::Silent => {
            let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            return (
                StatusCode::OK,
                [("content-type", content_type(&format))],
                Body::from_stream(never),
            )
                .into_response();
        }
        _ => {}
    }
    let refs: Vec<(&str, f64)> = utterances.iter().map(|(t, s)| (t.as_str(), *s)).collect();
    let audio = audio_for(&refs, &format, st.opts.ms_per_char);
    let stream = stream_chunks(
        audio,
        st.opts.clone(),
        fault,
        st.release.subscribe(),
        log.clone(),
    );
    (
        StatusCode::OK,
        [("content-type", content_type(&format))],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Streams `audio` in chunks with the fault applied, recording progress in `log`.
fn stream_chunks(
    audio: Vec<u8>,
    opts: FakeOptions,
    fault: Fault,
    mut release: watch::Receiver<bool>,
    log: Arc<Mutex<SpeechLog>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    tokio::spawn(async move {
        let chunks: Vec<Bytes> = audio
            .chunks(opts.chunk_bytes.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        for (i, chunk) in chunks.into_iter().enumerate() {
            if let Fault::Truncate { after_chunks } = fault {
                if i >= after_chunks {
                    let _ = tx.send(Err(std::io::Error::other("fake: truncated"))).await;
                    return;
                }
            }
            if i > 0 {
                if fault == Fault::HoldAfterFirstChunk && i == 1 {
                    let held = async {
                        while !*release.borrow_and_update() {
                            if release.changed().await.is_err() {
                                std::future::pending::<()>().await;
                            }
                        }
                    };
                    tokio::select! {
                        () = held => {}
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
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// The value of query parameter `name`, `+` and `%XX` decoded.
fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let q = uri.query()?;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        (k == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn voices(State(st): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    st.voice_requests
        .lock()
        .expect("lock")
        .push(seen(&uri, &headers));
    if let Some(r) = check_auth(&headers, &st.opts.api_key) {
        return r;
    }
    let provider = match query_param(&uri, "provider").as_deref() {
        Some(p @ ("HUME_AI" | "CUSTOM_VOICE")) => p.to_owned(),
        Some(_) => {
            return invalid(
                &[json!("query"), json!("provider")],
                "permitted: 'HUME_AI', 'CUSTOM_VOICE'",
            )
        }
        None => return invalid(&[json!("query"), json!("provider")], "field required"),
    };
    let page_number: usize = match query_param(&uri, "page_number").map(|p| p.parse()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            return invalid(
                &[json!("query"), json!("page_number")],
                "value is not a valid integer",
            )
        }
    };
    let page_size: usize = match query_param(&uri, "page_size").map(|p| p.parse()) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return invalid(&[json!("query"), json!("page_size")], "must be 1 to 100"),
    };
    let all: Vec<&FakeVoice> = st
        .opts
        .voices
        .iter()
        .filter(|v| v.provider == provider)
        .collect();
    let total_pages = all.len().div_ceil(page_size);
    let page: Vec<Value> = all
        .iter()
        .skip(page_number * page_size)
        .take(page_size)
        .map(|v| {
            json!({"id": v.id, "name": v.name, "provider": v.provider,
                   "compatible_octave_models": ["1", "2"]})
        })
        .collect();
    json_answer(
        200,
        json!({"page_number": page_number, "page_size": page_size,
               "total_pages": total_pages, "voices_page": page}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_follows_text_and_speed() {
        let one = audio_for(&[("abcd", 1.0)], "pcm", 10);
        assert_eq!(one.len(), 4 * 10 * 48 * 2);
        assert_eq!(audio_for(&[("abcd", 2.0)], "pcm", 10).len(), one.len() / 2);
        let wav = audio_for(&[("abcd", 1.0)], "wav", 10);
        assert_eq!(&wav[..4], b"RIFF");
        assert_eq!(&wav[44..], &one[..]);
        assert_eq!(&audio_for(&[("abcd", 1.0)], "mp3", 10)[..2], &[0xFF, 0xFB]);
    }

    #[test]
    fn validation() {
        let v = default_voices();
        let ok = json!({"utterances": [{"text": "Hi", "voice": {"name": "Ava Song", "provider": "HUME_AI"}}],
                        "format": {"type": "pcm"}, "instant_mode": true});
        assert_eq!(validate(&v, &ok).unwrap().0, "pcm");
        // Without a provider the name is looked up among custom voices.
        let custom = json!({"utterances": [{"text": "Hi", "voice": {"name": "Ava Song"}}]});
        assert_eq!(validate(&v, &custom).unwrap_err().0, 400);
        for bad in [
            json!({"utterances": []}),
            json!({"utterances": [{"text": ""}]}),
            json!({"utterances": [{"text": "x", "speed": 9}]}),
            json!({"utterances": [{"text": "x"}], "instant_mode": true}),
            json!({"utterances": [{"text": "x"}], "version": "2"}),
            json!({"utterances": [{"text": "x"}], "format": {"type": "ogg"}}),
        ] {
            assert_eq!(validate(&v, &bad).unwrap_err().0, 422, "{bad}");
        }
        assert_eq!(decode("HUME%5FAI+x"), "HUME_AI x");
    }
}
