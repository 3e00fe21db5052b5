//! A fake of the Azure AI Speech text to speech REST API on 127.0.0.1 (`TTS_PROTOCOLS.md` §4;
//! MicrosoftDocs/azure-ai-docs `rest-text-to-speech.md` and `speech-synthesis-markup-voice.md`):
//!
//! - `POST /cognitiveservices/v1` (optionally `?deploymentId=<id>`, a custom voice endpoint):
//!   auth by `Ocp-Apim-Subscription-Key` or `Authorization: Bearer <token>` (a token from the
//!   fake's `issueToken`), else 401. Then it checks, in the service's documented terms:
//!   `Content-Type: application/ssml+xml` (else 415), a `User-Agent` of fewer than 255
//!   characters (else 400), an `X-Microsoft-OutputFormat` from the documented lists (else
//!   400), and the body: well-formed XML whose root is `<speak version="1.0"
//!   xmlns="http://www.w3.org/2001/10/synthesis" xml:lang="…">`, with `mstts:` elements only
//!   when `xmlns:mstts` is declared, at least one `<voice name>` naming a voice of the listing
//!   (any name on a `deploymentId` endpoint), and text only inside voices (else 400). What was
//!   parsed is recorded as an [`Ssml`] (voice, text, prosody rate, express-as attributes).
//!   The answer is a chunked 200 with deterministic audio in the requested format: a 440 Hz
//!   tone of [`FakeOptions::ms_per_char`] per character of spoken text, divided by the
//!   prosody rate; raw PCM16 LE, G.711 bytes, RIFF with a header, or stand-in bytes with the
//!   container's magic for compressed formats.
//! - `GET /cognitiveservices/voices/list`: the JSON array of [`FakeOptions::voices`]
//!   (PascalCase keys as in the docs' sample), after the same auth check.
//! - `POST /sts/v1.0/issueToken`: a token for the key (plain text).
//!
//! The error bodies are the Cognitive Services gateway's JSON (`{"error": {"code",
//! "message"}}`) for 401 and short text for the others (**UNCONFIRMED**: the docs show no
//! error body; the service's answer to an unknown voice is also UNCONFIRMED). Response
//! `Content-Type`s are guesses (**UNCONFIRMED**). Faults ([`Fault`]) make it misbehave, on
//! every synthesis or on one ([`FakeOptions::fault_on`]); the listing has its own
//! ([`FakeOptions::voices_fault`]).

use crate::fakes::{HttpFake, SeenRequest};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use waav_plugin_api::codec;

/// The SSML namespace `<speak>` must declare.
pub const SSML_NS: &str = "http://www.w3.org/2001/10/synthesis";
/// Output formats that stream (the "Streaming" tab of `rest-text-to-speech.md`).
pub const STREAMING_FORMATS: &[&str] = &[
    "amr-wb-16000hz",
    "audio-16khz-16bit-32kbps-mono-opus",
    "audio-16khz-32kbitrate-mono-mp3",
    "audio-16khz-64kbitrate-mono-mp3",
    "audio-16khz-128kbitrate-mono-mp3",
    "audio-24khz-16bit-24kbps-mono-opus",
    "audio-24khz-16bit-48kbps-mono-opus",
    "audio-24khz-48kbitrate-mono-mp3",
    "audio-24khz-96kbitrate-mono-mp3",
    "audio-24khz-160kbitrate-mono-mp3",
    "audio-48khz-96kbitrate-mono-mp3",
    "audio-48khz-192kbitrate-mono-mp3",
    "ogg-16khz-16bit-mono-opus",
    "ogg-24khz-16bit-mono-opus",
    "ogg-48khz-16bit-mono-opus",
    "raw-8khz-8bit-mono-alaw",
    "raw-8khz-8bit-mono-mulaw",
    "raw-8khz-16bit-mono-pcm",
    "raw-16khz-16bit-mono-pcm",
    "raw-16khz-16bit-mono-truesilk",
    "raw-22050hz-16bit-mono-pcm",
    "raw-24khz-16bit-mono-pcm",
    "raw-24khz-16bit-mono-truesilk",
    "raw-44100hz-16bit-mono-pcm",
    "raw-48khz-16bit-mono-pcm",
    "webm-16khz-16bit-mono-opus",
    "webm-24khz-16bit-24kbps-mono-opus",
    "webm-24khz-16bit-mono-opus",
];
/// Output formats with a RIFF header (the "NonStreaming" tab).
pub const RIFF_FORMATS: &[&str] = &[
    "riff-8khz-8bit-mono-alaw",
    "riff-8khz-8bit-mono-mulaw",
    "riff-8khz-16bit-mono-pcm",
    "riff-22050hz-16bit-mono-pcm",
    "riff-24khz-16bit-mono-pcm",
    "riff-44100hz-16bit-mono-pcm",
    "riff-48khz-16bit-mono-pcm",
];

