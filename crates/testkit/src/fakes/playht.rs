//! A fake of Play.ht's HTTP streaming API on 127.0.0.1 (`TTS_PROTOCOLS.md` §11;
//! docs.play.ht "HTTP Streaming Endpoints" and "Text to speech HTTP streaming"; playht/pyht
//! `pyht/client.py` `http_prepare_dict`, `HTTPFormat`, `output_format_to_mime_type`):
//!
//! - `POST /api/v2/tts/stream`: `AUTHORIZATION: <key>` (or `Bearer <key>`) and `X-USER-ID`
//!   checked (401 / 403), the JSON body validated (`text` required, at most 20000 characters
//!   for Play3.0-mini and 2000 otherwise; `voice` required, a known id; `voice_engine` one of
//!   [`ENGINES`] (default Play3.0-mini); `output_format` one of [`FORMATS`] (default `wav`;
//!   PlayDialog-turbo takes wav only); `sample_rate` 8000–48000; `speed` 0.1–5; `emotion` one
//!   of the PlayHT 2.0 `<gender>_<emotion>` values, PlayHT2.0 engines only (UNCONFIRMED
//!   strictness); `style_guidance` 1–30; `quality` a known level). Refusals are
//!   `{"error_message": "…", "error_id": "…"}` (UNCONFIRMED shape). With `accept:
//!   application/json` it answers 201 with an `href` JSON (documented for v2.2); otherwise 200
//!   and a chunked body of [`audio_for`]: a 440 Hz tone of [`FakeOptions::ms_per_char`] per
//!   character divided by `speed` at `sample_rate`, as PCM16 LE (`raw`, `pcm`), G.711 µ-law
//!   without a header (`mulaw`), PCM16 in WAV (`wav`), or stand-in bytes with the format's
//!   magic (mp3, ogg, flac).
//! - `GET /api/v2/voices` and `GET /api/v2/cloned-voices`: JSON arrays of voices (`id`,
//!   `name`, `sample`, `accent`, `age`, `gender`, `language`, `language_code`, `loudness`,
//!   `style`, `tempo`, `texture`, `is_cloned`, `voice_engine`; UNCONFIRMED shape).
//!
//! Everything received is recorded ([`SpeechLog`], [`PlayHtFake::voice_requests`]), and
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
use waav_plugin_api::codec::mulaw_encode;

/// Voice engines.
pub const ENGINES: &[&str] = &[
    "Play3.0-mini",
    "PlayDialog",
    "PlayDialog-turbo",
    "Play3.0",
    "PlayHT2.0-turbo",
    "PlayHT2.0",
];
/// Output formats (pyht `HTTPFormat`).
pub const FORMATS: &[&str] = &["raw", "mp3", "wav", "ogg", "flac", "mulaw", "pcm"];
/// PlayHT 2.0 emotions.
pub const EMOTIONS: &[&str] = &[
    "female_happy",
    "female_sad",
    "female_angry",
    "female_fearful",
    "female_disgust",
    "female_surprised",
    "male_happy",
    "male_sad",
    "male_angry",
    "male_fearful",
    "male_disgust",
    "male_surprised",
];

/// A voice the fake knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeVoice {
    /// Voice id (a manifest URL).
    pub id: String,
    /// Name.
    pub name: String,
    /// Gender.
    pub gender: String,
    /// Accent.
    pub accent: String,
    /// Language code (BCP-47).
    pub language_code: String,
    /// A cloned voice (listed by `/api/v2/cloned-voices`).
    pub is_cloned: bool,
}

impl FakeVoice {
    /// A prebuilt voice.
    pub fn new(id: &str, name: &str, gender: &str, accent: &str, language_code: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: name.to_owned(),
            gender: gender.to_owned(),
            accent: accent.to_owned(),
            language_code: language_code.to_owned(),
            is_cloned: false,
        }
    }
}

