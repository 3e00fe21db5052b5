//! Fake AWS speech services: Amazon Polly (`SynthesizeSpeech`, `DescribeVoices`; SigV4-signed
//! REST) and Amazon Transcribe streaming over WebSocket (a SigV4 presigned URL, audio and
//! results as `application/vnd.amazon.eventstream` messages).
//!
//! Wire facts: `/work/shared/providers/TTS_PROTOCOLS.md` §7, `STT_PROTOCOLS.md` §8; botocore
//! `polly/2016-06-10/service-2.json`; the Transcribe Developer Guide "Using Amazon Transcribe
//! streaming with WebSockets" (`websocket.md`: URL, frame headers, exception frames followed by
//! a close) and "Event stream encoding".
//!
//! The fakes check the shape of the signature (algorithm, credential scope, signed headers,
//! a 64-hex signature, the date, the session token) but do not recompute it: the testkit has no
//! HMAC. Tests that want the signature itself verified re-sign the recorded request with the
//! provider kit's signer at the recorded `x-amz-date` (it is deterministic for a fixed time).
//! The event-stream codec here is written independently of the client's (`aws-smithy-eventstream`),
//! so a frame that passes both is byte-exact to the format.

pub use eventstream::{EsHeader, EsMessage};

/// The `application/vnd.amazon.eventstream` framing, independently of the AWS crates:
/// prelude (total length, headers length, prelude CRC), headers, payload, message CRC, all
/// CRC-32 (IEEE) big-endian.
pub mod eventstream {
    /// A header value (the types this API uses: 6 bytes, 7 string, 8 timestamp; others kept
    /// as raw bytes).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum EsHeader {
        /// Type 7.
        String(String),
        /// Type 6.
        Bytes(Vec<u8>),
        /// Type 8, milliseconds since the epoch.
        Timestamp(i64),
        /// Any other type: its type byte and raw value.
        Other(u8, Vec<u8>),
    }

    /// A decoded message.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct EsMessage {
        /// Headers in wire order.
        pub headers: Vec<(String, EsHeader)>,
        /// The payload.
        pub payload: Vec<u8>,
    }

    impl EsMessage {
        /// The string value of header `name`.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find_map(|(n, v)| match v {
                EsHeader::String(s) if n == name => Some(s.as_str()),
                _ => None,
            })
        }

        /// A message with string headers.
        pub fn new(headers: &[(&str, &str)], payload: impl Into<Vec<u8>>) -> Self {
            Self {
                headers: headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), EsHeader::String((*v).to_owned())))
                    .collect(),
                payload: payload.into(),
            }
        }
    }

    /// CRC-32 (IEEE 802.3, reflected 0xEDB88320), bitwise.
    pub fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// Encodes a message for the wire.
    pub fn encode(msg: &EsMessage) -> Vec<u8> {
        let mut headers = Vec::new();
        for (name, value) in &msg.headers {
            headers.push(name.len() as u8);
            headers.extend_from_slice(name.as_bytes());
            match value {
                EsHeader::String(s) => {
                    headers.push(7);
                    headers.extend_from_slice(&(s.len() as u16).to_be_bytes());
                    headers.extend_from_slice(s.as_bytes());
                }
                EsHeader::Bytes(b) => {
                    headers.push(6);
                    headers.extend_from_slice(&(b.len() as u16).to_be_bytes());
                    headers.extend_from_slice(b);
                }
                EsHeader::Timestamp(t) => {
                    headers.push(8);
                    headers.extend_from_slice(&t.to_be_bytes());
                }
                EsHeader::Other(t, raw) => {
                    headers.push(*t);
                    headers.extend_from_slice(raw);
                }
            }
        }
        let total = 16 + headers.len() + msg.payload.len();
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&(total as u32).to_be_bytes());
        out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        let prelude_crc = crc32(&out);
        out.extend_from_slice(&prelude_crc.to_be_bytes());
        out.extend_from_slice(&headers);
        out.extend_from_slice(&msg.payload);
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes exactly one message filling `frame`, checking lengths and both CRCs.
    pub fn decode(frame: &[u8]) -> Result<EsMessage, String> {
        if frame.len() < 16 {
            return Err(format!("frame of {} bytes is shorter than 16", frame.len()));
        }
        let be =
            |i: usize| u32::from_be_bytes([frame[i], frame[i + 1], frame[i + 2], frame[i + 3]]);
        let total = be(0) as usize;
        let hlen = be(4) as usize;
        if total != frame.len() {
            return Err(format!(
                "total length {total} but the frame has {}",
                frame.len()
            ));
        }
        if be(8) != crc32(&frame[..8]) {
            return Err("prelude CRC mismatch".into());
        }
        if be(total - 4) != crc32(&frame[..total - 4]) {
            return Err("message CRC mismatch".into());
        }
        if 12 + hlen > total - 4 {
            return Err("headers overrun the frame".into());
        }
        let mut h = &frame[12..12 + hlen];
        let mut headers = Vec::new();
        let take = |h: &mut &[u8], n: usize| -> Result<Vec<u8>, String> {
            if h.len() < n {
                return Err("truncated header".into());
            }
            let (a, b) = h.split_at(n);
            *h = b;
            Ok(a.to_vec())
        };
        while !h.is_empty() {
            let n = take(&mut h, 1)?[0] as usize;
            let name = String::from_utf8(take(&mut h, n)?).map_err(|_| "header name not UTF-8")?;
            let t = take(&mut h, 1)?[0];
            let value = match t {
                0 | 1 => EsHeader::Other(t, Vec::new()),
                2 => EsHeader::Other(t, take(&mut h, 1)?),
                3 => EsHeader::Other(t, take(&mut h, 2)?),
                4 => EsHeader::Other(t, take(&mut h, 4)?),
                5 => EsHeader::Other(t, take(&mut h, 8)?),
                6 | 7 => {
                    let l = take(&mut h, 2)?;
                    let v = take(&mut h, u16::from_be_bytes([l[0], l[1]]) as usize)?;
                    if t == 7 {
                        EsHeader::String(
                            String::from_utf8(v).map_err(|_| "header value not UTF-8")?,
                        )
                    } else {
                        EsHeader::Bytes(v)
                    }
                }
                8 => {
                    let v = take(&mut h, 8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(&v);
                    EsHeader::Timestamp(i64::from_be_bytes(a))
                }
                9 => EsHeader::Other(t, take(&mut h, 16)?),
                other => return Err(format!("unknown header type {other}")),
            };
            headers.push((name, value));
        }
        Ok(EsMessage {
            headers,
            payload: frame[12 + hlen..total - 4].to_vec(),
        })
    }
}