/// The 401 message of the Cognitive Services gateway (**UNCONFIRMED** for this endpoint).
pub const ACCESS_DENIED: &str = "Access denied due to invalid subscription key or wrong API \
    endpoint. Make sure to provide a valid key for an active subscription and use a correct \
    regional API endpoint for your resource.";

/// How the fake misbehaves.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Fault {
    /// Behaves.
    #[default]
    None,
    /// Answers `status` with `body` and `headers` (e.g. `retry-after`), after the auth check.
    Status {
        /// HTTP status.
        status: u16,
        /// Response body.
        body: String,
        /// Extra response headers.
        headers: Vec<(String, String)>,
    },
    /// A 200 that is not audio: an HTML page (synthesis) or broken JSON (listing).
    Garbage,
    /// The body breaks off with an error after this many chunks.
    Truncate {
        /// Chunks sent first.
        after_chunks: usize,
    },
    /// The response head is sent, then nothing.
    Silent,
    /// Nothing at all is answered (not even the head).
    NoResponse,
    /// After the first chunk, waits for [`AzureTtsFake::release`] (or the client leaving).
    HoldAfterFirstChunk,
}

impl Fault {
    /// A status fault with a short text body and no headers.
    pub fn status(status: u16, body: impl Into<String>) -> Self {
        Self::Status {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    /// The resource key accepted.
    pub key: String,
    /// Synthesis misbehaviour.
    pub fault: Fault,
    /// Apply [`FakeOptions::fault`] only to the synthesis with this index; `None`: every one.
    pub fault_on: Option<usize>,
    /// Voice listing misbehaviour (`Status`, `Garbage`, `Silent`, `NoResponse`).
    pub voices_fault: Fault,
    /// Tone per character of text (before the prosody rate).
    pub ms_per_char: u32,
    /// Bytes per audio chunk.
    pub chunk_bytes: usize,
    /// Pause between chunks.
    pub chunk_delay: Duration,
    /// The voice listing (objects with PascalCase keys).
    pub voices: Vec<Value>,
}

/// The default listing: three voices shaped like the docs' sample.
pub fn default_voices() -> Vec<Value> {
    vec![
        json!({
            "Name": "Microsoft Server Speech Text to Speech Voice (en-US, JennyNeural)",
            "DisplayName": "Jenny", "LocalName": "Jenny", "ShortName": "en-US-JennyNeural",
            "Gender": "Female", "Locale": "en-US", "LocaleName": "English (United States)",
            "StyleList": ["assistant", "chat", "customerservice", "newscast", "angry", "cheerful",
                "sad", "excited", "friendly", "terrified", "shouting", "unfriendly", "whispering",
                "hopeful"],
            "SampleRateHertz": "24000", "VoiceType": "Neural", "Status": "GA",
            "ExtendedPropertyMap": {"IsHighQuality48K": "True"}, "WordsPerMinute": "152"
        }),
        json!({
            "Name": "Microsoft Server Speech Text to Speech Voice (ga-IE, OrlaNeural)",
            "DisplayName": "Orla", "LocalName": "Orla", "ShortName": "ga-IE-OrlaNeural",
            "Gender": "Female", "Locale": "ga-IE", "LocaleName": "Irish (Ireland)",
            "SampleRateHertz": "24000", "VoiceType": "Neural", "Status": "GA",
            "WordsPerMinute": "139"
        }),
        json!({
            "Name": "Microsoft Server Speech Text to Speech Voice (zh-CN, YunxiNeural)",
            "DisplayName": "Yunxi", "LocalName": "云希", "ShortName": "zh-CN-YunxiNeural",
            "Gender": "Male", "Locale": "zh-CN", "LocaleName": "Chinese (Mandarin, Simplified)",
            "StyleList": ["narration-relaxed", "embarrassed", "fearful", "cheerful", "sad"],
            "SampleRateHertz": "24000", "VoiceType": "Neural", "Status": "GA",
            "RolePlayList": ["Narrator", "YoungAdultMale", "Boy"], "WordsPerMinute": "293"
        }),
    ]
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            key: "azure-test-key".to_owned(),
            fault: Fault::None,
            fault_on: None,
            voices_fault: Fault::None,
            ms_per_char: 20,
            chunk_bytes: 960,
            chunk_delay: Duration::from_millis(2),
            voices: default_voices(),
        }
    }
}