/// The default voices: three prebuilt voices and one clone.
pub fn default_voices() -> Vec<FakeVoice> {
    let mut clone = FakeVoice::new(
        "s3://voice-cloning-zero-shot/0000-my-clone/manifest.json",
        "My clone",
        "male",
        "",
        "en-US",
    );
    clone.is_cloned = true;
    vec![
        FakeVoice::new(
            "s3://voice-cloning-zero-shot/d9ff78ba-d016-47f6-b0ef-dd630f59414e/female-cs/manifest.json",
            "Jennifer",
            "female",
            "american",
            "en-US",
        ),
        FakeVoice::new(
            "s3://peregrine-voices/oliver_narrative2_parrot_saad/manifest.json",
            "Oliver",
            "male",
            "british",
            "en-GB",
        ),
        FakeVoice::new(
            "s3://voice-cloning-zero-shot/1111-spanish/manifest.json",
            "Sofia",
            "female",
            "spanish",
            "es-ES",
        ),
        clone,
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
    /// After the first chunk, waits for [`PlayHtFake::release`] (or the client to leave).
    HoldAfterFirstChunk,
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The key accepted in `AUTHORIZATION`.
    pub api_key: String,
    /// The user id accepted in `X-USER-ID`.
    pub user_id: String,
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
    /// Options accepting `api_key` with `user_id`, behaving.
    pub fn new(api_key: impl Into<String>, user_id: impl Into<String>) -> Self {
        Self {
            api_key: api_key.into(),
            user_id: user_id.into(),
            fault: Fault::None,
            fault_on: None,
            ms_per_char: 20,
            chunk_bytes: 960,
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
pub struct PlayHtFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl PlayHtFake {
    /// Starts a fake with `opts`.
    pub async fn start(opts: FakeOptions) -> Self {
        let shared = Arc::new(Shared {
            opts,
            speeches: Mutex::default(),
            voice_requests: Mutex::default(),
            release: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/api/v2/tts/stream", post(tts_stream))
            .route("/api/v2/voices", get(prebuilt_voices))
            .route("/api/v2/cloned-voices", get(cloned_voices))
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

    /// Every voice-listing request so far (both endpoints).
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

/// A Play.ht error answer.
fn error(status: u16, id: &str, message: &str) -> Response {
    json_answer(status, json!({"error_message": message, "error_id": id}))
}

fn invalid(message: &str) -> Response {
    error(400, "BAD_REQUEST", message)
}

fn check_auth(headers: &HeaderMap, opts: &FakeOptions) -> Option<Response> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v));
    match key {
        None => return Some(error(401, "UNAUTHORIZED", "Missing AUTHORIZATION header")),
        Some(k) if k != opts.api_key => return Some(error(401, "UNAUTHORIZED", "Invalid API key")),
        Some(_) => {}
    }
    match headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
        Some(u) if u == opts.user_id => None,
        Some(_) => Some(error(
            403,
            "FORBIDDEN",
            "The API key does not belong to this user",
        )),
        None => Some(error(401, "UNAUTHORIZED", "Missing X-USER-ID header")),
    }
}

fn wav_header(rate: u32, data_len: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(44);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out
}

/// The fake's audio for `text` in `format` at `rate` (see the module docs).
pub fn audio_for(text: &str, format: &str, rate: u32, speed: f64, ms_per_char: u32) -> Vec<u8> {
    let ms = text.chars().count().max(1) as f64 * f64::from(ms_per_char) / speed.clamp(0.1, 5.0);
    let n = (ms * f64::from(rate) / 1000.0).round().max(1.0) as usize;
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(rate);
    let tone: Vec<i16> = (0..n)
        .map(|i| ((i as f64 * step).sin() * 8_000.0) as i16)
        .collect();
    let pcm: Vec<u8> = tone.iter().flat_map(|s| s.to_le_bytes()).collect();
    match format {
        "raw" | "pcm" => pcm,
        "mulaw" => tone.iter().map(|&s| mulaw_encode(s)).collect(),
        "wav" => {
            let mut out = wav_header(rate, pcm.len() as u32);
            out.extend_from_slice(&pcm);
            out
        }
        other => {
            let magic: &[u8] = match other {
                "mp3" => &[0xFF, 0xFB, 0x90, 0x64],
                "ogg" => b"OggS",
                _ => b"fLaC",
            };
            let len = ((ms * 4.0) as usize).max(16);
            let mut out = magic.to_vec();
            out.extend((magic.len()..len).map(|i| (i * 31 + 7) as u8));
            out
        }
    }
}

fn content_type(format: &str) -> &'static str {
    match format {
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "ogg" => "audio/ogg",
        "flac" => "audio/flac",
        _ => "audio/basic",
    }
}

/// A validated request: text, format, rate, speed.
type Checked = (String, String, u32, f64);

fn validate(voices: &[FakeVoice], body: &Value) -> Result<Checked, String> {
    if !body.is_object() {
        return Err("Request body must be a JSON object".into());
    }
    let engine = match &body["voice_engine"] {
        Value::Null => "Play3.0-mini",
        Value::String(e) if ENGINES.contains(&e.as_str()) => e.as_str(),
        _ => return Err("Invalid voice_engine".into()),
    };
    let limit = if engine == "Play3.0-mini" {
        20_000
    } else {
        2_000
    };
    let text = match body["text"].as_str() {
        Some(t) if t.trim().is_empty() => return Err("text must not be empty".into()),
        Some(t) if t.chars().count() > limit => {
            return Err(format!("text is longer than {limit} characters"))
        }
        Some(t) => t,
        None => return Err("text is required".into()),
    };
    match body["voice"].as_str() {
        Some(v) if voices.iter().any(|x| x.id == v) => {}
        Some(v) => return Err(format!("Invalid voice: {v}")),
        None => return Err("voice is required".into()),
    }
    let format = match &body["output_format"] {
        Value::Null => "wav",
        Value::String(f) if FORMATS.contains(&f.as_str()) => f.as_str(),
        _ => return Err("Invalid output_format".into()),
    };
    if engine == "PlayDialog-turbo" && format != "wav" {
        return Err("PlayDialog-turbo only supports wav".into());
    }
    let rate = match &body["sample_rate"] {
        Value::Null => 24_000,
        v => match v.as_u64() {
            Some(r) if (8_000..=48_000).contains(&r) => r as u32,
            _ => return Err("sample_rate must be between 8000 and 48000".into()),
        },
    };
    let speed = match &body["speed"] {
        Value::Null => 1.0,
        v => match v.as_f64() {
            Some(s) if s > 0.0 && s <= 5.0 => s,
            _ => return Err("speed must be greater than 0 and at most 5".into()),
        },
    };
    match &body["emotion"] {
        Value::Null => {}
        Value::String(e) if EMOTIONS.contains(&e.as_str()) => {
            if !engine.starts_with("PlayHT2.0") {
                return Err("emotion is only supported by PlayHT2.0 voice engines".into());
            }
        }
        _ => return Err("Invalid emotion".into()),
    }
    match &body["style_guidance"] {
        Value::Null => {}
        v => match v.as_f64() {
            Some(g) if (1.0..=30.0).contains(&g) => {}
            _ => return Err("style_guidance must be between 1 and 30".into()),
        },
    }
    match &body["quality"] {
        Value::Null => {}
        Value::String(q) if ["draft", "low", "medium", "high", "premium"].contains(&q.as_str()) => {
        }
        _ => return Err("Invalid quality".into()),
    }
    Ok((text.to_owned(), format.to_owned(), rate, speed))
}

async fn tts_stream(
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
    let r = speech_inner(&st, index, &headers, &parsed, &log);
    log.lock().expect("log").status = r.status().as_u16();
    r
}

fn speech_inner(
    st: &Arc<Shared>,
    index: usize,
    headers: &HeaderMap,
    body: &Value,
    log: &Arc<Mutex<SpeechLog>>,
) -> Response {
    if let Some(r) = check_auth(headers, &st.opts) {
        return r;
    }
    let fault = match st.opts.fault_on {
        Some(i) if i != index => Fault::None,
        _ => st.opts.fault.clone(),
    };
    if let Some(r) = fault_status(&fault) {
        return r;
    }
    let (text, format, rate, speed) = match validate(&st.opts.voices, body) {
        Ok(v) => v,
        Err(m) => return invalid(&m),
    };
    let accept = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.starts_with("application/json") {
        let ct = content_type(&format);
        return json_answer(
            201,
            json!({"href": format!("https://play.ht/api/v2/tts/fake{index}?format={}", ct.replace('/', "-")),
                   "method": "GET", "contentType": ct, "rel": "item",
                   "description": "URL for fetching the generated audio as a playable stream of bytes"}),
        );
    }
    match fault {
        Fault::Garbage => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"href": "https://play.ht/api/v2/tts/x", "meth"#,
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
    let audio = audio_for(&text, &format, rate, speed, st.opts.ms_per_char);
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

fn voice_list(st: &Shared, uri: &Uri, headers: &HeaderMap, cloned: bool) -> Response {
    st.voice_requests
        .lock()
        .expect("lock")
        .push(seen(uri, headers));
    if let Some(r) = check_auth(headers, &st.opts) {
        return r;
    }
    let list: Vec<Value> = st
        .opts
        .voices
        .iter()
        .filter(|v| v.is_cloned == cloned)
        .map(|v| {
            let language = match v.language_code.split('-').next() {
                Some("es") => "Spanish",
                _ => "English",
            };
            json!({"id": v.id, "name": v.name,
                   "sample": format!("https://fake.play.invalid/samples/{}.mp3", v.name.to_lowercase().replace(' ', "-")),
                   "accent": v.accent, "age": "adult", "gender": v.gender,
                   "language": language, "language_code": v.language_code,
                   "loudness": "neutral", "style": "narrative", "tempo": "neutral",
                   "texture": "smooth", "is_cloned": v.is_cloned, "voice_engine": "Play3.0-mini"})
        })
        .collect();
    json_answer(200, Value::Array(list))
}

async fn prebuilt_voices(State(st): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    voice_list(&st, &uri, &headers, false)
}

async fn cloned_voices(State(st): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    voice_list(&st, &uri, &headers, true)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_follows_format_rate_and_speed() {
        let pcm = audio_for("abcd", "raw", 16_000, 1.0, 10);
        assert_eq!(pcm.len(), 4 * 10 * 16 * 2);
        assert_eq!(
            audio_for("abcd", "raw", 16_000, 2.0, 10).len(),
            pcm.len() / 2
        );
        assert_eq!(
            audio_for("abcd", "mulaw", 16_000, 1.0, 10).len(),
            pcm.len() / 2
        );
        assert_eq!(&audio_for("abcd", "wav", 8_000, 1.0, 10)[..4], b"RIFF");
        assert_eq!(
            &audio_for("abcd", "mp3", 24_000, 1.0, 10)[..2],
            &[0xFF, 0xFB]
        );
    }

    #[test]
    fn validation() {
        let v = default_voices();
        let id = v[0].id.clone();
        let ok = json!({"text": "Hi", "voice": id, "output_format": "mulaw", "sample_rate": 8000});
        assert_eq!(validate(&v, &ok).unwrap().1, "mulaw");
        assert_eq!(
            validate(&v, &json!({"text": "Hi", "voice": id})).unwrap().1,
            "wav"
        );
        for bad in [
            json!({"text": "", "voice": id}),
            json!({"text": "x", "voice": "nobody"}),
            json!({"text": "x", "voice": id, "output_format": "aac"}),
            json!({"text": "x", "voice": id, "sample_rate": 96000}),
            json!({"text": "x", "voice": id, "speed": 0}),
            json!({"text": "x", "voice": id, "emotion": "female_happy"}),
            json!({"text": "x", "voice": id, "voice_engine": "PlayHT2.0", "emotion": "calm"}),
            json!({"text": "x".repeat(2001), "voice": id, "voice_engine": "PlayHT2.0"}),
            json!({"text": "x", "voice": id, "voice_engine": "PlayDialog-turbo", "output_format": "mp3"}),
        ] {
            assert!(validate(&v, &bad).is_err(), "{bad}");
        }
    }
}