/// What a signed REST request must look like, and the checks of its SigV4 headers.
fn check_sigv4(
    headers: &axum::http::HeaderMap,
    creds: &FakeCredentials,
    service: &str,
) -> Result<(), &'static str> {
    let get = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let auth = get("authorization").ok_or("MissingAuthenticationTokenException")?;
    let date = get("x-amz-date").ok_or("IncompleteSignatureException")?;
    if !is_amz_date(date) {
        return Err("IncompleteSignatureException");
    }
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=")
        .ok_or("IncompleteSignatureException")?;
    let (scope, rest) = rest
        .split_once(", SignedHeaders=")
        .ok_or("IncompleteSignatureException")?;
    let (signed, sig) = rest
        .split_once(", Signature=")
        .ok_or("IncompleteSignatureException")?;
    let want = format!(
        "{}/{}/{}/{service}/aws4_request",
        creds.access_key_id,
        &date[..8],
        creds.region
    );
    if scope != want {
        return Err("UnrecognizedClientException");
    }
    if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("InvalidSignatureException");
    }
    let signed: Vec<&str> = signed.split(';').collect();
    if !signed.contains(&"host") || !signed.contains(&"x-amz-date") {
        return Err("InvalidSignatureException");
    }
    match (&creds.session_token, get("x-amz-security-token")) {
        (Some(want), Some(got)) if want == got && signed.contains(&"x-amz-security-token") => {}
        (None, None) => {}
        _ => return Err("UnrecognizedClientException"),
    }
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ`.
fn is_amz_date(d: &str) -> bool {
    let b = d.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// The credentials a fake accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCredentials {
    /// The access key id that must appear in the credential scope.
    pub access_key_id: String,
    /// The region that must appear in the credential scope.
    pub region: String,
    /// The session token that must be sent, if any (and none may be sent otherwise).
    pub session_token: Option<String>,
}

impl FakeCredentials {
    /// Credentials for `access_key_id` in `region`, without a session token.
    pub fn new(access_key_id: impl Into<String>, region: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            region: region.into(),
            session_token: None,
        }
    }

    /// Requires a session token.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.session_token = Some(token.into());
        self
    }
}

pub mod polly {
    //! Fake Amazon Polly: `POST /v1/speech` (audio streamed in chunks) and `GET /v1/voices`.

    use super::{check_sigv4, FakeCredentials};
    use crate::fakes::HttpFake;
    use axum::body::{Body, Bytes};
    use axum::extract::State;
    use axum::http::{HeaderMap, Method, StatusCode, Uri};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::Router;
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio::sync::watch;

    /// Milliseconds of audio per character of text.
    pub const MS_PER_CHAR: u32 = 10;

    /// The fake's audio for `text` in `format` (`pcm`: a 16-bit LE triangle tone, `mp3`: a
    /// deterministic byte pattern behind an `ID3` tag) at `rate`, `MS_PER_CHAR` per character.
    pub fn speech(text: &str, format: &str, rate: u32) -> Vec<u8> {
        let ms = text.chars().count() as u64 * u64::from(MS_PER_CHAR);
        let samples = (ms * u64::from(rate) / 1000) as usize;
        match format {
            "pcm" => (0..samples)
                .flat_map(|i| {
                    let p = (i % 40) as i32;
                    let v = if p < 20 {
                        p * 800 - 8000
                    } else {
                        (40 - p) * 800 - 8000
                    };
                    (v as i16).to_le_bytes()
                })
                .collect(),
            _ => {
                let mut out = b"ID3\x04\x00\x00\x00\x00\x00\x00".to_vec();
                out.extend((0..samples / 8).map(|i| (i * 31 % 251) as u8));
                out
            }
        }
    }

    /// A fault to inject.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub enum PollyFault {
        /// Behave.
        #[default]
        None,
        /// Answer with `status`, an `x-amzn-ErrorType` of `error_type`, a `{"message"}` body and
        /// optionally `retry-after`.
        Status {
            /// HTTP status.
            status: u16,
            /// The error name (also in the body's `__type`).
            error_type: String,
            /// The message.
            message: String,
            /// A `retry-after` in seconds.
            retry_after: Option<u64>,
        },
        /// 200 with a body that is not audio (`application/json` garbage).
        Garbage,
        /// Send this many chunks, then fail the body (a truncated stream).
        Truncate {
            /// Chunks sent before the failure.
            after_chunks: usize,
        },
        /// Send the response head, then nothing.
        Silent,
        /// Send the first chunk, then wait for [`PollyFake::release`].
        HoldAfterFirstChunk,
    }

    /// Options of the fake.
    #[derive(Debug, Clone)]
    pub struct PollyFakeOptions {
        /// Accepted credentials.
        pub credentials: FakeCredentials,
        /// The fault to inject on `/v1/speech` (and `Status` on `/v1/voices` too).
        pub fault: PollyFault,
        /// Bytes per audio chunk.
        pub chunk_bytes: usize,
        /// Delay between chunks.
        pub chunk_delay: Duration,
    }

    impl PollyFakeOptions {
        /// Defaults: 1600-byte chunks (50 ms at 16 kHz), 2 ms apart, no fault.
        pub fn new(credentials: FakeCredentials) -> Self {
            Self {
                credentials,
                fault: PollyFault::None,
                chunk_bytes: 1600,
                chunk_delay: Duration::from_millis(2),
            }
        }
    }

    /// One request the fake received.
    #[derive(Debug, Clone)]
    pub struct PollyRequest {
        /// `POST` or `GET`.
        pub method: String,
        /// Path and query.
        pub uri: String,
        /// Header names (lowercase) and values.
        pub headers: Vec<(String, String)>,
        /// The raw body.
        pub body: Vec<u8>,
    }

    impl PollyRequest {
        /// The first value of header `name`.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        /// The body as JSON (`Null` when it is not JSON).
        pub fn json(&self) -> Value {
            serde_json::from_slice(&self.body).unwrap_or(Value::Null)
        }
    }

    /// What happened to the bodies the fake streamed.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct StreamLog {
        /// Chunks handed to the connection.
        pub chunks_sent: usize,
        /// The whole body was sent.
        pub finished: bool,
        /// The body was dropped before it finished (the client went away).
        pub dropped_early: bool,
    }

    struct Shared {
        opts: PollyFakeOptions,
        requests: Mutex<Vec<PollyRequest>>,
        streams: Mutex<Vec<Arc<Mutex<StreamLog>>>>,
        release: watch::Sender<bool>,
    }

    /// The running fake. Stops when dropped.
    pub struct PollyFake {
        http: HttpFake,
        shared: Arc<Shared>,
    }

    impl std::fmt::Debug for PollyFake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PollyFake")
                .field("addr", &self.http.addr())
                .finish()
        }
    }

    /// The voices `GET /v1/voices` lists, over two pages (`NextToken`).
    pub fn voices() -> Vec<Value> {
        vec![
            json!({"Gender":"Female","Id":"Joanna","LanguageCode":"en-US","LanguageName":"US English",
                   "Name":"Joanna","AdditionalLanguageCodes":[],"SupportedEngines":["neural","standard"]}),
            json!({"Gender":"Male","Id":"Matthew","LanguageCode":"en-US","LanguageName":"US English",
                   "Name":"Matthew","SupportedEngines":["generative","neural","standard"]}),
            json!({"Gender":"Female","Id":"Aditi","LanguageCode":"en-IN","LanguageName":"Indian English",
                   "Name":"Aditi","AdditionalLanguageCodes":["hi-IN"],"SupportedEngines":["standard"]}),
        ]
    }

    impl PollyFake {
        /// Starts the fake on 127.0.0.1.
        pub async fn start(opts: PollyFakeOptions) -> Self {
            let shared = Arc::new(Shared {
                opts,
                requests: Mutex::new(Vec::new()),
                streams: Mutex::new(Vec::new()),
                release: watch::channel(false).0,
            });
            let router = Router::new()
                .route("/v1/speech", post(speech_handler))
                .route("/v1/voices", get(voices_handler))
                .with_state(shared.clone());
            Self {
                http: HttpFake::start(router).await,
                shared,
            }
        }

        /// `http://127.0.0.1:port`.
        pub fn base_url(&self) -> String {
            self.http.base_url()
        }

        /// Every request received.
        pub fn requests(&self) -> Vec<PollyRequest> {
            self.shared.requests.lock().expect("requests").clone()
        }

        /// The log of every audio body, in request order.
        pub fn streams(&self) -> Vec<StreamLog> {
            self.shared
                .streams
                .lock()
                .expect("streams")
                .iter()
                .map(|s| s.lock().expect("log").clone())
                .collect()
        }

        /// Lets held bodies (`HoldAfterFirstChunk`) continue.
        pub fn release(&self) {
            self.shared.release.send_replace(true);
        }
    }

    fn record(shared: &Shared, method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) {
        shared
            .requests
            .lock()
            .expect("requests")
            .push(PollyRequest {
                method: method.to_string(),
                uri: uri.to_string(),
                headers: headers
                    .iter()
                    .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
                    .collect(),
                body: body.to_vec(),
            });
    }

    /// A restJson1 error: `x-amzn-ErrorType` header and a `{"message"}` body.
    fn error(status: u16, name: &str, message: &str, retry_after: Option<u64>) -> Response {
        let mut b = Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST))
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "x-amzn-errortype",
                format!("{name}:http://internal.amazon.com/coral/com.amazonaws.polly/"),
            )
            .header("x-amzn-requestid", "fake-request-id");
        if let Some(s) = retry_after {
            b = b.header("retry-after", s.to_string());
        }
        b.body(Body::from(
            json!({"__type": name, "message": message}).to_string(),
        ))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }

    fn auth_error(name: &str) -> Response {
        error(
            403,
            name,
            "The security token included in the request is invalid.",
            None,
        )
    }

    /// Records a body's fate; notices when hyper drops it before the end.
    struct BodyGuard(Arc<Mutex<StreamLog>>);

    impl Drop for BodyGuard {
        fn drop(&mut self) {
            let mut l = self.0.lock().expect("log");
            if !l.finished {
                l.dropped_early = true;
            }
        }
    }

    async fn speech_handler(
        State(shared): State<Arc<Shared>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Response {
        record(&shared, &method, &uri, &headers, &body);
        let opts = &shared.opts;
        if let Err(name) = check_sigv4(&headers, &opts.credentials, "polly") {
            return auth_error(name);
        }
        if let PollyFault::Status {
            status,
            error_type,
            message,
            retry_after,
        } = &opts.fault
        {
            return error(*status, error_type, message, *retry_after);
        }
        let Ok(req) = serde_json::from_slice::<Value>(&body) else {
            return error(400, "SerializationException", "the body is not JSON", None);
        };
        let text = req["Text"].as_str().unwrap_or("");
        let format = req["OutputFormat"].as_str().unwrap_or("");
        let rate: u32 = req["SampleRate"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        if text.is_empty() || req["VoiceId"].as_str().is_none_or(str::is_empty) {
            return error(
                400,
                "ValidationException",
                "Text and VoiceId are required",
                None,
            );
        }
        let ok_rate = match format {
            "pcm" => [8000, 16000].contains(&rate),
            "mp3" | "ogg_vorbis" => [8000, 16000, 22050, 24000].contains(&rate),
            _ => return error(400, "ValidationException", "invalid OutputFormat", None),
        };
        if !ok_rate {
            return error(
                400,
                "InvalidSampleRateException",
                "The specified sample rate is not valid.",
                None,
            );
        }
        match req["TextType"].as_str() {
            Some("ssml") if !text.trim_start().starts_with("<speak") => {
                return error(
                    400,
                    "InvalidSsmlException",
                    "The SSML you provided is invalid.",
                    None,
                )
            }
            None | Some("text" | "ssml") => {}
            Some(_) => return error(400, "ValidationException", "invalid TextType", None),
        }
        if text.chars().count() > 6000 {
            return error(
                400,
                "TextLengthExceededException",
                "Maximum text length has been exceeded",
                None,
            );
        }
        if opts.fault == PollyFault::Garbage {
            return Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/json")
                .body(Body::from("{\"not\": \"audio\""))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        }
        let audio = speech(text, format, rate);
        let chunks: Vec<Bytes> = audio
            .chunks(opts.chunk_bytes.max(1))
            .map(Bytes::copy_from_slice)
            .collect();
        let log = Arc::new(Mutex::new(StreamLog::default()));
        shared.streams.lock().expect("streams").push(log.clone());
        let fault = opts.fault.clone();
        let delay = opts.chunk_delay;
        let release = shared.release.subscribe();
        let stream = futures::stream::unfold(
            (chunks.into_iter(), 0usize, BodyGuard(log), release),
            move |(mut it, sent, guard, mut release)| {
                let fault = fault.clone();
                async move {
                    if fault == PollyFault::Silent {
                        futures::future::pending::<()>().await;
                    }
                    if sent > 0 {
                        if fault == PollyFault::HoldAfterFirstChunk && sent == 1 {
                            let _ = release.wait_for(|r| *r).await;
                        }
                        if !delay.is_zero() {
                            tokio::time::sleep(delay).await;
                        }
                    }
                    if let PollyFault::Truncate { after_chunks } = fault {
                        if sent == after_chunks {
                            return Some((
                                Err(std::io::Error::other("truncated by the fake")),
                                (it, sent, guard, release),
                            ));
                        }
                    }
                    match it.next() {
                        Some(c) => {
                            guard.0.lock().expect("log").chunks_sent = sent + 1;
                            Some((Ok(c), (it, sent + 1, guard, release)))
                        }
                        None => {
                            guard.0.lock().expect("log").finished = true;
                            None
                        }
                    }
                }
            },
        );
        let content_type = match format {
            "pcm" => "audio/pcm",
            "mp3" => "audio/mpeg",
            _ => "audio/ogg",
        };
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", content_type)
            .header("x-amzn-requestcharacters", text.chars().count().to_string())
            .header("x-amzn-requestid", "fake-request-id")
            .body(Body::from_stream(stream))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }

    async fn voices_handler(
        State(shared): State<Arc<Shared>>,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
    ) -> Response {
        record(&shared, &method, &uri, &headers, &[]);
        let opts = &shared.opts;
        if let Err(name) = check_sigv4(&headers, &opts.credentials, "polly") {
            return auth_error(name);
        }
        if let PollyFault::Status {
            status,
            error_type,
            message,
            retry_after,
        } = &opts.fault
        {
            return error(*status, error_type, message, *retry_after);
        }
        let all = voices();
        let second = uri
            .query()
            .is_some_and(|q| q.contains("NextToken=page%2F2"));
        let body = if second {
            json!({"Voices": all[2..]})
        } else {
            json!({"Voices": all[..2], "NextToken": "page/2"})
        };
        Response::builder()
            .status(StatusCode::OK)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
    }
}

pub mod transcribe {
    //! Fake Amazon Transcribe streaming over WebSocket
    //! (`/stream-transcription-websocket`).
    //!
    //! Behaviour: checks the presigned query; decodes every binary frame as one event-stream
    //! message (CRCs checked; `AudioEvent` headers checked); sends a partial `TranscriptEvent`
    //! once `partial_after_ms` of audio arrived in a segment, and a final for the segment when
    //! `segment_ms` of audio arrived (0: only at the end) or when the empty `AudioEvent` (end of
    //! stream) arrives; after the end it sends the last final and closes with 1000.
    //! A [`TranscribeFault`] strikes after `after_events` audio events, or at the end of stream
    //! ([`FaultAt`]).

    use super::eventstream::{self, EsMessage};
    use super::FakeCredentials;
    use crate::fakes::{FakeSocket, Reject, SeenRequest, WsFake, WsMessage};
    use futures::{SinkExt, StreamExt};
    use serde_json::{json, Value};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;

    /// The path of the WebSocket endpoint.
    pub const PATH: &str = "/stream-transcription-websocket";

    /// A fault to inject, after `after_events` audio events of a connection.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub enum TranscribeFault {
        /// Behave.
        #[default]
        None,
        /// Refuse the upgrade.
        Reject(Reject),
        /// Send an exception message (`:exception-type` = `name`, `{"Message"}` payload), then
        /// close 1000, as the service does.
        Exception {
            /// e.g. `LimitExceededException`.
            name: String,
            /// The message.
            message: String,
        },
        /// Close with `code`.
        Close {
            /// The close code.
            code: u16,
            /// The reason.
            reason: String,
        },
        /// Send malformed messages (random bytes, a text frame, a bad CRC, an unknown event,
        /// bad JSON, a huge `Results` list), then carry on normally.
        Garbage,
        /// Stop reading and writing (the socket stays open).
        Silent,
        /// Drop the TCP connection without a close frame.
        Disconnect,
    }

    /// When the fault strikes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum FaultAt {
        /// After [`TranscribeFakeOptions::after_events`] audio events.
        #[default]
        AfterEvents,
        /// When the end of stream (the empty `AudioEvent`) arrives, instead of its last final
        /// and the normal close: the final it was owed never comes.
        EndOfStream,
        /// After the end of stream's last final was sent, instead of the normal close.
        AfterLastFinal,
    }

    /// Options of the fake.
    #[derive(Debug, Clone)]
    pub struct TranscribeFakeOptions {
        /// Accepted credentials.
        pub credentials: FakeCredentials,
        /// The words of each segment's transcript.
        pub words: Vec<String>,
        /// Audio of a segment before its partial.
        pub partial_after_ms: u64,
        /// Audio per segment (0: one segment ended by the end of stream).
        pub segment_ms: u64,
        /// Fault and when it strikes.
        pub fault: TranscribeFault,
        /// Audio events before the fault (with [`FaultAt::AfterEvents`]).
        pub after_events: usize,
        /// When the fault strikes.
        pub fault_at: FaultAt,
        /// Speaker label put on the items (`show-speaker-label`), if any.
        pub speaker: Option<String>,
    }

    impl TranscribeFakeOptions {
        /// "hello world" segments, partial after 100 ms, one segment per stream, no fault.
        pub fn new(credentials: FakeCredentials) -> Self {
            Self {
                credentials,
                words: vec!["hello".into(), "world".into()],
                partial_after_ms: 100,
                segment_ms: 0,
                fault: TranscribeFault::None,
                after_events: 0,
                fault_at: FaultAt::AfterEvents,
                speaker: None,
            }
        }
    }

    /// What one connection did.
    #[derive(Debug, Clone, Default)]
    pub struct TranscribeSession {
        /// The upgrade request.
        pub request: Option<SeenRequest>,
        /// Raw binary frames received (the first 64).
        pub frames: Vec<Vec<u8>>,
        /// Audio payloads concatenated.
        pub audio: Vec<u8>,
        /// Non-empty audio events.
        pub audio_events: usize,
        /// The empty `AudioEvent` (end of stream) arrived.
        pub ended: bool,
        /// Pings received.
        pub pings: usize,
        /// The client closed the socket (close frame).
        pub client_closed: bool,
        /// Protocol violations seen (bad frames, wrong headers, frames after the end).
        pub violations: Vec<String>,
    }

    struct Shared {
        opts: TranscribeFakeOptions,
        sessions: Mutex<Vec<Arc<Mutex<TranscribeSession>>>>,
    }

    /// The running fake. Stops when dropped.
    pub struct TranscribeFake {
        ws: WsFake,
        shared: Arc<Shared>,
    }

    impl std::fmt::Debug for TranscribeFake {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("TranscribeFake")
                .field("addr", &self.ws.addr())
                .finish()
        }
    }

    /// Checks the presigned query of an upgrade (`websocket.md`, "Creating a pre-signed URL").
    pub fn check_presigned(req: &SeenRequest, creds: &FakeCredentials) -> Result<(), String> {
        if req.path() != PATH {
            return Err(format!("wrong path {}", req.path()));
        }
        let q = |n: &str| req.query(n).ok_or_else(|| format!("missing {n}"));
        if q("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
            return Err("X-Amz-Algorithm".into());
        }
        let date = q("X-Amz-Date")?;
        if !super::is_amz_date(date) {
            return Err("X-Amz-Date".into());
        }
        let scope = format!(
            "{}%2F{}%2F{}%2Ftranscribe%2Faws4_request",
            creds.access_key_id,
            &date[..8],
            creds.region
        );
        if q("X-Amz-Credential")? != scope {
            return Err(format!("X-Amz-Credential is not {scope}"));
        }
        match q("X-Amz-Expires")?.parse::<u64>() {
            Ok(1..=300) => {}
            _ => return Err("X-Amz-Expires must be 1..=300".into()),
        }
        if q("X-Amz-SignedHeaders")? != "host" {
            return Err("X-Amz-SignedHeaders must be host".into());
        }
        let sig = q("X-Amz-Signature")?;
        if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err("X-Amz-Signature".into());
        }
        let token = req.query("X-Amz-Security-Token").map(percent_decode);
        if token != creds.session_token {
            return Err("X-Amz-Security-Token".into());
        }
        if q("language-code")?.is_empty() || q("media-encoding")? != "pcm" {
            return Err("language-code / media-encoding".into());
        }
        match q("sample-rate")?.parse::<u32>() {
            Ok(8_000..=48_000) => Ok(()),
            _ => Err("sample-rate".into()),
        }
    }

    fn percent_decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
            }
            out.push(b[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    impl TranscribeFake {
        /// Starts the fake on 127.0.0.1.
        pub async fn start(opts: TranscribeFakeOptions) -> Self {
            let shared = Arc::new(Shared {
                opts,
                sessions: Mutex::new(Vec::new()),
            });
            let s1 = shared.clone();
            let s2 = shared.clone();
            let ws = WsFake::start_with(
                move |req: &SeenRequest| {
                    if let TranscribeFault::Reject(r) = &s1.opts.fault {
                        return Err(r.clone());
                    }
                    check_presigned(req, &s1.opts.credentials).map_err(|m| {
                        Reject::status(403).body(
                            json!({"message": format!("The request signature we calculated does not match: {m}")})
                                .to_string(),
                        )
                    })
                },
                move |req, socket| {
                    let shared = s2.clone();
                    async move { serve(shared, req, socket).await }
                },
            )
            .await;
            Self { ws, shared }
        }

        /// `ws://127.0.0.1:port`.
        pub fn base_url(&self) -> String {
            self.ws.base_url()
        }

        /// Every upgrade request, accepted or not.
        pub fn requests(&self) -> Vec<SeenRequest> {
            self.ws.requests()
        }

        /// Every accepted connection, in order.
        pub fn sessions(&self) -> Vec<TranscribeSession> {
            self.shared
                .sessions
                .lock()
                .expect("sessions")
                .iter()
                .map(|s| s.lock().expect("session").clone())
                .collect()
        }
    }

    /// The `TranscriptEvent` message for one result.
    pub fn transcript_event(result: Value) -> Vec<u8> {
        let payload = json!({"Transcript": {"Results": [result]}}).to_string();
        eventstream::encode(&EsMessage::new(
            &[
                (":message-type", "event"),
                (":event-type", "TranscriptEvent"),
                (":content-type", "application/json"),
            ],
            payload,
        ))
    }

    /// An exception message (`websocket.md`, "Handling WebSocket streaming errors").
    pub fn exception(name: &str, message: &str) -> Vec<u8> {
        eventstream::encode(&EsMessage::new(
            &[
                (":message-type", "exception"),
                (":exception-type", name),
                (":content-type", "application/json"),
            ],
            json!({"Message": message}).to_string(),
        ))
    }

    /// A result for `words` spread over `start..end` seconds.
    pub fn result(
        id: &str,
        words: &[String],
        start: f64,
        end: f64,
        partial: bool,
        speaker: Option<&str>,
    ) -> Value {
        let n = words.len().max(1) as f64;
        let step = (end - start) / n;
        let mut items: Vec<Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut it = json!({
                    "StartTime": start + step * i as f64,
                    "EndTime": start + step * (i as f64 + 1.0),
                    "Type": "pronunciation",
                    "Content": w,
                    "VocabularyFilterMatch": false,
                });
                if !partial {
                    it["Confidence"] = json!(0.9 - 0.1 * i as f64 / n);
                    it["Stable"] = json!(true);
                }
                if let Some(s) = speaker {
                    it["Speaker"] = json!(s);
                }
                it
            })
            .collect();
        let mut text = words.join(" ");
        if !partial {
            text.push('.');
            items.push(
                json!({"StartTime": end, "EndTime": end, "Type": "punctuation",
                              "Content": ".", "VocabularyFilterMatch": false}),
            );
        }
        json!({
            "ResultId": id, "StartTime": start, "EndTime": end, "IsPartial": partial,
            "ChannelId": "ch_0",
            "Alternatives": [{"Transcript": text, "Items": items, "Entities": []}],
        })
    }

    async fn serve(shared: Arc<Shared>, req: SeenRequest, mut ws: FakeSocket) {
        let log = Arc::new(Mutex::new(TranscribeSession {
            request: Some(req.clone()),
            ..TranscribeSession::default()
        }));
        shared.sessions.lock().expect("sessions").push(log.clone());
        let opts = &shared.opts;
        let rate: u64 = req
            .query("sample-rate")
            .and_then(|r| r.parse().ok())
            .unwrap_or(16_000);
        let bytes_per_ms = (rate * 2 / 1000).max(1);
        let mut seg = 0u32;
        let mut seg_start_bytes = 0u64;
        let mut total_bytes = 0u64;
        let mut partial_sent = false;
        let mut faulted = false;
        let secs = |b: u64| b as f64 / (bytes_per_ms * 1000) as f64;
        loop {
            if !faulted
                && opts.fault_at == FaultAt::AfterEvents
                && log.lock().expect("session").audio_events >= opts.after_events
            {
                faulted = true;
                if strike(&opts.fault, &mut ws).await {
                    return;
                }
            }
            let Some(Ok(msg)) = ws.next().await else {
                return;
            };
            let data = match msg {
                WsMessage::Binary(b) => b.to_vec(),
                WsMessage::Ping(_) => {
                    log.lock().expect("session").pings += 1;
                    continue;
                }
                WsMessage::Close(_) => {
                    log.lock().expect("session").client_closed = true;
                    let _ = ws.close(None).await;
                    return;
                }
                WsMessage::Text(t) => {
                    log.lock()
                        .expect("session")
                        .violations
                        .push(format!("text frame {t}"));
                    continue;
                }
                _ => continue,
            };
            let Some(m) = accept(&log, data) else {
                continue;
            };
            let mut out: Vec<Vec<u8>> = Vec::new();
            let speaker = opts.speaker.as_deref();
            if m.payload.is_empty() {
                if opts.fault_at == FaultAt::EndOfStream && strike(&opts.fault, &mut ws).await {
                    return;
                }
                if total_bytes > seg_start_bytes || seg == 0 {
                    let r = result(
                        &format!("seg-{seg}"),
                        &opts.words,
                        secs(seg_start_bytes),
                        secs(total_bytes),
                        false,
                        speaker,
                    );
                    out.push(transcript_event(r));
                }
                for f in out {
                    let _ = ws.send(WsMessage::Binary(f.into())).await;
                }
                if opts.fault_at == FaultAt::AfterLastFinal && strike(&opts.fault, &mut ws).await {
                    return;
                }
                let _ = ws.close(Some(normal())).await;
                drain(&mut ws).await;
                return;
            }
            total_bytes += m.payload.len() as u64;
            let in_seg = total_bytes - seg_start_bytes;
            if !partial_sent && in_seg >= opts.partial_after_ms * bytes_per_ms {
                partial_sent = true;
                let first = &opts.words[..opts.words.len().min(1)];
                let r = result(
                    &format!("seg-{seg}"),
                    first,
                    secs(seg_start_bytes),
                    secs(total_bytes),
                    true,
                    speaker,
                );
                out.push(transcript_event(r));
            }
            if opts.segment_ms > 0 && in_seg >= opts.segment_ms * bytes_per_ms {
                let r = result(
                    &format!("seg-{seg}"),
                    &opts.words,
                    secs(seg_start_bytes),
                    secs(total_bytes),
                    false,
                    speaker,
                );
                out.push(transcript_event(r));
                seg += 1;
                seg_start_bytes = total_bytes;
                partial_sent = false;
            }
            for f in out {
                if ws.send(WsMessage::Binary(f.into())).await.is_err() {
                    return;
                }
            }
        }
    }

    /// Injects `fault`; `true` when the connection is over (the caller returns).
    async fn strike(fault: &TranscribeFault, ws: &mut FakeSocket) -> bool {
        match fault {
            TranscribeFault::Exception { name, message } => {
                let _ = ws
                    .send(WsMessage::Binary(exception(name, message).into()))
                    .await;
                let _ = ws.close(Some(normal())).await;
                drain(ws).await;
                true
            }
            TranscribeFault::Close { code, reason } => {
                let _ = ws
                    .close(Some(CloseFrame {
                        code: CloseCode::from(*code),
                        reason: reason.clone().into(),
                    }))
                    .await;
                drain(ws).await;
                true
            }
            TranscribeFault::Silent => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                true
            }
            TranscribeFault::Disconnect => true,
            TranscribeFault::Garbage => {
                for frame in garbage() {
                    if ws.send(frame).await.is_err() {
                        return true;
                    }
                }
                false
            }
            TranscribeFault::None | TranscribeFault::Reject(_) => false,
        }
    }

    /// Decodes and checks one frame, recording it; `None` for a frame to skip.
    fn accept(log: &Mutex<TranscribeSession>, data: Vec<u8>) -> Option<EsMessage> {
        let decoded = eventstream::decode(&data);
        let mut l = log.lock().expect("session");
        if l.frames.len() < 64 {
            l.frames.push(data);
        }
        let m = match decoded {
            Ok(m) => m,
            Err(e) => {
                l.violations.push(format!("bad frame: {e}"));
                return None;
            }
        };
        if l.ended {
            l.violations.push("a frame after the end of stream".into());
            return None;
        }
        let ok = m.header(":message-type") == Some("event")
            && m.header(":event-type") == Some("AudioEvent")
            && m.header(":content-type") == Some("application/octet-stream");
        if !ok {
            l.violations
                .push(format!("not an AudioEvent: {:?}", m.headers));
            return None;
        }
        if m.payload.is_empty() {
            l.ended = true;
        } else {
            l.audio_events += 1;
            l.audio.extend_from_slice(&m.payload);
        }
        Some(m)
    }

    fn normal() -> CloseFrame {
        CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }
    }

    /// Reads until the client answers the close (bounded).
    async fn drain(ws: &mut FakeSocket) {
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }

    /// Malformed server messages.
    fn garbage() -> Vec<WsMessage> {
        let mut bad_crc = transcript_event(result("g", &["x".into()], 0.0, 0.1, true, None));
        let n = bad_crc.len();
        bad_crc[n - 1] ^= 0xff;
        let unknown = eventstream::encode(&EsMessage::new(
            &[(":message-type", "event"), (":event-type", "SomethingNew")],
            "{}",
        ));
        let bad_json = eventstream::encode(&EsMessage::new(
            &[
                (":message-type", "event"),
                (":event-type", "TranscriptEvent"),
            ],
            "{\"Transcript\": [",
        ));
        let odd_shape = eventstream::encode(&EsMessage::new(
            &[
                (":message-type", "event"),
                (":event-type", "TranscriptEvent"),
            ],
            json!({"Transcript": {"Results": [{"IsPartial": "yes", "Alternatives": 3}, {}]}})
                .to_string(),
        ));
        let empty = eventstream::encode(&EsMessage::new(
            &[
                (":message-type", "event"),
                (":event-type", "TranscriptEvent"),
            ],
            json!({"Transcript": {"Results": []}}).to_string(),
        ));
        vec![
            WsMessage::Binary(vec![0xde, 0xad, 0xbe, 0xef, 1, 2, 3].into()),
            WsMessage::Text("not an event stream".into()),
            WsMessage::Binary(bad_crc.into()),
            WsMessage::Binary(unknown.into()),
            WsMessage::Binary(bad_json.into()),
            WsMessage::Binary(odd_shape.into()),
            WsMessage::Binary(empty.into()),
        ]
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn event_stream_round_trips_and_matches_the_guide() {
            let m = EsMessage::new(
                &[
                    (":content-type", "application/octet-stream"),
                    (":event-type", "AudioEvent"),
                    (":message-type", "event"),
                ],
                vec![0u8; 3200],
            );
            let wire = eventstream::encode(&m);
            // STT_PROTOCOLS.md Appendix B: 16 + 88 + 3200 = 3304 bytes, headers 88.
            assert_eq!(&wire[..8], &[0, 0, 0x0c, 0xe8, 0, 0, 0, 0x58]);
            assert_eq!(eventstream::decode(&wire).unwrap(), m);
            assert_eq!(eventstream::crc32(b"123456789"), 0xCBF4_3926);
            let mut bad = wire.clone();
            bad[20] ^= 1;
            assert!(eventstream::decode(&bad).is_err());
            assert_eq!(percent_decode("a%2Fb%3D"), "a/b=");
        }
    }
}