impl FakeOptions {
    /// Options accepting `key`.
    pub fn new(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            ..Self::default()
        }
    }

    /// Sets the synthesis fault.
    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = fault;
        self
    }

    /// Applies the synthesis fault to synthesis `index` only.
    pub fn fault_on(mut self, index: usize) -> Self {
        self.fault_on = Some(index);
        self
    }

    /// Sets the listing fault.
    pub fn voices_fault(mut self, fault: Fault) -> Self {
        self.voices_fault = fault;
        self
    }

    /// Sets the chunk size.
    pub fn chunk_bytes(mut self, n: usize) -> Self {
        self.chunk_bytes = n;
        self
    }
}

/// What the fake understood of an SSML body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Ssml {
    /// `version` of `<speak>`.
    pub version: String,
    /// `xml:lang` of `<speak>`.
    pub lang: String,
    /// Whether `xmlns:mstts` was declared.
    pub mstts_declared: bool,
    /// The `name` of the first `<voice>`.
    pub voice: String,
    /// The text inside voices, entities decoded, whitespace runs collapsed to one space.
    pub text: String,
    /// The `rate` of the first `<prosody>`.
    pub rate: Option<String>,
    /// `style` of the first `<mstts:express-as>`.
    pub style: Option<String>,
    /// `styledegree` of the first `<mstts:express-as>`.
    pub style_degree: Option<String>,
    /// `role` of the first `<mstts:express-as>`.
    pub role: Option<String>,
    /// Every element name, in document order.
    pub elements: Vec<String>,
}

impl Ssml {
    /// The rate factor of `rate` (`+10%` → 1.1, `-20%` → 0.8, `1.5` → 1.5, named values per
    /// the prosody table), clamped to 0.5–2; 1 when absent or unreadable.
    pub fn rate_factor(&self) -> f64 {
        let Some(r) = self.rate.as_deref().map(str::trim) else {
            return 1.0;
        };
        let f = match r {
            "x-slow" => 0.5,
            "slow" => 0.64,
            "medium" | "default" => 1.0,
            "fast" => 1.55,
            "x-fast" => 2.0,
            p if p.ends_with('%') => p[..p.len() - 1]
                .parse::<f64>()
                .map_or(1.0, |v| 1.0 + v / 100.0),
            n => n.parse::<f64>().unwrap_or(1.0),
        };
        if f.is_finite() {
            f.clamp(0.5, 2.0)
        } else {
            1.0
        }
    }
}

/// One synthesis request as received and answered.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthLog {
    /// Path, query and headers.
    pub request: SeenRequest,
    /// The body as received (lossy UTF-8).
    pub body: String,
    /// The parsed SSML (`None` when it did not parse).
    pub ssml: Option<Ssml>,
    /// The status answered.
    pub status: u16,
    /// Why a 4xx was answered, if one was.
    pub rejection: Option<String>,
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
    syntheses: Mutex<Vec<Arc<Mutex<SynthLog>>>>,
    listings: Mutex<Vec<SeenRequest>>,
    tokens: Mutex<Vec<String>>,
    release: watch::Sender<bool>,
}

impl Shared {
    fn fault_for(&self, index: usize) -> Fault {
        match self.opts.fault_on {
            Some(i) if i != index => Fault::None,
            _ => self.opts.fault.clone(),
        }
    }
}

/// The fake service. Stops when dropped.
#[derive(Debug)]
pub struct AzureTtsFake {
    http: HttpFake,
    shared: Arc<Shared>,
}

impl AzureTtsFake {
    /// Starts a fake accepting `key`, behaving.
    pub async fn start(key: impl Into<String>) -> Self {
        Self::with_options(FakeOptions::new(key)).await
    }

    /// Starts a fake with `opts`.
    pub async fn with_options(opts: FakeOptions) -> Self {
        let shared = Arc::new(Shared {
            opts,
            syntheses: Mutex::default(),
            listings: Mutex::default(),
            tokens: Mutex::default(),
            release: watch::channel(false).0,
        });
        let router = Router::new()
            .route("/cognitiveservices/v1", post(synthesize))
            .route("/cognitiveservices/voices/list", get(voices))
            .route("/sts/v1.0/issueToken", post(issue_token))
            .with_state(shared.clone());
        let http = HttpFake::start(router).await;
        Self { http, shared }
    }

    /// `http://127.0.0.1:port`: the `base_url` to configure.
    pub fn base_url(&self) -> String {
        self.http.base_url()
    }

    /// Every synthesis request so far, in arrival order.
    pub fn syntheses(&self) -> Vec<SynthLog> {
        let logs = self.shared.syntheses.lock().expect("lock");
        logs.iter()
            .map(|l| l.lock().expect("log lock").clone())
            .collect()
    }

    /// Every voice listing request so far.
    pub fn listings(&self) -> Vec<SeenRequest> {
        self.shared.listings.lock().expect("lock").clone()
    }

    /// Lets [`Fault::HoldAfterFirstChunk`] continue (for every held and later response).
    pub fn release(&self) {
        self.shared.release.send_replace(true);
    }

    /// Waits (polling, at most `timeout`) until synthesis `index` exists and `pred` holds.
    pub async fn wait_for_synthesis(
        &self,
        index: usize,
        timeout: Duration,
        pred: impl Fn(&SynthLog) -> bool,
    ) -> Option<SynthLog> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(l) = self.syntheses().into_iter().nth(index).filter(&pred) {
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

fn text(status: u16, body: impl Into<String>) -> Response {
    (
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
        [("content-type", "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn authorized(st: &Shared, headers: &HeaderMap) -> bool {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    if get("ocp-apim-subscription-key") == Some(st.opts.key.as_str()) {
        return true;
    }
    get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| st.tokens.lock().expect("lock").iter().any(|k| k == t))
}

fn denied() -> Response {
    let body = json!({"error": {"code": "401", "message": ACCESS_DENIED}});
    (
        StatusCode::UNAUTHORIZED,
        [("content-type", "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn fault_status(fault: &Fault) -> Option<Response> {
    let Fault::Status {
        status,
        body,
        headers,
    } = fault
    else {
        return None;
    };
    let mut r = text(*status, body.clone());
    for (n, v) in headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::try_from(n.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            r.headers_mut().append(n, v);
        }
    }
    Some(r)
}

async fn issue_token(State(st): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if headers
        .get("ocp-apim-subscription-key")
        .and_then(|v| v.to_str().ok())
        != Some(st.opts.key.as_str())
    {
        return denied();
    }
    let mut tokens = st.tokens.lock().expect("lock");
    let token = format!("fake-token-{}", tokens.len() + 1);
    tokens.push(token.clone());
    text(200, token)
}

async fn voices(State(st): State<Arc<Shared>>, uri: Uri, headers: HeaderMap) -> Response {
    st.listings.lock().expect("lock").push(seen(&uri, &headers));
    if !authorized(&st, &headers) {
        return denied();
    }
    let fault = st.opts.voices_fault.clone();
    if let Some(r) = fault_status(&fault) {
        return r;
    }
    let json_head = [("content-type", "application/json; charset=utf-8")];
    match fault {
        Fault::Garbage => (StatusCode::OK, json_head, "[{\"ShortName\": \"en-US-").into_response(),
        Fault::Silent => {
            let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            (StatusCode::OK, json_head, Body::from_stream(never)).into_response()
        }
        Fault::NoResponse => std::future::pending().await,
        _ => (
            StatusCode::OK,
            json_head,
            Value::Array(st.opts.voices.clone()).to_string(),
        )
            .into_response(),
    }
}

async fn synthesize(
    State(st): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let log = Arc::new(Mutex::new(SynthLog {
        request: seen(&uri, &headers),
        body: String::from_utf8_lossy(&body).into_owned(),
        ssml: None,
        status: 0,
        rejection: None,
        chunks_sent: 0,
        bytes_sent: 0,
        completed: false,
        client_gone: false,
    }));
    let index = {
        let mut all = st.syntheses.lock().expect("lock");
        all.push(log.clone());
        all.len() - 1
    };
    let r = synthesize_inner(&st, index, &uri, &headers, &body, &log).await;
    log.lock().expect("log lock").status = r.status().as_u16();
    r
}

async fn synthesize_inner(
    st: &Arc<Shared>,
    index: usize,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    log: &Arc<Mutex<SynthLog>>,
) -> Response {
    let reject = |status: u16, why: String| {
        log.lock().expect("log lock").rejection = Some(why.clone());
        text(status, why)
    };
    if !authorized(st, headers) {
        return denied();
    }
    let fault = st.fault_for(index);
    if let Some(r) = fault_status(&fault) {
        return r;
    }
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let content_type = get("content-type").unwrap_or("");
    if content_type.split(';').next().map(str::trim) != Some("application/ssml+xml") {
        return reject(415, format!("Unsupported media type {content_type:?}"));
    }
    match get("user-agent") {
        None | Some("") => return reject(400, "User-Agent header is required".into()),
        Some(ua) if ua.chars().count() >= 255 => {
            return reject(400, "User-Agent header is too long".into())
        }
        Some(_) => {}
    }
    let format = get("x-microsoft-outputformat").unwrap_or("");
    if !STREAMING_FORMATS.contains(&format) && !RIFF_FORMATS.contains(&format) {
        return reject(400, format!("Unsupported output format {format:?}"));
    }
    let Ok(body) = std::str::from_utf8(body) else {
        return reject(400, "The SSML is not valid UTF-8".into());
    };
    let ssml = match parse_ssml(body) {
        Ok(s) => s,
        Err(e) => return reject(400, format!("Invalid SSML: {e}")),
    };
    log.lock().expect("log lock").ssml = Some(ssml.clone());
    let custom = uri
        .query()
        .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("deploymentId=")));
    let known = st
        .opts
        .voices
        .iter()
        .any(|v| v["ShortName"].as_str() == Some(ssml.voice.as_str()));
    if !custom && !known {
        return reject(400, format!("Unsupported voice {}", ssml.voice));
    }
    let head = |ct: &'static str| [("content-type", ct)];
    let ct = content_type_for(format);
    match fault {
        Fault::Garbage => {
            return (
                StatusCode::OK,
                head("text/html"),
                "<html><body>Service temporarily moved</body></html>",
            )
                .into_response()
        }
        Fault::Silent => {
            let never = futures::stream::pending::<Result<Bytes, std::io::Error>>();
            return (StatusCode::OK, head(ct), Body::from_stream(never)).into_response();
        }
        Fault::NoResponse => return std::future::pending().await,
        _ => {}
    }
    let audio = speech_audio(&ssml.text, format, ssml.rate_factor(), st.opts.ms_per_char);
    let (tx, mut rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let opts = st.opts.clone();
    let mut release = st.release.subscribe();
    let plog = log.clone();
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
                            plog.lock().expect("log lock").client_gone = true;
                            return;
                        }
                    }
                }
                tokio::time::sleep(opts.chunk_delay).await;
            }
            let len = chunk.len();
            if tx.send(Ok(chunk)).await.is_err() {
                plog.lock().expect("log lock").client_gone = true;
                return;
            }
            let mut l = plog.lock().expect("log lock");
            l.chunks_sent += 1;
            l.bytes_sent += len;
        }
        plog.lock().expect("log lock").completed = true;
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
    (StatusCode::OK, head(ct), Body::from_stream(stream)).into_response()
}

/// The guessed `Content-Type` of a format's audio (**UNCONFIRMED**).
fn content_type_for(format: &str) -> &'static str {
    if format.starts_with("riff-") {
        "audio/x-wav"
    } else if format.ends_with("-mp3") {
        "audio/mpeg"
    } else if format.starts_with("ogg-") {
        "audio/ogg"
    } else if format.starts_with("webm-") {
        "audio/webm"
    } else {
        "application/octet-stream"
    }
}

/// The sample rate a format name carries (`24khz`, `22050hz`, `16000hz`).
pub fn format_rate(format: &str) -> Option<u32> {
    format.split('-').find_map(|part| {
        if let Some(k) = part.strip_suffix("khz") {
            k.parse::<u32>().ok().map(|k| k * 1000)
        } else {
            part.strip_suffix("hz").and_then(|h| h.parse().ok())
        }
    })
}

/// The fake's audio for `text` in `format`: a 440 Hz tone of `ms_per_char` per character,
/// divided by `rate`.
pub fn speech_audio(text: &str, format: &str, rate: f64, ms_per_char: u32) -> Vec<u8> {
    let chars = text.chars().filter(|c| !c.is_whitespace()).count().max(1) as f64;
    let ms = chars * f64::from(ms_per_char) / rate.clamp(0.5, 2.0);
    let sr = format_rate(format).unwrap_or(24_000);
    let n = (ms * f64::from(sr) / 1000.0).round().max(1.0) as usize;
    let step = 2.0 * std::f64::consts::PI * 440.0 / f64::from(sr);
    let samples: Vec<i16> = (0..n)
        .map(|i| ((i as f64 * step).sin() * 8_000.0) as i16)
        .collect();
    let pcm = || -> Vec<u8> { samples.iter().flat_map(|s| s.to_le_bytes()).collect() };
    let riff = |tag: u16, bits: u16, data: Vec<u8>| -> Vec<u8> {
        let block = bits / 8;
        let mut out = Vec::with_capacity(data.len() + 44);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&sr.to_le_bytes());
        out.extend_from_slice(&(sr * u32::from(block)).to_le_bytes());
        out.extend_from_slice(&block.to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&data);
        out
    };
    let mulaw = || -> Vec<u8> { samples.iter().map(|&s| codec::mulaw_encode(s)).collect() };
    let alaw = || -> Vec<u8> { samples.iter().map(|&s| codec::alaw_encode(s)).collect() };
    match format {
        f if f.starts_with("raw-") && f.ends_with("-pcm") => pcm(),
        "raw-8khz-8bit-mono-mulaw" => mulaw(),
        "raw-8khz-8bit-mono-alaw" => alaw(),
        "riff-8khz-8bit-mono-mulaw" => riff(7, 8, mulaw()),
        "riff-8khz-8bit-mono-alaw" => riff(6, 8, alaw()),
        f if f.starts_with("riff-") => riff(1, 16, pcm()),
        other => {
            let len = ((ms * 4.0) as usize).max(16);
            let magic: &[u8] = if other.ends_with("-mp3") {
                &[0xFF, 0xFB, 0x90, 0x64]
            } else if other.starts_with("ogg-") {
                b"OggS"
            } else if other.starts_with("webm-") {
                &[0x1A, 0x45, 0xDF, 0xA3]
            } else if other.starts_with("amr-wb") {
                b"#!AMR-WB\n"
            } else {
                &[0x02, 0x23]
            };
            let mut out = magic.to_vec();
            out.extend((magic.len()..len).map(|i| (i * 31 + 7) as u8));
            out
        }
    }
}

/// One XML token.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Start {
        name: String,
        attrs: Vec<(String, String)>,
        empty: bool,
    },
    End(String),
    Text(String),
}

fn decode_entities(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after.find(';').ok_or("unterminated entity")?;
        let name = &after[..end];
        let c = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            n if n.starts_with("#x") => u32::from_str_radix(&n[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad character reference &{n};"))?,
            n if n.starts_with('#') => n[1..]
                .parse::<u32>()
                .ok()
                .and_then(char::from_u32)
                .ok_or_else(|| format!("bad character reference &{n};"))?,
            n => return Err(format!("unknown entity &{n};")),
        };
        out.push(c);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_name_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, ':' | '_' | '-' | '.')
}

fn tokenize(doc: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = doc;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("<?") {
            let end = r.find("?>").ok_or("unterminated declaration")?;
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("<!--") {
            let end = r.find("-->").ok_or("unterminated comment")?;
            rest = &r[end + 3..];
        } else if let Some(r) = rest.strip_prefix("</") {
            let end = r.find('>').ok_or("unterminated end tag")?;
            let name = r[..end].trim();
            if name.is_empty() || !name.chars().all(is_name_char) {
                return Err(format!("bad end tag </{name}>"));
            }
            out.push(Token::End(name.to_owned()));
            rest = &r[end + 1..];
        } else if let Some(r) = rest.strip_prefix('<') {
            let name_end = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
            let name = &r[..name_end];
            if name.is_empty() {
                return Err("a '<' that opens no tag".into());
            }
            let mut r = &r[name_end..];
            let mut attrs: Vec<(String, String)> = Vec::new();
            let empty = loop {
                r = r.trim_start();
                if let Some(x) = r.strip_prefix("/>") {
                    r = x;
                    break true;
                }
                if let Some(x) = r.strip_prefix('>') {
                    r = x;
                    break false;
                }
                let an_end = r.find(|c: char| !is_name_char(c)).unwrap_or(r.len());
                let an = &r[..an_end];
                if an.is_empty() {
                    return Err(format!("bad attribute in <{name}>"));
                }
                r = r[an_end..].trim_start();
                r = r
                    .strip_prefix('=')
                    .ok_or_else(|| format!("attribute {an} without a value"))?
                    .trim_start();
                let q = r.chars().next().filter(|c| matches!(c, '\'' | '"'));
                let q = q.ok_or_else(|| format!("attribute {an} is not quoted"))?;
                let v_end = r[1..]
                    .find(q)
                    .ok_or_else(|| format!("unterminated value of {an}"))?;
                let raw = &r[1..1 + v_end];
                if raw.contains('<') {
                    return Err(format!("'<' in the value of {an}"));
                }
                if attrs.iter().any(|(n, _)| n == an) {
                    return Err(format!("duplicate attribute {an}"));
                }
                attrs.push((an.to_owned(), decode_entities(raw)?));
                r = &r[1 + v_end + 1..];
            };
            out.push(Token::Start {
                name: name.to_owned(),
                attrs,
                empty,
            });
            rest = r;
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let raw = &rest[..end];
            if raw.contains('>') {
                // Legal XML, but never what an escaping client sends.
                return Err("unescaped '>' in text".into());
            }
            out.push(Token::Text(decode_entities(raw)?));
            rest = &rest[end..];
        }
    }
    Ok(out)
}

/// Parses an SSML document the way the fake checks it (see the module docs).
pub fn parse_ssml(doc: &str) -> Result<Ssml, String> {
    let tokens = tokenize(doc.trim_start_matches('\u{feff}'))?;
    let mut ssml = Ssml::default();
    let mut stack: Vec<String> = Vec::new();
    let mut voice_depth: Option<usize> = None;
    let mut seen_root = false;
    let mut text = String::new();
    for t in tokens {
        match t {
            Token::Start { name, attrs, empty } => {
                let attr = |n: &str| attrs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                if stack.is_empty() {
                    if seen_root {
                        return Err("more than one root element".into());
                    }
                    if name != "speak" {
                        return Err(format!("the root is <{name}>, not <speak>"));
                    }
                    seen_root = true;
                    ssml.version = attr("version").ok_or("<speak> has no version")?;
                    if ssml.version != "1.0" {
                        return Err(format!("unsupported version {}", ssml.version));
                    }
                    if attr("xmlns").as_deref() != Some(SSML_NS) {
                        return Err("<speak> lacks the SSML namespace".into());
                    }
                    ssml.lang = attr("xml:lang").ok_or("<speak> has no xml:lang")?;
                    ssml.mstts_declared = attr("xmlns:mstts").is_some();
                } else if name.starts_with("mstts:") && !ssml.mstts_declared {
                    return Err(format!("<{name}> without the mstts namespace"));
                }
                match name.as_str() {
                    "voice" => {
                        if voice_depth.is_some() {
                            return Err("nested <voice>".into());
                        }
                        let n = attr("name").filter(|n| !n.is_empty());
                        let n = n.ok_or("<voice> has no name")?;
                        if ssml.voice.is_empty() {
                            ssml.voice = n;
                        }
                        voice_depth = Some(stack.len());
                    }
                    "prosody" if ssml.rate.is_none() => ssml.rate = attr("rate"),
                    "mstts:express-as" if ssml.style.is_none() => {
                        ssml.style = attr("style");
                        ssml.style_degree = attr("styledegree");
                        ssml.role = attr("role");
                    }
                    _ => {}
                }
                ssml.elements.push(name.clone());
                if empty {
                    if name == "voice" {
                        voice_depth = None;
                    }
                } else {
                    stack.push(name);
                }
            }
            Token::End(name) => {
                match stack.pop() {
                    Some(open) if open == name => {}
                    Some(open) => return Err(format!("</{name}> closes <{open}>")),
                    None => return Err(format!("</{name}> with nothing open")),
                }
                if voice_depth == Some(stack.len()) {
                    voice_depth = None;
                    text.push(' ');
                }
            }
            Token::Text(t) => {
                if voice_depth.is_some() {
                    text.push_str(&t);
                } else if !t.trim().is_empty() {
                    return Err("text outside <voice>".into());
                }
            }
        }
    }
    if !stack.is_empty() {
        return Err(format!("<{}> is never closed", stack.join("> <")));
    }
    if !seen_root {
        return Err("no <speak> element".into());
    }
    if ssml.voice.is_empty() {
        return Err("no <voice> element".into());
    }
    ssml.text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    Ok(ssml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_docs_example() {
        let doc = r#"<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" xmlns:mstts="https://www.w3.org/2001/mstts" xml:lang="en-US">
  <voice name="en-US-JennyNeural">
    <mstts:express-as style="cheerful" styledegree="1.5" role="YoungAdultFemale">Great to see you!</mstts:express-as>
    <prosody rate="+10%" pitch="+2st">Let&apos;s begin &amp; go.</prosody>
  </voice>
</speak>"#;
        let s = parse_ssml(doc).unwrap();
        assert_eq!(s.voice, "en-US-JennyNeural");
        assert_eq!(s.text, "Great to see you! Let's begin & go.");
        assert_eq!(s.style.as_deref(), Some("cheerful"));
        assert_eq!(s.style_degree.as_deref(), Some("1.5"));
        assert_eq!(s.role.as_deref(), Some("YoungAdultFemale"));
        assert!((s.rate_factor() - 1.1).abs() < 1e-9);
        for bad in [
            "<speak version='1.0' xml:lang='en-US'><voice name='v'>x</voice></speak>",
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'><voice name='v'>a < b</voice></speak>",
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'><voice name='v'>x</speak>",
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'>x</speak>",
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'><voice name='v'><mstts:express-as style='sad'>x</mstts:express-as></voice></speak>",
            "<speak version='1.0' xmlns='http://www.w3.org/2001/10/synthesis' xml:lang='en-US'><voice name='v'>&nbsp;</voice></speak>",
        ] {
            assert!(parse_ssml(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn audio_follows_format_and_text() {
        assert_eq!(format_rate("raw-22050hz-16bit-mono-pcm"), Some(22_050));
        assert_eq!(format_rate("amr-wb-16000hz"), Some(16_000));
        assert_eq!(format_rate("ogg-48khz-16bit-mono-opus"), Some(48_000));
        let a = speech_audio("abcd", "raw-16khz-16bit-mono-pcm", 1.0, 10);
        assert_eq!(a.len(), 4 * 160 * 2);
        let fast = speech_audio("abcd", "raw-16khz-16bit-mono-pcm", 2.0, 10);
        assert_eq!(fast.len(), a.len() / 2);
        assert_eq!(
            speech_audio("abcd", "raw-8khz-8bit-mono-mulaw", 1.0, 10).len(),
            320
        );
        assert!(speech_audio("abcd", "riff-24khz-16bit-mono-pcm", 1.0, 10).starts_with(b"RIFF"));
        assert!(speech_audio("abcd", "ogg-24khz-16bit-mono-opus", 1.0, 10).starts_with(b"OggS"));
    }
}
